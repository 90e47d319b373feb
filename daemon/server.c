/*
 * server.c — pinpoold's event loop (libuv): start-up, signals, systemd notification and
 * shutdown.  What happens in between lives by concern: listen.c (the listening socket,
 * ours or systemd's), conn.c (a connection's I/O, framing, replies, back-pressure,
 * closing), handshake.c (Hello/Welcome, client slots), and handlers.c (requests, through
 * the ledger).
 *
 * The server owns what the loop thread shares between connections: the list of sessions
 * past Hello (what --max-clients counts and Stats.clients shows), the counters of
 * connections that have not said Hello, the list of connections (for shutdown), and the
 * handlers with their reply arena.  The ledger it serves is main's: created before the
 * loop and destroyed after it.
 *
 * systemd.  READY=1 once the region is mapped (the ledger exists before we are called)
 * and the socket listens; STATUS= lines when clients come and go; STOPPING=1 at shutdown.
 *
 * Shutdown (SIGTERM/SIGINT): STOPPING=1, close the listener (unlink our socket), then
 * each connection stops reading, its queued replies are flushed (bounded by a timer)
 * and its session released; uv_run returns when the last handle has closed.  SIGPIPE is
 * ignored: a vanished peer is an EPIPE on one connection, not the daemon's death.
 *
 * Locks: none; everything runs on the loop thread.
 */
#include "server_int.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"

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
  listener_stop(&srv->listener);
  /* Keep catching signals (a second SIGTERM must not kill us mid-flush), but let the
   * loop end without them. */
  uv_unref((uv_handle_t *)&srv->sigterm);
  uv_unref((uv_handle_t *)&srv->sigint);
  for (c = srv->conns; c; c = next) {
    next = c->next;
    /* Replies already queued are in-flight answers: flush them, bounded by the timer. */
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) && !c->closing)
      conn_close_graceful(c);
    else
      conn_close_now(c);
  }
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
  handlers_fini(&srv->handlers);
  free(srv);
}

int server_run(const server_config_t *cfg, ledger_t *ledger) {
  server_t *srv = calloc(1, sizeof *srv);
  const region_t *r = ledger_region(ledger);
  handlers_config_t hc;
  int rc;

  if (!srv) return PP_ENOPRIVMEM;
  srv->cfg = cfg;
  srv->ledger = ledger;
  srv->notify = getenv("NOTIFY_SOCKET") != NULL;
  hc = (handlers_config_t){.max_frame = cfg->max_frame,
                           .max_clients = cfg->max_clients,
                           .started_ms = cfg->started_ms};
  handlers_init(&srv->handlers, ledger, &srv->sessions, &hc);
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

  rc = listener_start(&srv->listener, &srv->loop, cfg->socket_path, cfg->socket_mode,
                      conn_on_connection, srv);
  if (rc) {
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
  log_notice("connect with: PINPOOL_SOCKET=%s <client>", srv->listener.path);
  if (srv->notify)
    sd_notifyf(0, "READY=1\nSTATUS=serving %" PRIu64 " MiB on %s\nMAINPID=%lu",
               region_size(r) >> 20, srv->listener.path, (unsigned long)getpid());

  uv_run(&srv->loop, UV_RUN_DEFAULT);
  if (!srv->stopping) server_stop(srv, "loop ended");
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  uv_walk(&srv->loop, close_any, NULL);
  uv_run(&srv->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&srv->loop);
  if (rc) log_warning("event loop closed with handles left: %s", uv_strerror(rc));
  log_notice("stopped");
  server_free(srv);
  return 0;
}
