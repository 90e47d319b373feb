/*
 * test_client_pools.c — libpinpool's pools against a real pinpoold: a writer allocates and
 * publishes in a pool and keeps slab objects there, a reader (another uid) attaches it
 * read-only and reads through const pointers only, an outsider is refused with nothing
 * mapped, and the default pool works as before beside them.
 *
 * The daemon gets a config file with one pool, "cam": root (this process) writes every
 * pool; uid 65533 is its reader; uid 65532 is in neither list.  The other uids are forked
 * clients (setuid), so the test skips without root.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pinpool.h"
#include "testd.h"

#define READER 65533u
#define OUTSIDER 65532u

#define EXPECT(cond)                                                                           \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "uid %u: %s:%d: expected %s\n", (unsigned)getuid(), __FILE__, __LINE__,  \
              #cond);                                                                          \
      _exit(1);                                                                                \
    }                                                                                          \
  } while (0)

static pid_t as_uid(unsigned uid, void (*fn)(const char *sock), const char *sock) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (setgroups(0, NULL) || setgid(uid) || setuid(uid)) _exit(92);
    fn(sock);
    _exit(0);
  }
  return pid;
}

static void reap_ok(pid_t pid, const char *who) {
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the %s side failed (status 0x%x; its reason is above)", who, status);
}

static void reader(const char *sock) {
  pp_client *c;
  pp_pool *p, *again;
  pp_rbuffer rb;
  pp_buffer b;
  const uint8_t *data;

  EXPECT(pp_connect(sock, "reader", &c) == 0);
  EXPECT(pp_pool_attach(c, "cam", &p) == 0);
  EXPECT(pp_pool_access(p) == PP_POOL_READ);
  EXPECT(pp_pool_attach(c, "cam", &again) == 0 && again == p);
  EXPECT(strcmp(pp_pool_name(p), "cam") == 0);
  EXPECT(pp_pool_region_size(p) == (2u << 20));
  /* Read-only memory only: no writable base, no writable buffers. */
  EXPECT(pp_pool_base(p) == NULL);
  EXPECT(pp_pool_rbase(p) != NULL);
  EXPECT(pp_pool_rlookup(p, "~0/greeting", &rb) == 0);
  data = rb.addr;
  EXPECT(rb.size == 4096 && memcmp(data, "hello, readers", 15) == 0);
  EXPECT(data == (const uint8_t *)pp_pool_rbase(p) + rb.offset);
  EXPECT(pp_pool_lookup(p, "~0/greeting", &b) == PP_EPERM);
  EXPECT(pp_pool_alloc(p, NULL, 4096, 0, &b) == PP_EPERM);
  {
    pp_cache *k = NULL;
    EXPECT(pp_pool_cache_open(p, "~0/objs", 64, 0, &k) == PP_EPERM && k == NULL);
  }
  /* Its own reference goes, through the pool's handle, with pp_free as well. */
  EXPECT(rb.handle >> 48 == 1);
  EXPECT(pp_free(c, rb.handle) == 0);
  EXPECT(pp_pool_free(p, rb.handle) == PP_ENOENT);
  /* The default pool is everyone's. */
  EXPECT(pp_alloc(c, 4096, 0, &b) == 0);
  EXPECT(pp_free(c, b.handle) == 0);
  pp_disconnect(c);
}

static void outsider(const char *sock) {
  pp_client *c;
  pp_pool *p = NULL;
  EXPECT(pp_connect(sock, "outsider", &c) == 0);
  EXPECT(pp_pool_attach(c, "cam", &p) == PP_EPERM);
  EXPECT(p == NULL);
  EXPECT(pp_pool_attach(c, "nosuch", &p) == PP_ENOENT);
  EXPECT(pp_pool_attach(c, "default", &p) == PP_EINVAL);
  pp_disconnect(c);
}

static void a_writer_publishes_in_a_pool_and_a_reader_gets_const_pointers(void **state) {
  char dir[] = "/tmp/pp-cpools-XXXXXX", conf[64], cmd[96];
  testd_t d;
  pp_client *c;
  pp_pool *p;
  pp_buffer b, other, look;
  FILE *f;

  (void)state;
  if (geteuid() != 0) {
    print_message("skipped: the reader and outsider are other uids, which needs root\n");
    skip();
  }
  assert_non_null(mkdtemp(dir));
  chmod(dir, 0755);
  snprintf(conf, sizeof conf, "%s/pools.conf", dir);
  f = fopen(conf, "w");
  assert_non_null(f);
  fputs("[pool cam]\nsize = 2M\npage-size = 4K\nreaders = 65533\n", f);
  fclose(f);
  assert_int_equal(testd_start(&d, "--config", conf, NULL), 0);

  assert_int_equal(pp_connect(d.sock, "writer", &c), 0);
  assert_int_equal(pp_pool_attach(c, "cam", &p), 0);
  assert_int_equal(pp_pool_access(p), PP_POOL_WRITE);
  assert_non_null(pp_pool_base(p));
  assert_int_equal(pp_pool_alloc(p, "greeting", 4096, PP_ZERO, &b), 0);
  assert_int_equal(b.handle >> 48, 1);
  assert_ptr_equal(b.addr, (uint8_t *)pp_pool_base(p) + b.offset);
  memcpy(b.addr, "hello, readers", 15);
  /* A writer's lookup is writable, and the same memory. */
  assert_int_equal(pp_pool_lookup(p, "greeting", &look), 0);
  assert_ptr_equal(look.addr, b.addr);
  assert_int_equal(pp_pool_free(p, look.handle), 0);
  /* Slab caches in the pool: objects in its mapping, apart from the default pool's cache
   * of the same name. */
  {
    pp_cache *kp, *kd;
    uint8_t *o[40];
    const uint8_t *pb = pp_pool_base(p);
    assert_int_equal(pp_pool_cache_open(p, "objs", 64, 0, &kp), 0);
    assert_int_equal(pp_cache_open(c, "objs", 64, 0, &kd), 0);
    assert_ptr_not_equal(kp, kd);
    for (int i = 0; i < 40; i++) {
      o[i] = pp_cache_alloc(kp);
      assert_non_null(o[i]);
      assert_true(o[i] >= pb && o[i] + 64 <= pb + pp_pool_region_size(p));
      memset(o[i], i, 64);
    }
    uint8_t *od = pp_cache_alloc(kd);
    assert_non_null(od);
    assert_true(od >= (uint8_t *)pp_base(c) && od < (uint8_t *)pp_base(c) + pp_region_size(c));
    assert_int_equal(pp_cache_free(kd, od), 0);
    for (int i = 0; i < 40; i++)
      assert_int_equal(pp_cache_free(kp, o[i]), 0);
  }
  /* The default pool's handles and the pool's never meet. */
  assert_int_equal(pp_alloc(c, 4096, 0, &other), 0);
  assert_int_not_equal(other.handle >> 48, 1);

  reap_ok(as_uid(READER, reader, d.sock), "reader (65533)");
  reap_ok(as_uid(OUTSIDER, outsider, d.sock), "outsider (65532)");

  assert_int_equal(pp_free(c, other.handle), 0);
  assert_int_equal(pp_pool_free(p, b.handle), 0);
  assert_int_equal(pp_pool_free(p, b.handle), PP_ENOENT);
  pp_disconnect(c);
  assert_int_equal(testd_stop(&d), 0);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_writer_publishes_in_a_pool_and_a_reader_gets_const_pointers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
