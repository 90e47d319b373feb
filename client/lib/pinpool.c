/*
 * pinpool.c — libpinpool: the connection to pinpoold, buffers, and cache handles.
 *
 * What: the public C API of pinpool (client/lib/include/pinpool.h) minus the per-thread
 * magazines, which live in cmag.c.  It speaks protocol version 1 (proto/
 * pinpool.proto, docs/PROTOCOL.md) over the daemon's Unix stream socket.
 *
 * How:
 *   - pp_connect: socket + connect (a refusal for permissions is PP_EACCES — the user is
 *     not in the socket's group — and anything else, no socket or nobody listening,
 *     PP_ECONNECT), Hello{protocol_version 1, client_name}, then one
 *     Welcome frame that carries the region's memfd as SCM_RIGHTS.  The whole region is
 *     mapped MAP_SHARED once and the fd closed at once: the mapping keeps the memory
 *     alive, and a client that holds no fd cannot ftruncate or reseal it (the daemon
 *     sealed it anyway).  From then on everything is an offset into that mapping.
 *   - Every other call is one synchronous request/response exchange through proto/rpc.c
 *     (client_rpc, reclaim.c): requests are small, the daemon answers in order, so a
 *     mutex around the exchange is all the thread safety the connection needs.  rpc.c
 *     numbers the requests, checks the echoed id, maps the status through the one error
 *     table, and marks the connection broken at the first framing or transport failure.
 *     When the daemon went away under a request (a restart), reclaim.c finds the session
 *     again on a new connection and sends the request again; otherwise, or when that
 *     fails, every request fails fast with the same error (the mapping stays valid until
 *     pp_disconnect, so memory the program still touches does not vanish).  Each pp_*
 *     call only fills its body message and reads the reply's body.
 *   - Nothing the daemon says is trusted blindly: offsets and sizes are checked against
 *     the region before a pointer is formed from them, the memfd's size against the
 *     announced region size, a cache's announced slab geometry against its objects, and
 *     responses are unpacked with a bounded budget.
 *   - Private memory that runs out (malloc) is PP_ENOPRIVMEM; PP_ENOMEM is the daemon's
 *     region being full.
 *
 * Invariants: c->base maps c->region_size bytes from pp_connect until pp_disconnect — a
 * re-claim keeps it, so every pointer ever handed out stays valid; c->rpc.fd >= 0 unless
 * a re-claim is under way or failed (c->rpc.broken then says why); every pp_cache of c
 * is on c->caches and is freed only by pp_disconnect.
 *
 * Locks: c->lock serializes exchanges on c->rpc (a re-claim is one) and guards c->caches.
 * The magazine lock of cmag.c, when both are needed, is taken first (client.h).
 *
 * References: Bonwick & Adams, "Magazines and Vmem", USENIX 2001 (the client-side
 * magazines this file's caches feed); unix(7) and cmsg(3) for SCM_RIGHTS.
 */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "endpoint.h"

/* The values travel unchanged as Alloc.flags. */
_Static_assert(PP_CONTIGUOUS == PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_CONTIGUOUS,
               "PP_CONTIGUOUS is the protocol's ALLOC_FLAG_CONTIGUOUS");
_Static_assert(PP_ZERO == PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_ZERO,
               "PP_ZERO is the protocol's ALLOC_FLAG_ZERO");

/* ---- connect / disconnect ---------------------------------------------------------- */

