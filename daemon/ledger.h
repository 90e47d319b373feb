/* ledger.h — who holds what in one pool: the region and the allocators over it (buddy,
 * slab caches, the loop thread's magazine per cache), the buffers and objects sessions
 * hold, names scoped by the user (or shared group) that created them, the caches sessions
 * have open, and the bytes charged to each uid.  Plain C types only: nothing here knows
 * the protocol (handlers.c translates).  See ledger.c. */
#ifndef PP_DAEMON_LEDGER_H
#define PP_DAEMON_LEDGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buddy.h"
#include "magazine.h"
#include "region.h"
#include "slab.h"

#define LEDGER_NAME_MAX 255u         /* bytes of a buffer's name, its scope not counted */
#define LEDGER_CACHE_NAME_MAX 63u    /* bytes of a cache's name, its scope not counted */
#define LEDGER_SCOPE_PREFIX_MAX 13u  /* "~g4294967294/", the longest scope prefix */
#define LEDGER_OBJECTS_MAX 1024u     /* objects per ledger_cache_alloc */
#define LEDGER_WHY_MAX 512u          /* bytes of a refusal's reason, NUL included */
#define LEDGER_SHARED_GROUPS_MAX 32u /* --shared-group entries */
/* A qualified name, NUL included: what a buffer's name can grow to. */
#define LEDGER_QNAME_MAX (LEDGER_SCOPE_PREFIX_MAX + LEDGER_NAME_MAX + 1u)

_Static_assert(LEDGER_SCOPE_PREFIX_MAX + LEDGER_CACHE_NAME_MAX < SLAB_NAME_MAX,
               "a qualified cache name is the slab cache's name");

/* ledger_buf_alloc flags (the protocol's AllocFlag values: handlers.c checks) */
#define LEDGER_ALLOC_CONTIG 0x1u /* physically contiguous, or PP_ENOCONTIG */
#define LEDGER_ALLOC_ZERO 0x2u   /* zero-filled */

/* A name's scope: the user or shared group it belongs to.  Written ~UID/ or ~gGID/ in
 * front of a name (ledger.c's essay, docs/PROTOCOL.md). */
typedef uint64_t ledger_scope_t;
#define LEDGER_SCOPE_GROUP_BIT (UINT64_C(1) << 32)
#define LEDGER_SCOPE_USER(uid) ((ledger_scope_t)(uint32_t)(uid))
#define LEDGER_SCOPE_GROUP(gid) (LEDGER_SCOPE_GROUP_BIT | (ledger_scope_t)(uint32_t)(gid))

typedef struct ledger_config {
  uint64_t size; /* region bytes */
  region_page_policy_t policy;
  bool no_sort_pages;          /* region_config_t.no_sort: hugepages in the pool's order */
  uint64_t quota;              /* bytes charged per uid (ledger.c: the charge); 0 = unlimited */
  uint32_t max_buffers;        /* buffer references per holder; 0 = unlimited */
  uint32_t max_caches_per_uid; /* caches in one scope (a user's, or a shared group's) */
  uint32_t max_caches;         /* caches in all; each limit 0 = unlimited */
  bool zero_on_free;           /* zero blocks and objects when they go back */
  /* Groups whose scope (~gGID/) their members may create names in; anyone may look
   * names up there.  None by default. */
  gid_t shared_groups[LEDGER_SHARED_GROUPS_MAX];
  uint32_t nshared_groups;
  /* The pool's region: its memfd's name (NULL: "pinpool"; shows in /proc/PID/fd), and the
   * NUMA node its pages come from when bind_node (region_config_t). */
  const char *memfd_name;
  bool bind_node;
  unsigned numa_node;
} ledger_config_t;

typedef struct ledger ledger_t;
typedef struct ledger_holder ledger_holder_t; /* one session's holdings in one ledger */
typedef struct ledger_buf ledger_buf_t;

/* Why a call was refused, for Response.message: written only when a call fails. */
typedef struct ledger_why {
  char msg[LEDGER_WHY_MAX];
} ledger_why_t;

/* Who a holder is, as far as ownership goes: the uid its allocations are charged to (and
 * whose scope its unqualified names are in), and what Stats shows of a buffer's holders. */
typedef struct ledger_ident {
  uint64_t session_id;
  pid_t pid;
  uid_t uid;
} ledger_ident_t;

