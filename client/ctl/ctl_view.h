/*
 * ctl_view.h — how pinpoolctl shows a Stats snapshot: text in the shapes Linux users read
 * (/proc/buddyinfo, /proc/slabinfo) and one JSON object per command.  Pure functions of
 * the snapshot, so tests can feed them hand-made Stats.  See ctl_view.c.
 */
#ifndef PP_CTL_VIEW_H
#define PP_CTL_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "pinpool.pb-c.h"

/* "512 B", "64 KiB", "1.5 MiB": binary units, one decimal unless exact.  Returns buf. */
const char *ctl_fmt_size(char *buf, size_t len, uint64_t bytes);
/* "3d 4h 05m 06s", "2m 03s", "7s".  Returns buf. */
const char *ctl_fmt_duration(char *buf, size_t len, uint64_t ms);
/* A fragmentation index in thousandths as Linux prints it: "-1.000", "0.512". */
const char *ctl_fmt_frag(char *buf, size_t len, int32_t milli);
/* Compact order-size label for column heads: "4K", "512K", "2M", "1G". */
const char *ctl_fmt_block(char *buf, size_t len, uint64_t bytes);

typedef struct ctl_buffer_filter {
  bool by_pid; /* only buffers that this pid holds */
  uint32_t pid;
  /* Only buffers published under this name; NULL = any.  A qualified name ("~1000/frames",
   * "~g44/ring") matches exactly that buffer; an unqualified one ("frames") matches the
   * name in every scope (Stats names buffers qualified: docs/PROTOCOL.md, "names"). */
  const char *name;
} ctl_buffer_filter_t;

bool ctl_buffer_matches(const Pinpool__V1__BufferInfo *b, const ctl_buffer_filter_t *f);
/* The part of a name after its scope, "~1000/frames" -> "frames"; a name without a scope
 * ("~" and an optional 'g', decimal digits, '/') as it is. */
const char *ctl_name_unscoped(const char *name);
/* Stats.nr_caches, or the length of the cache list from a daemon that predates it. */
uint64_t ctl_nr_caches(const Pinpool__V1__Stats *s);
/* The histogram of physical runs: "1:40 2-3:30 4-7:0 8-15:2", runs per class of lengths
 * in pages, up to the longest class that has any; "" when there are none.  Returns buf. */
const char *ctl_fmt_run_buckets(char *buf, size_t len, const Pinpool__V1__PhysRuns *r);
/* Print text (words apart by single spaces) after head, packed into lines of at most
 * width columns; continuation lines start with indent spaces.  A word longer than a line
 * gets a line of its own. */
void ctl_print_wrapped(FILE *out, const char *head, unsigned indent, const char *text,
                       unsigned width);
/* The hugepage sort in words: "done: 256 of 256 pages in physical order (50 ms)", ... */
const char *ctl_fmt_sort(char *buf, size_t len, const Pinpool__V1__Stats *s);
/* The physical runs' lines of status (nothing from a daemon that does not send them). */
void ctl_view_runs(FILE *out, const Pinpool__V1__Stats *s);
/* Stats.runs as a JSON object, field names as in the .proto; NULL when absent. */
json_object *ctl_json_runs(const Pinpool__V1__Stats *s);

void ctl_view_status(FILE *out, const Pinpool__V1__Stats *s);
void ctl_view_buddyinfo(FILE *out, const Pinpool__V1__Stats *s);
void ctl_view_slabinfo(FILE *out, const Pinpool__V1__Stats *s);
/* One row per pool of the daemon (Stats.pools): name, id, size, page size, hugepages, NUMA
 * node, quota, used and free bytes, writers, readers. */
void ctl_view_pools(FILE *out, const Pinpool__V1__Stats *s);
/* The pool called name in s->pools, NULL when there is none. */
const Pinpool__V1__PoolInfo *ctl_pool_find(const Pinpool__V1__Stats *s, const char *name);
void ctl_view_clients(FILE *out, const Pinpool__V1__Stats *s);
/* The same at a given wall-clock time (ms since the epoch): how long a detached session
 * stays re-claimable is its deadline minus now. */
void ctl_view_clients_at(FILE *out, const Pinpool__V1__Stats *s, uint64_t now_unix_ms);
/* A session's STATE column: "connected"; "detached, re-claimable for 12s" (the time left
 * before its deadline, rounded up to the second); "detached, grace period over" once the
 * deadline has passed; "detached" without a deadline.  Returns buf. */
const char *ctl_fmt_session_state(char *buf, size_t len, const Pinpool__V1__ClientInfo *c,
                                  uint64_t now_unix_ms);
void ctl_view_buffers(FILE *out, const Pinpool__V1__Stats *s, const ctl_buffer_filter_t *f);
void ctl_view_shrink(FILE *out, const Pinpool__V1__ShrinkResult *r);

/* The same, as one new JSON object each (NULL only when json-c runs out of memory). */
json_object *ctl_json_status(const Pinpool__V1__Stats *s);
json_object *ctl_json_buddyinfo(const Pinpool__V1__Stats *s);
json_object *ctl_json_slabinfo(const Pinpool__V1__Stats *s);
json_object *ctl_json_pools(const Pinpool__V1__Stats *s);
json_object *ctl_json_clients(const Pinpool__V1__Stats *s);
json_object *ctl_json_buffers(const Pinpool__V1__Stats *s, const ctl_buffer_filter_t *f);
json_object *ctl_json_shrink(const Pinpool__V1__ShrinkResult *r);

/* Two sizes that are easy to confuse on a hugepage region: the page size of the region's
 * memory (Stats.page_size: 4 KiB, 2 MiB, 1 GiB) and the allocation unit, order 0 of the
 * buddy allocator (Stats.min_block: 4 KiB everywhere).  Order sizes, slab sizes and
 * /proc/slabinfo's "pages" count in the unit, never in the page size. */
/* Stats.min_block, or 4096 from a daemon that predates the field (its unit was 4 KiB). */
uint64_t ctl_min_block(const Pinpool__V1__Stats *s);
/* Bytes per slab of a cache: SlabInfo.slab_bytes, or pages_per_slab * the unit from a
 * daemon that predates the field. */
uint64_t ctl_slab_bytes(const Pinpool__V1__Stats *s, const Pinpool__V1__SlabInfo *k);
/* Bytes a cache's slabs occupy (num_slabs * ctl_slab_bytes). */
uint64_t ctl_cache_bytes(const Pinpool__V1__Stats *s, const Pinpool__V1__SlabInfo *k);

#endif /* PP_CTL_VIEW_H */
