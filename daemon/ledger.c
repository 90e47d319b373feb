/*
 * ledger.c — who holds what in one pool, and the allocators it is held from.
 *
 * The ledger is the daemon's book of ownership, kept apart from the protocol: plain C
 * types in, a PP_E* code and a reason out (handlers.c turns a request into ledger calls
 * and the result into a Response).  It owns one pool's allocator wiring — the region, the
 * buddy allocator over it, the slab layer, and for each cache a depot with the loop
 * thread's magazine (mag_cpu_t) in front of it (Bonwick & Adams 2001) — and the records of
 * what holders (sessions) hold from them.  Clients are untrusted: every rule below is
 * written against a hostile local user who can connect, guess names and handles, and
 * choose any geometry.
 *
 * What a holder can hold:
 *   - a *buffer*: one buddy block, named by a 64-bit handle that is never reused within
 *     the ledger's lifetime (a stale handle can only miss, never hit someone else's
 *     block).  alloc rounds the size up to a block and answers with the block's real size.
 *     A buffer may be *published* under a scoped name (below); lookup takes a reference to
 *     it.  Each holder counts its references (alloc = 1, each lookup +1); free drops one.
 *     The block goes back to the buddy when the last reference of the last holder goes,
 *     and its name goes with it.
 *   - *opens* of slab caches, and *objects* of the caches it has open, served through the
 *     cache's magazine, so a cache_alloc of a batch mostly moves offsets between arrays.
 *     Every object a holder holds is in its objs map and in obj_owner, so cache_free
 *     accepts exactly the holder's own objects and a dead holder's objects can all be
 *     returned.
 *
 * Names and scopes.  Every buffer name and cache name belongs to a *scope*: a user's
 * (its uid) or a shared group's.  A name without a leading '~' is in the caller's own
 * scope, so names from one uid behave as if scopes did not exist — and nobody else can
 * squat them.  Another scope is written in front of the name: "~1000/frames" (uid 1000's
 * "frames"), "~g44/frames" (shared group 44's).  The scope is '~', an optional 'g', a
 * decimal id without leading zeros and a '/'; everything after that first '/' is the
 * name, so names may contain '/' and '~' freely (a name that starts with '~' is written
 * qualified: "~1000/~odd").  The qualified form is canonical — one spelling per (scope,
 * name) — and is what Stats shows and what the indexes are keyed by.  Anyone may look
 * up (or open a cache) in any scope; creating a name (publishing a buffer, creating a
 * cache) is allowed only in the caller's own scope and in the scopes of the shared groups
 * (cfg.shared_groups) its user belongs to (ledger_holder_set_groups; handlers.c decides
 * membership like the admin group: primary gid and the supplementary groups of the uid's
 * user; root belongs to every shared group).  Anything else is PP_EPERM, checked before
 * existence, so a refusal says nothing about what is there.
 *
 * Handles are private to their session.  free of a handle the holder does not hold is
 * PP_ENOENT with one message, whether someone else holds it, it was freed, or it never
 * existed; cache_free of an offset the holder does not hold is PP_ENOENT with one message
 * whoever holds it; a cache id the holder does not have open is PP_ENOENT exactly like an
 * id that never existed (cache_alloc, cache_free, cache_close).  No answer tells one
 * session anything about another's holdings.
 *
 * The charge (what cfg.quota limits, per uid).  The rule is "what the allocators spend":
 *   - a buffer: its block (2^k x 4 KiB), charged to one uid at a time — the allocating
 *     uid, and when the last holder of that uid lets go while other holders remain, the
 *     uid of the longest-standing remaining holder (holders[] keeps first-reference
 *     order).  The move is uncharge + charge + buf_set_owner, three primitives.  It may
 *     push the new uid over its quota: that is allowed (it chose to hold the buffer), and
 *     the uid then gets PP_EQUOTA until it frees.  So nobody pays for memory it no longer
 *     holds, and nobody can pin another uid's quota by looking its buffers up.
 *   - an object of cache c: obj_charge = floor(slab_bytes / objs_per_slab), its stride
 *     (object size rounded up to the alignment) plus its share of the slab's unused tail.
 *     Since objs_per_slab x stride <= slab_bytes (slab.c), obj_charge >= stride.
 *   - for every cache in which a uid holds at least one object: one slab more — the slab
 *     the cache has partly filled, and the objects a magazine refill takes ahead.
 * Amplification: the bytes the allocators spend for what a uid holds, over its charge.
 * Buffers: exactly 1.  Objects: let s = slab_bytes, n = objs_per_slab, q = obj_charge.
 * slab.c guarantees n >= 8 and n x stride <= s, so q >= stride >= 8 and
 * s / n < q + 1 <= 9q/8.  The ledger sizes each cache's magazine M = min(n, 256), so a
 * refill asks the slabs for at most one slab's worth.
 *   Lemma: a cache never has more slabs than S <= P/n + 1, where P is the most objects
 *   its holders have held at once (counting a request's objects from its quota check on).
 *   Proof: the magazine layer asks the slabs only when its magazines and depot are empty,
 *   and the slab layer grows only when no slab has a free object; so when the cache
 *   grows, every object of its S slabs is held: S x n <= P.  The refill that grows it
 *   takes M <= n objects: one new slab.  Slabs only go away after that.
 *   So while a cache's users allocate, it spends S x s <= P x s/n + s, and they are
 *   charged at least P x q + s (each uid in it pays one slab, and there is at least one):
 *   the ratio is at most (s/n)/q < 9/8, whatever the geometry — tiny objects aligned to
 *   4096 (stride 4096: n = 8, s = 32 KiB, q = 4096), sizes just above a power of two
 *   (2049 bytes, align 8: stride 2056, n = 15, s = 32 KiB, q = 2184), the largest objects
 *   (16 KiB: n = 8, s = 128 KiB, q = 16 KiB) — and however many caches a uid fills.  A
 *   uid allocating until PP_EQUOTA has made the allocators spend less than 9/8 (so at
 *   most 2x) of its quota.  Before this rule objects were charged at their object size:
 *   8-byte objects aligned to 4096 cost 512x their charge.
 *   What the rule does not charge: memory a cache keeps after frees — free slots of
 *   partly used slabs, objects parked in its magazines, up to two empty slabs.  By the
 *   lemma it never exceeds what the cache held at its peak, it is what the cache's next
 *   allocations use first (partial slabs first, magazines before slabs), `shrink` returns
 *   the empty part, and all of it returns when the cache is destroyed.  A uid that frees
 *   most of its objects but keeps one per slab (objects cannot move, so such slabs stay)
 *   can keep a cache at its peak while paying less; it needs a cache per peak, which
 *   cfg.max_caches_per_uid bounds for its own scope.  That is the residual, stated.
 *
 * Caches live while someone has them open.  cache_open counts an open for the holder
 * (a holder may open a cache several times; cache_close drops one, release drops all);
 * cache_alloc needs the cache open, and a holder cannot drop its last open while it holds
 * objects of the cache (PP_EBUSY), so "nobody has it open" means "nobody holds anything
 * from it".  Then the cache is destroyed at once: the magazine drained, the slabs back to
 * the buddy (slab_cache_destroy), the private records freed, its id never given again.
 * Creating a cache is limited per scope (cfg.max_caches_per_uid: a shared group's scope
 * counts on its own) and in all (cfg.max_caches), PP_ELIMIT.
 *
 * Rules:
 *   - a call that fails leaves every piece of state as it was: each request validates
 *     everything first and only then changes anything (cache_free is all-or-nothing and
 *     names the first bad offset); when private memory runs out half-way, what was done
 *     is undone and the call fails with PP_ENOPRIVMEM;
 *   - a uid's charge only goes over cfg.quota by a charge move (above);
 *   - per-holder buffer references never exceed cfg.max_buffers;
 *   - CONTIGUOUS is decided by the buddy with region_is_contiguous as its oracle: blocks no
 *     larger than a page are contiguous by alignment; larger ones need known, consecutive
 *     physical pages, else PP_ENOCONTIG;
 *   - release (a disconnect) returns everything at once.  Objects go straight to their
 *     slabs, the caches the holder used are drained and shrunk, and caches nobody has open
 *     any more are destroyed, so that after a crash the buddy's free bytes return to their
 *     value from before the client came (what an operator checks), at the price of
 *     re-growing slabs for the next user.
 *
 * Primitive mutations.  Every change of ownership is made by one of a few small functions,
 * and nothing else writes the ownership records:
 *   buf_create / buf_destroy      a buffer record for a block (destroy returns the block)
 *   hold_add / hold_drop          a holder's reference count on a buffer
 *   name_publish / name_unpublish a buffer's scoped name
 *   charge / uncharge             bytes charged to a uid
 *   buf_set_owner                 the uid a buffer's charge belongs to
 *   obj_take / obj_give           a holder's object
 *   cache_create / cache_destroy  the ledger adopts a slab cache in a scope / lets it go
 *   cache_hold / cache_unhold     a holder's open count on a cache
 * Requests (ledger_buf_alloc, ...) are sequences of them, undone by their inverses on
 * failure; allocator calls (buddy_alloc, mag_alloc, ...) stay outside them.  Each
 * primitive ends in ledger_record(), which counts it (ledger_mutations; ledger_check ties
 * the counts to the live records) and hands it, with its arguments (ledger_rec_t), to the
 * recorder the daemon set (ledger_set_recorder): the one place the journal hooks in
 * (persist.c writes each primitive as a record of the request's transaction, committed
 * before the reply goes out, so a reply never announces an ownership change that is not
 * written).  A handle is consumed when its buffer record is made, even if the request
 * then undoes it: the journal never sees a handle twice.
 *
 * Bulk requests.  alloc_bulk and free_bulk are alloc and free repeated in one request, all
 * or nothing: the whole batch is checked first (count, the buffer limit and the quota for
 * all its buffers together; for free_bulk every handle, a handle listed as often as the
 * holder holds references to it), then the same primitives run per buffer, and a failure
 * half-way (the buddy running dry, private memory) undoes the buffers taken, naming the
 * one that failed.  Being primitives, they are one journal transaction each with nothing
 * more to do for restart survival.  They serve clients that keep a cache of small blocks
 * in front of the daemon (libpinpool's buffer caches): such a client reports what its
 * caches hold with each bulk request, and the holder keeps the report for Stats
 * (ledger_holder_set_cached) — shown, clamped to what the holder holds, never trusted,
 * and not ownership, so not journaled.  describe re-reads one held buffer (its pages
 * checked as for a lookup) and changes nothing.
 *
 * Restart.  A restarted daemon replays the journal into a plain model (jmodel.c) and
 * builds the model's end state here (ledger_restore), rather than re-running history:
 * holders first, then each cache re-created under its id (slab_cache_create_with_id) and
 * adopted in its scope, each buffer's block re-taken with buddy_reserve before its
 * buf_create (whose handle is an argument for that reason), each object re-taken in its
 * slab with slab_cache_reserve_bulk — every reserve before anything is allocated — then
 * the references in each buffer's holder order, opens, objects, and the charges they imply
 * (charges are a function of what is held, so nothing records them).  The recorder is off
 * meanwhile; ledger_check validates the result.  ledger_export is the inverse: the live
 * state as a model, for snapshots and for comparing the journal with the ledger.  Nothing
 * here depends on state that cannot be rebuilt from those records: free slabs, magazines
 * and splits come back empty, as after a shrink.
 *
 * Lost pages.  Every client holds the region's memfd read-write and can punch pages out of
 * it (fallocate(PUNCH_HOLE)); shm/holes.c finds such pages, marks them lost (no address,
 * never contiguous), repairs them when the pool has pages, and zeroes without dying of
 * SIGBUS.  The ledger keeps lost pages out of circulation and says who was hit:
 *   - a buffer's block is checked against pagemap (region_check_range, O(its pages))
 *     before alloc hands it out and before lookup reports its addresses.  A block with
 *     lost pages is repaired; if that fails it goes back and its lost pages into
 *     *quarantine* — buddy blocks taken with buddy_reserve, LOST in the map — and another
 *     block is tried.  The first bad block of a request scans the whole region, so the
 *     rest of the damage is quarantined at once; after LEDGER_TAKE_TRIES blocks, or when
 *     the buddy runs dry having quarantined some, the answer is PP_ELOSTPAGE;
 *   - zeroing (PP_ZERO, zero_on_free) goes through region_zero: a PP_ZERO block that
 *     cannot be zeroed is never handed out, a freed one that cannot be is quarantined;
 *   - a live buffer over a lost page keeps it (its holders may still free it) and is
 *     flagged *damaged* for good — the kernel gives back zeroed pages, so its contents
 *     there are gone even after a repair; its address, contiguity and the runs its
 *     segments come from follow the region's table (holes_sync), so nothing lost is ever
 *     reported;
 *   - a freed buffer's lost pages go to quarantine, not to the buddy.  A freed object on a
 *     lost page, and one cache_alloc would hand out from a lost page (slabs grow from the
 *     buddy unchecked; the table is checked per object, O(1) while nothing is lost), is
 *     *set aside*: allocated from its slab, held by nobody;
 *   - once a repair succeeds (the pool has pages again) quarantined blocks and set-aside
 *     objects go back, zeroed with zero_on_free.
 * daemon/holes.c drives the scans and repairs (ledger_holes_scan, _report, _repair) and
 * says who was hit.  None of this changes ownership (no primitive records it): a restart
 * adopts the region, whose reserve fills every hole, and starts with nothing lost.
 *
 * Several pools per daemon: nothing here is global — each ledger has its own region,
 * buddy, slabs, handle counter, quota and holders.  daemon/pools.c keeps one ledger per
 * pool; a session holds one ledger_holder_t per pool it attached, and handlers.c names a
 * handle with its pool (pools.h: the pool id in bits 48..62 of the handle a client sees),
 * so the handles here stay below 2^48.
 *
 * Invariants (ledger_check, run after every request at PP_DEBUG=3):
 *   sum over holders of holds' counts == their buf_refs; every held handle is live and
 *   lists the holder among its holders exactly once, and every holder holds it; a
 *   buffer's charged uid is the uid of one of its holders; obj_owner has exactly the union
 *   of the holders' objs; each holder's per-cache object counts match its objects, and
 *   every cache it holds objects of is open by it; each cache's held and openers match
 *   the holders, and the magazine layer conserves objects (mag_check); each scope's cache
 *   count matches the caches; each uid's charge equals, recomputed from scratch, its
 *   buffers' blocks + its objects' charges + one slab per cache it holds objects in;
 *   published names are found under their qualified form; creates - destroys == live
 *   buffers and live caches, publishes - unpublishes == named buffers, takes - gives ==
 *   held objects; quarantined blocks are allocated buddy blocks of their order, no
 *   buffer's, summing to quarantine_bytes; set-aside objects are allocated in their
 *   cache, held by nobody, counted per cache (mag_check counts them with the held ones);
 *   damaged_bufs counts the damaged flags; plus buddy_check and slab_check.
 *
 * Locks: none of our own.  Only the loop thread calls in; shm/ takes its internal locks
 * (depot, then cache, then buddy) below us.  The daemon is one thread, so a depot never
 * sees contention and never grows M past what the ledger set.
 *
 * References: Knowlton 1965 / Knuth TAOCP 2.5 (buddy); Bonwick 1994 (slab);
 * Bonwick & Adams 2001 (magazines).
 */
#include "ledger.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "debug.h"
#include "jmodel.h"
#include "log.h"
#include "u64map.h"
#include "utf8.h"

struct ledger_buf {
  uint64_t handle;
  uint64_t offset;
  uint64_t size; /* the buddy block's size: what the client gets */
  unsigned order;
  uid_t owner_uid; /* charged for the block now */
  bool contiguous;
  uint64_t phys;        /* of offset; 0 when unknown */
  ledger_scope_t scope; /* of the name */
  char *qname;          /* malloc'd qualified name; NULL when unpublished */
  const char *name;     /* into qname: the part after the scope */
  uint64_t name_hash;
  struct ledger_buf *name_next; /* chain of buffers whose names share name_hash */
  ledger_holder_t **holders;    /* distinct holders, in the order they first took one */
  uint32_t nholders, holders_cap;
  uint64_t lost_bytes; /* of its pages lost now (the essay's "Lost pages") */
  bool damaged;        /* a page of it was lost while it lived: its contents there are gone */
};
typedef struct ledger_buf lbuf_t;

typedef struct lcache {
  slab_cache_t *cache;
  mag_depot_t *depot;
  mag_cpu_t *mag; /* the loop thread's magazine in front of the depot */
  uint32_t id;
  uint32_t object_size, align, objs_per_slab;
  uint64_t slab_bytes; /* pages_per_slab * 4 KiB: slabs are naturally aligned blocks */
  uint64_t obj_charge; /* slab_bytes / objs_per_slab, rounded down */
  ledger_scope_t scope;
  uint64_t held;            /* objects held by holders */
  uint64_t aside;           /* objects set aside: on lost pages, held by nobody */
  uint32_t openers;         /* holders with it open */
  char name[SLAB_NAME_MAX]; /* qualified; also the slab cache's name */
} lcache_t;

/* A uid with at least one holder: its charge.  Every charge goes to such a uid (the
 * allocating holder's, or a remaining holder's), so charging never needs memory. */
typedef struct luid {
  uint64_t charged;
  uint32_t nholders;
} luid_t;

