/*
 * frame.h — framing for the pinpool protocol (see docs/PROTOCOL.md).
 *
 * On the stream socket every message is a frame: a 4-byte little-endian length N, then
 * N bytes of one serialized protobuf message, 1 <= N <= max_frame.  A reader rejects an
 * oversized or zero length as soon as it has the 4 header bytes, before buffering any
 * payload.  Unpacking goes through a budgeted ProtobufCAllocator, so no frame can make
 * the receiver allocate more than its budget however the bytes are crafted.
 *
 * This module knows protobuf and sockets, nothing of allocators.
 */
#ifndef PP_FRAME_H
#define PP_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pinpool.pb-c.h"
#include "pinpool_err.h"

#define FRAME_HEADER_SIZE 4u
#define FRAME_MAX_DEFAULT (64u * 1024u)
#define FRAME_MAX_LIMIT (16u * 1024u * 1024u)
#define PROTOCOL_VERSION 1u
/* Objects in one CacheAlloc (count) or CacheFree (offsets): the daemon refuses more, and
 * libpinpool never asks for more. */
#define PROTO_OBJECTS_MAX 1024u

/* What unpacking one frame of len bytes may allocate (see frame_unpack_budgeted).  A request
 * gets 64 KiB plus 32 bytes per wire byte: every legitimate request fits with room to spare
 * and no crafted one can make the daemon allocate without bound.  A response gets 128 per
 * wire byte: an empty submessage is 2 bytes on the wire and ~100 in memory, and Stats
 * replies are lists of them; the client trusts its daemon, but never without a bound. */
#define FRAME_REQUEST_BUDGET(len) (65536u + 32u * (size_t)(len))
#define FRAME_RESPONSE_BUDGET(len) (65536u + 128u * (size_t)(len))

/* Incremental reader: feed it whatever arrived, in pieces of any size. */
typedef struct frame_reader {
  uint32_t max_frame;
  uint8_t header[FRAME_HEADER_SIZE];
  uint32_t header_have; /* header bytes seen of the frame in progress */
  uint32_t need;        /* payload length of the frame in progress (0: header incomplete) */
  uint32_t have;        /* payload bytes buffered */
  uint8_t *buf;         /* payload buffer, grown to at most max_frame */
  uint32_t cap;
} frame_reader_t;

void frame_reader_init(frame_reader_t *r, uint32_t max_frame);
void frame_reader_free(frame_reader_t *r);
/* Consume up to len bytes.  Returns the number consumed (>= 0); when a frame completes,
 * stops there and sets *ret_frame / *ret_len (valid until the next call), else sets
 * *ret_frame = NULL.  PP_EPROTO for a zero or oversized length (sticky: every later call
 * fails too; drop the connection), PP_ENOPRIVMEM when the payload buffer cannot grow. */
int frame_reader_feed(frame_reader_t *r, const uint8_t *data, size_t len,
                      const uint8_t **ret_frame, size_t *ret_len);

/* Serialize msg with its frame header into a malloc'd buffer.  PP_ERANGE when the packed
 * message exceeds max_frame. */
int frame_pack(const ProtobufCMessage *msg, uint32_t max_frame, uint8_t **ret_buf,
               size_t *ret_len);

/* Budgeted unpack: NULL when the bytes are not a valid message or would need more than
 * budget bytes of allocations.  Free with frame_free_*(). */
Pinpool__V1__Request *frame_unpack_request(const uint8_t *data, size_t len, size_t budget);
void frame_free_request(Pinpool__V1__Request *req);
Pinpool__V1__Response *frame_unpack_response(const uint8_t *data, size_t len, size_t budget);
void frame_free_response(Pinpool__V1__Response *resp);
/* The same for any message type; *peak (may be NULL) is set, also on failure, to the most
 * bytes the unpack held at once (blocks plus their size headers) — tests and fuzzers use
 * it to check the budget.  Free the result with frame_free_message(). */
ProtobufCMessage *frame_unpack_budgeted(const ProtobufCMessageDescriptor *desc,
                                        const uint8_t *data, size_t len, size_t budget,
                                        size_t *peak);
void frame_free_message(ProtobufCMessage *msg);

