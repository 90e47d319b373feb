/*
 * test_region_sort.c — hugepages laid out in ascending physical order (shm/pagesort.c):
 * the region's pages ascend physically, the runs it reports are the ones pagemap shows,
 * sorting off keeps the pool's order, progress is logged, another process racing for the
 * pool leaves the region less sorted but never wrong, a failure at any step leaves
 * nothing behind, and without CAP_SYS_ADMIN nothing is attempted.  1 GiB pages too, when
 * the kernel can give two.
 *
 * Needs root (frame numbers, the pool's size); each test skips saying why otherwise.  The
 * tests run in a child; the parent takes the hugepage lock (tests/common/hugepages.h: no
 * other test program touches the pool meanwhile, which is what makes "no page out of
 * order" a property that cannot flake) and restores the 2 MiB and 1 GiB pools after the
 * child exits, whatever happened to it.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hugepages.h"
#include "osl.h"
#include "region.h"
#include "region_internal.h"
#include "region_test.h"

#define H ((uint64_t)2 << 20)
#define G ((uint64_t)1 << 30)
#define POOL_1G "/sys/kernel/mm/hugepages/hugepages-1048576kB"
#ifndef MFD_HUGE_SHIFT
#define MFD_HUGE_SHIFT 26
#endif

static long saved_1g = -1; /* the 1 GiB pool's size before the tests, restored after */

/* ---- helpers ---------------------------------------------------------------------------- */

static void need_frames(void) {
  if (geteuid() != 0 || !pagemap_gives_pfns()) {
    print_message("skipped: needs root (frame numbers in /proc/self/pagemap, the pool)\n");
    skip();
  }
}

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

static region_t *make(uint64_t size, region_page_policy_t policy, bool no_sort,
                      const char *name, const region_tuning_t *t, logcap_t *log) {
  region_config_t cfg = {.size = size,
                         .policy = policy,
                         .name = name,
                         .log = logcap_fn,
                         .log_ctx = log,
                         .no_sort = no_sort};
  region_t *r = NULL;
  int rc = region_create_tuned(&cfg, t, &r);
  if (rc != 0) fail_msg("region_create: %s; log:\n%s", pp_err_name(rc), log->text);
  char why[256] = "";
  if (region_check(r, why, sizeof why) != 0) fail_msg("region_check: %s", why);
  return r;
}

/* Each page's frame, read through a second mapping of the memfd with plain libc. */
static uint64_t *frames_of(region_t *r) {
  uint64_t ps = region_page_size(r), n = region_size(r) / ps;
  uint64_t *f = calloc(n, sizeof *f);
  assert_non_null(f);
  char *other =
      mmap(NULL, region_size(r), PROT_READ, MAP_SHARED | MAP_POPULATE, region_fd(r), 0);
  assert_true(other != MAP_FAILED);
  for (uint64_t i = 0; i < n; i++)
    assert_int_equal(pagemap_phys_of(other + i * ps, &f[i]), 0);
  munmap(other, region_size(r));
  return f;
}

/* Every page's frame above the one before it. */
static void assert_ascending(const uint64_t *f, uint64_t n) {
  for (uint64_t i = 1; i < n; i++)
    if (f[i] <= f[i - 1])
      fail_msg("page %" PRIu64 " is at %#" PRIx64 ", below page %" PRIu64 " at %#" PRIx64, i,
               f[i], i - 1, f[i - 1]);
}

/* The region's runs, as region_runs and region_run_stats report them, are the ones the
 * frames read independently make. */
static void assert_runs_match(region_t *r, const uint64_t *f) {
  uint64_t ps = region_page_size(r), n = region_size(r) / ps;
  uint64_t runs = 0, longest = 0, len = 0, descents = 0, buckets[REGION_RUN_BUCKETS] = {0};
  for (uint64_t i = 0; i < n; i++) {
    if (i > 0 && f[i] < f[i - 1]) descents++;
    if (i > 0 && f[i] == f[i - 1] + ps) {
      len++;
    } else {
      if (len) buckets[63 - __builtin_clzll(len)]++;
      runs++;
      len = 1;
    }
    if (len > longest) longest = len;
  }
  buckets[63 - __builtin_clzll(len)]++;
  region_run_stats_t st;
  assert_int_equal(region_run_stats(r, &st), 0);
  assert_true(st.known);
  assert_int_equal(st.page_size, ps);
  assert_int_equal(st.pages, n);
  assert_int_equal(st.nr_runs, runs);
  assert_int_equal(st.longest, longest * ps);
  assert_int_equal(st.descents, descents);
  assert_int_equal(region_largest_run(r), longest * ps);
  for (unsigned k = 0; k < REGION_RUN_BUCKETS; k++)
    if (st.buckets[k] != buckets[k])
      fail_msg("runs of %" PRIu64 "+ pages: %" PRIu64 ", pagemap shows %" PRIu64, 1ull << k,
               st.buckets[k], buckets[k]);
  region_run_t *rr = calloc(runs, sizeof *rr);
  assert_int_equal(region_runs(r, rr, runs), runs);
  for (uint64_t k = 0; k < runs; k++) {
    uint64_t page = rr[k].offset / ps;
    assert_int_equal(rr[k].phys, f[page]);
    for (uint64_t o = 0; o < rr[k].length; o += ps)
      assert_int_equal(f[page + o / ps], rr[k].phys + o);
  }
  free(rr);
}

