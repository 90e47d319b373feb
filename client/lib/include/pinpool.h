/*
 * pinpool.h — libpinpool, the public C API of pinpool.
 *
 * pinpoold owns one shared-memory region (hugepage-backed when it can be) and hands out
 * pinned, physically contiguous buffers and small slab objects from it.  A program
 * connects once, maps the whole region once, and from then on deals in buffers and
 * objects that live at fixed offsets inside that mapping:
 *
 *   pp_client *c;
 *   int rc = pp_connect(NULL, "my-app", &c);          // NULL: the default socket
 *   pp_buffer b;
 *   rc = pp_alloc(c, 1 << 20, PP_CONTIGUOUS, &b);      // b.addr, b.phys, b.offset
 *   ...
 *   pp_free(c, b.handle);
 *   pp_cache *k;
 *   rc = pp_cache_open(c, "flow", 64, 64, &k);
 *   void *o = pp_cache_alloc(k);                       // usually no round trip
 *   pp_cache_free(k, o);
 *   pp_disconnect(c);                                  // the daemon reclaims the rest
 *
 * Conventions (those of the whole project):
 *   - every function that can fail returns int: 0 (or a count) on success, a negative
 *     PP_E* code of pinpool_err.h on failure; pp_strerror() and pp_err_name() name it.
 *     PP_ENOMEM is the daemon's region being full, PP_ENOPRIVMEM this process's own
 *     memory (malloc) running out;
 *   - output parameters are left untouched on failure;
 *   - a pp_client is thread-safe: requests on its connection are serialized by a mutex;
 *     pp_cache_alloc()/pp_cache_free(), and pp_alloc()/pp_free() of small buffers, are
 *     served from per-thread magazines and buffer caches and take no lock at all until one
 *     must be refilled or emptied;
 *   - offsets are what the daemon speaks and what other processes understand: pass
 *     b.offset (or b.handle, or a name) to a peer, never b.addr; pp_ptr()/pp_offset()
 *     convert within this process;
 *   - a pp_client belongs to the process that connected it: after fork() the child
 *     must pp_connect() on its own and must not use the parent's client.
 *
 * Everything a client holds is owned by its session: when the process exits or dies,
 * or calls pp_disconnect(), the daemon takes all of it back, buffers and objects alike.
 * Objects resting in a thread's magazines (at most two magazines of 8 to 64 objects per
 * thread and cache) are held too: they count against the uid's quota and show in
 * pinpoolctl until the thread exits or the client disconnects.  So are the small buffers
 * resting in a thread's buffer cache (see "Buffer caches" below: at most 256 KiB per
 * thread and block size).
 *
 * A daemon restart is not the end of a session.  pinpoold keeps its region and a journal
 * of who holds what across a restart (under systemd), and keeps each session for a grace
 * period (pinpoold --grace, 30 s by default).  When a call finds the connection gone
 * (EOF, reset, I/O error) it connects again, re-claims the session with the token of its
 * first Welcome, and sends its request again under the same request id, which the daemon
 * answers exactly once.  The caller sees only a slower call: the mapping, every pointer,
 * buffer handle, name, pp_cache and magazine stay valid, and other threads' calls wait
 * and then carry on.  If the session cannot be had back, that call and every later one
 * fail at once with PP_ESTATELOST (the daemon is back without the session: it restarted
 * without its journal, the grace period ran out, or another region), PP_EDISCONNECTED
 * (no daemon took the session back within the grace period plus 2 s) or PP_EACCES (this
 * user may no longer connect).  Then pp_disconnect() and pp_connect() again.  Turn it off
 * with PINPOOL_RECLAIM=0 in the environment (read by pp_connect) or PP_CONNECT_NO_RECLAIM
 * (pp_connect_opts()): the first broken connection is then final.  A daemon that does not
 * offer it (no region id or grace period in its Welcome: an older pinpoold) is treated
 * the same way.  A live daemon that closes a connection (the client did not read its
 * replies, say) releases the session at once: the re-claim then ends in PP_ESTATELOST.
 */
#ifndef PINPOOL_H
#define PINPOOL_H

#include <stdbool.h>
#include <stdint.h>

#ifndef PP_API
#define PP_API __attribute__((visibility("default")))
#endif

