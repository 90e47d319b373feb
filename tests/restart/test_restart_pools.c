/*
 * test_restart_pools.c — restart survival with several pools: every pool's region and
 * journal in the fd store under its own name, every pool rebuilt after a SIGKILL and
 * handed on by a reload (SIGHUP) without a re-claim, a pool
 * whose config changed started fresh without costing the others anything, and exactly
 * once for a request in a pool.
 *
 * pinpoold runs under the test supervisor (rsd.h: systemd's side of the fd store), with a
 * config file of two pools besides the default one; this process (root, or the uid the
 * config names as writer) is the client, through libpinpool or the raw re-claiming
 * client.  The config file can be rewritten between two deaths of the daemon: the
 * supervisor starts the next one with the same command line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "pattern.h"
#include "pinpool.h"
#include "rsd.h"

/* The config: "cam" of cam_size, "big" of 4 MiB, both 4 KiB pages, this uid a writer. */
static void write_config(const char *path, const char *cam_size) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f,
          "[pool cam]\nsize = %s\npage-size = 4K\nwriters = %u\n"
          "[pool big]\nsize = 4M\npage-size = 4K\nwriters = %u\n",
          cam_size, (unsigned)getuid(), (unsigned)getuid());
  fclose(f);
  chmod(path, 0644);
}

typedef struct fixture {
  char dir[32], conf[64];
  rsd_t d;
} fixture_t;

static void start(fixture_t *f, const char *const *env) {
  static const char *args[] = {"--grace", "20000", "--config", NULL, NULL};
  rsd_opts_t o = {.args = args, .env = env};
  snprintf(f->dir, sizeof f->dir, "/tmp/pp-rpools-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  chmod(f->dir, 0755);
  snprintf(f->conf, sizeof f->conf, "%s/pools.conf", f->dir);
  write_config(f->conf, "2M");
  args[3] = f->conf;
  if (rsd_start(&f->d, &o)) fail_msg("the supervised daemon did not start");
}

static void finish(fixture_t *f) {
  char cmd[96];
  assert_int_equal(rsd_stop(&f->d), 0);
  rsd_assert_log_clean(&f->d);
  rsd_free(&f->d);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
  assert_int_equal(system(cmd), 0);
}

/* Stats.pools[id].used_bytes as the daemon has it now. */
static uint64_t pool_used(const rsd_t *d, uint32_t id) {
  Pinpool__V1__Response *st = rsd_stats(d);
  uint64_t used;
  assert_true(st->stats->n_pools > id);
  used = st->stats->pools[id]->used_bytes;
  frame_free_response(st);
  return used;
}

static void holdings_in_every_pool_survive_a_sigkill_and_a_reload(void **state) {
  fixture_t f;
  pp_client *c, *c2;
  pp_pool *cam, *big, *cam2, *big2;
  pp_buffer b[3], x;
  pp_rbuffer same;

  (void)state;
  start(&f, NULL);
  assert_int_equal(pp_connect(f.d.sock, "pools-survivor", &c), 0);
  assert_int_equal(pp_pool_attach(c, "cam", &cam), 0);
  assert_int_equal(pp_pool_attach(c, "big", &big), 0);
  assert_int_equal(pp_alloc_named(c, "plain", 8192, 0, &b[0]), 0);
  assert_int_equal(pp_pool_alloc(cam, "frame", 65536, 0, &b[1]), 0);
  assert_int_equal(pp_pool_alloc(big, "blob", 1u << 20, 0, &b[2]), 0);
  for (int i = 0; i < 3; i++)
    pattern_fill(b[i].addr, b[i].size, 10 + (uint64_t)i);

  for (int round = 0; round < 2; round++) {
    assert_int_equal(rsd_kill(&f.d), 0);
    /* Every pool came back with what it held. */
    assert_int_equal(pool_used(&f.d, 1), 65536);
    assert_int_equal(pool_used(&f.d, 2), 1u << 20);
    /* The program notices nothing: a pool request re-claims, every pool checks out. */
    assert_int_equal(pp_pool_alloc(cam, NULL, 4096, 0, &x), 0);
    assert_int_equal(pp_reclaims(c), (uint64_t)round + 1);
    assert_int_equal(pp_free(c, x.handle), 0);
    assert_int_equal(pp_pool_alloc(big, NULL, 4096, 0, &x), 0);
    assert_int_equal(pp_pool_free(big, x.handle), 0);
  }
  /* A reload hands every pool on: no re-claim, nothing lost. */
  for (int round = 0; round < 2; round++) {
    assert_int_equal(rsd_reload(&f.d), 0);
    assert_int_equal(pool_used(&f.d, 1), 65536);
    assert_int_equal(pool_used(&f.d, 2), 1u << 20);
    assert_int_equal(pp_pool_alloc(cam, NULL, 4096, 0, &x), 0);
    assert_int_equal(pp_pool_free(cam, x.handle), 0);
    assert_int_equal(pp_pool_alloc(big, NULL, 4096, 0, &x), 0);
    assert_int_equal(pp_pool_free(big, x.handle), 0);
    assert_int_equal(pp_reclaims(c), 2);
  }
  for (int i = 0; i < 3; i++)
    assert_true(pattern_intact(b[i].addr, b[i].size, 10 + (uint64_t)i));
  /* The names survived, in their pools: another session finds the same blocks. */
  assert_int_equal(pp_connect(f.d.sock, "pools-finder", &c2), 0);
  assert_int_equal(pp_pool_attach(c2, "cam", &cam2), 0);
  assert_int_equal(pp_pool_attach(c2, "big", &big2), 0);
  assert_int_equal(pp_pool_rlookup(cam2, "frame", &same), 0);
  assert_int_equal(same.offset, b[1].offset);
  assert_true(pattern_intact(same.addr, same.size, 11));
  assert_int_equal(pp_pool_free(cam2, same.handle), 0);
  assert_int_equal(pp_pool_rlookup(big2, "blob", &same), 0);
  assert_int_equal(same.offset, b[2].offset);
  assert_int_equal(pp_free(c2, same.handle), 0);
  pp_disconnect(c2);
  for (int i = 0; i < 3; i++)
    assert_int_equal(pp_free(c, b[i].handle), 0);
  pp_disconnect(c);
  assert_int_equal(rsd_log_count(&f.d, "pool 'cam': restored from the journal"), 2);
  assert_int_equal(rsd_log_count(&f.d, "pool 'big': reload: the previous image's state"), 2);
  finish(&f);
}

/* ---- raw requests with a pool ----------------------------------------------------------- */

static int r_attach(rcl_t *c, const char *name) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__AttachPool m = PINPOOL__V1__ATTACH_POOL__INIT;
  m.name = (char *)name;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ATTACH_POOL;
  req.attach_pool = &m;
  return rcl_call(c, &req, NULL);
}

