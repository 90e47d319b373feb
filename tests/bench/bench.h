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
#include <sys/types.h>

typedef struct bench_result {
  const char *name;   /* "pinpool.buddy", "dpdk.memzone", ... */
  uint64_t size;      /* bytes per object/buffer; 0 = a mix */
  unsigned threads;   /* 0 = not a threaded figure */
  unsigned clients;   /* client processes at once (bench load); 0 = not a load figure */
  double ns_per_op;   /* median over repetitions */
  double ops_per_sec; /* 0 when not measured */
  double p50_ns;      /* per-operation latency percentiles; 0 when not measured */
  double p99_ns;
  double csw_self; /* voluntary context switches per operation of the measuring side and */
  double csw_peer; /* of its peer (echo child, daemon); both 0 when not measured */
  bool aside;      /* a peer shown for information: no ratio is taken against it */
} bench_result_t;

typedef struct bench_opts {
  bool json;            /* --json: JSON Lines on stdout (one object per benchmark, one
                           line each), progress on stderr */
  unsigned reps;        /* --reps N: repetitions; the median is reported */
  uint64_t iters;       /* --iters N: operations per repetition (0 = each bench's default) */
  unsigned max_threads; /* --threads N (scale) */
  unsigned clients;     /* --clients N (load): one point of N clients; 0 = 1, 8 and 64 */
  unsigned point_ms;    /* --ms N (load): measured milliseconds per point (0 = default) */
} bench_opts_t;

uint64_t bench_now_ns(void);
double bench_median(double *v, unsigned n); /* sorts v */
/* Progress on stderr: "bench buddy: pinpool.buddy rep 3/7" */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Start DPDK's EAL once per process: with hugepages when some are free, else
 * --no-huge --no-pci.  Returns 0 or a negative errno-style code (and says why). */
int bench_eal_init(void);

/* Print the results: a table with the ratio of every pinpool entry to every other entry of
 * the same size, thread and client count that is not `aside` (or, with --json, one line
 * holding the object {"bench": name, "results": [...], "ratios": [...]}).  A ratio is of
 * ns_per_op (lower is better); where both entries have ops_per_sec, JSON adds ops_ratio,
 * the subject's throughput over the peer's. */
void bench_report(const char *bench, const bench_opts_t *o, const bench_result_t *r, size_t n);

/* bench_peer.c: the processes a benchmark talks to, and where they run. */
typedef struct bench_daemon {
  pid_t pid;
  char dir[64];
  char sock[128];
} bench_daemon_t;

void bench_sleep_ms(unsigned ms);
/* Remember the CPUs this process may use, before anything (DPDK's EAL) pins it. */
void bench_affinity_init(void);
/* The first two of those CPUs: *ret_self for the measuring side, *ret_peer for the other
 * end (the same one when only one is allowed; -1 when unknown). */
void bench_choose_cpus(int *ret_self, int *ret_peer);
void bench_pin(int cpu);                  /* the calling thread; cpu < 0: left alone */
int bench_connect_unix(const char *path); /* a connected fd, or -1 */
long bench_csw_self(void);                /* voluntary context switches of this thread */
long bench_csw_of(pid_t pid);             /* ... of pid's main thread; -1 if unknown */
/* Start the pinpoold next to this binary on a temporary socket (d->sock), 64 MiB of 4 KiB
 * pages, pinned to cpu, with the NULL-terminated extra arguments (may be NULL).  0 once it
 * accepts connections; -1 (said on stderr) otherwise. */
int bench_daemon_start(bench_daemon_t *d, int cpu, const char *const *extra);
void bench_daemon_stop(bench_daemon_t *d);
/* bench_echo.c: start a libuv echo server (pinpoold's event-loop model) on a temporary
 * socket, pinned to cpu; 0 once it accepts connections.  Stop it with bench_echo_stop. */
int bench_echo_start(bench_daemon_t *e, int cpu);
void bench_echo_stop(bench_daemon_t *e);

int bench_buddy(const bench_opts_t *o);
int bench_slab(const bench_opts_t *o);
int bench_scale(const bench_opts_t *o);
int bench_ipc(const bench_opts_t *o);
int bench_conns(const bench_opts_t *o);
int bench_restart(const bench_opts_t *o);
int bench_load(const bench_opts_t *o);

#endif /* PP_BENCH_H */