#include "pinpool_err.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for pp_alloc() / pp_alloc_named(). */
#define PP_CONTIGUOUS 0x1u /* physically contiguous, or PP_ENOCONTIG */
#define PP_ZERO 0x2u       /* zero-filled */

typedef struct pp_client pp_client;
typedef struct pp_cache pp_cache;

typedef struct pp_buffer {
  uint64_t handle; /* what pp_free() takes; meaningful only to this client's session */
  uint64_t offset; /* from the start of the region: the same in every process */
  uint64_t size;   /* bytes actually reserved (the request rounded up to a block) */
  uint64_t phys;   /* physical address of the first byte; 0 when unknown */
  bool contiguous; /* the whole buffer is physically contiguous */
  void *addr;      /* this process's pointer to the first byte */
} pp_buffer;

/* Connect to pinpoold at socket_path (NULL: $PINPOOL_SOCKET, else
 * /run/pinpool/pinpool.sock as root, else $XDG_RUNTIME_DIR/pinpool.sock), say hello as
 * client_name (NULL: the program's name; at most 64 bytes are sent), receive the
 * region and map it.  Errors: PP_EINVAL, PP_ECONNECT (no daemon there: no such socket,
 * or nobody listening), PP_EACCES (the socket is there but this user may not connect:
 * typically not in the socket's group), PP_EVERSION, PP_ETOOMANY, PP_EPROTO, PP_EIO
 * (also: no answer to the handshake within 10 s), PP_EDISCONNECTED, PP_ENOPRIVMEM
 * (malloc failed), PP_EOS (socket, mmap).  Later calls block until the daemon answers;
 * they fail only when the connection does and the session cannot be re-claimed (see
 * above: a call may block for the grace period while the daemon restarts). */
PP_API int pp_connect(const char *socket_path, const char *client_name, pp_client **ret_client);

/* Options for pp_connect_opts().  Start from PP_CONNECT_OPTIONS_INIT: size tells the
 * library which version of the struct it is given (a size it does not know is
 * PP_EINVAL). */
typedef struct pp_connect_options {
  uint32_t size;  /* sizeof(pp_connect_options) */
  uint32_t flags; /* PP_CONNECT_NO_RECLAIM, PP_CONNECT_NO_BUFFER_CACHE */
} pp_connect_options;
/* Never re-claim the session: the first broken connection is final (as with
 * PINPOOL_RECLAIM=0 in the environment, which turns it off whatever the flags say). */
#define PP_CONNECT_NO_RECLAIM 0x1u
/* No buffer caches: every pp_alloc() and pp_free() is a request to the daemon (as with
 * PINPOOL_BUFFER_CACHE=0 in the environment, which turns them off whatever the flags say).
 * See "Buffer caches" below. */
#define PP_CONNECT_NO_BUFFER_CACHE 0x2u
#define PP_CONNECT_OPTIONS_INIT                                                                \
  { sizeof(pp_connect_options), 0u }
/* pp_connect() with options (NULL: the defaults, which is pp_connect()).  PP_EINVAL also
 * for an unknown size or flag. */
PP_API int pp_connect_opts(const char *socket_path, const char *client_name,
                           const pp_connect_options *opts, pp_client **ret_client);
/* Close the session: the daemon takes back every buffer and object it held (objects in
 * any thread's magazines included), and every pp_cache of c becomes invalid.  No other
 * thread may be using c (its pp_cache handles included) during or after the call.
 * NULL is a no-op.  Also after a failed re-claim: everything is freed.  Threads that are
 * exiting and returning their magazines' objects through c are waited for. */
PP_API void pp_disconnect(pp_client *c);

/* The region as mapped in this process, and its geometry as the daemon announced it. */
PP_API void *pp_base(pp_client *c);
PP_API uint64_t pp_region_size(pp_client *c);
PP_API uint64_t pp_page_size(pp_client *c); /* the region's page size (4 KiB, 2 MiB, 1 GiB) */
/* The allocation unit (4 KiB): every buffer is this times a power of two, whatever the
 * page size. */
