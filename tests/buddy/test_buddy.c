/*
 * test_buddy.c — the buddy allocator's behaviour, one test per rule of shm/buddy.h:
 * splitting, coalescing with either buddy, non-power-of-two regions, reserve, every error
 * code (with the state unchanged after it), contiguous allocation against a fake map of
 * physical runs, stats and Linux's fragmentation index on hand-computed states, the dump,
 * the walk, and a few threads sharing one allocator.
 */
#include <inttypes.h>
#include <pthread.h>
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

/* ---- helpers -------------------------------------------------------------------------- */

static buddy_t *make(uint64_t pages) {
  buddy_t *b = NULL;
  int rc = buddy_create(pages * PG, PG, NULL, NULL, &b);
  assert_int_equal(rc, 0);
  assert_non_null(b);
  return b;
}

static void assert_valid(buddy_t *b) {
  char why[256] = "";
  int rc = buddy_check(b, why, sizeof why);
  if (rc != 0) fail_msg("buddy_check: %s", why);
}

static buddy_stats_t stats(buddy_t *b) {
  buddy_stats_t s;
  buddy_get_stats(b, &s);
  return s;
}

/* The free-block counts per order, lowest first, as a compact string "o0 o1 o2 ...". */
static void assert_free_counts(buddy_t *b, unsigned n, ...) {
  buddy_stats_t s = stats(b);
  va_list ap;
  va_start(ap, n);
  for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
    uint64_t want = k < n ? (uint64_t)va_arg(ap, int) : 0;
    if (s.nr_free[k] != want)
      fail_msg("nr_free[%u] = %" PRIu64 ", want %" PRIu64, k, s.nr_free[k], want);
  }
  va_end(ap);
}

static uint64_t alloc_ok(buddy_t *b, unsigned order) {
  uint64_t off = UINT64_MAX;
  int rc = buddy_alloc(b, order, 0, &off);
  if (rc != 0) fail_msg("buddy_alloc(order %u) = %s", order, pp_err_name(rc));
  return off;
}

