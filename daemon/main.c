/*
 * main.c — pinpoold's entry point: options, the config file, and the order of start-up.
 *
 * Options and config keys are one table: every long option `--key VALUE` can also be a
 * `key = VALUE` line in the file named by --config (blank lines and # comments allowed;
 * a boolean key takes true/false/yes/no/1/0).  The file is read first and the command
 * line applied after it, so the command line wins whatever the order of the arguments.
 * An unknown key or a bad value stops the daemon with the file and line named (exit 2):
 * a typo in a unit's config must not silently run with defaults.
 *
 * Pools (pools.c): the region --size/--page-size describe is the default pool.  A line
 * `[pool NAME]` in the file starts the section of one more pool; the keys after it, up
 * to the next section, are that pool's: size (required), page-size, sort-pages, quota,
 * numa-node, writers and readers (lists of users and @groups).  Nothing else is allowed
 * in a section.  Each pool is checked (pools_check_def: size against an explicit page
 * size, the node, every user and group) before any region is made, and created after the
 * default pool; any refusal names the pool and the key (exit 2).
 *
 * `--probe` anywhere hands the whole argv to probe_main() (probe.c) before anything else.
 *
 * Start-up order matters for systemd: the fds the service manager passes are sorted out
 * first (fdstore.c: the socket, and the region and journal memfds a previous daemon
 * stored), then the region is taken back from them and its journal replayed, or created
 * fresh (hugepages reserved, mapped, populated, physical addresses read) and stored
 * (persist.c), before the socket listens; READY=1 is sent only after all that (server.c),
 * so a client that connects never waits on a half-built region.
 *
 * A reload (SIGHUP, reload.c) executes this binary again in the same process: then
 * PINPOOLD_HANDOFF_FD names what the previous image handed over (handoff.c), and the
 * socket, region and journal come from there instead of from the service manager; the
 * rest of the start-up is the same, and server_run takes the connections over.  SIGHUP is
 * blocked from the first instruction until server_run has its handler (a reload's execve
 * keeps it blocked too), so that a reload asked for during start-up waits instead of
 * killing the daemon.  The path a reload executes is resolved here, once (resolve_exe).
 *
 * Test-only knobs, read from the environment at start-up and documented as such in
 * pinpoold(8): PINPOOLD_TEST_CRASH_AFTER_COMMIT=N (SIGKILL after the N-th journaled
 * request, before its reply), PINPOOLD_TEST_HANG_AFTER_REQUESTS=N (the loop hangs after
 * N requests, for the watchdog), PINPOOLD_TEST_CHECK_JOURNAL=1 (journal against ledger
 * after every journaled request), PINPOOLD_TEST_HANDOFF_VERSION=N (a reload writes its
 * handoff as version N: the next image's fallback for a version it does not know).
 */
#define _GNU_SOURCE /* pthread_sigmask in <signal.h> */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "endpoint.h"
#include "fdstore.h"
#include "frame.h"
#include "handlers.h"
#include "handoff.h"
#include "holes.h"
#include "ledger.h"
#include "log.h"
#include "persist.h"
#include "pools.h"
#include "probe.h"
#include "osl.h"
#include "region.h"
#include "units.h"
#include "server.h"

typedef struct options {
  char socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
  uint64_t size;
  region_page_policy_t policy;
  bool sort_pages;
  uint32_t max_clients;
  uint64_t quota;
  uint32_t max_buffers;
  char admin_group[64];
  unsigned socket_mode;
  bool zero_on_free;
  int log_level;
  uint32_t max_frame;
  uint32_t hello_timeout_ms;
  uint32_t max_caches_per_uid;
  uint32_t max_caches;
  char shared_groups[LEDGER_SHARED_GROUPS_MAX][64]; /* names or numbers, resolved later */
  uint32_t nshared_groups;
  uint32_t max_clients_per_uid;
  uint32_t max_pending_per_uid;
  uint32_t admin_reserve;
  uint32_t frame_timeout_ms;
  uint32_t write_timeout_ms;
  uint64_t max_queued;
  uint32_t scan_interval_ms;
  uint32_t grace_ms;
  int journal;    /* JOURNAL_AUTO, JOURNAL_YES, JOURNAL_NO */
  bool bind_node; /* --numa-node: the default pool's */
  unsigned numa_node;
  pool_def_t pools[POOLS_MAX - 1]; /* [pool NAME] sections of the config file */
  uint32_t npools;
} options_t;

enum { JOURNAL_AUTO = 0, JOURNAL_YES, JOURNAL_NO };

static int parse_u32(const char *s, uint32_t *ret) {
  uint64_t v;
  char *end;
  if (!s || !*s || *s == '-') return PP_EINVAL;
  errno = 0;
  v = strtoull(s, &end, 10);
  if (errno || *end || v > UINT32_MAX) return PP_EINVAL;
  *ret = (uint32_t)v;
  return 0;
}

