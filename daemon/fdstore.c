/*
 * fdstore.c — the service manager's side of pinpoold's start-up: the fds it passes, and
 * its file-descriptor store.
 *
 * What systemd passes (sd_listen_fds(3)): LISTEN_FDS fds from 3 on, named by
 * LISTEN_FDNAMES.  With pinpoold.socket that is the listening socket, named after the
 * socket unit ("pinpoold.socket", or FileDescriptorName=), followed by whatever the
 * previous daemon stored with FDSTORE=1, under the names it gave: "region" (the region's
 * memfd) and "journal" (the journal's).  Names are the only way to tell them apart, so:
 * the two names are ours, and every other fd must be the one listening Unix stream socket
 * (checked with sd_is_socket_unix, as before restart survival).  systemd-socket-activate
 * and other managers that pass no names get "unknown" for the socket, which fits.  An
 * fd of our names twice (a store that somehow kept two regions) is not trusted: both are
 * closed and reported, and the caller starts fresh.
 *
 * The store (systemd.service(5) FileDescriptorStoreMax=, sd_pid_notify_with_fds(3)):
 * FDSTORE=1 with FDNAME= gives the manager a duplicate to keep while we run, across our
 * crashes, kills and restarts, until FDSTOREREMOVE=1 or the service stops for good.  A
 * memfd is not pollable, so the manager never drops it by itself.  Pools other than the
 * default store theirs as "region.NAME" and "journal.NAME" (persist.c); they are collected
 * by name in fdstore_fds_t.pools, with the same rule for a name seen twice.  Without
 * NOTIFY_SOCKET (pinpoold started by hand, `make run`, tests without a supervisor) there is no
 * store: fdstore_available() says so and the daemon runs without restart survival.
 *
 * Locks: none; start-up and the loop thread.
 */
#define _GNU_SOURCE
#include "fdstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "pinpool_err.h"

/* "region.NAME" or "journal.NAME": fd kept in f's entry for NAME (true), else false. */
static bool pool_fd(fdstore_fds_t *f, const char *name, int fd) {
  bool region = !strncmp(name, FDSTORE_REGION ".", sizeof FDSTORE_REGION);
  bool journal = !strncmp(name, FDSTORE_JOURNAL ".", sizeof FDSTORE_JOURNAL);
  const char *pool = region ? name + sizeof FDSTORE_REGION : name + sizeof FDSTORE_JOURNAL;
  fdstore_pool_fds_t *e = NULL;
  int *slot;

  if ((!region && !journal) || !*pool || strlen(pool) > FDSTORE_POOL_NAME_MAX) return false;
  for (unsigned i = 0; i < f->npools && !e; i++)
    if (!strcmp(f->pools[i].name, pool)) e = &f->pools[i];
  if (!e) {
    if (f->npools == FDSTORE_POOLS_MAX) {
      log_err("the fd store holds more than %u pools: '%s' is closed", FDSTORE_POOLS_MAX, name);
      close(fd);
      return true;
    }
    e = &f->pools[f->npools++];
    snprintf(e->name, sizeof e->name, "%s", pool);
    e->region_fd = e->journal_fd = -1;
  }
  slot = region ? &e->region_fd : &e->journal_fd;
  if (*slot >= 0 || e->twice) { /* two of one name: neither is trusted */
    if (e->region_fd >= 0) close(e->region_fd);
    if (e->journal_fd >= 0) close(e->journal_fd);
    e->region_fd = e->journal_fd = -1;
    e->twice = true;
    close(fd);
  } else {
    *slot = fd;
  }
  return true;
}

int fdstore_collect(fdstore_fds_t *ret) {
  char **names = NULL;
  int n = sd_listen_fds_with_names(1, &names), rc = 0;
  fdstore_fds_t f = {.listen_fd = -1, .region_fd = -1, .journal_fd = -1};

  if (n < 0) {
    log_err("sd_listen_fds: %s", strerror(-n));
    return PP_EOS;
  }
  for (int i = 0; i < n; i++) {
    int fd = SD_LISTEN_FDS_START + i;
    const char *name = names && names[i] ? names[i] : "unknown";
    if (!strcmp(name, FDSTORE_REGION) || !strcmp(name, FDSTORE_JOURNAL)) {
      bool region = !strcmp(name, FDSTORE_REGION);
      int *slot = region ? &f.region_fd : &f.journal_fd;
      unsigned *extra = region ? &f.extra_regions : &f.extra_journals;
      if (*slot >= 0 || *extra) {
        if (*slot >= 0) close(*slot);
        *slot = -1;
        (*extra)++;
        close(fd);
      } else {
        *slot = fd;
      }
      continue;
    }
    if (pool_fd(&f, name, fd)) continue;
    if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0) {
      if (f.listen_fd >= 0) {
        log_err("systemd passed two listening sockets (fds %d and %d); pinpoold wants one",
                f.listen_fd, fd);
        rc = PP_EINVAL;
      }
      if (f.listen_fd < 0)
        f.listen_fd = fd;
      else
        close(fd);
      continue;
    }
    log_err("the socket systemd passed (fd %d, '%s') is not a listening Unix stream socket", fd,
            name);
    close(fd);
    rc = PP_EINVAL;
  }
  for (int i = 0; names && i < n; i++)
    free(names[i]);
  free(names);
  if (rc) {
    if (f.listen_fd >= 0) close(f.listen_fd);
    if (f.region_fd >= 0) close(f.region_fd);
    if (f.journal_fd >= 0) close(f.journal_fd);
    for (unsigned i = 0; i < f.npools; i++) {
      if (f.pools[i].region_fd >= 0) close(f.pools[i].region_fd);
      if (f.pools[i].journal_fd >= 0) close(f.pools[i].journal_fd);
    }
    return rc;
  }
  *ret = f;
  return 0;
}

bool fdstore_available(void) {
  const char *e = getenv("NOTIFY_SOCKET");
  return e && *e;
}

int fdstore_put(int fd, const char *name) {
  char msg[64];
  snprintf(msg, sizeof msg, "FDSTORE=1\nFDNAME=%s", name);
  int r = sd_pid_notify_with_fds(0, 0, msg, &fd, 1);
  if (r <= 0) {
    log_err("cannot hand the %s fd to the service manager's store: %s", name,
            r < 0 ? strerror(-r) : "no NOTIFY_SOCKET");
    return PP_EOS;
  }
  return 0;
}

void fdstore_drop(const char *name) {
  char msg[64];
  snprintf(msg, sizeof msg, "FDSTOREREMOVE=1\nFDNAME=%s", name);
  int r = sd_notify(0, msg);
  if (r < 0) log_warning("FDSTOREREMOVE of %s: %s", name, strerror(-r));
}
