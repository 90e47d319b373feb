/*
 * test_mag_stress.c — threads allocate, free and hand objects to each other through a
 * shared queue, on one cache, with magazines and in locked mode.  An object may be freed
 * by a thread other than the one that allocated it, so magazines migrate objects between
 * threads, the depot and the slabs.  Checks:
 *   - no object is held by two threads at once (an atomic owner tag per object, claimed
 *     with compare-and-swap when an allocation returns it);
 *   - conservation at a quiescent point with every mag_cpu_t still alive, and again after
 *     they are destroyed; slab_cache_check; nothing left in the slabs at the end;
 *   - another thread reads the statistics throughout (TSan checks those reads).
 * Labelled "threaded": `make test` runs it under ThreadSanitizer too.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buddy.h"
#include "magazine.h"
#include "slab.h"

#define REGION (32ull << 20)
#define GRAIN 64u /* object alignment: one owner tag per grain */
#define NTHREADS 4
#define OPS_PER_THREAD 60000u
#define HOLD_MAX 600u
#define QCAP 4096u

typedef struct queue { /* a bounded MPMC queue of offsets under one mutex */
  pthread_mutex_t lock;
  uint64_t v[QCAP];
  unsigned head, n;
} queue_t;

typedef struct shared {
  slab_cache_t *cache;
  mag_depot_t *d;
  _Atomic uint8_t *owner; /* per grain: 0 free, else thread index + 1 */
  queue_t q;
  pthread_barrier_t quiet, resume; /* quiescent point for the conservation check */
  _Atomic unsigned failures;
  _Atomic int running;
  char failure[256];
} shared_t;

typedef struct worker {
  shared_t *s;
  unsigned id;
  uint64_t rng;
  uint64_t held[HOLD_MAX];
  unsigned n;
  uint64_t ops, handed, received;
} worker_t;

