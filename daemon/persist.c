/*
 * persist.c — restart survival: what pinpoold writes so that a crash, a watchdog kill or a
 * restart costs its clients a pause and never a buffer, and how a new daemon takes it all
 * back.
 *
 * What outlives the process.  Two memfds, both in the service manager's file-descriptor
 * store (fdstore.c): the region (every client maps it; its contents are the clients' data)
 * and the journal (journal.c: private to the daemon, never sent to a client), which says
 * who holds what in the region.  The region is named by 16 random bytes, its region_id,
 * made when the region is created and the same for every daemon that adopts it (clients
 * check it when they re-claim).  The journal's identity blob ties it to the region memfd —
 * "PPJ1", st_dev, st_ino, size and page size of the file — so a journal is never replayed
 * over another region.
 *
 * What is written, and when.  One request = one transaction: every primitive change the
 * ledger makes while serving it (the recorder below: ledger_set_recorder) and then the
 * packed reply (JREC_REPLY), committed with one pwrite before the reply is written to the
 * socket (persist_request_end).  A request that changed nothing writes nothing.  A Hello
 * that starts a session is a transaction (JREC_SESSION_NEW); a disconnect is one (the
 * release's primitives, then JREC_SESSION_END).  So the journal never lacks a change a
 * client was told about, and a transaction torn by a crash was never answered: the client
 * sends it again.  Charges are not written (jmodel.c derives them).  Object changes of one
 * session and cache are batched into one record per run (a cache_alloc of 1024 objects is
 * one 8 KiB record).  Between requests, when journal_should_compact says the log has grown
 * past max(1 MiB, twice the last snapshot), the live state is written as a new generation
 * (persist_tick: ledger and sessions exported into a jmodel, emitted as the snapshot).
 *
 * Exactly once.  Each session keeps the reply to its last journaled request with that
 * request's id (session_t.keep, also in the journal and in every snapshot).  A client
 * whose connection broke under a request re-claims its session and sends that request
 * first, again, with its original id; conn.c answers the first request of a re-claiming
 * connection whose id equals the session's kept id with the kept bytes, without carrying it
 * out.  Ids are unique within a session (the client counts on across connections), so no
 * other request can be taken for it; a request that changed nothing was not journaled, and
 * running it again is harmless.  (One request in flight: a client that pipelined several
 * gets exactly-once for its last journaled one only.)
 *
 * Coming back (persist_start).  With "region" and "journal" in the store: journal_adopt
 * (identity, superblock, torn tail cut off) — a tail that no crash leaves (a damaged
 * transaction with answered ones after it, journal_scan_t.tail) refuses the journal,
 * since the valid prefix is then not the state the daemon promised; the journal replayed
 * into a jmodel (every record checked against the model); the ledger over the adopted
 * region built from the model's end state (ledger_restore: caches under their ids, every
 * buffer block re-taken with buddy_reserve, every object with slab_cache_reserve — all
 * reserves before anything is allocated — then references, opens, objects, charges,
 * ledger_check); and the result exported and compared with the model.  Every session comes
 * back detached, holding what it held, with its token and its kept reply; the server gives
 * each a deadline (--grace).  Anything that does not validate — a journal of another
 * region, damage, a replay that produces an invalid ledger, blocks that overlap — is never
 * trusted: the reason is logged at err, both fds leave the store (FDSTOREREMOVE=1), and the
 * daemon starts on a fresh region, where old clients' Hellos get STATE_LOST (their mapping
 * is of the old memfd, which nobody allocates from any more: no aliasing).  A store with
 * only one of the two is treated the same way.
 *
 * Failures while running.  A commit that fails (the journal memfd cannot grow: a memory
 * limit) or a record that cannot be encoded (no private memory) leaves the ledger ahead of
 * the journal.  Then a fresh snapshot of the whole live state is written in its place (a
 * compaction: the old generation stays current until the new one is complete); if that
 * fails too, journaling stops for good: both fds leave the store (a restart starts fresh
 * rather than replay an incomplete journal), new Welcomes say grace_ms 0, and the log says
 * so at err.
 *
 * Reload (SIGHUP, reload.c).  The state crosses execve as the journal: persist_reload_prepare
 * compacts it, so that its current generation is exactly the live state (one snapshot for
 * the new image to read, nothing the log could lack), and without a journal writes one for
 * the handoff alone.  The new image takes region and journal back through the same
 * recover() as after a crash (persist_config_t.handoff: from the previous image, not the
 * store, whatever --journal says), keeps journaling into it — or closes it, when the old
 * image did not journal — and the server attaches the sessions to their handed-over
 * connections.
 *
 * Shutdown (SIGTERM): persist_stop before the connections close, so that releasing their
 * sessions on the way out is not journaled: the journal keeps the live state, and a daemon
 * started with the stored fds within the grace period takes every session back.
 *
 * Pools (pools.c).  Every pool has a persist of its own: its region and its journal, in the
 * store as "region.NAME" and "journal.NAME" (the default pool's as "region" and
 * "journal"), its ledger's changes recorded there.  A pool's journal knows the sessions
 * that attached the pool (persist_attach: JREC_SESSION_NEW; persist_detach:
 * JREC_SESSION_END), their holdings in it, and the reply to their last request that
 * changed the pool (kept in p->replies, for snapshots: the session's own kept reply is
 * that of its last journaled request in any pool).  At start-up each pool is recovered on
 * its own, exactly as above, into sessions of its own (holders in s->pools[pool]); the
 * server joins them to the default pool's sessions by id (server.c), and a pool that
 * cannot be recovered — its fds missing, damaged, or no longer matching its config
 * (size, page size) — starts fresh without touching the others.  Exactly once across
 * pools: a session's kept reply after a restart is the one of the highest request id
 * among the journals (ids grow within a session).
 *
 * Without a service manager (no NOTIFY_SOCKET) there is no store and nothing survives the
 * process: journaling is off unless asked for (--journal yes, for tests and benchmarks),
 * and Welcome.grace_ms is 0 so that clients do not wait for a daemon that cannot have
 * their session.
 *
 * Locks: none; start-up and the loop thread.
 */
