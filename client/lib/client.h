/*
 * client.h — libpinpool internals shared by pinpool.c (connection, requests, buffers,
 * caches) and cmag.c (per-thread magazines).  Not installed.
 *
 * Locks, in the order they may be taken:
 *   1. cmag_lock (cmag.c, one per process): links between threads' magazines and
 *      caches, the "orphaned" mark pp_disconnect() leaves on them, and the count of
 *      exiting threads returning objects to a client (marked (cmag_lock) below);
 *   2. pp_client.lock: one request/response exchange at a time on the connection (a
 *      re-claim after a daemon restart included: reclaim.c), and the fields marked
 *      (lock) below.
 * Nothing takes cmag_lock while holding a client lock.  bc_lock (bcache.c, one per
 * process: the links between threads' buffer caches and clients, and the count of exiting
 * threads returning blocks) is taken with no other lock held, and never held across a
 * request: it ranks beside cmag_lock, before a client lock.
 */
#ifndef PP_CLIENT_INTERNAL_H
#define PP_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "frame.h"
#include "pinpool.h"
#include "rpc.h"

struct cmag_thread_cache;
struct bc_thread_cache;
struct pp_pool;

/* Buffer caches (bcache.c): blocks of the small orders — min_block up to BC_MAX_BYTES, and
 * never above the region's page size, so contiguous by construction — held by the session
 * and kept per thread for the program's next pp_alloc. */
#define BC_MAX_BYTES (64u << 10)
#define BC_ORDERS 5u               /* orders 0..4 at most: 4 KiB .. 64 KiB */
#define BC_CHUNK_SHIFT 10u         /* slots per chunk of the slot table: 1024 */
#define BC_HANDLE_TAG (1ull << 63) /* a handle the caches made; the daemon's are below */

/* One per min_block unit of the region that starts a cached block (bcache.c's essay). */
typedef struct bc_slot {
  _Atomic uint64_t st;      /* state, order and generation */
  _Atomic uint64_t dhandle; /* the daemon's handle for the block while the session holds it */
  _Atomic uint64_t phys;    /* its physical address as the daemon described it; 0 unknown */
  _Atomic uint32_t epoch;   /* c->bc_epoch when it was described */
  uint32_t pad;
} bc_slot_t;

/* Welcome.min_block of a daemon that predates the field: the buddy's unit was 4 KiB. */
#define CLIENT_MIN_BLOCK_DEFAULT 4096u
/* The largest slab client_obj_valid handles (its offsets within a slab are 32-bit). */
#define CLIENT_SLAB_MAX (1ull << 31)
/* A daemon that accepts but never answers Hello (stopped, wedged, or not pinpoold at
 * all) must not hang pp_connect forever.  Later requests have no deadline: a busy
 * daemon is slow, not wrong.  (A re-claim's Hello waits as long as the grace period
 * leaves: reclaim.c.) */
#define CLIENT_HANDSHAKE_TIMEOUT_MS 10000
/* Welcome.session_token and Welcome.region_id are 16 bytes; longer ones than this are
 * not kept, and a session without them cannot be re-claimed. */
#define CLIENT_TOKEN_MAX 64u
#define CLIENT_REGION_ID_MAX 64u

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

  /* Re-claim (reclaim.c): what finding the session again after a daemon restart takes. */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* the socket connected to */
  char name[RPC_CLIENT_NAME_MAX + 1];                     /* Hello.client_name */
  bool reclaim;      /* (lock) on: the knobs allow it and the last Welcome offered it */
  uint32_t grace_ms; /* (lock) Welcome.grace_ms: how long a broken session waits for us */
  uint8_t token[CLIENT_TOKEN_MAX]; /* (lock) Welcome.session_token */
  size_t token_len;
  uint8_t region_id[CLIENT_REGION_ID_MAX]; /* Welcome.region_id of pp_connect's Welcome */
  size_t region_id_len;
  dev_t region_dev; /* the memfd's file: a re-claim's Welcome must carry the same one */
  ino_t region_ino;
  uint64_t rng;              /* (lock) xorshift state for the backoff's jitter */
  _Atomic uint64_t reclaims; /* successful re-claims, for pp_reclaims() */
  unsigned cmag_returning;   /* (cmag_lock) exiting threads returning objects to c */
  _Atomic uint32_t features; /* Welcome.features of the last Welcome */
  struct pp_pool *pools;     /* (lock) pools attached (pool.c), freed by pp_disconnect */

  /* Buffer caches (bcache.c). */
  _Atomic uint64_t bc_limit;    /* sizes 1..bc_limit are served from the caches; 0: off */
  unsigned bc_shift;            /* log2(min_block) */
  unsigned bc_norders;          /* orders cached when on: 0..bc_norders-1 */
  unsigned bc_high[BC_ORDERS];  /* per thread and order: the high watermark, in blocks */
  uint64_t bc_serial;           /* process-unique, never reused: threads find their caches */
  uint64_t bc_units;            /* region_size / min_block: the slot table's extent */
  _Atomic(bc_slot_t *) *bc_dir; /* chunks of the slot table, made when first needed */
  size_t bc_ndir;
  _Atomic uint32_t bc_epoch;    /* moves when cached addresses may be stale */
  _Atomic uint64_t bc_addr_gen; /* Buffers.addresses_generation + 1 last seen; 0 unknown */
  struct bc_thread_cache *bc_threads; /* (bc_lock) every thread's cache for c */
  unsigned bc_returning;              /* (bc_lock) exiting threads returning blocks */
};

