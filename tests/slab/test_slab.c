/*
 * test_slab.c — the slab layer over a real buddy allocator (no region needed: both deal in
 * offsets).  Geometry, the full/partial/empty transitions and the partial -> empty -> grow
 * order, coloring, reclaim, the free() error contract and bulk all-or-nothing, then a
 * model-based randomized run against a plain reference set of allocated offsets.
 * PP_DEBUG=3 builds also run slab_cache_check() inside every state change.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buddy.h"
#include "slab.h"

#define REGION (8ull << 20) /* 8 MiB of offsets */

typedef struct fixture {
  buddy_t *buddy;
  slab_t *slab;
} fixture_t;

static int setup_size(void **state, uint64_t size) {
  fixture_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  if (buddy_create(size, 4096, NULL, NULL, &f->buddy) != 0) return -1;
  if (slab_create(f->buddy, &f->slab) != 0) return -1;
  *state = f;
  return 0;
}
static int setup(void **state) {
  return setup_size(state, REGION);
}
static int setup_small(void **state) {
  return setup_size(state, 256 * 1024);
}

static int teardown(void **state) {
  fixture_t *f = *state;
  slab_destroy(f->slab);
  /* Destroying the registry returns every slab: the buddy must be whole again. */
  buddy_stats_t bs;
  buddy_get_stats(f->buddy, &bs);
  int rc = bs.nr_alloc_blocks == 0 ? 0 : -1;
  if (rc)
    fprintf(stderr, "slab_destroy left %llu buddy blocks\n",
            (unsigned long long)bs.nr_alloc_blocks);
  buddy_destroy(f->buddy);
  free(f);
  return rc;
}

static void check_all(fixture_t *f) {
  char why[256] = "";
  int rc = slab_check(f->slab, why, sizeof why);
  if (rc != 0) fail_msg("slab_check: %s", why);
  rc = buddy_check(f->buddy, why, sizeof why);
  if (rc != 0) fail_msg("buddy_check: %s", why);
}

static slab_info_t info_of(slab_cache_t *c) {
  slab_info_t in;
  slab_cache_info(c, &in);
  return in;
}

/* Which slab (by base) holds offset, via the public walk. */
typedef struct find_slab {
  uint64_t offset, base;
  uint32_t inuse;
  int found;
} find_slab_t;

static void find_slab_fn(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse,
                         uint32_t cap) {
  find_slab_t *q = ctx;
  if (q->offset >= offset && q->offset < offset + bytes) {
    q->base = offset;
    q->inuse = inuse;
    q->found++;
  }
}

static uint64_t slab_base_of(slab_cache_t *c, uint64_t offset) {
  find_slab_t q = {.offset = offset};
  slab_cache_walk(c, find_slab_fn, &q);
  assert_int_equal(q.found, 1);
  return q.base;
}

/* ---- creation and geometry ----------------------------------------------------------- */

static void create_same_name_same_geometry_returns_same_cache(void **state) {
  fixture_t *f = *state;
  slab_cache_t *a, *b;
  assert_int_equal(slab_cache_create(f->slab, "pkt", 256, 64, &a), 0);
  assert_int_equal(slab_cache_create(f->slab, "pkt", 256, 64, &b), 0);
  assert_ptr_equal(a, b);
  assert_ptr_equal(slab_cache_find(f->slab, "pkt"), a);
  /* align 0 means 8, so these name one geometry */
  assert_int_equal(slab_cache_create(f->slab, "small", 24, 0, &a), 0);
  assert_int_equal(slab_cache_create(f->slab, "small", 24, 8, &b), 0);
  assert_ptr_equal(a, b);
}

static void create_same_name_other_geometry_fails_with_egeometry(void **state) {
  fixture_t *f = *state;
  slab_cache_t *a, *b = (slab_cache_t *)0x1;
  assert_int_equal(slab_cache_create(f->slab, "pkt", 256, 64, &a), 0);
  assert_int_equal(slab_cache_create(f->slab, "pkt", 512, 64, &b), PP_EGEOMETRY);
  assert_int_equal(slab_cache_create(f->slab, "pkt", 256, 128, &b), PP_EGEOMETRY);
  assert_ptr_equal(b, (slab_cache_t *)0x1); /* ret untouched on failure */
  assert_ptr_equal(slab_cache_find(f->slab, "pkt"), a);
  assert_int_equal(info_of(a).object_size, 256);
}

