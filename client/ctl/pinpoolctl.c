/*
 * pinpoolctl.c — the operator's view of pinpoold: who holds what, and how fragmented is
 * what is left.  `pinpoolctl [--socket PATH] [--json] COMMAND`; see docs/man/pinpoolctl.8.
 *
 * What: parse the command line, connect (ctl_conn.c), fetch a whole Stats snapshot — the
 * summary and the lists the command shows (caches for `slabinfo`, clients for `clients`,
 * every buffer for `buffers`, every block for `map`), page after page (ctl_snap.c), so
 * that 100,000 caches or 10,000 clients are all there — and print it (ctl_view.c,
 * ctl_map.c); `top` refreshes it every second (ctl_top.c); `shrink` sends ShrinkRequest.
 * A daemon that predates paging answers with its single reply, as before.
 *
 * Exit status is part of the interface, for scripts:
 *   0 success; 1 the daemon answered with an error (we print its status name and message;
 *   PERMISSION_DENIED also says that root or the admin group is needed); 2 usage error;
 *   3 the daemon cannot be reached (we print the path we tried and why: "is pinpoold
 *   running?" when nobody is there, the socket's group and how to join it when this user
 *   may not connect).
 *
 * Options may come before or after the command (`pinpoolctl buffers --client 42 --json`);
 * --client/--name belong to `buffers` only, and `top` has no JSON form.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "ctl_conn.h"
#include "ctl_map.h"
#include "ctl_top.h"
#include "ctl_view.h"
#include "endpoint.h"
#include "frame.h"

enum { EXIT_DAEMON = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

typedef enum ctl_cmd {
  CMD_STATUS,
  CMD_BUDDYINFO,
  CMD_SLABINFO,
  CMD_CLIENTS,
  CMD_BUFFERS,
  CMD_MAP,
  CMD_TOP,
  CMD_SHRINK,
  CMD_POOLS,
  CMD_N
} ctl_cmd_t;

static const char *const cmd_names[CMD_N] = {
    [CMD_STATUS] = "status",   [CMD_BUDDYINFO] = "buddyinfo", [CMD_SLABINFO] = "slabinfo",
    [CMD_CLIENTS] = "clients", [CMD_BUFFERS] = "buffers",     [CMD_MAP] = "map",
    [CMD_TOP] = "top",         [CMD_SHRINK] = "shrink",       [CMD_POOLS] = "pools",
};

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: pinpoolctl [--socket PATH] [--json] COMMAND [OPTIONS]\n"
      "\n"
      "commands:\n"
      "  status      version, uptime, region, used/free/cached bytes, physical runs and\n"
      "              the hugepage sort, clients, buffers, caches\n"
      "  buddyinfo   free blocks per order (as /proc/buddyinfo), free bytes, largest free\n"
      "              block, fragmentation index per order\n"
      "  slabinfo    one row per slab cache (as /proc/slabinfo), full/partial/empty slabs,\n"
      "              objects in magazines, waste\n"
      "  clients     one row per session: pid, uid, name, since, bytes held, bytes its uid is\n"
      "              charged, buffers, objects, state (connected, or detached and how long\n"
      "              it stays re-claimable)\n"
      "  buffers [--client PID] [--name NAME]\n"
      "              every buffer: handle, offset, size, phys, contiguous, the uid charged,\n"
      "              holders, name; NAME unqualified matches that name in every scope,\n"
      "              ~UID/NAME or ~gGID/NAME just that one\n"
      "  map         a picture of the region, one character per cell, and its physical runs\n"
      "  top         live view, refreshed every second; q quits\n"
      "  shrink      return empty slabs and drained magazines to the buddy allocator\n"
      "  pools       one row per pool: name, id, size, page size, hugepages, NUMA node,\n"
      "              quota, used, free, writers, readers\n"
      "\n"
      "options:\n"
      "  -p, --pool NAME    the pool status, buddyinfo, slabinfo, clients, buffers and map\n"
      "                     describe (default: the default pool)\n"
      "  -s, --socket PATH  the daemon's socket (default: $PINPOOL_SOCKET, else\n"
      "                     /run/pinpool/pinpool.sock as root, else "
      "$XDG_RUNTIME_DIR/pinpool.sock)\n"
      "  -j, --json         print one JSON object (every command but top)\n"
      "  -h, --help         print this help\n"
      "  -V, --version      print the version\n"
      "\n"
      "exit status: 0 ok, 1 error from the daemon, 2 usage error, 3 daemon unreachable (or\n"
      "             not allowed to connect to its socket)\n");
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "pinpoolctl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'pinpoolctl --help'.\n");
  return EXIT_USAGE;
}

/* connect() said EACCES/EPERM: say who may connect and how to become one of them, from
 * the socket's owner, group and mode — or, when even stat() is refused, from the directory
 * that does not let us through. */
