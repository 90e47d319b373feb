/* endpoint.h — where the daemon listens by default (shared by pinpoold, libpinpool and
 * pinpoolctl so they always agree):  $PINPOOL_SOCKET if set, else /run/pinpool/pinpool.sock
 * when running as root, else $XDG_RUNTIME_DIR/pinpool.sock (else /tmp/pinpool-UID.sock). */
#ifndef PP_ENDPOINT_H
#define PP_ENDPOINT_H
#include <stddef.h>
/* Writes the path into buf; PP_ERANGE when it does not fit (or exceeds sun_path). */
int endpoint_default_path(char *buf, size_t len);
#endif
