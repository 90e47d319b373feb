/*
 * pool.c — pinpoold's request handlers over shm/: buffers from the buddy allocator,
 * objects from slab caches through daemon-side magazines, all owned by sessions.
 *
 * What a client can hold:
 *   - a *buffer*: one buddy block, named by a 64-bit handle that is never reused within a
 *     daemon's lifetime (a stale handle can only miss, never hit someone else's block).
 *     alloc rounds the size up to a block and answers with the block's real size.  A
 *     buffer may be *published* under a name; lookup takes a reference to it.  Each holding
 *     session counts its references (alloc = 1, each lookup +1); free drops one.  The block
 *     goes back to the buddy when the last reference of the last holder goes, and its name
 *     goes with it.
 *   - *objects* of a slab cache: served by a mag_cpu_t that the loop thread owns in front
 *     of the cache's depot (Bonwick & Adams 2001), so a cache_alloc of a batch mostly
 *     moves offsets between arrays.  Every object a session holds is in its objs map and
 *     in obj_owner, so cache_free can accept exactly the session's own objects and a dead
 *     session's objects can all be returned.
 *
 * Rules:
 *   - a request that fails leaves every piece of state as it was: each handler validates
 *     everything first and only then changes anything (cache_free is all-or-nothing and
 *     names the first bad offset);
 *   - a session cannot free what it does not hold: PERMISSION_DENIED when someone else
 *     holds it, NOT_FOUND when nobody does (including "already freed");
 *   - quota: the pinned bytes (blocks + object sizes) charged to a uid never exceed
 *     --quota; a buffer is charged to the uid that allocated it until the block returns;
 *   - per-session buffer references never exceed --max-buffers;
 *   - CONTIGUOUS is decided by the buddy with region_is_contiguous as its oracle: blocks no
 *     larger than a page are contiguous by alignment; larger ones need known, consecutive
 *     physical pages, else NO_CONTIGUOUS_MEMORY.
 *   - disconnect: pool_session_release() returns everything at once.  Objects go straight
 *     to their slabs, and the caches the session used are drained and shrunk, so that
 *     after a crash the buddy's free bytes return to their value from before the client
 *     came (what an operator checks), at the price of re-growing slabs for the next user.
 *
 * Invariants (pool_check, run after every state change at PP_DEBUG=3):
 *   sum over sessions of holds' counts == their buf_refs; every held handle is live and
 *   lists the session among its holders, and every holder holds it; obj_owner has exactly
 *   the union of the sessions' objs; each cache's held == objects mapped to it, and the
 *   magazine layer conserves objects (mag_check); uid_bytes sum == buffer bytes + held
 *   object bytes; plus buddy_check and slab_check.
 *
 * Restart survival: the claim list a restarted daemon needs is exactly
 * by_handle (offset, order, name, owner uid, holders) and each session's objs (offset,
 * cache), keyed by session token.  Rebuilding is buddy_reserve() for each buffer block,
 * cache_open for each cache and the slab blocks re-taken for each claimed object; nothing
 * here depends on state that cannot be rebuilt from those claims.
 *
 * Locks: none of our own.  Only the loop thread calls in; shm/ takes its internal locks
 * (depot, then cache, then buddy) below us.
 *
 * References: Knowlton 1965 / Knuth TAOCP 2.5 (buddy); Bonwick 1994 (slab);
 * Bonwick & Adams 2001 (magazines).
 */
#include "pool_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "debug.h"
#include "frame.h"
#include "log.h"

typedef Pinpool__V1__Response resp_t;

uint64_t pool_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h == U64MAP_EMPTY ? h - 1 : h;
}

/* ---- replies ------------------------------------------------------------------------ */

