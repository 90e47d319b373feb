/*
 * region.c — the shared region: one sealed memfd, hugepage-backed when possible,
 * reserved up front, mapped and populated once, its physical addresses recorded.
 *
 * What it does.  region_create() makes the memory every pinpool allocator carves up:
 *   1. Page size.  The policy (auto | 4K | 2M | 1G) picks the page size from what
 *      /sys/kernel/mm/hugepages offers (region_choose_page): auto takes the largest
 *      hugepage size, not larger than the region, whose free and unreserved pages cover
 *      the region, else 4 KiB pages with a warning that names the sysctl that fixes it.
 *      An explicit hugepage size the kernel does not offer is PP_ENOHUGE: an operator
 *      who asked for 1 GiB pages wants to know, not to get 4 KiB ones.  The size is
 *      rounded up to a multiple of the page size (any multiple: not a power of two).
 *   2. memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING [| MFD_HUGETLB | size bits]).
 *   3. ftruncate, then fallocate: every page is taken from the pool now, so a short
 *      hugepage pool fails here with ENOSPC — reported with the pages needed, the pages
 *      free and the sysctl that fixes it — and never as a SIGBUS in a client later.
 *   4. Seals F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL: clients receive this fd; none of
 *      them can shrink it under the daemon (which would SIGBUS everyone) or grow it.
 *   5. mmap(MAP_SHARED | MAP_POPULATE).  Regions above REGION_POPULATE_ABOVE are mapped
 *      without populating, then populated chunk by chunk (MADV_POPULATE_WRITE, or on
 *      kernels before 5.14 MAP_FIXED | MAP_POPULATE over the same range), each chunk
 *      logged, so a long start-up shows progress.
 *   6. Pinning.  4 KiB pages are mlock()ed (a warning names the limit when that fails).
 *      Hugetlb pages are not: they are never swapped, so mlock would only charge
 *      RLIMIT_MEMLOCK and fail for large regions without pinning anything more.
 *   7. Physical addresses.  /proc/self/pagemap gives each page's frame number when we
 *      hold CAP_SYS_ADMIN (else zeros since Linux 4.2).  We read one entry per region
 *      page into a private table and derive the runs of physically consecutive pages;
 *      when any entry is missing the whole table is "unknown" (all-or-nothing keeps the
 *      queries honest).
 * region_adopt() takes over an existing memfd (systemd's fd store, after a restart) and
 * shares steps 3 and 5-7 with creation (region_reserve, region_map).
 *
 * Invariants (region_check, run under PP_DEBUG=3 after the table is built):
 *   - size is a non-zero multiple of page_size; nr_pages = size / page_size;
 *   - phys and runs are both NULL (unknown) or both set;
 *   - runs are sorted by offset, adjacent, cover [0, size) exactly, each run's pages are
 *     physically consecutive, and no run could be extended into the next (maximal).
 *
 * Physical addresses are a snapshot.  Hugetlb pages in use stay put in practice (only
 * memory offlining or alloc_contig_range migrates them); 4 KiB pages can be migrated by
 * compaction even when mlocked unless vm.compact_unevictable_allowed=0.  DPDK's EAL makes
 * the same bet; region_describe() says which one a region makes.
 *
 * Memory: the region struct, the phys table (8 bytes a page), the runs and the per-page
 * run index (4 bytes a page, for O(1) contiguity queries) are private (malloc) memory;
 * nothing about the region lives inside it.  Locks: none.  After creation a region is
 * immutable, so every query is safe from any thread; create/adopt/destroy are not
 * concurrent with queries on the same region by contract.
 *
 * References: memfd_create(2), fcntl(2) "File seals", Documentation/admin-guide/mm/
 * hugetlbpage.rst and pagemap.rst in the Linux tree; DPDK lib/eal/linux/eal_memory.c
 * (the same pagemap walk).
 */
#define _GNU_SOURCE
#include "region.h"
#include "region_internal.h"
#include "units.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <syslog.h>
#include <unistd.h>

#include "debug.h"
#include "osl.h"

#ifndef MFD_HUGE_SHIFT /* linux/memfd.h; glibc's sys/mman.h lacks it */
#define MFD_HUGE_SHIFT 26
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

#define REGION_SYSFS_HUGEPAGES "/sys/kernel/mm/hugepages"
#define REGION_MAX_HUGEPAGE_SIZES 16
#define REGION_MAX_SIZE (1ull << 46) /* 64 TiB: far beyond any machine, and no overflow */
#define REGION_MAX_NAME 249          /* memfd_create(2): 249 bytes after its "memfd:" prefix */
#define REGION_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define PAGEMAP_PRESENT (1ull << 63)
#define PAGEMAP_PFN_MASK ((1ull << 55) - 1)
#define PAGEMAP_BATCH 512u /* entries per pread in 4 KiB mode: one 4 KiB buffer */

struct region {
  int fd;        /* the memfd; -1 for a table-only region (region_from_phys) */
  void *base;    /* the mapping; NULL for a table-only region */
  uint64_t size; /* bytes, a non-zero multiple of page_size */
  uint64_t page_size;
  uint64_t nr_pages;
  bool hugepages;     /* hugetlb-backed */
  bool mlocked;       /* 4 KiB mode: mlock() succeeded */
  bool adopted;       /* came from region_adopt() */
  int seals;          /* F_GET_SEALS after sealing */
  uint64_t *phys;     /* nr_pages physical addresses; NULL when unknown */
  region_run_t *runs; /* maximal runs, sorted by offset; NULL when unknown */
  size_t nr_runs;
  uint32_t *page_run;    /* each page's index in runs: O(1) region_is_contiguous; NULL when
                            unknown, or when it cannot be had (binary search instead) */
  uint64_t largest_run;  /* bytes; page_size when unknown */
  char why_unknown[160]; /* why phys is NULL, for region_describe() */
};

