/*
 * stats.c — the operator's snapshot (the Stats response): region, buddy, physical runs,
 * slab caches, daemon magazines, clients, and on request every buffer and a map of every
 * block — in one reply, or one list at a time in pages.
 *
 * Built from the ledger's read-only views (ledger_get_totals, ledger_cache_stats,
 * ledger_buf_get, ledger_walk_blocks_from, ...) and the daemon's list of sessions past
 * Hello; this file knows the Stats message, the ledger knows what is held, and neither
 * reaches into the other.
 *
 * Shapes follow what Linux users already read: free_per_order is /proc/buddyinfo's row,
 * frag_index is mm/vmstat.c's __fragmentation_index (-1000 when that order is free), and
 * each SlabInfo is a /proc/slabinfo row plus pinpool's extras.
 *
 * Two kinds of reply (StatsRequest.list):
 *   - SNAPSHOT, what daemons answered before paging and what old clients still get: the
 *     summary, every cache and client, and the buffers and the map when asked.  When it
 *     would exceed max_frame, stats_trim() drops the map, then the buffer list, then the
 *     client list, then halves the cache list until it fits, and handlers.c says what was
 *     left out in Response.message.
 *   - a page: the summary and one list (CACHES, CLIENTS, BUFFERS, MAP; SUMMARY: none),
 *     from StatsRequest.cursor on, in key order — cache id, session id, buffer handle,
 *     block offset — so a page is stable while things change: an item that goes away
 *     between pages is simply not listed, one that comes is listed when its key is still
 *     ahead of the cursor, and nothing is listed twice.  next_cursor is the last item's
 *     key + 1 (for the map, the end of its block) and more says whether items remain.
 *     The page is filled while the packed reply stays within max_frame: the summary's
 *     packed size (with next_cursor and more at their largest) plus STATS_ENVELOPE_MAX
 *     plus, per item, its exact packed size with tag and length.  A page always carries
 *     at least one item when any is left, so paging advances; the only item that can be
 *     larger than a page is a buffer with very many holders, whose holder lists are then
 *     cut to what fits (BufferInfo.nr_holders still counts them all).  stats_trim() is a
 *     safety net that never loses an item: it halves a page and moves its cursor back.
 *
 * Cost per reply.  The summary is O(1) in what clients hold — buddy counters, ledger
 * totals, counts — and never O(caches) or O(objects): cached_bytes comes from the buddy's
 * allocated bytes less the buffers' blocks, since slabs and buffers are the buddy's only
 * users.  Two of its figures cost up to O(the region's pages): the runs summarised
 * (region_run_stats, O(runs)) and the largest free contiguous block (a contiguity check
 * per free page at worst).  The handlers keep both in a stats_memo_t and find them again
 * only when they can have changed — the runs when region_generation() moves, the block
 * when the buddy's alloc or free count does — so a hundred pages in a row pay for them
 * once.  Pages:
 *   - caches: O(page + log caches) — the ledger keeps caches in id order and
 *     ledger_cache_index_from() finds the cursor by binary search;
 *   - clients: O(sessions) — the session list is in Hello order, not id order; the page's
 *     ids are chosen by a selection (quickselect, then a sort of the page), not a full
 *     sort;
 *   - buffers: O(buffers), by the same selection over the handle index alone
 *     (ledger_buf_next_handle: no buffer record is touched), then O(1) per item
 *     (ledger_buf_get) and O(holders) to describe it;
 *   - map: a comparison per block before the cursor, then a page of blocks classified
 *     (ledger_walk_blocks_from), and O(caches + slabs + objects held) to know each slab's
 *     objects in magazines (the ledger derives them from the objects held).
 * So listing all of N caches costs O(N log N) over its N / page pages, and clients,
 * buffers and the map O(N^2 / page) with small constants (docs/PROTOCOL.md has the
 * figures measured for 100,000 caches, 10,000 clients and 100,000 buffers).  Only admins
 * can ask, and every allocation comes from the response's arena, whose budget caps it.
 *
 * Accounting (what pinpoolctl can add up): used_bytes = live buffer blocks + objects held
 * by sessions, each at its charge (slab bytes / objects per slab, rounded down: its stride
 * and its share of the slab's tail — ledger.c); free_bytes = the buddy's free bytes;
 * cached_bytes = slab bytes not held by sessions (free objects, objects parked in
 * magazines, the part of tails no object is charged for) = the buddy's allocated bytes -
 * buffer blocks - objects held at their charge.  A slab holds at most objs_per_slab
 * objects, each charged at most slab_bytes / objs_per_slab, so cached is never negative,
 * and used + free + cached + quarantined == region_size (quarantined: blocks kept out of
 * the buddy for pages punched out of the region; ledger.c).  Damage from such pages shows
 * per buffer (damaged, lost_bytes), per client (damaged_buffers) and in total (lost,
 * quarantined, damaged, punched so far, objects set aside).  Per client: bytes_held = the
 * blocks of the buffers it holds (whoever pays for them) + its objects at their charge;
 * bytes_charged = what its uid pays — the blocks of the buffers charged to it, its
 * sessions' objects, and one slab per cache they hold objects in — the figure --quota
 * limits; cached_buffers and cached_bytes = what its client's buffer caches hold of those
 * buffers (blocks the session holds and its program does not), as the client last
 * reported them with an alloc_bulk or free_bulk, clamped to what the session holds.  Only
 * the client knows which of its blocks its program has, and counting that here would
 * cost a round trip per block, which is what the caches save.  Names (buffers, slabinfo
 * rows) are fully qualified, "~1000/frames", so operators see whose they are.
 * MapBlock.in_magazines is the ledger's derivation (see ledger_walk_blocks).
 *
 * Locks: none of our own; the map walk runs under the buddy lock and its callback only
 * takes arena memory.
 */
