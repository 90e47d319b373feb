/*
 * stats.c — the operator's snapshot (the Stats response): region, buddy, slab caches,
 * daemon magazines, clients, and on request every buffer and a map of every block.
 *
 * Built from the ledger's read-only views (ledger_get_totals, ledger_cache_stats,
 * ledger_buf_next, ledger_walk_blocks, ...) and the daemon's list of sessions past Hello;
 * this file knows the Stats message, the ledger knows what is held, and neither reaches
 * into the other.
 *
 * Shapes follow what Linux users already read: free_per_order is /proc/buddyinfo's row,
 * frag_index is mm/vmstat.c's __fragmentation_index (-1000 when that order is free), and
 * each SlabInfo is a /proc/slabinfo row plus pinpool's extras.
 *
 * Accounting (what pinpoolctl can add up): used_bytes = live buffer blocks + objects held
 * by sessions, each at its charge (slab bytes / objects per slab, rounded down: its stride
 * and its share of the slab's tail — ledger.c); free_bytes = the buddy's free bytes;
 * cached_bytes = slab bytes not held by sessions (free objects, objects parked in
 * magazines, the part of tails no object is charged for).  A slab holds at most
 * objs_per_slab objects, each charged at most slab_bytes / objs_per_slab, so cached is
 * never negative, and with no other buddy users used + free + cached == region_size.
 * Per client: bytes_held = the blocks of the buffers it holds (whoever pays for them) +
 * its objects at their charge; bytes_charged = what its uid pays — the blocks of the
 * buffers charged to it, its sessions' objects, and one slab per cache they hold objects
 * in — the figure --quota limits.  Names (buffers, slabinfo rows) are fully qualified,
 * "~1000/frames", so operators see whose they are.  MapBlock.in_magazines is the ledger's
 * derivation (see ledger_walk_blocks).
 *
 * Cost: O(blocks + objects held) for the map, O(buffers * holders) for the buffer list; only
 * admins can ask, and every allocation comes from the response's arena, whose budget caps
 * it.  When the packed response would exceed the frame limit, stats_trim() drops the map,
 * then the buffer list, then the client list (handlers.c calls it and says so in
 * Response.message).
 *
 * Locks: none of our own; the map walk runs under the buddy lock and its callback only
 * takes arena memory.
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

typedef struct map_ctx {
  arena_t *a;
  Pinpool__V1__MapBlock **out;
  size_t n, cap;
} map_ctx_t;

static const Pinpool__V1__MapBlock__Kind map_kind[] = {
    [LEDGER_BLOCK_FREE] = PINPOOL__V1__MAP_BLOCK__KIND__FREE,
    [LEDGER_BLOCK_BUFFER] = PINPOOL__V1__MAP_BLOCK__KIND__BUFFER,
    [LEDGER_BLOCK_SLAB] = PINPOOL__V1__MAP_BLOCK__KIND__SLAB,
    [LEDGER_BLOCK_OTHER] = PINPOOL__V1__MAP_BLOCK__KIND__OTHER,
};

static int map_block(void *ctx, const ledger_block_t *lb) {
  map_ctx_t *m = ctx;
  Pinpool__V1__MapBlock *b;

  if (m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 256;
    Pinpool__V1__MapBlock **o = arena_alloc(m->a, cap * sizeof *o);
    if (!o) return PP_ENOPRIVMEM;
    if (m->n) memcpy(o, m->out, m->n * sizeof *o);
    m->out = o;
    m->cap = cap;
  }
  b = arena_alloc(m->a, sizeof *b);
  if (!b) return PP_ENOPRIVMEM;
  pinpool__v1__map_block__init(b);
  b->offset = lb->offset;
  b->size = lb->size;
  b->kind = map_kind[lb->kind];
  if (lb->kind == LEDGER_BLOCK_SLAB) {
    b->inuse = lb->inuse;
    b->capacity = lb->capacity;
    b->in_magazines = lb->in_magazines;
  }
  m->out[m->n++] = b;
  return 0;
}

static int build_map(ledger_t *l, Pinpool__V1__Stats *st, arena_t *a) {
  map_ctx_t m = {.a = a};
  int rc = ledger_walk_blocks(l, map_block, &m);
  if (rc) return rc;
  st->map = m.out;
  st->n_map = m.n;
  return 0;
}

static int cmp_handle(const void *x, const void *y) {
  const ledger_buf_info_t *a = x, *b = y;
  return a->handle < b->handle ? -1 : a->handle > b->handle;
}

static int build_buffers(ledger_t *l, Pinpool__V1__Stats *st, arena_t *a) {
  ledger_totals_t t;
  ledger_buf_info_t *v;
  size_t n, it = 0, i = 0;

  ledger_get_totals(l, &t);
  n = t.nbufs;
  if (!n) return 0;
  v = arena_alloc(a, n * sizeof *v);
  st->buffers = arena_alloc(a, n * sizeof *st->buffers);
  if (!v || !st->buffers) return PP_ENOPRIVMEM;
  while (i < n && ledger_buf_next(l, &it, &v[i]))
    i++;
  qsort(v, n, sizeof *v, cmp_handle);
  for (i = 0; i < n; i++) {
    const ledger_buf_info_t *b = &v[i];
    Pinpool__V1__BufferInfo *bi = arena_alloc(a, sizeof *bi);
    if (!bi) return PP_ENOPRIVMEM;
    pinpool__v1__buffer_info__init(bi);
    bi->handle = b->handle;
    bi->offset = b->offset;
    bi->size = b->size;
    bi->phys_addr = b->phys;
    bi->contiguous = b->contiguous;
    if (b->qname) bi->name = (char *)b->qname; /* lives until after packing */
    bi->charged_uid = (uint32_t)b->charged_uid;
    bi->holder_pids = arena_alloc(a, b->nholders * sizeof *bi->holder_pids);
    bi->holder_sessions = arena_alloc(a, b->nholders * sizeof *bi->holder_sessions);
    if (!bi->holder_pids || !bi->holder_sessions) return PP_ENOPRIVMEM;
    for (uint32_t h = 0; h < b->nholders; h++) {
      const ledger_ident_t *id = ledger_buf_holder(b->buf, h);
      bi->holder_pids[h] = (uint32_t)id->pid;
      bi->holder_sessions[h] = id->session_id;
    }
    bi->n_holder_pids = bi->n_holder_sessions = b->nholders;
    st->buffers[i] = bi;
  }
  st->n_buffers = n;
  return 0;
}

