/* proto_endpoint — the default socket path rules shared by daemon, library and CLI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "endpoint.h"
#include "pinpool_err.h"

static void pinpool_socket_variable_wins(void **state) {
  char buf[128];
  setenv("PINPOOL_SOCKET", "/tmp/some/where.sock", 1);
  setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
  assert_int_equal(endpoint_default_path(buf, sizeof buf), 0);
  assert_string_equal(buf, "/tmp/some/where.sock");
  setenv("PINPOOL_SOCKET", "relative.sock", 1); /* taken as given */
  assert_int_equal(endpoint_default_path(buf, sizeof buf), 0);
  assert_string_equal(buf, "relative.sock");
  unsetenv("PINPOOL_SOCKET");
  unsetenv("XDG_RUNTIME_DIR");
}

static void empty_pinpool_socket_is_ignored(void **state) {
  char buf[128], want[128];
  setenv("PINPOOL_SOCKET", "", 1);
  assert_int_equal(endpoint_default_path(buf, sizeof buf), 0);
  unsetenv("PINPOOL_SOCKET");
  assert_int_equal(endpoint_default_path(want, sizeof want), 0);
  assert_string_equal(buf, want);
}

static void root_uses_the_run_directory(void **state) {
  if (geteuid() != 0) {
    printf("skipped: needs root (euid %u) to see the root rule\n", (unsigned)geteuid());
    skip();
  }
  char buf[128];
  unsetenv("PINPOOL_SOCKET");
  setenv("XDG_RUNTIME_DIR", "/run/user/0", 1);
  assert_int_equal(endpoint_default_path(buf, sizeof buf), 0);
  assert_string_equal(buf, "/run/pinpool/pinpool.sock");
  unsetenv("XDG_RUNTIME_DIR");
}

/* The non-root rules, checked in a child that drops its euid when we are root. */
static void non_root_uses_xdg_runtime_dir_then_tmp(void **state) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char buf[128], want[128];
    if (geteuid() == 0 && seteuid(65534) != 0) _exit(10);
    unsigned uid = (unsigned)geteuid();
    unsetenv("PINPOOL_SOCKET");
    setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
    if (endpoint_default_path(buf, sizeof buf) != 0) _exit(11);
    if (strcmp(buf, "/run/user/4242/pinpool.sock")) _exit(12);
    setenv("XDG_RUNTIME_DIR", "run/user/relative", 1); /* relative: ignored */
    snprintf(want, sizeof want, "/tmp/pinpool-%u.sock", uid);
    if (endpoint_default_path(buf, sizeof buf) != 0 || strcmp(buf, want)) _exit(13);
    unsetenv("XDG_RUNTIME_DIR");
    if (endpoint_default_path(buf, sizeof buf) != 0 || strcmp(buf, want)) _exit(14);
    _exit(0);
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  if (WEXITSTATUS(st)) fail_msg("child failed at check %d", WEXITSTATUS(st));
}

static void path_too_long_for_sun_path_is_a_range_error(void **state) {
  char longp[200], buf[256];
  memset(longp, 'x', sizeof longp - 1);
  longp[0] = '/';
  longp[sizeof longp - 1] = 0;
  setenv("PINPOOL_SOCKET", longp, 1);
  strcpy(buf, "untouched");
  assert_int_equal(endpoint_default_path(buf, sizeof buf), PP_ERANGE);
  assert_string_equal(buf, "untouched");
  longp[107] = 0; /* 107 chars + NUL = sizeof sun_path: fits exactly */
  setenv("PINPOOL_SOCKET", longp, 1);
  assert_int_equal(endpoint_default_path(buf, sizeof buf), 0);
  assert_int_equal(strlen(buf), 107);
  longp[107] = 'x'; /* 108 chars + NUL: one too many */
  longp[108] = 0;
  setenv("PINPOOL_SOCKET", longp, 1);
  assert_int_equal(endpoint_default_path(buf, sizeof buf), PP_ERANGE);
  unsetenv("PINPOOL_SOCKET");
}

static void small_buffer_is_a_range_error(void **state) {
  char buf[8] = "keep";
  setenv("PINPOOL_SOCKET", "/tmp/eight.sock", 1);
  assert_int_equal(endpoint_default_path(buf, sizeof buf), PP_ERANGE);
  assert_string_equal(buf, "keep");
  char exact[16];
  assert_int_equal(endpoint_default_path(exact, sizeof exact), 0); /* 15 + NUL */
  assert_string_equal(exact, "/tmp/eight.sock");
  assert_int_equal(endpoint_default_path(NULL, 10), PP_EINVAL);
  unsetenv("PINPOOL_SOCKET");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pinpool_socket_variable_wins),
      cmocka_unit_test(empty_pinpool_socket_is_ignored),
      cmocka_unit_test(root_uses_the_run_directory),
      cmocka_unit_test(non_root_uses_xdg_runtime_dir_then_tmp),
      cmocka_unit_test(path_too_long_for_sun_path_is_a_range_error),
      cmocka_unit_test(small_buffer_is_a_range_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
