/*
 * client.h — libpinpool internals shared by pinpool.c (connection, requests, buffers,
 * caches) and cmag.c (per-thread magazines).  Not installed.
 *
 * Locks, in the order they may be taken:
 *   1. cmag_lock (cmag.c, one per process): links between threads' magazines and
 *      caches, and the "orphaned" mark pp_disconnect() leaves on them;
 *   2. pp_client.lock: one request/response exchange at a time on the connection, and
 *      the fields marked (lock) below.
 * Nothing takes cmag_lock while holding a client lock.
 */
#ifndef PP_CLIENT_INTERNAL_H
#define PP_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "frame.h"
#include "pinpool.h"
#include "rpc.h"

struct cmag_thread_cache;

/* Welcome.min_block of a daemon that predates the field: the buddy's unit was 4 KiB. */
#define CLIENT_MIN_BLOCK_DEFAULT 4096u
/* The largest slab client_obj_valid handles (its offsets within a slab are 32-bit). */
#define CLIENT_SLAB_MAX (1ull << 31)

struct pp_client {
  pthread_mutex_t lock; /* see above */
  rpc_t rpc;            /* (lock) the connection: socket, request ids, receive buffer;
                           rpc.fd stays valid until pp_disconnect */
  uint8_t *base;        /* the whole region, mapped MAP_SHARED once */
  uint64_t region_size;
  uint64_t page_size; /* bytes per page of the region's memory (Welcome.page_size) */
  uint64_t min_block; /* the allocation unit, order 0 of the buddy (Welcome.min_block) */
  uint64_t session_id;
  bool hugepages;
  bool phys_known;
  struct pp_cache *caches; /* (lock) every cache opened, freed by pp_disconnect */
};

struct pp_cache {
  pp_client *c;
  struct pp_cache *next; /* (c->lock) in c->caches */
  uint64_t serial;       /* process-unique, never reused: threads find their
                            magazines by it, so a recycled address cannot alias */
  uint8_t *base;         /* copies of c->base / c->region_size: one pointer */
  uint64_t region_size;  /*   chase fewer on the fast path */
  uint32_t id;           /* the daemon's cache_id */
  uint32_t object_size;
  uint32_t align;  /* power of two */
  uint32_t stride; /* object_size rounded up to align */
  uint32_t objs_per_slab;
  uint32_t slab_tail;                /* slab_bytes - objs_per_slab * stride: room for color */
  int stride_shift;                  /* log2(stride) when a power of two, else -1 */
  uint32_t cmag_rounds;              /* objects per magazine = cache_alloc batch size */
  _Atomic uint64_t slab_bytes;       /* bytes per slab (CacheInfo.slab_bytes, or inferred
                                        from an older daemon's geometry) for the
                                        object-boundary check; 0 = layout unknown, check
                                        alignment only */
  struct cmag_thread_cache *threads; /* (cmag_lock) every thread's magazines for it */
};

/* rpc_call (proto/rpc.h) under c->lock: send body as the request body_case, receive the
 * response.  On success (status OK and body `want`) *ret_resp is the response (free it
 * with frame_free_response).  A non-OK status returns its PP_E* code; a transport failure
 * breaks the connection for good (every later call returns the same code). */
int client_rpc(pp_client *c, Pinpool__V1__Request__BodyCase body_case, ProtobufCMessage *body,
               Pinpool__V1__Response__BodyCase want, Pinpool__V1__Response **ret_resp);

/* cache_alloc of up to n (1..1024) objects: their pointers into ptrs; returns how many
 * the daemon gave (> 0) or a negative code. */
int client_cache_fetch(pp_cache *k, void **ptrs, unsigned n);
/* cache_free of n objects in one request (all or nothing at the daemon).  When the
 * daemon rejects the batch, each object is retried alone so that the good ones are not
 * stranded; returns 0 or the first error. */
int client_cache_return(pp_cache *k, void *const *ptrs, unsigned n);

/* Does obj lie inside the region at an object boundary of k?  A slab is a naturally
 * aligned buddy block of slab_bytes; its objects lie at color + i * stride from its
 * first byte, i < objs_per_slab, where the color (pinpool's slab coloring, Bonwick 1994)
 * varies by slab but never exceeds the unused tail.  So a valid object's position in its
 * slab splits into i = rel / stride and color = rel % stride with color <= tail: an
 * exact test for power-of-two strides (no tail, no color), and for other strides one
 * that still refuses every pointer farther than the tail into an object.  See
 * client_cache_fetch for how the slab size is kept honest. */
static inline bool client_obj_valid(const pp_cache *k, const void *obj) {
  uint64_t off = (uint64_t)((uintptr_t)obj - (uintptr_t)k->base);
  if (off >= k->region_size || (off & (k->align - 1)) != 0) return false;
  uint64_t slab = atomic_load_explicit(&k->slab_bytes, memory_order_relaxed);
  if (slab == 0) return true;
  uint32_t rel = (uint32_t)(off & (slab - 1)), i, color;
  if (k->stride_shift >= 0) {
    i = rel >> k->stride_shift;
    color = rel & (k->stride - 1);
  } else {
    i = rel / k->stride;
    color = rel - i * k->stride;
  }
  return i < k->objs_per_slab && color <= k->slab_tail;
}

/* cmag.c: pp_disconnect() calls this first, so that no thread touches k again
 * through its magazines (they are orphaned; the daemon reclaims their objects). */
void cmag_orphan_client(pp_client *c);

#endif /* PP_CLIENT_INTERNAL_H */
