/*
 * bench_slab.c — `pinpool-bench slab` and `pinpool-bench scale`.
 *
 * slab: alloc+free of 64 B, 256 B and 1 KiB objects, one thread, against DPDK's object
 * allocators in the same process run.  One op = one alloc plus one free.  Each pass
 * allocates N_KEEP objects and then frees them (in reverse), over and over, so every
 * allocator holds a few objects at a time rather than ping-ponging a single one (the
 * shape of DPDK's own mempool_perf test):
 *   pinpool.slab           slab_cache_alloc/slab_cache_free: the cache's lock, the free
 *                          stack, the slab hash on free — no magazines.
 *   pinpool.magazine       mag_alloc/mag_free on one mag_cpu_t (default M).
 *   dpdk.mempool_cache     rte_mempool_get/put, per-lcore cache of 256, on the main lcore
 *                          (the caches are per lcore: another thread would miss them).
 *   dpdk.mempool_nocache   the same pool shape without a cache: every op hits the ring.
 *   dpdk.malloc            rte_malloc/rte_free of the object size.
 * pinpool deals in offsets over private metadata and never touches the region's bytes, so
 * no region is mapped here; DPDK's mempool does not touch object bytes either (its
 * per-object header is written at creation), rte_malloc writes its element headers.
 * Targets: magazine <= 1.5x mempool_cache; slab <= 0.5x malloc.
 *
 * scale: T threads (1 .. the core count, at most 16; --threads N to override), each with
 * its own mag_cpu_t on ONE shared cache, doing alloc+free pairs (N_KEEP at a time) for
 * 200 ms (or --iters pairs each); throughput = all pairs / wall time from the first
 * thread's start to the last one's finish.
 *   pinpool.magazine  a depot with magazines;  pinpool.locked  the locked mode (every op
 *   under the cache's one mutex).  Threads are pinned to CPUs i % ncpu, so T <= cores
 * measures scaling and not the scheduler.  Targets: magazines at 2 threads on 2 cores
 * >= 1.7x one thread; locked <= 1.1x.  The speedups are printed after the table (on
 * stderr with --json, which keeps stdout pure JSON Lines).
 *
 * Build with -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPP_DEBUG=0: validators after every state
 * change would measure slab_cache_check, not the allocator.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <time.h>

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mempool.h>

#include "bench.h"
#include "buddy.h"
#include "magazine.h"
#include "slab.h"

#define N_KEEP 16u                /* objects held per pass */
#define DEFAULT_ITERS 1000000ull  /* pairs per repetition (slab) */
#define SCALE_RUN_NS 200000000ull /* each repetition runs 200 ms unless --iters is given */
#define POOL_OBJS 8191u           /* rte_mempool size: 2^n - 1 is its optimum */
#define MEMPOOL_CACHE 256u
#define SCALE_MAX_THREADS 16u
#define BUDDY_BYTES (256ull << 20) /* offsets only: nothing is mapped */

static const uint32_t sizes[] = {64, 256, 1024};
#define NSIZES (sizeof sizes / sizeof sizes[0])

typedef enum contender {
  C_SLAB,
  C_MAGAZINE,
  C_MEMPOOL_CACHE,
  C_MEMPOOL_NOCACHE,
  C_MALLOC,
  C_COUNT
} contender_t;

static const char *const contender_names[C_COUNT] = {"pinpool.slab", "pinpool.magazine",
                                                     "dpdk.mempool_cache",
                                                     "dpdk.mempool_nocache", "dpdk.malloc"};

typedef struct subjects {
  slab_cache_t *cache;
  mag_cpu_t *cpu;
  struct rte_mempool *mp_cache, *mp_nocache;
  uint32_t size;
} subjects_t;

/* One timed pass: ns per alloc+free pair, or -1 on failure.  The loops are written out
 * per contender so no indirect call sits between the clock and the allocator. */
