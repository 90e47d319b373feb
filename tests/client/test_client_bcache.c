/*
 * test_client_bcache.c — libpinpool's buffer caches against a real pinpoold (16 MiB of
 * 4 KiB pages on a temporary socket, one daemon per test so that each starts from empty
 * books): small pp_alloc/pp_free served without round trips, what a cache handle means
 * (valid exactly while the program holds its block), what the daemon sees (buffers held,
 * charged to the quota, reported as cached), blocks coming back from killed clients and
 * exiting threads, bulk requests all or nothing, the knob, scatter-gather segments against
 * the client's own pagemap, and the cached orders of a hugepage region.
 *
 * The threaded model test is test_client_bcache_threads.c (run under TSan too); restart
 * survival of cached blocks is in tests/restart.  Forked children never call cmocka: they
 * report through a pipe and their exit status.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "hugepages.h"
#include "pinpool.h"
#include "testd.h"

#define KIB 1024ull
#define TAG (1ull << 63)

typedef struct fx {
  testd_t d;
  uint64_t baseline; /* free bytes with nobody connected */
} fx_t;

static void start(fx_t *f, ...) {
  const char *args[8] = {0};
  va_list ap;
  va_start(ap, f);
  for (int i = 0; i < 7 && (args[i] = va_arg(ap, const char *)); i++)
    ;
  va_end(ap);
  assert_int_equal(
      testd_start(&f->d, args[0], args[1], args[2], args[3], args[4], args[5], args[6], NULL),
      0);
  testd_books_t b;
  assert_int_equal(testd_books(&f->d, 0, &b, NULL), 0);
  f->baseline = b.free_bytes;
}

/* Everything came back and the daemon stops cleanly. */
static void finish(fx_t *f) {
  uint64_t last = 0;
  if (testd_wait_free(&f->d, f->baseline, 5000, &last) != 0)
    fail_msg("daemon free bytes %" PRIu64 ", expected %" PRIu64, last, f->baseline);
  assert_int_equal(testd_stop(&f->d), 0);
}

static testd_session_t session_of(fx_t *f, pp_client *c) {
  testd_books_t b;
  testd_session_t s;
  assert_int_equal(testd_books(&f->d, pp_session_id(c), &b, &s), 0);
  assert_true(s.found);
  return s;
}

static pp_client *connect_with(fx_t *f, uint32_t flags) {
  pp_connect_options o = {sizeof o, flags};
  pp_client *c = NULL;
  assert_int_equal(pp_connect_opts(f->d.sock, "bcache", &o, &c), 0);
  return c;
}

/* ---- the fast path and the handle -------------------------------------------------------- */

static void small_allocs_come_from_the_cache_without_a_round_trip(void **state) {
  fx_t f;
  start(&f, NULL);
  pp_client *c = connect_with(&f, 0);
  pp_buffer b[40];
  assert_true(pp_buffer_cache_enabled(c));
  assert_int_equal(pp_alloc(c, 100, 0, &b[0]), 0);
  /* One refill: half of the 64 blocks a thread keeps of 4 KiB, in one request. */
  testd_session_t s = session_of(&f, c);
  uint64_t requests = s.requests;
  assert_int_equal(s.buffers, 32);
  assert_int_equal(s.cached_buffers, 32); /* as reported with the refill */
  assert_int_equal(s.cached_bytes, 32 * 4 * KIB);
  assert_int_equal(s.bytes_charged, 32 * 4 * KIB);
  for (int i = 1; i < 32; i++)
    assert_int_equal(pp_alloc(c, 4096, PP_CONTIGUOUS, &b[i]), 0);
  for (int i = 0; i < 32; i++) {
    assert_true(b[i].handle & TAG);
    assert_int_equal(b[i].size, 4096);
    assert_true(b[i].contiguous);
    assert_ptr_equal(b[i].addr, (char *)pp_base(c) + b[i].offset);
    for (int j = 0; j < i; j++)
      assert_true(b[i].offset != b[j].offset && b[i].handle != b[j].handle);
    memset(b[i].addr, i, 4096);
  }
  for (int i = 0; i < 32; i++)
    assert_int_equal(pp_free(c, b[i].handle), 0);
  /* 32 allocations and 32 frees later, the daemon has served only the books' requests. */
  s = session_of(&f, c);
  assert_int_equal(s.requests, requests);
  assert_int_equal(s.buffers, 32);
  /* PP_ZERO zeroes a recycled block here. */
  assert_int_equal(pp_alloc(c, 4096, PP_ZERO, &b[0]), 0);
  for (int i = 0; i < 4096; i++)
    assert_int_equal(((uint8_t *)b[0].addr)[i], 0);
  assert_int_equal(pp_free(c, b[0].handle), 0);
  /* Larger than the region's page (4 KiB here), named, or looked up: the daemon's. */
  pp_buffer big, named, found;
  assert_int_equal(pp_alloc(c, 4097, 0, &big), 0);
  assert_false(big.handle & TAG);
  assert_int_equal(pp_alloc_named(c, "named", 100, 0, &named), 0);
  assert_false(named.handle & TAG);
  assert_int_equal(pp_lookup(c, "named", &found), 0);
  assert_int_equal(found.handle, named.handle);
  assert_int_equal(pp_free(c, big.handle), 0);
  assert_int_equal(pp_free(c, named.handle), 0);
  assert_int_equal(pp_free(c, found.handle), 0);
  pp_disconnect(c);
  finish(&f);
}

