/*
 * ctl_snap.h — one whole Stats picture, however many replies it takes: the summary and
 * every list a command needs, each complete, from a daemon that pages its lists — or the
 * one reply of a daemon that predates paging.  The views (ctl_view.h, ctl_map.h) then
 * render ctl_snapshot_t.stats as if it had come in one piece.  See ctl_snap.c.
 */
#ifndef PP_CTL_SNAP_H
#define PP_CTL_SNAP_H

#include <stdbool.h>
#include <stddef.h>

#include "pinpool.pb-c.h"

/* The lists a command needs (an OR); none: the summary alone. */
#define CTL_LIST_CACHES (1u << 0)
#define CTL_LIST_CLIENTS (1u << 1)
#define CTL_LIST_BUFFERS (1u << 2)
#define CTL_LIST_MAP (1u << 3)

/* Send one StatsRequest and hand back its OK reply with a Stats body (the caller of
 * ctl_snapshot_fetch owns it from then on), or a negative PP_E* code. */
typedef int (*ctl_stats_fetch_fn)(void *ctx, const Pinpool__V1__StatsRequest *rq,
                                  Pinpool__V1__Response **ret_resp);

typedef struct ctl_snapshot {
  /* The summary of the last reply, and each list asked for, whole and in key order; its
   * pointers lead into the replies below.  Read it, never free or pack it. */
  Pinpool__V1__Stats stats;
  bool paged;     /* the daemon paged; false: one reply from a daemon before paging */
  size_t replies; /* how many replies it took */
  char *note;     /* what that one reply said it left out (malloc'd); NULL when nothing */
  Pinpool__V1__Response **resp; /* the replies: they own every item */
  size_t nresp, cap;
} ctl_snapshot_t;

/* Fetch the summary and the lists (CTL_LIST_*) through fetch: each list page after page
 * from cursor 0 until the daemon says there is no more.  A daemon that predates paging
 * answers the first request with its single reply (buffers and map included when asked),
 * which is then the snapshot.  0, or fetch's error, PP_EPROTO when a reply breaks the
 * paging contract (a page for another list, keys not ascending from the cursor, more
 * without progress) or PP_ENOPRIVMEM; on failure why says what happened and *ret is
 * untouched.  Free with ctl_snapshot_free. */
int ctl_snapshot_fetch(ctl_stats_fetch_fn fetch, void *ctx, unsigned lists, ctl_snapshot_t *ret,
                       char *why, size_t why_len);
void ctl_snapshot_free(ctl_snapshot_t *s);

#endif /* PP_CTL_SNAP_H */
