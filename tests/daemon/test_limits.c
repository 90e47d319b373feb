/*
 * test_limits.c — a hostile local user cannot lock others out of pinpoold or grow it
 * without bound.  Each test starts a real daemon (tests/common/testd.h), attacks it from a
 * child running as uid 65534 (setgroups, setgid, setuid: skipped, saying so, without
 * root), and shows the attack contained while a good client — root, or uid 65533, an
 * ordinary user of its own — keeps being served:
 *   - connections that never finish Hello, reconnecting: held to --max-pending-per-uid;
 *   - connections that send a frame one byte at a time: dropped at --frame-timeout with
 *     PROTOCOL_ERROR, and held to --max-clients-per-uid meanwhile;
 *   - a table full of one uid's idle clients: root and pinpoolctl still get in through
 *     the slots kept for administrators; refusals name the limit (and the uid);
 *   - clients that pipeline requests and never read the replies: the daemon's memory
 *     stays near --max-queued, they are dropped at --write-timeout and everything they
 *     held comes back;
 *   - more connections than the daemon has descriptors: it neither spins nor dies, and
 *     serves again once they close.
 * Children report by exit status (and a line on stderr); they never use cmocka.
 * Nothing here asserts a latency: the good client's requests are only bounded by
 * deadlines of seconds, the daemon's CPU by "not all of it".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "crowd.h"
#include "testd.h"
#include "wire.h"

#define ATTACKER 65534u /* nobody */
#define BYSTANDER 65533u
#define KIB 1024l

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000l + ts.tv_nsec / 1000000l;
}

static bool have_root(void) {
  if (geteuid() == 0) return true;
  print_message("skipped: needs root to act as uid %u\n", ATTACKER);
  return false;
}

/* In a child: become uid (no supplementary groups), or exit 99. */
static void become(uid_t uid) {
  if (setgroups(0, NULL) || setgid(uid) || setuid(uid)) {
    fprintf(stderr, "cannot become uid %u: %s\n", (unsigned)uid, strerror(errno));
    _exit(99);
  }
}

/* Fork a child that runs fn(arg) as uid and exits with its result. */
static pid_t spawn_as(uid_t uid, int (*fn)(void *), void *arg) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    become(uid);
    _exit(fn(arg));
  }
  return pid;
}

static int wait_child(pid_t pid);

/* Wait for the child's one-byte signal on fd; a child that exits first fails the test
 * with its exit status. */
static void wait_ready(int fd, pid_t child) {
  char b;
  if (read(fd, &b, 1) != 1) fail_msg("the attacker exited first, status %d", wait_child(child));
}

static int wait_child(pid_t pid) {
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return WEXITSTATUS(st);
}

/* ---- raw protocol, for children (errors returned, never a failed test) ---------------- */

static int raw_connect(const char *sock) {
  int fd = wire_connect(sock, false);
  struct timeval tv = {.tv_sec = 20};
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

/* One request, one response: the response's code (0 OK), or the transport's error.  msg
 * (may be NULL) gets the response's message. */
static int raw_call(int fd, Pinpool__V1__Request *req, char *msg, size_t msg_len) {
  resp_t *r = NULL;
  int rc = frame_send(fd, &req->base, FRAME_MAX_DEFAULT, -1);
  if (!rc) rc = frame_recv_response(fd, FRAME_MAX_DEFAULT, &r, NULL);
  if (rc) return rc;
  if (msg) snprintf(msg, msg_len, "%s", r->message ? r->message : "");
  rc = wire_rc(r);
  frame_free_response(r);
  return rc;
}

static Pinpool__V1__Hello hello_msg = PINPOOL__V1__HELLO__INIT;

/* Connect and say Hello.  The code of the answer; *ret_fd is the connection on success
 * (closed otherwise). */
static int raw_hello(const char *sock, char *msg, size_t msg_len, int *ret_fd) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  int fd = raw_connect(sock), rc;
  if (fd < 0) return PP_ECONNECT;
  hello_msg.protocol_version = PROTOCOL_VERSION;
  hello_msg.client_name = "limits";
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &hello_msg;
  req.id = 1;
  rc = raw_call(fd, &req, msg, msg_len);
  if (rc)
    close(fd);
  else
    *ret_fd = fd;
  return rc;
}