static int reply(resp_t *resp, arena_t *a, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int reply(resp_t *resp, arena_t *a, int rc, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  resp->status = (Pinpool__V1__Status)(-rc);
  resp->message = arena_strdup(a, msg);
  if (!resp->message) resp->message = (char *)"";
  return rc;
}

static int reply_nomem(resp_t *resp, arena_t *a) {
  return reply(resp, a, PP_EINTERNAL, "daemon out of private memory");
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static bool pool_contig_cb(void *ctx, uint64_t offset, uint64_t len) {
  return region_is_contiguous(ctx, offset, len);
}

int pool_create(const pool_config_t *cfg, pool_t **ret) {
  region_config_t rc = {.size = cfg->size,
                        .policy = cfg->policy,
                        .name = "pinpool",
                        .log = log_region_cb,
                        .log_ctx = NULL};
  pool_t *p = calloc(1, sizeof *p);
  int err;

  if (!p) return PP_ENOMEM;
  p->cfg = *cfg;
  p->next_handle = 1;
  p->started_ms = pool_now_ms();
  u64map_init(&p->by_handle);
  u64map_init(&p->by_offset);
  u64map_init(&p->by_name);
  u64map_init(&p->uid_bytes);
  u64map_init(&p->obj_owner);
  u64map_init(&p->caches);

  err = region_create(&rc, &p->region);
  if (err) goto fail;
  err = buddy_create(region_size(p->region), region_page_size(p->region), pool_contig_cb,
                     p->region, &p->buddy);
  if (err) goto fail;
  err = slab_create(p->buddy, &p->slab);
  if (err) goto fail;
  if (region_phys_known(p->region)) {
    size_t n = region_runs(p->region, NULL, 0);
    if (n) {
      p->runs = calloc(n, sizeof *p->runs);
      if (!p->runs) {
        err = PP_ENOMEM;
        goto fail;
      }
      p->nruns = region_runs(p->region, p->runs, n);
      if (p->nruns > n) p->nruns = n;
    }
  }
  *ret = p;
  return 0;
fail:
  pool_destroy(p);
  return err;
}

void pool_destroy(pool_t *p) {
  size_t it = 0;
  uint64_t k, v;

  if (!p) return;
  PP_ASSERT(p->sessions == NULL);
  while (u64map_next(&p->by_handle, &it, &k, &v)) {
    pbuf_t *b = (pbuf_t *)(uintptr_t)v;
    free(b->name);
    free(b->holders);
    free(b);
  }
  for (size_t i = 0; i < p->ncaches; i++) {
    pcache_t *c = p->cache_list[i];
    if (c->mag) mag_cpu_destroy(c->mag);
    if (c->depot) mag_depot_destroy(c->depot);
    free(c);
  }
  free(p->cache_list);
  if (p->slab) slab_destroy(p->slab);
  if (p->buddy) buddy_destroy(p->buddy);
  if (p->region) region_destroy(p->region);
  free(p->runs);
  u64map_fini(&p->by_handle);
  u64map_fini(&p->by_offset);
  u64map_fini(&p->by_name);
  u64map_fini(&p->uid_bytes);
  u64map_fini(&p->obj_owner);
  u64map_fini(&p->caches);
  free(p);
}

const region_t *pool_region(const pool_t *p) {
  return p->region;
}
uint32_t pool_nr_sessions(const pool_t *p) {
  return p->nsessions;
}

uint64_t pool_free_bytes(pool_t *p) {
  buddy_stats_t st;
  buddy_get_stats(p->buddy, &st);
  return st.free_bytes;
}

pcache_t *pool_cache_by_id(pool_t *p, uint32_t id) {
  uint64_t v;
  return u64map_get(&p->caches, id, &v) ? (pcache_t *)(uintptr_t)v : NULL;
}

void pool_session_add(pool_t *p, session_t *s) {
  s->prev = NULL;
  s->next = p->sessions;
  if (p->sessions) p->sessions->prev = s;
  p->sessions = s;
  p->nsessions++;
}

/* ---- quota -------------------------------------------------------------------------- */

static uint64_t uid_charged(pool_t *p, uid_t uid) {
  uint64_t v = 0;
  u64map_get(&p->uid_bytes, uid, &v);
  return v;
}

static bool quota_allows(pool_t *p, uid_t uid, uint64_t bytes) {
  uint64_t have = uid_charged(p, uid);
  return !p->cfg.quota || (bytes <= p->cfg.quota && have <= p->cfg.quota - bytes);
}

/* Only ever called after quota_allows() or to uncharge; the key exists or 0 is stored. */
static int quota_charge(pool_t *p, uid_t uid, uint64_t bytes) {
  return u64map_put(&p->uid_bytes, uid, uid_charged(p, uid) + bytes);
}

static void quota_uncharge(pool_t *p, uid_t uid, uint64_t bytes) {
  uint64_t have = uid_charged(p, uid);
  PP_IASSERT(have >= bytes);
  if (have <= bytes)
    u64map_del(&p->uid_bytes, uid);
  else
    u64map_put(&p->uid_bytes, uid, have - bytes); /* key exists: cannot fail */
}

/* ---- buffers ------------------------------------------------------------------------ */

static pbuf_t *buf_by_name(pool_t *p, const char *name) {
  uint64_t v;
  if (!u64map_get(&p->by_name, name_hash(name), &v)) return NULL;
  for (pbuf_t *b = (pbuf_t *)(uintptr_t)v; b; b = b->name_next)
    if (!strcmp(b->name, name)) return b;
  return NULL;
}

static pbuf_t *buf_by_handle(pool_t *p, uint64_t handle) {
  uint64_t v;
  return u64map_get(&p->by_handle, handle, &v) ? (pbuf_t *)(uintptr_t)v : NULL;
}

static void buf_unpublish(pool_t *p, pbuf_t *b) {
  uint64_t v;
  pbuf_t **pp, *head;
  if (!b->name || !u64map_get(&p->by_name, b->name_hash, &v)) return;
  head = (pbuf_t *)(uintptr_t)v;
  for (pp = &head; *pp; pp = &(*pp)->name_next)
    if (*pp == b) {
      *pp = b->name_next;
      break;
    }
  if (head)
    u64map_put(&p->by_name, b->name_hash, (uint64_t)(uintptr_t)head); /* exists: no alloc */
  else
    u64map_del(&p->by_name, b->name_hash);
}

/* The last holder went: the block returns to the buddy and the name is forgotten. */
static void buf_release(pool_t *p, pbuf_t *b) {
  int rc;
  PP_IASSERT(b->nholders == 0);
  buf_unpublish(p, b);
  u64map_del(&p->by_handle, b->handle);
  u64map_del(&p->by_offset, b->offset);
  if (p->cfg.zero_on_free) memset((char *)region_base(p->region) + b->offset, 0, b->size);
  rc = buddy_free(p->buddy, b->offset);
  if (rc)
    log_err("buddy_free(%" PRIu64 ") of buffer %" PRIu64 ": %s", b->offset, b->handle,
            pp_strerror(rc));
  quota_uncharge(p, b->owner_uid, b->size);
  p->buf_bytes -= b->size;
  p->nbufs--;
  free(b->name);
  free(b->holders);
  free(b);
}

/* One more reference by s.  Fails only for private memory, leaving state unchanged. */
static int buf_hold(pool_t *p, session_t *s, pbuf_t *b) {
  uint64_t n = 0;
  bool had = u64map_get(&s->holds, b->handle, &n);
  if (!had && b->nholders == b->holders_cap) {
    uint32_t cap = b->holders_cap ? b->holders_cap * 2 : 2;
    session_t **h = realloc(b->holders, cap * sizeof *h);
    if (!h) return PP_ENOMEM;
    b->holders = h;
    b->holders_cap = cap;
  }
  if (u64map_put(&s->holds, b->handle, n + 1)) return PP_ENOMEM;
  if (!had) {
    b->holders[b->nholders++] = s;
    s->buf_bytes += b->size;
  }
  s->buf_refs++;
  return 0;
}

/* Drop refs references of s (all it has when refs == 0); releases the block with the
 * last holder. */
static void buf_unhold(pool_t *p, session_t *s, pbuf_t *b, uint64_t refs) {
  uint64_t n = 0;
  u64map_get(&s->holds, b->handle, &n);
  PP_IASSERT(n > 0);
  if (refs == 0 || refs > n) refs = n;
  s->buf_refs -= refs;
  if (n > refs) {
    u64map_put(&s->holds, b->handle, n - refs); /* key exists: no alloc */
    return;
  }
  u64map_del(&s->holds, b->handle);
  s->buf_bytes -= b->size;
  for (uint32_t i = 0; i < b->nholders; i++)
    if (b->holders[i] == s) {
      b->holders[i] = b->holders[--b->nholders];
      break;
    }
  if (b->nholders == 0) buf_release(p, b);
}

static uint64_t buf_phys(pool_t *p, uint64_t offset) {
  uint64_t phys = 0;
  if (region_phys(p->region, offset, &phys)) phys = 0;
  return phys;
}

static int fill_buffer(pool_t *p, pbuf_t *b, resp_t *resp, arena_t *a) {
  Pinpool__V1__Buffer *m = arena_alloc(a, sizeof *m);
  size_t lo = 0, hi = p->nruns, first, n = 0;
  uint64_t end = b->offset + b->size;

  if (!m) return reply_nomem(resp, a);
  pinpool__v1__buffer__init(m);
  m->handle = b->handle;
  m->offset = b->offset;
  m->size = b->size;
  m->phys_addr = b->phys;
  m->contiguous = b->contiguous;
  if (b->name) m->name = b->name; /* lives until after packing: nothing frees it before */
  /* Runs intersecting [offset, end): binary search for the first run ending after offset. */
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (p->runs[mid].offset + p->runs[mid].length <= b->offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  first = lo;
  while (first + n < p->nruns && p->runs[first + n].offset < end)
    n++;
  if (n) {
    m->segments = arena_alloc(a, n * sizeof *m->segments);
    Pinpool__V1__Segment *seg = arena_alloc(a, n * sizeof *seg);
    if (!m->segments || !seg) return reply_nomem(resp, a);
    for (size_t i = 0; i < n; i++) {
      const region_run_t *r = &p->runs[first + i];
      uint64_t s0 = r->offset > b->offset ? r->offset : b->offset;
      uint64_t e0 = r->offset + r->length < end ? r->offset + r->length : end;
      pinpool__v1__segment__init(&seg[i]);
      seg[i].offset = s0;
      seg[i].phys_addr = r->phys + (s0 - r->offset);
      seg[i].length = e0 - s0;
      m->segments[i] = &seg[i];
    }
    m->n_segments = n;
  }
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_BUFFER;
  resp->buffer = m;
  return 0;
}

static bool buffer_limit_reached(pool_t *p, session_t *s) {
  return p->cfg.max_buffers && s->buf_refs >= p->cfg.max_buffers;
}

static int do_alloc(pool_t *p, session_t *s, const Pinpool__V1__Alloc *m, resp_t *resp,
                    arena_t *a) {
  const unsigned known =
      PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_CONTIGUOUS | PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_ZERO;
  const char *name = (m->name && m->name[0]) ? m->name : NULL;
  unsigned order;
  uint64_t offset, bsize;
  pbuf_t *b;
  int rc;

  if (m->flags & ~known)
    return reply(resp, a, PP_EINVAL, "unknown alloc flags 0x%x", m->flags & ~known);
  if (m->size == 0) return reply(resp, a, PP_EINVAL, "size 0");
  if (name && strlen(name) > POOL_NAME_MAX)
    return reply(resp, a, PP_EINVAL, "name longer than %u bytes", POOL_NAME_MAX);
  if (name && session_utf8_prefix(name, POOL_NAME_MAX) != strlen(name))
    return reply(resp, a, PP_EINVAL, "name is not valid UTF-8");
  if (m->size > region_size(p->region) || buddy_order_for_size(m->size, &order))
    return reply(resp, a, PP_ERANGE, "size %" PRIu64 " exceeds the region (%" PRIu64 " bytes)",
                 m->size, region_size(p->region));
  bsize = buddy_order_size(order);
  if (name && buf_by_name(p, name))
    return reply(resp, a, PP_EEXIST, "a buffer named '%s' is already published", name);
  if (buffer_limit_reached(p, s))
    return reply(resp, a, PP_ELIMIT,
                 "this session already holds %" PRIu64 " buffers (limit %u)", s->buf_refs,
                 p->cfg.max_buffers);
  if (!quota_allows(p, s->uid, bsize))
    return reply(resp, a, PP_EQUOTA,
                 "uid %u has %" PRIu64 " bytes pinned; %" PRIu64 " more exceeds quota %" PRIu64,
                 (unsigned)s->uid, uid_charged(p, s->uid), bsize, p->cfg.quota);

  rc = buddy_alloc(
      p->buddy, order,
      (m->flags & PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_CONTIGUOUS) ? BUDDY_CONTIG : 0, &offset);
  if (rc == PP_ENOCONTIG)
    return reply(resp, a, rc, "no physically contiguous block of %" PRIu64 " bytes%s", bsize,
                 !region_phys_known(p->region)  ? " (physical addresses unknown)"
                 : !region_hugepages(p->region) ? " (no hugepages)"
                                                : "");
  if (rc == PP_ENOMEM) return reply(resp, a, rc, "no free block of %" PRIu64 " bytes", bsize);
  if (rc == PP_ERANGE)
    return reply(resp, a, rc, "size %" PRIu64 " exceeds the largest block", m->size);
  if (rc) return reply(resp, a, rc, "buddy_alloc: %s", pp_strerror(rc));

  b = calloc(1, sizeof *b);
  if (!b) goto nomem_block;
  b->handle = p->next_handle;
  b->offset = offset;
  b->size = bsize;
  b->order = order;
  b->owner_uid = s->uid;
  b->phys = buf_phys(p, offset);
  b->contiguous =
      bsize <= region_page_size(p->region) || region_is_contiguous(p->region, offset, bsize);
  if (name) {
    b->name = strdup(name);
    if (!b->name) goto nomem_buf;
    b->name_hash = name_hash(name);
  }
  if (u64map_put(&p->by_handle, b->handle, (uint64_t)(uintptr_t)b)) goto nomem_buf;
  if (u64map_put(&p->by_offset, offset, (uint64_t)(uintptr_t)b)) goto nomem_handle;
  if (quota_charge(p, s->uid, bsize)) goto nomem_offset;
  if (buf_hold(p, s, b)) goto nomem_quota;
  p->next_handle++;
  p->buf_bytes += bsize;
  p->nbufs++;
  if (name) {
    uint64_t v = 0;
    u64map_get(&p->by_name, b->name_hash, &v);
    b->name_next = (pbuf_t *)(uintptr_t)v;
    if (u64map_put(&p->by_name, b->name_hash, (uint64_t)(uintptr_t)b)) {
      b->name_next = NULL;
      buf_unhold(p, s, b, 0); /* releases everything above, block included */
      return reply_nomem(resp, a);
    }
  }
  if (m->flags & PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_ZERO)
    memset((char *)region_base(p->region) + offset, 0, bsize);
  return fill_buffer(p, b, resp, a);

nomem_quota:
  quota_uncharge(p, s->uid, bsize);
nomem_offset:
  u64map_del(&p->by_offset, offset);
nomem_handle:
  u64map_del(&p->by_handle, b->handle);
nomem_buf:
  free(b->name);
  free(b);
nomem_block:
  buddy_free(p->buddy, offset);
  return reply_nomem(resp, a);
}

/* Why a handle this session does not hold is refused. */
static int refuse_handle(pool_t *p, uint64_t handle, resp_t *resp, arena_t *a) {
  if (buf_by_handle(p, handle))
    return reply(resp, a, PP_EPERM, "buffer %" PRIu64 " is not held by this session", handle);
  if (handle > 0 && handle < p->next_handle)
    return reply(resp, a, PP_ENOENT, "buffer %" PRIu64 " was already freed", handle);
  return reply(resp, a, PP_ENOENT, "no buffer with handle %" PRIu64, handle);
}

static int do_free(pool_t *p, session_t *s, const Pinpool__V1__Free *m, resp_t *resp,
                   arena_t *a) {
  pbuf_t *b;
  if (!u64map_get(&s->holds, m->handle, NULL)) return refuse_handle(p, m->handle, resp, a);
  b = buf_by_handle(p, m->handle);
  PP_ASSERT(b != NULL);
  buf_unhold(p, s, b, 1);
  return 0;
}

static int do_lookup(pool_t *p, session_t *s, const Pinpool__V1__Lookup *m, resp_t *resp,
                     arena_t *a) {
  pbuf_t *b;
  if (!m->name || !m->name[0]) return reply(resp, a, PP_EINVAL, "lookup needs a name");
  b = buf_by_name(p, m->name);
  if (!b)
    return reply(resp, a, PP_ENOENT, "no buffer named '%.*s'", (int)POOL_NAME_MAX, m->name);
  if (buffer_limit_reached(p, s))
    return reply(resp, a, PP_ELIMIT,
                 "this session already holds %" PRIu64 " buffers (limit %u)", s->buf_refs,
                 p->cfg.max_buffers);
  if (buf_hold(p, s, b)) return reply_nomem(resp, a);
  return fill_buffer(p, b, resp, a);
}

/* ---- caches and objects --------------------------------------------------------------- */

static int cache_adopt(pool_t *p, slab_cache_t *c, pcache_t **ret) {
  slab_info_t info;
  pcache_t *pc;
  int rc;

  slab_cache_info(c, &info);
  if ((pc = pool_cache_by_id(p, info.id))) {
    *ret = pc;
    return 0;
  }
  if (p->ncaches == p->caches_cap) {
    size_t cap = p->caches_cap ? p->caches_cap * 2 : 8;
    pcache_t **l = realloc(p->cache_list, cap * sizeof *l);
    if (!l) return PP_ENOMEM;
    p->cache_list = l;
    p->caches_cap = cap;
  }
  pc = calloc(1, sizeof *pc);
  if (!pc) return PP_ENOMEM;
  pc->cache = c;
  pc->id = info.id;
  pc->object_size = info.object_size;
  pc->align = info.align;
  pc->objs_per_slab = info.objs_per_slab;
  pc->slab_bytes = (uint64_t)info.pages_per_slab * BUDDY_MIN_SIZE;
  snprintf(pc->name, sizeof pc->name, "%s", info.name);
  rc = mag_depot_create(c, 0, false, &pc->depot);
  if (!rc) rc = mag_cpu_create(pc->depot, &pc->mag);
  if (!rc) rc = u64map_put(&p->caches, pc->id, (uint64_t)(uintptr_t)pc);
  if (rc) {
    if (pc->mag) mag_cpu_destroy(pc->mag);
    if (pc->depot) mag_depot_destroy(pc->depot);
    free(pc);
    return rc;
  }
  p->cache_list[p->ncaches++] = pc;
  *ret = pc;
  return 0;
}

static int do_cache_open(pool_t *p, const Pinpool__V1__CacheOpen *m, resp_t *resp, arena_t *a) {
  Pinpool__V1__CacheInfo *ci;
  slab_cache_t *c;
  pcache_t *pc;
  int rc;

  if (!m->name || !m->name[0] || strlen(m->name) >= SLAB_NAME_MAX)
    return reply(resp, a, PP_EINVAL, "a cache name has 1 to %u bytes", SLAB_NAME_MAX - 1);
  if (session_utf8_prefix(m->name, SLAB_NAME_MAX) != strlen(m->name))
    return reply(resp, a, PP_EINVAL, "cache name is not valid UTF-8");
  if (m->align & (m->align - 1))
    return reply(resp, a, PP_EINVAL, "align %u is not a power of two", m->align);
  rc = slab_cache_create(p->slab, m->name, m->object_size, m->align, &c);
  if (rc == PP_EGEOMETRY)
    return reply(resp, a, rc, "cache '%s' exists with another object size or alignment",
                 m->name);
  if (rc == PP_ERANGE) return reply(resp, a, rc, "object size %u out of range", m->object_size);
  if (rc) return reply(resp, a, rc, "cache '%s': %s", m->name, pp_strerror(rc));
  if (cache_adopt(p, c, &pc)) return reply_nomem(resp, a);
  ci = arena_alloc(a, sizeof *ci);
  if (!ci) return reply_nomem(resp, a);
  pinpool__v1__cache_info__init(ci);
  ci->cache_id = pc->id;
  ci->object_size = pc->object_size;
  ci->align = pc->align;
  ci->objects_per_slab = pc->objs_per_slab;
  ci->slab_bytes = pc->slab_bytes;
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_CACHE;
  resp->cache = ci;
  return 0;
}

static int do_cache_alloc(pool_t *p, session_t *s, const Pinpool__V1__CacheAlloc *m,
                          resp_t *resp, arena_t *a) {
  pcache_t *pc = pool_cache_by_id(p, m->cache_id);
  Pinpool__V1__Objects *o;
  uint64_t *offs, bytes;
  unsigned got = 0, put = 0;
  bool slab_failed = false;
  int rc = 0;

  if (!pc) return reply(resp, a, PP_ENOENT, "no cache with id %u", m->cache_id);
  if (m->count == 0 || m->count > PROTO_OBJECTS_MAX)
    return reply(resp, a, PP_ERANGE, "count %u outside 1..%u", m->count, PROTO_OBJECTS_MAX);
  bytes = (uint64_t)m->count * pc->object_size;
  if (!quota_allows(p, s->uid, bytes))
    return reply(resp, a, PP_EQUOTA,
                 "uid %u has %" PRIu64 " bytes pinned; %" PRIu64 " more exceeds quota %" PRIu64,
                 (unsigned)s->uid, uid_charged(p, s->uid), bytes, p->cfg.quota);
  o = arena_alloc(a, sizeof *o);
  offs = arena_alloc(a, m->count * sizeof *offs);
  if (!o || !offs) return reply_nomem(resp, a);

  for (; got < m->count; got++)
    if ((rc = mag_alloc(pc->mag, &offs[got]))) break;
  if (rc) {
    slab_failed = true;
    goto undo;
  }
  for (; put < got; put++) {
    if ((rc = u64map_put(&s->objs, offs[put], pc->id))) break;
    if ((rc = u64map_put(&p->obj_owner, offs[put], s->id))) {
      u64map_del(&s->objs, offs[put]);
      break;
    }
  }
  if (rc) goto undo;
  if ((rc = quota_charge(p, s->uid, bytes))) goto undo;

  pc->held += got;
  s->obj_bytes += bytes;
  p->obj_bytes += bytes;
  pinpool__v1__objects__init(o);
  o->offsets = offs;
  o->n_offsets = got;
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_OBJECTS;
  resp->objects = o;
  return 0;

undo:
  for (unsigned i = 0; i < put; i++) {
    u64map_del(&s->objs, offs[i]);
    u64map_del(&p->obj_owner, offs[i]);
  }
  for (unsigned i = 0; i < got; i++)
    mag_free(pc->mag, offs[i]);
  if (slab_failed)
    return reply(resp, a, PP_ENOMEM, "cache '%s': no memory for %u objects", pc->name,
                 m->count);
  return reply_nomem(resp, a);
}

static int do_cache_free(pool_t *p, session_t *s, const Pinpool__V1__CacheFree *m, resp_t *resp,
                         arena_t *a) {
  pcache_t *pc = pool_cache_by_id(p, m->cache_id);
  u64map_t seen;
  int rc = 0;

  if (!pc) return reply(resp, a, PP_ENOENT, "no cache with id %u", m->cache_id);
  u64map_init(&seen);
  /* Validate everything first: all or nothing. */
  for (size_t i = 0; i < m->n_offsets && !rc; i++) {
    uint64_t off = m->offsets[i], cid, owner;
    if (!u64map_get(&s->objs, off, &cid)) {
      if (u64map_get(&p->obj_owner, off, &owner))
        rc = reply(resp, a, PP_EPERM,
                   "offset %" PRIu64 " (index %zu) is held by another session", off, i);
      else
        rc = reply(resp, a, PP_ENOENT,
                   "offset %" PRIu64 " (index %zu) is not an object held in cache '%s'", off, i,
                   pc->name);
    } else if (cid != pc->id) {
      rc = reply(resp, a, PP_EINVAL,
                 "offset %" PRIu64 " (index %zu) belongs to cache %" PRIu64 ", not %u", off, i,
                 cid, pc->id);
    } else if (m->n_offsets > 1) {
      if (u64map_get(&seen, off, NULL))
        rc = reply(resp, a, PP_EDOUBLEFREE, "offset %" PRIu64 " (index %zu) appears twice", off,
                   i);
      else if (u64map_put(&seen, off, 1))
        rc = reply_nomem(resp, a);
    }
  }
  u64map_fini(&seen);
  if (rc) return rc;

  for (size_t i = 0; i < m->n_offsets; i++) {
    uint64_t off = m->offsets[i];
    u64map_del(&s->objs, off);
    u64map_del(&p->obj_owner, off);
    if (p->cfg.zero_on_free) memset((char *)region_base(p->region) + off, 0, pc->object_size);
    mag_free(pc->mag, off);
  }
  pc->held -= m->n_offsets;
  s->obj_bytes -= (uint64_t)m->n_offsets * pc->object_size;
  p->obj_bytes -= (uint64_t)m->n_offsets * pc->object_size;
  quota_uncharge(p, s->uid, (uint64_t)m->n_offsets * pc->object_size);
  return 0;
}

/* ---- admin ------------------------------------------------------------------------------ */

static int do_stats(pool_t *p, session_t *s, const Pinpool__V1__StatsRequest *m, resp_t *resp,
                    arena_t *a) {
  Pinpool__V1__Stats *st;
  if (!s->admin) return reply(resp, a, PP_EPERM, "stats needs root or the admin group");
  if (stats_build(p, m, &st, a)) return reply_nomem(resp, a);
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_STATS;
  resp->stats = st;
  return 0;
}

static uint64_t pool_slab_count(pool_t *p) {
  uint64_t n = 0;
  for (size_t i = 0; i < p->ncaches; i++) {
    slab_info_t info;
    slab_cache_info(p->cache_list[i]->cache, &info);
    n += info.num_slabs;
  }
  return n;
}

static int do_shrink(pool_t *p, session_t *s, resp_t *resp, arena_t *a) {
  Pinpool__V1__ShrinkResult *r;
  uint64_t before = pool_free_bytes(p), drained = 0, slabs = 0;

  if (!s->admin) return reply(resp, a, PP_EPERM, "shrink needs root or the admin group");
  r = arena_alloc(a, sizeof *r);
  if (!r) return reply_nomem(resp, a);
  /* Count slabs before and after: the drain itself releases slabs that become empty
   * beyond the slab layer's keep limit, which slab_shrink()'s count does not see. */
  slabs = pool_slab_count(p);
  for (size_t i = 0; i < p->ncaches; i++) {
    int n = mag_drain(p->cache_list[i]->depot, p->cache_list[i]->mag);
    if (n > 0) drained += (uint64_t)n;
  }
  (void)slab_shrink(p->slab);
  slabs -= pool_slab_count(p);
  pinpool__v1__shrink_result__init(r);
  r->objects_drained = drained;
  r->slabs_released = slabs;
  r->bytes_released = pool_free_bytes(p) - before;
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_SHRINK;
  resp->shrink = r;
  log_info("shrink by session %" PRIu64 ": %" PRIu64 " objects drained, %" PRIu64
           " slabs (%" PRIu64 " bytes) released",
           s->id, drained, slabs, r->bytes_released);
  return 0;
}

void pool_handle(pool_t *p, session_t *s, const Pinpool__V1__Request *req, resp_t *resp,
                 arena_t *a) {
  switch (req->body_case) {
  case PINPOOL__V1__REQUEST__BODY_ALLOC: do_alloc(p, s, req->alloc, resp, a); break;
  case PINPOOL__V1__REQUEST__BODY_FREE: do_free(p, s, req->free, resp, a); break;
  case PINPOOL__V1__REQUEST__BODY_LOOKUP: do_lookup(p, s, req->lookup, resp, a); break;
  case PINPOOL__V1__REQUEST__BODY_CACHE_OPEN: do_cache_open(p, req->cache_open, resp, a); break;
  case PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC:
    do_cache_alloc(p, s, req->cache_alloc, resp, a);
    break;
  case PINPOOL__V1__REQUEST__BODY_CACHE_FREE:
    do_cache_free(p, s, req->cache_free, resp, a);
    break;
  case PINPOOL__V1__REQUEST__BODY_STATS: do_stats(p, s, req->stats, resp, a); break;
  case PINPOOL__V1__REQUEST__BODY_SHRINK: do_shrink(p, s, resp, a); break;
  default:
    reply(resp, a, PP_EPROTO, "unexpected request (body %d)", (int)req->body_case);
    break;
  }
  PP_VALIDATE(pool_check, p);
}

/* ---- disconnect ------------------------------------------------------------------------ */

void pool_session_release(pool_t *p, session_t *s) {
  size_t it = 0, n = 0;
  uint64_t k, v;
  uint64_t *handles = NULL;
  u64map_t touched;

  /* Buffers: collect first, since unholding edits s->holds. */
  if (u64map_len(&s->holds)) {
    handles = malloc(u64map_len(&s->holds) * sizeof *handles);
    if (handles) {
      while (u64map_next(&s->holds, &it, &k, NULL))
        handles[n++] = k;
      for (size_t i = 0; i < n; i++)
        buf_unhold(p, s, buf_by_handle(p, handles[i]), 0);
      free(handles);
    } else {
      /* Out of private memory: unhold one at a time, restarting the walk each time. */
      while (u64map_len(&s->holds)) {
        it = 0;
        u64map_next(&s->holds, &it, &k, NULL);
        buf_unhold(p, s, buf_by_handle(p, k), 0);
      }
    }
  }

  /* Objects: back through the magazine, then each cache it used is drained and shrunk. */
  u64map_init(&touched);
  it = 0;
  while (u64map_next(&s->objs, &it, &k, &v)) {
    pcache_t *pc = pool_cache_by_id(p, (uint32_t)v);
    PP_ASSERT(pc != NULL);
    u64map_del(&p->obj_owner, k);
    if (p->cfg.zero_on_free) memset((char *)region_base(p->region) + k, 0, pc->object_size);
    mag_free(pc->mag, k);
    pc->held--;
    p->obj_bytes -= pc->object_size;
    quota_uncharge(p, s->uid, pc->object_size);
    u64map_put(&touched, v, 1); /* on ENOMEM the cache just keeps its empty slabs a while */
  }
  u64map_fini(&s->objs);
  u64map_init(&s->objs);
  s->obj_bytes = 0;
  it = 0;
  while (u64map_next(&touched, &it, &k, NULL)) {
    pcache_t *pc = pool_cache_by_id(p, (uint32_t)k);
    mag_drain(pc->depot, pc->mag);
    slab_cache_shrink(pc->cache);
  }
  u64map_fini(&touched);

  if (s->prev || s->next || p->sessions == s) {
    if (s->prev)
      s->prev->next = s->next;
    else
      p->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    p->nsessions--;
  }
  PP_VALIDATE(pool_check, p);
}

/* ---- validator ------------------------------------------------------------------------- */

#define CHECK(cond, ...)                                                                       \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      snprintf(why, why_len, __VA_ARGS__);                                                     \
      return PP_ECORRUPT;                                                                      \
    }                                                                                          \
  } while (0)

int pool_check(pool_t *p, char *why, size_t why_len) {
  uint64_t k, v, nobjs = 0, charged = 0, bufbytes = 0;
  size_t it;
  int rc;

  for (session_t *s = p->sessions; s; s = s->next) {
    uint64_t refs = 0, bytes = 0, obytes = 0;
    it = 0;
    while (u64map_next(&s->holds, &it, &k, &v)) {
      pbuf_t *b = buf_by_handle(p, k);
      bool listed = false;
      CHECK(b, "session %" PRIu64 " holds dead handle %" PRIu64, s->id, k);
      CHECK(v > 0, "session %" PRIu64 " holds handle %" PRIu64 " zero times", s->id, k);
      for (uint32_t i = 0; b && i < b->nholders; i++)
        listed |= b->holders[i] == s;
      CHECK(listed, "buffer %" PRIu64 " does not list holder session %" PRIu64, k, s->id);
      refs += v;
      bytes += b->size;
    }
    CHECK(refs == s->buf_refs,
          "session %" PRIu64 ": %" PRIu64 " refs counted, %" PRIu64 " recorded", s->id, refs,
          s->buf_refs);
    CHECK(bytes == s->buf_bytes, "session %" PRIu64 ": buffer bytes disagree", s->id);
    it = 0;
    while (u64map_next(&s->objs, &it, &k, &v)) {
      uint64_t owner;
      pcache_t *pc = pool_cache_by_id(p, (uint32_t)v);
      CHECK(pc, "session %" PRIu64 " holds object %" PRIu64 " of unknown cache %" PRIu64, s->id,
            k, v);
      CHECK(u64map_get(&p->obj_owner, k, &owner) && owner == s->id,
            "object %" PRIu64 " of session %" PRIu64 " not owned in obj_owner", k, s->id);
      CHECK(slab_cache_owns(pc->cache, k), "object %" PRIu64 " not allocated in cache %u", k,
            pc->id);
      obytes += pc->object_size;
      nobjs++;
    }
    CHECK(obytes == s->obj_bytes, "session %" PRIu64 ": object bytes disagree", s->id);
  }
  CHECK(nobjs == u64map_len(&p->obj_owner), "obj_owner has %zu objects, sessions %" PRIu64,
        u64map_len(&p->obj_owner), nobjs);

  it = 0;
  while (u64map_next(&p->by_handle, &it, &k, &v)) {
    pbuf_t *b = (pbuf_t *)(uintptr_t)v;
    uint64_t o;
    unsigned order;
    CHECK(b->nholders > 0, "buffer %" PRIu64 " has no holders", k);
    for (uint32_t i = 0; i < b->nholders; i++)
      CHECK(u64map_get(&b->holders[i]->holds, k, NULL),
            "holder of buffer %" PRIu64 " does not hold it", k);
    CHECK(u64map_get(&p->by_offset, b->offset, &o) && o == v,
          "buffer %" PRIu64 " not indexed by offset", k);
    CHECK(buddy_block_order(p->buddy, b->offset, &order) == 0 && order == b->order,
          "buffer %" PRIu64 " is not an allocated block of order %u", k, b->order);
    CHECK(!b->name || buf_by_name(p, b->name) == b, "buffer %" PRIu64 " not found by its name",
          k);
    bufbytes += b->size;
  }
  CHECK(u64map_len(&p->by_offset) == u64map_len(&p->by_handle),
        "offset and handle indexes differ");
  CHECK(bufbytes == p->buf_bytes, "buffer bytes %" PRIu64 " != recorded %" PRIu64, bufbytes,
        p->buf_bytes);

  it = 0;
  while (u64map_next(&p->uid_bytes, &it, &k, &v))
    charged += v;
  CHECK(charged == p->buf_bytes + p->obj_bytes, "quota charges %" PRIu64 " != pinned %" PRIu64,
        charged, p->buf_bytes + p->obj_bytes);

  for (size_t i = 0; i < p->ncaches; i++) {
    pcache_t *pc = p->cache_list[i];
    uint64_t held = 0;
    it = 0;
    while (u64map_next(&p->obj_owner, &it, &k, NULL))
      if (slab_cache_owns(pc->cache, k)) held++;
    CHECK(held == pc->held, "cache %u: %" PRIu64 " objects held, %" PRIu64 " recorded", pc->id,
          held, pc->held);
    if ((rc = mag_check(pc->depot, pc->held, why, why_len))) return rc;
  }
  if ((rc = slab_check(p->slab, why, why_len))) return rc;
  return buddy_check(p->buddy, why, why_len);
}
