/*
 * pin.h — long-term pins on the region's pages, independent of the file that holds them:
 * the pages are registered as io_uring fixed buffers (FOLL_LONGTERM), so a page a client
 * punches out of the memfd stays allocated to pinpoold instead of going back to the
 * kernel.  See pin.c.
 */
#ifndef PP_PIN_H
#define PP_PIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PIN_SLOT_MAX (1ull << 30) /* io_uring takes at most 1 GiB per registered buffer */
#define PIN_MAX_SLOTS 16384u      /* io_uring's limit on registered buffers per ring */
#define PIN_REPAIR_SLOTS 1024u    /* slots kept for repairs beyond those of the region */

typedef struct pin {
  int ring;              /* io_uring fd; -1 when nothing is pinned */
  uint32_t nr_slots;     /* capacity of the sparse buffer table */
  uint32_t used;         /* slots filled; a slot is never emptied before pin_fini */
  uint64_t pinned_bytes; /* bytes under pins, superseded ones included */
  uint64_t budget;       /* pinned_bytes may not pass it */
  char why_not[320];     /* why the region is not pinned; "" when it is */
} pin_t;

/* Nothing pinned; why_not says so. */
void pin_init(pin_t *p);
/* Pin [base, base+size) for as long as the pin lives: one io_uring ring with a sparse
 * table of min(PIN_MAX_SLOTS, slots for size + PIN_REPAIR_SLOTS) buffers, the region in
 * slots of up to PIN_SLOT_MAX.  budget caps the bytes pinned over the pin's life (repairs
 * included; at least size).  0, or PP_EOS with why_not saying what failed and what fixes
 * it — io_uring disabled (/proc/sys/kernel/io_uring_disabled, seccomp), absent, too old,
 * RLIMIT_MEMLOCK without CAP_IPC_LOCK — and nothing held. */
int pin_region(pin_t *p, void *base, uint64_t size, uint64_t budget);
bool pin_active(const pin_t *p);
/* Pin [addr, addr+len) again, in fresh slots (a repaired range: new pages behind old
 * addresses); the pins taken before stay, so a page punched out earlier stays ours.  0;
 * PP_EQUOTA when the budget or the slots are spent; PP_EOS when the kernel refuses (why
 * in why).  PP_EINVAL when nothing is pinned. */
int pin_add(pin_t *p, void *addr, uint64_t len, char *why, size_t why_len);
/* Release every pin now (unregistering is synchronous, closing the ring alone is not) and
 * close the ring. */
void pin_fini(pin_t *p);

#endif /* PP_PIN_H */