/* A bystander of its own uid: connects, allocates, frees.  0 when served. */
static int bystander(void *arg) {
  const char *sock = arg;
  wire_t c;
  resp_t *r;
  int rc = wire_open(&c, sock, "bystander");
  if (rc) {
    fprintf(stderr, "bystander: refused: %s\n", pp_err_name(rc));
    return 1;
  }
  if (wire_alloc(&c, 4096, 0, NULL, &r)) return 2;
  if (wire_free(&c, r->buffer->handle)) return 3;
  frame_free_response(r);
  wire_close(&c);
  return 0;
}

/* Root is served: connect, alloc, free, within seconds. */
static void root_is_served(const testd_t *d) {
  long t0 = now_ms();
  wire_t c;
  resp_t *r;
  assert_int_equal(wire_open(&c, d->sock, "root"), 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, &r), 0);
  assert_int_equal(wire_free(&c, r->buffer->handle), 0);
  frame_free_response(r);
  wire_close(&c);
  assert_true(now_ms() - t0 < 10000); /* seconds: a bound, not a latency */
}

static bool log_has(const testd_t *d, const char *what) {
  char buf[1 << 16];
  FILE *f = fopen(d->log, "r");
  bool found = false;
  size_t n;
  if (!f) return false;
  while (!found && (n = fread(buf, 1, sizeof buf - 1, f)) > 0) {
    buf[n] = '\0';
    found = strstr(buf, what) != NULL;
  }
  fclose(f);
  return found;
}

/* ---- a flood of connections that never say Hello ---------------------------------------- */

typedef struct flood {
  const char *sock;
  int ready; /* write end: one byte once the flood stands */
} flood_t;

#define FLOOD_CONNS 24
#define FLOOD_PENDING 4

/* A Hello's first bytes and nothing more: the daemon waits for the rest. */
static int open_silent(const char *sock) {
  static const uint8_t part[] = {40, 0, 0, 0, 0x08};
  int fd = wire_connect(sock, true);
  if (fd >= 0 && send(fd, part, sizeof part, MSG_NOSIGNAL) != (ssize_t)sizeof part) {
    close(fd);
    return -1;
  }
  return fd;
}

static int slow_hello_flood(void *arg) {
  flood_t *f = arg;
  int fds[FLOOD_CONNS], probe = -1, rc;
  char msg[256];
  long end;

  for (int i = 0; i < FLOOD_CONNS; i++)
    if ((fds[i] = open_silent(f->sock)) < 0) return 10;
  /* Over the limit, the first complete frame is answered with the refusal. */
  rc = raw_hello(f->sock, msg, sizeof msg, &probe);
  if (rc != PP_ETOOMANY) {
    fprintf(stderr, "flood: a hello beyond the per-uid pending limit got %s\n",
            pp_err_name(rc));
    return 11;
  }
  if (!strstr(msg, "uid 65534") || !strstr(msg, "limit 4 per uid")) {
    fprintf(stderr, "flood: refusal does not name the uid and the limit: '%s'\n", msg);
    return 12;
  }
  if (write(f->ready, "x", 1) != 1) return 13;
  /* Keep it up for a while: whatever the daemon closes comes straight back. */
  /* Refused ones are closed after 2 s (the refusal deadline) and come straight back. */
  for (end = now_ms() + 3000; now_ms() < end;) {
    struct pollfd p[FLOOD_CONNS];
    for (int i = 0; i < FLOOD_CONNS; i++)
      p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    poll(p, FLOOD_CONNS, 20);
    for (int i = 0; i < FLOOD_CONNS; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      close(fds[i]);
      if ((fds[i] = open_silent(f->sock)) < 0) return 14;
    }
  }
  for (int i = 0; i < FLOOD_CONNS; i++)
    close(fds[i]);
  return 0;
}

