/*
 * test_ctl_view.c — pinpoolctl's views fed with hand-made Stats snapshots: the size and
 * index formats, the map's scale and the character each cell gets, the /proc shapes, the
 * buffer filter and the JSON.  No daemon: these pin down the rendering rules exactly,
 * where the daemon tests (test_ctl.c) check that real snapshots come out right.
 */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_map.h"
#include "ctl_snap.h"
#include "ctl_view.h"
#include "frame.h"
#include "pinpool_err.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

static void size_format_uses_binary_units(void **state) {
  char b[32];
  assert_string_equal(ctl_fmt_size(b, sizeof b, 0), "0 B");
  assert_string_equal(ctl_fmt_size(b, sizeof b, 1023), "1023 B");
  assert_string_equal(ctl_fmt_size(b, sizeof b, 1024), "1 KiB");
  assert_string_equal(ctl_fmt_size(b, sizeof b, 1536), "1.5 KiB");
  assert_string_equal(ctl_fmt_size(b, sizeof b, 16 * MiB), "16 MiB");
  assert_string_equal(ctl_fmt_size(b, sizeof b, 3ull << 30), "3 GiB");
  assert_string_equal(ctl_fmt_size(b, sizeof b, 64 * KiB + 256 * KiB + 19200), "338.8 KiB");
}

static void block_labels_and_durations_are_compact(void **state) {
  char b[32];
  assert_string_equal(ctl_fmt_block(b, sizeof b, 4096), "4K");
  assert_string_equal(ctl_fmt_block(b, sizeof b, 512 * KiB), "512K");
  assert_string_equal(ctl_fmt_block(b, sizeof b, 2 * MiB), "2M");
  assert_string_equal(ctl_fmt_block(b, sizeof b, 1ull << 30), "1G");
  assert_string_equal(ctl_fmt_block(b, sizeof b, 1000), "1000");
  assert_string_equal(ctl_fmt_duration(b, sizeof b, 7999), "7s");
  assert_string_equal(ctl_fmt_duration(b, sizeof b, 3723000), "1h 02m 03s");
  assert_string_equal(ctl_fmt_duration(b, sizeof b, 90061000), "1d 1h 01m 01s");
}

static void frag_index_prints_like_linux_extfrag(void **state) {
  char b[32];
  assert_string_equal(ctl_fmt_frag(b, sizeof b, -1000), "-1.000");
  assert_string_equal(ctl_fmt_frag(b, sizeof b, 512), "0.512");
  assert_string_equal(ctl_fmt_frag(b, sizeof b, 1000), "1.000");
  assert_string_equal(ctl_fmt_frag(b, sizeof b, 0), "0.000");
  assert_string_equal(ctl_fmt_frag(b, sizeof b, INT32_MIN), "-2147483.648");
}

/* ---- map ------------------------------------------------------------------------------ */

typedef struct map_fixture {
  Pinpool__V1__Stats s;
  Pinpool__V1__MapBlock blocks[16];
  Pinpool__V1__MapBlock *ptrs[16];
} map_fixture_t;

static void fx_init(map_fixture_t *f, uint64_t region, uint64_t page) {
  memset(f, 0, sizeof *f);
  pinpool__v1__stats__init(&f->s);
  f->s.region_size = region;
  f->s.page_size = page;
  f->s.map = f->ptrs;
}

static void fx_block(map_fixture_t *f, uint64_t off, uint64_t size,
                     Pinpool__V1__MapBlock__Kind kind, uint32_t inuse, uint32_t cap,
                     uint32_t mag) {
  Pinpool__V1__MapBlock *b = &f->blocks[f->s.n_map];
  pinpool__v1__map_block__init(b);
  b->offset = off;
  b->size = size;
  b->kind = kind;
  b->inuse = inuse;
  b->capacity = cap;
  b->in_magazines = mag;
  f->ptrs[f->s.n_map++] = b;
}

static void map_scale_fits_80_columns_in_16_rows(void **state) {
  map_fixture_t f;
  ctl_map_t m;

  fx_init(&f, 16 * MiB, 4096);
  fx_block(&f, 0, 16 * MiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), 0);
  /* "0x" + 6 hex digits + " " leaves 71 columns: 64 cells per row; 16 rows of 64 cells
   * cover 16 MiB with 16 KiB cells. */
  assert_int_equal(m.cells_per_row, 64);
  assert_int_equal(m.cell_bytes, 16 * KiB);
  assert_int_equal(m.rows, 16);
  assert_int_equal(m.ncells, 1024);
  assert_int_equal(strspn(m.cells, "."), 1024);
  ctl_map_free(&m);

  /* A wide terminal gets wider rows and finer cells. */
  assert_int_equal(ctl_map_build(&f.s, 200, 16, &m), 0);
  assert_int_equal(m.cells_per_row, 128);
  assert_int_equal(m.cell_bytes, 8 * KiB);
  ctl_map_free(&m);
}

/* A region of 2 MiB pages is drawn as finely as one of 4 KiB pages: a cell is at least
 * the allocation unit, not a page. */
static void map_cells_follow_the_terminal_not_the_page_size(void **state) {
  map_fixture_t f;
  ctl_map_t m;

  fx_init(&f, 16 * MiB, 2 * MiB);
  f.s.min_block = 4096;
  fx_block(&f, 0, 64 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__BUFFER, 0, 0, 0);
  fx_block(&f, 64 * KiB, 16 * MiB - 64 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), 0);
  assert_int_equal(m.cell_bytes, 16 * KiB);
  assert_memory_equal(m.cells, "BBBB.", 5);
  ctl_map_free(&m);
}

static void map_never_cuts_cells_below_a_page(void **state) {
  map_fixture_t f;
  ctl_map_t m;

  fx_init(&f, 256 * KiB, 4096);
  fx_block(&f, 0, 256 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), 0);
  assert_int_equal(m.cell_bytes, 4096);
  assert_int_equal(m.ncells, 64);
  assert_int_equal(m.rows, 1);
  ctl_map_free(&m);
}

