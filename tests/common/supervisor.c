/*
 * supervisor.c — a test-sized systemd: socket activation, sd_notify, the file-descriptor
 * store, the watchdog and Restart=, for one daemon, inside the test process.
 *
 * Why.  pinpoold survives crashes and restarts by handing its region memfd and its
 * journal memfd to the service manager (sd_pid_notify_with_fds(..., "FDSTORE=1\n
 * FDNAME=region", ...)) and taking them back at the next start from LISTEN_FDS /
 * LISTEN_FDNAMES / LISTEN_PID, next to its listening socket.  Testing that means killing
 * the daemon at random moments dozens of times per run and restarting it with what it
 * stored — far faster and more controllably than a real systemd allows, and without
 * needing one.  This file is systemd's side of those protocols and nothing more.
 *
 * What it emulates (systemd 252; the man pages named are the contract):
 *   - A .socket unit with ListenStream=PATH: sup_new() binds and listens itself and keeps
 *     the socket for its whole life, so a client's connect() during a restart waits in
 *     the backlog instead of failing with ENOENT or ECONNREFUSED.  Stale files at the
 *     path are removed before bind(), as systemd does; the socket stays blocking
 *     (NonBlocking=no) and gets SocketMode= (default 0666).
 *   - Starting a Type=notify service (sd_listen_fds(3), systemd.exec(5)): fork + execve,
 *     the socket at fd 3 and the stored fds after it in store order, LISTEN_FDS=N,
 *     LISTEN_FDNAMES=<socket name>:<stored names...>, LISTEN_PID=<the child's pid>
 *     (written in the child after fork), NOTIFY_SOCKET, and with WatchdogSec= set
 *     WATCHDOG_USEC and WATCHDOG_PID.  The LISTEN_* variables are absent when N is 0.
 *     stdin is /dev/null, stdout and stderr the log; every other fd is closed
 *     (close_range) and every signal reset to its default and unblocked; the child is a
 *     session leader (setsid) and exits with 203 (systemd's EXIT_EXEC) when execve fails,
 *     202 (EXIT_FDS) when the fds cannot be set up.
 *   - The notification socket (sd_notify(3)): AF_UNIX SOCK_DGRAM with SO_PASSCRED,
 *     abstract or a path.  Messages are received with MSG_CMSG_CLOEXEC; refused whole
 *     (fds closed) when longer than SUP_NOTIFY_MAX, with truncated control data (more
 *     than 768 fds, systemd's NOTIFY_FD_MAX), without credentials, with a NUL byte, or
 *     from a process NotifyAccess= does not allow: "main" (the default) accepts only the
 *     main pid, "all" also its descendants, "none" nothing.  Accepted messages are
 *     split into lines and read as systemd 252's service_notify_message() does:
 *       MAINPID=      accepted in starting/running/reloading/stopping when the pid is
 *                     the main process, the forked process or a descendant of either —
 *                     or, as in systemd, when the sender is root;
 *       READY=1 / RELOADING=1 / STOPPING=1   the last of them in a message wins;
 *                     READY=1 ends start-up or a reload, RELOADING=1 starts a reload
 *                     from running (the pid may re-execute itself meanwhile: an exec
 *                     is not an exit), STOPPING=1 from running arms the stop timeout;
 *       STATUS=       the status text (empty clears it); ERRNO= the errno; BUSERROR=
 *                     only logged (in the event);
 *       WATCHDOG=1    resets the watchdog; WATCHDOG=trigger acts as a timeout (also
 *                     when no watchdog is configured); WATCHDOG_USEC= overrides the
 *                     timeout until the next start (0 switches it off);
 *       EXTEND_TIMEOUT_USEC=  pushes the start (or stop) timeout to at least now + that;
 *       FDSTOREREMOVE=1 + FDNAME=   drops every stored fd of that name;
 *       FDSTORE=1 [+ FDNAME=] [+ FDPOLL=0]   stores every fd of the message under the
 *                     name (invalid or missing: "stored"), polled for POLLHUP/POLLERR
 *                     (removed when they hang up) unless FDPOLL=0; fds that are not
 *                     pollable (memfds) are simply kept.  fds of a message without
 *                     FDSTORE=1 are closed — that is also what makes
 *                     sd_notify_barrier(3) work (BARRIER=1 plus a pipe).
 *   - The fd store (systemd.service(5) FileDescriptorStoreMax=): at most fd_store_max
 *     fds (0, the default, disables it: every fd is closed, with an event saying why).
 *     De-duplication is systemd's same_fd(): kcmp(KCMP_FILE) when the kernel allows it,
 *     else the same inode (st_dev, st_ino, file type), not a device, and the same
 *     F_GETFL flags.  A duplicate is closed and the stored fd keeps its old name.  The
 *     store is emptied when the service ends for good (dead or failed, no restart
 *     coming), as in systemd 252, unless fd_store_preserve (a later systemd's
 *     FileDescriptorStorePreserve=yes) is set; restarts, automatic or sup_restart(),
 *     keep it.
 *   - Supervision (systemd.service(5) Restart=, RestartSec=, TimeoutStartSec=,
 *     TimeoutStopSec=, TimeoutAbortSec=, WatchdogSec=): no READY=1 within the start
 *     timeout gives result "timeout", SIGTERM, then SIGKILL after the stop timeout; a
 *     clean exit before READY=1 gives "protocol"; the watchdog runs from READY=1 and
 *     on a timeout sends WatchdogSignal= (SIGABRT), then SIGKILL after the abort timeout,
 *     result "watchdog"; STOPPING=1 or sup_stop() wait the stop timeout before SIGKILL
 *     (result "timeout" if it comes to that).  The first failure of a run is its result
 *     (what a later SIGKILL causes does not overwrite it).  Exit 0 and death by SIGHUP,
 *     SIGINT, SIGTERM or SIGPIPE are "success".  Restart= then decides with
 *     systemd.service(5)'s table (sup_restart_applies()), after restart_usec.
 *
 * Where it deliberately differs from systemd 252:
 *   - No cgroup.  "Processes of the unit" are the forked process, the main pid and their
 *     descendants found through /proc/PID/stat at the moment a message arrives (a
 *     process that has already exited is then unknown, and its message refused under
 *     NotifyAccess=all).  When the main process ends, only the forked process (if it is
 *     not the main one and still runs) is killed, not every descendant (KillMode=).
 *   - A main pid set by MAINPID= that is not our child is watched with a pidfd; its exit
 *     status cannot be read, so its end counts as "success" — what 252 concludes too
 *     when such a process vanishes.
 *   - After a watchdog timeout systemd 252 sends WatchdogSignal=, then SIGTERM after
 *     TimeoutAbortSec=, then SIGKILL after TimeoutStopSec=; this skips the SIGTERM step:
 *     a daemon that did not answer its watchdog is killed once the abort timeout ends.
 *   - No start rate limit (StartLimitBurst=): a chaos test restarts dozens of times a
 *     second.  RestartSec= defaults to 0 (systemd: 100 ms), TimeoutStartSec= to 20 s and
 *     TimeoutStopSec= to 10 s (systemd: 90 s); RLIMIT_CORE is 0 unless core_dumps is set.
 *   - The environment is the test's own (minus the protocol's variables) plus cfg.env,
 *     not a clean one; no credentials, users, namespaces or other sandboxing.
 *   - Test-only additions: sup_fd_store() / sup_fd_remove() change the store from the
 *     test's side; sup_kill_random() is the chaos helper.
 *
 * Threads.  The supervisor runs on a thread of its own, started by sup_new(), with every
 * signal blocked but SIGCHLD (which, blocked in the forking thread, would become a
 * process-wide pending signal and interrupt the test's own sleeping system calls).  It sleeps
 * in epoll_wait() on the notification socket, a wake-up eventfd, the pidfds of its processes
 * and the stored fds (for POLLHUP), with the nearest deadline (start, stop/abort kill,
 * watchdog, restart) as the timeout.  Each time it wakes, under the one mutex s->mu, it first
 * drains the notification socket — so that a daemon's last messages (FDSTORE=1 just before a
 * SIGKILL) are read while it still counts as the main process, as systemd's higher event
 * priority for notifications ensures — then handles exits, commands and deadlines, and
 * broadcasts s->cond.  Every API call takes s->mu; calls that wait sleep on s->cond with a
 * CLOCK_MONOTONIC deadline.  Signals are sent through pidfds while s->mu is held and the
 * process is known unreaped, so a recycled pid is never hit.  The daemon is forked only by the
 * supervisor thread (sup_start() posts a command and waits for it): PR_SET_PDEATHSIG
 * follows the thread that forked, and that thread lives exactly as long as the
 * supervisor, so a test that crashes or never calls sup_free() leaves no daemon behind.
 * Between fork and execve the child only makes async-signal-safe calls on data prepared
 * before the fork (the LISTEN_PID and WATCHDOG_PID digits are written into reserved
 * space).  Only the supervisor's own processes are ever waited for (waitid on their pid),
 * never -1, so other children of the test are left alone.
 *
 * Errors follow the tree's convention (see supervisor.h); events are the test's record of
 * everything that happened, kept for the supervisor's life.
 */
#define _GNU_SOURCE
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/kcmp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NOTIFY_FD_MAX 768 /* systemd's limit of fds in one notification */
#define NOTIFY_RCVBUF (8 << 20)
#define DEFAULT_START_USEC (20ull * 1000000)
#define DEFAULT_STOP_USEC (10ull * 1000000)
#define EXIT_FDS 202 /* systemd's exit codes for a child that failed to set up */
#define EXIT_EXEC 203
#define PID_DIGITS 24 /* room reserved for LISTEN_PID / WATCHDOG_PID digits */
#define DESCENDANT_DEPTH 64

/* epoll tags: the kind in the top byte, a stored fd's id below. */
enum { TAG_WAKE = 1, TAG_NOTIFY, TAG_CHILD, TAG_MAIN, TAG_STORE };
#define TAG(kind, id) (((uint64_t)(kind) << 56) | (id))
#define TAG_KIND(u) ((int)((u) >> 56))
#define TAG_ID(u) ((u) & ((1ull << 56) - 1))

