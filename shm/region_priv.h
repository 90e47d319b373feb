/*
 * region_priv.h — the region's struct and the helpers its two source files share:
 * region.c (the memfd's lifecycle), pagesort.c (laying hugepages out in physical order) and
 * holes.c (finding, repairing and surviving pages a client punched out).  Nothing outside
 * those files includes this.
 */
#ifndef PP_REGION_PRIV_H
#define PP_REGION_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "physmap.h"
#include "pin.h"
#include "region.h"
#include "region_internal.h"

/* Where a region's messages go: the sink given at create/adopt (NULL fn: stderr). */
typedef struct region_log {
  void (*fn)(void *ctx, int level, const char *msg);
  void *ctx;
} region_log_t;

struct region {
  int fd;        /* the memfd; -1 for a table-only region (region_from_phys) */
  void *base;    /* the mapping; NULL for a table-only region */
  uint64_t size; /* bytes, a non-zero multiple of page_size */
  uint64_t page_size;
  uint64_t nr_pages;
  bool hugepages;      /* hugetlb-backed */
  bool mlocked;        /* 4 KiB mode: mlock() succeeded */
  bool adopted;        /* came from region_adopt() */
  int seals;           /* F_GET_SEALS after sealing */
  int populate_write;  /* MADV_POPULATE_WRITE: 0 untried, 1 works, -1 absent (MAP_FIXED) */
  int pagemap_fd;      /* /proc/self/pagemap, kept open for scans; -1 until it can be opened */
  uint64_t pin_budget; /* bytes the pins may hold over the region's life (pin_region) */
  physmap_t map;       /* physical addresses, runs, lost pages (physmap.c) */
  pin_t pin;           /* long-term pins on every page (pin.c) */
  region_sort_info_t sort; /* how the pages were laid out at creation (pagesort.c) */
  region_log_t log;
};

void region_logf(const region_log_t *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* units_format_size into buf (32 bytes), returned for use inside a format call. */
const char *region_fmt_size(uint64_t bytes, char buf[32]);
/* The open /proc/self/pagemap, opened now if it was not; -1 (errno) when it cannot be. */
int region_pagemap(region_t *r);
/* Fault in every page of [off, off+len) through the daemon's mapping for writing
 * (MADV_POPULATE_WRITE; MAP_FIXED | MAP_POPULATE on kernels before 5.14, mlocked again
 * when the region was).  0, or -1 with errno (EFAULT / ENOMEM: a page could not be had). */
int region_populate_range(region_t *r, uint64_t off, uint64_t len);
/* Fault the pages of a fresh hugetlb region (sized, not yet reserved, mapped or sealed)
 * into its memfd in ascending physical order (pagesort.c), recording the outcome in
 * r->sort; the staging memfd is called "<name>.sort".  Best effort, never a failure: pages it
 * could not place are left to the reserve's plain fallocate, which takes them as the pool gives
 * them; nothing of the attempt (staging memfd, mapping, pages) outlives the call.  t may be
 * NULL. */
void region_sort_pages(region_t *r, const char *name, const region_log_t *log,
                       const region_tuning_t *t);

#endif /* PP_REGION_PRIV_H */
