/*
 * test_ledger.c — the daemon's ledger driven directly: no sockets, no protobuf.
 *
 * Each test creates a ledger over a small region of 4 KiB pages, makes fake sessions
 * (holders with a session id, pid and uid), and calls ledger_check() after every step.
 * The behaviour tests name one rule each; the last test is model-based and randomized:
 * a reference model of who holds what (buffers with per-holder reference counts and the
 * order holders came in, names in their scopes — own, other users', a shared group's, a
 * group that is not shared —, the uid each buffer is charged to and where the charge goes
 * when its payer lets go, caches per scope with each holder's opens, their geometry, their
 * lifetime and ids, objects per holder and cache, each uid's charge by the stride rule,
 * the handle counter) predicts the exact outcome of every call — the error code, and for
 * refusals the part of the reason that names what was wrong — and after each call the
 * ledger's totals, each holder's totals, each uid's charge, its list of buffers and its
 * list of caches must agree with the model.  What the model cannot know (whether the
 * buddy or the slabs find room) it accepts only when the ledger's own allocator
 * statistics show there was none, and the state must then be unchanged.
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
#define KIB UINT64_C(1024)
#define REGION (4ull << 20)

typedef struct limits {
  uint64_t quota;
  uint32_t max_buffers, max_caches_per_uid, max_caches;
  bool zero_on_free;
  gid_t shared; /* a shared group, 0 = none */
} limits_t;

static ledger_t *make_ledger_with(const limits_t *lim) {
  ledger_config_t cfg = {.size = REGION,
                         .policy = REGION_PAGE_4K,
                         .quota = lim->quota,
                         .max_buffers = lim->max_buffers,
                         .max_caches_per_uid = lim->max_caches_per_uid,
                         .max_caches = lim->max_caches,
                         .zero_on_free = lim->zero_on_free};
  ledger_t *l = NULL;
  int rc;
  if (lim->shared) cfg.shared_groups[cfg.nshared_groups++] = lim->shared;
  rc = ledger_create(&cfg, &l);
  if (rc) {
    printf("SKIP: cannot create a %llu-byte region of 4 KiB pages: %s\n",
           (unsigned long long)REGION, pp_strerror(rc));
    skip();
  }
  return l;
}

