/*
 * testd.c — a real pinpoold for the tests (see testd.h for what it guarantees).
 *
 * Everything the child needs (argv, the environment, the log's fd) is made before fork(),
 * so that between fork and exec the child only calls prctl, dup2 and execve: a test that
 * has other threads running may start a daemon too.
 */
#define _GNU_SOURCE
#include "testd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "wire.h"

#define START_WAIT_MS 20000 /* sanitizer and PP_DEBUG=3 builds start slowly */
#define STOP_WAIT_MS 10000
#define MAX_ARGS 64

extern char **environ;

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

const char *testd_bin(char *buf, size_t len, const char *name) {
  const char *dir = getenv("PP_BIN_DIR");
  snprintf(buf, len, "%s/%s", dir && *dir ? dir : ".", name);
  return buf;
}

void testd_dump_log(const testd_t *d) {
  char buf[4096];
  size_t n;
  FILE *f = fopen(d->log, "r");
  if (!f) return;
  fprintf(stderr, "---- pinpoold log (%s) ----\n", d->log);
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    fwrite(buf, 1, n, stderr);
  fprintf(stderr, "---- end of log ----\n");
  fclose(f);
}

/* The folder is flat: the socket, the log, and whatever a test put next to them. */
static void remove_dir(testd_t *d) {
  DIR *dir;
  struct dirent *e;

  if (!d->dir[0]) return;
  if ((dir = opendir(d->dir))) {
    while ((e = readdir(dir)))
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(dir), e->d_name, 0);
    closedir(dir);
  }
  if (rmdir(d->dir) != 0)
    fprintf(stderr, "testd: cannot remove %s: %s\n", d->dir, strerror(errno));
  d->dir[0] = '\0';
}

/* The test's environment without what would make the daemon think systemd started it,
 * plus env.  The strings stay the test's; only the array is malloc'd. */
static char **daemon_environ(const char *env) {
  size_t n = 0, k = 0;
  char **envp;
  while (environ[n])
    n++;
  if (!(envp = calloc(n + 2, sizeof *envp))) return NULL;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "NOTIFY_SOCKET=", 14) && strncmp(environ[i], "LISTEN_FDS=", 11) &&
        strncmp(environ[i], "LISTEN_PID=", 11))
      envp[k++] = environ[i];
  if (env) envp[k++] = (char *)env;
  return envp;
}

