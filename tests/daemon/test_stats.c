/*
 * test_stats.c — Stats in pages, without a socket: handlers_serve() over a real ledger and
 * session list, as pinpoold serves them.  Each list (caches, clients, buffers, map) comes
 * in key order from the cursor on, every page packs into max_frame, paging resumes where
 * the previous page stopped even when items come and go in between, a limit of 0 means
 * "as many as fit" and a huge one is no danger, a buffer with more holders than a page
 * holds is cut and says how many it has, the summary comes with every page and adds up,
 * and a snapshot (the reply old clients get) is cut to fit and says so.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"
#include "handlers.h"
#include "ledger.h"
#include "session.h"
#include "stats.h"

typedef Pinpool__V1__Response resp_t;
typedef Pinpool__V1__Stats stats_t;

#define REGION (4u << 20)
#define SMALL_FRAME 4096u
#define MAX_SESSIONS 1100u

typedef struct fixture {
  ledger_t *ledger;
  session_list_t sessions;
  handlers_t hs;
  session_t *s[MAX_SESSIONS]; /* s[0] asks for the Stats */
  size_t n;
} fixture_t;

static fixture_t F;

static session_t *add_session(fixture_t *f, uid_t uid, bool listed) {
  ledger_ident_t id;
  session_t *s;
  assert_true(f->n < MAX_SESSIONS);
  assert_int_equal(session_create(100000 + (pid_t)f->n, uid, uid, &s), 0);
  s->admin = true;
  snprintf(s->name, sizeof s->name, "client-%zu", f->n);
  id = (ledger_ident_t){.session_id = s->id, .pid = s->pid, .uid = s->uid};
  assert_int_equal(ledger_holder_create(f->ledger, &id, &s->holder), 0);
  s->hello_done = true;
  if (listed) session_list_add(&f->sessions, s);
  f->s[f->n++] = s;
  return s;
}

static void open_fixture(fixture_t *f, uint32_t max_frame) {
  ledger_config_t lc = {.size = REGION, .policy = REGION_PAGE_4K};
  handlers_config_t hc = {.max_frame = max_frame, .max_clients = MAX_SESSIONS};
  int rc;

  memset(f, 0, sizeof *f);
  if ((rc = ledger_create(&lc, &f->ledger))) {
    printf("SKIP: cannot create a region of 4 KiB pages: %s\n", pp_strerror(rc));
    skip();
  }
  handlers_init(&f->hs, f->ledger, &f->sessions, &hc);
  add_session(f, 0, true);
}

static void close_fixture(fixture_t *f) {
  for (size_t i = f->n; i-- > 0;) {
    session_list_del(&f->sessions, f->s[i]);
    ledger_holder_release(f->ledger, f->s[i]->holder);
    session_destroy(f->s[i]);
  }
  handlers_fini(&f->hs);
  ledger_destroy(f->ledger);
}

/* Serve req for s[0]; the reply must pack into max_frame. */
static resp_t *serve(fixture_t *f, Pinpool__V1__Request *req) {
  uint8_t *buf = NULL;
  size_t len = 0;
  resp_t *r;
  req->id = 42;
  assert_int_equal(handlers_serve(&f->hs, f->s[0], req, &buf, &len), 0);
  assert_true(len > FRAME_HEADER_SIZE && len <= FRAME_HEADER_SIZE + f->hs.cfg.max_frame);
  r = frame_unpack_response(buf + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE, 1u << 26);
  free(buf);
  assert_non_null(r);
  assert_int_equal(r->id, 42);
  return r;
}

/* One page of list from cursor, at most limit items; OK and a Stats body. */
static resp_t *page(fixture_t *f, Pinpool__V1__StatsList list, uint64_t cursor,
                    uint32_t limit) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;
  resp_t *r;
  sr.list = list;
  sr.cursor = cursor;
  sr.limit = limit;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &sr;
  r = serve(f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_STATS);
  assert_int_equal(r->stats->list, list);
  assert_string_equal(r->message, ""); /* a page is filled to fit: nothing to cut */
  return r;
}

