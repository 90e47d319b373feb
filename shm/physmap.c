/*
 * physmap.c — the physical-address table of a region.
 *
 * What.  A DMA user needs the physical address of each buffer, and the buddy needs to know
 * whether a block larger than a page is physically contiguous.  Both questions are
 * answered from one private table: for each region page, the physical address of its
 * first byte.  From it we derive the maximal runs of physically consecutive pages, and a
 * per-page index into the runs, so that:
 *   - physmap_phys(offset)               is one load (phys[page] + offset in page);
 *   - physmap_is_contiguous(offset, len) is one load through the index and a compare:
 *     the range is contiguous iff it ends inside the run where it starts;
 *   - physmap_runs / physmap_largest_run  hand out the runs themselves (the daemon sends
 *     a buffer's runs as its segments; the operator sees the longest).
 * Without the index (more than 2^32 runs, or its malloc failed) the run is found by
 * binary search: slower, never wrong.
 *
 * Source.  /proc/self/pagemap has one 64-bit entry per base page of our address space:
 * bit 63 "present", bits 0-54 the page frame number — zero unless the reader holds
 * CAP_SYS_ADMIN (Linux 4.2+).  For a hugepage every base-page entry inside it carries
 * consecutive frames, so one entry (its first) per region page says everything.  Reads are
 * batched: 512 entries per pread for 4 KiB pages; one pread per hugepage.  The table is
 * all or nothing: if any page is missing or its frame hidden, the whole table is
 * "unknown" and only single pages count as contiguous — a partial table would let the
 * buddy promise contiguity it cannot check.
 *
 * Invariants (physmap_check, run under PP_DEBUG=3 after every rebuild):
 *   - phys and runs are both NULL (unknown) or both set;
 *   - runs are sorted by offset, adjacent, cover [0, nr_pages * page_size) exactly, each
 *     run's pages are physically consecutive, and no run could be extended into the next
 *     (maximal); largest_run is the longest;
 *   - page_run, when present, names for each page the run holding it.
 *
 * The addresses are a snapshot taken while the region's pages are pinned (see region.c):
 * they stay true as long as the pages stay in place.
 *
 * Memory: phys (8 bytes a page), runs, page_run (4 bytes a page) — private malloc memory;
 * a failed malloc is PP_ENOPRIVMEM.  Locks: none; the table is written only by its owner
 * while no query runs (the region's contract).
 *
 * References: Documentation/admin-guide/mm/pagemap.rst; DPDK lib/eal/linux/eal_memory.c
 * (rte_mem_virt2phy, the same walk).
 */
#define _GNU_SOURCE
#include "physmap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"
#include "osl.h"
#include "pinpool_err.h"
#include "units.h"

#define PAGEMAP_BATCH 512u /* entries per pread for 4 KiB pages: one 4 KiB buffer */

void physmap_init(physmap_t *pm, uint64_t size, uint64_t page_size) {
  *pm = (physmap_t){.page_size = page_size,
                    .nr_pages = page_size ? size / page_size : 0,
                    .largest_run = page_size};
  snprintf(pm->why_unknown, sizeof pm->why_unknown, "not read");
}

void physmap_forget(physmap_t *pm, const char *why) {
  free(pm->phys);
  free(pm->runs);
  free(pm->page_run);
  pm->phys = NULL;
  pm->runs = NULL;
  pm->page_run = NULL;
  pm->nr_runs = 0;
  pm->largest_run = pm->page_size;
  snprintf(pm->why_unknown, sizeof pm->why_unknown, "%s", why);
}

void physmap_fini(physmap_t *pm) {
  physmap_forget(pm, "released");
}

/* From pm->phys, build the maximal runs and the per-page index.  0 or PP_ENOPRIVMEM (the
 * caller forgets the table). */
