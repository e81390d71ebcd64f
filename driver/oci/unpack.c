/*
 * Applying one tar layer (plain, gzip or zstd) onto a directory tree, as a
 * container runtime applies an image's layers: in order, each entry
 * replacing what lies at its path, whiteouts removing what lower layers put
 * there. The layer's bytes were verified against its digest, but its author
 * is untrusted: an entry never reaches outside the tree, whatever it says.
 *
 * - Paths go through pathkey_check (no "..", no absolute path, no control
 *   character); an entry under a symbolic link or a file is refused: every
 *   directory is walked with O_NOFOLLOW from the root, and nothing is
 *   ever opened through a link.
 * - Symbolic links are kept only when they resolve inside the tree: a
 *   target is a run of ".." no longer than the link's depth, then names.
 *   An absolute target is made relative to the tree's root (the image's
 *   root is the copy's root, as the image's author meant).
 * - Hard links only to what the tree holds already; devices and FIFOs are
 *   refused (a cache holds files).
 * - Files are 0644, or 0755 when any execute bit was set; directories 0755;
 *   owners are the node plugin's: a setuid bit or a root-only mode from an
 *   image must not reach a pod through a cache.
 * - Whiteouts (image layers only) are applied after the layer's own entries,
 *   to what the layer did not write itself (the spec: a whiteout hides
 *   lower layers only).
 *
 * Run again over a tree it left half made (a kill), it gives the same tree:
 * every entry replaces what is there, and a layer rewrites all it wrote.
 */
#include "oci/oci.h"
#include "base/macros.h"
#include "base/pathkey.h"

#include <dirent.h>
#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <zstd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUF (1u << 20)
#define META_MAX (1u << 20)          /* a PAX header or GNU long name */
#define ENTRIES_MAX 2000000          /* paths one layer may write or hold as parents */
#define PATH_BYTES_MAX (256u << 20)  /* and their bytes: what whiteouts need kept in memory */
#define FILL_ENTRIES_MAX 10000000    /* entries of all the layers of one copy */
#define BLOCK 4096                   /* what an entry costs the store at least: a block (and an inode) */
#define ENTRY_MAX (1ull << 50)       /* an entry's size: a layer's own limit (manifest.c), so no sum wraps */

/* ---- the byte stream: the blob, inflated when gzip or zstd --------------- */

struct stream {
    int fd, gzip, in_eof;
    struct inflate_state st;
    ZSTD_DStream *zs;                /* zstd: its frames one after another */
    ZSTD_inBuffer zin;
    size_t zlast;                    /* the last ZSTD_decompressStream's hint: 0 at a frame's end */
    unsigned char *in, *out;
    size_t pos, len;                 /* unread bytes of out */
};

static int read_some(int fd, unsigned char *buf, size_t n, size_t *ret, struct wc_error *e)
{
    ssize_t r;
    do
        r = read(fd, buf, n);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return wc_err_errno(e, -errno, "reading the layer");
    *ret = (size_t)r;
    return 0;
}

static int refill_zstd(struct stream *s, struct wc_error *e)
{
    while (s->len == 0) {
        if (s->zin.pos == s->zin.size && !s->in_eof) {
            size_t n;
            int r = read_some(s->fd, s->in, BUF, &n, e);
            if (r < 0)
                return r;
            s->in_eof = n == 0;
            s->zin = (ZSTD_inBuffer){s->in, n, 0};
        }
        if (s->zin.pos == s->zin.size && s->in_eof) {
            if (s->zlast != 0)
                return wc_err(e, -EBADMSG, "the layer's zstd stream ends early");
            return 0;
        }
        ZSTD_outBuffer out = {s->out, BUF, 0};
        size_t r = ZSTD_decompressStream(s->zs, &out, &s->zin);
        if (ZSTD_isError(r))
            return wc_err(e, -EBADMSG, "the layer is not valid zstd (%s)", ZSTD_getErrorName(r));
        s->zlast = r;
        s->len = out.pos;
    }
    return 0;
}

/* More bytes into out; 0 bytes at the end of the stream. */
static int refill(struct stream *s, struct wc_error *e)
{
    s->pos = s->len = 0;
    if (s->zs)
        return refill_zstd(s, e);
    if (!s->gzip)
        return read_some(s->fd, s->out, BUF, &s->len, e);
    while (s->len == 0) {
        if (s->st.avail_in == 0 && !s->in_eof) {
            size_t n;
            int r = read_some(s->fd, s->in, BUF, &n, e);
            if (r < 0)
                return r;
            s->in_eof = n == 0;
            s->st.next_in = s->in;
            s->st.avail_in = (uint32_t)n;
        }
        if (s->st.block_state == ISAL_BLOCK_FINISH) {
            if (s->st.avail_in == 0)
                return 0; /* the end of the last member */
            unsigned char *next = s->st.next_in; /* another gzip member follows */
            uint32_t avail = s->st.avail_in;
            isal_inflate_reset(&s->st);
            s->st.crc_flag = ISAL_GZIP;
            s->st.next_in = next;
            s->st.avail_in = avail;
        }
        s->st.next_out = s->out;
        s->st.avail_out = BUF;
        int r = isal_inflate(&s->st);
        if (r < 0)
            return wc_err(e, -EBADMSG, "the layer is not valid gzip (%s)",
                          r == ISAL_INCORRECT_CHECKSUM ? "its CRC does not match" : "a damaged stream");
        s->len = BUF - s->st.avail_out;
        if (s->len == 0 && s->in_eof && s->st.avail_in == 0 && s->st.block_state != ISAL_BLOCK_FINISH)
            return wc_err(e, -EBADMSG, "the layer's gzip stream ends early");
    }
    return 0;
}

