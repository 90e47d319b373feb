/*
 * conn.c — one client connection: admitting it, reading and framing its requests,
 * writing its replies, back-pressure, memory bounds, and closing it gracefully or at once.
 *
 * A connection's life:
 *   accept (listen.c) -> SO_PEERCRED -> handshake_screen (handshake.c: admit, refuse after
 *          the first frame, or drop at once — decided before anything is allocated)
 *          -> frames; until Hello they go to the handshake (handshake_frame), which
 *             answers Hello with a Welcome carrying the memfd
 *          -> requests, each answered in order (handlers_serve: a packed reply frame; what
 *             it changed is journaled with the reply before the reply is written,
 *             persist_request_end; on a connection that re-claimed its session, a first
 *             request whose id is the session's last journaled one gets that reply again
 *             instead: the re-claiming client's retry, exactly once)
 *          -> EOF, error, or a deadline -> everything the session held goes back at once
 *             (ledger_holder_release) and its client slot with it (handshake_leave).
 *
 * Protocol violations: a zero or oversized length (refused from the header alone, before
 * buffering), an undecodable frame, a request with no known body, a second Hello, a
 * request before Hello, a truncated frame (EOF mid-frame while the peer may still read), a
 * frame not complete within --frame-timeout of its first byte — each gets a PROTOCOL_ERROR
 * response where it can still be delivered, and the connection closes after that response
 * is flushed (uv_shutdown; the linger deadline bounds the wait).  Nothing of it touches
 * other connections.
 *
 * Reading: one buffer for the whole loop.  libuv reads into whatever on_alloc returns and
 * calls on_read before it reads from any other connection, so every connection reads into
 * the server's one CONN_READ_BUF buffer and an idle connection holds no input memory at
 * all.  Whole frames are handled straight from that buffer (no copy); only a frame that
 * arrived in pieces is assembled in the connection's frame_reader_t (proto/frame.c, which
 * grows with the bytes received), whose buffer is freed as soon as the connection is at a
 * frame boundary again.  What is left unprocessed of a read (back-pressure paused the
 * connection, or its turn ended, below) is copied to a parked buffer of exactly its size
 * (the loop buffer is reused by the next read) and processed before the connection is
 * read again.  So input costs a connection nothing when idle, at most max_frame while a
 * frame is incomplete (bounded in time by --frame-timeout), and at most one read
 * (CONN_READ_BUF) while it waits.
 *
 * Turns.  One read can hold thousands of small pipelined requests, and libuv reads a
 * stream up to 32 times per wake-up while reads fill the buffer: handled in one go, one
 * pipelining client would hold the loop for hundreds of milliseconds while everybody
 * else waits.  So a connection handles at most CONN_TURN_FRAMES frames per turn; with
 * input left, it yields: it stops being read, parks the rest and joins the server's run
 * queue, which an idle handle (conn_turn) works through once per loop iteration, one turn
 * per connection, after the loop has polled everybody else.  A client that sends one
 * request at a time never yields; the cost on the request path is one counter.
 *
 * Writing a reply.  When nothing is queued for the client, the reply goes straight to
 * the socket with uv_try_write and its buffer is freed: no allocation beyond the reply
 * itself.  Why not uv_write alone: it too writes at once when its queue is empty, but
 * every completed write request ends in libuv's uv__drain, whose uv__io_stop(POLLOUT)
 * re-registers the fd with epoll (epoll_ctl MOD) although its events did not change.  That
 * made four system calls per request (epoll_wait, read, write, epoll_ctl) where the
 * benchmark's blocking echo peer makes two; now a request costs epoll_wait, read and write.
 * Only what the socket does not take (the client is not reading) is queued, in a
 * conn_out_t made at that moment and freed when the queue drains: one uv_write in flight
 * at a time (the first partly sent reply's own buffer, or an earlier batch), and every
 * later reply appended to one growable buffer that becomes the next write when the
 * current one completes.  So a stuck reader's hundreds of small replies cost one buffer,
 * not an allocation and a write request each, and order is kept.
 *
 * Memory of queued replies, in real bytes: a connection's charge is malloc_usable_size()
 * of its conn_out_t (the uv_write_t inside it is the bookkeeping) and of both buffers,
 * recomputed whenever they change, and srv->queued is the sum over connections.
 * Back-pressure (after each reply and before each request):
 *   - a connection whose charge exceeds write_high_water (max(4 x max_frame, 1 MiB)) stops
 *     being read (uv_read_stop; the rest of its last read is parked) and resumes when its
 *     charge falls to a quarter of that;
 *   - while srv->queued exceeds --max-queued, every connection with something queued stops
 *     being read, until the total falls to three quarters of the cap (conn_mem_relieved
 *     walks the write queue then) and its own queue allows.  Connections with nothing
 *     queued are still read and served, so a well-behaved client never waits on the
 *     stuck ones; the cap can be passed by at most one reply (<= max_frame) per such
 *     connection, each of which then stops being read in turn.
 * A client paused this way cannot make the daemon allocate more for its requests: they
 * wait in its socket (kernel memory, bounded by the socket buffer).
 *
 * Deadlines (server.c keeps one FIFO queue per kind and one timer):
 *   - hello: a connection must say Hello within --hello-timeout;
 *   - frame: once the first byte of a frame arrives past Hello, the frame must be complete
 *     within --frame-timeout, or PROTOCOL_ERROR and close (a frame that arrives whole in
 *     one read never enters the queue: no cost on the request path).  A paused connection
 *     has no frame deadline: it is the daemon that is not reading;
 *   - write: while replies are queued, some bytes must drain within --write-timeout (a
 *     partial write counts: the unsent total must have gone down since the deadline was
 *     set), or the connection is closed at once and everything its session held is
 *     reclaimed exactly as when a client crashes (ledger_holder_release);
 *   - linger: a closing connection's last replies get CONN_CLOSE_LINGER_MS to flush.
 *
 * A reload (reload.c) hands each connection to the next image of the process:
 * conn_handoff says what it is (a session's, one before Hello, one closing) and copies its
 * unhandled input (the reader's partial frame, or the parked rest) and its unwritten
 * replies (the unwritten tail of the write in flight — libuv's write-queue size, counted
 * back from conn_out_t.wend — then the append buffer); conn_adopt, in the new image, makes
 * a connection of it again: the session attached, the replies written first, the input
 * handled on the first turn, deadlines afresh.
 *
 * Memory per idle connection (past Hello): conn_t (the uv_pipe_t inside it, the deadline
 * links, an empty frame reader), its session_t and its ledger holder — about 750 bytes of
 * heap — plus libuv's 8-byte watcher slot per descriptor.  Nothing else: no read buffer,
 * no write request, no timer handle.  server.c gives freed memory back to the system
 * (malloc_trim) after many connections leave.
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
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define CONN_OUT_MIN 4096u   /* first size of the buffer replies are appended to */
#define CONN_TURN_FRAMES 64u /* frames one connection may have handled per loop turn */

