/*
 * buddy.c — the binary buddy allocator over a region's offsets.
 *
 * WHAT
 *   Hands out naturally aligned blocks of 2^k pages (a page here is always 4 KiB, the
 *   allocator's atom; the region's own page size may be 2 MiB or 1 GiB) from a range of
 *   offsets [0, size).  It never touches the region itself: every byte of metadata lives in
 *   daemon-private malloc memory, so a client that scribbles over the shared region cannot
 *   corrupt the allocator (see docs/ARCHITECTURE.md, "Where metadata lives").
 *
 * ALGORITHM (Knowlton 1965; Knuth TAOCP vol. 1 §2.5; the layout follows SQLite's mem5.c)
 *   - Order k blocks are 2^k pages long and start at a page index that is a multiple of 2^k.
 *     The buddy of the block at page p of order k is the block at p ^ 2^k.
 *   - alloc(k) takes the first block of the smallest non-empty free list of order j >= k
 *     (a 64-bit mask of non-empty lists makes that one count-trailing-zeros), and splits it
 *     j-k times: each split keeps the lower half and pushes the upper half onto the free
 *     list one order down.
 *   - free(p) coalesces repeatedly: while the buddy is a whole free block of the same order
 *     and the merged block stays inside p's top-level block, unlink the buddy and merge.
 *   - A region that is not a power of two pages long is covered by several top-level blocks:
 *     the binary decomposition of its page count, largest first (each is then naturally
 *     aligned), with orders capped at BUDDY_NR_ORDERS-1.  Because of that layout, any
 *     naturally aligned 2^k-page range inside [0, npages) lies inside one top-level block
 *     (reserve relies on it), and the order of the top-level block holding page p is the
 *     highest bit in which p and npages differ (free computes its merge limit so, once).
 *   - reserve(p, k) finds the block that contains page p by probing the aligned heads
 *     p & ~(2^j - 1) for j = k..max_order (O(orders)); if it is free it is split down so
 *     that exactly [p, p + 2^k) becomes an allocated block (the other halves return to the
 *     free lists); if it is allocated, or smaller than 2^k (then, by the coalescing
 *     invariant below, some page of the range is allocated), the answer is PP_EBUSY.
 *   - Physically contiguous allocation (BUDDY_CONTIG): a block no larger than the region's
 *     page size lies inside one page and is contiguous by construction.  A larger one is
 *     handed out only when the contig callback (the region's runs of physically consecutive
 *     pages) says so: the free lists of order k and up are searched, smallest order first;
 *     for each free block the whole block is asked about first and, failing that, each of
 *     its aligned 2^k-page sub-blocks; the first contiguous candidate is carved out of its
 *     free block exactly as reserve does.  This costs O(free pages / 2^k) callback calls in
 *     the worst case, i.e. at most one per region page of the larger page sizes.
 *
 * METADATA: 12 bytes per 4 KiB page (0.29%: 3 MiB per GiB of region), plus a fixed header.
 *   pg[p].info  4 bytes: HEAD (a block starts at p) | FREE | order (5 bits).  Pages inside a
 *                        block that do not start it hold 0.
 *   pg[p].next, pg[p].prev  4 bytes each: the page indices of the neighbours on the free
 *                        list p is on; meaningful only where info is HEAD|FREE.  The lists
 *                        are circular, so no index is reserved as a sentinel and the full
 *                        2^32 pages (16 TiB) can be managed; the per-order list heads are
 *                        uint64 with LIST_EMPTY.
 *   Why not mem5's 1-byte control array beside a separate link array (9 bytes): blocks of
 *   a large region start at multiples of 4 KiB pages, so both arrays put every level's entry
 *   at a multiple of 4096 bytes — one L1 set — and a deep split or merge thrashed that set
 *   (cachegrind: 12 L1 misses per alloc+free pair on a 1 GiB region; 0 with one 12-byte
 *   entry per page), and a byte store forced the compiler to reload every field it might
 *   alias.  Every free-list operation is O(1); alloc is O(orders) splits, free O(orders)
 *   merges.
 *
 * INVARIANTS (checked by buddy_check(); after every state change when PP_DEBUG=3)
 *   I1 The blocks (free and allocated) tile [0, npages) exactly: walking from page 0 by
 *      block sizes visits only HEAD pages and ends at npages; non-head pages hold info 0.
 *   I2 Every block is naturally aligned, has order <= max_order and ends inside the region.
 *   I3 Fully coalesced: no free block has a free buddy of the same order that could merge.
 *   I4 List k holds exactly the free blocks of order k, each once; nr_free[k] is its length;
 *      bit k of avail is set iff list k is non-empty.
 *   I5 free_pages = sum of free block sizes; nr_alloc = allocated blocks = allocs - frees;
 *      number of blocks = top-level blocks + splits - merges.
 *   Consequence of I3 used by reserve: an aligned 2^k-page range that is entirely free lies
 *   inside a single free block of order >= k.
 *
 * LOCKS
 *   One pthread mutex, b->lock, protects everything in struct buddy.  Public functions take
 *   it and call the static *_unsafe() internals, which expect it held.  It is a leaf lock:
 *   the contig callback runs under it and must not call back into the buddy; slab caches
 *   and the daemon take their own locks first and this one last.
 *
 * FRAGMENTATION INDEX
 *   Exactly Linux's __fragmentation_index() (mm/vmstat.c, Mel Gorman): for order k with
 *   requested = 2^k pages: 0 when nothing is free; -1000 when a free block of order >= k
 *   exists; else 1000 - (1000 + free_pages * 1000 / requested) / free_blocks_total, in
 *   integer arithmetic.  Towards 1000 a failure is due to fragmentation, towards 0 due to
 *   lack of memory; like Linux's, the value can dip below 0 when only a handful of small
 *   blocks are free (one free block of half the size gives -500).
 *
 * REFERENCES
 *   K. C. Knowlton, "A fast storage allocator", CACM 8(10), 1965.
 *   D. E. Knuth, TAOCP vol. 1, §2.5 "Dynamic Storage Allocation" (the buddy system).
 *   SQLite src/mem5.c; Linux mm/page_alloc.c (__free_one_page), mm/vmstat.c (buddyinfo,
 *   __fragmentation_index).
 */
