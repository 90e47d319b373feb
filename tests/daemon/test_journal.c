/*
 * test_journal.c — the crash journal (daemon/journal.c) on its own, no daemon.
 *
 * What a restarted pinpoold may trust: replay hands back exactly the transactions that were
 * committed, whole, in order, with their boundaries — whatever byte the previous process
 * died at, whatever single byte was damaged, across compactions and crashes inside them.
 * The tests compare a replay log (every txn_begin, record and txn_end callback, serialized)
 * against the expected log of what was committed; "the first k transactions" is a prefix
 * of that log.  Torn writes come from the journal's test seam (journal_fault_after: the
 * process "dies" after a given number of bytes) or from copying a prefix of the memfd into
 * a fresh one.  Also: CRC32C against the RFC 3720 vectors on both paths, the payload
 * encoders, the refusals of adopt (identity, garbage, versions), compaction freeing memory,
 * a real write error, and a randomized model with crashes and restarts.
 */
#define _GNU_SOURCE /* memfd_create */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "journal.h"
#include "pinpool_err.h"

/* An identity as the daemon will make it: the region's random id, then what identifies the
 * region memfd. */
static const uint8_t ID[40] = {0x3c, 0x91, 0x5e, 0x07, 0xaa, 0x12, 0x64, 0xf0, 0x9d, 0x21,
                               0x4b, 0x88, 0x17, 0xc3, 0x6e, 0x05, 1,    0,    0,    0,
                               0,    0,    0,    0,    0x42, 0x17, 0,    0,    0,    0,
                               0,    0,    0,    0,    0x20, 0,    0,    0,    0,    0};

/* ---- helpers ---------------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static uint64_t rng_below(uint64_t *s, uint64_t n) {
  return n ? rng_next(s) % n : 0;
}

static uint8_t *read_all(int fd, size_t *ret_len) {
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  size_t n = (size_t)st.st_size;
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  assert_int_equal(pread(fd, p, n, 0), (ssize_t)n);
  *ret_len = n;
  return p;
}

static int memfd_with(const uint8_t *p, size_t n) {
  int fd = memfd_create("journal-copy", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  assert_true(fd >= 0);
  if (n) assert_int_equal(pwrite(fd, p, n, 0), (ssize_t)n);
  return fd;
}

static uint64_t file_size(int fd) {
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  return (uint64_t)st.st_size;
}

static uint64_t file_blocks_bytes(int fd) {
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  return (uint64_t)st.st_blocks * 512;
}

static journal_t *create_journal(void) {
  journal_t *j = NULL;
  assert_int_equal(journal_create(ID, sizeof ID, &j), 0);
  return j;
}

static void check_journal(journal_t *j) {
  char why[256] = "";
  int rc = journal_check(j, why, sizeof why);
  if (rc) fail_msg("journal_check: %s", why);
}

static journal_t *adopt_ok(int fd, journal_scan_t *scan) {
  journal_t *j = NULL;
  char why[256] = "";
  int rc = journal_adopt(fd, ID, sizeof ID, &j, scan, why, sizeof why);
  if (rc) fail_msg("journal_adopt: %s: %s", pp_err_name(rc), why);
  check_journal(j);
  return j;
}

/* What a crashed daemon leaves: the fd store's copy of the fd, adopted by the next one. */
static journal_t *restart(journal_t *j, journal_scan_t *scan) {
  int fd = dup(journal_fd(j));
  assert_true(fd >= 0);
  journal_close(j);
  return adopt_ok(fd, scan);
}

/* ---- replay logs ------------------------------------------------------------------------ */

/* Every callback, serialized: 'B' seq nrec snapshot | 'R' type len payload | 'E' seq. */
typedef struct rlog {
  uint8_t *p;
  size_t len, cap;
  uint64_t txns, records;
  bool in_txn;
  int fail_at; /* the record callback fails with PP_ENOPRIVMEM at this record; -1 never */
} rlog_t;

static void rl_init(rlog_t *l) {
  memset(l, 0, sizeof *l);
  l->fail_at = -1;
}
static void rl_fini(rlog_t *l) {
  free(l->p);
  rl_init(l);
}
static void rl_put(rlog_t *l, const void *p, size_t n) {
  if (l->len + n > l->cap) {
    size_t ncap = l->cap ? l->cap : 1024;
    while (ncap < l->len + n)
      ncap *= 2;
    l->p = realloc(l->p, ncap);
    assert_non_null(l->p);
    l->cap = ncap;
  }
  if (n) memcpy(l->p + l->len, p, n);
  l->len += n;
}
static void rl_begin(rlog_t *l, uint64_t seq, uint32_t nrec, bool snapshot) {
  uint8_t tag = 'B', snap = snapshot;
  rl_put(l, &tag, 1);
  rl_put(l, &seq, 8);
  rl_put(l, &nrec, 4);
  rl_put(l, &snap, 1);
}
static void rl_rec(rlog_t *l, uint32_t type, const void *p, size_t n) {
  uint8_t tag = 'R';
  uint32_t len = (uint32_t)n;
  rl_put(l, &tag, 1);
  rl_put(l, &type, 4);
  rl_put(l, &len, 4);
  rl_put(l, p, n);
}
static void rl_end(rlog_t *l, uint64_t seq) {
  uint8_t tag = 'E';
  rl_put(l, &tag, 1);
  rl_put(l, &seq, 8);
}

static int cb_begin(const journal_txn_info_t *t, void *ctx) {
  rlog_t *l = ctx;
  if (l->in_txn) return PP_EINTERNAL; /* boundaries must nest */
  l->in_txn = true;
  rl_begin(l, t->seq, t->nr_records, t->snapshot);
  return 0;
}
static int cb_rec(uint32_t type, const void *payload, size_t len, void *ctx) {
  rlog_t *l = ctx;
  if (!l->in_txn) return PP_EINTERNAL;
  if (l->fail_at >= 0 && l->records == (uint64_t)l->fail_at) return PP_ENOPRIVMEM;
  l->records++;
  rl_rec(l, type, payload, len);
  return 0;
}
static int cb_end(const journal_txn_info_t *t, void *ctx) {
  rlog_t *l = ctx;
  if (!l->in_txn) return PP_EINTERNAL;
  l->in_txn = false;
  l->txns++;
  rl_end(l, t->seq);
  return 0;
}
static const journal_replay_ops_t log_ops = {cb_begin, cb_rec, cb_end};

static void replay_log(journal_t *j, rlog_t *l, journal_scan_t *scan) {
  char why[256] = "";
  journal_scan_t s;
  rl_init(l);
  int rc = journal_replay(j, &log_ops, l, &s, why, sizeof why);
  if (rc) fail_msg("journal_replay: %s: %s", pp_err_name(rc), why);
  assert_false(l->in_txn);
  assert_int_equal(s.txns, l->txns);
  assert_int_equal(s.records, l->records);
  if (scan) *scan = s;
}

/* What was committed to the current generation: its expected log, the log's length and
 * the file offset after each transaction. */
typedef struct hist {
  rlog_t exp;
  size_t n, cap;
  size_t *bound; /* exp.len after txn i; bound[0] = 0 */
  uint64_t *end; /* file offset after txn i; end[0] = data_start */
  uint64_t *seq; /* seq of txn i (1-based index) */
} hist_t;

static void hist_reset(hist_t *h, uint64_t data_start) {
  rl_fini(&h->exp);
  h->n = 0;
  if (!h->cap) {
    h->cap = 64;
    h->bound = malloc(h->cap * sizeof *h->bound);
    h->end = malloc(h->cap * sizeof *h->end);
    h->seq = malloc(h->cap * sizeof *h->seq);
  }
  h->bound[0] = 0;
  h->end[0] = data_start;
  h->seq[0] = 0;
}
static void hist_fini(hist_t *h) {
  rl_fini(&h->exp);
  free(h->bound);
  free(h->end);
  free(h->seq);
  memset(h, 0, sizeof *h);
}
static void hist_push(hist_t *h, uint64_t end, uint64_t seq) {
  if (h->n + 2 > h->cap) {
    h->cap *= 2;
    h->bound = realloc(h->bound, h->cap * sizeof *h->bound);
    h->end = realloc(h->end, h->cap * sizeof *h->end);
    h->seq = realloc(h->seq, h->cap * sizeof *h->seq);
  }
  h->n++;
  h->bound[h->n] = h->exp.len;
  h->end[h->n] = end;
  h->seq[h->n] = seq;
}