#define _GNU_SOURCE
#include "persist.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "fdstore.h"
#include "jmodel.h"
#include "log.h"
#include "pools.h"

_Static_assert(JM_TOKEN_LEN == SESSION_TOKEN_LEN, "tokens in the journal");
_Static_assert(JM_SESSION_NAME_MAX == SESSION_NAME_MAX, "session names in the journal");
_Static_assert(JM_REGION_ID_LEN == PERSIST_REGION_ID_LEN, "region ids in the journal");

#define IDENTITY_LEN 36u
#define FRESH_RETRY_MS 2000u /* a fresh hugepage region waits this long for the old one's */

/* A pool's last journaled reply to a session (struct persist.replies). */
typedef struct kept {
  uint64_t id;
  uint32_t len;
  uint8_t bytes[];
} kept_t;

/* Request transactions committed by every persist of this process (the test knob
 * PINPOOLD_TEST_CRASH_AFTER_COMMIT counts them all). */
static uint64_t request_txns_all;

struct persist {
  persist_config_t cfg;
  char region_name[48], journal_name[48]; /* FDNAME= of the region and the journal */
  char who[64];     /* "" for the default pool, "pool 'NAME': " for another: log lines */
  u64map_t replies; /* a pool's: session id -> kept_t * */
  ledger_t *ledger;
  journal_t *journal; /* NULL: not journaling */
  bool stored;        /* region and journal are in the fd store */
  bool state_lost;    /* stored state was there and not taken back: started fresh */
  bool stopped;
  uint8_t region_id[PERSIST_REGION_ID_LEN];
  const session_list_t *sessions; /* what a snapshot exports */
  session_t *restored;            /* until the server takes them */
  journal_t *handoff_journal;     /* written for a reload when not journaling */
  uint64_t next_session;          /* past every session id the journal has seen */

  /* the open transaction */
  bool in_txn;
  int txn_err; /* a record could not be added: the transaction cannot be committed */
  /* a run of object records of one (op, session, cache), batched into one record */
  uint32_t batch_type, batch_cache;
  uint64_t batch_session;
  uint64_t *batch;
  uint32_t batch_n, batch_cap;

  persist_stats_t stats;
};

/* ---- identity -----------------------------------------------------------------------------
 */

/* "PPJ1", st_dev, st_ino, size, page size of the region memfd. */
static int region_identity(int fd, uint8_t out[IDENTITY_LEN]) {
  struct stat st;
  struct statfs sfs;
  journal_enc_t e;
  if (fstat(fd, &st) != 0 || fstatfs(fd, &sfs) != 0) return PP_EOS;
  journal_enc_init(&e, out, IDENTITY_LEN);
  journal_enc_bytes(&e, "PPJ1", 4);
  journal_enc_u64(&e, (uint64_t)st.st_dev);
  journal_enc_u64(&e, (uint64_t)st.st_ino);
  journal_enc_u64(&e, (uint64_t)st.st_size);
  journal_enc_u64(&e, (uint64_t)sfs.f_bsize);
  return e.err;
}

/* ---- the recorder -------------------------------------------------------------------------
 */

static void txn_open(persist_t *p) {
  int rc;
  if (p->in_txn || p->txn_err) return;
  if ((rc = journal_txn_begin(p->journal)))
    p->txn_err = rc;
  else
    p->in_txn = true;
}

static void batch_flush(persist_t *p) {
  int rc;
  if (!p->batch_n) return;
  rc = jrec_objs(p->journal, p->batch_type, p->batch_session, p->batch_cache, p->batch,
                 p->batch_n);
  if (rc && !p->txn_err) p->txn_err = rc;
  p->batch_n = 0;
}