static void a_cache_handle_is_valid_exactly_while_the_program_holds_its_block(void **state) {
  fx_t f;
  start(&f, NULL);
  pp_client *c = connect_with(&f, 0);
  pp_buffer a, b;
  assert_int_equal(pp_alloc(c, 4096, 0, &a), 0);
  assert_int_equal(pp_free(c, a.handle), 0);
  assert_int_equal(pp_free(c, a.handle), PP_ENOENT); /* twice */
  /* The same block again (the cache is a stack): a new handle; the old one stays dead. */
  assert_int_equal(pp_alloc(c, 4096, 0, &b), 0);
  assert_int_equal(b.offset, a.offset);
  assert_true(b.handle != a.handle);
  assert_int_equal(pp_free(c, a.handle), PP_ENOENT);
  pp_segment seg;
  assert_int_equal(pp_buffer_segments(c, a.handle, &seg, 1), PP_ENOENT);
  /* Made-up handles: another generation, another order, outside the region. */
  assert_int_equal(pp_free(c, b.handle + (1ull << 35)), PP_ENOENT);
  assert_int_equal(pp_free(c, b.handle ^ (1ull << 32)), PP_ENOENT);
  assert_int_equal(pp_free(c, TAG | 0xffffffffull), PP_ENOENT);
  assert_int_equal(pp_free(c, (b.handle & ~0xffffffffull) | ((b.handle + 1) & 0xffffffffull)),
                   PP_ENOENT);
  assert_int_equal(pp_free(c, b.handle), 0);
  /* A handle of another session's cache is not this session's either. */
  pp_client *o = connect_with(&f, 0);
  pp_buffer x;
  assert_int_equal(pp_alloc(o, 4096, 0, &x), 0);
  assert_int_equal(pp_free(c, x.handle), PP_ENOENT);
  assert_int_equal(pp_free(o, x.handle), 0);
  pp_disconnect(o);
  pp_disconnect(c);
  finish(&f);
}

/* ---- what the daemon sees -----------------------------------------------------------------
 */

struct cacher {
  pp_client *c;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int step; /* 1: cache filled; 2: may exit */
};

static void *cacher_main(void *arg) {
  struct cacher *w = arg;
  pp_buffer b;
  int rc = pp_alloc(w->c, 4096, 0, &b);
  if (rc == 0) rc = pp_free(w->c, b.handle);
  pthread_mutex_lock(&w->mu);
  w->step = rc == 0 ? 1 : -1;
  pthread_cond_broadcast(&w->cv);
  while (w->step != 2)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
  return NULL; /* its cache goes back at exit */
}

