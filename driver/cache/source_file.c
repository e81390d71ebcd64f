/*
 * file:// source: a directory on a file system the node already has mounted
 * (FSx for Lustre, EFS, an NFS export). It is a real use, not a test aid: a
 * shared file system is slow to read from many pods at once, and a local copy
 * on NVMe is not.
 *
 * Listing walks the tree with openat() and never follows a symlink blindly: a
 * link whose target resolves inside the source root is copied as the file it
 * points to; one that leaves the root, points at a directory or dangles is
 * refused with its key named. The version tag of a file is its mtime in ns,
 * checked again before and after each copy so a file rewritten during a fill
 * is reported instead of copied half-old, half-new.
 */
#include "cache/source.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/pathkey.h"
#include "base/units.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define WALK_MAX_DEPTH 64
#define COPY_CHUNK (64u << 20)

struct file_source {
    struct source base;
    char *root;      /* as given, no trailing slash */
    int root_fd;     /* the directory opened once, when admitted: listing and reads go from it, not the path */
    char at[32];     /* "/proc/self/fd/<root_fd>": the directory by its fd, for realpath */
    char *root_real; /* where root_fd is, for containment checks (base.real_path) */
    unsigned list_timeout_s;
};

int source_file_url_check(const char *url, struct wc_error *e)
{
    int r = abspath_check(url + 7, "the path of a file:// source (file:///mnt/models/)", e);
    return r < 0 ? wc_err_prefix(e, "source \"%.200s\": ", url) : 0;
}

static const char *etag_of(const struct stat *st, char *buf, size_t n)
{
    snprintf(buf, n, "%" PRId64 ".%09ld", (int64_t)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    return buf;
}

struct walk {
    struct file_source *fs;
    source_object_fn fn;
    void *ctx;
    const atomic_int *cancel;
    double deadline;         /* mono_s(); 0: none */
    uint64_t seen;
    struct wc_error *e;
    char key[PATHKEY_MAX + 2];
};

/* Every 1024 entries: has the caller given up, or the deadline passed? */
static int walk_bounded(struct walk *w)
{
    if (++w->seen % 1024)
        return 0;
    if (w->cancel && atomic_load(w->cancel))
        return wc_err(w->e, -ECANCELED, "listing %s: cancelled", w->fs->base.url);
    if (w->deadline && mono_s() > w->deadline)
        return wc_err(w->e, -ETIMEDOUT, "listing %s took longer than --list-timeout (%us) and was given up after "
                      "%" PRIu64 " entries", w->fs->base.url, w->fs->list_timeout_s, w->seen);
    return 0;
}

/* A symlink is followed only if its target stays under the source root. */
static int resolve_link(struct walk *w, size_t keylen, struct stat *ret_st)
{
    char path[PATH_MAX], real[PATH_MAX], q[512];
    pathkey_quote(w->key, keylen, q, sizeof(q));
    if (snprintf(path, sizeof(path), "%s/%s", w->fs->at, w->key) >= (int)sizeof(path))
        return wc_err(w->e, -ENAMETOOLONG, "source key \"%s\": path too long", q);
    if (!realpath(path, real))
        return wc_err_errno(w->e, -ENOENT, "source key \"%s\" is a symlink that cannot be resolved", q);
    size_t rl = strlen(w->fs->root_real);
    if (strncmp(real, w->fs->root_real, rl) != 0 || real[rl] != '/')
        return wc_err(w->e, -EINVAL, "source key \"%s\" is a symlink that points outside the source directory; "
                      "warmcache copies only what lies under the source", q);
    if (stat(real, ret_st) < 0)
        return wc_err_errno(w->e, -errno, "source key \"%s\"", q);
    if (!S_ISREG(ret_st->st_mode))
        return wc_err(w->e, -EINVAL, "source key \"%s\" is a symlink to something other than a regular file", q);
    return 0;
}

static int walk_dir(struct walk *w, int fd, size_t keylen, int depth)
{
    if (depth > WALK_MAX_DEPTH)
    {
        close(fd);
        return wc_err(w->e, -ELOOP, "source is nested more than %d directories deep", WALK_MAX_DEPTH);
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return wc_err_errno(w->e, -errno, "source: cannot read a directory");
    }
    int r = 0;
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        if (streq(de->d_name, ".") || streq(de->d_name, ".."))
            continue;
        if ((r = walk_bounded(w)) < 0)
            break;
        size_t nl = strlen(de->d_name);
        size_t klen = keylen + (keylen ? 1 : 0) + nl;
        if (klen > PATHKEY_MAX) {
            r = wc_err(w->e, -EINVAL, "a source key under \"%.200s\" is longer than 1024 bytes", w->key);
            break;
        }
        if (keylen)
            w->key[keylen] = '/';
        memcpy(w->key + keylen + (keylen ? 1 : 0), de->d_name, nl + 1);
        if ((r = pathkey_check(w->key, klen, w->e)) < 0)
            break;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            r = wc_err_errno(w->e, -errno, "source key \"%s\"", w->key);
            break;
        }
        if (S_ISLNK(st.st_mode) && (r = resolve_link(w, klen, &st)) < 0)
            break;
        char tag[48];
        if (S_ISREG(st.st_mode)) {
            r = w->fn(w->ctx, w->key, klen, (uint64_t)st.st_size, etag_of(&st, tag, sizeof(tag)));
        } else if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                r = wc_err_errno(w->e, -errno, "source directory \"%s\"", w->key);
                break;
            }
            r = walk_dir(w, sub, klen, depth + 1);
        } else {
            char q[512];
            pathkey_quote(w->key, klen, q, sizeof(q));
            r = wc_err(w->e, -EINVAL, "source key \"%s\" is not a regular file (a device, FIFO or socket)", q);
        }
        if (r < 0)
            break;
        w->key[keylen] = '\0';
    }
    if (r == 0 && errno != 0)
        r = wc_err_errno(w->e, -errno, "source: reading a directory failed");
    closedir(d);
    return r;
}

