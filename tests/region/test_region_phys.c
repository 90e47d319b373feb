/*
 * test_region_phys.c — the physical-address queries (region_phys, region_is_contiguous,
 * region_runs, region_largest_run) on regions built from known tables, and the table's
 * lost pages (physmap.h: what a punched page does to the runs, and what a repair undoes).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "physmap.h"
#include "region.h"
#include "region_internal.h"

#define PS 4096ull
#define A 0x100000000ull
#define B 0x200000000ull
#define C 0x080000000ull

/* Pages 0-2 consecutive at A, 3-4 consecutive at B, 5 alone at C. */
static const uint64_t three_runs[6] = {A, A + PS, A + 2 * PS, B, B + PS, C};

static region_t *from(uint64_t size, uint64_t ps, const uint64_t *phys) {
  region_t *r = NULL;
  assert_int_equal(region_from_phys(size, ps, phys, &r), 0);
  assert_non_null(r);
  char why[256] = "";
  assert_int_equal(region_check(r, why, sizeof why), 0);
  return r;
}

static void phys_of_an_offset_adds_the_offset_within_its_page(void **state) {
  region_t *r = from(6 * PS, PS, three_runs);
  uint64_t p = 0;
  assert_true(region_phys_known(r));
  assert_int_equal(region_phys(r, 0, &p), 0);
  assert_int_equal(p, A);
  assert_int_equal(region_phys(r, 3 * PS + 123, &p), 0);
  assert_int_equal(p, B + 123);
  assert_int_equal(region_phys(r, 6 * PS - 1, &p), 0);
  assert_int_equal(p, C + PS - 1);
  region_destroy(r);
}

static void phys_outside_the_region_is_erange_and_unknown_is_enoent(void **state) {
  region_t *r = from(6 * PS, PS, three_runs);
  uint64_t p = 42;
  assert_int_equal(region_phys(r, 6 * PS, &p), PP_ERANGE);
  assert_int_equal(region_phys(r, UINT64_MAX, &p), PP_ERANGE);
  assert_int_equal(region_phys(r, 0, NULL), PP_EINVAL);
  assert_int_equal(p, 42);
  region_destroy(r);

  r = from(6 * PS, PS, NULL);
  assert_false(region_phys_known(r));
  assert_int_equal(region_phys(r, 0, &p), PP_ENOENT);
  assert_int_equal(region_phys(r, 6 * PS, &p), PP_ERANGE);
  assert_int_equal(p, 42);
  region_destroy(r);
}

static void runs_merge_physically_consecutive_pages(void **state) {
  region_t *r = from(6 * PS, PS, three_runs);
  region_run_t runs[8];
  assert_int_equal(region_runs(r, runs, 8), 3);
  assert_int_equal(runs[0].offset, 0);
  assert_int_equal(runs[0].phys, A);
  assert_int_equal(runs[0].length, 3 * PS);
  assert_int_equal(runs[1].offset, 3 * PS);
  assert_int_equal(runs[1].phys, B);
  assert_int_equal(runs[1].length, 2 * PS);
  assert_int_equal(runs[2].offset, 5 * PS);
  assert_int_equal(runs[2].phys, C);
  assert_int_equal(runs[2].length, PS);
  assert_int_equal(region_largest_run(r), 3 * PS);
  region_destroy(r);
}

static void runs_fills_at_most_n_and_returns_the_total(void **state) {
  region_t *r = from(6 * PS, PS, three_runs);
  region_run_t runs[2] = {{0}, {0}}, sentinel = {7, 7, 7};
  region_run_t one[2] = {{0}, sentinel};
  assert_int_equal(region_runs(r, one, 1), 3);
  assert_int_equal(one[0].length, 3 * PS);
  assert_int_equal(one[1].offset, 7); /* untouched past n */
  assert_int_equal(region_runs(r, NULL, 0), 3);
  assert_int_equal(region_runs(r, runs, 2), 3);
  assert_int_equal(runs[1].phys, B);
  region_destroy(r);
}

static void descending_physical_pages_are_separate_runs(void **state) {
  uint64_t phys[4] = {A + 3 * PS, A + 2 * PS, A + PS, A};
  region_t *r = from(4 * PS, PS, phys);
  assert_int_equal(region_runs(r, NULL, 0), 4);
  assert_int_equal(region_largest_run(r), PS);
  assert_false(region_is_contiguous(r, 0, 2 * PS));
  region_destroy(r);
}

