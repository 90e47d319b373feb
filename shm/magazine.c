/*
 * magazine.c — per-thread magazines in front of a slab cache (Bonwick & Adams 2001,
 * "Magazines and Vmem").
 *
 * WHAT
 *   One cache lock serializes every CPU that allocates from the cache.  A magazine is an
 *   array of M object offsets; each thread keeps two of them per cache (mag_cpu_t), a
 *   *loaded* and a *previous* one, and allocates and frees against them without any lock.
 *   A depot per cache (mag_depot_t) holds whole magazines, full and empty, under its own
 *   lock; the slab layer is visited only when the depot cannot help.
 *
 * ALGORITHM (the paper's, section 3)
 *   alloc: pop from loaded.  If loaded is empty and previous holds objects, swap them and
 *     pop.  Otherwise, at the depot, exchange an empty magazine for a full one (previous
 *     goes to the empty list, loaded becomes previous, the full one becomes loaded).  Only
 *     when the depot has no full magazine go to the slab layer: fill loaded with up to M
 *     objects in one slab_cache_alloc_bulk (one cache-lock acquisition for M objects).
 *   free: mirrors it.  Push onto loaded; if loaded is full and previous is empty, swap;
 *     otherwise give the full previous to the depot in exchange for an empty magazine, or a
 *     new one (malloc) when the depot has none; only when the depot already holds
 *     MAG_DEPOT_FULL_MAX full magazines (or malloc fails) do the objects of previous go back
 *     to the slabs with one slab_cache_free_bulk.
 *   With the two-magazine scheme a thread alternating alloc and free at a magazine
 *   boundary touches the depot at most once every M operations (the paper's point).
 *
 * MAGAZINE SIZE
 *   Every depot lock acquisition first tries pthread_mutex_trylock; a failure counts as
 *   contention.  Every MAG_RESIZE_WINDOW acquisitions the depot looks at how many were
 *   contended; at 1/MAG_RESIZE_RATIO or more it doubles M, up to MAG_SIZE_MAX (the paper
 *   grows M when contention is high; a larger M means fewer depot visits per object).
 *   Magazines already made keep their size: the depot frees empty magazines of an older
 *   size instead of reusing them, and a thread refilling from the slab layer swaps its
 *   undersized loaded magazine for a new one, so the new size spreads as magazines cycle.
 *
 * LOCKED MODE
 *   No magazines: every operation takes the cache's one lock (slab_cache_alloc/free).  It
 *   exists to measure what magazines buy (pinpool-bench scale).
 *
 * CONSERVATION (mag_check)
 *   objects allocated from the slabs == objects held by callers + objects in depot
 *   magazines + objects in the loaded/previous magazines of live mag_cpu_t.  Exact when no
 *   other thread is operating on the depot.
 *
 * CONCURRENCY
 *   A mag_cpu_t belongs to one thread; its magazines are touched only by that thread.
 *   Other threads read its object count and slab-trip counters (for stats and the
 *   conservation check), so those are C11 atomics written only by the owner with relaxed
 *   stores — plain moves on x86, no read-modify-write on the fast path.
 *
 * LOCKS, in the order they are taken
 *   1. mag_depot_t.lock — the full and empty lists, the list of live mag_cpu_t, the
 *      object count in the depot, the resize window and counters.
 *   2. the slab cache's lock (inside slab_cache_*), taken under 1 only by mag_check (for a
 *      consistent active count); the alloc/free paths drop 1 before visiting the slabs.
 *   3. the buddy's lock, under 2.
 *
 * REFERENCES
 *   Bonwick & Adams, "Magazines and Vmem: Extending the Slab Allocator to Many CPUs and
 *   Arbitrary Resources", USENIX 2001.  DPDK lib/mempool (per-lcore caches) for the peer.
 */
#include "magazine.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"

#define MAG_SIZE_DEFAULT 32u
#define MAG_DEPOT_FULL_MAX 16u  /* full magazines the depot keeps before freeing to slabs */
#define MAG_DEPOT_EMPTY_MAX 16u /* empty magazines it keeps before free() */
#define MAG_RESIZE_WINDOW 64u   /* depot acquisitions per contention sample */
#define MAG_RESIZE_RATIO 8u     /* grow M when >= 1/8 of a window was contended */
#define MAG_CACHE_LINE 64u

