/*
 * listen.c — where pinpoold listens, and how it accepts.
 *
 * The socket.  When systemd passes a socket (socket activation through pinpoold.socket, or
 * systemd-socket-activate; fdstore.c picks it out of the passed fds, beside the memfds the
 * previous daemon stored), we use it as it is and never unlink it: systemd owns that path,
 * and it must be one listening Unix stream socket.  Otherwise we
 * bind our own: the parent directory is created when missing (/run/pinpool as root), a
 * stale socket left by a crashed daemon is removed (a connect() that is refused proves
 * nobody listens; a live daemon makes us refuse to start), the socket is chmod'ed to
 * --socket-mode, and it listens with a backlog of SOMAXCONN.  Ours is unlinked when the
 * listener stops (shutdown).  After a reload the socket comes from the previous image of
 * the process (listener_take), still ours to unlink if that image bound it; connections
 * waiting in the backlog meanwhile are accepted by the new image.
 *
 * Accepting.  The listening socket is watched with a uv_poll handle and accepted here
 * with accept4(SOCK_NONBLOCK | SOCK_CLOEXEC), at most LISTEN_BATCH per wake-up so that a
 * burst of connections does not starve the clients already connected (the poll is
 * level-triggered: what is left wakes the next loop iteration).  Each descriptor goes to
 * on_accept (conn.c), which decides from SO_PEERCRED, before it allocates anything, whether
 * to admit it.  We accept ourselves rather than through libuv's uv_listen because of what
 * happens when accept() fails:
 *
 * Out of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM).  The waiting
 * connection stays in the backlog and the socket stays readable, so a loop that just
 * retried would spin at 100% CPU until something closed.  Instead: (1) the spare
 * descriptor this listener keeps open (/dev/null) is closed, which makes room to accept the
 * waiting connections and close each at once (the clients see their connection closed
 * rather than hang in the backlog), then it is opened again — libuv's "EMFILE trick"; and
 * (2) accepting pauses for LISTEN_PAUSE_MS (poll stopped, a timer restarts it), so however
 * fast connections come, the daemon spends no more than one such round per pause on them.
 * Connections that arrive during the pause wait in the backlog and are accepted normally
 * when descriptors have come back.  A warning says so, at most once per LISTEN_WARN_MS,
 * with the number of connections refused since the last one.  Any other accept error is
 * logged and also pauses, for the same reason.  Every descriptor a client can make the
 * daemon hold is bounded elsewhere (--max-clients, the pending bounds, the refusals in
 * progress); server.c raises RLIMIT_NOFILE and warns when the limit is below those bounds.
 *
 * Locks: none; the loop thread only.
 */
#define _GNU_SOURCE 1 /* accept4 */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "log.h"
#include "pinpool_err.h"

/* The directory exists; whatever sits at path is gone unless a daemon listens there. */
static int prepare_path(const char *path) {
  struct stat st;
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char *slash;

  snprintf(dir, sizeof dir, "%s", path);
  slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    if (mkdir(dir, 0755) == 0)
      log_info("created %s", dir);
    else if (errno != EEXIST) {
      log_err("cannot create %s: %s", dir, strerror(errno));
      return PP_EOS;
    }
  }
  if (lstat(path, &st) != 0) return 0;
  if (!S_ISSOCK(st.st_mode)) {
    log_err("%s exists and is not a socket", path);
    return PP_EEXIST;
  }
  /* A socket file: live daemon, or stale leftover?  Ask it. */
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
    close(fd);
    log_err("another daemon is listening on %s", path);
    return PP_EEXIST;
  }
  if (fd >= 0) close(fd);
  log_info("removing stale socket %s", path);
  unlink(path);
  return 0;
}

#define LISTEN_BATCH 64u      /* accepts per wake-up */
#define LISTEN_PAUSE_MS 100u  /* accepting paused after running out of descriptors */
#define LISTEN_WARN_MS 10000u /* at most one "out of descriptors" warning per this */

static int use_passed_socket(listener_t *ls, int fd, const char *by) {
  struct sockaddr_un sa;
  socklen_t len = sizeof sa;

  if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
    log_err("the socket passed %s is not a listening Unix stream socket", by);
    return PP_EINVAL;
  }
  ls->fd = fd;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0 ||
      len <= offsetof(struct sockaddr_un, sun_path))
    snprintf(ls->path, sizeof ls->path, "?");
  else
    snprintf(ls->path, sizeof ls->path, "%.*s",
             (int)(len - offsetof(struct sockaddr_un, sun_path)), sa.sun_path);
  ls->own_socket = false;
  log_info("using the socket passed %s: %s", by, ls->path);
  return 0;
}

static int bind_own_socket(listener_t *ls, const char *socket_path, unsigned socket_mode) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd, rc;

  if (!socket_path || strlen(socket_path) >= sizeof ls->path) {
    log_err("socket path missing or too long");
    return PP_EINVAL;
  }
  snprintf(ls->path, sizeof ls->path, "%s", socket_path);
  if ((rc = prepare_path(ls->path))) return rc;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    log_err("socket: %s", strerror(errno));
    return PP_EOS;
  }
  memcpy(sa.sun_path, ls->path, strlen(ls->path) + 1);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    log_err("bind %s: %s", ls->path, strerror(errno));
    close(fd);
    return PP_EOS;
  }
  ls->fd = fd;
  ls->own_socket = true;
  if (chmod(ls->path, socket_mode) != 0)
    log_warning("chmod %s %o: %s", ls->path, socket_mode, strerror(errno));
  if (listen(fd, SOMAXCONN) != 0) {
    log_err("listen on %s: %s", ls->path, strerror(errno));
    return PP_EOS;
  }
  return 0;
}

