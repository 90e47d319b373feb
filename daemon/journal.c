/*
 * journal.c — pinpoold's crash journal.
 *
 * What it is for.  pinpoold must survive a crash, a watchdog kill or an upgrade without
 * taking any client's buffers.  The region memfd and this journal — a second memfd, private
 * to the daemon, never sent to a client — wait in systemd's file-descriptor store while the
 * daemon is down.  Every change of ownership is recorded here before the reply to the
 * request that caused it is sent; a restarted daemon adopts the journal and replays it.
 * This module is only the journal: storage, integrity, replay, compaction.  Records are
 * (type, payload) pairs whose meaning belongs to the caller; the little-endian encoders and
 * decoders at the end are there so that callers never write offsets by hand.
 *
 * Format (version 1; every integer little-endian).
 *
 *   memfd offset   contents
 *   0              superblock slot A (128 bytes)
 *   2048           superblock slot B (128 bytes)
 *   4096 ...       dead data of older generations (punched: holes, no memory)
 *   data_start     generation G: its snapshot transactions, up to snapshot_end, then the
 *                  transactions committed since, up to the append point == the file size
 *
 *   superblock slot           transaction                    record
 *   off size                  off  size                      off size
 *     0   8 magic "PPJRNLSB"    0    4 magic "PJTX"            0  4 type (caller's)
 *     8   4 version (1)         4    4 length L (all of it)    4  4 payload length n
 *    12   4 identity length     8    8 sequence number         8  n payload
 *    16   8 generation         16    8 generation
 *    24   8 data_start         24    4 record count
 *    32   8 snapshot_end       28    4 reserved (0)
 *    40   8 first_seq          32  ... records, packed
 *    48  64 identity (0-pad)   L-8   4 crc32c of bytes [0, L-8)
 *   112  12 reserved (0)       L-4   4 end marker "PJTE"
 *   124   4 crc32c of [0, 124)
 *
 * A slot is valid when magic, crc, version and fields check (identity length <= 64, its
 * padding and the reserved bytes zero, generation >= 1, data_start >= 4096, snapshot_end
 * >= data_start, first_seq >= 1).  The valid slot with the highest generation is current;
 * its identity must equal the caller's (a journal of another region is never replayed).
 * A transaction at offset p of generation G is valid when its magic and end marker are
 * there, 40 <= L <= JOURNAL_TXN_MAX, p + L <= file size, the crc matches, its generation is
 * G, its sequence number is the generation's first_seq for the first transaction and the
 * previous one's + 1 after that, and its records fill it exactly.  Replay walks from
 * data_start and stops at the first transaction that is not valid.
 *
 * Invariants (journal_check).
 *   I1  Outside a compaction both slots hold the current generation; inside one, or after a
 *       failed slot write, at least the slot last written for it does.
 *   I2  Zero tail: the file ends at the append point (the end of the last committed
 *       transaction, or of the snapshot during a compaction).  No byte after it was written
 *       by anyone: a torn or failed write is cut off before anything else is appended.
 *   I3  [data_start, end) is a chain of valid transactions of the current generation with
 *       consecutive sequence numbers; snapshot_end is one of its boundaries.
 *   I4  Bytes of older generations lie wholly before data_start.
 *
 * Crash consistency, step by step.  A crash here is the death of the process (SIGKILL,
 * watchdog abort, a fault): the memfd's pages belong to the kernel and keep every byte a
 * write() put there.  The kernel copies a write into a tmpfs file in file order and a fatal
 * signal stops it between pages, so a write cut short leaves a prefix; nothing below relies
 * on that except as a second line behind the crc.
 *   1. Commit encodes the whole transaction in private memory — header, records, crc, end
 *      marker last — and writes it with one pwrite at the append point.  Before that write
 *      nothing of it is in the file; after it the whole of it is; in between the file holds
 *      a prefix, whose end marker (4 non-zero bytes, the last ones written) is missing since
 *      the bytes after it are zero (I2), and whose crc does not match.  Replay stops there.
 *      The daemon answers the request only after commit returns, so a transaction that
 *      replay drops was never answered: the client retries, and nothing was promised.
 *   2. Adopt scans the generation and ftruncates the file to the end of the last valid
 *      transaction, restoring I2 before anything new is appended.  Without that, a shorter
 *      transaction appended over a torn one could be followed by the torn one's leftover
 *      bytes, and a payload holding client-chosen bytes (a buffer name) could be shaped like
 *      a valid next transaction.  With it, the scan only ever reaches a header through the
 *      crc-checked lengths of the transactions before it, from data_start.  A commit whose
 *      write fails in a live daemon (ENOSPC) truncates back the same way; when even that
 *      fails the journal refuses every further write (PP_EIO).  The sequence numbers and the
 *      generation in every header are a second line: a stale transaction of this or an
 *      aborted generation can never be the valid successor of the one before it.
 *   3. Compaction writes the new generation after the current end (rounded up to a page),
 *      so no byte of the current generation is touched until the flip.  Crash before or
 *      during the snapshot writes: the current slot still names the old generation, whose
 *      scan stops at the zero padding or at the first snapshot header (other generation);
 *      adopt truncates the snapshot away.
 *   4. The flip writes the new generation's superblock into the slot that does not hold the
 *      current generation alone (I1: both do, or the other one is stale).  Torn: its crc
 *      fails and the other slot, still the old generation, wins; whole: the new generation
 *      wins by its higher number.
 *   5. Then the dead prefix [4096, data_start) is punched.  Crash before: the new
 *      generation is current and complete, the old bytes only waste memory; adopt punches.
 *   6. Then the other slot is rewritten with the new generation (I1 again).  Crash before
 *      or during: the flipped slot wins; adopt rewrites the other.
 * Damage that no crash makes (a flipped bit) is caught by the crc: single-byte errors and
 * bursts up to 32 bits always, anything else with probability 1 - 2^-32.  A damaged slot
 * falls back to its twin (I1); a damaged transaction ends replay there.
 *
 * Telling a crash from damage (journal_scan_t.tail).  Replay ends at the first invalid
 * transaction either way, but a caller that answered the transactions after a damaged one
 * must not take the valid prefix for the state it promised.  A crash leaves exactly one of:
 * nothing after the last valid transaction; a torn write — a prefix of one transaction
 * whose header bytes are right (magic, sequence number, generation, a length that runs past
 * the end of the file) and which ends on a 4 KiB boundary, because the kernel copies a
 * write into tmpfs page by page and a fatal signal stops it only between pages (step 1
 * above; a short write in a live daemon is truncated away at once); or an interrupted
 * compaction (step 3: zeros to the next generation's start, then that generation's
 * transactions, the last possibly torn).  The scan classifies the tail as one of these or
 * as damaged; adopt drops it in every case (I2), and the caller decides.
 *
 * Why pwrite and not stores into a mapping.  Stores into a MAP_SHARED mapping would also
 * survive a crash and save the system call, but (a) a page the memfd cannot get (memory
 * cgroup limit, tmpfs size) is a SIGBUS in the daemon instead of an error the request can
 * be answered with; (b) a wild pointer anywhere in the daemon could scribble on the record
 * of who owns what, while the fd can only be changed by calls made on purpose; (c) a
 * growing file needs remapping or a reservation.  One pwrite of a few hundred bytes to tmpfs
 * costs well under a microsecond more than a store; a request round trip costs ~60 us.
 * Replay and adopt, which only read, do map the generation.
 *
 * Compaction keeps the journal's size following the live state: journal_should_compact
 * asks for one when the bytes since the last snapshot pass max(1 MiB, 2 x the snapshot),
 * so the live bytes stay under 3 x the snapshot (+ 1 MiB) and the cost of compaction is
 * amortized to at most half a snapshot byte per logged byte.  File offsets only grow —
 * each generation starts after the last one — while memory follows the live bytes; at
 * 200 MB/s of journal the 2^63-byte offset space lasts over a thousand years.
 *
 * Costs.  A commit is a crc32c over the transaction (SSE4.2 crc32 instruction, 8 bytes a
 * step, when the CPU has it; slice-by-8 tables otherwise), one pwrite — the transaction is
 * contiguous in private memory, so there is nothing for pwritev to gather — and no
 * allocation once the transaction buffer has grown to the largest transaction.  Measured
 * on the development VM for a 214-byte transaction of three records: ~0.8 us a commit with
 * the amortized compactions, of which ~0.6 us is the pwrite itself (a bare pwrite over
 * pages a memfd already has), ~0.15 us the kernel giving the file a new page every ~19
 * commits, ~26 ns the crc (~105 ns with the table) and ~20 ns encoding: 1.4% of an alloc +
 * free pair of round trips.  Adopt and replay read the generation once each through a
 * read-only mapping (~50 ns a transaction).
 *
 * What it deliberately does not do.  No fsync, no msync: the journal is memory, and it
 * survives exactly what the region it describes survives — the daemon's process, not the
 * machine.  After a reboot the region is gone and so is any use for the journal.  No locks:
 * one thread owns a journal_t.  No interpretation of records, and no compression.
 *
 * References: memfd_create(2), pwrite(2), fallocate(2) (FALLOC_FL_PUNCH_HOLE), the
 * CRC32C polynomial of RFC 3720 (iSCSI) with its test vectors in section B.4, and the
 * systemd file-descriptor store (sd_pid_notify_with_fds(3), FDSTORE=1).
 */
