/*
 * ledger.c — who holds what in one pool, and the allocators it is held from.
 *
 * The ledger is the daemon's book of ownership, kept apart from the protocol: plain C
 * types in, a PP_E* code and a reason out (handlers.c turns a request into ledger calls
 * and the result into a Response).  It owns one pool's allocator wiring — the region, the
 * buddy allocator over it, the slab layer, and for each cache a depot with the loop
 * thread's magazine (mag_cpu_t) in front of it (Bonwick & Adams 2001) — and the records of
 * what holders (sessions) hold from them.
 *
 * What a holder can hold:
 *   - a *buffer*: one buddy block, named by a 64-bit handle that is never reused within
 *     the ledger's lifetime (a stale handle can only miss, never hit someone else's
 *     block).  alloc rounds the size up to a block and answers with the block's real size.
 *     A buffer may be *published* under a name; lookup takes a reference to it.  Each
 *     holder counts its references (alloc = 1, each lookup +1); free drops one.  The block
 *     goes back to the buddy when the last reference of the last holder goes, and its name
 *     goes with it.
 *   - *objects* of a slab cache, served through the cache's magazine, so a cache_alloc of
 *     a batch mostly moves offsets between arrays.  Every object a holder holds is in its
 *     objs map and in obj_owner, so cache_free accepts exactly the holder's own objects
 *     and a dead holder's objects can all be returned.
 *
 * Rules:
 *   - a call that fails leaves every piece of state as it was: each request validates
 *     everything first and only then changes anything (cache_free is all-or-nothing and
 *     names the first bad offset); when private memory runs out half-way, what was done
 *     is undone and the call fails with PP_ENOPRIVMEM;
 *   - a holder cannot free what it does not hold: PP_EPERM when someone else holds it,
 *     PP_ENOENT when nobody does (including "already freed");
 *   - quota: the pinned bytes (blocks + object sizes) charged to a uid never exceed
 *     cfg.quota; a buffer is charged to the uid that allocated it until the block returns;
 *   - per-holder buffer references never exceed cfg.max_buffers;
 *   - CONTIGUOUS is decided by the buddy with region_is_contiguous as its oracle: blocks no
 *     larger than a page are contiguous by alignment; larger ones need known, consecutive
 *     physical pages, else PP_ENOCONTIG;
 *   - release (a disconnect) returns everything at once.  Objects go straight to their
 *     slabs, and the caches the holder used are drained and shrunk, so that after a crash
 *     the buddy's free bytes return to their value from before the client came (what an
 *     operator checks), at the price of re-growing slabs for the next user.
 *
 * Primitive mutations.  Every change of ownership is made by one of a few small functions,
 * and nothing else writes the ownership records:
 *   buf_create / buf_destroy      a buffer record for a block (destroy returns the block)
 *   hold_add / hold_drop          a holder's reference count on a buffer
 *   name_publish / name_unpublish a buffer's name
 *   charge / uncharge             bytes charged to a uid
 *   obj_take / obj_give           a holder's object
 *   cache_create                  the ledger adopts a slab cache
 * Requests (ledger_buf_alloc, ...) are sequences of them, undone by their inverses on
 * failure; allocator calls (buddy_alloc, mag_alloc, ...) stay outside them.  Each
 * primitive ends in ledger_record(), which counts it (ledger_mutations; ledger_check ties
 * the counts to the live records).  That is the one place a journal hooks in: record the
 * primitive there, and a reply (sent only after the request returns) never announces an
 * ownership change that is not written.  Replay after a restart is the same primitives
 * driven from the journal: buddy_reserve() re-takes each buffer's block before its
 * buf_create (whose handle is an argument for that reason), cache_create re-adopts each
 * cache, and each object is re-taken from its slab before obj_take — the slab layer needs
 * a reserve-this-object call for that, which shm/ does not have yet.  Nothing here depends
 * on state that cannot be rebuilt from those records.
 *
 * Room for what comes next.  Per-uid limits: quota_allows() is the one place the limit
 * is read.  Charges that move between holders: a buffer's charge is a separate primitive
 * from its references, with the uid in the buffer (owner_uid), so moving it is uncharge +
 * charge + a new owner.  Names scoped by user: by_name is keyed by a hash of the name
 * alone; scoping hashes (uid, name) instead and compares both.  Several pools per daemon:
 * nothing here is global — each ledger has its own region, buddy, slabs, handle counter and
 * holders; a session would hold one ledger_holder_t per pool, and a handle would be named
 * with its pool (or each pool handed handles from a disjoint range).
 *
 * Invariants (ledger_check, run after every request at PP_DEBUG=3):
 *   sum over holders of holds' counts == their buf_refs; every held handle is live and
 *   lists the holder among its holders, and every holder holds it; obj_owner has exactly
 *   the union of the holders' objs; each cache's held == objects mapped to it, and the
 *   magazine layer conserves objects (mag_check); uid_bytes sum == buffer bytes + held
 *   object bytes; creates - destroys == live buffers, publishes - unpublishes == named
 *   buffers, takes - gives == held objects; plus buddy_check and slab_check.
 *
 * Locks: none of our own.  Only the loop thread calls in; shm/ takes its internal locks
 * (depot, then cache, then buddy) below us.
 *
 * References: Knowlton 1965 / Knuth TAOCP 2.5 (buddy); Bonwick 1994 (slab);
 * Bonwick & Adams 2001 (magazines).
 */
#include "ledger.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"
#include "log.h"
#include "u64map.h"
#include "utf8.h"

struct ledger_buf {
  uint64_t handle;
  uint64_t offset;
  uint64_t size; /* the buddy block's size: what the client gets */
  unsigned order;
  uid_t owner_uid; /* charged for the block until it goes back */
  bool contiguous;
  uint64_t phys; /* of offset; 0 when unknown */
  char *name;    /* malloc'd; NULL when unpublished */
  uint64_t name_hash;
  struct ledger_buf *name_next; /* chain of buffers whose names share name_hash */
  ledger_holder_t **holders;    /* distinct holders of a reference */
  uint32_t nholders, holders_cap;
};
typedef struct ledger_buf lbuf_t;

typedef struct lcache {
  slab_cache_t *cache;
  mag_depot_t *depot;
  mag_cpu_t *mag; /* the loop thread's magazine in front of the depot */
  uint32_t id;
  uint32_t object_size, align, objs_per_slab;
  uint64_t slab_bytes; /* pages_per_slab * 4 KiB: slabs are naturally aligned blocks */
  uint64_t held;       /* objects held by holders */
  char name[SLAB_NAME_MAX];
} lcache_t;

