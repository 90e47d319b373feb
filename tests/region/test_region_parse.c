/*
 * test_region_parse.c — sizes, page-size policies, and the policy's choice of page size
 * from what the kernel offers (pure functions and a fake /sys/kernel/mm/hugepages).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "region.h"
#include "units.h"
#include "hugetlb.h"

static void parse_size_reads_binary_suffixes(void **state) {
  static const struct {
    const char *s;
    uint64_t v;
  } cases[] = {
      {"0", 0},
      {"4096", 4096},
      {"4K", 4096},
      {"4k", 4096},
      {"4KiB", 4096},
      {"4kb", 4096},
      {"64M", 64ull << 20},
      {"2G", 2ull << 30},
      {"1T", 1ull << 40},
      {"10 M", 10ull << 20},
      {"7B", 7},
      {"3000m", 3000ull << 20},
      {"18446744073709551615", UINT64_MAX},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t v = 12345;
    assert_int_equal(units_parse_size(cases[i].s, &v), 0);
    assert_int_equal(v, cases[i].v);
  }
}

static void parse_size_rejects_junk_and_leaves_result_untouched(void **state) {
  static const char *const junk[] = {"",      "-1", "+1",   " 1", "1.5G", "1X",
                                     "1KiBs", "M",  "0x10", "1 ", "1K B", "1iB"};
  for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
    uint64_t v = 777;
    assert_int_equal(units_parse_size(junk[i], &v), PP_EINVAL);
    assert_int_equal(v, 777);
  }
  uint64_t v;
  assert_int_equal(units_parse_size(NULL, &v), PP_EINVAL);
  assert_int_equal(units_parse_size("1", NULL), PP_EINVAL);
}

static void parse_size_reports_overflow_as_erange(void **state) {
  uint64_t v = 1;
  assert_int_equal(units_parse_size("18446744073709551616", &v), PP_ERANGE);
  assert_int_equal(units_parse_size("16777216T", &v), PP_ERANGE); /* 2^24 TiB = 2^64 */
  assert_int_equal(units_parse_size("16777215T", &v), 0);
  assert_int_equal(v, 16777215ull << 40);
}

static void format_size_uses_the_largest_exact_unit_and_round_trips(void **state) {
  static const struct {
    uint64_t v;
    const char *s;
  } cases[] = {
      {0, "0 B"},
      {1, "1 B"},
      {4096, "4 KiB"},
      {2ull << 20, "2 MiB"},
      {1536ull << 20, "1536 MiB"},
      {1ull << 30, "1 GiB"},
      {3ull << 40, "3 TiB"},
      {1ull << 50, "1024 TiB"},
      {12345, "12345 B"},
  };
  char buf[32];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    assert_int_equal(units_format_size(cases[i].v, buf, sizeof buf), strlen(cases[i].s));
    assert_string_equal(buf, cases[i].s);
    uint64_t back;
    assert_int_equal(units_parse_size(buf, &back), 0);
    assert_int_equal(back, cases[i].v);
  }
  assert_int_equal(units_format_size(2ull << 20, buf, 5), PP_ERANGE); /* "2 MiB" + NUL */
  assert_int_equal(units_format_size(2ull << 20, buf, 6), 5);
}

static void parse_policy_accepts_names_and_equivalent_sizes(void **state) {
  static const struct {
    const char *s;
    region_page_policy_t p;
  } cases[] = {
      {"auto", REGION_PAGE_AUTO}, {"AUTO", REGION_PAGE_AUTO}, {"4K", REGION_PAGE_4K},
      {"4k", REGION_PAGE_4K},     {"4096", REGION_PAGE_4K},   {"2M", REGION_PAGE_2M},
      {"2MiB", REGION_PAGE_2M},   {"2048K", REGION_PAGE_2M},  {"1G", REGION_PAGE_1G},
      {"1gib", REGION_PAGE_1G},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    region_page_policy_t p = (region_page_policy_t)99;
    assert_int_equal(region_parse_policy(cases[i].s, &p), 0);
    assert_int_equal(p, cases[i].p);
  }
  static const char *const bad[] = {"", "3M", "huge", "1T", "4K4", "2 MiB x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    region_page_policy_t p = (region_page_policy_t)99;
    assert_int_equal(region_parse_policy(bad[i], &p), PP_EINVAL);
    assert_int_equal(p, 99);
  }
}