static ledger_t *make_ledger(uint64_t quota, uint32_t max_buffers, bool zero_on_free) {
  limits_t lim = {.quota = quota, .max_buffers = max_buffers, .zero_on_free = zero_on_free};
  return make_ledger_with(&lim);
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

static uint64_t stride_of(uint32_t size, uint32_t align) {
  uint64_t a = align ? align : 8;
  return (size + a - 1) / a * a;
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
  assert_int_equal(ledger_uid_charged(l, 1000), 8192);
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
  assert_int_equal(ledger_uid_charged(l, 1000), 0);
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
  ledger_cache_info_t c;
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
  assert_int_equal(ledger_buf_alloc(l, h, 4096, 0, "~1000/", &why, &b), PP_EINVAL);
  assert_string_equal(why.msg, "'~1000/' has a scope but no name");
  assert_int_equal(ledger_buf_alloc(l, h, 4096, 0, "~me/x", &why, &b), PP_EINVAL);
  assert_non_null(strstr(why.msg, "has no valid scope: write ~UID/NAME or ~gGID/NAME"));
  assert_int_equal(ledger_buf_alloc(l, h, REGION + 1, 0, NULL, &why, &b), PP_ERANGE);
  assert_non_null(strstr(why.msg, "exceeds the region"));
  assert_int_equal(ledger_buf_lookup(l, h, "", &why, &b), PP_EINVAL);
  assert_string_equal(why.msg, "lookup needs a name");
  assert_int_equal(ledger_buf_lookup(l, h, "~01/x", &why, &b), PP_EINVAL);
  assert_int_equal(ledger_buf_lookup(l, h, "nobody", &why, &b), PP_ENOENT);
  assert_string_equal(why.msg, "no buffer named 'nobody'");
  assert_int_equal(ledger_buf_free(l, h, 0, &why), PP_ENOENT);
  assert_string_equal(why.msg, "this session holds no buffer with handle 0");
  assert_int_equal(ledger_cache_alloc(l, h, 77, 1, NULL, &why), PP_ENOENT);
  assert_string_equal(why.msg, "no cache with id 77");
  assert_int_equal(ledger_cache_close(l, h, 77, &why), PP_ENOENT);
  assert_string_equal(why.msg, "no cache with id 77");
  assert_int_equal(ledger_cache_open(l, h, "~1000/", 64, 8, &why, &c), PP_EINVAL);
  assert_string_equal(why.msg, "a cache name has 1 to 63 bytes");
  assert_int_equal(ledger_cache_open(l, h, "~1001/theirs", 64, 8, &why, &c), PP_EPERM);
  checked(l);
  for (int op = 0; op < LEDGER_OP__COUNT; op++)
    muts -= ledger_mutations(l, op);
  assert_int_equal(muts, 0); /* not one primitive ran */
  release(l, h);
  ledger_destroy(l);
}

static void names_parse_one_way_whatever_they_contain(void **state) {
  ledger_scope_t scope;
  const char *rest;
  char p[LEDGER_SCOPE_PREFIX_MAX + 1];

  assert_int_equal(ledger_name_parse("frames", 1000, &scope, &rest, NULL), 0);
  assert_true(scope == LEDGER_SCOPE_USER(1000));
  assert_string_equal(rest, "frames");
  /* '/' in an unqualified name is just a byte of the name. */
  assert_int_equal(ledger_name_parse("a/b~c", 7, &scope, &rest, NULL), 0);
  assert_true(scope == LEDGER_SCOPE_USER(7));
  assert_string_equal(rest, "a/b~c");
  /* The scope ends at the first '/': the rest is the name, '/' and '~' included. */
  assert_int_equal(ledger_name_parse("~1000/a/b", 7, &scope, &rest, NULL), 0);
  assert_true(scope == LEDGER_SCOPE_USER(1000));
  assert_string_equal(rest, "a/b");
  assert_int_equal(ledger_name_parse("~0/~1000/x", 7, &scope, &rest, NULL), 0);
  assert_true(scope == LEDGER_SCOPE_USER(0));
  assert_string_equal(rest, "~1000/x");
  assert_int_equal(ledger_name_parse("~g44/frames", 7, &scope, &rest, NULL), 0);
  assert_true(scope == LEDGER_SCOPE_GROUP(44));
  assert_string_equal(rest, "frames");
  assert_int_equal(ledger_name_parse("~4294967294/x", 7, &scope, &rest, NULL), 0);
  assert_true(scope == LEDGER_SCOPE_USER(4294967294u));
  /* One spelling per scope: no leading zeros, no sign, no empty id, nothing past 2^32-2. */
  static const char *const bad[] = {"~",
                                    "~/x",
                                    "~01/x",
                                    "~+1/x",
                                    "~1000",
                                    "~g/x",
                                    "~gg1/x",
                                    "~ 1/x",
                                    "~4294967295/x",
                                    "~g00/x",
                                    "~99999999999999999999/x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (ledger_name_parse(bad[i], 7, &scope, &rest, NULL) != PP_EINVAL)
      fail_msg("'%s' parsed", bad[i]);
  assert_int_equal(ledger_scope_prefix(LEDGER_SCOPE_USER(1000), p, sizeof p), 6);
  assert_string_equal(p, "~1000/");
  ledger_scope_prefix(LEDGER_SCOPE_GROUP(4294967294u), p, sizeof p);
  assert_string_equal(p, "~g4294967294/");
  assert_int_equal(strlen(p), LEDGER_SCOPE_PREFIX_MAX);
}

static void names_are_scoped_by_user_so_nobody_can_squat_them(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *victim = holder(l, 1, 1000), *squatter = holder(l, 2, 65534);
  ledger_buf_info_t s, v, x;
  ledger_cache_info_t cs, cv;
  ledger_why_t why;

  /* The squatter is first with both names, and a wrong geometry. */
  assert_int_equal(ledger_buf_alloc(l, squatter, 4096, 0, "frames", &why, &s), 0);
  assert_int_equal(ledger_cache_open(l, squatter, "mbuf", 64, 8, &why, &cs), 0);
  /* The victim is served as if they did not exist. */
  assert_int_equal(ledger_buf_alloc(l, victim, 4096, 0, "frames", &why, &v), 0);
  assert_int_equal(ledger_cache_open(l, victim, "mbuf", 2048, 64, &why, &cv), 0);
  assert_true(v.handle != s.handle && cv.id != cs.id);
  assert_string_equal(v.qname, "~1000/frames");
  assert_string_equal(cv.name, "~1000/mbuf");
  assert_string_equal(ledger_buf_name_for(&v, 1000), "frames");
  assert_int_equal(ledger_buf_lookup(l, victim, "frames", &why, &x), 0);
  assert_int_equal(x.handle, v.handle);
  /* The squatter's are reachable only by their qualified names. */
  assert_int_equal(ledger_buf_lookup(l, victim, "~65534/frames", &why, &x), 0);
  assert_int_equal(x.handle, s.handle);
  assert_string_equal(ledger_buf_name_for(&x, 1000), "~65534/frames");
  assert_int_equal(ledger_cache_open(l, victim, "~65534/mbuf", 64, 8, &why, &cv), 0);
  assert_int_equal(cv.id, cs.id);
  /* Nobody creates in another user's scope: the squatter tries the victim's. */
  assert_int_equal(ledger_buf_alloc(l, squatter, 4096, 0, "~1000/other", &why, &x), PP_EPERM);
  assert_non_null(strstr(why.msg, "names in ~1000/ are created by uid 1000 only"));
  /* ... and the answer does not depend on whether the name exists. */
  assert_int_equal(ledger_buf_alloc(l, squatter, 4096, 0, "~1000/frames", &why, &x), PP_EPERM);
  assert_int_equal(ledger_cache_open(l, squatter, "~1000/new", 64, 8, &why, &cs), PP_EPERM);
  /* Opening an existing cache there is fine, with its own geometry only. */
  assert_int_equal(ledger_cache_open(l, squatter, "~1000/mbuf", 64, 8, &why, &cs),
                   PP_EGEOMETRY);
  assert_int_equal(ledger_cache_open(l, squatter, "~1000/mbuf", 2048, 64, &why, &cs), 0);
  checked(l);
  release(l, squatter);
  release(l, victim);
  ledger_destroy(l);
}

static void shared_group_scope_takes_names_from_members_only(void **state) {
  limits_t lim = {.shared = 500};
  ledger_t *l = make_ledger_with(&lim);
  ledger_holder_t *member = holder(l, 1, 1000), *stranger = holder(l, 2, 65534);
  ledger_buf_info_t b, x;
  ledger_cache_info_t c;
  ledger_why_t why;
  const gid_t mine[] = {500, 501};

  /* Until its groups are known a holder is in none: safe by default. */
  assert_false(ledger_holder_groups_known(member));
  assert_int_equal(ledger_buf_alloc(l, member, 4096, 0, "~g500/ring", &why, &b), PP_EPERM);
  assert_int_equal(ledger_holder_set_groups(l, member, mine, 2), 0);
  assert_int_equal(ledger_holder_set_groups(l, stranger, NULL, 0), 0);
  assert_int_equal(ledger_buf_alloc(l, member, 4096, 0, "~g500/ring", &why, &b), 0);
  assert_int_equal(ledger_cache_open(l, member, "~g500/msgs", 128, 0, &why, &c), 0);
  assert_string_equal(c.name, "~g500/msgs");
  /* 501 is not a shared group, whatever the member's groups. */
  assert_int_equal(ledger_buf_alloc(l, member, 4096, 0, "~g501/ring", &why, &x), PP_EPERM);
  assert_non_null(strstr(why.msg, "group 501 is not a shared group"));
  /* A stranger looks up and opens, but creates nothing there. */
  assert_int_equal(ledger_buf_lookup(l, stranger, "~g500/ring", &why, &x), 0);
  assert_int_equal(x.handle, b.handle);
  assert_string_equal(ledger_buf_name_for(&x, 65534), "~g500/ring");
  assert_int_equal(ledger_cache_open(l, stranger, "~g500/msgs", 128, 0, &why, &c), 0);
  assert_int_equal(ledger_buf_alloc(l, stranger, 4096, 0, "~g500/mine", &why, &x), PP_EPERM);
  assert_non_null(strstr(why.msg, "uid 65534 is not a member of shared group 500"));
  assert_int_equal(ledger_cache_open(l, stranger, "~g500/mine", 128, 0, &why, &c), PP_EPERM);
  checked(l);
  release(l, member);
  release(l, stranger);
  ledger_destroy(l);
}

static void another_sessions_handle_looks_exactly_like_a_dead_one(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_cache_info_t ca, cb;
  ledger_buf_info_t x;
  ledger_why_t why;
  char live[LEDGER_WHY_MAX], dead[LEDGER_WHY_MAX];
  uint64_t theirs, nobodys;

  assert_int_equal(ledger_buf_alloc(l, a, 4096, 0, NULL, &why, &x), 0);
  assert_int_equal(ledger_buf_free(l, b, x.handle, &why), PP_ENOENT);
  strcpy(live, why.msg);
  checked(l);
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  assert_int_equal(ledger_buf_free(l, b, x.handle, &why), PP_ENOENT);
  strcpy(dead, why.msg);
  assert_string_equal(live, dead);
  assert_string_equal(live, "this session holds no buffer with handle 1");

  /* Objects: someone else's and nobody's give the same answer. */
  assert_int_equal(ledger_cache_open(l, a, "c", 64, 8, &why, &ca), 0);
  assert_int_equal(ledger_cache_open(l, b, "~1000/c", 64, 8, &why, &cb), 0);
  assert_int_equal(ledger_cache_alloc(l, a, ca.id, 1, &theirs, &why), 0);
  assert_int_equal(ledger_cache_alloc(l, a, ca.id, 1, &nobodys, &why), 0);
  assert_int_equal(ledger_cache_free(l, a, ca.id, &nobodys, 1, &why), 0);
  assert_int_equal(ledger_cache_free(l, b, cb.id, &theirs, 1, &why), PP_ENOENT);
  snprintf(live, sizeof live, "%s", why.msg);
  assert_int_equal(ledger_cache_free(l, b, cb.id, &nobodys, 1, &why), PP_ENOENT);
  snprintf(dead, sizeof dead, "%s", why.msg);
  /* They differ only in the offset they name. */
  assert_non_null(strstr(live, "is not an object this session holds in cache '~1000/c'"));
  assert_string_equal(strchr(live, '('), strchr(dead, '('));
  /* A cache id not open in this session is one that never was. */
  assert_int_equal(ledger_cache_close(l, a, ca.id, &why), PP_EBUSY); /* holds an object */
  assert_int_equal(ledger_cache_close(l, b, cb.id, &why), 0);
  assert_int_equal(ledger_cache_alloc(l, b, ca.id, 1, &theirs, &why), PP_ENOENT);
  snprintf(live, sizeof live, "%s", why.msg);
  assert_int_equal(ledger_cache_alloc(l, b, 9999, 1, &theirs, &why), PP_ENOENT);
  assert_int_equal(strncmp(live, why.msg, strlen("no cache with id")), 0);
  checked(l);
  release(l, a);
  release(l, b);
  ledger_destroy(l);
}

static void named_buffer_lives_until_its_last_reference_goes(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  uint64_t before = ledger_free_bytes(l);
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1000);
  ledger_buf_info_t x, y;
  ledger_why_t why;

  assert_int_equal(ledger_buf_alloc(l, a, 4096, 0, "frame", &why, &x), 0);
  assert_string_equal(x.name, "frame");
  assert_int_equal(ledger_buf_alloc(l, b, 4096, 0, "frame", &why, &y), PP_EEXIST);
  assert_string_equal(why.msg, "a buffer named 'frame' is already published");
  assert_int_equal(ledger_buf_alloc(l, b, 4096, 0, "~1000/frame", &why, &y), PP_EEXIST);
  assert_int_equal(ledger_buf_lookup(l, b, "frame", &why, &y), 0);
  assert_int_equal(ledger_buf_lookup(l, b, "~1000/frame", &why, &y), 0);
  checked(l);
  assert_int_equal(y.handle, x.handle);
  assert_int_equal(y.nholders, 2);
  assert_int_equal(ledger_buf_holder(y.buf, 0)->session_id, 1); /* first come, first */
  assert_int_equal(ledger_buf_holder(y.buf, 1)->session_id, 2);
  assert_int_equal(totals_of(b).buf_refs, 2);
  assert_int_equal(totals_of(b).buffers, 1);
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

static void charge_moves_to_the_longest_standing_holder_when_its_payer_lets_go(void **state) {
  ledger_t *l = make_ledger(64 * KIB, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000), *a2 = holder(l, 2, 1000), *b = holder(l, 3, 1001),
                  *c = holder(l, 4, 1002);
  ledger_buf_info_t x, y;
  ledger_why_t why;
  uint64_t m0 = ledger_mutations(l, LEDGER_OP_OWNER);

  assert_int_equal(ledger_buf_alloc(l, a, 64 * KIB, 0, "big", &why, &x), 0);
  assert_int_equal(ledger_buf_lookup(l, b, "~1000/big", &why, &y), 0);
  assert_int_equal(ledger_buf_lookup(l, c, "~1000/big", &why, &y), 0);
  assert_int_equal(ledger_buf_lookup(l, a2, "big", &why, &y), 0);
  /* Looking up costs nothing: the allocating uid pays. */
  assert_int_equal(ledger_uid_charged(l, 1000), 64 * KIB);
  assert_int_equal(ledger_uid_charged(l, 1001), 0);
  assert_int_equal(ledger_buf_alloc(l, b, 64 * KIB, 0, NULL, &why, &y), 0); /* b's own */
  /* a lets go, but a2 (same uid) still holds it: nothing moves. */
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  assert_int_equal(ledger_uid_charged(l, 1000), 64 * KIB);
  assert_int_equal(ledger_mutations(l, LEDGER_OP_OWNER), m0);
  /* The paying uid's last holder goes: b, the longest-standing holder, pays now — past
   * its quota, which it chose by holding on. */
  release(l, a2);
  assert_int_equal(ledger_uid_charged(l, 1000), 0);
  assert_int_equal(ledger_uid_charged(l, 1001), 128 * KIB);
  assert_int_equal(ledger_mutations(l, LEDGER_OP_OWNER), m0 + 1);
  assert_int_equal(ledger_buf_lookup(l, c, "~1000/big", &why, &y), 0);
  assert_int_equal(y.charged_uid, 1001);
  /* Over quota: nothing more until it frees. */
  assert_int_equal(ledger_buf_alloc(l, b, 4096, 0, NULL, &why, &y), PP_EQUOTA);
  assert_string_equal(why.msg,
                      "uid 1001 has 131072 bytes charged; 4096 more exceeds quota 65536");
  /* The name lives on in its scope, and the next payer is c. */
  assert_int_equal(ledger_buf_free(l, b, x.handle, &why), 0);
  assert_int_equal(ledger_uid_charged(l, 1001), 64 * KIB);
  assert_int_equal(ledger_uid_charged(l, 1002), 64 * KIB);
  checked(l);
  assert_int_equal(ledger_buf_alloc(l, b, 4096, 0, NULL, &why, &y), PP_EQUOTA);
  release(l, c);
  assert_int_equal(ledger_uid_charged(l, 1002), 0);
  release(l, a);
  release(l, b);
  ledger_destroy(l);
}

static void quota_counts_buffers_and_objects_per_uid(void **state) {
  ledger_t *l = make_ledger(64 * KIB, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000), *a2 = holder(l, 2, 1000), *b = holder(l, 3, 1001);
  ledger_cache_info_t ci;
  ledger_buf_info_t x;
  ledger_why_t why;
  uint64_t offs[16];

  assert_int_equal(ledger_buf_alloc(l, a, 32768, 0, NULL, &why, &x), 0);
  assert_int_equal(ledger_buf_alloc(l, a2, 16384, 0, NULL, &why, &x), 0);
  /* 1 KiB objects: 8 to an 8 KiB slab, each charged 1 KiB, and the uid's first object of
   * the cache brings one slab: 8 objects are 16 KiB of charge. */
  assert_int_equal(ledger_cache_open(l, a2, "q", 1024, 8, &why, &ci), 0);
  assert_int_equal(ci.obj_charge, 1024);
  assert_int_equal(ci.slab_bytes, 8192);
  assert_int_equal(ledger_cache_alloc(l, a2, ci.id, 9, offs, &why), PP_EQUOTA);
  assert_string_equal(why.msg,
                      "uid 1000 has 49152 bytes charged; 17408 more exceeds quota 65536");
  assert_int_equal(ledger_cache_alloc(l, a2, ci.id, 8, offs, &why), 0); /* exactly full */
  assert_int_equal(ledger_uid_charged(l, 1000), 64 * KIB);
  assert_int_equal(ledger_cache_open(l, a, "q", 1024, 8, &why, &ci), 0);
  assert_int_equal(ledger_cache_alloc(l, a, ci.id, 1, offs, &why), PP_EQUOTA);
  assert_string_equal(why.msg,
                      "uid 1000 has 65536 bytes charged; 1024 more exceeds quota 65536");
  assert_int_equal(ledger_buf_alloc(l, a, 1, 0, NULL, &why, &x), PP_EQUOTA);
  assert_string_equal(why.msg,
                      "uid 1000 has 65536 bytes charged; 4096 more exceeds quota 65536");
  assert_int_equal(ledger_buf_alloc(l, b, 65536, 0, NULL, &why, &x), 0); /* another uid */
  checked(l);
  release(l, a2); /* its buffer, objects and the cache's slab uncharge uid 1000 */
  assert_int_equal(ledger_uid_charged(l, 1000), 32 * KIB);
  assert_int_equal(ledger_buf_alloc(l, a, 32768, 0, NULL, &why, &x), 0);
  checked(l);
  release(l, a);
  release(l, b);
  ledger_destroy(l);
}

/* Allocate objects of one geometry until the quota refuses; the region bytes that took
 * must stay within 2x the quota (the essay proves 9/8). */
static void fill_to_quota(uint32_t size, uint32_t align, uint64_t quota, unsigned ncaches) {
  ledger_t *l = make_ledger(quota, 0, false);
  uint64_t before = ledger_free_bytes(l), spent, *offs = malloc(LEDGER_OBJECTS_MAX * 8);
  ledger_holder_t *h = holder(l, 1, 65534);
  ledger_cache_info_t c[8];
  ledger_why_t why;
  unsigned got = 0;
  int rc = 0;

  assert_non_null(offs);
  for (unsigned k = 0; k < ncaches; k++) {
    char name[16];
    snprintf(name, sizeof name, "fill%u", k);
    assert_int_equal(ledger_cache_open(l, h, name, size, align, &why, &c[k]), 0);
    assert_true(c[k].obj_charge >= stride_of(size, align));
    assert_true(c[k].obj_charge * c[k].objs_per_slab <= c[k].slab_bytes);
  }
  /* Round robin over the caches in batches, halving the batch whenever a whole round is
   * refused, down to single objects: until not one more object fits anywhere. */
  for (uint32_t batch = 256;;) {
    bool any = false;
    for (unsigned k = 0; k < ncaches; k++) {
      rc = ledger_cache_alloc(l, h, c[k].id, batch, offs, &why);
      if (rc == 0) {
        got += batch;
        any = true;
      } else {
        assert_int_equal(rc, PP_EQUOTA);
      }
    }
    if (any) continue;
    if (batch == 1) break;
    batch /= 2;
  }
  assert_int_equal(rc, PP_EQUOTA);
  spent = before - ledger_free_bytes(l);
  assert_true(ledger_uid_charged(l, 65534) <= quota);
  printf("  %5u-byte objects aligned %5u, %u cache(s), quota %" PRIu64 " KiB: %u objects, "
         "%" PRIu64 " KiB spent (%.3fx)\n",
         size, align, ncaches, quota / KIB, got, spent / KIB, (double)spent / (double)quota);
  if (spent > 2 * quota)
    fail_msg("%" PRIu64 " bytes spent on a quota of %" PRIu64, spent, quota);
  assert_true(spent * 8 <= ledger_uid_charged(l, 65534) * 9); /* the proof's 9/8 */
  checked(l);
  release(l, h);
  assert_int_equal(ledger_free_bytes(l), before);
  free(offs);
  ledger_destroy(l);
}

static void objects_cost_at_most_twice_their_charge_in_every_geometry(void **state) {
  /* Tiny objects with huge alignment; sizes just above a power of two; the largest;
   * the smallest; one size per stride class. */
  static const uint32_t geo[][2] = {{8, 4096},  {8, 16384},   {1, 4096},  {4097, 8},  {2049, 8},
                                    {1025, 64}, {16384, 0},   {16383, 8}, {8, 8},     {24, 8},
                                    {72, 64},   {5000, 1024}, {8192, 0},  {3000, 512}};
  for (size_t i = 0; i < sizeof geo / sizeof geo[0]; i++) {
    uint32_t size = geo[i][0] < 8 ? 8 : geo[i][0];
    fill_to_quota(size, geo[i][1], 256 * KIB, 1);
    fill_to_quota(size, geo[i][1], 1024 * KIB, 1);
    fill_to_quota(size, geo[i][1], 256 * KIB, 8); /* many caches: each pays its slab */
  }
  /* A quota smaller than one slab: the slab is charged before the first object. */
  fill_to_quota(16384, 0, 64 * KIB, 1);
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

static void alloc_bulk_and_free_bulk_are_all_or_nothing(void **state) {
  ledger_t *l = make_ledger(64 * PG, 0, false);
  uint64_t before = ledger_free_bytes(l);
  ledger_holder_t *h = holder(l, 1, 1000), *o = holder(l, 2, 1001);
  ledger_buf_info_t b[LEDGER_OBJECTS_MAX + 1], x;
  uint64_t handles[8];
  ledger_why_t why;

  /* Past the quota as a whole: nothing is taken. */
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 4096, 0, 65, &why, b), PP_EQUOTA);
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 4096, 0, 0, &why, b), PP_ERANGE);
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 4096, 0, LEDGER_OBJECTS_MAX + 1, &why, b),
                   PP_ERANGE);
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 4096, 0x10, 2, &why, b), PP_EINVAL);
  checked(l);
  assert_int_equal(totals_of(h).buffers, 0);
  assert_int_equal(ledger_uid_charged(l, 1000), 0);
  assert_int_equal(ledger_free_bytes(l), before);

  /* Within it: count buffers, in handle order, each charged and held once. */
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 3000, LEDGER_ALLOC_ZERO, 6, &why, b), 0);
  checked(l);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(b[i].handle, (uint64_t)i + 1);
    assert_int_equal(b[i].size, 4096);
    assert_true(b[i].contiguous);
    handles[i] = b[i].handle;
  }
  assert_int_equal(totals_of(h).buffers, 6);
  assert_int_equal(ledger_uid_charged(l, 1000), 6 * PG);

  /* A handle not held — another session's, freed, listed more often than held — frees
   * nothing and is named with its index. */
  assert_int_equal(ledger_buf_alloc(l, o, 4096, 0, NULL, &why, &x), 0);
  handles[6] = x.handle;
  assert_int_equal(ledger_buf_free_bulk(l, h, handles, 7, &why), PP_ENOENT);
  assert_non_null(strstr(why.msg, "(index 6)"));
  handles[6] = handles[2];
  assert_int_equal(ledger_buf_free_bulk(l, h, handles, 7, &why), PP_ENOENT);
  assert_non_null(strstr(why.msg, "(index 6)"));
  assert_int_equal(ledger_buf_free_bulk(l, h, handles, LEDGER_OBJECTS_MAX + 1, &why),
                   PP_ERANGE);
  checked(l);
  assert_int_equal(totals_of(h).buffers, 6);
  assert_int_equal(ledger_buf_free_bulk(l, h, handles, 0, &why), 0);

  /* A buffer held twice may be listed twice. */
  char name[] = "twice";
  ledger_buf_info_t n1, n2;
  assert_int_equal(ledger_buf_alloc(l, h, 4096, 0, name, &why, &n1), 0);
  assert_int_equal(ledger_buf_lookup(l, h, name, &why, &n2), 0);
  handles[6] = n1.handle;
  handles[7] = n1.handle;
  assert_int_equal(ledger_buf_free_bulk(l, h, handles, 8, &why), 0);
  checked(l);
  assert_int_equal(totals_of(h).buffers, 0);
  assert_int_equal(ledger_uid_charged(l, 1000), 0);

  assert_int_equal(ledger_buf_free(l, o, x.handle, &why), 0);
  release(l, h);
  release(l, o);
  assert_int_equal(ledger_free_bytes(l), before);
  ledger_destroy(l);

  /* The buddy running dry half-way (three of four blocks found): what was taken goes
   * back, and the handles it consumed are not given again. */
  l = make_ledger(0, 0, false);
  h = holder(l, 1, 1000);
  assert_int_equal(ledger_buf_alloc(l, h, 1 << 20, 0, NULL, &why, &x), 0);
  uint64_t free_now = ledger_free_bytes(l), creates = ledger_mutations(l, LEDGER_OP_BUF_CREATE);
  assert_int_equal(free_now, 3u << 20);
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 1 << 20, 0, 4, &why, b), PP_ENOMEM);
  assert_non_null(strstr(why.msg, "buffer 3 of 4"));
  assert_non_null(strstr(why.msg, "nothing allocated"));
  checked(l);
  assert_int_equal(ledger_mutations(l, LEDGER_OP_BUF_CREATE) - creates, 3);
  assert_int_equal(totals_of(h).buffers, 1);
  assert_int_equal(ledger_free_bytes(l), free_now);
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 1 << 20, 0, 3, &why, b), 0);
  assert_int_equal(b[0].handle, x.handle + 4);
  release(l, h);
  ledger_destroy(l);
}

