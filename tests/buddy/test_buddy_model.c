/*
 * test_buddy_model.c — model-based randomized test of the buddy allocator.
 *
 * The model is the simplest thing that can be right: one bit per 4 KiB page (allocated or
 * not) and the list of live blocks.  Because a fully coalesced buddy system has a free
 * block of order >= k exactly when some naturally aligned 2^k-page range inside the region
 * is entirely free (and the block holding a free page p is the largest aligned free range
 * around p), the model predicts every outcome exactly: success or the precise error code of
 * alloc (ENOMEM / ENOCONTIG / ERANGE), free (ENOTBLOCK / EDOUBLEFREE / ERANGE), reserve
 * (EBUSY / EINVAL / ERANGE) and block_order.  Every result is checked against it, the
 * counters after every operation, buddy_check() periodically (and after every state change
 * in PP_DEBUG=3 builds, through PP_VALIDATE), and at the end, after everything is freed,
 * only the region's top-level blocks may remain.
 *
 * The operation mix alternates between filling and draining phases so that the allocator
 * spends time both nearly empty and full (where ENOMEM and ENOCONTIG happen).
 *
 * Scale: PP_TEST_SCALE=N multiplies the operation counts (soaks).  Under PP_DEBUG=3 every
 * operation runs the O(pages) validator, so the regions and counts are smaller there.
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

#include "buddy.h"

#define PG BUDDY_MIN_SIZE

typedef struct model {
  uint64_t npages;
  unsigned max_order;
  unsigned page_order; /* region page = 2^page_order small pages */
  uint64_t *bits;      /* 1 = allocated; bits past npages are set */
  uint64_t nwords;
  uint64_t *live_off; /* live blocks, unordered */
  unsigned *live_order;
  uint64_t nlive;
  uint32_t *start_of; /* [npages]: index+1 of the live block starting here, 0 if none */
  uint64_t free_pages;
  uint8_t *brk; /* [region pages]: not physically consecutive with the previous */
  uint64_t rng;
} model_t;

static uint64_t rnd(model_t *m) { /* xorshift64* */
  m->rng ^= m->rng >> 12;
  m->rng ^= m->rng << 25;
  m->rng ^= m->rng >> 27;
  return m->rng * 2685821657736338717ull;
}

static bool bit(const model_t *m, uint64_t p) {
  return (m->bits[p >> 6] >> (p & 63)) & 1;
}

static void set_range(model_t *m, uint64_t s, uint64_t n, bool v) {
  for (uint64_t p = s; p < s + n; p++) {
    if (v)
      m->bits[p >> 6] |= 1ull << (p & 63);
    else
      m->bits[p >> 6] &= ~(1ull << (p & 63));
  }
}

/* All of [s, s+n) inside the region and free. */
static bool range_free(const model_t *m, uint64_t s, uint64_t n) {
  if (s >= m->npages || n > m->npages - s) return false;
  uint64_t p = s, end = s + n;
  while (p < end) {
    if ((p & 63) == 0 && end - p >= 64) {
      if (m->bits[p >> 6]) return false;
      p += 64;
    } else {
      if (bit(m, p)) return false;
      p++;
    }
  }
  return true;
}

static bool fake_contig(void *ctx, uint64_t off, uint64_t len) {
  const model_t *m = ctx;
  uint64_t rp = PG << m->page_order;
  for (uint64_t pg = off / rp + 1; pg * rp < off + len; pg++)
    if (m->brk[pg]) return false;
  return true;
}

/* Aligned positions where a free 2^k range starts, within one 64-page word (k < 6). */
static const uint64_t aligned_mask[6] = {~0ull,
                                         0x5555555555555555ull,
                                         0x1111111111111111ull,
                                         0x0101010101010101ull,
                                         0x0001000100010001ull,
                                         0x0000000100000001ull};

