/*
 * test_ledger.c — the daemon's ledger driven directly: no sockets, no protobuf.
 *
 * Each test creates a ledger over a small region of 4 KiB pages, makes fake sessions
 * (holders with a session id, pid and uid), and calls ledger_check() after every step.
 * The behaviour tests name one rule each; the last test is model-based and randomized:
 * a reference model of who holds what (buffers with per-holder reference counts, names,
 * objects per holder and cache, bytes charged per uid, the handle counter) predicts the
 * exact outcome of every call — the error code, and for refusals the part of the reason
 * that names what was wrong — and after each call the ledger's totals, each holder's
 * totals and its list of buffers must agree with the model.  What the model cannot know
 * (whether the buddy or the slabs find room) it accepts only when the ledger's own
 * allocator statistics show there was none, and the state must then be unchanged.
 *
 * Scale: PP_TEST_SCALE=N multiplies the random operations (soaks).  At PP_DEBUG=3 every
 * ledger call also runs the validator itself (PP_VALIDATE).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ledger.h"

#define PG 4096ull
#define REGION (4ull << 20)

static ledger_t *make_ledger(uint64_t quota, uint32_t max_buffers, bool zero_on_free) {
  ledger_config_t cfg = {.size = REGION,
                         .policy = REGION_PAGE_4K,
                         .quota = quota,
                         .max_buffers = max_buffers,
                         .zero_on_free = zero_on_free};
  ledger_t *l = NULL;
  int rc = ledger_create(&cfg, &l);
  if (rc) {
    printf("SKIP: cannot create a %llu-byte region of 4 KiB pages: %s\n",
           (unsigned long long)REGION, pp_strerror(rc));
    skip();
  }
  return l;
}

static void checked(ledger_t *l) {
  char why[256] = "";
  int rc = ledger_check(l, why, sizeof why);
  if (rc) fail_msg("ledger_check: %s", why);
}

static ledger_holder_t *holder(ledger_t *l, uint64_t sid, uid_t uid) {
  ledger_ident_t id = {.session_id = sid, .pid = (pid_t)(1000 + sid), .uid = uid};
  ledger_holder_t *h = NULL;
  assert_int_equal(ledger_holder_create(l, &id, &h), 0);
  checked(l);
  return h;
}

static void release(ledger_t *l, ledger_holder_t *h) {
  ledger_holder_release(l, h);
  checked(l);
}

static ledger_holder_totals_t totals_of(const ledger_holder_t *h) {
  ledger_holder_totals_t t;
  ledger_holder_totals(h, &t);
  return t;
}

static char *base_of(ledger_t *l) {
  return region_base(ledger_region(l));
}

/* ---- one rule per test -------------------------------------------------------------- */

static void alloc_rounds_up_to_a_block_charges_it_and_free_gives_it_back(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  uint64_t before = ledger_free_bytes(l);
  ledger_holder_t *h = holder(l, 1, 1000);
  ledger_buf_info_t b;
  ledger_totals_t t;
  ledger_why_t why;

  assert_int_equal(ledger_buf_alloc(l, h, 5000, 0, NULL, &why, &b), 0);
  checked(l);
  assert_int_equal(b.size, 8192);
  assert_int_equal(b.offset % 8192, 0);
  assert_int_equal(b.handle, 1);
  assert_int_equal(b.charged_uid, 1000);
  assert_null(b.name);
  assert_int_equal(b.nholders, 1);
  assert_int_equal(ledger_free_bytes(l), before - 8192);
  ledger_get_totals(l, &t);
  assert_int_equal(t.buf_bytes, 8192);
  assert_int_equal(t.nbufs, 1);
  assert_int_equal(totals_of(h).buf_refs, 1);

  assert_int_equal(ledger_buf_free(l, h, b.handle, &why), 0);
  checked(l);
  assert_int_equal(ledger_free_bytes(l), before);
  ledger_get_totals(l, &t);
  assert_int_equal(t.nbufs, 0);
  /* A new buffer never gets the old handle. */
  assert_int_equal(ledger_buf_alloc(l, h, 1, 0, NULL, &why, &b), 0);
  assert_int_equal(b.handle, 2);
  release(l, h);
  assert_int_equal(ledger_free_bytes(l), before);
  ledger_destroy(l);
}

static void refusals_say_why_and_change_nothing(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *h = holder(l, 1, 1000);
  ledger_buf_info_t b;
  ledger_why_t why;
  char longname[LEDGER_NAME_MAX + 2];
  uint64_t muts = 0;

  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  for (int op = 0; op < LEDGER_OP__COUNT; op++)
    muts += ledger_mutations(l, op);
  assert_int_equal(ledger_buf_alloc(l, h, 4096, 0x4, NULL, &why, &b), PP_EINVAL);
  assert_string_equal(why.msg, "unknown alloc flags 0x4");
  assert_int_equal(ledger_buf_alloc(l, h, 0, 0, NULL, &why, &b), PP_EINVAL);
  assert_string_equal(why.msg, "size 0");
  assert_int_equal(ledger_buf_alloc(l, h, 4096, 0, longname, &why, &b), PP_EINVAL);
  assert_string_equal(why.msg, "name longer than 255 bytes");
  assert_int_equal(ledger_buf_alloc(l, h, 4096, 0, "bad\xff", &why, &b), PP_EINVAL);
  assert_string_equal(why.msg, "name is not valid UTF-8");
  assert_int_equal(ledger_buf_alloc(l, h, REGION + 1, 0, NULL, &why, &b), PP_ERANGE);
  assert_non_null(strstr(why.msg, "exceeds the region"));
  assert_int_equal(ledger_buf_lookup(l, h, "", &why, &b), PP_EINVAL);
  assert_string_equal(why.msg, "lookup needs a name");
  assert_int_equal(ledger_buf_lookup(l, h, "nobody", &why, &b), PP_ENOENT);
  assert_string_equal(why.msg, "no buffer named 'nobody'");
  assert_int_equal(ledger_buf_free(l, h, 0, &why), PP_ENOENT);
  assert_string_equal(why.msg, "no buffer with handle 0");
  assert_int_equal(ledger_cache_alloc(l, h, 77, 1, NULL, &why), PP_ENOENT);
  assert_string_equal(why.msg, "no cache with id 77");
  checked(l);
  for (int op = 0; op < LEDGER_OP__COUNT; op++)
    muts -= ledger_mutations(l, op);
  assert_int_equal(muts, 0); /* not one primitive ran */
  release(l, h);
  ledger_destroy(l);
}

