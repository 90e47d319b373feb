/*
 * handlers.c — pinpoold's requests: a protobuf Request in, ledger calls, a Response out.
 *
 * Dispatch is one table, handler_table[], indexed by the request's body case: each row is
 * the handler function and whether the request is admin-only (refused PERMISSION_DENIED,
 * "<name> needs root or the admin group", before the handler runs).  Hello is not in the
 * table: it belongs to the connection's handshake (handshake.c), which answers it with
 * the memfd.  A body with no row is a PROTOCOL_ERROR reply ("unexpected request").
 *
 * A handler reads its request's fields, calls the ledger (which validates everything and
 * changes nothing when it refuses, handing back a PP_E* code and the reason), and builds
 * the Response body in the arena.  Nothing here owns state: who holds what is the
 * ledger's, who is connected the session list's.
 *
 * Where a new request type goes: the message and its body case in proto/pinpool.proto; a
 * row in handler_table[] and its handler function here; a ledger function when it changes
 * ownership (built from the ledger's primitives, so the journal sees it); if its reply can
 * grow past max_frame, a trim function in trim_table[]; the client library's function;
 * and tests.  The connection code does not change.
 *
 * Replies: each is built in the handlers' arena, packed by handlers_pack() and the arena
 * rewound right after (arena.c: one chunk is kept from reply to reply, so the hot path
 * makes no malloc for it).  A reply too big for max_frame is cut down by its body's trim
 * function (trim_table[]: a Stats snapshot drops the map, then the buffer list, then the
 * client list, then half its caches at a time; a Stats page, which stats.c fills to fit
 * already, gives its second half to the next page; Buffer drops its segments, and so do all
 * of Buffers' buffers at once — alloc_bulk refuses a count whose reply would not fit
 * without them, since it cannot be cut after the fact), and
 * Response.message says what was left out.  A reply that still cannot be packed becomes
 * an INTERNAL error reply with the same id.
 *
 * Private memory: when malloc (or the arena's budget) runs out, the reply is
 * NO_PRIVATE_MEMORY and nothing changed — the ledger undoes its half-done work, and a
 * handler that cannot build its reply after the ledger said yes undoes that (a buffer
 * reference taken is dropped again, a cache open closed again).
 *
 * Names: the ledger scopes them by user (ledger.c).  Here a Buffer reply names the buffer
 * as the caller would write it (ledger_buf_name_for), and the shared groups a session's
 * user belongs to are decided the first time it names a group scope (decide_groups).
 *
 * Locks: none; only the loop thread calls in.
 */
#include "handlers.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "debug.h"
#include "frame.h"
#include "log.h"
#include "stats.h"

typedef Pinpool__V1__Response resp_t;
typedef Pinpool__V1__Request req_t;

/* The ledger speaks the protocol's numbers where they meet, so nothing is translated. */
_Static_assert(LEDGER_ALLOC_CONTIG == PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_CONTIGUOUS,
               "alloc flag values");
_Static_assert(LEDGER_ALLOC_ZERO == PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_ZERO,
               "alloc flag values");
_Static_assert(LEDGER_OBJECTS_MAX == PROTO_OBJECTS_MAX, "objects per request");

uint64_t handlers_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void handlers_init(handlers_t *hs, ledger_t *ledger, const session_list_t *sessions,
                   const handlers_config_t *cfg) {
  hs->ledger = ledger;
  pools_init(&hs->own_pools, ledger, NULL);
  hs->pools = &hs->own_pools;
  hs->region_id = NULL;
  hs->sessions = sessions;
  hs->cfg = *cfg;
  arena_init(&hs->arena, 64u * 1024u * 1024u);
  memset(hs->stats_memo, 0, sizeof hs->stats_memo);
  hs->reply_fd = -1;
  hs->reply_fd_close = false;
}

void handlers_set_pools(handlers_t *hs, pools_t *pools, const uint8_t *region_id) {
  PP_ASSERT(pools->v[0].ledger == hs->ledger);
  hs->pools = pools;
  hs->region_id = region_id;
}

