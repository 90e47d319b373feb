/*
 * test_chaos.c — client processes keep working while pinpoold is killed at random moments
 * dozens of times, and nobody can tell.
 *
 * CHAOS_PROCS processes, each one libpinpool client shared by CHAOS_THREADS threads, run a
 * mix of alloc and free (4 KiB to 64 KiB), named alloc and lookup of what other processes
 * published, and cache alloc and free of two shared caches.  Each thread writes its own
 * pattern into everything it holds — a tag unique to the allocation, over every word — and
 * checks it again before freeing, every 64 operations, and at the end; a buffer it looked up
 * carries its publisher's pattern, written before the name was announced and never again.
 * So a block or object handed to two holders, or memory the daemon lost track of and gave
 * out again, shows up as a pattern overwritten.
 *
 * Meanwhile the supervisor SIGKILLs the daemon CHAOS_KILLS times, each at a random moment
 * of the new process's life (sometimes before READY=1, during the replay itself), and
 * restarts it at once with the region and journal it stored.  The seed is printed; set
 * PP_CHAOS_SEED to repeat a run.
 *
 * At the end: no client saw an error (the only refusals are the documented ones: a lookup
 * of a name that went, a region momentarily full), every pattern held, every process
 * re-claimed its session; after everyone disconnects the daemon's books show nothing held,
 * no cache left and every byte free; and its clean stop passes its check of the journal
 * against the ledger (exit 0).  In the ASan+UBSan build the daemon also validates its whole
 * ledger after every request.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pattern.h"
#include "pinpool.h"
#include "rsd.h"

#define CHAOS_PROCS 3
#define CHAOS_THREADS 3
#define CHAOS_KILLS 50
#define CHAOS_NAMES 64 /* announced names, shared by all processes */
#define MAX_BUFS 16    /* per thread */
#define MAX_OBJS 48    /* per thread */
#define REGION (16ull << 20)

typedef struct proc_report {
  _Atomic uint64_t ops, refusals, reclaims;
  _Atomic int errors;
  char first_error[256];
} proc_report_t;

/* Shared between the test and its worker processes (MAP_SHARED). */
typedef struct shared {
  _Atomic int stop;
  _Atomic int connected;
  _Atomic uint64_t names[CHAOS_NAMES]; /* announced publications: tag + 1, 0 = none */
  proc_report_t p[CHAOS_PROCS];
} shared_t;

static shared_t *sh;
static char sock[128];

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rnd(uint64_t *s, uint64_t n) {
  return n ? rng_next(s) % n : 0;
}

/* ---- a worker process ------------------------------------------------------------------- */

typedef struct held_buf {
  pp_buffer b;
  uint64_t tag;
} held_buf_t;

typedef struct held_obj {
  void *p;
  pp_cache *k;
  uint32_t size;
  uint64_t tag;
} held_obj_t;

typedef struct worker {
  int proc, thread;
  pp_client *c;
  pp_cache *k[2];
  held_buf_t bufs[MAX_BUFS];
  int nbufs;
  held_obj_t objs[MAX_OBJS];
  int nobjs;
  uint64_t rng, serial;
} worker_t;

