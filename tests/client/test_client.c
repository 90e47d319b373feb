/*
 * test_client.c — libpinpool against a real pinpoold (16 MiB of 4 KiB pages on a
 * temporary socket): connecting, sharing buffers between processes, reclaim after a
 * crash, error mapping, client magazines, and the error table's words.
 *
 * Forked children never call cmocka: they report through their exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pinpool.h"
#include "testd.h"
#include "wire.h"

#define REGION (16ull << 20)

static testd_t g_d;
static uint64_t g_baseline_free; /* the daemon's free bytes with no client connected */

static int group_setup(void **state) {
  if (testd_start(&g_d, NULL) < 0) return -1;
  testd_books_t b;
  if (testd_books(&g_d, 0, &b, NULL) < 0) return -1;
  g_baseline_free = b.free_bytes;
  return 0;
}

static int group_teardown(void **state) {
  return testd_stop(&g_d);
}

static pp_client *connect_ok(const char *name) {
  pp_client *c = NULL;
  int rc = pp_connect(g_d.sock, name, &c);
  if (rc != 0) fail_msg("pp_connect: %s", pp_err_name(rc));
  return c;
}

/* After every test: everything went back, nobody is left connected. */
static void assert_books_balanced(void) {
  uint64_t last = 0;
  if (testd_wait_free(&g_d, g_baseline_free, 5000, &last) != 0)
    fail_msg("daemon free bytes %llu, expected the baseline %llu", (unsigned long long)last,
             (unsigned long long)g_baseline_free);
}

static testd_session_t session_row(pp_client *c) {
  testd_books_t b;
  testd_session_t s;
  assert_int_equal(testd_books(&g_d, pp_session_id(c), &b, &s), 0);
  assert_true(s.found);
  return s;
}

/* ---- connecting ------------------------------------------------------------------- */

static void connect_maps_the_whole_region_and_reports_its_geometry(void **state) {
  pp_client *c = connect_ok("geometry");
  assert_non_null(pp_base(c));
  assert_int_equal(pp_region_size(c), REGION);
  assert_int_equal(pp_page_size(c), 4096);
  assert_int_equal(pp_min_block(c), 4096);
  assert_false(pp_hugepages(c));
  assert_int_not_equal(pp_session_id(c), 0);
  assert_ptr_equal(pp_ptr(c, 4096), (uint8_t *)pp_base(c) + 4096);
  assert_null(pp_ptr(c, REGION));
  assert_int_equal(pp_offset(c, (uint8_t *)pp_base(c) + REGION - 1), REGION - 1);
  assert_int_equal(pp_offset(c, (uint8_t *)pp_base(c) + REGION), UINT64_MAX);
  pp_disconnect(c);
  assert_books_balanced();
}

static void connect_to_a_missing_socket_is_econnect(void **state) {
  pp_client *c = (pp_client *)0x1;
  char path[160];
  snprintf(path, sizeof path, "%s/nobody-here.sock", g_d.dir);
  assert_int_equal(pp_connect(path, "x", &c), PP_ECONNECT);
  assert_ptr_equal(c, (pp_client *)0x1); /* untouched on failure */
}

static void connect_to_a_socket_nobody_listens_on_is_econnect(void **state) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  pp_client *c = NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s/deaf.sock", g_d.dir);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0); /* no listen() */
  assert_int_equal(pp_connect(sa.sun_path, "x", &c), PP_ECONNECT);
  assert_null(c);
  close(fd);
  unlink(sa.sun_path);
}

/* A socket this user may not write is a permission problem with its own code, not "is
 * pinpoold running?".  The child becomes nobody (uid 65534, no groups) and reports the
 * code as its exit status. */
static void connect_outside_the_sockets_group_is_eacces(void **state) {
  testd_t d;
  int st;

  if (geteuid() != 0) {
    print_message("skipped: becoming nobody (uid 65534) needs root\n");
    skip();
  }
  assert_int_equal(testd_start(&d, "--socket-mode", "0660", NULL), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    pp_client *c = NULL;
    if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) _exit(125);
    int rc = pp_connect(d.sock, "outsider", &c);
    _exit(rc < 0 ? -rc : 100);
  }
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  if (WEXITSTATUS(st) != -PP_EACCES)
    fail_msg("pp_connect as nobody: exit %d (%s), want PP_EACCES", WEXITSTATUS(st),
             pp_err_name(-WEXITSTATUS(st)));
  assert_string_equal(pp_strerror(PP_EACCES), "no permission to connect to pinpoold's socket");
  assert_int_equal(testd_stop(&d), 0);
}

