/*
 * jmodel.c — what pinpoold's journal says: its record types, and a model of the ownership
 * they describe.
 *
 * The journal (journal.c) stores typed records in transactions and knows nothing of what
 * they mean.  This file gives them meaning.  Every change of who holds what in the ledger
 * is one of its primitives (ledger.c's essay: buffer create/destroy, hold/unhold,
 * publish/unpublish, owner, object take/give, cache create/destroy/open/close); each is
 * written as one record, by the daemon's recorder (persist.c), into the transaction of the
 * request that made it, together with the request's reply (JREC_REPLY) — so a transaction
 * is exactly one request's effect.  Sessions come and go with JREC_SESSION_NEW and
 * JREC_SESSION_END; JREC_REGION names the region the journal describes, and
 * JREC_COUNTERS carries the counters a snapshot cannot infer (handles, session and cache
 * ids already given out, never to be given again).  Charges are not recorded: the charge
 * of a uid is a function of what its sessions hold (ledger.c, check_uids), so replay
 * derives it instead of trusting a number.
 *
 * The model.  Replay does not re-run the allocators' history (which would need every
 * free slab, magazine and split to come out the same).  It applies the records to a plain
 * model — sessions with their references, opens and objects; buffers with their block,
 * name, charged uid and holders in first-reference order; caches with their geometry —
 * and the daemon then builds the model's end state in the allocators directly
 * (ledger_restore: every buffer block re-taken with buddy_reserve, every object with
 * slab_cache_reserve).  Each record is checked against the model as it is applied: a
 * reference dropped that was never taken, an object given back by a session that does not
 * hold it, a cache destroyed while open, a buffer created at an offset another buffer
 * has, a session ended while it still holds something — none of these is a journal any
 * daemon writes, and replay stops with PP_ECORRUPT.  jmodel_check then checks the end
 * state as a whole (every buffer held and charged to one of its holders' uids, no two
 * blocks overlapping, every object's cache open by its holder).
 *
 * The same model serves three more purposes: a compaction writes the live state as a
 * snapshot by exporting the ledger and the sessions into a model and emitting it
 * (jmodel_emit, records in an order that replays into the same model); the consistency
 * check compares the model replayed from the journal with the model exported from the
 * live daemon (jmodel_equal); and tests use it as the reference.
 *
 * Record formats are in jmodel.h.  Integers are little-endian; a payload must be consumed
 * exactly (journal_dec_finish).  Object records carry a batch (one session, one cache):
 * a cache_alloc of 1024 objects is one record of 8 KiB, not 1024 records.
 *
 * Memory: private, from malloc; PP_ENOPRIVMEM leaves the model as it was.  Locks: none; a
 * model belongs to one thread.
 */
#include "jmodel.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pinpool_err.h"

#define EMIT_TXN_BYTES (1u << 20) /* jmodel_emit cuts a transaction after about this much */
#define ORDER_MAX 50u             /* 4 KiB << 50: far beyond any region */

static int bad(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t n, const char *fmt, ...) {
  if (why && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
  }
  return PP_ECORRUPT;
}

static int nomem(char *why, size_t n) {
  if (why && n) snprintf(why, n, "out of private memory");
  return PP_ENOPRIVMEM;
}

/* ---- lookups ---------------------------------------------------------------------------- */

static jm_session_t *session_of(const jmodel_t *m, uint64_t id) {
  uint64_t v;
  return u64map_get(&m->sessions, id, &v) ? (jm_session_t *)(uintptr_t)v : NULL;
}

static jm_buf_t *buf_of(const jmodel_t *m, uint64_t handle) {
  uint64_t v;
  return u64map_get(&m->bufs, handle, &v) ? (jm_buf_t *)(uintptr_t)v : NULL;
}

static jm_cache_t *cache_of(const jmodel_t *m, uint32_t id) {
  uint64_t v;
  return u64map_get(&m->caches, id, &v) ? (jm_cache_t *)(uintptr_t)v : NULL;
}

static uint64_t count_of(const u64map_t *map, uint64_t key) {
  uint64_t v = 0;
  u64map_get(map, key, &v);
  return v;
}

/* ---- life ------------------------------------------------------------------------------- */

void jmodel_init(jmodel_t *m) {
  memset(m, 0, sizeof *m);
  u64map_init(&m->sessions);
  u64map_init(&m->bufs);
  u64map_init(&m->caches);
  u64map_init(&m->buf_at);
  u64map_init(&m->obj_owner);
  m->next_session = m->next_handle = 1;
}

static void session_free(jm_session_t *s) {
  u64map_fini(&s->holds);
  u64map_fini(&s->opens);
  u64map_fini(&s->objs);
  u64map_fini(&s->cache_objs);
  free(s->reply);
  free(s);
}

static void buf_free(jm_buf_t *b) {
  free(b->name);
  free(b->holders);
  free(b);
}

void jmodel_fini(jmodel_t *m) {
  size_t it = 0;
  uint64_t k, v;
  while (u64map_next(&m->sessions, &it, &k, &v))
    session_free((jm_session_t *)(uintptr_t)v);
  it = 0;
  while (u64map_next(&m->bufs, &it, &k, &v))
    buf_free((jm_buf_t *)(uintptr_t)v);
  it = 0;
  while (u64map_next(&m->caches, &it, &k, &v))
    free((jm_cache_t *)(uintptr_t)v);
  u64map_fini(&m->sessions);
  u64map_fini(&m->bufs);
  u64map_fini(&m->caches);
  u64map_fini(&m->buf_at);
  u64map_fini(&m->obj_owner);
  memset(m, 0, sizeof *m);
}

/* ---- the changes ------------------------------------------------------------------------ */

int jmodel_set_region(jmodel_t *m, const uint8_t id[JM_REGION_ID_LEN], char *why, size_t n) {
  if (m->have_region && memcmp(m->region_id, id, JM_REGION_ID_LEN) != 0)
    return bad(why, n, "a second region id");
  memcpy(m->region_id, id, JM_REGION_ID_LEN);
  m->have_region = true;
  return 0;
}