static uint64_t listen_now_ms(const listener_t *ls) {
  return uv_now(ls->poll.loop);
}

static void on_readable(uv_poll_t *h, int status, int events);

static void on_pause_over(uv_timer_t *t) {
  listener_t *ls = t->data;
  if (ls->open) uv_poll_start(&ls->poll, UV_READABLE, on_readable);
}

/* accept() failed with err: refuse what waits (the spare descriptor's room), pause. */
static void out_of_something(listener_t *ls, int err) {
  uint64_t now = listen_now_ms(ls);
  bool fds = err == EMFILE || err == ENFILE;

  if (fds && ls->spare_fd >= 0) {
    close(ls->spare_fd);
    ls->spare_fd = -1;
    for (unsigned i = 0; i < LISTEN_BATCH; i++) {
      int fd = accept4(ls->fd, NULL, NULL, SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        break;
      }
      close(fd);
      ls->refused++;
    }
    ls->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  if (ls->warned_ms == 0 || now - ls->warned_ms >= LISTEN_WARN_MS) {
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    if (fds)
      log_warning("accept: %s (RLIMIT_NOFILE %llu): %" PRIu64 " connection%s closed at once "
                  "since the last warning; accepting pauses %u ms at a time until "
                  "descriptors come back",
                  strerror(err), (unsigned long long)rl.rlim_cur,
                  ls->refused - ls->refused_told,
                  ls->refused - ls->refused_told == 1 ? "" : "s", LISTEN_PAUSE_MS);
    else
      log_warning("accept: %s; accepting pauses %u ms at a time", strerror(err),
                  LISTEN_PAUSE_MS);
    ls->warned_ms = now ? now : 1;
    ls->refused_told = ls->refused;
  }
  uv_poll_stop(&ls->poll);
  uv_timer_start(&ls->pause, on_pause_over, LISTEN_PAUSE_MS, 0);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  listener_t *ls = h->data;
  (void)events;

  if (status < 0) {
    out_of_something(ls, -status);
    return;
  }
  for (unsigned i = 0; i < LISTEN_BATCH && ls->open; i++) {
    int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      out_of_something(ls, errno);
      return;
    }
    ls->on_accept(ls->data, fd);
  }
}

static void listener_init(listener_t *ls, listener_accept_cb on_accept, void *data) {
  ls->fd = -1;
  ls->spare_fd = -1;
  ls->open = false;
  ls->own_socket = false;
  ls->on_accept = on_accept;
  ls->data = data;
  ls->refused = ls->refused_told = ls->warned_ms = 0;
}

static int listener_watch(listener_t *ls, uv_loop_t *loop);

int listener_start(listener_t *ls, uv_loop_t *loop, int passed_fd, const char *socket_path,
                   unsigned socket_mode, listener_accept_cb on_accept, void *data) {
  int rc;

  listener_init(ls, on_accept, data);
  rc = passed_fd >= 0 ? use_passed_socket(ls, passed_fd, "by systemd")
                      : bind_own_socket(ls, socket_path, socket_mode);
  if (rc) return rc;
  return listener_watch(ls, loop);
}

int listener_take(listener_t *ls, uv_loop_t *loop, int fd, const char *own_path,
                  listener_accept_cb on_accept, void *data) {
  int rc;

  listener_init(ls, on_accept, data);
  if ((rc = use_passed_socket(ls, fd, "on by the previous image"))) return rc;
  if (own_path) {
    /* Bound by an earlier image: still ours to unlink, if it is still the path it has. */
    if (strcmp(own_path, ls->path))
      log_warning("the socket handed over is at %s, not at %s: it is not unlinked at exit",
                  ls->path, own_path);
    else
      ls->own_socket = true;
  }
  return listener_watch(ls, loop);
}

static int listener_watch(listener_t *ls, uv_loop_t *loop) {
  int rc;
  ls->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (ls->spare_fd < 0)
    log_warning("no spare descriptor (%s): out of descriptors, waiting connections stay in "
                "the backlog",
                strerror(errno));
  if ((rc = uv_poll_init(loop, &ls->poll, ls->fd))) {
    log_err("watching %s: %s", ls->path, uv_strerror(rc));
    return PP_EOS;
  }
  uv_timer_init(loop, &ls->pause);
  ls->poll.data = ls->pause.data = ls;
  ls->open = true;
  if ((rc = uv_poll_start(&ls->poll, UV_READABLE, on_readable))) {
    log_err("watching %s: %s", ls->path, uv_strerror(rc));
    return PP_EOS;
  }
  return 0;
}

void listener_stop(listener_t *ls) {
  if (ls->open) {
    /* uv_close takes the descriptor out of epoll at once, so it can be closed now. */
    uv_close((uv_handle_t *)&ls->poll, NULL);
    uv_close((uv_handle_t *)&ls->pause, NULL);
    ls->open = false;
  }
  if (ls->fd >= 0) close(ls->fd);
  ls->fd = -1;
  if (ls->spare_fd >= 0) close(ls->spare_fd);
  ls->spare_fd = -1;
  if (ls->own_socket && unlink(ls->path) != 0 && errno != ENOENT)
    log_warning("unlink %s: %s", ls->path, strerror(errno));
  ls->own_socket = false;
}
