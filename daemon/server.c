/*
 * server.c — pinpoold's event loop (libuv): listening, connections, framing, handshake,
 * back-pressure, systemd notification, shutdown.
 *
 * Listening.  When systemd passes a socket (sd_listen_fds: socket activation through
 * pinpoold.socket, or systemd-socket-activate), we use it as it is and never unlink it:
 * systemd owns that path.  Otherwise we bind our own: the parent directory is created
 * when missing (/run/pinpool as root), a stale socket left by a crashed daemon is removed
 * (a connect() that is refused proves nobody listens; a live daemon makes us refuse to
 * start), and the socket is chmod'ed to --socket-mode.  Ours is unlinked at shutdown.
 *
 * A connection's life:
 *   accept -> SO_PEERCRED -> session (id, token, uid/gid/pid, admin decided once)
 *          -> first frame must be Hello (else PROTOCOL_ERROR; wrong version:
 *             UNSUPPORTED_VERSION) -> Welcome, sent with sendmsg() + SCM_RIGHTS carrying
 *             the region memfd.  libuv cannot pass an arbitrary fd, so the Welcome goes
 *             straight to the socket (uv_fileno) while nothing else is queued — true by
 *             construction, since Hello is the first frame and nothing was written before.
 *          -> requests, each answered in order (handlers_serve: a packed reply frame)
 *          -> EOF or error -> everything the session held goes back at once
 *             (ledger_holder_release).
 *   A client slot (--max-clients) is taken by a successful Hello, not by accept(): a
 *   health probe that connects and leaves, or a client still on its way, holds none.  A
 *   Hello over the limit is answered TOO_MANY_CLIENTS with its own id, then the
 *   connection closes.  Connections that have not said Hello are bounded on their own
 *   (max(64, max_clients)) and by the hello timeout; beyond that bound a connection is
 *   still read until its first frame (so the client's Hello does not meet EPIPE) and
 *   answered TOO_MANY_CLIENTS.
 *
 * Protocol violations: a zero or oversized length (refused by the frame reader from the
 * header alone, before buffering), an undecodable frame, a request with no known body,
 * a second Hello, a request before Hello, a truncated frame (EOF mid-frame while the
 * peer may still read) — each gets a PROTOCOL_ERROR response where it can still be
 * delivered, and the connection closes after that response is flushed (uv_shutdown;
 * a close timer bounds the wait).  Nothing of it touches other connections.
 *
 * Writing a reply.  When nothing is queued for the client, the reply goes straight to
 * the socket with uv_try_write; only what the socket does not take (it is full: the
 * client is not reading) is queued with uv_write, and while anything is queued
 * uv_try_write refuses, so later replies queue behind it and order is kept.  Why not
 * uv_write alone: it too writes at once when its queue is empty, but every completed
 * write request ends in libuv's uv__drain, whose uv__io_stop(POLLOUT) re-registers the
 * fd with epoll (epoll_ctl MOD) although its events did not change.  That made four
 * system calls per request (epoll_wait, read, write, epoll_ctl) where the benchmark's
 * blocking echo peer makes two; now a request costs epoll_wait, read and write
 * (strace -c -f: 4.0 -> 3.0 per request), and allocates no write request.
 *
 * Back-pressure (a slow or stuck client).  After each reply, when the bytes libuv still
 * has queued for that client exceed write_high_water, we stop reading from it
 * (uv_read_stop) and park the unprocessed rest of its last read; when its queue drains
 * below a quarter of the mark (seen in on_write: a client is paused only while something
 * is queued, so a completion is always still to come) we process the parked bytes and
 * read again.  So one client's memory is bounded by high water + one reply (<= max_frame)
 * + one read buffer + one frame in assembly, however many requests it pipelines, and the
 * loop never blocks on it: others are served meanwhile.
 *
 * Memory per request: unpack through frame.c's budgeted allocator (budget proportional
 * to the frame, which is at most max_frame); the reply is built and packed by the
 * handlers (handlers.c), in their rewound arena, and they also make it fit max_frame —
 * this file never looks inside a reply, it only writes the bytes.
 *
 * systemd.  READY=1 once the region is mapped (the ledger exists before we are called) and
 * the socket listens; STATUS= lines when clients come and go; STOPPING=1 at shutdown.
 *
 * Shutdown (SIGTERM/SIGINT): STOPPING=1, close the listener (unlink our socket), then
 * each connection stops reading, its queued replies are flushed (bounded by a timer)
 * and its session released; uv_run returns when the last handle has closed.  SIGPIPE is
 * ignored: a vanished peer is an EPIPE on one connection, not the daemon's death.
 *
 * Locks: none; everything runs on the loop thread.
 */