/* More bytes into out, or -EBADMSG (what) at the end of the stream. */
static int more(struct stream *s, const char *what, struct wc_error *e)
{
    int r = refill(s, e);
    if (r < 0)
        return r;
    return s->len ? 0 : wc_err(e, -EBADMSG, "the layer ends inside %s", what);
}

/* Exactly n bytes into buf (NULL: skipped). */
static int stream_read(struct stream *s, void *buf, uint64_t n, struct wc_error *e)
{
    while (n > 0) {
        int r = s->pos == s->len ? more(s, "an entry", e) : 0;
        if (r < 0)
            return r;
        size_t k = s->len - s->pos < n ? s->len - s->pos : (size_t)n;
        if (buf) {
            memcpy(buf, s->out + s->pos, k);
            buf = (char *)buf + k;
        }
        s->pos += k;
        n -= k;
    }
    return 0;
}

/* n bytes of the stream into fd. */
static int stream_copy(struct stream *s, int fd, uint64_t n, const atomic_int *cancel, struct wc_error *e)
{
    while (n > 0) {
        if (cancel && atomic_load(cancel))
            return wc_err(e, -ECANCELED, "cancelled");
        int r = s->pos == s->len ? more(s, "a file", e) : 0;
        if (r < 0)
            return r;
        size_t k = s->len - s->pos < n ? s->len - s->pos : (size_t)n;
        for (size_t done = 0; done < k;) {
            ssize_t w = write(fd, s->out + s->pos + done, k - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return wc_err_errno(e, w < 0 ? -errno : -EIO, "writing");
            done += (size_t)w;
        }
        s->pos += k;
        n -= k;
    }
    return 0;
}

/* ---- the paths one layer wrote (whiteouts spare them) --------------------- */

#define MARK_ENTRY 1  /* the layer has an entry here */
#define MARK_DIR 2    /* a directory the layer wrote, or under which it wrote */

struct pathset {
    char **k;
    uint8_t *mark;
    size_t cap, n, bytes;
    uint64_t seed;                   /* random: a layer's names cannot be made to collide */
};

static size_t hash_of(uint64_t seed, const char *p)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static size_t slot_of(const struct pathset *s, const char *p)
{
    size_t i = hash_of(s->seed, p) & (s->cap - 1);
    while (s->k[i] && !streq(s->k[i], p))
        i = (i + 1) & (s->cap - 1);
    return i;
}

static int set_mark(struct pathset *s, const char *p, uint8_t mark)
{
    if (2 * (s->n + 1) > s->cap) {
        if (s->n >= ENTRIES_MAX)
            return -E2BIG;
        struct pathset g = {.cap = s->cap ? s->cap * 2 : 1024, .seed = s->seed, .bytes = s->bytes};
        g.k = calloc(g.cap, sizeof(*g.k));
        g.mark = calloc(g.cap, 1);
        if (!g.k || !g.mark) {
            free(g.k);
            free(g.mark);
            return -ENOMEM;
        }
        for (size_t i = 0; i < s->cap; i++)
            if (s->k[i]) {
                size_t j = slot_of(&g, s->k[i]);
                g.k[j] = s->k[i];
                g.mark[j] = s->mark[i];
                g.n++;
            }
        free(s->k);
        free(s->mark);
        *s = g;
    }
    size_t i = slot_of(s, p);
    if (!s->k[i]) {
        if ((s->bytes += strlen(p) + 1) > PATH_BYTES_MAX)
            return -E2BIG;
        if (!(s->k[i] = strdup(p)))
            return -ENOMEM;
        s->n++;
    }
    s->mark[i] |= mark;
    return 0;
}

static uint8_t mark_of(const struct pathset *s, const char *p)
{
    if (!s->cap)
        return 0;
    size_t i = slot_of(s, p);
    return s->k[i] ? s->mark[i] : 0;
}

static void set_free(struct pathset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->k[i]);
    free(s->k);
    free(s->mark);
    *s = (struct pathset){.seed = s->seed};
}

