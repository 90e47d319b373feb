/*
 * handshake.c — from an accepted connection to a session past Hello: admission, client
 * slots, the per-uid limits, the slots kept for administrators, and the Welcome that
 * carries the region's memfd.
 *
 * Screening (handshake_screen, at accept, before anything is allocated for the
 * connection): SO_PEERCRED says who it is and whether it is an administrator (root or
 * --admin-group, decided once).  Connections that have not said Hello yet ("pending") are
 * bounded three ways: all together by max(64, --max-clients), of which the last
 * admin_reserve places only administrators may take; and per uid by
 * --max-pending-per-uid (administrators are exempt).  They are also bounded in time by
 * --hello-timeout.  A connection over a bound gets no session but is still read until its
 * first frame (so a client's Hello does not meet EPIPE) and is answered TOO_MANY_CLIENTS
 * saying which bound — for the per-uid one, which uid and what limit — and then closed;
 * the refusal deadline closes it if that frame never comes.  Beyond 64 refusals in
 * progress at once, a connection over a bound is closed at once, unread.  So a flood of
 * connections that never say Hello, from one uid, holds at most --max-pending-per-uid
 * pending places and 64 refusal places, and every other uid still gets in.
 *
 * Hello (handshake_frame): the first frame must be Hello (else PROTOCOL_ERROR; a wrong
 * version: UNSUPPORTED_VERSION).  A client slot is taken by a successful Hello, not by
 * accept(): a health probe that connects and leaves, or a client still on its way, holds
 * none.  Slots: --max-clients in all, of which admin_reserve (--admin-reserve, at most a
 * quarter of --max-clients) are kept for administrators, so that pinpoolctl gets in when
 * ordinary users have filled the table; and at most --max-clients-per-uid for one uid.
 * Administrators are bounded by --max-clients alone: no per-uid limit, and the reserve is
 * theirs.  A Hello over a limit is answered TOO_MANY_CLIENTS with its own id and a message
 * naming the limit (and the uid), then the connection closes.  An accepted Hello gives the
 * session its holder in the ledger and puts it on the session list (Stats.clients), then
 * the Welcome goes out.
 *
 * Per-uid counts: one u64map entry per uid with a connection, holding its sessions (low
 * 32 bits) and pending connections (high 32 bits); the entry goes when both are zero.
 * Taking a pending place may allocate (a new entry); every later change rewrites an
 * existing entry and cannot fail.
 *
 * Refusals are logged at notice, at most one line per second with the number left
 * unlogged, so that a flood cannot flood the log.
 *
 * Re-claim (restart survival, persist.c): a Hello with a session token names a session a
 * restarted daemon brought back from its journal.  If it is detached (not re-claimed yet,
 * its deadline not passed) and of the connection's uid, the connection takes it over —
 * same id, token and holdings; it already holds a client slot, so no limit is checked —
 * and the Welcome says reclaimed.  Any other token is STATE_LOST.  Every Welcome carries
 * the region_id and grace_ms (0 when a restart could not keep the session).  A new
 * session is journaled before its Welcome goes out.
 *
 * Welcome: sent with frame_sendmsg_fd() — sendmsg() + SCM_RIGHTS carrying the region
 * memfd on its first byte.  libuv cannot pass an arbitrary fd, so the Welcome goes
 * straight to the socket (uv_fileno) while nothing else is queued — true by construction,
 * since Hello is the first frame and nothing was written before.  Whatever part of the
 * frame the socket does not take at once follows through the ordinary write path.
 *
 * Leaving (handshake_leave, at teardown): a session past Hello gives back its client slot
 * and leaves the session list; one before Hello its pending place.
 *
 * Locks: none; the loop thread only.
 */
#include "server_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buddy.h"
#include "log.h"

#define HANDSHAKE_MIN_PENDING 64u /* pre-Hello connections allowed: max(this, max_clients) */
#define HANDSHAKE_MAX_REJECTING 64u
#define HANDSHAKE_LOG_EVERY_MS 1000u

/* ---- per-uid counts ------------------------------------------------------------------- */

static void uid_counts(const server_t *srv, uid_t uid, uint32_t *ret_sessions,
                       uint32_t *ret_pending) {
  uint64_t v = 0;
  u64map_get(&srv->uids, uid, &v);
  *ret_sessions = (uint32_t)v;
  *ret_pending = (uint32_t)(v >> 32);
}

