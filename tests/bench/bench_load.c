/*
 * bench_load.c — `pinpool-bench load`: many client processes at once against one pinpoold,
 * next to a raw echo server built the way pinpoold is built, under the same load.
 *
 * What.  For each client count N (--clients N, else 1, 8 and 64), N client processes per
 * server keep one request each in flight, and the run reports each server's requests per
 * second (the median over repetitions) with the 50th and 99th percentile of the
 * per-request latency (over every measured request of every repetition):
 *   pinpool.load  one pinpoold (bench_peer.c: 64 MiB of 4 KiB pages).  Each client speaks
 *                 through proto/rpc.c, libpinpool's own request path (rpc_call: frame_send,
 *                 then frame_rx_response), and repeats the cycle
 *                   Alloc(4096) -> Free(handle) -> CacheAlloc(1 object of a shared 64-byte
 *                   cache) -> CacheFree(that object)
 *                 so half its requests are uncached buffer allocations and frees, half
 *                 cache RPCs (what libpinpool sends when its magazines run dry or
 *                 overflow); each request is timed on its own;
 *   echo.load     a raw echo server on pinpoold's event-loop model (bench_echo.c): one
 *                 libuv loop thread, frames assembled by the same frame_reader_feed
 *                 pinpoold uses, each answered in order by echoing it in a freshly
 *                 malloc'd frame written with uv_try_write first and uv_write only for
 *                 what the socket does not take — what pinpoold's conn.c does minus
 *                 unpacking, handling and packing.  Its clients send the very Request frames
 * the pinpool clients send and receive with the same frame_rx (frame_rx_frame), unpacking the
 * echo as the Request it is, so client-side costs match and the difference is the daemon's
 * work. Target: pinpool.load's throughput >= 0.8x echo.load's at every N.
 *
 * Placement (2 CPUs here): the servers — pinpoold and the echo server — are pinned to one
 * CPU, every client process and this coordinator to the other, as in `ipc`.  The layout
 * keeps the server's CPU to itself, which is what a daemon's throughput is about, and
 * makes the points comparable run to run; with more CPUs the clients still share one, so
 * at large N the clients' CPU may be the limit for both servers alike (the progress lines
 * show each server's CPU use and both CPUs' busy share while it was measured).
 *
 * Measuring.  For each N the coordinator forks N clients of each server, which connect,
 * say Hello and open the cache (pinpool) and report ready in a shared anonymous mapping.
 * Then, per repetition, the servers take turns in slices (each gets --ms, default 1000 ms,
 * per repetition, in slices of at most 100 ms, who goes first alternating), so that drift
 * of the shared machine falls on both alike.  A slice opens the server's gate — a futex
 * word its clients sleep on while it is the other's turn, so a switch wakes only the
 * clients that are to run —, lets them warm up for a fifth of a slice, then measures: the
 * coordinator times the window, a client counts a request when its server was measured
 * both before and after it, logs its latency in a log-linear histogram (16 buckets per
 * power of two: within 6.25%, HDR-like; percentiles are bucket midpoints) and counts its
 * own voluntary context switches over the windows; the coordinator counts the server's.
 *
 * Locks: none.  The shared mapping has one slot per client, written only by that client;
 * the coordinator reads the request counts as they grow (a client that saw the window
 * close late adds at most one request to the next slice's count) and the rest after the
 * client has exited.  Phase, turn and gates are atomics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "frame.h"
#include "rpc.h"

#define LOAD_MAX_CLIENTS 256u
#define LOAD_MAX_POINTS 8u
#define LOAD_MAX_REPS 64u
#define LOAD_SUB 16u                                  /* histogram buckets per power of two */
#define LOAD_MAX_MSB 40u                              /* ~18 minutes: the last bucket */
#define LOAD_BUCKETS ((LOAD_MAX_MSB - 2u) * LOAD_SUB) /* see load_bucket */
#define LOAD_READY_TIMEOUT_MS 20000u
#define LOAD_SLICE_MS 100u /* the servers take turns this often */

