/*
 * test_ctl.c — pinpoolctl against a real pinpoold.
 *
 * Run twice by ctest: `test_ctl` on a region of 4 KiB pages, `test_ctl_huge` (argument
 * "2M") on one of 2 MiB hugepages, where the region's page (2 MiB) and the allocation
 * unit (4 KiB) differ and every figure derived from one must not be scaled by the other.
 * The hugepage run reserves 8 pages through tests/common/hugepages.h and skips every test,
 * saying why, when it cannot have them (not root, no pool, memory too fragmented).
 *
 * The group setup starts $PP_BIN_DIR/pinpoold on a socket in a fresh temporary folder
 * (tests/common/testd.h: 16 MiB region, mode 0666 so `nobody` can connect),
 * then this process connects as "ctl-holder" (wire.h) and takes known holdings: a 64 KiB
 * buffer published as "ctl-frames", a 256 KiB unnamed buffer, 100 objects of 192 bytes
 * from cache "ctl-objs", and 200 objects of cache "ctl-drop" that it frees again (their
 * slabs stay cached until `shrink`).  Each test runs $PP_BIN_DIR/pinpoolctl as a child, with
 * stdout and stderr captured, and checks that the output shows those holdings, that the JSON
 * parses and says the same as the text, that the figures add up (free blocks per order to
 * the free bytes, slab bytes to the slabs in the map, used + free + cached to the region),
 * and the exit codes: 1 daemon error (non-admin), 2 usage, 3 unreachable or not allowed
 * to connect.  `top` runs under a pty (forkpty) and must refresh and quit on q.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "ctl_view.h"
#include "hugepages.h"
#include "testd.h"
#include "wire.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define REGION (16 * MiB)
#define MIN_BLOCK 4096ull /* the allocation unit, whatever the page size */
#define OBJ_SIZE 192u
#define OBJ_COUNT 100u
#define DROP_COUNT 200u

static struct {
  uint64_t page_size;   /* the region's page size in this run */
  const char *skip_why; /* set when this run cannot have its daemon */
  testd_t d;
  wire_t holder; /* the connection that holds everything below */
  uint64_t frames_off, frames_size, big_off, big_size;
  uint32_t objs_cache, drop_cache;
  uint64_t obj_offs[OBJ_COUNT];
} T = {.page_size = 4096, .holder = {.fd = -1, .memfd = -1}};

/* Every test starts with this: the hugepage run skips, visibly, without its pages. */
#define NEED_DAEMON()                                                                          \
  do {                                                                                         \
    if (T.skip_why) {                                                                          \
      print_message("skipped: %s\n", T.skip_why);                                              \
      skip();                                                                                  \
    }                                                                                          \
  } while (0)

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- the holder ------------------------------------------------------------------------ */

static int holder_alloc(uint64_t size, const char *name, uint64_t *ret_off,
                        uint64_t *ret_size) {
  resp_t *r;
  int rc = wire_alloc(&T.holder, size, 0, name, &r);
  if (!rc) {
    *ret_off = r->buffer->offset;
    *ret_size = r->buffer->size;
  }
  frame_free_response(r);
  return rc;
}

/* All count objects or PP_ENOMEM. */
static int holder_cache_alloc(uint32_t id, uint32_t count, uint64_t *offs) {
  size_t n = 0;
  int rc = wire_cache_alloc(&T.holder, id, count, offs, &n);
  return rc ? rc : n == count ? 0 : PP_ENOMEM;
}

/* The holder's own view of one client's request count (it is root: admin). */
static int64_t requests_of_client_named(const char *name, pid_t pid) {
  resp_t *resp;
  int64_t n = -1;

  if (wire_stats(&T.holder, false, false, &resp) == 0)
    for (size_t i = 0; i < resp->stats->n_clients; i++) {
      const Pinpool__V1__ClientInfo *c = resp->stats->clients[i];
      if (c->pid == (uint32_t)pid && !strcmp(c->name, name)) n = (int64_t)c->requests;
    }
  frame_free_response(resp);
  return n;
}

/* ---- running pinpoolctl ---------------------------------------------------------------- */

typedef struct run {
  int status; /* exit status, or 128 + signal */
  char *out, *err;
} run_t;

static char *slurp(int fd) {
  off_t len = lseek(fd, 0, SEEK_END);
  char *buf = calloc(1, (size_t)(len > 0 ? len : 0) + 1);
  if (buf && len > 0 && pread(fd, buf, (size_t)len, 0) != len) buf[0] = '\0';
  close(fd);
  return buf;
}

/* Run pinpoolctl with the NULL-terminated arguments; as `nobody` when as_nobody. */
static void run_ctl(run_t *r, bool as_nobody, ...) {
  const char *argv[32];
  char path[512];
  int out = memfd_create("ctl-out", 0), err = memfd_create("ctl-err", 0), n = 1, st;
  va_list ap;
  pid_t pid;

  testd_bin(path, sizeof path, "pinpoolctl");
  argv[0] = path;
  va_start(ap, as_nobody);
  while (n < 31 && (argv[n] = va_arg(ap, const char *)))
    n++;
  va_end(ap);
  argv[n] = NULL;
  assert_true(out >= 0 && err >= 0);

  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(out, STDOUT_FILENO);
    dup2(err, STDERR_FILENO);
    if (as_nobody && (setgroups(0, NULL) || setgid(65534) || setuid(65534))) _exit(125);
    execv(path, (char *const *)argv);
    _exit(127);
  }
  assert_int_equal(waitpid(pid, &st, 0), pid);
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r->out = slurp(out);
  r->err = slurp(err);
  assert_non_null(r->out);
  assert_non_null(r->err);
}

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
}

/* Run and expect success; prints what it said otherwise. */
static void run_ok(run_t *r, ...) {
  const char *a[8] = {0};
  va_list ap;
  int n = 0;

  va_start(ap, r);
  while (n < 7 && (a[n] = va_arg(ap, const char *)))
    n++;
  va_end(ap);
  run_ctl(r, false, "--socket", T.d.sock, a[0], a[1], a[2], a[3], a[4], a[5], a[6], NULL);
  if (r->status != 0)
    fprintf(stderr, "pinpoolctl %s: exit %d\n%s%s", a[0], r->status, r->out, r->err);
  assert_int_equal(r->status, 0);
}

