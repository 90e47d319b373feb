/*
 * proto_rpc — the client side of a connection (proto/rpc.c), which libpinpool and
 * pinpoolctl share: a Request carries its body in the oneof member the body case names,
 * the echoed id and the status are checked, the daemon's message is kept, a broken stream
 * stays broken, and connect() refusals are sorted into "not allowed" and "nobody there".
 *
 * The daemon is played by the other end of a socketpair: a test writes the reply into the
 * socket before the call (the kernel holds it; requests and replies are small), then reads
 * the request the call sent.  No threads, no timing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "frame.h"
#include "rpc.h"

typedef struct fixture {
  rpc_t r;
  int peer; /* the daemon's end */
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  int sv[2];
  if (!f || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
  rpc_init(&f->r, 5000);
  f->r.fd = sv[0];
  f->peer = sv[1];
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  rpc_close(&f->r);
  if (f->peer >= 0) close(f->peer);
  free(f);
  return 0;
}

/* The daemon's reply, queued before the call that will read it. */
static void reply(fixture_t *f, uint64_t id, int status, const char *message,
                  Pinpool__V1__Response__BodyCase body, int pass_fd) {
  Pinpool__V1__Response r = PINPOOL__V1__RESPONSE__INIT;
  Pinpool__V1__ShrinkResult sr = PINPOOL__V1__SHRINK_RESULT__INIT;
  Pinpool__V1__Welcome w = PINPOOL__V1__WELCOME__INIT;
  r.id = id;
  r.status = (Pinpool__V1__Status)status;
  r.message = (char *)(message ? message : "");
  if (body == PINPOOL__V1__RESPONSE__BODY_SHRINK) {
    r.body_case = body;
    r.shrink = &sr;
  } else if (body == PINPOOL__V1__RESPONSE__BODY_WELCOME) {
    w.protocol_version = PROTOCOL_VERSION;
    w.region_size = 1 << 20;
    w.max_frame = 8192;
    r.body_case = body;
    r.welcome = &w;
  }
  assert_int_equal(frame_send(f->peer, &r.base, FRAME_MAX_LIMIT, pass_fd), 0);
}

/* The next request the call sent; NULL when there is none. */
static Pinpool__V1__Request *sent_request(fixture_t *f) {
  uint8_t hdr[4], *buf;
  ssize_t n = recv(f->peer, hdr, 4, MSG_DONTWAIT | MSG_WAITALL);
  if (n != 4) return NULL;
  uint32_t len = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
  buf = malloc(len);
  assert_non_null(buf);
  assert_int_equal(recv(f->peer, buf, len, MSG_WAITALL), (ssize_t)len);
  Pinpool__V1__Request *req = frame_unpack_request(buf, len, FRAME_REQUEST_BUDGET(len));
  free(buf);
  assert_non_null(req);
  return req;
}

static void shrink_call(fixture_t *f, int want_rc) {
  Pinpool__V1__ShrinkRequest body = PINPOOL__V1__SHRINK_REQUEST__INIT;
  Pinpool__V1__Response *resp = NULL;
  int rc = rpc_call(&f->r, PINPOOL__V1__REQUEST__BODY_SHRINK, &body.base,
                    PINPOOL__V1__RESPONSE__BODY_SHRINK, &resp, NULL);
  assert_int_equal(rc, want_rc);
  if (rc == 0) {
    assert_non_null(resp);
    frame_free_response(resp);
  } else {
    assert_null(resp);
  }
}

static void every_request_body_travels_in_the_member_its_case_names(void **state) {
  fixture_t *f = *state;
  const ProtobufCMessageDescriptor *d = &pinpool__v1__request__descriptor;
  unsigned members = 0;

  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *fd = &d->fields[i];
    const ProtobufCMessageDescriptor *md = fd->descriptor;
    alignas(max_align_t) uint8_t body[512];
    Pinpool__V1__Response *resp = NULL;
    if (!(fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)) continue;
    members++;
    assert_true(md->sizeof_message <= sizeof body);
    md->message_init((ProtobufCMessage *)body);
    uint64_t id = f->r.next_id;
    reply(f, id, 0, NULL, PINPOOL__V1__RESPONSE__BODY__NOT_SET, -1);
    assert_int_equal(rpc_call(&f->r, (Pinpool__V1__Request__BodyCase)fd->id,
                              (ProtobufCMessage *)body, PINPOOL__V1__RESPONSE__BODY__NOT_SET,
                              &resp, NULL),
                     0);
    frame_free_response(resp);
    Pinpool__V1__Request *req = sent_request(f);
    assert_non_null(req);
    assert_int_equal(req->id, id);
    assert_int_equal(req->body_case, fd->id);
    ProtobufCMessage *member;
    memcpy(&member, (char *)req + fd->offset, sizeof member);
    assert_non_null(member);
    assert_ptr_equal(member->descriptor, md);
    frame_free_request(req);
  }
  assert_int_equal(members, 14); /* hello .. attach_pool: a new request type shows up here */
}

