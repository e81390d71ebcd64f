/* See store.h for the layout and the crash-safety argument. */
#include "cache/store.h"
#include "cache/fill.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"
#include "base/units.h"
#include "base/crash.h"
#include "base/pathkey.h"
#include "observe/metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

static void bag_free(struct strbag *b);

/* If name is "<content id><suffix>", copies the id into cid and returns 1. */
static int cid_of(const char *name, const char *suffix, char cid[CONTENT_ID_LEN + 1])
{
    size_t len = strlen(name), sl = strlen(suffix);
    if (len != CONTENT_ID_LEN + sl || strcmp(name + CONTENT_ID_LEN, suffix) != 0)
        return 0;
    for (size_t i = 0; i < CONTENT_ID_LEN; i++)
        if (!strchr("0123456789abcdef", name[i]))
            return 0;
    memcpy(cid, name, CONTENT_ID_LEN);
    cid[CONTENT_ID_LEN] = '\0';
    return 1;
}

static const char *const subdirs[] = {"content", "tmp", "meta"};

int store_path(const struct store *s, char *buf, size_t n, const char *fmt, ...)
{
    int off = snprintf(buf, n, "%s/", s->root);
    if (off < 0 || (size_t)off >= n)
        return -ENAMETOOLONG;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + off, n - (size_t)off, fmt, ap);
    va_end(ap);
    return m < 0 || (size_t)(off + m) >= n ? -ENAMETOOLONG : 0;
}

int store_open(const char *root, struct store **ret, struct wc_error *e)
{
    if (root[0] != '/')
        return wc_err(e, -EINVAL, "store root \"%s\" must be an absolute path", root);
    /* overlayfs options are comma/colon separated: keep the root plain */
    if (strpbrk(root, ",:\\ \t\n"))
        return wc_err(e, -EINVAL, "store root \"%s\" must not contain ',', ':', '\\' or white space", root);
    _cleanup_free_ struct store *s = calloc(1, sizeof(*s));
    if (!s || !(s->root = strdup(root)))
        return -ENOMEM;
    size_t n = strlen(s->root);
    while (n > 1 && s->root[n - 1] == '/')
        s->root[--n] = '\0';
    char p[PATH_MAX];
    for (size_t i = 0; i < ARRAY_SIZE(subdirs); i++) {
        store_path(s, p, sizeof(p), "%s", subdirs[i]);
        int r = fs_mkdir_p(p, 0755);
        if (r < 0) {
            free(s->root);
            return wc_err_errno(e, r, "store: cannot create %s", p);
        }
    }
    /* tmp/ keeps the written parts of journaled fills (they resume); the
     * rest is debris of a crash: evicted or damaged copies on their way out. */
    store_path(s, p, sizeof(p), "tmp");
    DIR *d = opendir(p);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            char sub[PATH_MAX], cid[CONTENT_ID_LEN + 1];
            if (de->d_name[0] == '.')
                continue;
            if (cid_of(de->d_name, "", cid) && store_path(s, sub, sizeof(sub), "meta/%s.fill.json", cid) == 0 &&
                access(sub, F_OK) == 0)
                continue;
            store_path(s, sub, sizeof(sub), "tmp/%s", de->d_name);
            fs_rm_rf(sub);
        }
        closedir(d);
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->high_pct = 80;
    s->low_pct = 70;
    *ret = TAKE_PTR(s);
    return 0;
}

void store_free(struct store *s)
{
    if (!s)
        return;
    bag_free(&s->busy);
    bag_free(&s->pins);
    free(s->leases);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->root);
    free(s);
}

int store_content_ready(const struct store *s, const char *cid)
{
    char p[PATH_MAX], valid[CONTENT_ID_LEN + 1];
    return cid_of(cid, "", valid) && store_path(s, p, sizeof(p), "content/%s", valid) == 0 && fs_is_dir(p);
}

static ssize_t bag_index(const struct strbag *b, const char *v)
{
    for (size_t i = 0; i < b->n; i++)
        if (streq(b->v[i], v))
            return (ssize_t)i;
    return -1;
}

static int bag_add(struct strbag *b, const char *v)
{
    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 8;
        char **nv = realloc(b->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        b->v = nv;
        b->cap = ncap;
    }
    if (!(b->v[b->n] = strdup(v)))
        return -ENOMEM;
    b->n++;
    return 0;
}

