/* server_int.h — the event loop's internals shared by server.c (loop, signals, systemd,
 * shutdown, deadlines, memory), conn.c (connection I/O) and handshake.c (Hello/Welcome,
 * client slots and per-uid limits).  Nothing else includes it. */
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
#include "handoff.h"
#include "holes.h"
#include "ledger.h"
#include "listen.h"
#include "persist.h"
#include "pools.h"
#include "server.h"
#include "session.h"
#include "u64map.h"

/* The loop's one read buffer (conn.c reads every connection into it). */
#define CONN_READ_BUF (64u * 1024u)

typedef struct server server_t;
typedef struct conn conn_t;

/* Deadlines.  Each kind has one timeout for every connection it holds, so a FIFO queue of
 * a kind is sorted by deadline: appending is O(1), the earliest is the head, and the
 * server's one timer waits for the earliest head of all queues.  A connection sits in at
 * most one input-side queue (hello, refusal, frame or linger) and in the write queue. */
typedef enum dl_kind {
  DL_NONE = 0,
  DL_HELLO,  /* accepted, Hello not seen: --hello-timeout */
  DL_REJECT, /* being refused: its first frame gets the refusal, or it is closed */
  DL_FRAME,  /* past Hello with a frame begun and not complete: --frame-timeout */
  DL_LINGER, /* closing: flushing its last replies */
  DL_WRITE,  /* replies queued: some must drain within --write-timeout */
  DL_NKINDS
} dl_kind_t;

enum { DL_SIDE_IN = 0, DL_SIDE_OUT = 1 };

typedef struct dl_link {
  conn_t *prev, *next;
  uint64_t at; /* uv_now() ms when it expires */
} dl_link_t;

typedef struct dl_queue {
  conn_t *head, *tail;
} dl_queue_t;

/* Why a connection is being refused (conn_t.refusal). */
typedef enum conn_refusal {
  REFUSE_NONE = 0,
  REFUSE_PENDING,     /* too many connections without Hello, all uids together */
  REFUSE_PENDING_UID, /* too many connections without Hello from this uid */
} conn_refusal_t;

struct conn_out; /* conn.c: replies queued for a connection */

struct conn {
  uv_pipe_t pipe;
  server_t *srv;
  session_t *session;   /* NULL once released, and for a connection being refused */
  struct conn_out *out; /* replies the socket did not take yet; NULL when none */
  uint8_t *park;        /* input read but not handled yet (a pause, or the end of a turn);
                         * NULL when none, and then only is the connection read */
  size_t park_off, park_len;
  frame_reader_t reader; /* a frame that arrived in pieces; holds memory only meanwhile */
  dl_link_t dl[2];       /* [DL_SIDE_IN], [DL_SIDE_OUT] */
  uint8_t dl_kind[2];    /* dl_kind_t of the queue each link is in; DL_NONE */
  uint8_t refusal;       /* conn_refusal_t, while rejecting */
  bool paused;           /* reads stopped for back-pressure */
  bool closing;          /* session released, no more requests */
  bool handles_closing;  /* uv_close issued */
  bool rejecting;        /* refused at accept: answer TOO_MANY_CLIENTS, close */
  bool shutdown_wanted;  /* closing: shut down once every queued reply is handed to libuv */
  bool yielded;          /* had its turn with input left: on the run queue, not read */
  bool replay_armed;     /* re-claimed its session: its first request may be the one the
                          * restart interrupted (conn.c: exactly once) */
  uid_t uid;             /* SO_PEERCRED, for refusals and the per-uid counts */
  struct conn *run_prev, *run_next; /* the run queue, while yielded */
  struct conn *prev, *next;
};

struct server {
  const server_config_t *cfg;
  ledger_t *ledger;        /* the default pool's (pools->v[0].ledger): restart survival's */
  pools_t *pools;          /* every pool (pools.c) */
  handlers_t handlers;     /* requests past Hello, and the reply arena */
  session_list_t sessions; /* past Hello: the clients --max-clients counts */
  uv_loop_t loop;
  listener_t listener;
  uv_signal_t sigterm, sigint, sighup;
  bool stopping, notify;
  conn_t *conns;
  uint32_t nconns;        /* connections open, whatever their state */
  uint32_t npending;      /* sessions accepted, Hello not yet seen */
  uint32_t nrejecting;    /* connections over a pending bound, being refused */
  uint32_t admin_reserve; /* the client slots (and pending places) only admins may take */
  u64map_t uids;          /* uid -> sessions | pending << 32 (see handshake.c) */
  uint64_t refusal_log_ms;
  uint32_t refusals_unlogged;

  uint8_t *rbuf;               /* the loop's one read buffer (conn.c) */
  uv_idle_t turn;              /* runs the run queue: connections that yielded (conn.c) */
  conn_t *run_head, *run_tail; /* FIFO */

  size_t queued;      /* real bytes of every connection's queued replies */
  bool mem_throttled; /* a connection was paused because queued passed max_queued */

  dl_queue_t dl[DL_NKINDS];
  uv_timer_t dl_timer;
  uint64_t dl_timer_at; /* when dl_timer fires; 0 when stopped */

