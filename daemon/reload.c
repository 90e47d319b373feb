/*
 * reload.c — upgrade in place: on SIGHUP (`systemctl reload pinpoold`) pinpoold executes
 * its installed binary again, in the same process, and the new image takes over the
 * listening socket, the region, the journal and every client connection.  Clients see a
 * pause, no error and no re-claim: their connections, sessions, buffers, objects and
 * mappings never went away.
 *
 * The old image (reload_exec, from the SIGHUP callback):
 *   1. RELOADING=1 with MONOTONIC_USEC= to the service manager: systemd 252 keeps the unit
 *      reloading from it until READY=1 — also past the exit of ExecReload='s kill, which it
 *      would otherwise take for the end of the reload (service_enter_running sees the
 *      pending RELOADING=1) — so `systemctl reload` returns once the new image serves;
 *      systemd >= 253's Type=notify-reload wants the timestamp.
 *   2. A request boundary comes for free: signals reach the loop as callbacks, between
 *      requests, so no request is half served and no journal transaction is open.  Nothing
 *      more is read; input already read and not handled (a frame in pieces, input parked by
 *      back-pressure or at the end of a turn) is handed on.  Replies the sockets have not
 *      taken are handed on too, not flushed first: a client that does not read cannot
 *      delay a reload, and the new image writes them before anything else, in order.
 *   3. The journal is compacted (persist_reload_prepare): its current generation becomes
 *      exactly the live state, so the new image rebuilds what this one holds (one snapshot
 *      to read, and nothing the journal might lack).  Without a journal (no fd store,
 *      --journal no) a journal is written for the handoff alone.  The state itself travels
 *      as the journal; the handoff (handoff.c) maps descriptors to sessions and carries
 *      each connection's unhandled input and unwritten replies, the sessions still waiting
 *      to be re-claimed with their deadlines, the uptime's origin and the session counter.
 *      Every other pool (pools.c) is handed on the same way: its journal compacted (or
 *      written for the handoff), its region and journal memfds listed in the handoff by
 *      the pool's name; the new image adopts each pool whose name its config still has
 *      and joins the sessions' attachments to their sessions as after a crash.
 *   4. FD_CLOEXEC is cleared on exactly the descriptors handed on — the socket, the region,
 *      the journal, the handoff memfd and each connection — so that everything else (the
 *      epoll fd, libuv's signal pipe, io_uring's pinning ring, pagemap, the spare fd) closes
 *      at execve.  SIGHUP is blocked across execve (the mask survives it) so that a second
 *      reload cannot find the new image without its handler — the default action would
 *      kill it; the new image unblocks it once its handler is in place, and a SIGHUP that
 *      came meanwhile is a reload of the new image.  A last WATCHDOG=1 goes out.
 *   5. execve(exe_path, argv, environ + PINPOOLD_HANDOFF_FD=<fd>).  The pid stays, so for
 *      the service manager nothing exited: MAINPID, the fd store and the watchdog carry on.
 *
 * Which binary.  exe_path is resolved once, at start-up (main.c), from argv[0]: a path with
 * a slash as given (made absolute against the working directory), else the first
 * executable of that name on PATH; /proc/self/exe only when neither works.  Not
 * /proc/self/exe at reload time: after a package upgrade it names the old, deleted file,
 * and the point of a reload is to run the new one.  The path itself is what a package
 * manager replaces (a symlink to a versioned file is followed at each reload, as it should
 * be).  argv is the one we were started with, so the same options (and --config file,
 * read again) apply; the environment is ours (systemd's EnvironmentFile= was read when
 * the unit started and is not read again).
 *
 * The new image (main.c, handoff_take; persist_start; server_run, reload_adopt): reads
 * the handoff and unsets the variable, pings the watchdog, takes the socket, adopts the
 * region and replays the journal as after a crash —
 * every session comes back detached — then takes over each connection: a session's
 * connection attaches it again (no re-claim, the same session), a connection that had not
 * said Hello is screened anew, a closing one gets its last replies and is closed; each
 * one's replies are written first and its input handled on the loop's first turn.  Then
 * READY=1 (with MAINPID=, unchanged) and the watchdog timer; deadlines (hello, frame,
 * write) start afresh.
 *
 * Failures.  Anything that fails before execve (compaction, memory, fcntl) leaves this
 * image as it was: logged at err, READY=1, serving on.  execve failing (the binary is
 * missing, not executable, not an executable format) is the same: the flags are put back
 * and nothing else was touched.  Once execve succeeded there is no way back, so the new
 * image never serves a state it is not sure of: a handoff whose body it cannot read (a
 * version it does not know — a downgrade — or damage) makes it close every connection
 * listed in the handoff's stable part and go on as after a crash (the journal is complete:
 * the clients re-claim their sessions); a stable part it cannot trust, a journal that does
 * not check out, or a binary that dies at start-up end the process, and the service
 * manager's restart (Restart=on-failure) takes the crash path with the fd store.  Without
 * a service manager, a reload that fails after execve loses the sessions, as a crash does.
 *
 * Locks: none; the loop thread.
 */