PP_API uint64_t pp_min_block(pp_client *c);
PP_API bool pp_hugepages(pp_client *c);      /* the region is backed by hugepages */
PP_API bool pp_phys_known(pp_client *c);     /* buffers report physical addresses */
PP_API uint64_t pp_session_id(pp_client *c); /* as pinpoolctl lists it */
/* How many times this client re-claimed its session after the daemon went away. */
PP_API uint64_t pp_reclaims(pp_client *c);
/* offset <-> pointer within this process's mapping; NULL / UINT64_MAX when outside it. */
PP_API void *pp_ptr(pp_client *c, uint64_t offset);
PP_API uint64_t pp_offset(pp_client *c, const void *addr);

/* Buffer caches.  Small buffers — sizes up to 64 KiB, and no larger than the region's
 * page size (so 4 KiB on a region of 4 KiB pages, up to 64 KiB on hugepages) — come from
 * per-thread caches of blocks the session already holds, so that pp_alloc() and pp_free()
 * of them mostly never leave the process (a few nanoseconds instead of a round trip).
 * Such a block is physically contiguous by construction (PP_CONTIGUOUS always holds);
 * PP_ZERO zeroes it in the calling thread.  Watermarks, per thread and block size: at most
 * 256 KiB of blocks (64 of 4 KiB, 32 of 8 KiB, 16 of 16 KiB, 8 of 32 KiB, 4 of 64 KiB); an
 * empty cache is refilled with half that in one request, and a free onto a full one first
 * returns the colder half in one request.  What the caches hold is the session's: it
 * counts against the uid's quota and pinpoold --max-buffers like any buffer, pinpoolctl
 * clients shows it (CACHED), and it goes back to the daemon when its thread exits, at
 * pp_disconnect(), and when the process dies.  A block the program frees is not zeroed
 * before the cache hands it out again (PP_ZERO does that; pinpoold --zero-on-free only when
 * it goes back to the daemon).  Handles of cached blocks have bit 63 set (the daemon's
 * never do); they are valid while the program holds the block, like any handle, and
 * survive a daemon restart.  Named buffers, lookups and larger sizes go to the daemon.
 * While a re-claim is under way, and after the connection broke for good, the caches serve
 * nothing (their blocks are the session's only if it comes back): pp_alloc() waits for the
 * re-claim or fails with the connection's error like any request.  A thread that only
 * uses its cache does not notice a daemon restart until some call of the client goes to
 * the daemon; a session nobody re-claims within the grace period is released, cached
 * blocks included, as always.
 * PINPOOL_BUFFER_CACHE=0 in the environment or PP_CONNECT_NO_BUFFER_CACHE turns the caches
 * off; so does a daemon that predates them. */

/* A buffer of at least size bytes (rounded up to a buddy block: see ret->size), from this
 * thread's buffer cache when the size is small enough (above), else from the daemon.
 * flags: PP_CONTIGUOUS, PP_ZERO.  Errors: PP_EINVAL (size 0, unknown flags), PP_ENOMEM,
 * PP_ENOCONTIG, PP_ERANGE, PP_EQUOTA, PP_ELIMIT, PP_ELOSTPAGE (the free blocks that could
 * serve it had pages punched out of the region by some client, and the daemon could not
 * replace them: they are kept out of circulation), and the connection errors. */
PP_API int pp_alloc(pp_client *c, uint64_t size, unsigned flags, pp_buffer *ret);
/* The same, published under name so that other clients can pp_lookup() it; the name
 * lives as long as the buffer (until its last holder frees it).  Names are scoped by
 * user: "frames" is this uid's own, "~1000/frames" uid 1000's, "~g44/frames" shared group
 * 44's (docs/PROTOCOL.md).  PP_EEXIST when the name is taken in its scope, PP_EPERM in a
 * scope this uid may not create names in. */
PP_API int pp_alloc_named(pp_client *c, const char *name, uint64_t size, unsigned flags,
                          pp_buffer *ret);
/* Take a hold on the buffer published under name (this uid's scope unless qualified:
 * "~1000/frames").  PP_ENOENT when there is none. */
PP_API int pp_lookup(pp_client *c, const char *name, pp_buffer *ret);
/* Drop this session's hold on a buffer (from pp_alloc*() or pp_lookup()).  The memory
 * goes back to the allocator when its last holder lets go — or, for a block of the buffer
 * caches, to this thread's cache.  PP_ENOENT for a handle this session does not hold,
 * whoever else does, or a cached block's handle freed already (nothing changes). */
PP_API int pp_free(pp_client *c, uint64_t handle);

