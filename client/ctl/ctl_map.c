/*
 * ctl_map.c — `pinpoolctl map`: fragmentation seen rather than computed.
 *
 * What: the daemon lists every block of the region in offset order (Stats.map: offset,
 * size, kind, and for slabs the objects in use / capacity / parked in magazines; in pages,
 * put together by ctl_snap.c).  We draw the region as rows of characters, each character
 * a cell of cell_bytes, and under it the region's physically contiguous runs: how many,
 * the longest, and how many runs there are of 1, 2-3, 4-7, ... pages (Stats.runs).
 *
 * Layout: a row is a power of two of cells (so every row starts at a round offset, shown
 * as a hex label), the widest that fits the terminal next to its label; the cell size is
 * the smallest power of two, at least the allocation unit (Stats.min_block, 4 KiB; not
 * the page size, which on a hugepage region would hide every block below 2 MiB), that
 * gets the whole region into max_rows rows.  Buddy blocks are naturally aligned powers of two,
 * so once cells are smaller than a block, the block covers whole cells and its picture is
 * exact.
 *
 * A cell's character: the kind covering most of the cell's bytes wins (ties go to the
 * allocated kind, so small allocations do not vanish in a tie).  Slabs are split three
 * ways by their counters: 's' no object allocated (what `shrink` would hand back), 'm'
 * more than half of the allocated objects parked in daemon magazines, 'S' otherwise.  A
 * cell that is mostly free but holds some allocation shows ':' rather than '.', so a
 * fragmented stretch does not look empty when the scale is coarse.
 *
 * Cost: O(blocks + cells) time, one accumulator per kind per cell of private memory.
 */
#include "ctl_map.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_view.h"
#include "pinpool_err.h"

#define CTL_MAP_LEGEND_WIDTH 79u

enum map_kind { MK_BUFFER, MK_SLAB, MK_MAGAZINE, MK_EMPTY, MK_LOST, MK_OTHER, MK_FREE, MK_N };

static const char map_chars[MK_N] = {
    [MK_BUFFER] = CTL_MAP_BUFFER, [MK_SLAB] = CTL_MAP_SLAB,   [MK_MAGAZINE] = CTL_MAP_MAGAZINE,
    [MK_EMPTY] = CTL_MAP_EMPTY,   [MK_OTHER] = CTL_MAP_OTHER, [MK_FREE] = CTL_MAP_FREE,
    [MK_LOST] = CTL_MAP_LOST,
};

/* Legend in the order the characters are explained to the operator. */
static const struct {
  char c;
  const char *what;
} legend[] = {
    {CTL_MAP_FREE, "free"},
    {CTL_MAP_MIXED, "mostly free, partly used"},
    {CTL_MAP_BUFFER, "buffer"},
    {CTL_MAP_SLAB, "slab in use"},
    {CTL_MAP_MAGAZINE, "slab mostly parked in magazines"},
    {CTL_MAP_EMPTY, "empty slab (shrink frees it)"},
    {CTL_MAP_LOST, "lost pages (quarantined)"},
    {CTL_MAP_OTHER, "other"},
    {CTL_MAP_UNKNOWN, "not described"},
};

char ctl_map_slab_char(uint32_t inuse, uint32_t in_magazines) {
  if (inuse == 0) return CTL_MAP_EMPTY;
  if ((uint64_t)in_magazines * 2 > inuse) return CTL_MAP_MAGAZINE;
  return CTL_MAP_SLAB;
}

static enum map_kind block_kind(const Pinpool__V1__MapBlock *b) {
  switch (b->kind) {
  case PINPOOL__V1__MAP_BLOCK__KIND__FREE: return MK_FREE;
  case PINPOOL__V1__MAP_BLOCK__KIND__BUFFER: return MK_BUFFER;
  case PINPOOL__V1__MAP_BLOCK__KIND__LOST: return MK_LOST;
  case PINPOOL__V1__MAP_BLOCK__KIND__SLAB:
    switch (ctl_map_slab_char(b->inuse, b->in_magazines)) {
    case CTL_MAP_EMPTY: return MK_EMPTY;
    case CTL_MAP_MAGAZINE: return MK_MAGAZINE;
    default: return MK_SLAB;
    }
  default: return MK_OTHER;
  }
}

static int hex_digits(uint64_t v) {
  int d = 1;
  while (v >>= 4)
    d++;
  return d;
}

