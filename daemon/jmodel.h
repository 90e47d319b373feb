/* jmodel.h — what pinpoold's journal records mean: the record types and their encoders,
 * and the journal's model — a plain picture of who holds what (sessions, buffers, caches,
 * objects, the counters) that records are replayed into, that a snapshot is written from,
 * and that the live ledger is compared with.  No allocator, no protobuf.  See jmodel.c. */
#ifndef PP_DAEMON_JMODEL_H
#define PP_DAEMON_JMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "u64map.h"

#define JM_REGION_ID_LEN 16u
#define JM_TOKEN_LEN 16u
#define JM_SESSION_NAME_MAX 64u /* bytes, NUL not counted */
#define JM_BUF_NAME_MAX 255u    /* a buffer's name proper, its scope not counted */
#define JM_CACHE_NAME_MAX 79u   /* a cache's qualified name, NUL not counted */
#define JM_REPLY_MAX (16u << 20)

/* Record types (journal_txn_add's type).  Payloads are little-endian (journal_enc_*);
 * "str" is a u32 length and the bytes. */
enum jrec_type {
  /* the daemon's own */
  JREC_REGION = 1,      /* region_id[16] */
  JREC_COUNTERS = 2,    /* next_session u64, next_handle u64, next_cache u32 */
  JREC_SESSION_NEW = 3, /* id u64, token[16], uid u32, gid u32, pid u32, connected_ms u64,
                           name str */
  JREC_SESSION_END = 4, /* id u64: the session holds nothing any more, and is gone */
  JREC_REPLY = 5,       /* session u64, request id u64, packed reply frame str */
  /* the ledger's primitives (ledger.c) */
  JREC_BUF_CREATE = 16,    /* handle u64, offset u64, order u8, charged uid u32 */
  JREC_BUF_DESTROY = 17,   /* handle u64 */
  JREC_HOLD = 18,          /* session u64, handle u64, refs u64 */
  JREC_UNHOLD = 19,        /* session u64, handle u64, refs u64 */
  JREC_PUBLISH = 20,       /* handle u64, scope u64, name proper str */
  JREC_UNPUBLISH = 21,     /* handle u64 */
  JREC_OWNER = 22,         /* handle u64, charged uid u32 */
  JREC_OBJ_TAKE = 23,      /* session u64, cache u32, n u32, offsets u64[n] */
  JREC_OBJ_GIVE = 24,      /* session u64, cache u32, n u32, offsets u64[n] */
  JREC_CACHE_CREATE = 25,  /* id u32, scope u64, object_size u32, align u32, name str */
  JREC_CACHE_DESTROY = 26, /* id u32 */
  JREC_CACHE_OPEN = 27,    /* session u64, cache u32, opens u64 */
  JREC_CACHE_CLOSE = 28,   /* session u64, cache u32, opens u64 */
};

/* ---- the model ------------------------------------------------------------------------ */

typedef struct jm_session {
  uint64_t id;
  uint8_t token[JM_TOKEN_LEN];
  uint32_t uid, gid, pid;
  uint64_t connected_ms; /* Unix time */
  char name[JM_SESSION_NAME_MAX + 1];
  uint64_t reply_id; /* the last request whose reply was recorded; 0: none */
  uint8_t *reply;    /* its packed reply frame (malloc'd) */
  size_t reply_len;
  u64map_t holds;      /* handle -> references */
  u64map_t opens;      /* cache id -> opens */
  u64map_t objs;       /* object offset -> cache id */
  u64map_t cache_objs; /* cache id -> objects held of it */
} jm_session_t;

typedef struct jm_buf {
  uint64_t handle, offset;
  unsigned order; /* a buddy block of 4 KiB << order */
  uint32_t owner_uid;
  bool published;
  uint64_t scope;    /* of the name (ledger_scope_t) */
  char *name;        /* the name proper (malloc'd), when published */
  uint64_t *holders; /* session ids, in the order they first took a reference */
  uint32_t nholders, cap;
} jm_buf_t;

typedef struct jm_cache {
  uint32_t id;
  uint64_t scope;
  uint32_t object_size, align;
  char name[JM_CACHE_NAME_MAX + 1]; /* qualified: "~1000/mbuf" */
  uint32_t openers;                 /* sessions with it open */
  uint64_t objects;                 /* objects sessions hold */
} jm_cache_t;

typedef struct jmodel {
  bool have_region;
  uint8_t region_id[JM_REGION_ID_LEN];
  u64map_t sessions;  /* id -> jm_session_t* */
  u64map_t bufs;      /* handle -> jm_buf_t* */
  u64map_t caches;    /* id -> jm_cache_t* */
  u64map_t buf_at;    /* block offset -> handle */
  u64map_t obj_owner; /* object offset -> session id */
  uint64_t next_session, next_handle;
  uint32_t next_cache;
} jmodel_t;

void jmodel_init(jmodel_t *m);
void jmodel_fini(jmodel_t *m);

/* The changes, each validated against the model: 0, PP_ECORRUPT (why says what does not
 * fit: an unknown session, a reference dropped that was never taken, ...) or
 * PP_ENOPRIVMEM.  A failed call leaves the model as it was. */
int jmodel_set_region(jmodel_t *m, const uint8_t id[JM_REGION_ID_LEN], char *why, size_t n);
/* Counters only move forward. */
void jmodel_counters(jmodel_t *m, uint64_t next_session, uint64_t next_handle,
                     uint32_t next_cache);
int jmodel_session_new(jmodel_t *m, uint64_t id, const uint8_t token[JM_TOKEN_LEN],
                       uint32_t uid, uint32_t gid, uint32_t pid, uint64_t connected_ms,
                       const char *name, size_t name_len, char *why, size_t n);
