/*
 * test_region_faults.c — every OS call region_create and region_adopt make, made to fail
 * in turn (the 1st, 2nd, ... call of each kind): the failure must be reported (an error
 * code, or a logged warning when the region can do without — mlock, the io_uring pin,
 * pagemap), and nothing may leak — no fd (counted in /proc/self/fd: the io_uring ring
 * is one), no mapping (counted in /proc/self/maps), no memory (LeakSanitizer in the ASan
 * build).  A region bound to a NUMA node adds set_mempolicy (bind before, default after),
 * and both are failed in turn like the rest.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "osl.h"
#include "region.h"
#include "region_internal.h"
#include "region_test.h"

#define MIB (1ull << 20)
#define INJECTED ENOTRECOVERABLE /* an errno no real call here returns: its text is ours */

/* What a failure of each kind does to region_create: fatal ones return PP_EOS; the rest
 * leave a working region and say what it lacks. */
static bool fatal(osl_call_t k) {
  switch (k) {
  case OSL_MEMFD_CREATE:
  case OSL_FTRUNCATE:
  case OSL_FALLOCATE:
  case OSL_ADD_SEALS:
  case OSL_GET_SEALS:
  case OSL_FSTAT:
  case OSL_FSTATFS:
  case OSL_MMAP:
  case OSL_MADVISE:
  case OSL_SET_MEMPOLICY:
  case OSL_FCHMOD: return true;
  default: return false;
  }
}

typedef int (*make_fn)(logcap_t *log, region_t **ret);

/* Count the calls one successful make() takes, then fail each of them in turn. */
static void fail_each_call_in_turn(make_fn make, const char *memfd_name) {
  logcap_t log;
  region_t *r = NULL;
  unsigned long calls[OSL_NR_CALLS];
  osl_reset();
  logcap_init(&log);
  assert_int_equal(make(&log, &r), 0);
  for (unsigned k = 0; k < OSL_NR_CALLS; k++)
    calls[k] = osl_calls((osl_call_t)k);
  region_destroy(r);

  unsigned tried = 0;
  for (unsigned k = 0; k < OSL_NR_CALLS; k++) {
    /* A failing munmap or close cannot be undone by anyone: they are only logged. */
    if (k == OSL_MUNMAP || k == OSL_CLOSE) continue;
    for (unsigned nth = 1; nth <= calls[k]; nth++) {
      int fds = count_open_fds(), maps = count_memfd_maps(memfd_name);
      osl_reset();
      osl_fail_nth((osl_call_t)k, nth, INJECTED);
      logcap_init(&log);
      r = (region_t *)0x1;
      int rc = make(&log, &r);
      osl_reset();
      if (fatal((osl_call_t)k)) {
        if (rc != PP_EOS)
          fail_msg("%s #%u: expected PP_EOS, got %s", osl_call_name((osl_call_t)k), nth,
                   pp_err_name(rc));
        assert_ptr_equal(r, (region_t *)0x1);
        assert_int_equal(log.worst, LOG_ERR);
      } else {
        if (rc != 0)
          fail_msg("%s #%u: expected a working region, got %s", osl_call_name((osl_call_t)k),
                   nth, pp_err_name(rc));
        assert_true(log.worst <= LOG_NOTICE);
        if (k == OSL_OPEN || k == OSL_PREAD) assert_false(region_phys_known(r));
        if (k == OSL_IO_URING_SETUP || k == OSL_IO_URING_REGISTER) {
          assert_false(region_pinned(r)); /* degraded, and it says why */
          assert_non_null(strstr(region_pin_status(r), strerror(INJECTED)));
        }
        region_destroy(r);
      }
      if (!strstr(log.text, strerror(INJECTED)))
        fail_msg("%s #%u was not reported; log:\n%s", osl_call_name((osl_call_t)k), nth,
                 log.text);
      if (count_open_fds() != fds || count_memfd_maps(memfd_name) != maps)
        fail_msg("%s #%u leaked: fds %d -> %d, mappings %d -> %d", osl_call_name((osl_call_t)k),
                 nth, fds, count_open_fds(), maps, count_memfd_maps(memfd_name));
      tried++;
    }
  }
  print_message("injected %u failures\n", tried);
  assert_true(tried >= 8);
}

static int make_4k(logcap_t *log, region_t **ret) {
  region_config_t cfg = {.size = 4 * MIB,
                         .policy = REGION_PAGE_4K,
                         .name = "pp-fault-4k",
                         .log = logcap_fn,
                         .log_ctx = log};
  return region_create(&cfg, ret);
}

static int make_4k_chunked(logcap_t *log, region_t **ret) {
  region_config_t cfg = {.size = 3 * MIB,
                         .policy = REGION_PAGE_4K,
                         .name = "pp-fault-chunk",
                         .log = logcap_fn,
                         .log_ctx = log};
  region_tuning_t t = {.populate_above = MIB, .populate_chunk = MIB};
  return region_create_tuned(&cfg, &t, ret);
}