static void create_rejects_bad_sizes_alignments_and_names(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = NULL;
  char longname[SLAB_NAME_MAX + 1];
  memset(longname, 'x', sizeof longname - 1);
  longname[SLAB_NAME_MAX] = 0;
  assert_int_equal(slab_cache_create(f->slab, "a", SLAB_MIN_OBJECT - 1, 8, &c), PP_ERANGE);
  assert_int_equal(slab_cache_create(f->slab, "b", SLAB_MAX_OBJECT + 1, 8, &c), PP_ERANGE);
  assert_int_equal(slab_cache_create(f->slab, "c", 64, 2 * SLAB_MAX_OBJECT, &c), PP_ERANGE);
  assert_int_equal(slab_cache_create(f->slab, "d", 64, 24, &c), PP_EINVAL);
  assert_int_equal(slab_cache_create(f->slab, "", 64, 8, &c), PP_EINVAL);
  assert_int_equal(slab_cache_create(f->slab, longname, 64, 8, &c), PP_EINVAL);
  assert_null(c);
  assert_int_equal(slab_cache_create(f->slab, "max", SLAB_MAX_OBJECT, 8, &c), 0);
  assert_int_equal(info_of(c).objs_per_slab, 8);
  assert_int_equal(info_of(c).pages_per_slab, 1u << SLAB_MAX_ORDER);
}

static void ids_are_small_stable_and_found_again(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c[5];
  char name[16];
  for (unsigned i = 0; i < 5; i++) {
    snprintf(name, sizeof name, "c%u", i);
    assert_int_equal(slab_cache_create(f->slab, name, 64 + 8 * i, 8, &c[i]), 0);
  }
  for (unsigned i = 0; i < 5; i++) {
    assert_int_equal(info_of(c[i]).id, i);
    assert_ptr_equal(slab_cache_by_id(f->slab, i), c[i]);
  }
  assert_null(slab_cache_by_id(f->slab, 5));
  assert_null(slab_cache_find(f->slab, "nope"));
}

static uint64_t buddy_free_bytes(fixture_t *f) {
  buddy_stats_t bs;
  buddy_get_stats(f->buddy, &bs);
  return bs.free_bytes;
}

static void destroy_returns_the_slabs_and_never_reuses_the_id(void **state) {
  fixture_t *f = *state;
  uint64_t before = buddy_free_bytes(f), offs[40];
  slab_cache_t *a, *b, *c, *again;
  uint32_t id_b;

  assert_int_equal(slab_cache_create(f->slab, "a", 64, 8, &a), 0);
  assert_int_equal(slab_cache_create(f->slab, "b", 512, 8, &b), 0);
  assert_int_equal(slab_cache_create(f->slab, "c", 96, 32, &c), 0);
  id_b = info_of(b).id;
  assert_int_equal(slab_cache_alloc_bulk(b, offs, 40), 40);
  assert_true(buddy_free_bytes(f) < before);
  /* With objects out it stays, whole. */
  assert_int_equal(slab_cache_destroy(b), PP_EBUSY);
  assert_ptr_equal(slab_cache_by_id(f->slab, id_b), b);
  assert_int_equal(info_of(b).active_objs, 40);
  check_all(f);

  assert_int_equal(slab_cache_free_bulk(b, offs, 40, NULL), 0);
  assert_int_equal(slab_cache_destroy(b), 0); /* empty slabs go back with it */
  check_all(f);
  assert_int_equal(buddy_free_bytes(f), before);
  assert_null(slab_cache_by_id(f->slab, id_b));
  assert_null(slab_cache_find(f->slab, "b"));
  /* Its neighbours are still found, by id and by name. */
  assert_ptr_equal(slab_cache_by_id(f->slab, info_of(a).id), a);
  assert_ptr_equal(slab_cache_by_id(f->slab, info_of(c).id), c);
  assert_ptr_equal(slab_cache_find(f->slab, "c"), c);

  /* The name can be had again, with another geometry and a fresh id. */
  assert_int_equal(slab_cache_create(f->slab, "b", 128, 8, &again), 0);
  assert_true(info_of(again).id > info_of(c).id);
  assert_null(slab_cache_by_id(f->slab, id_b));
  assert_int_equal(slab_cache_destroy(a), 0);
  assert_int_equal(slab_cache_destroy(c), 0);
  assert_int_equal(slab_cache_destroy(again), 0);
  check_all(f);
  assert_int_equal(slab_shrink(f->slab), 0);
  assert_int_equal(buddy_free_bytes(f), before);
}

