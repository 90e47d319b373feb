/*
 * test_holes.c — clients that punch holes in the region's memfd, against a real pinpoold.
 *
 * Every client receives the region's memfd read-write in its Welcome, and no seal forbids
 * fallocate(PUNCH_HOLE).  Here a client running as uid 65534 takes the memfd from its
 * Welcome (wire.h) and punches the whole region, or just the pages of another client's
 * buffers, while this process — root — is the good client that must keep being served and
 * the operator that reads Stats and the daemon's log.  What must hold:
 *   - the daemon survives, and a good client keeps being served;
 *   - it reports: err lines naming each buffer hit (handle, offset, name) with its holders'
 *     session ids, pids and uids, and Stats flags (BufferInfo.damaged, ClientInfo.
 *     damaged_buffers, the totals);
 *   - it repairs, and the physical addresses it reports for every buffer and segment
 *     afterwards agree with this process's own /proc/self/pagemap, none of them an address
 *     of a page that was punched;
 *   - it never hands out a page it lost: with the hugepage pool taken by another process,
 *     allocations (PP_ZERO included: the old SIGBUS) fail cleanly, the lost pages sit in
 *     quarantine, and once the pool has pages again everything comes back;
 *   - its periodic scan finds a hole that no request touches.
 * The daemon's own scan is off (--scan-interval 0) where a test wants the checks of
 * alloc and lookup alone, and short where it waits for the scan; waiting is bounded by
 * 30 s only to turn a failure into a message, never to measure speed.
 *
 * Needs root (uid 65534, physical addresses, the hugepage pool); each test skips, saying
 * why, when it cannot have what it needs.  The 2 MiB cases size the pool through
 * tests/common/hugepages.h, which puts it back at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "hugepages.h"
#include "testd.h"
#include "wire.h"

#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)
#define HUGE_2M (2 * MIB)
#define NOBODY 65534u
#define PP_ZERO_FLAG 0x2u
#define WAIT_MS 30000

typedef struct range {
  uint64_t off, len;
} range_t;

static void need_root(void) {
  if (geteuid() != 0) {
    print_message("skipped: becoming uid 65534 and reading physical addresses needs root\n");
    skip();
  }
}

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* As uid 65534, the way any client would: connect, take the memfd its Welcome carries,
 * punch the ranges, leave. */
static void punch_as_nobody(const testd_t *d, const range_t *v, size_t n) {
  int status;
  pid_t pid;

  fflush(NULL);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    wire_t c;
    if (setgroups(0, NULL) || setgid(NOBODY) || setuid(NOBODY)) _exit(2);
    if (wire_open(&c, d->sock, "puncher")) _exit(3);
    for (size_t i = 0; i < n; i++)
      if (fallocate(c.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)v[i].off,
                    (off_t)v[i].len) != 0)
        _exit(4);
    wire_close(&c);
    _exit(0);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the uid 65534 client could not punch (status 0x%x)", status);
}

/* Does the daemon's log hold this text? */
static bool log_has(const testd_t *d, const char *text) {
  FILE *f = fopen(d->log, "r");
  char *buf = NULL;
  size_t cap = 0, n = 0, got;
  bool found;
  if (!f) return false;
  do {
    if (n + 65536 + 1 > cap) {
      cap = cap ? cap * 2 : 1 << 20;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
  } while (got > 0);
  fclose(f);
  buf[n] = '\0';
  found = strstr(buf, text) != NULL;
  free(buf);
  return found;
}

static void expect_log(const testd_t *d, const char *text) {
  if (!log_has(d, text)) {
    testd_dump_log(d);
    fail_msg("the daemon's log lacks \"%s\"", text);
  }
}

/* ---- physical addresses ------------------------------------------------------------- */

/* The physical address of the byte at addr from this process's pagemap (the page is
 * faulted in first: a shared mapping fills lazily); 0 when hidden or absent. */
static uint64_t pagemap_phys(const void *addr) {
  uint64_t entry = 0, va = (uint64_t)(uintptr_t)addr;
  long ps = sysconf(_SC_PAGESIZE);
  int fd;
  (void)*(const volatile uint8_t *)addr;
  fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) return 0;
  if (pread(fd, &entry, sizeof entry, (off_t)(va / (uint64_t)ps * sizeof entry)) !=
      sizeof entry)
    entry = 0;
  close(fd);
  if (!(entry & (1ull << 63))) return 0;
  entry &= (1ull << 55) - 1;
  return entry ? entry * (uint64_t)ps + va % (uint64_t)ps : 0;
}