static double pass(contender_t which, const subjects_t *s, uint64_t rounds) {
  uint64_t off[N_KEEP];
  void *p[N_KEEP];
  uint64_t t0 = bench_now_ns();
  switch (which) {
  case C_SLAB:
    for (uint64_t r = 0; r < rounds; r++) {
      for (unsigned i = 0; i < N_KEEP; i++)
        if (slab_cache_alloc(s->cache, &off[i]) != 0) return -1;
      for (unsigned i = N_KEEP; i-- > 0;)
        if (slab_cache_free(s->cache, off[i]) != 0) return -1;
    }
    break;
  case C_MAGAZINE:
    for (uint64_t r = 0; r < rounds; r++) {
      for (unsigned i = 0; i < N_KEEP; i++)
        if (mag_alloc(s->cpu, &off[i]) != 0) return -1;
      for (unsigned i = N_KEEP; i-- > 0;)
        if (mag_free(s->cpu, off[i]) != 0) return -1;
    }
    break;
  case C_MEMPOOL_CACHE:
  case C_MEMPOOL_NOCACHE: {
    struct rte_mempool *mp = which == C_MEMPOOL_CACHE ? s->mp_cache : s->mp_nocache;
    for (uint64_t r = 0; r < rounds; r++) {
      for (unsigned i = 0; i < N_KEEP; i++)
        if (rte_mempool_get(mp, &p[i]) != 0) return -1;
      for (unsigned i = N_KEEP; i-- > 0;)
        rte_mempool_put(mp, p[i]);
    }
    break;
  }
  case C_MALLOC:
    for (uint64_t r = 0; r < rounds; r++) {
      for (unsigned i = 0; i < N_KEEP; i++)
        if (!(p[i] = rte_malloc(NULL, s->size, 0))) return -1;
      for (unsigned i = N_KEEP; i-- > 0;)
        rte_free(p[i]);
    }
    break;
  default: return -1;
  }
  return (double)(bench_now_ns() - t0) / (double)(rounds * N_KEEP);
}

static int setup_pools(subjects_t *s, uint32_t size) {
  char name[RTE_MEMPOOL_NAMESIZE];
  snprintf(name, sizeof name, "ppb_c%u", size);
  s->mp_cache = rte_mempool_create(name, POOL_OBJS, size, MEMPOOL_CACHE, 0, NULL, NULL, NULL,
                                   NULL, SOCKET_ID_ANY, 0);
  snprintf(name, sizeof name, "ppb_n%u", size);
  s->mp_nocache =
      rte_mempool_create(name, POOL_OBJS, size, 0, 0, NULL, NULL, NULL, NULL, SOCKET_ID_ANY, 0);
  if (!s->mp_cache || !s->mp_nocache) {
    fprintf(stderr, "pinpool-bench slab: rte_mempool_create(%u B): %s\n", size,
            rte_strerror(rte_errno));
    return -1;
  }
  return 0;
}

static void check_target(const bench_result_t *r, size_t n, const char *subject,
                         const char *peer, uint32_t size, double target) {
  double a = 0, b = 0;
  for (size_t i = 0; i < n; i++) {
    if (r[i].size != size) continue;
    if (!strcmp(r[i].name, subject)) a = r[i].ns_per_op;
    if (!strcmp(r[i].name, peer)) b = r[i].ns_per_op;
  }
  if (a <= 0 || b <= 0) return;
  bench_progress("target %s / %s at %u B: %.3fx (want <= %.2fx) %s", subject, peer, size, a / b,
                 target, a / b <= target ? "met" : "MISSED");
}

static bool is_dpdk(contender_t c) {
  return c >= C_MEMPOOL_CACHE;
}

int bench_slab(const bench_opts_t *o) {
  /* Without an EAL the pinpool figures are still worth printing; the ratios are not. */
  bool dpdk = bench_eal_init() == 0;
  if (!dpdk)
    bench_progress("slab: DPDK unavailable: measuring pinpool alone, no peers, no ratios");
  else if (rte_lcore_id() != rte_get_main_lcore())
    bench_progress("warning: not on the main lcore: the mempool cache is not used");
  int rc;
  uint64_t iters = o->iters ? o->iters : DEFAULT_ITERS;
  uint64_t rounds = (iters + N_KEEP - 1) / N_KEEP;
  bench_result_t res[NSIZES * C_COUNT];
  size_t nres = 0;
  double *samples = calloc(o->reps, sizeof *samples);
  buddy_t *b = NULL;
  slab_t *sl = NULL;
  mag_depot_t *d[NSIZES] = {0};
  subjects_t subj[NSIZES];
  memset(subj, 0, sizeof subj);
  rc = -1;
  if (!samples) goto out;
  if (buddy_create(BUDDY_BYTES, 2ull << 20, NULL, NULL, &b) != 0) goto out;
  if (slab_create(b, &sl) != 0) goto out;
  for (size_t k = 0; k < NSIZES; k++) {
    char name[32];
    snprintf(name, sizeof name, "bench-%u", sizes[k]);
    subj[k].size = sizes[k];
    if (slab_cache_create(sl, name, sizes[k], 0, &subj[k].cache) != 0) goto out;
    if (mag_depot_create(subj[k].cache, 0, false, &d[k]) != 0) goto out;
    if (mag_cpu_create(d[k], &subj[k].cpu) != 0) goto out;
    if (dpdk && setup_pools(&subj[k], sizes[k]) != 0) goto out;
  }
  for (size_t k = 0; k < NSIZES; k++) {
    for (int c = 0; c < C_COUNT; c++) {
      if (!dpdk && is_dpdk((contender_t)c)) continue;
      if (pass((contender_t)c, &subj[k], rounds / 4 + 1) < 0) { /* warm-up */
        fprintf(stderr, "pinpool-bench slab: %s failed at %u B\n", contender_names[c],
                sizes[k]);
        goto out;
      }
      for (unsigned r = 0; r < o->reps; r++) {
        bench_progress("slab: %s %u B rep %u/%u", contender_names[c], sizes[k], r + 1, o->reps);
        samples[r] = pass((contender_t)c, &subj[k], rounds);
        if (samples[r] < 0) goto out;
      }
      res[nres++] = (bench_result_t){.name = contender_names[c],
                                     .size = sizes[k],
                                     .threads = 0,
                                     .ns_per_op = bench_median(samples, o->reps)};
    }
  }
  bench_report("slab", o, res, nres);
  for (size_t k = 0; k < NSIZES; k++) {
    check_target(res, nres, "pinpool.magazine", "dpdk.mempool_cache", sizes[k], 1.5);
    check_target(res, nres, "pinpool.slab", "dpdk.malloc", sizes[k], 0.5);
  }
  rc = 0;
out:
  for (size_t k = 0; k < NSIZES; k++) {
    mag_cpu_destroy(subj[k].cpu);
    mag_depot_destroy(d[k]);
    if (dpdk) {
      rte_mempool_free(subj[k].mp_cache);
      rte_mempool_free(subj[k].mp_nocache);
    }
  }
  slab_destroy(sl);
  if (b) buddy_destroy(b);
  free(samples);
  return rc;
}