static void bulk_counts_against_the_buffer_limit_per_buffer(void **state) {
  ledger_t *l = make_ledger(0, 5, false);
  ledger_holder_t *h = holder(l, 1, 1000);
  ledger_buf_info_t b[8];
  ledger_why_t why;
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 4096, 0, 6, &why, b), PP_ELIMIT);
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 4096, 0, 5, &why, b), 0);
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 4096, 0, 1, &why, b), PP_ELIMIT);
  checked(l);
  release(l, h);
  ledger_destroy(l);
}

static void describe_reports_a_held_buffer_and_changes_nothing(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *h = holder(l, 1, 1000), *o = holder(l, 2, 1000);
  ledger_buf_info_t b, d;
  ledger_why_t why;
  uint64_t creates = ledger_mutations(l, LEDGER_OP_HOLD);
  assert_int_equal(ledger_buf_alloc(l, h, 65536, 0, NULL, &why, &b), 0);
  creates = ledger_mutations(l, LEDGER_OP_HOLD) - creates;
  assert_int_equal(creates, 1);
  uint64_t holds = ledger_mutations(l, LEDGER_OP_HOLD);
  assert_int_equal(ledger_buf_describe(l, h, b.handle, &why, &d), 0);
  assert_int_equal(d.handle, b.handle);
  assert_int_equal(d.offset, b.offset);
  assert_int_equal(d.size, b.size);
  assert_int_equal(d.phys, b.phys);
  assert_int_equal(ledger_mutations(l, LEDGER_OP_HOLD), holds);
  assert_int_equal(totals_of(h).buf_refs, 1);
  /* Another session's handle is one this session does not hold. */
  assert_int_equal(ledger_buf_describe(l, o, b.handle, &why, &d), PP_ENOENT);
  assert_int_equal(ledger_buf_describe(l, h, b.handle + 1, &why, &d), PP_ENOENT);
  checked(l);
  release(l, h);
  release(l, o);
  ledger_destroy(l);
}

