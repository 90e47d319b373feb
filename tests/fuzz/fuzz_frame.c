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

#include <cmocka.h>

#include "frame.h"

static uint64_t rng_state;

static uint64_t rnd(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1DULL;
}
static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* ---- a corpus of valid messages, one of each body ---------------------------------- */

typedef struct bytes {
  uint8_t *p;
  size_t n;
} bytes_t;

enum { CORPUS_MAX = 32 };
static bytes_t corpus[CORPUS_MAX]; /* payloads (no header) */
static int ncorpus;

static void add_msg(const ProtobufCMessage *m) {
  uint8_t *buf;
  size_t len;
  assert_int_equal(frame_pack(m, FRAME_MAX_LIMIT, &buf, &len), 0);
  assert_true(ncorpus < CORPUS_MAX);
  corpus[ncorpus].n = len - FRAME_HEADER_SIZE;
  corpus[ncorpus].p = malloc(corpus[ncorpus].n);
  assert_non_null(corpus[ncorpus].p);
  memcpy(corpus[ncorpus].p, buf + FRAME_HEADER_SIZE, corpus[ncorpus].n);
  ncorpus++;
  free(buf);
}

static void build_corpus(void) {
  Pinpool__V1__Request rq = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello hello = PINPOOL__V1__HELLO__INIT;
  uint8_t token[16] = {0xde, 0xad, 0xbe, 0xef};
  hello.protocol_version = 1;
  hello.client_name = "fuzz-client";
  hello.session_token.data = token;
  hello.session_token.len = sizeof token;
  Pinpool__V1__Alloc alloc = PINPOOL__V1__ALLOC__INIT;
  alloc.size = 1 << 21;
  alloc.flags = 3;
  alloc.name = "frames";
  Pinpool__V1__Free fr = PINPOOL__V1__FREE__INIT;
  fr.handle = 0x123456789abcULL;
  Pinpool__V1__Lookup lk = PINPOOL__V1__LOOKUP__INIT;
  lk.name = "frames";
  Pinpool__V1__CacheOpen co = PINPOOL__V1__CACHE_OPEN__INIT;
  co.name = "pkt";
  co.object_size = 192;
  co.align = 64;
  Pinpool__V1__CacheAlloc ca = PINPOOL__V1__CACHE_ALLOC__INIT;
  ca.cache_id = 3;
  ca.count = 1024;
  uint64_t offs[12];
  for (int i = 0; i < 12; i++) offs[i] = (uint64_t)i * 192 + (1u << 20);
  Pinpool__V1__CacheFree cf = PINPOOL__V1__CACHE_FREE__INIT;
  cf.cache_id = 3;
  cf.n_offsets = 12;
  cf.offsets = offs;
  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;
  sr.include_buffers = 1;
  sr.include_map = 1;
  Pinpool__V1__ShrinkRequest sh = PINPOOL__V1__SHRINK_REQUEST__INIT;

  rq.id = 1, rq.body_case = PINPOOL__V1__REQUEST__BODY_HELLO, rq.hello = &hello;
  add_msg(&rq.base);
  rq.id = 2, rq.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC, rq.alloc = &alloc;
  add_msg(&rq.base);
  rq.id = 3, rq.body_case = PINPOOL__V1__REQUEST__BODY_FREE, rq.free = &fr;
  add_msg(&rq.base);
  rq.id = 4, rq.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP, rq.lookup = &lk;
  add_msg(&rq.base);
  rq.id = 5, rq.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN, rq.cache_open = &co;
  add_msg(&rq.base);
  rq.id = 6, rq.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC, rq.cache_alloc = &ca;
  add_msg(&rq.base);
  rq.id = 7, rq.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE, rq.cache_free = &cf;
  add_msg(&rq.base);
  rq.id = 8, rq.body_case = PINPOOL__V1__REQUEST__BODY_STATS, rq.stats = &sr;
  add_msg(&rq.base);
  rq.id = 9, rq.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK, rq.shrink = &sh;
  add_msg(&rq.base);

  Pinpool__V1__Response rs = PINPOOL__V1__RESPONSE__INIT;
  Pinpool__V1__Welcome w = PINPOOL__V1__WELCOME__INIT;
  w.protocol_version = 1, w.session_id = 77, w.region_size = 16 << 20, w.page_size = 4096;
  w.session_token.data = token, w.session_token.len = sizeof token;
  w.max_frame = FRAME_MAX_DEFAULT;
  Pinpool__V1__Segment seg[2] = {PINPOOL__V1__SEGMENT__INIT, PINPOOL__V1__SEGMENT__INIT};
  Pinpool__V1__Segment *segp[2] = {&seg[0], &seg[1]};
  seg[0].offset = 0, seg[0].phys_addr = 0x100000000ULL, seg[0].length = 1 << 21;
  seg[1].offset = 1 << 21, seg[1].phys_addr = 0x180000000ULL, seg[1].length = 1 << 21;
  Pinpool__V1__Buffer b = PINPOOL__V1__BUFFER__INIT;
  b.handle = 9, b.offset = 1 << 22, b.size = 1 << 22, b.phys_addr = 0x100000000ULL;
  b.name = "frames", b.n_segments = 2, b.segments = segp;
  Pinpool__V1__CacheInfo ci = PINPOOL__V1__CACHE_INFO__INIT;
  ci.cache_id = 3, ci.object_size = 192, ci.align = 64, ci.objects_per_slab = 21;
  Pinpool__V1__Objects ob = PINPOOL__V1__OBJECTS__INIT;
  ob.n_offsets = 12, ob.offsets = offs;
  Pinpool__V1__SlabInfo si = PINPOOL__V1__SLAB_INFO__INIT;
  si.name = "pkt", si.active_objs = 12, si.num_objs = 21, si.object_size = 192;
  Pinpool__V1__SlabInfo *sip[1] = {&si};
  Pinpool__V1__ClientInfo cl = PINPOOL__V1__CLIENT_INFO__INIT;
  cl.session_id = 77, cl.pid = 1234, cl.name = "fuzz-client", cl.bytes_held = 1 << 22;
  Pinpool__V1__ClientInfo *clp[1] = {&cl};
  uint32_t pids[2] = {1234, 5678};
  uint64_t sess[2] = {77, 78};
  Pinpool__V1__BufferInfo bi = PINPOOL__V1__BUFFER_INFO__INIT;
  bi.handle = 9, bi.n_holder_pids = 2, bi.holder_pids = pids;
  bi.n_holder_sessions = 2, bi.holder_sessions = sess;
  Pinpool__V1__BufferInfo *bip[1] = {&bi};
  Pinpool__V1__MapBlock mb = PINPOOL__V1__MAP_BLOCK__INIT;
  mb.offset = 0, mb.size = 4096, mb.kind = PINPOOL__V1__MAP_BLOCK__KIND__SLAB, mb.inuse = 3;
  Pinpool__V1__MapBlock *mbp[1] = {&mb};
  uint64_t fpo[4] = {1, 0, 2, 5};
  int32_t frag[4] = {-1000, 500, 0, -1000};
  Pinpool__V1__Stats st = PINPOOL__V1__STATS__INIT;
  st.version = "0.1.0", st.region_size = 16 << 20, st.max_order = 3;
  st.n_free_per_order = 4, st.free_per_order = fpo, st.n_frag_index = 4, st.frag_index = frag;
  st.n_caches = 1, st.caches = sip, st.n_clients = 1, st.clients = clp;
  st.n_buffers = 1, st.buffers = bip, st.n_map = 1, st.map = mbp;
  Pinpool__V1__ShrinkResult shr = PINPOOL__V1__SHRINK_RESULT__INIT;
  shr.slabs_released = 2, shr.bytes_released = 8192;

  rs.id = 1, rs.body_case = PINPOOL__V1__RESPONSE__BODY_WELCOME, rs.welcome = &w;
  add_msg(&rs.base);
  rs.id = 2, rs.body_case = PINPOOL__V1__RESPONSE__BODY_BUFFER, rs.buffer = &b;
  add_msg(&rs.base);
  rs.id = 5, rs.body_case = PINPOOL__V1__RESPONSE__BODY_CACHE, rs.cache = &ci;
  add_msg(&rs.base);
  rs.id = 6, rs.body_case = PINPOOL__V1__RESPONSE__BODY_OBJECTS, rs.objects = &ob;
  add_msg(&rs.base);
  rs.id = 8, rs.body_case = PINPOOL__V1__RESPONSE__BODY_STATS, rs.stats = &st;
  add_msg(&rs.base);
  rs.id = 9, rs.body_case = PINPOOL__V1__RESPONSE__BODY_SHRINK, rs.shrink = &shr;
  add_msg(&rs.base);
  rs.id = 10, rs.body_case = PINPOOL__V1__RESPONSE__BODY__NOT_SET;
  rs.status = PINPOOL__V1__STATUS__QUOTA_EXCEEDED, rs.message = "quota exceeded: 64M";
  add_msg(&rs.base);
}

