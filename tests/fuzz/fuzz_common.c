/* fuzz_common.c — see fuzz_common.h. */
#include "fuzz_common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

uint64_t fuzz_rng_state;

uint64_t fuzz_rnd(void) { /* xorshift64* */
  fuzz_rng_state ^= fuzz_rng_state >> 12;
  fuzz_rng_state ^= fuzz_rng_state << 25;
  fuzz_rng_state ^= fuzz_rng_state >> 27;
  return fuzz_rng_state * 0x2545F4914F6CDD1DULL;
}
size_t fuzz_below(size_t n) {
  return n ? (size_t)(fuzz_rnd() % n) : 0;
}

/* ---- a fuzz_corpus of valid messages, one of each body ---------------------------------- */

fuzz_bytes_t fuzz_corpus[FUZZ_CORPUS_MAX]; /* payloads (no header) */
int fuzz_ncorpus;
int fuzz_nrequests;

static void add_msg(const ProtobufCMessage *m) {
  uint8_t *buf;
  size_t len;
  assert_int_equal(frame_pack(m, FRAME_MAX_LIMIT, &buf, &len), 0);
  assert_true(fuzz_ncorpus < FUZZ_CORPUS_MAX);
  fuzz_corpus[fuzz_ncorpus].n = len - FRAME_HEADER_SIZE;
  fuzz_corpus[fuzz_ncorpus].p = malloc(fuzz_corpus[fuzz_ncorpus].n);
  assert_non_null(fuzz_corpus[fuzz_ncorpus].p);
  memcpy(fuzz_corpus[fuzz_ncorpus].p, buf + FRAME_HEADER_SIZE, fuzz_corpus[fuzz_ncorpus].n);
  fuzz_ncorpus++;
  free(buf);
}

void fuzz_build_corpus(void) {
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
  for (int i = 0; i < 12; i++)
    offs[i] = (uint64_t)i * 192 + (1u << 20);
  Pinpool__V1__CacheFree cf = PINPOOL__V1__CACHE_FREE__INIT;
  cf.cache_id = 3;
  cf.n_offsets = 12;
  cf.offsets = offs;
  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;
  sr.include_buffers = 1;
  sr.include_map = 1;
  Pinpool__V1__ShrinkRequest sh = PINPOOL__V1__SHRINK_REQUEST__INIT;
  Pinpool__V1__CacheReport rep = PINPOOL__V1__CACHE_REPORT__INIT;
  rep.buffers = 31, rep.bytes = 31 * 4096;
  Pinpool__V1__AllocBulk ab = PINPOOL__V1__ALLOC_BULK__INIT;
  ab.size = 4096, ab.count = 32, ab.flags = 1, ab.cache = &rep;
  uint64_t handles[5] = {1, 2, 3, 3, 0x7fffffffffffffffULL};
  Pinpool__V1__FreeBulk fb = PINPOOL__V1__FREE_BULK__INIT;
  fb.n_handles = 5, fb.handles = handles, fb.cache = &rep;
  Pinpool__V1__Describe de = PINPOOL__V1__DESCRIBE__INIT;
  de.handle = 9;

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
  rq.id = 10, rq.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC_BULK, rq.alloc_bulk = &ab;
  add_msg(&rq.base);
  rq.id = 11, rq.body_case = PINPOOL__V1__REQUEST__BODY_FREE_BULK, rq.free_bulk = &fb;
  add_msg(&rq.base);
  rq.id = 12, rq.body_case = PINPOOL__V1__REQUEST__BODY_DESCRIBE, rq.describe = &de;
  add_msg(&rq.base);

  fuzz_nrequests = fuzz_ncorpus;

  Pinpool__V1__Response rs = PINPOOL__V1__RESPONSE__INIT;
  Pinpool__V1__Welcome w = PINPOOL__V1__WELCOME__INIT;
  w.protocol_version = 1, w.session_id = 77, w.region_size = 16 << 20, w.page_size = 4096;
  w.session_token.data = token, w.session_token.len = sizeof token;
  w.max_frame = FRAME_MAX_DEFAULT;
  w.features = PINPOOL__V1__FEATURE__FEATURE_BULK;
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
  Pinpool__V1__Buffer *bp[2] = {&b, &b};
  Pinpool__V1__Buffers bs = PINPOOL__V1__BUFFERS__INIT;
  bs.n_buffers = 2, bs.buffers = bp, bs.addresses_generation = 3;
  rs.id = 11, rs.body_case = PINPOOL__V1__RESPONSE__BODY_BUFFERS, rs.buffers = &bs;
  add_msg(&rs.base);
  rs.id = 10, rs.body_case = PINPOOL__V1__RESPONSE__BODY__NOT_SET;
  rs.status = PINPOOL__V1__STATUS__QUOTA_EXCEEDED, rs.message = "quota exceeded: 64M";
  add_msg(&rs.base);
}

/* ---- stream construction ------------------------------------------------------------ */

void fuzz_put(fuzz_stream_t *s, const void *d, size_t n) {
  if (s->n + n > s->cap) {
    s->cap = (s->n + n) * 2 + 64;
    s->p = realloc(s->p, s->cap);
    assert_non_null(s->p);
  }
  memcpy(s->p + s->n, d, n);
  s->n += n;
}

void fuzz_put_le32(fuzz_stream_t *s, uint32_t v) {
  uint8_t h[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  fuzz_put(s, h, 4);
}

/* A mutated copy of a fuzz_corpus payload, as a fresh stream. */
void fuzz_mutate(fuzz_stream_t *m, int requests_only) {
  size_t pool = requests_only ? (size_t)fuzz_nrequests : (size_t)fuzz_ncorpus;
  const fuzz_bytes_t *src = &fuzz_corpus[fuzz_below(pool)];
  m->n = 0;
  fuzz_put(m, src->p, src->n);
  int edits = 1 + (int)fuzz_below(4);
  for (int e = 0; e < edits && m->n > 0; e++) {
    size_t at = fuzz_below(m->n);
    switch (fuzz_below(7)) {
    case 0: m->p[at] ^= (uint8_t)(1u << fuzz_below(8)); break;
    case 1: m->p[at] = (uint8_t)fuzz_rnd(); break;
    case 2: m->p[at] = (uint8_t[]){0x00, 0x7f, 0x80, 0xff}[fuzz_below(4)]; break;
    case 3: { /* insert a few random bytes */
      uint8_t ins[4];
      size_t k = 1 + fuzz_below(4);
      for (size_t i = 0; i < k; i++)
        ins[i] = (uint8_t)fuzz_rnd();
      fuzz_put(m, ins, k); /* grow, then shift the tail */
      memmove(m->p + at + k, m->p + at, m->n - k - at);
      memcpy(m->p + at, ins, k);
      break;
    }
    case 4: { /* delete a few bytes */
      size_t k = 1 + fuzz_below(4);
      if (k > m->n - at) k = m->n - at;
      memmove(m->p + at, m->p + at + k, m->n - at - k);
      m->n -= k;
      break;
    }
    case 5: m->n = at; break; /* truncate */
    default: {                /* splice in part of another message */
      const fuzz_bytes_t *o = &fuzz_corpus[fuzz_below((size_t)fuzz_ncorpus)];
      size_t from = fuzz_below(o->n), k = fuzz_below(o->n - from + 1);
      m->n = at;
      fuzz_put(m, o->p + from, k);
      break;
    }
    }
  }
}

void fuzz_free_corpus(void) {
  for (int i = 0; i < fuzz_ncorpus; i++)
    free(fuzz_corpus[i].p);
  fuzz_ncorpus = fuzz_nrequests = 0;
}
