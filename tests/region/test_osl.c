/*
 * test_osl.c — the OS seam's fault injection: the nth next call of a kind fails with the
 * chosen errno and does nothing, other kinds are untouched, counters count, and under
 * racing threads exactly one call fails.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "osl.h"
#include "region_test.h"

static void the_nth_next_call_fails_with_the_chosen_errno(void **state) {
  osl_reset();
  osl_fail_nth(OSL_OPEN, 2, EACCES);
  int fd1 = osl_open("/dev/null", O_RDONLY);
  assert_true(fd1 >= 0);
  int fds = count_open_fds();
  errno = 0;
  assert_int_equal(osl_open("/dev/null", O_RDONLY), -1);
  assert_int_equal(errno, EACCES);
  assert_int_equal(count_open_fds(), fds); /* nothing was opened */
  int fd3 = osl_open("/dev/null", O_RDONLY);
  assert_true(fd3 >= 0);
  assert_int_equal(osl_calls(OSL_OPEN), 3);
  assert_true(fcntl(fd3, F_GETFD) & FD_CLOEXEC);
  assert_int_equal(osl_close(fd1), 0);
  assert_int_equal(osl_close(fd3), 0);
  assert_int_equal(osl_calls(OSL_CLOSE), 2);
  osl_reset();
  assert_int_equal(osl_calls(OSL_OPEN), 0);
}

static void other_kinds_are_not_affected_and_zero_disarms(void **state) {
  osl_reset();
  osl_fail_nth(OSL_MMAP, 1, ENOMEM);
  int fd = osl_memfd_create("pp-osl", MFD_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(osl_ftruncate(fd, 4096), 0);
  osl_fail_nth(OSL_MMAP, 0, ENOMEM); /* disarmed again */
  void *p = osl_mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
  assert_true(p != MAP_FAILED);
  assert_int_equal(osl_munmap(p, 4096), 0);
  osl_fail_nth(OSL_MMAP, 1, ENOMEM);
  errno = 0;
  assert_true(osl_mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED);
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(osl_calls(OSL_MMAP), 2);
  assert_int_equal(osl_calls(OSL_MEMFD_CREATE), 1);
  osl_close(fd);
  osl_reset();
}

static void pread_reports_short_reads_as_they_are(void **state) {
  char buf[64];
  int fd = osl_open("/proc/self/stat", O_RDONLY);
  assert_true(fd >= 0);
  ssize_t n = osl_pread(fd, buf, sizeof buf, 0);
  assert_int_equal(n, sizeof buf);
  assert_int_equal(osl_pread(fd, buf, sizeof buf, 1 << 20), 0); /* past the end */
  osl_close(fd);
}

static void every_kind_has_a_name(void **state) {
  for (unsigned k = 0; k < OSL_NR_CALLS; k++) {
    assert_non_null(osl_call_name((osl_call_t)k));
    assert_string_not_equal(osl_call_name((osl_call_t)k), "?");
  }
  assert_string_equal(osl_call_name(OSL_NR_CALLS), "?");
  assert_string_equal(osl_call_name(OSL_FALLOCATE), "fallocate");
}

#define THREADS 4
#define CALLS 2000
static atomic_int failures, wrong_errno;

static void *hammer(void *arg) {
  struct rlimit rl;
  for (int i = 0; i < CALLS; i++)
    if (osl_getrlimit(RLIMIT_NOFILE, &rl) != 0) {
      atomic_fetch_add(&failures, 1); /* cmocka's asserts are for the main thread only */
      if (errno != EIO) atomic_fetch_add(&wrong_errno, 1);
    }
  return NULL;
}

static void exactly_one_call_fails_when_threads_race(void **state) {
  osl_reset();
  atomic_store(&failures, 0);
  atomic_store(&wrong_errno, 0);
  osl_fail_nth(OSL_GETRLIMIT, THREADS * CALLS / 2 + 1, EIO);
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(atomic_load(&failures), 1);
  assert_int_equal(atomic_load(&wrong_errno), 0);
  assert_int_equal(osl_calls(OSL_GETRLIMIT), THREADS * CALLS);
  osl_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_nth_next_call_fails_with_the_chosen_errno),
      cmocka_unit_test(other_kinds_are_not_affected_and_zero_disarms),
      cmocka_unit_test(pread_reports_short_reads_as_they_are),
      cmocka_unit_test(every_kind_has_a_name),
      cmocka_unit_test(exactly_one_call_fails_when_threads_race),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
