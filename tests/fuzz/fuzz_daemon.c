/*
 * fuzz_daemon — a real pinpoold under garbage, truncated, oversized and mutated frames
 * over many connections, while a well-behaved client keeps getting correct answers.
 *
 * Set-up: start $PP_BIN_DIR/pinpoold on a temporary socket (tests/common/testd.h: 16 MiB
 * of 4 KiB pages; root, or our gid as --admin-group, is admin) with --max-clients 64,
 * connect an admin client and a well-behaved client (wire.h) that holds a published
 * buffer filled with a known pattern.
 *
 * Attack: up to ATTACKERS connections at once, each with a script chosen at random —
 * raw random bytes; Hello then random bytes; Hello then valid requests with random (often
 * absurd) arguments; Hello then mutated requests; oversized or zero length headers;
 * truncated frames; a wrong protocol version; a request before Hello; connect-and-close;
 * a client that pipelines requests and never reads.  Scripts are sent in small random
 * pieces interleaved across connections (so the daemon sees partial reads), and
 * connections close at random points, sometimes with unread replies.
 *
 * Oracles: after every round the daemon is still running; every few rounds the good
 * client's requests get exactly the right answers (its published buffer's pattern is
 * intact, fresh ZERO buffers are zero and do not overlap what it holds, cache objects are
 * distinct and aligned, foreign and stale handles are refused); at the end, with every
 * attacker gone and after a shrink, Stats shows no buffer, no held byte and the same free
 * bytes as before the attack; SIGTERM then ends the daemon with status 0 (an ASan build of
 * the daemon would exit non-zero on a leak).
 *
 * Deterministic (fixed seed, PP_FUZZ_SEED overrides); bounded by rounds and by time
 * (PP_FUZZ_SECONDS, default 6).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fuzz_common.h"
#include "testd.h"
#include "wire.h"

#define ATTACKERS 6
#define GOOD_NAME "fuzz-good-buf"
#define GOOD_PATTERN(i) ((uint8_t)((i)*7u + 3u))

static testd_t g_d;
static bool g_no_daemon; /* no pinpoold was built: the test skips */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void daemon_must_be_alive(const char *when) {
  int st;
  pid_t r = waitpid(g_d.pid, &st, WNOHANG);
  if (r == g_d.pid) {
    g_d.pid = 0;
    fail_msg("pinpoold died %s: %s %d", when, WIFSIGNALED(st) ? "signal" : "exit status",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
  }
}

/* ---- answers ------------------------------------------------------------------------- */

static void expect_status(resp_t *r, Pinpool__V1__Status want, const char *what) {
  if (r->status != want)
    fail_msg("%s: status %s (%s), expected %s", what, pp_status_name(-(int)r->status),
             r->message ? r->message : "", pp_status_name(-(int)want));
}

/* The same for a wire_* call's code. */
static void expect_rc(int rc, int want, const char *what) {
  if (rc != want)
    fail_msg("%s: status %s, expected %s", what, pp_status_name(rc), pp_status_name(want));
}

static resp_t *do_stats(wire_t *c) {
  resp_t *r;
  expect_rc(wire_stats(c, false, false, &r), 0, "stats");
  return r;
}

/* ---- the well-behaved client's checks ------------------------------------------------ */

typedef struct good {
  wire_t c;
  uint64_t handle, offset, size; /* the published buffer it holds throughout */
  uint32_t cache_id, object_size, align;
  uint64_t checks;
} good_t;

static int overlaps(uint64_t a, uint64_t an, uint64_t b, uint64_t bn) {
  return a < b + bn && b < a + an;
}

static void good_check_pattern(good_t *g) {
  for (uint64_t i = 0; i < g->size; i += 61)
    if (g->c.base[g->offset + i] != GOOD_PATTERN(i))
      fail_msg("published buffer byte %llu changed", (unsigned long long)i);
}

static void good_setup(good_t *g) {
  resp_t *r;
  assert_int_equal(wire_open(&g->c, g_d.sock, "fuzz-good"), 0);
  wire_alloc(&g->c, 3 * 4096, 0x2, GOOD_NAME, &r);
  expect_status(r, PINPOOL__V1__STATUS__OK, "alloc of the published buffer");
  g->handle = r->buffer->handle;
  g->offset = r->buffer->offset;
  g->size = r->buffer->size;
  assert_true(g->size >= 3 * 4096);
  frame_free_response(r);
  for (uint64_t i = 0; i < g->size; i++)
    g->c.base[g->offset + i] = GOOD_PATTERN(i);

  Pinpool__V1__CacheOpen co = PINPOOL__V1__CACHE_OPEN__INIT;
  co.name = "fuzz-good-objs";
  co.object_size = 96;
  co.align = 32;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &co;
  r = wire_call(&g->c, &req);
  expect_status(r, PINPOOL__V1__STATUS__OK, "cache_open");
  g->cache_id = r->cache->cache_id;
  g->object_size = r->cache->object_size;
  g->align = r->cache->align;
  assert_true(g->object_size >= 96);
  frame_free_response(r);
}

static void good_round(good_t *g) {
  resp_t *r;
  uint64_t o[16];
  size_t n = 0;
  int rc;
  g->checks++;
  good_check_pattern(g);

  /* a fresh zeroed buffer: OK (then zero, in range, disjoint) or a legal refusal */
  rc = wire_alloc(&g->c, 4096, 0x3, NULL, &r);
  if (rc == 0) {
    const Pinpool__V1__Buffer *b = r->buffer;
    uint64_t h = b->handle, off = b->offset, sz = b->size;
    assert_true(sz >= 4096);
    assert_true(off + sz <= g->c.region_size);
    assert_true(b->contiguous); /* a page-sized block always is */
    if (overlaps(off, sz, g->offset, g->size)) fail_msg("new buffer overlaps a held one");
    for (uint64_t i = 0; i < sz; i++)
      if (g->c.base[off + i]) fail_msg("ZERO buffer has byte %llu set", (unsigned long long)i);
    memset(g->c.base + off, 0xa5, sz);
    expect_rc(wire_free(&g->c, h), 0, "free of a fresh buffer");
    expect_rc(wire_free(&g->c, h), PP_ENOENT, "double free");
  } else if (rc != PP_ENOMEM) {
    expect_status(r, PINPOOL__V1__STATUS__OK, "alloc of 4096 bytes");
  }
  frame_free_response(r);

  /* a second reference to our own published buffer, then drop it */
  wire_lookup(&g->c, GOOD_NAME, &r);
  expect_status(r, PINPOOL__V1__STATUS__OK, "lookup of our published buffer");
  assert_int_equal(r->buffer->handle, g->handle);
  assert_int_equal(r->buffer->offset, g->offset);
  frame_free_response(r);
  expect_rc(wire_free(&g->c, g->handle), 0, "free of the lookup's reference");

  /* objects: distinct, aligned, disjoint from the buffer; then all back */
  rc = wire_cache_alloc(&g->c, g->cache_id, 16, o, &n);
  if (rc == 0) {
    assert_int_equal(n, 16);
    for (size_t i = 0; i < 16; i++) {
      if (o[i] % g->align) fail_msg("object %llx misaligned", (unsigned long long)o[i]);
      if (overlaps(o[i], g->object_size, g->offset, g->size))
        fail_msg("object overlaps buffer");
      for (size_t j = 0; j < i; j++)
        if (overlaps(o[i], g->object_size, o[j], g->object_size)) fail_msg("objects overlap");
    }
    expect_rc(wire_cache_free(&g->c, g->cache_id, o, 16, NULL, 0), 0,
              "cache_free of our objects");
  } else if (rc != PP_ENOMEM) {
    expect_rc(rc, 0, "cache_alloc of 16");
  }

  expect_rc(wire_free(&g->c, 0), PP_ENOENT, "free of handle 0");
  good_check_pattern(g);
}

/* ---- attackers ------------------------------------------------------------------------ */

typedef struct attacker {
  int fd;               /* -1: slot free */
  fuzz_stream_t script; /* bytes to send */
  size_t sent;
  size_t close_at; /* close once this much is sent (<= script.n) */
  int reads;       /* drain replies */
  int linger;      /* rounds to stay open after the script */
} attacker_t;

static uint64_t stat_connections, stat_bytes, stat_scripts[11];

static void put_request(fuzz_stream_t *s, Pinpool__V1__Request *req) {
  uint8_t *buf;
  size_t len;
  assert_int_equal(frame_pack(&req->base, FRAME_MAX_DEFAULT, &buf, &len), 0);
  fuzz_put(s, buf, len);
  free(buf);
}

static void put_hello(fuzz_stream_t *s, uint32_t version) {
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  h.protocol_version = version;
  h.client_name = "fuzz-attacker";
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.id = fuzz_rnd();
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  put_request(s, &req);
}

static void put_random_bytes(fuzz_stream_t *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint8_t b = (uint8_t)fuzz_rnd();
    fuzz_put(s, &b, 1);
  }
}

