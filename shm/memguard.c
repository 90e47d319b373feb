/*
 * memguard.c — writes into the region that cannot kill the daemon.
 *
 * Why.  A client holding the region's fd can punch a hole in it.  The daemon's mapping of
 * the punched range then has no page; the next write faults one in — and for a hugetlb
 * region whose pool is empty (another process took the freed hugepages) the fault is a
 * SIGBUS, which by default kills pinpoold and every session with it.  region_zero() checks
 * the range first and refuses lost pages, but a punch can land between that check and the
 * write.  This guard turns that SIGBUS into an error return.
 *
 * How.  A SIGBUS handler (SA_SIGINFO | SA_NODEFER) is installed the first time a guard is
 * needed, remembering the handler it replaces; every later guard checks (one sigaction
 * query) that it is still installed, and if a handler installed since has replaced it,
 * goes in front of that one the same way.  memguard_set() arms a per-thread guard — a
 * sigjmp_buf and the range [dst, dst+n) — runs memset, and disarms.  When SIGBUS arrives for an
 * address inside the armed range on the thread that armed it, the handler records si_addr and
 * siglongjmp()s back: memguard_set returns PP_EOS.  Any other SIGBUS is handed to the previous
 * handler; with none (SIG_DFL) the default is put back and the signal raised again, so an
 * unrelated fault kills the process exactly as it would have.  SA_NODEFER leaves SIGBUS
 * unblocked while the handler runs, so jumping out of it needs no signal-mask restore:
 * sigsetjmp(env, 0) costs no system call, and the fast path is one thread-local store before
 * and after memset.
 *
 * Constraints (the price of a process-wide signal):
 *   - Our handler chains to the one it found; a handler installed while a guard is armed
 *     on another thread replaces ours for that write (the next guard puts ours back), so
 *     a program should install its own SIGBUS handlers at start-up.
 *   - The guard is thread-local (initial-exec TLS, so the handler reads it without
 *     allocating): several threads may hold guards at once, each catching only its own
 *     fault.  pinpoold calls it from its one loop thread.
 *   - Nothing may be left half-done by the jump: memset holds no lock and allocates
 *     nothing, which is why only a plain memset is guarded.
 *
 * References: sigaction(2) SA_SIGINFO and SA_NODEFER, sigsetjmp(3); the SIGBUS that a
 * hugetlb fault with an empty pool raises: Documentation/admin-guide/mm/hugetlbpage.rst.
 */
#define _GNU_SOURCE
#include "memguard.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "osl.h"
#include "pinpool_err.h"

typedef struct memguard {
  sigjmp_buf env;
  uintptr_t lo, hi; /* the armed range [lo, hi) */
  void *fault;      /* si_addr of the SIGBUS that ended the write */
} memguard_t;

/* volatile: the handler reads it, so neither store around memset may be dropped. */
static __thread memguard_t *volatile memguard_active __attribute__((tls_model("initial-exec")));
static struct sigaction memguard_previous; /* the SIGBUS action ours replaced */
static pthread_mutex_t memguard_lock = PTHREAD_MUTEX_INITIALIZER;

static void memguard_handler(int sig, siginfo_t *si, void *uc) {
  memguard_t *g = memguard_active;
  uintptr_t a = (uintptr_t)si->si_addr;
  if (g && a >= g->lo && a < g->hi) {
    g->fault = si->si_addr;
    siglongjmp(g->env, 1);
  }
  /* Not ours: as if we had never been installed. */
  if (memguard_previous.sa_flags & SA_SIGINFO) {
    memguard_previous.sa_sigaction(sig, si, uc);
    return;
  }
  if (memguard_previous.sa_handler == SIG_IGN) return;
  if (memguard_previous.sa_handler != SIG_DFL) {
    memguard_previous.sa_handler(sig);
    return;
  }
  struct sigaction dfl = {.sa_handler = SIG_DFL};
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, NULL);
  raise(sig); /* delivered at once: SA_NODEFER left it unblocked */
}

static bool memguard_is_ours(const struct sigaction *sa) {
  return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == memguard_handler;
}

/* Make sure our handler is the one installed: a handler installed after ours (a test
 * framework's, a library's) replaced it, and we then go in front of that one instead.
 * One sigaction query when nothing changed.  0, or -1 with errno. */
static int memguard_install(void) {
  struct sigaction cur;
  if (osl_sigaction(SIGBUS, NULL, &cur) != 0) return -1;
  if (memguard_is_ours(&cur)) return 0;
  int rc = 0;
  pthread_mutex_lock(&memguard_lock);
  if (osl_sigaction(SIGBUS, NULL, &cur) != 0) {
    rc = -1;
  } else if (!memguard_is_ours(&cur)) {
    struct sigaction sa = {.sa_sigaction = memguard_handler,
                           .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigemptyset(&sa.sa_mask);
    memguard_previous = cur;
    rc = osl_sigaction(SIGBUS, &sa, NULL);
  }
  pthread_mutex_unlock(&memguard_lock);
  return rc;
}

int memguard_set(void *dst, int c, size_t n, void **ret_fault) {
  if (n == 0) return 0;
  if (memguard_install() != 0) return PP_EOS;
  memguard_t g = {.lo = (uintptr_t)dst, .hi = (uintptr_t)dst + n};
  /* volatile: g.fault is written by the handler and read after the jump. */
  memguard_t *volatile gp = &g;
  if (sigsetjmp(g.env, 0) != 0) {
    memguard_active = NULL;
    if (ret_fault) *ret_fault = gp->fault;
    return PP_EOS;
  }
  memguard_active = &g;
  atomic_signal_fence(memory_order_seq_cst);
  memset(dst, c, n);
  atomic_signal_fence(memory_order_seq_cst);
  memguard_active = NULL;
  return 0;
}