#define _GNU_SOURCE 1 /* struct ucred */
#include "server.h"

#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include "buddy.h"
#include "frame.h"
#include "handlers.h"
#include "log.h"

#define SERVER_INBUF                                                                           \
  (16u * 1024u) /* one read; frames up to max_frame are assembled by the reader */
#define SERVER_CLOSE_LINGER_MS 2000u
#define SERVER_REJECT_LINGER_MS 2000u
#define SERVER_MAX_REJECTING 64u
#define SERVER_MIN_PENDING 64u /* pre-Hello connections allowed: max(this, max_clients) */

typedef struct server server_t;

typedef struct conn {
  uv_pipe_t pipe;
  uv_timer_t timer; /* hello timeout, reject linger, or close linger */
  uv_shutdown_t shutdown_req;
  server_t *srv;
  session_t *session; /* NULL once released */
  frame_reader_t reader;
  uint8_t *inbuf; /* last read; [in_off, in_len) not yet processed */
  size_t in_off, in_len;
  bool paused;          /* reads stopped for back-pressure */
  bool closing;         /* session released, no more requests */
  bool handles_closing; /* uv_close issued */
  bool rejecting;       /* over max_clients: answer TOO_MANY_CLIENTS, close */
  int open_handles;     /* pipe + timer; the conn is freed when both closed */
  struct conn *prev, *next;
} conn_t;

typedef struct write_req {
  uv_write_t req;
  uv_buf_t buf; /* the part of mem the socket has not taken yet */
  uint8_t *mem; /* the whole frame, freed when the write completes */
  conn_t *conn;
} write_req_t;

struct server {
  const server_config_t *cfg;
  ledger_t *ledger;
  handlers_t handlers;     /* requests past Hello, and the reply arena */
  session_list_t sessions; /* past Hello (Stats.clients) */
  uv_loop_t loop;
  uv_pipe_t listener;
  uv_signal_t sigterm, sigint;
  bool listener_open, own_socket, stopping, notify;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  conn_t *conns;
  uint32_t nclients;   /* sessions past Hello: the ones --max-clients counts */
  uint32_t npending;   /* sessions accepted, Hello not yet seen */
  uint32_t nrejecting; /* connections over the pending bound, being refused */
};

/* ---- systemd ------------------------------------------------------------------------- */

static void server_status(server_t *srv) {
  if (!srv->notify) return;
  sd_notifyf(0, "STATUS=%u client%s, %" PRIu64 " of %" PRIu64 " bytes free", srv->nclients,
             srv->nclients == 1 ? "" : "s", ledger_free_bytes(srv->ledger),
             region_size(ledger_region(srv->ledger)));
}

/* ---- connection teardown ------------------------------------------------------------- */