static void a_holder_cannot_free_what_it_does_not_hold(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_buf_info_t x;
  ledger_why_t why;

  assert_int_equal(ledger_buf_alloc(l, a, 4096, 0, NULL, &why, &x), 0);
  assert_int_equal(ledger_buf_free(l, b, x.handle, &why), PP_EPERM);
  assert_string_equal(why.msg, "buffer 1 is not held by this session");
  checked(l);
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), PP_ENOENT);
  assert_string_equal(why.msg, "buffer 1 was already freed");
  assert_int_equal(ledger_buf_free(l, a, 99, &why), PP_ENOENT);
  assert_string_equal(why.msg, "no buffer with handle 99");
  checked(l);
  release(l, a);
  release(l, b);
  ledger_destroy(l);
}

static void named_buffer_lives_until_its_last_reference_goes(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  uint64_t before = ledger_free_bytes(l);
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_buf_info_t x, y;
  ledger_why_t why;

  assert_int_equal(ledger_buf_alloc(l, a, 4096, 0, "frame", &why, &x), 0);
  assert_string_equal(x.name, "frame");
  assert_int_equal(ledger_buf_alloc(l, b, 4096, 0, "frame", &why, &y), PP_EEXIST);
  assert_string_equal(why.msg, "a buffer named 'frame' is already published");
  assert_int_equal(ledger_buf_lookup(l, b, "frame", &why, &y), 0);
  assert_int_equal(ledger_buf_lookup(l, b, "frame", &why, &y), 0);
  checked(l);
  assert_int_equal(y.handle, x.handle);
  assert_int_equal(y.nholders, 2);
  assert_int_equal(
      ledger_buf_holder(y.buf, 0)->session_id + ledger_buf_holder(y.buf, 1)->session_id, 3);
  assert_int_equal(totals_of(b).buf_refs, 2);
  assert_int_equal(totals_of(b).buffers, 1);
  /* Charged to the uid that allocated it, whoever holds it now. */
  assert_int_equal(y.charged_uid, 1000);

  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  assert_int_equal(ledger_buf_free(l, b, x.handle, &why), 0);
  checked(l);
  assert_int_equal(ledger_buf_lookup(l, a, "frame", &why, &y), 0); /* one reference left */
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  assert_int_equal(ledger_buf_free(l, b, x.handle, &why), 0);
  checked(l);
  assert_int_equal(ledger_buf_lookup(l, a, "frame", &why, &y), PP_ENOENT);
  assert_int_equal(ledger_free_bytes(l), before);
  release(l, a);
  release(l, b);
  ledger_destroy(l);
}

static void quota_counts_buffers_and_objects_per_uid(void **state) {
  ledger_t *l = make_ledger(64 * 1024, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000), *a2 = holder(l, 2, 1000), *b = holder(l, 3, 1001);
  ledger_cache_info_t ci;
  ledger_buf_info_t x;
  ledger_why_t why;
  uint64_t offs[16];

  assert_int_equal(ledger_buf_alloc(l, a, 32768, 0, NULL, &why, &x), 0);
  assert_int_equal(ledger_buf_alloc(l, a2, 16384, 0, NULL, &why, &x), 0);
  assert_int_equal(ledger_cache_open(l, "q", 1024, 8, &why, &ci), 0);
  assert_int_equal(ledger_cache_alloc(l, a2, ci.id, 16, offs, &why), 0); /* exactly full */
  assert_int_equal(ledger_cache_alloc(l, a, ci.id, 1, offs, &why), PP_EQUOTA);
  assert_string_equal(why.msg,
                      "uid 1000 has 65536 bytes pinned; 1024 more exceeds quota 65536");
  assert_int_equal(ledger_buf_alloc(l, a, 1, 0, NULL, &why, &x), PP_EQUOTA);
  assert_string_equal(why.msg,
                      "uid 1000 has 65536 bytes pinned; 4096 more exceeds quota 65536");
  assert_int_equal(ledger_buf_alloc(l, b, 65536, 0, NULL, &why, &x), 0); /* another uid */
  checked(l);
  release(l, a2); /* its buffer and objects uncharge uid 1000 */
  assert_int_equal(ledger_buf_alloc(l, a, 32768, 0, NULL, &why, &x), 0);
  checked(l);
  release(l, a);
  release(l, b);
  ledger_destroy(l);
}