static uint64_t rnd(uint64_t *st) {
  uint64_t z = (*st += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void failed(shared_t *s, const char *fmt, unsigned long long a, unsigned long long b) {
  if (atomic_fetch_add(&s->failures, 1) == 0)
    snprintf(s->failure, sizeof s->failure, fmt, a, b);
}

static bool q_push(queue_t *q, uint64_t off) {
  pthread_mutex_lock(&q->lock);
  bool ok = q->n < QCAP;
  if (ok) q->v[(q->head + q->n++) % QCAP] = off;
  pthread_mutex_unlock(&q->lock);
  return ok;
}

static bool q_pop(queue_t *q, uint64_t *off) {
  pthread_mutex_lock(&q->lock);
  bool ok = q->n > 0;
  if (ok) {
    *off = q->v[q->head];
    q->head = (q->head + 1) % QCAP;
    q->n--;
  }
  pthread_mutex_unlock(&q->lock);
  return ok;
}

/* Take ownership of a freshly allocated object: nobody else may hold it. */
static void claim(worker_t *w, uint64_t off) {
  uint8_t expect = 0;
  if (off % GRAIN || off >= REGION) {
    failed(w->s, "allocated offset %#llx misaligned or outside (thread %llu)", off, w->id);
    return;
  }
  if (!atomic_compare_exchange_strong(&w->s->owner[off / GRAIN], &expect, (uint8_t)(w->id + 1)))
    failed(w->s, "offset %#llx handed out while thread %llu holds it", off, expect - 1u);
}

static void release(worker_t *w, uint64_t off) {
  atomic_store(&w->s->owner[off / GRAIN], 0);
}

/* A handed-over object changes owner: tag it for the receiver. */
static void adopt(worker_t *w, uint64_t off) {
  uint8_t cur = atomic_exchange(&w->s->owner[off / GRAIN], (uint8_t)(w->id + 1));
  if (cur != 0xff) failed(w->s, "queued offset %#llx was tagged %llu", off, cur);
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  shared_t *s = w->s;
  mag_cpu_t *m;
  if (mag_cpu_create(s->d, &m) != 0) {
    failed(s, "mag_cpu_create failed (%llu %llu)", 0, 0);
    pthread_barrier_wait(&s->quiet);
    pthread_barrier_wait(&s->resume);
    return NULL;
  }
  for (uint64_t op = 0; op < OPS_PER_THREAD; op++) {
    unsigned r = (unsigned)(rnd(&w->rng) % 100);
    uint64_t off;
    if (r < 45 && w->n < HOLD_MAX) {
      int rc = mag_alloc(m, &off);
      if (rc != 0) {
        failed(s, "mag_alloc: %llu (thread %llu)", (unsigned long long)(-rc), w->id);
        break;
      }
      claim(w, off);
      w->held[w->n++] = off;
    } else if (r < 85 && w->n > 0) {
      unsigned i = (unsigned)(rnd(&w->rng) % w->n);
      off = w->held[i];
      w->held[i] = w->held[--w->n];
      release(w, off);
      int rc = mag_free(m, off);
      if (rc != 0) failed(s, "mag_free(%#llx): %llu", off, (unsigned long long)(-rc));
    } else if (r < 93 && w->n > 0) {
      unsigned i = (unsigned)(rnd(&w->rng) % w->n);
      off = w->held[i];
      atomic_store(&s->owner[off / GRAIN], 0xff); /* in the queue */
      if (q_push(&s->q, off)) {
        w->held[i] = w->held[--w->n];
        w->handed++;
      } else {
        atomic_store(&s->owner[off / GRAIN], (uint8_t)(w->id + 1));
      }
    } else if (w->n < HOLD_MAX && q_pop(&s->q, &off)) {
      adopt(w, off);
      w->received++;
      if (r % 2) { /* free what another thread allocated, through our own magazines */
        release(w, off);
        int rc = mag_free(m, off);
        if (rc != 0)
          failed(s, "mag_free(%#llx) of a handed object: %llu", off, (unsigned long long)(-rc));
      } else {
        w->held[w->n++] = off;
      }
    }
    w->ops++;
  }
  /* Quiescent point: the main thread checks conservation with our cpus alive. */
  pthread_barrier_wait(&s->quiet);
  pthread_barrier_wait(&s->resume);
  for (unsigned i = 0; i < w->n; i++) {
    release(w, w->held[i]);
    if (mag_free(m, w->held[i]) != 0) failed(s, "final mag_free(%#llx) %llu", w->held[i], 0);
  }
  w->n = 0;
  mag_cpu_destroy(m);
  return NULL;
}

static void run_stress(bool locked_mode, uint32_t object_size) {
  buddy_t *b;
  slab_t *sl;
  shared_t *s = calloc(1, sizeof *s);
  worker_t *w = calloc(NTHREADS, sizeof *w);
  assert_non_null(s);
  assert_non_null(w);
  assert_int_equal(buddy_create(REGION, 4096, NULL, NULL, &b), 0);
  assert_int_equal(slab_create(b, &sl), 0);
  assert_int_equal(slab_cache_create(sl, "stress", object_size, GRAIN, &s->cache), 0);
  assert_int_equal(mag_depot_create(s->cache, MAG_SIZE_MIN, locked_mode, &s->d), 0);
  s->owner = calloc(REGION / GRAIN, sizeof *s->owner);
  assert_non_null(s->owner);
  pthread_mutex_init(&s->q.lock, NULL);
  pthread_barrier_init(&s->quiet, NULL, NTHREADS + 1);
  pthread_barrier_init(&s->resume, NULL, NTHREADS + 1);
  pthread_t t[NTHREADS];
  const char *env = getenv("PP_TEST_SEED");
  uint64_t seed = env ? strtoull(env, NULL, 0) : 0x57e55ull;
  print_message("seed %#llx, %d threads, %s\n", (unsigned long long)seed, NTHREADS,
                locked_mode ? "locked mode" : "magazines");
  for (unsigned i = 0; i < NTHREADS; i++) {
    w[i].s = s;
    w[i].id = i;
    w[i].rng = seed + i * 0x1234567ull;
    assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
  }
  /* Read the statistics while the workers run: these reads race with the owners' relaxed
   * stores by design, and must be data-race free. */
  mag_stats_t st;
  for (int i = 0; i < 200; i++) {
    mag_get_stats(s->d, &st);
    assert_true(st.mag_size >= MAG_SIZE_MIN && st.mag_size <= MAG_SIZE_MAX);
  }
  pthread_barrier_wait(&s->quiet);
  uint64_t held = s->q.n; /* the queue's objects belong to the test, too */
  for (unsigned i = 0; i < NTHREADS; i++)
    held += w[i].n;
  char why[256] = "";
  int rc = mag_check(s->d, held, why, sizeof why);
  if (rc != 0) fail_msg("conservation with live cpus: %s", why);
  mag_get_stats(s->d, &st);
  if (!locked_mode) assert_true(st.objs_in_cpus > 0);
  pthread_barrier_wait(&s->resume);
  for (unsigned i = 0; i < NTHREADS; i++)
    pthread_join(t[i], NULL);
  if (atomic_load(&s->failures))
    fail_msg("%u failures; first: %s", atomic_load(&s->failures), s->failure);

  uint64_t ops = 0, handed = 0;
  for (unsigned i = 0; i < NTHREADS; i++) {
    ops += w[i].ops;
    handed += w[i].handed;
  }
  mag_get_stats(s->d, &st);
  print_message(
      "ops %llu handed %llu queue %u | M %u resizes %llu depot acquires %llu contended "
      "%llu slab trips %llu/%llu\n",
      (unsigned long long)ops, (unsigned long long)handed, s->q.n, st.mag_size,
      (unsigned long long)st.resizes, (unsigned long long)st.depot_lock_acquires,
      (unsigned long long)st.depot_lock_contended, (unsigned long long)st.slab_allocs,
      (unsigned long long)st.slab_frees);
  assert_int_equal(st.objs_in_cpus, 0);
  rc = mag_check(s->d, s->q.n, why, sizeof why);
  if (rc != 0) fail_msg("conservation after the cpus left: %s", why);

  /* The queue's leftovers go back through a fresh cpu; drain; the slabs end empty. */
  mag_cpu_t *m;
  assert_int_equal(mag_cpu_create(s->d, &m), 0);
  uint64_t off;
  while (q_pop(&s->q, &off))
    assert_int_equal(mag_free(m, off), 0);
  mag_cpu_destroy(m);
  assert_true(mag_drain(s->d, NULL) >= 0);
  rc = mag_check(s->d, 0, why, sizeof why);
  if (rc != 0) fail_msg("conservation after drain: %s", why);
  slab_info_t in;
  slab_cache_info(s->cache, &in);
  assert_int_equal(in.active_objs, 0);
  rc = slab_check(sl, why, sizeof why);
  if (rc != 0) fail_msg("slab_check: %s", why);
  mag_depot_destroy(s->d);
  slab_destroy(sl);
  buddy_destroy(b);
  pthread_barrier_destroy(&s->quiet);
  pthread_barrier_destroy(&s->resume);
  pthread_mutex_destroy(&s->q.lock);
  free(s->owner);
  free(s);
  free(w);
}

static void threads_trading_objects_through_magazines_conserve_them(void **state) {
  run_stress(false, 192);
}

static void threads_trading_objects_in_locked_mode_conserve_them(void **state) {
  run_stress(true, 64);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(threads_trading_objects_through_magazines_conserve_them),
      cmocka_unit_test(threads_trading_objects_in_locked_mode_conserve_them),
  };
  return cmocka_run_group_tests_name("magazine stress", tests, NULL, NULL);
}
