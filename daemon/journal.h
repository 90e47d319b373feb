/* journal.h — pinpoold's crash journal: typed records in transactions, appended to a private
 * memfd that outlives the process in systemd's file-descriptor store; replay, compaction,
 * adoption after a restart.  It knows nothing of what its records mean.  See journal.c for
 * the format and the crash-consistency argument.
 *
 * One thread: a journal_t has no lock; the daemon's loop is its only user. */
#ifndef PP_DAEMON_JOURNAL_H
#define PP_DAEMON_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct journal journal_t;

#define JOURNAL_IDENTITY_MAX 64u         /* bytes of the caller's identity blob */
#define JOURNAL_TXN_MAX (256u << 20)     /* one transaction, header and trailer included */
#define JOURNAL_COMPACT_MIN (1ull << 20) /* journal_should_compact's floor */

/* What lies after the last valid transaction of the current generation (journal_scan_t.
 * tail).  A crash leaves only the first three; anything else is damage, and a caller that
 * must not lose a transaction it acted on (pinpoold) refuses a damaged journal rather than
 * replay the valid part before the damage. */
typedef enum journal_tail {
  JOURNAL_TAIL_NONE = 0, /* nothing: the generation ends at the end of the file */
  JOURNAL_TAIL_TORN,     /* a prefix of one transaction of this generation, ending on a
                          * 4 KiB boundary of the file: a write a fatal signal cut short
                          * (the kernel stops a write between pages, never inside one) */
  JOURNAL_TAIL_SNAPSHOT, /* a compaction the crash interrupted before its flip: zeros up to
                          * the next generation's start, then transactions of that
                          * generation (the last of them possibly torn as above) */
  JOURNAL_TAIL_DAMAGED,  /* anything else: a transaction that is whole but invalid, a valid
                          * one after an invalid one, a cut no crash makes */
} journal_tail_t;

/* What a scan of the current generation found (adopt, replay). */
typedef struct journal_scan {
  uint64_t generation;
  uint64_t txns;          /* valid transactions, snapshot ones included */
  uint64_t records;       /* records in them */
  uint64_t snapshot_txns; /* of txns, those of this generation's snapshot */
  uint64_t first_seq;     /* sequence number of the generation's first transaction */
  uint64_t next_seq;      /* one past the last valid transaction's */
  uint64_t bytes;         /* of valid transactions, from the generation's data start */
  uint64_t dropped_bytes; /* after the last valid transaction: a torn tail, or damage */
  bool torn_tail;         /* dropped_bytes > 0; stop_reason says what stopped the scan */
  bool snapshot_complete; /* every snapshot transaction is among the valid ones */
  journal_tail_t tail;    /* what the dropped bytes are (NONE when there are none) */
  unsigned slots_valid;   /* superblock slots that passed their checks: bit 0 A, bit 1 B */
  char stop_reason[160];  /* "" on a clean end */
} journal_scan_t;

/* One transaction as replay delivers it. */
typedef struct journal_txn_info {
  uint64_t seq;
  uint64_t offset; /* in the memfd, for diagnostics */
  uint32_t nr_records;
  bool snapshot; /* written by the compaction that started this generation */
} journal_txn_info_t;

/* Replay callbacks: return 0 to go on, a negative PP_E* code to stop replay with it.
 * Records of a transaction are delivered only after the whole transaction has been checked,
 * between its txn_begin and txn_end; txn_begin and txn_end may be NULL. */
typedef struct journal_replay_ops {
  int (*txn_begin)(const journal_txn_info_t *txn, void *ctx);
  int (*record)(uint32_t type, const void *payload, size_t len, void *ctx);
  int (*txn_end)(const journal_txn_info_t *txn, void *ctx);
} journal_replay_ops_t;

typedef struct journal_stats {
  uint64_t generation;
  uint64_t data_start;   /* memfd offset of the generation's first transaction */
  uint64_t snapshot_end; /* end of its snapshot (== data_start: empty snapshot) */
  uint64_t end;          /* append point == memfd size */
  uint64_t next_seq;
  uint64_t live_bytes; /* end - data_start: what replay reads */
  uint64_t log_bytes;  /* end - snapshot_end: written since the last snapshot */
  uint64_t commits;    /* since create/adopt */
  uint64_t commit_bytes;
  uint64_t compactions;
  uint64_t deferred_failures; /* punches or redundant-slot writes that failed after a
                               * compaction had committed (memory not yet freed, or one
                               * superblock copy stale); adopt retries both */
} journal_stats_t;

