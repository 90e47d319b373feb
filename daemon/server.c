/*
 * server.c — pinpoold's event loop (libuv): start-up, signals, systemd notification,
 * shutdown, and what the loop shares between connections: deadlines, the memory of queued
 * replies, and giving memory back.  What happens in between lives by concern: listen.c
 * (the listening socket and accepting), conn.c (a connection's I/O, framing, replies,
 * back-pressure, closing), handshake.c (Hello/Welcome, client slots, per-uid limits), and
 * handlers.c (requests, through the ledger).
 *
 * The server owns what the loop thread shares between connections: the list of sessions
 * past Hello (what --max-clients counts and Stats.clients shows), the counters of
 * connections that have not said Hello and the per-uid counts, the list of connections
 * (for shutdown), the one read buffer every connection reads into, the total of queued
 * reply memory (--max-queued), the deadline queues, and the handlers with their reply
 * arena.  The ledger it serves is main's: created before the loop and destroyed after it.
 *
 * Deadlines.  Every timeout of a connection (hello, refusal, frame, linger, write; see
 * conn.c) is one of a few kinds, and all connections of a kind share its timeout, so a
 * FIFO queue per kind is sorted by deadline.  One uv_timer waits for the earliest head
 * of all queues; when it fires, each queue's expired heads are taken off and handed to
 * conn_expired.  Adding is O(1) (append; the timer is moved only when the new entry is
 * now the earliest), removing is O(1) (the timer is left to fire early and find nothing),
 * and an idle connection carries two links instead of a timer handle (16 + 16 + 8 bytes
 * against 152 for a uv_timer_t).  A request that arrives and is answered at once touches
 * no queue.
 *
 * Descriptors.  At start-up RLIMIT_NOFILE's soft limit is raised to the hard limit (what
 * we got is logged), so thousands of clients fit; when it is still below what the
 * connection bounds may need (--max-clients sessions + the pending bound + 64 refusals in
 * progress + a few of our own), a warning says so.  Past the limit accept() fails and
 * listen.c closes the waiting connections at once and pauses accepting briefly: the
 * daemon neither spins nor dies, and serves again as soon as descriptors come back.
 *
 * Giving memory back.  Connections cost small heap blocks; when many leave, glibc keeps
 * the freed memory.  When the number of connections has fallen to half of its peak since
 * the last trim, by at least TRIM_MIN_DROP, malloc_trim(0) runs (which also releases free
 * pages in the middle of the heap), TRIM_DELAY_MS after the drop so that one wave of
 * departures costs one trim, and never more often than every TRIM_EVERY_MS.
 *
 * Holes.  Every --scan-interval ms (unless 0) a timer runs holes_pass() (holes.c): the
 * whole region is checked for pages clients punched out, who was hit is logged, and lost
 * pages are repaired.  Like the other timers it does not keep the loop alive.
 *
 * systemd.  READY=1 once the region is mapped (the ledger exists before we are called)
 * and the socket listens — after a reload, once the connections are taken over, which
 * ends the RELOADING=1 the old image sent; STATUS= lines when clients come and go;
 * STOPPING=1 at shutdown.
 *
 * Reload (SIGHUP): reload.c executes the daemon again with every descriptor; server_run of
 * the new image takes them over (listener_take, reload_adopt).  SIGHUP is blocked from
 * main's start until its handler is in place here, so one that comes during start-up waits.
 *
 * Shutdown (SIGTERM/SIGINT): STOPPING=1, close the listener (unlink our socket), then
 * each connection stops reading, its queued replies are flushed (bounded by the linger
 * deadline) and its session released; uv_run returns when the last handle has closed.
 * SIGPIPE is ignored: a vanished peer is an EPIPE on one connection, not the daemon's
 * death.
 *
 * Locks: none; everything runs on the loop thread.
 */
#include "server_int.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define CONN_CLOSE_LINGER_MS 2000u /* a closing connection's last replies get this long */
#define REJECT_LINGER_MS 2000u     /* a refused connection's first frame must come within */
#define TRIM_MIN_DROP 256u         /* connections that must have left before a trim */
#define TRIM_DELAY_MS 200u
#define TRIM_EVERY_MS 1000u
#define SPARE_FDS 32u /* descriptors of our own: stdio, region, epoll, signals, spare ... */