/* Add ds sessions and dp pending connections to uid's counts.  PP_ENOPRIVMEM only when a
 * new entry is needed and cannot be had. */
static int uid_adjust(server_t *srv, uid_t uid, int ds, int dp) {
  uint32_t s, p;
  uid_counts(srv, uid, &s, &p);
  s = (uint32_t)((int64_t)s + ds);
  p = (uint32_t)((int64_t)p + dp);
  /* Deleting first means a put that rewrites an entry never has to grow the table (it
   * may grow before looking for the key), so only a new uid can fail. */
  u64map_del(&srv->uids, uid);
  if (s == 0 && p == 0) return 0;
  return u64map_put(&srv->uids, uid, (uint64_t)p << 32 | s);
}

/* ---- refusals ------------------------------------------------------------------------- */

static void log_refusal(server_t *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void log_refusal(server_t *srv, const char *fmt, ...) {
  uint64_t now = uv_now(&srv->loop);
  char msg[256];
  va_list ap;

  if (srv->refusal_log_ms && now - srv->refusal_log_ms < HANDSHAKE_LOG_EVERY_MS) {
    srv->refusals_unlogged++;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (srv->refusals_unlogged)
    log_notice("%s (and %u more refusals not logged)", msg, srv->refusals_unlogged);
  else
    log_notice("%s", msg);
  srv->refusal_log_ms = now ? now : 1;
  srv->refusals_unlogged = 0;
}

static uint32_t pending_bound(const server_t *srv) {
  return srv->cfg->max_clients > HANDSHAKE_MIN_PENDING ? srv->cfg->max_clients
                                                       : HANDSHAKE_MIN_PENDING;
}

handshake_verdict_t handshake_screen(server_t *srv, const struct ucred *cred, bool *ret_admin,
                                     conn_refusal_t *ret_why) {
  const server_config_t *cfg = srv->cfg;
  bool admin = session_is_admin(cred->uid, cred->gid, cfg->admin_gid);
  uint32_t bound = pending_bound(srv), sessions, pending;
  conn_refusal_t why = REFUSE_NONE;

  *ret_admin = admin;
  uid_counts(srv, cred->uid, &sessions, &pending);
  if (srv->npending >= (admin ? bound : bound - srv->admin_reserve))
    why = REFUSE_PENDING;
  else if (!admin && cfg->max_pending_per_uid && pending >= cfg->max_pending_per_uid)
    why = REFUSE_PENDING_UID;
  if (why == REFUSE_NONE) return HANDSHAKE_ADMIT;
  *ret_why = why;
  if (why == REFUSE_PENDING)
    log_refusal(srv, "pid %d uid %u refused: %u connections have not said hello yet (max %u)",
                (int)cred->pid, (unsigned)cred->uid, srv->npending, bound);
  else
    log_refusal(srv,
                "pid %d uid %u refused: uid %u has %u connections that have not said hello "
                "yet (limit %u per uid)",
                (int)cred->pid, (unsigned)cred->uid, (unsigned)cred->uid, pending,
                cfg->max_pending_per_uid);
  return srv->nrejecting >= HANDSHAKE_MAX_REJECTING ? HANDSHAKE_DROP : HANDSHAKE_REFUSE;
}

int handshake_admit(conn_t *c, const struct ucred *cred, bool admin, handshake_verdict_t v,
                    conn_refusal_t why) {
  server_t *srv = c->srv;
  int rc;

  if (v != HANDSHAKE_ADMIT) {
    c->refusal = (uint8_t)why;
    server_dl_push(c, DL_REJECT);
    return 0;
  }
  if ((rc = session_create(cred->pid, cred->uid, cred->gid, &c->session))) {
    log_err("cannot create a session for pid %d: %s", (int)cred->pid, pp_strerror(rc));
    return rc;
  }
  if ((rc = uid_adjust(srv, cred->uid, 0, 1))) {
    log_err("cannot count a connection of uid %u: %s", (unsigned)cred->uid, pp_strerror(rc));
    session_destroy(c->session);
    c->session = NULL;
    return rc;
  }
  c->session->admin = admin;
  c->rejecting = false;
  srv->nrejecting--;
  srv->npending++;
  server_dl_push(c, DL_HELLO);
  return 0;
}

static int send_welcome(conn_t *c, Pinpool__V1__Response *resp) {
  const region_t *r = ledger_region(c->srv->ledger);
  uint8_t *buf = NULL;
  size_t len = 0;
  uv_os_fd_t fd;
  ssize_t n;
  int rc;

  if (c->out) return PP_EINTERNAL;
  if ((rc = frame_pack(&resp->base, c->srv->cfg->max_frame, &buf, &len))) return rc;
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd)) {
    free(buf);
    return PP_EINTERNAL;
  }
  do
    n = frame_sendmsg_fd(fd, buf, len, region_fd(r), MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    log_info("sending Welcome to session %" PRIu64 ": %s", c->session->id, strerror(errno));
    free(buf);
    return PP_EIO;
  }
  /* The fd went with the first byte; the rest, if any, takes the ordinary path. */
  return conn_write(c, buf, (size_t)n, len);
}