void jmodel_counters(jmodel_t *m, uint64_t next_session, uint64_t next_handle,
                     uint32_t next_cache) {
  if (next_session > m->next_session) m->next_session = next_session;
  if (next_handle > m->next_handle) m->next_handle = next_handle;
  if (next_cache > m->next_cache) m->next_cache = next_cache;
}

static bool name_ok(const char *name, size_t len, size_t max) {
  return len <= max && !memchr(name, '\0', len);
}

int jmodel_session_new(jmodel_t *m, uint64_t id, const uint8_t token[JM_TOKEN_LEN],
                       uint32_t uid, uint32_t gid, uint32_t pid, uint64_t connected_ms,
                       const char *name, size_t name_len, char *why, size_t n) {
  jm_session_t *s;
  if (id == 0 || id == U64MAP_EMPTY) return bad(why, n, "session id %" PRIu64, id);
  if (session_of(m, id)) return bad(why, n, "session %" PRIu64 " begins twice", id);
  if (!name_ok(name, name_len, JM_SESSION_NAME_MAX))
    return bad(why, n, "session %" PRIu64 ": bad name", id);
  if (!(s = calloc(1, sizeof *s))) return nomem(why, n);
  s->id = id;
  memcpy(s->token, token, JM_TOKEN_LEN);
  s->uid = uid;
  s->gid = gid;
  s->pid = pid;
  s->connected_ms = connected_ms;
  memcpy(s->name, name, name_len);
  s->name[name_len] = '\0';
  u64map_init(&s->holds);
  u64map_init(&s->opens);
  u64map_init(&s->objs);
  u64map_init(&s->cache_objs);
  if (u64map_put(&m->sessions, id, (uint64_t)(uintptr_t)s)) {
    session_free(s);
    return nomem(why, n);
  }
  if (id >= m->next_session) m->next_session = id + 1;
  return 0;
}

int jmodel_session_end(jmodel_t *m, uint64_t id, char *why, size_t n) {
  jm_session_t *s = session_of(m, id);
  if (!s) return bad(why, n, "session %" PRIu64 " ends but never began", id);
  if (u64map_len(&s->holds) || u64map_len(&s->opens) || u64map_len(&s->objs))
    return bad(why, n, "session %" PRIu64 " ends holding %zu buffers, %zu caches, %zu objects",
               id, u64map_len(&s->holds), u64map_len(&s->opens), u64map_len(&s->objs));
  u64map_del(&m->sessions, id);
  session_free(s);
  return 0;
}

int jmodel_reply(jmodel_t *m, uint64_t sid, uint64_t request_id, const void *reply, size_t len,
                 char *why, size_t n) {
  jm_session_t *s = session_of(m, sid);
  uint8_t *copy;
  if (!s) return bad(why, n, "a reply for unknown session %" PRIu64, sid);
  if (request_id == 0 || len == 0 || len > JM_REPLY_MAX)
    return bad(why, n, "session %" PRIu64 ": reply %" PRIu64 " of %zu bytes", sid, request_id,
               len);
  if (!(copy = malloc(len))) return nomem(why, n);
  memcpy(copy, reply, len);
  free(s->reply);
  s->reply = copy;
  s->reply_len = len;
  s->reply_id = request_id;
  return 0;
}

int jmodel_buf_create(jmodel_t *m, uint64_t handle, uint64_t offset, unsigned order,
                      uint32_t uid, char *why, size_t n) {
  jm_buf_t *b;
  if (handle < m->next_handle || handle == U64MAP_EMPTY)
    return bad(why, n, "buffer %" PRIu64 " created below the next handle %" PRIu64, handle,
               m->next_handle);
  if (order > ORDER_MAX || offset % (4096ull << order) != 0 || offset == U64MAP_EMPTY)
    return bad(why, n, "buffer %" PRIu64 ": offset %" PRIu64 " is no block of order %u", handle,
               offset, order);
  if (u64map_get(&m->buf_at, offset, NULL))
    return bad(why, n, "buffer %" PRIu64 " at offset %" PRIu64 ", where another buffer is",
               handle, offset);
  if (!(b = calloc(1, sizeof *b))) return nomem(why, n);
  b->handle = handle;
  b->offset = offset;
  b->order = order;
  b->owner_uid = uid;
  if (u64map_put(&m->bufs, handle, (uint64_t)(uintptr_t)b)) goto fail;
  if (u64map_put(&m->buf_at, offset, handle)) {
    u64map_del(&m->bufs, handle);
    goto fail;
  }
  m->next_handle = handle + 1;
  return 0;
fail:
  buf_free(b);
  return nomem(why, n);
}

int jmodel_buf_destroy(jmodel_t *m, uint64_t handle, char *why, size_t n) {
  jm_buf_t *b = buf_of(m, handle);
  if (!b) return bad(why, n, "buffer %" PRIu64 " destroyed but never created", handle);
  if (b->nholders || b->published)
    return bad(why, n, "buffer %" PRIu64 " destroyed while %s", handle,
               b->nholders ? "held" : "published");
  u64map_del(&m->bufs, handle);
  u64map_del(&m->buf_at, b->offset);
  buf_free(b);
  return 0;
}

int jmodel_hold(jmodel_t *m, uint64_t sid, uint64_t handle, uint64_t refs, char *why,
                size_t n) {
  jm_session_t *s = session_of(m, sid);
  jm_buf_t *b = buf_of(m, handle);
  uint64_t have;
  if (!s || !b || refs == 0)
    return bad(why, n,
               "session %" PRIu64 " takes %" PRIu64 " references to buffer %" PRIu64 " (%s)",
               sid, refs, handle,
               !s   ? "no such session"
               : !b ? "no such buffer"
                    : "0");
  have = count_of(&s->holds, handle);
  if (have + refs < have) return bad(why, n, "reference count overflow");
  if (!have && b->nholders == b->cap) {
    uint32_t cap = b->cap ? b->cap * 2 : 2;
    uint64_t *v = realloc(b->holders, cap * sizeof *v);
    if (!v) return nomem(why, n);
    b->holders = v;
    b->cap = cap;
  }
  if (u64map_put(&s->holds, handle, have + refs)) return nomem(why, n);
  if (!have) b->holders[b->nholders++] = sid;
  return 0;
}

