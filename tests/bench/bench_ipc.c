/*
 * bench_ipc.c — `pinpool-bench ipc`: what a request to pinpoold costs, next to the floor
 * any Unix-socket daemon pays.
 *
 * One run starts its own pinpoold (the one next to this binary: dirname of
 * /proc/self/exe), on a temporary socket with a 64 MiB region of 4 KiB pages so that
 * hugepages are not needed, and measures, repetition by repetition and interleaved so
 * that drift of the shared machine hits them alike:
 *   raw.roundtrip           a 32-byte message to a child process over a socketpair and
 *                           back (write + poll/read on each side, waiting as libpinpool
 *                           waits): the floor for one request;
 *   pinpool.alloc_free      pp_alloc(4096) + pp_free: two round trips through the daemon
 *                           (target: <= 2.6x raw.roundtrip, i.e. the daemon's own work
 *                           adds at most 30% to the two round trips);
 *   pinpool.cache_alloc_rpc one cache_alloc request for one object, sent with the frame
 *                           helpers on a connection of its own (frame_rx_response, as
 *                           libpinpool receives);
 *                           the objects go back untimed;
 *   pinpool.cache_magazine  pp_cache_alloc + pp_cache_free of a 64-byte object served by
 *                           the calling thread's client-side magazines (target: <= 50 ns
 *                           per pair);
 *   pinpool.alloc_free_cached
 *                           pp_alloc(4096) + pp_free served by the calling thread's buffer
 *                           cache, on a second client that keeps one (target: <= 20 ns per
 *                           pair, <= 0.01x dpdk.memzone);
 *   pinpool.bulk_per_buffer pp_alloc_bulk of 64 buffers of 4 KiB + pp_free_bulk of them,
 *                           two round trips, divided by 64: what a buffer costs in bulk,
 *                           next to raw.roundtrip;
 *   dpdk.memzone            rte_memzone_reserve_aligned(size, RTE_MEMZONE_IOVA_CONTIG,
 *                           align size) + rte_memzone_free in this process, sizes drawn
 *                           from 4 KiB to 1 MiB exactly as bench_buddy.c draws them: DPDK's
 *                           in-process contiguous allocation, the figure the cached pair's
 *                           0.01x target is set against;
 *   dpdk.memzone_4k         the same at 4 KiB only: the same-size peer of the cached pair.
 * The client measuring round trips connects without buffer caches (each pp_alloc/pp_free
 * a request); pinpool.alloc_free_cached uses its own client with them.
 * Placement: where the scheduler puts the two ends of a round trip decides its cost
 * more than anything either end does (same CPU: a direct switch; two CPUs: a cross-CPU
 * wake-up, slow on a VM), and left to itself it flips between the two from run to run
 * (seen here: alloc_free 46 us in one run, 72 us in the next, the floor unchanged).  So
 * the measuring process is pinned to one CPU and its peer — the echo child and the
 * daemon alike — to another (the same one when only one is allowed): every entry pays
 * the same placement, and the ratio compares the work, not the scheduler's mood.
 * Every entry has size 0 so the report divides each pinpool figure by the raw floor.
 * On a shared machine the absolute figures follow the load (scheduler wake-up latency
 * dominates a round trip); the ratios, measured in alternating slices, much less.
 * The median of o->reps repetitions is reported; the daemon is stopped at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rte_memory.h>
#include <rte_memzone.h>

#include "bench.h"
#include "frame.h"
#include "pinpool.h"

#define IPC_MSG 32u
#define IPC_MAX_REPS 64u
#define IPC_SLICES 20u

typedef struct ipc_daemon {
  pid_t pid;
  char dir[64];
  char sock[128];
} ipc_daemon_t;

static void ipc_sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)ms * 1000000L};
  nanosleep(&ts, NULL);
}

/* The CPUs the two ends run on: the first two this process may use. */
static int ipc_cpu_self = -1, ipc_cpu_peer = -1;

static void ipc_choose_cpus(const cpu_set_t *allowed) {
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, allowed)) continue;
    if (ipc_cpu_self < 0)
      ipc_cpu_self = cpu;
    else if (ipc_cpu_peer < 0)
      ipc_cpu_peer = cpu;
  }
  if (ipc_cpu_peer < 0) ipc_cpu_peer = ipc_cpu_self;
}

