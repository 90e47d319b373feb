/*
 * pin.c — long-term pins on the region's pages through io_uring fixed buffers.
 *
 * Why.  Every client receives the region's memfd read-write, and nothing short of
 * forbidding writes stops a holder from calling fallocate(PUNCH_HOLE | KEEP_SIZE) on it.
 * The punched pages leave the file and every mapping of it; with nothing else holding
 * them they go back to the kernel (a hugetlb page to its pool, where another process may
 * take it).  The daemon would keep reporting their physical addresses, and a device
 * programmed with one of them would write into memory the kernel has given to someone
 * else.  mlock does not help: it is a property of the mapping, and the punch removes the
 * page from the mapping.  What keeps a page is a reference the file does not own: a
 * long-term pin (FOLL_LONGTERM).  A punched page that we pin stays allocated to us — out
 * of the file, out of every mapping, but never reused — for as long as we hold the pin.
 *
 * How.  The one unprivileged interface that takes long-term pins on arbitrary user memory
 * and keeps them until told otherwise is io_uring's registered (fixed) buffers: the kernel
 * pins every page of each buffer at registration (pin_user_pages with FOLL_WRITE |
 * FOLL_LONGTERM, migrating it out of ZONE_MOVABLE/CMA first) and unpins at unregistration.
 * It accepts hugetlb and shmem (memfd) pages.  We never submit I/O: the ring exists only
 * to own the pins.
 *   - pin_region: io_uring_setup(1 entry), then IORING_REGISTER_BUFFERS2 with
 *     IORING_RSRC_REGISTER_SPARSE for a table of empty slots (Linux 5.19+), then
 *     IORING_REGISTER_BUFFERS_UPDATE one slot at a time: the region in buffers of at most
 *     1 GiB, the most one slot takes.  A table holds at most 16384 buffers, so a region up
 *     to 16 TiB can be pinned, with PIN_REPAIR_SLOTS spare.
 *   - pin_add: a repaired range (the punched pages replaced by new ones) goes into fresh
 *     slots.  The slots of the old pages are not touched: their punched pages stay pinned
 *     until the region is destroyed, because a device may still be programmed with their
 *     addresses (a buffer handed out before the punch).  That is the price of the
 *     guarantee, so it is bounded: the budget (at least the region's size; region.c gives
 *     twice it) caps the bytes pinned over the region's life — a client punching the same
 *     range again and again gets it repaired until the budget is spent, then lost.
 *   - pin_fini: IORING_UNREGISTER_BUFFERS, then close.  Unregistering releases the pins
 *     before it returns; closing the ring alone would release them later, from a kernel
 *     worker, so a test (or a restart) would see the pages come back at an unknown time.
 *
 * Accounting.  Without CAP_IPC_LOCK io_uring charges every pinned byte to RLIMIT_MEMLOCK,
 * per user (user->locked_vm, shared by all the user's processes), separately from mlock's
 * per-process count — a 4 KiB region that is both mlocked and pinned needs the limit
 * twice over, once in each counter.  pinpoold.service keeps CAP_IPC_LOCK and sets
 * LimitMEMLOCK=infinity; a non-root daemon under the default 8 MiB limit pins nothing
 * larger, and says so.
 *
 * Degrading.  When the pin cannot be had — io_uring compiled out (ENOSYS) or disabled
 * (/proc/sys/kernel/io_uring_disabled 2, or 1 without the io_uring group; a seccomp
 * filter: EPERM), a kernel without sparse tables (EINVAL), RLIMIT_MEMLOCK (ENOMEM), a
 * kernel that will not pin this memory (EOPNOTSUPP) — pin_region releases whatever it
 * took, returns PP_EOS and leaves why_not saying which, with the fix; the region works
 * without it and region_describe says it is unpinned.
 *
 * Invariants: ring < 0 iff nothing is pinned (then used = 0, pinned_bytes = 0, why_not
 * non-empty); used <= nr_slots; pinned_bytes <= budget.  Locks: none; one owner.  Every
 * system call goes through shm/osl (fault injection).
 *
 * References: io_uring_register(2) IORING_REGISTER_BUFFERS2, IORING_REGISTER_BUFFERS_UPDATE,
 * IORING_UNREGISTER_BUFFERS; Documentation/core-api/pin_user_pages.rst (FOLL_LONGTERM);
 * Documentation/admin-guide/sysctl/kernel.rst (io_uring_disabled, io_uring_group).
 */
#define _GNU_SOURCE
#include "pin.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include "osl.h"
#include "pinpool_err.h"
#include "units.h"

void pin_init(pin_t *p) {
  *p = (pin_t){.ring = -1};
  snprintf(p->why_not, sizeof p->why_not, "not attempted");
}

bool pin_active(const pin_t *p) {
  return p->ring >= 0;
}