int jmodel_unhold(jmodel_t *m, uint64_t sid, uint64_t handle, uint64_t refs, char *why,
                  size_t n) {
  jm_session_t *s = session_of(m, sid);
  jm_buf_t *b = buf_of(m, handle);
  uint64_t have = s ? count_of(&s->holds, handle) : 0;
  if (!s || !b || refs == 0 || refs > have)
    return bad(why, n,
               "session %" PRIu64 " drops %" PRIu64 " of its %" PRIu64
               " references to buffer %" PRIu64,
               sid, refs, have, handle);
  if (have > refs) {
    u64map_put(&s->holds, handle, have - refs); /* the key exists: no allocation */
    return 0;
  }
  u64map_del(&s->holds, handle);
  for (uint32_t i = 0; i < b->nholders; i++)
    if (b->holders[i] == sid) {
      memmove(&b->holders[i], &b->holders[i + 1], (b->nholders - i - 1) * sizeof *b->holders);
      b->nholders--;
      break;
    }
  return 0;
}

int jmodel_publish(jmodel_t *m, uint64_t handle, uint64_t scope, const char *name,
                   size_t name_len, char *why, size_t n) {
  jm_buf_t *b = buf_of(m, handle);
  char *copy;
  if (!b || b->published)
    return bad(why, n, "buffer %" PRIu64 " published %s", handle,
               b ? "twice" : "but never created");
  if (name_len == 0 || !name_ok(name, name_len, JM_BUF_NAME_MAX))
    return bad(why, n, "buffer %" PRIu64 ": bad name", handle);
  if (!(copy = malloc(name_len + 1))) return nomem(why, n);
  memcpy(copy, name, name_len);
  copy[name_len] = '\0';
  b->name = copy;
  b->scope = scope;
  b->published = true;
  return 0;
}

int jmodel_unpublish(jmodel_t *m, uint64_t handle, char *why, size_t n) {
  jm_buf_t *b = buf_of(m, handle);
  if (!b || !b->published)
    return bad(why, n, "buffer %" PRIu64 " unpublished but %s", handle,
               b ? "not published" : "never created");
  free(b->name);
  b->name = NULL;
  b->scope = 0;
  b->published = false;
  return 0;
}

int jmodel_owner(jmodel_t *m, uint64_t handle, uint32_t uid, char *why, size_t n) {
  jm_buf_t *b = buf_of(m, handle);
  if (!b) return bad(why, n, "owner of buffer %" PRIu64 ", which does not exist", handle);
  b->owner_uid = uid;
  return 0;
}

int jmodel_obj_take(jmodel_t *m, uint64_t sid, uint32_t cache, uint64_t offset, char *why,
                    size_t n) {
  jm_session_t *s = session_of(m, sid);
  jm_cache_t *c = cache_of(m, cache);
  uint64_t k;
  if (!s || !c || offset == U64MAP_EMPTY)
    return bad(why, n, "session %" PRIu64 " takes object %" PRIu64 " of cache %u (%s)", sid,
               offset, cache,
               !s   ? "no such session"
               : !c ? "no such cache"
                    : "bad offset");
  if (u64map_get(&m->obj_owner, offset, NULL))
    return bad(why, n, "object %" PRIu64 " taken twice", offset);
  k = count_of(&s->cache_objs, cache);
  if (u64map_put(&s->objs, offset, cache)) return nomem(why, n);
  if (u64map_put(&m->obj_owner, offset, sid)) goto undo_objs;
  if (u64map_put(&s->cache_objs, cache, k + 1)) goto undo_owner;
  c->objects++;
  return 0;
undo_owner:
  u64map_del(&m->obj_owner, offset);
undo_objs:
  u64map_del(&s->objs, offset);
  return nomem(why, n);
}

int jmodel_obj_give(jmodel_t *m, uint64_t sid, uint32_t cache, uint64_t offset, char *why,
                    size_t n) {
  jm_session_t *s = session_of(m, sid);
  jm_cache_t *c = cache_of(m, cache);
  uint64_t cid, k;
  if (!s || !c || !u64map_get(&s->objs, offset, &cid) || cid != cache)
    return bad(why, n,
               "session %" PRIu64 " gives back object %" PRIu64
               " of cache %u, which it does not hold",
               sid, offset, cache);
  k = count_of(&s->cache_objs, cache);
  u64map_del(&s->objs, offset);
  u64map_del(&m->obj_owner, offset);
  if (k <= 1)
    u64map_del(&s->cache_objs, cache);
  else
    u64map_put(&s->cache_objs, cache, k - 1); /* the key exists: no allocation */
  c->objects--;
  return 0;
}

int jmodel_cache_create(jmodel_t *m, uint32_t id, uint64_t scope, uint32_t object_size,
                        uint32_t align, const char *name, size_t name_len, char *why,
                        size_t n) {
  jm_cache_t *c;
  size_t it = 0;
  uint64_t k, v;
  if (id < m->next_cache || id == UINT32_MAX)
    return bad(why, n, "cache %u created below the next id %u", id, m->next_cache);
  if (name_len == 0 || !name_ok(name, name_len, JM_CACHE_NAME_MAX))
    return bad(why, n, "cache %u: bad name", id);
  if (object_size == 0 || align == 0 || (align & (align - 1)))
    return bad(why, n, "cache %u: object size %u, align %u", id, object_size, align);
  while (u64map_next(&m->caches, &it, &k, &v)) {
    const jm_cache_t *o = (const jm_cache_t *)(uintptr_t)v;
    if (strlen(o->name) == name_len && !memcmp(o->name, name, name_len))
      return bad(why, n, "cache %u has the name of cache %u", id, o->id);
  }
  if (!(c = calloc(1, sizeof *c))) return nomem(why, n);
  c->id = id;
  c->scope = scope;
  c->object_size = object_size;
  c->align = align;
  memcpy(c->name, name, name_len);
  c->name[name_len] = '\0';
  if (u64map_put(&m->caches, id, (uint64_t)(uintptr_t)c)) {
    free(c);
    return nomem(why, n);
  }
  m->next_cache = id + 1;
  return 0;
}

