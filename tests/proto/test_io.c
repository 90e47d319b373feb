/* proto_io — frame_send / frame_recv_response / frame_rx over a socketpair, fd passing
 * included, with both ways frame_rx waits. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"

static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  int n = 0;
  while (readdir(d))
    n++;
  closedir(d);
  return n;
}

static void pair(int sv[2]) {
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static Pinpool__V1__Response welcome_response(Pinpool__V1__Welcome *w) {
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  *w = (Pinpool__V1__Welcome)PINPOOL__V1__WELCOME__INIT;
  w->protocol_version = PROTOCOL_VERSION;
  w->session_id = 5;
  w->region_size = 1 << 20;
  w->page_size = 4096;
  w->max_frame = FRAME_MAX_DEFAULT;
  r.id = 1;
  r.body_case = PINPOOL__V1__RESPONSE__BODY_WELCOME;
  r.welcome = w;
  return r;
}

static void memfd_passes_with_the_welcome_frame(void **state) {
  int sv[2];
  pair(sv);
  int mfd = memfd_create("proto-io-test", MFD_CLOEXEC);
  assert_true(mfd >= 0);
  Pinpool__V1__Welcome w;
  Pinpool__V1__Response r = welcome_response(&w);
  assert_int_equal(frame_send(sv[0], &r.base, FRAME_MAX_DEFAULT, mfd), 0);

  Pinpool__V1__Response *got = NULL;
  int fd = -7;
  assert_int_equal(frame_recv_response(sv[1], FRAME_MAX_DEFAULT, &got, &fd), 0);
  assert_non_null(got);
  assert_int_equal(got->body_case, PINPOOL__V1__RESPONSE__BODY_WELCOME);
  assert_int_equal(got->welcome->session_id, 5);
  assert_true(fd >= 0);
  assert_int_not_equal(fd, mfd);
  struct stat a, b;
  assert_int_equal(fstat(mfd, &a), 0);
  assert_int_equal(fstat(fd, &b), 0);
  assert_int_equal(a.st_ino, b.st_ino);
  assert_int_equal(a.st_dev, b.st_dev);
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  frame_free_response(got);
  close(fd);
  close(mfd);
  close(sv[0]);
  close(sv[1]);
}

static void passed_fd_is_closed_when_the_caller_wants_none(void **state) {
  int sv[2];
  pair(sv);
  int mfd = memfd_create("proto-io-test", MFD_CLOEXEC);
  assert_true(mfd >= 0);
  int before = open_fds();
  Pinpool__V1__Welcome w;
  Pinpool__V1__Response r = welcome_response(&w);
  /* two frames, each carrying the fd: one with ret_fd NULL, one asked for */
  assert_int_equal(frame_send(sv[0], &r.base, 0, mfd), 0);
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_recv_response(sv[1], 0, &got, NULL), 0);
  frame_free_response(got);
  assert_int_equal(open_fds(), before);
  close(mfd);
  close(sv[0]);
  close(sv[1]);
}

static void frame_without_fd_reports_minus_one(void **state) {
  int sv[2];
  pair(sv);
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  r.id = 77;
  r.status = PINPOOL__V1__STATUS__NOT_FOUND;
  r.message = "no such name";
  assert_int_equal(frame_send(sv[0], &r.base, 0, -1), 0);
  Pinpool__V1__Response *got = NULL;
  int fd = 1234;
  assert_int_equal(frame_recv_response(sv[1], 0, &got, &fd), 0);
  assert_int_equal(fd, -1);
  assert_int_equal(got->id, 77);
  assert_int_equal(got->status, PINPOOL__V1__STATUS__NOT_FOUND);
  assert_string_equal(got->message, "no such name");
  frame_free_response(got);
  close(sv[0]);
  close(sv[1]);
}

static void recv_reports_disconnect_on_eof_and_mid_frame(void **state) {
  int sv[2];
  pair(sv);
  close(sv[0]);
  Pinpool__V1__Response *got = (Pinpool__V1__Response *)0x1;
  int fd = 55;
  assert_int_equal(frame_recv_response(sv[1], 0, &got, &fd), PP_EDISCONNECTED);
  assert_ptr_equal(got, (Pinpool__V1__Response *)0x1);
  assert_int_equal(fd, 55);
  close(sv[1]);

  pair(sv);
  const uint8_t half[6] = {10, 0, 0, 0, 0x08, 0x01}; /* promises 10 bytes, sends 2 */
  assert_int_equal(write(sv[0], half, sizeof half), (ssize_t)sizeof half);
  close(sv[0]);
  assert_int_equal(frame_recv_response(sv[1], 0, &got, &fd), PP_EDISCONNECTED);
  close(sv[1]);
}

