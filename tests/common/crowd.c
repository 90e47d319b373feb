/*
 * crowd.c — many idle clients at once (see crowd.h).
 */
#define _GNU_SOURCE
#include "crowd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

#define CROWD_RECV_TIMEOUT_S 30

static int crowd_connect(const struct sockaddr_un *sa) {
  for (int tries = 0; tries < 30000; tries++) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0) return fd;
    int e = errno;
    close(fd);
    if (e != EAGAIN) {
      errno = e;
      return -1;
    }
    /* The backlog is full: the daemon has not accepted the earlier ones yet. */
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  errno = EAGAIN;
  return -1;
}

static int crowd_grow(crowd_t *cr, size_t want) {
  if (want <= cr->cap) return 0;
  size_t cap = cr->cap ? cr->cap : 256;
  while (cap < want)
    cap *= 2;
  int *p = realloc(cr->fds, cap * sizeof *p);
  if (!p) return -1;
  cr->fds = p;
  cr->cap = cap;
  return 0;
}

int crowd_join(crowd_t *cr, const char *path, size_t n, size_t batch,
               crowd_progress_fn progress, void *arg) {
  Pinpool__V1__Request req = PINPOOL__V1__REQUEST__INIT;
  Pinpool__V1__Hello h = PINPOOL__V1__HELLO__INIT;
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  struct timeval tv = {.tv_sec = CROWD_RECV_TIMEOUT_S};
  uint8_t *hello = NULL;
  size_t hello_len = 0, done = 0;
  int rc = -1;

  if (batch == 0) batch = 1;
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  h.protocol_version = PROTOCOL_VERSION;
  h.client_name = "crowd";
  req.body_case = PINPOOL__V1__REQUEST__BODY_HELLO;
  req.hello = &h;
  req.id = 1;
  if (frame_pack(&req.base, FRAME_MAX_DEFAULT, &hello, &hello_len) ||
      crowd_grow(cr, cr->n + n)) {
    fprintf(stderr, "crowd: out of memory\n");
    goto out;
  }
  while (done < n) {
    size_t first = cr->n, k = n - done < batch ? n - done : batch;
    for (size_t i = 0; i < k; i++) {
      int fd = crowd_connect(&sa);
      if (fd < 0) {
        fprintf(stderr, "crowd: connect %s (client %zu): %s\n", path, cr->n, strerror(errno));
        goto out;
      }
      cr->fds[cr->n++] = fd;
      if (send(fd, hello, hello_len, MSG_NOSIGNAL) != (ssize_t)hello_len) {
        fprintf(stderr, "crowd: sending hello (client %zu): %s\n", cr->n - 1, strerror(errno));
        goto out;
      }
    }
    /* Every Hello of the batch is on its way; now each Welcome, in order. */
    for (size_t i = first; i < cr->n; i++) {
      Pinpool__V1__Response *resp = NULL;
      int memfd = -1, e;
      setsockopt(cr->fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      e = frame_recv_response(cr->fds[i], FRAME_MAX_DEFAULT, &resp, &memfd);
      if (memfd >= 0) close(memfd);
      if (e || resp->status != 0 || resp->body_case != PINPOOL__V1__RESPONSE__BODY_WELCOME) {
        fprintf(stderr, "crowd: client %zu got no welcome: %s%s%s\n", i,
                e ? pp_strerror(e) : pp_status_name(-(int)resp->status),
                resp && resp->message && *resp->message ? ": " : "",
                resp && resp->message ? resp->message : "");
        if (resp) frame_free_response(resp);
        goto out;
      }
      frame_free_response(resp);
    }
    done += k;
    if (progress) progress(done, n, arg);
  }
  rc = 0;
out:
  free(hello);
  return rc;
}

void crowd_leave(crowd_t *cr) {
  for (size_t i = 0; i < cr->n; i++)
    close(cr->fds[i]);
  free(cr->fds);
  cr->fds = NULL;
  cr->n = cr->cap = 0;
}

int crowd_raise_nofile(size_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  if (rl.rlim_cur >= want) return 0;
  if (rl.rlim_max < want) return -1;
  rl.rlim_cur = rl.rlim_max;
  return setrlimit(RLIMIT_NOFILE, &rl) == 0 ? 0 : -1;
}

long crowd_status_kib(pid_t pid, const char *field) {
  char path[64], line[256];
  size_t flen = strlen(field);
  long kib = -1;
  FILE *f;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  if (!(f = fopen(path, "r"))) return -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, field, flen) && line[flen] == ':') {
      kib = strtol(line + flen + 1, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}