/* The log sink of one create/adopt call. */
typedef struct region_log {
  void (*fn)(void *ctx, int level, const char *msg);
  void *ctx;
} region_log_t;

static void region_logf(const region_log_t *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void region_logf(const region_log_t *log, int level, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (log->fn) {
    log->fn(log->ctx, level, msg);
    return;
  }
  if (level >= LOG_DEBUG) return;
  const char *tag = level <= LOG_ERR ? "error" : level == LOG_WARNING ? "warning" : "info";
  fprintf(stderr, "pinpool region: %s: %s\n", tag, msg);
}

/* ---- sizes and policies ----------------------------------------------------------- */

/* For log lines: a static-buffer-free formatter (each call site gives its buffer). */
static const char *fmt_size(uint64_t bytes, char buf[32]) {
  units_format_size(bytes, buf, 32);
  return buf;
}

int region_parse_policy(const char *s, region_page_policy_t *ret) {
  if (!s || !ret) return PP_EINVAL;
  if (!strcasecmp(s, "auto")) {
    *ret = REGION_PAGE_AUTO;
    return 0;
  }
  uint64_t v;
  if (units_parse_size(s, &v) != 0) return PP_EINVAL;
  switch (v) {
  case 4ull << 10: *ret = REGION_PAGE_4K; return 0;
  case 2ull << 20: *ret = REGION_PAGE_2M; return 0;
  case 1ull << 30: *ret = REGION_PAGE_1G; return 0;
  default: return PP_EINVAL;
  }
}

const char *region_policy_name(region_page_policy_t p) {
  switch (p) {
  case REGION_PAGE_AUTO: return "auto";
  case REGION_PAGE_4K: return "4K";
  case REGION_PAGE_2M: return "2M";
  case REGION_PAGE_1G: return "1G";
  }
  return "?";
}

/* ---- what the kernel offers ------------------------------------------------------- */

/* Read a small decimal file (sysfs); -1 when it cannot be read or parsed. */
static int read_u64_file(const char *path, uint64_t *ret) {
  char buf[32];
  int fd = osl_open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = osl_pread(fd, buf, sizeof buf - 1, 0);
  osl_close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  char *end;
  errno = 0;
  unsigned long long v = strtoull(buf, &end, 10);
  if (errno || end == buf) return -1;
  *ret = v;
  return 0;
}

static int hugepage_info_cmp(const void *a, const void *b) {
  const region_hugepage_info_t *x = a, *y = b;
  return (x->page_size > y->page_size) - (x->page_size < y->page_size);
}

int region_hugepage_sizes_at(const char *root, region_hugepage_info_t *out, size_t n) {
  if (!root || (!out && n)) return PP_EINVAL;
  region_hugepage_info_t found[REGION_MAX_HUGEPAGE_SIZES];
  size_t nr = 0;
  DIR *d = opendir(root);
  if (!d) return 0; /* no hugetlbfs in this kernel: no sizes */
  struct dirent *e;
  while ((e = readdir(d)) && nr < REGION_MAX_HUGEPAGE_SIZES) {
    unsigned long long kb;
    char tail;
    if (sscanf(e->d_name, "hugepages-%llukB%c", &kb, &tail) != 1 || kb == 0) continue;
    region_hugepage_info_t *h = &found[nr++];
    *h = (region_hugepage_info_t){.page_size = (uint64_t)kb << 10};
    /* An unreadable count reads as 0: auto then passes this size over, and an explicit
     * request still gets fallocate's authoritative answer. */
    char path[512];
    snprintf(path, sizeof path, "%s/%s/nr_hugepages", root, e->d_name);
    if (read_u64_file(path, &h->total_pages) != 0) h->total_pages = 0;
    snprintf(path, sizeof path, "%s/%s/free_hugepages", root, e->d_name);
    if (read_u64_file(path, &h->free_pages) != 0) h->free_pages = 0;
    snprintf(path, sizeof path, "%s/%s/resv_hugepages", root, e->d_name);
    if (read_u64_file(path, &h->resv_pages) != 0) h->resv_pages = 0;
  }
  closedir(d);
  qsort(found, nr, sizeof found[0], hugepage_info_cmp);
  size_t k = nr < n ? nr : n;
  if (k) memcpy(out, found, k * sizeof found[0]);
  return (int)k;
}

int region_hugepage_sizes(region_hugepage_info_t *out, size_t n) {
  return region_hugepage_sizes_at(REGION_SYSFS_HUGEPAGES, out, n);
}

static uint64_t hp_available(const region_hugepage_info_t *h) {
  return h->free_pages > h->resv_pages ? h->free_pages - h->resv_pages : 0;
}

static uint64_t div_round_up(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}

int region_choose_page(region_page_policy_t policy, uint64_t size,
                       const region_hugepage_info_t *hp, size_t n, uint64_t *ret_page_size) {
  if (!ret_page_size || (!hp && n) || size == 0) return PP_EINVAL;
  uint64_t want;
  switch (policy) {
  case REGION_PAGE_4K: *ret_page_size = osl_base_page_size(); return 0;
  case REGION_PAGE_2M: want = 2ull << 20; break;
  case REGION_PAGE_1G: want = 1ull << 30; break;
  case REGION_PAGE_AUTO:
    for (size_t i = n; i-- > 0;) {
      if (hp[i].page_size > size) continue; /* a 64 MiB region must not become 1 GiB */
      if (hp_available(&hp[i]) >= div_round_up(size, hp[i].page_size)) {
        *ret_page_size = hp[i].page_size;
        return 0;
      }
    }
    *ret_page_size = osl_base_page_size();
    return 0;
  default: return PP_EINVAL;
  }
  for (size_t i = 0; i < n; i++)
    if (hp[i].page_size == want) {
      *ret_page_size = want;
      return 0;
    }
  return PP_ENOHUGE;
}

/* The page size `sysctl vm.nr_hugepages` sets (Hugepagesize in /proc/meminfo); 0 if
 * unknown. */
static uint64_t default_hugepage_size(void) {
  char buf[4096];
  int fd = osl_open("/proc/meminfo", O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = osl_pread(fd, buf, sizeof buf - 1, 0);
  osl_close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char *p = strstr(buf, "Hugepagesize:");
  unsigned long long kb;
  if (!p || sscanf(p, "Hugepagesize: %llu kB", &kb) != 1) return 0;
  return (uint64_t)kb << 10;
}

/* The command that grows the pool of page_size pages so that `needed` more are free. */
static void hugepage_pool_fix(uint64_t page_size, uint64_t needed,
                              const region_hugepage_info_t *h, char *buf, size_t len) {
  uint64_t avail = h ? hp_available(h) : 0;
  uint64_t target = (h ? h->total_pages : 0) + (needed > avail ? needed - avail : 0);
  if (page_size == default_hugepage_size())
    snprintf(buf, len, "sysctl vm.nr_hugepages=%" PRIu64, target);
  else
    snprintf(buf, len,
             "echo %" PRIu64 " > " REGION_SYSFS_HUGEPAGES "/hugepages-%" PRIu64
             "kB/nr_hugepages (1 GiB pages may need hugepagesz=1G hugepages=%" PRIu64
             " on the kernel command line)",
             target, page_size >> 10, target);
}

static const region_hugepage_info_t *hp_find(const region_hugepage_info_t *hp, size_t n,
                                             uint64_t page_size) {
  for (size_t i = 0; i < n; i++)
    if (hp[i].page_size == page_size) return &hp[i];
  return NULL;
}

/* Auto fell back to 4 KiB pages: say what that costs and what would have avoided it. */
static void warn_fallback(const region_log_t *log, uint64_t size,
                          const region_hugepage_info_t *hp, size_t n) {
  char s1[32], s2[32], fix[256];
  /* Suggest the default hugepage size when it fits the region, else the largest that does. */
  const region_hugepage_info_t *h = hp_find(hp, n, default_hugepage_size());
  if (!h || h->page_size > size) {
    h = NULL;
    for (size_t i = n; i-- > 0;)
      if (hp[i].page_size <= size) {
        h = &hp[i];
        break;
      }
  }
  if (!h) {
    region_logf(log, n ? LOG_NOTICE : LOG_WARNING,
                "using 4 KiB pages: %s; blocks above 4 KiB are physically contiguous only "
                "by chance",
                n ? "the region is smaller than any hugepage"
                  : "this kernel offers no hugepages (CONFIG_HUGETLBFS)");
    return;
  }
  uint64_t needed = div_round_up(size, h->page_size);
  hugepage_pool_fix(h->page_size, needed, h, fix, sizeof fix);
  region_logf(log, LOG_WARNING,
              "no hugepages for a %s region (%" PRIu64 " pages of %s needed, %" PRIu64
              " free); using 4 KiB pages, physically contiguous only by chance above 4 KiB. "
              "Fix: %s",
              fmt_size(size, s1), needed, fmt_size(h->page_size, s2), hp_available(h), fix);
}

/* ---- the physical-address table --------------------------------------------------- */

static void region_drop_phys(region_t *r, const char *why) {
  free(r->phys);
  free(r->runs);
  free(r->page_run);
  r->phys = NULL;
  r->runs = NULL;
  r->page_run = NULL;
  r->nr_runs = 0;
  r->largest_run = r->page_size;
  snprintf(r->why_unknown, sizeof r->why_unknown, "%s", why);
}

/* From r->phys, build the maximal runs of physically consecutive pages.  0 or PP_ENOMEM. */
static int region_build_runs(region_t *r) {
  PP_ASSERT(r->phys && r->nr_pages > 0);
  size_t nr = 1;
  for (uint64_t i = 1; i < r->nr_pages; i++)
    if (r->phys[i] != r->phys[i - 1] + r->page_size) nr++;
  region_run_t *runs = malloc(nr * sizeof *runs);
  if (!runs) return PP_ENOMEM;
  /* The per-page index is an optimisation (150 ns of binary search over 65k runs become
   * one load); without it the queries are only slower. */
  uint32_t *page_run = nr <= UINT32_MAX ? malloc(r->nr_pages * sizeof *page_run) : NULL;
  if (page_run) page_run[0] = 0;
  size_t k = 0;
  uint64_t largest = 0;
  runs[0] = (region_run_t){.offset = 0, .phys = r->phys[0], .length = r->page_size};
  for (uint64_t i = 1; i < r->nr_pages; i++) {
    if (r->phys[i] == r->phys[i - 1] + r->page_size) {
      runs[k].length += r->page_size;
    } else {
      if (runs[k].length > largest) largest = runs[k].length;
      runs[++k] = (region_run_t){
          .offset = i * r->page_size, .phys = r->phys[i], .length = r->page_size};
    }
    if (page_run) page_run[i] = (uint32_t)k;
  }
  if (runs[k].length > largest) largest = runs[k].length;
  PP_IASSERT(k + 1 == nr);
  r->runs = runs;
  r->page_run = page_run;
  r->nr_runs = nr;
  r->largest_run = largest;
  PP_VALIDATE(region_check, r);
  return 0;
}

/* Read one pagemap entry per region page.  Never fails the region: without the table the
 * region still works, it only cannot promise contiguity above the page size. */
static void region_read_pagemap(region_t *r, const region_log_t *log) {
  char why[160];
  uint64_t base_ps = osl_base_page_size();
  uint64_t step = r->page_size / base_ps; /* pagemap has one entry per base page */
  uint64_t first = (uint64_t)(uintptr_t)r->base / base_ps;
  int fd = osl_open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) {
    snprintf(why, sizeof why, "cannot open /proc/self/pagemap: %s", strerror(errno));
    goto unknown;
  }
  r->phys = malloc(r->nr_pages * sizeof *r->phys);
  if (!r->phys) {
    snprintf(why, sizeof why, "no memory for a table of %" PRIu64 " pages", r->nr_pages);
    goto unknown;
  }
  uint64_t batch[PAGEMAP_BATCH];
  for (uint64_t i = 0; i < r->nr_pages;) {
    /* 4 KiB pages: consecutive entries, read in batches.  Hugepages: one entry each (its
     * first base page), the rest of the hugepage's entries say nothing new. */
    uint64_t cnt = step == 1 ? r->nr_pages - i : 1;
    if (cnt > PAGEMAP_BATCH) cnt = PAGEMAP_BATCH;
    size_t want = (size_t)cnt * sizeof batch[0];
    ssize_t got = osl_pread(fd, batch, want, (off_t)((first + i * step) * sizeof batch[0]));
    if (got != (ssize_t)want) {
      snprintf(why, sizeof why, "pread of /proc/self/pagemap: %s",
               got < 0 ? strerror(errno) : "short read");
      goto unknown;
    }
    for (uint64_t j = 0; j < cnt; j++, i++) {
      uint64_t e = batch[j];
      if (!(e & PAGEMAP_PRESENT)) {
        snprintf(why, sizeof why, "page %" PRIu64 " not present after populating", i);
        goto unknown;
      }
      if ((e & PAGEMAP_PFN_MASK) == 0) {
        snprintf(why, sizeof why,
                 "/proc/self/pagemap hides frame numbers (needs CAP_SYS_ADMIN)");
        goto unknown;
      }
      r->phys[i] = (e & PAGEMAP_PFN_MASK) * base_ps;
    }
  }
  osl_close(fd);
  fd = -1;
  if (region_build_runs(r) != 0) {
    snprintf(why, sizeof why, "no memory for the runs table");
    goto unknown;
  }
  r->why_unknown[0] = '\0';
  return;
unknown:
  if (fd >= 0) osl_close(fd);
  region_drop_phys(r, why);
  region_logf(log, LOG_NOTICE, "physical addresses unknown: %s", why);
}

/* ---- create, adopt, destroy ------------------------------------------------------- */

/* Step 3: take every page from the pool now.  For hugetlb, ENOSPC/ENOMEM means the pool
 * is short: PP_ENOHUGE with the numbers and the fix. */
static int region_reserve(region_t *r, const region_log_t *log) {
  char s1[32], s2[32], fix[320];
  /* The pool as it was before: a failed fallocate keeps the pages it got until the fd is
   * closed, so counting afterwards would report them as not free. */
  region_hugepage_info_t hp[REGION_MAX_HUGEPAGE_SIZES];
  int n = r->hugepages ? region_hugepage_sizes(hp, REGION_MAX_HUGEPAGE_SIZES) : 0;
  if (osl_fallocate(r->fd, 0, 0, r->size) == 0) return 0;
  int err = errno;
  if (r->hugepages && (err == ENOSPC || err == ENOMEM)) {
    const region_hugepage_info_t *h = hp_find(hp, n > 0 ? (size_t)n : 0, r->page_size);
    hugepage_pool_fix(r->page_size, r->nr_pages, h, fix, sizeof fix);
    region_logf(log, LOG_ERR,
                "not enough %s hugepages for a %s region: %" PRIu64 " needed, %" PRIu64
                " free (fallocate: %s). Fix: %s",
                fmt_size(r->page_size, s1), fmt_size(r->size, s2), r->nr_pages,
                h ? hp_available(h) : 0, strerror(err), fix);
    return PP_ENOHUGE;
  }
  region_logf(log, LOG_ERR, "fallocate of %s: %s", fmt_size(r->size, s1), strerror(err));
  return PP_EOS;
}

/* Step 5, large regions: populate chunk by chunk over an unpopulated mapping. */
static int region_populate_chunks(region_t *r, const region_log_t *log, uint64_t chunk) {
  char s1[32], s2[32];
  bool use_madvise = true;
#ifndef MADV_POPULATE_WRITE
  use_madvise = false;
#endif
  for (uint64_t off = 0; off < r->size; off += chunk) {
    uint64_t len = r->size - off < chunk ? r->size - off : chunk;
    char *p = (char *)r->base + off;
#ifdef MADV_POPULATE_WRITE
    if (use_madvise && osl_madvise(p, len, MADV_POPULATE_WRITE) != 0) {
      if (errno != EINVAL || off != 0) {
        region_logf(log, LOG_ERR, "madvise(MADV_POPULATE_WRITE) at offset %" PRIu64 ": %s", off,
                    strerror(errno));
        return PP_EOS;
      }
      region_logf(log, LOG_DEBUG, "no MADV_POPULATE_WRITE (kernel < 5.14): using MAP_FIXED");
      use_madvise = false;
    }
#endif
    if (!use_madvise &&
        osl_mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE, r->fd,
                 (off_t)off) == MAP_FAILED) {
      region_logf(log, LOG_ERR, "mmap(MAP_FIXED|MAP_POPULATE) at offset %" PRIu64 ": %s", off,
                  strerror(errno));
      return PP_EOS;
    }
    region_logf(log, LOG_INFO, "populating: %s of %s (%u%%)", fmt_size(off + len, s1),
                fmt_size(r->size, s2), (unsigned)((off + len) * 100 / r->size));
  }
  return 0;
}

