/*
 * bcache.c — per-thread caches of small buffers in front of pinpoold: pp_alloc and pp_free
 * of small sizes without a round trip.
 *
 * What.  A buffer from the daemon costs two round trips (alloc, free: tens of
 * microseconds), a slab object from a client magazine a few nanoseconds.  Linux serves
 * small page allocations from per-CPU lists in front of the buddy allocator (the pcp lists
 * of mm/page_alloc.c, with their high watermark and batch) for the same reason magazines
 * sit in front of slabs; this file does the same for pinpool's buffers.  Each thread keeps,
 * per cached order, a stack of free blocks its session holds from the daemon; pp_alloc of
 * a size that rounds to such an order pops one, pp_free pushes it back, and only a stack
 * that runs empty or past its high watermark goes to the daemon — a batch at a time, with
 * alloc_bulk and free_bulk (one round trip, one journal transaction each).
 *
 * Which blocks.  Orders whose blocks are at most BC_MAX_BYTES (64 KiB) and at most the
 * region's page size: a naturally aligned block no larger than a page is physically
 * contiguous by construction, so PP_CONTIGUOUS is satisfied by every cached block and the
 * cache never has to tell contiguous blocks from others.  On 4 KiB pages that is order 0
 * only; on hugepages orders 0 to 4 (4 KiB to 64 KiB).  Named buffers, lookups, and every
 * other size go to the daemon as before.
 *
 * Watermarks, per thread and order (Linux's pcp: high and batch): high = 256 KiB of blocks,
 * at most 64 and at least 4 (4 KiB: 64 blocks, 8 KiB: 32, 16 KiB: 16, 32 KiB: 8, 64 KiB:
 * 4); an empty stack is refilled with high/2 blocks; a push onto a full stack first
 * returns the high/2 coldest (the bottom of the stack) in one free_bulk, leaving the low
 * watermark, high/2.  Between a refill and a trim lie high/2 operations either way, so a
 * thread alternating alloc and free never goes to the daemon more often than once per
 * high/2 of them, and a thread caches at most 256 KiB per order (1.25 MiB on hugepages,
 * 256 KiB on 4 KiB pages).
 *
 * The handle.  pp_free(handle) must know without a round trip whether the handle is a
 * cached block, which one, and whether the program still holds it under that handle.
 * Handles the daemon gives are below 2^63 (docs/PROTOCOL.md); the caches hand out their
 * own, with bit 63 set:
 *     bit 63      1: a block of the buffer caches
 *     bits 35..62 the block's generation (28 bits)
 *     bits 32..34 its order
 *     bits 0..31  its first unit: offset / min_block
 * The client keeps one slot per unit of the region that starts a cached block (bc_slot_t:
 * a lock-free table of chunks of 1024 slots, each chunk made the first time a block in it
 * is cached and kept until pp_disconnect): a state word — NONE (the session does not hold
 * the block through the caches), CACHED (in some thread's stack), LIVE (the program holds
 * it) — with the block's order and generation, the daemon's handle for the block, its
 * physical address and the epoch of that address.  pp_alloc from the cache stores LIVE with
 * the slot's generation and returns the handle; pp_free compares-and-swaps LIVE with the
 * handle's generation and order to CACHED with the next generation.  So a handle is valid
 * exactly while the program holds its block under it: a second free of it, a handle made
 * up, or a stale handle of a block since handed out again all fail the compare and are
 * PP_ENOENT, as the daemon answers for a handle the session does not hold; two live blocks
 * never share a handle (their first units differ); and of two threads freeing one handle at
 * once exactly one succeeds.  Generations are per slot and survive the block going back to
 * the daemon, so a handle can only come back after 2^28 reuses of the same block.  A slot
 * is NONE before its block is returned to the daemon, and written only by the thread that
 * registers a block the daemon just handed over (which no other slot user can see yet).
 *
 * Addresses.  pp_buffer.phys of a cached block is the address the alloc_bulk reply gave.
 * Two things can make it stale while the session holds the block: a client punching the
 * block's pages out of the region (the daemon repairs them with new pages, new addresses:
 * docs/PROTOCOL.md, "Trust"), and a daemon restart (the new daemon pins and reads the
 * region's addresses again; a page may have moved while no daemon pinned it).  Each alloc_bulk
 * reply carries the daemon's addresses_generation, which moves with every such change, and
 * a re-claim means a new daemon; either moves the client's epoch.  A block whose slot
 * epoch is older is never handed out again from a cache: the thread that finds it returns
 * its whole cache and refills, and pp_buffer_segments asks the daemon again (describe) for
 * a block the program holds whose epoch is old.  What remains: a punch between the last
 * bulk reply and the next goes unseen until then — a hostile client's punch destroys the
 * data of the pages it punches anyway, and can never make an address point at memory the
 * daemon does not own (its pages are pinned).
 *
 * What the daemon sees.  Cached blocks are the session's buffers (under the daemon's own
 * handles): they count against the uid's quota and --max-buffers, show in pinpoolctl, and
 * come back to the daemon when the session ends however it ends.  ClientInfo.cached_buffers
 * and cached_bytes are what the client reports with each bulk request (CacheReport: the sum
 * over its threads' caches, as it will be once the request is done), since only the
 * client knows which of its blocks the program holds.
 *
 * Zeroing.  PP_ZERO zeroes a cached block here, in the calling thread.  A block recycled
 * inside the cache stays the same session's memory and is not zeroed otherwise; pinpoold's
 * --zero-on-free zeroes it when it goes back to the daemon.
 *
 * Lifetimes (the scheme of cmag.c):
 *   - a thread's cache for a client (bc_tc_t) belongs to its thread; only that thread
 *     pushes and pops.  Other threads read its counts (relaxed atomics) for the report.
 *   - thread exit: a pthread key destructor returns every block of its caches to the
 *     daemon (free_bulk) without holding bc_lock (a return may wait out a re-claim),
 *     counted in c->bc_returning meanwhile.
 *   - pp_disconnect: marks other threads' caches of c orphaned (c = NULL) under bc_lock; the
 *     daemon reclaims their blocks when the socket closes; an orphan is freed by its thread
 *     the next time it makes a cache, or at its exit.  Threads find their caches by the
 *     client's serial, never reused, so a new client at an old address cannot alias.
 *   - re-claim: nothing is lost; the session, its buffers and their daemon handles survive,
 *     so every cached and live block stays valid; only addresses are described anew (above).
 *     But while a re-claim is under way the session may be lost (the grace period may run
 *     out), and a lost session's blocks are the daemon's to give to anyone: so the caches
 *     serve nothing meanwhile (bc_suspend: pp_alloc goes to the daemon and waits for the
 *     outcome, a freed block goes back rather than onto a stack), and once the connection
 *     is broken for good, never again.  A program whose threads only use their caches
 *     learns of a restart at its next request, like one that only touches buffers it
 *     holds: if none comes within the grace period, the session goes, its cached blocks
 *     with it, as for any client that does not come back.
 *   - PINPOOL_BUFFER_CACHE=0 (or no, off, false) in the environment,
 * PP_CONNECT_NO_BUFFER_CACHE, a daemon without FEATURE_BULK (Welcome.features), or a region of
 * more than 2^32 units: no caching; every pp_alloc goes to the daemon.  A re-claim on a daemon
 * without the feature turns caching off; blocks still held then go back one free at a time.
 *
 * Locks: bc_lock (one per process) guards bc_tc_t.c, the per-client lists of caches and
 * c->bc_returning; taken when a thread first uses a client, at thread exit, by
 * pp_disconnect and to add up a report — never on the fast paths, never across a request.
 * The fast paths take no lock: a thread-local pointer, the slot's atomic word, plain stores.
 */
