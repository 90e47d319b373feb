/*
 * conn.c — one client connection: accepting it, reading and framing its requests,
 * writing its replies, back-pressure, and closing it gracefully or at once.
 *
 * A connection's life:
 *   accept -> SO_PEERCRED -> handshake_admit (handshake.c: a session, or a refusal)
 *          -> frames; until Hello they go to the handshake (handshake_frame), which
 *             answers Hello with a Welcome carrying the memfd
 *          -> requests, each answered in order (handlers_serve: a packed reply frame)
 *          -> EOF or error -> everything the session held goes back at once
 *             (ledger_holder_release) and its client slot with it (handshake_leave).
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
 * handlers (handlers.c), which also make it fit max_frame — this file never looks inside
 * a reply, it only writes the bytes.
 *
 * Locks: none; everything runs on the loop thread.
 */
#include "server_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define CONN_INBUF                                                                             \
  (16u * 1024u) /* one read; frames up to max_frame are assembled by the reader */
#define CONN_CLOSE_LINGER_MS 2000u

typedef struct write_req {
  uv_write_t req;
  uv_buf_t buf; /* the part of mem the socket has not taken yet */
  uint8_t *mem; /* the whole frame, freed when the write completes */
  conn_t *conn;
} write_req_t;

static uint64_t conn_sid(const conn_t *c) {
  return c->session ? c->session->id : 0;
}

/* ---- teardown ----------------------------------------------------------------------- */

static void conn_release_session(conn_t *c) {
  session_t *s = c->session;
  if (!s) return;
  if (s->holder) {
    ledger_holder_release(c->srv->ledger, s->holder);
    s->holder = NULL;
  }
  handshake_leave(c);
  log_debug("session %" PRIu64 " (pid %d uid %u) ended after %" PRIu64 " requests", s->id,
            (int)s->pid, (unsigned)s->uid, s->requests);
  session_destroy(s);
  c->session = NULL;
}

static void on_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->open_handles > 0) return;
  frame_reader_free(&c->reader);
  free(c->inbuf);
  free(c);
}

void conn_close_now(conn_t *c) {
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

void conn_close_graceful(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  uv_read_stop((uv_stream_t *)&c->pipe);
  conn_release_session(c);
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
    conn_close_now(c);
    return;
  }
  uv_timer_start(&c->timer, on_linger_timeout, CONN_CLOSE_LINGER_MS, 0);
}

/* ---- writing ------------------------------------------------------------------------ */

static void conn_process(conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_resume_reading(conn_t *c) {
  int rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  if (rc) {
    log_warning("session %" PRIu64 ": cannot read: %s", conn_sid(c), uv_strerror(rc));
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
      log_debug("write to session %" PRIu64 ": %s", conn_sid(c), uv_strerror(status));
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

/* uv_try_write first (see "Writing a reply" above): it answers UV_EAGAIN while anything
 * is queued, so only the rest the socket did not take is queued. */
int conn_write(conn_t *c, uint8_t *buf, size_t off, size_t len) {
  uv_stream_t *s = (uv_stream_t *)&c->pipe;
  write_req_t *w;
  int rc;

  if (off < len) {
    uv_buf_t b = uv_buf_init((char *)buf + off, (unsigned)(len - off));
    rc = uv_try_write(s, &b, 1);
    if (rc < 0 && rc != UV_EAGAIN) {
      log_debug("write to session %" PRIu64 ": %s", conn_sid(c), uv_strerror(rc));
      free(buf);
      return PP_EIO;
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
    return PP_ENOPRIVMEM;
  }
  w->mem = buf;
  w->buf = uv_buf_init((char *)buf + off, (unsigned)(len - off));
  w->conn = c;
  rc = uv_write(&w->req, s, &w->buf, 1, on_write);
  if (rc) {
    log_debug("write to session %" PRIu64 ": %s", conn_sid(c), uv_strerror(rc));
    free(buf);
    free(w);
    return PP_EIO;
  }
  return 0;
}

/* Write one packed reply, then pause the client if its queue passed the high-water mark. */
static void conn_send(conn_t *c, uint8_t *buf, size_t len) {
  if (conn_write(c, buf, 0, len)) {
    conn_close_now(c);
    return;
  }
  if (!c->paused && !c->closing &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > c->srv->cfg->write_high_water) {
    c->paused = true;
    uv_read_stop((uv_stream_t *)&c->pipe);
    log_debug("session %" PRIu64 " is not reading its replies: pausing its requests",
              conn_sid(c));
  }
}

void conn_fail(conn_t *c, uint64_t id, int rc, const char *fmt, ...) {
  Pinpool__V1__Response resp = PINPOOL__V1__RESPONSE__INIT;
  uint8_t *buf = NULL;
  size_t len = 0;
  char msg[256];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  log_info("session %" PRIu64 " (pid %d): %s: %s; closing", conn_sid(c),
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

/* ---- reading ------------------------------------------------------------------------ */

static void handle_frame(conn_t *c, const uint8_t *frame, size_t len) {
  Pinpool__V1__Request *req = frame_unpack_request(frame, len, FRAME_REQUEST_BUDGET(len));
  uint8_t *buf = NULL;
  size_t blen = 0;

  if (!req) {
    conn_fail(c, 0, PP_EPROTO, "undecodable request (%zu bytes)", len);
    return;
  }
  if (c->rejecting || !c->session->hello_done) {
    handshake_frame(c, req);
    goto out;
  }
  c->session->requests++;
  if (req->body_case == PINPOOL__V1__REQUEST__BODY__NOT_SET) {
    conn_fail(c, req->id, PP_EPROTO, "request with no known body");
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
  *buf = uv_buf_init((char *)c->inbuf, CONN_INBUF);
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

/* ---- accepting ---------------------------------------------------------------------- */

void conn_on_connection(uv_stream_t *listener, int status) {
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
  if (!c || !(c->inbuf = malloc(CONN_INBUF))) {
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
  c->rejecting = true; /* until the handshake admits it: teardown must not give a slot back */
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
  if (handshake_admit(c, &cred)) {
    conn_close_now(c);
    return;
  }
  conn_resume_reading(c);
}
