/*
 * supervisor.h — systemd's side of socket activation, sd_notify and the file-descriptor
 * store, in the test process: start a daemon, kill it at random moments, restart it with
 * the fds it stored, and read back everything it said.
 *
 * supervisor.c opens with the long account (what is emulated, where and why it differs
 * from systemd 252, the threading model).  In short:
 *
 *   - sup_new() binds and listens on the daemon's socket itself (like a .socket unit), so
 *     the socket and the connects pending in its backlog outlive every daemon process;
 *   - sup_start() runs argv with that socket at fd 3 and the stored fds after it,
 *     LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID, NOTIFY_SOCKET and, when enabled,
 *     WATCHDOG_USEC / WATCHDOG_PID, exactly as systemd's Type=notify service would;
 *   - a thread of the supervisor's own receives every notification (READY=1, STATUS=,
 *     FDSTORE=1 + FDNAME=, WATCHDOG=1, ...), keeps the fd store, enforces the watchdog
 *     and the start/stop timeouts, and restarts the daemon as Restart= says;
 *   - the test reads an event log, the stored fds (dup'ed) and a summary (sup_info()).
 *
 * Errors: functions return 0 (or a count) or a negative PP_E* code, and write the reason
 * to stderr (prefix "supervisor: ") and to sup_last_error():
 *   PP_EINVAL      bad configuration or argument
 *   PP_EOS         a system call failed (the reason names it and errno)
 *   PP_ENOPRIVMEM  malloc failed
 *   PP_EBUSY       the wait's own timeout_ms ran out (the daemon may still get there)
 *   PP_ENOENT      there is no daemon and none is coming: it exited and Restart= does not
 *                  bring it back, or it was never started / was stopped
 *   PP_EEXIST      sup_start() while a daemon process is running
 * A timeout_ms < 0 waits without bound; tests always pass a bound.
 *
 * All functions are thread-safe; a sup_t belongs to one test and is freed by sup_free(),
 * which kills whatever is still running.
 */
#ifndef PP_TEST_SUPERVISOR_H
#define PP_TEST_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pinpool_err.h"

/* A duration meaning "never" (systemd's "infinity"); 0 in a duration field means "the
 * default named next to it". */
#define SUP_INFINITY UINT64_MAX
/* systemd's FDNAME_MAX: a stored fd's name is at most this long (plus a NUL). */
#define SUP_FDNAME_MAX 255
/* systemd's NOTIFY_BUFFER_MAX (PIPE_BUF): longer notifications are refused whole. */
#define SUP_NOTIFY_MAX 4096

/* Restart= of systemd.service(5). */
typedef enum sup_restart {
  SUP_RESTART_NO = 0,
  SUP_RESTART_ON_SUCCESS,
  SUP_RESTART_ON_FAILURE,
  SUP_RESTART_ON_ABNORMAL,
  SUP_RESTART_ON_WATCHDOG,
  SUP_RESTART_ON_ABORT,
  SUP_RESTART_ALWAYS,
} sup_restart_t;

/* NotifyAccess= of systemd.service(5).  MAIN is Type=notify's default.  ALL accepts the
 * main process and its descendants (systemd: every process of the unit's cgroup).
 * "exec" has nothing to add here (there are no ExecStartPre= control processes). */
typedef enum sup_notify_access {
  SUP_NOTIFY_MAIN = 0,
  SUP_NOTIFY_ALL,
  SUP_NOTIFY_NONE,
} sup_notify_access_t;

/* Why a daemon process ended — systemd's ServiceResult, as "Result=" shows it. */
typedef enum sup_result {
  SUP_RESULT_SUCCESS = 0, /* exit 0, or SIGHUP/SIGINT/SIGTERM/SIGPIPE */
  SUP_RESULT_EXIT_CODE,   /* "exit-code": exited non-zero (203: exec failed) */
  SUP_RESULT_SIGNAL,      /* "signal": killed by another signal */
  SUP_RESULT_CORE_DUMP,   /* "core-dump" */
  SUP_RESULT_TIMEOUT,     /* "timeout": no READY=1 in time, or no exit after STOPPING=1 */
  SUP_RESULT_WATCHDOG,    /* "watchdog": no WATCHDOG=1 in time, or WATCHDOG=trigger */
  SUP_RESULT_PROTOCOL,    /* "protocol": exited cleanly before READY=1 */
} sup_result_t;