static void connect_rejects_bad_arguments(void **state) {
  char longpath[200];
  pp_client *c = NULL;
  memset(longpath, 'a', sizeof longpath - 1);
  longpath[sizeof longpath - 1] = '\0';
  assert_int_equal(pp_connect(g_d.sock, "x", NULL), PP_EINVAL);
  assert_int_equal(pp_connect(longpath, "x", &c), PP_EINVAL);
  assert_int_equal(pp_connect("", "x", &c), PP_EINVAL);
  assert_null(c);
}

static void connect_without_a_path_follows_PINPOOL_SOCKET(void **state) {
  pp_client *c = NULL;
  setenv("PINPOOL_SOCKET", g_d.sock, 1);
  int rc = pp_connect(NULL, NULL, &c);
  unsetenv("PINPOOL_SOCKET");
  assert_int_equal(rc, 0);
  pp_disconnect(c);
  assert_books_balanced();
}

static void a_long_client_name_is_cut_not_refused(void **state) {
  char name[300];
  memset(name, 'n', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  pp_client *c = NULL;
  assert_int_equal(pp_connect(g_d.sock, name, &c), 0);
  pp_disconnect(c);
  assert_books_balanced();
}

/* ---- buffers ---------------------------------------------------------------------- */

static void alloc_rounds_up_to_a_naturally_aligned_block(void **state) {
  pp_client *c = connect_ok("round");
  pp_buffer b;
  assert_int_equal(pp_alloc(c, 5000, 0, &b), 0);
  assert_int_equal(b.size, 8192);
  assert_int_equal(b.offset % 8192, 0);
  assert_ptr_equal(b.addr, (uint8_t *)pp_base(c) + b.offset);
  memset(b.addr, 0x5A, b.size); /* all of it is ours to write */
  assert_int_equal(pp_free(c, b.handle), 0);
  pp_disconnect(c);
  assert_books_balanced();
}

static void zero_flag_gives_zeroed_memory_even_after_reuse(void **state) {
  pp_client *c = connect_ok("zero");
  pp_buffer b;
  assert_int_equal(pp_alloc(c, 65536, 0, &b), 0);
  memset(b.addr, 0xAB, b.size);
  assert_int_equal(pp_free(c, b.handle), 0);
  assert_int_equal(pp_alloc(c, 65536, PP_ZERO, &b), 0);
  const uint8_t *p = b.addr;
  for (uint64_t i = 0; i < b.size; i++)
    if (p[i] != 0) fail_msg("byte %llu is %#x", (unsigned long long)i, p[i]);
  assert_int_equal(pp_free(c, b.handle), 0);
  pp_disconnect(c);
  assert_books_balanced();
}

static int wait_byte(int fd) {
  char ch;
  ssize_t n;
  do {
    n = read(fd, &ch, 1);
  } while (n < 0 && errno == EINTR);
  return n == 1 ? 0 : -1;
}

static void say(int fd) {
  ssize_t n = write(fd, "x", 1);
  (void)n;
}

/* The child's half of the sharing test; returns its exit status (0 = all as expected). */
static int share_child(int rd, int wr) {
  pp_client *c = NULL;
  pp_buffer b;
  if (wait_byte(rd) < 0) return 10;
  if (pp_connect(g_d.sock, "share-child", &c) != 0) return 11;
  if (pp_lookup(c, "shared-frame", &b) != 0) return 12;
  const uint32_t *w = b.addr;
  for (uint64_t i = 0; i < b.size / 4; i++)
    if (w[i] != (uint32_t)(i * 2654435761u)) return 13;
  ((uint32_t *)b.addr)[0] = 0xC0FFEEu; /* answer through the same memory */
  say(wr);
  if (wait_byte(rd) < 0) return 14; /* the parent has freed its hold */
  for (uint64_t i = 1; i < b.size / 4; i++)
    if (w[i] != (uint32_t)(i * 2654435761u)) return 15;
  if (pp_free(c, b.handle) != 0) return 16;
  pp_disconnect(c);
  say(wr);
  return 0;
}

static void named_buffer_is_shared_between_processes_until_both_free(void **state) {
  int to_child[2], to_parent[2];
  assert_int_equal(pipe(to_child), 0);
  assert_int_equal(pipe(to_parent), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) _exit(share_child(to_child[0], to_parent[1]));

  pp_client *c = connect_ok("share-parent");
  pp_buffer b, again;
  assert_int_equal(pp_alloc_named(c, "shared-frame", 3 * 4096, 0, &b), 0);
  for (uint64_t i = 0; i < b.size / 4; i++)
    ((uint32_t *)b.addr)[i] = (uint32_t)(i * 2654435761u);
  say(to_child[1]);
  assert_int_equal(wait_byte(to_parent[0]), 0);
  assert_int_equal(((uint32_t *)b.addr)[0], 0xC0FFEEu);

  /* The first holder lets go; the child still holds it, so the name still resolves to
   * the same memory. */
  assert_int_equal(pp_free(c, b.handle), 0);
  assert_int_equal(pp_lookup(c, "shared-frame", &again), 0);
  assert_int_equal(again.offset, b.offset);
  assert_int_equal(pp_free(c, again.handle), 0);
  say(to_child[1]);
  assert_int_equal(wait_byte(to_parent[0]), 0);

  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  /* Both have let go: the buffer and its name are gone. */
  assert_int_equal(pp_lookup(c, "shared-frame", &again), PP_ENOENT);
  pp_disconnect(c);
  close(to_child[0]);
  close(to_child[1]);
  close(to_parent[0]);
  close(to_parent[1]);
  assert_books_balanced();
}

/* Physical address of the byte at addr as this process's own page tables see it; 0 when
 * the page is not present or the PFN is hidden (not root). */
static uint64_t pagemap_phys(const void *addr) {
  static int fd = -2;
  if (fd == -2) fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  uint64_t vpn = (uintptr_t)addr / 4096, e = 0;
  if (pread(fd, &e, sizeof e, (off_t)(vpn * sizeof e)) != (ssize_t)sizeof e) return 0;
  if (!(e & (1ull << 63)) || (e & ((1ull << 55) - 1)) == 0) return 0;
  return (e & ((1ull << 55) - 1)) * 4096 + (uintptr_t)addr % 4096;
}

static void buffer_phys_agrees_with_this_process_pagemap(void **state) {
  pp_client *c = connect_ok("phys");
  if (!pp_phys_known(c) || geteuid() != 0) {
    pp_disconnect(c);
    print_message("skipped: the daemon reports no physical addresses (needs root)\n");
    skip();
  }
  static const uint64_t sizes[] = {4096, 65536, 1 << 20};
  for (unsigned s = 0; s < 3; s++) {
    for (unsigned flags = 0; flags <= PP_CONTIGUOUS; flags += PP_CONTIGUOUS) {
      pp_buffer b;
      int rc = pp_alloc(c, sizes[s], flags, &b);
      if (rc == PP_ENOCONTIG && flags && sizes[s] > 4096) continue; /* allowed: no run free */
      assert_int_equal(rc, 0);
      volatile uint8_t *p = b.addr;
      for (uint64_t off = 0; off < b.size; off += 4096)
        p[off] = p[off]; /* map it here */
      assert_int_not_equal(b.phys, 0);
      assert_int_equal(b.phys, pagemap_phys(b.addr));
      if (flags) assert_true(b.contiguous);
      if (b.contiguous)
        for (uint64_t off = 4096; off < b.size; off += 4096)
          assert_int_equal(pagemap_phys((uint8_t *)b.addr + off), b.phys + off);
      assert_int_equal(pp_free(c, b.handle), 0);
    }
  }
  pp_disconnect(c);
  assert_books_balanced();
}

static void buffer_errors_map_to_their_codes(void **state) {
  pp_client *a = connect_ok("errors-a");
  pp_client *b = connect_ok("errors-b");
  pp_buffer x, y;
  memset(&y, 0x77, sizeof y);
  pp_buffer untouched = y;

  assert_int_equal(pp_alloc(a, 0, 0, &y), PP_EINVAL);
  assert_int_equal(pp_alloc(a, 4096, 0x80, &y), PP_EINVAL);
  assert_int_equal(pp_alloc(a, REGION * 2, 0, &y), PP_ERANGE);
  assert_int_equal(pp_alloc(a, UINT64_MAX, 0, &y), PP_ERANGE);
  assert_memory_equal(&y, &untouched, sizeof y);
  assert_int_equal(pp_alloc_named(a, "", 4096, 0, &y), PP_EINVAL);
  assert_int_equal(pp_lookup(a, "no-such-buffer", &y), PP_ENOENT);

  assert_int_equal(pp_alloc_named(a, "taken", 4096, 0, &x), 0);
  assert_int_equal(pp_alloc_named(b, "taken", 4096, 0, &y), PP_EEXIST);
  /* b does not hold a's buffer: it cannot free it, and a still can. */
  int rc = pp_free(b, x.handle);
  if (rc != PP_ENOENT && rc != PP_EPERM) fail_msg("foreign free gave %s", pp_err_name(rc));
  assert_int_equal(pp_free(a, x.handle), 0);
  rc = pp_free(a, x.handle);
  if (rc != PP_ENOENT && rc != PP_EPERM) fail_msg("double free gave %s", pp_err_name(rc));
  assert_int_equal(pp_lookup(b, "taken", &y), PP_ENOENT);

  pp_disconnect(a);
  pp_disconnect(b);
  assert_books_balanced();
}

static void a_request_too_big_for_a_frame_fails_alone(void **state) {
  pp_client *c = connect_ok("big-name");
  size_t n = 100 * 1024; /* more than the 64 KiB max frame */
  char *name = malloc(n + 1);
  assert_non_null(name);
  memset(name, 'q', n);
  name[n] = '\0';
  pp_buffer b;
  assert_int_equal(pp_alloc_named(c, name, 4096, 0, &b), PP_ERANGE);
  assert_int_equal(pp_lookup(c, name, &b), PP_ERANGE);
  free(name);
  /* Nothing reached the socket, so the connection carries on. */
  assert_int_equal(pp_alloc(c, 4096, 0, &b), 0);
  assert_int_equal(pp_free(c, b.handle), 0);
  pp_disconnect(c);
  assert_books_balanced();
}

/* libpinpool cannot be made to send an unknown cache id, so speak the protocol directly. */
static void unknown_cache_id_is_not_found(void **state) {
  wire_t w;
  assert_int_equal(wire_open(&w, g_d.sock, "raw"), 0);
  assert_int_equal(wire_cache_alloc(&w, 0xFFFFu, 1, NULL, NULL), PP_ENOENT);
  wire_close(&w);
}

/* ---- caches and magazines --------------------------------------------------------- */

static void cache_open_is_idempotent_and_checks_geometry(void **state) {
  pp_client *c = connect_ok("cache-open");
  pp_cache *k1 = NULL, *k2 = NULL, *k3 = (pp_cache *)0x1;
  assert_int_equal(pp_cache_open(c, "geo64", 64, 64, &k1), 0);
  assert_int_equal(pp_cache_open(c, "geo64", 64, 64, &k2), 0);
  assert_ptr_equal(k1, k2);
  assert_int_equal(pp_cache_object_size(k1), 64);
  assert_int_equal(pp_cache_open(c, "geo64", 128, 64, &k3), PP_EGEOMETRY);
  assert_int_equal(pp_cache_open(c, "geo-bad", 0, 8, &k3), PP_EINVAL);
  assert_int_equal(pp_cache_open(c, "geo-bad", 64, 24, &k3), PP_EINVAL);
  assert_int_equal(pp_cache_open(c, "geo-huge", 8u << 20, 8, &k3), PP_ERANGE);
  assert_ptr_equal(k3, (pp_cache *)0x1);
  pp_disconnect(c);
  assert_books_balanced();
}

static void cache_calls_mostly_stay_in_the_process(void **state) {
  pp_client *c = connect_ok("cache-local");
  pp_cache *k;
  assert_int_equal(pp_cache_open(c, "local64", 64, 8, &k), 0);
  void *o = pp_cache_alloc(k);
  assert_non_null(o);
  assert_int_equal(pp_cache_free(k, o), 0);
  uint64_t before = session_row(c).requests;
  for (int i = 0; i < 10000; i++) {
    void *p = pp_cache_alloc(k);
    assert_non_null(p);
    memset(p, i, 64);
    assert_int_equal(pp_cache_free(k, p), 0);
  }
  assert_int_equal(session_row(c).requests, before);
  pp_disconnect(c);
  assert_books_balanced();
}

static void cache_free_refuses_foreign_pointers_without_a_round_trip(void **state) {
  pp_client *c = connect_ok("cache-bad-free");
  pp_cache *k;
  assert_int_equal(pp_cache_open(c, "badfree64", 64, 8, &k), 0);
  uint8_t *o = pp_cache_alloc(k);
  assert_non_null(o);
  uint64_t before = session_row(c).requests;
  int on_stack;
  uint8_t *base = pp_base(c);
  assert_int_equal(pp_cache_free(NULL, o), PP_EINVAL);
  assert_int_equal(pp_cache_free(k, NULL), PP_EINVAL);
  assert_int_equal(pp_cache_free(k, &on_stack), PP_EINVAL);
  assert_int_equal(pp_cache_free(k, base - 64), PP_EINVAL);
  assert_int_equal(pp_cache_free(k, base + REGION), PP_EINVAL);
  assert_int_equal(pp_cache_free(k, o + 1), PP_EINVAL); /* misaligned */
  assert_int_equal(pp_cache_free(k, o + 8), PP_EINVAL); /* aligned, inside the object */
  assert_int_equal(pp_cache_free(k, o + 32), PP_EINVAL);
  void *bulk[3] = {o, o + 16, o};
  assert_int_equal(pp_cache_free_bulk(k, bulk, 3), PP_EINVAL); /* nothing freed */
  assert_int_equal(session_row(c).requests, before);
  assert_int_equal(pp_cache_free(k, o), 0);
  pp_disconnect(c);
  assert_books_balanced();
}

struct dbl_ctx {
  pp_cache *k;
  int errors; /* pp_cache_free calls that failed */
  int first_error;
};

/* A fresh thread, so its magazines start empty and the sequence below is exact:
 * alloc_bulk(130) fetches three magazines and leaves 62 objects loaded; the two frees
 * of p fill loaded (64); the next free swaps it to previous; 64 more fill loaded again;
 * the one after sends previous — with p twice — home, and the daemon refuses it. */
static void *double_free_thread(void *arg) {
  struct dbl_ctx *x = arg;
  void *objs[130];
  if (pp_cache_alloc_bulk(x->k, objs, 130) != 130) {
    x->errors = -1;
    return NULL;
  }
  int rc = pp_cache_free(x->k, objs[0]);
  if (rc < 0) x->errors++, x->first_error = rc;
  for (int i = 0; i < 130; i++) {
    rc = pp_cache_free(x->k, objs[i]);
    if (rc < 0 && x->errors++ == 0) x->first_error = rc;
  }
  return NULL;
}

static void cache_double_free_is_caught_when_the_magazine_goes_home(void **state) {
  pp_client *c = connect_ok("cache-double");
  pp_cache *k;
  assert_int_equal(pp_cache_open(c, "double64", 64, 64, &k), 0);
  struct dbl_ctx x = {.k = k};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, double_free_thread, &x), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(x.errors, 1);
  assert_string_equal(pp_err_name(x.first_error), pp_err_name(PP_EDOUBLEFREE));
  /* The good objects went home one by one and the thread's exit returned the rest:
   * the session holds nothing although the duplicate was dropped. */
  testd_session_t s = session_row(c);
  assert_int_equal(s.objects, 0);
  pp_disconnect(c);
  assert_books_balanced();
}

