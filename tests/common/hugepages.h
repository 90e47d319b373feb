/*
 * hugepages.h — the 2 MiB hugepage pool, for tests that need one.
 *
 * The pool (/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages, which
 * `sysctl vm.nr_hugepages` sets when 2 MiB is the default size) belongs to the whole
 * machine.  ctest's RESOURCE_LOCK orders the tests of one ctest run only, so a program
 * that changes the pool first takes an exclusive flock(2) on HP_LOCK_PATH and keeps it
 * until it exits: the normal and sanitizer suites, or two checkouts, never resize the
 * pool under each other.  The lock is inherited by fork()ed children (the same open
 * file), so a test that runs its cases in a child is covered too.
 *
 * hp_begin() takes the lock, records the pool's size once and restores it at exit
 * (atexit; hp_restore() does it earlier).  hp_make_available(n) then sizes the pool so
 * that exactly n pages are free and unreserved, for a new region to take.  Both answer
 * false with a reason a test prints before skip() when the pages cannot be had (not
 * root, no 2 MiB pool on this kernel, memory too fragmented).
 */
#ifndef PP_TEST_HUGEPAGES_H
#define PP_TEST_HUGEPAGES_H

#include <stdbool.h>
#include <stdint.h>

#define HP_POOL "/sys/kernel/mm/hugepages/hugepages-2048kB"
#define HP_LOCK_PATH "/run/lock/pinpool-test-hugepages.lock"
#define HP_SIZE (2ull << 20)

/* A number from HP_POOL/file (nr_hugepages, free_hugepages, resv_hugepages); -1 when
 * unreadable. */
long hp_read(const char *file);
/* free_hugepages - resv_hugepages: what a new mapping can still fault in. */
long hp_available(void);
bool hp_begin(const char **why);
bool hp_make_available(long n, const char **why);
/* Put the recorded size back (also run at exit).  false when the write failed. */
bool hp_restore(void);
/* Take n available 2 MiB pages into a memfd of our own, read their physical addresses from
 * /proc/self/pagemap into frames[0..n) in ascending order, and give the pages back.  With
 * n = hp_available() this is the pool's free set: the pages a region of n pages gets, in
 * some order.  false with why when it cannot (not root: frames hidden; pool too short). */
bool hp_free_frames(long n, uint64_t *frames, const char **why);

#endif /* PP_TEST_HUGEPAGES_H */
