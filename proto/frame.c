/*
 * frame.c — length-prefixed protobuf frames on a stream socket (see docs/PROTOCOL.md).
 *
 * What.  Every message on a pinpool connection is one frame: a 4-byte little-endian
 * length N, then N bytes of one serialized pinpool.v1.Request or Response, with
 * 1 <= N <= max_frame.  This file holds the four pieces both ends need: an incremental
 * reader for event loops, frame_pack, a budgeted unpack, and blocking send/receive
 * helpers (with SCM_RIGHTS fd passing) for clients.
 *
 * Reader.  frame_reader_feed() is a two-state machine: collect the 4 header bytes, then
 * collect need payload bytes.  The length is checked the moment the 4th header byte
 * arrives, so a peer announcing 0 or more than max_frame is refused before one payload
 * byte is buffered (the buffer is never grown for it).  The payload buffer grows with the
 * bytes actually received, not with the announced length, so a peer that announces a big
 * frame and then trickles costs only what it sent.  The reader always copies: the frame it
 * returns lives in the reader, not in the caller's input, and stays valid until the next
 * feed.  Invariants:
 *   header_have <= 4;  need == 0 unless header_have == 4;  have <= need <= max_frame;
 *   have <= cap <= max_frame;  header_have == 4 && need == 0  <=>  a bad length was seen
 *   (sticky: every later feed fails with PP_EPROTO, the caller must drop the connection).
 *
 * Budgeted unpack.  protobuf-c allocates everything an unpacked message needs (structs,
 * strings, repeated arrays, and its own temporary scan slabs) through a
 * ProtobufCAllocator.  Ours prefixes each block with its size and refuses any allocation
 * that would take the bytes held (headers included) past the budget; protobuf-c then
 * fails the unpack cleanly and frees what it took.  Because the size is in the prefix,
 * freeing needs no per-unpack state, so frame_free_*() work with a static allocator.
 * No message in pinpool.proto is recursive, so nesting depth is bounded by the schema.
 *
 * Empty messages.  A message whose fields all hold defaults packs to zero bytes, which
 * is not a valid frame.  frame_pack() then writes the two bytes 08 00 (field 1 = 0, set
 * explicitly); Request and Response both have `uint64 id = 1`, and every protobuf
 * decoder reads that back as the same empty message.
 *
 * Blocking helpers.  frame_send() writes the whole frame with sendmsg(MSG_NOSIGNAL),
 * resuming after partial writes and EINTR (and waiting in poll() on EAGAIN, so it also
 * works on a non-blocking descriptor; on a blocking one EAGAIN means the caller's
 * SO_SNDTIMEO/SO_RCVTIMEO ran out, reported as PP_EIO); a passed fd rides on the first sendmsg
 * only, so the kernel attaches it to the frame's first byte.  frame_recv_response() reads
 * exactly the header, then exactly the payload, never a byte of the next frame, collecting any
 * SCM_RIGHTS fds with MSG_CMSG_CLOEXEC and closing those the caller did not ask for.
 * frame_rx_response() is the buffered alternative for a connection read only through
 * it: it reads whatever is available (usually a whole reply in one recvmsg, saving a
 * system call per round trip) and keeps the bytes of later frames for the next call;
 * frame_rx_frame() is the same without the unpack.  It waits in a blocking recvmsg bounded
 * by SO_RCVTIMEO (one system call per reply), or, on request or on a non-blocking socket,
 * in poll() before a non-blocking recvmsg (two); see frame_rx_frame for which is cheaper.
 *
 * Locks: none; a reader belongs to one connection, the helpers to one caller at a time.
 * References: protobuf encoding (https://protobuf.dev/programming-guides/encoding/),
 * unix(7) and cmsg(3) for SCM_RIGHTS.
 */
#include "frame.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- reader ---------------------------------------------------------------------- */

static uint32_t frame__clamp_max(uint32_t max_frame) {
  if (max_frame == 0) return FRAME_MAX_DEFAULT;
  return max_frame > FRAME_MAX_LIMIT ? FRAME_MAX_LIMIT : max_frame;
}

