/*
 * testd.c — a real pinpoold for the libpinpool tests (see testd.h).
 *
 * The daemon runs as a child on a socket in a fresh mkdtemp folder, with a 16 MiB region
 * of 4 KiB pages so that no test depends on hugepages.  Its books are read the way an
 * operator's tool reads them: a separate connection, Hello, then Shrink (so that empty
 * slabs and daemon-side magazines do not hide a leak or fake one) and Stats, root only.
 */
#define _GNU_SOURCE
#include "testd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int raw_connect(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int testd_start(testd_t *d) { return testd_start_with(d, NULL); }

int testd_start_with(testd_t *d, const char *const *extra) {
  const char *bin = getenv("PP_BIN_DIR");
  char exe[512];
  memset(d, 0, sizeof *d);
  snprintf(exe, sizeof exe, "%s/pinpoold", bin ? bin : ".");
  snprintf(d->dir, sizeof d->dir, "/tmp/pp-client-test-XXXXXX");
  if (!mkdtemp(d->dir)) {
    perror("testd: mkdtemp");
    return -1;
  }
  snprintf(d->sock, sizeof d->sock, "%s/pinpool.sock", d->dir);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    /* A test that dies (a failed assertion, a ctest timeout) takes its daemon along. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1) _exit(126);
    const char *argv[32] = {"pinpoold", "--socket", d->sock, "--size", "16M",
                            "--page-size", "4K", "--log-level", "warning"};
    int argc = 9;
    for (; extra && *extra && argc < 31; extra++) argv[argc++] = *extra;
    argv[argc] = NULL;
    execv(exe, (char *const *)argv);
    fprintf(stderr, "testd: exec %s: %s\n", exe, strerror(errno));
    _exit(127);
  }
  d->pid = pid;
  /* Ready when it accepts; sanitizer builds start slowly, so wait up to 20 s. */
  for (int i = 0; i < 2000; i++) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      fprintf(stderr, "testd: pinpoold exited early (status %d)\n", st);
      d->pid = 0;
      rmdir(d->dir);
      return -1;
    }
    int fd = raw_connect(d->sock);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    sleep_ms(10);
  }
  fprintf(stderr, "testd: pinpoold did not listen on %s\n", d->sock);
  testd_stop(d);
  return -1;
}

void testd_stop(testd_t *d) {
  if (d->pid > 0) {
    kill(d->pid, SIGTERM);
    int st;
    for (int i = 0; i < 500; i++) {
      if (waitpid(d->pid, &st, WNOHANG) == d->pid) goto reaped;
      sleep_ms(10);
    }
    fprintf(stderr, "testd: pinpoold ignored SIGTERM for 5 s; killing it\n");
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
  reaped:
    d->pid = 0;
  }
  unlink(d->sock);
  rmdir(d->dir);
}

/* Connect and say hello; the memfd that comes with Welcome is not needed here. */
static int admin_connect(const testd_t *d) {
  int fd = raw_connect(d->sock);
  if (fd < 0) return -1;
  Pinpool__V1__Hello hello = PINPOOL__V1__HELLO__INIT;
  hello.protocol_version = PROTOCOL_VERSION;
  hello.client_name = "testd";
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.id = 1;
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &hello;
  Pinpool__V1__Response *resp = NULL;
  if (frame_send(fd, &req.base, 0, -1) < 0 || frame_recv_response(fd, 0, &resp, NULL) < 0 ||
      resp->status != 0) {
    if (resp) frame_free_response(resp);
    close(fd);
    return -1;
  }
  frame_free_response(resp);
  return fd;
}

static Pinpool__V1__Response *exchange(int fd, Pinpool__V1__Request *req, uint64_t id) {
  Pinpool__V1__Response *resp = NULL;
  req->id = id;
  if (frame_send(fd, &req->base, FRAME_MAX_LIMIT, -1) < 0) return NULL;
  if (frame_recv_response(fd, FRAME_MAX_LIMIT, &resp, NULL) < 0) return NULL;
  return resp;
}

int testd_books(const testd_t *d, uint64_t session_id, testd_books_t *ret_books,
                testd_session_t *ret_session) {
  int fd = admin_connect(d);
  if (fd < 0) return -1;
  int rc = -1;
  Pinpool__V1__ShrinkRequest shrink = PINPOOL__V1__SHRINK_REQUEST__INIT;
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_SHRINK;
  req.shrink = &shrink;
  Pinpool__V1__Response *resp = exchange(fd, &req, 2);
  if (!resp || resp->status != 0) {
    fprintf(stderr, "testd: shrink refused (%s)\n", resp ? resp->message : "no answer");
    goto out;
  }
  frame_free_response(resp);

  Pinpool__V1__StatsRequest sr = PINPOOL__V1__STATS_REQUEST__INIT;
  req.body_case = PINPOOL__V1__REQUEST__BODY_STATS;
  req.stats = &sr;
  resp = exchange(fd, &req, 3);
  if (!resp || resp->status != 0 || resp->body_case != PINPOOL__V1__RESPONSE__BODY_STATS) {
    fprintf(stderr, "testd: stats refused (%s)\n", resp ? resp->message : "no answer");
    goto out;
  }
  const Pinpool__V1__Stats *s = resp->stats;
  ret_books->free_bytes = s->free_bytes;
  ret_books->used_bytes = s->used_bytes;
  ret_books->nr_clients = s->nr_clients;
  if (ret_session) {
    memset(ret_session, 0, sizeof *ret_session);
    for (size_t i = 0; i < s->n_clients; i++) {
      const Pinpool__V1__ClientInfo *ci = s->clients[i];
      if (ci->session_id != session_id) continue;
      ret_session->found = true;
      ret_session->buffers = ci->buffers;
      ret_session->objects = ci->objects;
      ret_session->bytes_held = ci->bytes_held;
      ret_session->requests = ci->requests;
    }
  }
  rc = 0;
out:
  if (resp) frame_free_response(resp);
  close(fd);
  return rc;
}

int testd_wait_free(const testd_t *d, uint64_t want, int timeout_ms, uint64_t *ret_last) {
  testd_books_t b = {0};
  for (int waited = 0;; waited += 10) {
    if (testd_books(d, 0, &b, NULL) == 0 && b.free_bytes == want && b.nr_clients <= 1)
      return 0;
    if (waited >= timeout_ms) break;
    sleep_ms(10);
  }
  *ret_last = b.free_bytes;
  return -1;
}

int testd_raw_status(const testd_t *d, const struct ProtobufCMessage *msg) {
  int fd = admin_connect(d);
  if (fd < 0) return -1;
  Pinpool__V1__Request *req = (Pinpool__V1__Request *)msg;
  Pinpool__V1__Response *resp = exchange(fd, req, 2);
  int rc = resp ? (int)resp->status : -1;
  if (resp) frame_free_response(resp);
  close(fd);
  return rc;
}