#define _GNU_SOURCE
#include "client.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BC_LIKELY(x) __builtin_expect(!!(x), 1)
#define BC_TLS __thread __attribute__((tls_model("initial-exec")))

#define BC_HIGH_BYTES (256u << 10) /* per thread and order */
#define BC_HIGH_MAX 64u
#define BC_HIGH_MIN 4u
#define BC_CHUNK (1u << BC_CHUNK_SHIFT)

/* The slot word: generation in bits 0..27, order in 28..30, state in 32..33. */
#define BC_GEN_BITS 28u
#define BC_GEN_MASK ((1ull << BC_GEN_BITS) - 1)
#define BC_ST_NONE 0ull
#define BC_ST_CACHED 1ull
#define BC_ST_LIVE 2ull

static inline uint64_t bc_st(uint64_t state, uint64_t gen, unsigned order) {
  return state << 32 | (uint64_t)order << BC_GEN_BITS | (gen & BC_GEN_MASK);
}
static inline uint64_t bc_st_gen(uint64_t st) {
  return st & BC_GEN_MASK;
}
static inline uint64_t bc_st_state(uint64_t st) {
  return st >> 32;
}
static inline uint64_t bc_handle(uint64_t gen, unsigned order, uint64_t unit) {
  return BC_HANDLE_TAG | gen << 35 | (uint64_t)order << 32 | unit;
}

typedef struct bc_thread_cache {
  uint64_t serial;                        /* of its client; immutable */
  pp_client *c;                           /* (bc_lock) NULL once orphaned */
  struct bc_thread_cache *next_in_thread; /* owner thread only */
  struct bc_thread_cache *next_in_client; /* (bc_lock) c->bc_threads */
  struct bc_thread_cache **pprev_in_client;
  _Atomic unsigned n[BC_ORDERS]; /* blocks on each stack: the owner writes, reports read */
  uint32_t *stack[BC_ORDERS];    /* first units, coldest first */
  uint32_t units[];              /* room for every stack */
} bc_tc_t;

typedef struct bc_thread {
  bc_tc_t *head;
} bc_thread_t;