/* Step 6, 4 KiB mode: pin with mlock.  Failure is a warning, not an error: the region
 * works, it can only be swapped. */
static void region_lock(region_t *r, const region_log_t *log) {
  char s1[32], s2[32];
  struct rlimit rl;
  bool have_limit = osl_getrlimit(RLIMIT_MEMLOCK, &rl) == 0;
  if (!have_limit)
    region_logf(log, LOG_NOTICE, "getrlimit(RLIMIT_MEMLOCK): %s; trying mlock anyway",
                strerror(errno));
  /* Even under a smaller limit we try: CAP_IPC_LOCK (root) lifts it, and only the
   * kernel knows whether we hold it. */
  if (osl_mlock(r->base, r->size) == 0) {
    r->mlocked = true;
    return;
  }
  int err = errno;
  if (have_limit && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < r->size)
    region_logf(log, LOG_WARNING,
                "mlock of %s failed (%s): RLIMIT_MEMLOCK is %s; the region's 4 KiB pages "
                "can be swapped. Fix: LimitMEMLOCK=infinity in the unit (or ulimit -l), or "
                "use hugepages",
                fmt_size(r->size, s1), strerror(err), fmt_size(rl.rlim_cur, s2));
  else
    region_logf(log, LOG_WARNING,
                "mlock of %s failed (%s); the region's 4 KiB pages can be swapped",
                fmt_size(r->size, s1), strerror(err));
}

