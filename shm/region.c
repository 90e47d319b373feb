/*
 * region.c — the shared region's lifecycle: one sealed memfd, hugepage-backed when
 * possible, reserved up front, mapped and populated once, its pages held by a long-term
 * pin and their physical addresses recorded.
 *
 * What it does.  region_create() makes the memory every pinpool allocator carves up:
 *   1. Page size: hugetlb_choose_page() applies the policy (auto | 4K | 2M | 1G) to what
 *      the kernel offers (hugetlb.c has the rules).  When auto falls back to 4 KiB pages
 *      the log says why and names the fix; an explicit hugepage size the kernel does not
 *      offer is PP_ENOHUGE.  The size is rounded up to a multiple of the page size (any
 *      multiple: not a power of two).
 *   2. memfd_create(MFD_CLOEXEC | MFD_ALLOW_SEALING [| MFD_HUGETLB | size bits]).
 *   3. ftruncate, then fallocate: every page is taken from the pool now, so a short
 *      hugepage pool fails here with ENOSPC — reported with the pages needed, the pages
 *      free and the command that fixes it — and never as a SIGBUS in a client later.
 *      Hugepages are first faulted in one by one in ascending physical order when the
 *      frames are readable (pagesort.c; region_config_t.no_sort turns it off), so that
 *      consecutive pages of the region are physically consecutive wherever the pool's
 *      pages are; the plain fallocate then takes whatever sorting did not place.
 *   4. Seals F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL: clients receive this fd; none of
 *      them can shrink it under the daemon (which would SIGBUS everyone) or grow it.
 *   5. mmap(MAP_SHARED | MAP_POPULATE).  Regions above REGION_POPULATE_ABOVE are mapped
 *      without populating, then populated chunk by chunk (MADV_POPULATE_WRITE, or on
 *      kernels before 5.14 MAP_FIXED | MAP_POPULATE over the same range), each chunk
 *      logged, so a long start-up shows progress.
 *   6. Locking in memory.  4 KiB pages are mlock()ed (a warning names the limit when that
 *      fails).  Hugetlb pages are not: they are never swapped, so mlock would only charge
 *      RLIMIT_MEMLOCK and fail for large regions without keeping anything more in memory.
 *   7. The long-term pin (pin.c): every page registered as an io_uring fixed buffer, so a
 *      page a client punches out of the memfd stays ours instead of going back to the
 *      kernel.  mlock cannot do this: it belongs to the mapping, and a punch removes the
 *      page from the mapping.  Without the pin (io_uring disabled, RLIMIT_MEMLOCK, an old
 *      kernel) the region works and warns; region_describe() says why.
 *   8. Physical addresses: physmap_read() walks /proc/self/pagemap, after the pin (which
 *      may migrate a page first), into the private table (physmap.c); without
 *      CAP_SYS_ADMIN the addresses are "unknown" and the region works without them.  The
 *      pagemap fd stays open for the hole scans of holes.c.
 * NUMA: with region_config_t.bind_node the calling thread's memory policy binds to that
 * node (set_mempolicy(MPOL_BIND), osl_set_mempolicy_node) for steps 2-8 and is put back to
 * the default right after, so that the reserve, the sort and the populate take every
 * page from that node; a node that does not exist is PP_EINVAL, a node with too few pages
 * fails the reserve like a short pool.  An adopted region keeps the pages it has.
 * region_adopt() takes over an existing memfd (systemd's fd store, after a restart) and
 * shares steps 3 and 5-8 with creation (region_reserve, region_map).  holes.c finds,
 * repairs and survives pages that clients punch out later.
 *
 * Invariants (region_check): size is a non-zero multiple of page_size; nr_pages = size /
 * page_size; the table has the region's geometry and passes physmap_check; a live pin
 * covers at least the region within its slots and budget, a missing one says why.
 *
 * Failure: every step that fails releases what the earlier ones took (region_destroy on
 * a half-built region), logs the call and errno, and returns PP_EOS / PP_ENOHUGE /
 * PP_EINVAL, or PP_ENOPRIVMEM when our own malloc fails.  mlock, the long-term pin and
 * the address table are best effort: their failures are logged and region_describe() says
 * what is missing.  Every system call goes through shm/osl so that tests can fail each
 * one in turn.
 *
 * Memory: the region struct and its table are private (malloc) memory; nothing about the
 * region lives inside it.  Locks: none.  Queries only read; create/adopt/destroy and the
 * calls of holes.c that change the table run on the thread that owns the region, never
 * concurrently with queries on it (the contract pinpoold's single loop meets).
 *
 * References: memfd_create(2), fcntl(2) "File seals", fallocate(2), madvise(2)
 * MADV_POPULATE_WRITE, mlock(2), io_uring_register(2); Documentation/admin-guide/mm/
 * hugetlbpage.rst.
 */