static void map_cell_shows_the_kind_of_its_block(void **state) {
  map_fixture_t f;
  ctl_map_t m;

  fx_init(&f, 64 * KiB, 4096);
  fx_block(&f, 0, 16 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__BUFFER, 0, 0, 0);
  fx_block(&f, 16 * KiB, 4 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__SLAB, 10, 16, 2);
  fx_block(&f, 20 * KiB, 4 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__SLAB, 8, 16, 6);
  fx_block(&f, 24 * KiB, 4 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__SLAB, 0, 16, 0);
  fx_block(&f, 28 * KiB, 4 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__OTHER, 0, 0, 0);
  fx_block(&f, 32 * KiB, 32 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), 0);
  assert_int_equal(m.cell_bytes, 4096);
  assert_string_equal(m.cells, "BBBBSmso........");
  ctl_map_free(&m);
}

static void map_coarse_cell_shows_majority_and_marks_partly_used_free(void **state) {
  map_fixture_t f;
  ctl_map_t m;

  fx_init(&f, 1 * MiB, 4096);
  /* cell 0: 64K buffer + 4K slab + 60K free -> the buffer has the most bytes */
  fx_block(&f, 0, 64 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__BUFFER, 0, 0, 0);
  fx_block(&f, 64 * KiB, 4 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__SLAB, 4, 8, 0);
  fx_block(&f, 68 * KiB, 60 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  /* cell 1: 4K buffer + 124K free -> mostly free but used */
  fx_block(&f, 128 * KiB, 4 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__BUFFER, 0, 0, 0);
  fx_block(&f, 132 * KiB, 124 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  /* cell 2: all free */
  fx_block(&f, 256 * KiB, 128 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  /* cell 3: half slab, half free -> a tie goes to the allocation */
  fx_block(&f, 384 * KiB, 64 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__SLAB, 1, 8, 0);
  fx_block(&f, 448 * KiB, 64 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  /* cells 4..7: one free block spanning them all */
  fx_block(&f, 512 * KiB, 512 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);

  /* 16 columns: "0x" + 5 digits + " " leaves 8 cells; one row forces 128 KiB cells. */
  assert_int_equal(ctl_map_build(&f.s, 16, 1, &m), 0);
  assert_int_equal(m.cells_per_row, 8);
  assert_int_equal(m.cell_bytes, 128 * KiB);
  assert_string_equal(m.cells, "B:.S....");
  ctl_map_free(&m);
}

static void map_marks_cells_the_snapshot_does_not_describe(void **state) {
  map_fixture_t f;
  ctl_map_t m;

  fx_init(&f, 32 * KiB, 4096);
  fx_block(&f, 0, 8 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__BUFFER, 0, 0, 0);
  /* Out of range and empty blocks are ignored, not drawn past the end. */
  fx_block(&f, 64 * KiB, 4 * KiB, PINPOOL__V1__MAP_BLOCK__KIND__BUFFER, 0, 0, 0);
  fx_block(&f, 8 * KiB, 0, PINPOOL__V1__MAP_BLOCK__KIND__BUFFER, 0, 0, 0);
  assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), 0);
  assert_string_equal(m.cells, "BB??????");
  ctl_map_free(&m);

  f.s.region_size = 0;
  assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), PP_EINVAL);
}

static void slab_is_parked_when_most_allocated_objects_sit_in_magazines(void **state) {
  assert_int_equal(ctl_map_slab_char(0, 0), CTL_MAP_EMPTY);
  assert_int_equal(ctl_map_slab_char(10, 0), CTL_MAP_SLAB);
  assert_int_equal(ctl_map_slab_char(10, 5), CTL_MAP_SLAB);
  assert_int_equal(ctl_map_slab_char(10, 6), CTL_MAP_MAGAZINE);
  assert_int_equal(ctl_map_slab_char(3, 3), CTL_MAP_MAGAZINE);
}

static void map_text_rows_fit_the_width_with_labels_and_legend(void **state) {
  map_fixture_t f;
  ctl_map_t m;
  char *text = NULL, *line, *save = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  int rows = 0;

  fx_init(&f, 16 * MiB, 4096);
  fx_block(&f, 0, 16 * MiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), 0);
  ctl_view_map(out, &m);
  fclose(out);
  assert_non_null(strstr(text, "16 KiB per cell (16384 bytes)"));
  assert_non_null(strstr(text, "legend: '.' free"));
  for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    assert_true(strlen(line) <= 80);
    if (!strncmp(line, "0x", 2)) {
      char want[16];
      snprintf(want, sizeof want, "0x%06x ", rows * 64 * 16384);
      assert_memory_equal(line, want, strlen(want));
      rows++;
    }
  }
  assert_int_equal(rows, 16);
  free(text);
  ctl_map_free(&m);
}

/* ---- /proc shapes, filters, JSON ------------------------------------------------------ */

static char *render(void (*fn)(FILE *, const Pinpool__V1__Stats *),
                    const Pinpool__V1__Stats *s) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  fn(out, s);
  fclose(out);
  return text;
}

static char *render_at(void (*fn)(FILE *, const Pinpool__V1__Stats *, uint64_t),
                       const Pinpool__V1__Stats *s, uint64_t now_unix_ms) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  fn(out, s, now_unix_ms);
  fclose(out);
  return text;
}

static char *render_buffers(const Pinpool__V1__Stats *s, const ctl_buffer_filter_t *f) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  ctl_view_buffers(out, s, f);
  fclose(out);
  return text;
}