static void bag_remove(struct strbag *b, const char *v)
{
    ssize_t i = bag_index(b, v);
    if (i >= 0) {
        free(b->v[i]);
        b->v[i] = b->v[--b->n];
    }
}

static void bag_free(struct strbag *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->v[i]);
    free(b->v);
}

/* One filler per content id; others wait for it and then find the copy ready. */
static int busy_enter(struct store *s, const char *cid)
{
    pthread_mutex_lock(&s->lock);
    while (bag_index(&s->busy, cid) >= 0)
        pthread_cond_wait(&s->cond, &s->lock);
    int r = bag_add(&s->busy, cid);
    pthread_mutex_unlock(&s->lock);
    return r;
}

static void busy_leave(struct store *s, const char *cid)
{
    pthread_mutex_lock(&s->lock);
    bag_remove(&s->busy, cid);
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

void store_pin(struct store *s, const char *cid)
{
    pthread_mutex_lock(&s->lock);
    bag_add(&s->pins, cid); /* on ENOMEM the copy is merely evictable a bit sooner */
    pthread_mutex_unlock(&s->lock);
}

void store_unpin(struct store *s, const char *cid)
{
    pthread_mutex_lock(&s->lock);
    bag_remove(&s->pins, cid);
    pthread_mutex_unlock(&s->lock);
}

void store_set_part_size(struct store *s, uint64_t bytes) { s->part_size = bytes; }

void store_set_users(struct store *s, const struct store_users *u) { s->users = *u; }

static unsigned users_of(const struct store *s, const char *cid)
{
    return s->users.refs ? s->users.refs(s->users.ctx, cid) : 0;
}

/* Caller holds s->lock; expired leases are dropped on the way. */
static int leased_locked(struct store *s, const char *cid)
{
    double now = mono_s();
    int held = 0;
    for (size_t i = 0; i < s->n_leases;) {
        if (s->leases[i].until <= now) {
            s->leases[i] = s->leases[--s->n_leases];
            continue;
        }
        held = held || streq(s->leases[i].cid, cid);
        i++;
    }
    return held;
}

void store_unlease(struct store *s, const char *cid)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_leases;)
        if (streq(s->leases[i].cid, cid))
            s->leases[i] = s->leases[--s->n_leases];
        else
            i++;
    pthread_mutex_unlock(&s->lock);
}

void store_lease(struct store *s, const char *cid, double seconds)
{
    pthread_mutex_lock(&s->lock);
    leased_locked(s, ""); /* drop the expired ones */
    struct store_lease *nl = realloc(s->leases, (s->n_leases + 1) * sizeof(*nl));
    if (nl) { /* on ENOMEM the copy is merely evictable a bit sooner */
        s->leases = nl;
        snprintf(nl[s->n_leases].cid, sizeof(nl[s->n_leases].cid), "%s", cid);
        nl[s->n_leases++].until = mono_s() + seconds;
    }
    pthread_mutex_unlock(&s->lock);
}

void store_set_watermarks(struct store *s, int high_pct, int low_pct)
{
    s->high_pct = high_pct;
    s->low_pct = low_pct < high_pct ? low_pct : high_pct;
}

struct tally {
    uint64_t files, bytes;
};

/* What a copy holds on disk: the listing's files, or the tree a source
 * laid out from them (archives applied). */
struct tree_size {
    uint64_t files, bytes;
    int laid_out;
};

static int write_meta(struct store *s, struct source *src, const struct listing *l, const char *cid,
                      const struct tree_size *ts, double seconds, uint64_t fetched, uint64_t checksummed,
                      struct wc_error *e)
{
    char digest[LISTING_DIGEST_LEN + 1], p[PATH_MAX];
    listing_digest(l, digest);
    time_t now = time(NULL);
    json_t *m _cleanup_json_ = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:f, s:s}",
        "content_id", cid, "source", src->url, "listing_digest", digest,
        "files", (json_int_t)ts->files, "bytes", (json_int_t)ts->bytes,
        "filled_at", (json_int_t)now, "last_used", (json_int_t)now,
        "fill_seconds", seconds, "verified", ts->laid_out ?
        "size and checksum of every object listed (a layer's sha256 before it was applied)" :
        "size and source version (ETag) of every file, and the source's checksum of every file that has one");
    if (m && ts->laid_out) {
        json_object_set_new(m, "objects", json_integer((json_int_t)l->n));
        json_object_set_new(m, "object_bytes", json_integer((json_int_t)l->bytes));
    }
    if (m) {
        json_object_set_new(m, "fetched_bytes", json_integer((json_int_t)fetched));
        json_object_set_new(m, "checksummed_files", json_integer((json_int_t)checksummed));
    }
    _cleanup_free_ char *txt = m ? json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (!txt)
        return -ENOMEM;
    store_path(s, p, sizeof(p), "meta/%s.json", cid);
    int r = fs_write_atomic(p, txt, strlen(txt), 0644);
    return r < 0 ? wc_err_errno(e, r, "store: writing %s", p) : 0;
}

