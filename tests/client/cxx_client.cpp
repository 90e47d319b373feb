// cxx_client.cpp — a C++ program against the *installed* libpinpool (install_test.sh builds
// it with g++ and pkg-config): every function of pinpool.h and pinpool_err.h must link
// from C++ (extern "C"), and the error table must speak the same words there.  It exits 0
// when everything holds, else with the number of the check that failed.
#include <pinpool.h>

#include <cstdio>
#include <cstring>

static int check(int n, bool ok, const char *what) {
  if (!ok) std::fprintf(stderr, "cxx_client: check %d failed: %s\n", n, what);
  return ok ? 0 : n;
}

int main(int argc, char **argv) {
  const char *missing = argc > 1 ? argv[1] : "/nonexistent/pinpool-cxx.sock";
  pp_client *c = nullptr;
  int rc = pp_connect(missing, "cxx-client", &c);
  int bad = 0;

  if (!bad)
    bad = check(1, std::strcmp(pp_err_name(PP_EACCES), "PP_EACCES") == 0, "pp_err_name");
  if (!bad)
    bad = check(
        2,
        std::strcmp(pp_strerror(PP_ENOPRIVMEM), "out of private memory (malloc failed)") == 0,
        "pp_strerror");
  if (!bad)
    bad = check(3, std::strcmp(pp_status_name(PP_ECONNECT), "CONNECT_FAILED") == 0,
                "pp_status_name");
  if (!bad) bad = check(4, rc == PP_ECONNECT && c == nullptr, "pp_connect to a missing socket");
  // The options struct and its initializer compile as C++ (no narrowing), and reach the
  // library: a flag it does not know is refused before any connect.
  pp_connect_options o = PP_CONNECT_OPTIONS_INIT;
  o.flags = PP_CONNECT_NO_RECLAIM;
  if (!bad)
    bad = check(5, pp_connect_opts(missing, "cxx-client", &o, &c) == PP_ECONNECT,
                "pp_connect_opts with PP_CONNECT_NO_RECLAIM");
  o.flags = 0x80;
  if (!bad)
    bad = check(6, pp_connect_opts(missing, "cxx-client", &o, &c) == PP_EINVAL && c == nullptr,
                "pp_connect_opts with an unknown flag");
  if (!bad) bad = check(7, pp_reclaims(nullptr) == 0, "pp_reclaims");
  if (!bad)
    std::printf("C++ client: pp_connect(%s): %s (%s)\n", missing, pp_strerror(rc),
                pp_err_name(rc));
  return bad;
}