static void ipc_pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set); /* best effort: an unpinned run still measures */
}

static int ipc_connect_raw(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void ipc_daemon_stop(ipc_daemon_t *d) {
  if (d->pid > 0) {
    int st;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 500 && waitpid(d->pid, &st, WNOHANG) != d->pid; i++)
      ipc_sleep_ms(10);
    if (kill(d->pid, 0) == 0) {
      kill(d->pid, SIGKILL);
      waitpid(d->pid, &st, 0);
    }
    d->pid = 0;
  }
  unlink(d->sock);
  rmdir(d->dir);
}

static int ipc_daemon_start(ipc_daemon_t *d) {
  char self[PATH_MAX], exe[PATH_MAX + 16];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return -1;
  self[n] = '\0';
  snprintf(exe, sizeof exe, "%s/pinpoold", dirname(self));
  snprintf(d->dir, sizeof d->dir, "/tmp/pp-bench-ipc-XXXXXX");
  if (!mkdtemp(d->dir)) return -1;
  snprintf(d->sock, sizeof d->sock, "%s/pinpool.sock", d->dir);
  d->pid = fork();
  if (d->pid < 0) return -1;
  if (d->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a killed benchmark leaves no daemon behind */
    ipc_pin(ipc_cpu_peer);
    execl(exe, "pinpoold", "--socket", d->sock, "--size", "64M", "--page-size", "4K",
          "--log-level", "warning", (char *)NULL);
    fprintf(stderr, "pinpool-bench: exec %s: %s\n", exe, strerror(errno));
    _exit(127);
  }
  for (int i = 0; i < 1000; i++) {
    int st;
    if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
      d->pid = 0;
      fprintf(stderr, "pinpool-bench: %s did not start\n", exe);
      ipc_daemon_stop(d);
      return -1;
    }
    int fd = ipc_connect_raw(d->sock);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    ipc_sleep_ms(10);
  }
  ipc_daemon_stop(d);
  return -1;
}

/* ---- the floor: a socketpair round trip to a child that echoes -------------------- */

/* Reads wait in poll(POLLIN) and then read without blocking, exactly as libpinpool and
 * frame_rx_response do: a reader asleep in read() on a Unix stream socket is woken for
 * nothing when its peer consumes what it wrote (write-space wake-up), a context switch
 * per round trip that a floor must not pay when the subject does not. */
static int ipc_full(int fd, void *buf, size_t len, bool wr) {
  size_t off = 0;
  while (off < len) {
    ssize_t n;
    if (wr) {
      n = write(fd, (char *)buf + off, len - off);
    } else {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      if (poll(&p, 1, -1) < 0) {
        if (errno == EINTR) continue;
        return -1;
      }
      n = recv(fd, (char *)buf + off, len - off, MSG_DONTWAIT);
      if (n < 0 && errno == EAGAIN) continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    off += (size_t)n;
  }
  return 0;
}

static pid_t ipc_echo_start(int *ret_fd) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    char buf[IPC_MSG];
    close(sv[0]);
    ipc_pin(ipc_cpu_peer);
    while (ipc_full(sv[1], buf, sizeof buf, false) == 0 &&
           ipc_full(sv[1], buf, sizeof buf, true) == 0)
      ;
    _exit(0);
  }
  close(sv[1]);
  *ret_fd = sv[0];
  return pid;
}

static double ipc_raw_rep(int fd, uint64_t iters) {
  char buf[IPC_MSG];
  memset(buf, 0x42, sizeof buf);
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++)
    if (ipc_full(fd, buf, sizeof buf, true) < 0 || ipc_full(fd, buf, sizeof buf, false) < 0)
      return -1;
  return (double)(bench_now_ns() - t0) / (double)iters;
}

/* ---- pinpool ---------------------------------------------------------------------- */