/* What a fill is filling, so that a restarted plugin can resume it. */
static int write_journal(struct store *s, struct source *src, const struct listing *l, const char *cid,
                         int laid_out, struct wc_error *e)
{
    char digest[LISTING_DIGEST_LEN + 1], p[PATH_MAX];
    listing_digest(l, digest);
    json_t *j _cleanup_json_ = json_pack("{s:s, s:s, s:s, s:I, s:I}", "content_id", cid, "source", src->url,
                                         "listing_digest", digest, "files", (json_int_t)l->n, "bytes",
                                         (json_int_t)l->bytes);
    /* how to reach the source again (never credentials) */
    if (j && src->region)
        json_object_set_new(j, "region", json_string(src->region));
    if (j && src->endpoint)
        json_object_set_new(j, "endpoint", json_string(src->endpoint));
    if (j && src->addressing)
        json_object_set_new(j, "addressing", json_string(src->addressing));
    if (j && laid_out) /* the tree is made and durable: the staging objects may be gone */
        json_object_set_new(j, "laid_out", json_true());
    _cleanup_free_ char *txt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (!txt)
        return -ENOMEM;
    store_path(s, p, sizeof(p), "meta/%s.fill.json", cid);
    int r = fs_write_atomic(p, txt, strlen(txt), 0644);
    return r < 0 ? wc_err_errno(e, r, "store: writing the fill journal %s", p) : 0;
}

/* Bytes of this listing already whole in the partial copy (a resumed fill). */
static uint64_t partial_bytes(const char *partial, const struct listing *l)
{
    uint64_t have = 0;
    char p[PATH_MAX];
    struct stat st;
    for (size_t i = 0; i < l->n; i++)
        if (snprintf(p, sizeof(p), "%s/%s", partial, l->v[i].key) < (int)sizeof(p) && lstat(p, &st) == 0 &&
            S_ISREG(st.st_mode) && (uint64_t)st.st_size == l->v[i].size)
            have += l->v[i].size;
    return have;
}

static void already_here(const struct listing *l, struct fill_progress *p);

/* The fill journal of cid says its tree was laid out from this listing. */
static int journal_laid_out(const struct store *s, const struct listing *l, const char *cid)
{
    char p[PATH_MAX], digest[LISTING_DIGEST_LEN + 1];
    store_path(s, p, sizeof(p), "meta/%s.fill.json", cid);
    json_t *j _cleanup_json_ = json_load_file(p, 0, NULL);
    const char *d = json_string_value(json_object_get(j, "listing_digest"));
    listing_digest(l, digest);
    return d && streq(d, digest) && json_is_true(json_object_get(j, "laid_out"));
}

struct layout_room {
    struct store *s;
    const char *what;
    const struct source_layout *o;
    uint64_t step, until;    /* claimed until o->charged reaches until */
    struct store_reservation res;
    int held;
};

/* Inodes a store keeps free for everything else (other copies, the
 * volumes' records, a pod's writable layer). */
#define INODES_KEPT 10000

/* Room for a tree whose size nobody knows before it is written: claimed
 * as it grows, a step at a time (evicting as a fill's room is). A layout
 * charges every entry a block and an inode at least; where entries cost no
 * blocks (a tmpfs's directories), the inodes they take are what runs out. */
static int layout_room(void *ctx, uint64_t bytes, struct wc_error *e)
{
    struct layout_room *lr = ctx;
    uint64_t now = atomic_load(&lr->o->charged);
    if (now <= lr->until && bytes <= lr->until - now)
        return 0;
    if (lr->held)
        store_release_room(lr->s, &lr->res);
    lr->held = 0;
    uint64_t need = bytes > lr->step ? bytes : lr->step;
    struct statvfs v; /* a claim beyond the step is one entry: one inode, however large */
    if (statvfs(lr->s->root, &v) == 0 && v.f_files > 0 && v.f_favail < lr->step / 4096 + INODES_KEPT)
        return wc_err(e, -ENOSPC, "the copy of %s needs more files than the node store %s has inodes for (%llu "
                      "free); free inodes on the node or use a node with a larger store", lr->what, lr->s->root,
                      (unsigned long long)v.f_favail);
    lr->res = (struct store_reservation){.done = &lr->o->charged};
    int r = store_make_room(lr->s, need, lr->what, &lr->res, e);
    if (r < 0)
        return r;
    lr->held = 1;
    lr->until = now + need;
    return 0;
}

