/*
 * test_region_holes.c — a region no client can un-pin.  A hostile client (a separate
 * process that receives the region's fd over a Unix socket, as every pinpool client does,
 * sometimes as uid 65534) punches holes in the memfd; the region must keep the punched
 * pages out of the kernel's hands (the long-term pin), find the holes exactly, repair
 * them with addresses that agree with an independent pagemap reading, refuse to zero what
 * it cannot repair instead of dying of SIGBUS, and degrade visibly when io_uring cannot
 * pin.  Needs root (physical addresses, uid changes, the hugepage pool); skips visibly
 * otherwise.  The hugepage cases set the 2 MiB pool through tests/common/hugepages.h; the
 * cases run in a child so that the parent restores the pool whatever happens.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hugepages.h"
#include "memguard.h"
#include "osl.h"
#include "region.h"
#include "region_internal.h"
#include "region_test.h"

#define PS 4096ull
#define H (2ull << 20)
#define NOBODY 65534

/* ---- a hostile client ----------------------------------------------------------------- */

typedef struct hole {
  uint64_t offset, length;
} hole_t;

typedef struct order {
  uid_t uid;   /* 0: stay root */
  bool refill; /* after punching, write to each hole through its own mapping */
  uint32_t n;
  hole_t holes[8];
} order_t;

/* The client's side: receive the fd and the order, punch, answer 0 or an errno. */
static void client_main(int sock) {
  order_t o;
  char ctl[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = &o, .iov_len = sizeof o};
  struct msghdr m = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
  int rc = 0;
  if (recvmsg(sock, &m, 0) != (ssize_t)sizeof o) _exit(2);
  struct cmsghdr *c = CMSG_FIRSTHDR(&m);
  if (!c || c->cmsg_type != SCM_RIGHTS) _exit(3);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if (o.uid && (setgroups(0, NULL) || setresgid(o.uid, o.uid, o.uid) ||
                setresuid(o.uid, o.uid, o.uid) || geteuid() != o.uid))
    rc = errno ? errno : EPERM;
  for (uint32_t i = 0; i < o.n && !rc; i++)
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)o.holes[i].offset,
                  (off_t)o.holes[i].length) != 0)
      rc = errno;
  if (!rc && o.refill) {
    struct stat st;
    char *p = fstat(fd, &st) == 0
                  ? mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                  : MAP_FAILED;
    if (p == MAP_FAILED) rc = errno;
    for (uint32_t i = 0; i < o.n && !rc; i++)
      p[o.holes[i].offset] = 'x'; /* faults a fresh page into the hole */
  }
  if (write(sock, &rc, sizeof rc) != (ssize_t)sizeof rc) _exit(4);
  _exit(0);
}

typedef struct client {
  pid_t pid;
  int sock;
} client_t;

/* Start the client before the region exists: it has no fd until it is sent one. */
static client_t client_start(void) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(sv[0]);
    client_main(sv[1]);
  }
  close(sv[1]);
  return (client_t){pid, sv[0]};
}

/* Send the fd and the order; 0 when the client did it all, else its errno. */
static int client_punch(client_t *c, int fd, const order_t *o) {
  char ctl[CMSG_SPACE(sizeof(int))];
  memset(ctl, 0, sizeof ctl);
  struct iovec iov = {.iov_base = (void *)o, .iov_len = sizeof *o};
  struct msghdr m = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof fd);
  memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  assert_int_equal(sendmsg(c->sock, &m, 0), (ssize_t)sizeof *o);
  int rc = -1;
  assert_int_equal(read(c->sock, &rc, sizeof rc), (ssize_t)sizeof rc);
  int status;
  assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(c->sock);
  return rc;
}