static void slow_hello_flood_is_held_to_the_per_uid_pending_limit(void **state) {
  testd_t d;
  int pipefd[2];

  (void)state;
  if (!have_root()) skip();
  assert_int_equal(testd_start(&d, "--max-pending-per-uid", "4", NULL), 0);
  assert_int_equal(pipe(pipefd), 0);
  flood_t f = {.sock = d.sock, .ready = pipefd[1]};
  pid_t attacker = spawn_as(ATTACKER, slow_hello_flood, &f);
  close(pipefd[1]);
  wait_ready(pipefd[0], attacker); /* the flood stands */
  close(pipefd[0]);
  for (int i = 0; i < 5; i++) {
    root_is_served(&d);
    assert_int_equal(wait_child(spawn_as(BYSTANDER, bystander, d.sock)), 0);
  }
  assert_int_equal(wait_child(attacker), 0);
  assert_true(log_has(&d, "limit 4 per uid"));
  root_is_served(&d);
  assert_int_equal(testd_stop(&d), 0);
}

/* ---- slow frames ------------------------------------------------------------------------ */

#define SLOW_CONNS 8

/* Hold SLOW_CONNS sessions that each send a frame one byte per second; each must be
 * dropped with PROTOCOL_ERROR naming the frame timeout, and come back. */
static int slow_frame_flood(void *arg) {
  flood_t *f = arg;
  static const uint8_t frame_start[] = {100, 0, 0, 0, 0x08};
  int fds[SLOW_CONNS], sent[SLOW_CONNS], drops = 0, refusals = 0;
  bool told = false;
  long next[SLOW_CONNS], end = now_ms() + 2500;
  char msg[256];

  for (int i = 0; i < SLOW_CONNS; i++)
    fds[i] = -1;
  while (now_ms() < end || drops < SLOW_CONNS) {
    struct pollfd p[SLOW_CONNS];
    if (now_ms() > end + 15000) {
      fprintf(stderr, "slow frames: only %d dropped\n", drops);
      return 20;
    }
    for (int i = 0; i < SLOW_CONNS; i++) {
      if (fds[i] < 0) {
        int rc = raw_hello(f->sock, msg, sizeof msg, &fds[i]);
        if (rc == PP_ETOOMANY) { /* the daemon has not seen an earlier one go yet */
          if (!strstr(msg, "uid 65534") || !strstr(msg, "limit 8 per uid")) {
            fprintf(stderr, "slow frames: refusal '%s'\n", msg);
            return 21;
          }
          refusals++;
          fds[i] = -1;
          continue;
        }
        if (rc) {
          fprintf(stderr, "slow frames: hello: %s\n", pp_err_name(rc));
          return 22;
        }
        sent[i] = 0;
        next[i] = now_ms();
      }
      if (sent[i] < (int)sizeof frame_start && now_ms() >= next[i]) {
        send(fds[i], frame_start + sent[i], 1, MSG_NOSIGNAL); /* may find it closed */
        sent[i]++;
        next[i] = now_ms() + 1000; /* slower than the 300 ms frame timeout */
      }
    }
    if (!told && write(f->ready, "x", 1) != 1) return 23;
    told = true;
    for (int i = 0; i < SLOW_CONNS; i++)
      p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    poll(p, SLOW_CONNS, 50);
    for (int i = 0; i < SLOW_CONNS; i++) {
      resp_t *r = NULL;
      int rc;
      if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP))) continue;
      rc = frame_recv_response(fds[i], FRAME_MAX_DEFAULT, &r, NULL);
      if (rc || wire_rc(r) != PP_EPROTO ||
          !strstr(r->message, "frame not complete within 300 ms")) {
        fprintf(stderr,
                "slow frames: dropped without the frame timeout's PROTOCOL_ERROR: %s %s\n",
                rc ? pp_err_name(rc) : pp_err_name(wire_rc(r)), r ? r->message : "");
        return 24;
      }
      frame_free_response(r);
      close(fds[i]);
      fds[i] = -1;
      drops++;
    }
  }
  for (int i = 0; i < SLOW_CONNS; i++)
    if (fds[i] >= 0) close(fds[i]);
  fprintf(stderr, "slow frames: %d connections dropped, %d refusals meanwhile\n", drops,
          refusals);
  return 0;
}

