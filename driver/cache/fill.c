/*
 * Filling one copy: the store's side of a transfer (see store.h for the
 * layout and fill.h for the contract).
 *
 * The fill is planned as parts: byte ranges of every file not already
 * whole, of the part size given, or by default of fill_part_size() (8 MiB,
 * more for large files). A source writes parts in any order into tmp/<cid>/<n>,
 * fallocated to the file's size; each written part is appended to the part
 * journal tmp/<cid>/parts. When a file's last part lands, a placer thread
 * makes it durable and renames it into content/<cid>.partial/. The placer
 * commits in groups: one syncfs() for every file that finished while the
 * previous group was being synced, so 20,000 small files cost a handful of
 * flushes, not 20,000 fsyncs, and the transfer never waits for the disk.
 *
 * Before a file is placed, it is checked against the checksum the source
 * keeps for it (CRC32C, CRC64NVME, SHA-256, ... when S3 has one): learnt
 * from the GET when one request fetched the whole object, else asked for
 * with a HEAD. A CRC64NVME is combined from the parts' CRCs; a checksum the
 * source knows without I/O (an OCI digest) is fed each part in order as it
 * lands (feed_locked); others read the file back once it is whole. A mismatch drops the file's parts and fails the fill with
 * DATA_LOSS; size and ETag are checked for every file regardless.
 *
 * Resume: whole files in the partial copy are skipped; parts in the journal
 * are skipped if the journal was written since the last boot (a kill -9
 * leaves the page cache, so what was written is there; a reboot may not, so
 * then only whole files, which were synced, count).
 */
#include "cache/fill.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL_MAGIC "warmcache-parts 2" /* 2: part sizes per file (fill_part_size) */

struct fill_file {
    int fd;          /* open while parts are written, else -1 */
    size_t left;     /* parts not yet written */
    int known;       /* want is what the source said (else: ask it before placing) */
    struct cksum want;
    /* a file of many parts whose checksum does not combine (SHA-256): fed
     * its parts in order as they land, by the thread that finished the next
     * one, so nothing is left to read back when its last part is in */
    struct cksum_stream *hs;
    uint64_t hashed;  /* parts fed so far */
    int hashing;      /* a thread is feeding it now */
    int streamed;     /* got holds the whole file's checksum */
    char got[CKSUM_VALUE_MAX];
};

struct filler {
    struct fill_sink sink;        /* first: the source sees only this */
    struct store *s;
    struct source *src;
    const struct listing *l;
    struct fill_progress *p;
    uint64_t part_size;           /* as given; 0: the default, per file (fill_part_size) */
    int reserve;                  /* fallocate files: not on tmpfs, where it only zeroes pages twice */
    char partial[PATH_MAX], tmpdir[PATH_MAX];
    struct fill_file *files;
    struct fill_part *parts;
    size_t nparts;
    uint64_t *first;              /* per file: its first part's number among all parts */
    uint64_t *pcrc;               /* per part: CRC64NVME of its bytes, if pcrc_have */
    uint8_t *pcrc_have;
    uint8_t *pdone;               /* per part: in the file (written now, or before a kill) */
    int journal;                  /* append-only, one "<file> <part>\n" per written part */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t *queue, qn, qcap;      /* files whole in tmp/, to be placed */
    size_t placed;
    int closing, placer_running;
    pthread_t placer;
    int err;                      /* the placer's first failure */
    struct wc_error perr;
};

uint64_t fill_part_size(uint64_t part_size, uint64_t size)
{
    if (part_size)
        return part_size;
    uint64_t ps = FILL_PART_SIZE;
    while (ps < FILL_PART_MAX && size > ps * FILL_PARTS_PER_FILE)
        ps *= 2;
    return ps;
}

/* the part size of file i of the listing */
static uint64_t ps_of(const struct filler *f, size_t i) { return fill_part_size(f->part_size, f->l->v[i].size); }

static uint64_t parts_of(uint64_t size, uint64_t ps) { return (size + ps - 1) / ps; }

static void tmp_path(const struct filler *f, size_t file, char *out, size_t n)
{
    snprintf(out, n, "%s/%zu", f->tmpdir, file);
}

/* mkdir -p for the parents of key under base; keys are validated, so no
 * component is "." or "..", and the tree under base is only ever ours. */
static int make_parents(const char *base, const char *key)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof(p), "%s/%s", base, key) >= (int)sizeof(p))
        return -ENAMETOOLONG;
    char *slash = strrchr(p, '/');
    *slash = '\0';
    return fs_mkdir_p(p, 0755);
}

