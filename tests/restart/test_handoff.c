/*
 * test_handoff.c — the reload handoff's format (daemon/handoff.c) on its own, no daemon:
 *
 *   - what is written is read back exactly: flags, the three descriptors, the uptime's
 *     origin, the session counter, the socket path, detached sessions with their deadlines,
 *     connections of every kind with their input and reply bytes (empty ones too), and
 *     the other pools' names, descriptors and flags;
 *   - any one byte changed, anywhere, and any cut makes the read fail — never a handoff that
 *     reads back different; damage in the body still leaves the stable part (socket,
 *     region, journal, the connections' descriptors) for the fallback, damage in the
 *     header leaves nothing;
 *   - a version newer than the reader's is refused with the stable part given, and so is a
 *     handoff another process wrote;
 *   - handoff_take: no variable is a plain start; a variable naming nothing usable is an
 *     error; a good handoff hands every descriptor back close-on-exec and unsets the
 *     variable (a pool whose descriptors are not open is left out, to start fresh); one of
 *     an unknown version closes the connections and keeps the rest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "handoff.h"
#include "journal.h"
#include "pinpool_err.h"

static uint8_t in0[] = {1, 2, 3}, in1[] = {4, 0, 0, 0, 9}, out1[] = {7, 7, 7, 7, 7, 7, 7},
               out2[] = {42};

/* A handoff with one connection of each kind; fds are the caller's. */
static void sample(handoff_t *h, int listen_fd, int region_fd, int journal_fd,
                   const int conn_fd[3]) {
  static handoff_conn_t conns[3];
  static handoff_detached_t det[2] = {{.session_id = 9, .deadline_unix_ms = 1700000000123ull},
                                      {.session_id = 12, .deadline_unix_ms = 1700000000456ull}};
  conns[0] = (handoff_conn_t){.fd = conn_fd[0],
                              .kind = HANDOFF_CONN_FRESH,
                              .uid = 1000,
                              .in = in0,
                              .in_len = sizeof in0};
  conns[1] = (handoff_conn_t){.fd = conn_fd[1],
                              .kind = HANDOFF_CONN_SESSION,
                              .replay_armed = true,
                              .uid = 0,
                              .session_id = 5,
                              .requests = 77,
                              .in = in1,
                              .in_len = sizeof in1,
                              .out = out1,
                              .out_len = sizeof out1};
  conns[2] = (handoff_conn_t){
      .fd = conn_fd[2], .kind = HANDOFF_CONN_CLOSING, .uid = 65534, .out = out2, .out_len = 1};
  *h = (handoff_t){.flags = HANDOFF_OWN_SOCKET | HANDOFF_STORED,
                   .listen_fd = listen_fd,
                   .region_fd = region_fd,
                   .journal_fd = journal_fd,
                   .started_ms = 123456789,
                   .reload_start_ns = 987654321,
                   .next_session_id = 13,
                   .reloads = 2,
                   .conns = conns,
                   .nconns = 3,
                   .detached = det,
                   .ndetached = 2};
  snprintf(h->socket_path, sizeof h->socket_path, "/run/pinpool/pinpool.sock");
  static handoff_pool_t pools[2];
  pools[0] = (handoff_pool_t){
      .name = "cam", .region_fd = 50, .journal_fd = 51, .flags = HANDOFF_STORED};
  pools[1] = (handoff_pool_t){
      .name = "big", .region_fd = 52, .journal_fd = 53, .flags = HANDOFF_JOURNAL_TEMP};
  h->pools = pools;
  h->npools = 2;
}

static const int fake_fds[3] = {40, 41, 42};

