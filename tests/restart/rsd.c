/*
 * rsd.c — the restart tests' harness (see rsd.h).
 */
#define _GNU_SOURCE
#include "rsd.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testd.h"
#include "wire.h"

#define RSD_READY_MS 60000 /* sanitizer builds start slowly */
#define RSD_MAX_ARGS 48
#define RCL_MARGIN_MS 2000u

/* ---- the supervised daemon -------------------------------------------------------------- */

int rsd_start(rsd_t *d, const rsd_opts_t *o) {
  static char bin[PATH_MAX], gid[16];
  const char *argv[RSD_MAX_ARGS];
  int argc = 0, rc;

  memset(d, 0, sizeof *d);
  if (o && o->bin)
    snprintf(bin, sizeof bin, "%s", o->bin);
  else
    testd_bin(bin, sizeof bin, "pinpoold");
  snprintf(d->dir, sizeof d->dir, "/tmp/pp-rsd-XXXXXX");
  if (!mkdtemp(d->dir)) {
    fprintf(stderr, "rsd: mkdtemp: %s\n", strerror(errno));
    d->dir[0] = '\0';
    return -1;
  }
  chmod(d->dir, 0755);
  snprintf(d->sock, sizeof d->sock, "%s/pinpool.sock", d->dir);
  snprintf(d->log, sizeof d->log, "%s/pinpoold.log", d->dir);
  snprintf(gid, sizeof gid, "%u", (unsigned)getgid());
  argv[argc++] = bin;
  argv[argc++] = "--size";
  argv[argc++] = "16M";
  argv[argc++] = "--page-size";
  argv[argc++] = "4K";
  argv[argc++] = "--log-level";
  argv[argc++] = "debug";
  if (getuid() != 0) {
    argv[argc++] = "--admin-group";
    argv[argc++] = gid;
  }
  for (int i = 0; o && o->args && o->args[i] && argc < RSD_MAX_ARGS - 1; i++)
    argv[argc++] = o->args[i];
  argv[argc] = NULL;

  sup_config_t cfg = {.argv = argv,
                      .env = o ? o->env : NULL,
                      .log_path = d->log,
                      .listen_path = d->sock,
                      .fd_store_max = 8,
                      .watchdog_usec = o ? o->watchdog_usec : 0,
                      .restart = SUP_RESTART_ON_FAILURE,
                      .restart_usec = o && o->hold_restarts ? SUP_INFINITY : 0,
                      .seed = o ? o->seed : 0};
  d->held = o && o->hold_restarts;
  if ((rc = sup_new(&cfg, &d->sup)) || (rc = sup_start(d->sup)) ||
      (rc = sup_wait_ready(d->sup, RSD_READY_MS))) {
    fprintf(stderr, "rsd: the daemon did not come up: %s\n", pp_strerror(rc));
    rsd_dump_log(d);
    rsd_free(d);
    return -1;
  }
  return 0;
}

int rsd_kill(rsd_t *d) {
  sup_info_t in;
  sup_exit_t ex;
  int rc;
  sup_info(d->sup, &in);
  if ((rc = sup_signal(d->sup, SIGKILL)) ||
      (rc = sup_wait_exit_of(d->sup, in.gen, 20000, &ex)) ||
      (d->held && (rc = sup_start(d->sup))) || (rc = sup_wait_ready(d->sup, RSD_READY_MS))) {
    fprintf(stderr, "rsd: kill and restart: %s\n", pp_strerror(rc));
    rsd_dump_log(d);
    return -1;
  }
  return 0;
}