static void error(worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void error(worker_t *w, const char *fmt, ...) {
  proc_report_t *r = &sh->p[w->proc];
  if (atomic_fetch_add(&r->errors, 1) == 0) {
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(r->first_error, sizeof r->first_error, "process %d thread %d: ", w->proc,
                     w->thread);
    vsnprintf(r->first_error + n, sizeof r->first_error - (size_t)n, fmt, ap);
    va_end(ap);
  }
}

static uint64_t new_tag(worker_t *w) {
  return (uint64_t)w->proc << 56 | (uint64_t)w->thread << 48 | ++w->serial;
}

static void name_of(uint64_t tag, char *buf, size_t len) {
  snprintf(buf, len, "chaos-%" PRIx64, tag);
}

static void drop_buf(worker_t *w, int i, const char *why) {
  held_buf_t *h = &w->bufs[i];
  if (!pattern_intact(h->b.addr, h->b.size, h->tag))
    error(w, "buffer %" PRIu64 " (offset %" PRIu64 ") overwritten (%s)", h->b.handle,
          h->b.offset, why);
  int rc = pp_free(w->c, h->b.handle);
  if (rc) error(w, "pp_free(%" PRIu64 "): %s", h->b.handle, pp_err_name(rc));
  w->bufs[i] = w->bufs[--w->nbufs];
}

static void drop_obj(worker_t *w, int i) {
  held_obj_t *h = &w->objs[i];
  if (!pattern_intact(h->p, h->size, h->tag)) error(w, "object at %p overwritten", h->p);
  int rc = pp_cache_free(h->k, h->p);
  if (rc) error(w, "pp_cache_free: %s", pp_err_name(rc));
  w->objs[i] = w->objs[--w->nobjs];
}

static void verify_all(worker_t *w) {
  for (int i = 0; i < w->nbufs; i++)
    if (!pattern_intact(w->bufs[i].b.addr, w->bufs[i].b.size, w->bufs[i].tag))
      error(w, "buffer at offset %" PRIu64 " overwritten", w->bufs[i].b.offset);
  for (int i = 0; i < w->nobjs; i++)
    if (!pattern_intact(w->objs[i].p, w->objs[i].size, w->objs[i].tag))
      error(w, "object at offset %" PRIu64 " overwritten", pp_offset(w->c, w->objs[i].p));
}

static void refusal(worker_t *w) {
  atomic_fetch_add(&sh->p[w->proc].refusals, 1);
}

static void one_op(worker_t *w) {
  uint64_t r = rnd(&w->rng, 100);
  int rc;
  if (r < 25) { /* alloc */
    if (w->nbufs == MAX_BUFS) {
      drop_buf(w, (int)rnd(&w->rng, (uint64_t)w->nbufs), "free");
      return;
    }
    held_buf_t *h = &w->bufs[w->nbufs];
    rc = pp_alloc(w->c, 4096u << rnd(&w->rng, 5), 0, &h->b);
    if (rc == PP_ENOMEM) {
      refusal(w);
      return;
    }
    if (rc) {
      error(w, "pp_alloc: %s", pp_err_name(rc));
      return;
    }
    h->tag = new_tag(w);
    pattern_fill(h->b.addr, h->b.size, h->tag);
    w->nbufs++;
  } else if (r < 45) { /* free */
    if (w->nbufs) drop_buf(w, (int)rnd(&w->rng, (uint64_t)w->nbufs), "free");
  } else if (r < 55) { /* publish a name, announce it once its pattern is there */
    if (w->nbufs == MAX_BUFS) return;
    held_buf_t *h = &w->bufs[w->nbufs];
    char name[64];
    h->tag = new_tag(w);
    name_of(h->tag, name, sizeof name);
    rc = pp_alloc_named(w->c, name, 8192, 0, &h->b);
    if (rc == PP_ENOMEM) {
      refusal(w);
      return;
    }
    if (rc) {
      error(w, "pp_alloc_named(%s): %s", name, pp_err_name(rc));
      return;
    }
    pattern_fill(h->b.addr, h->b.size, h->tag);
    w->nbufs++;
    atomic_store(&sh->names[rnd(&w->rng, CHAOS_NAMES)], h->tag + 1);
  } else if (r < 65) { /* look up what someone announced */
    uint64_t t = atomic_load(&sh->names[rnd(&w->rng, CHAOS_NAMES)]);
    if (!t || w->nbufs == MAX_BUFS) return;
    held_buf_t *h = &w->bufs[w->nbufs];
    char name[64];
    name_of(t - 1, name, sizeof name);
    rc = pp_lookup(w->c, name, &h->b);
    if (rc == PP_ENOENT) {
      refusal(w); /* its last holder let go */
      return;
    }
    if (rc) {
      error(w, "pp_lookup(%s): %s", name, pp_err_name(rc));
      return;
    }
    h->tag = t - 1;
    if (!pattern_intact(h->b.addr, h->b.size, h->tag))
      error(w, "looked-up buffer %s overwritten", name);
    w->nbufs++;
  } else if (r < 90) { /* an object */
    if (w->nobjs == MAX_OBJS) {
      drop_obj(w, (int)rnd(&w->rng, (uint64_t)w->nobjs));
      return;
    }
    int which = (int)rnd(&w->rng, 2);
    held_obj_t *h = &w->objs[w->nobjs];
    void *p = NULL;
    rc = pp_cache_alloc_bulk(w->k[which], &p, 1);
    if (rc == PP_ENOMEM) {
      refusal(w);
      return;
    }
    if (rc != 1) {
      error(w, "pp_cache_alloc: %s", pp_err_name(rc));
      return;
    }
    h->p = p;
    h->k = w->k[which];
    h->size = pp_cache_object_size(h->k);
    h->tag = new_tag(w);
    pattern_fill(h->p, h->size, h->tag);
    w->nobjs++;
  } else { /* an object back */
    if (w->nobjs) drop_obj(w, (int)rnd(&w->rng, (uint64_t)w->nobjs));
  }
}

static void *worker_thread(void *arg) {
  worker_t *w = arg;
  while (!atomic_load(&sh->stop) && atomic_load(&sh->p[w->proc].errors) == 0) {
    one_op(w);
    atomic_fetch_add(&sh->p[w->proc].ops, 1);
    if (w->serial % 64 == 0) verify_all(w);
  }
  verify_all(w);
  while (w->nbufs)
    drop_buf(w, 0, "at the end");
  while (w->nobjs)
    drop_obj(w, 0);
  return NULL;
}

static int worker_main(int proc) {
  worker_t w[CHAOS_THREADS];
  pthread_t t[CHAOS_THREADS];
  pp_client *c;
  pp_cache *k[2];
  char name[32];
  snprintf(name, sizeof name, "chaos-%d", proc);
  if (pp_connect(sock, name, &c) || pp_cache_open(c, "chaos-64", 64, 0, &k[0]) ||
      pp_cache_open(c, "chaos-1000", 1000, 8, &k[1])) {
    snprintf(sh->p[proc].first_error, sizeof sh->p[proc].first_error,
             "process %d could not connect", proc);
    atomic_fetch_add(&sh->p[proc].errors, 1);
    atomic_fetch_add(&sh->connected, 1);
    return 1;
  }
  atomic_fetch_add(&sh->connected, 1);
  for (int i = 0; i < CHAOS_THREADS; i++) {
    w[i] = (worker_t){.proc = proc, .thread = i, .c = c, .k = {k[0], k[1]}};
    w[i].rng = (uint64_t)getpid() * 1000003u + (uint64_t)i;
    pthread_create(&t[i], NULL, worker_thread, &w[i]);
  }
  for (int i = 0; i < CHAOS_THREADS; i++)
    pthread_join(t[i], NULL);
  atomic_store(&sh->p[proc].reclaims, pp_reclaims(c));
  pp_disconnect(c);
  return atomic_load(&sh->p[proc].errors) ? 1 : 0;
}

/* ---- the test -----------------------------------------------------------------------------
 */

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

static uint32_t attached(const Pinpool__V1__Response *st) {
  uint32_t n = 0;
  for (size_t i = 0; i < st->stats->n_clients; i++)
    n += !st->stats->clients[i]->detached;
  return n;
}

static void clients_survive_fifty_kills_with_every_byte_in_place(void **state) {
  rsd_t d;
  static const char *const args[] = {"--grace", "30000", NULL};
  const char *seed_env = getenv("PP_CHAOS_SEED");
  rsd_opts_t o = {.args = args, .seed = seed_env ? strtoull(seed_env, NULL, 10) : 0};
  pid_t pids[CHAOS_PROCS];

  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(sh != MAP_FAILED);
  memset(sh, 0, sizeof *sh);
  if (rsd_start(&d, &o)) fail_msg("the supervised daemon did not start");
  snprintf(sock, sizeof sock, "%s", d.sock);
  for (int i = 0; i < CHAOS_PROCS; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) _exit(worker_main(i));
  }
  for (int i = 0; i < 2000 && atomic_load(&sh->connected) < CHAOS_PROCS; i++)
    sleep_ms(10);
  assert_int_equal(atomic_load(&sh->connected), CHAOS_PROCS);

  /* The kills: each at a random moment of the new daemon's life, one in five from its
   * fork on (start-up and replay included), the others once it had a little time. */
  uint64_t ops_before = 0;
  for (int i = 0; i < CHAOS_PROCS; i++)
    ops_before += atomic_load(&sh->p[i].ops);
  int kills = 0;
  for (int k = 0; k < CHAOS_KILLS; k++) {
    sup_exit_t ex;
    uint64_t min_us = k % 5 == 0 ? 0 : 40000;
    int rc = sup_kill_random(d.sup, SIGKILL, min_us, 250000, 30000, &ex);
    if (rc) {
      rsd_dump_log(&d);
      fail_msg("kill %d: %s", k, pp_strerror(rc));
    }
    kills++;
    bool errors = false;
    for (int i = 0; i < CHAOS_PROCS; i++)
      errors |= atomic_load(&sh->p[i].errors) != 0;
    if (errors) break;
  }
  assert_int_equal(sup_wait_ready(d.sup, 60000), 0);
  sleep_ms(300); /* the last daemon serves a while too */
  atomic_store(&sh->stop, 1);

  int failed = 0;
  for (int i = 0; i < CHAOS_PROCS; i++) {
    int st = 0;
    for (int t = 0; t < 1200 && waitpid(pids[i], &st, WNOHANG) == 0; t++)
      sleep_ms(50);
    if (waitpid(pids[i], &st, WNOHANG) == 0) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], &st, 0);
      fprintf(stderr, "process %d did not finish\n", i);
      failed++;
    } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      failed++;
    }
  }
  uint64_t ops = 0, refusals = 0, reclaims = 0;
  for (int i = 0; i < CHAOS_PROCS; i++) {
    proc_report_t *r = &sh->p[i];
    printf("process %d: %" PRIu64 " operations, %" PRIu64 " refusals, %" PRIu64
           " re-claims, %d errors%s%s\n",
           i, atomic_load(&r->ops), atomic_load(&r->refusals), atomic_load(&r->reclaims),
           atomic_load(&r->errors), r->first_error[0] ? ": " : "", r->first_error);
    ops += atomic_load(&r->ops);
    refusals += atomic_load(&r->refusals);
    reclaims += atomic_load(&r->reclaims);
  }
  sup_info_t in;
  sup_info(d.sup, &in);
  printf("%u restarts, %" PRIu64 " operations (%" PRIu64 " before the first kill), %" PRIu64
         " re-claims\n",
         in.restarts, ops, ops_before, reclaims);
  if (failed) {
    rsd_dump_log(&d);
    fail_msg("%d of %d client processes failed", failed, CHAOS_PROCS);
  }
  assert_true(in.restarts >= CHAOS_KILLS);
  assert_int_equal(in.exits, kills); /* every daemon that ended was one the test killed */
  rsd_assert_log_clean(&d);
  /* Work went on between the kills, and the clients did come back to new daemons. */
  assert_true(ops > ops_before + 20 * CHAOS_KILLS);
  assert_true(reclaims >= CHAOS_PROCS);

  /* Everyone left: nothing held, no cache, every byte free. */
  Pinpool__V1__Response *st = NULL;
  for (int i = 0; i < 200; i++) {
    st = rsd_stats(&d);
    if (attached(st) == 1 && st->stats->free_bytes == REGION) break;
    frame_free_response(st);
    st = NULL;
    sleep_ms(50);
  }
  if (!st) {
    rsd_dump_log(&d);
    st = rsd_stats(&d);
    fail_msg("books do not balance: %u clients, %" PRIu64 " bytes free of %llu, %" PRIu64
             " buffers, %zu caches",
             attached(st), st->stats->free_bytes, (unsigned long long)REGION,
             st->stats->nr_buffers, st->stats->n_caches);
  }
  assert_int_equal(st->stats->nr_buffers, 0);
  assert_int_equal(st->stats->n_caches, 0);
  frame_free_response(st);
  /* Its clean stop checks the journal against the ledger: exit 0 only if they agree. */
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
  munmap(sh, sizeof *sh);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(clients_survive_fifty_kills_with_every_byte_in_place),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