static void explain_access(const char *path) {
  const struct passwd *pw = getpwuid(geteuid());
  const char *user = pw ? pw->pw_name : "USER";
  char dir[sizeof(((ctl_conn_t *)0)->path)], gname[64], *slash;
  struct group *gr;
  struct stat st;

  if (stat(path, &st) == 0) {
    gr = getgrgid(st.st_gid);
    if (gr)
      snprintf(gname, sizeof gname, "%s", gr->gr_name);
    else
      snprintf(gname, sizeof gname, "%u", (unsigned)st.st_gid);
    if (st.st_mode & S_IWGRP) {
      fprintf(stderr,
              "pinpoolctl: the socket belongs to group '%s' (mode %04o), and %s (uid %u) is "
              "not in it\n"
              "pinpoolctl: to connect, join the group (as root: usermod -aG %s %s) and log in "
              "again, or run pinpoolctl as root\n",
              gname, (unsigned)(st.st_mode & 07777), user, (unsigned)geteuid(), gname, user);
    } else {
      fprintf(stderr,
              "pinpoolctl: the socket (owner uid %u, group '%s', mode %04o) lets only its "
              "owner connect\n"
              "pinpoolctl: run pinpoolctl as root or as that owner, or give the group access "
              "(pinpoold --socket-mode 0660) and join the group '%s'\n",
              (unsigned)st.st_uid, gname, (unsigned)(st.st_mode & 07777), gname);
    }
    return;
  }
  snprintf(dir, sizeof dir, "%s", path);
  slash = strrchr(dir, '/');
  if (slash && slash != dir) *slash = '\0';
  fprintf(stderr,
          "pinpoolctl: %s (uid %u) may not even look at the socket: a directory on the way, "
          "%s or above, does not let this user through\n",
          user, (unsigned)geteuid(), slash ? dir : ".");
}

/* Map a failure to its message and exit status. */
static int report(const ctl_conn_t *c, int err) {
  if (err == PP_EACCES) {
    fprintf(stderr, "pinpoolctl: not allowed to connect to pinpoold's socket %s: %s\n", c->path,
            c->rpc.why);
    explain_access(c->path);
    return EXIT_UNREACHABLE;
  }
  if (ctl_err_is_transport(err)) {
    fprintf(stderr, "pinpoolctl: cannot reach pinpoold at %s: %s\n", c->path, c->rpc.why);
    if (err == PP_ECONNECT)
      fprintf(stderr, "pinpoolctl: is pinpoold running? --socket PATH or $PINPOOL_SOCKET "
                      "chooses another socket\n");
    return EXIT_UNREACHABLE;
  }
  fprintf(stderr, "pinpoolctl: %s: %s\n", pp_status_name(err), c->rpc.why);
  if (err == PP_EPERM)
    fprintf(stderr, "pinpoolctl: this command needs root or membership in pinpoold's admin "
                    "group (pinpoold --admin-group)\n");
  return EXIT_DAEMON;
}

static void terminal_size(unsigned *ret_cols, unsigned *ret_rows) {
  struct winsize ws;

  *ret_cols = 80;
  *ret_rows = CTL_MAP_DEFAULT_ROWS;
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    *ret_cols = ws.ws_col;
    /* Leave room for the scale line, the legend and the prompt. */
    if (ws.ws_row > 10) *ret_rows = ws.ws_row - 6u > 64 ? 64 : ws.ws_row - 6u;
  }
}