/* dst := the first k transactions of src. */
static void hist_copy_prefix(hist_t *dst, const hist_t *src, size_t k) {
  hist_reset(dst, src->end[0]);
  for (size_t i = 1; i <= k; i++) {
    rl_put(&dst->exp, src->exp.p + src->bound[i - 1], src->bound[i] - src->bound[i - 1]);
    hist_push(dst, src->end[i], src->seq[i]);
  }
}

/* Replay must equal exactly the first k committed transactions. */
static void assert_log_is_prefix(const rlog_t *got, const hist_t *h, size_t k) {
  assert_true(k <= h->n);
  if (got->len != h->bound[k] || (got->len && memcmp(got->p, h->exp.p, got->len) != 0))
    fail_msg("replay (%zu bytes, %" PRIu64 " txns) is not the first %zu committed txns "
             "(%zu bytes)",
             got->len, got->txns, k, h->bound[k]);
}

/* A transaction of nrec records of pseudo-random types and sizes up to max_size bytes;
 * committed and recorded in h (when commit succeeds).  Returns commit's result. */
static int commit_random(journal_t *j, hist_t *h, uint64_t *rng, uint32_t max_rec,
                         size_t max_size, bool snapshot) {
  static uint8_t payload[1 << 17];
  uint32_t nrec = (uint32_t)rng_below(rng, max_rec + 1);
  rlog_t exp;
  rl_init(&exp);
  assert_int_equal(journal_txn_begin(j), 0);
  for (uint32_t i = 0; i < nrec; i++) {
    size_t n = (size_t)rng_below(rng, max_size + 1);
    uint32_t type = (uint32_t)rng_next(rng);
    uint64_t x = rng_next(rng);
    for (size_t b = 0; b < n; b++)
      payload[b] = (uint8_t)(x + b * 131 + (b >> 7));
    assert_int_equal(journal_txn_add(j, type, payload, n), 0);
    rl_rec(&exp, type, payload, n);
  }
  uint64_t seq = 0;
  int rc = journal_txn_commit(j, &seq);
  if (rc == 0) {
    journal_stats_t st;
    journal_get_stats(j, &st);
    rl_begin(&h->exp, seq, nrec, snapshot);
    rl_put(&h->exp, exp.p, exp.len);
    rl_end(&h->exp, seq);
    if (snapshot) { /* during a compaction the append point is the snapshot's */
      hist_push(h, 0, seq);
    } else {
      hist_push(h, st.end, seq);
    }
  }
  rl_fini(&exp);
  return rc;
}

/* A journal with n random transactions of up to 4 records of up to max_size bytes. */
static journal_t *build(hist_t *h, uint64_t seed, size_t n, size_t max_size) {
  journal_t *j = create_journal();
  journal_stats_t st;
  journal_get_stats(j, &st);
  hist_reset(h, st.data_start);
  for (size_t i = 0; i < n; i++)
    assert_int_equal(commit_random(j, h, &seed, 4, max_size, false), 0);
  return j;
}

/* ---- CRC32C ------------------------------------------------------------------------------ */

typedef uint32_t (*crc_fn_t)(uint32_t, const void *, size_t);

