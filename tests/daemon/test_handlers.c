/*
 * test_handlers.c — the daemon's request side without a socket: handlers_serve() over a
 * real ledger (the dispatch table, admin-only rows, replies when private memory runs out)
 * and handlers_pack() on hand-made replies (what is left out to fit max_frame, in which
 * order, and what Response.message says).
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

typedef Pinpool__V1__Response resp_t;

typedef struct fixture {
  ledger_t *ledger;
  session_list_t sessions;
  handlers_t hs;
  session_t *s;
} fixture_t;

static void open_fixture_shared(fixture_t *f, uint32_t max_frame, bool admin,
                                const gid_t *shared, uint32_t nshared) {
  ledger_config_t lc = {.size = 4u << 20, .policy = REGION_PAGE_4K, .nshared_groups = nshared};
  handlers_config_t hc = {.max_frame = max_frame, .max_clients = 8, .started_ms = 0};
  ledger_ident_t id;
  int rc;

  memset(f, 0, sizeof *f);
  for (uint32_t i = 0; i < nshared; i++)
    lc.shared_groups[i] = shared[i];
  if ((rc = ledger_create(&lc, &f->ledger))) {
    printf("SKIP: cannot create a region of 4 KiB pages: %s\n", pp_strerror(rc));
    skip();
  }
  handlers_init(&f->hs, f->ledger, &f->sessions, &hc);
  assert_int_equal(session_create(1234, 1000, 1000, &f->s), 0);
  f->s->admin = admin;
  id = (ledger_ident_t){.session_id = f->s->id, .pid = f->s->pid, .uid = f->s->uid};
  assert_int_equal(ledger_holder_create(f->ledger, &id, &f->s->holder), 0);
  f->s->hello_done = true;
  session_list_add(&f->sessions, f->s);
}

static void open_fixture(fixture_t *f, uint32_t max_frame, bool admin) {
  open_fixture_shared(f, max_frame, admin, NULL, 0);
}

static void close_fixture(fixture_t *f) {
  session_list_del(&f->sessions, f->s);
  ledger_holder_release(f->ledger, f->s->holder);
  session_destroy(f->s);
  handlers_fini(&f->hs);
  ledger_destroy(f->ledger);
}

/* Serve req and decode the reply frame. */
static resp_t *serve(fixture_t *f, Pinpool__V1__Request *req) {
  uint8_t *buf = NULL;
  size_t len = 0;
  resp_t *r;
  assert_int_equal(handlers_serve(&f->hs, f->s, req, &buf, &len), 0);
  assert_true(len > FRAME_HEADER_SIZE && len <= FRAME_HEADER_SIZE + f->hs.cfg.max_frame);
  r = frame_unpack_response(buf + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE, 1u << 24);
  free(buf);
  assert_non_null(r);
  assert_int_equal(r->id, req->id);
  return r;
}

static resp_t *serve_alloc(fixture_t *f, uint64_t size, const char *name) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc m = PINPOOL__V1__ALLOC__INIT;
  m.size = size;
  if (name) m.name = (char *)name;
  req.id = 7;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &m;
  return serve(f, &req);
}

static void alloc_request_answers_with_the_buffer(void **state) {
  fixture_t f;
  resp_t *r;
  open_fixture(&f, FRAME_MAX_DEFAULT, false);
  r = serve_alloc(&f, 5000, "b");
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_BUFFER);
  assert_int_equal(r->buffer->size, 8192);
  assert_int_equal(r->buffer->handle, 1);
  assert_string_equal(r->buffer->name, "b");
  frame_free_response(r);
  r = serve_alloc(&f, 0, NULL);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__INVALID_ARGUMENT);
  assert_string_equal(r->message, "size 0");
  frame_free_response(r);
  close_fixture(&f);
}

