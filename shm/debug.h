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

#include <stdio.h>
#include <stdlib.h>

#ifndef PP_DEBUG
#define PP_DEBUG 0
#endif

#define PP__FAIL(kind, what)                                                          \
  (fprintf(stderr, "pinpool %s failed: %s at %s:%d\n", kind, what, __FILE__, __LINE__), \
   abort())

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
#define PP_VALIDATE(check_fn, obj)                                                    \
  do {                                                                                \
    char pp__why[256];                                                                \
    if (check_fn((obj), pp__why, sizeof pp__why) != 0) PP__FAIL(#check_fn, pp__why);  \
  } while (0)
#else
#define PP_VALIDATE(check_fn, obj) ((void)0)
#endif

#endif /* PP_DEBUG_H */