static uint64_t pick_u64(void) {
  static const uint64_t v[] = {0,
                               1,
                               63,
                               64,
                               4095,
                               4096,
                               4097,
                               65536,
                               1u << 20,
                               16u << 20,
                               (16u << 20) + 1,
                               UINT32_MAX,
                               UINT64_MAX};
  return fuzz_below(2) ? v[fuzz_below(sizeof v / sizeof v[0])] : fuzz_rnd() >> fuzz_below(64);
}

/* A valid Request with random, often absurd, arguments. */
static void put_random_request(fuzz_stream_t *s) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc a = PINPOOL__V1__ALLOC__INIT;
  Pinpool__V1__Free f = PINPOOL__V1__FREE__INIT;
  Pinpool__V1__Lookup lk = PINPOOL__V1__LOOKUP__INIT;
  Pinpool__V1__CacheOpen co = PINPOOL__V1__CACHE_OPEN__INIT;
  Pinpool__V1__CacheAlloc ca = PINPOOL__V1__CACHE_ALLOC__INIT;
  Pinpool__V1__CacheFree cf = PINPOOL__V1__CACHE_FREE__INIT;
  Pinpool__V1__StatsRequest st = PINPOOL__V1__STATS_REQUEST__INIT;
  Pinpool__V1__ShrinkRequest sh = PINPOOL__V1__SHRINK_REQUEST__INIT;
  Pinpool__V1__AllocBulk ab = PINPOOL__V1__ALLOC_BULK__INIT;
  Pinpool__V1__FreeBulk fb = PINPOOL__V1__FREE_BULK__INIT;
  Pinpool__V1__Describe de = PINPOOL__V1__DESCRIBE__INIT;
  Pinpool__V1__CacheReport rep = PINPOOL__V1__CACHE_REPORT__INIT;
  uint64_t handles[8];
  static const char *names[] = {"", GOOD_NAME, "a", "fz-shared", "fuzz-good-objs", "x\x01y"};
  char cname[16];
  uint64_t offs[8];

  req.id = fuzz_rnd();
  switch (fuzz_below(12)) {
  case 0:
  case 1:
    a.size = fuzz_below(3) ? fuzz_below(5 * 4096) : pick_u64();
    a.flags = (uint32_t)fuzz_below(8);
    a.name = (char *)(fuzz_below(4) ? "" : names[fuzz_below(6)]);
    req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC, req.alloc = &a;
    break;
  case 2:
    f.handle = fuzz_below(4) ? fuzz_below(64) : pick_u64();
    req.body_case = PINPOOL__V1__REQUEST__BODY_FREE, req.free = &f;
    break;
  case 3:
    lk.name = (char *)names[fuzz_below(6)];
    req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP, req.lookup = &lk;
    break;
  case 4:
    snprintf(cname, sizeof cname, "fz-%u", (unsigned)fuzz_below(6));
    co.name = fuzz_below(8) ? cname : (char *)names[fuzz_below(6)];
    co.object_size = (uint32_t)(fuzz_below(2) ? fuzz_below(512) : pick_u64());
    co.align = (uint32_t)(fuzz_below(2) ? 1u << fuzz_below(13) : pick_u64());
    req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN, req.cache_open = &co;
    break;
  case 5:
    ca.cache_id = (uint32_t)fuzz_below(10);
    ca.count = (uint32_t)(fuzz_below(2) ? fuzz_below(40) : pick_u64());
    req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC, req.cache_alloc = &ca;
    break;
  case 6:
    cf.cache_id = (uint32_t)fuzz_below(10);
    cf.n_offsets = fuzz_below(9);
    for (size_t i = 0; i < cf.n_offsets; i++)
      offs[i] = fuzz_below(2) ? fuzz_below(16 << 20) : pick_u64();
    cf.offsets = offs;
    req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE, req.cache_free = &cf;
    break;
  case 7:
    st.include_buffers = (int)fuzz_below(2);
    st.include_map = (int)fuzz_below(2);
    req.body_case = PINPOOL__V1__REQUEST__BODY_STATS, req.stats = &st;
    break;
  case 8:
    ab.size = fuzz_below(3) ? fuzz_below(5 * 4096) : pick_u64();
    ab.count = (uint32_t)(fuzz_below(3) ? fuzz_below(40) : pick_u64());
    ab.flags = (uint32_t)fuzz_below(8);
    rep.buffers = pick_u64(), rep.bytes = pick_u64();
    if (fuzz_below(2)) ab.cache = &rep;
    req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC_BULK, req.alloc_bulk = &ab;
    break;
  case 9:
    fb.n_handles = fuzz_below(9);
    for (size_t i = 0; i < fb.n_handles; i++)
      handles[i] = fuzz_below(4) ? fuzz_below(64) : pick_u64();
    fb.handles = handles;
    rep.buffers = pick_u64(), rep.bytes = pick_u64();
    if (fuzz_below(2)) fb.cache = &rep;
    req.body_case = PINPOOL__V1__REQUEST__BODY_FREE_BULK, req.free_bulk = &fb;
    break;
  case 10:
    de.handle = fuzz_below(4) ? fuzz_below(64) : pick_u64();
    req.body_case = PINPOOL__V1__REQUEST__BODY_DESCRIBE, req.describe = &de;
    break;
  default: req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK, req.shrink = &sh; break;
  }
  put_request(s, &req);
}