static void contiguous_within_a_run_but_not_across_runs(void **state) {
  region_t *r = from(6 * PS, PS, three_runs);
  assert_true(region_is_contiguous(r, 0, 3 * PS));
  assert_true(region_is_contiguous(r, 100, 3 * PS - 100));
  assert_false(region_is_contiguous(r, 100, 3 * PS - 99)); /* one byte into page 3 */
  assert_false(region_is_contiguous(r, 0, 4 * PS));
  assert_true(region_is_contiguous(r, 3 * PS, 2 * PS));
  assert_false(region_is_contiguous(r, 3 * PS, 3 * PS));
  assert_false(region_is_contiguous(r, 2 * PS, 2 * PS)); /* end of run 0 + start of run 1 */
  assert_true(region_is_contiguous(r, 5 * PS, PS));
  region_destroy(r);
}

static void a_range_within_one_page_is_contiguous_even_when_unknown(void **state) {
  region_t *r = from(6 * PS, PS, NULL);
  assert_true(region_is_contiguous(r, 0, PS));
  assert_true(region_is_contiguous(r, 5 * PS + 1, PS - 1));
  assert_false(region_is_contiguous(r, 0, PS + 1));
  assert_false(region_is_contiguous(r, PS - 1, 2));
  assert_int_equal(region_runs(r, NULL, 0), 0);
  assert_int_equal(region_largest_run(r), PS);
  region_destroy(r);
}

static void ranges_outside_the_region_are_never_contiguous(void **state) {
  region_t *r = from(6 * PS, PS, three_runs);
  assert_false(region_is_contiguous(r, 6 * PS, 1));
  assert_false(region_is_contiguous(r, 5 * PS, PS + 1));
  assert_false(region_is_contiguous(r, 1, UINT64_MAX)); /* offset + len overflows */
  assert_true(region_is_contiguous(r, 6 * PS, 0));      /* empty, at the end */
  assert_false(region_is_contiguous(NULL, 0, 1));
  region_destroy(r);
}

static void a_fully_consecutive_region_is_one_run(void **state) {
  enum { N = 1000 };
  uint64_t *phys = malloc(N * sizeof *phys);
  for (int i = 0; i < N; i++)
    phys[i] = B + (uint64_t)i * PS;
  region_t *r = from(N * PS, PS, phys);
  free(phys);
  assert_int_equal(region_runs(r, NULL, 0), 1);
  assert_int_equal(region_largest_run(r), N * PS);
  assert_true(region_is_contiguous(r, 0, N * PS));
  region_destroy(r);
}

static void hugepage_runs_use_the_hugepage_size(void **state) {
  const uint64_t H = 2ull << 20;
  uint64_t phys[4] = {A, A + H, B, B + H};
  region_t *r = from(4 * H, H, phys);
  assert_true(region_hugepages(r));
  assert_int_equal(region_runs(r, NULL, 0), 2);
  assert_true(region_is_contiguous(r, 0, 2 * H));
  assert_false(region_is_contiguous(r, H, 2 * H));
  assert_true(region_is_contiguous(r, H + 5, H - 5)); /* inside one hugepage */
  uint64_t p;
  assert_int_equal(region_phys(r, 3 * H + 4096 * 7, &p), 0);
  assert_int_equal(p, B + H + 4096 * 7);
  region_destroy(r);
}

static void from_phys_rejects_bad_geometry(void **state) {
  region_t *r = (region_t *)0x1;
  assert_int_equal(region_from_phys(0, PS, NULL, &r), PP_EINVAL);
  assert_int_equal(region_from_phys(PS + 1, PS, NULL, &r), PP_EINVAL);
  assert_int_equal(region_from_phys(3 * 3000, 3000, NULL, &r), PP_EINVAL);
  assert_int_equal(region_from_phys(PS, 0, NULL, &r), PP_EINVAL);
  assert_int_equal(region_from_phys(PS, PS, NULL, NULL), PP_EINVAL);
  assert_ptr_equal(r, (region_t *)0x1);
}

static void describe_summarises_many_runs_by_length(void **state) {
  enum { N = 20 };
  uint64_t phys[N];
  for (int i = 0; i < N; i++)
    phys[i] = A + (uint64_t)(N - i) * 2 * PS; /* all separate */
  phys[N - 1] = phys[N - 2] + PS;             /* last two: one run */
  region_t *r = from(N * PS, PS, phys);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  region_describe(r, f);
  fclose(f);
  assert_non_null(strstr(text, "contiguous runs: 19, largest 8 KiB (2 pages); pages out of "
                               "physical order: 18\n"));
  assert_non_null(strstr(text, "... 11 more\n"));
  assert_non_null(strstr(text, "  runs by length:           runs\n"
                               "    1 page                   18\n"
                               "    2-3 pages                 1\n"));
  assert_null(strstr(text, "4-7 pages"));    /* the table ends at the longest run */
  assert_null(strstr(text, "pool's order")); /* no sort, no before column */
  free(text);
  region_destroy(r);
}