/* ---- sorted ----------------------------------------------------------------------------- */

static void a_sorted_region_s_pages_ascend_physically(void **state) {
  need_frames();
  set_available(64);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(64 * H, REGION_PAGE_2M, false, "pp-sort-asc", NULL, &log);
  region_sort_info_t si;
  assert_int_equal(region_sort_info(r, &si), 0);
  if (si.state != REGION_SORT_DONE)
    fail_msg("sort %s (%s); log:\n%s", region_sort_state_name(si.state), si.why, log.text);
  assert_int_equal(si.placed, 64);
  assert_string_equal(si.why, "");
  assert_true(si.elapsed_ns > 0);
  assert_true(si.before.known);
  assert_int_equal(si.before.pages, 64); /* the same pages, in the pool's order */
  uint64_t *f = frames_of(r);
  assert_ascending(f, 64);
  assert_runs_match(r, f);
  region_run_stats_t st;
  region_run_stats(r, &st);
  assert_int_equal(st.descents, 0);
  /* The same pages ascending can only have as many runs as in any other order, or fewer. */
  assert_true(st.nr_runs <= si.before.nr_runs);
  assert_true(st.longest >= si.before.longest);
  assert_non_null(strstr(log.text, "hugepages sorted by physical address (64 of 64 pages"));
  print_message("64 pages: in the pool's order %" PRIu64 " runs, longest %" PRIu64
                " pages, %" PRIu64 " out of order; sorted %" PRIu64 " runs, longest %" PRIu64
                " pages (%" PRIu64 " ms)\n",
                si.before.nr_runs, si.before.longest / H, si.before.descents, st.nr_runs,
                st.longest / H, si.elapsed_ns / 1000000);
  free(f);
  region_destroy(r);
  assert_int_equal(hp_available(), 64);
}

static void sorting_off_takes_the_pages_in_one_fallocate_as_before(void **state) {
  need_frames();
  set_available(16);
  logcap_t log;
  logcap_init(&log);
  osl_reset();
  region_t *r = make(16 * H, REGION_PAGE_2M, true, "pp-sort-off", NULL, &log);
  assert_int_equal(osl_calls(OSL_MEMFD_CREATE), 1); /* no staging memfd */
  assert_int_equal(osl_calls(OSL_FALLOCATE), 1);    /* every page at once, the pool's order */
  osl_reset();
  region_sort_info_t si;
  assert_int_equal(region_sort_info(r, &si), 0);
  assert_int_equal(si.state, REGION_SORT_OFF);
  assert_int_equal(si.placed, 0);
  assert_int_equal(si.elapsed_ns, 0);
  assert_false(si.before.known);
  assert_null(strstr(log.text, "sorted"));
  uint64_t *f = frames_of(r);
  assert_runs_match(r, f);
  region_run_stats_t st;
  region_run_stats(r, &st);
  print_message("16 pages unsorted: %" PRIu64 " runs, %" PRIu64 " pages out of order\n",
                st.nr_runs, st.descents);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  region_describe(r, out);
  fclose(out);
  assert_non_null(strstr(text, "sorted by physical address: no (turned off)"));
  assert_null(strstr(text, "in the pool's order"));
  free(text);
  free(f);
  region_destroy(r);
}