/* ---- scale ----------------------------------------------------------------------------- */

typedef struct scale_run {
  mag_depot_t *d;
  uint64_t rounds;          /* N_KEEP pairs each; 0: run until stop */
  _Atomic int go;           /* set once every thread is up (or on failure) */
  _Atomic int stop;         /* timed mode: set by the main thread */
  _Atomic uint64_t pairs;   /* done, over all threads */
  _Atomic uint64_t t_start; /* earliest start */
  _Atomic uint64_t t_end;   /* latest finish */
  _Atomic int failed;
} scale_run_t;

static void *scale_thread(void *p) {
  scale_run_t *run = p;
  mag_cpu_t *m = NULL;
  uint64_t off[N_KEEP];
  if (mag_cpu_create(run->d, &m) != 0) run->failed = 1;
  /* warm: fill the magazines and fault in the metadata before the clock starts */
  for (unsigned i = 0; m && i < N_KEEP; i++)
    if (mag_alloc(m, &off[i]) != 0) run->failed = 1;
  for (unsigned i = 0; m && i < N_KEEP; i++)
    mag_free(m, off[i]);
  while (!atomic_load(&run->go))
    sched_yield();
  uint64_t t0 = bench_now_ns(), first = atomic_load(&run->t_start);
  while ((first == 0 || t0 < first) &&
         !atomic_compare_exchange_weak(&run->t_start, &first, t0)) {
  }
  uint64_t r = 0;
  for (; m && !atomic_load_explicit(&run->failed, memory_order_relaxed); r++) {
    if (run->rounds ? r >= run->rounds : atomic_load_explicit(&run->stop, memory_order_relaxed))
      break;
    for (unsigned i = 0; i < N_KEEP; i++)
      if (mag_alloc(m, &off[i]) != 0) run->failed = 1;
    for (unsigned i = N_KEEP; i-- > 0;)
      mag_free(m, off[i]);
  }
  uint64_t now = bench_now_ns(), prev = atomic_load(&run->t_end);
  atomic_fetch_add(&run->pairs, r * N_KEEP);
  while (now > prev && !atomic_compare_exchange_weak(&run->t_end, &prev, now)) {
  }
  mag_cpu_destroy(m);
  return NULL;
}