static void assert_same(const handoff_t *a, const handoff_t *b) {
  assert_int_equal(a->flags, b->flags);
  assert_int_equal(a->listen_fd, b->listen_fd);
  assert_int_equal(a->region_fd, b->region_fd);
  assert_int_equal(a->journal_fd, b->journal_fd);
  assert_int_equal(a->started_ms, b->started_ms);
  assert_int_equal(a->reload_start_ns, b->reload_start_ns);
  assert_int_equal(a->next_session_id, b->next_session_id);
  assert_int_equal(a->reloads, b->reloads);
  assert_string_equal(a->socket_path, b->socket_path);
  assert_int_equal(a->ndetached, b->ndetached);
  for (uint32_t i = 0; i < a->ndetached; i++) {
    assert_int_equal(a->detached[i].session_id, b->detached[i].session_id);
    assert_int_equal(a->detached[i].deadline_unix_ms, b->detached[i].deadline_unix_ms);
  }
  assert_int_equal(a->npools, b->npools);
  for (uint32_t i = 0; i < a->npools; i++) {
    assert_string_equal(a->pools[i].name, b->pools[i].name);
    assert_int_equal(a->pools[i].region_fd, b->pools[i].region_fd);
    assert_int_equal(a->pools[i].journal_fd, b->pools[i].journal_fd);
    assert_int_equal(a->pools[i].flags, b->pools[i].flags);
  }
  assert_int_equal(a->nconns, b->nconns);
  for (uint32_t i = 0; i < a->nconns; i++) {
    const handoff_conn_t *x = &a->conns[i], *y = &b->conns[i];
    assert_int_equal(x->fd, y->fd);
    assert_int_equal(x->kind, y->kind);
    assert_int_equal(x->replay_armed, y->replay_armed);
    assert_int_equal(x->uid, y->uid);
    assert_int_equal(x->session_id, y->session_id);
    assert_int_equal(x->requests, y->requests);
    assert_int_equal(x->in_len, y->in_len);
    assert_int_equal(x->out_len, y->out_len);
    if (x->in_len) assert_memory_equal(x->in, y->in, x->in_len);
    if (x->out_len) assert_memory_equal(x->out, y->out, x->out_len);
  }
}