enum { LOAD_PINPOOL, LOAD_ECHO, LOAD_SERVERS };
enum { LOAD_IDLE, LOAD_WARM, LOAD_MEASURE, LOAD_STOP };
static const char *const load_names[LOAD_SERVERS] = {"pinpool.load", "echo.load"};

/* ---- the latency histogram ----------------------------------------------------------- */

/* Log-linear buckets: values below LOAD_SUB exactly, then LOAD_SUB buckets per power of
 * two (the top bit selects the power, the next four bits the bucket). */
static unsigned load_bucket(uint64_t ns) {
  if (ns < LOAD_SUB) return (unsigned)ns;
  unsigned msb = 63u - (unsigned)__builtin_clzll(ns);
  if (msb > LOAD_MAX_MSB) return LOAD_BUCKETS - 1;
  unsigned sub = (unsigned)(ns >> (msb - 4u)) & (LOAD_SUB - 1u);
  return (msb - 3u) * LOAD_SUB + sub;
}

/* The midpoint of bucket b's range. */
static double load_bucket_mid(unsigned b) {
  if (b < LOAD_SUB) return b;
  unsigned msb = b / LOAD_SUB + 3u, sub = b % LOAD_SUB;
  double width = (double)(1ull << (msb - 4u));
  return (double)(LOAD_SUB + sub) * width + width / 2;
}

static double load_percentile(const uint64_t *hist, double q) {
  uint64_t total = 0, seen = 0;
  for (unsigned b = 0; b < LOAD_BUCKETS; b++)
    total += hist[b];
  if (total == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)total);
  if (want >= total) want = total - 1;
  for (unsigned b = 0; b < LOAD_BUCKETS; b++) {
    seen += hist[b];
    if (seen > want) return load_bucket_mid(b);
  }
  return 0;
}

/* ---- shared state ---------------------------------------------------------------------- */

typedef struct load_slot {
  uint64_t done; /* requests counted so far (only grows) */
  uint64_t sent; /* requests answered in all, warm-up included */
  long csw;      /* voluntary context switches while measuring */
  int failed;    /* a request or the connection failed */
  uint64_t hist[LOAD_BUCKETS];
} load_slot_t;

/* One point's clients: slots [0, n) talk to pinpoold, [n, 2n) to the echo server.  The
 * phase says what the server whose turn it is does; gate[s] is 1 while it is server s's
 * turn (or at STOP), and s's clients sleep on it (a futex) otherwise, so switching turns
 * wakes only the clients that are to run. */
typedef struct load_shared {
  _Atomic int phase;
  _Atomic int turn;
  _Atomic int gate[LOAD_SERVERS];
  _Atomic unsigned ready;
  load_slot_t slot[2 * LOAD_MAX_CLIENTS];
} load_shared_t;

