/*
 * pools.c — several pools per daemon, and who may write or read each.
 *
 * A pool is one ledger (ledger.c: a region memfd, its buddy, slab caches and magazines,
 * its own handle counter, quota and holders) with a name, an id and two access lists.
 * Pool 0 is the default pool, the one --size/--page-size describe: it is attached to
 * every session at Hello (session_t.holder) and everyone who may connect writes it, so
 * clients that know nothing of pools see the daemon they always saw.  Further pools come
 * from `[pool NAME]` sections of the config file (main.c reads them, pools_check_def
 * checks each before anything is created, pools_add creates it): each with its size,
 * page-size policy, sort-pages choice, per-uid quota, optional NUMA node, and its lists.
 *
 * Access (pools_access), decided when a session attaches a pool:
 *   - WRITE: the default pool; root; a uid in `writers`, or a member of a group there.
 *     The session gets the memfd itself (read-write: it may map it PROT_WRITE and punch
 *     holes, as with the default pool) and may do every request in the pool.
 *   - READ: a uid or group member in `readers` (and not a writer).  The session gets the
 *     memfd re-opened O_RDONLY through /proc/self/fd/N: the kernel refuses a PROT_WRITE
 *     shared mapping of it and a hole punch through it (both need a writable file), and
 *     the region made the memfd mode 0600, so the session cannot re-open its descriptor
 *     read-write through /proc either: it can only read what writers publish.  In the pool it
 * may look buffers up (a reference, so the buffer stays while it reads), describe and free what
 * it holds; alloc, alloc_bulk and every cache request are PERMISSION_DENIED (handlers.c).
 *   - NONE: PERMISSION_DENIED, and no fd.
 * Group membership follows the admin group's rule (session_is_admin: the primary gid
 * from SO_PEERCRED and the supplementary groups of the uid's user, root in every group).
 * The lists are resolved to ids at start-up: a user or group that does not exist stops
 * the daemon (exit 2, naming the pool and the key), as a typo must not open or close a
 * pool silently.
 *
 * Attachments.  A session's attachment of pool id > 0 is an entry of session_t.pools (an
 * array of POOLS_MAX session_pool_t, made at the first attach): a ledger holder in that
 * pool's ledger and the access.  Charges, quotas, buffer limits and cache limits are the
 * pool's ledger's: a uid's quota is per pool.  Disconnecting releases the holder in every
 * pool (pools_session_release), as for the default pool.
 *
 * Handles: each ledger counts its own from 1, so handlers.c puts the pool id in bits
 * 48..62 of the handle a client sees (POOL_HANDLE) — daemon-wide unambiguous, the
 * default pool's handles unchanged, bit 63 left to the client (libpinpool's buffer-cache
 * handles).  Cache ids and object offsets are per pool, named with the request's pool.
 *
 * Restart survival: every pool has a persist of its own (persist.c: its journal, its
 * region and journal in the fd store as region.NAME and journal.NAME), which records the
 * pool's ledger changes and its attachments (pools_attach: persist_attach; release:
 * persist_detach).  After a restart pools_take_restored joins each pool's restored
 * attachments to the sessions the default pool's journal brought back, by session id,
 * with the access the lists give now; a pool whose stored state could not be taken back
 * starts fresh on its own, and a restored session's request there is STATE_LOST
 * (handlers.c).  A reload hands every pool on (reload.c, handoff version 2).
 *
 * Locks: none; only the loop thread calls in.
 */
#define _GNU_SOURCE
#include "pools.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "debug.h"
#include "log.h"
#include "osl.h"

static int resolve(const char *name, bool group, uint32_t *ret) {
  char buf[4096], *end;
  unsigned long v;

  errno = 0;
  v = strtoul(name, &end, 10);
  if (*name >= '0' && *name <= '9' && !*end && !errno && v < UINT32_MAX) {
    *ret = (uint32_t)v;
    return 0;
  }
  if (group) {
    struct group gr, *grp = NULL;
    if (getgrnam_r(name, &gr, buf, sizeof buf, &grp) != 0 || !grp) return PP_ENOENT;
    *ret = grp->gr_gid;
  } else {
    struct passwd pw, *pwp = NULL;
    if (getpwnam_r(name, &pw, buf, sizeof buf, &pwp) != 0 || !pwp) return PP_ENOENT;
    *ret = pwp->pw_uid;
  }
  return 0;
}

