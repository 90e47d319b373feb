/*
 * region.h — the shared region: one sealed memfd, hugepage-backed when possible,
 * reserved up front, mapped and populated once, with the physical address of each
 * page recorded when /proc/self/pagemap gives it.  Everything the allocators hand
 * out is an offset into this region.  See region.c for the essay; the page-size policy
 * lives in hugetlb.c, the physical-address table in physmap.c.
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
  void *log_ctx;
} region_config_t;

/* One hugepage size and its pool (shm/hugetlb.h). */
typedef hugetlb_info_t region_hugepage_info_t;

/* A run of physically consecutive pages: [offset, offset+length) maps to [phys, phys+length)
 * (shm/physmap.h). */
typedef physmap_run_t region_run_t;

typedef struct region region_t;

/* Parse "auto", "4K", "2M", "1G" (case-insensitive). */
int region_parse_policy(const char *s, region_page_policy_t *ret);
const char *region_policy_name(region_page_policy_t p);

/* Fill up to n entries with the hugepage sizes this kernel offers, smallest first;
 * returns how many (hugetlb_sizes). */
int region_hugepage_sizes(region_hugepage_info_t *out, size_t n);

/* Create, reserve (ftruncate + fallocate), seal, map with MAP_POPULATE, read pagemap.
 * Errors: PP_EINVAL (bad size/policy), PP_ENOHUGE (explicit size unavailable or the pool
 * too short; the log says how many pages were needed and free, and the sysctl that fixes
 * it), PP_EOS (another OS failure; the log names the call and errno). *ret untouched on
 * failure; nothing leaks. */
int region_create(const region_config_t *cfg, region_t **ret);
/* Take over an existing region memfd (after a restart, from systemd's fd store): check
 * that it is a sealed memfd whose size cannot change, reserve (fallocate) and map it as
 * region_create does; its contents are kept.  cfg->size 0 and REGION_PAGE_AUTO accept
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

/* Physical address of the byte at offset; PP_ENOENT when unknown, PP_ERANGE when out of
 * the region. */
int region_phys(const region_t *r, uint64_t offset, uint64_t *ret_phys);
/* True when [offset, offset+len) is physically contiguous: within one page, or spanning
 * pages whose physical addresses are known and consecutive. */
bool region_is_contiguous(const region_t *r, uint64_t offset, uint64_t len);
/* The physically contiguous runs; fills up to n, returns the total count (0 when unknown). */
size_t region_runs(const region_t *r, region_run_t *out, size_t n);
/* Length of the longest run (the page size when addresses are unknown). */
uint64_t region_largest_run(const region_t *r);

/* Print what `pinpoold --probe` prints. */
void region_describe(const region_t *r, FILE *out);

#endif /* PP_REGION_H */
