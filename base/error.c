/*
 * error.c — names and messages for the one error table (pinpool_err.h).
 * Compiled into every layer's library and into libpinpool alike, so the daemon, the client
 * library and pinpoolctl all print the same words for the same code.
 */
#include "pinpool_err.h"

#include <stddef.h>

/* The numbers must run 1, 2, 3 ... in table order: PP__ERR_MAX and the protocol's Status
 * enum are derived from that. */
enum {
  PP__ERR_INDEX_ZERO = 0,
#define XX(suffix, num, status, msg) PP__ERR_INDEX_##suffix,
  PP_ERRNO_MAP(XX)
#undef XX
};
#define XX(suffix, num, status, msg)                                                           \
  _Static_assert(PP__ERR_INDEX_##suffix == (num), "PP_E" #suffix " is out of sequence");
PP_ERRNO_MAP(XX)
#undef XX

const char *pp_strerror(int err) {
  switch (err) {
  case PP_OK: return "success";
#define XX(suffix, num, status, msg)                                                           \
  case PP_##suffix: return msg;
    PP_ERRNO_MAP(XX)
#undef XX
  default: return "unknown error";
  }
}

const char *pp_err_name(int err) {
  switch (err) {
  case PP_OK: return "PP_OK";
#define XX(suffix, num, status, msg)                                                           \
  case PP_##suffix: return "PP_" #suffix;
    PP_ERRNO_MAP(XX)
#undef XX
  default: return "PP_UNKNOWN";
  }
}

const char *pp_status_name(int err) {
  switch (err) {
  case PP_OK: return "OK";
#define XX(suffix, num, status, msg)                                                           \
  case PP_##suffix: return #status;
    PP_ERRNO_MAP(XX)
#undef XX
  default: return "UNKNOWN";
  }
}
