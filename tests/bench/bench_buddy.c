/*
 * bench_buddy.c — `pinpool-bench buddy`: alloc+free pairs of the buddy allocator against
 * DPDK's two ways of getting a block of hugepage memory, in the same process run.
 *
 * What is timed: one pair = allocate a block, then free it.  The sizes cycle through one
 * fixed pseudo-random sequence drawn from 4 KiB, 8 KiB, ..., 1 MiB (nine sizes, uniform),
 * the same sequence for every contender, each block aligned to its own size (the buddy's
 * natural alignment; the DPDK calls are asked for the same alignment):
 *   pinpool.buddy  buddy_alloc(order, BUDDY_CONTIG) + buddy_free on a 1 GiB buddy with
 *                  2 MiB pages — the public, locked entry points, validators compiled out
 *                  (build with PP_DEBUG=0).  Each pair on an otherwise empty allocator
 *                  splits from the top block down and merges all the way back: the deep
 *                  path, not a cached one.
 *   dpdk.memzone   rte_memzone_reserve_aligned(name, size, SOCKET_ID_ANY,
 *                  RTE_MEMZONE_IOVA_CONTIG, size) + rte_memzone_free — the physically
 *                  contiguous peer.  Only one zone is live at a time, so the names (made
 *                  before timing, not inside the loop) are unique among live zones.
 *   dpdk.malloc    rte_malloc(NULL, size, size) + rte_free.
 * Each contender runs one untimed warm-up pass, then o->reps timed passes of o->iters
 * pairs; the median ns per pair is reported, with the ratios, through bench_report().
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_errno.h>
#include <rte_malloc.h>
#include <rte_memory.h>
#include <rte_memzone.h>

#include "bench.h"
#include "buddy.h"

#define SEQ_LEN 1024u /* length of the size sequence (a power of two) */
#define NR_SIZES 9u   /* 4 KiB .. 1 MiB */
#define DEFAULT_ITERS 100000ull
#define REGION_SIZE (1ull << 30) /* the buddy's region: 1 GiB of 2 MiB pages */
#define REGION_PAGE (2ull << 20)

typedef struct seq {
  unsigned order[SEQ_LEN];
  uint64_t size[SEQ_LEN];
  char name[SEQ_LEN][RTE_MEMZONE_NAMESIZE];
} seq_t;

static void seq_init(seq_t *s) {
  uint64_t x = 0x2545F4914F6CDD1Dull;
  for (unsigned i = 0; i < SEQ_LEN; i++) {
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    s->order[i] = (unsigned)((x * 2685821657736338717ull) >> 32) % NR_SIZES;
    s->size[i] = buddy_order_size(s->order[i]);
    snprintf(s->name[i], sizeof s->name[i], "ppbench_buddy_%u", i);
  }
}

/* One timed pass of each contender: ns per pair, or a negative value on failure. */
static double pass_buddy(buddy_t *b, const seq_t *s, uint64_t iters) {
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    uint64_t off;
    if (buddy_alloc(b, s->order[i & (SEQ_LEN - 1)], BUDDY_CONTIG, &off) != 0) return -1;
    if (buddy_free(b, off) != 0) return -1;
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

static double pass_memzone(const seq_t *s, uint64_t iters) {
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    unsigned j = (unsigned)(i & (SEQ_LEN - 1));
    const struct rte_memzone *mz = rte_memzone_reserve_aligned(
        s->name[j], s->size[j], SOCKET_ID_ANY, RTE_MEMZONE_IOVA_CONTIG, (unsigned)s->size[j]);
    if (!mz) {
      fprintf(stderr, "pinpool-bench buddy: rte_memzone_reserve_aligned(%" PRIu64 "): %s\n",
              s->size[j], rte_strerror(rte_errno));
      return -1;
    }
    rte_memzone_free(mz);
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

static double pass_malloc(const seq_t *s, uint64_t iters) {
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    unsigned j = (unsigned)(i & (SEQ_LEN - 1));
    void *p = rte_malloc(NULL, s->size[j], (unsigned)s->size[j]);
    if (!p) {
      fprintf(stderr, "pinpool-bench buddy: rte_malloc(%" PRIu64 ") failed\n", s->size[j]);
      return -1;
    }
    rte_free(p);
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

enum { C_BUDDY, C_MEMZONE, C_MALLOC, NR_CONTENDERS };
static const char *const names[NR_CONTENDERS] = {"pinpool.buddy", "dpdk.memzone",
                                                 "dpdk.malloc"};

int bench_buddy(const bench_opts_t *o) {
  int rc = -1;
  uint64_t iters = o->iters ? o->iters : DEFAULT_ITERS;
  unsigned reps = o->reps ? o->reps : 1;
  buddy_t *b = NULL;
  seq_t *s = malloc(sizeof *s);
  double *ns = calloc((size_t)reps * NR_CONTENDERS, sizeof *ns);
  double *col = calloc(reps, sizeof *col);
  if (!s || !ns || !col) goto out;
  seq_init(s);
  if (bench_eal_init() != 0) goto out;
  int err = buddy_create(REGION_SIZE, REGION_PAGE, NULL, NULL, &b);
  if (err != 0) {
    fprintf(stderr, "pinpool-bench buddy: buddy_create: %s\n", pp_strerror(err));
    goto out;
  }

  /* Warm-up: page in metadata and DPDK's heap structures, and find failures early. */
  if (pass_buddy(b, s, SEQ_LEN) < 0 || pass_memzone(s, SEQ_LEN) < 0 ||
      pass_malloc(s, SEQ_LEN) < 0)
    goto out;
  /* Interleave the contenders rep by rep, so that a noisy moment on a shared machine hits
   * all three rather than one. */
  for (unsigned r = 0; r < reps; r++) {
    bench_progress("buddy: rep %u/%u (%" PRIu64 " pairs each)", r + 1, reps, iters);
    double *row = &ns[(size_t)r * NR_CONTENDERS];
    row[C_BUDDY] = pass_buddy(b, s, iters);
    row[C_MEMZONE] = pass_memzone(s, iters);
    row[C_MALLOC] = pass_malloc(s, iters);
    for (unsigned c = 0; c < NR_CONTENDERS; c++)
      if (row[c] < 0) {
        fprintf(stderr, "pinpool-bench buddy: %s failed\n", names[c]);
        goto out;
      }
  }

  bench_result_t res[NR_CONTENDERS];
  for (unsigned c = 0; c < NR_CONTENDERS; c++) {
    for (unsigned r = 0; r < reps; r++)
      col[r] = ns[(size_t)r * NR_CONTENDERS + c];
    double med = bench_median(col, reps);
    res[c] = (bench_result_t){.name = names[c],
                              .size = 0,
                              .threads = 0,
                              .ns_per_op = med,
                              .ops_per_sec = med > 0 ? 1e9 / med : 0};
  }
  bench_report("buddy", o, res, NR_CONTENDERS);
  rc = 0;
out:
  buddy_destroy(b);
  free(col);
  free(ns);
  free(s);
  return rc;
}
