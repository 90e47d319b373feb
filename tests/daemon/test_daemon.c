/*
 * test_daemon.c — pinpoold end to end: a real daemon on a temporary socket, spoken to over
 * the wire protocol.  One daemon per test (tests/common/testd.h); every test ends with
 * SIGTERM and expects exit status 0 and the socket gone.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testd.h"
#include "wire.h"

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define REGION (16 * MIB)

static int setup(void **state) {
  testd_t *d = calloc(1, sizeof *d);
  if (!d || testd_start(d, NULL) != 0) {
    free(d);
    return -1;
  }
  *state = d;
  return 0;
}

/* Stopping is a check too: exit status 0 and the socket gone, or the test fails. */
static int teardown(void **state) {
  testd_t *d = *state;
  int rc = testd_stop(d);
  free(d);
  return rc;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Free bytes settle after a disconnect once the daemon has read the EOF. */
static uint64_t wait_free_bytes(testd_t *d, uint64_t want) {
  uint64_t got = 0;
  for (int i = 0; i < 200; i++) {
    if ((got = testd_free_bytes(d)) == want) break;
    sleep_ms(10);
  }
  return got;
}

/* ---- handshake and buffers ---------------------------------------------------------- */

static void handshake_passes_a_memfd_that_maps_the_region(void **state) {
  testd_t *d = *state;
  wire_t c;
  struct stat st;

  assert_int_equal(wire_open(&c, d->sock, "t"), 0);
  assert_int_equal(c.region_size, REGION);
  assert_int_equal(c.page_size, 4096);
  assert_true(c.session_id > 0);
  assert_int_equal(fstat(c.memfd, &st), 0);
  assert_int_equal((uint64_t)st.st_size, REGION);
  /* Sealed against shrinking: the region cannot be pulled from under other clients. */
  assert_true(ftruncate(c.memfd, 4096) != 0);
  c.base[REGION - 1] = 0x5a;
  assert_int_equal(c.base[REGION - 1], 0x5a);
  wire_close(&c);
}

static void alloc_rounds_up_to_a_block_and_free_gives_the_bytes_back(void **state) {
  testd_t *d = *state;
  uint64_t before = testd_free_bytes(d);
  wire_t c;
  resp_t *r;
  uint64_t h;

  assert_int_equal(wire_open(&c, d->sock, "t"), 0);
  assert_int_equal(wire_alloc(&c, 5000, 0, NULL, &r), 0);
  assert_int_equal(r->buffer->size, 8192);
  assert_int_equal(r->buffer->offset % 8192, 0);
  assert_true(r->buffer->offset + 8192 <= REGION);
  h = r->buffer->handle;
  assert_true(h > 0);
  memset(c.base + r->buffer->offset, 0xab, 8192);
  frame_free_response(r);
  assert_int_equal(testd_free_bytes(d), before - 8192);
  assert_int_equal(wire_free(&c, h), 0);
  assert_int_equal(testd_free_bytes(d), before);
  wire_close(&c);
}

static void handles_are_never_reused(void **state) {
  testd_t *d = *state;
  wire_t c;
  resp_t *r;
  uint64_t h1, h2;

  assert_int_equal(wire_open(&c, d->sock, "t"), 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, &r), 0);
  h1 = r->buffer->handle;
  frame_free_response(r);
  assert_int_equal(wire_free(&c, h1), 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, &r), 0);
  h2 = r->buffer->handle;
  frame_free_response(r);
  assert_true(h2 != h1);
  assert_int_equal(wire_free(&c, h1), PP_ENOENT);
  assert_int_equal(wire_free(&c, h2), 0);
  wire_close(&c);
}

static void zero_flag_hands_out_a_zeroed_block(void **state) {
  testd_t *d = *state;
  wire_t c;
  resp_t *r;
  uint64_t off;

  assert_int_equal(wire_open(&c, d->sock, "t"), 0);
  /* Dirty the whole region, so whatever block comes back was dirty. */
  memset(c.base, 0xee, REGION);
  assert_int_equal(wire_alloc(&c, 64 * KIB, 0x2, NULL, &r), 0);
  off = r->buffer->offset;
  for (uint64_t i = 0; i < r->buffer->size; i++)
    if (c.base[off + i])
      fail_msg("byte %" PRIu64 " of a ZERO buffer is 0x%x", i, c.base[off + i]);
  frame_free_response(r);
  wire_close(&c);
}

static void named_buffer_is_shared_and_lives_until_its_last_holder_frees_it(void **state) {
  testd_t *d = *state;
  uint64_t before = testd_free_bytes(d);
  wire_t a, b;
  resp_t *ra, *rb;
  uint64_t off;

  assert_int_equal(wire_open(&a, d->sock, "producer"), 0);
  assert_int_equal(wire_open(&b, d->sock, "consumer"), 0);
  assert_int_equal(wire_alloc(&a, 32 * KIB, 0, "frames", &ra), 0);
  assert_string_equal(ra->buffer->name, "frames");
  off = ra->buffer->offset;
  for (int i = 0; i < 32 * 1024; i++)
    a.base[off + i] = (uint8_t)(i * 7);

  assert_int_equal(wire_lookup(&b, "frames", &rb), 0);
  assert_int_equal(rb->buffer->offset, off);
  assert_int_equal(rb->buffer->handle, ra->buffer->handle);
  for (int i = 0; i < 32 * 1024; i++)
    assert_int_equal(b.base[off + i], (uint8_t)(i * 7));

  /* The producer lets go: the consumer still holds it, the name still resolves. */
  assert_int_equal(wire_free(&a, ra->buffer->handle), 0);
  assert_int_equal(testd_free_bytes(d), before - 32 * KIB);
  for (int i = 0; i < 32 * 1024; i++)
    assert_int_equal(b.base[off + i], (uint8_t)(i * 7));
  assert_int_equal(wire_lookup(&a, "frames", NULL), 0);
  assert_int_equal(wire_free(&a, ra->buffer->handle), 0);

  /* The last holder frees it: block and name are gone. */
  assert_int_equal(wire_free(&b, rb->buffer->handle), 0);
  assert_int_equal(testd_free_bytes(d), before);
  assert_int_equal(wire_lookup(&b, "frames", NULL), PP_ENOENT);
  frame_free_response(ra);
  frame_free_response(rb);
  wire_close(&a);
  wire_close(&b);
}

