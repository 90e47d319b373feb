/*
 * fake_daemon.c — a tiny Type=notify daemon for the supervisor's tests, written against
 * the real libsystemd API exactly as pinpoold uses it: sd_listen_fds_with_names(),
 * sd_notify(), sd_pid_notify_with_fds(), sd_watchdog_enabled(), sd_notify_barrier().
 *
 * Start-up:
 *   1. note which fds are open and what LISTEN_* / WATCHDOG_* say, before libsystemd
 *      looks (so a test can see exactly what the supervisor handed over);
 *   2. sd_listen_fds_with_names(1, ...) — which also unsets LISTEN_*;
 *   3. the listening socket is the fd named --socket-name (default "pinpoold.socket")
 *      and must be a listening AF_UNIX stream socket; the state is the fd named "state":
 *      when there is none, a memfd holding --state TEXT is made and stored with
 *      FDSTORE=1 / FDNAME=state;
 *   4. READY=1 with STATUS= and MAINPID= (unless --no-ready), then WATCHDOG=1 every
 *      quarter of WATCHDOG_USEC while the watchdog is enabled and pinging is on.
 * Then it answers one command per connection on the listening socket (a line in, a reply
 * out, then close):
 *   get                  the state's bytes
 *   set TEXT             overwrite the state                                   → ok
 *   startfds             the fds open at start-up, "0,1,2,3"
 *   env                  what start-up saw (see reply_env)
 *   notify TEXT          sd_notify(TEXT), "\n" in TEXT meaning a newline         → ok
 *   sendfd TEXT          a fresh memfd sent with TEXT                          → ok
 *   store NAME K         K fresh memfds in one FDSTORE=1 message named NAME    → ok
 *   store-state NAME     the state's fd again, named NAME (a duplicate)        → ok
 *   child-notify TEXT    a forked child sends TEXT and a barrier, the parent
 *                        waits for it                                          → ok
 *   handoff              a forked child (sleeping) becomes MAINPID=            → ok PID
 *   barrier              sd_notify_barrier()                                   → ok RC
 *   stop-pinging         no more WATCHDOG=1                                    → ok
 *   ignore SIGNAME       SIG_IGN for TERM or ABRT                              → ok
 *   stop                 STOPPING=1, then exit 0                               → ok
 *   exit N               exit N                                                → ok
 *   reexec               RELOADING=1, then execve itself in place, handing its fds
 *                        on through LISTEN_* as a re-executing daemon does     → ok
 * Options: --state TEXT, --socket-name NAME, --no-ready, --exit N (exit at once with N,
 * before READY=1), --no-socket-ok (run without a listening socket: then it only waits).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define MAX_FDS 64

static char start_fds[512];
static char env_seen[2048];
static int env_unset_after;
static int lfd = -1, state_fd = -1;
static bool state_created, pinging = true;
static uint64_t wd_usec;
/* Every fd this process holds for the store, in LISTEN_FDS order, for reexec. */
static int held_fd[MAX_FDS];
static char *held_name[MAX_FDS];
static int n_held;

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void note_start_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int fds[256], n = 0, self;
  size_t off = 0;
  struct dirent *e;
  if (!d) return;
  self = dirfd(d);
  while ((e = readdir(d)) && n < 256) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == self) continue;
    fds[n++] = fd;
  }
  closedir(d);
  for (int i = 0; i < n; i++) /* readdir order is not numeric: sort */
    for (int j = i + 1; j < n; j++)
      if (fds[j] < fds[i]) {
        int t = fds[i];
        fds[i] = fds[j];
        fds[j] = t;
      }
  for (int i = 0; i < n && off < sizeof start_fds - 16; i++)
    off +=
        (size_t)snprintf(start_fds + off, sizeof start_fds - off, "%s%d", i ? "," : "", fds[i]);
}

static const char *env_or(const char *name) {
  const char *v = getenv(name);
  return v ? v : "-";
}

static void hold(int fd, const char *name) {
  if (n_held < MAX_FDS) {
    held_fd[n_held] = fd;
    held_name[n_held++] = strdup(name);
  }
}

static int make_memfd(const char *text) {
  int fd = memfd_create("fake-state", MFD_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
    perror("fake_daemon: memfd");
    exit(4);
  }
  return fd;
}