typedef struct conn_out {
  uv_write_t req; /* the one write in flight */
  uint8_t *wbuf;  /* its buffer (a whole reply, or an earlier pbuf), freed when it completes */
  size_t wend;    /* the write covers wbuf up to here (a reload hands on what libuv has not
                   * written of it: the last write-queue-size bytes before wend) */
  uint8_t *pbuf;  /* replies that came meanwhile, in order: the next write */
  size_t plen, pcap;
  size_t charged; /* real bytes of this queue, counted in srv->queued */
  size_t mark;    /* unsent bytes when the write deadline was last set */
} conn_out_t;

static uint64_t conn_sid(const conn_t *c) {
  return c->session ? c->session->id : 0;
}

static int conn_pid(const conn_t *c) {
  return c->session ? (int)c->session->pid : -1;
}

/* ---- queued replies: memory ----------------------------------------------------------- */

static void out_recharge(conn_t *c) {
  conn_out_t *o = c->out;
  size_t real =
      malloc_usable_size(o) + malloc_usable_size(o->wbuf) + malloc_usable_size(o->pbuf);
  c->srv->queued = c->srv->queued - o->charged + real;
  o->charged = real;
}

/* Bytes queued and not yet sent (libuv's count shrinks with partial writes). */
static size_t out_unsent(const conn_t *c) {
  return uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe) +
         (c->out ? c->out->plen : 0);
}

static void out_free(conn_t *c) {
  conn_out_t *o = c->out;
  if (!o) return;
  c->srv->queued -= o->charged;
  free(o->wbuf);
  free(o->pbuf);
  free(o);
  c->out = NULL;
  if (c->dl_kind[DL_SIDE_OUT]) server_dl_remove(c, DL_SIDE_OUT);
}

static size_t conn_charge(const conn_t *c) {
  return c->out ? c->out->charged : 0;
}

/* Should c stop being read?  Its own queue too long, or it has a queue while all queues
 * together are over the cap. */
static bool conn_over(const conn_t *c) {
  size_t mine = conn_charge(c);
  return mine > c->srv->cfg->write_high_water ||
         (mine && c->srv->queued > c->srv->cfg->max_queued);
}

/* May a paused c be read again?  The same with hysteresis: a quarter of its own mark,
 * three quarters of the global cap. */
static bool conn_may_resume(const conn_t *c) {
  size_t mine = conn_charge(c);
  const server_config_t *cfg = c->srv->cfg;
  return mine <= cfg->write_high_water / 4 &&
         (mine == 0 || c->srv->queued <= cfg->max_queued / 4 * 3);
}