void handlers_fini(handlers_t *hs) {
  arena_reset(&hs->arena);
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

static int reply_why(resp_t *resp, arena_t *a, int rc, const ledger_why_t *why) {
  return reply(resp, a, rc, "%s", why->msg);
}

static int reply_no_private_memory(resp_t *resp, arena_t *a) {
  return reply(resp, a, PP_ENOPRIVMEM, "daemon out of private memory");
}

/* ---- pools -------------------------------------------------------------------------- */

/* Where a request runs: the pool it names, the session's holder there and its ledger. */
typedef struct in_pool {
  uint32_t id;
  ledger_t *l;
  ledger_holder_t *h;
  pool_access_t acc;
} in_pool_t;

/* The pool id names for s.  A pool s has not attached is NOT_FOUND — or STATE_LOST for a
 * session a restart brought back when that pool's stored state could not be taken back
 * (its attachment may have been lost with it) — and a request that changes a pool
 * (write) from a read-only attachment is PERMISSION_DENIED.  Nonzero: the reply is made. */
static int pool_for(handlers_t *hs, session_t *s, uint32_t id, bool write, const char *what,
                    in_pool_t *ret, resp_t *resp, arena_t *a) {
  const pool_t *p = pools_get(hs->pools, id);
  if (!p) return reply(resp, a, PP_ENOENT, "no pool with id %u", (unsigned)id);
  if (pools_session_get(hs->pools, s, id, &ret->l, &ret->h, &ret->acc)) {
    if (s->restored && p->persist && persist_state_lost(p->persist))
      return reply(resp, a, PP_ESTATELOST,
                   "pool '%s' started fresh after the daemon's restart: what this session "
                   "held there is gone; attach it again",
                   p->name);
    return reply(resp, a, PP_ENOENT, "pool '%s' is not attached: attach_pool first", p->name);
  }
  if (write && ret->acc != POOL_ACCESS_WRITE)
    return reply(resp, a, PP_EPERM, "%s: pool '%s' is read-only for uid %u", what, p->name,
                 (unsigned)s->uid);
  ret->id = id;
  return 0;
}

/* A handle of pool id as the ledger knows it: the pool's bits taken off.  A handle that
 * names another pool stays as it is, which no ledger handle is (< 2^48): the ledger's
 * NOT_FOUND, with the same message as any handle the session does not hold. */
static uint64_t ledger_handle(uint32_t id, uint64_t handle) {
  return (handle & POOL_HANDLE_MASK) == POOL_HANDLE(id, 0) ? handle & ~POOL_HANDLE_MASK
                                                           : handle;
}

/* A Buffer message for b of pool ip, in the arena: its segments are the region's
 * physically contiguous runs that intersect it.  NULL when the arena is out of memory. */
static Pinpool__V1__Buffer *buffer_msg(const in_pool_t *ip, session_t *s,
                                       const ledger_buf_info_t *b, arena_t *a) {
  Pinpool__V1__Buffer *m = arena_alloc(a, sizeof *m);
  size_t nruns, lo = 0, hi, first, n = 0;
  const region_run_t *runs = ledger_runs(ip->l, &nruns);
  uint64_t end = b->offset + b->size;

  if (!m) return NULL;
  pinpool__v1__buffer__init(m);
  m->handle = POOL_HANDLE(ip->id, b->handle);
  m->offset = b->offset;
  m->size = b->size;
  m->phys_addr = b->phys;
  m->contiguous = b->contiguous;
  /* As the caller wrote it for its own scope, qualified for any other; lives until after
   * packing. */
  if (b->qname) m->name = (char *)ledger_buf_name_for(b, s->uid);
  /* Runs intersecting [offset, end): binary search for the first run ending after offset. */
  hi = nruns;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (runs[mid].offset + runs[mid].length <= b->offset)
      lo = mid + 1;
    else
      hi = mid;
  }
  first = lo;
  while (first + n < nruns && runs[first + n].offset < end)
    n++;
  if (n) {
    Pinpool__V1__Segment *seg = arena_alloc(a, n * sizeof *seg);
    m->segments = arena_alloc(a, n * sizeof *m->segments);
    if (!m->segments || !seg) return NULL;
    for (size_t i = 0; i < n; i++) {
      const region_run_t *r = &runs[first + i];
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
  return m;
}

/* The Buffer body for b.  On failure the reference the request took is dropped again
 * (undo: alloc, lookup; a describe took none). */
static int reply_buffer(const in_pool_t *ip, session_t *s, const ledger_buf_info_t *b,
                        bool undo, resp_t *resp, arena_t *a) {
  Pinpool__V1__Buffer *m = buffer_msg(ip, s, b, a);
  if (!m) {
    if (undo) ledger_buf_free(ip->l, ip->h, b->handle, NULL);
    return reply_no_private_memory(resp, a);
  }
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_BUFFER;
  resp->buffer = m;
  return 0;
}

/* The shared groups (--shared-group) this session's user belongs to, decided the first
 * time one of its requests would create a name in a group's scope ("~g...") of a pool:
 * the rule of the admin group (session_is_admin: the primary gid from SO_PEERCRED, the
 * supplementary groups of the uid's user, root in every group).  Until then the holder is
 * in none, which is also what it is when no shared group is configured. */
static int decide_groups(const in_pool_t *ip, session_t *s, const char *name) {
  const ledger_config_t *cfg = ledger_config(ip->l);
  gid_t member[LEDGER_SHARED_GROUPS_MAX];
  size_t n = 0;

  if (!name || name[0] != '~' || name[1] != 'g' || ledger_holder_groups_known(ip->h)) return 0;
  for (uint32_t i = 0; i < cfg->nshared_groups; i++)
    if (session_is_admin(s->uid, s->gid, cfg->shared_groups[i]))
      member[n++] = cfg->shared_groups[i];
  return ledger_holder_set_groups(ip->l, ip->h, member, n);
}

/* ---- the handlers ------------------------------------------------------------------- */

static int h_alloc(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp, arena_t *a) {
  const Pinpool__V1__Alloc *m = req->alloc;
  ledger_buf_info_t b;
  ledger_why_t why;
  in_pool_t ip;
  int rc;

  if (pool_for(hs, s, m->pool, true, "alloc", &ip, resp, a)) return resp->status;
  if (decide_groups(&ip, s, m->name)) return reply_no_private_memory(resp, a);
  rc = ledger_buf_alloc(ip.l, ip.h, m->size, m->flags, m->name, &why, &b);
  if (rc) return reply_why(resp, a, rc, &why);
  return reply_buffer(&ip, s, &b, true, resp, a);
}

static int h_free(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp, arena_t *a) {
  ledger_why_t why;
  in_pool_t ip;
  int rc;
  if (pool_for(hs, s, req->free->pool, false, "free", &ip, resp, a)) return resp->status;
  rc = ledger_buf_free(ip.l, ip.h, ledger_handle(ip.id, req->free->handle), &why);
  return rc ? reply_why(resp, a, rc, &why) : 0;
}

static int h_lookup(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp, arena_t *a) {
  ledger_buf_info_t b;
  ledger_why_t why;
  in_pool_t ip;
  int rc;
  if (pool_for(hs, s, req->lookup->pool, false, "lookup", &ip, resp, a)) return resp->status;
  rc = ledger_buf_lookup(ip.l, ip.h, req->lookup->name, &why, &b);
  if (rc) return reply_why(resp, a, rc, &why);
  return reply_buffer(&ip, s, &b, true, resp, a);
}

/* The most a Buffer without segments or name takes in a Buffers reply: five varint fields
 * of at most 10 bytes and a bool, each with its key, plus the repeated element's key and
 * length.  And what the rest of the Response may take: id, body key and length,
 * addresses_generation, and the message a trim adds. */
#define BULK_BUFFER_MAX 48u
#define BULK_REPLY_OVERHEAD 160u

/* The client's report of its buffer caches, kept for Stats once the request succeeded. */
static void take_cache_report(const in_pool_t *ip, const Pinpool__V1__CacheReport *r) {
  if (r) ledger_holder_set_cached(ip->h, r->buffers, r->bytes);
}

static int h_alloc_bulk(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                        arena_t *a) {
  const Pinpool__V1__AllocBulk *m = req->alloc_bulk;
  Pinpool__V1__Buffers *r;
  ledger_buf_info_t *info;
  ledger_why_t why;
  in_pool_t ip;
  int rc;

  if (pool_for(hs, s, m->pool, true, "alloc_bulk", &ip, resp, a)) return resp->status;
  if (m->count == 0 || m->count > LEDGER_OBJECTS_MAX)
    return reply(resp, a, PP_ERANGE, "count %u outside 1..%u", (unsigned)m->count,
                 LEDGER_OBJECTS_MAX);
  /* All or nothing, so the reply cannot be cut to fit max_frame after the fact: refuse
   * what could not be answered before allocating anything. */
  if ((uint64_t)m->count * BULK_BUFFER_MAX + BULK_REPLY_OVERHEAD > hs->cfg.max_frame)
    return reply(resp, a, PP_ERANGE,
                 "%u buffers may not fit one reply of max_frame %u bytes: at most %u",
                 (unsigned)m->count, hs->cfg.max_frame,
                 hs->cfg.max_frame > BULK_REPLY_OVERHEAD
                     ? (hs->cfg.max_frame - BULK_REPLY_OVERHEAD) / BULK_BUFFER_MAX
                     : 0u);
  info = arena_alloc(a, m->count * sizeof *info);
  r = arena_alloc(a, sizeof *r);
  if (!info || !r) return reply_no_private_memory(resp, a);
  rc = ledger_buf_alloc_bulk(ip.l, ip.h, m->size, m->flags, m->count, &why, info);
  if (rc) return reply_why(resp, a, rc, &why);
  pinpool__v1__buffers__init(r);
  r->buffers = arena_alloc(a, m->count * sizeof *r->buffers);
  if (!r->buffers) goto nomem;
  for (uint32_t i = 0; i < m->count; i++)
    if (!(r->buffers[i] = buffer_msg(&ip, s, &info[i], a))) goto nomem;
  r->n_buffers = m->count;
  r->addresses_generation = ledger_addr_generation(ip.l);
  take_cache_report(&ip, m->cache);
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_BUFFERS;
  resp->buffers = r;
  return 0;
nomem:
  /* Undone: each buffer's only reference dropped again, which frees it (no memory
   * needed). */
  for (uint32_t i = 0; i < m->count; i++)
    ledger_buf_free(ip.l, ip.h, info[i].handle, NULL);
  return reply_no_private_memory(resp, a);
}

static int h_free_bulk(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                       arena_t *a) {
  const Pinpool__V1__FreeBulk *m = req->free_bulk;
  const uint64_t *handles = m->handles;
  ledger_why_t why;
  in_pool_t ip;
  int rc;

  if (pool_for(hs, s, m->pool, false, "free_bulk", &ip, resp, a)) return resp->status;
  if (ip.id != 0 && m->n_handles) {
    uint64_t *v = arena_alloc(a, m->n_handles * sizeof *v);
    if (!v) return reply_no_private_memory(resp, a);
    for (size_t i = 0; i < m->n_handles; i++)
      v[i] = ledger_handle(ip.id, m->handles[i]);
    handles = v;
  }
  rc = ledger_buf_free_bulk(ip.l, ip.h, handles, m->n_handles, &why);
  if (rc) return reply_why(resp, a, rc, &why);
  take_cache_report(&ip, m->cache);
  return 0;
}

static int h_describe(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                      arena_t *a) {
  ledger_buf_info_t b;
  ledger_why_t why;
  in_pool_t ip;
  int rc;
  if (pool_for(hs, s, req->describe->pool, false, "describe", &ip, resp, a))
    return resp->status;
  rc = ledger_buf_describe(ip.l, ip.h, ledger_handle(ip.id, req->describe->handle), &why, &b);
  if (rc) return reply_why(resp, a, rc, &why);
  return reply_buffer(&ip, s, &b, false, resp, a);
}

static int h_cache_open(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                        arena_t *a) {
  const Pinpool__V1__CacheOpen *m = req->cache_open;
  Pinpool__V1__CacheInfo *ci;
  ledger_cache_info_t info;
  ledger_why_t why;
  in_pool_t ip;
  int rc;

  if (pool_for(hs, s, m->pool, true, "cache_open", &ip, resp, a)) return resp->status;
  if (decide_groups(&ip, s, m->name)) return reply_no_private_memory(resp, a);
  rc = ledger_cache_open(ip.l, ip.h, m->name, m->object_size, m->align, &why, &info);
  if (rc) return reply_why(resp, a, rc, &why);
  ci = arena_alloc(a, sizeof *ci);
  if (!ci) {
    ledger_cache_close(ip.l, ip.h, info.id, NULL); /* the open just taken */
    return reply_no_private_memory(resp, a);
  }
  pinpool__v1__cache_info__init(ci);
  ci->cache_id = info.id;
  ci->object_size = info.object_size;
  ci->align = info.align;
  ci->objects_per_slab = info.objs_per_slab;
  ci->slab_bytes = info.slab_bytes;
  ci->object_charge = info.obj_charge;
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_CACHE;
  resp->cache = ci;
  return 0;
}

static int h_cache_close(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                         arena_t *a) {
  ledger_why_t why;
  in_pool_t ip;
  int rc;
  if (pool_for(hs, s, req->cache_close->pool, true, "cache_close", &ip, resp, a))
    return resp->status;
  rc = ledger_cache_close(ip.l, ip.h, req->cache_close->cache_id, &why);
  return rc ? reply_why(resp, a, rc, &why) : 0;
}

static int h_cache_alloc(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                         arena_t *a) {
  const Pinpool__V1__CacheAlloc *m = req->cache_alloc;
  Pinpool__V1__Objects *o;
  uint64_t *offs = NULL;
  ledger_why_t why;
  in_pool_t ip;
  int rc;

  if (pool_for(hs, s, m->pool, true, "cache_alloc", &ip, resp, a)) return resp->status;
  o = arena_alloc(a, sizeof *o);
  /* Room for the answer first, so the ledger writes the offsets straight into the reply;
   * a count out of range gets none (the ledger refuses it for that). */
  if (o && m->count > 0 && m->count <= LEDGER_OBJECTS_MAX)
    offs = arena_alloc(a, m->count * sizeof *offs);
  rc = ledger_cache_alloc(ip.l, ip.h, m->cache_id, m->count, offs, &why);
  if (rc) return reply_why(resp, a, rc, &why);
  pinpool__v1__objects__init(o);
  o->offsets = offs;
  o->n_offsets = m->count;
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_OBJECTS;
  resp->objects = o;
  return 0;
}

static int h_cache_free(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                        arena_t *a) {
  const Pinpool__V1__CacheFree *m = req->cache_free;
  ledger_why_t why;
  in_pool_t ip;
  int rc;
  if (pool_for(hs, s, m->pool, true, "cache_free", &ip, resp, a)) return resp->status;
  rc = ledger_cache_free(ip.l, ip.h, m->cache_id, m->offsets, m->n_offsets, &why);
  return rc ? reply_why(resp, a, rc, &why) : 0;
}

static int h_stats(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp, arena_t *a) {
  const Pinpool__V1__StatsRequest *rq = req->stats;
  Pinpool__V1__StatsRequest copy;
  const pool_t *p = pools_get(hs->pools, rq->pool);
  Pinpool__V1__Stats *st;
  int rc;

  (void)s;
  if (!p) return reply(resp, a, PP_ENOENT, "no pool with id %u", (unsigned)rq->pool);
  stats_source_t src = {.ledger = p->ledger,
                        .pool = p->id,
                        .pools = hs->pools,
                        .sessions = hs->sessions,
                        .max_clients = hs->cfg.max_clients,
                        .uptime_ms = handlers_now_ms() - hs->cfg.started_ms,
                        .max_frame = hs->cfg.max_frame,
                        .memo = &hs->stats_memo[p->id]};
  if (p->id && rq->list == PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS) {
    copy = *rq; /* the cursor is a handle as clients see them: the ledger's, here */
    copy.cursor = ledger_handle(p->id, rq->cursor);
    rq = &copy;
  }
  rc = stats_build(&src, rq, &st, a);
  if (rc == PP_EINVAL)
    return reply(resp, a, rc, "unknown stats list %d", (int)req->stats->list);
  if (rc) return reply_no_private_memory(resp, a);
  for (size_t i = 0; i < st->n_buffers; i++)
    st->buffers[i]->handle = POOL_HANDLE(p->id, st->buffers[i]->handle);
  if (p->id && st->list == PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS && st->next_cursor)
    st->next_cursor = POOL_HANDLE(p->id, st->next_cursor);
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_STATS;
  resp->stats = st;
  return 0;
}

/* Every pool's magazines drained and empty slabs returned, the results summed. */
static int h_shrink(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp, arena_t *a) {
  Pinpool__V1__ShrinkResult *r = arena_alloc(a, sizeof *r);
  ledger_shrink_result_t res = {0};

  (void)req;
  if (!r) return reply_no_private_memory(resp, a);
  for (uint32_t i = 0; i < hs->pools->n; i++) {
    ledger_shrink_result_t one;
    ledger_shrink(hs->pools->v[i].ledger, &one);
    res.objects_drained += one.objects_drained;
    res.slabs_released += one.slabs_released;
    res.bytes_released += one.bytes_released;
  }
  pinpool__v1__shrink_result__init(r);
  r->objects_drained = res.objects_drained;
  r->slabs_released = res.slabs_released;
  r->bytes_released = res.bytes_released;
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_SHRINK;
  resp->shrink = r;
  log_info("shrink by session %" PRIu64 ": %" PRIu64 " objects drained, %" PRIu64
           " slabs (%" PRIu64 " bytes) released",
           s->id, res.objects_drained, res.slabs_released, res.bytes_released);
  return 0;
}

/* Attach a pool by name: its geometry, the session's access, and the memfd to send with
 * the reply (hs->reply_fd) — the region's own for a writer, a read-only re-open of it
 * for a reader (pools.c), none for anyone else. */
static int h_attach_pool(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                         arena_t *a) {
  const char *name = req->attach_pool->name;
  pool_t *p = pools_find(hs->pools, name);
  Pinpool__V1__PoolAttached *pa = arena_alloc(a, sizeof *pa);
  pool_access_t acc;
  const region_t *r;
  int fd, rc;
  bool own = false;

  if (!pa) return reply_no_private_memory(resp, a);
  if (!p) return reply(resp, a, PP_ENOENT, "no pool named '%s'", name);
  acc = pools_access(p, s->uid, s->gid);
  if (acc == POOL_ACCESS_NONE)
    return reply(resp, a, PP_EPERM, "uid %u is neither a writer nor a reader of pool '%s'",
                 (unsigned)s->uid, p->name);
  r = ledger_region(p->ledger);
  fd = region_fd(r);
  if (acc == POOL_ACCESS_READ) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
      log_err("pool '%s': re-opening its memfd read-only: %s", p->name, strerror(errno));
      return reply(resp, a, PP_EOS, "pool '%s': the daemon cannot open a read-only descriptor",
                   p->name);
    }
    own = true;
  }
  if ((rc = pools_attach(hs->pools, s, p, acc))) {
    if (own) close(fd);
    return reply_no_private_memory(resp, a);
  }
  pinpool__v1__pool_attached__init(pa);
  pa->pool = p->id;
  pa->name = p->name;
  pa->access = (Pinpool__V1__PoolAccess)acc;
  pa->region_size = region_size(r);
  pa->page_size = region_page_size(r);
  pa->hugepages = region_hugepages(r);
  pa->physical_addresses = region_phys_known(r);
  pa->min_block = BUDDY_MIN_SIZE;
  pa->region_id.data = p->id ? p->region_id : (uint8_t *)hs->region_id;
  pa->region_id.len = pa->region_id.data ? POOL_REGION_ID_LEN : 0;
  resp->body_case = PINPOOL__V1__RESPONSE__BODY_POOL;
  resp->pool = pa;
  hs->reply_fd = fd;
  hs->reply_fd_close = own;
  return 0;
}