#include "stats.h"

#include "pools.h"

#include <stdlib.h>
#include <string.h>

#include "debug.h"
#include "region.h"

/* The protocol's Sort values are region_sort_state_t's. */
_Static_assert(PINPOOL__V1__PHYS_RUNS__SORT__SORT_OFF == (int)REGION_SORT_OFF, "sort state");
_Static_assert(PINPOOL__V1__PHYS_RUNS__SORT__SORT_NOT_HUGE == (int)REGION_SORT_NOT_HUGE,
               "sort state");
_Static_assert(PINPOOL__V1__PHYS_RUNS__SORT__SORT_ADOPTED == (int)REGION_SORT_ADOPTED,
               "sort state");
_Static_assert(PINPOOL__V1__PHYS_RUNS__SORT__SORT_UNKNOWN == (int)REGION_SORT_UNKNOWN,
               "sort state");
_Static_assert(PINPOOL__V1__PHYS_RUNS__SORT__SORT_INCOMPLETE == (int)REGION_SORT_INCOMPLETE,
               "sort state");
_Static_assert(PINPOOL__V1__PHYS_RUNS__SORT__SORT_DONE == (int)REGION_SORT_DONE, "sort state");

/* Field numbers of Stats' lists: an item's tag is part of its cost. */
enum {
  FIELD_CACHES = 15,
  FIELD_CLIENTS = 16,
  FIELD_BUFFERS = 17,
  FIELD_MAP = 18,
};

/* ---- sizes ---------------------------------------------------------------------------- */

static size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* What one element of the repeated message field `field`, packed in len bytes, adds. */
static size_t elem_cost(unsigned field, size_t len) {
  return varint_size((uint64_t)field << 3 | 2u) + varint_size(len) + len;
}

/* A page being filled: bytes and items left. */
typedef struct page {
  size_t room;   /* bytes left for items */
  uint64_t left; /* items left (the request's limit) */
  size_t n;      /* items taken */
  bool more;     /* an item was left for the next page */
} page_t;

/* Does an item of cost bytes go in?  The first always does: paging must advance. */
static bool page_take(page_t *p, size_t cost) {
  if (p->left == 0 || (p->n > 0 && cost > p->room)) {
    p->more = true;
    return false;
  }
  p->room = cost > p->room ? 0 : p->room - cost;
  p->left--;
  p->n++;
  return true;
}

/* Grow an arena array of pointers (old contents copied). */
static int grow(arena_t *a, void ***v, size_t n, size_t *cap) {
  size_t c;
  void **nv;
  if (n < *cap) return 0;
  c = *cap ? *cap * 2 : 64;
  nv = arena_alloc(a, c * sizeof *nv);
  if (!nv) return PP_ENOPRIVMEM;
  if (n) memcpy(nv, *v, n * sizeof *nv);
  *v = nv;
  *cap = c;
  return 0;
}

