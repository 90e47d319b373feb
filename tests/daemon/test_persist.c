/*
 * test_persist.c — restart survival without a socket: the ledger journaled request by
 * request (daemon/persist.c), replayed into the journal's model (daemon/jmodel.c) and
 * rebuilt in the adopted region (ledger_restore).
 *
 * A "daemon" here is a ledger and a persist_t over a region of 4 KiB pages, with sessions
 * made the way the handshake makes them and requests served the way conn.c serves them:
 * the ledger call, then persist_request_end with a reply, which commits the request's
 * transaction.  A "restart" is what a new pinpoold does with the fd store's fds: a
 * duplicate of the region memfd (the same memory) and a copy of the journal's bytes (so
 * that adopting it cannot touch the first daemon's journal), handed to persist_start.
 * The state is compared as jmodel exports: sessions with their tokens and kept replies,
 * buffers with their names, charged uids and holders in order, caches, objects, counters.
 *
 * What must hold: the journal replayed equals the ledger after every request (bulk
 * requests among them, one transaction each); a restart
 * rebuilds exactly the state of the last whole transaction; a journal cut at any record
 * boundary is rebuilt exactly as of its last whole transaction or refused (never anything
 * else), and cut between transactions it is rebuilt; damage and a journal of another region
 * are refused (a fresh region); compaction changes nothing; a commit that fails for good
 * turns journaling off and Welcome.grace_ms to 0; records that do not fit the model and
 * models that do not fit the region are refused.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "jmodel.h"
#include "journal.h"
#include "ledger.h"
#include "persist.h"
#include "session.h"

#define REGION (8ull << 20)
#define MAXS 6

typedef struct daemon {
  ledger_t *l;
  persist_t *p;
  session_list_t sessions;
  ledger_config_t lc;
} daemon_t;

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s, uint64_t n) {
  return n ? rng_next(s) % n : 0;
}

/* ---- a daemon without a socket ---------------------------------------------------------- */

static persist_config_t pconf(void) {
  return (persist_config_t){.journal = true, .fd_store = false, .grace_ms = 1000};
}

static void d_start(daemon_t *d, int region_fd, int journal_fd) {
  persist_config_t pc = pconf();
  memset(d, 0, sizeof *d);
  d->lc = (ledger_config_t){.size = REGION, .policy = REGION_PAGE_4K};
  int rc = persist_start(&pc, &d->lc, region_fd, journal_fd, &d->l, &d->p);
  if (rc) {
    printf("SKIP: cannot create a region of 4 KiB pages: %s\n", pp_strerror(rc));
    skip();
  }
  session_t *s, *next;
  for (s = persist_take_restored(d->p); s; s = next) {
    next = s->next;
    session_list_add(&d->sessions, s);
  }
  persist_bind_sessions(d->p, &d->sessions);
}

static void d_free(daemon_t *d) {
  persist_stop(d->p); /* as at shutdown: the releases below are not journaled */
  while (d->sessions.head) {
    session_t *s = d->sessions.head;
    session_list_del(&d->sessions, s);
    if (s->holder) ledger_holder_release(d->l, s->holder);
    session_destroy(s);
  }
  persist_free(d->p);
  ledger_destroy(d->l);
}

static void check(daemon_t *d) {
  char why[512] = "";
  int rc = persist_check(d->p, why, sizeof why);
  if (rc) fail_msg("persist_check: %s", why);
  rc = ledger_check(d->l, why, sizeof why);
  if (rc) fail_msg("ledger_check: %s", why);
}

static session_t *d_session(daemon_t *d, uid_t uid) {
  session_t *s;
  assert_int_equal(session_create(4000 + uid, uid, uid, &s), 0);
  ledger_ident_t id = {.session_id = s->id, .pid = s->pid, .uid = uid};
  assert_int_equal(ledger_holder_create(d->l, &id, &s->holder), 0);
  session_set_name(s, "test");
  s->hello_done = true;
  session_list_add(&d->sessions, s);
  persist_session_new(d->p, s);
  return s;
}