static json_object *run_json(const char *cmd, ...) {
  const char *a[4] = {0};
  json_object *o;
  va_list ap;
  run_t r;
  int n = 0;

  va_start(ap, cmd);
  while (n < 3 && (a[n] = va_arg(ap, const char *)))
    n++;
  va_end(ap);
  run_ok(&r, "--json", cmd, a[0], a[1], a[2], NULL);
  o = json_tokener_parse(r.out);
  if (!o) fprintf(stderr, "not JSON:\n%s\n", r.out);
  assert_non_null(o);
  assert_true(json_object_is_type(o, json_type_object));
  run_free(&r);
  return o;
}

static uint64_t jget_u64(json_object *o, const char *key) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v)) fail_msg("JSON has no '%s'", key);
  return json_object_get_uint64(v);
}

static json_object *jget(json_object *o, const char *key) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v)) fail_msg("JSON has no '%s'", key);
  return v;
}

/* The line of text that starts with (or, when anywhere, contains) needle; copied. */
static char *line_with(const char *text, const char *needle, bool anywhere) {
  for (const char *l = text; l && *l;) {
    const char *e = strchr(l, '\n');
    size_t len = e ? (size_t)(e - l) : strlen(l);
    char *line = strndup(l, len);
    if (anywhere ? strstr(line, needle) != NULL : strncmp(line, needle, strlen(needle)) == 0)
      return line;
    free(line);
    l = e ? e + 1 : NULL;
  }
  return NULL;
}

/* The "(N bytes)" figure on the line that starts with label. */
static uint64_t text_bytes(const char *text, const char *label) {
  char *line = line_with(text, label, false), *p;
  uint64_t v = 0;
  if (!line) fail_msg("no line '%s' in:\n%s", label, text);
  p = strchr(line, '(');
  if (!p || sscanf(p, "(%" SCNu64 " bytes)", &v) != 1) fail_msg("no byte count in '%s'", line);
  free(line);
  return v;
}

/* ---- setup ------------------------------------------------------------------------------ */