int client_hello(pp_client *c, const uint8_t *token, size_t token_len, int timeout_ms,
                 Pinpool__V1__Response **ret_resp, int *ret_memfd, struct stat *ret_st) {
  struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000};
  Pinpool__V1__Response *resp = NULL;
  int memfd = -1, rc;

  setsockopt(c->rpc.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  c->rpc.timeout_ms = timeout_ms;
  rc = rpc_hello_session(&c->rpc, c->name, token, token_len, &resp, &memfd);
  c->rpc.timeout_ms = -1;
  if (rc < 0) return rc;
  tv.tv_sec = 0;
  tv.tv_usec = 0;
  if (setsockopt(c->rpc.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0) {
    rc = PP_EOS;
    goto out;
  }
  const Pinpool__V1__Welcome *w = resp->welcome;
  struct stat st;
  if (fstat(memfd, &st) < 0) {
    rc = PP_EOS;
    goto out;
  }
  /* A region the fd cannot back would SIGBUS on first touch: refuse it here. */
  if (w->region_size == 0 || w->region_size > (uint64_t)st.st_size ||
      w->region_size > (uint64_t)SIZE_MAX) {
    rc = PP_EPROTO;
    goto out;
  }
  uint64_t min_block = client_min_block(w);
  if ((min_block & (min_block - 1)) != 0 || min_block > w->region_size) {
    rc = PP_EPROTO;
    goto out;
  }
  *ret_resp = resp;
  resp = NULL;
  *ret_memfd = memfd;
  memfd = -1;
  *ret_st = st;
  rc = 0;
out:
  if (memfd >= 0) close(memfd);
  frame_free_response(resp);
  return rc;
}

int pp_connect(const char *socket_path, const char *client_name, pp_client **ret_client) {
  return pp_connect_opts(socket_path, client_name, NULL, ret_client);
}

int pp_connect_opts(const char *socket_path, const char *client_name,
                    const pp_connect_options *opts, pp_client **ret_client) {
  char path[sizeof((struct sockaddr_un *)0)->sun_path];
  Pinpool__V1__Response *resp = NULL;
  struct stat st;
  pp_client *c = NULL;
  int memfd = -1;
  int rc;

  if (!ret_client) return PP_EINVAL;
  /* The sizes of the options this library knows (one so far): a program built against a
   * later header, with fields this library would ignore, is told so. */
  if (opts &&
      (opts->size != sizeof(pp_connect_options) ||
       (opts->flags & ~(uint32_t)(PP_CONNECT_NO_RECLAIM | PP_CONNECT_NO_BUFFER_CACHE)) != 0))
    return PP_EINVAL;
  if (!socket_path) {
    rc = endpoint_default_path(path, sizeof path);
    if (rc < 0) return rc;
    socket_path = path;
  }
  if (!client_name) client_name = program_invocation_short_name;

  c = calloc(1, sizeof *c);
  if (!c) return PP_ENOPRIVMEM;
  rpc_init(&c->rpc, -1);
  c->base = MAP_FAILED;
  if (pthread_mutex_init(&c->lock, NULL) != 0) {
    free(c);
    return PP_EOS;
  }
  /* Kept for re-claim, which connects again to the same path under the same name. */
  if (strlen(socket_path) >= sizeof c->path) {
    rc = PP_EINVAL;
    goto fail;
  }
  strcpy(c->path, socket_path);
  rpc_name_cut(c->name, client_name);

  rc = rpc_connect(&c->rpc, c->path);
  if (rc < 0) goto fail;
  rc = client_hello(c, NULL, 0, CLIENT_HANDSHAKE_TIMEOUT_MS, &resp, &memfd, &st);
  if (rc < 0) goto fail;
  const Pinpool__V1__Welcome *w = resp->welcome;
  c->region_size = w->region_size;
  c->page_size = w->page_size;
  c->min_block = client_min_block(w);
  c->hugepages = w->hugepages;
  c->phys_known = w->physical_addresses;
  c->session_id = w->session_id;
  c->base = mmap(NULL, (size_t)c->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (c->base == MAP_FAILED) {
    rc = PP_EOS;
    goto fail;
  }
  rc = bc_init(c, w, !(opts && (opts->flags & PP_CONNECT_NO_BUFFER_CACHE)));
  if (rc < 0) goto fail;
  client_reclaim_init(c, w, &st, !(opts && (opts->flags & PP_CONNECT_NO_RECLAIM)));
  close(memfd);
  frame_free_response(resp);
  *ret_client = c;
  return 0;

fail:
  if (memfd >= 0) close(memfd);
  frame_free_response(resp);
  rpc_close(&c->rpc);
  if (c->base != MAP_FAILED) munmap(c->base, (size_t)c->region_size);
  free(c->bc_dir);
  pthread_mutex_destroy(&c->lock);
  free(c);
  return rc;
}

void pp_disconnect(pp_client *c) {
  if (!c) return;
  /* Orphan every thread's magazines first: after this no thread touches c's caches
   * through them, and the daemon reclaims the objects they held when the socket closes,
   * which is cheaper than sending them back one magazine at a time. */
  cmag_orphan_client(c);
  /* The same for the buffer caches; threads still returning blocks finish first. */
  bc_fini(c);
  /* fd -1 after a re-claim that failed: nothing to close, the mapping is still here. */
  rpc_close(&c->rpc);
  pool_fini(c); /* every pool's mapping, as the default pool's below */
  if (c->base != MAP_FAILED) munmap(c->base, (size_t)c->region_size);
  for (pp_cache *k = c->caches, *next; k; k = next) {
    next = k->next;
    free(k);
  }
  pthread_mutex_destroy(&c->lock);
  free(c);
}

/* ---- geometry ---------------------------------------------------------------------- */

void *pp_base(pp_client *c) {
  return c ? c->base : NULL;
}
uint64_t pp_region_size(pp_client *c) {
  return c ? c->region_size : 0;
}
uint64_t pp_page_size(pp_client *c) {
  return c ? c->page_size : 0;
}
uint64_t pp_min_block(pp_client *c) {
  return c ? c->min_block : 0;
}
bool pp_hugepages(pp_client *c) {
  return c && c->hugepages;
}
bool pp_phys_known(pp_client *c) {
  return c && c->phys_known;
}
uint64_t pp_session_id(pp_client *c) {
  return c ? c->session_id : 0;
}
uint64_t pp_reclaims(pp_client *c) {
  return c ? atomic_load_explicit(&c->reclaims, memory_order_relaxed) : 0;
}

void *pp_ptr(pp_client *c, uint64_t offset) {
  if (!c || offset >= c->region_size) return NULL;
  return c->base + offset;
}

uint64_t pp_offset(pp_client *c, const void *addr) {
  if (!c) return UINT64_MAX;
  uint64_t off = (uint64_t)((uintptr_t)addr - (uintptr_t)c->base);
  return off < c->region_size ? off : UINT64_MAX;
}

/* ---- buffers ----------------------------------------------------------------------- */

/* Buffer message -> pp_buffer, refusing one that does not lie inside the region. */
static int client_buffer_out(pp_client *c, const Pinpool__V1__Buffer *b, pp_buffer *ret) {
  if (b->size == 0 || b->offset >= c->region_size || b->size > c->region_size - b->offset)
    return PP_EPROTO;
  ret->handle = b->handle;
  ret->offset = b->offset;
  ret->size = b->size;
  ret->phys = b->phys_addr;
  ret->contiguous = b->contiguous;
  ret->addr = c->base + b->offset;
  return 0;
}

int client_alloc(pp_client *c, const char *name, uint64_t size, unsigned flags,
                 pp_buffer *ret) {
  if (!c || !ret || size == 0 || (flags & ~(PP_CONTIGUOUS | PP_ZERO)) != 0) return PP_EINVAL;
  Pinpool__V1__Alloc a = PINPOOL__V1__ALLOC__INIT;
  a.size = size;
  a.flags = flags;
  if (name) a.name = (char *)name;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_ALLOC, &a.base,
                      PINPOOL__V1__RESPONSE__BODY_BUFFER, &resp);
  /* What this thread's buffer cache holds counts against the region, the quota and the
   * buffer limit: given back, it may make room. */
  if (rc < 0 && bc_err_is_room(rc) && bc_drain_self(c))
    rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_ALLOC, &a.base,
                    PINPOOL__V1__RESPONSE__BODY_BUFFER, &resp);
  if (rc < 0) return rc;
  rc = client_buffer_out(c, resp->buffer, ret);
  frame_free_response(resp);
  return rc;
}