static void recv_rejects_zero_oversized_and_garbage_frames(void **state) {
  static const uint8_t frames[][8] = {
      {0, 0, 0, 0},                         /* zero length */
      {0x01, 0x00, 0x01, 0x00},             /* 65537 > 64 KiB */
      {4, 0, 0, 0, 0x0f, 0xff, 0xff, 0xff}, /* wire type 7 */
  };
  static const size_t lens[] = {4, 4, 8};
  for (size_t i = 0; i < 3; i++) {
    int sv[2];
    pair(sv);
    assert_int_equal(write(sv[0], frames[i], lens[i]), (ssize_t)lens[i]);
    Pinpool__V1__Response *got = NULL;
    assert_int_equal(frame_recv_response(sv[1], FRAME_MAX_DEFAULT, &got, NULL), PP_EPROTO);
    assert_null(got);
    close(sv[0]);
    close(sv[1]);
  }
}

static void recv_reads_exactly_one_frame_leaving_the_next(void **state) {
  int sv[2];
  pair(sv);
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  for (r.id = 1; r.id <= 3; r.id++)
    assert_int_equal(frame_send(sv[0], &r.base, 0, -1), 0);
  for (uint64_t id = 1; id <= 3; id++) {
    Pinpool__V1__Response *got = NULL;
    assert_int_equal(frame_recv_response(sv[1], 0, &got, NULL), 0);
    assert_int_equal(got->id, id);
    frame_free_response(got);
  }
  close(sv[0]);
  close(sv[1]);
}

static void send_finishes_frame_after_partial_writes_on_nonblocking_socket(void **state) {
  int sv[2];
  pair(sv);
  int small = 4096;
  assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
  enum { N = 6000 }; /* ~ 48 KB packed: many times the send buffer */
  uint64_t *offs = malloc(N * sizeof *offs);
  assert_non_null(offs);
  for (int i = 0; i < N; i++)
    offs[i] = (uint64_t)i << 40;
  Pinpool__V1__Objects o = PINPOOL__V1__OBJECTS__INIT;
  o.n_offsets = N;
  o.offsets = offs;
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  r.id = 8;
  r.body_case = PINPOOL__V1__RESPONSE__BODY_OBJECTS;
  r.objects = &o;

  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(sv[1]);
    _exit(frame_send(sv[0], &r.base, FRAME_MAX_DEFAULT, -1) == 0 ? 0 : 1);
  }
  close(sv[0]);
  usleep(20000); /* let the child fill the buffer and hit EAGAIN */
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_recv_response(sv[1], FRAME_MAX_DEFAULT, &got, NULL), 0);
  assert_int_equal(got->objects->n_offsets, N);
  assert_int_equal(got->objects->offsets[N - 1], (uint64_t)(N - 1) << 40);
  frame_free_response(got);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  free(offs);
  close(sv[1]);
}

static void send_to_closed_peer_fails_without_sigpipe(void **state) {
  int sv[2];
  pair(sv);
  close(sv[1]);
  /* SIGPIPE at its default disposition would kill the test: MSG_NOSIGNAL must hold */
  signal(SIGPIPE, SIG_DFL);
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  r.id = 1;
  assert_int_equal(frame_send(sv[0], &r.base, 0, -1), PP_EDISCONNECTED);
  close(sv[0]);
}

static void recv_gives_up_when_the_socket_timeout_expires(void **state) {
  int sv[2];
  pair(sv);
  struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};
  assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_recv_response(sv[1], 0, &got, NULL), PP_EIO); /* nothing sent */
  const uint8_t half[3] = {10, 0, 0}; /* and in the middle of a header */
  assert_int_equal(write(sv[0], half, sizeof half), (ssize_t)sizeof half);
  assert_int_equal(frame_recv_response(sv[1], 0, &got, NULL), PP_EIO);
  assert_null(got);
  close(sv[0]);
  close(sv[1]);
}

static void send_refuses_bad_arguments(void **state) {
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  assert_int_equal(frame_send(-1, &r.base, 0, -1), PP_EINVAL);
  assert_int_equal(frame_send(0, NULL, 0, -1), PP_EINVAL);
  assert_int_equal(frame_recv_response(-1, 0, NULL, NULL), PP_EINVAL);
}

/* ---- frame_rx: buffered receiving ---------------------------------------------------- */