static void buffer_limit_counts_references(void **state) {
  ledger_t *l = make_ledger(0, 3, false);
  ledger_holder_t *a = holder(l, 1, 1000);
  ledger_buf_info_t x;
  ledger_why_t why;

  assert_int_equal(ledger_buf_alloc(l, a, 1, 0, "n", &why, &x), 0);
  assert_int_equal(ledger_buf_lookup(l, a, "n", &why, &x), 0);
  assert_int_equal(ledger_buf_alloc(l, a, 1, 0, NULL, &why, &x), 0);
  assert_int_equal(ledger_buf_lookup(l, a, "n", &why, &x), PP_ELIMIT);
  assert_string_equal(why.msg, "this session already holds 3 buffers (limit 3)");
  assert_int_equal(ledger_buf_alloc(l, a, 1, 0, NULL, &why, &x), PP_ELIMIT);
  checked(l);
  release(l, a);
  ledger_destroy(l);
}

static void cache_free_is_all_or_nothing_and_names_the_first_bad_offset(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_cache_info_t c1, c2, again;
  ledger_why_t why;
  uint64_t mine[4], theirs[1], other[1], batch[3];
  ledger_holder_totals_t t;

  assert_int_equal(ledger_cache_open(l, "c1", 64, 8, &why, &c1), 0);
  assert_int_equal(ledger_cache_open(l, "c2", 128, 64, &why, &c2), 0);
  assert_int_equal(ledger_cache_open(l, "c1", 64, 8, &why, &again), 0);
  assert_int_equal(again.id, c1.id);
  assert_int_equal(ledger_cache_open(l, "c1", 96, 8, &why, &again), PP_EGEOMETRY);
  assert_int_equal(ledger_cache_open(l, "", 64, 8, &why, &again), PP_EINVAL);
  assert_int_equal(ledger_cache_open(l, "c3", 64, 24, &why, &again), PP_EINVAL);
  assert_string_equal(why.msg, "align 24 is not a power of two");
  assert_int_equal(ledger_cache_alloc(l, a, c1.id, 0, mine, &why), PP_ERANGE);
  assert_string_equal(why.msg, "count 0 outside 1..1024");
  assert_int_equal(ledger_cache_alloc(l, a, c1.id, 4, mine, &why), 0);
  assert_int_equal(ledger_cache_alloc(l, b, c1.id, 1, theirs, &why), 0);
  assert_int_equal(ledger_cache_alloc(l, a, c2.id, 1, other, &why), 0);
  assert_int_equal(other[0] % 64, 0);
  checked(l);

  batch[0] = mine[0];
  batch[1] = theirs[0];
  batch[2] = mine[1];
  assert_int_equal(ledger_cache_free(l, a, c1.id, batch, 3, &why), PP_EPERM);
  assert_non_null(strstr(why.msg, "(index 1) is held by another session"));
  batch[1] = other[0];
  assert_int_equal(ledger_cache_free(l, a, c1.id, batch, 3, &why), PP_EINVAL);
  assert_non_null(strstr(why.msg, "(index 1) belongs to cache"));
  batch[1] = mine[0];
  assert_int_equal(ledger_cache_free(l, a, c1.id, batch, 3, &why), PP_EDOUBLEFREE);
  assert_non_null(strstr(why.msg, "(index 1) appears twice"));
  batch[1] = 12345;
  assert_int_equal(ledger_cache_free(l, a, c1.id, batch, 3, &why), PP_ENOENT);
  assert_non_null(strstr(why.msg, "(index 1) is not an object held in cache 'c1'"));
  checked(l);
  t = totals_of(a);
  assert_int_equal(t.objects, 5); /* nothing was freed */
  assert_int_equal(t.obj_bytes, 4 * 64 + 128);

  assert_int_equal(ledger_cache_free(l, a, c1.id, mine, 4, &why), 0);
  checked(l);
  assert_int_equal(totals_of(a).objects, 1);
  assert_int_equal(ledger_cache_free(l, a, c1.id, mine, 1, &why), PP_ENOENT);
  release(l, a);
  release(l, b);
  ledger_destroy(l);
}

static void cache_alloc_without_room_refuses_bad_requests_for_their_own_reason(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000);
  ledger_cache_info_t c;
  ledger_why_t why;

  assert_int_equal(ledger_cache_open(l, "c", 64, 8, &why, &c), 0);
  assert_int_equal(ledger_cache_alloc(l, a, c.id + 1, 1, NULL, &why), PP_ENOENT);
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 2000, NULL, &why), PP_ERANGE);
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 1, NULL, &why), PP_ENOPRIVMEM);
  assert_string_equal(why.msg, "daemon out of private memory");
  checked(l);
  assert_int_equal(totals_of(a).objects, 0);
  release(l, a);
  ledger_destroy(l);
}