static void conn_release_session(conn_t *c) {
  bool hello_done;
  if (!c->session) return;
  hello_done = c->session->hello_done;
  if (c->session->holder) {
    ledger_holder_release(c->srv->ledger, c->session->holder);
    c->session->holder = NULL;
  }
  session_list_del(&c->srv->sessions, c->session);
  log_debug("session %" PRIu64 " (pid %d uid %u) ended after %" PRIu64 " requests",
            c->session->id, (int)c->session->pid, (unsigned)c->session->uid,
            c->session->requests);
  session_destroy(c->session);
  c->session = NULL;
  if (c->rejecting) return;
  if (hello_done) {
    c->srv->nclients--;
    server_status(c->srv);
  } else {
    c->srv->npending--;
  }
}

static void on_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->open_handles > 0) return;
  frame_reader_free(&c->reader);
  free(c->inbuf);
  free(c);
}

static void conn_close_now(conn_t *c) {
  server_t *srv = c->srv;
  if (!c->closing) {
    c->closing = true;
    conn_release_session(c);
  }
  if (c->handles_closing) return;
  c->handles_closing = true;
  if (c->rejecting) srv->nrejecting--;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
}

static void on_linger_timeout(uv_timer_t *t) {
  conn_close_now(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_close_now(req->data);
}

/* Stop reading, release the session, flush what is queued, then close. */
static void conn_close_graceful(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  uv_read_stop((uv_stream_t *)&c->pipe);
  conn_release_session(c);
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
    conn_close_now(c);
    return;
  }
  uv_timer_start(&c->timer, on_linger_timeout, SERVER_CLOSE_LINGER_MS, 0);
}

/* ---- writing ------------------------------------------------------------------------- */

static void conn_process(conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_resume_reading(conn_t *c) {
  int rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  if (rc) {
    log_warning("session %" PRIu64 ": cannot read: %s", c->session ? c->session->id : 0,
                uv_strerror(rc));
    conn_close_now(c);
  }
}

static void on_write(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  conn_t *c = w->conn;
  free(w->mem);
  free(w);
  if (status < 0) {
    if (status != UV_ECANCELED) {
      log_debug("write to session %" PRIu64 ": %s", c->session ? c->session->id : 0,
                uv_strerror(status));
      conn_close_now(c);
    }
    return;
  }
  if (c->paused && !c->closing &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) <=
          c->srv->cfg->write_high_water / 4) {
    c->paused = false;
    conn_process(c);
    if (!c->paused && !c->closing) conn_resume_reading(c);
  }
}

/* Send buf[off, len) after everything already queued for c; buf is ours to free, on
 * failure too.  uv_try_write first (see "Writing a reply" above): it answers UV_EAGAIN
 * while anything is queued, so only the rest the socket did not take is queued. */
static int conn_write(conn_t *c, uint8_t *buf, size_t off, size_t len) {
  uv_stream_t *s = (uv_stream_t *)&c->pipe;
  write_req_t *w;
  int rc;

  if (off < len) {
    uv_buf_t b = uv_buf_init((char *)buf + off, (unsigned)(len - off));
    rc = uv_try_write(s, &b, 1);
    if (rc < 0 && rc != UV_EAGAIN) {
      log_debug("write to session %" PRIu64 ": %s", c->session ? c->session->id : 0,
                uv_strerror(rc));
      free(buf);
      return rc;
    }
    if (rc > 0) off += (size_t)rc;
  }
  if (off == len) {
    free(buf);
    return 0;
  }
  w = malloc(sizeof *w);
  if (!w) {
    free(buf);
    return UV_ENOMEM;
  }
  w->mem = buf;
  w->buf = uv_buf_init((char *)buf + off, (unsigned)(len - off));
  w->conn = c;
  rc = uv_write(&w->req, s, &w->buf, 1, on_write);
  if (rc) {
    free(buf);
    free(w);
  }
  return rc;
}

/* Write one packed reply, then pause the client if its queue passed the high-water mark. */
static void conn_send(conn_t *c, uint8_t *buf, size_t len) {
  server_t *srv = c->srv;
  if (conn_write(c, buf, 0, len)) {
    conn_close_now(c);
    return;
  }
  if (!c->paused && !c->closing &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > srv->cfg->write_high_water) {
    c->paused = true;
    uv_read_stop((uv_stream_t *)&c->pipe);
    log_debug("session %" PRIu64 " is not reading its replies: pausing its requests",
              c->session ? c->session->id : 0);
  }
}