static void quota_counts_cached_blocks_and_an_empty_cache_does_not_get_around_it(void **state) {
  fx_t f;
  start(&f, "--quota", "256K", NULL); /* 64 blocks of 4 KiB */
  pp_client *c = connect_with(&f, 0);
  struct cacher w = {.c = c, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, cacher_main, &w), 0);
  pthread_mutex_lock(&w.mu);
  while (w.step == 0)
    pthread_cond_wait(&w.cv, &w.mu);
  pthread_mutex_unlock(&w.mu);
  assert_int_equal(w.step, 1);
  /* The other thread's cache holds 32 blocks nobody uses: charged all the same. */
  testd_session_t s = session_of(&f, c);
  assert_int_equal(s.bytes_charged, 128 * KIB);
  assert_int_equal(s.cached_bytes, 128 * KIB);
  /* This thread's cache is empty, and it gets what the quota leaves: 32 blocks. */
  pp_buffer b[40];
  int n = 0, rc;
  while ((rc = pp_alloc(c, 4096, 0, &b[n])) == 0 && n < 40)
    n++;
  assert_int_equal(rc, PP_EQUOTA);
  assert_int_equal(n, 32);
  s = session_of(&f, c);
  assert_int_equal(s.bytes_charged, 256 * KIB);
  /* A uncached size is refused the same way. */
  pp_buffer x;
  assert_int_equal(pp_alloc(c, 8192, 0, &x), PP_EQUOTA);
  /* The other thread exits: its cache goes back, and there is room again. */
  pthread_mutex_lock(&w.mu);
  w.step = 2;
  pthread_cond_broadcast(&w.cv);
  pthread_mutex_unlock(&w.mu);
  pthread_join(t, NULL);
  s = session_of(&f, c);
  assert_int_equal(s.bytes_charged, 128 * KIB);
  assert_int_equal(s.cached_buffers, 0); /* reported by the exiting thread's return */
  assert_int_equal(pp_alloc(c, 8192, 0, &x), 0);
  assert_int_equal(pp_free(c, x.handle), 0);
  for (int i = 0; i < n; i++)
    assert_int_equal(pp_free(c, b[i].handle), 0);
  pp_disconnect(c);
  finish(&f);
}