/* Call before any punch: it touches the region's first page. */
static bool pfns_visible(wire_t *c) {
  if (c->phys_known && pagemap_phys(c->base) != 0) return true;
  print_message("note: no physical addresses here; they are not checked\n");
  return false;
}

/* Addresses (of 4 KiB pieces) the daemon reported before a punch. */
typedef struct addrs {
  uint64_t v[8192];
  size_t n;
} addrs_t;

static uint64_t reported_at(const Pinpool__V1__Buffer *b, uint64_t off) {
  for (size_t i = 0; i < b->n_segments; i++) {
    const Pinpool__V1__Segment *s = b->segments[i];
    if (off >= s->offset && off < s->offset + s->length)
      return s->phys_addr + (off - s->offset);
  }
  return 0;
}

static void remember(addrs_t *a, const Pinpool__V1__Buffer *b) {
  for (uint64_t off = 0; off < b->size && a->n < sizeof a->v / sizeof a->v[0]; off += 4096) {
    uint64_t p = reported_at(b, b->offset + off);
    if (p) a->v[a->n++] = p;
  }
}

/* Every 4 KiB of b: the address the daemon reports (its segment's) is this process's own
 * pagemap's, and none is an address in old (pages since punched: the daemon keeps them
 * pinned, and must never report them again). */
static void check_against_pagemap(wire_t *c, const Pinpool__V1__Buffer *b, const addrs_t *old) {
  assert_int_not_equal(b->phys_addr, 0);
  for (uint64_t off = 0; off < b->size; off += 4096) {
    uint64_t want = reported_at(b, b->offset + off),
             mine = pagemap_phys(c->base + b->offset + off);
    if (!want) fail_msg("buffer %" PRIu64 ": no segment covers +%" PRIu64, b->handle, off);
    if (mine != want)
      fail_msg("buffer %" PRIu64 " +%" PRIu64 ": pagemap says 0x%" PRIx64
               ", the daemon 0x%" PRIx64,
               b->handle, off, mine, want);
    if (off == 0) assert_int_equal(b->phys_addr, mine);
    for (size_t i = 0; old && i < old->n; i++)
      if (old->v[i] == want)
        fail_msg("buffer %" PRIu64 " +%" PRIu64 ": 0x%" PRIx64
                 " is the address of a punched page",
                 b->handle, off, want);
  }
}

static void expect_zero(const wire_t *c, uint64_t off, uint64_t len) {
  for (uint64_t i = 0; i < len; i += 512)
    if (c->base[off + i]) fail_msg("byte at offset %" PRIu64 " is not zero", off + i);
}

/* ---- Stats ---------------------------------------------------------------------------- */

static resp_t *snapshot(wire_t *c, bool buffers, bool map) {
  resp_t *r;
  int rc = wire_stats(c, buffers, map, &r);
  if (rc) fail_msg("stats: %s", pp_err_name(rc));
  return r;
}

static const Pinpool__V1__BufferInfo *info_of(const resp_t *st, uint64_t handle) {
  for (size_t i = 0; i < st->stats->n_buffers; i++)
    if (st->stats->buffers[i]->handle == handle) return st->stats->buffers[i];
  fail_msg("no buffer %" PRIu64 " in Stats", handle);
  return NULL;
}

static uint64_t damaged_of(const resp_t *st, uint64_t session) {
  for (size_t i = 0; i < st->stats->n_clients; i++)
    if (st->stats->clients[i]->session_id == session)
      return st->stats->clients[i]->damaged_buffers;
  fail_msg("no session %" PRIu64 " in Stats", session);
  return 0;
}

/* Bytes of the map's blocks of one kind. */
static uint64_t map_bytes(const resp_t *st, Pinpool__V1__MapBlock__Kind kind) {
  uint64_t n = 0;
  for (size_t i = 0; i < st->stats->n_map; i++)
    if (st->stats->map[i]->kind == kind) n += st->stats->map[i]->size;
  return n;
}

