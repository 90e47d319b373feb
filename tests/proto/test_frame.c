/* proto_frame — the incremental frame reader, frame_pack and the budgeted unpack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"

/* Three different requests packed back to back into one malloc'd stream. */
static uint8_t *three_frames(size_t *ret_len, size_t ends[3]) {
  Pinpool__V1__Hello hello = PINPOOL__V1__HELLO__INIT;
  hello.protocol_version = PROTOCOL_VERSION;
  hello.client_name = "reader-test";
  Pinpool__V1__Alloc alloc = PINPOOL__V1__ALLOC__INIT;
  alloc.size = 12345;
  alloc.flags = 3;
  uint64_t offs[5] = {64, 128, 4096, 1u << 20, UINT64_MAX};
  Pinpool__V1__CacheFree cf = PINPOOL__V1__CACHE_FREE__INIT;
  cf.cache_id = 7;
  cf.n_offsets = 5;
  cf.offsets = offs;
  Pinpool__V1__Request r[3] = {PINPOOL__V1__REQUEST__INIT, PINPOOL__V1__REQUEST__INIT,
                               PINPOOL__V1__REQUEST__INIT};
  r[0].id = 1;
  r[0].body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  r[0].hello = &hello;
  r[1].id = 2;
  r[1].body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  r[1].alloc = &alloc;
  r[2].id = 3;
  r[2].body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE;
  r[2].cache_free = &cf;

  uint8_t *out = NULL;
  size_t len = 0;
  for (int i = 0; i < 3; i++) {
    uint8_t *f;
    size_t flen;
    assert_int_equal(frame_pack(&r[i].base, FRAME_MAX_DEFAULT, &f, &flen), 0);
    out = realloc(out, len + flen);
    assert_non_null(out);
    memcpy(out + len, f, flen);
    len += flen;
    ends[i] = len;
    free(f);
  }
  *ret_len = len;
  return out;
}

/* Checks frame i of three_frames() and returns its id. */
static uint64_t check_frame(const uint8_t *f, size_t len, int i) {
  Pinpool__V1__Request *req = frame_unpack_request(f, len, 1 << 16);
  assert_non_null(req);
  uint64_t id = req->id;
  assert_int_equal(id, (uint64_t)i + 1);
  switch (i) {
  case 0:
    assert_int_equal(req->body_case, PINPOOL__V1__REQUEST__BODY_HELLO);
    assert_string_equal(req->hello->client_name, "reader-test");
    assert_int_equal(req->hello->protocol_version, PROTOCOL_VERSION);
    break;
  case 1:
    assert_int_equal(req->body_case, PINPOOL__V1__REQUEST__BODY_ALLOC);
    assert_int_equal(req->alloc->size, 12345);
    assert_int_equal(req->alloc->flags, 3);
    break;
  default:
    assert_int_equal(req->body_case, PINPOOL__V1__REQUEST__BODY_CACHE_FREE);
    assert_int_equal(req->cache_free->n_offsets, 5);
    assert_int_equal(req->cache_free->offsets[4], UINT64_MAX);
    break;
  }
  frame_free_request(req);
  return id;
}

static void reader_assembles_frames_fed_one_byte_at_a_time(void **state) {
  size_t len, ends[3];
  uint8_t *s = three_frames(&len, ends);
  frame_reader_t r;
  frame_reader_init(&r, FRAME_MAX_DEFAULT);
  int seen = 0;
  for (size_t i = 0; i < len; i++) {
    const uint8_t *f = (const uint8_t *)"not-touched";
    size_t flen = 0;
    assert_int_equal(frame_reader_feed(&r, s + i, 1, &f, &flen), 1);
    if (i + 1 == ends[seen]) {
      assert_non_null(f);
      assert_int_equal(flen, ends[seen] - (seen ? ends[seen - 1] : 0) - FRAME_HEADER_SIZE);
      check_frame(f, flen, seen);
      seen++;
    } else {
      assert_null(f);
    }
  }
  assert_int_equal(seen, 3);
  frame_reader_free(&r);
  free(s);
}

