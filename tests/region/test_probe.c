/*
 * test_probe.c — `pinpoold --probe`: exit status and what it prints, run as the operator
 * runs it (the binary in $PP_BIN_DIR).  As root, with the 2 MiB pool sized through
 * tests/common/hugepages.h (locked against other test programs), the runs it reports are
 * checked against the pool's pages as this process's own pagemap shows them.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hugepages.h"

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
  static const char *const bad[] = {"--probe --size abc",     "--probe --size 0",
                                    "--probe --page-size 3M", "--probe --bogus",
                                    "--probe --size",         "--probe --sort-pages maybe",
                                    "--probe --sort-pages"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = probe(bad[i], out, sizeof out);
    if (rc != 2) fail_msg("'%s' exited %d:\n%s", bad[i], rc, out);
    assert_non_null(strstr(out, "pinpoold --probe: "));
  }
  assert_int_equal(probe("--probe --help", out, sizeof out), 0);
  assert_non_null(strstr(out, "usage: pinpoold --probe"));
}

#define POOL_PAGES 32

/* The run of hugepages the pool's free pages make when sorted: their count, the longest,
 * the histogram, and where each starts. */
typedef struct expect {
  uint64_t runs, longest, buckets[64], start[POOL_PAGES];
} expect_t;

static void expect_from(const uint64_t *f, long n, expect_t *e) {
  memset(e, 0, sizeof *e);
  uint64_t len = 0;
  for (long i = 0; i <= n; i++) {
    if (i > 0 && i < n && f[i] == f[i - 1] + HP_SIZE) {
      len++;
      continue;
    }
    if (len) {
      e->buckets[63 - __builtin_clzll(len)]++;
      if (len > e->longest) e->longest = len;
    }
    if (i < n) e->start[e->runs++] = f[i];
    len = 1;
  }
}

static void probe_reports_the_runs_pagemap_shows_for_the_pools_pages(void **state) {
  const char *why = NULL;
  uint64_t frames[POOL_PAGES];
  if (geteuid() != 0) {
    print_message("skipped: needs root (the pool, frame numbers)\n");
    skip();
  }
  if (!hp_make_available(POOL_PAGES, &why) || !hp_free_frames(POOL_PAGES, frames, &why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
  /* The region takes every available page: exactly these, laid out ascending. */
  expect_t e;
  expect_from(frames, POOL_PAGES, &e);
  assert_int_equal(probe("--probe --size 64M --page-size 2M", out, sizeof out), 0);
  assert_non_null(strstr(out, "sorting on"));
  if (!strstr(out, "sorted by physical address: yes, 32 pages in "))
    fail_msg("not sorted:\n%s", out);
  char want[256];
  snprintf(want, sizeof want,
           "contiguous runs: %" PRIu64 ", largest %" PRIu64 " MiB (%" PRIu64
           " page%s); pages out of physical order: 0\n",
           e.runs, e.longest * 2, e.longest, e.longest == 1 ? "" : "s");
  if (!strstr(out, want)) fail_msg("no '%s' in:\n%s", want, out);
  assert_non_null(strstr(out, "contiguous runs in the pool's order: "));
  /* The runs listed: the first eight start where the sorted frames' runs start. */
  const char *p = out;
  for (uint64_t k = 0; k < e.runs && k < 8; k++) {
    uint64_t off, phys;
    p = strstr(p, "    offset ");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "    offset %" SCNx64 "  phys %" SCNx64, &off, &phys), 2);
    if (phys != e.start[k])
      fail_msg("run %" PRIu64 " starts at %#" PRIx64 ", pagemap says %#" PRIx64, k, phys,
               e.start[k]);
    p++;
  }
  /* The histogram's "after" column. */
  p = strstr(out, "  runs by length:");
  assert_non_null(p);
  p = strchr(p, '\n') + 1;
  for (unsigned k = 0; k < 64 && (1ull << k) <= e.longest; k++) {
    char label[32];
    uint64_t before, after;
    assert_int_equal(sscanf(p, " %31s %*s %" SCNu64 " %" SCNu64, label, &before, &after), 3);
    if (after != e.buckets[k])
      fail_msg("runs of %s pages: probe says %" PRIu64 ", pagemap %" PRIu64, label, after,
               e.buckets[k]);
    p = strchr(p, '\n') + 1;
  }
  assert_int_equal(hp_available(), POOL_PAGES); /* all given back */

  /* Sorting off: the same pages, the pool's order, no before/after. */
  assert_int_equal(probe("--probe --size 64M --page-size 2M --sort-pages no", out, sizeof out),
                   0);
  assert_non_null(strstr(out, "sorting off"));
  assert_non_null(strstr(out, "sorted by physical address: no (turned off)"));
  assert_null(strstr(out, "pool's order"));
  hp_restore();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(probe_of_a_4k_region_exits_zero_and_describes_it),
      cmocka_unit_test(probe_with_defaults_exits_zero),
      cmocka_unit_test(probe_of_a_pool_too_short_exits_one_with_the_fix),
      cmocka_unit_test(probe_of_1g_pages_not_offered_exits_one_saying_so),
      cmocka_unit_test(probe_rejects_bad_arguments_with_status_two),
      cmocka_unit_test(probe_reports_the_runs_pagemap_shows_for_the_pools_pages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