/* p and its parents, as written by this layer. */
static int mark_written(struct pathset *s, const char *p, int dir)
{
    char buf[PATHKEY_MAX + 1];
    snprintf(buf, sizeof(buf), "%s", p);
    int r = set_mark(s, buf, MARK_ENTRY | (dir ? MARK_DIR : 0));
    for (char *slash; r == 0 && (slash = strrchr(buf, '/'));) {
        *slash = '\0';
        if (mark_of(s, buf) & MARK_DIR)
            break; /* its parents are marked already */
        r = set_mark(s, buf, MARK_DIR);
    }
    return r;
}

/* ---- the tree ------------------------------------------------------------- */

struct unpacker {
    struct oci_unpack *u;
    const char *what;
    struct stream s;
    struct pathset written;
    char **whiteouts;                /* "o:DIR" (opaque) or "f:PATH", applied at the end */
    size_t n_wh, cap_wh;
    char dir[PATHKEY_MAX + 1];       /* the directory dirfd is (a cache: entries come dir by dir) */
    int dirfd;
};

/* Removes name in at and all under it, following no link. */
static int rm_at(int at, const char *name, unsigned depth)
{
    if (unlinkat(at, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    if (depth > PATHKEY_MAX)
        return -ELOOP;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (!d) {
        int r = -errno;
        close(fd);
        return r;
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
            r = rm_at(dirfd(d), de->d_name, depth + 1);
    closedir(d);
    return r < 0 ? r : unlinkat(at, name, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static void forget_dir(struct unpacker *k)
{
    if (k->dirfd >= 0 && k->dirfd != k->u->root)
        close(k->dirfd);
    k->dirfd = -1;
}

/* The directory at path (relative; "" is the root), walked from the root
 * without following a link; created (0755) where missing when create. */
static int open_dir(struct unpacker *k, const char *path, int create, const char *entry, struct wc_error *e)
{
    if (k->dirfd >= 0 && streq(k->dir, path))
        return k->dirfd;
    forget_dir(k);
    int fd = k->u->root;
    char buf[PATHKEY_MAX + 1];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *c = buf, *next; *c; c = next) {
        next = strchr(c, '/');
        next = next ? (*next = '\0', next + 1) : c + strlen(c);
        int sub = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 && errno == ENOENT && create && (mkdirat(fd, c, 0755) == 0 || errno == EEXIST)) {
            sub = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0 && fchmod(sub, 0755) < 0) { /* whatever the umask */
                close(sub);
                sub = -1;
            }
        }
        int err = errno;
        if (fd != k->u->root)
            close(fd);
        if (sub < 0) {
            char q[160];
            pathkey_quote(entry, strlen(entry), q, sizeof(q));
            if (!create && (err == ENOENT || err == ENOTDIR || err == ELOOP))
                return -ENOENT; /* nothing is under a file or a link */
            if (err == ENOTDIR || err == ELOOP)
                return wc_err(e, -EBADMSG, "%s: entry %s lies under a symbolic link or a file, not a directory "
                              "(an entry is never written through a link)", k->what, q);
            return wc_err_errno(e, -err, "%s: entry %s", k->what, q);
        }
        fd = sub;
    }
    snprintf(k->dir, sizeof(k->dir), "%s", path);
    return k->dirfd = fd;
}

/* Clears the way for an entry at name in at: a directory stays when
 * keep_dir (a directory entry over a directory), anything else goes. */
static int clear(struct unpacker *k, int at, const char *name, int keep_dir, struct wc_error *e)
{
    struct stat st;
    if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : wc_err_errno(e, -errno, "%s: looking at what an entry replaces", k->what);
    if (S_ISDIR(st.st_mode) && keep_dir)
        return 1;
    int r = S_ISDIR(st.st_mode) ? rm_at(at, name, 0) : unlinkat(at, name, 0) < 0 ? -errno : 0;
    return r < 0 ? wc_err_errno(e, r, "%s: replacing what an entry replaces", k->what) : 0;
}

/* "./a/b/" -> "a/b"; "" for the root; NULL with e set for what may not be a path. */
static const char *clean_path(struct unpacker *k, char *p, const char *role, struct wc_error *e)
{
    while (p[0] == '.' && (p[1] == '/' || p[1] == '\0'))
        p += p[1] ? 2 : 1;
    size_t n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        p[--n] = '\0';
    char q[160];
    pathkey_quote(p, n, q, sizeof(q));
    if (p[0] == '/')
        return wc_err(e, -EBADMSG, "%s: %s %s is an absolute path", k->what, role, q), NULL;
    if (n == 0)
        return p;
    if (pathkey_check(p, n, e) < 0)
        return wc_err_prefix(e, "%s: %s: ", k->what, role), NULL;
    size_t r = strlen(k->u->reserved);
    if (strncmp(p, k->u->reserved, r) == 0 && (p[r] == '\0' || p[r] == '/'))
        return wc_err(e, -EBADMSG, "%s: %s %s is in the store's own directory", k->what, role, q), NULL;
    return p;
}

/* Splits "a/b/c" into "a/b" and "c" (the parent "" at the top). */
static void split(const char *path, char *dir, size_t n, const char **base)
{
    const char *slash = strrchr(path, '/');
    snprintf(dir, n, "%.*s", slash ? (int)(slash - path) : 0, path);
    *base = slash ? slash + 1 : path;
}

/* A link's target as stored: inside the tree from the link's directory
 * (depth components under the root), or -EBADMSG. An absolute target is
 * rewritten relative to the root. */
static int link_target(struct unpacker *k, const char *path, const char *target, char *out, size_t n,
                       struct wc_error *e)
{
    unsigned depth = 0;
    for (const char *c = path; (c = strchr(c, '/')); c++)
        depth++;
    char q[160], t[160];
    pathkey_quote(path, strlen(path), q, sizeof(q));
    pathkey_quote(target, strlen(target), t, sizeof(t));
    size_t len = strlen(target);
    if (len == 0 || len > PATHKEY_MAX)
        return wc_err(e, -EBADMSG, "%s: symbolic link %s has a target of %zu bytes", k->what, q, len);
    out[0] = '\0';
    size_t o = 0;
    const char *rest = target;
    if (target[0] == '/') { /* the image's root is the tree's */
        for (unsigned i = 0; i < depth; i++)
            o += (size_t)snprintf(out + o, n - o, "../");
        while (*rest == '/')
            rest++;
    } else {
        unsigned up = 0;
        while (rest[0] == '.' && rest[1] == '.' && (rest[2] == '/' || rest[2] == '\0')) {
            up++;
            rest += rest[2] ? 3 : 2;
        }
        if (up > depth)
            return wc_err(e, -EBADMSG, "%s: symbolic link %s points to %s, outside the copy", k->what, q, t);
        o = (size_t)snprintf(out, n, "%.*s", (int)(rest - target), target);
    }
    /* what follows: names only, each checked as a key's */
    for (const char *c = rest; *c;) {
        size_t cl = strcspn(c, "/");
        if (cl == 2 && c[0] == '.' && c[1] == '.')
            return wc_err(e, -EBADMSG, "%s: symbolic link %s points to %s: a \"..\" after a name may lead out of "
                          "the copy through another link", k->what, q, t);
        if (cl > PATHKEY_COMPONENT_MAX)
            return wc_err(e, -EBADMSG, "%s: symbolic link %s has a target with a name over %d bytes", k->what, q,
                          PATHKEY_COMPONENT_MAX);
        for (size_t i = 0; i < cl; i++)
            if ((unsigned char)c[i] < 0x20 || c[i] == 0x7f)
                return wc_err(e, -EBADMSG, "%s: symbolic link %s has a control character in its target", k->what, q);
        c += cl;
        while (*c == '/')
            c++;
    }
    if (o + strlen(rest) >= n)
        return wc_err(e, -ENAMETOOLONG, "%s: symbolic link %s: target too long", k->what, q);
    memcpy(out + o, rest, strlen(rest) + 1);
    if (out[0] == '\0')
        snprintf(out, n, ".");
    return 0;
}

struct entry {
    char type;
    uint64_t size;
    unsigned mode;
    char *path, *link;               /* as the header (or PAX/GNU records) gave them */
};

static int write_file(struct unpacker *k, int at, const char *base, const struct entry *en, const char *q,
                      struct wc_error *e)
{
    struct oci_unpack *u = k->u;
    int r;
    if ((r = clear(k, at, base, 0, e)) < 0)
        return r;
    _cleanup_close_ int fd = openat(at, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                    en->mode & 0111 ? 0755 : 0644);
    if (fd < 0)
        return wc_err_errno(e, -errno, "%s: creating %s", k->what, q);
    if (fchmod(fd, en->mode & 0111 ? 0755 : 0644) < 0) /* the umask took bits off */
        return wc_err_errno(e, -errno, "%s: chmod %s", k->what, q);
    if ((r = stream_copy(&k->s, fd, en->size, u->cancel, e)) < 0)
        return wc_err_prefix(e, "%s: %s: ", k->what, q);
    return 0;
}

/* What an entry of size bytes costs the store, claimed before it is written
 * (blocks, rounded up, and one more for its inode and name), and the cap on
 * entries: a layer of a million empty directories is small but not cheap. */
static int charge(struct unpacker *k, uint64_t size, struct wc_error *e)
{
    struct oci_unpack *u = k->u;
    if (++u->entries > FILL_ENTRIES_MAX)
        return wc_err(e, -E2BIG, "%s: more than %d entries in the layers of one copy", k->what, FILL_ENTRIES_MAX);
    uint64_t cost = (size + BLOCK - 1) / BLOCK * BLOCK + BLOCK;
    int r = u->room ? u->room(u->room_ctx, cost, e) : 0;
    if (r == 0 && u->charged)
        atomic_fetch_add(u->charged, cost);
    return r;
}

static int apply(struct unpacker *k, struct entry *en, struct wc_error *e)
{
    char q[160];
    const char *path = clean_path(k, en->path, "entry", e);
    if (!path)
        return e->code;
    pathkey_quote(path, strlen(path), q, sizeof(q));
    int data = en->type == '0' || en->type == '\0' || en->type == '7';
    if (path[0] == '\0') /* the root itself: nothing to write, no bytes to keep */
        return data ? stream_read(&k->s, NULL, en->size, e) : 0;
    char dir[PATHKEY_MAX + 1];
    const char *base;
    split(path, dir, sizeof(dir), &base);
    if ((k->u->flags & OCI_UNPACK_WHITEOUTS) && strncmp(base, ".wh.", 4) == 0) {
        if (!data || en->size || !base[4])
            return wc_err(e, -EBADMSG, "%s: whiteout %s is not an empty file naming what it hides", k->what, q);
        char rec[PATHKEY_MAX + 4];
        if (streq(base, ".wh..wh..opq")) {
            snprintf(rec, sizeof(rec), "o:%s", dir);
        } else {
            char target[PATHKEY_MAX + 1];
            snprintf(target, sizeof(target), "%s%s%s", dir, *dir ? "/" : "", base + 4);
            if (!clean_path(k, target, "whiteout", e))
                return e->code;
            snprintf(rec, sizeof(rec), "f:%s", target);
        }
        if (k->n_wh == k->cap_wh) {
            size_t cap = k->cap_wh ? 2 * k->cap_wh : 16;
            char **v = cap <= ENTRIES_MAX ? realloc(k->whiteouts, cap * sizeof(*v)) : NULL;
            if (!v)
                return wc_err(e, -ENOMEM, "%s: too many whiteouts", k->what);
            k->whiteouts = v;
            k->cap_wh = cap;
        }
        return (k->whiteouts[k->n_wh] = strdup(rec)) ? (k->n_wh++, 0) : -ENOMEM;
    }
    int r;
    if (en->type == '3' || en->type == '4' || en->type == '6')
        return wc_err(e, -EBADMSG, "%s: entry %s is a %s, which a cache does not hold", k->what, q,
                      en->type == '6' ? "FIFO" : "device");
    if (!data && en->type != '1' && en->type != '2' && en->type != '5')
        return wc_err(e, -EBADMSG, "%s: entry %s is of tar type '%c', which warmcache does not read", k->what, q,
                      en->type > 0x20 && en->type < 0x7f ? en->type : '?');
    if ((r = charge(k, data ? en->size : 0, e)) < 0)
        return r;
    int at = open_dir(k, dir, 1, path, e);
    if (at < 0)
        return at;
    if ((k->u->flags & OCI_UNPACK_WHITEOUTS) && (r = mark_written(&k->written, path, en->type == '5')) < 0)
        return r == -E2BIG ? wc_err(e, r, "%s: more than %d paths or %u MiB of names in one layer", k->what,
                                    ENTRIES_MAX, PATH_BYTES_MAX >> 20)
                           : wc_err(e, r, "%s: out of memory", k->what);
    if (data)
        return write_file(k, at, base, en, q, e);
    if (en->type == '5') {
        if ((r = clear(k, at, base, 1, e)) < 0)
            return r;
        if (r == 0 && (mkdirat(at, base, 0755) < 0 || fchmodat(at, base, 0755, 0) < 0))
            return wc_err_errno(e, -errno, "%s: creating directory %s", k->what, q);
        return 0;
    }
    if (en->type == '2') {
        char t[PATHKEY_MAX * 2];
        if ((r = link_target(k, path, en->link, t, sizeof(t), e)) < 0 || (r = clear(k, at, base, 0, e)) < 0)
            return r;
        return symlinkat(t, at, base) < 0 ? wc_err_errno(e, -errno, "%s: creating link %s", k->what, q) : 0;
    }
    /* a hard link, to what the tree holds by now */
    const char *target = clean_path(k, en->link, "hard link target", e);
    if (!target)
        return e->code;
    if (streq(target, path))
        return 0; /* a link to itself: the file is there already */
    char tdir[PATHKEY_MAX + 1], td[160];
    const char *tbase;
    split(target, tdir, sizeof(tdir), &tbase);
    pathkey_quote(target, strlen(target), td, sizeof(td));
    if ((r = clear(k, at, base, 0, e)) < 0)
        return r;
    int tfd = open_dir(k, tdir, 0, target, e); /* forgets at */
    if (tfd == -ENOENT)
        return wc_err(e, -EBADMSG, "%s: hard link %s to %s, which no layer so far holds", k->what, q, td);
    if (tfd < 0)
        return tfd;
    struct stat tst;
    if (fstatat(tfd, tbase, &tst, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? wc_err(e, -EBADMSG, "%s: hard link %s to %s, which no layer so far holds", k->what,
                                        q, td)
                               : wc_err_errno(e, -errno, "%s: hard link %s", k->what, q);
    if (!S_ISREG(tst.st_mode)) /* a link's target was judged where it was; elsewhere it may lead out */
        return wc_err(e, -EBADMSG, "%s: hard link %s to %s, which is not a regular file", k->what, q, td);
    int lfd = openat(tfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (lfd < 0)
        return wc_err_errno(e, -errno, "%s: hard link %s", k->what, q);
    at = open_dir(k, dir, 1, path, e);
    r = at < 0 ? at : linkat(lfd, tbase, at, base, 0) < 0 ? -errno : 0;
    close(lfd);
    return r < 0 && !e->code ? wc_err_errno(e, r, "%s: hard link %s to %s", k->what, q, td) : r;
}

/* ---- whiteouts ------------------------------------------------------------- */

/* Removes what under dir (fd) this layer did not write. */
static int prune(struct unpacker *k, int fd, const char *dir, unsigned depth)
{
    if (depth > PATHKEY_MAX)
        return -ELOOP;
    int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* its own offset: a dup shares fd's */
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return -errno;
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d))) {
        if (streq(de->d_name, ".") || streq(de->d_name, "..") || (!*dir && streq(de->d_name, k->u->reserved)))
            continue;
        char p[PATHKEY_MAX + 260];
        snprintf(p, sizeof(p), "%s%s%s", dir, *dir ? "/" : "", de->d_name);
        uint8_t m = mark_of(&k->written, p);
        if (!m) {
            r = rm_at(dirfd(d), de->d_name, 0);
        } else if (m & MARK_DIR) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                r = prune(k, sub, p, depth + 1);
                close(sub);
            }
        }
    }
    closedir(d);
    return r;
}