#define _GNU_SOURCE /* memfd_create, fallocate */
#include "journal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "debug.h"
#include "pinpool_err.h"

/* ---- format constants ------------------------------------------------------------------ */

#define SB_MAGIC 0x42534c4e524a5050ull /* "PPJRNLSB" */
#define SB_VERSION 1u
#define SB_AREA 4096u /* slots live here; generation 1 starts after it */
#define SLOT_SIZE 128u
#define SLOT_CRC_OFF 124u
static const uint64_t slot_off[2] = {0, 2048};

#define TXN_MAGIC 0x58544a50u /* "PJTX" */
#define TXN_END 0x45544a50u   /* "PJTE": four non-zero bytes, written last */
#define TXN_HDR 32u
#define TXN_TRL 8u
#define REC_HDR 8u

#define TXN_BUF_KEEP (64u << 10) /* transaction buffer kept after a compaction */
#define TORN_GRAIN 4096u         /* a write cut short by a fatal signal ends on this */

typedef struct sb {
  uint32_t version;
  uint32_t idlen;
  uint64_t gen;
  uint64_t data_start;
  uint64_t snap_end;
  uint64_t first_seq;
  uint8_t id[JOURNAL_IDENTITY_MAX];
} sb_t;

struct journal {
  int fd;
  uint64_t align; /* generations start on this boundary: max(4096, page size) */

  /* The current generation (durable). */
  sb_t sb;      /* as written in its slot(s); sb.gen, data_start, snap_end, first_seq */
  uint64_t end; /* append point; the file's size outside a compaction (I2) */
  uint64_t next_seq;
  bool slot_ok[2];  /* slot holds sb exactly (I1) */
  uint64_t punched; /* [SB_AREA, punched) is known to be holes */

  /* The open transaction: header space, records, trailer space at commit. */
  uint8_t *buf;
  size_t cap, len;
  uint32_t nrec;
  bool in_txn;

  /* An open compaction: the new generation's data so far. */
  bool compacting;
  uint64_t c_start, c_end, c_next_seq;

  bool broken;           /* a write failed and could not be undone, or the test seam fired */
  uint64_t fault_budget; /* test seam: bytes still allowed; UINT64_MAX: no limit */

  uint64_t commits, commit_bytes, compactions, deferred_failures;
  char last_error[128];
};

/* ---- little-endian helpers ------------------------------------------------------------- */

static inline void put16(uint8_t *p, uint16_t v) {
  v = htole16(v);
  memcpy(p, &v, 2);
}
static inline void put32(uint8_t *p, uint32_t v) {
  v = htole32(v);
  memcpy(p, &v, 4);
}
static inline void put64(uint8_t *p, uint64_t v) {
  v = htole64(v);
  memcpy(p, &v, 8);
}
static inline uint16_t get16(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return le16toh(v);
}
static inline uint32_t get32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return le32toh(v);
}
static inline uint64_t get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return le64toh(v);
}

static inline uint64_t round_up(uint64_t v, uint64_t a) {
  return (v + a - 1) / a * a;
}

static void set_why(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_why(char *why, size_t why_len, const char *fmt, ...) {
  if (!why || !why_len) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, why_len, fmt, ap);
  va_end(ap);
}

