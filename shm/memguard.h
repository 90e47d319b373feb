/*
 * memguard.h — a memset that survives SIGBUS: when a page of the destination has been
 * taken away (a hugetlb page punched out of the region's file with no free hugepage left
 * to fault in again), it reports where instead of killing the process.  See memguard.c.
 */
#ifndef PP_MEMGUARD_H
#define PP_MEMGUARD_H

#include <stddef.h>

/* memset(dst, c, n), guarded: 0 when done; PP_EOS when a SIGBUS stopped it (*ret_fault,
 * when non-NULL, receives the faulting address; bytes before it were written, none after)
 * or when the guard's handler could not be installed (nothing written; errno says why).
 * A SIGBUS outside [dst, dst+n), or on a thread with no guard active, goes to the
 * handler that was installed before ours (or kills the process as it would have).
 * Thread-safe: each thread has its own guard.  Costs one sigaction query (ours must still
 * be the installed handler) besides the memset. */
int memguard_set(void *dst, int c, size_t n, void **ret_fault);

#endif /* PP_MEMGUARD_H */