#define _GNU_SOURCE
#include "buddy.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"

#define BUDDY_MAX_ORDER (BUDDY_NR_ORDERS - 1u)
#define BUDDY_MAX_PAGES (1ull << 32) /* page indices fit the uint32 links */

#define META_ORDER 0x1fu /* bits 0-4: the block's order */
#define META_FREE 0x20u  /* the block is on a free list */
#define META_HEAD 0x40u  /* a block starts at this page */

#define LIST_EMPTY UINT64_MAX

_Static_assert(BUDDY_NR_ORDERS <= 64, "avail is a uint64_t mask of orders");
_Static_assert(BUDDY_MAX_ORDER <= META_ORDER, "an order fits the info bits");

/* Everything the allocator knows about one 4 KiB page, in one place so that a split or a
 * merge touches one cache line per block.  info is a uint32_t rather than a byte so that
 * the compiler need not assume its stores alias the allocator's other fields. */
typedef struct buddy_page {
  uint32_t next, prev; /* page indices on the same circular free list (free heads only) */
  uint32_t info;       /* HEAD | FREE | order; 0 for a page inside a block */
} buddy_page_t;

struct buddy {
  pthread_mutex_t lock;
  uint64_t size;       /* bytes managed: npages * 4 KiB */
  uint64_t npages;     /* 1 .. 2^32 */
  uint64_t page_size;  /* the region's page size; blocks no larger need no contig check */
  unsigned page_order; /* log2(page_size / 4 KiB) */
  unsigned max_order;  /* largest order a block can have here */
  buddy_contig_fn contig;
  void *contig_ctx;
  buddy_page_t *pg;                  /* [npages] */
  uint64_t head[BUDDY_NR_ORDERS];    /* first page of each free list, LIST_EMPTY if none */
  uint64_t nr_free[BUDDY_NR_ORDERS]; /* length of each free list */
  uint64_t avail;                    /* bit k set iff free list k is non-empty; 64-bit so
                                        that it cannot alias the uint32_t page fields */
  uint64_t nr_top;                   /* top-level blocks covering the region */
  uint64_t free_pages;
  uint64_t nr_alloc; /* allocated blocks */
  uint64_t allocs, frees, splits, merges, failures;
};