static void buffer_names_come_back_as_the_caller_would_write_them(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Lookup m = PINPOOL__V1__LOOKUP__INIT;
  fixture_t f;
  resp_t *r;
  open_fixture(&f, FRAME_MAX_DEFAULT, false);
  r = serve_alloc(&f, 4096, "~1000/qualified-own");
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_string_equal(r->buffer->name, "qualified-own"); /* its own scope: unqualified */
  frame_free_response(r);
  m.name = "qualified-own";
  req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP;
  req.lookup = &m;
  r = serve(&f, &req);
  assert_string_equal(r->buffer->name, "qualified-own");
  frame_free_response(r);
  r = serve_alloc(&f, 4096, "~1001/theirs");
  assert_int_equal(r->status, PINPOOL__V1__STATUS__PERMISSION_DENIED);
  frame_free_response(r);
  close_fixture(&f);
}

static void shared_group_membership_is_decided_from_the_session(void **state) {
  /* The session's primary gid is 1000; 4242 is a shared group it is not in (uid 1000
   * need not exist here: without a passwd entry only the primary gid counts). */
  const gid_t shared[] = {4242, 1000};
  fixture_t f;
  resp_t *r;
  open_fixture_shared(&f, FRAME_MAX_DEFAULT, false, shared, 2);
  assert_false(ledger_holder_groups_known(f.s->holder));
  r = serve_alloc(&f, 4096, "plain"); /* no group scope named: nothing decided yet */
  frame_free_response(r);
  assert_false(ledger_holder_groups_known(f.s->holder));
  r = serve_alloc(&f, 4096, "~g1000/ring");
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_string_equal(r->buffer->name, "~g1000/ring");
  frame_free_response(r);
  assert_true(ledger_holder_groups_known(f.s->holder));
  r = serve_alloc(&f, 4096, "~g4242/ring");
  assert_int_equal(r->status, PINPOOL__V1__STATUS__PERMISSION_DENIED);
  assert_non_null(strstr(r->message, "uid 1000 is not a member of shared group 4242"));
  frame_free_response(r);
  close_fixture(&f);
}

static void cache_close_drops_one_open_and_then_misses(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheOpen co = PINPOOL__V1__CACHE_OPEN__INIT;
  Pinpool__V1__CacheClose cc = PINPOOL__V1__CACHE_CLOSE__INIT;
  fixture_t f;
  resp_t *r;
  open_fixture(&f, FRAME_MAX_DEFAULT, false);
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &co;
  co.name = "c";
  co.object_size = 64;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->cache->object_charge, 64); /* 64 to a 4 KiB slab: no tail */
  cc.cache_id = r->cache->cache_id;
  frame_free_response(r);
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_CLOSE;
  req.cache_close = &cc;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY__NOT_SET);
  frame_free_response(r);
  assert_int_equal(ledger_ncaches(f.ledger), 0); /* its only opener closed it */
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__NOT_FOUND);
  assert_string_equal(r->message, "no cache with id 0");
  frame_free_response(r);
  close_fixture(&f);
}

static void admin_rows_refuse_other_sessions_before_running(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest st = PINPOOL__V1__STATS_REQUEST__INIT;
  Pinpool__V1__ShrinkRequest sh = PINPOOL__V1__SHRINK_REQUEST__INIT;
  fixture_t f;
  resp_t *r;

  open_fixture(&f, FRAME_MAX_DEFAULT, false);
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &st;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__PERMISSION_DENIED);
  assert_string_equal(r->message, "stats needs root or the admin group");
  frame_free_response(r);
  req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK;
  req.shrink = &sh;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__PERMISSION_DENIED);
  assert_string_equal(r->message, "shrink needs root or the admin group");
  frame_free_response(r);
  f.s->admin = true;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_SHRINK);
  frame_free_response(r);
  close_fixture(&f);
}

static void a_body_without_a_row_is_a_protocol_error(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  fixture_t f;
  resp_t *r;

  open_fixture(&f, FRAME_MAX_DEFAULT, true);
  req.id = 3;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO; /* the handshake's, not the table's */
  req.hello = &h;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__PROTOCOL_ERROR);
  assert_string_equal(r->message, "unexpected request (body 2)");
  frame_free_response(r);
  close_fixture(&f);
}