static void bad_or_taken_names_are_refused(void **state) {
  testd_t *d = *state;
  wire_t a;
  char long_name[300];
  assert_int_equal(wire_open(&a, d->sock, "t"), 0);
  /* Names must be UTF-8 (proto3 strings) and at most 255 bytes. */
  assert_int_equal(wire_alloc(&a, 4096, 0, "caf\xc3\xa9", NULL), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, "bad\xc3", NULL), PP_EINVAL);
  assert_int_equal(wire_alloc(&a, 4096, 0, "bad\xed\xa0\x80", NULL), PP_EINVAL);
  assert_int_equal(wire_cache_open(&a, "bad\xff", 64, 0, NULL), PP_EINVAL);
  memset(long_name, 'n', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  assert_int_equal(wire_alloc(&a, 4096, 0, long_name, NULL), PP_EINVAL);
  assert_int_equal(wire_alloc(&a, 4096, 0, "dup", NULL), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, "dup", NULL), PP_EEXIST);
  wire_close(&a);
}

static void named_buffer_goes_with_its_last_holder_disconnecting(void **state) {
  testd_t *d = *state;
  uint64_t before = testd_free_bytes(d);
  wire_t a, b;

  assert_int_equal(wire_open(&a, d->sock, "a"), 0);
  assert_int_equal(wire_open(&b, d->sock, "b"), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, "n", NULL), 0);
  assert_int_equal(wire_lookup(&b, "n", NULL), 0);
  wire_close(&a);
  assert_int_equal(wire_lookup(&b, "n", NULL), 0); /* still there: b holds it */
  wire_close(&b);
  assert_int_equal(wait_free_bytes(d, before), before);
  assert_int_equal(wire_open(&a, d->sock, "a"), 0);
  assert_int_equal(wire_lookup(&a, "n", NULL), PP_ENOENT);
  wire_close(&a);
}

/* ---- crash reclaim ------------------------------------------------------------------ */

static void killed_client_holdings_all_return(void **state) {
  testd_t *d = *state;
  uint64_t before = testd_free_bytes(d);
  int ready[2];
  pid_t pid;
  char byte;

  assert_int_equal(pipe(ready), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    wire_t c;
    uint64_t offs[300];
    uint32_t id;
    size_t n;
    if (wire_open(&c, d->sock, "victim")) _exit(1);
    for (int i = 0; i < 20; i++)
      if (wire_alloc(&c, (uint64_t)(i + 1) * 3000, 0, i == 0 ? "victim-buf" : NULL, NULL))
        _exit(2);
    if (wire_cache_open(&c, "victim-objs", 96, 0, &id)) _exit(3);
    if (wire_cache_alloc(&c, id, 300, offs, &n) || n != 300) _exit(4);
    if (wire_cache_free(&c, id, offs, 50, NULL, 0)) _exit(5); /* some parked in magazines */
    if (write(ready[1], "r", 1) != 1) _exit(6);
    pause();
    _exit(0);
  }
  close(ready[1]);
  assert_int_equal(read(ready[0], &byte, 1), 1);
  close(ready[0]);
  assert_true(testd_free_bytes(d) < before);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  assert_int_equal(wait_free_bytes(d, before), before);

  wire_t c;
  assert_int_equal(wire_open(&c, d->sock, "after"), 0);
  assert_int_equal(wire_lookup(&c, "victim-buf", NULL), PP_ENOENT);
  wire_close(&c);
}

/* ---- refusals, each leaving state unchanged ---------------------------------------- */

static void foreign_handle_cannot_be_freed_and_is_not_found(void **state) {
  testd_t *d = *state;
  wire_t a, b;
  resp_t *r;
  uint64_t free_after_alloc;

  assert_int_equal(wire_open(&a, d->sock, "owner"), 0);
  assert_int_equal(wire_open(&b, d->sock, "thief"), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, NULL, &r), 0);
  free_after_alloc = testd_free_bytes(d);
  /* Handles are private to their session: another's is one this session does not hold. */
  assert_int_equal(wire_free(&b, r->buffer->handle), PP_ENOENT);
  assert_int_equal(wire_free(&b, 987654321), PP_ENOENT);
  assert_int_equal(testd_free_bytes(d), free_after_alloc);
  assert_int_equal(wire_free(&a, r->buffer->handle), 0);
  frame_free_response(r);
  wire_close(&a);
  wire_close(&b);
}

static void double_free_is_not_found_and_harmless(void **state) {
  testd_t *d = *state;
  wire_t a;
  resp_t *r;
  uint64_t before = testd_free_bytes(d);

  assert_int_equal(wire_open(&a, d->sock, "t"), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, NULL, &r), 0);
  assert_int_equal(wire_free(&a, r->buffer->handle), 0);
  assert_int_equal(wire_free(&a, r->buffer->handle), PP_ENOENT);
  assert_int_equal(testd_free_bytes(d), before);
  frame_free_response(r);
  wire_close(&a);
}

static void zero_oversized_and_bad_flag_allocs_are_refused(void **state) {
  testd_t *d = *state;
  uint64_t before = testd_free_bytes(d);
  wire_t a;

  assert_int_equal(wire_open(&a, d->sock, "t"), 0);
  assert_int_equal(wire_alloc(&a, 0, 0, NULL, NULL), PP_EINVAL);
  assert_int_equal(wire_alloc(&a, REGION + 1, 0, NULL, NULL), PP_ERANGE);
  assert_int_equal(wire_alloc(&a, UINT64_MAX, 0, NULL, NULL), PP_ERANGE);
  assert_int_equal(wire_alloc(&a, 4096, 0x80, NULL, NULL), PP_EINVAL);
  assert_int_equal(testd_free_bytes(d), before);
  /* The whole region is one block: it can be had, and then nothing more. */
  assert_int_equal(wire_alloc(&a, REGION, 0, NULL, NULL), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, NULL, NULL), PP_ENOMEM);
  wire_close(&a);
}