/* ---- lifetime ------------------------------------------------------------------------- */

/* A fresh journal in a new memfd (MFD_CLOEXEC), generation 1, first sequence number 1.
 * identity: up to JOURNAL_IDENTITY_MAX opaque bytes that journal_adopt will demand.
 * PP_EINVAL (identity too long), PP_ENOPRIVMEM, PP_EOS. */
int journal_create(const void *identity, size_t identity_len, journal_t **ret_j);

/* Takes over a journal fd (from the fd store) after a restart: picks the valid superblock
 * slot with the highest generation, refuses a journal whose identity differs from
 * expected_identity (PP_EINVAL, why says so) or that has no valid superblock or an unknown
 * format version (PP_ECORRUPT), or an fd that is not a regular file (PP_EINVAL); then scans
 * the generation, drops a torn tail (ftruncate to the end of the last valid transaction),
 * finishes an interrupted compaction (punches the dead prefix, rewrites the stale
 * superblock slot) and positions the append point.  On success the journal owns fd
 * (journal_close closes it) and *ret_scan (may be NULL) says what the scan found; on
 * failure fd is left open and untouched.  Never replays: call journal_replay next. */
int journal_adopt(int fd, const void *expected_identity, size_t identity_len, journal_t **ret_j,
                  journal_scan_t *ret_scan, char *why, size_t why_len);

/* Closes the memfd and frees the journal (NULL: nothing).  An open transaction or
 * compaction is discarded: what was committed stays in the memfd. */
void journal_close(journal_t *j);

/* The memfd, for the fd store.  Still owned by the journal. */
int journal_fd(const journal_t *j);
/* What the last failed system call was and said ("pwrite: No space left on device"), for
 * the log after a PP_EOS; "" when none failed. */
const char *journal_last_error(const journal_t *j);
/* "none", "torn", "snapshot", "damaged". */
const char *journal_tail_name(journal_tail_t t);

/* ---- transactions --------------------------------------------------------------------- */

/* Opens a transaction.  PP_EBUSY when one is open already. */
int journal_txn_begin(journal_t *j);
/* Adds one typed record (payload copied; len may be 0).  PP_EINVAL without an open
 * transaction, PP_ERANGE when the transaction would pass JOURNAL_TXN_MAX, PP_ENOPRIVMEM;
 * on failure the transaction is as before the call. */
int journal_txn_add(journal_t *j, uint32_t type, const void *payload, size_t len);
/* Writes the open transaction as one unit (one pwrite) and closes it.  On 0 it is durable
 * (it survives the process) and *ret_seq (may be NULL) is its sequence number, the previous
 * one's + 1.  On failure (PP_EOS, PP_EIO) nothing of it will ever be replayed — except
 * after journal_fault_after fired, which models a process already dead.  PP_EINVAL
 * without an open transaction.  During a compaction the transaction belongs to the snapshot
 * and is durable only once journal_compact_commit returns 0. */
int journal_txn_commit(journal_t *j, uint64_t *ret_seq);
/* Discards the open transaction (no transaction: nothing). */
void journal_txn_abort(journal_t *j);

/* ---- replay --------------------------------------------------------------------------- */

/* Calls ops for every record of every valid transaction of the current generation, in
 * order, stopping silently at the first torn or invalid transaction (*ret_scan says so).
 * Returns 0, a callback's error (why names the transaction), or PP_EOS. */
int journal_replay(journal_t *j, const journal_replay_ops_t *ops, void *ctx,
                   journal_scan_t *ret_scan, char *why, size_t why_len);

/* ---- compaction ----------------------------------------------------------------------- */

/* Starts a new generation after the current end.  Until journal_compact_commit every
 * committed transaction goes to the new generation's snapshot: write the whole live state
 * (one transaction or many) and answer no request in between.  PP_EBUSY when a transaction
 * or a compaction is open. */
int journal_compact_begin(journal_t *j);
/* Makes the snapshot the current generation (superblock flip), then frees the dead prefix
 * (FALLOC_FL_PUNCH_HOLE) and rewrites the other superblock slot.  0: the new generation is
 * durable (a failure after the flip only counts in deferred_failures).  On failure the old
 * generation stays current and the snapshot is discarded.  PP_EINVAL without a compaction,
 * PP_EBUSY with a transaction open. */
