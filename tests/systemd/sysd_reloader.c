/*
 * sysd_reloader.c — a libpinpool client that keeps working while pinpoold reloads (executes
 * itself again), run inside the systemd test namespace (tests/systemd/sysd.sh run) by
 * test_systemd.sh.
 *
 *   sysd_reloader DIR [--page-size BYTES]
 *
 * Connects through the default socket (checking the region's page size when given: 2097152
 * asks for 2 MiB hugepages), allocates two buffers of one page each, PP_CONTIGUOUS, the
 * second published as "reloader", and 32 objects, with a pattern in each; writes
 * DIR/ready; then makes requests back to back (an allocation and its free) until DIR/go
 * appears (at most 120 s), timing each.  Then it checks every pattern, looks its published
 * buffer up again (same offset, same physical address, still contiguous), frees everything
 * and writes DIR/result: "ok OPS RECLAIMS LONGEST_MS" or "FAILED: why".  Exit 0 when ok.
 * A reload must cost no re-claim: the test requires RECLAIMS to be 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
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

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  uint64_t want_page = 0, ops = 0, longest = 0;
  pp_client *c;
  pp_buffer b[2], again, x;
  pp_cache *k;
  void *objs[32];
  char path[600], msg[96];
  int rc;

  if (argc < 2) {
    fprintf(stderr, "usage: sysd_reloader DIR [--page-size BYTES]\n");
    return 2;
  }
  snprintf(dir, sizeof dir, "%s", argv[1]);
  if (argc == 4 && !strcmp(argv[2], "--page-size")) want_page = strtoull(argv[3], NULL, 0);
  if ((rc = pp_connect(NULL, "reloader", &c))) return failed("pp_connect: %s", pp_strerror(rc));
  if (want_page && pp_page_size(c) != want_page)
    return failed("the region's pages are %" PRIu64 " bytes, not %" PRIu64, pp_page_size(c),
                  want_page);
  uint64_t size = pp_page_size(c);
  if ((rc = pp_alloc(c, size, PP_CONTIGUOUS, &b[0])) ||
      (rc = pp_alloc_named(c, "reloader", size, PP_CONTIGUOUS, &b[1])))
    return failed("pp_alloc of a %" PRIu64 "-byte page: %s", size, pp_strerror(rc));
  for (int i = 0; i < 2; i++) {
    if (!b[i].contiguous) return failed("buffer %d is not contiguous", i);
    pattern_fill(b[i].addr, b[i].size, 1 + (uint64_t)i);
  }
  if ((rc = pp_cache_open(c, "reloader", 128, 0, &k)))
    return failed("pp_cache_open: %s", pp_strerror(rc));
  for (int i = 0; i < 32; i++) {
    if (!(objs[i] = pp_cache_alloc(k))) return failed("pp_cache_alloc");
    pattern_fill(objs[i], 128, 100 + (uint64_t)i);
  }
  put("ready", "ready\n");
  snprintf(path, sizeof path, "%s/go", dir);
  uint64_t until = now_ns() + 120ull * 1000000000u;
  while (access(path, F_OK) != 0) {
    if (now_ns() > until) return failed("no DIR/go within 120 s");
    uint64_t t0 = now_ns();
    if ((rc = pp_alloc(c, 4096, 0, &x))) return failed("pp_alloc: %s", pp_strerror(rc));
    if ((rc = pp_free(c, x.handle))) return failed("pp_free: %s", pp_strerror(rc));
    uint64_t dt = now_ns() - t0;
    if (dt > longest) longest = dt;
    ops++;
  }
  for (int i = 0; i < 2; i++)
    if (!pattern_intact(b[i].addr, b[i].size, 1 + (uint64_t)i))
      return failed("buffer %d's contents changed", i);
  for (int i = 0; i < 32; i++)
    if (!pattern_intact(objs[i], 128, 100 + (uint64_t)i)) return failed("object %d changed", i);
  if ((rc = pp_lookup(c, "reloader", &again))) return failed("pp_lookup: %s", pp_strerror(rc));
  if (again.offset != b[1].offset || again.phys != b[1].phys || !again.contiguous)
    return failed("the published buffer moved: offset %" PRIu64 " phys %#" PRIx64
                  " before, %" PRIu64 " %#" PRIx64 " after",
                  b[1].offset, b[1].phys, again.offset, again.phys);
  if ((rc = pp_free(c, again.handle)) || (rc = pp_free(c, b[0].handle)) ||
      (rc = pp_free(c, b[1].handle)))
    return failed("pp_free: %s", pp_strerror(rc));
  for (int i = 0; i < 32; i++)
    if ((rc = pp_cache_free(k, objs[i]))) return failed("pp_cache_free: %s", pp_strerror(rc));
  uint64_t reclaims = pp_reclaims(c);
  pp_disconnect(c);
  snprintf(msg, sizeof msg, "ok %" PRIu64 " %" PRIu64 " %.1f\n", ops, reclaims,
           (double)longest / 1e6);
  put("result", msg);
  return 0;
}
