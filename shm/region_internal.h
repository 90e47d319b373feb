/*
 * region_internal.h — region.c's seams for tests and its tuning knobs.  Not part of the
 * contract in region.h: only shm/ and tests/ include this.  (The page-size policy's pure
 * functions are in hugetlb.h, the table's in physmap.h.)
 */
#ifndef PP_REGION_INTERNAL_H
#define PP_REGION_INTERNAL_H

#include "region.h"

/* Regions larger than populate_above are populated chunk by chunk, each chunk logged, so
 * an operator watching a 64 GiB start-up sees progress instead of a silent minute.  The
 * pin budget bounds what punched-and-repaired pages may cost (see pin.c). */
typedef struct region_tuning {
  uint64_t populate_above; /* bytes; 0 = REGION_POPULATE_ABOVE */
  uint64_t populate_chunk; /* bytes per chunk, rounded up to the page size; 0 = default */
  uint64_t pin_budget;     /* bytes the long-term pins may hold over the region's life,
                              repairs included (at least the size); 0 = twice the size */
} region_tuning_t;

#define REGION_POPULATE_ABOVE (1ull << 30)
#define REGION_POPULATE_CHUNK (256ull << 20)

/* region_create with explicit tuning (t may be NULL: defaults). */
int region_create_tuned(const region_config_t *cfg, const region_tuning_t *t, region_t **ret);

/* A region with no memfd and no mapping, only the physical-address table: phys holds
 * size / page_size addresses (copied), or is NULL for "unknown".  For testing the
 * queries (and the buddy's contiguous allocation) on known data. */
int region_from_phys(uint64_t size, uint64_t page_size, const uint64_t *phys, region_t **ret);

/* Validator: the geometry is consistent and the physical-address table passes
 * physmap_check.  0, or PP_ECORRUPT with the first violation in why. */
int region_check(const region_t *r, char *why, size_t why_len);

#endif /* PP_REGION_INTERNAL_H */