static inline uint64_t pages_of(unsigned order) {
  return 1ull << order;
}
static inline unsigned log2_floor(uint64_t x) {
  return 63u - (unsigned)__builtin_clzll(x);
}

/* ---- free lists --------------------------------------------------------------------- */

/* Push the block at page p onto list k and mark it a free head.  LIFO: the block freed
 * last is handed out first, while its metadata is still in cache. */
static inline __attribute__((always_inline)) void list_push_unsafe(buddy_t *b, uint64_t p,
                                                                   unsigned k) {
  PP_IASSERT(p < b->npages && k <= b->max_order && (p & (pages_of(k) - 1)) == 0);
  uint32_t p32 = (uint32_t)p;
  uint64_t h = b->head[k];
  if (h == LIST_EMPTY) {
    b->pg[p].next = b->pg[p].prev = p32;
    b->avail |= 1ull << k;
  } else {
    uint32_t last = b->pg[h].prev;
    b->pg[p].next = (uint32_t)h;
    b->pg[p].prev = last;
    b->pg[last].next = p32;
    b->pg[h].prev = p32;
  }
  b->head[k] = p;
  b->nr_free[k]++;
  b->pg[p].info = META_HEAD | META_FREE | k;
}

/* Unlink the free block at page p from list k; its info word is the caller's to rewrite. */
static inline __attribute__((always_inline)) void list_remove_unsafe(buddy_t *b, uint64_t p,
                                                                     unsigned k) {
  PP_IASSERT(p < b->npages && b->pg[p].info == (META_HEAD | META_FREE | k));
  PP_IASSERT(b->nr_free[k] > 0);
  uint32_t next = b->pg[p].next, prev = b->pg[p].prev;
  if (next == (uint32_t)p) {
    b->head[k] = LIST_EMPTY;
    b->avail &= ~(1ull << k);
  } else {
    b->pg[prev].next = next;
    b->pg[next].prev = prev;
    if (b->head[k] == p) b->head[k] = next;
  }
  b->nr_free[k]--;
}

/* ---- core operations ------------------------------------------------------------------ */

/* Take the free block q (order j) off its list and split it down until the 2^k-page block
 * at s (inside q, aligned) is a block of its own; mark s allocated.  The halves not on the
 * way to s go back to the free lists. */
static inline __attribute__((always_inline)) void
carve_unsafe(buddy_t *b, uint64_t q, unsigned j, uint64_t s, unsigned k) {
  PP_IASSERT(j >= k && s >= q && s + pages_of(k) <= q + pages_of(j));
  PP_IASSERT((s & (pages_of(k) - 1)) == 0);
  list_remove_unsafe(b, q, j);
  b->splits += j - k;
  /* The bits of s - q say which half leads to s at each level; alloc passes s == q, and
   * then the compiler drops the test from the inlined loop. */
  uint64_t rel = s - q;
  while (j > k) {
    j--;
    uint64_t half = pages_of(j);
    if (rel & half) {
      list_push_unsafe(b, q, j);
      q += half;
    } else {
      list_push_unsafe(b, q + half, j);
    }
  }
  PP_IASSERT(q == s);
  b->pg[s].info = META_HEAD | k;
  b->free_pages -= pages_of(k);
  b->nr_alloc++;
}