static int count_tree(int dfd, unsigned depth, struct tally *t);

/* After every object is whole: the source's tree (archives applied), made
 * durable and journaled before the staging objects go. */
static int lay_out(struct store *s, struct source *src, const struct listing *l, const char *cid,
                   const char *partial, int done_before, const atomic_int *cancel, struct tree_size *ts,
                   struct wc_error *e)
{
    _cleanup_close_ int dfd = open(partial, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return wc_err_errno(e, -errno, "store: opening %s", partial);
    int r = 1;
    if (!done_before) {
        struct source_layout o = {.room = layout_room, .cancel = cancel};
        /* a step of the layers' size (a few MiB at least: one claim per entry of a tiny layer of many is
         * a statvfs each), 64 MiB at most */
        uint64_t step = l->bytes < (4ull << 20) ? 4ull << 20 : l->bytes < (64ull << 20) ? l->bytes : 64ull << 20;
        struct layout_room lr = {.s = s, .what = src->url, .o = &o, .step = step};
        o.ctx = &lr;
        r = src->ops->lay_out(src, l, dfd, &o, e);
        if (lr.held)
            store_release_room(s, &lr.res);
        if (r < 0)
            return r;
        if (r == 0)
            return 0; /* the listing is the tree */
        if (syncfs(dfd) < 0)
            return wc_err_errno(e, -errno, "store: syncing %s", partial);
        if ((r = write_journal(s, src, l, cid, 1, e)) < 0)
            return r;
    }
    char staging[PATH_MAX];
    snprintf(staging, sizeof(staging), "%s/%s", partial, src->ops->staging ? src->ops->staging : "");
    if (src->ops->staging && (r = fs_rm_rf(staging)) < 0)
        return wc_err_errno(e, r, "store: removing %s", staging);
    fs_fsync_path(partial);
    struct tally t = {0};
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* its own offset, from the start */
    if ((r = fd < 0 ? -errno : count_tree(fd, 0, &t)) < 0)
        return wc_err_errno(e, r, "store: counting the files of %s", partial);
    *ts = (struct tree_size){t.files, t.bytes, 1};
    return 0;
}

static int fill_locked(struct store *s, struct source *src, const struct listing *l, const char *cid,
                       const atomic_int *cancel, struct fill_progress *p, struct wc_error *e)
{
    char partial[PATH_MAX], tmpdir[PATH_MAX], final[PATH_MAX], content[PATH_MAX];
    store_path(s, partial, sizeof(partial), "content/%s.partial", cid);
    store_path(s, tmpdir, sizeof(tmpdir), "tmp/%s", cid);
    store_path(s, final, sizeof(final), "content/%s", cid);
    store_path(s, content, sizeof(content), "content");
    int r;
    if ((r = fs_mkdir_p(partial, 0755)) < 0 || (r = fs_mkdir_p(tmpdir, 0700)) < 0)
        return wc_err_errno(e, r, "store: creating the fill directories under %s", s->root);
    p->bytes_total = l->bytes;
    p->files_total = l->n;
    /* killed after its tree was made: only the last steps are left */
    int laid = src->ops->lay_out && journal_laid_out(s, l, cid);
    double t0 = mono_s();
    if (laid) {
        already_here(l, p);
    } else {
        struct store_reservation room = {.done = &p->bytes_done, .resumed = &p->bytes_resumed};
        if ((r = store_make_room(s, l->bytes - partial_bytes(partial, l), src->url, &room, e)) < 0)
            return r;
        if ((r = write_journal(s, src, l, cid, 0, e)) == 0)
            r = fill_transfer(s, src, l, partial, tmpdir, s->part_size, cancel, p, e);
        store_release_room(s, &room);
        if (r < 0)
            return r;
    }
    struct tree_size ts = {l->n, l->bytes, 0};
    if (src->ops->lay_out && (r = lay_out(s, src, l, cid, partial, laid, cancel, &ts, e)) < 0)
        return r;
    uint64_t fetched = atomic_load(&p->bytes_done) - atomic_load(&p->bytes_resumed);
    if ((r = write_meta(s, src, l, cid, &ts, mono_s() - t0, fetched, atomic_load(&p->files_checksummed), e)) < 0)
        return r;
    if (rename(partial, final) < 0)
        return wc_err_errno(e, -errno, "store: publishing the copy %s", final);
    fs_fsync_path(content);
    char journal[PATH_MAX];
    store_path(s, journal, sizeof(journal), "meta/%s.fill.json", cid);
    unlink(journal);
    fs_rm_rf(tmpdir);
    return 0;
}

/* The copy is whole already: all done, and none of it fetched by this fill
 * (warmcache_fill_bytes_total counted it again for every re-listed stage). */
static void already_here(const struct listing *l, struct fill_progress *p)
{
    p->bytes_total = l->bytes;
    p->files_total = l->n;
    atomic_store(&p->bytes_done, l->bytes);
    atomic_store(&p->bytes_resumed, l->bytes);
    atomic_store(&p->files_done, l->n);
}

int store_fill(struct store *s, struct source *src, const struct listing *l, const char *cid,
               const atomic_int *cancel, struct fill_progress *p, struct wc_error *e)
{
    if (store_content_ready(s, cid)) {
        already_here(l, p);
        return 0;
    }
    int r = busy_enter(s, cid);
    if (r < 0)
        return wc_err(e, r, "out of memory");
    if (store_content_ready(s, cid)) {
        already_here(l, p);
    } else {
        r = fill_locked(s, src, l, cid, cancel, p, e);
    }
    busy_leave(s, cid);
    return r;
}

void store_drop_partial(struct store *s, const char *cid)
{
    char p[PATH_MAX];
    store_path(s, p, sizeof(p), "content/%s.partial", cid);
    fs_rm_rf(p);
    store_path(s, p, sizeof(p), "tmp/%s", cid);
    fs_rm_rf(p);
    store_path(s, p, sizeof(p), "meta/%s.fill.json", cid);
    unlink(p);
}

json_t *store_meta(const struct store *s, const char *cid)
{
    char p[PATH_MAX];
    if (store_path(s, p, sizeof(p), "meta/%s.json", cid) < 0)
        return NULL;
    return json_load_file(p, 0, NULL);
}

void store_touch(const struct store *s, const char *cid)
{
    json_t *m _cleanup_json_ = store_meta(s, cid);
    if (!m)
        return;
    json_object_set_new(m, "last_used", json_integer((json_int_t)time(NULL)));
    _cleanup_free_ char *txt = json_dumps(m, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    char p[PATH_MAX];
    if (txt && store_path(s, p, sizeof(p), "meta/%s.json", cid) == 0)
        fs_write_atomic(p, txt, strlen(txt), 0644);
}

json_t *store_list(const struct store *s)
{
    json_t *arr = json_array();
    char p[PATH_MAX];
    store_path(s, p, sizeof(p), "content");
    DIR *d = opendir(p);
    if (!d)
        return arr;
    struct dirent *de;
    while ((de = readdir(d))) {
        char cid[CONTENT_ID_LEN + 1];
        int partial = cid_of(de->d_name, ".partial", cid);
        if (!partial && !cid_of(de->d_name, "", cid))
            continue;
        json_t *m = partial ? NULL : store_meta(s, cid);
        json_t *o = m ? m : json_object();
        json_object_set_new(o, "content_id", json_string(cid));
        json_object_set_new(o, "state", json_string(partial ? "partial" : "ready"));
        json_array_append_new(arr, o);
    }
    closedir(d);
    return arr;
}

/* ---- use, eviction and reservations ------------------------------------ */

struct candidate {
    char cid[CONTENT_ID_LEN + 1];
    int64_t last_used;
    uint64_t bytes;
};

static int by_last_used(const void *a, const void *b)
{
    const struct candidate *x = a, *y = b;
    return x->last_used < y->last_used ? -1 : x->last_used > y->last_used;
}

/* Nothing uses cid: no mount may show it, no call pins it, no fill writes
 * it. Caller holds s->lock. */
static int unused_locked(struct store *s, const char *cid)
{
    return bag_index(&s->pins, cid) < 0 && bag_index(&s->busy, cid) < 0 && users_of(s, cid) == 0;
}

/* Ready copies nothing uses, least recently used first; caller holds s->lock. */
static size_t evictable(struct store *s, struct candidate **ret)
{
    json_t *all _cleanup_json_ = store_list(s);
    size_t n = 0, i;
    json_t *o;
    struct candidate *v = calloc(json_array_size(all) + 1, sizeof(*v));
    if (!v) {
        *ret = NULL;
        return 0;
    }
    json_array_foreach(all, i, o) {
        const char *cid = json_string_value(json_object_get(o, "content_id"));
        if (!cid || !streq(json_string_value(json_object_get(o, "state")) ?: "", "ready") || !unused_locked(s, cid) ||
            leased_locked(s, cid))
            continue;
        snprintf(v[n].cid, sizeof(v[n].cid), "%s", cid);
        v[n].last_used = json_integer_value(json_object_get(o, "last_used"));
        v[n].bytes = (uint64_t)json_integer_value(json_object_get(o, "bytes"));
        n++;
    }
    qsort(v, n, sizeof(*v), by_last_used);
    *ret = v;
    return n;
}

uint64_t store_evictable_bytes(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    struct candidate *v;
    size_t n = evictable(s, &v);
    pthread_mutex_unlock(&s->lock);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i].bytes;
    free(v);
    return sum;
}

/* Takes a copy out of content/ in one rename, to tmp/<kind>-<cid>; the
 * caller deletes it once the lock is dropped (a crash in between leaves it
 * in tmp/, which the next start clears). Caller holds s->lock. */
static int take_out_locked(struct store *s, const char *cid, const char *kind, char *to, size_t n)
{
    char from[PATH_MAX], meta[PATH_MAX];
    store_path(s, from, sizeof(from), "content/%s", cid);
    store_path(s, to, n, "tmp/%s-%s", kind, cid);
    store_path(s, meta, sizeof(meta), "meta/%s.json", cid);
    fs_rm_rf(to);
    if (rename(from, to) < 0)
        return -errno;
    unlink(meta);
    atomic_fetch_add(&s->removals, 1);
    crash_point("store-taken-out");
    return 0;
}

static void delete_taken(const char *path, const char *cid, const char *why)
{
    double t0 = mono_s();
    int r = fs_rm_rf(path);
    log_json(r < 0 ? LOG_WARN : LOG_INFO, why, json_pack("{s:s, s:f, s:s*}", "content_id", cid, "delete_seconds",
             mono_s() - t0, "error", r < 0 ? strerror(-r) : NULL));
}

static void space(const struct store *s, uint64_t *total, uint64_t *avail)
{
    struct statvfs v;
    *total = *avail = 0;
    if (statvfs(s->root, &v) == 0) {
        *total = (uint64_t)v.f_blocks * v.f_frsize;
        *avail = (uint64_t)v.f_bavail * v.f_frsize;
    }
}

/* What running fills have claimed and not written yet. Caller holds s->lock. */
static uint64_t reserved_locked(const struct store *s)
{
    uint64_t sum = 0;
    for (const struct store_reservation *r = s->reservations; r; r = r->next) {
        uint64_t counted = atomic_load(r->done) - r->done0;
        uint64_t found = r->resumed ? atomic_load(r->resumed) - r->resumed0 : 0;
        uint64_t written = counted > found ? counted - found : 0;
        sum += written < r->need ? r->need - written : 0;
    }
    return sum;
}

static int fits(uint64_t total, uint64_t avail, uint64_t need, int pct)
{
    return avail >= need && total - avail + need <= total / 100 * (uint64_t)pct;
}

int store_make_room(struct store *s, uint64_t need, const char *what, struct store_reservation *res,
                    struct wc_error *e)
{
    uint64_t total, avail;
    space(s, &total, &avail);
    if (total == 0)
        return 0;
    pthread_mutex_lock(&s->lock);
    uint64_t claimed = reserved_locked(s);
    uint64_t free_now = avail > claimed ? avail - claimed : 0;
    struct candidate *v = NULL;
    size_t n = fits(total, free_now, need, s->high_pct) ? 0 : evictable(s, &v), taken = 0;
    /* a fill that cannot fit even with every unused copy gone evicts none
     * of them: other volumes keep their copies (a source may claim any size) */
    uint64_t could = free_now;
    for (size_t i = 0; i < n; i++)
        could += v[i].bytes;
    if (could < need)
        n = 0;
    /* oldest first, until the fill fits under the high mark (or one eviction took it under the low one) */
    char (*gone)[PATH_MAX] = n ? calloc(n, PATH_MAX) : NULL;
    for (size_t i = 0; i < n && gone; i++) {
        if (fits(total, free_now, need, s->high_pct))
            break;
        if (take_out_locked(s, v[i].cid, "evicted", gone[taken], PATH_MAX) < 0)
            continue;
        if (taken != i)
            v[taken] = v[i];
        taken++;
        free_now += v[taken - 1].bytes;
        if (fits(total, free_now, need, s->low_pct))
            break;
    }
    int ok = free_now >= need;
    if (ok && res) {
        res->need = need;
        res->done0 = atomic_load(res->done);
        res->resumed0 = res->resumed ? atomic_load(res->resumed) : 0;
        res->next = s->reservations;
        s->reservations = res;
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < taken; i++) {
        atomic_fetch_add(&s->evictions, 1);
        delete_taken(gone[i], v[i].cid, "evicted");
    }
    free(gone);
    free(v);
    if (ok)
        return 0;
    char sn[32], sa[32], st[32], sc[32], claim[96] = "";
    fmt_bytes(need, sn, sizeof(sn));
    fmt_bytes(avail, sa, sizeof(sa));
    fmt_bytes(total, st, sizeof(st));
    if (claimed) {
        fmt_bytes(claimed, sc, sizeof(sc));
        snprintf(claim, sizeof(claim), ", %s of it reserved by fills running now,", sc);
    }
    return wc_err(e, -ENOSPC, "the copy of %s needs %s more, but the node store %s has %s free of %s%s and "
                  "every other copy on it is in use; free space on the node or use a node with a larger store",
                  what, sn, s->root, sa, st, claim);
}

void store_release_room(struct store *s, struct store_reservation *res)
{
    pthread_mutex_lock(&s->lock);
    for (struct store_reservation **p = &s->reservations; *p; p = &(*p)->next)
        if (*p == res) {
            *p = res->next;
            break;
        }
    pthread_mutex_unlock(&s->lock);
}

/* ---- start-up reconciliation --------------------------------------------- */

static int dir_entries(const char *dir, json_t *out)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            json_array_append_new(out, json_string(de->d_name));
    closedir(d);
    return 0;
}