static int parse_bool(const char *s, bool *ret) {
  if (!s || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1") ||
      !strcasecmp(s, "on"))
    *ret = true;
  else if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0") ||
           !strcasecmp(s, "off"))
    *ret = false;
  else
    return PP_EINVAL;
  return 0;
}

typedef enum {
  OPT_SOCKET,
  OPT_SIZE,
  OPT_PAGE_SIZE,
  OPT_SORT_PAGES,
  OPT_MAX_CLIENTS,
  OPT_QUOTA,
  OPT_MAX_BUFFERS,
  OPT_ADMIN_GROUP,
  OPT_SOCKET_MODE,
  OPT_ZERO_ON_FREE,
  OPT_LOG_LEVEL,
  OPT_MAX_FRAME,
  OPT_HELLO_TIMEOUT,
  OPT_SHARED_GROUP,
  OPT_MAX_CACHES_PER_UID,
  OPT_MAX_CACHES,
  OPT_MAX_CLIENTS_PER_UID,
  OPT_MAX_PENDING_PER_UID,
  OPT_ADMIN_RESERVE,
  OPT_FRAME_TIMEOUT,
  OPT_WRITE_TIMEOUT,
  OPT_MAX_QUEUED,
  OPT_SCAN_INTERVAL,
  OPT_GRACE,
  OPT_JOURNAL,
  OPT_NUMA_NODE
} opt_id_t;

/* --shared-group a,b: each entry appended (a repeated option adds to the list). */
static int add_shared_groups(options_t *o, const char *val) {
  const char *p = val;
  if (!*val) return PP_EINVAL;
  while (*p) {
    size_t n = strcspn(p, ",");
    if (n == 0 || n >= sizeof o->shared_groups[0] ||
        o->nshared_groups == LEDGER_SHARED_GROUPS_MAX)
      return PP_EINVAL;
    snprintf(o->shared_groups[o->nshared_groups++], sizeof o->shared_groups[0], "%.*s", (int)n,
             p);
    p += n;
    if (*p == ',') p++;
  }
  return 0;
}

static const struct option_def {
  const char *name;
  opt_id_t id;
  bool is_bool; /* takes no value on the command line */
  const char *help;
} option_defs[] = {
    {"socket", OPT_SOCKET, false,
     "PATH  listening socket (default: $PINPOOL_SOCKET, "
     "/run/pinpool/pinpool.sock as root, else $XDG_RUNTIME_DIR/pinpool.sock)"},
    {"size", OPT_SIZE, false, "SIZE  region size, suffixes K/M/G (default 64M)"},
    {"page-size", OPT_PAGE_SIZE, false,
     "auto|4K|2M|1G  page size of the region (default auto)"},
    {"sort-pages", OPT_SORT_PAGES, false,
     "yes|no  lay hugepages out in ascending physical order when addresses are readable, "
     "for long contiguous runs (default yes)"},
    {"max-clients", OPT_MAX_CLIENTS, false, "N  clients at once (default 256)"},
    {"quota", OPT_QUOTA, false, "SIZE  pinned bytes per uid, 0 = unlimited (default 0)"},
    {"max-buffers", OPT_MAX_BUFFERS, false,
     "N  buffer references per session, 0 = unlimited "
     "(default 65536)"},
    {"admin-group", OPT_ADMIN_GROUP, false,
     "GROUP  members may ask for stats and shrink "
     "(default: root only)"},
    {"socket-mode", OPT_SOCKET_MODE, false, "OCTAL  mode of a socket we bind (default 0660)"},
    {"zero-on-free", OPT_ZERO_ON_FREE, true, "zero buffers and objects when they are freed"},
    {"log-level", OPT_LOG_LEVEL, false, "err|warning|notice|info|debug (default info)"},
    {"max-frame", OPT_MAX_FRAME, false, "SIZE  largest protocol frame (default 64K)"},
    {"hello-timeout", OPT_HELLO_TIMEOUT, false,
     "MS  a connection must say hello within this "
     "(default 10000)"},
    {"shared-group", OPT_SHARED_GROUP, false,
     "GROUP[,GROUP...]  members may create names in ~gGID/; repeatable (default: none)"},
    {"max-caches-per-uid", OPT_MAX_CACHES_PER_UID, false,
     "N  caches in one user's (or shared group's) scope, 0 = unlimited (default 64)"},
    {"max-caches", OPT_MAX_CACHES, false, "N  caches in all, 0 = unlimited (default 4096)"},
    {"max-clients-per-uid", OPT_MAX_CLIENTS_PER_UID, false,
     "N  clients of one uid at once, 0 = no limit; not for admins (default 64)"},
    {"max-pending-per-uid", OPT_MAX_PENDING_PER_UID, false,
     "N  connections of one uid that have not said hello yet, 0 = no limit; not for admins "
     "(default 32)"},
    {"admin-reserve", OPT_ADMIN_RESERVE, false,
     "N  client slots only root and the admin group may take, at most a quarter of "
     "max-clients (default 4)"},
    {"frame-timeout", OPT_FRAME_TIMEOUT, false,
     "MS  a frame must be complete this long after its first byte (default 10000)"},
    {"write-timeout", OPT_WRITE_TIMEOUT, false,
     "MS  a client that leaves its replies unread this long is disconnected (default 30000)"},
    {"max-queued", OPT_MAX_QUEUED, false,
     "SIZE  memory of unread replies, all clients together, above which clients with "
     "replies queued are not read (default 64M)"},
    {"scan-interval", OPT_SCAN_INTERVAL, false,
     "MS  check the whole region for pages clients punched out this often, 0 = only when "
     "a block is handed out or looked up (default 10000)"},
    {"grace", OPT_GRACE, false,
     "MS  after a restart, how long a session waits for its client to re-claim it "
     "(default 30000)"},
    {"journal", OPT_JOURNAL, false,
     "auto|yes|no  journal every ownership change for restart survival; auto: when a "
     "service manager keeps our fds (NOTIFY_SOCKET) (default auto)"},
    {"numa-node", OPT_NUMA_NODE, false,
     "N  take the default pool's pages from NUMA node N (default: where the kernel puts "
     "them)"},
};

