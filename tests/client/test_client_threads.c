/*
 * test_client_threads.c — libpinpool from many threads at once (labelled `threaded`, so
 * `make test` also runs it under ThreadSanitizer): per-thread magazines over shared
 * caches, RPCs interleaving on one connection, thread-exit returns, and pp_disconnect
 * while a thread that used the client is still alive.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "pinpool.h"
#include "testd.h"

#define NTHREADS 4
#define OPS 20000
#define HELD_MAX 256

static testd_t g_d;
static uint64_t g_baseline_free;

static int group_setup(void **state) {
  if (testd_start(&g_d, NULL) < 0) return -1;
  testd_books_t b;
  if (testd_books(&g_d, 0, &b, NULL) < 0) return -1;
  g_baseline_free = b.free_bytes;
  return 0;
}

static int group_teardown(void **state) {
  return testd_stop(&g_d);
}

static void assert_books_balanced(void) {
  uint64_t last = 0;
  if (testd_wait_free(&g_d, g_baseline_free, 5000, &last) != 0)
    fail_msg("daemon free bytes %llu, expected the baseline %llu", (unsigned long long)last,
             (unsigned long long)g_baseline_free);
}

struct worker {
  pthread_t t;
  unsigned id;
  pp_client *c;
  pp_cache *k[2];
  uint32_t size[2];
  unsigned errors;  /* unexpected return codes */
  unsigned stolen;  /* objects whose stamp another thread overwrote */
  unsigned buffers; /* pp_alloc round trips done between the cache calls */
};

/* Each object carries its owner's stamp from allocation to free: two threads handed the
 * same object would overwrite each other's stamp. */
static void stamp(void *o, uint32_t size, uint32_t tag) {
  uint32_t *w = o;
  for (uint32_t i = 0; i < size / 4; i++)
    w[i] = tag;
}

static bool stamp_intact(const void *o, uint32_t size, uint32_t tag) {
  const uint32_t *w = o;
  for (uint32_t i = 0; i < size / 4; i++)
    if (w[i] != tag) return false;
  return true;
}

static void *worker_main(void *arg) {
  struct worker *w = arg;
  void *held[2][HELD_MAX];
  uint32_t tags[2][HELD_MAX];
  unsigned n[2] = {0, 0};
  uint64_t rng = 0x9E3779B97F4A7C15ull * (w->id + 1);
  uint32_t next_tag = w->id << 24;

  for (unsigned op = 0; op < OPS; op++) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    unsigned which = (unsigned)(rng >> 8) & 1;
    unsigned roll = (unsigned)(rng >> 16) % 100;
    pp_cache *k = w->k[which];
    uint32_t sz = w->size[which];
    if (roll == 0) {
      /* Now and then a buffer round trip, to interleave with other threads' refills. */
      pp_buffer b;
      if (pp_alloc(w->c, 4096, 0, &b) != 0 || pp_free(w->c, b.handle) != 0) w->errors++;
      w->buffers++;
    } else if (roll < 3 && n[which] + 100 <= HELD_MAX) {
      void **dst = &held[which][n[which]];
      if (pp_cache_alloc_bulk(k, dst, 100) != 100) {
        w->errors++;
        continue;
      }
      for (unsigned i = 0; i < 100; i++) {
        tags[which][n[which] + i] = ++next_tag;
        stamp(dst[i], sz, next_tag);
      }
      n[which] += 100;
    } else if (roll < 5 && n[which] >= 50) {
      n[which] -= 50;
      for (unsigned i = 0; i < 50; i++)
        if (!stamp_intact(held[which][n[which] + i], sz, tags[which][n[which] + i]))
          w->stolen++;
      if (pp_cache_free_bulk(k, &held[which][n[which]], 50) != 0) w->errors++;
    } else if ((roll < 52 && n[which] < HELD_MAX) || n[which] == 0) {
      void *o = pp_cache_alloc(k);
      if (!o) {
        w->errors++;
        continue;
      }
      tags[which][n[which]] = ++next_tag;
      stamp(o, sz, next_tag);
      held[which][n[which]++] = o;
    } else {
      unsigned i = (unsigned)(rng >> 32) % n[which];
      if (!stamp_intact(held[which][i], sz, tags[which][i])) w->stolen++;
      if (pp_cache_free(k, held[which][i]) != 0) w->errors++;
      held[which][i] = held[which][--n[which]];
      tags[which][i] = tags[which][n[which]];
    }
  }
  for (unsigned which = 0; which < 2; which++)
    for (unsigned i = 0; i < n[which]; i++) {
      if (!stamp_intact(held[which][i], w->size[which], tags[which][i])) w->stolen++;
      if (pp_cache_free(w->k[which], held[which][i]) != 0) w->errors++;
    }
  return NULL; /* the key destructor sends this thread's magazines home */
}