/* A buffer as a reply describes it.  The names and buf stay valid while the buffer lives. */
typedef struct ledger_buf_info {
  uint64_t handle; /* from 1, never reused within the ledger's lifetime */
  uint64_t offset;
  uint64_t size; /* the buddy block's size */
  uint64_t phys; /* of offset; 0 when unknown */
  unsigned order;
  bool contiguous;
  uid_t charged_uid;    /* the uid that pays for the block now (it moves: ledger.c) */
  const char *name;     /* as published, without its scope; NULL when unpublished */
  const char *qname;    /* qualified: "~1000/frames"; NULL when unpublished */
  ledger_scope_t scope; /* of the name (meaningless when unpublished) */
  uint32_t nholders;    /* distinct holders; ledger_buf_holder() names them */
  const ledger_buf_t *buf;
  bool damaged;        /* a page of it was punched out while it lived: contents lost */
  uint64_t lost_bytes; /* of its pages lost now (no address reported for them) */
} ledger_buf_info_t;

typedef struct ledger_cache_info {
  uint32_t id; /* never reused: a closed cache's id can only miss */
  uint32_t object_size, align, objs_per_slab;
  uint64_t slab_bytes;  /* a slab is a naturally aligned buddy block of this size */
  uint64_t obj_charge;  /* bytes each object is charged: slab_bytes / objs_per_slab */
  ledger_scope_t scope; /* of the name */
  const char *name;     /* qualified; valid while the cache lives */
} ledger_cache_info_t;

typedef struct ledger_cache_stats {
  const char *name; /* qualified; valid while the cache lives */
  uint32_t openers; /* holders that have it open */
  uint64_t held;    /* objects holders hold */
  slab_info_t slab;
  mag_stats_t mag;
} ledger_cache_stats_t;

typedef struct ledger_totals {
  uint64_t buf_bytes; /* block bytes of live buffers */
  uint64_t nbufs;
  uint64_t obj_bytes; /* objects held, each at its charge (slab_bytes / objs_per_slab) */
  uint32_t nholders;
  uint32_t ncaches;
} ledger_totals_t;

typedef struct ledger_holder_totals {
  uint64_t buf_refs;  /* references (the per-holder buffer limit counts these) */
  uint64_t buffers;   /* distinct buffers */
  uint64_t buf_bytes; /* block bytes of the distinct buffers */
  uint64_t objects;
  uint64_t obj_bytes; /* each object at its charge */
  uint64_t caches;    /* caches it has open */
  /* Of its buffers, those its client's buffer caches hold, as the client last reported
   * (ledger_holder_set_cached), clamped to buffers and buf_bytes. */
  uint64_t cached_buffers;
  uint64_t cached_bytes;
} ledger_holder_totals_t;

typedef struct ledger_shrink_result {
  uint64_t objects_drained, slabs_released, bytes_released;
} ledger_shrink_result_t;

typedef enum ledger_block_kind {
  LEDGER_BLOCK_FREE,
  LEDGER_BLOCK_BUFFER,
  LEDGER_BLOCK_SLAB,
  LEDGER_BLOCK_OTHER, /* allocated from the buddy, but neither a buffer nor a slab */
  LEDGER_BLOCK_LOST,  /* quarantined: its pages were punched out and are not replaced */
} ledger_block_kind_t;

/* One block of the region's map.  For a slab: objects allocated from it (inuse), its
 * capacity, and how many of those sit in daemon magazines rather than with sessions. */
typedef struct ledger_block {
  uint64_t offset, size;
  ledger_block_kind_t kind;
  uint32_t inuse, capacity, in_magazines;
} ledger_block_t;

/* Return 0 to go on; anything else stops the walk and is what ledger_walk_blocks returns. */
typedef int (*ledger_block_fn)(void *ctx, const ledger_block_t *b);

/* The primitive ownership changes (ledger.c's essay): every change of who holds what is
 * one of these, and each is counted as it happens — the place a journal would record it. */