static void check_crc_vectors(crc_fn_t crc) {
  uint8_t b[48];
  assert_int_equal(crc(0, "123456789", 9), 0xe3069283u);
  assert_int_equal(crc(0, "", 0), 0);
  /* RFC 3720 B.4 */
  memset(b, 0, 32);
  assert_int_equal(crc(0, b, 32), 0x8a9136aau);
  memset(b, 0xff, 32);
  assert_int_equal(crc(0, b, 32), 0x62a8ab43u);
  for (int i = 0; i < 32; i++)
    b[i] = (uint8_t)i;
  assert_int_equal(crc(0, b, 32), 0x46dd794eu);
  for (int i = 0; i < 32; i++)
    b[i] = (uint8_t)(31 - i);
  assert_int_equal(crc(0, b, 32), 0x113fdb5cu);
  static const uint8_t iscsi_read[48] = {
      0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  assert_int_equal(crc(0, iscsi_read, 48), 0xd9963a56u);
  /* Running: split anywhere, same result. */
  for (size_t cut = 0; cut <= 9; cut++)
    assert_int_equal(crc(crc(0, "123456789", cut), "123456789" + cut, 9 - cut), 0xe3069283u);
}

static void crc32c_table_path_matches_rfc3720_vectors(void **state) {
  check_crc_vectors(journal_crc32c_sw);
}

static void crc32c_sse42_path_matches_rfc3720_vectors(void **state) {
  if (!journal_crc32c_hw_available()) {
    printf("skipped: this CPU has no SSE4.2 crc32 instruction\n");
    skip();
  }
  check_crc_vectors(journal_crc32c_hw);
  check_crc_vectors(journal_crc32c);
}

static void crc32c_paths_agree_at_every_length_and_alignment(void **state) {
  static uint8_t buf[600];
  uint64_t rng = 7;
  for (size_t i = 0; i < sizeof buf; i++)
    buf[i] = (uint8_t)rng_next(&rng);
  for (size_t off = 0; off < 16; off++)
    for (size_t len = 0; len + off <= 520; len++) {
      uint32_t seed = (uint32_t)rng_next(&rng);
      uint32_t sw = journal_crc32c_sw(seed, buf + off, len);
      assert_int_equal(journal_crc32c(seed, buf + off, len), sw);
      if (journal_crc32c_hw_available())
        assert_int_equal(journal_crc32c_hw(seed, buf + off, len), sw);
    }
}

/* ---- payload encoding -------------------------------------------------------------------- */

static void encoders_and_decoders_round_trip_every_type(void **state) {
  uint8_t buf[64];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u8(&e, 0xab);
  journal_enc_u16(&e, 0xbeef);
  journal_enc_u32(&e, 0xdeadbeefu);
  journal_enc_u64(&e, 0x0123456789abcdefull);
  journal_enc_bytes(&e, "token16bytes....", 16);
  journal_enc_str(&e, "rx-ring", 7);
  journal_enc_str(&e, NULL, 0);
  assert_int_equal(e.err, 0);
  assert_int_equal(e.len, 1 + 2 + 4 + 8 + 16 + 4 + 7 + 4);
  /* Little-endian on the wire, whatever the host. */
  assert_int_equal(buf[1], 0xef);
  assert_int_equal(buf[2], 0xbe);
  assert_int_equal(buf[7], 0xef);

  uint8_t *exact = malloc(e.len); /* exactly the payload: ASan sees any overread */
  memcpy(exact, buf, e.len);
  journal_dec_t d;
  journal_dec_init(&d, exact, e.len);
  assert_int_equal(journal_dec_u8(&d), 0xab);
  assert_int_equal(journal_dec_u16(&d), 0xbeef);
  assert_int_equal(journal_dec_u32(&d), 0xdeadbeefu);
  assert_true(journal_dec_u64(&d) == 0x0123456789abcdefull);
  assert_memory_equal(journal_dec_bytes(&d, 16), "token16bytes....", 16);
  char name[8];
  assert_int_equal(journal_dec_cstr(&d, name, sizeof name), 0);
  assert_string_equal(name, "rx-ring");
  size_t n = 99;
  assert_non_null(journal_dec_str(&d, &n));
  assert_int_equal(n, 0);
  assert_int_equal(journal_dec_finish(&d), 0);
  free(exact);
}

static void encoder_overflow_is_sticky_and_writes_nothing_past_cap(void **state) {
  uint8_t buf[16];
  memset(buf, 0x5a, sizeof buf);
  journal_enc_t e;
  journal_enc_init(&e, buf, 10);
  journal_enc_u64(&e, 1);
  journal_enc_u32(&e, 2); /* does not fit */
  assert_int_equal(e.err, PP_ERANGE);
  journal_enc_u8(&e, 3); /* would fit, but the error is sticky */
  assert_int_equal(e.len, 8);
  for (size_t i = 8; i < sizeof buf; i++)
    assert_int_equal(buf[i], 0x5a);
  journal_enc_init(&e, buf, 10);
  journal_enc_str(&e, "abcdefghij", 10); /* length + bytes or nothing */
  assert_int_equal(e.err, PP_ERANGE);
  assert_int_equal(e.len, 0);

  journal_t *j = create_journal();
  assert_int_equal(journal_txn_begin(j), 0);
  journal_enc_init(&e, buf, 2);
  journal_enc_u32(&e, 7);
  assert_int_equal(journal_txn_add_enc(j, 1, &e), PP_ERANGE);
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u32(&e, 7);
  assert_int_equal(journal_txn_add_enc(j, 1, &e), 0);
  assert_int_equal(journal_txn_commit(j, NULL), 0);
  journal_close(j);
}

static void decoders_fail_cleanly_on_short_or_malformed_payloads(void **state) {
  /* Every read from every truncation of a valid payload: fails, never overreads. */
  uint8_t full[32];
  journal_enc_t e;
  journal_enc_init(&e, full, sizeof full);
  journal_enc_u16(&e, 5);
  journal_enc_u64(&e, 6);
  journal_enc_str(&e, "name", 4);
  for (size_t cut = 0; cut < e.len; cut++) {
    uint8_t *p = malloc(cut ? cut : 1);
    memcpy(p, full, cut);
    journal_dec_t d;
    journal_dec_init(&d, p, cut);
    uint16_t a = journal_dec_u16(&d);
    uint64_t b = journal_dec_u64(&d);
    size_t n = 0;
    const void *s = journal_dec_str(&d, &n);
    assert_null(s);
    assert_int_equal(d.err, PP_ECORRUPT);
    assert_int_equal(journal_dec_finish(&d), PP_ECORRUPT);
    if (cut < 2) assert_int_equal(a, 0);
    if (cut < 10) assert_true(b == 0);
    free(p);
  }
  /* A length that claims more than is there. */
  uint8_t lie[6] = {0xff, 0xff, 0xff, 0x7f, 'a', 'b'};
  journal_dec_t d;
  size_t n = 0;
  journal_dec_init(&d, lie, sizeof lie);
  assert_null(journal_dec_str(&d, &n));
  assert_int_equal(journal_dec_finish(&d), PP_ECORRUPT);
  /* Strings that cannot be C strings, or do not fit. */
  uint8_t nul[7] = {3, 0, 0, 0, 'a', 0, 'b'};
  char out[8] = "junk";
  journal_dec_init(&d, nul, sizeof nul);
  assert_int_equal(journal_dec_cstr(&d, out, sizeof out), PP_ECORRUPT);
  assert_string_equal(out, "");
  uint8_t longer[12] = {8, 0, 0, 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'};
  journal_dec_init(&d, longer, sizeof longer);
  assert_int_equal(journal_dec_cstr(&d, out, sizeof out), PP_ECORRUPT); /* 8 + NUL > 8 */
  /* Trailing bytes are malformed too. */
  journal_dec_init(&d, longer, sizeof longer);
  journal_dec_u32(&d);
  assert_int_equal(d.err, 0);
  assert_int_equal(journal_dec_finish(&d), PP_ECORRUPT);
}

/* ---- transactions and replay ------------------------------------------------------------ */

static void round_trip_replays_every_record_in_order_with_boundaries(void **state) {
  hist_t h = {0};
  uint64_t rng = 42;
  journal_t *j = create_journal();
  journal_stats_t st;
  journal_get_stats(j, &st);
  hist_reset(&h, st.data_start);
  for (int i = 0; i < 300; i++) {
    size_t max = i % 50 == 7 ? 100000 : i % 10 == 3 ? 2000 : 64;
    assert_int_equal(commit_random(j, &h, &rng, i % 20 == 0 ? 0 : 6, max, false), 0);
  }
  for (size_t i = 1; i <= h.n; i++)
    assert_true(h.seq[i] == i); /* strictly +1 from 1 */
  rlog_t got;
  journal_scan_t scan;
  replay_log(j, &got, &scan);
  assert_log_is_prefix(&got, &h, h.n);
  assert_int_equal(scan.txns, 300);
  assert_true(scan.first_seq == 1 && scan.next_seq == 301);
  assert_false(scan.torn_tail);
  assert_true(scan.snapshot_complete);
  assert_int_equal(scan.snapshot_txns, 0);
  check_journal(j);
  rl_fini(&got);

  /* The same after a restart, and appending goes on with the next number. */
  j = restart(j, &scan);
  assert_int_equal(scan.txns, 300);
  assert_int_equal(scan.dropped_bytes, 0);
  assert_int_equal(scan.slots_valid, 3);
  assert_int_equal(commit_random(j, &h, &rng, 3, 64, false), 0);
  assert_true(h.seq[h.n] == 301);
  replay_log(j, &got, NULL);
  assert_log_is_prefix(&got, &h, h.n);
  rl_fini(&got);
  journal_close(j);
  hist_fini(&h);
}

static void transaction_calls_out_of_order_are_refused(void **state) {
  journal_t *j = create_journal();
  uint8_t x = 1;
  assert_int_equal(journal_txn_add(j, 1, &x, 1), PP_EINVAL);
  assert_int_equal(journal_txn_commit(j, NULL), PP_EINVAL);
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_txn_begin(j), PP_EBUSY);
  assert_int_equal(journal_txn_add(j, 1, NULL, 5), PP_EINVAL);
  /* Too big: refused before anything is copied or allocated. */
  assert_int_equal(journal_txn_add(j, 1, &x, JOURNAL_TXN_MAX), PP_ERANGE);
  assert_int_equal(journal_txn_add(j, 1, &x, 1), 0);
  journal_txn_abort(j);
  assert_int_equal(journal_txn_commit(j, NULL), PP_EINVAL);
  /* An aborted transaction leaves no trace; an empty one is a transaction. */
  uint64_t seq = 0;
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_txn_commit(j, &seq), 0);
  assert_true(seq == 1);
  rlog_t got;
  journal_scan_t scan;
  replay_log(j, &got, &scan);
  assert_int_equal(scan.txns, 1);
  assert_int_equal(scan.records, 0);
  rl_fini(&got);
  check_journal(j);
  journal_close(j);
}

static void replay_callback_error_aborts_replay_with_that_error(void **state) {
  hist_t h = {0};
  journal_t *j = build(&h, 3, 20, 32);
  rlog_t l;
  rl_init(&l);
  l.fail_at = 5;
  char why[200] = "";
  int rc = journal_replay(j, &log_ops, &l, NULL, why, sizeof why);
  assert_int_equal(rc, PP_ENOPRIVMEM);
  assert_non_null(strstr(why, "transaction"));
  assert_int_equal(l.records, 5);
  rl_fini(&l);
  /* Callbacks may be left out. */
  journal_replay_ops_t only_records = {NULL, cb_rec, NULL};
  rl_init(&l);
  l.in_txn = true;
  assert_int_equal(journal_replay(j, &only_records, &l, NULL, why, sizeof why), 0);
  rl_fini(&l);
  journal_close(j);
  hist_fini(&h);
}

/* ---- torn and damaged journals ---------------------------------------------------------- */

static void
journal_cut_at_every_byte_replays_exactly_the_whole_txns_before_the_cut(void **state) {
  hist_t h = {0};
  journal_t *j = build(&h, 11, 14, 90);
  size_t len;
  uint8_t *img = read_all(journal_fd(j), &len);
  journal_close(j);
  assert_true(len == h.end[h.n]);

  for (size_t cut = 0; cut <= len; cut++) {
    int fd = memfd_with(img, cut);
    journal_t *a = NULL;
    journal_scan_t scan;
    char why[256] = "";
    int rc = journal_adopt(fd, ID, sizeof ID, &a, &scan, why, sizeof why);
    if (cut < 128) { /* not even slot A is whole: nothing to trust */
      assert_int_equal(rc, PP_ECORRUPT);
      close(fd);
      continue;
    }
    if (rc) fail_msg("cut %zu: %s", cut, why);
    check_journal(a);
    size_t k = 0;
    while (k < h.n && h.end[k + 1] <= cut)
      k++;
    rlog_t got;
    replay_log(a, &got, NULL);
    assert_log_is_prefix(&got, &h, k);
    rl_fini(&got);
    assert_true(scan.torn_tail == (cut > h.end[0] && cut != h.end[k]));
    /* A crash tears a write between pages only: a cut elsewhere is damage. */
    if (!scan.torn_tail)
      assert_int_equal(scan.tail, JOURNAL_TAIL_NONE);
    else
      assert_int_equal(scan.tail, cut % 4096 == 0 ? JOURNAL_TAIL_TORN : JOURNAL_TAIL_DAMAGED);
    assert_int_equal(scan.slots_valid, cut >= 2048 + 128 ? 3 : 1);
    /* The torn tail is gone: a new transaction follows the last whole one, and a restart
     * sees exactly the k old ones and the new one. */
    assert_true(file_size(fd) == h.end[k]);
    hist_t h2 = {0};
    hist_copy_prefix(&h2, &h, k);
    uint64_t rng = cut;
    assert_int_equal(commit_random(a, &h2, &rng, 2, 40, false), 0);
    assert_true(h2.seq[h2.n] == k + 1);
    a = restart(a, NULL);
    replay_log(a, &got, NULL);
    assert_log_is_prefix(&got, &h2, h2.n);
    rl_fini(&got);
    hist_fini(&h2);
    journal_close(a);
  }
  free(img);
  hist_fini(&h);
}

