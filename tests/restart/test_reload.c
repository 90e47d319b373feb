/*
 * test_reload.c — SIGHUP makes pinpoold execute itself again (a reload: systemctl reload,
 * an upgrade in place), and its clients cannot tell, except by a pause.
 *
 *   - a hundred clients in four processes, each doing allocations, frees, named buffers,
 *     lookups of other processes' names and cache objects with a pattern in everything it
 *     holds, go on through five reloads in a row: no error, no re-claim (pp_reclaims stays
 *     0: the connections were never broken), every pattern intact, the same daemon process
 *     throughout (no exit, the same pid, the supervisor saw five RELOADING=1 → READY=1),
 *     and after everyone leaves the books balance and the clean stop's journal check
 *     passes.  The stall each client saw across each reload (its longest request in the
 *     reload's window) is printed, p50/p99, never asserted;
 *   - a frame in pieces crosses the reload: half a header, a header and half a payload,
 *     half a Hello of a connection not yet past Hello — each completed after the reload
 *     and answered by the new image on the same connection;
 *   - replies queued for a client that does not read (thousands of pipelined requests)
 *     cross the reload: the client then reads every reply, in order, on the same
 *     connection, and its session's request count goes on; a connection already closing
 *     (a protocol error behind its queued replies) gets every reply, the error, then EOF;
 *   - a reload whose binary is missing, or not an executable, fails in the old image,
 *     which says so and serves on with nothing changed; the next reload, with the binary
 *     back, succeeds;
 *   - a handoff the new image cannot read (a version it does not know: the test knob
 *     PINPOOLD_TEST_HANDOFF_VERSION) falls back to the crash path: connections closed,
 *     sessions re-claimed from the journal, every byte in place;
 *   - a session waiting to be re-claimed after a crash keeps its deadline across a reload;
 *   - the fd store is untouched by reloads (the same two memfds), and a crash after two
 *     reloads comes back from it with what the last image journaled;
 *   - the watchdog: every image pings, so a daemon reloaded three times is never killed by
 *     a 3 s WatchdogSec=;
 *   - without a service manager (no fd store, no journal) a reload carries everything too.
 *
 * Every wait is bounded; timing only decides how long a test takes, never its outcome.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pattern.h"
#include "pinpool.h"
#include "rsd.h"
#include "testd.h"
#include "wire.h"

#define REGION (16ull << 20)

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static uint32_t attached(const Pinpool__V1__Response *st) {
  uint32_t n = 0;
  for (size_t i = 0; i < st->stats->n_clients; i++)
    n += !st->stats->clients[i]->detached;
  return n;
}

/* Everyone but the asking connection gone: every byte free, nothing held. */
static void assert_books_balance(const rsd_t *d, uint64_t region) {
  Pinpool__V1__Response *st = NULL;
  for (int i = 0; i < 400; i++) {
    st = rsd_stats(d);
    if (attached(st) == 1 && st->stats->n_clients == 1 && st->stats->free_bytes == region)
      break;
    frame_free_response(st);
    st = NULL;
    sleep_ms(50);
  }
  if (!st) {
    rsd_dump_log(d);
    st = rsd_stats(d);
    fail_msg("books do not balance: %zu clients, %" PRIu64 " of %" PRIu64
             " bytes free, %" PRIu64 " buffers, %zu caches",
             st->stats->n_clients, st->stats->free_bytes, region, st->stats->nr_buffers,
             st->stats->n_caches);
  }
  assert_int_equal(st->stats->nr_buffers, 0);
  assert_int_equal(st->stats->n_caches, 0);
  assert_int_equal(st->stats->used_bytes, 0);
  frame_free_response(st);
}

/* The daemon is the same process as at the start, never restarted, with n reloads. */
static void assert_same_process(rsd_t *d, pid_t pid, unsigned reloads) {
  sup_info_t in;
  sup_info(d->sup, &in);
  assert_int_equal(in.main_pid, pid);
  assert_int_equal(in.gen, 1);
  assert_int_equal(in.exits, 0);
  assert_int_equal(in.reloads, reloads);
}

static pid_t main_pid(rsd_t *d) {
  sup_info_t in;
  sup_info(d->sup, &in);
  return in.main_pid;
}

/* ---- a hundred clients through five reloads --------------------------------------------- */

#define C_PROCS 4
#define C_CONNS 25 /* clients per process: a thread and a connection each */
#define C_CLIENTS (C_PROCS * C_CONNS)
#define C_RELOADS 5
#define C_NAMES 64
#define C_BUFS 6
#define C_OBJS 16
#define C_REGION (32ull << 20)

typedef struct c_report {
  _Atomic uint64_t ops, refusals, reclaims;
  _Atomic int errors;
  char first_error[256];
} c_report_t;

typedef struct c_shared {
  _Atomic int stop, connected;
  /* 2k + 1 while reload k is under way (SIGHUP sent, not yet a moment after READY=1),
   * 2k + 2 in the quiet stretch after it. */
  _Atomic int phase;
  _Atomic uint64_t names[C_NAMES]; /* published tags + 1, 0 = none */
  c_report_t p[C_PROCS];
  _Atomic uint64_t stall_ns[C_RELOADS][C_CLIENTS]; /* longest request in reload k's window */
  _Atomic uint64_t quiet_ns[C_RELOADS][C_CLIENTS]; /* ... and in the quiet stretch after */
} c_shared_t;