typedef enum ledger_op {
  LEDGER_OP_BUF_CREATE,    /* a buffer record for a block */
  LEDGER_OP_BUF_DESTROY,   /* the record goes, the block returns to the buddy */
  LEDGER_OP_HOLD,          /* a holder takes one more reference to a buffer */
  LEDGER_OP_UNHOLD,        /* a holder drops references to a buffer */
  LEDGER_OP_PUBLISH,       /* a buffer gets its (scoped) name */
  LEDGER_OP_UNPUBLISH,     /* the name goes */
  LEDGER_OP_CHARGE,        /* bytes charged to a uid */
  LEDGER_OP_UNCHARGE,      /* bytes a uid no longer pays for */
  LEDGER_OP_OWNER,         /* a buffer's charge is now another uid's */
  LEDGER_OP_OBJ_TAKE,      /* a holder takes an object */
  LEDGER_OP_OBJ_GIVE,      /* a holder gives an object back */
  LEDGER_OP_CACHE_CREATE,  /* the ledger adopts a slab cache, in a scope */
  LEDGER_OP_CACHE_OPEN,    /* a holder opens a cache once more */
  LEDGER_OP_CACHE_CLOSE,   /* a holder drops opens of a cache */
  LEDGER_OP_CACHE_DESTROY, /* a cache nobody has open goes, its slabs with it */
  LEDGER_OP__COUNT
} ledger_op_t;

/* One primitive change as the recorder sees it (ledger_set_recorder).  Fields not named for
 * an op are 0 / NULL. */
typedef struct ledger_rec {
  ledger_op_t op;
  uint64_t session;            /* HOLD, UNHOLD, OBJ_*, CACHE_OPEN, CACHE_CLOSE: the holder */
  uint64_t handle;             /* BUF_*, HOLD, UNHOLD, PUBLISH, UNPUBLISH, OWNER */
  uint64_t offset;             /* BUF_CREATE: the block; OBJ_*: the object */
  uint64_t count;              /* HOLD/UNHOLD: references; CACHE_OPEN/CLOSE: opens;
                                * CHARGE/UNCHARGE: bytes */
  uint32_t cache_id;           /* OBJ_*, CACHE_* */
  uint32_t order;              /* BUF_CREATE */
  uint32_t uid;                /* BUF_CREATE, OWNER: who pays; CHARGE, UNCHARGE */
  uint32_t object_size, align; /* CACHE_CREATE */
  ledger_scope_t scope;        /* PUBLISH, CACHE_CREATE */
  const char *name;            /* PUBLISH: the name proper; CACHE_CREATE: qualified */
} ledger_rec_t;

/* Called for every primitive change, as it happens, on the caller's thread. */
typedef void (*ledger_recorder_fn)(void *ctx, const ledger_rec_t *rec);

/* ---- lifecycle ------------------------------------------------------------------------ */

/* Creates the region (errors as region_create), the buddy over it and the slab layer;
 * PP_ENOPRIVMEM when malloc fails. */
int ledger_create(const ledger_config_t *cfg, ledger_t **ret);
/* The same over an existing region memfd (after a restart: region_adopt of a duplicate of
 * region_fd, contents kept; cfg->size and cfg->policy are not checked against it, and
 * ledger_config() then gives the memfd's size).  region_fd stays the caller's.  Nothing is
 * allocated in it yet: ledger_restore. */
int ledger_adopt(const ledger_config_t *cfg, int region_fd, ledger_t **ret);
/* Every holder must have been released first. */
void ledger_destroy(ledger_t *l);
/* fn (NULL: none) sees every primitive change from now on: the journal's hook. */
void ledger_set_recorder(ledger_t *l, ledger_recorder_fn fn, void *ctx);
const ledger_config_t *ledger_config(const ledger_t *l);
const region_t *ledger_region(const ledger_t *l);
/* The region's physically contiguous runs, in offset order (none when unknown). */
const region_run_t *ledger_runs(const ledger_t *l, size_t *ret_n);
uint64_t ledger_free_bytes(ledger_t *l);

/* ---- names ---------------------------------------------------------------------------- */

/* Split name into its scope and the name proper.  A name without a leading '~' is all
 * name, in caller's own scope; "~UID/rest" and "~gGID/rest" name a scope (decimal, no
 * leading zeros, below 2^32 - 1) and rest (anything, '/' and '~' included; the caller
 * checks its length).  PP_EINVAL with the reason in *why (may be NULL). */
int ledger_name_parse(const char *name, uid_t caller, ledger_scope_t *ret_scope,
                      const char **ret_rest, ledger_why_t *why);
/* "~1000/" or "~g44/" into buf (LEDGER_SCOPE_PREFIX_MAX + 1 bytes); returns its length. */
size_t ledger_scope_prefix(ledger_scope_t scope, char *buf, size_t len);
/* The name a reply gives uid for a buffer: as published when it is in uid's own scope,
 * else qualified.  NULL when unpublished. */
const char *ledger_buf_name_for(const ledger_buf_info_t *b, uid_t uid);

/* ---- holders -------------------------------------------------------------------------- */