static const struct option_def *find_option(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof option_defs / sizeof option_defs[0]; i++)
    if (strlen(option_defs[i].name) == len && !strncmp(option_defs[i].name, name, len))
      return &option_defs[i];
  return NULL;
}

/* Apply one option; on error prints why (with where) and returns PP_EINVAL. */
static int apply_option(options_t *o, const struct option_def *d, const char *val,
                        const char *where) {
  uint64_t v64;
  int rc = 0;

  switch (d->id) {
  case OPT_SOCKET:
    if (!*val || strlen(val) >= sizeof o->socket)
      rc = PP_ERANGE;
    else
      snprintf(o->socket, sizeof o->socket, "%s", val);
    break;
  case OPT_SIZE:
    rc = units_parse_size(val, &o->size);
    if (!rc && o->size == 0) rc = PP_EINVAL;
    break;
  case OPT_PAGE_SIZE: rc = region_parse_policy(val, &o->policy); break;
  case OPT_SORT_PAGES: rc = parse_bool(val, &o->sort_pages); break;
  case OPT_MAX_CLIENTS:
    rc = parse_u32(val, &o->max_clients);
    if (!rc && o->max_clients == 0) rc = PP_EINVAL;
    break;
  case OPT_QUOTA: rc = units_parse_size(val, &o->quota); break;
  case OPT_MAX_BUFFERS: rc = parse_u32(val, &o->max_buffers); break;
  case OPT_ADMIN_GROUP:
    if (!*val || strlen(val) >= sizeof o->admin_group)
      rc = PP_EINVAL;
    else
      snprintf(o->admin_group, sizeof o->admin_group, "%s", val);
    break;
  case OPT_SOCKET_MODE: {
    char *end;
    unsigned long m = strtoul(val, &end, 8);
    if (!*val || *end || m > 07777)
      rc = PP_EINVAL;
    else
      o->socket_mode = (unsigned)m;
    break;
  }
  case OPT_ZERO_ON_FREE: rc = parse_bool(val, &o->zero_on_free); break;
  case OPT_LOG_LEVEL: rc = log_parse_level(val, &o->log_level); break;
  case OPT_MAX_FRAME:
    rc = units_parse_size(val, &v64);
    if (!rc && (v64 < 4096 || v64 > FRAME_MAX_LIMIT)) rc = PP_ERANGE;
    if (!rc) o->max_frame = (uint32_t)v64;
    break;
  case OPT_HELLO_TIMEOUT:
    rc = parse_u32(val, &o->hello_timeout_ms);
    if (!rc && o->hello_timeout_ms == 0) rc = PP_EINVAL;
    break;
  case OPT_SHARED_GROUP: rc = add_shared_groups(o, val); break;
  case OPT_MAX_CACHES_PER_UID: rc = parse_u32(val, &o->max_caches_per_uid); break;
  case OPT_MAX_CACHES: rc = parse_u32(val, &o->max_caches); break;
  case OPT_MAX_CLIENTS_PER_UID: rc = parse_u32(val, &o->max_clients_per_uid); break;
  case OPT_MAX_PENDING_PER_UID: rc = parse_u32(val, &o->max_pending_per_uid); break;
  case OPT_ADMIN_RESERVE: rc = parse_u32(val, &o->admin_reserve); break;
  case OPT_FRAME_TIMEOUT:
    rc = parse_u32(val, &o->frame_timeout_ms);
    if (!rc && o->frame_timeout_ms == 0) rc = PP_EINVAL;
    break;
  case OPT_WRITE_TIMEOUT:
    rc = parse_u32(val, &o->write_timeout_ms);
    if (!rc && o->write_timeout_ms == 0) rc = PP_EINVAL;
    break;
  case OPT_MAX_QUEUED:
    rc = units_parse_size(val, &o->max_queued);
    if (!rc && (o->max_queued < (64u << 10) || o->max_queued > SIZE_MAX / 2)) rc = PP_ERANGE;
    break;
  case OPT_SCAN_INTERVAL: rc = parse_u32(val, &o->scan_interval_ms); break;
  case OPT_GRACE:
    rc = parse_u32(val, &o->grace_ms);
    if (!rc && o->grace_ms == 0) rc = PP_EINVAL;
    break;
  case OPT_JOURNAL:
    if (!strcasecmp(val, "auto"))
      o->journal = JOURNAL_AUTO;
    else if (!strcasecmp(val, "yes"))
      o->journal = JOURNAL_YES;
    else if (!strcasecmp(val, "no"))
      o->journal = JOURNAL_NO;
    else
      rc = PP_EINVAL;
    break;
  case OPT_NUMA_NODE:
    rc = parse_u32(val, &o->numa_node);
    if (!rc) o->bind_node = true;
    break;
  }
  if (rc) {
    fprintf(stderr, "pinpoold: %s: bad value '%s' for %s\n", where, val ? val : "", d->name);
    return PP_EINVAL;
  }
  return 0;
}

