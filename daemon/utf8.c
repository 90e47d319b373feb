/*
 * utf8.c — is a name valid UTF-8?
 *
 * Why the daemon cares: proto3 strings must be UTF-8, and every name the daemon keeps
 * (a published buffer's, a cache's, a client's) comes back out in Stats replies.  One
 * name that is not UTF-8 would make strict decoders (Python, Go) reject every Stats reply
 * that carries it, so names are checked when they come in: the ledger refuses buffer and
 * cache names that are not, and a client name is cut at the first bad byte.
 *
 * The rule is RFC 3629's: 1 to 4 bytes per character, no overlong forms, no surrogates
 * (U+D800..U+DFFF), nothing past U+10FFFF.
 *
 * Locks: none; a pure function.
 */
#include "utf8.h"

#include <stdint.h>

size_t utf8_prefix(const char *str, size_t max) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < max && s[i]) {
    unsigned c = s[i];
    size_t n = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    uint32_t cp;
    if (!n || i + n > max) break;
    cp = n == 1 ? c : c & (0x7fu >> n);
    for (size_t k = 1; k < n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
      cp = cp << 6 | (s[i + k] & 0x3fu);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      break;
    i += n;
  }
  return i;
}
