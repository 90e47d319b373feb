/*
 * test_ledger_holes.c — the ledger when pages are punched out of its region: what is lost
 * is never handed out, freed lost pages go to quarantine, objects on lost pages are set
 * aside, buffers that lost contents are flagged, and a repair gives everything back.
 *
 * The ledger is driven directly (no daemon, no socket) over a region of 4 KiB pages, and
 * the test punches the region's own memfd, as any client holding it could.  Nothing here
 * needs root.  The cases where a repair must fail spend the region's pin budget first
 * (twice the region: the first whole repair takes the rest), so they need the long-term pin
 * and skip, saying why, without it.  ledger_check runs after every step.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ledger.h"

#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)
#define REGION (4 * MIB)

static ledger_t *make(bool zero_on_free) {
  ledger_config_t cfg = {
      .size = REGION, .policy = REGION_PAGE_4K, .zero_on_free = zero_on_free};
  ledger_t *l = NULL;
  int rc = ledger_create(&cfg, &l);
  if (rc) {
    print_message("skipped: cannot create a 4 MiB region of 4 KiB pages: %s\n",
                  pp_strerror(rc));
    skip();
  }
  return l;
}

static void checked(ledger_t *l) {
  char why[256] = "";
  if (ledger_check(l, why, sizeof why)) fail_msg("ledger_check: %s", why);
}

static ledger_holder_t *holder(ledger_t *l, uint64_t sid) {
  ledger_ident_t id = {.session_id = sid, .pid = (pid_t)(100 + sid), .uid = 1000};
  ledger_holder_t *h = NULL;
  assert_int_equal(ledger_holder_create(l, &id, &h), 0);
  return h;
}

/* What any holder of the memfd can do. */
static void punch(ledger_t *l, uint64_t off, uint64_t len) {
  assert_int_equal(fallocate(region_fd(ledger_region(l)),
                             FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                             (off_t)len),
                   0);
}

static ledger_holes_stats_t holes(const ledger_t *l) {
  ledger_holes_stats_t s;
  ledger_holes_stats(l, &s);
  return s;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) {
  return a < b + blen && b < a + alen;
}

typedef struct lost_blocks {
  uint64_t bytes, other;
} lost_blocks_t;

static int count_lost(void *ctx, const ledger_block_t *b) {
  lost_blocks_t *c = ctx;
  if (b->kind == LEDGER_BLOCK_LOST) c->bytes += b->size;
  if (b->kind == LEDGER_BLOCK_OTHER) c->other += b->size;
  return 0;
}

static lost_blocks_t map_lost(ledger_t *l) {
  lost_blocks_t c = {0};
  assert_int_equal(ledger_walk_blocks(l, count_lost, &c), 0);
  return c;
}

/* Spend the pin budget: the whole region punched and repaired once takes what is left of
 * twice the region, so no later repair can pin a page. */
static void spend_pin_budget(ledger_t *l) {
  if (!region_pinned(ledger_region(l))) {
    print_message("skipped: the region is not pinned (%s): repairs never run out\n",
                  region_pin_status(ledger_region(l)));
    ledger_destroy(l);
    skip();
  }
  punch(l, 0, REGION);
  assert_true(ledger_holes_scan(l) >= 0);
  assert_int_equal(ledger_holes_repair(l), 0);
  assert_int_equal(holes(l).lost_bytes, 0);
  punch(l, 0, 4096); /* one page more: its repair is refused */
  assert_true(ledger_holes_scan(l) >= 0);
  assert_int_equal(ledger_holes_repair(l), PP_EQUOTA);
  assert_int_equal(holes(l).lost_bytes, 4096);
  checked(l);
}

/* ---- the tests ------------------------------------------------------------------------ */