static pthread_mutex_t bc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bc_cond = PTHREAD_COND_INITIALIZER;
static pthread_once_t bc_once = PTHREAD_ONCE_INIT;
static pthread_key_t bc_key;
static int bc_key_rc = -1;

static BC_TLS bc_tc_t *t_hot;      /* the cache last used by this thread */
static BC_TLS bc_thread_t *t_self; /* this thread's registration */

static void bc_thread_exit(void *arg);

static void bc_key_create(void) {
  bc_key_rc = pthread_key_create(&bc_key, bc_thread_exit);
}

static inline unsigned bc_order_of(const pp_client *c, uint64_t size) {
  if (size <= (1ull << c->bc_shift)) return 0;
  return (unsigned)(64 - __builtin_clzll(size - 1)) - c->bc_shift;
}

static inline uint64_t bc_block_size(const pp_client *c, unsigned order) {
  return 1ull << (c->bc_shift + order);
}

/* The slot of unit u, or NULL when its chunk was never made (no block there was cached). */
static inline bc_slot_t *bc_slot(const pp_client *c, uint64_t u) {
  bc_slot_t *chunk =
      atomic_load_explicit(&c->bc_dir[u >> BC_CHUNK_SHIFT], memory_order_acquire);
  return chunk ? &chunk[u & (BC_CHUNK - 1)] : NULL;
}

/* The slot of a unit on one of this thread's stacks: its chunk exists, and this thread saw
 * it made (the block came here through a registration or a free's compare-and-swap, both
 * ordered after the chunk's pointer was published). */
static inline bc_slot_t *bc_slot_held(const pp_client *c, uint64_t u) {
  return &atomic_load_explicit(&c->bc_dir[u >> BC_CHUNK_SHIFT],
                               memory_order_relaxed)[u & (BC_CHUNK - 1)];
}

/* The slot of unit u, making its chunk if needed; NULL when out of memory. */
static bc_slot_t *bc_slot_make(pp_client *c, uint64_t u) {
  _Atomic(bc_slot_t *) *d = &c->bc_dir[u >> BC_CHUNK_SHIFT];
  bc_slot_t *chunk = atomic_load_explicit(d, memory_order_acquire), *expected = NULL;
  if (!chunk) {
    chunk = calloc(BC_CHUNK, sizeof *chunk);
    if (!chunk) return NULL;
    if (!atomic_compare_exchange_strong_explicit(d, &expected, chunk, memory_order_acq_rel,
                                                 memory_order_acquire)) {
      free(chunk);
      chunk = expected;
    }
  }
  return &chunk[u & (BC_CHUNK - 1)];
}

/* ---- set-up ------------------------------------------------------------------------- */

static bool bc_env_allows(void) {
  const char *v = getenv("PINPOOL_BUFFER_CACHE");
  if (!v) return true;
  return !(strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0 || strcasecmp(v, "off") == 0 ||
           strcasecmp(v, "false") == 0);
}

int bc_init(pp_client *c, const Pinpool__V1__Welcome *w, bool enabled) {
  static _Atomic uint64_t next_serial = 1;
  uint64_t limit = c->page_size < BC_MAX_BYTES ? c->page_size : BC_MAX_BYTES;

  c->bc_serial = atomic_fetch_add(&next_serial, 1);
  c->bc_shift = (unsigned)__builtin_ctzll(c->min_block);
  c->bc_units = c->region_size >> c->bc_shift;
  atomic_init(&c->bc_limit, 0);
  atomic_init(&c->bc_epoch, 1);
  atomic_init(&c->bc_addr_gen, 0);
  atomic_init(&c->features, w->features);
  if (!enabled || !bc_env_allows() || !(w->features & PINPOOL__V1__FEATURE__FEATURE_BULK) ||
      limit < c->min_block || c->bc_units == 0 || c->bc_units > (1ull << 32))
    return 0;
  c->bc_norders = bc_order_of(c, limit) + 1;
  if (c->bc_norders > BC_ORDERS) c->bc_norders = BC_ORDERS;
  for (unsigned k = 0; k < c->bc_norders; k++) {
    uint64_t h = BC_HIGH_BYTES / bc_block_size(c, k);
    c->bc_high[k] = h > BC_HIGH_MAX ? BC_HIGH_MAX : h < BC_HIGH_MIN ? BC_HIGH_MIN : (unsigned)h;
  }
  c->bc_ndir = (size_t)((c->bc_units + BC_CHUNK - 1) >> BC_CHUNK_SHIFT);
  c->bc_dir = calloc(c->bc_ndir, sizeof *c->bc_dir);
  if (!c->bc_dir) return PP_ENOPRIVMEM;
  atomic_store_explicit(&c->bc_limit, bc_block_size(c, c->bc_norders - 1),
                        memory_order_relaxed);
  return 0;
}

