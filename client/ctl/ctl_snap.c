/*
 * ctl_snap.c — pinpoolctl follows the pages of Stats (docs/PROTOCOL.md, "stats").
 *
 * What: a command names the lists it needs; we ask for each in turn (CACHES, CLIENTS,
 * BUFFERS, MAP; SUMMARY when it needs none) from cursor 0, then from each reply's
 * next_cursor while it says more, and keep every reply.  The snapshot's Stats is the
 * last reply's summary (the freshest) with each list put together from its pages: arrays
 * of pointers into the replies, so nothing is copied and the views see one ordinary
 * Stats.  With 100,000 caches that is about a hundred replies of max_frame each.
 *
 * Older daemons.  A daemon that predates paging ignores the fields it does not know and
 * answers with its one reply — caches and clients, buffers and the map when asked (we ask
 * with include_buffers / include_map too) — whose `list` is SNAPSHOT.  That reply is the
 * snapshot, as before; what it said it left out becomes the note.
 *
 * The contract we hold the daemon to, since a loop over replies must end: every page is
 * for the list asked, its keys ascend and none is below the cursor (for the map, each
 * block starts at or after it), and a page that says more has items and a next_cursor
 * beyond the cursor.  Keys therefore strictly grow from page to page and the loop ends.
 * Items that come and go between pages are the daemon's business: a key is listed at most
 * once, so the lists hold each item once, or not at all when it went meanwhile.
 *
 * Memory: the replies and one pointer array per list, private memory (PP_ENOPRIVMEM);
 * the replies' own size is bounded by frame.c's budget per frame.
 *
 * No locks: one thread.
 */
#include "ctl_snap.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "pinpool_err.h"

typedef Pinpool__V1__Response resp_t;
typedef Pinpool__V1__Stats stats_t;

/* One list being put together. */
typedef struct gather {
  void **v;
  size_t n, cap;
} gather_t;