struct bulk_ctx {
  pp_cache *k;
  int alloc_rc, bad_rc, free_rc;
  int corrupt;
};

static void *bulk_thread(void *arg) {
  struct bulk_ctx *x = arg;
  static void *objs[300];
  x->alloc_rc = pp_cache_alloc_bulk(x->k, objs, 300);
  if (x->alloc_rc != 300) return NULL;
  for (int i = 0; i < 300; i++)
    memset(objs[i], i & 0xFF, 200);
  for (int i = 0; i < 300; i++)
    for (int j = 0; j < 200; j++)
      if (((uint8_t *)objs[i])[j] != (i & 0xFF)) x->corrupt++;
  void *saved = objs[150];
  objs[150] = (uint8_t *)saved + 100; /* half-way into an object */
  x->bad_rc = pp_cache_free_bulk(x->k, objs, 300);
  objs[150] = saved;
  x->free_rc = pp_cache_free_bulk(x->k, objs, 300);
  return NULL;
}

static void cache_bulk_calls_are_all_or_nothing(void **state) {
  pp_client *c = connect_ok("cache-bulk");
  pp_cache *k;
  /* 200-byte objects: stride 200 is not a power of two, slabs carry a colored tail. */
  assert_int_equal(pp_cache_open(c, "bulk200", 200, 8, &k), 0);
  struct bulk_ctx x = {.k = k};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, bulk_thread, &x), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_int_equal(x.alloc_rc, 300);
  assert_int_equal(x.corrupt, 0);
  assert_int_equal(x.bad_rc, PP_EINVAL);
  /* Had the refused call freed anything, this one would free it twice and hear of it. */
  assert_int_equal(x.free_rc, 0);
  assert_int_equal(session_row(c).objects, 0);
  pp_disconnect(c);
  assert_books_balanced();
}