static void load_gate(load_shared_t *sh, int s, int open) {
  atomic_store(&sh->gate[s], open);
  if (open) syscall(SYS_futex, (int *)&sh->gate[s], FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void load_gate_wait(load_shared_t *sh, int s) {
  syscall(SYS_futex, (int *)&sh->gate[s], FUTEX_WAIT, 0, NULL, NULL, 0);
}

/* Whether a client of server s is to send requests, and whether they count. */
static bool load_running(load_shared_t *sh, int s, bool *ret_measured) {
  int ph = atomic_load(&sh->phase);
  bool mine = atomic_load(&sh->turn) == s && (ph == LOAD_WARM || ph == LOAD_MEASURE);
  *ret_measured = mine && ph == LOAD_MEASURE;
  return mine;
}

/* ---- the clients --------------------------------------------------------------------- */

typedef struct load_client {
  int server; /* LOAD_PINPOOL or LOAD_ECHO */
  rpc_t rpc;  /* pinpool: libpinpool's request path */
  uint32_t cache_id;
  uint64_t handle, object; /* what the last Alloc / CacheAlloc returned */
  int fd;                  /* echo: the connection, its receiver and request ids */
  frame_rx_t rx;
  uint64_t next_id;
} load_client_t;

/* Request k of the cycle Alloc, Free, CacheAlloc, CacheFree, filled into req. */
typedef struct load_bodies {
  Pinpool__V1__Alloc alloc;
  Pinpool__V1__Free free;
  Pinpool__V1__CacheAlloc cache_alloc;
  Pinpool__V1__CacheFree cache_free;
} load_bodies_t;

static void load_fill(load_client_t *lc, load_bodies_t *b, unsigned k,
                      Pinpool__V1__Request__BodyCase *ret_case, ProtobufCMessage **ret_body,
                      Pinpool__V1__Response__BodyCase *ret_want) {
  b->alloc = (Pinpool__V1__Alloc)PINPOOL__V1__ALLOC__INIT;
  b->free = (Pinpool__V1__Free)PINPOOL__V1__FREE__INIT;
  b->cache_alloc = (Pinpool__V1__CacheAlloc)PINPOOL__V1__CACHE_ALLOC__INIT;
  b->cache_free = (Pinpool__V1__CacheFree)PINPOOL__V1__CACHE_FREE__INIT;
  switch (k % 4) {
  case 0:
    b->alloc.size = 4096;
    *ret_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
    *ret_body = &b->alloc.base;
    *ret_want = PINPOOL__V1__RESPONSE__BODY_BUFFER;
    break;
  case 1:
    b->free.handle = lc->handle;
    *ret_case = PINPOOL__V1__REQUEST__BODY_FREE;
    *ret_body = &b->free.base;
    *ret_want = PINPOOL__V1__RESPONSE__BODY__NOT_SET;
    break;
  case 2:
    b->cache_alloc.cache_id = lc->cache_id;
    b->cache_alloc.count = 1;
    *ret_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
    *ret_body = &b->cache_alloc.base;
    *ret_want = PINPOOL__V1__RESPONSE__BODY_OBJECTS;
    break;
  default:
    b->cache_free.cache_id = lc->cache_id;
    b->cache_free.n_offsets = 1;
    b->cache_free.offsets = &lc->object;
    *ret_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE;
    *ret_body = &b->cache_free.base;
    *ret_want = PINPOOL__V1__RESPONSE__BODY__NOT_SET;
    break;
  }
}

static int load_pinpool_request(load_client_t *lc, unsigned k) {
  load_bodies_t b;
  Pinpool__V1__Request__BodyCase bc;
  ProtobufCMessage *body;
  Pinpool__V1__Response__BodyCase want;
  Pinpool__V1__Response *resp = NULL;
  load_fill(lc, &b, k, &bc, &body, &want);
  int rc = rpc_call(&lc->rpc, bc, body, want, &resp, NULL);
  if (rc < 0) return rc;
  if (want == PINPOOL__V1__RESPONSE__BODY_BUFFER) lc->handle = resp->buffer->handle;
  if (want == PINPOOL__V1__RESPONSE__BODY_OBJECTS) {
    if (resp->objects->n_offsets != 1)
      rc = PP_EPROTO;
    else
      lc->object = resp->objects->offsets[0];
  }
  frame_free_response(resp);
  return rc;
}

/* The same Request frame, echoed: sent with frame_send, received with frame_rx_frame and
 * unpacked as the Request it is. */
static int load_echo_request(load_client_t *lc, unsigned k) {
  load_bodies_t b;
  Pinpool__V1__Request__BodyCase bc;
  ProtobufCMessage *body;
  Pinpool__V1__Response__BodyCase want;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  const uint8_t *frame;
  size_t len;
  load_fill(lc, &b, k, &bc, &body, &want);
  req.id = lc->next_id++;
  req.body_case = bc;
  switch (bc) {
  case PINPOOL__V1__REQUEST__BODY_ALLOC: req.alloc = &b.alloc; break;
  case PINPOOL__V1__REQUEST__BODY_FREE: req.free = &b.free; break;
  case PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC: req.cache_alloc = &b.cache_alloc; break;
  default: req.cache_free = &b.cache_free; break;
  }
  int rc = frame_send(lc->fd, &req.base, FRAME_MAX_DEFAULT, -1);
  if (rc < 0) return rc;
  rc = frame_rx_frame(lc->fd, &lc->rx, FRAME_MAX_DEFAULT, -1, &frame, &len, NULL);
  if (rc < 0) return rc;
  Pinpool__V1__Request *echo = frame_unpack_request(frame, len, FRAME_REQUEST_BUDGET(len));
  if (!echo) return PP_EPROTO;
  rc = echo->id == req.id && echo->body_case == bc ? 0 : PP_EPROTO;
  frame_free_request(echo);
  if (rc == 0) {
    lc->handle++;
    lc->object += 64;
  }
  return rc;
}

static int load_client_open(load_client_t *lc, int server, const char *sock, unsigned idx) {
  memset(lc, 0, sizeof *lc);
  lc->server = server;
  lc->fd = -1;
  lc->next_id = 1;
  frame_rx_init(&lc->rx);
  rpc_init(&lc->rpc, -1);
  if (server == LOAD_ECHO) {
    lc->fd = bench_connect_unix(sock);
    return lc->fd < 0 ? -1 : 0;
  }
  char name[32];
  Pinpool__V1__Response *resp = NULL;
  snprintf(name, sizeof name, "bench-load-%u", idx);
  if (rpc_connect(&lc->rpc, sock) < 0 || rpc_hello(&lc->rpc, name, &resp, NULL) < 0) return -1;
  frame_free_response(resp);
  Pinpool__V1__CacheOpen co = PINPOOL__V1__CACHE_OPEN__INIT;
  co.name = "bench-load-64";
  co.object_size = 64;
  co.align = 64;
  if (rpc_call(&lc->rpc, PINPOOL__V1__REQUEST__BODY_CACHE_OPEN, &co.base,
               PINPOOL__V1__RESPONSE__BODY_CACHE, &resp, NULL) < 0)
    return -1;
  lc->cache_id = resp->cache->cache_id;
  frame_free_response(resp);
  return 0;
}

/* A client process: connect, report ready, then send requests while the phase says its
 * server's turn, sleeping on the phase word otherwise, until STOP. */
static void load_client_main(load_shared_t *sh, unsigned idx, int server, const char *sock,
                             int cpu) {
  load_slot_t *slot = &sh->slot[idx];
  load_client_t lc;
  bench_pin(cpu);
  if (load_client_open(&lc, server, sock, idx) < 0) {
    slot->failed = 1;
    atomic_fetch_add(&sh->ready, 1);
    _exit(1);
  }
  atomic_fetch_add(&sh->ready, 1);
  long csw0 = -1; /* >= 0: measuring since then */
  for (unsigned k = 0;;) {
    bool measured, after;
    bool run = load_running(sh, server, &measured);
    if (csw0 >= 0 && !measured) { /* the window closed */
      slot->csw += bench_csw_self() - csw0;
      csw0 = -1;
    }
    if (atomic_load(&sh->phase) == LOAD_STOP) break;
    if (!run) {
      load_gate_wait(sh, server);
      continue;
    }
    if (measured && csw0 < 0) csw0 = bench_csw_self();
    uint64_t t0 = bench_now_ns();
    int rc =
        server == LOAD_PINPOOL ? load_pinpool_request(&lc, k++) : load_echo_request(&lc, k++);
    uint64_t t1 = bench_now_ns();
    if (rc < 0) {
      slot->failed = 1;
      break;
    }
    slot->sent++;
    if (measured && load_running(sh, server, &after) && after) {
      slot->hist[load_bucket(t1 - t0)]++;
      slot->done++;
    }
  }
  rpc_close(&lc.rpc); /* the daemon gives back what this session still holds */
  if (lc.fd >= 0) close(lc.fd);
  frame_rx_free(&lc.rx);
  _exit(slot->failed ? 1 : 0);
}

/* ---- the coordinator ------------------------------------------------------------------- */

/* CPU time (user + system, clock ticks) of pid so far; -1 if unknown. */
static long load_cpu_ticks(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* comm may hold spaces */
  unsigned long ut, st;
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (long)(ut + st);
}

/* Busy and total jiffies of cpu so far, from /proc/stat; 0 when unknown. */
static void load_cpu_jiffies(int cpu, unsigned long long *ret_busy,
                             unsigned long long *ret_total) {
  char line[512], want[16];
  unsigned long long v[8] = {0};
  *ret_busy = *ret_total = 0;
  snprintf(want, sizeof want, "cpu%d ", cpu);
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, want, strlen(want)) != 0) continue;
    if (sscanf(line + strlen(want), "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
      for (int i = 0; i < 8; i++)
        *ret_total += v[i];
      *ret_busy = *ret_total - v[3] - v[4]; /* all but idle and iowait */
    }
    break;
  }
  fclose(f);
}