static c_shared_t *cs;
static char c_sock[128];

typedef struct c_buf {
  pp_buffer b;
  uint64_t tag;
} c_buf_t;

typedef struct c_obj {
  void *p;
  pp_cache *k;
  uint32_t size;
  uint64_t tag;
} c_obj_t;

typedef struct c_worker {
  int proc, idx; /* idx: 0 .. C_CLIENTS-1 */
  pp_client *c;
  pp_cache *k[2];
  c_buf_t bufs[C_BUFS];
  int nbufs;
  c_obj_t objs[C_OBJS];
  int nobjs;
  uint64_t rng, serial;
} c_worker_t;

static uint64_t c_rnd(c_worker_t *w, uint64_t n) {
  uint64_t z = (w->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return n ? (z ^ (z >> 31)) % n : 0;
}

static void c_error(c_worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void c_error(c_worker_t *w, const char *fmt, ...) {
  c_report_t *r = &cs->p[w->proc];
  if (atomic_fetch_add(&r->errors, 1) == 0) {
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(r->first_error, sizeof r->first_error, "client %d: ", w->idx);
    vsnprintf(r->first_error + n, sizeof r->first_error - (size_t)n, fmt, ap);
    va_end(ap);
  }
}

static uint64_t c_tag(c_worker_t *w) {
  return (uint64_t)(w->idx + 1) << 40 | ++w->serial;
}

static void c_drop_buf(c_worker_t *w, int i) {
  c_buf_t *h = &w->bufs[i];
  if (!pattern_intact(h->b.addr, h->b.size, h->tag))
    c_error(w, "buffer at offset %" PRIu64 " overwritten", h->b.offset);
  int rc = pp_free(w->c, h->b.handle);
  if (rc) c_error(w, "pp_free: %s", pp_err_name(rc));
  w->bufs[i] = w->bufs[--w->nbufs];
}

static void c_drop_obj(c_worker_t *w, int i) {
  c_obj_t *h = &w->objs[i];
  if (!pattern_intact(h->p, h->size, h->tag)) c_error(w, "object at %p overwritten", h->p);
  int rc = pp_cache_free(h->k, h->p);
  if (rc) c_error(w, "pp_cache_free: %s", pp_err_name(rc));
  w->objs[i] = w->objs[--w->nobjs];
}

static void c_verify(c_worker_t *w) {
  for (int i = 0; i < w->nbufs; i++)
    if (!pattern_intact(w->bufs[i].b.addr, w->bufs[i].b.size, w->bufs[i].tag))
      c_error(w, "buffer at offset %" PRIu64 " overwritten", w->bufs[i].b.offset);
  for (int i = 0; i < w->nobjs; i++)
    if (!pattern_intact(w->objs[i].p, w->objs[i].size, w->objs[i].tag))
      c_error(w, "object at offset %" PRIu64 " overwritten", pp_offset(w->c, w->objs[i].p));
}

static void c_op(c_worker_t *w) {
  uint64_t r = c_rnd(w, 100);
  char name[48];
  int rc;
  if (r < 25) { /* alloc, or free when full */
    if (w->nbufs == C_BUFS) {
      c_drop_buf(w, (int)c_rnd(w, (uint64_t)w->nbufs));
      return;
    }
    c_buf_t *h = &w->bufs[w->nbufs];
    rc = pp_alloc(w->c, 4096u << c_rnd(w, 3), 0, &h->b);
    if (rc == PP_ENOMEM) {
      atomic_fetch_add(&cs->p[w->proc].refusals, 1);
      return;
    }
    if (rc) {
      c_error(w, "pp_alloc: %s", pp_err_name(rc));
      return;
    }
    h->tag = c_tag(w);
    pattern_fill(h->b.addr, h->b.size, h->tag);
    w->nbufs++;
  } else if (r < 45) {
    if (w->nbufs) c_drop_buf(w, (int)c_rnd(w, (uint64_t)w->nbufs));
  } else if (r < 55) { /* publish a name, announce it once its pattern is in */
    if (w->nbufs == C_BUFS) return;
    c_buf_t *h = &w->bufs[w->nbufs];
    h->tag = c_tag(w);
    snprintf(name, sizeof name, "reload-%" PRIx64, h->tag);
    rc = pp_alloc_named(w->c, name, 8192, 0, &h->b);
    if (rc == PP_ENOMEM) {
      atomic_fetch_add(&cs->p[w->proc].refusals, 1);
      return;
    }
    if (rc) {
      c_error(w, "pp_alloc_named(%s): %s", name, pp_err_name(rc));
      return;
    }
    pattern_fill(h->b.addr, h->b.size, h->tag);
    w->nbufs++;
    atomic_store(&cs->names[c_rnd(w, C_NAMES)], h->tag + 1);
  } else if (r < 65) { /* look up what another client published */
    uint64_t t = atomic_load(&cs->names[c_rnd(w, C_NAMES)]);
    if (!t || w->nbufs == C_BUFS) return;
    c_buf_t *h = &w->bufs[w->nbufs];
    snprintf(name, sizeof name, "reload-%" PRIx64, t - 1);
    rc = pp_lookup(w->c, name, &h->b);
    if (rc == PP_ENOENT) { /* its last holder let go */
      atomic_fetch_add(&cs->p[w->proc].refusals, 1);
      return;
    }
    if (rc) {
      c_error(w, "pp_lookup(%s): %s", name, pp_err_name(rc));
      return;
    }
    h->tag = t - 1;
    if (!pattern_intact(h->b.addr, h->b.size, h->tag))
      c_error(w, "looked-up %s overwritten", name);
    w->nbufs++;
  } else if (r < 88) { /* an object */
    if (w->nobjs == C_OBJS) {
      c_drop_obj(w, (int)c_rnd(w, (uint64_t)w->nobjs));
      return;
    }
    c_obj_t *h = &w->objs[w->nobjs];
    int which = (int)c_rnd(w, 2);
    void *p = NULL;
    rc = pp_cache_alloc_bulk(w->k[which], &p, 1);
    if (rc == PP_ENOMEM) {
      atomic_fetch_add(&cs->p[w->proc].refusals, 1);
      return;
    }
    if (rc != 1) {
      c_error(w, "pp_cache_alloc: %s", pp_err_name(rc));
      return;
    }
    h->p = p;
    h->k = w->k[which];
    h->size = pp_cache_object_size(h->k);
    h->tag = c_tag(w);
    pattern_fill(h->p, h->size, h->tag);
    w->nobjs++;
  } else {
    if (w->nobjs) c_drop_obj(w, (int)c_rnd(w, (uint64_t)w->nobjs));
  }
}

static void c_account(int idx, int p0, int p1, uint64_t dt) {
  for (int q = p0 > 1 ? p0 : 1; q <= p1; q++) {
    int k = (q - 1) / 2;
    if (k >= C_RELOADS) break;
    _Atomic uint64_t *cell = q % 2 ? &cs->stall_ns[k][idx] : &cs->quiet_ns[k][idx];
    if (dt > atomic_load(cell)) atomic_store(cell, dt);
  }
}

static void *c_thread(void *arg) {
  c_worker_t *w = arg;
  char name[32];
  int rc;
  snprintf(name, sizeof name, "reload-%d", w->idx);
  if ((rc = pp_connect(c_sock, name, &w->c)) ||
      (rc = pp_cache_open(w->c, "reload-64", 64, 0, &w->k[0])) ||
      (rc = pp_cache_open(w->c, "reload-1000", 1000, 8, &w->k[1]))) {
    c_error(w, "connect: %s", pp_err_name(rc));
    atomic_fetch_add(&cs->connected, 1);
    return NULL;
  }
  atomic_fetch_add(&cs->connected, 1);
  while (!atomic_load(&cs->stop) && !atomic_load(&cs->p[w->proc].errors)) {
    int p0 = atomic_load(&cs->phase);
    uint64_t t0 = now_ns();
    c_op(w);
    uint64_t dt = now_ns() - t0;
    c_account(w->idx, p0, atomic_load(&cs->phase), dt);
    atomic_fetch_add(&cs->p[w->proc].ops, 1);
    if (w->serial % 32 == 0) c_verify(w);
  }
  c_verify(w);
  while (w->nbufs)
    c_drop_buf(w, 0);
  while (w->nobjs)
    c_drop_obj(w, 0);
  atomic_fetch_add(&cs->p[w->proc].reclaims, pp_reclaims(w->c));
  pp_disconnect(w->c);
  return NULL;
}

static int c_process(int proc) {
  c_worker_t *w = calloc(C_CONNS, sizeof *w);
  pthread_t t[C_CONNS];
  if (!w) return 1;
  for (int i = 0; i < C_CONNS; i++) {
    w[i].proc = proc;
    w[i].idx = proc * C_CONNS + i;
    w[i].rng = (uint64_t)getpid() * 1000003u + (uint64_t)i;
    if (pthread_create(&t[i], NULL, c_thread, &w[i])) {
      atomic_fetch_add(&cs->p[proc].errors, 1);
      return 1;
    }
  }
  for (int i = 0; i < C_CONNS; i++)
    pthread_join(t[i], NULL);
  free(w);
  return atomic_load(&cs->p[proc].errors) ? 1 : 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* p50, p99 and max of n samples (sorted in place), in ms. */
static void percentiles(uint64_t *v, size_t n, double *p50, double *p99, double *max) {
  qsort(v, n, sizeof *v, cmp_u64);
  size_t i99 = (n * 99 + 99) / 100 - 1;
  *p50 = (double)v[n / 2] / 1e6;
  *p99 = (double)v[i99 < n ? i99 : n - 1] / 1e6;
  *max = (double)v[n - 1] / 1e6;
}

static void a_hundred_clients_carry_on_through_five_reloads_without_a_reclaim(void **state) {
  static const char *const args[] = {"--size", "32M", NULL};
  rsd_opts_t o = {.args = args};
  pid_t pids[C_PROCS];
  rsd_t d;

  cs = mmap(NULL, sizeof *cs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(cs != MAP_FAILED);
  memset(cs, 0, sizeof *cs);
  if (rsd_start(&d, &o)) fail_msg("the supervised daemon did not start");
  snprintf(c_sock, sizeof c_sock, "%s", d.sock);
  pid_t pid = main_pid(&d);
  for (int i = 0; i < C_PROCS; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) _exit(c_process(i));
  }
  for (int i = 0; i < 3000 && atomic_load(&cs->connected) < C_CLIENTS; i++)
    sleep_ms(10);
  assert_int_equal(atomic_load(&cs->connected), C_CLIENTS);
  sleep_ms(300); /* traffic first */

  uint64_t ops_before = 0;
  for (int i = 0; i < C_PROCS; i++)
    ops_before += atomic_load(&cs->p[i].ops);
  for (int k = 0; k < C_RELOADS; k++) {
    atomic_store(&cs->phase, 2 * k + 1);
    if (rsd_reload(&d)) fail_msg("reload %d failed", k + 1);
    sleep_ms(100); /* the window ends a moment after READY=1 */
    atomic_store(&cs->phase, 2 * k + 2);
    sleep_ms(200);
  }
  atomic_store(&cs->stop, 1);

  int failed = 0;
  for (int i = 0; i < C_PROCS; i++) {
    int st = 0;
    for (int t = 0; t < 1200 && waitpid(pids[i], &st, WNOHANG) == 0; t++)
      sleep_ms(50);
    if (waitpid(pids[i], &st, WNOHANG) == 0) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], &st, 0);
      fprintf(stderr, "process %d did not finish\n", i);
      failed++;
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      failed++;
    }
  }
  uint64_t ops = 0, reclaims = 0;
  for (int i = 0; i < C_PROCS; i++) {
    c_report_t *r = &cs->p[i];
    printf("process %d: %" PRIu64 " operations, %" PRIu64 " refusals, %" PRIu64
           " re-claims, %d errors%s%s\n",
           i, atomic_load(&r->ops), atomic_load(&r->refusals), atomic_load(&r->reclaims),
           atomic_load(&r->errors), r->first_error[0] ? ": " : "", r->first_error);
    ops += atomic_load(&r->ops);
    reclaims += atomic_load(&r->reclaims);
  }
  if (failed) {
    rsd_dump_log(&d);
    fail_msg("%d of %d client processes failed", failed, C_PROCS);
  }
  /* The connections were never broken: nobody had to re-claim. */
  assert_int_equal(reclaims, 0);
  assert_true(ops > ops_before);
  assert_same_process(&d, pid, C_RELOADS);
  assert_int_equal(rsd_log_count(&d, "reload 5 done"), 1);
  assert_int_equal(rsd_log_count(&d, "without the connections"), 0);
  assert_int_equal(rsd_log_count(&d, "re-claimed after the restart"), 0);

  /* What a client saw: its longest request in each reload's window. */
  static uint64_t v[C_RELOADS * C_CLIENTS];
  size_t n = 0;
  double p50, p99, max, q50, q99, qmax;
  for (int k = 0; k < C_RELOADS; k++)
    for (int i = 0; i < C_CLIENTS; i++)
      v[n++] = atomic_load(&cs->stall_ns[k][i]);
  percentiles(v, n, &p50, &p99, &max);
  n = 0;
  for (int k = 0; k < C_RELOADS; k++)
    for (int i = 0; i < C_CLIENTS; i++)
      v[n++] = atomic_load(&cs->quiet_ns[k][i]);
  percentiles(v, n, &q50, &q99, &qmax);
  printf("%" PRIu64 " operations by %d clients through %d reloads; the longest request of a "
         "client across a reload: p50 %.1f ms, p99 %.1f ms, max %.1f ms (in the quiet "
         "stretches after: p50 %.1f ms, p99 %.1f ms)\n",
         ops, C_CLIENTS, C_RELOADS, p50, p99, max, q50, q99);

  assert_books_balance(&d, C_REGION);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
  munmap(cs, sizeof *cs);
}