static void flipped_byte_anywhere_never_yields_a_record_that_was_not_written(void **state) {
  hist_t h = {0};
  journal_t *j = build(&h, 5, 10, 60);
  size_t len;
  uint8_t *img = read_all(journal_fd(j), &len);
  journal_close(j);

  for (size_t off = 0; off < len; off++) {
    for (int flip = 0; flip < 2; flip++) {
      uint8_t mask = flip ? 0xff : (uint8_t)(1u << (off % 8));
      img[off] ^= mask;
      int fd = memfd_with(img, len);
      img[off] ^= mask;
      journal_scan_t scan;
      journal_t *a = adopt_ok(fd, &scan); /* a damaged slot has a twin */
      bool in_slot_a = off < 128, in_slot_b = off >= 2048 && off < 2048 + 128;
      assert_int_equal(scan.slots_valid, in_slot_a ? 2 : in_slot_b ? 1 : 3);
      /* Every transaction before the damaged one, and nothing from it on. */
      size_t k = 0;
      while (k < h.n && h.end[k + 1] <= off)
        k++;
      if (off < h.end[0]) k = h.n;
      /* Damage is never taken for what a crash leaves (unless the file happens to end on
       * a page and the flip lengthened the last header: that reads as a torn write). */
      if (off >= h.end[0])
        assert_true(scan.tail == JOURNAL_TAIL_DAMAGED ||
                    (scan.tail == JOURNAL_TAIL_TORN && len % 4096 == 0));
      else
        assert_int_equal(scan.tail, JOURNAL_TAIL_NONE);
      rlog_t got;
      replay_log(a, &got, NULL);
      assert_log_is_prefix(&got, &h, k);
      rl_fini(&got);
      journal_close(a);
    }
  }
  free(img);
  hist_fini(&h);
}

static void damaged_superblock_slot_falls_back_to_its_twin_and_is_repaired(void **state) {
  hist_t h = {0};
  journal_t *j = build(&h, 9, 12, 50);
  int fd = dup(journal_fd(j));
  journal_close(j);
  uint8_t junk[128];
  uint64_t rng = 1;
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (uint8_t)rng_next(&rng);
  assert_int_equal(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);

  journal_scan_t scan;
  journal_t *a = adopt_ok(fd, &scan);
  assert_int_equal(scan.slots_valid, 2);
  rlog_t got;
  replay_log(a, &got, NULL);
  assert_log_is_prefix(&got, &h, h.n);
  rl_fini(&got);
  a = restart(a, &scan); /* adopt rewrote slot A */
  assert_int_equal(scan.slots_valid, 3);

  /* Both slots damaged: not a journal any more. */
  fd = dup(journal_fd(a));
  journal_close(a);
  assert_int_equal(pwrite(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
  assert_int_equal(pwrite(fd, junk, sizeof junk, 2048), (ssize_t)sizeof junk);
  char why[256] = "";
  assert_int_equal(journal_adopt(fd, ID, sizeof ID, &a, NULL, why, sizeof why), PP_ECORRUPT);
  assert_non_null(strstr(why, "slot A"));
  assert_non_null(strstr(why, "slot B"));
  close(fd);
  hist_fini(&h);
}

static void torn_commit_at_every_byte_replays_all_or_nothing_of_it(void **state) {
  /* The torn transaction's payload holds a valid-looking transaction image placed where a
   * shorter successor will end: only the zero tail keeps replay from reading it. */
  hist_t base = {0};
  journal_t *j = build(&base, 21, 6, 40);
  journal_stats_t st;
  journal_get_stats(j, &st);
  const uint64_t n = base.n;
  journal_close(j);

  /* The successor S: one record of 8 bytes = 32 + 16 + 8 = 56 bytes.  The fake: the txn a
   * journal of the same generation would hold as number n + 2. */
  journal_t *scratch = create_journal();
  for (uint64_t i = 0; i < n + 1; i++) {
    assert_int_equal(journal_txn_begin(scratch), 0);
    assert_int_equal(journal_txn_commit(scratch, NULL), 0);
  }
  journal_stats_t sst;
  journal_get_stats(scratch, &sst);
  assert_int_equal(journal_txn_begin(scratch), 0);
  assert_int_equal(journal_txn_add(scratch, 0xbad, "FORGED!!", 8), 0);
  assert_int_equal(journal_txn_commit(scratch, NULL), 0);
  size_t slen;
  uint8_t *simg = read_all(journal_fd(scratch), &slen);
  size_t fake_len = slen - sst.end;
  journal_close(scratch);

  uint8_t tpay[400];
  memset(tpay, 0xee, sizeof tpay);
  const size_t s_len = 32 + 8 + 8 + 8;
  memcpy(tpay + (s_len - 40), simg + sst.end, fake_len);
  free(simg);
  const size_t t_len = 32 + 8 + sizeof tpay + 8;

  for (size_t b = 0; b <= t_len; b++) {
    hist_t h = {0};
    j = build(&h, 21, 6, 40);
    journal_fault_after(j, b);
    assert_int_equal(journal_txn_begin(j), 0);
    assert_int_equal(journal_txn_add(j, 77, tpay, sizeof tpay), 0);
    assert_int_equal(journal_txn_commit(j, NULL), PP_EIO); /* the "process" died */
    assert_int_equal(journal_txn_begin(j), 0);
    assert_int_equal(journal_txn_commit(j, NULL), PP_EIO); /* and stays dead */
    bool whole = b == t_len;
    if (whole) {
      rl_begin(&h.exp, n + 1, 1, false);
      rl_rec(&h.exp, 77, tpay, sizeof tpay);
      rl_end(&h.exp, n + 1);
      hist_push(&h, st.end + t_len, n + 1);
    }
    journal_scan_t scan;
    j = restart(j, &scan);
    assert_true(scan.torn_tail == (b > 0 && !whole));
    if (b == 0 || whole)
      assert_int_equal(scan.tail, JOURNAL_TAIL_NONE);
    else
      assert_int_equal(scan.tail,
                       (st.end + b) % 4096 == 0 ? JOURNAL_TAIL_TORN : JOURNAL_TAIL_DAMAGED);
    rlog_t got;
    replay_log(j, &got, NULL);
    assert_log_is_prefix(&got, &h, h.n);
    rl_fini(&got);
    /* The successor, then a restart: never the forged transaction. */
    uint64_t seq;
    assert_int_equal(journal_txn_begin(j), 0);
    assert_int_equal(journal_txn_add(j, 5, "8 bytes!", 8), 0);
    assert_int_equal(journal_txn_commit(j, &seq), 0);
    rl_begin(&h.exp, seq, 1, false);
    rl_rec(&h.exp, 5, "8 bytes!", 8);
    rl_end(&h.exp, seq);
    hist_push(&h, 0, seq);
    j = restart(j, &scan);
    replay_log(j, &got, NULL);
    assert_log_is_prefix(&got, &h, h.n);
    rl_fini(&got);
    journal_close(j);
    hist_fini(&h);
  }
  hist_fini(&base);
}

static void a_copy_of_a_valid_txn_is_never_its_own_successor(void **state) {
  /* Sequence numbers are the second line behind the zero tail: the last transaction's
   * bytes again, right after it, are crc-valid and of this generation, but not + 1. */
  hist_t h = {0};
  journal_t *j = build(&h, 71, 5, 30);
  size_t len;
  uint8_t *img = read_all(journal_fd(j), &len);
  journal_close(j);
  size_t last = h.end[h.n] - h.end[h.n - 1];
  uint8_t *twice = malloc(len + last);
  memcpy(twice, img, len);
  memcpy(twice + len, img + h.end[h.n - 1], last);
  int fd = memfd_with(twice, len + last);
  journal_scan_t scan;
  j = adopt_ok(fd, &scan);
  assert_true(scan.torn_tail);
  assert_int_equal(scan.tail, JOURNAL_TAIL_DAMAGED);
  assert_non_null(strstr(scan.stop_reason, "sequence number"));
  rlog_t got;
  replay_log(j, &got, NULL);
  assert_log_is_prefix(&got, &h, h.n);
  rl_fini(&got);
  journal_close(j);
  free(twice);
  free(img);
  hist_fini(&h);
}

static void snapshot_of_a_crashed_compaction_is_not_replayed_as_log(void **state) {
  /* When the old generation ends exactly on a page boundary, the new one starts right
   * there, and its first transaction carries the next sequence number: only the
   * generation in its header tells it from a continuation of the old log. */
  hist_t h = {0};
  journal_t *j = build(&h, 81, 7, 50);
  journal_stats_t st;
  journal_get_stats(j, &st);
  size_t pad = (size_t)((4096 - (st.end + 48) % 4096) % 4096);
  static uint8_t blob[4096];
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_txn_add(j, 3, blob, pad), 0);
  uint64_t seq;
  assert_int_equal(journal_txn_commit(j, &seq), 0);
  rl_begin(&h.exp, seq, 1, false);
  rl_rec(&h.exp, 3, blob, pad);
  rl_end(&h.exp, seq);
  journal_get_stats(j, &st);
  hist_push(&h, st.end, seq);
  assert_int_equal(st.end % 4096, 0);

  assert_int_equal(journal_compact_begin(j), 0);
  journal_fault_after(j, 32 + 8 + 8 + 8); /* the first snapshot txn lands whole, then death */
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_txn_add(j, 9, "snapshot", 8), 0);
  assert_int_equal(journal_txn_commit(j, NULL), PP_EIO);
  journal_scan_t scan;
  j = restart(j, &scan);
  assert_int_equal(scan.generation, 1);
  assert_int_equal(scan.tail, JOURNAL_TAIL_SNAPSHOT);
  assert_non_null(strstr(scan.stop_reason, "generation 2"));
  rlog_t got;
  replay_log(j, &got, NULL);
  assert_log_is_prefix(&got, &h, h.n);
  rl_fini(&got);
  journal_close(j);
  hist_fini(&h);
}