extern char **environ;

typedef struct store_fd {
  int fd;
  uint64_t id;
  char name[SUP_FDNAME_MAX + 1];
} store_fd_t;

struct sup {
  /* ---- set by sup_new(), read-only afterwards -------------------------------------- */
  char **argv;
  char **env_base; /* filtered environ + cfg.env */
  size_t n_env_base;
  char *log_path, *listen_path, *socket_name, *notify_value, *notify_unlink;
  sup_notify_access_t notify_access;
  unsigned fd_store_max;
  bool fd_store_preserve, core_dumps, verbose;
  uint64_t watchdog_usec, timeout_start_usec, timeout_stop_usec, timeout_abort_usec;
  uint64_t restart_usec;
  int watchdog_signal;
  sup_restart_t restart;
  int listen_fd, notify_fd, epfd, wake_fd;
  pthread_t thread;
  bool thread_started;

  /* ---- everything below is under mu ------------------------------------------------ */
  pthread_mutex_t mu;
  pthread_cond_t cond;
  bool quit;
  sup_state_t state;
  unsigned gen, restarts, exits, wd_timeouts, reloads;
  pid_t child_pid; /* the process we forked, until reaped; 0 when none */
  int child_pidfd;
  pid_t main_pid; /* 0 when none; == child_pid unless MAINPID= moved it */
  int main_pidfd; /* only when main_pid != child_pid */
  uint64_t start_ns;
  bool has_pending_result;
  sup_result_t pending_result;
  bool stop_requested, restart_requested;
  uint64_t deadline_start, deadline_kill, deadline_restart; /* ns, 0: none */
  uint64_t wd_usec, wd_last_ns;                             /* watchdog in force */
  int errno_value;
  char status[SUP_NOTIFY_MAX];
  sup_exit_t *exit_log; /* one per generation that ended */
  size_t n_exit, cap_exit;
  store_fd_t *store;
  size_t n_store, cap_store;
  uint64_t next_store_id;
  sup_event_t *ev;
  size_t n_ev, cap_ev;
  unsigned cmd_seq, cmd_done; /* sup_start() → thread */
  int cmd_rc;
  uint64_t seed, rng;
  char err[512];
};

/* ---- small helpers --------------------------------------------------------------------- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t usec_to_ns(uint64_t usec) {
  return usec >= UINT64_MAX / 1000 ? UINT64_MAX : usec * 1000;
}

/* now + usec, saturating (SUP_INFINITY stays "never": 0). */
static uint64_t deadline_after(uint64_t usec) {
  uint64_t ns = usec_to_ns(usec), now = now_ns();
  if (usec == SUP_INFINITY || ns > UINT64_MAX - now) return 0;
  return now + ns;
}

static const char *sig_name(int sig) {
  const char *n = sigabbrev_np(sig);
  return n ? n : "?";
}