/* ---- dispatch ----------------------------------------------------------------------- */

typedef int (*handler_fn)(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp,
                          arena_t *a);

static const struct handler_row {
  handler_fn fn;
  bool admin;       /* root or --admin-group only */
  const char *name; /* for the refusal */
} handler_table[] = {
    [PINPOOL__V1__REQUEST__BODY_ALLOC] = {h_alloc, false, "alloc"},
    [PINPOOL__V1__REQUEST__BODY_FREE] = {h_free, false, "free"},
    [PINPOOL__V1__REQUEST__BODY_LOOKUP] = {h_lookup, false, "lookup"},
    [PINPOOL__V1__REQUEST__BODY_CACHE_OPEN] = {h_cache_open, false, "cache_open"},
    [PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC] = {h_cache_alloc, false, "cache_alloc"},
    [PINPOOL__V1__REQUEST__BODY_CACHE_FREE] = {h_cache_free, false, "cache_free"},
    [PINPOOL__V1__REQUEST__BODY_STATS] = {h_stats, true, "stats"},
    [PINPOOL__V1__REQUEST__BODY_SHRINK] = {h_shrink, true, "shrink"},
    [PINPOOL__V1__REQUEST__BODY_CACHE_CLOSE] = {h_cache_close, false, "cache_close"},
    [PINPOOL__V1__REQUEST__BODY_ALLOC_BULK] = {h_alloc_bulk, false, "alloc_bulk"},
    [PINPOOL__V1__REQUEST__BODY_FREE_BULK] = {h_free_bulk, false, "free_bulk"},
    [PINPOOL__V1__REQUEST__BODY_DESCRIBE] = {h_describe, false, "describe"},
    [PINPOOL__V1__REQUEST__BODY_ATTACH_POOL] = {h_attach_pool, false, "attach_pool"},
};

