/*
 * bench_restart.c — `pinpool-bench restart`: what restart survival costs, and how long a
 * restart makes a client wait.
 *
 *   pinpool.alloc_free     pp_alloc(4096) + pp_free through a daemon that journals every
 *                          change (--journal yes: each request's transaction is committed
 *                          before its reply)
 *   nojournal.alloc_free   the same through a daemon that does not (--journal no), measured
 *                          in the same run, in alternating slices, the client pinned to one
 *                          CPU and both daemons to another (as bench_ipc.c does): the ratio
 *                          is the journal's cost (target: <= 1.05)
 *   pinpool.restart_p50    from the SIGKILL of a daemon holding a client's state (256
 *   pinpool.restart_p99    buffers, 4096 objects) to the first request of that client served
 *                          again, re-claimed, by its successor: the test supervisor
 *                          (tests/common/supervisor.h) restarts it at once with the region
 *                          and journal it stored; the client starts its call once the old
 *                          process is gone.  Kills: 10 x --reps
 *   pinpool.reload_p50     the pause a reload (SIGHUP: the daemon executes itself again and
 *   pinpool.reload_p99     takes every connection over) costs a client making pp_alloc +
 *                          pp_free requests back to back: its longest request in each
 *                          reload's window, from just before the SIGHUP to a moment after
 *                          READY=1, with the same state as above to hand over.  Reloads:
 *                          10 x --reps
 *   pinpool.region_adopt   region_adopt of a 1 GiB region's memfd (what a restart does: map,
 *   create.region          reserve, populate, pin, read the physical addresses again),
 *                          against region_create of it; hugepages when the pool has 1 GiB of
 *                          them, else 4 KiB pages
 * The daemons are the one next to this binary, each on a temporary socket with a 64 MiB
 * region of 4 KiB pages.  Medians over --reps repetitions (the restart figures are
 * percentiles over all kills).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "pinpool.h"
#include "region.h"
#include "supervisor.h"

#define RS_MAX_REPS 64u
#define RS_SLICES 20u
#define RS_KILLS_PER_REP 10u
#define RS_RELOADS_PER_REP 10u
#define RS_ADOPT_SIZE (1ull << 30)

typedef struct rs_daemon {
  pid_t pid;
  char dir[64];
  char sock[96];
} rs_daemon_t;

static void rs_sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int rs_cpu_self = -1, rs_cpu_peer = -1;

static void rs_pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
}

static const char *rs_daemon_path(char *buf, size_t len) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return NULL;
  self[n] = '\0';
  snprintf(buf, len, "%s/pinpoold", dirname(self));
  return buf;
}

static void rs_daemon_stop(rs_daemon_t *d) {
  if (d->pid > 0) {
    int st;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 500 && waitpid(d->pid, &st, WNOHANG) != d->pid; i++)
      rs_sleep_ms(10);
    if (kill(d->pid, 0) == 0) {
      kill(d->pid, SIGKILL);
      waitpid(d->pid, &st, 0);
    }
    d->pid = 0;
  }
  unlink(d->sock);
  rmdir(d->dir);
}

/* A daemon of our own with --journal yes|no. */
static int rs_daemon_start(rs_daemon_t *d, const char *journal) {
  char exe[PATH_MAX + 16];
  if (!rs_daemon_path(exe, sizeof exe)) return -1;
  snprintf(d->dir, sizeof d->dir, "/tmp/pp-bench-restart-XXXXXX");
  if (!mkdtemp(d->dir)) return -1;
  snprintf(d->sock, sizeof d->sock, "%s/pinpool.sock", d->dir);
  d->pid = fork();
  if (d->pid < 0) return -1;
  if (d->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    rs_pin(rs_cpu_peer);
    execl(exe, "pinpoold", "--socket", d->sock, "--size", "64M", "--page-size", "4K",
          "--log-level", "warning", "--journal", journal, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 1000; i++) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), st;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", d->sock);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
      close(fd);
      return 0;
    }
    if (fd >= 0) close(fd);
    if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
      d->pid = 0;
      break;
    }
    rs_sleep_ms(10);
  }
  rs_daemon_stop(d);
  return -1;
}