static void buddyinfo_has_a_labelled_column_per_order(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  uint64_t counts[] = {1, 0, 2};
  int32_t frag[] = {-1000, 250, -1000};
  char *text;

  s.page_size = 4096;
  s.min_block = 4096;
  s.free_per_order = counts;
  s.n_free_per_order = 3;
  s.frag_index = frag;
  s.n_frag_index = 3;
  s.free_bytes = 4096 + 2 * 16384;
  s.largest_free_block = 16384;
  s.largest_free_contiguous = 8192;
  text = render(ctl_view_buddyinfo, &s);
  assert_non_null(strstr(text, "order                        0       1       2\n"));
  assert_non_null(strstr(text, "block size                  4K      8K     16K\n"));
  assert_non_null(strstr(text, "Region 0, zone pinpool       1       0       2\n"));
  assert_non_null(strstr(text, "free bytes                     36 KiB (36864 bytes)\n"));
  assert_non_null(strstr(text, "largest free block             16 KiB (16384 bytes)\n"));
  assert_non_null(strstr(text, "largest free contiguous block  8 KiB (8192 bytes)\n"));
  assert_non_null(strstr(text, "frag index              -1.000   0.250  -1.000\n"));
  free(text);
}

/* On a region of 2 MiB pages order 0 is still the 4 KiB unit, not a page; a daemon that
 * predates Stats.min_block (0) used 4 KiB too. */
static void buddyinfo_orders_count_in_the_unit_not_the_page(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  uint64_t counts[] = {0, 0, 1};
  json_object *o, *orders, *v;
  char *text;

  s.page_size = 2 * MiB;
  s.min_block = 4096;
  s.hugepages = true;
  s.free_per_order = counts;
  s.n_free_per_order = 3;
  text = render(ctl_view_buddyinfo, &s);
  assert_non_null(strstr(text, "block size                  4K      8K     16K\n"));
  free(text);
  o = ctl_json_buddyinfo(&s);
  assert_true(json_object_object_get_ex(o, "orders", &orders));
  assert_true(
      json_object_object_get_ex(json_object_array_get_idx(orders, 2), "block_size", &v));
  assert_int_equal(json_object_get_uint64(v), 16 * KiB);
  assert_true(json_object_object_get_ex(o, "min_block", &v));
  assert_int_equal(json_object_get_uint64(v), 4096);
  json_object_put(o);

  s.min_block = 0;
  text = render(ctl_view_buddyinfo, &s);
  assert_non_null(strstr(text, "block size                  4K      8K     16K\n"));
  free(text);
}

static void slabinfo_row_has_the_proc_slabinfo_shape(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__SlabInfo k = PINPOOL__V1__SLAB_INFO__INIT, *kp = &k;
  char *text;

  s.page_size = 4096;
  s.caches = &kp;
  s.n_caches = 1;
  k.name = "frames";
  k.active_objs = 100;
  k.num_objs = 126;
  k.object_size = 192;
  k.objs_per_slab = 21;
  k.pages_per_slab = 1;
  k.active_slabs = 5;
  k.num_slabs = 6;
  k.full_slabs = 4;
  k.partial_slabs = 1;
  k.empty_slabs = 1;
  k.objs_in_magazines = 12;
  k.waste_permille = 16;
  text = render(ctl_view_slabinfo, &s);
  assert_non_null(strstr(text, "# name            <active_objs> <num_objs> <objsize> "
                               "<objperslab> <pagesperslab> : slabdata <active_slabs> "
                               "<num_slabs>"));
  assert_non_null(strstr(text, "frames               100    126    192   21    1 : slabdata "
                               "     5      6 : pinpool      4      1      1     12   1.6%\n"));
  assert_int_equal(ctl_cache_bytes(&s, &k), 6 * 4096);
  free(text);
}

/* A slab's bytes are SlabInfo.slab_bytes; from a daemon that predates it, pages_per_slab
 * 4 KiB units — never pages of the region, which may be 2 MiB each. */
static void slab_bytes_come_from_the_daemon_or_the_unit_never_the_page(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__SlabInfo k = PINPOOL__V1__SLAB_INFO__INIT, *kp = &k;
  json_object *o, *caches, *v;

  s.page_size = 2 * MiB;
  s.min_block = 4096;
  s.caches = &kp;
  s.n_caches = 1;
  k.name = "frames";
  k.pages_per_slab = 2;
  k.slab_bytes = 8192;
  k.num_slabs = 3;
  assert_int_equal(ctl_slab_bytes(&s, &k), 8192);
  assert_int_equal(ctl_cache_bytes(&s, &k), 3 * 8192);
  o = ctl_json_slabinfo(&s);
  assert_true(json_object_object_get_ex(o, "caches", &caches));
  assert_true(
      json_object_object_get_ex(json_object_array_get_idx(caches, 0), "cache_bytes", &v));
  assert_int_equal(json_object_get_uint64(v), 3 * 8192);
  assert_true(
      json_object_object_get_ex(json_object_array_get_idx(caches, 0), "slab_bytes", &v));
  assert_int_equal(json_object_get_uint64(v), 8192);
  json_object_put(o);

  k.slab_bytes = 0;
  s.min_block = 0;
  assert_int_equal(ctl_slab_bytes(&s, &k), 8192);
  assert_int_equal(ctl_cache_bytes(&s, &k), 3 * 8192);
}

static void buffer_filter_matches_holder_pid_and_name(void **state) {
  Pinpool__V1__BufferInfo b = PINPOOL__V1__BUFFER_INFO__INIT;
  uint32_t pids[] = {10, 20};
  ctl_buffer_filter_t any = {0}, p20 = {.by_pid = true, .pid = 20},
                      p30 = {.by_pid = true, .pid = 30}, named = {.name = "frames"},
                      other = {.name = "frame"},
                      both = {.by_pid = true, .pid = 10, .name = "frames"};

  b.name = "frames";
  b.holder_pids = pids;
  b.n_holder_pids = 2;
  assert_true(ctl_buffer_matches(&b, NULL));
  assert_true(ctl_buffer_matches(&b, &any));
  assert_true(ctl_buffer_matches(&b, &p20));
  assert_false(ctl_buffer_matches(&b, &p30));
  assert_true(ctl_buffer_matches(&b, &named));
  assert_false(ctl_buffer_matches(&b, &other));
  assert_true(ctl_buffer_matches(&b, &both));
  b.name = "";
  assert_false(ctl_buffer_matches(&b, &named));
}