void bc_reclaimed(pp_client *c, uint32_t features) {
  atomic_store_explicit(&c->features, features, memory_order_relaxed);
  atomic_store_explicit(&c->bc_addr_gen, 0, memory_order_relaxed);
  atomic_fetch_add_explicit(&c->bc_epoch, 1, memory_order_relaxed);
  /* On again when they were on before the re-claim and the daemon still knows the bulk
   * requests (a daemon without them: blocks still held go back one free at a time). */
  if (c->bc_norders && (features & PINPOOL__V1__FEATURE__FEATURE_BULK))
    atomic_store_explicit(&c->bc_limit, bc_block_size(c, c->bc_norders - 1),
                          memory_order_relaxed);
}

void bc_suspend(pp_client *c) {
  atomic_store_explicit(&c->bc_limit, 0, memory_order_relaxed);
}

/* An alloc_bulk reply's addresses_generation: a change from the last one seen means
 * addresses may have moved, so every cached description is older than the epoch. */
static void bc_observe_gen(pp_client *c, uint64_t gen) {
  uint64_t old = atomic_exchange_explicit(&c->bc_addr_gen, gen + 1, memory_order_relaxed);
  if (old != 0 && old != gen + 1)
    atomic_fetch_add_explicit(&c->bc_epoch, 1, memory_order_relaxed);
}

/* ---- threads' caches ------------------------------------------------------------------ */

/* Free the calling thread's orphaned caches.  Caller holds bc_lock. */
static void bc_sweep_locked(bc_thread_t *self) {
  for (bc_tc_t **pp = &self->head; *pp;) {
    bc_tc_t *tc = *pp;
    if (tc->c) {
      pp = &tc->next_in_thread;
      continue;
    }
    *pp = tc->next_in_thread;
    if (t_hot == tc) t_hot = NULL;
    free(tc);
  }
}

/* This thread's cache for c, made on first use; NULL when out of memory or without a
 * pthread key. */
static bc_tc_t *bc_find_slow(pp_client *c) {
  bc_thread_t *self = t_self;
  size_t room = 0;
  if (self) {
    for (bc_tc_t *tc = self->head; tc; tc = tc->next_in_thread)
      if (tc->serial == c->bc_serial) {
        t_hot = tc;
        return tc;
      }
  }
  pthread_once(&bc_once, bc_key_create);
  if (bc_key_rc != 0) return NULL;
  if (!self) {
    self = calloc(1, sizeof *self);
    if (!self) return NULL;
    if (pthread_setspecific(bc_key, self) != 0) {
      free(self);
      return NULL;
    }
    t_self = self;
  }
  for (unsigned k = 0; k < c->bc_norders; k++)
    room += c->bc_high[k];
  bc_tc_t *tc = calloc(1, sizeof *tc + room * sizeof(uint32_t));
  if (!tc) return NULL;
  tc->serial = c->bc_serial;
  room = 0;
  for (unsigned k = 0; k < c->bc_norders; k++) {
    tc->stack[k] = tc->units + room;
    room += c->bc_high[k];
  }
  pthread_mutex_lock(&bc_lock);
  bc_sweep_locked(self);
  tc->c = c;
  tc->next_in_client = c->bc_threads;
  if (c->bc_threads) c->bc_threads->pprev_in_client = &tc->next_in_client;
  tc->pprev_in_client = &c->bc_threads;
  c->bc_threads = tc;
  pthread_mutex_unlock(&bc_lock);
  tc->next_in_thread = self->head;
  self->head = tc;
  t_hot = tc;
  return tc;
}

static inline bc_tc_t *bc_find(pp_client *c) {
  bc_tc_t *tc = t_hot;
  if (BC_LIKELY(tc != NULL && tc->serial == c->bc_serial)) return tc;
  return bc_find_slow(c);
}

/* What c's caches hold, over all threads, plus (more_n, more_bytes): the report a bulk
 * request carries.  Counts read while their owners work: a snapshot, as reported. */
static void bc_report(pp_client *c, int64_t more_n, int64_t more_bytes,
                      Pinpool__V1__CacheReport *r) {
  int64_t n = more_n, bytes = more_bytes;
  pthread_mutex_lock(&bc_lock);
  for (bc_tc_t *tc = c->bc_threads; tc; tc = tc->next_in_client)
    for (unsigned k = 0; k < c->bc_norders; k++) {
      unsigned m = atomic_load_explicit(&tc->n[k], memory_order_relaxed);
      n += m;
      bytes += (int64_t)(m * bc_block_size(c, k));
    }
  pthread_mutex_unlock(&bc_lock);
  pinpool__v1__cache_report__init(r);
  r->buffers = n > 0 ? (uint64_t)n : 0;
  r->bytes = bytes > 0 ? (uint64_t)bytes : 0;
}

/* ---- to and from the daemon ------------------------------------------------------------ */

/* Give the daemon back the cached blocks at units[0..n) of order k, which the caller took
 * off its stacks: their slots go NONE first (a block the daemon has back may come to
 * another thread's refill at once), then free_bulk of their daemon handles.  Errors are
 * the request's; blocks that could not go back stay the session's until it ends (the
 * daemon reclaims them), as for cmag.c's objects. */
