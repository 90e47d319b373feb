/*
 * cmag.c — per-thread magazines for pp_cache_alloc / pp_cache_free.
 *
 * What: a round trip to pinpoold costs microseconds; a slab object should cost
 * nanoseconds.  So each thread keeps, per cache, two magazines of object pointers — a
 * "loaded" one it allocates from and frees to, and a "previous" one — exactly the
 * per-CPU layer of Bonwick & Adams (2001), with the daemon in the role of the depot:
 *
 *   alloc: loaded non-empty        -> pop                        (no lock, no syscall)
 *          else previous non-empty -> swap them, pop
 *          else                    -> cache_alloc of one magazine-full into loaded, pop
 *   free:  loaded not full         -> push                       (no lock, no syscall)
 *          else previous empty     -> swap them, push
 *          else                    -> cache_free of previous's objects (one request),
 *                                     swap, push
 *
 * Keeping the previous magazine gives the hysteresis Bonwick & Adams prove: a thread
 * alternating alloc and free at a magazine boundary goes to the daemon at most once
 * per `rounds` operations, never on every call.
 *
 * Finding a thread's magazines: each pp_cache has a process-unique serial that is
 * never reused; a thread keeps a list of its magazine pairs (one per cache it used),
 * and a "hot" pointer to the last one used, checked by serial.  A serial rather than
 * the pp_cache address, because after pp_disconnect a new cache may be allocated at the
 * same address while this thread still holds the old, orphaned pair.
 *
 * Lifetimes:
 *   - A pair belongs to its thread: only that thread reads or frees its magazines.
 *   - Thread exit: a pthread key destructor returns every pair's objects to the daemon
 *     (cache_free) and frees the pairs.  It unlinks them under cmag_lock but returns the
 *     objects without it: a return may wait for the client's lock while another thread
 *     re-claims the session after a daemon restart (reclaim.c: up to the grace period),
 *     and cmag_lock is the whole process's.  Meanwhile the client's cmag_returning
 *     counts the thread, and pp_disconnect waits for the count to drop to 0 before it
 *     closes the connection under the returns.
 *   - pp_disconnect: cannot touch other threads' magazines (they may be mid-pop), so it
 *     marks their pairs orphaned (k = NULL) under cmag_lock; the daemon reclaims the
 *     objects when the socket closes.  An orphaned pair is freed by its thread the next
 *     time that thread registers a pair, or at its exit; the disconnecting thread frees
 *     its own at once.
 *   - Double frees: pp_cache_free checks bounds and object boundaries but cannot see a
 *     double free without a per-object lookup on the fast path.  The duplicate sits in
 *     the magazine (and may be handed out twice — the caller's bug, as with free()) and
 *     is caught when its magazine goes back: the daemon rejects the whole cache_free,
 *     client_cache_return retries object by object, the good ones go home, the
 *     duplicate is dropped, and the pp_cache_free that triggered the return reports the
 *     daemon's error.  Allocator state in the daemon is never harmed.
 *
 * Locks: cmag_lock (one per process) guards pair.k, pair.next_in_cache, every
 * pp_cache.threads list and every pp_client.cmag_returning; it is taken when a thread
 * first uses a cache, at thread exit and by pp_disconnect — never on the fast paths.
 * cmag_cond (with cmag_lock) wakes pp_disconnect when a client's cmag_returning drops to
 * 0.  Order: cmag_lock, then a client's lock (pp_disconnect orphans the pairs of each
 * cache under both).
 *
 * References: Bonwick & Adams, "Magazines and Vmem: Extending the Slab Allocator to Many
 * CPUs and Arbitrary Resources", USENIX 2001, sections 3.1-3.3.
 */
#define _GNU_SOURCE
#include "client.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define MAG_LIKELY(x) __builtin_expect(!!(x), 1)
/* initial-exec: a plain %fs-relative load instead of a __tls_get_addr call per access;
 * two pointers fit easily in the static TLS surplus glibc keeps for dlopen'd libraries. */
#define MAG_TLS __thread __attribute__((tls_model("initial-exec")))

typedef struct cmag_thread_cache {
  uint64_t serial;                           /* of its cache; immutable */
  pp_cache *k;                               /* (cmag_lock) NULL once orphaned */
  struct cmag_thread_cache *next_in_thread;  /* owner thread only */
  struct cmag_thread_cache *next_in_cache;   /* (cmag_lock) k->threads list */
  struct cmag_thread_cache **pprev_in_cache; /* (cmag_lock) */
  unsigned rounds;                           /* capacity of each magazine */
  unsigned loaded_n;                         /* objects in loaded */
  unsigned prev_n;                           /* objects in prev: 0 or (nearly) full */
  void **loaded;
  void **prev;
  void *slots[]; /* 2 * rounds: the two magazines */
} cmag_tc_t;

