/*
 * pagesort.c — a hugetlb region's pages laid out in ascending physical order.
 *
 * Why.  The buddy grants a PP_CONTIGUOUS block larger than a page only where the region's
 * pages are physically consecutive (region_is_contiguous), and the hugepage pool hands
 * pages to a memfd in an order unrelated to their addresses: its free list is last-in,
 * first-out, so a pool that was just used comes back in the order it was freed — for a
 * region freed front to back, exactly descending.  256 pages faulted in in file order gave
 * 256 separate runs on a 6.18 VM, and every contiguous request above 2 MiB failed, although
 * the same pages, sorted, hold a run of 64.  DPDK sorts its hugepages
 * by physical address for the same reason (lib/eal/linux/eal_memory.c); DPDK remaps them,
 * we cannot (one memfd, offsets are what clients see), so we choose which page each offset
 * of the file gets.
 *
 * How.  hugetlb's per-node free list is a stack: a freed page is pushed on its head
 * (enqueue_hugetlb_folio) and an allocation takes the head (dequeue_hugetlb_folio_node_
 * exact).  So a page released immediately before a fault is the page that fault gets.
 * region_sort_pages, on a fresh region memfd that holds no page yet:
 *   1. checks that frame numbers are readable at all (a page of our own stack must show
 *      one in /proc/self/pagemap; without CAP_SYS_ADMIN it shows 0 and nothing changes)
 *      and that the pool has the region's pages free (free - resv);
 *   2. takes exactly the region's number of pages into a staging memfd (fallocate, in
 *      chunks logged for large regions) — never more: hugetlb's reservation accounting
 *      refuses pages promised to other mappings (resv_hugepages), and taking extra free
 *      pages, even briefly, could fail another process's fault;
 *   3. maps the staging memfd read-only (MAP_POPULATE maps the pages it already holds; no
 *      new page is touched), reads their frames from pagemap, unmaps it;
 *   4. sorts the pages by address and, for i = 0, 1, ...: punches the staging page holding
 *      the i-th lowest frame (it goes to the head of the free list) and at once fallocates
 *      page i of the region (which takes the head).  One page at a time, release then
 *      take: at no moment do we hold more than the region's pages, and a page is on the
 *      free list only for the instant between two system calls;
 *   5. closes the staging memfd.
 * The region's pages are then the very pages the pool would have given it, in ascending
 * order: runs as long as those pages allow, never longer (size the pool to the region; a
 * larger pool hands out only some of its pages).  Measured on a 6.18 VM with 256 free
 * 2 MiB pages, the pool reused: 256 runs of 1 page in the pool's order (exactly
 * descending); sorted, 117 runs, the longest 64 pages (128 MiB).  Cost: each page is
 * zeroed twice (when staged, and when the region takes it) — the whole region creation
 * took about 100 ms instead of 50 ms for 256 pages of 2 MiB, 175 ms instead of 110 ms for
 * 2 pages of 1 GiB; the summary line logs what it took.
 *
 * When the pool changes underneath.  Another process may fault a page in between our
 * release and our take.  If it had a reservation it may take our page, and ours gets the
 * next head: that page is out of order.  If it had none, the kernel's accounting leaves
 * nothing for us (we hold no reservation either), our fallocate fails with ENOSPC and the
 * sort stops: the staging memfd is closed, its pages go back, and the reserve's plain
 * fallocate takes the rest as the pool gives it — failing, as it would have without
 * sorting, when the pool is now short.  On a machine with several NUMA nodes a page of
 * another node may be passed over for a free page of the local node the same way.  Any of
 * this leaves the region merely less sorted, never wrong: physmap reads the frames the
 * region really got, and region_run_stats counts the pages out of order (descents).
 * Pages in ZONE_MOVABLE or CMA are migrated by the long-term pin (pin.c), which may undo
 * part of the order on machines with such zones; again the table records what happened.
 *
 * Failure.  Every system call goes through shm/osl.  A failure at any step is logged, the
 * staging memfd closed and its mapping removed (pages the region already took are the
 * region's), and the region is completed in the pool's order by the reserve: sorting is
 * best effort, like the pin and the table, and never fails a region that could be had
 * without it.  r->sort records the outcome (region_sort_info): done, incomplete and why,
 * the runs the pages had in the pool's order, the time it took.
 *
 * Not here: 4 KiB shmem pages (their placement is the page allocator's; contiguity above
 * 4 KiB stays a matter of chance), adopted regions (their pages hold data and are kept),
 * pages repaired after a punch (holes.c takes what the pool gives).
 *
 * Locks: none; runs once, during region_create, on the creating thread.
 *
 * References: mm/hugetlb.c (enqueue_hugetlb_folio, dequeue_hugetlb_folio_node_exact,
 * hugetlb_acct_memory); fallocate(2) FALLOC_FL_PUNCH_HOLE; Documentation/admin-guide/mm/
 * pagemap.rst and hugetlbpage.rst; DPDK lib/eal/linux/eal_memory.c (sort_by_physaddr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "debug.h"
#include "hugetlb.h"
#include "osl.h"
#include "physmap.h"
#include "region_priv.h"

#ifndef MFD_HUGE_SHIFT /* linux/memfd.h; glibc's sys/mman.h lacks it */
#define MFD_HUGE_SHIFT 26
#endif
#define SORT_NAME_MAX 240 /* bytes of the region's name kept in "<name>.sort" (memfd: 249) */