static void cache_report_is_shown_clamped_to_what_the_holder_holds(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *h = holder(l, 1, 1000);
  ledger_buf_info_t b[4];
  ledger_why_t why;
  assert_int_equal(totals_of(h).cached_buffers, 0);
  assert_int_equal(ledger_buf_alloc_bulk(l, h, 4096, 0, 4, &why, b), 0);
  ledger_holder_set_cached(h, 3, 3 * PG);
  assert_int_equal(totals_of(h).cached_buffers, 3);
  assert_int_equal(totals_of(h).cached_bytes, 3 * PG);
  /* A client that says more than its session holds is shown what it holds. */
  ledger_holder_set_cached(h, 100, 100 * PG);
  assert_int_equal(totals_of(h).cached_buffers, 4);
  assert_int_equal(totals_of(h).cached_bytes, 4 * PG);
  checked(l);
  release(l, h);
  ledger_destroy(l);
}

static void cache_free_is_all_or_nothing_and_names_the_first_bad_offset(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_cache_info_t c1, c2, again, bc1;
  ledger_why_t why;
  uint64_t mine[4], theirs[1], other[1], batch[3];
  ledger_holder_totals_t t;

  assert_int_equal(ledger_cache_open(l, a, "c1", 64, 8, &why, &c1), 0);
  assert_int_equal(ledger_cache_open(l, a, "c2", 128, 64, &why, &c2), 0);
  assert_int_equal(ledger_cache_open(l, a, "c1", 64, 8, &why, &again), 0);
  assert_int_equal(again.id, c1.id);
  assert_int_equal(ledger_cache_open(l, a, "c1", 96, 8, &why, &again), PP_EGEOMETRY);
  assert_int_equal(ledger_cache_open(l, a, "", 64, 8, &why, &again), PP_EINVAL);
  assert_int_equal(ledger_cache_open(l, a, "c3", 64, 24, &why, &again), PP_EINVAL);
  assert_string_equal(why.msg, "align 24 is not a power of two");
  assert_int_equal(ledger_cache_open(l, b, "~1000/c1", 64, 8, &why, &bc1), 0);
  assert_int_equal(bc1.id, c1.id);
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
  assert_int_equal(ledger_cache_free(l, a, c1.id, batch, 3, &why), PP_ENOENT);
  assert_non_null(strstr(why.msg, "(index 1) is not an object this session holds in cache "
                                  "'~1000/c1'"));
  batch[1] = other[0];
  assert_int_equal(ledger_cache_free(l, a, c1.id, batch, 3, &why), PP_EINVAL);
  assert_non_null(strstr(why.msg, "(index 1) belongs to cache"));
  batch[1] = mine[0];
  assert_int_equal(ledger_cache_free(l, a, c1.id, batch, 3, &why), PP_EDOUBLEFREE);
  assert_non_null(strstr(why.msg, "(index 1) appears twice"));
  batch[1] = 12345;
  assert_int_equal(ledger_cache_free(l, a, c1.id, batch, 3, &why), PP_ENOENT);
  assert_non_null(strstr(why.msg, "(index 1) is not an object this session holds"));
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

  assert_int_equal(ledger_cache_open(l, a, "c", 64, 8, &why, &c), 0);
  assert_int_equal(ledger_cache_alloc(l, a, c.id + 1, 1, NULL, &why), PP_ENOENT);
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 2000, NULL, &why), PP_ERANGE);
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 1, NULL, &why), PP_ENOPRIVMEM);
  assert_string_equal(why.msg, "daemon out of private memory");
  checked(l);
  assert_int_equal(totals_of(a).objects, 0);
  release(l, a);
  ledger_destroy(l);
}

static void caches_live_while_someone_has_them_open(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  uint64_t before = ledger_free_bytes(l), offs[100];
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_cache_info_t c, d, e;
  ledger_cache_stats_t cs;
  ledger_why_t why;
  uint64_t m0 = ledger_mutations(l, LEDGER_OP_CACHE_DESTROY);

  assert_int_equal(ledger_cache_open(l, a, "c", 512, 8, &why, &c), 0);
  assert_int_equal(ledger_cache_open(l, a, "c", 512, 8, &why, &c), 0); /* opened twice */
  assert_int_equal(ledger_cache_open(l, b, "~1000/c", 512, 8, &why, &d), 0);
  assert_int_equal(ledger_cache_alloc(l, b, c.id, 100, offs, &why), 0);
  ledger_cache_stats(l, 0, &cs);
  assert_string_equal(cs.name, "~1000/c");
  assert_int_equal(cs.openers, 2);
  assert_int_equal(cs.held, 100);
  assert_int_equal(totals_of(a).caches, 1);
  /* b holds objects: its last open cannot go. */
  assert_int_equal(ledger_cache_close(l, b, c.id, &why), PP_EBUSY);
  assert_non_null(strstr(why.msg, "holds 100 objects of cache '~1000/c'"));
  /* a's two opens go one at a time; b keeps the cache alive. */
  assert_int_equal(ledger_cache_close(l, a, c.id, &why), 0);
  assert_int_equal(ledger_cache_close(l, a, c.id, &why), 0);
  assert_int_equal(ledger_cache_close(l, a, c.id, &why), PP_ENOENT);
  assert_int_equal(ledger_ncaches(l), 1);
  assert_int_equal(ledger_mutations(l, LEDGER_OP_CACHE_DESTROY), m0);
  checked(l);
  /* b frees and closes: the cache goes, its slabs with it. */
  assert_int_equal(ledger_cache_free(l, b, c.id, offs, 100, &why), 0);
  assert_int_equal(ledger_uid_charged(l, 1001), 0);
  assert_int_equal(ledger_cache_close(l, b, c.id, &why), 0);
  assert_int_equal(ledger_ncaches(l), 0);
  assert_int_equal(ledger_mutations(l, LEDGER_OP_CACHE_DESTROY), m0 + 1);
  assert_int_equal(ledger_free_bytes(l), before);
  checked(l);
  /* The name comes back as a new cache, with a new id; the old id only misses. */
  assert_int_equal(ledger_cache_open(l, a, "c", 64, 8, &why, &e), 0);
  assert_true(e.id > c.id);
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 1, offs, &why), PP_ENOENT);
  /* A release drops every open: the cache goes with its last opener. */
  assert_int_equal(ledger_cache_alloc(l, a, e.id, 3, offs, &why), 0);
  release(l, a);
  assert_int_equal(ledger_ncaches(l), 0);
  assert_int_equal(ledger_free_bytes(l), before);
  release(l, b);
  ledger_destroy(l);
}

static void cache_count_is_limited_per_scope_and_in_all(void **state) {
  limits_t lim = {.max_caches_per_uid = 2, .max_caches = 3};
  ledger_t *l = make_ledger_with(&lim);
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_cache_info_t c[4];
  ledger_why_t why;

  assert_int_equal(ledger_cache_open(l, a, "a0", 64, 8, &why, &c[0]), 0);
  assert_int_equal(ledger_cache_open(l, a, "a1", 64, 8, &why, &c[1]), 0);
  assert_int_equal(ledger_cache_open(l, a, "a2", 64, 8, &why, &c[2]), PP_ELIMIT);
  assert_string_equal(why.msg, "~1000/ already has 2 caches (limit 2 per uid)");
  assert_int_equal(ledger_cache_open(l, a, "a1", 64, 8, &why, &c[2]), 0); /* not a new one */
  assert_int_equal(ledger_cache_open(l, b, "b0", 64, 8, &why, &c[2]), 0);
  assert_int_equal(ledger_cache_open(l, b, "b1", 64, 8, &why, &c[3]), PP_ELIMIT);
  assert_string_equal(why.msg, "the daemon has 3 caches (limit 3)");
  /* Opening what exists is no creation, in any scope. */
  assert_int_equal(ledger_cache_open(l, b, "~1000/a0", 64, 8, &why, &c[3]), 0);
  checked(l);
  /* A closed cache makes room again. */
  assert_int_equal(ledger_cache_close(l, a, c[1].id, &why), 0);
  assert_int_equal(ledger_cache_close(l, a, c[1].id, &why), 0);
  assert_int_equal(ledger_cache_open(l, a, "a2", 64, 8, &why, &c[1]), 0);
  checked(l);
  release(l, a);
  release(l, b);
  ledger_destroy(l);
}

