/*
 * test_stats_scale.c — the operator sees everything at any scale: a real pinpoold with
 * 100,000 slab caches and 10,000 clients, and pinpoolctl listing every one of them.
 *
 * Set-up (the group setup, once): raise RLIMIT_NOFILE to its hard limit (the daemon is
 * started after, and inherits it: it needs a descriptor per client, as does this
 * process), start pinpoold with the cache limits lifted and room for the clients, then
 *   - one session opens every cache ("scale-000000", ...), its CacheOpen requests sent a
 *     thousand at a time before the replies are read (pipelined on the raw wire), so that
 *     the set-up costs the daemon's work and not a round trip per cache;
 *   - the clients connect a hundred at a time (non-blocking connects, retried while the
 *     listen backlog is full), each says Hello and keeps its connection, idle; the memfd
 *     of each Welcome is closed at once.
 * The tests run pinpoolctl against it: `slabinfo --json` lists exactly the caches opened,
 * each once, in id order; `clients --json` exactly the sessions connected (the clients,
 * the cache holder and pinpoolctl itself); `status` counts them.  Each run prints the
 * wall time of pinpoolctl and the CPU time the daemon spent meanwhile (its utime + stime
 * from /proc), for the record: figures, never assertions (speed belongs in
 * pinpool-bench).  Teardown closes the caches newest first (cheap for the daemon) and
 * the clients, and stops the daemon as a check.
 *
 * Scale.  The full figures (100,000 caches, 10,000 clients) in the normal build.  Under
 * validators after every state change (PP_DEBUG >= 3, which the ASan+UBSan run of `make
 * test` uses) each request re-checks the whole ledger, so the set-up would be quadratic:
 * there the test uses 1,000 caches and 200 clients — and a max_frame of 4 KiB, so that
 * pinpoolctl still follows many pages.  The environment variable PP_STATS_SCALE=small
 * asks for the small figures in any build.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "frame.h"
#include "testd.h"
#include "wire.h"

#if PP_DEBUG >= 3
#define SCALE_SMALL_BUILD true
#else
#define SCALE_SMALL_BUILD false
#endif

#define PIPELINE 1000u /* requests sent before their replies are read */
#define JOIN_BATCH 100u
#define RECV_TIMEOUT_S 60