static double rs_alloc_free(pp_client *c, uint64_t iters) {
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    pp_buffer b;
    if (pp_alloc(c, 4096, 0, &b) != 0 || pp_free(c, b.handle) != 0) return -1;
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

/* ---- the journal's cost -------------------------------------------------------------------
 */

static int rs_journal_cost(const bench_opts_t *o, unsigned reps, double *ret_on,
                           double *ret_off) {
  uint64_t iters = o->iters ? o->iters : 20000;
  uint64_t slice = iters / RS_SLICES ? iters / RS_SLICES : 1;
  double on[RS_MAX_REPS], off[RS_MAX_REPS];
  rs_daemon_t dj = {0}, dn = {0};
  pp_client *cj = NULL, *cn = NULL;
  int rc = -1;

  if (rs_daemon_start(&dj, "yes") || rs_daemon_start(&dn, "no")) {
    fprintf(stderr, "pinpool-bench restart: cannot start pinpoold\n");
    goto out;
  }
  /* Without buffer caches: each pp_alloc and pp_free is a request (and a transaction). */
  pp_connect_options co = {sizeof co, PP_CONNECT_NO_BUFFER_CACHE};
  if (pp_connect_opts(dj.sock, "bench-journal", &co, &cj) ||
      pp_connect_opts(dn.sock, "bench-nojournal", &co, &cn))
    goto out;
  if (rs_alloc_free(cj, 1000) < 0 || rs_alloc_free(cn, 1000) < 0) goto out; /* warm-up */
  for (unsigned r = 0; r < reps; r++) {
    bench_progress("restart: journal cost, rep %u/%u", r + 1, reps);
    on[r] = off[r] = 0;
    for (unsigned s = 0; s < RS_SLICES; s++) {
      double a = rs_alloc_free(cj, slice), b = rs_alloc_free(cn, slice);
      if (a < 0 || b < 0) goto out;
      on[r] += a / RS_SLICES;
      off[r] += b / RS_SLICES;
    }
  }
  *ret_on = bench_median(on, reps);
  *ret_off = bench_median(off, reps);
  rc = 0;
out:
  pp_disconnect(cj);
  pp_disconnect(cn);
  rs_daemon_stop(&dj);
  rs_daemon_stop(&dn);
  return rc;
}

/* ---- SIGKILL to the first re-claimed request ------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int rs_restart_latency(unsigned kills, double *ret_p50, double *ret_p99) {
  char exe[PATH_MAX + 16], dir[64] = "/tmp/pp-bench-restart-XXXXXX", sock[128], log[128];
  const char *argv[] = {exe,  "--size",      "64M",     "--page-size",
                        "4K", "--log-level", "warning", NULL};
  double *lat = calloc(kills, sizeof *lat);
  sup_t *s = NULL;
  pp_client *c = NULL;
  pp_cache *k = NULL;
  void *objs[4096];
  unsigned n = 0;
  int rc = -1;

  if (!lat || !rs_daemon_path(exe, sizeof exe) || !mkdtemp(dir)) goto out;
  snprintf(sock, sizeof sock, "%s/pinpool.sock", dir);
  snprintf(log, sizeof log, "%s/pinpoold.log", dir);
  sup_config_t cfg = {.argv = argv,
                      .log_path = log,
                      .listen_path = sock,
                      .fd_store_max = 8,
                      .restart = SUP_RESTART_ON_FAILURE,
                      .seed = 1};
  if (sup_new(&cfg, &s) || sup_start(s) || sup_wait_ready(s, 30000)) goto out;
  /* Without buffer caches: the first pp_alloc after a kill must be a request. */
  pp_connect_options co = {sizeof co, PP_CONNECT_NO_BUFFER_CACHE};
  if (pp_connect_opts(sock, "bench-restart", &co, &c) ||
      pp_cache_open(c, "bench-restart", 64, 0, &k))
    goto out;
  /* Some state to bring back: 256 buffers and 4096 objects. */
  for (int i = 0; i < 256; i++) {
    pp_buffer b;
    if (pp_alloc(c, 16384, 0, &b)) goto out;
  }
  if (pp_cache_alloc_bulk(k, objs, 4096) != 4096) goto out;
  for (unsigned i = 0; i < kills; i++) {
    sup_info_t in;
    sup_exit_t ex;
    pp_buffer b;
    uint64_t before = pp_reclaims(c);
    bench_progress("restart: kill %u/%u", i + 1, kills);
    sup_info(s, &in);
    uint64_t t0 = bench_now_ns();
    if (sup_signal(s, SIGKILL) || sup_wait_exit_of(s, in.gen, 30000, &ex)) goto out;
    if (pp_alloc(c, 4096, 0, &b)) goto out;
    uint64_t t1 = bench_now_ns();
    if (pp_reclaims(c) != before + 1 || pp_free(c, b.handle)) goto out;
    lat[n++] = (double)(t1 - t0);
    if (sup_wait_ready(s, 30000)) goto out;
  }
  qsort(lat, n, sizeof *lat, cmp_double);
  *ret_p50 = lat[n / 2];
  size_t i99 = ((size_t)n * 99 + 99) / 100 - 1; /* ceil(0.99 n) - 1 */
  *ret_p99 = lat[i99 < n ? i99 : n - 1];
  rc = 0;
out:
  if (rc) fprintf(stderr, "pinpool-bench restart: the kill loop failed after %u kills\n", n);
  pp_disconnect(c);
  sup_free(s);
  unlink(log);
  rmdir(dir);
  free(lat);
  return rc;
}