/* Is any aligned free 2^k range there (contig: and physically contiguous)? */
static bool model_has_range(const model_t *m, unsigned k, bool contig) {
  uint64_t n = 1ull << k;
  if (contig) {
    for (uint64_t s = 0; s + n <= m->npages; s += n)
      if (range_free(m, s, n) && fake_contig((void *)m, s * PG, n * PG)) return true;
    return false;
  }
  if (k < 6) {
    for (uint64_t w = 0; w < m->nwords; w++) {
      uint64_t f = ~m->bits[w];
      for (unsigned i = 0; i < k; i++)
        f &= f >> (1u << i);
      if (f & aligned_mask[k]) return true;
    }
    return false;
  }
  for (uint64_t s = 0; s + n <= m->npages; s += n)
    if (range_free(m, s, n)) return true;
  return false;
}

static void live_add(model_t *m, uint64_t off, unsigned order) {
  uint64_t p = off / PG;
  m->live_off[m->nlive] = off;
  m->live_order[m->nlive] = order;
  m->start_of[p] = (uint32_t)(m->nlive + 1);
  m->nlive++;
  set_range(m, p, 1ull << order, true);
  m->free_pages -= 1ull << order;
}

static void live_remove(model_t *m, uint64_t i) {
  uint64_t p = m->live_off[i] / PG;
  unsigned order = m->live_order[i];
  set_range(m, p, 1ull << order, false);
  m->free_pages += 1ull << order;
  m->start_of[p] = 0;
  m->nlive--;
  if (i != m->nlive) {
    m->live_off[i] = m->live_off[m->nlive];
    m->live_order[i] = m->live_order[m->nlive];
    m->start_of[m->live_off[i] / PG] = (uint32_t)(i + 1);
  }
}

#define CHECK_RC(got, want, ...)                                                               \
  do {                                                                                         \
    if ((got) != (want)) {                                                                     \
      char ctx_[160];                                                                          \
      snprintf(ctx_, sizeof ctx_, __VA_ARGS__);                                                \
      fail_msg("op %" PRIu64 " %s: got %s, model says %s", op, ctx_, pp_err_name(got),         \
               pp_err_name(want));                                                             \
    }                                                                                          \
  } while (0)

static void verify_valid(buddy_t *b, uint64_t op) {
  char why[256] = "";
  if (buddy_check(b, why, sizeof why) != 0)
    fail_msg("op %" PRIu64 ": buddy_check: %s", op, why);
}

static void do_alloc(model_t *m, buddy_t *b, uint64_t op) {
  /* Mostly small orders, like real traffic; now and then one too big for the region. */
  unsigned r = (unsigned)(rnd(m) % 100), k;
  if (r < 40)
    k = 0;
  else if (r < 60)
    k = 1;
  else if (r < 72)
    k = 2;
  else if (r < 98)
    k = (unsigned)(rnd(m) % (m->max_order + 1));
  else
    k = m->max_order + 1 + (unsigned)(rnd(m) % 3);
  unsigned flags = rnd(m) % 4 == 0 ? BUDDY_CONTIG : 0;
  int want;
  if (k > m->max_order)
    want = PP_ERANGE;
  else if (!model_has_range(m, k, false))
    want = PP_ENOMEM;
  else if ((flags & BUDDY_CONTIG) && k > m->page_order && !model_has_range(m, k, true))
    want = PP_ENOCONTIG;
  else
    want = 0;
  uint64_t off = UINT64_MAX;
  int rc = buddy_alloc(b, k, flags, &off);
  CHECK_RC(rc, want, "alloc order %u flags %u", k, flags);
  if (rc != 0) {
    assert_int_equal(off, UINT64_MAX);
    return;
  }
  uint64_t n = 1ull << k;
  if (off % (n * PG) != 0 || !range_free(m, off / PG, n))
    fail_msg("op %" PRIu64 ": alloc order %u gave 0x%" PRIx64 ", not an aligned free range", op,
             k, off);
  if ((flags & BUDDY_CONTIG) && !fake_contig(m, off, n * PG))
    fail_msg("op %" PRIu64 ": contiguous alloc gave a discontiguous block", op);
  live_add(m, off, k);
}

static void do_free_live(model_t *m, buddy_t *b, uint64_t op) {
  if (!m->nlive) return;
  uint64_t i = rnd(m) % m->nlive;
  int rc = buddy_free(b, m->live_off[i]);
  CHECK_RC(rc, 0, "free of live block 0x%" PRIx64, m->live_off[i]);
  live_remove(m, i);
}