static void d_end(daemon_t *d, session_t *s) {
  session_list_del(&d->sessions, s);
  persist_release(d->p, d->l, s);
  session_destroy(s);
}

/* A request served: its reply is made up from its id, as a packed reply would be. */
static void d_reply(daemon_t *d, session_t *s) {
  uint8_t reply[24];
  uint64_t id = ++s->requests;
  memset(reply, 0, sizeof reply);
  snprintf((char *)reply, sizeof reply, "reply %" PRIu64, id);
  persist_request_end(d->p, s, id, reply, sizeof reply);
}

static session_t *nth_session(daemon_t *d, size_t i) {
  session_t *s = d->sessions.head;
  while (s && i--)
    s = s->next;
  return s;
}

/* One random request (or a session coming or going). */
static void d_random_op(daemon_t *d, uint64_t *rng) {
  ledger_why_t why;
  ledger_buf_info_t b;
  char name[32];
  if (d->sessions.n < 2 || (d->sessions.n < MAXS && rnd(rng, 20) == 0)) {
    d_session(d, 1000 + (uid_t)rnd(rng, 2));
    return;
  }
  session_t *s = nth_session(d, rnd(rng, d->sessions.n));
  ledger_holder_totals_t t;
  ledger_holder_totals(s->holder, &t);
  switch (rnd(rng, 14)) {
  case 0:
    if (d->sessions.n > 2) {
      d_end(d, s);
      return;
    }
    /* fall through */
  case 1:
  case 2:
    snprintf(name, sizeof name, "b%u", (unsigned)rnd(rng, 8));
    ledger_buf_alloc(d->l, s->holder, 4096u << rnd(rng, 4), 0, rnd(rng, 3) ? NULL : name, &why,
                     &b);
    break;
  case 3:
    snprintf(name, sizeof name, "~%u/b%u", 1000 + (unsigned)rnd(rng, 2), (unsigned)rnd(rng, 8));
    ledger_buf_lookup(d->l, s->holder, name, &why, &b);
    break;
  case 4:
  case 5: {
    size_t it = 0;
    ledger_buf_info_t info;
    uint64_t want = rnd(rng, 64) + 1, handle = 0;
    while (ledger_buf_next(d->l, &it, &info))
      if (--want == 0 || !handle) handle = info.handle;
    ledger_buf_free(d->l, s->holder, handle, &why);
    break;
  }
  case 6: {
    ledger_cache_info_t ci;
    snprintf(name, sizeof name, "~1000/c%u", (unsigned)rnd(rng, 3));
    uint32_t size = name[7] == '0' ? 64 : name[7] == '1' ? 200 : 1024;
    ledger_cache_open(d->l, s->holder, name, size, 0, &why, &ci);
    break;
  }
  case 7:
  case 8:
  case 9: {
    uint64_t offs[64];
    for (uint32_t id = 0; id < 8; id++)
      if (ledger_cache_alloc(d->l, s->holder, id, 1 + (uint32_t)rnd(rng, 40), offs, &why) == 0)
        break;
    break;
  }
  case 10: {
    /* give back some objects of one cache: find them in an export of the state */
    jmodel_t m;
    char why2[128];
    jmodel_init(&m);
    assert_int_equal(jmodel_set_region(&m, persist_region_id(d->p), why2, sizeof why2), 0);
    for (const session_t *o = d->sessions.head; o; o = o->next)
      assert_int_equal(jmodel_session_new(&m, o->id, o->token, o->uid, o->gid, o->pid, 0, "", 0,
                                          why2, sizeof why2),
                       0);
    assert_int_equal(ledger_export(d->l, &m, why2, sizeof why2), 0);
    uint64_t v;
    assert_true(u64map_get(&m.sessions, s->id, &v));
    const jm_session_t *js = (const jm_session_t *)(uintptr_t)v;
    uint64_t offs[16], k, cid, want = UINT64_MAX;
    size_t n = 0, it = 0;
    while (n < 16 && u64map_next(&js->objs, &it, &k, &cid))
      if (want == UINT64_MAX || cid == want) {
        want = cid;
        offs[n++] = k;
      }
    jmodel_fini(&m);
    if (n) ledger_cache_free(d->l, s->holder, (uint32_t)want, offs, rnd(rng, n) + 1, &why);
    break;
  }
  case 11:
    for (uint32_t id = 0; id < 8; id++)
      if (ledger_cache_close(d->l, s->holder, id, &why) == 0) break;
    break;
  case 12: {
    ledger_buf_info_t bs[16];
    ledger_buf_alloc_bulk(d->l, s->holder, 4096u << rnd(rng, 3), 0, 1 + (uint32_t)rnd(rng, 16),
                          &why, bs);
    break;
  }
  case 13: {
    /* some of the buffers it holds, sometimes with one it does not (nothing freed) */
    uint64_t handles[12];
    size_t it = 0, n = 0;
    ledger_buf_info_t info;
    while (n < 12 && ledger_buf_next(d->l, &it, &info))
      for (uint32_t i = 0; i < info.nholders; i++)
        if (ledger_buf_holder(info.buf, i)->session_id == s->id && rnd(rng, 2))
          handles[n++] = info.handle;
    if (n && rnd(rng, 8) == 0) handles[rnd(rng, n)] = UINT64_MAX - 1;
    ledger_buf_free_bulk(d->l, s->holder, handles, n, &why);
    break;
  }
  }
  d_reply(d, s);
}

