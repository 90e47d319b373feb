/*
 * bench_conns.c — `pinpool-bench conns`: what idle clients cost pinpoold, and whether they
 * slow down a client that works.
 *
 * One run starts its own pinpoold (the one next to this binary) on a temporary socket, a
 * 64 MiB region of 4 KiB pages, room for 10,000 clients of one uid (--max-clients 10100,
 * no per-uid limits) and the log at warning, then:
 *   - a "good" client (libpinpool) times pp_alloc(4096) + pp_free, one pair at a time,
 *     and reports the median (p50) and the 99th percentile (p99) of the pairs;
 *   - the daemon's RssAnon (/proc/PID/status: its private anonymous memory — heap, stacks,
 *     libuv's arrays; the region is a shared memfd and counts as RssShmem, not here) is
 *     read with no idle client, with 1,000 and with 10,000 idle clients (connected past
 *     Hello through tests/common/crowd.c, in batches, with progress on stderr), and after
 *     they have all left (once Stats shows only the good client and the one asking, and
 *     the daemon has had time to give memory back);
 *   - the good client is timed again with the 10,000 connected.
 * The table prints the memory at each point, the cost per idle client, and the ratios of
 * the good client's p50 and p99 with 10,000 idle clients to those without; --json prints
 * the same as one line holding one object in the shape bench_report uses (JSON Lines).  The
 * test process needs ~10,100 descriptors: RLIMIT_NOFILE is raised to its hard limit (the run
 * fails, saying so, when that is not enough).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "crowd.h"
#include "frame.h"
#include "pinpool.h"

#define CONNS_MANY 10000u
#define CONNS_SOME 1000u
#define CONNS_BATCH 500u
#define CONNS_PAIRS 20000u /* alloc+free pairs timed at each point */

typedef struct conns_daemon {
  pid_t pid;
  char dir[64];
  char sock[128];
} conns_daemon_t;

static void conns_sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int conns_connect_raw(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) return fd;
  if (fd >= 0) close(fd);
  return -1;
}

static void conns_daemon_stop(conns_daemon_t *d) {
  if (d->pid > 0) {
    int st;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 1000 && waitpid(d->pid, &st, WNOHANG) != d->pid; i++)
      conns_sleep_ms(10);
    if (kill(d->pid, 0) == 0) {
      kill(d->pid, SIGKILL);
      waitpid(d->pid, &st, 0);
    }
    d->pid = 0;
  }
  unlink(d->sock);
  rmdir(d->dir);
}

static int conns_daemon_start(conns_daemon_t *d) {
  char self[PATH_MAX], exe[PATH_MAX + 16], gid[16];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return -1;
  self[n] = '\0';
  snprintf(exe, sizeof exe, "%s/pinpoold", dirname(self));
  snprintf(gid, sizeof gid, "%u", (unsigned)getgid());
  snprintf(d->dir, sizeof d->dir, "/tmp/pp-bench-conns-XXXXXX");
  if (!mkdtemp(d->dir)) return -1;
  snprintf(d->sock, sizeof d->sock, "%s/pinpool.sock", d->dir);
  d->pid = fork();
  if (d->pid < 0) return -1;
  if (d->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a killed benchmark leaves no daemon behind */
    /* The admin group lets a run without root read Stats (root is admin anyway). */
    execl(exe, "pinpoold", "--socket", d->sock, "--size", "64M", "--page-size", "4K",
          "--log-level", "warning", "--max-clients", "10100", "--max-clients-per-uid", "0",
          "--max-pending-per-uid", "0", "--admin-group", gid, (char *)NULL);
    fprintf(stderr, "pinpool-bench: exec %s: %s\n", exe, strerror(errno));
    _exit(127);
  }
  for (int i = 0; i < 2000; i++) {
    int st, fd;
    if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
      d->pid = 0;
      fprintf(stderr, "pinpool-bench: %s did not start\n", exe);
      conns_daemon_stop(d);
      return -1;
    }
    if ((fd = conns_connect_raw(d->sock)) >= 0) {
      close(fd);
      return 0;
    }
    conns_sleep_ms(10);
  }
  conns_daemon_stop(d);
  return -1;
}