/* ---- picking the smallest keys -------------------------------------------------------- */

typedef struct keyed {
  uint64_t key;
  const void *p;
} keyed_t;

static int cmp_keyed(const void *x, const void *y) {
  const keyed_t *a = x, *b = y;
  return a->key < b->key ? -1 : a->key > b->key;
}

static void swap_keyed(keyed_t *a, keyed_t *b) {
  keyed_t t = *a;
  *a = *b;
  *b = t;
}

/* Rearrange v[0..n) so that v[0..k) are its k smallest keys, ascending: quickselect (a
 * three-way partition around a median of three: O(n) expected) and a sort of those k. */
static void smallest_first(keyed_t *v, size_t n, size_t k) {
  size_t lo = 0, hi = n;
  if (k > n) k = n;
  while (k < n && hi - lo > 1) {
    uint64_t x = v[lo].key, y = v[lo + (hi - lo) / 2].key, z = v[hi - 1].key;
    uint64_t p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    size_t lt = lo, i = lo, gt = hi;
    while (i < gt) {
      if (v[i].key < p)
        swap_keyed(&v[lt++], &v[i++]);
      else if (v[i].key > p)
        swap_keyed(&v[i], &v[--gt]);
      else
        i++;
    }
    if (k <= lt)
      hi = lt;
    else if (k >= gt)
      lo = gt;
    else
      break;
  }
  qsort(v, k, sizeof *v, cmp_keyed);
}

/* How many items to pick at a time for a page: what the page could hold were every item
 * the smallest possible (a few bytes), within the limit.  A page that takes them all
 * picks again from the rest. */
static size_t pick_count(const page_t *p, size_t remaining) {
  uint64_t k = p->room / 8 + 1;
  if (k > p->left) k = p->left;
  if (k < 16) k = 16;
  return k < remaining ? (size_t)k : remaining;
}

/* ---- items ---------------------------------------------------------------------------- */

static Pinpool__V1__SlabInfo *slab_info(ledger_t *l, size_t i, arena_t *a) {
  Pinpool__V1__SlabInfo *si = arena_alloc(a, sizeof *si);
  ledger_cache_stats_t cs;
  const slab_info_t *in = &cs.slab;

  if (!si) return NULL;
  ledger_cache_stats(l, i, &cs);
  pinpool__v1__slab_info__init(si);
  si->name = (char *)cs.name; /* lives until after packing */
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
  return si;
}

/* s's holder in pool (pools.h): NULL when it has not attached it. */
static const ledger_holder_t *holder_in(const session_t *s, uint32_t pool) {
  if (pool == 0) return s->holder;
  return s->pools ? s->pools[pool].holder : NULL;
}

static Pinpool__V1__ClientInfo *client_info(const ledger_t *l, uint32_t pool,
                                            const session_t *s, arena_t *a) {
  Pinpool__V1__ClientInfo *ci = arena_alloc(a, sizeof *ci);
  const ledger_holder_t *h = holder_in(s, pool);
  ledger_holder_totals_t t = {0};

  if (!ci) return NULL;
  if (h) ledger_holder_totals(h, &t);
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
  if (h) ci->damaged_buffers = ledger_holder_damaged(l, h);
  ci->cached_buffers = t.cached_buffers;
  ci->cached_bytes = t.cached_bytes;
  ci->detached = s->detached;
  ci->detached_deadline_unix_ms = session_detached_deadline(s);
  return ci;
}

