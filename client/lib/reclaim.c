/*
 * reclaim.c — libpinpool's request exchange, and the re-claim of a session when pinpoold
 * restarts under it.
 *
 * What: pinpoold keeps its region memfd and a journal of who holds what in systemd's fd
 * store; a daemon that restarts (crash, kill, stop and start) adopts the same region —
 * the same memfd, so every client's mapping stays valid — replays the journal, and keeps
 * each session for a grace period (Welcome.grace_ms) in which its client may say Hello
 * with the session's token and carry on (docs/PROTOCOL.md, section 4, "Re-claiming a
 * session after a restart").  This file makes that invisible to the program: a call
 * whose connection fails under it re-claims the session on a new connection, sends its
 * request again, and returns that request's answer as if nothing had happened.
 *
 * When: only when the connection failed under the request — rpc.c's r->lost: EOF, a reset,
 * an I/O error while sending or receiving (PP_EDISCONNECTED, PP_EIO).  A refusal is an
 * answer, not a failure; a bad frame or a reply to another request (PP_EPROTO) is a daemon
 * that misbehaves, and no memory to receive (PP_ENOPRIVMEM) is this process's trouble:
 * those break the connection for good, as they always did.  And only when re-claim is on:
 * the program did not turn it off (PP_CONNECT_NO_RECLAIM), nor the environment
 * (PINPOOL_RECLAIM=0), and the last Welcome offered it — a session token, a region_id
 * (a daemon that predates restart survival sends none) and a grace period above 0.
 *
 * How (client_rpc, all under c->lock, so other threads' calls wait for the outcome and
 * then go out on the new connection):
 *   1. Deadline: now + the last Welcome's grace_ms + RECLAIM_MARGIN_MS.  The daemon's
 *      grace starts when the new daemon starts, which is after the old one died and after
 *      systemd's RestartSec (1 s in pinpoold.service); the margin covers that.
 *   2. rpc_reset: the old socket and any half-received reply go; ids keep counting.
 *   3. Connect to the same path.  ENOENT, ECONNREFUSED (no daemon yet) and any other
 *      failure but PP_EACCES are tried again after a pause: 5 ms doubling to 250 ms, each
 *      pause drawn from [step/2, step] ("equal jitter") so that the clients of a
 *      restarted daemon do not all come back in the same millisecond.  PP_EACCES — the
 *      socket is there and this user may not connect — is final.
 *   4. Hello{client_name, session_token}, its reply awaited until the deadline (not the
 *      10 s of pp_connect: under systemd the socket stays open across the restart, so the
 *      connect succeeds at once and the Hello waits in the backlog until the new daemon
 *      accepts).  EOF or no answer: the daemon went away again or is still starting —
 *      try again.  TOO_MANY_CLIENTS and NO_PRIVATE_MEMORY: try again.  STATE_LOST, or any
 *      other refusal: the session is gone.
 *   5. The Welcome must say reclaimed, with the same session_id, region_id, region size,
 *      page size and allocation unit, and carry the same memfd (the same file: st_dev and
 *      st_ino), whose size must still back the region.  Anything else is another region,
 *      or a new session the daemon started for us: the state is gone.  The memfd is closed
 *      at once — the mapping from pp_connect is the one every pointer points into — and
 *      the token and grace of the new Welcome replace the old ones.
 *   6. The interrupted request goes out again with the id it had: a daemon that carried
 *      it out before it died recorded its reply in the journal with that id and answers
 *      it again instead of doing it twice (exactly once); one that never saw it, or lost
 *      it with the crash, carries it out now.
 * Nothing client-side changes on a successful re-claim: the mapping, buffer handles,
 * names, pp_cache handles (cache ids) and every thread's magazines stay valid.
 *
 * Failure: every later call fails at once, without I/O, with the code the failing call
 * returned: PP_ESTATELOST (the daemon is back but the session is not: STATE_LOST, another
 * region, not re-claimed, or a refusal that will not change), PP_EDISCONNECTED (no daemon
 * took the session back before the deadline), PP_EACCES (not allowed to connect any
 * more).  The mapping stays until pp_disconnect, which frees everything as always.
 * A request that kills the daemon every time it is carried out would be re-claimed and
 * sent forever; after RECLAIM_MAX_PER_REQUEST re-claims for one request the break stands.
 *
 * Nothing here writes to stderr: the program learns what happened from the codes and
 * pp_reclaims().  SIGPIPE cannot fire: every send is MSG_NOSIGNAL (frame.c).
 *
 * Locks: c->lock around every exchange, re-claim included; cmag.c's thread-exit returns do
 * not hold cmag_lock while they wait for it (see there).
 */
