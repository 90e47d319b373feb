/* pools.h — the daemon's pools: one ledger each (its own region, allocators, quota), who
 * may write or read it, and the attachments sessions hold.  See pools.c. */
#ifndef PP_DAEMON_POOLS_H
#define PP_DAEMON_POOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ledger.h"
#include "persist.h"
#include "session.h"

#define POOLS_MAX 16u     /* pools per daemon, the default pool included */
#define POOL_NAME_MAX 31u /* bytes of a pool's name */
#define POOL_ACL_MAX 32u  /* entries of a writers or readers list */
#define POOL_ACL_TEXT 512u
#define POOL_DEFAULT_NAME "default"
#define POOL_REGION_ID_LEN 16u

/* Handles a client sees name their pool: the pool's id in bits 48..62 (the default pool's
 * is 0, so its handles are the ledger's own); bit 63 stays the client's (PROTOCOL.md). */
#define POOL_HANDLE_SHIFT 48
#define POOL_HANDLE_MASK (UINT64_C(0x7fff) << POOL_HANDLE_SHIFT)
#define POOL_HANDLE(pool, h) ((uint64_t)(pool) << POOL_HANDLE_SHIFT | (h))

/* The protocol's PoolAccess values. */
typedef enum pool_access {
  POOL_ACCESS_NONE = 0,
  POOL_ACCESS_READ = 1,
  POOL_ACCESS_WRITE = 2,
} pool_access_t;

typedef struct pool_acl {
  uint32_t n;
  struct {
    bool group;
    uint32_t id;
  } e[POOL_ACL_MAX];
} pool_acl_t;

/* A [pool NAME] section as the config file gives it (main.c reads it). */
typedef struct pool_def {
  char name[POOL_NAME_MAX + 1];
  char where[1100]; /* "FILE:LINE" of its section, for messages */
  uint64_t size;    /* 0 until given: required */
  region_page_policy_t policy;
  bool sort_pages;
  uint64_t quota;
  bool bind_node;
  unsigned numa_node;
  char writers[POOL_ACL_TEXT], readers[POOL_ACL_TEXT]; /* as written */
} pool_def_t;

typedef struct pool {
  uint32_t id; /* its index: 0 is the default pool */
  char name[POOL_NAME_MAX + 1];
  ledger_t *ledger;
  persist_t *persist; /* its journal and fd store entries (persist.c); NULL: none */
  bool open;          /* the default pool: everyone who may connect writes */
  pool_acl_t writers, readers;
  char writers_text[POOL_ACL_TEXT], readers_text[POOL_ACL_TEXT];
  bool bind_node;
  unsigned numa_node;
  uint8_t region_id[POOL_REGION_ID_LEN]; /* the default pool's is persist_region_id() */
} pool_t;

typedef struct pools {
  pool_t v[POOLS_MAX];
  uint32_t n;
} pools_t;

/* A session's attachment of one pool other than the default (session_t.pools[id]). */
typedef struct session_pool {
  ledger_holder_t *holder; /* NULL: not attached */
  uint8_t access;          /* pool_access_t */
} session_pool_t;

/* "alice, @video, 1000, @44" into ret: users by name or number, groups (@) by name or
 * number.  An unknown name is PP_ENOENT with it in why; more than POOL_ACL_MAX entries or
 * an empty entry PP_EINVAL. */
int pools_parse_acl(const char *text, pool_acl_t *ret, char *why, size_t why_len);
/* Checks a pool's section before anything is created: its name, size (given, a multiple
 * of an explicit page size), the NUMA node (exists), and its lists (every user and group
 * exists).  On a refusal why says which key and why; PP_EINVAL. */
int pools_check_def(const pool_def_t *d, pool_acl_t *ret_writers, pool_acl_t *ret_readers,
                    char *why, size_t why_len);

/* ps with the default pool alone (id 0, everyone writes) over ledger l, journaled by
 * persist (NULL: not journaled; the default pool's persist stays its owner's). */
void pools_init(pools_t *ps, ledger_t *l, persist_t *persist);
/* The pool d describes as the next id: its region and allocators (base's limits, d's
 * geometry, quota and node) taken back from region_fd and journal_fd (the fd store's for
 * this pool, -1 when none; both consumed) or created fresh, as persist_start does for the
 * default pool with pc.  Errors as persist_start. */
int pools_add(pools_t *ps, const pool_def_t *d, const ledger_config_t *base,
              const persist_config_t *pc, int region_fd, int journal_fd);
/* Destroy every pool but the default one (its ledger and persist are their owner's). */
void pools_fini(pools_t *ps);
pool_t *pools_find(pools_t *ps, const char *name);
pool_t *pools_get(pools_t *ps, uint32_t id);

/* What uid/gid (with the supplementary groups of uid's user) may do with p: the default
 * pool, and root, write; then the writers list, then the readers list; else none. */
pool_access_t pools_access(const pool_t *p, uid_t uid, gid_t gid);

/* Attach p for s with access acc (> NONE): a holder in p's ledger, kept until the session
 * ends.  Attaching again keeps the holder and takes the new access.  PP_ENOPRIVMEM. */
int pools_attach(pools_t *ps, session_t *s, pool_t *p, pool_access_t acc);
/* s's holder in pool id and its access: the default pool is always attached for writing
 * (s->holder).  PP_ENOENT when s has not attached id (or there is no such pool). */
int pools_session_get(pools_t *ps, session_t *s, uint32_t id, ledger_t **ret_l,
                      ledger_holder_t **ret_h, pool_access_t *ret_acc);
/* Give back everything s holds in pools other than the default, and its attachments
 * (journaled: persist_detach). */
void pools_session_release(pools_t *ps, session_t *s);
/* persist_request_end for every pool's persist (only one that recorded a change writes). */
void pools_request_end(pools_t *ps, session_t *s, uint64_t req_id, const uint8_t *reply,
                       size_t len);
/* The sessions each pool's journal brought back (persist_take_restored of the pool's
 * persist), joined to the default pool's sessions on list by id: each attachment goes to
 * the session of that id, when it is on the list and its uid may still use the pool, with
 * the access the lists give now; the session keeps the reply of the highest request id.
 * Attachments with no such session, or whose uid lost its access, are released (logged,
 * journaled). */
void pools_take_restored(pools_t *ps, session_list_t *list);
/* persist_tick / persist_stop for every pool but the default. */
void pools_tick(pools_t *ps);
void pools_stop(pools_t *ps);

#endif