/* ---- comparing daemons ------------------------------------------------------------------ */

static void export_into(daemon_t *d, jmodel_t *m) {
  char why[256] = "";
  jmodel_init(m);
  assert_int_equal(jmodel_set_region(m, persist_region_id(d->p), why, sizeof why), 0);
  for (const session_t *s = d->sessions.head; s; s = s->next) {
    assert_int_equal(jmodel_session_new(m, s->id, s->token, s->uid, s->gid, s->pid,
                                        s->connected_ms, s->name, strlen(s->name), why,
                                        sizeof why),
                     0);
    uint64_t rid;
    size_t rlen;
    const uint8_t *reply = session_kept_reply(s, &rid, &rlen);
    if (reply) assert_int_equal(jmodel_reply(m, s->id, rid, reply, rlen, why, sizeof why), 0);
  }
  int rc = ledger_export(d->l, m, why, sizeof why);
  if (rc) fail_msg("ledger_export: %s", why);
}

static void assert_same_state(daemon_t *a, daemon_t *b) {
  jmodel_t x, y;
  char why[256] = "";
  export_into(a, &x);
  export_into(b, &y);
  /* Handles given out must never repeat, whatever the model's counter says after ends. */
  int rc = jmodel_equal(&x, &y, why, sizeof why);
  jmodel_fini(&x);
  jmodel_fini(&y);
  if (rc) fail_msg("states differ: %s", why);
}

static uint8_t *read_all(int fd, size_t *ret_len) {
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  size_t n = (size_t)st.st_size;
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  assert_int_equal(pread(fd, p, n, 0), (ssize_t)n);
  *ret_len = n;
  return p;
}

static int memfd_with(const uint8_t *p, size_t n) {
  int fd = memfd_create("journal-copy", MFD_CLOEXEC);
  assert_true(fd >= 0);
  if (n) assert_int_equal(pwrite(fd, p, n, 0), (ssize_t)n);
  return fd;
}

/* What a new daemon gets from the fd store after d died: the same region, and the journal
 * as it is (a copy of its bytes). */
static void restart_from(daemon_t *d, daemon_t *n, const uint8_t *img, size_t len) {
  int rfd = dup(region_fd(ledger_region(d->l)));
  assert_true(rfd >= 0);
  d_start(n, rfd, memfd_with(img, len));
}

static void restart(daemon_t *d, daemon_t *n) {
  size_t len;
  uint8_t *img = read_all(journal_fd(persist_journal(d->p)), &len);
  restart_from(d, n, img, len);
  free(img);
}

static bool restored(daemon_t *d) {
  persist_stats_t st;
  persist_get_stats(d->p, &st);
  return st.restored;
}

/* ---- the tests ----------------------------------------------------------------------------
 */

