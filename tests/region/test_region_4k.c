/*
 * test_region_4k.c — a real region in 4 KiB mode (always possible): geometry, seals,
 * sharing through the fd, pinning, physical addresses against an independent pagemap
 * reading, chunked population with progress, adoption of an existing memfd.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "osl.h"
#include "region.h"
#include "region_internal.h"
#include "region_test.h"

#define PS 4096ull
#define MIB (1ull << 20)

static region_t *make(uint64_t size, const char *name, logcap_t *log) {
  region_config_t cfg = {
      .size = size, .policy = REGION_PAGE_4K, .name = name, .log = logcap_fn, .log_ctx = log};
  region_t *r = NULL;
  assert_int_equal(region_create(&cfg, &r), 0);
  assert_non_null(r);
  return r;
}

static void size_is_rounded_up_to_the_page_and_logged(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(3 * PS + 1, "pp-4k-round", &log);
  assert_int_equal(region_size(r), 4 * PS);
  assert_int_equal(region_page_size(r), PS);
  assert_false(region_hugepages(r));
  assert_non_null(region_base(r));
  assert_true(region_fd(r) >= 0);
  assert_non_null(strstr(log.text, "rounded up from 12289 B to 16 KiB"));
  region_destroy(r);
}

static void a_size_that_is_not_a_power_of_two_is_kept(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(3 * MIB, "pp-4k-npot", &log);
  assert_int_equal(region_size(r), 3 * MIB);
  assert_null(strstr(log.text, "rounded"));
  region_destroy(r);
}

static void region_is_sealed_against_resizing(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(MIB, "pp-4k-seals", &log);
  int fd = region_fd(r);
  int seals = fcntl(fd, F_GET_SEALS);
  assert_true(seals >= 0);
  assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
                   F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  errno = 0;
  assert_int_equal(ftruncate(fd, MIB / 2), -1);
  assert_int_equal(errno, EPERM);
  errno = 0;
  assert_int_equal(ftruncate(fd, 2 * MIB), -1);
  assert_int_equal(errno, EPERM);
  errno = 0;
  assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1); /* F_SEAL_SEAL: no more seals */
  assert_int_equal(errno, EPERM);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  region_destroy(r);
}

static void a_second_mapping_of_the_fd_shares_the_bytes(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(MIB, "pp-4k-share", &log);
  char *base = region_base(r);
  char *other = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_SHARED, region_fd(r), 0);
  assert_true(other != MAP_FAILED);
  memcpy(base + 12345, "pinpool", 8);
  assert_string_equal(other + 12345, "pinpool");
  other[MIB - 1] = 'z';
  assert_int_equal(base[MIB - 1], 'z');
  munmap(other, MIB);
  region_destroy(r);
}

static uint64_t vm_locked_kib(void) {
  char line[256];
  uint64_t kib = 0;
  FILE *f = fopen("/proc/self/status", "r");
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmLck: %" SCNu64, &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

static void pages_are_mlocked_when_allowed(void **state) {
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &rl), 0);
  if (geteuid() != 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 8 * MIB) {
    print_message("skipped: RLIMIT_MEMLOCK below 8 MiB and not root: mlock cannot work\n");
    skip();
  }
  logcap_t log;
  logcap_init(&log);
  uint64_t before = vm_locked_kib();
  region_t *r = make(4 * MIB, "pp-4k-mlock", &log);
  assert_true(vm_locked_kib() >= before + 4096);
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  region_describe(r, f);
  fclose(f);
  assert_non_null(strstr(text, "pinned: yes (mlock)"));
  assert_non_null(strstr(text, "sealed: shrink grow seal"));
  free(text);
  region_destroy(r);
  assert_int_equal(vm_locked_kib(), before);
}

static void mlock_refused_under_a_low_limit_is_a_warning_naming_the_fix(void **state) {
  struct rlimit old, low;
  assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &old), 0);
  low = old;
  low.rlim_cur = 64 << 10;
  assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &low), 0);
  logcap_t log;
  logcap_init(&log);
  osl_reset();
  osl_fail_nth(OSL_MLOCK, 1, ENOMEM); /* as root CAP_IPC_LOCK would let it through */
  region_t *r = make(MIB, "pp-4k-nolock", &log);
  osl_reset();
  assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &old), 0);
  assert_int_equal(log.worst, LOG_WARNING);
  assert_non_null(strstr(log.text, "RLIMIT_MEMLOCK is 64 KiB"));
  assert_non_null(strstr(log.text, "LimitMEMLOCK="));
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  region_describe(r, f);
  fclose(f);
  assert_non_null(strstr(text, "pinned: NO"));
  free(text);
  region_destroy(r);
}