static void many_create_destroy_cycles_keep_the_registry_whole(void **state) {
  fixture_t *f = *state;
  slab_cache_t *keep, *c;
  uint64_t off, before = buddy_free_bytes(f);
  char name[32];

  assert_int_equal(slab_cache_create(f->slab, "keep", 64, 8, &keep), 0);
  for (unsigned i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "cycle-%u", i);
    assert_int_equal(slab_cache_create(f->slab, name, 8 + 8 * (i % 64), 8, &c), 0);
    assert_int_equal(info_of(c).id, i + 1);
    assert_int_equal(slab_cache_alloc(c, &off), 0);
    assert_int_equal(slab_cache_free(c, off), 0);
    assert_int_equal(slab_cache_destroy(c), 0);
    if (i % 500 == 0) check_all(f);
  }
  assert_ptr_equal(slab_cache_by_id(f->slab, 0), keep);
  assert_null(slab_cache_by_id(f->slab, 3000));
  assert_int_equal(buddy_free_bytes(f), before);
  check_all(f);
}

static void waste_is_within_one_eighth_for_every_size(void **state) {
  fixture_t *f = *state;
  static const uint32_t aligns[] = {8, 64, 512};
  char name[32];
  for (unsigned a = 0; a < 3; a++) {
    for (uint32_t size = SLAB_MIN_OBJECT; size <= SLAB_MAX_OBJECT; size++) {
      if (a > 0 && size % aligns[a] != 1 && size % aligns[a] != 0)
        continue; /* one per stride */
      slab_cache_t *c;
      snprintf(name, sizeof name, "w%u-%u", aligns[a], size);
      assert_int_equal(slab_cache_create(f->slab, name, size, aligns[a], &c), 0);
      slab_info_t in = info_of(c);
      uint64_t bytes = (uint64_t)in.pages_per_slab * 4096;
      assert_int_equal(in.stride % aligns[a], 0);
      assert_true(in.stride >= size);
      assert_true(in.objs_per_slab >= 8);
      assert_int_equal(in.waste_bytes_per_slab, bytes - (uint64_t)in.objs_per_slab * in.stride);
      if (in.waste_bytes_per_slab * 8 > bytes)
        fail_msg("size %u align %u: waste %llu of %llu bytes", size, aligns[a],
                 (unsigned long long)in.waste_bytes_per_slab, (unsigned long long)bytes);
      assert_true(in.waste_permille <= 125);
      /* the smallest order that meets the bound: one order less would not */
      if (in.pages_per_slab > 1) {
        uint64_t half = bytes / 2, objs = half / in.stride;
        assert_true(objs < 8 || (half - objs * in.stride) * 8 > half);
      }
    }
  }
  check_all(f);
}

static void empty_registry_checks_shrinks_and_dumps(void **state) {
  fixture_t *f = *state;
  assert_int_equal(slab_shrink(f->slab), 0);
  check_all(f);
  assert_null(slab_cache_by_id(f->slab, 0));
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  assert_non_null(m);
  slab_dump(f->slab, m);
  fclose(m);
  assert_non_null(strstr(buf, "slabinfo - version: 2.1"));
  free(buf);
}

/* ---- states and allocation order ----------------------------------------------------- */

static void slabs_move_between_full_partial_and_empty(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c;
  assert_int_equal(slab_cache_create(f->slab, "t", 512, 8, &c), 0);
  uint32_t cap = info_of(c).objs_per_slab;
  uint64_t *o = calloc(cap, sizeof *o);
  assert_non_null(o);

  assert_int_equal(info_of(c).num_slabs, 0);
  assert_int_equal(slab_cache_alloc(c, &o[0]), 0);
  slab_info_t in = info_of(c);
  assert_int_equal(in.partial_slabs, 1);
  assert_int_equal(in.full_slabs + in.empty_slabs, 0);
  for (uint32_t i = 1; i < cap; i++)
    assert_int_equal(slab_cache_alloc(c, &o[i]), 0);
  in = info_of(c);
  assert_int_equal(in.full_slabs, 1);
  assert_int_equal(in.partial_slabs + in.empty_slabs, 0);
  assert_int_equal(in.active_objs, cap);
  assert_int_equal(in.num_objs, cap);
  assert_int_equal(slab_cache_free(c, o[3]), 0);
  in = info_of(c);
  assert_int_equal(in.partial_slabs, 1);
  assert_int_equal(in.full_slabs, 0);
  for (uint32_t i = 0; i < cap; i++)
    if (i != 3) assert_int_equal(slab_cache_free(c, o[i]), 0);
  in = info_of(c);
  assert_int_equal(in.empty_slabs, 1);
  assert_int_equal(in.active_slabs, 0);
  assert_int_equal(in.active_objs, 0);
  assert_int_equal(in.allocs, cap);
  assert_int_equal(in.frees, cap);
  free(o);
  check_all(f);
}