/* A new holder with nothing held.  PP_ENOPRIVMEM. */
int ledger_holder_create(ledger_t *l, const ledger_ident_t *ident, ledger_holder_t **ret);
/* Give back everything h holds — buffer references (a buffer goes back to the buddy with
 * its last holder, and its name with it; one still held elsewhere may pass its charge to
 * another uid), objects (straight to the slabs, then the caches it used are drained and
 * shrunk so their memory returns to the buddy), its opens of caches (a cache nobody has
 * open any more is destroyed) — and free h. */
void ledger_holder_release(ledger_t *l, ledger_holder_t *h);
const ledger_ident_t *ledger_holder_ident(const ledger_holder_t *h);
void ledger_holder_totals(const ledger_holder_t *h, ledger_holder_totals_t *ret);
/* The shared groups (of cfg.shared_groups) h's user belongs to: the scopes it may create
 * names in besides its own.  Until this is called, none.  PP_ENOPRIVMEM. */
int ledger_holder_set_groups(ledger_t *l, ledger_holder_t *h, const gid_t *gids, size_t n);
bool ledger_holder_groups_known(const ledger_holder_t *h);
/* What h's client says its buffer caches hold (AllocBulk/FreeBulk.cache): buffers h holds
 * that its program does not.  Only shown (Stats); not ownership, so not journaled. */
void ledger_holder_set_cached(ledger_holder_t *h, uint64_t buffers, uint64_t bytes);
/* Bytes charged to uid now (what cfg.quota limits). */
uint64_t ledger_uid_charged(const ledger_t *l, uid_t uid);

/* ---- requests --------------------------------------------------------------------------
 * Each validates everything before changing anything, and fails with a negative PP_E*
 * code and the reason in *why (may be NULL), leaving the ledger as it was. */

/* A buffer of at least size bytes (a whole buddy block), held once by h and charged to
 * its uid, published under name (in h's scope unless qualified) unless name is NULL or "".
 * Errors: PP_EINVAL (size 0, bad name, unknown flags), PP_ERANGE, PP_EPERM (a scope h may
 * not create names in), PP_EEXIST (name taken), PP_ELIMIT (max_buffers), PP_EQUOTA,
 * PP_ENOMEM / PP_ENOCONTIG (the buddy), PP_ELOSTPAGE (the blocks tried had pages punched
 * out that could not be replaced, or could not be zeroed), PP_ENOPRIVMEM.  The block is
 * checked against pagemap first and zeroed with region_zero (LEDGER_ALLOC_ZERO). */
int ledger_buf_alloc(ledger_t *l, ledger_holder_t *h, uint64_t size, unsigned flags,
                     const char *name, ledger_why_t *why, ledger_buf_info_t *ret);
/* One more reference by h to the buffer published under name (h's scope unless
 * qualified).  PP_EINVAL (no name, bad scope), PP_ENOENT, PP_ELIMIT, PP_ENOPRIVMEM.  Its
 * pages are checked against pagemap before *ret reports their addresses. */
int ledger_buf_lookup(ledger_t *l, ledger_holder_t *h, const char *name, ledger_why_t *why,
                      ledger_buf_info_t *ret);
/* Drop one of h's references; the buffer goes with its last one.  PP_ENOENT when h holds
 * no buffer with that handle — the same answer whoever else holds it. */
int ledger_buf_free(ledger_t *l, ledger_holder_t *h, uint64_t handle, ledger_why_t *why);

/* count buffers (1..LEDGER_OBJECTS_MAX) of at least size bytes each, as ledger_buf_alloc
 * without a name, all or nothing, into ret[0..count): the same checks (the buffer limit and
 * the quota for all of them together), the same primitives per buffer.  A refusal past the
 * first buffer says which one failed; whatever was taken goes back.  Errors: those of
 * ledger_buf_alloc (PP_ERANGE also for count outside 1..LEDGER_OBJECTS_MAX). */
int ledger_buf_alloc_bulk(ledger_t *l, ledger_holder_t *h, uint64_t size, unsigned flags,
                          uint32_t count, ledger_why_t *why, ledger_buf_info_t *ret);
/* Drop one of h's references per handle (a handle may be listed as often as h holds it),
 * all or nothing: PP_ENOENT, nothing freed, naming the first handle h does not hold (for
 * that many references) and its index; PP_ERANGE above LEDGER_OBJECTS_MAX handles;
 * PP_ENOPRIVMEM.  None is a successful no-op. */
