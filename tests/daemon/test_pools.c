/*
 * test_pools.c — several pools in one pinpoold: who may write, who may only read, who gets
 * nothing, and pools that do not disturb each other.
 *
 * A real daemon per test, configured with `[pool NAME]` sections in a --config file, and
 * raw protocol clients (tests/common/wire.h).  The access tests fork clients that drop to
 * other uids — a writer (65534), a reader (65533) and an outsider (65532), none with
 * supplementary groups — and skip without root.  The reader's descriptor is checked
 * against the kernel itself: a PROT_WRITE shared mapping of it fails, a hole punch through
 * it fails, re-opening it read-write through /proc/self/fd fails, and a write through its
 * PROT_READ mapping kills a child with SIGSEGV.  The
 * outsider's refusal is checked to carry no descriptor at all.  Config errors run
 * pinpoold directly and check its exit status (2) and that its message names the pool
 * and the key.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "pinpool_err.h"
#include "testd.h"
#include "wire.h"

#define WRITER 65534u
#define READER 65533u
#define OUTSIDER 65532u

/* In a forked client: the line that failed, then an exit status the parent reports. */
#define EXPECT(cond)                                                                           \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "uid %u: %s:%d: expected %s\n", (unsigned)getuid(), __FILE__, __LINE__,  \
              #cond);                                                                          \
      _exit(1);                                                                                \
    }                                                                                          \
  } while (0)

static void need_root(void) {
  if (geteuid() != 0) {
    print_message("skipped: clients of other uids need root to become them\n");
    skip();
  }
}

/* Config files and the config-error daemons' sockets live here (group setup). */
static char confdir[64];

static int make_confdir(void **state) {
  (void)state;
  snprintf(confdir, sizeof confdir, "/tmp/pp-pools-XXXXXX");
  if (!mkdtemp(confdir)) return -1;
  chmod(confdir, 0755);
  return 0;
}

static int remove_confdir(void **state) {
  char cmd[128];
  (void)state;
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", confdir);
  return system(cmd) == 0 ? 0 : -1;
}

/* A config file in dir with text; its path in buf. */
static const char *write_config(char *buf, size_t len, const char *dir, const char *text) {
  FILE *f;
  snprintf(buf, len, "%s/pools.conf", dir);
  f = fopen(buf, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  chmod(buf, 0644);
  return buf;
}

/* ---- raw requests with a pool --------------------------------------------------------- */

static int p_alloc(wire_t *c, uint32_t pool, uint64_t size, const char *name, uint64_t *ret_h,
                   uint64_t *ret_off) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc m = PINPOOL__V1__ALLOC__INIT;
  resp_t *r;
  int rc;
  m.size = size;
  m.name = (char *)name;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &m;
  r = wire_call(c, &req);
  rc = wire_rc(r);
  if (!rc && ret_h) *ret_h = r->buffer->handle;
  if (!rc && ret_off) *ret_off = r->buffer->offset;
  frame_free_response(r);
  return rc;
}

static int p_lookup(wire_t *c, uint32_t pool, const char *name, uint64_t *ret_h,
                    uint64_t *ret_off) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Lookup m = PINPOOL__V1__LOOKUP__INIT;
  resp_t *r;
  int rc;
  m.name = (char *)name;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_LOOKUP;
  req.lookup = &m;
  r = wire_call(c, &req);
  rc = wire_rc(r);
  if (!rc && ret_h) *ret_h = r->buffer->handle;
  if (!rc && ret_off) *ret_off = r->buffer->offset;
  frame_free_response(r);
  return rc;
}

static int p_free(wire_t *c, uint32_t pool, uint64_t handle) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free m = PINPOOL__V1__FREE__INIT;
  resp_t *r;
  int rc;
  m.handle = handle;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &m;
  r = wire_call(c, &req);
  rc = wire_rc(r);
  frame_free_response(r);
  return rc;
}

static int p_alloc_bulk(wire_t *c, uint32_t pool, uint64_t size, uint32_t count) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__AllocBulk m = PINPOOL__V1__ALLOC_BULK__INIT;
  resp_t *r;
  int rc;
  m.size = size;
  m.count = count;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC_BULK;
  req.alloc_bulk = &m;
  r = wire_call(c, &req);
  rc = wire_rc(r);
  frame_free_response(r);
  return rc;
}