/* Steps 5-7, shared by create and adopt: map, populate, pin, read physical addresses. */
static int region_map(region_t *r, const region_log_t *log, const region_tuning_t *t) {
  uint64_t above = t && t->populate_above ? t->populate_above : REGION_POPULATE_ABOVE;
  uint64_t chunk = t && t->populate_chunk ? t->populate_chunk : REGION_POPULATE_CHUNK;
  chunk = div_round_up(chunk, r->page_size) * r->page_size;
  bool chunked = r->size > above;
  int flags = MAP_SHARED | (chunked ? 0 : MAP_POPULATE);
  void *p = osl_mmap(NULL, r->size, PROT_READ | PROT_WRITE, flags, r->fd, 0);
  if (p == MAP_FAILED) {
    char s1[32];
    region_logf(log, LOG_ERR, "mmap of %s: %s", fmt_size(r->size, s1), strerror(errno));
    return PP_EOS;
  }
  r->base = p;
  if (chunked) {
    int rc = region_populate_chunks(r, log, chunk);
    if (rc != 0) return rc;
  }
  /* Hugetlb pages are never swapped; mlock would only charge RLIMIT_MEMLOCK (and fail
   * for large regions) without pinning anything more.  So only 4 KiB pages are locked. */
  if (!r->hugepages) region_lock(r, log);
  region_read_pagemap(r, log);
  return 0;
}