static int print_json(json_object *o) {
  const char *text;

  if (!o) {
    fprintf(stderr, "pinpoolctl: out of memory building JSON\n");
    return EXIT_DAEMON;
  }
  text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
                                               JSON_C_TO_STRING_NOSLASHESCAPE);
  printf("%s\n", text);
  json_object_put(o);
  return 0;
}

/* The lists each read command shows. */
static unsigned lists_of(ctl_cmd_t cmd) {
  switch (cmd) {
  case CMD_SLABINFO: return CTL_LIST_CACHES;
  case CMD_CLIENTS: return CTL_LIST_CLIENTS;
  case CMD_BUFFERS: return CTL_LIST_BUFFERS;
  case CMD_MAP: return CTL_LIST_MAP;
  default: return 0; /* status and buddyinfo: the summary */
  }
}

static int show(ctl_cmd_t cmd, bool json, const Pinpool__V1__Stats *s,
                const ctl_buffer_filter_t *filter) {
  ctl_map_t map;
  unsigned cols, rows;
  int rc;

  switch (cmd) {
  case CMD_POOLS:
    if (json) return print_json(ctl_json_pools(s));
    ctl_view_pools(stdout, s);
    return 0;
  case CMD_STATUS:
    if (json) return print_json(ctl_json_status(s));
    ctl_view_status(stdout, s);
    return 0;
  case CMD_BUDDYINFO:
    if (json) return print_json(ctl_json_buddyinfo(s));
    ctl_view_buddyinfo(stdout, s);
    return 0;
  case CMD_SLABINFO:
    if (json) return print_json(ctl_json_slabinfo(s));
    ctl_view_slabinfo(stdout, s);
    return 0;
  case CMD_CLIENTS:
    if (json) return print_json(ctl_json_clients(s));
    ctl_view_clients(stdout, s);
    return 0;
  case CMD_BUFFERS:
    if (json) return print_json(ctl_json_buffers(s, filter));
    ctl_view_buffers(stdout, s, filter);
    return 0;
  case CMD_MAP:
    terminal_size(&cols, &rows);
    rc = ctl_map_build(s, cols, rows, &map);
    if (rc < 0) {
      fprintf(stderr, "pinpoolctl: cannot draw the map: %s\n", pp_strerror(rc));
      return EXIT_DAEMON;
    }
    rc = 0;
    if (json)
      rc = print_json(ctl_json_map(s, &map));
    else
      ctl_view_map(stdout, &map);
    ctl_map_free(&map);
    return rc;
  default: return EXIT_USAGE;
  }
}

/* --pool NAME: its id, from the summary's pool list, into c->pool.  0, or an exit status
 * (a name the daemon does not have, or a daemon before pools, is the daemon's answer: 1). */
static int find_pool(ctl_conn_t *c, const char *name) {
  ctl_snapshot_t snap = {0};
  const Pinpool__V1__PoolInfo *p;
  int rc = ctl_conn_snapshot(c, 0, &snap);

  if (rc < 0) return report(c, rc);
  p = ctl_pool_find(&snap.stats, name);
  if (!p && !strcmp(name, "default") && snap.stats.n_pools == 0) {
    ctl_snapshot_free(&snap);
    return 0; /* a daemon before pools: its one region is the default pool */
  }
  if (!p) {
    fprintf(stderr, "pinpoolctl: pinpoold has no pool named '%s'", name);
    for (size_t i = 0; i < snap.stats.n_pools; i++)
      fprintf(stderr, "%s%s", i ? ", " : " (it has: ", snap.stats.pools[i]->name);
    fprintf(stderr, "%s\n", snap.stats.n_pools ? ")" : "");
    ctl_snapshot_free(&snap);
    return EXIT_DAEMON;
  }
  c->pool = p->id;
  ctl_snapshot_free(&snap);
  return 0;
}