/* A buffer with at most max_holders of its holders (all: UINT32_MAX). */
static Pinpool__V1__BufferInfo *buffer_info(const ledger_buf_info_t *b, uint32_t max_holders,
                                            arena_t *a) {
  Pinpool__V1__BufferInfo *bi = arena_alloc(a, sizeof *bi);
  uint32_t n = b->nholders < max_holders ? b->nholders : max_holders;

  if (!bi) return NULL;
  pinpool__v1__buffer_info__init(bi);
  bi->handle = b->handle;
  bi->offset = b->offset;
  bi->size = b->size;
  bi->phys_addr = b->phys;
  bi->contiguous = b->contiguous;
  if (b->qname) bi->name = (char *)b->qname; /* lives until after packing */
  bi->charged_uid = (uint32_t)b->charged_uid;
  bi->damaged = b->damaged;
  bi->lost_bytes = b->lost_bytes;
  bi->nr_holders = b->nholders;
  if (n) {
    bi->holder_pids = arena_alloc(a, n * sizeof *bi->holder_pids);
    bi->holder_sessions = arena_alloc(a, n * sizeof *bi->holder_sessions);
    if (!bi->holder_pids || !bi->holder_sessions) return NULL;
  }
  for (uint32_t h = 0; h < n; h++) {
    const ledger_ident_t *id = ledger_buf_holder(b->buf, h);
    bi->holder_pids[h] = (uint32_t)id->pid;
    bi->holder_sessions[h] = id->session_id;
  }
  bi->n_holder_pids = bi->n_holder_sessions = n;
  return bi;
}

static const Pinpool__V1__MapBlock__Kind map_kind[] = {
    [LEDGER_BLOCK_FREE] = PINPOOL__V1__MAP_BLOCK__KIND__FREE,
    [LEDGER_BLOCK_BUFFER] = PINPOOL__V1__MAP_BLOCK__KIND__BUFFER,
    [LEDGER_BLOCK_SLAB] = PINPOOL__V1__MAP_BLOCK__KIND__SLAB,
    [LEDGER_BLOCK_OTHER] = PINPOOL__V1__MAP_BLOCK__KIND__OTHER,
    [LEDGER_BLOCK_LOST] = PINPOOL__V1__MAP_BLOCK__KIND__LOST,
};

static Pinpool__V1__MapBlock *map_block(const ledger_block_t *lb, arena_t *a) {
  Pinpool__V1__MapBlock *b = arena_alloc(a, sizeof *b);
  if (!b) return NULL;
  pinpool__v1__map_block__init(b);
  b->offset = lb->offset;
  b->size = lb->size;
  b->kind = map_kind[lb->kind];
  if (lb->kind == LEDGER_BLOCK_SLAB) {
    b->inuse = lb->inuse;
    b->capacity = lb->capacity;
    b->in_magazines = lb->in_magazines;
  }
  return b;
}

/* ---- the map -------------------------------------------------------------------------- */

#define MAP_STOP 1 /* the walk's callback: the page is full */

typedef struct map_ctx {
  arena_t *a;
  Pinpool__V1__MapBlock **out;
  size_t n, cap;
  uint64_t from; /* blocks starting here or later */
  page_t *page;  /* NULL: every block (SNAPSHOT) */
} map_ctx_t;

static int map_visit(void *ctx, const ledger_block_t *lb) {
  map_ctx_t *m = ctx;
  Pinpool__V1__MapBlock *b;

  if (lb->offset < m->from) return 0;
  if (!(b = map_block(lb, m->a))) return PP_ENOPRIVMEM;
  if (m->page &&
      !page_take(m->page, elem_cost(FIELD_MAP, pinpool__v1__map_block__get_packed_size(b))))
    return MAP_STOP;
  if (grow(m->a, (void ***)&m->out, m->n, &m->cap)) return PP_ENOPRIVMEM;
  m->out[m->n++] = b;
  return 0;
}

static int build_map(ledger_t *l, Pinpool__V1__Stats *st, uint64_t from, page_t *page,
                     arena_t *a) {
  map_ctx_t m = {.a = a, .from = from, .page = page};
  int rc = ledger_walk_blocks_from(l, from, map_visit, &m);
  if (rc < 0) return rc;
  st->map = m.out;
  st->n_map = m.n;
  if (m.n) st->next_cursor = m.out[m.n - 1]->offset + m.out[m.n - 1]->size;
  return 0;
}

/* ---- the other lists ------------------------------------------------------------------ */

