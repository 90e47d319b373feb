/*
 * region_internal.h — region.c's seams for tests and its tuning knobs.  Not part of the
 * contract in region.h: only shm/ and tests/ include this.
 */
#ifndef PP_REGION_INTERNAL_H
#define PP_REGION_INTERNAL_H

#include "region.h"

/* Regions larger than populate_above are populated chunk by chunk, each chunk logged, so
 * an operator watching a 64 GiB start-up sees progress instead of a silent minute. */
typedef struct region_tuning {
  uint64_t populate_above; /* bytes; 0 = REGION_POPULATE_ABOVE */
  uint64_t populate_chunk; /* bytes per chunk, rounded up to the page size; 0 = default */
} region_tuning_t;

#define REGION_POPULATE_ABOVE (1ull << 30)
#define REGION_POPULATE_CHUNK (256ull << 20)

/* region_create with explicit tuning (t may be NULL: defaults). */
int region_create_tuned(const region_config_t *cfg, const region_tuning_t *t, region_t **ret);

/* The page-size policy as a pure function of what the kernel offers (hp, n entries).
 * Explicit 2M/1G: that size if offered, else PP_ENOHUGE.  4K: the base page size.  Auto:
 * the largest offered size not larger than size of which free - resv pages cover size,
 * else the base page size.  Availability of an explicit size's pages is decided later by
 * fallocate, the only check that cannot race (and that counts overcommitted pages). */
int region_choose_page(region_page_policy_t policy, uint64_t size,
                       const region_hugepage_info_t *hp, size_t n, uint64_t *ret_page_size);

/* region_hugepage_sizes() over another directory laid out like /sys/kernel/mm/hugepages. */
int region_hugepage_sizes_at(const char *root, region_hugepage_info_t *out, size_t n);

/* A region with no memfd and no mapping, only the physical-address table: phys holds
 * size / page_size addresses (copied), or is NULL for "unknown".  For testing the
 * queries (and the buddy's contiguous allocation) on known data. */
int region_from_phys(uint64_t size, uint64_t page_size, const uint64_t *phys, region_t **ret);

/* Validator: the runs are sorted, maximal, cover the region exactly and agree with the
 * per-page table.  0, or PP_ECORRUPT with the first violation in why. */
int region_check(const region_t *r, char *why, size_t why_len);

#endif /* PP_REGION_INTERNAL_H */
