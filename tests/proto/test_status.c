/* proto_status — the wire Status enum and the PP_ERRNO_MAP error table agree one for one,
 * and libpinpool's allocation flags are the wire's AllocFlag values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frame.h"
#include "pinpool.h"

struct row {
  const char *status;
  int num;
  int code;
};
static const struct row rows[] = {
#define ROW(suffix, num, status, msg) {#status, num, PP_##suffix},
    PP_ERRNO_MAP(ROW)
#undef ROW
};
enum { NROWS = sizeof rows / sizeof rows[0] };

static void every_table_row_is_a_status_with_the_same_number(void **state) {
  const ProtobufCEnumDescriptor *d = &pinpool__v1__status__descriptor;
  for (int i = 0; i < NROWS; i++) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(d, rows[i].status);
    if (!v) fail_msg("table row %s has no Status value", rows[i].status);
    if (v->value != rows[i].num)
      fail_msg("%s: table says %d, proto says %d", rows[i].status, rows[i].num, v->value);
    assert_int_equal(rows[i].code, -rows[i].num);
  }
}

static void every_status_is_a_table_row_with_the_same_number(void **state) {
  const ProtobufCEnumDescriptor *d = &pinpool__v1__status__descriptor;
  assert_int_equal(d->n_values, NROWS + 1); /* + OK */
  for (unsigned i = 0; i < d->n_values; i++) {
    const ProtobufCEnumValue *v = &d->values[i];
    if (v->value == 0) {
      assert_string_equal(v->name, "OK");
      continue;
    }
    int found = 0;
    for (int j = 0; j < NROWS; j++)
      if (!strcmp(rows[j].status, v->name)) {
        if (rows[j].num != v->value)
          fail_msg("%s: proto says %d, table says %d", v->name, v->value, rows[j].num);
        found = 1;
      }
    if (!found) fail_msg("Status %s = %d is not in PP_ERRNO_MAP", v->name, v->value);
  }
}

static void error_max_is_one_past_the_largest_number(void **state) {
  int max = 0;
  for (int i = 0; i < NROWS; i++)
    if (rows[i].num > max) max = rows[i].num;
  assert_int_equal(PP__ERR_MAX, max + 1);
}

/* pp_alloc passes its flags to the daemon as they are: PP_CONTIGUOUS and PP_ZERO must be
 * the AllocFlag values, and every AllocFlag must have its PP_ flag. */
static void libpinpool_alloc_flags_are_the_wire_alloc_flags(void **state) {
  const ProtobufCEnumDescriptor *d = &pinpool__v1__alloc_flag__descriptor;
  const ProtobufCEnumValue *v;

  assert_int_equal(PP_CONTIGUOUS, PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_CONTIGUOUS);
  assert_int_equal(PP_ZERO, PINPOOL__V1__ALLOC_FLAG__ALLOC_FLAG_ZERO);
  v = protobuf_c_enum_descriptor_get_value_by_name(d, "ALLOC_FLAG_CONTIGUOUS");
  assert_non_null(v);
  assert_int_equal(v->value, PP_CONTIGUOUS);
  v = protobuf_c_enum_descriptor_get_value_by_name(d, "ALLOC_FLAG_ZERO");
  assert_non_null(v);
  assert_int_equal(v->value, PP_ZERO);
  /* NONE, CONTIGUOUS, ZERO: a new flag in the schema needs a PP_ flag (and a test here). */
  assert_int_equal(d->n_values, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_table_row_is_a_status_with_the_same_number),
      cmocka_unit_test(every_status_is_a_table_row_with_the_same_number),
      cmocka_unit_test(error_max_is_one_past_the_largest_number),
      cmocka_unit_test(libpinpool_alloc_flags_are_the_wire_alloc_flags),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