static void add(persist_t *p, int rc) {
  if (rc && !p->txn_err) p->txn_err = rc;
}

static void persist_record(void *ctx, const ledger_rec_t *r) {
  persist_t *p = ctx;
  uint32_t type;

  if (!p->journal || p->stopped) return;
  if (r->op == LEDGER_OP_CHARGE || r->op == LEDGER_OP_UNCHARGE) return; /* derived */
  txn_open(p);
  if (p->txn_err) return;
  if (r->op == LEDGER_OP_OBJ_TAKE || r->op == LEDGER_OP_OBJ_GIVE) {
    type = r->op == LEDGER_OP_OBJ_TAKE ? JREC_OBJ_TAKE : JREC_OBJ_GIVE;
    if (p->batch_n && (p->batch_type != type || p->batch_session != r->session ||
                       p->batch_cache != r->cache_id || p->batch_n == JOURNAL_TXN_MAX / 64))
      batch_flush(p);
    if (p->batch_n == p->batch_cap) {
      uint32_t cap = p->batch_cap ? p->batch_cap * 2 : 64;
      uint64_t *v = realloc(p->batch, cap * sizeof *v);
      if (!v) {
        add(p, PP_ENOPRIVMEM);
        return;
      }
      p->batch = v;
      p->batch_cap = cap;
    }
    p->batch_type = type;
    p->batch_session = r->session;
    p->batch_cache = r->cache_id;
    p->batch[p->batch_n++] = r->offset;
    return;
  }
  batch_flush(p);
  journal_t *j = p->journal;
  switch (r->op) {
  case LEDGER_OP_BUF_CREATE:
    add(p, jrec_buf_create(j, r->handle, r->offset, r->order, r->uid));
    break;
  case LEDGER_OP_BUF_DESTROY: add(p, jrec_handle(j, JREC_BUF_DESTROY, r->handle)); break;
  case LEDGER_OP_HOLD: add(p, jrec_hold(j, JREC_HOLD, r->session, r->handle, r->count)); break;
  case LEDGER_OP_UNHOLD:
    add(p, jrec_hold(j, JREC_UNHOLD, r->session, r->handle, r->count));
    break;
  case LEDGER_OP_PUBLISH: add(p, jrec_publish(j, r->handle, r->scope, r->name)); break;
  case LEDGER_OP_UNPUBLISH: add(p, jrec_handle(j, JREC_UNPUBLISH, r->handle)); break;
  case LEDGER_OP_OWNER: add(p, jrec_owner(j, r->handle, r->uid)); break;
  case LEDGER_OP_CACHE_CREATE:
    add(p, jrec_cache_create(j, r->cache_id, r->scope, r->object_size, r->align, r->name));
    break;
  case LEDGER_OP_CACHE_DESTROY: add(p, jrec_cache_destroy(j, r->cache_id)); break;
  case LEDGER_OP_CACHE_OPEN:
    add(p, jrec_cache_opens(j, JREC_CACHE_OPEN, r->session, r->cache_id, r->count));
    break;
  case LEDGER_OP_CACHE_CLOSE:
    add(p, jrec_cache_opens(j, JREC_CACHE_CLOSE, r->session, r->cache_id, r->count));
    break;
  default: break;
  }
}

/* ---- export, snapshot, failure ------------------------------------------------------------
 */

/* Is s one of p's sessions?  Every session past Hello is the default pool's; a pool's are
 * those attached to it. */
static bool of_persist(const persist_t *p, const session_t *s) {
  return !p->cfg.pool || (s->pools && s->pools[p->cfg.pool].holder);
}

const uint8_t *persist_kept_reply(const persist_t *p, uint64_t sid, uint64_t *ret_id,
                                  size_t *ret_len) {
  uint64_t v;
  const kept_t *k;
  if (!u64map_get(&p->replies, sid, &v)) return NULL;
  k = (const kept_t *)(uintptr_t)v;
  *ret_id = k->id;
  *ret_len = k->len;
  return k->bytes;
}

/* A pool's kept reply for session sid (replacing the one before).  PP_ENOPRIVMEM. */
static int keep_pool_reply(persist_t *p, uint64_t sid, uint64_t id, const uint8_t *bytes,
                           size_t len) {
  kept_t *k = malloc(sizeof *k + len);
  uint64_t v;
  if (!k) return PP_ENOPRIVMEM;
  k->id = id;
  k->len = (uint32_t)len;
  memcpy(k->bytes, bytes, len);
  if (u64map_get(&p->replies, sid, &v)) free((void *)(uintptr_t)v);
  if (u64map_put(&p->replies, sid, (uint64_t)(uintptr_t)k)) {
    u64map_del(&p->replies, sid);
    free(k);
    return PP_ENOPRIVMEM;
  }
  return 0;
}

static void drop_pool_reply(persist_t *p, uint64_t sid) {
  uint64_t v;
  if (!u64map_get(&p->replies, sid, &v)) return;
  free((void *)(uintptr_t)v);
  u64map_del(&p->replies, sid);
}