typedef bool (*stats_pred)(const Pinpool__V1__Stats *s, const void *arg);

/* Stats until pred holds (the daemon's scan runs every few ms in these tests; the bound
 * only turns a failure into a message).  The matching snapshot, for the caller to free. */
static resp_t *wait_stats(wire_t *c, bool buffers, stats_pred pred, const void *arg,
                          const char *what) {
  for (int waited = 0;; waited += 10) {
    resp_t *r = snapshot(c, buffers, false);
    if (pred(r->stats, arg)) return r;
    if (waited >= WAIT_MS)
      fail_msg("%s: not within %d s (lost %" PRIu64 ", quarantined %" PRIu64
               ", damaged %" PRIu64 ", punched %" PRIu64 ")",
               what, WAIT_MS / 1000, r->stats->lost_bytes, r->stats->quarantined_bytes,
               r->stats->damaged_buffers, r->stats->punched_bytes);
    frame_free_response(r);
    sleep_ms(10);
  }
}

/* A named buffer, its reply kept for its addresses. */
static resp_t *alloc_named(wire_t *c, uint64_t size, unsigned flags, const char *name) {
  resp_t *r;
  int rc = wire_alloc(c, size, flags, name, &r);
  if (rc)
    fail_msg("alloc '%s' (%" PRIu64 " bytes): %s (%s)", name, size, pp_err_name(rc),
             r->message ? r->message : "");
  return r;
}

static resp_t *lookup(wire_t *c, const char *name) {
  resp_t *r;
  int rc = wire_lookup(c, name, &r);
  if (rc) fail_msg("lookup '%s': %s (%s)", name, pp_err_name(rc), r->message ? r->message : "");
  return r;
}

/* ---- 4 KiB pages ---------------------------------------------------------------------- */

static void
a_client_punching_the_whole_region_leaves_the_daemon_serving_with_4k_pages(void **state) {
  static const char *names[] = {"frames", "ring", "small"};
  static const uint64_t sizes[] = {MIB, 256 * KIB, 4 * KIB};
  static addrs_t old;
  uint64_t handle[3], objs[64];
  uint32_t cache;
  size_t nobjs;
  char text[256];
  testd_t d;
  wire_t c;
  resp_t *r;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&d, "--scan-interval", "0", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "good"), 0);
  bool pfns = pfns_visible(&c);
  old.n = 0;
  for (int i = 0; i < 3; i++) {
    r = alloc_named(&c, sizes[i], 0, names[i]);
    handle[i] = r->buffer->handle;
    remember(&old, r->buffer);
    memset(c.base + r->buffer->offset, 'g', r->buffer->size);
    frame_free_response(r);
  }
  assert_int_equal(wire_cache_open(&c, "hdr", 256, 0, &cache), 0);
  assert_int_equal(wire_cache_alloc(&c, cache, 64, objs, &nobjs), 0);

  range_t all = {0, c.region_size};
  punch_as_nobody(&d, &all, 1);

  /* Still served; each lookup finds its buffer's pages gone, reports, repairs. */
  for (int i = 0; i < 3; i++) {
    r = lookup(&c, names[i]);
    assert_int_equal(r->buffer->handle, handle[i]);
    if (pfns) check_against_pagemap(&c, r->buffer, &old);
    expect_zero(&c, r->buffer->offset, r->buffer->size); /* the contents are lost */
    snprintf(text, sizeof text,
             "hole: buffer %" PRIu64 " '~0/%s' (%" PRIu64 " bytes at offset 0x%" PRIx64 ")",
             handle[i], names[i], r->buffer->size, r->buffer->offset);
    expect_log(&d, text);
    frame_free_response(r);
  }
  snprintf(text, sizeof text, "held by session %" PRIu64 " (pid %d, uid 0)", c.session_id,
           (int)getpid());
  expect_log(&d, text);
  snprintf(text, sizeof text, "sessions hit: session %" PRIu64 " (pid %d, uid 0)", c.session_id,
           (int)getpid());
  expect_log(&d, text);

  r = snapshot(&c, true, false);
  for (int i = 0; i < 3; i++) {
    assert_true(info_of(r, handle[i])->damaged);
    assert_int_equal(info_of(r, handle[i])->lost_bytes, 0);
  }
  assert_int_equal(r->stats->damaged_buffers, 3);
  assert_int_equal(damaged_of(r, c.session_id), 3);
  assert_true(r->stats->punched_bytes >= MIB + 256 * KIB + 4 * KIB);
  frame_free_response(r);

  /* New memory is whole, and zeroed when asked. */
  r = alloc_named(&c, 2 * MIB, PP_ZERO_FLAG, "fresh");
  expect_zero(&c, r->buffer->offset, r->buffer->size);
  if (pfns) check_against_pagemap(&c, r->buffer, &old);
  frame_free_response(r);
  assert_int_equal(wire_cache_alloc(&c, cache, 64, objs, &nobjs), 0);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static void
