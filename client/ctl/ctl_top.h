/*
 * ctl_top.h — `pinpoolctl top`: a live view of the daemon, like slabtop.  See ctl_top.c.
 */
#ifndef PP_CTL_TOP_H
#define PP_CTL_TOP_H

#include "ctl_conn.h"

#define CTL_TOP_INTERVAL_MS 1000u

/* Take over the terminal on stdin/stdout and refresh every interval_ms until the operator
 * presses q.  Returns 0, PP_EINVAL when stdin/stdout is not a terminal ncurses can drive,
 * or the ctl_conn error that ended it (c->why explains); the screen is restored before it
 * returns in every case. */
int ctl_top_run(ctl_conn_t *c, unsigned interval_ms);

#endif /* PP_CTL_TOP_H */