#define _GNU_SOURCE
#include "client.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Added to Welcome.grace_ms: systemd's RestartSec (1 s) and the daemon's start, which pass
 * before the daemon's grace period begins. */
#define RECLAIM_MARGIN_MS 2000u
#define RECLAIM_BACKOFF_MIN_MS 5u
#define RECLAIM_BACKOFF_MAX_MS 250u
/* Re-claims for one request before its break stands (see the essay). */
#define RECLAIM_MAX_PER_REQUEST 16u

static uint64_t reclaim_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* xorshift64* (Vigna 2016): jitter needs spread, not secrecy. */
static uint64_t reclaim_rand(pp_client *c) {
  uint64_t x = c->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  c->rng = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* PINPOOL_RECLAIM=0 (or no, off, false) turns re-claim off for every client. */
static bool reclaim_env_allows(void) {
  const char *v = getenv("PINPOOL_RECLAIM");
  if (!v) return true;
  return !(strcmp(v, "0") == 0 || strcasecmp(v, "no") == 0 || strcasecmp(v, "off") == 0 ||
           strcasecmp(v, "false") == 0);
}

/* Keep the token and grace period a Welcome offers.  Whether re-claim stays on is the
 * caller's to decide from them. */
static void reclaim_keep_offer(pp_client *c, const Pinpool__V1__Welcome *w) {
  size_t n = w->session_token.len;
  if (n > 0 && n <= sizeof c->token && w->session_token.data) {
    memcpy(c->token, w->session_token.data, n);
    c->token_len = n;
  } else if (n > sizeof c->token) {
    c->token_len = 0; /* a token we cannot present */
  }
  c->grace_ms = w->grace_ms;
}

static bool reclaim_offered(const pp_client *c) {
  return c->token_len > 0 && c->region_id_len > 0 && c->grace_ms > 0;
}

void client_reclaim_init(pp_client *c, const Pinpool__V1__Welcome *w, const struct stat *st,
                         bool allowed) {
  struct timespec ts;
  size_t n = w->region_id.len;

  c->region_dev = st->st_dev;
  c->region_ino = st->st_ino;
  if (n > 0 && n <= sizeof c->region_id && w->region_id.data) {
    memcpy(c->region_id, w->region_id.data, n);
    c->region_id_len = n;
  }
  c->token_len = 0;
  reclaim_keep_offer(c, w);
  c->reclaim = allowed && reclaim_env_allows() && reclaim_offered(c);
  clock_gettime(CLOCK_MONOTONIC, &ts);
  c->rng = (c->session_id * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)getpid() << 32) ^
           (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)c;
  if (c->rng == 0) c->rng = 0x9E3779B97F4A7C15ull;
  atomic_init(&c->reclaims, 0);
}