static int bc_give_back(pp_client *c, const uint32_t *units, const unsigned *orders,
                        unsigned n) {
  uint64_t handles[BC_HIGH_MAX * BC_ORDERS];
  unsigned done = 0;
  int first = 0;

  while (done < n) {
    unsigned m = 0;
    for (; done < n && m < sizeof handles / sizeof handles[0]; done++) {
      bc_slot_t *sl = bc_slot(c, units[done]);
      uint64_t st = atomic_load_explicit(&sl->st, memory_order_relaxed);
      handles[m++] = atomic_load_explicit(&sl->dhandle, memory_order_relaxed);
      atomic_store_explicit(&sl->st, bc_st(BC_ST_NONE, bc_st_gen(st), orders[done]),
                            memory_order_release);
    }
    Pinpool__V1__CacheReport r;
    bc_report(c, 0, 0, &r); /* the caller took them off its stacks already */
    int rc = client_free_bulk(c, handles, m, &r);
    if (rc == PP_EVERSION) { /* a daemon without the bulk requests (after a re-claim) */
      rc = 0;
      for (unsigned i = 0; i < m; i++) {
        int e = pp_free(c, handles[i]);
        if (e < 0 && rc == 0) rc = e;
      }
    }
    if (rc < 0 && first == 0) first = rc;
  }
  return first;
}

/* Return every block of tc's stacks. */
static int bc_flush(pp_client *c, bc_tc_t *tc) {
  uint32_t units[BC_HIGH_MAX * BC_ORDERS];
  unsigned orders[BC_HIGH_MAX * BC_ORDERS], n = 0;
  for (unsigned k = 0; k < c->bc_norders; k++) {
    unsigned m = atomic_load_explicit(&tc->n[k], memory_order_relaxed);
    for (unsigned i = 0; i < m; i++) {
      units[n] = tc->stack[k][i];
      orders[n++] = k;
    }
    atomic_store_explicit(&tc->n[k], 0, memory_order_relaxed);
  }
  return n ? bc_give_back(c, units, orders, n) : 0;
}

/* Return the coldest blocks of order k down to the low watermark. */
static int bc_trim(pp_client *c, bc_tc_t *tc, unsigned k) {
  uint32_t units[BC_HIGH_MAX];
  unsigned orders[BC_HIGH_MAX];
  unsigned n = atomic_load_explicit(&tc->n[k], memory_order_relaxed), low = c->bc_high[k] / 2;
  unsigned drop = n > low ? n - low : 0;
  for (unsigned i = 0; i < drop; i++) {
    units[i] = tc->stack[k][i];
    orders[i] = k;
  }
  memmove(tc->stack[k], tc->stack[k] + drop, (n - drop) * sizeof *tc->stack[k]);
  atomic_store_explicit(&tc->n[k], n - drop, memory_order_relaxed);
  return drop ? bc_give_back(c, units, orders, drop) : 0;
}

/* Fill tc's empty stack of order k with `count` blocks from one alloc_bulk. */
static int bc_fetch(pp_client *c, bc_tc_t *tc, unsigned k, unsigned count) {
  uint64_t bsize = bc_block_size(c, k);
  uint32_t epoch = atomic_load_explicit(&c->bc_epoch, memory_order_relaxed);
  Pinpool__V1__AllocBulk a = PINPOOL__V1__ALLOC_BULK__INIT;
  Pinpool__V1__CacheReport r;
  Pinpool__V1__Response *resp;
  unsigned n = atomic_load_explicit(&tc->n[k], memory_order_relaxed), got = 0;
  int rc;

  bc_report(c, count, (int64_t)(count * bsize), &r);
  a.size = bsize;
  a.count = count;
  a.cache = &r;
  rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_ALLOC_BULK, &a.base,
                  PINPOOL__V1__RESPONSE__BODY_BUFFERS, &resp);
  if (rc < 0) return rc;
  const Pinpool__V1__Buffers *bs = resp->buffers;
  bc_observe_gen(c, bs->addresses_generation);
  rc = bs->n_buffers == count ? 0 : PP_EPROTO;
  for (size_t i = 0; rc == 0 && i < bs->n_buffers; i++) {
    const Pinpool__V1__Buffer *b = bs->buffers[i];
    if (b->size != bsize || (b->offset & (bsize - 1)) || b->offset >= c->region_size ||
        bsize > c->region_size - b->offset || (b->handle & BC_HANDLE_TAG) || !b->contiguous)
      rc = PP_EPROTO;
  }
  for (size_t i = 0; rc == 0 && i < bs->n_buffers; i++) {
    const Pinpool__V1__Buffer *b = bs->buffers[i];
    uint64_t u = b->offset >> c->bc_shift;
    bc_slot_t *sl = bc_slot_make(c, u);
    if (!sl) {
      rc = PP_ENOPRIVMEM;
      break;
    }
    uint64_t st = atomic_load_explicit(&sl->st, memory_order_acquire);
    if (bc_st_state(st) != BC_ST_NONE) { /* a block the session holds already: not pinpoold */
      rc = PP_EPROTO;
      break;
    }
    atomic_store_explicit(&sl->dhandle, b->handle, memory_order_relaxed);
    atomic_store_explicit(&sl->phys, b->phys_addr, memory_order_relaxed);
    atomic_store_explicit(&sl->epoch, epoch, memory_order_relaxed);
    atomic_store_explicit(&sl->st, bc_st(BC_ST_CACHED, bc_st_gen(st), k), memory_order_release);
    tc->stack[k][n + got++] = (uint32_t)u;
  }
  if (rc == 0) {
    atomic_store_explicit(&tc->n[k], n + got, memory_order_relaxed);
  } else {
    /* The session holds them all, registered or not: all go back. */
    uint64_t handles[PROTO_OBJECTS_MAX];
    unsigned m = 0;
    for (unsigned i = 0; i < got; i++) {
      bc_slot_t *sl = bc_slot(c, tc->stack[k][n + i]);
      uint64_t st = atomic_load_explicit(&sl->st, memory_order_relaxed);
      atomic_store_explicit(&sl->st, bc_st(BC_ST_NONE, bc_st_gen(st), k), memory_order_release);
    }
    for (size_t i = 0; i < bs->n_buffers && m < PROTO_OBJECTS_MAX; i++)
      if (!(bs->buffers[i]->handle & BC_HANDLE_TAG)) handles[m++] = bs->buffers[i]->handle;
    (void)client_free_bulk(c, handles, m, NULL);
  }
  frame_free_response(resp);
  return rc;
}