static void alloc_prefers_partial_then_empty_then_grows(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c;
  assert_int_equal(slab_cache_create(f->slab, "order", 1024, 8, &c), 0);
  uint32_t cap = info_of(c).objs_per_slab;
  uint64_t *a = calloc(cap, sizeof *a), *b = calloc(cap, sizeof *b), x;
  assert_non_null(a);
  assert_non_null(b);
  for (uint32_t i = 0; i < cap; i++)
    assert_int_equal(slab_cache_alloc(c, &a[i]), 0);
  for (uint32_t i = 0; i < cap; i++)
    assert_int_equal(slab_cache_alloc(c, &b[i]), 0);
  uint64_t A = slab_base_of(c, a[0]), B = slab_base_of(c, b[0]);
  assert_true(A != B);
  assert_int_equal(slab_base_of(c, a[cap - 1]), A);
  assert_int_equal(slab_base_of(c, b[cap - 1]), B);
  /* B empty (kept in the working set), A partial with one free slot */
  for (uint32_t i = 0; i < cap; i++)
    assert_int_equal(slab_cache_free(c, b[i]), 0);
  assert_int_equal(slab_cache_free(c, a[5]), 0);
  slab_info_t in = info_of(c);
  assert_int_equal(in.partial_slabs, 1);
  assert_int_equal(in.empty_slabs, 1);
  uint64_t grows = in.grows;

  /* 1: the partial slab first, although an empty one is on hand */
  assert_int_equal(slab_cache_alloc(c, &x), 0);
  assert_int_equal(slab_base_of(c, x), A);
  assert_int_equal(x, a[5]); /* the slot just freed: LIFO */
  assert_int_equal(info_of(c).full_slabs, 1);
  /* 2: then the empty slab, no grow */
  for (uint32_t i = 0; i < cap; i++) {
    assert_int_equal(slab_cache_alloc(c, &b[i]), 0);
    assert_int_equal(slab_base_of(c, b[i]), B);
  }
  assert_int_equal(info_of(c).grows, grows);
  assert_int_equal(info_of(c).full_slabs, 2);
  /* 3: nothing partial or empty left: a new slab from the buddy */
  assert_int_equal(slab_cache_alloc(c, &x), 0);
  uint64_t C = slab_base_of(c, x);
  assert_true(C != A && C != B);
  assert_int_equal(info_of(c).grows, grows + 1);
  free(a);
  free(b);
  check_all(f);
}

static void empty_slabs_beyond_working_set_go_back_to_buddy(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c;
  assert_int_equal(slab_cache_create(f->slab, "reap", 2048, 8, &c), 0);
  uint32_t cap = info_of(c).objs_per_slab, n = 6 * cap;
  uint64_t *o = calloc(n, sizeof *o);
  assert_non_null(o);
  buddy_stats_t bs0, bs;
  buddy_get_stats(f->buddy, &bs0);
  for (uint32_t i = 0; i < n; i++)
    assert_int_equal(slab_cache_alloc(c, &o[i]), 0);
  assert_int_equal(info_of(c).num_slabs, 6);
  buddy_get_stats(f->buddy, &bs);
  assert_int_equal(bs.nr_alloc_blocks, bs0.nr_alloc_blocks + 6);
  for (uint32_t i = 0; i < n; i++)
    assert_int_equal(slab_cache_free(c, o[i]), 0);
  slab_info_t in = info_of(c);
  assert_int_equal(in.empty_slabs, 2); /* the working set */
  assert_int_equal(in.num_slabs, 2);
  assert_int_equal(in.reaps, 4);
  buddy_get_stats(f->buddy, &bs);
  assert_int_equal(bs.nr_alloc_blocks, bs0.nr_alloc_blocks + 2);
  /* shrink returns every empty slab */
  assert_int_equal(slab_cache_shrink(c), 2);
  assert_int_equal(info_of(c).num_slabs, 0);
  buddy_get_stats(f->buddy, &bs);
  assert_int_equal(bs.nr_alloc_blocks, bs0.nr_alloc_blocks);
  assert_int_equal(slab_cache_shrink(c), 0);
  free(o);
  check_all(f);
}

static void shrink_keeps_slabs_with_objects(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c, *d;
  assert_int_equal(slab_cache_create(f->slab, "s1", 64, 8, &c), 0);
  assert_int_equal(slab_cache_create(f->slab, "s2", 96, 32, &d), 0);
  uint32_t cap = info_of(c).objs_per_slab;
  uint64_t x, *o = calloc(2 * cap, sizeof *o);
  assert_non_null(o);
  for (uint32_t i = 0; i < 2 * cap; i++)
    assert_int_equal(slab_cache_alloc(c, &o[i]), 0);
  assert_int_equal(slab_cache_alloc(d, &x), 0);
  for (uint32_t i = cap; i < 2 * cap; i++)
    assert_int_equal(slab_cache_free(c, o[i]), 0);
  assert_int_equal(slab_shrink(f->slab), 1);
  assert_int_equal(info_of(c).num_slabs, 1);
  assert_int_equal(info_of(d).num_slabs, 1);
  assert_true(slab_cache_owns(d, x));
  assert_true(slab_cache_owns(c, o[0]));
  free(o);
  check_all(f);
}

