/*
 * test_client_proto.c — libpinpool facing a daemon that misbehaves.  A scripted fake
 * server (a thread on a temporary socket) answers the handshake and the first request
 * with exactly the bytes a test wants, so that each defensive check of the client is
 * seen to fire: bad frames, a Welcome without the memfd or with a region the memfd
 * cannot back, unknown versions and statuses, a reply to the wrong request, a buffer
 * outside the region, a buffer cache refill with a misplaced block, a daemon without the
 * bulk requests; and libpinpool's own memory running out (a calloc that fails on
 * demand).  No real pinpoold is involved.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "pinpool.h"

#define FAKE_REGION (1u << 20)

/* Private memory running out, on demand: this program's calloc (which libpinpool's calls
 * reach, the executable coming first in symbol lookup) fails while the calling thread has
 * armed it, and otherwise forwards to the next calloc — libc's, or a sanitizer's. */
static _Thread_local int calloc_fails;
static void *(*next_calloc)(size_t, size_t);

__attribute__((constructor)) static void find_next_calloc(void) {
  next_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
}

__attribute__((visibility("default"))) void *calloc(size_t n, size_t size) {
  if (calloc_fails || !next_calloc) return NULL;
  return next_calloc(n, size);
}

typedef enum {
  WELCOME_OK, /* a proper Welcome with a 1 MiB memfd */
  WELCOME_NO_FD,
  WELCOME_VERSION_2,
  WELCOME_REGION_TOO_BIG, /* region_size larger than the memfd */
  ZERO_LENGTH_FRAME,
  STATUS_UNSUPPORTED_VERSION,
  STATUS_UNKNOWN, /* a status number outside the table */
} fake_hello_t;

typedef enum {
  NEXT_NONE,
  NEXT_WRONG_ID,        /* answer the next request with another id */
  NEXT_BUFFER_OUTSIDE,  /* a Buffer that ends past the region */
  NEXT_CLOSE,           /* hang up instead of answering */
  NEXT_CACHE_INFO,      /* a CacheInfo with FAKE_SLAB_BYTES per slab */
  NEXT_BULK_MISALIGNED, /* Welcome with FEATURE_BULK; Buffers whose 5th block is not
                           aligned to its size; then the request after it is recorded */
} fake_next_t;

/* The cache NEXT_CACHE_INFO announces: 8 objects of 1 KiB in a 16 KiB slab.  pinpoold
 * would make that slab 8 KiB; a client that infers the slab size from the objects instead
 * of reading CacheInfo.slab_bytes gets it wrong. */
#define FAKE_OBJ_SIZE 1024u
#define FAKE_OBJS_PER_SLAB 8u
#define FAKE_SLAB_BYTES 16384u

typedef struct fake {
  char dir[64], sock[96];
  int lfd;
  fake_hello_t hello;
  fake_next_t next;
  pthread_t t;
  int after_case;    /* NEXT_BULK_MISALIGNED: the body of the request after the reply */
  size_t after_n;    /* and its handles when it is a free_bulk */
  uint64_t after_h0; /* the first of them */
} fake_t;

/* Read one request frame (blocking); the request, or NULL on EOF/error. */
static Pinpool__V1__Request *fake_read_full(int fd) {
  uint8_t hdr[4];
  if (recv(fd, hdr, 4, MSG_WAITALL) != 4) return NULL;
  uint32_t n = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
  if (n == 0 || n > 65536) return NULL;
  uint8_t *buf = malloc(n);
  if (!buf || recv(fd, buf, n, MSG_WAITALL) != (ssize_t)n) {
    free(buf);
    return NULL;
  }
  Pinpool__V1__Request *req = frame_unpack_request(buf, n, 1 << 20);
  free(buf);
  return req;
}

/* Read one request frame (blocking); its id, or 0 on EOF/error. */
static uint64_t fake_read_request(int fd) {
  uint8_t hdr[4];
  if (recv(fd, hdr, 4, MSG_WAITALL) != 4) return 0;
  uint32_t n = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
  if (n == 0 || n > 65536) return 0;
  uint8_t *buf = malloc(n);
  if (!buf || recv(fd, buf, n, MSG_WAITALL) != (ssize_t)n) {
    free(buf);
    return 0;
  }
  Pinpool__V1__Request *req = frame_unpack_request(buf, n, 1 << 20);
  free(buf);
  uint64_t id = req ? req->id : 0;
  frame_free_request(req);
  return id;
}