static region_t *region_alloc(void) {
  region_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->fd = -1;
  return r;
}

void region_destroy(region_t *r) {
  if (!r) return;
  if (r->base && osl_munmap(r->base, r->size) != 0)
    fprintf(stderr, "pinpool region: warning: munmap: %s\n", strerror(errno));
  if (r->fd >= 0) osl_close(r->fd);
  free(r->phys);
  free(r->runs);
  free(r->page_run);
  free(r);
}

int region_create_tuned(const region_config_t *cfg, const region_tuning_t *t, region_t **ret) {
  if (!cfg || !ret) return PP_EINVAL;
  region_log_t log = {cfg->log, cfg->log_ctx};
  char s1[32], s2[32];
  if (cfg->size == 0 || cfg->size > REGION_MAX_SIZE) {
    region_logf(&log, LOG_ERR, "region size %" PRIu64 " is outside 1 B .. 64 TiB", cfg->size);
    return PP_EINVAL;
  }
  if ((unsigned)cfg->policy > REGION_PAGE_1G) return PP_EINVAL;
  if (cfg->name && strlen(cfg->name) > REGION_MAX_NAME) {
    region_logf(&log, LOG_ERR, "memfd name longer than %d bytes", REGION_MAX_NAME);
    return PP_EINVAL;
  }

  region_hugepage_info_t hp[REGION_MAX_HUGEPAGE_SIZES];
  size_t nhp = 0;
  if (cfg->policy != REGION_PAGE_4K) {
    int n = region_hugepage_sizes(hp, REGION_MAX_HUGEPAGE_SIZES);
    nhp = n > 0 ? (size_t)n : 0;
  }
  uint64_t ps;
  int rc = region_choose_page(cfg->policy, cfg->size, hp, nhp, &ps);
  if (rc == PP_ENOHUGE) {
    region_logf(&log, LOG_ERR,
                "%s hugepages are not offered by this kernel (no " REGION_SYSFS_HUGEPAGES
                "/hugepages-%ukB); 1 GiB pages need hugepagesz=1G on the kernel command "
                "line, or choose --page-size auto",
                cfg->policy == REGION_PAGE_2M ? "2 MiB" : "1 GiB",
                cfg->policy == REGION_PAGE_2M ? 2048u : 1048576u);
    return rc;
  }
  if (rc != 0) return rc;
  bool huge = ps > osl_base_page_size();
  if (cfg->policy == REGION_PAGE_AUTO && !huge) warn_fallback(&log, cfg->size, hp, nhp);

  region_t *r = region_alloc();
  if (!r) return PP_ENOMEM; /* private memory, not the region's, but the same remedy */
  r->page_size = ps;
  r->size = div_round_up(cfg->size, ps) * ps;
  r->nr_pages = r->size / ps;
  r->hugepages = huge;
  if (r->size != cfg->size)
    region_logf(&log, LOG_INFO, "region size rounded up from %" PRIu64 " B to %s (page %s)",
                cfg->size, fmt_size(r->size, s1), fmt_size(ps, s2));

  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  if (huge) flags |= MFD_HUGETLB | ((unsigned)__builtin_ctzll(ps) << MFD_HUGE_SHIFT);
  const char *name = cfg->name ? cfg->name : "pinpool";
  r->fd = osl_memfd_create(name, flags);
  if (r->fd < 0) {
    int err = errno;
    region_logf(&log, LOG_ERR, "memfd_create(%s%s): %s", name, huge ? ", MFD_HUGETLB" : "",
                strerror(err));
    rc = huge && err == EINVAL ? PP_ENOHUGE : PP_EOS;
    goto fail;
  }
  if (osl_ftruncate(r->fd, r->size) != 0) {
    region_logf(&log, LOG_ERR, "ftruncate to %s: %s", fmt_size(r->size, s1), strerror(errno));
    rc = PP_EOS;
    goto fail;
  }
  if ((rc = region_reserve(r, &log)) != 0) goto fail;
  if (osl_add_seals(r->fd, REGION_SEALS) != 0) {
    region_logf(&log, LOG_ERR, "fcntl(F_ADD_SEALS): %s", strerror(errno));
    rc = PP_EOS;
    goto fail;
  }
  r->seals = REGION_SEALS;
  if ((rc = region_map(r, &log, t)) != 0) goto fail;
  region_logf(&log, LOG_INFO, "region: %s in %" PRIu64 " pages of %s%s", fmt_size(r->size, s1),
              r->nr_pages, fmt_size(ps, s2), huge ? " (hugetlb)" : "");
  *ret = r;
  return 0;
fail:
  region_destroy(r);
  return rc;
}

