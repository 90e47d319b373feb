/*
 * test_client_bcache_threads.c — the buffer caches from many threads at once (labelled
 * `threaded`, so `make test` also runs it under ThreadSanitizer).
 *
 * A model: threads allocate buffers of cached sizes (4 KiB and below, on the test daemon's
 * 4 KiB pages) and of sizes the daemon serves (8 to 64 KiB), single and in bulk, put them
 * in one shared pool, and free random ones — most of them allocated by another thread —
 * singly and in bulk; every buffer carries its allocator's stamp over every byte from
 * allocation to free, so two live buffers that overlapped would break a stamp (and TSan
 * would see the race); a freed cached handle freed again must be NOT_FOUND.  At the end the
 * pool is emptied by a thread that then exits, as every worker has: every thread's cache
 * went back, so the session holds nothing (exactly) before the disconnect, and after it
 * the daemon's free bytes are what they were before the client came.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pinpool.h"
#include "testd.h"

#define NTHREADS 4
#define OPS 4000
#define POOL_MAX 512
#define TAG (1ull << 63)

typedef struct live {
  pp_buffer b;
  uint32_t stamp;
} live_t;

static struct {
  pthread_mutex_t mu;
  live_t v[POOL_MAX];
  unsigned n;
} g_pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pp_client *g_c;
static _Atomic unsigned g_stamp = 1;

typedef struct worker {
  pthread_t t;
  uint64_t rng;
  unsigned errors, broken, cached, uncached, bulk, foreign_frees, refused_twice;
} worker_t;

static uint64_t next(worker_t *w) {
  w->rng ^= w->rng >> 12;
  w->rng ^= w->rng << 25;
  w->rng ^= w->rng >> 27;
  return w->rng * 2685821657736338717ull;
}

static void stamp(const pp_buffer *b, uint32_t v) {
  uint32_t *p = b->addr;
  for (uint64_t i = 0; i < b->size / 4; i++)
    p[i] = v;
}

static bool intact(const pp_buffer *b, uint32_t v) {
  const uint32_t *p = b->addr;
  for (uint64_t i = 0; i < b->size / 4; i++)
    if (p[i] != v) return false;
  return true;
}

/* Into the pool; false when it is full (the caller frees the buffer itself). */
static bool put(const pp_buffer *b, uint32_t s) {
  bool ok = false;
  pthread_mutex_lock(&g_pool.mu);
  if (g_pool.n < POOL_MAX) {
    g_pool.v[g_pool.n++] = (live_t){*b, s};
    ok = true;
  }
  pthread_mutex_unlock(&g_pool.mu);
  return ok;
}

static bool take(worker_t *w, live_t *out) {
  bool ok = false;
  pthread_mutex_lock(&g_pool.mu);
  if (g_pool.n) {
    unsigned i = (unsigned)(next(w) % g_pool.n);
    *out = g_pool.v[i];
    g_pool.v[i] = g_pool.v[--g_pool.n];
    ok = true;
  }
  pthread_mutex_unlock(&g_pool.mu);
  return ok;
}

static void release(worker_t *w, const live_t *l) {
  if (!intact(&l->b, l->stamp)) w->broken++;
  if (pp_free(g_c, l->b.handle) != 0) w->errors++;
  /* A cached block's handle freed twice: the second time it is not held. */
  if ((l->b.handle & TAG) && next(w) % 8 == 0) {
    if (pp_free(g_c, l->b.handle) == PP_ENOENT)
      w->refused_twice++;
    else
      w->errors++;
  }
}