int main(int argc, char **argv) {
  static const struct option longopts[] = {
      {"socket", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
      {"client", required_argument, NULL, 'c'}, {"name", required_argument, NULL, 'n'},
      {"pool", required_argument, NULL, 'p'},   {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
  };
  ctl_buffer_filter_t filter = {0};
  const char *socket_path = NULL, *pool = NULL;
  char path[sizeof(((ctl_conn_t *)0)->path)];
  Pinpool__V1__Response *resp = NULL;
  ctl_snapshot_t snap = {0};
  ctl_conn_t conn;
  ctl_cmd_t cmd = CMD_N;
  bool json = false, filtered = false;
  int opt, rc, status;

  opterr = 0; /* we word the complaints ourselves */
  while ((opt = getopt_long(argc, argv, ":s:jp:hV", longopts, NULL)) != -1) {
    char *end;
    unsigned long v;
    switch (opt) {
    case 's': socket_path = optarg; break;
    case 'j': json = true; break;
    case 'c':
      errno = 0;
      v = strtoul(optarg, &end, 10);
      if (errno || end == optarg || *end || v == 0 || v > UINT32_MAX || optarg[0] == '-')
        return usage_error("--client wants a process id, not '%s'", optarg);
      filter.by_pid = true;
      filter.pid = (uint32_t)v;
      filtered = true;
      break;
    case 'n':
      filter.name = optarg;
      filtered = true;
      break;
    case 'p':
      if (!*optarg) return usage_error("%s", "--pool wants a pool's name");
      pool = optarg;
      break;
    case 'h': usage(stdout); return 0;
    case 'V': printf("pinpoolctl %s\n", PP_VERSION); return 0;
    case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
    default: return usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind >= argc) return usage_error("%s", "no command given");
  for (int i = 0; i < CMD_N; i++)
    if (!strcmp(argv[optind], cmd_names[i])) cmd = (ctl_cmd_t)i;
  if (cmd == CMD_N) return usage_error("unknown command '%s'", argv[optind]);
  if (optind + 1 < argc) return usage_error("unexpected argument '%s'", argv[optind + 1]);
  if (filtered && cmd != CMD_BUFFERS)
    return usage_error("--client and --name belong to 'buffers', not '%s'", cmd_names[cmd]);
  if (json && cmd == CMD_TOP) return usage_error("%s", "'top' has no --json form");
  if (pool && (cmd == CMD_TOP || cmd == CMD_SHRINK || cmd == CMD_POOLS))
    return usage_error("--pool does not apply to '%s'", cmd_names[cmd]);

  if (!socket_path) {
    if (endpoint_default_path(path, sizeof path) < 0) {
      fprintf(stderr, "pinpoolctl: cannot reach pinpoold: the default socket path is too "
                      "long; pass --socket PATH\n");
      return EXIT_UNREACHABLE;
    }
    socket_path = path;
  }

  rc = ctl_conn_open(&conn, socket_path);
  if (rc < 0) return report(&conn, rc);
  if (pool && (rc = find_pool(&conn, pool)) != 0) {
    ctl_conn_close(&conn);
    return rc;
  }

  switch (cmd) {
  case CMD_TOP:
    rc = ctl_top_run(&conn, CTL_TOP_INTERVAL_MS);
    if (rc == PP_EINVAL) {
      fprintf(stderr, "pinpoolctl: %s\n", conn.rpc.why);
      status = EXIT_USAGE;
    } else {
      status = rc < 0 ? report(&conn, rc) : 0;
    }
    break;
  case CMD_SHRINK:
    rc = ctl_conn_shrink(&conn, &resp);
    if (rc < 0) {
      status = report(&conn, rc);
      break;
    }
    if (json) {
      status = print_json(ctl_json_shrink(resp->shrink));
    } else {
      ctl_view_shrink(stdout, resp->shrink);
      status = 0;
    }
    break;
  default:
    rc = ctl_conn_snapshot(&conn, lists_of(cmd), &snap);
    if (rc < 0) {
      status = report(&conn, rc);
      break;
    }
    /* A daemon before paging may have left something out of its one reply (the map, or
     * lists, when they would exceed its max frame): say so rather than print a silently
     * partial picture. */
    if (snap.note) fprintf(stderr, "pinpoolctl: note from pinpoold: %s\n", snap.note);
    status = show(cmd, json, &snap.stats, &filter);
    ctl_snapshot_free(&snap);
    break;
  }
  if (resp) frame_free_response(resp);
  ctl_conn_close(&conn);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "pinpoolctl: writing the output: %s\n", strerror(errno));
    if (status == 0) status = EXIT_DAEMON;
  }
  return status;
}