static void release_returns_everything_and_free_bytes_come_back(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  uint64_t before = ledger_free_bytes(l), offs[1024];
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_cache_info_t c;
  ledger_buf_info_t x;
  ledger_totals_t t;
  ledger_why_t why;

  assert_int_equal(ledger_buf_alloc(l, a, 100000, 0, "shared", &why, &x), 0);
  assert_int_equal(ledger_buf_lookup(l, b, "shared", &why, &x), 0);
  assert_int_equal(ledger_buf_alloc(l, a, 4096, 0, NULL, &why, &x), 0);
  assert_int_equal(ledger_cache_open(l, "c", 256, 8, &why, &c), 0);
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 1024, offs, &why), 0);
  assert_int_equal(ledger_cache_alloc(l, b, c.id, 10, offs, &why), 0);
  checked(l);
  release(l, a);
  /* b still holds the shared buffer and its objects. */
  assert_int_equal(ledger_buf_lookup(l, b, "shared", &why, &x), 0);
  ledger_get_totals(l, &t);
  assert_int_equal(t.nbufs, 1);
  assert_int_equal(t.obj_bytes, 10 * 256);
  assert_int_equal(t.nholders, 1);
  release(l, b);
  ledger_get_totals(l, &t);
  assert_int_equal(t.nbufs + t.obj_bytes + t.buf_bytes + t.nholders, 0);
  assert_int_equal(ledger_free_bytes(l), before);
  ledger_destroy(l);
}

static void zero_flag_and_zero_on_free_clear_the_memory(void **state) {
  ledger_t *l = make_ledger(0, 0, true);
  ledger_holder_t *a = holder(l, 1, 1000);
  ledger_cache_info_t c;
  ledger_buf_info_t x;
  ledger_why_t why;
  uint64_t off;
  char *base = base_of(l);

  assert_int_equal(ledger_buf_alloc(l, a, 8192, 0, NULL, &why, &x), 0);
  memset(base + x.offset, 0x5a, x.size);
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  for (uint64_t i = 0; i < x.size; i++)
    assert_int_equal(base[x.offset + i], 0);
  assert_int_equal(ledger_cache_open(l, "c", 64, 8, &why, &c), 0);
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 1, &off, &why), 0);
  memset(base + off, 0x5a, 64);
  assert_int_equal(ledger_cache_free(l, a, c.id, &off, 1, &why), 0);
  for (uint64_t i = 0; i < 64; i++)
    assert_int_equal(base[off + i], 0);
  release(l, a);
  ledger_destroy(l);

  l = make_ledger(0, 0, false);
  a = holder(l, 1, 1000);
  base = base_of(l);
  assert_int_equal(ledger_buf_alloc(l, a, 8192, 0, NULL, &why, &x), 0);
  memset(base + x.offset, 0x5a, x.size);
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  assert_int_equal(ledger_buf_alloc(l, a, 8192, LEDGER_ALLOC_ZERO, NULL, &why, &x), 0);
  for (uint64_t i = 0; i < x.size; i++)
    assert_int_equal(base[x.offset + i], 0);
  release(l, a);
  ledger_destroy(l);
}

static void every_ownership_change_is_one_counted_primitive(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1000);
  uint64_t m0[LEDGER_OP__COUNT], offs[3];
  ledger_cache_info_t c;
  ledger_buf_info_t x;
  ledger_why_t why;

#define SNAP()                                                                                 \
  for (int op = 0; op < LEDGER_OP__COUNT; op++)                                                \
  m0[op] = ledger_mutations(l, op)
#define DELTA(op) (ledger_mutations(l, op) - m0[op])
  SNAP();
  assert_int_equal(ledger_buf_alloc(l, a, 4096, 0, "n", &why, &x), 0);
  assert_int_equal(DELTA(LEDGER_OP_BUF_CREATE), 1);
  assert_int_equal(DELTA(LEDGER_OP_CHARGE), 1);
  assert_int_equal(DELTA(LEDGER_OP_HOLD), 1);
  assert_int_equal(DELTA(LEDGER_OP_PUBLISH), 1);
  SNAP();
  assert_int_equal(ledger_buf_lookup(l, b, "n", &why, &x), 0);
  assert_int_equal(DELTA(LEDGER_OP_HOLD), 1);
  assert_int_equal(DELTA(LEDGER_OP_CHARGE), 0);
  SNAP();
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  assert_int_equal(DELTA(LEDGER_OP_UNHOLD), 1);
  assert_int_equal(DELTA(LEDGER_OP_BUF_DESTROY), 0);
  SNAP();
  assert_int_equal(ledger_buf_free(l, b, x.handle, &why), 0);
  assert_int_equal(DELTA(LEDGER_OP_UNHOLD), 1);
  assert_int_equal(DELTA(LEDGER_OP_UNPUBLISH), 1);
  assert_int_equal(DELTA(LEDGER_OP_UNCHARGE), 1);
  assert_int_equal(DELTA(LEDGER_OP_BUF_DESTROY), 1);
  SNAP();
  assert_int_equal(ledger_cache_open(l, "c", 64, 8, &why, &c), 0);
  assert_int_equal(ledger_cache_open(l, "c", 64, 8, &why, &c), 0);
  assert_int_equal(DELTA(LEDGER_OP_CACHE_CREATE), 1);
  SNAP();
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 3, offs, &why), 0);
  assert_int_equal(DELTA(LEDGER_OP_OBJ_TAKE), 3);
  assert_int_equal(DELTA(LEDGER_OP_CHARGE), 1);
  SNAP();
  release(l, a);
  assert_int_equal(DELTA(LEDGER_OP_OBJ_GIVE), 3);
  assert_int_equal(DELTA(LEDGER_OP_UNCHARGE), 1);
  release(l, b);
#undef SNAP
#undef DELTA
  ledger_destroy(l);
}

/* ---- model-based randomized test ---------------------------------------------------- */

#define NH 4        /* holders at once */
#define NCACHE 3    /* caches opened at the start */
#define NNAMES 12   /* names drawn from n0..n11 */
#define MAXBUFS 600 /* live buffers the model can track */
#define MAXOBJS 8192