int jmodel_cache_destroy(jmodel_t *m, uint32_t id, char *why, size_t n) {
  jm_cache_t *c = cache_of(m, id);
  if (!c || c->openers || c->objects)
    return bad(why, n, "cache %u destroyed %s", id,
               !c           ? "but never created"
               : c->openers ? "while open"
                            : "with objects held");
  u64map_del(&m->caches, id);
  free(c);
  return 0;
}

int jmodel_cache_open(jmodel_t *m, uint64_t sid, uint32_t cache, uint64_t opens, char *why,
                      size_t n) {
  jm_session_t *s = session_of(m, sid);
  jm_cache_t *c = cache_of(m, cache);
  uint64_t have;
  if (!s || !c || opens == 0)
    return bad(why, n, "session %" PRIu64 " opens cache %u (%s)", sid, cache,
               !s   ? "no such session"
               : !c ? "no such cache"
                    : "0 times");
  have = count_of(&s->opens, cache);
  if (have + opens < have) return bad(why, n, "open count overflow");
  if (u64map_put(&s->opens, cache, have + opens)) return nomem(why, n);
  if (!have) c->openers++;
  return 0;
}

int jmodel_cache_close(jmodel_t *m, uint64_t sid, uint32_t cache, uint64_t opens, char *why,
                       size_t n) {
  jm_session_t *s = session_of(m, sid);
  jm_cache_t *c = cache_of(m, cache);
  uint64_t have = s ? count_of(&s->opens, cache) : 0;
  if (!s || !c || opens == 0 || opens > have)
    return bad(why, n, "session %" PRIu64 " closes cache %u %" PRIu64 " of %" PRIu64 " times",
               sid, cache, opens, have);
  if (have > opens) {
    u64map_put(&s->opens, cache, have - opens); /* the key exists: no allocation */
    return 0;
  }
  if (count_of(&s->cache_objs, cache))
    return bad(why, n, "session %" PRIu64 " closes cache %u while it holds its objects", sid,
               cache);
  u64map_del(&s->opens, cache);
  c->openers--;
  return 0;
}

/* ---- decoding --------------------------------------------------------------------------- */

static int apply_objs(jmodel_t *m, uint32_t type, journal_dec_t *d, char *why, size_t n) {
  uint64_t sid = journal_dec_u64(d);
  uint32_t cache = journal_dec_u32(d), cnt = journal_dec_u32(d);
  const uint8_t *p;
  int rc;
  if (d->err || cnt == 0 || (size_t)cnt * 8 != d->len - d->off)
    return bad(why, n, "malformed object record");
  p = journal_dec_bytes(d, (size_t)cnt * 8);
  for (uint32_t i = 0; i < cnt; i++) {
    journal_dec_t one;
    journal_dec_init(&one, p + (size_t)i * 8, 8);
    uint64_t off = journal_dec_u64(&one);
    rc = type == JREC_OBJ_TAKE ? jmodel_obj_take(m, sid, cache, off, why, n)
                               : jmodel_obj_give(m, sid, cache, off, why, n);
    if (rc) {
      /* A batch is all or nothing, like the request that made it. */
      for (uint32_t k = 0; k < i; k++) {
        journal_dec_init(&one, p + (size_t)k * 8, 8);
        off = journal_dec_u64(&one);
        if (type == JREC_OBJ_TAKE)
          jmodel_obj_give(m, sid, cache, off, NULL, 0);
        else
          jmodel_obj_take(m, sid, cache, off, NULL, 0);
      }
      return rc;
    }
  }
  return 0;
}