/* ---- lost pages (physmap) ----------------------------------------------------------- */

static physmap_t table_of(const uint64_t *phys, uint64_t n) {
  physmap_t pm;
  assert_int_equal(physmap_init(&pm, n * PS, PS), 0);
  assert_int_equal(physmap_set(&pm, phys), 0);
  return pm;
}

static void pm_check(const physmap_t *pm) {
  char why[256] = "";
  if (physmap_check(pm, why, sizeof why) != 0) fail_msg("physmap_check: %s", why);
}

static void a_lost_page_has_no_address_and_splits_its_run(void **state) {
  uint64_t phys[6];
  for (int i = 0; i < 6; i++)
    phys[i] = A + (uint64_t)i * PS; /* one run of six */
  physmap_t pm = table_of(phys, 6);
  uint64_t gen = pm.generation;
  physmap_mark_lost(&pm, 2, 1);
  pm_check(&pm);
  assert_true(pm.generation != gen);
  uint64_t p;
  assert_int_equal(physmap_phys(&pm, 2 * PS + 1, &p), PP_ENOENT);
  assert_int_equal(physmap_phys(&pm, 3 * PS, &p), 0);
  assert_int_equal(p, A + 3 * PS);
  physmap_run_t runs[4];
  assert_int_equal(physmap_runs(&pm, runs, 4), 2); /* the lost page is in no run */
  assert_int_equal(runs[0].offset, 0);
  assert_int_equal(runs[0].length, 2 * PS);
  assert_int_equal(runs[1].offset, 3 * PS);
  assert_int_equal(runs[1].length, 3 * PS);
  assert_int_equal(physmap_largest_run(&pm), 3 * PS);
  assert_false(physmap_is_contiguous(&pm, 2 * PS, 1)); /* not even within the page */
  assert_false(physmap_is_contiguous(&pm, PS, 2 * PS));
  assert_true(physmap_is_contiguous(&pm, 3 * PS, 3 * PS));
  assert_true(physmap_range_lost(&pm, 2 * PS - 1, 2));
  assert_false(physmap_range_lost(&pm, 3 * PS, 3 * PS));
  physmap_fini(&pm);
}

static void restoring_a_page_at_its_old_address_merges_the_runs_again(void **state) {
  uint64_t phys[6];
  for (int i = 0; i < 6; i++)
    phys[i] = A + (uint64_t)i * PS;
  physmap_t pm = table_of(phys, 6);
  physmap_mark_lost(&pm, 1, 3);
  physmap_range_t lost[2];
  assert_int_equal(physmap_lost_ranges(&pm, lost, 2), 1);
  assert_int_equal(lost[0].offset, PS);
  assert_int_equal(lost[0].length, 3 * PS);
  uint64_t elsewhere = C; /* page 2 comes back somewhere else: three runs */
  assert_int_equal(physmap_restore(&pm, 2, 1, &elsewhere), 0);
  pm_check(&pm);
  assert_int_equal(physmap_lost_ranges(&pm, NULL, 0), 2);
  assert_int_equal(physmap_runs(&pm, NULL, 0), 3);
  uint64_t back[2] = {A + PS, A + 3 * PS}; /* pages 1 and 3 where they were */
  assert_int_equal(physmap_restore(&pm, 1, 1, &back[0]), 0);
  assert_int_equal(physmap_restore(&pm, 3, 1, &back[1]), 0);
  pm_check(&pm);
  assert_int_equal(pm.nr_lost, 0);
  assert_int_equal(physmap_runs(&pm, NULL, 0), 3); /* [0,1] at A, [2] at C, [3..5] at A */
  assert_false(physmap_is_contiguous(&pm, PS, 2 * PS));
  physmap_fini(&pm);
}

static void lost_pages_are_tracked_even_when_addresses_are_unknown(void **state) {
  physmap_t pm;
  assert_int_equal(physmap_init(&pm, 8 * PS, PS), 0);
  physmap_forget(&pm, "hidden");
  physmap_mark_lost(&pm, 7, 1);
  pm_check(&pm);
  assert_false(physmap_is_contiguous(&pm, 7 * PS, 1));
  assert_true(physmap_is_contiguous(&pm, 6 * PS, PS));
  assert_int_equal(physmap_restore(&pm, 7, 1, NULL), 0);
  assert_int_equal(pm.nr_lost, 0);
  assert_true(physmap_is_contiguous(&pm, 7 * PS, 1));
  physmap_fini(&pm);
}