void frame_reader_init(frame_reader_t *r, uint32_t max_frame) {
  memset(r, 0, sizeof *r);
  r->max_frame = frame__clamp_max(max_frame);
}

void frame_reader_free(frame_reader_t *r) {
  free(r->buf);
  r->buf = NULL;
  r->cap = 0;
  r->have = r->need = r->header_have = 0;
}

/* Grow the payload buffer to hold at least want bytes: doubling, capped at need, so
 * the buffer tracks bytes received rather than the length the peer announced. */
static int frame__reserve(frame_reader_t *r, uint32_t want) {
  if (want <= r->cap) return 0;
  uint32_t ncap = r->cap ? r->cap : 256;
  while (ncap < want)
    ncap = ncap > UINT32_MAX / 2 ? UINT32_MAX : ncap * 2;
  if (ncap > r->need) ncap = r->need;
  uint8_t *nbuf = realloc(r->buf, ncap);
  if (!nbuf) return PP_ENOPRIVMEM;
  r->buf = nbuf;
  r->cap = ncap;
  return 0;
}

int frame_reader_feed(frame_reader_t *r, const uint8_t *data, size_t len,
                      const uint8_t **ret_frame, size_t *ret_len) {
  size_t used = 0;

  if (r->header_have == FRAME_HEADER_SIZE && r->need == 0) return PP_EPROTO; /* sticky */
  if (r->need != 0 && r->have == r->need) /* the previous call returned this frame */
    r->header_have = r->need = r->have = 0;
  if (len > INT32_MAX) len = INT32_MAX; /* the count must fit the int we return */

  while (r->header_have < FRAME_HEADER_SIZE && used < len)
    r->header[r->header_have++] = data[used++];
  if (r->header_have < FRAME_HEADER_SIZE) goto partial;

  if (r->need == 0) {
    uint32_t n = (uint32_t)r->header[0] | (uint32_t)r->header[1] << 8 |
                 (uint32_t)r->header[2] << 16 | (uint32_t)r->header[3] << 24;
    if (n == 0 || n > r->max_frame) return PP_EPROTO;
    r->need = n;
  }

  size_t take = r->need - r->have;
  if (take > len - used) take = len - used;
  if (take > 0) {
    int rc = frame__reserve(r, r->have + (uint32_t)take);
    if (rc < 0) return rc;
    memcpy(r->buf + r->have, data + used, take);
    r->have += (uint32_t)take;
    used += take;
  }
  if (r->have < r->need) goto partial;

  *ret_frame = r->buf;
  *ret_len = r->need;
  return (int)used;

partial:
  *ret_frame = NULL;
  return (int)used;
}

/* ---- pack ------------------------------------------------------------------------ */

int frame_pack(const ProtobufCMessage *msg, uint32_t max_frame, uint8_t **ret_buf,
               size_t *ret_len) {
  static const uint8_t empty_body[2] = {0x08, 0x00}; /* field 1 (varint) = 0 */

  if (!msg || !ret_buf || !ret_len) return PP_EINVAL;
  max_frame = frame__clamp_max(max_frame);
  size_t n = protobuf_c_message_get_packed_size(msg);
  size_t body = n ? n : sizeof empty_body;
  if (body > max_frame) return PP_ERANGE;

  uint8_t *buf = malloc(FRAME_HEADER_SIZE + body);
  if (!buf) return PP_ENOPRIVMEM;
  buf[0] = (uint8_t)body;
  buf[1] = (uint8_t)(body >> 8);
  buf[2] = (uint8_t)(body >> 16);
  buf[3] = (uint8_t)(body >> 24);
  if (n) {
    size_t packed = protobuf_c_message_pack(msg, buf + FRAME_HEADER_SIZE);
    if (packed != n) { /* only a message changed under our feet gets here */
      free(buf);
      return PP_EINTERNAL;
    }
  } else {
    memcpy(buf + FRAME_HEADER_SIZE, empty_body, sizeof empty_body);
  }
  *ret_buf = buf;
  *ret_len = FRAME_HEADER_SIZE + body;
  return 0;
}