struct ledger_holder {
  ledger_ident_t ident;
  /* holds: buffer handle -> references held (alloc and each lookup add one).
   * objs: object offset -> cache id.  opens: cache id -> opens.
   * cache_objs: cache id -> objects held of it. */
  u64map_t holds;
  u64map_t objs;
  u64map_t opens;
  u64map_t cache_objs;
  uint64_t buf_refs;  /* sum of holds' counts (the per-holder buffer limit) */
  uint64_t buf_bytes; /* block bytes of the distinct buffers held */
  uint64_t obj_bytes; /* the objects held, each at its charge */
  luid_t *u;          /* its uid's record */
  /* What its client said its buffer caches hold (ledger_holder_set_cached): shown, never
   * trusted — totals clamp it to what the holder holds. */
  uint64_t cached_buffers, cached_bytes;
  gid_t *groups; /* shared groups its user belongs to */
  uint32_t ngroups;
  bool groups_known;
  ledger_holder_t *prev, *next;
};

struct ledger {
  ledger_config_t cfg;
  region_t *region;
  buddy_t *buddy;
  slab_t *slab;
  region_run_t *runs; /* physically contiguous runs, in offset order */
  size_t nruns;

  u64map_t by_handle;      /* handle -> lbuf_t* */
  u64map_t by_offset;      /* block offset -> lbuf_t* */
  u64map_t by_name;        /* fnv1a(qualified name) -> lbuf_t* (head of a name_next chain) */
  u64map_t uids;           /* uid -> luid_t*, for uids with a holder */
  u64map_t uid_cache_objs; /* uid << 32 | cache id -> objects the uid's holders hold */
  u64map_t obj_owner;      /* object offset -> holding session id */
  u64map_t caches;         /* cache id -> lcache_t* */
  u64map_t scope_caches;   /* scope -> caches in it */
  lcache_t **cache_list;   /* live caches in creation order, which is ascending id order */
  size_t ncaches, caches_cap;

  ledger_holder_t *holders; /* newest first */
  uint32_t nholders;
  uint64_t next_handle;
  uint32_t next_cache_id;    /* past every cache id the ledger ever had */
  ledger_recorder_fn rec_fn; /* the journal's hook (ledger_set_recorder); NULL: none */
  void *rec_ctx;
  uint64_t buf_bytes; /* bytes of live buffers */
  uint64_t nbufs;
  uint64_t nnamed;    /* published buffers */
  uint64_t obj_bytes; /* objects held, each at its charge */
  uint64_t mutations[LEDGER_OP__COUNT];

  /* Lost pages (the essay; the section "lost pages: the mechanism"). */
  u64map_t quarantine; /* block offset -> order: lost pages out of the buddy */
  uint64_t quarantine_bytes;
  u64map_t aside;            /* object offset -> cache id: objects set aside */
  uint64_t region_gen;       /* region_generation() that runs and buffers reflect */
  uint64_t punched_bytes;    /* found punched so far, repaired or not */
  uint64_t reported_punched; /* punched_bytes when ledger_holes_report last logged */
  uint64_t damaged_bufs;     /* live buffers flagged damaged */
};

#define NOMEM_MSG "daemon out of private memory"

static int fail(ledger_why_t *why, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(ledger_why_t *why, int rc, const char *fmt, ...) {
  if (why) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->msg, sizeof why->msg, fmt, ap);
    va_end(ap);
  }
  return rc;
}

static int fail_nomem(ledger_why_t *why) {
  return fail(why, PP_ENOPRIVMEM, NOMEM_MSG);
}

static uint64_t name_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h == U64MAP_EMPTY ? h - 1 : h;
}

/* ---- names -------------------------------------------------------------------------- */

size_t ledger_scope_prefix(ledger_scope_t scope, char *buf, size_t len) {
  int n = (scope & LEDGER_SCOPE_GROUP_BIT)
              ? snprintf(buf, len, "~g%u/", (unsigned)(uint32_t)scope)
              : snprintf(buf, len, "~%u/", (unsigned)(uint32_t)scope);
  return n > 0 ? (size_t)n : 0;
}

/* The canonical qualified name of (scope, rest) into buf (LEDGER_QNAME_MAX bytes); rest
 * has been checked to fit. */
static void qualify(ledger_scope_t scope, const char *rest, char *buf) {
  size_t n = ledger_scope_prefix(scope, buf, LEDGER_SCOPE_PREFIX_MAX + 1);
  snprintf(buf + n, LEDGER_QNAME_MAX - n, "%s", rest);
}

int ledger_name_parse(const char *name, uid_t caller, ledger_scope_t *ret_scope,
                      const char **ret_rest, ledger_why_t *why) {
  const char *p = name + 1;
  uint64_t v = 0;
  unsigned digits = 0;
  bool group = false;

  if (name[0] != '~') {
    *ret_scope = LEDGER_SCOPE_USER(caller);
    *ret_rest = name;
    return 0;
  }
  if (*p == 'g') {
    group = true;
    p++;
  }
  for (; *p >= '0' && *p <= '9'; p++, digits++) {
    if (digits && v == 0) break; /* a leading zero */
    v = v * 10 + (uint64_t)(*p - '0');
    if (v >= UINT32_MAX) break;
  }
  if (!digits || v >= UINT32_MAX || *p != '/')
    return fail(why, PP_EINVAL,
                "'%.*s' has no valid scope: write ~UID/NAME or ~gGID/NAME (decimal ids)",
                (int)LEDGER_NAME_MAX, name);
  *ret_scope = group ? LEDGER_SCOPE_GROUP(v) : LEDGER_SCOPE_USER(v);
  *ret_rest = p + 1;
  return 0;
}

const char *ledger_buf_name_for(const ledger_buf_info_t *b, uid_t uid) {
  if (!b->qname) return NULL;
  return b->scope == LEDGER_SCOPE_USER(uid) ? b->name : b->qname;
}

static bool in_shared_groups(const ledger_t *l, gid_t g) {
  for (uint32_t i = 0; i < l->cfg.nshared_groups; i++)
    if (l->cfg.shared_groups[i] == g) return true;
  return false;
}

/* May h create names in scope?  0, or PP_EPERM saying why (what: "publish", ...). */
static int may_create(const ledger_t *l, const ledger_holder_t *h, ledger_scope_t scope,
                      const char *what, const char *name, ledger_why_t *why) {
  uid_t uid = h->ident.uid;
  gid_t g = (gid_t)(uint32_t)scope;

  if (scope == LEDGER_SCOPE_USER(uid)) return 0;
  if (!(scope & LEDGER_SCOPE_GROUP_BIT))
    return fail(why, PP_EPERM,
                "cannot %s '%.*s': names in ~%u/ are created by uid %u only (uid %u may look "
                "them up)",
                what, (int)LEDGER_NAME_MAX, name, (unsigned)(uint32_t)scope,
                (unsigned)(uint32_t)scope, (unsigned)uid);
  if (!in_shared_groups(l, g))
    return fail(why, PP_EPERM,
                "cannot %s '%.*s': group %u is not a shared group (pinpoold --shared-group)",
                what, (int)LEDGER_NAME_MAX, name, (unsigned)g);
  for (uint32_t i = 0; i < h->ngroups; i++)
    if (h->groups[i] == g) return 0;
  return fail(why, PP_EPERM, "cannot %s '%.*s': uid %u is not a member of shared group %u",
              what, (int)LEDGER_NAME_MAX, name, (unsigned)uid, (unsigned)g);
}

/* ---- lookups ------------------------------------------------------------------------ */

static lbuf_t *buf_by_qname(const ledger_t *l, const char *qname) {
  uint64_t v;
  if (!u64map_get(&l->by_name, name_hash(qname), &v)) return NULL;
  for (lbuf_t *b = (lbuf_t *)(uintptr_t)v; b; b = b->name_next)
    if (!strcmp(b->qname, qname)) return b;
  return NULL;
}

static lbuf_t *buf_by_handle(const ledger_t *l, uint64_t handle) {
  uint64_t v;
  return u64map_get(&l->by_handle, handle, &v) ? (lbuf_t *)(uintptr_t)v : NULL;
}

static lcache_t *cache_by_id(const ledger_t *l, uint32_t id) {
  uint64_t v;
  return u64map_get(&l->caches, id, &v) ? (lcache_t *)(uintptr_t)v : NULL;
}

/* The cache id names for h: one it has open.  Any other id — of someone else's cache, of
 * a destroyed one, never given out — is the same miss. */
static lcache_t *cache_of_holder(const ledger_t *l, const ledger_holder_t *h, uint32_t id) {
  return u64map_get(&h->opens, id, NULL) ? cache_by_id(l, id) : NULL;
}

static luid_t *uid_rec(const ledger_t *l, uid_t uid) {
  uint64_t v;
  return u64map_get(&l->uids, uid, &v) ? (luid_t *)(uintptr_t)v : NULL;
}

uint64_t ledger_uid_charged(const ledger_t *l, uid_t uid) {
  const luid_t *u = uid_rec(l, uid);
  return u ? u->charged : 0;
}

static uint64_t uid_cache_key(uid_t uid, uint32_t cache_id) {
  return (uint64_t)(uint32_t)uid << 32 | cache_id;
}

static uint64_t map_count(const u64map_t *m, uint64_t key) {
  uint64_t v = 0;
  u64map_get(m, key, &v);
  return v;
}

static bool quota_allows(const ledger_t *l, uid_t uid, uint64_t bytes) {
  uint64_t have = ledger_uid_charged(l, uid);
  return !l->cfg.quota || (bytes <= l->cfg.quota && have <= l->cfg.quota - bytes);
}

static int fail_quota(const ledger_t *l, uid_t uid, uint64_t bytes, ledger_why_t *why) {
  return fail(why, PP_EQUOTA,
              "uid %u has %" PRIu64 " bytes charged; %" PRIu64 " more exceeds quota %" PRIu64,
              (unsigned)uid, ledger_uid_charged(l, uid), bytes, l->cfg.quota);
}

static bool buffer_limit_reached(const ledger_t *l, const ledger_holder_t *h) {
  return l->cfg.max_buffers && h->buf_refs >= l->cfg.max_buffers;
}

/* ---- lost pages: the mechanism -------------------------------------------------------
 * The essay's "Lost pages".  Every path starts from the region's table, whose answers are
 * O(1) while no page is lost, so none of this costs anything until a client punches. */

#define LEDGER_TAKE_TRIES 8u /* blocks tried for one buffer before PP_ELOSTPAGE */

static uint64_t *collect_keys(const u64map_t *m, size_t *ret_n);

/* The end of the region page holding off, clipped to end. */
static uint64_t page_end(const ledger_t *l, uint64_t off, uint64_t end) {
  uint64_t ps = region_page_size(l->region), e = (off / ps + 1) * ps;
  return e < end ? e : end;
}

static void flag_damage(ledger_t *l, lbuf_t *b) {
  b->lost_bytes = region_lost_in(l->region, b->offset, b->size);
  if (b->lost_bytes && !b->damaged) {
    b->damaged = true;
    l->damaged_bufs++;
  }
}

/* The region had lost_before bytes lost before a call that may find holes (a scan, a
 * check, a zeroing): count what is new, and flag every live buffer over a lost page as
 * damaged now, before a repair can hide that its contents were lost. */
static void holes_note(ledger_t *l, uint64_t lost_before) {
  uint64_t now = region_lost_bytes(l->region), k, v;
  size_t it = 0;

  if (now <= lost_before) return;
  l->punched_bytes += now - lost_before;
  while (u64map_next(&l->by_handle, &it, &k, &v))
    flag_damage(l, (lbuf_t *)(uintptr_t)v);
}

/* Once the region's generation moved (addresses, runs or lost pages changed): the copy of
 * the runs that Buffer segments come from, and each buffer's address, contiguity and lost
 * bytes, as the table has them now — so that nothing lost is ever reported.  Without
 * memory for the runs there are none (no segments rather than stale ones), and the next
 * call tries again. */
static void holes_sync(ledger_t *l) {
  uint64_t gen = region_generation(l->region), ps = region_page_size(l->region), k, v;
  region_run_t *runs = NULL;
  size_t it = 0, n = 0;
  bool whole = true;

  if (gen == l->region_gen) return;
  if (region_phys_known(l->region) && (n = region_runs(l->region, NULL, 0))) {
    if ((runs = calloc(n, sizeof *runs))) {
      size_t m = region_runs(l->region, runs, n);
      if (m < n) n = m;
    } else {
      n = 0;
      whole = false;
    }
  }
  free(l->runs);
  l->runs = runs;
  l->nruns = n;
  while (u64map_next(&l->by_handle, &it, &k, &v)) {
    lbuf_t *b = (lbuf_t *)(uintptr_t)v;
    uint64_t phys = 0;
    flag_damage(l, b);
    if (region_phys(l->region, b->offset, &phys)) phys = 0;
    b->phys = phys;
    b->contiguous = !b->lost_bytes &&
                    (b->size <= ps || region_is_contiguous(l->region, b->offset, b->size));
  }
  if (whole) l->region_gen = gen;
}

/* Take the free block at off of order k into quarantine.  When part of it is taken (or it
 * runs past the region) its halves are tried; without memory for the record the block
 * goes back (a later settle or take finds it again). */
static void carve(ledger_t *l, uint64_t off, unsigned k) {
  int rc = buddy_reserve(l->buddy, off, k);
  if (rc == 0) {
    if (u64map_put(&l->quarantine, off, k) == 0) {
      l->quarantine_bytes += buddy_order_size(k);
      return;
    }
    buddy_free(l->buddy, off);
    return;
  }
  if ((rc == PP_EBUSY || rc == PP_ERANGE) && k > 0) {
    carve(l, off, k - 1);
    carve(l, off + buddy_order_size(k - 1), k - 1);
  }
}

/* [a, b), 4 KiB-aligned and free, into quarantine as naturally aligned blocks. */
static void carve_range(ledger_t *l, uint64_t a, uint64_t b) {
  while (a < b) {
    uint64_t units = (b - a) >> BUDDY_MIN_SHIFT, at = a >> BUDDY_MIN_SHIFT;
    unsigned k = 0;
    while (k + 1 < BUDDY_NR_ORDERS && (2ull << k) <= units && !(at & ((2ull << k) - 1)))
      k++;
    carve(l, a, k);
    a += buddy_order_size(k);
  }
}

/* The lost pages of [off, off+len), a range free in the buddy, into quarantine. */
static void settle_range(ledger_t *l, uint64_t off, uint64_t len) {
  uint64_t end = off + len, p = off;

  while (p < end) {
    uint64_t a;
    if (!region_lost_in(l->region, p, page_end(l, p, end) - p)) {
      p = page_end(l, p, end);
      continue;
    }
    a = p;
    while (p < end && region_lost_in(l->region, p, page_end(l, p, end) - p))
      p = page_end(l, p, end);
    carve_range(l, a, p);
  }
}

typedef struct settle_walk {
  const region_t *r;
  uint64_t *off;
  unsigned *order;
  size_t n, cap;
  bool failed;
} settle_walk_t;

static void settle_collect(void *ctx, uint64_t offset, unsigned order, bool is_free) {
  settle_walk_t *w = ctx;
  if (!is_free || w->failed || !region_lost_in(w->r, offset, buddy_order_size(order))) return;
  if (w->n == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 16;
    uint64_t *o = realloc(w->off, cap * sizeof *o);
    unsigned *k = o ? realloc(w->order, cap * sizeof *k) : NULL;
    if (o) w->off = o;
    if (!o || !k) {
      w->failed = true;
      return;
    }
    w->order = k;
    w->cap = cap;
  }
  w->off[w->n] = offset;
  w->order[w->n++] = order;
}

/* Every lost page that is free in the buddy into quarantine: O(blocks) while a page is
 * lost, nothing otherwise.  Without memory the walk stops; what it missed stays free until
 * the next settle, and take_block never hands it out meanwhile. */
static void holes_settle(ledger_t *l) {
  settle_walk_t w = {.r = l->region};
  if (!region_lost_bytes(l->region)) return;
  buddy_walk(l->buddy, settle_collect, &w);
  for (size_t i = 0; i < w.n; i++)
    settle_range(l, w.off[i], buddy_order_size(w.order[i]));
  free(w.off);
  free(w.order);
}

/* Zero the pages of [off, off+len) that are not lost, one run of sound pages at a time
 * (region_zero: never a SIGBUS).  0, or PP_EOS when a run could not be zeroed and no page
 * of it was found lost to say why. */
static int zero_sound(ledger_t *l, uint64_t off, uint64_t len) {
  uint64_t end = off + len, p = off, before = region_lost_bytes(l->region);
  int rc = region_zero(l->region, off, len);

  holes_note(l, before);
  if (rc == 0) return 0;
  while (p < end) {
    uint64_t a;
    if (region_lost_in(l->region, p, page_end(l, p, end) - p)) {
      p = page_end(l, p, end);
      continue;
    }
    a = p;
    while (p < end && !region_lost_in(l->region, p, page_end(l, p, end) - p))
      p = page_end(l, p, end);
    before = region_lost_bytes(l->region);
    rc = region_zero(l->region, a, p - a);
    holes_note(l, before);
    if (rc == 0) continue;
    if (!region_lost_in(l->region, a, p - a)) return PP_EOS;
    p = a; /* a page of the run was punched meanwhile (now lost): the run again, without it */
  }
  return 0;
}