static int physmap_build_runs(physmap_t *pm) {
  PP_ASSERT(pm->phys && pm->nr_pages > 0);
  size_t nr = 1;
  for (uint64_t i = 1; i < pm->nr_pages; i++)
    if (pm->phys[i] != pm->phys[i - 1] + pm->page_size) nr++;
  physmap_run_t *runs = malloc(nr * sizeof *runs);
  if (!runs) return PP_ENOPRIVMEM;
  /* The per-page index is an optimisation (150 ns of binary search over 65k runs become
   * one load); without it the queries are only slower. */
  uint32_t *page_run = nr <= UINT32_MAX ? malloc(pm->nr_pages * sizeof *page_run) : NULL;
  if (page_run) page_run[0] = 0;
  size_t k = 0;
  uint64_t largest = 0;
  runs[0] = (physmap_run_t){.offset = 0, .phys = pm->phys[0], .length = pm->page_size};
  for (uint64_t i = 1; i < pm->nr_pages; i++) {
    if (pm->phys[i] == pm->phys[i - 1] + pm->page_size) {
      runs[k].length += pm->page_size;
    } else {
      if (runs[k].length > largest) largest = runs[k].length;
      runs[++k] = (physmap_run_t){
          .offset = i * pm->page_size, .phys = pm->phys[i], .length = pm->page_size};
    }
    if (page_run) page_run[i] = (uint32_t)k;
  }
  if (runs[k].length > largest) largest = runs[k].length;
  PP_IASSERT(k + 1 == nr);
  free(pm->runs);
  free(pm->page_run);
  pm->runs = runs;
  pm->page_run = page_run;
  pm->nr_runs = nr;
  pm->largest_run = largest;
  PP_VALIDATE(physmap_check, pm);
  return 0;
}

int physmap_set(physmap_t *pm, const uint64_t *phys) {
  if (!pm->phys) pm->phys = malloc(pm->nr_pages * sizeof *pm->phys);
  if (!pm->phys) {
    physmap_forget(pm, "no memory for the table");
    return PP_ENOPRIVMEM;
  }
  memcpy(pm->phys, phys, pm->nr_pages * sizeof *phys);
  if (physmap_build_runs(pm) != 0) {
    physmap_forget(pm, "no memory for the runs table");
    return PP_ENOPRIVMEM;
  }
  pm->why_unknown[0] = '\0';
  return 0;
}

int physmap_pagemap_read(int pagemap_fd, const void *base, uint64_t page_size, uint64_t first,
                         uint64_t count, uint64_t *ret_entries) {
  uint64_t base_ps = osl_base_page_size();
  uint64_t step = page_size / base_ps; /* pagemap has one entry per base page */
  uint64_t vpage = (uint64_t)(uintptr_t)base / base_ps;
  for (uint64_t i = 0; i < count;) {
    /* 4 KiB pages: consecutive entries, read in batches.  Hugepages: one entry each (its
     * first base page); the rest of the hugepage's entries say nothing new. */
    uint64_t cnt = step == 1 ? count - i : 1;
    if (cnt > PAGEMAP_BATCH) cnt = PAGEMAP_BATCH;
    size_t want = (size_t)cnt * sizeof *ret_entries;
    off_t at = (off_t)((vpage + (first + i) * step) * sizeof *ret_entries);
    ssize_t got = osl_pread(pagemap_fd, ret_entries + i, want, at);
    if (got != (ssize_t)want) {
      if (got >= 0) errno = EIO;
      return -1;
    }
    i += cnt;
  }
  return 0;
}

