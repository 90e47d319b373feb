/*
 * holes.c — pages a client punched out of the region: finding them, repairing them, and
 * writing to the region without dying of them.
 *
 * The threat.  Every client holds the region's memfd read-write, and the seals cannot
 * forbid fallocate(PUNCH_HOLE | KEEP_SIZE) short of forbidding writes.  A punch drops the
 * pages from the file and from every mapping of it, the daemon's included.  What stays
 * safe, and what this file adds:
 *   - The pages stay allocated to us (pin.c): the long-term pin keeps a punched page out
 *     of the kernel's hands, so an address the daemon reported before the punch never
 *     points at someone else's memory, even if a device keeps writing to it.
 *   - region_scan_holes() finds the punched pages: it reads the daemon's own mapping in
 *     /proc/self/pagemap.  A punch always clears our page-table entry, and nothing but our
 *     own access fills it again, so "not present" means punched — and, when frame numbers
 *     are readable, a present page whose frame differs from the table means punched and
 *     faulted in again.  pagemap works the same for 4 KiB shmem and for hugetlb mappings;
 *     lseek(SEEK_HOLE) does not (hugetlbfs reports the whole file as data, holes and all)
 *     and mincore looks at the page cache for shmem (it misses a page punched and filled
 *     again by someone else).  Cost: one pread per 512 4 KiB pages or per hugepage — for a
 *     1 GiB region 512 reads either way: about 0.4 ms with 2 MiB pages, 17 ms with 4 KiB
 *     pages (the kernel walks 262144 entries), measured on a 6.x VM.  The pages found
 *     are marked lost in the table (physmap.c): no address, no run, no contiguity, so the
 *     daemon never hands out an address it no longer has.  (In a region neither pinned nor
 *     mlocked, reclaim can clear entries too: such a page is reported lost and its repair
 *     faults it back — a false alarm, never a wrong address.)  region_check_range() does
 *     the same for one range, in O(pages of the range): the daemon runs it on a block
 *     just before it reports the block's addresses, between whole-region scans.
 *     region_lost_in() counts the lost pages of a range from the table alone.
 *   - region_repair() backs lost pages again: fallocate the range (taking pages from the
 *     pool; ENOSPC when it is empty), fault it in through our mapping
 *     (MADV_POPULATE_WRITE), pin it in fresh io_uring slots (the punched pages keep their
 *     old pins), then read the new addresses and restore the pages in the table.  Order
 *     matters: the pin faults and pins in one step, and only a punch can clear our entry
 *     afterwards, so an entry present after the pin is the pinned page.  A range whose
 *     entry is gone again by then was punched during the repair and is retried, twice.
 *     When the pool cannot back the range (another process took the freed hugepages), or
 *     the pin budget is spent, the range stays lost and the caller keeps its blocks out of
 *     circulation.  Never a SIGBUS: populate and the pin report EFAULT instead.
 *   - region_zero() writes zeros (PP_ZERO, zero-on-free) without dying: it refuses a range
 *     with a lost page, checks the range's entries, writes under a SIGBUS guard
 *     (memguard.c) and checks again.  The first check keeps the write from faulting a
 *     fresh, unpinned page into a hole (and from taking a hugepage from the pool); the
 *     guard catches a punch that lands during the write when no hugepage is left; the
 *     second check catches one that lands during the write when there was.  Each finding
 *     marks the page lost and returns PP_EOS; nothing is written past a missing page.
 *
 * What a client can still do: scribble on any byte of the region (shared data, never
 * allocator metadata, which is private); punch holes, which costs the daemon a scan, a
 * repair, and pinned memory up to the pin budget (twice the region) — after that the
 * punched ranges stay lost and the usable region shrinks.  What it cannot: make the daemon
 * report a physical address of memory the kernel may give to someone else (while the pin
 * holds), kill the daemon with SIGBUS through region_zero, resize the file (seals).
 * Without the pin (region_pinned() false: io_uring unavailable) a punched page goes back
 * to the kernel at once, and only detection and repair remain.
 *
 * Locks: none.  Scan, repair and zero change the table; they run on the thread that owns
 * the region (pinpoold's loop), never concurrently with each other or with queries.
 *
 * References: fallocate(2) FALLOC_FL_PUNCH_HOLE; madvise(2) MADV_POPULATE_WRITE;
 * Documentation/admin-guide/mm/pagemap.rst; lseek(2) SEEK_HOLE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "debug.h"
#include "memguard.h"
#include "osl.h"
#include "region_internal.h"
#include "region_priv.h"

#define HOLES_BATCH 512u   /* pagemap entries read at a time */
#define REPAIR_ATTEMPTS 3u /* a range punched again during its repair is retried */

bool region_pinned(const region_t *r) {
  return r && pin_active(&r->pin);
}

const char *region_pin_status(const region_t *r) {
  return r ? r->pin.why_not : "no region";
}