/* splitmix64: small, seedable, good enough to spread kill moments. */
static uint64_t rng_next(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void wake(sup_t *s) {
  uint64_t one = 1;
  ssize_t n = write(s->wake_fd, &one, sizeof one);
  (void)n; /* a full eventfd counter still wakes the thread */
}

/* Record the reason of a failure (s may be NULL during sup_new) and print it. */
static int fail(sup_t *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(sup_t *s, int rc, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  fprintf(stderr, "supervisor: %s\n", buf);
  if (s) snprintf(s->err, sizeof s->err, "%s", buf);
  return rc;
}

static void ev_add(sup_t *s, sup_event_kind_t kind, pid_t pid, long long value, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
static void ev_add(sup_t *s, sup_event_kind_t kind, pid_t pid, long long value, const char *fmt,
                   ...) {
  sup_event_t *e;
  char *text = NULL;
  va_list ap;

  if (s->n_ev == s->cap_ev) {
    size_t cap = s->cap_ev ? s->cap_ev * 2 : 64;
    sup_event_t *n = realloc(s->ev, cap * sizeof *n);
    if (!n) goto nomem;
    s->ev = n;
    s->cap_ev = cap;
  }
  va_start(ap, fmt);
  if (vasprintf(&text, fmt, ap) < 0) text = NULL;
  va_end(ap);
  if (!text) goto nomem;
  e = &s->ev[s->n_ev++];
  *e = (sup_event_t){
      .t_ns = now_ns(), .kind = kind, .pid = pid, .gen = s->gen, .value = value, .text = text};
  if (s->verbose)
    fprintf(stderr, "supervisor: [gen %u] %s pid=%d value=%lld %s\n", s->gen,
            sup_event_name(kind), (int)pid, value, text);
  return;
nomem:
  fprintf(stderr, "supervisor: out of memory, event %s lost\n", sup_event_name(kind));
}

/* ---- names and the Restart= table ----------------------------------------------------- */

const char *sup_result_name(sup_result_t r) {
  switch (r) {
  case SUP_RESULT_SUCCESS: return "success";
  case SUP_RESULT_EXIT_CODE: return "exit-code";
  case SUP_RESULT_SIGNAL: return "signal";
  case SUP_RESULT_CORE_DUMP: return "core-dump";
  case SUP_RESULT_TIMEOUT: return "timeout";
  case SUP_RESULT_WATCHDOG: return "watchdog";
  case SUP_RESULT_PROTOCOL: return "protocol";
  }
  return "?";
}

const char *sup_state_name(sup_state_t st) {
  switch (st) {
  case SUP_DEAD: return "dead";
  case SUP_STARTING: return "starting";
  case SUP_RUNNING: return "running";
  case SUP_RELOADING: return "reloading";
  case SUP_STOPPING: return "stopping";
  case SUP_AUTO_RESTART: return "auto-restart";
  case SUP_FAILED: return "failed";
  }
  return "?";
}

const char *sup_event_name(sup_event_kind_t k) {
  switch (k) {
  case SUP_EV_START: return "start";
  case SUP_EV_NOTIFY: return "notify";
  case SUP_EV_NOTIFY_REJECTED: return "notify-rejected";
  case SUP_EV_READY: return "ready";
  case SUP_EV_MAINPID: return "mainpid";
  case SUP_EV_FD_STORED: return "fd-stored";
  case SUP_EV_FD_DUPLICATE: return "fd-duplicate";
  case SUP_EV_FD_DROPPED: return "fd-dropped";
  case SUP_EV_FD_REMOVED: return "fd-removed";
  case SUP_EV_FD_FLUSHED: return "fd-flushed";
  case SUP_EV_WATCHDOG: return "watchdog";
  case SUP_EV_TIMEOUT: return "timeout";
  case SUP_EV_SIGNAL: return "signal";
  case SUP_EV_EXIT: return "exit";
  case SUP_EV_RESTART: return "restart";
  }
  return "?";
}

/* systemd.service(5), "Table 2. Exit causes and the effect of the Restart= settings";
 * service_shall_restart() in systemd's service.c reads the same way. */
bool sup_restart_applies(sup_restart_t policy, sup_result_t r) {
  switch (policy) {
  case SUP_RESTART_NO: return false;
  case SUP_RESTART_ALWAYS: return true;
  case SUP_RESTART_ON_SUCCESS: return r == SUP_RESULT_SUCCESS;
  case SUP_RESTART_ON_FAILURE: return r != SUP_RESULT_SUCCESS;
  case SUP_RESTART_ON_ABNORMAL: return r != SUP_RESULT_SUCCESS && r != SUP_RESULT_EXIT_CODE;
  case SUP_RESTART_ON_WATCHDOG: return r == SUP_RESULT_WATCHDOG;
  case SUP_RESTART_ON_ABORT: return r == SUP_RESULT_SIGNAL || r == SUP_RESULT_CORE_DUMP;
  }
  return false;
}

/* is_clean_exit() for a daemon: exit 0, or one of the four "clean" signals. */
static sup_result_t classify_exit(int code, int status) {
  if (code == CLD_EXITED) return status == 0 ? SUP_RESULT_SUCCESS : SUP_RESULT_EXIT_CODE;
  if (code == CLD_KILLED) {
    if (status == SIGHUP || status == SIGINT || status == SIGTERM || status == SIGPIPE)
      return SUP_RESULT_SUCCESS;
    return SUP_RESULT_SIGNAL;
  }
  if (code == CLD_DUMPED) return SUP_RESULT_CORE_DUMP;
  return SUP_RESULT_SUCCESS; /* unknown (an alien main pid vanished) */
}

/* ---- the fd store (all under mu) ------------------------------------------------------- */

/* systemd's fdname_is_valid(): printable ASCII without ':', at most 255 characters. */
static bool fdname_is_valid(const char *n) {
  const char *p;
  for (p = n; *p; p++)
    if (*p < ' ' || *p >= 127 || *p == ':') return false;
  return p - n <= SUP_FDNAME_MAX;
}

/* systemd's same_fd(): kcmp() when it may be used, else inode + flags. */
static bool same_fd(int a, int b) {
  struct stat sa, sb;
  long r;
  int fa, fb;

  if (a == b) return true;
  r = syscall(SYS_kcmp, (long)getpid(), (long)getpid(), (long)KCMP_FILE, (long)a, (long)b);
  if (r == 0) return true;
  if (r > 0) return false;
  if (errno != ENOSYS && errno != EACCES && errno != EPERM) return false;
  if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0) return false;
  if (sa.st_dev != sb.st_dev || sa.st_ino != sb.st_ino ||
      (sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT))
    return false;
  if (S_ISCHR(sa.st_mode) || S_ISBLK(sa.st_mode)) return false;
  fa = fcntl(a, F_GETFL);
  fb = fcntl(b, F_GETFL);
  return fa >= 0 && fa == fb;
}

static void store_drop_at(sup_t *s, size_t i) {
  epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->store[i].fd, NULL); /* ENOENT when not pollable */
  close(s->store[i].fd);
  memmove(&s->store[i], &s->store[i + 1], (s->n_store - i - 1) * sizeof *s->store);
  s->n_store--;
}

/* Take fd (always: stored, or closed).  1 stored, 0 duplicate, PP_EQUOTA full or
 * disabled, PP_ENOPRIVMEM. */
static int store_add(sup_t *s, int fd, const char *name, bool poll, pid_t from) {
  store_fd_t *e;
  struct epoll_event ev;

  if (!name) name = "stored";
  for (size_t i = 0; i < s->n_store; i++)
    if (same_fd(s->store[i].fd, fd)) {
      ev_add(s, SUP_EV_FD_DUPLICATE, from, (long long)s->n_store,
             "%s: the same open file as stored fd '%s', closed", name, s->store[i].name);
      close(fd);
      return 0;
    }
  if (s->n_store >= s->fd_store_max) {
    ev_add(s, SUP_EV_FD_DROPPED, from, (long long)s->n_store,
           s->fd_store_max ? "%s: store full (FileDescriptorStoreMax=%u)"
                           : "%s: store disabled (FileDescriptorStoreMax=%u)",
           name, s->fd_store_max);
    close(fd);
    return PP_EQUOTA;
  }
  if (s->n_store == s->cap_store) {
    size_t cap = s->cap_store ? s->cap_store * 2 : 8;
    store_fd_t *n = realloc(s->store, cap * sizeof *n);
    if (!n) {
      close(fd);
      return fail(s, PP_ENOPRIVMEM, "out of memory growing the fd store");
    }
    s->store = n;
    s->cap_store = cap;
  }
  e = &s->store[s->n_store++];
  e->fd = fd;
  e->id = ++s->next_store_id;
  snprintf(e->name, sizeof e->name, "%s", name);
  if (poll) {
    /* Only hang-ups and errors (always reported); EPERM means "not pollable", which is
     * fine (a memfd, a regular file), exactly as systemd treats it. */
    ev = (struct epoll_event){.events = 0, .data.u64 = TAG(TAG_STORE, e->id)};
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
  }
  ev_add(s, SUP_EV_FD_STORED, from, (long long)s->n_store, "%s", e->name);
  return 1;
}

static int store_remove_name(sup_t *s, const char *name, const char *why, pid_t from) {
  int n = 0;
  for (size_t i = 0; i < s->n_store;) {
    if (strcmp(s->store[i].name, name) == 0) {
      store_drop_at(s, i);
      n++;
    } else {
      i++;
    }
  }
  if (n) ev_add(s, SUP_EV_FD_REMOVED, from, n, "%s (%s)", name, why);
  return n;
}

static void store_flush(sup_t *s) {
  size_t n = s->n_store;
  while (s->n_store)
    store_drop_at(s, s->n_store - 1);
  if (n) ev_add(s, SUP_EV_FD_FLUSHED, 0, (long long)n, "the service stopped for good");
}

/* ---- processes (all under mu, on the supervisor thread unless noted) ------------------- */

static bool process_alive(const sup_t *s) {
  return s->main_pid > 0 || s->child_pid > 0;
}

static int main_pidfd(const sup_t *s) {
  return s->main_pid == s->child_pid ? s->child_pidfd : s->main_pidfd;
}

/* Send sig to the main process; ESRCH (already dead, not yet handled) is fine. */
static int signal_main(sup_t *s, int sig, const char *why) {
  int fd = main_pidfd(s);
  if (s->main_pid <= 0 || fd < 0) return PP_ENOENT;
  if (pidfd_send_signal(fd, sig, NULL, 0) < 0 && errno != ESRCH)
    return fail(s, PP_EOS, "pidfd_send_signal(%d, SIG%s): %s", (int)s->main_pid, sig_name(sig),
                strerror(errno));
  ev_add(s, SUP_EV_SIGNAL, s->main_pid, sig, "SIG%s: %s", sig_name(sig), why);
  return 0;
}

static void set_pending(sup_t *s, sup_result_t r) {
  if (!s->has_pending_result) {
    s->has_pending_result = true;
    s->pending_result = r;
  }
}

/* Ask the main process to go: sig now, SIGKILL when kill_usec has passed. */
static void enter_stop(sup_t *s, int sig, uint64_t kill_usec, const char *why) {
  s->state = SUP_STOPPING;
  s->deadline_start = 0;
  if (sig) signal_main(s, sig, why);
  s->deadline_kill = deadline_after(kill_usec);
}

/* The ppid of pid from /proc/PID/stat (after the last ')' of the command name). */
static pid_t parent_of(pid_t pid) {
  char path[64], buf[512], *p;
  int fd, ppid = 0;
  ssize_t n;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return 0;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  if (!(p = strrchr(buf, ')')) || sscanf(p + 1, " %*c %d", &ppid) != 1) return 0;
  return (pid_t)ppid;
}

/* pid is the main or forked process, or a descendant of one (our stand-in for "in the
 * unit's cgroup"). */
static bool belongs_to_unit(const sup_t *s, pid_t pid) {
  for (int depth = 0; pid > 1 && depth < DESCENDANT_DEPTH; depth++) {
    if (pid == s->main_pid || pid == s->child_pid) return true;
    pid = parent_of(pid);
  }
  return false;
}

/* ---- start ----------------------------------------------------------------------------- */

typedef struct spawn {
  const char *path;
  char **argv, **envp;
  char *listen_pid_digits, *watchdog_pid_digits; /* reserved space in envp strings */
  int *fds, nfds;
  int logfd, nullfd;
  pid_t parent;
  bool core_dumps;
  struct rlimit core;
} spawn_t;

/* Async-signal-safe decimal. */
static void put_pid(char *dst, pid_t pid) {
  char tmp[PID_DIGITS];
  int n = 0;
  unsigned long v = (unsigned long)pid;
  do
    tmp[n++] = (char)('0' + v % 10);
  while ((v /= 10) && n < PID_DIGITS - 1);
  while (n)
    *dst++ = tmp[--n];
  *dst = '\0';
}

static void child_die(int code, const char *what) {
  size_t n = strlen(what);
  ssize_t w = write(STDERR_FILENO, what, n);
  (void)w;
  _exit(code);
}

/* In the child, between fork and execve: async-signal-safe calls only. */
static __attribute__((noreturn)) void child_exec(spawn_t *sp) {
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigset_t none;
  int base = 3 + sp->nfds, logtmp, nulltmp;

  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != sp->parent) _exit(EXIT_FDS); /* the test is already gone */
  setsid();
  sigemptyset(&none);
  for (int sig = 1; sig < NSIG; sig++)
    if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
  sigprocmask(SIG_SETMASK, &none, NULL);

  /* Lift every source above the targets first, so that dup2() onto 0..base-1 cannot
   * clobber a source that happens to sit there; dup2() also clears FD_CLOEXEC. */
  logtmp = fcntl(sp->logfd, F_DUPFD_CLOEXEC, base);
  nulltmp = fcntl(sp->nullfd, F_DUPFD_CLOEXEC, base);
  if (logtmp < 0 || nulltmp < 0) child_die(EXIT_FDS, "supervisor: child: cannot move fds\n");
  for (int i = 0; i < sp->nfds; i++)
    if ((sp->fds[i] = fcntl(sp->fds[i], F_DUPFD_CLOEXEC, base)) < 0)
      child_die(EXIT_FDS, "supervisor: child: cannot move fds\n");
  if (dup2(nulltmp, 0) < 0 || dup2(logtmp, 1) < 0 || dup2(logtmp, 2) < 0)
    child_die(EXIT_FDS, "supervisor: child: cannot set up stdio\n");
  for (int i = 0; i < sp->nfds; i++)
    if (dup2(sp->fds[i], 3 + i) < 0) child_die(EXIT_FDS, "supervisor: child: dup2 failed\n");
  if (close_range((unsigned)base, ~0u, 0) < 0)
    for (int fd = base; fd < 65536; fd++)
      close(fd);

  if (!sp->core_dumps) setrlimit(RLIMIT_CORE, &sp->core);
  if (sp->listen_pid_digits) put_pid(sp->listen_pid_digits, getpid());
  if (sp->watchdog_pid_digits) put_pid(sp->watchdog_pid_digits, getpid());
  execve(sp->path, sp->argv, sp->envp);
  child_die(EXIT_EXEC, "supervisor: child: execve failed\n");
  _exit(EXIT_EXEC);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...) {
  char *p;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&p, fmt, ap) < 0) p = NULL;
  va_end(ap);
  return p;
}