static char *trim(char *s) {
  char *e;
  while (*s == ' ' || *s == '\t')
    s++;
  e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
    *--e = '\0';
  return s;
}

/* One key of a [pool NAME] section; on error prints why, naming the pool and the key. */
static int apply_pool_key(pool_def_t *d, const char *key, const char *val, const char *where) {
  int rc = 0;
  if (!val) {
    fprintf(stderr, "pinpoold: %s: pool '%s': key '%s' needs '= VALUE'\n", where, d->name, key);
    return PP_EINVAL;
  }
  if (!strcmp(key, "size")) {
    rc = units_parse_size(val, &d->size);
    if (!rc && d->size == 0) rc = PP_EINVAL;
  } else if (!strcmp(key, "page-size")) {
    rc = region_parse_policy(val, &d->policy);
  } else if (!strcmp(key, "sort-pages")) {
    rc = parse_bool(val, &d->sort_pages);
  } else if (!strcmp(key, "quota")) {
    rc = units_parse_size(val, &d->quota);
  } else if (!strcmp(key, "numa-node")) {
    rc = parse_u32(val, &d->numa_node);
    if (!rc) d->bind_node = true;
  } else if (!strcmp(key, "writers") || !strcmp(key, "readers")) {
    char *dst = key[0] == 'w' ? d->writers : d->readers;
    if (strlen(val) >= POOL_ACL_TEXT)
      rc = PP_ERANGE;
    else
      snprintf(dst, POOL_ACL_TEXT, "%s", val);
  } else {
    fprintf(stderr, "pinpoold: %s: pool '%s': unknown key '%s'\n", where, d->name, key);
    return PP_EINVAL;
  }
  if (rc) {
    fprintf(stderr, "pinpoold: %s: pool '%s': bad value '%s' for key '%s'\n", where, d->name,
            val, key);
    return PP_EINVAL;
  }
  return 0;
}

/* "[pool NAME]": a new section, or an error (printed). */
static int start_pool(options_t *o, char *s, const char *where, pool_def_t **ret) {
  size_t n = strlen(s);
  char *name;
  if (n < 2 || s[n - 1] != ']' || strncmp(s, "[pool", 5) || (s[5] != ' ' && s[5] != '\t')) {
    fprintf(stderr, "pinpoold: %s: a section is written [pool NAME]\n", where);
    return PP_EINVAL;
  }
  s[n - 1] = '\0';
  name = trim(s + 5);
  if (!*name || strlen(name) > POOL_NAME_MAX ||
      strspn(name, "abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789-_.") != strlen(name)) {
    fprintf(stderr,
            "pinpoold: %s: pool '%s': a pool name is 1 to %u letters, digits, '-', '_' or "
            "'.'\n",
            where, name, POOL_NAME_MAX);
    return PP_EINVAL;
  }
  if (!strcmp(name, POOL_DEFAULT_NAME)) {
    fprintf(stderr,
            "pinpoold: %s: pool '%s': the default pool is the one --size and --page-size "
            "describe; it has no section\n",
            where, name);
    return PP_EINVAL;
  }
  for (uint32_t i = 0; i < o->npools; i++)
    if (!strcmp(o->pools[i].name, name)) {
      fprintf(stderr, "pinpoold: %s: pool '%s' is defined twice (first at %s)\n", where, name,
              o->pools[i].where);
      return PP_EINVAL;
    }
  if (o->npools == POOLS_MAX - 1) {
    fprintf(stderr, "pinpoold: %s: pool '%s': at most %u pools besides the default one\n",
            where, name, POOLS_MAX - 1);
    return PP_EINVAL;
  }
  *ret = &o->pools[o->npools++];
  memset(*ret, 0, sizeof **ret);
  snprintf((*ret)->name, sizeof(*ret)->name, "%s", name);
  snprintf((*ret)->where, sizeof(*ret)->where, "%s", where);
  (*ret)->policy = REGION_PAGE_AUTO;
  (*ret)->sort_pages = true;
  return 0;
}