static void describe_shows_the_runs_before_and_after_sorting(void **state) {
  need_frames();
  set_available(8);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(8 * H, REGION_PAGE_2M, false, "pp-sort-describe", NULL, &log);
  region_sort_info_t si;
  region_sort_info(r, &si);
  region_run_stats_t st;
  region_run_stats(r, &st);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  region_describe(r, out);
  fclose(out);
  assert_non_null(strstr(text, "sorted by physical address: yes, 8 pages in "));
  char want[160];
  snprintf(want, sizeof want, "contiguous runs: %" PRIu64 ", largest ", st.nr_runs);
  assert_non_null(strstr(text, want));
  assert_non_null(strstr(text, "pages out of physical order: 0\n"));
  snprintf(want, sizeof want, "contiguous runs in the pool's order: %" PRIu64 ", largest ",
           si.before.nr_runs);
  assert_non_null(strstr(text, want));
  assert_non_null(strstr(text, "runs by length:"));
  snprintf(want, sizeof want, "    %-14s %12" PRIu64 " %12" PRIu64 "\n", "1 page",
           si.before.buckets[0], st.buckets[0]);
  if (!strstr(text, want)) fail_msg("no line '%s' in:\n%s", want, text);
  free(text);
  region_destroy(r);
}

static void a_large_region_logs_the_sort_chunk_by_chunk(void **state) {
  need_frames();
  set_available(8);
  logcap_t log;
  logcap_init(&log);
  region_tuning_t t = {.populate_above = 4 * H, .populate_chunk = 2 * H};
  region_t *r = make(8 * H, REGION_PAGE_2M, false, "pp-sort-chatty", &t, &log);
  assert_non_null(strstr(log.text, "sorting 8 hugepages by physical address"));
  assert_non_null(strstr(log.text, "sorting hugepages: staged 4 MiB of 16 MiB (25%)"));
  assert_non_null(strstr(log.text, "sorting hugepages: staged 16 MiB of 16 MiB (100%)"));
  assert_non_null(strstr(log.text, "sorting hugepages: placed 8 MiB of 16 MiB (50%)"));
  assert_non_null(strstr(log.text, "sorting hugepages: placed 16 MiB of 16 MiB (100%)"));
  region_destroy(r);
}

/* Another process takes and gives back a page all the while: it may snatch a page we
 * released for the region, which then gets another (out of order).  With 65 pages for a
 * 64-page region and the racer holding at most one, every fallocate of ours finds a page:
 * the sort completes, and whatever the interleaving, the table is the truth. */
static void a_pool_changing_underneath_leaves_the_region_less_sorted_never_wrong(void **state) {
  need_frames();
  set_available(65);
  fflush(NULL);
  pid_t racer = fork();
  assert_true(racer >= 0);
  if (racer == 0) {
    int fd = memfd_create("pp-sort-racer", MFD_CLOEXEC | MFD_HUGETLB | (21u << MFD_HUGE_SHIFT));
    if (fd < 0 || ftruncate(fd, (off_t)H) != 0) _exit(1);
    for (;;) {
      if (fallocate(fd, 0, 0, (off_t)H) == 0)
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t)H);
    }
  }
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(64 * H, REGION_PAGE_2M, false, "pp-sort-race", NULL, &log);
  int status = 0;
  kill(racer, SIGKILL);
  assert_int_equal(waitpid(racer, &status, 0), racer);
  assert_true(WIFSIGNALED(status)); /* it was racing, not stopped early */
  region_sort_info_t si;
  region_sort_info(r, &si);
  if (si.state != REGION_SORT_DONE)
    fail_msg("sort %s (%s); log:\n%s", region_sort_state_name(si.state), si.why, log.text);
  uint64_t *f = frames_of(r);
  assert_runs_match(r, f); /* descents included: counted from the frames really there */
  region_run_stats_t st;
  region_run_stats(r, &st);
  print_message("64 pages sorted against a racer: %" PRIu64 " out of order, %" PRIu64
                " runs, longest %" PRIu64 " pages\n",
                st.descents, st.nr_runs, st.longest / H);
  free(f);
  region_destroy(r);
  assert_int_equal(hp_available(), 65);
}

/* Fail each OS call sorting makes, the 1st, 2nd, ... of its kind in turn: the region is
 * still created (in the pool's order where sorting stopped) or fails cleanly when the call
 * was the region's own, and nothing stays behind — no staging memfd, no mapping, no fd,
 * no hugepage.  close(2) is left out: it releases the fd even when it reports an error,
 * and an injected failure, which does nothing, cannot model that. */