static void contiguous_flag_is_granted_only_with_physically_consecutive_pages(void **state) {
  testd_t *d = *state;
  wire_t a;
  resp_t *r;
  int rc;

  assert_int_equal(wire_open(&a, d->sock, "t"), 0);
  /* Within a page: always contiguous. */
  assert_int_equal(wire_alloc(&a, 4096, 0x1, NULL, &r), 0);
  assert_true(r->buffer->contiguous);
  frame_free_response(r);
  /* Larger than a 4 KiB page: granted only with physically consecutive pages. */
  rc = wire_alloc(&a, 1 * MIB, 0x1, NULL, &r);
  if (rc == 0) {
    assert_true(r->buffer->contiguous);
    assert_true(a.phys_known);
    assert_int_equal(r->buffer->n_segments, 1);
    assert_int_equal(r->buffer->segments[0]->length, 1 * MIB);
  } else {
    assert_int_equal(rc, PP_ENOCONTIG);
  }
  frame_free_response(r);
  wire_close(&a);
}

static void unknown_caches_and_absurd_counts_are_refused(void **state) {
  testd_t *d = *state;
  wire_t a;
  uint32_t id;
  uint64_t off;

  assert_int_equal(wire_open(&a, d->sock, "t"), 0);
  assert_int_equal(wire_cache_alloc(&a, 4242, 1, NULL, NULL), PP_ENOENT);
  assert_int_equal(wire_cache_free(&a, 4242, &off, 0, NULL, 0), PP_ENOENT);
  assert_int_equal(wire_cache_open(&a, "c", 64, 0, &id), 0);
  assert_int_equal(wire_cache_alloc(&a, id, 0, NULL, NULL), PP_ERANGE);
  assert_int_equal(wire_cache_alloc(&a, id, 1025, NULL, NULL), PP_ERANGE);
  assert_int_equal(wire_cache_alloc(&a, id, UINT32_MAX, NULL, NULL), PP_ERANGE);
  assert_int_equal(wire_cache_open(&a, "", 64, 0, NULL), PP_EINVAL);
  assert_int_equal(wire_cache_open(&a, "bad-align", 64, 3, NULL), PP_EINVAL);
  assert_int_equal(wire_cache_open(&a, "huge-objects", UINT32_MAX, 0, NULL), PP_ERANGE);
  wire_close(&a);
}

static void cache_open_is_idempotent_by_name_and_geometry(void **state) {
  testd_t *d = *state;
  wire_t a, b;
  uint32_t id1, id2;

  assert_int_equal(wire_open(&a, d->sock, "a"), 0);
  assert_int_equal(wire_open(&b, d->sock, "b"), 0);
  assert_int_equal(wire_cache_open(&a, "pkt", 256, 64, &id1), 0);
  assert_int_equal(wire_cache_open(&b, "pkt", 256, 64, &id2), 0);
  assert_int_equal(id1, id2);
  assert_int_equal(wire_cache_open(&b, "pkt", 512, 64, NULL), PP_EGEOMETRY);
  wire_close(&a);
  wire_close(&b);
}

static void cache_free_is_all_or_nothing_and_names_the_bad_offset(void **state) {
  testd_t *d = *state;
  wire_t a, b;
  uint64_t offs[8], bad[8], other[1];
  uint32_t id, id2;
  size_t n;
  char msg[256], want[64];

  assert_int_equal(wire_open(&a, d->sock, "a"), 0);
  assert_int_equal(wire_open(&b, d->sock, "b"), 0);
  assert_int_equal(wire_cache_open(&a, "objs", 64, 0, &id), 0);
  assert_int_equal(wire_cache_alloc(&a, id, 4, offs, &n), 0);
  assert_int_equal(n, 4);
  for (size_t i = 0; i < n; i++) {
    assert_true(offs[i] % 8 == 0 && offs[i] < REGION);
    memset(a.base + offs[i], (int)i, 64);
  }
  assert_int_equal(wire_cache_open(&b, "objs", 64, 0, &id2), 0); /* same uid: same cache */
  assert_int_equal(id2, id);
  assert_int_equal(wire_cache_alloc(&b, id, 1, other, &n), 0);

  /* A bogus offset at the end: nothing freed, the message names it. */
  memcpy(bad, offs, sizeof offs[0] * 3);
  bad[3] = offs[3] + 1;
  assert_int_equal(wire_cache_free(&a, id, bad, 4, msg, sizeof msg), PP_ENOENT);
  snprintf(want, sizeof want, "%" PRIu64, bad[3]);
  assert_non_null(strstr(msg, want));
  /* Another session's object: not found, as if nobody held it, and nothing freed. */
  bad[3] = other[0];
  assert_int_equal(wire_cache_free(&a, id, bad, 4, msg, sizeof msg), PP_ENOENT);
  snprintf(want, sizeof want, "%" PRIu64, other[0]);
  assert_non_null(strstr(msg, want));
  /* The same object twice in one batch. */
  bad[3] = offs[0];
  assert_int_equal(wire_cache_free(&a, id, bad, 4, msg, sizeof msg), PP_EDOUBLEFREE);
  /* All four are still ours: freeing them all works, once. */
  assert_int_equal(wire_cache_free(&a, id, offs, 4, NULL, 0), 0);
  assert_int_equal(wire_cache_free(&a, id, offs, 1, NULL, 0), PP_ENOENT);
  assert_int_equal(wire_cache_free(&b, id, other, 1, NULL, 0), 0);
  wire_close(&a);
  wire_close(&b);
}