int jmodel_apply(jmodel_t *m, uint32_t type, const void *payload, size_t len, char *why,
                 size_t n) {
  journal_dec_t d;
  const void *str;
  size_t slen = 0;
  uint64_t a, b, c;
  uint32_t u, v, w;
  int rc;

  journal_dec_init(&d, payload, len);
  if (type != JREC_REGION && !m->have_region)
    return bad(why, n, "record %u before the region's id", type);
  switch (type) {
  case JREC_REGION: {
    const uint8_t *id = journal_dec_bytes(&d, JM_REGION_ID_LEN);
    if (journal_dec_finish(&d)) break;
    return jmodel_set_region(m, id, why, n);
  }
  case JREC_COUNTERS:
    a = journal_dec_u64(&d);
    b = journal_dec_u64(&d);
    u = journal_dec_u32(&d);
    if (journal_dec_finish(&d)) break;
    jmodel_counters(m, a, b, u);
    return 0;
  case JREC_SESSION_NEW: {
    uint64_t id = journal_dec_u64(&d);
    const uint8_t *token = journal_dec_bytes(&d, JM_TOKEN_LEN);
    u = journal_dec_u32(&d);
    v = journal_dec_u32(&d);
    w = journal_dec_u32(&d);
    a = journal_dec_u64(&d);
    str = journal_dec_str(&d, &slen);
    if (!str || journal_dec_finish(&d)) break;
    return jmodel_session_new(m, id, token, u, v, w, a, str, slen, why, n);
  }
  case JREC_SESSION_END:
    a = journal_dec_u64(&d);
    if (journal_dec_finish(&d)) break;
    return jmodel_session_end(m, a, why, n);
  case JREC_REPLY:
    a = journal_dec_u64(&d);
    b = journal_dec_u64(&d);
    str = journal_dec_str(&d, &slen);
    if (!str || journal_dec_finish(&d)) break;
    return jmodel_reply(m, a, b, str, slen, why, n);
  case JREC_BUF_CREATE: {
    a = journal_dec_u64(&d);
    b = journal_dec_u64(&d);
    uint8_t order = journal_dec_u8(&d);
    u = journal_dec_u32(&d);
    if (journal_dec_finish(&d)) break;
    return jmodel_buf_create(m, a, b, order, u, why, n);
  }
  case JREC_BUF_DESTROY:
  case JREC_UNPUBLISH:
    a = journal_dec_u64(&d);
    if (journal_dec_finish(&d)) break;
    return type == JREC_BUF_DESTROY ? jmodel_buf_destroy(m, a, why, n)
                                    : jmodel_unpublish(m, a, why, n);
  case JREC_HOLD:
  case JREC_UNHOLD:
    a = journal_dec_u64(&d);
    b = journal_dec_u64(&d);
    c = journal_dec_u64(&d);
    if (journal_dec_finish(&d)) break;
    return type == JREC_HOLD ? jmodel_hold(m, a, b, c, why, n)
                             : jmodel_unhold(m, a, b, c, why, n);
  case JREC_PUBLISH:
    a = journal_dec_u64(&d);
    b = journal_dec_u64(&d);
    str = journal_dec_str(&d, &slen);
    if (!str || journal_dec_finish(&d)) break;
    return jmodel_publish(m, a, b, str, slen, why, n);
  case JREC_OWNER:
    a = journal_dec_u64(&d);
    u = journal_dec_u32(&d);
    if (journal_dec_finish(&d)) break;
    return jmodel_owner(m, a, u, why, n);
  case JREC_OBJ_TAKE:
  case JREC_OBJ_GIVE: return apply_objs(m, type, &d, why, n);
  case JREC_CACHE_CREATE:
    u = journal_dec_u32(&d);
    a = journal_dec_u64(&d);
    v = journal_dec_u32(&d);
    w = journal_dec_u32(&d);
    str = journal_dec_str(&d, &slen);
    if (!str || journal_dec_finish(&d)) break;
    return jmodel_cache_create(m, u, a, v, w, str, slen, why, n);
  case JREC_CACHE_DESTROY:
    u = journal_dec_u32(&d);
    if (journal_dec_finish(&d)) break;
    return jmodel_cache_destroy(m, u, why, n);
  case JREC_CACHE_OPEN:
  case JREC_CACHE_CLOSE:
    a = journal_dec_u64(&d);
    u = journal_dec_u32(&d);
    b = journal_dec_u64(&d);
    if (journal_dec_finish(&d)) break;
    rc = type == JREC_CACHE_OPEN ? jmodel_cache_open(m, a, u, b, why, n)
                                 : jmodel_cache_close(m, a, u, b, why, n);
    return rc;
  default: return bad(why, n, "unknown record type %u", type);
  }
  return bad(why, n, "malformed record of type %u (%zu bytes)", type, len);
}

/* ---- replay ----------------------------------------------------------------------------- */

typedef struct replay_ctx {
  jmodel_t *m;
  char why[256];
} replay_ctx_t;

static int on_record(uint32_t type, const void *payload, size_t len, void *ctx) {
  replay_ctx_t *r = ctx;
  return jmodel_apply(r->m, type, payload, len, r->why, sizeof r->why);
}

int jmodel_replay(journal_t *j, jmodel_t *m, journal_scan_t *ret_scan, char *why, size_t n) {
  static const journal_replay_ops_t ops = {NULL, on_record, NULL};
  replay_ctx_t r = {.m = m};
  char where[200] = "";
  int rc = journal_replay(j, &ops, &r, ret_scan, where, sizeof where);
  if (rc && why && n) snprintf(why, n, "%s: %s", where, r.why[0] ? r.why : pp_strerror(rc));
  return rc;
}

/* ---- checks ----------------------------------------------------------------------------- */

int jmodel_sorted_keys(const u64map_t *map, uint64_t **ret_keys, size_t *ret_n) {
  size_t it = 0, i = 0, len = u64map_len(map);
  uint64_t k, *v;
  *ret_keys = NULL;
  *ret_n = 0;
  if (!len) return 0;
  if (!(v = malloc(len * sizeof *v))) return PP_ENOPRIVMEM;
  while (u64map_next(map, &it, &k, NULL))
    v[i++] = k;
  /* insertion sort would do for small maps; keys are many only for big states */
  for (size_t gap = len / 2; gap > 0; gap /= 2)
    for (size_t a = gap; a < len; a++) {
      uint64_t x = v[a];
      size_t b = a;
      for (; b >= gap && v[b - gap] > x; b -= gap)
        v[b] = v[b - gap];
      v[b] = x;
    }
  *ret_keys = v;
  *ret_n = len;
  return 0;
}

int jmodel_check(const jmodel_t *m, char *why, size_t n) {
  uint64_t *offs = NULL, k, v;
  size_t nb = 0, it = 0;
  int rc = 0;

  if (!m->have_region) return bad(why, n, "no region id");
  while (u64map_next(&m->bufs, &it, &k, &v)) {
    const jm_buf_t *b = (const jm_buf_t *)(uintptr_t)v;
    bool payer = false;
    if (b->nholders == 0) return bad(why, n, "buffer %" PRIu64 " is held by nobody", k);
    if (k >= m->next_handle)
      return bad(why, n, "buffer %" PRIu64 " past the handle counter", k);
    for (uint32_t i = 0; i < b->nholders; i++) {
      const jm_session_t *s = session_of(m, b->holders[i]);
      if (!s || !count_of(&s->holds, k))
        return bad(why, n,
                   "buffer %" PRIu64 " lists session %" PRIu64 ", which does not hold it", k,
                   b->holders[i]);
      payer |= s->uid == b->owner_uid;
    }
    if (!payer)
      return bad(why, n, "buffer %" PRIu64 " is charged to uid %u, none of its holders", k,
                 b->owner_uid);
  }
  it = 0;
  while (u64map_next(&m->caches, &it, &k, &v)) {
    const jm_cache_t *c = (const jm_cache_t *)(uintptr_t)v;
    if (c->openers == 0) return bad(why, n, "cache %u is open by nobody", c->id);
    if (c->id >= m->next_cache) return bad(why, n, "cache %u past the id counter", c->id);
  }
  it = 0;
  while (u64map_next(&m->sessions, &it, &k, &v)) {
    const jm_session_t *s = (const jm_session_t *)(uintptr_t)v;
    size_t i2 = 0;
    uint64_t kk, vv;
    if (k >= m->next_session) return bad(why, n, "session %" PRIu64 " past the counter", k);
    while (u64map_next(&s->cache_objs, &i2, &kk, &vv))
      if (!count_of(&s->opens, kk))
        return bad(why, n,
                   "session %" PRIu64 " holds objects of cache %" PRIu64 " it has not open", k,
                   kk);
  }
  /* No two buffer blocks overlap (blocks of the buddy are aligned powers of two: sorted by
   * offset, each must end before the next begins). */
  if ((rc = jmodel_sorted_keys(&m->buf_at, &offs, &nb))) return nomem(why, n);
  for (size_t i = 0; i + 1 < nb && !rc; i++) {
    uint64_t h;
    u64map_get(&m->buf_at, offs[i], &h);
    const jm_buf_t *b = buf_of(m, h);
    if (offs[i] + (4096ull << b->order) > offs[i + 1])
      rc = bad(why, n, "buffer %" PRIu64 " overlaps the buffer at offset %" PRIu64, h,
               offs[i + 1]);
  }
  free(offs);
  return rc;
}