  uv_timer_t trim_timer; /* malloc_trim after many connections left (server.c) */
  uint32_t nconns_peak;  /* most connections since the last trim */
  uint64_t trim_last_ms;

  uv_timer_t holes_timer;   /* the periodic scan for punched pages (holes.c) */
  holes_t holes[POOLS_MAX]; /* one per pool */
  persist_t *persist;       /* the journal and the fd store (persist.c) */
  uv_timer_t grace_timer;   /* the earliest deadline of a detached session */
  uv_timer_t watchdog;      /* WATCHDOG=1 at half of WATCHDOG_USEC */
  uint64_t requests;        /* served past Hello (the test hang counts them) */
  int exit_rc;              /* what server_run returns after a clean loop end */
  uint32_t grace_ms;        /* Welcome.grace_ms, and how long restored sessions wait */
  uint32_t reloads;         /* re-executions of this process so far (reload.c) */
};

/* conn.c */
/* A connection the listener accepted (fd is ours: non-blocking, close-on-exec). */
void conn_accept(void *srv, int fd);
/* Send buf[off, len) after everything already queued for c; buf is c's to free, on
 * failure too.  PP_EIO (the socket refused), PP_ENOPRIVMEM. */
int conn_write(conn_t *c, uint8_t *buf, size_t off, size_t len);
/* Answer with an error (status rc, the message) and close once it is flushed. */
void conn_fail(conn_t *c, uint64_t id, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void conn_close_now(conn_t *c);
/* Stop reading, release the session, flush what is queued, then close. */
void conn_close_graceful(conn_t *c);
/* What c hands the next process image on a reload (reload.c): 1 with *ret filled (its
 * buffers malloc'd), 0 when c is not handed on (its descriptor is closed already),
 * PP_ENOPRIVMEM / PP_EINVAL.  Reads c only. */
int conn_handoff(const conn_t *c, handoff_conn_t *ret);
/* A connection the previous image handed over: taken over as it was (its session, which
 * must be detached on the list, attached; its replies written first; its input handled on
 * the loop's first turn), screened again when it had no session.  Takes h's fd and
 * buffers; closes the fd when the connection cannot be taken over. */
void conn_adopt(server_t *srv, handoff_conn_t *h);
/* A deadline of c passed (called by the server's timer, c already off that queue). */
void conn_expired(conn_t *c, dl_kind_t kind);
/* Queued memory went down: resume what the global cap paused, if it is low enough now. */
void conn_mem_relieved(server_t *srv);
/* The idle callback of srv->turn: one more turn for each connection on the run queue. */
void conn_turn(uv_idle_t *h);

/* handshake.c */
typedef enum handshake_verdict {
  HANDSHAKE_ADMIT = 0, /* a session, with the hello timeout */
  HANDSHAKE_REFUSE,    /* read until its first frame, answer TOO_MANY_CLIENTS (*ret_why) */
  HANDSHAKE_DROP,      /* close at once (too many refusals in progress already) */
} handshake_verdict_t;
/* What to do with a connection from cred, before anything is allocated for it. */
handshake_verdict_t handshake_screen(server_t *srv, const struct ucred *cred, bool *ret_admin,
                                     conn_refusal_t *ret_why);
/* Admit c (a session, the hello deadline) or start refusing it (why).  An error says
 * close it now. */
int handshake_admit(conn_t *c, const struct ucred *cred, bool admin, handshake_verdict_t v,
                    conn_refusal_t why);
/* A frame from a connection that has not said Hello (or is being refused). */
void handshake_frame(conn_t *c, const Pinpool__V1__Request *req);
/* The connection's session is going: give back its client slot or pending place. */
void handshake_leave(conn_t *c);
/* A session the journal brought back: on the session list, detached, holding its uid's
 * client slot until it is re-claimed or expires.  PP_ENOPRIVMEM. */
int handshake_restore(server_t *srv, session_t *s);
/* A detached session leaves (expired): off the list, its slot given back. */
void handshake_forget(server_t *srv, session_t *s);

/* server.c */
/* STATUS= for systemd: clients and free bytes. */
void server_status(server_t *srv);
/* Put c at the tail of kind's queue (removing it from where its link was), expiring at
 * now + that kind's timeout. */
void server_dl_push(conn_t *c, dl_kind_t kind);
/* Take c's link on side off its queue (nothing when it is in none). */
void server_dl_remove(conn_t *c, int side);
/* A connection was freed: maybe give memory back to the system. */
void server_conn_gone(server_t *srv);
/* A request past Hello was answered: compaction when due; the test hang. */
void server_request_done(server_t *srv);
/* A detached session was re-claimed or a deadline moved: the grace timer follows. */
void server_grace_arm(server_t *srv);

/* reload.c */
/* SIGHUP: hand everything to a new image of the installed binary (execve).  Returns only
 * when that failed (logged at err): then nothing changed and the loop serves on. */
void reload_exec(server_t *srv);
/* The new image, once the restored sessions are on the list (detached): the handed-over
 * connections taken over, the detached sessions' deadlines put back. */
void reload_adopt(server_t *srv, handoff_t *ho);

#endif