static void run_del(conn_t *c);

/* ---- teardown ----------------------------------------------------------------------- */

static void conn_release_session(conn_t *c) {
  session_t *s = c->session;
  if (!s) return;
  handshake_leave(c); /* off the session list first: a snapshot must not see it */
  pools_session_release(c->srv->pools, s); /* the other pools are not journaled */
  if (s->hello_done)
    persist_release(c->srv->persist, c->srv->ledger, s); /* journaled: release + end */
  else if (s->holder)
    ledger_holder_release(c->srv->ledger, s->holder);
  s->holder = NULL;
  log_debug("session %" PRIu64 " (pid %d uid %u) ended after %" PRIu64 " requests", s->id,
            (int)s->pid, (unsigned)s->uid, s->requests);
  session_destroy(s);
  c->session = NULL;
}

static void on_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  server_t *srv = c->srv;
  out_free(c); /* libuv cancelled the write first (on_write), so this is a no-op */
  frame_reader_free(&c->reader);
  free(c->park);
  free(c);
  srv->nconns--;
  server_conn_gone(srv);
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
  run_del(c);
  server_dl_remove(c, DL_SIDE_IN);
  server_dl_remove(c, DL_SIDE_OUT);
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  /* A write in flight is cancelled: on_write(UV_ECANCELED) frees the queue before
   * on_handle_closed runs. */
  uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;
  free(req);
  (void)status;
  conn_close_now(c);
}

/* Half-close after the last queued byte (libuv waits for the writes in flight). */
static void conn_shutdown(conn_t *c) {
  uv_shutdown_t *req = malloc(sizeof *req);
  c->shutdown_wanted = false;
  if (!req) {
    conn_close_now(c);
    return;
  }
  req->data = c;
  if (uv_shutdown(req, (uv_stream_t *)&c->pipe, on_shutdown) != 0) {
    free(req);
    conn_close_now(c);
  }
}

void conn_close_graceful(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  uv_read_stop((uv_stream_t *)&c->pipe);
  run_del(c);
  conn_release_session(c);
  server_dl_remove(c, DL_SIDE_OUT);
  server_dl_push(c, DL_LINGER);
  /* Replies still in the append buffer must reach libuv before the shutdown does:
   * on_write shuts down once it has handed the last of them over. */
  if (c->out && c->out->plen)
    c->shutdown_wanted = true;
  else
    conn_shutdown(c);
}

/* ---- reading (declarations) ------------------------------------------------------------ */

static size_t conn_input(conn_t *c, const uint8_t *data, size_t len);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_frame_deadline(conn_t *c, bool completed);

static void conn_pause(conn_t *c) {
  if (c->paused) return;
  c->paused = true;
  uv_read_stop((uv_stream_t *)&c->pipe);
  if (c->dl_kind[DL_SIDE_IN] == DL_FRAME) server_dl_remove(c, DL_SIDE_IN);
  if (c->srv->queued > c->srv->cfg->max_queued) {
    c->srv->mem_throttled = true;
    log_debug("session %" PRIu64 ": %zu bytes of replies queued in all: pausing its requests",
              conn_sid(c), c->srv->queued);
  } else {
    log_debug("session %" PRIu64 " is not reading its replies (%zu bytes queued): pausing "
              "its requests",
              conn_sid(c), conn_charge(c));
  }
}

static void conn_start_reading(conn_t *c) {
  int rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
  if (rc) {
    log_warning("session %" PRIu64 ": cannot read: %s", conn_sid(c), uv_strerror(rc));
    conn_close_now(c);
  }
}

/* Keep data[0, len) of the loop's read buffer for later (a pause or the end of a turn).
 * Only called when nothing is parked: a connection is read only once its park is empty. */
static void conn_park(conn_t *c, const uint8_t *data, size_t len) {
  if (!(c->park = malloc(len))) {
    log_err("session %" PRIu64 ": out of memory parking %zu bytes of input", conn_sid(c), len);
    conn_close_now(c);
    return;
  }
  memcpy(c->park, data, len);
  c->park_len = len;
  c->park_off = 0;
}

/* Go on with c where it stopped (a pause or the end of its turn): its parked input
 * first, then reading. */
static void conn_continue(conn_t *c) {
  if (c->paused || c->closing || c->yielded) return;
  if (c->park) {
    c->park_off += conn_input(c, c->park + c->park_off, c->park_len - c->park_off);
    if (c->closing) return;
    if (c->park_off < c->park_len) return; /* paused or yielded again */
    free(c->park);
    c->park = NULL;
    c->park_len = c->park_off = 0;
  } else {
    conn_frame_deadline(c, false);
  }
  if (!c->paused && !c->yielded) conn_start_reading(c);
}

