/*
 * stats.c — the operator's snapshot (the Stats response): region, buddy, slab caches,
 * daemon magazines, clients, and on request every buffer and a map of every block.
 *
 * Shapes follow what Linux users already read: free_per_order is /proc/buddyinfo's row,
 * frag_index is mm/vmstat.c's __fragmentation_index (-1000 when that order is free), and
 * each SlabInfo is a /proc/slabinfo row plus pinpool's extras.
 *
 * Accounting (what pinpoolctl can add up): used_bytes = live buffer blocks + object_size
 * of objects held by sessions; free_bytes = the buddy's free bytes; cached_bytes = slab
 * bytes not held by sessions (free objects, objects parked in magazines, tails).  With no
 * other buddy users, used + free + cached == region_size.
 *
 * MapBlock.in_magazines per slab: the magazine layer does not say which objects it holds,
 * so it is derived: objects the slab has allocated minus objects sessions hold in it (every
 * object allocated from a slab is either held by a session or parked in a daemon magazine).
 * Slabs are buddy blocks, naturally aligned, so an object's slab is its offset rounded down
 * to the slab size.
 *
 * Cost: O(blocks + objects held) for the map, O(buffers * holders) for the buffer list; only
 * admins can ask, and every allocation comes from the response's arena, whose budget caps
 * it.  The server drops the map, then the buffer list, when the packed response would
 * exceed the frame limit (it says so in Response.message).
 *
 * Locks: none of our own; buddy_walk holds the buddy lock while it calls back, and the
 * callbacks only read daemon-private maps.
 */
#include <stdlib.h>
#include <string.h>

#include "pool_int.h"

typedef struct slabrec {
  uint64_t offset, bytes;
  uint32_t inuse, capacity, held;
} slabrec_t;

typedef struct map_ctx {
  pool_t *p;
  arena_t *a;
  Pinpool__V1__MapBlock **out;
  size_t n, cap;
  u64map_t *slab_index; /* slab offset -> index into slabs */
  slabrec_t *slabs;
  bool failed;
} map_ctx_t;

typedef struct slab_collect {
  slabrec_t *v;
  size_t n, cap;
  bool failed;
} slab_collect_t;

static void collect_slab(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse,
                         uint32_t capacity) {
  slab_collect_t *c = ctx;
  if (c->failed) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    slabrec_t *v = realloc(c->v, cap * sizeof *v);
    if (!v) {
      c->failed = true;
      return;
    }
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n++] = (slabrec_t){offset, bytes, inuse, capacity, 0};
}

static void map_block(void *ctx, uint64_t offset, unsigned order, bool is_free) {
  map_ctx_t *m = ctx;
  Pinpool__V1__MapBlock *b;
  uint64_t v;

  if (m->failed) return;
  if (m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 256;
    Pinpool__V1__MapBlock **o = arena_alloc(m->a, cap * sizeof *o);
    if (!o) {
      m->failed = true;
      return;
    }
    if (m->n) memcpy(o, m->out, m->n * sizeof *o);
    m->out = o;
    m->cap = cap;
  }
  b = arena_alloc(m->a, sizeof *b);
  if (!b) {
    m->failed = true;
    return;
  }
  pinpool__v1__map_block__init(b);
  b->offset = offset;
  b->size = buddy_order_size(order);
  if (is_free) {
    b->kind = PINPOOL__V1__MAP_BLOCK__KIND__FREE;
  } else if (u64map_get(&m->p->by_offset, offset, NULL)) {
    b->kind = PINPOOL__V1__MAP_BLOCK__KIND__BUFFER;
  } else if (u64map_get(m->slab_index, offset, &v)) {
    slabrec_t *r = &m->slabs[v];
    b->kind = PINPOOL__V1__MAP_BLOCK__KIND__SLAB;
    b->inuse = r->inuse;
    b->capacity = r->capacity;
    b->in_magazines = r->inuse >= r->held ? r->inuse - r->held : 0;
  } else {
    b->kind = PINPOOL__V1__MAP_BLOCK__KIND__OTHER;
  }
  m->out[m->n++] = b;
}