int jmodel_session_end(jmodel_t *m, uint64_t id, char *why, size_t n);
int jmodel_reply(jmodel_t *m, uint64_t sid, uint64_t request_id, const void *reply, size_t len,
                 char *why, size_t n);
int jmodel_buf_create(jmodel_t *m, uint64_t handle, uint64_t offset, unsigned order,
                      uint32_t uid, char *why, size_t n);
int jmodel_buf_destroy(jmodel_t *m, uint64_t handle, char *why, size_t n);
int jmodel_hold(jmodel_t *m, uint64_t sid, uint64_t handle, uint64_t refs, char *why, size_t n);
int jmodel_unhold(jmodel_t *m, uint64_t sid, uint64_t handle, uint64_t refs, char *why,
                  size_t n);
int jmodel_publish(jmodel_t *m, uint64_t handle, uint64_t scope, const char *name,
                   size_t name_len, char *why, size_t n);
int jmodel_unpublish(jmodel_t *m, uint64_t handle, char *why, size_t n);
int jmodel_owner(jmodel_t *m, uint64_t handle, uint32_t uid, char *why, size_t n);
int jmodel_obj_take(jmodel_t *m, uint64_t sid, uint32_t cache, uint64_t offset, char *why,
                    size_t n);
int jmodel_obj_give(jmodel_t *m, uint64_t sid, uint32_t cache, uint64_t offset, char *why,
                    size_t n);
int jmodel_cache_create(jmodel_t *m, uint32_t id, uint64_t scope, uint32_t object_size,
                        uint32_t align, const char *name, size_t name_len, char *why, size_t n);
int jmodel_cache_destroy(jmodel_t *m, uint32_t id, char *why, size_t n);
int jmodel_cache_open(jmodel_t *m, uint64_t sid, uint32_t cache, uint64_t opens, char *why,
                      size_t n);
int jmodel_cache_close(jmodel_t *m, uint64_t sid, uint32_t cache, uint64_t opens, char *why,
                       size_t n);

/* One record (type, payload) applied: decoded (PP_ECORRUPT when malformed or of an unknown
 * type) and then as the calls above. */
int jmodel_apply(jmodel_t *m, uint32_t type, const void *payload, size_t len, char *why,
                 size_t n);
/* Every valid transaction of j's current generation applied to m (which should be fresh).
 * 0, or the first error (why names the transaction).  *ret_scan (may be NULL) as
 * journal_replay's. */
int jmodel_replay(journal_t *j, jmodel_t *m, journal_scan_t *ret_scan, char *why, size_t n);

/* The end state must hold together beyond what each record checked: a region id; every
 * buffer held by someone, charged to a holder's uid, no two buffers' blocks overlapping;
 * every cache open by someone; every object's cache open by the session holding it.
 * 0 or PP_ECORRUPT with why. */
int jmodel_check(const jmodel_t *m, char *why, size_t n);
/* Do a and b describe the same state (counters, sessions with their last replies, buffers
 * with their holders in order, caches, objects)?  0, or PP_ECORRUPT with the first
 * difference in why. */
int jmodel_equal(const jmodel_t *a, const jmodel_t *b, char *why, size_t n);

/* Writes m as transactions of j (inside a compaction: its snapshot), in an order that
 * replays into m again: region, sessions and replies, caches, buffers and names,
 * references, opens, objects, counters.  Transactions are cut at about 1 MiB.  0 or the first
 * journal error. */
int jmodel_emit(const jmodel_t *m, journal_t *j);

/* Keys of map in ascending order (malloc'd; NULL with *ret_n 0 when empty; PP_ENOPRIVMEM
 * leaves *ret_keys NULL and returns it). */
int jmodel_sorted_keys(const u64map_t *map, uint64_t **ret_keys, size_t *ret_n);

/* ---- record encoders (into j's open transaction) --------------------------------------- */

int jrec_region(journal_t *j, const uint8_t id[JM_REGION_ID_LEN]);
int jrec_counters(journal_t *j, uint64_t next_session, uint64_t next_handle,
                  uint32_t next_cache);
int jrec_session_new(journal_t *j, uint64_t id, const uint8_t token[JM_TOKEN_LEN], uint32_t uid,
                     uint32_t gid, uint32_t pid, uint64_t connected_ms, const char *name);
int jrec_session_end(journal_t *j, uint64_t id);
int jrec_reply(journal_t *j, uint64_t sid, uint64_t request_id, const void *reply, size_t len);
int jrec_buf_create(journal_t *j, uint64_t handle, uint64_t offset, unsigned order,
                    uint32_t uid);
/* JREC_BUF_DESTROY, JREC_UNPUBLISH: a handle alone. */
int jrec_handle(journal_t *j, uint32_t type, uint64_t handle);
/* JREC_HOLD, JREC_UNHOLD. */
int jrec_hold(journal_t *j, uint32_t type, uint64_t sid, uint64_t handle, uint64_t refs);
int jrec_publish(journal_t *j, uint64_t handle, uint64_t scope, const char *name);
int jrec_owner(journal_t *j, uint64_t handle, uint32_t uid);
/* JREC_OBJ_TAKE, JREC_OBJ_GIVE: n objects of one cache, one session. */
int jrec_objs(journal_t *j, uint32_t type, uint64_t sid, uint32_t cache, const uint64_t *offs,
              uint32_t n);
int jrec_cache_create(journal_t *j, uint32_t id, uint64_t scope, uint32_t object_size,
                      uint32_t align, const char *name);
int jrec_cache_destroy(journal_t *j, uint32_t id);
/* JREC_CACHE_OPEN, JREC_CACHE_CLOSE. */
int jrec_cache_opens(journal_t *j, uint32_t type, uint64_t sid, uint32_t cache, uint64_t opens);

#endif