static int build_clients(const ledger_t *l, const session_list_t *sessions,
                         Pinpool__V1__Stats *st, arena_t *a) {
  size_t i = sessions->n;
  if (!i) return 0;
  st->clients = arena_alloc(a, i * sizeof *st->clients);
  if (!st->clients) return PP_ENOPRIVMEM;
  /* Oldest first: the list is newest first, so fill from the back. */
  for (const session_t *s = sessions->head; s && i > 0; s = s->next) {
    Pinpool__V1__ClientInfo *ci = arena_alloc(a, sizeof *ci);
    ledger_holder_totals_t t = {0};
    if (!ci) return PP_ENOPRIVMEM;
    if (s->holder) ledger_holder_totals(s->holder, &t);
    pinpool__v1__client_info__init(ci);
    ci->session_id = s->id;
    ci->pid = (uint32_t)s->pid;
    ci->uid = (uint32_t)s->uid;
    ci->gid = (uint32_t)s->gid;
    ci->name = (char *)s->name;
    ci->connected_since_unix_ms = s->connected_ms;
    ci->bytes_held = t.buf_bytes + t.obj_bytes;
    ci->bytes_charged = ledger_uid_charged(l, s->uid);
    ci->buffers = t.buffers;
    ci->objects = t.objects;
    ci->requests = s->requests;
    ci->detached = s->detached;
    ci->detached_deadline_unix_ms = session_detached_deadline(s);
    st->clients[--i] = ci;
  }
  st->n_clients = sessions->n;
  return 0;
}