bool bc_err_is_room(int rc) {
  return rc == PP_ENOMEM || rc == PP_EQUOTA || rc == PP_ELIMIT || rc == PP_ELOSTPAGE ||
         rc == PP_ENOCONTIG;
}

bool bc_drain_self(pp_client *c) {
  bc_tc_t *tc = NULL;
  bool any = false;
  if (!c->bc_dir || !t_self) return false;
  for (bc_tc_t *t = t_self->head; t && !tc; t = t->next_in_thread)
    if (t->serial == c->bc_serial) tc = t;
  for (unsigned k = 0; tc && k < c->bc_norders; k++)
    any = any || atomic_load_explicit(&tc->n[k], memory_order_relaxed) > 0;
  if (any) (void)bc_flush(c, tc);
  return any;
}

/* ---- the slow halves ------------------------------------------------------------------- */

static inline void bc_fill(pp_client *c, bc_slot_t *sl, uint64_t u, unsigned k, uint64_t gen,
                           pp_buffer *ret) {
  ret->handle = bc_handle(gen, k, u);
  ret->offset = u << c->bc_shift;
  ret->size = bc_block_size(c, k);
  ret->phys = atomic_load_explicit(&sl->phys, memory_order_relaxed);
  ret->contiguous = true;
  ret->addr = c->base + ret->offset;
}

/* Pop the top of stack k (non-empty, epoch current; sl is its slot) for the program. */
static inline void bc_pop(pp_client *c, bc_tc_t *tc, unsigned k, unsigned n, bc_slot_t *sl,
                          unsigned flags, pp_buffer *ret) {
  uint64_t u = tc->stack[k][n - 1];
  uint64_t st = atomic_load_explicit(&sl->st, memory_order_relaxed);
  atomic_store_explicit(&tc->n[k], n - 1, memory_order_relaxed);
  atomic_store_explicit(&sl->st, bc_st(BC_ST_LIVE, bc_st_gen(st), k), memory_order_release);
  bc_fill(c, sl, u, k, bc_st_gen(st), ret);
  if (flags & PP_ZERO) memset(ret->addr, 0, ret->size);
}

static __attribute__((noinline, cold)) int
bc_alloc_slow(pp_client *c, unsigned k, unsigned flags, uint64_t size, pp_buffer *ret) {
  bc_tc_t *tc;
  unsigned n, want;
  int rc;

  if (atomic_load_explicit(&c->bc_limit, memory_order_relaxed) == 0 || !(tc = bc_find(c)))
    return client_alloc(c, NULL, size, flags, ret);
  n = atomic_load_explicit(&tc->n[k], memory_order_relaxed);
  if (n > 0) {
    bc_slot_t *sl = bc_slot_held(c, tc->stack[k][n - 1]);
    if (atomic_load_explicit(&sl->epoch, memory_order_relaxed) ==
        atomic_load_explicit(&c->bc_epoch, memory_order_relaxed)) {
      bc_pop(c, tc, k, n, sl, flags, ret);
      return 0;
    }
    (void)bc_flush(c, tc); /* described before the addresses moved: all of it goes back */
  }
  want = c->bc_high[k] / 2;
  rc = bc_fetch(c, tc, k, want);
  if (rc < 0 && (bc_err_is_room(rc) || rc == PP_ERANGE)) {
    /* What this thread caches counts against the same quota and region: give it back,
     * then ask for one block (which also fits the smallest frame a daemon may have). */
    (void)bc_flush(c, tc);
    rc = bc_fetch(c, tc, k, 1);
  }
  if (rc < 0) return rc;
  n = atomic_load_explicit(&tc->n[k], memory_order_relaxed);
  bc_pop(c, tc, k, n, bc_slot_held(c, tc->stack[k][n - 1]), flags, ret);
  return 0;
}