/* n buffers of at least size bytes each, from the daemon in one request, all or nothing:
 * returns n with out[0..n) filled, or a negative code with nothing allocated.  n up to
 * 1024 (PP_ERANGE above, or when the reply could not fit the daemon's frame size).  Errors
 * as pp_alloc()'s; the quota and --max-buffers count every buffer; PP_EVERSION from a
 * daemon that predates bulk requests.  The handles are the daemon's, never a cache's. */
PP_API int pp_alloc_bulk(pp_client *c, uint64_t size, unsigned flags, unsigned n,
                         pp_buffer *out);
/* Drop n holds (a handle may appear once per hold), all or nothing: 0, or PP_ENOENT and
 * nothing freed when any handle is not held (n up to 1024, else PP_ERANGE).  Cached blocks'
 * handles go to this thread's cache, the others to the daemon in one request. */
PP_API int pp_free_bulk(pp_client *c, const uint64_t *handles, unsigned n);
/* Whether this client's buffer caches are on (see "Buffer caches"). */
PP_API bool pp_buffer_cache_enabled(pp_client *c);

/* One physically contiguous piece of a buffer: what a DMA engine's scatter-gather list
 * takes. */
typedef struct pp_segment {
  uint64_t offset; /* from the start of the region */
  uint64_t phys;   /* physical address of its first byte */
  uint64_t length; /* bytes */
} pp_segment;
/* The physically contiguous runs of the buffer this session holds under handle, in offset
 * order, into out[0..n): returns how many there are (more than n means out holds the
 * first n; call again with room for all), 0 when the daemon does not know physical
 * addresses (Welcome.physical_addresses false) — and pages punched out of the region and
 * not repaired are in no segment.  A cached block is one segment, answered without a
 * round trip unless the daemon's addresses may have moved since it was described; any
 * other buffer is described by the daemon (one round trip).  PP_ENOENT for a handle the
 * session does not hold, PP_ERANGE when the list does not fit one reply of the daemon's
 * frame size, PP_EVERSION from a daemon that predates it. */
PP_API int pp_buffer_segments(pp_client *c, uint64_t handle, pp_segment *out, unsigned n);

/* Open (or find: idempotent by name and geometry) a slab cache of object_size-byte
 * objects aligned to align (a power of two; 0 means 8); the name is scoped like
 * pp_alloc_named()'s.  The handle lives until pp_disconnect(); opening the same cache
 * twice gives the same handle.  Errors: PP_EINVAL, PP_ERANGE, PP_EGEOMETRY (same name,
 * another geometry), PP_EPERM (no such cache, in a scope this uid may not create in),
 * PP_ELIMIT (the daemon's cache limits), ... */
PP_API int pp_cache_open(pp_client *c, const char *name, uint32_t object_size, uint32_t align,
                         pp_cache **ret_cache);
PP_API uint32_t pp_cache_object_size(pp_cache *k);
/* One object, from this thread's magazines when they have one (no system call), else
 * after fetching a magazine-full from the daemon.  NULL on failure; call
 * pp_cache_alloc_bulk(k, &p, 1) when the reason matters. */
PP_API void *pp_cache_alloc(pp_cache *k);
/* Give an object back to this thread's magazines; full magazines go back to the daemon
 * in one request.  PP_EINVAL, without touching anything, for a pointer outside the
 * region or not at an object boundary of this cache.  A double free is NOT detected
 * here (that would cost a lookup per call): the daemon detects it when the magazine
 * goes back, and that later call returns PP_EDOUBLEFREE/PP_ENOTALLOC/PP_ENOTBLOCK (the
 * daemon's state is never harmed; the duplicate may meanwhile have been handed out
 * twice by this thread's magazine — the caller's bug, as with free()). */
PP_API int pp_cache_free(pp_cache *k, void *obj);
/* n objects into objs, all or nothing: returns n, or a negative code with nothing
 * allocated (objs[] then holds no pointer the caller may use). */
PP_API int pp_cache_alloc_bulk(pp_cache *k, void **objs, unsigned n);
/* n objects back: validates all first (PP_EINVAL and nothing freed if one is outside
 * the region or misaligned); returns 0, or the first error a batch return reported. */
PP_API int pp_cache_free_bulk(pp_cache *k, void *const *objs, unsigned n);