static void objects_of_a_cache_are_distinct_and_inside_the_region(void **state) {
  testd_t *d = *state;
  wire_t a;
  uint64_t offs[1024];
  uint32_t id;
  size_t n;

  assert_int_equal(wire_open(&a, d->sock, "t"), 0);
  assert_int_equal(wire_cache_open(&a, "o", 100, 0, &id), 0);
  assert_int_equal(wire_cache_alloc(&a, id, 1024, offs, &n), 0);
  assert_int_equal(n, 1024);
  for (size_t i = 0; i < n; i++) {
    assert_true(offs[i] + 100 <= REGION);
    for (size_t j = i + 1; j < n; j++)
      if (offs[i] < offs[j] + 100 && offs[j] < offs[i] + 100)
        fail_msg("objects %" PRIu64 " and %" PRIu64 " overlap", offs[i], offs[j]);
  }
  assert_int_equal(wire_cache_free(&a, id, offs, n, NULL, 0), 0);
  wire_close(&a);
}

/* ---- protocol violations ------------------------------------------------------------ */

/* Send raw bytes, then expect one response with status want (and an EOF after it). */
static void expect_refusal(const char *sock, const void *bytes, size_t len, bool shut_wr,
                           int want) {
  int fd = wire_connect(sock, false);
  resp_t *r = NULL;
  uint8_t b;
  assert_true(fd >= 0);
  assert_int_equal(write(fd, bytes, len), (ssize_t)len);
  if (shut_wr) shutdown(fd, SHUT_WR);
  assert_int_equal(frame_recv_response(fd, FRAME_MAX_DEFAULT, &r, NULL), 0);
  assert_int_equal(wire_rc(r), want);
  assert_true(r->message && r->message[0]);
  frame_free_response(r);
  assert_int_equal(read(fd, &b, 1), 0); /* then the daemon closes */
  close(fd);
}

/* After each violation, an honest client must still be served. */
static void still_serving(testd_t *d) {
  wire_t c;
  assert_int_equal(wire_open(&c, d->sock, "bystander"), 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, NULL), 0);
  wire_close(&c);
}

static void garbage_frame_gets_protocol_error_and_others_carry_on(void **state) {
  testd_t *d = *state;
  wire_t bystander;
  const uint8_t garbage[] = {8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(wire_open(&bystander, d->sock, "b"), 0);
  assert_int_equal(wire_alloc(&bystander, 4096, 0, "kept", NULL), 0);
  expect_refusal(d->sock, garbage, sizeof garbage, false, PP_EPROTO);
  assert_int_equal(wire_lookup(&bystander, "kept", NULL), 0);
  wire_close(&bystander);
  still_serving(d);
}

static void frame_larger_than_max_is_refused_from_its_header(void **state) {
  testd_t *d = *state;
  const uint8_t hdr[] = {0x01, 0x00, 0x10, 0x00}; /* 1 MiB + 1 */
  const uint8_t zero[] = {0, 0, 0, 0};
  expect_refusal(d->sock, hdr, sizeof hdr, false, PP_EPROTO);
  expect_refusal(d->sock, zero, sizeof zero, false, PP_EPROTO);
  still_serving(d);
}

static void truncated_frame_gets_protocol_error(void **state) {
  testd_t *d = *state;
  const uint8_t partial[] = {100, 0, 0, 0, 0x08, 0x01};
  expect_refusal(d->sock, partial, sizeof partial, true, PP_EPROTO);
  still_serving(d);
}

static void unknown_version_gets_unsupported_version(void **state) {
  testd_t *d = *state;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  uint8_t *buf;
  size_t len;
  h.protocol_version = 99;
  req.id = 5;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  assert_int_equal(frame_pack(&req.base, FRAME_MAX_DEFAULT, &buf, &len), 0);
  expect_refusal(d->sock, buf, len, false, PP_EVERSION);
  free(buf);
  still_serving(d);
}

static void request_before_hello_and_unknown_bodies_are_protocol_errors(void **state) {
  testd_t *d = *state;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free f = PINPOOL__V1__FREE__INIT;
  /* id = 1, then field 15 (unknown, not in the oneof) as a varint. */
  const uint8_t unknown_body[] = {6, 0, 0, 0, 0x08, 0x01, 0x78, 0x01, 0x78, 0x02};
  uint8_t *buf;
  size_t len;
  f.handle = 1;
  req.id = 1;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &f;
  assert_int_equal(frame_pack(&req.base, FRAME_MAX_DEFAULT, &buf, &len), 0);
  expect_refusal(d->sock, buf, len, false, PP_EPROTO);
  free(buf);
  expect_refusal(d->sock, unknown_body, sizeof unknown_body, false, PP_EPROTO);
  still_serving(d);
}

static void second_hello_is_a_protocol_error(void **state) {
  testd_t *d = *state;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  wire_t c;
  resp_t *r;
  assert_int_equal(wire_open(&c, d->sock, "t"), 0);
  h.protocol_version = PROTOCOL_VERSION;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  r = wire_call(&c, &req);
  assert_int_equal(wire_rc(r), PP_EPROTO);
  frame_free_response(r);
  wire_close(&c);
  still_serving(d);
}

/* ---- limits ------------------------------------------------------------------------- */

static void per_uid_quota_is_enforced(void **state) {
  testd_t d;
  wire_t a, b;
  uint32_t id;
  (void)state;
  assert_int_equal(testd_start(&d, "--quota", "64K", NULL), 0);
  assert_int_equal(wire_open(&a, d.sock, "a"), 0);
  assert_int_equal(wire_open(&b, d.sock, "b"), 0);
  assert_int_equal(wire_alloc(&a, 32 * KIB, 0, NULL, NULL), 0);
  /* Same uid on another connection shares the quota. */
  assert_int_equal(wire_alloc(&b, 32 * KIB, 0, NULL, NULL), 0);
  assert_int_equal(wire_alloc(&b, 4 * KIB, 0, NULL, NULL), PP_EQUOTA);
  assert_int_equal(wire_cache_open(&b, "q", 64, 0, &id), 0);
  assert_int_equal(wire_cache_alloc(&b, id, 1, NULL, NULL), PP_EQUOTA);
  wire_close(&a); /* its 32 KiB come back to the uid */
  for (int i = 0; i < 200 && wire_alloc(&b, 16 * KIB, 0, NULL, NULL) == PP_EQUOTA; i++)
    sleep_ms(10);
  assert_int_equal(wire_alloc(&b, 16 * KIB, 0, NULL, NULL), 0);
  assert_int_equal(wire_alloc(&b, 4 * KIB, 0, NULL, NULL), PP_EQUOTA);
  wire_close(&b);
  assert_int_equal(testd_stop(&d), 0);
}

static void per_session_buffer_limit_is_enforced(void **state) {
  testd_t d;
  wire_t a, b;
  (void)state;
  assert_int_equal(testd_start(&d, "--max-buffers", "2", NULL), 0);
  assert_int_equal(wire_open(&a, d.sock, "a"), 0);
  assert_int_equal(wire_open(&b, d.sock, "b"), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, "one", NULL), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, NULL, NULL), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, NULL, NULL), PP_ELIMIT);
  assert_int_equal(wire_lookup(&a, "one", NULL), PP_ELIMIT);
  assert_int_equal(wire_alloc(&b, 4096, 0, NULL, NULL), 0); /* per session, not global */
  wire_close(&a);
  wire_close(&b);
  assert_int_equal(testd_stop(&d), 0);
}

