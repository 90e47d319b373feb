/*
 * physmap.c — the physical-address table of a region, and which of its pages are lost.
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
 * Lost pages.  Every client holds the region's fd and can punch a hole in it
 * (fallocate(PUNCH_HOLE)); the page then leaves the file and the daemon's mapping, and
 * the address recorded for it describes memory the region no longer has.  Such a page is
 * "lost": a bit in the lost bitmap.  A lost page has no address (physmap_phys says
 * PP_ENOENT), belongs to no run (page_run = PHYSMAP_NO_RUN), so no range containing it is
 * contiguous, and it is listed by physmap_lost_ranges until physmap_restore records the
 * address of the page that backs it again (region.c finds, repairs and re-pins them).
 * The bitmap is kept even when addresses are unknown: without CAP_SYS_ADMIN pagemap still
 * tells present from absent.
 *
 * Source.  /proc/self/pagemap has one 64-bit entry per base page of our address space:
 * bit 63 "present", bits 0-54 the page frame number — zero unless the reader holds
 * CAP_SYS_ADMIN (Linux 4.2+).  For a hugepage every base-page entry inside it carries
 * consecutive frames, so one entry (its first) per region page says everything.  Reads are
 * batched: 512 entries per pread for 4 KiB pages; one pread per hugepage.  Addresses are
 * all or nothing: if any present page's frame is hidden, every address is "unknown" and
 * only single pages count as contiguous — a partial table would let the buddy promise
 * contiguity it cannot check.  A page that is absent is not a hole in the table but a lost
 * page: it is simply in no run.
 *
 * Invariants (physmap_check, run under PP_DEBUG=3 after every rebuild):
 *   - nr_lost is the number of bits set in lost;
 *   - phys and runs are both NULL (unknown) or both set;
 *   - runs are sorted by offset and do not overlap, each run's pages are not lost and
 *     physically consecutive, together they cover every page that is not lost, and no run
 *     could be extended into the next (maximal); largest_run is the longest (0: none);
 *   - page_run, when present, names for each page the run holding it, PHYSMAP_NO_RUN for
 *     a lost page.
 *
 * The addresses are a snapshot.  Pages under the region's long-term pin (pin.c) cannot
 * migrate: the kernel moves them out of ZONE_MOVABLE before pinning and leaves them be
 * after.  Unpinned, hugetlb pages in use stay put in practice (only memory offlining or
 * alloc_contig_range moves them) while 4 KiB pages can be moved by compaction even when
 * mlocked, unless vm.compact_unevictable_allowed=0 — physmap_describe says so.  A page
 * punched out of the file is found by the region's scan (holes.c) and marked lost here.
 *
 * Memory: lost (1 bit a page), phys (8 bytes a page), runs, page_run (4 bytes a page) —
 * private malloc memory; a failed malloc is PP_ENOPRIVMEM, and a rebuild that cannot get
 * memory forgets the addresses rather than keep stale ones.  Locks: none; the table is
 * written only by its owner while no query runs (the region's contract).
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

/* ---- the lost-page bitmap ------------------------------------------------------------ */

static bool lost_bit(const physmap_t *pm, uint64_t page) {
  return (pm->lost[page / 64] >> (page % 64)) & 1;
}

bool physmap_page_lost(const physmap_t *pm, uint64_t page) {
  return page < pm->nr_pages && lost_bit(pm, page);
}

bool physmap_range_lost(const physmap_t *pm, uint64_t offset, uint64_t len) {
  if (pm->nr_lost == 0 || len == 0) return false;
  uint64_t first = offset / pm->page_size, last = (offset + len - 1) / pm->page_size;
  if (last >= pm->nr_pages) last = pm->nr_pages - 1;
  for (uint64_t p = first; p <= last; p++)
    if (lost_bit(pm, p)) return true;
  return false;
}

size_t physmap_lost_ranges(const physmap_t *pm, physmap_range_t *out, size_t n) {
  size_t k = 0;
  for (uint64_t p = 0; p < pm->nr_pages && pm->nr_lost;) {
    if (!lost_bit(pm, p)) {
      p++;
      continue;
    }
    uint64_t q = p;
    while (q < pm->nr_pages && lost_bit(pm, q))
      q++;
    if (out && k < n)
      out[k] =
          (physmap_range_t){.offset = p * pm->page_size, .length = (q - p) * pm->page_size};
    k++;
    p = q;
  }
  return k;
}