static void out_of_private_memory_answers_no_private_memory_and_changes_nothing(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheOpen co = PINPOOL__V1__CACHE_OPEN__INIT;
  Pinpool__V1__CacheAlloc ca = PINPOOL__V1__CACHE_ALLOC__INIT;
  ledger_holder_totals_t t;
  ledger_totals_t lt;
  fixture_t f;
  resp_t *r;

  open_fixture(&f, FRAME_MAX_DEFAULT, false);
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &co;
  co.name = "c";
  co.object_size = 64;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  ca.cache_id = r->cache->cache_id;
  frame_free_response(r);

  /* From here no reply can get a byte of arena memory (reset: the kept chunk goes too). */
  arena_reset(&f.hs.arena);
  f.hs.arena.budget = 1;
  r = serve_alloc(&f, 4096, "x");
  assert_int_equal(r->status, PINPOOL__V1__STATUS__NO_PRIVATE_MEMORY);
  frame_free_response(r);
  ledger_get_totals(f.ledger, &lt);
  assert_int_equal(lt.nbufs, 0); /* the buffer the ledger made went back */
  ledger_holder_totals(f.s->holder, &t);
  assert_int_equal(t.buf_refs, 0);

  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
  req.cache_alloc = &ca;
  ca.count = 4;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__NO_PRIVATE_MEMORY);
  frame_free_response(r);
  ledger_holder_totals(f.s->holder, &t);
  assert_int_equal(t.objects, 0);
  /* A request that is wrong anyway is refused for its own reason. */
  ca.cache_id += 1;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__NOT_FOUND);
  frame_free_response(r);

  f.hs.arena.budget = 64u << 20;
  r = serve_alloc(&f, 4096, "x"); /* the name was never taken */
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  frame_free_response(r);
  close_fixture(&f);
}

static resp_t *pack_and_read(resp_t *resp, arena_t *a, uint32_t max_frame, int want_rc);
static resp_t *pack_and_read_early(resp_t *resp, arena_t *a, uint32_t max_frame) {
  return pack_and_read(resp, a, max_frame, 0);
}

static resp_t *serve_alloc_bulk(fixture_t *f, uint64_t size, uint32_t count,
                                const Pinpool__V1__CacheReport *report) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__AllocBulk m = PINPOOL__V1__ALLOC_BULK__INIT;
  m.size = size;
  m.count = count;
  m.cache = (Pinpool__V1__CacheReport *)report;
  req.id = 11;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC_BULK;
  req.alloc_bulk = &m;
  return serve(f, &req);
}

static resp_t *serve_free_bulk(fixture_t *f, uint64_t *handles, size_t n,
                               const Pinpool__V1__CacheReport *report) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__FreeBulk m = PINPOOL__V1__FREE_BULK__INIT;
  m.handles = handles;
  m.n_handles = n;
  m.cache = (Pinpool__V1__CacheReport *)report;
  req.id = 12;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE_BULK;
  req.free_bulk = &m;
  return serve(f, &req);
}

static ledger_holder_totals_t fixture_totals(fixture_t *f) {
  ledger_holder_totals_t t;
  ledger_holder_totals(f->s->holder, &t);
  return t;
}

static void
alloc_bulk_answers_with_every_buffer_and_free_bulk_names_the_bad_handle(void **state) {
  Pinpool__V1__CacheReport rep = PINPOOL__V1__CACHE_REPORT__INIT;
  uint64_t handles[8];
  fixture_t f;
  resp_t *r;
  open_fixture(&f, FRAME_MAX_DEFAULT, false);
  rep.buffers = 3;
  rep.bytes = 3 * 4096;
  r = serve_alloc_bulk(&f, 4096, 8, &rep);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_BUFFERS);
  assert_int_equal(r->buffers->n_buffers, 8);
  assert_int_equal(r->buffers->addresses_generation, ledger_addr_generation(f.ledger));
  for (size_t i = 0; i < 8; i++) {
    const Pinpool__V1__Buffer *b = r->buffers->buffers[i];
    assert_int_equal(b->handle, i + 1);
    assert_int_equal(b->size, 4096);
    assert_true(b->contiguous);
    if (region_phys_known(ledger_region(f.ledger))) {
      assert_int_equal(b->n_segments, 1);
      assert_int_equal(b->segments[0]->phys_addr, b->phys_addr);
    }
    handles[i] = b->handle;
  }
  frame_free_response(r);
  assert_int_equal(fixture_totals(&f).buffers, 8);
  assert_int_equal(fixture_totals(&f).cached_buffers, 3); /* the report, kept */
  assert_int_equal(fixture_totals(&f).cached_bytes, 3 * 4096);

  /* One bad handle: NOT_FOUND naming it and its index, nothing freed, report not taken. */
  handles[2] = 999;
  rep.buffers = 0;
  rep.bytes = 0;
  r = serve_free_bulk(&f, handles, 8, &rep);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__NOT_FOUND);
  assert_non_null(strstr(r->message, "handle 999 (index 2)"));
  frame_free_response(r);
  assert_int_equal(fixture_totals(&f).buffers, 8);
  assert_int_equal(fixture_totals(&f).cached_buffers, 3);
  handles[2] = 3;
  r = serve_free_bulk(&f, handles, 8, &rep);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  frame_free_response(r);
  assert_int_equal(fixture_totals(&f).buffers, 0);
  assert_int_equal(fixture_totals(&f).cached_buffers, 0);
  r = serve_alloc_bulk(&f, 4096, 0, NULL);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OUT_OF_RANGE);
  frame_free_response(r);
  close_fixture(&f);
}

