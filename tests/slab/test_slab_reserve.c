/*
 * test_slab_reserve.c — the slab layer's restart path.  A restarted daemon rebuilds its
 * allocators from a journal: every cache again under its id, name and geometry
 * (slab_cache_create_with_id), every object a session held re-taken at its offset
 * (slab_cache_reserve, _bulk), every buffer's block with buddy_reserve.  These tests show
 * the geometry depends on (object_size, align) alone, the id rules, the reserve contract
 * (each error distinct and changing nothing, bulk all or nothing), and, model-based, that a
 * fresh buddy and registry rebuilt from (id, geometry, offsets held) alone hold exactly the
 * objects and slabs the old ones held, then allocate, free and check like any other.
 * PP_DEBUG=3 builds also run the validators inside every state change.
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

static fixture_t *fixture_new(uint64_t size) {
  fixture_t *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  if (buddy_create(size, 4096, NULL, NULL, &f->buddy) != 0 ||
      slab_create(f->buddy, &f->slab) != 0) {
    buddy_destroy(f->buddy);
    free(f);
    return NULL;
  }
  return f;
}

/* Destroys f; -1 when the buddy was not whole again (with every cache gone, it must be). */
static int fixture_free(fixture_t *f) {
  slab_destroy(f->slab);
  buddy_stats_t bs;
  buddy_get_stats(f->buddy, &bs);
  int rc = bs.nr_alloc_blocks == 0 ? 0 : -1;
  if (rc)
    fprintf(stderr, "%llu buddy blocks left after slab_destroy\n",
            (unsigned long long)bs.nr_alloc_blocks);
  buddy_destroy(f->buddy);
  free(f);
  return rc;
}

static int setup(void **state) {
  *state = fixture_new(REGION);
  return *state ? 0 : -1;
}

static int teardown(void **state) {
  return fixture_free(*state);
}

static void check_all(fixture_t *f) {
  char why[256] = "";
  if (slab_check(f->slab, why, sizeof why) != 0) fail_msg("slab_check: %s", why);
  if (buddy_check(f->buddy, why, sizeof why) != 0) fail_msg("buddy_check: %s", why);
}

static slab_info_t info_of(slab_cache_t *c) {
  slab_info_t in;
  slab_cache_info(c, &in);
  return in;
}

static bool same_info(slab_info_t a, slab_info_t b) {
  return memcmp(&a, &b, sizeof a) == 0;
}

static buddy_stats_t bstats(fixture_t *f) {
  buddy_stats_t bs;
  buddy_get_stats(f->buddy, &bs);
  return bs;
}

/* The allocation state of the buddy: what an error must leave as it was. */
static void assert_same_buddy(buddy_stats_t a, buddy_stats_t b) {
  assert_int_equal(a.free_bytes, b.free_bytes);
  assert_int_equal(a.nr_alloc_blocks, b.nr_alloc_blocks);
  assert_memory_equal(a.nr_free, b.nr_free, sizeof a.nr_free);
}

/* The slab (base, objects in use) holding offset, via the public walk. */
typedef struct find_slab {
  uint64_t offset, base;
  uint32_t inuse;
  int found;
} find_slab_t;

static void find_slab_fn(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse,
                         uint32_t cap) {
  (void)cap;
  find_slab_t *q = ctx;
  if (q->offset >= offset && q->offset < offset + bytes) {
    q->base = offset;
    q->inuse = inuse;
    q->found++;
  }
}

static int slabs_holding(slab_cache_t *c, uint64_t offset) {
  find_slab_t q = {.offset = offset};
  slab_cache_walk(c, find_slab_fn, &q);
  return q.found;
}

static uint64_t slab_base_of(slab_cache_t *c, uint64_t offset) {
  find_slab_t q = {.offset = offset};
  slab_cache_walk(c, find_slab_fn, &q);
  assert_int_equal(q.found, 1);
  return q.base;
}

/* "obj": stride 1000 in an 8 KiB slab — 8 objects, a 192-byte tail, colors 0/64/128/192. */
#define OBJ 1000u
#define OBJ_SLAB 8192u
static slab_cache_t *make_obj_cache(fixture_t *f, const char *name) {
  slab_cache_t *c;
  assert_int_equal(slab_cache_create(f->slab, name, OBJ, 8, &c), 0);
  slab_info_t in = info_of(c);
  assert_int_equal(in.pages_per_slab * 4096u, OBJ_SLAB);
  assert_int_equal(in.objs_per_slab, 8);
  assert_int_equal(in.waste_bytes_per_slab, 192);
  return c;
}

/* ---- geometry ------------------------------------------------------------------------- */

/* Field by field: the struct has padding, which a copy need not carry. */
static bool same_geometry(const slab_geometry_t *a, const slab_geometry_t *b) {
  return a->object_size == b->object_size && a->align == b->align && a->stride == b->stride &&
         a->order == b->order && a->objs_per_slab == b->objs_per_slab &&
         a->color_unit == b->color_unit && a->ncolors == b->ncolors &&
         a->slab_bytes == b->slab_bytes && a->waste == b->waste;
}