static uint32_t open_cache(fixture_t *f, session_t *s, const char *name) {
  ledger_cache_info_t info;
  ledger_why_t why;
  assert_int_equal(ledger_cache_open(f->ledger, s->holder, name, 64, 0, &why, &info), 0);
  (void)f;
  return info.id;
}

static uint64_t alloc_buf(fixture_t *f, session_t *s, const char *name) {
  ledger_buf_info_t b;
  ledger_why_t why;
  assert_int_equal(ledger_buf_alloc(f->ledger, s->holder, 4096, 0, name, &why, &b), 0);
  return b.handle;
}

/* The key of item i of a page of list. */
static uint64_t key_of(const stats_t *st, size_t i) {
  switch (st->list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES: return st->caches[i]->cache_id;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS: return st->clients[i]->session_id;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS: return st->buffers[i]->handle;
  default: return st->map[i]->offset;
  }
}

static size_t items_of(const stats_t *st) {
  switch (st->list) {
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES: return st->n_caches;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS: return st->n_clients;
  case PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS: return st->n_buffers;
  default: return st->n_map;
  }
}

/* Every key of list, page after page, checking that each page ascends from its cursor
 * and that next_cursor and more say where the next one starts.  Returns the number of
 * keys (in keys[]), and the number of pages in *ret_pages. */
static size_t list_all(fixture_t *f, Pinpool__V1__StatsList list, uint32_t limit,
                       uint64_t *keys, size_t max, size_t *ret_pages) {
  uint64_t cursor = 0;
  size_t n = 0, pages = 0;
  for (;;) {
    resp_t *r = page(f, list, cursor, limit);
    const stats_t *st = r->stats;
    size_t k = items_of(st);
    pages++;
    if (limit) assert_true(k <= limit);
    for (size_t i = 0; i < k; i++) {
      uint64_t key = key_of(st, i);
      assert_true(key >= cursor);
      if (i) assert_true(key > key_of(st, i - 1));
      assert_true(n < max);
      keys[n++] = key;
    }
    if (k) {
      uint64_t end = list == PINPOOL__V1__STATS_LIST__STATS_LIST_MAP
                         ? st->map[k - 1]->offset + st->map[k - 1]->size
                         : key_of(st, k - 1) + 1;
      assert_int_equal(st->next_cursor, end);
    }
    if (!st->more) {
      frame_free_response(r);
      break;
    }
    assert_true(k > 0); /* a page that says more has made progress */
    cursor = st->next_cursor;
    frame_free_response(r);
  }
  if (ret_pages) *ret_pages = pages;
  return n;
}

/* ---- caches ------------------------------------------------------------------------- */

static void caches_come_in_id_order_page_after_page_each_exactly_once(void **state) {
  uint64_t want[600], got[700];
  size_t pages, n;
  char name[32];

  open_fixture(&F, SMALL_FRAME);
  for (size_t i = 0; i < 600; i++) {
    snprintf(name, sizeof name, "cache-%zu", i);
    want[i] = open_cache(&F, F.s[0], name);
  }
  n = list_all(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, 0, got, 700, &pages);
  assert_int_equal(n, 600);
  assert_memory_equal(got, want, sizeof want);
  assert_true(pages >= 5); /* 600 rows of 35 bytes or more: five pages of 4 KiB at least */

  n = list_all(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, 7, got, 700, &pages);
  assert_int_equal(n, 600);
  assert_memory_equal(got, want, sizeof want);
  assert_int_equal(pages, (600 + 6) / 7);
  close_fixture(&F);
}