/* What one server measured at one client count. */
typedef struct load_point {
  double tput[LOAD_MAX_REPS]; /* requests per second, per repetition */
  uint64_t hist[LOAD_BUCKETS];
  uint64_t done, sent;
  long csw_clients, csw_server;
  double ns;                                       /* measured time, all repetitions */
  long server_ticks;                               /* the server's CPU time while measured */
  unsigned long long cbusy, ctotal, sbusy, stotal; /* both CPUs' jiffies while measured */
} load_point_t;

typedef struct load_setup {
  const char *sock[LOAD_SERVERS];
  pid_t pid[LOAD_SERVERS];
  unsigned reps, slices, slice_ms, warm_ms;
  int cpu_clients, cpu_server;
} load_setup_t;

/* One measured slice of server s: warm up, then measure for slice_ms. */
static void load_slice(load_shared_t *sh, const load_setup_t *ls, unsigned n, int s,
                       load_point_t *pt, uint64_t *ret_done, double *ret_ns) {
  unsigned long long cb0, ct0, sb0, st0, cb1, ct1, sb1, st1;
  uint64_t done0 = 0, done1 = 0;
  load_slot_t *slot = &sh->slot[(unsigned)s * n];

  atomic_store(&sh->turn, s);
  atomic_store(&sh->phase, LOAD_WARM);
  load_gate(sh, s, 1);
  bench_sleep_ms(ls->warm_ms);
  for (unsigned i = 0; i < n; i++)
    done0 += slot[i].done;
  load_cpu_jiffies(ls->cpu_clients, &cb0, &ct0);
  load_cpu_jiffies(ls->cpu_server, &sb0, &st0);
  long csw0 = bench_csw_of(ls->pid[s]), tk0 = load_cpu_ticks(ls->pid[s]);
  uint64_t t0 = bench_now_ns();
  atomic_store(&sh->phase, LOAD_MEASURE);
  bench_sleep_ms(ls->slice_ms);
  atomic_store(&sh->phase, LOAD_IDLE);
  load_gate(sh, s, 0);
  uint64_t t1 = bench_now_ns();
  long csw1 = bench_csw_of(ls->pid[s]), tk1 = load_cpu_ticks(ls->pid[s]);
  load_cpu_jiffies(ls->cpu_clients, &cb1, &ct1);
  load_cpu_jiffies(ls->cpu_server, &sb1, &st1);
  /* A client that saw MEASURE just before IDLE may count one more request after this
   * read: at most n requests land in the next slice's count. */
  for (unsigned i = 0; i < n; i++)
    done1 += slot[i].done;
  *ret_done = done1 - done0;
  *ret_ns = (double)(t1 - t0);
  pt->ns += (double)(t1 - t0);
  pt->csw_server += csw0 >= 0 && csw1 >= csw0 ? csw1 - csw0 : 0;
  pt->server_ticks += tk0 >= 0 && tk1 >= tk0 ? tk1 - tk0 : 0;
  pt->cbusy += cb1 - cb0;
  pt->ctotal += ct1 - ct0;
  pt->sbusy += sb1 - sb0;
  pt->stotal += st1 - st0;
}

