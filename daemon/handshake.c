/*
 * handshake.c — from an accepted connection to a session past Hello: client slots, the
 * bound on connections that have not spoken, the hello timeout, and the Welcome that
 * carries the region's memfd.
 *
 * Admission (handshake_admit, at accept): the peer's SO_PEERCRED becomes a session (id,
 * token, uid/gid/pid, admin decided once) and a hello timer starts.  Connections that
 * have not said Hello are bounded on their own (max(64, max_clients)) and by the hello
 * timeout; beyond that bound a connection gets no session but is still read until its
 * first frame (so the client's Hello does not meet EPIPE) and answered TOO_MANY_CLIENTS
 * (a linger timer closes it if that frame never comes); beyond 64 such refusals at once,
 * a new connection is closed at once.
 *
 * Hello (handshake_frame): the first frame must be Hello (else PROTOCOL_ERROR; a wrong
 * version: UNSUPPORTED_VERSION).  A client slot (--max-clients) is taken by a successful
 * Hello, not by accept(): a health probe that connects and leaves, or a client still on
 * its way, holds none.  A Hello over the limit is answered TOO_MANY_CLIENTS with its own
 * id, then the connection closes.  An accepted Hello gives the session its holder in the
 * ledger and puts it on the session list (Stats.clients), then the Welcome goes out.
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
#include <stdlib.h>
#include <string.h>

#include "buddy.h"
#include "log.h"

#define HANDSHAKE_MIN_PENDING 64u /* pre-Hello connections allowed: max(this, max_clients) */
#define HANDSHAKE_MAX_REJECTING 64u
#define HANDSHAKE_REJECT_LINGER_MS 2000u

static void on_hello_timeout(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->rejecting) {
    conn_close_now(c);
    return;
  }
  conn_fail(c, 0, PP_EPROTO, "no hello within %u ms", c->srv->cfg->hello_timeout_ms);
}

int handshake_admit(conn_t *c, const struct ucred *cred) {
  server_t *srv = c->srv;
  uint32_t bound = srv->cfg->max_clients > HANDSHAKE_MIN_PENDING ? srv->cfg->max_clients
                                                                 : HANDSHAKE_MIN_PENDING;
  int rc;

  if (srv->npending >= bound) {
    if (srv->nrejecting > HANDSHAKE_MAX_REJECTING) return PP_ETOOMANY;
    log_notice("pid %d uid %u refused: %u connections have not said hello yet", (int)cred->pid,
               (unsigned)cred->uid, srv->npending);
    uv_timer_start(&c->timer, on_hello_timeout, HANDSHAKE_REJECT_LINGER_MS, 0);
    return 0;
  }
  if ((rc = session_create(cred->pid, cred->uid, cred->gid, &c->session))) {
    log_err("cannot create a session for pid %d: %s", (int)cred->pid, pp_strerror(rc));
    return rc;
  }
  c->session->admin = session_is_admin(cred->uid, cred->gid, srv->cfg->admin_gid);
  c->rejecting = false;
  srv->nrejecting--;
  srv->npending++;
  uv_timer_start(&c->timer, on_hello_timeout, srv->cfg->hello_timeout_ms, 0);
  return 0;
}

static int send_welcome(conn_t *c, Pinpool__V1__Response *resp) {
  const region_t *r = ledger_region(c->srv->ledger);
  uint8_t *buf = NULL;
  size_t len = 0;
  uv_os_fd_t fd;
  ssize_t n;
  int rc;

  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) != 0) return PP_EINTERNAL;
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

static void hello(conn_t *c, const Pinpool__V1__Request *req) {
  server_t *srv = c->srv;
  session_t *s = c->session;
  const region_t *r = ledger_region(srv->ledger);
  Pinpool__V1__Response resp = PINPOOL__V1__RESPONSE__INIT;
  Pinpool__V1__Welcome w = PINPOOL__V1__WELCOME__INIT;
  const Pinpool__V1__Hello *h = req->hello;
  ledger_ident_t ident = {.session_id = s->id, .pid = s->pid, .uid = s->uid};

  if (h->protocol_version != PROTOCOL_VERSION) {
    conn_fail(c, req->id, PP_EVERSION,
              "protocol version %u not supported; this daemon speaks %u", h->protocol_version,
              PROTOCOL_VERSION);
    return;
  }
  if (srv->sessions.n >= srv->cfg->max_clients) {
    log_notice("pid %d uid %u refused: %u clients connected (max %u)", (int)s->pid,
               (unsigned)s->uid, srv->sessions.n, srv->cfg->max_clients);
    conn_fail(c, req->id, PP_ETOOMANY, "too many clients (max %u)", srv->cfg->max_clients);
    return;
  }
  if (ledger_holder_create(srv->ledger, &ident, &s->holder)) {
    conn_fail(c, req->id, PP_ENOPRIVMEM, "daemon out of private memory");
    return;
  }
  session_set_name(s, h->client_name);
  if (h->session_token.len)
    log_debug("session %" PRIu64 ": re-claiming a previous session is not supported yet; "
              "starting a new one",
              s->id);
  s->hello_done = true;
  srv->npending--;
  session_list_add(&srv->sessions, s);
  server_status(srv);
  uv_timer_stop(&c->timer);

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
  resp.id = req->id;
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_WELCOME;
  resp.welcome = &w;
  if (send_welcome(c, &resp)) {
    conn_close_now(c);
    return;
  }
  log_info("session %" PRIu64 " '%s' pid %d uid %u gid %u%s connected", s->id, s->name,
           (int)s->pid, (unsigned)s->uid, (unsigned)s->gid, s->admin ? " (admin)" : "");
}

void handshake_frame(conn_t *c, const Pinpool__V1__Request *req) {
  if (c->rejecting) {
    conn_fail(c, req->id, PP_ETOOMANY, "too many connections waiting for their hello");
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

void handshake_leave(conn_t *c) {
  server_t *srv = c->srv;
  if (c->rejecting || !c->session) return;
  if (c->session->hello_done) {
    session_list_del(&srv->sessions, c->session);
    server_status(srv);
  } else {
    srv->npending--;
  }
}
