/*
 * pool.c — libpinpool's pools other than the default one: attach, map, allocate, look up,
 * free.
 *
 * What: pp_pool_attach sends AttachPool{name} and receives PoolAttached with the pool's
 * memfd (SCM_RIGHTS, with the reply's first byte).  The daemon chose the access from our
 * uid and groups and sent a descriptor to match: read-write for a writer, a read-only
 * re-open for a reader.  The region is mapped MAP_SHARED once — PROT_READ | PROT_WRITE for
 * a writer, PROT_READ alone for a reader (the kernel would refuse more: the descriptor is
 * O_RDONLY) — and the descriptor closed at once, as pp_connect does with the default
 * pool's.  Every request then names the pool by its id (the `pool` field); the daemon's
 * handles carry that id in bits 48..62, so pp_pool_free needs nothing else.
 *
 * Const-correctness: a reader gets only `const` memory — pp_pool_rbase, pp_rbuffer.addr
 * — and the calls that would hand out a writable pointer (pp_pool_base, pp_pool_alloc,
 * pp_pool_lookup) refuse it (NULL, PP_EPERM) before any request.  The daemon refuses a
 * reader's allocations and cache requests on its own (PERMISSION_DENIED): the check here
 * only saves the round trip and keeps the types honest.
 *
 * Restart survival: the daemon journals every pool, and a re-claimed session keeps its
 * attachments.  After a re-claim (reclaim.c, once the interrupted request went out again)
 * pool_reclaimed attaches each pool again and compares what comes back with what the
 * first attach said — the pool id, region_id, size and access, and the memfd's file
 * (st_dev, st_ino) — so that the mapping is known to be of the same memory; a pool that
 * does not match (the daemon started it fresh: its config changed, its stored state was
 * not trusted) is lost, and its calls return PP_ESTATELOST from then on, while the other
 * pools and the default one carry on.
 *
 * Slab caches: pp_pool_cache_open opens a cache in the pool (writers only); the pp_cache
 * it gives works as the default pool's — objects from this thread's magazines, refilled
 * and drained a batch at a time (cmag.c) — with its pointers into the pool's mapping and
 * its requests naming the pool.
 *
 * Not here: the buffer caches (bcache.c) serve the default pool only: pp_pool_alloc and
 * pp_pool_free are each a round trip.
 *
 * Nothing the daemon says is trusted blindly: the memfd must back the announced size,
 * and a buffer's offset and size must lie within the pool's region before a pointer is
 * formed from them.
 *
 * Locks: c->lock guards c->pools (attach, disconnect); a pp_pool is immutable once on the
 * list, so the other calls read it without a lock.
 */
#define _GNU_SOURCE
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static bool has_pools(pp_client *c) {
  return atomic_load_explicit(&c->features, memory_order_relaxed) &
         PINPOOL__V1__FEATURE__FEATURE_POOLS;
}

