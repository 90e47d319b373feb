/*
 * osl.h — the OS seam of shm/: every system call the region makes goes through here, so
 * that tests can make the Nth next call of a kind fail with a chosen errno and check
 * that the failure is reported and leaks nothing (mimalloc's prim layer, systemd's
 * fault-injection habit).  See osl.c.
 *
 * Convention: these keep libc's own (fd or 0 on success, -1 with errno set; osl_mmap
 * returns MAP_FAILED), because they are the OS, not pinpool; region.c turns an OS
 * failure into a PP_E* code and a log line naming the call and errno.
 *
 * Fault injection is always compiled in: the fast path is one relaxed atomic load per
 * call.  It is thread-safe (atomics), but a test that arms it should run the code under
 * test on one thread, or it cannot know which thread's call will fail.
 */
#ifndef PP_OSL_H
#define PP_OSL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>

typedef enum osl_call {
  OSL_MEMFD_CREATE = 0,
  OSL_FTRUNCATE,
  OSL_FALLOCATE,
  OSL_ADD_SEALS, /* fcntl(F_ADD_SEALS) */
  OSL_GET_SEALS, /* fcntl(F_GET_SEALS) */
  OSL_FSTAT,
  OSL_FSTATFS,
  OSL_MMAP,
  OSL_MUNMAP,
  OSL_MADVISE,
  OSL_MLOCK,
  OSL_GETRLIMIT,
  OSL_OPEN,
  OSL_PREAD,
  OSL_CLOSE,
  OSL_IO_URING_SETUP,
  OSL_IO_URING_REGISTER,
  OSL_SIGACTION,
  OSL_SET_MEMPOLICY,
  OSL_FCHMOD,
  OSL_NR_CALLS
} osl_call_t;

int osl_memfd_create(const char *name, unsigned flags);
int osl_ftruncate(int fd, uint64_t size);
/* fallocate(2), retried on EINTR. */
int osl_fallocate(int fd, int mode, uint64_t offset, uint64_t len);
int osl_add_seals(int fd, int seals);
int osl_fchmod(int fd, mode_t mode);
/* The seals (>= 0), or -1 with errno. */
int osl_get_seals(int fd);
int osl_fstat(int fd, struct stat *ret_st);
int osl_fstatfs(int fd, struct statfs *ret_st);
void *osl_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset);
int osl_munmap(void *addr, size_t len);
int osl_madvise(void *addr, size_t len, int advice);
int osl_mlock(const void *addr, size_t len);
int osl_getrlimit(int resource, struct rlimit *ret_rl);
/* open(2) with O_CLOEXEC added. */
int osl_open(const char *path, int flags);
/* pread(2), retried on EINTR; may return fewer bytes than asked (the caller checks). */
ssize_t osl_pread(int fd, void *buf, size_t len, off_t offset);
int osl_close(int fd);
/* The raw io_uring system calls (no liburing): the ring fd / register's result, or -1
 * with errno. */
int osl_io_uring_setup(unsigned entries, void *params);
int osl_io_uring_register(int ring, unsigned opcode, const void *arg, unsigned nr_args);
int osl_sigaction(int sig, const struct sigaction *act, struct sigaction *ret_old);
/* set_mempolicy(2) for the calling thread (raw system call: no libnuma): node >= 0 binds
 * every page the thread faults in or reserves from now on to that NUMA node (MPOL_BIND);
 * node < 0 goes back to the default policy (MPOL_DEFAULT). */
int osl_set_mempolicy_node(int node);
/* Does NUMA node `node` exist on this machine (/sys/devices/system/node/nodeN)?  Not
 * injectable: a pure query of sysfs. */
int osl_numa_node_exists(int node);

/* A small decimal file (sysfs, procfs) through osl_open/osl_pread/osl_close: 0, or -1
 * with errno (EINVAL when it holds no number). */
int osl_read_u64(const char *path, uint64_t *ret);

/* The base page size (sysconf(_SC_PAGESIZE)); never fails, not injectable. */
uint64_t osl_base_page_size(void);

/* Fault injection: the nth next call of this kind (nth = 1: the very next one) fails
 * with errno = err and does nothing.  nth = 0 disarms that kind. */
void osl_fail_nth(osl_call_t call, unsigned nth, int err);
/* Disarm every kind and zero the call counters. */
void osl_reset(void);
/* How many calls of this kind were made since the last osl_reset() (failed ones too). */
unsigned long osl_calls(osl_call_t call);
/* "memfd_create", "fallocate", ...; "?" for a value outside the enum. */
const char *osl_call_name(osl_call_t call);

#endif /* PP_OSL_H */
