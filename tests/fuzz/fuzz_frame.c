/*
 * fuzz_frame — deterministic randomized fuzzing of the frame reader and budgeted unpack.
 *
 * Each round builds a byte stream from valid Request/Response frames, mutated copies of
 * them (bit flips, byte stores, inserts, deletes, truncation, header rewrites, splices)
 * and plain random bytes, then feeds it to a frame_reader in random chunk sizes (1 byte
 * up to the whole rest).  Oracles:
 *   - a reference parser walking the same stream frame by frame says what the reader
 *     must return, whatever the chunking: the same frames, byte for byte, in order, and
 *     PP_EPROTO exactly where a zero or oversized length appears, with no payload buffer
 *     grown for that frame;
 *   - the reader's fields keep their invariants after every call;
 *   - every frame is unpacked as a Request and as a Response under a random budget and
 *     the peak bytes held never exceed it; whatever unpacks re-packs and unpacks again;
 *   - the same streams written into a socketpair in random pieces and read back with the
 *     buffered frame_rx_response give, frame by frame, what the reference decodes, and
 *     PP_EPROTO / PP_EDISCONNECTED exactly where the reference says;
 *   - ASan/UBSan (make test-asan) catch any memory error or leak on the way.
 * The seed is fixed, so failures reproduce; PP_FUZZ_SEED and PP_FUZZ_ROUNDS override.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"

#include "fuzz_common.h"

static void build_stream(fuzz_stream_t *s, uint32_t max_frame) {
  fuzz_stream_t m = {0};
  int parts = 1 + (int)fuzz_below(6);
  s->n = 0;
  for (int i = 0; i < parts; i++) {
    switch (fuzz_below(8)) {
    case 0:
    case 1: { /* a valid frame */
      const fuzz_bytes_t *c = &fuzz_corpus[fuzz_below((size_t)fuzz_ncorpus)];
      fuzz_put_le32(s, (uint32_t)c->n);
      fuzz_put(s, c->p, c->n);
      break;
    }
    case 2:
    case 3:
    case 4: /* a mutated message with a correct length */
      fuzz_mutate(&m, 0);
      fuzz_put_le32(s, (uint32_t)m.n);
      fuzz_put(s, m.p, m.n);
      break;
    case 5: { /* a valid message with a wrong length */
      const fuzz_bytes_t *c = &fuzz_corpus[fuzz_below((size_t)fuzz_ncorpus)];
      uint32_t len = (uint32_t[]){0,
                                  1,
                                  (uint32_t)c->n - 1,
                                  (uint32_t)c->n + 1,
                                  max_frame,
                                  max_frame + 1,
                                  UINT32_MAX,
                                  (uint32_t)fuzz_rnd()}[fuzz_below(8)];
      fuzz_put_le32(s, len);
      fuzz_put(s, c->p, c->n);
      break;
    }
    case 6: { /* a small length and random payload */
      uint32_t len = 1 + (uint32_t)fuzz_below(64);
      fuzz_put_le32(s, len);
      for (uint32_t k = 0; k < len; k++) {
        uint8_t b = (uint8_t)fuzz_rnd();
        fuzz_put(s, &b, 1);
      }
      break;
    }
    default: { /* raw random bytes */
      size_t k = 1 + fuzz_below(16);
      for (size_t j = 0; j < k; j++) {
        uint8_t b = (uint8_t)fuzz_rnd();
        fuzz_put(s, &b, 1);
      }
      break;
    }
    }
  }
  free(m.p);
}

/* ---- oracles ----------------------------------------------------------------------- */

static uint64_t frames_seen, unpacked_ok, budget_refusals;

static void check_reader(const frame_reader_t *r) {
  assert_true(r->header_have <= FRAME_HEADER_SIZE);
  assert_true(r->need <= r->max_frame);
  assert_true(r->have <= r->need || (r->need == 0 && r->have == 0));
  assert_true(r->cap <= r->max_frame);
  if (r->header_have < FRAME_HEADER_SIZE) assert_int_equal(r->need, 0);
}

static int has_unknown_fields(const ProtobufCMessage *m) {
  if (m->n_unknown_fields) return 1;
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *fd = &d->fields[i];
    if (fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    const char *base = (const char *)m;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t cnt = *(const size_t *)(base + fd->quantifier_offset);
      ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)(base + fd->offset);
      for (size_t k = 0; k < cnt; k++)
        if (has_unknown_fields(arr[k])) return 1;
    } else {
      if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF &&
          *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
        continue;
      const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + fd->offset);
      if (sub && has_unknown_fields(sub)) return 1;
    }
  }
  return 0;
}