static void geometry_depends_on_size_and_align_alone(void **state) {
  fixture_t *f = *state;
  fixture_t *g = fixture_new(256 * 1024); /* another region size, another registry history */
  assert_non_null(g);
  slab_cache_t *gap;
  assert_int_equal(slab_cache_create(g->slab, "history", 64, 8, &gap), 0);
  assert_int_equal(slab_cache_destroy(gap), 0);

  static const uint32_t aligns[] = {0, 8, 64, 512, 4096};
  char name[32];
  unsigned n = 0;
  for (unsigned a = 0; a < sizeof aligns / sizeof *aligns; a++) {
    for (uint32_t size = SLAB_MIN_OBJECT; size <= SLAB_MAX_OBJECT;
         size += size < 1100 ? 13 : 97) {
      slab_geometry_t g1, g2;
      int rc = slab_geometry(size, aligns[a], &g1);
      if (rc == PP_ERANGE) { /* the stride outgrew the limit: only for large aligns */
        assert_true(aligns[a] > 8);
        continue;
      }
      assert_int_equal(rc, 0);
      assert_int_equal(slab_geometry(size, aligns[a], &g2), 0);
      assert_true(same_geometry(&g1, &g2));
      /* Internally consistent: the objects and the tail tile the slab; the colors fit. */
      assert_int_equal(g1.align, aligns[a] ? aligns[a] : 8);
      assert_int_equal(g1.slab_bytes, 4096ull << g1.order);
      assert_int_equal(g1.waste, g1.slab_bytes - (uint64_t)g1.objs_per_slab * g1.stride);
      assert_true(g1.waste < g1.stride);
      assert_true(g1.color_unit >= 64 && g1.color_unit % g1.align == 0);
      assert_true((uint64_t)(g1.ncolors - 1) * g1.color_unit <= g1.waste);
      assert_true((uint64_t)g1.ncolors * g1.color_unit > g1.waste);

      /* The caches made from it, in two registries of different histories and sizes. */
      slab_cache_t *c1, *c2;
      snprintf(name, sizeof name, "g%u-%u", aligns[a], size);
      assert_int_equal(slab_cache_create(f->slab, name, size, aligns[a], &c1), 0);
      assert_int_equal(
          slab_cache_create_with_id(g->slab, name, size, aligns[a], 7 * n + 3, &c2), 0);
      slab_info_t i1 = info_of(c1), i2 = info_of(c2);
      assert_int_equal(i1.stride, g1.stride);
      assert_int_equal(i1.objs_per_slab, g1.objs_per_slab);
      assert_int_equal((uint64_t)i1.pages_per_slab * 4096, g1.slab_bytes);
      assert_int_equal(i1.waste_bytes_per_slab, g1.waste);
      assert_int_equal(i1.align, g1.align);
      i2.id = i1.id; /* the one field allowed to differ */
      assert_true(same_info(i1, i2));
      n++;
    }
  }
  assert_true(n > 500);
  check_all(f);
  check_all(g);
  assert_int_equal(fixture_free(g), 0);
}

static void geometry_refuses_what_create_refuses(void **state) {
  (void)state;
  slab_geometry_t g, before;
  assert_int_equal(slab_geometry(64, 24, &g), PP_EINVAL);
  assert_int_equal(slab_geometry(SLAB_MIN_OBJECT - 1, 8, &g), PP_ERANGE);
  assert_int_equal(slab_geometry(SLAB_MAX_OBJECT + 1, 8, &g), PP_ERANGE);
  assert_int_equal(slab_geometry(64, 2 * SLAB_MAX_OBJECT, &g), PP_ERANGE);
  assert_int_equal(slab_geometry(SLAB_MAX_OBJECT - 8, 32, &g), 0); /* stride exactly the max */
  before = g;
  assert_int_equal(slab_geometry(SLAB_MAX_OBJECT - 8, 16384 * 2, &g), PP_ERANGE);
  assert_true(same_geometry(&before, &g)); /* untouched on failure */
  assert_int_equal(slab_geometry(64, 8, NULL), PP_EINVAL);
}

/* ---- caches under a given id ------------------------------------------------------------ */

typedef struct id_list {
  uint32_t ids[16];
  unsigned n;
} id_list_t;

static void collect_id(void *ctx, slab_cache_t *c) {
  id_list_t *l = ctx;
  if (l->n < 16) l->ids[l->n++] = info_of(c).id;
}

static void create_with_id_takes_that_id_and_moves_the_counter_past_it(void **state) {
  fixture_t *f = *state;
  slab_cache_t *seven, *next, *three, *zero, *x;
  assert_int_equal(slab_cache_create_with_id(f->slab, "seven", 128, 64, 7, &seven), 0);
  assert_int_equal(info_of(seven).id, 7);
  assert_ptr_equal(slab_cache_by_id(f->slab, 7), seven);
  assert_ptr_equal(slab_cache_find(f->slab, "seven"), seven);
  /* ids given out afterwards start past it */
  assert_int_equal(slab_cache_create(f->slab, "next", 64, 8, &next), 0);
  assert_int_equal(info_of(next).id, 8);
  /* ids below the counter that nobody holds can be had: replay order is the journal's */
  assert_int_equal(slab_cache_create_with_id(f->slab, "three", 256, 8, 3, &three), 0);
  assert_int_equal(slab_cache_create_with_id(f->slab, "zero", 32, 8, 0, &zero), 0);
  assert_int_equal(slab_cache_create(f->slab, "nine", 64, 8, &x), 0);
  assert_int_equal(info_of(x).id, 9);
  for (uint32_t id = 0; id < 12; id++) {
    slab_cache_t *want = id == 0   ? zero
                         : id == 3 ? three
                         : id == 7 ? seven
                         : id == 8 ? next
                         : id == 9 ? x
                                   : NULL;
    assert_ptr_equal(slab_cache_by_id(f->slab, id), want);
  }
  /* the registry is in id order, whatever order the ids came in */
  id_list_t l = {0};
  slab_foreach_cache(f->slab, collect_id, &l);
  assert_int_equal(l.n, 5);
  static const uint32_t want[] = {0, 3, 7, 8, 9};
  for (unsigned i = 0; i < 5; i++)
    assert_int_equal(l.ids[i], want[i]);
  check_all(f);
  /* destroy and create again under the same id, as a replay after a replay would */
  assert_int_equal(slab_cache_destroy(three), 0);
  assert_null(slab_cache_by_id(f->slab, 3));
  assert_int_equal(slab_cache_create_with_id(f->slab, "three", 256, 8, 3, &three), 0);
  assert_ptr_equal(slab_cache_by_id(f->slab, 3), three);
  check_all(f);
}