uint64_t region_generation(const region_t *r) {
  return r ? r->map.generation : 0;
}

size_t region_lost(const region_t *r, region_range_t *out, size_t n) {
  return r ? physmap_lost_ranges(&r->map, out, n) : 0;
}

uint64_t region_lost_bytes(const region_t *r) {
  return r ? r->map.nr_lost * r->page_size : 0;
}

/* Is the page with this pagemap entry still the one the table records?  Present, and with
 * the recorded frame when frames are known. */
static bool entry_still_ours(const region_t *r, uint64_t page, uint64_t entry) {
  if (!(entry & PHYSMAP_PM_PRESENT)) return false;
  if (!physmap_known(&r->map)) return true;
  return physmap_entry_phys(entry) == r->map.phys[page];
}

/* Check pages [first, first+count) against pagemap; mark the ones no longer ours lost.
 * Returns how many were newly lost (>= 0), or PP_EOS when pagemap cannot be read. */
static int64_t check_pages(region_t *r, uint64_t first, uint64_t count) {
  int fd = region_pagemap(r);
  if (fd < 0) return PP_EOS;
  uint64_t batch[HOLES_BATCH];
  int64_t found = 0;
  for (uint64_t i = 0; i < count;) {
    uint64_t cnt = count - i < HOLES_BATCH ? count - i : HOLES_BATCH;
    if (physmap_pagemap_read(fd, r->base, r->page_size, first + i, cnt, batch) != 0) {
      int err = errno;
      if (found) physmap_rebuild(&r->map);
      errno = err;
      return PP_EOS;
    }
    for (uint64_t j = 0; j < cnt; j++) {
      uint64_t page = first + i + j;
      if (physmap_page_lost(&r->map, page) || entry_still_ours(r, page, batch[j])) continue;
      physmap_lose_page(&r->map, page);
      found++;
    }
    i += cnt;
  }
  if (found) physmap_rebuild(&r->map);
  return found;
}