static int file_list(struct source *s, source_object_fn fn, void *ctx, const atomic_int *cancel,
                     struct wc_error *e)
{
    struct file_source *fs = (struct file_source *)s;
    int fd = openat(fs->root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* the directory admitted, not the path again */
    if (fd < 0)
        return wc_err_errno(e, -errno, "source %s: cannot open the directory", s->url);
    struct walk w = {.fs = fs, .fn = fn, .ctx = ctx, .cancel = cancel, .e = e,
                     .deadline = fs->list_timeout_s ? mono_s() + fs->list_timeout_s : 0};
    return walk_dir(&w, fd, 0, 0);
}

static int same_version(const struct listing_entry *ent, const struct stat *st)
{
    char tag[48];
    return (uint64_t)st->st_size == ent->size && streq(etag_of(st, tag, sizeof(tag)), ent->etag);
}

static int copy_plain(int in, int out, uint64_t off, uint64_t len, const atomic_int *cancel, struct fill_progress *p)
{
    _cleanup_free_ char *buf = malloc(1 << 20);
    if (!buf)
        return -ENOMEM;
    for (uint64_t done = 0; done < len;) {
        if (cancel && atomic_load(cancel))
            return -ECANCELED;
        size_t want = len - done > (1 << 20) ? (1 << 20) : (size_t)(len - done);
        ssize_t n = RETRY_EINTR(pread(in, buf, want, (off_t)(off + done)));
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ESTALE;
        for (ssize_t w = 0; w < n;) {
            ssize_t k = RETRY_EINTR(pwrite(out, buf + w, (size_t)(n - w), (off_t)(off + done) + w));
            if (k < 0)
                return -errno;
            w += k;
        }
        done += (uint64_t)n;
        if (p)
            atomic_fetch_add(&p->bytes_done, (uint64_t)n);
    }
    return 0;
}

/* Copies [off, off+len) of in to the same offsets of out, in the kernel when it can. */
static int copy_range(int in, int out, uint64_t off, uint64_t len, const atomic_int *cancel, struct fill_progress *p)
{
    loff_t oin = (loff_t)off, oout = (loff_t)off;
    for (uint64_t done = 0; done < len;) {
        if (cancel && atomic_load(cancel))
            return -ECANCELED;
        size_t want = len - done > COPY_CHUNK ? COPY_CHUNK : (size_t)(len - done);
        ssize_t n = RETRY_EINTR(copy_file_range(in, &oin, out, &oout, want, 0));
        if (n < 0 && done == 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
            return copy_plain(in, out, off, len, cancel, p);
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ESTALE; /* the file shrank under us */
        done += (uint64_t)n;
        if (p)
            atomic_fetch_add(&p->bytes_done, (uint64_t)n);
    }
    return 0;
}

/* Opens a listed file, as long as it is still the listed version. */
static int open_listed(struct source *s, const struct listing_entry *ent, struct wc_error *e)
{
    struct file_source *fs = (struct file_source *)s;
    char q[512];
    pathkey_quote(ent->key, strlen(ent->key), q, sizeof(q));
    int in = openat(fs->root_fd, ent->key, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return wc_err_errno(e, errno == ENOENT ? -ESTALE : -errno, "reading %s%s", s->url, q);
    /* what was opened, not what was listed: a symlink swapped since the
     * listing must not pull a file from outside the source into a pod */
    char fdp[64], real[PATH_MAX];
    snprintf(fdp, sizeof(fdp), "/proc/self/fd/%d", in);
    ssize_t n = readlink(fdp, real, sizeof(real) - 1);
    size_t rl = strlen(fs->root_real);
    if (n > 0)
        real[n] = '\0';
    if (n <= 0 || strncmp(real, fs->root_real, rl) != 0 || (real[rl] != '/' && !streq(fs->root_real, "/"))) {
        close(in);
        return wc_err(e, -ESTALE, "%s%s now resolves outside the source directory", s->url, q);
    }
    struct stat st;
    if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode) || !same_version(ent, &st)) {
        close(in);
        return wc_err(e, -ESTALE, "%s%s changed since the source was listed", s->url, q);
    }
    return in;
}

/* Parts one after another: a local or shared file system gives its speed to
 * one reader in the kernel (copy_file_range) about as well as to many. */
static int file_transfer(struct source *s, const struct listing *l, struct fill_sink *k, const atomic_int *cancel,
                         struct fill_progress *p, struct wc_error *e)
{
    _cleanup_close_ int in = -1;
    size_t in_file = SIZE_MAX;
    for (size_t i = 0; i < k->n; i++) {
        const struct fill_part *pt = &k->parts[i];
        const struct listing_entry *ent = &l->v[pt->file];
        if (cancel && atomic_load(cancel))
            return wc_err(e, -ECANCELED, "fill cancelled");
        if (pt->file != in_file) {
            if (in >= 0)
                close(in);
            in_file = SIZE_MAX;
            if ((in = open_listed(s, ent, e)) < 0)
                return in;
            in_file = pt->file;
        }
        int out = k->fd(k, i, e);
        if (out < 0)
            return out;
        char q[512];
        pathkey_quote(ent->key, strlen(ent->key), q, sizeof(q));
        int r = copy_range(in, out, pt->off, pt->len, cancel, p);
        struct stat st;
        if (r == 0 && (fstat(in, &st) < 0 || !same_version(ent, &st)))
            r = -ESTALE;
        if (r == -ECANCELED)
            return wc_err(e, r, "fill cancelled");
        if (r == -ESTALE)
            return wc_err(e, r, "%s%s changed while it was being copied", s->url, q);
        if (r == -ENOSPC || r == -EDQUOT)
            return wc_err(e, -ENOSPC, "the node store is full while copying %s%s (%" PRIu64 " bytes); what was "
                          "written stays and the fill resumes once there is room", s->url, q, ent->size);
        if (r < 0)
            return wc_err_errno(e, r, "copying %s%s", s->url, q);
        if ((r = k->done(k, i, e)) < 0)
            return r;
    }
    return 0;
}

static void file_free(struct source *s)
{
    struct file_source *fs = (struct file_source *)s;
    if (fs->root_fd >= 0)
        close(fs->root_fd);
    free(fs->root);
    free(fs->root_real);
    free(s->url);
    free(s->identity);
    free(fs);
}

static const struct source_ops file_ops = {
    .scheme = "file",
    .list = file_list,
    .transfer = file_transfer,
    .free = file_free,
};

int source_file_open(const struct source_spec *spec, const struct source_tuning *t, struct source **ret,
                     struct wc_error *e)
{
    const char *url = spec->url;
    int r;
    struct file_source *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    fs->base.ops = &file_ops;
    fs->root_fd = -1;
    fs->list_timeout_s = t ? t->list_timeout_s : 0;
    fs->root = strdup(url + 7);
    if (!fs->root) {
        free(fs);
        return -ENOMEM;
    }
    size_t n = strlen(fs->root);
    while (n > 1 && fs->root[n - 1] == '/')
        fs->root[--n] = '\0';
    /* opened once: what is judged below is what the fill reads, whatever
     * happens to the path afterwards */
    if ((fs->root_fd = open(fs->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        r = errno == ENOENT || errno == ENOTDIR /* a path to fix: INVALID_ARGUMENT, with the real reason */
                ? wc_err(e, -EINVAL, "source %s: the directory is not there (is the shared file system mounted on "
                         "this node?): %s", url, strerror(errno))
                : wc_err_errno(e, -errno, "source %s: cannot open the directory", url);
        file_free(&fs->base);
        return r;
    }
    snprintf(fs->at, sizeof(fs->at), "/proc/self/fd/%d", fs->root_fd);
    char real[PATH_MAX];
    ssize_t rl = readlink(fs->at, real, sizeof(real) - 1);
    if (rl <= 0) {
        r = wc_err_errno(e, -errno, "source %s: cannot tell where the directory is", url);
        file_free(&fs->base);
        return r;
    }
    real[rl] = '\0';
    char real_url[PATH_MAX + 8];
    snprintf(real_url, sizeof(real_url), "file://%s", real);
    if (spec->within && !fs_url_under_any(spec->within, real_url)) {
        r = wc_err(e, -EPERM, "source %.200s leads to %.200s, which is under none of %.300s, where the StorageClass "
                   "keeps a PVC's source (pvcSourcePrefixes): a directory or link on the way changed since the "
                   "volume was created", url, real, spec->within);
        file_free(&fs->base);
        return r;
    }
    if (t && t->admit) {
        char where[PATH_MAX + 16];
        snprintf(where, sizeof(where), "file://%s%s", real, streq(real, "/") ? "" : "/");
        if ((r = t->admit(t->admit_ctx, where, t->narrow, e)) < 0) {
            file_free(&fs->base);
            return wc_err_prefix(e, "source %.200s leads to %.200s: ", url, where);
        }
    }
    fs->root_real = strdup(real);
    if (asprintf(&fs->base.url, "file://%s/", streq(fs->root, "/") ? "" : fs->root) < 0)
        fs->base.url = NULL;
    fs->base.identity = fs->base.url ? strdup(fs->base.url) : NULL;
    if (!fs->root_real || !fs->base.url || !fs->base.identity) {
        file_free(&fs->base);
        return -ENOMEM;
    }
    *ret = &fs->base;
    return 0;
}