static void
alloc_bulk_whose_reply_may_not_fit_is_refused_before_anything_is_taken(void **state) {
  fixture_t f;
  resp_t *r;
  open_fixture(&f, 4096, false);
  r = serve_alloc_bulk(&f, 4096, 100, NULL);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OUT_OF_RANGE);
  assert_non_null(strstr(r->message, "at most 82"));
  frame_free_response(r);
  assert_int_equal(fixture_totals(&f).buffers, 0);
  /* As many as may fit: they do, segments or not (serve checks the frame's size). */
  r = serve_alloc_bulk(&f, 4096, 82, NULL);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->buffers->n_buffers, 82);
  frame_free_response(r);
  assert_int_equal(fixture_totals(&f).buffers, 82);
  close_fixture(&f);
}

static void buffers_too_big_leave_out_their_segments(void **state) {
  arena_t a;
  resp_t resp = PINPOOL__V1__RESPONSE__INIT, *r;
  Pinpool__V1__Buffers bs = PINPOOL__V1__BUFFERS__INIT;
  Pinpool__V1__Buffer b[100], *bp[100];
  Pinpool__V1__Segment seg[100], *segs[100];

  arena_init(&a, 0);
  for (size_t i = 0; i < 100; i++) {
    pinpool__v1__buffer__init(&b[i]);
    pinpool__v1__segment__init(&seg[i]);
    b[i].handle = i + 1;
    b[i].offset = seg[i].offset = i << 32;
    b[i].size = seg[i].length = 4096;
    b[i].phys_addr = seg[i].phys_addr = (1ull << 60) + (i << 20);
    b[i].contiguous = true;
    segs[i] = &seg[i];
    b[i].segments = &segs[i];
    b[i].n_segments = 1;
    bp[i] = &b[i];
  }
  bs.buffers = bp;
  bs.n_buffers = 100;
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_BUFFERS;
  resp.buffers = &bs;
  r = pack_and_read_early(&resp, &a, 4096);
  assert_int_equal(r->buffers->n_buffers, 100);
  for (size_t i = 0; i < 100; i++)
    assert_int_equal(r->buffers->buffers[i]->n_segments, 0);
  assert_string_equal(r->message, "segments left out: the reply would exceed max_frame 4096");
  frame_free_response(r);
  arena_reset(&a);
}

static void describe_answers_for_a_held_buffer_only(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Describe m = PINPOOL__V1__DESCRIBE__INIT;
  fixture_t f;
  resp_t *r;
  open_fixture(&f, FRAME_MAX_DEFAULT, false);
  r = serve_alloc(&f, 65536, NULL);
  m.handle = r->buffer->handle;
  uint64_t off = r->buffer->offset;
  frame_free_response(r);
  req.id = 5;
  req.body_case = PINPOOL__V1__REQUEST__BODY_DESCRIBE;
  req.describe = &m;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(r->buffer->offset, off);
  assert_int_equal(r->buffer->size, 65536);
  uint64_t sum = 0;
  for (size_t i = 0; i < r->buffer->n_segments; i++)
    sum += r->buffer->segments[i]->length;
  if (region_phys_known(ledger_region(f.ledger))) assert_int_equal(sum, 65536);
  frame_free_response(r);
  assert_int_equal(fixture_totals(&f).buf_refs, 1); /* no reference taken */
  m.handle += 1;
  r = serve(&f, &req);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__NOT_FOUND);
  frame_free_response(r);
  close_fixture(&f);
}

