/*
 * test_client_reclaim.c — libpinpool keeps its session when pinpoold restarts under it.
 *
 * A scripted fake daemon (a thread on a temporary socket) plays the restarting pinpoold:
 * it serves a session, dies at a chosen request in a chosen way — before reading it, after
 * reading it, after carrying it out, in the middle of its reply, or right after answering
 * — goes away (the socket path disappears), drops the first connections of its next life
 * unanswered (a daemon still starting), and comes back on the same path with the same
 * memfd: giving the session back (Welcome.reclaimed), or with another region, a new session,
 * STATE_LOST, or never.  Its books (who holds which buffer and object, and the reply to the
 * last request that changed them: the journal) survive its deaths, so it answers a request
 * it already carried out from its records, as pinpoold does: exactly once.  It checks what
 * a re-claiming client must do — the session token and name in Hello, the lost request sent
 * again with its id, ids increasing across connections — and counts every departure.
 *
 * The process does not ignore SIGPIPE: a send on a connection the daemon closed must not
 * kill it.  No fixed sleeps decide an outcome: the fake's pause while it is away only makes
 * the client meet a missing socket; every wait is bounded and fails the test rather than
 * hanging it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "pinpool.h"

#define FAKE_REGION (1u << 20)
#define FAKE_SESSION 7u
#define FAKE_BUF_SIZE 4096u
/* Buffers lie in the first half of the region, objects in the second. */
#define FAKE_OBJ_SIZE 64u
#define FAKE_OBJ_BASE (FAKE_REGION / 2)
#define FAKE_NOBJ ((FAKE_REGION - FAKE_OBJ_BASE) / FAKE_OBJ_SIZE)
#define FAKE_SLAB 4096u
#define FAKE_CACHE_ID 3u
/* Any wait longer than this is a test that would otherwise hang. */
#define FAKE_WAIT_MS 20000

static const uint8_t fake_token[16] = "session-token-16";

typedef enum {
  DIE_BEFORE_READ,  /* the request is in the socket, unread */
  DIE_AFTER_READ,   /* read, not carried out */
  DIE_AFTER_COMMIT, /* carried out and recorded, no reply */
  DIE_MID_REPLY,    /* carried out, recorded, half the reply sent */
  DIE_AFTER_REPLY,  /* answered; the next request meets a closed connection */
  DIE_MODES
} die_t;

typedef enum {
  BACK_RECLAIMED,    /* the session back: the restart pinpoold is built for */
  BACK_OTHER_REGION, /* Welcome.reclaimed, but another region_id */
  BACK_NEW_SESSION,  /* Welcome.reclaimed false: a new session */
  BACK_STATE_LOST,   /* Hello answered STATE_LOST */
  BACK_NEVER,        /* stays away */
} back_t;

typedef struct fake {
  char dir[64], sock[96];
  int lfd;   /* listening socket; -1 while away */
  int memfd; /* the region, the same in every life */
  uint8_t *map;
  int stop[2]; /* the test's "stop now" */
  pthread_t t;
  bool started;
  pthread_mutex_t mu; /* everything below; cv signals changes */
  pthread_cond_t cv;

  /* The script (set before fake_start, or under mu). */
  uint8_t region_id[16];
  bool no_region_id; /* a daemon that predates restart survival */
  uint32_t grace_ms;
  unsigned kill_at;    /* die at this request (1 = the first after Hello; 0: never) */
  unsigned kill_every; /* or at every kill_every-th, while kills_left, rotating the modes */
  unsigned kills_left;
  die_t die;
  back_t back;
  unsigned eof_rounds; /* connections dropped unanswered before each comeback */
  bool hold;           /* stay away until the test clears it */

  /* The books, which survive deaths. */
  bool session; /* the session exists */
  uint64_t next_handle;
  unsigned allocs, frees, objs_out, bad_frees, replays;
  uint8_t objs[FAKE_NOBJ];
  uint64_t rec_id; /* the journal: the last changing request and its reply */
  uint8_t *rec_reply;
  size_t rec_len;

  /* What it saw. */
  unsigned accepts, lives, requests, deaths, eofs_left;
  bool away;               /* dead and not back yet */
  uint64_t max_id;         /* ids must keep increasing... */
  uint64_t lost_id;        /* ...but for the request lost when it died (0: none)... */
  uint64_t max_before;     /* ...or one it never saw: above every id of earlier lives */
  uint64_t first_id_after; /* the first request id of the last life */
  uint64_t hello_id;       /* of the last Hello */
  unsigned retried;        /* lives that began with the lost request */
  unsigned bad_ids, bad_tokens, errors;
  char name[80]; /* Hello.client_name of the last Hello */
} fake_t;

#define FAKE_GET(f, expr)                                                                      \
  ({                                                                                           \
    pthread_mutex_lock(&(f)->mu);                                                              \
    __typeof__(expr) v_ = (expr);                                                              \
    pthread_mutex_unlock(&(f)->mu);                                                            \
    v_;                                                                                        \
  })

/* ---- the fake's plumbing ----------------------------------------------------------- */

/* Wait until fd is readable: 0; -1 when told to stop or after FAKE_WAIT_MS (an error). */
static int fake_wait_in(fake_t *f, int fd) {
  struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = f->stop[0], .events = POLLIN}};
  for (;;) {
    int n = poll(p, 2, FAKE_WAIT_MS);
    if (n < 0 && errno == EINTR) continue;
    if (p[1].revents) return -1;
    if (n <= 0) {
      pthread_mutex_lock(&f->mu);
      f->errors++;
      pthread_mutex_unlock(&f->mu);
      return -1;
    }
    return 0;
  }
}

static int fake_listen(fake_t *f) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", f->sock);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 16) < 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

/* One request frame: 1 with *ret_req, 0 on EOF or a bad frame, -1 when told to stop. */
static int fake_read(fake_t *f, int fd, Pinpool__V1__Request **ret_req) {
  uint8_t hdr[4], *buf;
  if (fake_wait_in(f, fd) < 0) return -1;
  if (recv(fd, hdr, 4, MSG_WAITALL) != 4) return 0;
  uint32_t n = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
  if (n == 0 || n > 65536 || !(buf = malloc(n))) return 0;
  if (recv(fd, buf, n, MSG_WAITALL) != (ssize_t)n) {
    free(buf);
    return 0;
  }
  *ret_req = frame_unpack_request(buf, n, 1 << 20);
  free(buf);
  return *ret_req ? 1 : 0;
}