static void punched_free_pages_are_quarantined_and_come_back_after_a_repair(void **state) {
  (void)state;
  ledger_t *l = make(false);
  ledger_holder_t *h = holder(l, 1);
  ledger_buf_info_t b;
  uint64_t free_before = ledger_free_bytes(l), taken = 0;

  punch(l, MIB, MIB);
  assert_true(ledger_holes_scan(l) >= 0);
  checked(l);
  assert_int_equal(holes(l).lost_bytes, MIB);
  assert_int_equal(holes(l).quarantined_bytes, MIB);
  assert_int_equal(holes(l).punched_bytes, MIB);
  assert_int_equal(map_lost(l).bytes, MIB);
  assert_int_equal(map_lost(l).other, 0);
  assert_int_equal(ledger_free_bytes(l), free_before - MIB);
  /* Every block the ledger hands out now lies outside the lost megabyte. */
  while (ledger_buf_alloc(l, h, 64 * KIB, 0, NULL, NULL, &b) == 0) {
    assert_false(overlaps(b.offset, b.size, MIB, MIB));
    assert_false(b.damaged);
    taken += b.size;
  }
  assert_int_equal(taken, REGION - MIB);
  checked(l);
  /* The pool backs it again: the quarantine goes back to the buddy, whole. */
  assert_int_equal(ledger_holes_repair(l), 0);
  checked(l);
  assert_int_equal(holes(l).lost_bytes, 0);
  assert_int_equal(holes(l).quarantined_bytes, 0);
  assert_int_equal(map_lost(l).bytes, 0);
  assert_int_equal(ledger_free_bytes(l), MIB);
  assert_int_equal(ledger_buf_alloc(l, h, MIB, LEDGER_ALLOC_ZERO, NULL, NULL, &b), 0);
  assert_int_equal(b.offset, MIB);
  ledger_holder_release(l, h);
  checked(l);
  assert_int_equal(ledger_free_bytes(l), free_before);
  ledger_destroy(l);
}

static void an_allocation_finds_a_punched_free_block_before_handing_it_out(void **state) {
  (void)state;
  ledger_t *l = make(false);
  ledger_holder_t *h = holder(l, 1);
  ledger_buf_info_t b;

  /* No scan: the block's own check finds the hole, and the repair backs it again. */
  punch(l, 0, REGION);
  assert_int_equal(ledger_buf_alloc(l, h, 256 * KIB, LEDGER_ALLOC_ZERO, "fresh", NULL, &b), 0);
  checked(l);
  assert_false(b.damaged); /* it was free when the hole was punched */
  assert_int_equal(b.lost_bytes, 0);
  assert_int_equal(region_lost_in(ledger_region(l), b.offset, b.size), 0);
  assert_true(holes(l).punched_bytes >= 256 * KIB);
  for (uint64_t i = 0; i < b.size; i += 512)
    assert_int_equal(((const char *)region_base(ledger_region(l)))[b.offset + i], 0);
  if (region_phys_known(ledger_region(l))) assert_true(b.phys != 0);
  ledger_holder_release(l, h);
  ledger_destroy(l);
}

static void a_lookup_of_a_punched_buffer_flags_it_damaged_and_repairs_it(void **state) {
  (void)state;
  ledger_t *l = make(false);
  ledger_holder_t *h = holder(l, 1), *g = holder(l, 2);
  ledger_buf_info_t a, b, again;
  char *base = region_base(ledger_region(l));

  assert_int_equal(ledger_buf_alloc(l, h, 128 * KIB, 0, "frames", NULL, &a), 0);
  assert_int_equal(ledger_buf_alloc(l, h, 128 * KIB, 0, "spare", NULL, &b), 0);
  memset(base + a.offset, 'x', a.size);
  punch(l, a.offset + 8 * KIB, 8 * KIB);
  assert_int_equal(ledger_buf_lookup(l, g, "~1000/frames", NULL, &again), 0);
  checked(l);
  assert_true(again.damaged);
  assert_int_equal(again.lost_bytes, 0); /* repaired at once */
  assert_int_equal(holes(l).damaged_buffers, 1);
  assert_int_equal(holes(l).punched_bytes, 8 * KIB);
  assert_int_equal(ledger_holder_damaged(l, h), 1);
  assert_int_equal(ledger_holder_damaged(l, g), 1);
  /* The kernel gave back a zeroed page: that is the damage. */
  assert_int_equal(base[a.offset + 8 * KIB], 0);
  assert_int_equal(base[a.offset], 'x');
  if (region_phys_known(ledger_region(l))) {
    uint64_t p;
    assert_int_equal(region_phys(ledger_region(l), a.offset + 8 * KIB, &p), 0);
  }
  /* The other buffer is untouched and says so. */
  for (size_t it = 0; ledger_buf_next(l, &it, &again);)
    if (again.handle == b.handle) assert_false(again.damaged);
  assert_int_equal(ledger_buf_free(l, h, a.handle, NULL), 0);
  assert_int_equal(ledger_buf_free(l, g, a.handle, NULL), 0);
  assert_int_equal(holes(l).damaged_buffers, 0);
  assert_int_equal(holes(l).quarantined_bytes, 0);
  checked(l);
  ledger_holder_release(l, g);
  ledger_holder_release(l, h);
  ledger_destroy(l);
}