int pools_parse_acl(const char *text, pool_acl_t *ret, char *why, size_t why_len) {
  pool_acl_t acl = {0};
  const char *p = text;

  while (*p) {
    char item[256];
    size_t n;
    const char *s;
    bool group;

    while (*p == ' ' || *p == '\t')
      p++;
    n = strcspn(p, ",");
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
      n--;
    if (n == 0 || n >= sizeof item) {
      snprintf(why, why_len, "an empty or overlong entry");
      return PP_EINVAL;
    }
    memcpy(item, p, n);
    item[n] = '\0';
    group = item[0] == '@';
    s = group ? item + 1 : item;
    if (acl.n == POOL_ACL_MAX) {
      snprintf(why, why_len, "more than %u entries", POOL_ACL_MAX);
      return PP_EINVAL;
    }
    if (!*s || resolve(s, group, &acl.e[acl.n].id)) {
      snprintf(why, why_len, "%s '%s' does not exist", group ? "group" : "user", s);
      return PP_ENOENT;
    }
    acl.e[acl.n++].group = group;
    p += strcspn(p, ",");
    if (*p == ',') p++;
  }
  *ret = acl;
  return 0;
}

int pools_check_def(const pool_def_t *d, pool_acl_t *ret_writers, pool_acl_t *ret_readers,
                    char *why, size_t why_len) {
  static const uint64_t page[] = {
      [REGION_PAGE_4K] = 4096u, [REGION_PAGE_2M] = 2u << 20, [REGION_PAGE_1G] = 1u << 30};
  char sub[256];
  int rc;

  if (d->size == 0) {
    snprintf(why, why_len, "pool '%s': key 'size' is required", d->name);
    return PP_EINVAL;
  }
  if (d->policy != REGION_PAGE_AUTO && d->size % page[d->policy]) {
    snprintf(why, why_len,
             "pool '%s': key 'size': %llu bytes is not a multiple of the page size "
             "(page-size %s)",
             d->name, (unsigned long long)d->size,
             d->policy == REGION_PAGE_4K   ? "4K"
             : d->policy == REGION_PAGE_2M ? "2M"
                                           : "1G");
    return PP_EINVAL;
  }
  if (d->bind_node && (d->numa_node > INT32_MAX || !osl_numa_node_exists((int)d->numa_node))) {
    snprintf(why, why_len, "pool '%s': key 'numa-node': node %u does not exist on this machine",
             d->name, d->numa_node);
    return PP_EINVAL;
  }
  if ((rc = pools_parse_acl(d->writers, ret_writers, sub, sizeof sub))) {
    snprintf(why, why_len, "pool '%s': key 'writers': %s", d->name, sub);
    return PP_EINVAL;
  }
  if ((rc = pools_parse_acl(d->readers, ret_readers, sub, sizeof sub))) {
    snprintf(why, why_len, "pool '%s': key 'readers': %s", d->name, sub);
    return PP_EINVAL;
  }
  return 0;
}

void pools_init(pools_t *ps, ledger_t *l, persist_t *persist) {
  memset(ps, 0, sizeof *ps);
  ps->v[0].persist = persist;
  ps->n = 1;
  ps->v[0].id = 0;
  snprintf(ps->v[0].name, sizeof ps->v[0].name, "%s", POOL_DEFAULT_NAME);
  ps->v[0].ledger = l;
  ps->v[0].open = true;
  snprintf(ps->v[0].writers_text, sizeof ps->v[0].writers_text, "*");
  const ledger_config_t *lc = ledger_config(l);
  ps->v[0].bind_node = lc->bind_node;
  ps->v[0].numa_node = lc->numa_node;
}

