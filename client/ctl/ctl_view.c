/*
 * ctl_view.c — pinpoolctl's read commands, as text and as JSON.
 *
 * What: every read command is a pure function of one Stats snapshot (put together from
 * the daemon's pages by ctl_snap.c, every list whole); this file turns it into what an
 * operator reads.  The text shapes copy what Linux users already know:
 *   - buddyinfo: /proc/buddyinfo's one row of free blocks per order (mm/vmstat.c,
 *     frag_show_print), with the order sizes labelled above it, then the free bytes, the
 *     largest free block and, per order, the fragmentation index of
 *     /sys/kernel/debug/extfrag/extfrag_index (mm/vmstat.c, __fragmentation_index:
 *     -1.000 when a block of that order is free; towards 0 the failure is for lack of
 *     memory, towards 1 for fragmentation);
 *   - slabinfo: /proc/slabinfo's header and row (mm/slab_common.c, cache_show), without
 *     the tunables pinpool does not have, plus pinpool's own columns after ": pinpool";
 *   - status / clients / buffers: labelled values and plain tables.  A session whose
 *     connection broke while pinpoold restarted is "detached" until its client re-claims
 *     it or its deadline passes; clients says how long it has left (the one view that
 *     reads the clock: ctl_view_clients_at takes the time for tests).  Two figures of
 *     memory per session: HELD, what it holds, and CHARGED, what its uid pays — what
 *     --quota limits — and per buffer the uid charged for it now.  CACHED is the part of
 *     HELD its client's buffer caches keep (blocks no program holds), as the client last
 *     reported it (ClientInfo.cached_bytes).  A buffer with more
 *     holders than one page could carry lists those it has and counts the rest ("+N").
 *   - buffers --name: names in Stats are qualified ("~1000/frames", "~g44/ring"); a
 *     qualified filter matches exactly, an unqualified one the name in every scope.
 *   - the region's physical runs (status, and under the map): how many, the longest, a
 *     histogram of their lengths in power-of-two classes of pages ("1:40 2-3:30"), and
 *     what became of the hugepage sort at start-up.
 * Sizes read in binary units (KiB, MiB, GiB); where a test or a script needs the exact
 * figure, the text carries the byte count too ("14.5 MiB (15204352 bytes)").
 *
 * Two sizes, never mixed: the region's page size (the memory's pages: 4 KiB, 2 MiB,
 * 1 GiB) and the allocation unit, order 0 of the buddy (Stats.min_block, 4 KiB on every
 * region).  Order sizes, slab sizes and slabinfo's <pagesperslab> count in the unit —
 * the kernel's slabinfo counts 4 KiB pages too — so a region of 2 MiB pages labels order
 * 0 "4K".  Slab bytes come from SlabInfo.slab_bytes.  An older daemon that sends neither
 * field gets the 4 KiB unit it used (ctl_min_block, ctl_slab_bytes).
 *
 * Holes: pages a client punched out of the region.  status adds what they cost when there
 * was any (punched so far, lost now, quarantined, damaged buffers, objects set aside);
 * buffers marks a damaged buffer after its name, clients counts each session's damaged
 * buffers in its state.  JSON always carries the fields.
 *
 * Contiguity, also two figures: the largest free block a CONTIGUOUS allocation gets now
 * (Stats.largest_free_contiguous) and the longest physically contiguous run of the
 * region, free or not (Stats.largest_contiguous_run): a ceiling, not a promise.
 *
 * JSON: one object per command, field names copied from proto/pinpool.proto so a script
 * can be written against the schema; byte counts are exact integers, never rounded.
 *
 * Invariants: nothing here allocates except the json-c objects it returns; repeated
 * fields are read through their n_* counts only, so a snapshot with missing lists (an
 * older daemon) prints empty tables rather than crashing; fields an older daemon does
 * not send (nr_caches, runs, nr_holders) fall back to what can be counted, or are left
 * out.
 */
#include "ctl_view.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

const char *ctl_fmt_size(char *buf, size_t len, uint64_t bytes) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  unsigned u = 0;
  uint64_t div = 1;

  while (u + 1 < sizeof unit / sizeof unit[0] && bytes / div >= 1024) {
    div *= 1024;
    u++;
  }
  if (bytes % div == 0)
    snprintf(buf, len, "%" PRIu64 " %s", bytes / div, unit[u]);
  else
    snprintf(buf, len, "%.1f %s", (double)bytes / (double)div, unit[u]);
  return buf;
}

const char *ctl_fmt_block(char *buf, size_t len, uint64_t bytes) {
  static const char *const unit[] = {"", "K", "M", "G", "T", "P", "E"};
  unsigned u = 0;

  while (u + 1 < sizeof unit / sizeof unit[0] && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    u++;
  }
  snprintf(buf, len, "%" PRIu64 "%s", bytes, unit[u]);
  return buf;
}

