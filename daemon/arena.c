/*
 * arena.c — per-response scratch memory.
 *
 * Why: a Stats response is a tree of protobuf-c structs (SlabInfo, ClientInfo, MapBlock
 * arrays...).  Building it with malloc/free per node would need a mirror-image destructor
 * for every shape; an arena lets a handler allocate freely and the server drop the whole
 * tree with one arena_reset() after frame_pack() has serialised it.
 *
 * Algorithm: a list of chunks, newest first; allocations bump a pointer in the newest
 * chunk; a request larger than the chunk size gets a chunk of its own.  A budget bounds
 * what one response can take (a stats map of a large region is the biggest), so a
 * request can never make the daemon allocate without bound.
 *
 * Reuse.  The server keeps one arena for all responses and calls arena_rewind() after
 * each: it keeps one standard chunk and frees the rest.  Without it every response that
 * allocates at all (an alloc's Buffer, an error message) cost a 16 KiB malloc and free;
 * glibc serves a chunk that size from the top of the heap and, on freeing it, merges it
 * back and runs malloc_consolidate(), which showed in the daemon's profile.  A kept chunk
 * counts against the budget like any other, so the bound is unchanged.
 *
 * Locks: none; the server owns one arena, rewound after every reply, and only the loop
 * thread uses it.
 */
#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (16u * 1024u)

struct arena_chunk {
  arena_chunk_t *next;
  size_t cap; /* payload bytes: ARENA_CHUNK, or more for a one-off block */
  alignas(max_align_t) unsigned char data[];
};

void arena_init(arena_t *a, size_t budget) {
  a->head = NULL;
  a->used = 0;
  a->cap = 0;
  a->total = 0;
  a->budget = budget;
}

void *arena_alloc(arena_t *a, size_t size) {
  const size_t al = alignof(max_align_t);
  size_t need = (size + al - 1) & ~(al - 1);
  void *p;

  if (need == 0) need = al;
  if (!a->head || a->used + need > a->cap) {
    size_t cap = need > ARENA_CHUNK ? need : ARENA_CHUNK;
    arena_chunk_t *c;
    if (a->budget && a->total + cap > a->budget) return NULL;
    c = malloc(sizeof *c + cap);
    if (!c) return NULL;
    a->total += cap;
    c->cap = cap;
    if (a->head && need > ARENA_CHUNK) {
      /* A big one-off block goes behind the head so the head's free tail stays usable. */
      c->next = a->head->next;
      a->head->next = c;
      memset(c->data, 0, need);
      return c->data;
    }
    c->next = a->head;
    a->head = c;
    a->used = 0;
    a->cap = cap;
  }
  p = a->head->data + a->used;
  a->used += need;
  memset(p, 0, need);
  return p;
}

char *arena_strdup(arena_t *a, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = arena_alloc(a, n);
  if (d) memcpy(d, s, n);
  return d;
}

void arena_reset(arena_t *a) {
  arena_chunk_t *c = a->head;
  while (c) {
    arena_chunk_t *n = c->next;
    free(c);
    c = n;
  }
  arena_init(a, a->budget);
}

void arena_rewind(arena_t *a) {
  arena_chunk_t *keep = NULL, *c = a->head;
  while (c) {
    arena_chunk_t *n = c->next;
    if (!keep && c->cap == ARENA_CHUNK)
      keep = c;
    else
      free(c);
    c = n;
  }
  arena_init(a, a->budget);
  if (keep) {
    keep->next = NULL;
    a->head = keep;
    a->cap = keep->cap;
    a->total = keep->cap;
  }
}