static void slow_frame_senders_are_dropped_at_the_frame_timeout(void **state) {
  testd_t d;
  int pipefd[2];

  (void)state;
  if (!have_root()) skip();
  /* 16 slots, 4 of them for administrators, 8 at most for one uid. */
  assert_int_equal(testd_start(&d, "--frame-timeout", "300", "--max-clients", "16",
                               "--max-clients-per-uid", "8", NULL),
                   0);
  assert_int_equal(pipe(pipefd), 0);
  flood_t f = {.sock = d.sock, .ready = pipefd[1]};
  pid_t attacker = spawn_as(ATTACKER, slow_frame_flood, &f);
  close(pipefd[1]);
  wait_ready(pipefd[0], attacker);
  /* While it goes on, the others are served, root and another ordinary uid alike. */
  for (int i = 0; i < 5; i++) {
    root_is_served(&d);
    assert_int_equal(wait_child(spawn_as(BYSTANDER, bystander, d.sock)), 0);
    sleep_ms(200);
  }
  assert_int_equal(wait_child(attacker), 0);
  close(pipefd[0]);
  /* Nobody holds a slot any more but the one asking, once the daemon has seen the
   * attacker's last connections close with it. */
  testd_books_t books = {0};
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(testd_books(&d, 0, &books, NULL), 0);
    if (books.nr_clients == 1) break;
    sleep_ms(10);
  }
  assert_int_equal(books.nr_clients, 1);
  assert_int_equal(testd_stop(&d), 0);
}

/* ---- a full table ------------------------------------------------------------------------ */

typedef struct filler {
  const char *sock;
  int ready;           /* one byte when the table is full */
  int done;            /* read end: the parent says when to leave */
  int want;            /* sessions it should get */
  const char *refusal; /* what the one after them must be told */
} filler_t;

static int fill_table(void *arg) {
  filler_t *f = arg;
  int fds[64], n = 0, rc;
  char msg[256], b;

  for (;;) {
    rc = raw_hello(f->sock, msg, sizeof msg, &fds[n]);
    if (rc) break;
    if (++n == 64) return 30;
  }
  if (rc != PP_ETOOMANY || n != f->want) {
    fprintf(stderr, "filler: %d sessions, then %s (wanted %d, then TOO_MANY_CLIENTS)\n", n,
            pp_err_name(rc), f->want);
    return 31;
  }
  if (!strstr(msg, f->refusal)) {
    fprintf(stderr, "filler: refusal '%s' does not say '%s'\n", msg, f->refusal);
    return 32;
  }
  if (write(f->ready, "x", 1) != 1) return 33;
  if (read(f->done, &b, 1) < 0) return 34; /* hold them until told */
  for (int i = 0; i < n; i++) {
    /* Still served, every one of them. */
    Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
    Pinpool__V1__Free fr = PINPOOL__V1__FREE__INIT;
    fr.handle = 12345;
    req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
    req.free = &fr;
    req.id = 2;
    if (raw_call(fds[i], &req, NULL, 0) != PP_ENOENT) return 35;
    close(fds[i]);
  }
  return 0;
}

static int bystander_refused(void *arg) {
  const char *sock = arg;
  char msg[256];
  int fd, rc = raw_hello(sock, msg, sizeof msg, &fd);
  if (rc != PP_ETOOMANY) {
    fprintf(stderr, "bystander: %s where the table is full for ordinary users\n",
            pp_err_name(rc));
    return 1;
  }
  return strstr(msg, "4 kept for administrators") ? 0 : 2;
}

/* Sessions the daemon counts now (Stats, as root). */
static uint32_t clients_now(wire_t *c) {
  resp_t *r;
  uint32_t n;
  assert_int_equal(wire_stats(c, false, false, &r), 0);
  n = r->stats->nr_clients;
  frame_free_response(r);
  return n;
}

