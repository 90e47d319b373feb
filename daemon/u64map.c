/*
 * u64map.c — open-addressing hash map, uint64 -> uint64.
 *
 * Why its own module: the daemon keeps several indexes (handle -> buffer, offset -> buffer,
 * a session's objects offset -> cache, uid -> pinned bytes) that must answer in O(1) and
 * live in private memory (style rule 5: metadata never in the shared region).
 *
 * Algorithm: linear probing over power-of-two tables, load factor at most 1/2, keys mixed
 * with the splitmix64 finaliser so that aligned offsets (all multiples of 4 KiB) spread.
 * Deletion uses backward-shift (Knuth 6.4, Algorithm R) instead of tombstones, so a table
 * that churns forever never degrades and never needs a rebuild.
 *
 * Invariants: len < cap/2 when cap > 0; every key sits in the probe run starting at its
 * home slot with no empty slot between home and key.
 */
#include "u64map.h"

#include <stdlib.h>

#include "pinpool_err.h"

static inline uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

void u64map_init(u64map_t *m) {
  m->keys = NULL;
  m->vals = NULL;
  m->cap = 0;
  m->len = 0;
}

void u64map_fini(u64map_t *m) {
  free(m->keys);
  free(m->vals);
  u64map_init(m);
}

static size_t find_slot(const u64map_t *m, uint64_t key) {
  size_t mask = m->cap - 1, i = (size_t)mix(key) & mask;
  while (m->keys[i] != U64MAP_EMPTY && m->keys[i] != key)
    i = (i + 1) & mask;
  return i;
}

static int grow(u64map_t *m) {
  size_t ncap = m->cap ? m->cap * 2 : 16;
  uint64_t *nk = malloc(ncap * sizeof *nk), *nv = malloc(ncap * sizeof *nv);
  u64map_t n;

  if (!nk || !nv) {
    free(nk);
    free(nv);
    return PP_ENOPRIVMEM;
  }
  for (size_t i = 0; i < ncap; i++)
    nk[i] = U64MAP_EMPTY;
  n.keys = nk;
  n.vals = nv;
  n.cap = ncap;
  n.len = m->len;
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == U64MAP_EMPTY) continue;
    size_t j = find_slot(&n, m->keys[i]);
    nk[j] = m->keys[i];
    nv[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  *m = n;
  return 0;
}

int u64map_put(u64map_t *m, uint64_t key, uint64_t val) {
  size_t i;
  if (key == U64MAP_EMPTY) return PP_EINVAL;
  if ((m->len + 1) * 2 > m->cap) {
    int rc = grow(m);
    if (rc) return rc;
  }
  i = find_slot(m, key);
  if (m->keys[i] == U64MAP_EMPTY) {
    m->keys[i] = key;
    m->len++;
  }
  m->vals[i] = val;
  return 0;
}

bool u64map_get(const u64map_t *m, uint64_t key, uint64_t *ret_val) {
  size_t i;
  if (!m->cap || key == U64MAP_EMPTY) return false;
  i = find_slot(m, key);
  if (m->keys[i] == U64MAP_EMPTY) return false;
  if (ret_val) *ret_val = m->vals[i];
  return true;
}

bool u64map_del(u64map_t *m, uint64_t key) {
  size_t mask, i, j;
  if (!m->cap || key == U64MAP_EMPTY) return false;
  mask = m->cap - 1;
  i = find_slot(m, key);
  if (m->keys[i] == U64MAP_EMPTY) return false;
  /* Backward shift: pull later members of the run into the hole when their home slot
   * does not lie cyclically in (hole, their slot]. */
  j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (m->keys[j] == U64MAP_EMPTY) break;
    size_t home = (size_t)mix(m->keys[j]) & mask;
    bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    m->keys[i] = m->keys[j];
    m->vals[i] = m->vals[j];
    i = j;
  }
  m->keys[i] = U64MAP_EMPTY;
  m->len--;
  return true;
}

bool u64map_next(const u64map_t *m, size_t *iter, uint64_t *ret_key, uint64_t *ret_val) {
  for (size_t i = *iter; i < m->cap; i++) {
    if (m->keys[i] == U64MAP_EMPTY) continue;
    if (ret_key) *ret_key = m->keys[i];
    if (ret_val) *ret_val = m->vals[i];
    *iter = i + 1;
    return true;
  }
  *iter = m->cap;
  return false;
}
