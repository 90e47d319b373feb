/*
 * test_restart.c — a real pinpoold, killed and restarted by the test supervisor with the
 * region and journal it stored, keeps every client's state; one whose stored state cannot
 * be trusted starts fresh and says so.
 *
 *   - everything survives a SIGKILL: sessions (detached in Stats, with their deadline,
 *     until re-claimed), buffers with their names and contents, caches, objects; libpinpool
 *     re-claims without the program noticing; the books balance after everyone leaves;
 *   - buffer caches: blocks a thread caches and blocks the program holds from them stay the
 *     session's across a SIGKILL — served, freed and described after the restart under the
 *     handles made before it;
 *   - exactly once: the daemon dies after journaling a request and before answering it
 *     (PINPOOLD_TEST_CRASH_AFTER_COMMIT=1: every daemon process dies at its first journaled
 *     request), for alloc, lookup, free, cache_open, cache_alloc and cache_free; the retry
 *     with the same id gets the answer the journal kept (same handle, same offsets), and
 *     nothing is done twice — the journal is also checked against the ledger after every
 *     request (PINPOOLD_TEST_CHECK_JOURNAL=1);
 *   - grace: a session nobody re-claims is released at its deadline, never before it (any
 *     Stats answered before the deadline lists it), and eventually after; a re-claimed one
 *     stays; the late client gets STATE_LOST;
 *   - bad stored state — a flipped byte in a journaled transaction, a journal cut inside
 *     the log, another region's journal — means a fresh region: a new region id and memfd,
 *     STATE_LOST for the old session, whose mapping (of the old memfd) keeps its bytes;
 *   - the watchdog: a loop that hangs (PINPOOLD_TEST_HANG_AFTER_REQUESTS) is killed by the
 *     supervisor's watchdog and comes back with its state; the client carries on;
 *   - without a service manager there is no store: grace_ms is 0 and a token is unknown.
 *
 * Every wait is bounded; timing only decides how long a test takes, never its outcome.
 */
#define _GNU_SOURCE
#include <errno.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pattern.h"
#include "pinpool.h"
#include "rsd.h"
#include "testd.h"
#include "wire.h"

#define REGION (16ull << 20)

static uint64_t unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
}

/* Clients connected now (detached sessions not counted: a books connection closed just
 * before a kill comes back detached, holding nothing, until its grace ends). */
static uint32_t attached(const Pinpool__V1__Response *st) {
  uint32_t n = 0;
  for (size_t i = 0; i < st->stats->n_clients; i++)
    n += !st->stats->clients[i]->detached;
  return n;
}

/* The books after everyone but the asking connection has gone: all free, nothing held. */
static void assert_books_balance(const rsd_t *d) {
  Pinpool__V1__Response *st = NULL;
  for (int i = 0; i < 200; i++) {
    st = rsd_stats(d);
    if (attached(st) == 1 && st->stats->free_bytes == REGION) break;
    frame_free_response(st);
    st = NULL;
    sleep_ms(50);
  }
  if (!st) {
    st = rsd_stats(d);
    fail_msg("books do not balance: %u clients, %llu of %llu bytes free, %llu buffers",
             attached(st), (unsigned long long)st->stats->free_bytes,
             (unsigned long long)REGION, (unsigned long long)st->stats->nr_buffers);
  }
  assert_int_equal(st->stats->nr_buffers, 0);
  assert_int_equal(st->stats->n_caches, 0);
  assert_int_equal(st->stats->used_bytes, 0);
  frame_free_response(st);
}

static void start_or_skip(rsd_t *d, const rsd_opts_t *o) {
  if (rsd_start(d, o)) fail_msg("the supervised daemon did not start");
}

/* ---- everything survives --------------------------------------------------------------- */