static void successive_slabs_take_successive_colors(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c;
  /* stride 1000 in an 8 KiB slab: 8 objects, 192 bytes of tail = colors 0, 64, 128, 192 */
  assert_int_equal(slab_cache_create(f->slab, "color", 1000, 8, &c), 0);
  slab_info_t in = info_of(c);
  assert_int_equal(in.pages_per_slab, 2);
  assert_int_equal(in.objs_per_slab, 8);
  assert_int_equal(in.waste_bytes_per_slab, 192);
  static const uint64_t want[] = {0, 64, 128, 192, 0, 64};
  uint64_t o[6 * 8];
  for (unsigned s = 0; s < 6; s++) {
    for (unsigned i = 0; i < 8; i++)
      assert_int_equal(slab_cache_alloc(c, &o[s * 8 + i]), 0);
    uint64_t base = slab_base_of(c, o[s * 8]);
    assert_int_equal(o[s * 8] - base, want[s]);
    assert_int_equal(o[s * 8 + 7] - base, want[s] + 7 * 1000);
  }
  /* a color-area offset and the tail are not objects */
  uint64_t base1 = slab_base_of(c, o[8]);
  assert_int_equal(slab_cache_free(c, base1), PP_ENOTBLOCK);
  assert_int_equal(slab_cache_free(c, base1 + 64 + 8 * 1000), PP_ENOTBLOCK);
  /* alignment above a cache line colors in units of the alignment */
  slab_cache_t *a;
  assert_int_equal(slab_cache_create(f->slab, "color128", 3000, 128, &a), 0);
  in = info_of(a);
  assert_int_equal(in.stride, 3072);
  uint64_t x, y;
  assert_int_equal(slab_cache_alloc(a, &x), 0);
  for (unsigned i = 1; i < in.objs_per_slab; i++)
    assert_int_equal(slab_cache_alloc(a, &y), 0);
  assert_int_equal(slab_cache_alloc(a, &y), 0);
  assert_int_equal(x - slab_base_of(a, x), 0);
  assert_int_equal(y - slab_base_of(a, y), in.waste_bytes_per_slab >= 128 ? 128 : 0);
  assert_int_equal(y % 128, 0);
  check_all(f);
}

/* ---- the free() contract -------------------------------------------------------------- */

static bool same_info(slab_info_t a, slab_info_t b) {
  return memcmp(&a, &b, sizeof a) == 0;
}

static void free_errors_are_distinct_and_change_nothing(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c, *d;
  assert_int_equal(slab_cache_create(f->slab, "mine", 128, 8, &c), 0);
  assert_int_equal(slab_cache_create(f->slab, "theirs", 128, 8, &d), 0);
  uint64_t x, y, z;
  assert_int_equal(slab_cache_alloc(c, &x), 0);
  assert_int_equal(slab_cache_alloc(c, &y), 0);
  assert_int_equal(slab_cache_alloc(d, &z), 0);
  assert_int_equal(slab_cache_free(c, y), 0);
  slab_info_t before = info_of(c), dbefore = info_of(d);

  assert_int_equal(slab_cache_free(c, y), PP_EDOUBLEFREE);        /* freed already */
  assert_int_equal(slab_cache_free(c, x + 8), PP_ENOTBLOCK);      /* inside an object */
  assert_int_equal(slab_cache_free(c, z), PP_ENOTALLOC);          /* another cache's object */
  assert_int_equal(slab_cache_free(c, REGION * 4), PP_ENOTALLOC); /* outside everything */
  assert_int_equal(slab_cache_free(d, x), PP_ENOTALLOC);

  assert_true(same_info(before, info_of(c)));
  assert_true(same_info(dbefore, info_of(d)));
  assert_true(slab_cache_owns(c, x));
  assert_false(slab_cache_owns(c, y));
  assert_false(slab_cache_owns(c, z));
  assert_false(slab_cache_owns(c, x + 8));
  assert_true(slab_cache_owns(d, z));
  assert_int_equal(slab_cache_free(c, x), 0);
  assert_int_equal(slab_cache_free(d, z), 0);
  check_all(f);
}