/* ---- frames in pieces ------------------------------------------------------------------- */

static void pack(Pinpool__V1__Request *req, uint8_t **buf, size_t *len) {
  assert_int_equal(frame_pack(&req->base, FRAME_MAX_DEFAULT, buf, len), 0);
}

static void send_bytes(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    assert_true(w > 0);
    p += w;
    n -= (size_t)w;
  }
}

static Pinpool__V1__Response *receive(int fd, frame_rx_t *rx, int *ret_fd) {
  Pinpool__V1__Response *r = NULL;
  int rc = frame_rx_response(fd, rx, FRAME_MAX_DEFAULT, 30000, &r, ret_fd);
  if (rc) fail_msg("no reply: %s", pp_err_name(rc));
  return r;
}

static void alloc_request(rcl_t *c, Pinpool__V1__Request *req, Pinpool__V1__Alloc *m) {
  *req = (Pinpool__V1__Request)PINPOOL__V1__REQUEST__INIT;
  *m = (Pinpool__V1__Alloc)PINPOOL__V1__ALLOC__INIT;
  m->size = 8192;
  req->body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req->alloc = m;
  req->id = ++c->next_id;
}

static void frames_in_pieces_are_completed_after_a_reload(void **state) {
  rsd_t d;
  rcl_t a, b;
  Pinpool__V1__Request ra, rb, rh = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc ma, mb;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  uint8_t *fa, *fb, *fh;
  size_t la, lb, lh;
  if (rsd_start(&d, NULL)) fail_msg("the supervised daemon did not start");
  pid_t pid = main_pid(&d);
  assert_int_equal(rcl_open(&a, d.sock, "half-header"), 0);
  assert_int_equal(rcl_open(&b, d.sock, "half-payload"), 0);
  alloc_request(&a, &ra, &ma);
  alloc_request(&b, &rb, &mb);
  pack(&ra, &fa, &la);
  pack(&rb, &fb, &lb);
  /* A connection that has not said Hello yet, half of its Hello sent. */
  int c = wire_connect(d.sock, false);
  assert_true(c >= 0);
  h.protocol_version = PROTOCOL_VERSION;
  h.client_name = "half-hello";
  rh.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  rh.hello = &h;
  rh.id = 1;
  pack(&rh, &fh, &lh);
  assert_true(la > 8 && lb > 8 && lh > 8);
  send_bytes(a.fd, fa, 2);                /* half a header */
  send_bytes(b.fd, fb, 4 + (lb - 4) / 2); /* a header, half a payload */
  send_bytes(c, fh, lh / 2);
  /* Once a request sent after those bytes is answered, the daemon has read them. */
  frame_free_response(rsd_stats(&d));
  frame_free_response(rsd_stats(&d));

  assert_int_equal(rsd_reload(&d), 0);
  assert_int_equal(rsd_log_count(&d, "reload 1 done"), 1);
  /* Three connections handed over with input in their readers. */
  assert_true(rsd_log_count(&d, "bytes of input") >= 3);

  send_bytes(a.fd, fa + 2, la - 2);
  send_bytes(b.fd, fb + 4 + (lb - 4) / 2, lb - 4 - (lb - 4) / 2);
  send_bytes(c, fh + lh / 2, lh - lh / 2);
  Pinpool__V1__Response *r = receive(a.fd, &a.rx, NULL);
  assert_int_equal(r->id, ra.id);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_BUFFER);
  uint64_t ha = r->buffer->handle;
  frame_free_response(r);
  r = receive(b.fd, &b.rx, NULL);
  assert_int_equal(r->id, rb.id);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  uint64_t hb = r->buffer->handle;
  frame_free_response(r);
  frame_rx_t rx;
  int memfd = -1;
  frame_rx_init(&rx);
  r = receive(c, &rx, &memfd);
  assert_int_equal(r->id, 1);
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_WELCOME);
  assert_false(r->welcome->reclaimed);
  assert_true(memfd >= 0);
  struct stat st;
  assert_int_equal(fstat(memfd, &st), 0);
  assert_int_equal(st.st_ino, a.mst.st_ino); /* the same region */
  close(memfd);
  frame_free_response(r);
  frame_rx_free(&rx);
  close(c);
  /* The same connections go on, nothing re-claimed. */
  assert_int_equal(rcl_free(&a, ha), 0);
  assert_int_equal(rcl_free(&b, hb), 0);
  assert_int_equal(a.reclaims + b.reclaims, 0);
  free(fa);
  free(fb);
  free(fh);
  rcl_close(&a);
  rcl_close(&b);
  assert_same_process(&d, pid, 1);
  assert_books_balance(&d, REGION);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- replies queued for a client that does not read ---------------------------------- */

