/* handlers.h — requests to ledger calls, and results to Responses: one table row per
 * request body, and the one place a reply is made to fit max_frame.  See handlers.c. */
#ifndef PP_DAEMON_HANDLERS_H
#define PP_DAEMON_HANDLERS_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "ledger.h"
#include "pinpool.pb-c.h"
#include "session.h"
#include "stats.h"

/* Welcome.features: the requests beyond the first ones that handler_table[] serves. */
#define HANDLERS_FEATURES ((uint32_t)PINPOOL__V1__FEATURE__FEATURE_BULK)

typedef struct handlers_config {
  uint32_t max_frame;   /* replies are cut down to fit */
  uint32_t max_clients; /* only reported (Stats.max_clients); the server enforces it */
  uint64_t started_ms;  /* CLOCK_MONOTONIC ms when the daemon started (Stats.uptime_ms) */
} handlers_config_t;

typedef struct handlers {
  ledger_t *ledger;
  const session_list_t *sessions; /* sessions past Hello (Stats.clients) */
  handlers_config_t cfg;
  arena_t arena;           /* each reply, rewound once packed */
  stats_memo_t stats_memo; /* what Stats replies keep from one to the next */
} handlers_t;

void handlers_init(handlers_t *hs, ledger_t *ledger, const session_list_t *sessions,
                   const handlers_config_t *cfg);
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