static void check_unpack(const uint8_t *f, size_t n) {
  static const ProtobufCMessageDescriptor *descs[2] = {&pinpool__v1__request__descriptor,
                                                       &pinpool__v1__response__descriptor};
  for (int d = 0; d < 2; d++) {
    size_t budget = (size_t[]){0, 64, 256, 1024, 4096, 65536, 1u << 22}[fuzz_below(7)];
    size_t peak = 0;
    ProtobufCMessage *m = frame_unpack_budgeted(descs[d], f, n, budget, &peak);
    if (peak > budget) fail_msg("unpack held %zu bytes under a budget of %zu", peak, budget);
    if (!m) {
      /* would a generous budget have taken it?  Then the budget did the refusing. */
      ProtobufCMessage *big = frame_unpack_budgeted(descs[d], f, n, 1u << 26, &peak);
      if (big) budget_refusals++;
      frame_free_message(big);
      continue;
    }
    unpacked_ok++;
    uint8_t *buf;
    size_t len;
    int rc = frame_pack(m, FRAME_MAX_LIMIT, &buf, &len);
    assert_int_equal(rc, 0);
    ProtobufCMessage *again = frame_unpack_budgeted(descs[d], buf + FRAME_HEADER_SIZE,
                                                    len - FRAME_HEADER_SIZE, 1u << 26, NULL);
    /* protobuf-c keeps unknown fields and writes them back verbatim, even ones it should
     * have refused (field number 0 spelled as an overlong varint, 80 00): only messages
     * without them must round-trip. */
    if (!again && !has_unknown_fields(m)) {
      for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%02x ", f[i]);
      fprintf(stderr, "\n -> ");
      for (size_t i = 0; i < len; i++)
        fprintf(stderr, "%02x ", buf[i]);
      fprintf(stderr, "\n");
      fail_msg("a message that unpacked did not survive pack + unpack");
    }
    if (again) frame_free_message(again);
    free(buf);
    frame_free_message(m);
  }
}

/* Feeds s in random chunks and compares with the reference walk. */
static void run_stream(const fuzz_stream_t *s, uint32_t max_frame) {
  frame_reader_t r;
  frame_reader_init(&r, max_frame);
  size_t off = 0; /* reader position */
  size_t ref = 0; /* reference parser: start of the next expected frame */
  while (off < s->n) {
    size_t chunk = fuzz_below(4) == 0 ? s->n - off : 1 + fuzz_below(fuzz_below(2) ? 8 : 200);
    if (chunk > s->n - off) chunk = s->n - off;
    const uint8_t *f = NULL;
    size_t flen = 0;
    uint32_t cap_before = r.cap;
    int rc = frame_reader_feed(&r, s->p + off, chunk, &f, &flen);
    check_reader(&r);

    /* what the reference says about the frame at ref */
    int ref_complete = 0, ref_bad = 0;
    uint32_t ref_len = 0;
    if (s->n - ref >= FRAME_HEADER_SIZE) {
      ref_len = (uint32_t)s->p[ref] | (uint32_t)s->p[ref + 1] << 8 |
                (uint32_t)s->p[ref + 2] << 16 | (uint32_t)s->p[ref + 3] << 24;
      ref_bad = ref_len == 0 || ref_len > r.max_frame;
      ref_complete = !ref_bad && s->n - ref - FRAME_HEADER_SIZE >= ref_len;
    }
    if (rc < 0) {
      assert_int_equal(rc, PP_EPROTO);
      if (!ref_bad) fail_msg("reader refused a good header at %zu", ref);
      assert_true(off + chunk >= ref + FRAME_HEADER_SIZE);
      assert_int_equal(r.cap, cap_before); /* nothing buffered for the bad frame */
      break;
    }
    assert_true((size_t)rc <= chunk);
    off += (size_t)rc;
    if (f) {
      frames_seen++;
      if (!ref_complete) fail_msg("reader produced a frame the reference did not see");
      assert_int_equal(flen, ref_len);
      assert_memory_equal(f, s->p + ref + FRAME_HEADER_SIZE, flen);
      ref += FRAME_HEADER_SIZE + ref_len;
      assert_int_equal(off, ref); /* stops right after the frame */
      check_unpack(f, flen);
    } else {
      assert_int_equal((size_t)rc, chunk); /* took everything it was offered */
      if (ref_bad && off >= ref + FRAME_HEADER_SIZE)
        fail_msg("bad header accepted at %zu", ref);
    }
  }
  frame_reader_free(&r);
}

