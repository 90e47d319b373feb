/*
 * handoff.c — the reload handoff: what one pinpoold process image tells the next across
 * execve, in a memfd whose descriptor the new image finds in PINPOOLD_HANDOFF_FD.
 *
 * What travels.  Descriptors cross execve by themselves when they are not close-on-exec
 * (reload.c clears the flag on exactly these): the listening socket, the region memfd, the
 * journal memfd and every client connection.  What the descriptors cannot say is written
 * here: which is which, and for each connection what the old image knew of it — its
 * session (the id: everything the session holds, its token and its kept reply are in the
 * journal, which the old image compacted just before, so the handoff only maps descriptors
 * to sessions), the bytes it had read from the socket and not handled yet (a frame in
 * pieces, or input parked by back-pressure), and the reply bytes the socket had not taken
 * yet.  Sessions that were waiting to be re-claimed after an earlier restart keep their
 * deadlines.
 *
 * Format (every integer little-endian; i32 is a two's-complement u32).
 *
 *   stable part — every version has it, at these offsets, so that a binary that cannot
 *   read the rest (a version it does not know, a body that does not check out) can still
 *   take the socket, the region and the journal and close every connection it was handed:
 *     off size
 *       0   8  magic "PPHNDOFF"
 *       8   4  version (1)
 *      12   4  header_len H: bytes from 0 to the fd list (48 in version 1; a later version
 *              may add fields before its end, never move these)
 *      16   4  header_crc: crc32c of [0, H + 4 * nfds) with these 4 bytes read as zero
 *      20   4  flags: bit 0 our own socket (unlink it at shutdown), bit 1 region and
 *              journal are in the service manager's fd store, bit 2 the journal was
 *              written for the handoff only
 *      24   4  pid of the writer: the reader's own (execve keeps the pid), else not ours
 *      28   4  listen_fd (i32)
 *      32   4  region_fd (i32)
 *      36   4  journal_fd (i32)
 *      40   4  nfds: connection descriptors listed after the header
 *      44   4  body_len B
 *       H  4n  fds: i32 each, the connections, in the body's order
 *   body — per version; followed by a u32 crc32c of the body.  Version 1:
 *       u64 started_ms (CLOCK_MONOTONIC: Stats' uptime goes on), u64 reload_start_ns,
 *       u64 next_session_id, u32 reloads, str socket_path
 *       u32 ndetached, then per detached session: u64 session_id, u64 deadline_unix_ms
 *       u32 nconns (= nfds), then per connection: i32 fd (= fds[i]), u8 kind, u8 flags
 *       (bit 0 replay_armed), u16 0, u32 uid, u64 session_id, u64 requests, str in,
 *       str out
 *   Version 2 adds the pools other than the default (daemon/pools.c) at the end of the
 *   body: u32 npools, then per pool: str name, i32 region_fd, i32 journal_fd, u32 flags
 *   (bits 1 and 2 as the stable flags, for that pool's region and journal).  Their
 *   descriptors are not in the stable part: a binary that falls back leaves them open and
 *   unused, and starts those pools fresh.
 *   (str: u32 length, then the bytes.)  The file is exactly H + 4 nfds + B + 4 bytes.
 *
 * Versions.  A binary writes HANDOFF_VERSION and reads every version up to it; meeting a
 * newer one (a downgrade by reload) it reads the stable part only and falls back: the
 * connections are closed, and their clients find their sessions again the way they do
 * after a crash (re-claim from the journal, which is complete).  A change of the body
 * means a new version; the stable part never changes meaning.
 *
 * Trust.  The handoff comes from the previous image of this very process, so it is not
 * hostile, but it is checked as if it could be damaged: both crcs, exact lengths, kinds,
 * flags, every descriptor >= 3, open and listed once, the pid ours.  A stable part that
 * does not check out is not used at all (handoff_take: the daemon exits, and its service
 * manager restarts it on the crash path).
 *
 * Locks: none; start-up and the loop thread.
 */
#define _GNU_SOURCE
#include "handoff.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "log.h"
#include "pinpool_err.h"