static void physical_addresses_match_pagemap_of_a_second_mapping(void **state) {
  if (!pagemap_gives_pfns()) {
    print_message("skipped: /proc/self/pagemap hides frame numbers here (no CAP_SYS_ADMIN)\n");
    skip();
  }
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(2 * MIB, "pp-4k-phys", &log);
  assert_true(region_phys_known(r));
  char why[256] = "";
  assert_int_equal(region_check(r, why, sizeof why), 0);
  char *other = mmap(NULL, 2 * MIB, PROT_READ, MAP_SHARED | MAP_POPULATE, region_fd(r), 0);
  assert_true(other != MAP_FAILED);
  for (uint64_t off = 0; off < 2 * MIB; off += PS) {
    uint64_t mine, theirs;
    assert_int_equal(region_phys(r, off + 17, &mine), 0);
    assert_int_equal(pagemap_phys_of(other + off + 17, &theirs), 0);
    assert_int_equal(mine, theirs);
  }
  munmap(other, 2 * MIB);
  region_destroy(r);
}

static void runs_cover_the_region_and_agree_with_each_page(void **state) {
  if (!pagemap_gives_pfns()) {
    print_message("skipped: /proc/self/pagemap hides frame numbers here (no CAP_SYS_ADMIN)\n");
    skip();
  }
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(4 * MIB, "pp-4k-runs", &log);
  size_t n = region_runs(r, NULL, 0);
  assert_true(n >= 1);
  region_run_t *runs = calloc(n, sizeof *runs);
  assert_int_equal(region_runs(r, runs, n), n);
  uint64_t next = 0, largest = 0;
  for (size_t k = 0; k < n; k++) {
    assert_int_equal(runs[k].offset, next);
    uint64_t p;
    assert_int_equal(region_phys(r, runs[k].offset + runs[k].length - 1, &p), 0);
    assert_int_equal(p, runs[k].phys + runs[k].length - 1);
    assert_true(region_is_contiguous(r, runs[k].offset, runs[k].length));
    if (k + 1 < n) assert_false(region_is_contiguous(r, runs[k].offset, runs[k].length + 1));
    if (runs[k].length > largest) largest = runs[k].length;
    next += runs[k].length;
  }
  assert_int_equal(next, 4 * MIB);
  assert_int_equal(region_largest_run(r), largest);
  free(runs);
  region_destroy(r);
}

static void large_regions_populate_in_chunks_reporting_progress(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_config_t cfg = {.size = 4 * MIB,
                         .policy = REGION_PAGE_4K,
                         .name = "pp-4k-chunks",
                         .log = logcap_fn,
                         .log_ctx = &log};
  region_tuning_t t = {.populate_above = MIB, .populate_chunk = MIB};
  region_t *r = NULL;
  osl_reset();
  assert_int_equal(region_create_tuned(&cfg, &t, &r), 0);
  assert_int_equal(osl_calls(OSL_MADVISE), 4);
  assert_non_null(strstr(log.text, "populating: 1 MiB of 4 MiB (25%)"));
  assert_non_null(strstr(log.text, "populating: 4 MiB of 4 MiB (100%)"));
  unsigned char vec[1024];
  assert_int_equal(mincore(region_base(r), 4 * MIB, vec), 0);
  for (int i = 0; i < 1024; i++)
    assert_true(vec[i] & 1);
  region_destroy(r);
  osl_reset();
}

static void chunked_populate_falls_back_to_map_fixed_on_old_kernels(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_config_t cfg = {.size = 3 * MIB,
                         .policy = REGION_PAGE_4K,
                         .name = "pp-4k-fixed",
                         .log = logcap_fn,
                         .log_ctx = &log};
  region_tuning_t t = {.populate_above = MIB, .populate_chunk = MIB};
  region_t *r = NULL;
  osl_reset();
  osl_fail_nth(OSL_MADVISE, 1, EINVAL); /* what a kernel before 5.14 answers */
  assert_int_equal(region_create_tuned(&cfg, &t, &r), 0);
  assert_int_equal(osl_calls(OSL_MADVISE), 1);
  assert_int_equal(osl_calls(OSL_MMAP), 1 + 3);
  assert_non_null(strstr(log.text, "populating: 3 MiB of 3 MiB (100%)"));
  assert_int_equal(count_memfd_maps("pp-4k-fixed"), 1); /* MAP_FIXED replaced, not added */
  memset(region_base(r), 0xa5, 3 * MIB);
  region_destroy(r);
  assert_int_equal(count_memfd_maps("pp-4k-fixed"), 0);
  osl_reset();
}

static void bad_configurations_are_einval_and_leave_ret_untouched(void **state) {
  region_t *r = (region_t *)0x1;
  logcap_t log;
  logcap_init(&log);
  region_config_t cfg = {
      .size = 0, .policy = REGION_PAGE_4K, .log = logcap_fn, .log_ctx = &log};
  assert_int_equal(region_create(&cfg, &r), PP_EINVAL);
  cfg.size = 1ull << 47;
  assert_int_equal(region_create(&cfg, &r), PP_EINVAL);
  cfg.size = MIB;
  cfg.policy = (region_page_policy_t)9;
  assert_int_equal(region_create(&cfg, &r), PP_EINVAL);
  assert_int_equal(region_create(NULL, &r), PP_EINVAL);
  cfg.policy = REGION_PAGE_4K;
  assert_int_equal(region_create(&cfg, NULL), PP_EINVAL);
  char name[300];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  cfg.name = name; /* longer than memfd_create takes: refused up front, not as PP_EOS */
  assert_int_equal(region_create(&cfg, &r), PP_EINVAL);
  assert_ptr_equal(r, (region_t *)0x1);
}