static int r_alloc(rcl_t *c, uint32_t pool, uint64_t size, uint64_t *ret_h) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc m = PINPOOL__V1__ALLOC__INIT;
  Pinpool__V1__Response *r = NULL;
  int rc;
  m.size = size;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &m;
  rc = rcl_call(c, &req, &r);
  if (!rc) *ret_h = r->buffer->handle;
  if (r) frame_free_response(r);
  return rc;
}

static int r_free(rcl_t *c, uint32_t pool, uint64_t handle) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free m = PINPOOL__V1__FREE__INIT;
  m.handle = handle;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &m;
  return rcl_call(c, &req, NULL);
}

static void a_pool_whose_config_changed_starts_fresh_and_the_others_survive(void **state) {
  fixture_t f;
  pp_client *c;
  pp_pool *cam, *big, *cam_new;
  pp_buffer a, k, n;

  (void)state;
  start(&f, NULL);
  assert_int_equal(pp_connect(f.d.sock, "pools-changed", &c), 0);
  assert_int_equal(pp_pool_attach(c, "cam", &cam), 0);
  assert_int_equal(pp_pool_attach(c, "big", &big), 0);
  assert_int_equal(pp_pool_alloc(cam, "frame", 8192, 0, &a), 0);
  assert_int_equal(pp_pool_alloc(big, "kept", 8192, 0, &k), 0);
  pattern_fill(k.addr, k.size, 5);
  /* A raw client too, which does not attach again after its re-claim. */
  rcl_t raw;
  uint64_t rh = 0;
  assert_int_equal(rcl_open(&raw, f.d.sock, "pools-raw"), 0);
  assert_int_equal(r_attach(&raw, "cam"), 0);
  assert_int_equal(r_attach(&raw, "big"), 0);
  assert_int_equal(r_alloc(&raw, 1, 4096, &rh), 0);
  /* The operator gives cam another size; the next daemon reads the file. */
  write_config(f.conf, "4M");
  assert_int_equal(rsd_kill(&f.d), 0);
  assert_true(rsd_log_count(&f.d, "pool 'cam': not taking back the stored state") >= 1);
  assert_int_equal(pool_used(&f.d, 1), 0);    /* cam: fresh */
  assert_int_equal(pool_used(&f.d, 2), 8192); /* big: as it was */
  /* The re-claim finds big the same, cam another region: lost, and said so. */
  assert_int_equal(pp_pool_alloc(big, NULL, 4096, 0, &n), 0);
  assert_int_equal(pp_reclaims(c), 1);
  assert_int_equal(pp_pool_free(big, n.handle), 0);
  assert_true(pattern_intact(k.addr, k.size, 5));
  assert_int_equal(pp_pool_alloc(cam, NULL, 4096, 0, &n), PP_ESTATELOST);
  assert_int_equal(pp_pool_free(cam, a.handle), PP_ESTATELOST);
  /* The daemon says the same to the raw client in cam, and serves it in big. */
  assert_int_equal(r_alloc(&raw, 1, 4096, &rh), PP_ESTATELOST);
  assert_int_equal(raw.reclaims, 1);
  assert_int_equal(r_alloc(&raw, 2, 4096, &rh), 0);
  assert_int_equal(r_free(&raw, 2, rh), 0);
  rcl_close(&raw);
  /* Attached again: the new region, of the new size. */
  assert_int_equal(pp_pool_attach(c, "cam", &cam_new), 0);
  assert_ptr_not_equal(cam_new, cam);
  assert_int_equal(pp_pool_region_size(cam_new), 4u << 20);
  assert_int_equal(pp_pool_alloc(cam_new, NULL, 4096, 0, &n), 0);
  assert_int_equal(pp_pool_free(cam_new, n.handle), 0);
  assert_int_equal(pp_pool_free(big, k.handle), 0);
  pp_disconnect(c);
  finish(&f);
}