static int group_setup(void **state) {
  uint64_t drop[DROP_COUNT];
  const char *why = NULL;
  int rc;

  if (T.page_size == HP_SIZE) {
    if (!hp_make_available(REGION / HP_SIZE, &why)) {
      T.skip_why = why;
      return 0;
    }
    if (testd_start(&T.d, "--page-size", "2M", NULL)) return -1;
  } else if (testd_start(&T.d, NULL)) {
    return -1;
  }
  if ((rc = wire_open(&T.holder, T.d.sock, "ctl-holder")) ||
      (rc = holder_alloc(64 * KiB, "ctl-frames", &T.frames_off, &T.frames_size)) ||
      (rc = holder_alloc(256 * KiB, NULL, &T.big_off, &T.big_size)) ||
      (rc = wire_cache_open(&T.holder, "ctl-objs", OBJ_SIZE, 0, &T.objs_cache)) ||
      (rc = holder_cache_alloc(T.objs_cache, OBJ_COUNT, T.obj_offs)) ||
      (rc = wire_cache_open(&T.holder, "ctl-drop", 64, 0, &T.drop_cache)) ||
      (rc = holder_cache_alloc(T.drop_cache, DROP_COUNT, drop)) ||
      (rc = wire_cache_free(&T.holder, T.drop_cache, drop, DROP_COUNT, NULL, 0))) {
    fprintf(stderr, "holder set-up failed: %s\n", pp_strerror(rc));
    testd_dump_log(&T.d);
    wire_close(&T.holder);
    testd_stop(&T.d);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  if (T.skip_why) return 0;
  wire_close(&T.holder);
  return testd_stop(&T.d);
}

/* ---- the tests ------------------------------------------------------------------------- */

/* 192-byte objects: 21 to a 4 KiB slab, each charged 4096 / 21 = 195 bytes (the daemon
 * counts objects at their charge: stride plus a share of the slab's tail). */
#define OBJ_CHARGE (4096u / (4096u / OBJ_SIZE))

static uint64_t holder_bytes(void) {
  return T.frames_size + T.big_size + (uint64_t)OBJ_COUNT * OBJ_CHARGE;
}

/* Names in Stats are qualified by their scope: this process's uid. */
static const char *qualified(const char *name) {
  static char buf[4][96];
  static int next;
  char *b = buf[next++ % 4];
  snprintf(b, sizeof buf[0], "~%u/%s", (unsigned)getuid(), name);
  return b;
}

/* The text after a status label ("largest free block" ...), which is padded to one
 * column; NULL when the line is missing. */
static char *status_value(const char *text, const char *label) {
  char *line = line_with(text, label, false), *v;
  if (!line) return NULL;
  v = line + strlen(label);
  if (*v != ' ') { /* a longer label that starts with this one */
    free(line);
    return NULL;
  }
  while (*v == ' ')
    v++;
  memmove(line, v, strlen(v) + 1);
  return line;
}

static void status_shows_region_and_agrees_with_json(void **state) {
  char page[32], *v;
  json_object *j;
  run_t r;

  NEED_DAEMON();
  run_ok(&r, "status", NULL);
  v = status_value(r.out, "region");
  assert_non_null(v);
  assert_string_equal(v, "16 MiB (16777216 bytes)");
  free(v);
  v = status_value(r.out, "page size");
  assert_non_null(v);
  assert_string_equal(v, ctl_fmt_size(page, sizeof page, T.page_size));
  free(v);
  /* The unit every buffer is a power-of-two multiple of: 4 KiB on every region. */
  v = status_value(r.out, "allocation unit");
  if (!v) fail_msg("no 'allocation unit' in:\n%s", r.out);
  assert_string_equal(v, "4 KiB (4096 bytes)");
  free(v);
  v = status_value(r.out, "hugepages");
  assert_non_null(v);
  assert_string_equal(v, T.page_size > 4096 ? "yes" : "no");
  free(v);
  /* The holder's buffers and objects are used; nothing else is. */
  assert_int_equal(text_bytes(r.out, "used"), holder_bytes());
  /* Every byte of the region is used, free, or cached in a slab. */
  assert_int_equal(text_bytes(r.out, "used") + text_bytes(r.out, "free") +
                       text_bytes(r.out, "cached"),
                   REGION);

  j = run_json("status", NULL);
  assert_int_equal(jget_u64(j, "region_size"), REGION);
  assert_int_equal(jget_u64(j, "page_size"), T.page_size);
  assert_int_equal(jget_u64(j, "min_block"), MIN_BLOCK);
  assert_int_equal(jget_u64(j, "used_bytes"), text_bytes(r.out, "used"));
  assert_int_equal(jget_u64(j, "free_bytes"), text_bytes(r.out, "free"));
  assert_int_equal(jget_u64(j, "cached_bytes"), text_bytes(r.out, "cached"));
  assert_int_equal(jget_u64(j, "largest_free_block"), text_bytes(r.out, "largest free block"));
  assert_int_equal(jget_u64(j, "largest_free_contiguous"),
                   text_bytes(r.out, "largest free contiguous block"));
  assert_int_equal(jget_u64(j, "largest_contiguous_run"),
                   text_bytes(r.out, "longest physical run"));
  assert_int_equal(jget_u64(j, "nr_buffers"), 2);
  assert_true(jget_u64(j, "nr_caches") >= 2);
  json_object_put(j);
  run_free(&r);
}

/* The region's physical runs and the hugepage sort, in text and JSON alike: the histogram
 * counts every run, the longest is the longest physical run above, and 4 KiB pages are
 * never sorted. */
static void status_shows_the_physical_runs_and_the_hugepage_sort(void **state) {
  json_object *j, *runs, *buckets;
  uint64_t counted = 0;
  char *v;
  run_t r;

  NEED_DAEMON();
  run_ok(&r, "status", NULL);
  j = run_json("status", NULL);
  runs = jget(j, "runs");
  v = status_value(r.out, "hugepages sorted");
  if (!v) fail_msg("no 'hugepages sorted' in:\n%s", r.out);
  if (T.page_size == 4096) {
    assert_string_equal(json_object_get_string(jget(runs, "sort")), "not_huge");
    assert_string_equal(v, "not done: 4 KiB pages are placed by the kernel");
  }
  free(v);
  if (!json_object_get_boolean(jget(runs, "known"))) {
    print_message("physical addresses not readable: the runs are unknown\n");
    assert_non_null(strstr(r.out, "unknown (physical addresses not readable)"));
  } else {
    buckets = jget(runs, "buckets");
    for (size_t i = 0; i < json_object_array_length(buckets); i++)
      counted += json_object_get_uint64(json_object_array_get_idx(buckets, i));
    assert_int_equal(counted, jget_u64(runs, "nr_runs"));
    assert_int_equal(jget_u64(runs, "longest"), jget_u64(j, "largest_contiguous_run"));
    assert_int_equal(jget_u64(runs, "pages"), REGION / T.page_size);
    v = status_value(r.out, "physical runs");
    assert_non_null(v);
    assert_int_equal(strtoull(v, NULL, 10), jget_u64(runs, "nr_runs"));
    free(v);
    v = status_value(r.out, "runs by length (pages:runs)");
    assert_non_null(v);
    free(v);
  }
  json_object_put(j);
  run_free(&r);
}

/* What status calls the largest free contiguous block is what a CONTIGUOUS allocation
 * gets now: that size is granted, twice that is refused for want of contiguity (where the
 * region has a free block that large at all). */
static void status_largest_free_contiguous_block_is_what_a_contiguous_alloc_gets(void **state) {
  uint64_t lfc, largest;
  json_object *j;
  resp_t *resp;
  run_t r;
  int rc;

  NEED_DAEMON();
  j = run_json("status", NULL);
  if (!json_object_get_boolean(jget(j, "physical_addresses"))) {
    json_object_put(j);
    print_message("skipped: pinpoold knows no physical addresses (needs root)\n");
    skip();
  }
  json_object_put(j);
  run_ok(&r, "status", NULL);
  lfc = text_bytes(r.out, "largest free contiguous block");
  largest = text_bytes(r.out, "largest free block");
  run_free(&r);
  assert_true(lfc >= MIN_BLOCK && lfc <= largest);

  rc = wire_alloc(&T.holder, lfc, PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_CONTIGUOUS, NULL, &resp);
  if (rc != 0) fail_msg("CONTIGUOUS alloc of %" PRIu64 " bytes: %s", lfc, pp_err_name(rc));
  assert_true(resp->buffer->contiguous);
  assert_int_equal(wire_free(&T.holder, resp->buffer->handle), 0);
  frame_free_response(resp);

  if (2 * lfc <= largest) {
    rc = wire_alloc(&T.holder, 2 * lfc, PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_CONTIGUOUS, NULL,
                    &resp);
    frame_free_response(resp);
    if (rc != PP_ENOCONTIG)
      fail_msg("CONTIGUOUS alloc of %" PRIu64 " bytes: %s, not PP_ENOCONTIG", 2 * lfc,
               pp_err_name(rc));
  }
}

static void buddyinfo_free_counts_add_up_to_free_bytes(void **state) {
  char *heads, *sizes, *counts, *tok, *save = NULL, want[16];
  uint64_t sum = 0, free_bytes, jsum = 0;
  json_object *j, *orders;
  unsigned order = 0;
  run_t r;

  NEED_DAEMON();
  run_ok(&r, "buddyinfo", NULL);
  heads = line_with(r.out, "order ", false);
  sizes = line_with(r.out, "block size ", false);
  counts = line_with(r.out, "Region 0, zone pinpool", false);
  assert_non_null(heads);
  assert_non_null(sizes);
  assert_non_null(counts);
  /* Order k is 4 KiB << k, whatever the page size: 4K, 8K, ... up to the 16 MiB region. */
  for (tok = strtok_r(sizes + strlen("block size"), " ", &save); tok;
       tok = strtok_r(NULL, " ", &save), order++)
    assert_string_equal(tok, ctl_fmt_block(want, sizeof want, MIN_BLOCK << order));
  assert_int_equal(order, 13);
  order = 0;
  save = NULL;
  for (tok = strtok_r(counts + strlen("Region 0, zone pinpool"), " ", &save); tok;
       tok = strtok_r(NULL, " ", &save), order++)
    sum += strtoull(tok, NULL, 10) * (MIN_BLOCK << order);
  assert_int_equal(order, 13);
  free_bytes = text_bytes(r.out, "free bytes");
  assert_int_equal(sum, free_bytes);
  /* The holder's 320 KiB of buffers and its slabs are not free. */
  assert_true(free_bytes <= REGION - T.frames_size - T.big_size);
  assert_non_null(strstr(r.out, "frag index"));

  j = run_json("buddyinfo", NULL);
  assert_int_equal(jget_u64(j, "min_block"), MIN_BLOCK);
  assert_int_equal(jget_u64(j, "page_size"), T.page_size);
  orders = jget(j, "orders");
  assert_int_equal(json_object_array_length(orders), 13);
  for (size_t i = 0; i < json_object_array_length(orders); i++) {
    json_object *e = json_object_array_get_idx(orders, i);
    assert_int_equal(jget_u64(e, "order"), i);
    assert_int_equal(jget_u64(e, "block_size"), MIN_BLOCK << i);
    jsum += jget_u64(e, "free_blocks") * jget_u64(e, "block_size");
  }
  assert_int_equal(jsum, free_bytes);
  assert_int_equal(jget_u64(j, "free_bytes"), free_bytes);
  assert_int_equal(jget_u64(j, "largest_free_block"), text_bytes(r.out, "largest free block"));
  assert_int_equal(jget_u64(j, "largest_free_contiguous"),
                   text_bytes(r.out, "largest free contiguous block"));
  json_object_put(j);
  free(heads);
  free(sizes);
  free(counts);
  run_free(&r);
}

static void slabinfo_shows_caches_in_proc_shape_and_agrees_with_json(void **state) {
  uint64_t active, num, active_slabs, num_slabs, full, partial, empty, mags;
  unsigned objsize, perslab, pages;
  json_object *j, *caches;
  char name[64], *row;
  bool found = false;
  double waste;
  uint64_t cache_bytes = 0, map_slab_bytes = 0;
  run_t r;

  NEED_DAEMON();
  run_ok(&r, "slabinfo", NULL);
  assert_non_null(strstr(r.out, "# name            <active_objs> <num_objs> <objsize> "
                                "<objperslab> <pagesperslab> : slabdata <active_slabs> "
                                "<num_slabs>"));
  row = line_with(r.out, qualified("ctl-objs "), false);
  assert_non_null(row);
  assert_int_equal(sscanf(row,
                          "%63s %" SCNu64 " %" SCNu64 " %u %u %u : slabdata %" SCNu64
                          " %" SCNu64 " : pinpool %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                          " %lf%%",
                          name, &active, &num, &objsize, &perslab, &pages, &active_slabs,
                          &num_slabs, &full, &partial, &empty, &mags, &waste),
                   13);
  assert_int_equal(objsize, OBJ_SIZE);
  assert_true(active >= OBJ_COUNT);
  assert_true(num >= active);
  assert_int_equal(num, num_slabs * perslab);
  assert_int_equal(full + partial + empty, num_slabs);

  j = run_json("slabinfo", NULL);
  caches = jget(j, "caches");
  for (size_t i = 0; i < json_object_array_length(caches); i++) {
    json_object *e = json_object_array_get_idx(caches, i);
    if (strcmp(json_object_get_string(jget(e, "name")), qualified("ctl-objs"))) continue;
    found = true;
    assert_int_equal(jget_u64(e, "active_objs"), active);
    assert_int_equal(jget_u64(e, "num_objs"), num);
    assert_int_equal(jget_u64(e, "object_size"), objsize);
    assert_int_equal(jget_u64(e, "objs_per_slab"), perslab);
    assert_int_equal(jget_u64(e, "pages_per_slab"), pages);
    assert_int_equal(jget_u64(e, "num_slabs"), num_slabs);
    assert_int_equal(jget_u64(e, "full_slabs"), full);
    assert_int_equal(jget_u64(e, "partial_slabs"), partial);
    assert_int_equal(jget_u64(e, "empty_slabs"), empty);
    assert_int_equal(jget_u64(e, "objs_in_magazines"), mags);
    assert_int_equal(jget_u64(e, "cache_id"), T.objs_cache);
  }
  assert_true(found);
  /* Slab bytes: the daemon's figure, pages_per_slab counting 4 KiB units, and what each
   * cache's slabs occupy adds up to the slab blocks of the region's map. */
  for (size_t i = 0; i < json_object_array_length(caches); i++) {
    json_object *e = json_object_array_get_idx(caches, i);
    uint64_t slab = jget_u64(e, "slab_bytes");
    assert_int_equal(slab, jget_u64(e, "pages_per_slab") * MIN_BLOCK);
    assert_true(slab >= jget_u64(e, "objs_per_slab") * jget_u64(e, "object_size"));
    assert_int_equal(jget_u64(e, "cache_bytes"), jget_u64(e, "num_slabs") * slab);
    cache_bytes += jget_u64(e, "cache_bytes");
  }
  json_object_put(j);
  j = run_json("map", NULL);
  caches = jget(j, "blocks");
  for (size_t i = 0; i < json_object_array_length(caches); i++) {
    json_object *b = json_object_array_get_idx(caches, i);
    if (!strcmp(json_object_get_string(jget(b, "kind")), "slab"))
      map_slab_bytes += jget_u64(b, "size");
  }
  assert_int_equal(cache_bytes, map_slab_bytes);
  free(row);
  row = line_with(r.out, qualified("ctl-drop "), false);
  assert_non_null(row);
  json_object_put(j);
  free(row);
  run_free(&r);
}

static void clients_lists_holder_by_pid_with_bytes_held(void **state) {
  char pid[16], size[32], *row;
  json_object *j, *list;
  bool found = false;
  run_t r;

  NEED_DAEMON();
  snprintf(pid, sizeof pid, " %d ", (int)getpid());
  ctl_fmt_size(size, sizeof size, holder_bytes());
  run_ok(&r, "clients", NULL);
  row = line_with(r.out, "ctl-holder", true);
  if (!row) fail_msg("no ctl-holder in:\n%s", r.out);
  assert_non_null(strstr(row, pid));
  assert_non_null(strstr(row, size));
  /* pinpoolctl's own session is listed too. */
  assert_non_null(strstr(r.out, "pinpoolctl"));

  j = run_json("clients", NULL);
  list = jget(j, "clients");
  for (size_t i = 0; i < json_object_array_length(list); i++) {
    json_object *e = json_object_array_get_idx(list, i);
    if (jget_u64(e, "pid") != (uint64_t)getpid()) continue;
    found = true;
    assert_string_equal(json_object_get_string(jget(e, "name")), "ctl-holder");
    assert_int_equal(jget_u64(e, "bytes_held"), holder_bytes());
    /* Its uid pays for what it holds, and one slab per cache it holds objects in. */
    assert_true(jget_u64(e, "bytes_charged") > holder_bytes());
    assert_int_equal(jget_u64(e, "buffers"), 2);
    assert_int_equal(jget_u64(e, "objects"), OBJ_COUNT);
    assert_int_equal(jget_u64(e, "uid"), getuid());
  }
  assert_true(found);
  json_object_put(j);
  free(row);
  run_free(&r);
}

static void buffers_lists_holdings_and_filters_by_client_and_name(void **state) {
  char pid[16], off[32], *row;
  json_object *j, *list;
  run_t r;

  NEED_DAEMON();
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  snprintf(off, sizeof off, "0x%012" PRIx64, T.frames_off);
  run_ok(&r, "buffers", NULL);
  row = line_with(r.out, "ctl-frames", true);
  if (!row) fail_msg("no ctl-frames in:\n%s", r.out);
  assert_non_null(strstr(row, off));
  assert_non_null(strstr(row, "64 KiB"));
  assert_non_null(strstr(row, pid));
  free(row);
  assert_non_null(strstr(r.out, "256 KiB"));
  run_free(&r);

  run_ok(&r, "buffers", "--name", qualified("ctl-frames"), NULL);
  assert_non_null(strstr(r.out, "ctl-frames"));
  assert_null(strstr(r.out, "256 KiB"));
  run_free(&r);
  /* Unqualified, the name matches in every scope: here, the one buffer. */
  run_ok(&r, "buffers", "--name", "ctl-frames", NULL);
  assert_non_null(strstr(r.out, qualified("ctl-frames")));
  assert_null(strstr(r.out, "256 KiB"));
  run_free(&r);
  run_ok(&r, "buffers", "--name", "~4242/ctl-frames", NULL); /* another uid's: none */
  assert_null(strstr(r.out, "ctl-frames"));
  run_free(&r);

  run_ok(&r, "buffers", "--client", "1", NULL); /* init holds nothing here */
  assert_null(strstr(r.out, "KiB"));
  run_free(&r);

  j = run_json("buffers", "--client", pid, NULL);
  list = jget(j, "buffers");
  assert_int_equal(json_object_array_length(list), 2);
  for (size_t i = 0; i < 2; i++) {
    json_object *e = json_object_array_get_idx(list, i), *pids = jget(e, "holder_pids");
    uint64_t o = jget_u64(e, "offset");
    assert_true(o == T.frames_off || o == T.big_off);
    assert_int_equal(jget_u64(e, "size"), o == T.frames_off ? T.frames_size : T.big_size);
    assert_int_equal(json_object_array_length(pids), 1);
    assert_int_equal(json_object_get_uint64(json_object_array_get_idx(pids, 0)), getpid());
    assert_int_equal(jget_u64(e, "charged_uid"), getuid());
    assert_int_equal(jget_u64(e, "nr_holders"), 1);
    assert_int_equal(
        json_object_get_uint64(json_object_array_get_idx(jget(e, "holder_sessions"), 0)),
        T.holder.session_id);
  }
  json_object_put(j);
}

static void map_draws_buffers_and_slabs_at_their_offsets(void **state) {
  char cells[8192] = "", *line, *save = NULL, *text;
  uint64_t cell = 0, covered = 0, next = 0;
  json_object *j, *rows, *blocks;
  bool frames_block = false, slab_visible = false;
  size_t ncells = 0;
  run_t r;

  NEED_DAEMON();
  run_ok(&r, "map", NULL);
  cell = text_bytes(r.out, "region 16 MiB");
  assert_true(cell >= 4096 && (cell & (cell - 1)) == 0);
  text = strdup(r.out);
  for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    assert_true(strlen(line) <= 80); /* stdout is not a terminal: 80 columns */
    if (!strncmp(line, "0x", 2)) {
      char *c = strchr(line, ' ') + 1;
      assert_true(ncells + strlen(c) < sizeof cells);
      strcat(cells, c);
      ncells += strlen(c);
    }
  }
  free(text);
  assert_int_equal(ncells, REGION / cell);
  /* Cells are sized to the terminal, not to the page: 16 KiB cells at 80 columns, so the
   * 64 KiB buffer covers whole cells on a region of 2 MiB pages too. */
  assert_int_equal(cell, 16 * KiB);
  for (uint64_t o = T.frames_off; o < T.frames_off + T.frames_size; o += cell)
    assert_int_equal(cells[o / cell], 'B');
  for (size_t i = 0; i < ncells; i++)
    if (strchr("Sm:", cells[i])) slab_visible = true;
  assert_true(slab_visible);
  assert_non_null(strstr(r.out, "legend:"));

  j = run_json("map", NULL);
  assert_int_equal(jget_u64(j, "cell_bytes"), cell);
  rows = jget(j, "rows");
  text = calloc(1, ncells + 1);
  for (size_t i = 0; i < json_object_array_length(rows); i++)
    strcat(text, json_object_get_string(jget(json_object_array_get_idx(rows, i), "cells")));
  assert_string_equal(text, cells);
  free(text);
  /* The blocks tile the region in offset order; the buffer and the objects are in them. */
  blocks = jget(j, "blocks");
  for (size_t i = 0; i < json_object_array_length(blocks); i++) {
    json_object *b = json_object_array_get_idx(blocks, i);
    uint64_t off = jget_u64(b, "offset"), size = jget_u64(b, "size");
    const char *kind = json_object_get_string(jget(b, "kind"));
    assert_int_equal(off, next);
    next = off + size;
    if (off == T.frames_off) {
      assert_string_equal(kind, "buffer");
      assert_int_equal(size, T.frames_size);
      frames_block = true;
    }
    if (!strcmp(kind, "slab"))
      for (unsigned k = 0; k < OBJ_COUNT; k++)
        if (T.obj_offs[k] >= off && T.obj_offs[k] < off + size) covered++;
  }
  assert_int_equal(next, 16 * 1024 * KiB);
  assert_true(frames_block);
  assert_int_equal(covered, OBJ_COUNT);
  json_object_put(j);
  run_free(&r);
}

