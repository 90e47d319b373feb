/*
 * test_attacks.c — a hostile local user against a real pinpoold, and what contains it.
 *
 * Each test starts a daemon of its own (tests/common/testd.h), forks a child that becomes
 * uid/gid 65534 with no supplementary groups (setgroups, setgid, setuid) and attacks over
 * the wire protocol (wire.h), while this process — root, another uid — is the good client
 * that must still be served, and the operator that reads the daemon's books.  The two
 * sides take turns through a pair of pipes (step/await), so nothing depends on timing.
 * The child reports a broken expectation by its exit status (the line that failed goes to
 * stderr); the parent asserts it exited 0.
 *
 * The attacks, each of which the daemon fell to before the ledger changes:
 *   - alignment amplification: tiny objects aligned to 4096 were charged their 8 bytes;
 *   - quota pinning: a lookup kept a block charged to its publisher after it freed it;
 *   - squatting: the first uid to publish a name or open a cache name owned it for all;
 *   - the handle oracle: PERMISSION_DENIED for someone's live handle, NOT_FOUND for a
 *     dead one;
 *   - cache floods: caches were never destroyed, 100,000 opens grew the daemon by 186 MB.
 * Without root nothing can become uid 65534: every test then skips, saying so.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "testd.h"
#include "wire.h"

#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)
#define NOBODY 65534u

/* ---- the two sides ------------------------------------------------------------------ */

typedef struct duel {
  int to_child[2], to_parent[2];
  pid_t pid;
} duel_t;

static void step(int fd) {
  char b = 's';
  if (write(fd, &b, 1) != 1) _exit(90);
}

static void await(int fd) {
  char b;
  ssize_t n;
  while ((n = read(fd, &b, 1)) < 0 && errno == EINTR)
    ;
  if (n != 1) _exit(91); /* the other side is gone */
}

/* In the child: the line that failed, then an exit status the parent reports. */
#define EXPECT(cond)                                                                           \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "uid %u: %s:%d: expected %s\n", (unsigned)getuid(), __FILE__, __LINE__,  \
              #cond);                                                                          \
      _exit(1);                                                                                \
    }                                                                                          \
  } while (0)

static void need_root(void) {
  if (geteuid() != 0) {
    print_message("skipped: becoming uid 65534 needs root\n");
    skip();
  }
}

/* Fork the attacker: it drops to uid/gid 65534 and runs fn, which talks to the parent
 * through d's pipes (child side: read d->to_child[0], write d->to_parent[1]). */
static void spawn_nobody(duel_t *d, void (*fn)(duel_t *d, void *arg), void *arg) {
  assert_int_equal(pipe(d->to_child), 0);
  assert_int_equal(pipe(d->to_parent), 0);
  d->pid = fork();
  assert_true(d->pid >= 0);
  if (d->pid == 0) {
    close(d->to_child[1]);
    close(d->to_parent[0]);
    if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY)) _exit(92);
    fn(d, arg);
    _exit(0);
  }
  close(d->to_child[0]);
  close(d->to_parent[1]);
}

static void child_step(duel_t *d) {
  step(d->to_parent[1]);
}
static void child_await(duel_t *d) {
  await(d->to_child[0]);
}
static void parent_step(duel_t *d) {
  step(d->to_child[1]);
}
static void parent_await(duel_t *d) {
  await(d->to_parent[0]);
}

static void reap(duel_t *d) {
  int status;
  close(d->to_child[1]);
  close(d->to_parent[0]);
  assert_int_equal(waitpid(d->pid, &status, 0), d->pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the uid 65534 side failed (status 0x%x; its reason is above)", status);
}

/* ---- the protocol bits wire.h lacks ---------------------------------------------------- */

static int cache_close(wire_t *c, uint32_t id) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheClose m = PINPOOL__V1__CACHE_CLOSE__INIT;
  resp_t *r;
  int rc;
  m.cache_id = id;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_CLOSE;
  req.cache_close = &m;
  r = wire_call(c, &req);
  rc = wire_rc(r);
  frame_free_response(r);
  return rc;
}

