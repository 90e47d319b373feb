/*
 * log.c — pinpoold's logging.
 *
 * What: every message becomes one line on stderr, prefixed with the sd-daemon priority
 * marker "<N>" (sd-daemon(3)).  Under systemd, stderr is a journal stream that parses the
 * marker, so `journalctl -p warning -u pinpoold` works without linking the journal API;
 * in a terminal the marker is a small price for one code path.
 *
 * Why one line per call: the journal splits records at newlines, so a message is
 * formatted into one buffer first and written with a single fputs, which also keeps lines
 * whole if something else writes to stderr.
 *
 * Locks: none.  The daemon logs from its one loop thread; the level is a plain int set at
 * start-up.
 */
#include "log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pinpool_err.h"

static int log_level = LOG_INFO;

void log_set_level(int level) {
  if (level < LOG_EMERG) level = LOG_EMERG;
  if (level > LOG_DEBUG) level = LOG_DEBUG;
  log_level = level;
}

int log_parse_level(const char *s, int *ret_level) {
  static const struct {
    const char *name;
    int level;
  } names[] = {
      {"emerg", LOG_EMERG},  {"alert", LOG_ALERT},   {"crit", LOG_CRIT},
      {"err", LOG_ERR},      {"error", LOG_ERR},     {"warning", LOG_WARNING},
      {"warn", LOG_WARNING}, {"notice", LOG_NOTICE}, {"info", LOG_INFO},
      {"debug", LOG_DEBUG},
  };
  if (!s || !*s) return PP_EINVAL;
  if (isdigit((unsigned char)s[0]) && s[1] == '\0') {
    if (s[0] > '7') return PP_EINVAL;
    *ret_level = s[0] - '0';
    return 0;
  }
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (!strcasecmp(s, names[i].name)) {
      *ret_level = names[i].level;
      return 0;
    }
  return PP_EINVAL;
}

void log_msg(int level, const char *fmt, ...) {
  char line[1024];
  int n;
  va_list ap;

  if (level > log_level) return;
  n = snprintf(line, sizeof line, "<%d>", level < 0 ? 0 : level);
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  /* Embedded newlines would start unprefixed journal records: flatten them. */
  for (char *p = line + n; *p; p++)
    if (*p == '\n') *p = ' ';
  strcat(line, "\n");
  fputs(line, stderr);
}

void log_region_cb(void *ctx, int level, const char *msg) {
  (void)ctx;
  log_msg(level, "%s", msg);
}