/* Start a client, punch, wait: the one-shot form. */
static void punch(region_t *r, order_t o) {
  client_t c = client_start();
  int rc = client_punch(&c, region_fd(r), &o);
  if (rc) fail_msg("the client could not punch: %s", strerror(rc));
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void need_root(void) {
  if (geteuid() != 0 || !pagemap_gives_pfns()) {
    print_message("skipped: needs root (physical addresses, other uids, hugepages)\n");
    skip();
  }
}

static region_t *make_tuned(uint64_t size, region_page_policy_t policy, const char *name,
                            const region_tuning_t *t, logcap_t *log) {
  region_config_t cfg = {
      .size = size, .policy = policy, .name = name, .log = logcap_fn, .log_ctx = log};
  region_t *r = NULL;
  int rc = region_create_tuned(&cfg, t, &r);
  if (rc != 0) fail_msg("region_create: %s; log:\n%s", pp_err_name(rc), log->text);
  return r;
}

static region_t *make(uint64_t size, region_page_policy_t policy, const char *name,
                      logcap_t *log) {
  return make_tuned(size, policy, name, NULL, log);
}

static void check(const region_t *r) {
  char why[256] = "";
  if (region_check(r, why, sizeof why) != 0) fail_msg("region_check: %s", why);
}

typedef struct found {
  unsigned n;
  hole_t v[16];
} found_t;

static void collect(void *ctx, uint64_t offset, uint64_t len) {
  found_t *f = ctx;
  if (f->n < 16) f->v[f->n] = (hole_t){offset, len};
  f->n++;
}

/* Every page's address agrees with pagemap read through a second mapping of the fd. */
static void addresses_match_a_second_mapping(region_t *r) {
  uint64_t size = region_size(r), ps = region_page_size(r);
  char *other = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_POPULATE, region_fd(r), 0);
  assert_true(other != MAP_FAILED);
  for (uint64_t off = 0; off < size; off += ps) {
    uint64_t mine, theirs;
    assert_int_equal(region_phys(r, off + 17, &mine), 0);
    assert_int_equal(pagemap_phys_of(other + off + 17, &theirs), 0);
    if (mine != theirs)
      fail_msg("offset %#" PRIx64 ": region says %#" PRIx64 ", pagemap %#" PRIx64, off, mine,
               theirs);
  }
  munmap(other, size);
}

static char *describe(const region_t *r) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  region_describe(r, f);
  fclose(f);
  return text;
}

/* ---- 4 KiB (shmem) regions ---------------------------------------------------------- */

static void a_region_holds_a_long_term_pin_on_every_page(void **state) {
  need_root();
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(1 << 20, REGION_PAGE_4K, "pp-holes-pin", &log);
  assert_true(region_pinned(r));
  assert_string_equal(region_pin_status(r), "");
  char *text = describe(r);
  assert_non_null(strstr(text, "long-term pin: yes (io_uring fixed buffers"));
  free(text);
  assert_int_equal(region_lost(r, NULL, 0), 0);
  check(r);
  region_destroy(r);
}

static void holes_punched_by_a_client_are_found_exactly(void **state) {
  need_root();
  logcap_t log;
  logcap_init(&log);
  client_t c = client_start(); /* before the region: it gets the fd only by message */
  region_t *r = make(64 * PS, REGION_PAGE_4K, "pp-holes-find", &log);
  assert_int_equal(region_scan_holes(r, NULL, NULL), 0); /* nothing yet */
  uint64_t gen = region_generation(r);
  order_t o = {.n = 3, .holes = {{3 * PS, PS}, {10 * PS, 3 * PS}, {40 * PS, PS}}};
  assert_int_equal(client_punch(&c, region_fd(r), &o), 0);
  found_t f = {0};
  assert_int_equal(region_scan_holes(r, collect, &f), 3);
  assert_int_equal(f.n, 3);
  for (unsigned i = 0; i < 3; i++) {
    assert_int_equal(f.v[i].offset, o.holes[i].offset);
    assert_int_equal(f.v[i].length, o.holes[i].length);
  }
  assert_true(region_generation(r) != gen);
  assert_int_equal(region_lost_bytes(r), 5 * PS);
  assert_non_null(strstr(log.text, "5 more pages no longer back the region"));
  uint64_t p;
  assert_int_equal(region_phys(r, 11 * PS + 5, &p), PP_ENOENT); /* no address for a hole */
  assert_int_equal(region_phys(r, 9 * PS, &p), 0);
  assert_false(region_is_contiguous(r, 10 * PS, 1));
  assert_false(region_is_contiguous(r, 2 * PS, 2 * PS)); /* spans the hole at page 3 */
  region_range_t lost[4];
  assert_int_equal(region_lost(r, lost, 4), 3);
  assert_int_equal(lost[1].offset, 10 * PS);
  char *text = describe(r);
  assert_non_null(strstr(text, "lost: 5 pages (20 KiB) in 3 ranges"));
  free(text);
  check(r);
  found_t again = {0};
  assert_int_equal(region_scan_holes(r, collect, &again), 3); /* still lost, found once */
  region_destroy(r);
}