static void reader_returns_each_frame_of_a_chunk_holding_several(void **state) {
  size_t len, ends[3];
  uint8_t *s = three_frames(&len, ends);
  /* a fourth, incomplete frame at the end must wait for more bytes */
  uint8_t *big = malloc(len + 6);
  assert_non_null(big);
  memcpy(big, s, len);
  memcpy(big + len, s, 6);
  frame_reader_t r;
  frame_reader_init(&r, FRAME_MAX_DEFAULT);
  size_t off = 0;
  int seen = 0;
  while (off < len + 6) {
    const uint8_t *f;
    size_t flen;
    int n = frame_reader_feed(&r, big + off, len + 6 - off, &f, &flen);
    assert_true(n > 0);
    off += (size_t)n;
    if (f) {
      assert_int_equal(off, ends[seen]); /* stops right after the frame */
      check_frame(f, flen, seen++);
    }
  }
  assert_int_equal(seen, 3);
  /* the rest of frame 1 completes it */
  const uint8_t *f;
  size_t flen;
  int n = frame_reader_feed(&r, s + 6, ends[0] - 6, &f, &flen);
  assert_int_equal(n, (int)(ends[0] - 6));
  assert_non_null(f);
  check_frame(f, flen, 0);
  frame_reader_free(&r);
  free(big);
  free(s);
}

static void reader_consumes_nothing_from_empty_input(void **state) {
  frame_reader_t r;
  frame_reader_init(&r, 0);
  assert_int_equal(r.max_frame, FRAME_MAX_DEFAULT);
  const uint8_t *f = (const uint8_t *)"x";
  size_t flen;
  assert_int_equal(frame_reader_feed(&r, NULL, 0, &f, &flen), 0);
  assert_null(f);
  frame_reader_free(&r);
}

static void reader_rejects_zero_length_before_buffering(void **state) {
  frame_reader_t r;
  frame_reader_init(&r, FRAME_MAX_DEFAULT);
  const uint8_t zero[8] = {0, 0, 0, 0, 8, 0, 0x10, 1};
  const uint8_t *f;
  size_t flen;
  assert_int_equal(frame_reader_feed(&r, zero, 3, &f, &flen), 3);
  assert_null(f);
  assert_int_equal(frame_reader_feed(&r, zero + 3, 5, &f, &flen), PP_EPROTO);
  assert_int_equal(r.cap, 0);
  assert_null(r.buf);
  /* sticky: the connection is dead, more bytes change nothing */
  assert_int_equal(frame_reader_feed(&r, zero + 4, 4, &f, &flen), PP_EPROTO);
  assert_int_equal(r.cap, 0);
  frame_reader_free(&r);
}

static void reader_rejects_oversized_length_before_buffering(void **state) {
  static const uint32_t lens[] = {4097, 65536, 0x7fffffffu, 0xffffffffu};
  for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
    frame_reader_t r;
    frame_reader_init(&r, 4096);
    uint8_t s[64];
    memset(s, 0x41, sizeof s);
    s[0] = (uint8_t)lens[i];
    s[1] = (uint8_t)(lens[i] >> 8);
    s[2] = (uint8_t)(lens[i] >> 16);
    s[3] = (uint8_t)(lens[i] >> 24);
    const uint8_t *f;
    size_t flen;
    assert_int_equal(frame_reader_feed(&r, s, sizeof s, &f, &flen), PP_EPROTO);
    assert_int_equal(r.cap, 0);
    assert_int_equal(r.have, 0);
    assert_null(r.buf);
    frame_reader_free(&r);
  }
}

static void reader_accepts_length_equal_to_max_frame(void **state) {
  frame_reader_t r;
  frame_reader_init(&r, 300);
  uint8_t s[4 + 300] = {44, 1, 0, 0}; /* 300 */
  const uint8_t *f;
  size_t flen;
  assert_int_equal(frame_reader_feed(&r, s, sizeof s, &f, &flen), (int)sizeof s);
  assert_non_null(f);
  assert_int_equal(flen, 300);
  frame_reader_free(&r);
}

static void reader_buffer_grows_with_bytes_received_not_announced(void **state) {
  frame_reader_t r;
  frame_reader_init(&r, FRAME_MAX_DEFAULT);
  uint8_t s[4 + 10] = {0, 0, 1, 0}; /* announces 64 KiB, sends 10 bytes */
  const uint8_t *f;
  size_t flen;
  assert_int_equal(frame_reader_feed(&r, s, sizeof s, &f, &flen), (int)sizeof s);
  assert_null(f);
  assert_int_equal(r.need, 65536);
  assert_int_equal(r.have, 10);
  assert_true(r.cap <= 256);
  frame_reader_free(&r);
}

static void max_frame_is_clamped_to_the_hard_limit(void **state) {
  frame_reader_t r;
  frame_reader_init(&r, UINT32_MAX);
  assert_int_equal(r.max_frame, FRAME_MAX_LIMIT);
  frame_reader_free(&r);
}