static void os_failures_during_sorting_leak_nothing(void **state) {
  need_frames();
  set_available(8);
  static const struct {
    osl_call_t call;
    int err;
  } kinds[] = {
      {OSL_OPEN, EMFILE},   {OSL_PREAD, EIO},     {OSL_MEMFD_CREATE, EMFILE},
      {OSL_FTRUNCATE, EIO}, {OSL_FALLOCATE, EIO}, {OSL_FALLOCATE, ENOSPC},
      {OSL_MMAP, ENOMEM},   {OSL_MUNMAP, EINVAL},
  };
  const char *name = "pp-sort-fault";
  int fds = count_open_fds();
  long avail = hp_available();
  unsigned tried = 0, created = 0, sorted_part = 0;
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    for (unsigned nth = 1;; nth++) {
      logcap_t log;
      logcap_init(&log);
      region_config_t cfg = {.size = 8 * H,
                             .policy = REGION_PAGE_2M,
                             .name = name,
                             .log = logcap_fn,
                             .log_ctx = &log};
      region_t *r = NULL;
      osl_reset();
      osl_fail_nth(kinds[k].call, nth, kinds[k].err);
      int rc = region_create(&cfg, &r);
      bool hit = osl_calls(kinds[k].call) >= nth;
      osl_reset();
      if (!hit) {
        assert_int_equal(rc, 0);
        region_destroy(r);
        break;
      }
      tried++;
      assert_int_equal(count_memfd_maps("pp-sort-fault.sort"), 0);
      if (rc == 0) {
        created++;
        char why[256] = "";
        if (region_check(r, why, sizeof why) != 0) fail_msg("region_check: %s", why);
        region_sort_info_t si;
        region_sort_info(r, &si);
        if (si.state == REGION_SORT_INCOMPLETE) {
          assert_true(si.why[0] != '\0');
          assert_true(si.placed < 8);
          if (si.placed) sorted_part++;
        } else if (si.state == REGION_SORT_DONE) {
          assert_int_equal(si.placed, 8);
        }
        if (region_phys_known(r)) {
          uint64_t *f = frames_of(r);
          assert_runs_match(r, f);
          free(f);
        }
        region_destroy(r);
      } else {
        assert_null(r);
        if (rc != PP_EOS && rc != PP_ENOHUGE)
          fail_msg("%s #%u failing: %s", osl_call_name(kinds[k].call), nth, pp_err_name(rc));
        assert_non_null(strstr(log.text, strerror(kinds[k].err)));
      }
      if (count_open_fds() != fds)
        fail_msg("%s #%u failing (%s): %d fds open, %d before; log:\n%s",
                 osl_call_name(kinds[k].call), nth, pp_err_name(rc), count_open_fds(), fds,
                 log.text);
      assert_int_equal(count_memfd_maps(name), 0);
      if (hp_available() != avail)
        fail_msg("%s #%u failing: %ld pages available, %ld before",
                 osl_call_name(kinds[k].call), nth, hp_available(), avail);
    }
  }
  print_message("%u failures injected: %u regions created anyway (%u partly sorted)\n", tried,
                created, sorted_part);
  assert_true(sorted_part > 0); /* failures mid-way were among them */
}