static struct {
  const char *skip_why;
  size_t ncaches, nclients;
  bool small;
  testd_t d;
  wire_t holder;       /* has every cache open */
  uint32_t *cache_ids; /* in the order opened */
  int *client_fds;
  size_t joined;
} T = {.holder = {.fd = -1, .memfd = -1}};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) a process has used, from /proc/PID/stat. */
static double cpu_s(pid_t pid) {
  char path[64], buf[1024], *p;
  unsigned long ut, st;
  FILE *f;

  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (!(f = fopen(path, "r"))) return -1;
  p = fgets(buf, sizeof buf, f);
  fclose(f);
  /* After the command's closing parenthesis: state, then fields 4..; utime and stime are
   * fields 14 and 15. */
  if (!p || !(p = strrchr(buf, ')'))) return -1;
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- pipelined requests on the holder's connection ------------------------------------ */

/* Room for one request's body while it is packed. */
typedef struct scratch {
  Pinpool__V1__CacheOpen open;
  Pinpool__V1__CacheClose close;
  char name[64];
} scratch_t;

typedef void (*make_fn)(size_t i, Pinpool__V1__Request *req, scratch_t *scratch);

/* Requests 0..n-1 built by make, PIPELINE at a time: all of a batch sent, then all its
 * replies read, each of which must be OK.  on_reply (may be NULL) sees each. */
static void pipeline(wire_t *c, size_t n, make_fn make,
                     void (*on_reply)(size_t i, const Pinpool__V1__Response *r)) {
  frame_rx_t rx;
  uint8_t *batch = malloc((size_t)PIPELINE * 256);
  assert_non_null(batch);
  frame_rx_init(&rx);
  for (size_t first = 0; first < n; first += PIPELINE) {
    size_t end = first + PIPELINE < n ? first + PIPELINE : n, len = 0;
    uint64_t id0 = c->next_id + 1;
    for (size_t i = first; i < end; i++) {
      Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
      scratch_t scratch;
      uint8_t *f;
      size_t flen;
      make(i, &req, &scratch);
      req.id = ++c->next_id;
      assert_int_equal(frame_pack(&req.base, FRAME_MAX_DEFAULT, &f, &flen), 0);
      assert_true(len + flen <= (size_t)PIPELINE * 256);
      memcpy(batch + len, f, flen);
      len += flen;
      free(f);
    }
    for (size_t off = 0; off < len;) {
      ssize_t w = send(c->fd, batch + off, len - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      assert_true(w > 0);
      off += (size_t)w;
    }
    for (size_t i = first; i < end; i++) {
      Pinpool__V1__Response *r = NULL;
      assert_int_equal(
          frame_rx_response(c->fd, &rx, FRAME_MAX_DEFAULT, RECV_TIMEOUT_S * 1000, &r, NULL), 0);
      assert_int_equal(r->id, id0 + (i - first));
      if (r->status != PINPOOL__V1__STATUS__OK)
        fail_msg("request %zu: %s: %s", i, pp_status_name(-(int)r->status), r->message);
      if (on_reply) on_reply(i, r);
      frame_free_response(r);
    }
  }
  frame_rx_free(&rx);
  free(batch);
}

static void make_open(size_t i, Pinpool__V1__Request *req, scratch_t *scratch) {
  Pinpool__V1__CacheOpen *m = &scratch->open;
  pinpool__v1__cache_open__init(m);
  snprintf(scratch->name, sizeof scratch->name, "scale-%06zu", i);
  m->name = scratch->name;
  m->object_size = 64;
  req->body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req->cache_open = m;
}

static void on_open(size_t i, const Pinpool__V1__Response *r) {
  assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_CACHE);
  T.cache_ids[i] = r->cache->cache_id;
}

/* Newest first: a cache goes from the end of the daemon's lists, which costs it nothing
 * to move. */
static void make_close(size_t i, Pinpool__V1__Request *req, scratch_t *scratch) {
  Pinpool__V1__CacheClose *m = &scratch->close;
  pinpool__v1__cache_close__init(m);
  m->cache_id = T.cache_ids[T.ncaches - 1 - i];
  req->body_case = PINPOOL__V1__REQUEST__BODY_CACHE_CLOSE;
  req->cache_close = m;
}

/* ---- many clients --------------------------------------------------------------------- */

/* n more idle clients past Hello, JOIN_BATCH at a time. */
static void join_clients(size_t n) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  struct timeval tv = {.tv_sec = RECV_TIMEOUT_S};
  uint8_t *hello;
  size_t hello_len;

  h.protocol_version = PROTOCOL_VERSION;
  h.client_name = "scale-client";
  req.id = 1;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  assert_int_equal(frame_pack(&req.base, FRAME_MAX_DEFAULT, &hello, &hello_len), 0);
  while (n > 0) {
    size_t b = n < JOIN_BATCH ? n : JOIN_BATCH, first = T.joined;
    for (size_t i = 0; i < b; i++) {
      int fd;
      while ((fd = wire_connect(T.d.sock, true)) < 0) {
        if (errno != EAGAIN) fail_msg("connect #%zu: %s", T.joined, strerror(errno));
        usleep(1000); /* the listen backlog is full: the daemon is busy accepting */
      }
      assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK), 0);
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      assert_int_equal(send(fd, hello, hello_len, MSG_NOSIGNAL), (ssize_t)hello_len);
      T.client_fds[T.joined++] = fd;
    }
    for (size_t i = first; i < T.joined; i++) {
      Pinpool__V1__Response *r = NULL;
      int memfd = -1, rc = frame_recv_response(T.client_fds[i], FRAME_MAX_DEFAULT, &r, &memfd);
      if (rc) fail_msg("client #%zu: no Welcome: %s", i, pp_strerror(rc));
      if (r->status != PINPOOL__V1__STATUS__OK)
        fail_msg("client #%zu: %s: %s", i, pp_status_name(-(int)r->status), r->message);
      if (memfd >= 0) close(memfd); /* ten thousand mappings of the region are not needed */
      frame_free_response(r);
    }
    n -= b;
  }
  free(hello);
}