int journal_compact_commit(journal_t *j);
/* Discards the snapshot written so far; the old generation stays current. */
void journal_compact_abort(journal_t *j);
/* True when the bytes written since the last snapshot pass
 * max(JOURNAL_COMPACT_MIN, 2 x the snapshot's size). */
bool journal_should_compact(const journal_t *j);

/* ---- state ---------------------------------------------------------------------------- */

void journal_get_stats(const journal_t *j, journal_stats_t *ret_stats);
/* Validator: the superblock slots, the whole generation (every transaction valid, reaching
 * exactly the append point with the expected sequence numbers) and the zero tail.  O(size).
 * 0 or PP_ECORRUPT with the first violation in why. */
int journal_check(journal_t *j, char *why, size_t why_len);

/* ---- CRC32C (Castagnoli), exposed for tests and other users ----------------------------- */

/* Running CRC: crc32c(crc32c(0, a), b) == crc32c(0, a || b); crc32c(0, "123456789", 9) ==
 * 0xe3069283.  journal_crc32c uses SSE4.2 when the CPU has it, else the table. */
uint32_t journal_crc32c(uint32_t crc, const void *buf, size_t len);
uint32_t journal_crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* The SSE4.2 path; only when journal_crc32c_hw_available(). */
uint32_t journal_crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool journal_crc32c_hw_available(void);

/* ---- payload encoding ----------------------------------------------------------------- */

/* Little-endian writers into a caller's buffer.  Errors are sticky: write everything, then
 * look at err once (PP_ERANGE: did not fit; nothing is written past cap). */
typedef struct journal_enc {
  uint8_t *buf;
  size_t cap;
  size_t len;
  int err;
} journal_enc_t;

void journal_enc_init(journal_enc_t *e, void *buf, size_t cap);
void journal_enc_u8(journal_enc_t *e, uint8_t v);
void journal_enc_u16(journal_enc_t *e, uint16_t v);
void journal_enc_u32(journal_enc_t *e, uint32_t v);
void journal_enc_u64(journal_enc_t *e, uint64_t v);
/* n raw bytes, no length (fixed-size fields: tokens, ids). */
void journal_enc_bytes(journal_enc_t *e, const void *p, size_t n);
/* u32 length, then the bytes (names, blobs). */
void journal_enc_str(journal_enc_t *e, const void *p, size_t n);
/* journal_txn_add(j, type, e->buf, e->len), or e->err when the encoding failed. */
int journal_txn_add_enc(journal_t *j, uint32_t type, const journal_enc_t *e);

/* Little-endian readers over a payload, never reading past it.  Errors are sticky: a
 * failed read returns 0 / NULL and sets err to PP_ECORRUPT; later reads fail too. */
typedef struct journal_dec {
  const uint8_t *buf;
  size_t len;
  size_t off;
  int err;
} journal_dec_t;

void journal_dec_init(journal_dec_t *d, const void *buf, size_t len);
uint8_t journal_dec_u8(journal_dec_t *d);
uint16_t journal_dec_u16(journal_dec_t *d);
uint32_t journal_dec_u32(journal_dec_t *d);
uint64_t journal_dec_u64(journal_dec_t *d);
/* A pointer to the next n bytes inside the payload, or NULL. */
const void *journal_dec_bytes(journal_dec_t *d, size_t n);
/* A length-prefixed string (journal_enc_str): pointer inside the payload, not
 * NUL-terminated, length in *ret_len; NULL when the length passes the payload's end. */
const void *journal_dec_str(journal_dec_t *d, size_t *ret_len);
/* The same, copied into dst with a NUL; PP_ECORRUPT when it is malformed, holds a NUL byte
 * or does not fit dst_size (dst then holds ""). */
int journal_dec_cstr(journal_dec_t *d, char *dst, size_t dst_size);
/* 0 when every read succeeded and the payload was consumed exactly, else PP_ECORRUPT. */
int journal_dec_finish(const journal_dec_t *d);

/* ---- test seam ------------------------------------------------------------------------ */

/* Simulates a crash inside the write stream: the journal may write `bytes` more bytes to
 * its memfd; the write that would pass that budget writes only what is left (a torn write)
 * and from then on the journal is dead — every call that would change the memfd (write,
 * ftruncate, punch) fails with PP_EIO, as if the process had been killed there.  A budget
 * spent exactly by a write kills the journal right after it.  UINT64_MAX: no limit. */
void journal_fault_after(journal_t *j, uint64_t bytes);

#endif