static void full_table_still_lets_root_and_pinpoolctl_in(void **state) {
  testd_t d;
  int ready[2], done[2], st;
  char ctl[512], cmd[1024];
  wire_t a, extra;
  (void)state;
  if (!have_root()) skip();
  assert_int_equal(testd_start(&d, "--max-clients", "16", "--max-clients-per-uid", "16", NULL),
                   0);
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(done), 0);
  filler_t f = {.sock = d.sock,
                .ready = ready[1],
                .done = done[0],
                .want = 12,
                .refusal = "too many clients (max 16, 4 kept for administrators)"};
  pid_t attacker = spawn_as(ATTACKER, fill_table, &f);
  close(ready[1]);
  close(done[0]);
  wait_ready(ready[0], attacker); /* 12 idle sessions of uid 65534 */

  /* Another ordinary user is refused: the rest is kept for administrators... */
  assert_int_equal(wait_child(spawn_as(BYSTANDER, bystander_refused, d.sock)), 0);
  /* ...who get in: a wire client, and pinpoolctl. */
  assert_int_equal(wire_open(&a, d.sock, "root"), 0);
  assert_int_equal(wire_alloc(&a, 4096, 0, NULL, NULL), 0);
  snprintf(cmd, sizeof cmd, "%s --socket %s status >/dev/null",
           testd_bin(ctl, sizeof ctl, "pinpoolctl"), d.sock);
  st = system(cmd);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  /* The reserve is 4: once the daemon has seen pinpoolctl go, 3 more administrators fit
   * beside the first, then none. */
  for (int i = 0; i < 1000 && clients_now(&a) != 13; i++)
    sleep_ms(10);
  assert_int_equal(clients_now(&a), 13);
  wire_t more, full, over;
  assert_int_equal(wire_open(&extra, d.sock, "root-2"), 0);
  assert_int_equal(wire_open(&more, d.sock, "root-3"), 0);
  assert_int_equal(wire_open(&full, d.sock, "root-4"), 0);
  assert_int_equal(wire_open(&over, d.sock, "root-5"), PP_ETOOMANY);
  wire_close(&full);
  wire_close(&more);
  wire_close(&extra);
  wire_close(&a);

  assert_int_equal(write(done[1], "x", 1), 1);
  assert_int_equal(wait_child(attacker), 0);
  close(ready[0]);
  close(done[1]);
  assert_true(log_has(&d, "kept for administrators"));
  assert_int_equal(testd_stop(&d), 0);
}

/* The limits are config keys too (an unknown key or a bad value would stop the daemon). */
static void per_uid_client_limit_names_the_uid_and_the_limit(void **state) {
  char cfg[] = "/tmp/ppd-limits-XXXXXX";
  testd_t d;
  int ready[2], done[2], fd;

  (void)state;
  if (!have_root()) skip();
  fd = mkstemp(cfg);
  assert_true(fd >= 0);
  dprintf(fd, "max-clients-per-uid = 3\nmax-pending-per-uid = 8\nadmin-reserve = 2\n"
              "frame-timeout = 5000\nwrite-timeout = 20000\nmax-queued = 8M\n");
  close(fd);
  assert_int_equal(testd_start(&d, "--config", cfg, NULL), 0);
  unlink(cfg);
  assert_int_equal(pipe(ready), 0);
  assert_int_equal(pipe(done), 0);
  filler_t f = {.sock = d.sock,
                .ready = ready[1],
                .done = done[0],
                .want = 3,
                .refusal = "uid 65534 has 3 clients connected (limit 3 per uid)"};
  pid_t attacker = spawn_as(ATTACKER, fill_table, &f);
  close(ready[1]);
  close(done[0]);
  wait_ready(ready[0], attacker);
  /* Another uid is not counted against it. */
  assert_int_equal(wait_child(spawn_as(BYSTANDER, bystander, d.sock)), 0);
  root_is_served(&d);
  assert_int_equal(write(done[1], "x", 1), 1);
  assert_int_equal(wait_child(attacker), 0);
  close(ready[0]);
  close(done[1]);
  assert_int_equal(testd_stop(&d), 0);
}

/* ---- clients that never read ------------------------------------------------------------ */

#define STUCK_CONNS 12
#define STUCK_BUFFERS 8

typedef struct stuck {
  const char *sock;
  int ready;
} stuck_t;

