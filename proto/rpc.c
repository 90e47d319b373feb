/*
 * rpc.c — one request, one response: the client half of the protocol (docs/PROTOCOL.md),
 * shared by libpinpool and pinpoolctl.
 *
 * What.  rpc_connect() opens the daemon's Unix socket and sorts a refusal into "not
 * allowed" (PP_EACCES: EACCES or EPERM from connect, a permission problem the user can fix
 * by joining the socket's group) and "nobody there" (PP_ECONNECT: ENOENT, ECONNREFUSED,
 * ...).  rpc_hello() says Hello and checks the Welcome.  rpc_call() does everything else a
 * request needs: it wraps the caller's body message in a Request (the oneof member is found
 * from the schema's own descriptor, so a new request type needs no code here), numbers it,
 * sends it as one frame, receives the Response with frame_rx_response (one blocking
 * recvmsg per reply, bounded by SO_RCVTIMEO = timeout_ms), checks the echoed id, maps the
 * status through the one error table and checks the body.  What went wrong is left in
 * r->why as a sentence — the daemon's own message when it refused — for callers that show
 * it (pinpoolctl) and ignored by those that only return codes (libpinpool).
 *
 * The stream.  Requests and replies alternate strictly, so the reply to request n is the
 * next frame.  A reply carrying another id means the stream is out of step; a transport
 * error may have left half a frame behind.  Either way nothing later on the connection can
 * be trusted, so the first such error is recorded in r->broken and every later call
 * returns it at once without I/O.  When the break is the connection itself failing (EOF,
 * a reset, an I/O error or timeout while sending or receiving) r->lost says so: the
 * daemon went away rather than misbehaved, and a caller that can (libpinpool) connects
 * again, says Hello with its session token (rpc_hello_session) on a connection reset with
 * rpc_reset — ids keep counting across connections — and sends the lost request again
 * with the id it first had (rpc_call_id), which lets a daemon that had already carried it
 * out answer from its records instead of doing it twice.  A request that never reached the
 * socket (too large for a frame, no memory to pack it) fails alone, and so does a refusal: the
 * daemon answered, the stream is intact.  One exception to the id rule: a refusal that carries
 * another id (the daemon answers a frame it could not read with id 0, then closes) is reported
 * with its own status and message, and breaks the stream too.
 *
 * Memory.  Nothing here allocates besides frame_send's packed frame and the unpacked
 * response the caller frees; the receive buffer grows once and is reused.  A failed malloc
 * is PP_ENOPRIVMEM, here as in frame.c.
 *
 * Locks: none.  An rpc_t is one connection used by one thread at a time; libpinpool holds
 * its client mutex around each call.
 */
#include "rpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int rpc_fail(rpc_t *r, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int rpc_fail(rpc_t *r, int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->why, sizeof r->why, fmt, ap);
  va_end(ap);
  return err;
}

/* A transport failure: the stream is over, and this is what every later call says. */
static int rpc_break(rpc_t *r, int err) {
  if (err == PP_EDISCONNECTED)
    rpc_fail(r, err, "pinpoold closed the connection");
  else if (err == PP_EIO && r->timeout_ms >= 0)
    rpc_fail(r, err, "I/O error on the connection, or no answer within %d ms", r->timeout_ms);
  else if (err == PP_EPROTO && r->why[0] == '\0')
    rpc_fail(r, err, "the reply is not a valid pinpool frame");
  else if (r->why[0] == '\0')
    rpc_fail(r, err, "%s", pp_strerror(err));
  r->broken = err;
  return err;
}

int rpc_status_to_err(int status) {
  if (status == 0) return 0;
  if (status > 0 && status < PP__ERR_MAX) return -status;
  return PP_EPROTO;
}

void rpc_init(rpc_t *r, int timeout_ms) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
  r->send_max = RPC_HELLO_FRAME_MAX;
  r->recv_max = FRAME_MAX_DEFAULT;
  r->timeout_ms = timeout_ms;
  r->next_id = 1;
  frame_rx_init(&r->rx);
}

void rpc_close(rpc_t *r) {
  int timeout_ms = r->timeout_ms;
  if (r->fd >= 0) close(r->fd);
  frame_rx_free(&r->rx);
  rpc_init(r, timeout_ms);
}

