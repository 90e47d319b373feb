/*
 * test_daemon_huge.c — physical addresses as pinpoold reports them, checked against what
 * this (client) process's own /proc/self/pagemap says for the same bytes of its mapping.
 *
 * With sorting (the default), the region's hugepages ascend physically: the longest run the
 * daemon reports is the longest the pool's free pages make at all, and a PP_CONTIGUOUS
 * buffer of up to 8 MiB is granted from it and checked page by page; --sort-pages no leaves
 * the pages in the order the pool gives them.
 *
 * Needs root (pagemap shows PFNs only with CAP_SYS_ADMIN; hugepages need the sysctl).
 * The hugepage tests size the 2 MiB pool through tests/common/hugepages.h, which locks it
 * against other test programs and puts the old size back at exit.  Each skips, saying why,
 * when what it needs cannot be had.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hugepages.h"
#include "testd.h"
#include "wire.h"

#define MIB (1024ull * 1024ull)
#define HUGE_2M (2 * MIB)
/* PFN of the page holding addr, from this process's pagemap; 0 when hidden or absent. */
static uint64_t pagemap_phys(const void *addr) {
  uint64_t entry = 0, va = (uint64_t)(uintptr_t)addr;
  long ps = sysconf(_SC_PAGESIZE);
  int fd;
  /* Fault the page in first: a shared mapping is filled lazily. */
  (void)*(const volatile uint8_t *)addr;
  fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) return 0;
  if (pread(fd, &entry, sizeof entry, (off_t)(va / (uint64_t)ps * sizeof entry)) !=
      sizeof entry)
    entry = 0;
  close(fd);
  if (!(entry & (1ull << 63))) return 0; /* not present */
  entry &= (1ull << 55) - 1;             /* bits 0-54: PFN */
  return entry ? entry * (uint64_t)ps + va % (uint64_t)ps : 0;
}

static void need_pagemap_pfns(wire_t *c) {
  volatile uint8_t touch = c->base[0];
  (void)touch;
  if (!pagemap_phys(c->base)) {
    print_message("skipped: /proc/self/pagemap gives no PFNs to this process\n");
    wire_close(c);
    skip();
  }
}

static void check_buffer_against_pagemap(wire_t *c, const resp_t *r) {
  const Pinpool__V1__Buffer *b = r->buffer;
  assert_true(c->phys_known);
  assert_true(b->phys_addr != 0);
  for (uint64_t off = 0; off < b->size; off += 4096) {
    uint64_t mine = pagemap_phys(c->base + b->offset + off);
    uint64_t want = 0;
    /* What the daemon said for this byte: the segment that covers it. */
    for (size_t i = 0; i < b->n_segments; i++) {
      const Pinpool__V1__Segment *s = b->segments[i];
      if (b->offset + off >= s->offset && b->offset + off < s->offset + s->length)
        want = s->phys_addr + (b->offset + off - s->offset);
    }
    if (off == 0) assert_int_equal(b->phys_addr, mine);
    if (mine != want)
      fail_msg("offset %" PRIu64 "+%" PRIu64 ": pagemap says 0x%" PRIx64 ", daemon 0x%" PRIx64,
               b->offset, off, mine, want);
  }
}

