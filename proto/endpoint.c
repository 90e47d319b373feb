/*
 * endpoint.c — the default socket path, one rule for pinpoold, libpinpool and pinpoolctl.
 *
 * Order: $PINPOOL_SOCKET when set and non-empty (taken as given, relative paths too, so
 * tests can point everything at a temporary socket); else /run/pinpool/pinpool.sock for
 * root (euid 0: the systemd socket unit's path); else $XDG_RUNTIME_DIR/pinpool.sock when
 * that variable holds an absolute path (the XDG base-directory spec says to ignore a
 * relative one); else /tmp/pinpool-UID.sock.  A path must fit both the caller's buffer
 * and sockaddr_un.sun_path with its NUL, or the answer is PP_ERANGE and buf is untouched.
 */
#include "endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "pinpool_err.h"

#define ENDPOINT_ROOT_PATH "/run/pinpool/pinpool.sock"

int endpoint_default_path(char *buf, size_t len) {
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  const char *env = getenv("PINPOOL_SOCKET");
  const char *xdg = getenv("XDG_RUNTIME_DIR");
  int n;

  if (!buf) return PP_EINVAL;
  if (env && *env)
    n = snprintf(path, sizeof path, "%s", env);
  else if (geteuid() == 0)
    n = snprintf(path, sizeof path, "%s", ENDPOINT_ROOT_PATH);
  else if (xdg && xdg[0] == '/')
    n = snprintf(path, sizeof path, "%s/pinpool.sock", xdg);
  else
    n = snprintf(path, sizeof path, "/tmp/pinpool-%u.sock", (unsigned)geteuid());
  if (n < 0 || (size_t)n >= sizeof path || (size_t)n >= len) return PP_ERANGE;
  memcpy(buf, path, (size_t)n + 1);
  return 0;
}