static uint64_t slabs_of(json_object *slabinfo, const char *name, uint64_t *ret_total) {
  json_object *caches = jget(slabinfo, "caches");
  uint64_t n = 0, total = 0;
  for (size_t i = 0; i < json_object_array_length(caches); i++) {
    json_object *e = json_object_array_get_idx(caches, i);
    total += jget_u64(e, "num_slabs");
    if (!strcmp(json_object_get_string(jget(e, "name")), name)) n = jget_u64(e, "num_slabs");
  }
  *ret_total = total;
  return n;
}

/* Bytes all caches' slabs occupy, by the slab size the daemon reports for each. */
static uint64_t slab_bytes_total(json_object *slabinfo) {
  json_object *caches = jget(slabinfo, "caches");
  uint64_t total = 0;
  for (size_t i = 0; i < json_object_array_length(caches); i++) {
    json_object *e = json_object_array_get_idx(caches, i);
    total += jget_u64(e, "num_slabs") * jget_u64(e, "slab_bytes");
  }
  return total;
}

static void shrink_releases_the_slabs_nobody_uses(void **state) {
  uint64_t total_before, total_after, drop_before, released = 0, bytes = 0;
  uint64_t free_before, free_after;
  json_object *before, *after, *st, *again;
  char *line;
  run_t r;

  NEED_DAEMON();
  before = run_json("slabinfo", NULL);
  st = run_json("status", NULL);
  free_before = jget_u64(st, "free_bytes");
  json_object_put(st);
  drop_before = slabs_of(before, qualified("ctl-drop"), &total_before);
  assert_true(drop_before > 0); /* freed objects leave their slabs cached until shrink */

  run_ok(&r, "shrink", NULL);
  line = line_with(r.out, "shrink: released ", false);
  if (!line) fail_msg("unexpected shrink output:\n%s", r.out);
  assert_int_equal(sscanf(line, "shrink: released %" SCNu64 " slab", &released), 1);
  bytes = text_bytes(line, "shrink:");
  free(line);
  run_free(&r);

  after = run_json("slabinfo", NULL);
  st = run_json("status", NULL);
  free_after = jget_u64(st, "free_bytes");
  json_object_put(st);
  /* Every slab of the emptied cache went, and the count printed is exactly what left. */
  assert_int_equal(slabs_of(after, qualified("ctl-drop"), &total_after), 0);
  if (released != total_before - total_after || released < drop_before)
    fprintf(stderr,
            "shrink said %" PRIu64 " slabs; slabs went %" PRIu64 " -> %" PRIu64
            " (ctl-drop had %" PRIu64 ")\n",
            released, total_before, total_after, drop_before);
  assert_true(released >= drop_before);
  assert_int_equal(released, total_before - total_after);
  assert_int_equal(free_after - free_before, bytes);
  assert_int_equal(bytes, slab_bytes_total(before) - slab_bytes_total(after));
  /* The holder's objects keep their slabs. */
  assert_true(slabs_of(after, qualified("ctl-objs"), &total_after) > 0);

  again = run_json("shrink", NULL);
  assert_int_equal(jget_u64(again, "slabs_released"), 0);
  assert_int_equal(jget_u64(again, "bytes_released"), 0);
  json_object_put(again);
  json_object_put(before);
  json_object_put(after);
}

