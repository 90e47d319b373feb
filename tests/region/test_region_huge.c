/*
 * test_region_huge.c — regions backed by 2 MiB hugepages.  Needs root: each test sets
 * the 2 MiB pool to what it needs through /sys/kernel/mm/hugepages/hugepages-2048kB/
 * nr_hugepages (the knob `sysctl vm.nr_hugepages` sets when 2 MiB is the default size)
 * and puts the old value back.  Skips visibly when it cannot have the pages.
 *
 * The tests run in a child process; the parent locks and records the pool first
 * (tests/common/hugepages.h) and restores it after the child exits, whatever happened to
 * it (a failed assertion, an abort under ASan, a signal).
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "osl.h"
#include "region.h"
#include "region_internal.h"
#include "region_test.h"
#include "hugepages.h"

#define H (2ull << 20)

/* Make exactly n 2 MiB pages available to a new region, or skip saying why. */
static void set_available(long n) {
  const char *why = NULL;
  if (!hp_make_available(n, &why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
}

static int restore_pool(void **state) {
  (void)state;
  hp_restore();
  return 0;
}

static region_t *make(uint64_t size, region_page_policy_t policy, const char *name,
                      logcap_t *log) {
  region_config_t cfg = {
      .size = size, .policy = policy, .name = name, .log = logcap_fn, .log_ctx = log};
  region_t *r = NULL;
  int rc = region_create(&cfg, &r);
  if (rc != 0) fail_msg("region_create: %s; log:\n%s", pp_err_name(rc), log->text);
  return r;
}

static void a_2m_region_is_hugetlb_backed_sealed_and_not_mlocked(void **state) {
  set_available(4);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(8 << 20, REGION_PAGE_2M, "pp-huge-basic", &log);
  assert_true(region_hugepages(r));
  assert_int_equal(region_page_size(r), H);
  assert_int_equal(region_size(r), 4 * H);
  assert_int_equal(hp_available(), 0); /* all four taken by fallocate, before any touch */
  int fd = region_fd(r);
  int seals = fcntl(fd, F_GET_SEALS);
  assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                   F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  assert_int_equal(ftruncate(fd, 2 * H), -1);
  assert_int_equal(ftruncate(fd, 8 * H), -1);
  memset(region_base(r), 0x5a, 4 * H);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  region_describe(r, f);
  fclose(f);
  assert_non_null(strstr(text, "hugetlb memfd"));
  assert_non_null(strstr(text, "pinned: yes (hugetlb pages are never swapped)"));
  free(text);
  region_destroy(r);
  assert_int_equal(hp_available(), 4); /* and given back */
}

static void a_size_not_a_multiple_of_2m_is_rounded_up(void **state) {
  set_available(3);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(5 << 20, REGION_PAGE_2M, "pp-huge-round", &log);
  assert_int_equal(region_size(r), 3 * H);
  assert_non_null(strstr(log.text, "rounded up"));
  region_destroy(r);
}

static void physical_address_of_each_2m_page_matches_pagemap_of_a_second_mapping(void **state) {
  if (!pagemap_gives_pfns()) {
    print_message("skipped: /proc/self/pagemap hides frame numbers here (no CAP_SYS_ADMIN)\n");
    skip();
  }
  set_available(4);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(4 * H, REGION_PAGE_2M, "pp-huge-phys", &log);
  assert_true(region_phys_known(r));
  char why[256] = "";
  assert_int_equal(region_check(r, why, sizeof why), 0);
  char *other = mmap(NULL, 4 * H, PROT_READ, MAP_SHARED | MAP_POPULATE, region_fd(r), 0);
  assert_true(other != MAP_FAILED);
  static const uint64_t inside[] = {0, 1, 4096, 4096 * 7 + 99, H / 2, H - 1};
  for (uint64_t page = 0; page < 4; page++) {
    uint64_t head;
    assert_int_equal(region_phys(r, page * H, &head), 0);
    assert_int_equal(head % H, 0); /* a hugepage is physically aligned to its size */
    assert_true(region_is_contiguous(r, page * H, H));
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++) {
      uint64_t off = page * H + inside[i], mine, theirs;
      assert_int_equal(region_phys(r, off, &mine), 0);
      assert_int_equal(pagemap_phys_of(other + off, &theirs), 0);
      if (mine != theirs)
        fail_msg("offset %#" PRIx64 ": region says %#" PRIx64 ", pagemap %#" PRIx64, off, mine,
                 theirs);
    }
  }
  munmap(other, 4 * H);
  region_destroy(r);
}

static void a_too_small_pool_fails_cleanly_at_creation(void **state) {
  set_available(2);
  logcap_t log;
  logcap_init(&log);
  int fds = count_open_fds();
  long total = hp_read("nr_hugepages");
  region_config_t cfg = {.size = 8 * H,
                         .policy = REGION_PAGE_2M,
                         .name = "pp-huge-short",
                         .log = logcap_fn,
                         .log_ctx = &log};
  region_t *r = (region_t *)0x1;
  assert_int_equal(region_create(&cfg, &r), PP_ENOHUGE);
  assert_ptr_equal(r, (region_t *)0x1);
  assert_int_equal(log.worst, LOG_ERR);
  assert_non_null(strstr(log.text, "8 needed, 2 free"));
  char fix[64];
  snprintf(fix, sizeof fix, "=%ld", total + 6);
  assert_non_null(strstr(log.text, "Fix: "));
  assert_non_null(strstr(log.text, fix));
  assert_int_equal(count_open_fds(), fds);
  assert_int_equal(count_memfd_maps("pp-huge-short"), 0);
  assert_int_equal(hp_available(), 2); /* the pages fallocate got before failing came back */
}

static void auto_prefers_2m_pages_when_enough_are_free(void **state) {
  set_available(4);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(8 << 20, REGION_PAGE_AUTO, "pp-huge-auto", &log);
  assert_int_equal(region_page_size(r), H);
  assert_true(log.worst > LOG_WARNING);
  region_destroy(r);
}

static void auto_falls_back_to_4k_with_a_warning_naming_the_fix(void **state) {
  set_available(1);
  logcap_t log;
  logcap_init(&log);
  long total = hp_read("nr_hugepages");
  region_t *r = make(8 << 20, REGION_PAGE_AUTO, "pp-huge-fallback", &log);
  assert_int_equal(region_page_size(r), (uint64_t)sysconf(_SC_PAGESIZE));
  assert_false(region_hugepages(r));
  assert_int_equal(log.worst, LOG_WARNING);
  assert_non_null(strstr(log.text, "4 pages of 2 MiB needed, 1 free"));
  char fix[64];
  snprintf(fix, sizeof fix, "=%ld", total + 3);
  assert_non_null(strstr(log.text, fix));
  region_destroy(r);
}

static void explicit_1g_pages_when_not_offered_are_enohuge(void **state) {
  struct stat st;
  if (stat("/sys/kernel/mm/hugepages/hugepages-1048576kB", &st) == 0) {
    print_message("skipped: this kernel offers 1 GiB pages; the refusal cannot be shown\n");
    skip();
  }
  logcap_t log;
  logcap_init(&log);
  int fds = count_open_fds();
  region_config_t cfg = {
      .size = 8 << 20, .policy = REGION_PAGE_1G, .log = logcap_fn, .log_ctx = &log};
  region_t *r = (region_t *)0x1;
  assert_int_equal(region_create(&cfg, &r), PP_ENOHUGE);
  assert_ptr_equal(r, (region_t *)0x1);
  assert_non_null(strstr(log.text, "not offered by this kernel"));
  assert_int_equal(count_open_fds(), fds);
}

static void hugetlb_os_failures_are_reported_and_leak_nothing(void **state) {
  set_available(2);
  static const struct {
    osl_call_t call;
    int err;
    int rc;
  } cases[] = {
      {OSL_MEMFD_CREATE, EINVAL, PP_ENOHUGE}, /* the kernel refuses this page size */
      {OSL_FALLOCATE, ENOSPC, PP_ENOHUGE},    /* someone took the pages first */
      {OSL_FALLOCATE, EIO, PP_EOS},
      {OSL_ADD_SEALS, EINVAL, PP_EOS}, /* kernel before 4.16: no hugetlb seals */
      {OSL_MMAP, ENOMEM, PP_EOS},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    logcap_t log;
    logcap_init(&log);
    int fds = count_open_fds();
    region_config_t cfg = {.size = 2 * H,
                           .policy = REGION_PAGE_2M,
                           .name = "pp-huge-fault",
                           .log = logcap_fn,
                           .log_ctx = &log,
                           .no_sort = true}; /* the region's own calls; sorting's are
                                                test_region_sort's */
    region_t *r = (region_t *)0x1;
    osl_reset();
    osl_fail_nth(cases[i].call, 1, cases[i].err);
    int rc = region_create(&cfg, &r);
    osl_reset();
    if (rc != cases[i].rc)
      fail_msg("%s failing with %s: expected %s, got %s", osl_call_name(cases[i].call),
               strerror(cases[i].err), pp_err_name(cases[i].rc), pp_err_name(rc));
    assert_ptr_equal(r, (region_t *)0x1);
    assert_non_null(strstr(log.text, strerror(cases[i].err)));
    assert_int_equal(count_open_fds(), fds);
    assert_int_equal(count_memfd_maps("pp-huge-fault"), 0);
    assert_int_equal(hp_available(), 2);
  }
}

static void adopting_a_hugetlb_memfd_finds_its_page_size(void **state) {
  set_available(2);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(2 * H, REGION_PAGE_2M, "pp-huge-adopt", &log);
  strcpy((char *)region_base(r) + H + 5, "still here");
  int fd = dup(region_fd(r));
  region_destroy(r);
  region_config_t cfg = {.policy = REGION_PAGE_AUTO, .log = logcap_fn, .log_ctx = &log};
  region_t *a = NULL;
  assert_int_equal(region_adopt(fd, &cfg, &a), 0);
  assert_true(region_hugepages(a));
  assert_int_equal(region_page_size(a), H);
  assert_int_equal(region_size(a), 2 * H);
  assert_string_equal((char *)region_base(a) + H + 5, "still here");
  assert_int_equal(hp_available(), 0); /* the same two pages, not new ones */
  region_destroy(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(a_2m_region_is_hugetlb_backed_sealed_and_not_mlocked,
                                restore_pool),
      cmocka_unit_test_teardown(a_size_not_a_multiple_of_2m_is_rounded_up, restore_pool),
      cmocka_unit_test_teardown(
          physical_address_of_each_2m_page_matches_pagemap_of_a_second_mapping, restore_pool),
      cmocka_unit_test_teardown(a_too_small_pool_fails_cleanly_at_creation, restore_pool),
      cmocka_unit_test_teardown(auto_prefers_2m_pages_when_enough_are_free, restore_pool),
      cmocka_unit_test_teardown(auto_falls_back_to_4k_with_a_warning_naming_the_fix,
                                restore_pool),
      cmocka_unit_test_teardown(explicit_1g_pages_when_not_offered_are_enohuge, restore_pool),
      cmocka_unit_test_teardown(hugetlb_os_failures_are_reported_and_leak_nothing,
                                restore_pool),
      cmocka_unit_test_teardown(adopting_a_hugetlb_memfd_finds_its_page_size, restore_pool),
  };
  const char *why = NULL;
  bool may_resize = hp_begin(&why); /* lock and record the pool here, in the parent; a
                                       child without it skips each test saying why */
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) _exit(cmocka_run_group_tests(tests, NULL, NULL));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (may_resize && !hp_restore()) return 1;
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "tests killed by signal %d (pool restored)\n", WTERMSIG(status));
    return 1;
  }
  return WEXITSTATUS(status);
}