/* Pads the journal with one transaction so that it ends exactly on a 4 KiB boundary. */
static void pad_to_page(journal_t *j, hist_t *h) {
  static uint8_t blob[8192];
  journal_stats_t st;
  journal_get_stats(j, &st);
  size_t pad = (size_t)((4096 - (st.end + 48) % 4096) % 4096);
  uint64_t seq;
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_txn_add(j, 3, blob, pad), 0);
  assert_int_equal(journal_txn_commit(j, &seq), 0);
  rl_begin(&h->exp, seq, 1, false);
  rl_rec(&h->exp, 3, blob, pad);
  rl_end(&h->exp, seq);
  journal_get_stats(j, &st);
  hist_push(h, st.end, seq);
  assert_int_equal(st.end % 4096, 0);
}

static journal_tail_t tail_after(journal_t **j) {
  journal_scan_t scan;
  *j = restart(*j, &scan);
  return scan.tail;
}

static void tail_tells_what_a_crash_leaves_from_damage(void **state) {
  static uint8_t big[6000];
  hist_t h = {0};
  journal_t *j = build(&h, 91, 6, 50);
  assert_int_equal(tail_after(&j), JOURNAL_TAIL_NONE);

  /* A write of 6000 + 48 bytes from a page boundary, cut after its first page: torn. */
  pad_to_page(j, &h);
  journal_fault_after(j, 4096);
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_txn_add(j, 1, big, sizeof big), 0);
  assert_int_equal(journal_txn_commit(j, NULL), PP_EIO);
  assert_int_equal(tail_after(&j), JOURNAL_TAIL_TORN);

  /* The same write cut inside a page: no crash does that. */
  journal_fault_after(j, 4000);
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_txn_add(j, 1, big, sizeof big), 0);
  assert_int_equal(journal_txn_commit(j, NULL), PP_EIO);
  assert_int_equal(tail_after(&j), JOURNAL_TAIL_DAMAGED);

  /* A compaction that extended the file and died before its first snapshot byte, and one
   * that wrote a whole snapshot transaction: both what a crash leaves.  (The log must
   * not end on a page, or the new generation starts right there with no padding.) */
  uint64_t rng = 5;
  assert_int_equal(commit_random(j, &h, &rng, 1, 20, false), 0);
  assert_int_equal(journal_compact_begin(j), 0);
  journal_fault_after(j, 0);
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_txn_commit(j, NULL), PP_EIO);
  assert_int_equal(tail_after(&j), JOURNAL_TAIL_SNAPSHOT);
  const size_t one = 32 + 8 + 8 + 8; /* a transaction of one 8-byte record */
  for (int torn = 0; torn < 2; torn++) {
    assert_int_equal(journal_compact_begin(j), 0);
    journal_fault_after(j, one + (size_t)torn);
    assert_int_equal(journal_txn_begin(j), 0);
    assert_int_equal(journal_txn_add(j, 9, "snapshot", 8), 0);
    assert_int_equal(journal_txn_commit(j, NULL), torn ? 0 : PP_EIO);
    if (torn) {
      assert_int_equal(journal_txn_begin(j), 0);
      assert_int_equal(journal_txn_add(j, 9, "snapshot", 8), 0);
      assert_int_equal(journal_txn_commit(j, NULL), PP_EIO);
    }
    /* whole: what a crash leaves; then one byte of the next, off a page: damage */
    assert_int_equal(tail_after(&j), torn ? JOURNAL_TAIL_DAMAGED : JOURNAL_TAIL_SNAPSHOT);
  }

  /* A flipped byte in a transaction that has successors: damage, and nothing after it is
   * replayed. */
  hist_t h2 = {0};
  journal_close(j);
  j = build(&h2, 92, 6, 50);
  size_t len;
  uint8_t *img = read_all(journal_fd(j), &len);
  journal_close(j);
  img[h2.end[2] + 40] ^= 0x10;
  int fd = memfd_with(img, len);
  journal_scan_t scan;
  j = adopt_ok(fd, &scan);
  assert_int_equal(scan.tail, JOURNAL_TAIL_DAMAGED);
  assert_int_equal(scan.txns, 2);
  journal_close(j);
  free(img);
  hist_fini(&h);
  hist_fini(&h2);
}

/* ---- adopt's refusals ------------------------------------------------------------------- */

static void identity_mismatch_is_refused_with_a_reason(void **state) {
  journal_t *j = create_journal();
  int fd = dup(journal_fd(j));
  journal_close(j);
  uint8_t other[sizeof ID];
  memcpy(other, ID, sizeof ID);
  other[3] ^= 1;
  char why[256] = "";
  journal_t *a = NULL;
  assert_int_equal(journal_adopt(fd, other, sizeof other, &a, NULL, why, sizeof why),
                   PP_EINVAL);
  assert_non_null(strstr(why, "another region"));
  assert_null(a);
  why[0] = '\0';
  assert_int_equal(journal_adopt(fd, ID, sizeof ID - 1, &a, NULL, why, sizeof why), PP_EINVAL);
  assert_non_null(strstr(why, "another region"));
  assert_int_equal(journal_adopt(fd, NULL, 0, &a, NULL, why, sizeof why), PP_EINVAL);
  uint8_t big[JOURNAL_IDENTITY_MAX + 1] = {0};
  assert_int_equal(journal_adopt(fd, big, sizeof big, &a, NULL, why, sizeof why), PP_EINVAL);
  assert_int_equal(journal_create(big, sizeof big, &a), PP_EINVAL);
  /* Refusals leave the fd open and the journal intact. */
  assert_true(fcntl(fd, F_GETFD) >= 0);
  a = adopt_ok(fd, NULL);
  journal_close(a);
}

