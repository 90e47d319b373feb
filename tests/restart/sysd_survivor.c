/*
 * sysd_survivor.c — a libpinpool client that lives through a pinpoold restart, run inside
 * the systemd test namespace (tests/systemd/sysd.sh run) by test_systemd_restart.sh.
 *
 *   sysd_survivor DIR
 *
 * Connects through the default socket, allocates a 64 KiB buffer and 32 objects and
 * writes a pattern into each, writes DIR/ready, then waits (up to 120 s) for DIR/go.  Then
 * it carries on as if nothing happened: one more allocation (the call that finds the
 * connection gone and re-claims the session), checks every pattern, frees everything and
 * writes DIR/result: "ok N" (N: re-claims) or "FAILED: why".  Exit 0 when ok.
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pinpool.h>

#include "pattern.h"

static char dir[512];

static void put(const char *file, const char *text) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

static int failed(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int failed(const char *fmt, ...) {
  char msg[400], line[420];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(line, sizeof line, "FAILED: %s\n", msg);
  fputs(line, stderr);
  put("result", line);
  return 1;
}

int main(int argc, char **argv) {
  pp_client *c;
  pp_buffer b, x;
  pp_cache *k;
  void *objs[32];
  char path[600], msg[64];
  int rc;

  if (argc != 2) {
    fprintf(stderr, "usage: sysd_survivor DIR\n");
    return 2;
  }
  snprintf(dir, sizeof dir, "%s", argv[1]);
  if ((rc = pp_connect(NULL, "survivor", &c))) return failed("pp_connect: %s", pp_strerror(rc));
  if ((rc = pp_alloc(c, 65536, 0, &b))) return failed("pp_alloc: %s", pp_strerror(rc));
  pattern_fill(b.addr, b.size, 1);
  if ((rc = pp_cache_open(c, "survivor", 128, 0, &k)))
    return failed("pp_cache_open: %s", pp_strerror(rc));
  for (int i = 0; i < 32; i++) {
    if (!(objs[i] = pp_cache_alloc(k))) return failed("pp_cache_alloc");
    pattern_fill(objs[i], 128, 100 + (uint64_t)i);
  }
  put("ready", "ready\n");
  snprintf(path, sizeof path, "%s/go", dir);
  for (int i = 0; access(path, F_OK) != 0; i++) {
    if (i == 1200) return failed("no DIR/go within 120 s");
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  /* The daemon was killed and restarted meanwhile: this call re-claims. */
  if ((rc = pp_alloc(c, 4096, 0, &x)))
    return failed("pp_alloc after the restart: %s", pp_strerror(rc));
  if (!pattern_intact(b.addr, b.size, 1)) return failed("the buffer's contents changed");
  for (int i = 0; i < 32; i++)
    if (!pattern_intact(objs[i], 128, 100 + (uint64_t)i)) return failed("object %d changed", i);
  if ((rc = pp_free(c, x.handle)) || (rc = pp_free(c, b.handle)))
    return failed("pp_free: %s", pp_strerror(rc));
  for (int i = 0; i < 32; i++)
    if ((rc = pp_cache_free(k, objs[i]))) return failed("pp_cache_free: %s", pp_strerror(rc));
  uint64_t n = pp_reclaims(c);
  pp_disconnect(c);
  snprintf(msg, sizeof msg, "ok %" PRIu64 "\n", n);
  put("result", msg);
  return 0;
}