#define _GNU_SOURCE
#include "region.h"
#include "region_internal.h"
#include "units.h"

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
#include "memguard.h"
#include "osl.h"
#include "region_priv.h"

#ifndef MFD_HUGE_SHIFT /* linux/memfd.h; glibc's sys/mman.h lacks it */
#define MFD_HUGE_SHIFT 26
#endif
#ifndef HUGETLBFS_MAGIC
#define HUGETLBFS_MAGIC 0x958458f6
#endif

#define REGION_MAX_SIZE (1ull << 46) /* 64 TiB: far beyond any machine, and no overflow */
#define REGION_MAX_NAME 249          /* memfd_create(2): 249 bytes after its "memfd:" prefix */
#define REGION_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

void region_logf(const region_log_t *log, int level, const char *fmt, ...) {
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

/* ---- policies --------------------------------------------------------------------- */

const char *region_fmt_size(uint64_t bytes, char buf[32]) {
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

/* The page size a policy asks hugetlb_choose_page for: 0 = auto. */
static uint64_t policy_page_size(region_page_policy_t p) {
  switch (p) {
  case REGION_PAGE_4K: return osl_base_page_size();
  case REGION_PAGE_2M: return 2ull << 20;
  case REGION_PAGE_1G: return 1ull << 30;
  case REGION_PAGE_AUTO: break;
  }
  return 0;
}

static uint64_t div_round_up(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}

int region_hugepage_sizes(region_hugepage_info_t *out, size_t n) {
  return hugetlb_sizes(out, n);
}

/* ---- create, adopt, destroy ------------------------------------------------------- */

/* Step 3: take every page from the pool now — first in physical order when sort_name is
 * given (the staging memfd's name; NULL: no sorting), then whatever is left as the pool
 * gives it.  For hugetlb, ENOSPC/ENOMEM means the pool is short: PP_ENOHUGE with the
 * numbers and the fix. */
static int region_reserve(region_t *r, const region_log_t *log, const char *sort_name,
                          const region_tuning_t *t) {
  char s1[32], s2[32], fix[320];
  /* The pool as it was before: a failed fallocate keeps the pages it got until the fd is
   * closed, so counting afterwards would report them as not free. */
  hugetlb_info_t hp[HUGETLB_MAX_SIZES];
  int n = r->hugepages ? hugetlb_sizes(hp, HUGETLB_MAX_SIZES) : 0;
  if (sort_name) region_sort_pages(r, sort_name, log, t);
  if (osl_fallocate(r->fd, 0, 0, r->size) == 0) return 0;
  int err = errno;
  if (r->hugepages && (err == ENOSPC || err == ENOMEM)) {
    const hugetlb_info_t *h = hugetlb_find(hp, n > 0 ? (size_t)n : 0, r->page_size);
    hugetlb_pool_fix(r->page_size, r->nr_pages, h, fix, sizeof fix);
    region_logf(log, LOG_ERR,
                "not enough %s hugepages for a %s region: %" PRIu64 " needed, %" PRIu64
                " free (fallocate: %s). Fix: %s",
                region_fmt_size(r->page_size, s1), region_fmt_size(r->size, s2), r->nr_pages,
                h ? hugetlb_available(h) : 0, strerror(err), fix);
    return PP_ENOHUGE;
  }
  region_logf(log, LOG_ERR, "fallocate of %s: %s", region_fmt_size(r->size, s1), strerror(err));
  return PP_EOS;
}

int region_populate_range(region_t *r, uint64_t off, uint64_t len) {
  char *p = (char *)r->base + off;
#ifdef MADV_POPULATE_WRITE
  if (r->populate_write >= 0) {
    if (osl_madvise(p, len, MADV_POPULATE_WRITE) == 0) {
      r->populate_write = 1;
      return 0;
    }
    /* EINVAL the first time: a kernel before 5.14, which does not know the advice. */
    if (errno != EINVAL || r->populate_write > 0) return -1;
    region_logf(&r->log, LOG_DEBUG, "no MADV_POPULATE_WRITE (kernel < 5.14): using MAP_FIXED");
    r->populate_write = -1;
  }
#endif
  r->populate_write = -1;
  if (osl_mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE, r->fd,
               (off_t)off) == MAP_FAILED)
    return -1;
  /* The new mapping replaced a locked one: lock it again (after creation only). */
  if (r->mlocked && osl_mlock(p, len) != 0) return -1;
  return 0;
}

/* Step 5, large regions: populate chunk by chunk over an unpopulated mapping. */
static int region_populate_chunks(region_t *r, const region_log_t *log, uint64_t chunk) {
  char s1[32], s2[32];
  for (uint64_t off = 0; off < r->size; off += chunk) {
    uint64_t len = r->size - off < chunk ? r->size - off : chunk;
    if (region_populate_range(r, off, len) != 0) {
      region_logf(log, LOG_ERR, "%s at offset %" PRIu64 ": %s",
                  r->populate_write < 0 ? "mmap(MAP_FIXED|MAP_POPULATE)"
                                        : "madvise(MADV_POPULATE_WRITE)",
                  off, strerror(errno));
      return PP_EOS;
    }
    region_logf(log, LOG_INFO, "populating: %s of %s (%u%%)", region_fmt_size(off + len, s1),
                region_fmt_size(r->size, s2), (unsigned)((off + len) * 100 / r->size));
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
                region_fmt_size(r->size, s1), strerror(err), region_fmt_size(rl.rlim_cur, s2));
  else
    region_logf(log, LOG_WARNING,
                "mlock of %s failed (%s); the region's 4 KiB pages can be swapped",
                region_fmt_size(r->size, s1), strerror(err));
}

/* Steps 5-8, shared by create and adopt: map, populate, lock, pin, read physical
 * addresses. */
static int region_map(region_t *r, const region_log_t *log, const region_tuning_t *t) {
  uint64_t above = t && t->populate_above ? t->populate_above : REGION_POPULATE_ABOVE;
  uint64_t chunk = t && t->populate_chunk ? t->populate_chunk : REGION_POPULATE_CHUNK;
  chunk = div_round_up(chunk, r->page_size) * r->page_size;
  bool chunked = r->size > above;
  int flags = MAP_SHARED | (chunked ? 0 : MAP_POPULATE);
  void *p = osl_mmap(NULL, r->size, PROT_READ | PROT_WRITE, flags, r->fd, 0);
  if (p == MAP_FAILED) {
    char s1[32];
    region_logf(log, LOG_ERR, "mmap of %s: %s", region_fmt_size(r->size, s1), strerror(errno));
    return PP_EOS;
  }
  r->base = p;
  if (chunked) {
    int rc = region_populate_chunks(r, log, chunk);
    if (rc != 0) return rc;
  }
  /* Hugetlb pages are never swapped; mlock would only charge RLIMIT_MEMLOCK (and fail
   * for large regions) without keeping anything more in memory.  So only 4 KiB pages are
   * locked. */
  if (!r->hugepages) region_lock(r, log);
  /* The long-term pin, before the addresses are read: pinning may migrate a page out of
   * ZONE_MOVABLE first, and what we record must be the page we hold. */
  if (pin_region(&r->pin, r->base, r->size, r->pin_budget) != 0)
    region_logf(log, LOG_WARNING,
                "no long-term pin (%s): a holder of the fd can hand pages back to the kernel "
                "while their physical addresses are in use",
                r->pin.why_not);
  if (region_pagemap(r) < 0) {
    char why[160];
    snprintf(why, sizeof why, "cannot open /proc/self/pagemap: %s", strerror(errno));
    physmap_forget(&r->map, why);
  } else {
    physmap_read(&r->map, r->pagemap_fd, r->base);
  }
  if (!physmap_known(&r->map))
    region_logf(log, LOG_NOTICE, "physical addresses unknown: %s", r->map.why_unknown);
  if (r->map.nr_lost)
    region_logf(log, LOG_WARNING,
                "%" PRIu64 " pages not present after populating: punched by another holder "
                "of the fd; see region_scan_holes",
                r->map.nr_lost);
  return 0;
}

/* After creation: what sorting achieved, with the runs before and after, in one line. */
static void region_log_sorted(const region_t *r, const region_log_t *log) {
  const region_sort_info_t *si = &r->sort;
  if (si->state != REGION_SORT_DONE && !(si->state == REGION_SORT_INCOMPLETE && si->placed))
    return;
  char s1[32], s2[32];
  physmap_run_stats_t after;
  physmap_run_stats(&r->map, &after);
  if (!after.known) return;
  region_logf(log, LOG_INFO,
              "hugepages %s by physical address (%" PRIu64 " of %" PRIu64 " pages, %" PRIu64
              " ms): %" PRIu64 " runs, largest %s; in the pool's order "
              "%" PRIu64 " runs, largest %s; %" PRIu64 " pages out of order",
              si->state == REGION_SORT_DONE ? "sorted" : "partly sorted", si->placed,
              r->nr_pages, si->elapsed_ns / 1000000, after.nr_runs,
              region_fmt_size(after.longest, s1), si->before.nr_runs,
              region_fmt_size(si->before.longest, s2), after.descents);
}

int region_pagemap(region_t *r) {
  if (r->pagemap_fd < 0) r->pagemap_fd = osl_open("/proc/self/pagemap", O_RDONLY);
  return r->pagemap_fd;
}

/* An empty region with its log sink; the caller sets the geometry and calls
 * region_init_map. */
static region_t *region_alloc(const region_config_t *cfg) {
  region_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->fd = -1;
  r->pagemap_fd = -1;
  pin_init(&r->pin);
  if (cfg) r->log = (region_log_t){cfg->log, cfg->log_ctx};
  return r;
}

/* The geometry is set: allocate the table.  0 or PP_ENOPRIVMEM. */
static int region_init_map(region_t *r) {
  r->nr_pages = r->size / r->page_size;
  return physmap_init(&r->map, r->size, r->page_size);
}

void region_destroy(region_t *r) {
  if (!r) return;
  pin_fini(&r->pin); /* first: punched pages held only by the pin go back now */
  if (r->base && osl_munmap(r->base, r->size) != 0)
    fprintf(stderr, "pinpool region: warning: munmap: %s\n", strerror(errno));
  if (r->pagemap_fd >= 0) osl_close(r->pagemap_fd);
  if (r->fd >= 0) osl_close(r->fd);
  physmap_fini(&r->map);
  free(r);
}

/* A memfd's inode is created with mode 0777, and a descriptor of it can be re-opened
 * through /proc/<pid>/fd/N with any access that mode allows.  A client given the memfd
 * re-opened read-only could thus open it read-write again and write to (or punch holes in)
 * memory it was meant only to read.  Mode 0600 leaves re-opening to the inode's owner, the
 * daemon's uid; a client of another uid keeps exactly the access of the descriptor it was
 * sent, and cannot change the mode back (fchmod needs the owner).  Done on adoption too:
 * the mode belongs to the inode, and a stored memfd may predate this rule. */
static int region_restrict_mode(int fd, const region_log_t *log) {
  if (osl_fchmod(fd, 0600) != 0) {
    region_logf(log, LOG_ERR, "fchmod(0600): %s", strerror(errno));
    return PP_EOS;
  }
  return 0;
}

static int region_create_unbound(const region_config_t *cfg, const region_tuning_t *t,
                                 region_t **ret) {
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

  hugetlb_info_t hp[HUGETLB_MAX_SIZES];
  size_t nhp = 0;
  if (cfg->policy != REGION_PAGE_4K) {
    int n = hugetlb_sizes(hp, HUGETLB_MAX_SIZES);
    nhp = n > 0 ? (size_t)n : 0;
  }
  uint64_t ps;
  int rc = hugetlb_choose_page(policy_page_size(cfg->policy), cfg->size, hp, nhp, &ps);
  if (rc == PP_ENOHUGE) {
    region_logf(&log, LOG_ERR,
                "%s hugepages are not offered by this kernel (no " HUGETLB_SYSFS
                "/hugepages-%ukB); 1 GiB pages need hugepagesz=1G on the kernel command "
                "line, or choose --page-size auto",
                cfg->policy == REGION_PAGE_2M ? "2 MiB" : "1 GiB",
                cfg->policy == REGION_PAGE_2M ? 2048u : 1048576u);
    return rc;
  }
  if (rc != 0) return rc;
  bool huge = ps > osl_base_page_size();
  if (cfg->policy == REGION_PAGE_AUTO && !huge) {
    char why[512];
    int level = hugetlb_explain_fallback(cfg->size, hp, nhp, why, sizeof why);
    region_logf(&log, level, "%s", why);
  }

  region_t *r = region_alloc(cfg);
  if (!r) return PP_ENOPRIVMEM;
  r->page_size = ps;
  r->size = div_round_up(cfg->size, ps) * ps;
  r->hugepages = huge;
  r->pin_budget = t && t->pin_budget ? t->pin_budget : 2 * r->size;
  if ((rc = region_init_map(r)) != 0) goto fail;
  if (r->size != cfg->size)
    region_logf(&log, LOG_INFO, "region size rounded up from %" PRIu64 " B to %s (page %s)",
                cfg->size, region_fmt_size(r->size, s1), region_fmt_size(ps, s2));

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
  if ((rc = region_restrict_mode(r->fd, &log)) != 0) goto fail;
  if (osl_ftruncate(r->fd, r->size) != 0) {
    region_logf(&log, LOG_ERR, "ftruncate to %s: %s", region_fmt_size(r->size, s1),
                strerror(errno));
    rc = PP_EOS;
    goto fail;
  }
  if (!huge)
    r->sort.state = REGION_SORT_NOT_HUGE;
  else if (cfg->no_sort)
    r->sort.state = REGION_SORT_OFF;
  if ((rc = region_reserve(r, &log, huge && !cfg->no_sort ? name : NULL, t)) != 0) goto fail;
  if (osl_add_seals(r->fd, REGION_SEALS) != 0) {
    region_logf(&log, LOG_ERR, "fcntl(F_ADD_SEALS): %s", strerror(errno));
    rc = PP_EOS;
    goto fail;
  }
  r->seals = REGION_SEALS;
  if ((rc = region_map(r, &log, t)) != 0) goto fail;
  region_logf(&log, LOG_INFO, "region: %s in %" PRIu64 " pages of %s%s",
              region_fmt_size(r->size, s1), r->nr_pages, region_fmt_size(ps, s2),
              huge ? " (hugetlb)" : "");
  region_log_sorted(r, &log);
  *ret = r;
  return 0;
fail:
  region_destroy(r);
  return rc;
}

int region_create(const region_config_t *cfg, region_t **ret) {
  return region_create_tuned(cfg, NULL, ret);
}

int region_create_tuned(const region_config_t *cfg, const region_tuning_t *t, region_t **ret) {
  region_log_t log = {cfg ? cfg->log : NULL, cfg ? cfg->log_ctx : NULL};
  region_t *r = NULL;
  int rc;
  if (!cfg || !cfg->bind_node) return region_create_unbound(cfg, t, ret);
  if (cfg->numa_node > INT32_MAX || !osl_numa_node_exists((int)cfg->numa_node)) {
    region_logf(&log, LOG_ERR, "NUMA node %u does not exist on this machine", cfg->numa_node);
    return PP_EINVAL;
  }
  /* The thread's policy binds every page the reserve, the sort and the populate fault in:
   * hugetlb's fallocate and shmem's faults both follow it when the file has no policy of
   * its own.  Put back right after, whatever happened. */
  if (osl_set_mempolicy_node((int)cfg->numa_node) != 0) {
    region_logf(&log, LOG_ERR, "set_mempolicy(MPOL_BIND, node %u): %s", cfg->numa_node,
                strerror(errno));
    return PP_EOS;
  }
  rc = region_create_unbound(cfg, t, &r);
  if (osl_set_mempolicy_node(-1) != 0) {
    region_logf(&log, LOG_ERR, "set_mempolicy(MPOL_DEFAULT): %s", strerror(errno));
    if (rc == 0) region_destroy(r);
    return PP_EOS;
  }
  if (rc) return rc;
  region_logf(&log, LOG_INFO, "region: pages bound to NUMA node %u", cfg->numa_node);
  *ret = r;
  return 0;
}

int region_adopt(int fd, const region_config_t *cfg, region_t **ret) {
  if (fd < 0 || !cfg || !ret || (unsigned)cfg->policy > REGION_PAGE_1G) return PP_EINVAL;
  region_log_t log = {cfg->log, cfg->log_ctx};
  char s1[32], s2[32];
  int rc;
  region_t *r = region_alloc(cfg);
  if (!r) return PP_ENOPRIVMEM;
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
  r->pin_budget = 2 * r->size;
  if ((rc = region_init_map(r)) != 0) goto fail;
  uint64_t want_ps = cfg->policy == REGION_PAGE_4K   ? osl_base_page_size()
                     : cfg->policy == REGION_PAGE_2M ? 2ull << 20
                     : cfg->policy == REGION_PAGE_1G ? 1ull << 30
                                                     : r->page_size;
  uint64_t want_size =
      cfg->size ? div_round_up(cfg->size, r->page_size) * r->page_size : r->size;
  if (want_ps != r->page_size || want_size != r->size) {
    region_logf(&log, LOG_ERR, "adopt fd %d: it holds %s in pages of %s, not what was asked",
                fd, region_fmt_size(r->size, s1), region_fmt_size(r->page_size, s2));
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
  if ((rc = region_restrict_mode(fd, &log)) != 0) goto fail;
  r->adopted = true;
  r->sort.state = REGION_SORT_ADOPTED;
  r->fd = fd;
  if ((rc = region_reserve(r, &log, NULL, NULL)) != 0) goto fail;
  if ((rc = region_map(r, &log, NULL)) != 0) goto fail;
  region_logf(&log, LOG_INFO, "adopted region: %s in %" PRIu64 " pages of %s",
              region_fmt_size(r->size, s1), r->nr_pages, region_fmt_size(r->page_size, s2));
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
  region_t *r = region_alloc(NULL);
  if (!r) return PP_ENOPRIVMEM;
  r->size = size;
  r->page_size = page_size;
  r->hugepages = page_size > osl_base_page_size();
  int rc = region_init_map(r);
  if (rc == 0) physmap_forget(&r->map, "no table given");
  if (rc == 0 && phys) rc = physmap_set(&r->map, phys);
  if (rc != 0) {
    region_destroy(r);
    return rc;
  }
  *ret = r;
  return 0;
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
  return r && physmap_known(&r->map);
}

int region_phys(const region_t *r, uint64_t offset, uint64_t *ret_phys) {
  if (!r) return PP_EINVAL;
  return physmap_phys(&r->map, offset, ret_phys);
}

bool region_is_contiguous(const region_t *r, uint64_t offset, uint64_t len) {
  return r && physmap_is_contiguous(&r->map, offset, len);
}

size_t region_runs(const region_t *r, region_run_t *out, size_t n) {
  return r ? physmap_runs(&r->map, out, n) : 0;
}

uint64_t region_largest_run(const region_t *r) {
  return r ? physmap_largest_run(&r->map) : 0;
}

int region_run_stats(const region_t *r, region_run_stats_t *ret) {
  if (!r || !ret) return PP_EINVAL;
  physmap_run_stats(&r->map, ret);
  return 0;
}

int region_sort_info(const region_t *r, region_sort_info_t *ret) {
  if (!r || !ret) return PP_EINVAL;
  *ret = r->sort;
  return 0;
}

const char *region_sort_state_name(region_sort_state_t s) {
  switch (s) {
  case REGION_SORT_OFF: return "off";
  case REGION_SORT_NOT_HUGE: return "4 KiB pages";
  case REGION_SORT_ADOPTED: return "adopted";
  case REGION_SORT_UNKNOWN: return "addresses unknown";
  case REGION_SORT_INCOMPLETE: return "incomplete";
  case REGION_SORT_DONE: return "done";
  }
  return "?";
}

int region_check(const region_t *r, char *why, size_t why_len) {
  if (!r) return pp_corrupt(why, why_len, "no region");
  if (r->page_size == 0 || r->size == 0 || r->size % r->page_size)
    return pp_corrupt(why, why_len, "size %" PRIu64 " not a non-zero multiple of page %" PRIu64,
                      r->size, r->page_size);
  if (r->nr_pages != r->size / r->page_size)
    return pp_corrupt(why, why_len, "nr_pages %" PRIu64 " wrong", r->nr_pages);
  if (r->map.page_size != r->page_size || r->map.nr_pages != r->nr_pages)
    return pp_corrupt(why, why_len, "the table's geometry differs from the region's");
  if (pin_active(&r->pin)) {
    if (r->pin.used > r->pin.nr_slots || r->pin.pinned_bytes > r->pin.budget)
      return pp_corrupt(why, why_len, "pins past their slots or budget");
    if (r->pin.pinned_bytes < r->size)
      return pp_corrupt(why, why_len, "pinned %" PRIu64 " bytes of %" PRIu64,
                        r->pin.pinned_bytes, r->size);
  } else if (r->pin.used || r->pin.pinned_bytes || !r->pin.why_not[0]) {
    return pp_corrupt(why, why_len, "no pin, yet slots or bytes counted, or no reason");
  }
  return physmap_check(&r->map, why, why_len);
}

/* ---- description (pinpoold --probe) ----------------------------------------------- */

/* The "sorted by physical address" line. */
static void describe_sort(const region_t *r, FILE *out) {
  const region_sort_info_t *si = &r->sort;
  switch (si->state) {
  case REGION_SORT_OFF: fprintf(out, "  sorted by physical address: no (turned off)\n"); break;
  case REGION_SORT_NOT_HUGE:
    fprintf(out, "  sorted by physical address: no (4 KiB pages are placed by the kernel's "
                 "page allocator)\n");
    break;
  case REGION_SORT_ADOPTED:
    fprintf(out, "  sorted by physical address: no (adopted: its pages are kept)\n");
    break;
  case REGION_SORT_UNKNOWN:
    fprintf(out, "  sorted by physical address: no (%s)\n", si->why);
    break;
  case REGION_SORT_INCOMPLETE:
    fprintf(out,
            "  sorted by physical address: %s %" PRIu64 " of %" PRIu64
            " pages (%s); the rest in the pool's order\n",
            si->placed ? "partly," : "no,", si->placed, r->nr_pages, si->why);
    break;
  case REGION_SORT_DONE:
    fprintf(out, "  sorted by physical address: yes, %" PRIu64 " pages in %" PRIu64 " ms\n",
            si->placed, si->elapsed_ns / 1000000);
    break;
  }
}

void region_describe(const region_t *r, FILE *out) {
  char s1[32], s2[32];
  if (!r || !out) return;
  fprintf(out, "region: %s = %" PRIu64 " pages of %s, %s%s\n", region_fmt_size(r->size, s1),
          r->nr_pages, region_fmt_size(r->page_size, s2),
          r->hugepages ? "hugetlb memfd" : "shmem memfd", r->adopted ? " (adopted)" : "");
  if (r->fd >= 0)
    fprintf(out, "  fd %d, sealed:%s%s%s\n", r->fd, r->seals & F_SEAL_SHRINK ? " shrink" : "",
            r->seals & F_SEAL_GROW ? " grow" : "", r->seals & F_SEAL_SEAL ? " seal" : "");
  fprintf(out, "  pinned: %s\n",
          r->hugepages ? "yes (hugetlb pages are never swapped)"
          : r->mlocked ? "yes (mlock)"
          : r->base    ? "NO (mlock failed; pages can be swapped)"
                       : "-");
  if (pin_active(&r->pin))
    fprintf(out,
            "  long-term pin: yes (io_uring fixed buffers: %" PRIu32 " of %" PRIu32
            " slots, %s pinned of a %s budget); punched pages stay ours\n",
            r->pin.used, r->pin.nr_slots, region_fmt_size(r->pin.pinned_bytes, s1),
            region_fmt_size(r->pin.budget, s2));
  else if (r->base)
    fprintf(out,
            "  long-term pin: NO (%s); a holder of the fd can hand pages back to the kernel\n",
            r->pin.why_not);
  if (r->fd >= 0) describe_sort(r, out); /* a table-only region was never laid out */
  physmap_describe(&r->map, r->hugepages || pin_active(&r->pin),
                   r->sort.before.known ? &r->sort.before : NULL, out);
}
