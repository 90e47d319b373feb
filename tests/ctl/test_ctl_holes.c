/*
 * test_ctl_holes.c — what pinpoolctl shows of pages punched out of the region, fed with
 * hand-made Stats snapshots: the status lines (only once something was punched), the
 * damaged mark of buffers and sessions, the JSON fields, and the map's 'x'.  No daemon
 * (tests/daemon/test_holes.c checks the daemon's side).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_map.h"
#include "ctl_view.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)

static char *render(void (*fn)(FILE *, const Pinpool__V1__Stats *),
                    const Pinpool__V1__Stats *s) {
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  fn(out, s);
  fclose(out);
  return text;
}

static void view_all_buffers(FILE *out, const Pinpool__V1__Stats *s) {
  ctl_view_buffers(out, s, NULL);
}

static void status_says_nothing_of_holes_until_a_page_was_punched(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  char *text;
  (void)state;

  s.region_size = 16 * MiB;
  text = render(ctl_view_status, &s);
  assert_null(strstr(text, "punched"));
  assert_null(strstr(text, "quarantined"));
  free(text);

  s.punched_bytes = 16 * MiB;
  s.lost_bytes = 2 * MiB;
  s.quarantined_bytes = MiB;
  s.damaged_buffers = 3;
  s.objects_set_aside = 16;
  text = render(ctl_view_status, &s);
  assert_non_null(strstr(text, "punched out (so far)           16 MiB (16777216 bytes)\n"));
  assert_non_null(strstr(text, "lost now                       2 MiB (2097152 bytes)\n"));
  assert_non_null(strstr(text, "quarantined                    1 MiB (1048576 bytes)\n"));
  assert_non_null(strstr(text, "damaged buffers                3\n"));
  assert_non_null(strstr(text, "objects set aside              16\n"));
  free(text);
}

static void buffers_and_clients_mark_what_lost_contents(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__BufferInfo ok = PINPOOL__V1__BUFFER_INFO__INIT,
                          hit = PINPOOL__V1__BUFFER_INFO__INIT;
  Pinpool__V1__BufferInfo *bufs[] = {&ok, &hit};
  Pinpool__V1__ClientInfo c = PINPOOL__V1__CLIENT_INFO__INIT;
  Pinpool__V1__ClientInfo *clients[] = {&c};
  char *text, *row;
  (void)state;

  ok.handle = 1;
  ok.size = 64 * KiB;
  ok.name = (char *)"~0/whole";
  hit.handle = 2;
  hit.size = 64 * KiB;
  hit.name = (char *)"~0/hit";
  hit.damaged = true;
  hit.lost_bytes = 4 * KiB;
  s.buffers = bufs;
  s.n_buffers = 2;
  s.nr_buffers = 2;
  text = render(view_all_buffers, &s);
  row = strstr(text, "~0/hit");
  assert_non_null(row);
  assert_memory_equal(row, "~0/hit  DAMAGED (4 KiB lost now)\n", 33);
  row = strstr(text, "~0/whole");
  assert_non_null(row);
  assert_memory_equal(row, "~0/whole\n", 9);
  free(text);

  c.session_id = 7;
  c.damaged_buffers = 2;
  s.clients = clients;
  s.n_clients = 1;
  s.nr_clients = 1;
  text = render(ctl_view_clients, &s);
  assert_non_null(strstr(text, "connected, 2 damaged buffers\n"));
  free(text);
}

static void json_carries_every_hole_field(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__BufferInfo hit = PINPOOL__V1__BUFFER_INFO__INIT;
  Pinpool__V1__BufferInfo *bufs[] = {&hit};
  Pinpool__V1__ClientInfo c = PINPOOL__V1__CLIENT_INFO__INIT;
  Pinpool__V1__ClientInfo *clients[] = {&c};
  json_object *o, *v, *e;
  (void)state;

  s.punched_bytes = 5;
  s.lost_bytes = 4;
  s.quarantined_bytes = 3;
  s.damaged_buffers = 2;
  s.objects_set_aside = 1;
  o = ctl_json_status(&s);
  assert_non_null(o);
  assert_true(json_object_object_get_ex(o, "punched_bytes", &v));
  assert_int_equal(json_object_get_uint64(v), 5);
  assert_true(json_object_object_get_ex(o, "lost_bytes", &v));
  assert_int_equal(json_object_get_uint64(v), 4);
  assert_true(json_object_object_get_ex(o, "quarantined_bytes", &v));
  assert_int_equal(json_object_get_uint64(v), 3);
  assert_true(json_object_object_get_ex(o, "damaged_buffers", &v));
  assert_int_equal(json_object_get_uint64(v), 2);
  assert_true(json_object_object_get_ex(o, "objects_set_aside", &v));
  assert_int_equal(json_object_get_uint64(v), 1);
  json_object_put(o);

  hit.damaged = true;
  hit.lost_bytes = 8192;
  s.buffers = bufs;
  s.n_buffers = 1;
  o = ctl_json_buffers(&s, NULL);
  assert_true(json_object_object_get_ex(o, "buffers", &v));
  e = json_object_array_get_idx(v, 0);
  assert_true(json_object_object_get_ex(e, "damaged", &v));
  assert_true(json_object_get_boolean(v));
  assert_true(json_object_object_get_ex(e, "lost_bytes", &v));
  assert_int_equal(json_object_get_uint64(v), 8192);
  json_object_put(o);

  c.damaged_buffers = 3;
  s.clients = clients;
  s.n_clients = 1;
  o = ctl_json_clients(&s);
  assert_true(json_object_object_get_ex(o, "clients", &v));
  e = json_object_array_get_idx(v, 0);
  assert_true(json_object_object_get_ex(e, "damaged_buffers", &v));
  assert_int_equal(json_object_get_uint64(v), 3);
  json_object_put(o);
}

static void map_draws_quarantined_blocks_as_x(void **state) {
  Pinpool__V1__Stats s = PINPOOL__V1__STATS__INIT;
  Pinpool__V1__MapBlock b[3] = {PINPOOL__V1__MAP_BLOCK__INIT, PINPOOL__V1__MAP_BLOCK__INIT,
                                PINPOOL__V1__MAP_BLOCK__INIT};
  Pinpool__V1__MapBlock *map[] = {&b[0], &b[1], &b[2]};
  char *text = NULL;
  size_t len = 0;
  ctl_map_t m;
  (void)state;

  s.region_size = 32 * KiB;
  s.min_block = 4096;
  b[0].offset = 0;
  b[0].size = 8 * KiB;
  b[0].kind = PINPOOL__V1__MAP_BLOCK__KIND__BUFFER;
  b[1].offset = 8 * KiB;
  b[1].size = 8 * KiB;
  b[1].kind = PINPOOL__V1__MAP_BLOCK__KIND__LOST;
  b[2].offset = 16 * KiB;
  b[2].size = 16 * KiB;
  b[2].kind = PINPOOL__V1__MAP_BLOCK__KIND__FREE;
  s.map = map;
  s.n_map = 3;
  assert_int_equal(ctl_map_build(&s, 80, 16, &m), 0);
  assert_string_equal(m.cells, "BBxx....");
  FILE *out = open_memstream(&text, &len);
  ctl_view_map(out, &m);
  fclose(out);
  assert_non_null(strstr(text, "'x' lost pages (quarantined)"));
  free(text);
  json_object *o = ctl_json_map(&s, &m), *v, *e;
  assert_true(json_object_object_get_ex(o, "blocks", &v));
  e = json_object_array_get_idx(v, 1);
  assert_true(json_object_object_get_ex(e, "kind", &v));
  assert_string_equal(json_object_get_string(v), "lost");
  json_object_put(o);
  ctl_map_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(status_says_nothing_of_holes_until_a_page_was_punched),
      cmocka_unit_test(buffers_and_clients_mark_what_lost_contents),
      cmocka_unit_test(json_carries_every_hole_field),
      cmocka_unit_test(map_draws_quarantined_blocks_as_x),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
