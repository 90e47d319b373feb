/*
 * physmap.h — the region's physical-address table: each page's physical address as
 * /proc/self/pagemap reports it, which pages are lost (no longer backing the region as
 * recorded: a holder of the fd punched them out), the maximal runs of physically
 * consecutive pages that are not lost, and the queries the allocators and the daemon ask
 * of them (the address of an offset, is a range contiguous, the runs, the longest run,
 * the lost ranges).  Private memory only.  See physmap.c.
 */
#ifndef PP_PHYSMAP_H
#define PP_PHYSMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A run of physically consecutive pages: [offset, offset+length) maps to
 * [phys, phys+length). */
typedef struct physmap_run {
  uint64_t offset;
  uint64_t phys;
  uint64_t length;
} physmap_run_t;

/* A range of the region: [offset, offset+length). */
typedef struct physmap_range {
  uint64_t offset;
  uint64_t length;
} physmap_range_t;

#define PHYSMAP_NO_RUN UINT32_MAX /* page_run of a lost page */

/* Run lengths in power-of-two classes of pages: bucket k counts the runs of 2^k to
 * 2^(k+1)-1 pages (1, 2-3, 4-7, 8-15, ...).  40 classes hold any region (at most 2^34
 * pages); a longer run would be counted in the last. */
#define PHYSMAP_RUN_BUCKETS 40

/* What an operator asks of the runs: how many, the longest, how their lengths spread, and
 * whether the pages ascend physically.  Plain values: copy it, print it, send it. */
typedef struct physmap_run_stats {
  bool known;          /* physical addresses readable; when not, everything below is 0
                          except page_size and longest (one page: all that is certain) */
  uint64_t page_size;  /* bytes */
  uint64_t pages;      /* pages in runs: the region's pages that are not lost */
  uint64_t nr_runs;    /* maximal runs of physically consecutive pages */
  uint64_t longest;    /* bytes of the longest run (0 when every page is lost) */
  uint64_t descents;   /* pages whose frame lies below that of the page before them (lost
                          pages skipped): 0 when the region's pages ascend physically */
  uint32_t nr_buckets; /* highest non-empty bucket + 1; 0 when there are no runs */
  uint64_t buckets[PHYSMAP_RUN_BUCKETS]; /* runs per length class, see above */
} physmap_run_stats_t;

/* The page counts bucket k covers: [physmap_bucket_min(k), physmap_bucket_max(k)]. */
static inline uint64_t physmap_bucket_min(unsigned k) {
  return 1ull << k;
}
static inline uint64_t physmap_bucket_max(unsigned k) {
  return k + 1 >= PHYSMAP_RUN_BUCKETS ? UINT64_MAX : (2ull << k) - 1;
}

/* Fields are read by region.c only through the functions below; they are in the header so
 * that a region can embed the table. */
typedef struct physmap {
  uint64_t page_size;
  uint64_t nr_pages;
  uint64_t *lost;      /* bitmap, one bit a page: the page is lost (always allocated) */
  uint64_t nr_lost;    /* pages lost */
  uint64_t generation; /* bumped whenever addresses, runs or lost pages change */
  uint64_t *phys;      /* nr_pages physical addresses; NULL when unknown */
  physmap_run_t *runs; /* maximal runs of pages not lost, sorted by offset; NULL when
                          unknown */
  size_t nr_runs;
  uint32_t *page_run;    /* each page's index in runs (O(1) contiguity queries), or
                            PHYSMAP_NO_RUN for a lost page; NULL when unknown, or when it
                            could not be had (binary search instead) */
  uint64_t largest_run;  /* bytes; page_size when unknown */
  char why_unknown[160]; /* why phys is NULL, for describe */
} physmap_t;

/* pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PHYSMAP_PM_PRESENT (1ull << 63)
#define PHYSMAP_PM_PFN_MASK ((1ull << 55) - 1)

/* An empty table ("unknown", no page lost) for nr_pages = size / page_size pages.  0, or
 * PP_ENOPRIVMEM (the lost-page bitmap); physmap_fini either way. */
int physmap_init(physmap_t *pm, uint64_t size, uint64_t page_size);
/* Free the table. */
void physmap_fini(physmap_t *pm);
/* Drop the addresses: unknown, for the reason given.  Lost pages stay lost. */
void physmap_forget(physmap_t *pm, const char *why);

/* Take nr_pages addresses from phys (copied; no page lost) and build the runs.  0, or
 * PP_ENOPRIVMEM (the table is then unknown). */
int physmap_set(physmap_t *pm, const uint64_t *phys);

