/*
 * test_crowd.c — ten thousand idle clients cost pinpoold little memory, and it gives that
 * memory back when they leave.
 *
 * One daemon (tests/common/testd.h) with room for 10,100 clients; the daemon's private
 * memory is its RssAnon (/proc/PID/status: heap, stacks, libuv's arrays — the region is a
 * shared memfd and is counted as RssShmem, not here).  Measured after a first client has
 * come and gone (first-use allocations), with 10,000 clients connected past Hello and
 * silent (tests/common/crowd.c, in batches of 500), and after they have all left and the
 * daemon has noticed.  The targets: at most 16 MiB with the 10,000 connected, and back
 * to within 2 MiB of the idle figure afterwards.  Memory is deterministic enough for that
 * (the daemon measures about 0.9 KiB per idle client, so 16 MiB leaves room); the
 * figures are printed.
 *
 * Label "heavy": `make test` runs it in the normal build only.  Under ASan the allocator's
 * quarantine and redzones make RssAnon meaningless, and at PP_DEBUG=3 every Hello runs the
 * ledger's full validator over every holder, which is quadratic in the clients.
 * The test process needs ~10,100 descriptors: it raises RLIMIT_NOFILE to its hard limit
 * and skips, saying so, when that is too low.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "crowd.h"
#include "testd.h"
#include "wire.h"

#define CROWD 10000u
#define TARGET_KIB (16l * 1024)
#define RETURN_KIB (2l * 1024)

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void progress(size_t done, size_t want, void *arg) {
  (void)arg;
  if (done % 2500 == 0 || done == want) print_message("  %zu clients connected\n", done);
}

static void ten_thousand_idle_clients_fit_in_16_mib_and_leave_nothing_behind(void **state) {
  testd_t d;
  crowd_t cr = {0};
  testd_books_t books = {0};
  long idle, with, after = -1;
  wire_t c;
  (void)state;

  if (crowd_raise_nofile(CROWD + 200) != 0) {
    print_message("skipped: RLIMIT_NOFILE's hard limit is below %u\n", CROWD + 200);
    skip();
  }
  assert_int_equal(testd_start(&d, "--max-clients", "10100", "--max-clients-per-uid", "0",
                               "--max-pending-per-uid", "0", "--log-level", "notice", NULL),
                   0);
  /* First use: the reply arena, the handlers' and libuv's first allocations. */
  assert_int_equal(wire_open(&c, d.sock, "first"), 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, NULL), 0);
  wire_close(&c);
  assert_int_equal(testd_wait_free(&d, testd_free_bytes(&d), 5000, &(uint64_t){0}), 0);
  idle = crowd_status_kib(d.pid, "RssAnon");
  assert_true(idle > 0);

  assert_int_equal(crowd_join(&cr, d.sock, CROWD, 500, progress, NULL), 0);
  assert_int_equal(testd_books(&d, 0, &books, NULL), 0);
  assert_int_equal(books.nr_clients, CROWD + 1);
  with = crowd_status_kib(d.pid, "RssAnon");

  crowd_leave(&cr);
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(testd_books(&d, 0, &books, NULL), 0);
    if (books.nr_clients == 1) break;
    sleep_ms(10);
  }
  assert_int_equal(books.nr_clients, 1);
  /* The daemon gives memory back a moment after a wave leaves: wait for it, a while. */
  for (int i = 0; i < 500; i++) {
    after = crowd_status_kib(d.pid, "RssAnon");
    if (after <= idle + RETURN_KIB / 4) break;
    sleep_ms(10);
  }
  print_message("pinpoold RssAnon: %ld KiB idle, %ld KiB with %u idle clients (%.0f bytes "
                "each), %ld KiB after they left\n",
                idle, with, CROWD, (double)(with - idle) * 1024.0 / CROWD, after);
  assert_true(with <= TARGET_KIB);
  assert_true(after <= idle + RETURN_KIB);
  assert_int_equal(testd_stop(&d), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ten_thousand_idle_clients_fit_in_16_mib_and_leave_nothing_behind),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