static void rx_returns_pipelined_frames_one_per_call(void **state) {
  int sv[2];
  pair(sv);
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  for (r.id = 1; r.id <= 5; r.id++)
    assert_int_equal(frame_send(sv[0], &r.base, 0, -1), 0);
  frame_rx_t rx;
  frame_rx_init(&rx);
  for (uint64_t id = 1; id <= 5; id++) {
    Pinpool__V1__Response *got = NULL;
    int fd = 9;
    assert_int_equal(frame_rx_response(sv[1], &rx, 0, -1, &got, &fd), 0);
    assert_int_equal(got->id, id);
    assert_int_equal(fd, -1);
    frame_free_response(got);
  }
  assert_int_equal(rx.start, rx.end); /* nothing left over */
  close(sv[0]);
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, -1, &got, NULL), PP_EDISCONNECTED);
  frame_rx_free(&rx);
  close(sv[1]);
}

static void rx_reports_the_welcome_fd_with_the_welcome_only(void **state) {
  int sv[2];
  pair(sv);
  int mfd = memfd_create("proto-io-rx", MFD_CLOEXEC);
  assert_true(mfd >= 0);
  Pinpool__V1__Welcome w;
  Pinpool__V1__Response r = welcome_response(&w);
  assert_int_equal(frame_send(sv[0], &r.base, 0, mfd), 0);
  Pinpool__V1__Response r2 = PINPOOL__V1__RESPONSE__INIT;
  r2.id = 2;
  assert_int_equal(frame_send(sv[0], &r2.base, 0, -1), 0);
  frame_rx_t rx;
  frame_rx_init(&rx);
  Pinpool__V1__Response *got = NULL;
  int fd = -1;
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, -1, &got, &fd), 0);
  assert_int_equal(got->body_case, PINPOOL__V1__RESPONSE__BODY_WELCOME);
  assert_true(fd >= 0);
  struct stat a, b;
  assert_int_equal(fstat(mfd, &a), 0);
  assert_int_equal(fstat(fd, &b), 0);
  assert_int_equal(a.st_ino, b.st_ino);
  close(fd);
  frame_free_response(got);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, -1, &got, &fd), 0);
  assert_int_equal(got->id, 2);
  assert_int_equal(fd, -1);
  frame_free_response(got);
  frame_rx_free(&rx);
  close(mfd);
  close(sv[0]);
  close(sv[1]);
}

static void rx_assembles_a_large_frame_sent_in_small_pieces(void **state) {
  int sv[2];
  pair(sv);
  enum { N = 7000 }; /* ~ 56 KB: beyond the initial buffer, arriving in pieces */
  uint64_t *offs = malloc(N * sizeof *offs);
  assert_non_null(offs);
  for (int i = 0; i < N; i++)
    offs[i] = (uint64_t)i << 40;
  Pinpool__V1__Objects o = PINPOOL__V1__OBJECTS__INIT;
  o.n_offsets = N;
  o.offsets = offs;
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  r.id = 3;
  r.body_case = PINPOOL__V1__RESPONSE__BODY_OBJECTS;
  r.objects = &o;
  uint8_t *buf;
  size_t len;
  assert_int_equal(frame_pack(&r.base, 0, &buf, &len), 0);
  Pinpool__V1__Response small = PINPOOL__V1__RESPONSE__INIT;
  small.id = 4;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) { /* a small frame first, then the big one a few hundred bytes at a time */
    close(sv[1]);
    if (frame_send(sv[0], &small.base, 0, -1)) _exit(1);
    for (size_t off = 0; off < len; off += 777) {
      size_t k = len - off < 777 ? len - off : 777;
      if (write(sv[0], buf + off, k) != (ssize_t)k) _exit(2);
      if (off % (777 * 8) == 0) usleep(1000);
    }
    _exit(0);
  }
  close(sv[0]);
  frame_rx_t rx;
  frame_rx_init(&rx);
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, -1, &got, NULL), 0);
  assert_int_equal(got->id, 4);
  frame_free_response(got);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, -1, &got, NULL), 0);
  assert_int_equal(got->id, 3);
  assert_int_equal(got->objects->n_offsets, N);
  assert_int_equal(got->objects->offsets[N - 1], (uint64_t)(N - 1) << 40);
  frame_free_response(got);
  assert_true(rx.cap <= FRAME_HEADER_SIZE + FRAME_MAX_DEFAULT);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  frame_rx_free(&rx);
  free(buf);
  free(offs);
  close(sv[1]);
}