static void journal_matches_the_ledger_after_every_request(void **state) {
  daemon_t d;
  uint64_t rng = 11;
  d_start(&d, -1, -1);
  assert_false(restored(&d));
  for (int i = 0; i < 400; i++) {
    d_random_op(&d, &rng);
    check(&d);
  }
  persist_stats_t st;
  persist_get_stats(d.p, &st);
  assert_true(st.request_txns > 100);
  d_free(&d);
}

static uint64_t txns(daemon_t *d) {
  persist_stats_t st;
  persist_get_stats(d->p, &st);
  return st.request_txns;
}

static void bulk_requests_are_one_transaction_each_and_survive_a_restart(void **state) {
  daemon_t d, n;
  ledger_buf_info_t b[64];
  uint64_t handles[64];
  ledger_why_t why;
  d_start(&d, -1, -1);
  session_t *s = d_session(&d, 1000);

  /* alloc_bulk of 64: one transaction, and the journal equals the ledger. */
  uint64_t t0 = txns(&d);
  assert_int_equal(ledger_buf_alloc_bulk(d.l, s->holder, 4096, 0, 64, &why, b), 0);
  d_reply(&d, s);
  assert_int_equal(txns(&d), t0 + 1);
  check(&d);
  for (int i = 0; i < 64; i++)
    handles[i] = b[i].handle;

  /* A refused free_bulk changes nothing and writes nothing. */
  handles[63] = UINT64_MAX - 1;
  assert_int_equal(ledger_buf_free_bulk(d.l, s->holder, handles, 64, &why), PP_ENOENT);
  d_reply(&d, s);
  assert_int_equal(txns(&d), t0 + 1);
  handles[63] = b[63].handle;

  /* free_bulk of half: one transaction. */
  assert_int_equal(ledger_buf_free_bulk(d.l, s->holder, handles, 32, &why), 0);
  d_reply(&d, s);
  assert_int_equal(txns(&d), t0 + 2);
  check(&d);

  /* A restart brings back exactly the 32 left, under their handles. */
  restart(&d, &n);
  assert_true(restored(&n));
  check(&n);
  assert_same_state(&d, &n);
  session_t *r = n.sessions.head;
  assert_non_null(r);
  assert_int_equal(ledger_buf_free_bulk(n.l, r->holder, handles + 32, 32, &why), 0);
  d_reply(&n, r);
  check(&n);
  ledger_holder_totals_t t;
  ledger_holder_totals(r->holder, &t);
  assert_int_equal(t.buffers, 0);
  d_free(&n);
  d_free(&d);
}

static void restart_rebuilds_exactly_the_state_of_the_last_transaction(void **state) {
  daemon_t d;
  uint64_t rng = 23;
  d_start(&d, -1, -1);
  for (int round = 0; round < 6; round++) {
    for (int i = 0; i < 60; i++)
      d_random_op(&d, &rng);
    daemon_t n;
    restart(&d, &n);
    assert_true(restored(&n));
    check(&n);
    assert_same_state(&d, &n);
    /* Every session came back detached, with its token and the reply it last journaled. */
    assert_int_equal(n.sessions.n, d.sessions.n);
    for (session_t *s = n.sessions.head; s; s = s->next) {
      assert_true(s->detached);
      session_t *o = d.sessions.head;
      while (o && o->id != s->id)
        o = o->next;
      assert_non_null(o);
      assert_memory_equal(s->token, o->token, SESSION_TOKEN_LEN);
      uint64_t id1, id2;
      size_t l1, l2;
      const uint8_t *r1 = session_kept_reply(s, &id1, &l1),
                    *r2 = session_kept_reply(o, &id2, &l2);
      assert_int_equal(id1, id2);
      assert_int_equal(l1, l2);
      if (l1) assert_memory_equal(r1, r2, l1);
    }
    /* The restarted daemon journals on: its own restart gives the same state again. */
    session_t *s = n.sessions.head;
    ledger_buf_info_t b;
    ledger_why_t why;
    assert_int_equal(ledger_buf_alloc(n.l, s->holder, 4096, 0, NULL, &why, &b), 0);
    d_reply(&n, s);
    check(&n);
    daemon_t n2;
    restart(&n, &n2);
    assert_true(restored(&n2));
    assert_same_state(&n, &n2);
    /* A handle given out after a restart is new. */
    assert_true(b.handle >= 1);
    d_free(&n2);
    d_free(&n);
  }
  d_free(&d);
}

