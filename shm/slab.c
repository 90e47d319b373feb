/*
 * slab.c — object caches over the buddy allocator (Bonwick 1994, "The Slab Allocator").
 *
 * WHAT
 *   A cache hands out objects of one geometry (object size, alignment) as offsets into the
 *   region.  Objects are carved from slabs; a slab is one buddy block of 2^k pages.  The
 *   caches of one buddy allocator live in a registry (slab_t), found by name or by a small
 *   stable id (from a counter: never reused while the registry lives, so an id kept after
 *   its cache was destroyed can only miss).  The registry's array holds the live caches in
 *   id order, so an id is found by binary search; a cache created with a given id (see
 *   RESTART) is inserted where its id belongs and moves the counter past it.
 *
 * GEOMETRY
 *   stride = object_size rounded up to align.  The slab order k is the smallest in
 *   0..SLAB_MAX_ORDER such that a slab holds at least SLAB_MIN_OBJS objects and its unused
 *   tail (slab bytes - objs * stride) is at most 1/8 of the slab — Bonwick's bound on
 *   internal fragmentation.  Objects are limited to SLAB_MAX_OBJECT, an eighth of the
 *   largest slab, so the largest order always qualifies: it holds >= 8 objects and its tail
 *   is shorter than one stride, i.e. <= 1/8 of the slab.  Bigger requests belong to the
 *   buddy allocator (PP_ERANGE here).  slab_geometry() computes all of it from
 *   (object_size, align) alone, which is what lets a restarted daemon lay out a cache's
 *   slabs exactly as the daemon before it did.
 *
 * COLORING
 *   The unused tail is spent as a color: successive slabs start their first object at
 *   0, 1, 2, ... color units (a cache line, or align when larger) from the slab base, cycling
 *   through tail / unit + 1 colors, so equal-index objects of different slabs do not all map
 *   to the same cache sets.  The color counter only picks colors for slabs a cache grows
 *   itself; any value of it gives a legal color, so a reserved slab (below), whose color
 *   comes from its object, neither reads nor advances it.
 *
 * OFF-SLAB METADATA
 *   Clients can write every byte of the region, so nothing about allocation state lives
 *   there.  Each slab has a private descriptor (slab_blk_t) with a stack of free object
 *   indices (LIFO: the most recently freed object, still warm in cache, goes out first) and
 *   a bitmap of allocated objects, which makes free() able to tell a double free from a
 *   bad offset.  A per-cache hash table keyed by slab base (offset & ~(slab_bytes - 1);
 *   buddy blocks are naturally aligned) finds the descriptor of any offset in O(1); free()
 *   first tries the slab it found last (frees come in runs from one slab), and turns the
 *   offset into an object index with an exact reciprocal multiply instead of a divide.
 *
 * STATES AND ORDER
 *   Each slab is on exactly one of three lists by its inuse count: full (inuse ==
 *   capacity), partial (0 < inuse < capacity), empty (inuse == 0).  Allocation takes from
 *   a partial slab first (keeps the number of partly used slabs low), then an empty one,
 *   and grows a new slab from the buddy only as a last resort.  Free moves slabs back;
 *   when a slab becomes empty and more than SLAB_EMPTY_KEEP empty slabs exist, it goes
 *   back to the buddy at once (a small working set absorbs alloc/free ping-pong at a slab
 *   boundary without a buddy round trip each time).  shrink() returns every empty slab.
 *
 * DESTROY
 *   slab_cache_destroy() takes a cache out of the registry (its name can be created again,
 *   with a new id) and returns its slabs, all empty, to the buddy.  A cache with allocated
 *   objects — magazines count: drain them first — is PP_EBUSY and stays as it was.
 *
 * RESTART
 *   A restarted daemon adopts the region (contents intact) and rebuilds its allocators from
 *   a journal of who held what.  Caches come back with slab_cache_create_with_id (same id,
 *   name and geometry); each object a session held comes back with slab_cache_reserve.
 *   Objects that were free or parked in magazines at the crash are simply free afterwards.
 *   The ids of caches destroyed before the crash are skipped with slab_skip_ids (the
 *   counter only moves forward), so a stale id still only misses.
 *   Reserving offset: its slab is the block base = offset & ~(slab_bytes - 1).  If the
 *   cache has that slab, the object's bit is set and its index taken off the free stack
 *   (a scan: replay is rare, the stack is at most objs long).  If not, the block is taken
 *   with buddy_reserve and becomes a slab whose color is the one that puts an object start
 *   at offset: (offset - base) % stride — unique, as the tail is shorter than a stride.
 *   That color must be one a cache can give (a multiple of the unit within the tail) and
 *   offset must not lie in the tail, or offset was never an object of this geometry
 *   (PP_ENOTBLOCK).  A reserved slab is then like any other: the invariants below hold for
 *   it unchanged.  The bulk form is all or nothing in two passes, like bulk free: pass 1
 *   creates missing slabs and sets bits (so duplicates in the batch meet a set bit), pass 2
 *   fixes the free stacks, counts and lists; an error in pass 1 clears the bits it set and
 *   returns the slabs it created to the buddy.  Only the buddy's cumulative counters show
 *   the attempt.
 *
 * INVARIANTS (slab_cache_check, and slab_check for the registry)
 *   - registry: ids strictly increase along the array and stay below the id counter; each
 *     cache is found by its name, and the name hash holds exactly the caches of the array;
 *   - every slab is on the list its inuse count says and is in the hash table exactly once,
 *     under its own base; bases are slab-aligned and distinct, each a buddy block of the
 *     cache's order;
 *   - per slab: 0 <= inuse <= capacity; bitmap popcount == inuse; the free stack holds
 *     capacity - inuse distinct indices, each with its bitmap bit clear; the color is a
 *     multiple of the color unit and fits in the tail;
 *   - per cache: list lengths, slab count and active object count agree with the slabs.
 *
 * LOCKS, in the order they are taken
 *   1. slab_t.lock — the registry: the id array, the name hash, creation.  Never held
 *      while a cache lock is taken (foreach copies the cache array first).
 *   2. slab_cache_t.lock — everything in one cache: lists, hash, descriptors, counters.
 *      A spin-then-yield lock, not a pthread mutex: see cache_lock() for why.
 *   3. the buddy's own lock, taken inside buddy_alloc/buddy_free/buddy_block_order.
 *   The magazine layer's depot lock sits above 2 (magazine.c).
 *
 * REFERENCES
 *   Bonwick, "The Slab Allocator: An Object-Caching Kernel Memory Allocator", USENIX 1994.
 *   Linux mm/slub.c (order calculation), mm/slab_common.c (the /proc/slabinfo format).
 */