#include "server_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Descriptors whose close-on-exec flag a reload cleared, to put back if execve fails. */
typedef struct fd_list {
  int *fd;
  size_t n, cap;
} fd_list_t;

static void fds_restore(fd_list_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    int f = fcntl(l->fd[i], F_GETFD);
    if (f >= 0) fcntl(l->fd[i], F_SETFD, f | FD_CLOEXEC);
  }
  l->n = 0;
}

/* Hand fd on: clear its close-on-exec flag.  0, PP_ENOPRIVMEM, PP_EOS. */
static int fds_keep(fd_list_t *l, int fd) {
  int f;
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    int *v = realloc(l->fd, cap * sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    l->fd = v;
    l->cap = cap;
  }
  if ((f = fcntl(fd, F_GETFD)) < 0 || fcntl(fd, F_SETFD, f & ~FD_CLOEXEC) < 0) return PP_EOS;
  l->fd[l->n++] = fd;
  return 0;
}

/* environ without any HANDOFF_ENV, plus ours.  NULL when out of memory. */
static char **handoff_environ(int hfd, char *var, size_t var_len) {
  size_t n = 0, k = 0, prefix = strlen(HANDOFF_ENV) + 1;
  char **env;
  while (environ && environ[n])
    n++;
  if (!(env = calloc(n + 2, sizeof *env))) return NULL;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], HANDOFF_ENV "=", prefix)) env[k++] = environ[i];
  snprintf(var, var_len, "%s=%d", HANDOFF_ENV, hfd);
  env[k++] = var;
  env[k] = NULL;
  return env;
}

/* What this image hands the next (descriptors and buffers are still ours).  0 or an
 * error. */
/* Each pool's journal descriptor and whether it was written for the handoff alone (index:
 * pool id), filled by reload_exec before handoff_build. */
static int pool_jfd[POOLS_MAX];
static bool pool_temp[POOLS_MAX];

static int handoff_build(server_t *srv, int journal_fd, bool temp, uint64_t t0, handoff_t *ho) {
  const region_t *r = ledger_region(srv->ledger);
  uint32_t nd = 0;
  int rc;

  ho->flags = (srv->listener.own_socket ? HANDOFF_OWN_SOCKET : 0) |
              (persist_stored(srv->persist) ? HANDOFF_STORED : 0) |
              (temp ? HANDOFF_JOURNAL_TEMP : 0);
  ho->listen_fd = srv->listener.fd;
  ho->region_fd = region_fd(r);
  ho->journal_fd = journal_fd;
  ho->started_ms = srv->cfg->started_ms;
  ho->reload_start_ns = t0;
  ho->next_session_id = session_next();
  ho->reloads = srv->reloads;
  if (srv->listener.own_socket)
    snprintf(ho->socket_path, sizeof ho->socket_path, "%s", srv->listener.path);
  if (srv->nconns && !(ho->conns = calloc(srv->nconns, sizeof *ho->conns)))
    return PP_ENOPRIVMEM;
  for (conn_t *c = srv->conns; c; c = c->next) {
    if (ho->nconns == srv->nconns) return PP_EINTERNAL;
    if ((rc = conn_handoff(c, &ho->conns[ho->nconns])) < 0) return rc;
    if (rc) ho->nconns++;
  }
  for (const session_t *s = srv->sessions.head; s; s = s->next)
    nd += s->detached;
  if (nd && !(ho->detached = calloc(nd, sizeof *ho->detached))) return PP_ENOPRIVMEM;
  for (const session_t *s = srv->sessions.head; s; s = s->next)
    if (s->detached)
      ho->detached[ho->ndetached++] = (handoff_detached_t){
          .session_id = s->id, .deadline_unix_ms = s->keep->detached_deadline_unix_ms};
  if (srv->pools->n > 1 && !(ho->pools = calloc(srv->pools->n - 1, sizeof *ho->pools)))
    return PP_ENOPRIVMEM;
  for (uint32_t i = 1; i < srv->pools->n; i++) {
    const pool_t *p = &srv->pools->v[i];
    handoff_pool_t *hp = &ho->pools[ho->npools++];
    snprintf(hp->name, sizeof hp->name, "%s", p->name);
    hp->region_fd = region_fd(ledger_region(p->ledger));
    hp->journal_fd = pool_jfd[i];
    hp->flags = (persist_stored(p->persist) ? HANDOFF_STORED : 0) |
                (pool_temp[i] ? HANDOFF_JOURNAL_TEMP : 0);
  }
  return 0;
}