int stats_build(const stats_source_t *src, const Pinpool__V1__StatsRequest *rq,
                Pinpool__V1__Stats **ret, arena_t *a) {
  ledger_t *l = src->ledger;
  const region_t *r = ledger_region(l);
  Pinpool__V1__Stats *st = arena_alloc(a, sizeof *st);
  size_t ncaches = ledger_ncaches(l);
  ledger_totals_t t;
  buddy_stats_t bs;
  uint64_t slab_bytes = 0;

  if (!st) return PP_ENOPRIVMEM;
  pinpool__v1__stats__init(st);
  ledger_buddy_stats(l, &bs);
  ledger_get_totals(l, &t);
  st->version = (char *)PP_VERSION;
  st->uptime_ms = src->uptime_ms;
  st->region_size = region_size(r);
  st->page_size = region_page_size(r);
  st->hugepages = region_hugepages(r);
  st->physical_addresses = region_phys_known(r);
  st->largest_contiguous_run = region_largest_run(r);
  st->free_bytes = bs.free_bytes;
  st->max_order = bs.max_order;
  st->largest_free_block = bs.largest_free;
  st->largest_free_contiguous = ledger_largest_free_contig(l);
  st->min_block = BUDDY_MIN_SIZE;
  st->n_free_per_order = st->n_frag_index = bs.max_order + 1;
  st->free_per_order = arena_alloc(a, (bs.max_order + 1) * sizeof *st->free_per_order);
  st->frag_index = arena_alloc(a, (bs.max_order + 1) * sizeof *st->frag_index);
  if (!st->free_per_order || !st->frag_index) return PP_ENOPRIVMEM;
  for (unsigned o = 0; o <= bs.max_order && o < BUDDY_NR_ORDERS; o++) {
    st->free_per_order[o] = bs.nr_free[o];
    st->frag_index[o] = bs.frag_index[o];
  }

  if (ncaches) {
    st->caches = arena_alloc(a, ncaches * sizeof *st->caches);
    if (!st->caches) return PP_ENOPRIVMEM;
  }
  for (size_t i = 0; i < ncaches; i++) {
    Pinpool__V1__SlabInfo *si = arena_alloc(a, sizeof *si);
    ledger_cache_stats_t cs;
    const slab_info_t *in = &cs.slab;
    if (!si) return PP_ENOPRIVMEM;
    ledger_cache_stats(l, i, &cs);
    pinpool__v1__slab_info__init(si);
    si->name = (char *)cs.name;
    si->cache_id = in->id;
    si->active_objs = in->active_objs;
    si->num_objs = in->num_objs;
    si->object_size = in->object_size;
    si->objs_per_slab = in->objs_per_slab;
    si->pages_per_slab = in->pages_per_slab;
    si->slab_bytes = (uint64_t)in->pages_per_slab * BUDDY_MIN_SIZE;
    si->active_slabs = in->active_slabs;
    si->num_slabs = in->num_slabs;
    si->full_slabs = in->full_slabs;
    si->partial_slabs = in->partial_slabs;
    si->empty_slabs = in->empty_slabs;
    si->objs_in_magazines = cs.mag.objs_in_depot + cs.mag.objs_in_cpus;
    si->waste_permille = in->waste_permille;
    si->align = in->align;
    slab_bytes += in->num_slabs * (uint64_t)in->pages_per_slab * BUDDY_MIN_SIZE;
    st->caches[i] = si;
  }
  st->n_caches = ncaches;
  st->used_bytes = t.buf_bytes + t.obj_bytes;
  st->cached_bytes = slab_bytes >= t.obj_bytes ? slab_bytes - t.obj_bytes : 0;

  if (build_clients(l, src->sessions, st, a)) return PP_ENOPRIVMEM;
  st->nr_buffers = t.nbufs;
  st->nr_clients = src->sessions->n;
  st->max_clients = src->max_clients;

  if (rq && rq->include_buffers && build_buffers(l, st, a)) return PP_ENOPRIVMEM;
  if (rq && rq->include_map && build_map(l, st, a)) return PP_ENOPRIVMEM;
  *ret = st;
  return 0;
}

const char *stats_trim(Pinpool__V1__Stats *st) {
  if (st->n_map) {
    st->n_map = 0;
    return "map";
  }
  if (st->n_buffers) {
    st->n_buffers = 0;
    return "map and buffer list";
  }
  if (st->n_clients) {
    st->n_clients = 0;
    return "map, buffer and client lists";
  }
  return NULL;
}