int rsd_reload(rsd_t *d) {
  sup_info_t in, now;
  uint64_t deadline = 0;
  int rc;
  sup_info(d->sup, &in);
  if (!in.ready) {
    fprintf(stderr, "rsd: reload: the daemon is not ready (%s)\n", sup_state_name(in.state));
    return -1;
  }
  if ((rc = sup_signal(d->sup, SIGHUP))) {
    fprintf(stderr, "rsd: reload: %s\n", pp_strerror(rc));
    return -1;
  }
  for (;;) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    if (!deadline) deadline = ms + RSD_READY_MS;
    sup_info(d->sup, &now);
    if (now.exits != in.exits || now.gen != in.gen ||
        (now.main_pid && now.main_pid != in.main_pid)) {
      fprintf(stderr, "rsd: reload: the daemon (pid %d) ended or was replaced (pid %d)\n",
              (int)in.main_pid, (int)now.main_pid);
      rsd_dump_log(d);
      return -1;
    }
    if (now.reloads > in.reloads && now.ready) return 0;
    if (ms > deadline) {
      fprintf(stderr, "rsd: reload: no READY=1 within %d ms (%s)\n", RSD_READY_MS,
              sup_state_name(now.state));
      rsd_dump_log(d);
      return -1;
    }
    ts = (struct timespec){0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

int rsd_stop(rsd_t *d) {
  sup_exit_t ex;
  int rc = sup_stop(d->sup, 20000, &ex);
  if (rc) {
    fprintf(stderr, "rsd: stop: %s\n", pp_strerror(rc));
    rsd_dump_log(d);
    return -1;
  }
  if (ex.code != CLD_EXITED || ex.status != 0) {
    fprintf(stderr, "rsd: the daemon did not exit cleanly (code %d status %d, %s)\n", ex.code,
            ex.status, sup_result_name(ex.result));
    rsd_dump_log(d);
    return -1;
  }
  return 0;
}

void rsd_free(rsd_t *d) {
  if (d->sup) sup_free(d->sup);
  d->sup = NULL;
  if (d->dir[0]) {
    unlink(d->log);
    unlink(d->sock);
    rmdir(d->dir);
    d->dir[0] = '\0';
  }
}

void rsd_dump_log(const rsd_t *d) {
  char buf[4096];
  size_t n;
  FILE *f = fopen(d->log, "r");
  if (!f) return;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, size > 65536 ? size - 65536 : 0, SEEK_SET);
  fprintf(stderr, "---- pinpoold log (%s, last 64 KiB) ----\n", d->log);
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    fwrite(buf, 1, n, stderr);
  fprintf(stderr, "---- end of log ----\n");
  fclose(f);
}

int rsd_log_count(const rsd_t *d, const char *needle) {
  char line[2048];
  int n = 0;
  FILE *f = fopen(d->log, "r");
  if (!f) return 0;
  while (fgets(line, sizeof line, f))
    n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}

void rsd_assert_log_clean(const rsd_t *d) {
  static const char *const bad[] = {"AddressSanitizer",
                                    "LeakSanitizer",
                                    "runtime error:",
                                    "pinpool assert failed",
                                    "pinpool internal assert failed",
                                    "_check failed:"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (rsd_log_count(d, bad[i])) {
      rsd_dump_log(d);
      fail_msg("the daemon's log reports '%s'", bad[i]);
    }
}

Pinpool__V1__Response *rsd_stats(const rsd_t *d) {
  wire_t w;
  Pinpool__V1__Response *r = NULL;
  int rc = wire_open(&w, d->sock, "rsd-books");
  if (rc) fail_msg("rsd: cannot connect for the books: %s", pp_err_name(rc));
  assert_int_equal(wire_shrink(&w, NULL), 0);
  assert_int_equal(wire_stats(&w, true, false, &r), 0);
  wire_close(&w);
  return r;
}

const Pinpool__V1__ClientInfo *rsd_client(const Pinpool__V1__Response *st, uint64_t id) {
  for (size_t i = 0; i < st->stats->n_clients; i++)
    if (st->stats->clients[i]->session_id == id) return st->stats->clients[i];
  return NULL;
}

/* ---- the raw re-claiming client ---------------------------------------------------------- */

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static int rcl_connect(rcl_t *c) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return PP_EOS;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", c->sock);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return PP_ECONNECT;
  }
  c->fd = fd;
  frame_rx_free(&c->rx);
  frame_rx_init(&c->rx);
  return 0;
}

static void rcl_drop(rcl_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  frame_rx_free(&c->rx);
  frame_rx_init(&c->rx);
}

/* Send req (its id set) and receive its reply.  Transport failures: PP_EDISCONNECTED,
 * PP_EIO. */