typedef struct mag {
  struct mag *next; /* on a depot list */
  uint32_t size;    /* slots */
  uint32_t rounds;  /* objects held: obj[0 .. rounds) */
  uint64_t obj[];
} mag_t;

struct mag_cpu {
  mag_depot_t *d;
  mag_t *loaded, *prev;                     /* NULL in locked mode; owner thread only */
  _Atomic uint64_t held;                    /* loaded->rounds + prev->rounds; owner writes */
  _Atomic uint64_t slab_allocs, slab_frees; /* trips to the slab layer; owner writes */
  struct mag_cpu *next, *prevc;             /* the depot's live list (depot lock) */
};

struct mag_depot {
  pthread_mutex_t lock;
  slab_cache_t *cache;
  bool locked_mode;
  _Atomic uint32_t mag_size; /* M for new magazines; written under the lock */
  mag_t *full, *empty;       /* stacks; full ones hold >= 1 object */
  uint64_t nfull, nempty;
  uint64_t objs_in_depot; /* sum of rounds on the full list */
  mag_cpu_t *cpus;        /* live mag_cpu_t */
  uint64_t ncpus;
  uint64_t acquires;           /* depot lock acquisitions */
  _Atomic uint64_t contended;  /* of which trylock failed; bumped before blocking */
  uint64_t win_acquires;       /* acquisitions in the current resize window */
  uint64_t win_contended_base; /* contended at the window's start */
  uint64_t resizes;
  uint64_t retired_slab_allocs, retired_slab_frees; /* of destroyed cpus, drain, destroy */
};

#define RELAXED memory_order_relaxed

static uint64_t ld(_Atomic uint64_t *a) {
  return atomic_load_explicit(a, RELAXED);
}
/* Only the owner writes these, so load + store is enough (no lock prefix). */
static void owner_add(_Atomic uint64_t *a, uint64_t v) {
  atomic_store_explicit(a, ld(a) + v, RELAXED);
}
static void owner_sub(_Atomic uint64_t *a, uint64_t v) {
  atomic_store_explicit(a, ld(a) - v, RELAXED);
}

/* Cache-line aligned and padded: two threads' magazines (and mag_cpu_t) written on every
 * operation must not share a line, or the fast path scales like a lock. */
static void *line_alloc(size_t bytes) {
  bytes = (bytes + MAG_CACHE_LINE - 1) & ~(size_t)(MAG_CACHE_LINE - 1);
  return aligned_alloc(MAG_CACHE_LINE, bytes);
}

static mag_t *mag_new(uint32_t size) {
  mag_t *g = line_alloc(sizeof *g + size * sizeof g->obj[0]);
  if (!g) return NULL;
  g->next = NULL;
  g->size = size;
  g->rounds = 0;
  return g;
}

/* ---- the depot (lock held unless said otherwise) --------------------------------------- */

static void depot_resize_unsafe(mag_depot_t *d) {
  uint64_t contended = ld(&d->contended);
  uint64_t c = contended - d->win_contended_base;
  d->win_acquires = 0;
  d->win_contended_base = contended;
  uint32_t m = atomic_load_explicit(&d->mag_size, RELAXED);
  if (c * MAG_RESIZE_RATIO < MAG_RESIZE_WINDOW || m >= MAG_SIZE_MAX) return;
  m = m * 2 > MAG_SIZE_MAX ? MAG_SIZE_MAX : m * 2;
  atomic_store_explicit(&d->mag_size, m, RELAXED);
  d->resizes++;
  /* Empty magazines of the old size would only be swapped out again: free them now. */
  while (d->empty) {
    mag_t *g = d->empty;
    d->empty = g->next;
    free(g);
  }
  d->nempty = 0;
}