/* A request's status and message, for comparing two refusals word for word. */
typedef struct answer {
  int rc;
  char msg[256];
} answer_t;

static answer_t free_answer(wire_t *c, uint64_t handle) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free m = PINPOOL__V1__FREE__INIT;
  answer_t a;
  resp_t *r;
  m.handle = handle;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &m;
  r = wire_call(c, &req);
  a.rc = wire_rc(r);
  snprintf(a.msg, sizeof a.msg, "%s", r->message ? r->message : "");
  frame_free_response(r);
  return a;
}

static answer_t cache_free_answer(wire_t *c, uint32_t id, uint64_t off) {
  answer_t a;
  a.rc = wire_cache_free(c, id, &off, 1, a.msg, sizeof a.msg);
  return a;
}

static answer_t cache_alloc_answer(wire_t *c, uint32_t id) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheAlloc m = PINPOOL__V1__CACHE_ALLOC__INIT;
  answer_t a;
  resp_t *r;
  m.cache_id = id;
  m.count = 1;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
  req.cache_alloc = &m;
  r = wire_call(c, &req);
  a.rc = wire_rc(r);
  snprintf(a.msg, sizeof a.msg, "%s", r->message ? r->message : "");
  frame_free_response(r);
  return a;
}

/* What the daemon charges the uid of session sid (Stats, as the operator sees it). */
static uint64_t charged_to(wire_t *op, uint64_t sid) {
  resp_t *r;
  uint64_t v = UINT64_MAX;
  assert_int_equal(wire_stats(op, false, false, &r), 0);
  for (size_t i = 0; i < r->stats->n_clients; i++)
    if (r->stats->clients[i]->session_id == sid) v = r->stats->clients[i]->bytes_charged;
  frame_free_response(r);
  if (v == UINT64_MAX) fail_msg("no session %" PRIu64 " in Stats", sid);
  return v;
}

static size_t caches_in_stats(wire_t *op, const char *prefix) {
  resp_t *r;
  size_t n = 0;
  assert_int_equal(wire_stats(op, false, false, &r), 0);
  for (size_t i = 0; i < r->stats->n_caches; i++)
    n += !strncmp(r->stats->caches[i]->name, prefix, strlen(prefix));
  frame_free_response(r);
  return n;
}

/* The good client is served: a buffer, a cache, objects. */
static void good_client_is_served(testd_t *t, uint64_t bytes) {
  wire_t c;
  uint64_t offs[16];
  uint32_t id;
  size_t n;
  assert_int_equal(wire_open(&c, t->sock, "good"), 0);
  assert_int_equal(wire_alloc(&c, bytes, 0, NULL, NULL), 0);
  assert_int_equal(wire_cache_open(&c, "good-objs", 256, 0, &id), 0);
  assert_int_equal(wire_cache_alloc(&c, id, 16, offs, &n), 0);
  wire_close(&c);
}

/* ---- alignment amplification ------------------------------------------------------------ */

#define AMP_QUOTA MIB
#define AMP_CACHES 16

static void amplify(duel_t *d, void *arg) {
  testd_t *t = arg;
  uint32_t id[AMP_CACHES];
  uint64_t off, n = 0;
  size_t got;
  wire_t c;

  EXPECT(wire_open(&c, t->sock, "amplifier") == 0);
  /* Tiny objects, huge alignment, in as many caches as it takes: one at a time until
   * the quota says no in each. */
  for (int k = 0; k < AMP_CACHES; k++) {
    char name[16];
    snprintf(name, sizeof name, "tiny%d", k);
    EXPECT(wire_cache_open(&c, name, 8, 4096, &id[k]) == 0);
  }
  for (int k = 0; k < AMP_CACHES; k++) {
    int rc;
    while ((rc = wire_cache_alloc(&c, id[k], 1, &off, &got)) == 0)
      n++;
    EXPECT(rc == PP_EQUOTA);
  }
  fprintf(stderr, "uid 65534 got %" PRIu64 " objects of 8 bytes aligned to 4096\n", n);
  EXPECT(n > 0 && n * 4096 <= AMP_QUOTA);
  child_step(d);
  child_await(d); /* held until the parent has looked */
  wire_close(&c);
}