static void clear_replies(persist_t *p) {
  uint64_t k, v;
  for (size_t it = 0; u64map_next(&p->replies, &it, &k, &v);)
    free((void *)(uintptr_t)v);
  u64map_fini(&p->replies);
  u64map_init(&p->replies);
}

/* The live state — sessions (with their kept replies) and the ledger — as a model. */
static int export_live(persist_t *p, jmodel_t *m, char *why, size_t n) {
  int rc = jmodel_set_region(m, p->region_id, why, n);
  for (const session_t *s = p->sessions ? p->sessions->head : NULL; s && !rc; s = s->next) {
    if (!of_persist(p, s)) continue;
    rc =
        jmodel_session_new(m, s->id, s->token, (uint32_t)s->uid, (uint32_t)s->gid,
                           (uint32_t)s->pid, s->connected_ms, s->name, strlen(s->name), why, n);
    uint64_t rid;
    size_t rlen;
    const uint8_t *reply = p->cfg.pool ? persist_kept_reply(p, s->id, &rid, &rlen)
                                       : session_kept_reply(s, &rid, &rlen);
    if (!rc && reply) rc = jmodel_reply(m, s->id, rid, reply, rlen, why, n);
  }
  if (!rc) rc = ledger_export(p->ledger, m, why, n);
  if (!rc) jmodel_counters(m, p->next_session, 0, 0);
  return rc;
}

/* The live state as a new generation of j.  0 or an error (the old generation stays). */
static int compact_into(persist_t *p, journal_t *j) {
  jmodel_t m;
  char why[256] = "";
  int rc;

  jmodel_init(&m);
  rc = export_live(p, &m, why, sizeof why);
  if (!rc) rc = journal_compact_begin(j);
  if (!rc) {
    rc = jmodel_emit(&m, j);
    if (!rc) rc = journal_compact_commit(j);
    if (rc) journal_compact_abort(j);
  }
  jmodel_fini(&m);
  if (rc)
    log_warning("%sjournal compaction failed: %s%s%s", p->who, pp_strerror(rc),
                why[0] ? ": " : "", why[0] ? why : journal_last_error(j));
  else
    p->stats.compactions++;
  return rc;
}

static int compact(persist_t *p) {
  return compact_into(p, p->journal);
}

static void stop_journaling(persist_t *p, const char *why) {
  log_err("%srestart survival is off until pinpoold starts again: %s; the region and the "
          "journal leave the fd store, so the next start is a fresh one",
          p->who, why);
  if (p->stored) {
    fdstore_drop(p->region_name);
    fdstore_drop(p->journal_name);
  }
  p->stored = false;
  ledger_set_recorder(p->ledger, NULL, NULL);
  journal_close(p->journal);
  p->journal = NULL;
  free(p->batch);
  p->batch = NULL;
  p->batch_n = p->batch_cap = 0;
}

/* The transaction could not be written: a fresh snapshot stands in for it, or journaling
 * ends. */
static void commit_failed(persist_t *p, int rc) {
  char msg[256];
  p->stats.failures++;
  log_err("%sthe journal could not record a change: %s%s%s; writing a snapshot of the whole "
          "state instead",
          p->who, pp_strerror(rc), journal_last_error(p->journal)[0] ? ": " : "",
          journal_last_error(p->journal));
  if (compact(p) == 0) return;
  snprintf(msg, sizeof msg, "neither the change nor a snapshot could be journaled (%s)",
           pp_strerror(rc));
  stop_journaling(p, msg);
}

/* Commit the open transaction (nothing when none is open).  0 when it is durable. */
static int txn_commit(persist_t *p) {
  int rc;
  if (!p->journal) return 0;
  if (!p->in_txn && !p->txn_err) return 0;
  if (p->in_txn) batch_flush(p);
  if (p->txn_err) {
    rc = p->txn_err;
    if (p->in_txn) journal_txn_abort(p->journal);
  } else {
    rc = journal_txn_commit(p->journal, NULL);
  }
  p->in_txn = false;
  p->txn_err = 0;
  if (rc) {
    commit_failed(p, rc);
    return rc;
  }
  p->stats.txns++;
  return 0;
}

/* ---- start-up -----------------------------------------------------------------------------
 */

typedef struct restore_ctx {
  persist_t *p;
  const jmodel_t *m;
  session_t **tail;
  int rc;
} restore_ctx_t;