static void out_of_private_memory_for_alloc_bulk_takes_nothing(void **state) {
  fixture_t f;
  resp_t *r;
  open_fixture(&f, FRAME_MAX_DEFAULT, false);
  arena_reset(&f.hs.arena);
  f.hs.arena.budget = 1;
  r = serve_alloc_bulk(&f, 4096, 16, NULL);
  assert_int_equal(r->status, PINPOOL__V1__STATUS__NO_PRIVATE_MEMORY);
  frame_free_response(r);
  assert_int_equal(fixture_totals(&f).buffers, 0);
  f.hs.arena.budget = 64u << 20;
  close_fixture(&f);
}

/* ---- fitting max_frame -------------------------------------------------------------- */

static Pinpool__V1__Stats *big_stats(arena_t *a, size_t nmap, size_t nbufs, size_t nclients) {
  Pinpool__V1__Stats *st = arena_alloc(a, sizeof *st);
  pinpool__v1__stats__init(st);
  st->nr_buffers = nbufs;
  st->map = arena_alloc(a, nmap * sizeof *st->map);
  for (size_t i = 0; i < nmap; i++) {
    st->map[i] = arena_alloc(a, sizeof *st->map[i]);
    pinpool__v1__map_block__init(st->map[i]);
    st->map[i]->offset = i * 4096;
    st->map[i]->size = 4096;
  }
  st->n_map = nmap;
  st->buffers = arena_alloc(a, nbufs * sizeof *st->buffers);
  for (size_t i = 0; i < nbufs; i++) {
    st->buffers[i] = arena_alloc(a, sizeof *st->buffers[i]);
    pinpool__v1__buffer_info__init(st->buffers[i]);
    st->buffers[i]->handle = i + 1;
    st->buffers[i]->offset = i * 4096;
    st->buffers[i]->size = 4096;
  }
  st->n_buffers = nbufs;
  st->clients = arena_alloc(a, nclients * sizeof *st->clients);
  for (size_t i = 0; i < nclients; i++) {
    st->clients[i] = arena_alloc(a, sizeof *st->clients[i]);
    pinpool__v1__client_info__init(st->clients[i]);
    st->clients[i]->session_id = i + 1;
    st->clients[i]->name = "a client with a name";
  }
  st->n_clients = nclients;
  return st;
}

static resp_t *pack_and_read(resp_t *resp, arena_t *a, uint32_t max_frame, int want_rc) {
  uint8_t *buf = NULL;
  size_t len = 0;
  resp_t *r;
  assert_int_equal(handlers_pack(max_frame, resp, a, &buf, &len), want_rc);
  if (want_rc) return NULL;
  assert_true(len <= FRAME_HEADER_SIZE + max_frame);
  r = frame_unpack_response(buf + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE, 1u << 24);
  free(buf);
  assert_non_null(r);
  return r;
}

static void stats_too_big_leaves_out_map_then_buffers_then_clients_and_says_so(void **state) {
  arena_t a;
  resp_t resp = PINPOOL__V1__RESPONSE__INIT, *r;

  arena_init(&a, 0);
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_STATS;

  /* Fits: untouched. */
  resp.stats = big_stats(&a, 10, 10, 10);
  r = pack_and_read(&resp, &a, 4096, 0);
  assert_int_equal(r->stats->n_map + r->stats->n_buffers + r->stats->n_clients, 30);
  assert_string_equal(r->message, "");
  frame_free_response(r);

  /* Only the map is too much. */
  resp.stats = big_stats(&a, 1000, 10, 10);
  r = pack_and_read(&resp, &a, 4096, 0);
  assert_int_equal(r->stats->n_map, 0);
  assert_int_equal(r->stats->n_buffers, 10);
  assert_int_equal(r->stats->n_clients, 10);
  assert_string_equal(r->message, "map left out: the reply would exceed max_frame 4096");
  frame_free_response(r);

  /* The buffer list too. */
  resp.stats = big_stats(&a, 1000, 1000, 10);
  r = pack_and_read(&resp, &a, 4096, 0);
  assert_int_equal(r->stats->n_map + r->stats->n_buffers, 0);
  assert_int_equal(r->stats->n_clients, 10);
  assert_int_equal(r->stats->nr_buffers, 1000); /* the counters stay */
  assert_string_equal(r->message,
                      "map and buffer list left out: the reply would exceed max_frame 4096");
  frame_free_response(r);

  /* And the client list. */
  resp.stats = big_stats(&a, 1000, 1000, 1000);
  r = pack_and_read(&resp, &a, 4096, 0);
  assert_int_equal(r->stats->n_map + r->stats->n_buffers + r->stats->n_clients, 0);
  assert_string_equal(
      r->message,
      "map, buffer and client lists left out: the reply would exceed max_frame 4096");
  frame_free_response(r);
  arena_reset(&a);
}