static void skip_ids_moves_the_counter_forward_only(void **state) {
  fixture_t *f = *state;
  slab_cache_t *a, *b, *c;
  assert_int_equal(slab_cache_create(f->slab, "a", 64, 8, &a), 0);
  assert_int_equal(info_of(a).id, 0);
  /* ids 1..9 belonged to caches destroyed before a restart: never given out again */
  assert_int_equal(slab_skip_ids(f->slab, 10), 0);
  assert_int_equal(slab_cache_create(f->slab, "b", 64, 8, &b), 0);
  assert_int_equal(info_of(b).id, 10);
  /* a lower value changes nothing */
  assert_int_equal(slab_skip_ids(f->slab, 3), 0);
  assert_int_equal(slab_cache_create(f->slab, "c", 64, 8, &c), 0);
  assert_int_equal(info_of(c).id, 11);
  assert_int_equal(slab_skip_ids(NULL, 3), PP_EINVAL);
  check_all(f);
}

static void create_with_id_refuses_a_taken_id_or_name(void **state) {
  fixture_t *f = *state;
  slab_cache_t *a, *b = (slab_cache_t *)0x1;
  assert_int_equal(slab_cache_create_with_id(f->slab, "a", 128, 8, 5, &a), 0);
  assert_int_equal(slab_cache_create_with_id(f->slab, "other", 128, 8, 5, &b), PP_EEXIST);
  assert_int_equal(slab_cache_create_with_id(f->slab, "a", 128, 8, 6, &b), PP_EEXIST);
  /* even the very same cache: a replay creates each cache once */
  assert_int_equal(slab_cache_create_with_id(f->slab, "a", 128, 8, 5, &b), PP_EEXIST);
  assert_int_equal(slab_cache_create_with_id(f->slab, "a", 512, 64, 9, &b), PP_EEXIST);
  assert_ptr_equal(b, (slab_cache_t *)0x1); /* ret untouched on failure */
  assert_null(slab_cache_find(f->slab, "other"));
  assert_null(slab_cache_by_id(f->slab, 6));
  assert_null(slab_cache_by_id(f->slab, 9));
  /* an id slab_cache_create gave out is taken too */
  slab_cache_t *c;
  assert_int_equal(slab_cache_create(f->slab, "c", 64, 8, &c), 0);
  assert_int_equal(info_of(c).id, 6);
  assert_int_equal(slab_cache_create_with_id(f->slab, "d", 64, 8, 6, &b), PP_EEXIST);
  assert_ptr_equal(b, (slab_cache_t *)0x1);
  check_all(f);
}

static void create_with_id_rejects_bad_geometry_names_and_the_last_id(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = NULL;
  char longname[SLAB_NAME_MAX + 1];
  memset(longname, 'x', sizeof longname - 1);
  longname[SLAB_NAME_MAX] = 0;
  assert_int_equal(slab_cache_create_with_id(f->slab, "a", 64, 24, 1, &c), PP_EINVAL);
  assert_int_equal(slab_cache_create_with_id(f->slab, "b", 4, 8, 1, &c), PP_ERANGE);
  assert_int_equal(slab_cache_create_with_id(f->slab, "b", SLAB_MAX_OBJECT + 1, 8, 1, &c),
                   PP_ERANGE);
  assert_int_equal(slab_cache_create_with_id(f->slab, "", 64, 8, 1, &c), PP_EINVAL);
  assert_int_equal(slab_cache_create_with_id(f->slab, longname, 64, 8, 1, &c), PP_EINVAL);
  assert_int_equal(slab_cache_create_with_id(f->slab, NULL, 64, 8, 1, &c), PP_EINVAL);
  assert_int_equal(slab_cache_create_with_id(NULL, "a", 64, 8, 1, &c), PP_EINVAL);
  assert_int_equal(slab_cache_create_with_id(f->slab, "a", 64, 8, 1, NULL), PP_EINVAL);
  assert_int_equal(slab_cache_create_with_id(f->slab, "last", 64, 8, UINT32_MAX, &c),
                   PP_ERANGE);
  assert_null(c);
  assert_null(slab_cache_by_id(f->slab, 1));
  /* the largest id works, and then the counter is spent */
  assert_int_equal(slab_cache_create_with_id(f->slab, "last", 64, 8, UINT32_MAX - 1, &c), 0);
  assert_ptr_equal(slab_cache_by_id(f->slab, UINT32_MAX - 1), c);
  slab_cache_t *d;
  assert_int_equal(slab_cache_create(f->slab, "more", 64, 8, &d), PP_ERANGE);
  assert_int_equal(slab_cache_create_with_id(f->slab, "low", 64, 8, 2, &d), 0);
  check_all(f);
}

/* ---- reserve ---------------------------------------------------------------------------- */