/* ---- deadlines ------------------------------------------------------------------------ */

static int dl_side(dl_kind_t kind) {
  return kind == DL_WRITE ? DL_SIDE_OUT : DL_SIDE_IN;
}

static uint64_t dl_timeout(const server_t *srv, dl_kind_t kind) {
  switch (kind) {
  case DL_HELLO: return srv->cfg->hello_timeout_ms;
  case DL_REJECT: return REJECT_LINGER_MS;
  case DL_FRAME: return srv->cfg->frame_timeout_ms;
  case DL_WRITE: return srv->cfg->write_timeout_ms;
  case DL_LINGER:
  default: return CONN_CLOSE_LINGER_MS;
  }
}

static void dl_on_timer(uv_timer_t *t);

/* Wait for the earliest head (or for nothing). */
static void dl_arm(server_t *srv) {
  uint64_t at = 0, now = uv_now(&srv->loop);
  for (int k = DL_NONE + 1; k < DL_NKINDS; k++) {
    conn_t *h = srv->dl[k].head;
    if (h && (at == 0 || h->dl[dl_side(k)].at < at)) at = h->dl[dl_side(k)].at;
  }
  if (at == 0) {
    uv_timer_stop(&srv->dl_timer);
    srv->dl_timer_at = 0;
    return;
  }
  if (at == srv->dl_timer_at) return;
  srv->dl_timer_at = at;
  uv_timer_start(&srv->dl_timer, dl_on_timer, at > now ? at - now : 0, 0);
}

void server_dl_remove(conn_t *c, int side) {
  server_t *srv = c->srv;
  dl_link_t *l = &c->dl[side];
  dl_queue_t *q;

  if (c->dl_kind[side] == DL_NONE) return;
  q = &srv->dl[c->dl_kind[side]];
  if (l->prev)
    l->prev->dl[side].next = l->next;
  else
    q->head = l->next;
  if (l->next)
    l->next->dl[side].prev = l->prev;
  else
    q->tail = l->prev;
  l->prev = l->next = NULL;
  c->dl_kind[side] = DL_NONE;
}

void server_dl_push(conn_t *c, dl_kind_t kind) {
  server_t *srv = c->srv;
  int side = dl_side(kind);
  dl_link_t *l = &c->dl[side];
  dl_queue_t *q = &srv->dl[kind];

  server_dl_remove(c, side);
  l->at = uv_now(&srv->loop) + dl_timeout(srv, kind);
  l->next = NULL;
  l->prev = q->tail;
  if (q->tail)
    q->tail->dl[side].next = c;
  else
    q->head = c;
  q->tail = c;
  c->dl_kind[side] = (uint8_t)kind;
  if (srv->dl_timer_at == 0 || l->at < srv->dl_timer_at) dl_arm(srv);
}

static void dl_on_timer(uv_timer_t *t) {
  server_t *srv = t->data;
  uint64_t now = uv_now(&srv->loop);

  srv->dl_timer_at = 0;
  for (int k = DL_NONE + 1; k < DL_NKINDS; k++) {
    int side = dl_side(k);
    conn_t *c;
    while ((c = srv->dl[k].head) && c->dl[side].at <= now) {
      server_dl_remove(c, side);
      conn_expired(c, (dl_kind_t)k);
    }
  }
  dl_arm(srv);
}

/* ---- memory --------------------------------------------------------------------------- */

static void on_trim(uv_timer_t *t) {
  server_t *srv = t->data;
  uint32_t peak = srv->nconns_peak;
  malloc_trim(0);
  srv->trim_last_ms = uv_now(&srv->loop);
  srv->nconns_peak = srv->nconns;
  log_debug("%u connections left (%u of a peak of %u remain): memory given back",
            peak - srv->nconns, srv->nconns, peak);
}

