/*
 * session.c — who a client is.
 *
 * Identity: the server reads SO_PEERCRED when it accepts a connection and creates the
 * session from it; nothing the client sends about itself (Hello.client_name) is trusted
 * beyond display.  Each session gets an id (monotonic, never reused, what operators see)
 * and a 16-byte random token from getrandom(2): the token is the session's claim ticket
 * for restart survival: after a daemon restart a client presents it in Hello and re-claims
 * what it held.  A restarted daemon re-creates its sessions from the journal
 * (session_restore: the same id and token, detached until re-claimed; the id counter
 * moves past them), and keeps with each the reply to its last journaled request
 * (session_keep_reply) for the exactly-once answer to a retry.
 *
 * Holdings are not here: what a session holds (buffer references, objects, the bytes
 * charged to its uid) is the pool's ledger's (ledger.c), in a ledger_holder_t the session
 * points to from Hello on.  Keeping them in the ledger keeps every ownership record in one
 * place, next to the allocators they describe; a daemon with several pools would give a
 * session one holder per pool.
 *
 * The session list: sessions past Hello, newest first, are what Stats.clients shows and
 * what --max-clients counts; the handshake adds a session at Hello and the connection's
 * teardown takes it off.
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
#include <stdio.h>

#include "pinpool_err.h"
#include "utf8.h"

static uint64_t session_next_id = 1;

static uint64_t now_unix_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int session_create(pid_t pid, uid_t uid, gid_t gid, session_t **ret) {
  session_t *s = calloc(1, sizeof *s);
  size_t got = 0;

  if (!s) return PP_ENOPRIVMEM;
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
  *ret = s;
  return 0;
}

int session_restore(uint64_t id, const uint8_t token[SESSION_TOKEN_LEN], pid_t pid, uid_t uid,
                    gid_t gid, const char *name, uint64_t connected_ms, session_t **ret) {
  session_t *s = calloc(1, sizeof *s);
  if (!s || !(s->keep = calloc(1, sizeof *s->keep))) {
    free(s);
    return PP_ENOPRIVMEM;
  }
  s->id = id;
  memcpy(s->token, token, SESSION_TOKEN_LEN);
  s->pid = pid;
  s->uid = uid;
  s->gid = gid;
  snprintf(s->name, sizeof s->name, "%s", name);
  s->connected_ms = connected_ms;
  s->hello_done = true;
  s->detached = true;
  s->restored = true;
  if (id >= session_next_id) session_next_id = id + 1;
  *ret = s;
  return 0;
}

void session_skip_ids(uint64_t next) {
  if (next > session_next_id) session_next_id = next;
}

uint64_t session_next(void) {
  return session_next_id;
}

int session_keep_reply(session_t *s, uint64_t id, const uint8_t *bytes, size_t len) {
  session_keep_t *k = s->keep;
  if (!k && !(k = s->keep = calloc(1, sizeof *k))) return PP_ENOPRIVMEM;
  if (len > UINT32_MAX) len = 0;
  if (len > k->reply_cap) {
    uint8_t *p = realloc(k->reply, len);
    if (!p) {
      k->reply_id = 0;
      k->reply_len = 0;
      return PP_ENOPRIVMEM;
    }
    k->reply = p;
    k->reply_cap = (uint32_t)len;
  }
  if (len) memcpy(k->reply, bytes, len);
  k->reply_len = (uint32_t)len;
  k->reply_id = len ? id : 0;
  return 0;
}

const uint8_t *session_kept_reply(const session_t *s, uint64_t *ret_id, size_t *ret_len) {
  if (!s->keep || !s->keep->reply_len) {
    *ret_id = 0;
    *ret_len = 0;
    return NULL;
  }
  *ret_id = s->keep->reply_id;
  *ret_len = s->keep->reply_len;
  return s->keep->reply;
}

uint64_t session_detached_deadline(const session_t *s) {
  return s->detached && s->keep ? s->keep->detached_deadline_unix_ms : 0;
}

void session_destroy(session_t *s) {
  if (!s) return;
  if (s->keep) free(s->keep->reply);
  free(s->keep);
  free(s->pools); /* its holders were released (pools_session_release) */
  free(s);
}

void session_set_name(session_t *s, const char *name) {
  size_t n = name ? utf8_prefix(name, SESSION_NAME_MAX) : 0;
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

void session_list_add(session_list_t *l, session_t *s) {
  s->prev = NULL;
  s->next = l->head;
  if (l->head) l->head->prev = s;
  l->head = s;
  l->n++;
}

void session_list_del(session_list_t *l, session_t *s) {
  if (!s->prev && !s->next && l->head != s) return;
  if (s->prev)
    s->prev->next = s->next;
  else
    l->head = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
  l->n--;
}