/* The id of the request waiting in the socket, left unread. */
static uint64_t fake_peek_id(fake_t *f, int fd) {
  uint8_t buf[4096];
  for (int tries = 0; tries < 1000; tries++) {
    if (fake_wait_in(f, fd) < 0) return 0;
    ssize_t got = recv(fd, buf, sizeof buf, MSG_PEEK);
    if (got <= 0) return 0;
    if (got >= 4) {
      uint32_t n = buf[0] | buf[1] << 8 | buf[2] << 16 | (uint32_t)buf[3] << 24;
      if (n > 0 && n <= sizeof buf - 4 && (size_t)got >= 4 + n) {
        Pinpool__V1__Request *req = frame_unpack_request(buf + 4, n, 1 << 20);
        uint64_t id = req ? req->id : 0;
        frame_free_request(req);
        return id;
      }
    }
    struct timespec ms = {0, 1000000}; /* the rest of a frame is on its way */
    nanosleep(&ms, NULL);
  }
  return 0;
}

static int fake_send(int fd, const uint8_t *buf, size_t len, int pass_fd) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = frame_sendmsg_fd(fd, buf + off, len - off, off == 0 ? pass_fd : -1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    off += (size_t)n;
  }
  return 0;
}

static uint8_t *fake_pack(const Pinpool__V1__Response *r, size_t *ret_len) {
  uint8_t *buf = NULL;
  if (frame_pack(&r->base, FRAME_MAX_LIMIT, &buf, ret_len) < 0) return NULL;
  return buf;
}

/* ---- the fake's books: a request carried out, its reply packed (f->mu held) ----------- */

static uint8_t *fake_carry_out(fake_t *f, const Pinpool__V1__Request *req, bool *ret_changes,
                               size_t *ret_len) {
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  Pinpool__V1__Buffer b = PINPOOL__V1__BUFFER__INIT;
  Pinpool__V1__CacheInfo ci = PINPOOL__V1__CACHE_INFO__INIT;
  Pinpool__V1__Objects ob = PINPOOL__V1__OBJECTS__INIT;
  Pinpool__V1__Stats st = PINPOOL__V1__STATS__INIT;
  uint64_t offs[PROTO_OBJECTS_MAX];

  r.id = req->id;
  *ret_changes = true;
  switch (req->body_case) {
  case PINPOOL__V1__REQUEST__BODY_ALLOC:
    b.handle = ++f->next_handle;
    b.offset = (b.handle % (FAKE_OBJ_BASE / FAKE_BUF_SIZE)) * FAKE_BUF_SIZE;
    b.size = FAKE_BUF_SIZE;
    f->allocs++;
    r.body_case = PINPOOL__V1__RESPONSE__BODY_BUFFER;
    r.buffer = &b;
    break;
  case PINPOOL__V1__REQUEST__BODY_FREE:
    if (req->free->handle == 0 || req->free->handle > f->next_handle)
      r.status = PINPOOL__V1__STATUS__NOT_FOUND;
    else
      f->frees++;
    break;
  case PINPOOL__V1__REQUEST__BODY_CACHE_OPEN:
    *ret_changes = false;
    ci.cache_id = FAKE_CACHE_ID;
    ci.object_size = FAKE_OBJ_SIZE;
    ci.align = FAKE_OBJ_SIZE;
    ci.objects_per_slab = FAKE_SLAB / FAKE_OBJ_SIZE;
    ci.slab_bytes = FAKE_SLAB;
    r.body_case = PINPOOL__V1__RESPONSE__BODY_CACHE;
    r.cache = &ci;
    break;
  case PINPOOL__V1__REQUEST__BODY_CACHE_ALLOC: {
    uint32_t want = req->cache_alloc->count;
    size_t n = 0;
    for (uint32_t i = 0; i < FAKE_NOBJ && n < want && n < PROTO_OBJECTS_MAX; i++) {
      if (f->objs[i]) continue;
      f->objs[i] = 1;
      offs[n++] = FAKE_OBJ_BASE + (uint64_t)i * FAKE_OBJ_SIZE;
    }
    f->objs_out += (unsigned)n;
    ob.n_offsets = n;
    ob.offsets = offs;
    r.body_case = PINPOOL__V1__RESPONSE__BODY_OBJECTS;
    r.objects = &ob;
    break;
  }
  case PINPOOL__V1__REQUEST__BODY_CACHE_FREE: {
    const Pinpool__V1__CacheFree *cf = req->cache_free;
    for (size_t i = 0; i < cf->n_offsets; i++) { /* all or nothing */
      uint64_t o = cf->offsets[i];
      if (o < FAKE_OBJ_BASE || o >= FAKE_REGION || o % FAKE_OBJ_SIZE != 0 ||
          !f->objs[(o - FAKE_OBJ_BASE) / FAKE_OBJ_SIZE]) {
        f->bad_frees++;
        r.status = PINPOOL__V1__STATUS__DOUBLE_FREE;
        break;
      }
    }
    if (r.status == 0) {
      for (size_t i = 0; i < cf->n_offsets; i++)
        f->objs[(cf->offsets[i] - FAKE_OBJ_BASE) / FAKE_OBJ_SIZE] = 0;
      f->objs_out -= (unsigned)cf->n_offsets;
    }
    break;
  }
  case PINPOOL__V1__REQUEST__BODY_STATS:
    *ret_changes = false;
    st.region_size = FAKE_REGION;
    r.body_case = PINPOOL__V1__RESPONSE__BODY_STATS;
    r.stats = &st;
    break;
  default:
    *ret_changes = false;
    f->errors++;
    r.status = PINPOOL__V1__STATUS__PROTOCOL_ERROR;
    break;
  }
  return fake_pack(&r, ret_len);
}

/* ---- the fake's lives ------------------------------------------------------------------ */