/* ---- crashes and lost connections ------------------------------------------------- */

static void killed_client_holdings_all_come_back(void **state) {
  int ready[2];
  assert_int_equal(pipe(ready), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    pp_client *c = NULL;
    pp_buffer b;
    pp_cache *k;
    if (pp_connect(g_d.sock, "doomed", &c) != 0) _exit(1);
    if (pp_alloc(c, 1 << 20, 0, &b) != 0) _exit(2);
    if (pp_alloc(c, 3000, PP_ZERO, &b) != 0) _exit(3);
    if (pp_alloc_named(c, "doomed-named", 70000, 0, &b) != 0) _exit(4);
    if (pp_cache_open(c, "doomed48", 48, 16, &k) != 0) _exit(5);
    for (int i = 0; i < 100; i++) /* in hand and in the magazines */
      if (!pp_cache_alloc(k)) _exit(6);
    say(ready[1]);
    pause();
    _exit(0);
  }
  close(ready[1]);
  assert_int_equal(wait_byte(ready[0]), 0);
  close(ready[0]);
  testd_books_t b;
  assert_int_equal(testd_books(&g_d, 0, &b, NULL), 0);
  assert_true(b.free_bytes < g_baseline_free);
  kill(pid, SIGKILL);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFSIGNALED(st));
  assert_books_balanced();
  pp_client *c = connect_ok("after-doom");
  pp_buffer x;
  assert_int_equal(pp_lookup(c, "doomed-named", &x), PP_ENOENT);
  pp_disconnect(c);
}