/* STUCK_CONNS sessions, each holding STUCK_BUFFERS buffers, then pipelining requests with
 * small replies (an unknown handle to free: NOT_FOUND and a message) and reading none.
 * Then wait for the daemon to close every one of them (POLLHUP without reading). */
static int stuck_readers(void *arg) {
  stuck_t *s = arg;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Alloc al = PINPOOL__V1__ALLOC__INIT;
  Pinpool__V1__Free fr = PINPOOL__V1__FREE__INIT;
  int fds[STUCK_CONNS], closed = 0;
  uint8_t *frame;
  size_t len;
  long end;

  al.size = 64 * 1024;
  req.body_case = PINPOOL__V1__REQUEST__BODY_ALLOC;
  req.alloc = &al;
  for (int i = 0; i < STUCK_CONNS; i++) {
    int rc = raw_hello(s->sock, NULL, 0, &fds[i]);
    if (rc) {
      fprintf(stderr, "stuck readers: hello %d: %s\n", i, pp_err_name(rc));
      return 40;
    }
    for (int k = 0; k < STUCK_BUFFERS; k++) {
      req.id = 2 + (uint64_t)k;
      if ((rc = raw_call(fds[i], &req, NULL, 0))) {
        fprintf(stderr, "stuck readers: alloc on %d: %s\n", i, pp_err_name(rc));
        return 41;
      }
    }
  }
  fr.handle = 987654321;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &fr;
  req.id = 100;
  if (frame_pack(&req.base, FRAME_MAX_DEFAULT, &frame, &len)) return 42;
  for (int i = 0; i < STUCK_CONNS; i++) {
    fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    for (;;) { /* until the daemon stops reading from us */
      ssize_t n = send(fds[i], frame, len, MSG_NOSIGNAL);
      if (n == (ssize_t)len) continue;
      if (n >= 0) break; /* a partial frame: the socket is full */
      /* On a slow machine the first ones may pass --write-timeout before the last is
       * stuck: already dropped is what they are here for. */
      if (errno == EPIPE || errno == ECONNRESET) break;
      if (errno != EAGAIN) {
        fprintf(stderr, "stuck readers: send on %d: %s\n", i, strerror(errno));
        return 43;
      }
      struct pollfd p = {.fd = fds[i], .events = POLLOUT};
      if (poll(&p, 1, 200) == 0) break; /* still full 200 ms later: paused */
    }
  }
  free(frame);
  if (write(s->ready, "x", 1) != 1) return 44;
  for (end = now_ms() + 30000; closed < STUCK_CONNS && now_ms() < end;) {
    struct pollfd p[STUCK_CONNS];
    for (int i = 0; i < STUCK_CONNS; i++)
      p[i] = (struct pollfd){.fd = fds[i], .events = POLLRDHUP};
    poll(p, STUCK_CONNS, 100);
    closed = 0;
    for (int i = 0; i < STUCK_CONNS; i++)
      if (p[i].revents & (POLLHUP | POLLRDHUP)) closed++;
  }
  if (closed < STUCK_CONNS) {
    fprintf(stderr, "stuck readers: only %d of %d dropped\n", closed, STUCK_CONNS);
    return 45;
  }
  return 0;
}