int physmap_read(physmap_t *pm, const void *base) {
  char why[160];
  int rc;
  int fd = osl_open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) {
    snprintf(why, sizeof why, "cannot open /proc/self/pagemap: %s", strerror(errno));
    rc = PP_EOS;
    goto unknown;
  }
  if (!pm->phys) pm->phys = malloc(pm->nr_pages * sizeof *pm->phys);
  if (!pm->phys) {
    snprintf(why, sizeof why, "no memory for a table of %" PRIu64 " pages", pm->nr_pages);
    rc = PP_ENOPRIVMEM;
    goto unknown;
  }
  uint64_t batch[PAGEMAP_BATCH];
  uint64_t base_ps = osl_base_page_size();
  for (uint64_t i = 0; i < pm->nr_pages;) {
    uint64_t cnt = pm->nr_pages - i < PAGEMAP_BATCH ? pm->nr_pages - i : PAGEMAP_BATCH;
    if (physmap_pagemap_read(fd, base, pm->page_size, i, cnt, batch) != 0) {
      snprintf(why, sizeof why, "pread of /proc/self/pagemap: %s", strerror(errno));
      rc = PP_EOS;
      goto unknown;
    }
    for (uint64_t j = 0; j < cnt; j++, i++) {
      uint64_t e = batch[j];
      if (!(e & PHYSMAP_PM_PRESENT)) {
        snprintf(why, sizeof why, "page %" PRIu64 " not present after populating", i);
        rc = PP_ENOENT;
        goto unknown;
      }
      if ((e & PHYSMAP_PM_PFN_MASK) == 0) {
        snprintf(why, sizeof why,
                 "/proc/self/pagemap hides frame numbers (needs CAP_SYS_ADMIN)");
        rc = PP_ENOENT;
        goto unknown;
      }
      pm->phys[i] = (e & PHYSMAP_PM_PFN_MASK) * base_ps;
    }
  }
  osl_close(fd);
  fd = -1;
  if (physmap_build_runs(pm) != 0) {
    snprintf(why, sizeof why, "no memory for the runs table");
    rc = PP_ENOPRIVMEM;
    goto unknown;
  }
  pm->why_unknown[0] = '\0';
  return 0;
unknown:
  if (fd >= 0) osl_close(fd);
  physmap_forget(pm, why);
  return rc;
}

/* ---- queries ---------------------------------------------------------------------- */

bool physmap_known(const physmap_t *pm) {
  return pm->phys != NULL;
}

int physmap_phys(const physmap_t *pm, uint64_t offset, uint64_t *ret_phys) {
  if (!ret_phys) return PP_EINVAL;
  if (offset >= pm->nr_pages * pm->page_size) return PP_ERANGE;
  if (!pm->phys) return PP_ENOENT;
  *ret_phys = pm->phys[offset / pm->page_size] + offset % pm->page_size;
  return 0;
}

/* Index of the run holding offset, by binary search: runs are sorted and cover the table. */
static size_t physmap_run_search(const physmap_t *pm, uint64_t offset) {
  size_t lo = 0, hi = pm->nr_runs;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (pm->runs[mid].offset <= offset)
      lo = mid;
    else
      hi = mid;
  }
  PP_IASSERT(pm->runs[lo].offset <= offset &&
             offset < pm->runs[lo].offset + pm->runs[lo].length);
  return lo;
}

/* The run holding offset: one load through the per-page index, else the search (which
 * debug builds also run to cross-check the index). */
static const physmap_run_t *physmap_run_at(const physmap_t *pm, uint64_t offset) {
  if (!pm->page_run) return &pm->runs[physmap_run_search(pm, offset)];
  size_t k = pm->page_run[offset / pm->page_size];
  PP_IASSERT(k == physmap_run_search(pm, offset));
  return &pm->runs[k];
}

bool physmap_is_contiguous(const physmap_t *pm, uint64_t offset, uint64_t len) {
  uint64_t size = pm->nr_pages * pm->page_size;
  if (offset > size || len > size - offset) return false;
  if (len == 0) return true;
  uint64_t last = offset + len - 1;
  if (offset / pm->page_size == last / pm->page_size) return true;
  if (!pm->runs) return false;
  const physmap_run_t *run = physmap_run_at(pm, offset);
  return last < run->offset + run->length;
}

size_t physmap_runs(const physmap_t *pm, physmap_run_t *out, size_t n) {
  if (!pm->runs) return 0;
  size_t k = n < pm->nr_runs ? n : pm->nr_runs;
  if (out && k) memcpy(out, pm->runs, k * sizeof *out);
  return pm->nr_runs;
}

uint64_t physmap_largest_run(const physmap_t *pm) {
  return pm->runs ? pm->largest_run : pm->page_size;
}