/* Tests that need a daemon of their own get it from a setup, so that the teardown stops
 * it even when an assertion fails half-way. */
static int own_daemon_setup(void **state) {
  testd_t *d = calloc(1, sizeof *d);
  if (!d || testd_start(d, NULL) < 0) {
    free(d);
    return -1;
  }
  *state = d;
  return 0;
}

static int limited_daemon_setup(void **state) {
  testd_t *d = calloc(1, sizeof *d);
  if (!d ||
      testd_start(d, "--max-clients", "1", "--quota", "1M", "--max-buffers", "2", NULL) < 0) {
    free(d);
    return -1;
  }
  *state = d;
  return 0;
}

static int own_daemon_teardown(void **state) {
  int rc = testd_stop(*state);
  free(*state);
  return rc;
}

static void a_dead_daemon_is_reported_and_the_mapping_stays(void **state) {
  testd_t *d2 = *state;
  pp_client *c = NULL;
  assert_int_equal(pp_connect(d2->sock, "orphan", &c), 0);
  pp_buffer b;
  assert_int_equal(pp_alloc(c, 8192, 0, &b), 0);
  memset(b.addr, 0x3C, b.size);
  kill(d2->pid, SIGKILL);
  int st;
  waitpid(d2->pid, &st, 0);
  d2->pid = 0;
  pp_buffer y;
  int rc = pp_alloc(c, 4096, 0, &y);
  if (rc != PP_EDISCONNECTED && rc != PP_EIO)
    fail_msg("after the daemon died: %s", pp_err_name(rc));
  assert_int_equal(pp_free(c, b.handle), rc); /* the first error sticks */
  for (uint64_t i = 0; i < b.size; i++)
    assert_int_equal(((uint8_t *)b.addr)[i], 0x3C);
  pp_disconnect(c);
}