/* Away: the socket goes, then (a pause, the test's hold, the script) it comes back. */
static void fake_die(fake_t *f) {
  close(f->lfd);
  unlink(f->sock);
  pthread_mutex_lock(&f->mu);
  f->lfd = -1;
  f->deaths++;
  f->away = true;
  if (f->kills_left) f->kills_left--;
  pthread_cond_broadcast(&f->cv);
  bool never = f->back == BACK_NEVER;
  while (f->hold && !never) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += FAKE_WAIT_MS / 1000;
    if (pthread_cond_timedwait(&f->cv, &f->mu, &until) != 0) {
      f->errors++;
      break;
    }
  }
  pthread_mutex_unlock(&f->mu);
  if (never) return;
  struct timespec pause = {0, 3000000}; /* the client meets a missing socket */
  nanosleep(&pause, NULL);
  int lfd = fake_listen(f);
  pthread_mutex_lock(&f->mu);
  f->lfd = lfd;
  if (lfd < 0) f->errors++;
  f->eofs_left = f->eof_rounds;
  f->away = false;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
}

/* Hello: 1 when the session goes on on fd, 0 when the connection is over. */
static int fake_hello(fake_t *f, int fd) {
  Pinpool__V1__Request *req = NULL;
  Pinpool__V1__Welcome w = PINPOOL__V1__WELCOME__INIT;
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  uint8_t other_region[16], other_token[16];
  size_t len;
  int ok = 0;

  if (fake_read(f, fd, &req) <= 0) return 0;
  pthread_mutex_lock(&f->mu);
  if (req->body_case != PINPOOL__V1__REQUEST__BODY_HELLO) {
    f->errors++;
    goto out;
  }
  const Pinpool__V1__Hello *h = req->hello;
  snprintf(f->name, sizeof f->name, "%s", h->client_name ? h->client_name : "");
  if (req->id <= f->max_id) f->bad_ids++;
  f->max_before = f->max_id;
  f->max_id = req->id;
  f->hello_id = req->id;
  r.id = req->id;
  r.body_case = PINPOOL__V1__RESPONSE__BODY_WELCOME;
  r.welcome = &w;
  w.protocol_version = 1;
  w.session_id = FAKE_SESSION;
  w.session_token.data = (uint8_t *)fake_token;
  w.session_token.len = sizeof fake_token;
  w.region_size = FAKE_REGION;
  w.page_size = 4096;
  w.min_block = 4096;
  w.max_frame = 65536;
  w.grace_ms = f->grace_ms;
  if (!f->no_region_id) {
    w.region_id.data = f->region_id;
    w.region_id.len = sizeof f->region_id;
  }
  if (!f->session) { /* the first life: a new session */
    if (h->session_token.len != 0) f->bad_tokens++;
    f->session = true;
  } else {
    if (h->session_token.len != sizeof fake_token ||
        memcmp(h->session_token.data, fake_token, sizeof fake_token) != 0)
      f->bad_tokens++;
    w.reclaimed = true;
    switch (f->back) {
    case BACK_RECLAIMED: break;
    case BACK_OTHER_REGION:
      memcpy(other_region, f->region_id, sizeof other_region);
      other_region[0] ^= 0xff;
      w.region_id.data = other_region;
      break;
    case BACK_NEW_SESSION:
      memcpy(other_token, fake_token, sizeof other_token);
      other_token[0] ^= 0xff;
      w.session_token.data = other_token;
      w.session_id = FAKE_SESSION + 1;
      w.reclaimed = false;
      break;
    case BACK_STATE_LOST:
      r.status = PINPOOL__V1__STATUS__STATE_LOST;
      r.body_case = PINPOOL__V1__RESPONSE__BODY__NOT_SET;
      break;
    case BACK_NEVER: f->errors++; break;
    }
  }
  uint8_t *buf = fake_pack(&r, &len);
  ok = buf && r.status == 0;
  if (buf && fake_send(fd, buf, len, r.status == 0 ? f->memfd : -1) < 0) ok = 0;
  free(buf);
  if (ok) {
    f->lives++;
    f->first_id_after = 0;
  }
out:
  pthread_mutex_unlock(&f->mu);
  frame_free_request(req);
  return ok;
}

/* Should the request just come in be the death of this life?  (f->mu held.) */
static bool fake_dies_now(fake_t *f, die_t *ret_how) {
  if (f->kill_at && f->requests == f->kill_at) {
    *ret_how = f->die;
    return true;
  }
  if (f->kill_every && f->kills_left && f->requests % f->kill_every == 0) {
    *ret_how = (die_t)(f->deaths % DIE_MODES);
    return true;
  }
  return false;
}

/* Serve one connection: Hello, then requests, until the client goes (0), the fake dies
 * (1), or it is told to stop (-1). */
static int fake_serve(fake_t *f, int fd) {
  if (fake_hello(f, fd) == 0) return 0;
  for (;;) {
    Pinpool__V1__Request *req = NULL;
    die_t how = DIE_AFTER_READ;
    bool dies, changes;
    size_t len = 0;
    uint8_t *reply;

    if (fake_wait_in(f, fd) < 0) return -1;
    pthread_mutex_lock(&f->mu);
    f->requests++;
    dies = fake_dies_now(f, &how);
    pthread_mutex_unlock(&f->mu);
    if (dies && how == DIE_BEFORE_READ) {
      uint64_t id = fake_peek_id(f, fd);
      pthread_mutex_lock(&f->mu);
      f->lost_id = id;
      if (id > f->max_id) f->max_id = id;
      pthread_mutex_unlock(&f->mu);
      return 1; /* unread bytes: the client's end sees a reset */
    }
    int rc = fake_read(f, fd, &req);
    if (rc <= 0) {
      pthread_mutex_lock(&f->mu);
      f->requests--; /* EOF: the client went */
      pthread_mutex_unlock(&f->mu);
      return rc;
    }
    pthread_mutex_lock(&f->mu);
    if (f->first_id_after == 0 && f->lives > 1) {
      /* The first request after a re-claim: the one this daemon lost, with its id; or one
       * lost on the way that it never saw, with an id above all it did see before the
       * Hello; or a new one. */
      f->first_id_after = req->id;
      if (f->lost_id) {
        if (req->id == f->lost_id)
          f->retried++;
        else
          f->bad_ids++;
      } else if (req->id <= f->max_before || req->id == f->hello_id) {
        f->bad_ids++;
      }
      if (req->id > f->max_id) f->max_id = req->id;
    } else {
      if (req->id <= f->max_id) f->bad_ids++;
      f->max_id = req->id;
    }
    f->lost_id = 0;
    if (dies && how == DIE_AFTER_READ) {
      f->lost_id = req->id;
      pthread_mutex_unlock(&f->mu);
      frame_free_request(req);
      return 1;
    }
    if (req->id == f->rec_id && f->rec_reply) { /* done before it died: the same answer */
      reply = malloc(f->rec_len);
      if (reply) memcpy(reply, f->rec_reply, f->rec_len);
      len = f->rec_len;
      f->replays++;
    } else {
      reply = fake_carry_out(f, req, &changes, &len);
      if (reply && changes) {
        free(f->rec_reply);
        f->rec_reply = malloc(len);
        if (f->rec_reply) memcpy(f->rec_reply, reply, len);
        f->rec_len = len;
        f->rec_id = req->id;
      }
    }
    if (dies && how != DIE_AFTER_REPLY) f->lost_id = req->id;
    pthread_mutex_unlock(&f->mu);
    frame_free_request(req);
    if (!reply) return 1;
    if (dies && how == DIE_AFTER_COMMIT) len = 0;
    if (dies && how == DIE_MID_REPLY) len /= 2;
    int sent = fake_send(fd, reply, len, -1);
    free(reply);
    if (dies) return 1;
    if (sent < 0) return 0;
  }
}

