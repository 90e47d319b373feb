/* server.h — pinpoold's event loop: the listening socket, connections, the handshake,
 * back-pressure, systemd notification and clean shutdown.  See server.c, listen.c,
 * conn.c and handshake.c. */
#ifndef PP_DAEMON_SERVER_H
#define PP_DAEMON_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ledger.h"

typedef struct server_config {
  const char *socket_path;      /* where to bind when systemd passes no socket */
  unsigned socket_mode;         /* chmod of a socket we bind (not of a passed one) */
  uint32_t max_clients;         /* sessions at once; more get TOO_MANY_CLIENTS */
  uint32_t admin_reserve;       /* of those, kept for admins (capped at max_clients / 4) */
  uint32_t max_clients_per_uid; /* sessions of one non-admin uid; 0 = no limit */
  uint32_t max_pending_per_uid; /* connections of one non-admin uid before Hello; 0 = none */
  uint32_t max_frame;           /* announced in Welcome; both directions */
  gid_t admin_gid;              /* (gid_t)-1: root only */
  size_t write_high_water;      /* real bytes of queued replies above which a client's
                                 * reads pause */
  size_t max_queued;            /* real bytes of queued replies, all clients together, above
                                 * which clients with replies queued are not read */
  unsigned hello_timeout_ms;    /* a connection must say Hello within this */
  unsigned frame_timeout_ms;    /* a frame must be complete this long after its first byte */
  unsigned write_timeout_ms;    /* a client with replies queued must take some within this */
  uint64_t started_ms;          /* CLOCK_MONOTONIC ms at start-up (Stats.uptime_ms) */
  uint32_t scan_interval_ms;    /* whole-region scan for punched pages (holes.c); 0 = off */
  int listen_fd;                /* the socket systemd passed (fdstore.h); -1: bind our own */
  uint64_t hang_after_requests; /* tests: PINPOOLD_TEST_HANG_AFTER_REQUESTS (0: never) */
  /* A reload (SIGHUP) executes exe_path with argv (what we were started with; main resolves
   * the path at start-up, see reload.c).  NULL exe_path: SIGHUP is refused. */
  const char *exe_path;
  char *const *argv;
  uint32_t handoff_version; /* tests: PINPOOLD_TEST_HANDOFF_VERSION (0: HANDOFF_VERSION) */
} server_config_t;

struct persist;
struct pools;
struct handoff;

/* Listen (bound or socket-activated), serve the ledger's pool until SIGTERM/SIGINT, shut
 * down cleanly (every session released; with a journal, the journal keeps them).  The
 * sessions persist restored wait, detached, for their clients until --grace runs out —
 * except, after a reload (ho: what the previous image of this process handed over, NULL
 * on a plain start), those whose connections it handed on, which are served on them.
 * SIGHUP re-executes the daemon (reload.c) and returns only if that fails.  Returns 0,
 * PP_ECORRUPT when the journal and the ledger disagreed at shutdown, or a negative PP_E*
 * code when the socket could not be set up. */
int server_run(const server_config_t *cfg, struct pools *pools, struct persist *persist,
               struct handoff *ho);

#endif
