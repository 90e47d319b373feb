/* u64map.h — a hash map from uint64 keys to uint64 values (handles, offsets, uids), private
 * memory only.  UINT64_MAX is not a valid key.  See u64map.c. */
#ifndef PP_DAEMON_U64MAP_H
#define PP_DAEMON_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct u64map {
  uint64_t *keys; /* U64MAP_EMPTY marks a free slot */
  uint64_t *vals;
  size_t cap; /* 0 or a power of two */
  size_t len;
} u64map_t;

#define U64MAP_EMPTY UINT64_MAX

void u64map_init(u64map_t *m);
void u64map_fini(u64map_t *m);
/* Insert or overwrite.  PP_ENOPRIVMEM (private memory exhausted) leaves the map unchanged. */
int u64map_put(u64map_t *m, uint64_t key, uint64_t val);
/* True and *ret_val set when present (ret_val may be NULL). */
bool u64map_get(const u64map_t *m, uint64_t key, uint64_t *ret_val);
/* True when the key was present (and is now gone). */
bool u64map_del(u64map_t *m, uint64_t key);
static inline size_t u64map_len(const u64map_t *m) {
  return m->len;
}

/* Iteration: for (size_t i = 0; u64map_next(m, &i, &k, &v);) — no changes meanwhile. */
bool u64map_next(const u64map_t *m, size_t *iter, uint64_t *ret_key, uint64_t *ret_val);

#endif