static void rewrite_slots(uint8_t *img, uint32_t version, uint64_t data_start) {
  for (int s = 0; s < 2; s++) {
    uint8_t *p = img + (s ? 2048 : 0);
    memcpy(p + 8, &version, 4); /* little-endian host: the tests run on x86-64 / arm64 */
    memcpy(p + 24, &data_start, 8);
    uint32_t crc = journal_crc32c(0, p, 124);
    memcpy(p + 124, &crc, 4);
  }
}

static void garbage_and_foreign_fds_are_refused_not_crashed_on(void **state) {
  char why[256];
  journal_t *a = NULL;
  int fd;

  /* Empty memfd, random bytes. */
  fd = memfd_with(NULL, 0);
  assert_int_equal(journal_adopt(fd, ID, sizeof ID, &a, NULL, why, sizeof why), PP_ECORRUPT);
  assert_non_null(strstr(why, "not a pinpool journal"));
  close(fd);
  uint8_t *junk = malloc(1 << 20);
  uint64_t rng = 99;
  for (size_t i = 0; i < (1 << 20); i++)
    junk[i] = (uint8_t)rng_next(&rng);
  fd = memfd_with(junk, 1 << 20);
  assert_int_equal(journal_adopt(fd, ID, sizeof ID, &a, NULL, why, sizeof why), PP_ECORRUPT);
  close(fd);

  /* Not a regular file; not an fd at all. */
  fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  assert_true(fd >= 0);
  assert_int_equal(journal_adopt(fd, ID, sizeof ID, &a, NULL, why, sizeof why), PP_EINVAL);
  close(fd);
  int p[2];
  assert_int_equal(pipe(p), 0);
  assert_int_equal(journal_adopt(p[0], ID, sizeof ID, &a, NULL, why, sizeof why), PP_EINVAL);
  close(p[0]);
  close(p[1]);
  assert_int_equal(journal_adopt(-1, ID, sizeof ID, &a, NULL, why, sizeof why), PP_EOS);
  assert_null(a);

  /* A valid superblock over garbage: an empty journal whose tail is dropped. */
  journal_t *j = create_journal();
  size_t len;
  uint8_t *img = read_all(journal_fd(j), &len);
  journal_close(j);
  uint8_t *big = malloc(len + (1 << 20));
  memcpy(big, img, len);
  memcpy(big + len, junk, 1 << 20);
  fd = memfd_with(big, len + (1 << 20));
  journal_scan_t scan;
  a = adopt_ok(fd, &scan);
  assert_int_equal(scan.txns, 0);
  assert_true(scan.torn_tail);
  assert_true(scan.dropped_bytes == 1 << 20);
  assert_true(file_size(fd) == len);
  journal_close(a);
  free(big);

  /* A newer format: refused, named. */
  rewrite_slots(img, 2, 4096);
  fd = memfd_with(img, len);
  a = NULL;
  assert_int_equal(journal_adopt(fd, ID, sizeof ID, &a, NULL, why, sizeof why), PP_EVERSION);
  assert_non_null(strstr(why, "version 2"));
  close(fd);
  /* A crc-valid slot with impossible fields is no slot. */
  rewrite_slots(img, 1, 100);
  fd = memfd_with(img, len);
  assert_int_equal(journal_adopt(fd, ID, sizeof ID, &a, NULL, why, sizeof why), PP_ECORRUPT);
  assert_non_null(strstr(why, "superblock area"));
  close(fd);
  assert_null(a);
  free(img);
  free(junk);
}

static void failed_write_leaves_the_journal_as_before(void **state) {
  /* A memfd sealed against growth: every append fails with EPERM, as ENOSPC would. */
  hist_t h = {0};
  journal_t *j = build(&h, 17, 8, 40);
  size_t len;
  uint8_t *img = read_all(journal_fd(j), &len);
  journal_close(j);
  int fd = memfd_with(img, len);
  free(img);
  j = adopt_ok(fd, NULL);
  assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW), 0);
  uint64_t rng = 3;
  assert_int_equal(commit_random(j, &h, &rng, 3, 40, false), PP_EOS);
  assert_non_null(strstr(journal_last_error(j), "pwrite"));
  assert_int_equal(journal_compact_begin(j), PP_EOS); /* cannot reach the next page */
  check_journal(j);
  rlog_t got;
  replay_log(j, &got, NULL);
  assert_log_is_prefix(&got, &h, h.n);
  rl_fini(&got);
  journal_stats_t st;
  journal_get_stats(j, &st);
  assert_true(st.next_seq == h.n + 1);
  journal_close(j);
  hist_fini(&h);
}

/* ---- compaction ------------------------------------------------------------------------- */

/* Writes a snapshot of nsnap random transactions; they are the new generation's history. */
static void write_snapshot(journal_t *j, hist_t *snap, uint64_t seed, size_t nsnap) {
  for (size_t i = 0; i < nsnap; i++)
    assert_int_equal(commit_random(j, snap, &seed, 5, 120, true), 0);
}

static void compaction_replays_the_snapshot_and_later_txns_only(void **state) {
  hist_t h = {0};
  journal_t *j = build(&h, 31, 500, 100);
  journal_stats_t st;
  journal_get_stats(j, &st);
  const uint64_t old_next = st.next_seq;

  assert_int_equal(journal_compact_begin(j), 0);
  hist_t snap = {0};
  hist_reset(&snap, 0);
  write_snapshot(j, &snap, 77, 4);
  /* Until the flip, replay still sees the old generation. */
  rlog_t got;
  replay_log(j, &got, NULL);
  assert_log_is_prefix(&got, &h, h.n);
  rl_fini(&got);
  assert_int_equal(journal_compact_commit(j), 0);
  journal_get_stats(j, &st);
  assert_int_equal(st.generation, 2);
  assert_true(st.next_seq == old_next + 4); /* numbers go on across generations */
  assert_true(st.snapshot_end == st.end);
  check_journal(j);
  uint64_t rng = 8;
  for (int i = 0; i < 10; i++)
    assert_int_equal(commit_random(j, &snap, &rng, 3, 50, false), 0);

  journal_scan_t scan;
  replay_log(j, &got, &scan);
  assert_log_is_prefix(&got, &snap, snap.n);
  assert_true(snap.seq[1] == old_next);
  assert_int_equal(scan.snapshot_txns, 4);
  assert_int_equal(scan.txns, 14);
  assert_true(scan.snapshot_complete);
  rl_fini(&got);
  j = restart(j, &scan);
  assert_int_equal(scan.generation, 2);
  replay_log(j, &got, NULL);
  assert_log_is_prefix(&got, &snap, snap.n);
  rl_fini(&got);
  journal_close(j);
  hist_fini(&h);
  hist_fini(&snap);
}

static void compaction_calls_out_of_order_are_refused_and_abort_restores(void **state) {
  hist_t h = {0};
  journal_t *j = build(&h, 41, 30, 80);
  assert_int_equal(journal_compact_commit(j), PP_EINVAL);
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_compact_begin(j), PP_EBUSY);
  journal_txn_abort(j);
  assert_int_equal(journal_compact_begin(j), 0);
  assert_int_equal(journal_compact_begin(j), PP_EBUSY);
  hist_t snap = {0};
  hist_reset(&snap, 0);
  write_snapshot(j, &snap, 5, 3);
  assert_int_equal(journal_txn_begin(j), 0);
  assert_int_equal(journal_compact_commit(j), PP_EBUSY);
  journal_txn_abort(j);
  check_journal(j);
  journal_compact_abort(j);
  check_journal(j);
  journal_stats_t st;
  journal_get_stats(j, &st);
  assert_int_equal(st.generation, 1);
  assert_true(file_size(journal_fd(j)) == h.end[h.n]);
  j = restart(j, NULL);
  rlog_t got;
  replay_log(j, &got, NULL);
  assert_log_is_prefix(&got, &h, h.n);
  rl_fini(&got);

  /* An empty snapshot (nothing is live) is a generation too. */
  assert_int_equal(journal_compact_begin(j), 0);
  assert_int_equal(journal_compact_commit(j), 0);
  check_journal(j);
  journal_scan_t scan;
  j = restart(j, &scan);
  assert_int_equal(scan.generation, 2);
  assert_int_equal(scan.txns, 0);
  assert_true(scan.first_seq == h.n + 1);
  journal_close(j);
  hist_fini(&h);
  hist_fini(&snap);
}