/* ---- budgeted unpack --------------------------------------------------------------- */

/* Each block starts with its size, padded so the caller's part keeps malloc's alignment. */
#define FRAME__HDR ((sizeof(size_t) + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1))

struct frame__budget {
  size_t limit; /* most bytes (blocks + headers) held at once */
  size_t used;  /* bytes held now */
  size_t peak;  /* most bytes ever held */
};

static void *frame__budget_alloc(void *data, size_t size) {
  struct frame__budget *b = data;
  if (size > SIZE_MAX - FRAME__HDR) return NULL;
  size_t total = size + FRAME__HDR;
  if (b->used > b->limit || total > b->limit - b->used) return NULL;
  unsigned char *p = malloc(total);
  if (!p) return NULL;
  memcpy(p, &total, sizeof total);
  b->used += total;
  if (b->used > b->peak) b->peak = b->used;
  return p + FRAME__HDR;
}

static void frame__budget_free(void *data, void *ptr) {
  if (!ptr) return;
  unsigned char *p = (unsigned char *)ptr - FRAME__HDR;
  if (data) { /* during an unpack: give the bytes back to the budget */
    struct frame__budget *b = data;
    size_t total;
    memcpy(&total, p, sizeof total);
    b->used -= total;
  }
  free(p);
}

/* Frees blocks of any budget once the unpack is over: the size lives in each block. */
static ProtobufCAllocator frame__free_allocator = {
    .alloc = NULL, .free = frame__budget_free, .allocator_data = NULL};

ProtobufCMessage *frame_unpack_budgeted(const ProtobufCMessageDescriptor *desc,
                                        const uint8_t *data, size_t len, size_t budget,
                                        size_t *peak) {
  struct frame__budget b = {.limit = budget, .used = 0, .peak = 0};
  ProtobufCAllocator a = {
      .alloc = frame__budget_alloc, .free = frame__budget_free, .allocator_data = &b};
  ProtobufCMessage *m = NULL;

  if (desc && (data || len == 0)) m = protobuf_c_message_unpack(desc, &a, len, data);
  if (peak) *peak = b.peak;
  return m;
}

void frame_free_message(ProtobufCMessage *msg) {
  if (msg) protobuf_c_message_free_unpacked(msg, &frame__free_allocator);
}

Pinpool__V1__Request *frame_unpack_request(const uint8_t *data, size_t len, size_t budget) {
  return (Pinpool__V1__Request *)frame_unpack_budgeted(&pinpool__v1__request__descriptor, data,
                                                       len, budget, NULL);
}

void frame_free_request(Pinpool__V1__Request *req) {
  if (req) protobuf_c_message_free_unpacked(&req->base, &frame__free_allocator);
}

Pinpool__V1__Response *frame_unpack_response(const uint8_t *data, size_t len, size_t budget) {
  return (Pinpool__V1__Response *)frame_unpack_budgeted(&pinpool__v1__response__descriptor,
                                                        data, len, budget, NULL);
}

void frame_free_response(Pinpool__V1__Response *resp) {
  if (resp) protobuf_c_message_free_unpacked(&resp->base, &frame__free_allocator);
}

/* ---- blocking send / receive ------------------------------------------------------- */

static int frame__errno_to_pp(int e) {
  switch (e) {
  case EPIPE:
  case ECONNRESET:
  case ENOTCONN: return PP_EDISCONNECTED;
  default: return PP_EIO;
  }
}

/* After EAGAIN: on a non-blocking descriptor, wait until it is ready for events; on a
 * blocking one EAGAIN means SO_RCVTIMEO/SO_SNDTIMEO expired, which the caller chose as
 * its deadline, so give up with PP_EIO. */
static int frame__wait(int fd, short events) {
  struct pollfd p = {.fd = fd, .events = events};
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || !(fl & O_NONBLOCK)) return PP_EIO;
  for (;;) {
    int n = poll(&p, 1, -1);
    if (n >= 0) return 0;
    if (errno != EINTR) return PP_EIO;
  }
}

