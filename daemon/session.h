/* session.h — one client connection's identity and holdings.  See session.c. */
#ifndef PP_DAEMON_SESSION_H
#define PP_DAEMON_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "u64map.h"

#define SESSION_TOKEN_LEN 16u
#define SESSION_NAME_MAX 64u /* client_name bytes kept, without the NUL */

typedef struct session {
  uint64_t id;                      /* unique within this daemon's lifetime, from 1 */
  uint8_t token[SESSION_TOKEN_LEN]; /* random; re-claims holdings after a restart (later) */
  pid_t pid;                        /* SO_PEERCRED at accept: never what the client says */
  uid_t uid;
  gid_t gid;
  bool admin;                      /* uid 0 or member of the admin group, decided once */
  bool hello_done;                 /* the first request must be Hello */
  char name[SESSION_NAME_MAX + 1]; /* Hello.client_name, for operators */
  uint64_t connected_ms;           /* Unix time in ms */
  uint64_t requests;               /* requests served, Hello included */

  /* Holdings.  holds: buffer handle -> references this session holds (alloc and each
   * lookup add one).  objs: object offset -> cache id, the objects it holds. */
  u64map_t holds;
  u64map_t objs;
  uint64_t buf_refs;  /* sum of holds' counts (the per-session buffer limit) */
  uint64_t buf_bytes; /* block bytes of the distinct buffers it holds */
  uint64_t obj_bytes; /* object_size bytes of the objects it holds */

  struct session *prev, *next; /* the pool's list of live sessions */
} session_t;

/* A new session with a fresh id and token.  PP_ENOMEM, or PP_EOS when getrandom fails. */
int session_create(pid_t pid, uid_t uid, gid_t gid, session_t **ret);
/* Frees the session's private memory; its holdings must have been released
 * (pool_session_release) first. */
void session_destroy(session_t *s);
/* Sets the name from Hello.client_name, cut at SESSION_NAME_MAX and at control chars. */
void session_set_name(session_t *s, const char *name);
/* Length of the longest prefix of s, at most max bytes, made of whole valid UTF-8
 * characters.  proto3 strings must be UTF-8: a name that is not would make strict decoders
 * (Python, Go) reject every Stats reply that carries it. */
size_t session_utf8_prefix(const char *s, size_t max);
/* Is uid/gid (with the supplementary groups of uid's user) root or in admin_gid?
 * admin_gid (gid_t)-1 means: root only. */
bool session_is_admin(uid_t uid, gid_t gid, gid_t admin_gid);

#endif
