/*
 * region.h — the shared region: one sealed memfd, hugepage-backed when possible,
 * reserved up front, mapped and populated once, its pages held by a long-term pin, with
 * the physical address of each page recorded when /proc/self/pagemap gives it.
 * Everything the allocators hand out is an offset into this region.  A client that
 * punches pages out of the memfd cannot take them from us: the region finds the holes,
 * repairs them and never reports an address it lost.  See region.c for the essay; the
 * page-size policy lives in hugetlb.c, the physical-address table in physmap.c, the pins
 * in pin.c, holes in holes.c, the layout of hugepages in physical order in pagesort.c.
 */
#ifndef PP_REGION_H
#define PP_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "hugetlb.h"
#include "physmap.h"
#include "pinpool_err.h"

typedef enum region_page_policy {
  REGION_PAGE_AUTO = 0, /* largest hugepage size with enough free pages, else 4 KiB + warning */
  REGION_PAGE_4K,
  REGION_PAGE_2M,
  REGION_PAGE_1G,
} region_page_policy_t;

typedef struct region_config {
  uint64_t size; /* bytes; rounded up to a multiple of the chosen page size */
  region_page_policy_t policy;
  const char *name; /* memfd name (shows in /proc/PID/fd); NULL = "pinpool" */
  void (*log)(void *ctx, int level, const char *msg); /* syslog levels; NULL = stderr */
  void *log_ctx;      /* log and log_ctx are kept: scans, repairs and region_zero log through
                         them too, so they must outlive the region */
  bool no_sort;       /* hugepages: keep the order the pool hands pages out in instead of laying
                         them out in ascending physical order (for comparison; default false:
                         sort whenever physical addresses are readable; see region_sort_info) */
  bool bind_node;     /* region_create: every page from NUMA node numa_node (MPOL_BIND while
                         the pages are reserved and populated); PP_EOS when it cannot be */
  unsigned numa_node; /* (set_mempolicy fails, or the node has too few pages: the reserve
                         fails as a short pool does) */
} region_config_t;

/* One hugepage size and its pool (shm/hugetlb.h). */
typedef hugetlb_info_t region_hugepage_info_t;

/* A run of physically consecutive pages: [offset, offset+length) maps to [phys, phys+length)
 * (shm/physmap.h). */
typedef physmap_run_t region_run_t;

/* A range of the region: [offset, offset+length) (shm/physmap.h). */
typedef physmap_range_t region_range_t;

/* The runs summarised for an operator (shm/physmap.h): known, page_size, pages, nr_runs,
 * longest (bytes), descents (pages out of physical order), and buckets[k] = the number of
 * runs of 2^k .. 2^(k+1)-1 pages for k < nr_buckets (REGION_RUN_BUCKETS in all). */
typedef physmap_run_stats_t region_run_stats_t;
#define REGION_RUN_BUCKETS PHYSMAP_RUN_BUCKETS

/* What became of the hugepage sort at creation (region_sort_info). */
typedef enum region_sort_state {
  REGION_SORT_OFF = 0,    /* turned off (region_config_t.no_sort), or a table-only region */
  REGION_SORT_NOT_HUGE,   /* 4 KiB pages: their order is the page allocator's, not ours */
  REGION_SORT_ADOPTED,    /* an adopted memfd: its pages and contents are kept as they are */
  REGION_SORT_UNKNOWN,    /* physical addresses unreadable (no CAP_SYS_ADMIN): nothing to
                             sort by, the pool's order is kept */
  REGION_SORT_INCOMPLETE, /* placed < all pages: the pool was too short to stage them, a
                             call failed, or the pool changed underneath; the rest came in
                             the pool's order (why says which) */
  REGION_SORT_DONE,       /* every page was faulted in in ascending physical order */
} region_sort_state_t;