json_t *store_reconcile(struct store *s)
{
    json_t *resume = json_array(), *dropped = json_array();
    char dir[PATH_MAX], p[PATH_MAX];
    json_t *names _cleanup_json_ = json_array();
    size_t i;
    json_t *n;

    /* partial copies: resumable when journaled, else debris */
    store_path(s, dir, sizeof(dir), "content");
    dir_entries(dir, names);
    json_array_foreach(names, i, n) {
        const char *name = json_string_value(n);
        char cid[CONTENT_ID_LEN + 1];
        if (!cid_of(name, ".partial", cid))
            continue;
        store_path(s, p, sizeof(p), "meta/%s.fill.json", cid);
        json_t *j = json_load_file(p, 0, NULL);
        if (j) {
            json_array_append_new(resume, j);
        } else {
            store_path(s, p, sizeof(p), "content/%s", name);
            fs_rm_rf(p);
            json_array_append_new(dropped, json_sprintf("content/%s", name));
        }
    }
    /* metadata of copies that are gone */
    json_array_clear(names);
    store_path(s, dir, sizeof(dir), "meta");
    dir_entries(dir, names);
    json_array_foreach(names, i, n) {
        const char *name = json_string_value(n);
        char cid[CONTENT_ID_LEN + 1], part[PATH_MAX];
        if (!cid_of(name, ".json", cid) && !cid_of(name, ".fill.json", cid))
            continue;
        store_path(s, part, sizeof(part), "content/%s.partial", cid);
        if (!store_content_ready(s, cid) && !fs_is_dir(part)) {
            store_path(s, p, sizeof(p), "meta/%s", name);
            unlink(p);
            json_array_append_new(dropped, json_sprintf("meta/%s", name));
        }
    }
    return json_pack("{s:o, s:o}", "resume", resume, "dropped", dropped);
}

