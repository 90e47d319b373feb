/*
 * pinpool_err.h — the one error table.
 *
 * Every pinpool function that can fail returns int: 0 (or a count) on success,
 * a negative PP_E* code on failure.  The same table gives
 *   - the C codes (PP_EINVAL = -1, ...),
 *   - the protocol's Status enum values (INVALID_ARGUMENT = 1, ...; the status
 *     sent on the wire is the negated code, OK = 0), and
 *   - the names and messages returned by pp_err_name() / pp_strerror().
 * proto/pinpool.proto must list the same statuses with the same numbers; a unit
 * test compares the generated enum descriptor against this table.
 *
 * It sits below every other layer (base/): the allocator core, the framing, the daemon
 * and the client library all speak it, and it is installed next to pinpool.h.
 *
 * Modeled on libuv's UV_ERRNO_MAP: add a row here and every layer learns it.  Numbers are
 * consecutive from 1; PP__ERR_MAX is derived from the table.
 */
#ifndef PINPOOL_ERR_H
#define PINPOOL_ERR_H

#ifdef __cplusplus
extern "C" {
#endif

/* clang-format off */
/*  XX(code suffix, number, protocol status name, message) */
#define PP_ERRNO_MAP(XX)                                                              \
  XX(EINVAL,      1,  INVALID_ARGUMENT,      "invalid argument")                      \
  XX(ENOMEM,      2,  NO_MEMORY,             "out of memory in the region")           \
  XX(ENOCONTIG,   3,  NO_CONTIGUOUS_MEMORY,  "no physically contiguous block available") \
  XX(ENOENT,      4,  NOT_FOUND,             "not found")                             \
  XX(EEXIST,      5,  ALREADY_EXISTS,        "already exists")                        \
  XX(EPERM,       6,  PERMISSION_DENIED,     "permission denied")                     \
  XX(EQUOTA,      7,  QUOTA_EXCEEDED,        "quota exceeded")                        \
  XX(EPROTO,      8,  PROTOCOL_ERROR,        "protocol error")                        \
  XX(EVERSION,    9,  UNSUPPORTED_VERSION,   "unsupported protocol version")          \
  XX(ETOOMANY,    10, TOO_MANY_CLIENTS,      "too many clients")                      \
  XX(ELIMIT,      11, TOO_MANY_BUFFERS,      "limit reached (buffers per session, caches)") \
  XX(ERANGE,      12, OUT_OF_RANGE,          "size, order or count out of range")     \
  XX(ENOTBLOCK,   13, NOT_BLOCK_START,       "offset is not the start of a block or object") \
  XX(ENOTALLOC,   14, NOT_ALLOCATED,         "block or object is not allocated")      \
  XX(EDOUBLEFREE, 15, DOUBLE_FREE,           "double free")                           \
  XX(EBUSY,       16, BUSY,                  "block is (partly) in use")              \
  XX(EGEOMETRY,   17, GEOMETRY_MISMATCH,     "cache exists with a different geometry") \
  XX(ENOHUGE,     18, NO_HUGEPAGES,          "not enough hugepages")                  \
  XX(EOS,         19, OS_ERROR,              "operating system call failed")          \
  XX(ECORRUPT,    20, CORRUPT,               "allocator invariant violated")          \
  XX(EINTERNAL,   21, INTERNAL,              "internal error")                        \
  XX(ECONNECT,    22, CONNECT_FAILED,        "cannot connect to pinpoold (is it running?)") \
  XX(EDISCONNECTED, 23, DISCONNECTED,        "connection to pinpoold lost")           \
  XX(EIO,         24, IO_ERROR,              "I/O error on the connection")           \
  XX(ENOPRIVMEM,  25, NO_PRIVATE_MEMORY,     "out of private memory (malloc failed)") \
  XX(EACCES,      26, SOCKET_ACCESS_DENIED,  "no permission to connect to pinpoold's socket") \
  XX(ESTATELOST,  27, STATE_LOST,            "the daemon restarted and this session's state is gone") \
  XX(ELOSTPAGE,   28, PAGES_LOST,            "region pages were punched out and cannot be replaced now")
/* clang-format on */

/* One past the largest number in the table (the numbers run 1, 2, ... without gaps;
 * base/error.c checks that at compile time). */
#define PP__ERR_ONE(suffix, num, status, msg) +1
enum { PP__ERR_MAX = 1 PP_ERRNO_MAP(PP__ERR_ONE) };

typedef enum pp_errno {
  PP_OK = 0,
#define PP__ERR_ENUM(suffix, num, status, msg) PP_##suffix = -(num),
  PP_ERRNO_MAP(PP__ERR_ENUM)
#undef PP__ERR_ENUM
} pp_errno_t;

/* Exported from libpinpool.so (built with hidden visibility by default). */
#ifndef PP_API
#define PP_API __attribute__((visibility("default")))
#endif

/* "invalid argument"; "unknown error" for a code not in the table. */
PP_API const char *pp_strerror(int err);
/* "PP_EINVAL"; "PP_UNKNOWN" for a code not in the table. */
PP_API const char *pp_err_name(int err);
/* "INVALID_ARGUMENT" — the protocol status name; "OK" for 0. */
PP_API const char *pp_status_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* PINPOOL_ERR_H */