static uint64_t pow2_at_least(uint64_t v) {
  uint64_t p = 1;
  while (p < v && p < (UINT64_C(1) << 62))
    p <<= 1;
  return p;
}

int ctl_map_build(const Pinpool__V1__Stats *s, unsigned columns, unsigned max_rows,
                  ctl_map_t *ret_map) {
  ctl_map_t m = {0};
  uint64_t(*acc)[MK_N] = NULL;
  unsigned avail;
  int rc = PP_ENOMEM;

  if (s->region_size == 0) return PP_EINVAL;
  if (max_rows == 0) max_rows = CTL_MAP_DEFAULT_ROWS;
  m.region_size = s->region_size;
  m.offset_digits = hex_digits(s->region_size - 1);
  if (m.offset_digits < 4) m.offset_digits = 4;
  /* "0x" + digits + " " before the cells. */
  avail = columns > (unsigned)m.offset_digits + 3 ? columns - (unsigned)m.offset_digits - 3 : 0;
  m.cells_per_row = CTL_MAP_MIN_COLUMNS;
  while ((uint64_t)m.cells_per_row * 2 <= avail && m.cells_per_row < (1u << 16))
    m.cells_per_row *= 2;

  m.cell_bytes = pow2_at_least(ctl_min_block(s));
  while ((s->region_size + m.cell_bytes - 1) / m.cell_bytes >
         (uint64_t)m.cells_per_row * max_rows)
    m.cell_bytes <<= 1;
  m.ncells = (uint32_t)((s->region_size + m.cell_bytes - 1) / m.cell_bytes);
  m.rows = (m.ncells + m.cells_per_row - 1) / m.cells_per_row;

  acc = calloc(m.ncells, sizeof *acc);
  m.cells = malloc((size_t)m.ncells + 1);
  if (!acc || !m.cells) goto out;

  for (size_t i = 0; i < s->n_map; i++) {
    const Pinpool__V1__MapBlock *b = s->map[i];
    uint64_t lo = b->offset, hi;
    enum map_kind k = block_kind(b);

    if (lo >= s->region_size || b->size == 0) continue;
    hi = b->size > s->region_size - lo ? s->region_size : lo + b->size;
    for (uint64_t c = lo / m.cell_bytes; c < m.ncells && c * m.cell_bytes < hi; c++) {
      uint64_t cs = c * m.cell_bytes, ce = cs + m.cell_bytes;
      acc[c][k] += (hi < ce ? hi : ce) - (lo > cs ? lo : cs);
    }
  }

  for (uint32_t c = 0; c < m.ncells; c++) {
    int best = -1;
    uint64_t best_bytes = 0, covered = 0;
    /* Allocated kinds come first in the enum and '>' is strict: a tie goes to them. */
    for (int k = 0; k < MK_N; k++) {
      covered += acc[c][k];
      if (acc[c][k] > best_bytes) {
        best = k;
        best_bytes = acc[c][k];
      }
    }
    if (best < 0)
      m.cells[c] = CTL_MAP_UNKNOWN;
    else if (best == MK_FREE && covered > best_bytes)
      m.cells[c] = CTL_MAP_MIXED;
    else
      m.cells[c] = map_chars[best];
  }
  m.cells[m.ncells] = '\0';
  m.runs = s->runs;
  *ret_map = m;
  m.cells = NULL;
  rc = 0;
out:
  free(acc);
  free(m.cells);
  return rc;
}

void ctl_map_free(ctl_map_t *m) {
  free(m->cells);
  m->cells = NULL;
}