/* ---- building -------------------------------------------------------------------------- */

int physmap_init(physmap_t *pm, uint64_t size, uint64_t page_size) {
  *pm = (physmap_t){.page_size = page_size,
                    .nr_pages = page_size ? size / page_size : 0,
                    .largest_run = page_size};
  snprintf(pm->why_unknown, sizeof pm->why_unknown, "not read");
  pm->lost = calloc((pm->nr_pages + 63) / 64 + 1, sizeof *pm->lost);
  return pm->lost ? 0 : PP_ENOPRIVMEM;
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
  pm->generation++;
  snprintf(pm->why_unknown, sizeof pm->why_unknown, "%s", why);
}

void physmap_fini(physmap_t *pm) {
  physmap_forget(pm, "released");
  free(pm->lost);
  pm->lost = NULL;
  pm->nr_lost = 0;
}

/* From pm->phys and pm->lost, build the maximal runs of pages not lost and the per-page
 * index.  0 or PP_ENOPRIVMEM (the previous runs are kept; the caller forgets the table). */
static int physmap_build_runs(physmap_t *pm) {
  PP_ASSERT(pm->phys && pm->nr_pages > 0);
  size_t nr = 0;
  for (uint64_t i = 0; i < pm->nr_pages; i++)
    if (!lost_bit(pm, i) &&
        (i == 0 || lost_bit(pm, i - 1) || pm->phys[i] != pm->phys[i - 1] + pm->page_size))
      nr++;
  physmap_run_t *runs = malloc((nr ? nr : 1) * sizeof *runs);
  if (!runs) return PP_ENOPRIVMEM;
  /* The per-page index is an optimisation (150 ns of binary search over 65k runs become
   * one load); without it the queries are only slower. */
  uint32_t *page_run = nr < PHYSMAP_NO_RUN ? malloc(pm->nr_pages * sizeof *page_run) : NULL;
  size_t k = 0;
  uint64_t largest = 0;
  for (uint64_t i = 0; i < pm->nr_pages; i++) {
    if (lost_bit(pm, i)) {
      if (page_run) page_run[i] = PHYSMAP_NO_RUN;
      continue;
    }
    if (k > 0 && !lost_bit(pm, i - 1) && pm->phys[i] == pm->phys[i - 1] + pm->page_size)
      runs[k - 1].length += pm->page_size;
    else
      runs[k++] = (physmap_run_t){
          .offset = i * pm->page_size, .phys = pm->phys[i], .length = pm->page_size};
    if (runs[k - 1].length > largest) largest = runs[k - 1].length;
    if (page_run) page_run[i] = (uint32_t)(k - 1);
  }
  PP_IASSERT(k == nr);
  free(pm->runs);
  free(pm->page_run);
  pm->runs = runs;
  pm->page_run = page_run;
  pm->nr_runs = nr;
  pm->largest_run = largest;
  pm->generation++;
  PP_VALIDATE(physmap_check, pm);
  return 0;
}

int physmap_rebuild(physmap_t *pm) {
  if (!pm->phys) {
    pm->generation++;
    return 0;
  }
  if (physmap_build_runs(pm) == 0) return 0;
  physmap_forget(pm, "no memory to rebuild the runs table");
  return PP_ENOPRIVMEM;
}

int physmap_set(physmap_t *pm, const uint64_t *phys) {
  if (!pm->phys) pm->phys = malloc(pm->nr_pages * sizeof *pm->phys);
  if (!pm->phys) {
    physmap_forget(pm, "no memory for the table");
    return PP_ENOPRIVMEM;
  }
  memcpy(pm->phys, phys, pm->nr_pages * sizeof *phys);
  memset(pm->lost, 0, (pm->nr_pages + 63) / 64 * sizeof *pm->lost);
  pm->nr_lost = 0;
  if (physmap_build_runs(pm) != 0) {
    physmap_forget(pm, "no memory for the runs table");
    return PP_ENOPRIVMEM;
  }
  pm->why_unknown[0] = '\0';
  return 0;
}

bool physmap_lose_page(physmap_t *pm, uint64_t page) {
  PP_ASSERT(page < pm->nr_pages);
  if (lost_bit(pm, page)) return false;
  pm->lost[page / 64] |= 1ull << (page % 64);
  pm->nr_lost++;
  return true;
}