static void
once_repairs_fail_a_freed_buffer_keeps_its_lost_pages_out_of_the_buddy(void **state) {
  (void)state;
  for (int zero = 0; zero < 2; zero++) {
    ledger_t *l = make(zero);
    spend_pin_budget(l);
    ledger_holder_t *h = holder(l, 1);
    ledger_buf_info_t a, again;
    uint64_t q0 = holes(l).quarantined_bytes;

    assert_int_equal(ledger_buf_alloc(l, h, 64 * KIB, 0, "doomed", NULL, &a), 0);
    punch(l, a.offset, 16 * KIB);
    assert_int_equal(ledger_buf_lookup(l, h, "doomed", NULL, &again), 0);
    checked(l);
    assert_true(again.damaged);
    assert_int_equal(again.lost_bytes, 16 * KIB);
    assert_int_equal(again.phys, 0); /* its first page is lost: no address */
    assert_false(again.contiguous);
    uint64_t free_before = ledger_free_bytes(l);
    assert_int_equal(ledger_buf_free(l, h, a.handle, NULL), 0);
    assert_int_equal(ledger_buf_free(l, h, a.handle, NULL), 0);
    checked(l);
    /* The sound 48 KiB go back (zeroed with zero_on_free); the lost 16 KiB do not. */
    assert_int_equal(ledger_free_bytes(l), free_before + 48 * KIB);
    assert_int_equal(holes(l).quarantined_bytes, q0 + 16 * KIB);
    if (zero)
      for (uint64_t i = 16 * KIB; i < 64 * KIB; i += 512)
        assert_int_equal(((const char *)region_base(ledger_region(l)))[a.offset + i], 0);
    ledger_holder_release(l, h);
    checked(l);
    ledger_destroy(l);
  }
}

static void zeroing_allocations_never_return_a_block_they_could_not_zero(void **state) {
  (void)state;
  ledger_t *l = make(false);
  spend_pin_budget(l);
  ledger_holder_t *h = holder(l, 1);
  ledger_buf_info_t keep, b;
  ledger_why_t why;

  assert_int_equal(ledger_buf_alloc(l, h, MIB, 0, "keep", NULL, &keep), 0);
  /* Everything but the buffer is punched; nothing can be repaired. */
  punch(l, 0, keep.offset);
  punch(l, keep.offset + MIB, REGION - keep.offset - MIB);
  for (int i = 0; i < 4; i++) {
    int rc = ledger_buf_alloc(l, h, 64 * KIB, LEDGER_ALLOC_ZERO, NULL, &why, &b);
    assert_true(rc == PP_ELOSTPAGE || rc == PP_ENOMEM);
    checked(l);
  }
  assert_int_equal(ledger_buf_alloc(l, h, 4 * KIB, 0, NULL, &why, &b), PP_ENOMEM);
  assert_int_equal(holes(l).lost_bytes, REGION - MIB);
  assert_int_equal(holes(l).quarantined_bytes, REGION - MIB);
  assert_int_equal(ledger_free_bytes(l), 0);
  assert_false(keep.damaged);
  ledger_holder_release(l, h);
  checked(l);
  assert_int_equal(ledger_free_bytes(l), MIB);
  ledger_destroy(l);
}