static void attacker_script(attacker_t *a) {
  fuzz_stream_t *s = &a->script;
  fuzz_stream_t m = {0};
  int kind = (int)fuzz_below(11);
  s->n = 0;
  a->reads = fuzz_below(3) != 0;
  stat_scripts[kind]++;
  switch (kind) {
  case 0: /* garbage before anything */ put_random_bytes(s, 1 + fuzz_below(200)); break;
  case 1: /* hello, then garbage */
    put_hello(s, PROTOCOL_VERSION);
    put_random_bytes(s, 1 + fuzz_below(200));
    break;
  case 2: /* hello, then valid requests with random arguments */
  case 3:
    put_hello(s, PROTOCOL_VERSION);
    for (size_t i = 1 + fuzz_below(20); i > 0; i--)
      put_random_request(s);
    break;
  case 4: /* hello (sometimes mutated), then mutated requests */
    if (fuzz_below(4)) {
      put_hello(s, PROTOCOL_VERSION);
    } else {
      fuzz_mutate(&m, 1);
      fuzz_put_le32(s, (uint32_t)m.n);
      fuzz_put(s, m.p, m.n);
    }
    for (size_t i = 1 + fuzz_below(10); i > 0; i--) {
      fuzz_mutate(&m, 1);
      fuzz_put_le32(s, (uint32_t)m.n);
      fuzz_put(s, m.p, m.n);
    }
    break;
  case 5: /* oversized length, sometimes after valid traffic, then bytes */
    if (fuzz_below(2)) {
      put_hello(s, PROTOCOL_VERSION);
      put_random_request(s);
    }
    fuzz_put_le32(
        s, (uint32_t[]){FRAME_MAX_DEFAULT + 1, 1u << 24, 1u << 31, UINT32_MAX}[fuzz_below(4)]);
    put_random_bytes(s, fuzz_below(300));
    break;
  case 6: /* zero length */
    if (fuzz_below(2)) put_hello(s, PROTOCOL_VERSION);
    fuzz_put_le32(s, 0);
    put_random_bytes(s, fuzz_below(10));
    break;
  case 7: { /* truncated frame at the end */
    put_hello(s, PROTOCOL_VERSION);
    put_random_request(s);
    size_t before = s->n;
    put_random_request(s);
    s->n = before + fuzz_below(s->n - before); /* cut inside the last frame */
    break;
  }
  case 8: /* wrong version */
    put_hello(s, fuzz_below(2) ? 0 : 2 + (uint32_t)fuzz_below(1000));
    put_random_request(s);
    break;
  case 9: /* a request before hello, or nothing at all */
    if (fuzz_below(2)) put_random_request(s);
    break;
  default: /* pipelines a lot and never reads */
    put_hello(s, PROTOCOL_VERSION);
    for (int i = 0; i < 60; i++)
      put_random_request(s);
    a->reads = 0;
    break;
  }
  free(m.p);
  a->sent = 0;
  a->close_at = fuzz_below(6) ? s->n : fuzz_below(s->n + 1); /* sometimes hang up early */
  a->linger = (int)fuzz_below(4);
}