/* Words for a failed io_uring call: what it means here and what fixes it. */
static void pin_explain(int err, const char *call, uint64_t len, char *why, size_t why_len) {
  char s1[32], s2[32];
  uint64_t v;
  struct rlimit rl;
  switch (err) {
  case ENOSYS:
    snprintf(why, why_len, "%s: %s: this kernel has no io_uring (CONFIG_IO_URING)", call,
             strerror(err));
    return;
  case EPERM:
  case EACCES:
    if (osl_read_u64("/proc/sys/kernel/io_uring_disabled", &v) == 0 && v != 0)
      snprintf(why, why_len,
               "%s: %s: io_uring is disabled (kernel.io_uring_disabled = %" PRIu64 "%s)", call,
               strerror(err), v, v == 1 ? " and we are not in kernel.io_uring_group" : "");
    else
      snprintf(why, why_len, "%s: %s: io_uring refused (a seccomp filter?)", call,
               strerror(err));
    return;
  case ENOMEM:
    units_format_size(len, s1, sizeof s1);
    if (osl_getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
      units_format_size(rl.rlim_cur, s2, sizeof s2);
      snprintf(why, why_len,
               "%s of %s: %s: without CAP_IPC_LOCK io_uring charges pinned memory to "
               "RLIMIT_MEMLOCK (%s). Fix: LimitMEMLOCK=infinity in the unit (or ulimit -l), "
               "or CAP_IPC_LOCK",
               call, s1, strerror(err), s2);
    } else {
      snprintf(why, why_len, "%s of %s: %s", call, s1, strerror(err));
    }
    return;
  case EOPNOTSUPP:
    snprintf(why, why_len, "%s: %s: this kernel's io_uring does not pin this memory", call,
             strerror(err));
    return;
  case EFAULT:
    snprintf(why, why_len, "%s: %s: a page of the range has no backing (a hole)", call,
             strerror(err));
    return;
  default: snprintf(why, why_len, "%s: %s", call, strerror(err)); return;
  }
}

/* Register [addr, addr+len) in fresh slots of up to PIN_SLOT_MAX.  0, or PP_EQUOTA / PP_EOS
 * with why; slots filled before a failure stay filled (and counted). */
static int pin_slots(pin_t *p, void *addr, uint64_t len, char *why, size_t why_len) {
  uint64_t need = (len + PIN_SLOT_MAX - 1) / PIN_SLOT_MAX;
  if (need > p->nr_slots - p->used) {
    snprintf(why, why_len, "no io_uring buffer slot left (%" PRIu32 " used)", p->used);
    return PP_EQUOTA;
  }
  if (len > p->budget - p->pinned_bytes) {
    char s1[32];
    units_format_size(p->budget, s1, sizeof s1);
    snprintf(why, why_len, "the pin budget of %s is spent (punched pages stay pinned)", s1);
    return PP_EQUOTA;
  }
  for (uint64_t off = 0; off < len; off += PIN_SLOT_MAX) {
    struct iovec iov = {.iov_base = (char *)addr + off,
                        .iov_len = len - off < PIN_SLOT_MAX ? len - off : PIN_SLOT_MAX};
    struct io_uring_rsrc_update2 up = {
        .offset = p->used, .data = (uint64_t)(uintptr_t)&iov, .nr = 1};
    int rc = osl_io_uring_register(p->ring, IORING_REGISTER_BUFFERS_UPDATE, &up, sizeof up);
    if (rc != 1) {
      int err = rc < 0 ? errno : EIO; /* 0 buffers updated and no error: say EIO */
      pin_explain(err, "io_uring_register(IORING_REGISTER_BUFFERS_UPDATE)", iov.iov_len, why,
                  why_len);
      return PP_EOS;
    }
    p->used++;
    p->pinned_bytes += iov.iov_len;
  }
  return 0;
}

int pin_region(pin_t *p, void *base, uint64_t size, uint64_t budget) {
  char why[sizeof p->why_not];
  pin_fini(p);
  uint64_t slots = (size + PIN_SLOT_MAX - 1) / PIN_SLOT_MAX;
  if (slots > PIN_MAX_SLOTS) {
    snprintf(why, sizeof why, "the region is larger than io_uring can pin (%u x 1 GiB)",
             PIN_MAX_SLOTS);
    goto fail;
  }
  struct io_uring_params params;
  memset(&params, 0, sizeof params);
  p->ring = osl_io_uring_setup(1, &params);
  if (p->ring < 0) {
    pin_explain(errno, "io_uring_setup", size, why, sizeof why);
    goto fail;
  }
  p->nr_slots = (uint32_t)(slots + PIN_REPAIR_SLOTS < PIN_MAX_SLOTS ? slots + PIN_REPAIR_SLOTS
                                                                    : PIN_MAX_SLOTS);
  struct io_uring_rsrc_register reg = {.nr = p->nr_slots, .flags = IORING_RSRC_REGISTER_SPARSE};
  if (osl_io_uring_register(p->ring, IORING_REGISTER_BUFFERS2, &reg, sizeof reg) != 0) {
    int err = errno;
    if (err == EINVAL)
      snprintf(why, sizeof why,
               "io_uring_register(IORING_REGISTER_BUFFERS2, sparse): %s: this kernel has no "
               "sparse io_uring buffer tables (Linux 5.19)",
               strerror(err));
    else
      pin_explain(err, "io_uring_register(IORING_REGISTER_BUFFERS2)", size, why, sizeof why);
    goto fail;
  }
  p->budget = budget > size ? budget : size;
  if (pin_slots(p, base, size, why, sizeof why) != 0) goto fail;
  p->why_not[0] = '\0';
  return 0;
fail:
  pin_fini(p);
  snprintf(p->why_not, sizeof p->why_not, "%s", why);
  return PP_EOS;
}

int pin_add(pin_t *p, void *addr, uint64_t len, char *why, size_t why_len) {
  if (!pin_active(p)) {
    snprintf(why, why_len, "the region is not pinned");
    return PP_EINVAL;
  }
  return pin_slots(p, addr, len, why, why_len);
}

void pin_fini(pin_t *p) {
  if (p->ring >= 0) {
    /* A failure leaves the pins to the ring's release at close, later but certain. */
    if (p->used) osl_io_uring_register(p->ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
    osl_close(p->ring);
  }
  p->ring = -1;
  p->nr_slots = 0;
  p->used = 0;
  p->pinned_bytes = 0;
  p->budget = 0;
  snprintf(p->why_not, sizeof p->why_not, "released");
}
