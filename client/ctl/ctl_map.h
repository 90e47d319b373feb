/*
 * ctl_map.h — `pinpoolctl map`: a picture of the region, one character per cell, built
 * from Stats.map (every block, fetched page after page: ctl_snap.h), and the region's
 * physically contiguous runs under it.  See ctl_map.c for how cells are sized and
 * how a cell's character is chosen.
 */
#ifndef PP_CTL_MAP_H
#define PP_CTL_MAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "pinpool.pb-c.h"

/* The characters a cell can show. */
#define CTL_MAP_FREE '.'     /* all free */
#define CTL_MAP_MIXED ':'    /* mostly free, but something is allocated in it */
#define CTL_MAP_BUFFER 'B'   /* a buddy block handed out as a buffer */
#define CTL_MAP_SLAB 'S'     /* a slab whose objects are held by clients */
#define CTL_MAP_MAGAZINE 'm' /* a slab whose objects mostly sit in daemon magazines */
#define CTL_MAP_EMPTY 's'    /* a slab with no object allocated: `shrink` would release it */
#define CTL_MAP_OTHER 'o'    /* allocated for another reason */
#define CTL_MAP_LOST 'x'     /* quarantined: pages punched out of the region, not replaced */
#define CTL_MAP_UNKNOWN '?'  /* not described by the snapshot */

#define CTL_MAP_MIN_COLUMNS 8u
#define CTL_MAP_DEFAULT_ROWS 16u

typedef struct ctl_map {
  uint64_t region_size;
  uint64_t cell_bytes;    /* bytes each character stands for (a power of two) */
  uint32_t cells_per_row; /* a power of two, so rows start at round offsets */
  uint32_t ncells;        /* ceil(region_size / cell_bytes) */
  uint32_t rows;
  int offset_digits; /* hex digits of the row labels */
  char *cells;       /* ncells characters + NUL, malloc'd */
  /* The region's physical runs (Stats.runs, owned by the snapshot; NULL from a daemon
   * that does not send them): shown under the picture. */
  const Pinpool__V1__PhysRuns *runs;
} ctl_map_t;

/* Lay the region out in at most max_rows rows of a terminal `columns` wide (row label
 * included) and classify each cell.  PP_EINVAL for an empty region, PP_ENOMEM. */
int ctl_map_build(const Pinpool__V1__Stats *s, unsigned columns, unsigned max_rows,
                  ctl_map_t *ret_map);
void ctl_map_free(ctl_map_t *m);

/* The character one slab block shows, from its counters. */
char ctl_map_slab_char(uint32_t inuse, uint32_t in_magazines);

void ctl_view_map(FILE *out, const ctl_map_t *m);
/* Cells as rows of strings plus the blocks themselves and the physical runs. */
json_object *ctl_json_map(const Pinpool__V1__Stats *s, const ctl_map_t *m);

#endif /* PP_CTL_MAP_H */