/* A block leaves its owner — buffer handle, or 0 for a block that could not serve one:
 * back to the buddy, zeroed first with zero_on_free as far as its pages allow, its lost
 * pages into quarantine.  One that must be zeroed and cannot be, with no lost page to show
 * why, is quarantined whole (holes_release_blocks tries it again). */
static void block_return(ledger_t *l, uint64_t off, unsigned order, uint64_t handle) {
  uint64_t size = buddy_order_size(order), lost;
  int rc;

  if (l->cfg.zero_on_free && zero_sound(l, off, size) != 0 &&
      u64map_put(&l->quarantine, off, order) == 0) {
    l->quarantine_bytes += size;
    log_warning("the block of %" PRIu64 " bytes at offset 0x%" PRIx64 " (buffer %" PRIu64
                ") could not be zeroed: quarantined",
                size, off, handle);
    return;
  }
  rc = buddy_free(l->buddy, off);
  if (rc) {
    log_err("buddy_free(%" PRIu64 ") of buffer %" PRIu64 ": %s", off, handle, pp_strerror(rc));
    return;
  }
  if ((lost = region_lost_in(l->region, off, size))) {
    settle_range(l, off, size);
    if (handle)
      log_notice("buffer %" PRIu64 " at offset 0x%" PRIx64 " went back with %" PRIu64
                 " bytes of lost pages: those are quarantined",
                 handle, off, lost);
  }
}

/* Can the block at off serve a buffer?  Its pages are checked against pagemap (pages
 * newly found punched are marked lost), lost ones repaired when the pool allows, and it
 * is zeroed when asked.  0, or PP_ELOSTPAGE: a page stays lost, or zeroing failed. */
static int block_sound(ledger_t *l, uint64_t off, uint64_t size, bool zero) {
  uint64_t before = region_lost_bytes(l->region);
  int n = region_check_range(l->region, off, size), rc;

  holes_note(l, before);
  if (n > 0)
    log_err("hole: the free block of %" PRIu64 " bytes at offset 0x%" PRIx64
            " had %d pages punched out of the region; found before handing it out",
            size, off, n);
  if (region_lost_in(l->region, off, size)) {
    region_repair(l->region, off, size);
    if (region_lost_in(l->region, off, size)) return PP_ELOSTPAGE;
  }
  if (!zero) return 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    before = region_lost_bytes(l->region);
    rc = region_zero(l->region, off, size);
    holes_note(l, before);
    if (rc == 0) return 0;
    if (!region_lost_in(l->region, off, size)) return PP_ELOSTPAGE;
    region_repair(l->region, off, size);
    if (region_lost_in(l->region, off, size)) return PP_ELOSTPAGE;
  }
  return PP_ELOSTPAGE;
}

/* A block of order for a buffer that can serve it (block_sound), or the buddy's refusal.
 * A block that cannot goes back, its lost pages into quarantine, and the first one also
 * has the whole region scanned, so that every other lost free page is quarantined before
 * the next try.  *ret_bad counts the blocks given up: a refusal after some is
 * PP_ELOSTPAGE. */
static int take_block(ledger_t *l, unsigned order, unsigned flags, uint64_t *ret_off,
                      unsigned *ret_bad) {
  unsigned bflags = (flags & LEDGER_ALLOC_CONTIG) ? BUDDY_CONTIG : 0, bad = 0;
  uint64_t off;
  int rc = 0;

  while (bad < LEDGER_TAKE_TRIES) {
    if ((rc = buddy_alloc(l->buddy, order, bflags, &off))) break;
    if (block_sound(l, off, buddy_order_size(order), flags & LEDGER_ALLOC_ZERO) == 0) {
      holes_sync(l);
      *ret_off = off;
      *ret_bad = bad;
      return 0;
    }
    block_return(l, off, order, 0);
    if (bad++ == 0) {
      ledger_holes_scan(l);
      ledger_holes_report(l, "an allocation");
    }
  }
  holes_sync(l);
  *ret_bad = bad;
  return bad ? PP_ELOSTPAGE : rc;
}

/* Before a lookup reports b's addresses: its pages against pagemap (O(its pages)).  Pages
 * newly found punched are reported and repaired when the pool allows; b is flagged
 * damaged either way. */
static void buf_check_holes(ledger_t *l, lbuf_t *b) {
  uint64_t before = region_lost_bytes(l->region);
  int n = region_check_range(l->region, b->offset, b->size);

  holes_note(l, before);
  if (n > 0) {
    ledger_holes_report(l, "a lookup");
    region_repair(l->region, b->offset, b->size);
  }
  holes_sync(l);
}

/* Set the object at off of c aside: allocated from its slab, held by nobody. */
static int aside_put(ledger_t *l, lcache_t *c, uint64_t off) {
  if (u64map_put(&l->aside, off, c->id)) return PP_ENOPRIVMEM;
  c->aside++;
  return 0;
}

/* An object given back: to c's magazine (zeroed first with zero_on_free), or set aside
 * when a page of it is lost or it cannot be zeroed. */
static void obj_return(ledger_t *l, lcache_t *c, uint64_t off) {
  bool bad = region_lost_in(l->region, off, c->object_size) != 0;

  if (!bad && l->cfg.zero_on_free) {
    uint64_t before = region_lost_bytes(l->region);
    bad = region_zero(l->region, off, c->object_size) != 0;
    holes_note(l, before);
  }
  if (bad && aside_put(l, c, off) == 0) return;
  mag_free(c->mag, off); /* no memory to set it aside: cache_alloc checks it again */
}

/* c is going: its set-aside objects back to its magazine, so that its slabs can go (the
 * lost pages among them are quarantined by the settle that follows). */
static void aside_return_cache(ledger_t *l, lcache_t *c) {
  uint64_t *keys, cid;
  size_t n;

  if (!c->aside) return;
  keys = collect_keys(&l->aside, &n);
  for (size_t i = 0; keys && i < n; i++)
    if (u64map_get(&l->aside, keys[i], &cid) && cid == c->id) {
      u64map_del(&l->aside, keys[i]);
      mag_free(c->mag, keys[i]);
      c->aside--;
    }
  free(keys);
  while (c->aside) { /* without memory for the keys: slot by slot */
    size_t it = 0;
    uint64_t k = 0;
    bool found = false;
    while (!found && u64map_next(&l->aside, &it, &k, &cid))
      found = cid == c->id;
    if (!found) break;
    u64map_del(&l->aside, k);
    mag_free(c->mag, k);
    c->aside--;
  }
}

/* ---- primitive mutations ------------------------------------------------------------
 * Each either succeeds whole, or fails (PP_ENOPRIVMEM) having changed nothing; each ends
 * in ledger_record().  See the essay. */

static inline void ledger_record(ledger_t *l, const ledger_rec_t *r) {
  l->mutations[r->op]++;
  if (l->rec_fn) l->rec_fn(l->rec_ctx, r);
}

/* A record for the block at offset of the given order, which the buddy has already handed
 * out (or, on replay, buddy_reserve re-took), under handle: not held, named or charged;
 * uid is who will pay for it. */
static int buf_create(ledger_t *l, uint64_t handle, uint64_t offset, unsigned order, uid_t uid,
                      lbuf_t **ret) {
  lbuf_t *b = calloc(1, sizeof *b);
  uint64_t phys = 0;

  if (!b) return PP_ENOPRIVMEM;
  b->handle = handle;
  b->offset = offset;
  b->order = order;
  b->size = buddy_order_size(order);
  b->owner_uid = uid;
  if (region_phys(l->region, offset, &phys)) phys = 0;
  b->phys = phys;
  b->contiguous = b->size <= region_page_size(l->region) ||
                  region_is_contiguous(l->region, offset, b->size);
  if (u64map_put(&l->by_handle, handle, (uint64_t)(uintptr_t)b)) goto fail;
  if (u64map_put(&l->by_offset, offset, (uint64_t)(uintptr_t)b)) {
    u64map_del(&l->by_handle, handle);
    goto fail;
  }
  l->buf_bytes += b->size;
  l->nbufs++;
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_BUF_CREATE,
                                   .handle = handle,
                                   .offset = offset,
                                   .order = order,
                                   .uid = (uint32_t)uid});
  *ret = b;
  return 0;
fail:
  free(b);
  return PP_ENOPRIVMEM;
}

/* The record goes and the block returns to the buddy (zeroed first with zero_on_free; its
 * lost pages to quarantine: block_return).  Nobody holds it, it has no name, and its
 * charge is gone. */
static void buf_destroy(ledger_t *l, lbuf_t *b) {
  PP_IASSERT(b->nholders == 0 && !b->qname);
  u64map_del(&l->by_handle, b->handle);
  u64map_del(&l->by_offset, b->offset);
  block_return(l, b->offset, b->order, b->handle);
  l->damaged_bufs -= b->damaged;
  l->buf_bytes -= b->size;
  l->nbufs--;
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_BUF_DESTROY, .handle = b->handle});
  free(b->holders);
  free(b);
}

/* b is published as rest in scope (rest checked: UTF-8, not too long). */
static int name_publish(ledger_t *l, lbuf_t *b, ledger_scope_t scope, const char *rest) {
  char q[LEDGER_QNAME_MAX];
  uint64_t v = 0, hash;
  char *copy;

  qualify(scope, rest, q);
  hash = name_hash(q);
  copy = strdup(q);
  if (!copy) return PP_ENOPRIVMEM;
  u64map_get(&l->by_name, hash, &v);
  if (u64map_put(&l->by_name, hash, (uint64_t)(uintptr_t)b)) {
    free(copy);
    return PP_ENOPRIVMEM;
  }
  b->scope = scope;
  b->qname = copy;
  b->name = copy + strlen(q) - strlen(rest);
  b->name_hash = hash;
  b->name_next = (lbuf_t *)(uintptr_t)v;
  l->nnamed++;
  ledger_record(
      l, &(ledger_rec_t){
             .op = LEDGER_OP_PUBLISH, .handle = b->handle, .scope = scope, .name = b->name});
  return 0;
}

static void name_unpublish(ledger_t *l, lbuf_t *b) {
  uint64_t v;
  lbuf_t **pp, *head;

  PP_ASSERT(b->qname != NULL);
  if (u64map_get(&l->by_name, b->name_hash, &v)) {
    head = (lbuf_t *)(uintptr_t)v;
    for (pp = &head; *pp; pp = &(*pp)->name_next)
      if (*pp == b) {
        *pp = b->name_next;
        break;
      }
    if (head)
      u64map_put(&l->by_name, b->name_hash, (uint64_t)(uintptr_t)head); /* exists: no alloc */
    else
      u64map_del(&l->by_name, b->name_hash);
  }
  free(b->qname);
  b->qname = NULL;
  b->name = NULL;
  b->name_next = NULL;
  l->nnamed--;
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_UNPUBLISH, .handle = b->handle});
}

/* uid has a holder, so its record exists: no allocation, no failure. */
static void charge(ledger_t *l, uid_t uid, uint64_t bytes) {
  luid_t *u = uid_rec(l, uid);
  PP_ASSERT(u != NULL);
  u->charged += bytes;
  ledger_record(l,
                &(ledger_rec_t){.op = LEDGER_OP_CHARGE, .uid = (uint32_t)uid, .count = bytes});
}

static void uncharge(ledger_t *l, uid_t uid, uint64_t bytes) {
  luid_t *u = uid_rec(l, uid);
  PP_ASSERT(u != NULL);
  PP_IASSERT(u->charged >= bytes);
  u->charged -= bytes;
  ledger_record(
      l, &(ledger_rec_t){.op = LEDGER_OP_UNCHARGE, .uid = (uint32_t)uid, .count = bytes});
}

static void buf_set_owner(ledger_t *l, lbuf_t *b, uid_t uid) {
  b->owner_uid = uid;
  ledger_record(
      l, &(ledger_rec_t){.op = LEDGER_OP_OWNER, .handle = b->handle, .uid = (uint32_t)uid});
}

/* One more reference by h. */
static int hold_add(ledger_t *l, ledger_holder_t *h, lbuf_t *b) {
  uint64_t n = 0;
  bool had = u64map_get(&h->holds, b->handle, &n);
  if (!had && b->nholders == b->holders_cap) {
    uint32_t cap = b->holders_cap ? b->holders_cap * 2 : 2;
    ledger_holder_t **v = realloc(b->holders, cap * sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    b->holders = v;
    b->holders_cap = cap;
  }
  if (u64map_put(&h->holds, b->handle, n + 1)) return PP_ENOPRIVMEM;
  if (!had) {
    b->holders[b->nholders++] = h;
    h->buf_bytes += b->size;
  }
  h->buf_refs++;
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_HOLD,
                                   .session = h->ident.session_id,
                                   .handle = b->handle,
                                   .count = 1});
  return 0;
}

/* Drop refs of h's references (all it has when refs == 0 or more than it has).  The
 * buffer may be left with no holders (the caller releases it then), or with none of its
 * charged uid (the caller moves the charge). */
static void hold_drop(ledger_t *l, ledger_holder_t *h, lbuf_t *b, uint64_t refs) {
  uint64_t n = 0;
  u64map_get(&h->holds, b->handle, &n);
  PP_IASSERT(n > 0);
  if (refs == 0 || refs > n) refs = n;
  h->buf_refs -= refs;
  if (n > refs) {
    u64map_put(&h->holds, b->handle, n - refs); /* key exists: no alloc */
  } else {
    u64map_del(&h->holds, b->handle);
    h->buf_bytes -= b->size;
    for (uint32_t i = 0; i < b->nholders; i++)
      if (b->holders[i] == h) { /* keep first-reference order: the charge follows it */
        memmove(&b->holders[i], &b->holders[i + 1], (b->nholders - i - 1) * sizeof *b->holders);
        b->nholders--;
        break;
      }
  }
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_UNHOLD,
                                   .session = h->ident.session_id,
                                   .handle = b->handle,
                                   .count = refs});
}

/* h takes the object at off of cache c (already allocated from c's magazine). */
static int obj_take(ledger_t *l, ledger_holder_t *h, lcache_t *c, uint64_t off) {
  uint64_t ukey = uid_cache_key(h->ident.uid, c->id);
  uint64_t hn = map_count(&h->cache_objs, c->id), un = map_count(&l->uid_cache_objs, ukey);

  if (u64map_put(&h->objs, off, c->id)) return PP_ENOPRIVMEM;
  if (u64map_put(&l->obj_owner, off, h->ident.session_id)) goto undo_objs;
  if (u64map_put(&h->cache_objs, c->id, hn + 1)) goto undo_owner;
  if (u64map_put(&l->uid_cache_objs, ukey, un + 1)) goto undo_count;
  c->held++;
  h->obj_bytes += c->obj_charge;
  l->obj_bytes += c->obj_charge;
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_OBJ_TAKE,
                                   .session = h->ident.session_id,
                                   .cache_id = c->id,
                                   .offset = off});
  return 0;
undo_count:
  if (hn)
    u64map_put(&h->cache_objs, c->id, hn); /* key exists: no alloc */
  else
    u64map_del(&h->cache_objs, c->id);
undo_owner:
  u64map_del(&l->obj_owner, off);
undo_objs:
  u64map_del(&h->objs, off);
  return PP_ENOPRIVMEM;
}

static void count_down(u64map_t *m, uint64_t key) {
  uint64_t n = map_count(m, key);
  PP_IASSERT(n > 0);
  if (n <= 1)
    u64map_del(m, key);
  else
    u64map_put(m, key, n - 1); /* key exists: no alloc */
}

/* h gives the object back (the caller returns it to c's magazine). */
static void obj_give(ledger_t *l, ledger_holder_t *h, lcache_t *c, uint64_t off) {
  u64map_del(&h->objs, off);
  u64map_del(&l->obj_owner, off);
  count_down(&h->cache_objs, c->id);
  count_down(&l->uid_cache_objs, uid_cache_key(h->ident.uid, c->id));
  c->held--;
  h->obj_bytes -= c->obj_charge;
  l->obj_bytes -= c->obj_charge;
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_OBJ_GIVE,
                                   .session = h->ident.session_id,
                                   .cache_id = c->id,
                                   .offset = off});
}

/* The ledger adopts slab cache sc, created for scope: a depot with the loop thread's
 * magazine in front, M = min(objects per slab, MAG_SIZE_MAX) so a refill never takes
 * more than one slab (the essay's lemma). */
static int cache_create(ledger_t *l, slab_cache_t *sc, ledger_scope_t scope, lcache_t **ret) {
  slab_info_t info;
  lcache_t *c;
  uint64_t nscope = map_count(&l->scope_caches, scope);
  unsigned m;
  int rc;

  slab_cache_info(sc, &info);
  if (l->ncaches == l->caches_cap) {
    size_t cap = l->caches_cap ? l->caches_cap * 2 : 8;
    lcache_t **v = realloc(l->cache_list, cap * sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    l->cache_list = v;
    l->caches_cap = cap;
  }
  c = calloc(1, sizeof *c);
  if (!c) return PP_ENOPRIVMEM;
  c->cache = sc;
  c->id = info.id;
  c->object_size = info.object_size;
  c->align = info.align;
  c->objs_per_slab = info.objs_per_slab;
  c->slab_bytes = (uint64_t)info.pages_per_slab * BUDDY_MIN_SIZE;
  c->obj_charge = c->slab_bytes / info.objs_per_slab;
  c->scope = scope;
  snprintf(c->name, sizeof c->name, "%s", info.name);
  m = info.objs_per_slab < MAG_SIZE_MAX ? info.objs_per_slab : MAG_SIZE_MAX;
  rc = mag_depot_create(sc, m, false, &c->depot);
  if (!rc) rc = mag_cpu_create(c->depot, &c->mag);
  if (!rc) rc = u64map_put(&l->caches, c->id, (uint64_t)(uintptr_t)c);
  if (!rc && (rc = u64map_put(&l->scope_caches, scope, nscope + 1)))
    u64map_del(&l->caches, c->id);
  if (rc) {
    if (c->mag) mag_cpu_destroy(c->mag);
    if (c->depot) mag_depot_destroy(c->depot);
    free(c);
    return PP_ENOPRIVMEM; /* the magazine layer fails only for malloc */
  }
  l->cache_list[l->ncaches++] = c;
  if (c->id >= l->next_cache_id) l->next_cache_id = c->id + 1;
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_CACHE_CREATE,
                                   .cache_id = c->id,
                                   .scope = scope,
                                   .object_size = c->object_size,
                                   .align = c->align,
                                   .name = c->name});
  *ret = c;
  return 0;
}