static void free_bulk_is_all_or_nothing(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c, *d;
  assert_int_equal(slab_cache_create(f->slab, "bulk", 64, 8, &c), 0);
  assert_int_equal(slab_cache_create(f->slab, "other", 64, 8, &d), 0);
  uint64_t o[100], z;
  assert_int_equal(slab_cache_alloc_bulk(c, o, 100), 100);
  assert_int_equal(slab_cache_alloc(d, &z), 0);
  slab_info_t before = info_of(c);
  unsigned bad = 999;

  uint64_t v[10];
  memcpy(v, o, sizeof v);
  v[6] = z; /* a foreign object in the middle */
  assert_int_equal(slab_cache_free_bulk(c, v, 10, &bad), PP_ENOTALLOC);
  assert_int_equal(bad, 6);
  assert_true(same_info(before, info_of(c)));
  for (unsigned i = 0; i < 10; i++)
    assert_true(slab_cache_owns(c, o[i]));

  memcpy(v, o, sizeof v);
  v[8] = v[2]; /* a duplicate within the batch */
  assert_int_equal(slab_cache_free_bulk(c, v, 10, &bad), PP_EDOUBLEFREE);
  assert_int_equal(bad, 8);
  assert_true(same_info(before, info_of(c)));

  memcpy(v, o, sizeof v);
  v[9] = o[0] + 1; /* not an object start */
  assert_int_equal(slab_cache_free_bulk(c, v, 10, &bad), PP_ENOTBLOCK);
  assert_int_equal(bad, 9);
  assert_true(same_info(before, info_of(c)));
  check_all(f);

  assert_int_equal(slab_cache_free_bulk(c, o, 100, &bad), 0);
  assert_int_equal(info_of(c).active_objs, 0);
  assert_int_equal(slab_cache_free_bulk(c, o, 1, &bad), PP_EDOUBLEFREE);
  assert_int_equal(bad, 0);
  assert_int_equal(slab_cache_free_bulk(c, o, 0, NULL), 0);
  check_all(f);
}

static void alloc_bulk_returns_what_fits_then_enomem(void **state) {
  fixture_t *f = *state; /* a 256 KiB region */
  slab_cache_t *c;
  assert_int_equal(slab_cache_create(f->slab, "tight", 4096, 4096, &c), 0);
  slab_info_t in = info_of(c);
  uint64_t fit = (256 * 1024) / ((uint64_t)in.pages_per_slab * 4096) * in.objs_per_slab;
  uint64_t *o = calloc(fit + 10, sizeof *o);
  assert_non_null(o);
  assert_int_equal(slab_cache_alloc_bulk(c, o, (unsigned)fit + 10), fit);
  uint64_t x = 12345;
  assert_int_equal(slab_cache_alloc(c, &x), PP_ENOMEM);
  assert_int_equal(x, 12345); /* untouched on failure */
  assert_int_equal(slab_cache_alloc_bulk(c, o, 4), PP_ENOMEM);
  for (uint64_t i = 0; i < fit; i++) {
    assert_int_equal(o[i] % 4096, 0);
    for (uint64_t j = 0; j < i; j++)
      assert_true(o[i] != o[j]);
  }
  assert_int_equal(slab_cache_free_bulk(c, o, (unsigned)fit, NULL), 0);
  free(o);
  check_all(f);
}

static void slab_larger_than_region_reports_enomem(void **state) {
  fixture_t *f = *state; /* 256 KiB region; a 128 KiB slab fits twice, the buddy grants it */
  slab_cache_t *c;
  assert_int_equal(slab_cache_create(f->slab, "huge", SLAB_MAX_OBJECT, 8, &c), 0);
  uint64_t o[17];
  assert_int_equal(slab_cache_alloc_bulk(c, o, 17), 16);
  uint64_t x;
  assert_int_equal(slab_cache_alloc(c, &x), PP_ENOMEM);
  assert_int_equal(slab_cache_free_bulk(c, o, 16, NULL), 0);
  check_all(f);
}

static void dump_prints_slabinfo_rows(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c;
  uint64_t x;
  assert_int_equal(slab_cache_create(f->slab, "dumped", 200, 8, &c), 0);
  assert_int_equal(slab_cache_alloc(c, &x), 0);
  char *buf = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&buf, &len);
  assert_non_null(m);
  slab_dump(f->slab, m);
  fclose(m);
  assert_non_null(strstr(buf, "slabinfo - version: 2.1"));
  slab_info_t in = info_of(c);
  char row[128];
  snprintf(row, sizeof row, "%-20s %6u %6llu %6u", "dumped", 1u,
           (unsigned long long)in.num_objs, 200u);
  if (!strstr(buf, row)) fail_msg("no row \"%s\" in:\n%s", row, buf);
  free(buf);
}

/* ---- model-based randomized run ------------------------------------------------------- */

typedef struct model_cache {
  slab_cache_t *c;
  uint32_t size, align;
  uint64_t *held;
  unsigned n, cap;
} model_cache_t;