static double ipc_alloc_free_rep(pp_client *c, uint64_t iters) {
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    pp_buffer b;
    if (pp_alloc(c, 4096, 0, &b) != 0 || pp_free(c, b.handle) != 0) return -1;
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

/* A second connection spoken to directly, to time one cache_alloc of one object. */
typedef struct ipc_raw_conn {
  int fd;
  uint64_t id;
  uint32_t cache_id;
  frame_rx_t rx;
} ipc_raw_conn_t;

static Pinpool__V1__Response *ipc_rpc(ipc_raw_conn_t *r, Pinpool__V1__Request *req) {
  Pinpool__V1__Response *resp = NULL;
  req->id = ++r->id;
  if (frame_send(r->fd, &req->base, FRAME_MAX_DEFAULT, -1) < 0) return NULL;
  if (frame_rx_response(r->fd, &r->rx, FRAME_MAX_DEFAULT, -1, &resp, NULL) < 0) return NULL;
  if (resp->status != 0 || resp->id != req->id) {
    frame_free_response(resp);
    return NULL;
  }
  return resp;
}

static int ipc_raw_open(ipc_raw_conn_t *r, const char *sock) {
  r->fd = ipc_connect_raw(sock);
  r->id = 0;
  frame_rx_init(&r->rx);
  if (r->fd < 0) return -1;
  Pinpool__V1__Hello hello = PINPOOL__V1__HELLO__INIT;
  hello.protocol_version = PROTOCOL_VERSION;
  hello.client_name = "bench-raw";
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &hello;
  Pinpool__V1__Response *resp = ipc_rpc(r, &req); /* the memfd is closed by the helper */
  if (!resp) return -1;
  frame_free_response(resp);
  Pinpool__V1__CacheOpen co = PINPOOL__V1__CACHE_OPEN__INIT;
  co.name = "bench-ipc-64";
  co.object_size = 64;
  co.align = 64;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &co;
  resp = ipc_rpc(r, &req);
  if (!resp || resp->body_case != PINPOOL__V1__RESPONSE__BODY_CACHE) return -1;
  r->cache_id = resp->cache->cache_id;
  frame_free_response(resp);
  return 0;
}

static double ipc_cache_rpc_rep(ipc_raw_conn_t *r, uint64_t *offs, uint64_t iters) {
  Pinpool__V1__CacheAlloc ca = PINPOOL__V1__CACHE_ALLOC__INIT;
  ca.cache_id = r->cache_id;
  ca.count = 1;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
  req.cache_alloc = &ca;
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    Pinpool__V1__Response *resp = ipc_rpc(r, &req);
    if (!resp || resp->body_case != PINPOOL__V1__RESPONSE__BODY_OBJECTS ||
        resp->objects->n_offsets != 1) {
      if (resp) frame_free_response(resp);
      return -1;
    }
    offs[i] = resp->objects->offsets[0];
    frame_free_response(resp);
  }
  double ns = (double)(bench_now_ns() - t0) / (double)iters;
  /* Untimed: give them back so every repetition starts from the same state. */
  Pinpool__V1__CacheFree cf = PINPOOL__V1__CACHE_FREE__INIT;
  cf.cache_id = r->cache_id;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE;
  req.cache_free = &cf;
  for (uint64_t done = 0; done < iters;) {
    cf.n_offsets = iters - done < 1024 ? iters - done : 1024;
    cf.offsets = &offs[done];
    Pinpool__V1__Response *resp = ipc_rpc(r, &req);
    if (!resp) return -1;
    frame_free_response(resp);
    done += cf.n_offsets;
  }
  return ns;
}

