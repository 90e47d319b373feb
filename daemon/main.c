/* pinpoold — entry point.  Until the daemon proper exists, only --probe works. */
#include <stdio.h>
#include <string.h>

#include "probe.h"

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--probe")) return probe_main(argc, argv);
  fprintf(stderr, "pinpoold: only --probe is available in this build\n");
  return 2;
}
