/*
 * listen.c — where pinpoold listens.
 *
 * When systemd passes a socket (sd_listen_fds: socket activation through pinpoold.socket,
 * or systemd-socket-activate), we use it as it is and never unlink it: systemd owns that
 * path, and it must be one listening Unix stream socket.  Otherwise we bind our own: the
 * parent directory is created when missing (/run/pinpool as root), a stale socket left by
 * a crashed daemon is removed (a connect() that is refused proves nobody listens; a live
 * daemon makes us refuse to start), and the socket is chmod'ed to --socket-mode.  Ours is
 * unlinked when the listener stops (shutdown).
 *
 * Locks: none; the loop thread only.
 */
#include "listen.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
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

static int use_passed_socket(listener_t *ls) {
  int fd = SD_LISTEN_FDS_START, rc;
  size_t len = sizeof ls->path;

  if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
    log_err("the socket systemd passed is not a listening Unix stream socket");
    return PP_EINVAL;
  }
  if ((rc = uv_pipe_open(&ls->pipe, fd))) {
    log_err("uv_pipe_open: %s", uv_strerror(rc));
    return PP_EOS;
  }
  if (uv_pipe_getsockname(&ls->pipe, ls->path, &len) != 0)
    snprintf(ls->path, sizeof ls->path, "?");
  else
    ls->path[len < sizeof ls->path ? len : sizeof ls->path - 1] = '\0';
  ls->own_socket = false;
  log_info("using the socket passed by systemd: %s", ls->path);
  return 0;
}

static int bind_own_socket(listener_t *ls, const char *socket_path, unsigned socket_mode) {
  int rc;

  if (!socket_path || strlen(socket_path) >= sizeof ls->path) {
    log_err("socket path missing or too long");
    return PP_EINVAL;
  }
  snprintf(ls->path, sizeof ls->path, "%s", socket_path);
  if ((rc = prepare_path(ls->path))) return rc;
  if ((rc = uv_pipe_bind(&ls->pipe, ls->path))) {
    log_err("bind %s: %s", ls->path, uv_strerror(rc));
    return PP_EOS;
  }
  ls->own_socket = true;
  if (chmod(ls->path, socket_mode) != 0)
    log_warning("chmod %s %o: %s", ls->path, socket_mode, strerror(errno));
  return 0;
}

int listener_start(listener_t *ls, uv_loop_t *loop, const char *socket_path,
                   unsigned socket_mode, uv_connection_cb on_connection, void *data) {
  int n = sd_listen_fds(1), rc;

  uv_pipe_init(loop, &ls->pipe, 0);
  ls->pipe.data = data;
  ls->open = true;
  ls->own_socket = false;
  if (n < 0) {
    log_err("sd_listen_fds: %s", strerror(-n));
    return PP_EOS;
  }
  if (n > 1) {
    log_err("systemd passed %d sockets; pinpoold wants one", n);
    return PP_EINVAL;
  }
  rc = n == 1 ? use_passed_socket(ls) : bind_own_socket(ls, socket_path, socket_mode);
  if (rc) return rc;
  if ((rc = uv_listen((uv_stream_t *)&ls->pipe, 128, on_connection))) {
    log_err("listen on %s: %s", ls->path, uv_strerror(rc));
    return PP_EOS;
  }
  return 0;
}

void listener_stop(listener_t *ls) {
  if (ls->open) {
    uv_close((uv_handle_t *)&ls->pipe, NULL);
    ls->open = false;
  }
  if (ls->own_socket && unlink(ls->path) != 0 && errno != ENOENT)
    log_warning("unlink %s: %s", ls->path, strerror(errno));
  ls->own_socket = false;
}
