/*
 * test_slab_check.c — the slab validators find what they claim to find, in caches whose
 * slabs came from slab_cache_reserve (colors taken from the objects, not from the cache's
 * counter) as much as in grown ones.  A white-box test: it compiles shm/slab.c into itself
 * to reach the private descriptors, damages one thing at a time, expects slab_check() to
 * return PP_ECORRUPT naming that thing, repairs it and expects a clean bill again (so the
 * damage, and nothing else, was what it found).  Through the public API the state cannot
 * be damaged; that is what the other slab tests show.
 */
#include "slab.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define REGION (8ull << 20)
#define OBJ 1000u      /* "obj": 8 objects in an 8 KiB slab, 192-byte tail, 4 colors */
#define OBJ_SLAB 8192u /* a slab of "obj" */
#define R_BASE (10ull * OBJ_SLAB) /* reserved, color 192, objects 0 and 3: partial */
#define F_BASE (12ull * OBJ_SLAB) /* reserved, color 64, all 8 objects: full */

typedef struct fixture {
  buddy_t *buddy;
  slab_t *slab;
  slab_cache_t *c, *d;
  uint64_t grown; /* the one object alloc put in a slab of its own (color 0) */
  uint64_t small; /* d's object */
} fixture_t;

static void expect_clean(fixture_t *f) {
  char why[256] = "untouched";
  int rc = slab_check(f->slab, why, sizeof why);
  if (rc != 0) fail_msg("slab_check = %s: %s", pp_err_name(rc), why);
  assert_string_equal(why, "untouched");
  rc = buddy_check(f->buddy, why, sizeof why);
  if (rc != 0) fail_msg("buddy_check = %s: %s", pp_err_name(rc), why);
}

static void expect_corrupt(fixture_t *f, const char *needle) {
  char why[256] = "";
  int rc = slab_check(f->slab, why, sizeof why);
  if (rc != PP_ECORRUPT)
    fail_msg("slab_check = %s, want PP_ECORRUPT (%s)", pp_err_name(rc), needle);
  if (!strstr(why, needle))
    fail_msg("slab_check said \"%s\", want it to mention \"%s\"", why, needle);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  if (buddy_create(REGION, 4096, NULL, NULL, &f->buddy) != 0) return -1;
  if (slab_create(f->buddy, &f->slab) != 0) return -1;
  if (slab_cache_create_with_id(f->slab, "obj", OBJ, 8, 5, &f->c) != 0) return -1;
  if (slab_cache_create_with_id(f->slab, "other", 64, 8, 2, &f->d) != 0) return -1;
  uint64_t r[2] = {R_BASE + 192, R_BASE + 192 + 3 * OBJ}, full[8];
  for (unsigned i = 0; i < 8; i++)
    full[i] = F_BASE + 64 + i * OBJ;
  if (slab_cache_alloc(f->c, &f->grown) != 0) return -1; /* first: no partial slab yet */
  if (slab_cache_reserve_bulk(f->c, r, 2, NULL) != 0) return -1;
  if (slab_cache_reserve_bulk(f->c, full, 8, NULL) != 0) return -1;
  if (slab_cache_alloc(f->d, &f->small) != 0) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  slab_destroy(f->slab);
  buddy_stats_t bs;
  buddy_get_stats(f->buddy, &bs);
  int rc = bs.nr_alloc_blocks == 0 ? 0 : -1;
  buddy_destroy(f->buddy);
  free(f);
  return rc;
}

static slab_blk_t *blk(fixture_t *f, uint64_t base) {
  slab_blk_t *b = hash_find(f->c, base);
  assert_non_null(b);
  return b;
}

/* ---- the healthy state ----------------------------------------------------------------- */

static void check_accepts_reserved_slabs_of_any_legal_color(void **state) {
  fixture_t *f = *state;
  expect_clean(f);
  assert_int_equal(blk(f, R_BASE)->color, 192);
  assert_int_equal(blk(f, F_BASE)->color, 64);
  assert_int_equal(blk(f, f->grown & ~(uint64_t)(OBJ_SLAB - 1))->color, 0);
  assert_int_equal(blk(f, R_BASE)->list, SLAB_LIST_PARTIAL);
  assert_int_equal(blk(f, F_BASE)->list, SLAB_LIST_FULL);
  /* and the last legal color, 128, in the last free 8 KiB below R_BASE */
  assert_int_equal(slab_cache_reserve(f->c, 9 * OBJ_SLAB + 128 + 7 * OBJ), 0);
  expect_clean(f);
}

/* ---- per slab -------------------------------------------------------------------------- */