static void do_reserve(model_t *m, buddy_t *b, uint64_t op) {
  unsigned k = (unsigned)(rnd(m) % (m->max_order + 2));
  if (rnd(m) % 2) k = (unsigned)(rnd(m) % 3);
  uint64_t p = rnd(m) % (m->npages + 8);
  if (rnd(m) % 8) p &= ~((1ull << k) - 1); /* mostly aligned */
  uint64_t off = p * PG + (rnd(m) % 32 == 0 ? 512 : 0);
  int want;
  if (k > BUDDY_NR_ORDERS - 1)
    want = PP_ERANGE;
  else if (off % PG)
    want = PP_EINVAL;
  else if (p >= m->npages || (1ull << k) > m->npages - p)
    want = PP_ERANGE;
  else if (p & ((1ull << k) - 1))
    want = PP_EINVAL;
  else if (!range_free(m, p, 1ull << k))
    want = PP_EBUSY;
  else
    want = 0;
  int rc = buddy_reserve(b, off, k);
  CHECK_RC(rc, want, "reserve 0x%" PRIx64 " order %u", off, k);
  if (rc == 0) live_add(m, off, k);
}

/* A free at a random offset: the model knows what it must answer. */
static void do_free_random(model_t *m, buddy_t *b, uint64_t op) {
  uint64_t p = rnd(m) % (m->npages + 4);
  uint64_t off = p * PG + (rnd(m) % 16 == 0 ? 8 : 0);
  int want;
  if (off >= m->npages * PG)
    want = PP_ERANGE;
  else if (off % PG)
    want = PP_ENOTBLOCK;
  else if (m->start_of[p])
    want = 0;
  else if (bit(m, p))
    want = PP_ENOTBLOCK;
  else {
    /* The free block holding p is the largest aligned free range around it. */
    unsigned j = 0;
    while (j < m->max_order && range_free(m, p & ~((2ull << j) - 1), 2ull << j))
      j++;
    want = (p & ((1ull << j) - 1)) == 0 ? PP_EDOUBLEFREE : PP_ENOTBLOCK;
  }
  int rc = buddy_free(b, off);
  CHECK_RC(rc, want, "free 0x%" PRIx64, off);
  if (rc == 0) live_remove(m, m->start_of[p] - 1);
}

static void do_block_order(model_t *m, buddy_t *b, uint64_t op) {
  uint64_t p = rnd(m) % m->npages;
  unsigned order = 99;
  int rc = buddy_block_order(b, p * PG, &order);
  int want = m->start_of[p] ? 0 : PP_ENOTBLOCK;
  CHECK_RC(rc, want, "block_order 0x%" PRIx64, (uint64_t)(p * PG));
  if (rc == 0) assert_int_equal(order, m->live_order[m->start_of[p] - 1]);
}

static uint64_t scale(void) {
  const char *s = getenv("PP_TEST_SCALE");
  uint64_t v = s ? strtoull(s, NULL, 0) : 1;
  return v ? v : 1;
}

