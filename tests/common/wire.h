/*
 * wire.h — a protocol client for the tests, written the way a client in another language
 * would be: proto/'s blocking frame helpers and nothing of libpinpool.
 *
 * A wire_t is one connection: connect, Hello, a Welcome that carries the region's memfd
 * (mapped, so a test can look at the bytes it was given), then strictly one request per
 * response.  wire_call() numbers the requests 1, 2, 3 ... and checks that each response
 * carries its request's id.
 *
 * Two kinds of failure, kept apart on purpose:
 *   - the conversation itself breaking (send fails, the connection closes, no answer
 *     within 30 s, an id that does not match) fails the running test: no test wants to
 *     carry on from there, and the 30 s receive timeout turns a daemon that hangs into a
 *     failure instead of a ctest timeout;
 *   - the daemon refusing a request is an answer, returned as a PP_E* code (0 for OK),
 *     because refusals are much of what the tests check.
 * wire_open() returns its failures (a test may expect PP_ETOOMANY), and so does
 * wire_connect(), the raw connect for tests that speak bytes rather than frames.
 *
 * The helpers that take a `resp_t **ret` hand back the response, also a refusal, for the
 * caller to free with frame_free_response(); pass NULL when only the code matters.
 */
#ifndef PP_TEST_WIRE_H
#define PP_TEST_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

typedef Pinpool__V1__Response resp_t;

typedef struct wire {
  int fd;
  int memfd;            /* the Welcome's memfd, -1 when closed */
  uint8_t *base;        /* the region, mapped from memfd */
  uint64_t region_size; /* from the Welcome */
  uint64_t page_size;
  uint64_t session_id;
  bool phys_known;  /* the daemon reports physical addresses */
  uint64_t next_id; /* the last request id used */
} wire_t;

/* Plain connect to a unix socket, no Hello.  The fd, or -1 with errno set; with nonblock
 * the socket is O_NONBLOCK and a full listen backlog is EAGAIN. */
int wire_connect(const char *path, bool nonblock);

/* Connect, Hello as `name`, Welcome, map the region.  0, or a PP_E* code (the daemon's
 * refusal, PP_ECONNECT, PP_EPROTO, ...) with c closed. */
int wire_open(wire_t *c, const char *path, const char *name);
/* Unmap, close; safe to call twice. */
void wire_close(wire_t *c);

/* One request (its id is set here), one response, which the caller frees. */
resp_t *wire_call(wire_t *c, Pinpool__V1__Request *req);

/* The status a response carries, as a PP_E* code (0 for OK). */
static inline int wire_rc(const resp_t *r) {
  return -(int)r->status;
}

/* The requests, each returning wire_rc() of its response.  name may be NULL (none). */
int wire_alloc(wire_t *c, uint64_t size, unsigned flags, const char *name, resp_t **ret);
int wire_free(wire_t *c, uint64_t handle);
int wire_lookup(wire_t *c, const char *name, resp_t **ret);
int wire_cache_open(wire_t *c, const char *name, uint32_t size, uint32_t align,
                    uint32_t *ret_id);
/* The objects' offsets land in offs, which has room for count; their number in *ret_n. */
int wire_cache_alloc(wire_t *c, uint32_t id, uint32_t count, uint64_t *offs, size_t *ret_n);
/* msg (may be NULL) gets the response's message: it names the offending offset. */
int wire_cache_free(wire_t *c, uint32_t id, const uint64_t *offs, size_t n, char *msg,
                    size_t msg_len);
int wire_stats(wire_t *c, bool buffers, bool map, resp_t **ret);
/* AttachPool name: the response (to free) in *ret, and in *ret_fd the descriptor that came
 * with it, -1 when none did (every reply is read with room for one). */
int wire_attach_pool(wire_t *c, const char *name, resp_t **ret, int *ret_fd);
int wire_shrink(wire_t *c, resp_t **ret);

#endif /* PP_TEST_WIRE_H */