#include "slab.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"

#define SLAB_MIN_OBJS 8u       /* fewest objects a slab should hold */
#define SLAB_EMPTY_KEEP 2u     /* empty slabs a cache keeps instead of returning them */
#define SLAB_COLOR_MIN 64u     /* cache line */
#define SLAB_HASH_MIN 16u      /* initial buckets of a cache's slab hash */
#define SLAB_NAME_HASH_MIN 64u /* initial buckets of the registry's name hash */

_Static_assert(SLAB_MAX_OBJECT * 8u == BUDDY_MIN_SIZE << SLAB_MAX_ORDER,
               "objects are limited to an eighth of the largest slab");
_Static_assert((BUDDY_MIN_SIZE << SLAB_MAX_ORDER) * (uint64_t)SLAB_MAX_OBJECT <
                   (UINT64_C(1) << 32),
               "the reciprocal in cache_locate_unsafe is exact");
_Static_assert((BUDDY_MIN_SIZE << SLAB_MAX_ORDER) / SLAB_MIN_OBJECT <= UINT16_MAX + 1u,
               "object indices fit the uint16_t free stack");

enum { SLAB_LIST_FULL, SLAB_LIST_PARTIAL, SLAB_LIST_EMPTY, SLAB_NLISTS };
static const char *const list_names[SLAB_NLISTS] = {"full", "partial", "empty"};

/* One slab's private descriptor; the bitmap and the free stack follow it in one malloc. */
typedef struct slab_blk {
  struct slab_blk *next, *prev; /* on the cache list its state names */
  struct slab_blk *hnext;       /* hash chain of the cache's slab table */
  uint64_t base;                /* region offset of the buddy block */
  uint32_t color;               /* bytes from base to object 0 */
  uint32_t inuse;               /* allocated objects */
  uint32_t nfree;               /* entries on the free stack: capacity - inuse */
  uint32_t list;                /* SLAB_LIST_* it is on */
  uint16_t *stack;              /* free object indices; top is stack[nfree - 1] */
  uint64_t bits[];              /* bit i set: object i allocated */
} slab_blk_t;

typedef struct slab_list {
  slab_blk_t *head;
  uint64_t n;
} slab_list_t;

struct slab_cache {
  _Atomic int lock; /* cache_lock(): protects everything below that changes */
  slab_t *owner;
  buddy_t *buddy;
  struct slab_cache *name_next; /* registry name hash chain (registry lock) */
  char name[SLAB_NAME_MAX];
  uint32_t id;
  uint32_t object_size, align, stride;
  uint32_t order;               /* buddy order of every slab */
  uint32_t objs;                /* objects per slab */
  uint32_t color_unit, ncolors; /* color = (color_next % ncolors) * color_unit */
  uint32_t color_next;
  uint32_t bitmap_words;
  uint64_t recip; /* floor(2^32 / stride) + 1: index = rel * recip >> 32 */
  uint64_t slab_bytes;
  uint64_t waste; /* unused tail bytes per slab */
  slab_list_t lists[SLAB_NLISTS];
  slab_blk_t *hot;      /* the slab free() found last: skips the hash when it hits */
  slab_blk_t **buckets; /* slab hash by base */
  uint64_t nbuckets;    /* power of two */
  uint64_t nslabs;
  uint64_t active; /* objects allocated (sum of inuse) */
  uint64_t allocs, frees, grows, reaps;
};

struct slab {
  pthread_mutex_t lock; /* the registry */
  buddy_t *buddy;
  slab_cache_t **caches; /* live caches in id order */
  uint32_t ncaches, cap;
  uint32_t next_id;     /* the next cache's id; ids are never reused */
  slab_cache_t **names; /* name hash */
  uint32_t nnames;      /* buckets, power of two */
};

/* ---- the cache lock ------------------------------------------------------------------ */

/* A test-and-test-and-set lock that yields the CPU after a short spin.  In a process with
 * more than one thread a pthread mutex costs two locked instructions (lock and unlock:
 * 13.8 ns measured on this project's 2-core machines, against 6.3 ns for this lock's one
 * exchange plus a plain release store) — about half of a whole slab alloc or free.
 * Critical sections are short and never sleep (the buddy's lock is the only one taken
 * inside), so a short spin is right; yielding after it keeps a preempted holder from being
 * spun on for a whole time slice when threads outnumber CPUs.  DPDK's rte_malloc heap
 * uses a spinlock for the same reason. */
static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void cache_lock_slow(slab_cache_t *c) {
  /* Exponential backoff between looks: waiters that re-read the lock word at once keep
   * pulling its line away from the holder, which then pays a miss to release it. */
  unsigned backoff = 1, spins = 0;
  for (;;) {
    while (atomic_load_explicit(&c->lock, memory_order_relaxed)) {
      if (spins++ < 64) {
        for (unsigned i = 0; i < backoff; i++)
          cpu_relax();
        if (backoff < 64) backoff *= 2;
      } else {
        sched_yield();
      }
    }
    if (!atomic_exchange_explicit(&c->lock, 1, memory_order_acquire)) return;
  }
}

static inline void cache_lock(slab_cache_t *c) {
  if (__builtin_expect(!atomic_exchange_explicit(&c->lock, 1, memory_order_acquire), 1)) return;
  cache_lock_slow(c);
}

static inline void cache_unlock(slab_cache_t *c) {
  atomic_store_explicit(&c->lock, 0, memory_order_release);
}

/* ---- helpers ------------------------------------------------------------------------ */

static uint64_t hash_base(uint64_t base, unsigned shift) {
  return (base >> shift) * 0x9E3779B97F4A7C15ull;
}

static uint32_t hash_name(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 16777619u;
  return h;
}

static unsigned slab_shift(const slab_cache_t *c) {
  return BUDDY_MIN_SHIFT + c->order;
}

static size_t blk_alloc_size(const slab_cache_t *c) {
  return sizeof(slab_blk_t) + c->bitmap_words * sizeof(uint64_t) + c->objs * sizeof(uint16_t);
}

static bool bit_get(const slab_blk_t *b, uint32_t i) {
  return (b->bits[i >> 6] >> (i & 63)) & 1u;
}
static void bit_set(slab_blk_t *b, uint32_t i) {
  b->bits[i >> 6] |= 1ull << (i & 63);
}
static void bit_clear(slab_blk_t *b, uint32_t i) {
  b->bits[i >> 6] &= ~(1ull << (i & 63));
}