static void pack_refuses_message_larger_than_max_frame(void **state) {
  char name[200];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = 0;
  Pinpool__V1__Lookup lk = PINPOOL__V1__LOOKUP__INIT;
  lk.name = name;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP;
  req.lookup = &lk;
  uint8_t *buf = (uint8_t *)"untouched";
  size_t len = 777;
  assert_int_equal(frame_pack(&req.base, 100, &buf, &len), PP_ERANGE);
  assert_string_equal((char *)buf, "untouched");
  assert_int_equal(len, 777);
  assert_int_equal(frame_pack(&req.base, 300, &buf, &len), 0);
  assert_int_equal(len, FRAME_HEADER_SIZE + protobuf_c_message_get_packed_size(&req.base));
  assert_int_equal(buf[0] | buf[1] << 8 | buf[2] << 16 | buf[3] << 24, len - 4);
  free(buf);
}

static void pack_writes_empty_message_as_explicit_zero_id(void **state) {
  Pinpool__V1__Response resp = PINPOOL__V1__RESPONSE__INIT;
  assert_int_equal(protobuf_c_message_get_packed_size(&resp.base), 0);
  uint8_t *buf;
  size_t len;
  assert_int_equal(frame_pack(&resp.base, FRAME_MAX_DEFAULT, &buf, &len), 0);
  assert_int_equal(len, 6);
  static const uint8_t want[6] = {2, 0, 0, 0, 0x08, 0x00};
  assert_memory_equal(buf, want, 6);
  Pinpool__V1__Response *back = frame_unpack_response(buf + 4, 2, 4096);
  assert_non_null(back);
  assert_int_equal(back->id, 0);
  assert_int_equal(back->status, PINPOOL__V1__STATUS__OK);
  assert_int_equal(back->body_case, PINPOOL__V1__RESPONSE__BODY__NOT_SET);
  frame_free_response(back);
  free(buf);
}

static void unpack_rejects_bytes_that_are_not_a_message(void **state) {
  static const uint8_t bad[][4] = {
      {0x0a, 0x05, 0x01, 0x02}, /* length-delimited field 1 claims 5 bytes, has 2 */
      {0x08, 0xff, 0xff, 0xff}, /* unterminated varint */
      {0x07, 0x00, 0x00, 0x00}, /* wire type 7 does not exist */
      {0x00, 0x01, 0x02, 0x03}, /* field number 0 */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t peak = 99;
    assert_null(
        frame_unpack_budgeted(&pinpool__v1__request__descriptor, bad[i], 4, 1 << 16, &peak));
    assert_true(peak <= 1 << 16);
  }
}

/* Appends a varint. */
static size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  do {
    p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  return n;
}

static size_t varint_len(uint64_t v) {
  uint8_t scratch[10];
  return put_varint(scratch, v);
}

static void unpack_refuses_many_repeated_fields_beyond_budget(void **state) {
  /* Request{id=1, cache_free{cache_id=1, offsets: 20000 unpacked one-byte elements}}:
   * 40 KB on the wire, ~160 KB of arrays and scan slabs in memory. */
  enum { N = 20000 };
  uint8_t inner[2 * N + 8];
  size_t in = 0;
  inner[in++] = 0x08; /* cache_id */
  inner[in++] = 0x01;
  for (int i = 0; i < N; i++) {
    inner[in++] = 0x10; /* field 2, varint (unpacked form, still legal) */
    inner[in++] = (uint8_t)(i & 0x7f);
  }
  uint8_t *msg = malloc(in + 16);
  assert_non_null(msg);
  size_t n = 0;
  msg[n++] = 0x08;
  msg[n++] = 0x01;
  msg[n++] = (8 << 3) | 2; /* cache_free */
  n += put_varint(msg + n, in);
  memcpy(msg + n, inner, in);
  n += in;

  size_t peak = 0;
  ProtobufCMessage *m =
      frame_unpack_budgeted(&pinpool__v1__request__descriptor, msg, n, 16384, &peak);
  assert_null(m);
  assert_true(peak > 0);
  assert_true(peak <= 16384);

  /* the same bytes fit a generous budget, which shows the budget was what refused them */
  m = frame_unpack_budgeted(&pinpool__v1__request__descriptor, msg, n, 1u << 22, &peak);
  assert_non_null(m);
  assert_true(peak > 16384);
  Pinpool__V1__Request *req = (Pinpool__V1__Request *)m;
  assert_int_equal(req->cache_free->n_offsets, N);
  assert_int_equal(req->cache_free->offsets[N - 1], (N - 1) & 0x7f);
  frame_free_message(m);
  free(msg);
}