static int load_config(options_t *o, const char *path) {
  FILE *f = fopen(path, "re");
  char line[1024], where[1100];
  unsigned lineno = 0;
  pool_def_t *pool = NULL; /* the section being read; NULL: the daemon's own keys */
  int rc = 0;

  if (!f) {
    fprintf(stderr, "pinpoold: cannot read config %s: %s\n", path, strerror(errno));
    return PP_EINVAL;
  }
  while (!rc && fgets(line, sizeof line, f)) {
    char *s = trim(line), *eq, *key, *val;
    const struct option_def *d;
    lineno++;
    snprintf(where, sizeof where, "%s:%u", path, lineno);
    if (!*s || *s == '#') continue;
    if (*s == '[') {
      rc = start_pool(o, s, where, &pool);
      continue;
    }
    eq = strchr(s, '=');
    if (eq) *eq = '\0';
    key = trim(s);
    val = eq ? trim(eq + 1) : NULL;
    if (pool) {
      rc = apply_pool_key(pool, key, val, where);
      continue;
    }
    d = find_option(key, strlen(key));
    if (!d) {
      fprintf(stderr, "pinpoold: %s: unknown key '%s'\n", where, key);
      rc = PP_EINVAL;
    } else if (!val && !d->is_bool) {
      fprintf(stderr, "pinpoold: %s: '%s' needs '= VALUE'\n", where, key);
      rc = PP_EINVAL;
    } else {
      rc = apply_option(o, d, val ? val : "true", where);
    }
  }
  fclose(f);
  return rc;
}

static void usage(FILE *out) {
  fprintf(out, "usage: pinpoold [--config FILE] [OPTIONS]\n"
               "       pinpoold --probe [--size SIZE] [--page-size P] [--sort-pages yes|no]\n\n"
               "Serves pinned, physically contiguous buffers from a hugepage region.\n\n");
  for (size_t i = 0; i < sizeof option_defs / sizeof option_defs[0]; i++)
    fprintf(out, "  --%-19s %s\n", option_defs[i].name, option_defs[i].help);
  fprintf(out, "  --%-19s %s\n", "config",
          "FILE  the same keys as key=value lines, then [pool NAME] sections (size,\n"
          "                        page-size, sort-pages, quota, numa-node, writers, readers)");
  fprintf(out, "  --%-19s %s\n", "probe",
          "print what region this machine would give, and exit");
  fprintf(out, "  --%-19s\n  --%-19s\n", "help", "version");
}

/* Returns 0 to run, 1 to exit successfully (help/version), or PP_EINVAL. */
static int parse_args(options_t *o, int argc, char **argv) {
  const char *config = NULL;
  int rc;

  /* The config file first, wherever --config stands, so the command line overrides it. */
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc)
      config = argv[++i];
    else if (!strncmp(argv[i], "--config=", 9))
      config = argv[i] + 9;
  }
  if (config && (rc = load_config(o, config))) return rc;

  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i], *eq, *val;
    const struct option_def *d;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      usage(stdout);
      return 1;
    }
    if (!strcmp(arg, "--version")) {
      printf("pinpoold %s\n", PP_VERSION);
      return 1;
    }
    if (!strcmp(arg, "--config")) {
      if (i + 1 >= argc) goto missing;
      i++;
      continue;
    }
    if (!strncmp(arg, "--config=", 9)) continue;
    if (strncmp(arg, "--", 2)) {
      fprintf(stderr, "pinpoold: unexpected argument '%s'\n", arg);
      return PP_EINVAL;
    }
    arg += 2;
    eq = strchr(arg, '=');
    d = find_option(arg, eq ? (size_t)(eq - arg) : strlen(arg));
    if (!d) {
      fprintf(stderr, "pinpoold: unknown option '%s' (see --help)\n", argv[i]);
      return PP_EINVAL;
    }
    if (eq)
      val = eq + 1;
    else if (d->is_bool)
      val = "true";
    else if (i + 1 < argc)
      val = argv[++i];
    else
      goto missing;
    if ((rc = apply_option(o, d, val, "command line"))) return rc;
  }
  return 0;