/* ---- re-verification ------------------------------------------------------ */

/* Counts the regular files under dirfd (which it closes) and their bytes;
 * a failure to read is returned as its errno, never taken for damage. */
static int count_tree(int dfd, unsigned depth, struct tally *t)
{
    if (depth > PATHKEY_MAX) {
        close(dfd);
        return -ELOOP;
    }
    DIR *d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        close(dfd);
        return r;
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (errno = 0, de = readdir(d))) {
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = -errno;
        } else if (S_ISREG(st.st_mode)) {
            t->files++;
            t->bytes += (uint64_t)st.st_size;
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            r = sub < 0 ? -errno : count_tree(sub, depth + 1, t);
        }
    }
    if (r == 0 && errno != 0)
        r = -errno;
    closedir(d);
    return r;
}

int store_verify(const struct store *s, const char *cid, struct wc_error *e)
{
    char p[PATH_MAX];
    struct statvfs v;
    if (statvfs(s->root, &v) < 0)
        return wc_err_errno(e, -errno, "the node store %s is not reachable (its disk may be gone)", s->root);
    json_t *m _cleanup_json_ = store_meta(s, cid);
    if (!store_content_ready(s, cid) || !m)
        return wc_err(e, -ENOENT, "the cached copy %s is missing from the node store %s", cid, s->root);
    store_path(s, p, sizeof(p), "content/%s", cid);
    struct tally t = {0};
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int r = fd < 0 ? -errno : count_tree(fd, 0, &t);
    if (r < 0)
        return wc_err_errno(e, r == -EBADMSG ? -EIO : r, "reading the cached copy %s to verify it", cid);
    uint64_t files = (uint64_t)json_integer_value(json_object_get(m, "files"));
    uint64_t bytes = (uint64_t)json_integer_value(json_object_get(m, "bytes"));
    if (files != t.files || bytes != t.bytes)
        return wc_err(e, -EBADMSG, "the cached copy %s failed verification: %llu files, %llu bytes on disk, "
                      "%llu files, %llu bytes expected", cid, (unsigned long long)t.files,
                      (unsigned long long)t.bytes, (unsigned long long)files, (unsigned long long)bytes);
    return 0;
}