static void threads_share_caches_through_their_own_magazines_and_conserve(void **state) {
  pp_client *c = NULL;
  assert_int_equal(pp_connect(g_d.sock, "threads", &c), 0);
  pp_cache *k64, *k136;
  assert_int_equal(pp_cache_open(c, "thr64", 64, 64, &k64), 0);
  assert_int_equal(pp_cache_open(c, "thr136", 136, 8, &k136), 0);
  struct worker w[NTHREADS];
  for (unsigned i = 0; i < NTHREADS; i++) {
    w[i] = (struct worker){.id = i, .c = c, .k = {k64, k136}, .size = {64, 136}};
    assert_int_equal(pthread_create(&w[i].t, NULL, worker_main, &w[i]), 0);
  }
  unsigned buffers = 0;
  for (unsigned i = 0; i < NTHREADS; i++) {
    assert_int_equal(pthread_join(w[i].t, NULL), 0);
    assert_int_equal(w[i].errors, 0);
    assert_int_equal(w[i].stolen, 0);
    buffers += w[i].buffers;
  }
  assert_true(buffers > 0);
  /* Every thread has exited: its magazines went home, so the session holds nothing
   * while still connected. */
  testd_books_t b;
  testd_session_t s;
  assert_int_equal(testd_books(&g_d, pp_session_id(c), &b, &s), 0);
  assert_true(s.found);
  assert_int_equal(s.objects, 0);
  assert_int_equal(s.buffers, 0);
  pp_disconnect(c);
  assert_books_balanced();
}

struct lingerer {
  pp_cache *k;
  pthread_mutex_t m;
  pthread_cond_t cv;
  int step; /* 1: used k; 2: main disconnected and reopened, k replaced */
  int ok;
};

static void lingerer_wait(struct lingerer *l, int step) {
  pthread_mutex_lock(&l->m);
  while (l->step < step)
    pthread_cond_wait(&l->cv, &l->m);
  pthread_mutex_unlock(&l->m);
}

static void lingerer_set(struct lingerer *l, int step) {
  pthread_mutex_lock(&l->m);
  l->step = step;
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->m);
}

static void *lingerer_main(void *arg) {
  struct lingerer *l = arg;
  void *o = pp_cache_alloc(l->k); /* loads this thread's magazines for the first cache */
  l->ok = o != NULL && pp_cache_free(l->k, o) == 0;
  lingerer_set(l, 1);
  lingerer_wait(l, 2);
  /* The first client is gone; the cache handle now belongs to a new client (perhaps at
   * the same address). The orphaned magazines must not be mistaken for its own. */
  void *p[10];
  l->ok =
      l->ok && pp_cache_alloc_bulk(l->k, p, 10) == 10 && pp_cache_free_bulk(l->k, p, 10) == 0;
  return NULL;
}

static void disconnect_orphans_magazines_of_threads_still_alive(void **state) {
  pp_client *c = NULL;
  assert_int_equal(pp_connect(g_d.sock, "orphans-1", &c), 0);
  struct lingerer l = {.m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  assert_int_equal(pp_cache_open(c, "linger32", 32, 8, &l.k), 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, lingerer_main, &l), 0);
  lingerer_wait(&l, 1);
  pp_disconnect(c);

  assert_int_equal(pp_connect(g_d.sock, "orphans-2", &c), 0);
  pp_cache *k2;
  assert_int_equal(pp_cache_open(c, "linger32", 32, 8, &k2), 0);
  pthread_mutex_lock(&l.m);
  l.k = k2;
  pthread_mutex_unlock(&l.m);
  lingerer_set(&l, 2);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_true(l.ok);
  testd_books_t b;
  testd_session_t s;
  assert_int_equal(testd_books(&g_d, pp_session_id(c), &b, &s), 0);
  assert_int_equal(s.objects, 0);
  pp_disconnect(c);
  assert_books_balanced();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(threads_share_caches_through_their_own_magazines_and_conserve),
      cmocka_unit_test(disconnect_orphans_magazines_of_threads_still_alive),
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
