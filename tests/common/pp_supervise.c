/*
 * pp_supervise.c — pp-supervise, the test supervisor (supervisor.h) as a command, for
 * trying a daemon by hand and for shell tests:
 *
 *     pp-supervise --socket /tmp/pp.sock --fd-store-max 8 --restart on-failure \
 *                  -- build/bin/pinpoold --size 16M --page-size 4K
 *
 * It owns the listening socket, starts the program as systemd would start a Type=notify
 * service with socket activation, prints every event (notifications, stored fds,
 * signals, exits, restarts) on stderr and restarts the program as --restart says.
 * Signals: SIGINT/SIGTERM stop the program and end; SIGUSR1 SIGKILLs it (a crash, by
 * hand); SIGHUP restarts it (systemctl restart).  It also ends when the program ends and
 * is not restarted: exit 0 when it ended cleanly, 1 otherwise.
 *
 * --chaos N kills the program N times at random moments (SIGKILL; the moment is
 * --min-uptime plus up to --window after each start, from --seed), waits for READY=1
 * after each restart, then stops it: exit 0 when every restart came up, 1 when one did
 * not.  Needs --restart other than "no".
 *
 * Durations take a unit: "500ms", "2s", "100us", "1min"; a bare number is microseconds,
 * like systemd's *_USEC variables.  Exit 2 on a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "supervisor.h"

#define MAX_ENV 64
#define READY_WAIT_MS 60000

static void usage(FILE *f) {
  fprintf(
      f, "usage: pp-supervise [options] -- PROGRAM [ARGS...]\n"
         "  -s, --socket PATH          listening socket handed over at fd 3 (@name: abstract)\n"
         "  -n, --socket-name NAME     its name in LISTEN_FDNAMES (pinpoold.socket)\n"
         "      --notify-socket PATH   NOTIFY_SOCKET (default: a fresh abstract name)\n"
         "      --notify-access main|all|none\n"
         "      --fd-store-max N       FileDescriptorStoreMax= (0: store disabled)\n"
         "      --fd-store-preserve    keep the store when the program stops for good\n"
         "  -w, --watchdog TIME        WatchdogSec=\n"
         "      --watchdog-signal N    WatchdogSignal= (6, SIGABRT)\n"
         "      --timeout-start TIME   TimeoutStartSec= (20s)\n"
         "      --timeout-stop TIME    TimeoutStopSec= (10s)\n"
         "      --timeout-abort TIME   TimeoutAbortSec= (the stop timeout)\n"
         "  -r, --restart POLICY       no|on-success|on-failure|on-abnormal|on-watchdog|\n"
         "                             on-abort|always (no)\n"
         "      --restart-sec TIME     RestartSec= (0)\n"
         "  -e, --env NAME=VALUE       add to the program's environment (repeatable)\n"
         "  -l, --log FILE             the program's stdout and stderr (default: ours)\n"
         "      --chaos N              SIGKILL it N times at random moments, then stop\n"
         "      --min-uptime TIME      chaos: earliest kill after a start (0)\n"
         "      --window TIME          chaos: kill moments spread over this (50ms)\n"
         "      --seed N               chaos: the generator's seed (0: from the clock)\n"
         "  -q, --quiet                do not print events\n"
         "  -h, --help\n");
}

/* "500ms", "2s", "100us", "1min", "3h"; a bare number is µs. */
static int parse_time(const char *s, uint64_t *ret) {
  static const struct {
    const char *suffix;
    uint64_t usec;
  } units[] = {
      {"us", 1}, {"ms", 1000}, {"s", 1000000}, {"min", 60000000}, {"h", 3600000000ull}};
  char *end;
  unsigned long long v;
  if (!strcmp(s, "infinity")) {
    *ret = SUP_INFINITY;
    return 0;
  }
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || end == s || *s == '-') return -1;
  if (!*end) {
    *ret = v;
    return 0;
  }
  for (size_t i = 0; i < sizeof units / sizeof *units; i++)
    if (!strcmp(end, units[i].suffix)) {
      *ret = v * units[i].usec;
      return 0;
    }
  return -1;
}

