/*
 * bench.h — shared pieces of pinpool-bench.  Every benchmark runs its peer (DPDK, a raw
 * socket round trip) in the same run and prints the ratio: absolute times on a shared
 * machine mislead, ratios measured side by side much less.
 */
#ifndef PP_BENCH_H
#define PP_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bench_result {
  const char *name;   /* "pinpool.buddy", "dpdk.memzone", ... */
  uint64_t size;      /* bytes per object/buffer; 0 = a mix */
  unsigned threads;   /* 0 = not a threaded figure */
  double ns_per_op;   /* median over repetitions */
  double ops_per_sec; /* 0 when not measured */
} bench_result_t;

typedef struct bench_opts {
  bool json;            /* --json: JSON Lines on stdout (one object per benchmark, one
                           line each), progress on stderr */
  unsigned reps;        /* --reps N: repetitions; the median is reported */
  uint64_t iters;       /* --iters N: operations per repetition (0 = each bench's default) */
  unsigned max_threads; /* --threads N (scale) */
} bench_opts_t;

uint64_t bench_now_ns(void);
double bench_median(double *v, unsigned n); /* sorts v */
/* Progress on stderr: "bench buddy: pinpool.buddy rep 3/7" */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Start DPDK's EAL once per process: with hugepages when some are free, else
 * --no-huge --no-pci.  Returns 0 or a negative errno-style code (and says why). */
int bench_eal_init(void);

/* Print the results: a table with ratios of `subject` to every other entry of the same size
 * (or, with --json, one line holding the object {"bench": name, "results": [...],
 * "ratios": [...]}) */
void bench_report(const char *bench, const bench_opts_t *o, const bench_result_t *r, size_t n);

int bench_buddy(const bench_opts_t *o);
int bench_slab(const bench_opts_t *o);
int bench_scale(const bench_opts_t *o);
int bench_ipc(const bench_opts_t *o);
int bench_conns(const bench_opts_t *o);
int bench_restart(const bench_opts_t *o);

#endif /* PP_BENCH_H */