/* The unit's state, after systemd's ServiceState. */
typedef enum sup_state {
  SUP_DEAD = 0,     /* never started, or stopped/exited cleanly and not restarting */
  SUP_STARTING,     /* running, no READY=1 yet (Type=notify's "activating") */
  SUP_RUNNING,      /* READY=1 seen */
  SUP_RELOADING,    /* RELOADING=1 seen, waiting for READY=1 */
  SUP_STOPPING,     /* STOPPING=1 seen, or a stop/timeout/watchdog signal sent */
  SUP_AUTO_RESTART, /* exited; Restart= brings it back after restart_usec */
  SUP_FAILED,       /* exited with a failure result and is not restarting */
} sup_state_t;

typedef struct sup_config {
  /* The daemon: argv[0] is the file to execute (no PATH search), NULL-terminated. */
  const char *const *argv;
  /* "NAME=VALUE" strings added to (or replacing in) the test's environment, NULL-
   * terminated, may be NULL.  The protocol's own variables (NOTIFY_SOCKET, LISTEN_*,
   * WATCHDOG_*) are always the supervisor's: naming one here is PP_EINVAL. */
  const char *const *env;
  /* The daemon's stdout and stderr (opened O_APPEND, created 0644: every restart adds to
   * it).  NULL: the test's stderr. */
  const char *log_path;

  /* The listening socket (ListenStream=): a path, or "@name" for the abstract namespace.
   * NULL: no socket, LISTEN_FDS counts only stored fds.  A stale file at the path is
   * removed first; the path is removed again by sup_free(). */
  const char *listen_path;
  const char *socket_name; /* its LISTEN_FDNAMES entry; NULL: "pinpoold.socket" */
  int backlog;             /* Backlog=; 0: SOMAXCONN */
  unsigned socket_mode;    /* SocketMode=; 0: 0666 */

  /* NOTIFY_SOCKET: a path, or "@name" (abstract).  NULL: a fresh abstract name. */
  const char *notify_path;
  sup_notify_access_t notify_access;

  /* FileDescriptorStoreMax=; 0 (systemd's default) disables the store: fds sent with
   * FDSTORE=1 are closed.  fd_store_preserve is FileDescriptorStorePreserve=yes (a later
   * systemd's setting): keep the store when the daemon stops for good.  Without it the
   * store is emptied then, as systemd 252 does. */
  unsigned fd_store_max;
  bool fd_store_preserve;

  /* WatchdogSec= (0: off), WatchdogSignal= (0: SIGABRT). */
  uint64_t watchdog_usec;
  int watchdog_signal;
  /* TimeoutStartSec= (0: 20 s, enough for sanitizer builds; SUP_INFINITY: none),
   * TimeoutStopSec= (0: 10 s), TimeoutAbortSec= (0: timeout_stop_usec). */
  uint64_t timeout_start_usec;
  uint64_t timeout_stop_usec;
  uint64_t timeout_abort_usec;

  sup_restart_t restart; /* Restart= (default no) */
  /* RestartSec= (default 0: at once).  SUP_INFINITY holds every restart in
   * SUP_AUTO_RESTART until sup_start(): a test can look at the world without a daemon. */
  uint64_t restart_usec;

  /* Seed of sup_kill_random()'s generator; 0: one from the clock, printed to stderr so
   * that a failing run can be repeated. */
  uint64_t seed;
  /* Allow the daemon core dumps (systemd does; the default sets RLIMIT_CORE to 0, so a
   * watchdog SIGABRT leaves no core file in the test's folder). */
  bool core_dumps;
  /* Print each event to stderr as it happens ("supervisor: ..."). */
  bool verbose;
} sup_config_t;

/* How one daemon process ended. */
typedef struct sup_exit {
  pid_t pid;
  unsigned gen;        /* which start (1 for the first) */
  int code;            /* CLD_EXITED, CLD_KILLED or CLD_DUMPED; 0: unknown (see .c) */
  int status;          /* exit status, or the signal */
  sup_result_t result; /* what Restart= was asked about */
  sup_state_t state;   /* the state it ended in: SUP_STARTING means before READY=1 */
  bool restarting;     /* Restart= (or sup_restart()) brings it back */
  uint64_t t_ns;       /* CLOCK_MONOTONIC when the supervisor saw it */
  uint64_t uptime_ns;  /* since its fork */
} sup_exit_t;

