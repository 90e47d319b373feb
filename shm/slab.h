/*
 * slab.h — slab caches over the buddy allocator (Bonwick 1994).  One cache per object
 * type; slabs are buddy blocks; free-object tracking is off-slab in private memory.
 * See slab.c for the essay, the lock order (cache lock, then the buddy lock) and the
 * invariants.
 */
#ifndef PP_SLAB_H
#define PP_SLAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buddy.h"
#include "pinpool_err.h"

#define SLAB_NAME_MAX 80u /* including the NUL */
#define SLAB_MIN_OBJECT 8u
#define SLAB_MAX_ORDER 5u /* largest slab: a buddy block of 2^5 pages = 128 KiB */
#define SLAB_MAX_OBJECT                                                                        \
  16384u /* an eighth of the largest slab; bigger belongs to the buddy                         \
          */

typedef struct slab_info { /* one /proc/slabinfo row, plus pinpool's extras */
  char name[SLAB_NAME_MAX];
  uint32_t id; /* stable small integer, unique within the allocator */
  uint32_t object_size;
  uint32_t align;
  uint32_t stride; /* object_size rounded up to align */
  uint32_t objs_per_slab;
  uint32_t pages_per_slab; /* 4 KiB pages */
  uint64_t active_objs;    /* allocated from slabs (includes objects parked in magazines) */
  uint64_t num_objs;       /* capacity of all slabs */
  uint64_t active_slabs;   /* slabs with inuse > 0 */
  uint64_t num_slabs;
  uint64_t full_slabs, partial_slabs, empty_slabs;
  uint64_t waste_bytes_per_slab;        /* unused tail of one slab */
  uint32_t waste_permille;              /* waste_bytes_per_slab * 1000 / slab bytes */
  uint64_t allocs, frees, grows, reaps; /* cumulative */
} slab_info_t;

/* A cache's layout, a pure function of (object_size, align): a cache created again with
 * the same pair after a restart lays its slabs out exactly as the one before did. */
typedef struct slab_geometry {
  uint32_t object_size;
  uint32_t align;  /* 0 given is 8 here */
  uint32_t stride; /* object_size rounded up to align */
  uint32_t order;  /* buddy order of every slab */
  uint32_t objs_per_slab;
  uint32_t color_unit; /* a slab's color (bytes before object 0) is a multiple of this */
  uint32_t ncolors;    /* colors 0, unit, ..., (ncolors - 1) * unit: all fit in the tail */
  uint64_t slab_bytes;
  uint64_t waste; /* unused tail of one slab: slab_bytes - objs_per_slab * stride */
} slab_geometry_t;

/* The geometry slab_cache_create would give (object_size, align): PP_EINVAL (align not a
 * power of two), PP_ERANGE (object_size or align out of range). */
int slab_geometry(uint32_t object_size, uint32_t align, slab_geometry_t *ret);

typedef struct slab_cache slab_cache_t;
typedef struct slab slab_t; /* the set of caches over one buddy allocator */

int slab_create(buddy_t *buddy, slab_t **ret);
/* Destroys every cache and returns all their slabs to the buddy. */
void slab_destroy(slab_t *s);

/* Create or find a cache.  align: a power of two, 0 means 8.  object_size: 8 bytes up to
 * an eighth of the largest slab (PP_ERANGE beyond).  The same name with the same geometry
 * returns the existing cache; with another geometry PP_EGEOMETRY.  PP_ENOPRIVMEM when the
 * cache's private metadata cannot be allocated. */
int slab_cache_create(slab_t *s, const char *name, uint32_t object_size, uint32_t align,
                      slab_cache_t **ret);
/* Create a cache under a given id: the restart path, which re-creates every cache of the
 * daemon that crashed with the id, name and geometry it had.  The id counter moves past
 * id, so ids slab_cache_create gives out later never collide; the registry stays in id
 * order, whatever order the ids come in.  The registry cannot tell a destroyed cache's id
 * from one never given out: the caller vouches that id names this cache.  Errors:
 * PP_EEXIST (the id or the name is taken, whatever its geometry), PP_ERANGE (id
 * UINT32_MAX, or object_size/align out of range), PP_EINVAL (bad name or align),
 * PP_ENOPRIVMEM.  *ret untouched on failure. */
int slab_cache_create_with_id(slab_t *s, const char *name, uint32_t object_size, uint32_t align,
                              uint32_t id, slab_cache_t **ret);
/* Moves the id counter to at least next (it never moves back): slab_cache_create gives out
 * no id below it from now on.  The restart path, for the ids of caches destroyed before
 * the crash, which no live cache re-created with slab_cache_create_with_id carries past.
 * PP_EINVAL for a NULL s. */