static void rx_rejects_oversized_and_truncated_frames(void **state) {
  int sv[2];
  pair(sv);
  const uint8_t big[4] = {0x01, 0x00, 0x01, 0x00}; /* 65537 */
  assert_int_equal(write(sv[0], big, 4), 4);
  frame_rx_t rx;
  frame_rx_init(&rx);
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_rx_response(sv[1], &rx, FRAME_MAX_DEFAULT, -1, &got, NULL), PP_EPROTO);
  assert_null(got);
  frame_rx_free(&rx);
  close(sv[0]);
  close(sv[1]);

  pair(sv);
  const uint8_t half[6] = {10, 0, 0, 0, 0x08, 0x01};
  assert_int_equal(write(sv[0], half, sizeof half), (ssize_t)sizeof half);
  close(sv[0]);
  frame_rx_init(&rx);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, -1, &got, NULL), PP_EDISCONNECTED);
  frame_rx_free(&rx);
  close(sv[1]);
}

/* A reply that never comes: the timeout bounds the wait and says PP_EIO; a reply that
 * arrives before it is read as usual, on a blocking socket too. */
static void rx_gives_up_when_its_timeout_expires(void **state) {
  (void)state;
  int sv[2];
  pair(sv);
  frame_rx_t rx;
  frame_rx_init(&rx);
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 50, &got, NULL), PP_EIO);
  assert_null(got);

  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  r.id = 9;
  assert_int_equal(frame_send(sv[0], &r.base, 0, -1), 0);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 1000, &got, NULL), 0);
  assert_non_null(got);
  assert_int_equal(got->id, 9);
  frame_free_response(got);
  frame_rx_free(&rx);
  close(sv[0]);
  close(sv[1]);
}

/* The timeout a blocking wait leaves on the socket, in ms (0: none). */
static long rcvtimeo_ms(int fd) {
  struct timeval tv;
  socklen_t len = sizeof tv;
  assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, &len), 0);
  return (long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* By default a read waits in a blocking recvmsg whose SO_RCVTIMEO is the caller's timeout,
 * set when the timeout changes and cleared for "no limit". */
static void rx_blocking_wait_puts_the_timeout_on_the_socket(void **state) {
  (void)state;
  int sv[2];
  pair(sv);
  frame_rx_t rx;
  frame_rx_init(&rx);
  assert_int_equal(rx.wait, FRAME_RX_WAIT_BLOCK);
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT, *got = NULL;
  r.id = 1;
  assert_int_equal(frame_send(sv[0], &r.base, 0, -1), 0);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 1500, &got, NULL), 0);
  assert_int_equal(got->id, 1);
  frame_free_response(got);
  assert_int_equal(rcvtimeo_ms(sv[1]), 1500);
  r.id = 2;
  assert_int_equal(frame_send(sv[0], &r.base, 0, -1), 0);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, -1, &got, NULL), 0);
  assert_int_equal(got->id, 2);
  frame_free_response(got);
  assert_int_equal(rcvtimeo_ms(sv[1]), 0);
  assert_int_equal(rx.wait, FRAME_RX_WAIT_BLOCK);
  frame_rx_free(&rx);
  close(sv[0]);
  close(sv[1]);
}

/* The poll shape reads the same frames, passed fd and timeout included, and leaves the
 * socket's SO_RCVTIMEO alone. */
static void rx_poll_wait_reads_frames_fds_and_times_out_alike(void **state) {
  (void)state;
  int sv[2];
  pair(sv);
  frame_rx_t rx;
  frame_rx_init(&rx);
  rx.wait = FRAME_RX_WAIT_POLL;
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 30, &got, NULL), PP_EIO);
  int mfd = memfd_create("proto-io-rx-poll", MFD_CLOEXEC);
  assert_true(mfd >= 0);
  Pinpool__V1__Welcome w;
  Pinpool__V1__Response r = welcome_response(&w);
  assert_int_equal(frame_send(sv[0], &r.base, 0, mfd), 0);
  Pinpool__V1__Response r2 = PINPOOL__V1__RESPONSE__INIT;
  r2.id = 2;
  assert_int_equal(frame_send(sv[0], &r2.base, 0, -1), 0);
  int fd = -1;
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 1000, &got, &fd), 0);
  assert_int_equal(got->body_case, PINPOOL__V1__RESPONSE__BODY_WELCOME);
  assert_true(fd >= 0);
  close(fd);
  frame_free_response(got);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 1000, &got, &fd), 0);
  assert_int_equal(got->id, 2);
  assert_int_equal(fd, -1);
  frame_free_response(got);
  assert_int_equal(rcvtimeo_ms(sv[1]), 0);
  frame_rx_free(&rx);
  close(mfd);
  close(sv[0]);
  close(sv[1]);
}

