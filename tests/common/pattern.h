/*
 * pattern.h — what a test writes into memory it holds, to check later that nobody else
 * wrote there: word i of a block tagged t is t ^ (i * 0x9e3779b97f4a7c15), the golden
 * ratio's odd multiplier, so two tags differ in every word and a block handed to two
 * holders, or overwritten by anyone, fails the check wherever it was touched.  Bytes past
 * the last whole word are neither written nor checked.  Header-only: the client programs
 * that run under systemd link nothing of the harness.
 */
#ifndef PP_TEST_PATTERN_H
#define PP_TEST_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline void pattern_fill(void *p, size_t n, uint64_t tag) {
  uint64_t *w = p;
  for (size_t i = 0; i < n / 8; i++)
    w[i] = tag ^ (i * 0x9e3779b97f4a7c15ull);
}

static inline bool pattern_intact(const void *p, size_t n, uint64_t tag) {
  const uint64_t *w = p;
  for (size_t i = 0; i < n / 8; i++)
    if (w[i] != (tag ^ (i * 0x9e3779b97f4a7c15ull))) return false;
  return true;
}

#endif /* PP_TEST_PATTERN_H */