/* Index into cache_list of the first cache whose id is id or above (ncaches when none).
 * Ids only grow and cache_create appends, so the list ascends by id (ledger_check). */
static size_t cache_index_from(const ledger_t *l, uint32_t id) {
  size_t lo = 0, hi = l->ncaches;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (l->cache_list[mid]->id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Nobody has c open (so nobody holds its objects): magazine drained, slabs back to the
 * buddy, records freed.  Its id is never given out again (slab.c). */
static void cache_destroy(ledger_t *l, lcache_t *c) {
  size_t i = cache_index_from(l, c->id);
  int rc;

  PP_IASSERT(c->openers == 0 && c->held == 0);
  PP_ASSERT(i < l->ncaches && l->cache_list[i] == c);
  u64map_del(&l->caches, c->id);
  count_down(&l->scope_caches, c->scope);
  memmove(&l->cache_list[i], &l->cache_list[i + 1],
          (l->ncaches - i - 1) * sizeof *l->cache_list);
  l->ncaches--;
  aside_return_cache(l, c);
  mag_cpu_destroy(c->mag);     /* its magazines go to the depot */
  mag_depot_destroy(c->depot); /* which drains them to the slabs */
  rc = slab_cache_destroy(c->cache);
  if (rc) log_err("slab_cache_destroy(%s): %s", c->name, pp_strerror(rc));
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_CACHE_DESTROY, .cache_id = c->id});
  free(c);
  holes_settle(l); /* lost pages of its slabs, free now */
}

/* h opens c once more. */
static int cache_hold(ledger_t *l, ledger_holder_t *h, lcache_t *c) {
  uint64_t n = map_count(&h->opens, c->id);
  if (u64map_put(&h->opens, c->id, n + 1)) return PP_ENOPRIVMEM;
  if (n == 0) c->openers++;
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_CACHE_OPEN,
                                   .session = h->ident.session_id,
                                   .cache_id = c->id,
                                   .count = 1});
  return 0;
}

/* h drops opens of c (all it has when opens == 0 or more than it has). */
static void cache_unhold(ledger_t *l, ledger_holder_t *h, lcache_t *c, uint64_t opens) {
  uint64_t n = map_count(&h->opens, c->id);
  PP_IASSERT(n > 0);
  if (opens == 0 || opens >= n) {
    opens = n;
    u64map_del(&h->opens, c->id);
    c->openers--;
  } else {
    u64map_put(&h->opens, c->id, n - opens); /* key exists: no alloc */
  }
  ledger_record(l, &(ledger_rec_t){.op = LEDGER_OP_CACHE_CLOSE,
                                   .session = h->ident.session_id,
                                   .cache_id = c->id,
                                   .count = opens});
}

/* ---- compositions ------------------------------------------------------------------- */

/* The last holder went: the name is forgotten, the charge lifted, the block returned. */
static void buf_release(ledger_t *l, lbuf_t *b) {
  if (b->qname) name_unpublish(l, b);
  uncharge(l, b->owner_uid, b->size);
  buf_destroy(l, b);
}

/* The charged uid has no holder of b left: the longest-standing holder's uid pays. */
static void charge_follow(ledger_t *l, lbuf_t *b) {
  uid_t to;
  for (uint32_t i = 0; i < b->nholders; i++)
    if (b->holders[i]->ident.uid == b->owner_uid) return;
  to = b->holders[0]->ident.uid;
  uncharge(l, b->owner_uid, b->size);
  charge(l, to, b->size);
  buf_set_owner(l, b, to);
}

static void buf_unhold(ledger_t *l, ledger_holder_t *h, lbuf_t *b, uint64_t refs) {
  hold_drop(l, h, b, refs);
  if (b->nholders == 0)
    buf_release(l, b);
  else
    charge_follow(l, b);
}

static void cache_close_if_unused(ledger_t *l, lcache_t *c) {
  if (c->openers == 0) cache_destroy(l, c);
}

static void buf_info(const lbuf_t *b, ledger_buf_info_t *ret) {
  ret->handle = b->handle;
  ret->offset = b->offset;
  ret->size = b->size;
  ret->phys = b->phys;
  ret->order = b->order;
  ret->contiguous = b->contiguous;
  ret->charged_uid = b->owner_uid;
  ret->name = b->name;
  ret->qname = b->qname;
  ret->scope = b->scope;
  ret->nholders = b->nholders;
  ret->buf = b;
  ret->damaged = b->damaged;
  ret->lost_bytes = b->lost_bytes;
}

