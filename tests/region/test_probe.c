/*
 * test_probe.c — `pinpoold --probe`: exit status and what it prints, run as the operator
 * runs it (the binary in $PP_BIN_DIR).
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
#include <sys/wait.h>

/* Run pinpoold with args (stdout and stderr together); returns the exit status. */
static int probe(const char *args, char *out, size_t len) {
  const char *dir = getenv("PP_BIN_DIR");
  if (!dir) dir = "bin";
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s/pinpoold' %s 2>&1", dir, args);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, len - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  assert_true(WIFEXITED(status));
  return WEXITSTATUS(status);
}

static char out[65536];

static void probe_of_a_4k_region_exits_zero_and_describes_it(void **state) {
  assert_int_equal(probe("--probe --size 8M --page-size 4K", out, sizeof out), 0);
  assert_non_null(strstr(out, "requested: 8 MiB, page size policy 4K"));
  assert_non_null(strstr(out, "hugepage sizes (/sys/kernel/mm/hugepages):"));
  assert_non_null(strstr(out, "chosen page size: 4 KiB"));
  assert_non_null(strstr(out, "region: 8 MiB = 2048 pages of 4 KiB"));
  assert_non_null(strstr(out, "sealed: shrink grow seal"));
  assert_non_null(strstr(out, "physical addresses: "));
  assert_non_null(strstr(out, "probe: OK"));
}

static void probe_with_defaults_exits_zero(void **state) {
  assert_int_equal(probe("--probe", out, sizeof out), 0);
  assert_non_null(strstr(out, "page size policy auto"));
  assert_non_null(strstr(out, "chosen page size: "));
  /* either hugepages were free, or it says how to get them */
  assert_true(strstr(out, "(hugepages)") || strstr(out, "Fix: ") ||
              strstr(out, "no hugepages"));
}

static void probe_of_a_pool_too_short_exits_one_with_the_fix(void **state) {
  /* 1 TiB of 2 MiB pages: no test machine has them set aside */
  assert_int_equal(probe("--probe --size 1T --page-size 2M", out, sizeof out), 1);
  assert_non_null(strstr(out, "probe: FAILED: not enough hugepages"));
  assert_true(strstr(out, "Fix: ") || strstr(out, "not offered"));
}

static void probe_of_1g_pages_not_offered_exits_one_saying_so(void **state) {
  struct stat st;
  if (stat("/sys/kernel/mm/hugepages/hugepages-1048576kB", &st) == 0) {
    print_message("skipped: this kernel offers 1 GiB pages\n");
    skip();
  }
  assert_int_equal(probe("--probe --page-size=1G", out, sizeof out), 1);
  assert_non_null(strstr(out, "1 GiB hugepages are not offered by this kernel"));
}

static void probe_rejects_bad_arguments_with_status_two(void **state) {
  static const char *const bad[] = {"--probe --size abc", "--probe --size 0",
                                    "--probe --page-size 3M", "--probe --bogus",
                                    "--probe --size"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = probe(bad[i], out, sizeof out);
    if (rc != 2) fail_msg("'%s' exited %d:\n%s", bad[i], rc, out);
    assert_non_null(strstr(out, "pinpoold --probe: "));
  }
  assert_int_equal(probe("--probe --help", out, sizeof out), 0);
  assert_non_null(strstr(out, "usage: pinpoold --probe"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(probe_of_a_4k_region_exits_zero_and_describes_it),
      cmocka_unit_test(probe_with_defaults_exits_zero),
      cmocka_unit_test(probe_of_a_pool_too_short_exits_one_with_the_fix),
      cmocka_unit_test(probe_of_1g_pages_not_offered_exits_one_saying_so),
      cmocka_unit_test(probe_rejects_bad_arguments_with_status_two),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