typedef struct region_sort_info {
  region_sort_state_t state;
  uint64_t placed;           /* pages faulted in in physical order */
  uint64_t elapsed_ns;       /* what sorting added to the start-up (staging, reading the
                                frames, placing); 0 when it did not run */
  region_run_stats_t before; /* the runs of the same pages in the order the pool gave them
                                (what the region would have had unsorted); known only when
                                the frames were read (DONE, and INCOMPLETE after that) */
  char why[160];             /* INCOMPLETE and UNKNOWN: why; else "" */
} region_sort_info_t;

typedef struct region region_t;

/* Parse "auto", "4K", "2M", "1G" (case-insensitive). */
int region_parse_policy(const char *s, region_page_policy_t *ret);
const char *region_policy_name(region_page_policy_t p);

/* Fill up to n entries with the hugepage sizes this kernel offers, smallest first;
 * returns how many (hugetlb_sizes). */
int region_hugepage_sizes(region_hugepage_info_t *out, size_t n);

/* Create, reserve (ftruncate + fallocate, hugepages in ascending physical order when the
 * frames are readable and cfg->no_sort is false), seal, map with MAP_POPULATE, pin, read
 * pagemap.
 * Errors: PP_EINVAL (bad size/policy), PP_ENOHUGE (explicit size unavailable or the pool
 * too short; the log says how many pages were needed and free, and the sysctl that fixes
 * it), PP_EOS (another OS failure; the log names the call and errno), PP_ENOPRIVMEM.
 * The long-term pin and the addresses are best effort: without them the region works,
 * the log says why (a warning for the pin) and region_describe shows it.  *ret untouched
 * on failure; nothing leaks. */
int region_create(const region_config_t *cfg, region_t **ret);
/* Take over an existing region memfd (after a restart, from systemd's fd store): check
 * that it is a sealed memfd whose size cannot change, reserve (fallocate: holes punched
 * while no daemon held it are filled), map and pin it as region_create does; its contents
 * are kept.  The previous daemon's pins died with it.  cfg->size 0 and REGION_PAGE_AUTO accept
 * what the fd has; other values must match it (PP_EINVAL otherwise).  On success the
 * region owns fd (region_destroy closes it); on failure fd is left open to the caller. */
int region_adopt(int fd, const region_config_t *cfg, region_t **ret);
void region_destroy(region_t *r);

int region_fd(const region_t *r);
void *region_base(const region_t *r);
uint64_t region_size(const region_t *r);
uint64_t region_page_size(const region_t *r);
bool region_hugepages(const region_t *r);
bool region_phys_known(const region_t *r);

/* Physical address of the byte at offset; PP_ENOENT when unknown or the page is lost,
 * PP_ERANGE when out of the region. */
int region_phys(const region_t *r, uint64_t offset, uint64_t *ret_phys);
/* True when [offset, offset+len) is physically contiguous: no page of it lost, and within
 * one page, or spanning pages whose physical addresses are known and consecutive. */
bool region_is_contiguous(const region_t *r, uint64_t offset, uint64_t len);
/* The physically contiguous runs (lost pages are in none); fills up to n, returns the
 * total count (0 when unknown).  A copy is stale once region_generation() moves. */
size_t region_runs(const region_t *r, region_run_t *out, size_t n);
/* Length of the longest run (the page size when addresses are unknown). */
uint64_t region_largest_run(const region_t *r);
/* The runs summarised: their number, the longest, the histogram of lengths in pages and
 * how many pages are out of physical order (O(runs)).  With addresses unknown, known is
 * false, nr_runs 0 and longest one page.  0, or PP_EINVAL for NULL arguments.  Stale once
 * region_generation() moves, like region_runs. */
int region_run_stats(const region_t *r, region_run_stats_t *ret);
/* How the hugepages were laid out at creation: sorted by physical address, or why not,
 * with the runs they would have had unsorted and the time it took.  0, or PP_EINVAL. */
int region_sort_info(const region_t *r, region_sort_info_t *ret);
/* "off", "4 KiB pages", "adopted", "addresses unknown", "incomplete", "done". */
const char *region_sort_state_name(region_sort_state_t s);