static void reserve_in_a_new_slab_takes_exactly_that_object(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = make_obj_cache(f, "obj");
  uint64_t base = 5 * OBJ_SLAB, off = base + 128 + 3 * OBJ;
  assert_int_equal(slab_cache_reserve(c, off), 0);
  slab_info_t in = info_of(c);
  assert_int_equal(in.active_objs, 1);
  assert_int_equal(in.num_slabs, 1);
  assert_int_equal(in.partial_slabs, 1);
  assert_int_equal(in.allocs, 1);
  assert_int_equal(in.grows, 1);
  assert_true(slab_cache_owns(c, off));
  assert_int_equal(slab_base_of(c, off), base);
  unsigned order = 99;
  assert_int_equal(buddy_block_order(f->buddy, base, &order), 0);
  assert_int_equal(order, 1);
  check_all(f);

  /* The partial slab serves next: its seven other objects, each at the reserved color. */
  for (unsigned i = 0; i < 7; i++) {
    uint64_t x;
    assert_int_equal(slab_cache_alloc(c, &x), 0);
    assert_true(x != off);
    assert_int_equal(slab_base_of(c, x), base);
    assert_int_equal((x - base - 128) % OBJ, 0);
  }
  assert_int_equal(info_of(c).full_slabs, 1);
  /* The cache's own coloring goes on from where it was: its first grown slab has color 0. */
  uint64_t y;
  assert_int_equal(slab_cache_alloc(c, &y), 0);
  assert_int_equal(y - slab_base_of(c, y), 0);
  check_all(f);
}

static void reserve_accepts_every_legal_color_and_the_last_object(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = make_obj_cache(f, "obj");
  /* colors 192, 0, 128, 64 — not the order the cache's counter would give them — and in
   * each slab the last object, which ends exactly at the slab's end for color 192 */
  static const uint32_t colors[] = {192, 0, 128, 64};
  uint64_t off[4];
  for (unsigned s = 0; s < 4; s++) {
    off[s] = (uint64_t)(10 + s) * OBJ_SLAB + colors[s] + 7 * OBJ;
    assert_int_equal(slab_cache_reserve(c, off[s]), 0);
  }
  assert_int_equal(off[0] + OBJ, 11ull * OBJ_SLAB);
  check_all(f);
  /* every object the cache hands out in those slabs sits at its slab's color */
  for (unsigned i = 0; i < 4 * 7; i++) {
    uint64_t x;
    assert_int_equal(slab_cache_alloc(c, &x), 0);
    uint64_t s = x / OBJ_SLAB - 10;
    assert_true(s < 4);
    assert_int_equal((x % OBJ_SLAB - colors[s]) % OBJ, 0);
  }
  slab_info_t in = info_of(c);
  assert_int_equal(in.full_slabs, 4);
  assert_int_equal(in.num_slabs, 4);
  check_all(f);
}

static void reserve_in_an_existing_slab_takes_it_off_the_free_list(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = make_obj_cache(f, "obj");
  uint64_t o[8], x;
  assert_int_equal(slab_cache_alloc_bulk(c, o, 8), 8);
  assert_int_equal(slab_cache_free(c, o[2]), 0);
  assert_int_equal(slab_cache_free(c, o[5]), 0);
  uint64_t grows = info_of(c).grows;
  assert_int_equal(slab_cache_reserve(c, o[5]), 0);
  assert_true(slab_cache_owns(c, o[5]));
  assert_int_equal(info_of(c).active_objs, 7);
  assert_int_equal(info_of(c).partial_slabs, 1);
  /* the one free object left is the only one alloc can give */
  assert_int_equal(slab_cache_alloc(c, &x), 0);
  assert_int_equal(x, o[2]);
  assert_int_equal(info_of(c).full_slabs, 1);

  /* an empty slab kept in the working set takes a reservation too, without a grow; freed
   * last to first, it would hand its objects out first to last */
  uint64_t rev[8];
  for (unsigned i = 0; i < 8; i++)
    rev[i] = o[7 - i];
  assert_int_equal(slab_cache_free_bulk(c, rev, 8, NULL), 0);
  assert_int_equal(info_of(c).empty_slabs, 1);
  assert_int_equal(slab_cache_reserve(c, o[6]), 0);
  slab_info_t in = info_of(c);
  assert_int_equal(in.empty_slabs, 0);
  assert_int_equal(in.partial_slabs, 1);
  assert_int_equal(in.grows, grows);
  /* and hands out the rest front to back, skipping the reserved one */
  for (unsigned i = 0; i < 7; i++) {
    assert_int_equal(slab_cache_alloc(c, &x), 0);
    assert_int_equal(x, o[i < 6 ? i : 7]);
  }
  assert_int_equal(slab_cache_free_bulk(c, o, 8, NULL), 0);
  check_all(f);
}