static void unpack_refuses_long_string_beyond_budget(void **state) {
  enum { L = 10000 };
  uint8_t *msg = malloc(L + 16);
  assert_non_null(msg);
  size_t n = 0;
  msg[n++] = (2 << 3) | 2; /* hello */
  size_t hl = 1 + varint_len(L) + L;
  n += put_varint(msg + n, hl);
  msg[n++] = (2 << 3) | 2; /* client_name */
  n += put_varint(msg + n, L);
  memset(msg + n, 'a', L);
  n += L;

  size_t peak = 0;
  assert_null(frame_unpack_budgeted(&pinpool__v1__request__descriptor, msg, n, 4096, &peak));
  assert_true(peak <= 4096);
  Pinpool__V1__Request *req = frame_unpack_request(msg, n, 65536);
  assert_non_null(req);
  assert_int_equal(strlen(req->hello->client_name), L);
  frame_free_request(req);
  free(msg);
}

static void unpack_refuses_huge_declared_string_length_without_allocating(void **state) {
  /* hello{client_name: declared 2 GiB, 3 bytes present} */
  uint8_t msg[32];
  size_t n = 0;
  msg[n++] = (2 << 3) | 2;
  msg[n++] = 9;
  msg[n++] = (2 << 3) | 2;
  n += put_varint(msg + n, 0x7fffffffu); /* 5 bytes */
  msg[n++] = 'a';
  msg[n++] = 'b';
  msg[n++] = 'c';
  size_t peak = 1;
  assert_null(
      frame_unpack_budgeted(&pinpool__v1__request__descriptor, msg, n, 1u << 30, &peak));
  assert_true(peak < 4096);
}

static void response_round_trips_through_pack_and_unpack(void **state) {
  Pinpool__V1__Welcome w = PINPOOL__V1__WELCOME__INIT;
  w.protocol_version = PROTOCOL_VERSION;
  w.session_id = 42;
  uint8_t tok[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  w.session_token.data = tok;
  w.session_token.len = sizeof tok;
  w.region_size = 16u << 20;
  w.page_size = 4096;
  w.max_frame = FRAME_MAX_DEFAULT;
  Pinpool__V1__Response resp = PINPOOL__V1__RESPONSE__INIT;
  resp.id = 9;
  resp.status = PINPOOL__V1__STATUS__OK;
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_WELCOME;
  resp.welcome = &w;
  uint8_t *buf;
  size_t len;
  assert_int_equal(frame_pack(&resp.base, FRAME_MAX_DEFAULT, &buf, &len), 0);
  Pinpool__V1__Response *back = frame_unpack_response(buf + 4, len - 4, 4096);
  assert_non_null(back);
  assert_int_equal(back->id, 9);
  assert_int_equal(back->body_case, PINPOOL__V1__RESPONSE__BODY_WELCOME);
  assert_int_equal(back->welcome->session_id, 42);
  assert_int_equal(back->welcome->session_token.len, 16);
  assert_memory_equal(back->welcome->session_token.data, tok, 16);
  assert_int_equal(back->welcome->region_size, 16u << 20);
  frame_free_response(back);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reader_assembles_frames_fed_one_byte_at_a_time),
      cmocka_unit_test(reader_returns_each_frame_of_a_chunk_holding_several),
      cmocka_unit_test(reader_consumes_nothing_from_empty_input),
      cmocka_unit_test(reader_rejects_zero_length_before_buffering),
      cmocka_unit_test(reader_rejects_oversized_length_before_buffering),
      cmocka_unit_test(reader_accepts_length_equal_to_max_frame),
      cmocka_unit_test(reader_buffer_grows_with_bytes_received_not_announced),
      cmocka_unit_test(max_frame_is_clamped_to_the_hard_limit),
      cmocka_unit_test(pack_refuses_message_larger_than_max_frame),
      cmocka_unit_test(pack_writes_empty_message_as_explicit_zero_id),
      cmocka_unit_test(unpack_rejects_bytes_that_are_not_a_message),
      cmocka_unit_test(unpack_refuses_many_repeated_fields_beyond_budget),
      cmocka_unit_test(unpack_refuses_long_string_beyond_budget),
      cmocka_unit_test(unpack_refuses_huge_declared_string_length_without_allocating),
      cmocka_unit_test(response_round_trips_through_pack_and_unpack),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