int pp_pool_attach(pp_client *c, const char *name, pp_pool **ret_pool) {
  Pinpool__V1__AttachPool m = PINPOOL__V1__ATTACH_POOL__INIT;
  Pinpool__V1__Response *resp = NULL;
  const Pinpool__V1__PoolAttached *pa;
  pp_pool *p = NULL;
  struct stat st;
  int fd = -1, rc, prot;

  if (!c || !name || !*name || !ret_pool || !strcmp(name, "default") || strlen(name) >= 64)
    return PP_EINVAL;
  if (!has_pools(c)) return PP_EVERSION;
  m.name = (char *)name;
  rc = client_rpc_fd(c, PINPOOL__V1__REQUEST__BODY_ATTACH_POOL, &m.base,
                     PINPOOL__V1__RESPONSE__BODY_POOL, &resp, &fd);
  if (rc < 0) goto out;
  pa = resp->pool;
  rc = PP_EPROTO;
  if (fd < 0 || pa->pool == 0 || pa->region_size == 0 || pa->region_size > (uint64_t)SIZE_MAX ||
      (pa->access != PINPOOL__V1__POOL_ACCESS__POOL_ACCESS_READ &&
       pa->access != PINPOOL__V1__POOL_ACCESS__POOL_ACCESS_WRITE))
    goto out;
  /* A region the fd cannot back would SIGBUS on first touch. */
  if (fstat(fd, &st) < 0 || (uint64_t)st.st_size < pa->region_size) goto out;
  /* Attached before: the same pp_pool (the daemon kept the one attachment) — unless that
   * one was lost in a restart: then this is a new attachment, mapped anew. */
  pthread_mutex_lock(&c->lock);
  for (pp_pool *q = c->pools; q; q = q->next)
    if (q->id == pa->pool && !atomic_load(&q->lost)) p = q;
  pthread_mutex_unlock(&c->lock);
  if (p) {
    *ret_pool = p;
    rc = 0;
    goto out;
  }
  if (pa->region_id.len > CLIENT_REGION_ID_MAX) goto out;
  if (!(p = calloc(1, sizeof *p))) {
    rc = PP_ENOPRIVMEM;
    goto out;
  }
  p->c = c;
  p->id = pa->pool;
  p->access =
      pa->access == PINPOOL__V1__POOL_ACCESS__POOL_ACCESS_WRITE ? PP_POOL_WRITE : PP_POOL_READ;
  p->region_size = pa->region_size;
  p->page_size = pa->page_size;
  p->min_block = pa->min_block ? pa->min_block : CLIENT_MIN_BLOCK_DEFAULT;
  p->hugepages = pa->hugepages;
  p->phys_known = pa->physical_addresses;
  snprintf(p->name, sizeof p->name, "%s", name);
  memcpy(p->region_id, pa->region_id.data, pa->region_id.len);
  p->region_id_len = pa->region_id.len;
  p->dev = st.st_dev;
  p->ino = st.st_ino;
  prot = p->access == PP_POOL_WRITE ? PROT_READ | PROT_WRITE : PROT_READ;
  p->base = mmap(NULL, (size_t)p->region_size, prot, MAP_SHARED, fd, 0);
  if (p->base == MAP_FAILED) {
    free(p);
    p = NULL;
    rc = PP_EOS;
    goto out;
  }
  pthread_mutex_lock(&c->lock);
  p->next = c->pools;
  c->pools = p;
  pthread_mutex_unlock(&c->lock);
  *ret_pool = p;
  rc = 0;
out:
  if (fd >= 0) close(fd);
  frame_free_response(resp);
  return rc;
}

void pool_reclaimed(pp_client *c) {
  for (pp_pool *p = c->pools; p; p = p->next) {
    Pinpool__V1__AttachPool m = PINPOOL__V1__ATTACH_POOL__INIT;
    Pinpool__V1__Response *resp = NULL;
    const Pinpool__V1__PoolAttached *pa;
    struct stat st;
    int fd = -1, rc;
    bool same;

    if (atomic_load(&p->lost)) continue;
    m.name = p->name;
    rc = rpc_call(&c->rpc, PINPOOL__V1__REQUEST__BODY_ATTACH_POOL, &m.base,
                  PINPOOL__V1__RESPONSE__BODY_POOL, &resp, &fd);
    if (rc < 0 && c->rpc.broken) return; /* the connection failed again: the next call's */
    pa = rc < 0 ? NULL : resp->pool;
    same =
        pa && fd >= 0 && pa->pool == p->id && fstat(fd, &st) == 0 && st.st_dev == p->dev &&
        st.st_ino == p->ino && (uint64_t)st.st_size >= p->region_size &&
        pa->region_size == p->region_size && pa->region_id.len == p->region_id_len &&
        !memcmp(pa->region_id.data, p->region_id, p->region_id_len) &&
        (pa->access == PINPOOL__V1__POOL_ACCESS__POOL_ACCESS_WRITE ? PP_POOL_WRITE
                                                                   : PP_POOL_READ) == p->access;
    if (!same) atomic_store(&p->lost, PP_ESTATELOST);
    if (fd >= 0) close(fd);
    frame_free_response(resp);
  }
}

void pool_fini(pp_client *c) {
  for (pp_pool *p = c->pools, *next; p; p = next) {
    next = p->next;
    munmap(p->base, (size_t)p->region_size);
    free(p);
  }
  c->pools = NULL;
}

const char *pp_pool_name(pp_pool *p) {
  return p ? p->name : NULL;
}
unsigned pp_pool_access(pp_pool *p) {
  return p ? p->access : 0;
}
uint64_t pp_pool_region_size(pp_pool *p) {
  return p ? p->region_size : 0;
}
uint64_t pp_pool_page_size(pp_pool *p) {
  return p ? p->page_size : 0;
}
bool pp_pool_hugepages(pp_pool *p) {
  return p && p->hugepages;
}
bool pp_pool_phys_known(pp_pool *p) {
  return p && p->phys_known;
}
void *pp_pool_base(pp_pool *p) {
  return p && p->access == PP_POOL_WRITE ? p->base : NULL;
}
const void *pp_pool_rbase(pp_pool *p) {
  return p ? p->base : NULL;
}

