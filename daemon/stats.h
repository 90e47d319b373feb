/* stats.h — the operator's snapshot (the Stats response), built from the ledger's
 * read-only views and the daemon's session list: the summary with every reply, and either
 * today's single reply or one list a page at a time.  See stats.c. */
#ifndef PP_DAEMON_STATS_H
#define PP_DAEMON_STATS_H

#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "ledger.h"
#include "pinpool.pb-c.h"
#include "session.h"

/* What a paged reply's envelope around Stats can take at most: Response.id (tag and a
 * 10-byte varint), the body's tag and its length (5 bytes up to FRAME_MAX_LIMIT and
 * beyond).  Status OK and an empty message are not packed (proto3 defaults). */
#define STATS_ENVELOPE_MAX 17u

/* What the summary keeps from one reply to the next: the region's physical runs
 * summarised and the largest free contiguous block, each up to O(the region's pages) to
 * find.  They are found again only when they can have changed: the runs when
 * region_generation() moves, the block when the buddy's alloc or free count does too.
 * Zeroed before its first use; it belongs to one ledger. */
typedef struct stats_memo {
  bool valid;
  uint64_t generation, allocs, frees;
  region_run_stats_t runs;
  uint64_t largest_free_contig;
} stats_memo_t;

struct pools;

typedef struct stats_source {
  ledger_t *ledger;               /* the pool's (pools.h) */
  uint32_t pool;                  /* its id: which holder of each session the clients show */
  const struct pools *pools;      /* NULL: the default pool alone */
  const session_list_t *sessions; /* sessions past Hello: Stats.clients */
  uint32_t max_clients;           /* only reported */
  uint64_t uptime_ms;
  uint32_t max_frame; /* a page is filled so that its Response packs into this */
  stats_memo_t *memo; /* NULL: find everything again for every reply */
} stats_source_t;

/* The reply to rq (NULL: a SNAPSHOT with neither buffers nor map), every part of it in a
 * (valid until the arena is rewound).  A paged list (rq->list CACHES, CLIENTS, BUFFERS,
 * MAP) holds the items whose keys are rq->cursor or above, in key order, as many as
 * rq->limit allows (0: no limit) and as fit src->max_frame with the summary; at least one
 * when any is left, so paging always advances.  PP_EINVAL for a list this daemon does not
 * know; PP_ENOPRIVMEM when malloc or the arena's budget runs out. */
int stats_build(const stats_source_t *src, const Pinpool__V1__StatsRequest *rq,
                Pinpool__V1__Stats **ret, arena_t *a);

/* Cut st down when its reply would not fit max_frame, and say what was cut so far; NULL
 * when nothing more can go.  A SNAPSHOT loses the map, then the buffer list, then the
 * client list, then half of the caches at a time.  A page loses its second half, with
 * next_cursor and more moved back so that the next page brings it: nothing is lost.  When
 * neither can lose more, the pool list (Stats.pools) goes. */
const char *stats_trim(Pinpool__V1__Stats *st);

#endif