static void list_push(slab_list_t *l, slab_blk_t *b) {
  b->prev = NULL;
  b->next = l->head;
  if (l->head) l->head->prev = b;
  l->head = b;
  l->n++;
}

static void list_remove(slab_list_t *l, slab_blk_t *b) {
  if (b->prev)
    b->prev->next = b->next;
  else
    l->head = b->next;
  if (b->next) b->next->prev = b->prev;
  b->next = b->prev = NULL;
  l->n--;
}

static uint32_t list_for(const slab_cache_t *c, const slab_blk_t *b) {
  if (b->inuse == 0) return SLAB_LIST_EMPTY;
  return b->inuse == c->objs ? SLAB_LIST_FULL : SLAB_LIST_PARTIAL;
}

/* Put b on the list its inuse count names (at the head: the slab just touched is warm). */
static inline void blk_relist(slab_cache_t *c, slab_blk_t *b) {
  uint32_t want = list_for(c, b);
  if (__builtin_expect(want == b->list, 1)) return;
  list_remove(&c->lists[b->list], b);
  b->list = want;
  list_push(&c->lists[want], b);
}

static slab_blk_t *hash_find(const slab_cache_t *c, uint64_t base) {
  slab_blk_t *b = c->buckets[hash_base(base, slab_shift(c)) & (c->nbuckets - 1)];
  while (b && b->base != base)
    b = b->hnext;
  return b;
}

static void hash_insert(slab_cache_t *c, slab_blk_t *b) {
  uint64_t i = hash_base(b->base, slab_shift(c)) & (c->nbuckets - 1);
  b->hnext = c->buckets[i];
  c->buckets[i] = b;
}

static void hash_remove(slab_cache_t *c, slab_blk_t *b) {
  slab_blk_t **pp = &c->buckets[hash_base(b->base, slab_shift(c)) & (c->nbuckets - 1)];
  while (*pp != b)
    pp = &(*pp)->hnext;
  *pp = b->hnext;
}

/* Double the slab hash when the load passes 1.  Failure is harmless (chains get longer). */
static void hash_maybe_grow(slab_cache_t *c) {
  if (c->nslabs <= c->nbuckets) return;
  uint64_t n = c->nbuckets * 2;
  slab_blk_t **nb = calloc(n, sizeof *nb);
  if (!nb) return;
  slab_blk_t **old = c->buckets;
  uint64_t oldn = c->nbuckets;
  c->buckets = nb;
  c->nbuckets = n;
  for (uint64_t i = 0; i < oldn; i++) {
    slab_blk_t *b = old[i];
    while (b) {
      slab_blk_t *next = b->hnext;
      hash_insert(c, b);
      b = next;
    }
  }
  free(old);
}

/* ---- geometry ---------------------------------------------------------------------- */

/* Smallest order meeting SLAB_MIN_OBJS and Bonwick's 1/8 bound (see the essay). */
static unsigned slab_order_for(uint32_t stride) {
  for (unsigned k = 0; k <= SLAB_MAX_ORDER; k++) {
    uint64_t bytes = buddy_order_size(k);
    uint64_t objs = bytes / stride;
    if (objs >= SLAB_MIN_OBJS && bytes - objs * stride <= bytes / 8) return k;
  }
  PP_ASSERT(!"no slab order qualifies");
  return SLAB_MAX_ORDER;
}

/* Everything a cache's layout depends on, from (object_size, align) alone: no registry,
 * buddy or counter state may enter here, or a cache re-created after a restart could lay
 * out its slabs differently from the one whose objects it must re-take. */
int slab_geometry(uint32_t object_size, uint32_t align, slab_geometry_t *ret) {
  if (!ret) return PP_EINVAL;
  if (align == 0) align = 8;
  if (align & (align - 1)) return PP_EINVAL;
  if (object_size < SLAB_MIN_OBJECT || object_size > SLAB_MAX_OBJECT || align > SLAB_MAX_OBJECT)
    return PP_ERANGE;
  uint32_t stride = (object_size + align - 1) & ~(align - 1);
  if (stride > SLAB_MAX_OBJECT) return PP_ERANGE;
  slab_geometry_t g = {.object_size = object_size, .align = align, .stride = stride};
  g.order = slab_order_for(stride);
  g.slab_bytes = buddy_order_size(g.order);
  g.objs_per_slab = (uint32_t)(g.slab_bytes / stride);
  g.waste = g.slab_bytes - (uint64_t)g.objs_per_slab * stride;
  g.color_unit = align > SLAB_COLOR_MIN ? align : SLAB_COLOR_MIN;
  g.ncolors = (uint32_t)(g.waste / g.color_unit) + 1;
  *ret = g;
  return 0;
}

/* ---- slab grow / release (cache lock held) ------------------------------------------ */

/* Make b (calloc'ed, its buddy block at base already taken) an empty slab of c with the
 * given color: on the empty list's head, in the hash, counted as a grow. */
static void blk_init_unsafe(slab_cache_t *c, slab_blk_t *b, uint64_t base, uint32_t color) {
  PP_IASSERT((base & (c->slab_bytes - 1)) == 0);
  PP_IASSERT(color % c->color_unit == 0 && color <= c->waste);
  b->base = base;
  b->color = color;
  b->stack = (uint16_t *)(b->bits + c->bitmap_words);
  /* Pops come out in ascending index order: a fresh slab fills front to back. */
  for (uint32_t i = 0; i < c->objs; i++)
    b->stack[i] = (uint16_t)(c->objs - 1 - i);
  b->nfree = c->objs;
  b->list = SLAB_LIST_EMPTY;
  list_push(&c->lists[SLAB_LIST_EMPTY], b);
  hash_insert(c, b);
  c->nslabs++;
  c->grows++;
  hash_maybe_grow(c);
}

static int cache_grow_unsafe(slab_cache_t *c, slab_blk_t **ret) {
  uint64_t base;
  int rc = buddy_alloc(c->buddy, c->order, 0, &base);
  if (rc < 0) return PP_ENOMEM; /* PP_ERANGE too: the region is smaller than one slab */
  slab_blk_t *b = calloc(1, blk_alloc_size(c));
  if (!b) {
    buddy_free(c->buddy, base);
    return PP_ENOPRIVMEM;
  }
  blk_init_unsafe(c, b, base, (c->color_next % c->ncolors) * c->color_unit);
  c->color_next++;
  *ret = b;
  return 0;
}