static int p_cache_open(wire_t *c, uint32_t pool, const char *name) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheOpen m = PINPOOL__V1__CACHE_OPEN__INIT;
  resp_t *r;
  int rc;
  m.name = (char *)name;
  m.object_size = 64;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_OPEN;
  req.cache_open = &m;
  r = wire_call(c, &req);
  rc = wire_rc(r);
  frame_free_response(r);
  return rc;
}

static int p_cache_alloc(wire_t *c, uint32_t pool, uint32_t id) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__CacheAlloc m = PINPOOL__V1__CACHE_ALLOC__INIT;
  resp_t *r;
  int rc;
  m.cache_id = id;
  m.count = 1;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
  req.cache_alloc = &m;
  r = wire_call(c, &req);
  rc = wire_rc(r);
  frame_free_response(r);
  return rc;
}

/* Stats of pool (as an admin): the response, to free. */
static resp_t *p_stats(wire_t *c, uint32_t pool) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__StatsRequest m = PINPOOL__V1__STATS_REQUEST__INIT;
  m.list = PINPOOL__V1__STATS_LIST__STATS_LIST_SUMMARY;
  m.pool = pool;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &m;
  return wire_call(c, &req);
}

/* ---- clients of other uids --------------------------------------------------------------- */

static pid_t as_uid(unsigned uid, void (*fn)(const char *sock, void *arg), const char *sock,
                    void *arg) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (setgroups(0, NULL) || setgid(uid) || setuid(uid)) _exit(92);
    fn(sock, arg);
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

#define CAM_CONF                                                                               \
  "[pool cam]\n"                                                                               \
  "size = 4M\n"                                                                                \
  "page-size = 4K\n"                                                                           \
  "writers = 65534\n"                                                                          \
  "readers = 65533\n"

typedef struct pipes {
  int ready[2]; /* writer -> parent: published */
  int done[2];  /* parent -> writer: the reader is through, let go */
} pipes_t;

/* The writer: attaches read-write, publishes "frame" in the pool with a pattern in it,
 * holds it until the parent says the reader is done. */
