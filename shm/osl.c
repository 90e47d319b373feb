/*
 * osl.c — the OS seam: thin wrappers over the system calls shm/ makes (region, hugetlb,
 * physmap, pin, memguard), each one preceded by a fault-injection check.
 *
 * Why a seam at all: the region's error paths (a memfd that cannot be created, a
 * hugepage pool that runs dry in fallocate, an mmap or a pagemap read that fails) are
 * the paths an operator meets on a badly configured machine, and they must report the
 * cause and release everything taken so far.  They cannot be provoked reliably from
 * outside, so tests arm a failure here instead: osl_fail_nth(OSL_MMAP, 2, ENOMEM) makes
 * the second next mmap fail with ENOMEM without calling the kernel.
 *
 * State: per call kind, a countdown (0 = disarmed), the errno to inject, and a counter
 * of calls made.  All three are atomics: the check is one relaxed load on the fast path
 * and a compare-and-swap loop only while armed, so exactly one call observes the count
 * reaching zero even when several threads race.  No locks.
 *
 * The wrappers keep libc's convention (-1 and errno); see osl.h.
 */
#define _GNU_SOURCE /* memfd_create, fallocate, F_ADD_SEALS */
#include "osl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static _Atomic unsigned osl_countdown[OSL_NR_CALLS]; /* 0 = disarmed; 1 = the next call fails */
static _Atomic int osl_errno[OSL_NR_CALLS];          /* errno the failing call reports */
static _Atomic unsigned long osl_count[OSL_NR_CALLS]; /* calls made since osl_reset() */

static const char *const osl_names[OSL_NR_CALLS] = {
    [OSL_MEMFD_CREATE] = "memfd_create",
    [OSL_FTRUNCATE] = "ftruncate",
    [OSL_FALLOCATE] = "fallocate",
    [OSL_ADD_SEALS] = "fcntl(F_ADD_SEALS)",
    [OSL_GET_SEALS] = "fcntl(F_GET_SEALS)",
    [OSL_FSTAT] = "fstat",
    [OSL_FSTATFS] = "fstatfs",
    [OSL_MMAP] = "mmap",
    [OSL_MUNMAP] = "munmap",
    [OSL_MADVISE] = "madvise",
    [OSL_MLOCK] = "mlock",
    [OSL_GETRLIMIT] = "getrlimit",
    [OSL_OPEN] = "open",
    [OSL_PREAD] = "pread",
    [OSL_CLOSE] = "close",
    [OSL_IO_URING_SETUP] = "io_uring_setup",
    [OSL_IO_URING_REGISTER] = "io_uring_register",
    [OSL_SIGACTION] = "sigaction",
    [OSL_SET_MEMPOLICY] = "set_mempolicy",
    [OSL_FCHMOD] = "fchmod",
};

/* True when this call must fail; errno is then set.  Counts every call. */
static bool osl_inject(osl_call_t call) {
  atomic_fetch_add_explicit(&osl_count[call], 1, memory_order_relaxed);
  unsigned c = atomic_load_explicit(&osl_countdown[call], memory_order_relaxed);
  while (c != 0) {
    if (atomic_compare_exchange_weak_explicit(&osl_countdown[call], &c, c - 1,
                                              memory_order_acq_rel, memory_order_relaxed)) {
      if (c != 1) return false;
      errno = atomic_load_explicit(&osl_errno[call], memory_order_relaxed);
      return true;
    }
  }
  return false;
}

void osl_fail_nth(osl_call_t call, unsigned nth, int err) {
  if ((unsigned)call >= OSL_NR_CALLS) return;
  atomic_store(&osl_errno[call], err);
  atomic_store(&osl_countdown[call], nth);
}

void osl_reset(void) {
  for (unsigned i = 0; i < OSL_NR_CALLS; i++) {
    atomic_store(&osl_countdown[i], 0);
    atomic_store(&osl_errno[i], 0);
    atomic_store(&osl_count[i], 0);
  }
}

unsigned long osl_calls(osl_call_t call) {
  if ((unsigned)call >= OSL_NR_CALLS) return 0;
  return atomic_load(&osl_count[call]);
}

const char *osl_call_name(osl_call_t call) {
  if ((unsigned)call >= OSL_NR_CALLS) return "?";
  return osl_names[call];
}

int osl_memfd_create(const char *name, unsigned flags) {
  if (osl_inject(OSL_MEMFD_CREATE)) return -1;
  return memfd_create(name, flags);
}

int osl_ftruncate(int fd, uint64_t size) {
  if (osl_inject(OSL_FTRUNCATE)) return -1;
  return ftruncate(fd, (off_t)size);
}

int osl_fallocate(int fd, int mode, uint64_t offset, uint64_t len) {
  if (osl_inject(OSL_FALLOCATE)) return -1;
  /* hugetlbfs stops at any pending signal with EINTR, keeping the pages it got; a retry
   * goes on from there.  (Closing an io_uring ring makes one "pending": its exit work
   * queues task work on us with TWA_SIGNAL.) */
  int rc;
  do {
    rc = fallocate(fd, mode, (off_t)offset, (off_t)len);
  } while (rc < 0 && errno == EINTR);
  return rc;
}

