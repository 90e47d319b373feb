/* fuzz_common.h — what the fuzz tests share: a seeded PRNG, a corpus of valid Request and
 * Response payloads (one of each body), a growable byte stream and a mutator. */
#ifndef PP_FUZZ_COMMON_H
#define PP_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

extern uint64_t fuzz_rng_state; /* seed it (non-zero) before use */
uint64_t fuzz_rnd(void);
size_t fuzz_below(size_t n); /* uniform-ish in [0, n); 0 when n == 0 */

typedef struct fuzz_bytes {
  uint8_t *p;
  size_t n;
} fuzz_bytes_t;

enum { FUZZ_CORPUS_MAX = 32 };
extern fuzz_bytes_t fuzz_corpus[FUZZ_CORPUS_MAX]; /* payloads, without frame headers */
extern int fuzz_ncorpus;
extern int fuzz_nrequests; /* fuzz_corpus[0 .. fuzz_nrequests) are Requests, then Responses */
void fuzz_build_corpus(void);
void fuzz_free_corpus(void);

typedef struct fuzz_stream {
  uint8_t *p;
  size_t n, cap;
} fuzz_stream_t;
void fuzz_put(fuzz_stream_t *s, const void *d, size_t n);
void fuzz_put_le32(fuzz_stream_t *s, uint32_t v);
/* Replaces m's contents with a mutated copy of a corpus payload, a Request one when
 * requests_only. */
void fuzz_mutate(fuzz_stream_t *m, int requests_only);

#endif