/* Two contiguity figures, labelled for what they are: what a CONTIGUOUS allocation gets
 * now, and the longest physical run of the region, free or not. */
static void status_tells_allocatable_contiguity_from_the_regions_longest_run(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  json_object *o, *v;
  char *text;

  s.region_size = 64 * MiB;
  s.page_size = 4096;
  s.min_block = 4096;
  s.free_bytes = 32 * MiB;
  s.largest_free_block = 32 * MiB;
  s.largest_free_contiguous = 4096;
  s.largest_contiguous_run = 64 * KiB;
  text = render(ctl_view_status, &s);
  assert_non_null(strstr(text, "largest free contiguous block  4 KiB (4096 bytes)\n"));
  assert_non_null(strstr(text, "longest physical run           64 KiB (65536 bytes)\n"));
  assert_non_null(strstr(text, "allocation unit                4 KiB (4096 bytes)\n"));
  assert_null(strstr(text, "largest contiguous "));
  free(text);
  o = ctl_json_status(&s);
  assert_true(json_object_object_get_ex(o, "largest_free_contiguous", &v));
  assert_int_equal(json_object_get_uint64(v), 4096);
  assert_true(json_object_object_get_ex(o, "largest_contiguous_run", &v));
  assert_int_equal(json_object_get_uint64(v), 64 * KiB);
  json_object_put(o);

  /* A daemon with free memory and no figure predates the field: say so, not "0 B". */
  s.largest_free_contiguous = 0;
  text = render(ctl_view_status, &s);
  assert_non_null(strstr(text, "largest free contiguous block  unknown"));
  free(text);
}

static void status_json_keeps_exact_byte_counts(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  json_object *o, *back, *v;

  s.version = "0.1.0";
  s.region_size = 1ull << 40;
  s.used_bytes = (1ull << 40) - 1;
  s.free_bytes = 1;
  s.hugepages = true;
  o = ctl_json_status(&s);
  assert_non_null(o);
  back = json_tokener_parse(json_object_to_json_string(o));
  assert_non_null(back);
  assert_true(json_object_object_get_ex(back, "used_bytes", &v));
  assert_int_equal(json_object_get_uint64(v), (1ull << 40) - 1);
  assert_true(json_object_object_get_ex(back, "hugepages", &v));
  assert_true(json_object_get_boolean(v));
  assert_true(json_object_object_get_ex(back, "version", &v));
  assert_string_equal(json_object_get_string(v), "0.1.0");
  json_object_put(back);
  json_object_put(o);
}

/* Does the line of text that starts with start end with end? */
static bool line_ends(const char *text, const char *start, const char *end) {
  const char *p = strstr(text, start);
  if (!p || (p != text && p[-1] != '\n')) return false;
  const char *e = strchr(p, '\n');
  size_t n = e ? (size_t)(e - p) : strlen(p), m = strlen(end);
  return n >= m && memcmp(p + n - m, end, m) == 0;
}

/* A session whose connection broke while pinpoold restarted is detached until its client
 * re-claims it or its deadline passes: clients says how long it has left, rounded up to
 * the second, and the JSON carries the schema's two fields. */
static void clients_show_detached_sessions_and_how_long_they_stay_reclaimable(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__ClientInfo live = PINPOOL__V1__CLIENT_INFO__INIT,
                          gone = PINPOOL__V1__CLIENT_INFO__INIT, *list[] = {&live, &gone};
  const uint64_t now = 1700000000000ull;
  json_object *o, *clients, *v;
  char *text, st[64];

  live.session_id = 1;
  live.pid = 100;
  live.name = "app";
  gone.session_id = 2;
  gone.pid = 200;
  gone.name = "worker";
  gone.detached = true;
  gone.detached_deadline_unix_ms = now + 11500;
  s.clients = list;
  s.n_clients = 2;

  text = render_at(ctl_view_clients_at, &s, now);
  assert_non_null(strstr(text, " REQUESTS  STATE\n"));
  assert_true(line_ends(text, "       1      100", "  connected"));
  assert_true(line_ends(text, "       2      200", "  detached, re-claimable for 12s"));
  free(text);

  assert_string_equal(ctl_fmt_session_state(st, sizeof st, &gone, now + 11001),
                      "detached, re-claimable for 1s");
  assert_string_equal(ctl_fmt_session_state(st, sizeof st, &gone, now - 90000),
                      "detached, re-claimable for 1m 42s");
  assert_string_equal(ctl_fmt_session_state(st, sizeof st, &gone, now + 11500),
                      "detached, grace period over");
  gone.detached_deadline_unix_ms = 0;
  assert_string_equal(ctl_fmt_session_state(st, sizeof st, &gone, now), "detached");
  gone.detached_deadline_unix_ms = now + 11500;

  o = ctl_json_clients(&s);
  assert_true(json_object_object_get_ex(o, "clients", &clients));
  assert_true(json_object_object_get_ex(json_object_array_get_idx(clients, 0), "detached", &v));
  assert_false(json_object_get_boolean(v));
  assert_true(json_object_object_get_ex(json_object_array_get_idx(clients, 1), "detached", &v));
  assert_true(json_object_get_boolean(v));
  assert_true(json_object_object_get_ex(json_object_array_get_idx(clients, 1),
                                        "detached_deadline_unix_ms", &v));
  assert_int_equal(json_object_get_uint64(v), now + 11500);
  json_object_put(o);
}

/* ---- following pages (ctl_snap.c) against a scripted daemon -------------------------- */

#define SCRIPT_MAX 8

/* One scripted reply: a Stats of list `list` carrying items with these keys. */
typedef struct page_script {
  Pinpool__V1__StatsList list;
  uint64_t keys[8];
  size_t n;
  bool more;
  uint64_t next_cursor;
  const char *message;
  int fail; /* a transport error instead of a reply */
} page_script_t;

typedef struct fake_daemon {
  const page_script_t *pages;
  size_t npages, served;
  Pinpool__V1__StatsRequest seen[SCRIPT_MAX]; /* the requests, as sent */
} fake_daemon_t;