int pp_alloc(pp_client *c, uint64_t size, unsigned flags, pp_buffer *ret) {
  /* size - 1 < limit: 1 <= size <= limit, and never with caching off (limit 0). */
  if (c && ret && size - 1 < atomic_load_explicit(&c->bc_limit, memory_order_relaxed) &&
      (flags & ~(PP_CONTIGUOUS | PP_ZERO)) == 0)
    return bc_alloc(c, size, flags, ret);
  return client_alloc(c, NULL, size, flags, ret);
}

int pp_alloc_named(pp_client *c, const char *name, uint64_t size, unsigned flags,
                   pp_buffer *ret) {
  if (!name || !*name) return PP_EINVAL;
  return client_alloc(c, name, size, flags, ret);
}

int pp_lookup(pp_client *c, const char *name, pp_buffer *ret) {
  if (!c || !name || !*name || !ret) return PP_EINVAL;
  Pinpool__V1__Lookup l = PINPOOL__V1__LOOKUP__INIT;
  l.name = (char *)name;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_LOOKUP, &l.base,
                      PINPOOL__V1__RESPONSE__BODY_BUFFER, &resp);
  if (rc == PP_ELIMIT && bc_drain_self(c))
    rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_LOOKUP, &l.base,
                    PINPOOL__V1__RESPONSE__BODY_BUFFER, &resp);
  if (rc < 0) return rc;
  rc = client_buffer_out(c, resp->buffer, ret);
  frame_free_response(resp);
  return rc;
}