static void a_body_of_another_type_is_refused_and_nothing_is_sent(void **state) {
  fixture_t *f = *state;
  Pinpool__V1__Free fr = PINPOOL__V1__FREE__INIT;
  Pinpool__V1__Response *resp = NULL;

  assert_int_equal(rpc_call(&f->r, PINPOOL__V1__REQUEST__BODY_ALLOC, &fr.base,
                            PINPOOL__V1__RESPONSE__BODY_BUFFER, &resp, NULL),
                   PP_EINVAL);
  assert_int_equal(rpc_call(&f->r, (Pinpool__V1__Request__BodyCase)1 /* id, not a body */,
                            &fr.base, PINPOOL__V1__RESPONSE__BODY__NOT_SET, &resp, NULL),
                   PP_EINVAL);
  assert_int_equal(rpc_call(&f->r, (Pinpool__V1__Request__BodyCase)99, &fr.base,
                            PINPOOL__V1__RESPONSE__BODY__NOT_SET, &resp, NULL),
                   PP_EINVAL);
  assert_null(resp);
  assert_null(sent_request(f));
  assert_int_equal(f->r.next_id, 1);
  assert_int_equal(f->r.broken, 0);
}

static void a_refusal_keeps_the_daemons_message_and_the_stream(void **state) {
  fixture_t *f = *state;

  reply(f, 1, -PP_ENOENT, "no handle 7 in this session", PINPOOL__V1__RESPONSE__BODY__NOT_SET,
        -1);
  shrink_call(f, PP_ENOENT);
  assert_string_equal(f->r.why, "no handle 7 in this session");
  /* Without a message, the code's own words. */
  reply(f, 2, -PP_EPERM, NULL, PINPOOL__V1__RESPONSE__BODY__NOT_SET, -1);
  shrink_call(f, PP_EPERM);
  assert_string_equal(f->r.why, pp_strerror(PP_EPERM));
  /* The stream is in step: the next call is answered. */
  reply(f, 3, 0, NULL, PINPOOL__V1__RESPONSE__BODY_SHRINK, -1);
  shrink_call(f, 0);
  assert_int_equal(f->r.broken, 0);
}

static void a_status_outside_the_table_or_a_wrong_body_is_a_protocol_error(void **state) {
  fixture_t *f = *state;

  reply(f, 1, 99, "from the future", PINPOOL__V1__RESPONSE__BODY__NOT_SET, -1);
  shrink_call(f, PP_EPROTO);
  reply(f, 2, 0, NULL, PINPOOL__V1__RESPONSE__BODY_WELCOME, -1);
  shrink_call(f, PP_EPROTO);
  assert_non_null(strstr(f->r.why, "unexpected reply"));
  /* Both were answers to the right request: the stream carries on. */
  reply(f, 3, 0, NULL, PINPOOL__V1__RESPONSE__BODY_SHRINK, -1);
  shrink_call(f, 0);
}

static void a_reply_to_another_request_breaks_the_stream_for_good(void **state) {
  fixture_t *f = *state;
  Pinpool__V1__Request *req;

  reply(f, 6, 0, NULL, PINPOOL__V1__RESPONSE__BODY_SHRINK, -1);
  shrink_call(f, PP_EPROTO);
  assert_non_null(strstr(f->r.why, "request 6 arrived for request 1"));
  reply(f, 2, 0, NULL, PINPOOL__V1__RESPONSE__BODY_SHRINK, -1);
  shrink_call(f, PP_EPROTO); /* at once, without I/O */
  req = sent_request(f);
  assert_non_null(req);
  frame_free_request(req);
  assert_null(sent_request(f)); /* only the first call went out */
}