static void depot_lock(mag_depot_t *d) {
  if (pthread_mutex_trylock(&d->lock) != 0) {
    atomic_fetch_add_explicit(&d->contended, 1, RELAXED);
    pthread_mutex_lock(&d->lock);
  }
  d->acquires++;
  if (++d->win_acquires >= MAG_RESIZE_WINDOW) depot_resize_unsafe(d);
}

static void depot_unlock(mag_depot_t *d) {
  pthread_mutex_unlock(&d->lock);
}

static uint32_t cur_size(mag_depot_t *d) {
  return atomic_load_explicit(&d->mag_size, RELAXED);
}

static void depot_push_full_unsafe(mag_depot_t *d, mag_t *g) {
  PP_IASSERT(g->rounds > 0 && g->rounds <= g->size);
  g->next = d->full;
  d->full = g;
  d->nfull++;
  d->objs_in_depot += g->rounds;
}

/* Keep an empty magazine when it has the current size and there is room; else free it. */
static mag_t *depot_put_empty_unsafe(mag_depot_t *d, mag_t *g) {
  PP_IASSERT(g->rounds == 0);
  if (g->size != cur_size(d) || d->nempty >= MAG_DEPOT_EMPTY_MAX) return g; /* caller frees */
  g->next = d->empty;
  d->empty = g;
  d->nempty++;
  return NULL;
}

static int depot_check_unsafe(mag_depot_t *d, char *why, size_t why_len) {
  uint64_t n = 0, objs = 0;
  for (const mag_t *g = d->full; g; g = g->next) {
    if (++n > d->nfull)
      return pp_corrupt(why, why_len, "depot full list longer than %" PRIu64, d->nfull);
    if (g->rounds == 0 || g->rounds > g->size)
      return pp_corrupt(why, why_len, "depot full magazine with %u of %u rounds", g->rounds,
                        g->size);
    objs += g->rounds;
  }
  if (n != d->nfull)
    return pp_corrupt(why, why_len, "depot full list holds %" PRIu64 ", counted %" PRIu64, n,
                      d->nfull);
  if (objs != d->objs_in_depot)
    return pp_corrupt(why, why_len,
                      "depot full magazines hold %" PRIu64 " objects, counted %" PRIu64, objs,
                      d->objs_in_depot);
  n = 0;
  for (const mag_t *g = d->empty; g; g = g->next) {
    if (++n > d->nempty)
      return pp_corrupt(why, why_len, "depot empty list longer than %" PRIu64, d->nempty);
    if (g->rounds != 0)
      return pp_corrupt(why, why_len, "depot empty magazine with %u rounds", g->rounds);
  }
  if (n != d->nempty)
    return pp_corrupt(why, why_len, "depot empty list holds %" PRIu64 ", counted %" PRIu64, n,
                      d->nempty);
  uint32_t m = cur_size(d);
  if (m < MAG_SIZE_MIN || m > MAG_SIZE_MAX)
    return pp_corrupt(why, why_len, "magazine size %u out of bounds", m);
  n = 0;
  for (const mag_cpu_t *c = d->cpus; c; c = c->next) {
    if (++n > d->ncpus)
      return pp_corrupt(why, why_len, "cpu list longer than %" PRIu64, d->ncpus);
    if (c->d != d) return pp_corrupt(why, why_len, "cpu of another depot on the list");
  }
  if (n != d->ncpus)
    return pp_corrupt(why, why_len, "cpu list holds %" PRIu64 ", counted %" PRIu64, n,
                      d->ncpus);
  return 0;
}

/* ---- depot lifecycle ------------------------------------------------------------------ */

int mag_depot_create(slab_cache_t *cache, unsigned mag_size, bool locked_mode,
                     mag_depot_t **ret) {
  if (!cache || !ret) return PP_EINVAL;
  if (mag_size == 0) mag_size = MAG_SIZE_DEFAULT;
  if (mag_size < MAG_SIZE_MIN || mag_size > MAG_SIZE_MAX) return PP_ERANGE;
  mag_depot_t *d = calloc(1, sizeof *d);
  if (!d) return PP_ENOPRIVMEM;
  if (pthread_mutex_init(&d->lock, NULL) != 0) {
    free(d);
    return PP_EOS;
  }
  d->cache = cache;
  d->locked_mode = locked_mode;
  atomic_init(&d->mag_size, mag_size);
  atomic_init(&d->contended, 0);
  *ret = d;
  return 0;
}