/* ---- CRC32C ---------------------------------------------------------------------------- */

#define CRC32C_POLY 0x82f63b78u /* Castagnoli, reflected */

static uint32_t crc_table[8][256];
static uint32_t (*crc_fn)(uint32_t, const void *, size_t);
static bool crc_hw;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (c & 1 ? CRC32C_POLY : 0);
    crc_table[0][i] = c;
  }
  for (int t = 1; t < 8; t++)
    for (int i = 0; i < 256; i++)
      crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
#if defined(__x86_64__)
  __builtin_cpu_init();
  crc_hw = __builtin_cpu_supports("sse4.2");
#endif
  crc_fn = crc_hw ? journal_crc32c_hw : journal_crc32c_sw;
}

uint32_t journal_crc32c_sw(uint32_t crc, const void *buf, size_t len) {
  const uint8_t *p = buf;
  pthread_once(&crc_once, crc_init);
  crc = ~crc;
  while (len >= 8) {
    uint32_t lo = get32(p) ^ crc, hi = get32(p + 4);
    crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
          crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xff] ^
          crc_table[2][(hi >> 8) & 0xff] ^ crc_table[1][(hi >> 16) & 0xff] ^
          crc_table[0][hi >> 24];
    p += 8;
    len -= 8;
  }
  while (len--)
    crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t journal_crc32c_hw(uint32_t crc, const void *buf,
                                                             size_t len) {
  const uint8_t *p = buf;
  uint64_t c = (uint32_t)~crc;
  while (len >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
    p += 8;
    len -= 8;
  }
  uint32_t c32 = (uint32_t)c;
  while (len--)
    c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}
#else
/* No crc32 instruction on this architecture: the "hardware" path is the table. */
uint32_t journal_crc32c_hw(uint32_t crc, const void *buf, size_t len) {
  return journal_crc32c_sw(crc, buf, len);
}
#endif

bool journal_crc32c_hw_available(void) {
  pthread_once(&crc_once, crc_init);
  return crc_hw;
}

uint32_t journal_crc32c(uint32_t crc, const void *buf, size_t len) {
  pthread_once(&crc_once, crc_init);
  return crc_fn(crc, buf, len);
}

/* ---- superblock slots ------------------------------------------------------------------ */

static void sb_encode(const sb_t *s, uint8_t out[SLOT_SIZE]) {
  memset(out, 0, SLOT_SIZE);
  put64(out + 0, SB_MAGIC);
  put32(out + 8, s->version);
  put32(out + 12, s->idlen);
  put64(out + 16, s->gen);
  put64(out + 24, s->data_start);
  put64(out + 32, s->snap_end);
  put64(out + 40, s->first_seq);
  memcpy(out + 48, s->id, s->idlen);
  put32(out + SLOT_CRC_OFF, journal_crc32c(0, out, SLOT_CRC_OFF));
}

/* 0, PP_ECORRUPT (not a valid slot) or PP_EVERSION (a valid slot of another format). */
static int sb_decode(const uint8_t in[SLOT_SIZE], sb_t *s, char *why, size_t why_len) {
  if (get64(in) != SB_MAGIC) return pp_corrupt(why, why_len, "no superblock magic");
  if (get32(in + SLOT_CRC_OFF) != journal_crc32c(0, in, SLOT_CRC_OFF))
    return pp_corrupt(why, why_len, "superblock crc mismatch");
  s->version = get32(in + 8);
  if (s->version != SB_VERSION) {
    set_why(why, why_len, "format version %" PRIu32 " (this daemon reads %u)", s->version,
            SB_VERSION);
    return PP_EVERSION;
  }
  s->idlen = get32(in + 12);
  s->gen = get64(in + 16);
  s->data_start = get64(in + 24);
  s->snap_end = get64(in + 32);
  s->first_seq = get64(in + 40);
  if (s->idlen > JOURNAL_IDENTITY_MAX)
    return pp_corrupt(why, why_len, "identity length %" PRIu32, s->idlen);
  for (size_t i = 48 + s->idlen; i < SLOT_CRC_OFF; i++)
    if (in[i]) return pp_corrupt(why, why_len, "non-zero padding at slot byte %zu", i);
  if (s->gen < 1) return pp_corrupt(why, why_len, "generation 0");
  if (s->data_start < SB_AREA)
    return pp_corrupt(why, why_len, "data start %" PRIu64 " inside the superblock area",
                      s->data_start);
  if (s->snap_end < s->data_start)
    return pp_corrupt(why, why_len, "snapshot end %" PRIu64 " before data start %" PRIu64,
                      s->snap_end, s->data_start);
  if (s->first_seq < 1) return pp_corrupt(why, why_len, "first sequence number 0");
  memset(s->id, 0, sizeof s->id);
  memcpy(s->id, in + 48, s->idlen);
  return 0;
}

/* ---- the write path (every change to the memfd goes through these three) --------------- */

static void set_error(journal_t *j, const char *what, int err) {
  snprintf(j->last_error, sizeof j->last_error, "%s: %s", what, strerror(err));
}

/* Writes n bytes at off, all of them or an error.  The test seam's budget cuts it short. */
static int jwrite(journal_t *j, const void *buf, size_t n, uint64_t off) {
  const uint8_t *p = buf;
  size_t allow = n;
  bool die = false;

  if (j->broken) return PP_EIO;
  if (j->fault_budget != UINT64_MAX) {
    if (n >= j->fault_budget) {
      allow = (size_t)j->fault_budget;
      die = true;
    }
    j->fault_budget -= allow;
  }
  while (allow) {
    ssize_t w = pwrite(j->fd, p, allow, (off_t)off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      set_error(j, "pwrite", w < 0 ? errno : ENOSPC);
      return PP_EOS;
    }
    p += w;
    off += (uint64_t)w;
    allow -= (size_t)w;
  }
  if (die) {
    j->broken = true;
    snprintf(j->last_error, sizeof j->last_error, "test seam: crashed inside a write");
    return PP_EIO;
  }
  return 0;
}

static int jtruncate(journal_t *j, uint64_t len) {
  if (j->broken) return PP_EIO;
  if (ftruncate(j->fd, (off_t)len) != 0) {
    set_error(j, "ftruncate", errno);
    return PP_EOS;
  }
  return 0;
}

