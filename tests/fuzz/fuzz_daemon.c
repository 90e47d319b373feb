/*
 * fuzz_daemon — a real pinpoold under garbage, truncated, oversized and mutated frames
 * over many connections, while a well-behaved client keeps getting correct answers.
 *
 * Set-up: start $PP_BIN_DIR/pinpoold on a temporary socket (--size 16M --page-size 4K),
 * connect an admin client (root, or our gid as --admin-group) and a well-behaved client
 * that holds a published buffer filled with a known pattern.
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

#include "frame.h"
#include "fuzz_common.h"

#define ATTACKERS 6
#define GOOD_NAME "fuzz-good-buf"
#define GOOD_PATTERN(i) ((uint8_t)((i) * 7u + 3u))

static pid_t daemon_pid = -1;
static char tmpdir[64], sock_path[96];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_unix(int nonblock) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

static void daemon_must_be_alive(const char *when) {
  int st;
  pid_t r = waitpid(daemon_pid, &st, WNOHANG);
  if (r == daemon_pid) {
    daemon_pid = -1;
    fail_msg("pinpoold died %s: %s %d", when, WIFSIGNALED(st) ? "signal" : "exit status",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
  }
}

/* ---- a blocking client speaking through frame_send / frame_recv_response ------------- */

typedef struct client {
  int fd;
  uint64_t next_id;
  uint8_t *base;
  uint64_t region_size, page_size;
} client_t;

static Pinpool__V1__Response *rpc(client_t *c, Pinpool__V1__Request *req) {
  Pinpool__V1__Response *resp = NULL;
  req->id = c->next_id++;
  int rc = frame_send(c->fd, &req->base, FRAME_MAX_DEFAULT, -1);
  if (rc) fail_msg("frame_send: %s", pp_err_name(rc));
  rc = frame_recv_response(c->fd, FRAME_MAX_LIMIT, &resp, NULL);
  if (rc) fail_msg("frame_recv_response: %s (daemon gone?)", pp_err_name(rc));
  if (resp->id != req->id)
    fail_msg("response id %llu to request id %llu", (unsigned long long)resp->id,
             (unsigned long long)req->id);
  return resp;
}

static void expect_status(Pinpool__V1__Response *r, Pinpool__V1__Status want, const char *what) {
  if (r->status != want)
    fail_msg("%s: status %s (%s), expected %s", what, pp_status_name(-(int)r->status),
             r->message ? r->message : "", pp_status_name(-(int)want));
}

static void client_connect(client_t *c, const char *name) {
  memset(c, 0, sizeof *c);
  c->next_id = 1;
  c->fd = connect_unix(0);
  assert_true(c->fd >= 0);
  /* a daemon that stops answering fails the test with PP_EIO instead of hanging it */
  struct timeval tv = {.tv_sec = 30};
  assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  h.protocol_version = PROTOCOL_VERSION;
  h.client_name = (char *)name;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  req.id = c->next_id++;
  assert_int_equal(frame_send(c->fd, &req.base, 0, -1), 0);
  Pinpool__V1__Response *resp = NULL;
  int memfd = -1;
  assert_int_equal(frame_recv_response(c->fd, 0, &resp, &memfd), 0);
  expect_status(resp, PINPOOL__V1__STATUS__OK, "hello");
  assert_int_equal(resp->body_case, PINPOOL__V1__RESPONSE__BODY_WELCOME);
  assert_true(memfd >= 0);
  c->region_size = resp->welcome->region_size;
  c->page_size = resp->welcome->page_size;
  c->base = mmap(NULL, c->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  assert_true(c->base != MAP_FAILED);
  close(memfd);
  frame_free_response(resp);
}

static void client_close(client_t *c) {
  if (c->base) munmap(c->base, c->region_size);
  close(c->fd);
  c->fd = -1;
  c->base = NULL;
}

static Pinpool__V1__Response *do_alloc(client_t *c, uint64_t size, uint32_t flags,
                                       const char *name) {
  Pinpool__V1__Alloc a = PINPOOL__V1__ALLOC__INIT;
  a.size = size;
  a.flags = flags;
  a.name = (char *)(name ? name : "");
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &a;
  return rpc(c, &req);
}

static Pinpool__V1__Response *do_free(client_t *c, uint64_t handle) {
  Pinpool__V1__Free f = PINPOOL__V1__FREE__INIT;
  f.handle = handle;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &f;
  return rpc(c, &req);
}

static Pinpool__V1__Response *do_stats(client_t *c) {
  Pinpool__V1__StatsRequest s = PINPOOL__V1__STATS_REQUEST__INIT;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &s;
  Pinpool__V1__Response *r = rpc(c, &req);
  expect_status(r, PINPOOL__V1__STATUS__OK, "stats");
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_STATS);
  return r;
}

