/*
 * sysd_client.c — one libpinpool client, run inside the systemd test namespace
 * (tests/systemd/sysd.sh run): connect through the default socket, allocate one
 * PP_CONTIGUOUS buffer and check what the daemon says about it against this process's own
 * /proc/self/pagemap.
 *
 *   sysd_client [--page-size BYTES] [--size BYTES]
 *
 * Checks, each printed: the region's page size is --page-size (when given; 2097152 asks
 * for a hugepage region); physical addresses are known; the buffer is contiguous with a
 * non-zero physical address; for every 4 KiB page of the buffer, the PFN this process's
 * pagemap shows is the daemon's address plus the page's offset.  Exit 0 when all hold,
 * 1 when one does not, 2 for a usage or connection error.  Run as root: pagemap shows
 * frame numbers only with CAP_SYS_ADMIN.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pinpool.h>

/* The physical address of the byte at addr per this process's pagemap; 0 when the page
 * is absent or the frame number hidden. */
static uint64_t pagemap_phys(int fd, const void *addr) {
  uint64_t entry = 0, va = (uint64_t)(uintptr_t)addr, ps = (uint64_t)sysconf(_SC_PAGESIZE);
  (void)*(const volatile uint8_t *)addr; /* a shared mapping is filled lazily */
  if (pread(fd, &entry, sizeof entry, (off_t)(va / ps * sizeof entry)) != sizeof entry)
    return 0;
  if (!(entry & (1ull << 63))) return 0; /* not present */
  entry &= (1ull << 55) - 1;             /* bits 0-54: the frame number */
  return entry ? entry * ps + va % ps : 0;
}

static bool check(bool ok, const char *what) {
  printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  return ok;
}

int main(int argc, char **argv) {
  uint64_t want_page = 0, size = 1ull << 20;
  pp_client *c = NULL;
  pp_buffer b;
  bool ok = true;
  int rc, fd;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--page-size") && i + 1 < argc)
      want_page = strtoull(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--size") && i + 1 < argc)
      size = strtoull(argv[++i], NULL, 0);
    else {
      fprintf(stderr, "usage: %s [--page-size BYTES] [--size BYTES]\n", argv[0]);
      return 2;
    }
  }
  rc = pp_connect(NULL, "sysd-client", &c);
  if (rc < 0) {
    fprintf(stderr, "pp_connect: %s\n", pp_strerror(rc));
    return 2;
  }
  printf("region %" PRIu64 " bytes, page size %" PRIu64 ", hugepages %s\n", pp_region_size(c),
         pp_page_size(c), pp_hugepages(c) ? "yes" : "no");
  if (want_page)
    ok &= check(pp_page_size(c) == want_page && pp_hugepages(c) == (want_page > 4096),
                "the region has the page size asked for");
  ok &= check(pp_phys_known(c), "the daemon knows physical addresses");
  rc = pp_alloc(c, size, PP_CONTIGUOUS | PP_ZERO, &b);
  if (rc < 0) {
    printf("FAILED: pp_alloc(%" PRIu64 ", PP_CONTIGUOUS): %s\n", size, pp_strerror(rc));
    pp_disconnect(c);
    return 1;
  }
  printf("buffer offset 0x%" PRIx64 " size %" PRIu64 " phys 0x%" PRIx64 "\n", b.offset, b.size,
         b.phys);
  ok &= check(b.contiguous && b.phys != 0, "the buffer is contiguous at a known address");
  fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (!check(fd >= 0, "/proc/self/pagemap opens")) {
    ok = false;
  } else {
    uint64_t bad = UINT64_MAX, mine = 0;
    for (uint64_t off = 0; off < b.size && bad == UINT64_MAX; off += 4096) {
      mine = pagemap_phys(fd, (const uint8_t *)b.addr + off);
      if (mine == 0 || mine != b.phys + off) bad = off;
    }
    if (bad != UINT64_MAX)
      printf("at +0x%" PRIx64 ": pagemap 0x%" PRIx64 ", daemon 0x%" PRIx64 "\n", bad, mine,
             b.phys + bad);
    ok &= check(bad == UINT64_MAX, "every page matches this process's pagemap");
    close(fd);
  }
  ok &= check(pp_free(c, b.handle) == 0, "the buffer goes back");
  pp_disconnect(c);
  return ok ? 0 : 1;
}
