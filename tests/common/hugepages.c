/*
 * hugepages.c — see hugepages.h.
 */
#define _GNU_SOURCE /* memfd_create, fallocate */
#include "hugepages.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB (21u << 26)
#endif

static long hp_saved = -1; /* the pool's size when hp_begin() first ran */
static int hp_lock_fd = -1;

long hp_read(const char *file) {
  char path[256];
  long v = -1;
  snprintf(path, sizeof path, HP_POOL "/%s", file);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  if (fscanf(f, "%ld", &v) != 1) v = -1;
  fclose(f);
  return v;
}

static bool hp_write_nr(long v) {
  FILE *f = fopen(HP_POOL "/nr_hugepages", "w");
  if (!f) return false;
  bool ok = fprintf(f, "%ld\n", v) > 0;
  return fclose(f) == 0 && ok;
}

long hp_available(void) {
  long f = hp_read("free_hugepages"), r = hp_read("resv_hugepages");
  return f < 0 || r < 0 ? -1 : f - r;
}

bool hp_restore(void) {
  bool ok = true;
  if (hp_saved >= 0 && hp_read("nr_hugepages") != hp_saved && !hp_write_nr(hp_saved)) {
    fprintf(stderr, "could not restore " HP_POOL "/nr_hugepages to %ld\n", hp_saved);
    ok = false;
  }
  return ok;
}

static void hp_restore_at_exit(void) {
  hp_restore();
}

bool hp_begin(const char **why) {
  if (hp_saved >= 0) return true;
  if (geteuid() != 0) return *why = "changing the hugepage pool needs root", false;
  if (hp_read("nr_hugepages") < 0)
    return *why = "this kernel offers no 2 MiB hugepages (no " HP_POOL ")", false;
  if (hp_lock_fd < 0) {
    mkdir("/run/lock", 01777); /* absent in some containers */
    hp_lock_fd = open(HP_LOCK_PATH, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (hp_lock_fd < 0) return *why = "cannot open " HP_LOCK_PATH, false;
    if (flock(hp_lock_fd, LOCK_EX) != 0) return *why = "cannot lock " HP_LOCK_PATH, false;
  }
  hp_saved = hp_read("nr_hugepages");
  atexit(hp_restore_at_exit);
  return true;
}

bool hp_make_available(long n, const char **why) {
  if (!hp_begin(why)) return false;
  long nr = hp_read("nr_hugepages"), avail = hp_available();
  if (nr < 0 || avail < 0) return *why = "cannot read the hugepage pool", false;
  if (avail == n) return true;
  if (nr + (n - avail) < 0 || !hp_write_nr(nr + (n - avail)))
    return *why = "cannot write " HP_POOL "/nr_hugepages", false;
  if (hp_available() != n) {
    hp_restore();
    return *why = "the kernel could not give that many 2 MiB hugepages (memory too "
                  "fragmented?)",
           false;
  }
  return true;
}

static int frame_cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

bool hp_free_frames(long n, uint64_t *frames, const char **why) {
  bool ok = false;
  char *p = MAP_FAILED;
  int pm = -1, fd = memfd_create("pp-test-frames", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
  if (n <= 0) return *why = "no pages asked for", false;
  if (fd < 0) return *why = "memfd_create(MFD_HUGETLB) failed", false;
  if (ftruncate(fd, (off_t)(n * HP_SIZE)) != 0 || fallocate(fd, 0, 0, (off_t)(n * HP_SIZE))) {
    *why = "the pool has fewer pages available than asked";
    goto out;
  }
  p = mmap(NULL, n * HP_SIZE, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (p == MAP_FAILED || pm < 0) {
    *why = "cannot map the pages or open /proc/self/pagemap";
    goto out;
  }
  long ps = sysconf(_SC_PAGESIZE);
  for (long i = 0; i < n; i++) {
    uint64_t e = 0, va = (uint64_t)(uintptr_t)(p + i * HP_SIZE);
    if (pread(pm, &e, sizeof e, (off_t)(va / (uint64_t)ps * sizeof e)) != sizeof e ||
        !(e >> 63) || (e & ((1ull << 55) - 1)) == 0) {
      *why = "/proc/self/pagemap hides frame numbers (needs CAP_SYS_ADMIN)";
      goto out;
    }
    frames[i] = (e & ((1ull << 55) - 1)) * (uint64_t)ps;
  }
  qsort(frames, (size_t)n, sizeof *frames, frame_cmp);
  ok = true;
out:
  if (p != MAP_FAILED) munmap(p, n * HP_SIZE);
  if (pm >= 0) close(pm);
  close(fd);
  return ok;
}
