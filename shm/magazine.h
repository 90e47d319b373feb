/*
 * magazine.h — per-thread magazines in front of a slab cache's depot (Bonwick & Adams
 * 2001).  See magazine.c for the essay and the lock order (depot lock, then the cache
 * lock, then the buddy lock).
 *
 * Usage: one mag_depot_t per slab cache; each thread that allocates from it owns one
 * mag_cpu_t (created with mag_cpu_create, destroyed — which flushes it to the depot —
 * when the thread is done).  mag_cpu_t is not shared between threads, so its fast
 * path takes no lock.
 */
#ifndef PP_MAGAZINE_H
#define PP_MAGAZINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pinpool_err.h"
#include "slab.h"

#define MAG_SIZE_MIN 8u
#define MAG_SIZE_MAX 256u

typedef struct mag_depot mag_depot_t;
typedef struct mag_cpu mag_cpu_t;

typedef struct mag_stats {
  uint32_t mag_size;                /* current M */
  uint64_t depot_full, depot_empty; /* magazines on the depot lists */
  uint64_t objs_in_depot;           /* objects in full (and partial) depot magazines */
  uint64_t objs_in_cpus;            /* objects in loaded/previous magazines of live mag_cpu_t */
  uint64_t depot_lock_acquires, depot_lock_contended;
  uint64_t resizes;
  uint64_t slab_allocs, slab_frees; /* trips to the slab layer */
} mag_stats_t;

/* locked_mode: no magazines at all; every operation takes the cache's one lock (kept for
 * benchmarks).  mag_size 0 picks the default.  PP_ERANGE for a bad mag_size,
 * PP_ENOPRIVMEM when the depot cannot be allocated. */
int mag_depot_create(slab_cache_t *cache, unsigned mag_size, bool locked_mode,
                     mag_depot_t **ret);
/* Drains everything to the slabs first; every mag_cpu_t must already be destroyed. */
void mag_depot_destroy(mag_depot_t *d);

/* PP_ENOPRIVMEM when the per-thread state or its two magazines cannot be allocated. */
int mag_cpu_create(mag_depot_t *d, mag_cpu_t **ret);
/* Flushes the loaded and previous magazines to the depot, then frees. */
void mag_cpu_destroy(mag_cpu_t *m);

int mag_alloc(mag_cpu_t *m, uint64_t *ret_offset);
/* The caller vouches that offset came from this depot's cache (checked in debug builds). */
int mag_free(mag_cpu_t *m, uint64_t offset);

/* Return every object held in the depot to the slabs (and, with the calling thread's
 * mag_cpu_t when non-NULL, that one's too).  Returns the number of objects returned. */
int mag_drain(mag_depot_t *d, mag_cpu_t *self);

void mag_get_stats(mag_depot_t *d, mag_stats_t *ret);
slab_cache_t *mag_depot_cache(mag_depot_t *d);

/* Conservation check: objects allocated from the cache's slabs must equal
 * caller_held + objects in depot + objects in live cpus.  0 or PP_ECORRUPT with why. */
int mag_check(mag_depot_t *d, uint64_t caller_held, char *why, size_t why_len);

#endif /* PP_MAGAZINE_H */