static void *fake_main(void *arg) {
  fake_t *f = arg;
  int fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return NULL;
  int memfd = memfd_create("fake-region", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, FAKE_REGION) < 0) goto out;
  uint64_t id = fake_read_request(fd);
  if (id == 0) goto out;

  Pinpool__V1__Welcome w = PINPOOL__V1__WELCOME__INIT;
  w.protocol_version = 1;
  w.session_id = 7;
  w.region_size = FAKE_REGION;
  w.page_size = 4096;
  w.max_frame = 65536;
  Pinpool__V1__Response resp = PINPOOL__V1__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = PINPOOL__V1__RESPONSE__BODY_WELCOME;
  resp.welcome = &w;
  int pass = memfd;
  switch (f->hello) {
  case WELCOME_OK:
    if (f->next == NEXT_BULK_MISALIGNED) w.features = PINPOOL__V1__FEATURE__FEATURE_BULK;
    break;
  case WELCOME_NO_FD: pass = -1; break;
  case WELCOME_VERSION_2: w.protocol_version = 2; break;
  case WELCOME_REGION_TOO_BIG: w.region_size = 2 * FAKE_REGION; break;
  case ZERO_LENGTH_FRAME: {
    static const uint8_t zero[4] = {0, 0, 0, 0};
    if (write(fd, zero, 4) != 4) goto out;
    goto drain;
  }
  case STATUS_UNSUPPORTED_VERSION:
    resp.status = PINPOOL__V1__STATUS__UNSUPPORTED_VERSION;
    resp.body_case = PINPOOL__V1__RESPONSE__BODY__NOT_SET;
    break;
  case STATUS_UNKNOWN:
    resp.status = (Pinpool__V1__Status)99;
    resp.body_case = PINPOOL__V1__RESPONSE__BODY__NOT_SET;
    break;
  }
  if (frame_send(fd, &resp.base, 65536, pass) < 0) goto out;

  if (f->next == NEXT_NONE) goto drain;
  if (f->next == NEXT_BULK_MISALIGNED) {
    Pinpool__V1__Request *req = fake_read_full(fd);
    if (!req || req->body_case != PINPOOL__V1__REQUEST__BODY_ALLOC_BULK) {
      frame_free_request(req);
      goto out;
    }
    uint32_t count = req->alloc_bulk->count;
    Pinpool__V1__Buffer bb[64], *bp[64];
    Pinpool__V1__Buffers bs = PINPOOL__V1__BUFFERS__INIT;
    Pinpool__V1__Response r3 = PINPOOL__V1__RESPONSE__INIT;
    for (uint32_t i = 0; i < count && i < 64; i++) {
      pinpool__v1__buffer__init(&bb[i]);
      bb[i].handle = 100 + i;
      bb[i].offset = i * 4096 + (i == 4 ? 512 : 0);
      bb[i].size = 4096;
      bb[i].contiguous = true;
      bp[i] = &bb[i];
    }
    bs.buffers = bp;
    bs.n_buffers = count < 64 ? count : 64;
    r3.id = req->id;
    r3.body_case = PINPOOL__V1__RESPONSE__BODY_BUFFERS;
    r3.buffers = &bs;
    frame_free_request(req);
    if (frame_send(fd, &r3.base, 65536, -1) < 0) goto out;
    req = fake_read_full(fd);
    if (req) {
      f->after_case = (int)req->body_case;
      if (req->body_case == PINPOOL__V1__REQUEST__BODY_FREE_BULK) {
        f->after_n = req->free_bulk->n_handles;
        if (f->after_n) f->after_h0 = req->free_bulk->handles[0];
      }
      Pinpool__V1__Response r4 = PINPOOL__V1__RESPONSE__INIT;
      r4.id = req->id;
      frame_free_request(req);
      if (frame_send(fd, &r4.base, 65536, -1) < 0) goto out;
    }
    goto drain;
  }
  id = fake_read_request(fd);
  if (id == 0 || f->next == NEXT_CLOSE) goto out;
  Pinpool__V1__Buffer b = PINPOOL__V1__BUFFER__INIT;
  Pinpool__V1__CacheInfo ci = PINPOOL__V1__CACHE_INFO__INIT;
  Pinpool__V1__Response r2 = PINPOOL__V1__RESPONSE__INIT;
  r2.id = id;
  r2.body_case = PINPOOL__V1__RESPONSE__BODY_BUFFER;
  r2.buffer = &b;
  if (f->next == NEXT_CACHE_INFO) {
    ci.cache_id = 3;
    ci.object_size = FAKE_OBJ_SIZE;
    ci.align = 8;
    ci.objects_per_slab = FAKE_OBJS_PER_SLAB;
    ci.slab_bytes = FAKE_SLAB_BYTES;
    r2.body_case = PINPOOL__V1__RESPONSE__BODY_CACHE;
    r2.cache = &ci;
  }
  b.handle = 1;
  b.offset = FAKE_REGION - 4096;
  b.size = 4096;
  if (f->next == NEXT_WRONG_ID) r2.id = id + 1;
  if (f->next == NEXT_BUFFER_OUTSIDE) b.size = 8192;
  if (frame_send(fd, &r2.base, 65536, -1) < 0) goto out;
