/*
 * units.h — byte counts as people write them ("64M", "2 MiB") and as pinpool prints them.
 * One parser for every size the daemon, its tools and its config file accept: region
 * sizes, page sizes, quotas, frame limits.  See units.c.
 */
#ifndef PP_UNITS_H
#define PP_UNITS_H

#include <stddef.h>
#include <stdint.h>

/* Parse a byte count: decimal digits, optional spaces, an optional binary suffix K, M, G
 * or T (also KB/KiB ..., and B; case-insensitive; "64M" = 64 << 20).  PP_EINVAL for
 * anything else (signs, fractions, trailing junk), PP_ERANGE when it exceeds 64 bits. */
int units_parse_size(const char *s, uint64_t *ret);
/* Write bytes in the largest binary unit that divides it exactly ("2 MiB", "1536 MiB",
 * "12345 B"), so units_parse_size() reads it back.  Returns the length, or PP_ERANGE
 * when buf is too small. */
int units_format_size(uint64_t bytes, char *buf, size_t len);

#endif /* PP_UNITS_H */