/* Fork + exec a new generation.  On the supervisor thread, under mu. */
static int do_start(sup_t *s, bool automatic) {
  spawn_t sp = {.path = s->argv[0],
                .argv = s->argv,
                .logfd = -1,
                .nullfd = -1,
                .parent = getpid(),
                .core_dumps = s->core_dumps};
  char *owned[6] = {0}, *names = NULL;
  size_t n_owned = 0, names_len = 0;
  int rc = 0, pidfd = -1;
  struct epoll_event ev;
  uint64_t start_ns;
  pid_t pid;

  if (process_alive(s))
    return fail(s, PP_EEXIST, "a daemon process (pid %d) is running",
                (int)(s->main_pid ? s->main_pid : s->child_pid));

  /* The fds: the socket, then the store in order; and their names. */
  sp.nfds = (s->listen_fd >= 0) + (int)s->n_store;
  sp.fds = calloc((size_t)sp.nfds + 1, sizeof *sp.fds);
  sp.envp = calloc(s->n_env_base + 8, sizeof *sp.envp);
  if (!sp.fds || !sp.envp) {
    rc = fail(s, PP_ENOPRIVMEM, "out of memory preparing a start");
    goto out;
  }
  {
    int k = 0;
    FILE *f = open_memstream(&names, &names_len);
    if (!f) {
      rc = fail(s, PP_ENOPRIVMEM, "out of memory preparing a start");
      goto out;
    }
    if (s->listen_fd >= 0) {
      sp.fds[k++] = s->listen_fd;
      fputs(s->socket_name, f);
    }
    for (size_t i = 0; i < s->n_store; i++) {
      sp.fds[k++] = s->store[i].fd;
      fprintf(f, "%s%s", k > 1 ? ":" : "", s->store[i].name);
    }
    if (fclose(f) != 0 || !names) {
      rc = fail(s, PP_ENOPRIVMEM, "out of memory preparing a start");
      goto out;
    }
  }

  /* The environment: the base, then the protocol's variables (the child fills in the
   * pid digits). */
  {
    size_t k = 0;
    for (size_t i = 0; i < s->n_env_base; i++)
      sp.envp[k++] = s->env_base[i];
    if (!(owned[n_owned++] = xasprintf("NOTIFY_SOCKET=%s", s->notify_value))) goto nomem;
    sp.envp[k++] = owned[n_owned - 1];
    if (sp.nfds > 0) {
      if (!(owned[n_owned++] = xasprintf("LISTEN_FDS=%d", sp.nfds))) goto nomem;
      sp.envp[k++] = owned[n_owned - 1];
      if (!(owned[n_owned++] = xasprintf("LISTEN_FDNAMES=%s", names))) goto nomem;
      sp.envp[k++] = owned[n_owned - 1];
      if (!(owned[n_owned++] = xasprintf("LISTEN_PID=%*s", PID_DIGITS, ""))) goto nomem;
      sp.envp[k++] = owned[n_owned - 1];
      sp.listen_pid_digits = owned[n_owned - 1] + strlen("LISTEN_PID=");
    }
    if (s->watchdog_usec > 0 && s->watchdog_usec != SUP_INFINITY) {
      if (!(owned[n_owned++] =
                xasprintf("WATCHDOG_USEC=%llu", (unsigned long long)s->watchdog_usec)))
        goto nomem;
      sp.envp[k++] = owned[n_owned - 1];
      if (!(owned[n_owned++] = xasprintf("WATCHDOG_PID=%*s", PID_DIGITS, ""))) goto nomem;
      sp.envp[k++] = owned[n_owned - 1];
      sp.watchdog_pid_digits = owned[n_owned - 1] + strlen("WATCHDOG_PID=");
    }
    sp.envp[k] = NULL;
  }

  sp.logfd = s->log_path
                 ? open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0644)
                 : fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
  sp.nullfd = open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY);
  if (sp.logfd < 0 || sp.nullfd < 0) {
    rc = fail(s, PP_EOS, "cannot open the log %s or /dev/null: %s",
              s->log_path ? s->log_path : "(stderr)", strerror(errno));
    goto out;
  }
  getrlimit(RLIMIT_CORE, &sp.core);
  sp.core.rlim_cur = 0;

  start_ns = now_ns(); /* uptimes and kill moments count from the fork */
  pid = fork();
  if (pid < 0) {
    rc = fail(s, PP_EOS, "fork: %s", strerror(errno));
    goto out;
  }
  if (pid == 0) child_exec(&sp);

  if ((pidfd = pidfd_open(pid, 0)) < 0) {
    /* Cannot supervise it: take it back down. */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    rc = fail(s, PP_EOS, "pidfd_open(%d): %s", (int)pid, strerror(errno));
    goto out;
  }
  ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = TAG(TAG_CHILD, 0)};
  epoll_ctl(s->epfd, EPOLL_CTL_ADD, pidfd, &ev);

  /* service_start(): a new run starts with a clean slate. */
  s->gen++;
  if (automatic) s->restarts++;
  s->child_pid = s->main_pid = pid;
  s->child_pidfd = pidfd;
  s->main_pidfd = -1;
  s->start_ns = start_ns;
  s->state = SUP_STARTING;
  s->has_pending_result = false;
  s->stop_requested = s->restart_requested = false;
  s->deadline_kill = s->deadline_restart = 0;
  s->deadline_start = deadline_after(s->timeout_start_usec);
  s->wd_usec = s->watchdog_usec;
  s->errno_value = 0;
  s->status[0] = '\0';
  ev_add(s, SUP_EV_START, pid, sp.nfds, "%s", names);
  goto out;

nomem:
  rc = fail(s, PP_ENOPRIVMEM, "out of memory preparing a start");
out:
  if (sp.logfd >= 0) close(sp.logfd);
  if (sp.nullfd >= 0) close(sp.nullfd);
  for (size_t i = 0; i < n_owned; i++)
    free(owned[i]);
  free(names);
  free(sp.fds);
  free(sp.envp);
  return rc;
}

/* ---- exits ----------------------------------------------------------------------------- */

static void close_child(sup_t *s) {
  if (s->child_pidfd >= 0) {
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->child_pidfd, NULL);
    close(s->child_pidfd);
  }
  s->child_pidfd = -1;
  s->child_pid = 0;
}

static void close_main(sup_t *s) {
  if (s->main_pidfd >= 0) {
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->main_pidfd, NULL);
    close(s->main_pidfd);
  }
  s->main_pidfd = -1;
  s->main_pid = 0;
}

/* The forked process, when it is not (or no longer) the main one and still runs, goes
 * with the main process: SIGKILL and reap now. */
static void kill_child_sync(sup_t *s) {
  if (s->child_pid <= 0) return;
  pidfd_send_signal(s->child_pidfd, SIGKILL, NULL, 0);
  waitpid(s->child_pid, NULL, 0);
  close_child(s);
}

/* The main process ended (code 0: status unknown). */
static void main_exited(sup_t *s, int code, int status) {
  sup_exit_t ex = {.pid = s->main_pid,
                   .gen = s->gen,
                   .code = code,
                   .status = status,
                   .state = s->state,
                   .t_ns = now_ns()};
  bool was_starting = s->state == SUP_STARTING;
  bool stop = s->stop_requested, restart_now = s->restart_requested;

  ex.uptime_ns = ex.t_ns - s->start_ns;
  if (s->has_pending_result)
    ex.result = s->pending_result;
  else {
    ex.result = classify_exit(code, status);
    /* Type=notify: a clean exit before READY=1 never made the service active. */
    if (was_starting && ex.result == SUP_RESULT_SUCCESS && !stop)
      ex.result = SUP_RESULT_PROTOCOL;
  }
  if (s->main_pidfd >= 0)
    close_main(s);
  else
    s->main_pid = 0;
  kill_child_sync(s); /* a forked process that handed MAINPID= on and still runs */

  s->deadline_start = s->deadline_kill = 0;
  s->has_pending_result = false;
  s->stop_requested = s->restart_requested = false;
  ex.restarting = restart_now || (!stop && sup_restart_applies(s->restart, ex.result));
  s->exits++;

  if (code == CLD_EXITED)
    ev_add(s, SUP_EV_EXIT, ex.pid, ex.result, "exited, status=%d, result %s", status,
           sup_result_name(ex.result));
  else if (code == CLD_KILLED || code == CLD_DUMPED)
    ev_add(s, SUP_EV_EXIT, ex.pid, ex.result, "%s, signal=%s, result %s",
           code == CLD_DUMPED ? "dumped core" : "killed", sig_name(status),
           sup_result_name(ex.result));
  else
    ev_add(s, SUP_EV_EXIT, ex.pid, ex.result,
           "ended (not our child: status unknown), result %s", sup_result_name(ex.result));

  if (s->n_exit == s->cap_exit) {
    size_t cap = s->cap_exit ? s->cap_exit * 2 : 16;
    sup_exit_t *n = realloc(s->exit_log, cap * sizeof *n);
    if (n) {
      s->exit_log = n;
      s->cap_exit = cap;
    }
  }
  if (s->n_exit < s->cap_exit) s->exit_log[s->n_exit++] = ex;

  if (restart_now) {
    if (do_start(s, false) < 0) s->state = SUP_FAILED;
  } else if (ex.restarting) {
    s->state = SUP_AUTO_RESTART;
    /* RestartSec=infinity holds the restart until sup_start() (deadline 0: none). */
    s->deadline_restart = deadline_after(s->restart_usec);
    ev_add(s, SUP_EV_RESTART, 0, (long long)s->restart_usec, "Restart= applies to result %s",
           sup_result_name(ex.result));
  } else {
    s->state = ex.result == SUP_RESULT_SUCCESS ? SUP_DEAD : SUP_FAILED;
    if (!s->fd_store_preserve) store_flush(s);
  }
}

static void on_child_event(sup_t *s) {
  siginfo_t si = {0};
  bool was_main;
  if (s->child_pid <= 0) return;
  if (waitid(P_PID, (id_t)s->child_pid, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0) return;
  /* Reaped: forget the pid at once, it may be reused from now on. */
  was_main = s->child_pid == s->main_pid;
  close_child(s);
  /* When MAINPID= moved on, the forked process ending is no exit of the service. */
  if (was_main) main_exited(s, si.si_code, si.si_status);
}

static void on_main_event(sup_t *s) {
  if (s->main_pidfd < 0) return;
  main_exited(s, 0, 0);
}

/* ---- notifications --------------------------------------------------------------------- */

/* The value of the first line "key..." (key includes '='), as strv_find_startswith(). */
static const char *find_value(char **lines, size_t n, const char *key) {
  size_t k = strlen(key);
  for (size_t i = 0; i < n; i++)
    if (strncmp(lines[i], key, k) == 0) return lines[i] + k;
  return NULL;
}

static bool has_line(char **lines, size_t n, const char *line) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(lines[i], line) == 0) return true;
  return false;
}

static bool parse_u64(const char *v, uint64_t *ret) {
  char *end;
  unsigned long long x;
  if (!v || !*v || *v == '-') return false;
  errno = 0;
  x = strtoull(v, &end, 10);
  if (errno || *end) return false;
  *ret = x;
  return true;
}

