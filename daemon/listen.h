/* listen.h — pinpoold's listening socket: the one systemd passes, or our own.  See
 * listen.c. */
#ifndef PP_DAEMON_LISTEN_H
#define PP_DAEMON_LISTEN_H

#include <stdbool.h>
#include <sys/un.h>
#include <uv.h>

typedef struct listener {
  uv_pipe_t pipe;
  bool open;       /* pipe initialised and not yet closed */
  bool own_socket; /* we bound path and unlink it when we stop */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} listener_t;

/* Listen on the socket systemd passed (sd_listen_fds), else bind socket_path (creating its
 * directory, removing a stale socket, refusing a live one) and chmod it to socket_mode.
 * on_connection gets pipe.data == data.  Errors: PP_EOS, PP_EINVAL, PP_EEXIST (another
 * daemon listens there, or the path is not a socket); ls must be stopped either way. */
int listener_start(listener_t *ls, uv_loop_t *loop, const char *socket_path,
                   unsigned socket_mode, uv_connection_cb on_connection, void *data);
/* Close the listener and unlink our own socket (never one systemd passed). */
void listener_stop(listener_t *ls);

#endif
