/* harness.h — start a real pinpoold from $PP_BIN_DIR on a temporary socket and speak the
 * protocol to it with frame_send / frame_recv_response.  See harness.c. */
#ifndef PP_TEST_DAEMON_HARNESS_H
#define PP_TEST_DAEMON_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "frame.h"

typedef struct daemon_proc {
  pid_t pid;
  char dir[64]; /* temporary directory holding the socket */
  char sock[128];
  char log[128]; /* the daemon's stderr */
} daemon_proc_t;

typedef struct client {
  int fd;
  int memfd;
  uint8_t *base; /* the region, mapped from the Welcome's memfd */
  uint64_t region_size;
  uint64_t page_size;
  uint64_t session_id;
  bool phys_known;
  uint64_t next_id;
} client_t;

typedef Pinpool__V1__Response resp_t;

/* Start pinpoold --socket DIR/sock --size 16M --page-size 4K --socket-mode 0666 plus the
 * NULL-terminated extra arguments (which may override those); waits until it accepts.
 * extra_env: one "NAME=VALUE" or NULL.  Fails the test when it does not come up. */
void daemon_start(daemon_proc_t *d, const char *extra_env, ...);
/* SIGTERM, wait, expect exit status 0 and the socket gone; removes the directory. */
void daemon_stop(daemon_proc_t *d);
/* Wait for an exit already asked for; the same checks as daemon_stop. */
void daemon_wait(daemon_proc_t *d);
/* Kill these at exit unless untracked (children a failing test would leave behind). */
void harness_track(pid_t pid);
void harness_untrack(pid_t pid);
/* Print the daemon's log (for failures). */
void daemon_dump_log(const daemon_proc_t *d);
/* VmRSS of the daemon in KiB. */
long daemon_rss_kib(const daemon_proc_t *d);

/* Plain connect, no Hello.  -1 on failure. */
int raw_connect(const char *path);
/* Connect, Hello, Welcome (memfd received and mapped).  0 or a PP_E* code / status. */
int client_open(client_t *c, const char *path, const char *name);
void client_close(client_t *c);

/* One request, one response (the caller frees it with frame_free_response). */
resp_t *client_call(client_t *c, Pinpool__V1__Request *req);
int call_alloc(client_t *c, uint64_t size, unsigned flags, const char *name, resp_t **ret);
int call_free(client_t *c, uint64_t handle);
int call_lookup(client_t *c, const char *name, resp_t **ret);
int call_cache_open(client_t *c, const char *name, uint32_t size, uint32_t align,
                    uint32_t *ret_id);
/* Objects land in offs (count of them returned through ret_n). */
int call_cache_alloc(client_t *c, uint32_t id, uint32_t count, uint64_t *offs, size_t *ret_n);
int call_cache_free(client_t *c, uint32_t id, const uint64_t *offs, size_t n, char *msg,
                    size_t msg_len);
int call_stats(client_t *c, bool buffers, bool map, resp_t **ret);
/* Stats.free_bytes via an admin connection of its own. */
uint64_t daemon_free_bytes(const daemon_proc_t *d);

/* The status a response carries, as a PP_E* code (0 for OK). */
static inline int resp_rc(const resp_t *r) {
  return -(int)r->status;
}

#endif