static void when_every_page_is_lost_there_are_no_runs(void **state) {
  physmap_t pm = table_of(three_runs, 6);
  physmap_mark_lost(&pm, 0, 6);
  pm_check(&pm);
  assert_int_equal(physmap_runs(&pm, NULL, 0), 0);
  assert_int_equal(physmap_largest_run(&pm), 0);
  assert_int_equal(physmap_lost_ranges(&pm, NULL, 0), 1);
  physmap_fini(&pm);
}

static void the_validator_finds_a_lost_page_inside_a_run(void **state) {
  physmap_t pm = table_of(three_runs, 6);
  char why[256] = "";
  pm.lost[0] |= 1u << 1; /* behind the table's back: page 1 lost, still in run 0 */
  pm.nr_lost = 1;
  assert_int_equal(physmap_check(&pm, why, sizeof why), PP_ECORRUPT);
  assert_non_null(strstr(why, "lost page 1"));
  pm.nr_lost = 0; /* and a count that disagrees with the bitmap */
  assert_int_equal(physmap_check(&pm, why, sizeof why), PP_ECORRUPT);
  assert_non_null(strstr(why, "marked lost"));
  physmap_fini(&pm);
}

/* ---- run statistics (region_run_stats) --------------------------------------------- */

static void run_stats_count_runs_longest_and_lengths_by_powers_of_two(void **state) {
  /* Runs of 1, 2, 3, 4 and 9 pages, ascending: buckets 1 | 2-3 | 4-7 | 8-15. */
  static const unsigned lens[] = {1, 2, 3, 4, 9};
  uint64_t phys[19], at = A;
  size_t i = 0;
  for (size_t k = 0; k < 5; k++) {
    for (unsigned j = 0; j < lens[k]; j++)
      phys[i++] = at + j * PS;
    at += (lens[k] + 1) * PS; /* a gap: the next run is separate */
  }
  region_t *r = from(19 * PS, PS, phys);
  region_run_stats_t st;
  assert_int_equal(region_run_stats(r, &st), 0);
  assert_true(st.known);
  assert_int_equal(st.page_size, PS);
  assert_int_equal(st.pages, 19);
  assert_int_equal(st.nr_runs, 5);
  assert_int_equal(st.longest, 9 * PS);
  assert_int_equal(st.descents, 0);
  assert_int_equal(st.nr_buckets, 4);
  assert_int_equal(st.buckets[0], 1); /* 1 page */
  assert_int_equal(st.buckets[1], 2); /* 2-3 */
  assert_int_equal(st.buckets[2], 1); /* 4-7 */
  assert_int_equal(st.buckets[3], 1); /* 8-15 */
  for (unsigned k = 4; k < REGION_RUN_BUCKETS; k++)
    assert_int_equal(st.buckets[k], 0);
  assert_int_equal(physmap_bucket_min(2), 4);
  assert_int_equal(physmap_bucket_max(2), 7);
  assert_int_equal(physmap_bucket_max(REGION_RUN_BUCKETS - 1), UINT64_MAX);
  region_destroy(r);
}

static void run_stats_count_the_pages_out_of_physical_order(void **state) {
  /* three_runs: A.. then B.. (ascending), then C below B: one descent. */
  region_t *r = from(6 * PS, PS, three_runs);
  region_run_stats_t st;
  assert_int_equal(region_run_stats(r, &st), 0);
  assert_int_equal(st.nr_runs, 3);
  assert_int_equal(st.descents, 1);
  region_destroy(r);
  uint64_t down[4] = {A + 3 * PS, A + 2 * PS, A + PS, A};
  r = from(4 * PS, PS, down);
  assert_int_equal(region_run_stats(r, &st), 0);
  assert_int_equal(st.nr_runs, 4);
  assert_int_equal(st.descents, 3);
  assert_int_equal(st.buckets[0], 4);
  region_destroy(r);
}