struct ledger_holder {
  ledger_ident_t ident;
  /* holds: buffer handle -> references held (alloc and each lookup add one).
   * objs: object offset -> cache id. */
  u64map_t holds;
  u64map_t objs;
  uint64_t buf_refs;  /* sum of holds' counts (the per-holder buffer limit) */
  uint64_t buf_bytes; /* block bytes of the distinct buffers held */
  uint64_t obj_bytes; /* object_size bytes of the objects held */
  ledger_holder_t *prev, *next;
};

struct ledger {
  ledger_config_t cfg;
  region_t *region;
  buddy_t *buddy;
  slab_t *slab;
  region_run_t *runs; /* physically contiguous runs, in offset order */
  size_t nruns;

  u64map_t by_handle;    /* handle -> lbuf_t* */
  u64map_t by_offset;    /* block offset -> lbuf_t* */
  u64map_t by_name;      /* fnv1a(name) -> lbuf_t* (head of a name_next chain) */
  u64map_t uid_bytes;    /* uid -> pinned bytes charged (quota) */
  u64map_t obj_owner;    /* object offset -> holding session id */
  u64map_t caches;       /* cache id -> lcache_t* */
  lcache_t **cache_list; /* in creation order */
  size_t ncaches, caches_cap;

  ledger_holder_t *holders; /* newest first */
  uint32_t nholders;
  uint64_t next_handle;
  uint64_t buf_bytes; /* bytes of live buffers */
  uint64_t nbufs;
  uint64_t nnamed;    /* published buffers */
  uint64_t obj_bytes; /* object_size bytes of objects held */
  uint64_t mutations[LEDGER_OP__COUNT];
};

#define NOMEM_MSG "daemon out of private memory"

static int fail(ledger_why_t *why, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(ledger_why_t *why, int rc, const char *fmt, ...) {
  if (why) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->msg, sizeof why->msg, fmt, ap);
    va_end(ap);
  }
  return rc;
}

static int fail_nomem(ledger_why_t *why) {
  return fail(why, PP_ENOPRIVMEM, NOMEM_MSG);
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h == U64MAP_EMPTY ? h - 1 : h;
}

static lbuf_t *buf_by_name(const ledger_t *l, const char *name) {
  uint64_t v;
  if (!u64map_get(&l->by_name, name_hash(name), &v)) return NULL;
  for (lbuf_t *b = (lbuf_t *)(uintptr_t)v; b; b = b->name_next)
    if (!strcmp(b->name, name)) return b;
  return NULL;
}

static lbuf_t *buf_by_handle(const ledger_t *l, uint64_t handle) {
  uint64_t v;
  return u64map_get(&l->by_handle, handle, &v) ? (lbuf_t *)(uintptr_t)v : NULL;
}

static lcache_t *cache_by_id(const ledger_t *l, uint32_t id) {
  uint64_t v;
  return u64map_get(&l->caches, id, &v) ? (lcache_t *)(uintptr_t)v : NULL;
}

static uint64_t uid_charged(const ledger_t *l, uid_t uid) {
  uint64_t v = 0;
  u64map_get(&l->uid_bytes, uid, &v);
  return v;
}

static bool quota_allows(const ledger_t *l, uid_t uid, uint64_t bytes) {
  uint64_t have = uid_charged(l, uid);
  return !l->cfg.quota || (bytes <= l->cfg.quota && have <= l->cfg.quota - bytes);
}

static bool buffer_limit_reached(const ledger_t *l, const ledger_holder_t *h) {
  return l->cfg.max_buffers && h->buf_refs >= l->cfg.max_buffers;
}

static void zero_if_asked(ledger_t *l, uint64_t offset, uint64_t len) {
  if (l->cfg.zero_on_free) memset((char *)region_base(l->region) + offset, 0, len);
}

/* ---- primitive mutations ------------------------------------------------------------
 * Each either succeeds whole, or fails (PP_ENOPRIVMEM) having changed nothing; each ends
 * in ledger_record().  See the essay. */

static inline void ledger_record(ledger_t *l, ledger_op_t op) {
  l->mutations[op]++;
}

/* A record for the block at offset of the given order, which the buddy has already handed
 * out (or, on replay, buddy_reserve re-took), under handle: not held, named or charged. */
static int buf_create(ledger_t *l, uint64_t handle, uint64_t offset, unsigned order, uid_t uid,
                      lbuf_t **ret) {
  lbuf_t *b = calloc(1, sizeof *b);
  uint64_t phys = 0;

  if (!b) return PP_ENOPRIVMEM;
  b->handle = handle;
  b->offset = offset;
  b->order = order;
  b->size = buddy_order_size(order);
  b->owner_uid = uid;
  if (region_phys(l->region, offset, &phys)) phys = 0;
  b->phys = phys;
  b->contiguous = b->size <= region_page_size(l->region) ||
                  region_is_contiguous(l->region, offset, b->size);
  if (u64map_put(&l->by_handle, handle, (uint64_t)(uintptr_t)b)) goto fail;
  if (u64map_put(&l->by_offset, offset, (uint64_t)(uintptr_t)b)) {
    u64map_del(&l->by_handle, handle);
    goto fail;
  }
  l->buf_bytes += b->size;
  l->nbufs++;
  ledger_record(l, LEDGER_OP_BUF_CREATE);
  *ret = b;
  return 0;
fail:
  free(b);
  return PP_ENOPRIVMEM;
}

/* The record goes and the block returns to the buddy (zeroed first with zero_on_free).
 * Nobody holds it, it has no name, and its charge is gone. */
static void buf_destroy(ledger_t *l, lbuf_t *b) {
  int rc;
  PP_IASSERT(b->nholders == 0 && !b->name);
  u64map_del(&l->by_handle, b->handle);
  u64map_del(&l->by_offset, b->offset);
  zero_if_asked(l, b->offset, b->size);
  rc = buddy_free(l->buddy, b->offset);
  if (rc)
    log_err("buddy_free(%" PRIu64 ") of buffer %" PRIu64 ": %s", b->offset, b->handle,
            pp_strerror(rc));
  l->buf_bytes -= b->size;
  l->nbufs--;
  free(b->holders);
  free(b);
  ledger_record(l, LEDGER_OP_BUF_DESTROY);
}

static int name_publish(ledger_t *l, lbuf_t *b, const char *name) {
  uint64_t v = 0, hash = name_hash(name);
  char *copy = strdup(name);

  if (!copy) return PP_ENOPRIVMEM;
  u64map_get(&l->by_name, hash, &v);
  if (u64map_put(&l->by_name, hash, (uint64_t)(uintptr_t)b)) {
    free(copy);
    return PP_ENOPRIVMEM;
  }
  b->name = copy;
  b->name_hash = hash;
  b->name_next = (lbuf_t *)(uintptr_t)v;
  l->nnamed++;
  ledger_record(l, LEDGER_OP_PUBLISH);
  return 0;
}