int ledger_buf_free_bulk(ledger_t *l, ledger_holder_t *h, const uint64_t *handles, size_t n,
                         ledger_why_t *why);
/* The buffer h holds under handle, described as it is now (its pages checked against
 * pagemap first, as for a lookup); changes no ownership.  PP_ENOENT as ledger_buf_free. */
int ledger_buf_describe(ledger_t *l, ledger_holder_t *h, uint64_t handle, ledger_why_t *why,
                        ledger_buf_info_t *ret);
/* region_generation(): moves whenever physical addresses, runs or lost pages change. */
uint64_t ledger_addr_generation(const ledger_t *l);

/* Open the slab cache name (h's scope unless qualified) for h, creating it in a scope h
 * may create names in.  PP_EINVAL (bad name or align), PP_EGEOMETRY (exists with another
 * geometry), PP_EPERM (does not exist, in a scope h may not create in), PP_ELIMIT
 * (max_caches_per_uid, max_caches), PP_ERANGE (object size), PP_ENOPRIVMEM. */
int ledger_cache_open(ledger_t *l, ledger_holder_t *h, const char *name, uint32_t object_size,
                      uint32_t align, ledger_why_t *why, ledger_cache_info_t *ret);
/* Drop one of h's opens of cache_id; a cache nobody has open is destroyed.  PP_ENOENT
 * (h does not have it open), PP_EBUSY (h still holds objects of it and this is its last
 * open: free them first). */
int ledger_cache_close(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, ledger_why_t *why);
/* count objects of cache cache_id, which h has open, for h, charged to its uid, written
 * to offs[0..count).  offs NULL says the caller could not get room for them: the request
 * is still checked, so a bad one is refused for its own reason, and a good one gets
 * PP_ENOPRIVMEM.  PP_ENOENT (no such cache open in h), PP_ERANGE (count outside
 * 1..LEDGER_OBJECTS_MAX), PP_EQUOTA, PP_ENOMEM (the slabs), PP_ENOPRIVMEM.  All or
 * nothing. */
int ledger_cache_alloc(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, uint32_t count,
                       uint64_t *offs, ledger_why_t *why);
/* Give back n objects of cache cache_id, all or nothing; the reason names the first bad
 * offset and its index.  PP_ENOENT (no such cache open in h; an offset h does not hold —
 * the same answer whoever else holds it), PP_EINVAL (h's object of another cache),
 * PP_EDOUBLEFREE (twice in offs), PP_ENOPRIVMEM. */
int ledger_cache_free(ledger_t *l, ledger_holder_t *h, uint32_t cache_id, const uint64_t *offs,
                      size_t n, ledger_why_t *why);

/* Drain every daemon magazine to the slabs and return every empty slab to the buddy. */
void ledger_shrink(ledger_t *l, ledger_shrink_result_t *ret);

/* ---- read-only views (Stats) ---------------------------------------------------------- */

void ledger_get_totals(const ledger_t *l, ledger_totals_t *ret);
void ledger_buddy_stats(ledger_t *l, buddy_stats_t *ret);
uint64_t ledger_largest_free_contig(ledger_t *l);
size_t ledger_ncaches(const ledger_t *l);
/* The i-th live cache in creation order, i < ledger_ncaches(). */
void ledger_cache_stats(ledger_t *l, size_t i, ledger_cache_stats_t *ret);
/* Where the caches with ids from id on begin: the index (for ledger_cache_stats) of the
 * first live cache whose id is id or greater, ledger_ncaches() when none.  Creation order
 * is id order, so the i-th cache's id grows with i; O(log caches).  Stats pages caches by
 * id. */
size_t ledger_cache_index_from(const ledger_t *l, uint32_t id);
/* The live buffer with this handle: true with *ret filled, false when there is none. */
bool ledger_buf_get(const ledger_t *l, uint64_t handle, ledger_buf_info_t *ret);
/* Iteration over live buffers, in no order: for (size_t it = 0; ledger_buf_next(l, &it,
 * &info);) — no changes meanwhile. */
bool ledger_buf_next(const ledger_t *l, size_t *iter, ledger_buf_info_t *ret);
/* The same over their handles alone, which touches no buffer record: a scan of the
 * handle index, several times cheaper over many buffers. */