static void compaction_frees_the_memory_of_the_dead_prefix(void **state) {
  hist_t h = {0};
  journal_t *j = create_journal();
  journal_stats_t st;
  journal_get_stats(j, &st);
  hist_reset(&h, st.data_start);
  uint64_t rng = 12;
  while (!journal_should_compact(j))
    assert_int_equal(commit_random(j, &h, &rng, 4, 1000, false), 0);
  journal_get_stats(j, &st);
  assert_true(st.log_bytes > JOURNAL_COMPACT_MIN);
  assert_true(st.log_bytes < JOURNAL_COMPACT_MIN + 8192);
  uint64_t before = file_blocks_bytes(journal_fd(j));
  assert_true(before >= JOURNAL_COMPACT_MIN);

  assert_int_equal(journal_compact_begin(j), 0);
  hist_t snap = {0};
  hist_reset(&snap, 0);
  write_snapshot(j, &snap, 1, 2);
  assert_int_equal(journal_compact_commit(j), 0);
  assert_false(journal_should_compact(j));
  uint64_t after = file_blocks_bytes(journal_fd(j));
  journal_get_stats(j, &st);
  /* The superblock page and the snapshot's pages are all that remain. */
  assert_true(after <= 4096 + (st.end - st.data_start + 4095) / 4096 * 4096 + 4096);
  assert_int_equal(st.deferred_failures, 0);
  printf("allocated: %" PRIu64 " KiB before, %" PRIu64 " KiB after compaction\n", before >> 10,
         after >> 10);

  /* Policy: a big snapshot earns a proportionally longer log before the next one. */
  assert_int_equal(journal_compact_begin(j), 0);
  static uint8_t blob[100000];
  for (int i = 0; i < 16; i++) { /* a 1.6 MB snapshot */
    assert_int_equal(journal_txn_begin(j), 0);
    assert_int_equal(journal_txn_add(j, 1, blob, sizeof blob), 0);
    assert_int_equal(journal_txn_commit(j, NULL), 0);
  }
  assert_int_equal(journal_compact_commit(j), 0);
  journal_get_stats(j, &st);
  uint64_t snap_bytes = st.snapshot_end - st.data_start;
  while (st.log_bytes <= 2 * snap_bytes) {
    assert_false(journal_should_compact(j));
    assert_int_equal(journal_txn_begin(j), 0);
    assert_int_equal(journal_txn_add(j, 1, blob, sizeof blob), 0);
    assert_int_equal(journal_txn_commit(j, NULL), 0);
    journal_get_stats(j, &st);
  }
  assert_true(journal_should_compact(j));
  journal_close(j);
  hist_fini(&h);
  hist_fini(&snap);
}

static void crash_at_every_byte_of_a_compaction_leaves_the_old_or_the_new_state(void **state) {
  /* Bytes a compaction writes: the snapshot, the flipped slot (128), the other slot (128).
   * A crash before the flip is whole leaves the old state, from then on the new one. */
  hist_t h = {0}, snap = {0};
  journal_t *j = build(&h, 51, 40, 300);
  assert_int_equal(journal_compact_begin(j), 0);
  hist_reset(&snap, 0);
  write_snapshot(j, &snap, 61, 3);
  journal_stats_t st;
  journal_get_stats(j, &st);
  assert_int_equal(journal_compact_commit(j), 0);
  journal_stats_t st2;
  journal_get_stats(j, &st2);
  const uint64_t snap_bytes = st2.end - st2.data_start;
  const uint64_t total = snap_bytes + 256;
  journal_close(j);

  for (uint64_t b = 0; b <= total + 1; b++) {
    hist_t hh = {0};
    j = build(&hh, 51, 40, 300);
    journal_fault_after(j, b);
    int rc = journal_compact_begin(j);
    hist_t s2 = {0};
    hist_reset(&s2, 0);
    uint64_t seed = 61;
    for (int i = 0; rc == 0 && i < 3; i++)
      rc = commit_random(j, &s2, &seed, 5, 120, true);
    if (rc == 0) rc = journal_compact_commit(j);
    bool new_state = b >= snap_bytes + 128;
    if (b > total) assert_int_equal(rc, 0);
    uint64_t blocks_before = file_blocks_bytes(journal_fd(j));
    journal_scan_t scan;
    j = restart(j, &scan);
    rlog_t got;
    replay_log(j, &got, NULL);
    if (new_state)
      assert_log_is_prefix(&got, &snap, snap.n);
    else
      assert_log_is_prefix(&got, &hh, hh.n);
    rl_fini(&got);
    /* A torn slot write leaves its twin; nothing else touches the slots. */
    assert_true(scan.slots_valid != 0);
    if (b < snap_bytes || b > total) assert_int_equal(scan.slots_valid, 3);
    if (new_state) {
      /* Whatever the crash skipped, adopt finished: dead prefix freed, both slots. */
      uint64_t after = file_blocks_bytes(journal_fd(j));
      assert_true(after <= 4096 + (snap_bytes + 4095) / 4096 * 4096 + 4096);
      if (b == snap_bytes + 128) assert_true(after < blocks_before); /* adopt punched */
    }
    /* Life goes on after the restart. */
    uint64_t rng = b;
    hist_t *cur = new_state ? &snap : &hh;
    hist_t copy = {0};
    hist_copy_prefix(&copy, cur, cur->n);
    assert_int_equal(commit_random(j, &copy, &rng, 2, 30, false), 0);
    j = restart(j, NULL);
    replay_log(j, &got, NULL);
    assert_log_is_prefix(&got, &copy, copy.n);
    rl_fini(&got);
    journal_close(j);
    hist_fini(&copy);
    hist_fini(&hh);
    hist_fini(&s2);
  }
  hist_fini(&h);
  hist_fini(&snap);
}

/* ---- randomized model ------------------------------------------------------------------- */

#define NKEYS 48
enum { REC_PUT = 1, REC_DEL = 2 };

typedef struct kv {
  uint64_t val[NKEYS];
  bool has[NKEYS];
} kv_t;

typedef struct apply_ctx {
  kv_t state, stage;
  bool in_txn;
  int bad;
} apply_ctx_t;

static int ap_begin(const journal_txn_info_t *t, void *ctx) {
  apply_ctx_t *a = ctx;
  if (a->in_txn) return PP_EINTERNAL;
  a->in_txn = true;
  a->stage = a->state;
  return 0;
}
static int ap_rec(uint32_t type, const void *payload, size_t len, void *ctx) {
  apply_ctx_t *a = ctx;
  journal_dec_t d;
  journal_dec_init(&d, payload, len);
  uint32_t key = journal_dec_u32(&d);
  uint64_t val = type == REC_PUT ? journal_dec_u64(&d) : 0;
  if (journal_dec_finish(&d) != 0 || key >= NKEYS || (type != REC_PUT && type != REC_DEL))
    return PP_ECORRUPT;
  a->stage.has[key] = type == REC_PUT;
  a->stage.val[key] = val;
  return 0;
}
static int ap_end(const journal_txn_info_t *t, void *ctx) {
  apply_ctx_t *a = ctx;
  if (!a->in_txn) return PP_EINTERNAL;
  a->in_txn = false;
  a->state = a->stage; /* a transaction applies whole */
  return 0;
}

static void replayed_state(journal_t *j, kv_t *ret) {
  static const journal_replay_ops_t ops = {ap_begin, ap_rec, ap_end};
  apply_ctx_t a;
  memset(&a, 0, sizeof a);
  char why[256] = "";
  int rc = journal_replay(j, &ops, &a, NULL, why, sizeof why);
  if (rc) fail_msg("replay: %s", why);
  *ret = a.state;
}

static void assert_kv_equal(const kv_t *got, const kv_t *want, const char *when, int step) {
  for (int k = 0; k < NKEYS; k++)
    if (got->has[k] != want->has[k] || (want->has[k] && got->val[k] != want->val[k]))
      fail_msg("step %d (%s): key %d replayed as %s/%" PRIu64 ", committed %s/%" PRIu64, step,
               when, k, got->has[k] ? "set" : "unset", got->val[k],
               want->has[k] ? "set" : "unset", want->val[k]);
}