static void a_request_in_a_pool_journaled_before_the_crash_is_answered_once(void **state) {
  static const char *const env[] = {"PINPOOLD_TEST_CRASH_AFTER_COMMIT=1",
                                    "PINPOOLD_TEST_CHECK_JOURNAL=1", NULL};
  fixture_t f;
  rcl_t c;
  uint64_t h = 0, h2 = 0;

  (void)state;
  start(&f, env);
  assert_int_equal(rcl_open(&c, f.d.sock, "pool-once"), 0);
  /* Attaching journals no request transaction: it does not crash the daemon. */
  assert_int_equal(r_attach(&c, "cam"), 0);
  assert_int_equal(c.reclaims, 0);
  /* The alloc is the first request transaction of the process: it dies after the commit,
   * and the retry after the re-claim gets the kept reply — one buffer, not two. */
  assert_int_equal(r_alloc(&c, 1, 8192, &h), 0);
  assert_int_equal(c.reclaims, 1);
  assert_int_equal(h >> 48, 1);
  assert_int_equal(pool_used(&f.d, 1), 8192);
  /* The same for a request of the default pool after it: its reply is the newest. */
  assert_int_equal(rcl_alloc(&c, 4096, NULL, &h2, NULL), 0);
  assert_int_equal(c.reclaims, 2);
  /* And the free: carried out once (a second time would be NOT_FOUND). */
  assert_int_equal(r_free(&c, 1, h), 0);
  assert_int_equal(c.reclaims, 3);
  assert_int_equal(pool_used(&f.d, 1), 0);
  assert_int_equal(r_free(&c, 1, h), PP_ENOENT); /* a daemon that crashes on the next one */
  rcl_close(&c);
  finish(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(holdings_in_every_pool_survive_a_sigkill_and_a_reload),
      cmocka_unit_test(a_pool_whose_config_changed_starts_fresh_and_the_others_survive),
      cmocka_unit_test(a_request_in_a_pool_journaled_before_the_crash_is_answered_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