static void non_admin_is_refused_with_a_clear_message(void **state) {
  const char *cmds[] = {"status", "slabinfo", "shrink"};
  run_t r;

  NEED_DAEMON();
  if (geteuid() != 0) {
    fprintf(stderr, "skipped: becoming nobody (uid 65534) needs root\n");
    skip();
  }
  for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    run_ctl(&r, true, "--socket", T.d.sock, cmds[i], NULL);
    if (r.status != 1)
      fprintf(stderr, "%s as nobody: exit %d\n%s%s", cmds[i], r.status, r.out, r.err);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "PERMISSION_DENIED"));
    assert_non_null(strstr(r.err, "needs root or membership in pinpoold's admin group"));
    assert_string_equal(r.out, "");
    run_free(&r);
  }
}

static void unreachable_socket_exits_3_naming_the_path(void **state) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  char missing[96], dead[96];
  int fd;
  run_t r;

  NEED_DAEMON();
  snprintf(missing, sizeof missing, "%s/no-such.sock", T.d.dir);
  run_ctl(&r, false, "--socket", missing, "status", NULL);
  assert_int_equal(r.status, 3);
  assert_non_null(strstr(r.err, missing));
  assert_non_null(strstr(r.err, "No such file or directory"));
  assert_non_null(strstr(r.err, "is pinpoold running?"));
  assert_string_equal(r.out, "");
  run_free(&r);

  /* A socket file nobody listens on: connection refused. */
  snprintf(dead, sizeof dead, "%s/dead.sock", T.d.dir);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", dead);
  fd = socket(AF_UNIX, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  run_ctl(&r, false, "--socket", dead, "--json", "buddyinfo", NULL);
  assert_int_equal(r.status, 3);
  assert_non_null(strstr(r.err, dead));
  assert_non_null(strstr(r.err, "Connection refused"));
  assert_non_null(strstr(r.err, "is pinpoold running?"));
  run_free(&r);
  close(fd);
  unlink(dead);

  /* $PINPOOL_SOCKET is the default when --socket is absent. */
  setenv("PINPOOL_SOCKET", missing, 1);
  run_ctl(&r, false, "clients", NULL);
  unsetenv("PINPOOL_SOCKET");
  assert_int_equal(r.status, 3);
  assert_non_null(strstr(r.err, missing));
  run_free(&r);
}