#define NMODEL 5
#define GRAIN 8u

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64: reproducible from the printed seed */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* owner[i]: which model cache (1-based) holds the 8-byte grain i of the region; 0 none. */
static void claim(uint8_t *owner, model_cache_t *m, unsigned id, uint64_t off) {
  if (off % m->align)
    fail_msg("%u: offset %#llx not %u-aligned", id, (unsigned long long)off, m->align);
  if (off + m->size > REGION)
    fail_msg("offset %#llx beyond the region", (unsigned long long)off);
  for (uint64_t g = off / GRAIN; g < (off + m->size + GRAIN - 1) / GRAIN; g++) {
    if (owner[g])
      fail_msg("cache %u object %#llx overlaps cache %u's", id, (unsigned long long)off,
               owner[g] - 1);
    owner[g] = (uint8_t)(id + 1);
  }
}

static void unclaim(uint8_t *owner, model_cache_t *m, uint64_t off) {
  for (uint64_t g = off / GRAIN; g < (off + m->size + GRAIN - 1) / GRAIN; g++)
    owner[g] = 0;
}

static void model_push(model_cache_t *m, uint64_t off) {
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 64;
    m->held = realloc(m->held, m->cap * sizeof *m->held);
    assert_non_null(m->held);
  }
  m->held[m->n++] = off;
}

typedef struct span_ctx {
  uint64_t offset;
  int hits;
} span_ctx_t;

static void span_fn(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse, uint32_t cap) {
  span_ctx_t *s = ctx;
  if (s->offset >= offset && s->offset < offset + bytes) s->hits++;
}

static void model_verify(fixture_t *f, model_cache_t *mc) {
  check_all(f);
  for (unsigned k = 0; k < NMODEL; k++) {
    model_cache_t *m = &mc[k];
    slab_info_t in = info_of(m->c);
    assert_int_equal(in.active_objs, m->n);
    assert_true(in.num_objs >= in.active_objs);
    assert_true(in.empty_slabs <= 2);
    for (unsigned i = 0; i < m->n; i++) {
      assert_true(slab_cache_owns(m->c, m->held[i]));
      span_ctx_t s = {.offset = m->held[i]};
      slab_cache_walk(m->c, span_fn, &s);
      assert_int_equal(s.hits, 1); /* inside exactly one of its own cache's slabs */
    }
  }
}