/* Find a free block q of order *ret_j >= k holding a physically contiguous, aligned 2^k-page
 * block s.  Smallest orders first, so that the least is split. */
static bool find_contig_unsafe(buddy_t *b, unsigned k, uint64_t *ret_q, unsigned *ret_j,
                               uint64_t *ret_s) {
  PP_IASSERT(k > b->page_order && k <= b->max_order);
  if (!b->contig) return false;
  uint64_t len = BUDDY_MIN_SIZE << k;
  for (unsigned j = k; j <= b->max_order; j++) {
    uint64_t h = b->head[j];
    if (h == LIST_EMPTY) continue;
    uint64_t q = h;
    do {
      uint64_t s = q, end = q + pages_of(j);
      /* A contiguous whole block makes its first sub-block the answer in one call. */
      if (b->contig(b->contig_ctx, q << BUDDY_MIN_SHIFT, BUDDY_MIN_SIZE << j)) goto found;
      if (j > k) {
        for (s = q; s < end; s += pages_of(k))
          if (b->contig(b->contig_ctx, s << BUDDY_MIN_SHIFT, len)) goto found;
      }
      q = b->pg[q].next;
      continue;
    found:
      *ret_q = q;
      *ret_j = j;
      *ret_s = s;
      return true;
    } while (q != h);
  }
  return false;
}

static int buddy_check_unsafe(buddy_t *b, char *why, size_t why_len);

static int alloc_unsafe(buddy_t *b, unsigned order, unsigned flags, uint64_t *ret_offset) {
  if (order > b->max_order) return PP_ERANGE;
  uint64_t fit = b->avail & ~((1ull << order) - 1u);
  if (!fit) {
    b->failures++;
    return PP_ENOMEM;
  }
  unsigned j = (unsigned)__builtin_ctzll(fit);
  uint64_t q = b->head[j], s = q;
  if ((flags & BUDDY_CONTIG) && order > b->page_order &&
      !find_contig_unsafe(b, order, &q, &j, &s)) {
    b->failures++;
    return PP_ENOCONTIG;
  }
  if (s == q)
    carve_unsafe(b, q, j, q, order); /* the common case, specialised */
  else
    carve_unsafe(b, q, j, s, order);
  b->allocs++;
  *ret_offset = s << BUDDY_MIN_SHIFT;
  return 0;
}

static int free_unsafe(buddy_t *b, uint64_t offset) {
  if (offset >= b->size) return PP_ERANGE;
  if (offset & (BUDDY_MIN_SIZE - 1)) return PP_ENOTBLOCK;
  uint64_t p = offset >> BUDDY_MIN_SHIFT;
  unsigned m = b->pg[p].info;
  if (!(m & META_HEAD)) return PP_ENOTBLOCK;
  if (m & META_FREE) return PP_EDOUBLEFREE;
  unsigned k = m & META_ORDER;
  b->nr_alloc--;
  b->free_pages += pages_of(k);
  b->frees++;
  /* Coalescing stops at the top-level block holding p.  Its order is that of the highest
   * bit in which p and npages differ: the top-level blocks are npages' binary decomposition
   * (capped at the largest order). */
  unsigned top = log2_floor(p ^ b->npages), k0 = k;
  if (top > BUDDY_MAX_ORDER) top = BUDDY_MAX_ORDER;
  while (k < top) {
    uint64_t bud = p ^ pages_of(k);
    if (b->pg[bud].info != (META_HEAD | META_FREE | k)) break;
    list_remove_unsafe(b, bud, k);
    b->pg[p | pages_of(k)].info = 0; /* the upper half is no block head any more */
    p &= ~pages_of(k);
    k++;
  }
  b->merges += k - k0;
  list_push_unsafe(b, p, k);
  return 0;
}