/* ---- adoption (restart survival) -------------------------------------------------- */

static void adopting_the_fd_keeps_contents_geometry_and_physical_addresses(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(2 * MIB, "pp-4k-adopt", &log);
  memcpy((char *)region_base(r) + 4096 * 3, "survives a restart", 19);
  uint64_t phys_before = 0;
  bool known = region_phys(r, 4096 * 3, &phys_before) == 0;
  int fd = dup(region_fd(r));
  region_destroy(r);

  region_config_t cfg = {.policy = REGION_PAGE_AUTO, .log = logcap_fn, .log_ctx = &log};
  region_t *a = NULL;
  assert_int_equal(region_adopt(fd, &cfg, &a), 0);
  assert_int_equal(region_fd(a), fd);
  assert_int_equal(region_size(a), 2 * MIB);
  assert_int_equal(region_page_size(a), PS);
  assert_false(region_hugepages(a));
  assert_string_equal((char *)region_base(a) + 4096 * 3, "survives a restart");
  uint64_t phys_after;
  if (known) {
    assert_int_equal(region_phys(a, 4096 * 3, &phys_after), 0);
    assert_int_equal(phys_after, phys_before);
  }
  region_destroy(a);
  assert_int_equal(fcntl(fd, F_GETFD), -1); /* the region owned it and closed it */
}

static void adopt_refuses_a_size_or_page_size_that_differs(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(MIB, "pp-4k-adopt2", &log);
  int fd = dup(region_fd(r));
  region_destroy(r);
  int fds = count_open_fds();
  region_t *a = (region_t *)0x1;
  region_config_t cfg = {.size = 2 * MIB, .log = logcap_fn, .log_ctx = &log};
  assert_int_equal(region_adopt(fd, &cfg, &a), PP_EINVAL);
  cfg.size = 0;
  cfg.policy = REGION_PAGE_2M;
  assert_int_equal(region_adopt(fd, &cfg, &a), PP_EINVAL);
  assert_ptr_equal(a, (region_t *)0x1);
  assert_int_equal(count_open_fds(), fds);
  assert_true(fcntl(fd, F_GETFD) >= 0); /* still the caller's */
  cfg.size = MIB;
  cfg.policy = REGION_PAGE_4K;
  assert_int_equal(region_adopt(fd, &cfg, &a), 0);
  region_destroy(a);
}

static void adopt_seals_an_unsealed_memfd_but_refuses_one_that_cannot_be(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_config_t cfg = {.log = logcap_fn, .log_ctx = &log};
  region_t *a = NULL;

  int fd = memfd_create("pp-4k-unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, MIB), 0);
  assert_int_equal(region_adopt(fd, &cfg, &a), 0);
  int seals = fcntl(fd, F_GET_SEALS);
  assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
  region_destroy(a);

  fd = memfd_create("pp-4k-nosealing", MFD_CLOEXEC); /* born with F_SEAL_SEAL */
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, MIB), 0);
  a = (region_t *)0x1;
  assert_int_equal(region_adopt(fd, &cfg, &a), PP_EINVAL);
  assert_non_null(strstr(log.text, "cannot seal it"));
  assert_ptr_equal(a, (region_t *)0x1);
  close(fd);

  FILE *tmp = tmpfile(); /* not a memfd at all */
  assert_non_null(tmp);
  assert_int_equal(ftruncate(fileno(tmp), MIB), 0);
  assert_int_equal(region_adopt(fileno(tmp), &cfg, &a), PP_EINVAL);
  fclose(tmp);
  assert_int_equal(region_adopt(-1, &cfg, &a), PP_EINVAL);
  assert_ptr_equal(a, (region_t *)0x1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(size_is_rounded_up_to_the_page_and_logged),
      cmocka_unit_test(a_size_that_is_not_a_power_of_two_is_kept),
      cmocka_unit_test(region_is_sealed_against_resizing),
      cmocka_unit_test(a_second_mapping_of_the_fd_shares_the_bytes),
      cmocka_unit_test(pages_are_mlocked_when_allowed),
      cmocka_unit_test(mlock_refused_under_a_low_limit_is_a_warning_naming_the_fix),
      cmocka_unit_test(physical_addresses_match_pagemap_of_a_second_mapping),
      cmocka_unit_test(runs_cover_the_region_and_agree_with_each_page),
      cmocka_unit_test(large_regions_populate_in_chunks_reporting_progress),
      cmocka_unit_test(chunked_populate_falls_back_to_map_fixed_on_old_kernels),
      cmocka_unit_test(bad_configurations_are_einval_and_leave_ret_untouched),
      cmocka_unit_test(adopting_the_fd_keeps_contents_geometry_and_physical_addresses),
      cmocka_unit_test(adopt_refuses_a_size_or_page_size_that_differs),
      cmocka_unit_test(adopt_seals_an_unsealed_memfd_but_refuses_one_that_cannot_be),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
