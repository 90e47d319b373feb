/* server_int.h — the event loop's internals shared by server.c (loop, signals, systemd,
 * shutdown), conn.c (connection I/O) and handshake.c (Hello/Welcome, client slots).
 * Nothing else includes it. */
#ifndef PP_DAEMON_SERVER_INT_H
#define PP_DAEMON_SERVER_INT_H

#define _GNU_SOURCE 1 /* struct ucred */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "frame.h"
#include "handlers.h"
#include "ledger.h"
#include "listen.h"
#include "server.h"
#include "session.h"

typedef struct server server_t;

typedef struct conn {
  uv_pipe_t pipe;
  uv_timer_t timer; /* hello timeout, reject linger, or close linger */
  uv_shutdown_t shutdown_req;
  server_t *srv;
  session_t *session; /* NULL once released, and for a connection being refused */
  frame_reader_t reader;
  uint8_t *inbuf; /* last read; [in_off, in_len) not yet processed */
  size_t in_off, in_len;
  bool paused;          /* reads stopped for back-pressure */
  bool closing;         /* session released, no more requests */
  bool handles_closing; /* uv_close issued */
  bool rejecting;       /* over the pending bound: answer TOO_MANY_CLIENTS, close */
  int open_handles;     /* pipe + timer; the conn is freed when both closed */
  struct conn *prev, *next;
} conn_t;

struct server {
  const server_config_t *cfg;
  ledger_t *ledger;
  handlers_t handlers;     /* requests past Hello, and the reply arena */
  session_list_t sessions; /* past Hello: the clients --max-clients counts */
  uv_loop_t loop;
  listener_t listener;
  uv_signal_t sigterm, sigint;
  bool stopping, notify;
  conn_t *conns;
  uint32_t npending;   /* sessions accepted, Hello not yet seen */
  uint32_t nrejecting; /* connections over the pending bound, being refused */
};

/* conn.c */
void conn_on_connection(uv_stream_t *listener, int status);
/* Send buf[off, len) after everything already queued for c; buf is c's to free, on
 * failure too.  PP_EIO (the socket refused), PP_ENOPRIVMEM. */
int conn_write(conn_t *c, uint8_t *buf, size_t off, size_t len);
/* Answer with an error (status rc, the message) and close once it is flushed. */
void conn_fail(conn_t *c, uint64_t id, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void conn_close_now(conn_t *c);
/* Stop reading, release the session, flush what is queued, then close. */
void conn_close_graceful(conn_t *c);

/* handshake.c */
/* A connection accepted from cred: a session and the hello timer, or (over the bound of
 * connections that have not said Hello) a refusal after its first frame.  An error says
 * close it now. */
int handshake_admit(conn_t *c, const struct ucred *cred);
/* A frame from a connection that has not said Hello (or is being refused). */
void handshake_frame(conn_t *c, const Pinpool__V1__Request *req);
/* The connection's session is going: give back its client slot or pending place. */
void handshake_leave(conn_t *c);

/* server.c */
/* STATUS= for systemd: clients and free bytes. */
void server_status(server_t *srv);

#endif