static void buffer_phys_and_contiguous_blocks_match_pagemap_with_4k_pages(void **state) {
  testd_t d;
  wire_t c;
  resp_t *r;
  (void)state;

  if (geteuid() != 0) {
    print_message("skipped: needs root for physical addresses\n");
    skip();
  }
  assert_int_equal(testd_start(&d, NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "phys"), 0);
  need_pagemap_pfns(&c);
  assert_int_equal(wire_alloc(&c, 256 * 1024, 0, NULL, &r), 0);
  check_buffer_against_pagemap(&c, r);
  frame_free_response(r);

  /* 4 KiB pages are physically consecutive only by chance, and a CONTIGUOUS buffer must
   * land exactly on such a run: every one granted is checked page by page. */
  int granted = 0;
  for (uint64_t size = 8192; size <= 64 * 1024; size *= 2) {
    int rc = wire_alloc(&c, size, 0x1, NULL, &r);
    if (rc == 0) {
      uint64_t first = pagemap_phys(c.base + r->buffer->offset);
      assert_true(r->buffer->contiguous);
      assert_int_equal(r->buffer->n_segments, 1);
      for (uint64_t off = 0; off < size; off += 4096)
        assert_int_equal(pagemap_phys(c.base + r->buffer->offset + off), first + off);
      granted++;
    } else {
      assert_int_equal(rc, PP_ENOCONTIG);
    }
    frame_free_response(r);
  }
  print_message("%d of 4 CONTIGUOUS buffers of 8..64 KiB granted and checked page by page\n",
                granted);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static void buffer_phys_equals_pagemap_with_2m_hugepages(void **state) {
  const char *why = NULL;
  testd_t d;
  wire_t c;
  resp_t *r;
  (void)state;

  if (!hp_make_available(8, &why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
  assert_int_equal(testd_start(&d, "--page-size", "2M", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "phys-huge"), 0);
  assert_int_equal(c.page_size, HUGE_2M);
  need_pagemap_pfns(&c);
  assert_int_equal(wire_alloc(&c, HUGE_2M, 0, NULL, &r), 0);
  assert_true(r->buffer->contiguous);
  check_buffer_against_pagemap(&c, r);
  frame_free_response(r);
  assert_int_equal(wire_alloc(&c, 12345, 0, NULL, &r), 0);
  check_buffer_against_pagemap(&c, r);
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static void contiguous_buffer_larger_than_a_hugepage_is_contiguous_page_by_page(void **state) {
  const char *why = NULL;
  testd_t d;
  wire_t c;
  resp_t *r;
  int rc;
  (void)state;

  if (!hp_make_available(8, &why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
  assert_int_equal(testd_start(&d, "--page-size", "2M", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "contig"), 0);
  need_pagemap_pfns(&c);
  resp_t *st;
  assert_int_equal(wire_stats(&c, false, false, &st), 0);
  uint64_t run = st->stats->largest_contiguous_run;
  frame_free_response(st);
  rc = wire_alloc(&c, 2 * HUGE_2M, 0x1, NULL, &r);
  /* A 4 MiB block is 4 MiB-aligned: a run of 3 hugepages always holds one, a run shorter
   * than 2 never does. */
  if (run < 2 * HUGE_2M) assert_int_equal(rc, PP_ENOCONTIG);
  if (run >= 3 * HUGE_2M) assert_int_equal(rc, 0);
  if (rc == PP_ENOCONTIG) {
    frame_free_response(r);
    wire_close(&c);
    assert_int_equal(testd_stop(&d), 0);
    print_message("skipped: the refusal is right (longest run %" PRIu64
                  " KiB), but with no two "
                  "aligned consecutive hugepages there is nothing to check page by page\n",
                  run >> 10);
    skip();
  }
  assert_int_equal(rc, 0);
  assert_true(r->buffer->contiguous);
  assert_int_equal(r->buffer->size, 2 * HUGE_2M);
  assert_int_equal(r->buffer->n_segments, 1);
  uint64_t first = pagemap_phys(c.base + r->buffer->offset);
  assert_int_equal(first, r->buffer->phys_addr);
  for (uint64_t off = 4096; off < r->buffer->size; off += 4096) {
    uint64_t p = pagemap_phys(c.base + r->buffer->offset + off);
    if (p != first + off)
      fail_msg("page at +%" PRIu64 " is at 0x%" PRIx64 ", not 0x%" PRIx64, off, p, first + off);
  }
  check_buffer_against_pagemap(&c, r);
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

/* Pages: 512 MiB.  Fewer would do for the property, but a freshly grown pool of 64 pages
 * is often scattered (pairs at best) while 256 hold long runs on a typical machine. */
#define SORT_POOL 256

/* Does the daemon's log (stdout and stderr) hold this text yet? */
static bool log_has(const testd_t *d, const char *text) {
  static char buf[1 << 16];
  FILE *f = fopen(d->log, "r");
  if (!f) return false;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return strstr(buf, text) != NULL;
}

static void
contiguous_8m_buffer_from_sorted_hugepages_is_contiguous_page_by_page(void **state) {
  const char *why = NULL;
  uint64_t frames[SORT_POOL];
  testd_t d;
  wire_t c;
  resp_t *r, *st;
  (void)state;

  if (!hp_make_available(SORT_POOL, &why) || !hp_free_frames(SORT_POOL, frames, &why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
  /* The longest chain of physically consecutive pages among the pool's free pages: what
   * the region, which takes all of them, can have at best — and has, sorted. */
  uint64_t best = 1, len = 1;
  for (int i = 1; i < SORT_POOL; i++) {
    len = frames[i] == frames[i - 1] + HUGE_2M ? len + 1 : 1;
    if (len > best) best = len;
  }
  assert_int_equal(testd_start(&d, "--size", "512M", "--page-size", "2M", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "sorted"), 0);
  need_pagemap_pfns(&c);
  assert_true(log_has(&d, "hugepages sorted by physical address (256 of 256 pages"));
  assert_int_equal(wire_stats(&c, false, false, &st), 0);
  uint64_t run = st->stats->largest_contiguous_run;
  frame_free_response(st);
  if (run != best * HUGE_2M)
    fail_msg("longest run %" PRIu64 " KiB; the pool's pages allow %" PRIu64 " KiB", run >> 10,
             best * HUGE_2M >> 10);
  /* A block of k pages is k-page aligned in the region: a run of 2k-1 pages always holds
   * one.  8 MiB when the run allows it for certain, else 4 MiB. */
  uint64_t size = best >= 7 ? 8 * MIB : best >= 3 ? 4 * MIB : 0;
  if (size == 0) {
    wire_close(&c);
    assert_int_equal(testd_stop(&d), 0);
    print_message("skipped: the pool's %d free pages hold no 3 physically consecutive pages "
                  "(longest %" PRIu64 "): no contiguous block above 2 MiB is certain\n",
                  SORT_POOL, best);
    skip();
  }
  int rc = wire_alloc(&c, size, 0x1, NULL, &r);
  if (rc != 0)
    fail_msg("CONTIGUOUS %" PRIu64 " MiB: %s", (uint64_t)(size / MIB), pp_err_name(rc));
  assert_true(r->buffer->contiguous);
  assert_int_equal(r->buffer->size, size);
  assert_int_equal(r->buffer->n_segments, 1);
  uint64_t first = pagemap_phys(c.base + r->buffer->offset);
  assert_int_equal(first, r->buffer->phys_addr);
  for (uint64_t off = 4096; off < size; off += 4096) {
    uint64_t p = pagemap_phys(c.base + r->buffer->offset + off);
    if (p != first + off)
      fail_msg("page at +%" PRIu64 " is at 0x%" PRIx64 ", not 0x%" PRIx64, off, p, first + off);
  }
  print_message("longest run %" PRIu64 " pages; CONTIGUOUS %" PRIu64
                " MiB granted and checked page by page\n",
                best, (uint64_t)(size / MIB));
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static void sort_pages_no_keeps_the_order_the_pool_gives(void **state) {
  const char *why = NULL;
  testd_t d;
  wire_t c;
  (void)state;

  if (!hp_make_available(8, &why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
  assert_int_equal(
      testd_start(&d, "--size", "16M", "--page-size", "2M", "--sort-pages", "no", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "unsorted"), 0);
  need_pagemap_pfns(&c);
  assert_true(log_has(&d, "region: 16 MiB in 8 pages of 2 MiB (hugetlb)"));
  assert_false(log_has(&d, "sorted by physical address"));
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(buffer_phys_and_contiguous_blocks_match_pagemap_with_4k_pages),
      cmocka_unit_test(buffer_phys_equals_pagemap_with_2m_hugepages),
      cmocka_unit_test(contiguous_buffer_larger_than_a_hugepage_is_contiguous_page_by_page),
      cmocka_unit_test(contiguous_8m_buffer_from_sorted_hugepages_is_contiguous_page_by_page),
      cmocka_unit_test(sort_pages_no_keeps_the_order_the_pool_gives),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
