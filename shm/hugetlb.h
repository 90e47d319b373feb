/*
 * hugetlb.h — the hugepage pools the kernel offers and the page-size choice made from
 * them: which sizes exist (/sys/kernel/mm/hugepages), how many pages of each are free,
 * which size a region of a given size gets, and the one command that grows a pool that is
 * too short.  Pure reading and arithmetic: no memfd, no mapping.  See hugetlb.c.
 */
#ifndef PP_HUGETLB_H
#define PP_HUGETLB_H

#include <stddef.h>
#include <stdint.h>

#define HUGETLB_SYSFS "/sys/kernel/mm/hugepages"
#define HUGETLB_MAX_SIZES 16 /* more than any architecture offers (arm64: 4) */

/* One hugepage size as the kernel reports it under HUGETLB_SYSFS. */
typedef struct hugetlb_info {
  uint64_t page_size;
  uint64_t total_pages;
  uint64_t free_pages;
  uint64_t resv_pages; /* promised to existing mappings though not yet faulted in: a new
                          region can have free_pages - resv_pages of them */
} hugetlb_info_t;

/* Fill up to n entries with the hugepage sizes this kernel offers, smallest first; returns
 * how many (0 when the kernel has no hugetlbfs), or PP_EINVAL. */
int hugetlb_sizes(hugetlb_info_t *out, size_t n);
/* The same over another directory laid out like HUGETLB_SYSFS (tests). */
int hugetlb_sizes_at(const char *root, hugetlb_info_t *out, size_t n);

/* free_pages - resv_pages (0 when more are reserved than free). */
uint64_t hugetlb_available(const hugetlb_info_t *h);
/* The entry of hp[0..n) for page_size, or NULL. */
const hugetlb_info_t *hugetlb_find(const hugetlb_info_t *hp, size_t n, uint64_t page_size);
/* The size `sysctl vm.nr_hugepages` sets (Hugepagesize in /proc/meminfo); 0 if unknown. */
uint64_t hugetlb_default_size(void);

/* The page size for a region of size bytes, as a pure function of what hp[0..n) offers.
 * want = 0 (auto): the largest offered size not larger than size whose free - resv pages
 * cover size, else the base page size.  want = the base page size: that.  want = a
 * hugepage size: that size if offered (however many pages are free: fallocate decides
 * availability later, the only check that cannot race), else PP_ENOHUGE.  PP_EINVAL for a
 * zero size, a want that is neither 0 nor a power of two from the base page size up, or
 * bad pointers.  *ret_page_size untouched on failure. */
int hugetlb_choose_page(uint64_t want, uint64_t size, const hugetlb_info_t *hp, size_t n,
                        uint64_t *ret_page_size);

/* Write into buf the command that grows the pool of page_size pages so that `needed` more
 * are available, given its entry h (NULL: unknown, counted as empty). */
void hugetlb_pool_fix(uint64_t page_size, uint64_t needed, const hugetlb_info_t *h, char *buf,
                      size_t len);

/* Auto chose the base page size for a region of size bytes: write into buf why (no
 * hugepages at all, region smaller than any hugepage, or a pool too short — with the
 * numbers and the fix) and return the syslog level the message deserves. */
int hugetlb_explain_fallback(uint64_t size, const hugetlb_info_t *hp, size_t n, char *buf,
                             size_t len);

#endif /* PP_HUGETLB_H */
