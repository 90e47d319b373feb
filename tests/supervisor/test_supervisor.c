/*
 * test_supervisor.c — the test supervisor (tests/common/supervisor.h) against a fake
 * daemon (fake_daemon.c) that speaks to it only through the real libsystemd API, the
 * way pinpoold does: socket activation with names, the fd store across SIGKILLs,
 * FDSTOREREMOVE, the watchdog, READY/RELOADING/STOPPING/STATUS/MAINPID, NotifyAccess=,
 * Restart=, the timeouts, and fifty-odd kills at random moments.  Plus what libsystemd
 * itself requires of LISTEN_PID, checked directly.
 *
 * Each test gets a fresh folder with the listening socket and the daemon's log, and a
 * supervisor of its own (setup/teardown: a failing test still frees it, which kills its
 * daemon).  Timeouts here are bounds on waiting, generous for sanitizer builds; no test
 * depends on how fast anything is.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <systemd/sd-daemon.h>

#include "supervisor.h"

#ifndef FAKE_DAEMON
#error "FAKE_DAEMON must name the fake daemon's path"
#endif

#define WAIT_MS 20000 /* bound of every wait: sanitizer builds start slowly */
#define CHAOS_ROUNDS 60

extern char **environ;

typedef struct fx {
  char dir[64], sock[128], log[128];
  const char *argv[8];
  sup_config_t cfg;
  sup_t *s;
  char reply[4096];
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  snprintf(f->dir, sizeof f->dir, "/tmp/pp-sup-XXXXXX");
  if (!mkdtemp(f->dir)) {
    free(f);
    return -1;
  }
  snprintf(f->sock, sizeof f->sock, "%s/pinpool.sock", f->dir);
  snprintf(f->log, sizeof f->log, "%s/daemon.log", f->dir);
  f->argv[0] = FAKE_DAEMON;
  f->argv[1] = "--state";
  f->argv[2] = "hello";
  f->cfg = (sup_config_t){.argv = f->argv,
                          .listen_path = f->sock,
                          .log_path = f->log,
                          .fd_store_max = 8,
                          .seed = 1,
                          .verbose = getenv("PP_SUP_VERBOSE") != NULL};
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  sup_free(f->s);
  unlink(f->log);
  unlink(f->sock);
  rmdir(f->dir);
  free(f);
  return 0;
}

static void fx_new(fx_t *f) {
  assert_int_equal(sup_new(&f->cfg, &f->s), 0);
}

static void fx_ready(fx_t *f) {
  int rc = sup_wait_ready(f->s, WAIT_MS);
  if (rc) sup_dump_log(f->s);
  assert_int_equal(rc, 0);
}

static void fx_start(fx_t *f) {
  fx_new(f);
  assert_int_equal(sup_start(f->s), 0);
  fx_ready(f);
}

static int connect_to(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval tv = {.tv_sec = WAIT_MS / 1000};
  if (fd < 0) return -1;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Read the reply to the end (the fake daemon closes after one). */
static const char *read_reply(fx_t *f, int fd) {
  size_t n = 0;
  ssize_t r = 0;
  while (n < sizeof f->reply - 1 &&
         (r = recv(fd, f->reply + n, sizeof f->reply - 1 - n, 0)) > 0)
    n += (size_t)r;
  if (r < 0 && n == 0) fprintf(stderr, "reading the reply: %s\n", strerror(errno));
  f->reply[n] = '\0';
  close(fd);
  return f->reply;
}

/* One command to the fake daemon, its reply. */
static const char *ask(fx_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *ask(fx_t *f, const char *fmt, ...) {
  char cmd[1024];
  va_list ap;
  int fd, n;
  va_start(ap, fmt);
  n = vsnprintf(cmd, sizeof cmd - 1, fmt, ap);
  va_end(ap);
  cmd[n++] = '\n';
  fd = connect_to(f->sock);
  if (fd < 0) fprintf(stderr, "connect %s: %s\n", f->sock, strerror(errno));
  assert_true(fd >= 0);
  assert_int_equal(send(fd, cmd, (size_t)n, MSG_NOSIGNAL), n);
  return read_reply(f, fd);
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *e;
  assert_non_null(d);
  while ((e = readdir(d)))
    n += e->d_name[0] != '.';
  closedir(d);
  return n - 1; /* the directory's own fd */
}

/* Children of this process that are zombies. */
static int zombie_children(void) {
  DIR *d = opendir("/proc");
  struct dirent *e;
  int n = 0;
  assert_non_null(d);
  while ((e = readdir(d))) {
    char path[300], buf[512], *p, st;
    int ppid, fd;
    ssize_t r;
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) continue;
    r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0) continue;
    buf[r] = '\0';
    if ((p = strrchr(buf, ')')) && sscanf(p + 1, " %c %d", &st, &ppid) == 2 && st == 'Z' &&
        ppid == getpid())
      n++;
  }
  closedir(d);
  return n;
}

static bool pid_gone(pid_t pid) {
  return kill(pid, 0) < 0 && errno == ESRCH;
}

/* Wait (bounded) until fn(s) == want. */
static int wait_int(sup_t *s, int (*fn)(sup_t *), int want) {
  struct timespec ts = {.tv_nsec = 5 * 1000000L};
  int v = fn(s);
  for (int i = 0; i < WAIT_MS / 5 && v != want; i++) {
    nanosleep(&ts, NULL);
    v = fn(s);
  }
  return v;
}

static int state_of(sup_t *s) {
  sup_info_t i;
  sup_info(s, &i);
  return (int)i.state;
}

static int reloads_of(sup_t *s) {
  sup_info_t i;
  sup_info(s, &i);
  return (int)i.reloads;
}

