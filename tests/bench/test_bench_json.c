/*
 * test_bench_json.c — `pinpool-bench --json all` writes JSON Lines: every line of stdout is
 * exactly one JSON object, one per benchmark, in order (buddy, slab, scale, ipc, load, conns,
 * restart), each with its results and ratios; load's results name their client count and
 * latency percentiles.  A tiny run (one repetition of a few hundred operations, load's
 * points 50 ms each) keeps it within a few seconds; the figures themselves are not judged
 * here (speed belongs to the benchmark, not to a test).  Skips, saying why, when
 * pinpool-bench is not built (no DPDK).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

static char *slurp(int fd) {
  off_t len = lseek(fd, 0, SEEK_END);
  char *buf = calloc(1, (size_t)(len > 0 ? len : 0) + 1);
  if (buf && len > 0 && pread(fd, buf, (size_t)len, 0) != len) buf[0] = '\0';
  close(fd);
  return buf;
}

static json_object *get(json_object *o, const char *key) {
  json_object *v;
  if (!json_object_object_get_ex(o, key, &v))
    fail_msg("no '%s' in %s", key, json_object_to_json_string(o));
  return v;
}

static void bench_all_json_is_one_object_per_line_per_benchmark(void **state) {
  static const char *const want[] = {"buddy", "slab",  "scale",  "ipc",
                                     "load",  "conns", "restart"};
  const char *dir = getenv("PP_BIN_DIR");
  char bin[512], *out, *line, *save = NULL;
  int fd = memfd_create("bench-out", 0), st;
  size_t n = 0;

  snprintf(bin, sizeof bin, "%s/pinpool-bench", dir && *dir ? dir : ".");
  if (access(bin, X_OK) != 0) {
    print_message("skipped: %s is not built (it needs DPDK: make bench installs libdpdk-dev)\n",
                  bin);
    skip();
  }
  assert_true(fd >= 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fd, STDOUT_FILENO);
    execl(bin, bin, "--json", "--reps", "1", "--iters", "200", "--threads", "2", "--ms", "50",
          "all", (char *)NULL);
    _exit(127);
  }
  assert_int_equal(waitpid(pid, &st, 0), pid);
  out = slurp(fd);
  assert_non_null(out);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    fail_msg("pinpool-bench exited with status 0x%x; stdout:\n%s", st, out);
  assert_true(strlen(out) > 0 && out[strlen(out) - 1] == '\n');

  for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
    json_tokener *tok = json_tokener_new();
    json_object *o = json_tokener_parse_ex(tok, line, (int)strlen(line) + 1);
    if (!o || json_tokener_get_error(tok) != json_tokener_success ||
        json_tokener_get_parse_end(tok) < strlen(line))
      fail_msg("line %zu is not one JSON object:\n%s", n + 1, line);
    json_tokener_free(tok);
    assert_true(json_object_is_type(o, json_type_object));
    assert_true(n < sizeof want / sizeof want[0]);
    assert_string_equal(json_object_get_string(get(o, "bench")), want[n]);
    json_object *results = get(o, "results");
    assert_true(json_object_is_type(results, json_type_array));
    assert_true(json_object_array_length(results) > 0);
    for (size_t i = 0; i < json_object_array_length(results); i++) {
      json_object *r = json_object_array_get_idx(results, i);
      json_object *ns;
      assert_true(strlen(json_object_get_string(get(r, "name"))) > 0);
      /* Timings carry ns_per_op; conns reports memory (kib, bytes) and latencies instead. */
      if (json_object_object_get_ex(r, "ns_per_op", &ns))
        assert_true(json_object_get_double(ns) >= 0);
      if (!strcmp(want[n], "load")) { /* every point: 1, 8 or 64 clients, p50 <= p99 */
        int clients = json_object_get_int(get(r, "clients"));
        assert_true(clients == 1 || clients == 8 || clients == 64);
        assert_true(json_object_get_double(get(r, "p50_ns")) > 0);
        assert_true(json_object_get_double(get(r, "p50_ns")) <=
                    json_object_get_double(get(r, "p99_ns")));
      }
    }
    if (!strcmp(want[n], "load")) /* pinpool and echo at 3 client counts */
      assert_int_equal(json_object_array_length(results), 6);
    assert_true(json_object_is_type(get(o, "ratios"), json_type_array));
    json_object_put(o);
  }
  assert_int_equal(n, sizeof want / sizeof want[0]);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(bench_all_json_is_one_object_per_line_per_benchmark),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