static void name_unpublish(ledger_t *l, lbuf_t *b) {
  uint64_t v;
  lbuf_t **pp, *head;

  PP_ASSERT(b->name != NULL);
  if (u64map_get(&l->by_name, b->name_hash, &v)) {
    head = (lbuf_t *)(uintptr_t)v;
    for (pp = &head; *pp; pp = &(*pp)->name_next)
      if (*pp == b) {
        *pp = b->name_next;
        break;
      }
    if (head)
      u64map_put(&l->by_name, b->name_hash, (uint64_t)(uintptr_t)head); /* exists: no alloc */
    else
      u64map_del(&l->by_name, b->name_hash);
  }
  free(b->name);
  b->name = NULL;
  b->name_next = NULL;
  l->nnamed--;
  ledger_record(l, LEDGER_OP_UNPUBLISH);
}

/* Only ever called after quota_allows(): a new uid's key is the only allocation. */
static int charge(ledger_t *l, uid_t uid, uint64_t bytes) {
  if (u64map_put(&l->uid_bytes, uid, uid_charged(l, uid) + bytes)) return PP_ENOPRIVMEM;
  ledger_record(l, LEDGER_OP_CHARGE);
  return 0;
}

static void uncharge(ledger_t *l, uid_t uid, uint64_t bytes) {
  uint64_t have = uid_charged(l, uid);
  PP_IASSERT(have >= bytes);
  if (have <= bytes)
    u64map_del(&l->uid_bytes, uid);
  else
    u64map_put(&l->uid_bytes, uid, have - bytes); /* key exists: cannot fail */
  ledger_record(l, LEDGER_OP_UNCHARGE);
}