static void stuck_readers_stay_under_max_queued_and_are_dropped(void **state) {
  testd_t d;
  int pipefd[2];
  long rss0, peak = 0;
  uint64_t last = 0;

  (void)state;
  if (!have_root()) skip();
  assert_int_equal(
      testd_start(&d, "--size", "64M", "--max-queued", "2M", "--write-timeout", "5000", NULL),
      0);
  uint64_t free0 = testd_free_bytes(&d);
  root_is_served(&d); /* first-use allocations before the baseline */
  rss0 = crowd_status_kib(d.pid, "RssAnon");
  assert_int_equal(pipe(pipefd), 0);
  stuck_t s = {.sock = d.sock, .ready = pipefd[1]};
  pid_t attacker = spawn_as(ATTACKER, stuck_readers, &s);
  close(pipefd[1]);
  wait_ready(pipefd[0], attacker); /* every one of them is stuck */
  close(pipefd[0]);
  /* Meanwhile root is served, and the daemon's memory is watched. */
  for (int i = 0; i < 10; i++) {
    long rss = crowd_status_kib(d.pid, "RssAnon");
    if (rss > peak) peak = rss;
    root_is_served(&d);
    sleep_ms(50);
  }
  assert_int_equal(wait_child(attacker), 0); /* all dropped by the daemon */
  assert_int_equal(testd_wait_free(&d, free0, 10000, &last), 0);
  assert_true(log_has(&d, "has not read its replies"));
  print_message("stuck readers: daemon RssAnon %ld KiB before, at most %ld KiB during "
                "(--max-queued 2 MiB)\n",
                rss0, peak);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  print_message("memory bound not checked under a sanitizer (its allocator keeps freed "
                "memory in quarantine)\n");
#else
  /* 2 MiB of replies, one read of input parked per paused client (64 KiB), and slack:
   * without the global cap the 12 clients could queue 12 MiB. */
  assert_true(peak - rss0 < 6 * 1024);
#endif
  root_is_served(&d);
  assert_int_equal(testd_stop(&d), 0);
}

/* Clients paused because all queues together passed --max-queued lose nothing: once they
 * read, every request they sent is answered, in order. */
static void clients_paused_for_the_global_cap_get_every_reply_in_order(void **state) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Free fr = PINPOOL__V1__FREE__INIT;
  testd_t d;
  wire_t c[3];
  uint64_t first[3], sent[3];
  (void)state;

  assert_int_equal(testd_start(&d, "--max-queued", "1M", NULL), 0);
  fr.handle = 987654321;
  req.body_case = PINPOOL__V1__REQUEST__BODY_FREE;
  req.free = &fr;
  for (int i = 0; i < 3; i++) {
    assert_int_equal(wire_open(&c[i], d.sock, "pipeliner"), 0);
    first[i] = c[i].next_id + 1; /* after the Hello's */
    fcntl(c[i].fd, F_SETFL, fcntl(c[i].fd, F_GETFL) | O_NONBLOCK);
    for (;;) { /* until the daemon stops reading from this one */
      uint8_t *frame;
      size_t len;
      ssize_t n;
      req.id = c[i].next_id + 1;
      assert_int_equal(frame_pack(&req.base, FRAME_MAX_DEFAULT, &frame, &len), 0);
      n = send(c[i].fd, frame, len, MSG_NOSIGNAL);
      free(frame);
      if (n == (ssize_t)len) {
        c[i].next_id++;
        continue;
      }
      assert_true(n < 0 && errno == EAGAIN); /* a frame this small goes whole or not at all */
      struct pollfd p = {.fd = c[i].fd, .events = POLLOUT};
      if (poll(&p, 1, 200) == 0) break;
    }
    sent[i] = c[i].next_id + 1 - first[i];
  }
  print_message("requests sent before the daemon stopped reading: %llu, %llu, %llu\n",
                (unsigned long long)sent[0], (unsigned long long)sent[1],
                (unsigned long long)sent[2]);
  for (int i = 0; i < 3; i++) {
    fcntl(c[i].fd, F_SETFL, fcntl(c[i].fd, F_GETFL) & ~O_NONBLOCK);
    for (uint64_t id = first[i]; id < first[i] + sent[i]; id++) {
      resp_t *r = NULL;
      int rc = frame_recv_response(c[i].fd, FRAME_MAX_DEFAULT, &r, NULL);
      if (rc)
        fail_msg("client %d, reply %llu of %llu: %s", i,
                 (unsigned long long)(id + 1 - first[i]), (unsigned long long)sent[i],
                 pp_strerror(rc));
      assert_int_equal(r->id, id);
      assert_int_equal(wire_rc(r), PP_ENOENT);
      frame_free_response(r);
    }
    assert_int_equal(wire_alloc(&c[i], 4096, 0, NULL, NULL), 0); /* and it goes on */
    wire_close(&c[i]);
  }
  assert_int_equal(testd_stop(&d), 0);
}