static int start(testd_t *d, const char *env, va_list ap) {
  char bin[512], gid[16];
  const char *argv[MAX_ARGS];
  char **envp = NULL;
  int argc = 0, logfd = -1;
  pid_t parent = getpid();

  memset(d, 0, sizeof *d);
  testd_bin(bin, sizeof bin, "pinpoold");
  snprintf(d->dir, sizeof d->dir, "/tmp/pp-testd-XXXXXX");
  if (!mkdtemp(d->dir)) {
    fprintf(stderr, "testd: mkdtemp: %s\n", strerror(errno));
    d->dir[0] = '\0';
    return -1;
  }
  chmod(d->dir, 0755); /* tests that drop to uid 65534 must reach the socket */
  snprintf(d->sock, sizeof d->sock, "%s/pinpool.sock", d->dir);
  snprintf(d->log, sizeof d->log, "%s/pinpoold.log", d->dir);
  snprintf(gid, sizeof gid, "%u", (unsigned)getgid());

  argv[argc++] = bin;
  argv[argc++] = "--socket";
  argv[argc++] = d->sock;
  argv[argc++] = "--size";
  argv[argc++] = "16M";
  argv[argc++] = "--page-size";
  argv[argc++] = "4K";
  argv[argc++] = "--socket-mode";
  argv[argc++] = "0666";
  argv[argc++] = "--log-level";
  argv[argc++] = "debug";
  if (geteuid() != 0) { /* root is admin anyway */
    argv[argc++] = "--admin-group";
    argv[argc++] = gid;
  }
  for (const char *a; (a = va_arg(ap, const char *));) {
    if (argc == MAX_ARGS - 1) {
      fprintf(stderr, "testd: more than %d arguments\n", MAX_ARGS - 1);
      goto fail;
    }
    argv[argc++] = a;
  }
  argv[argc] = NULL;

  logfd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  envp = daemon_environ(env);
  if (logfd < 0 || !envp) {
    fprintf(stderr, "testd: cannot make the log or the environment: %s\n", strerror(errno));
    goto fail;
  }
  d->pid = fork();
  if (d->pid < 0) {
    fprintf(stderr, "testd: fork: %s\n", strerror(errno));
    d->pid = 0;
    goto fail;
  }
  if (d->pid == 0) {
    /* Die with the test, even when it dies before we get here. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    dup2(logfd, STDOUT_FILENO);
    dup2(logfd, STDERR_FILENO);
    execve(bin, (char *const *)argv, envp);
    dprintf(STDERR_FILENO, "testd: exec %s: %s\n", bin, strerror(errno));
    _exit(127);
  }
  close(logfd);
  logfd = -1;
  free(envp);
  envp = NULL;

  for (int waited = 0; waited < START_WAIT_MS; waited += 10) {
    int status, fd = wire_connect(d->sock, false);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
      d->pid = 0;
      fprintf(stderr, "testd: pinpoold exited during start-up (status 0x%x)\n", status);
      testd_dump_log(d);
      goto fail;
    }
    sleep_ms(10);
  }
  fprintf(stderr, "testd: pinpoold did not accept connections on %s within %d s\n", d->sock,
          START_WAIT_MS / 1000);
  testd_dump_log(d);
fail:
  if (d->pid > 0) {
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
  }
  if (logfd >= 0) close(logfd);
  free(envp);
  remove_dir(d);
  return -1;
}

int testd_start(testd_t *d, ...) {
  va_list ap;
  int rc;
  va_start(ap, d);
  rc = start(d, NULL, ap);
  va_end(ap);
  return rc;
}

int testd_start_env(testd_t *d, const char *env, ...) {
  va_list ap;
  int rc;
  va_start(ap, env);
  rc = start(d, env, ap);
  va_end(ap);
  return rc;
}

int testd_wait(testd_t *d) {
  int status = 0, rc = 0;

  if (d->pid <= 0) goto out;
  for (int waited = 0;; waited += 10) {
    pid_t w = waitpid(d->pid, &status, WNOHANG);
    if (w == d->pid) break;
    if (w < 0) {
      fprintf(stderr, "testd: waitpid %d: %s\n", (int)d->pid, strerror(errno));
      rc = -1;
      goto out;
    }
    if (waited >= STOP_WAIT_MS) {
      fprintf(stderr, "testd: pinpoold did not exit within %d s of SIGTERM\n",
              STOP_WAIT_MS / 1000);
      testd_dump_log(d);
      kill(d->pid, SIGKILL);
      waitpid(d->pid, NULL, 0);
      rc = -1;
      goto out;
    }
    sleep_ms(10);
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "testd: pinpoold ended with %s %d after SIGTERM\n",
            WIFSIGNALED(status) ? "signal" : "exit status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    testd_dump_log(d);
    rc = -1;
  } else if (access(d->sock, F_OK) == 0) {
    fprintf(stderr, "testd: pinpoold left its socket %s behind\n", d->sock);
    rc = -1;
  }
out:
  d->pid = 0;
  remove_dir(d);
  return rc;
}

int testd_stop(testd_t *d) {
  if (d->pid > 0) kill(d->pid, SIGTERM);
  return testd_wait(d);
}

long testd_rss_kib(const testd_t *d) {
  char path[64], line[256];
  long kib = -1;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%d/status", (int)d->pid);
  if (!(f = fopen(path, "r"))) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  fclose(f);
  return kib;
}

/* ---- the books ------------------------------------------------------------------------ */

uint64_t testd_free_bytes(const testd_t *d) {
  wire_t c;
  resp_t *r;
  uint64_t v;
  assert_int_equal(wire_open(&c, d->sock, "testd-stats"), 0);
  assert_int_equal(wire_stats(&c, false, false, &r), 0);
  v = r->stats->free_bytes;
  frame_free_response(r);
  wire_close(&c);
  return v;
}

int testd_books(const testd_t *d, uint64_t session_id, testd_books_t *ret_books,
                testd_session_t *ret_session) {
  const Pinpool__V1__Stats *s;
  resp_t *r = NULL;
  wire_t c;
  int rc;

  if ((rc = wire_open(&c, d->sock, "testd-books"))) {
    fprintf(stderr, "testd: cannot connect to read the books: %s\n", pp_err_name(rc));
    return -1;
  }
  if ((rc = wire_shrink(&c, &r))) {
    fprintf(stderr, "testd: shrink refused: %s (%s)\n", pp_err_name(rc),
            r->message ? r->message : "");
    goto out;
  }
  frame_free_response(r);
  r = NULL;
  if ((rc = wire_stats(&c, false, false, &r))) {
    fprintf(stderr, "testd: stats refused: %s (%s)\n", pp_err_name(rc),
            r->message ? r->message : "");
    goto out;
  }
  s = r->stats;
  ret_books->free_bytes = s->free_bytes;
  ret_books->used_bytes = s->used_bytes;
  ret_books->nr_clients = s->nr_clients;
  if (ret_session) {
    memset(ret_session, 0, sizeof *ret_session);
    for (size_t i = 0; i < s->n_clients; i++) {
      const Pinpool__V1__ClientInfo *ci = s->clients[i];
      if (ci->session_id != session_id) continue;
      ret_session->found = true;
      ret_session->buffers = ci->buffers;
      ret_session->objects = ci->objects;
      ret_session->bytes_held = ci->bytes_held;
      ret_session->requests = ci->requests;
      ret_session->bytes_charged = ci->bytes_charged;
      ret_session->cached_buffers = ci->cached_buffers;
      ret_session->cached_bytes = ci->cached_bytes;
    }
  }
out:
  if (r) frame_free_response(r);
  wire_close(&c);
  return rc ? -1 : 0;
}

int testd_wait_free(const testd_t *d, uint64_t want, int timeout_ms, uint64_t *ret_last) {
  testd_books_t b = {0};
  for (int waited = 0;; waited += 10) {
    if (testd_books(d, 0, &b, NULL) == 0 && b.free_bytes == want && b.nr_clients <= 1) return 0;
    if (waited >= timeout_ms) break;
    sleep_ms(10);
  }
  *ret_last = b.free_bytes;
  return -1;
}