static int build_map(pool_t *p, Pinpool__V1__Stats *st, arena_t *a) {
  slab_collect_t sc = {0};
  u64map_t index;
  map_ctx_t m = {.p = p, .a = a, .slab_index = &index};
  uint64_t k, v, cid;
  size_t it = 0;
  int rc = 0;

  u64map_init(&index);
  for (size_t i = 0; i < p->ncaches; i++)
    slab_cache_walk(p->cache_list[i]->cache, collect_slab, &sc);
  if (sc.failed) goto nomem;
  for (size_t i = 0; i < sc.n; i++)
    if (u64map_put(&index, sc.v[i].offset, i)) goto nomem;
  /* Objects held by sessions, counted into their slabs. */
  for (session_t *s = p->sessions; s; s = s->next) {
    it = 0;
    while (u64map_next(&s->objs, &it, &k, &cid)) {
      pcache_t *pc = pool_cache_by_id(p, (uint32_t)cid);
      if (pc && u64map_get(&index, k & ~(pc->slab_bytes - 1), &v)) sc.v[v].held++;
    }
  }
  m.slabs = sc.v;
  buddy_walk(p->buddy, map_block, &m);
  if (m.failed) goto nomem;
  st->map = m.out;
  st->n_map = m.n;
  goto out;
nomem:
  rc = PP_ENOMEM;
out:
  free(sc.v);
  u64map_fini(&index);
  return rc;
}

static int cmp_handle(const void *x, const void *y) {
  const pbuf_t *a = *(pbuf_t *const *)x, *b = *(pbuf_t *const *)y;
  return a->handle < b->handle ? -1 : a->handle > b->handle;
}

static int build_buffers(pool_t *p, Pinpool__V1__Stats *st, arena_t *a) {
  size_t n = u64map_len(&p->by_handle), it = 0, i = 0;
  pbuf_t **v;
  uint64_t k, val;

  if (!n) return 0;
  v = arena_alloc(a, n * sizeof *v);
  st->buffers = arena_alloc(a, n * sizeof *st->buffers);
  if (!v || !st->buffers) return PP_ENOMEM;
  while (u64map_next(&p->by_handle, &it, &k, &val))
    v[i++] = (pbuf_t *)(uintptr_t)val;
  qsort(v, n, sizeof *v, cmp_handle);
  for (i = 0; i < n; i++) {
    pbuf_t *b = v[i];
    Pinpool__V1__BufferInfo *bi = arena_alloc(a, sizeof *bi);
    if (!bi) return PP_ENOMEM;
    pinpool__v1__buffer_info__init(bi);
    bi->handle = b->handle;
    bi->offset = b->offset;
    bi->size = b->size;
    bi->phys_addr = b->phys;
    bi->contiguous = b->contiguous;
    if (b->name) bi->name = b->name;
    bi->holder_pids = arena_alloc(a, b->nholders * sizeof *bi->holder_pids);
    bi->holder_sessions = arena_alloc(a, b->nholders * sizeof *bi->holder_sessions);
    if (!bi->holder_pids || !bi->holder_sessions) return PP_ENOMEM;
    for (uint32_t h = 0; h < b->nholders; h++) {
      bi->holder_pids[h] = (uint32_t)b->holders[h]->pid;
      bi->holder_sessions[h] = b->holders[h]->id;
    }
    bi->n_holder_pids = bi->n_holder_sessions = b->nholders;
    st->buffers[i] = bi;
  }
  st->n_buffers = n;
  return 0;
}