/* Bound to NUMA node 0: set_mempolicy around the creation, both calls injectable. */
static int make_4k_node0(logcap_t *log, region_t **ret) {
  region_config_t cfg = {.size = 2 * MIB,
                         .policy = REGION_PAGE_4K,
                         .name = "pp-fault-numa",
                         .log = logcap_fn,
                         .log_ctx = log,
                         .bind_node = true,
                         .numa_node = 0};
  return region_create(&cfg, ret);
}

static int adopt_fd = -1;

/* region_adopt of a dup of a live region's fd; the dup is closed again on failure so the
 * fd count is comparable. */
static int adopt_4k(logcap_t *log, region_t **ret) {
  region_config_t cfg = {.log = logcap_fn, .log_ctx = log};
  int fd = dup(adopt_fd);
  assert_true(fd >= 0);
  int rc = region_adopt(fd, &cfg, ret);
  if (rc != 0) close(fd);
  return rc;
}

static void each_failure_in_4k_create_is_reported_and_leaks_nothing(void **state) {
  fail_each_call_in_turn(make_4k, "pp-fault-4k");
}

static void each_failure_in_chunked_populate_is_reported_and_leaks_nothing(void **state) {
  fail_each_call_in_turn(make_4k_chunked, "pp-fault-chunk");
}

static void each_failure_in_a_numa_bound_create_is_reported_and_leaks_nothing(void **state) {
  if (!osl_numa_node_exists(0)) {
    print_message("skipped: this kernel shows no NUMA node 0\n");
    skip();
  }
  logcap_t log;
  region_t *r;
  logcap_init(&log);
  osl_reset();
  assert_int_equal(make_4k_node0(&log, &r), 0);
  assert_int_equal(osl_calls(OSL_SET_MEMPOLICY), 2); /* bound, then back to the default */
  assert_non_null(strstr(log.text, "bound to NUMA node 0"));
  region_destroy(r);
  fail_each_call_in_turn(make_4k_node0, "pp-fault-numa");
}

static void a_numa_node_that_does_not_exist_is_refused_by_name(void **state) {
  logcap_t log;
  region_t *r = (region_t *)0x1;
  region_config_t cfg = {.size = 2 * MIB,
                         .policy = REGION_PAGE_4K,
                         .name = "pp-fault-nonode",
                         .log = logcap_fn,
                         .log_ctx = &log,
                         .bind_node = true,
                         .numa_node = 4000};
  logcap_init(&log);
  osl_reset();
  assert_int_equal(region_create(&cfg, &r), PP_EINVAL);
  assert_ptr_equal(r, (region_t *)0x1);
  assert_non_null(strstr(log.text, "NUMA node 4000 does not exist"));
  assert_int_equal(osl_calls(OSL_SET_MEMPOLICY), 0); /* refused before any policy changed */
  assert_int_equal(osl_calls(OSL_MEMFD_CREATE), 0);
}

static void each_failure_in_adopt_is_reported_and_leaks_nothing(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_config_t cfg = {.size = 2 * MIB,
                         .policy = REGION_PAGE_4K,
                         .name = "pp-fault-adopt",
                         .log = logcap_fn,
                         .log_ctx = &log};
  region_t *owner;
  assert_int_equal(region_create(&cfg, &owner), 0);
  adopt_fd = region_fd(owner);
  fail_each_call_in_turn(adopt_4k, "pp-fault-adopt");
  region_destroy(owner);
}

static void a_failing_munmap_or_close_is_logged_and_not_fatal(void **state) {
  logcap_t log;
  logcap_init(&log);
  region_t *r;
  assert_int_equal(make_4k(&log, &r), 0);
  void *base = region_base(r);
  int fd = region_fd(r);
  osl_reset();
  osl_fail_nth(OSL_MUNMAP, 1, INJECTED);
  region_destroy(r); /* warns on stderr; the mapping is left behind */
  assert_int_equal(osl_calls(OSL_MUNMAP), 1);
  assert_true(osl_calls(OSL_CLOSE) >= 1); /* the memfd, /proc/self/pagemap, the io_uring */
  osl_reset();
  assert_int_equal(count_memfd_maps("pp-fault-4k"), 1);
  assert_int_equal(munmap(base, 4 * MIB), 0);
  assert_int_equal(fcntl(fd, F_GETFD), -1); /* the fd was closed all the same */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(each_failure_in_4k_create_is_reported_and_leaks_nothing),
      cmocka_unit_test(each_failure_in_chunked_populate_is_reported_and_leaks_nothing),
      cmocka_unit_test(each_failure_in_a_numa_bound_create_is_reported_and_leaks_nothing),
      cmocka_unit_test(a_numa_node_that_does_not_exist_is_refused_by_name),
      cmocka_unit_test(each_failure_in_adopt_is_reported_and_leaks_nothing),
      cmocka_unit_test(a_failing_munmap_or_close_is_logged_and_not_fatal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