int store_set_aside(struct store *s, const char *cid)
{
    char to[PATH_MAX];
    pthread_mutex_lock(&s->lock);
    int r = unused_locked(s, cid) ? take_out_locked(s, cid, "damaged", to, sizeof(to)) : -EBUSY;
    pthread_mutex_unlock(&s->lock);
    if (r == 0)
        delete_taken(to, cid, "set aside a damaged copy");
    return r;
}

int store_evict(struct store *s, const char *cid, uint64_t *ret_freed, struct wc_error *e)
{
    char to[PATH_MAX];
    json_t *m _cleanup_json_ = store_meta(s, cid);
    uint64_t bytes = (uint64_t)json_integer_value(json_object_get(m, "bytes"));
    pthread_mutex_lock(&s->lock);
    int r = 0;
    unsigned users = 0;
    if (!store_content_ready(s, cid))
        r = -ENOENT;
    else if (!unused_locked(s, cid))
        r = -ENOTCONN, users = users_of(s, cid);
    else if ((r = take_out_locked(s, cid, "evicted", to, sizeof(to))) == 0)
        atomic_fetch_add(&s->evictions, 1);
    pthread_mutex_unlock(&s->lock);
    if (r == -ENOENT)
        return wc_err(e, r, "no ready copy %s in the node store %s", cid, s->root);
    if (r == -ENOTCONN)
        return wc_err(e, r, "copy %s is in use (%u mounts may show it, or a call or fill holds it); unpublish and "
                      "unstage its volumes first", cid, users);
    if (r < 0)
        return wc_err_errno(e, r, "taking copy %s out of the store", cid);
    delete_taken(to, cid, "evicted a copy (asked by an admin)");
    *ret_freed = bytes;
    return 0;
}

void store_collect(void *ctx, struct obs_text *t)
{
    struct store *s = ctx;
    obs_counter(t, "warmcache_evictions_total", "Unused copies evicted to make room.", atomic_load(&s->evictions));
    struct statvfs v;
    double total = 0, avail = 0;
    if (statvfs(s->root, &v) == 0) {
        total = (double)v.f_blocks * (double)v.f_frsize;
        avail = (double)v.f_bavail * (double)v.f_frsize;
    }
    obs_gauge(t, "warmcache_store_capacity_bytes", "Size of the file system holding the node store.", total);
    obs_gauge(t, "warmcache_store_used_bytes", "Bytes used on that file system.", total - avail);
    obs_gauge(t, "warmcache_store_evictable_bytes", "Bytes of ready copies no volume uses (evictable).",
              (double)store_evictable_bytes(s));
}