/* The Welcome for c's session (after a Hello that started or re-claimed it). */
static void welcome(conn_t *c, const Pinpool__V1__Request *req, bool reclaimed) {
  server_t *srv = c->srv;
  session_t *s = c->session;
  const region_t *r = ledger_region(srv->ledger);
  Pinpool__V1__Response resp = PINPOOL__V1__RESPONSE__INIT;
  Pinpool__V1__Welcome w = PINPOOL__V1__WELCOME__INIT;

  w.protocol_version = PROTOCOL_VERSION;
  w.session_id = s->id;
  w.session_token.data = s->token;
  w.session_token.len = SESSION_TOKEN_LEN;
  w.region_size = region_size(r);
  w.page_size = region_page_size(r);
  w.hugepages = region_hugepages(r);
  w.physical_addresses = region_phys_known(r);
  w.max_frame = srv->cfg->max_frame;
  w.min_block = BUDDY_MIN_SIZE;
  w.region_id.data = (uint8_t *)persist_region_id(srv->persist);
  w.region_id.len = PERSIST_REGION_ID_LEN;
  w.grace_ms = persist_grace_ms(srv->persist);
  w.reclaimed = reclaimed;
  w.features = HANDLERS_FEATURES;
  resp.id = req->id;
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_WELCOME;
  resp.welcome = &w;
  if (send_welcome(c, &resp)) {
    conn_close_now(c);
    return;
  }
  log_info("session %" PRIu64 " '%s' pid %d uid %u gid %u%s %s", s->id, s->name, (int)s->pid,
           (unsigned)s->uid, (unsigned)s->gid, s->admin ? " (admin)" : "",
           reclaimed ? "re-claimed after the restart" : "connected");
}

/* Hello with a session token: the detached session it names comes back on this connection,
 * holdings unchanged.  Only a detached session can be re-claimed (one that a restart brought
 * back from the journal and whose deadline has not passed), only by its uid; any other token
 * is a session this daemon does not have: STATE_LOST, one answer for every case. */
static void reclaim(conn_t *c, const Pinpool__V1__Request *req) {
  server_t *srv = c->srv;
  session_t *p = c->session, *d = NULL;
  const ProtobufCBinaryData *tok = &req->hello->session_token;

  if (tok->len == SESSION_TOKEN_LEN)
    for (session_t *s = srv->sessions.head; s; s = s->next)
      if (s->detached && !memcmp(s->token, tok->data, SESSION_TOKEN_LEN)) {
        d = s;
        break;
      }
  if (!d || d->uid != p->uid) {
    if (d)
      log_notice("pid %d uid %u presented the token of session %" PRIu64 " of uid %u: refused",
                 (int)p->pid, (unsigned)p->uid, d->id, (unsigned)d->uid);
    conn_fail(c, req->id, PP_ESTATELOST,
              "this daemon has no session with that token (it restarted without its journal, "
              "or the grace period ended): connect anew");
    return;
  }
  /* The connection's provisional session gives way to the detached one, which already
   * holds a client slot of its uid. */
  srv->npending--;
  uid_adjust(srv, p->uid, 0, -1);  /* the entry exists: it cannot fail */
  server_dl_remove(c, DL_SIDE_IN); /* the hello deadline */
  d->detached = false;
  d->admin = p->admin;
  d->requests += p->requests;
  if (d->pid != p->pid)
    log_info("session %" PRIu64 " was pid %d's, is re-claimed by pid %d", d->id, (int)d->pid,
             (int)p->pid);
  session_destroy(p);
  c->session = d;
  c->replay_armed = true;
  server_grace_arm(srv);
  welcome(c, req, true);
}