/* Sleep one backoff step (never past the deadline), then double the step. */
static void reclaim_pause(pp_client *c, uint32_t *step_ms, uint64_t deadline) {
  uint32_t half = *step_ms / 2;
  uint64_t d = half + reclaim_rand(c) % (*step_ms - half + 1u);
  uint64_t now = reclaim_now_ms();
  if (now >= deadline) return;
  if (d > deadline - now) d = deadline - now;
  struct timespec ts = {.tv_sec = (time_t)(d / 1000u), .tv_nsec = (long)(d % 1000u) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
    ;
  *step_ms = *step_ms * 2 > RECLAIM_BACKOFF_MAX_MS ? RECLAIM_BACKOFF_MAX_MS : *step_ms * 2;
}

/* Is this Welcome the session we had, on the memory we mapped? */
static bool reclaim_welcome_is_ours(const pp_client *c, const Pinpool__V1__Welcome *w,
                                    const struct stat *st) {
  return w->reclaimed && w->session_id == c->session_id &&
         w->region_id.len == c->region_id_len &&
         memcmp(w->region_id.data, c->region_id, c->region_id_len) == 0 &&
         w->region_size == c->region_size && w->page_size == c->page_size &&
         client_min_block(w) == c->min_block && st->st_dev == c->region_dev &&
         st->st_ino == c->region_ino;
}

/* One attempt: connect, Hello with the token, check the Welcome.  0: the session is back
 * on c->rpc.  Else the code, with *ret_again telling a pause-and-retry from the end. */
static int reclaim_try(pp_client *c, uint64_t deadline, bool *ret_again) {
  Pinpool__V1__Response *resp = NULL;
  struct stat st;
  int memfd = -1, rc;

  *ret_again = false;
  rc = rpc_connect(&c->rpc, c->path);
  if (rc < 0) {
    *ret_again = rc != PP_EACCES;
    return rc;
  }
  uint64_t now = reclaim_now_ms();
  uint64_t left = now < deadline ? deadline - now : 1;
  rc = client_hello(c, c->token, c->token_len, left > INT_MAX ? INT_MAX : (int)left, &resp,
                    &memfd, &st);
  if (rc < 0) {
    /* Gone again or not up yet (EOF, no answer), busy, short of memory, or an OS call
     * failing here: worth another try.  A refusal that will not change — STATE_LOST
     * first of all — or a Welcome that fails the checks every Welcome must pass: the
     * session cannot come back. */
    *ret_again = c->rpc.lost || rc == PP_ETOOMANY || rc == PP_ENOPRIVMEM || rc == PP_EOS;
    return *ret_again ? rc : PP_ESTATELOST;
  }
  if (reclaim_welcome_is_ours(c, resp->welcome, &st)) {
    reclaim_keep_offer(c, resp->welcome);
    c->reclaim = reclaim_offered(c);
    bc_reclaimed(c, resp->welcome->features);
    rc = 0;
  } else {
    rc = PP_ESTATELOST;
  }
  close(memfd);
  frame_free_response(resp);
  return rc;
}

/* The connection failed under a request: find the session again on a new connection, or
 * break for good with the code every later call returns. */
static int reclaim_session(pp_client *c) {
  uint64_t deadline = reclaim_now_ms() + c->grace_ms + RECLAIM_MARGIN_MS;
  uint32_t step = RECLAIM_BACKOFF_MIN_MS;
  int rc;

  for (;;) {
    bool again;
    rpc_reset(&c->rpc);
    rc = reclaim_try(c, deadline, &again);
    if (rc == 0) {
      atomic_fetch_add_explicit(&c->reclaims, 1, memory_order_relaxed);
      return 0;
    }
    if (!again) break;
    if (reclaim_now_ms() >= deadline) {
      rc = PP_EDISCONNECTED;
      break;
    }
    reclaim_pause(c, &step, deadline);
  }
  /* A connection to a daemon that did not give the session back is closed: that ends any
   * new session it started for us. */
  rpc_reset(&c->rpc);
  c->reclaim = false;
  c->rpc.broken = rc;
  snprintf(c->rpc.why, sizeof c->rpc.why,
           "re-claiming the session after pinpoold went away: %s", pp_strerror(rc));
  return rc;
}

int client_rpc(pp_client *c, Pinpool__V1__Request__BodyCase body_case, ProtobufCMessage *body,
               Pinpool__V1__Response__BodyCase want, Pinpool__V1__Response **ret_resp) {
  return client_rpc_fd(c, body_case, body, want, ret_resp, NULL);
}

int client_rpc_fd(pp_client *c, Pinpool__V1__Request__BodyCase body_case,
                  ProtobufCMessage *body, Pinpool__V1__Response__BodyCase want,
                  Pinpool__V1__Response **ret_resp, int *ret_fd) {
  pthread_mutex_lock(&c->lock);
  uint64_t id = c->rpc.next_id++;
  unsigned reclaims;
  int rc;
  for (reclaims = 0;; reclaims++) {
    rc = rpc_call_id(&c->rpc, id, body_case, body, want, ret_resp, ret_fd);
    if (rc >= 0 || !c->rpc.lost || !c->reclaim) break;
    if (reclaims == RECLAIM_MAX_PER_REQUEST) {
      c->reclaim = false;
      break;
    }
    /* While the session may be lost, the buffer caches hand out nothing: their blocks are
     * the session's only if the re-claim succeeds (bc_reclaimed turns them on again). */
    bc_suspend(c);
    rc = reclaim_session(c);
    if (rc < 0) break;
  }
  /* Broken for good: every later call fails, and the caches must not serve blocks the
   * daemon may have given to someone else. */
  if (c->rpc.broken) bc_suspend(c);
  /* The other pools, checked after the interrupted request went out again (it must be the
   * first request of the re-claimed session: exactly once). */
  if (reclaims && !c->rpc.broken && c->pools) pool_reclaimed(c);
  pthread_mutex_unlock(&c->lock);
  return rc;
}