/* Caches with ids from `from` on: O(log caches) to find the first, then O(1) each. */
static int build_caches(ledger_t *l, Pinpool__V1__Stats *st, uint64_t from, page_t *page,
                        arena_t *a) {
  size_t n = ledger_ncaches(l),
         i = from > UINT32_MAX ? n : ledger_cache_index_from(l, (uint32_t)from);
  size_t cap = page ? 0 : n - i;

  if (!page && cap) {
    st->caches = arena_alloc(a, cap * sizeof *st->caches);
    if (!st->caches) return PP_ENOPRIVMEM;
  }
  for (; i < n; i++) {
    Pinpool__V1__SlabInfo *si = slab_info(l, i, a);
    if (!si) return PP_ENOPRIVMEM;
    if (page) {
      if (!page_take(page,
                     elem_cost(FIELD_CACHES, pinpool__v1__slab_info__get_packed_size(si))))
        break;
      if (grow(a, (void ***)&st->caches, st->n_caches, &cap)) return PP_ENOPRIVMEM;
    }
    st->caches[st->n_caches++] = si;
  }
  if (st->n_caches) st->next_cursor = (uint64_t)st->caches[st->n_caches - 1]->cache_id + 1;
  return 0;
}

/* Sessions with ids from `from` on, in id order (SNAPSHOT: all, oldest first); for a pool
 * other than the default, only the sessions attached to it (every session is in the
 * default pool). */
static int build_clients(const ledger_t *l, uint32_t pool, const session_list_t *sessions,
                         Pinpool__V1__Stats *st, uint64_t from, page_t *page, arena_t *a) {
  keyed_t *v;
  size_t m = 0, done = 0, cap = 0;

  if (!sessions->n) return 0;
  v = arena_alloc(a, sessions->n * sizeof *v);
  if (!v) return PP_ENOPRIVMEM;
  for (const session_t *s = sessions->head; s && m < sessions->n; s = s->next)
    if (s->id >= from && (pool == 0 || holder_in(s, pool))) v[m++] = (keyed_t){s->id, s};
  if (!page) {
    /* The list is newest first: oldest first is its reverse, as before paging. */
    st->clients = arena_alloc(a, (m ? m : 1) * sizeof *st->clients);
    if (!st->clients) return PP_ENOPRIVMEM;
    for (size_t i = 0; i < m; i++)
      if (!(st->clients[m - 1 - i] = client_info(l, pool, v[i].p, a))) return PP_ENOPRIVMEM;
    st->n_clients = m;
    return 0;
  }
  while (done < m && !page->more) {
    size_t k = pick_count(page, m - done);
    smallest_first(v + done, m - done, k);
    for (size_t i = done; i < done + k; i++) {
      Pinpool__V1__ClientInfo *ci = client_info(l, pool, v[i].p, a);
      if (!ci) return PP_ENOPRIVMEM;
      if (!page_take(page,
                     elem_cost(FIELD_CLIENTS, pinpool__v1__client_info__get_packed_size(ci))))
        break;
      if (grow(a, (void ***)&st->clients, st->n_clients, &cap)) return PP_ENOPRIVMEM;
      st->clients[st->n_clients++] = ci;
    }
    done += k;
  }
  if (st->n_clients) st->next_cursor = st->clients[st->n_clients - 1]->session_id + 1;
  return 0;
}

/* A buffer's packed size with n of its holders: each holder adds a pid and a session id
 * to two packed repeated fields. */
static size_t buffer_cost_with(const Pinpool__V1__BufferInfo *bi, uint32_t n) {
  Pinpool__V1__BufferInfo t = *bi;
  t.n_holder_pids = t.n_holder_sessions = n;
  return elem_cost(FIELD_BUFFERS, pinpool__v1__buffer_info__get_packed_size(&t));
}

/* The first buffer of a page that is larger than the whole page on its own: keep as
 * many holders as fit (binary search on the count), at least one. */
static void cut_holders(Pinpool__V1__BufferInfo *bi, size_t room) {
  uint32_t lo = 1, hi = (uint32_t)bi->n_holder_pids;
  if (hi == 0) return;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo + 1) / 2;
    if (buffer_cost_with(bi, mid) <= room)
      lo = mid;
    else
      hi = mid - 1;
  }
  bi->n_holder_pids = bi->n_holder_sessions = lo;
}