int region_create(const region_config_t *cfg, region_t **ret) {
  return region_create_tuned(cfg, NULL, ret);
}

int region_adopt(int fd, const region_config_t *cfg, region_t **ret) {
  if (fd < 0 || !cfg || !ret || (unsigned)cfg->policy > REGION_PAGE_1G) return PP_EINVAL;
  region_log_t log = {cfg->log, cfg->log_ctx};
  char s1[32], s2[32];
  int rc;
  region_t *r = region_alloc();
  if (!r) return PP_ENOMEM;
  struct stat st;
  struct statfs sfs;
  if (osl_fstat(fd, &st) != 0 || osl_fstatfs(fd, &sfs) != 0) {
    region_logf(&log, LOG_ERR, "adopt fd %d: fstat: %s", fd, strerror(errno));
    rc = PP_EOS;
    goto fail;
  }
  r->hugepages = sfs.f_type == HUGETLBFS_MAGIC;
  r->page_size = r->hugepages ? (uint64_t)sfs.f_bsize : osl_base_page_size();
  r->size = (uint64_t)st.st_size;
  if (!S_ISREG(st.st_mode) || r->size == 0 || r->size % r->page_size != 0) {
    region_logf(&log, LOG_ERR, "adopt fd %d: not a region memfd (size %" PRIu64 ")", fd,
                r->size);
    rc = PP_EINVAL;
    goto fail;
  }
  r->nr_pages = r->size / r->page_size;
  uint64_t want_ps = cfg->policy == REGION_PAGE_4K   ? osl_base_page_size()
                     : cfg->policy == REGION_PAGE_2M ? 2ull << 20
                     : cfg->policy == REGION_PAGE_1G ? 1ull << 30
                                                     : r->page_size;
  uint64_t want_size =
      cfg->size ? div_round_up(cfg->size, r->page_size) * r->page_size : r->size;
  if (want_ps != r->page_size || want_size != r->size) {
    region_logf(&log, LOG_ERR, "adopt fd %d: it holds %s in pages of %s, not what was asked",
                fd, fmt_size(r->size, s1), fmt_size(r->page_size, s2));
    rc = PP_EINVAL;
    goto fail;
  }
  int seals = osl_get_seals(fd);
  if (seals < 0) {
    int err = errno; /* EINVAL: not a memfd, or one made without MFD_ALLOW_SEALING */
    region_logf(&log, LOG_ERR, "adopt fd %d: fcntl(F_GET_SEALS): %s", fd, strerror(err));
    rc = err == EINVAL ? PP_EINVAL : PP_EOS;
    goto fail;
  }
  if ((seals & REGION_SEALS) != REGION_SEALS) {
    /* Without SHRINK|GROW a holder of the fd could resize it under us; seal it now if it
     * still can be, else refuse. */
    if ((seals & F_SEAL_SEAL) || osl_add_seals(fd, REGION_SEALS) != 0) {
      region_logf(&log, LOG_ERR, "adopt fd %d: cannot seal it against resizing (seals %#x)", fd,
                  (unsigned)seals);
      rc = PP_EINVAL;
      goto fail;
    }
    seals |= REGION_SEALS;
  }
  r->seals = seals;
  r->adopted = true;
  r->fd = fd;
  if ((rc = region_reserve(r, &log)) != 0) goto fail;
  if ((rc = region_map(r, &log, NULL)) != 0) goto fail;
  region_logf(&log, LOG_INFO, "adopted region: %s in %" PRIu64 " pages of %s",
              fmt_size(r->size, s1), r->nr_pages, fmt_size(r->page_size, s2));
  *ret = r;
  return 0;
fail:
  r->fd = -1; /* the caller still owns fd */
  region_destroy(r);
  return rc;
}