static void daemon_limits_reach_the_caller_as_typed_errors(void **state) {
  testd_t *d2 = *state;
  pp_client *c = NULL, *c2 = (pp_client *)0x1;
  int rc;
  /* testd's readiness probe held the only client slot until the daemon saw it close. */
  for (int i = 0; (rc = pp_connect(d2->sock, "limited", &c)) == PP_ETOOMANY && i < 500; i++)
    usleep(10000);
  assert_int_equal(rc, 0);
  assert_int_equal(pp_connect(d2->sock, "one-too-many", &c2), PP_ETOOMANY);
  assert_ptr_equal(c2, (pp_client *)0x1);
  pp_buffer a, b, x;
  assert_int_equal(pp_alloc(c, 4096, 0, &a), 0);
  assert_int_equal(pp_alloc(c, 4096, 0, &b), 0);
  assert_int_equal(pp_alloc(c, 4096, 0, &x), PP_ELIMIT);
  assert_int_equal(pp_free(c, b.handle), 0);
  assert_int_equal(pp_alloc(c, 1 << 20, 0, &x), PP_EQUOTA); /* 4 KiB + 1 MiB > 1 MiB */
  assert_int_equal(pp_free(c, a.handle), 0);
  assert_int_equal(pp_alloc(c, 1 << 20, 0, &x), 0);
  assert_int_equal(pp_free(c, x.handle), 0);
  pp_disconnect(c);
}

