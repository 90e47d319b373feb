/* fdstore.h — what systemd hands pinpoold at start-up (the listening socket, and the region
 * and journal memfds it kept in its file-descriptor store), and putting fds into that store
 * and taking them out.  See fdstore.c. */
#ifndef PP_DAEMON_FDSTORE_H
#define PP_DAEMON_FDSTORE_H

#include <stdbool.h>
#include <stdint.h>

#define FDSTORE_REGION "region"
#define FDSTORE_JOURNAL "journal"
/* A pool's (pools.c): "region.NAME" and "journal.NAME". */
#define FDSTORE_POOLS_MAX 64u
#define FDSTORE_POOL_NAME_MAX 47u

typedef struct fdstore_pool_fds {
  char name[FDSTORE_POOL_NAME_MAX + 1];
  int region_fd, journal_fd; /* -1: none (or more than one: both closed, twice set) */
  bool twice;
  uint32_t flags; /* after a reload: handoff.h's HANDOFF_STORED, HANDOFF_JOURNAL_TEMP */
} fdstore_pool_fds_t;

typedef struct fdstore_fds {
  int listen_fd;  /* the listening socket systemd passed; -1: bind our own */
  int region_fd;  /* the stored region memfd; -1: none */
  int journal_fd; /* the stored journal memfd; -1: none */
  /* More than one fd under a name we store (a store that kept two regions): none of them
   * can be trusted, so region_fd / journal_fd are -1 and these say why. */
  unsigned extra_regions, extra_journals;
  /* What the store kept for pools other than the default, by pool name. */
  fdstore_pool_fds_t pools[FDSTORE_POOLS_MAX];
  unsigned npools;
} fdstore_fds_t;

/* Reads LISTEN_FDS / LISTEN_FDNAMES (sd_listen_fds_with_names; the variables are unset,
 * every fd is close-on-exec): "region" and "journal" are ours, any other name must be the
 * one listening Unix stream socket.  0, or PP_EINVAL (two sockets, or an fd that is not a
 * listening Unix stream socket) / PP_EOS, said in the log; on failure every passed fd is
 * closed. */
int fdstore_collect(fdstore_fds_t *ret);

/* Is there a service manager to keep fds (NOTIFY_SOCKET set)?  Read at start-up. */
bool fdstore_available(void);
/* FDSTORE=1 with FDNAME=name: the manager keeps a duplicate of fd until we remove it or
 * the service stops for good.  0 or PP_EOS (logged). */
int fdstore_put(int fd, const char *name);
/* FDSTOREREMOVE=1 with FDNAME=name: the manager closes what it keeps under name. */
void fdstore_drop(const char *name);

#endif
