/*
 * buddy.h — the buddy allocator over a region's offsets.  Order k blocks are
 * 2^k * 4 KiB and naturally aligned.  All metadata is daemon-private.  See buddy.c.
 *
 * Public entry points take the allocator's lock; the *_unsafe() variants (in
 * buddy.c) expect it held.
 */
#ifndef PP_BUDDY_H
#define PP_BUDDY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pinpool_err.h"

#define BUDDY_MIN_SHIFT 12u /* order 0 = 4 KiB */
#define BUDDY_MIN_SIZE (1ull << BUDDY_MIN_SHIFT)
#define BUDDY_NR_ORDERS 30u /* orders 0..29: 4 KiB .. 2 TiB */

/* alloc flags */
#define BUDDY_CONTIG 0x1u /* the block must be physically contiguous */

/* Says whether [offset, offset+len) is physically contiguous (the region's runs).  The
 * buddy asks only for blocks larger than page_size: smaller ones lie inside one page. */
typedef bool (*buddy_contig_fn)(void *ctx, uint64_t offset, uint64_t len);

typedef struct buddy_stats {
  uint64_t size; /* bytes managed */
  uint64_t free_bytes;
  uint64_t largest_free;             /* bytes of the largest free block (0 if none) */
  uint64_t nr_free[BUDDY_NR_ORDERS]; /* free blocks per order (/proc/buddyinfo) */
  int frag_index[BUDDY_NR_ORDERS];   /* Linux __fragmentation_index: -1000 when a block of
                                        that order is free, else 0..1000 */
  unsigned max_order;                /* largest order any block can have here */
  uint64_t nr_alloc_blocks;          /* blocks currently allocated */
  uint64_t allocs, frees, splits, merges, failures; /* cumulative counters */
} buddy_stats_t;

typedef struct buddy buddy_t;

/* size: a multiple of 4 KiB (not necessarily a power of two), >0.  page_size: the region's
 * page size (blocks no larger are contiguous by construction).  contig may be NULL: then
 * contiguous blocks larger than page_size are never available (PP_ENOCONTIG). */
int buddy_create(uint64_t size, uint64_t page_size, buddy_contig_fn contig, void *ctx,
                 buddy_t **ret); /* PP_EINVAL, PP_ERANGE, PP_ENOPRIVMEM (the metadata) */
void buddy_destroy(buddy_t *b);

/* Smallest order whose block holds size bytes; PP_ERANGE for 0 or too large. */
int buddy_order_for_size(uint64_t size, unsigned *ret_order);
static inline uint64_t buddy_order_size(unsigned order) {
  return BUDDY_MIN_SIZE << order;
}

/* Errors: PP_ERANGE (order too big for this region), PP_ENOMEM (no free block of that
 * order: the region is full), PP_ENOCONTIG. */
int buddy_alloc(buddy_t *b, unsigned order, unsigned flags, uint64_t *ret_offset);
/* Errors: PP_ERANGE (outside the region), PP_ENOTBLOCK (not the start of an allocated
 * block), PP_EDOUBLEFREE (the start of a free block).  State unchanged on error. */
int buddy_free(buddy_t *b, uint64_t offset);
/* Take exactly the block [offset, offset + 2^order pages).  Errors: PP_ERANGE, PP_EINVAL
 * (misaligned), PP_EBUSY (any part already allocated). */
int buddy_reserve(buddy_t *b, uint64_t offset, unsigned order);
/* Order of the allocated block starting at offset; PP_ENOTBLOCK otherwise. */
int buddy_block_order(buddy_t *b, uint64_t offset, unsigned *ret_order);

void buddy_get_stats(buddy_t *b, buddy_stats_t *ret);
/* Bytes of the largest block a BUDDY_CONTIG alloc would get now: the largest free block
 * when it is no larger than the page size, else the largest contiguous one found the way
 * buddy_alloc searches (0 when nothing is free).  O(free pages) callback calls at worst:
 * for operators, not for the allocation path. */
uint64_t buddy_largest_free_contig(buddy_t *b);

/* Visit every block, free and allocated, in offset order (under the lock: fn must not
 * call back into the buddy). */
typedef void (*buddy_walk_fn)(void *ctx, uint64_t offset, unsigned order, bool is_free);
void buddy_walk(buddy_t *b, buddy_walk_fn fn, void *ctx);

/* Validator: returns 0, or PP_ECORRUPT with the first violation written to why. */
int buddy_check(buddy_t *b, char *why, size_t why_len);
/* /proc/buddyinfo-shaped dump plus the free lists (debugging). */
void buddy_dump(buddy_t *b, FILE *out);

#endif /* PP_BUDDY_H */