static void a_cursor_past_the_last_key_gives_an_empty_last_page(void **state) {
  resp_t *r;
  uint32_t last = 0;
  open_fixture(&F, SMALL_FRAME);
  for (int i = 0; i < 3; i++) {
    char name[16];
    snprintf(name, sizeof name, "c%d", i);
    last = open_cache(&F, F.s[0], name);
  }
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, (uint64_t)last + 1, 0);
  assert_int_equal(r->stats->n_caches, 0);
  assert_false(r->stats->more);
  assert_int_equal(r->stats->next_cursor, (uint64_t)last + 1); /* where it stands */
  assert_int_equal(r->stats->nr_caches, 3);                    /* the summary is there */
  frame_free_response(r);
  /* Cursors beyond any id, of every list, are just past the end. */
  for (int l = PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES;
       l <= PINPOOL__V1__STATS_LIST__STATS_LIST_MAP; l++) {
    r = page(&F, (Pinpool__V1__StatsList)l, UINT64_MAX, 0);
    assert_int_equal(items_of(r->stats), 0);
    assert_false(r->stats->more);
    frame_free_response(r);
  }
  close_fixture(&F);
}

static void
caches_that_go_between_pages_are_skipped_and_new_ones_come_at_the_end(void **state) {
  uint32_t id[40];
  uint64_t seen[100];
  size_t n = 0;
  resp_t *r;
  char name[32];
  ledger_why_t why;

  open_fixture(&F, SMALL_FRAME);
  add_session(&F, 1000, true);
  for (int i = 0; i < 40; i++) {
    snprintf(name, sizeof name, "moving-%d", i);
    id[i] = open_cache(&F, F.s[1], name);
  }
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, 0, 10);
  assert_int_equal(r->stats->n_caches, 10);
  assert_true(r->stats->more);
  for (size_t i = 0; i < 10; i++)
    seen[n++] = r->stats->caches[i]->cache_id;
  uint64_t cursor = r->stats->next_cursor;
  frame_free_response(r);

  /* Between pages: a listed cache and the very next one go, and a new one comes. */
  assert_int_equal(ledger_cache_close(F.ledger, F.s[1]->holder, id[5], &why), 0);
  assert_int_equal(ledger_cache_close(F.ledger, F.s[1]->holder, id[10], &why), 0);
  uint32_t fresh = open_cache(&F, F.s[1], "latecomer");

  while (cursor) {
    r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, cursor, 10);
    for (size_t i = 0; i < r->stats->n_caches; i++)
      seen[n++] = r->stats->caches[i]->cache_id;
    cursor = r->stats->more ? r->stats->next_cursor : 0;
    assert_int_equal(r->stats->nr_caches, 39); /* the summary is now's */
    frame_free_response(r);
  }
  /* id[5] was listed before it went; id[10] never; the latecomer last; none twice. */
  assert_int_equal(n, 40);
  for (size_t i = 0; i < 10; i++)
    assert_int_equal(seen[i], id[i]);
  for (size_t i = 10; i < 39; i++)
    assert_int_equal(seen[i], id[i + 1]);
  assert_int_equal(seen[39], fresh);
  close_fixture(&F);
}

static void limit_zero_fills_the_page_and_a_huge_limit_is_capped_by_max_frame(void **state) {
  resp_t *r0, *rmax, *r1, *r1b;
  char name[32];

  open_fixture(&F, SMALL_FRAME);
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "limits-%d", i);
    open_cache(&F, F.s[0], name);
  }
  r0 = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, 0, 0);
  rmax = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, 0, UINT32_MAX);
  r1 = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, 0, 1);
  assert_true(r0->stats->n_caches > 1 && r0->stats->n_caches < 300);
  assert_true(r0->stats->more);
  assert_int_equal(rmax->stats->n_caches, r0->stats->n_caches);
  assert_int_equal(r1->stats->n_caches, 1);
  assert_true(r1->stats->more);
  /* Full: the next row would not have fit, within the few bytes the daemon keeps for the
   * largest envelope and cursor. */
  r1b = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES, r0->stats->next_cursor, 1);
  assert_true(pinpool__v1__response__get_packed_size(r0) +
                  pinpool__v1__slab_info__get_packed_size(r1b->stats->caches[0]) + 2 + 32 >
              SMALL_FRAME);
  frame_free_response(r1b);
  frame_free_response(r0);
  frame_free_response(rmax);
  frame_free_response(r1);
  close_fixture(&F);
}

