/*
 * bench_ipc.c — `pinpool-bench ipc`: what a request to pinpoold costs, next to the floor
 * any Unix-socket daemon pays.
 *
 * One run starts its own pinpoold (the one next to this binary: dirname of
 * /proc/self/exe), on a temporary socket with a 64 MiB region of 4 KiB pages so that
 * hugepages are not needed, and measures, repetition by repetition and interleaved so
 * that drift of the shared machine hits them alike:
 *   raw.roundtrip           the floor for one request: a 32-byte message to a child process
 *                           over a socketpair and back, each side in the cheapest shape —
 *                           the caller a blocking write then a blocking read, the echo child
 *                           a blocking read then a write;
 *   raw.roundtrip_poll      the same with both sides waiting in poll(POLLIN) before a
 *                           non-blocking read (frame.c's FRAME_RX_WAIT_POLL shape); shown
 *                           aside, for the comparison of the two ways to wait;
 *   raw.roundtrip_uv        the same 32 bytes, as one frame, to the libuv echo server of
 *                           bench_echo.c, which waits and answers the way pinpoold does
 *                           (epoll through libuv, frame_reader_feed, uv_try_write): the
 *                           caller's side is the floor's, the server's pinpoold's minus its
 *                           work, so pinpool's ratio to it is the cost of that work alone;
 *   pinpool.alloc_free      pp_alloc(4096) + pp_free: two round trips through the daemon
 *                           (target: <= 2.3x raw.roundtrip);
 *   pinpool.cache_alloc_rpc one cache_alloc request for one object, sent with the frame
 *                           helpers on a connection of its own and received as libpinpool
 *                           receives (frame_rx_response, FRAME_RX_WAIT_BLOCK); the objects go
 *                           back untimed;
 *   pinpool.cache_alloc_rpc_poll  the same received with FRAME_RX_WAIT_POLL: which way of
 *                           waiting is cheaper against the real daemon;
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
 * Every round-trip entry also reports voluntary context switches per operation of the
 * measuring thread (getrusage RUSAGE_THREAD) and of its peer (the echo child or the
 * daemon's loop thread: /proc/PID/status), counted over the measured slices.
 * Placement: where the scheduler puts the two ends of a round trip decides its cost
 * more than anything either end does (same CPU: a direct switch; two CPUs: a cross-CPU
 * wake-up, slow on a VM), and left to itself it flips between the two from run to run
 * (seen here: alloc_free 46 us in one run, 72 us in the next, the floor unchanged).  So
 * the measuring process is pinned to one CPU and its peer — the echo children and the
 * daemon alike — to another (the same one when only one is allowed): every entry pays
 * the same placement, and the ratio compares the work, not the scheduler's mood.
 * Every entry has size 0 so the report divides each pinpool figure by the raw floor.
 * On a shared machine the absolute figures follow the load (scheduler wake-up latency
 * dominates a round trip); the ratios, measured in alternating slices, much less.
 * The median of o->reps repetitions is reported; the daemon is stopped at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rte_memory.h>
#include <rte_memzone.h>

#include "bench.h"
#include "frame.h"
#include "pinpool.h"

#define IPC_MSG 32u
#define IPC_MAX_REPS 64u
#define IPC_SLICES 20u

/* ---- the floor: a socketpair round trip to a child that echoes -------------------- */

/* Moves len bytes.  A write is a plain blocking write.  A read is a plain blocking read,
 * or (poll) poll(POLLIN) and then a read without blocking — the two ways frame.c can wait
 * (FRAME_RX_WAIT_BLOCK and FRAME_RX_WAIT_POLL; its essay says why they cost differently). */
static int ipc_full(int fd, void *buf, size_t len, bool wr, bool poll_first) {
  size_t off = 0;
  while (off < len) {
    ssize_t n;
    if (wr) {
      n = write(fd, (char *)buf + off, len - off);
    } else if (poll_first) {
      struct pollfd p = {.fd = fd, .events = POLLIN};
      if (poll(&p, 1, -1) < 0) {
        if (errno == EINTR) continue;
        return -1;
      }
      n = recv(fd, (char *)buf + off, len - off, MSG_DONTWAIT);
      if (n < 0 && errno == EAGAIN) continue;
    } else {
      n = read(fd, (char *)buf + off, len - off);
    }
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    off += (size_t)n;
  }
  return 0;
}

