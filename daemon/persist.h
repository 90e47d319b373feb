/* persist.h — restart survival: the journal of every ownership change (written before the
 * reply that announces it), the region and journal memfds in the service manager's fd
 * store, and a restarted daemon's way back to its sessions.  See persist.c. */
#ifndef PP_DAEMON_PERSIST_H
#define PP_DAEMON_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "ledger.h"
#include "session.h"

#define PERSIST_REGION_ID_LEN 16u
#define PERSIST_GRACE_DEFAULT_MS 30000u

typedef struct persist_config {
  bool journal;      /* keep a journal (--journal: on with an fd store, or asked for) */
  bool fd_store;     /* a service manager keeps our fds (NOTIFY_SOCKET) */
  uint32_t grace_ms; /* how long a restored session waits to be re-claimed (--grace) */
  /* Tests only (pinpoold reads them from the environment at start-up): */
  uint64_t crash_after_commit; /* PINPOOLD_TEST_CRASH_AFTER_COMMIT=N: SIGKILL ourselves
                                * after the N-th request transaction of this process is
                                * journaled, before its reply goes out; 0: never */
  bool check_every_request;    /* PINPOOLD_TEST_CHECK_JOURNAL=1: replay the journal and
                                * compare it with the ledger after every request
                                * transaction; abort on a difference */
  /* A reload (handoff.h): region_fd and journal_fd come from the previous image of this
   * process, not from the store.  They are taken back whatever `journal` says; the store
   * holds them when handoff_stored; a handoff_journal_temp journal is closed once read
   * (the previous image was not journaling, and neither is this one). */
  bool handoff, handoff_stored, handoff_journal_temp;
  /* A pool other than the default (pools.c): its name names its fds in the store
   * ("region.NAME", "journal.NAME"), and its sessions are the sessions that attached it
   * (persist_attach, persist_detach), its holders in s->pools[pool].  0 / NULL: the
   * default pool's persist, whose sessions are every session past Hello (s->holder). */
  uint32_t pool;
  const char *pool_name;
} persist_config_t;

typedef struct persist persist_t;

typedef struct persist_stats {
  bool restored;         /* this daemon came back from a journal */
  uint64_t txns;         /* transactions committed by this process */
  uint64_t request_txns; /* of those, requests' (with a reply) */
  uint64_t compactions;  /* by this process */
  uint64_t failures;     /* commits that failed (a fresh snapshot then stood in) */
} persist_stats_t;

/* Start-up, before the loop: the ledger comes back from region_fd and journal_fd (the fd
 * store's, -1 when absent; both are consumed) when journaling is on and both are there and
 * trustworthy — the journal adopted (identity, damage), replayed into a model, the model
 * built in the adopted region (ledger_restore), and the result compared with the journal;
 * its sessions wait in persist_restored().  Otherwise (one of them missing, or not to be
 * trusted: logged at err with the reason) the stored fds are dropped from the store and a
 * fresh region is created (*ret_ledger), a new journal with it, and both go into the store.
 * 0, or the error of creating the fresh region (logged). */
int persist_start(const persist_config_t *cfg, const ledger_config_t *lc, int region_fd,
                  int journal_fd, ledger_t **ret_ledger, persist_t **ret);
/* Closes the journal (its memfd stays in the store) and frees p; the ledger is the
 * caller's, and the restored sessions must have been taken. */
void persist_free(persist_t *p);

/* The sessions the journal brought back, detached, with their holders (NULL after the
 * first call: the caller owns them, linked through session_t.next). */
session_t *persist_take_restored(persist_t *p);
/* The session list a snapshot exports (the server's sessions past Hello, detached ones
 * included). */
void persist_bind_sessions(persist_t *p, const session_list_t *sessions);

/* 16 random bytes naming the region, the same for every daemon that adopted it. */
const uint8_t *persist_region_id(const persist_t *p);
/* Welcome.grace_ms: how long a session whose connection broke stays re-claimable; 0 when
 * no restart could keep it (no journal, no fd store, or journaling failed for good). */
uint32_t persist_grace_ms(const persist_t *p);
/* True while changes are being journaled. */
bool persist_journaling(const persist_t *p);
void persist_get_stats(const persist_t *p, persist_stats_t *ret);
/* The journal (NULL when not journaling), for tests: its fd, its stats, its fault seam. */
journal_t *persist_journal(const persist_t *p);

/* A session past Hello (on the bound list already): journaled in a transaction of its
 * own.  A failure is handled inside (fresh snapshot, else journaling off). */
void persist_session_new(persist_t *p, const session_t *s);
/* A pool's persist: s attached the pool (its holder is s->pools[pool].holder now): a
 * session of this pool's journal, as persist_session_new. */
void persist_attach(persist_t *p, const session_t *s);
/* A pool's persist: everything s holds in the pool goes back and its attachment ends, in
 * one transaction (as persist_release). */
void persist_detach(persist_t *p, ledger_t *l, session_t *s);
/* A pool's persist: the reply to the last request of session sid journaled here (its id
 * in *ret_id), NULL when none. */
const uint8_t *persist_kept_reply(const persist_t *p, uint64_t sid, uint64_t *ret_id,
                                  size_t *ret_len);
/* Everything s holds goes back (ledger_holder_release) and the session ends, in one
 * transaction.  s must be off the bound list. */
void persist_release(persist_t *p, ledger_t *l, session_t *s);
/* The request req_id of s has been served (its changes, if any, recorded as the ledger
 * made them) and reply[0, len) is its packed reply (NULL: none could be made): when
 * anything changed, the reply is kept in s and the transaction — changes and reply — is
 * committed, before the caller sends the reply. */
void persist_request_end(persist_t *p, session_t *s, uint64_t req_id, const uint8_t *reply,
                         size_t len);
/* Between requests: compact the journal when journal_should_compact says so. */
void persist_tick(persist_t *p);
/* The journal replayed into a model equals the live ledger and sessions exported into one.
 * 0 (also when not journaling), or PP_ECORRUPT with the first difference in why. */
int persist_check(persist_t *p, char *why, size_t why_len);
/* Shutdown: nothing more is journaled, so the journal keeps the state as it is now and
 * releasing the sessions on the way out does not end them — a daemon started with the
 * stored fds takes them back. */
void persist_stop(persist_t *p);
/* Stored state (or a previous image's) was there at start-up and could not be taken
 * back: this region is fresh, and the sessions' holdings in it are gone. */
bool persist_state_lost(const persist_t *p);
/* Region and journal are in the service manager's fd store. */
bool persist_stored(const persist_t *p);
/* A reload is about to hand the state to the next image: the journal is compacted so that
 * its current generation is exactly the live state (when not journaling, a journal is
 * written for the handoff alone: *ret_temp).  *ret_fd: the journal's memfd, still ours.
 * 0, or an error with nothing changed (the reload does not happen). */
int persist_reload_prepare(persist_t *p, int *ret_fd, bool *ret_temp);
/* The reload did not happen (execve failed): a journal written for it goes. */
void persist_reload_abort(persist_t *p);
/* The journal is not to be trusted any more (a failed check at shutdown): both fds leave
 * the store, so the next daemon starts fresh. */
void persist_abandon(persist_t *p, const char *why);

#endif