static double ipc_magazine_rep(pp_cache *k, uint64_t iters) {
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    void *o = pp_cache_alloc(k);
    /* Keep the compiler from pairing the two calls away; touching the object is what a
     * user does anyway. */
    __asm__ volatile("" : : "r"(o) : "memory");
    if (!o || pp_cache_free(k, o) != 0) return -1;
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

/* ---- buffer caches, bulk requests, DPDK's in-process peer --------------------------- */

static double ipc_cached_rep(pp_client *c, uint64_t iters) {
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    pp_buffer b;
    if (pp_alloc(c, 4096, 0, &b) != 0) return -1;
    __asm__ volatile("" : : "r"(b.addr) : "memory");
    if (pp_free(c, b.handle) != 0) return -1;
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

#define IPC_BULK 64u

static double ipc_bulk_rep(pp_client *c, uint64_t iters) {
  pp_buffer b[IPC_BULK];
  uint64_t h[IPC_BULK];
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    if (pp_alloc_bulk(c, 4096, 0, IPC_BULK, b) != (int)IPC_BULK) return -1;
    for (unsigned k = 0; k < IPC_BULK; k++)
      h[k] = b[k].handle;
    if (pp_free_bulk(c, h, IPC_BULK) != 0) return -1;
  }
  return (double)(bench_now_ns() - t0) / (double)(iters * IPC_BULK);
}

/* The sizes of bench_buddy.c's sequence (its seq_init): 4 KiB << (0..8), uniform. */
#define IPC_MZ_SEQ 1024u
static uint64_t ipc_mz_size[IPC_MZ_SEQ];

static void ipc_mz_seq_init(void) {
  uint64_t x = 0x2545F4914F6CDD1Dull;
  for (unsigned i = 0; i < IPC_MZ_SEQ; i++) {
    x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
    ipc_mz_size[i] = 4096ull << (unsigned)(((x * 2685821657736338717ull) >> 32) % 9u);
  }
}

/* fixed: 0 for bench_buddy's sizes, else that size. */
static double ipc_memzone_rep(uint64_t iters, uint64_t fixed) {
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    uint64_t size = fixed ? fixed : ipc_mz_size[i & (IPC_MZ_SEQ - 1)];
    const struct rte_memzone *mz = rte_memzone_reserve_aligned(
        "ppbench_ipc_mz", size, SOCKET_ID_ANY, RTE_MEMZONE_IOVA_CONTIG, (unsigned)size);
    if (!mz) return -1;
    rte_memzone_free(mz);
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

int bench_ipc(const bench_opts_t *o) {
  unsigned reps = o->reps < IPC_MAX_REPS ? o->reps : IPC_MAX_REPS;
  uint64_t rpc_iters = o->iters ? o->iters : 20000;
  uint64_t mag_iters = o->iters ? o->iters * 100 : 2000000;
  double raw[IPC_MAX_REPS], af[IPC_MAX_REPS], rpc[IPC_MAX_REPS], mag[IPC_MAX_REPS];
  double cached[IPC_MAX_REPS], bulk[IPC_MAX_REPS], mz[IPC_MAX_REPS], mz4k[IPC_MAX_REPS];
  uint64_t bulk_iters = rpc_iters / IPC_BULK ? rpc_iters / IPC_BULK : 1;
  uint64_t mz_iters = o->iters ? o->iters : 20000;
  pp_client *cc = NULL; /* with buffer caches */
  ipc_daemon_t d = {0};
  ipc_raw_conn_t r = {.fd = -1, .rx = {.fd = -1}};
  pp_client *c = NULL;
  pp_cache *k = NULL;
  uint64_t *offs = NULL;
  int echo_fd = -1;
  pid_t echo = -1;
  int rc = -1;

  signal(SIGPIPE, SIG_IGN);
  cpu_set_t saved;
  bool pinned = sched_getaffinity(0, sizeof saved, &saved) == 0;
  if (pinned) {
    ipc_choose_cpus(&saved);
    ipc_pin(ipc_cpu_self);
    bench_progress("ipc: measuring on CPU %d, daemon and echo peer on CPU %d", ipc_cpu_self,
                   ipc_cpu_peer);
  }
  if (ipc_daemon_start(&d) < 0) {
    fprintf(stderr, "pinpool-bench ipc: cannot start pinpoold\n");
    if (pinned) sched_setaffinity(0, sizeof saved, &saved);
    return -1;
  }
  /* Without buffer caches: pinpool.alloc_free is two requests. */
  pp_connect_options co = {sizeof co, PP_CONNECT_NO_BUFFER_CACHE};
  if (pp_connect_opts(d.sock, "pinpool-bench", &co, &c) != 0 ||
      pp_cache_open(c, "bench-mag-64", 64, 64, &k) != 0 || ipc_raw_open(&r, d.sock) < 0) {
    fprintf(stderr, "pinpool-bench ipc: cannot talk to pinpoold\n");
    goto out;
  }
  if (pp_connect(d.sock, "pinpool-bench-cached", &cc) != 0 || !pp_buffer_cache_enabled(cc) ||
      bench_eal_init() != 0) {
    fprintf(stderr, "pinpool-bench ipc: no buffer caches, or no DPDK\n");
    goto out;
  }
  ipc_mz_seq_init();
  offs = malloc(rpc_iters * sizeof *offs);
  echo = ipc_echo_start(&echo_fd);
  if (!offs || echo < 0) goto out;

  /* Warm-up: first-touch faults, the magazines' first refill, the daemon's slabs. */
  if (ipc_raw_rep(echo_fd, 1000) < 0 || ipc_alloc_free_rep(c, 1000) < 0 ||
      ipc_cache_rpc_rep(&r, offs, rpc_iters < 1000 ? rpc_iters : 1000) < 0 ||
      ipc_magazine_rep(k, 10000) < 0 || ipc_cached_rep(cc, 10000) < 0 ||
      ipc_bulk_rep(c, 10) < 0 || ipc_memzone_rep(IPC_MZ_SEQ, 0) < 0 ||
      ipc_memzone_rep(1000, 4096) < 0)
    goto out;
  /* Within a repetition the three round-trip measurements alternate in IPC_SLICES
   * slices, so that a burst of load from other work on the machine falls on all of them
   * rather than on whichever happened to run then. */
  uint64_t slice = rpc_iters / IPC_SLICES ? rpc_iters / IPC_SLICES : 1;
  for (unsigned i = 0; i < reps; i++) {
    bench_progress("ipc: rep %u/%u", i + 1, reps);
    raw[i] = af[i] = rpc[i] = 0;
    for (unsigned s = 0; s < IPC_SLICES; s++) {
      double a = ipc_raw_rep(echo_fd, slice), b = ipc_alloc_free_rep(c, slice),
             e = ipc_cache_rpc_rep(&r, offs, slice);
      if (a < 0 || b < 0 || e < 0) goto out;
      raw[i] += a / IPC_SLICES;
      af[i] += b / IPC_SLICES;
      rpc[i] += e / IPC_SLICES;
    }
    mag[i] = ipc_magazine_rep(k, mag_iters);
    if (mag[i] < 0) goto out;
    cached[i] = ipc_cached_rep(cc, mag_iters);
    bulk[i] = ipc_bulk_rep(c, bulk_iters);
    mz[i] = ipc_memzone_rep(mz_iters, 0);
    mz4k[i] = ipc_memzone_rep(mz_iters, 4096);
    if (cached[i] < 0 || bulk[i] < 0 || mz[i] < 0 || mz4k[i] < 0) goto out;
  }
  bench_result_t res[8] = {
      {.name = "raw.roundtrip", .ns_per_op = bench_median(raw, reps)},
      {.name = "pinpool.alloc_free", .ns_per_op = bench_median(af, reps)},
      {.name = "pinpool.cache_alloc_rpc", .ns_per_op = bench_median(rpc, reps)},
      {.name = "pinpool.cache_magazine", .ns_per_op = bench_median(mag, reps)},
      {.name = "pinpool.alloc_free_cached", .ns_per_op = bench_median(cached, reps)},
      {.name = "pinpool.bulk_per_buffer", .ns_per_op = bench_median(bulk, reps)},
      {.name = "dpdk.memzone", .ns_per_op = bench_median(mz, reps)},
      {.name = "dpdk.memzone_4k", .ns_per_op = bench_median(mz4k, reps)},
  };
  for (unsigned i = 0; i < 8; i++)
    res[i].ops_per_sec = 1e9 / res[i].ns_per_op;
  bench_report("ipc", o, res, 8);
  rc = 0;
out:
  if (echo_fd >= 0) close(echo_fd); /* the echo child sees EOF and exits */
  if (echo > 0) waitpid(echo, NULL, 0);
  if (r.fd >= 0) close(r.fd);
  frame_rx_free(&r.rx);
  pp_disconnect(c);
  pp_disconnect(cc);
  free(offs);
  ipc_daemon_stop(&d);
  if (pinned) sched_setaffinity(0, sizeof saved, &saved);
  return rc;
}