/* ---- stream construction ------------------------------------------------------------ */

typedef struct stream {
  uint8_t *p;
  size_t n, cap;
} stream_t;

static void put(stream_t *s, const void *d, size_t n) {
  if (s->n + n > s->cap) {
    s->cap = (s->n + n) * 2 + 64;
    s->p = realloc(s->p, s->cap);
    assert_non_null(s->p);
  }
  memcpy(s->p + s->n, d, n);
  s->n += n;
}

static void put_le32(stream_t *s, uint32_t v) {
  uint8_t h[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put(s, h, 4);
}

/* A mutated copy of a corpus payload, as a fresh stream. */
static void mutate(stream_t *m) {
  const bytes_t *src = &corpus[below((size_t)ncorpus)];
  m->n = 0;
  put(m, src->p, src->n);
  int edits = 1 + (int)below(4);
  for (int e = 0; e < edits && m->n > 0; e++) {
    size_t at = below(m->n);
    switch (below(7)) {
    case 0: m->p[at] ^= (uint8_t)(1u << below(8)); break;
    case 1: m->p[at] = (uint8_t)rnd(); break;
    case 2: m->p[at] = (uint8_t[]){0x00, 0x7f, 0x80, 0xff}[below(4)]; break;
    case 3: { /* insert a few random bytes */
      uint8_t ins[4];
      size_t k = 1 + below(4);
      for (size_t i = 0; i < k; i++) ins[i] = (uint8_t)rnd();
      put(m, ins, k); /* grow, then shift the tail */
      memmove(m->p + at + k, m->p + at, m->n - k - at);
      memcpy(m->p + at, ins, k);
      break;
    }
    case 4: { /* delete a few bytes */
      size_t k = 1 + below(4);
      if (k > m->n - at) k = m->n - at;
      memmove(m->p + at, m->p + at + k, m->n - at - k);
      m->n -= k;
      break;
    }
    case 5: m->n = at; break; /* truncate */
    default: { /* splice in part of another message */
      const bytes_t *o = &corpus[below((size_t)ncorpus)];
      size_t from = below(o->n), k = below(o->n - from + 1);
      m->n = at;
      put(m, o->p + from, k);
      break;
    }
    }
  }
}

static void build_stream(stream_t *s, uint32_t max_frame) {
  stream_t m = {0};
  int parts = 1 + (int)below(6);
  s->n = 0;
  for (int i = 0; i < parts; i++) {
    switch (below(8)) {
    case 0:
    case 1: { /* a valid frame */
      const bytes_t *c = &corpus[below((size_t)ncorpus)];
      put_le32(s, (uint32_t)c->n);
      put(s, c->p, c->n);
      break;
    }
    case 2:
    case 3:
    case 4: /* a mutated message with a correct length */
      mutate(&m);
      put_le32(s, (uint32_t)m.n);
      put(s, m.p, m.n);
      break;
    case 5: { /* a valid message with a wrong length */
      const bytes_t *c = &corpus[below((size_t)ncorpus)];
      uint32_t len = (uint32_t[]){0, 1, (uint32_t)c->n - 1, (uint32_t)c->n + 1, max_frame,
                                  max_frame + 1, UINT32_MAX, (uint32_t)rnd()}[below(8)];
      put_le32(s, len);
      put(s, c->p, c->n);
      break;
    }
    case 6: { /* a small length and random payload */
      uint32_t len = 1 + (uint32_t)below(64);
      put_le32(s, len);
      for (uint32_t k = 0; k < len; k++) {
        uint8_t b = (uint8_t)rnd();
        put(s, &b, 1);
      }
      break;
    }
    default: { /* raw random bytes */
      size_t k = 1 + below(16);
      for (size_t j = 0; j < k; j++) {
        uint8_t b = (uint8_t)rnd();
        put(s, &b, 1);
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
    size_t budget = (size_t[]){0, 64, 256, 1024, 4096, 65536, 1u << 22}[below(7)];
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
    ProtobufCMessage *again =
        frame_unpack_budgeted(descs[d], buf + FRAME_HEADER_SIZE, len - FRAME_HEADER_SIZE,
                              1u << 26, NULL);
    /* protobuf-c keeps unknown fields and writes them back verbatim, even ones it should
     * have refused (field number 0 spelled as an overlong varint, 80 00): only messages
     * without them must round-trip. */
    if (!again && !has_unknown_fields(m)) {
      for (size_t i = 0; i < n; i++) fprintf(stderr, "%02x ", f[i]);
      fprintf(stderr, "\n -> ");
      for (size_t i = 0; i < len; i++) fprintf(stderr, "%02x ", buf[i]);
      fprintf(stderr, "\n");
      fail_msg("a message that unpacked did not survive pack + unpack");
    }
    if (again) frame_free_message(again);
    free(buf);
    frame_free_message(m);
  }
}

/* Feeds s in random chunks and compares with the reference walk. */
static void run_stream(const stream_t *s, uint32_t max_frame) {
  frame_reader_t r;
  frame_reader_init(&r, max_frame);
  size_t off = 0;     /* reader position */
  size_t ref = 0;     /* reference parser: start of the next expected frame */
  while (off < s->n) {
    size_t chunk = below(4) == 0 ? s->n - off : 1 + below(below(2) ? 8 : 200);
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
      if (ref_bad && off >= ref + FRAME_HEADER_SIZE) fail_msg("bad header accepted at %zu", ref);
    }
  }
  frame_reader_free(&r);
}

static void reader_and_unpack_survive_mutated_and_random_streams(void **state) {
  const char *seed = getenv("PP_FUZZ_SEED"), *rounds_env = getenv("PP_FUZZ_ROUNDS");
  rng_state = seed ? strtoull(seed, NULL, 0) : 0x9e3779b97f4a7c15ULL;
  if (!rng_state) rng_state = 1;
  long rounds = rounds_env ? strtol(rounds_env, NULL, 0) : 30000;
  build_corpus();
  stream_t s = {0};
  for (long i = 0; i < rounds; i++) {
    uint32_t max_frame = (uint32_t[]){FRAME_MAX_DEFAULT, 64, 300, 1024}[below(4)];
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
  for (int i = 0; i < ncorpus; i++) free(corpus[i].p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(reader_and_unpack_survive_mutated_and_random_streams),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