/* The block at unit u of order k, which the program just gave up (slot CACHED), onto this
 * thread's stack — or straight back to the daemon when this thread has no cache or caching
 * is off. */
static __attribute__((noinline, cold)) int bc_push_slow(pp_client *c, unsigned k, uint64_t u) {
  bc_tc_t *tc = NULL;
  int rc = 0;
  if (atomic_load_explicit(&c->bc_limit, memory_order_relaxed) == 0 || !(tc = bc_find(c))) {
    uint32_t unit = (uint32_t)u;
    return bc_give_back(c, &unit, &k, 1);
  }
  unsigned n = atomic_load_explicit(&tc->n[k], memory_order_relaxed);
  if (n >= c->bc_high[k]) {
    rc = bc_trim(c, tc, k);
    n = atomic_load_explicit(&tc->n[k], memory_order_relaxed);
  }
  tc->stack[k][n] = (uint32_t)u;
  atomic_store_explicit(&tc->n[k], n + 1, memory_order_relaxed);
  return rc;
}

/* ---- the fast paths -------------------------------------------------------------------- */

int bc_alloc(pp_client *c, uint64_t size, unsigned flags, pp_buffer *ret) {
  unsigned k = bc_order_of(c, size);
  bc_tc_t *tc = t_hot;
  if (BC_LIKELY(tc != NULL && tc->serial == c->bc_serial)) {
    unsigned n = atomic_load_explicit(&tc->n[k], memory_order_relaxed);
    if (BC_LIKELY(n > 0)) {
      bc_slot_t *sl = bc_slot_held(c, tc->stack[k][n - 1]);
      if (BC_LIKELY(atomic_load_explicit(&sl->epoch, memory_order_relaxed) ==
                    atomic_load_explicit(&c->bc_epoch, memory_order_relaxed))) {
        bc_pop(c, tc, k, n, sl, flags, ret);
        return 0;
      }
    }
  }
  return bc_alloc_slow(c, k, flags, size, ret);
}

/* LIVE under handle's generation and order -> CACHED under the next generation; false
 * when the program does not hold the block under that handle.  *ret_u, *ret_k: the block. */
static inline bool bc_release(pp_client *c, uint64_t handle, uint64_t *ret_u, unsigned *ret_k) {
  uint64_t u = handle & 0xffffffffull, gen = (handle >> 35) & BC_GEN_MASK;
  unsigned k = (unsigned)(handle >> 32) & 7u;
  bc_slot_t *sl;
  if (u >= c->bc_units || k >= c->bc_norders || !c->bc_dir || !(sl = bc_slot(c, u)))
    return false;
  uint64_t want = bc_st(BC_ST_LIVE, gen, k);
  if (!atomic_compare_exchange_strong_explicit(&sl->st, &want, bc_st(BC_ST_CACHED, gen + 1, k),
                                               memory_order_acq_rel, memory_order_relaxed))
    return false;
  *ret_u = u;
  *ret_k = k;
  return true;
}

int bc_free(pp_client *c, uint64_t handle) {
  uint64_t u;
  unsigned k;
  if (!bc_release(c, handle, &u, &k)) return PP_ENOENT;
  bc_tc_t *tc = t_hot;
  if (BC_LIKELY(tc != NULL && tc->serial == c->bc_serial &&
                atomic_load_explicit(&c->bc_limit, memory_order_relaxed) != 0)) {
    unsigned n = atomic_load_explicit(&tc->n[k], memory_order_relaxed);
    if (BC_LIKELY(n < c->bc_high[k])) {
      tc->stack[k][n] = (uint32_t)u;
      atomic_store_explicit(&tc->n[k], n + 1, memory_order_relaxed);
      return 0;
    }
  }
  return bc_push_slow(c, k, u);
}

/* ---- bulk and segments ------------------------------------------------------------------ */