static int rcl_exchange(rcl_t *c, Pinpool__V1__Request *req, int timeout_ms,
                        Pinpool__V1__Response **ret, int *ret_fd) {
  Pinpool__V1__Response *resp = NULL;
  int rc = frame_send(c->fd, &req->base, FRAME_MAX_DEFAULT, -1);
  if (rc) return rc == PP_ERANGE ? rc : PP_EDISCONNECTED;
  rc = frame_rx_response(c->fd, &c->rx, FRAME_MAX_DEFAULT, timeout_ms, &resp, ret_fd);
  if (rc) return rc;
  if (resp->id != req->id)
    fail_msg("rcl: the reply to request %llu came for request %llu",
             (unsigned long long)req->id, (unsigned long long)resp->id);
  *ret = resp;
  return 0;
}

/* Hello (with the token when reclaiming) on a fresh connection.  0 with the Welcome kept,
 * or the refusal's code, or a transport failure. */
static int rcl_hello(rcl_t *c, bool reclaim, int timeout_ms) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  Pinpool__V1__Response *resp = NULL;
  int memfd = -1, rc;
  struct stat st;

  h.protocol_version = PROTOCOL_VERSION;
  h.client_name = c->name;
  if (reclaim) {
    h.session_token.data = c->token;
    h.session_token.len = sizeof c->token;
  }
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  req.id = ++c->next_id;
  if ((rc = rcl_exchange(c, &req, timeout_ms, &resp, &memfd))) return rc;
  if ((rc = -(int)resp->status)) goto out;
  const Pinpool__V1__Welcome *w = resp->welcome;
  assert_non_null(w);
  assert_true(memfd >= 0);
  assert_int_equal(fstat(memfd, &st), 0);
  if (!reclaim) {
    c->memfd = memfd;
    memfd = -1;
    c->mst = st;
    c->size = w->region_size;
    c->session_id = w->session_id;
    assert_int_equal(w->session_token.len, sizeof c->token);
    memcpy(c->token, w->session_token.data, sizeof c->token);
    assert_int_equal(w->region_id.len, sizeof c->region_id);
    memcpy(c->region_id, w->region_id.data, sizeof c->region_id);
    c->base = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0);
    assert_true(c->base != MAP_FAILED);
  } else {
    /* A re-claim must give back the same session on the same memory. */
    assert_true(w->reclaimed);
    assert_int_equal(w->session_id, c->session_id);
    assert_memory_equal(w->region_id.data, c->region_id, sizeof c->region_id);
    assert_int_equal(st.st_dev, c->mst.st_dev);
    assert_int_equal(st.st_ino, c->mst.st_ino);
    assert_int_equal(w->region_size, c->size);
  }
  c->grace_ms = w->grace_ms;
out:
  if (memfd >= 0) close(memfd);
  frame_free_response(resp);
  return rc;
}

int rcl_open(rcl_t *c, const char *sock, const char *name) {
  memset(c, 0, sizeof *c);
  c->fd = c->memfd = -1;
  frame_rx_init(&c->rx);
  snprintf(c->sock, sizeof c->sock, "%.*s", (int)sizeof c->sock - 1, sock);
  snprintf(c->name, sizeof c->name, "%s", name);
  int rc = rcl_connect(c);
  if (!rc) rc = rcl_hello(c, false, 30000);
  if (rc) rcl_close(c);
  return rc;
}

/* The connection broke: find the session again, as docs/PROTOCOL.md says. */
static int rcl_reclaim(rcl_t *c) {
  uint64_t deadline = mono_ms() + c->grace_ms + RCL_MARGIN_MS;
  unsigned step = 5;
  if (!c->grace_ms) return PP_EDISCONNECTED;
  for (;;) {
    rcl_drop(c);
    int rc = rcl_connect(c);
    if (!rc) {
      uint64_t now = mono_ms();
      rc = rcl_hello(c, true, now < deadline ? (int)(deadline - now) : 1);
      if (rc == 0) {
        c->reclaims++;
        return 0;
      }
      if (rc != PP_EDISCONNECTED && rc != PP_EIO && rc != PP_ETOOMANY) return rc;
    }
    if (mono_ms() >= deadline) return PP_EDISCONNECTED;
    sleep_ms(step);
    step = step * 2 > 250 ? 250 : step * 2;
  }
}

int rcl_call(rcl_t *c, Pinpool__V1__Request *req, Pinpool__V1__Response **ret) {
  return rcl_call_id(c, ++c->next_id, req, ret);
}

