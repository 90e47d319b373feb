/*
 * holes.c — pinpoold's watch over pages that clients punch out of the region.
 *
 * The threat.  Every client receives the region's memfd read-write in its Welcome and can
 * fallocate(PUNCH_HOLE) any part of it; no seal forbids that short of forbidding writes.
 * shm/ keeps such pages pinned (so an address once reported never names memory the kernel
 * gave to someone else), finds them (region_scan_holes, region_check_range), repairs them
 * (region_repair) and zeroes without dying (region_zero).  The ledger keeps what is lost
 * out of circulation and flags what was hit (ledger.c, "Lost pages"): blocks are checked
 * before alloc hands them out and before lookup reports their addresses, freed lost pages
 * go to quarantine, damaged buffers are flagged.
 *
 * This file is the periodic part: holes_pass(), which server.c's timer runs every
 * --scan-interval ms on the loop thread (0 turns it off), so that a hole nobody asks about
 * is still found, reported and repaired:
 *   1. ledger_holes_scan: the whole region against pagemap (one pread per 512 4 KiB pages
 *      or per hugepage: about 0.4 ms per GiB of 2 MiB pages, 17 ms per GiB of 4 KiB pages
 *      — the loop is busy that long), damage flagged, free lost pages quarantined;
 *   2. ledger_holes_report: when pages were found punched since the last report (by this
 *      scan or by an allocation, a lookup or a zeroing in between), each lost range is
 *      logged at err with the buffers, slabs and objects on it and the sessions they
 *      belong to;
 *   3. ledger_holes_repair: lost pages backed again, pinned and re-read; quarantined blocks
 *      and set-aside objects whose pages are whole again go back.  A repair fails when the
 *      hugepage pool has no page (another process took the punched pages' place) or the
 *      pin budget is spent; then the next attempts wait 1, 2, 4 ... up to HOLES_WAIT_MAX
 *      passes (a failing repair costs a fallocate and a log line), and new holes or a
 *      success reset the wait.
 *
 * What a client can still do: scribble on shared data; punch holes, losing the data in
 * those pages (the kernel gives zeroed pages back on repair) — detected, repaired,
 * flagged; and, while the pool is empty or the pin budget spent, shrink the usable region
 * by what stays lost.  What it cannot: crash the daemon (no SIGBUS: region_zero), make a
 * reported physical address point at memory the kernel reused (the pin; lost pages report
 * none), or make the daemon hand out a page it knows lost.
 *
 * Locks: none; the loop thread only, like the ledger.
 */
#include "holes.h"

#include <inttypes.h>

#include "log.h"

void holes_init(holes_t *h, ledger_t *ledger) {
  *h = (holes_t){.ledger = ledger};
}

int holes_pass(holes_t *h) {
  ledger_holes_stats_t before, now;
  uint64_t reported;
  int rc;

  ledger_holes_stats(h->ledger, &before);
  rc = ledger_holes_scan(h->ledger);
  h->passes++;
  ledger_holes_stats(h->ledger, &now);
  reported = now.punched_bytes;
  ledger_holes_report(h->ledger, now.punched_bytes != before.punched_bytes
                                     ? "the periodic scan"
                                     : "a check since the last scan");
  if (now.punched_bytes != before.punched_bytes) h->wait = h->skip = 0; /* news: at once */
  if (!now.lost_bytes && !now.quarantined_bytes && !now.objects_aside) {
    h->wait = h->skip = 0;
    return rc;
  }
  if (h->skip) {
    h->skip--;
    return rc;
  }
  ledger_holes_repair(h->ledger);
  ledger_holes_stats(h->ledger, &now);
  if (!now.lost_bytes && !now.quarantined_bytes && !now.objects_aside) {
    h->wait = 0;
    log_notice("holes: every punched page is backed again (%" PRIu64 " bytes punched so far)",
               reported);
    return rc;
  }
  h->wait = h->wait ? (h->wait * 2 < HOLES_WAIT_MAX ? h->wait * 2 : HOLES_WAIT_MAX) : 1;
  h->skip = h->wait;
  log_warning("holes: %" PRIu64 " bytes still lost, %" PRIu64 " quarantined, %" PRIu64
              " objects set aside; next repair attempt in %u scans",
              now.lost_bytes, now.quarantined_bytes, now.objects_aside, h->wait + 1);
  return rc;
}
