/*
 * debug.h — the three assert levels (mimalloc's habit), chosen at build time by PP_DEBUG:
 *   PP_DEBUG >= 1  PP_ASSERT:   cheap checks of arguments and results;
 *   PP_DEBUG >= 2  PP_IASSERT:  internal invariants that cost a little more;
 *   PP_DEBUG >= 3  PP_VALIDATE: run a whole validator (buddy_check(), slab_check(), ...)
 *                  after every state change and abort with its reason on failure.
 * Release builds compile all three away.
 */
#ifndef PP_DEBUG_H
#define PP_DEBUG_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef PP_DEBUG
#define PP_DEBUG 0
#endif

#define PP__FAIL(kind, what)                                                                   \
  (fprintf(stderr, "pinpool %s failed: %s at %s:%d\n", kind, what, __FILE__, __LINE__), abort())

#if PP_DEBUG >= 1
#define PP_ASSERT(e) ((e) ? (void)0 : PP__FAIL("assert", #e))
#else
#define PP_ASSERT(e) ((void)0)
#endif

#if PP_DEBUG >= 2
#define PP_IASSERT(e) ((e) ? (void)0 : PP__FAIL("internal assert", #e))
#else
#define PP_IASSERT(e) ((void)0)
#endif

/* check_call is an expression `fn(obj, why, sizeof why)` returning 0 or a PP_E* code. */
#if PP_DEBUG >= 3
#define PP_VALIDATE(check_fn, obj)                                                             \
  do {                                                                                         \
    char pp__why[256];                                                                         \
    if (check_fn((obj), pp__why, sizeof pp__why) != 0) PP__FAIL(#check_fn, pp__why);           \
  } while (0)
#else
#define PP_VALIDATE(check_fn, obj) ((void)0)
#endif

/* The one way a validator (buddy_check, slab_check, ...) reports a violation: the first
 * one it finds goes to why (when why is non-NULL and why_len > 0) and the result is
 * PP_ECORRUPT, so a check reads `if (bad) return pp_corrupt(why, why_len, "...", ...);`.
 * A validator that runs under a lock assigns the result and leaves through its unlock
 * instead of returning: the control flow stays visible at the call. */
int pp_corrupt(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif /* PP_DEBUG_H */