typedef struct mbuf {
  uint64_t handle, offset, size;
  uid_t uid;
  int name; /* -1: unnamed */
  uint64_t refs[NH];
} mbuf_t;

typedef struct mobj {
  uint64_t off;
  int holder;
  int cache; /* index into model caches */
} mobj_t;

typedef struct model {
  ledger_t *l;
  uint64_t rng;
  uint64_t quota;
  uint32_t max_buffers;
  ledger_holder_t *h[NH];
  uint64_t sid[NH];
  uid_t uid[NH];
  uint64_t next_sid;
  mbuf_t bufs[MAXBUFS];
  size_t nbufs;
  mobj_t objs[MAXOBJS];
  size_t nobjs;
  ledger_cache_info_t cache[NCACHE];
  uint64_t next_handle;
  uint64_t counts[PP__ERR_MAX]; /* outcomes seen, by -rc */
} model_t;

static uint64_t rnd(model_t *m) { /* xorshift64* */
  m->rng ^= m->rng >> 12;
  m->rng ^= m->rng << 25;
  m->rng ^= m->rng >> 27;
  return m->rng * 2685821657736338717ull;
}

static uint64_t below(model_t *m, uint64_t n) {
  return rnd(m) % n;
}

static const char *name_of(int i) {
  static char names[NNAMES][16];
  snprintf(names[i], sizeof names[i], "n%d", i);
  return names[i];
}

static uint64_t uid_charged(const model_t *m, uid_t uid) {
  uint64_t sum = 0;
  for (size_t i = 0; i < m->nbufs; i++)
    if (m->bufs[i].uid == uid) sum += m->bufs[i].size;
  for (size_t i = 0; i < m->nobjs; i++)
    if (m->uid[m->objs[i].holder] == uid) sum += m->cache[m->objs[i].cache].object_size;
  return sum;
}

static bool quota_ok(const model_t *m, uid_t uid, uint64_t bytes) {
  return !m->quota || uid_charged(m, uid) + bytes <= m->quota;
}

static uint64_t holder_refs(const model_t *m, int h) {
  uint64_t n = 0;
  for (size_t i = 0; i < m->nbufs; i++)
    n += m->bufs[i].refs[h];
  return n;
}

static mbuf_t *by_handle(model_t *m, uint64_t handle) {
  for (size_t i = 0; i < m->nbufs; i++)
    if (m->bufs[i].handle == handle) return &m->bufs[i];
  return NULL;
}

static mbuf_t *by_name(model_t *m, int name) {
  for (size_t i = 0; i < m->nbufs; i++)
    if (m->bufs[i].name == name) return &m->bufs[i];
  return NULL;
}

static mobj_t *obj_at(model_t *m, uint64_t off) {
  for (size_t i = 0; i < m->nobjs; i++)
    if (m->objs[i].off == off) return &m->objs[i];
  return NULL;
}

static void drop_buf_if_unheld(model_t *m, mbuf_t *b) {
  for (int h = 0; h < NH; h++)
    if (b->refs[h]) return;
  *b = m->bufs[--m->nbufs];
}

static void drop_obj(model_t *m, mobj_t *o) {
  *o = m->objs[--m->nobjs];
}

static void expect(model_t *m, int got, int want, const char *op) {
  if (got != want)
    fail_msg("%s: got %s, model says %s", op, pp_err_name(got), pp_err_name(want));
  m->counts[-got]++;
}

/* Everything the ledger says about holdings equals the model. */
static void compare(model_t *m) {
  ledger_totals_t t;
  uint64_t buf_bytes = 0, obj_bytes = 0, seen = 0;
  ledger_buf_info_t info;
  size_t it = 0;

  checked(m->l);
  ledger_get_totals(m->l, &t);
  for (size_t i = 0; i < m->nbufs; i++)
    buf_bytes += m->bufs[i].size;
  for (size_t i = 0; i < m->nobjs; i++)
    obj_bytes += m->cache[m->objs[i].cache].object_size;
  assert_int_equal(t.nbufs, m->nbufs);
  assert_int_equal(t.buf_bytes, buf_bytes);
  assert_int_equal(t.obj_bytes, obj_bytes);
  assert_int_equal(t.nholders, NH);
  for (int h = 0; h < NH; h++) {
    ledger_holder_totals_t ht = totals_of(m->h[h]);
    uint64_t refs = 0, nb = 0, bb = 0, no = 0, ob = 0;
    for (size_t i = 0; i < m->nbufs; i++)
      if (m->bufs[i].refs[h]) {
        refs += m->bufs[i].refs[h];
        nb++;
        bb += m->bufs[i].size;
      }
    for (size_t i = 0; i < m->nobjs; i++)
      if (m->objs[i].holder == h) {
        no++;
        ob += m->cache[m->objs[i].cache].object_size;
      }
    assert_int_equal(ht.buf_refs, refs);
    assert_int_equal(ht.buffers, nb);
    assert_int_equal(ht.buf_bytes, bb);
    assert_int_equal(ht.objects, no);
    assert_int_equal(ht.obj_bytes, ob);
  }
  while (ledger_buf_next(m->l, &it, &info)) {
    mbuf_t *b = by_handle(m, info.handle);
    uint32_t nh = 0;
    assert_non_null(b);
    assert_int_equal(info.offset, b->offset);
    assert_int_equal(info.size, b->size);
    assert_int_equal(info.charged_uid, b->uid);
    if (b->name < 0)
      assert_null(info.name);
    else
      assert_string_equal(info.name, name_of(b->name));
    for (int h = 0; h < NH; h++)
      nh += b->refs[h] != 0;
    assert_int_equal(info.nholders, nh);
    for (uint32_t i = 0; i < info.nholders; i++) {
      const ledger_ident_t *id = ledger_buf_holder(info.buf, i);
      bool found = false;
      for (int h = 0; h < NH; h++)
        found |= id->session_id == m->sid[h] && b->refs[h] != 0;
      assert_true(found);
    }
    seen++;
  }
  assert_int_equal(seen, m->nbufs);
}