/* Pack the scripted reply and unpack it, as a real one would arrive. */
static int fake_fetch(void *ctx, const Pinpool__V1__StatsRequest *rq,
                      Pinpool__V1__Response **ret) {
  fake_daemon_t *fd = ctx;
  const page_script_t *p;
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  Pinpool__V1__Stats st = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__SlabInfo si[8], *sp[8];
  Pinpool__V1__ClientInfo ci[8], *cp[8];
  Pinpool__V1__BufferInfo bi[8], *bp[8];
  Pinpool__V1__MapBlock mb[8], *mp[8];
  uint8_t buf[4096];
  size_t len;

  assert_true(fd->served < fd->npages && fd->served < SCRIPT_MAX);
  fd->seen[fd->served] = *rq;
  p = &fd->pages[fd->served++];
  if (p->fail) return p->fail;
  for (size_t i = 0; i < p->n; i++) {
    pinpool__v1__slab_info__init(&si[i]);
    si[i].cache_id = (uint32_t)p->keys[i];
    si[i].name = "~0/c";
    sp[i] = &si[i];
    pinpool__v1__client_info__init(&ci[i]);
    ci[i].session_id = p->keys[i];
    cp[i] = &ci[i];
    pinpool__v1__buffer_info__init(&bi[i]);
    bi[i].handle = p->keys[i];
    bp[i] = &bi[i];
    pinpool__v1__map_block__init(&mb[i]);
    mb[i].offset = p->keys[i];
    mb[i].size = 4096;
    mp[i] = &mb[i];
  }
  st.list = p->list;
  st.uptime_ms = fd->served; /* which reply the summary came from */
  st.region_size = 64 * MiB;
  st.next_cursor = p->next_cursor;
  st.more = p->more;
  switch (p->list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES: st.caches = sp, st.n_caches = p->n; break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS: st.clients = cp, st.n_clients = p->n; break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS: st.buffers = bp, st.n_buffers = p->n; break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_MAP: st.map = mp, st.n_map = p->n; break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_SNAPSHOT: /* an old daemon: all it has */
    st.caches = sp, st.n_caches = p->n;
    st.clients = cp, st.n_clients = p->n;
    st.buffers = bp, st.n_buffers = p->n;
    break;
  default: break;
  }
  r.id = fd->served;
  if (p->message) r.message = (char *)p->message;
  r.body_case = PINPOOL__V1__RESPONSE__BODY_STATS;
  r.stats = &st;
  len = pinpool__v1__response__pack(&r, buf);
  assert_true(len <= sizeof buf);
  *ret = frame_unpack_response(buf, len, 1u << 20);
  assert_non_null(*ret);
  return 0;
}

#define CACHES PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES
#define CLIENTS PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS

static void snapshot_follows_the_pages_until_the_daemon_says_no_more(void **state) {
  static const page_script_t pages[] = {
      {.list = CACHES, .keys = {1, 2, 3}, .n = 3, .more = true, .next_cursor = 4},
      {.list = CACHES, .keys = {4, 7}, .n = 2, .more = true, .next_cursor = 8},
      {.list = CACHES, .keys = {9}, .n = 1, .more = false, .next_cursor = 10},
  };
  fake_daemon_t fd = {.pages = pages, .npages = 3};
  ctl_snapshot_t snap;
  char why[160] = "";

  assert_int_equal(ctl_snapshot_fetch(fake_fetch, &fd, CTL_LIST_CACHES, &snap, why, sizeof why),
                   0);
  assert_int_equal(fd.served, 3);
  assert_int_equal(fd.seen[0].list, CACHES);
  assert_int_equal(fd.seen[0].cursor, 0);
  assert_int_equal(fd.seen[1].cursor, 4);
  assert_int_equal(fd.seen[2].cursor, 8);
  assert_true(snap.paged);
  assert_int_equal(snap.replies, 3);
  assert_null(snap.note);
  assert_int_equal(snap.stats.n_caches, 6);
  for (size_t i = 0; i < 6; i++)
    assert_int_equal(snap.stats.caches[i]->cache_id, ((const uint32_t[]){1, 2, 3, 4, 7, 9})[i]);
  assert_int_equal(snap.stats.uptime_ms, 3); /* the summary of the last reply */
  assert_false(snap.stats.more);
  ctl_snapshot_free(&snap);
}

static void snapshot_takes_each_list_in_turn_and_the_summary_alone_in_one_reply(void **state) {
  static const page_script_t two[] = {
      {.list = CACHES, .keys = {5}, .n = 1, .more = false, .next_cursor = 6},
      {.list = CLIENTS, .keys = {10, 11}, .n = 2, .more = true, .next_cursor = 12},
      {.list = CLIENTS, .keys = {12}, .n = 1, .more = false, .next_cursor = 13},
  };
  static const page_script_t summary[] = {
      {.list = PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY}};
  fake_daemon_t fd = {.pages = two, .npages = 3};
  ctl_snapshot_t snap;
  char why[160];

  assert_int_equal(ctl_snapshot_fetch(fake_fetch, &fd, CTL_LIST_CACHES | CTL_LIST_CLIENTS,
                                      &snap, why, sizeof why),
                   0);
  assert_int_equal(fd.seen[0].list, CACHES);
  assert_int_equal(fd.seen[1].list, CLIENTS);
  assert_int_equal(fd.seen[1].cursor, 0);
  assert_int_equal(fd.seen[2].cursor, 12);
  assert_int_equal(snap.stats.n_caches, 1);
  assert_int_equal(snap.stats.n_clients, 3);
  assert_int_equal(snap.stats.clients[2]->session_id, 12);
  ctl_snapshot_free(&snap);

  fd = (fake_daemon_t){.pages = summary, .npages = 1};
  assert_int_equal(ctl_snapshot_fetch(fake_fetch, &fd, 0, &snap, why, sizeof why), 0);
  assert_int_equal(fd.served, 1);
  assert_int_equal(fd.seen[0].list, PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY);
  assert_int_equal(snap.stats.n_caches + snap.stats.n_clients, 0);
  assert_int_equal(snap.stats.region_size, 64 * MiB);
  ctl_snapshot_free(&snap);
}