int physmap_check(const physmap_t *pm, char *why, size_t why_len) {
  if (!pm->phys != !pm->runs)
    return pp_corrupt(why, why_len, "phys and runs disagree on being known");
  if (!pm->phys) return 0;
  uint64_t size = pm->nr_pages * pm->page_size;
  uint64_t next = 0, largest = 0;
  for (size_t k = 0; k < pm->nr_runs; k++) {
    const physmap_run_t *run = &pm->runs[k];
    if (run->offset != next)
      return pp_corrupt(why, why_len, "run %zu starts at %" PRIu64 ", expected %" PRIu64, k,
                        run->offset, next);
    if (run->length == 0 || run->length % pm->page_size)
      return pp_corrupt(why, why_len, "run %zu has length %" PRIu64, k, run->length);
    if (run->length > size - run->offset)
      return pp_corrupt(why, why_len, "run %zu runs past the region", k);
    for (uint64_t o = 0; o < run->length; o += pm->page_size) {
      uint64_t page = (run->offset + o) / pm->page_size;
      if (pm->page_run && pm->page_run[page] != k)
        return pp_corrupt(why, why_len, "page %" PRIu64 " indexed to run %u, lies in run %zu",
                          page, pm->page_run[page], k);
      if (pm->phys[page] != run->phys + o)
        return pp_corrupt(why, why_len,
                          "page at offset %" PRIu64 " is not consecutive in run %zu",
                          run->offset + o, k);
    }
    if (k > 0 && run->phys == pm->runs[k - 1].phys + pm->runs[k - 1].length)
      return pp_corrupt(why, why_len, "runs %zu and %zu should be one", k - 1, k);
    if (run->length > largest) largest = run->length;
    next = run->offset + run->length;
  }
  if (next != size)
    return pp_corrupt(why, why_len, "runs cover %" PRIu64 " of %" PRIu64 " bytes", next, size);
  if (largest != pm->largest_run)
    return pp_corrupt(why, why_len, "largest run %" PRIu64 " recorded as %" PRIu64, largest,
                      pm->largest_run);
  return 0;
}

/* ---- description (pinpoold --probe) ----------------------------------------------- */

#define DESCRIBE_RUNS 8 /* runs listed one by one; beyond that, a histogram by length */

void physmap_describe(const physmap_t *pm, bool hugepages, FILE *out) {
  char s1[32], s2[32];
  if (!pm->phys) {
    units_format_size(pm->page_size, s1, sizeof s1);
    fprintf(out, "  physical addresses: unknown (%s)\n", pm->why_unknown);
    fprintf(out, "  contiguous: only within one page (%s)\n", s1);
    return;
  }
  units_format_size(pm->largest_run, s1, sizeof s1);
  fprintf(out, "  physical addresses: readable (/proc/self/pagemap)%s\n",
          hugepages ? "" : "; 4 KiB pages may move under compaction");
  fprintf(out, "  contiguous runs: %zu, largest %s\n", pm->nr_runs, s1);
  for (size_t k = 0; k < pm->nr_runs && k < DESCRIBE_RUNS; k++) {
    units_format_size(pm->runs[k].length, s2, sizeof s2);
    fprintf(out, "    offset %#14" PRIx64 "  phys %#14" PRIx64 "  %s\n", pm->runs[k].offset,
            pm->runs[k].phys, s2);
  }
  if (pm->nr_runs <= DESCRIBE_RUNS) return;
  fprintf(out, "    ... %zu more; runs by length:\n", pm->nr_runs - DESCRIBE_RUNS);
  /* Histogram by power-of-two length class: [2^k, 2^(k+1)). */
  uint64_t hist[64] = {0};
  for (size_t k = 0; k < pm->nr_runs; k++)
    hist[63 - __builtin_clzll(pm->runs[k].length)]++;
  for (unsigned b = 0; b < 64; b++)
    if (hist[b]) {
      units_format_size(1ull << b, s1, sizeof s1);
      if (b < 63) units_format_size(1ull << (b + 1), s2, sizeof s2);
      fprintf(out, "      %s .. < %s: %" PRIu64 "\n", s1, b < 63 ? s2 : "-", hist[b]);
    }
}