static void tiny_aligned_objects_cost_at_most_twice_the_quota(void **state) {
  testd_t t;
  duel_t d;
  uint64_t before, spent;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&t, "--quota", "1M", NULL), 0);
  before = testd_free_bytes(&t);
  spawn_nobody(&d, amplify, &t);
  parent_await(&d);
  /* Slabs, magazines and all: what the attacker's objects took from the region. */
  spent = before - testd_free_bytes(&t);
  print_message("uid 65534 made the daemon spend %" PRIu64 " KiB on a quota of %" PRIu64
                " KiB\n",
                spent / KIB, (uint64_t)AMP_QUOTA / KIB);
  assert_true(spent <= 2 * AMP_QUOTA);
  good_client_is_served(&t, 512 * KIB); /* root has a quota of its own */
  parent_step(&d);
  reap(&d);
  assert_int_equal(testd_stop(&t), 0);
}

/* ---- quota pinning by lookups ----------------------------------------------------------- */

typedef struct pin_ctx {
  testd_t *t;
  uint64_t sid; /* the looker's session, for the parent's Stats */
} pin_ctx_t;

static void pin(duel_t *d, void *arg) {
  pin_ctx_t *p = arg;
  wire_t c;
  resp_t *r;
  char sid[32];

  EXPECT(wire_open(&c, p->t->sock, "pinner") == 0);
  /* The publisher's buffer, by its qualified name; held and never freed. */
  EXPECT(wire_lookup(&c, "~0/frames", &r) == 0);
  EXPECT(!strcmp(r->buffer->name, "~0/frames"));
  frame_free_response(r);
  snprintf(sid, sizeof sid, "%" PRIu64, c.session_id);
  if (write(d->to_parent[1], sid, sizeof sid) != (ssize_t)sizeof sid) _exit(93);
  child_await(d); /* the publisher has freed: this uid pays for what it holds */
  EXPECT(wire_alloc(&c, 4096, 0, NULL, NULL) == PP_EQUOTA);
  child_step(d);
  child_await(d);
  wire_close(&c);
}

static void a_lookup_cannot_pin_the_publishers_quota(void **state) {
  testd_t t;
  duel_t d;
  pin_ctx_t p = {.t = &t};
  wire_t a;
  resp_t *r;
  char sid[32];
  uint64_t h;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&t, "--quota", "1M", NULL), 0);
  assert_int_equal(wire_open(&a, t.sock, "publisher"), 0);
  assert_int_equal(wire_alloc(&a, MIB, 0, "frames", &r), 0);
  h = r->buffer->handle;
  frame_free_response(r);
  assert_int_equal(wire_alloc(&a, 4096, 0, NULL, NULL), PP_EQUOTA); /* its quota is full */
  spawn_nobody(&d, pin, &p);
  assert_int_equal(read(d.to_parent[0], sid, sizeof sid), (ssize_t)sizeof sid);
  p.sid = strtoull(sid, NULL, 10);
  assert_int_equal(charged_to(&a, a.session_id), MIB);
  assert_int_equal(charged_to(&a, p.sid), 0);

  /* The publisher lets go: the charge moves to the one who holds the block. */
  assert_int_equal(wire_free(&a, h), 0);
  assert_int_equal(charged_to(&a, a.session_id), 0);
  assert_int_equal(charged_to(&a, p.sid), MIB);
  assert_int_equal(wire_alloc(&a, MIB, 0, "frames-2", NULL), 0); /* its whole quota again */
  parent_step(&d);
  parent_await(&d); /* ... and the looker is over its own quota */
  parent_step(&d);
  reap(&d);
  wire_close(&a);
  assert_int_equal(testd_stop(&t), 0);
}