static void handle(handlers_t *hs, session_t *s, const req_t *req, resp_t *resp, arena_t *a) {
  unsigned bc = (unsigned)req->body_case;
  const struct handler_row *row =
      bc < sizeof handler_table / sizeof handler_table[0] ? &handler_table[bc] : NULL;

  if (!row || !row->fn)
    reply(resp, a, PP_EPROTO, "unexpected request (body %d)", (int)req->body_case);
  else if (row->admin && !s->admin)
    reply(resp, a, PP_EPERM, "%s needs root or the admin group", row->name);
  else
    row->fn(hs, s, req, resp, a);
}

/* ---- fitting max_frame -------------------------------------------------------------- */

static const char *trim_buffer(resp_t *resp) {
  if (!resp->buffer->n_segments) return NULL;
  resp->buffer->n_segments = 0;
  return "segments";
}

/* Every buffer's segments at once: the handler checked that the rest fits. */
static const char *trim_buffers(resp_t *resp) {
  bool any = false;
  for (size_t i = 0; i < resp->buffers->n_buffers; i++) {
    any = any || resp->buffers->buffers[i]->n_segments;
    resp->buffers->buffers[i]->n_segments = 0;
  }
  return any ? "segments" : NULL;
}

static const char *trim_stats(resp_t *resp) {
  return stats_trim(resp->stats);
}

