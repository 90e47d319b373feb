/* pool_int.h — pool internals shared by pool.c (handlers) and stats.c (the operator's
 * snapshot).  Nothing outside those two includes it. */
#ifndef PP_DAEMON_POOL_INT_H
#define PP_DAEMON_POOL_INT_H

#include "buddy.h"
#include "magazine.h"
#include "pool.h"
#include "slab.h"
#include "u64map.h"

typedef struct pbuf {
  uint64_t handle; /* 64-bit, from 1, never reused within a daemon's lifetime */
  uint64_t offset;
  uint64_t size; /* the buddy block's size: what the client gets */
  unsigned order;
  uid_t owner_uid; /* charged for the block until it goes back */
  bool contiguous;
  uint64_t phys; /* of offset; 0 when unknown */
  char *name;    /* malloc'd; NULL when unpublished */
  uint64_t name_hash;
  struct pbuf *name_next; /* chain of buffers whose names share name_hash */
  session_t **holders;    /* distinct sessions holding a reference */
  uint32_t nholders, holders_cap;
} pbuf_t;

typedef struct pcache {
  slab_cache_t *cache;
  mag_depot_t *depot;
  mag_cpu_t *mag; /* the loop thread's magazine in front of the depot */
  uint32_t id;
  uint32_t object_size, align, objs_per_slab;
  uint64_t slab_bytes; /* pages_per_slab * 4 KiB: slabs are naturally aligned blocks */
  uint64_t held;       /* objects held by sessions */
  char name[SLAB_NAME_MAX];
} pcache_t;

struct pool {
  pool_config_t cfg;
  region_t *region;
  buddy_t *buddy;
  slab_t *slab;
  region_run_t *runs; /* physically contiguous runs, in offset order */
  size_t nruns;

  u64map_t by_handle;    /* handle -> pbuf_t* */
  u64map_t by_offset;    /* block offset -> pbuf_t* */
  u64map_t by_name;      /* fnv1a(name) -> pbuf_t* (head of a name_next chain) */
  u64map_t uid_bytes;    /* uid -> pinned bytes charged (quota) */
  u64map_t obj_owner;    /* object offset -> holding session id */
  u64map_t caches;       /* cache id -> pcache_t* */
  pcache_t **cache_list; /* in creation order */
  size_t ncaches, caches_cap;

  session_t *sessions; /* sessions that said Hello, newest first */
  uint32_t nsessions;
  uint64_t next_handle;
  uint64_t buf_bytes; /* bytes of live buffers */
  uint64_t nbufs;
  uint64_t obj_bytes;  /* object_size bytes of objects held by sessions */
  uint64_t started_ms; /* CLOCK_MONOTONIC, for uptime */
};

pcache_t *pool_cache_by_id(pool_t *p, uint32_t id);
uint64_t pool_now_ms(void);

/* stats.c */
int stats_build(pool_t *p, const Pinpool__V1__StatsRequest *rq, Pinpool__V1__Stats **ret,
                arena_t *a);

#endif