void server_conn_gone(server_t *srv) {
  uint64_t now, delay = TRIM_DELAY_MS;
  if (srv->nconns_peak - srv->nconns < TRIM_MIN_DROP || srv->nconns > srv->nconns_peak / 2)
    return;
  if (uv_is_active((uv_handle_t *)&srv->trim_timer)) return;
  now = uv_now(&srv->loop);
  if (srv->trim_last_ms && now - srv->trim_last_ms < TRIM_EVERY_MS &&
      srv->trim_last_ms + TRIM_EVERY_MS - now > delay)
    delay = srv->trim_last_ms + TRIM_EVERY_MS - now;
  uv_timer_start(&srv->trim_timer, on_trim, delay, 0);
}

static void on_holes(uv_timer_t *t) {
  server_t *srv = t->data;
  for (uint32_t i = 0; i < srv->pools->n; i++)
    holes_pass(&srv->holes[i]);
}

/* ---- descriptors ---------------------------------------------------------------------- */

/* RLIMIT_NOFILE's soft limit up to the hard one; a warning when the bounds on connections
 * could need more than we have. */
static void raise_nofile(const server_t *srv) {
  const server_config_t *cfg = srv->cfg;
  uint64_t need = (uint64_t)cfg->max_clients + (cfg->max_clients > 64 ? cfg->max_clients : 64) +
                  64 + SPARE_FDS;
  struct rlimit rl;

  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    log_warning("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    return;
  }
  if (rl.rlim_cur < rl.rlim_max) {
    struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
    if (want.rlim_cur == RLIM_INFINITY) { /* the kernel caps it at fs.nr_open */
      FILE *f = fopen("/proc/sys/fs/nr_open", "re");
      unsigned long long n = 0;
      if (f && fscanf(f, "%llu", &n) == 1 && n > rl.rlim_cur) want.rlim_cur = (rlim_t)n;
      if (f) fclose(f);
    }
    if (want.rlim_cur != RLIM_INFINITY && setrlimit(RLIMIT_NOFILE, &want) == 0)
      rl.rlim_cur = want.rlim_cur;
    else
      log_warning("cannot raise RLIMIT_NOFILE from %llu to %llu: %s",
                  (unsigned long long)rl.rlim_cur, (unsigned long long)want.rlim_cur,
                  strerror(errno));
  }
  log_info("file descriptors: up to %llu (hard limit %llu)", (unsigned long long)rl.rlim_cur,
           (unsigned long long)rl.rlim_max);
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
    log_warning("RLIMIT_NOFILE %llu is below the %" PRIu64 " descriptors --max-clients %u may "
                "need: past it, new connections are closed at once until some leave",
                (unsigned long long)rl.rlim_cur, need, cfg->max_clients);
}

/* ---- restart survival: detached sessions, the watchdog --------------------------------- */

static uint64_t unix_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_grace(uv_timer_t *t);

void server_grace_arm(server_t *srv) {
  uint64_t now = uv_now(&srv->loop), unix_now = unix_now_ms(), wait = 0;
  bool any = false;
  for (const session_t *s = srv->sessions.head; s; s = s->next) {
    if (!s->detached) continue;
    /* Both clocks must have reached the deadline: the loop's for the timer, Unix time for
     * what Stats promised (detached_deadline_unix_ms). */
    const session_keep_t *k = s->keep; /* a detached session has one */
    uint64_t a = k->detached_deadline_loop_ms > now ? k->detached_deadline_loop_ms - now : 0;
    uint64_t b =
        k->detached_deadline_unix_ms > unix_now ? k->detached_deadline_unix_ms - unix_now : 0;
    uint64_t w = a > b ? a : b;
    if (!any || w < wait) wait = w;
    any = true;
  }
  if (!any) {
    uv_timer_stop(&srv->grace_timer);
    return;
  }
  uv_timer_start(&srv->grace_timer, on_grace, wait, 0);
}

/* Sessions not re-claimed by their deadline go as a disconnect does (journaled). */
static void on_grace(uv_timer_t *t) {
  server_t *srv = t->data;
  uint64_t now = uv_now(&srv->loop), unix_now = unix_now_ms();
  session_t *s, *next;
  for (s = srv->sessions.head; s; s = next) {
    next = s->next;
    if (!s->detached || s->keep->detached_deadline_loop_ms > now ||
        s->keep->detached_deadline_unix_ms > unix_now)
      continue;
    log_notice("session %" PRIu64 " '%s' (pid %d uid %u) was not re-claimed within %u ms of "
               "the restart: its holdings are released",
               s->id, s->name, (int)s->pid, (unsigned)s->uid, srv->grace_ms);
    handshake_forget(srv, s);
    pools_session_release(srv->pools, s);
    persist_release(srv->persist, srv->ledger, s);
    session_destroy(s);
  }
  server_status(srv);
  server_grace_arm(srv);
}