missing:
  fprintf(stderr, "pinpoold: %s needs a value\n", argv[argc - 1]);
  return PP_EINVAL;
}

/* A test-only knob from the environment (read once, at start-up): its decimal value, 0
 * when unset or not a number. */
static uint64_t env_u64(const char *name) {
  const char *v = getenv(name);
  char *end;
  uint64_t n;
  if (!v || !*v) return 0;
  errno = 0;
  n = strtoull(v, &end, 10);
  return errno || *end ? 0 : n;
}

static int resolve_group(const char *name, gid_t *ret) {
  struct group gr, *grp = NULL;
  char buf[4096], *end;
  unsigned long v = strtoul(name, &end, 10);

  if (*name && !*end) {
    *ret = (gid_t)v;
    return 0;
  }
  if (getgrnam_r(name, &gr, buf, sizeof buf, &grp) != 0 || !grp) return PP_ENOENT;
  *ret = grp->gr_gid;
  return 0;
}

/* The file a reload executes (reload.c explains why not /proc/self/exe): argv0 when it
 * has a slash (absolute against the working directory of now), else the first executable
 * file of that name on PATH; /proc/self/exe's target when neither works.  NULL: none. */
static const char *resolve_exe(const char *argv0, char *buf, size_t len) {
  char cwd[PATH_MAX], cand[PATH_MAX];
  struct stat st;
  ssize_t n;

  if (argv0 && strchr(argv0, '/')) {
    if (argv0[0] == '/') {
      if ((size_t)snprintf(buf, len, "%s", argv0) < len) return buf;
    } else if (getcwd(cwd, sizeof cwd) &&
               (size_t)snprintf(buf, len, "%s/%s", cwd, argv0) < len) {
      return buf;
    }
  } else if (argv0 && *argv0) {
    const char *path = getenv("PATH");
    for (const char *p = path; p && *p;) {
      size_t dl = strcspn(p, ":");
      int w = dl ? snprintf(cand, sizeof cand, "%.*s/%s", (int)dl, p, argv0)
                 : snprintf(cand, sizeof cand, "./%s", argv0);
      if (w > 0 && (size_t)w < sizeof cand && stat(cand, &st) == 0 && S_ISREG(st.st_mode) &&
          access(cand, X_OK) == 0) {
        if (cand[0] == '/') {
          if ((size_t)snprintf(buf, len, "%s", cand) < len) return buf;
        } else if (getcwd(cwd, sizeof cwd) &&
                   (size_t)snprintf(buf, len, "%s/%s", cwd, cand) < len) {
          return buf;
        }
      }
      p += dl;
      if (*p == ':') p++;
    }
  }
  n = readlink("/proc/self/exe", buf, len - 1);
  if (n <= 0) return NULL;
  buf[n] = '\0';
  if (n > 10 && !strcmp(buf + n - 10, " (deleted)")) buf[n - 10] = '\0';
  return buf;
}

