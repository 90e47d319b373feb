/*
 * physmap.h — the region's physical-address table: each page's physical address as
 * /proc/self/pagemap reports it, the maximal runs of physically consecutive pages, and
 * the queries the allocators and the daemon ask of them (the address of an offset, is a
 * range contiguous, the runs, the longest run).  Private memory only.  See physmap.c.
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

/* Fields are read by region.c only through the functions below; they are in the header so
 * that a region can embed the table. */
typedef struct physmap {
  uint64_t page_size;
  uint64_t nr_pages;
  uint64_t *phys;      /* nr_pages physical addresses; NULL when unknown */
  physmap_run_t *runs; /* maximal runs, sorted by offset; NULL when unknown */
  size_t nr_runs;
  uint32_t *page_run;    /* each page's index in runs (O(1) contiguity queries); NULL when
                            unknown, or when it could not be had (binary search instead) */
  uint64_t largest_run;  /* bytes; page_size when unknown */
  char why_unknown[160]; /* why phys is NULL, for describe */
} physmap_t;

/* pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PHYSMAP_PM_PRESENT (1ull << 63)
#define PHYSMAP_PM_PFN_MASK ((1ull << 55) - 1)

/* An empty table ("unknown") for nr_pages = size / page_size pages. */
void physmap_init(physmap_t *pm, uint64_t size, uint64_t page_size);
/* Free the table. */
void physmap_fini(physmap_t *pm);
/* Drop the table: addresses unknown, for the reason given. */
void physmap_forget(physmap_t *pm, const char *why);

/* Take nr_pages addresses from phys (copied) and build the runs.  0, or PP_ENOPRIVMEM
 * (the table is then unknown). */
int physmap_set(physmap_t *pm, const uint64_t *phys);

/* Read the raw pagemap entry of count region pages starting at page first, for a mapping
 * of the region at base, from pagemap_fd (an open /proc/self/pagemap): one entry per
 * region page (for hugepages, the entry of its first base page).  0, or -1 with errno
 * (EIO for a short read). */
int physmap_pagemap_read(int pagemap_fd, const void *base, uint64_t page_size, uint64_t first,
                         uint64_t count, uint64_t *ret_entries);

/* Fill the table from /proc/self/pagemap for the mapping at base, every page of which
 * must be present.  0, or a negative PP_E* code with the table unknown and why_unknown
 * saying why (PP_EOS: pagemap unreadable; PP_ENOENT: a page not present, or frame numbers
 * hidden from a process without CAP_SYS_ADMIN; PP_ENOPRIVMEM). */
int physmap_read(physmap_t *pm, const void *base);

bool physmap_known(const physmap_t *pm);
/* Physical address of the byte at offset; PP_ENOENT when unknown, PP_ERANGE when out of
 * the table. */
int physmap_phys(const physmap_t *pm, uint64_t offset, uint64_t *ret_phys);
/* True when [offset, offset+len) is within one page, or spans pages whose addresses are
 * known and consecutive. */
bool physmap_is_contiguous(const physmap_t *pm, uint64_t offset, uint64_t len);
/* The runs; fills up to n, returns the total count (0 when unknown). */
size_t physmap_runs(const physmap_t *pm, physmap_run_t *out, size_t n);
/* Length of the longest run (the page size when unknown). */
uint64_t physmap_largest_run(const physmap_t *pm);

/* Validator: the runs are sorted, maximal, cover the table exactly and agree with the
 * per-page addresses and index.  0, or PP_ECORRUPT with the first violation in why. */
int physmap_check(const physmap_t *pm, char *why, size_t why_len);

/* The physical-address lines of `pinpoold --probe`: readable or why not, and the runs
 * (listed, then a histogram by length). */
void physmap_describe(const physmap_t *pm, bool hugepages, FILE *out);

#endif /* PP_PHYSMAP_H */
