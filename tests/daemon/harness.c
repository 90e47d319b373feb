/*
 * harness.c — the integration tests' daemon and client.
 *
 * Each test starts its own pinpoold (a 16 MiB region of 4 KiB pages starts in
 * milliseconds), so tests cannot see each other's state and a test may give the daemon
 * its own options.  The daemon's stderr goes to a log file in the test's directory and
 * is printed when a check fails.  daemon_stop() is itself a check: SIGTERM must make the
 * daemon exit 0 (under ASan that includes "no leaks") and remove its socket.
 *
 * The client side uses only proto/'s blocking helpers, as a client in another language
 * would: connect, Hello, a Welcome carrying the memfd, then one request per response.
 */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
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

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int raw_connect(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Daemons of tests that failed half-way (cmocka longjmps past their daemon_stop) are
 * killed at exit, so no pinpoold outlives the test binary. */
static pid_t live[64];

static void kill_leftovers(void) {
  for (size_t i = 0; i < 64; i++)
    if (live[i] > 0) {
      kill(live[i], SIGKILL);
      waitpid(live[i], NULL, 0);
    }
}

void harness_track(pid_t pid) {
  static bool registered;
  if (!registered) atexit(kill_leftovers);
  registered = true;
  for (size_t i = 0; i < 64; i++)
    if (live[i] <= 0) {
      live[i] = pid;
      return;
    }
}

void harness_untrack(pid_t pid) {
  for (size_t i = 0; i < 64; i++)
    if (live[i] == pid) live[i] = 0;
}

void daemon_dump_log(const daemon_proc_t *d) {
  char line[512];
  FILE *f = fopen(d->log, "r");
  if (!f) return;
  fprintf(stderr, "---- pinpoold log (%s) ----\n", d->log);
  while (fgets(line, sizeof line, f))
    fputs(line, stderr);
  fprintf(stderr, "---- end of log ----\n");
  fclose(f);
}

void daemon_start(daemon_proc_t *d, const char *extra_env, ...) {
  const char *bin_dir = getenv("PP_BIN_DIR");
  char bin[512];
  const char *argv[64];
  int argc = 0;
  va_list ap;

  memset(d, 0, sizeof *d);
  snprintf(d->dir, sizeof d->dir, "/tmp/ppd-test-XXXXXX");
  assert_non_null(mkdtemp(d->dir));
  chmod(d->dir, 0755); /* tests that drop to uid 65534 must reach the socket */
  snprintf(d->sock, sizeof d->sock, "%s/pinpool.sock", d->dir);
  snprintf(d->log, sizeof d->log, "%s/pinpoold.log", d->dir);
  snprintf(bin, sizeof bin, "%s/pinpoold", bin_dir ? bin_dir : ".");

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
  va_start(ap, extra_env);
  for (const char *a; (a = va_arg(ap, const char *)) && argc < 62;)
    argv[argc++] = a;
  va_end(ap);
  argv[argc] = NULL;

  d->pid = fork();
  assert_true(d->pid >= 0);
  if (d->pid > 0) harness_track(d->pid);
  if (d->pid == 0) {
    int lf = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (lf >= 0) {
      dup2(lf, 1);
      dup2(lf, 2);
    }
    if (extra_env)
      putenv((char *)extra_env);
    else
      unsetenv("NOTIFY_SOCKET");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  for (int i = 0; i < 500; i++) {
    int status, fd = raw_connect(d->sock);
    if (fd >= 0) {
      close(fd);
      return;
    }
    if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
      daemon_dump_log(d);
      fail_msg("pinpoold exited during start-up (status 0x%x)", status);
    }
    sleep_ms(10);
  }
  daemon_dump_log(d);
  kill(d->pid, SIGKILL);
  waitpid(d->pid, NULL, 0);
  fail_msg("pinpoold did not accept connections within 5 s");
}

void daemon_wait(daemon_proc_t *d) {
  int status = 0;
  char cmd[160];

  if (d->pid <= 0) return;
  for (int i = 0; i < 1000; i++) {
    if (waitpid(d->pid, &status, WNOHANG) == d->pid) break;
    if (i == 999) {
      daemon_dump_log(d);
      kill(d->pid, SIGKILL);
      waitpid(d->pid, &status, 0);
      harness_untrack(d->pid);
      d->pid = 0;
      fail_msg("pinpoold did not exit within 10 s of SIGTERM");
    }
    sleep_ms(10);
  }
  harness_untrack(d->pid);
  d->pid = 0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    daemon_dump_log(d);
    fail_msg("pinpoold ended with status 0x%x after SIGTERM", status);
  }
  if (access(d->sock, F_OK) == 0) fail_msg("pinpoold left its socket %s behind", d->sock);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", d->dir);
}

void daemon_stop(daemon_proc_t *d) {
  if (d->pid <= 0) return;
  kill(d->pid, SIGTERM);
  daemon_wait(d);
}

