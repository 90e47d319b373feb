/* arena.h — a bump allocator for one response's protobuf-c structures, freed at once after
 * the response is packed.  See arena.c. */
#ifndef PP_DAEMON_ARENA_H
#define PP_DAEMON_ARENA_H

#include <stddef.h>

typedef struct arena_chunk arena_chunk_t;
typedef struct arena {
  arena_chunk_t *head; /* newest chunk first */
  size_t used;         /* bytes used in head */
  size_t cap;          /* bytes of head's payload */
  size_t total;        /* bytes obtained from malloc, for the budget */
  size_t budget;       /* 0 = unlimited */
} arena_t;

void arena_init(arena_t *a, size_t budget);
/* Zeroed, aligned for any scalar; NULL when malloc fails or the budget would be exceeded. */
void *arena_alloc(arena_t *a, size_t size);
char *arena_strdup(arena_t *a, const char *s);
/* Frees everything; the arena can be used again. */
void arena_reset(arena_t *a);
/* Forgets every allocation but keeps one standard chunk for the next user (a server-wide
 * arena reused response after response); arena_reset() frees that one too. */
void arena_rewind(arena_t *a);

#endif
