/*
 * debug.c — the validators' shared way of reporting a violation (debug.h).
 */
#include "debug.h"

#include <stdarg.h>

#include "pinpool_err.h"

int pp_corrupt(char *why, size_t why_len, const char *fmt, ...) {
  if (why && why_len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
  }
  return PP_ECORRUPT;
}