typedef struct sup_info {
  sup_state_t state;
  pid_t main_pid;    /* 0 when no process is running */
  unsigned gen;      /* starts so far */
  unsigned restarts; /* of those, made by Restart= (systemd's NRestarts) */
  unsigned exits;
  unsigned watchdog_timeouts;
  unsigned reloads;            /* RELOADING=1 → READY=1 cycles completed */
  unsigned fds_stored;         /* in the fd store now */
  bool ready;                  /* state is SUP_RUNNING */
  int errno_value;             /* the last ERRNO= (0 when none) */
  uint64_t watchdog_usec;      /* in force now (WATCHDOG_USEC= overrides WatchdogSec=) */
  uint64_t seed;               /* of sup_kill_random() */
  sup_exit_t last_exit;        /* valid when exits > 0 */
  char status[SUP_NOTIFY_MAX]; /* the last STATUS= ("" when none) */
} sup_info_t;

typedef enum sup_event_kind {
  SUP_EV_START,           /* forked gen `gen` as `pid`; text: LISTEN_FDNAMES */
  SUP_EV_NOTIFY,          /* accepted message: text is it verbatim, value = fds attached */
  SUP_EV_NOTIFY_REJECTED, /* refused message; text: why, then the message when readable */
  SUP_EV_READY,           /* state became RUNNING; value 1 when it ended a reload */
  SUP_EV_MAINPID,         /* main pid changed to `pid` */
  SUP_EV_FD_STORED,       /* text: the name; value: fds in the store now */
  SUP_EV_FD_DUPLICATE,    /* an fd already in the store (same open file): closed */
  SUP_EV_FD_DROPPED,      /* an fd closed unstored; text: why */
  SUP_EV_FD_REMOVED,      /* FDSTOREREMOVE=1, sup_fd_remove() or POLLHUP; text: name */
  SUP_EV_FD_FLUSHED,      /* the store emptied (daemon stopped for good); value: count */
  SUP_EV_WATCHDOG,        /* watchdog timeout (or WATCHDOG=trigger) */
  SUP_EV_TIMEOUT,         /* start or stop timeout; text says which */
  SUP_EV_SIGNAL,          /* the supervisor sent signal `value` to `pid`; text: why */
  SUP_EV_EXIT,            /* main process ended; text: "signal KILL", "exit 0", ... */
  SUP_EV_RESTART,         /* Restart= fires: value = restart_usec in µs */
} sup_event_kind_t;

typedef struct sup_event {
  uint64_t t_ns; /* CLOCK_MONOTONIC */
  sup_event_kind_t kind;
  pid_t pid;
  unsigned gen;
  long long value;
  char *text; /* never NULL */
} sup_event_t;

typedef struct sup sup_t;

/* ---- life ---------------------------------------------------------------------------- */

/* Validate cfg (copied: the caller's strings may go), create the sockets and the thread.
 * No daemon yet. */
int sup_new(const sup_config_t *cfg, sup_t **ret);
/* Kill (SIGKILL) and reap whatever runs, stop the thread, close every fd, remove the
 * socket paths.  NULL is fine. */
void sup_free(sup_t *s);

/* ---- control ------------------------------------------------------------------------- */

/* Start the daemon (systemctl start): fork + exec with the socket and the stored fds.
 * Returns once it is forked; PP_EEXIST when a process is running.  From SUP_AUTO_RESTART
 * it starts at once (not counted as an automatic restart). */
int sup_start(sup_t *s);
/* Wait for state SUP_RUNNING (READY=1 of the current or a coming process).  PP_ENOENT
 * when it ended without READY=1 and is not restarting (the last exit is in the reason),
 * PP_EBUSY when timeout_ms ran out. */
int sup_wait_ready(sup_t *s, int timeout_ms);
/* Send sig to the main process (systemctl kill --kill-whom=main).  PP_ENOENT when none.
 * Its exit, if it dies, is handled as any exit: Restart= may restart it. */
int sup_signal(sup_t *s, int sig);
/* Wait until the process of the current generation has ended (at once when none runs)
 * and give its exit.  PP_ENOENT when nothing was ever started.  With Restart= the
 * "current" generation may already be the next one when a crash the test caused was
 * handled quickly: then take sup_info().gen before causing it and use
 * sup_wait_exit_of(). */