int region_from_phys(uint64_t size, uint64_t page_size, const uint64_t *phys, region_t **ret) {
  if (!ret || page_size == 0 || (page_size & (page_size - 1)) || size == 0 ||
      size % page_size || size > REGION_MAX_SIZE)
    return PP_EINVAL;
  region_t *r = region_alloc();
  if (!r) return PP_ENOMEM;
  r->size = size;
  r->page_size = page_size;
  r->nr_pages = size / page_size;
  r->hugepages = page_size > osl_base_page_size();
  r->largest_run = page_size;
  snprintf(r->why_unknown, sizeof r->why_unknown, "no table given");
  if (phys) {
    r->phys = malloc(r->nr_pages * sizeof *r->phys);
    if (!r->phys) goto nomem;
    memcpy(r->phys, phys, r->nr_pages * sizeof *phys);
    if (region_build_runs(r) != 0) goto nomem;
    r->why_unknown[0] = '\0';
  }
  *ret = r;
  return 0;
nomem:
  region_destroy(r);
  return PP_ENOMEM;
}

/* ---- queries ---------------------------------------------------------------------- */

int region_fd(const region_t *r) {
  return r ? r->fd : -1;
}
void *region_base(const region_t *r) {
  return r ? r->base : NULL;
}
uint64_t region_size(const region_t *r) {
  return r ? r->size : 0;
}
uint64_t region_page_size(const region_t *r) {
  return r ? r->page_size : 0;
}
bool region_hugepages(const region_t *r) {
  return r && r->hugepages;
}
bool region_phys_known(const region_t *r) {
  return r && r->phys;
}

int region_phys(const region_t *r, uint64_t offset, uint64_t *ret_phys) {
  if (!r || !ret_phys) return PP_EINVAL;
  if (offset >= r->size) return PP_ERANGE;
  if (!r->phys) return PP_ENOENT;
  *ret_phys = r->phys[offset / r->page_size] + offset % r->page_size;
  return 0;
}

/* Index of the run holding offset, by binary search: runs are sorted and cover the region. */
static size_t region_run_search(const region_t *r, uint64_t offset) {
  size_t lo = 0, hi = r->nr_runs;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if (r->runs[mid].offset <= offset)
      lo = mid;
    else
      hi = mid;
  }
  PP_IASSERT(r->runs[lo].offset <= offset && offset < r->runs[lo].offset + r->runs[lo].length);
  return lo;
}

/* The run holding offset: one load through the per-page index, else the search (which
 * debug builds also run to cross-check the index). */
static const region_run_t *region_run_at(const region_t *r, uint64_t offset) {
  if (!r->page_run) return &r->runs[region_run_search(r, offset)];
  size_t k = r->page_run[offset / r->page_size];
  PP_IASSERT(k == region_run_search(r, offset));
  return &r->runs[k];
}

bool region_is_contiguous(const region_t *r, uint64_t offset, uint64_t len) {
  if (!r || offset > r->size || len > r->size - offset) return false;
  if (len == 0) return true;
  uint64_t last = offset + len - 1;
  if (offset / r->page_size == last / r->page_size) return true;
  if (!r->runs) return false;
  const region_run_t *run = region_run_at(r, offset);
  return last < run->offset + run->length;
}

size_t region_runs(const region_t *r, region_run_t *out, size_t n) {
  if (!r || !r->runs) return 0;
  size_t k = n < r->nr_runs ? n : r->nr_runs;
  if (out && k) memcpy(out, r->runs, k * sizeof *out);
  return r->nr_runs;
}