/* Answer with an error and close once it is flushed. */
static void conn_fail(conn_t *c, uint64_t id, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void conn_fail(conn_t *c, uint64_t id, int rc, const char *fmt, ...) {
  Pinpool__V1__Response resp = PINPOOL__V1__RESPONSE__INIT;
  uint8_t *buf = NULL;
  size_t len = 0;
  char msg[256];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  log_info("session %" PRIu64 " (pid %d): %s: %s; closing", c->session ? c->session->id : 0,
           c->session ? (int)c->session->pid : -1, pp_status_name(rc), msg);
  resp.id = id;
  resp.status = (Pinpool__V1__Status)(-rc);
  resp.message = msg;
  /* No body, and a message far below the smallest max_frame: it packs unless malloc
   * fails, and then there is nothing to say. */
  if (frame_pack(&resp.base, c->srv->cfg->max_frame, &buf, &len)) {
    conn_close_now(c);
    return;
  }
  conn_send(c, buf, len);
  conn_close_graceful(c);
}

/* ---- the handshake ------------------------------------------------------------------- */

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
  return conn_write(c, buf, (size_t)n, len) ? PP_EIO : 0;
}

static void handle_hello(conn_t *c, const Pinpool__V1__Request *req) {
  session_t *s = c->session;
  const region_t *r = ledger_region(c->srv->ledger);
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
  if (c->srv->nclients >= c->srv->cfg->max_clients) {
    log_notice("pid %d uid %u refused: %u clients connected (max %u)", (int)s->pid,
               (unsigned)s->uid, c->srv->nclients, c->srv->cfg->max_clients);
    conn_fail(c, req->id, PP_ETOOMANY, "too many clients (max %u)", c->srv->cfg->max_clients);
    return;
  }
  if (ledger_holder_create(c->srv->ledger, &ident, &s->holder)) {
    conn_fail(c, req->id, PP_ENOPRIVMEM, "daemon out of private memory");
    return;
  }
  session_set_name(s, h->client_name);
  if (h->session_token.len)
    log_debug("session %" PRIu64 ": re-claiming a previous session is not supported yet; "
              "starting a new one",
              s->id);
  s->hello_done = true;
  c->srv->npending--;
  c->srv->nclients++;
  session_list_add(&c->srv->sessions, s);
  server_status(c->srv);
  uv_timer_stop(&c->timer);

  w.protocol_version = PROTOCOL_VERSION;
  w.session_id = s->id;
  w.session_token.data = s->token;
  w.session_token.len = SESSION_TOKEN_LEN;
  w.region_size = region_size(r);
  w.page_size = region_page_size(r);
  w.hugepages = region_hugepages(r);
  w.physical_addresses = region_phys_known(r);
  w.max_frame = c->srv->cfg->max_frame;
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

/* ---- reading ------------------------------------------------------------------------- */

static void handle_frame(conn_t *c, const uint8_t *frame, size_t len) {
  Pinpool__V1__Request *req = frame_unpack_request(frame, len, FRAME_REQUEST_BUDGET(len));
  uint8_t *buf = NULL;
  size_t blen = 0;

  if (!req) {
    conn_fail(c, 0, PP_EPROTO, "undecodable request (%zu bytes)", len);
    return;
  }
  if (c->rejecting) {
    conn_fail(c, req->id, PP_ETOOMANY, "too many connections waiting for their hello");
    goto out;
  }
  c->session->requests++;
  if (req->body_case == PINPOOL__V1__REQUEST__BODY__NOT_SET) {
    conn_fail(c, req->id, PP_EPROTO, "request with no known body");
    goto out;
  }
  if (!c->session->hello_done) {
    if (req->body_case != PINPOOL__V1__REQUEST__BODY_HELLO)
      conn_fail(c, req->id, PP_EPROTO, "the first request must be hello");
    else
      handle_hello(c, req);
    goto out;
  }
  if (req->body_case == PINPOOL__V1__REQUEST__BODY_HELLO) {
    conn_fail(c, req->id, PP_EPROTO, "hello sent twice");
    goto out;
  }
  if (handlers_serve(&c->srv->handlers, c->session, req, &buf, &blen)) {
    conn_close_now(c);
    goto out;
  }
  conn_send(c, buf, blen);
out:
  frame_free_request(req);
}

/* Feed parked input to the frame reader until it runs out, the client is paused, or the
 * connection is closing. */
static void conn_process(conn_t *c) {
  while (c->in_off < c->in_len && !c->paused && !c->closing) {
    const uint8_t *frame = NULL;
    size_t flen = 0;
    int n = frame_reader_feed(&c->reader, c->inbuf + c->in_off, c->in_len - c->in_off, &frame,
                              &flen);
    if (n < 0) {
      conn_fail(c, 0, PP_EPROTO, "frame length 0 or above max_frame %u",
                c->srv->cfg->max_frame);
      return;
    }
    c->in_off += (size_t)n;
    if (frame) handle_frame(c, frame, flen);
  }
}

static bool reader_mid_frame(const frame_reader_t *r) {
  return r->header_have > 0 && !(r->need != 0 && r->have == r->need);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  *buf = uv_buf_init((char *)c->inbuf, SERVER_INBUF);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;

  if (nread == UV_EOF) {
    if (reader_mid_frame(&c->reader) && !c->rejecting)
      conn_fail(c, 0, PP_EPROTO, "truncated frame: connection closed after %u of %u bytes",
                c->reader.have, c->reader.need);
    else
      conn_close_now(c);
    return;
  }
  if (nread < 0) {
    conn_close_now(c);
    return;
  }
  c->in_off = 0;
  c->in_len = (size_t)nread;
  conn_process(c);
}

/* ---- accepting ----------------------------------------------------------------------- */

static void on_hello_timeout(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->rejecting) {
    conn_close_now(c);
    return;
  }
  conn_fail(c, 0, PP_EPROTO, "no hello within %u ms", c->srv->cfg->hello_timeout_ms);
}