/* Buffers with handles from `from` on, in handle order. */
static int build_buffers(ledger_t *l, Pinpool__V1__Stats *st, uint64_t from, page_t *page,
                         arena_t *a) {
  ledger_totals_t t;
  ledger_buf_info_t info;
  keyed_t *v;
  uint64_t handle;
  size_t m = 0, done = 0, cap = 0, it = 0;

  ledger_get_totals(l, &t);
  if (!t.nbufs) return 0;
  v = arena_alloc(a, t.nbufs * sizeof *v);
  if (!v) return PP_ENOPRIVMEM;
  while (m < t.nbufs && ledger_buf_next_handle(l, &it, &handle))
    if (handle >= from) v[m++] = (keyed_t){handle, NULL};
  if (!page) {
    st->buffers = arena_alloc(a, (m ? m : 1) * sizeof *st->buffers);
    if (!st->buffers) return PP_ENOPRIVMEM;
  }
  while (done < m && !(page && page->more)) {
    size_t k = page ? pick_count(page, m - done) : m;
    smallest_first(v + done, m - done, k);
    for (size_t i = done; i < done + k; i++) {
      Pinpool__V1__BufferInfo *bi;
      bool found = ledger_buf_get(l, v[i].key, &info);
      PP_ASSERT(found); /* nothing changes while a reply is built */
      if (!found || !(bi = buffer_info(&info, UINT32_MAX, a))) return PP_ENOPRIVMEM;
      if (page) {
        size_t cost = elem_cost(FIELD_BUFFERS, pinpool__v1__buffer_info__get_packed_size(bi));
        if (page->n == 0 && cost > page->room) {
          cut_holders(bi, page->room);
          cost = buffer_cost_with(bi, (uint32_t)bi->n_holder_pids);
        }
        if (!page_take(page, cost)) break;
        if (grow(a, (void ***)&st->buffers, st->n_buffers, &cap)) return PP_ENOPRIVMEM;
      }
      st->buffers[st->n_buffers++] = bi;
    }
    done += k;
  }
  if (st->n_buffers) st->next_cursor = st->buffers[st->n_buffers - 1]->handle + 1;
  return 0;
}

/* ---- the summary ---------------------------------------------------------------------- */

/* The runs summarised and the largest free contiguous block: from the memo while neither
 * can have changed. */
static void summarise(const stats_source_t *src, const buddy_stats_t *bs,
                      region_run_stats_t *ret_runs, uint64_t *ret_contig) {
  const region_t *r = ledger_region(src->ledger);
  stats_memo_t fresh = {.valid = true,
                        .generation = region_generation(r),
                        .allocs = bs->allocs,
                        .frees = bs->frees};
  stats_memo_t *m = src->memo ? src->memo : &fresh;

  if (m == &fresh || !m->valid || m->generation != fresh.generation) {
    region_run_stats(r, &fresh.runs);
    fresh.largest_free_contig = ledger_largest_free_contig(src->ledger);
  } else if (m->allocs != fresh.allocs || m->frees != fresh.frees) {
    fresh.runs = m->runs;
    fresh.largest_free_contig = ledger_largest_free_contig(src->ledger);
  } else {
    fresh = *m;
  }
  if (src->memo) *src->memo = fresh;
  *ret_runs = fresh.runs;
  *ret_contig = fresh.largest_free_contig;
}

static int build_runs(const region_t *r, const region_run_stats_t *rs, Pinpool__V1__Stats *st,
                      arena_t *a) {
  Pinpool__V1__PhysRuns *pr = arena_alloc(a, sizeof *pr);
  region_sort_info_t si;

  if (!pr) return PP_ENOPRIVMEM;
  pinpool__v1__phys_runs__init(pr);
  if (region_sort_info(r, &si)) return PP_EINVAL;
  pr->known = rs->known;
  pr->nr_runs = rs->nr_runs;
  pr->longest = rs->longest;
  pr->pages = rs->pages;
  pr->descents = rs->descents;
  if (rs->nr_buckets) {
    pr->buckets = arena_alloc(a, rs->nr_buckets * sizeof *pr->buckets);
    if (!pr->buckets) return PP_ENOPRIVMEM;
    memcpy(pr->buckets, rs->buckets, rs->nr_buckets * sizeof *pr->buckets);
    pr->n_buckets = rs->nr_buckets;
  }
  pr->sort = (Pinpool__V1__PhysRuns__Sort)si.state;
  if (si.why[0] && !(pr->sort_why = arena_strdup(a, si.why))) return PP_ENOPRIVMEM;
  pr->sort_placed = si.placed;
  pr->sort_elapsed_ms = si.elapsed_ns / 1000000u;
  if (si.before.known) {
    pr->unsorted_nr_runs = si.before.nr_runs;
    pr->unsorted_longest = si.before.longest;
  }
  st->runs = pr;
  return 0;
}

