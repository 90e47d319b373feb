/*
 * crowd.h — many idle clients at once, and the daemon's memory as the kernel counts it.
 * No cmocka: pinpool-bench links it too.
 *
 * crowd_join() opens connections to a daemon in batches: each batch connects without
 * blocking (a full listen backlog, EAGAIN, is retried after a millisecond), sends one
 * pre-packed Hello on every socket, then collects every Welcome (closing the memfd it
 * carries: ten thousand clients must not hold ten thousand more descriptors).  The
 * connections then stay open and silent — past Hello, idle — until crowd_leave().
 *
 * Errors are returned (0, or -1 with the reason on stderr), never asserted, so that both
 * a test and the benchmark can use them.
 */
#ifndef PP_TEST_CROWD_H
#define PP_TEST_CROWD_H

#include <stddef.h>
#include <sys/types.h>

typedef struct crowd {
  int *fds;
  size_t n, cap;
} crowd_t;

/* progress (may be NULL) is called after each batch with the clients connected so far. */
typedef void (*crowd_progress_fn)(size_t done, size_t want, void *arg);

/* n more clients past Hello on the socket at path, batch at a time.  0, or -1 (the
 * clients connected so far stay in cr: crowd_leave() them). */
int crowd_join(crowd_t *cr, const char *path, size_t n, size_t batch,
               crowd_progress_fn progress, void *arg);
/* Close every connection and free the array. */
void crowd_leave(crowd_t *cr);

/* RLIMIT_NOFILE's soft limit raised to at least want (up to the hard limit).  0 when the
 * soft limit is now >= want, -1 when the hard limit is lower. */
int crowd_raise_nofile(size_t want);

/* A field of /proc/PID/status in KiB ("RssAnon", "VmRSS"); -1 when unknown. */
long crowd_status_kib(pid_t pid, const char *field);

#endif /* PP_TEST_CROWD_H */
