/*
 * pinpool-bench — benchmarks that compare pinpool with its peers in the same run.
 *   pinpool-bench [--json] [--reps N] [--iters N] [--threads N] [--clients N] [--ms N]
 *                 buddy|slab|scale|ipc|load|conns|restart|all
 * --json writes JSON Lines: one object per benchmark, each on one line (bench_common.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static const struct {
  const char *name;
  int (*fn)(const bench_opts_t *);
  const char *what;
} benches[] = {
    {"buddy", bench_buddy, "buddy alloc+free pairs vs rte_memzone and rte_malloc"},
    {"slab", bench_slab, "slab / magazine alloc+free vs rte_mempool and rte_malloc"},
    {"scale", bench_scale, "threads on one cache: magazines vs one lock"},
    {"ipc", bench_ipc, "daemon round trips vs a raw socketpair round trip"},
    {"load", bench_load, "N client processes at once: pinpoold vs a libuv echo server"},
    {"conns", bench_conns, "daemon memory with 0/1k/10k idle clients; a client's latency"},
    {"restart", bench_restart,
     "journal cost; SIGKILL to the first re-claimed request; adopt vs create 1 GiB"},
};

static int usage(FILE *f) {
  fprintf(f,
          "usage: pinpool-bench [--json] [--reps N] [--iters N] [--threads N] [--clients N]\n"
          "                     [--ms N] BENCH\n");
  for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++)
    fprintf(f, "  %-7s %s\n", benches[i].name, benches[i].what);
  fprintf(f, "  all     each of the above in turn\n");
  fprintf(f, "--reps N     repetitions, the median reported (default 7)\n"
             "--iters N    operations per repetition (buddy, slab, scale, ipc)\n"
             "--threads N  most threads (scale)\n"
             "--clients N  one point of N client processes (load; default 1, 8 and 64)\n"
             "--ms N       measured milliseconds per point (load; default 1000)\n");
  fprintf(f, "--json prints JSON Lines: one object per benchmark on a line of its own,\n"
             "  {\"bench\": NAME, \"results\": [...], \"ratios\": [...]}; progress goes to "
             "stderr\n");
  return f == stderr ? 2 : 0;
}

int main(int argc, char **argv) {
  bench_opts_t o = {
      .json = false, .reps = 7, .iters = 0, .max_threads = 0, .clients = 0, .point_ms = 0};
  const char *which = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json"))
      o.json = true;
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      o.reps = (unsigned)strtoul(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
      o.iters = strtoull(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      o.max_threads = (unsigned)strtoul(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
      o.clients = (unsigned)strtoul(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
      o.point_ms = (unsigned)strtoul(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
      return usage(stdout);
    else if (argv[i][0] != '-' && !which)
      which = argv[i];
    else
      return usage(stderr);
  }
  if (!which || o.reps == 0) return usage(stderr);
  bench_affinity_init();
  int rc = 0;
  bool any = false;
  for (size_t i = 0; i < sizeof benches / sizeof benches[0]; i++) {
    if (strcmp(which, "all") && strcmp(which, benches[i].name)) continue;
    any = true;
    int r = benches[i].fn(&o);
    if (r != 0) {
      fprintf(stderr, "pinpool-bench %s: failed (%d)\n", benches[i].name, r);
      rc = 1;
    }
  }
  if (!any) return usage(stderr);
  return rc;
}