/* ---- a region no client can un-pin -------------------------------------------------
 * Every client holds the memfd read-write and can punch holes in it.  The functions below
 * change the region's table (lost pages, addresses, runs); call them from the thread that
 * owns the region (pinpoold's loop), never concurrently with each other or with the
 * queries above.  region_phys/region_runs/region_is_contiguous never describe a lost page.
 */

/* True when every page is held by a long-term pin (io_uring fixed buffers), so a punched
 * page stays allocated to us; false when pinning could not be had. */
bool region_pinned(const region_t *r);
/* "" when pinned; else why not and the fix (io_uring disabled, RLIMIT_MEMLOCK, ...). */
const char *region_pin_status(const region_t *r);
/* Bumped whenever addresses, runs or lost pages change: refresh copies of region_runs(). */
uint64_t region_generation(const region_t *r);

/* Find pages that no longer back the region as recorded — not present in our mapping any
 * more (punched), or present at another physical address (punched and faulted in again) —
 * and mark them lost.  Then call cb (may be NULL) once per maximal lost range, old and
 * new, in offset order, and return how many there are (>= 0).  PP_EOS when
 * /proc/self/pagemap cannot be read (nothing changed), PP_EINVAL for a table-only region.
 * Cost: one pread per 512 4 KiB pages or per hugepage (1 GiB: ~0.4 ms with 2 MiB pages,
 * ~17 ms with 4 KiB pages). */
int region_scan_holes(region_t *r, void (*cb)(void *ctx, uint64_t offset, uint64_t len),
                      void *ctx);
/* The same check for the pages of [offset, offset+len) only: O(pages of the range), one
 * pread per 512 4 KiB pages or per hugepage — cheap enough to run on a block before its
 * physical addresses are reported.  Marks lost the pages no longer backing the region and
 * returns how many were newly lost (>= 0; pages already lost are not counted).  PP_EOS
 * when /proc/self/pagemap cannot be read (nothing changed), PP_ERANGE outside the region,
 * PP_EINVAL for a table-only region. */
int region_check_range(region_t *r, uint64_t offset, uint64_t len);
/* Back the lost pages of [offset, offset+len) again: fallocate, fault in through our
 * mapping, pin in fresh slots (the punched pages keep their pins), re-read the addresses.
 * Repaired pages are no longer lost and may have new addresses (the generation moves).
 * 0 when no page of the range is lost any more; else the first failure, its pages still
 * lost: PP_ENOHUGE (the hugepage pool has no page for it), PP_EQUOTA (the pin budget —
 * twice the region — or the pin slots are spent), PP_EOS (another failure; logged),
 * PP_ENOPRIVMEM.  Never SIGBUS.  PP_ERANGE outside the region. */
int region_repair(region_t *r, uint64_t offset, uint64_t len);
/* The lost ranges, in offset order; fills up to n, returns the total count. */
size_t region_lost(const region_t *r, region_range_t *out, size_t n);
uint64_t region_lost_bytes(const region_t *r);
/* Bytes of the lost pages that overlap [offset, offset+len) (whole pages; the range is
 * clipped to the region).  0 at once when no page is lost, else O(pages of the range). */
uint64_t region_lost_in(const region_t *r, uint64_t offset, uint64_t len);

/* memset(base + offset, 0, len) that cannot kill the process: 0 when the range was zeroed
 * in the pages the table records.  PP_EOS, with nothing written past the missing page,
 * when a page of the range is lost, is found punched (before or after the write; it is
 * then marked lost), or the write hit SIGBUS (a hugetlb page punched with no page left to
 * replace it).  PP_ERANGE outside the region, PP_EINVAL for a table-only region.  Costs
 * two pagemap reads of the range around the memset.  Installs a process-wide SIGBUS
 * handler the first time (memguard.h: chains to the one installed before). */
int region_zero(region_t *r, uint64_t offset, uint64_t len);

/* Print what `pinpoold --probe` prints. */
void region_describe(const region_t *r, FILE *out);

#endif /* PP_REGION_H */