static void set_main_pid(sup_t *s, const char *v, const struct ucred *uc) {
  uint64_t x;
  pid_t pid;
  int fd;
  struct epoll_event ev;

  if (s->state != SUP_STARTING && s->state != SUP_RUNNING && s->state != SUP_RELOADING &&
      s->state != SUP_STOPPING)
    return;
  if (!parse_u64(v, &x) || x <= 1 || x > INT_MAX || (pid_t)x == getpid()) {
    ev_add(s, SUP_EV_NOTIFY_REJECTED, uc->pid, 0, "MAINPID=%s: not a usable pid, ignored", v);
    return;
  }
  pid = (pid_t)x;
  if (pid == s->main_pid) return;
  if (!belongs_to_unit(s, pid) && uc->uid != 0) {
    ev_add(s, SUP_EV_NOTIFY_REJECTED, uc->pid, 0,
           "MAINPID=%d does not belong to the service and the sender is not root", (int)pid);
    return;
  }
  if (pid == s->child_pid) {
    close_main(s);
    s->main_pid = pid;
  } else {
    if ((fd = pidfd_open(pid, 0)) < 0) {
      ev_add(s, SUP_EV_NOTIFY_REJECTED, uc->pid, 0, "MAINPID=%d: pidfd_open: %s", (int)pid,
             strerror(errno));
      return;
    }
    if (s->main_pid != s->child_pid) close_main(s);
    s->main_pid = pid;
    s->main_pidfd = fd;
    ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = TAG(TAG_MAIN, 0)};
    epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
  }
  ev_add(s, SUP_EV_MAINPID, pid, pid, "main pid is now %d", (int)pid);
}

static void watchdog_fire(sup_t *s, const char *why) {
  s->wd_timeouts++;
  ev_add(s, SUP_EV_WATCHDOG, s->main_pid, (long long)s->wd_usec, "%s (last status: %s)", why,
         s->status[0] ? s->status : "n/a");
  set_pending(s, SUP_RESULT_WATCHDOG);
  enter_stop(s, s->watchdog_signal, s->timeout_abort_usec, "watchdog");
}

/* One accepted message; takes the fds (stores or closes every one). */
static void handle_message(sup_t *s, char *buf, const struct ucred *uc, int *fds, int nfds) {
  char *lines[256];
  size_t n = 0;
  const char *v;
  bool stored = false;

  ev_add(s, SUP_EV_NOTIFY, uc->pid, nfds, "%s", buf);
  for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l && n < 256;
       l = strtok_r(NULL, "\n", &save))
    lines[n++] = l;

  if ((v = find_value(lines, n, "MAINPID="))) set_main_pid(s, v, uc);

  /* READY=1 / RELOADING=1 / STOPPING=1: the last one wins. */
  for (size_t i = n; i-- > 0;) {
    if (strcmp(lines[i], "READY=1") == 0) {
      if (s->state == SUP_STARTING || s->state == SUP_RELOADING) {
        bool reload = s->state == SUP_RELOADING;
        if (reload) s->reloads++;
        s->state = SUP_RUNNING;
        s->deadline_start = 0;
        s->wd_last_ns = now_ns();
        ev_add(s, SUP_EV_READY, s->main_pid, reload, reload ? "reload done" : "started");
      }
      break;
    }
    if (strcmp(lines[i], "RELOADING=1") == 0) {
      if (s->state == SUP_RUNNING) {
        s->state = SUP_RELOADING;
        s->deadline_start = deadline_after(s->timeout_start_usec);
      }
      break;
    }
    if (strcmp(lines[i], "STOPPING=1") == 0) {
      if (s->state == SUP_RUNNING) enter_stop(s, 0, s->timeout_stop_usec, "STOPPING=1");
      break;
    }
  }

  if ((v = find_value(lines, n, "STATUS="))) snprintf(s->status, sizeof s->status, "%s", v);
  if ((v = find_value(lines, n, "ERRNO="))) {
    uint64_t e;
    if (parse_u64(v, &e) && e <= INT_MAX) s->errno_value = (int)e;
  }

  if ((v = find_value(lines, n, "WATCHDOG="))) {
    if (strcmp(v, "trigger") == 0) {
      if (process_alive(s) && s->state != SUP_STOPPING) watchdog_fire(s, "WATCHDOG=trigger");
    } else if (has_line(lines, n, "WATCHDOG=1")) {
      s->wd_last_ns = now_ns();
    }
  }
  if ((v = find_value(lines, n, "WATCHDOG_USEC="))) {
    uint64_t u;
    if (parse_u64(v, &u)) {
      s->wd_usec = u;
      s->wd_last_ns = now_ns();
    }
  }
  if ((v = find_value(lines, n, "EXTEND_TIMEOUT_USEC="))) {
    uint64_t u, d;
    if (parse_u64(v, &u) && (d = deadline_after(u))) {
      if ((s->state == SUP_STARTING || s->state == SUP_RELOADING) && s->deadline_start &&
          d > s->deadline_start)
        s->deadline_start = d;
      if (s->state == SUP_STOPPING && s->deadline_kill && d > s->deadline_kill)
        s->deadline_kill = d;
    }
  }

  if (has_line(lines, n, "FDSTOREREMOVE=1")) {
    v = find_value(lines, n, "FDNAME=");
    if (!v || !fdname_is_valid(v))
      ev_add(s, SUP_EV_NOTIFY_REJECTED, uc->pid, 0, "FDSTOREREMOVE=1 without a valid FDNAME=");
    else
      store_remove_name(s, v, "FDSTOREREMOVE=1", uc->pid);
  }
  if (has_line(lines, n, "FDSTORE=1")) {
    const char *poll = find_value(lines, n, "FDPOLL=");
    v = find_value(lines, n, "FDNAME=");
    if (v && !fdname_is_valid(v)) {
      ev_add(s, SUP_EV_NOTIFY_REJECTED, uc->pid, 0, "FDNAME= is not a valid name: 'stored'");
      v = NULL;
    }
    for (int i = 0; i < nfds; i++)
      store_add(s, fds[i], v, !(poll && strcmp(poll, "0") == 0), uc->pid);
    stored = true;
  }
  if (!stored)
    for (int i = 0; i < nfds; i++) {
      ev_add(s, SUP_EV_FD_DROPPED, uc->pid, 0, "fd sent without FDSTORE=1, closed");
      close(fds[i]);
    }
}

static void reject(sup_t *s, pid_t pid, int *fds, int nfds, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void reject(sup_t *s, pid_t pid, int *fds, int nfds, const char *fmt, ...) {
  char why[SUP_NOTIFY_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  for (int i = 0; i < nfds; i++)
    close(fds[i]);
  ev_add(s, SUP_EV_NOTIFY_REJECTED, pid, nfds, "%s", why);
}

static void drain_notify(sup_t *s) {
  for (;;) {
    char buf[SUP_NOTIFY_MAX + 1];
    union {
      struct cmsghdr h;
      char b[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * NOTIFY_FD_MAX)];
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = SUP_NOTIFY_MAX};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof ctl};
    struct ucred uc = {0};
    bool have_cred = false;
    int fds[NOTIFY_FD_MAX], nfds = 0;
    ssize_t n;

    n = recvmsg(s->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        fprintf(stderr, "supervisor: recvmsg on the notify socket: %s\n", strerror(errno));
      return;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_RIGHTS) {
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k && nfds < NOTIFY_FD_MAX; i++)
          memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      } else if (c->cmsg_type == SCM_CREDENTIALS &&
                 c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
        memcpy(&uc, CMSG_DATA(c), sizeof uc);
        have_cred = true;
      }
    }
    if (mh.msg_flags & MSG_CTRUNC) {
      reject(s, uc.pid, fds, nfds, "truncated control data (more than %d fds?)", NOTIFY_FD_MAX);
      continue;
    }
    if (n > SUP_NOTIFY_MAX) {
      reject(s, uc.pid, fds, nfds, "message of %zd bytes, longer than %d", n, SUP_NOTIFY_MAX);
      continue;
    }
    if (!have_cred || uc.pid <= 0) {
      reject(s, 0, fds, nfds, "message without credentials");
      continue;
    }
    if (memchr(buf, 0, (size_t)n)) {
      reject(s, uc.pid, fds, nfds, "message with an embedded NUL byte");
      continue;
    }
    buf[n] = '\0';
    if (s->notify_access == SUP_NOTIFY_NONE) {
      reject(s, uc.pid, fds, nfds, "reception disabled (NotifyAccess=none): %s", buf);
      continue;
    }
    if (s->main_pid <= 0) {
      reject(s, uc.pid, fds, nfds, "from pid %d, but no main pid is known: %s", (int)uc.pid,
             buf);
      continue;
    }
    if (uc.pid != s->main_pid &&
        !(s->notify_access == SUP_NOTIFY_ALL && belongs_to_unit(s, uc.pid))) {
      reject(s, uc.pid, fds, nfds, "from pid %d, but only %s %d may send (NotifyAccess=%s): %s",
             (int)uc.pid, s->notify_access == SUP_NOTIFY_ALL ? "the processes of" : "main pid",
             (int)s->main_pid, s->notify_access == SUP_NOTIFY_ALL ? "all" : "main", buf);
      continue;
    }
    handle_message(s, buf, &uc, fds, nfds);
  }
}

/* ---- deadlines and the thread ---------------------------------------------------------- */

static uint64_t watchdog_deadline(const sup_t *s) {
  uint64_t ns;
  if ((s->state != SUP_RUNNING && s->state != SUP_RELOADING) || s->wd_usec == 0 ||
      s->wd_usec == SUP_INFINITY)
    return 0;
  ns = usec_to_ns(s->wd_usec);
  return ns > UINT64_MAX - s->wd_last_ns ? 0 : s->wd_last_ns + ns;
}

static int next_timeout_ms(const sup_t *s) {
  uint64_t d[] = {s->deadline_start, s->deadline_kill, s->deadline_restart,
                  watchdog_deadline(s)};
  uint64_t min = 0, now = now_ns();
  for (size_t i = 0; i < sizeof d / sizeof *d; i++)
    if (d[i] && (!min || d[i] < min)) min = d[i];
  if (!min) return -1;
  if (min <= now) return 0;
  return (min - now) / 1000000 >= INT_MAX ? INT_MAX : (int)((min - now + 999999) / 1000000);
}