static int reserve_unsafe(buddy_t *b, uint64_t offset, unsigned order) {
  if (order > BUDDY_MAX_ORDER) return PP_ERANGE;
  if (offset & (BUDDY_MIN_SIZE - 1)) return PP_EINVAL;
  uint64_t p = offset >> BUDDY_MIN_SHIFT;
  if (p >= b->npages || pages_of(order) > b->npages - p) return PP_ERANGE;
  if (p & (pages_of(order) - 1)) return PP_EINVAL;
  for (unsigned j = order; j <= b->max_order; j++) {
    uint64_t q = p & ~(pages_of(j) - 1);
    unsigned m = b->pg[q].info;
    if ((m & META_HEAD) && (m & META_ORDER) == j) {
      if (!(m & META_FREE)) return PP_EBUSY;
      carve_unsafe(b, q, j, p, order);
      b->allocs++;
      return 0;
    }
  }
  /* The block holding p is smaller than the range: by I3 part of the range is taken. */
  return PP_EBUSY;
}

/* ---- public entry points ---------------------------------------------------------------- */

int buddy_order_for_size(uint64_t size, unsigned *ret_order) {
  if (!ret_order || size == 0 || size > buddy_order_size(BUDDY_MAX_ORDER)) return PP_ERANGE;
  uint64_t pages = (size + BUDDY_MIN_SIZE - 1) >> BUDDY_MIN_SHIFT;
  *ret_order = pages == 1 ? 0 : log2_floor(pages - 1) + 1;
  return 0;
}

int buddy_create(uint64_t size, uint64_t page_size, buddy_contig_fn contig, void *ctx,
                 buddy_t **ret) {
  int rc = PP_ENOPRIVMEM;
  if (!ret || size == 0 || (size & (BUDDY_MIN_SIZE - 1))) return PP_EINVAL;
  if (page_size < BUDDY_MIN_SIZE || (page_size & (page_size - 1))) return PP_EINVAL;
  uint64_t npages = size >> BUDDY_MIN_SHIFT;
  if (npages > BUDDY_MAX_PAGES) return PP_ERANGE;

  buddy_t *b = calloc(1, sizeof *b);
  if (!b) goto out;
  b->pg = calloc(npages, sizeof *b->pg);
  if (!b->pg) goto out;
  if (pthread_mutex_init(&b->lock, NULL) != 0) {
    rc = PP_EOS;
    goto out;
  }
  b->size = size;
  b->npages = npages;
  b->page_size = page_size;
  b->page_order = log2_floor(page_size >> BUDDY_MIN_SHIFT);
  b->max_order = log2_floor(npages);
  if (b->max_order > BUDDY_MAX_ORDER) b->max_order = BUDDY_MAX_ORDER;
  b->contig = contig;
  b->contig_ctx = ctx;
  for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++)
    b->head[k] = LIST_EMPTY;
  for (uint64_t p = 0; p < npages;) {
    unsigned k = log2_floor(npages - p);
    if (k > BUDDY_MAX_ORDER) k = BUDDY_MAX_ORDER;
    PP_IASSERT((p & (pages_of(k) - 1)) == 0);
    list_push_unsafe(b, p, k);
    b->free_pages += pages_of(k);
    b->nr_top++;
    p += pages_of(k);
  }
  PP_VALIDATE(buddy_check_unsafe, b);
  *ret = b;
  return 0;
out:
  if (b) {
    free(b->pg);
    free(b);
  }
  return rc;
}

void buddy_destroy(buddy_t *b) {
  if (!b) return;
  pthread_mutex_destroy(&b->lock);
  free(b->pg);
  free(b);
}