static void run_model(uint64_t npages, unsigned page_order, uint64_t seed, uint64_t ops) {
  model_t m = {0};
  m.npages = npages;
  m.page_order = page_order;
  m.max_order = 63u - (unsigned)__builtin_clzll(npages);
  m.nwords = (npages + 63) / 64;
  m.bits = calloc(m.nwords, sizeof *m.bits);
  m.live_off = calloc(npages, sizeof *m.live_off);
  m.live_order = calloc(npages, sizeof *m.live_order);
  m.start_of = calloc(npages, sizeof *m.start_of);
  uint64_t nrp = (npages >> page_order) + 2;
  m.brk = calloc(nrp, 1);
  assert_true(m.bits && m.live_off && m.live_order && m.start_of && m.brk);
  set_range(&m, npages, m.nwords * 64 - npages, true); /* past the end: never free */
  m.free_pages = npages;
  m.rng = seed * 0x9E3779B97F4A7C15ull + 1;
  for (uint64_t i = 0; i < nrp; i++)
    m.brk[i] = rnd(&m) % 3 == 0;

  buddy_t *b = NULL;
  assert_int_equal(buddy_create(npages * PG, PG << page_order, fake_contig, &m, &b), 0);

  uint64_t check_every = PP_DEBUG >= 3 ? 1000 : 4096;
  unsigned phase_alloc = 70; /* percent of allocating operations in this phase */
  for (uint64_t op = 0; op < ops; op++) {
    if (op % 5000 == 0) phase_alloc = (unsigned)(20 + rnd(&m) % 65);
    unsigned r = (unsigned)(rnd(&m) % 100);
    if (r < 8)
      do_reserve(&m, b, op);
    else if (r < 14)
      do_free_random(&m, b, op);
    else if (r < 17)
      do_block_order(&m, b, op);
    else if ((unsigned)(rnd(&m) % 100) < phase_alloc)
      do_alloc(&m, b, op);
    else
      do_free_live(&m, b, op);

    buddy_stats_t s;
    buddy_get_stats(b, &s);
    if (s.free_bytes != m.free_pages * PG || s.nr_alloc_blocks != m.nlive)
      fail_msg("op %" PRIu64 ": buddy says %" PRIu64 " free bytes / %" PRIu64
               " blocks, model %" PRIu64 " / %" PRIu64,
               op, s.free_bytes, s.nr_alloc_blocks, m.free_pages * PG, m.nlive);
    if (op % check_every == 0) verify_valid(b, op);
  }
  verify_valid(b, ops);

  /* Free everything: only the top-level blocks (npages' binary decomposition) remain. */
  uint64_t op = ops;
  while (m.nlive) {
    CHECK_RC(buddy_free(b, m.live_off[m.nlive - 1]), 0, "final free");
    live_remove(&m, m.nlive - 1);
  }
  verify_valid(b, ops);
  buddy_stats_t s;
  buddy_get_stats(b, &s);
  assert_int_equal(s.free_bytes, npages * PG);
  for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
    uint64_t want = (npages >> k) & 1;
    if (s.nr_free[k] != want)
      fail_msg("after freeing all: nr_free[%u] = %" PRIu64 ", want %" PRIu64, k, s.nr_free[k],
               want);
  }
  assert_int_equal(s.allocs, s.frees);
  print_message("  seed %" PRIu64 ": %" PRIu64 " pages, %" PRIu64 " ops, %" PRIu64
                " allocs, %" PRIu64 " failures, %" PRIu64 " splits\n",
                seed, npages, ops, s.allocs, s.failures, s.splits);
  buddy_destroy(b);
  free(m.bits);
  free(m.live_off);
  free(m.live_order);
  free(m.start_of);
  free(m.brk);
}

/* Each test: several seeds over one region shape. */
#if PP_DEBUG >= 3
#define OPS 200000ull
#define BIG 600u
#else
#define OPS 1000000ull
#define BIG 1000u
#endif

static void random_ops_match_model_on_non_power_of_two_region(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 4; seed++)
    run_model(BIG - 3 * seed, 2, seed, OPS * scale() / 2);
}

static void random_ops_match_model_on_power_of_two_region_with_4k_pages(void **state) {
  (void)state;
  for (uint64_t seed = 11; seed <= 13; seed++)
    run_model(256, 0, seed, OPS * scale() / 2);
}

static void random_ops_match_model_on_tiny_region_that_fills_up(void **state) {
  (void)state;
  for (uint64_t seed = 21; seed <= 24; seed++)
    run_model(37, 1, seed, OPS * scale() / 4);
}

static void random_ops_match_model_when_blocks_fit_inside_one_hugepage(void **state) {
  (void)state;
  /* 2 MiB region pages: every block of this region is contiguous by construction. */
  for (uint64_t seed = 31; seed <= 32; seed++)
    run_model(BIG / 2 + 7, 9, seed, OPS * scale() / 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(random_ops_match_model_on_non_power_of_two_region),
      cmocka_unit_test(random_ops_match_model_on_power_of_two_region_with_4k_pages),
      cmocka_unit_test(random_ops_match_model_on_tiny_region_that_fills_up),
      cmocka_unit_test(random_ops_match_model_when_blocks_fit_inside_one_hugepage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