uint64_t region_largest_run(const region_t *r) {
  if (!r) return 0;
  return r->runs ? r->largest_run : r->page_size;
}

int region_check(const region_t *r, char *why, size_t why_len) {
  if (!r) return pp_corrupt(why, why_len, "no region");
  if (r->page_size == 0 || r->size == 0 || r->size % r->page_size)
    return pp_corrupt(why, why_len, "size %" PRIu64 " not a non-zero multiple of page %" PRIu64,
                      r->size, r->page_size);
  if (r->nr_pages != r->size / r->page_size)
    return pp_corrupt(why, why_len, "nr_pages %" PRIu64 " wrong", r->nr_pages);
  if (!r->phys != !r->runs)
    return pp_corrupt(why, why_len, "phys and runs disagree on being known");
  if (!r->phys) return 0;
  uint64_t next = 0, largest = 0;
  for (size_t k = 0; k < r->nr_runs; k++) {
    const region_run_t *run = &r->runs[k];
    if (run->offset != next)
      return pp_corrupt(why, why_len, "run %zu starts at %" PRIu64 ", expected %" PRIu64, k,
                        run->offset, next);
    if (run->length == 0 || run->length % r->page_size)
      return pp_corrupt(why, why_len, "run %zu has length %" PRIu64, k, run->length);
    if (run->length > r->size - run->offset)
      return pp_corrupt(why, why_len, "run %zu runs past the region", k);
    for (uint64_t o = 0; o < run->length; o += r->page_size) {
      uint64_t page = (run->offset + o) / r->page_size;
      if (r->page_run && r->page_run[page] != k)
        return pp_corrupt(why, why_len, "page %" PRIu64 " indexed to run %u, lies in run %zu",
                          page, r->page_run[page], k);
      if (r->phys[page] != run->phys + o)
        return pp_corrupt(why, why_len,
                          "page at offset %" PRIu64 " is not consecutive in run %zu",
                          run->offset + o, k);
    }
    if (k > 0 && run->phys == r->runs[k - 1].phys + r->runs[k - 1].length)
      return pp_corrupt(why, why_len, "runs %zu and %zu should be one", k - 1, k);
    if (run->length > largest) largest = run->length;
    next = run->offset + run->length;
  }
  if (next != r->size)
    return pp_corrupt(why, why_len, "runs cover %" PRIu64 " of %" PRIu64 " bytes", next,
                      r->size);
  if (largest != r->largest_run)
    return pp_corrupt(why, why_len, "largest run %" PRIu64 " recorded as %" PRIu64, largest,
                      r->largest_run);
  return 0;
}

/* ---- description (pinpoold --probe) ----------------------------------------------- */

#define DESCRIBE_RUNS 8 /* runs listed one by one; beyond that, a histogram by length */

void region_describe(const region_t *r, FILE *out) {
  char s1[32], s2[32], s3[32];
  if (!r || !out) return;
  fprintf(out, "region: %s = %" PRIu64 " pages of %s, %s%s\n", fmt_size(r->size, s1),
          r->nr_pages, fmt_size(r->page_size, s2),
          r->hugepages ? "hugetlb memfd" : "shmem memfd", r->adopted ? " (adopted)" : "");
  if (r->fd >= 0)
    fprintf(out, "  fd %d, sealed:%s%s%s\n", r->fd, r->seals & F_SEAL_SHRINK ? " shrink" : "",
            r->seals & F_SEAL_GROW ? " grow" : "", r->seals & F_SEAL_SEAL ? " seal" : "");
  fprintf(out, "  pinned: %s\n",
          r->hugepages ? "yes (hugetlb pages are never swapped)"
          : r->mlocked ? "yes (mlock)"
          : r->base    ? "NO (mlock failed; pages can be swapped)"
                       : "-");
  if (!r->phys) {
    fprintf(out, "  physical addresses: unknown (%s)\n", r->why_unknown);
    fprintf(out, "  contiguous: only within one page (%s)\n", fmt_size(r->page_size, s1));
    return;
  }
  fprintf(out, "  physical addresses: readable (/proc/self/pagemap)%s\n",
          r->hugepages ? "" : "; 4 KiB pages may move under compaction");
  fprintf(out, "  contiguous runs: %zu, largest %s\n", r->nr_runs,
          fmt_size(r->largest_run, s1));
  for (size_t k = 0; k < r->nr_runs && k < DESCRIBE_RUNS; k++)
    fprintf(out, "    offset %#14" PRIx64 "  phys %#14" PRIx64 "  %s\n", r->runs[k].offset,
            r->runs[k].phys, fmt_size(r->runs[k].length, s2));
  if (r->nr_runs <= DESCRIBE_RUNS) return;
  fprintf(out, "    ... %zu more; runs by length:\n", r->nr_runs - DESCRIBE_RUNS);
  /* Histogram by power-of-two length class: [2^k, 2^(k+1)). */
  uint64_t hist[64] = {0};
  for (size_t k = 0; k < r->nr_runs; k++)
    hist[63 - __builtin_clzll(r->runs[k].length)]++;
  for (unsigned b = 0; b < 64; b++)
    if (hist[b])
      fprintf(out, "      %s .. < %s: %" PRIu64 "\n", fmt_size(1ull << b, s1),
              b < 63 ? fmt_size(1ull << (b + 1), s3) : "-", hist[b]);
}