static int apply_whiteouts(struct unpacker *k, struct wc_error *e)
{
    forget_dir(k);
    for (size_t i = 0; i < k->n_wh; i++) {
        const char *w = k->whiteouts[i], *path = w + 2;
        char dir[PATHKEY_MAX + 1], q[160];
        const char *base = NULL;
        pathkey_quote(path, strlen(path), q, sizeof(q));
        uint8_t m = w[0] == 'o' ? MARK_DIR : mark_of(&k->written, path);
        if (m & MARK_ENTRY)
            continue; /* hides lower layers only */
        /* an opaque directory, or one the layer wrote under: only what lower layers put there goes */
        int keep = (m & MARK_DIR) != 0;
        if (!keep)
            split(path, dir, sizeof(dir), &base);
        int fd = open_dir(k, keep ? path : dir, 0, path, e);
        if (fd == -ENOENT)
            continue;
        if (fd < 0)
            return fd;
        int r = keep ? prune(k, fd, path, 0) : rm_at(fd, base, 0);
        forget_dir(k);
        if (r < 0)
            return wc_err_errno(e, r, "%s: applying the whiteout of %s", k->what, q);
    }
    return 0;
}

/* ---- tar headers ------------------------------------------------------------ */

/* An octal field (NUL or space ended), or GNU's base-256 for large sizes. */
static int num(const unsigned char *f, size_t n, uint64_t *ret)
{
    uint64_t v = 0;
    if (f[0] & 0x80) {
        if (f[0] != 0x80)
            return -1; /* negative, or more than 64 bits */
        for (size_t i = 1; i < n; i++) {
            if (v >> 56)
                return -1;
            v = v << 8 | f[i];
        }
        *ret = v;
        return 0;
    }
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60)
            return -1;
        v = v << 3 | (uint64_t)(f[i] - '0');
    }
    if (i < n && f[i] != '\0' && f[i] != ' ')
        return -1;
    *ret = v;
    return 0;
}