/* The "name=value" field of the fake daemon's env reply. */
static const char *field(const char *reply, const char *name, char *buf, size_t len) {
  const char *p = reply;
  size_t k = strlen(name);
  while ((p = strstr(p, name))) {
    if ((p == reply || p[-1] == ' ') && p[k] == '=') {
      size_t n = strcspn(p + k + 1, " ");
      snprintf(buf, len, "%.*s", (int)n, p + k + 1);
      return buf;
    }
    p += k;
  }
  snprintf(buf, len, "(none)");
  return buf;
}

/* ---- the Restart= table and libsystemd's own rules ------------------------------------ */

static void restart_policy_follows_the_systemd_service_table(void **state) {
  /* Rows: results; columns: no, on-success, on-failure, on-abnormal, on-watchdog,
   * on-abort, always (systemd.service(5), table 2). */
  static const struct {
    sup_result_t r;
    bool want[7];
  } table[] = {
      {SUP_RESULT_SUCCESS, {0, 1, 0, 0, 0, 0, 1}},
      {SUP_RESULT_EXIT_CODE, {0, 0, 1, 0, 0, 0, 1}},
      {SUP_RESULT_SIGNAL, {0, 0, 1, 1, 0, 1, 1}},
      {SUP_RESULT_CORE_DUMP, {0, 0, 1, 1, 0, 1, 1}},
      {SUP_RESULT_TIMEOUT, {0, 0, 1, 1, 0, 0, 1}},
      {SUP_RESULT_WATCHDOG, {0, 0, 1, 1, 1, 0, 1}},
      {SUP_RESULT_PROTOCOL, {0, 0, 1, 1, 0, 0, 1}},
  };
  (void)state;
  for (size_t i = 0; i < sizeof table / sizeof *table; i++)
    for (int p = SUP_RESTART_NO; p <= SUP_RESTART_ALWAYS; p++)
      if (sup_restart_applies((sup_restart_t)p, table[i].r) != table[i].want[p])
        fail_msg("Restart= policy %d, result %s: expected %d", p, sup_result_name(table[i].r),
                 table[i].want[p]);
}

/* In a child (the environment and fd 3 are changed): 0 when all checks hold, else the
 * number of the first that failed. */
static int listen_pid_checks(void) {
  int sv[2];
  char pid[32], **names = NULL;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0 || dup2(sv[0], 3) < 0) return 1;
  setenv("LISTEN_FDS", "1", 1);
  setenv("LISTEN_FDNAMES", "pinpoold.socket", 1);
  snprintf(pid, sizeof pid, "%d", (int)getppid());
  setenv("LISTEN_PID", pid, 1);
  if (sd_listen_fds(0) != 0) return 2; /* another process's fds: ignored */
  snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
  setenv("LISTEN_PID", pid, 1);
  if (sd_listen_fds(0) != 0) return 3;
  unsetenv("LISTEN_PID");
  if (sd_listen_fds(0) != 0) return 4; /* no LISTEN_PID: no fds */
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  setenv("LISTEN_PID", pid, 1);
  if (sd_listen_fds(0) != 1) return 5;
  if (!getenv("LISTEN_FDS") || !getenv("LISTEN_PID")) return 6; /* kept when not asked */
  if (sd_listen_fds_with_names(1, &names) != 1 || strcmp(names[0], "pinpoold.socket")) return 7;
  if (getenv("LISTEN_FDS") || getenv("LISTEN_PID") || getenv("LISTEN_FDNAMES")) return 8;
  if (!(fcntl(3, F_GETFD) & FD_CLOEXEC)) return 9; /* sd_listen_fds sets CLOEXEC */
  if (sd_listen_fds(0) != 0) return 10;            /* unset: nothing the second time */
  free(names[0]);
  free(names);
  return 0;
}