static void hello(conn_t *c, const Pinpool__V1__Request *req) {
  server_t *srv = c->srv;
  const server_config_t *cfg = srv->cfg;
  session_t *s = c->session;
  const Pinpool__V1__Hello *h = req->hello;
  ledger_ident_t ident = {.session_id = s->id, .pid = s->pid, .uid = s->uid};

  if (h->protocol_version != PROTOCOL_VERSION) {
    conn_fail(c, req->id, PP_EVERSION,
              "protocol version %u not supported; this daemon speaks %u", h->protocol_version,
              PROTOCOL_VERSION);
    return;
  }
  if (h->session_token.len) {
    reclaim(c, req);
    return;
  }
  if (srv->sessions.n >= cfg->max_clients - (s->admin ? 0 : srv->admin_reserve)) {
    log_refusal(srv,
                "pid %d uid %u refused: %u clients connected (max %u, %u kept for "
                "administrators)",
                (int)s->pid, (unsigned)s->uid, srv->sessions.n, cfg->max_clients,
                srv->admin_reserve);
    if (s->admin || !srv->admin_reserve)
      conn_fail(c, req->id, PP_ETOOMANY, "too many clients (max %u)", cfg->max_clients);
    else
      conn_fail(c, req->id, PP_ETOOMANY,
                "too many clients (max %u, %u kept for administrators)", cfg->max_clients,
                srv->admin_reserve);
    return;
  }
  if (!s->admin && cfg->max_clients_per_uid) {
    uint32_t sessions, pending;
    uid_counts(srv, s->uid, &sessions, &pending);
    if (sessions >= cfg->max_clients_per_uid) {
      log_refusal(srv,
                  "pid %d uid %u refused: uid %u has %u clients connected (limit %u per "
                  "uid)",
                  (int)s->pid, (unsigned)s->uid, (unsigned)s->uid, sessions,
                  cfg->max_clients_per_uid);
      conn_fail(c, req->id, PP_ETOOMANY, "uid %u has %u clients connected (limit %u per uid)",
                (unsigned)s->uid, sessions, cfg->max_clients_per_uid);
      return;
    }
  }
  if (ledger_holder_create(srv->ledger, &ident, &s->holder)) {
    conn_fail(c, req->id, PP_ENOPRIVMEM, "daemon out of private memory");
    return;
  }
  session_set_name(s, h->client_name);
  s->hello_done = true;
  srv->npending--;
  uid_adjust(srv, s->uid, 1, -1); /* the entry exists: it cannot fail */
  session_list_add(&srv->sessions, s);
  server_status(srv);
  server_dl_remove(c, DL_SIDE_IN);      /* the hello deadline */
  persist_session_new(srv->persist, s); /* journaled before the Welcome announces it */
  welcome(c, req, false);
}

void handshake_frame(conn_t *c, const Pinpool__V1__Request *req) {
  const server_config_t *cfg = c->srv->cfg;
  if (c->rejecting) {
    if (c->refusal == REFUSE_PENDING_UID)
      conn_fail(c, req->id, PP_ETOOMANY,
                "uid %u has too many connections waiting for their hello (limit %u per uid)",
                (unsigned)c->uid, cfg->max_pending_per_uid);
    else
      conn_fail(c, req->id, PP_ETOOMANY,
                "too many connections waiting for their hello (max %u)", pending_bound(c->srv));
    return;
  }
  c->session->requests++;
  if (req->body_case == PINPOOL__V1__REQUEST__BODY__NOT_SET)
    conn_fail(c, req->id, PP_EPROTO, "request with no known body");
  else if (req->body_case != PINPOOL__V1__REQUEST__BODY_HELLO)
    conn_fail(c, req->id, PP_EPROTO, "the first request must be hello");
  else
    hello(c, req);
}

int handshake_restore(server_t *srv, session_t *s) {
  int rc = uid_adjust(srv, s->uid, 1, 0);
  if (rc) return rc;
  session_list_add(&srv->sessions, s);
  return 0;
}

void handshake_forget(server_t *srv, session_t *s) {
  session_list_del(&srv->sessions, s);
  uid_adjust(srv, s->uid, -1, 0);
}

void handshake_leave(conn_t *c) {
  server_t *srv = c->srv;
  if (c->rejecting || !c->session) return;
  if (c->session->hello_done) {
    session_list_del(&srv->sessions, c->session);
    uid_adjust(srv, c->session->uid, -1, 0);
    server_status(srv);
  } else {
    srv->npending--;
    uid_adjust(srv, c->session->uid, 0, -1);
  }
}