#define SLOW_REQUESTS 4000

/* Pipeline n lookups of a name nobody published on c, reading nothing, and wait until the
 * daemon has answered them all (served: Hello + n).  Returns the first id. */
static uint64_t pipeline_lookups(rsd_t *d, rcl_t *c, int n) {
  uint8_t *all = NULL;
  size_t total = 0;
  uint64_t first = c->next_id + 1, served = 0, want = c->next_id + (uint64_t)n;
  for (int i = 0; i < n; i++) {
    Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
    Pinpool__V1__Lookup m = PINPOOL__V1__LOOKUP__INIT;
    uint8_t *f;
    size_t len;
    m.name = "nobody-published-this";
    req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP;
    req.lookup = &m;
    req.id = ++c->next_id;
    pack(&req, &f, &len);
    all = realloc(all, total + len);
    assert_non_null(all);
    memcpy(all + total, f, len);
    total += len;
    free(f);
  }
  send_bytes(c->fd, all, total);
  free(all);
  /* The socket holds a few hundred replies; the rest wait in the daemon's queue. */
  for (int i = 0; i < 600 && served != want; i++) {
    Pinpool__V1__Response *st = rsd_stats(d);
    const Pinpool__V1__ClientInfo *ci = rsd_client(st, c->session_id);
    assert_non_null(ci);
    served = ci->requests;
    frame_free_response(st);
    if (served != want) sleep_ms(20);
  }
  assert_int_equal(served, want);
  return first;
}