/* A daemon before paging ignores list and cursor and answers with its one reply: that is
 * the snapshot, buffers included since we asked for them, and its note is kept. */
static void a_daemon_before_paging_gives_its_one_reply_and_its_note(void **state) {
  static const page_script_t old[] = {
      {.list = PINPOOL__V1__STATS_LIST__STATS_LIST_SNAPSHOT,
       .keys = {1, 2},
       .n = 2,
       .message = "map left out: the reply would exceed max_frame 65536"},
  };
  fake_daemon_t fd = {.pages = old, .npages = 1};
  ctl_snapshot_t snap;
  char why[160];

  assert_int_equal(ctl_snapshot_fetch(fake_fetch, &fd, CTL_LIST_BUFFERS | CTL_LIST_MAP, &snap,
                                      why, sizeof why),
                   0);
  assert_int_equal(fd.served, 1);
  assert_true(fd.seen[0].include_buffers); /* what an old daemon understands */
  assert_true(fd.seen[0].include_map);
  assert_false(snap.paged);
  assert_string_equal(snap.note, "map left out: the reply would exceed max_frame 65536");
  assert_int_equal(snap.stats.n_buffers, 2);
  assert_int_equal(snap.stats.n_caches, 2);
  assert_int_equal(snap.stats.n_clients, 2);
  ctl_snapshot_free(&snap);
}

static void fetch_fails(const page_script_t *pages, size_t n, int want_rc, const char *want) {
  fake_daemon_t fd = {.pages = pages, .npages = n};
  ctl_snapshot_t snap;
  char why[160] = "";

  memset(&snap, 0xa5, sizeof snap);
  assert_int_equal(ctl_snapshot_fetch(fake_fetch, &fd, CTL_LIST_CACHES, &snap, why, sizeof why),
                   want_rc);
  assert_int_equal(snap.replies, (size_t)0xa5a5a5a5a5a5a5a5ull); /* untouched */
  if (want) assert_string_equal(why, want);
}

/* Paging must end: a reply that breaks the contract stops it with PROTOCOL_ERROR. */
static void pages_that_would_not_end_or_repeat_items_are_refused(void **state) {
  static const page_script_t no_items[] = {
      {.list = CACHES, .keys = {0}, .n = 0, .more = true, .next_cursor = 5}};
  static const page_script_t back[] = {
      {.list = CACHES, .keys = {3}, .n = 1, .more = true, .next_cursor = 4},
      {.list = CACHES, .keys = {2}, .n = 1, .more = true, .next_cursor = 3}};
  static const page_script_t stuck[] = {
      {.list = CACHES, .keys = {3}, .n = 1, .more = true, .next_cursor = 3}};
  static const page_script_t unsorted[] = {
      {.list = CACHES, .keys = {3, 2}, .n = 2, .more = false, .next_cursor = 4}};
  static const page_script_t other[] = {
      {.list = CLIENTS, .keys = {3}, .n = 1, .more = false, .next_cursor = 4}};
  static const page_script_t broken[] = {
      {.list = CACHES, .keys = {3}, .n = 1, .more = true, .next_cursor = 4}, {.fail = PP_EIO}};

  fetch_fails(no_items, 1, PP_EPROTO, "pinpoold's cache pages do not advance (cursor 0)");
  fetch_fails(back, 2, PP_EPROTO, "pinpoold's cache page from 4 lists key 2 out of order");
  fetch_fails(stuck, 1, PP_EPROTO, "pinpoold's cache pages do not advance (cursor 0)");
  fetch_fails(unsorted, 1, PP_EPROTO, "pinpoold's cache page from 0 lists key 2 out of order");
  fetch_fails(other, 1, PP_EPROTO, "asked for the cache list, pinpoold sent the client list");
  fetch_fails(broken, 2, PP_EIO, NULL);
}

/* ---- what the ledger work added --------------------------------------------------- */

static void buffer_names_match_unqualified_in_every_scope_and_qualified_exactly(void **state) {
  Pinpool__V1__BufferInfo b = PINPOOL__V1__BUFFER_INFO__INIT;
  ctl_buffer_filter_t plain = {.name = "frames"}, mine = {.name = "~1000/frames"},
                      group = {.name = "~g44/frames"}, odd = {.name = "~odd"},
                      slash = {.name = "a/b"};

  b.name = "~1000/frames";
  assert_true(ctl_buffer_matches(&b, &plain));
  assert_true(ctl_buffer_matches(&b, &mine));
  assert_false(ctl_buffer_matches(&b, &group));
  b.name = "~g44/frames";
  assert_true(ctl_buffer_matches(&b, &plain));
  assert_false(ctl_buffer_matches(&b, &mine));
  assert_true(ctl_buffer_matches(&b, &group));
  b.name = "~1000/frames2";
  assert_false(ctl_buffer_matches(&b, &plain));
  /* A name that starts with '~' is written qualified; its name proper still matches. */
  b.name = "~1000/~odd";
  assert_true(ctl_buffer_matches(&b, &odd));
  /* Only the scope is cut: a '/' after it belongs to the name. */
  b.name = "~0/a/b";
  assert_true(ctl_buffer_matches(&b, &slash));
  assert_string_equal(ctl_name_unscoped("~0/a/b"), "a/b");
  assert_string_equal(ctl_name_unscoped("~g/x"), "~g/x"); /* not a scope: no digits */
  assert_string_equal(ctl_name_unscoped("plain"), "plain");
  b.name = NULL; /* unpublished */
  assert_false(ctl_buffer_matches(&b, &plain));
}

