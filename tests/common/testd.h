/*
 * testd.h — a real pinpoold for a test: started on a socket of its own, stopped as a
 * check, and its books read over the protocol.  Every test that needs a daemon gets it
 * here; wire.h is the client that talks to it.
 *
 * Start-up.  testd_start() makes a fresh folder /tmp/pp-testd-XXXXXX (mode 0755, so a
 * test that drops to uid 65534 can still reach the socket) and runs $PP_BIN_DIR/pinpoold
 * in it with
 *     --socket DIR/pinpool.sock --size 16M --page-size 4K --socket-mode 0666
 *     --log-level debug [--admin-group <our gid>, when not root]
 * then the test's own options, which may override those (the last one wins).  16 MiB of
 * 4 KiB pages starts in milliseconds and needs no hugepages, so each test can afford a
 * daemon of its own and none sees another's state.  The admin group makes Stats and
 * Shrink work for a test run without root.  The environment is the test's minus
 * NOTIFY_SOCKET and LISTEN_FDS/LISTEN_PID (a ctest started by systemd must not hand those
 * down), plus one NAME=VALUE from testd_start_env().  stdout and stderr go to
 * DIR/pinpoold.log.
 * The daemon is ready when it accepts a connection (that probe connection is closed at
 * once; a daemon with --max-clients 1 frees the slot when it sees the close).  Sanitizer
 * and PP_DEBUG=3 builds start slowly, so the wait is up to 20 s.
 *
 * Lifetime.  The daemon has PR_SET_PDEATHSIG = SIGKILL: when the test process ends (a
 * crash, a ctest timeout, or just the end of the run after a test failed before reaching
 * its testd_stop()) its daemon dies with it.  The signal follows the *thread* that
 * forked, so start daemons from the main thread.
 *
 * Stopping is a check.  testd_stop() sends SIGTERM and expects the daemon to exit with
 * status 0 within 10 s (an ASan build exits non-zero on a leak) and to have removed its
 * socket; otherwise it prints why (and the daemon's log), kills it if it is still
 * running, and returns -1.  Either way the folder goes.  Use it as a teardown's return
 * value or under assert_int_equal().
 *
 * Errors are returned, not asserted, so that start, stop and the books work in group
 * set-ups and teardowns as well as in tests: 0 on success, -1 with the reason on stderr.
 * Two exceptions: a connection that breaks while the books are read fails the test, as
 * everything on a wire_t does; and testd_free_bytes(), made to be used inside
 * assertions, fails the test on any error.
 */
#ifndef PP_TESTD_H
#define PP_TESTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct testd {
  pid_t pid;    /* 0 when not running (never started, or reaped) */
  char dir[64]; /* the folder holding socket and log; "" once removed */
  char sock[128];
  char log[128]; /* the daemon's stdout and stderr */
} testd_t;

/* Start a daemon with the default options followed by the NULL-terminated extra ones:
 * testd_start(&d, NULL), testd_start(&d, "--max-clients", "1", NULL).  0 once it accepts
 * connections; -1 (log printed, nothing left behind) when it exits or stays deaf. */
int testd_start(testd_t *d, ...);
/* The same with env ("NAME=VALUE") in the daemon's environment. */
int testd_start_env(testd_t *d, const char *env, ...);
/* SIGTERM, then testd_wait(). */
int testd_stop(testd_t *d);
/* Wait up to 10 s for an exit already asked for (a test that sends SIGTERM itself) and
 * check it as testd_stop() does.  0 with nothing to do when d->pid is 0. */
int testd_wait(testd_t *d);
/* Print the daemon's log to stderr. */
void testd_dump_log(const testd_t *d);

/* $PP_BIN_DIR/name (./name without PP_BIN_DIR) into buf; returns buf. */
const char *testd_bin(char *buf, size_t len, const char *name);
/* The daemon's VmRSS in KiB, -1 when unknown. */
long testd_rss_kib(const testd_t *d);

/* Stats.free_bytes as the daemon has it now, through a connection of its own; fails the
 * test when it cannot be read.  Empty slabs and objects parked in magazines count as not
 * free: a test that checks that they do wants exactly this. */
uint64_t testd_free_bytes(const testd_t *d);

typedef struct testd_books {
  uint64_t free_bytes; /* free in the buddy allocator */
  uint64_t used_bytes; /* held by clients */
  uint32_t nr_clients; /* sessions, the asking one included */
} testd_books_t;

typedef struct testd_session {
  bool found;
  uint64_t buffers, objects, bytes_held, requests;
  uint64_t bytes_charged;                /* its uid's charge */
  uint64_t cached_buffers, cached_bytes; /* what its client last said its caches hold */
} testd_session_t;

/* The books after a Shrink (so that empty slabs and the daemon's magazines neither hide
 * a leak nor fake one); when session_id is non-zero also that session's row (ret_session
 * may be NULL).  0, or -1 with the reason on stderr. */
int testd_books(const testd_t *d, uint64_t session_id, testd_books_t *ret_books,
                testd_session_t *ret_session);
/* testd_books() until free_bytes == want and only the asking session is connected, for up
 * to timeout_ms (the daemon reclaims a dead client's holdings when it notices the
 * close).  0 when reached; -1 with the last free_bytes in *ret_last otherwise. */
int testd_wait_free(const testd_t *d, uint64_t want, int timeout_ms, uint64_t *ret_last);

#endif /* PP_TESTD_H */