static void check_reports_a_color_off_the_color_unit(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  b->color = 160; /* within the tail, not a multiple of the cache line */
  expect_corrupt(f, "color 160 outside the tail");
  b->color = 192;
  expect_clean(f);
}

static void check_reports_a_color_beyond_the_tail(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, F_BASE);
  b->color = 256;
  expect_corrupt(f, "color 256 outside the tail 192");
  b->color = 64;
  expect_clean(f);
}

static void check_reports_a_misaligned_base(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  b->base += 4096;
  expect_corrupt(f, "misaligned");
  b->base = R_BASE;
  expect_clean(f);
}

static void check_reports_a_slab_that_is_no_buddy_block(void **state) {
  fixture_t *f = *state;
  assert_int_equal(buddy_free(f->buddy, F_BASE), 0); /* behind the cache's back */
  expect_corrupt(f, "not an allocated buddy block");
  assert_int_equal(buddy_reserve(f->buddy, F_BASE, 1), 0);
  expect_clean(f);
}

static void check_reports_a_slab_missing_from_the_hash(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  hash_remove(f->c, b);
  expect_corrupt(f, "not in the hash");
  hash_insert(f->c, b);
  expect_clean(f);
}

static void check_reports_a_hash_entry_in_the_wrong_bucket(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = f->c;
  /* a descriptor no list knows, chained where its base does not hash */
  slab_blk_t fake = {.base = 40ull * OBJ_SLAB};
  uint64_t right = hash_base(fake.base, slab_shift(c)) & (c->nbuckets - 1);
  uint64_t wrong = (right + 1) & (c->nbuckets - 1);
  fake.hnext = c->buckets[wrong];
  c->buckets[wrong] = &fake;
  expect_corrupt(f, "in the wrong hash bucket");
  /* in its right bucket it is one slab more than the lists hold */
  c->buckets[wrong] = fake.hnext;
  fake.hnext = c->buckets[right];
  c->buckets[right] = &fake;
  expect_corrupt(f, "hash holds more slabs than the lists");
  c->buckets[right] = fake.hnext;
  expect_clean(f);
}

static void check_reports_a_bitmap_that_disagrees_with_inuse(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  bit_set(b, 5); /* object 5 is free: on the stack, bit clear */
  expect_corrupt(f, "bitmap holds 3, inuse 2");
  bit_clear(b, 5);
  expect_clean(f);
}

static void check_reports_bitmap_bits_past_capacity(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  bit_clear(b, 3); /* the popcount stays right: the check must look at the range */
  bit_set(b, 9);
  expect_corrupt(f, "bitmap bits past capacity");
  bit_clear(b, 9);
  bit_set(b, 3);
  expect_clean(f);
}

static void check_reports_a_free_index_out_of_range(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  uint16_t keep = b->stack[0];
  b->stack[0] = 8;
  expect_corrupt(f, "free index 8 out of range");
  b->stack[0] = keep;
  expect_clean(f);
}

static void check_reports_an_object_both_free_and_allocated(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  uint16_t keep = b->stack[0];
  b->stack[0] = 3; /* a reserved object on the free stack */
  expect_corrupt(f, "object 3 both free and allocated");
  b->stack[0] = keep;
  expect_clean(f);
}

static void check_reports_an_object_twice_on_the_free_stack(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  assert_true(b->nfree >= 2);
  uint16_t keep = b->stack[0];
  b->stack[0] = b->stack[1];
  expect_corrupt(f, "twice on the free stack");
  b->stack[0] = keep;
  expect_clean(f);
}

static void check_reports_free_and_inuse_that_do_not_add_up(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, R_BASE);
  b->nfree--;
  expect_corrupt(f, "nfree 5 + inuse 2 != 8");
  b->nfree++;
  expect_clean(f);
}

static void check_reports_inuse_beyond_capacity(void **state) {
  fixture_t *f = *state;
  slab_blk_t *b = blk(f, F_BASE);
  b->inuse = 9;
  expect_corrupt(f, "inuse 9 > capacity 8");
  b->inuse = 8;
  expect_clean(f);
}

static void check_reports_a_slab_on_the_wrong_list(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = f->c;
  slab_blk_t *b = blk(f, R_BASE); /* partial */
  b->list = SLAB_LIST_FULL;
  expect_corrupt(f, "tagged full on the partial list");
  b->list = SLAB_LIST_PARTIAL;
  /* moved with its tag: the inuse count says where it belongs */
  list_remove(&c->lists[SLAB_LIST_PARTIAL], b);
  list_push(&c->lists[SLAB_LIST_FULL], b);
  b->list = SLAB_LIST_FULL;
  expect_corrupt(f, "with inuse 2/8 on the full list");
  list_remove(&c->lists[SLAB_LIST_FULL], b);
  list_push(&c->lists[SLAB_LIST_PARTIAL], b);
  b->list = SLAB_LIST_PARTIAL;
  expect_clean(f);
}