/* Read the raw pagemap entry of count region pages starting at page first, for a mapping
 * of the region at base, from pagemap_fd (an open /proc/self/pagemap): one entry per
 * region page (for hugepages, the entry of its first base page).  0, or -1 with errno
 * (EIO for a short read). */
int physmap_pagemap_read(int pagemap_fd, const void *base, uint64_t page_size, uint64_t first,
                         uint64_t count, uint64_t *ret_entries);
/* The physical address in a pagemap entry; 0 when not present or hidden. */
uint64_t physmap_entry_phys(uint64_t entry);

/* Fill the table from pagemap_fd (an open /proc/self/pagemap) for the mapping at base.
 * A page not present in the mapping is marked lost (its file page is gone).  0, or a
 * negative PP_E* code with the addresses unknown and why_unknown saying why (PP_EOS:
 * pagemap unreadable; PP_ENOENT: frame numbers hidden from a process without
 * CAP_SYS_ADMIN — absent pages are marked lost all the same; PP_ENOPRIVMEM). */
int physmap_read(physmap_t *pm, int pagemap_fd, const void *base);

/* Mark count pages from first lost (already lost ones stay so) and rebuild the runs.  When
 * the rebuild cannot get memory the addresses are forgotten — never left stale. */
void physmap_mark_lost(physmap_t *pm, uint64_t first, uint64_t count);
/* The same one page at a time for a scan: only the bit (true when it was not lost yet).
 * A batch of these must end with physmap_rebuild before any query. */
bool physmap_lose_page(physmap_t *pm, uint64_t page);
/* Rebuild the runs after lost pages changed (or forget the addresses when that cannot get
 * memory: PP_ENOPRIVMEM).  Bumps the generation either way. */
int physmap_rebuild(physmap_t *pm);
/* Pages first .. first+count-1 back the region again, at the addresses in phys (NULL when
 * unknown): no longer lost; runs rebuilt.  0, or PP_ENOPRIVMEM with the addresses
 * forgotten (the pages are no longer lost all the same). */
int physmap_restore(physmap_t *pm, uint64_t first, uint64_t count, const uint64_t *phys);
bool physmap_page_lost(const physmap_t *pm, uint64_t page);
/* True when any page overlapping [offset, offset+len) is lost. */
bool physmap_range_lost(const physmap_t *pm, uint64_t offset, uint64_t len);
/* The maximal ranges of lost pages, by offset; fills up to n, returns the total count. */
size_t physmap_lost_ranges(const physmap_t *pm, physmap_range_t *out, size_t n);

bool physmap_known(const physmap_t *pm);
/* Physical address of the byte at offset; PP_ENOENT when unknown or the page is lost,
 * PP_ERANGE when out of the table. */
int physmap_phys(const physmap_t *pm, uint64_t offset, uint64_t *ret_phys);
/* True when no page of [offset, offset+len) is lost and the range is within one page, or
 * spans pages whose addresses are known and consecutive. */
bool physmap_is_contiguous(const physmap_t *pm, uint64_t offset, uint64_t len);
/* The runs; fills up to n, returns the total count (0 when unknown). */
size_t physmap_runs(const physmap_t *pm, physmap_run_t *out, size_t n);
/* Length of the longest run (the page size when unknown; 0 when every page is lost). */
uint64_t physmap_largest_run(const physmap_t *pm);
/* The table's runs summarised (O(runs)). */
void physmap_run_stats(const physmap_t *pm, physmap_run_stats_t *ret);
/* The same for nr_pages addresses in the order a region would lay them out (none lost):
 * the runs that layout has.  phys NULL: unknown. */
void physmap_run_stats_of(const uint64_t *phys, uint64_t nr_pages, uint64_t page_size,
                          physmap_run_stats_t *ret);

/* Validator: nr_lost counts the bitmap; the runs are sorted, maximal, cover exactly the
 * pages not lost and agree with the per-page addresses and index.  0, or PP_ECORRUPT with
 * the first violation in why. */
int physmap_check(const physmap_t *pm, char *why, size_t why_len);

/* The physical-address lines of `pinpoold --probe`: readable or why not, lost pages, and
 * the runs (the first listed, then the histogram of lengths in pages).  stable: the pages
 * cannot migrate (hugetlb, or long-term pinned); otherwise the text warns that compaction
 * may move them.  before (may be NULL): the runs of another layout of the same pages — the
 * order the pool gave them before sorting — printed beside the table's own. */
void physmap_describe(const physmap_t *pm, bool stable, const physmap_run_stats_t *before,
                      FILE *out);

#endif /* PP_PHYSMAP_H */