int buddy_alloc(buddy_t *b, unsigned order, unsigned flags, uint64_t *ret_offset) {
  if (!b || !ret_offset || (flags & ~BUDDY_CONTIG)) return PP_EINVAL;
  pthread_mutex_lock(&b->lock);
  int rc = alloc_unsafe(b, order, flags, ret_offset);
  if (rc == 0) PP_VALIDATE(buddy_check_unsafe, b);
  pthread_mutex_unlock(&b->lock);
  return rc;
}

int buddy_free(buddy_t *b, uint64_t offset) {
  if (!b) return PP_EINVAL;
  pthread_mutex_lock(&b->lock);
  int rc = free_unsafe(b, offset);
  if (rc == 0) PP_VALIDATE(buddy_check_unsafe, b);
  pthread_mutex_unlock(&b->lock);
  return rc;
}

int buddy_reserve(buddy_t *b, uint64_t offset, unsigned order) {
  if (!b) return PP_EINVAL;
  pthread_mutex_lock(&b->lock);
  int rc = reserve_unsafe(b, offset, order);
  if (rc == 0) PP_VALIDATE(buddy_check_unsafe, b);
  pthread_mutex_unlock(&b->lock);
  return rc;
}

int buddy_block_order(buddy_t *b, uint64_t offset, unsigned *ret_order) {
  if (!b || !ret_order) return PP_EINVAL;
  int rc = PP_ENOTBLOCK;
  pthread_mutex_lock(&b->lock);
  if (offset < b->size && !(offset & (BUDDY_MIN_SIZE - 1))) {
    unsigned m = b->pg[offset >> BUDDY_MIN_SHIFT].info;
    if ((m & (META_HEAD | META_FREE)) == META_HEAD) {
      *ret_order = m & META_ORDER;
      rc = 0;
    }
  }
  pthread_mutex_unlock(&b->lock);
  return rc;
}

/* ---- stats, walk, dump --------------------------------------------------------------------
 */

static void stats_unsafe(buddy_t *b, buddy_stats_t *s) {
  memset(s, 0, sizeof *s);
  s->size = b->size;
  s->free_bytes = b->free_pages << BUDDY_MIN_SHIFT;
  s->largest_free = b->avail ? buddy_order_size(log2_floor(b->avail)) : 0;
  s->max_order = b->max_order;
  s->nr_alloc_blocks = b->nr_alloc;
  s->allocs = b->allocs;
  s->frees = b->frees;
  s->splits = b->splits;
  s->merges = b->merges;
  s->failures = b->failures;
  uint64_t total = 0;
  for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
    s->nr_free[k] = b->nr_free[k];
    total += b->nr_free[k];
  }
  /* Linux mm/vmstat.c __fragmentation_index(), same integer arithmetic. */
  for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
    uint64_t requested = pages_of(k);
    if (total == 0)
      s->frag_index[k] = 0;
    else if (b->avail >> k)
      s->frag_index[k] = -1000;
    else
      s->frag_index[k] =
          (int)(1000 - (int64_t)((1000 + b->free_pages * 1000 / requested) / total));
  }
}

/* Largest order k for which a BUDDY_CONTIG alloc would succeed now: any free block up to
 * the page size is contiguous by construction; above it, the same search alloc makes. */
static uint64_t largest_free_contig_unsafe(buddy_t *b) {
  uint64_t q, s;
  unsigned j;
  if (!b->avail) return 0;
  unsigned top = log2_floor(b->avail);
  for (unsigned k = top; k > b->page_order; k--)
    if (find_contig_unsafe(b, k, &q, &j, &s)) return buddy_order_size(k);
  return buddy_order_size(top < b->page_order ? top : b->page_order);
}

uint64_t buddy_largest_free_contig(buddy_t *b) {
  if (!b) return 0;
  pthread_mutex_lock(&b->lock);
  uint64_t n = largest_free_contig_unsafe(b);
  pthread_mutex_unlock(&b->lock);
  return n;
}

void buddy_get_stats(buddy_t *b, buddy_stats_t *ret) {
  if (!b || !ret) return;
  pthread_mutex_lock(&b->lock);
  stats_unsafe(b, ret);
  pthread_mutex_unlock(&b->lock);
}