/* ---- pinpoolctl ----------------------------------------------------------------------- */

typedef struct run {
  int status;
  char *out, *err;
  double wall_s, daemon_cpu_s;
} run_t;

static char *slurp(int fd) {
  off_t len = lseek(fd, 0, SEEK_END);
  char *buf = calloc(1, (size_t)(len > 0 ? len : 0) + 1);
  if (buf && len > 0 && pread(fd, buf, (size_t)len, 0) != len) buf[0] = '\0';
  close(fd);
  return buf;
}

/* pinpoolctl --socket SOCK args...; exit status 0 required. */
static void run_ctl(run_t *r, const char *a1, const char *a2) {
  char path[512];
  const char *argv[] = {path, "--socket", T.d.sock, a1, a2, NULL};
  int out = memfd_create("ctl-out", 0), err = memfd_create("ctl-err", 0), st;
  double t0, c0;
  pid_t pid;

  testd_bin(path, sizeof path, "pinpoolctl");
  assert_true(out >= 0 && err >= 0);
  c0 = cpu_s(T.d.pid);
  t0 = now_s();
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    execv(path, (char *const *)argv);
    _exit(127);
  }
  assert_int_equal(waitpid(pid, &st, 0), pid);
  r->wall_s = now_s() - t0;
  r->daemon_cpu_s = cpu_s(T.d.pid) - c0;
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r->out = slurp(out);
  r->err = slurp(err);
  assert_non_null(r->out);
  assert_non_null(r->err);
  if (r->status != 0)
    fprintf(stderr, "pinpoolctl %s %s: exit %d\n%s", a1, a2 ? a2 : "", r->status, r->err);
  assert_int_equal(r->status, 0);
  print_message("pinpoolctl %s %s: %.3f s wall, pinpoold %.3f s CPU\n", a1, a2 ? a2 : "",
                r->wall_s, r->daemon_cpu_s);
  /* Every list came whole: a note would say something was left out. */
  assert_null(strstr(r->err, "note from pinpoold"));
}

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
}

static json_object *jget(json_object *o, const char *key) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v)) fail_msg("JSON has no '%s'", key);
  return v;
}

/* ---- set-up --------------------------------------------------------------------------- */

static int group_setup(void **state) {
  const char *env = getenv("PP_STATS_SCALE");
  struct rlimit rl;
  char clients_arg[32];
  double t0;

  T.small = SCALE_SMALL_BUILD || (env && !strcmp(env, "small"));
  T.ncaches = T.small ? 1000 : 100000;
  T.nclients = T.small ? 200 : 10000;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < T.nclients + 256) {
    static char why[160];
    snprintf(why, sizeof why, "RLIMIT_NOFILE is %llu: %zu clients need %zu descriptors",
             (unsigned long long)rl.rlim_cur, T.nclients, T.nclients + 256);
    T.skip_why = why;
    return 0;
  }
  T.cache_ids = calloc(T.ncaches, sizeof *T.cache_ids);
  T.client_fds = calloc(T.nclients, sizeof *T.client_fds);
  if (!T.cache_ids || !T.client_fds) return -1;
  snprintf(clients_arg, sizeof clients_arg, "%zu", T.nclients + 16);
  if (testd_start(&T.d, "--max-caches", "0", "--max-caches-per-uid", "0", "--max-clients",
                  clients_arg, "--log-level", "warning", "--max-frame",
                  T.small ? "4096" : "65536", NULL))
    return -1;
  if (wire_open(&T.holder, T.d.sock, "scale-holder")) return -1;
  print_message("%zu caches, %zu clients%s\n", T.ncaches, T.nclients,
                T.small ? " (small: validators after every change, or PP_STATS_SCALE)" : "");
  t0 = now_s();
  pipeline(&T.holder, T.ncaches, make_open, on_open);
  print_message("opened %zu caches in %.2f s\n", T.ncaches, now_s() - t0);
  t0 = now_s();
  join_clients(T.nclients);
  print_message("connected %zu clients in %.2f s\n", T.nclients, now_s() - t0);
  return 0;
}