static void writer(const char *sock, void *arg) {
  pipes_t *p = arg;
  wire_t c;
  resp_t *r = NULL;
  int fd = -1;
  uint64_t h = 0, off = 0;
  uint8_t *map;
  char b = 'x';

  close(p->ready[0]);
  close(p->done[1]);
  EXPECT(wire_open(&c, sock, "writer") == 0);
  EXPECT(wire_attach_pool(&c, "cam", &r, &fd) == 0);
  EXPECT(fd >= 0);
  EXPECT(r->pool->access == PINPOOL__V1__POOL_ACCESS__POOL_ACCESS_WRITE);
  EXPECT(r->pool->pool == 1 && r->pool->region_size == (4u << 20));
  EXPECT((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR);
  frame_free_response(r);
  map = mmap(NULL, 4u << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  EXPECT(map != MAP_FAILED);
  EXPECT(p_alloc(&c, 1, 8192, "frame", &h, &off) == 0);
  /* The pool's id in bits 48..62 of the handle: daemon-wide unambiguous. */
  EXPECT(h >> 48 == 1);
  for (int i = 0; i < 8192; i++)
    map[off + (uint64_t)i] = (uint8_t)(i * 7 + 3);
  /* Caches work for a writer. */
  EXPECT(p_cache_open(&c, 1, "mbuf") == 0);
  /* The same handle in another pool is a handle this session does not hold. */
  EXPECT(p_free(&c, 0, h) == PP_ENOENT);
  EXPECT(write(p->ready[1], &b, 1) == 1);
  EXPECT(read(p->done[0], &b, 1) == 1);
  EXPECT(p_free(&c, 1, h) == 0);
  munmap(map, 4u << 20);
  close(fd);
  wire_close(&c);
}

/* The reader: a read-only descriptor the kernel holds it to, the published data, and
 * PERMISSION_DENIED for everything that would change the pool. */
static void reader(const char *sock, void *arg) {
  wire_t c;
  resp_t *r = NULL;
  int fd = -1, status;
  uint64_t h = 0, off = 0;
  const uint8_t *map;
  pid_t pid;

  (void)arg;
  EXPECT(wire_open(&c, sock, "reader") == 0);
  EXPECT(wire_attach_pool(&c, "cam", &r, &fd) == 0);
  EXPECT(fd >= 0);
  EXPECT(r->pool->access == PINPOOL__V1__POOL_ACCESS__POOL_ACCESS_READ);
  frame_free_response(r);
  EXPECT((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
  /* The kernel refuses to map it writable, and to punch a hole through it. */
  EXPECT(mmap(NULL, 4u << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
  EXPECT(errno == EACCES);
  EXPECT(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) != 0);
  /* Nor can it get a writable descriptor by re-opening this one through /proc (a memfd's
   * inode is born mode 0777; the daemon makes it 0600), or give the inode its mode back. */
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  EXPECT(open(path, O_RDWR | O_CLOEXEC) < 0);
  EXPECT(errno == EACCES);
  EXPECT(fchmod(fd, 0666) != 0);
  map = mmap(NULL, 4u << 20, PROT_READ, MAP_SHARED, fd, 0);
  EXPECT(map != MAP_FAILED);
  EXPECT(mprotect((void *)map, 4096, PROT_READ | PROT_WRITE) != 0);
  /* It looks the published buffer up and reads the writer's data. */
  EXPECT(p_lookup(&c, 1, "~65534/frame", &h, &off) == 0);
  EXPECT(h >> 48 == 1);
  for (int i = 0; i < 8192; i++)
    EXPECT(map[off + (uint64_t)i] == (uint8_t)(i * 7 + 3));
  /* A write through its mapping faults. */
  pid = fork();
  EXPECT(pid >= 0);
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL);
    ((volatile uint8_t *)map)[off] = 0xee;
    _exit(0); /* not reached */
  }
  EXPECT(waitpid(pid, &status, 0) == pid);
  EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
  EXPECT(map[off] == 3);
  /* Nothing that changes the pool. */
  EXPECT(p_alloc(&c, 1, 4096, NULL, NULL, NULL) == PP_EPERM);
  EXPECT(p_alloc(&c, 1, 4096, "mine", NULL, NULL) == PP_EPERM);
  EXPECT(p_alloc_bulk(&c, 1, 4096, 4) == PP_EPERM);
  EXPECT(p_cache_open(&c, 1, "~65534/mbuf") == PP_EPERM);
  EXPECT(p_cache_open(&c, 1, "mine") == PP_EPERM);
  EXPECT(p_cache_alloc(&c, 1, 1) == PP_EPERM);
  /* Only its own reference goes: the writer's stays (another lookup still finds it). */
  EXPECT(p_free(&c, 1, h) == 0);
  EXPECT(p_free(&c, 1, h) == PP_ENOENT);
  EXPECT(p_lookup(&c, 1, "~65534/frame", &h, NULL) == 0);
  EXPECT(p_free(&c, 1, h) == 0);
  /* The default pool is everyone's, as before. */
  EXPECT(wire_alloc(&c, 4096, 0, NULL, &r) == 0);
  frame_free_response(r);
  munmap((void *)map, 4u << 20);
  close(fd);
  wire_close(&c);
}

/* The outsider: refused, and the refusal carries no descriptor. */
static void outsider(const char *sock, void *arg) {
  wire_t c;
  resp_t *r = NULL;
  int fd = -1;

  (void)arg;
  EXPECT(wire_open(&c, sock, "outsider") == 0);
  EXPECT(wire_attach_pool(&c, "cam", &r, &fd) == PP_EPERM);
  EXPECT(fd == -1);
  EXPECT(r->body_case == PINPOOL__V1__RESPONSE__BODY__NOT_SET);
  frame_free_response(r);
  /* Without an attachment every request in the pool is refused. */
  EXPECT(p_alloc(&c, 1, 4096, NULL, NULL, NULL) == PP_ENOENT);
  EXPECT(p_lookup(&c, 1, "~65534/frame", NULL, NULL) == PP_ENOENT);
  /* A pool that does not exist. */
  EXPECT(wire_attach_pool(&c, "nosuch", NULL, &fd) == PP_ENOENT);
  EXPECT(fd == -1);
  EXPECT(p_alloc(&c, 7, 4096, NULL, NULL, NULL) == PP_ENOENT);
  wire_close(&c);
}

static void a_reader_reads_what_a_writer_publishes_and_can_change_nothing(void **state) {
  testd_t d;
  char conf[256];
  pipes_t p;
  pid_t w, rd, out;
  char b = 'x';

  (void)state;
  need_root();
  write_config(conf, sizeof conf, confdir, CAM_CONF);
  assert_int_equal(testd_start(&d, "--config", conf, NULL), 0);
  assert_int_equal(pipe(p.ready), 0);
  assert_int_equal(pipe(p.done), 0);
  w = as_uid(WRITER, writer, d.sock, &p);
  close(p.ready[1]);
  close(p.done[0]);
  assert_int_equal(read(p.ready[0], &b, 1), 1);
  rd = as_uid(READER, reader, d.sock, NULL);
  reap_ok(rd, "reader (65533)");
  out = as_uid(OUTSIDER, outsider, d.sock, NULL);
  reap_ok(out, "outsider (65532)");
  assert_int_equal(write(p.done[1], &b, 1), 1);
  reap_ok(w, "writer (65534)");
  close(p.ready[0]);
  close(p.done[1]);
  assert_int_equal(testd_stop(&d), 0);
}

/* ---- independence ------------------------------------------------------------------- */

static void a_full_pool_leaves_the_others_serving_and_quotas_are_per_pool(void **state) {
  testd_t d;
  char conf[256];
  wire_t c;
  resp_t *r;
  int fa = -1, fb = -1, rc;
  unsigned n = 0;
  uint64_t h;

  (void)state;
  write_config(conf, sizeof conf, confdir,
               "# two pools beside the default one\n"
               "[pool a]\n"
               "size = 1M\n"
               "page-size = 4K\n"
               "quota = 256K\n"
               "[pool b]\n"
               "size = 1M\n"
               "page-size = 4K\n"
               "writers = 0\n");
  assert_int_equal(testd_start(&d, "--config", conf, "--quota", "64K", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "independent"), 0);
  /* Whoever may connect writes the default pool; the others need the lists, or root. */
  assert_int_equal(wire_attach_pool(&c, "a", &r, &fa), geteuid() == 0 ? 0 : PP_EPERM);
  frame_free_response(r);
  if (geteuid() != 0) {
    print_message("skipped the rest: only root writes pools whose lists name others\n");
    wire_close(&c);
    testd_stop(&d);
    skip();
  }
  assert_int_equal(wire_attach_pool(&c, "b", &r, &fb), 0);
  assert_int_equal(r->pool->pool, 2);
  frame_free_response(r);
  assert_true(fa >= 0 && fb >= 0);

  /* Pool a's quota (256K) is its own: the default pool's (64K) does not limit it. */
  while ((rc = p_alloc(&c, 1, 4096, NULL, &h, NULL)) == 0)
    n++;
  assert_int_equal(rc, PP_EQUOTA);
  assert_int_equal(n, 64);
  /* Pool b fills up to its last page: NO_MEMORY there, nothing anywhere else. */
  n = 0;
  while ((rc = p_alloc(&c, 2, 65536, NULL, &h, NULL)) == 0)
    n++;
  assert_int_equal(rc, PP_ENOMEM);
  assert_int_equal(n, 16);
  /* The default pool serves as if nothing happened, to its own quota. */
  n = 0;
  while ((rc = wire_alloc(&c, 4096, 0, NULL, &r)) == 0) {
    frame_free_response(r);
    n++;
  }
  frame_free_response(r);
  assert_int_equal(rc, PP_EQUOTA);
  assert_int_equal(n, 16);

  /* Stats per pool, and every pool in the summary. */
  r = p_stats(&c, 2);
  assert_int_equal(wire_rc(r), 0);
  assert_int_equal(r->stats->pool, 2);
  assert_int_equal(r->stats->region_size, 1u << 20);
  assert_int_equal(r->stats->free_bytes, 0);
  assert_int_equal(r->stats->n_pools, 3);
  assert_string_equal(r->stats->pools[0]->name, "default");
  assert_string_equal(r->stats->pools[0]->writers, "*");
  assert_string_equal(r->stats->pools[1]->name, "a");
  assert_int_equal(r->stats->pools[1]->quota, 256u << 10);
  assert_int_equal(r->stats->pools[1]->used_bytes, 256u << 10);
  assert_string_equal(r->stats->pools[2]->name, "b");
  assert_string_equal(r->stats->pools[2]->writers, "0");
  assert_int_equal(r->stats->pools[2]->numa_node, -1);
  frame_free_response(r);
  r = p_stats(&c, 3);
  assert_int_equal(wire_rc(r), PP_ENOENT);
  frame_free_response(r);

  /* Disconnecting gives everything back in every pool. */
  close(fa);
  close(fb);
  wire_close(&c);
  assert_int_equal(wire_open(&c, d.sock, "after"), 0);
  for (uint32_t pool = 0; pool < 3; pool++) {
    r = p_stats(&c, pool);
    assert_int_equal(wire_rc(r), 0);
    assert_int_equal(r->stats->used_bytes, 0);
    assert_int_equal(r->stats->free_bytes, r->stats->region_size);
    frame_free_response(r);
  }
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

/* A pool bound to NUMA node 0 starts, takes its pages from there, and says so. */
static void a_pool_bound_to_an_existing_numa_node_serves(void **state) {
  testd_t d;
  char conf[256];
  wire_t c;
  resp_t *r;
  struct stat st;

  (void)state;
  if (stat("/sys/devices/system/node/node0", &st) != 0) {
    print_message("skipped: this kernel shows no NUMA node 0\n");
    skip();
  }
  write_config(conf, sizeof conf, confdir,
               "[pool near]\nsize = 1M\npage-size = 4K\nnuma-node = 0\n");
  assert_int_equal(testd_start(&d, "--config", conf, "--numa-node", "0", NULL), 0);
  assert_int_equal(wire_open(&c, d.sock, "numa"), 0);
  r = p_stats(&c, 1);
  assert_int_equal(wire_rc(r), 0);
  assert_int_equal(r->stats->n_pools, 2);
  assert_int_equal(r->stats->pools[0]->numa_node, 0);
  assert_int_equal(r->stats->pools[1]->numa_node, 0);
  assert_int_equal(r->stats->pools[1]->region_size, 1u << 20);
  frame_free_response(r);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

/* ---- config errors ---------------------------------------------------------------------- */

/* Run pinpoold with conf as its config file; its exit status, its stderr in out. */
static int run_daemon(const char *dir, const char *conf_text, char *out, size_t len) {
  char bin[256], conf[256], sock[256], errpath[256];
  int status, fd;
  pid_t pid;
  ssize_t n;

  testd_bin(bin, sizeof bin, "pinpoold");
  write_config(conf, sizeof conf, dir, conf_text);
  snprintf(sock, sizeof sock, "%s/cfg.sock", dir);
  snprintf(errpath, sizeof errpath, "%s/cfg.err", dir);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(e, 1);
    dup2(e, 2);
    execl(bin, bin, "--socket", sock, "--size", "4M", "--page-size", "4K", "--journal", "no",
          "--config", conf, (char *)NULL);
    _exit(127);
  }
  assert_int_equal(waitpid(pid, &status, 0), pid);
  fd = open(errpath, O_RDONLY);
  assert_true(fd >= 0);
  n = read(fd, out, len - 1);
  close(fd);
  out[n > 0 ? n : 0] = '\0';
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void config_errors_stop_the_daemon_naming_the_pool_and_the_key(void **state) {
  static const struct {
    const char *conf, *want1, *want2;
  } cases[] = {
      {"[pool cam]\nsize = 4M\nwriters = no-such-user-pinpool\n", "pool 'cam'", "'writers'"},
      {"[pool cam]\nsize = 4M\nreaders = @no-such-group-pinpool\n", "pool 'cam'", "'readers'"},
      {"[pool cam]\nsize = 4M\n[pool cam]\nsize = 4M\n", "pool 'cam'", "defined twice"},
      {"[pool default]\nsize = 4M\n", "pool 'default'", "default pool"},
      {"[pool cam]\nsize = 4M\nnuma-node = 4000\n", "pool 'cam'", "'numa-node'"},
      {"[pool cam]\nsize = 5000\npage-size = 4K\n", "pool 'cam'", "'size'"},
      {"[pool cam]\npage-size = 4K\n", "pool 'cam'", "'size'"},
      {"[pool cam]\nsize = 4M\ncolour = blue\n", "pool 'cam'", "'colour'"},
      {"[pool cam]\nsize = 4M\nquota = lots\n", "pool 'cam'", "'quota'"},
      {"[pool cam]\nsize = 1T\npage-size = 2M\n", "pool 'cam'", "'size'"},
      {"[pool c@m]\nsize = 4M\n", "pool 'c@m'", "name"},
  };
  char out[4096];

  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int rc = run_daemon(confdir, cases[i].conf, out, sizeof out);
    if (rc != 2 || !strstr(out, cases[i].want1) || !strstr(out, cases[i].want2))
      fail_msg("config %zu:\n%s\nexited %d, said:\n%s\n(wanted \"%s\" and \"%s\")", i,
               cases[i].conf, rc, out, cases[i].want1, cases[i].want2);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_reader_reads_what_a_writer_publishes_and_can_change_nothing),
      cmocka_unit_test(a_full_pool_leaves_the_others_serving_and_quotas_are_per_pool),
      cmocka_unit_test(a_pool_bound_to_an_existing_numa_node_serves),
      cmocka_unit_test(config_errors_stop_the_daemon_naming_the_pool_and_the_key),
  };
  return cmocka_run_group_tests(tests, make_confdir, remove_confdir);
}