static int map_equal(const u64map_t *a, const u64map_t *b) {
  size_t it = 0;
  uint64_t k, v, w;
  if (u64map_len(a) != u64map_len(b)) return 0;
  while (u64map_next(a, &it, &k, &v))
    if (!u64map_get(b, k, &w) || w != v) return 0;
  return 1;
}

int jmodel_equal(const jmodel_t *a, const jmodel_t *b, char *why, size_t n) {
  size_t it = 0;
  uint64_t k, v, w;

  if (a->have_region != b->have_region ||
      memcmp(a->region_id, b->region_id, JM_REGION_ID_LEN) != 0)
    return bad(why, n, "region ids differ");
  if (a->next_handle != b->next_handle)
    return bad(why, n, "next handle %" PRIu64 " vs %" PRIu64, a->next_handle, b->next_handle);
  if (a->next_session != b->next_session)
    return bad(why, n, "next session %" PRIu64 " vs %" PRIu64, a->next_session,
               b->next_session);
  if (a->next_cache != b->next_cache)
    return bad(why, n, "next cache id %u vs %u", a->next_cache, b->next_cache);
  if (u64map_len(&a->sessions) != u64map_len(&b->sessions))
    return bad(why, n, "%zu sessions vs %zu", u64map_len(&a->sessions),
               u64map_len(&b->sessions));
  while (u64map_next(&a->sessions, &it, &k, &v)) {
    const jm_session_t *x = (const jm_session_t *)(uintptr_t)v, *y = session_of(b, k);
    if (!y) return bad(why, n, "session %" PRIu64 " only on one side", k);
    if (memcmp(x->token, y->token, JM_TOKEN_LEN) || x->uid != y->uid || x->gid != y->gid ||
        x->pid != y->pid || x->connected_ms != y->connected_ms || strcmp(x->name, y->name))
      return bad(why, n, "session %" PRIu64 ": identity differs", k);
    if (x->reply_id != y->reply_id || x->reply_len != y->reply_len ||
        (x->reply_len && memcmp(x->reply, y->reply, x->reply_len)))
      return bad(why, n, "session %" PRIu64 ": last reply %" PRIu64 " vs %" PRIu64, k,
                 x->reply_id, y->reply_id);
    if (!map_equal(&x->holds, &y->holds))
      return bad(why, n, "session %" PRIu64 ": buffer references differ", k);
    if (!map_equal(&x->opens, &y->opens))
      return bad(why, n, "session %" PRIu64 ": cache opens differ", k);
    if (!map_equal(&x->objs, &y->objs))
      return bad(why, n, "session %" PRIu64 ": objects differ (%zu vs %zu)", k,
                 u64map_len(&x->objs), u64map_len(&y->objs));
  }
  if (u64map_len(&a->bufs) != u64map_len(&b->bufs))
    return bad(why, n, "%zu buffers vs %zu", u64map_len(&a->bufs), u64map_len(&b->bufs));
  it = 0;
  while (u64map_next(&a->bufs, &it, &k, &v)) {
    const jm_buf_t *x = (const jm_buf_t *)(uintptr_t)v, *y = buf_of(b, k);
    if (!y) return bad(why, n, "buffer %" PRIu64 " only on one side", k);
    if (x->offset != y->offset || x->order != y->order || x->owner_uid != y->owner_uid)
      return bad(why, n, "buffer %" PRIu64 ": block or charged uid differs", k);
    if (x->published != y->published ||
        (x->published && (x->scope != y->scope || strcmp(x->name, y->name))))
      return bad(why, n, "buffer %" PRIu64 ": name differs", k);
    if (x->nholders != y->nholders ||
        memcmp(x->holders, y->holders, x->nholders * sizeof *x->holders))
      return bad(why, n, "buffer %" PRIu64 ": holders differ", k);
  }
  if (u64map_len(&a->caches) != u64map_len(&b->caches))
    return bad(why, n, "%zu caches vs %zu", u64map_len(&a->caches), u64map_len(&b->caches));
  it = 0;
  while (u64map_next(&a->caches, &it, &k, &v)) {
    const jm_cache_t *x = (const jm_cache_t *)(uintptr_t)v, *y = cache_of(b, (uint32_t)k);
    if (!y || x->scope != y->scope || x->object_size != y->object_size ||
        x->align != y->align || strcmp(x->name, y->name) || x->openers != y->openers ||
        x->objects != y->objects)
      return bad(why, n, "cache %" PRIu64 " differs", k);
  }
  it = 0;
  while (u64map_next(&a->obj_owner, &it, &k, &v))
    if (!u64map_get(&b->obj_owner, k, &w) || w != v)
      return bad(why, n, "object %" PRIu64 " has another holder", k);
  return 0;
}