static void attacker_close(attacker_t *a) {
  if (a->fd >= 0) close(a->fd);
  a->fd = -1;
}

static void attacker_drain(attacker_t *a) {
  uint8_t buf[4096];
  for (;;) {
    ssize_t n = recv(a->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) continue;
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) attacker_close(a);
    return;
  }
}

static void attacker_step(attacker_t *a) {
  if (a->fd < 0) {
    attacker_script(a);
    a->fd = wire_connect(g_d.sock, true);
    if (a->fd < 0) {
      /* EAGAIN: the listen backlog is full of hung-up connections a slow (ASan) daemon
       * has not accepted yet; try again in a later round */
      if (errno != EAGAIN) fail_msg("connect: %s", strerror(errno));
      return;
    }
    stat_connections++;
    return;
  }
  if (a->sent < a->close_at) {
    size_t left = a->close_at - a->sent;
    size_t n = fuzz_below(5) ? 1 + fuzz_below(24) : left;
    if (n > left) n = left;
    ssize_t w = send(a->fd, a->script.p + a->sent, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) { /* the daemon closed on us (EPIPE/ECONNRESET) or its buffer is full */
      attacker_close(a);
      return;
    }
    a->sent += (size_t)w;
    stat_bytes += (uint64_t)w;
  } else if (a->linger-- <= 0) {
    if (a->reads && fuzz_below(2)) attacker_drain(a);
    attacker_close(a);
    return;
  }
  if (a->reads && a->fd >= 0 && fuzz_below(3) == 0) attacker_drain(a);
}