/* The bytes of the handoff in fd. */
static uint8_t *bytes_of(int fd, size_t *len) {
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  uint8_t *b = malloc((size_t)st.st_size);
  assert_non_null(b);
  assert_int_equal(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
  *len = (size_t)st.st_size;
  return b;
}

static int fd_of(const uint8_t *b, size_t len) {
  int fd = memfd_create("test-handoff", MFD_CLOEXEC);
  assert_true(fd >= 0);
  if (len) assert_int_equal(write(fd, b, len), (ssize_t)len);
  return fd;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the header's crc (offset 16) after a test changed a header field. */
static void reseal_header(uint8_t *b) {
  uint32_t hlen = get32(b + 12), nfds = get32(b + 40);
  put32(b + 16, 0);
  put32(b + 16, journal_crc32c(0, b, hlen + 4 * nfds));
}

static void what_is_written_is_read_back(void **state) {
  handoff_t h, r;
  int *fds = NULL, fd;
  uint32_t nfds = 0;
  char why[160];
  sample(&h, 30, 31, 32, fake_fds);
  assert_int_equal(handoff_write(&h, HANDOFF_VERSION, &fd), 0);
  /* Sealed and close-on-exec. */
  assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
  assert_true(fcntl(fd, F_GET_SEALS) & F_SEAL_WRITE);
  assert_int_equal(handoff_read(fd, &r, &fds, &nfds, why, sizeof why), 0);
  assert_int_equal(r.version, HANDOFF_VERSION);
  assert_same(&h, &r);
  assert_int_equal(nfds, 3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(fds[i], fake_fds[i]);
  handoff_free(&r);
  free(fds);
  close(fd);

  /* Nothing at all: no connection, no session, no path. */
  handoff_t e = {.listen_fd = 3, .region_fd = 4, .journal_fd = 5};
  assert_int_equal(handoff_write(&e, HANDOFF_VERSION, &fd), 0);
  assert_int_equal(handoff_read(fd, &r, &fds, &nfds, why, sizeof why), 0);
  assert_same(&e, &r);
  assert_int_equal(nfds, 0);
  handoff_free(&r);
  close(fd);
}

static void any_changed_byte_or_cut_is_refused(void **state) {
  handoff_t h, r;
  int *fds = NULL, fd;
  uint32_t nfds = 0;
  size_t len;
  char why[160];
  sample(&h, 30, 31, 32, fake_fds);
  assert_int_equal(handoff_write(&h, HANDOFF_VERSION, &fd), 0);
  uint8_t *good = bytes_of(fd, &len);
  close(fd);
  size_t stable = 48 + 4 * 3; /* the header and the fd list */
  for (size_t off = 0; off < len; off++) {
    for (int bit = 0; bit < 8; bit += 3) {
      good[off] ^= (uint8_t)(1u << bit);
      fd = fd_of(good, len);
      int rc = handoff_read(fd, &r, &fds, &nfds, why, sizeof why);
      close(fd);
      good[off] ^= (uint8_t)(1u << bit);
      if (rc == 0) fail_msg("byte %zu bit %d changed and the handoff still read", off, bit);
      if (off < stable) {
        assert_int_equal(r.listen_fd, -1); /* nothing to trust */
        assert_int_equal(nfds, 0);
      } else {
        assert_int_equal(rc, PP_ECORRUPT);
        assert_int_equal(r.listen_fd, 30); /* the stable part stands */
        assert_int_equal(r.journal_fd, 32);
        assert_int_equal(nfds, 3);
        assert_int_equal(r.nconns, 0);
      }
      free(fds);
      fds = NULL;
    }
  }
  for (size_t cut = 0; cut < len; cut++) {
    fd = fd_of(good, cut);
    assert_int_not_equal(handoff_read(fd, &r, &fds, &nfds, why, sizeof why), 0);
    assert_int_equal(r.listen_fd, -1);
    close(fd);
    free(fds);
    fds = NULL;
  }
  free(good);
}

static void a_newer_version_or_another_process_gives_no_body(void **state) {
  handoff_t h, r;
  int *fds = NULL, fd;
  uint32_t nfds = 0;
  size_t len;
  char why[160];
  sample(&h, 30, 31, 32, fake_fds);
  assert_int_equal(handoff_write(&h, HANDOFF_VERSION + 1, &fd), 0);
  assert_int_equal(handoff_read(fd, &r, &fds, &nfds, why, sizeof why), PP_EVERSION);
  assert_non_null(strstr(why, "version"));
  assert_int_equal(r.listen_fd, 30);
  assert_int_equal(r.region_fd, 31);
  assert_int_equal(r.journal_fd, 32);
  assert_int_equal(r.flags, HANDOFF_OWN_SOCKET | HANDOFF_STORED);
  assert_int_equal(nfds, 3);
  assert_int_equal(fds[2], 42);
  assert_int_equal(r.nconns, 0);
  free(fds);
  close(fd);

  /* Written by another pid (its header otherwise whole). */
  assert_int_equal(handoff_write(&h, HANDOFF_VERSION, &fd), 0);
  uint8_t *b = bytes_of(fd, &len);
  close(fd);
  put32(b + 24, get32(b + 24) + 1);
  reseal_header(b);
  fd = fd_of(b, len);
  assert_int_equal(handoff_read(fd, &r, &fds, &nfds, why, sizeof why), PP_ECORRUPT);
  assert_non_null(strstr(why, "not by this process"));
  assert_int_equal(r.listen_fd, -1);
  close(fd);
  free(b);
}

/* ---- handoff_take ------------------------------------------------------------------------ */

static int open_null(void) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  assert_true(fd >= 3);
  return fd;
}

static bool is_open(int fd) {
  return fcntl(fd, F_GETFD) >= 0;
}

static bool cloexec(int fd) {
  return (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0;
}

static void set_env_fd(int fd) {
  char v[16];
  snprintf(v, sizeof v, "%d", fd);
  setenv(HANDOFF_ENV, v, 1);
}

static void no_variable_is_a_plain_start_and_a_bad_one_an_error(void **state) {
  handoff_t r;
  unsetenv(HANDOFF_ENV);
  assert_int_equal(handoff_take(&r), 0);
  setenv(HANDOFF_ENV, "banana", 1);
  assert_int_equal(handoff_take(&r), PP_ECORRUPT);
  assert_null(getenv(HANDOFF_ENV));
  set_env_fd(1000); /* not open */
  assert_int_equal(handoff_take(&r), PP_ECORRUPT);
  /* A handoff whose descriptors are not open here. */
  handoff_t h;
  int fd;
  sample(&h, 900, 901, 902, fake_fds);
  assert_int_equal(handoff_write(&h, HANDOFF_VERSION, &fd), 0);
  set_env_fd(fd);
  assert_int_equal(handoff_take(&r), PP_ECORRUPT);
  assert_false(is_open(fd)); /* read and closed */
}

static void a_good_handoff_gives_every_descriptor_back_close_on_exec(void **state) {
  int l = open_null(), rg = open_null(), j = open_null(), c[3], p[4], hfd;
  handoff_t h, r;
  for (int i = 0; i < 3; i++) {
    c[i] = open_null();
    fcntl(c[i], F_SETFD, 0); /* as execve leaves them */
  }
  for (int i = 0; i < 4; i++) {
    p[i] = open_null();
    fcntl(p[i], F_SETFD, 0);
  }
  fcntl(l, F_SETFD, 0);
  sample(&h, l, rg, j, c);
  for (uint32_t i = 0; i < h.npools; i++) { /* the pools' region and journal: open too */
    h.pools[i].region_fd = p[2 * i];
    h.pools[i].journal_fd = p[2 * i + 1];
  }
  assert_int_equal(handoff_write(&h, HANDOFF_VERSION, &hfd), 0);
  set_env_fd(hfd);
  assert_int_equal(handoff_take(&r), 1);
  assert_null(getenv(HANDOFF_ENV));
  assert_false(r.fell_back);
  assert_false(is_open(hfd));
  assert_same(&h, &r);
  assert_true(cloexec(l) && cloexec(rg) && cloexec(j));
  for (int i = 0; i < 3; i++)
    assert_true(cloexec(c[i]));
  for (int i = 0; i < 4; i++)
    assert_true(cloexec(p[i]));
  handoff_free(&r);

  /* A pool whose descriptors are not open is left out (it starts fresh); the rest stands. */
  h.pools[1].journal_fd = 900;
  assert_int_equal(handoff_write(&h, HANDOFF_VERSION, &hfd), 0);
  set_env_fd(hfd);
  assert_int_equal(handoff_take(&r), 1);
  assert_false(r.fell_back);
  assert_int_equal(r.pools[0].region_fd, p[0]);
  assert_int_equal(r.pools[1].region_fd, -1);
  assert_int_equal(r.pools[1].journal_fd, -1);
  handoff_free(&r);
  h.pools[1].journal_fd = p[3];

  /* The same handoff in a version this binary does not read: the connections are closed,
   * the socket, region and journal kept. */
  assert_int_equal(handoff_write(&h, HANDOFF_VERSION + 1, &hfd), 0);
  set_env_fd(hfd);
  assert_int_equal(handoff_take(&r), 1);
  assert_true(r.fell_back);
  assert_non_null(strstr(r.why, "version"));
  assert_int_equal(r.nconns, 0);
  assert_int_equal(r.listen_fd, l);
  for (int i = 0; i < 3; i++)
    assert_false(is_open(c[i]));
  assert_true(is_open(l) && is_open(rg) && is_open(j));
  handoff_free(&r);
  close(l);
  close(rg);
  close(j);
  for (int i = 0; i < 4; i++)
    close(p[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(what_is_written_is_read_back),
      cmocka_unit_test(any_changed_byte_or_cut_is_refused),
      cmocka_unit_test(a_newer_version_or_another_process_gives_no_body),
      cmocka_unit_test(no_variable_is_a_plain_start_and_a_bad_one_an_error),
      cmocka_unit_test(a_good_handoff_gives_every_descriptor_back_close_on_exec),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