/* What a body can leave out, bulkiest first; called again while the reply is too big.
 * Returns what is left out so far (for the message), NULL when nothing more can go. */
typedef const char *(*trim_fn)(resp_t *resp);
static const trim_fn trim_table[] = {
    [PINPOOL__V1__RESPONSE__BODY_BUFFER] = trim_buffer,
    [PINPOOL__V1__RESPONSE__BODY_STATS] = trim_stats,
    [PINPOOL__V1__RESPONSE__BODY_BUFFERS] = trim_buffers,
};

int handlers_pack(uint32_t max_frame, resp_t *resp, arena_t *a, uint8_t **ret_buf,
                  size_t *ret_len) {
  int rc = frame_pack(&resp->base, max_frame, ret_buf, ret_len);
  unsigned bc = (unsigned)resp->body_case;
  trim_fn trim = bc < sizeof trim_table / sizeof trim_table[0] ? trim_table[bc] : NULL;
  const char *left_out;

  while (rc == PP_ERANGE && trim && (left_out = trim(resp))) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s left out: the reply would exceed max_frame %u", left_out,
             max_frame);
    resp->message = arena_strdup(a, msg);
    if (!resp->message) resp->message = (char *)"";
    rc = frame_pack(&resp->base, max_frame, ret_buf, ret_len);
  }
  return rc;
}