void buddy_walk(buddy_t *b, buddy_walk_fn fn, void *ctx) {
  if (!b || !fn) return;
  pthread_mutex_lock(&b->lock);
  for (uint64_t p = 0; p < b->npages;) {
    unsigned m = b->pg[p].info;
    PP_IASSERT(m & META_HEAD);
    unsigned k = m & META_ORDER;
    fn(ctx, p << BUDDY_MIN_SHIFT, k, (m & META_FREE) != 0);
    p += pages_of(k);
  }
  pthread_mutex_unlock(&b->lock);
}

void buddy_dump(buddy_t *b, FILE *out) {
  if (!b || !out) return;
  pthread_mutex_lock(&b->lock);
  /* The shape of /proc/buddyinfo: "Node %d, zone %8s " then "%6lu " per order. */
  fprintf(out, "Node 0, zone %8s ", "pinpool");
  for (unsigned k = 0; k <= b->max_order; k++)
    fprintf(out, "%6" PRIu64 " ", b->nr_free[k]);
  fputc('\n', out);
  fprintf(out,
          "size %" PRIu64 " free %" PRIu64 " allocated blocks %" PRIu64 " allocs %" PRIu64
          " frees %" PRIu64 " splits %" PRIu64 " merges %" PRIu64 " failures %" PRIu64 "\n",
          b->size, b->free_pages << BUDDY_MIN_SHIFT, b->nr_alloc, b->allocs, b->frees,
          b->splits, b->merges, b->failures);
  for (unsigned k = 0; k <= b->max_order; k++) {
    uint64_t h = b->head[k];
    if (h == LIST_EMPTY) continue;
    fprintf(out, "order %2u (%" PRIu64 " KiB):", k, buddy_order_size(k) >> 10);
    uint64_t q = h;
    do {
      fprintf(out, " 0x%" PRIx64, q << BUDDY_MIN_SHIFT);
      q = b->pg[q].next;
    } while (q != h);
    fputc('\n', out);
  }
  pthread_mutex_unlock(&b->lock);
}

/* ---- validator ------------------------------------------------------------------------------
 */

