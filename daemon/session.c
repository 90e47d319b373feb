/*
 * session.c — who a client is, and what it holds.
 *
 * Identity: the server reads SO_PEERCRED when it accepts a connection and creates the
 * session from it; nothing the client sends about itself (Hello.client_name) is trusted
 * beyond display.  Each session gets an id (monotonic, never reused, what operators see)
 * and a 16-byte random token from getrandom(2): the token is the session's claim ticket
 * for restart survival: after a daemon restart a client presents it in Hello
 * and re-claims what it held.
 *
 * Holdings: two private hash maps (u64map.c), so that a session can free only its own and
 * a dead session's holdings can be handed back at once:
 *   holds  buffer handle -> reference count (alloc = 1, every lookup +1);
 *   objs   object offset -> cache id.
 * Together with the pool's buffer table (offset, order, name), these maps *are* the claim
 * list a restarted daemon needs: (offset, order) per buffer, (offset, cache) per object,
 * keyed by session token.  Nothing about ownership lives in the shared region.
 *
 * Admin: root, or the peer's primary gid, or any supplementary group of the peer uid's
 * user (getgrouplist), equal to --admin-group.  Decided once at accept: group changes take
 * effect on reconnect, as with file permissions and open fds.
 *
 * Locks: none; sessions belong to the loop thread.
 */
#include "session.h"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <errno.h>

#include "pinpool_err.h"

static uint64_t session_next_id = 1;

static uint64_t now_unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int session_create(pid_t pid, uid_t uid, gid_t gid, session_t **ret) {
  session_t *s = calloc(1, sizeof *s);
  size_t got = 0;

  if (!s) return PP_ENOMEM;
  while (got < SESSION_TOKEN_LEN) {
    ssize_t n = getrandom(s->token + got, SESSION_TOKEN_LEN - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      free(s);
      return PP_EOS;
    }
    got += (size_t)n;
  }
  s->id = session_next_id++;
  s->pid = pid;
  s->uid = uid;
  s->gid = gid;
  s->connected_ms = now_unix_ms();
  u64map_init(&s->holds);
  u64map_init(&s->objs);
  *ret = s;
  return 0;
}

void session_destroy(session_t *s) {
  if (!s) return;
  u64map_fini(&s->holds);
  u64map_fini(&s->objs);
  free(s);
}

size_t session_utf8_prefix(const char *str, size_t max) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < max && s[i]) {
    unsigned c = s[i];
    size_t n = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    uint32_t cp;
    if (!n || i + n > max) break;
    cp = n == 1 ? c : c & (0x7fu >> n);
    for (size_t k = 1; k < n; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return i;
      cp = cp << 6 | (s[i + k] & 0x3fu);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF are not UTF-8. */
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
      break;
    i += n;
  }
  return i;
}

void session_set_name(session_t *s, const char *name) {
  size_t n = name ? session_utf8_prefix(name, SESSION_NAME_MAX) : 0;
  for (size_t i = 0; i < n; i++)
    s->name[i] = ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) ? '?' : name[i];
  s->name[n] = '\0';
}

bool session_is_admin(uid_t uid, gid_t gid, gid_t admin_gid) {
  struct passwd pw, *pwp = NULL;
  char buf[4096];
  gid_t groups[256];
  int ngroups = (int)(sizeof groups / sizeof groups[0]);

  if (uid == 0) return true;
  if (admin_gid == (gid_t)-1) return false;
  if (gid == admin_gid) return true;
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &pwp) != 0 || !pwp) return false;
  /* On overflow getgrouplist fills what fits and returns -1: the first 256 groups are
   * still checked, which errs on the side of refusing. */
  getgrouplist(pw.pw_name, gid, groups, &ngroups);
  if (ngroups > (int)(sizeof groups / sizeof groups[0]))
    ngroups = (int)(sizeof groups / sizeof groups[0]);
  for (int i = 0; i < ngroups; i++)
    if (groups[i] == admin_gid) return true;
  return false;
}