void physmap_mark_lost(physmap_t *pm, uint64_t first, uint64_t count) {
  PP_ASSERT(first <= pm->nr_pages && count <= pm->nr_pages - first);
  bool added = false;
  for (uint64_t p = first; p < first + count; p++)
    added |= physmap_lose_page(pm, p);
  if (added) physmap_rebuild(pm);
}

int physmap_restore(physmap_t *pm, uint64_t first, uint64_t count, const uint64_t *phys) {
  PP_ASSERT(first <= pm->nr_pages && count <= pm->nr_pages - first);
  for (uint64_t i = 0; i < count; i++) {
    uint64_t p = first + i;
    if (lost_bit(pm, p)) {
      pm->lost[p / 64] &= ~(1ull << (p % 64));
      pm->nr_lost--;
    }
    if (pm->phys && phys) pm->phys[p] = phys[i];
  }
  if (pm->phys && !phys) {
    physmap_forget(pm, "a repaired page's address could not be read");
    return 0;
  }
  return physmap_rebuild(pm);
}

/* ---- reading pagemap -------------------------------------------------------------------- */

uint64_t physmap_entry_phys(uint64_t entry) {
  if (!(entry & PHYSMAP_PM_PRESENT)) return 0;
  return (entry & PHYSMAP_PM_PFN_MASK) * osl_base_page_size();
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

int physmap_read(physmap_t *pm, int pagemap_fd, const void *base) {
  char why[160];
  int rc;
  if (pagemap_fd < 0) {
    snprintf(why, sizeof why, "/proc/self/pagemap is not open");
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
  bool hidden = false;
  for (uint64_t i = 0; i < pm->nr_pages;) {
    uint64_t cnt = pm->nr_pages - i < PAGEMAP_BATCH ? pm->nr_pages - i : PAGEMAP_BATCH;
    if (physmap_pagemap_read(pagemap_fd, base, pm->page_size, i, cnt, batch) != 0) {
      snprintf(why, sizeof why, "pread of /proc/self/pagemap: %s", strerror(errno));
      rc = PP_EOS;
      goto unknown;
    }
    for (uint64_t j = 0; j < cnt; j++, i++) {
      uint64_t e = batch[j];
      pm->phys[i] = physmap_entry_phys(e);
      if (!(e & PHYSMAP_PM_PRESENT))
        physmap_lose_page(pm, i);
      else if (pm->phys[i] == 0)
        hidden = true;
    }
  }
  if (hidden) {
    snprintf(why, sizeof why, "/proc/self/pagemap hides frame numbers (needs CAP_SYS_ADMIN)");
    rc = PP_ENOENT;
    goto unknown;
  }
  if (physmap_build_runs(pm) != 0) {
    snprintf(why, sizeof why, "no memory for the runs table");
    rc = PP_ENOPRIVMEM;
    goto unknown;
  }
  pm->why_unknown[0] = '\0';
  return 0;
unknown:
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
  if (!pm->phys || lost_bit(pm, offset / pm->page_size)) return PP_ENOENT;
  *ret_phys = pm->phys[offset / pm->page_size] + offset % pm->page_size;
  return 0;
}

/* Index of the run holding offset (a page not lost), by binary search over the sorted
 * runs. */
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

/* The run holding offset, whose page is not lost: one load through the per-page index,
 * else the search (which debug builds also run to cross-check the index). */
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
  if (lost_bit(pm, offset / pm->page_size)) return false;
  if (offset / pm->page_size == last / pm->page_size) return true;
  if (!pm->runs) return false;
  /* Runs hold no lost page: ending inside the starting run means none in between. */
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
  if (!pm->lost) return pp_corrupt(why, why_len, "no lost-page bitmap");
  uint64_t lost = 0;
  for (uint64_t p = 0; p < pm->nr_pages; p++)
    lost += lost_bit(pm, p);
  if (lost != pm->nr_lost)
    return pp_corrupt(why, why_len, "%" PRIu64 " pages marked lost, counted %" PRIu64, lost,
                      pm->nr_lost);
  if (!pm->phys != !pm->runs)
    return pp_corrupt(why, why_len, "phys and runs disagree on being known");
  if (!pm->phys) return 0;
  uint64_t size = pm->nr_pages * pm->page_size;
  uint64_t next = 0, largest = 0, covered = 0;
  for (size_t k = 0; k < pm->nr_runs; k++) {
    const physmap_run_t *run = &pm->runs[k];
    if (run->offset < next || run->offset % pm->page_size)
      return pp_corrupt(why, why_len, "run %zu starts at %" PRIu64 ", before %" PRIu64, k,
                        run->offset, next);
    if (run->length == 0 || run->length % pm->page_size)
      return pp_corrupt(why, why_len, "run %zu has length %" PRIu64, k, run->length);
    if (run->length > size - run->offset)
      return pp_corrupt(why, why_len, "run %zu runs past the region", k);
    for (uint64_t o = 0; o < run->length; o += pm->page_size) {
      uint64_t page = (run->offset + o) / pm->page_size;
      if (lost_bit(pm, page))
        return pp_corrupt(why, why_len, "lost page %" PRIu64 " lies in run %zu", page, k);
      if (pm->page_run && pm->page_run[page] != k)
        return pp_corrupt(why, why_len, "page %" PRIu64 " indexed to run %u, lies in run %zu",
                          page, pm->page_run[page], k);
      if (pm->phys[page] != run->phys + o)
        return pp_corrupt(why, why_len,
                          "page at offset %" PRIu64 " is not consecutive in run %zu",
                          run->offset + o, k);
    }
    if (k > 0 && run->offset == next &&
        run->phys == pm->runs[k - 1].phys + pm->runs[k - 1].length)
      return pp_corrupt(why, why_len, "runs %zu and %zu should be one", k - 1, k);
    if (run->length > largest) largest = run->length;
    covered += run->length;
    next = run->offset + run->length;
  }
  if (covered != (pm->nr_pages - pm->nr_lost) * pm->page_size)
    return pp_corrupt(why, why_len, "runs cover %" PRIu64 " bytes, %" PRIu64 " are not lost",
                      covered, (pm->nr_pages - pm->nr_lost) * pm->page_size);
  if (pm->page_run)
    for (uint64_t p = 0; p < pm->nr_pages; p++)
      if (lost_bit(pm, p) && pm->page_run[p] != PHYSMAP_NO_RUN)
        return pp_corrupt(why, why_len, "lost page %" PRIu64 " indexed to run %u", p,
                          pm->page_run[p]);
  if (largest != pm->largest_run)
    return pp_corrupt(why, why_len, "largest run %" PRIu64 " recorded as %" PRIu64, largest,
                      pm->largest_run);
  return 0;
}

/* ---- summaries (operators, Stats, pinpoold --probe) --------------------------------- */

static void stats_begin(physmap_run_stats_t *st, uint64_t page_size, bool known) {
  *st = (physmap_run_stats_t){.known = known, .page_size = page_size};
  if (!known) st->longest = page_size;
}

/* One more run of len bytes starting at phys, after a run that ended at prev_last (the
 * frame of its last page; has_prev false for the first run). */
static void stats_add(physmap_run_stats_t *st, uint64_t phys, uint64_t len, bool has_prev,
                      uint64_t prev_last) {
  uint64_t pages = len / st->page_size;
  unsigned k = 63u - (unsigned)__builtin_clzll(pages);
  if (k >= PHYSMAP_RUN_BUCKETS) k = PHYSMAP_RUN_BUCKETS - 1;
  st->buckets[k]++;
  if (k + 1 > st->nr_buckets) st->nr_buckets = k + 1;
  st->nr_runs++;
  st->pages += pages;
  if (len > st->longest) st->longest = len;
  if (has_prev && phys < prev_last) st->descents++;
}

void physmap_run_stats(const physmap_t *pm, physmap_run_stats_t *ret) {
  stats_begin(ret, pm->page_size, pm->runs != NULL);
  if (!pm->runs) return;
  for (size_t k = 0; k < pm->nr_runs; k++) {
    const physmap_run_t *prev = k ? &pm->runs[k - 1] : NULL;
    stats_add(ret, pm->runs[k].phys, pm->runs[k].length, prev != NULL,
              prev ? prev->phys + prev->length - pm->page_size : 0);
  }
}

void physmap_run_stats_of(const uint64_t *phys, uint64_t nr_pages, uint64_t page_size,
                          physmap_run_stats_t *ret) {
  stats_begin(ret, page_size, phys != NULL && page_size != 0);
  if (!ret->known) return;
  uint64_t start = 0; /* first page of the run being measured */
  for (uint64_t i = 1; i <= nr_pages; i++) {
    if (i < nr_pages && phys[i] == phys[i - 1] + page_size) continue;
    stats_add(ret, phys[start], (i - start) * page_size, start > 0,
              start > 0 ? phys[start - 1] : 0);
    start = i;
  }
}

/* ---- description (pinpoold --probe) ----------------------------------------------- */

#define DESCRIBE_RUNS 8 /* runs listed one by one; the histogram says the rest */

/* "1", "2-3", ..., "2^39+" : the page counts of bucket k. */
static void bucket_label(unsigned k, char *buf, size_t len) {
  uint64_t lo = physmap_bucket_min(k), hi = physmap_bucket_max(k);
  if (lo == hi)
    snprintf(buf, len, "%" PRIu64, lo);
  else if (hi == UINT64_MAX)
    snprintf(buf, len, "%" PRIu64 "+", lo);
  else
    snprintf(buf, len, "%" PRIu64 "-%" PRIu64, lo, hi);
}

/* "  what: N, largest X (P pages); pages out of physical order: D" */
static void describe_summary(const char *what, const physmap_run_stats_t *st, FILE *out) {
  char s1[32];
  uint64_t pages = st->longest / st->page_size;
  units_format_size(st->longest, s1, sizeof s1);
  fprintf(out,
          "  %s: %" PRIu64 ", largest %s (%" PRIu64 " page%s); pages out of physical order: "
          "%" PRIu64 "\n",
          what, st->nr_runs, s1, pages, pages == 1 ? "" : "s", st->descents);
}

void physmap_describe(const physmap_t *pm, bool stable, const physmap_run_stats_t *before,
                      FILE *out) {
  char s1[32], s2[32];
  if (pm->nr_lost) {
    units_format_size(pm->nr_lost * pm->page_size, s1, sizeof s1);
    fprintf(out, "  lost: %" PRIu64 " pages (%s) in %zu ranges no longer back the region\n",
            pm->nr_lost, s1, physmap_lost_ranges(pm, NULL, 0));
  }
  if (!pm->phys) {
    units_format_size(pm->page_size, s1, sizeof s1);
    fprintf(out, "  physical addresses: unknown (%s)\n", pm->why_unknown);
    fprintf(out, "  contiguous: only within one page (%s)\n", s1);
    return;
  }
  physmap_run_stats_t st;
  physmap_run_stats(pm, &st);
  if (before && (!before->known || before->page_size != st.page_size)) before = NULL;
  fprintf(out, "  physical addresses: readable (/proc/self/pagemap)%s\n",
          stable ? "" : "; 4 KiB pages may move under compaction");
  describe_summary("contiguous runs", &st, out);
  for (size_t k = 0; k < pm->nr_runs && k < DESCRIBE_RUNS; k++) {
    units_format_size(pm->runs[k].length, s2, sizeof s2);
    fprintf(out, "    offset %#14" PRIx64 "  phys %#14" PRIx64 "  %s\n", pm->runs[k].offset,
            pm->runs[k].phys, s2);
  }
  if (pm->nr_runs > DESCRIBE_RUNS)
    fprintf(out, "    ... %zu more\n", pm->nr_runs - DESCRIBE_RUNS);
  if (st.nr_runs == 0) return;
  unsigned nb = st.nr_buckets;
  if (before) {
    if (before->nr_buckets > nb) nb = before->nr_buckets;
    describe_summary("contiguous runs in the pool's order", before, out);
    fprintf(out, "  runs by length:   %12s %12s\n", "before", "after");
  } else {
    fprintf(out, "  runs by length:   %12s\n", "runs");
  }
  for (unsigned k = 0; k < nb; k++) {
    char label[48];
    bucket_label(k, label, sizeof label);
    strncat(label,
            physmap_bucket_min(k) == 1 && physmap_bucket_max(k) == 1 ? " page" : " pages",
            sizeof label - strlen(label) - 1);
    if (before)
      fprintf(out, "    %-14s %12" PRIu64 " %12" PRIu64 "\n", label, before->buckets[k],
              st.buckets[k]);
    else
      fprintf(out, "    %-14s %12" PRIu64 "\n", label, st.buckets[k]);
  }
}