static void repair_restores_backing_and_addresses_agree_with_pagemap(void **state) {
  need_root();
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(64 * PS, REGION_PAGE_4K, "pp-holes-repair", &log);
  memset(region_base(r), 0x5a, 64 * PS);
  punch(r, (order_t){.n = 2, .holes = {{0, 2 * PS}, {63 * PS, PS}}});
  assert_int_equal(region_scan_holes(r, NULL, NULL), 2);
  uint64_t gen = region_generation(r);
  assert_int_equal(region_repair(r, 0, 64 * PS), 0);
  assert_int_equal(region_lost(r, NULL, 0), 0);
  assert_true(region_generation(r) != gen);
  assert_non_null(strstr(log.text, "repaired 8 KiB at offset 0 B: backed, pinned"));
  check(r);
  addresses_match_a_second_mapping(r);
  unsigned char vec[64];
  assert_int_equal(mincore(region_base(r), 64 * PS, vec), 0);
  for (int i = 0; i < 64; i++)
    assert_true(vec[i] & 1);
  /* The punched pages read back as zeros (new pages), the rest kept their bytes. */
  assert_int_equal(((unsigned char *)region_base(r))[PS], 0);
  assert_int_equal(((unsigned char *)region_base(r))[2 * PS], 0x5a);
  assert_int_equal(region_scan_holes(r, NULL, NULL), 0);
  region_destroy(r);
}

static void a_page_punched_and_faulted_in_again_is_found_by_its_address(void **state) {
  need_root();
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(16 * PS, REGION_PAGE_4K, "pp-holes-refill", &log);
  uint64_t before;
  assert_int_equal(region_phys(r, 5 * PS, &before), 0);
  /* The client fills the hole again through its own mapping: the file is whole, yet page
   * 5 is no longer the page whose address we recorded (that one is still pinned). */
  punch(r, (order_t){.refill = true, .n = 1, .holes = {{5 * PS, PS}}});
  assert_int_equal(lseek(region_fd(r), 0, SEEK_HOLE), 16 * PS); /* no hole in the file */
  found_t f = {0};
  assert_int_equal(region_scan_holes(r, collect, &f), 1);
  assert_int_equal(f.v[0].offset, 5 * PS);
  assert_int_equal(region_repair(r, 5 * PS, PS), 0);
  uint64_t after;
  assert_int_equal(region_phys(r, 5 * PS, &after), 0);
  assert_true(after != before); /* the old page is pinned: the new one cannot be it */
  assert_int_equal(((char *)region_base(r))[5 * PS], 'x'); /* the client's page, now ours */
  addresses_match_a_second_mapping(r);
  check(r);
  region_destroy(r);
}

static void an_unprivileged_client_can_punch_and_the_region_repairs(void **state) {
  need_root();
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(16 * PS, REGION_PAGE_4K, "pp-holes-nobody", &log);
  client_t c = client_start();
  order_t o = {.uid = NOBODY, .n = 1, .holes = {{PS, 4 * PS}}};
  assert_int_equal(client_punch(&c, region_fd(r), &o), 0); /* no privilege needed */
  found_t f = {0};
  assert_int_equal(region_scan_holes(r, collect, &f), 1);
  assert_int_equal(f.v[0].offset, PS);
  assert_int_equal(f.v[0].length, 4 * PS);
  assert_int_equal(region_repair(r, f.v[0].offset, f.v[0].length), 0);
  addresses_match_a_second_mapping(r);
  check(r);
  region_destroy(r);
}

