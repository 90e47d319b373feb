/*
 * hugetlb.c — the hugepage pools and the page-size policy.
 *
 * What.  A region is backed by 4 KiB pages or by hugepages of one size (2 MiB, 1 GiB on
 * x86-64).  Hugepages come from pools the administrator sizes ahead of time; each size
 * appears as HUGETLB_SYSFS/hugepages-<kB>kB with nr_hugepages (the pool), free_hugepages
 * and resv_hugepages (free pages already promised to mappings that have not faulted them
 * in).  This module reads those pools, picks the page size for a region, and words the
 * advice an operator needs when a pool is too short.
 *
 * Policy (hugetlb_choose_page).  Auto takes the largest size, not larger than the region,
 * of which free - resv pages cover the region: with 2 MiB or 1 GiB pages every block up to
 * the page size is physically contiguous by construction, so larger is better — but a
 * 64 MiB region must not become one 1 GiB page.  When no pool can cover the region, auto
 * falls back to the base page size and the region logs hugetlb_explain_fallback().  An
 * explicit hugepage size is honoured whenever the kernel offers it, however many pages
 * are free: the count read here can race with other processes, so the region's fallocate
 * — which takes every page or fails with ENOSPC — is the authority on availability.
 *
 * The fix (hugetlb_pool_fix).  For the default size (Hugepagesize in /proc/meminfo) the
 * advice is `sysctl vm.nr_hugepages=N`; for another size, the sysfs file to write and,
 * since 1 GiB pages can rarely be found once memory is fragmented, the kernel command line
 * that reserves them at boot.  N is the current pool plus what is missing, so the command
 * can be pasted as is.
 *
 * Invariants: none kept; every function reads the kernel afresh or is pure.  Every file
 * is read through shm/osl so that tests can fail the reads.  Thread-safe (no state).
 *
 * References: Documentation/admin-guide/mm/hugetlbpage.rst (the sysfs layout, resv pages,
 * the boot parameters); proc(5) for /proc/meminfo.
 */
#define _GNU_SOURCE
#include "hugetlb.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "osl.h"
#include "pinpool_err.h"
#include "units.h"

static int info_cmp(const void *a, const void *b) {
  const hugetlb_info_t *x = a, *y = b;
  return (x->page_size > y->page_size) - (x->page_size < y->page_size);
}

int hugetlb_sizes_at(const char *root, hugetlb_info_t *out, size_t n) {
  if (!root || (!out && n)) return PP_EINVAL;
  hugetlb_info_t found[HUGETLB_MAX_SIZES];
  size_t nr = 0;
  DIR *d = opendir(root);
  if (!d) return 0; /* no hugetlbfs in this kernel: no sizes */
  struct dirent *e;
  while ((e = readdir(d)) && nr < HUGETLB_MAX_SIZES) {
    unsigned long long kb;
    char tail;
    if (sscanf(e->d_name, "hugepages-%llukB%c", &kb, &tail) != 1 || kb == 0) continue;
    hugetlb_info_t *h = &found[nr++];
    *h = (hugetlb_info_t){.page_size = (uint64_t)kb << 10};
    /* An unreadable count reads as 0: auto then passes this size over, and an explicit
     * request still gets fallocate's authoritative answer. */
    char path[512];
    snprintf(path, sizeof path, "%s/%s/nr_hugepages", root, e->d_name);
    if (osl_read_u64(path, &h->total_pages) != 0) h->total_pages = 0;
    snprintf(path, sizeof path, "%s/%s/free_hugepages", root, e->d_name);
    if (osl_read_u64(path, &h->free_pages) != 0) h->free_pages = 0;
    snprintf(path, sizeof path, "%s/%s/resv_hugepages", root, e->d_name);
    if (osl_read_u64(path, &h->resv_pages) != 0) h->resv_pages = 0;
  }
  closedir(d);
  qsort(found, nr, sizeof found[0], info_cmp);
  size_t k = nr < n ? nr : n;
  if (k) memcpy(out, found, k * sizeof found[0]);
  return (int)k;
}

