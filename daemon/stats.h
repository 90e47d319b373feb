/* stats.h — the operator's snapshot (the Stats response), built from the ledger's
 * read-only views and the daemon's session list.  See stats.c. */
#ifndef PP_DAEMON_STATS_H
#define PP_DAEMON_STATS_H

#include <stdint.h>

#include "arena.h"
#include "ledger.h"
#include "pinpool.pb-c.h"
#include "session.h"

typedef struct stats_source {
  ledger_t *ledger;
  const session_list_t *sessions; /* sessions past Hello: Stats.clients */
  uint32_t max_clients;           /* only reported */
  uint64_t uptime_ms;
} stats_source_t;

/* The snapshot, every part of it in a (valid until the arena is rewound).  rq may be NULL
 * (neither buffers nor map).  PP_ENOPRIVMEM when malloc or the arena's budget runs out. */
int stats_build(const stats_source_t *src, const Pinpool__V1__StatsRequest *rq,
                Pinpool__V1__Stats **ret, arena_t *a);

/* Leave out the next bulkiest optional part of st — the map, then the buffer list, then
 * the client list — and say what is left out so far; NULL when nothing more can go. */
const char *stats_trim(Pinpool__V1__Stats *st);

#endif