/* Take an empty slab out of c and give its block back to the buddy (not counted). */
static void blk_unmake_unsafe(slab_cache_t *c, slab_blk_t *b) {
  PP_IASSERT(b->inuse == 0 && b->list == SLAB_LIST_EMPTY);
  list_remove(&c->lists[SLAB_LIST_EMPTY], b);
  hash_remove(c, b);
  if (c->hot == b) c->hot = NULL;
  c->nslabs--;
  int rc = buddy_free(c->buddy, b->base);
  PP_ASSERT(rc == 0);
  (void)rc;
  free(b);
}

static void cache_release_unsafe(slab_cache_t *c, slab_blk_t *b) {
  blk_unmake_unsafe(c, b);
  c->reaps++;
}

/* ---- allocation (cache lock held) --------------------------------------------------- */

static slab_blk_t *cache_pick_unsafe(slab_cache_t *c, int *ret_err) {
  if (c->lists[SLAB_LIST_PARTIAL].head) return c->lists[SLAB_LIST_PARTIAL].head;
  if (c->lists[SLAB_LIST_EMPTY].head) return c->lists[SLAB_LIST_EMPTY].head;
  slab_blk_t *b = NULL;
  *ret_err = cache_grow_unsafe(c, &b);
  return b;
}

static uint64_t blk_pop(slab_cache_t *c, slab_blk_t *b) {
  PP_IASSERT(b->nfree > 0);
  uint32_t i = b->stack[--b->nfree];
  PP_IASSERT(i < c->objs && !bit_get(b, i));
  bit_set(b, i);
  b->inuse++;
  return b->base + b->color + (uint64_t)i * c->stride;
}

static int cache_alloc_unsafe(slab_cache_t *c, uint64_t *offsets, unsigned n) {
  unsigned got = 0;
  int err = 0;
  while (got < n) {
    slab_blk_t *b = cache_pick_unsafe(c, &err);
    if (!b) break;
    while (got < n && b->nfree > 0)
      offsets[got++] = blk_pop(c, b);
    blk_relist(c, b);
  }
  c->active += got;
  c->allocs += got;
  return got > 0 ? (int)got : err;
}

/* ---- free (cache lock held) --------------------------------------------------------- */

/* Locate offset's object: 0 with slab and index, or the error free() must return. */
static int cache_locate_unsafe(slab_cache_t *c, uint64_t offset, slab_blk_t **ret_b,
                               uint32_t *ret_i) {
  uint64_t base = offset & ~(c->slab_bytes - 1);
  slab_blk_t *b = c->hot && c->hot->base == base ? c->hot : hash_find(c, base);
  if (!b) return PP_ENOTALLOC; /* in no slab of this cache: someone else's, or nobody's */
  uint64_t rel = offset - base;
  if (rel < b->color) return PP_ENOTBLOCK;
  rel -= b->color;
  /* rel < slab bytes <= 2^17 and stride <= 2^14, so rel * stride < 2^32 and the
   * reciprocal gives the exact quotient (no divide on the free path). */
  uint64_t i = (rel * c->recip) >> 32;
  PP_IASSERT(i == rel / c->stride);
  if (i * c->stride != rel || i >= c->objs) return PP_ENOTBLOCK;
  c->hot = b;
  *ret_b = b;
  *ret_i = (uint32_t)i;
  return 0;
}

/* Return object i of b (its bitmap bit already cleared by the caller). */
/* Always inlined: on the free path its call was 9% of a slab pair (callgrind). */
static inline __attribute__((always_inline)) void blk_push(slab_cache_t *c, slab_blk_t *b,
                                                           uint32_t i) {
  PP_IASSERT(b->nfree < c->objs && b->inuse > 0);
  b->stack[b->nfree++] = (uint16_t)i;
  b->inuse--;
  blk_relist(c, b);
  if (b->inuse == 0 && c->lists[SLAB_LIST_EMPTY].n > SLAB_EMPTY_KEEP)
    cache_release_unsafe(c, b);
}

/* ---- reserve (cache lock held) ------------------------------------------------------ */

/* Pass 1 of a reserve, for one offset: find or create the slab that must hold it and set
 * the object's bitmap bit — nothing else, so pass 2 (or the undo) finds the bit set and
 * the free stack, inuse and list untouched.  A slab created here goes on the head of the
 * empty list and stays there through pass 1 (no inuse changes until pass 2): the undo
 * finds the batch's new slabs as the first *created entries of that list. */
static int cache_reserve_mark_unsafe(slab_cache_t *c, uint64_t offset, unsigned *created) {
  uint64_t base = offset & ~(c->slab_bytes - 1);
  slab_blk_t *b = c->hot && c->hot->base == base ? c->hot : hash_find(c, base);
  uint32_t i;
  int rc;
  if (!b) {
    /* The stride exceeds the tail, so exactly one color puts an object start at offset. */
    uint64_t rel = offset - base;
    uint32_t color = (uint32_t)(rel % c->stride);
    if (color % c->color_unit || color > c->waste || rel / c->stride >= c->objs)
      return PP_ENOTBLOCK; /* no slab of this geometry has an object there */
    b = calloc(1, blk_alloc_size(c));
    if (!b) return PP_ENOPRIVMEM;
    rc = buddy_reserve(c->buddy, base, c->order);
    if (rc < 0) {
      free(b);
      PP_IASSERT(rc == PP_EBUSY || rc == PP_ERANGE); /* base is aligned to the order */
      return rc == PP_ERANGE ? PP_ERANGE : PP_EBUSY;
    }
    blk_init_unsafe(c, b, base, color);
    (*created)++;
  }
  rc = cache_locate_unsafe(c, offset, &b, &i);
  if (rc < 0) return rc; /* an existing slab whose color puts no object start there */
  if (bit_get(b, i)) return PP_EBUSY;
  bit_set(b, i);
  return 0;
}

/* Pass 2: take object i (its bit already set) off b's free stack.  The stack keeps its
 * order, so a slab's remaining objects still go out in the order they would have. */
static void blk_take(slab_cache_t *c, slab_blk_t *b, uint32_t i) {
  PP_IASSERT(b->nfree > 0 && bit_get(b, i));
  uint32_t k = b->nfree;
  while (k-- > 0 && b->stack[k] != i)
    ;
  PP_ASSERT(k < b->nfree); /* a clear bit before pass 1 means i was on the stack */
  memmove(&b->stack[k], &b->stack[k + 1], (b->nfree - k - 1) * sizeof *b->stack);
  b->nfree--;
  b->inuse++;
  blk_relist(c, b);
}