static void a_refusal_of_an_unreadable_frame_is_reported_and_ends_the_stream(void **state) {
  fixture_t *f = *state;

  /* The daemon answers a frame it could not decode with id 0, then closes. */
  reply(f, 0, -PP_EPROTO, "undecodable frame", PINPOOL__V1__RESPONSE__BODY__NOT_SET, -1);
  shrink_call(f, PP_EPROTO);
  assert_string_equal(f->r.why, "undecodable frame");
  assert_int_equal(f->r.broken, PP_EPROTO);
}

static void a_closed_connection_is_disconnected_for_good(void **state) {
  fixture_t *f = *state;

  close(f->peer);
  f->peer = -1;
  shrink_call(f, PP_EDISCONNECTED);
  assert_string_equal(f->r.why, "pinpoold closed the connection");
  shrink_call(f, PP_EDISCONNECTED);
}

static void no_reply_within_the_timeout_is_an_io_error(void **state) {
  fixture_t *f = *state;

  f->r.timeout_ms = 20;
  shrink_call(f, PP_EIO);
  assert_non_null(strstr(f->r.why, "no answer within 20 ms"));
  assert_int_equal(f->r.broken, PP_EIO);
}

static void a_request_too_big_for_a_frame_fails_alone(void **state) {
  fixture_t *f = *state;
  uint64_t offs[200];
  Pinpool__V1__CacheFree cf = PINPOOL__V1__CACHE_FREE__INIT;
  Pinpool__V1__Response *resp = NULL;

  for (size_t i = 0; i < 200; i++)
    offs[i] = UINT64_MAX - i; /* 10 bytes each: 2000 bytes, past a 256-byte frame */
  cf.n_offsets = 200;
  cf.offsets = offs;
  f->r.send_max = 256;
  assert_int_equal(rpc_call(&f->r, PINPOOL__V1__REQUEST__BODY_CACHE_FREE, &cf.base,
                            PINPOOL__V1__RESPONSE__BODY__NOT_SET, &resp, NULL),
                   PP_ERANGE);
  assert_null(sent_request(f));
  assert_int_equal(f->r.broken, 0);
  reply(f, f->r.next_id, 0, NULL, PINPOOL__V1__RESPONSE__BODY_SHRINK, -1);
  shrink_call(f, 0);
}

static void hello_adopts_the_welcome_frame_limit_and_hands_over_the_memfd(void **state) {
  fixture_t *f = *state;
  Pinpool__V1__Response *resp = NULL;
  int memfd = memfd_create("rpc-test", MFD_CLOEXEC), got = -1;

  assert_true(memfd >= 0);
  reply(f, 1, 0, NULL, PINPOOL__V1__RESPONSE__BODY_WELCOME, memfd);
  close(memfd);
  assert_int_equal(rpc_hello(&f->r, "t\xc3\xa9st", &resp, &got), 0);
  assert_true(got >= 0);
  close(got);
  assert_int_equal(resp->welcome->region_size, 1 << 20);
  frame_free_response(resp);
  assert_int_equal(f->r.send_max, 8192);
  assert_int_equal(f->r.recv_max, 8192);
  Pinpool__V1__Request *req = sent_request(f);
  assert_int_equal(req->body_case, PINPOOL__V1__REQUEST__BODY_HELLO);
  assert_int_equal(req->hello->protocol_version, PROTOCOL_VERSION);
  assert_string_equal(req->hello->client_name, "t\xc3\xa9st");
  frame_free_request(req);
}

static void hello_cuts_a_long_name_on_a_character_boundary(void **state) {
  fixture_t *f = *state;
  Pinpool__V1__Response *resp = NULL;
  char name[100];

  /* 63 ASCII bytes, then a two-byte character that would straddle byte 64. */
  memset(name, 'n', 63);
  strcpy(name + 63, "\xc3\xa9tail");
  reply(f, 1, 0, NULL, PINPOOL__V1__RESPONSE__BODY_WELCOME, -1);
  assert_int_equal(rpc_hello(&f->r, name, &resp, NULL), 0);
  frame_free_response(resp);
  Pinpool__V1__Request *req = sent_request(f);
  assert_int_equal(strlen(req->hello->client_name), 63);
  frame_free_request(req);
}

