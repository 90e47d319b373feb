/*
 * bench_peer.c — the processes a benchmark talks to, and where they run: pinpoold started
 * from beside this binary, CPU pinning, Unix-socket connecting, and the voluntary context
 * switches of a thread or another process (the cost a wake-up leaves behind, which is what
 * the round-trip benchmarks are about).
 *
 * The daemon.  bench_daemon_start runs the pinpoold in this binary's folder (dirname of
 * /proc/self/exe: the build's bin/) on a temporary socket with a 64 MiB region of 4 KiB
 * pages, so no hugepages are needed, pinned to one CPU, with PR_SET_PDEATHSIG so a killed
 * benchmark leaves no daemon behind, and waits until the socket accepts.  Extra arguments
 * (--max-clients for bench load) follow the fixed ones.
 *
 * Locks: none; one benchmark at a time, on the main thread.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void bench_sleep_ms(unsigned ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
    ;
}

/* The CPUs this process was allowed at start-up: DPDK's EAL pins the main thread to its
 * first lcore (-l 0), and `all` runs ipc and load after it. */
static cpu_set_t bench_allowed;
static bool bench_allowed_known;

void bench_affinity_init(void) {
  bench_allowed_known = sched_getaffinity(0, sizeof bench_allowed, &bench_allowed) == 0;
}

void bench_choose_cpus(int *ret_self, int *ret_peer) {
  cpu_set_t allowed;
  int self = -1, peer = -1;
  bool known = bench_allowed_known;
  if (known)
    allowed = bench_allowed;
  else
    known = sched_getaffinity(0, sizeof allowed, &allowed) == 0;
  if (known) {
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
      if (!CPU_ISSET(cpu, &allowed)) continue;
      if (self < 0)
        self = cpu;
      else if (peer < 0)
        peer = cpu;
    }
  }
  *ret_self = self;
  *ret_peer = peer < 0 ? self : peer;
}

void bench_pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set); /* best effort: an unpinned run still measures */
}

int bench_connect_unix(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

long bench_csw_self(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_THREAD, &ru) != 0) return -1;
  return ru.ru_nvcsw;
}

long bench_csw_of(pid_t pid) {
  char path[64], line[256];
  long v = -1;
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1) break;
  fclose(f);
  return v;
}

void bench_daemon_stop(bench_daemon_t *d) {
  if (d->pid > 0) {
    int st;
    kill(d->pid, SIGTERM);
    for (int i = 0; i < 500 && waitpid(d->pid, &st, WNOHANG) != d->pid; i++)
      bench_sleep_ms(10);
    if (kill(d->pid, 0) == 0) {
      kill(d->pid, SIGKILL);
      waitpid(d->pid, &st, 0);
    }
    d->pid = 0;
  }
  if (d->sock[0]) unlink(d->sock);
  if (d->dir[0]) rmdir(d->dir);
  d->sock[0] = d->dir[0] = '\0';
}

int bench_daemon_start(bench_daemon_t *d, int cpu, const char *const *extra) {
  char self[PATH_MAX], exe[PATH_MAX + 16];
  const char *argv[32];
  int argc = 0;
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  memset(d, 0, sizeof *d);
  if (n <= 0) return -1;
  self[n] = '\0';
  snprintf(exe, sizeof exe, "%s/pinpoold", dirname(self));
  snprintf(d->dir, sizeof d->dir, "/tmp/pp-bench-XXXXXX");
  if (!mkdtemp(d->dir)) {
    d->dir[0] = '\0';
    return -1;
  }
  snprintf(d->sock, sizeof d->sock, "%s/pinpool.sock", d->dir);
  argv[argc++] = "pinpoold";
  const char *fixed[] = {"--socket",    d->sock, "--size",      "64M",
                         "--page-size", "4K",    "--log-level", "warning"};
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
    argv[argc++] = fixed[i];
  for (size_t i = 0; extra && extra[i] && argc < 31; i++)
    argv[argc++] = extra[i];
  argv[argc] = NULL;
  d->pid = fork();
  if (d->pid < 0) {
    d->pid = 0;
    bench_daemon_stop(d);
    return -1;
  }
  if (d->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a killed benchmark leaves no daemon behind */
    bench_pin(cpu);
    execv(exe, (char *const *)argv);
    fprintf(stderr, "pinpool-bench: exec %s: %s\n", exe, strerror(errno));
    _exit(127);
  }
  for (int i = 0; i < 1000; i++) {
    int st;
    if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
      d->pid = 0;
      fprintf(stderr, "pinpool-bench: %s did not start\n", exe);
      bench_daemon_stop(d);
      return -1;
    }
    int fd = bench_connect_unix(d->sock);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    bench_sleep_ms(10);
  }
  bench_daemon_stop(d);
  return -1;
}