ssize_t frame_sendmsg_fd(int fd, const void *buf, size_t len, int pass_fd, int flags) {
  union { /* aligned storage for one SCM_RIGHTS fd */
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
  struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

  if (pass_fd >= 0) {
    memset(&ctl, 0, sizeof ctl);
    mh.msg_control = ctl.space;
    mh.msg_controllen = sizeof ctl.space;
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  return sendmsg(fd, &mh, flags | MSG_NOSIGNAL);
}

int frame_send(int fd, const ProtobufCMessage *msg, uint32_t max_frame, int pass_fd) {
  uint8_t *buf = NULL;
  size_t len = 0, off = 0;
  int rc;

  if (fd < 0) return PP_EINVAL;
  rc = frame_pack(msg, max_frame, &buf, &len);
  if (rc < 0) return rc;

  while (off < len) {
    /* The fd rides on the first sendmsg only, so the kernel attaches it to byte 0. */
    ssize_t n = frame_sendmsg_fd(fd, buf + off, len - off, off == 0 ? pass_fd : -1, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        rc = frame__wait(fd, POLLOUT);
        if (rc < 0) goto out;
        continue;
      }
      rc = frame__errno_to_pp(errno);
      goto out;
    }
    off += (size_t)n;
  }
  rc = 0;
out:
  free(buf);
  return rc;
}

/* Keep fd as rx's pending passed fd (the first one wins), closing any other. */
static void frame__keep_fd(int *keep_fd, int got) {
  if (keep_fd && *keep_fd < 0)
    *keep_fd = got;
  else
    close(got);
}

/* Collect the SCM_RIGHTS fds of one received message. */
static void frame__collect_fds(struct msghdr *mh, int *keep_fd) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < nfd; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      frame__keep_fd(keep_fd, got);
    }
  }
}

/* Read exactly len bytes into dst, keeping the first passed fd in *keep_fd (when keep_fd
 * is non-NULL and it is still -1) and closing every other one. */
static int frame__recv_exact(int fd, uint8_t *dst, size_t len, int *keep_fd) {
  size_t off = 0;
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(8 * sizeof(int))];
  } ctl;

  while (off < len) {
    struct iovec iov = {.iov_base = dst + off, .iov_len = len - off};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.space,
                        .msg_controllen = sizeof ctl.space};
    ssize_t n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        int rc = frame__wait(fd, POLLIN);
        if (rc < 0) return rc;
        continue;
      }
      return frame__errno_to_pp(errno);
    }
    frame__collect_fds(&mh, keep_fd);
    if (n == 0) return PP_EDISCONNECTED;
    off += (size_t)n;
  }
  return 0;
}

int frame_recv_response(int fd, uint32_t max_frame, Pinpool__V1__Response **ret_resp,
                        int *ret_fd) {
  uint8_t hdr[FRAME_HEADER_SIZE];
  uint8_t *payload = NULL;
  int got_fd = -1;
  int rc;

  if (fd < 0 || !ret_resp) return PP_EINVAL;
  max_frame = frame__clamp_max(max_frame);

  rc = frame__recv_exact(fd, hdr, sizeof hdr, ret_fd ? &got_fd : NULL);
  if (rc < 0) goto fail;
  uint32_t n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
               (uint32_t)hdr[3] << 24;
  if (n == 0 || n > max_frame) {
    rc = PP_EPROTO;
    goto fail;
  }
  payload = malloc(n);
  if (!payload) {
    rc = PP_ENOPRIVMEM;
    goto fail;
  }
  rc = frame__recv_exact(fd, payload, n, ret_fd ? &got_fd : NULL);
  if (rc < 0) goto fail;

  /* The daemon is trusted to send sane responses, but a Stats body can unpack to many
   * times its wire size (an empty submessage is 2 bytes on the wire, ~100 in memory):
   * allow generously relative to what actually arrived, never without bound. */
  Pinpool__V1__Response *resp = frame_unpack_response(payload, n, FRAME_RESPONSE_BUDGET(n));
  if (!resp) {
    rc = PP_EPROTO;
    goto fail;
  }
  free(payload);
  *ret_resp = resp;
  if (ret_fd) *ret_fd = got_fd;
  return 0;

fail:
  free(payload);
  if (got_fd >= 0) close(got_fd);
  return rc;
}