drain:
  /* Hold the connection until the client hangs up, so that what it saw came from the
   * bytes above and not from an early EOF. */
  while (fake_read_request(fd) != 0)
    ;
out:
  if (memfd >= 0) close(memfd);
  close(fd);
  return NULL;
}

static int fake_setup(void **state) {
  fake_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  snprintf(f->dir, sizeof f->dir, "/tmp/pp-client-fake-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  snprintf(f->sock, sizeof f->sock, "%s/fake.sock", f->dir);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->sock);
  f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
      listen(f->lfd, 4) < 0)
    return -1;
  *state = f;
  return 0;
}

static int fake_teardown(void **state) {
  fake_t *f = *state;
  close(f->lfd);
  unlink(f->sock);
  rmdir(f->dir);
  free(f);
  return 0;
}

static void fake_start(fake_t *f, fake_hello_t hello, fake_next_t next) {
  f->hello = hello;
  f->next = next;
  assert_int_equal(pthread_create(&f->t, NULL, fake_main, f), 0);
}

/* pp_connect against the script; returns its code and joins the server. */
static int fake_connect(fake_t *f, fake_hello_t hello) {
  fake_start(f, hello, NEXT_NONE);
  pp_client *c = NULL;
  int rc = pp_connect(f->sock, "victim", &c);
  if (rc == 0) pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
  return rc;
}

static void handshake_checks_reject_a_bad_welcome(void **state) {
  fake_t *f = *state;
  assert_int_equal(fake_connect(f, WELCOME_OK), 0);
  assert_int_equal(fake_connect(f, WELCOME_NO_FD), PP_EPROTO);
  assert_int_equal(fake_connect(f, WELCOME_VERSION_2), PP_EVERSION);
  assert_int_equal(fake_connect(f, WELCOME_REGION_TOO_BIG), PP_EPROTO);
  assert_int_equal(fake_connect(f, ZERO_LENGTH_FRAME), PP_EPROTO);
  assert_int_equal(fake_connect(f, STATUS_UNSUPPORTED_VERSION), PP_EVERSION);
  assert_int_equal(fake_connect(f, STATUS_UNKNOWN), PP_EPROTO);
}

static void a_reply_to_another_request_breaks_the_connection_for_good(void **state) {
  fake_t *f = *state;
  fake_start(f, WELCOME_OK, NEXT_WRONG_ID);
  pp_client *c = NULL;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  assert_int_equal(pp_region_size(c), FAKE_REGION);
  assert_int_equal(pp_session_id(c), 7);
  pp_buffer b;
  assert_int_equal(pp_alloc(c, 4096, 0, &b), PP_EPROTO);
  assert_int_equal(pp_free(c, 1), PP_EPROTO); /* sticky, and no more I/O */
  pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
}

static void a_buffer_outside_the_region_is_refused(void **state) {
  fake_t *f = *state;
  fake_start(f, WELCOME_OK, NEXT_BUFFER_OUTSIDE);
  pp_client *c = NULL;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  pp_buffer b;
  memset(&b, 0x55, sizeof b);
  pp_buffer before = b;
  assert_int_equal(pp_alloc(c, 4096, 0, &b), PP_EPROTO);
  assert_memory_equal(&b, &before, sizeof b);
  pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
}

static void a_hang_up_mid_session_is_disconnected(void **state) {
  fake_t *f = *state;
  fake_start(f, WELCOME_OK, NEXT_CLOSE);
  pp_client *c = NULL;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  pp_buffer b;
  assert_int_equal(pp_alloc(c, 4096, 0, &b), PP_EDISCONNECTED);
  assert_int_equal(pp_alloc(c, 4096, 0, &b), PP_EDISCONNECTED);
  pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
}

static void connect_without_private_memory_is_enoprivmem(void **state) {
  fake_t *f = *state;
  pp_client *c = (pp_client *)0x1;
  /* No server thread: the client fails before it connects. */
  calloc_fails = 1;
  int rc = pp_connect(f->sock, "victim", &c);
  calloc_fails = 0;
  assert_int_equal(rc, PP_ENOPRIVMEM);
  assert_ptr_equal(c, (pp_client *)0x1);
}

static void cache_open_without_private_memory_is_enoprivmem(void **state) {
  fake_t *f = *state;
  fake_start(f, WELCOME_OK, NEXT_CACHE_INFO);
  pp_client *c = NULL;
  pp_cache *k = (pp_cache *)0x1;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  calloc_fails = 1;
  int rc = pp_cache_open(c, "objs", FAKE_OBJ_SIZE, 0, &k);
  calloc_fails = 0;
  assert_int_equal(rc, PP_ENOPRIVMEM);
  assert_ptr_equal(k, (pp_cache *)0x1);
  pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
}