/* "a\nb" as typed (backslash, n) → a real newline. */
static void unescape(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (r[0] == '\\' && r[1] == 'n') {
      *w++ = '\n';
      r++;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
}

static void reply(int c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(int c, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0 &&
      send(c, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, MSG_NOSIGNAL) < 0)
    perror("fake_daemon: send");
}

static void reply_state(int c) {
  char buf[4096];
  ssize_t n = pread(state_fd, buf, sizeof buf - 1, 0);
  buf[n > 0 ? n : 0] = '\0';
  reply(c, "%s", buf);
}

static void do_reexec(char **argv) {
  char names[2048] = "", num[32];
  int high[MAX_FDS];
  size_t off = 0;

  sd_notify(0, "RELOADING=1\nSTATUS=re-executing");
  for (int i = 0; i < n_held; i++) {
    high[i] = fcntl(held_fd[i], F_DUPFD_CLOEXEC, 100);
    off +=
        (size_t)snprintf(names + off, sizeof names - off, "%s%s", i ? ":" : "", held_name[i]);
  }
  for (int i = 0; i < n_held; i++) {
    dup2(high[i], 3 + i); /* clears FD_CLOEXEC */
    close(high[i]);
  }
  snprintf(num, sizeof num, "%d", n_held);
  setenv("LISTEN_FDS", num, 1);
  setenv("LISTEN_FDNAMES", names, 1);
  snprintf(num, sizeof num, "%d", (int)getpid());
  setenv("LISTEN_PID", num, 1);
  execv("/proc/self/exe", argv);
  perror("fake_daemon: reexec");
  _exit(5);
}

static void handle(int c, char **argv) {
  char line[4096], *arg;
  ssize_t n = 0, r;
  struct timeval tv = {.tv_sec = 10};

  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (n < (ssize_t)sizeof line - 1 && (r = recv(c, line + n, 1, 0)) == 1 && line[n] != '\n')
    n++;
  line[n] = '\0';
  arg = strchr(line, ' ');
  if (arg)
    *arg++ = '\0';
  else
    arg = line + n;

  if (!strcmp(line, "get")) {
    reply_state(c);
  } else if (!strcmp(line, "set")) {
    if (ftruncate(state_fd, 0) < 0 || pwrite(state_fd, arg, strlen(arg), 0) < 0)
      reply(c, "err");
    else
      reply(c, "ok");
  } else if (!strcmp(line, "startfds")) {
    reply(c, "%s", start_fds);
  } else if (!strcmp(line, "env")) {
    reply(c, "%s unset=%d", env_seen, env_unset_after);
  } else if (!strcmp(line, "notify")) {
    unescape(arg);
    reply(c, sd_notify(0, arg) > 0 ? "ok" : "err");
  } else if (!strcmp(line, "sendfd")) {
    int fd = make_memfd("loose");
    unescape(arg);
    reply(c, sd_pid_notify_with_fds(0, 0, arg, &fd, 1) > 0 ? "ok" : "err");
    close(fd);
  } else if (!strcmp(line, "store")) {
    char name[256], msg[512];
    int k = 0, fds[16];
    if (sscanf(arg, "%255s %d", name, &k) != 2 || k < 1 || k > 16) {
      reply(c, "err");
    } else {
      for (int i = 0; i < k; i++)
        fds[i] = make_memfd(name);
      snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
      reply(c, sd_pid_notify_with_fds(0, 0, msg, fds, (unsigned)k) > 0 ? "ok" : "err");
      for (int i = 0; i < k; i++)
        close(fds[i]);
    }
  } else if (!strcmp(line, "store-state")) {
    char msg[512];
    snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", arg);
    reply(c, sd_pid_notify_with_fds(0, 0, msg, &state_fd, 1) > 0 ? "ok" : "err");
  } else if (!strcmp(line, "child-notify")) {
    pid_t p;
    int st = 0;
    unescape(arg);
    /* The barrier keeps the child alive until the supervisor has read its message:
     * a sender that is already gone cannot be traced to the unit (systemd 252 has the
     * same race and drops such messages). */
    if ((p = fork()) == 0)
      _exit(sd_notify(0, arg) > 0 && sd_notify_barrier(0, 5000000) >= 0 ? 0 : 1);
    waitpid(p, &st, 0);
    reply(c, WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "ok" : "err");
  } else if (!strcmp(line, "handoff")) {
    pid_t p = fork();
    if (p == 0) {
      close(c); /* the client waits for EOF */
      for (;;)
        pause();
    }
    reply(c, sd_notifyf(0, "MAINPID=%d", (int)p) > 0 ? "ok %d" : "err %d", (int)p);
  } else if (!strcmp(line, "barrier")) {
    reply(c, "ok %d", sd_notify_barrier(0, 5 * 1000000ull));
  } else if (!strcmp(line, "stop-pinging")) {
    pinging = false;
    reply(c, "ok");
  } else if (!strcmp(line, "ignore")) {
    signal(!strcmp(arg, "ABRT") ? SIGABRT : SIGTERM, SIG_IGN);
    reply(c, "ok");
  } else if (!strcmp(line, "stop")) {
    reply(c, "ok");
    close(c);
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    exit(0);
  } else if (!strcmp(line, "exit")) {
    reply(c, "ok");
    close(c);
    exit(atoi(arg));
  } else if (!strcmp(line, "reexec")) {
    reply(c, "ok");
    close(c);
    do_reexec(argv);
  } else {
    reply(c, "unknown command '%s'", line);
  }
  close(c);
}

int main(int argc, char **argv) {
  const char *state_text = "hello", *socket_name = "pinpoold.socket";
  char **names = NULL;
  bool ready = true;
  uint64_t next_ping = 0;
  int n;

  note_start_fds();
  snprintf(env_seen, sizeof env_seen,
           "pid=%d LISTEN_PID=%s LISTEN_FDS=%s LISTEN_FDNAMES=%s WATCHDOG_USEC=%s "
           "WATCHDOG_PID=%s",
           (int)getpid(), env_or("LISTEN_PID"), env_or("LISTEN_FDS"), env_or("LISTEN_FDNAMES"),
           env_or("WATCHDOG_USEC"), env_or("WATCHDOG_PID"));

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--state") && i + 1 < argc)
      state_text = argv[++i];
    else if (!strcmp(argv[i], "--socket-name") && i + 1 < argc)
      socket_name = argv[++i];
    else if (!strcmp(argv[i], "--no-ready"))
      ready = false;
    else if (!strcmp(argv[i], "--exit") && i + 1 < argc)
      exit(atoi(argv[++i]));
    else {
      fprintf(stderr, "fake_daemon: unknown option %s\n", argv[i]);
      return 2;
    }
  }

  n = sd_listen_fds_with_names(1, &names);
  env_unset_after = !getenv("LISTEN_PID") && !getenv("LISTEN_FDS") && !getenv("LISTEN_FDNAMES");
  if (n < 0) {
    fprintf(stderr, "fake_daemon: sd_listen_fds_with_names: %s\n", strerror(-n));
    return 3;
  }
  for (int i = 0; i < n; i++) {
    int fd = SD_LISTEN_FDS_START + i;
    if (!strcmp(names[i], socket_name) && sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
      lfd = fd;
    else if (!strcmp(names[i], "state") && state_fd < 0)
      state_fd = fd;
    hold(fd, names[i]);
    free(names[i]);
  }
  free(names);
  if (lfd < 0) {
    fprintf(stderr, "fake_daemon: no listening socket named %s\n", socket_name);
    return 3;
  }
  if (state_fd < 0) {
    state_fd = make_memfd(state_text);
    state_created = true;
    if (sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=state", &state_fd, 1) <= 0)
      fprintf(stderr, "fake_daemon: FDSTORE=1 failed\n");
    hold(state_fd, "state");
  }
  if (sd_watchdog_enabled(0, &wd_usec) <= 0) wd_usec = 0;
  fprintf(stderr, "fake_daemon %d: %d fds, state %s, watchdog %llu us\n", (int)getpid(), n,
          state_created ? "created" : "found", (unsigned long long)wd_usec);
  if (ready)
    sd_notifyf(0, "READY=1\nSTATUS=serving, state %s\nMAINPID=%lu",
               state_created ? "created" : "found", (unsigned long)getpid());

  for (;;) {
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    int timeout = -1;
    if (wd_usec && pinging) {
      uint64_t now = now_us();
      if (now >= next_ping) {
        sd_notify(0, "WATCHDOG=1");
        next_ping = now + (wd_usec / 4 ? wd_usec / 4 : 1);
      }
      timeout = (int)((next_ping - now + 999) / 1000);
    }
    if (poll(&p, 1, timeout) > 0 && (p.revents & POLLIN)) {
      int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0) handle(c, argv);
    }
  }
}