static void add_put(journal_t *j, uint32_t key, uint64_t val) {
  uint8_t buf[12];
  journal_enc_t e;
  journal_enc_init(&e, buf, sizeof buf);
  journal_enc_u32(&e, key);
  journal_enc_u64(&e, val);
  assert_int_equal(journal_txn_add_enc(j, REC_PUT, &e), 0);
}

/* The snapshot of state, in chunks of random size; returns the bytes it wrote. */
static uint64_t snapshot_kv(journal_t *j, const kv_t *s, uint64_t *rng, int *rc) {
  uint64_t bytes = 0;
  int k = 0;
  *rc = 0;
  while (k < NKEYS && *rc == 0) {
    int chunk = 1 + (int)rng_below(rng, 20), put = 0;
    assert_int_equal(journal_txn_begin(j), 0);
    for (; k < NKEYS && put < chunk; k++)
      if (s->has[k]) {
        add_put(j, (uint32_t)k, s->val[k]);
        put++;
        bytes += 8 + 12;
      }
    bytes += 40;
    *rc = journal_txn_commit(j, NULL);
  }
  return bytes;
}

static void
randomized_txns_compactions_and_crashes_match_the_committed_reference(void **state) {
  uint64_t rng = 0x5eed;
  journal_t *j = create_journal();
  kv_t ref = {0};
  /* States after each transaction since the snapshot, by file offset, for cuts. */
  size_t nhist = 0, caphist = 1024;
  kv_t *hist_state = malloc(caphist * sizeof *hist_state);
  uint64_t *hist_end = malloc(caphist * sizeof *hist_end);
  journal_stats_t st;
  int crashes = 0, cuts = 0, compactions = 0, restarts = 0;

#define RESET_HIST()                                                                           \
  do {                                                                                         \
    journal_get_stats(j, &st);                                                                 \
    nhist = 1;                                                                                 \
    hist_state[0] = ref;                                                                       \
    hist_end[0] = st.end;                                                                      \
  } while (0)
  RESET_HIST();

  for (int step = 0; step < 4000; step++) {
    uint64_t dice = rng_below(&rng, 100);
    if (dice < 80) {
      /* A transaction of 1..6 changes; sometimes the process dies inside its write. */
      kv_t next = ref;
      uint32_t nops = 1 + (uint32_t)rng_below(&rng, 6);
      uint64_t len = 40;
      assert_int_equal(journal_txn_begin(j), 0);
      for (uint32_t i = 0; i < nops; i++) {
        uint32_t key = (uint32_t)rng_below(&rng, NKEYS);
        if (rng_below(&rng, 4) == 0) {
          uint8_t buf[4];
          journal_enc_t e;
          journal_enc_init(&e, buf, sizeof buf);
          journal_enc_u32(&e, key);
          assert_int_equal(journal_txn_add_enc(j, REC_DEL, &e), 0);
          next.has[key] = false;
          next.val[key] = 0;
          len += 8 + 4;
        } else {
          uint64_t val = rng_next(&rng);
          add_put(j, key, val);
          next.has[key] = true;
          next.val[key] = val;
          len += 8 + 12;
        }
      }
      bool crash = rng_below(&rng, 40) == 0;
      uint64_t budget = rng_below(&rng, len + 1);
      if (crash) journal_fault_after(j, budget);
      int rc = journal_txn_commit(j, NULL);
      if (crash) {
        assert_int_equal(rc, PP_EIO);
        if (budget == len) ref = next; /* every byte landed before the death */
        j = restart(j, NULL);
        crashes++;
        RESET_HIST();
      } else {
        assert_int_equal(rc, 0);
        ref = next;
        journal_get_stats(j, &st);
        if (nhist == caphist) {
          caphist *= 2;
          hist_state = realloc(hist_state, caphist * sizeof *hist_state);
          hist_end = realloc(hist_end, caphist * sizeof *hist_end);
        }
        hist_state[nhist] = ref;
        hist_end[nhist++] = st.end;
      }
    } else if (dice < 86) {
      /* Compaction, sometimes with a crash somewhere inside it: same state either way. */
      bool crash = rng_below(&rng, 3) == 0;
      uint64_t budget = UINT64_MAX;
      if (crash) {
        uint64_t live = 0;
        for (int k = 0; k < NKEYS; k++)
          live += ref.has[k];
        budget = rng_below(&rng, live * 20 + 40 * (NKEYS + 1) + 256);
        journal_fault_after(j, budget);
      }
      int rc = journal_compact_begin(j);
      if (rc == 0) snapshot_kv(j, &ref, &rng, &rc);
      if (rc == 0) rc = journal_compact_commit(j);
      if (crash) {
        journal_fault_after(j, UINT64_MAX);
        j = restart(j, NULL);
        crashes++;
      } else {
        assert_int_equal(rc, 0);
        compactions++;
      }
      RESET_HIST();
    } else if (dice < 92 && nhist > 1) {
      /* The memfd cut anywhere after the snapshot: the state of the last whole txn. */
      uint64_t from = hist_end[0], to = hist_end[nhist - 1];
      uint64_t cut = from + rng_below(&rng, to - from + 1);
      size_t k = 0;
      while (k + 1 < nhist && hist_end[k + 1] <= cut)
        k++;
      ref = hist_state[k];
      int fd = dup(journal_fd(j));
      journal_close(j);
      assert_int_equal(ftruncate(fd, (off_t)cut), 0);
      j = adopt_ok(fd, NULL);
      cuts++;
      RESET_HIST();
    } else if (dice < 96) {
      j = restart(j, NULL);
      restarts++;
      RESET_HIST();
    }
    if (step % 50 == 0 || dice >= 80) {
      kv_t got;
      replayed_state(j, &got);
      assert_kv_equal(&got, &ref, "replay", step);
    }
  }
  check_journal(j);
  journal_get_stats(j, &st);
  printf("model: %d crashes, %d cuts, %d restarts, %d compactions; generation %" PRIu64
         ", %" PRIu64 " live bytes\n",
         crashes, cuts, restarts, compactions, st.generation, st.live_bytes);
  assert_true(crashes > 10 && cuts > 10 && compactions > 10);
  journal_close(j);
  free(hist_state);
  free(hist_end);
#undef RESET_HIST
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(crc32c_table_path_matches_rfc3720_vectors),
      cmocka_unit_test(crc32c_sse42_path_matches_rfc3720_vectors),
      cmocka_unit_test(crc32c_paths_agree_at_every_length_and_alignment),
      cmocka_unit_test(encoders_and_decoders_round_trip_every_type),
      cmocka_unit_test(encoder_overflow_is_sticky_and_writes_nothing_past_cap),
      cmocka_unit_test(decoders_fail_cleanly_on_short_or_malformed_payloads),
      cmocka_unit_test(round_trip_replays_every_record_in_order_with_boundaries),
      cmocka_unit_test(transaction_calls_out_of_order_are_refused),
      cmocka_unit_test(replay_callback_error_aborts_replay_with_that_error),
      cmocka_unit_test(journal_cut_at_every_byte_replays_exactly_the_whole_txns_before_the_cut),
      cmocka_unit_test(flipped_byte_anywhere_never_yields_a_record_that_was_not_written),
      cmocka_unit_test(damaged_superblock_slot_falls_back_to_its_twin_and_is_repaired),
      cmocka_unit_test(torn_commit_at_every_byte_replays_all_or_nothing_of_it),
      cmocka_unit_test(a_copy_of_a_valid_txn_is_never_its_own_successor),
      cmocka_unit_test(snapshot_of_a_crashed_compaction_is_not_replayed_as_log),
      cmocka_unit_test(tail_tells_what_a_crash_leaves_from_damage),
      cmocka_unit_test(identity_mismatch_is_refused_with_a_reason),
      cmocka_unit_test(garbage_and_foreign_fds_are_refused_not_crashed_on),
      cmocka_unit_test(failed_write_leaves_the_journal_as_before),
      cmocka_unit_test(compaction_replays_the_snapshot_and_later_txns_only),
      cmocka_unit_test(compaction_calls_out_of_order_are_refused_and_abort_restores),
      cmocka_unit_test(compaction_frees_the_memory_of_the_dead_prefix),
      cmocka_unit_test(crash_at_every_byte_of_a_compaction_leaves_the_old_or_the_new_state),
      cmocka_unit_test(randomized_txns_compactions_and_crashes_match_the_committed_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