/* Pools.  A daemon may serve several pools (pinpoold(8): `[pool NAME]` sections), each
 * its own region with its own allocators and quota.  Everything above works in the
 * default pool, which every client may write.  Another pool is attached by name; the
 * daemon decides the access from the caller's uid and groups: PP_POOL_WRITE (a read-write
 * mapping: allocate, publish, look up, free) or PP_POOL_READ (a read-only mapping — the
 * kernel refuses writes to it — through which the client looks up and reads buffers
 * writers published; allocating is PP_EPERM).  A caller in neither list gets PP_EPERM
 * and nothing is mapped.  An attachment lasts until pp_disconnect; attaching the same
 * pool again returns the same pp_pool.  Handles of a pool's buffers carry the pool's id
 * (bits 48..62), so they are unambiguous across pools: pp_pool_free or pp_free frees them.
 * Slab caches work in a pool as in the default one (pp_pool_cache_open); the buffer caches
 * serve the default pool only: pp_pool_alloc and pp_pool_free always go to the daemon.
 * After a daemon restart every pool's holdings come back with the session: the re-claim
 * attaches each pool again and checks that it is the same region.  A pool the daemon had
 * to start fresh (its config changed, its stored state was not trusted) is lost: its
 * calls return PP_ESTATELOST, and pp_pool_attach gives a new attachment. */
typedef struct pp_pool pp_pool;
#define PP_POOL_READ 1u
#define PP_POOL_WRITE 2u

/* A buffer of a read-only attachment: as pp_buffer, with a pointer to const memory. */
typedef struct pp_rbuffer {
  uint64_t handle; /* what pp_pool_free() takes */
  uint64_t offset; /* from the start of the pool's region */
  uint64_t size;
  uint64_t phys; /* physical address of the first byte; 0 when unknown */
  bool contiguous;
  const void *addr; /* this process's read-only pointer to the first byte */
} pp_rbuffer;

/* Attach the pool called name ("default" or NULL: the default pool is not a pp_pool —
 * PP_EINVAL).  PP_EPERM when this uid may neither write nor read it, PP_ENOENT when the
 * daemon has no such pool, PP_EVERSION when the daemon predates pools. */
PP_API int pp_pool_attach(pp_client *c, const char *name, pp_pool **ret_pool);
PP_API const char *pp_pool_name(pp_pool *p);
PP_API unsigned pp_pool_access(pp_pool *p); /* PP_POOL_READ or PP_POOL_WRITE */
PP_API uint64_t pp_pool_region_size(pp_pool *p);
PP_API uint64_t pp_pool_page_size(pp_pool *p);
PP_API bool pp_pool_hugepages(pp_pool *p);
PP_API bool pp_pool_phys_known(pp_pool *p);
/* The pool's region in this process: writable for a writer; NULL for a reader. */
PP_API void *pp_pool_base(pp_pool *p);
/* The same, read-only, for either access. */
PP_API const void *pp_pool_rbase(pp_pool *p);
/* pp_alloc / pp_alloc_named (name NULL: unpublished) in the pool; PP_EPERM for a reader. */
PP_API int pp_pool_alloc(pp_pool *p, const char *name, uint64_t size, unsigned flags,
                         pp_buffer *ret);
/* pp_lookup in the pool, with a writable pointer: PP_EPERM for a reader (pp_pool_rlookup). */
PP_API int pp_pool_lookup(pp_pool *p, const char *name, pp_buffer *ret);
/* pp_lookup in the pool, read-only: for readers and writers alike. */
PP_API int pp_pool_rlookup(pp_pool *p, const char *name, pp_rbuffer *ret);
/* pp_cache_open in the pool: writers only (PP_EPERM for a reader).  The pp_cache it gives
 * takes the calls above (pp_cache_alloc, pp_cache_free, ...), its objects in the pool. */
PP_API int pp_pool_cache_open(pp_pool *p, const char *name, uint32_t object_size,
                              uint32_t align, pp_cache **ret_cache);
/* Drop this session's hold on a buffer of the pool (from pp_pool_alloc or a lookup). */
PP_API int pp_pool_free(pp_pool *p, uint64_t handle);

/* Also from pinpool_err.h: pp_strerror(), pp_err_name(), pp_status_name(). */

#ifdef __cplusplus
}
#endif

#endif /* PINPOOL_H */