#define HANDOFF_MAGIC "PPHNDOFF"
#define HEADER_LEN_V1 48u
#define OFF_CRC 16u
#define CONN_FIXED 28u /* a connection's bytes in version 1 before its two strings */

static void why_set(char *why, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void why_set(char *why, size_t n, const char *fmt, ...) {
  va_list ap;
  if (!why || !n) return;
  va_start(ap, fmt);
  vsnprintf(why, n, fmt, ap);
  va_end(ap);
}

/* ---- writing ---------------------------------------------------------------------------- */

static size_t body_size(const handoff_t *h, uint32_t version) {
  size_t n = 8 + 8 + 8 + 4 + 4 + strlen(h->socket_path) + 4 + 16u * h->ndetached + 4;
  for (uint32_t i = 0; i < h->nconns; i++)
    n += CONN_FIXED + 4 + h->conns[i].in_len + 4 + h->conns[i].out_len;
  if (version >= 2) {
    n += 4;
    for (uint32_t i = 0; i < h->npools; i++)
      n += 4 + strlen(h->pools[i].name) + 12;
  }
  return n;
}

static int write_all(int fd, const uint8_t *p, size_t len) {
  while (len) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return PP_EOS;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int handoff_write(const handoff_t *h, uint32_t version, int *ret_fd) {
  size_t blen = body_size(h, version), fdlen = 4u * (size_t)h->nconns;
  size_t total = HEADER_LEN_V1 + fdlen + blen + 4;
  journal_enc_t e;
  uint8_t *buf;
  int fd, rc;

  if (blen > UINT32_MAX || (uint64_t)h->nconns * 4 > UINT32_MAX) return PP_EINVAL;
  if (!(buf = malloc(total))) return PP_ENOPRIVMEM;
  journal_enc_init(&e, buf, total);
  journal_enc_bytes(&e, HANDOFF_MAGIC, 8);
  journal_enc_u32(&e, version);
  journal_enc_u32(&e, HEADER_LEN_V1);
  journal_enc_u32(&e, 0); /* header_crc, below */
  journal_enc_u32(&e, h->flags);
  journal_enc_u32(&e, (uint32_t)getpid());
  journal_enc_u32(&e, (uint32_t)h->listen_fd);
  journal_enc_u32(&e, (uint32_t)h->region_fd);
  journal_enc_u32(&e, (uint32_t)h->journal_fd);
  journal_enc_u32(&e, h->nconns);
  journal_enc_u32(&e, (uint32_t)blen);
  for (uint32_t i = 0; i < h->nconns; i++)
    journal_enc_u32(&e, (uint32_t)h->conns[i].fd);
  size_t body_at = e.len;
  journal_enc_u64(&e, h->started_ms);
  journal_enc_u64(&e, h->reload_start_ns);
  journal_enc_u64(&e, h->next_session_id);
  journal_enc_u32(&e, h->reloads);
  journal_enc_str(&e, h->socket_path, strlen(h->socket_path));
  journal_enc_u32(&e, h->ndetached);
  for (uint32_t i = 0; i < h->ndetached; i++) {
    journal_enc_u64(&e, h->detached[i].session_id);
    journal_enc_u64(&e, h->detached[i].deadline_unix_ms);
  }
  journal_enc_u32(&e, h->nconns);
  for (uint32_t i = 0; i < h->nconns; i++) {
    const handoff_conn_t *c = &h->conns[i];
    journal_enc_u32(&e, (uint32_t)c->fd);
    journal_enc_u8(&e, c->kind);
    journal_enc_u8(&e, c->replay_armed ? 1 : 0);
    journal_enc_u16(&e, 0);
    journal_enc_u32(&e, c->uid);
    journal_enc_u64(&e, c->session_id);
    journal_enc_u64(&e, c->requests);
    journal_enc_str(&e, c->in, c->in_len);
    journal_enc_str(&e, c->out, c->out_len);
  }
  if (version >= 2) {
    journal_enc_u32(&e, h->npools);
    for (uint32_t i = 0; i < h->npools; i++) {
      journal_enc_str(&e, h->pools[i].name, strlen(h->pools[i].name));
      journal_enc_u32(&e, (uint32_t)h->pools[i].region_fd);
      journal_enc_u32(&e, (uint32_t)h->pools[i].journal_fd);
      journal_enc_u32(&e, h->pools[i].flags);
    }
  }
  uint32_t bcrc = journal_crc32c(0, buf + body_at, e.len - body_at);
  journal_enc_u32(&e, bcrc);
  if (e.err || e.len != total) {
    free(buf);
    return PP_EINTERNAL;
  }
  uint32_t hcrc = journal_crc32c(0, buf, HEADER_LEN_V1 + fdlen);
  for (int i = 0; i < 4; i++)
    buf[OFF_CRC + i] = (uint8_t)(hcrc >> (8 * i));

  fd = memfd_create("pinpoold-handoff", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    free(buf);
    return PP_EOS;
  }
  rc = write_all(fd, buf, total);
  free(buf);
  /* Sealed: nothing changes it between the two images. */
  if (!rc && (lseek(fd, 0, SEEK_SET) != 0 ||
              fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)))
    rc = PP_EOS;
  if (rc) {
    close(fd);
    return rc;
  }
  *ret_fd = fd;
  return 0;
}

/* ---- reading ---------------------------------------------------------------------------- */

void handoff_free(handoff_t *h) {
  if (!h) return;
  for (uint32_t i = 0; h->conns && i < h->nconns; i++) {
    free(h->conns[i].in);
    free(h->conns[i].out);
  }
  free(h->conns);
  free(h->detached);
  free(h->pools);
  h->conns = NULL;
  h->detached = NULL;
  h->pools = NULL;
  h->nconns = h->ndetached = h->npools = 0;
}

static int read_whole(int fd, uint8_t **ret, size_t *ret_len) {
  struct stat st;
  uint8_t *buf;
  size_t got = 0;
  if (fstat(fd, &st) != 0 || st.st_size < 0) return PP_EOS;
  if (!(buf = malloc(st.st_size ? (size_t)st.st_size : 1))) return PP_ENOPRIVMEM;
  while (got < (size_t)st.st_size) {
    ssize_t n = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      free(buf);
      return PP_EOS;
    }
    got += (size_t)n;
  }
  *ret = buf;
  *ret_len = got;
  return 0;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Version 2's pools into h: each descriptor >= 3, none listed twice or among the stable
 * part's (handoff_take checks that they are open).  0 or PP_ECORRUPT (why) /
 * PP_ENOPRIVMEM. */
static int read_pools(journal_dec_t *d, const int *fds, uint32_t nfds, handoff_t *h, char *why,
                      size_t why_len) {
  uint32_t np = journal_dec_u32(d);
  if (d->err || np > (d->len - d->off) / 16) {
    why_set(why, why_len, "%u pools do not fit the body", np);
    return PP_ECORRUPT;
  }
  if (np && !(h->pools = calloc(np, sizeof *h->pools))) return PP_ENOPRIVMEM;
  h->npools = np;
  for (uint32_t i = 0; i < np; i++) {
    handoff_pool_t *p = &h->pools[i];
    if (journal_dec_cstr(d, p->name, sizeof p->name) || !p->name[0]) {
      why_set(why, why_len, "pool %u's name is malformed", i);
      return PP_ECORRUPT;
    }
    p->region_fd = (int)journal_dec_u32(d);
    p->journal_fd = (int)journal_dec_u32(d);
    p->flags = journal_dec_u32(d);
    if (d->err || (p->flags & ~(uint32_t)(HANDOFF_STORED | HANDOFF_JOURNAL_TEMP)) ||
        p->region_fd < 3 || p->journal_fd < 3 || p->region_fd == p->journal_fd) {
      why_set(why, why_len, "pool '%s' does not check out", p->name);
      return PP_ECORRUPT;
    }
    for (uint32_t j = 0; j < nfds + 3 + 2 * i; j++) {
      int other = j < nfds                  ? fds[j]
                  : j == nfds               ? h->listen_fd
                  : j == nfds + 1           ? h->region_fd
                  : j == nfds + 2           ? h->journal_fd
                  : (j - nfds - 3) % 2 == 0 ? h->pools[(j - nfds - 3) / 2].region_fd
                                            : h->pools[(j - nfds - 3) / 2].journal_fd;
      if (other == p->region_fd || other == p->journal_fd) {
        why_set(why, why_len, "pool '%s''s descriptor %d is listed twice", p->name, other);
        return PP_ECORRUPT;
      }
    }
  }
  return 0;
}

/* The body (version 1 or 2) into h.  0 or PP_ECORRUPT (why) / PP_ENOPRIVMEM. */
static int read_body(const uint8_t *body, size_t len, uint32_t version, const int *fds,
                     uint32_t nfds, handoff_t *h, char *why, size_t why_len) {
  journal_dec_t d;
  int rc = 0;

  journal_dec_init(&d, body, len);
  h->started_ms = journal_dec_u64(&d);
  h->reload_start_ns = journal_dec_u64(&d);
  h->next_session_id = journal_dec_u64(&d);
  h->reloads = journal_dec_u32(&d);
  if (journal_dec_cstr(&d, h->socket_path, sizeof h->socket_path)) {
    why_set(why, why_len, "the socket path is malformed");
    return PP_ECORRUPT;
  }
  uint32_t nd = journal_dec_u32(&d);
  if (d.err || nd > (len - d.off) / 16) {
    why_set(why, why_len, "%u detached sessions do not fit the body", nd);
    return PP_ECORRUPT;
  }
  if (nd && !(h->detached = calloc(nd, sizeof *h->detached))) return PP_ENOPRIVMEM;
  h->ndetached = nd;
  for (uint32_t i = 0; i < nd; i++) {
    h->detached[i].session_id = journal_dec_u64(&d);
    h->detached[i].deadline_unix_ms = journal_dec_u64(&d);
  }
  uint32_t nc = journal_dec_u32(&d);
  if (d.err || nc != nfds) {
    why_set(why, why_len, "the body describes %u connections, the fd list %u", nc, nfds);
    return PP_ECORRUPT;
  }
  if (nc && !(h->conns = calloc(nc, sizeof *h->conns))) return PP_ENOPRIVMEM;
  h->nconns = nc;
  for (uint32_t i = 0; i < nc && !rc; i++) {
    handoff_conn_t *c = &h->conns[i];
    const void *in, *out;
    size_t in_len = 0, out_len = 0;
    c->fd = (int)journal_dec_u32(&d);
    c->kind = journal_dec_u8(&d);
    uint8_t flags = journal_dec_u8(&d);
    uint16_t pad = journal_dec_u16(&d);
    c->uid = journal_dec_u32(&d);
    c->session_id = journal_dec_u64(&d);
    c->requests = journal_dec_u64(&d);
    in = journal_dec_str(&d, &in_len);
    out = in ? journal_dec_str(&d, &out_len) : NULL;
    c->replay_armed = flags & 1;
    if (d.err || !in || !out) {
      why_set(why, why_len, "connection %u is cut short", i);
      rc = PP_ECORRUPT;
    } else if (c->fd != fds[i] || (flags & ~1u) || pad ||
               (c->kind != HANDOFF_CONN_FRESH && c->kind != HANDOFF_CONN_SESSION &&
                c->kind != HANDOFF_CONN_CLOSING) ||
               (c->kind == HANDOFF_CONN_SESSION) != (c->session_id != 0)) {
      why_set(why, why_len, "connection %u (fd %d) does not check out", i, c->fd);
      rc = PP_ECORRUPT;
    } else {
      if (in_len && !(c->in = malloc(in_len))) rc = PP_ENOPRIVMEM;
      if (out_len && !(c->out = malloc(out_len))) rc = PP_ENOPRIVMEM;
      if (!rc) {
        if (in_len) memcpy(c->in, in, in_len);
        if (out_len) memcpy(c->out, out, out_len);
        c->in_len = (uint32_t)in_len;
        c->out_len = (uint32_t)out_len;
      }
    }
  }
  if (!rc && version >= 2) rc = read_pools(&d, fds, nfds, h, why, why_len);
  if (!rc && journal_dec_finish(&d)) {
    why_set(why, why_len, "%zu bytes left over at the end of the body", len - d.off);
    rc = PP_ECORRUPT;
  }
  return rc;
}

int handoff_read(int fd, handoff_t *ret, int **ret_fds, uint32_t *ret_nfds, char *why,
                 size_t why_len) {
  handoff_t h = {.listen_fd = -1, .region_fd = -1, .journal_fd = -1};
  uint8_t *buf = NULL;
  size_t len = 0;
  int *fds = NULL, rc;

  *ret_fds = NULL;
  *ret_nfds = 0;
  *ret = h;
  if ((rc = read_whole(fd, &buf, &len))) {
    why_set(why, why_len, "cannot read the handoff: %s", strerror(errno));
    return rc;
  }
  /* The stable part. */
  rc = PP_ECORRUPT;
  if (len < HEADER_LEN_V1 || memcmp(buf, HANDOFF_MAGIC, 8)) {
    why_set(why, why_len, "not a handoff (%zu bytes, no magic)", len);
    goto out;
  }
  uint32_t version = get32(buf + 8), hlen = get32(buf + 12), hcrc = get32(buf + OFF_CRC);
  uint32_t nfds = get32(buf + 40), blen = get32(buf + 44);
  if (hlen < HEADER_LEN_V1 || hlen > len || nfds > (len - hlen) / 4 ||
      (uint64_t)hlen + 4ull * nfds + blen + 4 != len) {
    why_set(why, why_len,
            "the header's lengths (%u, %u fds, body %u) do not match its %zu bytes", hlen, nfds,
            blen, len);
    goto out;
  }
  uint8_t zero[4] = {0};
  uint32_t crc = journal_crc32c(0, buf, OFF_CRC);
  crc = journal_crc32c(crc, zero, 4);
  crc = journal_crc32c(crc, buf + OFF_CRC + 4, hlen + 4u * nfds - OFF_CRC - 4);
  if (crc != hcrc) {
    why_set(why, why_len, "the header's crc does not match");
    goto out;
  }
  if ((pid_t)get32(buf + 24) != getpid()) {
    why_set(why, why_len, "written by pid %u, not by this process (%d)", get32(buf + 24),
            (int)getpid());
    goto out;
  }
  if ((int)get32(buf + 28) < 0 || (int)get32(buf + 32) < 0 || (int)get32(buf + 36) < 0) {
    why_set(why, why_len, "the socket, region or journal descriptor is missing");
    goto out;
  }
  h.version = version;
  h.flags = get32(buf + 20);
  h.listen_fd = (int)get32(buf + 28);
  h.region_fd = (int)get32(buf + 32);
  h.journal_fd = (int)get32(buf + 36);
  if (nfds && !(fds = malloc(nfds * sizeof *fds))) {
    rc = PP_ENOPRIVMEM;
    goto out;
  }
  for (uint32_t i = 0; i < nfds; i++)
    fds[i] = (int)get32(buf + hlen + 4 * i);
  *ret_fds = fds;
  *ret_nfds = nfds;
  *ret = h;

  /* The body. */
  if (version == 0 || version > HANDOFF_VERSION) {
    why_set(why, why_len, "handoff version %u, this binary reads up to %u", version,
            HANDOFF_VERSION);
    rc = PP_EVERSION;
    goto out;
  }
  const uint8_t *body = buf + hlen + 4u * nfds;
  if (journal_crc32c(0, body, blen) != get32(body + blen)) {
    why_set(why, why_len, "the body's crc does not match");
    goto out;
  }
  if (h.flags & ~HANDOFF_FLAGS_KNOWN) {
    why_set(why, why_len, "unknown flags %#x", h.flags);
    goto out;
  }
  rc = read_body(body, blen, version, fds, nfds, &h, why, why_len);
  if (rc) {
    handoff_free(&h);
    goto out;
  }
  *ret = h;
out:
  free(buf);
  return rc;
}

/* ---- the new image's start ------------------------------------------------------------- */

static bool fd_open(int fd) {
  return fd >= 3 && fcntl(fd, F_GETFD) >= 0;
}

static int fd_cloexec(int fd) {
  int f = fcntl(fd, F_GETFD);
  return f < 0 || fcntl(fd, F_SETFD, f | FD_CLOEXEC) < 0 ? -1 : 0;
}

/* Every descriptor of the stable part is >= 3, open and listed once (hfd: the handoff's). */
static bool stable_fds_ok(const handoff_t *h, const int *fds, uint32_t nfds, int hfd, char *why,
                          size_t why_len) {
  int three[3] = {h->listen_fd, h->region_fd, h->journal_fd};
  for (uint32_t i = 0; i < nfds + 3; i++) {
    int fd = i < 3 ? three[i] : fds[i - 3];
    if (!fd_open(fd) || fd == hfd) {
      why_set(why, why_len, "descriptor %d is not an open descriptor it may take", fd);
      return false;
    }
    for (uint32_t j = 0; j < i; j++)
      if ((j < 3 ? three[j] : fds[j - 3]) == fd) {
        why_set(why, why_len, "descriptor %d is listed twice", fd);
        return false;
      }
  }
  return true;
}

int handoff_take(handoff_t *ret) {
  const char *v = getenv(HANDOFF_ENV);
  char why[160] = "", *end;
  int *fds = NULL, hfd, rc;
  uint32_t nfds = 0;
  long n;

  if (!v) return 0;
  errno = 0;
  n = strtol(v, &end, 10);
  hfd = errno || *end || end == v || n < 3 || n > INT32_MAX ? -1 : (int)n;
  unsetenv(HANDOFF_ENV); /* never handed on to anything we start */
  if (hfd < 0 || !fd_open(hfd)) {
    log_err("%s does not name an open descriptor: not taking over from a previous image",
            HANDOFF_ENV);
    return PP_ECORRUPT;
  }
  rc = handoff_read(hfd, ret, &fds, &nfds, why, sizeof why);
  close(hfd);
  if (ret->listen_fd < 0) { /* the stable part is not usable */
    log_err("the handoff from the previous image cannot be used at all: %s", why);
    free(fds);
    return PP_ECORRUPT;
  }
  if (!stable_fds_ok(ret, fds, nfds, hfd, why, sizeof why)) {
    log_err("the handoff from the previous image cannot be used at all: %s", why);
    handoff_free(ret);
    free(fds);
    return PP_ECORRUPT;
  }
  /* Close-on-exec again, as every descriptor of ours is: the next reload chooses. */
  fd_cloexec(ret->listen_fd);
  fd_cloexec(ret->region_fd);
  fd_cloexec(ret->journal_fd);
  for (uint32_t i = 0; i < nfds; i++)
    fd_cloexec(fds[i]);
  for (uint32_t i = 0; i < ret->npools; i++) {
    handoff_pool_t *p = &ret->pools[i];
    if (!fd_open(p->region_fd) || !fd_open(p->journal_fd) || p->region_fd == hfd ||
        p->journal_fd == hfd) {
      log_err("the handoff names descriptors of pool '%s' that are not open: the pool starts "
              "fresh",
              p->name);
      p->region_fd = p->journal_fd = -1;
      continue;
    }
    fd_cloexec(p->region_fd);
    fd_cloexec(p->journal_fd);
  }
  if (rc) {
    /* The crash path: the journal is complete (the old image compacted it), but this
     * binary cannot say which connection is whose, so every connection is closed and
     * its client re-claims its session from the journal. */
    for (uint32_t i = 0; i < nfds; i++)
      close(fds[i]);
    ret->fell_back = true;
    snprintf(ret->why, sizeof ret->why, "%s", why);
    log_err("the handoff from the previous image cannot be read (%s): its %u connections "
            "are closed, and their clients re-claim their sessions as after a crash",
            why, nfds);
  }
  free(fds);
  return 1;
}