void ctl_view_map(FILE *out, const ctl_map_t *m) {
  char a[32], b[32], r[32];

  fprintf(out, "region %s, %s per cell (%" PRIu64 " bytes), %" PRIu32 " cells = %s per row\n",
          ctl_fmt_size(a, sizeof a, m->region_size), ctl_fmt_size(b, sizeof b, m->cell_bytes),
          m->cell_bytes, m->cells_per_row,
          ctl_fmt_size(r, sizeof r, m->cell_bytes * m->cells_per_row));
  for (uint32_t row = 0; row < m->rows; row++) {
    uint32_t first = row * m->cells_per_row;
    uint32_t n = m->ncells - first < m->cells_per_row ? m->ncells - first : m->cells_per_row;
    fprintf(out, "0x%0*" PRIx64 " %.*s\n", m->offset_digits, (uint64_t)first * m->cell_bytes,
            (int)n, m->cells + first);
  }
  /* What the pages allow: the physically contiguous runs, a histogram of their lengths. */
  if (m->runs && m->runs->known) {
    char h[1024];
    fprintf(out, "physical runs %" PRIu64 ", longest %s\n", m->runs->nr_runs,
            ctl_fmt_size(a, sizeof a, m->runs->longest));
    ctl_print_wrapped(out, "runs by length (pages:runs) ", 8,
                      ctl_fmt_run_buckets(h, sizeof h, m->runs), CTL_MAP_LEGEND_WIDTH);
  } else if (m->runs) {
    fprintf(out, "physical runs unknown (physical addresses not readable)\n");
  }
  /* The legend, packed into lines that fit an 80-column terminal. */
  size_t col = (size_t)fprintf(out, "legend:");
  for (size_t i = 0; i < sizeof legend / sizeof legend[0]; i++) {
    size_t w = 5 + strlen(legend[i].what) + (i + 1 < sizeof legend / sizeof legend[0]);
    if (col + w > CTL_MAP_LEGEND_WIDTH) col = (size_t)fprintf(out, "\n       ");
    col += (size_t)fprintf(out, " '%c' %s%s", legend[i].c, legend[i].what,
                           i + 1 < sizeof legend / sizeof legend[0] ? "," : "");
  }
  fprintf(out, "\n");
}

static const char *kind_name(Pinpool__V1__MapBlock__Kind k) {
  switch (k) {
  case PINPOOL__V1__MAP_BLOCK__KIND__FREE: return "free";
  case PINPOOL__V1__MAP_BLOCK__KIND__BUFFER: return "buffer";
  case PINPOOL__V1__MAP_BLOCK__KIND__SLAB: return "slab";
  case PINPOOL__V1__MAP_BLOCK__KIND__LOST: return "lost";
  default: return "other";
  }
}

json_object *ctl_json_map(const Pinpool__V1__Stats *s, const ctl_map_t *m) {
  json_object *o = json_object_new_object(), *rows = json_object_new_array(),
              *leg = json_object_new_object(), *blocks = json_object_new_array();

  if (!o || !rows || !leg || !blocks) goto fail;
  json_object_object_add(o, "region_size", json_object_new_uint64(m->region_size));
  json_object_object_add(o, "cell_bytes", json_object_new_uint64(m->cell_bytes));
  json_object_object_add(o, "cells_per_row", json_object_new_uint64(m->cells_per_row));
  for (uint32_t row = 0; row < m->rows; row++) {
    uint32_t first = row * m->cells_per_row;
    uint32_t n = m->ncells - first < m->cells_per_row ? m->ncells - first : m->cells_per_row;
    json_object *e = json_object_new_object();
    if (!e) goto fail;
    json_object_array_add(rows, e);
    json_object_object_add(e, "offset",
                           json_object_new_uint64((uint64_t)first * m->cell_bytes));
    json_object_object_add(e, "cells", json_object_new_string_len(m->cells + first, (int)n));
  }
  for (size_t i = 0; i < sizeof legend / sizeof legend[0]; i++) {
    char key[2] = {legend[i].c, '\0'};
    json_object_object_add(leg, key, json_object_new_string(legend[i].what));
  }
  for (size_t i = 0; i < s->n_map; i++) {
    const Pinpool__V1__MapBlock *b = s->map[i];
    json_object *e = json_object_new_object();
    if (!e) goto fail;
    json_object_array_add(blocks, e);
    json_object_object_add(e, "offset", json_object_new_uint64(b->offset));
    json_object_object_add(e, "size", json_object_new_uint64(b->size));
    json_object_object_add(e, "kind", json_object_new_string(kind_name(b->kind)));
    if (b->kind == PINPOOL__V1__MAP_BLOCK__KIND__SLAB) {
      json_object_object_add(e, "inuse", json_object_new_uint64(b->inuse));
      json_object_object_add(e, "capacity", json_object_new_uint64(b->capacity));
      json_object_object_add(e, "in_magazines", json_object_new_uint64(b->in_magazines));
    }
  }
  json_object_object_add(o, "rows", rows);
  json_object_object_add(o, "legend", leg);
  json_object_object_add(o, "blocks", blocks);
  if (s->runs) json_object_object_add(o, "runs", ctl_json_runs(s));
  return o;
fail:
  json_object_put(blocks);
  json_object_put(leg);
  json_object_put(rows);
  json_object_put(o);
  return NULL;
}