static void do_shrink(client_t *c) {
  Pinpool__V1__ShrinkRequest s = PINPOOL__V1__SHRINK_REQUEST__INIT;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK;
  req.shrink = &s;
  Pinpool__V1__Response *r = rpc(c, &req);
  expect_status(r, PINPOOL__V1__STATUS__OK, "shrink");
  frame_free_response(r);
}

/* ---- the well-behaved client's checks ------------------------------------------------ */

typedef struct good {
  client_t c;
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
  client_connect(&g->c, "fuzz-good");
  Pinpool__V1__Response *r = do_alloc(&g->c, 3 * 4096, 0x2, GOOD_NAME);
  expect_status(r, PINPOOL__V1__STATUS__OK, "alloc of the published buffer");
  g->handle = r->buffer->handle;
  g->offset = r->buffer->offset;
  g->size = r->buffer->size;
  assert_true(g->size >= 3 * 4096);
  frame_free_response(r);
  for (uint64_t i = 0; i < g->size; i++) g->c.base[g->offset + i] = GOOD_PATTERN(i);

  Pinpool__V1__CacheOpen co = PINPOOL__V1__CACHE_OPEN__INIT;
  co.name = "fuzz-good-objs";
  co.object_size = 96;
  co.align = 32;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &co;
  r = rpc(&g->c, &req);
  expect_status(r, PINPOOL__V1__STATUS__OK, "cache_open");
  g->cache_id = r->cache->cache_id;
  g->object_size = r->cache->object_size;
  g->align = r->cache->align;
  assert_true(g->object_size >= 96);
  frame_free_response(r);
}

static void good_round(good_t *g) {
  Pinpool__V1__Response *r;
  g->checks++;
  good_check_pattern(g);

  /* a fresh zeroed buffer: OK (then zero, in range, disjoint) or a legal refusal */
  r = do_alloc(&g->c, 4096, 0x3, NULL);
  if (r->status == PINPOOL__V1__STATUS__OK) {
    const Pinpool__V1__Buffer *b = r->buffer;
    uint64_t h = b->handle, off = b->offset, sz = b->size;
    assert_true(sz >= 4096);
    assert_true(off + sz <= g->c.region_size);
    assert_true(b->contiguous); /* a page-sized block always is */
    if (overlaps(off, sz, g->offset, g->size)) fail_msg("new buffer overlaps a held one");
    for (uint64_t i = 0; i < sz; i++)
      if (g->c.base[off + i]) fail_msg("ZERO buffer has byte %llu set", (unsigned long long)i);
    memset(g->c.base + off, 0xa5, sz);
    frame_free_response(r);
    r = do_free(&g->c, h);
    expect_status(r, PINPOOL__V1__STATUS__OK, "free of a fresh buffer");
    frame_free_response(r);
    r = do_free(&g->c, h);
    expect_status(r, PINPOOL__V1__STATUS__NOT_FOUND, "double free");
  } else if (r->status != PINPOOL__V1__STATUS__NO_MEMORY) {
    expect_status(r, PINPOOL__V1__STATUS__OK, "alloc of 4096 bytes");
  }
  frame_free_response(r);

  /* a second reference to our own published buffer, then drop it */
  Pinpool__V1__Lookup lk = PINPOOL__V1__LOOKUP__INIT;
  lk.name = GOOD_NAME;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP;
  req.lookup = &lk;
  r = rpc(&g->c, &req);
  expect_status(r, PINPOOL__V1__STATUS__OK, "lookup of our published buffer");
  assert_int_equal(r->buffer->handle, g->handle);
  assert_int_equal(r->buffer->offset, g->offset);
  frame_free_response(r);
  r = do_free(&g->c, g->handle);
  expect_status(r, PINPOOL__V1__STATUS__OK, "free of the lookup's reference");
  frame_free_response(r);

  /* objects: distinct, aligned, disjoint from the buffer; then all back */
  Pinpool__V1__CacheAlloc ca = PINPOOL__V1__CACHE_ALLOC__INIT;
  ca.cache_id = g->cache_id;
  ca.count = 16;
  req = (Pinpool__V1__Request)PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
  req.cache_alloc = &ca;
  r = rpc(&g->c, &req);
  if (r->status == PINPOOL__V1__STATUS__OK) {
    assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_OBJECTS);
    assert_int_equal(r->objects->n_offsets, 16);
    uint64_t *o = r->objects->offsets;
    for (size_t i = 0; i < 16; i++) {
      if (o[i] % g->align) fail_msg("object %llx misaligned", (unsigned long long)o[i]);
      if (overlaps(o[i], g->object_size, g->offset, g->size)) fail_msg("object overlaps buffer");
      for (size_t j = 0; j < i; j++)
        if (overlaps(o[i], g->object_size, o[j], g->object_size)) fail_msg("objects overlap");
    }
    Pinpool__V1__CacheFree cf = PINPOOL__V1__CACHE_FREE__INIT;
    cf.cache_id = g->cache_id;
    cf.n_offsets = 16;
    cf.offsets = o;
    Pinpool__V1__Request fr = PINPOOL__V1__REQUEST__INIT;
    fr.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE;
    fr.cache_free = &cf;
    Pinpool__V1__Response *r2 = rpc(&g->c, &fr);
    expect_status(r2, PINPOOL__V1__STATUS__OK, "cache_free of our objects");
    frame_free_response(r2);
  } else if (r->status != PINPOOL__V1__STATUS__NO_MEMORY) {
    expect_status(r, PINPOOL__V1__STATUS__OK, "cache_alloc of 16");
  }
  frame_free_response(r);

  r = do_free(&g->c, 0);
  expect_status(r, PINPOOL__V1__STATUS__NOT_FOUND, "free of handle 0");
  frame_free_response(r);
  good_check_pattern(g);
}