static int cache_reserve_unsafe(slab_cache_t *c, const uint64_t *offsets, unsigned n,
                                unsigned *ret_bad_index) {
  unsigned k, created = 0;
  slab_blk_t *b;
  uint32_t i;
  int rc = 0;
  /* Pass 1 marks as it validates, so a duplicate later in the batch meets a set bit. */
  for (k = 0; k < n; k++) {
    rc = cache_reserve_mark_unsafe(c, offsets[k], &created);
    if (rc < 0) break;
  }
  if (rc < 0) {
    for (unsigned j = 0; j < k; j++) {
      int r = cache_locate_unsafe(c, offsets[j], &b, &i);
      PP_IASSERT(r == 0);
      (void)r;
      bit_clear(b, i);
    }
    for (; created > 0; created--) {
      b = c->lists[SLAB_LIST_EMPTY].head;
      PP_ASSERT(b && b->inuse == 0 && b->nfree == c->objs);
      blk_unmake_unsafe(c, b);
      c->grows--;
    }
    if (ret_bad_index) *ret_bad_index = k;
    return rc;
  }
  for (k = 0; k < n; k++) {
    int r = cache_locate_unsafe(c, offsets[k], &b, &i);
    PP_IASSERT(r == 0);
    (void)r;
    blk_take(c, b, i);
  }
  c->active += n;
  c->allocs += n;
  return 0;
}

/* ---- validator ---------------------------------------------------------------------- */

static int cache_check_unsafe(slab_cache_t *c, char *why, size_t why_len) {
  uint64_t nslabs = 0, active = 0;
  for (uint32_t l = 0; l < SLAB_NLISTS; l++) {
    uint64_t n = 0;
    const slab_blk_t *prev = NULL;
    for (const slab_blk_t *b = c->lists[l].head; b; prev = b, b = b->next) {
      if (++n > c->nslabs)
        return pp_corrupt(why, why_len, "%s: %s list longer than the slab count %" PRIu64,
                          c->name, list_names[l], c->nslabs);
      if (b->prev != prev)
        return pp_corrupt(why, why_len, "%s: broken back link at slab %#" PRIx64, c->name,
                          b->base);
      if (b->list != l)
        return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " tagged %s on the %s list",
                          c->name, b->base, list_names[b->list < SLAB_NLISTS ? b->list : 0],
                          list_names[l]);
      if (b->inuse > c->objs)
        return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " inuse %u > capacity %u", c->name,
                          b->base, b->inuse, c->objs);
      if (list_for(c, b) != l)
        return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " with inuse %u/%u on the %s list",
                          c->name, b->base, b->inuse, c->objs, list_names[l]);
      if (b->nfree + b->inuse != c->objs)
        return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " nfree %u + inuse %u != %u",
                          c->name, b->base, b->nfree, b->inuse, c->objs);
      if (b->base & (c->slab_bytes - 1))
        return pp_corrupt(why, why_len, "%s: slab base %#" PRIx64 " misaligned", c->name,
                          b->base);
      if (b->color % c->color_unit || b->color > c->waste)
        return pp_corrupt(why, why_len,
                          "%s: slab %#" PRIx64 " color %u outside the tail %" PRIu64, c->name,
                          b->base, b->color, c->waste);
      if (hash_find(c, b->base) != b)
        return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " not in the hash", c->name,
                          b->base);
      uint32_t pop = 0;
      for (uint32_t w = 0; w < c->bitmap_words; w++)
        pop += (uint32_t)__builtin_popcountll(b->bits[w]);
      if (pop != b->inuse)
        return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " bitmap holds %u, inuse %u",
                          c->name, b->base, pop, b->inuse);
      if (c->objs % 64 && (b->bits[c->bitmap_words - 1] >> (c->objs % 64)))
        return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " bitmap bits past capacity",
                          c->name, b->base);
      /* Free indices: in range, bit clear, distinct (a second copy would meet a bit we set). */
      uint64_t seen[(BUDDY_MIN_SIZE << SLAB_MAX_ORDER) / SLAB_MIN_OBJECT / 64];
      memset(seen, 0, c->bitmap_words * sizeof(uint64_t));
      for (uint32_t k = 0; k < b->nfree; k++) {
        uint32_t i = b->stack[k];
        if (i >= c->objs)
          return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " free index %u out of range",
                            c->name, b->base, i);
        if (bit_get(b, i))
          return pp_corrupt(why, why_len,
                            "%s: slab %#" PRIx64 " object %u both free and allocated", c->name,
                            b->base, i);
        if ((seen[i >> 6] >> (i & 63)) & 1u)
          return pp_corrupt(why, why_len,
                            "%s: slab %#" PRIx64 " object %u twice on the free stack", c->name,
                            b->base, i);
        seen[i >> 6] |= 1ull << (i & 63);
      }
      unsigned order;
      if (buddy_block_order(c->buddy, b->base, &order) != 0 || order != c->order)
        return pp_corrupt(why, why_len,
                          "%s: slab %#" PRIx64 " is not an allocated buddy block of order %u",
                          c->name, b->base, c->order);
      active += b->inuse;
    }
    if (n != c->lists[l].n)
      return pp_corrupt(why, why_len, "%s: %s list holds %" PRIu64 " slabs, counted %" PRIu64,
                        c->name, list_names[l], n, c->lists[l].n);
    nslabs += n;
  }
  if (nslabs != c->nslabs)
    return pp_corrupt(why, why_len, "%s: lists hold %" PRIu64 " slabs, counted %" PRIu64,
                      c->name, nslabs, c->nslabs);
  uint64_t hashed = 0;
  for (uint64_t i = 0; i < c->nbuckets; i++)
    for (const slab_blk_t *b = c->buckets[i]; b; b = b->hnext) {
      if ((hash_base(b->base, slab_shift(c)) & (c->nbuckets - 1)) != i)
        return pp_corrupt(why, why_len, "%s: slab %#" PRIx64 " in the wrong hash bucket",
                          c->name, b->base);
      if (++hashed > nslabs)
        return pp_corrupt(why, why_len, "%s: hash holds more slabs than the lists", c->name);
    }
  if (hashed != nslabs)
    return pp_corrupt(why, why_len, "%s: hash holds %" PRIu64 " slabs, lists %" PRIu64, c->name,
                      hashed, nslabs);
  if (active != c->active)
    return pp_corrupt(why, why_len, "%s: slabs hold %" PRIu64 " objects, counted %" PRIu64,
                      c->name, active, c->active);
  if (c->allocs - c->frees != c->active)
    return pp_corrupt(why, why_len,
                      "%s: allocs %" PRIu64 " - frees %" PRIu64 " != active %" PRIu64, c->name,
                      c->allocs, c->frees, c->active);
  return 0;
}