void reload_exec(server_t *srv) {
  const server_config_t *cfg = srv->cfg;
  uint64_t t0 = mono_ns();
  handoff_t ho = {.listen_fd = -1, .region_fd = -1, .journal_fd = -1};
  fd_list_t kept = {0};
  char var[64], **env = NULL;
  const char *what = "";
  int jfd = -1, hfd = -1, rc, err = 0;
  uint32_t npools = 1; /* pools whose journals were prepared: 1.. npools-1 */
  bool temp = false;
  sigset_t hup, old;

  if (!cfg->exe_path) {
    log_err("SIGHUP: no path to execute again was found at start-up: not reloading");
    return;
  }
  log_notice("SIGHUP: reloading: executing %s again with %u connection%s", cfg->exe_path,
             srv->nconns, srv->nconns == 1 ? "" : "s");
  if (srv->notify)
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading: executing %s",
               t0 / 1000, cfg->exe_path);
  what = "compacting the journal";
  if ((rc = persist_reload_prepare(srv->persist, &jfd, &temp))) goto fail;
  for (npools = 1; npools < srv->pools->n; npools++)
    if ((rc = persist_reload_prepare(srv->pools->v[npools].persist, &pool_jfd[npools],
                                     &pool_temp[npools])))
      goto fail;
  what = "collecting the connections";
  if ((rc = handoff_build(srv, jfd, temp, t0, &ho))) goto fail;
  what = "writing the handoff";
  if ((rc = handoff_write(&ho, cfg->handoff_version ? cfg->handoff_version : HANDOFF_VERSION,
                          &hfd)))
    goto fail;
  what = "handing the descriptors on";
  rc = fds_keep(&kept, ho.listen_fd);
  if (!rc) rc = fds_keep(&kept, ho.region_fd);
  if (!rc) rc = fds_keep(&kept, ho.journal_fd);
  if (!rc) rc = fds_keep(&kept, hfd);
  for (uint32_t i = 0; !rc && i < ho.nconns; i++)
    rc = fds_keep(&kept, ho.conns[i].fd);
  for (uint32_t i = 0; !rc && i < ho.npools; i++) {
    rc = fds_keep(&kept, ho.pools[i].region_fd);
    if (!rc) rc = fds_keep(&kept, ho.pools[i].journal_fd);
  }
  if (rc) goto fail;
  what = "building the environment";
  if (!(env = handoff_environ(hfd, var, sizeof var))) {
    rc = PP_ENOPRIVMEM;
    goto fail;
  }
  log_info("reload: %u connections, %u detached sessions, %zu descriptors handed on in "
           "%.2f ms; executing %s",
           ho.nconns, ho.ndetached, kept.n, (double)(mono_ns() - t0) / 1e6, cfg->exe_path);
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hup, &old);
  if (uv_is_active((uv_handle_t *)&srv->watchdog)) sd_notify(0, "WATCHDOG=1");
  fflush(stdout);
  fflush(stderr);
  execve(cfg->exe_path, cfg->argv, env);
  err = errno;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  what = "execve";
  rc = PP_EOS;
fail:
  fds_restore(&kept);
  free(kept.fd);
  free(env);
  if (hfd >= 0) close(hfd);
  handoff_free(&ho);
  persist_reload_abort(srv->persist);
  for (uint32_t i = 1; i < npools; i++)
    persist_reload_abort(srv->pools->v[i].persist);
  if (err)
    log_err("reload: cannot execute %s: %s; this image serves on, nothing changed",
            cfg->exe_path, strerror(err));
  else
    log_err("reload failed while %s: %s; this image serves on, nothing changed", what,
            pp_strerror(rc));
  if (srv->notify)
    sd_notifyf(0, "READY=1\nSTATUS=reload failed (%s), serving as before",
               err ? strerror(err) : pp_strerror(rc));
}

void reload_adopt(server_t *srv, handoff_t *ho) {
  uint64_t now_loop = uv_now(&srv->loop), now_unix = unix_ms();
  uint32_t attached = 0, detached = 0;

  for (uint32_t i = 0; i < ho->nconns; i++)
    conn_adopt(srv, &ho->conns[i]);
  /* Sessions still waiting for a re-claim keep the deadline they had. */
  for (uint32_t i = 0; i < ho->ndetached; i++)
    for (session_t *s = srv->sessions.head; s; s = s->next)
      if (s->id == ho->detached[i].session_id && s->detached) {
        uint64_t at = ho->detached[i].deadline_unix_ms;
        s->keep->detached_deadline_unix_ms = at;
        s->keep->detached_deadline_loop_ms = now_loop + (at > now_unix ? at - now_unix : 0);
        break;
      }
  for (const session_t *s = srv->sessions.head; s; s = s->next) {
    attached += !s->detached;
    detached += s->detached;
  }
  srv->reloads = ho->reloads + 1;
  server_grace_arm(srv);
  if (ho->fell_back) {
    log_notice("reload %u done in %.1f ms without the connections (the handoff could not be "
               "read: %s): %u session%s wait to be re-claimed",
               srv->reloads,
               ho->reload_start_ns ? (double)(mono_ns() - ho->reload_start_ns) / 1e6 : 0.0,
               ho->why, detached, detached == 1 ? "" : "s");
    return;
  }
  log_notice(
      "reload %u done in %.1f ms: %u connection%s taken over, %u session%s attached, "
      "%u waiting to be re-claimed",
      srv->reloads, ho->reload_start_ns ? (double)(mono_ns() - ho->reload_start_ns) / 1e6 : 0.0,
      srv->nconns, srv->nconns == 1 ? "" : "s", attached, attached == 1 ? "" : "s", detached);
}