static void reserve_errors_are_distinct_and_change_nothing(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = make_obj_cache(f, "obj"), *d;
  assert_int_equal(slab_cache_create(f->slab, "small", 64, 8, &d), 0); /* 4 KiB slabs */
  uint64_t x, z;
  assert_int_equal(slab_cache_alloc(c, &x), 0);
  assert_int_equal(slab_cache_alloc(d, &z), 0);
  const uint64_t buf = 64 * 1024; /* a "buffer": 16 KiB held by someone else */
  assert_int_equal(buddy_reserve(f->buddy, buf, 2), 0);
  const uint64_t fresh = 160 * 1024; /* a free 8 KiB block */
  assert_int_equal(slabs_holding(d, z), 1);
  assert_true(z / OBJ_SLAB != fresh / OBJ_SLAB && z / OBJ_SLAB != x / OBJ_SLAB);

  slab_info_t before = info_of(c), dbefore = info_of(d);
  buddy_stats_t bbefore = bstats(f);
  struct {
    uint64_t off;
    int want;
    const char *why;
  } cases[] = {
      {x, PP_EBUSY, "an allocated object"},
      {x + 8, PP_ENOTBLOCK, "inside an allocated object"},
      {x + OBJ + 8, PP_ENOTBLOCK, "inside a free object of an existing slab"},
      {(x & ~(uint64_t)(OBJ_SLAB - 1)) + 8 * OBJ, PP_ENOTBLOCK, "the tail of an existing slab"},
      {z & ~(uint64_t)(OBJ_SLAB - 1), PP_EBUSY, "a block holding another cache's slab"},
      {buf + OBJ, PP_EBUSY, "inside a buffer"},
      {buf + OBJ_SLAB + 64, PP_EBUSY, "inside a buffer's second half"},
      {fresh + 32, PP_ENOTBLOCK, "a color not a multiple of the cache line"},
      {fresh + 256, PP_ENOTBLOCK, "a color beyond the 192-byte tail"},
      {fresh + 256 + 2 * OBJ, PP_ENOTBLOCK, "the same, further in"},
      {fresh + 8 * OBJ, PP_ENOTBLOCK, "the tail of a would-be color-0 slab"},
      {fresh + 128 + 8 * OBJ, PP_ENOTBLOCK, "the tail of a would-be color-128 slab"},
      /* the geometry is judged first: no object of this cache can be there, taken or not */
      {buf + 8 * OBJ, PP_ENOTBLOCK, "the tail of a would-be slab inside a buffer"},
      {buf + 32, PP_ENOTBLOCK, "a bad color inside a buffer"},
      {REGION, PP_ERANGE, "the first offset past the region"},
      {REGION * 4 + 64, PP_ERANGE, "far past the region"},
      {~(uint64_t)(OBJ_SLAB - 1) + 64, PP_ERANGE, "the top of the offset space"},
  };
  for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
    int rc = slab_cache_reserve(c, cases[i].off);
    if (rc != cases[i].want)
      fail_msg("%s (%#llx): %s, want %s", cases[i].why, (unsigned long long)cases[i].off,
               pp_err_name(rc), pp_err_name(cases[i].want));
    assert_true(same_info(before, info_of(c)));
    assert_true(same_info(dbefore, info_of(d)));
    assert_same_buddy(bbefore, bstats(f));
  }
  assert_int_equal(slab_cache_reserve(NULL, x), PP_EINVAL);
  assert_false(slab_cache_owns(c, x + OBJ));
  assert_int_equal(slabs_holding(c, fresh), 0);
  check_all(f);
  assert_int_equal(buddy_free(f->buddy, buf), 0);
  assert_int_equal(slab_cache_free(c, x), 0);
  assert_int_equal(slab_cache_free(d, z), 0);
}

static void reserve_bulk_is_all_or_nothing(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = make_obj_cache(f, "obj");
  uint64_t o[8];
  assert_int_equal(slab_cache_alloc_bulk(c, o, 8), 8);
  assert_int_equal(slab_cache_free(c, o[1]), 0);
  assert_int_equal(slab_cache_free(c, o[4]), 0);
  const uint64_t buf = 256 * 1024;
  assert_int_equal(buddy_reserve(f->buddy, buf, 1), 0);
  const uint64_t b1 = 96 * 1024, b2 = 104 * 1024; /* free 8 KiB blocks: two new slabs */
  const uint64_t good[] = {o[1], b1, b1 + OBJ, b2 + 64 + 2 * OBJ, o[4], b2 + 64 + 7 * OBJ};
  enum { NGOOD = sizeof good / sizeof *good };
  slab_info_t before = info_of(c);
  buddy_stats_t bbefore = bstats(f);

  struct {
    unsigned at;
    uint64_t off;
    int want;
  } poison[] = {
      {6, b1 + OBJ, PP_EBUSY},           /* a duplicate of an object in a new slab */
      {5, o[1], PP_EBUSY},               /* a duplicate of one in an existing slab */
      {6, o[0], PP_EBUSY},               /* allocated before the batch */
      {3, buf + 64, PP_EBUSY},           /* inside a buffer */
      {6, b2 + 32 + OBJ, PP_ENOTBLOCK},  /* not an object start of the new slab's color */
      {0, b1 + 2000 + 96, PP_ENOTBLOCK}, /* a color no slab of this cache has */
      {6, REGION + 64, PP_ERANGE},       /* past the region */
  };
  uint64_t v[NGOOD + 1];
  for (unsigned p = 0; p < sizeof poison / sizeof *poison; p++) {
    unsigned at = poison[p].at, bad = 999, k = 0;
    for (unsigned i = 0; i <= NGOOD; i++)
      v[i] = i == at ? poison[p].off : good[k++];
    int rc = slab_cache_reserve_bulk(c, v, NGOOD + 1, &bad);
    if (rc != poison[p].want)
      fail_msg("poison %u: %s, want %s", p, pp_err_name(rc), pp_err_name(poison[p].want));
    assert_int_equal(bad, at);
    assert_true(same_info(before, info_of(c)));
    assert_same_buddy(bbefore, bstats(f));
    assert_false(slab_cache_owns(c, o[1]));
    assert_int_equal(slabs_holding(c, b1), 0);
    assert_int_equal(slabs_holding(c, b2), 0);
    check_all(f);
  }
  assert_int_equal(slab_cache_reserve_bulk(c, good, 0, NULL), 0);
  assert_int_equal(slab_cache_reserve_bulk(c, NULL, 0, NULL), 0);
  assert_int_equal(slab_cache_reserve_bulk(c, NULL, 3, NULL), PP_EINVAL);
  assert_int_equal(slab_cache_reserve_bulk(NULL, good, 1, NULL), PP_EINVAL);
  assert_true(same_info(before, info_of(c)));

  assert_int_equal(slab_cache_reserve_bulk(c, good, NGOOD, NULL), 0);
  for (unsigned i = 0; i < NGOOD; i++)
    assert_true(slab_cache_owns(c, good[i]));
  slab_info_t in = info_of(c);
  assert_int_equal(in.active_objs, 8 - 2 + NGOOD);
  assert_int_equal(in.num_slabs, 3);
  assert_int_equal(in.full_slabs, 1);
  assert_int_equal(in.partial_slabs, 2);
  assert_int_equal(in.grows, before.grows + 2);
  check_all(f);
  assert_int_equal(slab_cache_free_bulk(c, good, NGOOD, NULL), 0);
  uint64_t rest[] = {o[0], o[2], o[3], o[5], o[6], o[7]};
  assert_int_equal(slab_cache_free_bulk(c, rest, 6, NULL), 0);
  assert_int_equal(buddy_free(f->buddy, buf), 0);
}

