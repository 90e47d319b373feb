/*
 * units.c — parsing and printing byte counts (units.h).  Binary units only: a hugepage
 * pool, a region and a quota are all powers-of-two quantities, and "1G" meaning 10^9 bytes
 * would give a region that is not a whole number of 1 GiB pages.
 */
#include "units.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <strings.h>

#include "pinpool_err.h"

static const char *const units_names[] = {"B", "KiB", "MiB", "GiB", "TiB"};

int units_parse_size(const char *s, uint64_t *ret) {
  if (!s || !ret || !isdigit((unsigned char)*s)) return PP_EINVAL;
  uint64_t v = 0;
  for (; isdigit((unsigned char)*s); s++) {
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return PP_ERANGE;
    v = v * 10 + d;
  }
  const char *digits_end = s;
  while (*s == ' ')
    s++;
  unsigned shift = 0;
  switch (toupper((unsigned char)*s)) {
  case '\0':
    if (s != digits_end) return PP_EINVAL; /* spaces only between a number and its unit */
    break;
  case 'B':
    shift = 0;
    s++;
    break;
  case 'K': shift = 10; break;
  case 'M': shift = 20; break;
  case 'G': shift = 30; break;
  case 'T': shift = 40; break;
  default: return PP_EINVAL;
  }
  if (shift) {
    s++;
    if (!strcasecmp(s, "iB"))
      s += 2;
    else if (!strcasecmp(s, "B"))
      s += 1;
  }
  if (*s) return PP_EINVAL;
  if (shift && v > (UINT64_MAX >> shift)) return PP_ERANGE;
  *ret = v << shift;
  return 0;
}

int units_format_size(uint64_t bytes, char *buf, size_t len) {
  if (!buf) return PP_EINVAL;
  unsigned u = 0;
  while (u + 1 < sizeof units_names / sizeof units_names[0] && bytes != 0 &&
         (bytes & ((1ull << (10 * (u + 1))) - 1)) == 0)
    u++;
  int n = snprintf(buf, len, "%" PRIu64 " %s", bytes >> (10 * u), units_names[u]);
  if (n < 0 || (size_t)n >= len) return PP_ERANGE;
  return n;
}