int slab_skip_ids(slab_t *s, uint32_t next);
slab_cache_t *slab_cache_find(slab_t *s, const char *name);
/* NULL for an id not in use.  slab_cache_create never gives out an id twice (a stale id of
 * a destroyed cache only misses); slab_cache_create_with_id takes the id it is told. */
slab_cache_t *slab_cache_by_id(slab_t *s, uint32_t id);
/* Take c out of the registry and return its slabs to the buddy; c is freed.  PP_EBUSY
 * (nothing changes) while any object is allocated from it — objects parked in magazines
 * count, so destroy the cache's depot first.  No other thread may use c, nor walk the
 * registry (slab_foreach_cache, slab_shrink, slab_check), during the call. */
int slab_cache_destroy(slab_cache_t *c);

/* One object: from a partial slab, else an empty one, else a new slab from the buddy.
 * Errors: PP_ENOMEM (the buddy has no block for a new slab: the region is full),
 * PP_ENOPRIVMEM (no private memory for the new slab's descriptor). */
int slab_cache_alloc(slab_cache_t *c, uint64_t *ret_offset);
/* Up to n objects under one lock acquisition; returns how many (>0), or an error of
 * slab_cache_alloc when not even one could be had. */
int slab_cache_alloc_bulk(slab_cache_t *c, uint64_t *offsets, unsigned n);
/* Errors: PP_ENOTALLOC (in no slab of this cache: another cache's object, or nobody's),
 * PP_ENOTBLOCK (inside one of this cache's slabs but not an object start), PP_EDOUBLEFREE
 * (an object start that is not allocated), each leaving the state unchanged. */
int slab_cache_free(slab_cache_t *c, uint64_t offset);
/* All or nothing: validates every offset first (and duplicates within the batch); on error
 * *ret_bad_index names the first bad one and nothing is freed. */
int slab_cache_free_bulk(slab_cache_t *c, const uint64_t *offsets, unsigned n,
                         unsigned *ret_bad_index);
/* Re-take exactly the object at offset (restart replay).  Its slab is the naturally
 * aligned block of the cache's slab size holding offset.  If c has that slab, the object
 * must be one of its object starts (else PP_ENOTBLOCK) and free (else PP_EBUSY).  If not,
 * the slab is created there with buddy_reserve and with the one color that puts an object
 * start at offset, (offset - base) % stride, which must be a legal color of this geometry —
 * a multiple of the color unit within the tail, the only colors a cache ever gives a slab —
 * and offset must not lie in the tail (else PP_ENOTBLOCK: no slab of this cache can have
 * an object there).  Then PP_EBUSY when any of the block is taken (a buffer, another
 * cache's slab), PP_ERANGE when it reaches past the region, PP_ENOPRIVMEM for the
 * descriptor.  The object counts as allocated (active, allocs); a slab created here counts
 * as a grow.  Every error leaves the allocation state unchanged. */
int slab_cache_reserve(slab_cache_t *c, uint64_t offset);
/* All or nothing, under one lock acquisition: the errors of slab_cache_reserve (a
 * duplicate within the batch is PP_EBUSY); on error *ret_bad_index (when non-NULL) names
 * the first bad offset, nothing is reserved and every slab the batch created is back in
 * the buddy.  Cost: O(n * objs_per_slab) at worst. */
int slab_cache_reserve_bulk(slab_cache_t *c, const uint64_t *offsets, unsigned n,
                            unsigned *ret_bad_index);
/* Does offset name an allocated object of c? */
bool slab_cache_owns(slab_cache_t *c, uint64_t offset);

/* Return every empty slab to the buddy; returns the number of slabs released. */
int slab_cache_shrink(slab_cache_t *c);
int slab_shrink(slab_t *s);

void slab_cache_info(slab_cache_t *c, slab_info_t *ret);
/* Visit every cache in id order (creation order, for ids from slab_cache_create). */
typedef void (*slab_cache_fn)(void *ctx, slab_cache_t *c);
void slab_foreach_cache(slab_t *s, slab_cache_fn fn, void *ctx);
/* Visit every slab of c: its buddy offset, bytes, and objects in use.  fn runs under c's
 * lock: it must not call back into c. */
typedef void (*slab_walk_fn)(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse,
                             uint32_t capacity);
void slab_cache_walk(slab_cache_t *c, slab_walk_fn fn, void *ctx);

/* Validators: 0, or PP_ECORRUPT with the first violation in why. */
int slab_cache_check(slab_cache_t *c, char *why, size_t why_len);
int slab_check(slab_t *s, char *why, size_t why_len);
/* /proc/slabinfo-shaped dump. */
void slab_dump(slab_t *s, FILE *out);

#endif /* PP_SLAB_H */