static void objects_on_lost_pages_are_set_aside_and_come_back_after_a_repair(void **state) {
  (void)state;
  ledger_t *l = make(true);
  ledger_holder_t *h = holder(l, 1);
  ledger_cache_info_t ci;
  uint64_t offs[64], more[64];
  uint64_t slab;

  assert_int_equal(ledger_cache_open(l, h, "hdr", 256, 0, NULL, &ci), 0);
  assert_int_equal(ledger_cache_alloc(l, h, ci.id, 64, offs, NULL), 0);
  slab = offs[0] & ~(ci.slab_bytes - 1);
  punch(l, slab, 4 * KIB); /* the first page of the first slab */
  assert_true(ledger_holes_scan(l) >= 0);
  checked(l);
  assert_int_equal(ledger_cache_free(l, h, ci.id, offs, 64, NULL), 0);
  checked(l);
  ledger_holes_stats_t s = holes(l);
  assert_int_equal(s.objects_aside, 4 * KIB / 256);
  /* No object on the lost page is handed out again. */
  assert_int_equal(ledger_cache_alloc(l, h, ci.id, 64, more, NULL), 0);
  for (int i = 0; i < 64; i++)
    assert_false(overlaps(more[i], 256, slab, 4 * KIB));
  checked(l);
  assert_int_equal(ledger_cache_free(l, h, ci.id, more, 64, NULL), 0);
  assert_int_equal(ledger_holes_repair(l), 0);
  checked(l);
  assert_int_equal(holes(l).objects_aside, 0);
  assert_int_equal(holes(l).lost_bytes, 0);
  ledger_holder_release(l, h);
  checked(l);
  assert_int_equal(ledger_ncaches(l), 0);
  ledger_destroy(l);
}

static void
a_cache_with_objects_set_aside_goes_and_its_lost_pages_are_quarantined(void **state) {
  (void)state;
  ledger_t *l = make(false);
  spend_pin_budget(l);
  ledger_holder_t *h = holder(l, 1);
  ledger_cache_info_t ci;
  uint64_t offs[32];
  uint64_t q0 = holes(l).quarantined_bytes, free0 = ledger_free_bytes(l);

  assert_int_equal(ledger_cache_open(l, h, "doomed", 512, 0, NULL, &ci), 0);
  assert_int_equal(ledger_cache_alloc(l, h, ci.id, 32, offs, NULL), 0);
  uint64_t slab = offs[0] & ~(ci.slab_bytes - 1);
  punch(l, slab, ci.slab_bytes);
  assert_true(ledger_holes_scan(l) >= 0);
  assert_int_equal(ledger_cache_free(l, h, ci.id, offs, 32, NULL), 0);
  assert_true(holes(l).objects_aside > 0);
  checked(l);
  assert_int_equal(ledger_cache_close(l, h, ci.id, NULL), 0); /* the last open: it goes */
  checked(l);
  assert_int_equal(ledger_ncaches(l), 0);
  assert_int_equal(holes(l).objects_aside, 0);
  assert_int_equal(holes(l).quarantined_bytes, q0 + ci.slab_bytes);
  assert_int_equal(ledger_free_bytes(l), free0 - ci.slab_bytes);
  ledger_holder_release(l, h);
  ledger_destroy(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(punched_free_pages_are_quarantined_and_come_back_after_a_repair),
      cmocka_unit_test(an_allocation_finds_a_punched_free_block_before_handing_it_out),
      cmocka_unit_test(a_lookup_of_a_punched_buffer_flags_it_damaged_and_repairs_it),
      cmocka_unit_test(once_repairs_fail_a_freed_buffer_keeps_its_lost_pages_out_of_the_buddy),
      cmocka_unit_test(zeroing_allocations_never_return_a_block_they_could_not_zero),
      cmocka_unit_test(objects_on_lost_pages_are_set_aside_and_come_back_after_a_repair),
      cmocka_unit_test(a_cache_with_objects_set_aside_goes_and_its_lost_pages_are_quarantined),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