/* ---- emitting a snapshot ---------------------------------------------------------------- */

typedef struct emitter {
  journal_t *j;
  int rc;
  bool open;
} emitter_t;

/* Before a record: open a transaction when none is (em_done commits one that grew big). */
static void em_next(emitter_t *e) {
  if (e->rc) return;
  if (!e->open) {
    e->rc = journal_txn_begin(e->j);
    e->open = e->rc == 0;
  }
}

static void em_done(emitter_t *e, int rc, size_t *bytes, size_t add) {
  if (!e->rc) e->rc = rc;
  *bytes += add;
  if (!e->rc && *bytes >= EMIT_TXN_BYTES) {
    e->rc = journal_txn_commit(e->j, NULL);
    e->open = false;
    *bytes = 0;
  }
}

typedef struct jm_obj {
  uint32_t cache;
  uint64_t offset;
} jm_obj_t;

static int cmp_obj(const void *x, const void *y) {
  const jm_obj_t *a = x, *b = y;
  if (a->cache != b->cache) return a->cache < b->cache ? -1 : 1;
  return a->offset < b->offset ? -1 : a->offset > b->offset;
}

int jmodel_emit(const jmodel_t *m, journal_t *j) {
  emitter_t e = {.j = j};
  uint64_t *keys = NULL, *k2 = NULL;
  size_t nk = 0, n2 = 0, bytes = 0;

  em_next(&e);
  if (!e.rc) e.rc = jrec_region(j, m->region_id);
  if (!e.rc) e.rc = jmodel_sorted_keys(&m->sessions, &keys, &nk);
  for (size_t i = 0; i < nk && !e.rc; i++) {
    const jm_session_t *s = session_of(m, keys[i]);
    em_next(&e);
    if (e.rc) break;
    em_done(
        &e,
        jrec_session_new(j, s->id, s->token, s->uid, s->gid, s->pid, s->connected_ms, s->name),
        &bytes, 64);
    if (s->reply_len) {
      em_next(&e);
      if (!e.rc)
        em_done(&e, jrec_reply(j, s->id, s->reply_id, s->reply, s->reply_len), &bytes,
                s->reply_len + 32);
    }
  }
  free(keys);
  keys = NULL;
  if (!e.rc) e.rc = jmodel_sorted_keys(&m->caches, &keys, &nk);
  for (size_t i = 0; i < nk && !e.rc; i++) {
    const jm_cache_t *c = cache_of(m, (uint32_t)keys[i]);
    em_next(&e);
    if (!e.rc)
      em_done(&e, jrec_cache_create(j, c->id, c->scope, c->object_size, c->align, c->name),
              &bytes, 128);
  }
  free(keys);
  keys = NULL;
  if (!e.rc) e.rc = jmodel_sorted_keys(&m->bufs, &keys, &nk);
  for (size_t i = 0; i < nk && !e.rc; i++) {
    const jm_buf_t *b = buf_of(m, keys[i]);
    em_next(&e);
    if (e.rc) break;
    em_done(&e, jrec_buf_create(j, b->handle, b->offset, b->order, b->owner_uid), &bytes, 48);
    if (b->published) {
      em_next(&e);
      if (!e.rc) em_done(&e, jrec_publish(j, b->handle, b->scope, b->name), &bytes, 300);
    }
    for (uint32_t h = 0; h < b->nholders && !e.rc; h++) {
      const jm_session_t *s = session_of(m, b->holders[h]);
      em_next(&e);
      if (!e.rc)
        em_done(&e, jrec_hold(j, JREC_HOLD, s->id, b->handle, count_of(&s->holds, b->handle)),
                &bytes, 40);
    }
  }
  free(keys);
  keys = NULL;
  /* Opens, then objects, per session (caches in id order, objects batched per cache). */
  if (!e.rc) e.rc = jmodel_sorted_keys(&m->sessions, &keys, &nk);
  for (size_t i = 0; i < nk && !e.rc; i++) {
    const jm_session_t *s = session_of(m, keys[i]);
    e.rc = jmodel_sorted_keys(&s->opens, &k2, &n2);
    for (size_t c = 0; c < n2 && !e.rc; c++) {
      em_next(&e);
      if (!e.rc)
        em_done(&e,
                jrec_cache_opens(j, JREC_CACHE_OPEN, s->id, (uint32_t)k2[c],
                                 count_of(&s->opens, k2[c])),
                &bytes, 32);
    }
    free(k2);
    k2 = NULL;
    if (e.rc || !u64map_len(&s->objs)) continue;
    /* The objects sorted by (cache, offset), then in batches of one cache each. */
    size_t no = u64map_len(&s->objs), oi = 0, it = 0;
    jm_obj_t *objs = malloc(no * sizeof *objs);
    uint64_t *batch = malloc(4096 * sizeof *batch), off, cid;
    if (!objs || !batch) e.rc = PP_ENOPRIVMEM;
    while (!e.rc && u64map_next(&s->objs, &it, &off, &cid))
      objs[oi++] = (jm_obj_t){.cache = (uint32_t)cid, .offset = off};
    if (!e.rc) qsort(objs, no, sizeof *objs, cmp_obj);
    for (size_t f = 0; !e.rc && f < no;) {
      uint32_t nb = 0, cache = objs[f].cache;
      while (f < no && objs[f].cache == cache && nb < 4096)
        batch[nb++] = objs[f++].offset;
      em_next(&e);
      if (!e.rc)
        em_done(&e, jrec_objs(j, JREC_OBJ_TAKE, s->id, cache, batch, nb), &bytes,
                (size_t)nb * 8 + 24);
    }
    free(batch);
    free(objs);
  }
  free(keys);
  /* The counters last: ids below them are refused as new ones while replaying. */
  em_next(&e);
  if (!e.rc) e.rc = jrec_counters(j, m->next_session, m->next_handle, m->next_cache);
  if (!e.rc && e.open) {
    e.rc = journal_txn_commit(j, NULL);
    e.open = false;
  }
  if (e.open) journal_txn_abort(j);
  return e.rc;
}