/* The restored sessions join the list, detached, each with the same deadline (after a
 * reload, reload_adopt then attaches those whose connections were handed on). */
static int take_restored(server_t *srv, bool reload) {
  session_t *s = persist_take_restored(srv->persist), *next;
  uint64_t loop_at = uv_now(&srv->loop) + srv->grace_ms,
           unix_at = unix_now_ms() + srv->grace_ms;
  unsigned n = 0;
  int rc = 0;
  for (; s; s = next) {
    next = s->next;
    s->next = s->prev = NULL;
    s->keep->detached_deadline_loop_ms = loop_at; /* session_restore made it */
    s->keep->detached_deadline_unix_ms = unix_at;
    s->admin = session_is_admin(s->uid, s->gid, srv->cfg->admin_gid);
    if (!rc && (rc = handshake_restore(srv, s))) {
      /* No memory to count it: the daemon cannot start, and the journal keeps every
       * session for the next one. */
      log_err("cannot take back session %" PRIu64 ": %s", s->id, pp_strerror(rc));
      persist_stop(srv->persist);
    }
    if (rc) {
      if (s->holder) ledger_holder_release(srv->ledger, s->holder);
      session_destroy(s);
      continue;
    }
    n++;
  }
  if (n && !reload)
    log_notice("%u session%s from before the restart wait %u ms for their clients", n,
               n == 1 ? "" : "s", srv->grace_ms);
  /* Their attachments of the other pools, from those pools' journals. */
  pools_take_restored(srv->pools, &srv->sessions);
  server_grace_arm(srv);
  return rc;
}

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  sd_notify(0, "WATCHDOG=1");
}

void server_request_done(server_t *srv) {
  persist_tick(srv->persist);
  pools_tick(srv->pools);
  if (srv->cfg->hang_after_requests && ++srv->requests == srv->cfg->hang_after_requests) {
    log_notice("PINPOOLD_TEST_HANG_AFTER_REQUESTS=%" PRIu64 ": the loop hangs now (for tests "
               "of the watchdog)",
               srv->cfg->hang_after_requests);
    for (;;)
      pause();
  }
}

/* ---- status, stop, run ---------------------------------------------------------------- */

void server_status(server_t *srv) {
  if (!srv->notify) return;
  sd_notifyf(0, "STATUS=%u client%s, %" PRIu64 " of %" PRIu64 " bytes free", srv->sessions.n,
             srv->sessions.n == 1 ? "" : "s", ledger_free_bytes(srv->ledger),
             region_size(ledger_region(srv->ledger)));
}

static void server_stop(server_t *srv, const char *why) {
  conn_t *c, *next;

  if (srv->stopping) return;
  srv->stopping = true;
  log_notice("%s: shutting down", why);
  if (srv->notify) sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
  /* The journal must say what the ledger holds before the sessions go; from here on
   * nothing is journaled, so the journal keeps them for a daemon started after us. */
  char jwhy[512];
  if (persist_check(srv->persist, jwhy, sizeof jwhy)) {
    log_err("the journal does not match the ledger: %s", jwhy);
    persist_abandon(srv->persist, "the journal does not match the ledger");
    srv->exit_rc = PP_ECORRUPT;
  }
  for (uint32_t i = 1; i < srv->pools->n; i++) {
    pool_t *p = &srv->pools->v[i];
    if (p->persist && persist_check(p->persist, jwhy, sizeof jwhy)) {
      log_err("pool '%s': the journal does not match the ledger: %s", p->name, jwhy);
      persist_abandon(p->persist, "the journal does not match the ledger");
      srv->exit_rc = PP_ECORRUPT;
    }
  }
  persist_stop(srv->persist);
  pools_stop(srv->pools);
  uv_timer_stop(&srv->grace_timer);
  uv_timer_stop(&srv->watchdog);
  listener_stop(&srv->listener);
  /* Keep catching signals (a second SIGTERM must not kill us mid-flush), but let the
   * loop end without them. */
  uv_unref((uv_handle_t *)&srv->sigterm);
  uv_unref((uv_handle_t *)&srv->sigint);
  uv_unref((uv_handle_t *)&srv->sighup);
  for (c = srv->conns; c; c = next) {
    next = c->next;
    /* Replies already queued are in-flight answers: flush them, bounded by the linger
     * deadline; a connection already closing keeps its own. */
    if (c->closing && !c->handles_closing) continue;
    if (c->out)
      conn_close_graceful(c);
    else
      conn_close_now(c);
  }
}