int handlers_serve(handlers_t *hs, session_t *s, const req_t *req, uint8_t **ret_buf,
                   size_t *ret_len) {
  resp_t resp = PINPOOL__V1__RESPONSE__INIT;
  arena_t *a = &hs->arena;
  int rc;

  PP_ASSERT(s->holder != NULL);
  hs->reply_fd = -1;
  hs->reply_fd_close = false;
  resp.id = req->id;
  handle(hs, s, req, &resp, a);
  rc = handlers_pack(hs->cfg.max_frame, &resp, a, ret_buf, ret_len);
  arena_rewind(a);
  if (rc) {
    resp_t err = PINPOOL__V1__RESPONSE__INIT;
    err.id = req->id;
    err.status = (Pinpool__V1__Status)(rc == PP_ENOPRIVMEM ? -PP_ENOPRIVMEM : -PP_EINTERNAL);
    err.message = (char *)"reply could not be encoded";
    log_err("packing a reply failed: %s", pp_strerror(rc));
    rc = frame_pack(&err.base, hs->cfg.max_frame, ret_buf, ret_len);
    if (hs->reply_fd >= 0 && hs->reply_fd_close) close(hs->reply_fd);
    hs->reply_fd = -1; /* no descriptor with an error reply */
    hs->reply_fd_close = false;
  }
  return rc;
}