static int buddy_check_unsafe(buddy_t *b, char *why, size_t why_len) {
  uint64_t cnt[BUDDY_NR_ORDERS] = {0};
  uint64_t free_pages = 0, nr_alloc = 0, nr_blocks = 0;
  const unsigned free_head = META_HEAD | META_FREE;

  /* I1, I2, I3: walk the tiling. */
  for (uint64_t p = 0; p < b->npages;) {
    unsigned m = b->pg[p].info;
    if (!(m & META_HEAD))
      return pp_corrupt(why, why_len, "page %" PRIu64 " is covered by no block", p);
    if (m & ~(META_HEAD | META_FREE | META_ORDER))
      return pp_corrupt(why, why_len, "page %" PRIu64 ": stray info bits 0x%x", p, m);
    unsigned k = m & META_ORDER;
    uint64_t n = pages_of(k);
    if (k > b->max_order)
      return pp_corrupt(why, why_len, "block at page %" PRIu64 ": order %u > max order %u", p,
                        k, b->max_order);
    if (p & (n - 1))
      return pp_corrupt(why, why_len, "block at page %" PRIu64 " of order %u is misaligned", p,
                        k);
    if (n > b->npages - p)
      return pp_corrupt(why, why_len,
                        "block at page %" PRIu64 " of order %u ends past the region", p, k);
    for (uint64_t i = p + 1; i < p + n; i++)
      if (b->pg[i].info)
        return pp_corrupt(why, why_len,
                          "page %" PRIu64 " inside block %" PRIu64 "/order %u has info 0x%x "
                          "(overlapping blocks)",
                          i, p, k, b->pg[i].info);
    if (m & META_FREE) {
      cnt[k]++;
      free_pages += n;
      uint64_t bud = p ^ n;
      if (k < b->max_order && bud + n <= b->npages && b->pg[bud].info == (free_head | k))
        return pp_corrupt(why, why_len,
                          "free buddies at pages %" PRIu64 " and %" PRIu64 " of order %u not "
                          "coalesced",
                          p, bud, k);
    } else {
      nr_alloc++;
    }
    nr_blocks++;
    p += n;
  }

  /* I4: the lists. */
  for (unsigned k = 0; k < BUDDY_NR_ORDERS; k++) {
    uint64_t h = b->head[k];
    bool bit = (b->avail >> k) & 1u;
    if (h == LIST_EMPTY) {
      if (bit || b->nr_free[k] || cnt[k])
        return pp_corrupt(why, why_len,
                          "order %u: list empty but avail bit %d, nr_free %" PRIu64 ", %" PRIu64
                          " free blocks",
                          k, bit, b->nr_free[k], cnt[k]);
      continue;
    }
    if (!bit)
      return pp_corrupt(why, why_len, "order %u: list non-empty but avail bit clear", k);
    if (k > b->max_order) return pp_corrupt(why, why_len, "order %u > max order has a list", k);
    if (h >= b->npages)
      return pp_corrupt(why, why_len, "order %u: head %" PRIu64 " out of range", k, h);
    uint64_t len = 0, q = h;
    do {
      if (b->pg[q].info != (free_head | k))
        return pp_corrupt(why, why_len,
                          "order %u list holds page %" PRIu64 " with info 0x%x, not a free "
                          "block of that order",
                          k, q, b->pg[q].info);
      uint64_t next = b->pg[q].next;
      if (next >= b->npages || b->pg[next].prev != q)
        return pp_corrupt(why, why_len, "order %u list: broken link after page %" PRIu64, k, q);
      if (++len > cnt[k])
        return pp_corrupt(why, why_len,
                          "order %u list longer than its %" PRIu64 " free blocks (cycle or "
                          "duplicate)",
                          k, cnt[k]);
      q = next;
    } while (q != h);
    if (len != cnt[k])
      return pp_corrupt(why, why_len,
                        "order %u: list holds %" PRIu64 " of %" PRIu64 " free blocks", k, len,
                        cnt[k]);
    if (b->nr_free[k] != len)
      return pp_corrupt(why, why_len, "order %u: nr_free %" PRIu64 " but list length %" PRIu64,
                        k, b->nr_free[k], len);
  }

  /* I5: counters. */
  if (free_pages != b->free_pages)
    return pp_corrupt(why, why_len, "free_pages %" PRIu64 " but free blocks hold %" PRIu64,
                      b->free_pages, free_pages);
  if (nr_alloc != b->nr_alloc)
    return pp_corrupt(why, why_len, "nr_alloc %" PRIu64 " but %" PRIu64 " allocated blocks",
                      b->nr_alloc, nr_alloc);
  if (b->allocs - b->frees != nr_alloc)
    return pp_corrupt(why, why_len,
                      "allocs %" PRIu64 " - frees %" PRIu64 " != %" PRIu64 " allocated blocks",
                      b->allocs, b->frees, nr_alloc);
  if (b->nr_top + b->splits - b->merges != nr_blocks)
    return pp_corrupt(why, why_len,
                      "%" PRIu64 " top blocks + %" PRIu64 " splits - %" PRIu64
                      " merges != %" PRIu64 " blocks",
                      b->nr_top, b->splits, b->merges, nr_blocks);
  return 0;
}

int buddy_check(buddy_t *b, char *why, size_t why_len) {
  if (!b) return PP_EINVAL;
  pthread_mutex_lock(&b->lock);
  int rc = buddy_check_unsafe(b, why, why_len);
  pthread_mutex_unlock(&b->lock);
  return rc;
}