static void on_connection(uv_stream_t *listener, int status) {
  server_t *srv = listener->data;
  struct ucred cred;
  socklen_t clen = sizeof cred;
  uv_os_fd_t fd;
  conn_t *c;
  int rc;

  if (status < 0) {
    log_warning("accept: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof *c);
  if (!c || !(c->inbuf = malloc(SERVER_INBUF))) {
    log_err("accept: out of memory");
    free(c);
    return;
  }
  c->srv = srv;
  frame_reader_init(&c->reader, srv->cfg->max_frame);
  uv_pipe_init(&srv->loop, &c->pipe, 0);
  uv_timer_init(&srv->loop, &c->timer);
  c->pipe.data = c->timer.data = c;
  c->open_handles = 2;
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
  c->rejecting = true; /* until it holds a slot: teardown must not give one back */
  srv->nrejecting++;

  if ((rc = uv_accept(listener, (uv_stream_t *)&c->pipe)) != 0) {
    log_warning("accept: %s", uv_strerror(rc));
    conn_close_now(c);
    return;
  }
  if (srv->stopping) {
    conn_close_now(c);
    return;
  }
  if (uv_fileno((uv_handle_t *)&c->pipe, &fd) ||
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
    log_warning("SO_PEERCRED: %s", strerror(errno));
    conn_close_now(c);
    return;
  }
  /* Client slots are taken at Hello (so that a probe that connects and leaves, or a
   * connection that has not spoken yet, holds none); connections that have not said
   * Hello are bounded separately, and by the hello timeout. */
  if (srv->npending >= (srv->cfg->max_clients > SERVER_MIN_PENDING ? srv->cfg->max_clients
                                                                   : SERVER_MIN_PENDING)) {
    if (srv->nrejecting > SERVER_MAX_REJECTING) {
      conn_close_now(c);
      return;
    }
    log_notice("pid %d uid %u refused: %u connections have not said hello yet", (int)cred.pid,
               (unsigned)cred.uid, srv->npending);
    uv_timer_start(&c->timer, on_hello_timeout, SERVER_REJECT_LINGER_MS, 0);
  } else {
    if (session_create(cred.pid, cred.uid, cred.gid, &c->session)) {
      log_err("cannot create a session for pid %d", (int)cred.pid);
      conn_close_now(c);
      return;
    }
    c->session->admin = session_is_admin(cred.uid, cred.gid, srv->cfg->admin_gid);
    c->rejecting = false;
    srv->nrejecting--;
    srv->npending++;
    uv_timer_start(&c->timer, on_hello_timeout, srv->cfg->hello_timeout_ms, 0);
  }
  conn_resume_reading(c);
}

/* ---- listening ----------------------------------------------------------------------- */

static int prepare_path(const char *path) {
  struct stat st;
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char *slash;

  snprintf(dir, sizeof dir, "%s", path);
  slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    if (mkdir(dir, 0755) == 0)
      log_info("created %s", dir);
    else if (errno != EEXIST) {
      log_err("cannot create %s: %s", dir, strerror(errno));
      return PP_EOS;
    }
  }
  if (lstat(path, &st) != 0) return 0;
  if (!S_ISSOCK(st.st_mode)) {
    log_err("%s exists and is not a socket", path);
    return PP_EEXIST;
  }
  /* A socket file: live daemon, or stale leftover?  Ask it. */
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    close(fd);
    log_err("another daemon is listening on %s", path);
    return PP_EEXIST;
  }
  if (fd >= 0) close(fd);
  log_info("removing stale socket %s", path);
  unlink(path);
  return 0;
}