int pp_free(pp_client *c, uint64_t handle) {
  if (!c) return PP_EINVAL;
  if (handle & BC_HANDLE_TAG) return bc_free(c, handle);
  Pinpool__V1__Free f = PINPOOL__V1__FREE__INIT;
  f.handle = handle;
  /* A handle of another pool names it in bits 48..62 (pool.c): freed there. */
  f.pool = (uint32_t)(handle >> 48) & 0x7fffu;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_FREE, &f.base,
                      PINPOOL__V1__RESPONSE__BODY__NOT_SET, &resp);
  if (rc < 0) return rc;
  frame_free_response(resp);
  return 0;
}

static bool client_has_bulk(pp_client *c) {
  return atomic_load_explicit(&c->features, memory_order_relaxed) &
         PINPOOL__V1__FEATURE__FEATURE_BULK;
}

int pp_alloc_bulk(pp_client *c, uint64_t size, unsigned flags, unsigned n, pp_buffer *out) {
  if (!c || (n > 0 && !out) || size == 0 || (flags & ~(PP_CONTIGUOUS | PP_ZERO)) != 0)
    return PP_EINVAL;
  if (n == 0) return 0;
  if (n > PROTO_OBJECTS_MAX) return PP_ERANGE;
  if (!client_has_bulk(c)) return PP_EVERSION;
  Pinpool__V1__AllocBulk a = PINPOOL__V1__ALLOC_BULK__INIT;
  a.size = size;
  a.count = n;
  a.flags = flags;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_ALLOC_BULK, &a.base,
                      PINPOOL__V1__RESPONSE__BODY_BUFFERS, &resp);
  if (rc < 0 && bc_err_is_room(rc) && bc_drain_self(c))
    rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_ALLOC_BULK, &a.base,
                    PINPOOL__V1__RESPONSE__BODY_BUFFERS, &resp);
  if (rc < 0) return rc;
  const Pinpool__V1__Buffers *bs = resp->buffers;
  pp_buffer *tmp = bs->n_buffers == n ? malloc(n * sizeof *tmp) : NULL;
  rc = bs->n_buffers != n ? PP_EPROTO : !tmp ? PP_ENOPRIVMEM : 0;
  for (unsigned i = 0; rc == 0 && i < n; i++) {
    rc = client_buffer_out(c, bs->buffers[i], &tmp[i]);
    if (rc == 0 && (tmp[i].handle & BC_HANDLE_TAG)) rc = PP_EPROTO;
  }
  if (rc == 0) {
    memcpy(out, tmp, n * sizeof *out);
    rc = (int)n;
  } else {
    /* All or nothing: what the daemon gave goes back. */
    uint64_t handles[PROTO_OBJECTS_MAX];
    unsigned m = 0;
    for (size_t i = 0; i < bs->n_buffers && m < PROTO_OBJECTS_MAX; i++)
      if (!(bs->buffers[i]->handle & BC_HANDLE_TAG)) handles[m++] = bs->buffers[i]->handle;
    (void)client_free_bulk(c, handles, m, NULL);
  }
  free(tmp);
  frame_free_response(resp);
  return rc;
}