void rpc_reset(rpc_t *r) {
  uint64_t next_id = r->next_id;
  rpc_close(r);
  r->next_id = next_id;
}

int rpc_connect(rpc_t *r, const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t len = path ? strlen(path) : 0;
  int fd, rc, e;

  if (len == 0 || len >= sizeof sa.sun_path)
    return rpc_fail(r, PP_EINVAL, "socket path is empty or longer than %zu bytes",
                    sizeof sa.sun_path - 1);
  memcpy(sa.sun_path, path, len + 1);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return rpc_fail(r, PP_EOS, "socket: %s", strerror(errno));
  do {
    rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    e = errno;
    close(fd);
    rpc_fail(r, 0, "connect: %s", strerror(e));
    errno = e;
    /* unix(7): EACCES is a socket the user may not write, or a directory on the way he may
     * not search; EPERM comes from an LSM.  Both are about who asks, not whether a daemon
     * is there. */
    return e == EACCES || e == EPERM ? PP_EACCES : PP_ECONNECT;
  }
  r->fd = fd;
  r->broken = 0;
  r->lost = 0;
  r->why[0] = '\0';
  return 0;
}

/* Cut on a UTF-8 character boundary so that the string stays valid for protobuf. */
void rpc_name_cut(char *buf, const char *name) {
  size_t n = strlen(name);
  if (n > RPC_CLIENT_NAME_MAX) {
    n = RPC_CLIENT_NAME_MAX;
    while (n > 0 && ((unsigned char)name[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(buf, name, n);
  buf[n] = '\0';
}

int rpc_hello(rpc_t *r, const char *client_name, Pinpool__V1__Response **ret_resp,
              int *ret_fd) {
  return rpc_hello_session(r, client_name, NULL, 0, ret_resp, ret_fd);
}

int rpc_hello_session(rpc_t *r, const char *client_name, const uint8_t *token, size_t token_len,
                      Pinpool__V1__Response **ret_resp, int *ret_fd) {
  char name[RPC_CLIENT_NAME_MAX + 1];
  Pinpool__V1__Hello hello = PINPOOL__V1__HELLO__INIT;
  Pinpool__V1__Response *resp = NULL;
  int memfd = -1, rc;

  rpc_name_cut(name, client_name ? client_name : "");
  hello.protocol_version = PROTOCOL_VERSION;
  hello.client_name = name;
  if (token && token_len) {
    hello.session_token.data = (uint8_t *)token;
    hello.session_token.len = token_len;
  }
  rc = rpc_call(r, PINPOOL__V1__REQUEST__BODY_HELLO, &hello.base,
                PINPOOL__V1__RESPONSE__BODY_WELCOME, &resp, ret_fd ? &memfd : NULL);
  if (rc < 0) return rc;
  const Pinpool__V1__Welcome *w = resp->welcome;
  uint32_t max_frame = w->max_frame ? w->max_frame : FRAME_MAX_DEFAULT;
  if (w->protocol_version != PROTOCOL_VERSION) {
    rc = rpc_fail(r, PP_EVERSION, "pinpoold speaks protocol version %u, this client %u",
                  (unsigned)w->protocol_version, PROTOCOL_VERSION);
    goto fail;
  }
  if (max_frame < RPC_MIN_FRAME || max_frame > FRAME_MAX_LIMIT) {
    rc = rpc_fail(r, PP_EPROTO, "Welcome announces max_frame %u", (unsigned)w->max_frame);
    goto fail;
  }
  if (ret_fd && memfd < 0) {
    rc = rpc_fail(r, PP_EPROTO, "the Welcome carried no region memfd");
    goto fail;
  }
  r->send_max = r->recv_max = max_frame;
  *ret_resp = resp;
  if (ret_fd) *ret_fd = memfd;
  return 0;
fail:
  if (memfd >= 0) close(memfd);
  frame_free_response(resp);
  return rc;
}

/* Puts body into req's oneof as member body_case.  The schema's descriptor knows where the
 * member lives and what type it has; a body of another type is the caller's bug. */
static int rpc_set_body(Pinpool__V1__Request *req, Pinpool__V1__Request__BodyCase body_case,
                        ProtobufCMessage *body) {
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
      &pinpool__v1__request__descriptor, (unsigned)body_case);
  if (!body || !f || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
      f->type != PROTOBUF_C_TYPE_MESSAGE || f->descriptor != body->descriptor)
    return PP_EINVAL;
  req->body_case = body_case;
  memcpy((char *)req + f->offset, &body, sizeof body);
  return 0;
}

/* The connection failed under a request: the daemon went away (see r->lost). */
static int rpc_lose(rpc_t *r, int err) {
  if (err == PP_EDISCONNECTED || err == PP_EIO) r->lost = 1;
  return rpc_break(r, err);
}

/* rpc_call and rpc_call_id: id 0 takes a fresh one once the body is known to be right. */
static int rpc_exchange(rpc_t *r, uint64_t id, Pinpool__V1__Request__BodyCase body_case,
                        ProtobufCMessage *body, Pinpool__V1__Response__BodyCase want,
                        Pinpool__V1__Response **ret_resp, int *ret_fd) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Response *resp = NULL;
  int fd = -1, rc;

  if (r->broken) return r->broken;
  if (r->fd < 0) return rpc_fail(r, PP_EDISCONNECTED, "not connected to pinpoold");
  if (rpc_set_body(&req, body_case, body) < 0)
    return rpc_fail(r, PP_EINVAL, "request body %d of the wrong type", (int)body_case);
  req.id = id ? id : r->next_id++;
  r->why[0] = '\0';

  rc = frame_send(r->fd, &req.base, r->send_max, -1);
  if (rc == PP_ENOPRIVMEM) return rpc_fail(r, rc, "no memory to pack the request");
  if (rc == PP_ERANGE)
    return rpc_fail(r, rc, "the request does not fit a frame of %u bytes", r->send_max);
  if (rc < 0) return rpc_lose(r, rc);

  rc = frame_rx_response(r->fd, &r->rx, r->recv_max, r->timeout_ms, &resp, ret_fd ? &fd : NULL);
  if (rc == PP_ENOPRIVMEM) {
    rpc_fail(r, PP_ENOPRIVMEM, "no memory to receive the reply");
    return rpc_break(r, PP_ENOPRIVMEM);
  }
  if (rc < 0) return rpc_lose(r, rc);

  rc = rpc_status_to_err((int)resp->status);
  if (rc < 0)
    rpc_fail(r, rc, "%s", resp->message && resp->message[0] ? resp->message : pp_strerror(rc));
  if (resp->id != req.id) {
    if (rc == 0)
      rc = rpc_fail(r, PP_EPROTO, "the reply to request %llu arrived for request %llu",
                    (unsigned long long)resp->id, (unsigned long long)req.id);
    rpc_break(r, rc);
    goto out;
  }
  if (rc < 0) goto out;
  if (want != PINPOOL__V1__RESPONSE__BODY__NOT_SET && resp->body_case != want) {
    rc = rpc_fail(r, PP_EPROTO, "unexpected reply (body %d, wanted %d)", (int)resp->body_case,
                  (int)want);
    goto out;
  }
  *ret_resp = resp;
  resp = NULL;
  if (ret_fd) *ret_fd = fd;
  fd = -1;
out:
  if (fd >= 0) close(fd);
  if (resp) frame_free_response(resp);
  return rc;
}

int rpc_call(rpc_t *r, Pinpool__V1__Request__BodyCase body_case, ProtobufCMessage *body,
             Pinpool__V1__Response__BodyCase want, Pinpool__V1__Response **ret_resp,
             int *ret_fd) {
  return rpc_exchange(r, 0, body_case, body, want, ret_resp, ret_fd);
}

int rpc_call_id(rpc_t *r, uint64_t id, Pinpool__V1__Request__BodyCase body_case,
                ProtobufCMessage *body, Pinpool__V1__Response__BodyCase want,
                Pinpool__V1__Response **ret_resp, int *ret_fd) {
  if (id == 0) return rpc_fail(r, PP_EINVAL, "request id 0");
  return rpc_exchange(r, id, body_case, body, want, ret_resp, ret_fd);
}