/* A user outside the socket's group is told so — the socket, its group, how to join it —
 * not that the daemon may not be running. */
static void not_allowed_to_connect_names_the_sockets_group_and_exits_3(void **state) {
  struct group *gr;
  struct stat st;
  char want[128];
  testd_t d;
  run_t r;

  NEED_DAEMON();
  if (geteuid() != 0) {
    print_message("skipped: becoming nobody (uid 65534) needs root\n");
    skip();
  }
  assert_int_equal(testd_start(&d, "--socket-mode", "0660", NULL), 0);
  assert_int_equal(stat(d.sock, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0660);
  gr = getgrgid(st.st_gid);
  assert_non_null(gr);

  run_ctl(&r, true, "--socket", d.sock, "status", NULL);
  if (r.status != 3) fprintf(stderr, "exit %d\n%s%s", r.status, r.out, r.err);
  assert_int_equal(r.status, 3);
  assert_string_equal(r.out, "");
  assert_non_null(strstr(r.err, "not allowed to connect"));
  assert_non_null(strstr(r.err, d.sock));
  snprintf(want, sizeof want, "belongs to group '%s' (mode 0660)", gr->gr_name);
  if (!strstr(r.err, want)) fail_msg("no \"%s\" in:\n%s", want, r.err);
  snprintf(want, sizeof want, "usermod -aG %s ", gr->gr_name);
  assert_non_null(strstr(r.err, want));
  assert_null(strstr(r.err, "is pinpoold running"));
  run_free(&r);

  /* The same for --json: the message is the same, stdout stays empty. */
  run_ctl(&r, true, "--socket", d.sock, "--json", "buddyinfo", NULL);
  assert_int_equal(r.status, 3);
  assert_string_equal(r.out, "");
  assert_non_null(strstr(r.err, "join the group"));
  run_free(&r);
  assert_int_equal(testd_stop(&d), 0);
}

static void usage_errors_exit_2(void **state) {
  static const char *const bad[][4] = {
      {NULL},                              /* no command */
      {"frobnicate", NULL},                /* unknown command */
      {"status", "extra", NULL},           /* stray argument */
      {"--bogus", "status", NULL},         /* unknown option */
      {"status", "--client", "42", NULL},  /* --client belongs to buffers */
      {"buffers", "--client", "x1", NULL}, /* not a pid */
      {"buffers", "--name", NULL},         /* missing value */
      {"top", "--json", NULL},             /* top has no JSON */
  };
  run_t r;

  NEED_DAEMON();
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    run_ctl(&r, false, "--socket", T.d.sock, bad[i][0], bad[i][1], bad[i][2], NULL);
    if (r.status != 2)
      fprintf(stderr, "case %zu (%s): exit %d\n%s", i, bad[i][0] ? bad[i][0] : "-", r.status,
              r.err);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "pinpoolctl: "));
    run_free(&r);
  }
  /* top on something that is not a terminal is a usage error too, and says why. */
  run_ctl(&r, false, "--socket", T.d.sock, "top", NULL);
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "top needs a terminal"));
  run_free(&r);

  run_ctl(&r, false, "--help", NULL);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "usage: pinpoolctl"));
  run_free(&r);
}

