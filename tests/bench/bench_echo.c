/*
 * bench_echo.c — a raw echo server built the way pinpoold is built, the peer that shows
 * what pinpoold's own work costs (bench load; bench ipc's raw.roundtrip_uv).
 *
 * The model is daemon/conn.c's: one libuv loop thread; each accepted connection read into a
 * 16 KiB buffer; frames assembled by the same frame_reader_feed pinpoold uses (a 4-byte
 * little-endian length, then the payload; a zero or oversized length closes the
 * connection); each frame answered in order by echoing it in a freshly malloc'd frame (as
 * pinpoold packs each reply), written with uv_try_write first and queued with uv_write only
 * for what the socket does not take (while anything is queued uv_try_write refuses, so
 * order holds).  What it leaves out is exactly pinpoold's work: unpacking, handling, packing.
 *
 * It runs in a child process of its own, pinned to a CPU, killed with the benchmark
 * (PR_SET_PDEATHSIG) or by bench_echo_stop.
 *
 * Locks: none; one loop thread.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "bench.h"
#include "frame.h"

#define ECHO_INBUF (16u * 1024u) /* one read, as conn.c's */

typedef struct echo_conn {
  uv_pipe_t pipe;
  frame_reader_t reader;
  uint8_t *inbuf;
} echo_conn_t;

typedef struct echo_write {
  uv_write_t req;
  uv_buf_t buf; /* the part of mem the socket has not taken yet */
  uint8_t *mem;
} echo_write_t;

static void echo_on_closed(uv_handle_t *h) {
  echo_conn_t *c = h->data;
  frame_reader_free(&c->reader);
  free(c->inbuf);
  free(c);
}

static void echo_close(echo_conn_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->pipe))
    uv_close((uv_handle_t *)&c->pipe, echo_on_closed);
}

static void echo_on_write(uv_write_t *req, int status) {
  echo_write_t *w = (echo_write_t *)req;
  echo_conn_t *c = req->handle->data;
  free(w->mem);
  free(w);
  if (status < 0 && status != UV_ECANCELED) echo_close(c);
}

/* The frame back in a malloc'd buffer of its own, as pinpoold packs a reply: uv_try_write,
 * and uv_write for whatever the socket did not take. */
static void echo_reply(echo_conn_t *c, const uint8_t *frame, size_t len) {
  uv_stream_t *s = (uv_stream_t *)&c->pipe;
  size_t total = FRAME_HEADER_SIZE + len, off = 0;
  uint8_t *out = malloc(total);
  if (!out) {
    echo_close(c);
    return;
  }
  out[0] = (uint8_t)len;
  out[1] = (uint8_t)(len >> 8);
  out[2] = (uint8_t)(len >> 16);
  out[3] = (uint8_t)(len >> 24);
  memcpy(out + FRAME_HEADER_SIZE, frame, len);
  uv_buf_t b = uv_buf_init((char *)out, (unsigned)total);
  int rc = uv_try_write(s, &b, 1);
  if (rc < 0 && rc != UV_EAGAIN) {
    free(out);
    echo_close(c);
    return;
  }
  if (rc > 0) off = (size_t)rc;
  if (off == total) {
    free(out);
    return;
  }
  echo_write_t *w = malloc(sizeof *w);
  if (!w) {
    free(out);
    echo_close(c);
    return;
  }
  w->mem = out;
  w->buf = uv_buf_init((char *)out + off, (unsigned)(total - off));
  if (uv_write(&w->req, s, &w->buf, 1, echo_on_write) != 0) {
    free(out);
    free(w);
    echo_close(c);
  }
}

static void echo_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  echo_conn_t *c = h->data;
  *buf = uv_buf_init((char *)c->inbuf, ECHO_INBUF);
}

static void echo_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  echo_conn_t *c = s->data;
  if (nread < 0) {
    echo_close(c);
    return;
  }
  for (size_t off = 0; off < (size_t)nread && !uv_is_closing((uv_handle_t *)s);) {
    const uint8_t *frame = NULL;
    size_t flen = 0;
    int n = frame_reader_feed(&c->reader, c->inbuf + off, (size_t)nread - off, &frame, &flen);
    if (n < 0) {
      echo_close(c);
      return;
    }
    off += (size_t)n;
    if (frame) echo_reply(c, frame, flen);
  }
}

static void echo_on_connection(uv_stream_t *listener, int status) {
  if (status < 0) return;
  echo_conn_t *c = calloc(1, sizeof *c);
  if (!c || !(c->inbuf = malloc(ECHO_INBUF))) {
    free(c);
    return;
  }
  frame_reader_init(&c->reader, FRAME_MAX_DEFAULT);
  uv_pipe_init(listener->loop, &c->pipe, 0);
  c->pipe.data = c;
  if (uv_accept(listener, (uv_stream_t *)&c->pipe) != 0 ||
      uv_read_start((uv_stream_t *)&c->pipe, echo_on_alloc, echo_on_read) != 0)
    echo_close(c);
}

/* The echo server's process: serves until killed. */
static void echo_main(const char *path) {
  uv_loop_t loop;
  uv_pipe_t listener;
  signal(SIGPIPE, SIG_IGN);
  if (uv_loop_init(&loop) != 0 || uv_pipe_init(&loop, &listener, 0) != 0 ||
      uv_pipe_bind(&listener, path) != 0 ||
      uv_listen((uv_stream_t *)&listener, 128, echo_on_connection) != 0) {
    fprintf(stderr, "pinpool-bench load: the echo server cannot listen on %s\n", path);
    _exit(1);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  _exit(0);
}

int bench_echo_start(bench_daemon_t *e, int cpu) {
  memset(e, 0, sizeof *e);
  snprintf(e->dir, sizeof e->dir, "/tmp/pp-bench-echo-XXXXXX");
  if (!mkdtemp(e->dir)) {
    e->dir[0] = '\0';
    return -1;
  }
  snprintf(e->sock, sizeof e->sock, "%s/echo.sock", e->dir);
  e->pid = fork();
  if (e->pid < 0) {
    e->pid = 0;
    return -1;
  }
  if (e->pid == 0) {
    /* Hold no copy of the benchmark's other sockets: an echo child of bench ipc would not
     * see EOF when the benchmark closes its end. */
    close_range(3, ~0u, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    bench_pin(cpu);
    echo_main(e->sock);
  }
  for (int i = 0; i < 1000; i++) {
    int fd = bench_connect_unix(e->sock);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    if (waitpid(e->pid, NULL, WNOHANG) == e->pid) {
      e->pid = 0;
      return -1;
    }
    bench_sleep_ms(10);
  }
  return -1;
}

void bench_echo_stop(bench_daemon_t *e) {
  if (e->pid > 0) {
    kill(e->pid, SIGKILL);
    waitpid(e->pid, NULL, 0);
    e->pid = 0;
  }
  bench_daemon_stop(e); /* the socket and its folder */
}