/* ---- buffered receive ---------------------------------------------------------------- */

#define FRAME__RX_INITIAL 4096u

void frame_rx_init(frame_rx_t *rx) {
  memset(rx, 0, sizeof *rx);
  rx->fd = -1;
  rx->wait = FRAME_RX_WAIT_BLOCK;
  rx->tmo_sock = -1;
  rx->tmo_ms = -1;
}

void frame_rx_free(frame_rx_t *rx) {
  free(rx->buf);
  if (rx->fd >= 0) close(rx->fd);
  frame_rx_init(rx);
}

/* Make fd's SO_RCVTIMEO say timeout_ms (> 0, or -1 for none), unless rx set exactly that
 * on exactly this socket before.  Fails only for a descriptor that is no socket. */
static int frame__rx_set_timeout(int fd, frame_rx_t *rx, int timeout_ms) {
  if (rx->tmo_sock == fd && rx->tmo_ms == timeout_ms) return 0;
  struct timeval tv = {0, 0}; /* 0 s: no timeout */
  if (timeout_ms > 0) {
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) return PP_EIO;
  rx->tmo_sock = fd;
  rx->tmo_ms = timeout_ms;
  return 0;
}

/* One read into buf[end, cap), waiting as rx->wait says (see frame.h, and the essay above
 * frame_rx_frame for why blocking is the default).  0 when bytes arrived; PP_EIO when the
 * wait expired. */
static int frame__rx_read(int fd, frame_rx_t *rx, int timeout_ms) {
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(8 * sizeof(int))];
  } ctl;

  for (;;) {
    int flags = MSG_CMSG_CLOEXEC;
    bool polled = rx->wait == FRAME_RX_WAIT_POLL || timeout_ms == 0;
    if (polled) {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      int ready = poll(&p, 1, timeout_ms);
      if (ready < 0) {
        if (errno == EINTR) continue;
        return PP_EIO;
      }
      if (ready == 0) return PP_EIO; /* timed out */
      flags |= MSG_DONTWAIT;
    } else if (frame__rx_set_timeout(fd, rx, timeout_ms) < 0) {
      return PP_EIO;
    }
    struct iovec iov = {.iov_base = rx->buf + rx->end, .iov_len = rx->cap - rx->end};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.space,
                        .msg_controllen = sizeof ctl.space};
    ssize_t got = recvmsg(fd, &mh, flags);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return frame__errno_to_pp(errno);
      if (polled) continue; /* readiness that another reader took: wait again */
      /* A blocking recvmsg said EAGAIN: its SO_RCVTIMEO expired, or the socket is
       * non-blocking and the reply has not come yet — then wait in poll from now on. */
      int fl = fcntl(fd, F_GETFL);
      if (fl < 0 || !(fl & O_NONBLOCK)) return PP_EIO;
      rx->wait = FRAME_RX_WAIT_POLL;
      continue;
    }
    frame__collect_fds(&mh, &rx->fd);
    if (got == 0) return PP_EDISCONNECTED;
    rx->end += (size_t)got;
    return 0;
  }
}