static void max_clients_is_enforced_and_a_slot_frees_on_disconnect(void **state) {
  testd_t d;
  wire_t a, b, c;
  (void)state;
  assert_int_equal(testd_start(&d, "--max-clients", "2", NULL), 0);
  assert_int_equal(wire_open(&a, d.sock, "a"), 0);
  assert_int_equal(wire_open(&b, d.sock, "b"), 0);
  assert_int_equal(wire_open(&c, d.sock, "c"), PP_ETOOMANY);
  wire_close(&b);
  int rc = PP_ETOOMANY;
  for (int i = 0; i < 200 && rc == PP_ETOOMANY; i++) {
    rc = wire_open(&c, d.sock, "c");
    if (rc) sleep_ms(10);
  }
  assert_int_equal(rc, 0);
  wire_close(&c);
  wire_close(&a);
  assert_int_equal(testd_stop(&d), 0);
}

static void non_admin_stats_and_shrink_are_refused(void **state) {
  testd_t *d = *state;
  pid_t pid;
  int status;

  if (geteuid() != 0) {
    print_message("skipped: needs root to become uid 65534\n");
    skip();
  }
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
    Pinpool__V1__ShrinkRequest sr = PINPOOL__V1__SHRINK_REQUEST__INIT;
    wire_t c;
    resp_t *r;
    if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) _exit(10);
    if (wire_open(&c, d->sock, "nobody")) _exit(11);
    if (wire_stats(&c, false, false, NULL) != PP_EPERM) _exit(12);
    req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK;
    req.shrink = &sr;
    r = wire_call(&c, &req);
    if (wire_rc(r) != PP_EPERM) _exit(13);
    frame_free_response(r);
    if (wire_alloc(&c, 4096, 0, NULL, NULL) != 0) _exit(14); /* ordinary requests work */
    wire_close(&c);
    _exit(0);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- stats and shrink --------------------------------------------------------------- */

static void stats_accounts_for_every_byte_and_lists_holders(void **state) {
  testd_t *d = *state;
  wire_t a, b;
  resp_t *r, *rb;
  uint64_t offs[10], sum = 0;
  uint32_t id;
  size_t n;
  bool seen = false;
  char qname[64];

  assert_int_equal(wire_open(&a, d->sock, "alpha"), 0);
  assert_int_equal(wire_open(&b, d->sock, "beta"), 0);
  assert_int_equal(wire_alloc(&a, 100 * KIB, 0, "shared", &rb), 0);
  assert_int_equal(wire_lookup(&b, "shared", NULL), 0);
  assert_int_equal(wire_cache_open(&b, "stats-objs", 200, 0, &id), 0);
  assert_int_equal(wire_cache_alloc(&b, id, 10, offs, &n), 0);

  assert_int_equal(wire_stats(&a, true, true, &r), 0);
  Pinpool__V1__Stats *st = r->stats;
  assert_int_equal(st->region_size, REGION);
  assert_int_equal(st->nr_clients, 2);
  assert_int_equal(st->n_clients, 2);
  assert_int_equal(st->nr_buffers, 1);
  /* 200-byte objects: 20 to a 4 KiB slab, each charged 4096 / 20 = 204 bytes. */
  assert_int_equal(st->used_bytes, 128 * KIB + 10 * 204);
  assert_int_equal(st->used_bytes + st->free_bytes + st->cached_bytes, REGION);
  assert_int_equal(st->n_free_per_order, st->max_order + 1);
  assert_int_equal(st->n_caches, 1);
  /* Names are fully qualified, so operators see whose they are. */
  snprintf(qname, sizeof qname, "~%u/stats-objs", (unsigned)getuid());
  assert_string_equal(st->caches[0]->name, qname);
  assert_int_equal(st->caches[0]->object_size, 200);
  assert_true(st->caches[0]->active_objs >= 10);
  assert_int_equal(st->n_buffers, 1);
  assert_int_equal(st->buffers[0]->n_holder_sessions, 2);
  snprintf(qname, sizeof qname, "~%u/shared", (unsigned)getuid());
  assert_string_equal(st->buffers[0]->name, qname);
  assert_int_equal(st->buffers[0]->charged_uid, getuid());
  for (size_t i = 0; i < st->n_clients; i++)
    if (!strcmp(st->clients[i]->name, "beta")) {
      seen = true;
      assert_int_equal(st->clients[i]->objects, 10);
      assert_int_equal(st->clients[i]->buffers, 1);
      /* What it holds: the shared block and its objects at their charge; what its uid
       * pays: the block (same uid as alpha), the objects and one slab of their cache. */
      assert_int_equal(st->clients[i]->bytes_held, 128 * KIB + 10 * 204);
      assert_int_equal(st->clients[i]->bytes_charged, 128 * KIB + 10 * 204 + 4096);
      assert_int_equal(st->clients[i]->pid, (uint32_t)getpid());
    }
  assert_true(seen);
  for (size_t i = 0; i < st->n_map; i++) {
    assert_int_equal(st->map[i]->offset, sum); /* in offset order, no gaps */
    sum += st->map[i]->size;
    if (st->map[i]->kind == PINPOOL__V1__MAP_BLOCK__KIND__BUFFER)
      assert_int_equal(st->map[i]->offset, rb->buffer->offset);
    if (st->map[i]->kind == PINPOOL__V1__MAP_BLOCK__KIND__SLAB)
      assert_true(st->map[i]->inuse >= st->map[i]->in_magazines);
  }
  assert_int_equal(sum, REGION);
  frame_free_response(r);
  frame_free_response(rb);
  wire_close(&a);
  wire_close(&b);
}