static int header_sum_ok(const unsigned char *h)
{
    uint64_t want;
    if (num(h + 148, 8, &want) < 0)
        return 0;
    unsigned long u = 0;
    long s = 0;
    for (int i = 0; i < 512; i++) {
        unsigned char c = i >= 148 && i < 156 ? ' ' : h[i];
        u += c;
        s += (signed char)c;
    }
    return want == u || (long)want == s;
}

static char *field(const unsigned char *f, size_t n) { return strndup((const char *)f, n); }

/* PAX records "LEN key=value\n": path, linkpath and size are used. */
static int pax(struct unpacker *k, const char *b, size_t n, char **path, char **link, uint64_t *size, int *has_size,
               struct wc_error *e)
{
    for (size_t i = 0; i < n;) {
        /* the record's length in decimal digits, a space, then key=value and a newline */
        size_t len = 0, d = i;
        while (d < n && d - i < 8 && b[d] >= '0' && b[d] <= '9')
            len = len * 10 + (size_t)(b[d++] - '0');
        if (d == i || d >= n || b[d] != ' ' || len <= d - i + 1 || len > n - i || b[i + len - 1] != '\n')
            return wc_err(e, -EBADMSG, "%s: a PAX header that is not records", k->what);
        const char *kv = b + d + 1, *rec_end = b + i + len - 1, *eq = memchr(kv, '=', (size_t)(rec_end - kv));
        if (!eq)
            return wc_err(e, -EBADMSG, "%s: a PAX record without '='", k->what);
        size_t kl = (size_t)(eq - kv), vl = (size_t)(rec_end - eq - 1);
        char **dst = kl == 4 && !memcmp(kv, "path", 4) ? path : kl == 8 && !memcmp(kv, "linkpath", 8) ? link : NULL;
        if (dst) {
            if (memchr(eq + 1, '\0', vl))
                return wc_err(e, -EBADMSG, "%s: a PAX path with a NUL", k->what);
            char *v = strndup(eq + 1, vl);
            if (!v)
                return -ENOMEM;
            free(*dst);
            *dst = v;
        } else if (kl == 4 && !memcmp(kv, "size", 4)) {
            char tmp[32];
            snprintf(tmp, sizeof(tmp), "%.*s", (int)(vl < 31 ? vl : 31), eq + 1);
            char *se;
            errno = 0;
            unsigned long long v = strtoull(tmp, &se, 10);
            if (errno || *se || se == tmp || vl > 20 || strspn(tmp, "0123456789") != strlen(tmp))
                return wc_err(e, -EBADMSG, "%s: a PAX size that is not a number", k->what);
            *size = v;
            *has_size = 1;
        }
        i += len;
    }
    return 0;
}

