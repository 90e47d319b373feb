/*
 * bench_common.c — timing, medians, progress, DPDK EAL start-up and the report that every
 * pinpool-bench subcommand shares.
 *
 * The report is the point of the tool: every benchmark measures pinpool and its peer in the
 * same process, one after the other, and prints the ratio pinpool/peer for each size.  On a
 * shared 2-core machine absolute nanoseconds drift by tens of percent from run to run; the
 * ratio of two things measured side by side drifts much less.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_log.h>

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(double *v, unsigned n) {
  if (n == 0) return 0.0;
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

void bench_progress(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("pinpool-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Free 2 MiB hugepages the EAL could take; 0 when none. */
static unsigned long free_hugepages_2m(void) {
  FILE *f = fopen("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "r");
  unsigned long n = 0;
  if (!f) return 0;
  if (fscanf(f, "%lu", &n) != 1) n = 0;
  fclose(f);
  return n;
}

int bench_eal_init(void) {
  static int state = 0; /* 0 not tried, 1 up, <0 failed */
  if (state != 0) return state > 0 ? 0 : state;
  /* --in-memory / --no-shconf: no /var/run/dpdk files, no multi-process; --no-pci: we time
   * memory, not NICs. Without free hugepages the EAL runs on anonymous 4 KiB memory
   * (--no-huge), which is how DPDK's own unit tests run on machines without hugepages. */
  bool huge = free_hugepages_2m() >= 64;
  char *argv[16];
  int argc = 0;
  argv[argc++] = "pinpool-bench";
  argv[argc++] = "-l";
  argv[argc++] = "0";
  argv[argc++] = "--no-pci";
  argv[argc++] = "--log-level=*:error";
  if (huge) {
    argv[argc++] = "--in-memory";
  } else {
    /* DPDK 22.11 refuses --in-memory together with --no-huge (it implies legacy memory);
     * --no-shconf keeps the no-files property there. */
    argv[argc++] = "--no-shconf";
    argv[argc++] = "--no-huge";
    argv[argc++] = "-m";
    argv[argc++] = "512";
  }
  argv[argc] = NULL;
  bench_progress("starting DPDK EAL (%s)", huge ? "2 MiB hugepages" : "--no-huge, 512 MiB");
  int rc = rte_eal_init(argc, argv);
  if (rc < 0) {
    fprintf(stderr, "pinpool-bench: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
    state = -1;
    return state;
  }
  state = 1;
  return 0;
}

/* The pinpool entry a peer is compared against: same size, thread and client count, name
 * starting with "pinpool.".  Where several pinpool entries exist (slab and magazine), each
 * peer is compared with each of them; a peer marked `aside` with none. */
static bool same_point(const bench_result_t *a, const bench_result_t *b) {
  return a->size == b->size && a->threads == b->threads && a->clients == b->clients;
}

static bool is_pinpool(const bench_result_t *r) {
  return strncmp(r->name, "pinpool.", 8) == 0;
}

static bool is_ratio(const bench_result_t *r, size_t i, size_t j) {
  return i != j && is_pinpool(&r[i]) && !is_pinpool(&r[j]) && !r[j].aside &&
         same_point(&r[i], &r[j]) && r[j].ns_per_op > 0;
}

static bool has_csw(const bench_result_t *r) {
  return r->csw_self > 0 || r->csw_peer > 0;
}

/* s as a JSON string (quotes, backslashes and control characters escaped). */
static void print_json_string(const char *s) {
  putchar('"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      printf("\\%c", *p);
    else if (*p < 0x20)
      printf("\\u%04x", *p);
    else
      putchar(*p);
  }
  putchar('"');
}

/* JSON Lines: one benchmark, one line, one object {"bench", "results", "ratios"}, so that
 * `pinpool-bench all --json` is a stream a reader takes line by line (jq, json.loads per
 * line) and each benchmark's figures arrive as soon as it is done.  Optional members
 * (clients, ops_per_sec, percentiles, context switches, aside) appear only when set. */
static void print_json(const char *bench, const bench_result_t *r, size_t n) {
  printf("{\"bench\": ");
  print_json_string(bench);
  printf(", \"results\": [");
  for (size_t i = 0; i < n; i++) {
    printf("%s{\"name\": ", i ? ", " : "");
    print_json_string(r[i].name);
    printf(", \"size\": %llu, \"threads\": %u", (unsigned long long)r[i].size, r[i].threads);
    if (r[i].clients) printf(", \"clients\": %u", r[i].clients);
    printf(", \"ns_per_op\": %.2f", r[i].ns_per_op);
    if (r[i].ops_per_sec > 0) printf(", \"ops_per_sec\": %.0f", r[i].ops_per_sec);
    if (r[i].p50_ns > 0)
      printf(", \"p50_ns\": %.0f, \"p99_ns\": %.0f", r[i].p50_ns, r[i].p99_ns);
    if (has_csw(&r[i]))
      printf(", \"csw_self_per_op\": %.3f, \"csw_peer_per_op\": %.3f", r[i].csw_self,
             r[i].csw_peer);
    if (r[i].aside) printf(", \"aside\": true");
    printf("}");
  }
  printf("], \"ratios\": [");
  bool first = true;
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < n; j++) {
      if (!is_ratio(r, i, j)) continue;
      printf("%s{\"subject\": ", first ? "" : ", ");
      print_json_string(r[i].name);
      printf(", \"peer\": ");
      print_json_string(r[j].name);
      printf(", \"size\": %llu, \"threads\": %u", (unsigned long long)r[i].size, r[i].threads);
      if (r[i].clients) printf(", \"clients\": %u", r[i].clients);
      printf(", \"ratio\": %.4f", r[i].ns_per_op / r[j].ns_per_op);
      if (r[i].ops_per_sec > 0 && r[j].ops_per_sec > 0)
        printf(", \"ops_ratio\": %.4f", r[i].ops_per_sec / r[j].ops_per_sec);
      printf("}");
      first = false;
    }
  }
  printf("]}\n");
}