static void zero_refuses_a_lost_page_and_zeroes_the_rest(void **state) {
  need_root();
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(16 * PS, REGION_PAGE_4K, "pp-holes-zero", &log);
  unsigned char *b = region_base(r);
  memset(b, 0xa5, 16 * PS);
  punch(r, (order_t){.n = 1, .holes = {{8 * PS, PS}}});
  /* Not scanned yet: region_zero finds the hole itself and writes nothing into it. */
  assert_int_equal(region_zero(r, 7 * PS, 2 * PS), PP_EOS);
  assert_int_equal(region_lost_bytes(r), PS);
  assert_int_equal(b[7 * PS], 0xa5);
  assert_int_equal(region_zero(r, 8 * PS + 100, 10), PP_EOS); /* lost: refused up front */
  assert_int_equal(region_zero(r, 0, 8 * PS), 0);
  for (uint64_t i = 0; i < 8 * PS; i++)
    if (b[i]) fail_msg("byte %" PRIu64 " not zeroed", i);
  assert_int_equal(b[9 * PS], 0xa5);
  assert_int_equal(region_zero(r, 16 * PS, 1), PP_ERANGE);
  /* Without its SIGBUS guard region_zero writes nothing and says why. */
  memset(b, 0xa5, PS);
  osl_reset();
  osl_fail_nth(OSL_SIGACTION, 1, ENOTRECOVERABLE);
  assert_int_equal(region_zero(r, 0, PS), PP_EOS);
  osl_reset();
  assert_int_equal(b[0], 0xa5);
  assert_non_null(strstr(log.text, "cannot install the SIGBUS guard"));
  assert_int_equal(region_zero(r, 0, PS), 0);
  assert_int_equal(b[0], 0);
  assert_int_equal(region_repair(r, 0, 16 * PS), 0);
  assert_int_equal(region_zero(r, 7 * PS, 2 * PS), 0);
  check(r);
  region_destroy(r);
}

static void repairs_stop_at_the_pin_budget_and_the_range_stays_lost(void **state) {
  need_root();
  logcap_t log;
  logcap_init(&log);
  region_tuning_t t = {.pin_budget = 16 * PS + PS}; /* room to re-pin one page */
  region_t *r = make_tuned(16 * PS, REGION_PAGE_4K, "pp-holes-budget", &t, &log);
  punch(r, (order_t){.n = 2, .holes = {{2 * PS, PS}, {6 * PS, PS}}});
  assert_int_equal(region_scan_holes(r, NULL, NULL), 2);
  assert_int_equal(region_repair(r, 0, 16 * PS), PP_EQUOTA);
  region_range_t lost[2];
  assert_int_equal(region_lost(r, lost, 2), 1); /* the first was repaired, not the second */
  assert_int_equal(lost[0].offset, 6 * PS);
  assert_non_null(strstr(log.text, "pin budget"));
  uint64_t p;
  assert_int_equal(region_phys(r, 6 * PS, &p), PP_ENOENT);
  check(r);
  region_destroy(r);
}

static void io_uring_failures_leave_a_working_unpinned_region_that_says_why(void **state) {
  need_root();
  static const struct {
    osl_call_t call;
    unsigned nth;
    int err;
    const char *says;
  } cases[] = {
      {OSL_IO_URING_SETUP, 1, EPERM, "io_uring"},
      {OSL_IO_URING_SETUP, 1, ENOSYS, "CONFIG_IO_URING"},
      {OSL_IO_URING_REGISTER, 1, EINVAL, "sparse io_uring buffer tables"},
      {OSL_IO_URING_REGISTER, 2, ENOMEM, "RLIMIT_MEMLOCK"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    logcap_t log;
    logcap_init(&log);
    int fds = count_open_fds();
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_MEMLOCK, &old), 0);
    low = old;
    low.rlim_cur = 64 << 10; /* what an unprivileged daemon might have */
    assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &low), 0);
    osl_reset();
    osl_fail_nth(cases[i].call, cases[i].nth, cases[i].err);
    region_t *r = make(16 * PS, REGION_PAGE_4K, "pp-holes-nopin", &log);
    osl_reset();
    assert_int_equal(setrlimit(RLIMIT_MEMLOCK, &old), 0);
    assert_false(region_pinned(r));
    if (!strstr(region_pin_status(r), cases[i].says))
      fail_msg("%s failing with %s: status '%s' does not say '%s'",
               osl_call_name(cases[i].call), strerror(cases[i].err), region_pin_status(r),
               cases[i].says);
    assert_int_equal(log.worst, LOG_WARNING);
    assert_non_null(strstr(log.text, "no long-term pin"));
    char *text = describe(r);
    assert_non_null(strstr(text, "long-term pin: NO ("));
    free(text);
    /* Detection and repair work without the pin. */
    punch(r, (order_t){.n = 1, .holes = {{3 * PS, PS}}});
    assert_int_equal(region_scan_holes(r, NULL, NULL), 1);
    assert_int_equal(region_repair(r, 0, 16 * PS), 0);
    assert_non_null(strstr(log.text, "backed, addresses re-read"));
    addresses_match_a_second_mapping(r);
    check(r);
    region_destroy(r);
    assert_int_equal(count_open_fds(), fds);
  }
}

/* ---- 2 MiB hugetlb regions ------------------------------------------------------------ */