/* No two things the model says are held overlap. */
static void assert_outside_buffers(model_t *m, uint64_t off, uint64_t len) {
  for (size_t i = 0; i < m->nbufs; i++)
    assert_true(off + len <= m->bufs[i].offset || off >= m->bufs[i].offset + m->bufs[i].size);
}

static void op_alloc(model_t *m) {
  int h = (int)below(m, NH), name = below(m, 3) ? -1 : (int)below(m, NNAMES);
  uint64_t size = below(m, 4) ? 1 + below(m, 16384) : 1 + below(m, 300000);
  unsigned flags = below(m, 8) == 0 ? LEDGER_ALLOC_CONTIG : 0;
  const char *nm = name < 0 ? NULL : name_of(name);
  uint64_t bsize = PG;
  buddy_stats_t bs;
  ledger_buf_info_t info;
  ledger_why_t why;
  int want = 0, rc;

  if (below(m, 50) == 0) flags |= 0x10;
  if (below(m, 50) == 0) size = 0;
  if (below(m, 100) == 0) size = REGION + 1;
  while (bsize < size)
    bsize *= 2;
  /* Whether a block larger than a page is physically contiguous depends on the machine
   * when physical addresses are known: keep the run reproducible. */
  if (bsize > PG && region_phys_known(ledger_region(m->l))) flags &= ~LEDGER_ALLOC_CONTIG;
  if (flags & ~3u)
    want = PP_EINVAL;
  else if (size == 0)
    want = PP_EINVAL;
  else if (size > REGION)
    want = PP_ERANGE;
  else if (name >= 0 && by_name(m, name))
    want = PP_EEXIST;
  else if (m->max_buffers && holder_refs(m, h) >= m->max_buffers)
    want = PP_ELIMIT;
  else if (!quota_ok(m, m->uid[h], bsize))
    want = PP_EQUOTA;
  if (!want && m->nbufs == MAXBUFS) return;
  ledger_buddy_stats(m->l, &bs);
  rc = ledger_buf_alloc(m->l, m->h[h], size, flags, nm, &why, &info);
  if (!want && (rc == PP_ENOMEM || rc == PP_ENOCONTIG)) {
    /* The model cannot place blocks: accept "no room" only when there was none. */
    if (rc == PP_ENOMEM) assert_true(bs.largest_free < bsize);
    if (rc == PP_ENOCONTIG) assert_true(flags & LEDGER_ALLOC_CONTIG);
    m->counts[-rc]++;
    return;
  }
  expect(m, rc, want, "alloc");
  if (rc) return;
  assert_int_equal(info.handle, m->next_handle);
  assert_int_equal(info.size, bsize);
  assert_int_equal(info.offset % bsize, 0);
  assert_true(info.offset + bsize <= REGION);
  if (flags & LEDGER_ALLOC_CONTIG) assert_true(info.contiguous);
  assert_outside_buffers(m, info.offset, bsize);
  for (size_t i = 0; i < m->nobjs; i++)
    assert_true(m->objs[i].off < info.offset || m->objs[i].off >= info.offset + bsize);
  m->next_handle++;
  m->bufs[m->nbufs] = (mbuf_t){.handle = info.handle,
                               .offset = info.offset,
                               .size = bsize,
                               .uid = m->uid[h],
                               .name = name};
  m->bufs[m->nbufs++].refs[h] = 1;
}

static void op_lookup(model_t *m) {
  int h = (int)below(m, NH), name = (int)below(m, NNAMES);
  bool empty = below(m, 40) == 0;
  mbuf_t *b = empty ? NULL : by_name(m, name);
  ledger_buf_info_t info;
  ledger_why_t why;
  int want = 0, rc;

  if (empty)
    want = PP_EINVAL;
  else if (!b)
    want = PP_ENOENT;
  else if (m->max_buffers && holder_refs(m, h) >= m->max_buffers)
    want = PP_ELIMIT;
  rc = ledger_buf_lookup(m->l, m->h[h], empty ? "" : name_of(name), &why, &info);
  expect(m, rc, want, "lookup");
  if (rc) return;
  assert_int_equal(info.handle, b->handle);
  b->refs[h]++;
}

static void op_free(model_t *m) {
  int h = (int)below(m, NH);
  uint64_t handle;
  ledger_why_t why;
  mbuf_t *b;
  int want, rc;

  if (m->nbufs && below(m, 4))
    handle = m->bufs[below(m, m->nbufs)].handle;
  else
    handle = below(m, m->next_handle + 3);
  b = by_handle(m, handle);
  want = b && b->refs[h] ? 0 : b ? PP_EPERM : PP_ENOENT;
  rc = ledger_buf_free(m->l, m->h[h], handle, &why);
  expect(m, rc, want, "free");
  if (rc == PP_ENOENT)
    assert_non_null(strstr(why.msg, handle > 0 && handle < m->next_handle ? "already freed"
                                                                          : "no buffer with"));
  if (rc) return;
  b->refs[h]--;
  drop_buf_if_unheld(m, b);
}