static void on_sighup(uv_signal_t *h, int signum) {
  server_t *srv = h->data;
  (void)signum;
  if (srv->stopping) {
    log_notice("SIGHUP while shutting down: not reloading");
    return;
  }
  reload_exec(srv); /* returns only when the reload failed: serving on */
}

static void on_signal(uv_signal_t *h, int signum) {
  server_t *srv = h->data;
  if (srv->stopping) {
    log_notice("%s again: already shutting down", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    return;
  }
  server_stop(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void close_any(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void server_free(server_t *srv) {
  session_t *s, *next;
  /* Detached sessions nobody re-claimed: their holdings go (not journaled any more). */
  for (s = srv->sessions.head; s; s = next) {
    next = s->next;
    session_list_del(&srv->sessions, s);
    pools_session_release(srv->pools, s);
    if (s->holder) ledger_holder_release(srv->ledger, s->holder);
    session_destroy(s);
  }
  handlers_fini(&srv->handlers);
  u64map_fini(&srv->uids);
  free(srv->rbuf);
  free(srv);
}

int server_run(const server_config_t *cfg, pools_t *pools, persist_t *persist, handoff_t *ho) {
  server_t *srv = calloc(1, sizeof *srv);
  ledger_t *ledger = pools->v[0].ledger;
  const region_t *r = ledger_region(ledger);
  handlers_config_t hc;
  uint64_t wd_usec = 0;
  sigset_t hup;
  int rc;

  if (!srv) return PP_ENOPRIVMEM;
  if (!(srv->rbuf = malloc(CONN_READ_BUF))) {
    free(srv);
    return PP_ENOPRIVMEM;
  }
  u64map_init(&srv->uids);
  srv->cfg = cfg;
  srv->admin_reserve =
      cfg->admin_reserve < cfg->max_clients / 4 ? cfg->admin_reserve : cfg->max_clients / 4;
  if (srv->admin_reserve != cfg->admin_reserve)
    log_notice("--admin-reserve %u is more than a quarter of --max-clients %u: %u slots are "
               "kept for administrators",
               cfg->admin_reserve, cfg->max_clients, srv->admin_reserve);
  srv->ledger = ledger;
  srv->pools = pools;
  srv->persist = persist;
  srv->grace_ms = persist_grace_ms(persist);
  persist_bind_sessions(persist, &srv->sessions);
  for (uint32_t i = 1; i < pools->n; i++)
    if (pools->v[i].persist) persist_bind_sessions(pools->v[i].persist, &srv->sessions);
  srv->notify = getenv("NOTIFY_SOCKET") != NULL;
  hc = (handlers_config_t){.max_frame = cfg->max_frame,
                           .max_clients = cfg->max_clients,
                           .started_ms = cfg->started_ms};
  handlers_init(&srv->handlers, ledger, &srv->sessions, &hc);
  handlers_set_pools(&srv->handlers, pools, persist_region_id(persist));
  signal(SIGPIPE, SIG_IGN);
  if ((rc = uv_loop_init(&srv->loop))) {
    server_free(srv);
    return PP_EOS;
  }
  uv_signal_init(&srv->loop, &srv->sigterm);
  uv_signal_init(&srv->loop, &srv->sigint);
  srv->sigterm.data = srv->sigint.data = srv;
  uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
  uv_signal_start(&srv->sigint, on_signal, SIGINT);
  /* SIGHUP (a reload) was blocked from main's start and across a reload's execve (the
   * default action would kill us); with the handler in place it may come now, and one
   * that came meanwhile is handled by the loop. */
  uv_signal_init(&srv->loop, &srv->sighup);
  srv->sighup.data = srv;
  uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
  uv_unref((uv_handle_t *)&srv->sighup);
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  pthread_sigmask(SIG_UNBLOCK, &hup, NULL);
  /* Neither timer keeps the loop alive: connections do, and the listener. */
  uv_timer_init(&srv->loop, &srv->dl_timer);
  uv_timer_init(&srv->loop, &srv->trim_timer);
  srv->dl_timer.data = srv->trim_timer.data = srv;
  uv_unref((uv_handle_t *)&srv->dl_timer);
  uv_unref((uv_handle_t *)&srv->trim_timer);
  for (uint32_t i = 0; i < pools->n; i++)
    holes_init(&srv->holes[i], pools->v[i].ledger);
  uv_timer_init(&srv->loop, &srv->holes_timer);
  srv->holes_timer.data = srv;
  uv_unref((uv_handle_t *)&srv->holes_timer);
  if (cfg->scan_interval_ms)
    uv_timer_start(&srv->holes_timer, on_holes, cfg->scan_interval_ms, cfg->scan_interval_ms);
  uv_idle_init(&srv->loop, &srv->turn);
  srv->turn.data = srv;
  uv_unref((uv_handle_t *)&srv->turn);
  /* Neither keeps the loop alive either. */
  uv_timer_init(&srv->loop, &srv->grace_timer);
  uv_timer_init(&srv->loop, &srv->watchdog);
  srv->grace_timer.data = srv->watchdog.data = srv;
  uv_unref((uv_handle_t *)&srv->grace_timer);
  uv_unref((uv_handle_t *)&srv->watchdog);
  raise_nofile(srv);

  if (ho)
    rc = listener_take(&srv->listener, &srv->loop, ho->listen_fd,
                       ho->flags & HANDOFF_OWN_SOCKET ? ho->socket_path : NULL, conn_accept,
                       srv);
  else
    rc = listener_start(&srv->listener, &srv->loop, cfg->listen_fd, cfg->socket_path,
                        cfg->socket_mode, conn_accept, srv);
  if (!rc) rc = take_restored(srv, ho != NULL);
  if (!rc && ho) reload_adopt(srv, ho);
  if (rc) {
    persist_stop(persist); /* not serving: what the journal holds stays as it is */
    pools_stop(pools);
    listener_stop(&srv->listener);
    uv_walk(&srv->loop, close_any, NULL);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
    server_free(srv);
    return rc;
  }
  log_notice("serving %" PRIu64 " MiB (%s pages of %" PRIu64 " KiB%s) on %s",
             region_size(r) >> 20, region_hugepages(r) ? "huge" : "normal",
             region_page_size(r) >> 10,
             region_phys_known(r) ? ", physical addresses known" : "", srv->listener.path);
  if (!ho) log_notice("connect with: PINPOOL_SOCKET=%s <client>", srv->listener.path);
  /* After a reload READY=1 ends the reloading state; the pid has not changed. */
  if (srv->notify)
    sd_notifyf(0, "READY=1\nSTATUS=serving %" PRIu64 " MiB on %s\nMAINPID=%lu",
               region_size(r) >> 20, srv->listener.path, (unsigned long)getpid());
  /* The watchdog (WatchdogSec=): a ping from the loop at half the interval, so that only
   * a loop that stops turning misses it. */
  if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec >= 2000) {
    uint64_t every = wd_usec / 2 / 1000;
    sd_notify(0, "WATCHDOG=1");
    uv_timer_start(&srv->watchdog, on_watchdog, every, every);
    log_info("watchdog: %" PRIu64 " ms, pinged every %" PRIu64 " ms", wd_usec / 1000, every);
  }

  uv_run(&srv->loop, UV_RUN_DEFAULT);
  if (!srv->stopping) server_stop(srv, "loop ended");
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  uv_walk(&srv->loop, close_any, NULL);
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&srv->loop);
  if (rc) log_warning("event loop closed with handles left: %s", uv_strerror(rc));
  log_notice("stopped");
  rc = srv->exit_rc;
  server_free(srv);
  return rc;
}