const char *ctl_fmt_duration(char *buf, size_t len, uint64_t ms) {
  uint64_t s = ms / 1000, d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60;

  s %= 60;
  if (d)
    snprintf(buf, len, "%" PRIu64 "d %" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s", d, h, m, s);
  else if (h)
    snprintf(buf, len, "%" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s", h, m, s);
  else if (m)
    snprintf(buf, len, "%" PRIu64 "m %02" PRIu64 "s", m, s);
  else
    snprintf(buf, len, "%" PRIu64 "s", s);
  return buf;
}

const char *ctl_fmt_frag(char *buf, size_t len, int32_t milli) {
  int64_t v = milli; /* widen: -INT32_MIN overflows */

  snprintf(buf, len, "%s%" PRId64 ".%03" PRId64, v < 0 ? "-" : "", (v < 0 ? -v : v) / 1000,
           (v < 0 ? -v : v) % 1000);
  return buf;
}

/* The buddy's unit before Stats.min_block existed. */
#define CTL_MIN_BLOCK_DEFAULT 4096u

uint64_t ctl_min_block(const Pinpool__V1__Stats *s) {
  return s->min_block ? s->min_block : CTL_MIN_BLOCK_DEFAULT;
}

uint64_t ctl_slab_bytes(const Pinpool__V1__Stats *s, const Pinpool__V1__SlabInfo *k) {
  return k->slab_bytes ? k->slab_bytes : (uint64_t)k->pages_per_slab * ctl_min_block(s);
}

uint64_t ctl_cache_bytes(const Pinpool__V1__Stats *s, const Pinpool__V1__SlabInfo *k) {
  return k->num_slabs * ctl_slab_bytes(s, k);
}

/* Length of the scope prefix of name ("~1000/", "~g44/"), 0 when it has none.  The same
 * spelling the daemon accepts: '~', an optional 'g', decimal digits, '/'. */
static size_t scope_len(const char *name) {
  size_t i = 1;
  if (!name || name[0] != '~') return 0;
  if (name[i] == 'g') i++;
  if (name[i] < '0' || name[i] > '9') return 0;
  while (name[i] >= '0' && name[i] <= '9')
    i++;
  return name[i] == '/' ? i + 1 : 0;
}

const char *ctl_name_unscoped(const char *name) {
  return name ? name + scope_len(name) : "";
}

bool ctl_buffer_matches(const Pinpool__V1__BufferInfo *b, const ctl_buffer_filter_t *f) {
  const char *name = b->name ? b->name : "";
  if (!f) return true;
  if (f->name) {
    if (!name[0]) return false; /* unpublished buffers have no name to match */
    if (scope_len(f->name) ? strcmp(name, f->name) != 0
                           : strcmp(ctl_name_unscoped(name), f->name) != 0)
      return false;
  }
  if (f->by_pid) {
    for (size_t i = 0; i < b->n_holder_pids; i++)
      if (b->holder_pids[i] == f->pid) return true;
    return false;
  }
  return true;
}

static const char *yes_no(bool b) {
  return b ? "yes" : "no";
}

uint64_t ctl_nr_caches(const Pinpool__V1__Stats *s) {
  return s->nr_caches ? s->nr_caches : s->n_caches;
}

const char *ctl_fmt_run_buckets(char *buf, size_t len, const Pinpool__V1__PhysRuns *r) {
  size_t used = 0;

  if (len) buf[0] = '\0';
  for (size_t k = 0; r && k < r->n_buckets && used < len; k++) {
    uint64_t lo = UINT64_C(1) << k, hi = (UINT64_C(2) << k) - 1;
    int n;
    if (k >= 63) hi = UINT64_MAX;
    if (lo == hi)
      n = snprintf(buf + used, len - used, "%s%" PRIu64 ":%" PRIu64, used ? " " : "", lo,
                   r->buckets[k]);
    else
      n = snprintf(buf + used, len - used, "%s%" PRIu64 "-%" PRIu64 ":%" PRIu64,
                   used ? " " : "", lo, hi, r->buckets[k]);
    if (n < 0) break;
    used += (size_t)n;
  }
  return buf;
}

void ctl_print_wrapped(FILE *out, const char *head, unsigned indent, const char *text,
                       unsigned width) {
  size_t col = (size_t)fprintf(out, "%s", head);
  bool line_has_word = false;

  while (*text) {
    size_t w = strcspn(text, " ");
    if (line_has_word && col + 1 + w > width) {
      col = (size_t)fprintf(out, "\n%*s", (int)indent, "") - 1;
      line_has_word = false;
    }
    col += (size_t)fprintf(out, "%s%.*s", line_has_word ? " " : "", (int)w, text);
    line_has_word = true;
    text += w;
    text += strspn(text, " ");
  }
  fputc('\n', out);
}

static const char *sort_name(Pinpool__V1__PhysRuns__Sort v) {
  switch (v) {
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_OFF: return "off";
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_NOT_HUGE: return "not_huge";
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_ADOPTED: return "adopted";
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_UNKNOWN: return "unknown";
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_INCOMPLETE: return "incomplete";
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_DONE: return "done";
  default: return "?";
  }
}

const char *ctl_fmt_sort(char *buf, size_t len, const Pinpool__V1__Stats *s) {
  const Pinpool__V1__PhysRuns *r = s->runs;
  uint64_t pages = s->page_size ? s->region_size / s->page_size : 0;
  const char *why = r && r->sort_why && r->sort_why[0] ? r->sort_why : NULL;
  char a[32];

  if (!r) {
    snprintf(buf, len, "unknown");
    return buf;
  }
  switch (r->sort) {
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_OFF:
    snprintf(buf, len, "off (--sort-pages no)");
    break;
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_NOT_HUGE:
    snprintf(buf, len, "not done: 4 KiB pages are placed by the kernel");
    break;
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_ADOPTED:
    snprintf(buf, len, "not done: an adopted region keeps its pages");
    break;
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_UNKNOWN:
    snprintf(buf, len, "not possible: %s", why ? why : "physical addresses unknown");
    break;
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_INCOMPLETE:
    snprintf(buf, len, "incomplete: %" PRIu64 " of %" PRIu64 " pages in physical order%s%s",
             r->sort_placed, pages, why ? ": " : "", why ? why : "");
    break;
  case PINPOOL__V1__PHYS_RUNS__SORT__SORT_DONE:
    snprintf(buf, len,
             "done: %" PRIu64 " of %" PRIu64 " pages in physical order (%" PRIu64
             " ms); unsorted %" PRIu64 " runs, longest %s",
             r->sort_placed, pages, r->sort_elapsed_ms, r->unsorted_nr_runs,
             ctl_fmt_size(a, sizeof a, r->unsorted_longest));
    break;
  default: snprintf(buf, len, "%d", (int)r->sort); break;
  }
  return buf;
}

/* ---- text ---------------------------------------------------------------------------- */

/* "label      value (N bytes)": status and buddyinfo put their labels in one column. */
#define VIEW_LABEL "%-31s"

static void view_bytes(FILE *out, const char *label, uint64_t bytes) {
  char a[32];
  fprintf(out, VIEW_LABEL "%s (%" PRIu64 " bytes)\n", label, ctl_fmt_size(a, sizeof a, bytes),
          bytes);
}

/* The largest block a CONTIGUOUS allocation gets now.  Any free block is contiguous up to
 * the page size, so a daemon with free memory that reports 0 predates the field. */
static void view_largest_free_contiguous(FILE *out, const Pinpool__V1__Stats *s) {
  if (s->largest_free_contiguous == 0 && s->free_bytes > 0)
    fprintf(out, VIEW_LABEL "unknown (pinpoold too old to say)\n",
            "largest free contiguous block");
  else
    view_bytes(out, "largest free contiguous block", s->largest_free_contiguous);
}

/* Pages punched out of the region, when there were any. */
static void view_holes(FILE *out, const Pinpool__V1__Stats *s) {
  if (!s->punched_bytes && !s->lost_bytes && !s->quarantined_bytes && !s->damaged_buffers &&
      !s->objects_set_aside)
    return;
  view_bytes(out, "punched out (so far)", s->punched_bytes);
  view_bytes(out, "lost now", s->lost_bytes);
  view_bytes(out, "quarantined", s->quarantined_bytes);
  fprintf(out, VIEW_LABEL "%" PRIu64 "\n", "damaged buffers", s->damaged_buffers);
  fprintf(out, VIEW_LABEL "%" PRIu64 "\n", "objects set aside", s->objects_set_aside);
}

/* The pool a reply describes, when the daemon has more than the default one. */
static void view_pool(FILE *out, const Pinpool__V1__Stats *s) {
  for (size_t i = 0; s->n_pools > 1 && i < s->n_pools; i++)
    if (s->pools[i]->id == s->pool)
      fprintf(out, VIEW_LABEL "%s (id %" PRIu32 ", one of %zu)\n", "pool",
              s->pools[i]->name ? s->pools[i]->name : "?", s->pool, s->n_pools);
}

const Pinpool__V1__PoolInfo *ctl_pool_find(const Pinpool__V1__Stats *s, const char *name) {
  for (size_t i = 0; i < s->n_pools; i++)
    if (s->pools[i]->name && !strcmp(s->pools[i]->name, name)) return s->pools[i];
  return NULL;
}

void ctl_view_pools(FILE *out, const Pinpool__V1__Stats *s) {
  char a[32], b[32], c[32], d[32], e[32], node[16];

  fprintf(out, "%-16s %3s %10s %6s %4s %4s %10s %10s %10s  %-20s %s\n", "NAME", "ID", "SIZE",
          "PAGE", "HUGE", "NODE", "QUOTA", "USED", "FREE", "WRITERS", "READERS");
  if (s->n_pools == 0) { /* a daemon before pools: its one region */
    fprintf(out, "%-16s %3u %10s %6s %4s %4s %10s %10s %10s  %-20s %s\n", "default", 0u,
            ctl_fmt_size(a, sizeof a, s->region_size), ctl_fmt_size(b, sizeof b, s->page_size),
            yes_no(s->hugepages), "-", "-", ctl_fmt_size(c, sizeof c, s->used_bytes),
            ctl_fmt_size(d, sizeof d, s->free_bytes), "*", "");
    return;
  }
  for (size_t i = 0; i < s->n_pools; i++) {
    const Pinpool__V1__PoolInfo *p = s->pools[i];
    if (p->numa_node >= 0)
      snprintf(node, sizeof node, "%d", (int)p->numa_node);
    else
      snprintf(node, sizeof node, "-");
    fprintf(out, "%-16s %3" PRIu32 " %10s %6s %4s %4s %10s %10s %10s  %-20s %s\n",
            p->name ? p->name : "", p->id, ctl_fmt_size(a, sizeof a, p->region_size),
            ctl_fmt_size(b, sizeof b, p->page_size), yes_no(p->hugepages), node,
            p->quota ? ctl_fmt_size(e, sizeof e, p->quota) : "-",
            ctl_fmt_size(c, sizeof c, p->used_bytes), ctl_fmt_size(d, sizeof d, p->free_bytes),
            p->writers && p->writers[0] ? p->writers : "-",
            p->readers && p->readers[0] ? p->readers : "-");
  }
}

void ctl_view_status(FILE *out, const Pinpool__V1__Stats *s) {
  char a[32];

  fprintf(out, "pinpoold %s, up %s\n", s->version && s->version[0] ? s->version : "?",
          ctl_fmt_duration(a, sizeof a, s->uptime_ms));
  view_pool(out, s);
  view_bytes(out, "region", s->region_size);
  fprintf(out, VIEW_LABEL "%s\n", "page size", ctl_fmt_size(a, sizeof a, s->page_size));
  view_bytes(out, "allocation unit", ctl_min_block(s));
  fprintf(out, VIEW_LABEL "%s\n", "hugepages", yes_no(s->hugepages));
  fprintf(out, VIEW_LABEL "%s\n", "physical addresses", yes_no(s->physical_addresses));
  view_bytes(out, "used", s->used_bytes);
  view_bytes(out, "free", s->free_bytes);
  view_bytes(out, "cached", s->cached_bytes);
  view_bytes(out, "largest free block", s->largest_free_block);
  view_largest_free_contiguous(out, s);
  /* What the pages allow, free or not: a ceiling for CONTIGUOUS, not what one gets now. */
  view_bytes(out, "longest physical run", s->largest_contiguous_run);
  ctl_view_runs(out, s);
  if (s->max_clients)
    fprintf(out, VIEW_LABEL "%" PRIu32 " (max %" PRIu32 ")\n", "clients", s->nr_clients,
            s->max_clients);
  else
    fprintf(out, VIEW_LABEL "%" PRIu32 "\n", "clients", s->nr_clients);
  fprintf(out, VIEW_LABEL "%" PRIu64 "\n", "buffers", s->nr_buffers);
  fprintf(out, VIEW_LABEL "%" PRIu64 "\n", "caches", ctl_nr_caches(s));
  view_holes(out, s);
}

void ctl_view_runs(FILE *out, const Pinpool__V1__Stats *s) {
  const Pinpool__V1__PhysRuns *r = s->runs;
  char a[32], h[1024];

  if (!r) return; /* a daemon before PhysRuns */
  if (!r->known) {
    fprintf(out, VIEW_LABEL "unknown (physical addresses not readable)\n", "physical runs");
  } else {
    fprintf(out,
            VIEW_LABEL "%" PRIu64 ", longest %s (%" PRIu64 " bytes), %" PRIu64
                       " pages out of order\n",
            "physical runs", r->nr_runs, ctl_fmt_size(a, sizeof a, r->longest), r->longest,
            r->descents);
    /* One bucket per power of two: a region of many runs gets a line or two more. */
    snprintf(a, sizeof a, VIEW_LABEL, "runs by length (pages:runs)");
    ctl_print_wrapped(out, a, 31, ctl_fmt_run_buckets(h, sizeof h, r), 79);
  }
  fprintf(out, VIEW_LABEL "%s\n", "hugepages sorted", ctl_fmt_sort(h, sizeof h, s));
}

/* One label column, then one column per order: /proc/buddyinfo's row with heads. */
#define BUDDY_LABEL "%-22s"
#define BUDDY_COL "%8s"

void ctl_view_buddyinfo(FILE *out, const Pinpool__V1__Stats *s) {
  size_t orders = s->n_free_per_order;
  char a[32];

  fprintf(out, BUDDY_LABEL, "order");
  for (size_t o = 0; o < orders; o++) {
    snprintf(a, sizeof a, "%zu", o);
    fprintf(out, BUDDY_COL, a);
  }
  fprintf(out, "\n" BUDDY_LABEL, "block size");
  for (size_t o = 0; o < orders; o++)
    fprintf(out, BUDDY_COL, ctl_fmt_block(a, sizeof a, ctl_min_block(s) << o));
  fprintf(out, "\n" BUDDY_LABEL, "Region 0, zone pinpool");
  for (size_t o = 0; o < orders; o++) {
    snprintf(a, sizeof a, "%" PRIu64, s->free_per_order[o]);
    fprintf(out, BUDDY_COL, a);
  }
  fprintf(out, "\n\n");
  view_bytes(out, "free bytes", s->free_bytes);
  view_bytes(out, "largest free block", s->largest_free_block);
  view_largest_free_contiguous(out, s);
  fprintf(out, "\nfragmentation index per order (-1.000: a block is free; near 0: short of "
               "memory; near 1: fragmented)\n");
  fprintf(out, BUDDY_LABEL, "frag index");
  for (size_t o = 0; o < s->n_frag_index; o++)
    fprintf(out, BUDDY_COL, ctl_fmt_frag(a, sizeof a, s->frag_index[o]));
  fprintf(out, "\n");
}

void ctl_view_slabinfo(FILE *out, const Pinpool__V1__Stats *s) {
  fprintf(out, "slabinfo - pinpool %s\n", s->version && s->version[0] ? s->version : "");
  fprintf(out, "# name            <active_objs> <num_objs> <objsize> <objperslab> "
               "<pagesperslab> : slabdata <active_slabs> <num_slabs> : pinpool <full> "
               "<partial> <empty> <in_magazines> <waste%%>\n");
  for (size_t i = 0; i < s->n_caches; i++) {
    const Pinpool__V1__SlabInfo *k = s->caches[i];
    fprintf(out,
            "%-17s %6" PRIu64 " %6" PRIu64 " %6" PRIu32 " %4" PRIu32 " %4" PRIu32
            " : slabdata %6" PRIu64 " %6" PRIu64 " : pinpool %6" PRIu64 " %6" PRIu64
            " %6" PRIu64 " %6" PRIu64 " %5.1f%%\n",
            k->name ? k->name : "", k->active_objs, k->num_objs, k->object_size,
            k->objs_per_slab, k->pages_per_slab, k->active_slabs, k->num_slabs, k->full_slabs,
            k->partial_slabs, k->empty_slabs, k->objs_in_magazines, k->waste_permille / 10.0);
  }
}

static const char *fmt_since(char *buf, size_t len, uint64_t unix_ms) {
  time_t t = (time_t)(unix_ms / 1000);
  struct tm tm;

  if (unix_ms == 0 || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
    snprintf(buf, len, "-");
  return buf;
}

const char *ctl_fmt_session_state(char *buf, size_t len, const Pinpool__V1__ClientInfo *c,
                                  uint64_t now_unix_ms) {
  char d[32];
  uint64_t deadline = c->detached_deadline_unix_ms;

  if (!c->detached)
    snprintf(buf, len, "connected");
  else if (deadline == 0)
    snprintf(buf, len, "detached");
  else if (deadline <= now_unix_ms)
    snprintf(buf, len, "detached, grace period over");
  else /* rounded up: "0s" left would read as over */
    snprintf(buf, len, "detached, re-claimable for %s",
             ctl_fmt_duration(d, sizeof d, (deadline - now_unix_ms + 999) / 1000 * 1000));
  return buf;
}

static uint64_t now_unix_ms(void) {
  struct timespec ts;

  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ", 2 damaged buffers" after a session's state; "" when none. */
static const char *fmt_damaged(char *buf, size_t len, const Pinpool__V1__ClientInfo *c) {
  if (!c->damaged_buffers)
    buf[0] = '\0';
  else
    snprintf(buf, len, ", %" PRIu64 " damaged buffer%s", c->damaged_buffers,
             c->damaged_buffers == 1 ? "" : "s");
  return buf;
}

void ctl_view_clients(FILE *out, const Pinpool__V1__Stats *s) {
  ctl_view_clients_at(out, s, now_unix_ms());
}

void ctl_view_clients_at(FILE *out, const Pinpool__V1__Stats *s, uint64_t now_ms) {
  char a[32], b[32], ch[32], ca[32], st[64], dmg[40];

  /* HELD: what the session holds; CHARGED: what its uid pays (what --quota limits);
   * CACHED: of HELD, the blocks its client's buffer caches hold, as last reported. */
  fprintf(out, "%8s %8s %6s  %-16s %-19s %12s %12s %8s %10s %8s %9s  %s\n", "SESSION", "PID",
          "UID", "NAME", "CONNECTED", "HELD", "CHARGED", "BUFFERS", "CACHED", "OBJECTS",
          "REQUESTS", "STATE");
  for (size_t i = 0; i < s->n_clients; i++) {
    const Pinpool__V1__ClientInfo *c = s->clients[i];
    fprintf(out,
            "%8" PRIu64 " %8" PRIu32 " %6" PRIu32 "  %-16s %-19s %12s %12s %8" PRIu64
            " %10s %8" PRIu64 " %9" PRIu64 "  %s%s\n",
            c->session_id, c->pid, c->uid, c->name && c->name[0] ? c->name : "-",
            fmt_since(a, sizeof a, c->connected_since_unix_ms),
            ctl_fmt_size(b, sizeof b, c->bytes_held),
            ctl_fmt_size(ch, sizeof ch, c->bytes_charged), c->buffers,
            ctl_fmt_size(ca, sizeof ca, c->cached_bytes), c->objects, c->requests,
            ctl_fmt_session_state(st, sizeof st, c, now_ms), fmt_damaged(dmg, sizeof dmg, c));
  }
}

void ctl_view_buffers(FILE *out, const Pinpool__V1__Stats *s, const ctl_buffer_filter_t *f) {
  char a[32], phys[24], lost[32], dmg[64];

  /* CHARGED TO: the uid that pays for the block now (it follows the holders). */
  fprintf(out, "%8s %-14s %10s %-18s %-6s %10s %-20s %s\n", "HANDLE", "OFFSET", "SIZE", "PHYS",
          "CONTIG", "CHARGED TO", "HOLDERS", "NAME");
  for (size_t i = 0; i < s->n_buffers; i++) {
    const Pinpool__V1__BufferInfo *bi = s->buffers[i];
    char holders[256] = "", uid[16];
    size_t used = 0;

    if (!ctl_buffer_matches(bi, f)) continue;
    for (size_t h = 0; h < bi->n_holder_pids && used < sizeof holders; h++) {
      int n = snprintf(holders + used, sizeof holders - used, "%s%" PRIu32, h ? "," : "",
                       bi->holder_pids[h]);
      if (n < 0) break;
      used += (size_t)n;
    }
    /* Holders the daemon could not fit in one page: counted, not listed. */
    if (bi->nr_holders > bi->n_holder_pids && used < sizeof holders)
      snprintf(holders + used, sizeof holders - used, " +%zu",
               (size_t)bi->nr_holders - bi->n_holder_pids);
    snprintf(uid, sizeof uid, "%" PRIu32, bi->charged_uid);
    if (bi->phys_addr)
      snprintf(phys, sizeof phys, "0x%016" PRIx64, bi->phys_addr);
    else
      snprintf(phys, sizeof phys, "-");
    /* Its contents were (partly) lost to punched pages; some may still be. */
    if (bi->damaged || bi->lost_bytes)
      snprintf(dmg, sizeof dmg, "  DAMAGED (%s lost now)",
               ctl_fmt_size(lost, sizeof lost, bi->lost_bytes));
    else
      dmg[0] = '\0';
    fprintf(out, "%8" PRIu64 " 0x%012" PRIx64 " %10s %-18s %-6s %10s %-20s %s%s\n", bi->handle,
            bi->offset, ctl_fmt_size(a, sizeof a, bi->size), phys, yes_no(bi->contiguous), uid,
            holders[0] ? holders : "-", bi->name && bi->name[0] ? bi->name : "-", dmg);
  }
}

void ctl_view_shrink(FILE *out, const Pinpool__V1__ShrinkResult *r) {
  char a[32];

  fprintf(out,
          "shrink: released %" PRIu64 " slab%s, %s (%" PRIu64
          " bytes), to the buddy allocator; drained %" PRIu64 " object%s from magazines\n",
          r->slabs_released, r->slabs_released == 1 ? "" : "s",
          ctl_fmt_size(a, sizeof a, r->bytes_released), r->bytes_released, r->objects_drained,
          r->objects_drained == 1 ? "" : "s");
}

/* ---- JSON ---------------------------------------------------------------------------- */

/* json-c reports allocation failure by returning NULL from every constructor, and
 * json_object_object_add ignores a NULL value; so we build freely and check once.  Keys
 * are string literals, each added once to its object: json-c need neither copy them nor
 * look for them first (a third of the time of 100,000 slabinfo rows). */
#define PUT_FLAGS (JSON_C_OBJECT_ADD_KEY_IS_NEW | JSON_C_OBJECT_ADD_CONSTANT_KEY)
static void put(json_object *o, const char *k, json_object *v) {
  json_object_object_add_ex(o, k, v, PUT_FLAGS);
}
static void put_u64(json_object *o, const char *k, uint64_t v) {
  put(o, k, json_object_new_uint64(v));
}
static void put_i64(json_object *o, const char *k, int64_t v) {
  put(o, k, json_object_new_int64(v));
}
static void put_bool(json_object *o, const char *k, bool v) {
  put(o, k, json_object_new_boolean(v));
}
static void put_str(json_object *o, const char *k, const char *v) {
  put(o, k, json_object_new_string(v ? v : ""));
}

json_object *ctl_json_pools(const Pinpool__V1__Stats *s) {
  json_object *o = json_object_new_object(), *arr = json_object_new_array();

  if (!o || !arr) goto fail;
  for (size_t i = 0; i < s->n_pools; i++) {
    const Pinpool__V1__PoolInfo *p = s->pools[i];
    json_object *e = json_object_new_object();
    if (!e) goto fail;
    put_u64(e, "id", p->id);
    put_str(e, "name", p->name);
    put_u64(e, "region_size", p->region_size);
    put_u64(e, "page_size", p->page_size);
    put_bool(e, "hugepages", p->hugepages);
    put_i64(e, "numa_node", p->numa_node);
    put_u64(e, "quota", p->quota);
    put_u64(e, "used_bytes", p->used_bytes);
    put_u64(e, "free_bytes", p->free_bytes);
    put_str(e, "writers", p->writers);
    put_str(e, "readers", p->readers);
    json_object_array_add(arr, e);
  }
  json_object_object_add(o, "pools", arr);
  return o;
fail:
  json_object_put(arr);
  json_object_put(o);
  return NULL;
}

json_object *ctl_json_status(const Pinpool__V1__Stats *s) {
  json_object *o = json_object_new_object();

  if (!o) return NULL;
  put_str(o, "version", s->version);
  if (s->n_pools > 1) {
    put_u64(o, "pool", s->pool);
    for (size_t i = 0; i < s->n_pools; i++)
      if (s->pools[i]->id == s->pool) put_str(o, "pool_name", s->pools[i]->name);
  }
  put_u64(o, "uptime_ms", s->uptime_ms);
  put_u64(o, "region_size", s->region_size);
  put_u64(o, "page_size", s->page_size);
  put_u64(o, "min_block", ctl_min_block(s));
  put_bool(o, "hugepages", s->hugepages);
  put_bool(o, "physical_addresses", s->physical_addresses);
  put_u64(o, "used_bytes", s->used_bytes);
  put_u64(o, "free_bytes", s->free_bytes);
  put_u64(o, "cached_bytes", s->cached_bytes);
  put_u64(o, "largest_free_block", s->largest_free_block);
  put_u64(o, "largest_free_contiguous", s->largest_free_contiguous);
  put_u64(o, "largest_contiguous_run", s->largest_contiguous_run);
  put_u64(o, "nr_clients", s->nr_clients);
  put_u64(o, "max_clients", s->max_clients);
  put_u64(o, "nr_buffers", s->nr_buffers);
  put_u64(o, "nr_caches", ctl_nr_caches(s));
  put_u64(o, "punched_bytes", s->punched_bytes);
  put_u64(o, "lost_bytes", s->lost_bytes);
  put_u64(o, "quarantined_bytes", s->quarantined_bytes);
  put_u64(o, "damaged_buffers", s->damaged_buffers);
  put_u64(o, "objects_set_aside", s->objects_set_aside);
  if (s->runs) json_object_object_add(o, "runs", ctl_json_runs(s));
  return o;
}

json_object *ctl_json_runs(const Pinpool__V1__Stats *s) {
  const Pinpool__V1__PhysRuns *r = s->runs;
  json_object *o, *b;

  if (!r) return NULL;
  o = json_object_new_object();
  b = json_object_new_array();
  if (!o || !b) {
    json_object_put(b);
    json_object_put(o);
    return NULL;
  }
  put_bool(o, "known", r->known);
  put_u64(o, "nr_runs", r->nr_runs);
  put_u64(o, "longest", r->longest);
  put_u64(o, "pages", r->pages);
  put_u64(o, "descents", r->descents);
  for (size_t k = 0; k < r->n_buckets; k++)
    json_object_array_add(b, json_object_new_uint64(r->buckets[k]));
  json_object_object_add(o, "buckets", b);
  put_str(o, "sort", sort_name(r->sort));
  put_str(o, "sort_why", r->sort_why);
  put_u64(o, "sort_placed", r->sort_placed);
  put_u64(o, "sort_elapsed_ms", r->sort_elapsed_ms);
  put_u64(o, "unsorted_nr_runs", r->unsorted_nr_runs);
  put_u64(o, "unsorted_longest", r->unsorted_longest);
  return o;
}

json_object *ctl_json_buddyinfo(const Pinpool__V1__Stats *s) {
  json_object *o = json_object_new_object(), *orders = json_object_new_array();

  if (!o || !orders) goto fail;
  put_u64(o, "page_size", s->page_size);
  put_u64(o, "min_block", ctl_min_block(s));
  put_u64(o, "max_order", s->max_order);
  for (size_t i = 0; i < s->n_free_per_order; i++) {
    json_object *e = json_object_new_object();
    if (!e) goto fail;
    put_u64(e, "order", i);
    put_u64(e, "block_size", ctl_min_block(s) << i);
    put_u64(e, "free_blocks", s->free_per_order[i]);
    if (i < s->n_frag_index) {
      put_i64(e, "frag_index_milli", s->frag_index[i]);
      json_object_object_add(e, "frag_index",
                             json_object_new_double(s->frag_index[i] / 1000.0));
    }
    json_object_array_add(orders, e);
  }
  json_object_object_add(o, "orders", orders);
  orders = NULL;
  put_u64(o, "free_bytes", s->free_bytes);
  put_u64(o, "largest_free_block", s->largest_free_block);
  put_u64(o, "largest_free_contiguous", s->largest_free_contiguous);
  return o;
fail:
  json_object_put(orders);
  json_object_put(o);
  return NULL;
}

json_object *ctl_json_slabinfo(const Pinpool__V1__Stats *s) {
  json_object *o = json_object_new_object(), *caches = json_object_new_array();

  if (!o || !caches) goto fail;
  put_u64(o, "page_size", s->page_size);
  put_u64(o, "min_block", ctl_min_block(s));
  put_u64(o, "nr_caches", ctl_nr_caches(s));
  for (size_t i = 0; i < s->n_caches; i++) {
    const Pinpool__V1__SlabInfo *k = s->caches[i];
    json_object *e = json_object_new_object();
    if (!e) goto fail;
    put_str(e, "name", k->name);
    put_u64(e, "cache_id", k->cache_id);
    put_u64(e, "active_objs", k->active_objs);
    put_u64(e, "num_objs", k->num_objs);
    put_u64(e, "object_size", k->object_size);
    put_u64(e, "align", k->align);
    put_u64(e, "objs_per_slab", k->objs_per_slab);
    put_u64(e, "pages_per_slab", k->pages_per_slab);
    put_u64(e, "slab_bytes", ctl_slab_bytes(s, k));
    put_u64(e, "active_slabs", k->active_slabs);
    put_u64(e, "num_slabs", k->num_slabs);
    put_u64(e, "full_slabs", k->full_slabs);
    put_u64(e, "partial_slabs", k->partial_slabs);
    put_u64(e, "empty_slabs", k->empty_slabs);
    put_u64(e, "objs_in_magazines", k->objs_in_magazines);
    put_u64(e, "waste_permille", k->waste_permille);
    put_u64(e, "cache_bytes", ctl_cache_bytes(s, k));
    json_object_array_add(caches, e);
  }
  json_object_object_add(o, "caches", caches);
  return o;
fail:
  json_object_put(caches);
  json_object_put(o);
  return NULL;
}

json_object *ctl_json_clients(const Pinpool__V1__Stats *s) {
  json_object *o = json_object_new_object(), *list = json_object_new_array();

  if (!o || !list) goto fail;
  put_u64(o, "nr_clients", s->nr_clients);
  for (size_t i = 0; i < s->n_clients; i++) {
    const Pinpool__V1__ClientInfo *c = s->clients[i];
    json_object *e = json_object_new_object();
    if (!e) goto fail;
    put_u64(e, "session_id", c->session_id);
    put_u64(e, "pid", c->pid);
    put_u64(e, "uid", c->uid);
    put_u64(e, "gid", c->gid);
    put_str(e, "name", c->name);
    put_u64(e, "connected_since_unix_ms", c->connected_since_unix_ms);
    put_u64(e, "bytes_held", c->bytes_held);
    put_u64(e, "bytes_charged", c->bytes_charged);
    put_u64(e, "buffers", c->buffers);
    put_u64(e, "objects", c->objects);
    put_u64(e, "requests", c->requests);
    put_bool(e, "detached", c->detached);
    put_u64(e, "detached_deadline_unix_ms", c->detached_deadline_unix_ms);
    put_u64(e, "damaged_buffers", c->damaged_buffers);
    put_u64(e, "cached_buffers", c->cached_buffers);
    put_u64(e, "cached_bytes", c->cached_bytes);
    json_object_array_add(list, e);
  }
  json_object_object_add(o, "clients", list);
  return o;
fail:
  json_object_put(list);
  json_object_put(o);
  return NULL;
}

json_object *ctl_json_buffers(const Pinpool__V1__Stats *s, const ctl_buffer_filter_t *f) {
  json_object *o = json_object_new_object(), *list = json_object_new_array();

  if (!o || !list) goto fail;
  put_u64(o, "nr_buffers", s->nr_buffers);
  for (size_t i = 0; i < s->n_buffers; i++) {
    const Pinpool__V1__BufferInfo *b = s->buffers[i];
    json_object *e, *pids, *sessions;
    if (!ctl_buffer_matches(b, f)) continue;
    if (!(e = json_object_new_object())) goto fail;
    json_object_array_add(list, e);
    put_u64(e, "handle", b->handle);
    put_u64(e, "offset", b->offset);
    put_u64(e, "size", b->size);
    put_u64(e, "phys_addr", b->phys_addr);
    put_bool(e, "contiguous", b->contiguous);
    put_str(e, "name", b->name);
    put_u64(e, "charged_uid", b->charged_uid);
    /* A daemon before nr_holders lists them all. */
    put_u64(e, "nr_holders", b->nr_holders ? b->nr_holders : b->n_holder_pids);
    put_bool(e, "damaged", b->damaged);
    put_u64(e, "lost_bytes", b->lost_bytes);
    if (!(pids = json_object_new_array())) goto fail;
    for (size_t h = 0; h < b->n_holder_pids; h++)
      json_object_array_add(pids, json_object_new_uint64(b->holder_pids[h]));
    json_object_object_add(e, "holder_pids", pids);
    if (!(sessions = json_object_new_array())) goto fail;
    for (size_t h = 0; h < b->n_holder_sessions; h++)
      json_object_array_add(sessions, json_object_new_uint64(b->holder_sessions[h]));
    json_object_object_add(e, "holder_sessions", sessions);
  }
  json_object_object_add(o, "buffers", list);
  return o;
fail:
  json_object_put(list);
  json_object_put(o);
  return NULL;
}

json_object *ctl_json_shrink(const Pinpool__V1__ShrinkResult *r) {
  json_object *o = json_object_new_object();

  if (!o) return NULL;
  put_u64(o, "slabs_released", r->slabs_released);
  put_u64(o, "bytes_released", r->bytes_released);
  put_u64(o, "objects_drained", r->objects_drained);
  return o;
}