void mag_depot_destroy(mag_depot_t *d) {
  if (!d) return;
  PP_ASSERT(d->ncpus == 0);
  mag_drain(d, NULL);
  pthread_mutex_destroy(&d->lock);
  free(d);
}

slab_cache_t *mag_depot_cache(mag_depot_t *d) {
  return d ? d->cache : NULL;
}

int mag_cpu_create(mag_depot_t *d, mag_cpu_t **ret) {
  if (!d || !ret) return PP_EINVAL;
  mag_cpu_t *m = line_alloc(sizeof *m);
  if (!m) return PP_ENOPRIVMEM;
  memset(m, 0, sizeof *m);
  m->d = d;
  atomic_init(&m->held, 0);
  atomic_init(&m->slab_allocs, 0);
  atomic_init(&m->slab_frees, 0);
  if (!d->locked_mode) {
    uint32_t size = cur_size(d);
    m->loaded = mag_new(size);
    m->prev = mag_new(size);
    if (!m->loaded || !m->prev) {
      free(m->loaded);
      free(m->prev);
      free(m);
      return PP_ENOPRIVMEM;
    }
  }
  depot_lock(d);
  m->prevc = NULL;
  m->next = d->cpus;
  if (d->cpus) d->cpus->prevc = m;
  d->cpus = m;
  d->ncpus++;
  PP_VALIDATE(depot_check_unsafe, d);
  depot_unlock(d);
  *ret = m;
  return 0;
}

void mag_cpu_destroy(mag_cpu_t *m) {
  if (!m) return;
  mag_depot_t *d = m->d;
  mag_t *drop[2] = {NULL, NULL};
  mag_t *mine[2] = {m->loaded, m->prev};
  depot_lock(d);
  for (int i = 0; i < 2; i++) {
    if (!mine[i]) continue;
    /* A partly filled magazine is as good as a full one to the next allocator. */
    if (mine[i]->rounds > 0)
      depot_push_full_unsafe(d, mine[i]);
    else
      drop[i] = depot_put_empty_unsafe(d, mine[i]);
  }
  if (m->prevc)
    m->prevc->next = m->next;
  else
    d->cpus = m->next;
  if (m->next) m->next->prevc = m->prevc;
  d->ncpus--;
  d->retired_slab_allocs += ld(&m->slab_allocs);
  d->retired_slab_frees += ld(&m->slab_frees);
  PP_VALIDATE(depot_check_unsafe, d);
  depot_unlock(d);
  free(drop[0]);
  free(drop[1]);
  free(m);
}

/* ---- alloc / free --------------------------------------------------------------------- */

static void cpu_swap(mag_cpu_t *m) {
  mag_t *t = m->loaded;
  m->loaded = m->prev;
  m->prev = t;
}

static int alloc_slow(mag_cpu_t *m, uint64_t *ret_offset) {
  mag_depot_t *d = m->d;
  if (d->locked_mode) {
    int rc = slab_cache_alloc(d->cache, ret_offset);
    if (rc == 0) owner_add(&m->slab_allocs, 1);
    return rc;
  }
  for (;;) {
    if (m->loaded->rounds > 0) {
      *ret_offset = m->loaded->obj[--m->loaded->rounds];
      owner_sub(&m->held, 1);
      return 0;
    }
    if (m->prev->rounds > 0) {
      cpu_swap(m);
      continue;
    }
    mag_t *drop = NULL;
    depot_lock(d);
    if (d->full) {
      mag_t *f = d->full;
      d->full = f->next;
      d->nfull--;
      d->objs_in_depot -= f->rounds;
      drop = depot_put_empty_unsafe(d, m->prev);
      m->prev = m->loaded;
      m->loaded = f;
      owner_add(&m->held, f->rounds);
      PP_VALIDATE(depot_check_unsafe, d);
      depot_unlock(d);
      free(drop);
      continue;
    }
    uint32_t size = cur_size(d);
    depot_unlock(d);
    /* The slab layer.  A loaded magazine of an older size is replaced by one of the new
     * size here, which is how a larger M reaches threads that never meet an empty depot. */
    if (m->loaded->size != size) {
      mag_t *g = mag_new(size);
      if (g) {
        free(m->loaded);
        m->loaded = g;
      }
    }
    int n = slab_cache_alloc_bulk(d->cache, m->loaded->obj, m->loaded->size);
    if (n < 0) return n;
    m->loaded->rounds = (uint32_t)n;
    owner_add(&m->held, (uint64_t)n);
    owner_add(&m->slab_allocs, 1);
  }
}