int client_free_bulk(pp_client *c, const uint64_t *handles, unsigned n,
                     const Pinpool__V1__CacheReport *report) {
  if (n == 0) return 0;
  if (!client_has_bulk(c)) return PP_EVERSION;
  Pinpool__V1__FreeBulk f = PINPOOL__V1__FREE_BULK__INIT;
  f.handles = (uint64_t *)handles;
  f.n_handles = n;
  f.cache = (Pinpool__V1__CacheReport *)report;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_FREE_BULK, &f.base,
                      PINPOOL__V1__RESPONSE__BODY__NOT_SET, &resp);
  if (rc < 0) return rc;
  frame_free_response(resp);
  return 0;
}

int pp_free_bulk(pp_client *c, const uint64_t *handles, unsigned n) {
  if (!c || (n > 0 && !handles)) return PP_EINVAL;
  if (n == 0) return 0;
  if (n > PROTO_OBJECTS_MAX) return PP_ERANGE;
  for (unsigned i = 0; i < n; i++)
    if (handles[i] & BC_HANDLE_TAG) return bc_free_bulk(c, handles, n);
  return client_free_bulk(c, handles, n, NULL);
}

int client_describe(pp_client *c, uint64_t handle, pp_segment *out, unsigned n,
                    uint64_t *ret_phys) {
  if (!client_has_bulk(c)) return PP_EVERSION;
  Pinpool__V1__Describe d = PINPOOL__V1__DESCRIBE__INIT;
  d.handle = handle;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_DESCRIBE, &d.base,
                      PINPOOL__V1__RESPONSE__BODY_BUFFER, &resp);
  if (rc < 0) return rc;
  const Pinpool__V1__Buffer *b = resp->buffer;
  pp_buffer tmp;
  rc = client_buffer_out(c, b, &tmp);
  /* Left out to fit max_frame (the message says so): the list cannot be had whole. */
  if (rc == 0 && b->n_segments == 0 && resp->message && resp->message[0]) rc = PP_ERANGE;
  /* Each segment inside the buffer, in offset order, not overlapping. */
  for (size_t i = 0, at = b->offset; rc == 0 && i < b->n_segments; i++) {
    const Pinpool__V1__Segment *g = b->segments[i];
    if (g->length == 0 || g->offset < at || g->offset - b->offset > b->size ||
        g->length > b->offset + b->size - g->offset)
      rc = PP_EPROTO;
    at = g->offset + g->length;
  }
  if (rc == 0) {
    for (size_t i = 0; out && i < b->n_segments && i < n; i++)
      out[i] = (pp_segment){.offset = b->segments[i]->offset,
                            .phys = b->segments[i]->phys_addr,
                            .length = b->segments[i]->length};
    if (ret_phys) *ret_phys = b->phys_addr;
    rc = b->n_segments > INT_MAX ? INT_MAX : (int)b->n_segments;
  }
  frame_free_response(resp);
  return rc;
}

int pp_buffer_segments(pp_client *c, uint64_t handle, pp_segment *out, unsigned n) {
  if (!c || (n > 0 && !out)) return PP_EINVAL;
  if (handle & BC_HANDLE_TAG) return bc_segments(c, handle, out, n);
  return client_describe(c, handle, out, n, NULL);
}

bool pp_buffer_cache_enabled(pp_client *c) {
  return c && atomic_load_explicit(&c->bc_limit, memory_order_relaxed) != 0;
}

/* ---- caches ------------------------------------------------------------------------ */

/* Objects per magazine.  Bonwick & Adams size magazines so that a refill amortizes the
 * cost of the layer below; here that layer is a round trip of several microseconds, so
 * magazines are larger than a kernel's, and smaller for big objects, which pin more
 * memory per idle thread. */
static uint32_t cmag_rounds_for(uint32_t object_size) {
  if (object_size <= 256) return 64;
  if (object_size <= 1024) return 32;
  if (object_size <= 16384) return 16;
  return 8;
}

/* The slab size of a daemon that does not announce it (CacheInfo.slab_bytes 0): a valid
 * object lies in a naturally aligned buddy block of a power of two min blocks holding
 * objs_per_slab objects, with less than one stride left over (the daemon fills its
 * slabs).  The smallest such block that holds objs_per_slab * stride bytes is that slab:
 * a block twice as large would hold at least twice as many objects.  0 when the numbers
 * do not allow the inference. */