/* A Buffer reply checked against the pool's region. */
static int buffer_check(const pp_pool *p, const Pinpool__V1__Buffer *b) {
  if (b->size == 0 || b->offset >= p->region_size || b->size > p->region_size - b->offset)
    return PP_EPROTO;
  return 0;
}

int pp_pool_alloc(pp_pool *p, const char *name, uint64_t size, unsigned flags, pp_buffer *ret) {
  Pinpool__V1__Alloc a = PINPOOL__V1__ALLOC__INIT;
  Pinpool__V1__Response *resp;
  int rc;

  if (!p || !ret || size == 0 || (flags & ~(PP_CONTIGUOUS | PP_ZERO)) != 0) return PP_EINVAL;
  if (p->access != PP_POOL_WRITE) return PP_EPERM;
  if ((rc = atomic_load(&p->lost))) return rc;
  a.size = size;
  a.flags = flags;
  a.name = (char *)name;
  a.pool = p->id;
  rc = client_rpc(p->c, PINPOOL__V1__REQUEST__BODY_ALLOC, &a.base,
                  PINPOOL__V1__RESPONSE__BODY_BUFFER, &resp);
  if (rc < 0) return rc;
  if (!(rc = buffer_check(p, resp->buffer))) {
    ret->handle = resp->buffer->handle;
    ret->offset = resp->buffer->offset;
    ret->size = resp->buffer->size;
    ret->phys = resp->buffer->phys_addr;
    ret->contiguous = resp->buffer->contiguous;
    ret->addr = p->base + resp->buffer->offset;
  }
  frame_free_response(resp);
  return rc;
}

static int lookup(pp_pool *p, const char *name, pp_rbuffer *ret) {
  Pinpool__V1__Lookup l = PINPOOL__V1__LOOKUP__INIT;
  Pinpool__V1__Response *resp;
  int rc;

  if (!p || !name || !*name || !ret) return PP_EINVAL;
  if ((rc = atomic_load(&p->lost))) return rc;
  l.name = (char *)name;
  l.pool = p->id;
  rc = client_rpc(p->c, PINPOOL__V1__REQUEST__BODY_LOOKUP, &l.base,
                  PINPOOL__V1__RESPONSE__BODY_BUFFER, &resp);
  if (rc < 0) return rc;
  if (!(rc = buffer_check(p, resp->buffer))) {
    ret->handle = resp->buffer->handle;
    ret->offset = resp->buffer->offset;
    ret->size = resp->buffer->size;
    ret->phys = resp->buffer->phys_addr;
    ret->contiguous = resp->buffer->contiguous;
    ret->addr = p->base + resp->buffer->offset;
  }
  frame_free_response(resp);
  return rc;
}

int pp_pool_rlookup(pp_pool *p, const char *name, pp_rbuffer *ret) {
  return lookup(p, name, ret);
}

int pp_pool_lookup(pp_pool *p, const char *name, pp_buffer *ret) {
  pp_rbuffer rb;
  int rc;
  if (!p || !ret) return PP_EINVAL;
  if (p->access != PP_POOL_WRITE) return PP_EPERM;
  if ((rc = lookup(p, name, &rb))) return rc;
  ret->handle = rb.handle;
  ret->offset = rb.offset;
  ret->size = rb.size;
  ret->phys = rb.phys;
  ret->contiguous = rb.contiguous;
  ret->addr = p->base + rb.offset; /* a writer's mapping is writable */
  return 0;
}

int pp_pool_cache_open(pp_pool *p, const char *name, uint32_t object_size, uint32_t align,
                       pp_cache **ret_cache) {
  int rc;
  if (!p) return PP_EINVAL;
  if (p->access != PP_POOL_WRITE) return PP_EPERM;
  if ((rc = atomic_load(&p->lost))) return rc;
  return client_cache_open(p->c, p->id, p->base, p->region_size, p->min_block, name,
                           object_size, align, ret_cache);
}

int pp_pool_free(pp_pool *p, uint64_t handle) {
  Pinpool__V1__Free f = PINPOOL__V1__FREE__INIT;
  Pinpool__V1__Response *resp;
  int rc;

  if (!p) return PP_EINVAL;
  if ((rc = atomic_load(&p->lost))) return rc;
  f.handle = handle;
  f.pool = p->id;
  rc = client_rpc(p->c, PINPOOL__V1__REQUEST__BODY_FREE, &f.base,
                  PINPOOL__V1__RESPONSE__BODY__NOT_SET, &resp);
  if (rc < 0) return rc;
  frame_free_response(resp);
  return 0;
}
