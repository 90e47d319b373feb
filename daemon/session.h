/* session.h — one client connection's identity, and the daemon's list of sessions past
 * Hello.  What a session holds is the ledger's (ledger.h).  See session.c. */
#ifndef PP_DAEMON_SESSION_H
#define PP_DAEMON_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SESSION_TOKEN_LEN 16u
#define SESSION_NAME_MAX 64u /* client_name bytes kept, without the NUL */

struct ledger_holder;
struct session_pool;

/* What restart survival keeps of a session (persist.c), made when first needed: a session
 * that never made a journaled change and never came back from a journal has none, so an
 * idle connection pays one pointer for it. */
typedef struct session_keep {
  /* A session a restarted daemon took back from its journal is detached — on the session
   * list, holding what it held, with no connection — until a Hello presenting its token
   * re-claims it or its deadline passes (then it is released as a disconnect is).  Both
   * deadlines say the same moment: Unix ms for Stats, the loop's clock for the timer. */
  uint64_t detached_deadline_unix_ms;
  uint64_t detached_deadline_loop_ms;
  /* The reply to the last request whose changes were journaled, as packed (its frame),
   * and that request's id: a re-claiming client that sends that id again first gets these
   * bytes instead of having the request carried out twice. */
  uint64_t reply_id;
  uint8_t *reply;
  uint32_t reply_len, reply_cap;
} session_keep_t;

typedef struct session {
  uint64_t id;                      /* unique within this daemon's lifetime, from 1 */
  uint8_t token[SESSION_TOKEN_LEN]; /* random; re-claims holdings after a restart (later) */
  pid_t pid;                        /* SO_PEERCRED at accept: never what the client says */
  uid_t uid;
  gid_t gid;
  bool admin;                      /* uid 0 or member of the admin group, decided once */
  bool hello_done;                 /* the first request must be Hello */
  bool detached;                   /* brought back by a restart, not re-claimed yet (keep) */
  bool restored;                   /* brought back by a restart or reload (session_restore) */
  char name[SESSION_NAME_MAX + 1]; /* Hello.client_name, for operators */
  uint64_t connected_ms;           /* Unix time in ms */
  uint64_t requests;               /* requests served, Hello included */

  /* Its holdings in the pool's ledger: made at Hello, returned and freed at disconnect
   * (ledger_holder_release).  NULL before Hello.  This is the default pool's. */
  struct ledger_holder *holder;
  /* Its attachments of the other pools (pools.h: POOLS_MAX entries indexed by pool id, a
   * holder and an access each), made at its first AttachPool; NULL until then. */
  struct session_pool *pools;
  session_keep_t *keep; /* restart survival's part; NULL until needed */

  struct session *prev, *next; /* the daemon's list of sessions past Hello */
} session_t;

/* Sessions past Hello, newest first: what Stats.clients lists and --max-clients counts. */
typedef struct session_list {
  session_t *head;
  uint32_t n;
} session_list_t;

/* A new session with a fresh id and token.  PP_ENOPRIVMEM, or PP_EOS when getrandom
 * fails. */
int session_create(pid_t pid, uid_t uid, gid_t gid, session_t **ret);
/* A session as a restarted daemon's journal describes it: that id and token (the id
 * counter moves past id), hello_done, detached (with its keep, deadlines 0).
 * PP_ENOPRIVMEM. */
int session_restore(uint64_t id, const uint8_t token[SESSION_TOKEN_LEN], pid_t pid, uid_t uid,
                    gid_t gid, const char *name, uint64_t connected_ms, session_t **ret);
/* Ids below next are never given to a new session (ids of sessions a restored journal
 * saw end, or the previous image of a reloaded daemon gave). */
void session_skip_ids(uint64_t next);
/* The id the next new session gets (a reload hands it on). */
uint64_t session_next(void);
/* Keep bytes as the session's last journaled reply to request id.  PP_ENOPRIVMEM (the old
 * one is then forgotten too, so that a stale reply never answers a retry). */
/* The kept reply (NULL and 0 when none): its request id in *ret_id. */
const uint8_t *session_kept_reply(const session_t *s, uint64_t *ret_id, size_t *ret_len);
/* Unix ms by which a detached session must be re-claimed; 0 when it is not detached. */
uint64_t session_detached_deadline(const session_t *s);
int session_keep_reply(session_t *s, uint64_t id, const uint8_t *bytes, size_t len);
/* Frees the session; its holder must have been released (ledger_holder_release) and the
 * session taken off any list first. */
void session_destroy(session_t *s);
/* Sets the name from Hello.client_name, cut at SESSION_NAME_MAX, at the first byte that
 * is not UTF-8, and with control characters replaced by '?'. */
void session_set_name(session_t *s, const char *name);
/* Is uid/gid (with the supplementary groups of uid's user) root or in admin_gid?
 * admin_gid (gid_t)-1 means: root only. */
bool session_is_admin(uid_t uid, gid_t gid, gid_t admin_gid);

void session_list_add(session_list_t *l, session_t *s);
/* Safe for a session that is not on the list. */
void session_list_del(session_list_t *l, session_t *s);

#endif