static uint64_t slab_bytes_inferred(uint64_t min_block, uint32_t stride,
                                    uint32_t objs_per_slab) {
  if (stride == 0 || objs_per_slab == 0) return 0;
  uint64_t need = (uint64_t)stride * objs_per_slab;
  uint64_t s = min_block;
  while (s < need)
    s <<= 1;
  return s <= CLIENT_SLAB_MAX ? s : 0;
}

/* The slab size the boundary check uses: the daemon's when it announces one, else the
 * inference.  PP_EPROTO for an announced size that cannot be a slab of these objects (not
 * a power of two, smaller than the objects it holds or than a min block, larger than the
 * region or than the check can handle). */
static int client_slab_bytes(uint64_t min_block, uint64_t region_size,
                             const Pinpool__V1__CacheInfo *ci, uint32_t stride, uint64_t *ret) {
  uint64_t s = ci->slab_bytes;
  if (s == 0) {
    *ret = slab_bytes_inferred(min_block, stride, ci->objects_per_slab);
    return 0;
  }
  if ((s & (s - 1)) != 0 || s < min_block || s > region_size || s > CLIENT_SLAB_MAX ||
      s < (uint64_t)stride * ci->objects_per_slab)
    return PP_EPROTO;
  *ret = s;
  return 0;
}

int pp_cache_open(pp_client *c, const char *name, uint32_t object_size, uint32_t align,
                  pp_cache **ret_cache) {
  if (!c) return PP_EINVAL;
  return client_cache_open(c, 0, c->base, c->region_size, c->min_block, name, object_size,
                           align, ret_cache);
}

int client_cache_open(pp_client *c, uint32_t pool_id, uint8_t *base, uint64_t region_size,
                      uint64_t min_block, const char *name, uint32_t object_size,
                      uint32_t align, pp_cache **ret_cache) {
  static _Atomic uint64_t next_serial = 1;
  if (!c || !name || !*name || object_size == 0 || !ret_cache) return PP_EINVAL;
  if (align != 0 && (align & (align - 1)) != 0) return PP_EINVAL;

  Pinpool__V1__CacheOpen o = PINPOOL__V1__CACHE_OPEN__INIT;
  o.name = (char *)name;
  o.object_size = object_size;
  o.align = align;
  o.pool = pool_id;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(c, PINPOOL__V1__REQUEST__BODY_CACHE_OPEN, &o.base,
                      PINPOOL__V1__RESPONSE__BODY_CACHE, &resp);
  if (rc < 0) return rc;
  const Pinpool__V1__CacheInfo *ci = resp->cache;
  uint32_t ca = ci->align ? ci->align : 8;
  if (ci->object_size < object_size || (ca & (ca - 1)) != 0 || ci->objects_per_slab == 0) {
    rc = PP_EPROTO;
    goto out;
  }
  uint64_t stride64 = ((uint64_t)ci->object_size + ca - 1) & ~((uint64_t)ca - 1);
  if (stride64 > UINT32_MAX) {
    rc = PP_EPROTO;
    goto out;
  }
  uint32_t stride = (uint32_t)stride64;
  uint64_t slab;
  rc = client_slab_bytes(min_block, region_size, ci, stride, &slab);
  if (rc < 0) goto out;

  pthread_mutex_lock(&c->lock);
  /* Idempotent like the daemon's cache_open: the same cache, the same handle (and the
   * same per-thread magazines). */
  for (pp_cache *k = c->caches; k; k = k->next) {
    if (k->id == ci->cache_id && k->pool == pool_id) {
      pthread_mutex_unlock(&c->lock);
      *ret_cache = k;
      rc = 0;
      goto out;
    }
  }
  pp_cache *k = calloc(1, sizeof *k);
  if (!k) {
    pthread_mutex_unlock(&c->lock);
    rc = PP_ENOPRIVMEM;
    goto out;
  }
  k->c = c;
  k->serial = atomic_fetch_add(&next_serial, 1);
  k->base = base;
  k->region_size = region_size;
  k->id = ci->cache_id;
  k->pool = pool_id;
  k->object_size = ci->object_size;
  k->align = ca;
  k->stride = stride;
  k->objs_per_slab = ci->objects_per_slab;
  k->cmag_rounds = cmag_rounds_for(k->object_size);
  k->slab_tail = slab ? (uint32_t)(slab - (uint64_t)k->stride * k->objs_per_slab) : 0;
  k->stride_shift = (k->stride & (k->stride - 1)) == 0 ? __builtin_ctz(k->stride) : -1;
  atomic_init(&k->slab_bytes, slab);
  k->next = c->caches;
  c->caches = k;
  pthread_mutex_unlock(&c->lock);
  *ret_cache = k;
  rc = 0;
out:
  frame_free_response(resp);
  return rc;
}