int bc_free_bulk(pp_client *c, const uint64_t *handles, unsigned n) {
  uint64_t daemon[PROTO_OBJECTS_MAX], us[PROTO_OBJECTS_MAX];
  unsigned ks[PROTO_OBJECTS_MAX], nd = 0, nt = 0;
  int rc = 0;

  /* The caches' handles first, each taken from the program as a free would: a handle the
   * program does not hold (or holds once and lists twice) undoes the ones taken. */
  for (unsigned i = 0; i < n; i++) {
    if (!(handles[i] & BC_HANDLE_TAG)) {
      daemon[nd++] = handles[i];
      continue;
    }
    if (!bc_release(c, handles[i], &us[nt], &ks[nt])) {
      rc = PP_ENOENT;
      goto undo;
    }
    nt++;
  }
  if (nd) {
    Pinpool__V1__CacheReport r;
    bc_report(c, 0, 0, &r);
    rc = client_free_bulk(c, daemon, nd, c->bc_dir ? &r : NULL);
    if (rc < 0) goto undo;
  }
  for (unsigned i = 0; i < nt; i++) {
    int e = bc_push_slow(c, ks[i], us[i]);
    if (e < 0 && rc == 0) rc = e;
  }
  return rc;

undo:
  /* Taken slots are CACHED but on no stack: nobody else can touch them. */
  while (nt > 0) {
    nt--;
    bc_slot_t *sl = bc_slot(c, us[nt]);
    uint64_t st = atomic_load_explicit(&sl->st, memory_order_relaxed);
    atomic_store_explicit(&sl->st, bc_st(BC_ST_LIVE, bc_st_gen(st) - 1, ks[nt]),
                          memory_order_release);
  }
  return rc;
}

int bc_segments(pp_client *c, uint64_t handle, pp_segment *out, unsigned n) {
  uint64_t u = handle & 0xffffffffull, gen = (handle >> 35) & BC_GEN_MASK, phys;
  unsigned k = (unsigned)(handle >> 32) & 7u;
  bc_slot_t *sl;
  if (u >= c->bc_units || k >= c->bc_norders || !c->bc_dir || !(sl = bc_slot(c, u)) ||
      atomic_load_explicit(&sl->st, memory_order_acquire) != bc_st(BC_ST_LIVE, gen, k))
    return PP_ENOENT;
  phys = atomic_load_explicit(&sl->phys, memory_order_relaxed);
  if (atomic_load_explicit(&sl->epoch, memory_order_relaxed) !=
      atomic_load_explicit(&c->bc_epoch, memory_order_relaxed)) {
    /* Described before addresses may have moved: ask the daemon, and keep its answer. */
    uint32_t epoch = atomic_load_explicit(&c->bc_epoch, memory_order_relaxed);
    int rc = client_describe(c, atomic_load_explicit(&sl->dhandle, memory_order_relaxed), out,
                             n, &phys);
    if (rc < 0) return rc;
    atomic_store_explicit(&sl->phys, phys, memory_order_relaxed);
    atomic_store_explicit(&sl->epoch, epoch, memory_order_relaxed);
    return rc;
  }
  if (!phys) return 0; /* addresses unknown to the daemon */
  if (n > 0 && out)
    out[0] =
        (pp_segment){.offset = u << c->bc_shift, .phys = phys, .length = bc_block_size(c, k)};
  return 1;
}

/* ---- thread exit and disconnect ---------------------------------------------------------- */

static void bc_thread_exit(void *arg) {
  bc_thread_t *self = arg;
  bc_tc_t *home = NULL;
  t_hot = NULL;
  t_self = NULL;
  pthread_mutex_lock(&bc_lock);
  for (bc_tc_t *tc = self->head, *next; tc; tc = next) {
    next = tc->next_in_thread;
    if (!tc->c) {
      free(tc);
      continue;
    }
    *tc->pprev_in_client = tc->next_in_client;
    if (tc->next_in_client) tc->next_in_client->pprev_in_client = tc->pprev_in_client;
    tc->c->bc_returning++;
    tc->next_in_thread = home;
    home = tc;
  }
  pthread_mutex_unlock(&bc_lock);

  /* Without bc_lock: a return may wait for a re-claim (reclaim.c).  The caches are off
   * their clients' lists (the reports no longer count them) and bc_returning keeps
   * pp_disconnect from freeing their clients meanwhile. */
  for (bc_tc_t *tc = home; tc; tc = tc->next_in_thread)
    (void)bc_flush(tc->c, tc);

  pthread_mutex_lock(&bc_lock);
  for (bc_tc_t *tc = home, *next; tc; tc = next) {
    next = tc->next_in_thread;
    if (--tc->c->bc_returning == 0) pthread_cond_broadcast(&bc_cond);
    free(tc);
  }
  pthread_mutex_unlock(&bc_lock);
  free(self);
}

void bc_fini(pp_client *c) {
  pthread_mutex_lock(&bc_lock);
  for (bc_tc_t *tc = c->bc_threads; tc; tc = tc->next_in_client)
    tc->c = NULL;
  c->bc_threads = NULL;
  if (t_self) bc_sweep_locked(t_self);
  while (c->bc_returning > 0)
    pthread_cond_wait(&bc_cond, &bc_lock);
  pthread_mutex_unlock(&bc_lock);
  for (size_t i = 0; c->bc_dir && i < c->bc_ndir; i++)
    free(atomic_load_explicit(&c->bc_dir[i], memory_order_relaxed));
  free(c->bc_dir);
  c->bc_dir = NULL;
}