struct pp_cache {
  pp_client *c;
  struct pp_cache *next; /* (c->lock) in c->caches */
  uint64_t serial;       /* process-unique, never reused: threads find their
                            magazines by it, so a recycled address cannot alias */
  uint8_t *base;         /* copies of c->base / c->region_size: one pointer */
  uint64_t region_size;  /*   chase fewer on the fast path */
  uint32_t id;           /* the daemon's cache_id (ids are per pool) */
  uint32_t pool;         /* the pool it lives in (pool.c); 0: the default pool */
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

/* Welcome.min_block, or the 4 KiB of a daemon that predates the field (it sends 0). */
static inline uint64_t client_min_block(const Pinpool__V1__Welcome *w) {
  return w->min_block ? w->min_block : CLIENT_MIN_BLOCK_DEFAULT;
}

/* pinpool.c: on c->rpc, connected: Hello as c->name presenting token (NULL / 0: a new
 * session), then the Welcome and its memfd, both within timeout_ms.  Checks what every
 * Welcome must satisfy (the memfd backs region_size; a sane min_block) and hands over the
 * response (free with frame_free_response), the memfd and its fstat. */
int client_hello(pp_client *c, const uint8_t *token, size_t token_len, int timeout_ms,
                 Pinpool__V1__Response **ret_resp, int *ret_memfd, struct stat *ret_st);

/* reclaim.c: one exchange under c->lock — rpc_call_id (proto/rpc.h) with body as the
 * request body_case.  On success (status OK and body `want`) *ret_resp is the response
 * (free it with frame_free_response).  A non-OK status returns its PP_E* code.  When the
 * connection fails under the request and re-claim is on, the session is re-claimed on a
 * new connection and the request sent again with its id; otherwise, or when the re-claim
 * fails, the connection is broken for good (every later call returns the same code:
 * PP_EDISCONNECTED, PP_EIO, PP_EPROTO, PP_ENOPRIVMEM, PP_ESTATELOST or PP_EACCES). */
int client_rpc(pp_client *c, Pinpool__V1__Request__BodyCase body_case, ProtobufCMessage *body,
               Pinpool__V1__Response__BodyCase want, Pinpool__V1__Response **ret_resp);
/* reclaim.c: pp_connect's Welcome w (memfd st) names what a re-claim must find again;
 * allowed: the program did not turn re-claim off (PINPOOL_RECLAIM is read here). */
void client_reclaim_init(pp_client *c, const Pinpool__V1__Welcome *w, const struct stat *st,
                         bool allowed);

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

/* bcache.c.  bc_init: at pp_connect, from its Welcome; caching on unless `enabled` is
 * false (PP_CONNECT_NO_BUFFER_CACHE), PINPOOL_BUFFER_CACHE says no, the daemon lacks
 * FEATURE_BULK or the region does not suit.  PP_ENOPRIVMEM. */
int bc_init(pp_client *c, const Pinpool__V1__Welcome *w, bool enabled);
/* pp_disconnect: orphan every thread's cache of c (the daemon reclaims their blocks at the
 * close), wait for exiting threads returning blocks, free the slot table. */
void bc_fini(pp_client *c);
/* A re-claim succeeded with a Welcome announcing features: cached addresses may be stale
 * (the new daemon read them again), and the requests the caches need may be gone; the
 * caches serve again when they can. */
void bc_reclaimed(pp_client *c, uint32_t features);
/* The session may be lost (a re-claim under way) or is (the connection broke for good):
 * the caches stop serving — pp_alloc goes to the daemon, which waits for the re-claim or
 * fails with the connection's error, and freed blocks go back rather than onto a stack. */
void bc_suspend(pp_client *c);
/* pp_alloc of a size the caches serve (1 <= size <= bc_limit, known flags): a block from
 * this thread's cache, refilled with alloc_bulk when empty.  Falls back to client_alloc
 * when the caches cannot serve it. */
int bc_alloc(pp_client *c, uint64_t size, unsigned flags, pp_buffer *ret);
/* pp_free of a handle with BC_HANDLE_TAG: PP_ENOENT unless the program holds that block
 * under that handle. */
int bc_free(pp_client *c, uint64_t handle);
/* Errors that a request may not meet once this thread's caches went back: no room in the
 * region, the quota, the buffer limit (what the cached blocks take counts there too). */
bool bc_err_is_room(int rc);
/* Give back everything this thread's cache of c holds (Linux drains its per-CPU lists when
 * an allocation fails, for the same reason); false when it held nothing. */
bool bc_drain_self(pp_client *c);
/* pp_free_bulk / pp_buffer_segments for tagged handles (bcache.c). */
int bc_free_bulk(pp_client *c, const uint64_t *handles, unsigned n);
int bc_segments(pp_client *c, uint64_t handle, pp_segment *out, unsigned n);

/* pinpool.c: alloc or alloc_named through the daemon (no cache). */
int client_alloc(pp_client *c, const char *name, uint64_t size, unsigned flags, pp_buffer *ret);
/* pinpool.c: free_bulk of handles, all or nothing, with the client's cache report (NULL:
 * none); n <= PROTO_OBJECTS_MAX.  PP_EVERSION when the daemon lacks FEATURE_BULK. */
int client_free_bulk(pp_client *c, const uint64_t *handles, unsigned n,
                     const Pinpool__V1__CacheReport *report);
/* pinpool.c: describe handle (a daemon handle) and copy its segments as
 * pp_buffer_segments does; *ret_phys gets Buffer.phys_addr (may be NULL). */
int client_describe(pp_client *c, uint64_t handle, pp_segment *out, unsigned n,
                    uint64_t *ret_phys);

/* cmag.c: pp_disconnect() calls this first, so that no thread touches k again
 * through its magazines (they are orphaned; the daemon reclaims their objects).  It
 * returns once no exiting thread is still returning objects through c. */
void cmag_orphan_client(pp_client *c);

/* An attached pool other than the default (pool.c). */
struct pp_pool {
  pp_client *c;
  struct pp_pool *next; /* (c->lock) in c->pools */
  uint32_t id;          /* PoolAttached.pool: every request names the pool by it */
  unsigned access;      /* PP_POOL_READ or PP_POOL_WRITE */
  uint8_t *base;        /* mapped PROT_READ, plus PROT_WRITE for a writer */
  uint64_t region_size, page_size, min_block;
  bool hugepages, phys_known;
  char name[64];
  uint8_t region_id[CLIENT_REGION_ID_MAX]; /* PoolAttached.region_id */
  size_t region_id_len;
  dev_t dev; /* the memfd's file: a re-claim must find the same one */
  ino_t ino;
  _Atomic int lost; /* 0, or what every call returns: the pool's state did not survive */
};

/* client_rpc with room for a descriptor that comes with the reply (*ret_fd, -1: none). */
int client_rpc_fd(pp_client *c, Pinpool__V1__Request__BodyCase body_case,
                  ProtobufCMessage *body, Pinpool__V1__Response__BodyCase want,
                  Pinpool__V1__Response **ret_resp, int *ret_fd);
/* pp_cache_open in the pool pool_id whose region is mapped at base (pool.c; 0 and c->base:
 * the default pool's). */
int client_cache_open(pp_client *c, uint32_t pool_id, uint8_t *base, uint64_t region_size,
                      uint64_t min_block, const char *name, uint32_t object_size,
                      uint32_t align, pp_cache **ret_cache);
/* Unmap and free every pool of c (pp_disconnect). */
void pool_fini(pp_client *c);
/* After a re-claim (c->lock held): attach every pool again and check that it is the same
 * region (region_id, the memfd's file); a pool that is not is lost (PP_ESTATELOST). */
void pool_reclaimed(pp_client *c);

#endif /* PP_CLIENT_INTERNAL_H */
