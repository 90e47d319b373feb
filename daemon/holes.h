/* holes.h — pinpoold's watch over pages that clients punch out of the region: a periodic
 * whole-region scan (--scan-interval), the report of who was hit, and repairs, retried
 * with backoff while the hugepage pool has no page for them.  See holes.c. */
#ifndef PP_DAEMON_HOLES_H
#define PP_DAEMON_HOLES_H

#include <stdint.h>

#include "ledger.h"

#define HOLES_INTERVAL_DEFAULT_MS 10000u
#define HOLES_WAIT_MAX 32u /* passes between repair attempts, at most */

typedef struct holes {
  ledger_t *ledger;
  unsigned wait;   /* passes between repair attempts now: 0 while repairs succeed, then
                      doubling (1, 2, 4 ... HOLES_WAIT_MAX) while they fail */
  unsigned skip;   /* passes left before the next attempt */
  uint64_t passes; /* passes so far */
} holes_t;

void holes_init(holes_t *h, ledger_t *ledger);
/* One pass: scan the whole region, report pages newly found punched (and who they hit),
 * repair what is lost unless a failed repair asks to wait, give back what repairs
 * restored.  The scan's error (PP_EOS: pagemap unreadable; then the pass only repairs), or
 * 0. */
int holes_pass(holes_t *h);

#endif