static void libsystemd_takes_listen_fds_only_when_listen_pid_is_its_own(void **state) {
  int st;
  pid_t p = fork();
  (void)state;
  assert_true(p >= 0);
  if (p == 0) _exit(listen_pid_checks());
  assert_int_equal(waitpid(p, &st, 0), p);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- start-up: what the daemon is handed ----------------------------------------------- */

static void daemon_gets_the_socket_at_fd_3_with_its_own_pid_and_nothing_else(void **state) {
  fx_t *f = *state;
  char pid[32], lpid[32], buf[256];
  int leak[2];
  sup_exit_t ex;

  /* An fd the test holds without O_CLOEXEC must not reach the daemon. */
  assert_int_equal(pipe(leak), 0);
  f->cfg.fd_store_preserve = true; /* Restart=no: keep the store for the start by hand */
  fx_start(f);
  assert_string_equal(ask(f, "startfds"), "0,1,2,3");
  ask(f, "env");
  field(f->reply, "pid", pid, sizeof pid);
  assert_string_equal(field(f->reply, "LISTEN_PID", lpid, sizeof lpid), pid);
  assert_string_equal(field(f->reply, "LISTEN_FDS", buf, sizeof buf), "1");
  assert_string_equal(field(f->reply, "LISTEN_FDNAMES", buf, sizeof buf), "pinpoold.socket");
  assert_string_equal(field(f->reply, "WATCHDOG_USEC", buf, sizeof buf), "-");
  assert_string_equal(field(f->reply, "unset", buf, sizeof buf), "1");

  /* After a crash the stored state follows the socket, at fd 4, named. */
  assert_int_equal(sup_kill(f->s, SIGKILL, WAIT_MS, &ex), 0);
  assert_int_equal(sup_start(f->s), 0);
  fx_ready(f);
  assert_string_equal(ask(f, "startfds"), "0,1,2,3,4");
  ask(f, "env");
  assert_string_equal(field(f->reply, "LISTEN_FDS", buf, sizeof buf), "2");
  assert_string_equal(field(f->reply, "LISTEN_FDNAMES", buf, sizeof buf),
                      "pinpoold.socket:state");
  field(f->reply, "pid", pid, sizeof pid);
  assert_string_equal(field(f->reply, "LISTEN_PID", lpid, sizeof lpid), pid);
  close(leak[0]);
  close(leak[1]);
}

static void ready_status_errno_and_mainpid_are_recorded(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_event_t *ev;
  int n, i;
  bool saw_ready = false;

  f->cfg.restart = SUP_RESTART_ON_FAILURE;
  fx_start(f);
  sup_info(f->s, &info);
  assert_int_equal(info.state, SUP_RUNNING);
  assert_true(info.ready);
  assert_true(info.main_pid > 0);
  assert_int_equal(info.gen, 1);
  assert_string_equal(info.status, "serving, state created");
  i = sup_wait_notify(f->s, 0, "READY=1", WAIT_MS);
  assert_true(i >= 0);
  n = sup_events(f->s, 0, &ev);
  assert_true(n > i);
  assert_int_equal(ev[i].pid, info.main_pid);
  assert_non_null(strstr(ev[i].text, "MAINPID="));
  for (int k = 0; k < n; k++)
    saw_ready |= ev[k].kind == SUP_EV_READY;
  assert_true(saw_ready);
  /* MAINPID= naming the main process itself changes nothing. */
  assert_int_equal(sup_count(f->s, 0, SUP_EV_MAINPID), 0);
  sup_events_free(ev, n);

  assert_string_equal(ask(f, "notify STATUS=degraded\\nERRNO=5"), "ok");
  assert_true(sup_wait_notify(f->s, 0, "ERRNO=5", WAIT_MS) >= 0);
  sup_info(f->s, &info);
  assert_string_equal(info.status, "degraded");
  assert_int_equal(info.errno_value, 5);
}

/* ---- the fd store ---------------------------------------------------------------------- */

static void stored_memfd_survives_sigkill_and_the_restart_reads_it_back(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_exit_t ex;
  char buf[64] = "";
  pid_t first;
  int fd;

  f->cfg.restart = SUP_RESTART_ON_FAILURE;
  fx_start(f);
  assert_string_equal(ask(f, "set kept across the crash"), "ok");
  assert_int_equal(sup_fd_count(f->s), 1);
  /* The supervisor holds the same memfd: its bytes are the daemon's. */
  assert_int_equal(sup_fd_dup_by_name(f->s, "state", &fd), 0);
  assert_true(pread(fd, buf, sizeof buf - 1, 0) > 0);
  assert_string_equal(buf, "kept across the crash");
  close(fd);

  sup_info(f->s, &info);
  first = info.main_pid;
  assert_int_equal(sup_kill(f->s, SIGKILL, WAIT_MS, &ex), 0);
  assert_int_equal(ex.pid, first);
  assert_int_equal(ex.code, CLD_KILLED);
  assert_int_equal(ex.status, SIGKILL);
  assert_int_equal(ex.result, SUP_RESULT_SIGNAL);
  assert_true(ex.restarting);

  fx_ready(f); /* Restart=on-failure brought it back */
  sup_info(f->s, &info);
  assert_int_not_equal(info.main_pid, first);
  assert_int_equal(info.gen, 2);
  assert_int_equal(info.restarts, 1);
  assert_string_equal(info.status, "serving, state found");
  assert_string_equal(ask(f, "get"), "kept across the crash");
  assert_int_equal(sup_fd_count(f->s), 1);
}

static void a_connect_during_the_restart_window_waits_in_the_backlog(void **state) {
  fx_t *f = *state;
  sup_exit_t ex;
  int fd;

  f->cfg.fd_store_preserve = true; /* Restart=no: keep the store for the manual start */
  fx_start(f);
  assert_string_equal(ask(f, "set answered by the next daemon"), "ok");
  assert_int_equal(sup_kill(f->s, SIGKILL, WAIT_MS, &ex), 0);
  assert_int_equal(state_of(f->s), SUP_FAILED);

  /* No daemon at all now: the connect still succeeds (no ENOENT, no ECONNREFUSED)... */
  fd = connect_to(f->sock);
  if (fd < 0) fprintf(stderr, "connect during the restart window: %s\n", strerror(errno));
  assert_true(fd >= 0);
  assert_int_equal(send(fd, "get\n", 4, MSG_NOSIGNAL), 4);
  /* ... and the request is answered by the daemon started afterwards. */
  assert_int_equal(sup_start(f->s), 0);
  assert_string_equal(read_reply(f, fd), "answered by the next daemon");
}

static void fdstoreremove_drops_every_fd_of_that_name(void **state) {
  fx_t *f = *state;
  char buf[64];

  f->cfg.fd_store_preserve = true;
  fx_start(f);
  assert_string_equal(ask(f, "store extra 2"), "ok");
  assert_int_equal(wait_int(f->s, sup_fd_count, 3), 3);
  assert_string_equal(ask(f, "notify FDSTOREREMOVE=1\\nFDNAME=extra"), "ok");
  assert_int_equal(wait_int(f->s, sup_fd_count, 1), 1);
  assert_true(sup_count(f->s, 0, SUP_EV_FD_REMOVED) >= 1);
  /* Without FDNAME= nothing is removed. */
  assert_string_equal(ask(f, "notify FDSTOREREMOVE=1"), "ok");
  assert_true(sup_wait_notify(f->s, 0, "FDSTOREREMOVE=1", WAIT_MS) >= 0);
  assert_int_equal(sup_fd_count(f->s), 1);

  assert_int_equal(sup_restart(f->s, WAIT_MS), 0);
  fx_ready(f);
  ask(f, "env");
  assert_string_equal(field(f->reply, "LISTEN_FDNAMES", buf, sizeof buf),
                      "pinpoold.socket:state");
}

static void fds_sent_without_fdstore_are_closed_and_the_barrier_works(void **state) {
  fx_t *f = *state;
  size_t mark;

  fx_start(f);
  mark = sup_event_count(f->s);
  assert_string_equal(ask(f, "sendfd STATUS=with a loose fd"), "ok");
  assert_true(sup_wait_notify(f->s, mark, "STATUS=with a loose fd", WAIT_MS) >= 0);
  assert_int_equal(sup_count(f->s, mark, SUP_EV_FD_DROPPED), 1);
  assert_int_equal(sup_fd_count(f->s), 1);
  /* sd_notify_barrier() returns only when its pipe's write end was closed by us. */
  assert_string_equal(ask(f, "barrier"), "ok 1");
}

static void an_fd_already_stored_is_kept_once_under_its_first_name(void **state) {
  fx_t *f = *state;
  char name[SUP_FDNAME_MAX + 1];
  size_t mark;
  int fd;

  fx_start(f);
  mark = sup_event_count(f->s);
  assert_string_equal(ask(f, "store-state again"), "ok");
  assert_true(sup_wait_notify(f->s, mark, "FDNAME=again", WAIT_MS) >= 0);
  assert_int_equal(sup_count(f->s, mark, SUP_EV_FD_DUPLICATE), 1);
  assert_int_equal(sup_fd_count(f->s), 1);
  assert_int_equal(sup_fd_dup(f->s, 0, name, &fd), 0);
  assert_string_equal(name, "state");
  close(fd);
  /* The test's own copy of the same open file is a duplicate too. */
  assert_int_equal(sup_fd_dup_by_name(f->s, "state", &fd), 0);
  assert_int_equal(sup_fd_store(f->s, fd, "mine"), 0);
  close(fd);
  assert_int_equal(sup_fd_dup(f->s, 1, NULL, &fd), PP_ENOENT);
}

static void a_missing_or_invalid_fdname_stores_as_stored(void **state) {
  fx_t *f = *state;
  char name[SUP_FDNAME_MAX + 1];
  size_t mark;
  int fd;

  fx_start(f);
  mark = sup_event_count(f->s);
  assert_string_equal(ask(f, "sendfd FDSTORE=1"), "ok");
  assert_string_equal(ask(f, "sendfd FDSTORE=1\\nFDNAME=a:b"), "ok");
  assert_int_equal(wait_int(f->s, sup_fd_count, 3), 3);
  for (int i = 1; i < 3; i++) {
    assert_int_equal(sup_fd_dup(f->s, i, name, &fd), 0);
    assert_string_equal(name, "stored");
    close(fd);
  }
  assert_int_equal(sup_count(f->s, mark, SUP_EV_NOTIFY_REJECTED), 1); /* the bad name */
}

static void fd_store_max_bounds_the_store(void **state) {
  fx_t *f = *state;
  size_t mark;

  f->cfg.fd_store_max = 2;
  fx_start(f);
  mark = sup_event_count(f->s);
  assert_string_equal(ask(f, "store more 3"), "ok");
  assert_true(sup_wait_notify(f->s, mark, "FDNAME=more", WAIT_MS) >= 0);
  assert_int_equal(sup_fd_count(f->s), 2);
  assert_int_equal(sup_count(f->s, mark, SUP_EV_FD_STORED), 1);
  assert_int_equal(sup_count(f->s, mark, SUP_EV_FD_DROPPED), 2);
}

static void fd_store_max_0_disables_the_store(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_exit_t ex;

  f->cfg.fd_store_max = 0;
  f->cfg.restart = SUP_RESTART_ON_FAILURE;
  fx_start(f);
  assert_int_equal(sup_fd_count(f->s), 0);
  assert_int_equal(sup_count(f->s, 0, SUP_EV_FD_DROPPED), 1);
  assert_int_equal(sup_kill(f->s, SIGKILL, WAIT_MS, &ex), 0);
  fx_ready(f);
  sup_info(f->s, &info);
  assert_string_equal(info.status, "serving, state created"); /* nothing came back */
}

static void the_store_is_emptied_when_the_daemon_stops_for_good_unless_preserved(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_exit_t ex;

  fx_start(f);
  assert_int_equal(sup_stop(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(ex.result, SUP_RESULT_SUCCESS); /* SIGTERM is a clean end */
  assert_int_equal(state_of(f->s), SUP_DEAD);
  assert_int_equal(sup_fd_count(f->s), 0);
  assert_int_equal(sup_count(f->s, 0, SUP_EV_FD_FLUSHED), 1);
  sup_free(f->s);
  f->s = NULL;

  f->cfg.fd_store_preserve = true;
  fx_start(f);
  assert_int_equal(sup_stop(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(sup_fd_count(f->s), 1);
  assert_int_equal(sup_start(f->s), 0);
  fx_ready(f);
  sup_info(f->s, &info);
  assert_string_equal(info.status, "serving, state found");
}

static void the_test_can_hand_the_daemon_a_prepared_fd(void **state) {
  fx_t *f = *state;
  int fd = memfd_create("seed", MFD_CLOEXEC);

  assert_true(fd >= 0);
  assert_int_equal(write(fd, "seeded by the test", 18), 18);
  fx_new(f);
  assert_int_equal(sup_fd_store(f->s, fd, "state"), 1);
  close(fd);
  assert_int_equal(sup_fd_store(f->s, 0, "a:b"), PP_EINVAL);
  assert_int_equal(sup_start(f->s), 0);
  fx_ready(f);
  assert_string_equal(ask(f, "get"), "seeded by the test");
  assert_int_equal(sup_fd_remove(f->s, "state"), 1);
  assert_int_equal(sup_fd_count(f->s), 0);
}

static void a_stored_socket_is_dropped_when_its_peer_hangs_up(void **state) {
  fx_t *f = *state;
  int sv[2];

  fx_new(f);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  assert_int_equal(sup_fd_store(f->s, sv[0], "conn"), 1);
  close(sv[0]);
  assert_int_equal(sup_fd_count(f->s), 1);
  close(sv[1]);
  assert_int_equal(wait_int(f->s, sup_fd_count, 0), 0);
  assert_int_equal(sup_count(f->s, 0, SUP_EV_FD_REMOVED), 1);
}

/* ---- the watchdog ---------------------------------------------------------------------- */

static void the_watchdog_aborts_a_daemon_that_stops_pinging_and_restarts_it(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_exit_t ex;
  char buf[64], pid[32];

  f->cfg.watchdog_usec = 1000000; /* pinged every 250 ms */
  f->cfg.restart = SUP_RESTART_ON_FAILURE;
  fx_start(f);
  ask(f, "env");
  assert_string_equal(field(f->reply, "WATCHDOG_USEC", buf, sizeof buf), "1000000");
  field(f->reply, "pid", pid, sizeof pid);
  assert_string_equal(field(f->reply, "WATCHDOG_PID", buf, sizeof buf), pid);

  assert_string_equal(ask(f, "stop-pinging"), "ok");
  assert_int_equal(sup_wait_exit_of(f->s, 1, WAIT_MS, &ex), 0);
  assert_int_equal(ex.result, SUP_RESULT_WATCHDOG);
  assert_true(ex.code == CLD_KILLED || ex.code == CLD_DUMPED);
  assert_int_equal(ex.status, SIGABRT);
  assert_true(ex.restarting);
  fx_ready(f);
  sup_info(f->s, &info);
  assert_true(info.watchdog_timeouts >= 1);
  assert_true(info.restarts >= 1);
  assert_true(sup_count(f->s, 0, SUP_EV_WATCHDOG) >= 1);
}

static void
a_daemon_that_ignores_the_watchdog_signal_is_killed_after_the_abort_timeout(void **state) {
  fx_t *f = *state;
  sup_exit_t ex;

  f->cfg.watchdog_usec = 1000000;
  f->cfg.timeout_abort_usec = 200000;
  fx_start(f);
  assert_string_equal(ask(f, "ignore ABRT"), "ok");
  assert_string_equal(ask(f, "stop-pinging"), "ok");
  assert_int_equal(sup_wait_exit(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(ex.code, CLD_KILLED);
  assert_int_equal(ex.status, SIGKILL);
  assert_int_equal(ex.result, SUP_RESULT_WATCHDOG); /* the first failure is the result */
  assert_false(ex.restarting);                      /* Restart=no */
  assert_int_equal(state_of(f->s), SUP_FAILED);
}

static void watchdog_trigger_and_a_watchdog_usec_override_both_fire(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_exit_t ex;

  f->cfg.restart = SUP_RESTART_ON_WATCHDOG; /* no WatchdogSec= at all */
  fx_start(f);
  /* The abort may come before the daemon gets to reply: the reply is not waited for,
   * and the restart may be done before this thread asks for the exit. */
  ask(f, "notify WATCHDOG=trigger");
  assert_int_equal(sup_wait_exit_of(f->s, 1, WAIT_MS, &ex), 0);
  assert_int_equal(ex.result, SUP_RESULT_WATCHDOG);
  assert_int_equal(ex.status, SIGABRT);
  fx_ready(f);

  /* The daemon sets its own timeout and never pings (no WATCHDOG_USEC in its env). */
  ask(f, "notify WATCHDOG_USEC=300000");
  assert_int_equal(sup_wait_exit_of(f->s, 2, WAIT_MS, &ex), 0);
  assert_int_equal(ex.result, SUP_RESULT_WATCHDOG);
  fx_ready(f);
  sup_info(f->s, &info);
  assert_int_equal(info.watchdog_timeouts, 2);
  assert_int_equal(info.watchdog_usec, 0); /* the override ends with its process */
}

/* ---- stopping, reloading, MAINPID, NotifyAccess ---------------------------------------- */

static void stopping_then_a_clean_exit_is_not_restarted_under_on_failure(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_exit_t ex;

  f->cfg.restart = SUP_RESTART_ON_FAILURE;
  fx_start(f);
  assert_string_equal(ask(f, "stop"), "ok");
  assert_true(sup_wait_notify(f->s, 0, "STOPPING=1", WAIT_MS) >= 0);
  assert_int_equal(sup_wait_exit(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(ex.code, CLD_EXITED);
  assert_int_equal(ex.status, 0);
  assert_int_equal(ex.result, SUP_RESULT_SUCCESS);
  assert_false(ex.restarting);
  sup_info(f->s, &info);
  assert_int_equal(info.state, SUP_DEAD);
  assert_int_equal(info.restarts, 0);
  assert_string_equal(info.status, "stopping");
  assert_int_equal(sup_wait_ready(f->s, 100), PP_ENOENT);
}

static void a_daemon_that_hangs_after_stopping_is_killed_at_the_stop_timeout(void **state) {
  fx_t *f = *state;
  sup_exit_t ex;

  f->cfg.timeout_stop_usec = 200000;
  f->cfg.restart = SUP_RESTART_ON_FAILURE;
  fx_start(f);
  assert_string_equal(ask(f, "notify STOPPING=1"), "ok");
  assert_int_equal(sup_wait_exit_of(f->s, 1, WAIT_MS, &ex), 0);
  assert_int_equal(ex.status, SIGKILL);
  assert_int_equal(ex.result, SUP_RESULT_TIMEOUT);
  assert_true(ex.restarting);
  fx_ready(f);
}

static void reload_and_reexec_in_place_keep_the_pid_and_the_state(void **state) {
  fx_t *f = *state;
  sup_info_t before, after;
  size_t mark;

  fx_start(f);
  assert_string_equal(ask(f, "set survives the re-exec"), "ok");
  sup_info(f->s, &before);
  mark = sup_event_count(f->s);
  assert_string_equal(ask(f, "reexec"), "ok");
  assert_true(sup_wait_notify(f->s, mark, "RELOADING=1", WAIT_MS) >= 0);
  assert_int_equal(wait_int(f->s, reloads_of, 1), 1);
  fx_ready(f);
  sup_info(f->s, &after);
  assert_int_equal(after.main_pid, before.main_pid);
  assert_int_equal(after.gen, 1);
  assert_int_equal(after.exits, 0);
  assert_string_equal(after.status, "serving, state found");
  assert_string_equal(ask(f, "get"), "survives the re-exec");
  assert_string_equal(ask(f, "startfds"), "0,1,2,3,4");
}

static void mainpid_moves_supervision_to_the_named_process(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_exit_t ex;
  pid_t forked, handed;

  fx_start(f);
  sup_info(f->s, &info);
  forked = info.main_pid;
  assert_int_equal(sscanf(ask(f, "handoff"), "ok %d", &handed), 1);
  for (int i = 0; i < WAIT_MS / 5; i++) {
    sup_info(f->s, &info);
    if (info.main_pid == handed) break;
    nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
  }
  assert_int_equal(info.main_pid, handed);
  assert_int_equal(sup_count(f->s, 0, SUP_EV_MAINPID), 1);

  /* Its end is the service's end; the forked process goes with it. */
  assert_int_equal(sup_kill(f->s, SIGKILL, WAIT_MS, &ex), 0);
  assert_int_equal(ex.pid, handed);
  assert_int_equal(ex.code, 0); /* not our child: status unknown */
  assert_int_equal(state_of(f->s), SUP_DEAD);
  assert_true(pid_gone(forked));
}

static void notify_access_main_refuses_children_and_all_accepts_them(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  size_t mark;
  int fd;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  const char *ns;

  fx_start(f);
  mark = sup_event_count(f->s);
  /* The child's barrier returned, so both its messages (STATUS=, then BARRIER=1) have
   * been read, and refused. */
  assert_string_equal(ask(f, "child-notify STATUS=from a child"), "ok");
  assert_int_equal(sup_count(f->s, mark, SUP_EV_NOTIFY_REJECTED), 2);
  assert_int_equal(sup_count(f->s, mark, SUP_EV_NOTIFY), 0);
  sup_info(f->s, &info);
  assert_string_equal(info.status, "serving, state created");

  /* A stranger (this test process) is refused too. */
  ns = sup_notify_socket(f->s);
  memcpy(sa.sun_path, ns, strlen(ns));
  if (ns[0] == '@') sa.sun_path[0] = '\0';
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_int_equal(sendto(fd, "STATUS=stranger", 15, 0, (struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(ns))),
                   15);
  close(fd);
  for (int i = 0; i < WAIT_MS / 5 && sup_count(f->s, mark, SUP_EV_NOTIFY_REJECTED) < 3; i++)
    nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
  assert_int_equal(sup_count(f->s, mark, SUP_EV_NOTIFY_REJECTED), 3);
  sup_free(f->s);
  f->s = NULL;

  f->cfg.notify_access = SUP_NOTIFY_ALL;
  fx_start(f);
  assert_string_equal(ask(f, "child-notify STATUS=from a child"), "ok");
  assert_true(sup_wait_notify(f->s, 0, "STATUS=from a child", WAIT_MS) >= 0);
  sup_info(f->s, &info);
  assert_string_equal(info.status, "from a child");
}

/* ---- start-up failures and the timeouts ------------------------------------------------ */

static void no_ready_within_the_start_timeout_is_result_timeout(void **state) {
  fx_t *f = *state;
  sup_exit_t ex;

  f->argv[3] = "--no-ready";
  f->cfg.timeout_start_usec = 200000;
  fx_new(f);
  assert_int_equal(sup_start(f->s), 0);
  assert_int_equal(sup_wait_ready(f->s, WAIT_MS), PP_ENOENT);
  assert_int_equal(sup_wait_exit(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(ex.result, SUP_RESULT_TIMEOUT);
  assert_int_equal(ex.status, SIGTERM);
  assert_int_equal(sup_count(f->s, 0, SUP_EV_TIMEOUT), 1);
}

static void a_clean_exit_before_ready_is_a_protocol_failure(void **state) {
  fx_t *f = *state;
  sup_exit_t ex;

  f->argv[3] = "--exit";
  f->argv[4] = "0";
  fx_new(f);
  assert_int_equal(sup_start(f->s), 0);
  assert_int_equal(sup_wait_exit(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(ex.result, SUP_RESULT_PROTOCOL);
  f->argv[4] = "3";
  sup_free(f->s);
  f->s = NULL;
  fx_new(f);
  assert_int_equal(sup_start(f->s), 0);
  assert_int_equal(sup_wait_exit(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(ex.code, CLD_EXITED);
  assert_int_equal(ex.status, 3);
  assert_int_equal(ex.result, SUP_RESULT_EXIT_CODE);
}

static void an_exec_failure_exits_203_like_systemd(void **state) {
  fx_t *f = *state;
  sup_exit_t ex;

  f->argv[0] = "/nonexistent/daemon";
  fx_new(f);
  assert_int_equal(sup_start(f->s), 0);
  assert_int_equal(sup_wait_exit(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(ex.code, CLD_EXITED);
  assert_int_equal(ex.status, 203);
  assert_int_equal(sup_wait_ready(f->s, WAIT_MS), PP_ENOENT);
}

static void wait_ready_gives_ebusy_when_its_own_bound_runs_out(void **state) {
  fx_t *f = *state;

  f->argv[3] = "--no-ready";
  f->cfg.timeout_start_usec = SUP_INFINITY;
  fx_new(f);
  assert_int_equal(sup_start(f->s), 0);
  assert_int_equal(sup_wait_ready(f->s, 50), PP_EBUSY);
  assert_int_equal(state_of(f->s), SUP_STARTING);
  assert_int_equal(sup_start(f->s), PP_EEXIST);
  assert_int_equal(sup_stop(f->s, WAIT_MS, NULL), 0);
}

static void restart_sec_holds_the_restart_and_start_or_stop_cut_it_short(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  sup_exit_t ex;

  f->cfg.restart = SUP_RESTART_ALWAYS;
  f->cfg.restart_usec = SUP_INFINITY; /* held until started by hand */
  fx_start(f);
  assert_int_equal(sup_kill(f->s, SIGKILL, WAIT_MS, &ex), 0);
  assert_int_equal(state_of(f->s), SUP_AUTO_RESTART);
  assert_int_equal(sup_start(f->s), 0);
  fx_ready(f);
  sup_info(f->s, &info);
  assert_int_equal(info.gen, 2);
  assert_int_equal(info.restarts, 0); /* a start by hand is not Restart= */

  assert_int_equal(sup_kill(f->s, SIGKILL, WAIT_MS, &ex), 0);
  assert_int_equal(state_of(f->s), SUP_AUTO_RESTART);
  assert_int_equal(sup_stop(f->s, WAIT_MS, NULL), 0);
  assert_int_equal(state_of(f->s), SUP_DEAD);
  assert_int_equal(sup_fd_count(f->s), 0);
}

static void stop_escalates_to_sigkill_when_sigterm_is_ignored(void **state) {
  fx_t *f = *state;
  sup_exit_t ex;

  f->cfg.timeout_stop_usec = 200000;
  fx_start(f);
  assert_string_equal(ask(f, "ignore TERM"), "ok");
  assert_int_equal(sup_stop(f->s, WAIT_MS, &ex), 0);
  assert_int_equal(ex.status, SIGKILL);
  assert_int_equal(ex.result, SUP_RESULT_TIMEOUT);
  assert_int_equal(state_of(f->s), SUP_FAILED);
}

static void restart_replaces_the_process_and_keeps_the_store(void **state) {
  fx_t *f = *state;
  sup_info_t before, after;

  fx_start(f);
  assert_string_equal(ask(f, "set through systemctl restart"), "ok");
  sup_info(f->s, &before);
  assert_int_equal(sup_restart(f->s, WAIT_MS), 0);
  fx_ready(f);
  sup_info(f->s, &after);
  assert_int_not_equal(after.main_pid, before.main_pid);
  assert_int_equal(after.gen, 2);
  assert_int_equal(after.restarts, 0);
  assert_string_equal(ask(f, "get"), "through systemctl restart");
}

/* ---- chaos, leaks, zombies ------------------------------------------------------------- */

static void fifty_random_kills_keep_the_stored_state_every_time(void **state) {
  fx_t *f = *state;
  struct timespec t0, t1;
  sup_info_t info;
  char want[32];
  int fds_before = count_fds(), signalled = 0, early = 0;

  f->cfg.restart = SUP_RESTART_ON_FAILURE;
  f->cfg.seed = 20240601;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  fx_start(f);
  assert_string_equal(ask(f, "set round 0"), "ok");
  for (int i = 1, written = 0; i <= CHAOS_ROUNDS; i++) {
    sup_exit_t ex;
    /* Two kills of three hit the process the last one brought back at a random moment
     * of its first 2 ms — it is usually still starting, sometimes just ready; every
     * third comes after a full round trip, with the daemon serving. */
    assert_int_equal(sup_kill_random(f->s, SIGKILL, 0, 2000, WAIT_MS, &ex), 0);
    assert_true(ex.restarting);
    signalled += ex.code == CLD_KILLED && ex.status == SIGKILL;
    early += ex.state == SUP_STARTING;
    if (i % 3 && i != CHAOS_ROUNDS) continue;
    fx_ready(f);
    snprintf(want, sizeof want, "round %d", written);
    assert_string_equal(ask(f, "get"), want); /* what a killed process wrote */
    assert_string_equal(ask(f, "set round %d", written = i), "ok");
    assert_int_equal(sup_fd_count(f->s), 1);
  }
  sup_info(f->s, &info);
  assert_int_equal(info.restarts, CHAOS_ROUNDS);
  assert_int_equal(info.gen, CHAOS_ROUNDS + 1);
  assert_int_equal(signalled, CHAOS_ROUNDS);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  print_message("%d kills (%d of them before READY=1) and restarts in %.2f s (seed %llu)\n",
                CHAOS_ROUNDS, early,
                (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
                (unsigned long long)info.seed);

  sup_free(f->s);
  f->s = NULL;
  assert_int_equal(count_fds(), fds_before);
  assert_int_equal(zombie_children(), 0);
}

static void free_leaves_no_daemon_no_fds_no_zombies_and_no_socket(void **state) {
  fx_t *f = *state;
  sup_info_t info;
  int fds_before = count_fds();

  f->cfg.watchdog_usec = 5000000;
  fx_start(f);
  assert_string_equal(ask(f, "store extra 3"), "ok");
  assert_int_equal(wait_int(f->s, sup_fd_count, 4), 4);
  sup_info(f->s, &info);
  assert_true(count_fds() > fds_before);
  sup_free(f->s); /* the daemon still runs: sup_free kills and reaps it */
  f->s = NULL;
  assert_true(pid_gone(info.main_pid));
  assert_int_equal(count_fds(), fds_before);
  assert_int_equal(zombie_children(), 0);
  assert_int_equal(access(f->sock, F_OK), -1);
}

static void a_test_process_that_dies_takes_its_daemon_along(void **state) {
  fx_t *f = *state;
  pid_t helper, daemon = 0;
  int p[2], st;

  /* A test process starts a daemon and dies without sup_free(). */
  assert_int_equal(pipe(p), 0);
  helper = fork();
  assert_true(helper >= 0);
  if (helper == 0) {
    sup_info_t info;
    sup_t *s;
    close(p[0]);
    if (sup_new(&f->cfg, &s) || sup_start(s) || sup_wait_ready(s, WAIT_MS)) _exit(1);
    sup_info(s, &info);
    _exit(write(p[1], &info.main_pid, sizeof info.main_pid) == sizeof info.main_pid ? 0 : 1);
  }
  close(p[1]);
  assert_int_equal(read(p[0], &daemon, sizeof daemon), sizeof daemon);
  close(p[0]);
  assert_int_equal(waitpid(helper, &st, 0), helper);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

  /* PR_SET_PDEATHSIG: gone, or a zombie left for init to reap. */
  for (int i = 0; i < WAIT_MS / 5; i++) {
    char path[64], buf[512], *q, c = '?';
    FILE *stat;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)daemon);
    if (!(stat = fopen(path, "r"))) break;
    if (fgets(buf, sizeof buf, stat) && (q = strrchr(buf, ')'))) sscanf(q + 1, " %c", &c);
    fclose(stat);
    if (c == 'Z' || c == 'X') break;
    nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
    assert_true(i + 1 < WAIT_MS / 5);
  }
}

typedef struct killer {
  sup_t *s;
  int fd;
} killer_t;

static void *kill_then_write(void *arg) {
  killer_t *k = arg;
  sup_exit_t ex;
  if (sup_kill(k->s, SIGKILL, WAIT_MS, &ex) == 0 && write(k->fd, "k", 1) != 1)
    perror("kill_then_write");
  return NULL;
}

static void a_daemon_s_death_does_not_interrupt_the_test_s_system_calls(void **state) {
  fx_t *f = *state;
  struct timeval tv = {.tv_sec = WAIT_MS / 1000};
  killer_t k;
  pthread_t t;
  int sv[2];

  f->cfg.restart = SUP_RESTART_ON_FAILURE;
  fx_start(f);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  /* With a timeout a signal's wake-up is EINTR instead of a silent restart. */
  assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  k = (killer_t){.s = f->s, .fd = sv[1]};
  for (int i = 0; i < 6; i++) {
    char c;
    ssize_t r;
    assert_int_equal(pthread_create(&t, NULL, kill_then_write, &k), 0);
    r = recv(sv[0], &c, 1, 0);
    if (r != 1) fprintf(stderr, "recv while the daemon died: %s\n", strerror(errno));
    assert_int_equal(r, 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    fx_ready(f);
  }
  close(sv[0]);
  close(sv[1]);
}

static void pp_supervise_survives_its_chaos_rounds(void **state) {
  fx_t *f = *state;
  const char *argv[] = {PP_SUPERVISE, "--quiet",   "--socket",   f->sock,   "--fd-store-max",
                        "4",          "--restart", "on-failure", "--chaos", "5",
                        "--window",   "20ms",      "--seed",     "7",       "--log",
                        f->log,       "--",        FAKE_DAEMON,  NULL};
  pid_t pid;
  int st;

  assert_int_equal(posix_spawn(&pid, PP_SUPERVISE, NULL, NULL, (char *const *)argv, environ),
                   0);
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  assert_int_equal(access(f->sock, F_OK), -1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(restart_policy_follows_the_systemd_service_table),
      cmocka_unit_test(libsystemd_takes_listen_fds_only_when_listen_pid_is_its_own),
      T(daemon_gets_the_socket_at_fd_3_with_its_own_pid_and_nothing_else),
      T(ready_status_errno_and_mainpid_are_recorded),
      T(stored_memfd_survives_sigkill_and_the_restart_reads_it_back),
      T(a_connect_during_the_restart_window_waits_in_the_backlog),
      T(fdstoreremove_drops_every_fd_of_that_name),
      T(fds_sent_without_fdstore_are_closed_and_the_barrier_works),
      T(an_fd_already_stored_is_kept_once_under_its_first_name),
      T(a_missing_or_invalid_fdname_stores_as_stored),
      T(fd_store_max_bounds_the_store),
      T(fd_store_max_0_disables_the_store),
      T(the_store_is_emptied_when_the_daemon_stops_for_good_unless_preserved),
      T(the_test_can_hand_the_daemon_a_prepared_fd),
      T(a_stored_socket_is_dropped_when_its_peer_hangs_up),
      T(the_watchdog_aborts_a_daemon_that_stops_pinging_and_restarts_it),
      T(a_daemon_that_ignores_the_watchdog_signal_is_killed_after_the_abort_timeout),
      T(watchdog_trigger_and_a_watchdog_usec_override_both_fire),
      T(stopping_then_a_clean_exit_is_not_restarted_under_on_failure),
      T(a_daemon_that_hangs_after_stopping_is_killed_at_the_stop_timeout),
      T(reload_and_reexec_in_place_keep_the_pid_and_the_state),
      T(mainpid_moves_supervision_to_the_named_process),
      T(notify_access_main_refuses_children_and_all_accepts_them),
      T(no_ready_within_the_start_timeout_is_result_timeout),
      T(a_clean_exit_before_ready_is_a_protocol_failure),
      T(an_exec_failure_exits_203_like_systemd),
      T(wait_ready_gives_ebusy_when_its_own_bound_runs_out),
      T(restart_sec_holds_the_restart_and_start_or_stop_cut_it_short),
      T(stop_escalates_to_sigkill_when_sigterm_is_ignored),
      T(restart_replaces_the_process_and_keeps_the_store),
      T(fifty_random_kills_keep_the_stored_state_every_time),
      T(free_leaves_no_daemon_no_fds_no_zombies_and_no_socket),
      T(a_test_process_that_dies_takes_its_daemon_along),
      T(a_daemon_s_death_does_not_interrupt_the_test_s_system_calls),
      T(pp_supervise_survives_its_chaos_rounds),
  };
  /* A daemon that closes a connection early must not kill the test with SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
