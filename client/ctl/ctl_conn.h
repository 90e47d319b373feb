/*
 * ctl_conn.h — pinpoolctl's connection to pinpoold: connect, Hello/Welcome, then the
 * admin requests (StatsRequest page after page, ShrinkRequest), through proto/rpc.h.  See
 * ctl_conn.c.
 */
#ifndef PP_CTL_CONN_H
#define PP_CTL_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "ctl_snap.h"
#include "pinpool.pb-c.h"
#include "pinpool_err.h"
#include "rpc.h"

#define CTL_CLIENT_NAME "pinpoolctl"
#define CTL_RECV_TIMEOUT_S 10 /* a daemon that does not answer within this is unreachable */

typedef struct ctl_conn {
  rpc_t rpc; /* the connection; after a failure rpc.why says what happened */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* where we connected (or tried) */
  uint64_t region_size;                                   /* from Welcome */
  uint32_t pool; /* the pool snapshots describe (StatsRequest.pool); 0: the default */
} ctl_conn_t;

/* Is this failure a failure to reach the daemon (exit 3) rather than its answer (exit 1)?
 * PP_EACCES: the socket is there but this user may not connect to it. */
static inline bool ctl_err_is_transport(int err) {
  return err == PP_ECONNECT || err == PP_EACCES || err == PP_EDISCONNECTED || err == PP_EIO;
}

/* Connect to path, send Hello (client_name "pinpoolctl"), read Welcome and close the memfd
 * it carries (pinpoolctl never maps the region).  Fills *c; on failure the connection is
 * closed and c->rpc.why says what happened: PP_ECONNECT (no socket there, nobody
 * listening, or the path unusable), PP_EACCES (connect refused for permissions; errno
 * kept), PP_EDISCONNECTED, PP_EIO, PP_EPROTO, or the daemon's status (e.g. PP_ETOOMANY)
 * as a negative code. */
int ctl_conn_open(ctl_conn_t *c, const char *path);
void ctl_conn_close(ctl_conn_t *c);

/* The summary and the lists (CTL_LIST_*) whole, page after page (ctl_snap.h); from a
 * daemon before paging, its one reply.  Errors as ctl_snapshot_fetch, with c->rpc.why
 * saying what happened. */
int ctl_conn_snapshot(ctl_conn_t *c, unsigned lists, ctl_snapshot_t *ret);
/* One ShrinkRequest.  *ret_resp has body shrink. */
int ctl_conn_shrink(ctl_conn_t *c, Pinpool__V1__Response **ret_resp);

#endif /* PP_CTL_CONN_H */