static void cache_free_checks_objects_against_the_slab_size_the_daemon_announces(void **state) {
  fake_t *f = *state;
  fake_start(f, WELCOME_OK, NEXT_CACHE_INFO);
  pp_client *c = NULL;
  pp_cache *k = NULL;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  assert_int_equal(pp_cache_open(c, "objs", FAKE_OBJ_SIZE, 0, &k), 0);
  uint8_t *base = pp_base(c);
  /* A slab of 16 KiB holds its 8 objects in its first 8 KiB: the second half holds no
   * object, however the 8 objects would fit in a slab of that size. */
  for (uint32_t off = FAKE_OBJS_PER_SLAB * FAKE_OBJ_SIZE; off < FAKE_SLAB_BYTES;
       off += FAKE_OBJ_SIZE)
    assert_int_equal(pp_cache_free(k, base + off), PP_EINVAL);
  /* The next slab's first object is one (it goes to this thread's magazine). */
  assert_int_equal(pp_cache_free(k, base + FAKE_SLAB_BYTES), 0);
  pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
}

static void an_older_daemons_welcome_means_4_kib_blocks(void **state) {
  fake_t *f = *state;
  fake_start(f, WELCOME_OK, NEXT_NONE); /* Welcome.min_block 0, as before the field */
  pp_client *c = NULL;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  assert_int_equal(pp_min_block(c), 4096);
  pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
}

static void blocks_the_daemon_describes_wrongly_are_refused_and_given_back(void **state) {
  fake_t *f = *state;
  fake_start(f, WELCOME_OK, NEXT_BULK_MISALIGNED);
  pp_client *c = NULL;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  assert_true(pp_buffer_cache_enabled(c));
  pp_buffer b;
  memset(&b, 0x55, sizeof b);
  pp_buffer before = b;
  /* A refill whose fifth block is not aligned to its size cannot be cached. */
  assert_int_equal(pp_alloc(c, 4096, 0, &b), PP_EPROTO);
  assert_memory_equal(&b, &before, sizeof b);
  pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
  /* What it was given went straight back, every block. */
  assert_int_equal(f->after_case, PINPOOL__V1__REQUEST__BODY_FREE_BULK);
  assert_int_equal(f->after_n, 32);
  assert_int_equal(f->after_h0, 100);
}

static void an_older_daemon_means_no_buffer_caches_and_no_bulk_calls(void **state) {
  fake_t *f = *state;
  fake_start(f, WELCOME_OK, NEXT_NONE); /* Welcome.features 0, as before the field */
  pp_client *c = NULL;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  assert_false(pp_buffer_cache_enabled(c));
  pp_buffer b[2];
  uint64_t h = 5;
  pp_segment seg;
  assert_int_equal(pp_alloc_bulk(c, 4096, 0, 2, b), PP_EVERSION);
  assert_int_equal(pp_free_bulk(c, &h, 1), PP_EVERSION);
  assert_int_equal(pp_buffer_segments(c, h, &seg, 1), PP_EVERSION);
  /* A made-up cache handle is not held. */
  assert_int_equal(pp_free(c, (1ull << 63) | 1), PP_ENOENT);
  pp_disconnect(c);
  assert_int_equal(pthread_join(f->t, NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(handshake_checks_reject_a_bad_welcome, fake_setup,
                                      fake_teardown),
      cmocka_unit_test_setup_teardown(a_reply_to_another_request_breaks_the_connection_for_good,
                                      fake_setup, fake_teardown),
      cmocka_unit_test_setup_teardown(a_buffer_outside_the_region_is_refused, fake_setup,
                                      fake_teardown),
      cmocka_unit_test_setup_teardown(
          blocks_the_daemon_describes_wrongly_are_refused_and_given_back, fake_setup,
          fake_teardown),
      cmocka_unit_test_setup_teardown(an_older_daemon_means_no_buffer_caches_and_no_bulk_calls,
                                      fake_setup, fake_teardown),
      cmocka_unit_test_setup_teardown(a_hang_up_mid_session_is_disconnected, fake_setup,
                                      fake_teardown),
      cmocka_unit_test_setup_teardown(connect_without_private_memory_is_enoprivmem, fake_setup,
                                      fake_teardown),
      cmocka_unit_test_setup_teardown(cache_open_without_private_memory_is_enoprivmem,
                                      fake_setup, fake_teardown),
      cmocka_unit_test_setup_teardown(
          cache_free_checks_objects_against_the_slab_size_the_daemon_announces, fake_setup,
          fake_teardown),
      cmocka_unit_test_setup_teardown(an_older_daemons_welcome_means_4_kib_blocks, fake_setup,
                                      fake_teardown),
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
