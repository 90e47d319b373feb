/*
 * region_test.h — helpers shared by the region tests: a log sink that keeps what the
 * region said, counters of open fds and of mappings of a memfd, and an independent
 * reading of /proc/self/pagemap (plain libc, not the code under test).
 */
#ifndef PP_REGION_TEST_H
#define PP_REGION_TEST_H

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

/* Everything the region logged during one call, one message per line. */
typedef struct logcap {
  char text[16384];
  size_t len;
  unsigned count;
  int worst; /* lowest (most severe) syslog level seen; LOG_DEBUG + 1 when none */
} logcap_t;

static inline void logcap_init(logcap_t *c) {
  memset(c, 0, sizeof *c);
  c->worst = LOG_DEBUG + 1;
}

static inline void logcap_fn(void *ctx, int level, const char *msg) {
  logcap_t *c = ctx;
  c->count++;
  if (level < c->worst) c->worst = level;
  int n = snprintf(c->text + c->len, sizeof c->text - c->len, "%s\n", msg);
  if (n > 0)
    c->len += (size_t)n < sizeof c->text - c->len ? (size_t)n : sizeof c->text - c->len - 1;
}

static inline int count_open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* Lines of /proc/self/maps that map the memfd called name. */
static inline int count_memfd_maps(const char *name) {
  char pat[128], line[512];
  snprintf(pat, sizeof pat, "/memfd:%s ", name);
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return -1;
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, pat)) n++;
  fclose(f);
  return n;
}

/* Physical address of the byte at addr from pagemap; -1 when the PFN is not readable. */
static inline int pagemap_phys_of(const void *addr, uint64_t *ret) {
  uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE), e = 0;
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = pread(fd, &e, sizeof e, (off_t)((uintptr_t)addr / ps * sizeof e));
  close(fd);
  uint64_t pfn = e & ((1ull << 55) - 1);
  if (n != (ssize_t)sizeof e || !(e >> 63) || pfn == 0) return -1;
  *ret = pfn * ps + (uintptr_t)addr % ps;
  return 0;
}

/* Can this process read physical frame numbers at all? */
static inline int pagemap_gives_pfns(void) {
  static volatile char probe = 1;
  uint64_t p;
  probe++;
  return pagemap_phys_of((const void *)&probe, &p) == 0;
}

#endif /* PP_REGION_TEST_H */