/* Transaction and record boundaries of a journal image (generation 1, from data_start). */
static size_t boundaries(const uint8_t *img, size_t len, uint64_t data_start, uint64_t *out,
                         size_t max, uint64_t *txn_ends, size_t *ntxn) {
  size_t n = 0;
  uint64_t pos = data_start;
  *ntxn = 0;
  while (pos + 40 <= len) {
    uint32_t tlen, nrec;
    memcpy(&tlen, img + pos + 4, 4);
    memcpy(&nrec, img + pos + 24, 4);
    if (n < max) out[n++] = pos;
    uint64_t q = pos + 32;
    for (uint32_t r = 0; r < nrec; r++) {
      uint32_t rlen;
      memcpy(&rlen, img + q + 4, 4);
      if (r && n < max) out[n++] = q;
      q += 8 + rlen;
    }
    if (n < max) out[n++] = q; /* the trailer */
    pos += tlen;
    txn_ends[(*ntxn)++] = pos;
  }
  if (n < max) out[n++] = pos;
  return n;
}

static void journal_cut_at_every_record_boundary_is_rebuilt_exactly_or_refused(void **state) {
  enum { STEPS = 150 };
  daemon_t d;
  uint64_t rng = 37;
  jmodel_t expect[STEPS + 1];
  uint64_t ends[STEPS + 1];
  d_start(&d, -1, -1);
  journal_stats_t js;
  journal_get_stats(persist_journal(d.p), &js);
  const uint64_t data_start = js.data_start;
  /* The state after each step, and where the journal ended then. */
  for (int i = 0; i <= STEPS; i++) {
    if (i) d_random_op(&d, &rng);
    export_into(&d, &expect[i]);
    journal_get_stats(persist_journal(d.p), &js);
    ends[i] = js.end;
  }
  size_t len;
  uint8_t *img = read_all(journal_fd(persist_journal(d.p)), &len);
  static uint64_t cuts[20000], txn_ends[4096];
  size_t ntxn, ncut = boundaries(img, len, data_start, cuts, 20000, txn_ends, &ntxn);
  assert_true(ncut > 3 * ntxn);
  unsigned rebuilt = 0, refused = 0;
  for (size_t c = 0; c < ncut; c++) {
    uint64_t cut = cuts[c];
    /* The last step whose journal fits before the cut: its state is the one to rebuild. */
    int k = 0;
    while (k < STEPS && ends[k + 1] <= cut)
      k++;
    bool at_txn = false;
    for (size_t t = 0; t < ntxn; t++)
      at_txn |= txn_ends[t] == cut;
    daemon_t n;
    restart_from(&d, &n, img, cut);
    if (restored(&n)) {
      jmodel_t got;
      char why[256] = "";
      export_into(&n, &got);
      /* Steps that journal nothing (a refused request) leave ends[] equal: any of them. */
      int rc = jmodel_equal(&expect[k], &got, why, sizeof why);
      jmodel_fini(&got);
      if (rc) fail_msg("cut at %" PRIu64 ": rebuilt a state that never was: %s", cut, why);
      check(&n);
      rebuilt++;
    } else {
      /* Refused: only a cut inside a transaction (no crash cuts between them). */
      if (at_txn) fail_msg("cut at transaction end %" PRIu64 " was refused", cut);
      refused++;
    }
    d_free(&n);
  }
  printf("%zu cuts: %u rebuilt, %u refused\n", ncut, rebuilt, refused);
  assert_true(rebuilt >= ntxn);
  for (int i = 0; i <= STEPS; i++)
    jmodel_fini(&expect[i]);
  free(img);
  d_free(&d);
}

