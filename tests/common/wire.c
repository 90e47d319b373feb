/*
 * wire.c — the tests' protocol client (see wire.h for what fails the test and what is
 * returned).
 */
#include "wire.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

/* Longer than any test waits on purpose, shorter than ctest's timeouts. */
#define WIRE_RECV_TIMEOUT_S 30

int wire_connect(const char *path, bool nonblock) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
      !(nonblock && errno == EINPROGRESS)) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

resp_t *wire_call(wire_t *c, Pinpool__V1__Request *req) {
  resp_t *resp = NULL;
  int rc;
  req->id = ++c->next_id;
  rc = frame_send(c->fd, &req->base, FRAME_MAX_DEFAULT, -1);
  if (rc)
    fail_msg("request %llu: frame_send: %s", (unsigned long long)req->id, pp_err_name(rc));
  rc = frame_recv_response(c->fd, FRAME_MAX_DEFAULT, &resp, NULL);
  if (rc)
    fail_msg("request %llu: no response: %s (%s; daemon gone?)", (unsigned long long)req->id,
             pp_err_name(rc), pp_strerror(rc));
  if (resp->id != req->id)
    fail_msg("response id %llu to request id %llu", (unsigned long long)resp->id,
             (unsigned long long)req->id);
  return resp;
}

int wire_open(wire_t *c, const char *path, const char *name) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  struct timeval tv = {.tv_sec = WIRE_RECV_TIMEOUT_S};
  resp_t *resp = NULL;
  int rc, memfd = -1;

  memset(c, 0, sizeof *c);
  c->memfd = -1;
  c->fd = wire_connect(path, false);
  if (c->fd < 0) return PP_ECONNECT;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  h.protocol_version = PROTOCOL_VERSION;
  h.client_name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  req.id = ++c->next_id;
  if ((rc = frame_send(c->fd, &req.base, FRAME_MAX_DEFAULT, -1)) ||
      (rc = frame_recv_response(c->fd, FRAME_MAX_DEFAULT, &resp, &memfd)))
    goto fail;
  if ((rc = wire_rc(resp))) goto fail;
  if (resp->body_case != PINPOOL__V1__RESPONSE__BODY_WELCOME || memfd < 0) {
    rc = PP_EPROTO;
    goto fail;
  }
  c->memfd = memfd;
  memfd = -1;
  c->region_size = resp->welcome->region_size;
  c->page_size = resp->welcome->page_size;
  c->session_id = resp->welcome->session_id;
  c->phys_known = resp->welcome->physical_addresses;
  c->base = mmap(NULL, c->region_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->memfd, 0);
  if (c->base == MAP_FAILED) {
    c->base = NULL;
    rc = PP_EOS;
    goto fail;
  }
  frame_free_response(resp);
  return 0;
fail:
  if (resp) frame_free_response(resp);
  if (memfd >= 0) close(memfd);
  wire_close(c);
  return rc;
}

void wire_close(wire_t *c) {
  if (c->base) munmap(c->base, c->region_size);
  if (c->memfd >= 0) close(c->memfd);
  if (c->fd >= 0) close(c->fd);
  c->base = NULL;
  c->memfd = c->fd = -1;
}

/* Hand r to the caller, or free it; either way its code. */
static int give(resp_t *r, resp_t **ret) {
  int rc = wire_rc(r);
  if (ret)
    *ret = r;
  else
    frame_free_response(r);
  return rc;
}

int wire_alloc(wire_t *c, uint64_t size, unsigned flags, const char *name, resp_t **ret) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc m = PINPOOL__V1__ALLOC__INIT;
  resp_t *r;
  m.size = size;
  m.flags = flags;
  if (name) m.name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &m;
  r = wire_call(c, &req);
  if (!wire_rc(r)) assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_BUFFER);
  return give(r, ret);
}

int wire_free(wire_t *c, uint64_t handle) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free m = PINPOOL__V1__FREE__INIT;
  m.handle = handle;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &m;
  return give(wire_call(c, &req), NULL);
}

int wire_lookup(wire_t *c, const char *name, resp_t **ret) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Lookup m = PINPOOL__V1__LOOKUP__INIT;
  m.name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP;
  req.lookup = &m;
  return give(wire_call(c, &req), ret);
}

int wire_cache_open(wire_t *c, const char *name, uint32_t size, uint32_t align,
                    uint32_t *ret_id) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheOpen m = PINPOOL__V1__CACHE_OPEN__INIT;
  resp_t *r;
  m.name = (char *)name;
  m.object_size = size;
  m.align = align;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &m;
  r = wire_call(c, &req);
  if (!wire_rc(r)) {
    assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_CACHE);
    if (ret_id) *ret_id = r->cache->cache_id;
  }
  return give(r, NULL);
}

int wire_cache_alloc(wire_t *c, uint32_t id, uint32_t count, uint64_t *offs, size_t *ret_n) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheAlloc m = PINPOOL__V1__CACHE_ALLOC__INIT;
  resp_t *r;
  m.cache_id = id;
  m.count = count;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
  req.cache_alloc = &m;
  r = wire_call(c, &req);
  if (!wire_rc(r)) {
    assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_OBJECTS);
    assert_in_range(r->objects->n_offsets, 0, count); /* never more than asked for */
    if (offs) memcpy(offs, r->objects->offsets, r->objects->n_offsets * sizeof *offs);
    if (ret_n) *ret_n = r->objects->n_offsets;
  }
  return give(r, NULL);
}

int wire_cache_free(wire_t *c, uint32_t id, const uint64_t *offs, size_t n, char *msg,
                    size_t msg_len) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheFree m = PINPOOL__V1__CACHE_FREE__INIT;
  resp_t *r;
  m.cache_id = id;
  m.offsets = (uint64_t *)offs;
  m.n_offsets = n;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_FREE;
  req.cache_free = &m;
  r = wire_call(c, &req);
  if (msg) snprintf(msg, msg_len, "%s", r->message ? r->message : "");
  return give(r, NULL);
}

int wire_stats(wire_t *c, bool buffers, bool map, resp_t **ret) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest m = PINPOOL__V1__STATS_REQUEST__INIT;
  resp_t *r;
  m.include_buffers = buffers;
  m.include_map = map;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &m;
  r = wire_call(c, &req);
  if (!wire_rc(r)) assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_STATS);
  return give(r, ret);
}

int wire_shrink(wire_t *c, resp_t **ret) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__ShrinkRequest m = PINPOOL__V1__SHRINK_REQUEST__INIT;
  resp_t *r;
  req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK;
  req.shrink = &m;
  r = wire_call(c, &req);
  if (!wire_rc(r)) assert_int_equal(r->body_case, PINPOOL__V1__RESPONSE__BODY_SHRINK);
  return give(r, ret);
}

int wire_attach_pool(wire_t *c, const char *name, resp_t **ret, int *ret_fd) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__AttachPool m = PINPOOL__V1__ATTACH_POOL__INIT;
  resp_t *resp = NULL;
  int rc;

  m.name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ATTACH_POOL;
  req.attach_pool = &m;
  req.id = ++c->next_id;
  *ret_fd = -1;
  rc = frame_send(c->fd, &req.base, FRAME_MAX_DEFAULT, -1);
  if (rc) fail_msg("attach_pool: frame_send: %s", pp_err_name(rc));
  rc = frame_recv_response(c->fd, FRAME_MAX_DEFAULT, &resp, ret_fd);
  if (rc) fail_msg("attach_pool: no response: %s", pp_err_name(rc));
  rc = wire_rc(resp);
  if (ret)
    *ret = resp;
  else
    frame_free_response(resp);
  return rc;
}
