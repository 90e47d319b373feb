/* pool.h — the daemon's allocator front: the region, buddy, slab caches and daemon-side
 * magazines, and the request handlers that serve sessions from them.  See pool.c. */
#ifndef PP_DAEMON_POOL_H
#define PP_DAEMON_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "pinpool.pb-c.h"
#include "region.h"
#include "session.h"

#define POOL_NAME_MAX 255u         /* bytes of a published buffer's name */

typedef struct pool_config {
  uint64_t size; /* region bytes */
  region_page_policy_t policy;
  uint64_t quota;       /* pinned bytes per uid (buffers + objects); 0 = unlimited */
  uint32_t max_buffers; /* buffer references per session; 0 = unlimited */
  uint32_t max_clients; /* only reported (Stats.max_clients); the server enforces it */
  bool zero_on_free;    /* zero blocks and objects when they go back */
} pool_config_t;

typedef struct pool pool_t;

/* Creates the region (errors as region_create), the buddy over it, the slab layer. */
int pool_create(const pool_config_t *cfg, pool_t **ret);
/* Every session must have been released first. */
void pool_destroy(pool_t *p);
const region_t *pool_region(const pool_t *p);
uint64_t pool_free_bytes(pool_t *p);
uint32_t pool_nr_sessions(const pool_t *p);

/* A session joins the pool's list (Stats.clients) once its Hello is accepted. */
void pool_session_add(pool_t *p, session_t *s);
/* Give back everything s holds — buffer references (a buffer goes back to the buddy with
 * its last holder, and its name with it), slab objects (straight to the slabs, then the
 * caches it used are drained and shrunk so the memory returns to the buddy) — and take s
 * off the list.  Safe for a session that never joined. */
void pool_session_release(pool_t *p, session_t *s);

/* Serve one request other than Hello for s: fills resp->status, resp->message and the
 * body, with memory from a (valid until the arena is reset).  The caller sets resp->id. */
void pool_handle(pool_t *p, session_t *s, const Pinpool__V1__Request *req,
                 Pinpool__V1__Response *resp, arena_t *a);

/* Validator over the daemon's bookkeeping and the allocators under it: 0, or PP_ECORRUPT
 * with the first violation in why. */
int pool_check(pool_t *p, char *why, size_t why_len);

#endif