/* ---- out of descriptors ----------------------------------------------------------------- */

static long cpu_ticks(pid_t pid) {
  char path[64], buf[1024], *p;
  unsigned long ut = 0, st = 0;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  if (!(f = fopen(path, "r"))) return -1;
  if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
  fclose(f);
  p = strrchr(buf, ')'); /* the command may hold spaces */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (long)(ut + st);
}

#define FD_LIMIT 32
#define FD_CONNS 64

static void running_out_of_descriptors_neither_spins_nor_kills_the_daemon(void **state) {
  testd_t d;
  struct rlimit rl = {FD_LIMIT, FD_LIMIT};
  int fds[FD_CONNS], welcomed = 0, closed = 0, rc = PP_ETOOMANY;
  long t0, ticks0, ticks1;
  wire_t c;
  (void)state;

  assert_int_equal(testd_start(&d, NULL), 0);
  assert_int_equal(prlimit(d.pid, RLIMIT_NOFILE, &rl, NULL), 0);
  for (int i = 0; i < FD_CONNS; i++) {
    Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
    hello_msg.protocol_version = PROTOCOL_VERSION;
    hello_msg.client_name = "fd";
    req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
    req.hello = &hello_msg;
    req.id = 1;
    fds[i] = raw_connect(d.sock);
    assert_true(fds[i] >= 0);
    frame_send(fds[i], &req.base, FRAME_MAX_DEFAULT, -1); /* may find it closed */
  }
  /* Each is welcomed, or closed at once: none is left hanging. */
  for (int i = 0; i < FD_CONNS; i++) {
    resp_t *r = NULL;
    int memfd = -1;
    int e = frame_recv_response(fds[i], FRAME_MAX_DEFAULT, &r, &memfd);
    if (memfd >= 0) close(memfd);
    if (!e && wire_rc(r) == 0) {
      welcomed++;
    } else {
      assert_true(e == PP_EDISCONNECTED || (!e && wire_rc(r) == PP_ETOOMANY));
      closed++;
    }
    if (r) frame_free_response(r);
  }
  print_message("RLIMIT_NOFILE %d: %d connections welcomed, %d closed at once\n", FD_LIMIT,
                welcomed, closed);
  assert_true(welcomed > 0 && welcomed < FD_LIMIT);
  assert_true(closed > 0);
  /* Held there, and knocked on again: the daemon must not spin on its listening socket. */
  t0 = now_ms();
  ticks0 = cpu_ticks(d.pid);
  while (now_ms() - t0 < 1000) {
    int fd = raw_connect(d.sock);
    if (fd >= 0) close(fd);
    sleep_ms(50);
  }
  ticks1 = cpu_ticks(d.pid);
  print_message("daemon CPU while out of descriptors: %ld ticks in 1 s\n", ticks1 - ticks0);
  assert_true(ticks0 >= 0 && ticks1 - ticks0 < sysconf(_SC_CLK_TCK) / 2);
  assert_true(log_has(&d, "accepting pauses"));
  /* Once they go, it serves again. */
  for (int i = 0; i < FD_CONNS; i++)
    close(fds[i]);
  for (int i = 0; i < 300 && rc; i++) {
    rc = wire_open(&c, d.sock, "after");
    if (rc) sleep_ms(10);
  }
  assert_int_equal(rc, 0);
  assert_int_equal(wire_alloc(&c, 4096, 0, NULL, NULL), 0);
  wire_close(&c);
  assert_int_equal(testd_stop(&d), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(slow_hello_flood_is_held_to_the_per_uid_pending_limit),
      cmocka_unit_test(slow_frame_senders_are_dropped_at_the_frame_timeout),
      cmocka_unit_test(full_table_still_lets_root_and_pinpoolctl_in),
      cmocka_unit_test(per_uid_client_limit_names_the_uid_and_the_limit),
      cmocka_unit_test(stuck_readers_stay_under_max_queued_and_are_dropped),
      cmocka_unit_test(clients_paused_for_the_global_cap_get_every_reply_in_order),
      cmocka_unit_test(running_out_of_descriptors_neither_spins_nor_kills_the_daemon),
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