static int server_listen(server_t *srv) {
  const server_config_t *cfg = srv->cfg;
  int n = sd_listen_fds(1), rc;

  uv_pipe_init(&srv->loop, &srv->listener, 0);
  srv->listener.data = srv;
  srv->listener_open = true;
  if (n < 0) {
    log_err("sd_listen_fds: %s", strerror(-n));
    return PP_EOS;
  }
  if (n > 1) {
    log_err("systemd passed %d sockets; pinpoold wants one", n);
    return PP_EINVAL;
  }
  if (n == 1) {
    int fd = SD_LISTEN_FDS_START;
    size_t len = sizeof srv->path;
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
      log_err("the socket systemd passed is not a listening Unix stream socket");
      return PP_EINVAL;
    }
    if ((rc = uv_pipe_open(&srv->listener, fd))) {
      log_err("uv_pipe_open: %s", uv_strerror(rc));
      return PP_EOS;
    }
    if (uv_pipe_getsockname(&srv->listener, srv->path, &len) != 0)
      snprintf(srv->path, sizeof srv->path, "?");
    else
      srv->path[len < sizeof srv->path ? len : sizeof srv->path - 1] = '\0';
    srv->own_socket = false;
    log_info("using the socket passed by systemd: %s", srv->path);
  } else {
    if (!cfg->socket_path || strlen(cfg->socket_path) >= sizeof srv->path) {
      log_err("socket path missing or too long");
      return PP_EINVAL;
    }
    snprintf(srv->path, sizeof srv->path, "%s", cfg->socket_path);
    if ((rc = prepare_path(srv->path))) return rc;
    if ((rc = uv_pipe_bind(&srv->listener, srv->path))) {
      log_err("bind %s: %s", srv->path, uv_strerror(rc));
      return PP_EOS;
    }
    srv->own_socket = true;
    if (chmod(srv->path, cfg->socket_mode) != 0)
      log_warning("chmod %s %o: %s", srv->path, cfg->socket_mode, strerror(errno));
  }
  if ((rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection))) {
    log_err("listen on %s: %s", srv->path, uv_strerror(rc));
    return PP_EOS;
  }
  return 0;
}