static void reserve_refuses_the_objects_of_another_geometry(void **state) {
  fixture_t *f = *state;
  /* What one daemon handed out from (1000, 8)... */
  slab_cache_t *c = make_obj_cache(f, "obj");
  uint64_t o[16];
  assert_int_equal(slab_cache_alloc_bulk(c, o, 16), 16);
  uint32_t id = info_of(c).id;
  /* ...cannot be re-taken by a (1000, 64) cache: stride 1024, no tail, one color. */
  fixture_t *g = fixture_new(REGION);
  assert_non_null(g);
  slab_cache_t *w;
  assert_int_equal(slab_cache_create_with_id(g->slab, "obj", OBJ, 64, id, &w), 0);
  assert_int_equal(info_of(w).stride, 1024);
  assert_int_equal(info_of(w).waste_bytes_per_slab, 0);
  unsigned bad = 999;
  assert_int_equal(slab_cache_reserve_bulk(w, o, 16, &bad), PP_ENOTBLOCK);
  assert_int_equal(bad, 1); /* o[0] sits at offset 0 of its slab, which fits either */
  assert_int_equal(info_of(w).active_objs, 0);
  assert_int_equal(bstats(g).nr_alloc_blocks, 0);
  /* the same offsets into the right geometry are all taken */
  slab_cache_t *r;
  assert_int_equal(slab_cache_destroy(w), 0);
  assert_int_equal(slab_cache_create_with_id(g->slab, "obj", OBJ, 8, id, &r), 0);
  assert_int_equal(slab_cache_reserve_bulk(r, o, 16, NULL), 0);
  check_all(g);
  assert_int_equal(slab_cache_free_bulk(r, o, 16, NULL), 0);
  assert_int_equal(fixture_free(g), 0);
  assert_int_equal(slab_cache_free_bulk(c, o, 16, NULL), 0);
}

/* ---- model-based replay --------------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64: reproducible from the printed seed */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

typedef struct vec {
  uint64_t *v;
  unsigned n, cap;
} vec_t;

static void vec_push(vec_t *a, uint64_t x) {
  if (a->n == a->cap) {
    a->cap = a->cap ? a->cap * 2 : 64;
    a->v = realloc(a->v, a->cap * sizeof *a->v);
    assert_non_null(a->v);
  }
  a->v[a->n++] = x;
}

static void vec_take(vec_t *a, unsigned i) {
  a->v[i] = a->v[--a->n];
}