int sup_wait_exit(sup_t *s, int timeout_ms, sup_exit_t *ret_exit);
/* The exit of generation gen (1 for the first start); at once when it is recorded. */
int sup_wait_exit_of(sup_t *s, unsigned gen, int timeout_ms, sup_exit_t *ret_exit);
/* sup_signal() then sup_wait_exit(). */
int sup_kill(sup_t *s, int sig, int timeout_ms, sup_exit_t *ret_exit);
/* Stop it for good (systemctl stop): SIGTERM, SIGKILL after timeout_stop_usec, no
 * restart; waits for the exit (ret_exit may be NULL).  0 at once when nothing runs. */
int sup_stop(sup_t *s, int timeout_ms, sup_exit_t *ret_exit);
/* systemctl restart: stop as sup_stop() does if a process runs, then start, the fd store
 * kept.  Returns once the new process is forked. */
int sup_restart(sup_t *s, int timeout_ms);
/* Chaos: wait for a running process (a restart in progress counts: it waits for the
 * fork), then send sig at a random moment min_uptime_us + [0, window_us] after that
 * process was forked (at once when it is older) — so the moment may fall before READY=1,
 * during start-up — and wait for its exit (ret_exit may be NULL).  If it dies by itself
 * first, that exit is returned.  The moment comes from the seeded generator. */
int sup_kill_random(sup_t *s, int sig, uint64_t min_uptime_us, uint64_t window_us,
                    int timeout_ms, sup_exit_t *ret_exit);

/* ---- what it saw --------------------------------------------------------------------- */

int sup_info(sup_t *s, sup_info_t *ret);
/* Events so far; the next event's index is the return value of sup_event_count(). */
size_t sup_event_count(sup_t *s);
/* A copy of the events from index `from` on: *ret_events is a malloc'd array (free it
 * with sup_events_free()), the return value its length. */
int sup_events(sup_t *s, size_t from, sup_event_t **ret_events);
void sup_events_free(sup_event_t *events, int n);
/* How many events of `kind` since index `from`. */
int sup_count(sup_t *s, size_t from, sup_event_kind_t kind);
/* Wait for an accepted notification from index `from` on holding the assignment `line`
 * ("STOPPING=1", "STATUS=up"; a line of the message exactly) and return its index, or
 * PP_EBUSY after timeout_ms. */
int sup_wait_notify(sup_t *s, size_t from, const char *line, int timeout_ms);

/* ---- the fd store -------------------------------------------------------------------- */

/* Stored fds now. */
int sup_fd_count(sup_t *s);
/* A dup (O_CLOEXEC) of the i-th stored fd in LISTEN_FDS order, and its name (name may be
 * NULL; else at least SUP_FDNAME_MAX + 1 bytes).  PP_ENOENT past the end. */
int sup_fd_dup(sup_t *s, int i, char *ret_name, int *ret_fd);
/* A dup of the first stored fd named name.  PP_ENOENT when there is none. */
int sup_fd_dup_by_name(sup_t *s, const char *name, int *ret_fd);
/* Put a dup of fd into the store as if the daemon had sent it with FDSTORE=1 and
 * FDNAME=name (NULL: "stored"); the same limit and de-duplication apply.  1 when stored,
 * 0 when it was a duplicate, PP_EQUOTA when the store is full or disabled.  For tests
 * that hand a daemon prepared (or damaged) state. */
int sup_fd_store(sup_t *s, int fd, const char *name);
/* FDSTOREREMOVE=1 from the test's side: the number removed. */
int sup_fd_remove(sup_t *s, const char *name);

/* ---- helpers ------------------------------------------------------------------------- */

/* Whether Restart=policy restarts after result: systemd.service(5)'s table. */
bool sup_restart_applies(sup_restart_t policy, sup_result_t result);
const char *sup_result_name(sup_result_t r); /* "success", "exit-code", ... */
const char *sup_state_name(sup_state_t st);  /* "dead", "starting", ... */
const char *sup_event_name(sup_event_kind_t k);
/* The NOTIFY_SOCKET value handed to the daemon ("@..." or a path). */
const char *sup_notify_socket(sup_t *s);
/* The listening socket's fd (owned by the supervisor; -1 when none). */
int sup_listen_fd(sup_t *s);
/* The reason of the last failed call, "" when none. */
void sup_last_error(sup_t *s, char *buf, size_t len);
/* Print the daemon's log (its last 16 KiB) to stderr, when it has a log file. */
void sup_dump_log(sup_t *s);

#endif /* PP_TEST_SUPERVISOR_H */