long daemon_rss_kib(const daemon_proc_t *d) {
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

resp_t *client_call(client_t *c, Pinpool__V1__Request *req) {
  resp_t *resp = NULL;
  int rc;
  req->id = ++c->next_id;
  rc = frame_send(c->fd, &req->base, FRAME_MAX_DEFAULT, -1);
  if (rc) fail_msg("frame_send: %s", pp_strerror(rc));
  rc = frame_recv_response(c->fd, FRAME_MAX_DEFAULT, &resp, NULL);
  if (rc) fail_msg("frame_recv_response: %s", pp_strerror(rc));
  assert_int_equal(resp->id, req->id);
  return resp;
}

int client_open(client_t *c, const char *path, const char *name) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  resp_t *resp = NULL;
  int rc, memfd = -1;

  memset(c, 0, sizeof *c);
  c->fd = raw_connect(path);
  c->memfd = -1;
  if (c->fd < 0) return PP_ECONNECT;
  h.protocol_version = PROTOCOL_VERSION;
  h.client_name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  req.id = ++c->next_id;
  if ((rc = frame_send(c->fd, &req.base, FRAME_MAX_DEFAULT, -1)) ||
      (rc = frame_recv_response(c->fd, FRAME_MAX_DEFAULT, &resp, &memfd)))
    goto fail;
  if ((rc = resp_rc(resp))) goto fail;
  if (resp->body_case != PINPOOL__V1__RESPONSE__BODY_WELCOME || memfd < 0) {
    rc = PP_EPROTO;
    goto fail;
  }
  c->memfd = memfd;
  c->region_size = resp->welcome->region_size;
  c->page_size = resp->welcome->page_size;
  c->session_id = resp->welcome->session_id;
  c->phys_known = resp->welcome->physical_addresses;
  c->base = mmap(NULL, c->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (c->base == MAP_FAILED) {
    c->base = NULL;
    rc = PP_EOS;
    goto fail;
  }
  frame_free_response(resp);
  return 0;
fail:
  if (resp) frame_free_response(resp);
  client_close(c);
  return rc;
}

void client_close(client_t *c) {
  if (c->base) munmap(c->base, c->region_size);
  if (c->memfd >= 0) close(c->memfd);
  if (c->fd >= 0) close(c->fd);
  c->base = NULL;
  c->memfd = c->fd = -1;
}

int call_alloc(client_t *c, uint64_t size, unsigned flags, const char *name, resp_t **ret) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc m = PINPOOL__V1__ALLOC__INIT;
  resp_t *r;
  int rc;
  m.size = size;
  m.flags = flags;
  if (name) m.name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &m;
  r = client_call(c, &req);
  rc = resp_rc(r);
  if (!rc) assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_BUFFER);
  if (ret)
    *ret = r;
  else
    frame_free_response(r);
  return rc;
}

int call_free(client_t *c, uint64_t handle) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free m = PINPOOL__V1__FREE__INIT;
  resp_t *r;
  int rc;
  m.handle = handle;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &m;
  r = client_call(c, &req);
  rc = resp_rc(r);
  frame_free_response(r);
  return rc;
}

int call_lookup(client_t *c, const char *name, resp_t **ret) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Lookup m = PINPOOL__V1__LOOKUP__INIT;
  resp_t *r;
  int rc;
  m.name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP;
  req.lookup = &m;
  r = client_call(c, &req);
  rc = resp_rc(r);
  if (ret)
    *ret = r;
  else
    frame_free_response(r);
  return rc;
}

int call_cache_open(client_t *c, const char *name, uint32_t size, uint32_t align,
                    uint32_t *ret_id) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheOpen m = PINPOOL__V1__CACHE_OPEN__INIT;
  resp_t *r;
  int rc;
  m.name = (char *)name;
  m.object_size = size;
  m.align = align;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &m;
  r = client_call(c, &req);
  rc = resp_rc(r);
  if (!rc) {
    assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_CACHE);
    if (ret_id) *ret_id = r->cache->cache_id;
  }
  frame_free_response(r);
  return rc;
}

int call_cache_alloc(client_t *c, uint32_t id, uint32_t count, uint64_t *offs, size_t *ret_n) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheAlloc m = PINPOOL__V1__CACHE_ALLOC__INIT;
  resp_t *r;
  int rc;
  m.cache_id = id;
  m.count = count;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
  req.cache_alloc = &m;
  r = client_call(c, &req);
  rc = resp_rc(r);
  if (!rc) {
    assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_OBJECTS);
    if (offs) memcpy(offs, r->objects->offsets, r->objects->n_offsets * sizeof *offs);
    if (ret_n) *ret_n = r->objects->n_offsets;
  }
  frame_free_response(r);
  return rc;
}

int call_cache_free(client_t *c, uint32_t id, const uint64_t *offs, size_t n, char *msg,
                    size_t msg_len) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheFree m = PINPOOL__V1__CACHE_FREE__INIT;
  resp_t *r;
  int rc;
  m.cache_id = id;
  m.offsets = (uint64_t *)offs;
  m.n_offsets = n;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE;
  req.cache_free = &m;
  r = client_call(c, &req);
  rc = resp_rc(r);
  if (msg) snprintf(msg, msg_len, "%s", r->message ? r->message : "");
  frame_free_response(r);
  return rc;
}

int call_stats(client_t *c, bool buffers, bool map, resp_t **ret) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest m = PINPOOL__V1__STATS_REQUEST__INIT;
  resp_t *r;
  int rc;
  m.include_buffers = buffers;
  m.include_map = map;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &m;
  r = client_call(c, &req);
  rc = resp_rc(r);
  if (!rc) assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_STATS);
  if (ret)
    *ret = r;
  else
    frame_free_response(r);
  return rc;
}

uint64_t daemon_free_bytes(const daemon_proc_t *d) {
  client_t c;
  resp_t *r;
  uint64_t v;
  assert_int_equal(client_open(&c, d->sock, "stats"), 0);
  assert_int_equal(call_stats(&c, false, false, &r), 0);
  v = r->stats->free_bytes;
  frame_free_response(r);
  client_close(&c);
  return v;
}