static void stats_too_big_for_max_frame_leaves_out_the_map_and_says_so(void **state) {
  testd_t d;
  wire_t c;
  resp_t *r;
  (void)state;
  assert_int_equal(testd_start(&d, "--max-frame", "4K", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "t"), 0);
  for (int i = 0; i < 300; i++)
    assert_int_equal(wire_alloc(&c, 4096, 0, NULL, NULL), 0);
  assert_int_equal(wire_stats(&c, true, true, &r), 0);
  assert_int_equal(r->stats->n_map, 0);
  assert_int_equal(r->stats->n_buffers, 0);
  assert_int_equal(r->stats->nr_buffers, 300); /* the counters are still there */
  assert_non_null(strstr(r->message, "left out"));
  frame_free_response(r);
  assert_int_equal(wire_stats(&c, false, false, &r), 0);
  assert_string_equal(r->message, "");
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static void shrink_drains_magazines_and_returns_empty_slabs(void **state) {
  testd_t *d = *state;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__ShrinkRequest sr = PINPOOL__V1__SHRINK_REQUEST__INIT;
  uint64_t before = testd_free_bytes(d), offs[1024];
  wire_t a, b;
  uint32_t id;
  size_t n;
  resp_t *r;

  assert_int_equal(wire_open(&a, d->sock, "a"), 0);
  assert_int_equal(wire_open(&b, d->sock, "keeps-connection"), 0);
  assert_int_equal(wire_cache_open(&a, "shrinkme", 512, 0, &id), 0);
  assert_int_equal(wire_cache_alloc(&a, id, 1024, offs, &n), 0);
  assert_int_equal(wire_cache_free(&a, id, offs, n, NULL, 0), 0);
  uint64_t held_back = testd_free_bytes(d);
  assert_true(held_back < before); /* slabs and magazines keep the memory */
  req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK;
  req.shrink = &sr;
  r = wire_call(&b, &req);
  assert_int_equal(wire_rc(r), 0);
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_SHRINK);
  assert_true(r->shrink->slabs_released > 0);
  assert_true(r->shrink->objects_drained > 0 || r->shrink->slabs_released > 0);
  assert_int_equal(r->shrink->bytes_released, before - held_back);
  frame_free_response(r);
  assert_int_equal(testd_free_bytes(d), before);
  wire_close(&a);
  wire_close(&b);
}

/* ---- robustness --------------------------------------------------------------------- */

static void slow_reader_does_not_stall_others_or_grow_the_daemon(void **state) {
  testd_t *d = *state;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;
  wire_t slow, fast;
  uint8_t *frame;
  size_t len, sent = 0;
  long rss_before, rss_after;
  struct timespec t0, t1;

  assert_int_equal(wire_open(&slow, d->sock, "slow"), 0);
  assert_int_equal(wire_open(&fast, d->sock, "fast"), 0);
  /* 300 buffers make each Stats reply (buffer list + map) about 13 KiB. */
  for (int i = 0; i < 300; i++)
    assert_int_equal(wire_alloc(&slow, 4096, 0, NULL, NULL), 0);
  rss_before = testd_rss_kib(d);
  /* Stats with the map: a few bytes in, kilobytes out.  Never read the replies. */
  sr.include_map = true;
  sr.include_buffers = true;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &sr;
  req.id = 1;
  assert_int_equal(frame_pack(&req.base, FRAME_MAX_DEFAULT, &frame, &len), 0);
  fcntl(slow.fd, F_SETFL, fcntl(slow.fd, F_GETFL) | O_NONBLOCK);
  /* 20000 requests would make 260 MB of replies: unless the daemon stops reading from
   * this client, they all go in without the socket ever pushing back. */
  bool pushed_back = false;
  for (int i = 0; i < 20000 && !pushed_back; i++) {
    ssize_t n = send(slow.fd, frame, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      /* Still unwritable 100 ms later: the daemon has stopped reading from us. */
      struct pollfd p = {.fd = slow.fd, .events = POLLOUT};
      if (poll(&p, 1, 100) == 0)
        pushed_back = true;
      else
        i--;
      continue;
    }
    assert_int_equal(n, (ssize_t)len);
    sent += len;
  }
  free(frame);
  assert_true(pushed_back);
  /* Meanwhile another client gets answers promptly. */
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < 50; i++) {
    resp_t *r;
    assert_int_equal(wire_alloc(&fast, 4096, 0, NULL, &r), 0);
    assert_int_equal(wire_free(&fast, r->buffer->handle), 0);
    frame_free_response(r);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_true((t1.tv_sec - t0.tv_sec) < 5);
  rss_after = testd_rss_kib(d);
  print_message("slow reader: %zu request bytes sent; daemon RSS %ld -> %ld KiB\n", sent,
                rss_before, rss_after);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  /* The sanitizers' allocators hold freed memory in quarantine: RSS says nothing there. */
  print_message("RSS bound not checked under a sanitizer\n");
#else
  assert_true(rss_after - rss_before < 16 * 1024);
#endif
  /* Once the slow client reads, every request it sent is answered, in order. */
  fcntl(slow.fd, F_SETFL, fcntl(slow.fd, F_GETFL) & ~O_NONBLOCK);
  struct timeval tv = {10, 0};
  setsockopt(slow.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (size_t i = 0; i < sent / len; i++) {
    resp_t *r = NULL;
    int rc = frame_recv_response(slow.fd, FRAME_MAX_DEFAULT, &r, NULL);
    if (rc) fail_msg("reply %zu of %zu: %s", i, sent / len, pp_strerror(rc));
    assert_int_equal(wire_rc(r), 0);
    assert_int_equal(r->stats->nr_buffers, 300);
    frame_free_response(r);
  }
  assert_int_equal(wire_free(&slow, 1), 0); /* and it is still served */
  wire_close(&slow);
  wire_close(&fast);
  still_serving(d);
}

static void connections_that_leave_without_a_word_hold_no_client_slot(void **state) {
  testd_t d;
  wire_t c;
  int rc = PP_ETOOMANY;
  (void)state;
  assert_int_equal(testd_start(&d, "--max-clients", "1", NULL), 0);
  for (int i = 0; i < 20; i++) {
    int fd = wire_connect(d.sock, false);
    assert_true(fd >= 0);
    close(fd);
  }
  /* The daemon sees those EOFs in its own time; then the one slot is free again. */
  for (int i = 0; i < 200 && rc == PP_ETOOMANY; i++) {
    rc = wire_open(&c, d.sock, "t");
    if (rc) sleep_ms(10);
  }
  assert_int_equal(rc, 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, NULL), 0);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static void silent_connection_gets_protocol_error_at_the_hello_timeout(void **state) {
  testd_t d;
  resp_t *r = NULL;
  int fd;
  uint8_t b;
  (void)state;
  assert_int_equal(testd_start(&d, "--hello-timeout", "200", NULL), 0);
  fd = wire_connect(d.sock, false);
  assert_true(fd >= 0);
  /* Say nothing: the daemon answers PROTOCOL_ERROR (id 0) and closes. */
  assert_int_equal(frame_recv_response(fd, FRAME_MAX_DEFAULT, &r, NULL), 0);
  assert_int_equal(wire_rc(r), PP_EPROTO);
  assert_int_equal(r->id, 0);
  frame_free_response(r);
  assert_int_equal(read(fd, &b, 1), 0);
  close(fd);
  still_serving(&d);
  assert_int_equal(testd_stop(&d), 0);
}

/* ---- lifecycle: signals, systemd ---------------------------------------------------- */

static void sigterm_closes_connections_exits_zero_and_unlinks_the_socket(void **state) {
  testd_t d;
  wire_t c;
  resp_t *r;
  uint8_t b;
  (void)state;
  assert_int_equal(testd_start(&d, NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "t"), 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, &r), 0);
  frame_free_response(r);
  assert_int_equal(testd_stop(&d), 0);    /* exit 0, socket gone */
  assert_int_equal(read(c.fd, &b, 1), 0); /* our connection was closed */
  wire_close(&c);
}