static int group_teardown(void **state) {
  int rc = 0;
  if (T.holder.fd >= 0 && T.cache_ids) {
    double t0 = now_s();
    pipeline(&T.holder, T.ncaches, make_close, NULL);
    print_message("closed %zu caches in %.2f s\n", T.ncaches, now_s() - t0);
  }
  for (size_t i = 0; i < T.joined; i++)
    close(T.client_fds[i]);
  wire_close(&T.holder);
  if (T.d.pid) rc = testd_stop(&T.d);
  free(T.cache_ids);
  free(T.client_fds);
  return rc;
}

#define NEED_DAEMON()                                                                          \
  do {                                                                                         \
    if (T.skip_why) {                                                                          \
      print_message("skipped: %s\n", T.skip_why);                                              \
      skip();                                                                                  \
    }                                                                                          \
  } while (0)

/* ---- the tests ------------------------------------------------------------------------ */

static void slabinfo_json_lists_every_cache_once_in_id_order(void **state) {
  json_object *o, *caches;
  run_t r;

  NEED_DAEMON();
  run_ctl(&r, "--json", "slabinfo");
  o = json_tokener_parse(r.out);
  assert_non_null(o);
  caches = jget(o, "caches");
  assert_int_equal(json_object_array_length(caches), T.ncaches);
  assert_int_equal(json_object_get_uint64(jget(o, "nr_caches")), T.ncaches);
  for (size_t i = 0; i < T.ncaches; i++) {
    json_object *c = json_object_array_get_idx(caches, i);
    char want[32];
    snprintf(want, sizeof want, "~%u/scale-%06zu", (unsigned)getuid(), i);
    assert_int_equal(json_object_get_uint64(jget(c, "cache_id")), T.cache_ids[i]);
    assert_string_equal(json_object_get_string(jget(c, "name")), want);
  }
  json_object_put(o);
  run_free(&r);
}

static void clients_json_lists_every_session_once(void **state) {
  json_object *o, *list;
  uint64_t prev = 0;
  size_t scale = 0, n;
  run_t r;

  NEED_DAEMON();
  run_ctl(&r, "--json", "clients");
  o = json_tokener_parse(r.out);
  assert_non_null(o);
  list = jget(o, "clients");
  n = json_object_array_length(list);
  /* The clients, the cache holder, and pinpoolctl itself. */
  assert_int_equal(n, T.nclients + 2);
  assert_int_equal(json_object_get_uint64(jget(o, "nr_clients")), n);
  for (size_t i = 0; i < n; i++) {
    json_object *c = json_object_array_get_idx(list, i);
    uint64_t sid = json_object_get_uint64(jget(c, "session_id"));
    assert_true(sid > prev); /* each once, in session order */
    prev = sid;
    scale += !strcmp(json_object_get_string(jget(c, "name")), "scale-client");
  }
  assert_int_equal(scale, T.nclients);
  json_object_put(o);
  run_free(&r);
}

static void status_counts_every_cache_and_client(void **state) {
  char want[64];
  run_t r;

  NEED_DAEMON();
  run_ctl(&r, "status", NULL);
  snprintf(want, sizeof want, "\ncaches                         %zu\n", T.ncaches);
  assert_non_null(strstr(r.out, want));
  snprintf(want, sizeof want, "\nclients                        %zu (max %zu)\n",
           T.nclients + 2, T.nclients + 16);
  if (!strstr(r.out, want)) fail_msg("no '%s' in:\n%s", want + 1, r.out);
  run_free(&r);
}

static void slabinfo_text_has_a_row_per_cache(void **state) {
  size_t rows = 0;
  run_t r;

  NEED_DAEMON();
  run_ctl(&r, "slabinfo", NULL);
  for (const char *p = strstr(r.out, "~"); p; p = strstr(p + 1, "\n~"))
    rows++;
  assert_int_equal(rows, T.ncaches);
  run_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(slabinfo_json_lists_every_cache_once_in_id_order),
      cmocka_unit_test(clients_json_lists_every_session_once),
      cmocka_unit_test(status_counts_every_cache_and_client),
      cmocka_unit_test(slabinfo_text_has_a_row_per_cache),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