static void policy_name_parses_back_to_the_same_policy(void **state) {
  for (int p = REGION_PAGE_AUTO; p <= REGION_PAGE_1G; p++) {
    region_page_policy_t back;
    assert_int_equal(region_parse_policy(region_policy_name((region_page_policy_t)p), &back),
                     0);
    assert_int_equal(back, p);
  }
  assert_string_equal(region_policy_name((region_page_policy_t)42), "?");
}

#define MIB (1ull << 20)
#define GIB (1ull << 30)
#define PS4K ((uint64_t)sysconf(_SC_PAGESIZE))

static void explicit_hugepage_size_is_chosen_only_when_offered(void **state) {
  hugetlb_info_t hp[] = {{.page_size = 2 * MIB, .total_pages = 0, .free_pages = 0}};
  uint64_t ps = 0;
  /* offered, even with no free pages: fallocate is the authority on availability */
  assert_int_equal(hugetlb_choose_page(2 * MIB, 64 * MIB, hp, 1, &ps), 0);
  assert_int_equal(ps, 2 * MIB);
  ps = 0;
  assert_int_equal(hugetlb_choose_page(1 * GIB, 64 * MIB, hp, 1, &ps), PP_ENOHUGE);
  assert_int_equal(ps, 0);
  assert_int_equal(hugetlb_choose_page(2 * MIB, 64 * MIB, NULL, 0, &ps), PP_ENOHUGE);
  assert_int_equal(hugetlb_choose_page(PS4K, 64 * MIB, hp, 1, &ps), 0);
  assert_int_equal(ps, (uint64_t)sysconf(_SC_PAGESIZE));
}

static void auto_takes_the_largest_size_with_enough_free_pages(void **state) {
  hugetlb_info_t hp[] = {
      {.page_size = 2 * MIB, .total_pages = 1000, .free_pages = 1000},
      {.page_size = 1 * GIB, .total_pages = 4, .free_pages = 4},
  };
  uint64_t ps;
  assert_int_equal(hugetlb_choose_page(0, 3 * GIB, hp, 2, &ps), 0);
  assert_int_equal(ps, 1 * GIB);
  /* 5 GiB: 5 one-GiB pages needed, 4 free; 2560 two-MiB pages needed, 1000 free */
  assert_int_equal(hugetlb_choose_page(0, 5 * GIB, hp, 2, &ps), 0);
  assert_int_equal(ps, (uint64_t)sysconf(_SC_PAGESIZE));
  /* 1.5 GiB: 2 one-GiB pages (rounded up) are free, so the larger size wins */
  assert_int_equal(hugetlb_choose_page(0, 3 * GIB / 2, hp, 2, &ps), 0);
  assert_int_equal(ps, 1 * GIB);
  /* 1 GiB pages all taken: 2 MiB pages it is (1.5 GiB = 768 pages, 1000 free) */
  hp[1].free_pages = 0;
  assert_int_equal(hugetlb_choose_page(0, 3 * GIB / 2, hp, 2, &ps), 0);
  assert_int_equal(ps, 2 * MIB);
}

static void auto_never_picks_a_page_larger_than_the_region(void **state) {
  hugetlb_info_t hp[] = {
      {.page_size = 2 * MIB, .total_pages = 100, .free_pages = 100},
      {.page_size = 1 * GIB, .total_pages = 4, .free_pages = 4},
  };
  uint64_t ps;
  assert_int_equal(hugetlb_choose_page(0, 64 * MIB, hp, 2, &ps), 0);
  assert_int_equal(ps, 2 * MIB);
  assert_int_equal(hugetlb_choose_page(0, 1 * MIB, hp, 2, &ps), 0);
  assert_int_equal(ps, (uint64_t)sysconf(_SC_PAGESIZE));
}

static void auto_counts_reserved_pages_as_taken(void **state) {
  hugetlb_info_t hp[] = {
      {.page_size = 2 * MIB, .total_pages = 40, .free_pages = 40, .resv_pages = 10},
  };
  uint64_t ps;
  assert_int_equal(hugetlb_choose_page(0, 60 * MIB, hp, 1, &ps), 0); /* 30 */
  assert_int_equal(ps, 2 * MIB);
  assert_int_equal(hugetlb_choose_page(0, 62 * MIB, hp, 1, &ps), 0); /* 31 */
  assert_int_equal(ps, (uint64_t)sysconf(_SC_PAGESIZE));
}