/* How the reader waits.  A blocking recvmsg() with SO_RCVTIMEO is one system call per reply;
 * poll(POLLIN) and then a non-blocking recvmsg() are two.  The poll shape was chosen first
 * for a reason worth knowing: a reader asleep in recvmsg() on a Unix stream socket sits on
 * the socket's one wait queue with a wake function that ignores the event, so when the peer
 * reads our request the kernel frees its buffer and wakes us for write space (sock_wfree ->
 * unix_write_space) although no reply is there yet; poll() registers for POLLIN and filters
 * that wake-up out.  But the early wake-up is not wasted when the reader's CPU takes longer
 * to wake than the peer takes to answer: it merely starts that latency sooner, the reader
 * finds the reply when it runs, and the peer's work hides behind the wake-up.  Measured on
 * a 2-vCPU KVM guest whose idle vCPUs halt (cpuidle haltpoll with guest_halt_poll_ns = 0,
 * so a wake-up costs tens of microseconds), the two ends pinned to different CPUs
 * (`pinpool-bench ipc`): perf shows each side of a blocking echo woken from the peer's
 * unix_write_space, the data-ready wake-up then finding it already runnable, still 1.0
 * voluntary context switch per round trip on each side; a 32-byte echo round trip took
 * 48 us blocking against 58 us poll-shaped, and one cache_alloc request to pinpoold 51 us
 * against 55 us (73 against 100 with the machine loaded).  Where wake-ups are fast and the
 * peer slow the early wake-up can cost a second switch instead (an earlier measurement on
 * another setup: 1.9 voluntary switches per request blocking, 1.0 with poll), so the poll
 * shape stays as FRAME_RX_WAIT_POLL and `pinpool-bench ipc` times both every run. */
int frame_rx_frame(int fd, frame_rx_t *rx, uint32_t max_frame, int timeout_ms,
                   const uint8_t **ret_frame, size_t *ret_len, int *ret_fd) {
  if (fd < 0 || !rx || !ret_frame || !ret_len) return PP_EINVAL;
  max_frame = frame__clamp_max(max_frame);

  for (;;) {
    size_t have = rx->end - rx->start;
    size_t want = FRAME_HEADER_SIZE; /* bytes from start needed to make progress */
    if (have >= FRAME_HEADER_SIZE) {
      const uint8_t *h = rx->buf + rx->start;
      uint32_t n =
          (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
      if (n == 0 || n > max_frame) return PP_EPROTO;
      want = FRAME_HEADER_SIZE + (size_t)n;
      if (have >= want) {
        /* The bytes stay where they are until the next call moves or overwrites them. */
        rx->start += want;
        if (rx->start == rx->end) rx->start = rx->end = 0;
        *ret_frame = h + FRAME_HEADER_SIZE;
        *ret_len = n;
        if (ret_fd)
          *ret_fd = rx->fd;
        else if (rx->fd >= 0)
          close(rx->fd);
        rx->fd = -1;
        return 0;
      }
    }

    /* Room for the rest of this frame: slide it to the front, grow if still short. */
    if (rx->start > 0 && rx->start + want > rx->cap) {
      memmove(rx->buf, rx->buf + rx->start, have);
      rx->end = have;
      rx->start = 0;
    }
    if (rx->start + want > rx->cap) {
      size_t ncap = rx->cap ? rx->cap : FRAME__RX_INITIAL;
      while (ncap < want)
        ncap *= 2;
      uint8_t *nbuf = realloc(rx->buf, ncap);
      if (!nbuf) return PP_ENOPRIVMEM;
      rx->buf = nbuf;
      rx->cap = ncap;
    }

    int rc = frame__rx_read(fd, rx, timeout_ms);
    if (rc < 0) return rc;
  }
}

int frame_rx_response(int fd, frame_rx_t *rx, uint32_t max_frame, int timeout_ms,
                      Pinpool__V1__Response **ret_resp, int *ret_fd) {
  const uint8_t *frame;
  size_t len;
  int got_fd = -1;

  if (!ret_resp) return PP_EINVAL;
  int rc = frame_rx_frame(fd, rx, max_frame, timeout_ms, &frame, &len, ret_fd ? &got_fd : NULL);
  if (rc < 0) return rc;
  Pinpool__V1__Response *resp = frame_unpack_response(frame, len, FRAME_RESPONSE_BUDGET(len));
  if (!resp) {
    if (got_fd >= 0) close(got_fd);
    return PP_EPROTO;
  }
  *ret_resp = resp;
  if (ret_fd) *ret_fd = got_fd;
  return 0;
}
