/*
 * rpc.h — the client side of one connection to pinpoold: connect, Hello/Welcome, then one
 * request and its response at a time.  libpinpool and pinpoolctl both speak through it, so
 * a new request type costs each of them one small function that fills the body message.
 * See rpc.c for the essay.
 */
#ifndef PP_RPC_H
#define PP_RPC_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

/* Hello.client_name carries at most this many bytes; longer names are cut. */
#define RPC_CLIENT_NAME_MAX 64u
/* Before the Welcome a client keeps its frames within 4 KiB, the smallest max_frame a
 * daemon may run with (docs/PROTOCOL.md, section 2). */
#define RPC_HELLO_FRAME_MAX 4096u
/* The smallest Welcome.max_frame a client accepts: below it no request fits. */
#define RPC_MIN_FRAME 256u
#define RPC_WHY_LEN 256u

typedef struct rpc {
  int fd;            /* the connected socket; -1 when none */
  uint32_t send_max; /* largest frame we send: RPC_HELLO_FRAME_MAX, then Welcome.max_frame */
  uint32_t recv_max; /* largest frame we accept: FRAME_MAX_DEFAULT, then Welcome.max_frame */
  int timeout_ms;    /* how long to wait for each reply; -1: as long as it takes */
  uint64_t next_id;  /* Request.id of the next request; ids count from 1 */
  int broken;        /* 0, or the transport error that ended the stream (sticky) */
  int lost;          /* the break was the connection failing under us — EOF, a reset, an I/O
                        error, no reply within timeout_ms (broken is PP_EDISCONNECTED or
                        PP_EIO) — not a reply that made no sense: the daemon went away, and
                        a new connection may find the session again (libpinpool's re-claim) */
  frame_rx_t rx;     /* buffered receiving: one recvmsg per reply */
  char why[RPC_WHY_LEN]; /* after a failure: the daemon's message, or what went wrong */
} rpc_t;

/* Not connected yet: fd -1, ids from 1, the pre-Welcome frame limits, replies awaited for
 * timeout_ms (-1: no limit). */
void rpc_init(rpc_t *r, int timeout_ms);
/* Close the socket and free the receive buffer; rpc_init() state again, timeout kept. */
void rpc_close(rpc_t *r);
/* The same, but ids keep counting: for a new connection that carries on the same session
 * (rpc_connect, then rpc_hello_session with its token).  The bytes of a reply half
 * received on the old connection go with it, the break is forgotten, and the frame limits
 * are the pre-Welcome ones again. */
void rpc_reset(rpc_t *r);

/* Connect a Unix stream socket to path.  PP_EINVAL (path empty or too long for
 * sun_path), PP_EOS (no socket), PP_EACCES (connect said EACCES or EPERM: the socket or a
 * directory on the way to it does not let this user in), PP_ECONNECT (anything else:
 * ENOENT, ECONNREFUSED, ...).  On failure errno is connect's and r->why says it. */
int rpc_connect(rpc_t *r, const char *path);

/* Hello as client_name (cut at RPC_CLIENT_NAME_MAX bytes on a UTF-8 boundary), then the
 * Welcome: protocol version 1 (else PP_EVERSION) and a max_frame in [RPC_MIN_FRAME,
 * FRAME_MAX_LIMIT] (0 means FRAME_MAX_DEFAULT; else PP_EPROTO), which becomes send_max and
 * recv_max.  *ret_resp is the response with body welcome (free it with
 * frame_free_response).  ret_fd NULL: the memfd the Welcome carries is closed; else it is
 * required (PP_EPROTO without it) and lands in *ret_fd. */
int rpc_hello(rpc_t *r, const char *client_name, Pinpool__V1__Response **ret_resp, int *ret_fd);
/* rpc_hello presenting token[0, token_len) as Hello.session_token: a previous Welcome's
 * token asks for that session back after a daemon restart (NULL / 0: a new session, as
 * rpc_hello).  What the Welcome says about it (reclaimed, region_id) is the caller's to
 * check. */
int rpc_hello_session(rpc_t *r, const char *client_name, const uint8_t *token, size_t token_len,
                      Pinpool__V1__Response **ret_resp, int *ret_fd);
/* name cut as Hello.client_name carries it: at most RPC_CLIENT_NAME_MAX bytes, on a UTF-8
 * character boundary; buf holds RPC_CLIENT_NAME_MAX + 1 bytes. */
void rpc_name_cut(char *buf, const char *name);

/* One exchange: a Request with body `body` (a message of the type body_case names) and a
 * fresh id, then its Response.  Returns 0 with *ret_resp (free with frame_free_response)
 * when the status is OK and the body is `want` (PINPOOL__V1__RESPONSE__BODY__NOT_SET:
 * any body).  Otherwise a negative code with r->why set:
 *   - the daemon's status as its PP_E* code (a status outside the table: PP_EPROTO), why =
 *     the daemon's message (or the code's words when it sent none);
 *   - PP_EPROTO for a reply without the wanted body;
 *   - PP_EINVAL (a body that is not of body_case's type), PP_ERANGE (the request does not
 *     fit send_max), PP_ENOPRIVMEM (no memory to pack it): nothing was sent;
 *   - transport failures, which also mark the stream broken so that every later call
 *     returns the same code at once: PP_EIO (also: no reply within timeout_ms),
 *     PP_EDISCONNECTED, PP_EPROTO (a bad frame, or a reply carrying another request's
 *     id), PP_ENOPRIVMEM (no memory to receive).  The first two, when sending or
 *     receiving failed, also set r->lost.
 * ret_fd: as rpc_hello's, but optional: NULL closes a passed fd, else *ret_fd gets it or
 * -1.  Outputs are untouched on failure. */
int rpc_call(rpc_t *r, Pinpool__V1__Request__BodyCase body_case, ProtobufCMessage *body,
             Pinpool__V1__Response__BodyCase want, Pinpool__V1__Response **ret_resp,
             int *ret_fd);
/* rpc_call with the caller's Request.id (non-zero; PP_EINVAL else) instead of a fresh one.
 * A request that the connection lost under it is sent again on the next connection with
 * the id it first had, so that a daemon that already carried it out (and recorded its
 * reply) answers it from its records instead of doing it twice.  Take ids from next_id
 * (id = r->next_id++): rpc_call is rpc_call_id with a fresh id. */
int rpc_call_id(rpc_t *r, uint64_t id, Pinpool__V1__Request__BodyCase body_case,
                ProtobufCMessage *body, Pinpool__V1__Response__BodyCase want,
                Pinpool__V1__Response **ret_resp, int *ret_fd);

/* Response.status -> PP_E* code (0 for OK); a value outside the table is PP_EPROTO. */
int rpc_status_to_err(int status);

#endif /* PP_RPC_H */