static void damaged_transaction_refuses_the_journal(void **state) {
  daemon_t d;
  uint64_t rng = 41;
  d_start(&d, -1, -1);
  for (int i = 0; i < 40; i++)
    d_random_op(&d, &rng);
  journal_stats_t js;
  journal_get_stats(persist_journal(d.p), &js);
  size_t len;
  uint8_t *img = read_all(journal_fd(persist_journal(d.p)), &len);
  static uint64_t cuts[4096], txn_ends[1024];
  size_t ntxn;
  boundaries(img, len, js.data_start, cuts, 4096, txn_ends, &ntxn);
  /* A flipped byte in each transaction, the first and the last included. */
  for (size_t t = 0; t < ntxn; t++) {
    uint64_t start = t ? txn_ends[t - 1] : js.data_start;
    uint64_t off = start + 32 + (txn_ends[t] - start - 40) / 2;
    img[off] ^= 0x20;
    daemon_t n;
    restart_from(&d, &n, img, len);
    img[off] ^= 0x20;
    assert_false(restored(&n));
    /* A fresh region: nobody is held, and its id is not the old one. */
    assert_int_equal(n.sessions.n, 0);
    assert_memory_not_equal(persist_region_id(n.p), persist_region_id(d.p),
                            PERSIST_REGION_ID_LEN);
    d_free(&n);
  }
  /* A damaged superblock slot has a twin: rebuilt. */
  img[100] ^= 0x01;
  daemon_t n;
  restart_from(&d, &n, img, len);
  assert_true(restored(&n));
  assert_same_state(&d, &n);
  d_free(&n);
  free(img);
  d_free(&d);
}

static void journal_of_another_region_is_refused(void **state) {
  daemon_t a, b;
  uint64_t rng = 43;
  d_start(&a, -1, -1);
  d_start(&b, -1, -1);
  for (int i = 0; i < 20; i++)
    d_random_op(&a, &rng);
  size_t len;
  uint8_t *img = read_all(journal_fd(persist_journal(a.p)), &len);
  daemon_t n;
  restart_from(&b, &n, img, len); /* b's region, a's journal */
  assert_false(restored(&n));
  assert_int_equal(n.sessions.n, 0);
  d_free(&n);
  /* A store with a region and no journal, or the other way round, is not trusted either. */
  d_start(&n, dup(region_fd(ledger_region(a.l))), -1);
  assert_false(restored(&n));
  d_free(&n);
  d_start(&n, -1, memfd_with(img, len));
  assert_false(restored(&n));
  d_free(&n);
  free(img);
  d_free(&a);
  d_free(&b);
}

static void compaction_changes_nothing(void **state) {
  daemon_t d;
  uint64_t rng = 47;
  d_start(&d, -1, -1);
  persist_stats_t st = {0};
  for (int i = 0; i < 200000 && st.compactions < 2; i++) {
    d_random_op(&d, &rng);
    persist_tick(d.p);
    persist_get_stats(d.p, &st);
  }
  assert_true(st.compactions >= 2);
  check(&d);
  journal_stats_t js;
  journal_get_stats(persist_journal(d.p), &js);
  assert_true(js.generation >= 3);
  daemon_t n;
  restart(&d, &n);
  assert_true(restored(&n));
  assert_same_state(&d, &n);
  d_free(&n);
  d_free(&d);
}

static void failed_commit_turns_journaling_off_and_grace_to_zero(void **state) {
  daemon_t d;
  uint64_t rng = 53;
  d_start(&d, -1, -1);
  for (int i = 0; i < 10; i++)
    d_random_op(&d, &rng);
  assert_true(persist_journaling(d.p));
  /* The journal memfd can take no more bytes: the commit and the snapshot both fail. */
  journal_fault_after(persist_journal(d.p), 0);
  session_t *s = d.sessions.head;
  ledger_buf_info_t b;
  ledger_why_t why;
  assert_int_equal(ledger_buf_alloc(d.l, s->holder, 4096, 0, NULL, &why, &b), 0);
  d_reply(&d, s);
  assert_false(persist_journaling(d.p));
  assert_null(persist_journal(d.p));
  assert_int_equal(persist_grace_ms(d.p), 0);
  persist_stats_t st;
  persist_get_stats(d.p, &st);
  assert_int_equal(st.failures, 1);
  /* The daemon goes on without a journal. */
  assert_int_equal(ledger_buf_free(d.l, s->holder, b.handle, &why), 0);
  d_reply(&d, s);
  check(&d);
  d_free(&d);
}