/* ---- the registry -------------------------------------------------------------------- */

int slab_create(buddy_t *buddy, slab_t **ret) {
  if (!buddy || !ret) return PP_EINVAL;
  slab_t *s = calloc(1, sizeof *s);
  if (!s) return PP_ENOPRIVMEM;
  int rc = PP_ENOPRIVMEM;
  s->names = calloc(SLAB_NAME_HASH_MIN, sizeof *s->names);
  if (!s->names) goto fail;
  s->nnames = SLAB_NAME_HASH_MIN;
  if (pthread_mutex_init(&s->lock, NULL) != 0) {
    rc = PP_EOS;
    goto fail;
  }
  s->buddy = buddy;
  *ret = s;
  return 0;
fail:
  free(s->names);
  free(s);
  return rc;
}

static void cache_destroy(slab_cache_t *c) {
  for (uint32_t l = 0; l < SLAB_NLISTS; l++) {
    slab_blk_t *b = c->lists[l].head;
    while (b) {
      slab_blk_t *next = b->next;
      buddy_free(c->buddy, b->base);
      free(b);
      b = next;
    }
  }
  free(c->buckets);
  free(c);
}

void slab_destroy(slab_t *s) {
  if (!s) return;
  for (uint32_t i = 0; i < s->ncaches; i++)
    cache_destroy(s->caches[i]);
  free(s->caches);
  free(s->names);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

static slab_cache_t *find_unsafe(slab_t *s, const char *name) {
  slab_cache_t *c = s->names[hash_name(name) & (s->nnames - 1)];
  while (c && strcmp(c->name, name) != 0)
    c = c->name_next;
  return c;
}

static void names_maybe_grow_unsafe(slab_t *s) {
  if (s->ncaches <= s->nnames) return;
  uint32_t n = s->nnames * 2;
  slab_cache_t **nb = calloc(n, sizeof *nb);
  if (!nb) return; /* longer chains, still correct */
  for (uint32_t i = 0; i < s->ncaches; i++) {
    slab_cache_t *c = s->caches[i];
    uint32_t h = hash_name(c->name) & (n - 1);
    c->name_next = nb[h];
    nb[h] = c;
  }
  free(s->names);
  s->names = nb;
  s->nnames = n;
}

static int registry_check_unsafe(slab_t *s, char *why, size_t why_len);

/* The array is in id order (insertion goes where the id says, removal keeps the order):
 * binary search. */
static uint32_t index_of_unsafe(const slab_t *s, uint32_t id) {
  uint32_t lo = 0, hi = s->ncaches;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (s->caches[mid]->id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static bool name_ok(const char *name) {
  return name && name[0] && strlen(name) < SLAB_NAME_MAX;
}

/* A new cache named name with geometry g and the given id, in the registry at the place
 * its id says.  The caller checked that neither name nor id is taken and that
 * id < UINT32_MAX. */
static int cache_insert_unsafe(slab_t *s, const char *name, const slab_geometry_t *g,
                               uint32_t id, slab_cache_t **ret) {
  if (s->ncaches == s->cap) {
    if (s->cap > UINT32_MAX / 2) return PP_ERANGE; /* ids are uint32: it cannot double */
    uint32_t cap = s->cap ? s->cap * 2 : 16;
    slab_cache_t **nc = realloc(s->caches, cap * sizeof *nc);
    if (!nc) return PP_ENOPRIVMEM;
    s->caches = nc;
    s->cap = cap;
  }
  slab_cache_t *c = calloc(1, sizeof *c);
  if (!c) return PP_ENOPRIVMEM;
  c->buckets = calloc(SLAB_HASH_MIN, sizeof *c->buckets);
  if (!c->buckets) {
    free(c);
    return PP_ENOPRIVMEM;
  }
  atomic_init(&c->lock, 0);
  c->nbuckets = SLAB_HASH_MIN;
  c->owner = s;
  c->buddy = s->buddy;
  snprintf(c->name, sizeof c->name, "%s", name);
  c->object_size = g->object_size;
  c->align = g->align;
  c->stride = g->stride;
  c->order = g->order;
  c->slab_bytes = g->slab_bytes;
  c->objs = g->objs_per_slab;
  c->waste = g->waste;
  c->color_unit = g->color_unit;
  c->ncolors = g->ncolors;
  c->bitmap_words = (c->objs + 63) / 64;
  c->recip = (UINT64_C(1) << 32) / c->stride + 1;
  for (uint32_t l = 0; l < SLAB_NLISTS; l++)
    c->lists[l] = (slab_list_t){NULL, 0};
  c->id = id;
  if (id >= s->next_id) s->next_id = id + 1;
  uint32_t i = index_of_unsafe(s, id);
  memmove(&s->caches[i + 1], &s->caches[i], (s->ncaches - i) * sizeof *s->caches);
  s->caches[i] = c;
  s->ncaches++;
  uint32_t h = hash_name(name) & (s->nnames - 1);
  c->name_next = s->names[h];
  s->names[h] = c;
  names_maybe_grow_unsafe(s);
  PP_VALIDATE(registry_check_unsafe, s);
  *ret = c;
  return 0;
}

int slab_cache_create(slab_t *s, const char *name, uint32_t object_size, uint32_t align,
                      slab_cache_t **ret) {
  if (!s || !ret || !name_ok(name)) return PP_EINVAL;
  slab_geometry_t g;
  int rc = slab_geometry(object_size, align, &g);
  if (rc < 0) return rc;
  pthread_mutex_lock(&s->lock);
  slab_cache_t *old = find_unsafe(s, name);
  if (old) {
    if (old->object_size != g.object_size || old->align != g.align)
      rc = PP_EGEOMETRY;
    else
      *ret = old;
  } else if (s->next_id == UINT32_MAX) {
    rc = PP_ERANGE; /* ids are uint32 and never reused */
  } else {
    rc = cache_insert_unsafe(s, name, &g, s->next_id, ret);
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int slab_cache_create_with_id(slab_t *s, const char *name, uint32_t object_size, uint32_t align,
                              uint32_t id, slab_cache_t **ret) {
  if (!s || !ret || !name_ok(name)) return PP_EINVAL;
  slab_geometry_t g;
  int rc = slab_geometry(object_size, align, &g);
  if (rc < 0) return rc;
  if (id == UINT32_MAX) return PP_ERANGE; /* the counter could not move past it */
  pthread_mutex_lock(&s->lock);
  uint32_t i = index_of_unsafe(s, id);
  if (find_unsafe(s, name) || (i < s->ncaches && s->caches[i]->id == id))
    rc = PP_EEXIST;
  else
    rc = cache_insert_unsafe(s, name, &g, id, ret);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int slab_skip_ids(slab_t *s, uint32_t next) {
  if (!s) return PP_EINVAL;
  pthread_mutex_lock(&s->lock);
  if (next > s->next_id) s->next_id = next;
  pthread_mutex_unlock(&s->lock);
  return 0;
}

slab_cache_t *slab_cache_find(slab_t *s, const char *name) {
  if (!s || !name) return NULL;
  pthread_mutex_lock(&s->lock);
  slab_cache_t *c = find_unsafe(s, name);
  pthread_mutex_unlock(&s->lock);
  return c;
}

slab_cache_t *slab_cache_by_id(slab_t *s, uint32_t id) {
  if (!s) return NULL;
  pthread_mutex_lock(&s->lock);
  uint32_t i = index_of_unsafe(s, id);
  slab_cache_t *c = i < s->ncaches && s->caches[i]->id == id ? s->caches[i] : NULL;
  pthread_mutex_unlock(&s->lock);
  return c;
}

static int registry_check_unsafe(slab_t *s, char *why, size_t why_len) {
  uint64_t hashed = 0;
  for (uint32_t i = 0; i < s->ncaches; i++) {
    const slab_cache_t *c = s->caches[i];
    if (i > 0 && c->id <= s->caches[i - 1]->id)
      return pp_corrupt(why, why_len, "cache %s (id %u) after id %u", c->name, c->id,
                        s->caches[i - 1]->id);
    if (c->id >= s->next_id)
      return pp_corrupt(why, why_len, "cache %s has id %u, the counter is at %u", c->name,
                        c->id, s->next_id);
    if (find_unsafe(s, c->name) != c)
      return pp_corrupt(why, why_len, "cache %s is not found by its name", c->name);
  }
  for (uint32_t b = 0; b < s->nnames; b++)
    for (const slab_cache_t *c = s->names[b]; c; c = c->name_next)
      if (++hashed > s->ncaches)
        return pp_corrupt(why, why_len, "the name hash holds more than the %u caches",
                          s->ncaches);
  if (hashed != s->ncaches)
    return pp_corrupt(why, why_len, "the name hash holds %" PRIu64 " caches, the array %u",
                      hashed, s->ncaches);
  return 0;
}

int slab_cache_destroy(slab_cache_t *c) {
  if (!c) return PP_EINVAL;
  slab_t *s = c->owner;
  cache_lock(c);
  uint64_t active = c->active;
  cache_unlock(c);
  if (active) return PP_EBUSY;

  pthread_mutex_lock(&s->lock);
  slab_cache_t **pp = &s->names[hash_name(c->name) & (s->nnames - 1)];
  while (*pp != c)
    pp = &(*pp)->name_next;
  *pp = c->name_next;
  uint32_t i = index_of_unsafe(s, c->id);
  PP_ASSERT(i < s->ncaches && s->caches[i] == c);
  memmove(&s->caches[i], &s->caches[i + 1], (s->ncaches - i - 1) * sizeof *s->caches);
  s->ncaches--;
  PP_VALIDATE(registry_check_unsafe, s);
  pthread_mutex_unlock(&s->lock);
  /* Out of the registry, so nobody else can reach it: every slab is empty. */
  cache_destroy(c);
  return 0;
}

/* A copy of the cache array, so callbacks may take cache locks and even create caches. */
static slab_cache_t **snapshot(slab_t *s, uint32_t *ret_n) {
  pthread_mutex_lock(&s->lock);
  uint32_t n = s->ncaches;
  slab_cache_t **v = malloc((n ? n : 1) * sizeof *v);
  if (v && n) memcpy(v, s->caches, n * sizeof *v); /* caches is NULL while n == 0 */
  pthread_mutex_unlock(&s->lock);
  *ret_n = v ? n : 0;
  return v;
}

void slab_foreach_cache(slab_t *s, slab_cache_fn fn, void *ctx) {
  if (!s || !fn) return;
  uint32_t n;
  slab_cache_t **v = snapshot(s, &n);
  for (uint32_t i = 0; i < n; i++)
    fn(ctx, v[i]);
  free(v);
}

/* ---- cache operations ---------------------------------------------------------------- */

int slab_cache_alloc(slab_cache_t *c, uint64_t *ret_offset) {
  if (!c || !ret_offset) return PP_EINVAL;
  uint64_t off;
  cache_lock(c);
  int rc = cache_alloc_unsafe(c, &off, 1);
  PP_VALIDATE(cache_check_unsafe, c);
  cache_unlock(c);
  if (rc < 0) return rc;
  *ret_offset = off;
  return 0;
}

int slab_cache_alloc_bulk(slab_cache_t *c, uint64_t *offsets, unsigned n) {
  if (!c || !offsets || n == 0 || n > INT32_MAX) return PP_EINVAL;
  cache_lock(c);
  int rc = cache_alloc_unsafe(c, offsets, n);
  PP_VALIDATE(cache_check_unsafe, c);
  cache_unlock(c);
  return rc;
}

int slab_cache_free(slab_cache_t *c, uint64_t offset) {
  if (!c) return PP_EINVAL;
  slab_blk_t *b;
  uint32_t i;
  cache_lock(c);
  int rc = cache_locate_unsafe(c, offset, &b, &i);
  if (rc == 0 && !bit_get(b, i)) rc = PP_EDOUBLEFREE;
  if (rc == 0) {
    bit_clear(b, i);
    c->active--;
    c->frees++;
    blk_push(c, b, i);
    PP_VALIDATE(cache_check_unsafe, c);
  }
  cache_unlock(c);
  return rc;
}

int slab_cache_free_bulk(slab_cache_t *c, const uint64_t *offsets, unsigned n,
                         unsigned *ret_bad_index) {
  if (!c || (!offsets && n) || n > INT32_MAX) return PP_EINVAL;
  int rc = 0;
  unsigned k;
  slab_blk_t *b;
  uint32_t i;
  cache_lock(c);
  /* Pass 1 clears each bit as it validates, so a duplicate later in the batch meets a
   * clear bit and is caught as a double free; on error the cleared bits are restored. */
  for (k = 0; k < n; k++) {
    rc = cache_locate_unsafe(c, offsets[k], &b, &i);
    if (rc == 0 && !bit_get(b, i)) rc = PP_EDOUBLEFREE;
    if (rc < 0) break;
    bit_clear(b, i);
  }
  if (rc < 0) {
    for (unsigned j = 0; j < k; j++) {
      int r = cache_locate_unsafe(c, offsets[j], &b, &i);
      PP_IASSERT(r == 0);
      (void)r;
      bit_set(b, i);
    }
    cache_unlock(c);
    if (ret_bad_index) *ret_bad_index = k;
    return rc;
  }
  for (k = 0; k < n; k++) {
    int r = cache_locate_unsafe(c, offsets[k], &b, &i);
    PP_IASSERT(r == 0);
    (void)r;
    blk_push(c, b, i);
  }
  c->active -= n;
  c->frees += n;
  PP_VALIDATE(cache_check_unsafe, c);
  cache_unlock(c);
  return 0;
}

int slab_cache_reserve(slab_cache_t *c, uint64_t offset) {
  if (!c) return PP_EINVAL;
  cache_lock(c);
  int rc = cache_reserve_unsafe(c, &offset, 1, NULL);
  PP_VALIDATE(cache_check_unsafe, c);
  cache_unlock(c);
  return rc;
}

int slab_cache_reserve_bulk(slab_cache_t *c, const uint64_t *offsets, unsigned n,
                            unsigned *ret_bad_index) {
  if (!c || (!offsets && n) || n > INT32_MAX) return PP_EINVAL;
  cache_lock(c);
  int rc = cache_reserve_unsafe(c, offsets, n, ret_bad_index);
  PP_VALIDATE(cache_check_unsafe, c);
  cache_unlock(c);
  return rc;
}

bool slab_cache_owns(slab_cache_t *c, uint64_t offset) {
  if (!c) return false;
  slab_blk_t *b;
  uint32_t i;
  cache_lock(c);
  bool own = cache_locate_unsafe(c, offset, &b, &i) == 0 && bit_get(b, i);
  cache_unlock(c);
  return own;
}

int slab_cache_shrink(slab_cache_t *c) {
  if (!c) return PP_EINVAL;
  int n = 0;
  cache_lock(c);
  while (c->lists[SLAB_LIST_EMPTY].head) {
    cache_release_unsafe(c, c->lists[SLAB_LIST_EMPTY].head);
    n++;
  }
  PP_VALIDATE(cache_check_unsafe, c);
  cache_unlock(c);
  return n;
}

int slab_shrink(slab_t *s) {
  if (!s) return PP_EINVAL;
  uint32_t n;
  slab_cache_t **v = snapshot(s, &n);
  int total = 0;
  for (uint32_t i = 0; i < n; i++)
    total += slab_cache_shrink(v[i]);
  free(v);
  return total;
}

void slab_cache_info(slab_cache_t *c, slab_info_t *ret) {
  if (!c || !ret) return;
  slab_info_t in = {0};
  cache_lock(c);
  snprintf(in.name, sizeof in.name, "%s", c->name);
  in.id = c->id;
  in.object_size = c->object_size;
  in.align = c->align;
  in.stride = c->stride;
  in.objs_per_slab = c->objs;
  in.pages_per_slab = 1u << c->order;
  in.active_objs = c->active;
  in.num_objs = c->nslabs * c->objs;
  in.num_slabs = c->nslabs;
  in.full_slabs = c->lists[SLAB_LIST_FULL].n;
  in.partial_slabs = c->lists[SLAB_LIST_PARTIAL].n;
  in.empty_slabs = c->lists[SLAB_LIST_EMPTY].n;
  in.active_slabs = in.full_slabs + in.partial_slabs;
  in.waste_bytes_per_slab = c->waste;
  in.waste_permille = (uint32_t)(c->waste * 1000 / c->slab_bytes);
  in.allocs = c->allocs;
  in.frees = c->frees;
  in.grows = c->grows;
  in.reaps = c->reaps;
  cache_unlock(c);
  *ret = in;
}

void slab_cache_walk(slab_cache_t *c, slab_walk_fn fn, void *ctx) {
  if (!c || !fn) return;
  cache_lock(c);
  for (uint32_t l = 0; l < SLAB_NLISTS; l++)
    for (const slab_blk_t *b = c->lists[l].head; b; b = b->next)
      fn(ctx, b->base, c->slab_bytes, b->inuse, c->objs);
  cache_unlock(c);
}

int slab_cache_check(slab_cache_t *c, char *why, size_t why_len) {
  if (!c) return PP_EINVAL;
  cache_lock(c);
  int rc = cache_check_unsafe(c, why, why_len);
  cache_unlock(c);
  return rc;
}

int slab_check(slab_t *s, char *why, size_t why_len) {
  if (!s) return PP_EINVAL;
  int rc;
  uint32_t n;
  pthread_mutex_lock(&s->lock);
  rc = registry_check_unsafe(s, why, why_len);
  pthread_mutex_unlock(&s->lock);
  if (rc) return rc;
  slab_cache_t **v = snapshot(s, &n);
  for (uint32_t i = 0; i < n && rc == 0; i++)
    rc = slab_cache_check(v[i], why, why_len);
  free(v);
  return rc;
}

static void dump_one(void *ctx, slab_cache_t *c) {
  slab_info_t in;
  slab_cache_info(c, &in);
  fprintf((FILE *)ctx,
          "%-20s %6" PRIu64 " %6" PRIu64 " %6u %4u %4u : tunables 0 0 0 : slabdata %6" PRIu64
          " %6" PRIu64 " 0 : pinpool %3u %4u %6" PRIu64 " %6" PRIu64 " %6" PRIu64 " %4u.%u%%"
          " %8" PRIu64 " %8" PRIu64 " %6" PRIu64 " %6" PRIu64 "\n",
          in.name, in.active_objs, in.num_objs, in.object_size, in.objs_per_slab,
          in.pages_per_slab, in.active_slabs, in.num_slabs, in.id, in.align, in.full_slabs,
          in.partial_slabs, in.empty_slabs, in.waste_permille / 10, in.waste_permille % 10,
          in.allocs, in.frees, in.grows, in.reaps);
}

void slab_dump(slab_t *s, FILE *out) {
  if (!s || !out) return;
  fprintf(out, "slabinfo - version: 2.1 (pinpool)\n");
  fprintf(out,
          "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
          " : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs>"
          " <num_slabs> <sharedavail> : pinpool <id> <align> <full> <partial> <empty>"
          " <waste> <allocs> <frees> <grows> <reaps>\n");
  slab_foreach_cache(s, dump_one, out);
}