static void shuffle(uint64_t *v, unsigned n) {
  for (unsigned i = n; i > 1; i--) {
    unsigned j = (unsigned)(rnd() % i);
    uint64_t t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

#define NREPLAY 6
typedef struct rcache {
  uint32_t size, align, id;
  char name[16];
  slab_cache_t *c;
  vec_t held;
} rcache_t;

/* Buffers are (offset << 5 | order) in one vec: orders stay below 32. */
#define BUF(off, order) ((off) << 5 | (order))
#define BUF_OFF(x) ((x) >> 5)
#define BUF_ORDER(x) ((unsigned)((x)&31))

/* The slabs holding objects, as sorted (base << 20 | inuse) keys. */
static void nonempty_fn(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse,
                        uint32_t cap) {
  (void)bytes;
  (void)cap;
  if (inuse) vec_push(ctx, offset << 20 | inuse);
}

static vec_t nonempty_slabs(slab_cache_t *c) {
  vec_t v = {0};
  slab_cache_walk(c, nonempty_fn, &v);
  if (v.n) qsort(v.v, v.n, sizeof *v.v, cmp_u64);
  return v;
}

/* owner[g]: who holds the 8-byte grain g: 0 nobody, 1 + k cache k, 0xff a buffer. */
#define GRAIN 8u
static void claim(uint8_t *owner, uint64_t off, uint64_t len, uint8_t who) {
  for (uint64_t g = off / GRAIN; g < (off + len + GRAIN - 1) / GRAIN; g++) {
    if (owner[g])
      fail_msg("%#llx (+%llu) by %u overlaps what %u holds", (unsigned long long)off,
               (unsigned long long)len, who, owner[g]);
    owner[g] = who;
  }
}

static void replay_round(fixture_t *f, unsigned round) {
  static const uint32_t sizes[NREPLAY] = {8, 72, 1000, 200, 3000, 5000};
  static const uint32_t aligns[NREPLAY] = {8, 8, 8, 64, 4096, 512};
  rcache_t rc[NREPLAY] = {0};
  vec_t bufs = {0};
  slab_cache_t *gone;
  char name[32];

  /* 1. The daemon before the crash: caches (some destroyed, so ids have gaps), objects
   *    and buffers coming and going. */
  for (unsigned k = 0; k < NREPLAY; k++) {
    snprintf(name, sizeof name, "gone%u-%u", round, k);
    if (rnd() % 2) {
      assert_int_equal(slab_cache_create(f->slab, name, 64, 8, &gone), 0);
      assert_int_equal(slab_cache_destroy(gone), 0);
    }
    rcache_t *r = &rc[k];
    r->size = sizes[k];
    r->align = aligns[k];
    snprintf(r->name, sizeof r->name, "r%u-%u", round, k);
    assert_int_equal(slab_cache_create(f->slab, r->name, r->size, r->align, &r->c), 0);
    r->id = info_of(r->c).id;
  }
  const unsigned ops = 3000;
  uint64_t batch[32];
  for (unsigned op = 0; op < ops; op++) {
    unsigned pct = (unsigned)(rnd() % 100), alloc_pct = (op / 700) % 2 == 0 ? 65 : 30;
    rcache_t *r = &rc[rnd() % NREPLAY];
    if (pct < 8) { /* a buffer */
      unsigned order = (unsigned)(rnd() % 5);
      uint64_t off;
      if (buddy_alloc(f->buddy, order, 0, &off) == 0) vec_push(&bufs, BUF(off, order));
    } else if (pct < 12) {
      if (bufs.n) {
        unsigned i = (unsigned)(rnd() % bufs.n);
        assert_int_equal(buddy_free(f->buddy, BUF_OFF(bufs.v[i])), 0);
        vec_take(&bufs, i);
      }
    } else if (pct < 12 + alloc_pct) {
      unsigned want = 1 + (unsigned)(rnd() % 8);
      int got = slab_cache_alloc_bulk(r->c, batch, want);
      if (got == PP_ENOMEM) continue;
      assert_true(got > 0);
      for (int i = 0; i < got; i++)
        vec_push(&r->held, batch[i]);
    } else if (pct < 98) {
      unsigned want = r->held.n < 6 ? r->held.n : 1 + (unsigned)(rnd() % 6);
      for (unsigned i = 0; i < want; i++) {
        unsigned j = (unsigned)(rnd() % r->held.n);
        batch[i] = r->held.v[j];
        vec_take(&r->held, j);
      }
      assert_int_equal(slab_cache_free_bulk(r->c, batch, want, NULL), 0);
    } else {
      assert_true(slab_cache_shrink(r->c) >= 0);
    }
  }
  check_all(f);

  /* 2. What the journal knows: per cache (id, name, geometry, objects held), the
   *    buffers' blocks.  Nothing else crosses over. */
  slab_info_t old_info[NREPLAY];
  vec_t old_slabs[NREPLAY];
  uint64_t held_total = 0, old_nonempty = 0;
  for (unsigned k = 0; k < NREPLAY; k++) {
    old_info[k] = info_of(rc[k].c);
    old_slabs[k] = nonempty_slabs(rc[k].c);
    held_total += rc[k].held.n;
    old_nonempty += old_slabs[k].n;
    assert_int_equal(old_info[k].active_objs, rc[k].held.n);
  }

  /* 3. The new daemon: a fresh buddy and registry over the same size.  Caches come back
   *    in random order; then buffers and objects are re-taken interleaved — a third of
   *    the buffers first, then singles and batches from random sources. */
  fixture_t *g = fixture_new(REGION);
  assert_non_null(g);
  uint64_t order[NREPLAY];
  for (unsigned k = 0; k < NREPLAY; k++)
    order[k] = k;
  shuffle(order, NREPLAY);
  slab_cache_t *nc[NREPLAY];
  for (unsigned i = 0; i < NREPLAY; i++) {
    rcache_t *r = &rc[order[i]];
    assert_int_equal(
        slab_cache_create_with_id(g->slab, r->name, r->size, r->align, r->id, &nc[order[i]]),
        0);
  }
  shuffle(bufs.v, bufs.n);
  vec_t todo[NREPLAY];
  for (unsigned k = 0; k < NREPLAY; k++) {
    todo[k] = (vec_t){0};
    for (unsigned i = 0; i < rc[k].held.n; i++)
      vec_push(&todo[k], rc[k].held.v[i]);
    shuffle(todo[k].v, todo[k].n);
  }
  unsigned nbuf = 0, first_bufs = bufs.n / 3;
  for (; nbuf < first_bufs; nbuf++)
    assert_int_equal(buddy_reserve(g->buddy, BUF_OFF(bufs.v[nbuf]), BUF_ORDER(bufs.v[nbuf])),
                     0);
  unsigned singles = 0, batches = 0;
  for (;;) {
    unsigned left = bufs.n - nbuf;
    for (unsigned k = 0; k < NREPLAY; k++)
      left += todo[k].n;
    if (!left) break;
    unsigned src = (unsigned)(rnd() % (NREPLAY + 1));
    if (src == NREPLAY) {
      if (nbuf < bufs.n) {
        assert_int_equal(
            buddy_reserve(g->buddy, BUF_OFF(bufs.v[nbuf]), BUF_ORDER(bufs.v[nbuf])), 0);
        nbuf++;
      }
      continue;
    }
    vec_t *t = &todo[src];
    if (!t->n) continue;
    unsigned n = 1 + (unsigned)(rnd() % 48);
    if (n > t->n) n = t->n;
    if (n == 1 || rnd() % 3 == 0) {
      for (unsigned i = 0; i < n; i++) {
        int e = slab_cache_reserve(nc[src], t->v[t->n - 1 - i]);
        if (e)
          fail_msg("reserve %#llx: %s", (unsigned long long)t->v[t->n - 1 - i], pp_err_name(e));
        singles++;
      }
    } else {
      unsigned bad = 999;
      int e = slab_cache_reserve_bulk(nc[src], &t->v[t->n - n], n, &bad);
      if (e) fail_msg("reserve_bulk at %u: %s", bad, pp_err_name(e));
      batches++;
    }
    t->n -= n;
  }

  /* 4. Exactly the same objects, in exactly the same slabs; everything checks. */
  check_all(g);
  uint64_t new_nonempty = 0;
  for (unsigned k = 0; k < NREPLAY; k++) {
    slab_info_t in = info_of(nc[k]), was = old_info[k];
    assert_int_equal(in.id, rc[k].id);
    assert_string_equal(in.name, was.name);
    assert_int_equal(in.object_size, was.object_size);
    assert_int_equal(in.align, was.align);
    assert_int_equal(in.stride, was.stride);
    assert_int_equal(in.objs_per_slab, was.objs_per_slab);
    assert_int_equal(in.pages_per_slab, was.pages_per_slab);
    assert_int_equal(in.waste_bytes_per_slab, was.waste_bytes_per_slab);
    assert_int_equal(in.active_objs, rc[k].held.n);
    assert_int_equal(in.full_slabs, was.full_slabs);
    assert_int_equal(in.partial_slabs, was.partial_slabs);
    assert_int_equal(in.empty_slabs, 0);
    for (unsigned i = 0; i < rc[k].held.n; i++)
      assert_true(slab_cache_owns(nc[k], rc[k].held.v[i]));
    vec_t now = nonempty_slabs(nc[k]);
    assert_int_equal(now.n, old_slabs[k].n);
    if (now.n) assert_memory_equal(now.v, old_slabs[k].v, now.n * sizeof *now.v);
    new_nonempty += now.n;
    free(now.v);
    free(todo[k].v);
  }
  assert_int_equal(bstats(g).nr_alloc_blocks, bufs.n + new_nonempty);
  assert_int_equal(new_nonempty, old_nonempty);

  /* 5. Allocating more never hands out a re-taken object or overlaps a buffer. */
  uint8_t *owner = calloc(REGION / GRAIN, 1);
  assert_non_null(owner);
  for (unsigned i = 0; i < bufs.n; i++)
    claim(owner, BUF_OFF(bufs.v[i]), 4096ull << BUF_ORDER(bufs.v[i]), 0xff);
  for (unsigned k = 0; k < NREPLAY; k++)
    for (unsigned i = 0; i < rc[k].held.n; i++)
      claim(owner, rc[k].held.v[i], rc[k].size, (uint8_t)(k + 1));
  vec_t more[NREPLAY] = {{0}};
  unsigned added = 0;
  for (unsigned i = 0; i < 1500; i++) {
    unsigned k = (unsigned)(rnd() % NREPLAY);
    uint64_t x;
    int e = slab_cache_alloc(nc[k], &x);
    if (e == PP_ENOMEM) continue;
    assert_int_equal(e, 0);
    claim(owner, x, rc[k].size, (uint8_t)(k + 1));
    vec_push(&more[k], x);
    added++;
  }
  check_all(g);
  print_message("round %u: %llu objects in %llu slabs, %u buffers re-taken (%u singles, %u "
                "batches); %u allocated after\n",
                round, (unsigned long long)held_total, (unsigned long long)new_nonempty, bufs.n,
                singles, batches, added);

  /* 6. Freeing everything returns every byte to the buddy. */
  for (unsigned k = 0; k < NREPLAY; k++) {
    assert_int_equal(slab_cache_free_bulk(nc[k], rc[k].held.v, rc[k].held.n, NULL), 0);
    assert_int_equal(slab_cache_free_bulk(nc[k], more[k].v, more[k].n, NULL), 0);
    assert_int_equal(info_of(nc[k]).active_objs, 0);
    free(more[k].v);
  }
  for (unsigned i = 0; i < bufs.n; i++)
    assert_int_equal(buddy_free(g->buddy, BUF_OFF(bufs.v[i])), 0);
  assert_true(slab_shrink(g->slab) >= 0);
  check_all(g);
  buddy_stats_t bs = bstats(g);
  assert_int_equal(bs.nr_alloc_blocks, 0);
  assert_int_equal(bs.free_bytes, REGION);
  assert_int_equal(fixture_free(g), 0);

  /* The old daemon's side, likewise, so the next round starts from an empty region. */
  for (unsigned k = 0; k < NREPLAY; k++) {
    assert_int_equal(slab_cache_free_bulk(rc[k].c, rc[k].held.v, rc[k].held.n, NULL), 0);
    assert_int_equal(slab_cache_destroy(rc[k].c), 0);
    free(rc[k].held.v);
    free(old_slabs[k].v);
  }
  for (unsigned i = 0; i < bufs.n; i++)
    assert_int_equal(buddy_free(f->buddy, BUF_OFF(bufs.v[i])), 0);
  free(bufs.v);
  free(owner);
  assert_int_equal(bstats(f).free_bytes, REGION);
}

static void replay_rebuilds_exactly_the_objects_held(void **state) {
  fixture_t *f = *state;
  const char *env = getenv("PP_TEST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : 0x7e5e7ab1e;
  rng_state = seed;
  print_message("seed %#llx (set PP_TEST_SEED to replay)\n", (unsigned long long)seed);
  for (unsigned round = 0; round < 8; round++)
    replay_round(f, round);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(geometry_depends_on_size_and_align_alone, setup,
                                      teardown),
      cmocka_unit_test(geometry_refuses_what_create_refuses),
      cmocka_unit_test_setup_teardown(
          create_with_id_takes_that_id_and_moves_the_counter_past_it, setup, teardown),
      cmocka_unit_test_setup_teardown(create_with_id_refuses_a_taken_id_or_name, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(create_with_id_rejects_bad_geometry_names_and_the_last_id,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(reserve_in_a_new_slab_takes_exactly_that_object, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(reserve_accepts_every_legal_color_and_the_last_object,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(reserve_in_an_existing_slab_takes_it_off_the_free_list,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(reserve_errors_are_distinct_and_change_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(reserve_bulk_is_all_or_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(skip_ids_moves_the_counter_forward_only, setup, teardown),
      cmocka_unit_test_setup_teardown(reserve_refuses_the_objects_of_another_geometry, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(replay_rebuilds_exactly_the_objects_held, setup,
                                      teardown),
  };
  return cmocka_run_group_tests_name("slab_reserve", tests, NULL, NULL);
}