static void check_reports_a_broken_back_link(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = f->c;
  slab_blk_t *head = c->lists[SLAB_LIST_PARTIAL].head;
  assert_non_null(head);
  assert_non_null(head->next); /* R and the grown slab */
  slab_blk_t *keep = head->next->prev;
  head->next->prev = NULL;
  expect_corrupt(f, "broken back link");
  head->next->prev = keep;
  expect_clean(f);
}

/* ---- per cache ------------------------------------------------------------------------ */

static void check_reports_counters_that_disagree_with_the_slabs(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = f->c;
  c->lists[SLAB_LIST_FULL].n++;
  expect_corrupt(f, "full list holds 1 slabs, counted 2");
  c->lists[SLAB_LIST_FULL].n--;
  c->nslabs++;
  expect_corrupt(f, "lists hold 3 slabs, counted 4");
  c->nslabs--;
  c->active--;
  expect_corrupt(f, "slabs hold 11 objects, counted 10");
  c->active++;
  c->allocs++;
  expect_corrupt(f, "allocs 12 - frees 0 != active 11");
  c->allocs--;
  expect_clean(f);
}

/* ---- the registry ----------------------------------------------------------------------- */

static void check_reports_ids_out_of_order(void **state) {
  fixture_t *f = *state;
  slab_t *s = f->slab;
  assert_int_equal(s->ncaches, 2);
  assert_ptr_equal(s->caches[0], f->d); /* id 2 before id 5, though created after */
  slab_cache_t *t = s->caches[0];
  s->caches[0] = s->caches[1];
  s->caches[1] = t;
  expect_corrupt(f, "cache other (id 2) after id 5");
  s->caches[1] = s->caches[0];
  s->caches[0] = t;
  expect_clean(f);
}

static void check_reports_an_id_at_or_past_the_counter(void **state) {
  fixture_t *f = *state;
  slab_t *s = f->slab;
  assert_int_equal(s->next_id, 6); /* moved past the largest id given */
  s->next_id = 5;
  expect_corrupt(f, "cache obj has id 5, the counter is at 5");
  s->next_id = 6;
  expect_clean(f);
}

static void check_reports_a_cache_its_name_does_not_find(void **state) {
  fixture_t *f = *state;
  slab_cache_t *c = f->c;
  c->name[0] = 'O';
  expect_corrupt(f, "cache Obj is not found by its name");
  c->name[0] = 'o';
  slab_t *s = f->slab;
  slab_cache_t **pp = &s->names[hash_name("obj") & (s->nnames - 1)];
  while (*pp != c)
    pp = &(*pp)->name_next;
  *pp = c->name_next; /* out of the name hash, still in the array */
  expect_corrupt(f, "not found by its name");
  c->name_next = s->names[hash_name("obj") & (s->nnames - 1)];
  s->names[hash_name("obj") & (s->nnames - 1)] = c;
  expect_clean(f);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
int main(void) {
  const struct CMUnitTest tests[] = {
      T(check_accepts_reserved_slabs_of_any_legal_color),
      T(check_reports_a_color_off_the_color_unit),
      T(check_reports_a_color_beyond_the_tail),
      T(check_reports_a_misaligned_base),
      T(check_reports_a_slab_that_is_no_buddy_block),
      T(check_reports_a_slab_missing_from_the_hash),
      T(check_reports_a_hash_entry_in_the_wrong_bucket),
      T(check_reports_a_bitmap_that_disagrees_with_inuse),
      T(check_reports_bitmap_bits_past_capacity),
      T(check_reports_a_free_index_out_of_range),
      T(check_reports_an_object_both_free_and_allocated),
      T(check_reports_an_object_twice_on_the_free_stack),
      T(check_reports_free_and_inuse_that_do_not_add_up),
      T(check_reports_inuse_beyond_capacity),
      T(check_reports_a_slab_on_the_wrong_list),
      T(check_reports_a_broken_back_link),
      T(check_reports_counters_that_disagree_with_the_slabs),
      T(check_reports_ids_out_of_order),
      T(check_reports_an_id_at_or_past_the_counter),
      T(check_reports_a_cache_its_name_does_not_find),
  };
  return cmocka_run_group_tests_name("slab_check", tests, NULL, NULL);
}