typedef struct cmag_thread {
  cmag_tc_t *head; /* this thread's pairs, owner only */
} cmag_thread_t;

static pthread_mutex_t cmag_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cmag_cond = PTHREAD_COND_INITIALIZER;
static pthread_once_t cmag_once = PTHREAD_ONCE_INIT;
static pthread_key_t cmag_key;
static int cmag_key_rc = -1;

static MAG_TLS cmag_tc_t *t_hot;      /* last pair used by this thread */
static MAG_TLS cmag_thread_t *t_self; /* this thread's registration */

static void cmag_thread_exit(void *arg);

static void cmag_key_create(void) {
  cmag_key_rc = pthread_key_create(&cmag_key, cmag_thread_exit);
}

static inline void cmag_swap(cmag_tc_t *tc) {
  void **m = tc->loaded;
  unsigned n = tc->loaded_n;
  tc->loaded = tc->prev;
  tc->loaded_n = tc->prev_n;
  tc->prev = m;
  tc->prev_n = n;
}

/* Free the calling thread's orphaned pairs.  Caller holds cmag_lock. */
static void cmag_sweep_locked(cmag_thread_t *self) {
  for (cmag_tc_t **pp = &self->head; *pp;) {
    cmag_tc_t *tc = *pp;
    if (tc->k) {
      pp = &tc->next_in_thread;
      continue;
    }
    *pp = tc->next_in_thread;
    if (t_hot == tc) t_hot = NULL;
    free(tc);
  }
}

/* This thread's pair for k, registering one on first use; NULL when out of memory, or
 * when the process has no pthread key for the magazines (cmag_key_rc != 0). */
static cmag_tc_t *cmag_find_slow(pp_cache *k) {
  cmag_thread_t *self = t_self;
  if (self) {
    for (cmag_tc_t *tc = self->head; tc; tc = tc->next_in_thread) {
      if (tc->serial == k->serial) {
        t_hot = tc;
        return tc;
      }
    }
  }
  pthread_once(&cmag_once, cmag_key_create);
  if (cmag_key_rc != 0) return NULL;
  if (!self) {
    self = calloc(1, sizeof *self);
    if (!self) return NULL;
    if (pthread_setspecific(cmag_key, self) != 0) {
      free(self);
      return NULL;
    }
    t_self = self;
  }
  unsigned rounds = k->cmag_rounds;
  cmag_tc_t *tc = malloc(sizeof *tc + 2u * rounds * sizeof(void *));
  if (!tc) return NULL;
  tc->serial = k->serial;
  tc->rounds = rounds;
  tc->loaded_n = tc->prev_n = 0;
  tc->loaded = tc->slots;
  tc->prev = tc->slots + rounds;

  pthread_mutex_lock(&cmag_lock);
  cmag_sweep_locked(self);
  tc->k = k;
  tc->next_in_cache = k->threads;
  if (k->threads) k->threads->pprev_in_cache = &tc->next_in_cache;
  tc->pprev_in_cache = &k->threads;
  k->threads = tc;
  pthread_mutex_unlock(&cmag_lock);

  tc->next_in_thread = self->head;
  self->head = tc;
  t_hot = tc;
  return tc;
}

static inline cmag_tc_t *cmag_find(pp_cache *k) {
  cmag_tc_t *tc = t_hot;
  if (MAG_LIKELY(tc != NULL && tc->serial == k->serial)) return tc;
  return cmag_find_slow(k);
}

/* Thread exit: every pair that is not orphaned sends its objects home. */
static void cmag_thread_exit(void *arg) {
  cmag_thread_t *self = arg;
  cmag_tc_t *home = NULL; /* pairs with objects to return, through next_in_thread */
  t_hot = NULL;
  t_self = NULL;
  pthread_mutex_lock(&cmag_lock);
  for (cmag_tc_t *tc = self->head, *next; tc; tc = next) {
    next = tc->next_in_thread;
    if (!tc->k) {
      free(tc);
      continue;
    }
    *tc->pprev_in_cache = tc->next_in_cache;
    if (tc->next_in_cache) tc->next_in_cache->pprev_in_cache = tc->pprev_in_cache;
    tc->k->c->cmag_returning++;
    tc->next_in_thread = home;
    home = tc;
  }
  pthread_mutex_unlock(&cmag_lock);

  /* Without cmag_lock (see the essay): the pairs are off their caches' lists, and
   * cmag_returning keeps pp_disconnect from freeing their clients.  Errors are nobody's
   * to hear any more; what could not go back the daemon takes back at disconnect. */
  for (cmag_tc_t *tc = home; tc; tc = tc->next_in_thread) {
    (void)client_cache_return(tc->k, tc->loaded, tc->loaded_n);
    (void)client_cache_return(tc->k, tc->prev, tc->prev_n);
  }

  pthread_mutex_lock(&cmag_lock);
  for (cmag_tc_t *tc = home, *next; tc; tc = next) {
    next = tc->next_in_thread;
    if (--tc->k->c->cmag_returning == 0) pthread_cond_broadcast(&cmag_cond);
    free(tc);
  }
  pthread_mutex_unlock(&cmag_lock);
  free(self);
}