static void run_timers(sup_t *s) {
  uint64_t now = now_ns(), wd = watchdog_deadline(s);

  if (s->deadline_start && now >= s->deadline_start) {
    s->deadline_start = 0;
    if (s->state == SUP_RELOADING) {
      /* systemd gives up on the reload and calls the service running again. */
      ev_add(s, SUP_EV_TIMEOUT, s->main_pid, 0, "no READY=1 after RELOADING=1 in time");
      s->state = SUP_RUNNING;
      s->wd_last_ns = now;
    } else if (s->state == SUP_STARTING) {
      ev_add(s, SUP_EV_TIMEOUT, s->main_pid, 0, "no READY=1 within TimeoutStartSec=");
      set_pending(s, SUP_RESULT_TIMEOUT);
      enter_stop(s, SIGTERM, s->timeout_stop_usec, "start timeout");
    }
  }
  if (wd && now >= wd) watchdog_fire(s, "watchdog timeout");
  if (s->deadline_kill && now >= s->deadline_kill) {
    s->deadline_kill = 0;
    if (s->main_pid > 0) {
      ev_add(s, SUP_EV_TIMEOUT, s->main_pid, 0, "still running at the stop/abort timeout");
      set_pending(s, SUP_RESULT_TIMEOUT);
      signal_main(s, SIGKILL, "final kill");
    }
  }
  if (s->deadline_restart && now >= s->deadline_restart) {
    s->deadline_restart = 0;
    if (s->state == SUP_AUTO_RESTART && do_start(s, true) < 0) {
      s->state = SUP_FAILED;
      if (!s->fd_store_preserve) store_flush(s);
    }
  }
}

static void on_store_event(sup_t *s, uint64_t id, uint32_t events) {
  for (size_t i = 0; i < s->n_store; i++)
    if (s->store[i].id == id) {
      if (events & (EPOLLHUP | EPOLLERR)) {
        ev_add(s, SUP_EV_FD_REMOVED, 0, 1, "%s (POLLHUP/POLLERR)", s->store[i].name);
        store_drop_at(s, i);
      }
      return;
    }
}