static void cache_info(const lcache_t *c, ledger_cache_info_t *ret) {
  ret->id = c->id;
  ret->object_size = c->object_size;
  ret->align = c->align;
  ret->objs_per_slab = c->objs_per_slab;
  ret->slab_bytes = c->slab_bytes;
  ret->obj_charge = c->obj_charge;
  ret->scope = c->scope;
  ret->name = c->name;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static bool ledger_contig_cb(void *ctx, uint64_t offset, uint64_t len) {
  return region_is_contiguous(ctx, offset, len);
}

static ledger_t *ledger_alloc(const ledger_config_t *cfg) {
  ledger_t *l = calloc(1, sizeof *l);
  if (!l) return NULL;
  l->cfg = *cfg;
  if (l->cfg.nshared_groups > LEDGER_SHARED_GROUPS_MAX)
    l->cfg.nshared_groups = LEDGER_SHARED_GROUPS_MAX;
  l->next_handle = 1;
  u64map_init(&l->by_handle);
  u64map_init(&l->by_offset);
  u64map_init(&l->by_name);
  u64map_init(&l->uids);
  u64map_init(&l->uid_cache_objs);
  u64map_init(&l->obj_owner);
  u64map_init(&l->caches);
  u64map_init(&l->scope_caches);
  u64map_init(&l->quarantine);
  u64map_init(&l->aside);
  return l;
}

/* The buddy and slab layer over l->region, and the runs. */
static int ledger_init_allocators(ledger_t *l) {
  int err = buddy_create(region_size(l->region), region_page_size(l->region), ledger_contig_cb,
                         l->region, &l->buddy);
  if (err) return err;
  err = slab_create(l->buddy, &l->slab);
  if (err) return err;
  if (region_phys_known(l->region)) {
    size_t n = region_runs(l->region, NULL, 0);
    if (n) {
      l->runs = calloc(n, sizeof *l->runs);
      if (!l->runs) return PP_ENOPRIVMEM;
      l->nruns = region_runs(l->region, l->runs, n);
      if (l->nruns > n) l->nruns = n;
    }
  }
  return 0;
}

int ledger_create(const ledger_config_t *cfg, ledger_t **ret) {
  region_config_t rc = {.size = cfg->size,
                        .policy = cfg->policy,
                        .no_sort = cfg->no_sort_pages,
                        .bind_node = cfg->bind_node,
                        .numa_node = cfg->numa_node,
                        .name = cfg->memfd_name ? cfg->memfd_name : "pinpool",
                        .log = log_region_cb,
                        .log_ctx = NULL};
  ledger_t *l = ledger_alloc(cfg);
  int err;

  if (!l) return PP_ENOPRIVMEM;
  err = region_create(&rc, &l->region);
  if (!err) err = ledger_init_allocators(l);
  if (err) {
    ledger_destroy(l);
    return err;
  }
  *ret = l;
  return 0;
}

int ledger_adopt(const ledger_config_t *cfg, int region_fd, ledger_t **ret) {
  region_config_t rc = {.policy = REGION_PAGE_AUTO, /* whatever the memfd has */
                        .name = "pinpool",
                        .log = log_region_cb,
                        .log_ctx = NULL};
  ledger_t *l = ledger_alloc(cfg);
  int fd = fcntl(region_fd, F_DUPFD_CLOEXEC, 0), err;

  if (!l || fd < 0) {
    if (fd >= 0) close(fd);
    free(l);
    return l ? PP_EOS : PP_ENOPRIVMEM;
  }
  err = region_adopt(fd, &rc, &l->region); /* the region owns the duplicate */
  if (err) {
    close(fd);
    ledger_destroy(l);
    return err;
  }
  l->cfg.size = region_size(l->region);
  err = ledger_init_allocators(l);
  if (err) {
    ledger_destroy(l);
    return err;
  }
  *ret = l;
  return 0;
}

void ledger_set_recorder(ledger_t *l, ledger_recorder_fn fn, void *ctx) {
  l->rec_fn = fn;
  l->rec_ctx = ctx;
}

void ledger_destroy(ledger_t *l) {
  size_t it = 0;
  uint64_t k, v;

  if (!l) return;
  PP_ASSERT(l->holders == NULL);
  while (u64map_next(&l->by_handle, &it, &k, &v)) {
    lbuf_t *b = (lbuf_t *)(uintptr_t)v;
    free(b->qname);
    free(b->holders);
    free(b);
  }
  /* With every holder released no cache is open, so none is left: this is for safety. */
  for (size_t i = 0; i < l->ncaches; i++) {
    lcache_t *c = l->cache_list[i];
    if (c->mag) mag_cpu_destroy(c->mag);
    if (c->depot) mag_depot_destroy(c->depot);
    free(c);
  }
  free(l->cache_list);
  if (l->slab) slab_destroy(l->slab);
  if (l->buddy) buddy_destroy(l->buddy);
  if (l->region) region_destroy(l->region);
  free(l->runs);
  it = 0;
  while (u64map_next(&l->uids, &it, &k, &v))
    free((luid_t *)(uintptr_t)v);
  u64map_fini(&l->by_handle);
  u64map_fini(&l->by_offset);
  u64map_fini(&l->by_name);
  u64map_fini(&l->uids);
  u64map_fini(&l->uid_cache_objs);
  u64map_fini(&l->obj_owner);
  u64map_fini(&l->caches);
  u64map_fini(&l->scope_caches);
  u64map_fini(&l->quarantine);
  u64map_fini(&l->aside);
  free(l);
}

const ledger_config_t *ledger_config(const ledger_t *l) {
  return &l->cfg;
}

const region_t *ledger_region(const ledger_t *l) {
  return l->region;
}

const region_run_t *ledger_runs(const ledger_t *l, size_t *ret_n) {
  *ret_n = l->nruns;
  return l->runs;
}

uint64_t ledger_free_bytes(ledger_t *l) {
  buddy_stats_t st;
  buddy_get_stats(l->buddy, &st);
  return st.free_bytes;
}

/* ---- holders ------------------------------------------------------------------------ */

int ledger_holder_create(ledger_t *l, const ledger_ident_t *ident, ledger_holder_t **ret) {
  ledger_holder_t *h = calloc(1, sizeof *h);
  luid_t *u;

  if (!h) return PP_ENOPRIVMEM;
  u = uid_rec(l, ident->uid);
  if (!u) {
    u = calloc(1, sizeof *u);
    if (!u || u64map_put(&l->uids, ident->uid, (uint64_t)(uintptr_t)u)) {
      free(u);
      free(h);
      return PP_ENOPRIVMEM;
    }
  }
  u->nholders++;
  h->u = u;
  h->ident = *ident;
  u64map_init(&h->holds);
  u64map_init(&h->objs);
  u64map_init(&h->opens);
  u64map_init(&h->cache_objs);
  h->next = l->holders;
  if (l->holders) l->holders->prev = h;
  l->holders = h;
  l->nholders++;
  *ret = h;
  PP_VALIDATE(ledger_check, l);
  return 0;
}

const ledger_ident_t *ledger_holder_ident(const ledger_holder_t *h) {
  return &h->ident;
}

void ledger_holder_totals(const ledger_holder_t *h, ledger_holder_totals_t *ret) {
  ret->buf_refs = h->buf_refs;
  ret->buffers = u64map_len(&h->holds);
  ret->buf_bytes = h->buf_bytes;
  ret->objects = u64map_len(&h->objs);
  ret->obj_bytes = h->obj_bytes;
  ret->caches = u64map_len(&h->opens);
  ret->cached_buffers = h->cached_buffers < ret->buffers ? h->cached_buffers : ret->buffers;
  ret->cached_bytes = h->cached_bytes < h->buf_bytes ? h->cached_bytes : h->buf_bytes;
}

void ledger_holder_set_cached(ledger_holder_t *h, uint64_t buffers, uint64_t bytes) {
  h->cached_buffers = buffers;
  h->cached_bytes = bytes;
}

int ledger_holder_set_groups(ledger_t *l, ledger_holder_t *h, const gid_t *gids, size_t n) {
  gid_t *v = NULL;
  uint32_t m = 0;

  if (n) {
    v = calloc(n, sizeof *v);
    if (!v) return PP_ENOPRIVMEM;
    for (size_t i = 0; i < n; i++)
      if (in_shared_groups(l, gids[i])) v[m++] = gids[i];
  }
  free(h->groups);
  h->groups = v;
  h->ngroups = m;
  h->groups_known = true;
  return 0;
}

bool ledger_holder_groups_known(const ledger_holder_t *h) {
  return h->groups_known;
}

/* Keys of m, collected before a walk that deletes from m (u64map_next needs m unchanged
 * between calls).  NULL when malloc fails or m is empty. */
static uint64_t *collect_keys(const u64map_t *m, size_t *ret_n) {
  size_t it = 0, n = 0;
  uint64_t k, *keys = u64map_len(m) ? malloc(u64map_len(m) * sizeof *keys) : NULL;
  if (keys)
    while (u64map_next(m, &it, &k, NULL))
      keys[n++] = k;
  *ret_n = n;
  return keys;
}

/* The first key of a non-empty m: the fallback walk when collect_keys cannot allocate
 * (restarting from slot 0 after each deletion; quadratic, but only without memory). */
static uint64_t first_key(const u64map_t *m) {
  size_t it = 0;
  uint64_t k = 0;
  u64map_next(m, &it, &k, NULL);
  return k;
}

/* One of a releasing holder's objects back to its cache; *bytes collects what its uid
 * stops paying (the object, and the cache's slab with the uid's last object of it). */
static void give_object(ledger_t *l, ledger_holder_t *h, uint64_t off, u64map_t *touched,
                        uint64_t *bytes) {
  uint64_t cid = 0;
  lcache_t *c;
  u64map_get(&h->objs, off, &cid);
  c = cache_by_id(l, (uint32_t)cid);
  PP_ASSERT(c != NULL);
  obj_give(l, h, c, off);
  obj_return(l, c, off);
  *bytes += c->obj_charge;
  if (!u64map_get(&l->uid_cache_objs, uid_cache_key(h->ident.uid, c->id), NULL))
    *bytes += c->slab_bytes;
  u64map_put(touched, cid, 1); /* on failure that cache just keeps its empty slabs a while */
}

static void close_cache_of(ledger_t *l, ledger_holder_t *h, uint64_t id) {
  lcache_t *c = cache_by_id(l, (uint32_t)id);
  PP_ASSERT(c != NULL);
  cache_unhold(l, h, c, 0);
  cache_close_if_unused(l, c);
}

void ledger_holder_release(ledger_t *l, ledger_holder_t *h) {
  u64map_t touched;
  uint64_t *keys, k, obj_bytes = 0;
  size_t n, it;

  /* Buffers: the last holder's reference returns the block; a buffer others still hold
   * may pass its charge on. */
  keys = collect_keys(&h->holds, &n);
  if (keys) {
    for (size_t i = 0; i < n; i++)
      buf_unhold(l, h, buf_by_handle(l, keys[i]), 0);
    free(keys);
  }
  while (u64map_len(&h->holds))
    buf_unhold(l, h, buf_by_handle(l, first_key(&h->holds)), 0);

  /* Objects: back through the magazine, then each cache used is drained and shrunk. */
  u64map_init(&touched);
  keys = collect_keys(&h->objs, &n);
  if (keys) {
    for (size_t i = 0; i < n; i++)
      give_object(l, h, keys[i], &touched, &obj_bytes);
    free(keys);
  }
  while (u64map_len(&h->objs))
    give_object(l, h, first_key(&h->objs), &touched, &obj_bytes);
  if (obj_bytes) uncharge(l, h->ident.uid, obj_bytes);
  it = 0;
  while (u64map_next(&touched, &it, &k, NULL)) {
    lcache_t *c = cache_by_id(l, (uint32_t)k);
    mag_drain(c->depot, c->mag);
    slab_cache_shrink(c->cache);
  }
  u64map_fini(&touched);
  holes_settle(l); /* lost pages of the slabs shrink freed */

  /* Opens: a cache nobody has open any more goes. */
  keys = collect_keys(&h->opens, &n);
  if (keys) {
    for (size_t i = 0; i < n; i++)
      close_cache_of(l, h, keys[i]);
    free(keys);
  }
  while (u64map_len(&h->opens))
    close_cache_of(l, h, first_key(&h->opens));

  PP_ASSERT(h->u->nholders > 0);
  if (--h->u->nholders == 0) {
    PP_ASSERT(h->u->charged == 0); /* its buffers moved on or went, its objects went */
    u64map_del(&l->uids, h->ident.uid);
    free(h->u);
  }
  if (h->prev)
    h->prev->next = h->next;
  else
    l->holders = h->next;
  if (h->next) h->next->prev = h->prev;
  l->nholders--;
  u64map_fini(&h->holds);
  u64map_fini(&h->objs);
  u64map_fini(&h->opens);
  u64map_fini(&h->cache_objs);
  free(h->groups);
  free(h);
  PP_VALIDATE(ledger_check, l);
}

/* ---- buffers ------------------------------------------------------------------------ */

/* A buffer name from a request: its scope and the name proper, checked. */
static int parse_buf_name(const ledger_holder_t *h, const char *name, ledger_scope_t *scope,
                          const char **rest, ledger_why_t *why) {
  int rc = ledger_name_parse(name, h->ident.uid, scope, rest, why);
  if (rc) return rc;
  if (!**rest) return fail(why, PP_EINVAL, "'%s' has a scope but no name", name);
  if (strlen(*rest) > LEDGER_NAME_MAX)
    return fail(why, PP_EINVAL, "name longer than %u bytes", LEDGER_NAME_MAX);
  if (utf8_prefix(*rest, LEDGER_NAME_MAX) != strlen(*rest))
    return fail(why, PP_EINVAL, "name is not valid UTF-8");
  return 0;
}

static int buf_alloc(ledger_t *l, ledger_holder_t *h, uint64_t size, unsigned flags,
                     const char *name, ledger_why_t *why, ledger_buf_info_t *ret) {
  const unsigned known = LEDGER_ALLOC_CONTIG | LEDGER_ALLOC_ZERO;
  uid_t uid = h->ident.uid;
  ledger_scope_t scope = 0;
  const char *rest = NULL;
  char q[LEDGER_QNAME_MAX];
  unsigned order, bad;
  uint64_t offset, bsize;
  lbuf_t *b;
  int rc;

  if (name && !name[0]) name = NULL;
  if (flags & ~known) return fail(why, PP_EINVAL, "unknown alloc flags 0x%x", flags & ~known);
  if (size == 0) return fail(why, PP_EINVAL, "size 0");
  if (name && (rc = parse_buf_name(h, name, &scope, &rest, why))) return rc;
  if (size > region_size(l->region) || buddy_order_for_size(size, &order))
    return fail(why, PP_ERANGE, "size %" PRIu64 " exceeds the region (%" PRIu64 " bytes)", size,
                region_size(l->region));
  bsize = buddy_order_size(order);
  if (name) {
    if ((rc = may_create(l, h, scope, "publish", name, why))) return rc;
    qualify(scope, rest, q);
    if (buf_by_qname(l, q))
      return fail(why, PP_EEXIST, "a buffer named '%s' is already published", name);
  }
  if (buffer_limit_reached(l, h))
    return fail(why, PP_ELIMIT, "this session already holds %" PRIu64 " buffers (limit %u)",
                h->buf_refs, l->cfg.max_buffers);
  if (!quota_allows(l, uid, bsize)) return fail_quota(l, uid, bsize, why);

  rc = take_block(l, order, flags, &offset, &bad);
  if (rc == PP_ELOSTPAGE)
    return fail(why, rc,
                "%u free blocks of %" PRIu64 " bytes had pages punched out of the region by a "
                "client and none could be replaced; they are kept out of circulation",
                bad, bsize);
  if (rc == PP_ENOCONTIG)
    return fail(why, rc, "no physically contiguous block of %" PRIu64 " bytes%s", bsize,
                !region_phys_known(l->region)  ? " (physical addresses unknown)"
                : !region_hugepages(l->region) ? " (no hugepages)"
                                               : "");
  if (rc == PP_ENOMEM) return fail(why, rc, "no free block of %" PRIu64 " bytes", bsize);
  if (rc == PP_ERANGE) return fail(why, rc, "size %" PRIu64 " exceeds the largest block", size);
  if (rc) return fail(why, rc, "buddy_alloc: %s", pp_strerror(rc));

  if (buf_create(l, l->next_handle, offset, order, uid, &b)) {
    buddy_free(l->buddy, offset);
    return fail_nomem(why);
  }
  l->next_handle++; /* consumed even if undone below: a journal never sees a handle twice */
  charge(l, uid, bsize);
  if (hold_add(l, h, b)) {
    uncharge(l, uid, bsize);
    buf_destroy(l, b);
    return fail_nomem(why);
  }
  if (name && name_publish(l, b, scope, rest)) {
    buf_unhold(l, h, b, 0); /* releases everything above, block included */
    return fail_nomem(why);
  }
  buf_info(b, ret); /* zeroed by take_block when asked */
  return 0;
}

int ledger_buf_alloc(ledger_t *l, ledger_holder_t *h, uint64_t size, unsigned flags,
                     const char *name, ledger_why_t *why, ledger_buf_info_t *ret) {
  int rc = buf_alloc(l, h, size, flags, name, why, ret);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int buf_lookup(ledger_t *l, ledger_holder_t *h, const char *name, ledger_why_t *why,
                      ledger_buf_info_t *ret) {
  ledger_scope_t scope;
  const char *rest;
  char q[LEDGER_QNAME_MAX];
  lbuf_t *b = NULL;
  int rc;

  if (!name || !name[0]) return fail(why, PP_EINVAL, "lookup needs a name");
  if ((rc = ledger_name_parse(name, h->ident.uid, &scope, &rest, why))) return rc;
  if (rest[0] && strlen(rest) <= LEDGER_NAME_MAX) {
    qualify(scope, rest, q);
    b = buf_by_qname(l, q);
  }
  if (!b) return fail(why, PP_ENOENT, "no buffer named '%.*s'", (int)LEDGER_NAME_MAX, name);
  if (buffer_limit_reached(l, h))
    return fail(why, PP_ELIMIT, "this session already holds %" PRIu64 " buffers (limit %u)",
                h->buf_refs, l->cfg.max_buffers);
  if (hold_add(l, h, b)) return fail_nomem(why);
  buf_check_holes(l, b);
  buf_info(b, ret);
  return 0;
}

int ledger_buf_lookup(ledger_t *l, ledger_holder_t *h, const char *name, ledger_why_t *why,
                      ledger_buf_info_t *ret) {
  int rc = buf_lookup(l, h, name, why, ret);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int buf_free(ledger_t *l, ledger_holder_t *h, uint64_t handle, ledger_why_t *why) {
  lbuf_t *b;
  /* One answer for every handle h does not hold: someone else's, freed, never given. */
  if (!u64map_get(&h->holds, handle, NULL))
    return fail(why, PP_ENOENT, "this session holds no buffer with handle %" PRIu64, handle);
  b = buf_by_handle(l, handle);
  PP_ASSERT(b != NULL);
  buf_unhold(l, h, b, 1);
  return 0;
}

int ledger_buf_free(ledger_t *l, ledger_holder_t *h, uint64_t handle, ledger_why_t *why) {
  int rc = buf_free(l, h, handle, why);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

/* ---- bulk requests -------------------------------------------------------------------
 * alloc_bulk and free_bulk are alloc and free repeated, all or nothing, in one request:
 * the same primitives in the same order (so the journal sees them as one transaction and
 * nothing more is needed for restart survival), validated as a whole first.  They exist
 * so that a client can keep a cache of small blocks in front of the daemon (libpinpool's
 * buffer caches) and fill and empty it a batch at a time. */

static int buf_alloc_bulk(ledger_t *l, ledger_holder_t *h, uint64_t size, unsigned flags,
                          uint32_t count, ledger_why_t *why, ledger_buf_info_t *ret) {
  const unsigned known = LEDGER_ALLOC_CONTIG | LEDGER_ALLOC_ZERO;
  uid_t uid = h->ident.uid;
  unsigned order, bad;
  uint64_t bsize, total, offset;
  lbuf_t **bufs;
  uint32_t done = 0;
  int rc;

  if (flags & ~known) return fail(why, PP_EINVAL, "unknown alloc flags 0x%x", flags & ~known);
  if (size == 0) return fail(why, PP_EINVAL, "size 0");
  if (count == 0 || count > LEDGER_OBJECTS_MAX)
    return fail(why, PP_ERANGE, "count %u outside 1..%u", count, LEDGER_OBJECTS_MAX);
  if (size > region_size(l->region) || buddy_order_for_size(size, &order))
    return fail(why, PP_ERANGE, "size %" PRIu64 " exceeds the region (%" PRIu64 " bytes)", size,
                region_size(l->region));
  bsize = buddy_order_size(order);
  total = bsize * count; /* count <= 1024 and bsize <= the region: no overflow */
  if (l->cfg.max_buffers && h->buf_refs + count > l->cfg.max_buffers)
    return fail(why, PP_ELIMIT,
                "this session holds %" PRIu64 " buffers; %u more exceed the limit of %u",
                h->buf_refs, count, l->cfg.max_buffers);
  if (!quota_allows(l, uid, total)) return fail_quota(l, uid, total, why);
  bufs = malloc(count * sizeof *bufs);
  if (!bufs) return fail_nomem(why);

  for (; done < count; done++) {
    lbuf_t *b;
    rc = take_block(l, order, flags, &offset, &bad);
    if (rc == PP_ELOSTPAGE) {
      fail(why, rc,
           "buffer %u of %u: %u free blocks of %" PRIu64 " bytes had pages punched out of the "
           "region by a client and none could be replaced; nothing allocated",
           done, count, bad, bsize);
      goto undo;
    }
    if (rc == PP_ENOCONTIG) {
      fail(why, rc, "buffer %u of %u: no physically contiguous block of %" PRIu64 " bytes%s",
           done, count, bsize,
           !region_phys_known(l->region)  ? " (physical addresses unknown)"
           : !region_hugepages(l->region) ? " (no hugepages)"
                                          : "");
      goto undo;
    }
    if (rc == PP_ENOMEM) {
      fail(why, rc, "buffer %u of %u: no free block of %" PRIu64 " bytes; nothing allocated",
           done, count, bsize);
      goto undo;
    }
    if (rc == PP_ERANGE) {
      fail(why, rc, "size %" PRIu64 " exceeds the largest block", size);
      goto undo;
    }
    if (rc) {
      fail(why, rc, "buddy_alloc: %s", pp_strerror(rc));
      goto undo;
    }
    if (buf_create(l, l->next_handle, offset, order, uid, &b)) {
      buddy_free(l->buddy, offset);
      rc = fail_nomem(why);
      goto undo;
    }
    l->next_handle++; /* consumed even if undone below, as for alloc */
    charge(l, uid, bsize);
    if (hold_add(l, h, b)) {
      uncharge(l, uid, bsize);
      buf_destroy(l, b);
      rc = fail_nomem(why);
      goto undo;
    }
    bufs[done] = b;
  }
  /* Described once all are taken: a later take_block may have moved an earlier block's
   * address (holes_sync after a repair). */
  for (uint32_t i = 0; i < count; i++)
    buf_info(bufs[i], &ret[i]);
  free(bufs);
  return 0;

undo:
  while (done > 0)
    buf_unhold(l, h, bufs[--done], 0); /* the last reference: record, charge and block go */
  free(bufs);
  return rc;
}

int ledger_buf_alloc_bulk(ledger_t *l, ledger_holder_t *h, uint64_t size, unsigned flags,
                          uint32_t count, ledger_why_t *why, ledger_buf_info_t *ret) {
  int rc = buf_alloc_bulk(l, h, size, flags, count, why, ret);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int buf_free_bulk(ledger_t *l, ledger_holder_t *h, const uint64_t *handles, size_t n,
                         ledger_why_t *why) {
  u64map_t seen; /* handle -> references of it this request drops so far */
  int rc = 0;

  if (n == 0) return 0;
  if (n > LEDGER_OBJECTS_MAX)
    return fail(why, PP_ERANGE, "%zu handles; at most %u per request", n, LEDGER_OBJECTS_MAX);
  u64map_init(&seen);
  for (size_t i = 0; i < n; i++) {
    uint64_t held = map_count(&h->holds, handles[i]), used = map_count(&seen, handles[i]);
    /* The one answer for a handle h does not hold, as free gives; a handle listed more
     * often than h holds references to it is not held for the extra ones. */
    if (used >= held) {
      rc = fail(why, PP_ENOENT,
                "this session holds no buffer with handle %" PRIu64 " (index %zu)%s; nothing "
                "freed",
                handles[i], i, used ? " for this many references" : "");
      goto out;
    }
    if (u64map_put(&seen, handles[i], used + 1)) {
      rc = fail_nomem(why);
      goto out;
    }
  }
  for (size_t i = 0; i < n; i++) {
    lbuf_t *b = buf_by_handle(l, handles[i]);
    PP_ASSERT(b != NULL);
    buf_unhold(l, h, b, 1);
  }
out:
  u64map_fini(&seen);
  return rc;
}

int ledger_buf_free_bulk(ledger_t *l, ledger_holder_t *h, const uint64_t *handles, size_t n,
                         ledger_why_t *why) {
  int rc = buf_free_bulk(l, h, handles, n, why);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

int ledger_buf_describe(ledger_t *l, ledger_holder_t *h, uint64_t handle, ledger_why_t *why,
                        ledger_buf_info_t *ret) {
  lbuf_t *b;
  if (!u64map_get(&h->holds, handle, NULL))
    return fail(why, PP_ENOENT, "this session holds no buffer with handle %" PRIu64, handle);
  b = buf_by_handle(l, handle);
  PP_ASSERT(b != NULL);
  buf_check_holes(l, b); /* as lookup: addresses as the pages are now */
  buf_info(b, ret);
  PP_VALIDATE(ledger_check, l);
  return 0;
}

uint64_t ledger_addr_generation(const ledger_t *l) {
  return region_generation(l->region);
}

/* ---- caches and objects ------------------------------------------------------------- */

static int cache_open(ledger_t *l, ledger_holder_t *h, const char *name, uint32_t object_size,
                      uint32_t align, ledger_why_t *why, ledger_cache_info_t *ret) {
  ledger_scope_t scope;
  const char *rest;
  char q[LEDGER_QNAME_MAX];
  slab_cache_t *sc;
  lcache_t *c;
  uint32_t want_align = align ? align : 8;
  uint64_t nscope;
  int rc;

  if (!name || !name[0])
    return fail(why, PP_EINVAL, "a cache name has 1 to %u bytes", LEDGER_CACHE_NAME_MAX);
  if ((rc = ledger_name_parse(name, h->ident.uid, &scope, &rest, why))) return rc;
  if (!rest[0] || strlen(rest) > LEDGER_CACHE_NAME_MAX)
    return fail(why, PP_EINVAL, "a cache name has 1 to %u bytes", LEDGER_CACHE_NAME_MAX);
  if (utf8_prefix(rest, LEDGER_CACHE_NAME_MAX) != strlen(rest))
    return fail(why, PP_EINVAL, "cache name is not valid UTF-8");
  if (align & (align - 1)) return fail(why, PP_EINVAL, "align %u is not a power of two", align);
  qualify(scope, rest, q);

  sc = slab_cache_find(l->slab, q);
  if (sc) {
    slab_info_t info;
    slab_cache_info(sc, &info);
    c = cache_by_id(l, info.id);
    PP_ASSERT(c != NULL);
    if (c->object_size != object_size || c->align != want_align)
      return fail(why, PP_EGEOMETRY, "cache '%s' exists with another object size or alignment",
                  name);
    if (cache_hold(l, h, c)) return fail_nomem(why);
    cache_info(c, ret);
    return 0;
  }

  if ((rc = may_create(l, h, scope, "create cache", name, why))) return rc;
  nscope = map_count(&l->scope_caches, scope);
  if (l->cfg.max_caches_per_uid && nscope >= l->cfg.max_caches_per_uid) {
    char p[LEDGER_SCOPE_PREFIX_MAX + 1];
    ledger_scope_prefix(scope, p, sizeof p);
    return fail(why, PP_ELIMIT, "%s already has %" PRIu64 " caches (limit %u per uid)", p,
                nscope, l->cfg.max_caches_per_uid);
  }
  if (l->cfg.max_caches && l->ncaches >= l->cfg.max_caches)
    return fail(why, PP_ELIMIT, "the daemon has %zu caches (limit %u)", l->ncaches,
                l->cfg.max_caches);
  rc = slab_cache_create(l->slab, q, object_size, align, &sc);
  if (rc == PP_ERANGE) return fail(why, rc, "object size %u out of range", object_size);
  if (rc == PP_ENOMEM) return fail_nomem(why); /* the slab registry's own malloc */
  if (rc) return fail(why, rc, "cache '%s': %s", name, pp_strerror(rc));
  if (cache_create(l, sc, scope, &c)) {
    slab_cache_destroy(sc);
    return fail_nomem(why);
  }
  if (cache_hold(l, h, c)) {
    cache_destroy(l, c);
    return fail_nomem(why);
  }
  cache_info(c, ret);
  return 0;
}

int ledger_cache_open(ledger_t *l, ledger_holder_t *h, const char *name, uint32_t object_size,
                      uint32_t align, ledger_why_t *why, ledger_cache_info_t *ret) {
  int rc = cache_open(l, h, name, object_size, align, why, ret);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int cache_close(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, ledger_why_t *why) {
  lcache_t *c = cache_of_holder(l, h, cache_id);
  uint64_t held;

  if (!c) return fail(why, PP_ENOENT, "no cache with id %u", cache_id);
  held = map_count(&h->cache_objs, c->id);
  if (held && map_count(&h->opens, c->id) == 1)
    return fail(why, PP_EBUSY,
                "this session holds %" PRIu64
                " objects of cache '%s': free them before closing it",
                held, c->name);
  cache_unhold(l, h, c, 1);
  cache_close_if_unused(l, c);
  return 0;
}

int ledger_cache_close(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, ledger_why_t *why) {
  int rc = cache_close(l, h, cache_id, why);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int cache_alloc(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, uint32_t count,
                       uint64_t *offs, ledger_why_t *why) {
  lcache_t *c = cache_of_holder(l, h, cache_id);
  uid_t uid = h->ident.uid;
  uint64_t bytes;
  unsigned got = 0, taken = 0;

  if (!c) return fail(why, PP_ENOENT, "no cache with id %u", cache_id);
  if (count == 0 || count > LEDGER_OBJECTS_MAX)
    return fail(why, PP_ERANGE, "count %u outside 1..%u", count, LEDGER_OBJECTS_MAX);
  /* The objects at their charge, and the cache's slab with the uid's first object. */
  bytes = (uint64_t)count * c->obj_charge;
  if (!u64map_get(&l->uid_cache_objs, uid_cache_key(uid, c->id), NULL)) bytes += c->slab_bytes;
  if (!quota_allows(l, uid, bytes)) return fail_quota(l, uid, bytes, why);
  if (!offs) return fail_nomem(why);

  while (got < count) {
    if (mag_alloc(c->mag, &offs[got])) {
      for (unsigned i = 0; i < got; i++)
        mag_free(c->mag, offs[i]);
      return fail(why, PP_ENOMEM, "cache '%s': no memory for %u objects", c->name, count);
    }
    if (!region_lost_in(l->region, offs[got], c->object_size)) {
      got++;
    } else if (aside_put(l, c, offs[got])) { /* never hand out an object on a lost page */
      for (unsigned i = 0; i <= got; i++)
        mag_free(c->mag, offs[i]);
      return fail_nomem(why);
    }
  }
  for (; taken < count; taken++)
    if (obj_take(l, h, c, offs[taken])) goto undo;
  charge(l, uid, bytes);
  return 0;

undo:
  for (unsigned i = 0; i < taken; i++)
    obj_give(l, h, c, offs[i]);
  for (unsigned i = 0; i < got; i++)
    mag_free(c->mag, offs[i]);
  return fail_nomem(why);
}

int ledger_cache_alloc(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, uint32_t count,
                       uint64_t *offs, ledger_why_t *why) {
  int rc = cache_alloc(l, h, cache_id, count, offs, why);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static int cache_free(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, const uint64_t *offs,
                      size_t n, ledger_why_t *why) {
  lcache_t *c = cache_of_holder(l, h, cache_id);
  uint64_t bytes;
  u64map_t seen;
  int rc = 0;

  if (!c) return fail(why, PP_ENOENT, "no cache with id %u", cache_id);
  u64map_init(&seen);
  /* Validate everything first: all or nothing.  An offset h does not hold gets one
   * answer, whoever else holds it. */
  for (size_t i = 0; i < n && !rc; i++) {
    uint64_t off = offs[i], cid;
    if (!u64map_get(&h->objs, off, &cid)) {
      rc = fail(why, PP_ENOENT,
                "offset %" PRIu64
                " (index %zu) is not an object this session holds in cache '%s'",
                off, i, c->name);
    } else if (cid != c->id) {
      rc = fail(why, PP_EINVAL,
                "offset %" PRIu64 " (index %zu) belongs to cache %" PRIu64 ", not %u", off, i,
                cid, c->id);
    } else if (n > 1) {
      if (u64map_get(&seen, off, NULL))
        rc = fail(why, PP_EDOUBLEFREE, "offset %" PRIu64 " (index %zu) appears twice", off, i);
      else if (u64map_put(&seen, off, 1))
        rc = fail_nomem(why);
    }
  }
  u64map_fini(&seen);
  if (rc || !n) return rc;

  for (size_t i = 0; i < n; i++) {
    obj_give(l, h, c, offs[i]);
    obj_return(l, c, offs[i]);
  }
  bytes = (uint64_t)n * c->obj_charge;
  if (!u64map_get(&l->uid_cache_objs, uid_cache_key(h->ident.uid, c->id), NULL))
    bytes += c->slab_bytes; /* the uid's last object of c went */
  uncharge(l, h->ident.uid, bytes);
  return 0;
}

int ledger_cache_free(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, const uint64_t *offs,
                      size_t n, ledger_why_t *why) {
  int rc = cache_free(l, h, cache_id, offs, n, why);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

static uint64_t slab_count(ledger_t *l) {
  uint64_t n = 0;
  for (size_t i = 0; i < l->ncaches; i++) {
    slab_info_t info;
    slab_cache_info(l->cache_list[i]->cache, &info);
    n += info.num_slabs;
  }
  return n;
}

void ledger_shrink(ledger_t *l, ledger_shrink_result_t *ret) {
  uint64_t before = ledger_free_bytes(l), drained = 0, slabs;

  /* Count slabs before and after: the drain itself releases slabs that become empty
   * beyond the slab layer's keep limit, which slab_shrink()'s count does not see. */
  slabs = slab_count(l);
  for (size_t i = 0; i < l->ncaches; i++) {
    int n = mag_drain(l->cache_list[i]->depot, l->cache_list[i]->mag);
    if (n > 0) drained += (uint64_t)n;
  }
  (void)slab_shrink(l->slab);
  holes_settle(l); /* lost pages of the slabs it freed */
  ret->objects_drained = drained;
  ret->slabs_released = slabs - slab_count(l);
  ret->bytes_released = ledger_free_bytes(l) - before;
  PP_VALIDATE(ledger_check, l);
}

/* ---- read-only views ---------------------------------------------------------------- */

void ledger_get_totals(const ledger_t *l, ledger_totals_t *ret) {
  ret->buf_bytes = l->buf_bytes;
  ret->nbufs = l->nbufs;
  ret->obj_bytes = l->obj_bytes;
  ret->nholders = l->nholders;
  ret->ncaches = (uint32_t)l->ncaches;
}

void ledger_buddy_stats(ledger_t *l, buddy_stats_t *ret) {
  buddy_get_stats(l->buddy, ret);
}

uint64_t ledger_largest_free_contig(ledger_t *l) {
  return buddy_largest_free_contig(l->buddy);
}

size_t ledger_ncaches(const ledger_t *l) {
  return l->ncaches;
}

void ledger_cache_stats(ledger_t *l, size_t i, ledger_cache_stats_t *ret) {
  lcache_t *c = l->cache_list[i];
  ret->name = c->name;
  ret->openers = c->openers;
  ret->held = c->held;
  slab_cache_info(c->cache, &ret->slab);
  mag_get_stats(c->depot, &ret->mag);
}

size_t ledger_cache_index_from(const ledger_t *l, uint32_t id) {
  return cache_index_from(l, id);
}

bool ledger_buf_get(const ledger_t *l, uint64_t handle, ledger_buf_info_t *ret) {
  const lbuf_t *b = buf_by_handle(l, handle);
  if (!b) return false;
  buf_info(b, ret);
  return true;
}

bool ledger_buf_next_handle(const ledger_t *l, size_t *iter, uint64_t *ret_handle) {
  return u64map_next(&l->by_handle, iter, ret_handle, NULL);
}

bool ledger_buf_next(const ledger_t *l, size_t *iter, ledger_buf_info_t *ret) {
  uint64_t k, v;
  if (!u64map_next(&l->by_handle, iter, &k, &v)) return false;
  buf_info((const lbuf_t *)(uintptr_t)v, ret);
  return true;
}

const ledger_ident_t *ledger_buf_holder(const ledger_buf_t *b, uint32_t i) {
  PP_ASSERT(i < b->nholders);
  return &b->holders[i]->ident;
}

uint64_t ledger_mutations(const ledger_t *l, ledger_op_t op) {
  return op < LEDGER_OP__COUNT ? l->mutations[op] : 0;
}

/* ---- restart: the state as a model, and back ------------------------------------------- */

_Static_assert(JM_BUF_NAME_MAX == LEDGER_NAME_MAX, "a buffer's name in the journal");
static bool has_prefix(const char *s, ledger_scope_t scope);

/* The model's entry under k (a session, buffer or cache), NULL when absent. */
static const void *model_get(const u64map_t *map, uint64_t k) {
  uint64_t v;
  return u64map_get(map, k, &v) ? (const void *)(uintptr_t)v : NULL;
}
_Static_assert(JM_CACHE_NAME_MAX + 1 == SLAB_NAME_MAX, "a cache's name in the journal");

int ledger_export(const ledger_t *l, jmodel_t *m, char *why, size_t why_len) {
  uint64_t *keys = NULL, k, v;
  size_t n = 0, it;
  int rc;

  for (size_t i = 0; i < l->ncaches; i++) {
    const lcache_t *c = l->cache_list[i];
    if ((rc = jmodel_cache_create(m, c->id, c->scope, c->object_size, c->align, c->name,
                                  strlen(c->name), why, why_len)))
      return rc;
  }
  if ((rc = jmodel_sorted_keys(&l->by_handle, &keys, &n))) return rc;
  for (size_t i = 0; i < n && !rc; i++) {
    const lbuf_t *b = buf_by_handle(l, keys[i]);
    rc = jmodel_buf_create(m, b->handle, b->offset, b->order, (uint32_t)b->owner_uid, why,
                           why_len);
    if (!rc && b->qname)
      rc = jmodel_publish(m, b->handle, b->scope, b->name, strlen(b->name), why, why_len);
    for (uint32_t h = 0; h < b->nholders && !rc; h++)
      rc = jmodel_hold(m, b->holders[h]->ident.session_id, b->handle,
                       map_count(&b->holders[h]->holds, b->handle), why, why_len);
  }
  free(keys);
  for (const ledger_holder_t *h = l->holders; h && !rc; h = h->next) {
    uint64_t sid = h->ident.session_id;
    it = 0;
    while (!rc && u64map_next(&h->opens, &it, &k, &v))
      rc = jmodel_cache_open(m, sid, (uint32_t)k, v, why, why_len);
    it = 0;
    while (!rc && u64map_next(&h->objs, &it, &k, &v))
      rc = jmodel_obj_take(m, sid, (uint32_t)v, k, why, why_len);
  }
  if (!rc) jmodel_counters(m, 0, l->next_handle, l->next_cache_id);
  return rc;
}

/* A restore that failed half-way: forget the holders without giving anything back (the
 * caller destroys the ledger, its allocators and its region with it). */
static void restore_abandon(ledger_t *l) {
  ledger_holder_t *h, *next;
  size_t it = 0;
  uint64_t k, v;
  for (h = l->holders; h; h = next) {
    next = h->next;
    u64map_fini(&h->holds);
    u64map_fini(&h->objs);
    u64map_fini(&h->opens);
    u64map_fini(&h->cache_objs);
    free(h->groups);
    free(h);
  }
  l->holders = NULL;
  l->nholders = 0;
  while (u64map_next(&l->uids, &it, &k, &v))
    free((luid_t *)(uintptr_t)v);
  u64map_fini(&l->uids);
  u64map_init(&l->uids);
}

static int restore_fail(char *why, size_t why_len, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int restore_fail(char *why, size_t why_len, int rc, const char *fmt, ...) {
  if (why && why_len) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
  }
  return rc;
}

/* Every object of the model grouped by cache, in one pass: *ret_offs holds the objects of
 * l->cache_list[i] at [(*ret_start)[i], (*ret_start)[i + 1]).  PP_ECORRUPT when the
 * caches' counts do not add up to the objects; PP_ENOPRIVMEM. */
static int model_objects_by_cache(const ledger_t *l, const jmodel_t *m, uint64_t **ret_offs,
                                  size_t **ret_start) {
  size_t total = u64map_len(&m->obj_owner), it = 0, *start, *fill;
  uint64_t *offs, k, sid, pos;
  u64map_t idx; /* cache id -> its place in l->cache_list */
  int rc = PP_ENOPRIVMEM;

  u64map_init(&idx);
  offs = malloc((total ? total : 1) * sizeof *offs);
  start = calloc(l->ncaches + 1, sizeof *start);
  fill = calloc(l->ncaches + 1, sizeof *fill);
  if (!offs || !start || !fill) goto out;
  for (size_t i = 0; i < l->ncaches; i++) {
    const jm_cache_t *jc = model_get(&m->caches, l->cache_list[i]->id);
    start[i + 1] = start[i] + jc->objects;
    if (u64map_put(&idx, l->cache_list[i]->id, i)) goto out;
  }
  rc = PP_ECORRUPT;
  if (start[l->ncaches] != total) goto out;
  while (u64map_next(&m->obj_owner, &it, &k, &sid)) {
    const jm_session_t *js = model_get(&m->sessions, sid);
    uint64_t cid = 0;
    if (!js || !u64map_get(&js->objs, k, &cid) || !u64map_get(&idx, cid, &pos)) goto out;
    if (start[pos] + fill[pos] >= start[pos + 1]) goto out;
    offs[start[pos] + fill[pos]++] = k;
  }
  rc = 0;
out:
  u64map_fini(&idx);
  free(fill);
  if (rc) {
    free(offs);
    free(start);
    return rc;
  }
  *ret_offs = offs;
  *ret_start = start;
  return 0;
}

int ledger_restore(ledger_t *l, const jmodel_t *m, ledger_restore_fn on_holder, void *ctx,
                   char *why, size_t why_len) {
  ledger_recorder_fn rec = l->rec_fn;
  uint64_t *sids = NULL, *keys = NULL, *offs = NULL, k, v;
  size_t nsid = 0, n = 0, it, *ostart = NULL;
  u64map_t hmap; /* session id -> holder */
  int rc;

  u64map_init(&hmap);
  l->rec_fn = NULL; /* this is the journal's state coming back, not a change to record */
  if (l->holders || l->nbufs || l->ncaches) {
    rc = restore_fail(why, why_len, PP_EINVAL, "the ledger is not fresh");
    goto out;
  }
  if ((rc = jmodel_check(m, why, why_len))) goto out;

  /* Holders first, empty: a ledger with holders and nothing else is valid at every step
   * (ledger_holder_create validates it at PP_DEBUG=3). */
  if ((rc = jmodel_sorted_keys(&m->sessions, &sids, &nsid))) goto out;
  for (size_t i = 0; i < nsid; i++) {
    const jm_session_t *js = model_get(&m->sessions, sids[i]);
    ledger_ident_t ident = {.session_id = js->id, .pid = (pid_t)js->pid, .uid = js->uid};
    ledger_holder_t *h;
    if ((rc = ledger_holder_create(l, &ident, &h)) ||
        (rc = u64map_put(&hmap, js->id, (uint64_t)(uintptr_t)h))) {
      restore_fail(why, why_len, rc, "session %" PRIu64 ": out of private memory", js->id);
      goto out;
    }
  }

  /* Caches under their ids, in id order (the ledger lists them so). */
  if ((rc = jmodel_sorted_keys(&m->caches, &keys, &n))) goto out;
  for (size_t i = 0; i < n; i++) {
    const jm_cache_t *jc = model_get(&m->caches, keys[i]);
    slab_cache_t *sc;
    lcache_t *c;
    if (!has_prefix(jc->name, jc->scope)) {
      rc = restore_fail(why, why_len, PP_ECORRUPT, "cache %u '%s' is not in its scope", jc->id,
                        jc->name);
      goto out;
    }
    rc = slab_cache_create_with_id(l->slab, jc->name, jc->object_size, jc->align, jc->id, &sc);
    if (rc) {
      restore_fail(why, why_len, rc == PP_ENOPRIVMEM ? rc : PP_ECORRUPT,
                   "cache %u '%s' (%u bytes, align %u): %s", jc->id, jc->name, jc->object_size,
                   jc->align, pp_strerror(rc));
      rc = rc == PP_ENOPRIVMEM ? rc : PP_ECORRUPT;
      goto out;
    }
    if ((rc = cache_create(l, sc, jc->scope, &c))) {
      slab_cache_destroy(sc);
      restore_fail(why, why_len, rc, "cache %u: out of private memory", jc->id);
      goto out;
    }
    if (c->align != jc->align) {
      rc = restore_fail(why, why_len, PP_ECORRUPT, "cache %u: align %u recorded as %u", c->id,
                        c->align, jc->align);
      goto out;
    }
  }
  free(keys);
  keys = NULL;
  slab_skip_ids(l->slab, m->next_cache);
  if (m->next_cache > l->next_cache_id) l->next_cache_id = m->next_cache;

  /* Buffers: each block re-taken where it was, then its name. */
  if ((rc = jmodel_sorted_keys(&m->bufs, &keys, &n))) goto out;
  for (size_t i = 0; i < n; i++) {
    const jm_buf_t *jb = model_get(&m->bufs, keys[i]);
    lbuf_t *b;
    if (jb->order >= BUDDY_NR_ORDERS ||
        (rc = buddy_reserve(l->buddy, jb->offset, jb->order)) != 0) {
      rc = restore_fail(why, why_len, PP_ECORRUPT,
                        "buffer %" PRIu64 ": block at %" PRIu64 " of order %u: %s", jb->handle,
                        jb->offset, jb->order,
                        jb->order >= BUDDY_NR_ORDERS ? "order too big" : pp_strerror(rc));
      goto out;
    }
    if ((rc = buf_create(l, jb->handle, jb->offset, jb->order, (uid_t)jb->owner_uid, &b))) {
      buddy_free(l->buddy, jb->offset);
      restore_fail(why, why_len, rc, "buffer %" PRIu64 ": out of private memory", jb->handle);
      goto out;
    }
    if (jb->published) {
      char q[LEDGER_QNAME_MAX];
      size_t len = strlen(jb->name);
      if (!len || len > LEDGER_NAME_MAX || utf8_prefix(jb->name, LEDGER_NAME_MAX) != len) {
        rc =
            restore_fail(why, why_len, PP_ECORRUPT, "buffer %" PRIu64 ": bad name", jb->handle);
        goto out;
      }
      qualify((ledger_scope_t)jb->scope, jb->name, q);
      if (buf_by_qname(l, q)) {
        rc = restore_fail(why, why_len, PP_ECORRUPT, "buffer %" PRIu64 ": '%s' published twice",
                          jb->handle, q);
        goto out;
      }
      if ((rc = name_publish(l, b, (ledger_scope_t)jb->scope, jb->name))) {
        restore_fail(why, why_len, rc, "buffer %" PRIu64 ": out of private memory", jb->handle);
        goto out;
      }
    }
  }

  /* Objects, a cache at a time: every one re-taken at its offset, all or nothing. */
  if ((rc = model_objects_by_cache(l, m, &offs, &ostart))) {
    restore_fail(why, why_len, rc, "%s",
                 rc == PP_ENOPRIVMEM ? "out of private memory" : "objects do not add up");
    goto out;
  }
  for (size_t i = 0; i < l->ncaches; i++) {
    lcache_t *c = l->cache_list[i];
    uint64_t cnt = ostart[i + 1] - ostart[i];
    unsigned badi = 0;
    if (!cnt) continue;
    if (cnt > UINT32_MAX) {
      rc = restore_fail(why, why_len, PP_ECORRUPT, "cache %u: %" PRIu64 " objects", c->id, cnt);
      goto out;
    }
    rc = slab_cache_reserve_bulk(c->cache, offs + ostart[i], (unsigned)cnt, &badi);
    if (rc) {
      restore_fail(why, why_len, rc == PP_ENOPRIVMEM ? rc : PP_ECORRUPT,
                   "object %" PRIu64 " of cache %u: %s", offs[ostart[i] + badi], c->id,
                   pp_strerror(rc));
      rc = rc == PP_ENOPRIVMEM ? rc : PP_ECORRUPT;
      goto out;
    }
  }

  /* Who holds what: references in each buffer's holder order, opens, objects. */
  for (size_t i = 0; i < n; i++) {
    const jm_buf_t *jb = model_get(&m->bufs, keys[i]);
    lbuf_t *b = buf_by_handle(l, jb->handle);
    for (uint32_t hi = 0; hi < jb->nholders; hi++) {
      ledger_holder_t *h = (ledger_holder_t *)model_get(&hmap, jb->holders[hi]);
      const jm_session_t *js = model_get(&m->sessions, jb->holders[hi]);
      uint64_t refs = map_count(&js->holds, jb->handle);
      for (uint64_t r = 0; r < refs; r++)
        if ((rc = hold_add(l, h, b))) {
          restore_fail(why, why_len, rc, "out of private memory");
          goto out;
        }
    }
  }
  for (size_t i = 0; i < nsid; i++) {
    ledger_holder_t *h = (ledger_holder_t *)model_get(&hmap, sids[i]);
    const jm_session_t *js = model_get(&m->sessions, sids[i]);
    it = 0;
    while (u64map_next(&js->opens, &it, &k, &v))
      for (uint64_t o = 0; o < v; o++)
        if ((rc = cache_hold(l, h, cache_by_id(l, (uint32_t)k)))) {
          restore_fail(why, why_len, rc, "out of private memory");
          goto out;
        }
    it = 0;
    while (u64map_next(&js->objs, &it, &k, &v))
      if ((rc = obj_take(l, h, cache_by_id(l, (uint32_t)v), k))) {
        restore_fail(why, why_len, rc, "out of private memory");
        goto out;
      }
  }

  /* The charges, from what is held (ledger.c's rule; nothing recorded them). */
  for (size_t i = 0; i < n; i++) {
    lbuf_t *b = buf_by_handle(l, keys[i]);
    charge(l, b->owner_uid, b->size);
  }
  for (ledger_holder_t *h = l->holders; h; h = h->next)
    if (h->obj_bytes) charge(l, h->ident.uid, h->obj_bytes);
  it = 0;
  while (u64map_next(&l->uid_cache_objs, &it, &k, &v))
    charge(l, (uid_t)(k >> 32), cache_by_id(l, (uint32_t)k)->slab_bytes);
  if (m->next_handle > l->next_handle) l->next_handle = m->next_handle;

  if ((rc = ledger_check(l, why, why_len))) goto out;
  for (size_t i = 0; on_holder && i < nsid; i++)
    on_holder(ctx, sids[i], (ledger_holder_t *)model_get(&hmap, sids[i]));
out:
  if (rc) restore_abandon(l);
  l->rec_fn = rec;
  free(sids);
  free(keys);
  free(offs);
  free(ostart);
  u64map_fini(&hmap);
  return rc;
}

/* The map.  The magazine layer does not say which objects it holds, so a slab's
 * in_magazines is derived: objects the slab has allocated minus objects holders hold in it
 * (every object allocated from a slab is either held or parked in a daemon magazine).
 * Slabs are buddy blocks, naturally aligned, so an object's slab is its offset rounded
 * down to the slab size. */

typedef struct slabrec {
  uint64_t offset, bytes;
  uint32_t inuse, capacity, held;
} slabrec_t;

typedef struct slab_collect {
  slabrec_t *v;
  size_t n, cap;
  uint64_t from; /* slabs before this offset are not walked: left out */
  bool failed;
} slab_collect_t;

typedef struct walk_ctx {
  const ledger_t *l;
  uint64_t from;              /* blocks before this offset are passed over */
  const u64map_t *slab_index; /* slab offset -> index into slabs */
  const slabrec_t *slabs;
  ledger_block_fn fn;
  void *ctx;
  int rc;
} walk_ctx_t;

static void collect_slab(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse,
                         uint32_t capacity) {
  slab_collect_t *c = ctx;
  if (c->failed || offset < c->from) return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    slabrec_t *v = realloc(c->v, cap * sizeof *v);
    if (!v) {
      c->failed = true;
      return;
    }
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n++] = (slabrec_t){offset, bytes, inuse, capacity, 0};
}

static void walk_block(void *ctx, uint64_t offset, unsigned order, bool is_free) {
  walk_ctx_t *w = ctx;
  ledger_block_t b = {.offset = offset, .size = buddy_order_size(order)};
  uint64_t v;

  if (w->rc || offset < w->from) return;
  if (is_free) {
    b.kind = LEDGER_BLOCK_FREE;
  } else if (u64map_get(&w->l->by_offset, offset, NULL)) {
    b.kind = LEDGER_BLOCK_BUFFER;
  } else if (u64map_get(&w->l->quarantine, offset, NULL)) {
    b.kind = LEDGER_BLOCK_LOST;
  } else if (u64map_get(w->slab_index, offset, &v)) {
    const slabrec_t *r = &w->slabs[v];
    b.kind = LEDGER_BLOCK_SLAB;
    b.inuse = r->inuse;
    b.capacity = r->capacity;
    b.in_magazines = r->inuse >= r->held ? r->inuse - r->held : 0;
  } else {
    b.kind = LEDGER_BLOCK_OTHER;
  }
  w->rc = w->fn(w->ctx, &b);
}

int ledger_walk_blocks(ledger_t *l, ledger_block_fn fn, void *ctx) {
  return ledger_walk_blocks_from(l, 0, fn, ctx);
}

int ledger_walk_blocks_from(ledger_t *l, uint64_t from, ledger_block_fn fn, void *ctx) {
  slab_collect_t sc = {.from = from};
  u64map_t index;
  walk_ctx_t w = {.l = l, .from = from, .slab_index = &index, .fn = fn, .ctx = ctx};
  uint64_t k, v, cid;
  size_t it;
  int rc = PP_ENOPRIVMEM;

  u64map_init(&index);
  for (size_t i = 0; i < l->ncaches; i++)
    slab_cache_walk(l->cache_list[i]->cache, collect_slab, &sc);
  if (sc.failed) goto out;
  for (size_t i = 0; i < sc.n; i++)
    if (u64map_put(&index, sc.v[i].offset, i)) goto out;
  /* Objects held, counted into their slabs. */
  for (ledger_holder_t *h = l->holders; h; h = h->next) {
    it = 0;
    while (u64map_next(&h->objs, &it, &k, &cid)) {
      lcache_t *c = cache_by_id(l, (uint32_t)cid);
      if (c && u64map_get(&index, k & ~(c->slab_bytes - 1), &v)) sc.v[v].held++;
    }
  }
  it = 0; /* set-aside objects are not in magazines either */
  while (u64map_next(&l->aside, &it, &k, &cid)) {
    lcache_t *c = cache_by_id(l, (uint32_t)cid);
    if (c && u64map_get(&index, k & ~(c->slab_bytes - 1), &v)) sc.v[v].held++;
  }
  w.slabs = sc.v;
  buddy_walk(l->buddy, walk_block, &w);
  rc = w.rc;
out:
  free(sc.v);
  u64map_fini(&index);
  return rc;
}

/* ---- lost pages ---------------------------------------------------------------------- */

int ledger_holes_scan(ledger_t *l) {
  uint64_t before = region_lost_bytes(l->region);
  int rc = region_scan_holes(l->region, NULL, NULL);

  holes_note(l, before);
  holes_settle(l);
  holes_sync(l);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

/* Quarantined blocks with no lost page any more go back to the buddy (zeroed with
 * zero_on_free); one still partly lost goes back and its lost pages are quarantined anew. */
static void holes_release_blocks(ledger_t *l) {
  uint64_t *keys, order;
  size_t n;

  if (!u64map_len(&l->quarantine) || !(keys = collect_keys(&l->quarantine, &n))) return;
  for (size_t i = 0; i < n; i++) {
    uint64_t off = keys[i], size;
    u64map_get(&l->quarantine, off, &order);
    size = buddy_order_size((unsigned)order);
    if (region_lost_in(l->region, off, size) == size) continue;
    if (l->cfg.zero_on_free && zero_sound(l, off, size) != 0) continue;
    u64map_del(&l->quarantine, off);
    l->quarantine_bytes -= size;
    buddy_free(l->buddy, off);
    settle_range(l, off, size);
  }
  free(keys);
}

/* Set-aside objects whose pages back the region again go back to their caches. */
static void holes_release_objects(ledger_t *l) {
  uint64_t *keys, cid;
  size_t n;

  if (!u64map_len(&l->aside) || !(keys = collect_keys(&l->aside, &n))) return;
  for (size_t i = 0; i < n; i++) {
    lcache_t *c;
    if (!u64map_get(&l->aside, keys[i], &cid) || !(c = cache_by_id(l, (uint32_t)cid))) continue;
    if (region_lost_in(l->region, keys[i], c->object_size)) continue;
    if (l->cfg.zero_on_free && region_zero(l->region, keys[i], c->object_size) != 0) continue;
    u64map_del(&l->aside, keys[i]);
    c->aside--;
    mag_free(c->mag, keys[i]);
  }
  free(keys);
}

int ledger_holes_repair(ledger_t *l) {
  uint64_t lost = region_lost_bytes(l->region);
  int rc = lost ? region_repair(l->region, 0, region_size(l->region)) : 0;

  holes_sync(l);
  holes_release_blocks(l);
  holes_release_objects(l);
  holes_settle(l);
  holes_sync(l);
  if (lost > region_lost_bytes(l->region))
    log_notice("repair: %" PRIu64 " of %" PRIu64 " lost bytes backed again; %" PRIu64
               " bytes still lost, %" PRIu64 " quarantined",
               lost - region_lost_bytes(l->region), lost, region_lost_bytes(l->region),
               l->quarantine_bytes);
  PP_VALIDATE(ledger_check, l);
  return rc;
}

/* "session 3 (pid 120, uid 1000)" appended to buf (at len; cap bytes), once per session:
 * seen collects the sessions named so far. */
static void name_session(char *buf, size_t cap, size_t *len, u64map_t *seen,
                         const ledger_ident_t *id) {
  int n;
  if (u64map_get(seen, id->session_id, NULL) || u64map_put(seen, id->session_id, 1)) return;
  if (*len >= cap) return;
  n = snprintf(buf + *len, cap - *len, "%ssession %" PRIu64 " (pid %d, uid %u)",
               u64map_len(seen) > 1 ? ", " : "", id->session_id, (int)id->pid,
               (unsigned)id->uid);
  if (n > 0) *len += (size_t)n;
  if (*len >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
}

typedef struct slab_hits {
  uint64_t off, len, slabs;
} slab_hits_t;

static void count_slab_hit(void *ctx, uint64_t offset, uint64_t bytes, uint32_t inuse,
                           uint32_t capacity) {
  slab_hits_t *s = ctx;
  (void)inuse;
  (void)capacity;
  s->slabs += offset < s->off + s->len && s->off < offset + bytes;
}

/* One lost range: every buffer, slab and held object on it, and the sessions they belong
 * to, at err. */
static void report_range(ledger_t *l, uint64_t off, uint64_t len, const char *found_by) {
  char all[512] = "", who[256];
  size_t alen = 0, nbufs = 0, nslabs = 0;
  uint64_t k, v, objs = 0;
  u64map_t seen;
  size_t it = 0;

  u64map_init(&seen);
  while (u64map_next(&l->by_handle, &it, &k, &v)) {
    const lbuf_t *b = (const lbuf_t *)(uintptr_t)v;
    uint64_t lost;
    size_t wlen = 0;
    u64map_t one;
    if (b->offset >= off + len || off >= b->offset + b->size) continue;
    lost = region_lost_in(l->region, b->offset, b->size);
    u64map_init(&one);
    for (uint32_t i = 0; i < b->nholders; i++) {
      name_session(who, sizeof who, &wlen, &one, &b->holders[i]->ident);
      name_session(all, sizeof all, &alen, &seen, &b->holders[i]->ident);
    }
    u64map_fini(&one);
    log_err("hole: buffer %" PRIu64 "%s%s%s (%" PRIu64 " bytes at offset 0x%" PRIx64
            ") lost %" PRIu64 " bytes of its contents; held by %s",
            b->handle, b->qname ? " '" : "", b->qname ? b->qname : "", b->qname ? "'" : "",
            b->size, b->offset, lost, wlen ? who : "nobody");
    nbufs++;
  }
  for (size_t i = 0; i < l->ncaches; i++) {
    slab_hits_t s = {.off = off, .len = len};
    slab_cache_walk(l->cache_list[i]->cache, count_slab_hit, &s);
    if (!s.slabs) continue;
    log_err("hole: %" PRIu64 " slab%s of cache '%s' hit", s.slabs, s.slabs == 1 ? "" : "s",
            l->cache_list[i]->name);
    nslabs += s.slabs;
  }
  for (const ledger_holder_t *h = l->holders; h; h = h->next) {
    uint64_t mine = 0;
    it = 0;
    while (u64map_next(&h->objs, &it, &k, &v)) {
      const lcache_t *c = cache_by_id(l, (uint32_t)v);
      mine += c && k < off + len && off < k + c->object_size;
    }
    if (mine) name_session(all, sizeof all, &alen, &seen, &h->ident);
    objs += mine;
  }
  log_err("hole: %" PRIu64 " bytes at offset 0x%" PRIx64
          " no longer back the region (punched out of the memfd by a holder of it; found by "
          "%s): %zu buffer%s, %zu slab%s, %" PRIu64 " held object%s on it; sessions hit: %s",
          len, off, found_by, nbufs, nbufs == 1 ? "" : "s", nslabs, nslabs == 1 ? "" : "s",
          objs, objs == 1 ? "" : "s", alen ? all : "none");
  u64map_fini(&seen);
}

void ledger_holes_report(ledger_t *l, const char *found_by) {
  region_range_t *v;
  size_t n;

  if (l->punched_bytes == l->reported_punched) return;
  l->reported_punched = l->punched_bytes;
  n = region_lost(l->region, NULL, 0);
  if (!n) {
    log_err("hole: %" PRIu64 " bytes were punched out of the region so far (found by %s); "
            "all repaired",
            l->punched_bytes, found_by);
    return;
  }
  if (!(v = calloc(n, sizeof *v))) {
    log_err("hole: %" PRIu64 " bytes of the region are lost (found by %s)",
            region_lost_bytes(l->region), found_by);
    return;
  }
  n = region_lost(l->region, v, n);
  for (size_t i = 0; i < n; i++)
    report_range(l, v[i].offset, v[i].length, found_by);
  free(v);
}

void ledger_holes_stats(const ledger_t *l, ledger_holes_stats_t *ret) {
  ret->lost_bytes = region_lost_bytes(l->region);
  ret->quarantined_bytes = l->quarantine_bytes;
  ret->quarantined_blocks = u64map_len(&l->quarantine);
  ret->objects_aside = u64map_len(&l->aside);
  ret->damaged_buffers = l->damaged_bufs;
  ret->punched_bytes = l->punched_bytes;
}

uint64_t ledger_holder_damaged(const ledger_t *l, const ledger_holder_t *h) {
  uint64_t k, n = 0;
  size_t it = 0;
  if (!l->damaged_bufs) return 0;
  while (u64map_next(&h->holds, &it, &k, NULL)) {
    const lbuf_t *b = buf_by_handle(l, k);
    n += b && b->damaged;
  }
  return n;
}

/* ---- validator ---------------------------------------------------------------------- */

static bool has_prefix(const char *s, ledger_scope_t scope) {
  char p[LEDGER_SCOPE_PREFIX_MAX + 1];
  size_t n = ledger_scope_prefix(scope, p, sizeof p);
  return !strncmp(s, p, n);
}

static int check_holder(ledger_t *l, const ledger_holder_t *h, uint64_t *nobjs, char *why,
                        size_t why_len) {
  uint64_t k, v, refs = 0, bytes = 0, obytes = 0;
  uint64_t sid = h->ident.session_id;
  u64map_t per_cache;
  size_t it = 0;
  int rc = 0;

  if (h->u != uid_rec(l, h->ident.uid))
    return pp_corrupt(why, why_len, "session %" PRIu64 " is not on uid %u's record", sid,
                      (unsigned)h->ident.uid);
  while (u64map_next(&h->holds, &it, &k, &v)) {
    lbuf_t *b = buf_by_handle(l, k);
    uint32_t listed = 0;
    if (!b)
      return pp_corrupt(why, why_len, "session %" PRIu64 " holds dead handle %" PRIu64, sid, k);
    if (v == 0)
      return pp_corrupt(why, why_len, "session %" PRIu64 " holds handle %" PRIu64 " zero times",
                        sid, k);
    for (uint32_t i = 0; i < b->nholders; i++)
      listed += b->holders[i] == h;
    if (listed != 1)
      return pp_corrupt(why, why_len,
                        "buffer %" PRIu64 " lists holder session %" PRIu64 " %u times", k, sid,
                        listed);
    refs += v;
    bytes += b->size;
  }
  if (refs != h->buf_refs)
    return pp_corrupt(why, why_len,
                      "session %" PRIu64 ": %" PRIu64 " refs counted, %" PRIu64 " recorded",
                      sid, refs, h->buf_refs);
  if (bytes != h->buf_bytes)
    return pp_corrupt(why, why_len, "session %" PRIu64 ": buffer bytes disagree", sid);

  it = 0;
  while (u64map_next(&h->opens, &it, &k, &v))
    if (!cache_by_id(l, (uint32_t)k) || v == 0)
      return pp_corrupt(why, why_len,
                        "session %" PRIu64 " has cache %" PRIu64 " open %" PRIu64
                        " times, and it is %s",
                        sid, k, v, cache_by_id(l, (uint32_t)k) ? "live" : "gone");

  u64map_init(&per_cache);
  it = 0;
  while (!rc && u64map_next(&h->objs, &it, &k, &v)) {
    uint64_t owner;
    lcache_t *c = cache_by_id(l, (uint32_t)v);
    if (!c)
      rc = pp_corrupt(why, why_len,
                      "session %" PRIu64 " holds object %" PRIu64 " of unknown cache %" PRIu64,
                      sid, k, v);
    else if (!u64map_get(&l->obj_owner, k, &owner) || owner != sid)
      rc = pp_corrupt(why, why_len,
                      "object %" PRIu64 " of session %" PRIu64 " not owned in obj_owner", k,
                      sid);
    else if (!slab_cache_owns(c->cache, k))
      rc = pp_corrupt(why, why_len, "object %" PRIu64 " not allocated in cache %u", k, c->id);
    else if (u64map_put(&per_cache, v, map_count(&per_cache, v) + 1))
      rc = pp_corrupt(why, why_len, "ledger_check: out of private memory");
    obytes += c ? c->obj_charge : 0;
    (*nobjs)++;
  }
  if (!rc && obytes != h->obj_bytes)
    rc = pp_corrupt(why, why_len, "session %" PRIu64 ": object charges disagree", sid);
  if (!rc && u64map_len(&per_cache) != u64map_len(&h->cache_objs))
    rc = pp_corrupt(why, why_len, "session %" PRIu64 ": objects in %zu caches, counted %zu",
                    sid, u64map_len(&per_cache), u64map_len(&h->cache_objs));
  it = 0;
  while (!rc && u64map_next(&per_cache, &it, &k, &v)) {
    if (map_count(&h->cache_objs, k) != v)
      rc = pp_corrupt(why, why_len,
                      "session %" PRIu64 ": %" PRIu64 " objects of cache %" PRIu64
                      ", counted %" PRIu64,
                      sid, v, k, map_count(&h->cache_objs, k));
    else if (!u64map_get(&h->opens, k, NULL))
      rc = pp_corrupt(why, why_len,
                      "session %" PRIu64 " holds objects of cache %" PRIu64 " it has not open",
                      sid, k);
  }
  u64map_fini(&per_cache);
  return rc;
}

/* Each uid's charge, recomputed from the records: its buffers, its objects at their
 * charge, one slab per cache it holds objects in. */
static int check_uids(ledger_t *l, char *why, size_t why_len) {
  uint64_t k, v, kk, vv;
  size_t it = 0, it2;

  while (u64map_next(&l->uids, &it, &k, &v)) {
    const luid_t *u = (const luid_t *)(uintptr_t)v;
    uid_t uid = (uid_t)k;
    uint64_t sum = 0;
    uint32_t holders = 0;
    for (const ledger_holder_t *h = l->holders; h; h = h->next)
      if (h->ident.uid == uid) {
        holders++;
        sum += h->obj_bytes;
      }
    if (holders == 0 || holders != u->nholders)
      return pp_corrupt(why, why_len, "uid %u: %u holders, recorded %u", (unsigned)uid, holders,
                        u->nholders);
    it2 = 0;
    while (u64map_next(&l->by_handle, &it2, &kk, &vv)) {
      const lbuf_t *b = (const lbuf_t *)(uintptr_t)vv;
      if (b->owner_uid == uid) sum += b->size;
    }
    it2 = 0;
    while (u64map_next(&l->uid_cache_objs, &it2, &kk, &vv))
      if (kk >> 32 == (uint32_t)uid) {
        const lcache_t *c = cache_by_id(l, (uint32_t)kk);
        if (!c) return pp_corrupt(why, why_len, "uid %u counts objects of a dead cache", uid);
        sum += c->slab_bytes;
      }
    if (sum != u->charged)
      return pp_corrupt(why, why_len,
                        "uid %u is charged %" PRIu64 ", its holdings make %" PRIu64,
                        (unsigned)uid, u->charged, sum);
  }
  it = 0;
  while (u64map_next(&l->uid_cache_objs, &it, &k, &v)) {
    uint64_t n = 0;
    for (const ledger_holder_t *h = l->holders; h; h = h->next)
      if (h->ident.uid == (uid_t)(k >> 32)) n += map_count(&h->cache_objs, (uint32_t)k);
    if (n != v || v == 0)
      return pp_corrupt(why, why_len,
                        "uid %u: %" PRIu64
                        " objects of cache %u recorded, its holders hold %" PRIu64,
                        (unsigned)(k >> 32), v, (unsigned)(uint32_t)k, n);
  }
  return 0;
}

static int check_caches(ledger_t *l, char *why, size_t why_len) {
  uint64_t k, v, ncounted = 0;
  size_t it = 0;
  int rc;

  if (u64map_len(&l->caches) != l->ncaches)
    return pp_corrupt(why, why_len, "%zu caches indexed, %zu listed", u64map_len(&l->caches),
                      l->ncaches);
  for (size_t i = 0; i < l->ncaches; i++) {
    lcache_t *c = l->cache_list[i];
    uint64_t held = 0;
    uint32_t openers = 0;
    if (cache_by_id(l, c->id) != c || slab_cache_by_id(l->slab, c->id) != c->cache)
      return pp_corrupt(why, why_len, "cache %u (%s) not found by its id", c->id, c->name);
    if (i > 0 && c->id <= l->cache_list[i - 1]->id)
      return pp_corrupt(why, why_len, "cache %u listed after %u", c->id,
                        l->cache_list[i - 1]->id);
    if (!has_prefix(c->name, c->scope))
      return pp_corrupt(why, why_len, "cache %u's name '%s' is not in its scope", c->id,
                        c->name);
    for (const ledger_holder_t *h = l->holders; h; h = h->next) {
      held += map_count(&h->cache_objs, c->id);
      openers += u64map_get(&h->opens, c->id, NULL);
    }
    if (held != c->held)
      return pp_corrupt(why, why_len,
                        "cache %u: %" PRIu64 " objects held, %" PRIu64 " recorded", c->id, held,
                        c->held);
    if (openers != c->openers || openers == 0)
      return pp_corrupt(why, why_len, "cache %u: open by %u holders, %u recorded", c->id,
                        openers, c->openers);
    if ((rc = mag_check(c->depot, c->held + c->aside, why, why_len))) return rc;
  }
  while (u64map_next(&l->scope_caches, &it, &k, &v)) {
    uint64_t n = 0;
    for (size_t i = 0; i < l->ncaches; i++)
      n += l->cache_list[i]->scope == k;
    if (n != v || v == 0)
      return pp_corrupt(why, why_len,
                        "scope %" PRIx64 ": %" PRIu64 " caches, recorded %" PRIu64, k, n, v);
    ncounted += v;
  }
  if (ncounted != l->ncaches)
    return pp_corrupt(why, why_len, "scopes count %" PRIu64 " caches of %zu", ncounted,
                      l->ncaches);
  return 0;
}

/* Quarantine, set-aside objects and damage flags agree with the allocators and records. */
static int check_holes(ledger_t *l, char *why, size_t why_len) {
  uint64_t k, v, bytes = 0, damaged = 0;
  size_t it = 0;

  while (u64map_next(&l->quarantine, &it, &k, &v)) {
    unsigned order;
    if (buddy_block_order(l->buddy, k, &order) != 0 || order != v)
      return pp_corrupt(
          why, why_len,
          "quarantined block at %" PRIu64 " is not an allocated block of order %" PRIu64, k, v);
    if (u64map_get(&l->by_offset, k, NULL))
      return pp_corrupt(why, why_len, "quarantined block at %" PRIu64 " is a buffer", k);
    bytes += buddy_order_size(order);
  }
  if (bytes != l->quarantine_bytes)
    return pp_corrupt(why, why_len, "quarantine holds %" PRIu64 " bytes, %" PRIu64 " recorded",
                      bytes, l->quarantine_bytes);
  for (size_t i = 0; i < l->ncaches; i++) {
    lcache_t *c = l->cache_list[i];
    uint64_t n = 0;
    it = 0;
    while (u64map_next(&l->aside, &it, &k, &v))
      n += v == c->id;
    if (n != c->aside)
      return pp_corrupt(why, why_len,
                        "cache %u: %" PRIu64 " objects set aside, %" PRIu64 " recorded", c->id,
                        n, c->aside);
  }
  it = 0;
  while (u64map_next(&l->aside, &it, &k, &v)) {
    lcache_t *c = cache_by_id(l, (uint32_t)v);
    if (!c || !slab_cache_owns(c->cache, k) || u64map_get(&l->obj_owner, k, NULL))
      return pp_corrupt(why, why_len,
                        "object %" PRIu64 " set aside in cache %" PRIu64
                        " is not an allocated object held by nobody",
                        k, v);
  }
  it = 0;
  while (u64map_next(&l->by_handle, &it, &k, &v))
    damaged += ((const lbuf_t *)(uintptr_t)v)->damaged;
  if (damaged != l->damaged_bufs)
    return pp_corrupt(why, why_len, "%" PRIu64 " buffers flagged damaged, %" PRIu64 " recorded",
                      damaged, l->damaged_bufs);
  return 0;
}

int ledger_check(ledger_t *l, char *why, size_t why_len) {
  uint64_t k, v, nobjs = 0, charged = 0, bufbytes = 0, objbytes = 0, named = 0;
  const uint64_t *mu = l->mutations;
  uint32_t nholders = 0;
  size_t it;
  int rc;

  for (ledger_holder_t *h = l->holders; h; h = h->next) {
    if ((rc = check_holder(l, h, &nobjs, why, why_len))) return rc;
    objbytes += h->obj_bytes;
    nholders++;
  }
  if (nholders != l->nholders)
    return pp_corrupt(why, why_len, "%u holders listed, %u recorded", nholders, l->nholders);
  if (nobjs != u64map_len(&l->obj_owner))
    return pp_corrupt(why, why_len, "obj_owner has %zu objects, holders %" PRIu64,
                      u64map_len(&l->obj_owner), nobjs);
  if (objbytes != l->obj_bytes)
    return pp_corrupt(why, why_len, "object charges %" PRIu64 " != recorded %" PRIu64, objbytes,
                      l->obj_bytes);

  it = 0;
  while (u64map_next(&l->by_handle, &it, &k, &v)) {
    lbuf_t *b = (lbuf_t *)(uintptr_t)v;
    uint64_t o;
    unsigned order;
    bool payer = false;
    if (b->nholders == 0)
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " has no holders", k);
    for (uint32_t i = 0; i < b->nholders; i++) {
      if (!u64map_get(&b->holders[i]->holds, k, NULL))
        return pp_corrupt(why, why_len, "holder of buffer %" PRIu64 " does not hold it", k);
      payer |= b->holders[i]->ident.uid == b->owner_uid;
    }
    if (!payer)
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " is charged to uid %u, no holder's", k,
                        (unsigned)b->owner_uid);
    if (!u64map_get(&l->by_offset, b->offset, &o) || o != v)
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " not indexed by offset", k);
    if (buddy_block_order(l->buddy, b->offset, &order) != 0 || order != b->order)
      return pp_corrupt(why, why_len,
                        "buffer %" PRIu64 " is not an allocated block of order %u", k,
                        b->order);
    if (b->qname && (buf_by_qname(l, b->qname) != b || !has_prefix(b->qname, b->scope) ||
                     strcmp(b->qname + strlen(b->qname) - strlen(b->name), b->name)))
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " not found by its name", k);
    if (k >= l->next_handle)
      return pp_corrupt(why, why_len, "buffer %" PRIu64 " at or past the next handle", k);
    named += b->qname != NULL;
    bufbytes += b->size;
  }
  if (u64map_len(&l->by_offset) != u64map_len(&l->by_handle))
    return pp_corrupt(why, why_len, "offset and handle indexes differ");
  if (bufbytes != l->buf_bytes || u64map_len(&l->by_handle) != l->nbufs)
    return pp_corrupt(why, why_len, "buffer bytes %" PRIu64 " != recorded %" PRIu64, bufbytes,
                      l->buf_bytes);
  if (named != l->nnamed)
    return pp_corrupt(why, why_len, "%" PRIu64 " named buffers, %" PRIu64 " recorded", named,
                      l->nnamed);

  if ((rc = check_uids(l, why, why_len))) return rc;
  it = 0;
  while (u64map_next(&l->uids, &it, &k, &v))
    charged += ((const luid_t *)(uintptr_t)v)->charged;
  if (charged < l->buf_bytes + l->obj_bytes)
    return pp_corrupt(why, why_len, "charges %" PRIu64 " < held %" PRIu64, charged,
                      l->buf_bytes + l->obj_bytes);

  /* The primitive counts (the journal's records) account for the live state. */
  if (mu[LEDGER_OP_BUF_CREATE] - mu[LEDGER_OP_BUF_DESTROY] != l->nbufs)
    return pp_corrupt(why, why_len,
                      "%" PRIu64 " creates - %" PRIu64 " destroys != %" PRIu64 " buffers",
                      mu[LEDGER_OP_BUF_CREATE], mu[LEDGER_OP_BUF_DESTROY], l->nbufs);
  if (mu[LEDGER_OP_PUBLISH] - mu[LEDGER_OP_UNPUBLISH] != named)
    return pp_corrupt(why, why_len, "publishes - unpublishes != %" PRIu64 " names", named);
  if (mu[LEDGER_OP_OBJ_TAKE] - mu[LEDGER_OP_OBJ_GIVE] != nobjs)
    return pp_corrupt(why, why_len, "takes - gives != %" PRIu64 " objects", nobjs);
  if (mu[LEDGER_OP_CACHE_CREATE] - mu[LEDGER_OP_CACHE_DESTROY] != l->ncaches)
    return pp_corrupt(why, why_len,
                      "%" PRIu64 " cache creates - %" PRIu64 " destroys != %zu caches",
                      mu[LEDGER_OP_CACHE_CREATE], mu[LEDGER_OP_CACHE_DESTROY], l->ncaches);

  if ((rc = check_caches(l, why, why_len))) return rc;
  if ((rc = check_holes(l, why, why_len))) return rc;
  if ((rc = slab_check(l->slab, why, why_len))) return rc;
  return buddy_check(l->buddy, why, why_len);
}