static void print_table(const char *bench, const bench_result_t *r, size_t n) {
  bool clients = false, pct = false, csw = false;
  for (size_t i = 0; i < n; i++) {
    clients |= r[i].clients > 0;
    pct |= r[i].p50_ns > 0;
    csw |= has_csw(&r[i]);
  }
  printf("== pinpool-bench %s ==\n", bench);
  printf("%-28s %10s %8s", "name", "size", clients ? "clients" : "threads");
  printf(" %12s %14s", "ns/op", "ops/s");
  if (pct) printf(" %10s %10s", "p50 us", "p99 us");
  if (csw) printf(" %9s %9s", "csw/op", "peer csw");
  printf("\n");
  for (size_t i = 0; i < n; i++) {
    printf("%-28s %10llu %8u %12.1f", r[i].name, (unsigned long long)r[i].size,
           clients ? r[i].clients : r[i].threads, r[i].ns_per_op);
    if (r[i].ops_per_sec > 0)
      printf(" %14.0f", r[i].ops_per_sec);
    else if (pct || csw)
      printf(" %14s", "");
    if (pct) {
      if (r[i].p50_ns > 0)
        printf(" %10.1f %10.1f", r[i].p50_ns / 1e3, r[i].p99_ns / 1e3);
      else
        printf(" %10s %10s", "", "");
    }
    if (csw && has_csw(&r[i])) printf(" %9.2f %9.2f", r[i].csw_self, r[i].csw_peer);
    if (r[i].aside) printf("  (aside: no ratios)");
    printf("\n");
  }
  bool header = false;
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < n; j++) {
      if (!is_ratio(r, i, j)) continue;
      if (!header) {
        printf("ratios (pinpool / peer, time per operation, lower is better):\n");
        header = true;
      }
      printf("  %-24s / %-22s", r[i].name, r[j].name);
      if (r[i].clients)
        printf(" clients %-4u", r[i].clients);
      else
        printf(" size %-7llu", (unsigned long long)r[i].size);
      printf(" %6.3fx", r[i].ns_per_op / r[j].ns_per_op);
      if (r[i].clients && r[i].ops_per_sec > 0 && r[j].ops_per_sec > 0)
        printf("   throughput %5.3fx", r[i].ops_per_sec / r[j].ops_per_sec);
      printf("\n");
    }
  }
}

void bench_report(const char *bench, const bench_opts_t *o, const bench_result_t *r, size_t n) {
  if (o->json)
    print_json(bench, r, n);
  else
    print_table(bench, r, n);
  fflush(stdout);
}