static void *sup_thread(void *arg) {
  sup_t *s = arg;
  struct epoll_event evs[16];

  pthread_mutex_lock(&s->mu);
  while (!s->quit) {
    int timeout = next_timeout_ms(s), n;
    pthread_mutex_unlock(&s->mu);
    n = epoll_wait(s->epfd, evs, 16, timeout);
    pthread_mutex_lock(&s->mu);
    if (n < 0 && errno != EINTR) {
      fprintf(stderr, "supervisor: epoll_wait: %s\n", strerror(errno));
      n = 0;
    }
    /* Notifications first: they were sent before any exit reported in this batch. */
    drain_notify(s);
    for (int i = 0; i < n; i++) {
      uint64_t u = evs[i].data.u64;
      switch (TAG_KIND(u)) {
      case TAG_WAKE: {
        uint64_t v;
        ssize_t r = read(s->wake_fd, &v, sizeof v);
        (void)r;
        break;
      }
      case TAG_CHILD: on_child_event(s); break;
      case TAG_MAIN: on_main_event(s); break;
      case TAG_STORE: on_store_event(s, TAG_ID(u), evs[i].events); break;
      default: break;
      }
    }
    if (s->cmd_done != s->cmd_seq) {
      s->cmd_rc = do_start(s, false);
      s->cmd_done = s->cmd_seq;
    }
    run_timers(s);
    pthread_cond_broadcast(&s->cond);
  }
  /* Leave nothing behind: the main process and the forked one, killed and reaped. */
  if (s->main_pid > 0 && s->main_pid != s->child_pid) {
    pidfd_send_signal(s->main_pidfd, SIGKILL, NULL, 0);
    close_main(s);
  }
  s->main_pid = 0;
  kill_child_sync(s);
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

/* ---- sup_new / sup_free ---------------------------------------------------------------- */

static const char *const managed_vars[] = {"NOTIFY_SOCKET",  "LISTEN_PID",    "LISTEN_FDS",
                                           "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"};

static bool same_var(const char *a, const char *b) {
  size_t la = strcspn(a, "="), lb = strcspn(b, "=");
  return la == lb && strncmp(a, b, la) == 0;
}

static bool is_managed(const char *entry) {
  for (size_t i = 0; i < sizeof managed_vars / sizeof *managed_vars; i++)
    if (same_var(entry, managed_vars[i])) return true;
  return false;
}

static int build_env(sup_t *s, const char *const *extra) {
  size_t n = 0, m = 0, k = 0;
  while (environ && environ[n])
    n++;
  while (extra && extra[m]) {
    if (!strchr(extra[m], '=') || is_managed(extra[m]))
      return fail(NULL, PP_EINVAL, "env entry '%s': not NAME=VALUE, or a protocol variable",
                  extra[m]);
    m++;
  }
  if (!(s->env_base = calloc(n + m + 1, sizeof *s->env_base))) return PP_ENOPRIVMEM;
  for (size_t i = 0; i < n; i++) {
    bool replaced = is_managed(environ[i]);
    for (size_t j = 0; j < m && !replaced; j++)
      replaced = same_var(environ[i], extra[j]);
    if (replaced) continue;
    if (!(s->env_base[k++] = strdup(environ[i]))) return PP_ENOPRIVMEM;
  }
  for (size_t j = 0; j < m; j++)
    if (!(s->env_base[k++] = strdup(extra[j]))) return PP_ENOPRIVMEM;
  s->n_env_base = k;
  return 0;
}

/* "@name" → abstract, else a path.  Returns the sockaddr length, or PP_EINVAL. */
static int make_addr(const char *where, struct sockaddr_un *sa) {
  size_t len = strlen(where);
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (len == 0 || len >= sizeof sa->sun_path) return PP_EINVAL;
  memcpy(sa->sun_path, where, len);
  if (where[0] == '@') {
    sa->sun_path[0] = '\0';
    return (int)(offsetof(struct sockaddr_un, sun_path) + len);
  }
  return (int)sizeof *sa;
}

static int open_listen(sup_t *s, int backlog, unsigned mode) {
  struct sockaddr_un sa;
  int len = make_addr(s->listen_path, &sa);
  if (len < 0) return fail(NULL, PP_EINVAL, "listen path '%s' does not fit", s->listen_path);
  if ((s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
    return fail(NULL, PP_EOS, "socket: %s", strerror(errno));
  if (s->listen_path[0] != '@') unlink(s->listen_path);
  if (bind(s->listen_fd, (struct sockaddr *)&sa, (socklen_t)len) < 0)
    return fail(NULL, PP_EOS, "bind %s: %s", s->listen_path, strerror(errno));
  if (s->listen_path[0] != '@' && chmod(s->listen_path, mode) < 0)
    return fail(NULL, PP_EOS, "chmod %s: %s", s->listen_path, strerror(errno));
  if (listen(s->listen_fd, backlog) < 0)
    return fail(NULL, PP_EOS, "listen %s: %s", s->listen_path, strerror(errno));
  return 0;
}

static int open_notify(sup_t *s, const char *path) {
  static unsigned counter;
  struct sockaddr_un sa;
  int one = 1, rcvbuf = NOTIFY_RCVBUF, len;

  if (path) {
    s->notify_value = strdup(path);
  } else {
    unsigned c = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    s->notify_value = xasprintf("@pinpool-supervisor/%d/%u/%llx", (int)getpid(), c,
                                (unsigned long long)(now_ns() & 0xffffffffffull));
  }
  if (!s->notify_value) return PP_ENOPRIVMEM;
  if ((len = make_addr(s->notify_value, &sa)) < 0)
    return fail(NULL, PP_EINVAL, "notify path '%s' does not fit", s->notify_value);
  if ((s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
    return fail(NULL, PP_EOS, "socket: %s", strerror(errno));
  if (s->notify_value[0] != '@') {
    unlink(s->notify_value);
    if (!(s->notify_unlink = strdup(s->notify_value))) return PP_ENOPRIVMEM;
  }
  if (bind(s->notify_fd, (struct sockaddr *)&sa, (socklen_t)len) < 0)
    return fail(NULL, PP_EOS, "bind %s: %s", s->notify_value, strerror(errno));
  if (setsockopt(s->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0)
    return fail(NULL, PP_EOS, "SO_PASSCRED: %s", strerror(errno));
  setsockopt(s->notify_fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf); /* best effort */
  return 0;
}

static char *dup_or_null(const char *p, bool *oom) {
  char *d;
  if (!p) return NULL;
  if (!(d = strdup(p))) *oom = true;
  return d;
}

int sup_new(const sup_config_t *cfg, sup_t **ret) {
  pthread_condattr_t ca;
  sigset_t all, old;
  struct epoll_event ev;
  sup_t *s;
  bool oom = false;
  size_t argc = 0;
  int rc;

  if (!cfg || !ret || !cfg->argv || !cfg->argv[0])
    return fail(NULL, PP_EINVAL, "sup_new: no argv");
  if (cfg->restart > SUP_RESTART_ALWAYS || cfg->notify_access > SUP_NOTIFY_NONE ||
      (cfg->socket_name && !fdname_is_valid(cfg->socket_name)) || cfg->watchdog_signal < 0 ||
      cfg->watchdog_signal >= NSIG || cfg->backlog < 0)
    return fail(NULL, PP_EINVAL,
                "sup_new: invalid setting (restart, notify_access, "
                "socket_name, watchdog_signal or backlog)");
  if (!(s = calloc(1, sizeof *s))) return PP_ENOPRIVMEM;
  s->listen_fd = s->notify_fd = s->epfd = s->wake_fd = -1;
  s->child_pidfd = s->main_pidfd = -1;
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cond, &ca);
  pthread_condattr_destroy(&ca);

  while (cfg->argv[argc])
    argc++;
  if (!(s->argv = calloc(argc + 1, sizeof *s->argv))) goto nomem;
  for (size_t i = 0; i < argc; i++)
    if (!(s->argv[i] = strdup(cfg->argv[i]))) goto nomem;
  s->log_path = dup_or_null(cfg->log_path, &oom);
  s->listen_path = dup_or_null(cfg->listen_path, &oom);
  s->socket_name = dup_or_null(cfg->socket_name ? cfg->socket_name : "pinpoold.socket", &oom);
  if (oom) goto nomem;
  if ((rc = build_env(s, cfg->env)) < 0) goto fail;

  s->notify_access = cfg->notify_access;
  s->fd_store_max = cfg->fd_store_max;
  s->fd_store_preserve = cfg->fd_store_preserve;
  s->core_dumps = cfg->core_dumps;
  s->verbose = cfg->verbose;
  s->watchdog_usec = cfg->watchdog_usec;
  s->watchdog_signal = cfg->watchdog_signal ? cfg->watchdog_signal : SIGABRT;
  s->timeout_start_usec =
      cfg->timeout_start_usec ? cfg->timeout_start_usec : DEFAULT_START_USEC;
  s->timeout_stop_usec = cfg->timeout_stop_usec ? cfg->timeout_stop_usec : DEFAULT_STOP_USEC;
  s->timeout_abort_usec =
      cfg->timeout_abort_usec ? cfg->timeout_abort_usec : s->timeout_stop_usec;
  s->restart = cfg->restart;
  s->restart_usec = cfg->restart_usec;
  s->seed = cfg->seed ? cfg->seed : (now_ns() ^ ((uint64_t)getpid() << 32)) | 1;
  s->rng = s->seed;
  if (!cfg->seed)
    fprintf(stderr, "supervisor: random seed %llu (set sup_config_t.seed to repeat)\n",
            (unsigned long long)s->seed);

  if (s->listen_path && (rc = open_listen(s, cfg->backlog ? cfg->backlog : SOMAXCONN,
                                          cfg->socket_mode ? cfg->socket_mode : 0666)) < 0)
    goto fail;
  if ((rc = open_notify(s, cfg->notify_path)) < 0) goto fail;
  if ((s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
      (s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
    rc = fail(NULL, PP_EOS, "epoll/eventfd: %s", strerror(errno));
    goto fail;
  }
  ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = TAG(TAG_WAKE, 0)};
  epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->wake_fd, &ev);
  ev = (struct epoll_event){.events = EPOLLIN, .data.u64 = TAG(TAG_NOTIFY, 0)};
  epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->notify_fd, &ev);

  /* The thread takes no signals (the test's handlers and sigwait()s keep them) except
   * SIGCHLD: its children's SIGCHLD is addressed to the forking thread, and the kernel
   * never discards a signal its target blocks — it would stay pending for the process
   * and wake some other thread's interruptible sleep with EINTR (a recv() with
   * SO_RCVTIMEO in the test), only to be ignored there. */
  sigfillset(&all);
  sigdelset(&all, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  rc = pthread_create(&s->thread, NULL, sup_thread, s);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) {
    rc = fail(NULL, PP_EOS, "pthread_create: %s", strerror(rc));
    goto fail;
  }
  s->thread_started = true;
  *ret = s;
  return 0;

nomem:
  rc = fail(NULL, PP_ENOPRIVMEM, "sup_new: out of memory");
fail:
  sup_free(s);
  return rc;
}

void sup_free(sup_t *s) {
  if (!s) return;
  if (s->thread_started) {
    pthread_mutex_lock(&s->mu);
    s->quit = true;
    pthread_mutex_unlock(&s->mu);
    wake(s);
    pthread_join(s->thread, NULL);
  }
  while (s->n_store)
    store_drop_at(s, s->n_store - 1);
  if (s->listen_fd >= 0) close(s->listen_fd);
  if (s->listen_path && s->listen_path[0] != '@' && s->listen_fd >= 0) unlink(s->listen_path);
  if (s->notify_fd >= 0) close(s->notify_fd);
  if (s->notify_unlink) unlink(s->notify_unlink);
  if (s->epfd >= 0) close(s->epfd);
  if (s->wake_fd >= 0) close(s->wake_fd);
  for (size_t i = 0; s->argv && s->argv[i]; i++)
    free(s->argv[i]);
  free(s->argv);
  for (size_t i = 0; s->env_base && s->env_base[i]; i++)
    free(s->env_base[i]);
  free(s->env_base);
  for (size_t i = 0; i < s->n_ev; i++)
    free(s->ev[i].text);
  free(s->ev);
  free(s->exit_log);
  free(s->store);
  free(s->log_path);
  free(s->listen_path);
  free(s->socket_name);
  free(s->notify_value);
  free(s->notify_unlink);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->mu);
  free(s);
}

/* ---- waiting (callers, under mu) ------------------------------------------------------- */

/* Absolute CLOCK_MONOTONIC deadline for timeout_ms; 0: none. */
static uint64_t wait_deadline(int timeout_ms) {
  return timeout_ms < 0 ? 0 : now_ns() + (uint64_t)timeout_ms * 1000000ull;
}

/* Sleep on cond until woken or deadline; false once the deadline has passed. */
static bool wait_cond(sup_t *s, uint64_t deadline) {
  struct timespec ts;
  if (!deadline) {
    pthread_cond_wait(&s->cond, &s->mu);
    return true;
  }
  if (now_ns() >= deadline) return false;
  ts.tv_sec = (time_t)(deadline / 1000000000ull);
  ts.tv_nsec = (long)(deadline % 1000000000ull);
  pthread_cond_timedwait(&s->cond, &s->mu, &ts);
  return true;
}

static const sup_exit_t *exit_of(const sup_t *s, unsigned gen) {
  for (size_t i = s->n_exit; i-- > 0;)
    if (s->exit_log[i].gen == gen) return &s->exit_log[i];
  return NULL;
}

static int describe_exit(const sup_exit_t *e, char *buf, size_t len) {
  if (!e) return snprintf(buf, len, "no exit recorded");
  if (e->code == CLD_EXITED)
    return snprintf(buf, len, "pid %d exited with status %d (result %s)", (int)e->pid,
                    e->status, sup_result_name(e->result));
  if (e->code == CLD_KILLED || e->code == CLD_DUMPED)
    return snprintf(buf, len, "pid %d was killed by SIG%s (result %s)", (int)e->pid,
                    sig_name(e->status), sup_result_name(e->result));
  return snprintf(buf, len, "pid %d ended (result %s)", (int)e->pid,
                  sup_result_name(e->result));
}

/* Wait until the exit of generation gen is recorded; copies it. */
static int wait_exit_of(sup_t *s, unsigned gen, uint64_t deadline, sup_exit_t *ret_exit) {
  const sup_exit_t *e;
  while (!(e = exit_of(s, gen))) {
    if (s->gen == gen && !process_alive(s))
      return fail(s, PP_ENOENT, "generation %u ended without an exit record", gen);
    if (!wait_cond(s, deadline))
      return fail(s, PP_EBUSY, "pid %d (generation %u) still running after the wait",
                  (int)s->main_pid, gen);
  }
  if (ret_exit) *ret_exit = *e;
  return 0;
}

/* ---- control --------------------------------------------------------------------------- */

int sup_start(sup_t *s) {
  unsigned seq;
  int rc;
  pthread_mutex_lock(&s->mu);
  if (process_alive(s)) {
    rc = fail(s, PP_EEXIST, "sup_start: pid %d is running", (int)s->main_pid);
    goto out;
  }
  seq = ++s->cmd_seq;
  wake(s);
  while (s->cmd_done != seq && !s->quit)
    wait_cond(s, 0);
  rc = s->quit ? PP_ENOENT : s->cmd_rc;
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_wait_ready(sup_t *s, int timeout_ms) {
  uint64_t deadline = wait_deadline(timeout_ms);
  char why[256];
  int rc = 0;

  pthread_mutex_lock(&s->mu);
  while (s->state != SUP_RUNNING) {
    if (s->state == SUP_DEAD || s->state == SUP_FAILED) {
      describe_exit(s->n_exit ? &s->exit_log[s->n_exit - 1] : NULL, why, sizeof why);
      rc = fail(s, PP_ENOENT, "no READY=1 and no daemon coming (state %s; last: %s)",
                sup_state_name(s->state), why);
      break;
    }
    if (!wait_cond(s, deadline)) {
      rc = fail(s, PP_EBUSY, "no READY=1 within %d ms (state %s, pid %d, generation %u%s%s)",
                timeout_ms, sup_state_name(s->state), (int)s->main_pid, s->gen,
                s->status[0] ? ", STATUS=" : "", s->status);
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_signal(sup_t *s, int sig) {
  int rc;
  pthread_mutex_lock(&s->mu);
  rc = s->main_pid > 0 ? signal_main(s, sig, "sup_signal")
                       : fail(s, PP_ENOENT, "sup_signal: no main process");
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_wait_exit(sup_t *s, int timeout_ms, sup_exit_t *ret_exit) {
  int rc;
  pthread_mutex_lock(&s->mu);
  rc = s->gen ? wait_exit_of(s, s->gen, wait_deadline(timeout_ms), ret_exit)
              : fail(s, PP_ENOENT, "sup_wait_exit: nothing was started");
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_wait_exit_of(sup_t *s, unsigned gen, int timeout_ms, sup_exit_t *ret_exit) {
  int rc;
  pthread_mutex_lock(&s->mu);
  rc = gen >= 1 && gen <= s->gen
           ? wait_exit_of(s, gen, wait_deadline(timeout_ms), ret_exit)
           : fail(s, PP_ENOENT, "sup_wait_exit_of: no generation %u (%u started)", gen, s->gen);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_kill(sup_t *s, int sig, int timeout_ms, sup_exit_t *ret_exit) {
  unsigned gen;
  int rc;
  pthread_mutex_lock(&s->mu);
  gen = s->gen;
  if (s->main_pid <= 0)
    rc = fail(s, PP_ENOENT, "sup_kill: no main process");
  else if (!(rc = signal_main(s, sig, "sup_kill")))
    rc = wait_exit_of(s, gen, wait_deadline(timeout_ms), ret_exit);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* Begin a stop of the running process (under mu). */
static void begin_stop(sup_t *s, bool then_restart) {
  uint64_t kill_at = deadline_after(s->timeout_stop_usec);
  s->stop_requested = true;
  s->restart_requested = then_restart;
  s->state = SUP_STOPPING;
  s->deadline_start = 0;
  if (s->main_pid > 0) signal_main(s, SIGTERM, then_restart ? "sup_restart" : "sup_stop");
  if (!s->deadline_kill || (kill_at && kill_at < s->deadline_kill)) s->deadline_kill = kill_at;
  wake(s);
}

int sup_stop(sup_t *s, int timeout_ms, sup_exit_t *ret_exit) {
  unsigned gen;
  int rc = 0;
  pthread_mutex_lock(&s->mu);
  gen = s->gen;
  if (!process_alive(s)) {
    if (s->state == SUP_AUTO_RESTART) { /* a stop cancels the pending restart */
      s->deadline_restart = 0;
      s->state = SUP_DEAD;
      if (!s->fd_store_preserve) store_flush(s);
    }
    if (ret_exit && gen && exit_of(s, gen)) *ret_exit = *exit_of(s, gen);
    goto out;
  }
  begin_stop(s, false);
  rc = wait_exit_of(s, gen, wait_deadline(timeout_ms), ret_exit);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_restart(sup_t *s, int timeout_ms) {
  uint64_t deadline = wait_deadline(timeout_ms);
  unsigned gen;
  int rc = 0;

  pthread_mutex_lock(&s->mu);
  if (!process_alive(s)) {
    pthread_mutex_unlock(&s->mu);
    return sup_start(s);
  }
  gen = s->gen;
  begin_stop(s, true);
  while (s->gen == gen) {
    if (s->state == SUP_FAILED || s->state == SUP_DEAD) {
      rc = fail(s, PP_ENOENT, "sup_restart: the new process did not start");
      break;
    }
    if (!wait_cond(s, deadline)) {
      rc = fail(s, PP_EBUSY, "sup_restart: pid %d has not exited yet", (int)s->main_pid);
      break;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_kill_random(sup_t *s, int sig, uint64_t min_uptime_us, uint64_t window_us,
                    int timeout_ms, sup_exit_t *ret_exit) {
  uint64_t deadline = wait_deadline(timeout_ms), delay_ns, target;
  unsigned gen;
  int rc = 0;

  pthread_mutex_lock(&s->mu);
  while (!process_alive(s)) {
    if (s->state != SUP_AUTO_RESTART) {
      rc = fail(s, PP_ENOENT, "sup_kill_random: no daemon and none coming (state %s)",
                sup_state_name(s->state));
      goto out;
    }
    if (!wait_cond(s, deadline)) {
      rc = fail(s, PP_EBUSY, "sup_kill_random: no restart within the wait");
      goto out;
    }
  }
  gen = s->gen;
  delay_ns = rng_next(&s->rng);
  if (window_us < UINT64_MAX) delay_ns %= window_us + 1;
  delay_ns = usec_to_ns(delay_ns);
  delay_ns = usec_to_ns(min_uptime_us) > UINT64_MAX - delay_ns
                 ? UINT64_MAX
                 : usec_to_ns(min_uptime_us) + delay_ns;
  target = delay_ns > UINT64_MAX - s->start_ns ? UINT64_MAX : s->start_ns + delay_ns;
  while (s->gen == gen && process_alive(s) && now_ns() < target) {
    uint64_t until = deadline && deadline < target ? deadline : target;
    if (!wait_cond(s, until) && until == deadline) {
      rc = fail(s, PP_EBUSY, "sup_kill_random: the kill moment lies beyond the wait");
      goto out;
    }
  }
  if (s->gen == gen && s->main_pid > 0 && !exit_of(s, gen))
    signal_main(s, sig, "sup_kill_random");
  rc = wait_exit_of(s, gen, deadline, ret_exit);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ---- what it saw ----------------------------------------------------------------------- */

int sup_info(sup_t *s, sup_info_t *ret) {
  pthread_mutex_lock(&s->mu);
  memset(ret, 0, sizeof *ret);
  ret->state = s->state;
  ret->main_pid = s->main_pid;
  ret->gen = s->gen;
  ret->restarts = s->restarts;
  ret->exits = s->exits;
  ret->watchdog_timeouts = s->wd_timeouts;
  ret->reloads = s->reloads;
  ret->fds_stored = (unsigned)s->n_store;
  ret->ready = s->state == SUP_RUNNING;
  ret->errno_value = s->errno_value;
  ret->watchdog_usec = s->wd_usec;
  ret->seed = s->seed;
  if (s->n_exit) ret->last_exit = s->exit_log[s->n_exit - 1];
  memcpy(ret->status, s->status, sizeof ret->status);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

size_t sup_event_count(sup_t *s) {
  size_t n;
  pthread_mutex_lock(&s->mu);
  n = s->n_ev;
  pthread_mutex_unlock(&s->mu);
  return n;
}

void sup_events_free(sup_event_t *events, int n) {
  for (int i = 0; events && i < n; i++)
    free(events[i].text);
  free(events);
}

int sup_events(sup_t *s, size_t from, sup_event_t **ret_events) {
  sup_event_t *out = NULL;
  int n = 0, rc;
  pthread_mutex_lock(&s->mu);
  if (from < s->n_ev) {
    size_t want = s->n_ev - from;
    if (want > INT_MAX || !(out = calloc(want, sizeof *out))) goto nomem;
    for (; (size_t)n < want; n++) {
      out[n] = s->ev[from + (size_t)n];
      if (!(out[n].text = strdup(s->ev[from + (size_t)n].text))) goto nomem;
    }
  }
  *ret_events = out;
  pthread_mutex_unlock(&s->mu);
  return n;
nomem:
  sup_events_free(out, n);
  rc = fail(s, PP_ENOPRIVMEM, "sup_events: out of memory");
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_count(sup_t *s, size_t from, sup_event_kind_t kind) {
  int n = 0;
  pthread_mutex_lock(&s->mu);
  for (size_t i = from; i < s->n_ev; i++)
    n += s->ev[i].kind == kind;
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* text holds line as one whole line. */
static bool text_has_line(const char *text, const char *line) {
  size_t k = strlen(line);
  for (const char *p = text; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, line, k) == 0 && (p[k] == '\n' || p[k] == '\0')) return true;
  return false;
}

int sup_wait_notify(sup_t *s, size_t from, const char *line, int timeout_ms) {
  uint64_t deadline = wait_deadline(timeout_ms);
  size_t i = from;
  int rc;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    for (; i < s->n_ev; i++)
      if (s->ev[i].kind == SUP_EV_NOTIFY && text_has_line(s->ev[i].text, line)) {
        rc = i > INT_MAX ? PP_ERANGE : (int)i;
        goto out;
      }
    if (!wait_cond(s, deadline)) {
      rc = fail(s, PP_EBUSY, "no notification with '%s' within %d ms", line, timeout_ms);
      goto out;
    }
  }
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

/* ---- the fd store, from the test's side ------------------------------------------------ */

int sup_fd_count(sup_t *s) {
  int n;
  pthread_mutex_lock(&s->mu);
  n = (int)s->n_store;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static int dup_stored(sup_t *s, size_t i, char *ret_name, int *ret_fd) {
  int fd = fcntl(s->store[i].fd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0)
    return fail(s, PP_EOS, "dup of stored fd '%s': %s", s->store[i].name, strerror(errno));
  if (ret_name) memcpy(ret_name, s->store[i].name, sizeof s->store[i].name);
  *ret_fd = fd;
  return 0;
}

int sup_fd_dup(sup_t *s, int i, char *ret_name, int *ret_fd) {
  int rc;
  pthread_mutex_lock(&s->mu);
  rc = i >= 0 && (size_t)i < s->n_store
           ? dup_stored(s, (size_t)i, ret_name, ret_fd)
           : fail(s, PP_ENOENT, "no stored fd #%d (%zu stored)", i, s->n_store);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_fd_dup_by_name(sup_t *s, const char *name, int *ret_fd) {
  int rc = PP_ENOENT;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n_store; i++)
    if (strcmp(s->store[i].name, name) == 0) {
      rc = dup_stored(s, i, NULL, ret_fd);
      goto out;
    }
  fail(s, rc, "no stored fd named '%s'", name);
out:
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_fd_store(sup_t *s, int fd, const char *name) {
  int copy, rc;
  pthread_mutex_lock(&s->mu);
  if (name && !fdname_is_valid(name))
    rc = fail(s, PP_EINVAL, "invalid fd name '%s'", name);
  else if ((copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
    rc = fail(s, PP_EOS, "sup_fd_store: dup: %s", strerror(errno));
  else
    rc = store_add(s, copy, name, true, 0);
  pthread_mutex_unlock(&s->mu);
  return rc;
}

int sup_fd_remove(sup_t *s, const char *name) {
  int n;
  pthread_mutex_lock(&s->mu);
  n = store_remove_name(s, name, "sup_fd_remove", 0);
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* ---- helpers --------------------------------------------------------------------------- */

const char *sup_notify_socket(sup_t *s) {
  return s->notify_value;
}
int sup_listen_fd(sup_t *s) {
  return s->listen_fd;
}

void sup_last_error(sup_t *s, char *buf, size_t len) {
  pthread_mutex_lock(&s->mu);
  snprintf(buf, len, "%s", s->err);
  pthread_mutex_unlock(&s->mu);
}

void sup_dump_log(sup_t *s) {
  char buf[4096];
  ssize_t n;
  off_t size;
  int fd;
  if (!s->log_path || (fd = open(s->log_path, O_RDONLY | O_CLOEXEC)) < 0) return;
  size = lseek(fd, 0, SEEK_END);
  lseek(fd, size > 16384 ? size - 16384 : 0, SEEK_SET);
  fprintf(stderr, "---- daemon log (%s) ----\n", s->log_path);
  while ((n = read(fd, buf, sizeof buf)) > 0)
    fwrite(buf, 1, (size_t)n, stderr);
  fprintf(stderr, "---- end of log ----\n");
  close(fd);
}
