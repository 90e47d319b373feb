/* log.h — the daemon's log: stderr lines with sd-daemon priority prefixes ("<3>...") so the
 * journal records each line at its level.  Levels are syslog's (LOG_ERR = 3 ... LOG_DEBUG = 7).
 * See log.c. */
#ifndef PP_DAEMON_LOG_H
#define PP_DAEMON_LOG_H

#include <syslog.h>

/* Lines above this level are dropped; LOG_INFO until log_set_level() says otherwise. */
void log_set_level(int level);
/* "err", "warning", "notice", "info", "debug" (also "error", "warn") or a digit 0..7. */
int log_parse_level(const char *s, int *ret_level);

void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adapter with the shape region_config_t.log wants. */
void log_region_cb(void *ctx, int level, const char *msg);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