/* One more reference by h. */
static int hold_add(ledger_t *l, ledger_holder_t *h, lbuf_t *b) {
  uint64_t n = 0;
  bool had = u64map_get(&h->holds, b->handle, &n);
  if (!had && b->nholders == b->holders_cap) {
    uint32_t cap = b->holders_cap ? b->holders_cap * 2 : 2;
    ledger_holder_t **v = realloc(b->holders, cap * sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    b->holders = v;
    b->holders_cap = cap;
  }
  if (u64map_put(&h->holds, b->handle, n + 1)) return PP_ENOPRIVMEM;
  if (!had) {
    b->holders[b->nholders++] = h;
    h->buf_bytes += b->size;
  }
  h->buf_refs++;
  ledger_record(l, LEDGER_OP_HOLD);
  return 0;
}

/* Drop refs of h's references (all it has when refs == 0 or more than it has).  The
 * buffer may be left with no holders: the caller releases it then. */
static void hold_drop(ledger_t *l, ledger_holder_t *h, lbuf_t *b, uint64_t refs) {
  uint64_t n = 0;
  u64map_get(&h->holds, b->handle, &n);
  PP_IASSERT(n > 0);
  if (refs == 0 || refs > n) refs = n;
  h->buf_refs -= refs;
  if (n > refs) {
    u64map_put(&h->holds, b->handle, n - refs); /* key exists: no alloc */
  } else {
    u64map_del(&h->holds, b->handle);
    h->buf_bytes -= b->size;
    for (uint32_t i = 0; i < b->nholders; i++)
      if (b->holders[i] == h) {
        b->holders[i] = b->holders[--b->nholders];
        break;
      }
  }
  ledger_record(l, LEDGER_OP_UNHOLD);
}

/* h takes the object at off of cache c (already allocated from c's magazine). */
static int obj_take(ledger_t *l, ledger_holder_t *h, lcache_t *c, uint64_t off) {
  if (u64map_put(&h->objs, off, c->id)) return PP_ENOPRIVMEM;
  if (u64map_put(&l->obj_owner, off, h->ident.session_id)) {
    u64map_del(&h->objs, off);
    return PP_ENOPRIVMEM;
  }
  c->held++;
  h->obj_bytes += c->object_size;
  l->obj_bytes += c->object_size;
  ledger_record(l, LEDGER_OP_OBJ_TAKE);
  return 0;
}

/* h gives the object back (the caller returns it to c's magazine). */
static void obj_give(ledger_t *l, ledger_holder_t *h, lcache_t *c, uint64_t off) {
  u64map_del(&h->objs, off);
  u64map_del(&l->obj_owner, off);
  c->held--;
  h->obj_bytes -= c->object_size;
  l->obj_bytes -= c->object_size;
  ledger_record(l, LEDGER_OP_OBJ_GIVE);
}

/* The ledger adopts slab cache sc: a depot with the loop thread's magazine in front. */
static int cache_create(ledger_t *l, slab_cache_t *sc, lcache_t **ret) {
  slab_info_t info;
  lcache_t *c;
  int rc;

  slab_cache_info(sc, &info);
  if (l->ncaches == l->caches_cap) {
    size_t cap = l->caches_cap ? l->caches_cap * 2 : 8;
    lcache_t **v = realloc(l->cache_list, cap * sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    l->cache_list = v;
    l->caches_cap = cap;
  }
  c = calloc(1, sizeof *c);
  if (!c) return PP_ENOPRIVMEM;
  c->cache = sc;
  c->id = info.id;
  c->object_size = info.object_size;
  c->align = info.align;
  c->objs_per_slab = info.objs_per_slab;
  c->slab_bytes = (uint64_t)info.pages_per_slab * BUDDY_MIN_SIZE;
  snprintf(c->name, sizeof c->name, "%s", info.name);
  rc = mag_depot_create(sc, 0, false, &c->depot);
  if (!rc) rc = mag_cpu_create(c->depot, &c->mag);
  if (!rc) rc = u64map_put(&l->caches, c->id, (uint64_t)(uintptr_t)c);
  if (rc) {
    if (c->mag) mag_cpu_destroy(c->mag);
    if (c->depot) mag_depot_destroy(c->depot);
    free(c);
    return PP_ENOPRIVMEM; /* the magazine layer fails only for malloc */
  }
  l->cache_list[l->ncaches++] = c;
  ledger_record(l, LEDGER_OP_CACHE_CREATE);
  *ret = c;
  return 0;
}

/* ---- compositions ------------------------------------------------------------------- */

/* The last holder went: the name is forgotten, the charge lifted, the block returned. */
static void buf_release(ledger_t *l, lbuf_t *b) {
  if (b->name) name_unpublish(l, b);
  uncharge(l, b->owner_uid, b->size);
  buf_destroy(l, b);
}

static void buf_unhold(ledger_t *l, ledger_holder_t *h, lbuf_t *b, uint64_t refs) {
  hold_drop(l, h, b, refs);
  if (b->nholders == 0) buf_release(l, b);
}

static void buf_info(const lbuf_t *b, ledger_buf_info_t *ret) {
  ret->handle = b->handle;
  ret->offset = b->offset;
  ret->size = b->size;
  ret->phys = b->phys;
  ret->order = b->order;
  ret->contiguous = b->contiguous;
  ret->charged_uid = b->owner_uid;
  ret->name = b->name;
  ret->nholders = b->nholders;
  ret->buf = b;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static bool ledger_contig_cb(void *ctx, uint64_t offset, uint64_t len) {
  return region_is_contiguous(ctx, offset, len);
}

int ledger_create(const ledger_config_t *cfg, ledger_t **ret) {
  region_config_t rc = {.size = cfg->size,
                        .policy = cfg->policy,
                        .name = "pinpool",
                        .log = log_region_cb,
                        .log_ctx = NULL};
  ledger_t *l = calloc(1, sizeof *l);
  int err;

  if (!l) return PP_ENOPRIVMEM;
  l->cfg = *cfg;
  l->next_handle = 1;
  u64map_init(&l->by_handle);
  u64map_init(&l->by_offset);
  u64map_init(&l->by_name);
  u64map_init(&l->uid_bytes);
  u64map_init(&l->obj_owner);
  u64map_init(&l->caches);

  err = region_create(&rc, &l->region);
  if (err) goto fail;
  err = buddy_create(region_size(l->region), region_page_size(l->region), ledger_contig_cb,
                     l->region, &l->buddy);
  if (err) goto fail;
  err = slab_create(l->buddy, &l->slab);
  if (err) goto fail;
  if (region_phys_known(l->region)) {
    size_t n = region_runs(l->region, NULL, 0);
    if (n) {
      l->runs = calloc(n, sizeof *l->runs);
      if (!l->runs) {
        err = PP_ENOPRIVMEM;
        goto fail;
      }
      l->nruns = region_runs(l->region, l->runs, n);
      if (l->nruns > n) l->nruns = n;
    }
  }
  *ret = l;
  return 0;
fail:
  ledger_destroy(l);
  return err;
}

void ledger_destroy(ledger_t *l) {
  size_t it = 0;
  uint64_t k, v;

  if (!l) return;
  PP_ASSERT(l->holders == NULL);
  while (u64map_next(&l->by_handle, &it, &k, &v)) {
    lbuf_t *b = (lbuf_t *)(uintptr_t)v;
    free(b->name);
    free(b->holders);
    free(b);
  }
  for (size_t i = 0; i < l->ncaches; i++) {
    lcache_t *c = l->cache_list[i];
    if (c->mag) mag_cpu_destroy(c->mag);
    if (c->depot) mag_depot_destroy(c->depot);
    free(c);
  }
  free(l->cache_list);
  if (l->slab) slab_destroy(l->slab);
  if (l->buddy) buddy_destroy(l->buddy);
  if (l->region) region_destroy(l->region);
  free(l->runs);
  u64map_fini(&l->by_handle);
  u64map_fini(&l->by_offset);
  u64map_fini(&l->by_name);
  u64map_fini(&l->uid_bytes);
  u64map_fini(&l->obj_owner);
  u64map_fini(&l->caches);
  free(l);
}

const ledger_config_t *ledger_config(const ledger_t *l) {
  return &l->cfg;
}

const region_t *ledger_region(const ledger_t *l) {
  return l->region;
}

const region_run_t *ledger_runs(const ledger_t *l, size_t *ret_n) {
  *ret_n = l->nruns;
  return l->runs;
}

uint64_t ledger_free_bytes(ledger_t *l) {
  buddy_stats_t st;
  buddy_get_stats(l->buddy, &st);
  return st.free_bytes;
}

/* ---- holders ------------------------------------------------------------------------ */

int ledger_holder_create(ledger_t *l, const ledger_ident_t *ident, ledger_holder_t **ret) {
  ledger_holder_t *h = calloc(1, sizeof *h);
  if (!h) return PP_ENOPRIVMEM;
  h->ident = *ident;
  u64map_init(&h->holds);
  u64map_init(&h->objs);
  h->next = l->holders;
  if (l->holders) l->holders->prev = h;
  l->holders = h;
  l->nholders++;
  *ret = h;
  PP_VALIDATE(ledger_check, l);
  return 0;
}

const ledger_ident_t *ledger_holder_ident(const ledger_holder_t *h) {
  return &h->ident;
}

void ledger_holder_totals(const ledger_holder_t *h, ledger_holder_totals_t *ret) {
  ret->buf_refs = h->buf_refs;
  ret->buffers = u64map_len(&h->holds);
  ret->buf_bytes = h->buf_bytes;
  ret->objects = u64map_len(&h->objs);
  ret->obj_bytes = h->obj_bytes;
}

/* Keys of m, collected before a walk that deletes from m (u64map_next needs m unchanged
 * between calls).  NULL when malloc fails or m is empty. */
static uint64_t *collect_keys(const u64map_t *m, size_t *ret_n) {
  size_t it = 0, n = 0;
  uint64_t k, *keys = u64map_len(m) ? malloc(u64map_len(m) * sizeof *keys) : NULL;
  if (keys)
    while (u64map_next(m, &it, &k, NULL))
      keys[n++] = k;
  *ret_n = n;
  return keys;
}

/* The first key of a non-empty m: the fallback walk when collect_keys cannot allocate
 * (restarting from slot 0 after each deletion; quadratic, but only without memory). */
static uint64_t first_key(const u64map_t *m) {
  size_t it = 0;
  uint64_t k = 0;
  u64map_next(m, &it, &k, NULL);
  return k;
}

static void give_object(ledger_t *l, ledger_holder_t *h, uint64_t off, u64map_t *touched,
                        uint64_t *bytes) {
  uint64_t cid = 0;
  lcache_t *c;
  u64map_get(&h->objs, off, &cid);
  c = cache_by_id(l, (uint32_t)cid);
  PP_ASSERT(c != NULL);
  obj_give(l, h, c, off);
  zero_if_asked(l, off, c->object_size);
  mag_free(c->mag, off);
  *bytes += c->object_size;
  u64map_put(touched, cid, 1); /* on failure that cache just keeps its empty slabs a while */
}

void ledger_holder_release(ledger_t *l, ledger_holder_t *h) {
  u64map_t touched;
  uint64_t *keys, k, obj_bytes = 0;
  size_t n, it;

  /* Buffers: the last holder's reference returns the block. */
  keys = collect_keys(&h->holds, &n);
  if (keys) {
    for (size_t i = 0; i < n; i++)
      buf_unhold(l, h, buf_by_handle(l, keys[i]), 0);
    free(keys);
  }
  while (u64map_len(&h->holds))
    buf_unhold(l, h, buf_by_handle(l, first_key(&h->holds)), 0);

  /* Objects: back through the magazine, then each cache used is drained and shrunk. */
  u64map_init(&touched);
  keys = collect_keys(&h->objs, &n);
  if (keys) {
    for (size_t i = 0; i < n; i++)
      give_object(l, h, keys[i], &touched, &obj_bytes);
    free(keys);
  }
  while (u64map_len(&h->objs))
    give_object(l, h, first_key(&h->objs), &touched, &obj_bytes);
  if (obj_bytes) uncharge(l, h->ident.uid, obj_bytes);
  it = 0;
  while (u64map_next(&touched, &it, &k, NULL)) {
    lcache_t *c = cache_by_id(l, (uint32_t)k);
    mag_drain(c->depot, c->mag);
    slab_cache_shrink(c->cache);
  }
  u64map_fini(&touched);

  if (h->prev)
    h->prev->next = h->next;
  else
    l->holders = h->next;
  if (h->next) h->next->prev = h->prev;
  l->nholders--;
  u64map_fini(&h->holds);
  u64map_fini(&h->objs);
  free(h);
  PP_VALIDATE(ledger_check, l);
}

/* ---- buffers ------------------------------------------------------------------------ */

static int buf_alloc(ledger_t *l, ledger_holder_t *h, uint64_t size, unsigned flags,
                     const char *name, ledger_why_t *why, ledger_buf_info_t *ret) {
  const unsigned known = LEDGER_ALLOC_CONTIG | LEDGER_ALLOC_ZERO;
  uid_t uid = h->ident.uid;
  unsigned order;
  uint64_t offset, bsize;
  lbuf_t *b;
  int rc;

  if (name && !name[0]) name = NULL;
  if (flags & ~known) return fail(why, PP_EINVAL, "unknown alloc flags 0x%x", flags & ~known);
  if (size == 0) return fail(why, PP_EINVAL, "size 0");
  if (name && strlen(name) > LEDGER_NAME_MAX)
    return fail(why, PP_EINVAL, "name longer than %u bytes", LEDGER_NAME_MAX);
  if (name && utf8_prefix(name, LEDGER_NAME_MAX) != strlen(name))
    return fail(why, PP_EINVAL, "name is not valid UTF-8");
  if (size > region_size(l->region) || buddy_order_for_size(size, &order))
    return fail(why, PP_ERANGE, "size %" PRIu64 " exceeds the region (%" PRIu64 " bytes)", size,
                region_size(l->region));
  bsize = buddy_order_size(order);
  if (name && buf_by_name(l, name))
    return fail(why, PP_EEXIST, "a buffer named '%s' is already published", name);
  if (buffer_limit_reached(l, h))
    return fail(why, PP_ELIMIT, "this session already holds %" PRIu64 " buffers (limit %u)",
                h->buf_refs, l->cfg.max_buffers);
  if (!quota_allows(l, uid, bsize))
    return fail(why, PP_EQUOTA,
                "uid %u has %" PRIu64 " bytes pinned; %" PRIu64 " more exceeds quota %" PRIu64,
                (unsigned)uid, uid_charged(l, uid), bsize, l->cfg.quota);

  rc = buddy_alloc(l->buddy, order, (flags & LEDGER_ALLOC_CONTIG) ? BUDDY_CONTIG : 0, &offset);
  if (rc == PP_ENOCONTIG)
    return fail(why, rc, "no physically contiguous block of %" PRIu64 " bytes%s", bsize,
                !region_phys_known(l->region)  ? " (physical addresses unknown)"
                : !region_hugepages(l->region) ? " (no hugepages)"
                                               : "");
  if (rc == PP_ENOMEM) return fail(why, rc, "no free block of %" PRIu64 " bytes", bsize);
  if (rc == PP_ERANGE) return fail(why, rc, "size %" PRIu64 " exceeds the largest block", size);
  if (rc) return fail(why, rc, "buddy_alloc: %s", pp_strerror(rc));

  if (buf_create(l, l->next_handle, offset, order, uid, &b)) {
    buddy_free(l->buddy, offset);
    return fail_nomem(why);
  }
  if (charge(l, uid, bsize)) {
    buf_destroy(l, b);
    return fail_nomem(why);
  }
  if (hold_add(l, h, b)) {
    uncharge(l, uid, bsize);
    buf_destroy(l, b);
    return fail_nomem(why);
  }
  l->next_handle++;
  if (name && name_publish(l, b, name)) {
    buf_unhold(l, h, b, 0); /* releases everything above, block included */
    return fail_nomem(why);
  }
  if (flags & LEDGER_ALLOC_ZERO) memset((char *)region_base(l->region) + offset, 0, bsize);
  buf_info(b, ret);
  return 0;
}

int ledger_buf_alloc(ledger_t *l, ledger_holder_t *h, uint64_t size, unsigned flags,
                     const char *name, ledger_why_t *why, ledger_buf_info_t *ret) {
  int rc = buf_alloc(l, h, size, flags, name, why, ret);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int buf_lookup(ledger_t *l, ledger_holder_t *h, const char *name, ledger_why_t *why,
                      ledger_buf_info_t *ret) {
  lbuf_t *b;
  if (!name || !name[0]) return fail(why, PP_EINVAL, "lookup needs a name");
  b = buf_by_name(l, name);
  if (!b) return fail(why, PP_ENOENT, "no buffer named '%.*s'", (int)LEDGER_NAME_MAX, name);
  if (buffer_limit_reached(l, h))
    return fail(why, PP_ELIMIT, "this session already holds %" PRIu64 " buffers (limit %u)",
                h->buf_refs, l->cfg.max_buffers);
  if (hold_add(l, h, b)) return fail_nomem(why);
  buf_info(b, ret);
  return 0;
}

int ledger_buf_lookup(ledger_t *l, ledger_holder_t *h, const char *name, ledger_why_t *why,
                      ledger_buf_info_t *ret) {
  int rc = buf_lookup(l, h, name, why, ret);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int buf_free(ledger_t *l, ledger_holder_t *h, uint64_t handle, ledger_why_t *why) {
  lbuf_t *b;
  if (!u64map_get(&h->holds, handle, NULL)) {
    if (buf_by_handle(l, handle))
      return fail(why, PP_EPERM, "buffer %" PRIu64 " is not held by this session", handle);
    if (handle > 0 && handle < l->next_handle)
      return fail(why, PP_ENOENT, "buffer %" PRIu64 " was already freed", handle);
    return fail(why, PP_ENOENT, "no buffer with handle %" PRIu64, handle);
  }
  b = buf_by_handle(l, handle);
  PP_ASSERT(b != NULL);
  buf_unhold(l, h, b, 1);
  return 0;
}

int ledger_buf_free(ledger_t *l, ledger_holder_t *h, uint64_t handle, ledger_why_t *why) {
  int rc = buf_free(l, h, handle, why);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

/* ---- caches and objects ------------------------------------------------------------- */

static int cache_open(ledger_t *l, const char *name, uint32_t object_size, uint32_t align,
                      ledger_why_t *why, ledger_cache_info_t *ret) {
  slab_cache_t *sc;
  lcache_t *c;
  slab_info_t info;
  int rc;

  if (!name || !name[0] || strlen(name) > LEDGER_CACHE_NAME_MAX)
    return fail(why, PP_EINVAL, "a cache name has 1 to %u bytes", LEDGER_CACHE_NAME_MAX);
  if (utf8_prefix(name, LEDGER_CACHE_NAME_MAX) != strlen(name))
    return fail(why, PP_EINVAL, "cache name is not valid UTF-8");
  if (align & (align - 1)) return fail(why, PP_EINVAL, "align %u is not a power of two", align);
  rc = slab_cache_create(l->slab, name, object_size, align, &sc);
  if (rc == PP_EGEOMETRY)
    return fail(why, rc, "cache '%s' exists with another object size or alignment", name);
  if (rc == PP_ERANGE) return fail(why, rc, "object size %u out of range", object_size);
  if (rc) return fail(why, rc, "cache '%s': %s", name, pp_strerror(rc));
  slab_cache_info(sc, &info);
  c = cache_by_id(l, info.id);
  if (!c && cache_create(l, sc, &c)) return fail_nomem(why);
  ret->id = c->id;
  ret->object_size = c->object_size;
  ret->align = c->align;
  ret->objs_per_slab = c->objs_per_slab;
  ret->slab_bytes = c->slab_bytes;
  ret->name = c->name;
  return 0;
}

int ledger_cache_open(ledger_t *l, const char *name, uint32_t object_size, uint32_t align,
                      ledger_why_t *why, ledger_cache_info_t *ret) {
  int rc = cache_open(l, name, object_size, align, why, ret);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int cache_alloc(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, uint32_t count,
                       uint64_t *offs, ledger_why_t *why) {
  lcache_t *c = cache_by_id(l, cache_id);
  uid_t uid = h->ident.uid;
  uint64_t bytes;
  unsigned got = 0, taken = 0;

  if (!c) return fail(why, PP_ENOENT, "no cache with id %u", cache_id);
  if (count == 0 || count > LEDGER_OBJECTS_MAX)
    return fail(why, PP_ERANGE, "count %u outside 1..%u", count, LEDGER_OBJECTS_MAX);
  bytes = (uint64_t)count * c->object_size;
  if (!quota_allows(l, uid, bytes))
    return fail(why, PP_EQUOTA,
                "uid %u has %" PRIu64 " bytes pinned; %" PRIu64 " more exceeds quota %" PRIu64,
                (unsigned)uid, uid_charged(l, uid), bytes, l->cfg.quota);
  if (!offs) return fail_nomem(why);

  for (; got < count; got++)
    if (mag_alloc(c->mag, &offs[got])) {
      for (unsigned i = 0; i < got; i++)
        mag_free(c->mag, offs[i]);
      return fail(why, PP_ENOMEM, "cache '%s': no memory for %u objects", c->name, count);
    }
  for (; taken < count; taken++)
    if (obj_take(l, h, c, offs[taken])) goto undo;
  if (charge(l, uid, bytes)) goto undo;
  return 0;

undo:
  for (unsigned i = 0; i < taken; i++)
    obj_give(l, h, c, offs[i]);
  for (unsigned i = 0; i < got; i++)
    mag_free(c->mag, offs[i]);
  return fail_nomem(why);
}

int ledger_cache_alloc(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, uint32_t count,
                       uint64_t *offs, ledger_why_t *why) {
  int rc = cache_alloc(l, h, cache_id, count, offs, why);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int cache_free(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, const uint64_t *offs,
                      size_t n, ledger_why_t *why) {
  lcache_t *c = cache_by_id(l, cache_id);
  u64map_t seen;
  int rc = 0;

  if (!c) return fail(why, PP_ENOENT, "no cache with id %u", cache_id);
  u64map_init(&seen);
  /* Validate everything first: all or nothing. */
  for (size_t i = 0; i < n && !rc; i++) {
    uint64_t off = offs[i], cid;
    if (!u64map_get(&h->objs, off, &cid)) {
      if (u64map_get(&l->obj_owner, off, NULL))
        rc = fail(why, PP_EPERM, "offset %" PRIu64 " (index %zu) is held by another session",
                  off, i);
      else
        rc = fail(why, PP_ENOENT,
                  "offset %" PRIu64 " (index %zu) is not an object held in cache '%s'", off, i,
                  c->name);
    } else if (cid != c->id) {
      rc = fail(why, PP_EINVAL,
                "offset %" PRIu64 " (index %zu) belongs to cache %" PRIu64 ", not %u", off, i,
                cid, c->id);
    } else if (n > 1) {
      if (u64map_get(&seen, off, NULL))
        rc = fail(why, PP_EDOUBLEFREE, "offset %" PRIu64 " (index %zu) appears twice", off, i);
      else if (u64map_put(&seen, off, 1))
        rc = fail_nomem(why);
    }
  }
  u64map_fini(&seen);
  if (rc) return rc;

  for (size_t i = 0; i < n; i++) {
    obj_give(l, h, c, offs[i]);
    zero_if_asked(l, offs[i], c->object_size);
    mag_free(c->mag, offs[i]);
  }
  if (n) uncharge(l, h->ident.uid, (uint64_t)n * c->object_size);
  return 0;
}

int ledger_cache_free(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, const uint64_t *offs,
                      size_t n, ledger_why_t *why) {
  int rc = cache_free(l, h, cache_id, offs, n, why);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static uint64_t slab_count(ledger_t *l) {
  uint64_t n = 0;
  for (size_t i = 0; i < l->ncaches; i++) {
    slab_info_t info;
    slab_cache_info(l->cache_list[i]->cache, &info);
    n += info.num_slabs;
  }
  return n;
}

void ledger_shrink(ledger_t *l, ledger_shrink_result_t *ret) {
  uint64_t before = ledger_free_bytes(l), drained = 0, slabs;

  /* Count slabs before and after: the drain itself releases slabs that become empty
   * beyond the slab layer's keep limit, which slab_shrink()'s count does not see. */
  slabs = slab_count(l);
  for (size_t i = 0; i < l->ncaches; i++) {
    int n = mag_drain(l->cache_list[i]->depot, l->cache_list[i]->mag);
    if (n > 0) drained += (uint64_t)n;
  }
  (void)slab_shrink(l->slab);
  ret->objects_drained = drained;
  ret->slabs_released = slabs - slab_count(l);
  ret->bytes_released = ledger_free_bytes(l) - before;
  PP_VALIDATE(ledger_check, l);
}

/* ---- read-only views ---------------------------------------------------------------- */

void ledger_get_totals(const ledger_t *l, ledger_totals_t *ret) {
  ret->buf_bytes = l->buf_bytes;
  ret->nbufs = l->nbufs;
  ret->obj_bytes = l->obj_bytes;
  ret->nholders = l->nholders;
}

void ledger_buddy_stats(ledger_t *l, buddy_stats_t *ret) {
  buddy_get_stats(l->buddy, ret);
}

uint64_t ledger_largest_free_contig(ledger_t *l) {
  return buddy_largest_free_contig(l->buddy);
}

size_t ledger_ncaches(const ledger_t *l) {
  return l->ncaches;
}

void ledger_cache_stats(ledger_t *l, size_t i, ledger_cache_stats_t *ret) {
  lcache_t *c = l->cache_list[i];
  ret->name = c->name;
  slab_cache_info(c->cache, &ret->slab);
  mag_get_stats(c->depot, &ret->mag);
}

bool ledger_buf_next(const ledger_t *l, size_t *iter, ledger_buf_info_t *ret) {
  uint64_t k, v;
  if (!u64map_next(&l->by_handle, iter, &k, &v)) return false;
  buf_info((const lbuf_t *)(uintptr_t)v, ret);
  return true;
}

const ledger_ident_t *ledger_buf_holder(const ledger_buf_t *b, uint32_t i) {
  PP_ASSERT(i < b->nholders);
  return &b->holders[i]->ident;
}

uint64_t ledger_mutations(const ledger_t *l, ledger_op_t op) {
  return op < LEDGER_OP__COUNT ? l->mutations[op] : 0;
}

/* The map.  The magazine layer does not say which objects it holds, so a slab's
 * in_magazines is derived: objects the slab has allocated minus objects holders hold in it
 * (every object allocated from a slab is either held or parked in a daemon magazine).
 * Slabs are buddy blocks, naturally aligned, so an object's slab is its offset rounded
 * down to the slab size. */

typedef struct slabrec {
  uint64_t offset, bytes;
  uint32_t inuse, capacity, held;
} slabrec_t;

typedef struct slab_collect {
  slabrec_t *v;
  size_t n, cap;
  bool failed;
} slab_collect_t;

typedef struct walk_ctx {
  const ledger_t *l;
  const u64map_t *slab_index; /* slab offset -> index into slabs */
  const slabrec_t *slabs;
  ledger_block_fn fn;
  void *ctx;
  int rc;
} walk_ctx_t;

static void collect_slab(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse,
                         uint32_t capacity) {
  slab_collect_t *c = ctx;
  if (c->failed) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    slabrec_t *v = realloc(c->v, cap * sizeof *v);
    if (!v) {
      c->failed = true;
      return;
    }
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n++] = (slabrec_t){offset, bytes, inuse, capacity, 0};
}

static void walk_block(void *ctx, uint64_t offset, unsigned order, bool is_free) {
  walk_ctx_t *w = ctx;
  ledger_block_t b = {.offset = offset, .size = buddy_order_size(order)};
  uint64_t v;

  if (w->rc) return;
  if (is_free) {
    b.kind = LEDGER_BLOCK_FREE;
  } else if (u64map_get(&w->l->by_offset, offset, NULL)) {
    b.kind = LEDGER_BLOCK_BUFFER;
  } else if (u64map_get(w->slab_index, offset, &v)) {
    const slabrec_t *r = &w->slabs[v];
    b.kind = LEDGER_BLOCK_SLAB;
    b.inuse = r->inuse;
    b.capacity = r->capacity;
    b.in_magazines = r->inuse >= r->held ? r->inuse - r->held : 0;
  } else {
    b.kind = LEDGER_BLOCK_OTHER;
  }
  w->rc = w->fn(w->ctx, &b);
}

int ledger_walk_blocks(ledger_t *l, ledger_block_fn fn, void *ctx) {
  slab_collect_t sc = {0};
  u64map_t index;
  walk_ctx_t w = {.l = l, .slab_index = &index, .fn = fn, .ctx = ctx};
  uint64_t k, v, cid;
  size_t it;
  int rc = PP_ENOPRIVMEM;

  u64map_init(&index);
  for (size_t i = 0; i < l->ncaches; i++)
    slab_cache_walk(l->cache_list[i]->cache, collect_slab, &sc);
  if (sc.failed) goto out;
  for (size_t i = 0; i < sc.n; i++)
    if (u64map_put(&index, sc.v[i].offset, i)) goto out;
  /* Objects held, counted into their slabs. */
  for (ledger_holder_t *h = l->holders; h; h = h->next) {
    it = 0;
    while (u64map_next(&h->objs, &it, &k, &cid)) {
      lcache_t *c = cache_by_id(l, (uint32_t)cid);
      if (c && u64map_get(&index, k & ~(c->slab_bytes - 1), &v)) sc.v[v].held++;
    }
  }
  w.slabs = sc.v;
  buddy_walk(l->buddy, walk_block, &w);
  rc = w.rc;
out:
  free(sc.v);
  u64map_fini(&index);
  return rc;
}

/* ---- validator ---------------------------------------------------------------------- */

static int check_holder(ledger_t *l, const ledger_holder_t *h, uint64_t *nobjs, char *why,
                        size_t why_len) {
  uint64_t k, v, refs = 0, bytes = 0, obytes = 0;
  uint64_t sid = h->ident.session_id;
  size_t it = 0;

  while (u64map_next(&h->holds, &it, &k, &v)) {
    lbuf_t *b = buf_by_handle(l, k);
    bool listed = false;
    if (!b)
      return pp_corrupt(why, why_len, "session %" PRIu64 " holds dead handle %" PRIu64, sid, k);
    if (v == 0)
      return pp_corrupt(why, why_len, "session %" PRIu64 " holds handle %" PRIu64 " zero times",
                        sid, k);
    for (uint32_t i = 0; i < b->nholders; i++)
      listed |= b->holders[i] == h;
    if (!listed)
      return pp_corrupt(why, why_len,
                        "buffer %" PRIu64 " does not list holder session %" PRIu64, k, sid);
    refs += v;
    bytes += b->size;
  }
  if (refs != h->buf_refs)
    return pp_corrupt(why, why_len,
                      "session %" PRIu64 ": %" PRIu64 " refs counted, %" PRIu64 " recorded",
                      sid, refs, h->buf_refs);
  if (bytes != h->buf_bytes)
    return pp_corrupt(why, why_len, "session %" PRIu64 ": buffer bytes disagree", sid);
  it = 0;
  while (u64map_next(&h->objs, &it, &k, &v)) {
    uint64_t owner;
    lcache_t *c = cache_by_id(l, (uint32_t)v);
    if (!c)
      return pp_corrupt(
          why, why_len,
          "session %" PRIu64 " holds object %" PRIu64 " of unknown cache %" PRIu64, sid, k, v);
    if (!u64map_get(&l->obj_owner, k, &owner) || owner != sid)
      return pp_corrupt(why, why_len,
                        "object %" PRIu64 " of session %" PRIu64 " not owned in obj_owner", k,
                        sid);
    if (!slab_cache_owns(c->cache, k))
      return pp_corrupt(why, why_len, "object %" PRIu64 " not allocated in cache %u", k, c->id);
    obytes += c->object_size;
    (*nobjs)++;
  }
  if (obytes != h->obj_bytes)
    return pp_corrupt(why, why_len, "session %" PRIu64 ": object bytes disagree", sid);
  return 0;
}

int ledger_check(ledger_t *l, char *why, size_t why_len) {
  uint64_t k, v, nobjs = 0, charged = 0, bufbytes = 0, named = 0;
  const uint64_t *mu = l->mutations;
  uint32_t nholders = 0;
  size_t it;
  int rc;

  for (ledger_holder_t *h = l->holders; h; h = h->next) {
    if ((rc = check_holder(l, h, &nobjs, why, why_len))) return rc;
    nholders++;
  }
  if (nholders != l->nholders)
    return pp_corrupt(why, why_len, "%u holders listed, %u recorded", nholders, l->nholders);
  if (nobjs != u64map_len(&l->obj_owner))
    return pp_corrupt(why, why_len, "obj_owner has %zu objects, holders %" PRIu64,
                      u64map_len(&l->obj_owner), nobjs);

  it = 0;
  while (u64map_next(&l->by_handle, &it, &k, &v)) {
    lbuf_t *b = (lbuf_t *)(uintptr_t)v;
    uint64_t o;
    unsigned order;
    if (b->nholders == 0)
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " has no holders", k);
    for (uint32_t i = 0; i < b->nholders; i++)
      if (!u64map_get(&b->holders[i]->holds, k, NULL))
        return pp_corrupt(why, why_len, "holder of buffer %" PRIu64 " does not hold it", k);
    if (!u64map_get(&l->by_offset, b->offset, &o) || o != v)
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " not indexed by offset", k);
    if (buddy_block_order(l->buddy, b->offset, &order) != 0 || order != b->order)
      return pp_corrupt(why, why_len,
                        "buffer %" PRIu64 " is not an allocated block of order %u", k,
                        b->order);
    if (b->name && buf_by_name(l, b->name) != b)
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " not found by its name", k);
    if (k >= l->next_handle)
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " at or past the next handle", k);
    named += b->name != NULL;
    bufbytes += b->size;
  }
  if (u64map_len(&l->by_offset) != u64map_len(&l->by_handle))
    return pp_corrupt(why, why_len, "offset and handle indexes differ");
  if (bufbytes != l->buf_bytes || u64map_len(&l->by_handle) != l->nbufs)
    return pp_corrupt(why, why_len, "buffer bytes %" PRIu64 " != recorded %" PRIu64, bufbytes,
                      l->buf_bytes);
  if (named != l->nnamed)
    return pp_corrupt(why, why_len, "%" PRIu64 " named buffers, %" PRIu64 " recorded", named,
                      l->nnamed);

  it = 0;
  while (u64map_next(&l->uid_bytes, &it, &k, &v))
    charged += v;
  if (charged != l->buf_bytes + l->obj_bytes)
    return pp_corrupt(why, why_len, "quota charges %" PRIu64 " != pinned %" PRIu64, charged,
                      l->buf_bytes + l->obj_bytes);

  /* The primitive counts (the journal's records) account for the live state. */
  if (mu[LEDGER_OP_BUF_CREATE] - mu[LEDGER_OP_BUF_DESTROY] != l->nbufs)
    return pp_corrupt(why, why_len,
                      "%" PRIu64 " creates - %" PRIu64 " destroys != %" PRIu64 " buffers",
                      mu[LEDGER_OP_BUF_CREATE], mu[LEDGER_OP_BUF_DESTROY], l->nbufs);
  if (mu[LEDGER_OP_PUBLISH] - mu[LEDGER_OP_UNPUBLISH] != named)
    return pp_corrupt(why, why_len, "publishes - unpublishes != %" PRIu64 " names", named);
  if (mu[LEDGER_OP_OBJ_TAKE] - mu[LEDGER_OP_OBJ_GIVE] != nobjs)
    return pp_corrupt(why, why_len, "takes - gives != %" PRIu64 " objects", nobjs);
  if (mu[LEDGER_OP_CACHE_CREATE] != l->ncaches)
    return pp_corrupt(why, why_len, "%" PRIu64 " cache creates, %zu caches",
                      mu[LEDGER_OP_CACHE_CREATE], l->ncaches);

  for (size_t i = 0; i < l->ncaches; i++) {
    lcache_t *c = l->cache_list[i];
    uint64_t held = 0;
    it = 0;
    while (u64map_next(&l->obj_owner, &it, &k, NULL))
      if (slab_cache_owns(c->cache, k)) held++;
    if (held != c->held)
      return pp_corrupt(why, why_len,
                        "cache %u: %" PRIu64 " objects held, %" PRIu64 " recorded", c->id, held,
                        c->held);
    if ((rc = mag_check(c->depot, c->held, why, why_len))) return rc;
  }
  if ((rc = slab_check(l->slab, why, why_len))) return rc;
  return buddy_check(l->buddy, why, why_len);
}