int region_scan_holes(region_t *r, void (*cb)(void *ctx, uint64_t offset, uint64_t len),
                      void *ctx) {
  char s1[32];
  if (!r || !r->base) return PP_EINVAL;
  int64_t found = check_pages(r, 0, r->nr_pages);
  if (found < 0) {
    region_logf(&r->log, LOG_ERR, "hole scan: /proc/self/pagemap: %s", strerror(errno));
    return (int)found;
  }
  size_t n = physmap_lost_ranges(&r->map, NULL, 0);
  if (found)
    region_logf(&r->log, LOG_WARNING,
                "hole scan: %" PRId64 " more pages no longer back the region (punched by a "
                "holder of the fd); %s lost in %zu ranges",
                found, region_fmt_size(r->map.nr_lost * r->page_size, s1), n);
  if (cb && n) {
    /* Report from a copy: the callback may repair, which changes the table. */
    region_range_t *v = malloc(n * sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    n = physmap_lost_ranges(&r->map, v, n);
    for (size_t k = 0; k < n; k++)
      cb(ctx, v[k].offset, v[k].length);
    free(v);
  }
  return (int)(n > INT32_MAX ? INT32_MAX : n);
}

int region_check_range(region_t *r, uint64_t offset, uint64_t len) {
  char s1[32], s2[32];
  if (!r || !r->base) return PP_EINVAL;
  if (offset > r->size || len > r->size - offset) return PP_ERANGE;
  if (len == 0) return 0;
  uint64_t first = offset / r->page_size;
  uint64_t count = (offset + len + r->page_size - 1) / r->page_size - first;
  int64_t found = check_pages(r, first, count);
  if (found < 0) return (int)found; /* not logged: the caller may check on every request */
  if (found)
    region_logf(&r->log, LOG_WARNING,
                "hole check of %s at offset %s: %" PRId64 " pages no longer back the region "
                "(punched by a holder of the fd)",
                region_fmt_size(len, s1), region_fmt_size(offset, s2), found);
  return (int)(found > INT32_MAX ? INT32_MAX : found);
}

uint64_t region_lost_in(const region_t *r, uint64_t offset, uint64_t len) {
  if (!r || r->map.nr_lost == 0 || len == 0 || offset >= r->size) return 0;
  if (len > r->size - offset) len = r->size - offset;
  uint64_t n = 0, end = (offset + len + r->page_size - 1) / r->page_size;
  for (uint64_t p = offset / r->page_size; p < end; p++)
    n += physmap_page_lost(&r->map, p);
  return n * r->page_size;
}

/* Back pages [first, first+count), all lost, again.  0, PP_ENOHUGE, PP_EQUOTA, PP_EOS or
 * PP_ENOPRIVMEM; the range stays lost on failure. */
static int repair_range(region_t *r, uint64_t first, uint64_t count) {
  char s1[32], s2[32], why[320];
  uint64_t off = first * r->page_size, len = count * r->page_size;
  char *p = (char *)r->base + off;
  region_fmt_size(off, s1);
  region_fmt_size(len, s2);
  int fd = region_pagemap(r);
  if (fd < 0) {
    region_logf(&r->log, LOG_ERR, "repair at %s: /proc/self/pagemap: %s", s1, strerror(errno));
    return PP_EOS;
  }
  uint64_t *entries = malloc(count * sizeof *entries);
  if (!entries) return PP_ENOPRIVMEM;
  int rc = PP_EOS;
  for (unsigned attempt = 0; attempt < REPAIR_ATTEMPTS; attempt++) {
    if (osl_fallocate(r->fd, 0, off, len) != 0 || region_populate_range(r, off, len) != 0) {
      int err = errno;
      /* hugetlb: ENOSPC from fallocate, EFAULT or ENOMEM from populate — no free page. */
      rc = r->hugepages && (err == ENOSPC || err == ENOMEM || err == EFAULT) ? PP_ENOHUGE
                                                                             : PP_EOS;
      region_logf(&r->log, LOG_WARNING, "repair of %s at offset %s failed: %s%s", s2, s1,
                  strerror(err),
                  rc == PP_ENOHUGE ? " (the hugepage pool has no page left for it)" : "");
      goto out;
    }
    if (pin_active(&r->pin) && (rc = pin_add(&r->pin, p, len, why, sizeof why)) != 0) {
      region_logf(&r->log, LOG_WARNING, "repair of %s at offset %s: cannot pin it: %s", s2, s1,
                  why);
      goto out;
    }
    if (physmap_pagemap_read(fd, r->base, r->page_size, first, count, entries) != 0) {
      region_logf(&r->log, LOG_ERR, "repair at %s: /proc/self/pagemap: %s", s1,
                  strerror(errno));
      rc = PP_EOS;
      goto out;
    }
    bool present = true, hidden = false;
    for (uint64_t i = 0; i < count; i++) {
      present &= (entries[i] & PHYSMAP_PM_PRESENT) != 0;
      entries[i] = physmap_entry_phys(entries[i]);
      hidden |= entries[i] == 0;
    }
    if (!present) continue; /* punched again between the pin and now: once more */
    physmap_restore(&r->map, first, count, hidden ? NULL : entries);
    region_logf(&r->log, LOG_NOTICE, "repaired %s at offset %s: backed%s, addresses re-read",
                s2, s1, pin_active(&r->pin) ? ", pinned" : "");
    rc = 0;
    goto out;
  }
  region_logf(&r->log, LOG_WARNING,
              "repair of %s at offset %s: punched again each time it was repaired", s2, s1);
  rc = PP_EOS;
out:
  free(entries);
  return rc;
}

int region_repair(region_t *r, uint64_t offset, uint64_t len) {
  if (!r || !r->base) return PP_EINVAL;
  if (offset > r->size || len > r->size - offset) return PP_ERANGE;
  if (len == 0) return 0;
  uint64_t first = offset / r->page_size;
  uint64_t end = (offset + len + r->page_size - 1) / r->page_size;
  int worst = 0;
  for (uint64_t p = first; p < end;) {
    if (!physmap_page_lost(&r->map, p)) {
      p++;
      continue;
    }
    uint64_t q = p;
    while (q < end && physmap_page_lost(&r->map, q))
      q++;
    int rc = repair_range(r, p, q - p);
    if (rc != 0 && worst == 0) worst = rc;
    p = q;
  }
  PP_VALIDATE(region_check, r);
  return worst;
}

int region_zero(region_t *r, uint64_t offset, uint64_t len) {
  char s1[32];
  if (!r || !r->base) return PP_EINVAL;
  if (offset > r->size || len > r->size - offset) return PP_ERANGE;
  if (len == 0) return 0;
  if (physmap_range_lost(&r->map, offset, len)) return PP_EOS;
  uint64_t first = offset / r->page_size;
  uint64_t count = (offset + len + r->page_size - 1) / r->page_size - first;
  /* Before: never fault a fresh page into a hole.  Unreadable pagemap: the guard alone. */
  if (check_pages(r, first, count) > 0) return PP_EOS;
  void *fault = NULL;
  if (memguard_set((char *)r->base + offset, 0, len, &fault) != 0) {
    if (!fault) {
      region_logf(&r->log, LOG_ERR, "zeroing: cannot install the SIGBUS guard: %s",
                  strerror(errno));
      return PP_EOS;
    }
    uint64_t page = (uint64_t)((char *)fault - (char *)r->base) / r->page_size;
    physmap_mark_lost(&r->map, page, 1);
    region_logf(&r->log, LOG_WARNING,
                "zeroing: SIGBUS at offset %s: the page was punched and no hugepage is left "
                "to replace it; marked lost",
                region_fmt_size(page * r->page_size, s1));
    return PP_EOS;
  }
  /* After: a punch during the write that the kernel filled with a fresh page. */
  if (check_pages(r, first, count) > 0) return PP_EOS;
  return 0;
}