static void op_cache_alloc(model_t *m) {
  int h = (int)below(m, NH), c = (int)below(m, NCACHE);
  uint32_t id = below(m, 30) ? m->cache[c].id : 999, count = 1 + (uint32_t)below(m, 64);
  uint64_t offs[LEDGER_OBJECTS_MAX];
  bool room = below(m, 30) != 0;
  ledger_why_t why;
  int want = 0, rc;

  if (below(m, 40) == 0) count = below(m, 2) ? 0 : LEDGER_OBJECTS_MAX + 1;
  if (id == 999)
    want = PP_ENOENT;
  else if (count == 0 || count > LEDGER_OBJECTS_MAX)
    want = PP_ERANGE;
  else if (!quota_ok(m, m->uid[h], (uint64_t)count * m->cache[c].object_size))
    want = PP_EQUOTA;
  else if (!room)
    want = PP_ENOPRIVMEM;
  if (!want && m->nobjs + count > MAXOBJS) return;
  rc = ledger_cache_alloc(m->l, m->h[h], id, count, room ? offs : NULL, &why);
  if (!want && rc == PP_ENOMEM) {
    /* Only when the buddy has no block left for another slab. */
    buddy_stats_t bs;
    ledger_buddy_stats(m->l, &bs);
    assert_true(bs.largest_free < m->cache[c].slab_bytes);
    m->counts[-rc]++;
    return;
  }
  expect(m, rc, want, "cache_alloc");
  if (rc) return;
  for (uint32_t i = 0; i < count; i++) {
    assert_null(obj_at(m, offs[i]));
    assert_int_equal(offs[i] % m->cache[c].align, 0);
    assert_outside_buffers(m, offs[i], m->cache[c].object_size);
    m->objs[m->nobjs++] = (mobj_t){.off = offs[i], .holder = h, .cache = c};
  }
}

static void op_cache_free(model_t *m) {
  int h = (int)below(m, NH), c = (int)below(m, NCACHE);
  uint64_t offs[64];
  size_t n = 0, want_index = 0;
  int want = 0, rc;
  ledger_why_t why;
  uint32_t id = below(m, 40) ? m->cache[c].id : 999;

  for (size_t i = 0; i < m->nobjs && n < 1 + below(m, 40); i++)
    if (m->objs[i].holder == h && m->objs[i].cache == c && below(m, 2))
      offs[n++] = m->objs[i].off;
  /* Now and then, something that must be refused. */
  if (below(m, 6) == 0 && n < 64) {
    size_t at = below(m, n + 1);
    uint64_t bad;
    switch (below(m, 4)) {
    case 0: bad = 4096 * below(m, 1024) + 8; break; /* probably nobody's */
    case 1: bad = m->nobjs ? m->objs[below(m, m->nobjs)].off : 1; break;
    case 2: bad = n ? offs[below(m, n)] : 3; break; /* a duplicate */
    default: bad = 1; break;
    }
    memmove(&offs[at + 1], &offs[at], (n - at) * sizeof *offs);
    offs[at] = bad;
    n++;
  }
  /* The model's verdict: the first bad offset, in order. */
  if (id == 999) {
    want = PP_ENOENT;
  } else {
    for (size_t i = 0; i < n && !want; i++) {
      mobj_t *o = obj_at(m, offs[i]);
      if (!o || o->holder != h) {
        want = o ? PP_EPERM : PP_ENOENT;
      } else if (o->cache != c) {
        want = PP_EINVAL;
      } else if (n > 1) {
        for (size_t j = 0; j < i; j++)
          if (offs[j] == offs[i]) want = PP_EDOUBLEFREE;
      }
      if (want) want_index = i;
    }
  }
  rc = ledger_cache_free(m->l, m->h[h], id, offs, n, &why);
  expect(m, rc, want, "cache_free");
  if (rc && id != 999) {
    char at[32];
    snprintf(at, sizeof at, "(index %zu)", want_index);
    assert_non_null(strstr(why.msg, at));
  }
  if (rc) return;
  for (size_t i = 0; i < n; i++)
    drop_obj(m, obj_at(m, offs[i]));
}

/* The holder goes (a disconnect) and a new session takes its place. */
static void op_release(model_t *m) {
  int h = (int)below(m, NH);
  ledger_ident_t id;

  ledger_holder_release(m->l, m->h[h]);
  for (size_t i = m->nbufs; i-- > 0;) {
    m->bufs[i].refs[h] = 0;
    drop_buf_if_unheld(m, &m->bufs[i]);
  }
  for (size_t i = m->nobjs; i-- > 0;)
    if (m->objs[i].holder == h) drop_obj(m, &m->objs[i]);
  m->sid[h] = m->next_sid++;
  id = (ledger_ident_t){.session_id = m->sid[h], .pid = 1, .uid = m->uid[h]};
  assert_int_equal(ledger_holder_create(m->l, &id, &m->h[h]), 0);
}

static int map_sum(void *ctx, const ledger_block_t *b) {
  uint64_t *sum = ctx;
  if (b->offset != *sum) return PP_ECORRUPT; /* in offset order, no gaps */
  *sum += b->size;
  return 0;
}