static void hello_without_the_memfd_it_needs_is_a_protocol_error(void **state) {
  fixture_t *f = *state;
  Pinpool__V1__Response *resp = NULL;
  int got = 1234;

  reply(f, 1, 0, NULL, PINPOOL__V1__RESPONSE__BODY_WELCOME, -1);
  assert_int_equal(rpc_hello(&f->r, "x", &resp, &got), PP_EPROTO);
  assert_null(resp);
  assert_int_equal(got, 1234);
}

static void hello_refused_for_the_version_says_so(void **state) {
  fixture_t *f = *state;
  Pinpool__V1__Response *resp = NULL;

  reply(f, 1, -PP_EVERSION, "this daemon speaks version 1",
        PINPOOL__V1__RESPONSE__BODY__NOT_SET, -1);
  assert_int_equal(rpc_hello(&f->r, "x", &resp, NULL), PP_EVERSION);
  assert_string_equal(f->r.why, "this daemon speaks version 1");
}

/* ---- connect ----------------------------------------------------------------------- */

static int listen_at(const char *path, bool do_listen) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  assert_true(fd >= 0);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  if (do_listen) assert_int_equal(listen(fd, 4), 0);
  return fd;
}

static void connect_tells_nobody_there_from_bad_paths(void **state) {
  char dir[] = "/tmp/pp-rpc-XXXXXX", path[128], longpath[200];
  rpc_t r;

  assert_non_null(mkdtemp(dir));
  rpc_init(&r, -1);
  snprintf(path, sizeof path, "%s/missing.sock", dir);
  assert_int_equal(rpc_connect(&r, path), PP_ECONNECT);
  assert_int_equal(errno, ENOENT);
  assert_non_null(strstr(r.why, "No such file or directory"));

  int lfd = listen_at(path, false); /* bound, nobody listening */
  assert_int_equal(rpc_connect(&r, path), PP_ECONNECT);
  assert_int_equal(errno, ECONNREFUSED);
  close(lfd);
  unlink(path);

  memset(longpath, 'a', sizeof longpath - 1);
  longpath[sizeof longpath - 1] = '\0';
  assert_int_equal(rpc_connect(&r, longpath), PP_EINVAL);
  assert_int_equal(rpc_connect(&r, ""), PP_EINVAL);
  assert_int_equal(r.fd, -1);
  rmdir(dir);
}

static void connect_refused_for_permissions_is_eacces(void **state) {
  char dir[] = "/tmp/pp-rpc-XXXXXX", path[128];
  int st;

  if (geteuid() != 0) {
    print_message("skipped: becoming nobody (uid 65534) needs root\n");
    skip();
  }
  assert_non_null(mkdtemp(dir));
  chmod(dir, 0755);
  snprintf(path, sizeof path, "%s/private.sock", dir);
  int lfd = listen_at(path, true);
  assert_int_equal(chmod(path, 0660), 0); /* root's group only */

  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rpc_t r;
    if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) _exit(125);
    rpc_init(&r, -1);
    int rc = rpc_connect(&r, path);
    _exit(rc == PP_EACCES && errno == EACCES && strstr(r.why, "Permission denied") ? 0 : 1);
  }
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  close(lfd);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(every_request_body_travels_in_the_member_its_case_names,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_body_of_another_type_is_refused_and_nothing_is_sent,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_refusal_keeps_the_daemons_message_and_the_stream, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          a_status_outside_the_table_or_a_wrong_body_is_a_protocol_error, setup, teardown),
      cmocka_unit_test_setup_teardown(a_reply_to_another_request_breaks_the_stream_for_good,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(
          a_refusal_of_an_unreadable_frame_is_reported_and_ends_the_stream, setup, teardown),
      cmocka_unit_test_setup_teardown(a_closed_connection_is_disconnected_for_good, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(no_reply_within_the_timeout_is_an_io_error, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_request_too_big_for_a_frame_fails_alone, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(
          hello_adopts_the_welcome_frame_limit_and_hands_over_the_memfd, setup, teardown),
      cmocka_unit_test_setup_teardown(hello_cuts_a_long_name_on_a_character_boundary, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(hello_without_the_memfd_it_needs_is_a_protocol_error,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(hello_refused_for_the_version_says_so, setup, teardown),
      cmocka_unit_test(connect_tells_nobody_there_from_bad_paths),
      cmocka_unit_test(connect_refused_for_permissions_is_eacces),
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