int mag_alloc(mag_cpu_t *m, uint64_t *ret_offset) {
  if (!m || !ret_offset) return PP_EINVAL;
  mag_t *l = m->loaded;
  if (__builtin_expect(l != NULL && l->rounds > 0, 1)) {
    *ret_offset = l->obj[--l->rounds];
    owner_sub(&m->held, 1);
    return 0;
  }
  return alloc_slow(m, ret_offset);
}

static int free_slow(mag_cpu_t *m, uint64_t offset) {
  mag_depot_t *d = m->d;
  if (d->locked_mode) {
    int rc = slab_cache_free(d->cache, offset);
    if (rc == 0) owner_add(&m->slab_frees, 1);
    return rc;
  }
  for (;;) {
    if (m->loaded->rounds < m->loaded->size) {
      m->loaded->obj[m->loaded->rounds++] = offset;
      owner_add(&m->held, 1);
      return 0;
    }
    if (m->prev->rounds == 0) {
      cpu_swap(m);
      continue;
    }
    depot_lock(d);
    if (d->empty) {
      mag_t *e = d->empty;
      d->empty = e->next;
      d->nempty--;
      owner_sub(&m->held, m->prev->rounds);
      depot_push_full_unsafe(d, m->prev);
      m->prev = m->loaded;
      m->loaded = e;
      PP_VALIDATE(depot_check_unsafe, d);
      depot_unlock(d);
      continue;
    }
    bool room = d->nfull < MAG_DEPOT_FULL_MAX;
    uint32_t size = cur_size(d);
    depot_unlock(d);
    mag_t *e = room ? mag_new(size) : NULL;
    if (e) {
      depot_lock(d);
      owner_sub(&m->held, m->prev->rounds);
      depot_push_full_unsafe(d, m->prev);
      PP_VALIDATE(depot_check_unsafe, d);
      depot_unlock(d);
      m->prev = m->loaded;
      m->loaded = e;
      continue;
    }
    /* The depot is full (or memory is short): previous goes back to the slabs. */
    unsigned bad = 0;
    int rc = slab_cache_free_bulk(d->cache, m->prev->obj, m->prev->rounds, &bad);
    if (rc < 0) return rc; /* a caller broke the contract earlier; nothing changed */
    owner_sub(&m->held, m->prev->rounds);
    owner_add(&m->slab_frees, 1);
    m->prev->rounds = 0;
  }
}

int mag_free(mag_cpu_t *m, uint64_t offset) {
  if (!m) return PP_EINVAL;
  if (m->d->locked_mode) return free_slow(m, offset); /* the slab layer checks offset */
  /* The caller vouches for offset.  Debug builds check it against the slabs (which take
   * the cache lock: level 2, so TSan builds at level 1 still show the lock-free path)
   * and against the two magazines, where a double free would otherwise hide. */
  PP_IASSERT(slab_cache_owns(m->d->cache, offset));
#if PP_DEBUG >= 2
  for (int i = 0; i < 2; i++) {
    const mag_t *g = i ? m->prev : m->loaded;
    for (uint32_t k = 0; g && k < g->rounds; k++)
      PP_IASSERT(g->obj[k] != offset);
  }
#endif
  mag_t *l = m->loaded;
  if (__builtin_expect(l != NULL && l->rounds < l->size, 1)) {
    l->obj[l->rounds++] = offset;
    owner_add(&m->held, 1);
    return 0;
  }
  return free_slow(m, offset);
}

/* ---- drain, stats, check ---------------------------------------------------------------- */