static void run_model(uint64_t seed, uint64_t quota, uint32_t max_buffers, unsigned ops) {
  model_t *m = calloc(1, sizeof *m);
  uint64_t before, sum = 0;
  ledger_shrink_result_t sr;
  ledger_why_t why;
  static const uint32_t sizes[NCACHE] = {64, 200, 4096}, aligns[NCACHE] = {8, 64, 4096};

  assert_non_null(m);
  m->l = make_ledger(quota, max_buffers, (seed & 1) != 0);
  m->rng = seed * 0x9e3779b97f4a7c15ull + 1;
  m->quota = quota;
  m->max_buffers = max_buffers;
  m->next_handle = 1;
  m->next_sid = 1;
  before = ledger_free_bytes(m->l);
  for (int h = 0; h < NH; h++) {
    ledger_ident_t id;
    m->uid[h] = h < 2 ? 1000 : (uid_t)(1000 + h); /* holders 0 and 1 share a uid */
    m->sid[h] = m->next_sid++;
    id = (ledger_ident_t){.session_id = m->sid[h], .pid = 1, .uid = m->uid[h]};
    assert_int_equal(ledger_holder_create(m->l, &id, &m->h[h]), 0);
  }
  for (int c = 0; c < NCACHE; c++) {
    char name[16];
    snprintf(name, sizeof name, "c%d", c);
    assert_int_equal(ledger_cache_open(m->l, name, sizes[c], aligns[c], &why, &m->cache[c]), 0);
  }

  for (unsigned i = 0; i < ops; i++) {
    uint64_t r = below(m, 100);
    if (r < 25)
      op_alloc(m);
    else if (r < 35)
      op_lookup(m);
    else if (r < 55)
      op_free(m);
    else if (r < 75)
      op_cache_alloc(m);
    else if (r < 95)
      op_cache_free(m);
    else if (r < 99)
      op_release(m);
    else
      ledger_shrink(m->l, &sr);
    compare(m);
    if (i % 256 == 0) {
      sum = 0;
      assert_int_equal(ledger_walk_blocks(m->l, map_sum, &sum), 0);
      assert_int_equal(sum, REGION);
    }
  }
  /* Every refusal the model knows happened at least once, and so did success. */
  assert_true(m->counts[0] > 0);
  assert_true(m->counts[-PP_ENOENT] > 0 && m->counts[-PP_EPERM] > 0);
  assert_true(m->counts[-PP_EINVAL] > 0 && m->counts[-PP_ERANGE] > 0);
  assert_true(m->counts[-PP_EEXIST] > 0 && m->counts[-PP_EDOUBLEFREE] > 0);
  assert_true(m->counts[-PP_ENOPRIVMEM] > 0);
  if (quota) assert_true(m->counts[-PP_EQUOTA] > 0);
  if (max_buffers) assert_true(m->counts[-PP_ELIMIT] > 0);
  printf("seed %" PRIu64 ": ok %" PRIu64 ", ENOMEM %" PRIu64 ", EQUOTA %" PRIu64
         ", ELIMIT %" PRIu64 ", EPERM %" PRIu64 ", EDOUBLEFREE %" PRIu64 "\n",
         seed, m->counts[0], m->counts[-PP_ENOMEM], m->counts[-PP_EQUOTA],
         m->counts[-PP_ELIMIT], m->counts[-PP_EPERM], m->counts[-PP_EDOUBLEFREE]);

  /* With every holder gone and the magazines drained, the region is whole again. */
  for (int h = 0; h < NH; h++)
    ledger_holder_release(m->l, m->h[h]);
  ledger_shrink(m->l, &sr);
  checked(m->l);
  assert_int_equal(ledger_free_bytes(m->l), before);
  ledger_destroy(m->l);
  free(m);
}

static unsigned scaled(unsigned n) {
  const char *s = getenv("PP_TEST_SCALE");
  unsigned k = s ? (unsigned)strtoul(s, NULL, 10) : 1;
  return n * (k ? k : 1);
}

static void random_calls_agree_with_a_model_of_who_holds_what(void **state) {
  /* Unlimited; a tight quota; a tight buffer limit; a region that fills up. */
  run_model(1, 0, 0, scaled(PP_DEBUG >= 3 ? 3000 : 12000));
  run_model(2, 512 * 1024, 0, scaled(PP_DEBUG >= 3 ? 3000 : 12000));
  run_model(3, 0, 20, scaled(PP_DEBUG >= 3 ? 3000 : 12000));
  run_model(4, 1024 * 1024, 8, scaled(PP_DEBUG >= 3 ? 3000 : 12000));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(alloc_rounds_up_to_a_block_charges_it_and_free_gives_it_back),
      cmocka_unit_test(refusals_say_why_and_change_nothing),
      cmocka_unit_test(a_holder_cannot_free_what_it_does_not_hold),
      cmocka_unit_test(named_buffer_lives_until_its_last_reference_goes),
      cmocka_unit_test(quota_counts_buffers_and_objects_per_uid),
      cmocka_unit_test(buffer_limit_counts_references),
      cmocka_unit_test(cache_free_is_all_or_nothing_and_names_the_first_bad_offset),
      cmocka_unit_test(cache_alloc_without_room_refuses_bad_requests_for_their_own_reason),
      cmocka_unit_test(release_returns_everything_and_free_bytes_come_back),
      cmocka_unit_test(zero_flag_and_zero_on_free_clear_the_memory),
      cmocka_unit_test(every_ownership_change_is_one_counted_primitive),
      cmocka_unit_test(random_calls_agree_with_a_model_of_who_holds_what),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