/* ---- clients, buffers, the map ------------------------------------------------------ */

static void clients_come_in_session_order_whatever_order_they_said_hello_in(void **state) {
  uint64_t got[300], want[300];
  size_t n;

  open_fixture(&F, SMALL_FRAME);
  want[0] = F.s[0]->id;
  /* Created in id order, listed (as at Hello) in a scrambled one. */
  for (size_t i = 1; i < 250; i++)
    want[i] = add_session(&F, 1000 + (uid_t)(i % 7), false)->id;
  for (size_t i = 1; i < 250; i++)
    session_list_add(&F.sessions, F.s[(i * 97) % 249 + 1]);
  n = list_all(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS, 0, got, 300, NULL);
  assert_int_equal(n, 250);
  assert_memory_equal(got, want, sizeof(uint64_t) * 250);
  close_fixture(&F);
}

static void clients_show_what_they_hold_and_what_their_uid_is_charged(void **state) {
  resp_t *r;
  session_t *a, *b;

  open_fixture(&F, SMALL_FRAME);
  a = add_session(&F, 1000, true);
  b = add_session(&F, 1000, true);
  alloc_buf(&F, a, "held-by-a");
  alloc_buf(&F, b, NULL);
  alloc_buf(&F, b, NULL);
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS, a->id, 0);
  assert_int_equal(r->stats->n_clients, 2);
  assert_int_equal(r->stats->clients[0]->session_id, a->id);
  assert_int_equal(r->stats->clients[0]->bytes_held, 4096);
  assert_int_equal(r->stats->clients[1]->bytes_held, 8192);
  /* Both sessions are uid 1000's: it pays for all three blocks. */
  assert_int_equal(r->stats->clients[0]->bytes_charged, 3 * 4096);
  assert_int_equal(r->stats->clients[1]->bytes_charged, 3 * 4096);
  frame_free_response(r);
  close_fixture(&F);
}

static void buffers_come_in_handle_order_with_their_holders_and_payer(void **state) {
  uint64_t want[500], got[600];
  size_t n, pages;
  ledger_buf_info_t b;
  ledger_why_t why;
  resp_t *r;

  open_fixture(&F, SMALL_FRAME);
  add_session(&F, 1000, true);
  for (size_t i = 0; i < 500; i++)
    want[i] = alloc_buf(&F, F.s[i % 2], i == 3 ? "named" : NULL);
  /* Gaps: every fifth buffer goes again. */
  for (size_t i = 0, j = 0; i < 500; i++) {
    if (i % 5 == 4)
      assert_int_equal(ledger_buf_free(F.ledger, F.s[i % 2]->holder, want[i], &why), 0);
    else
      want[j++] = want[i];
  }
  n = list_all(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS, 0, got, 600, &pages);
  assert_int_equal(n, 400);
  assert_memory_equal(got, want, 400 * sizeof *want);
  assert_true(pages > 1);

  /* uid 1000 looks "named" up: two holders, uid 1000 is charged (its session allocated). */
  assert_int_equal(ledger_buf_lookup(F.ledger, F.s[0]->holder, "~1000/named", &why, &b), 0);
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS, b.handle, 1);
  assert_int_equal(r->stats->buffers[0]->handle, b.handle);
  assert_string_equal(r->stats->buffers[0]->name, "~1000/named");
  assert_int_equal(r->stats->buffers[0]->charged_uid, 1000);
  assert_int_equal(r->stats->buffers[0]->nr_holders, 2);
  assert_int_equal(r->stats->buffers[0]->n_holder_sessions, 2);
  assert_int_equal(r->stats->buffers[0]->holder_sessions[0], F.s[1]->id);
  assert_int_equal(r->stats->buffers[0]->holder_sessions[1], F.s[0]->id);
  frame_free_response(r);
  close_fixture(&F);
}