int stats_build(pool_t *p, const Pinpool__V1__StatsRequest *rq, Pinpool__V1__Stats **ret,
                arena_t *a) {
  Pinpool__V1__Stats *st = arena_alloc(a, sizeof *st);
  buddy_stats_t bs;
  uint64_t slab_bytes = 0;
  size_t i;

  if (!st) return PP_ENOMEM;
  pinpool__v1__stats__init(st);
  buddy_get_stats(p->buddy, &bs);
  st->version = (char *)PP_VERSION;
  st->uptime_ms = pool_now_ms() - p->started_ms;
  st->region_size = region_size(p->region);
  st->page_size = region_page_size(p->region);
  st->hugepages = region_hugepages(p->region);
  st->physical_addresses = region_phys_known(p->region);
  st->largest_contiguous_run = region_largest_run(p->region);
  st->free_bytes = bs.free_bytes;
  st->max_order = bs.max_order;
  st->largest_free_block = bs.largest_free;
  st->largest_free_contiguous = buddy_largest_free_contig(p->buddy);
  st->min_block = BUDDY_MIN_SIZE;
  st->n_free_per_order = st->n_frag_index = bs.max_order + 1;
  st->free_per_order = arena_alloc(a, (bs.max_order + 1) * sizeof *st->free_per_order);
  st->frag_index = arena_alloc(a, (bs.max_order + 1) * sizeof *st->frag_index);
  if (!st->free_per_order || !st->frag_index) return PP_ENOMEM;
  for (unsigned o = 0; o <= bs.max_order && o < BUDDY_NR_ORDERS; o++) {
    st->free_per_order[o] = bs.nr_free[o];
    st->frag_index[o] = bs.frag_index[o];
  }

  if (p->ncaches) {
    st->caches = arena_alloc(a, p->ncaches * sizeof *st->caches);
    if (!st->caches) return PP_ENOMEM;
  }
  for (i = 0; i < p->ncaches; i++) {
    pcache_t *pc = p->cache_list[i];
    Pinpool__V1__SlabInfo *si = arena_alloc(a, sizeof *si);
    slab_info_t in;
    mag_stats_t ms;
    if (!si) return PP_ENOMEM;
    slab_cache_info(pc->cache, &in);
    mag_get_stats(pc->depot, &ms);
    pinpool__v1__slab_info__init(si);
    si->name = pc->name;
    si->cache_id = in.id;
    si->active_objs = in.active_objs;
    si->num_objs = in.num_objs;
    si->object_size = in.object_size;
    si->objs_per_slab = in.objs_per_slab;
    si->pages_per_slab = in.pages_per_slab;
    si->slab_bytes = (uint64_t)in.pages_per_slab * BUDDY_MIN_SIZE;
    si->active_slabs = in.active_slabs;
    si->num_slabs = in.num_slabs;
    si->full_slabs = in.full_slabs;
    si->partial_slabs = in.partial_slabs;
    si->empty_slabs = in.empty_slabs;
    si->objs_in_magazines = ms.objs_in_depot + ms.objs_in_cpus;
    si->waste_permille = in.waste_permille;
    si->align = in.align;
    slab_bytes += in.num_slabs * (uint64_t)in.pages_per_slab * BUDDY_MIN_SIZE;
    st->caches[i] = si;
  }
  st->n_caches = p->ncaches;
  st->used_bytes = p->buf_bytes + p->obj_bytes;
  st->cached_bytes = slab_bytes >= p->obj_bytes ? slab_bytes - p->obj_bytes : 0;

  if (p->nsessions) {
    session_t *s;
    st->clients = arena_alloc(a, p->nsessions * sizeof *st->clients);
    if (!st->clients) return PP_ENOMEM;
    /* Oldest first: the list is newest first, so fill from the back. */
    i = p->nsessions;
    for (s = p->sessions; s && i > 0; s = s->next) {
      Pinpool__V1__ClientInfo *ci = arena_alloc(a, sizeof *ci);
      if (!ci) return PP_ENOMEM;
      pinpool__v1__client_info__init(ci);
      ci->session_id = s->id;
      ci->pid = (uint32_t)s->pid;
      ci->uid = (uint32_t)s->uid;
      ci->gid = (uint32_t)s->gid;
      ci->name = s->name;
      ci->connected_since_unix_ms = s->connected_ms;
      ci->bytes_held = s->buf_bytes + s->obj_bytes;
      ci->buffers = u64map_len(&s->holds);
      ci->objects = u64map_len(&s->objs);
      ci->requests = s->requests;
      st->clients[--i] = ci;
    }
    st->n_clients = p->nsessions;
  }
  st->nr_buffers = p->nbufs;
  st->nr_clients = p->nsessions;
  st->max_clients = p->cfg.max_clients;

  if (rq && rq->include_buffers && build_buffers(p, st, a)) return PP_ENOMEM;
  if (rq && rq->include_map && build_map(p, st, a)) return PP_ENOMEM;
  *ret = st;
  return 0;
}
