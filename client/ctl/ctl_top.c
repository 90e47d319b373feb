/*
 * ctl_top.c — `pinpoolctl top`: the daemon's totals, caches and clients, live.
 *
 * What: every interval (one second) a whole snapshot — the caches and clients lists, page
 * after page (ctl_snap.c) — then a full redraw with ncurses: totals on top, then the
 * caches (slabtop's columns) sorted by the memory their slabs occupy, then the clients
 * sorted by the bytes they hold, with what their uids are charged.  'q' quits; a resize redraws
 * the last snapshot at once.  Lines are cut at the terminal's width rather than wrapped,
 * and each section gets a share of the rows so neither pushes the other off screen.
 *
 * Why ncurses and not escape codes by hand: it knows the terminal (terminfo), sends only
 * what changed, and restores the terminal on SIGINT/SIGTERM by itself.  We use newterm()
 * rather than initscr() because initscr() exits the process when the terminal is unusable;
 * newterm() returns NULL and we can say why.
 *
 * Waiting: getch() with a timeout equal to what is left of the interval, so keys are
 * answered at once and refreshes stay one interval apart however often keys arrive.
 *
 * No locks: one thread.  The snapshot shown is owned here and freed on the next refresh.
 * With 100,000 caches a refresh is about a hundred replies; the sort is O(n log n).
 */
#include "ctl_top.h"

#include <curses.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl_view.h"
#include "frame.h"

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One line at row y, cut at the screen's width (printw would wrap). */
static void top_line(int y, int attr, const char *fmt, ...) {
  char buf[512];
  va_list ap;

  if (y >= LINES) return;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (attr) attron(attr);
  mvaddnstr(y, 0, buf, COLS);
  if (attr) {
    /* Reverse video across the whole width, as slabtop does for its column heads. */
    for (int x = (int)strlen(buf); x < COLS; x++)
      mvaddch(y, x, ' ');
    attroff(attr);
  }
}

/* The snapshot being sorted: qsort's comparator has no context argument. */
static const Pinpool__V1__Stats *cmp_stats;

/* Largest first by the bytes the cache's slabs occupy. */
static int cache_cmp(const void *a, const void *b) {
  const Pinpool__V1__SlabInfo *x = *(Pinpool__V1__SlabInfo *const *)a;
  const Pinpool__V1__SlabInfo *y = *(Pinpool__V1__SlabInfo *const *)b;
  uint64_t px = ctl_cache_bytes(cmp_stats, x), py = ctl_cache_bytes(cmp_stats, y);

  if (px != py) return px > py ? -1 : 1;
  return strcmp(x->name ? x->name : "", y->name ? y->name : "");
}