/* ---- reload --------------------------------------------------------------------------------
 */

typedef struct rs_reloader {
  pp_client *c;
  _Atomic int phase; /* 2k + 1 during reload k's window, even between windows */
  _Atomic int stop, err;
  _Atomic uint64_t *stall; /* longest request per reload */
  unsigned reloads;
} rs_reloader_t;

static void *rs_reload_client(void *arg) {
  rs_reloader_t *r = arg;
  while (!atomic_load(&r->stop)) {
    pp_buffer b;
    int p0 = atomic_load(&r->phase);
    uint64_t t0 = bench_now_ns();
    if (pp_alloc(r->c, 4096, 0, &b) || pp_free(r->c, b.handle)) {
      atomic_store(&r->err, 1);
      break;
    }
    uint64_t dt = bench_now_ns() - t0;
    int p1 = atomic_load(&r->phase);
    for (int q = p0; q <= p1; q++) {
      unsigned k = (unsigned)(q - 1) / 2;
      if (q % 2 == 0 || k >= r->reloads) continue;
      if (dt > atomic_load(&r->stall[k])) atomic_store(&r->stall[k], dt);
    }
  }
  return NULL;
}

static int rs_reload_latency(unsigned reloads, double *ret_p50, double *ret_p99) {
  char exe[PATH_MAX + 16], dir[64] = "/tmp/pp-bench-reload-XXXXXX", sock[128], log[128];
  const char *argv[] = {exe,  "--size",      "64M",     "--page-size",
                        "4K", "--log-level", "warning", NULL};
  rs_reloader_t r = {.reloads = reloads};
  double *lat = calloc(reloads, sizeof *lat);
  sup_t *s = NULL;
  pp_cache *k = NULL;
  void *objs[4096];
  pthread_t t;
  bool running = false;
  unsigned n = 0;
  int rc = -1;

  r.stall = calloc(reloads, sizeof *r.stall);
  if (!lat || !r.stall || !rs_daemon_path(exe, sizeof exe) || !mkdtemp(dir)) goto out;
  snprintf(sock, sizeof sock, "%s/pinpool.sock", dir);
  snprintf(log, sizeof log, "%s/pinpoold.log", dir);
  sup_config_t cfg = {.argv = argv,
                      .log_path = log,
                      .listen_path = sock,
                      .fd_store_max = 8,
                      .restart = SUP_RESTART_ON_FAILURE,
                      .seed = 1};
  if (sup_new(&cfg, &s) || sup_start(s) || sup_wait_ready(s, 30000)) goto out;
  /* Without buffer caches, so that every pp_alloc + pp_free is a request the reload can
   * hold up (a cached pair never leaves the process and would measure nothing). */
  pp_connect_options co = {sizeof co, PP_CONNECT_NO_BUFFER_CACHE};
  if (pp_connect_opts(sock, "bench-reload", &co, &r.c) ||
      pp_cache_open(r.c, "bench-reload", 64, 0, &k))
    goto out;
  /* The same state as the restart's to hand over: 256 buffers and 4096 objects. */
  for (int i = 0; i < 256; i++) {
    pp_buffer b;
    if (pp_alloc(r.c, 16384, 0, &b)) goto out;
  }
  if (pp_cache_alloc_bulk(k, objs, 4096) != 4096) goto out;
  if (pthread_create(&t, NULL, rs_reload_client, &r)) goto out;
  running = true;
  for (unsigned i = 0; i < reloads && !atomic_load(&r.err); i++) {
    sup_info_t in, now;
    bench_progress("restart: reload %u/%u", i + 1, reloads);
    rs_sleep_ms(20);
    sup_info(s, &in);
    atomic_store(&r.phase, (int)(2 * i + 1));
    if (sup_signal(s, SIGHUP)) goto out;
    for (int w = 0;; w++) {
      sup_info(s, &now);
      if (now.reloads > in.reloads && now.ready) break;
      if (now.exits != in.exits || w == 30000) goto out;
      rs_sleep_ms(1);
    }
    rs_sleep_ms(20);
    atomic_store(&r.phase, (int)(2 * i + 2));
    n++;
  }
  atomic_store(&r.stop, 1);
  pthread_join(t, NULL);
  running = false;
  if (atomic_load(&r.err) || pp_reclaims(r.c) != 0) goto out;
  for (unsigned i = 0; i < n; i++)
    lat[i] = (double)atomic_load(&r.stall[i]);
  qsort(lat, n, sizeof *lat, cmp_double);
  *ret_p50 = lat[n / 2];
  size_t i99 = ((size_t)n * 99 + 99) / 100 - 1; /* ceil(0.99 n) - 1 */
  *ret_p99 = lat[i99 < n ? i99 : n - 1];
  rc = 0;
out:
  if (running) {
    atomic_store(&r.stop, 1);
    pthread_join(t, NULL);
  }
  if (rc)
    fprintf(stderr, "pinpool-bench restart: the reload loop failed after %u reloads%s\n", n,
            atomic_load(&r.err) ? " (a request failed)" : "");
  pp_disconnect(r.c);
  sup_free(s);
  unlink(log);
  rmdir(dir);
  free(lat);
  free((void *)r.stall);
  return rc;
}