static int read_meta(struct unpacker *k, uint64_t size, char **ret, struct wc_error *e)
{
    if (size > META_MAX)
        return wc_err(e, -EBADMSG, "%s: a PAX header or long name of %llu bytes", k->what, (unsigned long long)size);
    char *b = malloc(size + 1);
    if (!b)
        return -ENOMEM;
    int r = stream_read(&k->s, b, size, e);
    if (r == 0)
        r = stream_read(&k->s, NULL, (512 - size % 512) % 512, e);
    if (r < 0) {
        free(b);
        return r;
    }
    b[size] = '\0';
    *ret = b;
    return 0;
}

static void free_meta(char **a, char **b, char **c, char **d)
{
    for (char **v[] = {a, b, c, d}, ***p = v; p < v + 4; p++) {
        free(**p);
        **p = NULL;
    }
}

static int run(struct unpacker *k, struct wc_error *e)
{
    unsigned char h[512];
    char *pax_path = NULL, *pax_link = NULL, *long_path = NULL, *long_link = NULL;
    uint64_t pax_size = 0;
    int has_pax_size = 0, r = 0;
    for (;;) {
        if (k->u->cancel && atomic_load(k->u->cancel)) {
            r = wc_err(e, -ECANCELED, "cancelled");
            break;
        }
        /* the end: two zero blocks (one is enough), or the stream's end between entries */
        if (k->s.pos == k->s.len && (r = refill(&k->s, e)) < 0)
            break;
        if (k->s.len == 0)
            break;
        if ((r = stream_read(&k->s, h, 512, e)) < 0)
            break;
        int zero = 1;
        for (int i = 0; i < 512 && zero; i++)
            zero = h[i] == 0;
        if (zero)
            break;
        if (!header_sum_ok(h)) {
            r = wc_err(e, -EBADMSG, "%s: a tar header with a wrong checksum (not a tar layer, or a damaged one)",
                       k->what);
            break;
        }
        uint64_t size;
        if (num(h + 124, 12, &size) < 0) {
            r = wc_err(e, -EBADMSG, "%s: a tar header with a size that is not a number", k->what);
            break;
        }
        char type = (char)h[156];
        uint64_t mode = 0;
        num(h + 100, 8, &mode);
        if (type == 'x' || type == 'g' || type == 'L' || type == 'K') { /* about the next entry; their own size is theirs */
            char *b = NULL;
            if ((r = read_meta(k, size, &b, e)) < 0)
                break;
            if (type == 'x') {
                r = pax(k, b, size, &pax_path, &pax_link, &pax_size, &has_pax_size, e);
                free(b);
            } else if (type == 'L' || type == 'K') {
                char **dst = type == 'L' ? &long_path : &long_link;
                free(*dst);
                *dst = b;
            } else {
                free(b); /* 'g': global records, none of which we use */
            }
            if (r < 0)
                break;
            continue;
        }
        if (has_pax_size)
            size = pax_size;
        if (size > ENTRY_MAX) {
            r = wc_err(e, -EBADMSG, "%s: an entry that claims %llu bytes", k->what, (unsigned long long)size);
            break;
        }
        if (type == 'S' || type == 'M' || type == 'V') {
            r = wc_err(e, -EBADMSG, "%s: a GNU %s entry, which warmcache does not read", k->what,
                       type == 'S' ? "sparse" : type == 'M' ? "multi-volume" : "volume");
            break;
        }
        struct entry en = {.type = type, .size = size, .mode = (unsigned)mode};
        char *name = field(h, 100), *prefix = field(h + 345, 155);
        if (pax_path)
            en.path = strdup(pax_path);
        else if (long_path)
            en.path = strdup(long_path);
        else if (!memcmp(h + 257, "ustar", 6) && name && prefix && *prefix) { /* POSIX; GNU keeps times there */
            if (asprintf(&en.path, "%s/%s", prefix, name) < 0)
                en.path = NULL;
        } else {
            en.path = name ? strdup(name) : NULL;
        }
        en.link = pax_link ? strdup(pax_link) : long_link ? strdup(long_link) : field(h + 157, 100);
        free(name);
        free(prefix);
        if (!en.path || !en.link)
            r = -ENOMEM;
        else if (strlen(en.path) > PATHKEY_MAX)
            r = wc_err(e, -EBADMSG, "%s: an entry whose path is over %d bytes", k->what, PATHKEY_MAX);
        else
            r = apply(k, &en, e);
        int data = type == '0' || type == '\0' || type == '7';
        if (r == 0 && !data) /* a link's or directory's size, which nothing reads, still takes its blocks */
            r = stream_read(&k->s, NULL, size, e);
        if (r == 0)
            r = stream_read(&k->s, NULL, (512 - size % 512) % 512, e);
        free(en.path);
        free(en.link);
        free_meta(&pax_path, &pax_link, &long_path, &long_link);
        has_pax_size = 0;
        if (r < 0)
            break;
    }
    free_meta(&pax_path, &pax_link, &long_path, &long_link);
    return r;
}