static void
a_buffer_with_more_holders_than_a_page_holds_is_cut_and_counts_them_all(void **state) {
  ledger_buf_info_t b;
  ledger_why_t why;
  uint64_t h, h2;
  resp_t *r;

  open_fixture(&F, SMALL_FRAME);
  h = alloc_buf(&F, F.s[0], "popular");
  h2 = alloc_buf(&F, F.s[0], NULL);
  /* 1000 holders, a pid and a session id of five bytes or more together: more than 4 KiB
   * can hold. */
  for (int i = 1; i < 1000; i++) {
    session_t *s = add_session(&F, 0, false);
    assert_int_equal(ledger_buf_lookup(F.ledger, s->holder, "popular", &why, &b), 0);
  }
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS, 0, 0);
  assert_int_equal(r->stats->n_buffers, 1);
  assert_int_equal(r->stats->buffers[0]->handle, h);
  assert_int_equal(r->stats->buffers[0]->nr_holders, 1000);
  assert_true(r->stats->buffers[0]->n_holder_pids > 100);
  assert_true(r->stats->buffers[0]->n_holder_pids < 1000);
  assert_int_equal(r->stats->buffers[0]->n_holder_sessions,
                   r->stats->buffers[0]->n_holder_pids);
  assert_int_equal(r->stats->buffers[0]->holder_sessions[0], F.s[0]->id); /* first first */
  assert_true(r->stats->more); /* and paging goes on */
  assert_int_equal(r->stats->next_cursor, h + 1);
  frame_free_response(r);
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS, h + 1, 0);
  assert_int_equal(r->stats->n_buffers, 1);
  assert_int_equal(r->stats->buffers[0]->handle, h2);
  assert_false(r->stats->more);
  frame_free_response(r);
  close_fixture(&F);
}

static void map_pages_tile_the_region_without_gaps_or_overlaps(void **state) {
  static ledger_buf_info_t b[800];
  uint64_t cursor = 0, end = 0;
  size_t blocks = 0, pages = 0;
  uint32_t cid;
  uint64_t offs[64];

  open_fixture(&F, SMALL_FRAME);
  /* Many small blocks: 800 buffers of 4 KiB, those at odd pages freed again (their
   * buddies stay allocated: no coalescing), and a slab. */
  for (int i = 0; i < 800; i++)
    assert_int_equal(ledger_buf_alloc(F.ledger, F.s[0]->holder, 4096, 0, NULL, NULL, &b[i]), 0);
  for (int i = 0; i < 800; i++)
    if (b[i].offset / 4096 % 2)
      assert_int_equal(ledger_buf_free(F.ledger, F.s[0]->holder, b[i].handle, NULL), 0);
  cid = open_cache(&F, F.s[0], "map-objs");
  assert_int_equal(ledger_cache_alloc(F.ledger, F.s[0]->holder, cid, 64, offs, NULL), 0);
  do {
    resp_t *r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_MAP, cursor, 0);
    for (size_t i = 0; i < r->stats->n_map; i++) {
      assert_int_equal(r->stats->map[i]->offset, end);
      end += r->stats->map[i]->size;
      blocks++;
    }
    pages++;
    cursor = r->stats->more ? r->stats->next_cursor : 0;
    if (r->stats->more) assert_int_equal(cursor, end);
    frame_free_response(r);
  } while (cursor);
  assert_int_equal(end, REGION);
  assert_true(blocks > 800);
  assert_true(pages > 1);
  close_fixture(&F);
}

/* ---- the summary, the snapshot, errors --------------------------------------------- */