static void set_available(long n) {
  const char *why = NULL;
  if (geteuid() != 0 || !hp_make_available(n, &why)) {
    print_message("skipped: %s\n", why ? why : "needs root");
    skip();
  }
}

static int restore_pool(void **state) {
  (void)state;
  hp_restore();
  return 0;
}

static void punched_hugepages_stay_pinned_out_of_the_pool_until_destroy(void **state) {
  need_root();
  set_available(4);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(4 * H, REGION_PAGE_2M, "pp-holes-huge-pin", &log);
  assert_true(region_pinned(r));
  long free_before = hp_read("free_hugepages");
  punch(r, (order_t){.n = 1, .holes = {{H, 2 * H}}});
  /* Out of the file, out of our mapping — yet not back in the pool: the pin holds them. */
  assert_true(hp_read("free_hugepages") <= free_before);
  found_t f = {0};
  assert_int_equal(region_scan_holes(r, collect, &f), 1);
  assert_int_equal(f.v[0].offset, H);
  assert_int_equal(f.v[0].length, 2 * H);
  uint64_t p;
  assert_int_equal(region_phys(r, H, &p), PP_ENOENT);
  check(r);
  region_destroy(r);
  assert_int_equal(hp_available(), 4); /* all four back, at once (unregistered, not closed) */
}

static void without_the_pin_a_punched_hugepage_goes_back_to_the_pool(void **state) {
  need_root();
  set_available(4);
  logcap_t log;
  logcap_init(&log);
  osl_reset();
  osl_fail_nth(OSL_IO_URING_SETUP, 1, EPERM);
  region_t *r = make(4 * H, REGION_PAGE_2M, "pp-holes-huge-nopin", &log);
  osl_reset();
  assert_false(region_pinned(r));
  long free_before = hp_read("free_hugepages");
  punch(r, (order_t){.n = 1, .holes = {{H, 2 * H}}});
  /* What the pin prevents: the kernel has the pages back, free for anyone to take. */
  assert_true(hp_read("free_hugepages") >= free_before + 2);
  assert_int_equal(region_scan_holes(r, NULL, NULL), 1); /* still found, never reported */
  uint64_t p;
  assert_int_equal(region_phys(r, 2 * H, &p), PP_ENOENT);
  region_destroy(r);
}

static void repairing_a_hugepage_takes_a_new_page_with_its_own_address(void **state) {
  need_root();
  set_available(5); /* four for the region, one to repair with */
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(4 * H, REGION_PAGE_2M, "pp-holes-huge-repair", &log);
  uint64_t old;
  assert_int_equal(region_phys(r, 2 * H, &old), 0);
  punch(r, (order_t){.n = 1, .holes = {{2 * H, H}}});
  assert_int_equal(region_scan_holes(r, NULL, NULL), 1);
  assert_int_equal(region_repair(r, 2 * H, H), 0);
  uint64_t now;
  assert_int_equal(region_phys(r, 2 * H, &now), 0);
  assert_true(now != old); /* the punched page is still ours, pinned: the new one differs */
  assert_int_equal(now % H, 0);
  assert_int_equal(hp_available(), 0); /* the spare page backs the region now */
  addresses_match_a_second_mapping(r);
  check(r);
  region_destroy(r);
  assert_int_equal(hp_available(), 5); /* and the punched one came back with the rest */
}

static void zeroing_a_hugepage_that_cannot_be_repaired_fails_without_a_crash(void **state) {
  need_root();
  set_available(5);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(4 * H, REGION_PAGE_2M, "pp-holes-huge-zero", &log);
  /* Another process takes the spare page: nothing is left to repair with. */
  int hog = memfd_create("pp-holes-hog", MFD_CLOEXEC | MFD_HUGETLB | (21u << 26)); /* 2 MiB */
  assert_true(hog >= 0);
  assert_int_equal(ftruncate(hog, H), 0);
  assert_int_equal(fallocate(hog, 0, 0, H), 0);
  assert_int_equal(hp_available(), 0);
  punch(r, (order_t){.n = 1, .holes = {{3 * H, H}}});
  assert_int_equal(region_zero(r, 3 * H + 64, 4096), PP_EOS); /* found, not faulted in */
  assert_int_equal(region_repair(r, 0, 4 * H), PP_ENOHUGE);
  assert_non_null(strstr(log.text, "the hugepage pool has no page left"));
  assert_int_equal(region_lost_bytes(r), H);
  assert_int_equal(region_zero(r, 3 * H, H), PP_EOS);
  assert_int_equal(region_zero(r, 0, 3 * H), 0); /* the rest is fine */
  check(r);
  /* Once the pool has a page again, the repair succeeds. */
  close(hog);
  assert_int_equal(region_repair(r, 0, 4 * H), 0);
  assert_int_equal(region_zero(r, 3 * H, H), 0);
  addresses_match_a_second_mapping(r);
  region_destroy(r);
}