static void a_killed_clients_cached_blocks_come_back(void **state) {
  fx_t f;
  int p[2];
  start(&f, NULL);
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    pp_client *c;
    pp_buffer b[10];
    uint64_t id = 0;
    close(p[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a failed test */
    if (pp_connect(f.d.sock, "doomed", &c) == 0) {
      for (int i = 0; i < 10; i++)
        if (pp_alloc(c, 4096, 0, &b[i])) _exit(2);
      for (int i = 0; i < 10; i++)
        if (pp_free(c, b[i].handle)) _exit(3);
      id = pp_session_id(c);
    }
    if (write(p[1], &id, sizeof id) != sizeof id) _exit(4);
    pause();
    _exit(0);
  }
  close(p[1]);
  uint64_t id = 0;
  assert_int_equal(read(p[0], &id, sizeof id), (ssize_t)sizeof id);
  close(p[0]);
  assert_true(id != 0);
  testd_books_t books;
  testd_session_t s;
  assert_int_equal(testd_books(&f.d, id, &books, &s), 0);
  assert_true(s.found);
  assert_int_equal(s.buffers, 32); /* all in its cache */
  assert_int_equal(s.cached_buffers, 32);
  kill(pid, SIGKILL);
  int st;
  waitpid(pid, &st, 0);
  finish(&f);
}

/* ---- bulk requests -------------------------------------------------------------------------
 */

static void once_the_connection_breaks_for_good_the_caches_serve_nothing(void **state) {
  fx_t f;
  start(&f, NULL); /* no service manager: no re-claim, the first break is final */
  pp_client *c = connect_with(&f, 0);
  pp_buffer a, b, x;
  assert_int_equal(pp_alloc(c, 4096, 0, &a), 0);
  assert_int_equal(pp_alloc(c, 4096, 0, &b), 0);
  assert_int_equal(pp_free(c, b.handle), 0); /* 31 blocks cached */
  kill(f.d.pid, SIGKILL);
  int st;
  waitpid(f.d.pid, &st, 0);
  f.d.pid = 0;
  /* The next request finds the daemon gone; from then on the caches' blocks may be
   * someone else's: nothing is served from them, every call says why. */
  int rc = pp_alloc(c, 8192, 0, &x);
  if (rc != PP_EDISCONNECTED && rc != PP_EIO)
    fail_msg("after the daemon died: %s", pp_err_name(rc));
  assert_false(pp_buffer_cache_enabled(c));
  assert_int_equal(pp_alloc(c, 4096, 0, &x), rc);
  assert_int_equal(pp_free(c, a.handle), rc);
  assert_int_equal(pp_free(c, a.handle), PP_ENOENT); /* it was let go all the same */
  pp_disconnect(c);
  assert_int_equal(testd_stop(&f.d), 0);
}

static void bulk_requests_are_all_or_nothing(void **state) {
  fx_t f;
  start(&f, "--quota", "256K", NULL);
  pp_client *c = connect_with(&f, 0);
  pp_buffer d[70], t[2];
  uint64_t h[8];

  /* Past the quota: nothing allocated. */
  assert_int_equal(pp_alloc_bulk(c, 4096, 0, 65, d), PP_EQUOTA);
  assert_int_equal(session_of(&f, c).buffers, 0);
  assert_int_equal(pp_alloc_bulk(c, 4096, 0, 1025, d), PP_ERANGE);
  assert_int_equal(pp_alloc_bulk(c, 4096, 0x10, 2, d), PP_EINVAL);
  assert_int_equal(pp_alloc_bulk(c, 4096, 0, 0, d), 0);

  /* Within it: the daemon's handles. */
  assert_int_equal(pp_alloc_bulk(c, 5000, PP_ZERO, 8, d), 8);
  for (int i = 0; i < 8; i++) {
    assert_false(d[i].handle & TAG);
    assert_int_equal(d[i].size, 8192);
    for (uint64_t j = 0; j < d[i].size; j++)
      assert_int_equal(((uint8_t *)d[i].addr)[j], 0);
  }
  assert_int_equal(pp_alloc(c, 4096, 0, &t[0]), 0);
  assert_int_equal(pp_alloc(c, 4096, 0, &t[1]), 0);
  assert_true(t[0].handle & t[1].handle & TAG);
  uint64_t held = session_of(&f, c).buffers;

  /* A bad handle anywhere — the daemon's kind or a cache's — frees nothing. */
  h[0] = t[0].handle;
  h[1] = d[0].handle;
  h[2] = t[1].handle;
  h[3] = 999999;
  assert_int_equal(pp_free_bulk(c, h, 4), PP_ENOENT);
  h[3] = t[1].handle + (1ull << 35);
  assert_int_equal(pp_free_bulk(c, h, 4), PP_ENOENT);
  h[3] = t[0].handle; /* listed twice, held once */
  assert_int_equal(pp_free_bulk(c, h, 4), PP_ENOENT);
  h[3] = d[0].handle;
  assert_int_equal(pp_free_bulk(c, h, 4), PP_ENOENT);
  assert_int_equal(session_of(&f, c).buffers, held);
  /* Everything is still held: each frees once. */
  assert_int_equal(pp_free(c, t[0].handle), 0);
  assert_int_equal(pp_free(c, d[0].handle), 0);
  assert_int_equal(pp_free_bulk(c, h, 0), 0);
  assert_int_equal(pp_free_bulk(c, &t[1].handle, 1), 0);
  for (int i = 1; i < 8; i++)
    h[i - 1] = d[i].handle;
  assert_int_equal(pp_free_bulk(c, h, 7), 0);
  assert_int_equal(pp_free_bulk(c, h, 7), PP_ENOENT);
  pp_disconnect(c);
  finish(&f);
}

/* ---- the knob ------------------------------------------------------------------------------
 */

static void the_environment_and_the_connect_flag_turn_caching_off(void **state) {
  fx_t f;
  start(&f, NULL);
  pp_client *c;
  pp_buffer b;
  setenv("PINPOOL_BUFFER_CACHE", "0", 1);
  assert_int_equal(pp_connect(f.d.sock, "no-cache-env", &c), 0);
  unsetenv("PINPOOL_BUFFER_CACHE");
  assert_false(pp_buffer_cache_enabled(c));
  assert_int_equal(pp_alloc(c, 4096, 0, &b), 0);
  assert_false(b.handle & TAG);
  testd_session_t s = session_of(&f, c);
  assert_int_equal(s.buffers, 1); /* exactly what the program holds */
  assert_int_equal(s.cached_buffers, 0);
  assert_int_equal(pp_free(c, b.handle), 0);
  assert_int_equal(session_of(&f, c).buffers, 0);
  pp_disconnect(c);

  c = connect_with(&f, PP_CONNECT_NO_BUFFER_CACHE);
  assert_false(pp_buffer_cache_enabled(c));
  assert_int_equal(pp_alloc(c, 4096, 0, &b), 0);
  assert_false(b.handle & TAG);
  assert_int_equal(session_of(&f, c).buffers, 1);
  assert_int_equal(pp_free(c, b.handle), 0);
  pp_disconnect(c);
  finish(&f);
}

/* ---- segments ------------------------------------------------------------------------------
 */

/* Physical address of the byte at addr from this process's own pagemap; 0 when hidden. */
static uint64_t pagemap_phys(const void *addr) {
  uint64_t entry = 0, va = (uint64_t)(uintptr_t)addr;
  long ps = sysconf(_SC_PAGESIZE);
  (void)*(const volatile uint8_t *)addr; /* a shared mapping is filled lazily */
  int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) return 0;
  if (pread(fd, &entry, sizeof entry, (off_t)(va / (uint64_t)ps * sizeof entry)) !=
      sizeof entry)
    entry = 0;
  close(fd);
  if (!(entry & (1ull << 63))) return 0;
  entry &= (1ull << 55) - 1;
  return entry ? entry * (uint64_t)ps + va % (uint64_t)ps : 0;
}