static int jpunch(journal_t *j, uint64_t off, uint64_t len) {
  if (j->broken) return PP_EIO;
  if (!len) return 0;
  if (fallocate(j->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) !=
      0) {
    set_error(j, "fallocate(PUNCH_HOLE)", errno);
    return PP_EOS;
  }
  return 0;
}

/* After a failed write: cut the file back to the append point (I2), or refuse every later
 * write when that fails too. */
static void rollback_to(journal_t *j, uint64_t end) {
  if (j->broken) return;
  if (jtruncate(j, end) != 0) j->broken = true;
}

/* Frees [punched, data_start) rounded down to whole pages; a failure is deferred. */
static void punch_dead(journal_t *j) {
  uint64_t to = j->sb.data_start / j->align * j->align;
  if (to <= j->punched) return;
  if (jpunch(j, j->punched, to - j->punched) == 0)
    j->punched = to;
  else
    j->deferred_failures++;
}

static int write_slot(journal_t *j, int slot) {
  uint8_t raw[SLOT_SIZE];
  sb_encode(&j->sb, raw);
  return jwrite(j, raw, sizeof raw, slot_off[slot]);
}

/* ---- scanning a generation -------------------------------------------------------------- */

typedef struct gen_view {
  const uint8_t *p; /* the generation's bytes, from data_start */
  uint64_t avail;   /* readable bytes from data_start */
  uint64_t data_start;
  uint64_t gen, first_seq, snap_end;
  uint64_t align; /* where a compaction starts the next generation (journal_t.align) */
  void *map;
  size_t map_len;
} gen_view_t;

/* Generations start on this boundary: max(4096, the page size). */
static uint64_t journal_align(void) {
  long page = sysconf(_SC_PAGESIZE);
  return page > (long)SB_AREA ? (uint64_t)page : SB_AREA;
}

/* Maps [data_start, min(file size, limit)) read-only. */
static int view_map(int fd, const sb_t *s, uint64_t limit, gen_view_t *v, char *why,
                    size_t why_len) {
  struct stat st;
  memset(v, 0, sizeof *v);
  v->data_start = s->data_start;
  v->gen = s->gen;
  v->first_seq = s->first_seq;
  v->snap_end = s->snap_end;
  v->align = journal_align();
  if (fstat(fd, &st) != 0) {
    set_why(why, why_len, "fstat: %s", strerror(errno));
    return PP_EOS;
  }
  uint64_t size = (uint64_t)st.st_size;
  if (limit < size) size = limit;
  if (size <= s->data_start) return 0;
  uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  uint64_t moff = s->data_start / page * page;
  if (size - moff > SIZE_MAX) {
    set_why(why, why_len, "generation of %" PRIu64 " bytes cannot be mapped", size - moff);
    return PP_ERANGE;
  }
  v->map_len = (size_t)(size - moff);
  v->map = mmap(NULL, v->map_len, PROT_READ, MAP_SHARED, fd, (off_t)moff);
  if (v->map == MAP_FAILED) {
    v->map = NULL;
    set_why(why, why_len, "mmap of %zu bytes: %s", v->map_len, strerror(errno));
    return PP_EOS;
  }
  v->p = (const uint8_t *)v->map + (s->data_start - moff);
  v->avail = size - s->data_start;
  return 0;
}

static void view_unmap(gen_view_t *v) {
  if (v->map) munmap(v->map, v->map_len);
  v->map = NULL;
}

/* Why the transaction at relative offset pos is not valid, or NULL when it is. */
static const char *txn_invalid(const gen_view_t *v, uint64_t pos, uint64_t seq, char *buf,
                               size_t buflen, uint32_t *ret_len, uint32_t *ret_nrec) {
  uint64_t rem = v->avail - pos;
  const uint8_t *t = v->p + pos;

  if (rem < TXN_HDR + TXN_TRL) return "header cut off by the end of the file";
  uint32_t len = get32(t + 4), nrec = get32(t + 24);
  if (get32(t) != TXN_MAGIC) return "no transaction magic";
  if (len < TXN_HDR + TXN_TRL || len > JOURNAL_TXN_MAX) {
    snprintf(buf, buflen, "length %" PRIu32 " out of range", len);
    return buf;
  }
  if (len > rem) {
    snprintf(buf, buflen, "length %" PRIu32 " runs past the end of the file", len);
    return buf;
  }
  if (get32(t + len - 4) != TXN_END) return "no end marker (torn write)";
  if (get32(t + len - 8) != journal_crc32c(0, t, len - TXN_TRL)) return "crc mismatch";
  if (get64(t + 16) != v->gen) {
    snprintf(buf, buflen, "generation %" PRIu64 ", not %" PRIu64, get64(t + 16), v->gen);
    return buf;
  }
  if (get64(t + 8) != seq) {
    snprintf(buf, buflen, "sequence number %" PRIu64 ", expected %" PRIu64, get64(t + 8), seq);
    return buf;
  }
  if (get32(t + 28) != 0) return "reserved header bytes not zero";
  uint64_t q = TXN_HDR, body_end = len - TXN_TRL;
  for (uint32_t i = 0; i < nrec; i++) {
    if (body_end - q < REC_HDR) return "record header past the transaction's end";
    uint32_t rlen = get32(t + q + 4);
    if (body_end - q - REC_HDR < rlen) return "record payload past the transaction's end";
    q += REC_HDR + rlen;
  }
  if (q != body_end) return "records do not fill the transaction";
  *ret_len = len;
  *ret_nrec = nrec;
  return NULL;
}

/* Is v's [pos, avail) a prefix of a transaction of v's generation with sequence number seq,
 * as a write cut short by a fatal signal leaves it?  The kernel copies a write into tmpfs
 * page by page and checks for a fatal signal between pages, so the file then ends on a
 * 4 KiB boundary; the header bytes that made it must be the header's (magic, a length
 * reaching past the end of the file, the sequence number, the generation, the reserved
 * zero); the payload bytes cannot be checked (the crc is not there yet). */