static void randomized_ops_match_reference_model(void **state) {
  fixture_t *f = *state;
  const char *env = getenv("PP_TEST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : 0x5eed51ab;
  rng_state = seed;
  print_message("seed %#llx (set PP_TEST_SEED to replay)\n", (unsigned long long)seed);

  static const uint32_t sizes[NMODEL] = {8, 72, 256, 1000, 5000};
  static const uint32_t aligns[NMODEL] = {8, 8, 64, 8, 512};
  model_cache_t mc[NMODEL] = {0};
  uint8_t *owner = calloc(REGION / GRAIN, 1);
  assert_non_null(owner);
  char name[16];
  for (unsigned k = 0; k < NMODEL; k++) {
    snprintf(name, sizeof name, "m%u", k);
    mc[k].size = sizes[k];
    mc[k].align = aligns[k];
    assert_int_equal(slab_cache_create(f->slab, name, sizes[k], aligns[k], &mc[k].c), 0);
  }
  const unsigned ops = 20000;
  uint64_t batch[64];
  for (unsigned op = 0; op < ops; op++) {
    unsigned k = (unsigned)(rnd() % NMODEL);
    model_cache_t *m = &mc[k];
    unsigned r = (unsigned)(rnd() % 100);
    /* Alternate phases that drift toward alloc and toward free: slabs fill, empty, refill. */
    unsigned alloc_pct = (op / 2500) % 2 == 0 ? 60 : 12;
    if (r < alloc_pct / 2) {
      uint64_t off;
      int rc = slab_cache_alloc(m->c, &off);
      if (rc == PP_ENOMEM) continue;
      assert_int_equal(rc, 0);
      claim(owner, m, k, off);
      model_push(m, off);
    } else if (r < alloc_pct) {
      unsigned want = 1 + (unsigned)(rnd() % 16);
      int got = slab_cache_alloc_bulk(m->c, batch, want);
      if (got == PP_ENOMEM) continue;
      assert_true(got > 0 && (unsigned)got <= want);
      for (int i = 0; i < got; i++) {
        claim(owner, m, k, batch[i]);
        model_push(m, batch[i]);
      }
    } else if (r < 85) {
      if (!m->n) continue;
      unsigned i = (unsigned)(rnd() % m->n);
      uint64_t off = m->held[i];
      assert_int_equal(slab_cache_free(m->c, off), 0);
      unclaim(owner, m, off);
      m->held[i] = m->held[--m->n];
      /* the same offset again is a double free, unless the slab went back to the buddy */
      int rc = slab_cache_free(m->c, off);
      assert_true(rc == PP_EDOUBLEFREE || rc == PP_ENOTALLOC);
    } else if (r < 95) {
      unsigned want = m->n < 32 ? m->n : 1 + (unsigned)(rnd() % 32);
      if (!want) continue;
      for (unsigned i = 0; i < want; i++) { /* take `want` random held objects out */
        unsigned j = (unsigned)(rnd() % m->n);
        batch[i] = m->held[j];
        m->held[j] = m->held[--m->n];
      }
      if (rnd() % 4 == 0) { /* poison one entry: nothing may be freed */
        unsigned bad_at = (unsigned)(rnd() % want), bad = 99;
        uint64_t keep = batch[bad_at];
        batch[bad_at] = keep + 1; /* strides and colors are multiples of 8 */
        slab_info_t before = info_of(m->c);
        int rc = slab_cache_free_bulk(m->c, batch, want, &bad);
        assert_true(rc == PP_ENOTBLOCK || rc == PP_ENOTALLOC || rc == PP_EDOUBLEFREE);
        assert_int_equal(bad, bad_at);
        assert_true(same_info(before, info_of(m->c)));
        batch[bad_at] = keep;
      }
      assert_int_equal(slab_cache_free_bulk(m->c, batch, want, NULL), 0);
      for (unsigned i = 0; i < want; i++)
        unclaim(owner, m, batch[i]);
    } else if (r < 97) {
      int rc = slab_cache_shrink(m->c);
      assert_true(rc >= 0);
      assert_int_equal(info_of(m->c).empty_slabs, 0);
    } else {
      /* an offset this cache does not hold must be refused and change nothing */
      uint64_t off = (rnd() % (REGION / GRAIN)) * GRAIN;
      if (owner[off / GRAIN] == k + 1) continue;
      slab_info_t before = info_of(m->c);
      int rc = slab_cache_free(m->c, off);
      assert_true(rc == PP_ENOTBLOCK || rc == PP_ENOTALLOC || rc == PP_EDOUBLEFREE);
      assert_true(same_info(before, info_of(m->c)));
    }
    if (op % 500 == 0) model_verify(f, mc);
  }
  model_verify(f, mc);
  for (unsigned k = 0; k < NMODEL; k++) {
    slab_info_t in = info_of(mc[k].c);
    print_message(
        "%-3s held %4u slabs %3llu allocs %5llu frees %5llu grows %4llu reaps %4llu\n", in.name,
        mc[k].n, (unsigned long long)in.num_slabs, (unsigned long long)in.allocs,
        (unsigned long long)in.frees, (unsigned long long)in.grows,
        (unsigned long long)in.reaps);
  }
  for (unsigned k = 0; k < NMODEL; k++) {
    assert_int_equal(slab_cache_free_bulk(mc[k].c, mc[k].held, mc[k].n, NULL), 0);
    mc[k].n = 0;
    free(mc[k].held);
  }
  assert_true(slab_shrink(f->slab) >= 0);
  buddy_stats_t bs;
  buddy_get_stats(f->buddy, &bs);
  assert_int_equal(bs.nr_alloc_blocks, 0);
  assert_int_equal(bs.free_bytes, REGION);
  free(owner);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(create_same_name_same_geometry_returns_same_cache, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(create_same_name_other_geometry_fails_with_egeometry,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(create_rejects_bad_sizes_alignments_and_names, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(ids_are_small_stable_and_found_again, setup, teardown),
      cmocka_unit_test_setup_teardown(empty_registry_checks_shrinks_and_dumps, setup, teardown),
      cmocka_unit_test_setup_teardown(destroy_returns_the_slabs_and_never_reuses_the_id, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(many_create_destroy_cycles_keep_the_registry_whole, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(waste_is_within_one_eighth_for_every_size, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(slabs_move_between_full_partial_and_empty, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(alloc_prefers_partial_then_empty_then_grows, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(empty_slabs_beyond_working_set_go_back_to_buddy, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(shrink_keeps_slabs_with_objects, setup, teardown),
      cmocka_unit_test_setup_teardown(successive_slabs_take_successive_colors, setup, teardown),
      cmocka_unit_test_setup_teardown(free_errors_are_distinct_and_change_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(free_bulk_is_all_or_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(alloc_bulk_returns_what_fits_then_enomem, setup_small,
                                      teardown),
      cmocka_unit_test_setup_teardown(slab_larger_than_region_reports_enomem, setup_small,
                                      teardown),
      cmocka_unit_test_setup_teardown(dump_prints_slabinfo_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(randomized_ops_match_reference_model, setup, teardown),
  };
  return cmocka_run_group_tests_name("slab", tests, NULL, NULL);
}