/* segs[0..n) cover b exactly, in order; every 4 KiB page of each is where pagemap says;
 * consecutive segments are not physically adjacent (maximal runs). */
static void check_segments(pp_client *c, const pp_buffer *b, const pp_segment *segs, int n) {
  uint64_t at = b->offset;
  for (int i = 0; i < n; i++) {
    assert_int_equal(segs[i].offset, at);
    assert_true(segs[i].length > 0 && segs[i].length % 4096 == 0);
    for (uint64_t off = 0; off < segs[i].length; off += 4096) {
      uint64_t mine = pagemap_phys((char *)pp_base(c) + segs[i].offset + off);
      if (mine != segs[i].phys + off)
        fail_msg("segment %d +%" PRIu64 ": pagemap 0x%" PRIx64 ", segment 0x%" PRIx64, i, off,
                 mine, segs[i].phys + off);
    }
    if (i > 0) assert_true(segs[i - 1].phys + segs[i - 1].length != segs[i].phys);
    at += segs[i].length;
  }
  assert_int_equal(at, b->offset + b->size);
  assert_int_equal(segs[0].phys, b->phys);
}

static void segments_of_a_non_contiguous_buffer_match_the_clients_pagemap(void **state) {
  fx_t f;
  start(&f, NULL);
  pp_client *c = connect_with(&f, 0);
  if (!pp_phys_known(c) || !pagemap_phys(pp_base(c))) {
    print_message("skipped: physical addresses unknown to the daemon or hidden from this "
                  "process (needs root)\n");
    pp_disconnect(c);
    assert_int_equal(testd_stop(&f.d), 0);
    skip();
  }
  /* 4 KiB pages are placed by the kernel: a 256 KiB buffer is rarely one run. */
  pp_buffer b[16];
  int n = 0, which = -1;
  for (; n < 16 && which < 0; n++) {
    assert_int_equal(pp_alloc(c, 256 * KIB, 0, &b[n]), 0);
    if (!b[n].contiguous) which = n;
  }
  if (which < 0) {
    print_message("skipped: 16 buffers of 256 KiB were all physically contiguous\n");
  } else {
    pp_segment segs[64];
    int k = pp_buffer_segments(c, b[which].handle, NULL, 0);
    assert_true(k > 1 && k <= 64);
    assert_int_equal(pp_buffer_segments(c, b[which].handle, segs, 64), k);
    check_segments(c, &b[which], segs, k);
    /* Room for fewer: the first ones, and the count of all. */
    pp_segment one;
    assert_int_equal(pp_buffer_segments(c, b[which].handle, &one, 1), k);
    assert_memory_equal(&one, &segs[0], sizeof one);
  }
  /* A cached block: one segment, answered here. */
  pp_buffer s;
  pp_segment seg[2];
  assert_int_equal(pp_alloc(c, 4096, 0, &s), 0);
  assert_true(s.handle & TAG);
  assert_int_equal(pp_buffer_segments(c, s.handle, seg, 2), 1);
  check_segments(c, &s, seg, 1);
  assert_int_equal(pp_free(c, s.handle), 0);
  assert_int_equal(pp_buffer_segments(c, b[0].handle + 1000, seg, 2), PP_ENOENT);
  for (int i = 0; i < n; i++)
    assert_int_equal(pp_free(c, b[i].handle), 0);
  pp_disconnect(c);
  finish(&f);
}