bool ledger_buf_next_handle(const ledger_t *l, size_t *iter, uint64_t *ret_handle);
/* The i-th distinct holder of a buffer, i < its nholders, longest-standing first. */
const ledger_ident_t *ledger_buf_holder(const ledger_buf_t *b, uint32_t i);
/* Every block of the region in offset order, classified.  fn runs under the buddy's lock:
 * it must not call into the ledger.  PP_ENOPRIVMEM, or what fn returned. */
int ledger_walk_blocks(ledger_t *l, ledger_block_fn fn, void *ctx);
/* The same from the first block that starts at or after from: the blocks before it cost
 * a comparison each, not their classification (Stats pages the map by offset). */
int ledger_walk_blocks_from(ledger_t *l, uint64_t from, ledger_block_fn fn, void *ctx);
/* Primitive changes of kind op made so far (ledger_op_t). */
uint64_t ledger_mutations(const ledger_t *l, ledger_op_t op);

/* ---- lost pages (ledger.c's essay; daemon/holes.c drives these) ------------------------ */

typedef struct ledger_holes_stats {
  uint64_t lost_bytes;         /* region pages lost now (region_lost_bytes) */
  uint64_t quarantined_bytes;  /* blocks taken out of the buddy for their lost pages */
  uint64_t quarantined_blocks; /* (and for a zeroing that failed) */
  uint64_t objects_aside;      /* objects kept from circulation: on lost pages */
  uint64_t damaged_buffers;    /* live buffers whose contents were (partly) lost */
  uint64_t punched_bytes;      /* found punched since start, repaired or not */
} ledger_holes_stats_t;

/* Scan the whole region for punched pages (region_scan_holes), flag the live buffers on
 * lost pages damaged, quarantine lost pages that are free, and bring the runs and the
 * buffers' addresses in step.  The number of lost ranges (>= 0), or region_scan_holes'
 * error (PP_EOS: pagemap unreadable). */
int ledger_holes_scan(ledger_t *l);
/* When pages were found punched since the last report: log at err each lost range, with
 * every buffer (handle, offset, name, holders' session ids, pids and uids), slab and held
 * object on it and the sessions hit.  found_by names what found them ("the periodic
 * scan"). */
void ledger_holes_report(ledger_t *l, const char *found_by);
/* Try to back every lost page again (region_repair), then give back what no longer needs
 * keeping: quarantined blocks and set-aside objects whose pages are whole again (zeroed
 * with zero_on_free).  0 when nothing is lost any more; else region_repair's first error
 * (PP_ENOHUGE: the pool has no page; PP_EQUOTA: the pin budget is spent), what failed
 * still lost and kept out of circulation. */
int ledger_holes_repair(ledger_t *l);
void ledger_holes_stats(const ledger_t *l, ledger_holes_stats_t *ret);
/* Damaged buffers h holds (0 at once when none is damaged). */
uint64_t ledger_holder_damaged(const ledger_t *l, const ledger_holder_t *h);

/* ---- restart (jmodel.h) ---------------------------------------------------------------- */

struct jmodel;
/* Adds l's state to m: caches, buffers with names and holders in order, each holder's
 * references, opens and objects (under its session id, which m must have already), the
 * handle and cache-id counters.  Charges are not exported: they follow from the rest.
 * 0, or the model's error (PP_ECORRUPT: a holder whose session m lacks). */
int ledger_export(const ledger_t *l, struct jmodel *m, char *why, size_t why_len);

typedef void (*ledger_restore_fn)(void *ctx, uint64_t session_id, ledger_holder_t *h);
/* Builds m's end state in a fresh ledger (ledger_adopt, nothing done in it yet): a holder
 * per session (ident from the model), each cache re-created under its id, each buffer's
 * block re-taken with buddy_reserve and named, each object re-taken with
 * slab_cache_reserve, then references (in each buffer's holder order), opens, objects and
 * the charges they imply; cache ids below m's counter are skipped.  The recorder sees none
 * of it.  Validated with jmodel_check before and ledger_check after.  On success
 * on_holder (may be NULL) gets each session's holder, in id order.  On failure — PP_ECORRUPT
 * (the model does not fit the region: blocks that overlap or lie outside it, objects of
 * another geometry, names twice; why says which), PP_ENOPRIVMEM — no holder is handed out
 * and the ledger holds none: destroy it. */
int ledger_restore(ledger_t *l, const struct jmodel *m, ledger_restore_fn on_holder, void *ctx,
                   char *why, size_t why_len);

/* Validator over the ledger and the allocators under it: 0, or PP_ECORRUPT with the first
 * violation in why. */
int ledger_check(ledger_t *l, char *why, size_t why_len);

#endif