static void the_sigbus_guard_turns_a_missing_hugepage_into_an_error(void **state) {
  need_root();
  set_available(2);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(2 * H, REGION_PAGE_2M, "pp-holes-huge-guard", &log);
  char *b = region_base(r);
  punch(r, (order_t){.n = 1, .holes = {{H, H}}}); /* the pin keeps it; the pool is empty */
  assert_int_equal(hp_available(), 0);
  void *fault = NULL;
  assert_int_equal(memguard_set(b + H + 100, 0, 4096, &fault), PP_EOS);
  assert_ptr_equal(fault, b + H + 100);
  assert_int_equal(memguard_set(b + 100, 0, 4096, &fault), 0);
  /* A SIGBUS outside any guard still kills, as it would have without us: in a child whose
   * SIGBUS is back at the default (not the test framework's handler), a guard installs
   * ours in front of the default, then an unguarded write faults. */
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGBUS, SIG_DFL);
    if (memguard_set(b, 0, 1, NULL) != 0) _exit(1);
    b[H] = 1;
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGBUS);
  region_destroy(r);
}

static void adopting_a_hugetlb_memfd_pins_it_again(void **state) {
  need_root();
  set_available(2);
  logcap_t log;
  logcap_init(&log);
  region_t *r = make(2 * H, REGION_PAGE_2M, "pp-holes-huge-adopt", &log);
  int fd = dup(region_fd(r));
  region_destroy(r);
  region_config_t cfg = {.policy = REGION_PAGE_AUTO, .log = logcap_fn, .log_ctx = &log};
  region_t *a = NULL;
  assert_int_equal(region_adopt(fd, &cfg, &a), 0);
  assert_true(region_pinned(a));
  long free_before = hp_read("free_hugepages");
  punch(a, (order_t){.n = 1, .holes = {{0, H}}});
  assert_true(hp_read("free_hugepages") <= free_before);
  assert_int_equal(region_scan_holes(a, NULL, NULL), 1);
  region_destroy(a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_region_holds_a_long_term_pin_on_every_page),
      cmocka_unit_test(holes_punched_by_a_client_are_found_exactly),
      cmocka_unit_test(repair_restores_backing_and_addresses_agree_with_pagemap),
      cmocka_unit_test(a_page_punched_and_faulted_in_again_is_found_by_its_address),
      cmocka_unit_test(an_unprivileged_client_can_punch_and_the_region_repairs),
      cmocka_unit_test(zero_refuses_a_lost_page_and_zeroes_the_rest),
      cmocka_unit_test(repairs_stop_at_the_pin_budget_and_the_range_stays_lost),
      cmocka_unit_test(io_uring_failures_leave_a_working_unpinned_region_that_says_why),
      cmocka_unit_test_teardown(punched_hugepages_stay_pinned_out_of_the_pool_until_destroy,
                                restore_pool),
      cmocka_unit_test_teardown(without_the_pin_a_punched_hugepage_goes_back_to_the_pool,
                                restore_pool),
      cmocka_unit_test_teardown(repairing_a_hugepage_takes_a_new_page_with_its_own_address,
                                restore_pool),
      cmocka_unit_test_teardown(
          zeroing_a_hugepage_that_cannot_be_repaired_fails_without_a_crash, restore_pool),
      cmocka_unit_test_teardown(the_sigbus_guard_turns_a_missing_hugepage_into_an_error,
                                restore_pool),
      cmocka_unit_test_teardown(adopting_a_hugetlb_memfd_pins_it_again, restore_pool),
  };
  const char *why = NULL;
  bool may_resize = geteuid() == 0 && hp_begin(&why); /* lock and record the pool here */
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) return 1;
  if (pid == 0) _exit(cmocka_run_group_tests(tests, NULL, NULL));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (may_resize && !hp_restore()) return 1;
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "tests killed by signal %d (pool restored)\n", WTERMSIG(status));
    return 1;
  }
  return WEXITSTATUS(status);
}
