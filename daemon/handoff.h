/* handoff.h — what one pinpoold process image hands the next across execve (a reload,
 * SIGHUP): the listening socket, the region and journal memfds, and every connection with
 * its unread input and unwritten replies.  The format, writing it into a memfd and taking
 * it back.  See handoff.c for the byte layout and its versioning. */
#ifndef PP_DAEMON_HANDOFF_H
#define PP_DAEMON_HANDOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The environment variable naming the handoff memfd's descriptor in the new image. */
#define HANDOFF_ENV "PINPOOLD_HANDOFF_FD"
/* The version this binary writes and the newest it reads. */
#define HANDOFF_VERSION 2u
#define HANDOFF_PATH_MAX 108u /* sun_path */

/* Stable flags (every version): what the next image must know even when it cannot read
 * the rest. */
#define HANDOFF_OWN_SOCKET 0x1u /* we bound the socket: unlink it at shutdown */
#define HANDOFF_STORED 0x2u     /* region and journal are in the service manager's store */
#define HANDOFF_JOURNAL_TEMP                                                                   \
  0x4u /* the journal was written only for the handoff (the old                                \
        * image was not journaling): read it, then close it */
#define HANDOFF_FLAGS_KNOWN 0x7u

typedef enum handoff_conn_kind {
  HANDOFF_CONN_FRESH = 1,   /* no session past Hello (or being refused): screened anew */
  HANDOFF_CONN_SESSION = 2, /* past Hello: its session (from the journal) attached again */
  HANDOFF_CONN_CLOSING = 3, /* its session already released: last replies, then closed */
} handoff_conn_kind_t;

typedef struct handoff_conn {
  int fd;
  uint8_t kind;      /* handoff_conn_kind_t */
  bool replay_armed; /* re-claimed and not yet sent its first request (exactly once) */
  uint32_t uid;      /* SO_PEERCRED when accepted; checked again by the next image */
  uint64_t session_id;
  uint64_t requests;
  uint8_t *in; /* bytes read from the socket and not handled yet, in order (a frame in
                * pieces, or input parked by back-pressure or a turn's end); malloc'd */
  uint32_t in_len;
  uint8_t *out; /* reply bytes not yet written to the socket, in order; malloc'd */
  uint32_t out_len;
} handoff_conn_t;

/* A pool other than the default (version 2): its region and journal memfds. */
#define HANDOFF_POOL_NAME_MAX 47u
typedef struct handoff_pool {
  char name[HANDOFF_POOL_NAME_MAX + 1];
  int region_fd, journal_fd;
  uint32_t flags; /* HANDOFF_STORED, HANDOFF_JOURNAL_TEMP: as the stable flags, its own */
} handoff_pool_t;

/* A session waiting to be re-claimed after an earlier restart: it keeps its deadline. */
typedef struct handoff_detached {
  uint64_t session_id;
  uint64_t deadline_unix_ms;
} handoff_detached_t;

typedef struct handoff {
  uint32_t version;
  uint32_t flags; /* HANDOFF_* */
  int listen_fd, region_fd, journal_fd;
  uint64_t started_ms;      /* CLOCK_MONOTONIC ms the first image started: uptime goes on */
  uint64_t reload_start_ns; /* CLOCK_MONOTONIC ns the reload began (SIGHUP) */
  uint64_t next_session_id; /* the next session id the old image would have given */
  uint32_t reloads;         /* reloads before this one */
  char socket_path[HANDOFF_PATH_MAX]; /* our own socket's path (HANDOFF_OWN_SOCKET) */
  handoff_conn_t *conns;
  uint32_t nconns;
  handoff_detached_t *detached;
  uint32_t ndetached;
  handoff_pool_t *pools; /* version 2 */
  uint32_t npools;
  /* Reading only: the body could not be used (why); conns is then empty, their fds closed,
   * and the next image goes on as after a crash (its clients re-claim). */
  bool fell_back;
  char why[160];
} handoff_t;

/* Encode h (nconns connections, ndetached sessions; version as given: HANDOFF_VERSION, or
 * another for the tests of a reader that meets a version it does not know) into a new
 * sealed memfd, close-on-exec, its offset at 0.  PP_ENOPRIVMEM, PP_EOS, PP_EINVAL (more
 * than a handoff may hold: a buffer over 4 GiB). */
int handoff_write(const handoff_t *h, uint32_t version, int *ret_fd);
/* Decode the handoff in fd (its contents only: fd stays the caller's).  0, with *ret
 * filled (conns' buffers malloc'd: handoff_free); PP_EVERSION (a version this binary does
 * not read) or PP_ECORRUPT (a body that does not check out) with only the stable part
 * filled — flags, the three fds and, in *ret_fds / *ret_nfds (malloc'd), every connection
 * fd it lists — so that the caller can fall back; PP_ECORRUPT with *ret_nfds 0 and the
 * fds -1 when even the stable part is unusable; PP_ENOPRIVMEM, PP_EOS.  why says what. */
int handoff_read(int fd, handoff_t *ret, int **ret_fds, uint32_t *ret_nfds, char *why,
                 size_t why_len);
/* The new image's start: when HANDOFF_ENV names a handoff of this process (it is unset
 * either way), read it and make every descriptor it lists close-on-exec.  Returns 0 (no
 * handoff: a normal start), 1 with *ret filled — when its body cannot be used,
 * ret->fell_back says why, its connection fds are closed and conns is empty, the stable
 * part (socket, region, journal, flags) stands — or PP_ECORRUPT when the variable is set
 * but nothing can be trusted (logged; the caller exits, and the service manager's restart
 * takes the crash path). */
int handoff_take(handoff_t *ret);
/* Frees what handoff_read or the caller malloc'd into h (conns and their buffers,
 * detached); closes nothing. */
void handoff_free(handoff_t *h);

#endif