int oci_unpack(int layer_fd, struct oci_unpack *u, const char *what, struct wc_error *e)
{
    struct unpacker k = {.u = u, .what = what, .dirfd = -1, .s = {.fd = layer_fd, .gzip = !!(u->flags & OCI_UNPACK_GZIP)}};
    int packed = k.s.gzip || (u->flags & OCI_UNPACK_ZSTD);
    k.s.out = malloc(BUF);
    k.s.in = packed ? malloc(BUF) : NULL;
    if (u->flags & OCI_UNPACK_ZSTD)
        k.s.zs = ZSTD_createDStream();
    int r = !k.s.out || (packed && !k.s.in) || ((u->flags & OCI_UNPACK_ZSTD) && !k.s.zs) ? -ENOMEM : 0;
    if (r == 0 && k.s.zs && ZSTD_isError(ZSTD_initDStream(k.s.zs)))
        r = -ENOMEM;
    if (r == 0 && getrandom(&k.written.seed, sizeof(k.written.seed), 0) != sizeof(k.written.seed))
        k.written.seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&k; /* no entropy yet: still not the attacker's */
    if (r == 0 && k.s.gzip) {
        isal_inflate_init(&k.s.st);
        k.s.st.crc_flag = ISAL_GZIP;
    }
    if (r == 0)
        r = run(&k, e);
    if (r == 0)
        r = apply_whiteouts(&k, e);
    forget_dir(&k);
    for (size_t i = 0; i < k.n_wh; i++)
        free(k.whiteouts[i]);
    free(k.whiteouts);
    set_free(&k.written);
    ZSTD_freeDStream(k.s.zs);
    free(k.s.in);
    free(k.s.out);
    if (r == -ENOMEM && !e->code)
        r = wc_err(e, r, "%s: out of memory", what);
    return r;
}