static void on_holder(void *ctx, uint64_t sid, ledger_holder_t *h) {
  restore_ctx_t *r = ctx;
  uint64_t v;
  const jm_session_t *js;
  session_t *s = NULL;
  u64map_get(&r->m->sessions, sid, &v);
  js = (const jm_session_t *)(uintptr_t)v;
  persist_t *p = r->p;
  if (session_restore(js->id, js->token, (pid_t)js->pid, (uid_t)js->uid, (gid_t)js->gid,
                      js->name, js->connected_ms, &s) ||
      (p->cfg.pool && !(s->pools = calloc(POOLS_MAX, sizeof *s->pools))) ||
      (js->reply_len &&
       (p->cfg.pool ? keep_pool_reply(p, js->id, js->reply_id, js->reply, js->reply_len)
                    : session_keep_reply(s, js->reply_id, js->reply, js->reply_len)))) {
    /* Without the session its holder cannot be kept: give its holdings back now. */
    if (s) session_destroy(s);
    ledger_holder_release(p->ledger, h);
    r->rc = PP_ENOPRIVMEM;
    return;
  }
  if (p->cfg.pool)
    s->pools[p->cfg.pool].holder = h; /* a pool's session: its attachment (pools.h) */
  else
    s->holder = h;
  s->next = NULL;
  *r->tail = s;
  r->tail = &s->next;
}

static void free_restored(persist_t *p) {
  session_t *s, *next;
  for (s = p->restored; s; s = next) {
    next = s->next;
    if (s->holder) ledger_holder_release(p->ledger, s->holder);
    if (p->cfg.pool && s->pools && s->pools[p->cfg.pool].holder)
      ledger_holder_release(p->ledger, s->pools[p->cfg.pool].holder);
    session_destroy(s);
  }
  p->restored = NULL;
}

/* A pool's stored region must be what its config says now: a pool whose size or page size
 * was changed between runs starts fresh rather than live on in its old shape. */
static int fits_config(const ledger_t *l, const ledger_config_t *lc, char *why, size_t n) {
  static const uint64_t policy_page[] = {
      [REGION_PAGE_4K] = 4096u, [REGION_PAGE_2M] = 2u << 20, [REGION_PAGE_1G] = 1u << 30};
  const region_t *r = ledger_region(l);
  uint64_t ps = region_page_size(r), want = (lc->size + ps - 1) / ps * ps;
  if (lc->policy != REGION_PAGE_AUTO && ps != policy_page[lc->policy]) {
    snprintf(why, n, "the stored region has pages of %" PRIu64 " bytes, its config says %s", ps,
             region_policy_name(lc->policy));
    return PP_EGEOMETRY;
  }
  if (region_size(r) != want) {
    snprintf(why, n, "the stored region has %" PRIu64 " bytes, its config says %" PRIu64,
             region_size(r), want);
    return PP_EGEOMETRY;
  }
  return 0;
}

/* The stored region and journal back, or why not.  On success p->ledger, p->journal and
 * p->restored are set and *journal_fd belongs to the journal (-1); on failure nothing is
 * left over and both fds are still the caller's. */