static void a_killed_daemon_comes_back_with_every_session_buffer_and_object(void **state) {
  rsd_t d;
  static const char *const args[] = {"--grace", "20000", NULL};
  rsd_opts_t o = {.args = args};
  start_or_skip(&d, &o);

  pp_client *c;
  pp_buffer b[3];
  pp_cache *k;
  void *objs[40];
  assert_int_equal(pp_connect(d.sock, "survivor", &c), 0);
  assert_int_equal(pp_alloc(c, 4096, 0, &b[0]), 0);
  assert_int_equal(pp_alloc(c, 65536, PP_ZERO, &b[1]), 0);
  assert_int_equal(pp_alloc_named(c, "kept", 8192, 0, &b[2]), 0);
  for (int i = 0; i < 3; i++)
    pattern_fill(b[i].addr, b[i].size, 100 + (uint64_t)i);
  assert_int_equal(pp_cache_open(c, "objs", 256, 64, &k), 0);
  for (int i = 0; i < 40; i++) {
    objs[i] = pp_cache_alloc(k);
    assert_non_null(objs[i]);
    pattern_fill(objs[i], 256, 1000 + (uint64_t)i);
  }
  Pinpool__V1__Response *before = rsd_stats(&d);
  uint64_t used = before->stats->used_bytes, nbufs = before->stats->nr_buffers;
  frame_free_response(before);

  for (int round = 0; round < 3; round++) {
    assert_int_equal(rsd_kill(&d), 0);
    /* Back, with the session detached and everything it held. */
    Pinpool__V1__Response *st = rsd_stats(&d);
    const Pinpool__V1__ClientInfo *ci = rsd_client(st, pp_session_id(c));
    assert_non_null(ci);
    assert_true(ci->detached);
    uint64_t now = unix_ms();
    assert_true(ci->detached_deadline_unix_ms > now);
    assert_true(ci->detached_deadline_unix_ms <= now + 20000);
    assert_int_equal(st->stats->nr_buffers, nbufs);
    assert_int_equal(st->stats->used_bytes, used);
    frame_free_response(st);
    /* The program notices nothing: its next call re-claims (one that goes to the daemon:
     * 8 KiB, which a region of 4 KiB pages does not keep in the buffer caches). */
    pp_buffer x;
    assert_int_equal(pp_alloc(c, 8192, 0, &x), 0);
    assert_int_equal(pp_free(c, x.handle), 0);
    assert_int_equal(pp_reclaims(c), (uint64_t)round + 1);
    st = rsd_stats(&d);
    ci = rsd_client(st, pp_session_id(c));
    assert_non_null(ci);
    assert_false(ci->detached);
    frame_free_response(st);
  }
  for (int i = 0; i < 3; i++)
    assert_true(pattern_intact(b[i].addr, b[i].size, 100 + (uint64_t)i));
  for (int i = 0; i < 40; i++)
    assert_true(pattern_intact(objs[i], 256, 1000 + (uint64_t)i));
  /* The name survived: another session finds the same block. */
  pp_client *c2;
  pp_buffer same;
  assert_int_equal(pp_connect(d.sock, "finder", &c2), 0);
  assert_int_equal(pp_lookup(c2, "kept", &same), 0);
  assert_int_equal(same.offset, b[2].offset);
  assert_int_equal(pp_free(c2, same.handle), 0);
  pp_disconnect(c2);
  for (int i = 0; i < 40; i++)
    assert_int_equal(pp_cache_free(k, objs[i]), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(pp_free(c, b[i].handle), 0);
  pp_disconnect(c);
  assert_books_balance(&d);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- buffer caches ---------------------------------------------------------------------- */

static void cached_blocks_stay_valid_across_a_restart(void **state) {
  rsd_t d;
  static const char *const args[] = {"--grace", "20000", NULL};
  rsd_opts_t o = {.args = args};
  start_or_skip(&d, &o);
  pp_client *c;
  pp_buffer held[8], again[8], tmp[8], x;
  assert_int_equal(pp_connect(d.sock, "cacher", &c), 0);
  assert_true(pp_buffer_cache_enabled(c));
  /* Eight blocks the program holds, eight more back in this thread's cache. */
  for (int i = 0; i < 8; i++) {
    assert_int_equal(pp_alloc(c, 4096, 0, &held[i]), 0);
    assert_true(held[i].handle >> 63);
    pattern_fill(held[i].addr, held[i].size, 500 + (uint64_t)i);
  }
  for (int i = 0; i < 8; i++)
    assert_int_equal(pp_alloc(c, 4096, 0, &tmp[i]), 0);
  for (int i = 0; i < 8; i++)
    assert_int_equal(pp_free(c, tmp[i].handle), 0);
  Pinpool__V1__Response *st = rsd_stats(&d);
  const Pinpool__V1__ClientInfo *ci = rsd_client(st, pp_session_id(c));
  assert_non_null(ci);
  uint64_t held_by_session = ci->buffers;
  assert_int_equal(held_by_session, 32); /* one refill */
  frame_free_response(st);

  assert_int_equal(rsd_kill(&d), 0);
  st = rsd_stats(&d);
  ci = rsd_client(st, pp_session_id(c));
  assert_non_null(ci);
  assert_true(ci->detached);
  assert_int_equal(ci->buffers, held_by_session); /* cached ones included */
  frame_free_response(st);

  /* The cache serves on, before anything went to the new daemon: its blocks are still the
   * session's. */
  for (int i = 0; i < 8; i++) {
    assert_int_equal(pp_alloc(c, 4096, 0, &again[i]), 0);
    for (int j = 0; j < 8; j++)
      assert_true(again[i].offset != held[j].offset);
    pattern_fill(again[i].addr, again[i].size, 900 + (uint64_t)i);
  }
  assert_int_equal(pp_reclaims(c), 0);
  /* A request re-claims; then the caches describe their blocks anew (a refill after
   * returning what they kept, under the handles the journal kept) and segments are asked
   * of the new daemon. */
  assert_int_equal(pp_alloc(c, 8192, 0, &x), 0);
  assert_int_equal(pp_reclaims(c), 1);
  for (int i = 0; i < 8; i++) {
    assert_true(pattern_intact(held[i].addr, held[i].size, 500 + (uint64_t)i));
    assert_int_equal(pp_free(c, held[i].handle), 0); /* handles made before the restart */
    assert_int_equal(pp_free(c, held[i].handle), PP_ENOENT);
  }
  pp_segment seg;
  int n = pp_buffer_segments(c, again[0].handle, &seg, 1);
  assert_int_equal(n, pp_phys_known(c) ? 1 : 0);
  if (n) assert_int_equal(seg.length, 4096);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(pp_alloc(c, 4096, 0, &tmp[i]), 0);
    for (int j = 0; j < 8; j++)
      assert_true(tmp[i].offset != again[j].offset);
  }
  for (int i = 0; i < 8; i++) {
    assert_true(pattern_intact(again[i].addr, again[i].size, 900 + (uint64_t)i));
    assert_int_equal(pp_free(c, again[i].handle), 0);
    assert_int_equal(pp_free(c, tmp[i].handle), 0);
  }
  assert_int_equal(pp_free(c, x.handle), 0);
  pp_disconnect(c);
  assert_books_balance(&d);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- exactly once --------------------------------------------------------------------- */

static void a_request_journaled_before_the_crash_is_answered_once(void **state) {
  rsd_t d;
  static const char *const env[] = {"PINPOOLD_TEST_CRASH_AFTER_COMMIT=1",
                                    "PINPOOLD_TEST_CHECK_JOURNAL=1", NULL};
  static const char *const args[] = {"--grace", "20000", NULL};
  rsd_opts_t o = {.args = args, .env = env};
  start_or_skip(&d, &o);
  rcl_t c;
  uint64_t h, off, h2, off2, offs[32], offs2[32];
  uint32_t cache, cache2;
  unsigned crashes = 0;
  sup_info_t in;

  assert_int_equal(rcl_open(&c, d.sock, "once"), 0);
  assert_true(c.grace_ms > 0);
  /* Each of these is the first journaled request of a daemon process: it dies after the
   * commit, and the re-claimed retry gets the kept reply. */
  assert_int_equal(rcl_alloc(&c, 8192, "once", &h, &off), 0);
  assert_int_equal(c.reclaims, ++crashes);
  pattern_fill(c.base + off, 8192, 7);
  assert_int_equal(rcl_lookup(&c, "once", &h2, &off2), 0);
  assert_int_equal(c.reclaims, ++crashes);
  assert_int_equal(h2, h);
  assert_int_equal(off2, off);
  Pinpool__V1__Response *st = rsd_stats(&d);
  assert_int_equal(st->stats->nr_buffers, 1); /* one alloc, not two */
  frame_free_response(st);
  /* Two references now (alloc + one lookup): two frees succeed, a third finds nothing.  A
   * free carried out twice would make the second one fail. */
  assert_int_equal(rcl_free(&c, h), 0);
  assert_int_equal(c.reclaims, ++crashes);
  st = rsd_stats(&d);
  assert_int_equal(st->stats->nr_buffers, 1);
  frame_free_response(st);
  assert_int_equal(rcl_free(&c, h), 0);
  assert_int_equal(c.reclaims, ++crashes);
  st = rsd_stats(&d);
  assert_int_equal(st->stats->nr_buffers, 0);
  frame_free_response(st);

  assert_int_equal(rcl_cache_open(&c, "once-objs", 128, &cache), 0);
  assert_int_equal(c.reclaims, ++crashes);
  assert_int_equal(rcl_cache_alloc(&c, cache, 32, offs), 0);
  assert_int_equal(c.reclaims, ++crashes);
  uint64_t alloc_id = c.last_id;
  st = rsd_stats(&d);
  const Pinpool__V1__ClientInfo *ci = rsd_client(st, c.session_id);
  assert_non_null(ci);
  assert_int_equal(ci->objects, 32); /* the retry did not allocate another 32 */
  frame_free_response(st);
  /* The answer the retry got is the one the journal kept: after one more restart the same
   * request, sent first on the re-claiming connection with its id, gets the very same
   * offsets — still without allocating anything. */
  assert_int_equal(rsd_kill(&d), 0);
  {
    Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
    Pinpool__V1__CacheAlloc m = PINPOOL__V1__CACHE_ALLOC__INIT;
    Pinpool__V1__Response *r = NULL;
    m.cache_id = cache;
    m.count = 32;
    req.body_case = PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC;
    req.cache_alloc = &m;
    assert_int_equal(rcl_call_id(&c, alloc_id, &req, &r), 0);
    assert_int_equal(c.reclaims, ++crashes); /* counted with the crashes */
    assert_int_equal(r->objects->n_offsets, 32);
    assert_memory_equal(r->objects->offsets, offs, sizeof offs);
    frame_free_response(r);
  }
  st = rsd_stats(&d);
  ci = rsd_client(st, c.session_id);
  assert_int_equal(ci->objects, 32);
  frame_free_response(st);
  for (int i = 0; i < 32; i++)
    pattern_fill(c.base + offs[i], 128, 500 + (uint64_t)i);
  assert_int_equal(rcl_cache_free(&c, cache, offs, 16), 0);
  assert_int_equal(c.reclaims, ++crashes);
  st = rsd_stats(&d);
  ci = rsd_client(st, c.session_id);
  assert_int_equal(ci->objects, 16);
  frame_free_response(st);
  /* A second open of the same cache: the same id, answered once. */
  assert_int_equal(rcl_cache_open(&c, "once-objs", 128, &cache2), 0);
  assert_int_equal(c.reclaims, ++crashes);
  assert_int_equal(cache2, cache);
  for (int i = 16; i < 32; i++)
    assert_true(pattern_intact(c.base + offs[i], 128, 500 + (uint64_t)i));
  assert_int_equal(rcl_cache_free(&c, cache, offs + 16, 16), 0);
  assert_int_equal(c.reclaims, ++crashes);
  /* The freed objects are really free: a new allocation can have them again. */
  assert_int_equal(rcl_cache_alloc(&c, cache, 32, offs2), 0);
  assert_int_equal(c.reclaims, ++crashes);
  assert_int_equal(rcl_cache_free(&c, cache, offs2, 32), 0);
  assert_int_equal(c.reclaims, ++crashes);

  sup_info(d.sup, &in);
  /* Every daemon that ended was re-claimed from: crashes after a commit, and our one kill. */
  assert_int_equal(in.exits, crashes);
  assert_true(in.restarts >= crashes);
  assert_true(rsd_log_count(&d, "PINPOOLD_TEST_CRASH_AFTER_COMMIT") >= (int)crashes - 1);
  assert_int_equal(rsd_log_count(&d, "PINPOOLD_TEST_CHECK_JOURNAL:"), 0);
  rcl_close(&c);
  assert_books_balance(&d);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* Ids are the client's choice: only the first request of a re-claiming connection is
 * matched against the session's last recorded one. */
static void
request_ids_mean_nothing_except_for_the_first_request_after_a_reclaim(void **state) {
  rsd_t d;
  static const char *const args[] = {"--grace", "20000", NULL};
  rsd_opts_t o = {.args = args};
  start_or_skip(&d, &o);
  rcl_t c;
  uint64_t h1, off;
  assert_int_equal(rcl_open(&c, d.sock, "ids"), 0);
  assert_int_equal(rcl_alloc(&c, 4096, NULL, &h1, &off), 0);
  uint64_t id = c.last_id;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc m = PINPOOL__V1__ALLOC__INIT;
  Pinpool__V1__Response *r = NULL;
  m.size = 4096;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &m;
  /* The same id again on the same connection: a new request, carried out. */
  assert_int_equal(rcl_call_id(&c, id, &req, &r), 0);
  uint64_t h2 = r->buffer->handle;
  assert_true(h2 != h1);
  frame_free_response(r);
  /* After a restart, a first request with another id, then the kept id: both carried out. */
  assert_int_equal(rsd_kill(&d), 0);
  assert_int_equal(rcl_call(&c, &req, &r), 0);
  assert_int_equal(c.reclaims, 1);
  uint64_t h3 = r->buffer->handle;
  frame_free_response(r);
  assert_int_equal(rcl_call_id(&c, id, &req, &r), 0);
  uint64_t h4 = r->buffer->handle;
  frame_free_response(r);
  assert_true(h3 != h2 && h4 != h3 && h4 != h2);
  Pinpool__V1__Response *st = rsd_stats(&d);
  assert_int_equal(st->stats->nr_buffers, 4);
  frame_free_response(st);
  rcl_close(&c);
  assert_books_balance(&d);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- grace ---------------------------------------------------------------------------- */

static void
an_absent_session_is_released_at_its_deadline_and_a_present_one_never(void **state) {
  rsd_t d;
  static const char *const args[] = {"--grace", "1500", NULL};
  rsd_opts_t o = {.args = args};
  start_or_skip(&d, &o);
  rcl_t absent, present;
  uint64_t ha, hp, offa, offp;
  assert_int_equal(rcl_open(&absent, d.sock, "absent"), 0);
  assert_int_equal(rcl_open(&present, d.sock, "present"), 0);
  assert_int_equal(absent.grace_ms, 1500);
  assert_int_equal(rcl_alloc(&absent, 65536, NULL, &ha, &offa), 0);
  assert_int_equal(rcl_alloc(&present, 65536, NULL, &hp, &offp), 0);

  assert_int_equal(rsd_kill(&d), 0);
  /* The present client comes back at once; the absent one does not. */
  assert_int_equal(rcl_free(&present, hp), 0);
  assert_int_equal(present.reclaims, 1);
  assert_int_equal(rcl_alloc(&present, 4096, NULL, &hp, &offp), 0);

  uint64_t deadline = 0;
  bool gone = false;
  for (int i = 0; i < 400 && !gone; i++) {
    Pinpool__V1__Response *st = rsd_stats(&d);
    uint64_t answered_by = unix_ms(); /* the reply was built before this */
    const Pinpool__V1__ClientInfo *a = rsd_client(st, absent.session_id);
    const Pinpool__V1__ClientInfo *p = rsd_client(st, present.session_id);
    assert_non_null(p);
    assert_false(p->detached);
    if (a) {
      assert_true(a->detached);
      deadline = a->detached_deadline_unix_ms;
    } else {
      gone = true;
      /* Not released before its deadline. */
      assert_true(deadline != 0);
      assert_true(answered_by >= deadline);
      assert_int_equal(st->stats->nr_buffers, 1); /* its buffer went with it */
    }
    frame_free_response(st);
    if (!gone) sleep_ms(25);
  }
  assert_true(gone);
  assert_true(rsd_log_count(&d, "was not re-claimed") >= 1);
  /* Too late: the session is gone. */
  assert_int_equal(rcl_free(&absent, ha), PP_ESTATELOST);
  /* The present one never expires: well past the deadline it still works. */
  sleep_ms(300);
  assert_int_equal(rcl_free(&present, hp), 0);
  Pinpool__V1__Response *st = rsd_stats(&d);
  assert_non_null(rsd_client(st, present.session_id));
  frame_free_response(st);
  rcl_close(&present);
  rcl_close(&absent);
  assert_books_balance(&d);
  assert_int_equal(rsd_stop(&d), 0);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- bad stored state ------------------------------------------------------------------- */

typedef enum { BAD_FLIP, BAD_CUT, BAD_OTHER_REGION } bad_t;

static void damage_and_restart(rsd_t *d, bad_t how, int other_journal) {
  sup_info_t in;
  sup_exit_t ex;
  int fd;
  struct stat st;
  /* Killed, and held down (RestartSec=infinity) while its journal is damaged through the
   * store; then started. */
  sup_info(d->sup, &in);
  assert_int_equal(sup_signal(d->sup, SIGKILL), 0);
  assert_int_equal(sup_wait_exit_of(d->sup, in.gen, 20000, &ex), 0);
  assert_int_equal(sup_fd_dup_by_name(d->sup, "journal", &fd), 0);
  assert_int_equal(fstat(fd, &st), 0);
  switch (how) {
  case BAD_FLIP: {
    /* a byte in the middle of the second transaction (the first is the region's own) */
    uint8_t hdr[40], x;
    assert_int_equal(pread(fd, hdr, sizeof hdr, 4096), (ssize_t)sizeof hdr);
    uint32_t len;
    memcpy(&len, hdr + 4, 4);
    off_t at = 4096 + len + 40;
    assert_true(at < st.st_size);
    assert_int_equal(pread(fd, &x, 1, at), 1);
    x ^= 0x10;
    assert_int_equal(pwrite(fd, &x, 1, at), 1);
    break;
  }
  case BAD_CUT: {
    /* inside the last transaction, off a page boundary: no crash leaves that */
    off_t cut = st.st_size - 13;
    if (cut % 4096 == 0) cut--;
    assert_int_equal(ftruncate(fd, cut), 0);
    break;
  }
  case BAD_OTHER_REGION:
    assert_true(sup_fd_remove(d->sup, "journal") >= 1);
    assert_int_equal(sup_fd_store(d->sup, other_journal, "journal"), 1);
    break;
  }
  close(fd);
  assert_int_equal(sup_start(d->sup), 0);
  assert_int_equal(sup_wait_ready(d->sup, 60000), 0);
}

static void bad_stored_state_means_a_fresh_region_and_state_lost(void **state) {
  for (int how = BAD_FLIP; how <= BAD_OTHER_REGION; how++) {
    rsd_t d, other;
    int other_journal = -1;
    static const char *const args[] = {"--grace", "20000", NULL};
    rsd_opts_t o = {.args = args, .hold_restarts = true};
    start_or_skip(&d, &o);
    if (how == BAD_OTHER_REGION) {
      start_or_skip(&other, &o);
      assert_int_equal(sup_fd_dup_by_name(other.sup, "journal", &other_journal), 0);
    }
    rcl_t c;
    uint64_t h, off;
    assert_int_equal(rcl_open(&c, d.sock, "old"), 0);
    for (int i = 0; i < 5; i++)
      assert_int_equal(rcl_alloc(&c, 16384, NULL, &h, &off), 0);
    pattern_fill(c.base + off, 16384, 99);

    damage_and_restart(&d, (bad_t)how, other_journal);
    assert_true(rsd_log_count(&d, "not taking back the stored state") >= 1);
    /* The old session is gone; its mapping is of the old memfd, whose bytes it keeps. */
    assert_int_equal(rcl_free(&c, h), PP_ESTATELOST);
    assert_true(pattern_intact(c.base + off, 16384, 99));
    /* A new session gets a new region: another id, another file. */
    rcl_t n;
    assert_int_equal(rcl_open(&n, d.sock, "new"), 0);
    assert_memory_not_equal(n.region_id, c.region_id, sizeof n.region_id);
    assert_true(n.mst.st_ino != c.mst.st_ino || n.mst.st_dev != c.mst.st_dev);
    Pinpool__V1__Response *st = rsd_stats(&d);
    assert_int_equal(st->stats->nr_buffers, 0);
    assert_int_equal(st->stats->free_bytes, REGION);
    frame_free_response(st);
    /* ... which is itself kept across a restart. */
    assert_int_equal(rcl_alloc(&n, 4096, NULL, &h, &off), 0);
    assert_int_equal(rsd_kill(&d), 0);
    assert_int_equal(rcl_free(&n, h), 0);
    assert_int_equal(n.reclaims, 1);
    rcl_close(&n);
    rcl_close(&c);
    assert_books_balance(&d);
    assert_int_equal(rsd_stop(&d), 0);
    rsd_assert_log_clean(&d);
    rsd_free(&d);
    if (how == BAD_OTHER_REGION) {
      close(other_journal);
      assert_int_equal(rsd_stop(&other), 0);
      rsd_free(&other);
    }
  }
}

/* ---- the watchdog ------------------------------------------------------------------------ */

static void a_hung_loop_is_killed_by_the_watchdog_and_comes_back_with_its_state(void **state) {
  rsd_t d;
  static const char *const env[] = {"PINPOOLD_TEST_HANG_AFTER_REQUESTS=30", NULL};
  static const char *const args[] = {"--grace", "20000", NULL};
  rsd_opts_t o = {.args = args, .env = env, .watchdog_usec = 1500000};
  start_or_skip(&d, &o);
  pp_client *c;
  pp_buffer keep, x;
  /* Without buffer caches: every pp_alloc and pp_free below is a request. */
  pp_connect_options co = {sizeof co, PP_CONNECT_NO_BUFFER_CACHE};
  assert_int_equal(pp_connect_opts(d.sock, "watched", &co, &c), 0);
  assert_int_equal(pp_alloc(c, 65536, 0, &keep), 0);
  pattern_fill(keep.addr, keep.size, 4242);
  /* 100 requests: the loop hangs after 30 of each daemon's, and the watchdog ends it. */
  for (int i = 0; i < 50; i++) {
    assert_int_equal(pp_alloc(c, 4096, 0, &x), 0);
    pattern_fill(x.addr, x.size, (uint64_t)i);
    assert_true(pattern_intact(x.addr, x.size, (uint64_t)i));
    assert_int_equal(pp_free(c, x.handle), 0);
  }
  sup_info_t in;
  sup_info(d.sup, &in);
  assert_true(in.watchdog_timeouts >= 1);
  assert_int_equal(in.last_exit.result, SUP_RESULT_WATCHDOG);
  assert_true(pp_reclaims(c) >= 1);
  assert_true(pattern_intact(keep.addr, keep.size, 4242));
  assert_int_equal(pp_free(c, keep.handle), 0);
  pp_disconnect(c);
  /* The books: the daemon now running may hang too, after 30 of its requests; the books'
   * two requests each are few. */
  assert_books_balance(&d);
  sup_stop(d.sup, 20000, NULL);
  rsd_assert_log_clean(&d);
  rsd_free(&d);
}

/* ---- no store ------------------------------------------------------------------------- */

static void without_a_service_manager_there_is_no_grace_and_no_token_is_known(void **state) {
  testd_t t;
  rcl_t c;
  assert_int_equal(testd_start(&t, NULL), 0);
  assert_int_equal(rcl_open(&c, t.sock, "plain"), 0);
  assert_int_equal(c.grace_ms, 0); /* nothing would keep the session: do not wait */
  bool named = false;
  for (unsigned i = 0; i < sizeof c.region_id; i++)
    named |= c.region_id[i] != 0;
  assert_true(named); /* the region still has an id */
  /* A Hello with a token this daemon never gave. */
  rcl_t t2 = c;
  t2.fd = -1;
  t2.grace_ms = 1;
  t2.base = NULL;
  t2.memfd = -1;
  frame_rx_init(&t2.rx);
  t2.next_id = 100;
  memset(t2.token, 0x5a, sizeof t2.token);
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free m = PINPOOL__V1__FREE__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &m;
  assert_int_equal(rcl_call(&t2, &req, NULL), PP_ESTATELOST);
  rcl_close(&t2);
  rcl_close(&c);
  assert_int_equal(testd_stop(&t), 0);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_killed_daemon_comes_back_with_every_session_buffer_and_object),
      cmocka_unit_test(cached_blocks_stay_valid_across_a_restart),
      cmocka_unit_test(a_request_journaled_before_the_crash_is_answered_once),
      cmocka_unit_test(request_ids_mean_nothing_except_for_the_first_request_after_a_reclaim),
      cmocka_unit_test(an_absent_session_is_released_at_its_deadline_and_a_present_one_never),
      cmocka_unit_test(bad_stored_state_means_a_fresh_region_and_state_lost),
      cmocka_unit_test(a_hung_loop_is_killed_by_the_watchdog_and_comes_back_with_its_state),
      cmocka_unit_test(without_a_service_manager_there_is_no_grace_and_no_token_is_known),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