int hugetlb_sizes(hugetlb_info_t *out, size_t n) {
  return hugetlb_sizes_at(HUGETLB_SYSFS, out, n);
}

uint64_t hugetlb_available(const hugetlb_info_t *h) {
  return h->free_pages > h->resv_pages ? h->free_pages - h->resv_pages : 0;
}

const hugetlb_info_t *hugetlb_find(const hugetlb_info_t *hp, size_t n, uint64_t page_size) {
  for (size_t i = 0; i < n; i++)
    if (hp[i].page_size == page_size) return &hp[i];
  return NULL;
}

static uint64_t div_round_up(uint64_t a, uint64_t b) {
  return a / b + (a % b != 0);
}

int hugetlb_choose_page(uint64_t want, uint64_t size, const hugetlb_info_t *hp, size_t n,
                        uint64_t *ret_page_size) {
  uint64_t base = osl_base_page_size();
  if (!ret_page_size || (!hp && n) || size == 0) return PP_EINVAL;
  if (want != 0 && (want < base || (want & (want - 1)))) return PP_EINVAL;
  if (want == base) {
    *ret_page_size = base;
    return 0;
  }
  if (want == 0) {
    for (size_t i = n; i-- > 0;) {
      if (hp[i].page_size > size) continue; /* a 64 MiB region must not become 1 GiB */
      if (hugetlb_available(&hp[i]) >= div_round_up(size, hp[i].page_size)) {
        *ret_page_size = hp[i].page_size;
        return 0;
      }
    }
    *ret_page_size = base;
    return 0;
  }
  if (!hugetlb_find(hp, n, want)) return PP_ENOHUGE;
  *ret_page_size = want;
  return 0;
}

uint64_t hugetlb_default_size(void) {
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

void hugetlb_pool_fix(uint64_t page_size, uint64_t needed, const hugetlb_info_t *h, char *buf,
                      size_t len) {
  uint64_t avail = h ? hugetlb_available(h) : 0;
  uint64_t target = (h ? h->total_pages : 0) + (needed > avail ? needed - avail : 0);
  if (page_size == hugetlb_default_size())
    snprintf(buf, len, "sysctl vm.nr_hugepages=%" PRIu64, target);
  else
    snprintf(buf, len,
             "echo %" PRIu64 " > " HUGETLB_SYSFS "/hugepages-%" PRIu64
             "kB/nr_hugepages (1 GiB pages may need hugepagesz=1G hugepages=%" PRIu64
             " on the kernel command line)",
             target, page_size >> 10, target);
}

int hugetlb_explain_fallback(uint64_t size, const hugetlb_info_t *hp, size_t n, char *buf,
                             size_t len) {
  char s1[32], s2[32], fix[320];
  /* Suggest the default hugepage size when it fits the region, else the largest that does. */
  const hugetlb_info_t *h = hugetlb_find(hp, n, hugetlb_default_size());
  if (!h || h->page_size > size) {
    h = NULL;
    for (size_t i = n; i-- > 0;)
      if (hp[i].page_size <= size) {
        h = &hp[i];
        break;
      }
  }
  if (!h) {
    snprintf(buf, len,
             "using 4 KiB pages: %s; blocks above 4 KiB are physically contiguous only by "
             "chance",
             n ? "the region is smaller than any hugepage"
               : "this kernel offers no hugepages (CONFIG_HUGETLBFS)");
    return n ? LOG_NOTICE : LOG_WARNING;
  }
  uint64_t needed = div_round_up(size, h->page_size);
  hugetlb_pool_fix(h->page_size, needed, h, fix, sizeof fix);
  units_format_size(size, s1, sizeof s1);
  units_format_size(h->page_size, s2, sizeof s2);
  snprintf(buf, len,
           "no hugepages for a %s region (%" PRIu64 " pages of %s needed, %" PRIu64
           " free); using 4 KiB pages, physically contiguous only by chance above 4 KiB. "
           "Fix: %s",
           s1, needed, s2, hugetlb_available(h), fix);
  return LOG_WARNING;
}