static void reader_and_unpack_survive_mutated_and_random_streams(void **state) {
  const char *seed = getenv("PP_FUZZ_SEED"), *rounds_env = getenv("PP_FUZZ_ROUNDS");
  fuzz_rng_state = seed ? strtoull(seed, NULL, 0) : 0x9e3779b97f4a7c15ULL;
  if (!fuzz_rng_state) fuzz_rng_state = 1;
  long rounds = rounds_env ? strtol(rounds_env, NULL, 0) : 30000;
  fuzz_build_corpus();
  fuzz_stream_t s = {0};
  for (long i = 0; i < rounds; i++) {
    uint32_t max_frame = (uint32_t[]){FRAME_MAX_DEFAULT, 64, 300, 1024}[fuzz_below(4)];
    build_stream(&s, max_frame);
    run_stream(&s, max_frame);
  }
  printf("fuzz_frame: %ld streams, %llu frames, %llu unpacked, %llu refused by budget only\n",
         rounds, (unsigned long long)frames_seen, (unsigned long long)unpacked_ok,
         (unsigned long long)budget_refusals);
  /* the generator must reach the interesting places, or the run proves little */
  assert_true(frames_seen > (uint64_t)rounds);
  assert_true(unpacked_ok > 0);
  assert_true(budget_refusals > 0);
  free(s.p);
  fuzz_free_corpus();
}

/* ---- frame_rx over a socketpair ----------------------------------------------------- */

/* Packs m (a Response) to compare two decodings byte for byte. */
static void packed(const ProtobufCMessage *m, uint8_t **ret, size_t *ret_len) {
  assert_int_equal(frame_pack(m, FRAME_MAX_LIMIT, ret, ret_len), 0);
}

/* Writes s into a socketpair (then EOF) and reads it back with frame_rx_response in a
 * buffer that starts small; every outcome must match the reference walk. */
static uint64_t rx_frames;

static void run_stream_rx(const fuzz_stream_t *s, uint32_t max_frame) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  /* writes in random pieces so that reads see varying boundaries */
  size_t off = 0;
  while (off < s->n) {
    size_t k = 1 + fuzz_below(fuzz_below(2) ? 16 : 512);
    if (k > s->n - off) k = s->n - off;
    assert_int_equal(write(sv[0], s->p + off, k), (ssize_t)k);
    off += k;
  }
  shutdown(sv[0], SHUT_WR);

  frame_rx_t rx;
  frame_rx_init(&rx);
  size_t ref = 0;
  for (;;) {
    Pinpool__V1__Response *got = NULL;
    int rc = frame_rx_response(sv[1], &rx, max_frame, -1, &got, NULL);
    if (s->n - ref < FRAME_HEADER_SIZE) {
      assert_int_equal(rc, PP_EDISCONNECTED);
      break;
    }
    const uint8_t *h = s->p + ref;
    uint32_t len =
        (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (len == 0 || len > max_frame) {
      assert_int_equal(rc, PP_EPROTO);
      break;
    }
    if (s->n - ref - FRAME_HEADER_SIZE < len) {
      assert_int_equal(rc, PP_EDISCONNECTED);
      break;
    }
    Pinpool__V1__Response *want =
        frame_unpack_response(h + FRAME_HEADER_SIZE, len, 65536 + (size_t)len * 128);
    if (!want) {
      assert_int_equal(rc, PP_EPROTO);
      break;
    }
    assert_int_equal(rc, 0);
    uint8_t *a, *b;
    size_t an, bn;
    packed(&want->base, &a, &an);
    packed(&got->base, &b, &bn);
    assert_int_equal(an, bn);
    assert_memory_equal(a, b, an);
    free(a);
    free(b);
    frame_free_response(want);
    frame_free_response(got);
    rx_frames++;
    ref += FRAME_HEADER_SIZE + len;
  }
  frame_rx_free(&rx);
  close(sv[0]);
  close(sv[1]);
}

static void buffered_receive_agrees_with_the_reference_on_mutated_streams(void **state) {
  const char *seed = getenv("PP_FUZZ_SEED"), *rounds_env = getenv("PP_FUZZ_ROUNDS");
  fuzz_rng_state = seed ? strtoull(seed, NULL, 0) : 0x243f6a8885a308d3ULL;
  if (!fuzz_rng_state) fuzz_rng_state = 1;
  long rounds = rounds_env ? strtol(rounds_env, NULL, 0) / 10 : 3000;
  fuzz_build_corpus();
  fuzz_stream_t s = {0};
  for (long i = 0; i < rounds; i++) {
    uint32_t max_frame = (uint32_t[]){FRAME_MAX_DEFAULT, 64, 300, 1024}[fuzz_below(4)];
    build_stream(&s, max_frame);
    run_stream_rx(&s, max_frame);
  }
  printf("fuzz_frame rx: %ld streams, %llu frames decoded\n", rounds,
         (unsigned long long)rx_frames);
  assert_true(rx_frames > (uint64_t)rounds / 10); /* most streams break early */
  free(s.p);
  fuzz_free_corpus();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reader_and_unpack_survive_mutated_and_random_streams),
      cmocka_unit_test(buffered_receive_agrees_with_the_reference_on_mutated_streams),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