int pools_add(pools_t *ps, const pool_def_t *d, const ledger_config_t *base,
              const persist_config_t *pc, int region_fd, int journal_fd) {
  pool_t *p;
  ledger_config_t lc = *base;
  persist_config_t ppc = *pc;
  char memfd_name[POOL_NAME_MAX + 16], why[256];
  int rc = PP_ELIMIT;

  if (ps->n == POOLS_MAX || (rc = pools_check_def(d, &ps->v[ps->n].writers,
                                                  &ps->v[ps->n].readers, why, sizeof why))) {
    if (region_fd >= 0) close(region_fd);
    if (journal_fd >= 0) close(journal_fd);
    return rc;
  }
  p = &ps->v[ps->n];
  snprintf(memfd_name, sizeof memfd_name, "pinpool.%s", d->name);
  lc.size = d->size;
  lc.policy = d->policy;
  lc.no_sort_pages = !d->sort_pages;
  lc.quota = d->quota;
  lc.bind_node = d->bind_node;
  lc.numa_node = d->numa_node;
  lc.memfd_name = memfd_name;
  ppc.pool = ps->n;
  ppc.pool_name = d->name;
  if ((rc = persist_start(&ppc, &lc, region_fd, journal_fd, &p->ledger, &p->persist)))
    return rc;
  memcpy(p->region_id, persist_region_id(p->persist), sizeof p->region_id);
  p->id = ps->n;
  snprintf(p->name, sizeof p->name, "%s", d->name);
  snprintf(p->writers_text, sizeof p->writers_text, "%s", d->writers);
  snprintf(p->readers_text, sizeof p->readers_text, "%s", d->readers);
  p->bind_node = d->bind_node;
  p->numa_node = d->numa_node;
  ps->n++;
  return 0;
}

void pools_fini(pools_t *ps) {
  for (uint32_t i = 1; i < ps->n; i++) {
    persist_free(ps->v[i].persist); /* stops journaling: the journal keeps the state */
    if (ps->v[i].ledger) ledger_destroy(ps->v[i].ledger);
  }
  ps->n = ps->n ? 1 : 0;
}

pool_t *pools_find(pools_t *ps, const char *name) {
  if (!name || !*name) name = POOL_DEFAULT_NAME;
  for (uint32_t i = 0; i < ps->n; i++)
    if (!strcmp(ps->v[i].name, name)) return &ps->v[i];
  return NULL;
}

pool_t *pools_get(pools_t *ps, uint32_t id) {
  return id < ps->n ? &ps->v[id] : NULL;
}

static bool acl_has(const pool_acl_t *acl, uid_t uid, gid_t gid) {
  for (uint32_t i = 0; i < acl->n; i++)
    if (acl->e[i].group ? session_is_admin(uid, gid, (gid_t)acl->e[i].id)
                        : acl->e[i].id == (uint32_t)uid)
      return true;
  return false;
}

pool_access_t pools_access(const pool_t *p, uid_t uid, gid_t gid) {
  if (p->open || uid == 0 || acl_has(&p->writers, uid, gid)) return POOL_ACCESS_WRITE;
  if (acl_has(&p->readers, uid, gid)) return POOL_ACCESS_READ;
  return POOL_ACCESS_NONE;
}

int pools_attach(pools_t *ps, session_t *s, pool_t *p, pool_access_t acc) {
  session_pool_t *sp;
  (void)ps;
  PP_ASSERT(acc != POOL_ACCESS_NONE);
  if (p->id == 0) return 0; /* attached at Hello */
  if (!s->pools && !(s->pools = calloc(POOLS_MAX, sizeof *s->pools))) return PP_ENOPRIVMEM;
  sp = &s->pools[p->id];
  if (!sp->holder) {
    ledger_ident_t ident = {.session_id = s->id, .pid = s->pid, .uid = s->uid};
    int rc = ledger_holder_create(p->ledger, &ident, &sp->holder);
    if (rc) return rc;
    if (p->persist) persist_attach(p->persist, s); /* journaled before the reply */
  }
  sp->access = (uint8_t)acc;
  return 0;
}