static void ready_and_stopping_reach_notify_socket(void **state) {
  testd_t d;
  char path[96], env[160], buf[512];
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct timeval tv = {5, 0};
  bool ready = false, stopping = false;
  int fd;
  (void)state;

  snprintf(path, sizeof path, "/tmp/ppd-notify-%d.sock", (int)getpid());
  unlink(path);
  fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  snprintf(env, sizeof env, "NOTIFY_SOCKET=%s", path);
  assert_int_equal(testd_start_env(&d, env, NULL), 0);
  while (!ready) {
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    if (strstr(buf, "READY=1")) ready = true;
  }
  /* The first client shows up in STATUS=. */
  wire_t c;
  assert_int_equal(wire_open(&c, d.sock, "t"), 0);
  wire_close(&c);
  kill(d.pid, SIGTERM);
  while (!stopping) {
    ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    if (strstr(buf, "STOPPING=1")) stopping = true;
  }
  assert_int_equal(testd_wait(&d), 0);
  close(fd);
  unlink(path);
}

static void socket_activation_uses_the_passed_socket_and_leaves_it(void **state) {
  char dir[] = "/tmp/ppd-act-XXXXXX", sock[128], bin[512], logp[160], cmd[200];
  wire_t c;
  pid_t pid, parent = getpid();
  int status;
  (void)state;

  if (access("/usr/bin/systemd-socket-activate", X_OK) != 0 &&
      access("/bin/systemd-socket-activate", X_OK) != 0) {
    print_message("skipped: systemd-socket-activate is not installed\n");
    skip();
  }
  assert_non_null(mkdtemp(dir));
  snprintf(sock, sizeof sock, "%s/pinpool.sock", dir);
  snprintf(logp, sizeof logp, "%s/log", dir);
  testd_bin(bin, sizeof bin, "pinpoold");
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* Like testd's daemons, this one dies with the test (systemd-socket-activate execs
     * pinpoold in this same process, and the setting survives exec). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    int lf = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (lf >= 0) dup2(lf, 2);
    unsetenv("NOTIFY_SOCKET");
    /* --socket names a path that must NOT be used: the passed socket wins. */
    execlp("systemd-socket-activate", "systemd-socket-activate", "-l", sock, bin, "--size",
           "16M", "--page-size", "4K", "--socket", "/nonexistent/dir/x.sock", (char *)NULL);
    _exit(127);
  }
  int rc = PP_ECONNECT;
  for (int i = 0; i < 500 && rc; i++) {
    rc = wire_open(&c, sock, "activated");
    if (rc) sleep_ms(10);
  }
  assert_int_equal(rc, 0);
  assert_int_equal(c.region_size, REGION);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, NULL), 0);
  wire_close(&c);
  kill(pid, SIGTERM);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  /* The socket belongs to whoever passed it: the daemon must not unlink it. */
  assert_int_equal(access(sock, F_OK), 0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void config_file_keys_work_and_command_line_wins(void **state) {
  testd_t d;
  char cfg[] = "/tmp/ppd-cfg-XXXXXX";
  char bin[512];
  wire_t c;
  int fd, status;
  pid_t pid;
  (void)state;

  fd = mkstemp(cfg);
  assert_true(fd >= 0);
  dprintf(fd, "# test config\n\nmax-buffers = 1\nmax-clients=1\nzero-on-free\n"
              "log-level = debug\n");
  close(fd);
  assert_int_equal(testd_start(&d, "--config", cfg, "--max-clients", "3", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "t"), 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, NULL), 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, NULL), PP_ELIMIT); /* the file's limit */
  wire_t c2;
  assert_int_equal(wire_open(&c2, d.sock, "t2"), 0); /* the command line's 3 won */
  wire_close(&c2);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);

  /* An unknown key stops the daemon with exit status 2. */
  fd = open(cfg, O_WRONLY | O_TRUNC);
  dprintf(fd, "sise = 8M\n");
  close(fd);
  testd_bin(bin, sizeof bin, "pinpoold");
  pid = fork();
  if (pid == 0) {
    int nul = open("/dev/null", O_WRONLY);
    dup2(nul, 2);
    execl(bin, bin, "--config", cfg, (char *)NULL);
    _exit(127);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 2);
  unlink(cfg);
}