static void clients_show_what_each_holds_and_what_its_uid_is_charged(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__ClientInfo c = PINPOOL__V1__CLIENT_INFO__INIT, *list[] = {&c};
  json_object *o, *v;
  char *text;

  c.session_id = 7;
  c.pid = 700;
  c.name = "app";
  c.bytes_held = 64 * KiB;
  c.bytes_charged = 3 * MiB;
  s.clients = list;
  s.n_clients = 1;
  s.nr_clients = 1;
  text = render_at(ctl_view_clients_at, &s, 0);
  assert_non_null(strstr(text, "        HELD      CHARGED  BUFFERS"));
  assert_non_null(strstr(text, "      64 KiB        3 MiB"));
  free(text);
  o = ctl_json_clients(&s);
  v = json_object_array_get_idx(json_object_object_get(o, "clients"), 0);
  assert_int_equal(json_object_get_uint64(json_object_object_get(v, "bytes_charged")), 3 * MiB);
  assert_int_equal(json_object_get_uint64(json_object_object_get(v, "bytes_held")), 64 * KiB);
  assert_int_equal(json_object_get_uint64(json_object_object_get(o, "nr_clients")), 1);
  json_object_put(o);
}

static void clients_show_what_their_buffer_caches_hold(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__ClientInfo c = PINPOOL__V1__CLIENT_INFO__INIT, *list[] = {&c};
  json_object *o, *v;
  char *text;

  c.session_id = 8;
  c.name = "cacher";
  c.bytes_held = 256 * KiB;
  c.buffers = 64;
  c.cached_buffers = 40;
  c.cached_bytes = 160 * KiB;
  s.clients = list;
  s.n_clients = 1;
  s.nr_clients = 1;
  text = render_at(ctl_view_clients_at, &s, 0);
  assert_non_null(strstr(text, "  BUFFERS     CACHED  OBJECTS"));
  assert_non_null(strstr(text, "       64    160 KiB        0"));
  free(text);
  o = ctl_json_clients(&s);
  v = json_object_array_get_idx(json_object_object_get(o, "clients"), 0);
  assert_int_equal(json_object_get_uint64(json_object_object_get(v, "cached_buffers")), 40);
  assert_int_equal(json_object_get_uint64(json_object_object_get(v, "cached_bytes")),
                   160 * KiB);
  json_object_put(o);
}

static void buffers_show_the_uid_charged_and_count_holders_a_page_could_not_list(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__BufferInfo b = PINPOOL__V1__BUFFER_INFO__INIT, *list[] = {&b};
  uint32_t pids[] = {10, 20};
  uint64_t sessions[] = {1, 2};
  json_object *o, *v;
  char *text;

  b.handle = 5;
  b.size = 4096;
  b.name = "~1000/frames";
  b.charged_uid = 1000;
  b.holder_pids = pids;
  b.n_holder_pids = 2;
  b.holder_sessions = sessions;
  b.n_holder_sessions = 2;
  b.nr_holders = 900;
  s.buffers = list;
  s.n_buffers = 1;
  text = render_buffers(&s, NULL);
  assert_non_null(strstr(text, "CONTIG CHARGED TO HOLDERS"));
  assert_non_null(strstr(text, "  1000 10,20 +898 "));
  free(text);
  o = ctl_json_buffers(&s, NULL);
  v = json_object_array_get_idx(json_object_object_get(o, "buffers"), 0);
  assert_int_equal(json_object_get_uint64(json_object_object_get(v, "charged_uid")), 1000);
  assert_int_equal(json_object_get_uint64(json_object_object_get(v, "nr_holders")), 900);
  assert_int_equal(json_object_array_length(json_object_object_get(v, "holder_sessions")), 2);
  json_object_put(o);
  /* A daemon before nr_holders lists them all. */
  b.nr_holders = 0;
  text = render_buffers(&s, NULL);
  assert_null(strstr(text, "+"));
  free(text);
}

static Pinpool__V1__PhysRuns sorted_runs(uint64_t *buckets) {
  Pinpool__V1__PhysRuns r = PINPOOL__V1__PHYS_RUNS__INIT;
  buckets[0] = 40;
  buckets[1] = 30;
  buckets[2] = 0;
  buckets[3] = 2;
  r.known = true;
  r.nr_runs = 72;
  r.longest = 30 * MiB;
  r.pages = 256;
  r.buckets = buckets;
  r.n_buckets = 4;
  r.sort = PINPOOL__V1__PHYS_RUNS__SORT__SORT_DONE;
  r.sort_placed = 256;
  r.sort_elapsed_ms = 50;
  r.unsorted_nr_runs = 256;
  r.unsorted_longest = 2 * MiB;
  return r;
}

static void status_shows_the_physical_runs_and_the_hugepage_sort(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__PhysRuns r;
  uint64_t buckets[4];
  json_object *o, *runs;
  char *text, h[128];

  r = sorted_runs(buckets);
  s.region_size = 512 * MiB;
  s.page_size = 2 * MiB;
  s.runs = &r;
  s.nr_caches = 100000; /* counted by the daemon, listed by nobody here */
  assert_string_equal(ctl_fmt_run_buckets(h, sizeof h, &r), "1:40 2-3:30 4-7:0 8-15:2");
  text = render(ctl_view_status, &s);
  assert_non_null(strstr(text, "physical runs                  72, longest 30 MiB (31457280 "
                               "bytes), 0 pages out of order\n"));
  assert_non_null(strstr(text, "runs by length (pages:runs)    1:40 2-3:30 4-7:0 8-15:2\n"));
  assert_non_null(strstr(text, "hugepages sorted               done: 256 of 256 pages in "
                               "physical order (50 ms); unsorted 256 runs, longest 2 MiB\n"));
  assert_non_null(strstr(text, "caches                         100000\n"));
  free(text);
  o = ctl_json_status(&s);
  runs = json_object_object_get(o, "runs");
  assert_non_null(runs);
  assert_int_equal(json_object_get_uint64(json_object_object_get(runs, "nr_runs")), 72);
  assert_string_equal(json_object_get_string(json_object_object_get(runs, "sort")), "done");
  assert_int_equal(json_object_array_length(json_object_object_get(runs, "buckets")), 4);
  assert_int_equal(json_object_get_uint64(json_object_object_get(o, "nr_caches")), 100000);
  json_object_put(o);

  r.known = false;
  r.sort = PINPOOL__V1__PHYS_RUNS__SORT__SORT_UNKNOWN;
  r.sort_why = "no CAP_SYS_ADMIN";
  text = render(ctl_view_status, &s);
  assert_non_null(strstr(text, "physical runs                  unknown (physical addresses "
                               "not readable)\n"));
  assert_null(strstr(text, "runs by length"));
  assert_non_null(strstr(text, "hugepages sorted               not possible: no "
                               "CAP_SYS_ADMIN\n"));
  free(text);

  /* A daemon before runs and nr_caches: no such lines, and the caches it listed. */
  Pinpool__V1__SlabInfo k = PINPOOL__V1__SLAB_INFO__INIT, *ks[] = {&k, &k};
  s.runs = NULL;
  s.nr_caches = 0;
  s.caches = ks;
  s.n_caches = 2;
  text = render(ctl_view_status, &s);
  assert_null(strstr(text, "physical runs  "));
  assert_null(strstr(text, "hugepages sorted"));
  assert_non_null(strstr(text, "caches                         2\n"));
  free(text);
  o = ctl_json_status(&s);
  assert_null(json_object_object_get(o, "runs"));
  json_object_put(o);
}