static void release_returns_everything_and_free_bytes_come_back(void **state) {
  ledger_t *l = make_ledger(0, 0, false);
  uint64_t before = ledger_free_bytes(l), offs[1024];
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1001);
  ledger_cache_info_t c, bc;
  ledger_buf_info_t x;
  ledger_totals_t t;
  ledger_why_t why;

  assert_int_equal(ledger_buf_alloc(l, a, 100000, 0, "shared", &why, &x), 0);
  assert_int_equal(ledger_buf_lookup(l, b, "~1000/shared", &why, &x), 0);
  assert_int_equal(ledger_buf_alloc(l, a, 4096, 0, NULL, &why, &x), 0);
  assert_int_equal(ledger_cache_open(l, a, "c", 256, 8, &why, &c), 0);
  assert_int_equal(ledger_cache_open(l, b, "~1000/c", 256, 8, &why, &bc), 0);
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 1024, offs, &why), 0);
  assert_int_equal(ledger_cache_alloc(l, b, c.id, 10, offs, &why), 0);
  checked(l);
  release(l, a);
  /* b still holds the shared buffer — and pays for it now — and its objects. */
  assert_int_equal(ledger_buf_lookup(l, b, "~1000/shared", &why, &x), 0);
  assert_int_equal(x.charged_uid, 1001);
  assert_int_equal(ledger_uid_charged(l, 1000), 0);
  assert_int_equal(ledger_uid_charged(l, 1001), 131072 + 10 * 256 + 4096);
  ledger_get_totals(l, &t);
  assert_int_equal(t.nbufs, 1);
  assert_int_equal(t.obj_bytes, 10 * 256);
  assert_int_equal(t.nholders, 1);
  assert_int_equal(t.ncaches, 1);
  release(l, b);
  ledger_get_totals(l, &t);
  assert_int_equal(t.nbufs + t.obj_bytes + t.buf_bytes + t.nholders + t.ncaches, 0);
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
  assert_int_equal(ledger_cache_open(l, a, "c", 64, 8, &why, &c), 0);
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
  ledger_holder_t *a = holder(l, 1, 1000), *b = holder(l, 2, 1000), *o = holder(l, 3, 1001);
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
  assert_int_equal(ledger_buf_lookup(l, o, "~1000/n", &why, &x), 0);
  assert_int_equal(DELTA(LEDGER_OP_HOLD), 2);
  assert_int_equal(DELTA(LEDGER_OP_CHARGE), 0);
  SNAP();
  assert_int_equal(ledger_buf_free(l, a, x.handle, &why), 0);
  assert_int_equal(DELTA(LEDGER_OP_UNHOLD), 1);
  assert_int_equal(DELTA(LEDGER_OP_BUF_DESTROY), 0);
  assert_int_equal(DELTA(LEDGER_OP_OWNER), 0);
  SNAP();
  /* The payer's last holder goes: a charge move is uncharge + charge + owner. */
  assert_int_equal(ledger_buf_free(l, b, x.handle, &why), 0);
  assert_int_equal(DELTA(LEDGER_OP_UNHOLD), 1);
  assert_int_equal(DELTA(LEDGER_OP_UNCHARGE), 1);
  assert_int_equal(DELTA(LEDGER_OP_CHARGE), 1);
  assert_int_equal(DELTA(LEDGER_OP_OWNER), 1);
  SNAP();
  assert_int_equal(ledger_buf_free(l, o, x.handle, &why), 0);
  assert_int_equal(DELTA(LEDGER_OP_UNHOLD), 1);
  assert_int_equal(DELTA(LEDGER_OP_UNPUBLISH), 1);
  assert_int_equal(DELTA(LEDGER_OP_UNCHARGE), 1);
  assert_int_equal(DELTA(LEDGER_OP_BUF_DESTROY), 1);
  SNAP();
  assert_int_equal(ledger_cache_open(l, a, "c", 64, 8, &why, &c), 0);
  assert_int_equal(ledger_cache_open(l, a, "c", 64, 8, &why, &c), 0);
  assert_int_equal(DELTA(LEDGER_OP_CACHE_CREATE), 1);
  assert_int_equal(DELTA(LEDGER_OP_CACHE_OPEN), 2);
  SNAP();
  assert_int_equal(ledger_cache_alloc(l, a, c.id, 3, offs, &why), 0);
  assert_int_equal(DELTA(LEDGER_OP_OBJ_TAKE), 3);
  assert_int_equal(DELTA(LEDGER_OP_CHARGE), 1);
  SNAP();
  release(l, a);
  assert_int_equal(DELTA(LEDGER_OP_OBJ_GIVE), 3);
  assert_int_equal(DELTA(LEDGER_OP_UNCHARGE), 1);
  assert_int_equal(DELTA(LEDGER_OP_CACHE_CLOSE), 1);
  assert_int_equal(DELTA(LEDGER_OP_CACHE_DESTROY), 1);
  release(l, b);
  release(l, o);
#undef SNAP
#undef DELTA
  ledger_destroy(l);
}

/* ---- model-based randomized test ---------------------------------------------------- */

#define NH 4           /* holders at once */
#define NNAMES 6       /* buffer names n0..n5 */
#define NCNAMES 3      /* cache names c0..c2 */
#define NGEO 4         /* geometries; cache name k is opened with geometry k or k + 1 */
#define NSCOPES 5      /* how a name is written: own, ~1000/, ~1002/, ~g500/, ~g501/ */
#define MAXBUFS 600    /* live buffers the model can track */
#define MAXOBJS 8192   /* live objects */
#define MAXCACHES 2048 /* caches ever created in one run */
#define GROUP 500u     /* the shared group; 501 is not one */

static const uid_t model_uid[NH] = {1000, 1000, 1002, 1003}; /* holders 0, 1 share a uid */
static const bool model_member[NH] = {true, true, false, true};
static const uint32_t geo_size[NGEO] = {64, 200, 8, 2049}, geo_align[NGEO] = {8, 64, 4096, 8};

typedef struct mbuf {
  uint64_t handle, offset, size;
  uid_t uid; /* who pays */
  ledger_scope_t scope;
  int name;           /* -1: unnamed */
  uint64_t refs[NH];  /* per holder */
  uint64_t since[NH]; /* when the holder took its first reference (its order) */
} mbuf_t;

typedef struct mcache {
  bool live;
  uint32_t id;
  ledger_scope_t scope;
  int name, geo;
  uint64_t slab_bytes, charge;
  uint64_t opens[NH];
} mcache_t;

typedef struct mobj {
  uint64_t off;
  int holder;
  int cache; /* index into model caches */
} mobj_t;

