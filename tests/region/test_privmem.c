/*
 * test_privmem.c — when the daemon's own (private, malloc) memory runs out, every shm/
 * module says so with PP_ENOPRIVMEM, never with PP_ENOMEM (which means "the region is
 * full" and sends an operator looking at the wrong memory), and leaves nothing behind.
 *
 * How: the executable is linked with --wrap for malloc, calloc, realloc and aligned_alloc,
 * so every allocation the shm/ code makes goes through __wrap_* below, which can make the
 * nth next one fail.  Each case fails the 1st, 2nd, ... allocation of one operation until
 * the operation succeeds; each failure must be PP_ENOPRIVMEM and leak nothing
 * (LeakSanitizer in the ASan build), and the state must be as before.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"
#include "magazine.h"
#include "region.h"
#include "region_internal.h"
#include "slab.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);

static unsigned fail_countdown; /* 0: disarmed; 1: the next allocation fails */
static unsigned allocations;    /* made (or refused) since armed */

static bool refuse(void) {
  allocations++;
  if (fail_countdown == 0) return false;
  return --fail_countdown == 0;
}

void *__wrap_malloc(size_t n) {
  return refuse() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t k, size_t n) {
  return refuse() ? NULL : __real_calloc(k, n);
}
void *__wrap_realloc(void *p, size_t n) {
  return refuse() ? NULL : __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n) {
  return refuse() ? NULL : __real_aligned_alloc(a, n);
}

static void arm(unsigned nth) {
  allocations = 0;
  fail_countdown = nth;
}

/* Fail the 1st, 2nd, ... allocation of op until it succeeds; every failure must be
 * PP_ENOPRIVMEM.  Returns how many failures were tried (at least min). */
typedef int (*op_fn)(void *ctx);
static unsigned fail_each_allocation(op_fn op, void *ctx, unsigned min, const char *what) {
  for (unsigned nth = 1;; nth++) {
    arm(nth);
    int rc = op(ctx);
    bool refused = fail_countdown == 0;
    arm(0);
    if (!refused) {
      assert_int_equal(rc, 0);
      if (nth - 1 < min) fail_msg("%s: only %u allocations to fail", what, nth - 1);
      return nth - 1;
    }
    if (rc != 0 && rc != PP_ENOPRIVMEM)
      fail_msg("%s: allocation #%u refused, got %s instead of PP_ENOPRIVMEM", what, nth,
               pp_err_name(rc));
    if (rc == 0) return nth; /* an optional allocation (an index): success without it */
  }
}

/* ---- region tables ------------------------------------------------------------------ */

#define PS 4096ull
static const uint64_t table[6] = {0x100000, 0x101000, 0x102000, 0x200000, 0x201000, 0x300000};

static int op_from_phys(void *ctx) {
  region_t **r = ctx;
  return region_from_phys(6 * PS, PS, table, r);
}

static void region_tables_report_enoprivmem_and_work_without_the_optional_index(void **state) {
  region_t *r = NULL;
  unsigned tried = fail_each_allocation(op_from_phys, &r, 3, "region_from_phys");
  print_message("region_from_phys: %u allocations failed in turn\n", tried);
  char why[256] = "";
  assert_int_equal(region_check(r, why, sizeof why), 0);
  uint64_t p;
  assert_int_equal(region_phys(r, 4 * PS + 5, &p), 0);
  assert_int_equal(p, 0x201005);
  assert_true(region_is_contiguous(r, 0, 3 * PS));
  assert_false(region_is_contiguous(r, 0, 4 * PS));
  region_destroy(r);
}

/* ---- buddy ------------------------------------------------------------------------ */

static int op_buddy(void *ctx) {
  return buddy_create(1 << 20, PS, NULL, NULL, ctx);
}

static void buddy_metadata_failure_is_enoprivmem_not_enomem(void **state) {
  buddy_t *b = NULL;
  fail_each_allocation(op_buddy, &b, 2, "buddy_create");
  uint64_t off;
  assert_int_equal(buddy_alloc(b, 8, 0, &off), 0);         /* the whole 1 MiB */
  assert_int_equal(buddy_alloc(b, 0, 0, &off), PP_ENOMEM); /* full: the region's memory */
  buddy_destroy(b);
}

/* ---- slab and magazines --------------------------------------------------------------- */

typedef struct slab_fixture {
  buddy_t *buddy;
  slab_t *slab;
  slab_cache_t *cache;
  mag_depot_t *depot;
  mag_cpu_t *cpu;
  uint64_t obj;
} slab_fixture_t;

static int op_slab_create(void *ctx) {
  slab_fixture_t *f = ctx;
  return slab_create(f->buddy, &f->slab);
}
static int op_cache_create(void *ctx) {
  slab_fixture_t *f = ctx;
  return slab_cache_create(f->slab, "privmem", 256, 0, &f->cache);
}
static int op_cache_alloc(void *ctx) {
  slab_fixture_t *f = ctx;
  return slab_cache_alloc(f->cache, &f->obj);
}
static int op_depot_create(void *ctx) {
  slab_fixture_t *f = ctx;
  return mag_depot_create(f->cache, 0, false, &f->depot);
}
static int op_cpu_create(void *ctx) {
  slab_fixture_t *f = ctx;
  return mag_cpu_create(f->depot, &f->cpu);
}

static void slab_and_magazine_metadata_failures_are_enoprivmem(void **state) {
  slab_fixture_t f = {0};
  assert_int_equal(buddy_create(1 << 20, PS, NULL, NULL, &f.buddy), 0);
  buddy_stats_t before, after;
  buddy_get_stats(f.buddy, &before);
  fail_each_allocation(op_slab_create, &f, 2, "slab_create");
  fail_each_allocation(op_cache_create, &f, 2, "slab_cache_create");
  /* A new slab's descriptor: the buddy block taken for it must go back on failure. */
  arm(1);
  assert_int_equal(slab_cache_alloc(f.cache, &f.obj), PP_ENOPRIVMEM);
  arm(0);
  buddy_get_stats(f.buddy, &after);
  assert_int_equal(after.free_bytes, before.free_bytes);
  fail_each_allocation(op_cache_alloc, &f, 1, "slab_cache_alloc");
  fail_each_allocation(op_depot_create, &f, 1, "mag_depot_create");
  fail_each_allocation(op_cpu_create, &f, 3, "mag_cpu_create");
  char why[256] = "";
  assert_int_equal(slab_cache_check(f.cache, why, sizeof why), 0);
  assert_int_equal(slab_cache_free(f.cache, f.obj), 0);
  mag_cpu_destroy(f.cpu);
  mag_depot_destroy(f.depot);
  slab_destroy(f.slab);
  buddy_destroy(f.buddy);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(region_tables_report_enoprivmem_and_work_without_the_optional_index),
      cmocka_unit_test(buddy_metadata_failure_is_enoprivmem_not_enomem),
      cmocka_unit_test(slab_and_magazine_metadata_failures_are_enoprivmem),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