static void run_stats_of_unknown_addresses_promise_one_page(void **state) {
  region_t *r = from(6 * PS, PS, NULL);
  region_run_stats_t st;
  memset(&st, 0xff, sizeof st);
  assert_int_equal(region_run_stats(r, &st), 0);
  assert_false(st.known);
  assert_int_equal(st.nr_runs, 0);
  assert_int_equal(st.pages, 0);
  assert_int_equal(st.longest, PS);
  assert_int_equal(st.nr_buckets, 0);
  assert_int_equal(st.buckets[0], 0);
  assert_int_equal(region_run_stats(NULL, &st), PP_EINVAL);
  assert_int_equal(region_run_stats(r, NULL), PP_EINVAL);
  region_sort_info_t si;
  assert_int_equal(region_sort_info(r, &si), 0);
  assert_int_equal(si.state, REGION_SORT_OFF); /* a table-only region was never sorted */
  assert_int_equal(region_sort_info(NULL, &si), PP_EINVAL);
  region_destroy(r);
}

static void run_stats_leave_lost_pages_out(void **state) {
  uint64_t phys[6];
  for (int i = 0; i < 6; i++)
    phys[i] = A + (uint64_t)i * PS;
  physmap_t pm = table_of(phys, 6);
  physmap_mark_lost(&pm, 2, 1);
  physmap_run_stats_t st;
  physmap_run_stats(&pm, &st);
  assert_int_equal(st.pages, 5);
  assert_int_equal(st.nr_runs, 2);
  assert_int_equal(st.longest, 3 * PS);
  assert_int_equal(st.descents, 0);   /* page 3 is above page 1, the page before it not lost */
  assert_int_equal(st.buckets[1], 2); /* runs of 2 and 3 pages */
  physmap_fini(&pm);
}

static void run_stats_of_an_address_list_equal_those_of_its_table(void **state) {
  enum { N = 300 };
  uint64_t phys[N];
  uint64_t x = 12345;
  for (int i = 0; i < N; i++) { /* a deterministic jumble of runs, ups and downs */
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    phys[i] = i && (x >> 60) < 10 ? phys[i - 1] + PS : B + (x >> 40) * PS;
  }
  physmap_t pm = table_of(phys, N);
  physmap_run_stats_t a, b;
  physmap_run_stats(&pm, &a);
  physmap_run_stats_of(phys, N, PS, &b);
  assert_true(a.known && b.known);
  assert_int_equal(a.page_size, b.page_size);
  assert_int_equal(a.pages, b.pages);
  assert_int_equal(a.nr_runs, b.nr_runs);
  assert_int_equal(a.longest, b.longest);
  assert_int_equal(a.descents, b.descents);
  assert_int_equal(a.nr_buckets, b.nr_buckets);
  assert_memory_equal(a.buckets, b.buckets, sizeof a.buckets);
  assert_true(a.nr_runs > 10 && a.nr_runs < N);
  physmap_run_stats_of(NULL, N, PS, &b);
  assert_false(b.known);
  physmap_fini(&pm);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(phys_of_an_offset_adds_the_offset_within_its_page),
      cmocka_unit_test(phys_outside_the_region_is_erange_and_unknown_is_enoent),
      cmocka_unit_test(runs_merge_physically_consecutive_pages),
      cmocka_unit_test(runs_fills_at_most_n_and_returns_the_total),
      cmocka_unit_test(descending_physical_pages_are_separate_runs),
      cmocka_unit_test(contiguous_within_a_run_but_not_across_runs),
      cmocka_unit_test(a_range_within_one_page_is_contiguous_even_when_unknown),
      cmocka_unit_test(ranges_outside_the_region_are_never_contiguous),
      cmocka_unit_test(a_fully_consecutive_region_is_one_run),
      cmocka_unit_test(hugepage_runs_use_the_hugepage_size),
      cmocka_unit_test(from_phys_rejects_bad_geometry),
      cmocka_unit_test(describe_summarises_many_runs_by_length),
      cmocka_unit_test(run_stats_count_runs_longest_and_lengths_by_powers_of_two),
      cmocka_unit_test(run_stats_count_the_pages_out_of_physical_order),
      cmocka_unit_test(run_stats_of_unknown_addresses_promise_one_page),
      cmocka_unit_test(run_stats_leave_lost_pages_out),
      cmocka_unit_test(run_stats_of_an_address_list_equal_those_of_its_table),
      cmocka_unit_test(a_lost_page_has_no_address_and_splits_its_run),
      cmocka_unit_test(restoring_a_page_at_its_old_address_merges_the_runs_again),
      cmocka_unit_test(lost_pages_are_tracked_even_when_addresses_are_unknown),
      cmocka_unit_test(when_every_page_is_lost_there_are_no_runs),
      cmocka_unit_test(the_validator_finds_a_lost_page_inside_a_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