static void the_summary_comes_with_every_page_and_adds_up(void **state) {
  uint64_t offs[100];
  ledger_cache_stats_t cs;
  uint64_t slab_bytes = 0;
  uint32_t cid;
  resp_t *r;

  open_fixture(&F, SMALL_FRAME);
  add_session(&F, 1000, true);
  cid = open_cache(&F, F.s[1], "sum-objs");
  assert_int_equal(ledger_cache_alloc(F.ledger, F.s[1]->holder, cid, 100, offs, NULL), 0);
  open_cache(&F, F.s[0], "sum-empty");
  alloc_buf(&F, F.s[0], "sum-buf");
  for (size_t i = 0; i < ledger_ncaches(F.ledger); i++) {
    ledger_cache_stats(F.ledger, i, &cs);
    slab_bytes += cs.slab.num_slabs * (uint64_t)cs.slab.pages_per_slab * 4096;
  }
  for (int l = PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY;
       l <= PINPOOL__V1__STATS_LIST__STATS_LIST_MAP; l++) {
    r = page(&F, (Pinpool__V1__StatsList)l, 0, 1);
    const stats_t *st = r->stats;
    assert_int_equal(st->nr_caches, 2);
    assert_int_equal(st->nr_buffers, 1);
    assert_int_equal(st->nr_clients, 2);
    assert_int_equal(st->region_size, REGION);
    assert_int_equal(st->used_bytes + st->free_bytes + st->cached_bytes, REGION);
    /* cached comes from the buddy's counters, not a walk of the caches: the same figure */
    assert_int_equal(st->used_bytes, 4096 + 100 * 64);
    assert_int_equal(st->cached_bytes, slab_bytes - 100 * 64);
    assert_non_null(st->runs);
    if (st->runs->known) {
      uint64_t runs = 0;
      for (size_t k = 0; k < st->runs->n_buckets; k++)
        runs += st->runs->buckets[k];
      assert_int_equal(runs, st->runs->nr_runs);
      assert_int_equal(st->runs->longest, st->largest_contiguous_run);
    }
    assert_int_equal(st->runs->sort, PINPOOL__V1__PHYS_RUNS__SORT__SORT_NOT_HUGE);
    /* Only its own list. */
    assert_int_equal(st->n_caches, l == PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES);
    assert_int_equal(st->n_clients, l == PINPOOL__V1__STATS_LIST__STATS_LIST_CLIENTS);
    assert_int_equal(st->n_buffers, l == PINPOOL__V1__STATS_LIST__STATS_LIST_BUFFERS);
    assert_int_equal(st->n_map, l == PINPOOL__V1__STATS_LIST__STATS_LIST_MAP);
    frame_free_response(r);
  }
  close_fixture(&F);
}

/* The runs and the largest free contiguous block are kept from reply to reply, but never
 * past a change: an allocation between two pages shows in the second. */
static void the_summary_of_each_page_is_of_its_moment(void **state) {
  ledger_buf_info_t b;
  uint64_t h;
  resp_t *r;

  open_fixture(&F, SMALL_FRAME);
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY, 0, 0);
  assert_int_equal(r->stats->largest_free_block, REGION);
  assert_true(r->stats->largest_free_contiguous >= 4096);
  frame_free_response(r);
  /* One page goes: half the region is the largest free block now. */
  h = alloc_buf(&F, F.s[0], NULL);
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY, 0, 0);
  assert_int_equal(r->stats->largest_free_block, REGION / 2);
  assert_int_equal(r->stats->used_bytes, 4096);
  frame_free_response(r);
  /* The whole region taken: nothing is free, contiguous or not. */
  assert_int_equal(ledger_buf_free(F.ledger, F.s[0]->holder, h, NULL), 0);
  assert_int_equal(ledger_buf_alloc(F.ledger, F.s[0]->holder, REGION, 0, NULL, NULL, &b), 0);
  r = page(&F, PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY, 0, 0);
  assert_int_equal(r->stats->largest_free_block, 0);
  assert_int_equal(r->stats->largest_free_contiguous, 0);
  frame_free_response(r);
  close_fixture(&F);
}