/* ---- placing whole files ------------------------------------------------- */

static int place(struct filler *f, size_t file, struct wc_error *e)
{
    const struct listing_entry *ent = &f->l->v[file];
    char tmp[PATH_MAX], dst[PATH_MAX];
    tmp_path(f, file, tmp, sizeof(tmp));
    if (snprintf(dst, sizeof(dst), "%s/%s", f->partial, ent->key) >= (int)sizeof(dst))
        return wc_err(e, -ENAMETOOLONG, "path of %s is too long for the store", ent->key);
    struct stat st;
    if (lstat(tmp, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != ent->size)
        return wc_err(e, -EIO, "store: %s is not the %" PRIu64 " bytes the listing says", ent->key, ent->size);
    int r = make_parents(f->partial, ent->key);
    if (r < 0)
        return wc_err_errno(e, r, "store: creating the directory of %s", ent->key);
    if (rename(tmp, dst) < 0)
        return wc_err_errno(e, -errno, "store: placing %s", ent->key);
    atomic_fetch_add(&f->p->files_done, 1);
    return 0;
}

/* The CRC64NVME of a whole file from the CRCs of its parts, when every part
 * has one (computed as it arrived); 0 when not (then: read it back). */
static int crc_of_parts(struct filler *f, size_t file, char out[CKSUM_VALUE_MAX])
{
    const struct listing_entry *ent = &f->l->v[file];
    uint64_t n = f->first[file + 1] - f->first[file], crc = 0, ps = ps_of(f, file);
    if (n == 0)
        return 0;
    for (uint64_t k = 0; k < n; k++) {
        uint64_t g = f->first[file] + k;
        if (!f->pcrc_have[g])
            return 0;
        uint64_t len = k + 1 < n ? ps : ent->size - k * ps;
        crc = k == 0 ? f->pcrc[g] : cksum_crc64nvme_combine(crc, f->pcrc[g], len);
    }
    cksum_crc64nvme_b64(crc, out);
    return 1;
}

/* The file as written against the source's own checksum of the object. */
static int verify(struct filler *f, size_t file, struct wc_error *e)
{
    struct fill_file *ff = &f->files[file];
    const struct listing_entry *ent = &f->l->v[file];
    if (!ff->known && f->src->ops->checksum) {
        int r = f->src->ops->checksum(f->src, ent, &ff->want, e);
        if (r < 0)
            return wc_err_prefix(e, "checksum of %s: ", ent->key);
        ff->known = 1;
    }
    if (!ff->known || ff->want.alg == CKSUM_NONE || ff->want.composite)
        return 0; /* size and ETag only: the source keeps no whole-object checksum for it */
    char tmp[PATH_MAX], got[CKSUM_VALUE_MAX];
    tmp_path(f, file, tmp, sizeof(tmp));
    if (ff->streamed) {
        if (!streq(ff->got, ff->want.value)) {
            unlink(tmp);
            return wc_err(e, -EBADMSG, "%s: %s of the bytes received is %s, the source says %s: the object does not "
                          "match its own checksum (damaged in the source or on the way); it is fetched again on the "
                          "next try", ent->key, cksum_alg_name(ff->want.alg), ff->got, ff->want.value);
        }
        atomic_fetch_add(&f->p->files_checksummed, 1);
        return 0;
    }
    if (ff->want.alg == CKSUM_CRC64NVME && crc_of_parts(f, file, got)) {
        if (!streq(got, ff->want.value)) {
            unlink(tmp);
            return wc_err(e, -EBADMSG, "%s: CRC64NVME of the bytes received is %s, the source says %s: the object "
                          "does not match its own checksum (damaged in the source or on the way); it is fetched "
                          "again on the next try", ent->key, got, ff->want.value);
        }
        atomic_fetch_add(&f->p->files_checksummed, 1);
        return 0;
    }
    _cleanup_close_ int fd = open(tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return wc_err_errno(e, -errno, "store: reading back %s", ent->key);
    int r = cksum_fd(fd, ent->size, ff->want.alg, got, e);
    if (r < 0)
        return wc_err_prefix(e, "%s: ", ent->key);
    if (!streq(got, ff->want.value)) {
        unlink(tmp); /* its journaled parts go with it: the next fill fetches it again */
        return wc_err(e, -EBADMSG, "%s: %s of the bytes received is %s, the source says %s: the object does not "
                      "match its own checksum (damaged in the source or on the way); it is fetched again on the "
                      "next try", ent->key, cksum_alg_name(ff->want.alg), got, ff->want.value);
    }
    atomic_fetch_add(&f->p->files_checksummed, 1);
    return 0;
}

static void *placer_main(void *arg)
{
    struct filler *f = arg;
    _cleanup_close_ int dirfd = open(f->tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    pthread_mutex_lock(&f->lock);
    for (;;) {
        while (f->qn == 0 && !f->closing)
            pthread_cond_wait(&f->cond, &f->lock);
        if (f->qn == 0)
            break;
        size_t *batch = f->queue, n = f->qn;
        f->queue = NULL;
        f->qn = f->qcap = 0;
        int failed = f->err;
        pthread_mutex_unlock(&f->lock);
        struct wc_error e;
        int r = 0;
        for (size_t i = 0; !failed && r == 0 && i < n; i++)
            r = verify(f, batch[i], &e);
        /* one flush makes the whole group durable before any of it is renamed */
        if (!failed && r == 0 && syncfs(dirfd) < 0)
            r = wc_err_errno(&e, -errno, "store: syncing %s", f->tmpdir);
        for (size_t i = 0; !failed && r == 0 && i < n; i++)
            r = place(f, batch[i], &e);
        free(batch);
        pthread_mutex_lock(&f->lock);
        if (r == 0)
            f->placed += failed ? 0 : n;
        else if (!f->err) {
            f->err = r;
            f->perr = e;
        }
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

static int enqueue_locked(struct filler *f, size_t file)
{
    if (f->qn == f->qcap) {
        size_t cap = f->qcap ? f->qcap * 2 : 64;
        size_t *q = realloc(f->queue, cap * sizeof(*q));
        if (!q)
            return -ENOMEM;
        f->queue = q;
        f->qcap = cap;
    }
    f->queue[f->qn++] = file;
    pthread_cond_signal(&f->cond);
    return 0;
}

/* ---- the sink ------------------------------------------------------------ */

static int open_tmp_locked(struct filler *f, size_t file, struct wc_error *e)
{
    struct fill_file *ff = &f->files[file];
    if (ff->fd >= 0)
        return ff->fd;
    const struct listing_entry *ent = &f->l->v[file];
    char tmp[PATH_MAX];
    tmp_path(f, file, tmp, sizeof(tmp));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return wc_err_errno(e, -errno, "store: creating %s", tmp);
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size != ent->size && ent->size > 0) {
        int r = -EOPNOTSUPP;
        if (f->reserve)
            r = fallocate(fd, 0, 0, (off_t)ent->size) < 0 ? -errno : 0;
        if (r == -EOPNOTSUPP)
            r = ftruncate(fd, (off_t)ent->size) < 0 ? -errno : 0;
        if (r < 0) {
            close(fd);
            if (r == -ENOSPC)
                return wc_err(e, r, "the node store %s is full: %s needs %" PRIu64 " bytes", f->s->root, ent->key,
                              ent->size);
            return wc_err_errno(e, r, "store: reserving space for %s", ent->key);
        }
    }
    if (fchmod(fd, 0644) < 0) {
        int r = -errno;
        close(fd);
        return wc_err_errno(e, r, "store: chmod %s", tmp);
    }
    return ff->fd = fd;
}

static int sink_fd(struct fill_sink *k, size_t part, struct wc_error *e)
{
    struct filler *f = (struct filler *)k;
    pthread_mutex_lock(&f->lock);
    int r = open_tmp_locked(f, f->parts[part].file, e);
    pthread_mutex_unlock(&f->lock);
    return r;
}

static void sink_expect(struct fill_sink *k, size_t file, const struct cksum *c)
{
    struct filler *f = (struct filler *)k;
    pthread_mutex_lock(&f->lock);
    f->files[file].want = *c;
    f->files[file].known = 1;
    pthread_mutex_unlock(&f->lock);
}

static void sink_part_crc(struct fill_sink *k, size_t part, uint64_t crc)
{
    struct filler *f = (struct filler *)k;
    const struct fill_part *pt = &f->parts[part];
    uint64_t g = f->first[pt->file] + pt->off / ps_of(f, pt->file);
    pthread_mutex_lock(&f->lock);
    f->pcrc[g] = crc;
    f->pcrc_have[g] = 1;
    pthread_mutex_unlock(&f->lock);
}

/* Feeds file's checksum the parts that are in, in order, from where it
 * stopped; one thread at a time (the others find it busy and go on: it
 * sees their parts before it stops). Called with f->lock held, which it
 * drops while it reads. When the file is whole and fed, it goes to the
 * placer, checked already. A read that fails leaves the check to the
 * placer (read back whole). */
static int feed_locked(struct filler *f, size_t file, struct wc_error *e)
{
    struct fill_file *ff = &f->files[file];
    if (ff->hashing)
        return 0;
    ff->hashing = 1;
    const struct listing_entry *ent = &f->l->v[file];
    uint64_t n = f->first[file + 1] - f->first[file], ps = ps_of(f, file);
    int fd = -1, failed = 0;
    while (ff->hashed < n && f->pdone[f->first[file] + ff->hashed]) {
        uint64_t off = ff->hashed * ps, len = ent->size - off < ps ? ent->size - off : ps;
        pthread_mutex_unlock(&f->lock);
        char tmp[PATH_MAX];
        struct wc_error ignored;
        if (fd < 0) {
            tmp_path(f, file, tmp, sizeof(tmp));
            fd = open(tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        }
        failed = fd < 0 || cksum_stream_fd(ff->hs, fd, off, len, &ignored) < 0;
        pthread_mutex_lock(&f->lock);
        if (failed)
            break;
        ff->hashed++;
    }
    if (fd >= 0)
        close(fd);
    ff->hashing = 0;
    if (failed) {
        cksum_stream_free(ff->hs);
        ff->hs = NULL;
    } else if (ff->hashed == n) {
        cksum_stream_final(ff->hs, ff->got);
        ff->hs = NULL;
        ff->streamed = 1;
    }
    if (!ff->hs && ff->left == 0 && enqueue_locked(f, file) < 0)
        return wc_err(e, -ENOMEM, "out of memory");
    return 0;
}

static int sink_done(struct fill_sink *k, size_t part, struct wc_error *e)
{
    struct filler *f = (struct filler *)k;
    const struct fill_part *pt = &f->parts[part];
    uint64_t nth = pt->off / ps_of(f, pt->file), g = f->first[pt->file] + nth;
    char rec[64];
    pthread_mutex_lock(&f->lock);
    int n = f->pcrc_have[g] ? snprintf(rec, sizeof(rec), "%zu %" PRIu64 " %016" PRIx64 "\n", pt->file, nth, f->pcrc[g])
                            : snprintf(rec, sizeof(rec), "%zu %" PRIu64 "\n", pt->file, nth);
    int r = 0;
    if (write(f->journal, rec, (size_t)n) != n)
        r = wc_err_errno(e, errno ? -errno : -EIO, "store: writing the part journal");
    struct fill_file *ff = &f->files[pt->file];
    if (r == 0)
        f->pdone[g] = 1;
    if (r == 0 && --ff->left == 0) {
        close(ff->fd);
        ff->fd = -1;
        if (!ff->hs && enqueue_locked(f, pt->file) < 0)
            r = wc_err(e, -ENOMEM, "out of memory");
    }
    if (r == 0 && ff->hs)
        r = feed_locked(f, pt->file, e);
    pthread_mutex_unlock(&f->lock);
    return r;
}

/* ---- the plan and the part journal ---------------------------------------- */

static void boot_id(char out[64])
{
    _cleanup_close_ int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, out, 63) : -1;
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
}

/* Reads the journal into have[] (one byte per planned part, by file and
 * part number); returns the number of records used, or -1 when the journal
 * is not this boot's or this part size's (the caller then starts afresh). */
static long load_journal(struct filler *f, const uint64_t *first, uint8_t *have, const char *header)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/parts", f->tmpdir);
    FILE *in = fopen(path, "re");
    if (!in)
        return -1;
    char line[128];
    long used = 0;
    int ok = fgets(line, sizeof(line), in) && streq(line, header);
    uint8_t *tmp_ok = ok ? calloc(f->l->n, 1) : NULL; /* 0 unknown, 1 there, 2 not */
    long good_end = ok ? ftell(in) : 0;
    while (ok && tmp_ok && fgets(line, sizeof(line), in)) {
        size_t file;
        uint64_t part, crc = 0;
        int end = 0, has_crc = 0;
        if (line[strlen(line) - 1] != '\n')
            break; /* torn by a kill: cut below */
        good_end = ftell(in);
        if (sscanf(line, "%zu %" SCNu64 "%n", &file, &part, &end) != 2)
            continue;
        if (line[end] == ' ') { /* the part's CRC64NVME */
            int more = 0;
            if (sscanf(line + end, " %16" SCNx64 "%n", &crc, &more) != 1)
                continue;
            end += more;
            has_crc = 1;
        }
        if (line[end] != '\n' || file >= f->l->n || part >= parts_of(f->l->v[file].size, ps_of(f, file)))
            continue;
        if (!tmp_ok[file]) {
            char tmp[PATH_MAX];
            struct stat st;
            tmp_path(f, file, tmp, sizeof(tmp));
            tmp_ok[file] = lstat(tmp, &st) == 0 && S_ISREG(st.st_mode) &&
                           (uint64_t)st.st_size == f->l->v[file].size ? 1 : 2;
        }
        if (tmp_ok[file] == 1 && !have[first[file] + part]) {
            have[first[file] + part] = 1;
            f->pcrc[first[file] + part] = crc;
            f->pcrc_have[first[file] + part] = (uint8_t)has_crc;
            used++;
        }
    }
    fclose(in);
    free(tmp_ok);
    if (!ok)
        return -1;
    if (truncate(path, good_end) < 0) /* so new records start on a line of their own */
        return -1;
    return used;
}

/* A file of many parts whose checksum the source knows without I/O and
 * that does not combine from its parts' CRCs: checked as it lands. */
static int src_checksum_known(struct filler *f, size_t file, struct wc_error *e)
{
    struct fill_file *ff = &f->files[file];
    if (!f->src->ops->checksum_known || !f->src->ops->checksum)
        return 0;
    int r = f->src->ops->checksum(f->src, &f->l->v[file], &ff->want, e);
    if (r < 0)
        return wc_err_prefix(e, "checksum of %s: ", f->l->v[file].key);
    ff->known = 1;
    if (ff->want.alg == CKSUM_NONE || ff->want.alg == CKSUM_CRC64NVME || ff->want.composite)
        return 0;
    return cksum_stream_new(ff->want.alg, &ff->hs) < 0 ? wc_err(e, -ENOMEM, "out of memory") : 0;
}

static int plan(struct filler *f, struct wc_error *e)
{
    const struct listing *l = f->l;
    struct fill_progress *p = f->p;
    uint64_t *first = f->first = calloc(l->n + 1, sizeof(*first));
    if (!first)
        return -ENOMEM;
    for (size_t i = 0; i < l->n; i++)
        first[i + 1] = first[i] + parts_of(l->v[i].size, ps_of(f, i));
    uint64_t total = first[l->n];
    _cleanup_free_ uint8_t *have = calloc(total ? total : 1, 1);
    f->parts = calloc(total ? total : 1, sizeof(*f->parts));
    f->files = calloc(l->n ? l->n : 1, sizeof(*f->files));
    f->pcrc = calloc(total ? total : 1, sizeof(*f->pcrc));
    f->pcrc_have = calloc(total ? total : 1, 1);
    f->pdone = calloc(total ? total : 1, 1);
    if (!have || !f->parts || !f->files || !f->pcrc || !f->pcrc_have || !f->pdone)
        return -ENOMEM;

    char header[160], bid[64], jpath[PATH_MAX];
    boot_id(bid);
    snprintf(header, sizeof(header), JOURNAL_MAGIC " %s %" PRIu64 "\n", bid, f->part_size); /* 0: per file */
    snprintf(jpath, sizeof(jpath), "%s/parts", f->tmpdir);
    if (load_journal(f, first, have, header) < 0) {
        /* nothing of tmp/ can be trusted: start its files afresh */
        memset(have, 0, total ? total : 1);
        memset(f->pcrc_have, 0, total ? total : 1);
        int r = fs_rm_rf(f->tmpdir);
        if (r < 0 || (r = fs_mkdir_p(f->tmpdir, 0700)) < 0 ||
            (r = fs_write_atomic(jpath, header, strlen(header), 0600)) < 0)
            return wc_err_errno(e, r, "store: starting the part journal in %s", f->tmpdir);
    }
    if ((f->journal = open(jpath, O_WRONLY | O_APPEND | O_CLOEXEC)) < 0)
        return wc_err_errno(e, -errno, "store: opening %s", jpath);
    struct statfs sfs;
    f->reserve = fstatfs(f->journal, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC;

    for (size_t i = 0; i < l->n; i++) {
        const struct listing_entry *ent = &l->v[i];
        f->files[i].fd = -1;
        char dst[PATH_MAX];
        struct stat st;
        if (snprintf(dst, sizeof(dst), "%s/%s", f->partial, ent->key) < (int)sizeof(dst) && lstat(dst, &st) == 0 &&
            S_ISREG(st.st_mode) && (uint64_t)st.st_size == ent->size) {
            /* renamed in only after a sync: a file here is whole */
            atomic_fetch_add(&p->bytes_done, ent->size);
            atomic_fetch_add(&p->bytes_resumed, ent->size);
            atomic_fetch_add(&p->files_done, 1);
            f->placed++;
            continue;
        }
        uint64_t ps = ps_of(f, i);
        for (uint64_t k = 0; k < first[i + 1] - first[i]; k++) {
            uint64_t off = k * ps;
            uint64_t len = ent->size - off < ps ? ent->size - off : ps;
            if (have[first[i] + k]) {
                atomic_fetch_add(&p->bytes_done, len);
                atomic_fetch_add(&p->bytes_resumed, len);
                f->pdone[first[i] + k] = 1;
                continue;
            }
            f->parts[f->nparts++] = (struct fill_part){i, off, len};
            f->files[i].left++;
        }
        if (first[i + 1] - first[i] > 1 && f->files[i].left > 0 && src_checksum_known(f, i, e) < 0)
            return e->code;
        if (f->files[i].left == 0) {
            /* empty, or every part written before a kill: only the rename is left */
            int fd = open_tmp_locked(f, i, e);
            if (fd < 0)
                return fd;
            close(fd);
            f->files[i].fd = -1;
            if (enqueue_locked(f, i) < 0)
                return -ENOMEM;
        }
    }
    f->sink = (struct fill_sink){.parts = f->parts, .n = f->nparts, .fd = sink_fd, .done = sink_done,
                                 .expect = sink_expect, .part_crc = sink_part_crc};
    return 0;
}

/* ---- the fill ------------------------------------------------------------- */

static int fsync_dir_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_D ? fs_fsync_path(path) : 0;
}

static void filler_close(struct filler *f)
{
    if (f->placer_running) {
        pthread_mutex_lock(&f->lock);
        f->closing = 1;
        pthread_cond_signal(&f->cond);
        pthread_mutex_unlock(&f->lock);
        pthread_join(f->placer, NULL);
        f->placer_running = 0;
    }
    for (size_t i = 0; f->files && i < f->l->n; i++) {
        if (f->files[i].fd >= 0)
            close(f->files[i].fd);
        cksum_stream_free(f->files[i].hs);
    }
    if (f->journal >= 0)
        close(f->journal);
    free(f->files);
    free(f->parts);
    free(f->queue);
    free(f->first);
    free(f->pcrc);
    free(f->pcrc_have);
    free(f->pdone);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->cond);
}

int fill_transfer(struct store *s, struct source *src, const struct listing *l, const char *partial,
                  const char *tmpdir, uint64_t part_size, const atomic_int *cancel, struct fill_progress *p,
                  struct wc_error *e)
{
    struct filler f = {.s = s, .src = src, .l = l, .p = p, .part_size = part_size, .journal = -1};
    snprintf(f.partial, sizeof(f.partial), "%s", partial);
    snprintf(f.tmpdir, sizeof(f.tmpdir), "%s", tmpdir);
    pthread_mutex_init(&f.lock, NULL);
    pthread_cond_init(&f.cond, NULL);
    int r = plan(&f, e);
    if (r == -ENOMEM)
        r = wc_err(e, r, "out of memory planning the fill of %zu files", l->n);
    if (r == 0) {
        if (pthread_create(&f.placer, NULL, placer_main, &f) != 0)
            r = wc_err(e, -EAGAIN, "cannot start the placer thread");
        else
            f.placer_running = 1;
    }
    if (r == 0)
        r = src->ops->transfer(src, l, &f.sink, cancel, p, e);
    filler_close(&f); /* places every file that is whole, even after a failure: less to fetch next time */
    if (r == 0 && f.err)
        r = (*e = f.perr, f.err);
    if (r == 0 && f.placed != l->n)
        r = wc_err(e, -EIO, "store: %zu of %zu files were placed", f.placed, l->n);
    if (r == 0 && nftw(partial, fsync_dir_cb, 32, FTW_PHYS | FTW_MOUNT) != 0)
        r = wc_err(e, -EIO, "store: fsync of the copy's directories failed");
    return r;
}