/* Sessions the daemon counts (Stats.nr_clients, the asking one included); -1 on error. */
static long conns_nr_clients(const char *sock) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;
  Pinpool__V1__Response *resp = NULL;
  struct timeval tv = {.tv_sec = 30};
  long n = -1;
  int fd = conns_connect_raw(sock);

  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  h.protocol_version = PROTOCOL_VERSION;
  h.client_name = "bench-conns-stats";
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  req.id = 1;
  if (frame_send(fd, &req.base, FRAME_MAX_DEFAULT, -1) ||
      frame_recv_response(fd, FRAME_MAX_DEFAULT, &resp, NULL) || resp->status)
    goto out;
  frame_free_response(resp);
  resp = NULL;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &sr;
  req.id = 2;
  if (frame_send(fd, &req.base, FRAME_MAX_DEFAULT, -1) ||
      frame_recv_response(fd, FRAME_MAX_DEFAULT, &resp, NULL) || resp->status ||
      resp->body_case != PINPOOL__V1__RESPONSE__BODY_STATS)
    goto out;
  n = (long)resp->stats->nr_clients;
out:
  if (resp) frame_free_response(resp);
  close(fd);
  return n;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* p50 and p99 of CONNS_PAIRS timed alloc+free pairs, in ns. */
static int conns_time_pairs(pp_client *c, uint64_t *lat, double *ret_p50, double *ret_p99) {
  for (unsigned i = 0; i < CONNS_PAIRS; i++) {
    pp_buffer b;
    uint64_t t0 = bench_now_ns();
    if (pp_alloc(c, 4096, 0, &b) != 0 || pp_free(c, b.handle) != 0) return -1;
    lat[i] = bench_now_ns() - t0;
  }
  qsort(lat, CONNS_PAIRS, sizeof *lat, cmp_u64);
  *ret_p50 = (double)lat[CONNS_PAIRS / 2];
  *ret_p99 = (double)lat[CONNS_PAIRS * 99 / 100];
  return 0;
}

static void conns_progress(size_t done, size_t want, void *arg) {
  size_t base = *(const size_t *)arg;
  if (done % 2000 == 0 || done == want)
    bench_progress("conns: %zu idle clients connected", base + done);
}

typedef struct conns_point {
  const char *what;
  size_t clients;
  long kib;
} conns_point_t;

static void conns_report(const bench_opts_t *o, const conns_point_t *m, size_t nm,
                         const double p50[2], const double p99[2]) {
  if (o->json) {
    printf("{\"bench\": \"conns\", \"results\": [");
    for (size_t i = 0; i < nm; i++)
      printf("%s{\"name\": \"pinpoold.rss_anon.%s\", \"clients\": %zu, \"kib\": %ld}",
             i ? "," : "", m[i].what, m[i].clients, m[i].kib);
    for (int k = 0; k < 2; k++)
      printf(", {\"name\": \"pinpool.alloc_free\", \"idle_clients\": %u, \"p50_ns\": %.0f, "
             "\"p99_ns\": %.0f}",
             k ? CONNS_MANY : 0u, p50[k], p99[k]);
    printf(", {\"name\": \"pinpoold.rss_anon.per_idle_client\", \"clients\": %u, "
           "\"bytes\": %.0f}",
           CONNS_MANY, (double)(m[2].kib - m[0].kib) * 1024.0 / CONNS_MANY);
    printf("], \"ratios\": [");
    printf("{\"subject\": \"pinpool.alloc_free.p50@%u\", \"peer\": "
           "\"pinpool.alloc_free.p50@0\", "
           "\"ratio\": %.4f},",
           CONNS_MANY, p50[1] / p50[0]);
    printf("{\"subject\": \"pinpool.alloc_free.p99@%u\", \"peer\": "
           "\"pinpool.alloc_free.p99@0\", "
           "\"ratio\": %.4f}",
           CONNS_MANY, p99[1] / p99[0]);
    printf("]}\n");
  } else {
    printf("== pinpool-bench conns ==\n");
    static const char *label[] = {"no idle clients", "idle clients", "idle clients",
                                  "after they left"};
    printf("%-28s %10s %14s %16s\n", "daemon RssAnon", "clients", "KiB", "bytes/client");
    for (size_t i = 0; i < nm; i++) {
      printf("%-28s %10zu %14ld", label[i], m[i].clients, m[i].kib);
      if (m[i].clients)
        printf(" %16.0f", (double)(m[i].kib - m[0].kib) * 1024.0 / (double)m[i].clients);
      else if (i)
        printf("   %+ld KiB vs none", m[i].kib - m[0].kib);
      printf("\n");
    }
    printf("%-28s %10s %14s %16s\n", "good client alloc+free", "idle", "p50 ns", "p99 ns");
    for (int k = 0; k < 2; k++)
      printf("%-28s %10u %14.0f %16.0f\n", "pinpool.alloc_free", k ? CONNS_MANY : 0u, p50[k],
             p99[k]);
    printf("ratios (with %u idle clients / without, lower is better):\n", CONNS_MANY);
    printf("  p50 %6.3fx   p99 %6.3fx\n", p50[1] / p50[0], p99[1] / p99[0]);
  }
  fflush(stdout);
}