static void map_shows_the_physical_runs_under_the_picture(void **state) {
  map_fixture_t f;
  Pinpool__V1__PhysRuns r;
  uint64_t buckets[4];
  json_object *o, *runs;
  ctl_map_t m;
  char *text = NULL;
  size_t len = 0;
  FILE *out;

  fx_init(&f, 16 * MiB, 2 * MiB);
  fx_block(&f, 0, 16 * MiB, PINPOOL__V1__MAP_BLOCK__KIND__FREE, 0, 0, 0);
  r = sorted_runs(buckets);
  f.s.runs = &r;
  assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), 0);
  out = open_memstream(&text, &len);
  ctl_view_map(out, &m);
  fclose(out);
  assert_non_null(strstr(text, "\nphysical runs 72, longest 30 MiB\nruns by length "
                               "(pages:runs) 1:40 2-3:30 4-7:0 8-15:2\nlegend:"));
  free(text);
  /* Thirty classes of runs do not fit one line: the histogram wraps within 80 columns. */
  {
    uint64_t many[30];
    size_t lines = 0;
    for (int k = 0; k < 30; k++)
      many[k] = 1000 + (uint64_t)k;
    r.buckets = many;
    r.n_buckets = 30;
    ctl_map_free(&m);
    assert_int_equal(ctl_map_build(&f.s, 80, 16, &m), 0);
    text = NULL;
    out = open_memstream(&text, &len);
    ctl_view_map(out, &m);
    fclose(out);
    for (char *l = strstr(text, "runs by length"); l && strncmp(l, "legend", 6); lines++) {
      char *e = strchr(l, '\n');
      assert_true(e - l <= 80);
      l = e + 1;
    }
    assert_true(lines > 2);
    assert_non_null(strstr(text, " 536870912-1073741823:1029\n")); /* the last class */
    free(text);
    r.buckets = buckets;
    r.n_buckets = 4;
  }
  o = ctl_json_map(&f.s, &m);
  runs = json_object_object_get(o, "runs");
  assert_int_equal(json_object_get_uint64(json_object_object_get(runs, "longest")), 30 * MiB);
  json_object_put(o);
  ctl_map_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(size_format_uses_binary_units),
      cmocka_unit_test(block_labels_and_durations_are_compact),
      cmocka_unit_test(frag_index_prints_like_linux_extfrag),
      cmocka_unit_test(map_scale_fits_80_columns_in_16_rows),
      cmocka_unit_test(map_cells_follow_the_terminal_not_the_page_size),
      cmocka_unit_test(map_never_cuts_cells_below_a_page),
      cmocka_unit_test(map_cell_shows_the_kind_of_its_block),
      cmocka_unit_test(map_coarse_cell_shows_majority_and_marks_partly_used_free),
      cmocka_unit_test(map_marks_cells_the_snapshot_does_not_describe),
      cmocka_unit_test(slab_is_parked_when_most_allocated_objects_sit_in_magazines),
      cmocka_unit_test(map_text_rows_fit_the_width_with_labels_and_legend),
      cmocka_unit_test(buddyinfo_has_a_labelled_column_per_order),
      cmocka_unit_test(buddyinfo_orders_count_in_the_unit_not_the_page),
      cmocka_unit_test(slabinfo_row_has_the_proc_slabinfo_shape),
      cmocka_unit_test(slab_bytes_come_from_the_daemon_or_the_unit_never_the_page),
      cmocka_unit_test(buffer_filter_matches_holder_pid_and_name),
      cmocka_unit_test(status_tells_allocatable_contiguity_from_the_regions_longest_run),
      cmocka_unit_test(status_json_keeps_exact_byte_counts),
      cmocka_unit_test(clients_show_detached_sessions_and_how_long_they_stay_reclaimable),
      cmocka_unit_test(snapshot_follows_the_pages_until_the_daemon_says_no_more),
      cmocka_unit_test(snapshot_takes_each_list_in_turn_and_the_summary_alone_in_one_reply),
      cmocka_unit_test(a_daemon_before_paging_gives_its_one_reply_and_its_note),
      cmocka_unit_test(pages_that_would_not_end_or_repeat_items_are_refused),
      cmocka_unit_test(buffer_names_match_unqualified_in_every_scope_and_qualified_exactly),
      cmocka_unit_test(clients_show_what_each_holds_and_what_its_uid_is_charged),
      cmocka_unit_test(clients_show_what_their_buffer_caches_hold),
      cmocka_unit_test(buffers_show_the_uid_charged_and_count_holders_a_page_could_not_list),
      cmocka_unit_test(status_shows_the_physical_runs_and_the_hugepage_sort),
      cmocka_unit_test(map_shows_the_physical_runs_under_the_picture),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