static void keep(worker_t *w, const pp_buffer *b, unsigned flags) {
  uint32_t s = g_stamp++;
  if (flags & PP_ZERO)
    for (uint64_t i = 0; i < b->size; i++)
      if (((uint8_t *)b->addr)[i]) {
        w->errors++;
        break;
      }
  stamp(b, s);
  if (!put(b, s)) release(w, &(live_t){*b, s});
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  for (unsigned i = 0; i < OPS; i++) {
    unsigned r = (unsigned)(next(w) % 100);
    if (r < 45) {
      bool small = next(w) % 10 < 7;
      uint64_t size = small ? 1 + next(w) % 4096 : 4097 + next(w) % 61440;
      unsigned flags = next(w) % 10 == 0 ? PP_ZERO : 0;
      pp_buffer b;
      if (pp_alloc(g_c, size, flags, &b) != 0) {
        w->errors++;
        continue;
      }
      if (((b.handle & TAG) != 0) != small) w->errors++;
      small ? w->cached++ : w->uncached++;
      keep(w, &b, flags);
    } else if (r < 50) {
      pp_buffer b[4];
      if (pp_alloc_bulk(g_c, 4096, 0, 4, b) != 4) {
        w->errors++;
        continue;
      }
      w->bulk++;
      for (int k = 0; k < 4; k++)
        keep(w, &b[k], 0);
    } else if (r < 92) {
      live_t l;
      if (take(w, &l)) release(w, &l);
    } else {
      live_t l[4];
      uint64_t h[4];
      unsigned n = 0;
      while (n < 4 && take(w, &l[n]))
        n++;
      for (unsigned k = 0; k < n; k++) {
        if (!intact(&l[k].b, l[k].stamp)) w->broken++;
        h[k] = l[k].b.handle;
      }
      if (pp_free_bulk(g_c, h, n) != 0) w->errors++;
    }
  }
  return NULL; /* its cache goes back to the daemon now */
}

static void *drain_main(void *arg) {
  worker_t *w = arg;
  live_t l;
  while (take(w, &l))
    release(w, &l);
  return NULL;
}

static void random_allocs_and_frees_across_threads_leave_exact_books(void **state) {
  testd_t d;
  testd_books_t books;
  testd_session_t s;
  uint64_t baseline, last = 0;
  worker_t w[NTHREADS + 1];

  assert_int_equal(testd_start(&d, NULL), 0);
  assert_int_equal(testd_books(&d, 0, &books, NULL), 0);
  baseline = books.free_bytes;
  assert_int_equal(pp_connect(d.sock, "bcache-threads", &g_c), 0);
  assert_true(pp_buffer_cache_enabled(g_c));
  memset(w, 0, sizeof w);
  for (int i = 0; i <= NTHREADS; i++)
    w[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
  for (int i = 0; i < NTHREADS; i++)
    assert_int_equal(pthread_create(&w[i].t, NULL, worker_main, &w[i]), 0);
  for (int i = 0; i < NTHREADS; i++)
    pthread_join(w[i].t, NULL);
  assert_int_equal(pthread_create(&w[NTHREADS].t, NULL, drain_main, &w[NTHREADS]), 0);
  pthread_join(w[NTHREADS].t, NULL);

  unsigned cached = 0, uncached = 0, bulk = 0, twice = 0;
  for (int i = 0; i <= NTHREADS; i++) {
    assert_int_equal(w[i].errors, 0);
    assert_int_equal(w[i].broken, 0);
    cached += w[i].cached;
    uncached += w[i].uncached;
    bulk += w[i].bulk;
    twice += w[i].refused_twice;
  }
  print_message("cached %u, uncached %u, bulk %u, double frees refused %u\n", cached, uncached,
                bulk, twice);
  assert_true(cached > 0 && uncached > 0 && bulk > 0 && twice > 0);
  assert_int_equal(g_pool.n, 0);
  /* Every thread that cached has exited: the session holds nothing, and said so. */
  assert_int_equal(testd_books(&d, pp_session_id(g_c), &books, &s), 0);
  assert_true(s.found);
  assert_int_equal(s.buffers, 0);
  assert_int_equal(s.cached_buffers, 0);
  pp_disconnect(g_c);
  if (testd_wait_free(&d, baseline, 5000, &last) != 0)
    fail_msg("daemon free bytes %" PRIu64 ", expected %" PRIu64, last, baseline);
  assert_int_equal(testd_stop(&d), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(random_allocs_and_frees_across_threads_leave_exact_books),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
