/* handlers.h — requests to ledger calls, and results to Responses: one table row per
 * request body, and the one place a reply is made to fit max_frame.  See handlers.c. */
#ifndef PP_DAEMON_HANDLERS_H
#define PP_DAEMON_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "ledger.h"
#include "pinpool.pb-c.h"
#include "pools.h"
#include "session.h"
#include "stats.h"

/* Welcome.features: the requests beyond the first ones that handler_table[] serves. */
#define HANDLERS_FEATURES                                                                      \
  ((uint32_t)PINPOOL__V1__FEATURE__FEATURE_BULK | (uint32_t)PINPOOL__V1__FEATURE__FEATURE_POOLS)

typedef struct handlers_config {
  uint32_t max_frame;   /* replies are cut down to fit */
  uint32_t max_clients; /* only reported (Stats.max_clients); the server enforces it */
  uint64_t started_ms;  /* CLOCK_MONOTONIC ms when the daemon started (Stats.uptime_ms) */
} handlers_config_t;

typedef struct handlers {
  ledger_t *ledger; /* the default pool's */
  pools_t *pools;   /* every pool: own_pools unless handlers_set_pools said otherwise */
  pools_t own_pools;
  const uint8_t *region_id;       /* the default pool's (persist_region_id); NULL: zeros */
  const session_list_t *sessions; /* sessions past Hello (Stats.clients) */
  handlers_config_t cfg;
  arena_t arena;                      /* each reply, rewound once packed */
  stats_memo_t stats_memo[POOLS_MAX]; /* what Stats replies keep, per pool */
  /* A descriptor to send with the reply handlers_serve just packed (AttachPool: the pool's
   * memfd), -1 when none; the caller sends it with the reply's first byte and, when
   * reply_fd_close, closes it after.  handlers_serve sets both every time. */
  int reply_fd;
  bool reply_fd_close;
} handlers_t;

/* The handlers over one pool, the default, whose ledger is ledger. */
void handlers_init(handlers_t *hs, ledger_t *ledger, const session_list_t *sessions,
                   const handlers_config_t *cfg);
/* Serve every pool of pools (pools->v[0].ledger must be the ledger of handlers_init), the
 * default pool's region named by region_id (PoolAttached.region_id). */
void handlers_set_pools(handlers_t *hs, pools_t *pools, const uint8_t *region_id);
/* Frees the arena. */
void handlers_fini(handlers_t *hs);

/* Serve one request other than Hello for s (past Hello: s->holder is set) and pack the
 * reply, with req's id, into a malloc'd frame for the caller to send and free.  A failed
 * request is still a reply (its status says why); an error return means no frame could be
 * made at all (the caller closes the connection). */
int handlers_serve(handlers_t *hs, session_t *s, const Pinpool__V1__Request *req,
                   uint8_t **ret_buf, size_t *ret_len);

/* frame_pack(), leaving out what the body can do without (Stats: stats_trim(); Buffer:
 * segments) while the reply exceeds max_frame, and saying in resp->message what was left
 * out (memory from a). */
int handlers_pack(uint32_t max_frame, Pinpool__V1__Response *resp, arena_t *a,
                  uint8_t **ret_buf, size_t *ret_len);

/* CLOCK_MONOTONIC in ms. */
uint64_t handlers_now_ms(void);

#endif