/* ---- attackers ------------------------------------------------------------------------ */

typedef struct attacker {
  int fd;                 /* -1: slot free */
  fuzz_stream_t script;   /* bytes to send */
  size_t sent;
  size_t close_at;        /* close once this much is sent (<= script.n) */
  int reads;              /* drain replies */
  int linger;             /* rounds to stay open after the script */
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
  static const uint64_t v[] = {0, 1, 63, 64, 4095, 4096, 4097, 65536, 1u << 20, 16u << 20,
                               (16u << 20) + 1, UINT32_MAX, UINT64_MAX};
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
  static const char *names[] = {"", GOOD_NAME, "a", "fz-shared", "fuzz-good-objs", "x\x01y"};
  char cname[16];
  uint64_t offs[8];

  req.id = fuzz_rnd();
  switch (fuzz_below(9)) {
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
    for (size_t i = 0; i < cf.n_offsets; i++) offs[i] = fuzz_below(2) ? fuzz_below(16 << 20) : pick_u64();
    cf.offsets = offs;
    req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE, req.cache_free = &cf;
    break;
  case 7:
    st.include_buffers = (int)fuzz_below(2);
    st.include_map = (int)fuzz_below(2);
    req.body_case = PINPOOL__V1__REQUEST__BODY_STATS, req.stats = &st;
    break;
  default:
    req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK, req.shrink = &sh;
    break;
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
  case 0: /* garbage before anything */
    put_random_bytes(s, 1 + fuzz_below(200));
    break;
  case 1: /* hello, then garbage */
    put_hello(s, PROTOCOL_VERSION);
    put_random_bytes(s, 1 + fuzz_below(200));
    break;
  case 2: /* hello, then valid requests with random arguments */
  case 3:
    put_hello(s, PROTOCOL_VERSION);
    for (size_t i = 1 + fuzz_below(20); i > 0; i--) put_random_request(s);
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
    fuzz_put_le32(s, (uint32_t[]){FRAME_MAX_DEFAULT + 1, 1u << 24, 1u << 31,
                                  UINT32_MAX}[fuzz_below(4)]);
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
    for (int i = 0; i < 60; i++) put_random_request(s);
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
    a->fd = connect_unix(1);
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
  const char *bindir = getenv("PP_BIN_DIR");
  char bin[512], admin[32];
  struct stat st;

  snprintf(bin, sizeof bin, "%s/pinpoold", bindir ? bindir : ".");
  if (stat(bin, &st) != 0) {
    printf("skipped: no pinpoold at %s\n", bin);
    return 0;
  }
  snprintf(tmpdir, sizeof tmpdir, "/tmp/pp-fuzz-daemon-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  snprintf(sock_path, sizeof sock_path, "%s/pinpool.sock", tmpdir);
  snprintf(admin, sizeof admin, "%u", (unsigned)getgid());

  daemon_pid = fork();
  if (daemon_pid < 0) return -1;
  if (daemon_pid == 0) {
    char *argv[] = {bin, "--socket", sock_path, "--size", "16M", "--page-size", "4K",
                    "--max-clients", "64", "--admin-group", admin, "--log-level", "warning",
                    NULL};
    execv(bin, argv);
    _exit(127);
  }
  for (double t0 = now_s(); now_s() - t0 < 20;) { /* ASan + validators start slowly */
    int fd = connect_unix(0);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    int stt;
    if (waitpid(daemon_pid, &stt, WNOHANG) == daemon_pid) {
      daemon_pid = -1;
      printf("pinpoold exited during start-up\n");
      return -1;
    }
    usleep(20000);
  }
  printf("pinpoold did not listen on %s within 20 s\n", sock_path);
  return -1;
}

static int stop_daemon(void **state) {
  if (daemon_pid > 0) {
    kill(daemon_pid, SIGKILL);
    waitpid(daemon_pid, NULL, 0);
    daemon_pid = -1;
  }
  if (sock_path[0]) unlink(sock_path);
  if (tmpdir[0]) rmdir(tmpdir);
  return 0;
}

static void daemon_survives_hostile_clients_and_serves_a_good_one(void **state) {
  if (daemon_pid < 0) skip();
  const char *seed = getenv("PP_FUZZ_SEED"), *secs = getenv("PP_FUZZ_SECONDS");
  fuzz_rng_state = seed ? strtoull(seed, NULL, 0) : 0x5eed0f00dULL;
  if (!fuzz_rng_state) fuzz_rng_state = 1;
  double budget = secs ? atof(secs) : 6.0;
  signal(SIGPIPE, SIG_IGN);
  fuzz_build_corpus();

  client_t admin;
  client_connect(&admin, "fuzz-admin");
  do_shrink(&admin);
  Pinpool__V1__Response *s0 = do_stats(&admin);
  uint64_t free_before = s0->stats->free_bytes;
  assert_int_equal(s0->stats->nr_buffers, 0);
  frame_free_response(s0);

  good_t good = {0};
  good_setup(&good);

  attacker_t att[ATTACKERS];
  for (int i = 0; i < ATTACKERS; i++) att[i] = (attacker_t){.fd = -1};
  double t0 = now_s();
  long rounds = 0;
  uint64_t max_buffers = 0, max_clients = 0;
  for (; rounds < 200000 && now_s() - t0 < budget; rounds++) {
    attacker_step(&att[fuzz_below(ATTACKERS)]);
    if (rounds % 64 == 0) {
      daemon_must_be_alive("under attack");
      good_round(&good);
    }
    if (rounds % 1024 == 512) { /* the attackers must reach the handlers, not only the framing */
      Pinpool__V1__Response *s = do_stats(&admin);
      if (s->stats->nr_buffers > max_buffers) max_buffers = s->stats->nr_buffers;
      if (s->stats->nr_clients > max_clients) max_clients = s->stats->nr_clients;
      frame_free_response(s);
    }
  }
  for (int i = 0; i < ATTACKERS; i++) attacker_close(&att[i]);
  daemon_must_be_alive("after the attack");
  good_round(&good);

  Pinpool__V1__Response *r = do_free(&good.c, good.handle);
  expect_status(r, PINPOOL__V1__STATUS__OK, "free of the published buffer");
  frame_free_response(r);
  client_close(&good.c);

  /* the daemon sees every hang-up in its own time: wait until only the admin is left */
  Pinpool__V1__Response *s1 = NULL;
  for (double t1 = now_s();; usleep(20000)) {
    do_shrink(&admin);
    s1 = do_stats(&admin);
    if (s1->stats->nr_clients == 1 && s1->stats->free_bytes == free_before) break;
    if (now_s() - t1 > 10) break;
    frame_free_response(s1);
  }
  printf("fuzz_daemon: %ld rounds in %.1f s, %llu connections, %llu bytes sent, %llu good "
         "checks; scripts:", rounds, now_s() - t0, (unsigned long long)stat_connections,
         (unsigned long long)stat_bytes, (unsigned long long)good.checks);
  for (int i = 0; i < 11; i++) printf(" %llu", (unsigned long long)stat_scripts[i]);
  printf("; at most %llu clients and %llu buffers at once\n", (unsigned long long)max_clients,
         (unsigned long long)max_buffers);
  assert_int_equal(s1->stats->nr_clients, 1);
  assert_int_equal(s1->stats->nr_buffers, 0);
  assert_int_equal(s1->stats->used_bytes, 0);
  assert_int_equal(s1->stats->free_bytes, free_before);
  frame_free_response(s1);
  client_close(&admin);
  assert_true(stat_connections > 50);
  assert_true(good.checks > 5);
  assert_true(max_buffers > 1);  /* attackers' allocs were served next to the good one */
  assert_true(max_clients > 2);  /* attackers got past Hello */

  /* a clean shutdown: SIGTERM, exit status 0 (an ASan daemon fails it on a leak) */
  kill(daemon_pid, SIGTERM);
  int st = 0;
  pid_t w = 0;
  for (double t2 = now_s(); now_s() - t2 < 15; usleep(20000))
    if ((w = waitpid(daemon_pid, &st, WNOHANG)) == daemon_pid) break;
  if (w != daemon_pid) fail_msg("pinpoold did not exit within 15 s of SIGTERM");
  daemon_pid = -1;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail_msg("pinpoold ended with %s %d", WIFSIGNALED(st) ? "signal" : "status",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
  fuzz_free_corpus();
  for (int i = 0; i < ATTACKERS; i++) free(att[i].script.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(daemon_survives_hostile_clients_and_serves_a_good_one,
                                      start_daemon, stop_daemon),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