static void buffer_too_big_leaves_out_its_segments(void **state) {
  arena_t a;
  resp_t resp = PINPOOL__V1__RESPONSE__INIT, *r;
  Pinpool__V1__Buffer b = PINPOOL__V1__BUFFER__INIT;
  Pinpool__V1__Segment seg[1000], *segs[1000];

  arena_init(&a, 0);
  for (size_t i = 0; i < 1000; i++) {
    pinpool__v1__segment__init(&seg[i]);
    seg[i].offset = i * 4096;
    seg[i].phys_addr = (i * 2 + 1) * 4096;
    seg[i].length = 4096;
    segs[i] = &seg[i];
  }
  b.handle = 9;
  b.size = 1000 * 4096;
  b.segments = segs;
  b.n_segments = 1000;
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_BUFFER;
  resp.buffer = &b;
  r = pack_and_read(&resp, &a, 4096, 0);
  assert_int_equal(r->buffer->handle, 9);
  assert_int_equal(r->buffer->n_segments, 0);
  assert_string_equal(r->message, "segments left out: the reply would exceed max_frame 4096");
  frame_free_response(r);
  arena_reset(&a);
}

static void a_reply_with_nothing_to_leave_out_stays_too_big(void **state) {
  arena_t a;
  resp_t resp = PINPOOL__V1__RESPONSE__INIT;
  Pinpool__V1__Objects o = PINPOOL__V1__OBJECTS__INIT;
  uint64_t offs[1024];

  arena_init(&a, 0);
  for (size_t i = 0; i < 1024; i++)
    offs[i] = (uint64_t)i << 40;
  o.offsets = offs;
  o.n_offsets = 1024;
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_OBJECTS;
  resp.objects = &o;
  pack_and_read(&resp, &a, 4096, PP_ERANGE);
  assert_int_equal(o.n_offsets, 1024);
  arena_reset(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(alloc_request_answers_with_the_buffer),
      cmocka_unit_test(buffer_names_come_back_as_the_caller_would_write_them),
      cmocka_unit_test(shared_group_membership_is_decided_from_the_session),
      cmocka_unit_test(cache_close_drops_one_open_and_then_misses),
      cmocka_unit_test(admin_rows_refuse_other_sessions_before_running),
      cmocka_unit_test(a_body_without_a_row_is_a_protocol_error),
      cmocka_unit_test(out_of_private_memory_answers_no_private_memory_and_changes_nothing),
      cmocka_unit_test(alloc_bulk_answers_with_every_buffer_and_free_bulk_names_the_bad_handle),
      cmocka_unit_test(alloc_bulk_whose_reply_may_not_fit_is_refused_before_anything_is_taken),
      cmocka_unit_test(buffers_too_big_leave_out_their_segments),
      cmocka_unit_test(describe_answers_for_a_held_buffer_only),
      cmocka_unit_test(out_of_private_memory_for_alloc_bulk_takes_nothing),
      cmocka_unit_test(stats_too_big_leaves_out_map_then_buffers_then_clients_and_says_so),
      cmocka_unit_test(buffer_too_big_leaves_out_its_segments),
      cmocka_unit_test(a_reply_with_nothing_to_leave_out_stays_too_big),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