static int keep_reply(ctl_snapshot_t *s, resp_t *r) {
  if (s->nresp == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    resp_t **v = realloc(s->resp, cap * sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    s->resp = v;
    s->cap = cap;
  }
  s->resp[s->nresp++] = r;
  return 0;
}

static int gather_add(gather_t *g, void *item) {
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 256;
    void **v = realloc(g->v, cap * sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    g->v = v;
    g->cap = cap;
  }
  g->v[g->n++] = item;
  return 0;
}

/* A page's items of list: where they are, how many, and each one's key. */
static size_t page_items(const stats_t *st, Pinpool__V1__StatsList list, void ***ret_v) {
  switch (list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES:
    *ret_v = (void **)st->caches;
    return st->n_caches;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS:
    *ret_v = (void **)st->clients;
    return st->n_clients;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS:
    *ret_v = (void **)st->buffers;
    return st->n_buffers;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_MAP: *ret_v = (void **)st->map; return st->n_map;
  default: *ret_v = NULL; return 0;
  }
}

static uint64_t item_key(Pinpool__V1__StatsList list, const void *item) {
  switch (list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES:
    return ((const Pinpool__V1__SlabInfo *)item)->cache_id;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS:
    return ((const Pinpool__V1__ClientInfo *)item)->session_id;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS:
    return ((const Pinpool__V1__BufferInfo *)item)->handle;
  default: return ((const Pinpool__V1__MapBlock *)item)->offset;
  }
}

static const char *list_name(Pinpool__V1__StatsList list) {
  switch (list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY: return "summary";
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES: return "cache";
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS: return "client";
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS: return "buffer";
  case PINPOOL__V1__STATS_LIST__STATS_LIST_MAP: return "map";
  default: return "snapshot";
  }
}

/* Every page of one list into g.  On the very first request of a snapshot, *ret_old is
 * set when the answer came from a daemon that does not page (then g stays empty). */
static int fetch_list(ctl_stats_fetch_fn fetch, void *ctx, Pinpool__V1__StatsList list,
                      unsigned lists, ctl_snapshot_t *s, gather_t *g, bool first, bool *ret_old,
                      char *why, size_t why_len) {
  Pinpool__V1__StatsRequest rq = PINPOOL__V1__STATS_REQUEST__INIT;
  bool have_key = false;
  uint64_t last = 0;
  int rc;

  rq.list = list;
  /* For a daemon before paging, whose one reply must bring what we need. */
  rq.include_buffers = (lists & CTL_LIST_BUFFERS) != 0;
  rq.include_map = (lists & CTL_LIST_MAP) != 0;
  for (;;) {
    resp_t *r = NULL;
    const stats_t *st;
    void **items;
    size_t n;

    if ((rc = fetch(ctx, &rq, &r)) < 0) return rc;
    if ((rc = keep_reply(s, r)) < 0) {
      frame_free_response(r);
      snprintf(why, why_len, "out of memory for the replies");
      return rc;
    }
    s->replies++;
    st = r->stats;
    if (st->list != list) {
      if (first && st->list == PINPOOL__V1__STATS_LIST__STATS_LIST_SNAPSHOT) {
        *ret_old = true;
        return 0;
      }
      snprintf(why, why_len, "asked for the %s list, pinpoold sent the %s list",
               list_name(list), list_name(st->list));
      return PP_EPROTO;
    }
    first = false;
    n = page_items(st, list, &items);
    for (size_t i = 0; i < n; i++) {
      uint64_t key = item_key(list, items[i]);
      if (key < rq.cursor || (have_key && key <= last)) {
        snprintf(why, why_len,
                 "pinpoold's %s page from %" PRIu64 " lists key %" PRIu64 " out of order",
                 list_name(list), rq.cursor, key);
        return PP_EPROTO;
      }
      if ((rc = gather_add(g, items[i])) < 0) {
        snprintf(why, why_len, "out of memory for the %s list", list_name(list));
        return rc;
      }
      have_key = true;
      last = key;
    }
    if (!st->more || list == PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY) return 0;
    if (n == 0 || st->next_cursor <= rq.cursor || st->next_cursor <= last) {
      snprintf(why, why_len, "pinpoold's %s pages do not advance (cursor %" PRIu64 ")",
               list_name(list), rq.cursor);
      return PP_EPROTO;
    }
    rq.cursor = st->next_cursor;
  }
}

void ctl_snapshot_free(ctl_snapshot_t *s) {
  for (size_t i = 0; i < s->nresp; i++)
    frame_free_response(s->resp[i]);
  free(s->resp);
  free(s->stats.caches);
  free(s->stats.clients);
  free(s->stats.buffers);
  free(s->stats.map);
  free(s->note);
  memset(s, 0, sizeof *s);
}

int ctl_snapshot_fetch(ctl_stats_fetch_fn fetch, void *ctx, unsigned lists, ctl_snapshot_t *ret,
                       char *why, size_t why_len) {
  static const struct {
    unsigned bit;
    Pinpool__V1__StatsList list;
  } order[] = {
      {CTL_LIST_CACHES, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES},
      {CTL_LIST_CLIENTS, PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS},
      {CTL_LIST_BUFFERS, PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS},
      {CTL_LIST_MAP, PINPOOL__V1__STATS_LIST__STATS_LIST_MAP},
  };
  gather_t g[4] = {{0}};
  ctl_snapshot_t s = {0};
  bool old = false, first = true;
  const resp_t *last;
  int rc = 0;

  for (size_t i = 0; i < 4 && !old && !rc; i++) {
    if (!(lists & order[i].bit)) continue;
    rc = fetch_list(fetch, ctx, order[i].list, lists, &s, &g[i], first, &old, why, why_len);
    first = false;
  }
  if (!rc && first)
    rc = fetch_list(fetch, ctx, PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY, lists, &s, &g[0],
                    true, &old, why, why_len);
  if (rc) goto fail;

  last = s.resp[s.nresp - 1];
  s.paged = !old;
  if (old) {
    /* The one reply is the snapshot.  Its lists go into arrays of our own too, so that
     * ctl_snapshot_free frees the same things whichever daemon answered. */
    const stats_t *st = last->stats;
    for (size_t i = 0; i < 4; i++) {
      void **items;
      size_t n = page_items(st, order[i].list, &items);
      for (size_t k = 0; k < n; k++)
        if ((rc = gather_add(&g[i], items[k])) < 0) goto nomem;
    }
    if (last->message && last->message[0] && !(s.note = strdup(last->message))) {
      rc = PP_ENOPRIVMEM;
      goto nomem;
    }
  }
  s.stats = *last->stats; /* the freshest summary; its pointers lead into last */
  s.stats.caches = (Pinpool__V1__SlabInfo **)g[0].v;
  s.stats.n_caches = g[0].n;
  s.stats.clients = (Pinpool__V1__ClientInfo **)g[1].v;
  s.stats.n_clients = g[1].n;
  s.stats.buffers = (Pinpool__V1__BufferInfo **)g[2].v;
  s.stats.n_buffers = g[2].n;
  s.stats.map = (Pinpool__V1__MapBlock **)g[3].v;
  s.stats.n_map = g[3].n;
  s.stats.next_cursor = 0;
  s.stats.more = false;
  *ret = s;
  return 0;
nomem:
  snprintf(why, why_len, "out of memory");
fail:
  for (size_t i = 0; i < 4; i++)
    free(g[i].v);
  ctl_snapshot_free(&s);
  return rc;
}