uint32_t pp_cache_object_size(pp_cache *k) {
  return k ? k->object_size : 0;
}

int client_cache_fetch(pp_cache *k, void **ptrs, unsigned n) {
  Pinpool__V1__CacheAlloc a = PINPOOL__V1__CACHE_ALLOC__INIT;
  a.cache_id = k->id;
  a.count = n;
  a.pool = k->pool;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(k->c, PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC, &a.base,
                      PINPOOL__V1__RESPONSE__BODY_OBJECTS, &resp);
  if (rc < 0) return rc;
  const Pinpool__V1__Objects *ob = resp->objects;
  if (ob->n_offsets == 0 || ob->n_offsets > n) {
    rc = PP_EPROTO;
    goto out;
  }
  bool layout_ok = true;
  for (size_t i = 0; i < ob->n_offsets; i++) {
    if (ob->offsets[i] >= k->region_size) {
      rc = PP_EPROTO;
      goto out;
    }
    ptrs[i] = k->base + ob->offsets[i];
    layout_ok = layout_ok && client_obj_valid(k, ptrs[i]);
  }
  /* The exact boundary check in pp_cache_free rests on the slab size: announced by the
   * daemon, or inferred for an older one (slab_bytes_inferred).  Should the daemon ever
   * hand out an object the check calls invalid, the check's premise is wrong, not the
   * object: fall back to checking alignment only, so that a valid free is never
   * refused. */
  if (!layout_ok) atomic_store_explicit(&k->slab_bytes, 0, memory_order_relaxed);
  rc = (int)ob->n_offsets;
out:
  frame_free_response(resp);
  return rc;
}

static int client_cache_return_batch(pp_cache *k, void *const *ptrs, unsigned n) {
  uint64_t offs[PROTO_OBJECTS_MAX];
  if (n == 0) return 0;
  if (n > PROTO_OBJECTS_MAX) return PP_ERANGE;
  for (unsigned i = 0; i < n; i++)
    offs[i] = (uint64_t)((uint8_t *)ptrs[i] - k->base);
  Pinpool__V1__CacheFree f = PINPOOL__V1__CACHE_FREE__INIT;
  f.cache_id = k->id;
  f.pool = k->pool;
  f.n_offsets = n;
  f.offsets = offs;
  Pinpool__V1__Response *resp;
  int rc = client_rpc(k->c, PINPOOL__V1__REQUEST__BODY_CACHE_FREE, &f.base,
                      PINPOOL__V1__RESPONSE__BODY__NOT_SET, &resp);
  if (rc < 0) return rc;
  frame_free_response(resp);
  return 0;
}

/* Errors that describe the connection or this process rather than the objects: retrying
 * object by object would only repeat them. */
static bool err_is_transport(int rc) {
  return rc == PP_EIO || rc == PP_EDISCONNECTED || rc == PP_EPROTO || rc == PP_ENOPRIVMEM;
}

int client_cache_return(pp_cache *k, void *const *ptrs, unsigned n) {
  int rc = client_cache_return_batch(k, ptrs, n);
  if (rc == 0 || err_is_transport(rc)) return rc;
  /* The daemon refused the batch as a whole (all or nothing): some object in it is
   * bad — a double free the magazine could not see, or a foreign object.  Return the
   * rest one by one so that only the bad ones stay out; the first error is what the
   * caller hears about. */
  int first = rc;
  for (unsigned i = 0; i < n; i++) {
    rc = client_cache_return_batch(k, &ptrs[i], 1);
    if (rc < 0 && err_is_transport(rc)) break;
  }
  return first;
}