/* The pool as Stats.pools shows it. */
static Pinpool__V1__PoolInfo *pool_info(const pool_t *p, arena_t *a) {
  Pinpool__V1__PoolInfo *pi = arena_alloc(a, sizeof *pi);
  const region_t *r = ledger_region(p->ledger);
  const ledger_config_t *lc = ledger_config(p->ledger);
  ledger_totals_t t;

  if (!pi) return NULL;
  pinpool__v1__pool_info__init(pi);
  ledger_get_totals(p->ledger, &t);
  pi->id = p->id;
  pi->name = (char *)p->name;
  pi->region_size = region_size(r);
  pi->page_size = region_page_size(r);
  pi->hugepages = region_hugepages(r);
  pi->numa_node = p->bind_node ? (int32_t)p->numa_node : -1;
  pi->quota = lc->quota;
  pi->writers = (char *)p->writers_text;
  pi->readers = (char *)p->readers_text;
  pi->used_bytes = t.buf_bytes + t.obj_bytes;
  pi->free_bytes = ledger_free_bytes(p->ledger);
  return pi;
}

static int build_summary(const stats_source_t *src, Pinpool__V1__Stats *st, arena_t *a) {
  ledger_t *l = src->ledger;
  const region_t *r = ledger_region(l);
  ledger_totals_t t;
  buddy_stats_t bs;
  region_run_stats_t runs;
  ledger_holes_stats_t hs;
  uint64_t allocated;
  int rc;

  ledger_buddy_stats(l, &bs);
  summarise(src, &bs, &runs, &st->largest_free_contiguous);
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
  st->min_block = BUDDY_MIN_SIZE;
  st->n_free_per_order = st->n_frag_index = bs.max_order + 1;
  st->free_per_order = arena_alloc(a, (bs.max_order + 1) * sizeof *st->free_per_order);
  st->frag_index = arena_alloc(a, (bs.max_order + 1) * sizeof *st->frag_index);
  if (!st->free_per_order || !st->frag_index) return PP_ENOPRIVMEM;
  for (unsigned o = 0; o <= bs.max_order && o < BUDDY_NR_ORDERS; o++) {
    st->free_per_order[o] = bs.nr_free[o];
    st->frag_index[o] = bs.frag_index[o];
  }
  st->used_bytes = t.buf_bytes + t.obj_bytes;
  ledger_holes_stats(l, &hs);
  st->lost_bytes = hs.lost_bytes;
  st->quarantined_bytes = hs.quarantined_bytes;
  st->damaged_buffers = hs.damaged_buffers;
  st->punched_bytes = hs.punched_bytes;
  st->objects_set_aside = hs.objects_aside;
  /* Slabs, buffers and quarantined blocks are the buddy's only users: what is allocated
   * and neither a buffer nor quarantined is slab memory, and what of it no object's charge
   * covers is cached. */
  allocated = bs.size - bs.free_bytes - hs.quarantined_bytes;
  st->cached_bytes =
      allocated >= t.buf_bytes + t.obj_bytes ? allocated - t.buf_bytes - t.obj_bytes : 0;
  st->nr_buffers = t.nbufs;
  st->nr_caches = t.ncaches;
  st->nr_clients = src->sessions->n;
  st->max_clients = src->max_clients;
  if ((rc = build_runs(r, &runs, st, a))) return rc;
  st->pool = src->pool;
  if (src->pools) {
    if (!(st->pools = arena_alloc(a, src->pools->n * sizeof *st->pools))) return PP_ENOPRIVMEM;
    for (uint32_t i = 0; i < src->pools->n; i++)
      if (!(st->pools[i] = pool_info(&src->pools->v[i], a))) return PP_ENOPRIVMEM;
    st->n_pools = src->pools->n;
  }
  return 0;
}

/* ---- the reply ------------------------------------------------------------------------ */