int pools_session_get(pools_t *ps, session_t *s, uint32_t id, ledger_t **ret_l,
                      ledger_holder_t **ret_h, pool_access_t *ret_acc) {
  if (id == 0) {
    *ret_l = ps->v[0].ledger;
    *ret_h = s->holder;
    *ret_acc = POOL_ACCESS_WRITE;
    return 0;
  }
  if (id >= ps->n || !s->pools || !s->pools[id].holder) return PP_ENOENT;
  *ret_l = ps->v[id].ledger;
  *ret_h = s->pools[id].holder;
  *ret_acc = (pool_access_t)s->pools[id].access;
  return 0;
}

void pools_session_release(pools_t *ps, session_t *s) {
  if (!s->pools) return;
  for (uint32_t i = 1; i < ps->n; i++) {
    if (!s->pools[i].holder) continue;
    if (ps->v[i].persist) {
      persist_detach(ps->v[i].persist, ps->v[i].ledger, s);
    } else {
      ledger_holder_release(ps->v[i].ledger, s->pools[i].holder);
      s->pools[i].holder = NULL;
    }
  }
  free(s->pools);
  s->pools = NULL;
}

void pools_request_end(pools_t *ps, session_t *s, uint64_t req_id, const uint8_t *reply,
                       size_t len) {
  for (uint32_t i = 0; i < ps->n; i++)
    if (ps->v[i].persist) persist_request_end(ps->v[i].persist, s, req_id, reply, len);
}

static session_t *find_session(session_list_t *list, uint64_t id) {
  for (session_t *s = list->head; s; s = s->next)
    if (s->id == id) return s;
  return NULL;
}

void pools_take_restored(pools_t *ps, session_list_t *list) {
  for (uint32_t i = 1; i < ps->n; i++) {
    pool_t *p = &ps->v[i];
    session_t *sh = p->persist ? persist_take_restored(p->persist) : NULL, *next;
    unsigned kept = 0;
    for (; sh; sh = next) {
      session_t *s = find_session(list, sh->id);
      pool_access_t acc = s ? pools_access(p, s->uid, s->gid) : POOL_ACCESS_NONE;
      uint64_t rid = 0, mine = 0;
      size_t rlen = 0, mine_len = 0;
      const uint8_t *reply, *own;

      next = sh->next;
      sh->next = NULL;
      if (acc == POOL_ACCESS_NONE ||
          (!s->pools && !(s->pools = calloc(POOLS_MAX, sizeof *s->pools)))) {
        log_notice("pool '%s': session %" PRIu64 "'s holdings there are released: %s", p->name,
                   sh->id,
                   !s     ? "the session did not come back (the default pool started fresh)"
                   : !acc ? "its uid is no longer a writer or reader of the pool"
                          : "out of private memory");
        persist_detach(p->persist, p->ledger, sh);
        session_destroy(sh);
        continue;
      }
      s->pools[i].holder = sh->pools[i].holder;
      s->pools[i].access = (uint8_t)acc;
      sh->pools[i].holder = NULL;
      /* Exactly once across pools: the reply of the session's latest journaled request. */
      own = session_kept_reply(s, &mine, &mine_len);
      reply = persist_kept_reply(p->persist, s->id, &rid, &rlen);
      if (reply && (!own || rid > mine)) session_keep_reply(s, rid, reply, rlen);
      session_destroy(sh);
      kept++;
    }
    if (kept) log_info("pool '%s': %u sessions' holdings taken back", p->name, kept);
  }
}

void pools_tick(pools_t *ps) {
  for (uint32_t i = 1; i < ps->n; i++)
    if (ps->v[i].persist) persist_tick(ps->v[i].persist);
}

void pools_stop(pools_t *ps) {
  for (uint32_t i = 1; i < ps->n; i++)
    if (ps->v[i].persist) persist_stop(ps->v[i].persist);
}