static double load_pct(unsigned long long part, unsigned long long whole) {
  return whole ? 100.0 * (double)part / (double)whole : -1.0;
}

/* n clients of each server, connected once; then, per repetition, slices alternating
 * between the servers (who goes first alternates too). */
static int load_run_point(load_shared_t *sh, const load_setup_t *ls, unsigned n,
                          load_point_t pt[LOAD_SERVERS]) {
  pid_t pids[2 * LOAD_MAX_CLIENTS];
  unsigned started = 0;
  int rc = -1;

  memset(sh, 0, sizeof *sh);
  atomic_store(&sh->phase, LOAD_IDLE);
  atomic_store(&sh->turn, -1);
  for (; started < 2 * n; started++) {
    int server = started < n ? LOAD_PINPOOL : LOAD_ECHO;
    pids[started] = fork();
    if (pids[started] < 0) break;
    if (pids[started] == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      load_client_main(sh, started, server, ls->sock[server], ls->cpu_clients);
    }
  }
  for (unsigned w = 0; started == 2 * n && atomic_load(&sh->ready) < 2 * n; w++) {
    if (w >= LOAD_READY_TIMEOUT_MS) break;
    bench_sleep_ms(1);
  }
  if (started < 2 * n || atomic_load(&sh->ready) < 2 * n) goto out;
  for (unsigned i = 0; i < 2 * n; i++)
    if (sh->slot[i].failed) goto out;

  for (unsigned r = 0; r < ls->reps; r++) {
    uint64_t done[LOAD_SERVERS] = {0};
    double ns[LOAD_SERVERS] = {0};
    for (unsigned k = 0; k < 2 * ls->slices; k++) {
      int s = (int)((k + r) % LOAD_SERVERS);
      uint64_t d;
      double t;
      load_slice(sh, ls, n, s, &pt[s], &d, &t);
      done[s] += d;
      ns[s] += t;
    }
    for (int s = 0; s < LOAD_SERVERS; s++) {
      pt[s].tput[r] = ns[s] > 0 ? (double)done[s] * 1e9 / ns[s] : 0;
      pt[s].done += done[s];
    }
    bench_progress("load: %3u clients rep %u/%u: pinpool %.0f, echo %.0f requests/s", n, r + 1,
                   ls->reps, pt[LOAD_PINPOOL].tput[r], pt[LOAD_ECHO].tput[r]);
  }
  rc = 0;
out:
  atomic_store(&sh->phase, LOAD_STOP);
  for (int s = 0; s < LOAD_SERVERS; s++)
    load_gate(sh, s, 1);
  for (unsigned i = 0; i < started; i++)
    waitpid(pids[i], NULL, 0);
  for (unsigned i = 0; i < started; i++) {
    load_slot_t *slot = &sh->slot[i];
    load_point_t *p = &pt[i < n ? LOAD_PINPOOL : LOAD_ECHO];
    if (slot->failed) rc = -1;
    p->csw_clients += slot->csw;
    p->sent += slot->sent;
    for (unsigned b = 0; b < LOAD_BUCKETS; b++)
      p->hist[b] += slot->hist[b];
  }
  if (rc < 0) {
    fprintf(stderr, "pinpool-bench load: %u clients: a client failed or did not connect\n", n);
    return rc;
  }
  for (int s = 0; s < LOAD_SERVERS; s++)
    bench_progress("load: %-12s %3u clients: server %3.0f%% of a CPU; CPU %d (clients) %3.0f%% "
                   "busy, CPU %d (server) %3.0f%% busy; %llu requests in all",
                   load_names[s], n,
                   pt[s].ns > 0 ? (double)pt[s].server_ticks * 1e9 /
                                      (double)sysconf(_SC_CLK_TCK) / pt[s].ns * 100.0
                                : -1.0,
                   ls->cpu_clients, load_pct(pt[s].cbusy, pt[s].ctotal), ls->cpu_server,
                   load_pct(pt[s].sbusy, pt[s].stotal), (unsigned long long)pt[s].sent);
  return rc;
}