int main(int argc, char **argv) {
  options_t o = {.size = 64ull << 20,
                 .policy = REGION_PAGE_AUTO,
                 .sort_pages = true,
                 .max_clients = 256,
                 .max_buffers = 65536,
                 .socket_mode = 0660,
                 .log_level = LOG_INFO,
                 .max_frame = FRAME_MAX_DEFAULT,
                 .hello_timeout_ms = 10000,
                 .max_caches_per_uid = 64,
                 .max_caches = 4096,
                 .max_clients_per_uid = 64,
                 .max_pending_per_uid = 32,
                 .admin_reserve = 4,
                 .frame_timeout_ms = 10000,
                 .write_timeout_ms = 30000,
                 .max_queued = 64ull << 20,
                 .scan_interval_ms = HOLES_INTERVAL_DEFAULT_MS,
                 .grace_ms = PERSIST_GRACE_DEFAULT_MS,
                 .journal = JOURNAL_AUTO};
  server_config_t sc = {0};
  ledger_config_t lc = {0};
  persist_config_t pc = {0};
  ledger_t *ledger = NULL;
  persist_t *persist = NULL;
  static pools_t pools;
  fdstore_fds_t fds;
  gid_t admin_gid = (gid_t)-1;
  handoff_t ho = {0};
  bool reloaded = false;
  static char exe[PATH_MAX];
  sigset_t hup;
  int rc;

  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hup, NULL);
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--probe")) return probe_main(argc, argv);

  rc = parse_args(&o, argc, argv);
  if (rc == 1) return 0;
  if (rc) return 2;
  log_set_level(o.log_level);
  if (!o.socket[0] && endpoint_default_path(o.socket, sizeof o.socket)) {
    log_err("no usable default socket path; pass --socket");
    return 2;
  }
  if (o.admin_group[0] && resolve_group(o.admin_group, &admin_gid)) {
    log_err("admin group '%s' does not exist", o.admin_group);
    return 2;
  }

  for (uint32_t i = 0; i < o.nshared_groups; i++) {
    gid_t g;
    if (resolve_group(o.shared_groups[i], &g) || g == (gid_t)-1) {
      log_err("shared group '%s' does not exist", o.shared_groups[i]);
      return 2;
    }
    lc.shared_groups[lc.nshared_groups++] = g;
  }

  if (o.bind_node && (o.numa_node > INT32_MAX || !osl_numa_node_exists((int)o.numa_node))) {
    log_err("numa-node %u: that NUMA node does not exist on this machine", o.numa_node);
    return 2;
  }
  /* Every pool's section is checked before any region is made: a refusal costs nothing. */
  for (uint32_t i = 0; i < o.npools; i++) {
    pool_acl_t w, r;
    char why[512];
    if (pools_check_def(&o.pools[i], &w, &r, why, sizeof why)) {
      log_err("%s: %s", o.pools[i].where, why);
      return 2;
    }
  }

  sc.started_ms = handlers_now_ms();
  lc.bind_node = o.bind_node;
  lc.numa_node = o.numa_node;
  lc.size = o.size;
  lc.policy = o.policy;
  lc.no_sort_pages = !o.sort_pages;
  lc.quota = o.quota;
  lc.max_buffers = o.max_buffers;
  lc.max_caches_per_uid = o.max_caches_per_uid;
  lc.max_caches = o.max_caches;
  lc.zero_on_free = o.zero_on_free;

  /* A reload: what the previous image of this process handed over. */
  rc = handoff_take(&ho);
  if (rc < 0) return 1; /* nothing to trust: the service manager's restart takes over */
  reloaded = rc == 1;
  if (reloaded) {
    uint64_t wd = 0;
    /* The watchdog, as early as we can: replay and adoption come next. */
    if (sd_watchdog_enabled(0, &wd) > 0) sd_notify(0, "WATCHDOG=1");
    log_notice("reload: taking over from the previous image (handoff version %u, %u "
               "connections)",
               ho.version, ho.nconns);
  }

  /* What the service manager hands us (the socket, the memfds it kept), then the region:
   * taken back from the store, or fresh.  After a reload it passed nothing (the first
   * image took and unset LISTEN_FDS): the previous image did. */
  if (reloaded) {
    fds = (fdstore_fds_t){
        .listen_fd = ho.listen_fd, .region_fd = ho.region_fd, .journal_fd = ho.journal_fd};
    /* The other pools' (a handoff of version 2). */
    for (uint32_t i = 0; i < ho.npools && fds.npools < FDSTORE_POOLS_MAX; i++) {
      fdstore_pool_fds_t *e = &fds.pools[fds.npools++];
      snprintf(e->name, sizeof e->name, "%s", ho.pools[i].name);
      e->region_fd = ho.pools[i].region_fd;
      e->journal_fd = ho.pools[i].journal_fd;
      e->flags = ho.pools[i].flags;
    }
  } else if (fdstore_collect(&fds)) {
    return 1;
  }
  if (fds.extra_regions || fds.extra_journals) {
    log_err("the fd store holds %u regions and %u journals more than one each: none is "
            "trusted",
            fds.extra_regions + (fds.region_fd >= 0),
            fds.extra_journals + (fds.journal_fd >= 0));
    fdstore_drop(FDSTORE_REGION);
    fdstore_drop(FDSTORE_JOURNAL);
  }
  pc.fd_store = fdstore_available();
  pc.journal = o.journal == JOURNAL_YES || (o.journal == JOURNAL_AUTO && pc.fd_store);
  pc.grace_ms = o.grace_ms;
  pc.crash_after_commit = env_u64("PINPOOLD_TEST_CRASH_AFTER_COMMIT");
  pc.check_every_request = env_u64("PINPOOLD_TEST_CHECK_JOURNAL") != 0;
  pc.handoff = reloaded;
  pc.handoff_stored = reloaded && (ho.flags & HANDOFF_STORED);
  pc.handoff_journal_temp = reloaded && (ho.flags & HANDOFF_JOURNAL_TEMP);
  if (reloaded) {
    session_skip_ids(ho.next_session_id);
    if (ho.started_ms) sc.started_ms = ho.started_ms; /* the uptime goes on */
  }
  rc = persist_start(&pc, &lc, fds.region_fd, fds.journal_fd, &ledger, &persist);
  if (rc) {
    if (fds.listen_fd >= 0) close(fds.listen_fd);
    handoff_free(&ho);
    return 1;
  }
  if (reloaded) {
    uint64_t wd = 0;
    if (sd_watchdog_enabled(0, &wd) > 0) sd_notify(0, "WATCHDOG=1");
  }

  sc.socket_path = o.socket;
  sc.socket_mode = o.socket_mode;
  sc.max_clients = o.max_clients;
  sc.max_frame = o.max_frame;
  sc.admin_gid = admin_gid;
  sc.write_high_water = 4u * o.max_frame > (1u << 20) ? 4u * o.max_frame : (1u << 20);
  sc.hello_timeout_ms = o.hello_timeout_ms;
  sc.max_clients_per_uid = o.max_clients_per_uid;
  sc.max_pending_per_uid = o.max_pending_per_uid;
  sc.admin_reserve = o.admin_reserve;
  sc.frame_timeout_ms = o.frame_timeout_ms;
  sc.write_timeout_ms = o.write_timeout_ms;
  sc.max_queued = (size_t)o.max_queued;
  sc.scan_interval_ms = o.scan_interval_ms;
  sc.listen_fd = fds.listen_fd;
  sc.hang_after_requests = env_u64("PINPOOLD_TEST_HANG_AFTER_REQUESTS");
  sc.handoff_version = (uint32_t)env_u64("PINPOOLD_TEST_HANDOFF_VERSION");
  sc.argv = argv;
  sc.exe_path = resolve_exe(argv[0], exe, sizeof exe);
  if (!reloaded) {
    if (sc.exe_path)
      log_info("a reload (SIGHUP) executes %s", sc.exe_path);
    else
      log_warning("cannot tell which file this program is: a reload (SIGHUP) is refused");
  }
  /* The other pools, after the default one: fresh each time (pools.c). */
  pools_init(&pools, ledger, persist);
  for (uint32_t i = 0; i < o.npools; i++) {
    const pool_def_t *d = &o.pools[i];
    persist_config_t ppc = pc;
    int rfd = -1, jfd = -1;
    for (unsigned k = 0; k < fds.npools; k++) {
      fdstore_pool_fds_t *e = &fds.pools[k];
      if (strcmp(e->name, d->name)) continue;
      if (e->twice)
        log_err("pool '%s': the fd store holds its region or journal twice: neither is "
                "trusted, the pool starts fresh",
                d->name);
      rfd = e->region_fd;
      jfd = e->journal_fd;
      /* After a reload: what the previous image said of this pool's fds. */
      ppc.handoff_stored = reloaded && (e->flags & HANDOFF_STORED);
      ppc.handoff_journal_temp = reloaded && (e->flags & HANDOFF_JOURNAL_TEMP);
      e->region_fd = e->journal_fd = -1;
      e->name[0] = '\0'; /* taken */
    }
    if ((rc = pools_add(&pools, d, &lc, &ppc, rfd, jfd))) {
      log_err("%s: pool '%s': key 'size' (%" PRIu64 " bytes, page-size %s%s): its region "
              "cannot be had: %s (the log above says why)",
              d->where, d->name, d->size,
              d->policy == REGION_PAGE_AUTO ? "auto"
              : d->policy == REGION_PAGE_4K ? "4K"
              : d->policy == REGION_PAGE_2M ? "2M"
                                            : "1G",
              d->bind_node ? ", numa-node set" : "", pp_strerror(rc));
      pools_fini(&pools);
      if (fds.listen_fd >= 0) close(fds.listen_fd);
      handoff_free(&ho);
      persist_free(persist);
      ledger_destroy(ledger);
      return 2;
    }
    log_info("pool '%s' (id %u): %" PRIu64 " bytes, writers '%s', readers '%s'", d->name, i + 1,
             region_size(ledger_region(pools.v[i + 1].ledger)), d->writers, d->readers);
  }
  /* What the store keeps for pools the config no longer has: nobody will take it back. */
  for (unsigned k = 0; k < fds.npools; k++) {
    fdstore_pool_fds_t *e = &fds.pools[k];
    char name[FDSTORE_POOL_NAME_MAX + 16];
    if (!e->name[0]) continue;
    log_notice("pool '%s' is not configured any more: its stored region and journal leave "
               "the fd store, and what sessions held there is gone",
               e->name);
    if (e->region_fd >= 0) close(e->region_fd);
    if (e->journal_fd >= 0) close(e->journal_fd);
    if (reloaded && !(e->flags & HANDOFF_STORED)) continue; /* the store has none of it */
    snprintf(name, sizeof name, "%s.%s", FDSTORE_REGION, e->name);
    fdstore_drop(name);
    snprintf(name, sizeof name, "%s.%s", FDSTORE_JOURNAL, e->name);
    fdstore_drop(name);
  }
  rc = server_run(&sc, &pools, persist, reloaded ? &ho : NULL);
  handoff_free(&ho);
  pools_fini(&pools);
  persist_free(persist);
  ledger_destroy(ledger);
  return rc ? 1 : 0;
}