static void *fake_main(void *arg) {
  fake_t *f = arg;
  for (;;) {
    int lfd = FAKE_GET(f, f->lfd);
    if (lfd < 0) { /* gone for good: wait to be stopped */
      struct pollfd p = {.fd = f->stop[0], .events = POLLIN};
      poll(&p, 1, FAKE_WAIT_MS);
      return NULL;
    }
    if (fake_wait_in(f, lfd) < 0) return NULL;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    pthread_mutex_lock(&f->mu);
    f->accepts++;
    bool drop = f->eofs_left > 0;
    if (drop) f->eofs_left--;
    pthread_mutex_unlock(&f->mu);
    if (drop) { /* still starting: the connection is dropped unanswered */
      close(fd);
      continue;
    }
    int rc = fake_serve(f, fd);
    close(fd);
    if (rc < 0) return NULL;
    if (rc == 1) fake_die(f);
  }
}

/* ---- fixture ----------------------------------------------------------------------------- */

static int fake_setup(void **state) {
  fake_t *f = calloc(1, sizeof *f);
  if (!f) return -1;
  snprintf(f->dir, sizeof f->dir, "/tmp/pp-reclaim-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  snprintf(f->sock, sizeof f->sock, "%s/fake.sock", f->dir);
  f->memfd = memfd_create("fake-region", MFD_CLOEXEC);
  if (f->memfd < 0 || ftruncate(f->memfd, FAKE_REGION) < 0) return -1;
  f->map = mmap(NULL, FAKE_REGION, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
  if (f->map == MAP_FAILED || pipe2(f->stop, O_CLOEXEC) < 0) return -1;
  f->lfd = fake_listen(f);
  if (f->lfd < 0) return -1;
  for (unsigned i = 0; i < sizeof f->region_id; i++)
    f->region_id[i] = (uint8_t)(0xA0 + i);
  f->grace_ms = 5000;
  f->eof_rounds = 1;
  pthread_mutex_init(&f->mu, NULL);
  pthread_cond_init(&f->cv, NULL);
  *state = f;
  return 0;
}

static void fake_start(fake_t *f) {
  assert_int_equal(pthread_create(&f->t, NULL, fake_main, f), 0);
  f->started = true;
}

/* Stop the fake's thread; its listening socket (if it has one) stays for the test. */
static void fake_stop(fake_t *f) {
  if (!f->started) return;
  assert_int_equal(write(f->stop[1], "x", 1), 1);
  assert_int_equal(pthread_join(f->t, NULL), 0);
  f->started = false;
}

static int fake_teardown(void **state) {
  fake_t *f = *state;
  fake_stop(f);
  if (f->lfd >= 0) close(f->lfd);
  unlink(f->sock);
  rmdir(f->dir);
  munmap(f->map, FAKE_REGION);
  close(f->memfd);
  close(f->stop[0]);
  close(f->stop[1]);
  free(f->rec_reply);
  pthread_cond_destroy(&f->cv);
  pthread_mutex_destroy(&f->mu);
  free(f);
  return 0;
}

/* Wait until the fake has died n times (bounded). */
static void fake_wait_deaths(fake_t *f, unsigned n) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += FAKE_WAIT_MS / 1000;
  pthread_mutex_lock(&f->mu);
  while (f->deaths < n)
    if (pthread_cond_timedwait(&f->cv, &f->mu, &until) != 0) break;
  unsigned got = f->deaths;
  pthread_mutex_unlock(&f->mu);
  assert_int_equal(got, n);
}

static void fake_release(fake_t *f) {
  pthread_mutex_lock(&f->mu);
  f->hold = false;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
}

/* After a failed re-claim: stop the fake and listen on its path ourselves; run the call;
 * nobody may have connected (a Unix connect() is queued by the time it returns). */
static int listener_for_probe(fake_t *f) {
  fake_stop(f);
  if (f->lfd < 0) f->lfd = fake_listen(f);
  assert_true(f->lfd >= 0);
  assert_int_equal(fcntl(f->lfd, F_SETFL, O_NONBLOCK), 0);
  return f->lfd;
}

static void assert_nobody_connected(int lfd) {
  int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
  if (fd >= 0) close(fd);
  assert_int_equal(fd, -1);
  assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* How many of this process's fds refer to the region's memfd. */
static int fds_on_region(fake_t *f) {
  struct stat want, st;
  int n = 0;
  assert_int_equal(fstat(f->memfd, &want), 0);
  DIR *d = opendir("/proc/self/fd");
  assert_non_null(d);
  for (struct dirent *e; (e = readdir(d));) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == dirfd(d)) continue;
    if (fstat(fd, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino) n++;
  }
  closedir(d);
  return n;
}

static pp_client *connect_victim(fake_t *f) {
  pp_client *c = NULL;
  assert_int_equal(pp_connect(f->sock, "victim", &c), 0);
  return c;
}

/* ---- a restart in the middle of a call ------------------------------------------------ */

/* Request 1 (id 2) succeeds; request 2 (id 3) meets the daemon's death in the given way;
 * the daemon comes back after dropping two connections unanswered.  The call must return
 * the restarted daemon's answer, carried out once, as if nothing had happened. */
static void restart_during_a_call(fake_t *f, die_t how) {
  f->kill_at = 2;
  f->die = how;
  f->eof_rounds = 2;
  fake_start(f);
  pp_client *c = connect_victim(f);
  uint8_t *base = pp_base(c);
  pp_buffer b1, b2;
  assert_int_equal(pp_alloc(c, 4096, 0, &b1), 0);
  memset(b1.addr, 0xA5, 4096);

  assert_int_equal(pp_alloc(c, 4096, 0, &b2), 0);

  assert_int_equal(pp_reclaims(c), 1);
  assert_ptr_equal(pp_base(c), base);
  assert_int_equal(b2.handle, 2);
  assert_ptr_equal(b2.addr, base + b2.offset);
  /* The old pointers map the same memory the restarted daemon has. */
  assert_int_equal(((uint8_t *)b1.addr)[4095], 0xA5);
  assert_int_equal(f->map[b1.offset + 4095], 0xA5);
  f->map[b2.offset] = 0x5A;
  assert_int_equal(((uint8_t *)b2.addr)[0], 0x5A);
  /* The Welcome's memfd was closed: only the fake's own fd is on the region. */
  assert_int_equal(fds_on_region(f), 1);

  /* The daemon heard "victim" with its token, then the lost request with its id (3) after
   * a Hello with a higher one (at least 6: the dropped connections took a Hello each), and
   * carried it out once. */
  char name[sizeof f->name];
  pthread_mutex_lock(&f->mu);
  memcpy(name, f->name, sizeof name);
  pthread_mutex_unlock(&f->mu);
  assert_string_equal(name, "victim");
  assert_int_equal(FAKE_GET(f, f->lives), 2);
  assert_int_equal(FAKE_GET(f, f->accepts), 4);
  assert_int_equal(FAKE_GET(f, f->bad_tokens), 0);
  uint64_t hello_id = FAKE_GET(f, f->hello_id);
  assert_true(hello_id >= 6);
  assert_int_equal(FAKE_GET(f, f->first_id_after), 3);
  assert_int_equal(FAKE_GET(f, f->retried), 1);
  assert_int_equal(FAKE_GET(f, f->allocs), 2);
  assert_int_equal(FAKE_GET(f, f->replays), how == DIE_AFTER_COMMIT || how == DIE_MID_REPLY);

  /* And on it goes, ids still counting up. */
  assert_int_equal(pp_free(c, b2.handle), 0);
  assert_int_equal(FAKE_GET(f, f->max_id), hello_id + 1);
  assert_int_equal(FAKE_GET(f, f->bad_ids), 0);
  assert_int_equal(FAKE_GET(f, f->errors), 0);
  pp_disconnect(c);
}

static void a_daemon_dying_before_it_reads_the_request_is_invisible_to_the_caller(void **s) {
  restart_during_a_call(*s, DIE_BEFORE_READ);
}
static void a_daemon_dying_after_it_reads_the_request_is_invisible_to_the_caller(void **s) {
  restart_during_a_call(*s, DIE_AFTER_READ);
}
static void a_daemon_dying_after_it_carries_out_the_request_answers_it_once(void **s) {
  restart_during_a_call(*s, DIE_AFTER_COMMIT);
}
static void a_daemon_dying_in_the_middle_of_its_reply_answers_it_once(void **s) {
  restart_during_a_call(*s, DIE_MID_REPLY);
}

/* The daemon dies between calls: the next call's send meets a closed socket (EPIPE, which
 * must not raise SIGPIPE), and the call is carried out by the restarted daemon. */
static void a_daemon_that_died_between_calls_is_reclaimed_without_sigpipe(void **state) {
  fake_t *f = *state;
  f->kill_at = 1;
  f->die = DIE_AFTER_REPLY;
  fake_start(f);
  pp_client *c = connect_victim(f);
  pp_buffer b1, b2;
  assert_int_equal(pp_alloc(c, 4096, 0, &b1), 0);
  fake_wait_deaths(f, 1);
  assert_int_equal(pp_alloc(c, 4096, 0, &b2), 0);
  assert_int_equal(b2.handle, 2);
  assert_int_equal(pp_reclaims(c), 1);
  assert_int_equal(FAKE_GET(f, f->allocs), 2);
  assert_int_equal(FAKE_GET(f, f->bad_ids), 0);
  assert_int_equal(FAKE_GET(f, f->bad_tokens), 0);
  pp_disconnect(c);
}

/* ---- when the session cannot come back --------------------------------------------------- */

/* The call that met the death fails with `want`; so does every later one, without
 * connecting; the mapping stays until pp_disconnect, which frees everything. */
static void reclaim_fails(fake_t *f, back_t back, int want) {
  f->kill_at = 2;
  f->die = DIE_AFTER_READ;
  f->back = back;
  if (back == BACK_NEVER) f->grace_ms = 50;
  fake_start(f);
  pp_client *c = connect_victim(f);
  pp_buffer b1, b2;
  pp_cache *k;
  assert_int_equal(pp_alloc(c, 4096, 0, &b1), 0);
  memset(b1.addr, 0x3C, 4096);

  assert_int_equal(pp_alloc(c, 4096, 0, &b2), want);
  assert_int_equal(pp_reclaims(c), 0);
  assert_int_equal(FAKE_GET(f, f->bad_tokens), 0);
  assert_int_equal(FAKE_GET(f, f->errors), 0);

  int lfd = listener_for_probe(f);
  assert_int_equal(pp_free(c, b1.handle), want);
  assert_int_equal(pp_alloc(c, 4096, 0, &b2), want);
  assert_int_equal(pp_cache_open(c, "objs", 64, 64, &k), want);
  assert_nobody_connected(lfd);
  assert_int_equal(((uint8_t *)b1.addr)[0], 0x3C);
  assert_int_equal(fds_on_region(f), 1);
  pp_disconnect(c);
}

static void a_daemon_back_with_another_region_fails_every_call_with_state_lost(void **state) {
  reclaim_fails(*state, BACK_OTHER_REGION, PP_ESTATELOST);
}

static void a_daemon_that_lost_the_session_fails_every_call_with_state_lost(void **state) {
  reclaim_fails(*state, BACK_STATE_LOST, PP_ESTATELOST);
}

static void
a_daemon_that_starts_a_new_session_instead_fails_every_call_with_state_lost(void **state) {
  reclaim_fails(*state, BACK_NEW_SESSION, PP_ESTATELOST);
}

static void
a_daemon_that_stays_away_past_the_grace_period_fails_every_call_disconnected(void **state) {
  reclaim_fails(*state, BACK_NEVER, PP_EDISCONNECTED);
}

/* ---- re-claim off --------------------------------------------------------------------------
 */

/* The first broken connection is final, as it always was: the daemon comes back with the
 * session, and the client does not ask for it. */
static void first_break_is_final(fake_t *f, pp_client *c) {
  pp_buffer b;
  assert_int_equal(pp_alloc(c, 4096, 0, &b), 0);
  assert_int_equal(pp_alloc(c, 4096, 0, &b), PP_EDISCONNECTED);
  assert_int_equal(pp_reclaims(c), 0);
  fake_wait_deaths(f, 1);
  int lfd = listener_for_probe(f);
  assert_int_equal(pp_alloc(c, 4096, 0, &b), PP_EDISCONNECTED);
  assert_nobody_connected(lfd);
  assert_int_equal(FAKE_GET(f, f->lives), 1);
  pp_disconnect(c);
}

static void reclaim_turned_off_in_the_environment_makes_the_first_break_final(void **state) {
  fake_t *f = *state;
  pp_client *c = NULL;
  f->kill_at = 2;
  f->die = DIE_AFTER_READ;
  fake_start(f);
  setenv("PINPOOL_RECLAIM", "0", 1);
  int rc = pp_connect(f->sock, "victim", &c);
  unsetenv("PINPOOL_RECLAIM");
  assert_int_equal(rc, 0);
  first_break_is_final(f, c);
}

static void reclaim_turned_off_by_the_program_makes_the_first_break_final(void **state) {
  fake_t *f = *state;
  pp_connect_options o = PP_CONNECT_OPTIONS_INIT;
  pp_client *c = NULL;
  f->kill_at = 2;
  f->die = DIE_AFTER_READ;
  fake_start(f);
  o.flags = PP_CONNECT_NO_RECLAIM;
  assert_int_equal(pp_connect_opts(f->sock, "victim", &o, &c), 0);
  first_break_is_final(f, c);
}

static void a_daemon_that_offers_no_region_id_is_not_reclaimed_from(void **state) {
  fake_t *f = *state;
  f->no_region_id = true; /* pinpoold before restart survival */
  f->kill_at = 2;
  f->die = DIE_AFTER_READ;
  fake_start(f);
  first_break_is_final(f, connect_victim(f));
}

static void connect_options_of_an_unknown_size_or_flag_are_invalid(void **state) {
  fake_t *f = *state;
  pp_connect_options o = PP_CONNECT_OPTIONS_INIT;
  pp_client *c = (pp_client *)0x1;
  o.size = sizeof o + 8;
  assert_int_equal(pp_connect_opts(f->sock, "victim", &o, &c), PP_EINVAL);
  o.size = sizeof o;
  o.flags = 0x80;
  assert_int_equal(pp_connect_opts(f->sock, "victim", &o, &c), PP_EINVAL);
  assert_ptr_equal(c, (pp_client *)0x1);
  assert_int_equal(FAKE_GET(f, f->accepts), 0);
}

/* ---- threads -------------------------------------------------------------------------------
 */

#define CALLERS 4
#define CALLS 100

typedef struct caller {
  pp_client *c;
  int failures;
  uint64_t handles[CALLS];
} caller_t;

static void *caller_main(void *arg) {
  caller_t *t = arg;
  for (int i = 0; i < CALLS; i++) {
    pp_buffer b;
    int rc = pp_alloc(t->c, 4096, 0, &b);
    if (rc < 0) {
      t->failures++;
      continue;
    }
    t->handles[i] = b.handle;
    if (pp_free(t->c, b.handle) < 0) t->failures++;
  }
  return NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Several threads in calls while the daemon dies every 37th request, five ways in turn,
 * six times: every call succeeds, every alloc is carried out exactly once, and the daemon
 * sees ids that only ever increase but for each lost request, sent again first. */
static void threads_in_calls_while_the_daemon_restarts_all_succeed(void **state) {
  fake_t *f = *state;
  f->kill_every = 37;
  f->kills_left = 6;
  fake_start(f);
  pp_client *c = connect_victim(f);
  caller_t t[CALLERS];
  pthread_t th[CALLERS];
  for (int i = 0; i < CALLERS; i++) {
    memset(&t[i], 0, sizeof t[i]);
    t[i].c = c;
    assert_int_equal(pthread_create(&th[i], NULL, caller_main, &t[i]), 0);
  }
  for (int i = 0; i < CALLERS; i++)
    assert_int_equal(pthread_join(th[i], NULL), 0);

  uint64_t all[CALLERS * CALLS];
  for (int i = 0; i < CALLERS; i++) {
    assert_int_equal(t[i].failures, 0);
    memcpy(&all[i * CALLS], t[i].handles, sizeof t[i].handles);
  }
  qsort(all, CALLERS * CALLS, sizeof all[0], cmp_u64);
  for (int i = 1; i < CALLERS * CALLS; i++)
    assert_true(all[i] > all[i - 1]);
  assert_int_equal(FAKE_GET(f, f->deaths), 6);
  assert_int_equal(pp_reclaims(c), 6);
  assert_int_equal(FAKE_GET(f, f->allocs), CALLERS * CALLS);
  assert_int_equal(FAKE_GET(f, f->frees), CALLERS * CALLS);
  assert_int_equal(FAKE_GET(f, f->bad_ids), 0);
  assert_int_equal(FAKE_GET(f, f->bad_tokens), 0);
  assert_int_equal(FAKE_GET(f, f->errors), 0);
  /* Every death but those right after a reply lost a request, sent again first. */
  unsigned lost = 0;
  for (unsigned d = 0; d < 6; d++)
    lost += d % DIE_MODES != DIE_AFTER_REPLY;
  assert_int_equal(FAKE_GET(f, f->retried), lost);
  pp_disconnect(c);
}

/* ---- caches and magazines -------------------------------------------------------------- */

typedef struct worker {
  pp_cache *k;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stage, go; /* stage: how far the worker got; go: how far it may go */
  int failures;
} worker_t;

static void worker_at(worker_t *w, int stage) {
  pthread_mutex_lock(&w->mu);
  w->stage = stage;
  pthread_cond_broadcast(&w->cv);
  while (w->go < stage + 1)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

static void worker_wait(worker_t *w, int stage) {
  pthread_mutex_lock(&w->mu);
  while (w->stage < stage)
    pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

static void worker_go(worker_t *w, int go) {
  pthread_mutex_lock(&w->mu);
  w->go = go;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

#define HELD 10
#define BULK 200

/* Stage 1: objects in this thread's magazine (one cache_alloc).  Stage 2, after the
 * daemon's restart: the old objects still usable and freed, many more fetched from the
 * restarted daemon, all freed.  Then exit: the magazines go home. */
static void *worker_main(void *arg) {
  worker_t *w = arg;
  void *held[HELD], *more[BULK];
  for (int i = 0; i < HELD; i++) {
    held[i] = pp_cache_alloc(w->k);
    if (!held[i])
      w->failures++;
    else
      memset(held[i], i, FAKE_OBJ_SIZE);
  }
  worker_at(w, 1);
  for (int i = 0; i < HELD; i++) {
    if (held[i] && ((uint8_t *)held[i])[FAKE_OBJ_SIZE - 1] != i) w->failures++;
    if (held[i] && pp_cache_free(w->k, held[i]) != 0) w->failures++;
  }
  if (pp_cache_alloc_bulk(w->k, more, BULK) != BULK) {
    w->failures++;
  } else {
    for (int i = 0; i < BULK; i++)
      memset(more[i], 0x77, FAKE_OBJ_SIZE);
    if (pp_cache_free_bulk(w->k, more, BULK) != 0) w->failures++;
  }
  worker_at(w, 2);
  return NULL;
}

static void worker_init(worker_t *w, pp_cache *k) {
  memset(w, 0, sizeof *w);
  w->k = k;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
}

static void worker_destroy(worker_t *w) {
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
}

/* A thread's magazines hold objects across the restart; afterwards they are still its
 * own, more come from the restarted daemon, and at thread exit all of them go back to it. */
static void objects_in_thread_magazines_stay_usable_after_a_reclaim(void **state) {
  fake_t *f = *state;
  pp_cache *k;
  pp_buffer b;
  worker_t w;
  pthread_t th;
  f->kill_at = 3; /* cache_open, the worker's cache_alloc, then this pp_alloc */
  f->die = DIE_AFTER_READ;
  fake_start(f);
  pp_client *c = connect_victim(f);
  assert_int_equal(pp_cache_open(c, "objs", FAKE_OBJ_SIZE, FAKE_OBJ_SIZE, &k), 0);
  worker_init(&w, k);
  assert_int_equal(pthread_create(&th, NULL, worker_main, &w), 0);
  worker_wait(&w, 1);
  assert_int_equal(pp_alloc(c, 4096, 0, &b), 0); /* the restart */
  assert_int_equal(pp_reclaims(c), 1);
  pp_cache *again;
  assert_int_equal(pp_cache_open(c, "objs", FAKE_OBJ_SIZE, FAKE_OBJ_SIZE, &again), 0);
  assert_ptr_equal(again, k); /* the same cache id, the same handle */
  worker_go(&w, 3);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(w.failures, 0);
  assert_int_equal(FAKE_GET(f, f->objs_out), 0);
  assert_int_equal(FAKE_GET(f, f->bad_frees), 0);
  assert_int_equal(FAKE_GET(f, f->errors), 0);
  worker_destroy(&w);
  pp_disconnect(c);
}

/* The daemon dies under the cache_alloc that refills a magazine, after carrying it out:
 * the objects the retry is answered with are the ones recorded, none is handed out twice
 * or stranded. */
static void a_magazine_refill_lost_with_the_daemon_is_carried_out_once(void **state) {
  fake_t *f = *state;
  pp_cache *k;
  worker_t w;
  pthread_t th;
  f->kill_at = 2; /* the worker's first cache_alloc */
  f->die = DIE_AFTER_COMMIT;
  fake_start(f);
  pp_client *c = connect_victim(f);
  assert_int_equal(pp_cache_open(c, "objs", FAKE_OBJ_SIZE, FAKE_OBJ_SIZE, &k), 0);
  worker_init(&w, k);
  worker_go(&w, 3);
  assert_int_equal(pthread_create(&th, NULL, worker_main, &w), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(w.failures, 0);
  assert_int_equal(pp_reclaims(c), 1);
  assert_int_equal(FAKE_GET(f, f->replays), 1);
  assert_int_equal(FAKE_GET(f, f->objs_out), 0);
  assert_int_equal(FAKE_GET(f, f->bad_frees), 0);
  worker_destroy(&w);
  pp_disconnect(c);
}

/* A thread exits while its magazines hold objects; returning them is the request that
 * meets the daemon's death, inside the thread's exit: the re-claim happens there and the
 * objects reach the restarted daemon. */
static void
a_thread_exit_that_meets_the_restart_returns_its_objects_to_the_new_daemon(void **state) {
  fake_t *f = *state;
  pp_cache *k;
  worker_t w;
  pthread_t th;
  fake_start(f);
  pp_client *c = connect_victim(f);
  assert_int_equal(pp_cache_open(c, "objs", FAKE_OBJ_SIZE, FAKE_OBJ_SIZE, &k), 0);
  worker_init(&w, k);
  assert_int_equal(pthread_create(&th, NULL, worker_main, &w), 0);
  worker_wait(&w, 1);
  worker_go(&w, 2);
  worker_wait(&w, 2);
  /* The worker's next requests are its exit's cache_free(s). */
  pthread_mutex_lock(&f->mu);
  f->kill_at = f->requests + 1;
  f->die = DIE_BEFORE_READ;
  pthread_mutex_unlock(&f->mu);
  worker_go(&w, 3);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(w.failures, 0);
  assert_int_equal(pp_reclaims(c), 1);
  assert_int_equal(FAKE_GET(f, f->objs_out), 0);
  assert_int_equal(FAKE_GET(f, f->bad_frees), 0);
  worker_destroy(&w);
  pp_disconnect(c);
}

typedef struct call {
  pp_client *c;
  int rc;
} call_t;

static void *alloc_main(void *arg) {
  call_t *a = arg;
  pp_buffer b;
  a->rc = pp_alloc(a->c, 4096, 0, &b);
  return NULL;
}

/* A thread exits while another thread is re-claiming the session (the daemon is held
 * away until then): its magazines' objects wait for the connection and go back to the
 * restarted daemon — or, when the re-claim fails, the daemon's books are gone anyway and
 * the exit must neither crash nor leak. */
static void thread_exit_during_reclaim(fake_t *f, back_t back, int want) {
  pp_cache *k;
  worker_t w;
  pthread_t th, caller;
  f->back = back;
  fake_start(f);
  pp_client *c = connect_victim(f);
  assert_int_equal(pp_cache_open(c, "objs", FAKE_OBJ_SIZE, FAKE_OBJ_SIZE, &k), 0);
  worker_init(&w, k);
  assert_int_equal(pthread_create(&th, NULL, worker_main, &w), 0);
  worker_wait(&w, 1);
  worker_go(&w, 2);
  worker_wait(&w, 2); /* the worker holds objects in its magazines, and waits */

  pthread_mutex_lock(&f->mu);
  f->kill_at = f->requests + 1; /* the caller's pp_alloc */
  f->die = DIE_AFTER_READ;
  f->hold = true;
  pthread_mutex_unlock(&f->mu);
  call_t a = {.c = c};
  assert_int_equal(pthread_create(&caller, NULL, alloc_main, &a), 0);
  fake_wait_deaths(f, 1); /* the caller is re-claiming now, until released */
  worker_go(&w, 3);       /* the worker exits, returning its objects */
  fake_release(f);
  assert_int_equal(pthread_join(caller, NULL), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(a.rc, want);
  assert_int_equal(w.failures, 0);
  if (want == 0) {
    assert_int_equal(FAKE_GET(f, f->objs_out), 0);
    assert_int_equal(FAKE_GET(f, f->bad_frees), 0);
  }
  worker_destroy(&w);
  pp_disconnect(c);
}

static void
a_thread_exiting_while_another_reclaims_returns_its_objects_afterwards(void **state) {
  thread_exit_during_reclaim(*state, BACK_RECLAIMED, 0);
}

static void a_thread_exiting_while_a_reclaim_fails_neither_crashes_nor_leaks(void **state) {
  thread_exit_during_reclaim(*state, BACK_STATE_LOST, PP_ESTATELOST);
}

static void *disconnect_main(void *arg) {
  pp_disconnect(arg);
  return NULL;
}

/* A thread's exit meets the daemon's death and re-claims, for as long as the grace period
 * allows, since the daemon never comes back; meanwhile another thread disconnects.  The
 * disconnect must wait for the exiting thread (which holds the client) and then free
 * everything: under ASan a client freed beneath the re-claim, or anything left behind,
 * fails the test. */
static void
disconnect_while_an_exiting_thread_reclaims_waits_for_it_and_frees_everything(void **state) {
  fake_t *f = *state;
  pp_cache *k;
  worker_t w;
  pthread_t th, d;
  f->back = BACK_NEVER;
  f->grace_ms = 50;
  fake_start(f);
  pp_client *c = connect_victim(f);
  assert_int_equal(pp_cache_open(c, "objs", FAKE_OBJ_SIZE, FAKE_OBJ_SIZE, &k), 0);
  worker_init(&w, k);
  assert_int_equal(pthread_create(&th, NULL, worker_main, &w), 0);
  worker_wait(&w, 1);
  worker_go(&w, 2);
  worker_wait(&w, 2);
  pthread_mutex_lock(&f->mu);
  f->kill_at = f->requests + 1; /* the worker's exit returning its magazines */
  f->die = DIE_AFTER_READ;
  pthread_mutex_unlock(&f->mu);
  worker_go(&w, 3);
  fake_wait_deaths(f, 1); /* the exiting worker is re-claiming now, for about 2 s */
  assert_int_equal(pthread_create(&d, NULL, disconnect_main, c), 0);
  assert_int_equal(pthread_join(d, NULL), 0);
  assert_int_equal(pthread_join(th, NULL), 0);
  assert_int_equal(w.failures, 0);
  worker_destroy(&w);
}

#define T(name) cmocka_unit_test_setup_teardown(name, fake_setup, fake_teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      T(a_daemon_dying_before_it_reads_the_request_is_invisible_to_the_caller),
      T(a_daemon_dying_after_it_reads_the_request_is_invisible_to_the_caller),
      T(a_daemon_dying_after_it_carries_out_the_request_answers_it_once),
      T(a_daemon_dying_in_the_middle_of_its_reply_answers_it_once),
      T(a_daemon_that_died_between_calls_is_reclaimed_without_sigpipe),
      T(a_daemon_back_with_another_region_fails_every_call_with_state_lost),
      T(a_daemon_that_lost_the_session_fails_every_call_with_state_lost),
      T(a_daemon_that_starts_a_new_session_instead_fails_every_call_with_state_lost),
      T(a_daemon_that_stays_away_past_the_grace_period_fails_every_call_disconnected),
      T(reclaim_turned_off_in_the_environment_makes_the_first_break_final),
      T(reclaim_turned_off_by_the_program_makes_the_first_break_final),
      T(a_daemon_that_offers_no_region_id_is_not_reclaimed_from),
      T(connect_options_of_an_unknown_size_or_flag_are_invalid),
      T(threads_in_calls_while_the_daemon_restarts_all_succeed),
      T(objects_in_thread_magazines_stay_usable_after_a_reclaim),
      T(a_magazine_refill_lost_with_the_daemon_is_carried_out_once),
      T(a_thread_exit_that_meets_the_restart_returns_its_objects_to_the_new_daemon),
      T(a_thread_exiting_while_another_reclaims_returns_its_objects_afterwards),
      T(a_thread_exiting_while_a_reclaim_fails_neither_crashes_nor_leaks),
      T(disconnect_while_an_exiting_thread_reclaims_waits_for_it_and_frees_everything),
  };
  /* SIGPIPE stays fatal here: libpinpool must never raise it. */
  signal(SIGPIPE, SIG_DFL);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