/* ---- shutdown ------------------------------------------------------------------------ */

static void server_stop(server_t *srv, const char *why) {
  conn_t *c, *next;

  if (srv->stopping) return;
  srv->stopping = true;
  log_notice("%s: shutting down", why);
  if (srv->notify) sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
  if (srv->listener_open) {
    uv_close((uv_handle_t *)&srv->listener, NULL);
    srv->listener_open = false;
  }
  if (srv->own_socket && unlink(srv->path) != 0 && errno != ENOENT)
    log_warning("unlink %s: %s", srv->path, strerror(errno));
  srv->own_socket = false;
  /* Keep catching signals (a second SIGTERM must not kill us mid-flush), but let the
   * loop end without them. */
  uv_unref((uv_handle_t *)&srv->sigterm);
  uv_unref((uv_handle_t *)&srv->sigint);
  for (c = srv->conns; c; c = next) {
    next = c->next;
    /* Replies already queued are in-flight answers: flush them, bounded by the timer. */
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) && !c->closing)
      conn_close_graceful(c);
    else
      conn_close_now(c);
  }
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *srv = h->data;
  if (srv->stopping) {
    log_notice("%s again: already shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    return;
  }
  server_stop(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void close_any(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int server_run(const server_config_t *cfg, ledger_t *ledger) {
  server_t *srv = calloc(1, sizeof *srv);
  const region_t *r = ledger_region(ledger);
  handlers_config_t hc = {.max_frame = cfg->max_frame,
                          .max_clients = cfg->max_clients,
                          .started_ms = cfg->started_ms};
  int rc;

  if (!srv) return PP_ENOPRIVMEM;
  srv->cfg = cfg;
  srv->ledger = ledger;
  srv->notify = getenv("NOTIFY_SOCKET") != NULL;
  handlers_init(&srv->handlers, ledger, &srv->sessions, &hc);
  signal(SIGPIPE, SIG_IGN);
  if ((rc = uv_loop_init(&srv->loop))) {
    handlers_fini(&srv->handlers);
    free(srv);
    return PP_EOS;
  }
  uv_signal_init(&srv->loop, &srv->sigterm);
  uv_signal_init(&srv->loop, &srv->sigint);
  srv->sigterm.data = srv->sigint.data = srv;
  uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
  uv_signal_start(&srv->sigint, on_signal, SIGINT);

  rc = server_listen(srv);
  if (rc) {
    uv_walk(&srv->loop, close_any, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
    handlers_fini(&srv->handlers);
    free(srv);
    return rc;
  }
  log_notice("serving %" PRIu64 " MiB (%s pages of %" PRIu64 " KiB%s) on %s",
             region_size(r) >> 20, region_hugepages(r) ? "huge" : "normal",
             region_page_size(r) >> 10,
             region_phys_known(r) ? ", physical addresses known" : "", srv->path);
  log_notice("connect with: PINPOOL_SOCKET=%s <client>", srv->path);
  if (srv->notify)
    sd_notifyf(0, "READY=1\nSTATUS=serving %" PRIu64 " MiB on %s\nMAINPID=%lu",
               region_size(r) >> 20, srv->path, (unsigned long)getpid());

  uv_run(&srv->loop, UV_RUN_DEFAULT);
  if (!srv->stopping) server_stop(srv, "loop ended");
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  uv_walk(&srv->loop, close_any, NULL);
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&srv->loop);
  if (rc) log_warning("event loop closed with handles left: %s", uv_strerror(rc));
  log_notice("stopped");
  handlers_fini(&srv->handlers);
  free(srv);
  return 0;
}
