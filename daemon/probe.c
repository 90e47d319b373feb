/*
 * probe.c — `pinpoold --probe [--size S] [--page-size P] [--sort-pages yes|no]`: the
 * preflight check.
 *
 * An operator runs it before the daemon (and `make run` runs it until the daemon exists)
 * to learn what region this machine would give: the hugepage sizes the kernel offers
 * with their total, free and reserved pages; the page size the policy picks; whether
 * physical addresses are readable; whether the hugepages could be laid out in physical
 * order; and the physically contiguous runs found — their number, the longest, and a
 * histogram of their lengths in pages, beside the same for the pool's own order when the
 * pages were sorted (so the gain is visible).  It does so by really creating the region
 * (memfd, fallocate, sort, seals, mapping, pagemap) with the daemon's own code and then
 * releasing it, so a "yes" here is the daemon's "yes".
 *
 * Exit status: 0 when the region could be had; 1 when not (the reason is printed, with
 * the fix when there is one); 2 for a usage error.
 */
#include "probe.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>

#include "region.h"
#include "units.h"

#define PROBE_DEFAULT_SIZE (64ull << 20)
#define PROBE_MAX_SIZES 16

static void probe_usage(FILE *out) {
  fprintf(out,
          "usage: pinpoold --probe [--size S] [--page-size auto|4K|2M|1G] "
          "[--sort-pages yes|no]\n"
          "  --size S        region size, e.g. 64M, 2G (binary units; default 64M)\n"
          "  --page-size P   page-size policy (default auto: the largest hugepage size with\n"
          "                  enough free pages, else 4 KiB)\n"
          "  --sort-pages B  lay hugepages out in ascending physical order (default yes)\n");
}

/* Log lines from region.c, indented under the probe's own output. */
static void probe_log(void *ctx, int level, const char *msg) {
  FILE *out = ctx;
  if (level >= LOG_DEBUG) return;
  const char *tag = level <= LOG_ERR ? "error" : level == LOG_WARNING ? "warning" : "info";
  fprintf(out, "  [%s] %s\n", tag, msg);
}

/* Value of --name V or --name=V at argv[*i]; advances *i past V.  NULL when absent. */
static const char *probe_opt(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  if (strncmp(argv[*i], name, n) != 0) return NULL;
  if (argv[*i][n] == '=') return argv[*i] + n + 1;
  if (argv[*i][n] != '\0') return NULL;
  if (*i + 1 >= argc) return "";
  return argv[++*i];
}

int probe_main(int argc, char **argv) {
  region_config_t cfg = {.size = PROBE_DEFAULT_SIZE,
                         .policy = REGION_PAGE_AUTO,
                         .name = "pinpool-probe",
                         .log = probe_log,
                         .log_ctx = stdout};
  for (int i = 1; i < argc; i++) {
    const char *v;
    if (!strcmp(argv[i], "--probe")) continue;
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      probe_usage(stdout);
      return 0;
    }
    if ((v = probe_opt(argc, argv, &i, "--size"))) {
      if (units_parse_size(v, &cfg.size) != 0 || cfg.size == 0) {
        fprintf(stderr, "pinpoold --probe: bad --size '%s' (want e.g. 64M, 2G)\n", v);
        return 2;
      }
    } else if ((v = probe_opt(argc, argv, &i, "--page-size"))) {
      if (region_parse_policy(v, &cfg.policy) != 0) {
        fprintf(stderr, "pinpoold --probe: bad --page-size '%s' (want auto, 4K, 2M or 1G)\n",
                v);
        return 2;
      }
    } else if ((v = probe_opt(argc, argv, &i, "--sort-pages"))) {
      if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1"))
        cfg.no_sort = false;
      else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0"))
        cfg.no_sort = true;
      else {
        fprintf(stderr, "pinpoold --probe: bad --sort-pages '%s' (want yes or no)\n", v);
        return 2;
      }
    } else {
      fprintf(stderr, "pinpoold --probe: unknown option '%s'\n", argv[i]);
      probe_usage(stderr);
      return 2;
    }
  }

  char s1[32], s2[32];
  units_format_size(cfg.size, s1, sizeof s1);
  printf("pinpoold --probe: what region would this machine give?\n");
  printf("requested: %s, page size policy %s, sorting %s\n\n", s1,
         region_policy_name(cfg.policy), cfg.no_sort ? "off" : "on");

  region_hugepage_info_t hp[PROBE_MAX_SIZES];
  int n = region_hugepage_sizes(hp, PROBE_MAX_SIZES);
  printf("hugepage sizes (/sys/kernel/mm/hugepages):\n");
  if (n <= 0)
    printf("  none: this kernel offers no hugepages\n");
  else
    printf("  %-10s %10s %10s %10s\n", "page", "total", "free", "reserved");
  for (int k = 0; k < n; k++) {
    units_format_size(hp[k].page_size, s2, sizeof s2);
    printf("  %-10s %10" PRIu64 " %10" PRIu64 " %10" PRIu64 "\n", s2, hp[k].total_pages,
           hp[k].free_pages, hp[k].resv_pages);
  }
  printf("\ncreating the region:\n");
  fflush(stdout);

  region_t *r;
  int rc = region_create(&cfg, &r);
  if (rc != 0) {
    printf("\nprobe: FAILED: %s (%s); see the error above\n", pp_strerror(rc), pp_err_name(rc));
    fflush(stdout);
    fprintf(stderr, "pinpoold --probe: no region: %s\n", pp_strerror(rc));
    return 1;
  }
  units_format_size(region_page_size(r), s2, sizeof s2);
  printf("\nchosen page size: %s%s\n", s2, region_hugepages(r) ? " (hugepages)" : "");
  region_describe(r, stdout);
  printf("\nprobe: OK\n");
  region_destroy(r);
  return 0;
}