int osl_add_seals(int fd, int seals) {
  if (osl_inject(OSL_ADD_SEALS)) return -1;
  return fcntl(fd, F_ADD_SEALS, seals);
}

int osl_fchmod(int fd, mode_t mode) {
  if (osl_inject(OSL_FCHMOD)) return -1;
  return fchmod(fd, mode);
}

int osl_get_seals(int fd) {
  if (osl_inject(OSL_GET_SEALS)) return -1;
  return fcntl(fd, F_GET_SEALS);
}

int osl_fstat(int fd, struct stat *ret_st) {
  if (osl_inject(OSL_FSTAT)) return -1;
  return fstat(fd, ret_st);
}

int osl_fstatfs(int fd, struct statfs *ret_st) {
  if (osl_inject(OSL_FSTATFS)) return -1;
  return fstatfs(fd, ret_st);
}

void *osl_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
  if (osl_inject(OSL_MMAP)) return MAP_FAILED;
  return mmap(addr, len, prot, flags, fd, offset);
}

int osl_munmap(void *addr, size_t len) {
  if (osl_inject(OSL_MUNMAP)) return -1;
  return munmap(addr, len);
}

int osl_madvise(void *addr, size_t len, int advice) {
  if (osl_inject(OSL_MADVISE)) return -1;
  return madvise(addr, len, advice);
}

int osl_mlock(const void *addr, size_t len) {
  if (osl_inject(OSL_MLOCK)) return -1;
  /* The raw system call: AddressSanitizer replaces mlock() with a no-op that returns 0,
   * which would make the sanitizer build claim pages are pinned when they are not. */
  return (int)syscall(SYS_mlock, addr, len);
}

int osl_getrlimit(int resource, struct rlimit *ret_rl) {
  if (osl_inject(OSL_GETRLIMIT)) return -1;
  return getrlimit(resource, ret_rl);
}

int osl_open(const char *path, int flags) {
  if (osl_inject(OSL_OPEN)) return -1;
  return open(path, flags | O_CLOEXEC);
}

ssize_t osl_pread(int fd, void *buf, size_t len, off_t offset) {
  if (osl_inject(OSL_PREAD)) return -1;
  ssize_t n;
  do {
    n = pread(fd, buf, len, offset);
  } while (n < 0 && errno == EINTR);
  return n;
}

int osl_close(int fd) {
  if (osl_inject(OSL_CLOSE)) return -1;
  return close(fd);
}

int osl_io_uring_setup(unsigned entries, void *params) {
  if (osl_inject(OSL_IO_URING_SETUP)) return -1;
  return (int)syscall(SYS_io_uring_setup, entries, params);
}

int osl_io_uring_register(int ring, unsigned opcode, const void *arg, unsigned nr_args) {
  if (osl_inject(OSL_IO_URING_REGISTER)) return -1;
  return (int)syscall(SYS_io_uring_register, ring, opcode, arg, nr_args);
}

int osl_sigaction(int sig, const struct sigaction *act, struct sigaction *ret_old) {
  if (osl_inject(OSL_SIGACTION)) return -1;
  return sigaction(sig, act, ret_old);
}

int osl_set_mempolicy_node(int node) {
  unsigned long mask[16] = {0}; /* nodes 0..1023 */
  if (osl_inject(OSL_SET_MEMPOLICY)) return -1;
  if (node < 0) return (int)syscall(SYS_set_mempolicy, 0 /* MPOL_DEFAULT */, NULL, 0UL);
  if ((size_t)node >= sizeof mask * 8) {
    errno = EINVAL;
    return -1;
  }
  mask[(size_t)node / (8 * sizeof mask[0])] |= 1UL << ((size_t)node % (8 * sizeof mask[0]));
  /* maxnode counts bits and the kernel drops the last one: one more than the mask holds. */
  return (int)syscall(SYS_set_mempolicy, 2 /* MPOL_BIND */, mask, sizeof mask * 8 + 1);
}

int osl_numa_node_exists(int node) {
  char path[64];
  struct stat st;
  if (node < 0) return 0;
  snprintf(path, sizeof path, "/sys/devices/system/node/node%d", node);
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int osl_read_u64(const char *path, uint64_t *ret) {
  char buf[32];
  int fd = osl_open(path, O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = osl_pread(fd, buf, sizeof buf - 1, 0);
  int err = errno;
  osl_close(fd);
  if (n < 0) {
    errno = err;
    return -1;
  }
  buf[n] = '\0';
  char *end;
  errno = 0;
  unsigned long long v = strtoull(buf, &end, 10);
  if (errno || end == buf) {
    errno = EINVAL;
    return -1;
  }
  *ret = v;
  return 0;
}

uint64_t osl_base_page_size(void) {
  long ps = sysconf(_SC_PAGESIZE);
  return ps > 0 ? (uint64_t)ps : 4096u;
}
