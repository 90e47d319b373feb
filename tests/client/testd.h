/*
 * testd.h — what the libpinpool tests need around a real pinpoold: start one on a
 * temporary socket, stop it, and read its books (Stats, through the frame helpers, as
 * root).
 */
#ifndef PP_TESTD_H
#define PP_TESTD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct testd {
  pid_t pid;
  char dir[64];        /* mkdtemp'd folder holding the socket */
  char sock[128];      /* dir/pinpool.sock */
} testd_t;

/* Start $PP_BIN_DIR/pinpoold --socket <tmp> --size 16M --page-size 4K and wait until it
 * accepts connections.  0, or -1 with the reason on stderr. */
int testd_start(testd_t *d);
/* The same with more options (a NULL-terminated list), e.g. {"--max-clients", "1", NULL}. */
int testd_start_with(testd_t *d, const char *const *extra);
/* SIGTERM, wait (SIGKILL after a few seconds), remove the folder. */
void testd_stop(testd_t *d);

typedef struct testd_books {
  uint64_t free_bytes;     /* free in the buddy allocator */
  uint64_t used_bytes;     /* held by clients */
  uint32_t nr_clients;     /* sessions, the asking one included */
} testd_books_t;

typedef struct testd_session {
  bool found;
  uint64_t buffers, objects, bytes_held, requests;
} testd_session_t;

/* Ask the daemon to drain its magazines and release empty slabs (Shrink), then read
 * Stats; when session_id is non-zero also that session's row.  0 or -1. */
int testd_books(const testd_t *d, uint64_t session_id, testd_books_t *ret_books,
                testd_session_t *ret_session);
/* testd_books until free_bytes == want and only the asking session is connected, for up
 * to timeout_ms (the daemon reclaims a dead client's holdings when it notices the
 * socket close).  0 when reached, -1 (with the last figure in *ret_last) otherwise. */
int testd_wait_free(const testd_t *d, uint64_t want, int timeout_ms, uint64_t *ret_last);

/* Raw exchange for requests the API cannot make: status of the response (>= 0) or -1. */
struct ProtobufCMessage;
int testd_raw_status(const testd_t *d, const struct ProtobufCMessage *req);

#endif /* PP_TESTD_H */