/* ---- adopt against create ------------------------------------------------------------------
 */

static void rs_quiet(void *ctx, int level, const char *msg) {
  (void)ctx;
  if (level <= 3) fprintf(stderr, "region: %s\n", msg);
}

static int rs_adopt_vs_create(unsigned reps, double *ret_adopt, double *ret_create,
                              const char **ret_pages) {
  double ad[RS_MAX_REPS], cr[RS_MAX_REPS];
  region_config_t cfg = {.size = RS_ADOPT_SIZE, .policy = REGION_PAGE_AUTO, .log = rs_quiet};
  for (unsigned r = 0; r < reps; r++) {
    region_t *a = NULL, *b = NULL;
    bench_progress("restart: 1 GiB region create and adopt, rep %u/%u", r + 1, reps);
    uint64_t t0 = bench_now_ns();
    if (region_create(&cfg, &a)) return -1;
    uint64_t t1 = bench_now_ns();
    int fd = dup(region_fd(a));
    region_config_t acfg = {.policy = REGION_PAGE_AUTO, .log = rs_quiet};
    uint64_t t2 = bench_now_ns();
    int rc = region_adopt(fd, &acfg, &b);
    uint64_t t3 = bench_now_ns();
    if (rc) {
      close(fd);
      region_destroy(a);
      return -1;
    }
    *ret_pages = region_hugepages(a) ? "hugepages" : "4 KiB pages";
    region_destroy(b);
    region_destroy(a);
    cr[r] = (double)(t1 - t0);
    ad[r] = (double)(t3 - t2);
  }
  *ret_adopt = bench_median(ad, reps);
  *ret_create = bench_median(cr, reps);
  return 0;
}