static int parse_restart(const char *s, sup_restart_t *ret) {
  static const char *const names[] = {"no",          "on-success", "on-failure", "on-abnormal",
                                      "on-watchdog", "on-abort",   "always"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (!strcmp(s, names[i])) {
      *ret = (sup_restart_t)i;
      return 0;
    }
  return -1;
}

static int chaos(sup_t *s, unsigned rounds, uint64_t min_uptime, uint64_t window) {
  sup_exit_t ex;
  int rc;
  for (unsigned i = 0; i < rounds; i++) {
    if ((rc = sup_kill_random(s, SIGKILL, min_uptime, window, READY_WAIT_MS, &ex)) < 0) {
      fprintf(stderr, "pp-supervise: chaos round %u: %s\n", i + 1, pp_strerror(rc));
      return 1;
    }
    if ((rc = sup_wait_ready(s, READY_WAIT_MS)) < 0) {
      fprintf(stderr, "pp-supervise: chaos round %u: no READY=1 after the restart: %s\n", i + 1,
              pp_strerror(rc));
      return 1;
    }
  }
  return 0;
}

static int supervise(sup_t *s, const sigset_t *set) {
  struct timespec tick = {.tv_nsec = 100 * 1000000L};
  sup_info_t info;
  for (;;) {
    int sig = sigtimedwait(set, NULL, &tick);
    if (sig == SIGINT || sig == SIGTERM) {
      sup_stop(s, -1, NULL);
      return 0;
    }
    if (sig == SIGUSR1) sup_signal(s, SIGKILL);
    if (sig == SIGHUP) sup_restart(s, -1);
    sup_info(s, &info);
    if (info.state == SUP_DEAD) return 0;
    if (info.state == SUP_FAILED) return 1;
  }
}

int main(int argc, char **argv) {
  enum {
    O_NOTIFY = 256,
    O_ACCESS,
    O_STORE_MAX,
    O_PRESERVE,
    O_WD_SIG,
    O_T_START,
    O_T_STOP,
    O_T_ABORT,
    O_RESTART_SEC,
    O_CHAOS,
    O_MIN_UPTIME,
    O_WINDOW,
    O_SEED,
  };
  static const struct option opts[] = {
      {"socket", required_argument, NULL, 's'},
      {"socket-name", required_argument, NULL, 'n'},
      {"notify-socket", required_argument, NULL, O_NOTIFY},
      {"notify-access", required_argument, NULL, O_ACCESS},
      {"fd-store-max", required_argument, NULL, O_STORE_MAX},
      {"fd-store-preserve", no_argument, NULL, O_PRESERVE},
      {"watchdog", required_argument, NULL, 'w'},
      {"watchdog-signal", required_argument, NULL, O_WD_SIG},
      {"timeout-start", required_argument, NULL, O_T_START},
      {"timeout-stop", required_argument, NULL, O_T_STOP},
      {"timeout-abort", required_argument, NULL, O_T_ABORT},
      {"restart", required_argument, NULL, 'r'},
      {"restart-sec", required_argument, NULL, O_RESTART_SEC},
      {"env", required_argument, NULL, 'e'},
      {"log", required_argument, NULL, 'l'},
      {"chaos", required_argument, NULL, O_CHAOS},
      {"min-uptime", required_argument, NULL, O_MIN_UPTIME},
      {"window", required_argument, NULL, O_WINDOW},
      {"seed", required_argument, NULL, O_SEED},
      {"quiet", no_argument, NULL, 'q'},
      {"help", no_argument, NULL, 'h'},
      {0},
  };
  const char *env[MAX_ENV + 1] = {0};
  sup_config_t cfg = {.verbose = true};
  uint64_t min_uptime = 0, window = 50000;
  unsigned long chaos_rounds = 0;
  size_t n_env = 0;
  sigset_t set;
  sup_info_t info;
  sup_t *s;
  int c, rc;

  while ((c = getopt_long(argc, argv, "+s:n:w:r:e:l:qh", opts, NULL)) != -1) {
    bool bad = false;
    switch (c) {
    case 's': cfg.listen_path = optarg; break;
    case 'n': cfg.socket_name = optarg; break;
    case O_NOTIFY: cfg.notify_path = optarg; break;
    case O_ACCESS:
      if (!strcmp(optarg, "main"))
        cfg.notify_access = SUP_NOTIFY_MAIN;
      else if (!strcmp(optarg, "all"))
        cfg.notify_access = SUP_NOTIFY_ALL;
      else if (!strcmp(optarg, "none"))
        cfg.notify_access = SUP_NOTIFY_NONE;
      else
        bad = true;
      break;
    case O_STORE_MAX: cfg.fd_store_max = (unsigned)strtoul(optarg, NULL, 10); break;
    case O_PRESERVE: cfg.fd_store_preserve = true; break;
    case 'w': bad = parse_time(optarg, &cfg.watchdog_usec) < 0; break;
    case O_WD_SIG: cfg.watchdog_signal = atoi(optarg); break;
    case O_T_START: bad = parse_time(optarg, &cfg.timeout_start_usec) < 0; break;
    case O_T_STOP: bad = parse_time(optarg, &cfg.timeout_stop_usec) < 0; break;
    case O_T_ABORT: bad = parse_time(optarg, &cfg.timeout_abort_usec) < 0; break;
    case 'r': bad = parse_restart(optarg, &cfg.restart) < 0; break;
    case O_RESTART_SEC: bad = parse_time(optarg, &cfg.restart_usec) < 0; break;
    case 'e':
      if (n_env == MAX_ENV)
        bad = true;
      else
        env[n_env++] = optarg;
      break;
    case 'l': cfg.log_path = optarg; break;
    case O_CHAOS: chaos_rounds = strtoul(optarg, NULL, 10); break;
    case O_MIN_UPTIME: bad = parse_time(optarg, &min_uptime) < 0; break;
    case O_WINDOW: bad = parse_time(optarg, &window) < 0; break;
    case O_SEED: cfg.seed = strtoull(optarg, NULL, 10); break;
    case 'q': cfg.verbose = false; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
    if (bad) {
      fprintf(stderr, "pp-supervise: bad value '%s'\n", optarg);
      return 2;
    }
  }
  if (optind >= argc) {
    usage(stderr);
    return 2;
  }
  if (chaos_rounds && cfg.restart == SUP_RESTART_NO) {
    fprintf(stderr, "pp-supervise: --chaos needs --restart (on-failure, always, ...)\n");
    return 2;
  }
  cfg.argv = (const char *const *)&argv[optind];
  cfg.env = env;

  /* The signals we act on are taken with sigtimedwait(); the daemon gets them reset. */
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);

  if ((rc = sup_new(&cfg, &s)) < 0) return 1;
  if ((rc = sup_start(s)) < 0 || (rc = sup_wait_ready(s, READY_WAIT_MS)) < 0) {
    sup_free(s);
    return 1;
  }
  rc = chaos_rounds ? chaos(s, (unsigned)chaos_rounds, min_uptime, window) : supervise(s, &set);
  if (chaos_rounds) sup_stop(s, -1, NULL);
  sup_info(s, &info);
  fprintf(stderr,
          "pp-supervise: %u starts, %u automatic restarts, %u watchdog timeouts, %u fds "
          "stored, seed %llu\n",
          info.gen, info.restarts, info.watchdog_timeouts, info.fds_stored,
          (unsigned long long)info.seed);
  sup_free(s);
  return rc;
}