typedef struct ipc_echo {
  pid_t pid;
  int fd;
  bool poll_first; /* both sides wait in poll */
} ipc_echo_t;

static int ipc_echo_start(ipc_echo_t *e, bool poll_first, int cpu) {
  int sv[2];
  e->pid = -1;
  e->fd = -1;
  e->poll_first = poll_first;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  if (pid == 0) {
    char buf[IPC_MSG];
    /* Keep only our end: an inherited copy of another echo child's socket would keep that
     * child from seeing EOF when the benchmark closes its end. */
    if (dup2(sv[1], 3) < 0) _exit(1);
    close_range(4, ~0u, 0);
    sv[1] = 3;
    bench_pin(cpu);
    while (ipc_full(sv[1], buf, sizeof buf, false, poll_first) == 0 &&
           ipc_full(sv[1], buf, sizeof buf, true, false) == 0)
      ;
    _exit(0);
  }
  close(sv[1]);
  e->fd = sv[0];
  e->pid = pid;
  return 0;
}

static void ipc_echo_stop(ipc_echo_t *e) {
  if (e->fd >= 0) close(e->fd); /* the echo child sees EOF and exits */
  if (e->pid > 0) waitpid(e->pid, NULL, 0);
  e->fd = -1;
  e->pid = -1;
}

static double ipc_raw_rep(void *ctx, uint64_t iters) {
  ipc_echo_t *e = ctx;
  char buf[IPC_MSG];
  memset(buf, 0x42, sizeof buf);
  buf[0] = IPC_MSG - FRAME_HEADER_SIZE; /* one frame for the libuv echo server */
  buf[1] = buf[2] = buf[3] = 0;
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++)
    if (ipc_full(e->fd, buf, sizeof buf, true, false) < 0 ||
        ipc_full(e->fd, buf, sizeof buf, false, e->poll_first) < 0)
      return -1;
  return (double)(bench_now_ns() - t0) / (double)iters;
}

/* ---- pinpool ---------------------------------------------------------------------- */

static double ipc_alloc_free_rep(void *ctx, uint64_t iters) {
  pp_client *c = ctx;
  uint64_t t0 = bench_now_ns();
  for (uint64_t i = 0; i < iters; i++) {
    pp_buffer b;
    if (pp_alloc(c, 4096, 0, &b) != 0 || pp_free(c, b.handle) != 0) return -1;
  }
  return (double)(bench_now_ns() - t0) / (double)iters;
}