/* ---- encoders --------------------------------------------------------------------------- */

int jrec_region(journal_t *j, const uint8_t id[JM_REGION_ID_LEN]) {
  return journal_txn_add(j, JREC_REGION, id, JM_REGION_ID_LEN);
}

int jrec_counters(journal_t *j, uint64_t next_session, uint64_t next_handle,
                  uint32_t next_cache) {
  uint8_t buf[20];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, next_session);
  journal_enc_u64(&e, next_handle);
  journal_enc_u32(&e, next_cache);
  return journal_txn_add_enc(j, JREC_COUNTERS, &e);
}

int jrec_session_new(journal_t *j, uint64_t id, const uint8_t token[JM_TOKEN_LEN], uint32_t uid,
                     uint32_t gid, uint32_t pid, uint64_t connected_ms, const char *name) {
  uint8_t buf[8 + JM_TOKEN_LEN + 12 + 8 + 4 + JM_SESSION_NAME_MAX];
  size_t nl = strnlen(name, JM_SESSION_NAME_MAX);
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, id);
  journal_enc_bytes(&e, token, JM_TOKEN_LEN);
  journal_enc_u32(&e, uid);
  journal_enc_u32(&e, gid);
  journal_enc_u32(&e, pid);
  journal_enc_u64(&e, connected_ms);
  journal_enc_str(&e, name, nl);
  return journal_txn_add_enc(j, JREC_SESSION_NEW, &e);
}

int jrec_session_end(journal_t *j, uint64_t id) {
  uint8_t buf[8];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, id);
  return journal_txn_add_enc(j, JREC_SESSION_END, &e);
}

int jrec_reply(journal_t *j, uint64_t sid, uint64_t request_id, const void *reply, size_t len) {
  /* A reply can be large (a cache_alloc of 1024 offsets): header on the stack, then the
   * bytes, in one record. */
  uint8_t stackbuf[512];
  size_t need = 20 + len;
  uint8_t *buf = need <= sizeof stackbuf ? stackbuf : malloc(need);
  journal_enc_t e;
  int rc;
  if (!buf) return PP_ENOPRIVMEM;
  journal_enc_init(&e, buf, need);
  journal_enc_u64(&e, sid);
  journal_enc_u64(&e, request_id);
  journal_enc_str(&e, reply, len);
  rc = journal_txn_add_enc(j, JREC_REPLY, &e);
  if (buf != stackbuf) free(buf);
  return rc;
}

int jrec_buf_create(journal_t *j, uint64_t handle, uint64_t offset, unsigned order,
                    uint32_t uid) {
  uint8_t buf[21];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, handle);
  journal_enc_u64(&e, offset);
  journal_enc_u8(&e, (uint8_t)order);
  journal_enc_u32(&e, uid);
  return journal_txn_add_enc(j, JREC_BUF_CREATE, &e);
}

int jrec_handle(journal_t *j, uint32_t type, uint64_t handle) {
  uint8_t buf[8];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, handle);
  return journal_txn_add_enc(j, type, &e);
}

int jrec_hold(journal_t *j, uint32_t type, uint64_t sid, uint64_t handle, uint64_t refs) {
  uint8_t buf[24];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, sid);
  journal_enc_u64(&e, handle);
  journal_enc_u64(&e, refs);
  return journal_txn_add_enc(j, type, &e);
}

int jrec_publish(journal_t *j, uint64_t handle, uint64_t scope, const char *name) {
  uint8_t buf[8 + 8 + 4 + JM_BUF_NAME_MAX];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, handle);
  journal_enc_u64(&e, scope);
  journal_enc_str(&e, name, strlen(name));
  return journal_txn_add_enc(j, JREC_PUBLISH, &e);
}

int jrec_owner(journal_t *j, uint64_t handle, uint32_t uid) {
  uint8_t buf[12];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, handle);
  journal_enc_u32(&e, uid);
  return journal_txn_add_enc(j, JREC_OWNER, &e);
}

int jrec_objs(journal_t *j, uint32_t type, uint64_t sid, uint32_t cache, const uint64_t *offs,
              uint32_t n) {
  uint8_t stackbuf[16 + 64 * 8];
  size_t need = 16 + (size_t)n * 8;
  uint8_t *buf = need <= sizeof stackbuf ? stackbuf : malloc(need);
  journal_enc_t e;
  int rc;
  if (!buf) return PP_ENOPRIVMEM;
  journal_enc_init(&e, buf, need);
  journal_enc_u64(&e, sid);
  journal_enc_u32(&e, cache);
  journal_enc_u32(&e, n);
  for (uint32_t i = 0; i < n; i++)
    journal_enc_u64(&e, offs[i]);
  rc = journal_txn_add_enc(j, type, &e);
  if (buf != stackbuf) free(buf);
  return rc;
}

int jrec_cache_create(journal_t *j, uint32_t id, uint64_t scope, uint32_t object_size,
                      uint32_t align, const char *name) {
  uint8_t buf[4 + 8 + 4 + 4 + 4 + JM_CACHE_NAME_MAX];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u32(&e, id);
  journal_enc_u64(&e, scope);
  journal_enc_u32(&e, object_size);
  journal_enc_u32(&e, align);
  journal_enc_str(&e, name, strnlen(name, JM_CACHE_NAME_MAX + 1));
  return journal_txn_add_enc(j, JREC_CACHE_CREATE, &e);
}

int jrec_cache_destroy(journal_t *j, uint32_t id) {
  uint8_t buf[4];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u32(&e, id);
  return journal_txn_add_enc(j, JREC_CACHE_DESTROY, &e);
}

int jrec_cache_opens(journal_t *j, uint32_t type, uint64_t sid, uint32_t cache,
                     uint64_t opens) {
  uint8_t buf[20];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u64(&e, sid);
  journal_enc_u32(&e, cache);
  journal_enc_u64(&e, opens);
  return journal_txn_add_enc(j, type, &e);
}