static void cache_limits_and_shared_groups_come_from_options_and_config(void **state) {
  testd_t d;
  char cfg[] = "/tmp/ppd-cfg-XXXXXX";
  char bin[512];
  wire_t c;
  int fd, status;
  pid_t pid;
  (void)state;

  fd = mkstemp(cfg);
  assert_true(fd >= 0);
  dprintf(fd, "shared-group = 4242,4243\nmax-caches-per-uid = 2\n");
  close(fd);
  assert_int_equal(
      testd_start(&d, "--config", cfg, "--max-caches", "4", "--shared-group", "4244", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "t"), 0);
  assert_int_equal(wire_cache_open(&c, "a", 64, 0, NULL), 0);
  assert_int_equal(wire_cache_open(&c, "b", 64, 0, NULL), 0);
  assert_int_equal(wire_cache_open(&c, "c", 64, 0, NULL), PP_ELIMIT); /* 2 per scope */
  if (geteuid() == 0) {
    /* Root is in every shared group; each group's scope counts on its own, and the
     * daemon's 4 in all stop the third. */
    assert_int_equal(wire_cache_open(&c, "~g4243/a", 64, 0, NULL), 0);
    assert_int_equal(wire_cache_open(&c, "~g4244/a", 64, 0, NULL), 0);
    assert_int_equal(wire_cache_open(&c, "~g4242/a", 64, 0, NULL), PP_ELIMIT);
    assert_int_equal(wire_alloc(&c, 4096, 0, "~g4242/ring", NULL), 0);
  }
  assert_int_equal(wire_alloc(&c, 4096, 0, "~g4245/ring", NULL), PP_EPERM); /* not shared */
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);

  /* A shared group that does not exist stops the daemon with exit status 2. */
  testd_bin(bin, sizeof bin, "pinpoold");
  pid = fork();
  if (pid == 0) {
    int nul = open("/dev/null", O_WRONLY);
    dup2(nul, 2);
    execl(bin, bin, "--shared-group", "no-such-group-here", "--size", "4M", "--page-size", "4K",
          "--socket", "/nonexistent/x.sock", (char *)NULL);
    _exit(127);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 2);
  unlink(cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(handshake_passes_a_memfd_that_maps_the_region, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(alloc_rounds_up_to_a_block_and_free_gives_the_bytes_back,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(handles_are_never_reused, setup, teardown),
      cmocka_unit_test_setup_teardown(zero_flag_hands_out_a_zeroed_block, setup, teardown),
      cmocka_unit_test_setup_teardown(
          named_buffer_is_shared_and_lives_until_its_last_holder_frees_it, setup, teardown),
      cmocka_unit_test_setup_teardown(bad_or_taken_names_are_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(named_buffer_goes_with_its_last_holder_disconnecting,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(killed_client_holdings_all_return, setup, teardown),
      cmocka_unit_test_setup_teardown(foreign_handle_cannot_be_freed_and_is_not_found, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(double_free_is_not_found_and_harmless, setup, teardown),
      cmocka_unit_test_setup_teardown(zero_oversized_and_bad_flag_allocs_are_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          contiguous_flag_is_granted_only_with_physically_consecutive_pages, setup, teardown),
      cmocka_unit_test_setup_teardown(unknown_caches_and_absurd_counts_are_refused, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(cache_open_is_idempotent_by_name_and_geometry, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(cache_free_is_all_or_nothing_and_names_the_bad_offset,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(objects_of_a_cache_are_distinct_and_inside_the_region,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(garbage_frame_gets_protocol_error_and_others_carry_on,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(frame_larger_than_max_is_refused_from_its_header, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(truncated_frame_gets_protocol_error, setup, teardown),
      cmocka_unit_test_setup_teardown(unknown_version_gets_unsupported_version, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          request_before_hello_and_unknown_bodies_are_protocol_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(second_hello_is_a_protocol_error, setup, teardown),
      cmocka_unit_test(per_uid_quota_is_enforced),
      cmocka_unit_test(per_session_buffer_limit_is_enforced),
      cmocka_unit_test(max_clients_is_enforced_and_a_slot_frees_on_disconnect),
      cmocka_unit_test_setup_teardown(non_admin_stats_and_shrink_are_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(stats_accounts_for_every_byte_and_lists_holders, setup,
                                      teardown),
      cmocka_unit_test(stats_too_big_for_max_frame_leaves_out_the_map_and_says_so),
      cmocka_unit_test_setup_teardown(shrink_drains_magazines_and_returns_empty_slabs, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(slow_reader_does_not_stall_others_or_grow_the_daemon,
                                      setup, teardown),
      cmocka_unit_test(connections_that_leave_without_a_word_hold_no_client_slot),
      cmocka_unit_test(silent_connection_gets_protocol_error_at_the_hello_timeout),
      cmocka_unit_test(sigterm_closes_connections_exits_zero_and_unlinks_the_socket),
      cmocka_unit_test(ready_and_stopping_reach_notify_socket),
      cmocka_unit_test(socket_activation_uses_the_passed_socket_and_leaves_it),
      cmocka_unit_test(config_file_keys_work_and_command_line_wins),
      cmocka_unit_test(cache_limits_and_shared_groups_come_from_options_and_config),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