/* A staged page: its frame's address and where it sits in the staging memfd. */
typedef struct sort_page {
  uint64_t phys;
  uint64_t slot;
} sort_page_t;

/* The staging memfd and its mapping while they exist. */
typedef struct staging {
  int fd;
  void *map;
  uint64_t size;
} staging_t;

static int sort_page_cmp(const void *a, const void *b) {
  const sort_page_t *x = a, *y = b;
  return (x->phys > y->phys) - (x->phys < y->phys);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Does pagemap show this process frame numbers?  A page of our stack, in use now, must
 * be present; its frame reads 0 without CAP_SYS_ADMIN. */
static bool frames_readable(int pagemap_fd) {
  volatile uint64_t here = 1;
  uint64_t e = 0;
  if (physmap_pagemap_read(pagemap_fd, (const void *)&here, osl_base_page_size(), 0, 1, &e))
    return false;
  return physmap_entry_phys(e) != 0;
}

/* Unmap and close whatever of the staging memfd exists: its remaining pages go back to
 * the pool. */
static void staging_release(staging_t *s, const region_log_t *log) {
  if (s->map && osl_munmap(s->map, s->size) != 0)
    region_logf(log, LOG_WARNING, "sorting hugepages: munmap of the staging memfd: %s",
                strerror(errno));
  s->map = NULL;
  if (s->fd >= 0) osl_close(s->fd);
  s->fd = -1;
}

/* Step 2: a staging memfd holding nr_pages pages.  0, or -1 with why written. */
static int staging_take(region_t *r, staging_t *s, const char *name, const region_log_t *log,
                        uint64_t chunk, bool chatty, char *why, size_t why_len) {
  char sname[SORT_NAME_MAX + 8], s1[32], s2[32];
  snprintf(sname, sizeof sname, "%.*s.sort", SORT_NAME_MAX, name);
  unsigned flags =
      MFD_CLOEXEC | MFD_HUGETLB | ((unsigned)__builtin_ctzll(r->page_size) << MFD_HUGE_SHIFT);
  s->fd = osl_memfd_create(sname, flags);
  if (s->fd < 0) {
    snprintf(why, why_len, "memfd_create of the staging memfd: %s", strerror(errno));
    return -1;
  }
  if (osl_ftruncate(s->fd, s->size) != 0) {
    snprintf(why, why_len, "ftruncate of the staging memfd: %s", strerror(errno));
    return -1;
  }
  for (uint64_t off = 0; off < s->size; off += chunk) {
    uint64_t len = s->size - off < chunk ? s->size - off : chunk;
    if (osl_fallocate(s->fd, 0, off, len) != 0) {
      snprintf(why, why_len, "fallocate of the staging memfd at %s: %s",
               region_fmt_size(off, s1), strerror(errno));
      return -1;
    }
    if (chatty)
      region_logf(log, LOG_INFO, "sorting hugepages: staged %s of %s (%u%%)",
                  region_fmt_size(off + len, s1), region_fmt_size(s->size, s2),
                  (unsigned)((off + len) * 100 / s->size));
  }
  return 0;
}

/* Step 3: the staged pages' frames, in staging order, into phys.  0, or -1 with why. */
static int staging_read(region_t *r, staging_t *s, uint64_t *phys, const region_log_t *log,
                        char *why, size_t why_len) {
  s->map = osl_mmap(NULL, s->size, PROT_READ, MAP_SHARED | MAP_POPULATE, s->fd, 0);
  if (s->map == MAP_FAILED) {
    s->map = NULL;
    snprintf(why, why_len, "mmap of the staging memfd: %s", strerror(errno));
    return -1;
  }
  if (physmap_pagemap_read(r->pagemap_fd, s->map, r->page_size, 0, r->nr_pages, phys) != 0) {
    snprintf(why, why_len, "pread of /proc/self/pagemap: %s", strerror(errno));
    return -1;
  }
  for (uint64_t i = 0; i < r->nr_pages; i++) {
    phys[i] = physmap_entry_phys(phys[i]);
    if (phys[i] == 0) {
      snprintf(why, why_len, "staging page %" PRIu64 " shows no frame in pagemap", i);
      return -1;
    }
  }
  /* Unmapped now so that the punches below need not unmap; should that fail, the punches
   * empty the mapping all the same and staging_release tries again. */
  if (osl_munmap(s->map, s->size) == 0)
    s->map = NULL;
  else
    region_logf(log, LOG_WARNING, "sorting hugepages: munmap of the staging memfd: %s",
                strerror(errno));
  return 0;
}

/* Step 4: release the staged pages lowest frame first, each straight into the next page
 * of the region.  Returns the pages placed; why is written when that is fewer than all. */
static uint64_t place_in_order(region_t *r, staging_t *s, const sort_page_t *order,
                               const region_log_t *log, uint64_t chunk_pages, bool chatty,
                               char *why, size_t why_len) {
  const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  char s1[32], s2[32];
  uint64_t i;
  for (i = 0; i < r->nr_pages; i++) {
    if (osl_fallocate(s->fd, punch, order[i].slot * r->page_size, r->page_size) != 0) {
      snprintf(why, why_len, "fallocate(PUNCH_HOLE) of a staging page: %s", strerror(errno));
      break;
    }
    if (osl_fallocate(r->fd, 0, i * r->page_size, r->page_size) != 0) {
      int err = errno;
      snprintf(why, why_len, "fallocate of region page %" PRIu64 ": %s%s", i, strerror(err),
               err == ENOSPC ? " (another process took the page released for it)" : "");
      break;
    }
    if (chatty && ((i + 1) % chunk_pages == 0 || i + 1 == r->nr_pages))
      region_logf(log, LOG_INFO, "sorting hugepages: placed %s of %s (%u%%)",
                  region_fmt_size((i + 1) * r->page_size, s1), region_fmt_size(r->size, s2),
                  (unsigned)((i + 1) * 100 / r->nr_pages));
  }
  return i;
}

void region_sort_pages(region_t *r, const char *name, const region_log_t *log,
                       const region_tuning_t *t) {
  PP_ASSERT(r->hugepages && r->fd >= 0 && !r->base);
  region_sort_info_t *si = &r->sort;
  uint64_t start = now_ns();
  *si = (region_sort_info_t){.state = REGION_SORT_INCOMPLETE};
  physmap_run_stats_of(NULL, 0, r->page_size, &si->before);

  if (region_pagemap(r) < 0) {
    si->state = REGION_SORT_UNKNOWN;
    snprintf(si->why, sizeof si->why, "cannot open /proc/self/pagemap: %s", strerror(errno));
    return;
  }
  if (!frames_readable(r->pagemap_fd)) {
    si->state = REGION_SORT_UNKNOWN;
    snprintf(si->why, sizeof si->why,
             "/proc/self/pagemap hides frame numbers (needs CAP_SYS_ADMIN)");
    return;
  }
  hugetlb_info_t hp[HUGETLB_MAX_SIZES];
  int nhp = hugetlb_sizes(hp, HUGETLB_MAX_SIZES);
  const hugetlb_info_t *h = nhp > 0 ? hugetlb_find(hp, (size_t)nhp, r->page_size) : NULL;
  if (h && hugetlb_available(h) < r->nr_pages) {
    /* The reserve will fail and say so; staging would only take pages for nothing. */
    snprintf(si->why, sizeof si->why,
             "the pool has %" PRIu64 " pages available, the region needs %" PRIu64,
             hugetlb_available(h), r->nr_pages);
    return;
  }

  uint64_t above = t && t->populate_above ? t->populate_above : REGION_POPULATE_ABOVE;
  uint64_t chunk = t && t->populate_chunk ? t->populate_chunk : REGION_POPULATE_CHUNK;
  uint64_t chunk_pages = chunk / r->page_size ? chunk / r->page_size : 1;
  chunk = chunk_pages * r->page_size;
  bool chatty = r->size > above;
  staging_t s = {.fd = -1, .size = r->size};
  uint64_t *phys = malloc(r->nr_pages * sizeof *phys);
  sort_page_t *order = malloc(r->nr_pages * sizeof *order);
  if (!phys || !order) {
    snprintf(si->why, sizeof si->why, "no memory for a table of %" PRIu64 " pages",
             r->nr_pages);
    goto out;
  }
  if (chatty)
    region_logf(log, LOG_INFO,
                "sorting %" PRIu64 " hugepages by physical address (each is zeroed twice)",
                r->nr_pages);
  if (staging_take(r, &s, name, log, chunk, chatty, si->why, sizeof si->why) != 0) goto out;
  if (staging_read(r, &s, phys, log, si->why, sizeof si->why) != 0) goto out;
  physmap_run_stats_of(phys, r->nr_pages, r->page_size, &si->before);
  for (uint64_t i = 0; i < r->nr_pages; i++)
    order[i] = (sort_page_t){.phys = phys[i], .slot = i};
  qsort(order, r->nr_pages, sizeof *order, sort_page_cmp);
  si->placed = place_in_order(r, &s, order, log, chunk_pages, chatty, si->why, sizeof si->why);
  if (si->placed == r->nr_pages) si->state = REGION_SORT_DONE;
out:
  staging_release(&s, log);
  free(order);
  free(phys);
  si->elapsed_ns = now_ns() - start;
  if (si->state == REGION_SORT_INCOMPLETE && si->before.known)
    region_logf(log, LOG_WARNING,
                "sorting hugepages stopped after %" PRIu64 " of %" PRIu64
                " pages (%s); the rest come in the pool's order",
                si->placed, r->nr_pages, si->why);
  else if (si->state == REGION_SORT_INCOMPLETE)
    region_logf(log, LOG_NOTICE, "hugepages not sorted: %s", si->why);
}