static bool tail_is_torn(const gen_view_t *v, uint64_t pos, uint64_t seq) {
  uint64_t rem = v->avail - pos;
  uint8_t want[TXN_HDR];
  const uint8_t *t = v->p + pos;

  if (rem == 0 || (v->data_start + v->avail) % TORN_GRAIN != 0) return false;
  put32(want + 0, TXN_MAGIC);
  put64(want + 8, seq);
  put64(want + 16, v->gen);
  put32(want + 28, 0);
  for (uint64_t i = 0; i < rem && i < TXN_HDR; i++) {
    bool checked = i < 4 || (i >= 8 && i < 24) || i >= 28;
    if (checked && t[i] != want[i]) return false;
  }
  if (rem >= 8) {
    uint32_t len = get32(t + 4);
    if (len < TXN_HDR + TXN_TRL || len > JOURNAL_TXN_MAX || len <= rem) return false;
  }
  return true;
}

/* What the bytes after the generation's last valid transaction (at pos; seq the number
 * the next one would have had) are: see journal_tail_t. */
static journal_tail_t classify_tail(const gen_view_t *v, uint64_t pos, uint64_t seq) {
  uint64_t start, q;
  char buf[96];

  if (pos == v->avail) return JOURNAL_TAIL_NONE;
  if (tail_is_torn(v, pos, seq)) return JOURNAL_TAIL_TORN;
  /* An interrupted compaction: compact_begin extended the file with zeros to the next
   * boundary, and the snapshot's transactions (generation + 1, numbered on from seq)
   * follow. */
  start = round_up(v->data_start + pos, v->align) - v->data_start;
  for (q = pos; q < v->avail && q < start; q++)
    if (v->p[q]) return JOURNAL_TAIL_DAMAGED;
  if (q == v->avail) return JOURNAL_TAIL_SNAPSHOT;
  gen_view_t next = *v;
  next.gen = v->gen + 1;
  for (;;) {
    uint32_t len, nrec;
    if (q == next.avail) return JOURNAL_TAIL_SNAPSHOT;
    if (txn_invalid(&next, q, seq, buf, sizeof buf, &len, &nrec))
      return tail_is_torn(&next, q, seq) ? JOURNAL_TAIL_SNAPSHOT : JOURNAL_TAIL_DAMAGED;
    q += len;
    seq++;
  }
}