static int client_cmp(const void *a, const void *b) {
  const Pinpool__V1__ClientInfo *x = *(Pinpool__V1__ClientInfo *const *)a;
  const Pinpool__V1__ClientInfo *y = *(Pinpool__V1__ClientInfo *const *)b;

  if (x->bytes_held != y->bytes_held) return x->bytes_held > y->bytes_held ? -1 : 1;
  return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static void top_draw(const Pinpool__V1__Stats *s, unsigned refreshes) {
  Pinpool__V1__SlabInfo **caches = NULL;
  Pinpool__V1__ClientInfo **clients = NULL;
  char a[32], b[32], c[32], d[32], e[32], clock[16];
  time_t t = time(NULL);
  struct tm tm;
  int y = 0, room, cache_rows;

  erase();
  if (!localtime_r(&t, &tm) || !strftime(clock, sizeof clock, "%H:%M:%S", &tm)) clock[0] = '\0';
  top_line(y++, A_BOLD, "pinpool top - pinpoold %s, up %s, %s, refresh %u (q quits)",
           s->version ? s->version : "?", ctl_fmt_duration(a, sizeof a, s->uptime_ms), clock,
           refreshes);
  top_line(y++, 0,
           "region %s, page %s, unit %s, hugepages %s, physical addresses %s (longest run %s)",
           ctl_fmt_size(a, sizeof a, s->region_size), ctl_fmt_size(b, sizeof b, s->page_size),
           ctl_fmt_size(c, sizeof c, ctl_min_block(s)), s->hugepages ? "yes" : "no",
           s->physical_addresses ? "yes" : "no",
           ctl_fmt_size(d, sizeof d, s->largest_contiguous_run));
  top_line(y++, 0, "used %s, free %s, cached %s, largest free block %s (contiguous %s)",
           ctl_fmt_size(a, sizeof a, s->used_bytes), ctl_fmt_size(b, sizeof b, s->free_bytes),
           ctl_fmt_size(c, sizeof c, s->cached_bytes),
           ctl_fmt_size(d, sizeof d, s->largest_free_block),
           ctl_fmt_size(e, sizeof e, s->largest_free_contiguous));
  top_line(y++, 0, "clients %" PRIu32 "%s%s, buffers %" PRIu64 ", caches %" PRIu64,
           s->nr_clients, s->max_clients ? "/" : "",
           s->max_clients ? (snprintf(d, sizeof d, "%" PRIu32, s->max_clients), d) : "",
           s->nr_buffers, ctl_nr_caches(s));
  y++;

  /* Whatever the allocations cannot get, the screen shows without sorting. */
  if (s->n_caches && (caches = malloc(s->n_caches * sizeof *caches))) {
    memcpy(caches, s->caches, s->n_caches * sizeof *caches);
    cmp_stats = s;
    qsort(caches, s->n_caches, sizeof *caches, cache_cmp);
  }
  if (s->n_clients && (clients = malloc(s->n_clients * sizeof *clients))) {
    memcpy(clients, s->clients, s->n_clients * sizeof *clients);
    qsort(clients, s->n_clients, sizeof *clients, client_cmp);
  }

  /* Two heads and a blank line between the sections; caches get up to half the rest. */
  room = LINES - y - 3;
  cache_rows = (int)s->n_caches < room / 2 ? (int)s->n_caches : room / 2;
  if (cache_rows < 0) cache_rows = 0;
  top_line(y++, A_REVERSE, "%8s %8s %4s %8s %7s %8s %8s %10s  %s", "OBJS", "ACTIVE", "USE",
           "OBJ SIZE", "SLABS", "OBJ/SLAB", "MAGAZINE", "CACHE SIZE", "NAME");
  for (int i = 0; i < cache_rows; i++) {
    const Pinpool__V1__SlabInfo *k = caches ? caches[i] : s->caches[i];
    unsigned use = k->num_objs ? (unsigned)(k->active_objs * 100 / k->num_objs) : 0;
    top_line(y++, 0,
             "%8" PRIu64 " %8" PRIu64 " %3u%% %8s %7" PRIu64 " %8" PRIu32 " %8" PRIu64
             " %10s  %s",
             k->num_objs, k->active_objs, use, ctl_fmt_size(a, sizeof a, k->object_size),
             k->num_slabs, k->objs_per_slab, k->objs_in_magazines,
             ctl_fmt_size(b, sizeof b, ctl_cache_bytes(s, k)), k->name ? k->name : "");
  }
  y++;
  top_line(y++, A_REVERSE, "%8s %8s %6s %12s %12s %8s %8s %9s  %s", "PID", "SESSION", "UID",
           "HELD", "CHARGED", "BUFFERS", "OBJECTS", "REQUESTS", "NAME");
  for (size_t i = 0; i < s->n_clients && y < LINES; i++) {
    const Pinpool__V1__ClientInfo *k = clients ? clients[i] : s->clients[i];
    top_line(y++, 0,
             "%8" PRIu32 " %8" PRIu64 " %6" PRIu32 " %12s %12s %8" PRIu64 " %8" PRIu64
             " %9" PRIu64 "  %s",
             k->pid, k->session_id, k->uid, ctl_fmt_size(a, sizeof a, k->bytes_held),
             ctl_fmt_size(b, sizeof b, k->bytes_charged), k->buffers, k->objects, k->requests,
             k->name && k->name[0] ? k->name : "-");
  }
  free(caches);
  free(clients);
  refresh();
}

int ctl_top_run(ctl_conn_t *c, unsigned interval_ms) {
  ctl_snapshot_t shown = {0};
  SCREEN *screen;
  unsigned refreshes = 0;
  int rc = 0;

  if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
    snprintf(c->rpc.why, sizeof c->rpc.why, "top needs a terminal on stdin and stdout");
    return PP_EINVAL;
  }
  screen = newterm(NULL, stdout, stdin);
  if (!screen) {
    snprintf(c->rpc.why, sizeof c->rpc.why, "cannot drive the terminal (TERM=%s)",
             getenv("TERM") ? getenv("TERM") : "unset");
    return PP_EINVAL;
  }
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  (void)curs_set(0); /* some terminals cannot hide the cursor; that is fine */

  for (;;) {
    ctl_snapshot_t next;
    uint64_t deadline;

    rc = ctl_conn_snapshot(c, CTL_LIST_CACHES | CTL_LIST_CLIENTS, &next);
    if (rc < 0) break;
    ctl_snapshot_free(&shown);
    shown = next;
    top_draw(&shown.stats, ++refreshes);

    deadline = now_ms() + interval_ms;
    for (uint64_t t = now_ms(); t < deadline; t = now_ms()) {
      int ch;
      timeout((int)(deadline - t));
      ch = getch();
      if (ch == 'q' || ch == 'Q') goto done;
      if (ch == KEY_RESIZE) top_draw(&shown.stats, refreshes);
    }
  }
done:
  endwin();
  delscreen(screen);
  ctl_snapshot_free(&shown);
  return rc;
}