int stats_build(const stats_source_t *src, const Pinpool__V1__StatsRequest *rq,
                Pinpool__V1__Stats **ret, arena_t *a) {
  ledger_t *l = src->ledger;
  Pinpool__V1__Stats *st = arena_alloc(a, sizeof *st);
  Pinpool__V1__StatsList list = rq ? rq->list : PINPOOL__V1__STATS_LIST__STATS_LIST_SNAPSHOT;
  uint64_t from = rq ? rq->cursor : 0;
  page_t page = {0};
  size_t fixed;
  int rc;

  if (!st) return PP_ENOPRIVMEM;
  pinpool__v1__stats__init(st);
  if ((rc = build_summary(src, st, a))) return rc;
  st->list = list;

  switch (list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_SNAPSHOT:
    if ((rc = build_caches(l, st, 0, NULL, a)) ||
        (rc = build_clients(l, src->pool, src->sessions, st, 0, NULL, a)) ||
        (rq && rq->include_buffers && (rc = build_buffers(l, st, 0, NULL, a))) ||
        (rq && rq->include_map && (rc = build_map(l, st, 0, NULL, a))))
      return rc;
    st->next_cursor = 0; /* a snapshot has no cursor */
    *ret = st;
    return 0;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY: *ret = st; return 0;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES:
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS:
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS:
  case PINPOOL__V1__STATS_LIST__STATS_LIST_MAP: break;
  default: return PP_EINVAL;
  }

  /* The summary as it will be packed at its largest: a page's cursor fields included. */
  st->next_cursor = UINT64_MAX;
  st->more = true;
  fixed = STATS_ENVELOPE_MAX + pinpool__v1__stats__get_packed_size(st);
  st->next_cursor = from;
  st->more = false;
  page.room = src->max_frame > fixed ? src->max_frame - fixed : 0;
  page.left = rq->limit ? rq->limit : UINT64_MAX;

  switch (list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES:
    rc = build_caches(l, st, from, &page, a);
    break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS:
    rc = build_clients(l, src->pool, src->sessions, st, from, &page, a);
    break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS:
    rc = build_buffers(l, st, from, &page, a);
    break;
  default: rc = build_map(l, st, from, &page, a); break;
  }
  if (rc) return rc;
  st->more = page.more;
  *ret = st;
  return 0;
}

/* ---- fitting max_frame ---------------------------------------------------------------- */

/* A page keeps its first half; the cursor goes back to the first item left out. */
static const char *trim_page(Pinpool__V1__Stats *st) {
  static const char cut[] = "the end of this page (the next page brings it)";
  size_t keep;

  switch (st->list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES:
    if (st->n_caches < 2) return NULL;
    keep = st->n_caches / 2;
    st->next_cursor = st->caches[keep]->cache_id;
    st->n_caches = keep;
    break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS:
    if (st->n_clients < 2) return NULL;
    keep = st->n_clients / 2;
    st->next_cursor = st->clients[keep]->session_id;
    st->n_clients = keep;
    break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS:
    if (st->n_buffers < 2) return NULL;
    keep = st->n_buffers / 2;
    st->next_cursor = st->buffers[keep]->handle;
    st->n_buffers = keep;
    break;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_MAP:
    if (st->n_map < 2) return NULL;
    keep = st->n_map / 2;
    st->next_cursor = st->map[keep]->offset;
    st->n_map = keep;
    break;
  default: return NULL;
  }
  st->more = true;
  return cut;
}

static const char *trim_snapshot(Pinpool__V1__Stats *st);

const char *stats_trim(Pinpool__V1__Stats *st) {
  const char *cut = st->list != PINPOOL__V1__STATS_LIST__STATS_LIST_SNAPSHOT
                        ? trim_page(st)
                        : trim_snapshot(st);
  if (cut) return cut;
  /* Last: the pool list (up to POOLS_MAX entries with their access lists), which a small
   * max_frame may not hold beside the summary. */
  if (st->n_pools) {
    st->n_pools = 0;
    return "the pool list";
  }
  return NULL;
}

static const char *trim_snapshot(Pinpool__V1__Stats *st) {
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
  if (st->n_caches) {
    st->n_caches /= 2;
    return "map, buffer and client lists and part of the cache list";
  }
  return NULL;
}
