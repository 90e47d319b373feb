/* listen.h — pinpoold's listening socket: the one systemd passes, or our own, and the
 * accept loop that survives running out of file descriptors.  See listen.c. */
#ifndef PP_DAEMON_LISTEN_H
#define PP_DAEMON_LISTEN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>
#include <uv.h>

/* A connection accepted: fd is non-blocking and close-on-exec, and the callee's. */
typedef void (*listener_accept_cb)(void *data, int fd);

typedef struct listener {
  uv_poll_t poll;   /* POLLIN on fd: connections are waiting */
  uv_timer_t pause; /* accepting paused after accept() ran out of something */
  int fd;           /* the listening socket; -1 when closed */
  int spare_fd;     /* held in reserve (/dev/null), closed to accept-and-close when out of
                     * descriptors; -1 when it could not be had back */
  bool open;        /* poll and pause initialised and not yet closed */
  bool own_socket;  /* we bound path and unlink it when we stop */
  listener_accept_cb on_accept;
  void *data;
  uint64_t refused;      /* connections closed at once for want of descriptors */
  uint64_t warned_ms;    /* when the last "out of descriptors" warning went out */
  uint64_t refused_told; /* refused as of that warning */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} listener_t;

/* Listen on passed_fd, the socket systemd passed (fdstore_collect), or when it is -1 bind
 * socket_path (creating its directory, removing a stale socket, refusing a live one) and
 * chmod it to socket_mode.  on_accept(data, fd) gets each connection.  Errors: PP_EOS,
 * PP_EINVAL, PP_EEXIST (another daemon listens there, or the path is not a socket); ls must
 * be stopped either way. */
int listener_start(listener_t *ls, uv_loop_t *loop, int passed_fd, const char *socket_path,
                   unsigned socket_mode, listener_accept_cb on_accept, void *data);
/* After a reload: listen on fd, the socket the previous image of this process handed on;
 * own_path (NULL: systemd's) is the path that image bound, which stays ours to unlink.
 * Errors as listener_start's. */
int listener_take(listener_t *ls, uv_loop_t *loop, int fd, const char *own_path,
                  listener_accept_cb on_accept, void *data);
/* Close the listener and unlink our own socket (never one systemd passed). */
void listener_stop(listener_t *ls);

#endif
