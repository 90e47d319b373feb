/*
 * test_buddy_check.c — the validator finds what it claims to find.  A white-box test: it
 * compiles shm/buddy.c into itself to reach the private metadata, damages one thing at a
 * time, and expects buddy_check() to return PP_ECORRUPT naming that thing.  (Through the
 * public API the state cannot be damaged; that is what the other buddy tests show.)
 */
#include "buddy.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static buddy_t *make(uint64_t pages) {
  buddy_t *b = NULL;
  assert_int_equal(buddy_create(pages * BUDDY_MIN_SIZE, BUDDY_MIN_SIZE, NULL, NULL, &b), 0);
  return b;
}

static void expect_corrupt(buddy_t *b, const char *needle) {
  char why[256] = "";
  int rc = buddy_check(b, why, sizeof why);
  if (rc != PP_ECORRUPT)
    fail_msg("buddy_check = %s, want PP_ECORRUPT (%s)", pp_err_name(rc), needle);
  if (!strstr(why, needle))
    fail_msg("buddy_check said \"%s\", want it to mention \"%s\"", why, needle);
}

static void check_accepts_a_healthy_state(void **state) {
  (void)state;
  buddy_t *b = make(13);
  uint64_t off;
  assert_int_equal(buddy_alloc(b, 1, 0, &off), 0);
  char why[256] = "untouched";
  assert_int_equal(buddy_check(b, why, sizeof why), 0);
  assert_string_equal(why, "untouched");
  buddy_destroy(b);
}

static void check_reports_uncoalesced_free_buddies(void **state) {
  (void)state;
  buddy_t *b = make(2);
  uint64_t a, c;
  assert_int_equal(buddy_alloc(b, 0, 0, &a), 0);
  assert_int_equal(buddy_alloc(b, 0, 0, &c), 0);
  /* Put both pages on the order-0 list without merging them, counters kept in step. */
  list_push_unsafe(b, 0, 0);
  list_push_unsafe(b, 1, 0);
  b->free_pages += 2;
  b->nr_alloc -= 2;
  b->frees += 2;
  expect_corrupt(b, "not coalesced");
  buddy_destroy(b);
}

static void check_reports_a_page_covered_by_no_block(void **state) {
  (void)state;
  buddy_t *b = make(8);
  uint64_t a;
  assert_int_equal(buddy_alloc(b, 2, 0, &a), 0);
  b->pg[a >> BUDDY_MIN_SHIFT].info = 0;
  expect_corrupt(b, "covered by no block");
  buddy_destroy(b);
}

static void check_reports_overlapping_blocks(void **state) {
  (void)state;
  buddy_t *b = make(8);
  uint64_t a;
  assert_int_equal(buddy_alloc(b, 2, 0, &a), 0);
  b->pg[(a >> BUDDY_MIN_SHIFT) + 1].info = META_HEAD; /* a block head inside another block */
  expect_corrupt(b, "overlapping");
  buddy_destroy(b);
}

static void check_reports_a_misaligned_block(void **state) {
  (void)state;
  buddy_t *b = make(8);
  uint64_t a, c;
  assert_int_equal(buddy_alloc(b, 0, 0, &a), 0); /* page 0 */
  assert_int_equal(buddy_alloc(b, 0, 0, &c), 0); /* page 1 */
  b->pg[1].info = META_HEAD | 1;                 /* order 1 at page 1 */
  expect_corrupt(b, "misaligned");
  buddy_destroy(b);
}

static void check_reports_a_free_block_missing_from_its_list(void **state) {
  (void)state;
  buddy_t *b = make(8);
  uint64_t a;
  assert_int_equal(buddy_alloc(b, 0, 0, &a), 0); /* leaves free blocks of orders 0, 1, 2 */
  list_remove_unsafe(b, 2, 1);                   /* off the list, still marked free */
  expect_corrupt(b, "order 1: list empty");
  buddy_destroy(b);
}

static void check_reports_a_list_count_that_disagrees(void **state) {
  (void)state;
  buddy_t *b = make(8);
  b->nr_free[3]++;
  expect_corrupt(b, "nr_free 2 but list length 1");
  buddy_destroy(b);
}

static void check_reports_a_broken_list_link(void **state) {
  (void)state;
  buddy_t *b = make(8);
  uint64_t a, c;
  assert_int_equal(buddy_alloc(b, 0, 0, &a), 0);                /* page 0; page 1 free */
  assert_int_equal(buddy_alloc(b, 1, 0, &c), 0);                /* pages 2-3; [4,8) free */
  assert_int_equal(buddy_free(b, c), 0);                        /* [2,4) free again */
  assert_int_equal(buddy_alloc(b, 0, 0, &c), 0);                /* page 1 */
  assert_int_equal(buddy_reserve(b, 4 * BUDDY_MIN_SIZE, 0), 0); /* splits [4,8) */
  /* Order 0 list: page 5 alone; order 1: pages 2 and 6.  Break the ring of order 1. */
  uint64_t h = b->head[1];
  b->pg[b->pg[h].next].prev = (uint32_t)(h ^ 4);
  expect_corrupt(b, "broken link");
  buddy_destroy(b);
}

static void check_reports_a_wrong_avail_bit(void **state) {
  (void)state;
  buddy_t *b = make(8);
  b->avail |= 1u << 1;
  expect_corrupt(b, "order 1: list empty but avail bit 1");
  buddy_destroy(b);
}

static void check_reports_wrong_counters(void **state) {
  (void)state;
  buddy_t *b = make(8);
  b->free_pages--;
  expect_corrupt(b, "free_pages 7 but free blocks hold 8");
  b->free_pages++;
  b->splits++;
  expect_corrupt(b, "splits");
  buddy_destroy(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(check_accepts_a_healthy_state),
      cmocka_unit_test(check_reports_uncoalesced_free_buddies),
      cmocka_unit_test(check_reports_a_page_covered_by_no_block),
      cmocka_unit_test(check_reports_overlapping_blocks),
      cmocka_unit_test(check_reports_a_misaligned_block),
      cmocka_unit_test(check_reports_a_free_block_missing_from_its_list),
      cmocka_unit_test(check_reports_a_list_count_that_disagrees),
      cmocka_unit_test(check_reports_a_broken_list_link),
      cmocka_unit_test(check_reports_a_wrong_avail_bit),
      cmocka_unit_test(check_reports_wrong_counters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