static void
a_snapshot_too_big_for_max_frame_keeps_part_of_the_caches_and_says_so(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;
  char name[32];
  resp_t *r;

  open_fixture(&F, SMALL_FRAME);
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "snapshot-%d", i);
    open_cache(&F, F.s[0], name);
  }
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &sr; /* what an old client sends: no list */
  r = serve(&F, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->stats->list, PINPOOL__V1__STATS_LIST__STATS_LIST_SNAPSHOT);
  assert_true(r->stats->n_caches > 0 && r->stats->n_caches < 300);
  assert_int_equal(r->stats->n_clients, 0);
  assert_int_equal(r->stats->caches[0]->cache_id, 0); /* the oldest, from the start */
  assert_string_equal(r->message, "map, buffer and client lists and part of the cache list "
                                  "left out: the reply would exceed max_frame 4096");
  frame_free_response(r);
  close_fixture(&F);
}

static void an_unknown_list_is_an_invalid_argument(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;
  resp_t *r;

  open_fixture(&F, SMALL_FRAME);
  sr.list = (Pinpool__V1__StatsList)99;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &sr;
  r = serve(&F, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__INVALID_ARGUMENT);
  assert_string_equal(r->message, "unknown stats list 99");
  frame_free_response(r);
  close_fixture(&F);
}

/* The safety net behind the page filler: a page that does not fit loses its second half
 * to the next page, and its cursor says so. */
static void a_page_that_would_exceed_max_frame_hands_its_end_to_the_next_page(void **state) {
  Pinpool__V1__SlabInfo si[200], *sp[200];
  stats_t st = PINPOOL__V1__STATS__INIT;
  resp_t resp = PINPOOL__V1__RESPONSE__INIT, *r;
  uint8_t *buf = NULL;
  size_t len = 0;
  arena_t a;

  arena_init(&a, 0);
  for (int i = 0; i < 200; i++) {
    pinpool__v1__slab_info__init(&si[i]);
    si[i].cache_id = 1000 + (uint32_t)i;
    si[i].name = "~1000/a-cache-with-a-long-name-to-fill-the-page";
    sp[i] = &si[i];
  }
  st.list = PINPOOL__V1__STATS_LIST__STATS_LIST_CACHES;
  st.caches = sp;
  st.n_caches = 200;
  st.next_cursor = 1200;
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_STATS;
  resp.stats = &st;
  assert_int_equal(handlers_pack(SMALL_FRAME, &resp, &a, &buf, &len), 0);
  r = frame_unpack_response(buf + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE, 1u << 24);
  free(buf);
  assert_non_null(r);
  assert_true(r->stats->n_caches > 0 && r->stats->n_caches < 200);
  assert_true(r->stats->more);
  assert_int_equal(r->stats->next_cursor, 1000 + r->stats->n_caches);
  assert_int_equal(r->stats->caches[r->stats->n_caches - 1]->cache_id,
                   1000 + r->stats->n_caches - 1);
  frame_free_response(r);
  arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(caches_come_in_id_order_page_after_page_each_exactly_once),
      cmocka_unit_test(a_cursor_past_the_last_key_gives_an_empty_last_page),
      cmocka_unit_test(caches_that_go_between_pages_are_skipped_and_new_ones_come_at_the_end),
      cmocka_unit_test(limit_zero_fills_the_page_and_a_huge_limit_is_capped_by_max_frame),
      cmocka_unit_test(clients_come_in_session_order_whatever_order_they_said_hello_in),
      cmocka_unit_test(clients_show_what_they_hold_and_what_their_uid_is_charged),
      cmocka_unit_test(buffers_come_in_handle_order_with_their_holders_and_payer),
      cmocka_unit_test(a_buffer_with_more_holders_than_a_page_holds_is_cut_and_counts_them_all),
      cmocka_unit_test(map_pages_tile_the_region_without_gaps_or_overlaps),
      cmocka_unit_test(the_summary_comes_with_every_page_and_adds_up),
      cmocka_unit_test(the_summary_of_each_page_is_of_its_moment),
      cmocka_unit_test(a_snapshot_too_big_for_max_frame_keeps_part_of_the_caches_and_says_so),
      cmocka_unit_test(an_unknown_list_is_an_invalid_argument),
      cmocka_unit_test(a_page_that_would_exceed_max_frame_hands_its_end_to_the_next_page),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