void cmag_orphan_client(pp_client *c) {
  pthread_mutex_lock(&cmag_lock);
  pthread_mutex_lock(&c->lock);
  for (pp_cache *k = c->caches; k; k = k->next) {
    for (cmag_tc_t *tc = k->threads; tc; tc = tc->next_in_cache)
      tc->k = NULL;
    k->threads = NULL;
  }
  pthread_mutex_unlock(&c->lock);
  if (t_self) cmag_sweep_locked(t_self);
  /* Threads that were exiting before the pairs were orphaned may still be returning
   * objects through c: they finish before c goes. */
  while (c->cmag_returning > 0)
    pthread_cond_wait(&cmag_cond, &cmag_lock);
  pthread_mutex_unlock(&cmag_lock);
}

/* ---- the slow halves --------------------------------------------------------------- */

/* Loaded is empty. */
static int cmag_refill(pp_cache *k, cmag_tc_t *tc) {
  if (tc->prev_n > 0) {
    cmag_swap(tc);
    return 0;
  }
  int n = client_cache_fetch(k, tc->loaded, tc->rounds);
  if (n < 0) return n;
  tc->loaded_n = (unsigned)n;
  return 0;
}

/* Loaded is full: make room in it.  Returns 0 or the error of the batch return (the
 * room is made either way: objects that could not go back are either bad or belong to
 * a dead connection, whose session the daemon reclaims). */
static int cmag_make_room(pp_cache *k, cmag_tc_t *tc) {
  int rc = 0;
  if (tc->prev_n > 0) {
    rc = client_cache_return(k, tc->prev, tc->prev_n);
    tc->prev_n = 0;
  }
  cmag_swap(tc);
  return rc;
}

static int cmag_free_one(pp_cache *k, cmag_tc_t *tc, void *obj) {
  int rc = 0;
  if (!tc) return client_cache_return(k, &obj, 1);
  if (tc->loaded_n == tc->rounds) rc = cmag_make_room(k, tc);
  tc->loaded[tc->loaded_n++] = obj;
  return rc;
}

/* ---- public ------------------------------------------------------------------------ */

void *pp_cache_alloc(pp_cache *k) {
  if (!k) return NULL;
  cmag_tc_t *tc = cmag_find(k);
  if (MAG_LIKELY(tc != NULL && tc->loaded_n > 0)) return tc->loaded[--tc->loaded_n];
  if (!tc || cmag_refill(k, tc) < 0) return NULL;
  return tc->loaded[--tc->loaded_n];
}

int pp_cache_free(pp_cache *k, void *obj) {
  if (!k || !client_obj_valid(k, obj)) return PP_EINVAL;
  cmag_tc_t *tc = cmag_find(k);
  if (MAG_LIKELY(tc != NULL && tc->loaded_n < tc->rounds)) {
    tc->loaded[tc->loaded_n++] = obj;
    return 0;
  }
  return cmag_free_one(k, tc, obj);
}

int pp_cache_alloc_bulk(pp_cache *k, void **objs, unsigned n) {
  if (!k || (n > 0 && !objs)) return PP_EINVAL;
  if (n > INT_MAX) return PP_ERANGE;
  cmag_tc_t *tc = cmag_find(k);
  if (!tc) return cmag_key_rc ? PP_EOS : PP_ENOPRIVMEM;
  unsigned got = 0;
  int rc = 0;
  while (got < n) {
    if (tc->loaded_n == 0) {
      rc = cmag_refill(k, tc);
      if (rc < 0) goto undo;
    }
    unsigned take = tc->loaded_n < n - got ? tc->loaded_n : n - got;
    tc->loaded_n -= take;
    memcpy(&objs[got], &tc->loaded[tc->loaded_n], take * sizeof *objs);
    got += take;
  }
  return (int)n;

undo:
  /* All or nothing: what was taken goes back to the magazines it came from. */
  while (got > 0)
    (void)cmag_free_one(k, tc, objs[--got]);
  return rc;
}

int pp_cache_free_bulk(pp_cache *k, void *const *objs, unsigned n) {
  if (!k || (n > 0 && !objs)) return PP_EINVAL;
  for (unsigned i = 0; i < n; i++)
    if (!client_obj_valid(k, objs[i])) return PP_EINVAL;
  cmag_tc_t *tc = n ? cmag_find(k) : NULL;
  int first = 0;
  for (unsigned i = 0; i < n; i++) {
    int rc = cmag_free_one(k, tc, objs[i]);
    if (rc < 0 && first == 0) first = rc;
  }
  return first;
}