static int recover(persist_t *p, const ledger_config_t *lc, int region_fd, int *journal_fd,
                   char *why, size_t n) {
  uint8_t id[IDENTITY_LEN];
  journal_scan_t scan;
  journal_t *j = NULL;
  jmodel_t m, live;
  char w[256] = "";
  int rc;

  jmodel_init(&m);
  jmodel_init(&live);
  if ((rc = region_identity(region_fd, id))) {
    snprintf(why, n, "the stored region cannot be read: %s", strerror(errno));
    goto out;
  }
  rc = journal_adopt(*journal_fd, id, sizeof id, &j, &scan, w, sizeof w);
  if (rc) {
    snprintf(why, n, "journal: %s (%s)", w, pp_err_name(rc));
    goto out;
  }
  *journal_fd = -1; /* the journal's now */
  if (scan.tail == JOURNAL_TAIL_DAMAGED) {
    snprintf(why, n, "the journal is damaged after transaction %" PRIu64 ": %s",
             scan.next_seq ? scan.next_seq - 1 : 0, scan.stop_reason);
    rc = PP_ECORRUPT;
    goto out;
  }
  if ((rc = jmodel_replay(j, &m, NULL, w, sizeof w))) {
    snprintf(why, n, "replay: %s", w);
    goto out;
  }
  if ((rc = ledger_adopt(lc, region_fd, &p->ledger))) {
    snprintf(why, n, "the stored region cannot be adopted: %s", pp_strerror(rc));
    goto out;
  }
  if (p->cfg.pool && (rc = fits_config(p->ledger, lc, why, n))) goto out;
  restore_ctx_t r = {.p = p, .m = &m, .tail = &p->restored};
  if ((rc = ledger_restore(p->ledger, &m, on_holder, &r, w, sizeof w)) || (rc = r.rc)) {
    snprintf(why, n, "the journal's state does not fit the region: %s",
             rc == PP_ENOPRIVMEM ? "out of private memory" : w);
    goto out;
  }
  /* The rebuilt state, read back, must be what the journal says. */
  memcpy(p->region_id, m.region_id, sizeof p->region_id);
  p->next_session = m.next_session;
  session_list_t list = {.head = p->restored};
  p->sessions = &list;
  rc = export_live(p, &live, w, sizeof w);
  if (!rc) rc = jmodel_equal(&m, &live, w, sizeof w);
  p->sessions = NULL;
  if (rc) {
    snprintf(why, n, "the rebuilt state differs from the journal: %s", w);
    goto out;
  }
  p->journal = j;
  j = NULL;
  session_skip_ids(m.next_session);
  log_notice("%s%s (generation %" PRIu64 ", %" PRIu64
             " transactions%s%s): %zu sessions, %zu buffers, %zu caches, %zu objects",
             p->who,
             p->cfg.handoff ? "reload: the previous image's state taken back from its journal"
                            : "restored from the journal",
             scan.generation, scan.txns, scan.tail != JOURNAL_TAIL_NONE ? ", a " : "",
             scan.tail == JOURNAL_TAIL_TORN       ? "torn last write dropped"
             : scan.tail == JOURNAL_TAIL_SNAPSHOT ? "crashed compaction dropped"
                                                  : "",
             u64map_len(&m.sessions), u64map_len(&m.bufs), u64map_len(&m.caches),
             u64map_len(&m.obj_owner));
out:
  if (rc) {
    free_restored(p);
    clear_replies(p);
    if (p->ledger) ledger_destroy(p->ledger);
    p->ledger = NULL;
  }
  journal_close(j); /* on failure: the journal memfd it adopted (the store has its own) */
  jmodel_fini(&m);
  jmodel_fini(&live);
  return rc;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A fresh region (and journal): the ledger, a random region id, the journal with its first
 * transaction, both fds into the store. */
static int start_fresh(persist_t *p, const ledger_config_t *lc, bool old_dropped) {
  uint8_t id[IDENTITY_LEN];
  uint64_t until = mono_ms() + FRESH_RETRY_MS;
  size_t got = 0;
  int rc;

  for (;;) {
    rc = ledger_create(lc, &p->ledger);
    /* The old region's hugepages go back to the pool only when the store and its last
     * client have let go of them: give that a moment. */
    if (rc != PP_ENOHUGE || !old_dropped || mono_ms() >= until) break;
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (rc) return rc;
  while (got < sizeof p->region_id) {
    ssize_t r = getrandom(p->region_id + got, sizeof p->region_id - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      log_err("getrandom: %s", strerror(errno));
      return PP_EOS;
    }
    got += (size_t)r;
  }
  if (!p->cfg.journal) return 0;
  int fd = region_fd(ledger_region(p->ledger));
  if ((rc = region_identity(fd, id)) || (rc = journal_create(id, sizeof id, &p->journal))) {
    log_err("%scannot create the journal (%s): restart survival is off", p->who,
            pp_strerror(rc));
    p->journal = NULL;
    return 0;
  }
  if ((rc = journal_txn_begin(p->journal)) || (rc = jrec_region(p->journal, p->region_id)) ||
      (rc = jrec_counters(p->journal, p->next_session, 1, 0)) ||
      (rc = journal_txn_commit(p->journal, NULL))) {
    log_err("%scannot write the journal (%s): restart survival is off", p->who,
            pp_strerror(rc));
    journal_close(p->journal);
    p->journal = NULL;
    return 0;
  }
  if (p->cfg.fd_store) {
    if (fdstore_put(fd, p->region_name) == 0 &&
        fdstore_put(journal_fd(p->journal), p->journal_name) == 0) {
      p->stored = true;
    } else {
      fdstore_drop(p->region_name);
      fdstore_drop(p->journal_name);
    }
  }
  return 0;
}

int persist_start(const persist_config_t *cfg, const ledger_config_t *lc, int region_fd,
                  int journal_fd, ledger_t **ret_ledger, persist_t **ret) {
  persist_t *p = calloc(1, sizeof *p);
  char why[512] = "";
  bool dropped = false;
  int rc;

  if (!p) {
    if (region_fd >= 0) close(region_fd);
    if (journal_fd >= 0) close(journal_fd);
    return PP_ENOPRIVMEM;
  }
  p->cfg = *cfg;
  p->next_session = 1;
  u64map_init(&p->replies);
  if (cfg->pool) {
    snprintf(p->region_name, sizeof p->region_name, "%s.%s", FDSTORE_REGION, cfg->pool_name);
    snprintf(p->journal_name, sizeof p->journal_name, "%s.%s", FDSTORE_JOURNAL, cfg->pool_name);
  } else {
    snprintf(p->region_name, sizeof p->region_name, "%s", FDSTORE_REGION);
    snprintf(p->journal_name, sizeof p->journal_name, "%s", FDSTORE_JOURNAL);
  }
  if (cfg->pool) snprintf(p->who, sizeof p->who, "pool '%s': ", cfg->pool_name);
  p->cfg.pool_name = NULL; /* the caller's string: only the names above are kept */
  if (region_fd >= 0 || journal_fd >= 0) {
    if (!cfg->journal && !cfg->handoff)
      snprintf(why, sizeof why, "journaling is off (--journal no)");
    else if (region_fd < 0 || journal_fd < 0)
      snprintf(why, sizeof why, "the fd store holds a %s but no %s",
               region_fd >= 0 ? "region" : "journal", region_fd >= 0 ? "journal" : "region");
    else if (recover(p, lc, region_fd, &journal_fd, why, sizeof why) == 0)
      why[0] = '\0';
    if (why[0]) {
      log_err("%snot taking back the %s state: %s; starting on a fresh region (the old "
              "region's clients get STATE_LOST)",
              p->who, cfg->handoff ? "previous image's" : "stored", why);
      if (!cfg->handoff || cfg->handoff_stored) {
        fdstore_drop(p->region_name);
        fdstore_drop(p->journal_name);
      }
      dropped = true;
      p->state_lost = true;
    } else {
      /* After a reload the store holds what the previous image put there, if anything. */
      p->stored = cfg->handoff ? cfg->handoff_stored : cfg->fd_store;
      p->stats.restored = true;
      if (cfg->handoff && (cfg->handoff_journal_temp || !cfg->journal)) {
        /* The previous image did not journal (it wrote this one for the handoff only), or
         * this one is told not to: a journal left in the store would go stale. */
        if (p->stored) {
          fdstore_drop(p->region_name);
          fdstore_drop(p->journal_name);
          p->stored = false;
        }
        journal_close(p->journal);
        p->journal = NULL;
      }
    }
    if (region_fd >= 0) close(region_fd); /* the ledger adopted a duplicate */
    if (journal_fd >= 0) close(journal_fd);
  }
  if (!p->ledger && (rc = start_fresh(p, lc, dropped))) {
    log_err("%scannot create the region (%" PRIu64 " bytes, %s pages): %s", p->who, lc->size,
            region_policy_name(lc->policy), pp_strerror(rc));
    free(p);
    return rc;
  }
  if (p->journal) ledger_set_recorder(p->ledger, persist_record, p);
  if (!cfg->fd_store) {
    if (!cfg->handoff && !cfg->pool) /* said at the first start already, once */
      log_notice("no service manager fd store (NOTIFY_SOCKET is not set): a restart loses "
                 "every session; run under systemd (pinpoold.service) for restart survival");
  } else if (!p->stored)
    log_warning("%srestart survival is off: the region and journal are not in the fd store",
                p->who);
  *ret_ledger = p->ledger;
  *ret = p;
  return 0;
}

void persist_free(persist_t *p) {
  if (!p) return;
  persist_stop(p); /* sessions never served (a daemon that could not listen) stay journaled */
  free_restored(p);
  journal_close(p->journal);
  journal_close(p->handoff_journal);
  free(p->batch);
  clear_replies(p);
  u64map_fini(&p->replies);
  free(p);
}

session_t *persist_take_restored(persist_t *p) {
  session_t *s = p->restored;
  p->restored = NULL;
  return s;
}

void persist_bind_sessions(persist_t *p, const session_list_t *sessions) {
  p->sessions = sessions;
}

const uint8_t *persist_region_id(const persist_t *p) {
  return p->region_id;
}

uint32_t persist_grace_ms(const persist_t *p) {
  return p->journal && p->stored && !p->stopped ? p->cfg.grace_ms : 0;
}

bool persist_journaling(const persist_t *p) {
  return p->journal && !p->stopped;
}

void persist_get_stats(const persist_t *p, persist_stats_t *ret) {
  *ret = p->stats;
}

journal_t *persist_journal(const persist_t *p) {
  return p->journal;
}

/* ---- while running ------------------------------------------------------------------------
 */

void persist_session_new(persist_t *p, const session_t *s) {
  if (s->id >= p->next_session) p->next_session = s->id + 1;
  if (!persist_journaling(p)) return;
  txn_open(p);
  if (!p->txn_err)
    add(p, jrec_session_new(p->journal, s->id, s->token, (uint32_t)s->uid, (uint32_t)s->gid,
                            (uint32_t)s->pid, s->connected_ms, s->name));
  txn_commit(p);
}

void persist_release(persist_t *p, ledger_t *l, session_t *s) {
  if (s->holder) {
    ledger_holder_release(l, s->holder);
    s->holder = NULL;
  }
  if (!persist_journaling(p)) return;
  txn_open(p);
  if (p->in_txn) batch_flush(p);
  if (!p->txn_err) add(p, jrec_session_end(p->journal, s->id));
  txn_commit(p);
}

void persist_attach(persist_t *p, const session_t *s) {
  if (s->id >= p->next_session) p->next_session = s->id + 1;
  if (!persist_journaling(p)) return;
  txn_open(p);
  if (!p->txn_err)
    add(p, jrec_session_new(p->journal, s->id, s->token, (uint32_t)s->uid, (uint32_t)s->gid,
                            (uint32_t)s->pid, s->connected_ms, s->name));
  txn_commit(p);
}

void persist_detach(persist_t *p, ledger_t *l, session_t *s) {
  ledger_holder_t *h = s->pools ? s->pools[p->cfg.pool].holder : NULL;
  if (!h) return;
  ledger_holder_release(l, h);
  s->pools[p->cfg.pool].holder = NULL;
  drop_pool_reply(p, s->id);
  if (!persist_journaling(p)) return;
  txn_open(p);
  if (p->in_txn) batch_flush(p);
  if (!p->txn_err) add(p, jrec_session_end(p->journal, s->id));
  txn_commit(p);
}

void persist_request_end(persist_t *p, session_t *s, uint64_t req_id, const uint8_t *reply,
                         size_t len) {
  if (!p->journal || (!p->in_txn && !p->txn_err)) return; /* nothing changed */
  if (reply) {
    session_keep_reply(s, req_id, reply, len);
    if (p->cfg.pool && keep_pool_reply(p, s->id, req_id, reply, len)) add(p, PP_ENOPRIVMEM);
    if (p->in_txn) {
      batch_flush(p);
      if (!p->txn_err) add(p, jrec_reply(p->journal, s->id, req_id, reply, len));
    }
  }
  if (txn_commit(p) == 0 && reply) {
    p->stats.request_txns++;
    request_txns_all++;
    if (p->cfg.crash_after_commit && request_txns_all == p->cfg.crash_after_commit) {
      log_notice("PINPOOLD_TEST_CRASH_AFTER_COMMIT=%" PRIu64 ": request %" PRIu64
                 " of session %" PRIu64 " is journaled; dying unanswered",
                 p->cfg.crash_after_commit, req_id, s->id);
      raise(SIGKILL);
    }
  }
  if (p->cfg.check_every_request && p->journal) {
    char why[512];
    if (persist_check(p, why, sizeof why)) {
      log_err("PINPOOLD_TEST_CHECK_JOURNAL: the journal and the ledger differ after request "
              "%" PRIu64 " of session %" PRIu64 ": %s",
              req_id, s->id, why);
      abort();
    }
  }
}

void persist_tick(persist_t *p) {
  if (!persist_journaling(p) || p->in_txn || !journal_should_compact(p->journal)) return;
  if (compact(p)) commit_failed(p, PP_EOS);
}

int persist_check(persist_t *p, char *why, size_t why_len) {
  jmodel_t a, b;
  char w[256] = "";
  int rc;

  if (!p->journal) return 0;
  jmodel_init(&a);
  jmodel_init(&b);
  rc = jmodel_replay(p->journal, &a, NULL, w, sizeof w);
  if (rc) {
    snprintf(why, why_len, "replaying the journal: %s", w);
    rc = PP_ECORRUPT;
    goto out;
  }
  if ((rc = jmodel_check(&a, w, sizeof w))) {
    snprintf(why, why_len, "the journal's state: %s", w);
    goto out;
  }
  if ((rc = export_live(p, &b, w, sizeof w))) {
    snprintf(why, why_len, "exporting the live state: %s", w);
    rc = PP_ECORRUPT;
    goto out;
  }
  if ((rc = jmodel_equal(&a, &b, w, sizeof w))) snprintf(why, why_len, "%s", w);
out:
  jmodel_fini(&a);
  jmodel_fini(&b);
  return rc;
}

void persist_stop(persist_t *p) {
  p->stopped = true;
  if (p->ledger) ledger_set_recorder(p->ledger, NULL, NULL);
}

bool persist_state_lost(const persist_t *p) {
  return p->state_lost;
}

bool persist_stored(const persist_t *p) {
  return p->stored;
}

int persist_reload_prepare(persist_t *p, int *ret_fd, bool *ret_temp) {
  uint8_t id[IDENTITY_LEN];
  journal_t *j = NULL;
  int rc;

  if (p->stopped || p->in_txn || p->handoff_journal) return PP_EBUSY;
  if (p->journal) {
    /* The current generation becomes exactly the live state: the next image's replay is
     * one snapshot, and what it rebuilds is what we hold, not only what we journaled. */
    if ((rc = compact(p))) return rc;
    *ret_fd = journal_fd(p->journal);
    *ret_temp = false;
    return 0;
  }
  /* Not journaling (no store, --journal no, or journaling failed for good): the state
   * still travels as a journal, written now for the handoff alone. */
  if ((rc = region_identity(region_fd(ledger_region(p->ledger)), id)) ||
      (rc = journal_create(id, sizeof id, &j)))
    return rc;
  if ((rc = compact_into(p, j))) {
    journal_close(j);
    return rc;
  }
  p->handoff_journal = j;
  *ret_fd = journal_fd(j);
  *ret_temp = true;
  return 0;
}

void persist_reload_abort(persist_t *p) {
  journal_close(p->handoff_journal);
  p->handoff_journal = NULL;
}

void persist_abandon(persist_t *p, const char *why) {
  if (!p->journal) return;
  stop_journaling(p, why);
}