/* A connection spoken to directly, to time one cache_alloc of one object. */
typedef struct ipc_raw_conn {
  int fd;
  uint64_t id;
  uint32_t cache_id;
  frame_rx_t rx;
  uint64_t *offs; /* the objects of one slice, given back untimed */
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

static int ipc_raw_open(ipc_raw_conn_t *r, const char *sock, frame_rx_wait_t wait,
                        uint64_t max_iters) {
  r->fd = bench_connect_unix(sock);
  r->id = 0;
  frame_rx_init(&r->rx);
  r->rx.wait = wait;
  r->offs = malloc(max_iters * sizeof *r->offs);
  if (r->fd < 0 || !r->offs) return -1;
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

static void ipc_raw_close(ipc_raw_conn_t *r) {
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
  frame_rx_free(&r->rx);
  free(r->offs);
  r->offs = NULL;
}

static double ipc_cache_rpc_rep(void *ctx, uint64_t iters) {
  ipc_raw_conn_t *r = ctx;
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
    r->offs[i] = resp->objects->offsets[0];
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
    cf.offsets = &r->offs[done];
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

/* ---- the run ---------------------------------------------------------------------- */

/* One round-trip entry: its timed loop, whose context switches count as the peer's, and
 * what the repetitions measured. */
typedef struct ipc_entry {
  const char *name;
  double (*rep)(void *ctx, uint64_t iters);
  void *ctx;
  pid_t peer;
  bool aside;
  double ns[IPC_MAX_REPS];
  uint64_t ops;
  long csw_self, csw_peer; /* over every measured slice */
} ipc_entry_t;

/* One slice of e: time it, and count both ends' voluntary context switches. */
static int ipc_slice(ipc_entry_t *e, unsigned rep, uint64_t iters) {
  long s0 = bench_csw_self(), p0 = bench_csw_of(e->peer);
  double ns = e->rep(e->ctx, iters);
  long s1 = bench_csw_self(), p1 = bench_csw_of(e->peer);
  if (ns < 0) return -1;
  e->ns[rep] += ns / IPC_SLICES;
  e->ops += iters;
  e->csw_self += s1 - s0;
  e->csw_peer += p0 >= 0 && p1 >= 0 ? p1 - p0 : 0;
  return 0;
}

int bench_ipc(const bench_opts_t *o) {
  unsigned reps = o->reps < IPC_MAX_REPS ? o->reps : IPC_MAX_REPS;
  uint64_t rpc_iters = o->iters ? o->iters : 10000;
  uint64_t mag_iters = o->iters ? o->iters * 100 : 2000000;
  double mag[IPC_MAX_REPS];
  double cached[IPC_MAX_REPS], bulk[IPC_MAX_REPS], mz[IPC_MAX_REPS], mz4k[IPC_MAX_REPS];
  uint64_t bulk_iters = rpc_iters / IPC_BULK ? rpc_iters / IPC_BULK : 1;
  uint64_t mz_iters = o->iters ? o->iters : 20000;
  pp_client *cc = NULL; /* with buffer caches */
  bench_daemon_t d = {0};
  ipc_raw_conn_t r = {.fd = -1, .rx = {.fd = -1}}, rp = {.fd = -1, .rx = {.fd = -1}};
  ipc_echo_t eb = {.pid = -1, .fd = -1}, ep = {.pid = -1, .fd = -1}, eu = {.pid = -1, .fd = -1};
  bench_daemon_t uv = {0};
  pp_client *c = NULL;
  pp_cache *k = NULL;
  int cpu_self, cpu_peer;
  int rc = -1;

  signal(SIGPIPE, SIG_IGN);
  cpu_set_t saved;
  bool pinned = sched_getaffinity(0, sizeof saved, &saved) == 0;
  bench_choose_cpus(&cpu_self, &cpu_peer);
  if (pinned) {
    bench_pin(cpu_self);
    bench_progress("ipc: measuring on CPU %d, daemon and echo peers on CPU %d", cpu_self,
                   cpu_peer);
  }
  if (bench_daemon_start(&d, cpu_peer, NULL) < 0) {
    fprintf(stderr, "pinpool-bench ipc: cannot start pinpoold\n");
    if (pinned) sched_setaffinity(0, sizeof saved, &saved);
    return -1;
  }
  uint64_t slice = rpc_iters / IPC_SLICES ? rpc_iters / IPC_SLICES : 1;
  uint64_t warm = rpc_iters < 1000 ? rpc_iters : 1000;
  /* Without buffer caches: pinpool.alloc_free is two requests. */
  pp_connect_options co = {sizeof co, PP_CONNECT_NO_BUFFER_CACHE};
  if (pp_connect_opts(d.sock, "pinpool-bench", &co, &c) != 0 ||
      pp_cache_open(c, "bench-mag-64", 64, 64, &k) != 0 ||
      ipc_raw_open(&r, d.sock, FRAME_RX_WAIT_BLOCK, warm > slice ? warm : slice) < 0 ||
      ipc_raw_open(&rp, d.sock, FRAME_RX_WAIT_POLL, warm > slice ? warm : slice) < 0) {
    fprintf(stderr, "pinpool-bench ipc: cannot talk to pinpoold\n");
    goto out;
  }
  if (pp_connect(d.sock, "pinpool-bench-cached", &cc) != 0 || !pp_buffer_cache_enabled(cc) ||
      bench_eal_init() != 0) {
    fprintf(stderr, "pinpool-bench ipc: no buffer caches, or no DPDK\n");
    goto out;
  }
  ipc_mz_seq_init();
  if (ipc_echo_start(&eb, false, cpu_peer) < 0 || ipc_echo_start(&ep, true, cpu_peer) < 0)
    goto out;
  if (bench_echo_start(&uv, cpu_peer) < 0 || (eu.fd = bench_connect_unix(uv.sock)) < 0) {
    fprintf(stderr, "pinpool-bench ipc: cannot start the libuv echo server\n");
    goto out;
  }
  eu.pid = uv.pid;

  ipc_entry_t e[] = {
      {.name = "raw.roundtrip", .rep = ipc_raw_rep, .ctx = &eb, .peer = eb.pid},
      {.name = "raw.roundtrip_poll",
       .rep = ipc_raw_rep,
       .ctx = &ep,
       .peer = ep.pid,
       .aside = true},
      {.name = "raw.roundtrip_uv", .rep = ipc_raw_rep, .ctx = &eu, .peer = uv.pid},
      {.name = "pinpool.alloc_free", .rep = ipc_alloc_free_rep, .ctx = c, .peer = d.pid},
      {.name = "pinpool.cache_alloc_rpc", .rep = ipc_cache_rpc_rep, .ctx = &r, .peer = d.pid},
      {.name = "pinpool.cache_alloc_rpc_poll",
       .rep = ipc_cache_rpc_rep,
       .ctx = &rp,
       .peer = d.pid},
  };
  enum { NE = sizeof e / sizeof e[0] };

  /* Warm-up: first-touch faults, the magazines' first refill, the daemon's slabs. */
  for (unsigned j = 0; j < NE; j++)
    if (e[j].rep(e[j].ctx, warm) < 0) goto out;
  if (ipc_magazine_rep(k, 10000) < 0 || ipc_cached_rep(cc, 10000) < 0 ||
      ipc_bulk_rep(c, 10) < 0 || ipc_memzone_rep(IPC_MZ_SEQ, 0) < 0 ||
      ipc_memzone_rep(1000, 4096) < 0)
    goto out;
  /* Within a repetition the round-trip measurements alternate in IPC_SLICES slices, so
   * that a burst of load from other work on the machine falls on all of them rather than
   * on whichever happened to run then. */
  for (unsigned i = 0; i < reps; i++) {
    bench_progress("ipc: rep %u/%u", i + 1, reps);
    for (unsigned s = 0; s < IPC_SLICES; s++)
      for (unsigned j = 0; j < NE; j++)
        if (ipc_slice(&e[j], i, slice) < 0) goto out;
    mag[i] = ipc_magazine_rep(k, mag_iters);
    if (mag[i] < 0) goto out;
    cached[i] = ipc_cached_rep(cc, mag_iters);
    bulk[i] = ipc_bulk_rep(c, bulk_iters);
    mz[i] = ipc_memzone_rep(mz_iters, 0);
    mz4k[i] = ipc_memzone_rep(mz_iters, 4096);
    if (cached[i] < 0 || bulk[i] < 0 || mz[i] < 0 || mz4k[i] < 0) goto out;
  }
  enum { NX = 5 }; /* the entries measured apart from the round-trip slices */
  bench_result_t res[NE + NX];
  for (unsigned j = 0; j < NE; j++) {
    res[j] = (bench_result_t){.name = e[j].name,
                              .ns_per_op = bench_median(e[j].ns, reps),
                              .csw_self = (double)e[j].csw_self / (double)e[j].ops,
                              .csw_peer = (double)e[j].csw_peer / (double)e[j].ops,
                              .aside = e[j].aside};
  }
  res[NE] =
      (bench_result_t){.name = "pinpool.cache_magazine", .ns_per_op = bench_median(mag, reps)};
  res[NE + 1] = (bench_result_t){.name = "pinpool.alloc_free_cached",
                                 .ns_per_op = bench_median(cached, reps)};
  res[NE + 2] = (bench_result_t){.name = "pinpool.bulk_per_buffer",
                                 .ns_per_op = bench_median(bulk, reps)};
  res[NE + 3] = (bench_result_t){.name = "dpdk.memzone", .ns_per_op = bench_median(mz, reps)};
  res[NE + 4] =
      (bench_result_t){.name = "dpdk.memzone_4k", .ns_per_op = bench_median(mz4k, reps)};
  for (unsigned j = 0; j < NE + NX; j++)
    res[j].ops_per_sec = 1e9 / res[j].ns_per_op;
  bench_report("ipc", o, res, NE + NX);
  rc = 0;
out:
  ipc_echo_stop(&eb);
  ipc_echo_stop(&ep);
  if (eu.fd >= 0) close(eu.fd);
  bench_echo_stop(&uv);
  ipc_raw_close(&r);
  ipc_raw_close(&rp);
  pp_disconnect(c);
  pp_disconnect(cc);
  bench_daemon_stop(&d);
  if (pinned) sched_setaffinity(0, sizeof saved, &saved);
  return rc;
}