static void replies_queued_for_a_slow_reader_are_delivered_after_a_reload(void **state) {
  rsd_t d;
  rcl_t c;
  if (rsd_start(&d, NULL)) fail_msg("the supervised daemon did not start");
  pid_t pid = main_pid(&d);
  assert_int_equal(rcl_open(&c, d.sock, "slow-reader"), 0);
  uint64_t first = pipeline_lookups(&d, &c, SLOW_REQUESTS);

  assert_int_equal(rsd_reload(&d), 0);
  assert_int_equal(rsd_log_count(&d, "reload 1 done"), 1);
  /* Its replies were handed over (a line with replies, not only input). */
  assert_true(rsd_log_count(&d, "of replies taken over") >
              rsd_log_count(&d, " and 0 of replies taken over"));

  /* Every reply, in order, on the same connection. */
  for (uint64_t id = first; id < first + SLOW_REQUESTS; id++) {
    Pinpool__V1__Response *r = receive(c.fd, &c.rx, NULL);
    if (r->id != id)
      fail_msg("reply for request %" PRIu64 " came where %" PRIu64 "'s belongs", r->id, id);
    assert_int_equal(r->status, PINPOOL__V1__STATUS__NOT_FOUND);
    frame_free_response(r);
  }
  /* The session goes on where it was: the same one, its request count carried over. */
  uint64_t h;
  assert_int_equal(rcl_alloc(&c, 4096, NULL, &h, NULL), 0);
  assert_int_equal(rcl_free(&c, h), 0);
  assert_int_equal(c.reclaims, 0);
  Pinpool__V1__Response *st = rsd_stats(&d);
  const Pinpool__V1__ClientInfo *ci = rsd_client(st, c.session_id);
  assert_non_null(ci);
  assert_false(ci->detached);
  assert_int_equal(ci->requests, SLOW_REQUESTS + 3);
  frame_free_response(st);
  rcl_close(&c);
  assert_same_process(&d, pid, 1);
  assert_books_balance(&d, REGION);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

static void a_closing_connection_gets_its_last_replies_after_a_reload(void **state) {
  rsd_t d;
  rcl_t c;
  if (rsd_start(&d, NULL)) fail_msg("the supervised daemon did not start");
  assert_int_equal(rcl_open(&c, d.sock, "closing"), 0);
  uint64_t first = pipeline_lookups(&d, &c, 2000);
  /* A frame of length 0: PROTOCOL_ERROR, queued behind the lookups' replies, and the
   * connection closes once they are all written — its session is released at once. */
  static const uint8_t zero[4] = {0};
  send_bytes(c.fd, zero, sizeof zero);
  bool gone = false;
  for (int i = 0; i < 600 && !gone; i++) {
    Pinpool__V1__Response *st = rsd_stats(&d);
    gone = rsd_client(st, c.session_id) == NULL;
    frame_free_response(st);
    if (!gone) sleep_ms(20);
  }
  assert_true(gone);
  assert_int_equal(rsd_reload(&d), 0);
  assert_true(rsd_log_count(&d, "a closing connection") >= 1);
  for (uint64_t id = first; id < first + 2000; id++) {
    Pinpool__V1__Response *r = receive(c.fd, &c.rx, NULL);
    if (r->id != id)
      fail_msg("reply for %" PRIu64 " came where %" PRIu64 "'s belongs", r->id, id);
    assert_int_equal(r->status, PINPOOL__V1__STATUS__NOT_FOUND);
    frame_free_response(r);
  }
  Pinpool__V1__Response *r = receive(c.fd, &c.rx, NULL);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__PROTOCOL_ERROR);
  frame_free_response(r);
  /* Then the end of the connection. */
  uint8_t b;
  assert_int_equal(read(c.fd, &b, 1), 0);
  rcl_close(&c);
  assert_books_balance(&d, REGION);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- a binary that is not there --------------------------------------------------------- */

static void copy_file(const char *from, const char *to) {
  char buf[65536];
  int in = open(from, O_RDONLY | O_CLOEXEC), out;
  ssize_t n;
  assert_true(in >= 0);
  unlink(to);
  out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  assert_true(out >= 0);
  while ((n = read(in, buf, sizeof buf)) > 0)
    assert_int_equal(write(out, buf, (size_t)n), n);
  assert_int_equal(n, 0);
  close(in);
  assert_int_equal(close(out), 0);
}

static void a_reload_without_its_binary_fails_and_the_daemon_serves_on(void **state) {
  char dir[] = "/tmp/pp-reload-bin-XXXXXX", bin[128], orig[4096];
  rsd_t d;
  rcl_t c;
  uint64_t h, off, probe;
  assert_non_null(mkdtemp(dir));
  snprintf(bin, sizeof bin, "%s/pinpoold", dir);
  testd_bin(orig, sizeof orig, "pinpoold");
  copy_file(orig, bin);
  rsd_opts_t o = {.bin = bin};
  if (rsd_start(&d, &o)) fail_msg("the supervised daemon did not start");
  pid_t pid = main_pid(&d);
  assert_int_equal(rcl_open(&c, d.sock, "bystander"), 0);
  assert_int_equal(rcl_alloc(&c, 65536, "kept", &h, &off), 0);
  pattern_fill(c.base + off, 65536, 7);

  /* Gone. */
  assert_int_equal(unlink(bin), 0);
  assert_int_equal(rsd_reload(&d), 0);
  assert_int_equal(rsd_log_count(&d, "reload: cannot execute"), 1);
  assert_int_equal(rcl_lookup(&c, "kept", &probe, NULL), 0);
  assert_int_equal(rcl_free(&c, probe), 0);
  /* Not an executable format. */
  FILE *f = fopen(bin, "w");
  assert_non_null(f);
  fputs("this is not a program\n", f);
  fclose(f);
  assert_int_equal(chmod(bin, 0755), 0);
  assert_int_equal(rsd_reload(&d), 0);
  assert_int_equal(rsd_log_count(&d, "reload: cannot execute"), 2);
  assert_int_equal(rcl_lookup(&c, "kept", &probe, NULL), 0);
  assert_int_equal(rcl_free(&c, probe), 0);
  assert_int_equal(rsd_log_count(&d, "reload 1 done"), 0);
  /* Back: the next reload goes through. */
  copy_file(orig, bin);
  assert_int_equal(rsd_reload(&d), 0);
  assert_int_equal(rsd_log_count(&d, "reload 1 done"), 1);
  assert_int_equal(rcl_lookup(&c, "kept", &probe, NULL), 0);
  assert_int_equal(rcl_free(&c, probe), 0);

  assert_true(pattern_intact(c.base + off, 65536, 7));
  assert_int_equal(c.reclaims, 0);
  assert_int_equal(rcl_free(&c, h), 0);
  rcl_close(&c);
  assert_same_process(&d, pid, 3);
  assert_books_balance(&d, REGION);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
  unlink(bin);
  rmdir(dir);
}

/* ---- a handoff the new image cannot read ------------------------------------------------ */

static void a_handoff_it_cannot_read_falls_back_to_reclaims(void **state) {
  static const char *const env[] = {"PINPOOLD_TEST_HANDOFF_VERSION=99", NULL};
  rsd_opts_t o = {.env = env};
  rsd_t d;
  pp_client *c;
  pp_cache *k;
  pp_buffer b, x;
  void *objs[16];
  if (rsd_start(&d, &o)) fail_msg("the supervised daemon did not start");
  pid_t pid = main_pid(&d);
  assert_int_equal(pp_connect(d.sock, "fallback", &c), 0);
  assert_int_equal(pp_alloc(c, 32768, 0, &b), 0);
  pattern_fill(b.addr, b.size, 11);
  assert_int_equal(pp_cache_open(c, "fallback", 128, 0, &k), 0);
  for (int i = 0; i < 16; i++) {
    assert_non_null(objs[i] = pp_cache_alloc(k));
    pattern_fill(objs[i], 128, 20 + (uint64_t)i);
  }
  assert_int_equal(rsd_reload(&d), 0);
  assert_true(rsd_log_count(&d, "handoff version 99, this binary reads up to") >= 1);
  assert_int_equal(rsd_log_count(&d, "without the connections"), 1);
  /* The connection was closed; the next call finds the session again from the journal. */
  assert_int_equal(pp_alloc(c, 4096, 0, &x), 0);
  assert_int_equal(pp_reclaims(c), 1);
  assert_true(pattern_intact(b.addr, b.size, 11));
  for (int i = 0; i < 16; i++) {
    assert_true(pattern_intact(objs[i], 128, 20 + (uint64_t)i));
    assert_int_equal(pp_cache_free(k, objs[i]), 0);
  }
  assert_int_equal(pp_free(c, x.handle), 0);
  assert_int_equal(pp_free(c, b.handle), 0);
  pp_disconnect(c);
  assert_same_process(&d, pid, 1);
  assert_books_balance(&d, REGION);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- a session waiting for its client ------------------------------------------------- */

static uint64_t deadline_of(const rsd_t *d, uint64_t sid) {
  Pinpool__V1__Response *st = rsd_stats(d);
  const Pinpool__V1__ClientInfo *ci = rsd_client(st, sid);
  assert_non_null(ci);
  assert_true(ci->detached);
  uint64_t at = ci->detached_deadline_unix_ms;
  frame_free_response(st);
  return at;
}

static void a_session_waiting_to_be_reclaimed_keeps_its_deadline_across_a_reload(void **state) {
  static const char *const args[] = {"--grace", "60000", NULL};
  rsd_opts_t o = {.args = args};
  rsd_t d;
  rcl_t c;
  uint64_t h, off, probe;
  if (rsd_start(&d, &o)) fail_msg("the supervised daemon did not start");
  assert_int_equal(rcl_open(&c, d.sock, "away"), 0);
  assert_int_equal(rcl_alloc(&c, 16384, "away", &h, &off), 0);
  pattern_fill(c.base + off, 16384, 3);
  assert_int_equal(rsd_kill(&d), 0);
  uint64_t at = deadline_of(&d, c.session_id);
  assert_true(at > unix_ms());
  sleep_ms(20);
  assert_int_equal(rsd_reload(&d), 0);
  assert_int_equal(rsd_log_count(&d, "reload 1 done"), 1);
  assert_int_equal(deadline_of(&d, c.session_id), at);
  /* Its client comes back after the reload and finds everything. */
  assert_int_equal(rcl_lookup(&c, "away", &probe, NULL), 0);
  assert_int_equal(c.reclaims, 1);
  assert_true(pattern_intact(c.base + off, 16384, 3));
  assert_int_equal(rcl_free(&c, probe), 0);
  assert_int_equal(rcl_free(&c, h), 0);
  rcl_close(&c);
  assert_books_balance(&d, REGION);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- a crash after reloads -------------------------------------------------------------- */

static void a_crash_after_reloads_comes_back_from_the_same_fd_store(void **state) {
  rsd_t d;
  rcl_t c;
  uint64_t h1, o1, h2, o2, probe;
  if (rsd_start(&d, NULL)) fail_msg("the supervised daemon did not start");
  assert_int_equal(sup_fd_count(d.sup), 2); /* the region and the journal */
  assert_int_equal(rcl_open(&c, d.sock, "crash-after-reload"), 0);
  assert_int_equal(rcl_alloc(&c, 8192, "before", &h1, &o1), 0);
  pattern_fill(c.base + o1, 8192, 1);
  assert_int_equal(rsd_reload(&d), 0);
  assert_int_equal(rsd_reload(&d), 0);
  /* The store is untouched: the same two memfds, nothing added or removed. */
  assert_int_equal(sup_fd_count(d.sup), 2);
  assert_int_equal(sup_count(d.sup, 0, SUP_EV_FD_REMOVED), 0);
  assert_int_equal(sup_count(d.sup, 0, SUP_EV_FD_DUPLICATE), 0);
  /* A change the new image journaled, into the journal the store still holds. */
  assert_int_equal(rcl_alloc(&c, 16384, "after", &h2, &o2), 0);
  pattern_fill(c.base + o2, 16384, 2);
  assert_int_equal(rsd_kill(&d), 0);
  assert_true(rsd_log_count(&d, "restored from the journal") >= 1);
  assert_int_equal(rcl_lookup(&c, "after", &probe, NULL), 0);
  assert_int_equal(c.reclaims, 1);
  assert_int_equal(rcl_free(&c, probe), 0);
  assert_true(pattern_intact(c.base + o1, 8192, 1));
  assert_true(pattern_intact(c.base + o2, 16384, 2));
  assert_int_equal(rcl_free(&c, h1), 0);
  assert_int_equal(rcl_free(&c, h2), 0);
  rcl_close(&c);
  assert_books_balance(&d, REGION);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- the watchdog ------------------------------------------------------------------------ */

static void the_watchdog_is_fed_across_reloads(void **state) {
  rsd_opts_t o = {.watchdog_usec = 3000000};
  rsd_t d;
  rcl_t c;
  uint64_t h;
  if (rsd_start(&d, &o)) fail_msg("the supervised daemon did not start");
  pid_t pid = main_pid(&d);
  assert_int_equal(rcl_open(&c, d.sock, "watched"), 0);
  for (int k = 0; k < 3; k++) {
    assert_int_equal(rsd_reload(&d), 0);
    assert_int_equal(rcl_alloc(&c, 4096, NULL, &h, NULL), 0);
    assert_int_equal(rcl_free(&c, h), 0);
  }
  /* Longer than WatchdogSec= after the last reload: only an image that pings stays. */
  for (int i = 0; i < 35; i++) {
    sleep_ms(100);
    assert_int_equal(rcl_alloc(&c, 4096, NULL, &h, NULL), 0);
    assert_int_equal(rcl_free(&c, h), 0);
  }
  sup_info_t in;
  sup_info(d.sup, &in);
  assert_int_equal(in.watchdog_timeouts, 0);
  assert_same_process(&d, pid, 3);
  /* Each image ran its own watchdog timer. */
  assert_int_equal(rsd_log_count(&d, "watchdog: 3000 ms, pinged every 1500 ms"), 4);
  assert_int_equal(c.reclaims, 0);
  rcl_close(&c);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- no service manager --------------------------------------------------------------- */

static bool log_has(const testd_t *t, const char *needle) {
  char line[2048];
  bool found = false;
  FILE *f = fopen(t->log, "r");
  if (!f) return false;
  while (!found && fgets(line, sizeof line, f))
    found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

static void without_a_service_manager_a_reload_carries_everything_too(void **state) {
  testd_t t;
  pp_client *c;
  pp_buffer b, x;
  assert_int_equal(testd_start(&t, NULL), 0);
  assert_int_equal(pp_connect(t.sock, "plain", &c), 0);
  assert_int_equal(pp_alloc(c, 65536, 0, &b), 0);
  pattern_fill(b.addr, b.size, 5);
  assert_int_equal(kill(t.pid, SIGHUP), 0);
  for (int i = 0; i < 1000 && !log_has(&t, "reload 1 done"); i++)
    sleep_ms(20);
  if (!log_has(&t, "reload 1 done")) {
    testd_dump_log(&t);
    fail_msg("no reload within 20 s");
  }
  /* Nothing broke: without a store a broken connection could not be re-claimed at all. */
  assert_int_equal(pp_alloc(c, 4096, 0, &x), 0);
  assert_int_equal(pp_reclaims(c), 0);
  assert_true(pattern_intact(b.addr, b.size, 5));
  assert_int_equal(pp_free(c, x.handle), 0);
  assert_int_equal(pp_free(c, b.handle), 0);
  pp_disconnect(c);
  assert_int_equal(testd_wait_free(&t, REGION, 10000, NULL), 0);
  /* The socket it bound is still its own: the clean stop removes it. */
  assert_int_equal(testd_stop(&t), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_hundred_clients_carry_on_through_five_reloads_without_a_reclaim),
      cmocka_unit_test(frames_in_pieces_are_completed_after_a_reload),
      cmocka_unit_test(replies_queued_for_a_slow_reader_are_delivered_after_a_reload),
      cmocka_unit_test(a_closing_connection_gets_its_last_replies_after_a_reload),
      cmocka_unit_test(a_reload_without_its_binary_fails_and_the_daemon_serves_on),
      cmocka_unit_test(a_handoff_it_cannot_read_falls_back_to_reclaims),
      cmocka_unit_test(a_session_waiting_to_be_reclaimed_keeps_its_deadline_across_a_reload),
      cmocka_unit_test(a_crash_after_reloads_comes_back_from_the_same_fd_store),
      cmocka_unit_test(the_watchdog_is_fed_across_reloads),
      cmocka_unit_test(without_a_service_manager_a_reload_carries_everything_too),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