/* capset(2) without libcap: drop CAP_SYS_ADMIN from this process. */
static int drop_cap_sys_admin(void) {
  struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
  struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
  if (syscall(SYS_capget, &h, d) != 0) return -1;
  d[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective &= ~CAP_TO_MASK(CAP_SYS_ADMIN);
  d[CAP_TO_INDEX(CAP_SYS_ADMIN)].permitted &= ~CAP_TO_MASK(CAP_SYS_ADMIN);
  return (int)syscall(SYS_capset, &h, d);
}

static void without_cap_sys_admin_nothing_is_sorted(void **state) {
  need_frames();
  set_available(2);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (drop_cap_sys_admin() != 0) _exit(10);
    logcap_t log;
    logcap_init(&log);
    region_config_t cfg = {.size = 2 * H,
                           .policy = REGION_PAGE_2M,
                           .name = "pp-sort-nocap",
                           .log = logcap_fn,
                           .log_ctx = &log};
    region_t *r = NULL;
    osl_reset();
    if (region_create(&cfg, &r) != 0) _exit(11);
    region_sort_info_t si;
    region_sort_info(r, &si);
    if (si.state != REGION_SORT_UNKNOWN || !strstr(si.why, "CAP_SYS_ADMIN")) _exit(12);
    if (osl_calls(OSL_MEMFD_CREATE) != 1 || osl_calls(OSL_FALLOCATE) != 1) _exit(13);
    if (region_phys_known(r)) _exit(14);
    region_destroy(r);
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  static const char *const meaning[] = {
      [10] = "capset failed",
      [11] = "region_create failed",
      [12] = "the sort state is not 'addresses unknown' naming CAP_SYS_ADMIN",
      [13] = "a staging memfd or more than one fallocate was made",
      [14] = "addresses were known without CAP_SYS_ADMIN",
  };
  int code = WEXITSTATUS(status);
  if (code != 0)
    fail_msg("child: %s", code >= 10 && code <= 14 ? meaning[code] : "exited oddly");
}

/* ---- 1 GiB pages ------------------------------------------------------------------------ */

static long read_1g(const char *file) {
  char path[256];
  long v = -1;
  snprintf(path, sizeof path, POOL_1G "/%s", file);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  if (fscanf(f, "%ld", &v) != 1) v = -1;
  fclose(f);
  return v;
}

static bool write_1g(long v) {
  FILE *f = fopen(POOL_1G "/nr_hugepages", "w");
  if (!f) return false;
  bool ok = fprintf(f, "%ld\n", v) > 0;
  return fclose(f) == 0 && ok;
}

static int restore_1g(void **state) {
  (void)state;
  if (saved_1g >= 0 && read_1g("nr_hugepages") != saved_1g) write_1g(saved_1g);
  return 0;
}

static void a_region_of_1g_pages_is_sorted_too(void **state) {
  need_frames();
  const char *why = NULL;
  if (!hp_begin(&why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
  long nr = read_1g("nr_hugepages"),
       avail = read_1g("free_hugepages") - read_1g("resv_hugepages");
  if (nr < 0 || saved_1g < 0) {
    print_message("skipped: this kernel offers no 1 GiB hugepages\n");
    skip();
  }
  if (avail < 2) {
    /* alloc_contig_range can miss memory that the 2 MiB pool gave back a moment ago
     * (freed from a worker); asking again picks it up. */
    bool wrote = false;
    for (int attempt = 0; attempt < 5; attempt++) {
      wrote = write_1g(nr + 2 - avail);
      if (!wrote || read_1g("free_hugepages") - read_1g("resv_hugepages") >= 2) break;
      usleep(100 * 1000);
    }
    long now = read_1g("free_hugepages") - read_1g("resv_hugepages");
    if (!wrote || now < 2) {
      restore_1g(NULL);
      print_message("skipped: the kernel could not give two 1 GiB pages at run time (%s; %ld "
                    "available; memory too fragmented? hugepagesz=1G hugepages=N on the "
                    "kernel command line reserves them at boot)\n",
                    wrote ? "pool grown" : "cannot write " POOL_1G "/nr_hugepages", now);
      skip();
    }
  }
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(2 * G, REGION_PAGE_1G, false, "pp-sort-1g", NULL, &log);
  assert_int_equal(region_page_size(r), G);
  region_sort_info_t si;
  region_sort_info(r, &si);
  if (si.state != REGION_SORT_DONE)
    fail_msg("sort %s (%s); log:\n%s", region_sort_state_name(si.state), si.why, log.text);
  uint64_t *f = frames_of(r);
  assert_ascending(f, 2);
  assert_runs_match(r, f);
  print_message("2 x 1 GiB: %s, %" PRIu64 " run(s) (in the pool's order %" PRIu64 "), %" PRIu64
                " ms\n",
                f[1] == f[0] + G ? "adjacent" : "not adjacent", region_runs(r, NULL, 0),
                si.before.nr_runs, si.elapsed_ns / 1000000);
  free(f);
  region_destroy(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(a_sorted_region_s_pages_ascend_physically, restore_pool),
      cmocka_unit_test_teardown(sorting_off_takes_the_pages_in_one_fallocate_as_before,
                                restore_pool),
      cmocka_unit_test_teardown(describe_shows_the_runs_before_and_after_sorting, restore_pool),
      cmocka_unit_test_teardown(a_large_region_logs_the_sort_chunk_by_chunk, restore_pool),
      cmocka_unit_test_teardown(
          a_pool_changing_underneath_leaves_the_region_less_sorted_never_wrong, restore_pool),
      cmocka_unit_test_teardown(os_failures_during_sorting_leak_nothing, restore_pool),
      cmocka_unit_test_teardown(without_cap_sys_admin_nothing_is_sorted, restore_pool),
      cmocka_unit_test_teardown(a_region_of_1g_pages_is_sorted_too, restore_1g),
  };
  const char *why = NULL;
  bool may_resize = hp_begin(&why); /* the lock, and the 2 MiB pool recorded, here */
  if (may_resize) saved_1g = read_1g("nr_hugepages");
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) _exit(cmocka_run_group_tests(tests, NULL, NULL));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  restore_1g(NULL);
  if (may_resize && !hp_restore()) return 1;
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "tests killed by signal %d (pools restored)\n", WTERMSIG(status));
    return 1;
  }
  return WEXITSTATUS(status);
}
