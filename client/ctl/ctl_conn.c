/*
 * ctl_conn.c — pinpoolctl's side of the protocol (docs/PROTOCOL.md).
 *
 * What: a blocking, single-threaded client that does just what the operator tool needs:
 * connect to the daemon's Unix socket, say Hello as "pinpoolctl", take the Welcome (the
 * region memfd that rides on it is closed at once: the tool reads statistics, it never
 * maps the region), then send StatsRequest (page after page: ctl_snap.c follows them) /
 * ShrinkRequest and wait for each Response.
 * The exchange itself — ids, framing, status mapping, the daemon's message — is
 * proto/rpc.c, the same code libpinpool uses; this file only fills the request bodies.
 *
 * Errors: every function returns 0 or a negative PP_E* code, and leaves a sentence in
 * c->rpc.why.  The caller sorts them into exit codes: transport failures (cannot connect,
 * not allowed to connect, connection lost, I/O error or timeout — ctl_err_is_transport())
 * mean "the daemon cannot be reached" (exit 3); anything the daemon answered with a
 * non-OK status, or a reply that does not parse, is "an error from the daemon" (exit 1).
 * The status code is the negated protocol Status, so pp_status_name() names it exactly as
 * the wire does.
 *
 * A reply deadline (CTL_RECV_TIMEOUT_S) keeps a wedged daemon from hanging the operator's
 * shell; it surfaces as PP_EIO, i.e. "cannot be reached".
 *
 * Replies can be larger than the frames we may send (an old daemon's single reply with
 * the map or buffer list), so we accept up to FRAME_MAX_LIMIT when receiving; the daemon
 * is the party we trust here.
 *
 * No locks: one connection, one thread.
 */
#include "ctl_conn.h"

#include <stdio.h>
#include <string.h>

#include "frame.h"

int ctl_conn_open(ctl_conn_t *c, const char *path) {
  Pinpool__V1__Response *resp = NULL;
  int rc;

  memset(c, 0, sizeof *c);
  rpc_init(&c->rpc, CTL_RECV_TIMEOUT_S * 1000);
  snprintf(c->path, sizeof c->path, "%s", path);
  rc = rpc_connect(&c->rpc, path);
  /* A path that cannot be a socket's, or no socket to try it with: either way the daemon
   * cannot be reached there. */
  if (rc == PP_EINVAL || rc == PP_EOS) rc = PP_ECONNECT;
  if (rc < 0) return rc;
  rc = rpc_hello(&c->rpc, CTL_CLIENT_NAME, &resp, NULL);
  if (rc < 0) {
    ctl_conn_close(c);
    return rc;
  }
  c->rpc.recv_max = FRAME_MAX_LIMIT;
  c->region_size = resp->welcome->region_size;
  frame_free_response(resp);
  return 0;
}

void ctl_conn_close(ctl_conn_t *c) {
  char why[sizeof c->rpc.why];
  /* Closing resets the connection's state; what it said last stays for the caller. */
  memcpy(why, c->rpc.why, sizeof why);
  rpc_close(&c->rpc);
  memcpy(c->rpc.why, why, sizeof why);
}

static int fetch_stats(void *ctx, const Pinpool__V1__StatsRequest *rq,
                       Pinpool__V1__Response **ret_resp) {
  ctl_conn_t *c = ctx;
  Pinpool__V1__StatsRequest in_pool = *rq;
  in_pool.pool = c->pool;
  return rpc_call(&c->rpc, PINPOOL__V1__REQUEST__BODY_STATS, (ProtobufCMessage *)&in_pool.base,
                  PINPOOL__V1__RESPONSE__BODY_STATS, ret_resp, NULL);
}

int ctl_conn_snapshot(ctl_conn_t *c, unsigned lists, ctl_snapshot_t *ret) {
  return ctl_snapshot_fetch(fetch_stats, c, lists, ret, c->rpc.why, sizeof c->rpc.why);
}

int ctl_conn_shrink(ctl_conn_t *c, Pinpool__V1__Response **ret_resp) {
  Pinpool__V1__ShrinkRequest sr = PINPOOL__V1__SHRINK_REQUEST__INIT;

  return rpc_call(&c->rpc, PINPOOL__V1__REQUEST__BODY_SHRINK, &sr.base,
                  PINPOOL__V1__RESPONSE__BODY_SHRINK, ret_resp, NULL);
}