/* ---- squatting -------------------------------------------------------------------------- */

#define SHARED_GID "4242" /* a group root belongs to (root is in every shared group) */

static void squat(duel_t *d, void *arg) {
  testd_t *t = arg;
  wire_t c;
  resp_t *r;

  EXPECT(wire_open(&c, t->sock, "squatter") == 0);
  /* First with the victim's names, and a geometry the victim does not want. */
  EXPECT(wire_alloc(&c, 4096, 0, "frames", &r) == 0);
  EXPECT(!strcmp(r->buffer->name, "frames")); /* its own scope, as it wrote it */
  frame_free_response(r);
  EXPECT(wire_cache_open(&c, "mbuf", 64, 8, NULL) == 0);
  /* Nothing in another user's scope, nor in a shared group it is not in. */
  EXPECT(wire_alloc(&c, 4096, 0, "~0/frames-2", NULL) == PP_EPERM);
  EXPECT(wire_cache_open(&c, "~0/mbuf-2", 64, 8, NULL) == PP_EPERM);
  EXPECT(wire_alloc(&c, 4096, 0, "~g" SHARED_GID "/ring", NULL) == PP_EPERM);
  EXPECT(wire_cache_open(&c, "~g" SHARED_GID "/msgs", 64, 8, NULL) == PP_EPERM);
  child_step(d);
  child_await(d);
  /* The victim's names are there to be looked up, qualified; the shared group's too. */
  EXPECT(wire_lookup(&c, "~0/frames", NULL) == 0);
  EXPECT(wire_lookup(&c, "~g" SHARED_GID "/ring", NULL) == 0);
  EXPECT(wire_cache_open(&c, "~0/mbuf", 64, 8, NULL) == PP_EGEOMETRY);
  EXPECT(wire_cache_open(&c, "~0/mbuf", 2048, 64, NULL) == 0);
  child_step(d);
  child_await(d);
  wire_close(&c);
}

static void names_cannot_be_squatted(void **state) {
  testd_t t;
  duel_t d;
  wire_t v;
  resp_t *r, *rs;
  uint32_t id, sid_cache;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&t, "--shared-group", SHARED_GID, NULL), 0);
  spawn_nobody(&d, squat, &t);
  parent_await(&d);
  /* The victim publishes and opens as if nobody had come first. */
  assert_int_equal(wire_open(&v, t.sock, "victim"), 0);
  assert_int_equal(wire_alloc(&v, 8192, 0, "frames", &r), 0);
  assert_string_equal(r->buffer->name, "frames");
  assert_int_equal(wire_cache_open(&v, "mbuf", 2048, 64, &id), 0);
  /* Its own "frames" is its own; the squatter's only by its qualified name. */
  assert_int_equal(wire_lookup(&v, "frames", &rs), 0);
  assert_int_equal(rs->buffer->handle, r->buffer->handle);
  frame_free_response(rs);
  assert_int_equal(wire_lookup(&v, "~65534/frames", &rs), 0);
  assert_true(rs->buffer->handle != r->buffer->handle);
  assert_string_equal(rs->buffer->name, "~65534/frames");
  frame_free_response(rs);
  assert_int_equal(wire_cache_open(&v, "~65534/mbuf", 64, 8, &sid_cache), 0);
  assert_true(sid_cache != id);
  frame_free_response(r);
  /* Root belongs to the shared group: it creates there, anyone looks up. */
  assert_int_equal(wire_alloc(&v, 4096, 0, "~g" SHARED_GID "/ring", NULL), 0);
  assert_int_equal(wire_cache_open(&v, "~g" SHARED_GID "/msgs", 64, 8, NULL), 0);
  parent_step(&d);
  parent_await(&d);
  /* Stats names every one of them with its scope. */
  assert_int_equal(caches_in_stats(&v, "~65534/"), 1);
  assert_int_equal(caches_in_stats(&v, "~0/"), 1);
  assert_int_equal(caches_in_stats(&v, "~g" SHARED_GID "/"), 1);
  parent_step(&d);
  reap(&d);
  wire_close(&v);
  assert_int_equal(testd_stop(&t), 0);
}