int bench_load(const bench_opts_t *o) {
  static const unsigned defaults[] = {1, 8, 64};
  static const char *const daemon_args[] = {"--max-clients", "300", NULL};
  unsigned ns[LOAD_MAX_POINTS], npoints = 0;
  unsigned ms = o->point_ms ? o->point_ms : 1000;
  load_setup_t ls = {.reps = o->reps < LOAD_MAX_REPS ? o->reps : LOAD_MAX_REPS};
  bench_daemon_t d = {0}, e = {0};
  load_point_t *pts = NULL;
  load_shared_t *sh = MAP_FAILED;
  int rc = -1;

  if (o->clients) {
    if (o->clients > LOAD_MAX_CLIENTS) {
      fprintf(stderr, "pinpool-bench load: at most %u clients\n", LOAD_MAX_CLIENTS);
      return -1;
    }
    ns[npoints++] = o->clients;
  } else {
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
      ns[npoints++] = defaults[i];
  }
  /* Each server measures ms per repetition, in slices of at most LOAD_SLICE_MS, each after
   * a fifth of a slice of warm-up (the clients just woke). */
  ls.slices = (ms + LOAD_SLICE_MS - 1) / LOAD_SLICE_MS;
  ls.slice_ms = ms / ls.slices ? ms / ls.slices : 1;
  ls.warm_ms = ls.slice_ms / 5 ? ls.slice_ms / 5 : 1;

  signal(SIGPIPE, SIG_IGN);
  cpu_set_t saved;
  bool pinned = sched_getaffinity(0, sizeof saved, &saved) == 0;
  bench_choose_cpus(&ls.cpu_clients, &ls.cpu_server);
  if (pinned) bench_pin(ls.cpu_clients);
  bench_progress("load: clients on CPU %d, pinpoold and the echo server on CPU %d; per "
                 "repetition each server gets %u slices of %u ms, each after %u ms of warm-up",
                 ls.cpu_clients, ls.cpu_server, ls.slices, ls.slice_ms, ls.warm_ms);
  sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  pts = calloc(npoints * LOAD_SERVERS, sizeof *pts);
  if (sh == MAP_FAILED || !pts) goto out;
  if (bench_daemon_start(&d, ls.cpu_server, daemon_args) < 0) {
    fprintf(stderr, "pinpool-bench load: cannot start pinpoold\n");
    goto out;
  }
  if (bench_echo_start(&e, ls.cpu_server) < 0) {
    fprintf(stderr, "pinpool-bench load: cannot start the echo server\n");
    goto out;
  }
  bench_progress("load: pinpoold is pid %d, the echo server pid %d", (int)d.pid, (int)e.pid);
  ls.sock[LOAD_PINPOOL] = d.sock;
  ls.pid[LOAD_PINPOOL] = d.pid;
  ls.sock[LOAD_ECHO] = e.sock;
  ls.pid[LOAD_ECHO] = e.pid;

  for (unsigned p = 0; p < npoints; p++)
    if (load_run_point(sh, &ls, ns[p], &pts[p * LOAD_SERVERS]) < 0) goto out;

  bench_result_t res[LOAD_MAX_POINTS * LOAD_SERVERS];
  size_t nres = 0;
  for (unsigned p = 0; p < npoints; p++)
    for (unsigned s = 0; s < LOAD_SERVERS; s++) {
      load_point_t *pt = &pts[p * LOAD_SERVERS + s];
      double tput = bench_median(pt->tput, ls.reps);
      double done = pt->done ? (double)pt->done : 1;
      res[nres++] = (bench_result_t){.name = load_names[s],
                                     .clients = ns[p],
                                     .ns_per_op = tput > 0 ? 1e9 / tput : 0,
                                     .ops_per_sec = tput,
                                     .p50_ns = load_percentile(pt->hist, 0.50),
                                     .p99_ns = load_percentile(pt->hist, 0.99),
                                     .csw_self = (double)pt->csw_clients / done,
                                     .csw_peer = (double)pt->csw_server / done};
    }
  bench_report("load", o, res, nres);
  rc = 0;
out:
  bench_echo_stop(&e);
  bench_daemon_stop(&d);
  free(pts);
  if (sh != MAP_FAILED) munmap(sh, sizeof *sh);
  if (pinned) sched_setaffinity(0, sizeof saved, &saved);
  return rc;
}