/* Walks the generation; with ops, delivers every valid transaction. */
static int view_scan(const gen_view_t *v, const journal_replay_ops_t *ops, void *ctx,
                     journal_scan_t *s, char *why, size_t why_len) {
  uint64_t pos = 0, seq = v->first_seq;
  char buf[96];

  s->generation = v->gen;
  s->first_seq = v->first_seq;
  s->stop_reason[0] = '\0';
  for (;;) {
    uint32_t len = 0, nrec = 0;
    if (pos == v->avail) break;
    const char *bad = txn_invalid(v, pos, seq, buf, sizeof buf, &len, &nrec);
    if (bad) {
      snprintf(s->stop_reason, sizeof s->stop_reason, "transaction at offset %" PRIu64 ": %s",
               v->data_start + pos, bad);
      break;
    }
    if (ops) {
      const uint8_t *t = v->p + pos;
      journal_txn_info_t info = {.seq = seq,
                                 .offset = v->data_start + pos,
                                 .nr_records = nrec,
                                 .snapshot = v->data_start + pos < v->snap_end};
      int rc = ops->txn_begin ? ops->txn_begin(&info, ctx) : 0;
      uint64_t q = TXN_HDR;
      for (uint32_t i = 0; rc == 0 && i < nrec; i++) {
        uint32_t rlen = get32(t + q + 4);
        rc = ops->record ? ops->record(get32(t + q), t + q + REC_HDR, rlen, ctx) : 0;
        q += REC_HDR + rlen;
      }
      if (rc == 0 && ops->txn_end) rc = ops->txn_end(&info, ctx);
      if (rc != 0) {
        set_why(why, why_len,
                "replay callback failed (%s) in transaction %" PRIu64 " at offset %" PRIu64,
                pp_err_name(rc), seq, info.offset);
        return rc;
      }
    }
    if (v->data_start + pos < v->snap_end) s->snapshot_txns++;
    s->txns++;
    s->records += nrec;
    pos += len;
    seq++;
  }
  s->next_seq = seq;
  s->bytes = pos;
  s->dropped_bytes = v->avail - pos;
  s->torn_tail = s->dropped_bytes > 0;
  s->snapshot_complete = v->data_start + pos >= v->snap_end;
  s->tail = classify_tail(v, pos, seq);
  return 0;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static journal_t *journal_new(int fd) {
  journal_t *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->fd = fd;
  j->align = journal_align();
  j->fault_budget = UINT64_MAX;
  j->punched = SB_AREA;
  return j;
}

int journal_create(const void *identity, size_t identity_len, journal_t **ret_j) {
  journal_t *j;
  int fd, rc;

  if (identity_len > JOURNAL_IDENTITY_MAX || (identity_len && !identity)) return PP_EINVAL;
  fd = memfd_create("pinpool-journal", MFD_CLOEXEC);
  if (fd < 0) return PP_EOS;
  j = journal_new(fd);
  if (!j) {
    close(fd);
    return PP_ENOPRIVMEM;
  }
  j->sb.version = SB_VERSION;
  j->sb.idlen = (uint32_t)identity_len;
  if (identity_len) memcpy(j->sb.id, identity, identity_len);
  j->sb.gen = 1;
  j->sb.data_start = j->sb.snap_end = j->align;
  j->sb.first_seq = 1;
  j->end = j->sb.data_start;
  j->next_seq = 1;
  if ((rc = write_slot(j, 0)) != 0 || (rc = write_slot(j, 1)) != 0 ||
      (rc = jtruncate(j, j->end)) != 0)
    goto fail;
  j->slot_ok[0] = j->slot_ok[1] = true;
  *ret_j = j;
  return 0;
fail:
  journal_close(j);
  return rc;
}

int journal_adopt(int fd, const void *expected_identity, size_t identity_len, journal_t **ret_j,
                  journal_scan_t *ret_scan, char *why, size_t why_len) {
  uint8_t area[SB_AREA];
  sb_t slot[2];
  int src[2];
  char reason[2][96];
  struct stat st;
  gen_view_t v = {0};
  journal_scan_t scan = {0};
  journal_t *j = NULL;
  int rc, w = -1;

  if (identity_len > JOURNAL_IDENTITY_MAX || (identity_len && !expected_identity)) {
    set_why(why, why_len, "identity of %zu bytes (at most %u)", identity_len,
            JOURNAL_IDENTITY_MAX);
    return PP_EINVAL;
  }
  if (fstat(fd, &st) != 0) {
    set_why(why, why_len, "fstat of fd %d: %s", fd, strerror(errno));
    return PP_EOS;
  }
  if (!S_ISREG(st.st_mode)) {
    set_why(why, why_len, "fd %d is not a regular file (a memfd)", fd);
    return PP_EINVAL;
  }

  /* The superblock area; bytes past the end of the file read as zeros. */
  memset(area, 0, sizeof area);
  size_t got = 0;
  while (got < sizeof area) {
    ssize_t r = pread(fd, area + got, sizeof area - got, (off_t)got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      set_why(why, why_len, "pread of the superblock: %s", strerror(errno));
      return PP_EOS;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  for (int i = 0; i < 2; i++) {
    src[i] = sb_decode(area + slot_off[i], &slot[i], reason[i], sizeof reason[i]);
    if (src[i] == 0) scan.slots_valid |= 1u << i;
  }
  /* The newest slot that passed its crc wins; one of another version stops us, since the
   * generation an older slot names may be gone. */
  for (int i = 0; i < 2; i++) {
    if (src[i] != 0 && src[i] != PP_EVERSION) continue;
    if (w < 0 || slot[i].gen > slot[w].gen) w = i;
  }
  if (w < 0) {
    set_why(why, why_len, "not a pinpool journal: slot A: %s; slot B: %s", reason[0],
            reason[1]);
    return PP_ECORRUPT;
  }
  if (src[w] == PP_EVERSION) {
    set_why(why, why_len, "superblock slot %c: %s", 'A' + w, reason[w]);
    return PP_EVERSION;
  }
  if (slot[w].idlen != identity_len ||
      (identity_len && memcmp(slot[w].id, expected_identity, identity_len) != 0)) {
    set_why(why, why_len,
            "journal belongs to another region (identity of %" PRIu32
            " bytes differs from the expected %zu bytes)",
            slot[w].idlen, identity_len);
    return PP_EINVAL;
  }

  if ((rc = view_map(fd, &slot[w], UINT64_MAX, &v, why, why_len)) != 0) return rc;
  view_scan(&v, NULL, NULL, &scan, NULL, 0);
  view_unmap(&v);

  j = journal_new(fd);
  if (!j) {
    set_why(why, why_len, "out of private memory");
    return PP_ENOPRIVMEM;
  }
  j->sb = slot[w];
  j->end = j->sb.data_start + scan.bytes;
  j->next_seq = scan.next_seq;
  /* I2: drop a torn tail (or what a cut journal lacks) before anything is appended. */
  if ((uint64_t)st.st_size != j->end && (rc = jtruncate(j, j->end)) != 0) {
    set_why(why, why_len, "%s", j->last_error);
    free(j);
    return rc;
  }
  /* Finish what an interrupted compaction left: the dead prefix, the stale slot. */
  punch_dead(j);
  j->slot_ok[w] = true;
  j->slot_ok[!w] =
      src[!w] == 0 && memcmp(area + slot_off[!w], area + slot_off[w], SLOT_SIZE) == 0;
  if (!j->slot_ok[!w]) {
    if (write_slot(j, !w) == 0)
      j->slot_ok[!w] = true;
    else
      j->deferred_failures++;
  }
  PP_VALIDATE(journal_check, j);
  if (ret_scan) *ret_scan = scan;
  *ret_j = j;
  return 0;
}

void journal_close(journal_t *j) {
  if (!j) return;
  journal_compact_abort(j); /* a half snapshot is cut off now rather than at adopt */
  if (j->fd >= 0) close(j->fd);
  free(j->buf);
  free(j);
}

int journal_fd(const journal_t *j) {
  return j->fd;
}

const char *journal_last_error(const journal_t *j) {
  return j->last_error;
}

const char *journal_tail_name(journal_tail_t t) {
  switch (t) {
  case JOURNAL_TAIL_NONE: return "none";
  case JOURNAL_TAIL_TORN: return "torn";
  case JOURNAL_TAIL_SNAPSHOT: return "snapshot";
  case JOURNAL_TAIL_DAMAGED: return "damaged";
  }
  return "?";
}

/* ---- transactions ------------------------------------------------------------------------ */

static int buf_reserve(journal_t *j, size_t need) {
  if (need <= j->cap) return 0;
  size_t ncap = j->cap ? j->cap : 4096;
  while (ncap < need)
    ncap *= 2;
  uint8_t *nb = realloc(j->buf, ncap);
  if (!nb) return PP_ENOPRIVMEM;
  j->buf = nb;
  j->cap = ncap;
  return 0;
}

int journal_txn_begin(journal_t *j) {
  if (j->in_txn) return PP_EBUSY;
  int rc = buf_reserve(j, TXN_HDR + TXN_TRL);
  if (rc) return rc;
  j->len = TXN_HDR;
  j->nrec = 0;
  j->in_txn = true;
  return 0;
}

int journal_txn_add(journal_t *j, uint32_t type, const void *payload, size_t len) {
  if (!j->in_txn || (len && !payload)) return PP_EINVAL;
  if (len > JOURNAL_TXN_MAX || j->len + REC_HDR + len + TXN_TRL > JOURNAL_TXN_MAX)
    return PP_ERANGE;
  int rc = buf_reserve(j, j->len + REC_HDR + len + TXN_TRL);
  if (rc) return rc;
  put32(j->buf + j->len, type);
  put32(j->buf + j->len + 4, (uint32_t)len);
  if (len) memcpy(j->buf + j->len + REC_HDR, payload, len);
  j->len += REC_HDR + len;
  j->nrec++;
  return 0;
}

void journal_txn_abort(journal_t *j) {
  j->in_txn = false;
}

int journal_txn_commit(journal_t *j, uint64_t *ret_seq) {
  if (!j->in_txn) return PP_EINVAL;
  j->in_txn = false;

  uint64_t *endp = j->compacting ? &j->c_end : &j->end;
  uint64_t *seqp = j->compacting ? &j->c_next_seq : &j->next_seq;
  uint64_t gen = j->compacting ? j->sb.gen + 1 : j->sb.gen;
  uint8_t *t = j->buf;
  uint32_t len = (uint32_t)(j->len + TXN_TRL);

  put32(t + 0, TXN_MAGIC);
  put32(t + 4, len);
  put64(t + 8, *seqp);
  put64(t + 16, gen);
  put32(t + 24, j->nrec);
  put32(t + 28, 0);
  put32(t + j->len, journal_crc32c(0, t, j->len));
  put32(t + j->len + 4, TXN_END);
  int rc = jwrite(j, t, len, *endp);
  if (rc) {
    rollback_to(j, *endp);
    return rc;
  }
  *endp += len;
  if (ret_seq) *ret_seq = *seqp;
  (*seqp)++;
  j->commits++;
  j->commit_bytes += len;
  return 0;
}

/* ---- replay ------------------------------------------------------------------------------ */

int journal_replay(journal_t *j, const journal_replay_ops_t *ops, void *ctx,
                   journal_scan_t *ret_scan, char *why, size_t why_len) {
  gen_view_t v;
  journal_scan_t scan = {0};
  int rc;

  scan.slots_valid = (j->slot_ok[0] ? 1u : 0u) | (j->slot_ok[1] ? 2u : 0u);
  if ((rc = view_map(j->fd, &j->sb, j->end, &v, why, why_len)) != 0) return rc;
  rc = view_scan(&v, ops, ctx, &scan, why, why_len);
  view_unmap(&v);
  if (rc == 0 && ret_scan) *ret_scan = scan;
  return rc;
}

/* ---- compaction -------------------------------------------------------------------------- */

int journal_compact_begin(journal_t *j) {
  if (j->in_txn || j->compacting) return PP_EBUSY;
  uint64_t start = round_up(j->end, j->align);
  /* The file reaches the new generation's start even when its snapshot stays empty, so a
   * superblock never names a data start past the end of the file. */
  int rc = start > j->end ? jtruncate(j, start) : 0;
  if (rc) return rc;
  j->c_start = j->c_end = start;
  j->c_next_seq = j->next_seq;
  j->compacting = true;
  return 0;
}

void journal_compact_abort(journal_t *j) {
  if (!j->compacting) return;
  j->compacting = false;
  j->in_txn = false;
  rollback_to(j, j->end);
}

static void shrink_buf(journal_t *j) {
  if (j->cap <= TXN_BUF_KEEP) return;
  uint8_t *nb = realloc(j->buf, TXN_BUF_KEEP);
  if (!nb) return;
  j->buf = nb;
  j->cap = TXN_BUF_KEEP;
}

int journal_compact_commit(journal_t *j) {
  if (!j->compacting) return PP_EINVAL;
  if (j->in_txn) return PP_EBUSY;

  sb_t old = j->sb;
  /* The flip goes to a slot that does not hold the current generation alone (I1). */
  int s = !j->slot_ok[0] ? 0 : !j->slot_ok[1] ? 1 : (int)((old.gen + 1) & 1);
  j->sb.gen = old.gen + 1;
  j->sb.data_start = j->c_start;
  j->sb.snap_end = j->c_end;
  j->sb.first_seq = j->next_seq;
  j->slot_ok[s] = false;
  int rc = write_slot(j, s);
  if (rc) {
    /* Torn or failed: the other slot still names the old generation.  Put this one back
     * when we can (the test seam's crash cannot). */
    j->sb = old;
    j->compacting = false;
    rollback_to(j, j->end);
    if (!j->broken && write_slot(j, s) == 0) j->slot_ok[s] = true;
    shrink_buf(j);
    return rc;
  }
  /* The new generation is current and durable. */
  j->slot_ok[s] = true;
  j->slot_ok[!s] = false;
  j->end = j->c_end;
  j->next_seq = j->c_next_seq;
  j->compacting = false;
  j->compactions++;
  punch_dead(j);
  if (write_slot(j, !s) == 0)
    j->slot_ok[!s] = true;
  else
    j->deferred_failures++;
  shrink_buf(j);
  PP_VALIDATE(journal_check, j);
  return 0;
}

bool journal_should_compact(const journal_t *j) {
  uint64_t log = j->end - j->sb.snap_end, snap = j->sb.snap_end - j->sb.data_start;
  uint64_t limit = 2 * snap > JOURNAL_COMPACT_MIN ? 2 * snap : JOURNAL_COMPACT_MIN;
  return log > limit;
}

/* ---- state ------------------------------------------------------------------------------- */

void journal_get_stats(const journal_t *j, journal_stats_t *ret_stats) {
  journal_stats_t s = {
      .generation = j->sb.gen,
      .data_start = j->sb.data_start,
      .snapshot_end = j->sb.snap_end,
      .end = j->end,
      .next_seq = j->next_seq,
      .live_bytes = j->end - j->sb.data_start,
      .log_bytes = j->end - j->sb.snap_end,
      .commits = j->commits,
      .commit_bytes = j->commit_bytes,
      .compactions = j->compactions,
      .deferred_failures = j->deferred_failures,
  };
  *ret_stats = s;
}

int journal_check(journal_t *j, char *why, size_t why_len) {
  uint8_t raw[SLOT_SIZE], want[SLOT_SIZE];
  struct stat st;
  gen_view_t v;
  journal_scan_t scan = {0};
  char r[96];
  int rc;

  if (!j->slot_ok[0] && !j->slot_ok[1])
    return pp_corrupt(why, why_len, "no superblock slot holds the current generation");
  sb_encode(&j->sb, want);
  for (int i = 0; i < 2; i++) {
    if (!j->slot_ok[i]) continue;
    if (pread(j->fd, raw, sizeof raw, (off_t)slot_off[i]) != (ssize_t)sizeof raw)
      return pp_corrupt(why, why_len, "slot %c unreadable", 'A' + i);
    sb_t s;
    if (sb_decode(raw, &s, r, sizeof r) != 0)
      return pp_corrupt(why, why_len, "slot %c: %s", 'A' + i, r);
    if (memcmp(raw, want, sizeof raw) != 0)
      return pp_corrupt(why, why_len, "slot %c does not hold generation %" PRIu64, 'A' + i,
                        j->sb.gen);
  }
  if (fstat(j->fd, &st) != 0) return pp_corrupt(why, why_len, "fstat: %s", strerror(errno));
  uint64_t file_end = j->compacting ? j->c_end : j->end;
  if ((uint64_t)st.st_size != file_end)
    return pp_corrupt(why, why_len, "file size %" PRIu64 " is not the append point %" PRIu64,
                      (uint64_t)st.st_size, file_end);
  if (j->end < j->sb.snap_end)
    return pp_corrupt(why, why_len, "append point %" PRIu64 " before snapshot end %" PRIu64,
                      j->end, j->sb.snap_end);
  if ((rc = view_map(j->fd, &j->sb, j->end, &v, r, sizeof r)) != 0)
    return pp_corrupt(why, why_len, "cannot map the generation: %s", r);
  view_scan(&v, NULL, NULL, &scan, NULL, 0);
  view_unmap(&v);
  if (scan.torn_tail || j->sb.data_start + scan.bytes != j->end)
    return pp_corrupt(why, why_len,
                      "generation %" PRIu64 " stops at %" PRIu64 " before %" PRIu64 ": %s",
                      j->sb.gen, j->sb.data_start + scan.bytes, j->end, scan.stop_reason);
  if (scan.next_seq != j->next_seq)
    return pp_corrupt(why, why_len, "next sequence number %" PRIu64 ", scan says %" PRIu64,
                      j->next_seq, scan.next_seq);
  if (!scan.snapshot_complete)
    return pp_corrupt(why, why_len, "snapshot end %" PRIu64 " not on a transaction boundary",
                      j->sb.snap_end);
  return 0;
}

/* ---- test seam ----------------------------------------------------------------------------
 */

void journal_fault_after(journal_t *j, uint64_t bytes) {
  j->fault_budget = bytes;
}

/* ---- payload encoding ---------------------------------------------------------------------
 */

/* Stands in for a NULL buffer, so that no arithmetic is ever done on a null pointer. */
static uint8_t no_bytes[1];

void journal_enc_init(journal_enc_t *e, void *buf, size_t cap) {
  e->buf = buf ? buf : no_bytes;
  e->cap = buf ? cap : 0;
  e->len = 0;
  e->err = 0;
}

/* Room for n more bytes, or the sticky error. */
static uint8_t *enc_take(journal_enc_t *e, size_t n) {
  if (e->err) return NULL;
  if (e->cap - e->len < n) {
    e->err = PP_ERANGE;
    return NULL;
  }
  uint8_t *p = e->buf + e->len;
  e->len += n;
  return p;
}

void journal_enc_u8(journal_enc_t *e, uint8_t v) {
  uint8_t *p = enc_take(e, 1);
  if (p) *p = v;
}
void journal_enc_u16(journal_enc_t *e, uint16_t v) {
  uint8_t *p = enc_take(e, 2);
  if (p) put16(p, v);
}
void journal_enc_u32(journal_enc_t *e, uint32_t v) {
  uint8_t *p = enc_take(e, 4);
  if (p) put32(p, v);
}
void journal_enc_u64(journal_enc_t *e, uint64_t v) {
  uint8_t *p = enc_take(e, 8);
  if (p) put64(p, v);
}
void journal_enc_bytes(journal_enc_t *e, const void *src, size_t n) {
  if (n && !src) {
    if (!e->err) e->err = PP_EINVAL;
    return;
  }
  uint8_t *p = enc_take(e, n);
  if (p && n) memcpy(p, src, n);
}
void journal_enc_str(journal_enc_t *e, const void *src, size_t n) {
  if (n > UINT32_MAX) {
    if (!e->err) e->err = PP_ERANGE;
    return;
  }
  if (e->err) return;
  if (e->cap - e->len < 4 + n) { /* all or nothing: no length without its bytes */
    e->err = PP_ERANGE;
    return;
  }
  journal_enc_u32(e, (uint32_t)n);
  journal_enc_bytes(e, src, n);
}

int journal_txn_add_enc(journal_t *j, uint32_t type, const journal_enc_t *e) {
  if (e->err) return e->err;
  return journal_txn_add(j, type, e->buf, e->len);
}

void journal_dec_init(journal_dec_t *d, const void *buf, size_t len) {
  d->buf = buf ? buf : no_bytes;
  d->len = buf ? len : 0;
  d->off = 0;
  d->err = 0;
}

static const uint8_t *dec_take(journal_dec_t *d, size_t n) {
  if (d->err) return NULL;
  if (d->len - d->off < n) {
    d->err = PP_ECORRUPT;
    return NULL;
  }
  const uint8_t *p = d->buf + d->off;
  d->off += n;
  return p;
}

uint8_t journal_dec_u8(journal_dec_t *d) {
  const uint8_t *p = dec_take(d, 1);
  return p ? *p : 0;
}
uint16_t journal_dec_u16(journal_dec_t *d) {
  const uint8_t *p = dec_take(d, 2);
  return p ? get16(p) : 0;
}
uint32_t journal_dec_u32(journal_dec_t *d) {
  const uint8_t *p = dec_take(d, 4);
  return p ? get32(p) : 0;
}
uint64_t journal_dec_u64(journal_dec_t *d) {
  const uint8_t *p = dec_take(d, 8);
  return p ? get64(p) : 0;
}
const void *journal_dec_bytes(journal_dec_t *d, size_t n) {
  return dec_take(d, n);
}

const void *journal_dec_str(journal_dec_t *d, size_t *ret_len) {
  size_t save = d->off;
  uint32_t n = journal_dec_u32(d);
  if (d->err) return NULL;
  const void *p = dec_take(d, n);
  if (!p) {
    d->off = save;
    return NULL;
  }
  *ret_len = n;
  return p;
}

int journal_dec_cstr(journal_dec_t *d, char *dst, size_t dst_size) {
  size_t n = 0;
  if (dst && dst_size) dst[0] = '\0';
  const char *p = journal_dec_str(d, &n);
  if (!p) return PP_ECORRUPT;
  if (!dst || n >= dst_size || memchr(p, '\0', n)) {
    d->err = PP_ECORRUPT;
    return PP_ECORRUPT;
  }
  memcpy(dst, p, n);
  dst[n] = '\0';
  return 0;
}

int journal_dec_finish(const journal_dec_t *d) {
  return d->err || d->off != d->len ? PP_ECORRUPT : 0;
}