/* One repetition with T threads: pairs per second over all threads, or -1. */
static double scale_once(slab_cache_t *cache, bool locked, unsigned T, uint64_t rounds,
                         unsigned ncpu) {
  scale_run_t run = {.rounds = rounds};
  pthread_t th[SCALE_MAX_THREADS * 4];
  unsigned started = 0;
  double result = -1;
  if (mag_depot_create(cache, 0, locked, &run.d) != 0) return -1;
  for (unsigned i = 0; i < T; i++) {
    pthread_attr_t attr;
    cpu_set_t set;
    pthread_attr_init(&attr);
    /* Pin explicitly: after rte_eal_init the main thread (and what it spawns) is bound
     * to lcore 0's CPU, which would put every worker on one core. */
    CPU_ZERO(&set);
    CPU_SET(i % ncpu, &set);
    pthread_attr_setaffinity_np(&attr, sizeof set, &set);
    int e = pthread_create(&th[i], &attr, scale_thread, &run);
    if (e == EINVAL) { /* that CPU is not ours (cpuset): let the scheduler place it */
      CPU_ZERO(&set);
      for (unsigned c = 0; c < ncpu; c++)
        CPU_SET(c, &set);
      pthread_attr_setaffinity_np(&attr, sizeof set, &set);
      e = pthread_create(&th[i], &attr, scale_thread, &run);
    }
    pthread_attr_destroy(&attr);
    if (e != 0) {
      run.failed = 1;
      break;
    }
    started++;
  }
  if (started < T) fprintf(stderr, "pinpool-bench scale: could not start %u threads\n", T);
  atomic_store(&run.go, 1);
  if (!rounds) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)SCALE_RUN_NS};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    atomic_store(&run.stop, 1);
  }
  for (unsigned i = 0; i < started; i++)
    pthread_join(th[i], NULL);
  if (!atomic_load(&run.failed)) {
    uint64_t ns = atomic_load(&run.t_end) - atomic_load(&run.t_start);
    result = (double)atomic_load(&run.pairs) * 1e9 / (double)(ns ? ns : 1);
  }
  mag_depot_destroy(run.d);
  return result;
}

int bench_scale(const bench_opts_t *o) {
  unsigned ncpu = (unsigned)get_nprocs();
  unsigned maxT =
      o->max_threads ? o->max_threads : (ncpu < SCALE_MAX_THREADS ? ncpu : SCALE_MAX_THREADS);
  if (maxT == 0) maxT = 1;
  if (maxT > SCALE_MAX_THREADS * 4) maxT = SCALE_MAX_THREADS * 4;
  /* --iters N: N pairs per thread; by default each repetition runs for a fixed time, so
   * the slow locked mode and the fast magazines get the same exposure to the machine. */
  uint64_t rounds = o->iters ? (o->iters + N_KEEP - 1) / N_KEEP : 0;
  bench_result_t *res = calloc(2 * maxT, sizeof *res);
  double *samples = calloc(o->reps, sizeof *samples);
  buddy_t *b = NULL;
  slab_t *sl = NULL;
  slab_cache_t *cache;
  int rc = -1;
  if (!res || !samples) goto out;
  if (buddy_create(BUDDY_BYTES, 2ull << 20, NULL, NULL, &b) != 0) goto out;
  if (slab_create(b, &sl) != 0) goto out;
  if (slab_cache_create(sl, "scale-64", 64, 0, &cache) != 0) goto out;
  size_t n = 0;
  for (int mode = 0; mode < 2; mode++) {
    bool locked = mode == 1;
    const char *name = locked ? "pinpool.locked" : "pinpool.magazine";
    for (unsigned T = 1; T <= maxT; T++) {
      for (unsigned r = 0; r < o->reps; r++) {
        bench_progress("scale: %s %u thread%s rep %u/%u", name, T, T > 1 ? "s" : "", r + 1,
                       o->reps);
        samples[r] = scale_once(cache, locked, T, rounds, ncpu);
        if (samples[r] < 0) goto out;
      }
      double ops = bench_median(samples, o->reps);
      res[n++] = (bench_result_t){
          .name = name, .size = 64, .threads = T, .ns_per_op = 1e9 / ops, .ops_per_sec = ops};
    }
  }
  bench_report("scale", o, res, n);
  FILE *out = o->json ? stderr : stdout;
  fprintf(out, "speedup over one thread (%u CPUs online):\n", ncpu);
  for (size_t i = 0; i < n; i++) {
    const bench_result_t *one = NULL;
    for (size_t j = 0; j < n; j++)
      if (!strcmp(res[j].name, res[i].name) && res[j].threads == 1) one = &res[j];
    if (one && res[i].threads > 1)
      fprintf(out, "  %-18s %2u threads %6.2fx\n", res[i].name, res[i].threads,
              res[i].ops_per_sec / one->ops_per_sec);
  }
  for (size_t i = 0; i < n; i++) {
    if (res[i].threads != 2) continue;
    for (size_t j = 0; j < n; j++) {
      if (res[j].threads != 1 || strcmp(res[j].name, res[i].name)) continue;
      double s = res[i].ops_per_sec / res[j].ops_per_sec;
      bool magazine = !strcmp(res[i].name, "pinpool.magazine");
      bool met = magazine ? s >= 1.7 : s <= 1.1;
      bench_progress("target %s 2 threads / 1: %.2fx (want %s %.1fx) %s%s", res[i].name, s,
                     magazine ? ">=" : "<=", magazine ? 1.7 : 1.1, met ? "met" : "MISSED",
                     ncpu < 2 ? " (fewer than 2 CPUs online)" : "");
    }
  }
  fflush(out);
  rc = 0;
out:
  slab_destroy(sl);
  if (b) buddy_destroy(b);
  free(res);
  free(samples);
  return rc;
}