int bench_conns(const bench_opts_t *o) {
  conns_daemon_t d = {0};
  crowd_t cr = {0};
  pp_client *c = NULL;
  uint64_t *lat = malloc(CONNS_PAIRS * sizeof *lat);
  conns_point_t m[4];
  double p50[2], p99[2];
  size_t base = 0;
  int rc = -1;
  long n;

  signal(SIGPIPE, SIG_IGN);
  if (!lat) return -1;
  if (crowd_raise_nofile(CONNS_MANY + 64) != 0) {
    fprintf(stderr, "pinpool-bench conns: RLIMIT_NOFILE's hard limit is below %u\n",
            CONNS_MANY + 64);
    free(lat);
    return -1;
  }
  if (conns_daemon_start(&d) < 0) {
    fprintf(stderr, "pinpool-bench conns: cannot start pinpoold\n");
    free(lat);
    return -1;
  }
  /* Without buffer caches: every pair is two requests among the idle clients. */
  pp_connect_options co = {sizeof co, PP_CONNECT_NO_BUFFER_CACHE};
  if (pp_connect_opts(d.sock, "pinpool-bench-conns", &co, &c) != 0) {
    fprintf(stderr, "pinpool-bench conns: cannot talk to pinpoold\n");
    goto out;
  }
  /* Warm-up: first-touch faults, the slabs the good client's requests use. */
  if (conns_time_pairs(c, lat, &p50[0], &p99[0])) goto out;
  m[0] = (conns_point_t){"none", 0, crowd_status_kib(d.pid, "RssAnon")};
  bench_progress("conns: good client without idle clients");
  if (conns_time_pairs(c, lat, &p50[0], &p99[0])) goto out;

  if (crowd_join(&cr, d.sock, CONNS_SOME, CONNS_BATCH, conns_progress, &base)) goto out;
  m[1] = (conns_point_t){"idle", CONNS_SOME, crowd_status_kib(d.pid, "RssAnon")};
  base = CONNS_SOME;
  if (crowd_join(&cr, d.sock, CONNS_MANY - CONNS_SOME, CONNS_BATCH, conns_progress, &base))
    goto out;
  m[2] = (conns_point_t){"idle", CONNS_MANY, crowd_status_kib(d.pid, "RssAnon")};
  bench_progress("conns: good client with %u idle clients", CONNS_MANY);
  if (conns_time_pairs(c, lat, &p50[1], &p99[1])) goto out;

  bench_progress("conns: %u idle clients leave", CONNS_MANY);
  crowd_leave(&cr);
  for (int i = 0; i < 3000 && (n = conns_nr_clients(d.sock)) != 2; i++)
    conns_sleep_ms(10);
  if (n != 2) {
    fprintf(stderr, "pinpool-bench conns: the daemon still counts %ld clients\n", n);
    goto out;
  }
  conns_sleep_ms(1500); /* the daemon trims a moment after a wave leaves */
  m[3] = (conns_point_t){"after", 0, crowd_status_kib(d.pid, "RssAnon")};
  conns_report(o, m, 4, p50, p99);
  rc = 0;
out:
  crowd_leave(&cr);
  pp_disconnect(c);
  conns_daemon_stop(&d);
  free(lat);
  return rc;
}
