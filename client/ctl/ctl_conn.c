/*
 * ctl_conn.c — pinpoolctl's side of the protocol (docs/PROTOCOL.md).
 *
 * What: a blocking, single-threaded client that does just what the operator tool needs:
 * connect to the daemon's Unix socket, say Hello as "pinpoolctl", take the Welcome (and
 * close the region memfd that rides on it: the tool reads statistics, it never maps the
 * region), then send StatsRequest / ShrinkRequest and wait for each Response.  It talks
 * the protocol through ppproto's framing helpers and needs nothing of libpinpool.
 *
 * Errors: every function returns 0 or a negative PP_E* code, and leaves a sentence in
 * c->why.  The caller sorts them into exit codes: transport failures (cannot connect,
 * connection lost, I/O error or timeout — ctl_err_is_transport()) mean "the daemon cannot
 * be reached" (exit 3); anything the daemon answered with a non-OK status, or a reply that
 * does not parse, is "an error from the daemon" (exit 1).  The status code is the negated
 * protocol Status, so pp_status_name() names it exactly as the wire does.
 *
 * A receive timeout (SO_RCVTIMEO, CTL_RECV_TIMEOUT_S) keeps a wedged daemon from hanging
 * the operator's shell; it surfaces as PP_EIO, i.e. "cannot be reached".
 *
 * Replies can be larger than the frames we may send (a full map or buffer list), so we
 * accept up to FRAME_MAX_LIMIT when receiving; the daemon is the party we trust here.
 *
 * No locks: one connection, one thread.
 */
#include "ctl_conn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "frame.h"

static void conn_reset(ctl_conn_t *c) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->max_frame = FRAME_MAX_DEFAULT;
  c->next_id = 1;
}

static int conn_fail_os(ctl_conn_t *c, int err, const char *what) {
  snprintf(c->why, sizeof c->why, "%s: %s", what, strerror(errno));
  return err;
}

static int conn_fail_io(ctl_conn_t *c, int err) {
  if (err == PP_EDISCONNECTED)
    snprintf(c->why, sizeof c->why, "the daemon closed the connection");
  else if (err == PP_EIO)
    snprintf(c->why, sizeof c->why, "I/O error or no answer within %d s", CTL_RECV_TIMEOUT_S);
  else
    snprintf(c->why, sizeof c->why, "%s", pp_strerror(err));
  return err;
}

/* Send req, receive its Response and check it: matching id, status OK, expected body.
 * On a non-OK status the daemon's message goes to c->why and its code is returned. */
static int conn_call(ctl_conn_t *c, Pinpool__V1__Request *req,
                     Pinpool__V1__Response__BodyCase want, Pinpool__V1__Response **ret_resp) {
  Pinpool__V1__Response *resp = NULL;
  int rc;

  req->id = c->next_id++;
  rc = frame_send(c->fd, &req->base, c->max_frame, -1);
  if (rc < 0) {
    conn_fail_io(c, rc == PP_ERANGE ? PP_EPROTO : rc);
    goto out;
  }
  rc = frame_recv_response(c->fd, FRAME_MAX_LIMIT, &resp, NULL);
  if (rc < 0) {
    conn_fail_io(c, rc);
    goto out;
  }
  if (resp->id != req->id && resp->status == PINPOOL__V1__STATUS__OK) {
    snprintf(c->why, sizeof c->why, "reply to request %llu arrived for request %llu",
             (unsigned long long)resp->id, (unsigned long long)req->id);
    rc = PP_EPROTO;
    goto out;
  }
  if (resp->status != PINPOOL__V1__STATUS__OK) {
    snprintf(c->why, sizeof c->why, "%s",
             resp->message && resp->message[0] ? resp->message
                                               : pp_strerror(-(int)resp->status));
    rc = -(int)resp->status;
    goto out;
  }
  if (resp->body_case != want) {
    snprintf(c->why, sizeof c->why, "unexpected reply (body %d, wanted %d)",
             (int)resp->body_case, (int)want);
    rc = PP_EPROTO;
    goto out;
  }
  *ret_resp = resp;
  resp = NULL;
  rc = 0;
out:
  if (resp) frame_free_response(resp);
  return rc;
}

int ctl_conn_open(ctl_conn_t *c, const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct timeval tv = {.tv_sec = CTL_RECV_TIMEOUT_S};
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello hello = PINPOOL__V1__HELLO__INIT;
  Pinpool__V1__Response *resp = NULL;
  size_t len = strlen(path);
  int rc;

  conn_reset(c);
  if (len == 0 || len >= sizeof sa.sun_path) {
    snprintf(c->why, sizeof c->why, "socket path is empty or longer than %zu bytes",
             sizeof sa.sun_path - 1);
    return PP_ECONNECT;
  }
  memcpy(c->path, path, len + 1);
  memcpy(sa.sun_path, path, len + 1);

  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return conn_fail_os(c, PP_ECONNECT, "socket");
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    rc = conn_fail_os(c, PP_ECONNECT, "connect");
    goto fail;
  }
  /* Best effort: without it we merely wait longer for a wedged daemon. */
  (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  hello.protocol_version = PROTOCOL_VERSION;
  hello.client_name = (char *)CTL_CLIENT_NAME;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &hello;
  rc = conn_call(c, &req, PINPOOL__V1__RESPONSE__BODY_WELCOME, &resp);
  if (rc < 0) goto fail;
  /* The memfd that came with Welcome was closed by frame_recv_response (ret_fd NULL). */
  if (resp->welcome->max_frame >= FRAME_HEADER_SIZE) c->max_frame = resp->welcome->max_frame;
  c->region_size = resp->welcome->region_size;
  frame_free_response(resp);
  return 0;
fail:
  close(c->fd);
  c->fd = -1;
  return rc;
}

void ctl_conn_close(ctl_conn_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

int ctl_conn_stats(ctl_conn_t *c, bool include_buffers, bool include_map,
                   Pinpool__V1__Response **ret_resp) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;

  if (c->fd < 0) return PP_EDISCONNECTED;
  sr.include_buffers = include_buffers;
  sr.include_map = include_map;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &sr;
  return conn_call(c, &req, PINPOOL__V1__RESPONSE__BODY_STATS, ret_resp);
}

int ctl_conn_shrink(ctl_conn_t *c, Pinpool__V1__Response **ret_resp) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__ShrinkRequest sr = PINPOOL__V1__SHRINK_REQUEST__INIT;

  if (c->fd < 0) return PP_EDISCONNECTED;
  req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK;
  req.shrink = &sr;
  return conn_call(c, &req, PINPOOL__V1__RESPONSE__BODY_SHRINK, ret_resp);
}