/* Runs a call that must fail with `want` and leave the allocator exactly as it was. */
#define assert_fails_unchanged(b, want, call)                                                  \
  do {                                                                                         \
    buddy_stats_t before_ = stats(b);                                                          \
    int rc_ = (call);                                                                          \
    if (rc_ != (want))                                                                         \
      fail_msg("%s = %s, want %s", #call, pp_err_name(rc_), pp_err_name(want));                \
    buddy_stats_t after_ = stats(b);                                                           \
    assert_memory_equal(&before_, &after_, sizeof before_);                                    \
    assert_valid(b);                                                                           \
  } while (0)

typedef struct walk_rec {
  uint64_t off[64];
  unsigned order[64];
  bool is_free[64];
  unsigned n;
} walk_rec_t;

static void record(void *ctx, uint64_t off, unsigned order, bool is_free) {
  walk_rec_t *w = ctx;
  assert_true(w->n < 64);
  w->off[w->n] = off;
  w->order[w->n] = order;
  w->is_free[w->n] = is_free;
  w->n++;
}

/* ---- buddy_order_for_size -------------------------------------------------------------- */

static void order_for_size_rounds_up_to_pages_and_powers(void **state) {
  (void)state;
  static const struct {
    uint64_t size;
    unsigned order;
  } cases[] = {
      {1, 0},
      {PG - 1, 0},
      {PG, 0},
      {PG + 1, 1},
      {2 * PG, 1},
      {2 * PG + 1, 2},
      {3 * PG, 2},
      {4 * PG, 2},
      {1u << 20, 8},
      {(1u << 20) + 1, 9},
      {2ull << 20, 9},
      {1ull << 30, 18},
      {BUDDY_MIN_SIZE << (BUDDY_NR_ORDERS - 1), BUDDY_NR_ORDERS - 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    unsigned order = 99;
    assert_int_equal(buddy_order_for_size(cases[i].size, &order), 0);
    if (order != cases[i].order)
      fail_msg("size %" PRIu64 ": order %u, want %u", cases[i].size, order, cases[i].order);
  }
}

static void order_for_size_rejects_zero_and_too_large(void **state) {
  (void)state;
  unsigned order = 77;
  assert_int_equal(buddy_order_for_size(0, &order), PP_ERANGE);
  assert_int_equal(buddy_order_for_size((BUDDY_MIN_SIZE << (BUDDY_NR_ORDERS - 1)) + 1, &order),
                   PP_ERANGE);
  assert_int_equal(buddy_order_for_size(UINT64_MAX, &order), PP_ERANGE);
  assert_int_equal(order, 77); /* ret_order untouched on failure */
}

/* ---- create ----------------------------------------------------------------------------- */

static void create_rejects_bad_geometry(void **state) {
  (void)state;
  buddy_t *b = (buddy_t *)0x1;
  assert_int_equal(buddy_create(0, PG, NULL, NULL, &b), PP_EINVAL);
  assert_int_equal(buddy_create(PG + 1, PG, NULL, NULL, &b), PP_EINVAL);
  assert_int_equal(buddy_create(16 * PG, 3 * PG, NULL, NULL, &b), PP_EINVAL);
  assert_int_equal(buddy_create(16 * PG, PG / 2, NULL, NULL, &b), PP_EINVAL);
  assert_int_equal(buddy_create(((1ull << 32) + 1) * PG, PG, NULL, NULL, &b), PP_ERANGE);
  assert_int_equal(buddy_create(16 * PG, PG, NULL, NULL, NULL), PP_EINVAL);
  assert_ptr_equal(b, (buddy_t *)0x1); /* ret untouched on failure */
}

static void power_of_two_region_starts_as_one_free_block(void **state) {
  (void)state;
  buddy_t *b = make(256);
  buddy_stats_t s = stats(b);
  assert_int_equal(s.size, 256 * PG);
  assert_int_equal(s.free_bytes, 256 * PG);
  assert_int_equal(s.largest_free, 256 * PG);
  assert_int_equal(s.max_order, 8);
  assert_int_equal(s.nr_alloc_blocks, 0);
  assert_free_counts(b, 9, 0, 0, 0, 0, 0, 0, 0, 0, 1);
  assert_valid(b);
  buddy_destroy(b);
}

static void non_power_of_two_region_is_covered_by_its_binary_decomposition(void **state) {
  (void)state;
  buddy_t *b = make(13); /* 8 + 4 + 1 */
  walk_rec_t w = {0};
  buddy_walk(b, record, &w);
  assert_int_equal(w.n, 3);
  assert_int_equal(w.off[0], 0);
  assert_int_equal(w.order[0], 3);
  assert_int_equal(w.off[1], 8 * PG);
  assert_int_equal(w.order[1], 2);
  assert_int_equal(w.off[2], 12 * PG);
  assert_int_equal(w.order[2], 0);
  assert_true(w.is_free[0] && w.is_free[1] && w.is_free[2]);
  assert_int_equal(stats(b).max_order, 3);
  assert_int_equal(stats(b).free_bytes, 13 * PG);
  assert_valid(b);
  buddy_destroy(b);
}

/* ---- alloc ---------------------------------------------------------------------------- */

static void alloc_splits_the_smallest_block_that_fits(void **state) {
  (void)state;
  buddy_t *b = make(16);
  assert_int_equal(alloc_ok(b, 0), 0);
  /* 16 -> 8 + 4 + 2 + 1 free halves, one page handed out. */
  assert_free_counts(b, 5, 1, 1, 1, 1, 0);
  assert_int_equal(stats(b).splits, 4);
  /* The next order-1 request takes the free order-1 block without splitting anything. */
  assert_int_equal(alloc_ok(b, 1), 2 * PG);
  assert_int_equal(stats(b).splits, 4);
  assert_free_counts(b, 4, 1, 0, 1, 1);
  /* An order-1 request now has to split the order-2 block at page 4. */
  assert_int_equal(alloc_ok(b, 1), 4 * PG);
  assert_int_equal(stats(b).splits, 5);
  assert_free_counts(b, 4, 1, 1, 0, 1);
  assert_int_equal(stats(b).nr_alloc_blocks, 3);
  assert_int_equal(stats(b).free_bytes, (16 - 5) * PG);
  assert_valid(b);
  buddy_destroy(b);
}

static void alloc_returns_naturally_aligned_blocks_of_the_requested_order(void **state) {
  (void)state;
  buddy_t *b = make(100);
  for (unsigned order = 0; order <= 4; order++) {
    uint64_t off = alloc_ok(b, order);
    assert_int_equal(off % buddy_order_size(order), 0);
    unsigned got = 99;
    assert_int_equal(buddy_block_order(b, off, &got), 0);
    assert_int_equal(got, order);
  }
  assert_valid(b);
  buddy_destroy(b);
}

static void alloc_of_the_whole_region_then_nothing_is_left(void **state) {
  (void)state;
  buddy_t *b = make(8);
  assert_int_equal(alloc_ok(b, 3), 0);
  buddy_stats_t s = stats(b);
  assert_int_equal(s.free_bytes, 0);
  assert_int_equal(s.largest_free, 0);
  uint64_t off = 12345;
  buddy_stats_t before = stats(b);
  assert_int_equal(buddy_alloc(b, 0, 0, &off), PP_ENOMEM);
  assert_int_equal(off, 12345); /* untouched */
  buddy_stats_t after = stats(b);
  /* A failed allocation counts as a failure and changes nothing else. */
  assert_int_equal(after.failures, before.failures + 1);
  after.failures = before.failures;
  assert_memory_equal(&before, &after, sizeof before);
  assert_valid(b);
  buddy_destroy(b);
}

static void alloc_reports_enomem_only_when_no_block_of_that_order_is_free(void **state) {
  (void)state;
  buddy_t *b = make(8);
  uint64_t a = alloc_ok(b, 0), c;
  (void)a;
  /* 7 pages free (1 + 2 + 4): order 2 still fits once, then no more. */
  assert_int_equal(alloc_ok(b, 2), 4 * PG);
  assert_int_equal(buddy_alloc(b, 2, 0, &c), PP_ENOMEM);
  assert_int_equal(alloc_ok(b, 1), 2 * PG);
  assert_int_equal(alloc_ok(b, 0), 1 * PG);
  assert_int_equal(buddy_alloc(b, 0, 0, &c), PP_ENOMEM);
  assert_int_equal(stats(b).failures, 2);
  assert_valid(b);
  buddy_destroy(b);
}

static void alloc_rejects_order_beyond_region_and_unknown_flags(void **state) {
  (void)state;
  buddy_t *b = make(12); /* max order 3 */
  uint64_t off = 7;
  assert_fails_unchanged(b, PP_ERANGE, buddy_alloc(b, 4, 0, &off));
  assert_fails_unchanged(b, PP_ERANGE, buddy_alloc(b, BUDDY_NR_ORDERS, 0, &off));
  assert_fails_unchanged(b, PP_ERANGE, buddy_alloc(b, UINT32_MAX, 0, &off));
  assert_fails_unchanged(b, PP_EINVAL, buddy_alloc(b, 0, 0x80, &off));
  assert_fails_unchanged(b, PP_EINVAL, buddy_alloc(b, 0, 0, NULL));
  assert_int_equal(off, 7);
  buddy_destroy(b);
}

/* ---- free -------------------------------------------------------------------------------- */

static void free_coalesces_with_right_buddy(void **state) {
  (void)state;
  buddy_t *b = make(2);
  uint64_t left = alloc_ok(b, 0), right = alloc_ok(b, 0);
  assert_int_equal(left, 0);
  assert_int_equal(right, PG);
  assert_int_equal(buddy_free(b, right), 0);
  assert_free_counts(b, 2, 1, 0);
  assert_int_equal(stats(b).merges, 0);
  assert_int_equal(buddy_free(b, left), 0); /* its right buddy is free: merge */
  assert_free_counts(b, 2, 0, 1);
  assert_int_equal(stats(b).merges, 1);
  assert_valid(b);
  buddy_destroy(b);
}

static void free_coalesces_with_left_buddy(void **state) {
  (void)state;
  buddy_t *b = make(2);
  uint64_t left = alloc_ok(b, 0), right = alloc_ok(b, 0);
  assert_int_equal(buddy_free(b, left), 0);
  assert_free_counts(b, 2, 1, 0);
  assert_int_equal(buddy_free(b, right), 0); /* its left buddy is free: merge */
  assert_free_counts(b, 2, 0, 1);
  assert_int_equal(stats(b).merges, 1);
  walk_rec_t w = {0};
  buddy_walk(b, record, &w);
  assert_int_equal(w.n, 1);
  assert_int_equal(w.off[0], 0);
  assert_int_equal(w.order[0], 1);
  buddy_destroy(b);
}

static void free_coalesces_repeatedly_up_to_the_top_block(void **state) {
  (void)state;
  buddy_t *b = make(64);
  uint64_t off = alloc_ok(b, 0);
  assert_int_equal(stats(b).splits, 6);
  assert_int_equal(buddy_free(b, off), 0);
  assert_int_equal(stats(b).merges, 6);
  assert_free_counts(b, 7, 0, 0, 0, 0, 0, 0, 1);
  assert_valid(b);
  buddy_destroy(b);
}

static void free_does_not_coalesce_with_a_buddy_that_is_split(void **state) {
  (void)state;
  buddy_t *b = make(4);
  uint64_t a = alloc_ok(b, 1); /* pages 0-1 */
  uint64_t c = alloc_ok(b, 0); /* page 2; page 3 free */
  assert_int_equal(a, 0);
  assert_int_equal(c, 2 * PG);
  assert_int_equal(buddy_free(b, a), 0);
  /* a's buddy (pages 2-3) is not a whole free order-1 block: no merge. */
  assert_free_counts(b, 3, 1, 1, 0);
  assert_int_equal(buddy_free(b, c), 0);
  assert_free_counts(b, 3, 0, 0, 1);
  assert_valid(b);
  buddy_destroy(b);
}

static void free_does_not_coalesce_across_top_level_blocks(void **state) {
  (void)state;
  buddy_t *b = make(6); /* 4 + 2 */
  uint64_t o[6];
  for (int i = 0; i < 6; i++)
    o[i] = alloc_ok(b, 0);
  assert_int_equal(stats(b).free_bytes, 0);
  for (int i = 0; i < 6; i++)
    assert_int_equal(buddy_free(b, o[i]), 0);
  assert_free_counts(b, 3, 0, 1, 1);
  assert_int_equal(stats(b).free_bytes, 6 * PG);
  assert_valid(b);
  buddy_destroy(b);
}

static void free_errors_leave_state_unchanged(void **state) {
  (void)state;
  buddy_t *b = make(16);
  uint64_t a = alloc_ok(b, 2); /* pages 0-3 */
  uint64_t c = alloc_ok(b, 0); /* page 4 */
  assert_int_equal(a, 0);
  assert_int_equal(c, 4 * PG);
  assert_fails_unchanged(b, PP_ERANGE, buddy_free(b, 16 * PG));
  assert_fails_unchanged(b, PP_ERANGE, buddy_free(b, UINT64_MAX));
  assert_fails_unchanged(b, PP_ENOTBLOCK, buddy_free(b, 1));        /* misaligned */
  assert_fails_unchanged(b, PP_ENOTBLOCK, buddy_free(b, 2 * PG));   /* inside allocated */
  assert_fails_unchanged(b, PP_ENOTBLOCK, buddy_free(b, 9 * PG));   /* inside a free block */
  assert_fails_unchanged(b, PP_EDOUBLEFREE, buddy_free(b, 5 * PG)); /* start of free block */
  assert_fails_unchanged(b, PP_EINVAL, buddy_free(NULL, 0));
  assert_int_equal(buddy_free(b, c), 0);
  assert_fails_unchanged(b, PP_EDOUBLEFREE, buddy_free(b, c)); /* double free */
  assert_int_equal(buddy_free(b, a), 0);
  assert_fails_unchanged(b, PP_EDOUBLEFREE, buddy_free(b, a)); /* merged, still head */
  assert_free_counts(b, 5, 0, 0, 0, 0, 1);
  buddy_destroy(b);
}

static void block_order_answers_only_for_allocated_block_starts(void **state) {
  (void)state;
  buddy_t *b = make(8);
  uint64_t a = alloc_ok(b, 1);
  unsigned order = 42;
  assert_int_equal(buddy_block_order(b, a, &order), 0);
  assert_int_equal(order, 1);
  order = 42;
  assert_int_equal(buddy_block_order(b, a + PG, &order), PP_ENOTBLOCK);
  assert_int_equal(buddy_block_order(b, 2 * PG, &order), PP_ENOTBLOCK); /* free block */
  assert_int_equal(buddy_block_order(b, 8 * PG, &order), PP_ENOTBLOCK); /* outside */
  assert_int_equal(buddy_block_order(b, 7, &order), PP_ENOTBLOCK);
  assert_int_equal(order, 42);
  buddy_destroy(b);
}

/* ---- reserve ------------------------------------------------------------------------------
 */

static void reserve_takes_a_whole_free_block(void **state) {
  (void)state;
  buddy_t *b = make(12); /* 8 + 4 */
  assert_int_equal(buddy_reserve(b, 8 * PG, 2), 0);
  assert_free_counts(b, 4, 0, 0, 0, 1);
  assert_int_equal(stats(b).splits, 0);
  unsigned order = 0;
  assert_int_equal(buddy_block_order(b, 8 * PG, &order), 0);
  assert_int_equal(order, 2);
  assert_int_equal(buddy_free(b, 8 * PG), 0);
  assert_free_counts(b, 4, 0, 0, 1, 1);
  assert_valid(b);
  buddy_destroy(b);
}

static void reserve_inside_a_larger_free_block_splits_around_it(void **state) {
  (void)state;
  buddy_t *b = make(16);
  assert_int_equal(buddy_reserve(b, 5 * PG, 0), 0);
  /* 16 -> [0,8) split -> [0,4) free, [4,8) split -> [6,8) free, [4,6) split -> 4 free. */
  assert_free_counts(b, 4, 1, 1, 1, 1);
  assert_int_equal(stats(b).splits, 4);
  assert_int_equal(stats(b).free_bytes, 15 * PG);
  walk_rec_t w = {0};
  buddy_walk(b, record, &w);
  assert_int_equal(w.n, 5);
  static const uint64_t off[] = {0, 4, 5, 6, 8};
  static const unsigned ord[] = {2, 0, 0, 1, 3};
  for (unsigned i = 0; i < 5; i++) {
    assert_int_equal(w.off[i], off[i] * PG);
    assert_int_equal(w.order[i], ord[i]);
    assert_int_equal(w.is_free[i], i != 2);
  }
  /* The next allocation does not hand out the reserved page. */
  assert_int_equal(alloc_ok(b, 0), 4 * PG);
  assert_int_equal(buddy_free(b, 5 * PG), 0);
  assert_int_equal(buddy_free(b, 4 * PG), 0);
  assert_free_counts(b, 5, 0, 0, 0, 0, 1);
  assert_valid(b);
  buddy_destroy(b);
}

static void reserve_of_a_busy_range_is_ebusy(void **state) {
  (void)state;
  buddy_t *b = make(16);
  assert_int_equal(buddy_reserve(b, 4 * PG, 1), 0);                 /* pages 4-5 */
  assert_fails_unchanged(b, PP_EBUSY, buddy_reserve(b, 4 * PG, 1)); /* the same block */
  assert_fails_unchanged(b, PP_EBUSY, buddy_reserve(b, 5 * PG, 0)); /* inside it */
  assert_fails_unchanged(b, PP_EBUSY, buddy_reserve(b, 4 * PG, 2)); /* range holding it */
  assert_fails_unchanged(b, PP_EBUSY, buddy_reserve(b, 0, 4));      /* the whole region */
  assert_int_equal(buddy_reserve(b, 6 * PG, 1), 0);                 /* its free neighbour */
  assert_valid(b);
  buddy_destroy(b);
}

static void reserve_rejects_misaligned_and_out_of_range_blocks(void **state) {
  (void)state;
  buddy_t *b = make(12);                                              /* 8 + 4 */
  assert_fails_unchanged(b, PP_EINVAL, buddy_reserve(b, 100, 0));     /* not page aligned */
  assert_fails_unchanged(b, PP_EINVAL, buddy_reserve(b, 2 * PG, 2));  /* not order aligned */
  assert_fails_unchanged(b, PP_ERANGE, buddy_reserve(b, 12 * PG, 0)); /* past the end */
  assert_fails_unchanged(b, PP_ERANGE, buddy_reserve(b, 8 * PG, 3));  /* runs past the end */
  assert_fails_unchanged(b, PP_ERANGE, buddy_reserve(b, 0, 4));       /* bigger than region */
  assert_fails_unchanged(b, PP_ERANGE, buddy_reserve(b, 0, BUDDY_NR_ORDERS));
  assert_fails_unchanged(b, PP_ERANGE, buddy_reserve(b, UINT64_MAX & ~(PG - 1), 0));
  assert_fails_unchanged(b, PP_EINVAL, buddy_reserve(NULL, 0, 0));
  buddy_destroy(b);
}

static void reserve_rebuilds_a_state_that_alloc_produced(void **state) {
  (void)state;
  /* The restart story: claims replayed with reserve give back the same block layout. */
  buddy_t *a = make(40), *r = make(40);
  uint64_t offs[6];
  unsigned ords[6] = {0, 3, 1, 2, 0, 4};
  for (int i = 0; i < 6; i++)
    offs[i] = alloc_ok(a, ords[i]);
  for (int i = 5; i >= 0; i--)
    assert_int_equal(buddy_reserve(r, offs[i], ords[i]), 0);
  walk_rec_t wa = {0}, wr = {0};
  buddy_walk(a, record, &wa);
  buddy_walk(r, record, &wr);
  /* Same allocated blocks; the free space coalesces the same way (unique for a set). */
  assert_int_equal(wa.n, wr.n);
  for (unsigned i = 0; i < wa.n; i++) {
    assert_int_equal(wa.off[i], wr.off[i]);
    assert_int_equal(wa.order[i], wr.order[i]);
    assert_int_equal(wa.is_free[i], wr.is_free[i]);
  }
  assert_valid(r);
  buddy_destroy(a);
  buddy_destroy(r);
}

/* ---- contiguous allocation ------------------------------------------------------------------
 */

/* A fake physical map: region pages of 4 pages (16 KiB); brk[i] says region page i does not
 * follow region page i-1 physically. */
typedef struct fake_phys {
  bool brk[64];
  unsigned calls;
} fake_phys_t;

static bool fake_contig(void *ctx, uint64_t off, uint64_t len) {
  fake_phys_t *f = ctx;
  f->calls++;
  for (uint64_t pg = off / (4 * PG) + 1; pg * 4 * PG < off + len; pg++)
    if (f->brk[pg]) return false;
  return true;
}

static void contig_small_blocks_need_no_physical_check(void **state) {
  (void)state;
  fake_phys_t f = {0};
  for (int i = 0; i < 64; i++)
    f.brk[i] = true; /* nothing consecutive at all */
  buddy_t *b = NULL;
  assert_int_equal(buddy_create(64 * PG, 4 * PG, fake_contig, &f, &b), 0);
  uint64_t off;
  assert_int_equal(buddy_alloc(b, 2, BUDDY_CONTIG, &off), 0); /* = the page size */
  assert_int_equal(buddy_alloc(b, 0, BUDDY_CONTIG, &off), 0);
  assert_int_equal(f.calls, 0);
  buddy_stats_t before = stats(b);
  assert_int_equal(buddy_alloc(b, 3, BUDDY_CONTIG, &off), PP_ENOCONTIG);
  assert_true(f.calls > 0);
  buddy_stats_t after = stats(b);
  assert_int_equal(after.failures, before.failures + 1);
  after.failures = before.failures;
  assert_memory_equal(&before, &after, sizeof before);
  /* Without the flag the same order is available. */
  assert_int_equal(buddy_alloc(b, 3, 0, &off), 0);
  assert_valid(b);
  buddy_destroy(b);
}

static void contig_alloc_skips_discontiguous_blocks_and_splits_a_contiguous_one(void **state) {
  (void)state;
  fake_phys_t f = {0};
  /* Region pages 0..15 (64 small pages).  Breaks everywhere except between 6|7 and 7|8:
   * the only contiguous 8-page (2 region page) aligned block is pages [24, 32)?  Region
   * pages 6 and 7 are small pages [24, 32), aligned to 8: yes. */
  for (int i = 0; i < 16; i++)
    f.brk[i] = true;
  f.brk[7] = false;
  buddy_t *b = NULL;
  assert_int_equal(buddy_create(64 * PG, 4 * PG, fake_contig, &f, &b), 0);
  uint64_t off = 0;
  assert_int_equal(buddy_alloc(b, 3, BUDDY_CONTIG, &off), 0);
  assert_int_equal(off, 24 * PG);
  unsigned order = 0;
  assert_int_equal(buddy_block_order(b, off, &order), 0);
  assert_int_equal(order, 3);
  /* 64 -> [0,32) split -> [16,32) split -> [24,32) taken; [0,16), [16,24), [32,64) free. */
  assert_free_counts(b, 6, 0, 0, 0, 1, 1, 1);
  /* No second contiguous block of that order exists: distinct from ENOMEM. */
  uint64_t off2;
  assert_int_equal(buddy_alloc(b, 3, BUDDY_CONTIG, &off2), PP_ENOCONTIG);
  assert_int_equal(buddy_free(b, off), 0);
  assert_free_counts(b, 7, 0, 0, 0, 0, 0, 0, 1);
  assert_valid(b);
  buddy_destroy(b);
}

static void contig_alloc_takes_a_wholly_contiguous_block_with_one_check(void **state) {
  (void)state;
  fake_phys_t f = {0}; /* no breaks: everything consecutive */
  buddy_t *b = NULL;
  assert_int_equal(buddy_create(64 * PG, 4 * PG, fake_contig, &f, &b), 0);
  uint64_t off;
  assert_int_equal(buddy_alloc(b, 4, BUDDY_CONTIG, &off), 0);
  assert_int_equal(off, 0);
  assert_int_equal(f.calls, 1);
  buddy_destroy(b);
}

static void
contig_without_a_callback_is_enocontig_and_enomem_wins_when_nothing_fits(void **state) {
  (void)state;
  buddy_t *b = NULL;
  assert_int_equal(buddy_create(16 * PG, 2 * PG, NULL, NULL, &b), 0);
  uint64_t off;
  assert_int_equal(buddy_alloc(b, 1, BUDDY_CONTIG, &off), 0); /* = page size: fine */
  assert_int_equal(buddy_alloc(b, 2, BUDDY_CONTIG, &off), PP_ENOCONTIG);
  assert_int_equal(buddy_alloc(b, 3, 0, &off), 0);
  /* Now no order-3 block is free at all: that is ENOMEM, not ENOCONTIG. */
  assert_int_equal(buddy_alloc(b, 3, BUDDY_CONTIG, &off), PP_ENOMEM);
  assert_int_equal(stats(b).failures, 2);
  assert_valid(b);
  buddy_destroy(b);
}

/* ---- stats
 * ----------------------------------------------------------------------------------- */

static void stats_and_fragmentation_index_match_linux_on_a_known_state(void **state) {
  (void)state;
  buddy_t *b = make(8);
  buddy_stats_t s = stats(b);
  /* Empty region: one order-3 block.  Orders <= 3: -1000.  Order 4 (16 pages), one block
   * of 8 free pages: 1000 - (1000 + 8*1000/16)/1 = -500, as Linux computes it. */
  for (unsigned k = 0; k <= 3; k++)
    assert_int_equal(s.frag_index[k], -1000);
  assert_int_equal(s.frag_index[4], -500);

  uint64_t o[8];
  for (int i = 0; i < 8; i++)
    o[i] = alloc_ok(b, 0);
  s = stats(b);
  for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
    assert_int_equal(s.frag_index[k], 0);
  assert_int_equal(s.largest_free, 0);

  /* Free pages 0, 2 and 5: three order-0 blocks whose buddies are allocated. */
  assert_int_equal(buddy_free(b, o[0]), 0);
  assert_int_equal(buddy_free(b, o[2]), 0);
  assert_int_equal(buddy_free(b, o[5]), 0);
  s = stats(b);
  assert_int_equal(s.nr_free[0], 3);
  assert_int_equal(s.free_bytes, 3 * PG);
  assert_int_equal(s.largest_free, PG);
  assert_int_equal(s.nr_alloc_blocks, 5);
  assert_int_equal(s.allocs, 8);
  assert_int_equal(s.frees, 3);
  assert_int_equal(s.splits, 7); /* 1 block became 8 */
  assert_int_equal(s.merges, 0);
  assert_int_equal(s.frag_index[0], -1000);
  /* 1000 - (1000 + 3*1000/2^k) / 3 */
  assert_int_equal(s.frag_index[1], 1000 - (1000 + 1500) / 3); /* 167 */
  assert_int_equal(s.frag_index[2], 1000 - (1000 + 750) / 3);  /* 417 */
  assert_int_equal(s.frag_index[3], 1000 - (1000 + 375) / 3);  /* 542 */
  assert_int_equal(s.frag_index[1], 167);
  assert_int_equal(s.frag_index[3], 542);
  assert_int_equal(s.frag_index[BUDDY_NR_ORDERS - 1], 667);
  assert_valid(b);
  buddy_destroy(b);
}

static void dump_prints_a_buddyinfo_line_and_the_free_lists(void **state) {
  (void)state;
  buddy_t *b = make(13);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  buddy_dump(b, f);
  fclose(f);
  const char *want = "Node 0, zone  pinpool      1      0      1      1 \n";
  if (strncmp(buf, want, strlen(want)) != 0) fail_msg("dump starts with:\n%s", buf);
  assert_non_null(strstr(buf, "order  3 (32 KiB): 0x0\n"));
  assert_non_null(strstr(buf, "order  2 (16 KiB): 0x8000\n"));
  assert_non_null(strstr(buf, "order  0 (4 KiB): 0xc000\n"));
  free(buf);
  buddy_destroy(b);
}

/* ---- threads
 * --------------------------------------------------------------------------------- */

#define THREADS 4
#define PAGES 512

typedef struct shared {
  buddy_t *b;
  unsigned char owner[PAGES]; /* which thread holds each page; 0 = nobody */
  unsigned ops;
} shared_t;

typedef struct worker {
  shared_t *sh;
  unsigned id;
  int bad; /* 0, or the first error seen */
} worker_t;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  uint64_t held[16];
  unsigned held_order[16], n = 0, seed = w->id * 7919u + 1;
  for (unsigned i = 0; i < w->sh->ops && !w->bad; i++) {
    seed = seed * 1103515245u + 12345u;
    if (n < 16 && ((seed >> 16) & 1)) {
      unsigned order = (seed >> 20) % 4;
      uint64_t off;
      int rc = buddy_alloc(w->sh->b, order, 0, &off);
      if (rc == PP_ENOMEM) continue;
      if (rc != 0) {
        w->bad = rc;
        break;
      }
      /* Every page must be nobody's: an overlap with another thread shows up here. */
      for (uint64_t p = off / PG; p < off / PG + (1u << order); p++) {
        if (__atomic_exchange_n(&w->sh->owner[p], (unsigned char)w->id, __ATOMIC_RELAXED))
          w->bad = PP_ECORRUPT;
      }
      held[n] = off;
      held_order[n++] = order;
    } else if (n > 0) {
      n--;
      for (uint64_t p = held[n] / PG; p < held[n] / PG + (1u << held_order[n]); p++)
        if (__atomic_exchange_n(&w->sh->owner[p], 0, __ATOMIC_RELAXED) != w->id)
          w->bad = PP_ECORRUPT;
      int rc = buddy_free(w->sh->b, held[n]);
      if (rc != 0) w->bad = rc;
    }
  }
  while (n > 0) {
    n--;
    for (uint64_t p = held[n] / PG; p < held[n] / PG + (1u << held_order[n]); p++)
      __atomic_store_n(&w->sh->owner[p], 0, __ATOMIC_RELAXED);
    int rc = buddy_free(w->sh->b, held[n]);
    if (rc != 0 && !w->bad) w->bad = rc;
  }
  return NULL;
}

static void threads_sharing_one_buddy_never_get_overlapping_blocks(void **state) {
  (void)state;
  static shared_t sh;
  memset(&sh, 0, sizeof sh);
  sh.b = make(PAGES);
  sh.ops = PP_DEBUG >= 3 ? 2000 : 20000;
  pthread_t t[THREADS];
  worker_t w[THREADS];
  for (unsigned i = 0; i < THREADS; i++) {
    w[i] = (worker_t){.sh = &sh, .id = i + 1, .bad = 0};
    assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
  }
  for (unsigned i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  for (unsigned i = 0; i < THREADS; i++)
    if (w[i].bad) fail_msg("thread %u saw %s", w[i].id, pp_err_name(w[i].bad));
  assert_valid(sh.b);
  assert_free_counts(sh.b, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
  buddy_destroy(sh.b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(order_for_size_rounds_up_to_pages_and_powers),
      cmocka_unit_test(order_for_size_rejects_zero_and_too_large),
      cmocka_unit_test(create_rejects_bad_geometry),
      cmocka_unit_test(power_of_two_region_starts_as_one_free_block),
      cmocka_unit_test(non_power_of_two_region_is_covered_by_its_binary_decomposition),
      cmocka_unit_test(alloc_splits_the_smallest_block_that_fits),
      cmocka_unit_test(alloc_returns_naturally_aligned_blocks_of_the_requested_order),
      cmocka_unit_test(alloc_of_the_whole_region_then_nothing_is_left),
      cmocka_unit_test(alloc_reports_enomem_only_when_no_block_of_that_order_is_free),
      cmocka_unit_test(alloc_rejects_order_beyond_region_and_unknown_flags),
      cmocka_unit_test(free_coalesces_with_right_buddy),
      cmocka_unit_test(free_coalesces_with_left_buddy),
      cmocka_unit_test(free_coalesces_repeatedly_up_to_the_top_block),
      cmocka_unit_test(free_does_not_coalesce_with_a_buddy_that_is_split),
      cmocka_unit_test(free_does_not_coalesce_across_top_level_blocks),
      cmocka_unit_test(free_errors_leave_state_unchanged),
      cmocka_unit_test(block_order_answers_only_for_allocated_block_starts),
      cmocka_unit_test(reserve_takes_a_whole_free_block),
      cmocka_unit_test(reserve_inside_a_larger_free_block_splits_around_it),
      cmocka_unit_test(reserve_of_a_busy_range_is_ebusy),
      cmocka_unit_test(reserve_rejects_misaligned_and_out_of_range_blocks),
      cmocka_unit_test(reserve_rebuilds_a_state_that_alloc_produced),
      cmocka_unit_test(contig_small_blocks_need_no_physical_check),
      cmocka_unit_test(contig_alloc_skips_discontiguous_blocks_and_splits_a_contiguous_one),
      cmocka_unit_test(contig_alloc_takes_a_wholly_contiguous_block_with_one_check),
      cmocka_unit_test(
          contig_without_a_callback_is_enocontig_and_enomem_wins_when_nothing_fits),
      cmocka_unit_test(stats_and_fragmentation_index_match_linux_on_a_known_state),
      cmocka_unit_test(dump_prints_a_buddyinfo_line_and_the_free_lists),
      cmocka_unit_test(threads_sharing_one_buddy_never_get_overlapping_blocks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