punching_another_clients_buffers_is_reported_with_their_holders_and_repaired(void **state) {
  static addrs_t old;
  uint64_t ha, hb, hc;
  range_t hit[2];
  char text[256];
  testd_t d;
  wire_t c, g;
  resp_t *r;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&d, "--scan-interval", "0", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "owner"), 0);
  assert_int_equal(wire_open(&g, d.sock, "reader"), 0);
  bool pfns = pfns_visible(&c);
  old.n = 0;
  r = alloc_named(&c, 64 * KIB, 0, "a");
  ha = r->buffer->handle;
  hit[0] = (range_t){r->buffer->offset, r->buffer->size};
  remember(&old, r->buffer);
  frame_free_response(r);
  r = alloc_named(&c, 128 * KIB, 0, "b");
  hb = r->buffer->handle;
  frame_free_response(r);
  r = alloc_named(&c, 64 * KIB, 0, "c");
  hc = r->buffer->handle;
  hit[1] = (range_t){r->buffer->offset, r->buffer->size};
  remember(&old, r->buffer);
  frame_free_response(r);
  frame_free_response(lookup(&g, "~0/a")); /* a second holder */

  punch_as_nobody(&d, hit, 2);

  r = lookup(&c, "a");
  if (pfns) check_against_pagemap(&c, r->buffer, &old);
  frame_free_response(r);
  snprintf(text, sizeof text,
           "hole: buffer %" PRIu64 " '~0/a' (65536 bytes at offset 0x%" PRIx64
           ") lost 65536 bytes of its contents; held by session %" PRIu64
           " (pid %d, uid 0), session %" PRIu64 " (pid %d, uid 0)",
           ha, hit[0].off, c.session_id, (int)getpid(), g.session_id, (int)getpid());
  expect_log(&d, text);
  r = lookup(&c, "c");
  if (pfns) check_against_pagemap(&c, r->buffer, &old);
  frame_free_response(r);
  snprintf(text, sizeof text, "hole: buffer %" PRIu64 " '~0/c'", hc);
  expect_log(&d, text);

  r = snapshot(&c, true, false);
  assert_true(info_of(r, ha)->damaged);
  assert_false(info_of(r, hb)->damaged);
  assert_true(info_of(r, hc)->damaged);
  assert_int_equal(damaged_of(r, c.session_id), 2);
  assert_int_equal(damaged_of(r, g.session_id), 1);
  assert_int_equal(r->stats->lost_bytes, 0);
  assert_int_equal(r->stats->punched_bytes, 128 * KIB);
  frame_free_response(r);
  /* The untouched buffer's addresses never moved. */
  r = lookup(&c, "b");
  if (pfns) check_against_pagemap(&c, r->buffer, NULL);
  frame_free_response(r);
  wire_close(&g);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static bool idle_repaired(const Pinpool__V1__Stats *s, const void *arg) {
  uint64_t h = *(const uint64_t *)arg;
  for (size_t i = 0; i < s->n_buffers; i++)
    if (s->buffers[i]->handle == h) return s->buffers[i]->damaged && s->lost_bytes == 0;
  return false;
}