/* ---- the handle oracle ------------------------------------------------------------------ */

typedef struct oracle_ctx {
  testd_t *t;
  uint64_t handle, off;
  uint32_t private_cache;
} oracle_ctx_t;

static void probe(duel_t *d, void *arg) {
  oracle_ctx_t *o = arg;
  answer_t live_buf, dead_buf, live_obj, dead_obj, live_cache, dead_cache;
  uint32_t id;
  wire_t c;

  EXPECT(wire_open(&c, o->t->sock, "prober") == 0);
  EXPECT(wire_cache_open(&c, "~0/shared-objs", 64, 8, &id) == 0);
  child_await(d); /* the victim's buffer, object and private cache are live */
  live_buf = free_answer(&c, o->handle);
  live_obj = cache_free_answer(&c, id, o->off);
  live_cache = cache_alloc_answer(&c, o->private_cache);
  child_step(d);
  child_await(d); /* now they are all gone */
  dead_buf = free_answer(&c, o->handle);
  dead_obj = cache_free_answer(&c, id, o->off);
  dead_cache = cache_alloc_answer(&c, o->private_cache);
  fprintf(stderr, "uid 65534 hears: '%s' / '%s' / '%s'\n", live_buf.msg, live_obj.msg,
          live_cache.msg);
  EXPECT(live_buf.rc == PP_ENOENT && dead_buf.rc == PP_ENOENT);
  EXPECT(!strcmp(live_buf.msg, dead_buf.msg));
  EXPECT(live_obj.rc == PP_ENOENT && dead_obj.rc == PP_ENOENT);
  EXPECT(!strcmp(live_obj.msg, dead_obj.msg));
  EXPECT(live_cache.rc == PP_ENOENT && dead_cache.rc == PP_ENOENT);
  EXPECT(!strcmp(live_cache.msg, dead_cache.msg));
  child_step(d);
  wire_close(&c);
}

static void someone_elses_handles_look_exactly_like_dead_ones(void **state) {
  testd_t t;
  duel_t d;
  oracle_ctx_t o = {.t = &t};
  uint32_t shared, priv;
  wire_t v;
  resp_t *r;
  size_t n;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&t, NULL), 0);
  assert_int_equal(wire_open(&v, t.sock, "victim"), 0);
  assert_int_equal(wire_alloc(&v, 4096, 0, NULL, &r), 0);
  o.handle = r->buffer->handle;
  frame_free_response(r);
  assert_int_equal(wire_cache_open(&v, "shared-objs", 64, 8, &shared), 0);
  assert_int_equal(wire_cache_alloc(&v, shared, 1, &o.off, &n), 0);
  assert_int_equal(wire_cache_open(&v, "private", 128, 8, &priv), 0);
  o.private_cache = priv;
  spawn_nobody(&d, probe, &o);
  parent_step(&d);
  parent_await(&d);
  /* The victim still has everything, untouched by the probing. */
  assert_int_equal(wire_free(&v, o.handle), 0);
  assert_int_equal(wire_cache_free(&v, shared, &o.off, 1, NULL, 0), 0);
  assert_int_equal(cache_close(&v, priv), 0); /* its last opener: the cache goes */
  parent_step(&d);
  parent_await(&d);
  reap(&d);
  wire_close(&v);
  assert_int_equal(testd_stop(&t), 0);
}

/* ---- cache floods ----------------------------------------------------------------------- */

static unsigned flood_count(void) {
  /* 100,000 as the attack was; the validating sanitizer build checks the whole ledger
   * after every request, so it floods with fewer. */
  return PP_DEBUG >= 3 ? 5000 : 100000;
}