static void choose_page_rejects_bad_arguments(void **state) {
  uint64_t ps = 9;
  assert_int_equal(hugetlb_choose_page(0, 0, NULL, 0, &ps), PP_EINVAL);
  assert_int_equal(hugetlb_choose_page(3 * MIB, 1, NULL, 0, &ps), PP_EINVAL);
  assert_int_equal(hugetlb_choose_page(512, 1, NULL, 0, &ps), PP_EINVAL);
  assert_int_equal(hugetlb_choose_page(0, 1, NULL, 0, NULL), PP_EINVAL);
  assert_int_equal(ps, 9);
}

/* ---- a fake /sys/kernel/mm/hugepages ---------------------------------------------- */

static void put(const char *dir, const char *sub, const char *file, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, sub);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/%s/%s", dir, sub, file);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void hugepage_sizes_reads_sysfs_layout_sorted_by_size(void **state) {
  char dir[] = "/tmp/pp-region-sysfs-XXXXXX";
  assert_non_null(mkdtemp(dir));
  put(dir, "hugepages-1048576kB", "nr_hugepages", "2\n");
  put(dir, "hugepages-1048576kB", "free_hugepages", "1\n");
  put(dir, "hugepages-1048576kB", "resv_hugepages", "0\n");
  put(dir, "hugepages-2048kB", "nr_hugepages", "10\n");
  put(dir, "hugepages-2048kB", "free_hugepages", "7\n");
  put(dir, "hugepages-2048kB", "resv_hugepages", "2\n");
  put(dir, "not-hugepages", "nr_hugepages", "5\n");
  put(dir, "hugepages-64kB", "nr_hugepages", "garbage"); /* unreadable counts read as 0 */

  hugetlb_info_t hp[4];
  assert_int_equal(hugetlb_sizes_at(dir, hp, 4), 3);
  assert_int_equal(hp[0].page_size, 64 << 10);
  assert_int_equal(hp[0].total_pages, 0);
  assert_int_equal(hp[0].free_pages, 0);
  assert_int_equal(hp[1].page_size, 2 * MIB);
  assert_int_equal(hp[1].total_pages, 10);
  assert_int_equal(hp[1].free_pages, 7);
  assert_int_equal(hp[1].resv_pages, 2);
  assert_int_equal(hp[2].page_size, 1 * GIB);
  assert_int_equal(hp[2].total_pages, 2);
  assert_int_equal(hp[2].free_pages, 1);

  hugetlb_info_t one[1];
  assert_int_equal(hugetlb_sizes_at(dir, one, 1), 1);
  assert_int_equal(one[0].page_size, 64 << 10); /* the smallest first */

  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(hugetlb_sizes_at(dir, hp, 4), 0); /* no such directory: none */
}

static void hugepage_sizes_of_this_kernel_are_sorted_hugepages(void **state) {
  hugetlb_info_t hp[16];
  int n = region_hugepage_sizes(hp, 16);
  assert_true(n >= 0);
  for (int i = 0; i < n; i++) {
    assert_true(hp[i].page_size > (uint64_t)sysconf(_SC_PAGESIZE));
    assert_true(hp[i].free_pages <= hp[i].total_pages);
    if (i) assert_true(hp[i - 1].page_size < hp[i].page_size);
  }
  assert_int_equal(region_hugepage_sizes(NULL, 1), PP_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(parse_size_reads_binary_suffixes),
      cmocka_unit_test(parse_size_rejects_junk_and_leaves_result_untouched),
      cmocka_unit_test(parse_size_reports_overflow_as_erange),
      cmocka_unit_test(format_size_uses_the_largest_exact_unit_and_round_trips),
      cmocka_unit_test(parse_policy_accepts_names_and_equivalent_sizes),
      cmocka_unit_test(policy_name_parses_back_to_the_same_policy),
      cmocka_unit_test(explicit_hugepage_size_is_chosen_only_when_offered),
      cmocka_unit_test(auto_takes_the_largest_size_with_enough_free_pages),
      cmocka_unit_test(auto_never_picks_a_page_larger_than_the_region),
      cmocka_unit_test(auto_counts_reserved_pages_as_taken),
      cmocka_unit_test(choose_page_rejects_bad_arguments),
      cmocka_unit_test(hugepage_sizes_reads_sysfs_layout_sorted_by_size),
      cmocka_unit_test(hugepage_sizes_of_this_kernel_are_sorted_hugepages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