/* ---- the error table -------------------------------------------------------------- */

static void strerror_and_err_name_cover_every_code(void **state) {
  assert_string_equal(pp_strerror(0), "success");
  assert_string_equal(pp_err_name(0), "PP_OK");
#define XX(suffix, num, status, msg)                                                           \
  assert_string_equal(pp_strerror(PP_##suffix), msg);                                          \
  assert_string_equal(pp_err_name(PP_##suffix), "PP_" #suffix);                                \
  assert_string_equal(pp_status_name(PP_##suffix), #status);                                   \
  assert_int_equal(PP_##suffix, -(num));
  PP_ERRNO_MAP(XX)
#undef XX
  for (int e = -1; e > -PP__ERR_MAX; e--)
    assert_string_not_equal(pp_strerror(e), "unknown error");
  assert_string_equal(pp_strerror(-PP__ERR_MAX), "unknown error");
  assert_string_equal(pp_strerror(1), "unknown error");
  assert_string_equal(pp_err_name(-PP__ERR_MAX), "PP_UNKNOWN");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(strerror_and_err_name_cover_every_code),
      cmocka_unit_test(connect_maps_the_whole_region_and_reports_its_geometry),
      cmocka_unit_test(connect_to_a_missing_socket_is_econnect),
      cmocka_unit_test(connect_to_a_socket_nobody_listens_on_is_econnect),
      cmocka_unit_test(connect_outside_the_sockets_group_is_eacces),
      cmocka_unit_test(connect_rejects_bad_arguments),
      cmocka_unit_test(connect_without_a_path_follows_PINPOOL_SOCKET),
      cmocka_unit_test(a_long_client_name_is_cut_not_refused),
      cmocka_unit_test(alloc_rounds_up_to_a_naturally_aligned_block),
      cmocka_unit_test(zero_flag_gives_zeroed_memory_even_after_reuse),
      cmocka_unit_test(named_buffer_is_shared_between_processes_until_both_free),
      cmocka_unit_test(buffer_phys_agrees_with_this_process_pagemap),
      cmocka_unit_test(buffer_errors_map_to_their_codes),
      cmocka_unit_test(a_request_too_big_for_a_frame_fails_alone),
      cmocka_unit_test(unknown_cache_id_is_not_found),
      cmocka_unit_test(cache_open_is_idempotent_and_checks_geometry),
      cmocka_unit_test(cache_calls_mostly_stay_in_the_process),
      cmocka_unit_test(cache_free_refuses_foreign_pointers_without_a_round_trip),
      cmocka_unit_test(cache_double_free_is_caught_when_the_magazine_goes_home),
      cmocka_unit_test(cache_bulk_calls_are_all_or_nothing),
      cmocka_unit_test(killed_client_holdings_all_come_back),
      cmocka_unit_test_setup_teardown(a_dead_daemon_is_reported_and_the_mapping_stays,
                                      own_daemon_setup, own_daemon_teardown),
      cmocka_unit_test_setup_teardown(daemon_limits_reach_the_caller_as_typed_errors,
                                      limited_daemon_setup, own_daemon_teardown),
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