int oci_tree_reset(int root, const char *reserved, struct wc_error *e)
{
    int fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        int r = -errno;
        if (fd >= 0)
            close(fd);
        return wc_err_errno(e, r, "reading the copy to start it again");
    }
    int r = 0;
    struct dirent *de;
    while (r == 0 && (de = readdir(d)))
        if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && !streq(de->d_name, reserved))
            r = rm_at(dirfd(d), de->d_name, 0);
    closedir(d);
    return r < 0 ? wc_err_errno(e, r, "emptying the copy to start it again") : 0;
}

int oci_place_file(struct oci_unpack *u, const char *staged, const char *path, const char *what, struct wc_error *e)
{
    struct unpacker k = {.u = u, .what = what, .dirfd = -1};
    char p[PATHKEY_MAX + 1], sdir[PATHKEY_MAX + 1], dir[PATHKEY_MAX + 1];
    const char *base, *sbase;
    if (snprintf(p, sizeof(p), "%s", path) >= (int)sizeof(p) || !clean_path(&k, p, "file", e))
        return e->code ? e->code : wc_err(e, -ENAMETOOLONG, "%s: a path over %d bytes", what, PATHKEY_MAX);
    split(staged, sdir, sizeof(sdir), &sbase);
    split(p, dir, sizeof(dir), &base);
    int r = charge(&k, 0, e); /* the bytes are the staged file's, claimed by the fill: a name and an inode */
    _cleanup_close_ int sfd = r < 0 ? -1 : openat(u->root, sdir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (r == 0 && sfd < 0)
        r = wc_err_errno(e, -errno, "%s: opening the staged file", what);
    int at = r < 0 ? r : open_dir(&k, dir, 1, p, e);
    if (at >= 0 && (r = clear(&k, at, base, 0, e)) >= 0)
        r = linkat(sfd, sbase, at, base, 0) < 0 ? wc_err_errno(e, -errno, "%s: placing %s", what, p) : 0;
    else if (at < 0)
        r = at;
    forget_dir(&k);
    return r;
}