static void records_that_do_not_fit_the_model_are_refused(void **state) {
  jmodel_t m;
  char why[256];
  uint8_t tok[JM_TOKEN_LEN] = {1}, rid[JM_REGION_ID_LEN] = {2};
  jmodel_init(&m);
  /* Nothing before the region's id. */
  uint8_t p8[8] = {1};
  assert_int_equal(jmodel_apply(&m, JREC_SESSION_END, p8, 8, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_apply(&m, JREC_REGION, rid, sizeof rid, why, sizeof why), 0);
  assert_int_equal(jmodel_session_new(&m, 5, tok, 1000, 1000, 1, 0, "a", 1, why, sizeof why),
                   0);
  assert_int_equal(jmodel_session_new(&m, 5, tok, 1000, 1000, 1, 0, "a", 1, why, sizeof why),
                   PP_ECORRUPT);
  assert_int_equal(jmodel_buf_create(&m, 1, 0, 0, 1000, why, sizeof why), 0);
  /* a handle again, a misaligned block, a block where another is */
  assert_int_equal(jmodel_buf_create(&m, 1, 8192, 0, 1000, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_buf_create(&m, 2, 4096, 1, 1000, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_buf_create(&m, 2, 0, 0, 1000, why, sizeof why), PP_ECORRUPT);
  /* references: unknown session, more dropped than taken */
  assert_int_equal(jmodel_hold(&m, 9, 1, 1, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_hold(&m, 5, 1, 2, why, sizeof why), 0);
  assert_int_equal(jmodel_unhold(&m, 5, 1, 3, why, sizeof why), PP_ECORRUPT);
  /* a session does not end holding something; a held buffer is not destroyed */
  assert_int_equal(jmodel_session_end(&m, 5, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_buf_destroy(&m, 1, why, sizeof why), PP_ECORRUPT);
  /* caches: ids move forward, objects only of open caches, no close while holding them */
  assert_int_equal(jmodel_cache_create(&m, 3, 1000, 64, 8, "~1000/c", 7, why, sizeof why), 0);
  assert_int_equal(jmodel_cache_create(&m, 2, 1000, 64, 8, "~1000/d", 7, why, sizeof why),
                   PP_ECORRUPT);
  assert_int_equal(jmodel_cache_create(&m, 4, 1000, 64, 8, "~1000/c", 7, why, sizeof why),
                   PP_ECORRUPT);
  assert_int_equal(jmodel_cache_open(&m, 5, 3, 1, why, sizeof why), 0);
  assert_int_equal(jmodel_obj_take(&m, 5, 3, 65536, why, sizeof why), 0);
  assert_int_equal(jmodel_obj_take(&m, 5, 3, 65536, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_cache_close(&m, 5, 3, 1, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_cache_destroy(&m, 3, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_obj_give(&m, 5, 3, 65600, why, sizeof why), PP_ECORRUPT);
  /* malformed payloads and unknown types */
  assert_int_equal(jmodel_apply(&m, JREC_HOLD, p8, 8, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_apply(&m, 999, p8, 8, why, sizeof why), PP_ECORRUPT);
  assert_int_equal(jmodel_check(&m, why, sizeof why), 0);
  /* the end state: a buffer charged to nobody's uid */
  assert_int_equal(jmodel_owner(&m, 1, 77, why, sizeof why), 0);
  assert_int_equal(jmodel_check(&m, why, sizeof why), PP_ECORRUPT);
  jmodel_fini(&m);
}

static void model_that_does_not_fit_the_region_is_refused(void **state) {
  daemon_t d;
  d_start(&d, -1, -1);
  jmodel_t m;
  char why[256] = "";
  uint8_t tok[JM_TOKEN_LEN] = {1};
  ledger_t *l2;
  const ledger_config_t lc = {.size = REGION, .policy = REGION_PAGE_4K};
  int rfd = region_fd(ledger_region(d.l));

  /* Two buffers in one block (a buffer of 8 KiB at 0, one of 4 KiB at 4096): the model
   * refuses the overlap before any reserve. */
  jmodel_init(&m);
  jmodel_set_region(&m, persist_region_id(d.p), why, sizeof why);
  assert_int_equal(jmodel_session_new(&m, 1, tok, 1000, 1000, 1, 0, "", 0, why, sizeof why), 0);
  assert_int_equal(jmodel_buf_create(&m, 1, 0, 1, 1000, why, sizeof why), 0);
  assert_int_equal(jmodel_buf_create(&m, 2, 4096, 0, 1000, why, sizeof why), 0);
  assert_int_equal(jmodel_hold(&m, 1, 1, 1, why, sizeof why), 0);
  assert_int_equal(jmodel_hold(&m, 1, 2, 1, why, sizeof why), 0);
  assert_int_equal(ledger_adopt(&lc, rfd, &l2), 0);
  assert_int_equal(ledger_restore(l2, &m, NULL, NULL, why, sizeof why), PP_ECORRUPT);
  assert_non_null(strstr(why, "overlaps"));
  ledger_destroy(l2);
  jmodel_fini(&m);

  /* An object where a buffer is: the slab reserve meets the buddy's block. */
  jmodel_init(&m);
  jmodel_set_region(&m, persist_region_id(d.p), why, sizeof why);
  assert_int_equal(jmodel_session_new(&m, 1, tok, 1000, 1000, 1, 0, "", 0, why, sizeof why), 0);
  assert_int_equal(jmodel_buf_create(&m, 1, 0, 0, 1000, why, sizeof why), 0);
  assert_int_equal(jmodel_hold(&m, 1, 1, 1, why, sizeof why), 0);
  assert_int_equal(jmodel_cache_create(&m, 0, 1000, 64, 8, "~1000/c", 7, why, sizeof why), 0);
  assert_int_equal(jmodel_cache_open(&m, 1, 0, 1, why, sizeof why), 0);
  assert_int_equal(jmodel_obj_take(&m, 1, 0, 64, why, sizeof why), 0);
  assert_int_equal(ledger_adopt(&lc, rfd, &l2), 0);
  assert_int_equal(ledger_restore(l2, &m, NULL, NULL, why, sizeof why), PP_ECORRUPT);
  ledger_destroy(l2);

  /* A block past the region's end. */
  jmodel_fini(&m);
  jmodel_init(&m);
  jmodel_set_region(&m, persist_region_id(d.p), why, sizeof why);
  assert_int_equal(jmodel_session_new(&m, 1, tok, 1000, 1000, 1, 0, "", 0, why, sizeof why), 0);
  assert_int_equal(jmodel_buf_create(&m, 1, REGION, 0, 1000, why, sizeof why), 0);
  assert_int_equal(jmodel_hold(&m, 1, 1, 1, why, sizeof why), 0);
  assert_int_equal(ledger_adopt(&lc, rfd, &l2), 0);
  assert_int_equal(ledger_restore(l2, &m, NULL, NULL, why, sizeof why), PP_ECORRUPT);
  ledger_destroy(l2);
  jmodel_fini(&m);
  d_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(journal_matches_the_ledger_after_every_request),
      cmocka_unit_test(bulk_requests_are_one_transaction_each_and_survive_a_restart),
      cmocka_unit_test(restart_rebuilds_exactly_the_state_of_the_last_transaction),
      cmocka_unit_test(journal_cut_at_every_record_boundary_is_rebuilt_exactly_or_refused),
      cmocka_unit_test(damaged_transaction_refuses_the_journal),
      cmocka_unit_test(journal_of_another_region_is_refused),
      cmocka_unit_test(compaction_changes_nothing),
      cmocka_unit_test(failed_commit_turns_journaling_off_and_grace_to_zero),
      cmocka_unit_test(records_that_do_not_fit_the_model_are_refused),
      cmocka_unit_test(model_that_does_not_fit_the_region_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