/* Resume a paused c if its queue and the global total allow. */
static void conn_maybe_resume(conn_t *c) {
  if (!c->paused || c->closing) return;
  if (!conn_may_resume(c)) {
    /* Held back by the total: conn_mem_relieved must come back for it. */
    if (conn_charge(c) <= c->srv->cfg->write_high_water / 4) c->srv->mem_throttled = true;
    return;
  }
  c->paused = false;
  conn_continue(c);
}

/* ---- turns: fairness between pipelining clients ---------------------------------------- */

static void run_del(conn_t *c) {
  server_t *srv = c->srv;
  if (!c->yielded) return;
  if (c->run_prev)
    c->run_prev->run_next = c->run_next;
  else
    srv->run_head = c->run_next;
  if (c->run_next)
    c->run_next->run_prev = c->run_prev;
  else
    srv->run_tail = c->run_prev;
  c->run_prev = c->run_next = NULL;
  c->yielded = false;
}

/* c has had its turn with input left: stop reading it and queue it for the next turn. */
static void conn_yield(conn_t *c) {
  server_t *srv = c->srv;
  uv_read_stop((uv_stream_t *)&c->pipe);
  if (c->dl_kind[DL_SIDE_IN] == DL_FRAME) server_dl_remove(c, DL_SIDE_IN);
  c->yielded = true;
  c->run_next = NULL;
  c->run_prev = srv->run_tail;
  if (srv->run_tail)
    srv->run_tail->run_next = c;
  else
    srv->run_head = c;
  srv->run_tail = c;
  if (!uv_is_active((uv_handle_t *)&srv->turn)) uv_idle_start(&srv->turn, conn_turn);
}

void conn_turn(uv_idle_t *h) {
  server_t *srv = h->data;
  conn_t *last = srv->run_tail, *c;
  /* One turn each for those queued before this one; who yields again goes to the back. */
  while ((c = srv->run_head)) {
    bool was_last = c == last;
    run_del(c);
    conn_continue(c);
    if (was_last) break;
  }
  if (!srv->run_head) uv_idle_stop(h);
}

void conn_mem_relieved(server_t *srv) {
  conn_t *c, *next;
  if (!srv->mem_throttled || srv->queued > srv->cfg->max_queued / 4 * 3) return;
  srv->mem_throttled = false;
  /* Whatever the cap paused has replies queued, so it is in the write queue (or closing,
   * and then it stays paused).  Resuming c touches no other connection's links. */
  for (c = srv->dl[DL_WRITE].head; c; c = next) {
    next = c->dl[DL_SIDE_OUT].next;
    conn_maybe_resume(c);
  }
}

/* ---- writing ------------------------------------------------------------------------ */

static void on_write(uv_write_t *req, int status) {
  conn_out_t *o = (conn_out_t *)req;
  conn_t *c = req->data;
  server_t *srv = c->srv;
  int rc;

  free(o->wbuf);
  o->wbuf = NULL;
  if (status < 0) {
    out_free(c);
    if (status != UV_ECANCELED) {
      log_debug("write to session %" PRIu64 ": %s", conn_sid(c), uv_strerror(status));
      conn_close_now(c);
    }
    conn_mem_relieved(srv);
    return;
  }
  if (o->plen) {
    uv_buf_t b = uv_buf_init((char *)o->pbuf, (unsigned)o->plen);
    o->wbuf = o->pbuf;
    o->wend = o->plen;
    o->pbuf = NULL;
    o->plen = o->pcap = 0;
    if ((rc = uv_write(&o->req, (uv_stream_t *)&c->pipe, &b, 1, on_write)) != 0) {
      log_debug("write to session %" PRIu64 ": %s", conn_sid(c), uv_strerror(rc));
      out_free(c);
      conn_close_now(c);
      conn_mem_relieved(srv);
      return;
    }
    out_recharge(c);
    if (!c->closing) { /* a whole write went: progress, a new deadline */
      o->mark = out_unsent(c);
      server_dl_push(c, DL_WRITE);
    }
  } else {
    out_free(c);
  }
  if (c->shutdown_wanted) conn_shutdown(c);
  conn_mem_relieved(srv);
  conn_maybe_resume(c);
}

/* Append buf[off, len) to c's queue; buf is freed or adopted.  0 or PP_ENOPRIVMEM. */
static int out_append(conn_t *c, uint8_t *buf, size_t off, size_t len) {
  conn_out_t *o = c->out;
  size_t n = len - off;

  if (!o->pbuf && off == 0) { /* adopt the reply's own buffer: no copy */
    o->pbuf = buf;
    o->plen = o->pcap = len;
  } else {
    if (o->plen + n > o->pcap) {
      size_t cap = o->pcap + o->pcap / 2;
      uint8_t *p;
      if (cap < o->plen + n) cap = o->plen + n;
      if (cap < CONN_OUT_MIN) cap = CONN_OUT_MIN;
      if (!(p = realloc(o->pbuf, cap))) {
        free(buf);
        return PP_ENOPRIVMEM;
      }
      o->pbuf = p;
      o->pcap = cap;
    }
    memcpy(o->pbuf + o->plen, buf + off, n);
    o->plen += n;
    free(buf);
  }
  out_recharge(c);
  return 0;
}