int mag_drain(mag_depot_t *d, mag_cpu_t *self) {
  if (!d || (self && self->d != d)) return PP_EINVAL;
  uint64_t total = 0, trips = 0;
  int err = 0;
  if (self && !d->locked_mode) {
    mag_t *mine[2] = {self->loaded, self->prev};
    for (int i = 0; i < 2; i++) {
      if (mine[i]->rounds == 0) continue;
      int rc = slab_cache_free_bulk(d->cache, mine[i]->obj, mine[i]->rounds, NULL);
      if (rc < 0) {
        err = rc;
        continue;
      }
      total += mine[i]->rounds;
      owner_sub(&self->held, mine[i]->rounds);
      owner_add(&self->slab_frees, 1);
      mine[i]->rounds = 0;
    }
  }
  /* Detach the lists under the lock, free to the slabs outside it: other threads keep
   * using the depot meanwhile. */
  depot_lock(d);
  mag_t *full = d->full, *empty = d->empty;
  d->full = d->empty = NULL;
  d->nfull = d->nempty = 0;
  d->objs_in_depot = 0;
  depot_unlock(d);
  while (empty) {
    mag_t *g = empty;
    empty = g->next;
    free(g);
  }
  while (full) {
    mag_t *g = full;
    full = g->next;
    int rc = slab_cache_free_bulk(d->cache, g->obj, g->rounds, NULL);
    if (rc < 0)
      err = rc; /* objects the slabs refuse are lost, not double-freed */
    else {
      total += g->rounds;
      trips++;
    }
    free(g);
  }
  depot_lock(d);
  d->retired_slab_frees += trips;
  PP_VALIDATE(depot_check_unsafe, d);
  depot_unlock(d);
  if (err) return err;
  return total > INT32_MAX ? INT32_MAX : (int)total;
}

void mag_get_stats(mag_depot_t *d, mag_stats_t *ret) {
  if (!d || !ret) return;
  mag_stats_t s = {0};
  pthread_mutex_lock(&d->lock); /* not depot_lock: reading stats is not contention */
  s.mag_size = cur_size(d);
  s.depot_full = d->nfull;
  s.depot_empty = d->nempty;
  s.objs_in_depot = d->objs_in_depot;
  s.slab_allocs = d->retired_slab_allocs;
  s.slab_frees = d->retired_slab_frees;
  for (mag_cpu_t *c = d->cpus; c; c = c->next) {
    s.objs_in_cpus += ld(&c->held);
    s.slab_allocs += ld(&c->slab_allocs);
    s.slab_frees += ld(&c->slab_frees);
  }
  s.depot_lock_acquires = d->acquires;
  s.depot_lock_contended = ld(&d->contended);
  s.resizes = d->resizes;
  pthread_mutex_unlock(&d->lock);
  *ret = s;
}

int mag_check(mag_depot_t *d, uint64_t caller_held, char *why, size_t why_len) {
  if (!d) return PP_EINVAL;
  pthread_mutex_lock(&d->lock);
  int rc = depot_check_unsafe(d, why, why_len);
  if (rc == 0) {
    uint64_t in_cpus = 0;
    for (mag_cpu_t *c = d->cpus; c; c = c->next)
      in_cpus += ld(&c->held);
    slab_info_t in;
    slab_cache_info(d->cache, &in); /* depot lock -> cache lock: the documented order */
    if (d->locked_mode && (in_cpus || d->objs_in_depot)) {
      if (why && why_len) snprintf(why, why_len, "locked mode holds objects in magazines");
      rc = PP_ECORRUPT;
    } else if (in.active_objs != caller_held + d->objs_in_depot + in_cpus) {
      if (why && why_len)
        snprintf(why, why_len,
                 "%s: %" PRIu64 " objects out of the slabs != %" PRIu64
                 " held by callers + %" PRIu64 " in the depot + %" PRIu64 " in cpu magazines",
                 in.name, in.active_objs, caller_held, d->objs_in_depot, in_cpus);
      rc = PP_ECORRUPT;
    }
  }
  pthread_mutex_unlock(&d->lock);
  return rc;
}