/* On a non-blocking socket a reply that comes late is still waited for (up to the
 * timeout), not mistaken for an expired one; rx goes on waiting in poll. */
static void rx_waits_for_a_late_reply_on_a_nonblocking_socket(void **state) {
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  frame_rx_t rx;
  frame_rx_init(&rx);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
    r.id = 7;
    usleep(50 * 1000);
    _exit(frame_send(sv[0], &r.base, 0, -1) == 0 ? 0 : 1);
  }
  Pinpool__V1__Response *got = NULL;
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 5000, &got, NULL), 0);
  assert_int_equal(got->id, 7);
  frame_free_response(got);
  assert_int_equal(rx.wait, FRAME_RX_WAIT_POLL);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 30, &got, NULL), PP_EIO);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  frame_rx_free(&rx);
  close(sv[0]);
  close(sv[1]);
}

/* A timeout of 0 takes what is there and does not wait for more. */
static void rx_with_timeout_zero_does_not_wait(void **state) {
  (void)state;
  int sv[2];
  pair(sv);
  frame_rx_t rx;
  frame_rx_init(&rx);
  Pinpool__V1__Response *got = NULL;
  uint64_t t0 = (uint64_t)time(NULL);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 0, &got, NULL), PP_EIO);
  assert_true((uint64_t)time(NULL) - t0 <= 1);
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  r.id = 3;
  assert_int_equal(frame_send(sv[0], &r.base, 0, -1), 0);
  assert_int_equal(frame_rx_response(sv[1], &rx, 0, 0, &got, NULL), 0);
  assert_int_equal(got->id, 3);
  frame_free_response(got);
  frame_rx_free(&rx);
  close(sv[0]);
  close(sv[1]);
}

/* frame_rx_frame hands out each frame's payload as it came, one per call, whatever message
 * it holds. */
static void rx_frame_returns_each_payload_unparsed(void **state) {
  (void)state;
  int sv[2];
  pair(sv);
  const uint8_t wire[] = {3, 0, 0, 0, 'a', 'b', 'c', 1, 0, 0, 0, 'z'};
  assert_int_equal(write(sv[0], wire, sizeof wire), (ssize_t)sizeof wire);
  frame_rx_t rx;
  frame_rx_init(&rx);
  const uint8_t *f = NULL;
  size_t len = 0;
  int fd = 9;
  assert_int_equal(frame_rx_frame(sv[1], &rx, 0, -1, &f, &len, &fd), 0);
  assert_int_equal(len, 3);
  assert_memory_equal(f, "abc", 3);
  assert_int_equal(fd, -1);
  assert_int_equal(frame_rx_frame(sv[1], &rx, 0, -1, &f, &len, NULL), 0);
  assert_int_equal(len, 1);
  assert_memory_equal(f, "z", 1);
  assert_int_equal(rx.start, rx.end);
  frame_rx_free(&rx);
  close(sv[0]);
  close(sv[1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(memfd_passes_with_the_welcome_frame),
      cmocka_unit_test(passed_fd_is_closed_when_the_caller_wants_none),
      cmocka_unit_test(frame_without_fd_reports_minus_one),
      cmocka_unit_test(recv_reports_disconnect_on_eof_and_mid_frame),
      cmocka_unit_test(recv_rejects_zero_oversized_and_garbage_frames),
      cmocka_unit_test(recv_reads_exactly_one_frame_leaving_the_next),
      cmocka_unit_test(send_finishes_frame_after_partial_writes_on_nonblocking_socket),
      cmocka_unit_test(send_to_closed_peer_fails_without_sigpipe),
      cmocka_unit_test(recv_gives_up_when_the_socket_timeout_expires),
      cmocka_unit_test(send_refuses_bad_arguments),
      cmocka_unit_test(rx_returns_pipelined_frames_one_per_call),
      cmocka_unit_test(rx_reports_the_welcome_fd_with_the_welcome_only),
      cmocka_unit_test(rx_assembles_a_large_frame_sent_in_small_pieces),
      cmocka_unit_test(rx_rejects_oversized_and_truncated_frames),
      cmocka_unit_test(rx_gives_up_when_its_timeout_expires),
      cmocka_unit_test(rx_blocking_wait_puts_the_timeout_on_the_socket),
      cmocka_unit_test(rx_poll_wait_reads_frames_fds_and_times_out_alike),
      cmocka_unit_test(rx_waits_for_a_late_reply_on_a_nonblocking_socket),
      cmocka_unit_test(rx_with_timeout_zero_does_not_wait),
      cmocka_unit_test(rx_frame_returns_each_payload_unparsed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
