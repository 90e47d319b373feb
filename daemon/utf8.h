/* utf8.h — the one UTF-8 validity rule the daemon applies to names it keeps (buffer and
 * cache names, client names).  See utf8.c. */
#ifndef PP_DAEMON_UTF8_H
#define PP_DAEMON_UTF8_H

#include <stddef.h>

/* Length of the longest prefix of s, at most max bytes, made of whole valid UTF-8
 * characters.  s is NUL-terminated or at least max bytes long. */
size_t utf8_prefix(const char *s, size_t max);

#endif