/* A daemon of its own with a second pool: `pools` lists both, `--pool` chooses what the
 * views describe, and a pool that does not exist is the daemon's answer (exit 1). */
static void pools_lists_every_pool_and_pool_selects_what_the_views_describe(void **state) {
  char dir[] = "/tmp/pp-ctlpools-XXXXXX", conf[64], text[160], cmd[96];
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc m = PINPOOL__V1__ALLOC__INIT;
  json_object *o, *arr;
  testd_t d;
  wire_t w;
  resp_t *resp;
  run_t r;
  char *line;
  int fd = -1;
  FILE *f;

  (void)state;
  assert_non_null(mkdtemp(dir));
  chmod(dir, 0755);
  snprintf(conf, sizeof conf, "%s/pools.conf", dir);
  snprintf(text, sizeof text,
           "[pool cam]\nsize = 2M\npage-size = 4K\nquota = 1M\nwriters = %u\n",
           (unsigned)getuid());
  f = fopen(conf, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(testd_start(&d, "--config", conf, NULL), 0);
  assert_int_equal(wire_open(&w, d.sock, "ctl-pools"), 0);
  assert_int_equal(wire_attach_pool(&w, "cam", NULL, &fd), 0);
  assert_true(fd >= 0);
  close(fd);
  m.size = 64 * KiB;
  m.name = (char *)"shot";
  m.pool = 1;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &m;
  resp = wire_call(&w, &req);
  assert_int_equal(wire_rc(resp), 0);
  assert_int_equal(resp->buffer->handle >> 48, 1);
  frame_free_response(resp);

  run_ctl(&r, false, "--socket", d.sock, "pools", NULL);
  assert_int_equal(r.status, 0);
  line = line_with(r.out, "cam ", false);
  assert_non_null(line);
  assert_non_null(strstr(line, "2 MiB"));
  assert_non_null(strstr(line, "64 KiB"));
  free(line);
  line = line_with(r.out, "default ", false);
  assert_non_null(line);
  free(line);
  run_free(&r);

  run_ctl(&r, false, "--socket", d.sock, "--pool", "cam", "status", NULL);
  assert_int_equal(r.status, 0);
  assert_int_equal(text_bytes(r.out, "region"), 2 * MiB);
  assert_int_equal(text_bytes(r.out, "used"), 64 * KiB);
  line = line_with(r.out, "pool ", false);
  assert_non_null(line);
  assert_non_null(strstr(line, "cam (id 1"));
  free(line);
  run_free(&r);
  run_ctl(&r, false, "--socket", d.sock, "--pool", "cam", "buffers", NULL);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "shot"));
  run_free(&r);
  /* The pool's clients are the sessions attached to it: not pinpoolctl's own. */
  run_ctl(&r, false, "--socket", d.sock, "--pool", "cam", "--json", "clients", NULL);
  assert_int_equal(r.status, 0);
  o = json_tokener_parse(r.out);
  assert_non_null(o);
  arr = jget(o, "clients");
  assert_int_equal(json_object_array_length(arr), 1);
  assert_string_equal(json_object_get_string(jget(json_object_array_get_idx(arr, 0), "name")),
                      "ctl-pools");
  json_object_put(o);
  run_free(&r);
  /* Without --pool: the default pool, where nothing is held. */
  run_ctl(&r, false, "--socket", d.sock, "status", NULL);
  assert_int_equal(r.status, 0);
  assert_int_equal(text_bytes(r.out, "region"), REGION);
  assert_int_equal(text_bytes(r.out, "used"), 0);
  run_free(&r);
  run_ctl(&r, false, "--socket", d.sock, "--pool", "default", "buffers", NULL);
  assert_int_equal(r.status, 0);
  assert_null(strstr(r.out, "shot"));
  run_free(&r);

  run_ctl(&r, false, "--socket", d.sock, "--json", "pools", NULL);
  assert_int_equal(r.status, 0);
  o = json_tokener_parse(r.out);
  assert_non_null(o);
  arr = jget(o, "pools");
  assert_int_equal(json_object_array_length(arr), 2);
  assert_int_equal(jget_u64(json_object_array_get_idx(arr, 1), "quota"), MiB);
  assert_int_equal(jget_u64(json_object_array_get_idx(arr, 1), "used_bytes"), 64 * KiB);
  json_object_put(o);
  run_free(&r);

  run_ctl(&r, false, "--socket", d.sock, "--pool", "nope", "status", NULL);
  assert_int_equal(r.status, 1);
  assert_non_null(strstr(r.err, "no pool named 'nope'"));
  run_free(&r);
  run_ctl(&r, false, "--socket", d.sock, "--pool", "cam", "shrink", NULL);
  assert_int_equal(r.status, 2);
  run_free(&r);

  wire_close(&w);
  assert_int_equal(testd_stop(&d), 0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void top_refreshes_every_second_and_quits_on_q(void **state) {
  struct winsize ws = {.ws_row = 30, .ws_col = 110};
  char path[512], buf[4096], *seen = calloc(1, 1);
  size_t seen_len = 0;
  int master, st = 0;
  int64_t reqs = -1;
  uint64_t deadline;
  pid_t pid;

  NEED_DAEMON();
  testd_bin(path, sizeof path, "pinpoolctl");
  pid = forkpty(&master, NULL, NULL, &ws);
  assert_true(pid >= 0);
  if (pid == 0) {
    setenv("TERM", "xterm", 1);
    execl(path, path, "--socket", T.d.sock, "top", (char *)NULL);
    _exit(127);
  }
  fcntl(master, F_SETFL, O_NONBLOCK);

  /* Keep reading the screen (a full pty would block it) until the daemon has served the
   * Hello and at least three StatsRequests: two refreshes after the first draw. */
  deadline = now_ms() + 15000;
  while (now_ms() < deadline) {
    struct pollfd p = {.fd = master, .events = POLLIN};
    ssize_t n;
    if (poll(&p, 1, 100) > 0 && (n = read(master, buf, sizeof buf)) > 0) {
      seen = realloc(seen, seen_len + (size_t)n + 1);
      memcpy(seen + seen_len, buf, (size_t)n);
      seen[seen_len += (size_t)n] = '\0';
    }
    reqs = requests_of_client_named("pinpoolctl", pid);
    if (reqs >= 4) break;
  }
  assert_true(reqs >= 4);
  assert_int_equal(write(master, "q", 1), 1);

  deadline = now_ms() + 5000;
  while (now_ms() < deadline && waitpid(pid, &st, WNOHANG) == 0) {
    struct pollfd p = {.fd = master, .events = POLLIN};
    ssize_t n;
    if (poll(&p, 1, 50) > 0 && (n = read(master, buf, sizeof buf)) > 0) {
      seen = realloc(seen, seen_len + (size_t)n + 1);
      memcpy(seen + seen_len, buf, (size_t)n);
      seen[seen_len += (size_t)n] = '\0';
    }
  }
  if (waitpid(pid, &st, WNOHANG) == 0 && kill(pid, 0) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    fail_msg("top did not quit on 'q'");
  }
  close(master);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fprintf(stderr, "top ended with status 0x%x; screen:\n%s\n", st, seen);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  /* Totals on top, the caches and the clients below. */
  assert_non_null(strstr(seen, "pinpool top"));
  assert_non_null(strstr(seen, "ctl-objs"));
  assert_non_null(strstr(seen, "ctl-holder"));
  free(seen);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(status_shows_region_and_agrees_with_json),
      cmocka_unit_test(status_shows_the_physical_runs_and_the_hugepage_sort),
      cmocka_unit_test(status_largest_free_contiguous_block_is_what_a_contiguous_alloc_gets),
      cmocka_unit_test(buddyinfo_free_counts_add_up_to_free_bytes),
      cmocka_unit_test(slabinfo_shows_caches_in_proc_shape_and_agrees_with_json),
      cmocka_unit_test(clients_lists_holder_by_pid_with_bytes_held),
      cmocka_unit_test(buffers_lists_holdings_and_filters_by_client_and_name),
      cmocka_unit_test(map_draws_buffers_and_slabs_at_their_offsets),
      cmocka_unit_test(top_refreshes_every_second_and_quits_on_q),
      cmocka_unit_test(shrink_releases_the_slabs_nobody_uses),
      cmocka_unit_test(non_admin_is_refused_with_a_clear_message),
      cmocka_unit_test(unreachable_socket_exits_3_naming_the_path),
      cmocka_unit_test(not_allowed_to_connect_names_the_sockets_group_and_exits_3),
      cmocka_unit_test(usage_errors_exit_2),
      cmocka_unit_test(pools_lists_every_pool_and_pool_selects_what_the_views_describe),
  };
  if (argc > 1 && !strcmp(argv[1], "2M")) {
    T.page_size = HP_SIZE;
    return cmocka_run_group_tests_name("test_ctl on 2 MiB hugepages", tests, group_setup,
                                       group_teardown);
  }
  return cmocka_run_group_tests_name("test_ctl on 4 KiB pages", tests, group_setup,
                                     group_teardown);
}
