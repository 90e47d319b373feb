/*
 * rsd.h — the restart tests' harness: a real pinpoold under the test supervisor
 * (tests/common/supervisor.h) with an fd store, so that it can be killed and come back
 * with its region and journal; its books read over the protocol; and a raw re-claiming
 * client for tests that must see every request and reply.
 *
 * rsd_start() makes a folder /tmp/pp-rsd-XXXXXX (0755), lets the supervisor listen on
 * DIR/pinpool.sock (the socket outlives every daemon, as pinpoold.socket does) and start
 * $PP_BIN_DIR/pinpoold (or rsd_opts_t.bin) with
 *     --size 16M --page-size 4K --log-level debug [--admin-group <our gid>, not root]
 * then the test's options; FileDescriptorStoreMax=8, Restart=on-failure at once, the
 * daemon's log in DIR/pinpoold.log, printed when a check fails.  Every call returns 0 or
 * -1 with the reason on stderr, except where it says it fails the test.
 *
 * rcl_t is a client written the way docs/PROTOCOL.md tells one to re-claim: when its
 * connection breaks under a request it reconnects until the grace period (+ 2 s) has
 * passed, says Hello with the token, requires a Welcome that re-claimed the same session
 * on the same memfd (st_dev, st_ino) and region_id, and sends the request again with its
 * id.  It counts re-claims and keeps what every Welcome said.
 */
#ifndef PP_TEST_RSD_H
#define PP_TEST_RSD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "frame.h"
#include "supervisor.h"

typedef struct rsd {
  sup_t *sup;
  bool held; /* restarts held (rsd_opts_t.hold_restarts) */
  char dir[64];
  char sock[128];
  char log[128];
} rsd_t;

typedef struct rsd_opts {
  const char *bin;         /* the daemon to run (NULL: $PP_BIN_DIR/pinpoold) */
  const char *const *args; /* more pinpoold options, NULL-terminated; may be NULL */
  const char *const *env;  /* "NAME=VALUE" for the daemon, NULL-terminated; may be NULL */
  uint64_t watchdog_usec;  /* WatchdogSec= (0: none) */
  uint64_t seed;           /* sup_kill_random's (0: from the clock, printed) */
  bool hold_restarts;      /* RestartSec=infinity: a dead daemon stays down until
                            * sup_start (rsd_kill starts it) */
} rsd_opts_t;

int rsd_start(rsd_t *d, const rsd_opts_t *o);
/* SIGKILL the daemon and wait until the next one is ready (started here when restarts are
 * held). */
int rsd_kill(rsd_t *d);
/* SIGHUP (a reload: the daemon executes itself again, systemctl reload) and wait until it
 * says READY=1 again — the reload done, or given up with the old image serving on (its
 * log says which).  Fails (-1) when a daemon process ended meanwhile or the main pid
 * changed: a reload is never a restart. */
int rsd_reload(rsd_t *d);
/* Stop it (SIGTERM) and require a clean exit (status 0: the daemon's shutdown check of the
 * journal against the ledger passed). */
int rsd_stop(rsd_t *d);
/* Kills what runs, removes the folder. */
void rsd_free(rsd_t *d);
void rsd_dump_log(const rsd_t *d);
/* Lines of the daemon's log that contain needle. */
int rsd_log_count(const rsd_t *d, const char *needle);
/* Fails the test when any daemon process of this run reported a sanitizer error, a failed
 * assertion or validator ("pinpool ... failed:"): a daemon that aborts is restarted like a
 * killed one, so only its log tells. */
void rsd_assert_log_clean(const rsd_t *d);

/* Stats (with the buffer list) through a connection of its own, after a Shrink so that
 * empty slabs and magazines do not count; fails the test when it cannot be had.  Free
 * with frame_free_response. */
Pinpool__V1__Response *rsd_stats(const rsd_t *d);
/* The row of session id in a Stats response, NULL when it is not listed. */
const Pinpool__V1__ClientInfo *rsd_client(const Pinpool__V1__Response *st, uint64_t id);

/* ---- a raw re-claiming client ---------------------------------------------------------- */

typedef struct rcl {
  char sock[108]; /* sun_path */
  char name[32];
  int fd;
  frame_rx_t rx;
  int memfd;
  struct stat mst; /* of the memfd of the first Welcome */
  uint8_t *base;   /* that memfd, mapped */
  uint64_t size;
  uint64_t session_id;
  uint8_t token[16];
  uint8_t region_id[16];
  uint32_t grace_ms;
  uint64_t next_id;
  uint64_t last_id; /* of the last request rcl_call* sent (a Hello's not counted) */
  unsigned reclaims;
  int lost; /* after a failed re-claim: the code every later call returns */
} rcl_t;

/* Connect and say Hello as name (a new session).  0 or a PP_E* code. */
int rcl_open(rcl_t *c, const char *sock, const char *name);
/* req gets the next id; on a broken connection the session is re-claimed and req sent
 * again with the same id.  Returns the reply's status as a PP_E* code (0: OK), with the
 * response in *ret (may be NULL), or the re-claim's failure (PP_ESTATELOST, ...). */
int rcl_call(rcl_t *c, Pinpool__V1__Request *req, Pinpool__V1__Response **ret);
/* The same with the caller's id (not taken from the counter): to send a request again. */
int rcl_call_id(rcl_t *c, uint64_t id, Pinpool__V1__Request *req, Pinpool__V1__Response **ret);
void rcl_close(rcl_t *c);

/* The requests. */
int rcl_alloc(rcl_t *c, uint64_t size, const char *name, uint64_t *ret_handle,
              uint64_t *ret_offset);
int rcl_free(rcl_t *c, uint64_t handle);
int rcl_lookup(rcl_t *c, const char *name, uint64_t *ret_handle, uint64_t *ret_offset);
int rcl_cache_open(rcl_t *c, const char *name, uint32_t size, uint32_t *ret_id);
int rcl_cache_alloc(rcl_t *c, uint32_t id, uint32_t count, uint64_t *offs);
int rcl_cache_free(rcl_t *c, uint32_t id, const uint64_t *offs, size_t n);

#endif