typedef struct model {
  ledger_t *l;
  uint64_t rng;
  limits_t lim;
  ledger_holder_t *h[NH];
  uint64_t sid[NH];
  uint64_t next_sid, clock;
  mbuf_t bufs[MAXBUFS];
  size_t nbufs;
  mobj_t objs[MAXOBJS];
  size_t nobjs;
  mcache_t cache[MAXCACHES];
  size_t ncache; /* ever created */
  uint32_t last_id;
  uint64_t next_handle;
  uint64_t counts[PP__ERR_MAX];     /* outcomes seen, by -rc */
  uint64_t moves;                   /* charge moves seen */
  uint64_t bulk_allocs, bulk_frees; /* successful alloc_bulk and free_bulk of 2 or more */
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

/* The scope a name written the w-th way has, for holder h. */
static ledger_scope_t scope_of(int h, int w) {
  switch (w) {
  case 0: return LEDGER_SCOPE_USER(model_uid[h]);
  case 1: return LEDGER_SCOPE_USER(1000);
  case 2: return LEDGER_SCOPE_USER(1002);
  case 3: return LEDGER_SCOPE_GROUP(GROUP);
  default: return LEDGER_SCOPE_GROUP(GROUP + 1);
  }
}

static const char *const way_prefix[NSCOPES] = {"", "~1000/", "~1002/", "~g500/", "~g501/"};

static const char *write_name(char *buf, size_t len, int w, char kind, int i) {
  snprintf(buf, len, "%s%c%d", way_prefix[w], kind, i);
  return buf;
}

static bool may_create(int h, ledger_scope_t scope) {
  return scope == LEDGER_SCOPE_USER(model_uid[h]) ||
         (scope == LEDGER_SCOPE_GROUP(GROUP) && model_member[h]);
}

static mcache_t *cache_by_name(model_t *m, ledger_scope_t scope, int name) {
  for (size_t i = 0; i < m->ncache; i++)
    if (m->cache[i].live && m->cache[i].scope == scope && m->cache[i].name == name)
      return &m->cache[i];
  return NULL;
}

static uint64_t uid_objs_in(const model_t *m, uid_t uid, int cache) {
  uint64_t n = 0;
  for (size_t i = 0; i < m->nobjs; i++)
    n += model_uid[m->objs[i].holder] == uid && m->objs[i].cache == cache;
  return n;
}

static uint64_t holder_objs_in(const model_t *m, int h, int cache) {
  uint64_t n = 0;
  for (size_t i = 0; i < m->nobjs; i++)
    n += m->objs[i].holder == h && m->objs[i].cache == cache;
  return n;
}

/* The charge rule, from scratch: blocks paid for, objects at their charge, one slab per
 * cache with an object of the uid. */
static uint64_t uid_charged(const model_t *m, uid_t uid) {
  static bool has[MAXCACHES];
  uint64_t sum = 0;
  memset(has, 0, m->ncache * sizeof has[0]);
  for (size_t i = 0; i < m->nbufs; i++)
    if (m->bufs[i].uid == uid) sum += m->bufs[i].size;
  for (size_t i = 0; i < m->nobjs; i++)
    if (model_uid[m->objs[i].holder] == uid) {
      sum += m->cache[m->objs[i].cache].charge;
      has[m->objs[i].cache] = true;
    }
  for (size_t c = 0; c < m->ncache; c++)
    if (has[c]) sum += m->cache[c].slab_bytes;
  return sum;
}

static bool quota_ok(const model_t *m, uid_t uid, uint64_t bytes) {
  return !m->lim.quota || uid_charged(m, uid) + bytes <= m->lim.quota;
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

static mbuf_t *by_name(model_t *m, ledger_scope_t scope, int name) {
  for (size_t i = 0; i < m->nbufs; i++)
    if (m->bufs[i].name == name && m->bufs[i].scope == scope) return &m->bufs[i];
  return NULL;
}

static mobj_t *obj_at(model_t *m, uint64_t off) {
  for (size_t i = 0; i < m->nobjs; i++)
    if (m->objs[i].off == off) return &m->objs[i];
  return NULL;
}

/* After h's references to b went to zero: the buffer goes, or the charge follows the
 * longest-standing holder when the payer's uid holds it no more. */
static void settle_buf(model_t *m, mbuf_t *b) {
  int first = -1;
  for (int h = 0; h < NH; h++) {
    if (!b->refs[h]) continue;
    if (model_uid[h] == b->uid) return;
    if (first < 0 || b->since[h] < b->since[first]) first = h;
  }
  if (first < 0) {
    *b = m->bufs[--m->nbufs];
    return;
  }
  b->uid = model_uid[first];
  m->moves++;
}

static void drop_obj(model_t *m, mobj_t *o) {
  *o = m->objs[--m->nobjs];
}

static void settle_cache(mcache_t *c) {
  for (int h = 0; h < NH; h++)
    if (c->opens[h]) return;
  c->live = false;
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
  size_t it = 0, live = 0, k = 0;

  checked(m->l);
  ledger_get_totals(m->l, &t);
  for (size_t i = 0; i < m->nbufs; i++)
    buf_bytes += m->bufs[i].size;
  for (size_t i = 0; i < m->nobjs; i++)
    obj_bytes += m->cache[m->objs[i].cache].charge;
  for (size_t c = 0; c < m->ncache; c++)
    live += m->cache[c].live;
  assert_int_equal(t.nbufs, m->nbufs);
  assert_int_equal(t.buf_bytes, buf_bytes);
  assert_int_equal(t.obj_bytes, obj_bytes);
  assert_int_equal(t.nholders, NH);
  assert_int_equal(t.ncaches, live);
  for (int h = 0; h < NH; h++) {
    ledger_holder_totals_t ht = totals_of(m->h[h]);
    uint64_t refs = 0, nb = 0, bb = 0, no = 0, ob = 0, nc = 0;
    for (size_t i = 0; i < m->nbufs; i++)
      if (m->bufs[i].refs[h]) {
        refs += m->bufs[i].refs[h];
        nb++;
        bb += m->bufs[i].size;
      }
    for (size_t i = 0; i < m->nobjs; i++)
      if (m->objs[i].holder == h) {
        no++;
        ob += m->cache[m->objs[i].cache].charge;
      }
    for (size_t c = 0; c < m->ncache; c++)
      nc += m->cache[c].live && m->cache[c].opens[h];
    assert_int_equal(ht.buf_refs, refs);
    assert_int_equal(ht.buffers, nb);
    assert_int_equal(ht.buf_bytes, bb);
    assert_int_equal(ht.objects, no);
    assert_int_equal(ht.obj_bytes, ob);
    assert_int_equal(ht.caches, nc);
    assert_int_equal(ledger_uid_charged(m->l, model_uid[h]), uid_charged(m, model_uid[h]));
  }
  while (ledger_buf_next(m->l, &it, &info)) {
    mbuf_t *b = by_handle(m, info.handle);
    uint32_t nh = 0;
    assert_non_null(b);
    assert_int_equal(info.offset, b->offset);
    assert_int_equal(info.size, b->size);
    assert_int_equal(info.charged_uid, b->uid);
    if (b->name < 0) {
      assert_null(info.qname);
    } else {
      char want[64];
      ledger_scope_prefix(b->scope, want, sizeof want);
      snprintf(want + strlen(want), sizeof want - strlen(want), "n%d", b->name);
      assert_string_equal(info.qname, want);
      assert_true(info.scope == b->scope);
    }
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
  /* Live caches in creation order, each with its openers and objects. */
  assert_int_equal(ledger_ncaches(m->l), live);
  for (size_t c = 0; c < m->ncache; c++) {
    ledger_cache_stats_t cs;
    uint32_t openers = 0;
    char want[64];
    if (!m->cache[c].live) continue;
    ledger_cache_stats(m->l, k++, &cs);
    assert_int_equal(cs.slab.id, m->cache[c].id);
    ledger_scope_prefix(m->cache[c].scope, want, sizeof want);
    snprintf(want + strlen(want), sizeof want - strlen(want), "c%d", m->cache[c].name);
    assert_string_equal(cs.name, want);
    for (int h = 0; h < NH; h++)
      openers += m->cache[c].opens[h] != 0;
    assert_int_equal(cs.openers, openers);
    assert_int_equal(cs.held, holder_objs_in(m, 0, (int)c) + holder_objs_in(m, 1, (int)c) +
                                  holder_objs_in(m, 2, (int)c) + holder_objs_in(m, 3, (int)c));
  }
}

/* No two things the model says are held overlap. */
static void assert_outside_buffers(model_t *m, uint64_t off, uint64_t len) {
  for (size_t i = 0; i < m->nbufs; i++)
    assert_true(off + len <= m->bufs[i].offset || off >= m->bufs[i].offset + m->bufs[i].size);
}

static void op_alloc(model_t *m) {
  int h = (int)below(m, NH), name = below(m, 3) ? -1 : (int)below(m, NNAMES);
  int w = below(m, 2) ? 0 : (int)below(m, NSCOPES);
  uint64_t size = below(m, 4) ? 1 + below(m, 16384) : 1 + below(m, 300000);
  unsigned flags = below(m, 8) == 0 ? LEDGER_ALLOC_CONTIG : 0;
  ledger_scope_t scope = scope_of(h, w);
  char nm[32];
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
  else if (name >= 0 && !may_create(h, scope))
    want = PP_EPERM;
  else if (name >= 0 && by_name(m, scope, name))
    want = PP_EEXIST;
  else if (m->lim.max_buffers && holder_refs(m, h) >= m->lim.max_buffers)
    want = PP_ELIMIT;
  else if (!quota_ok(m, model_uid[h], bsize))
    want = PP_EQUOTA;
  if (!want && m->nbufs == MAXBUFS) return;
  ledger_buddy_stats(m->l, &bs);
  rc = ledger_buf_alloc(m->l, m->h[h], size, flags,
                        name < 0 ? NULL : write_name(nm, sizeof nm, w, 'n', name), &why, &info);
  if (!want && (rc == PP_ENOMEM || rc == PP_ENOCONTIG)) {
    /* The model cannot place blocks: accept "no room" only when there was none. */
    if (rc == PP_ENOMEM) assert_true(bs.largest_free < bsize);
    if (rc == PP_ENOCONTIG) assert_true(flags & LEDGER_ALLOC_CONTIG);
    m->counts[-rc]++;
    return;
  }
  expect(m, rc, want, "alloc");
  if (rc == PP_EPERM) assert_non_null(strstr(why.msg, "cannot publish"));
  if (rc) return;
  assert_int_equal(info.handle, m->next_handle);
  assert_int_equal(info.size, bsize);
  assert_int_equal(info.offset % bsize, 0);
  assert_true(info.offset + bsize <= REGION);
  if (flags & LEDGER_ALLOC_CONTIG) assert_true(info.contiguous);
  if (name >= 0) {
    /* A reply names a buffer of the caller's own scope as published, others qualified. */
    char reply[32];
    size_t n = scope == LEDGER_SCOPE_USER(model_uid[h])
                   ? 0
                   : ledger_scope_prefix(scope, reply, sizeof reply);
    snprintf(reply + n, sizeof reply - n, "n%d", name);
    assert_string_equal(ledger_buf_name_for(&info, model_uid[h]), reply);
  }
  assert_outside_buffers(m, info.offset, bsize);
  for (size_t i = 0; i < m->nobjs; i++)
    assert_true(m->objs[i].off < info.offset || m->objs[i].off >= info.offset + bsize);
  m->next_handle++;
  m->bufs[m->nbufs] = (mbuf_t){.handle = info.handle,
                               .offset = info.offset,
                               .size = bsize,
                               .uid = model_uid[h],
                               .scope = scope,
                               .name = name};
  m->bufs[m->nbufs].refs[h] = 1;
  m->bufs[m->nbufs++].since[h] = ++m->clock;
}

static void op_lookup(model_t *m) {
  int h = (int)below(m, NH), name = (int)below(m, NNAMES), w = (int)below(m, NSCOPES);
  bool empty = below(m, 40) == 0;
  mbuf_t *b = empty ? NULL : by_name(m, scope_of(h, w), name);
  ledger_buf_info_t info;
  ledger_why_t why;
  char nm[32];
  int want = 0, rc;

  if (empty)
    want = PP_EINVAL;
  else if (!b)
    want = PP_ENOENT;
  else if (m->lim.max_buffers && holder_refs(m, h) >= m->lim.max_buffers)
    want = PP_ELIMIT;
  rc = ledger_buf_lookup(m->l, m->h[h], empty ? "" : write_name(nm, sizeof nm, w, 'n', name),
                         &why, &info);
  expect(m, rc, want, "lookup");
  if (rc) return;
  assert_int_equal(info.handle, b->handle);
  if (!b->refs[h]++) b->since[h] = ++m->clock;
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
  want = b && b->refs[h] ? 0 : PP_ENOENT; /* whoever else holds it */
  rc = ledger_buf_free(m->l, m->h[h], handle, &why);
  expect(m, rc, want, "free");
  if (rc == PP_ENOENT) {
    char msg[80];
    snprintf(msg, sizeof msg, "this session holds no buffer with handle %" PRIu64, handle);
    assert_string_equal(why.msg, msg);
  }
  if (rc) return;
  if (--b->refs[h] == 0) settle_buf(m, b);
}

/* alloc_bulk: the checks of alloc for the batch as a whole, then count buffers in handle
 * order, or nothing.  The buddy running dry half-way undoes the blocks taken, whose handles
 * stay consumed: as many as the free memory could be split into. */
static void op_alloc_bulk(model_t *m) {
  int h = (int)below(m, NH);
  uint32_t count = 1 + (uint32_t)below(m, 8);
  uint64_t size = 1 + below(m, below(m, 4) ? 8192 : 40000), bsize = PG, avail = 0;
  unsigned flags = below(m, 8) == 0 ? LEDGER_ALLOC_CONTIG : 0, k = 0;
  ledger_buf_info_t info[LEDGER_OBJECTS_MAX + 1];
  buddy_stats_t bs;
  ledger_why_t why;
  int want = 0, rc;

  if (below(m, 50) == 0) flags |= 0x10;
  if (below(m, 50) == 0) size = 0;
  if (below(m, 50) == 0) count = below(m, 2) ? 0 : LEDGER_OBJECTS_MAX + 1;
  if (below(m, 100) == 0) size = REGION + 1;
  while (bsize < size)
    bsize *= 2, k++;
  if (bsize > PG) flags &= ~LEDGER_ALLOC_CONTIG; /* machine-dependent: see op_alloc */
  if (flags & ~3u)
    want = PP_EINVAL;
  else if (size == 0)
    want = PP_EINVAL;
  else if (count == 0 || count > LEDGER_OBJECTS_MAX)
    want = PP_ERANGE;
  else if (size > REGION)
    want = PP_ERANGE;
  else if (m->lim.max_buffers && holder_refs(m, h) + count > m->lim.max_buffers)
    want = PP_ELIMIT;
  else if (!quota_ok(m, model_uid[h], bsize * count))
    want = PP_EQUOTA;
  if (!want && m->nbufs + count > MAXBUFS) return;
  ledger_buddy_stats(m->l, &bs);
  for (unsigned o = k; o < BUDDY_NR_ORDERS; o++)
    avail += bs.nr_free[o] << (o - k);
  rc = ledger_buf_alloc_bulk(m->l, m->h[h], size, flags, count, &why, info);
  if (!want && rc == PP_ENOMEM) {
    assert_true(avail < count);
    assert_non_null(strstr(why.msg, "nothing allocated"));
    m->next_handle += avail;
    m->counts[-rc]++;
    return;
  }
  expect(m, rc, want, "alloc_bulk");
  if (rc) return;
  m->bulk_allocs += count > 1;
  for (uint32_t i = 0; i < count; i++) {
    assert_int_equal(info[i].handle, m->next_handle);
    assert_int_equal(info[i].size, bsize);
    assert_int_equal(info[i].offset % bsize, 0);
    assert_true(info[i].contiguous || bsize > PG);
    assert_outside_buffers(m, info[i].offset, bsize);
    for (size_t j = 0; j < m->nobjs; j++)
      assert_true(m->objs[j].off < info[i].offset || m->objs[j].off >= info[i].offset + bsize);
    m->next_handle++;
    m->bufs[m->nbufs] = (mbuf_t){.handle = info[i].handle,
                                 .offset = info[i].offset,
                                 .size = bsize,
                                 .uid = model_uid[h],
                                 .name = -1};
    m->bufs[m->nbufs].refs[h] = 1;
    m->bufs[m->nbufs++].since[h] = ++m->clock;
  }
}

/* free_bulk: every handle must be held, as often as it is listed; the first that is not
 * is named with its index and nothing is freed. */
static void op_free_bulk(model_t *m) {
  int h = (int)below(m, NH);
  size_t n = below(m, 7), bad = SIZE_MAX;
  uint64_t handles[8], used[8] = {0};
  ledger_why_t why;
  int want = 0, rc;

  size_t mine[MAXBUFS], nmine = 0;
  for (size_t i = 0; i < m->nbufs; i++)
    if (m->bufs[i].refs[h]) mine[nmine++] = i;
  for (size_t i = 0; i < n; i++) {
    uint64_t r = below(m, 10);
    if (r < 6 && nmine)
      handles[i] = m->bufs[mine[below(m, nmine)]].handle; /* mostly its own */
    else if (r < 7 && m->nbufs)
      handles[i] = m->bufs[below(m, m->nbufs)].handle;
    else if (r < 9 && i > 0)
      handles[i] = handles[below(m, i)]; /* listed twice */
    else
      handles[i] = below(m, m->next_handle + 3);
  }
  for (size_t i = 0; i < n && bad == SIZE_MAX; i++) {
    mbuf_t *b = by_handle(m, handles[i]);
    uint64_t before = 0;
    for (size_t j = 0; j < i; j++)
      before += handles[j] == handles[i];
    used[i] = before + 1;
    if (!b || b->refs[h] < used[i]) bad = i;
  }
  if (bad != SIZE_MAX) want = PP_ENOENT;
  rc = ledger_buf_free_bulk(m->l, m->h[h], handles, n, &why);
  expect(m, rc, want, "free_bulk");
  if (rc == PP_ENOENT) {
    char msg[80];
    snprintf(msg, sizeof msg, "handle %" PRIu64 " (index %zu)", handles[bad], bad);
    assert_non_null(strstr(why.msg, msg));
  }
  if (rc) return;
  m->bulk_frees += n > 1;
  for (size_t i = 0; i < n; i++) {
    mbuf_t *b = by_handle(m, handles[i]);
    if (--b->refs[h] == 0) settle_buf(m, b);
  }
}

/* A cache id for h: mostly one it has open, sometimes one of another holder's, a
 * destroyed one, or one that never was. */
static uint32_t pick_cache_id(model_t *m, int h, mcache_t **ret) {
  uint32_t id = m->last_id + 1 + (uint32_t)below(m, 5);
  mcache_t *open[MAXCACHES];
  size_t n = 0;

  *ret = NULL;
  for (size_t i = 0; i < m->ncache; i++)
    if (m->cache[i].live && m->cache[i].opens[h]) open[n++] = &m->cache[i];
  if (n && below(m, 8)) {
    *ret = open[below(m, n)];
    return (*ret)->id;
  }
  if (m->ncache && below(m, 2)) id = m->cache[below(m, m->ncache)].id;
  /* Whatever was drawn, the model's cache for h is one it has open. */
  for (size_t i = 0; i < n; i++)
    if (open[i]->id == id) *ret = open[i];
  return id;
}

static void op_cache_open(model_t *m) {
  int h = (int)below(m, NH), name = (int)below(m, NCNAMES);
  int w = below(m, 2) ? 0 : (int)below(m, NSCOPES), g = name + (int)below(m, 2);
  bool bad_align = below(m, 40) == 0;
  ledger_scope_t scope = scope_of(h, w);
  mcache_t *c = cache_by_name(m, scope, name);
  size_t live = 0, in_scope = 0;
  ledger_cache_info_t info;
  ledger_why_t why;
  char nm[32];
  int want = 0, rc;

  for (size_t i = 0; i < m->ncache; i++)
    if (m->cache[i].live) {
      live++;
      in_scope += m->cache[i].scope == scope;
    }
  if (bad_align)
    want = PP_EINVAL;
  else if (c)
    want = c->geo == g ? 0 : PP_EGEOMETRY;
  else if (!may_create(h, scope))
    want = PP_EPERM;
  else if (m->lim.max_caches_per_uid && in_scope >= m->lim.max_caches_per_uid)
    want = PP_ELIMIT;
  else if (m->lim.max_caches && live >= m->lim.max_caches)
    want = PP_ELIMIT;
  if (!want && !c && m->ncache == MAXCACHES) return;
  rc = ledger_cache_open(m->l, m->h[h], write_name(nm, sizeof nm, w, 'c', name), geo_size[g],
                         bad_align ? 3 : geo_align[g], &why, &info);
  expect(m, rc, want, "cache_open");
  if (rc) return;
  if (!c) {
    assert_true(info.id > m->last_id || (m->ncache == 0 && info.id == m->last_id));
    m->last_id = info.id;
    c = &m->cache[m->ncache++];
    *c = (mcache_t){.live = true,
                    .id = info.id,
                    .scope = scope,
                    .name = name,
                    .geo = g,
                    .slab_bytes = info.slab_bytes,
                    .charge = info.slab_bytes / info.objs_per_slab};
    assert_true(c->charge >= stride_of(geo_size[g], geo_align[g]));
  }
  assert_int_equal(info.id, c->id);
  assert_int_equal(info.obj_charge, c->charge);
  c->opens[h]++;
}

static void op_cache_close(model_t *m) {
  int h = (int)below(m, NH);
  mcache_t *c;
  uint32_t id = pick_cache_id(m, h, &c);
  ledger_why_t why;
  int want = 0, rc;

  if (!c)
    want = PP_ENOENT;
  else if (c->opens[h] == 1 && holder_objs_in(m, h, (int)(c - m->cache)))
    want = PP_EBUSY;
  rc = ledger_cache_close(m->l, m->h[h], id, &why);
  expect(m, rc, want, "cache_close");
  if (rc == PP_ENOENT) {
    char msg[40];
    snprintf(msg, sizeof msg, "no cache with id %u", id);
    assert_string_equal(why.msg, msg);
  }
  if (rc) return;
  c->opens[h]--;
  settle_cache(c);
}

static void op_cache_alloc(model_t *m) {
  int h = (int)below(m, NH);
  mcache_t *c;
  uint32_t id = pick_cache_id(m, h, &c), count = 1 + (uint32_t)below(m, 64);
  uint64_t offs[LEDGER_OBJECTS_MAX], bytes = 0;
  bool room = below(m, 30) != 0;
  ledger_why_t why;
  int want = 0, rc;

  if (below(m, 40) == 0) count = below(m, 2) ? 0 : LEDGER_OBJECTS_MAX + 1;
  if (c) {
    bytes = (uint64_t)count * c->charge;
    if (!uid_objs_in(m, model_uid[h], (int)(c - m->cache))) bytes += c->slab_bytes;
  }
  if (!c)
    want = PP_ENOENT;
  else if (count == 0 || count > LEDGER_OBJECTS_MAX)
    want = PP_ERANGE;
  else if (!quota_ok(m, model_uid[h], bytes))
    want = PP_EQUOTA;
  else if (!room)
    want = PP_ENOPRIVMEM;
  if (!want && m->nobjs + count > MAXOBJS) return;
  rc = ledger_cache_alloc(m->l, m->h[h], id, count, room ? offs : NULL, &why);
  if (!want && rc == PP_ENOMEM) {
    /* Only when the buddy has no block left for another slab. */
    buddy_stats_t bs;
    ledger_buddy_stats(m->l, &bs);
    assert_true(bs.largest_free < c->slab_bytes);
    m->counts[-rc]++;
    return;
  }
  expect(m, rc, want, "cache_alloc");
  if (rc) return;
  for (uint32_t i = 0; i < count; i++) {
    assert_null(obj_at(m, offs[i]));
    assert_int_equal(offs[i] % geo_align[c->geo], 0);
    assert_outside_buffers(m, offs[i], geo_size[c->geo]);
    m->objs[m->nobjs++] = (mobj_t){.off = offs[i], .holder = h, .cache = (int)(c - m->cache)};
  }
}

static void op_cache_free(model_t *m) {
  int h = (int)below(m, NH);
  mcache_t *c;
  uint32_t id = pick_cache_id(m, h, &c);
  int ci = c ? (int)(c - m->cache) : -1;
  uint64_t offs[64];
  size_t n = 0, want_index = 0;
  int want = 0, rc;
  ledger_why_t why;

  for (size_t i = 0; i < m->nobjs && n < 1 + below(m, 40); i++)
    if (m->objs[i].holder == h && m->objs[i].cache == ci && below(m, 2))
      offs[n++] = m->objs[i].off;
  /* Now and then, something that must be refused. */
  if (below(m, 6) == 0 && n < 64) {
    size_t at = below(m, n + 1);
    uint64_t bad;
    switch (below(m, 4)) {
    case 0: bad = 4096 * below(m, 1024) + 8; break;                      /* probably nobody's */
    case 1: bad = m->nobjs ? m->objs[below(m, m->nobjs)].off : 1; break; /* anybody's */
    case 2: bad = n ? offs[below(m, n)] : 3; break;                      /* a duplicate */
    default: bad = 1; break;
    }
    memmove(&offs[at + 1], &offs[at], (n - at) * sizeof *offs);
    offs[at] = bad;
    n++;
  }
  /* The model's verdict: the first bad offset, in order. */
  if (!c) {
    want = PP_ENOENT;
  } else {
    for (size_t i = 0; i < n && !want; i++) {
      mobj_t *o = obj_at(m, offs[i]);
      if (!o || o->holder != h) {
        want = PP_ENOENT; /* nobody's or someone else's: one answer */
      } else if (o->cache != ci) {
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
  if (rc && c) {
    char at[48];
    snprintf(at, sizeof at, "%" PRIu64 " (index %zu)", offs[want_index], want_index);
    assert_non_null(strstr(why.msg, at));
    if (rc == PP_ENOENT)
      assert_non_null(strstr(why.msg, "is not an object this session holds"));
  }
  if (rc) return;
  for (size_t i = 0; i < n; i++)
    drop_obj(m, obj_at(m, offs[i]));
}

static void new_holder(model_t *m, int h) {
  ledger_ident_t id;
  const gid_t g = GROUP;
  m->sid[h] = m->next_sid++;
  id = (ledger_ident_t){.session_id = m->sid[h], .pid = 1, .uid = model_uid[h]};
  assert_int_equal(ledger_holder_create(m->l, &id, &m->h[h]), 0);
  assert_int_equal(ledger_holder_set_groups(m->l, m->h[h], &g, model_member[h] ? 1 : 0), 0);
}

/* The holder goes (a disconnect) and a new session takes its place. */
static void op_release(model_t *m) {
  int h = (int)below(m, NH);

  ledger_holder_release(m->l, m->h[h]);
  for (size_t i = m->nbufs; i-- > 0;)
    if (m->bufs[i].refs[h]) {
      m->bufs[i].refs[h] = 0;
      settle_buf(m, &m->bufs[i]);
    }
  for (size_t i = m->nobjs; i-- > 0;)
    if (m->objs[i].holder == h) drop_obj(m, &m->objs[i]);
  for (size_t c = 0; c < m->ncache; c++)
    if (m->cache[c].live && m->cache[c].opens[h]) {
      m->cache[c].opens[h] = 0;
      settle_cache(&m->cache[c]);
    }
  new_holder(m, h);
}

static int map_sum(void *ctx, const ledger_block_t *b) {
  uint64_t *sum = ctx;
  if (b->offset != *sum) return PP_ECORRUPT; /* in offset order, no gaps */
  *sum += b->size;
  return 0;
}

static void run_model(uint64_t seed, limits_t lim, unsigned ops) {
  model_t *m = calloc(1, sizeof *m);
  uint64_t before, sum = 0;
  ledger_shrink_result_t sr;

  assert_non_null(m);
  lim.zero_on_free = (seed & 1) != 0;
  lim.shared = GROUP;
  m->l = make_ledger_with(&lim);
  m->rng = seed * 0x9e3779b97f4a7c15ull + 1;
  m->lim = lim;
  m->next_handle = 1;
  m->next_sid = 1;
  before = ledger_free_bytes(m->l);
  for (int h = 0; h < NH; h++)
    new_holder(m, h);

  for (unsigned i = 0; i < ops; i++) {
    uint64_t r = below(m, 100);
    if (below(m, 10) == 0)
      below(m, 2) ? op_alloc_bulk(m) : op_free_bulk(m);
    else if (r < 20)
      op_alloc(m);
    else if (r < 30)
      op_lookup(m);
    else if (r < 45)
      op_free(m);
    else if (r < 55)
      op_cache_open(m);
    else if (r < 60)
      op_cache_close(m);
    else if (r < 77)
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
  assert_true(m->counts[-PP_ENOPRIVMEM] > 0 && m->counts[-PP_EGEOMETRY] > 0);
  assert_true(m->counts[-PP_EBUSY] > 0);
  assert_true(m->moves > 0);
  assert_true(m->bulk_allocs > 0 && m->bulk_frees > 0);
  if (lim.quota) assert_true(m->counts[-PP_EQUOTA] > 0);
  if (lim.max_buffers || lim.max_caches || lim.max_caches_per_uid)
    assert_true(m->counts[-PP_ELIMIT] > 0);
  printf("seed %" PRIu64 ": ok %" PRIu64 ", ENOMEM %" PRIu64 ", EQUOTA %" PRIu64
         ", ELIMIT %" PRIu64 ", EPERM %" PRIu64 ", EBUSY %" PRIu64 ", charge moves %" PRIu64
         ", caches made %zu, bulk allocs %" PRIu64 ", bulk frees %" PRIu64 "\n",
         seed, m->counts[0], m->counts[-PP_ENOMEM], m->counts[-PP_EQUOTA],
         m->counts[-PP_ELIMIT], m->counts[-PP_EPERM], m->counts[-PP_EBUSY], m->moves, m->ncache,
         m->bulk_allocs, m->bulk_frees);

  /* With every holder gone, every cache went too and the region is whole again. */
  for (int h = 0; h < NH; h++)
    ledger_holder_release(m->l, m->h[h]);
  checked(m->l);
  assert_int_equal(ledger_ncaches(m->l), 0);
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
  unsigned ops = scaled(PP_DEBUG >= 3 ? 3000 : 12000);
  /* Unlimited; a tight quota and cache limits; a tight buffer limit; a region that fills. */
  run_model(1, (limits_t){0}, ops);
  run_model(2, (limits_t){.quota = 512 * KIB, .max_caches_per_uid = 2, .max_caches = 5}, ops);
  run_model(3, (limits_t){.max_buffers = 20, .max_caches_per_uid = 3}, ops);
  run_model(4, (limits_t){.quota = 1024 * KIB, .max_buffers = 8, .max_caches = 4}, ops);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(alloc_rounds_up_to_a_block_charges_it_and_free_gives_it_back),
      cmocka_unit_test(refusals_say_why_and_change_nothing),
      cmocka_unit_test(names_parse_one_way_whatever_they_contain),
      cmocka_unit_test(names_are_scoped_by_user_so_nobody_can_squat_them),
      cmocka_unit_test(shared_group_scope_takes_names_from_members_only),
      cmocka_unit_test(another_sessions_handle_looks_exactly_like_a_dead_one),
      cmocka_unit_test(named_buffer_lives_until_its_last_reference_goes),
      cmocka_unit_test(charge_moves_to_the_longest_standing_holder_when_its_payer_lets_go),
      cmocka_unit_test(quota_counts_buffers_and_objects_per_uid),
      cmocka_unit_test(objects_cost_at_most_twice_their_charge_in_every_geometry),
      cmocka_unit_test(buffer_limit_counts_references),
      cmocka_unit_test(alloc_bulk_and_free_bulk_are_all_or_nothing),
      cmocka_unit_test(bulk_counts_against_the_buffer_limit_per_buffer),
      cmocka_unit_test(describe_reports_a_held_buffer_and_changes_nothing),
      cmocka_unit_test(cache_report_is_shown_clamped_to_what_the_holder_holds),
      cmocka_unit_test(cache_free_is_all_or_nothing_and_names_the_first_bad_offset),
      cmocka_unit_test(cache_alloc_without_room_refuses_bad_requests_for_their_own_reason),
      cmocka_unit_test(caches_live_while_someone_has_them_open),
      cmocka_unit_test(cache_count_is_limited_per_scope_and_in_all),
      cmocka_unit_test(release_returns_everything_and_free_bytes_come_back),
      cmocka_unit_test(zero_flag_and_zero_on_free_clear_the_memory),
      cmocka_unit_test(every_ownership_change_is_one_counted_primitive),
      cmocka_unit_test(random_calls_agree_with_a_model_of_who_holds_what),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