static void flood(duel_t *d, void *arg) {
  testd_t *t = arg;
  unsigned n = flood_count(), ok = 0, limited = 0;
  uint32_t kept[64];
  char name[32];
  uint32_t id;
  wire_t c;

  EXPECT(wire_open(&c, t->sock, "flooder") == 0);
  /* Distinct names, never closed: the scope fills up and the rest are refused. */
  for (unsigned i = 0; i < n; i++) {
    int rc;
    snprintf(name, sizeof name, "kept-%u", i);
    rc = wire_cache_open(&c, name, 8 + 8 * (i % 16), 0, &id);
    if (rc == 0 && ok < 64) kept[ok] = id;
    ok += rc == 0;
    limited += rc == PP_ELIMIT;
    EXPECT(rc == 0 || rc == PP_ELIMIT);
  }
  fprintf(stderr, "uid 65534: %u caches opened, %u refused by the limit\n", ok, limited);
  EXPECT(ok == 64 && limited == n - 64);
  child_step(d);
  child_await(d);
  /* Close them; then open and close distinct names: each cache goes with its close. */
  for (unsigned i = 0; i < 64; i++)
    EXPECT(cache_close(&c, kept[i]) == 0);
  EXPECT(cache_close(&c, kept[0]) == PP_ENOENT); /* gone: its id only misses */
  for (unsigned i = 0; i < n; i++) {
    uint64_t off;
    size_t got;
    snprintf(name, sizeof name, "cycle-%u", i);
    EXPECT(wire_cache_open(&c, name, 8 + 8 * (i % 16), 0, &id) == 0);
    if (i % 1000 == 0) {
      EXPECT(wire_cache_alloc(&c, id, 1, &off, &got) == 0);
      EXPECT(cache_close(&c, id) == PP_EBUSY); /* it holds an object of it */
      EXPECT(wire_cache_free(&c, id, &off, 1, NULL, 0) == 0);
    }
    EXPECT(cache_close(&c, id) == 0);
  }
  child_step(d);
  child_await(d);
  wire_close(&c);
}

static void cache_floods_are_refused_and_leave_nothing_behind(void **state) {
  testd_t t;
  duel_t d;
  wire_t op;
  long rss_before, rss_after;
  uint64_t free_before, free_after = 0;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&t, NULL), 0); /* the defaults: 64 per uid, 4096 in all */
  assert_int_equal(wire_open(&op, t.sock, "operator"), 0);
  free_before = testd_free_bytes(&t);
  rss_before = testd_rss_kib(&t);
  spawn_nobody(&d, flood, &t);
  parent_await(&d);
  assert_int_equal(caches_in_stats(&op, "~65534/"), 64);
  good_client_is_served(&t, MIB); /* root's own scope is not full */
  parent_step(&d);
  parent_await(&d);
  /* Every cycled cache went with its close, and so did the first 64. */
  assert_int_equal(caches_in_stats(&op, "~65534/"), 0);
  rss_after = testd_rss_kib(&t);
  print_message("%u opens and %u open+close cycles: daemon RSS %ld -> %ld KiB\n", flood_count(),
                flood_count(), rss_before, rss_after);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  print_message("RSS bound not checked under a sanitizer (its allocator quarantines)\n");
#else
  assert_true(rss_after - rss_before < 8 * 1024);
#endif
  parent_step(&d);
  reap(&d);
  assert_int_equal(caches_in_stats(&op, "~"), 0);
  wire_close(&op);
  assert_int_equal(testd_wait_free(&t, free_before, 5000, &free_after), 0);
  assert_int_equal(testd_stop(&t), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(tiny_aligned_objects_cost_at_most_twice_the_quota),
      cmocka_unit_test(a_lookup_cannot_pin_the_publishers_quota),
      cmocka_unit_test(names_cannot_be_squatted),
      cmocka_unit_test(someone_elses_handles_look_exactly_like_dead_ones),
      cmocka_unit_test(cache_floods_are_refused_and_leave_nothing_behind),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
