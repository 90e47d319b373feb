/* probe.h — `pinpoold --probe`: what region would this machine give?  (shm/region) */
#ifndef PP_PROBE_H
#define PP_PROBE_H
/* argv as given to pinpoold (--probe [--size S] [--page-size P]); returns the exit status. */
int probe_main(int argc, char **argv);
#endif