static void the_periodic_scan_finds_a_hole_that_no_request_touches(void **state) {
  static addrs_t old;
  uint64_t h;
  char text[256];
  testd_t d;
  wire_t c;
  resp_t *r;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&d, "--scan-interval", "20", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "idle"), 0);
  bool pfns = pfns_visible(&c);
  old.n = 0;
  r = alloc_named(&c, 64 * KIB, 0, "idle");
  h = r->buffer->handle;
  range_t hit = {r->buffer->offset, r->buffer->size};
  remember(&old, r->buffer);
  frame_free_response(r);

  punch_as_nobody(&d, &hit, 1);
  /* Stats checks nothing itself: only the daemon's own scan can find this hole. */
  r = wait_stats(&c, true, idle_repaired, &h, "the scan flags and repairs the buffer");
  assert_int_equal(r->stats->punched_bytes, 64 * KIB);
  assert_int_equal(r->stats->damaged_buffers, 1);
  frame_free_response(r);
  expect_log(&d, "found by the periodic scan");
  snprintf(text, sizeof text, "hole: buffer %" PRIu64 " '~0/idle'", h);
  expect_log(&d, text);
  r = lookup(&c, "idle");
  if (pfns) check_against_pagemap(&c, r->buffer, &old);
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static bool all_lost_and_quarantined(const Pinpool__V1__Stats *s, const void *arg) {
  uint64_t keep = *(const uint64_t *)arg;
  return s->lost_bytes == s->region_size && s->quarantined_bytes == s->region_size - keep;
}

static bool all_repaired(const Pinpool__V1__Stats *s, const void *arg) {
  (void)arg;
  return s->punched_bytes >= s->region_size && s->lost_bytes == 0 && s->quarantined_bytes == 0;
}