/* uv_try_write first (see "Writing a reply" above); the rest starts a queue. */
int conn_write(conn_t *c, uint8_t *buf, size_t off, size_t len) {
  uv_stream_t *s = (uv_stream_t *)&c->pipe;
  conn_out_t *o;
  uv_buf_t b;
  int rc;

  if (c->out) return out_append(c, buf, off, len);
  if (off < len) {
    b = uv_buf_init((char *)buf + off, (unsigned)(len - off));
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
  if (!(o = calloc(1, sizeof *o))) {
    free(buf);
    return PP_ENOPRIVMEM;
  }
  o->wbuf = buf;
  o->wend = len;
  o->req.data = c;
  b = uv_buf_init((char *)buf + off, (unsigned)(len - off));
  if ((rc = uv_write(&o->req, s, &b, 1, on_write)) != 0) {
    log_debug("write to session %" PRIu64 ": %s", conn_sid(c), uv_strerror(rc));
    free(buf);
    free(o);
    return PP_EIO;
  }
  c->out = o;
  out_recharge(c);
  if (!c->closing) {
    o->mark = out_unsent(c);
    server_dl_push(c, DL_WRITE);
  }
  return 0;
}

/* Write one packed reply, then pause the client if its queue, or all queues, are too long. */
static void conn_send(conn_t *c, uint8_t *buf, size_t len) {
  if (conn_write(c, buf, 0, len)) {
    conn_close_now(c);
    return;
  }
  if (c->out && !c->closing && conn_over(c)) conn_pause(c);
}

/* A reply that carries fd with its first byte (AttachPool's memfd); nothing may be queued
 * before it (the caller checked).  fd is closed after when close_fd. */
static void conn_send_fd(conn_t *c, uint8_t *buf, size_t len, int fd, bool close_fd) {
  uv_os_fd_t sock;
  ssize_t n = -1;

  if (!c->out && !uv_fileno((uv_handle_t *)&c->pipe, &sock)) {
    do
      n = frame_sendmsg_fd(sock, buf, len, fd, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
  }
  if (close_fd) close(fd);
  if (n < 0) {
    log_info("session %" PRIu64 ": sending a descriptor: %s", conn_sid(c),
             c->out ? "replies queued" : strerror(errno));
    free(buf);
    conn_close_now(c);
    return;
  }
  /* The fd went with the first byte; the rest, if any, takes the ordinary path. */
  if (conn_write(c, buf, (size_t)n, len)) {
    conn_close_now(c);
    return;
  }
  if (c->out && !c->closing && conn_over(c)) conn_pause(c);
}

/* An error reply (no body) to request id; the connection stays. */
static void conn_reply_error(conn_t *c, uint64_t id, int rc, const char *msg) {
  Pinpool__V1__Response resp = PINPOOL__V1__RESPONSE__INIT;
  uint8_t *buf = NULL;
  size_t len = 0;

  resp.id = id;
  resp.status = (Pinpool__V1__Status)(-rc);
  resp.message = (char *)msg;
  if (frame_pack(&resp.base, c->srv->cfg->max_frame, &buf, &len)) {
    conn_close_now(c);
    return;
  }
  conn_send(c, buf, len);
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
  /* Refusals were logged where they were decided, rate-limited: a flood of them must not
   * flood the log from here. */
  log_msg(rc == PP_ETOOMANY ? LOG_DEBUG : LOG_INFO,
          "session %" PRIu64 " (pid %d uid %u): %s: %s; closing", conn_sid(c), conn_pid(c),
          (unsigned)c->uid, pp_status_name(rc), msg);
  resp.id = id;
  resp.status = (Pinpool__V1__Status)(-rc);
  resp.message = msg;
  /* No body, and a message far below the smallest max_frame: it packs unless malloc
   * fails, and then there is nothing to say. */
  if (frame_pack(&resp.base, c->srv->cfg->max_frame, &buf, &len)) {
    conn_close_now(c);
    return;
  }
  if (conn_write(c, buf, 0, len)) {
    conn_close_now(c);
    return;
  }
  conn_close_graceful(c);
}

/* ---- deadlines ---------------------------------------------------------------------- */

void conn_expired(conn_t *c, dl_kind_t kind) {
  const server_config_t *cfg = c->srv->cfg;
  size_t unsent;

  switch (kind) {
  case DL_HELLO:
    conn_fail(c, 0, PP_EPROTO, "no hello within %u ms", cfg->hello_timeout_ms);
    break;
  case DL_FRAME:
    conn_fail(c, 0, PP_EPROTO,
              "frame not complete within %u ms of its first byte (%u of %u bytes)",
              cfg->frame_timeout_ms, c->reader.have, c->reader.need);
    break;
  case DL_WRITE:
    if (!c->out) break;
    unsent = out_unsent(c);
    if (unsent < c->out->mark) { /* it did take some: a new deadline */
      c->out->mark = unsent;
      server_dl_push(c, DL_WRITE);
      break;
    }
    log_notice("session %" PRIu64 " (pid %d uid %u) has not read its replies for %u ms "
               "(%zu bytes queued): disconnecting it, its holdings are reclaimed",
               conn_sid(c), conn_pid(c), (unsigned)c->uid, cfg->write_timeout_ms, unsent);
    conn_close_now(c);
    break;
  case DL_REJECT:
  case DL_LINGER:
  default: conn_close_now(c); break;
  }
}

/* After input was processed: a frame begun past Hello has a deadline from its first
 * byte; at a frame boundary the reader gives its buffer back. */
static void conn_frame_deadline(conn_t *c, bool completed) {
  bool in_frame_queue = c->dl_kind[DL_SIDE_IN] == DL_FRAME;
  if (c->closing) return;
  if (c->reader.header_have == 0) {
    if (c->reader.buf) frame_reader_free(&c->reader);
    if (in_frame_queue) server_dl_remove(c, DL_SIDE_IN);
    return;
  }
  if (c->paused || c->yielded) { /* the daemon is not reading: no deadline meanwhile */
    if (in_frame_queue) server_dl_remove(c, DL_SIDE_IN);
    return;
  }
  /* A frame completed in this read means the one in progress began in it too. */
  if (c->session && c->session->hello_done && (completed || !in_frame_queue))
    server_dl_push(c, DL_FRAME);
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
  uint64_t kept_id = 0;
  size_t kept_len = 0;
  const uint8_t *kept =
      c->replay_armed ? session_kept_reply(c->session, &kept_id, &kept_len) : NULL;
  bool replay = kept && req->id == kept_id;
  c->replay_armed = false;
  if (replay) {
    /* Exactly once: a client that re-claimed its session sends the request its connection
     * lost first, with the id it had; when this session's last journaled change was that
     * request, it was carried out and gets the answer it had, not a second execution.
     * Only that first request: ids are the client's choice and mean nothing otherwise. */
    if (!(buf = malloc(kept_len))) {
      conn_close_now(c);
      goto out;
    }
    memcpy(buf, kept, kept_len);
    log_debug("session %" PRIu64 ": request %" PRIu64 " was carried out before the restart: "
              "its reply again",
              c->session->id, req->id);
    conn_send(c, buf, kept_len);
    goto out;
  }
  if (req->body_case == PINPOOL__V1__REQUEST__BODY_ATTACH_POOL && c->out) {
    /* Its reply carries a descriptor, which goes with the reply's first byte: it cannot
     * wait behind replies the client has not read yet. */
    conn_reply_error(c, req->id, PP_EBUSY,
                     "attach_pool while replies wait unread: read them, then ask again");
    goto out;
  }
  if (handlers_serve(&c->srv->handlers, c->session, req, &buf, &blen)) {
    pools_request_end(c->srv->pools, c->session, req->id, NULL, 0);
    conn_close_now(c);
    goto out;
  }
  /* Journaled (what changed, and this reply) before the reply is written. */
  pools_request_end(c->srv->pools, c->session, req->id, buf, blen);
  if (c->srv->handlers.reply_fd >= 0)
    conn_send_fd(c, buf, blen, c->srv->handlers.reply_fd, c->srv->handlers.reply_fd_close);
  else
    conn_send(c, buf, blen);
  server_request_done(c->srv);
out:
  frame_free_request(req);
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void conn_bad_length(conn_t *c) {
  conn_fail(c, 0, PP_EPROTO, "frame length 0 or above max_frame %u", c->srv->cfg->max_frame);
}

/* Handle the frames in data[0, len): whole ones where they lie, pieces through the frame
 * reader; stop when the connection pauses, has had its turn (CONN_TURN_FRAMES), or
 * closes.  Returns the bytes consumed: the caller keeps the rest. */
static size_t conn_input(conn_t *c, const uint8_t *data, size_t len) {
  frame_reader_t *r = &c->reader;
  size_t off = 0;
  unsigned frames = 0;
  bool completed = false;

  while (off < len && !c->closing) {
    const uint8_t *frame = NULL;
    size_t flen = 0;
    int got;

    if (c->paused || (c->out && conn_over(c))) {
      conn_pause(c);
      break;
    }
    if (frames == CONN_TURN_FRAMES) {
      conn_yield(c);
      break;
    }
    if (r->header_have == 0 && len - off >= FRAME_HEADER_SIZE) {
      uint32_t n = le32(data + off);
      if (n == 0 || n > r->max_frame) {
        conn_bad_length(c);
        return len;
      }
      if (len - off - FRAME_HEADER_SIZE >= n) { /* whole: no copy */
        off += FRAME_HEADER_SIZE + n;
        completed = true;
        frames++;
        handle_frame(c, data + off - n, n);
        continue;
      }
    }
    got = frame_reader_feed(r, data + off, len - off, &frame, &flen);
    if (got < 0) {
      if (got == PP_EPROTO) {
        conn_bad_length(c);
      } else {
        log_err("session %" PRIu64 ": out of memory for a %u-byte frame", conn_sid(c), r->need);
        conn_close_now(c);
      }
      return len;
    }
    off += (size_t)got;
    if (frame) {
      completed = true;
      frames++;
      handle_frame(c, frame, flen);
      r->header_have = r->need = r->have = 0; /* the next frame starts; keep the buffer */
    }
  }
  if (!c->closing) conn_frame_deadline(c, completed);
  return off;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  conn_t *c = h->data;
  (void)suggested;
  *buf = uv_buf_init((char *)c->srv->rbuf, CONN_READ_BUF);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;

  if (nread == 0) return; /* EAGAIN */
  if (nread == UV_EOF) {
    if (c->reader.header_have > 0 && !c->rejecting)
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
  size_t used = conn_input(c, (const uint8_t *)buf->base, (size_t)nread);
  if (used < (size_t)nread && !c->closing)
    conn_park(c, (const uint8_t *)buf->base + used, (size_t)nread - used);
}

/* ---- accepting ---------------------------------------------------------------------- */

/* A conn_t on fd (ours: non-blocking), on the server's list and counted.  NULL when it
 * cannot be had (fd then closed, or closing with the handle). */
static conn_t *conn_new(server_t *srv, int fd, uid_t uid) {
  conn_t *c;
  int rc;

  if (!(c = calloc(1, sizeof *c))) {
    log_err("accept: out of memory");
    close(fd);
    return NULL;
  }
  c->srv = srv;
  c->uid = uid;
  frame_reader_init(&c->reader, srv->cfg->max_frame);
  uv_pipe_init(&srv->loop, &c->pipe, 0);
  c->pipe.data = c;
  if ((rc = uv_pipe_open(&c->pipe, fd)) != 0) {
    log_warning("accept: %s", uv_strerror(rc));
    close(fd);
    c->handles_closing = c->closing = true;
    srv->nconns++; /* on_handle_closed counts it out */
    uv_close((uv_handle_t *)&c->pipe, on_handle_closed);
    return NULL;
  }
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
  if (++srv->nconns > srv->nconns_peak) srv->nconns_peak = srv->nconns;
  return c;
}

void conn_accept(void *data, int fd) {
  server_t *srv = data;
  struct ucred cred;
  socklen_t clen = sizeof cred;
  conn_refusal_t why = REFUSE_NONE;
  handshake_verdict_t v;
  bool admin = false;
  conn_t *c;

  if (srv->stopping) {
    close(fd);
    return;
  }
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
    log_warning("SO_PEERCRED: %s", strerror(errno));
    close(fd);
    return;
  }
  v = handshake_screen(srv, &cred, &admin, &why);
  if (v == HANDSHAKE_DROP) {
    close(fd);
    return;
  }
  if (!(c = conn_new(srv, fd, cred.uid))) return;
  c->rejecting = true; /* until the handshake admits it: teardown must not give a slot back */
  srv->nrejecting++;
  if (handshake_admit(c, &cred, admin, v, why)) {
    conn_close_now(c);
    return;
  }
  conn_start_reading(c);
}

/* ---- a reload: handing connections on, taking them over --------------------------------- */

int conn_handoff(const conn_t *c, handoff_conn_t *ret) {
  const frame_reader_t *r = &c->reader;
  handoff_conn_t h = {.fd = -1};
  uv_os_fd_t fd;

  if (c->handles_closing || uv_fileno((const uv_handle_t *)&c->pipe, &fd)) return 0;
  h.fd = fd;
  h.uid = (uint32_t)c->uid;
  if (c->closing) {
    h.kind = HANDOFF_CONN_CLOSING; /* its input no longer matters */
  } else if (c->rejecting || !c->session || !c->session->hello_done) {
    h.kind = HANDOFF_CONN_FRESH;
  } else {
    h.kind = HANDOFF_CONN_SESSION;
    h.session_id = c->session->id;
    h.requests = c->session->requests;
    h.replay_armed = c->replay_armed;
  }
  if (!c->closing) {
    /* Input read and not handled: a frame in pieces (the reader) or a parked rest — never
     * both, since a read is parked only at a frame boundary. */
    size_t rlen = r->header_have + (r->header_have == FRAME_HEADER_SIZE ? r->have : 0);
    size_t plen = c->park ? c->park_len - c->park_off : 0;
    if (rlen + plen > UINT32_MAX) return PP_EINVAL;
    if (rlen + plen) {
      if (!(h.in = malloc(rlen + plen))) return PP_ENOPRIVMEM;
      memcpy(h.in, r->header, r->header_have);
      if (rlen > r->header_have) memcpy(h.in + r->header_have, r->buf, r->have);
      if (plen) memcpy(h.in + rlen, c->park + c->park_off, plen);
      h.in_len = (uint32_t)(rlen + plen);
    }
  }
  if (c->out) {
    /* Replies not written: what libuv has not written of the write in flight (its queue
     * holds that one write only), then the replies appended since. */
    const conn_out_t *o = c->out;
    size_t q = uv_stream_get_write_queue_size((const uv_stream_t *)&c->pipe);
    size_t wl = o->wbuf && q <= o->wend ? q : 0;
    if (wl + o->plen > UINT32_MAX) {
      free(h.in);
      return PP_EINVAL;
    }
    if (wl + o->plen) {
      if (!(h.out = malloc(wl + o->plen))) {
        free(h.in);
        return PP_ENOPRIVMEM;
      }
      if (wl) memcpy(h.out, o->wbuf + o->wend - wl, wl);
      if (o->plen) memcpy(h.out + wl, o->pbuf, o->plen);
      h.out_len = (uint32_t)(wl + o->plen);
    }
  }
  *ret = h;
  return 1;
}

void conn_adopt(server_t *srv, handoff_conn_t *h) {
  struct ucred cred;
  socklen_t clen = sizeof cred;
  conn_refusal_t why = REFUSE_NONE;
  handshake_verdict_t v = HANDSHAKE_ADMIT;
  bool admin = false;
  session_t *s = NULL;
  conn_t *c;
  int fd = h->fd;

  h->fd = -1;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || cred.uid != h->uid) {
    log_warning("reload: connection (fd %d) is not the one handed over: closed", fd);
    close(fd);
    return;
  }
  if (h->kind == HANDOFF_CONN_SESSION) {
    for (s = srv->sessions.head; s && s->id != h->session_id; s = s->next)
      ;
    if (!s || !s->detached || s->uid != cred.uid) {
      /* Its session did not come back (the journal could not be taken back): closed, and
       * its client's re-claim gets the answer a crash would give. */
      log_notice("reload: session %" PRIu64 " (pid %d uid %u) is not in the state taken back: "
                 "its connection is closed",
                 h->session_id, (int)cred.pid, (unsigned)cred.uid);
      close(fd);
      return;
    }
  } else if (h->kind == HANDOFF_CONN_FRESH) {
    v = handshake_screen(srv, &cred, &admin, &why);
    if (v == HANDSHAKE_DROP) {
      close(fd);
      return;
    }
  }
  if (!(c = conn_new(srv, fd, cred.uid))) return;
  if (h->in_len || h->out_len)
    log_debug("reload: %s connection (pid %d uid %u, session %" PRIu64 "): %u bytes of input "
              "and %u of replies taken over",
              h->kind == HANDOFF_CONN_SESSION ? "a session's"
              : h->kind == HANDOFF_CONN_FRESH ? "a new"
                                              : "a closing",
              (int)cred.pid, (unsigned)cred.uid, h->session_id, h->in_len, h->out_len);
  switch (h->kind) {
  case HANDOFF_CONN_FRESH:
    c->rejecting = true;
    srv->nrejecting++;
    if (handshake_admit(c, &cred, admin, v, why)) {
      conn_close_now(c);
      return;
    }
    break;
  case HANDOFF_CONN_SESSION:
    s->detached = false;
    s->requests = h->requests;
    c->session = s;
    c->replay_armed = h->replay_armed;
    break;
  default: c->closing = true; break;
  }
  if (h->out_len) { /* the replies first, in their order */
    uint8_t *buf = h->out;
    h->out = NULL;
    if (conn_write(c, buf, 0, h->out_len)) {
      conn_close_now(c);
      return;
    }
  }
  if (c->closing) { /* as conn_close_graceful: flush, then shut down, bounded by linger */
    server_dl_push(c, DL_LINGER);
    if (c->out && c->out->plen)
      c->shutdown_wanted = true;
    else
      conn_shutdown(c);
    return;
  }
  if (h->in_len) { /* handled on the loop's first turn, before the socket is read again */
    c->park = h->in;
    c->park_len = h->in_len;
    c->park_off = 0;
    h->in = NULL;
    conn_yield(c);
    return;
  }
  conn_start_reading(c);
}