int bench_restart(const bench_opts_t *o) {
  unsigned reps = o->reps < RS_MAX_REPS ? o->reps : RS_MAX_REPS;
  double on = 0, off = 0, p50 = 0, p99 = 0, r50 = 0, r99 = 0, adopt = 0, create = 0;
  const char *pages = "?";
  cpu_set_t saved;
  bool pinned = sched_getaffinity(0, sizeof saved, &saved) == 0;
  int rc = -1;

  signal(SIGPIPE, SIG_IGN);
  if (pinned) {
    /* the first allowed CPU for us, the next one for the daemons (as bench_ipc.c) */
    for (int i = 0; i < CPU_SETSIZE; i++)
      if (CPU_ISSET(i, &saved)) {
        if (rs_cpu_self < 0)
          rs_cpu_self = i;
        else if (rs_cpu_peer < 0)
          rs_cpu_peer = i;
      }
    if (rs_cpu_peer < 0) rs_cpu_peer = rs_cpu_self;
    rs_pin(rs_cpu_self);
  }
  if (rs_journal_cost(o, reps, &on, &off)) goto out;
  if (pinned) sched_setaffinity(0, sizeof saved, &saved);
  if (rs_restart_latency(RS_KILLS_PER_REP * reps, &p50, &p99)) goto out;
  if (rs_reload_latency(RS_RELOADS_PER_REP * reps, &r50, &r99)) goto out;
  if (rs_adopt_vs_create(reps < 3 ? reps : 3, &adopt, &create, &pages)) {
    fprintf(stderr, "pinpool-bench restart: cannot create or adopt a 1 GiB region\n");
    goto out;
  }
  bench_progress("restart: the 1 GiB region had %s", pages);
  bench_result_t res[] = {
      {.name = "pinpool.alloc_free", .ns_per_op = on},
      {.name = "nojournal.alloc_free", .ns_per_op = off},
      {.name = "pinpool.restart_p50", .size = 64ull << 20, .ns_per_op = p50},
      {.name = "pinpool.restart_p99", .size = 64ull << 20, .ns_per_op = p99},
      {.name = "pinpool.reload_p50", .size = 64ull << 20, .ns_per_op = r50},
      {.name = "pinpool.reload_p99", .size = 64ull << 20, .ns_per_op = r99},
      {.name = "pinpool.region_adopt", .size = RS_ADOPT_SIZE, .ns_per_op = adopt},
      {.name = "create.region", .size = RS_ADOPT_SIZE, .ns_per_op = create},
  };
  res[0].ops_per_sec = 1e9 / on;
  res[1].ops_per_sec = 1e9 / off;
  bench_report("restart", o, res, sizeof res / sizeof res[0]);
  rc = 0;
out:
  if (pinned) sched_setaffinity(0, sizeof saved, &saved);
  return rc;
}