static void
once_repairs_are_refused_lost_pages_are_quarantined_and_never_handed_out_4k(void **state) {
  testd_t d;
  wire_t c;
  resp_t *r;
  (void)state;

  need_root();
  assert_int_equal(testd_start(&d, "--scan-interval", "20", NULL), 0);
  if (log_has(&d, "no long-term pin")) {
    assert_int_equal(testd_stop(&d), 0);
    print_message("skipped: the region is not pinned, so repairs never run out\n");
    skip();
  }
  assert_int_equal(wire_open(&c, d.sock, "good"), 0);
  r = alloc_named(&c, MIB, 0, "keep");
  uint64_t keep = r->buffer->handle, keep_size = r->buffer->size;
  frame_free_response(r);
  range_t all = {0, c.region_size};
  /* The first whole repair spends the pin budget (twice the region)... */
  punch_as_nobody(&d, &all, 1);
  frame_free_response(wait_stats(&c, false, all_repaired, NULL, "the first punch is repaired"));
  /* ...so after the second, nothing can be repaired: every free page is quarantined. */
  punch_as_nobody(&d, &all, 1);
  r = wait_stats(&c, false, all_lost_and_quarantined, &keep_size,
                 "the second punch is quarantined");
  frame_free_response(r);
  expect_log(&d, "the pin budget of 32 MiB is spent");

  for (int i = 0; i < 3; i++) {
    static const uint64_t sizes[] = {4 * KIB, 64 * KIB, 2 * MIB};
    for (unsigned flags = 0; flags <= PP_ZERO_FLAG; flags += PP_ZERO_FLAG) {
      int rc = wire_alloc(&c, sizes[i], flags, NULL, &r);
      if (rc != PP_ENOMEM && rc != PP_ELOSTPAGE)
        fail_msg("alloc of %" PRIu64 " bytes (flags %u) with every free page lost: %s",
                 sizes[i], flags, pp_err_name(rc));
      frame_free_response(r);
    }
  }
  r = lookup(&c, "keep");
  assert_int_equal(r->buffer->phys_addr, 0); /* every page lost: no address at all */
  assert_int_equal(r->buffer->n_segments, 0);
  assert_false(r->buffer->contiguous);
  frame_free_response(r);
  r = snapshot(&c, true, true);
  assert_true(info_of(r, keep)->damaged);
  assert_int_equal(info_of(r, keep)->lost_bytes, keep_size);
  assert_int_equal(info_of(r, keep)->phys_addr, 0);
  assert_int_equal(r->stats->free_bytes, 0);
  assert_int_equal(map_bytes(r, PINPOOL__V1__MAP_BLOCK__KIND__LOST), c.region_size - keep_size);
  assert_int_equal(map_bytes(r, PINPOOL__V1__MAP_BLOCK__KIND__BUFFER), keep_size);
  frame_free_response(r);
  /* Freed, its lost pages join the quarantine instead of the buddy. */
  assert_int_equal(wire_free(&c, keep), 0);
  assert_int_equal(wire_free(&c, keep), 0);
  r = snapshot(&c, false, false);
  assert_int_equal(r->stats->quarantined_bytes, c.region_size);
  assert_int_equal(r->stats->free_bytes, 0);
  assert_int_equal(r->stats->damaged_buffers, 0);
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

/* ---- 2 MiB pages ---------------------------------------------------------------------- */

static bool need_hugepages(long n) {
  const char *why = NULL;
  if (!hp_make_available(n, &why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
  return true;
}

static void
with_2m_pages_punched_buffers_are_repaired_from_the_pool_and_match_pagemap(void **state) {
  static const char *names[] = {"a", "b", "c", "d"};
  static const uint64_t sizes[] = {HUGE_2M, 2 * HUGE_2M, 64 * KIB, 64 * KIB};
  static addrs_t old;
  range_t hit[4];
  uint64_t handle[4];
  testd_t d;
  wire_t c;
  resp_t *r;
  (void)state;

  need_root();
  need_hugepages(16); /* 8 for the region, 8 to repair with */
  assert_int_equal(testd_start(&d, "--page-size", "2M", "--scan-interval", "0", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "good"), 0);
  assert_int_equal(c.page_size, HUGE_2M);
  if (!pfns_visible(&c)) {
    wire_close(&c);
    assert_int_equal(testd_stop(&d), 0);
    print_message("skipped: /proc/self/pagemap gives no PFNs to this process\n");
    skip();
  }
  old.n = 0;
  for (int i = 0; i < 4; i++) {
    r = alloc_named(&c, sizes[i], 0, names[i]);
    handle[i] = r->buffer->handle;
    /* Whole hugepages: a punch takes the page, whatever range it names. */
    uint64_t lo = r->buffer->offset / HUGE_2M * HUGE_2M;
    uint64_t hi = (r->buffer->offset + r->buffer->size + HUGE_2M - 1) / HUGE_2M * HUGE_2M;
    hit[i] = (range_t){lo, hi - lo};
    remember(&old, r->buffer);
    memset(c.base + r->buffer->offset, 'g', r->buffer->size);
    frame_free_response(r);
  }
  long spare = hp_available();
  punch_as_nobody(&d, hit, 4);
  assert_true(hp_available() <= spare); /* pinned: the punched pages stay the daemon's */

  for (int i = 0; i < 4; i++) {
    r = lookup(&c, names[i]);
    check_against_pagemap(&c, r->buffer, &old);
    expect_zero(&c, r->buffer->offset, r->buffer->size);
    frame_free_response(r);
  }
  r = snapshot(&c, true, false);
  for (int i = 0; i < 4; i++)
    assert_true(info_of(r, handle[i])->damaged);
  assert_int_equal(r->stats->damaged_buffers, 4);
  assert_int_equal(damaged_of(r, c.session_id), 4);
  assert_int_equal(r->stats->lost_bytes, 0);
  frame_free_response(r);
  expect_log(&d, "hole: buffer ");
  /* The rest of the region was never punched: a zeroed buffer from it is whole. */
  r = alloc_named(&c, HUGE_2M, PP_ZERO_FLAG, "fresh");
  check_against_pagemap(&c, r->buffer, &old);
  expect_zero(&c, r->buffer->offset, r->buffer->size);
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

static bool free_pages_quarantined(const Pinpool__V1__Stats *s, const void *arg) {
  (void)arg;
  return s->lost_bytes == s->region_size && s->free_bytes == 0;
}

static void
with_the_hugepage_pool_taken_nothing_lost_is_handed_out_until_it_refills(void **state) {
  static addrs_t old;
  testd_t d;
  wire_t c;
  resp_t *r;
  int hog;
  (void)state;

  need_root();
  need_hugepages(12); /* 8 for the region; the other 4 another process will take */
  assert_int_equal(testd_start(&d, "--page-size", "2M", "--scan-interval", "20", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "good"), 0);
  assert_int_equal(c.page_size, HUGE_2M);
  bool pfns = pfns_visible(&c);
  old.n = 0;
  r = alloc_named(&c, HUGE_2M, 0, "a");
  uint64_t ha = r->buffer->handle;
  remember(&old, r->buffer);
  frame_free_response(r);

  /* Another process takes every page the pool has left: nothing to repair with.  The
   * punched pages themselves stay pinned by the daemon, out of the pool, so the spare
   * pages are all there is to take — taken first, so that the daemon's scan cannot repair
   * with them in between. */
  long n = hp_available();
  hog = memfd_create("pp-test-hog", MFD_CLOEXEC | MFD_HUGETLB | (21u << 26));
  assert_true(hog >= 0);
  if (n > 0) {
    assert_int_equal(ftruncate(hog, (off_t)(n * HUGE_2M)), 0);
    assert_int_equal(fallocate(hog, 0, 0, (off_t)(n * HUGE_2M)), 0);
  }
  range_t all = {0, c.region_size};
  punch_as_nobody(&d, &all, 1);
  assert_int_equal(hp_available(), 0);

  /* The old SIGBUS: zeroed allocations over punched hugepages with no page to replace
   * them.  Every one fails cleanly, whether it or the scan found the holes first. */
  for (int round = 0; round < 3; round++) {
    static const uint64_t sizes[] = {4 * KIB, HUGE_2M, 4 * HUGE_2M};
    for (int i = 0; i < 3; i++)
      for (unsigned flags = PP_ZERO_FLAG;; flags = 0) {
        int rc = wire_alloc(&c, sizes[i], flags, NULL, &r);
        if (rc != PP_ENOMEM && rc != PP_ELOSTPAGE)
          fail_msg("alloc of %" PRIu64 " bytes (flags %u) over lost hugepages: %s", sizes[i],
                   flags, pp_err_name(rc));
        frame_free_response(r);
        if (!flags) break;
      }
  }
  r = wait_stats(&c, true, free_pages_quarantined, NULL, "every free page is quarantined");
  assert_int_equal(r->stats->quarantined_bytes, c.region_size - HUGE_2M);
  assert_true(info_of(r, ha)->damaged);
  assert_int_equal(info_of(r, ha)->lost_bytes, HUGE_2M);
  assert_int_equal(info_of(r, ha)->phys_addr, 0);
  frame_free_response(r);
  r = lookup(&c, "a");
  assert_int_equal(r->buffer->phys_addr, 0);
  assert_int_equal(r->buffer->n_segments, 0);
  frame_free_response(r);
  uint32_t cache;
  uint64_t objs[8];
  size_t nobjs;
  assert_int_equal(wire_cache_open(&c, "hdr", 256, 0, &cache), 0);
  assert_int_equal(wire_cache_alloc(&c, cache, 8, objs, &nobjs), PP_ENOMEM);
  expect_log(&d, "the hugepage pool has no page left");

  /* The pool refills: the scan repairs, the quarantine goes back, and the whole region
   * serves again, at addresses that are not the punched pages'. */
  close(hog);
  need_hugepages(8);
  frame_free_response(wait_stats(&c, false, all_repaired, NULL, "everything is repaired"));
  r = alloc_named(&c, 4 * HUGE_2M, PP_ZERO_FLAG, "whole-again");
  if (pfns) check_against_pagemap(&c, r->buffer, &old);
  expect_zero(&c, r->buffer->offset, r->buffer->size);
  frame_free_response(r);
  r = lookup(&c, "a");
  if (pfns) check_against_pagemap(&c, r->buffer, &old);
  frame_free_response(r);
  r = snapshot(&c, true, false);
  assert_true(info_of(r, ha)->damaged); /* for good: its contents were lost */
  assert_int_equal(info_of(r, ha)->lost_bytes, 0);
  assert_int_equal(r->stats->objects_set_aside, 0);
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(
          a_client_punching_the_whole_region_leaves_the_daemon_serving_with_4k_pages),
      cmocka_unit_test(
          punching_another_clients_buffers_is_reported_with_their_holders_and_repaired),
      cmocka_unit_test(the_periodic_scan_finds_a_hole_that_no_request_touches),
      cmocka_unit_test(
          once_repairs_are_refused_lost_pages_are_quarantined_and_never_handed_out_4k),
      cmocka_unit_test(
          with_2m_pages_punched_buffers_are_repaired_from_the_pool_and_match_pagemap),
      cmocka_unit_test(
          with_the_hugepage_pool_taken_nothing_lost_is_handed_out_until_it_refills),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