/* ---- hugepages: five cached orders ---------------------------------------------------------
 */

static void on_hugepages_blocks_up_to_64k_are_cached_and_contiguous(void **state) {
  const char *why = NULL;
  fx_t f;
  if (!hp_begin(&why) || !hp_make_available(4, &why)) {
    print_message("skipped: %s\n", why);
    skip();
  }
  start(&f, "--page-size", "2M", "--size", "8M", NULL);
  pp_client *c = connect_with(&f, 0);
  assert_int_equal(pp_page_size(c), 2 * KIB * KIB);
  pp_buffer b[5], big;
  for (unsigned k = 0; k < 5; k++) {
    assert_int_equal(pp_alloc(c, (4 * KIB << k) - 100, PP_CONTIGUOUS | PP_ZERO, &b[k]), 0);
    assert_true(b[k].handle & TAG);
    assert_int_equal((b[k].handle >> 32) & 7, k);
    assert_int_equal(b[k].size, 4 * KIB << k);
    assert_int_equal(b[k].offset % b[k].size, 0);
    assert_true(b[k].contiguous);
    for (uint64_t j = 0; j < b[k].size; j++)
      assert_int_equal(((uint8_t *)b[k].addr)[j], 0);
    if (pp_phys_known(c)) {
      pp_segment seg;
      assert_int_equal(pp_buffer_segments(c, b[k].handle, &seg, 1), 1);
      assert_int_equal(seg.phys, b[k].phys);
      assert_int_equal(seg.length, b[k].size);
    }
  }
  assert_int_equal(pp_alloc(c, 64 * KIB + 1, 0, &big), 0);
  assert_false(big.handle & TAG);
  testd_session_t s = session_of(&f, c);
  /* Each order's refill: half of 256 KiB of its blocks (32, 16, 8, 4, 2). */
  assert_int_equal(s.buffers, 32 + 16 + 8 + 4 + 2 + 1);
  for (unsigned k = 0; k < 5; k++)
    assert_int_equal(pp_free(c, b[k].handle), 0);
  assert_int_equal(pp_free(c, big.handle), 0);
  pp_disconnect(c);
  finish(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(small_allocs_come_from_the_cache_without_a_round_trip),
      cmocka_unit_test(a_cache_handle_is_valid_exactly_while_the_program_holds_its_block),
      cmocka_unit_test(quota_counts_cached_blocks_and_an_empty_cache_does_not_get_around_it),
      cmocka_unit_test(a_killed_clients_cached_blocks_come_back),
      cmocka_unit_test(once_the_connection_breaks_for_good_the_caches_serve_nothing),
      cmocka_unit_test(bulk_requests_are_all_or_nothing),
      cmocka_unit_test(the_environment_and_the_connect_flag_turn_caching_off),
      cmocka_unit_test(segments_of_a_non_contiguous_buffer_match_the_clients_pagemap),
      cmocka_unit_test(on_hugepages_blocks_up_to_64k_are_cached_and_contiguous),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