/* One sendmsg() of buf[0, len) with pass_fd (>= 0) as SCM_RIGHTS on its first byte, or
 * none (pass_fd < 0); flags are sendmsg's (MSG_NOSIGNAL is always added).  Returns what
 * sendmsg returns (bytes sent, or -1 with errno).  The one place pinpool builds the
 * control message: the daemon sends Welcome with it, frame_send the rest. */
ssize_t frame_sendmsg_fd(int fd, const void *buf, size_t len, int pass_fd, int flags);

/* Blocking helpers for clients (libpinpool, pinpoolctl, tests). */
/* Send one whole frame; pass_fd >= 0 rides along as SCM_RIGHTS. */
int frame_send(int fd, const ProtobufCMessage *msg, uint32_t max_frame, int pass_fd);
/* Receive one whole frame's response; *ret_fd gets a passed fd or -1 (ret_fd may be
 * NULL: any passed fd is then closed).  PP_EDISCONNECTED on EOF, PP_EIO on errors (an
 * expired SO_RCVTIMEO included), PP_EPROTO on a bad frame.  Reads exactly one frame,
 * never a byte of the next. */
int frame_recv_response(int fd, uint32_t max_frame, Pinpool__V1__Response **ret_resp,
                        int *ret_fd);

/* Buffered receiving for a connection that is read only through it: one recvmsg usually
 * brings a whole response, header and payload, where frame_recv_response needs two (on
 * a request/response round trip that is one system call in five).  Bytes of following
 * frames stay in rx for the next call.  A passed fd is reported with the first frame
 * completed after it arrived (pinpool passes one only with Welcome, the first frame).
 *
 * How a read waits (rx->wait; frame.c's essay has the measurements):
 *   FRAME_RX_WAIT_BLOCK (the default)  a blocking recvmsg bounded by SO_RCVTIMEO, which
 *       rx sets to timeout_ms (only when it changes: rx remembers what it set on which
 *       socket) — one system call per read;
 *   FRAME_RX_WAIT_POLL  poll(POLLIN) up to timeout_ms, then a non-blocking recvmsg — two.
 * Either way each read waits at most timeout_ms (-1: no limit; 0: not at all) and an
 * expired wait is PP_EIO.  A non-blocking socket works too: the first recvmsg that
 * answers EAGAIN at once on it switches rx to FRAME_RX_WAIT_POLL.  SO_RCVTIMEO stays on
 * the socket after rx is done with it; give a new connection a fresh rx (frame_rx_free
 * and frame_rx_init), as its buffered bytes would be stale anyway.
 * Errors as frame_recv_response; after one, drop the connection. */
typedef enum frame_rx_wait {
  FRAME_RX_WAIT_BLOCK = 0,
  FRAME_RX_WAIT_POLL = 1,
} frame_rx_wait_t;

typedef struct frame_rx {
  uint8_t *buf; /* malloc'd; grows to at most FRAME_HEADER_SIZE + max_frame */
  size_t cap;
  size_t start, end;    /* unconsumed bytes: buf[start, end) */
  int fd;               /* a passed fd not yet reported, or -1 */
  frame_rx_wait_t wait; /* how a read waits; callers may set it after frame_rx_init */
  int tmo_sock;         /* the socket rx last set SO_RCVTIMEO on, or -1 */
  int tmo_ms;           /* the timeout it set there (-1: none) */
} frame_rx_t;

void frame_rx_init(frame_rx_t *rx);
void frame_rx_free(frame_rx_t *rx); /* closes an unreported passed fd */
/* The next whole frame's payload, unparsed: *ret_frame / *ret_len stay valid until the next
 * call on rx.  *ret_fd as frame_rx_response's.  For peers that speak frames of something
 * other than Response (the benchmark's echo server). */
int frame_rx_frame(int fd, frame_rx_t *rx, uint32_t max_frame, int timeout_ms,
                   const uint8_t **ret_frame, size_t *ret_len, int *ret_fd);
/* The next whole frame, unpacked as a Response (budget FRAME_RESPONSE_BUDGET). */
int frame_rx_response(int fd, frame_rx_t *rx, uint32_t max_frame, int timeout_ms,
                      Pinpool__V1__Response **ret_resp, int *ret_fd);

#endif /* PP_FRAME_H */