/* ---- the daemon --------------------------------------------------------------------- */

static int start_daemon(void **state) {
  char bin[512];
  if (access(testd_bin(bin, sizeof bin, "pinpoold"), X_OK) != 0) {
    printf("skipped: no pinpoold at %s\n", bin);
    g_no_daemon = true;
    return 0;
  }
  return testd_start(&g_d, "--max-clients", "64", NULL);
}

/* After a failure half-way; the test itself ends with testd_stop() as a check. */
static int stop_daemon(void **state) {
  return testd_stop(&g_d);
}

static void daemon_survives_hostile_clients_and_serves_a_good_one(void **state) {
  if (g_no_daemon) skip();
  const char *seed = getenv("PP_FUZZ_SEED"), *secs = getenv("PP_FUZZ_SECONDS");
  fuzz_rng_state = seed ? strtoull(seed, NULL, 0) : 0x5eed0f00dULL;
  if (!fuzz_rng_state) fuzz_rng_state = 1;
  double budget = secs ? atof(secs) : 6.0;
  signal(SIGPIPE, SIG_IGN);
  fuzz_build_corpus();

  wire_t admin;
  assert_int_equal(wire_open(&admin, g_d.sock, "fuzz-admin"), 0);
  expect_rc(wire_shrink(&admin, NULL), 0, "shrink");
  resp_t *s0 = do_stats(&admin);
  uint64_t free_before = s0->stats->free_bytes;
  assert_int_equal(s0->stats->nr_buffers, 0);
  frame_free_response(s0);

  good_t good = {0};
  good_setup(&good);

  attacker_t att[ATTACKERS];
  for (int i = 0; i < ATTACKERS; i++)
    att[i] = (attacker_t){.fd = -1};
  double t0 = now_s();
  long rounds = 0;
  uint64_t max_buffers = 0, max_clients = 0;
  for (; rounds < 200000 && now_s() - t0 < budget; rounds++) {
    attacker_step(&att[fuzz_below(ATTACKERS)]);
    if (rounds % 64 == 0) {
      daemon_must_be_alive("under attack");
      good_round(&good);
    }
    if (rounds % 1024 ==
        512) { /* the attackers must reach the handlers, not only the framing */
      resp_t *s = do_stats(&admin);
      if (s->stats->nr_buffers > max_buffers) max_buffers = s->stats->nr_buffers;
      if (s->stats->nr_clients > max_clients) max_clients = s->stats->nr_clients;
      frame_free_response(s);
    }
  }
  for (int i = 0; i < ATTACKERS; i++)
    attacker_close(&att[i]);
  daemon_must_be_alive("after the attack");
  good_round(&good);

  expect_rc(wire_free(&good.c, good.handle), 0, "free of the published buffer");
  wire_close(&good.c);

  /* the daemon sees every hang-up in its own time: wait until only the admin is left */
  resp_t *s1 = NULL;
  for (double t1 = now_s();; usleep(20000)) {
    expect_rc(wire_shrink(&admin, NULL), 0, "shrink");
    s1 = do_stats(&admin);
    if (s1->stats->nr_clients == 1 && s1->stats->free_bytes == free_before) break;
    if (now_s() - t1 > 10) break;
    frame_free_response(s1);
  }
  printf("fuzz_daemon: %ld rounds in %.1f s, %llu connections, %llu bytes sent, %llu good "
         "checks; scripts:",
         rounds, now_s() - t0, (unsigned long long)stat_connections,
         (unsigned long long)stat_bytes, (unsigned long long)good.checks);
  for (int i = 0; i < 11; i++)
    printf(" %llu", (unsigned long long)stat_scripts[i]);
  printf("; at most %llu clients and %llu buffers at once\n", (unsigned long long)max_clients,
         (unsigned long long)max_buffers);
  assert_int_equal(s1->stats->nr_clients, 1);
  assert_int_equal(s1->stats->nr_buffers, 0);
  assert_int_equal(s1->stats->used_bytes, 0);
  assert_int_equal(s1->stats->free_bytes, free_before);
  frame_free_response(s1);
  wire_close(&admin);
  assert_true(stat_connections > 50);
  assert_true(good.checks > 5);
  assert_true(max_buffers > 1); /* attackers' allocs were served next to the good one */
  assert_true(max_clients > 2); /* attackers got past Hello */

  /* a clean shutdown: SIGTERM, exit status 0 (an ASan daemon fails it on a leak), the
   * socket removed */
  assert_int_equal(testd_stop(&g_d), 0);
  fuzz_free_corpus();
  for (int i = 0; i < ATTACKERS; i++)
    free(att[i].script.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(daemon_survives_hostile_clients_and_serves_a_good_one,
                                      start_daemon, stop_daemon),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