int rcl_call_id(rcl_t *c, uint64_t id, Pinpool__V1__Request *req, Pinpool__V1__Response **ret) {
  Pinpool__V1__Response *resp = NULL;
  int rc;
  if (c->lost) return c->lost;
  req->id = c->last_id = id;
  for (int tries = 0;; tries++) {
    rc = c->fd >= 0 ? rcl_exchange(c, req, 60000, &resp, NULL) : PP_EDISCONNECTED;
    if (rc != PP_EDISCONNECTED && rc != PP_EIO) break;
    if (tries == 20 || (rc = rcl_reclaim(c))) {
      c->lost = rc ? rc : PP_EDISCONNECTED;
      rcl_drop(c);
      return c->lost;
    }
  }
  if (rc) return rc;
  rc = -(int)resp->status;
  if (ret)
    *ret = resp;
  else
    frame_free_response(resp);
  return rc;
}

void rcl_close(rcl_t *c) {
  rcl_drop(c);
  if (c->base) munmap(c->base, c->size);
  if (c->memfd >= 0) close(c->memfd);
  c->base = NULL;
  c->memfd = -1;
}

static int give(int rc, Pinpool__V1__Response *r, Pinpool__V1__Response__BodyCase want) {
  if (rc == 0) assert_int_equal(r->body_case, want);
  return rc;
}

int rcl_alloc(rcl_t *c, uint64_t size, const char *name, uint64_t *ret_handle,
              uint64_t *ret_offset) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc m = PINPOOL__V1__ALLOC__INIT;
  Pinpool__V1__Response *r = NULL;
  m.size = size;
  if (name) m.name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &m;
  int rc = rcl_call(c, &req, &r);
  rc = give(rc, r, PINPOOL__V1__RESPONSE__BODY_BUFFER);
  if (rc == 0) {
    if (ret_handle) *ret_handle = r->buffer->handle;
    if (ret_offset) *ret_offset = r->buffer->offset;
  }
  if (r) frame_free_response(r);
  return rc;
}

int rcl_free(rcl_t *c, uint64_t handle) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free m = PINPOOL__V1__FREE__INIT;
  m.handle = handle;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &m;
  return rcl_call(c, &req, NULL);
}

int rcl_lookup(rcl_t *c, const char *name, uint64_t *ret_handle, uint64_t *ret_offset) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Lookup m = PINPOOL__V1__LOOKUP__INIT;
  Pinpool__V1__Response *r = NULL;
  m.name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP;
  req.lookup = &m;
  int rc = rcl_call(c, &req, &r);
  rc = give(rc, r, PINPOOL__V1__RESPONSE__BODY_BUFFER);
  if (rc == 0) {
    if (ret_handle) *ret_handle = r->buffer->handle;
    if (ret_offset) *ret_offset = r->buffer->offset;
  }
  if (r) frame_free_response(r);
  return rc;
}

int rcl_cache_open(rcl_t *c, const char *name, uint32_t size, uint32_t *ret_id) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheOpen m = PINPOOL__V1__CACHE_OPEN__INIT;
  Pinpool__V1__Response *r = NULL;
  m.name = (char *)name;
  m.object_size = size;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &m;
  int rc = rcl_call(c, &req, &r);
  rc = give(rc, r, PINPOOL__V1__RESPONSE__BODY_CACHE);
  if (rc == 0 && ret_id) *ret_id = r->cache->cache_id;
  if (r) frame_free_response(r);
  return rc;
}

int rcl_cache_alloc(rcl_t *c, uint32_t id, uint32_t count, uint64_t *offs) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheAlloc m = PINPOOL__V1__CACHE_ALLOC__INIT;
  Pinpool__V1__Response *r = NULL;
  m.cache_id = id;
  m.count = count;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
  req.cache_alloc = &m;
  int rc = rcl_call(c, &req, &r);
  rc = give(rc, r, PINPOOL__V1__RESPONSE__BODY_OBJECTS);
  if (rc == 0) {
    assert_int_equal(r->objects->n_offsets, count);
    memcpy(offs, r->objects->offsets, count * sizeof *offs);
  }
  if (r) frame_free_response(r);
  return rc;
}

int rcl_cache_free(rcl_t *c, uint32_t id, const uint64_t *offs, size_t n) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheFree m = PINPOOL__V1__CACHE_FREE__INIT;
  m.cache_id = id;
  m.offsets = (uint64_t *)offs;
  m.n_offsets = n;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE;
  req.cache_free = &m;
  return rcl_call(c, &req, NULL);
}
