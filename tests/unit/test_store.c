/*
 * The store's fill, against a fake source (the vtable seam): a copy appears
 * only when complete, a fill that dies part-way leaves only whole files in
 * the partial directory and resumes without fetching them again, nor the
 * parts of other files it had written.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "cache/fill.h"
#include "cache/store.h"

struct fake {
    struct source base;
    int fail_at;        /* the transfer fails at this file (-1: never)... */
    uint64_t fail_off;  /* ...at its part starting here or later */
    int fetched;        /* parts written */
    int64_t corrupt_off; /* the part starting here gets one byte wrong (0: none) */
};

static int fake_list(struct source *s, source_object_fn fn, void *ctx, const atomic_int *cancel, struct wc_error *e)
{
    return -ENOSYS;
}

static int file_index(const struct listing_entry *ent)
{
    return atoi(strrchr(ent->key, '/') ? strrchr(ent->key, '/') + 1 : ent->key);
}

static int fake_transfer(struct source *s, const struct listing *l, struct fill_sink *k, const atomic_int *cancel,
                         struct fill_progress *p, struct wc_error *e)
{
    struct fake *f = (struct fake *)s;
    for (size_t i = 0; i < k->n; i++) {
        const struct fill_part *pt = &k->parts[i];
        int idx = file_index(&l->v[pt->file]);
        if (cancel && atomic_load(cancel))
            return wc_err(e, -ECANCELED, "cancelled");
        if (idx == f->fail_at && pt->off >= f->fail_off)
            return wc_err(e, -ECONNRESET, "injected failure at %d+%llu", idx, (unsigned long long)pt->off);
        int fd = k->fd(k, i, e);
        assert_true(fd >= 0);
        char buf[16384];
        assert_true(pt->len <= sizeof(buf));
        memset(buf, 'a' + idx % 26, pt->len);
        if (f->corrupt_off && (int64_t)pt->off == f->corrupt_off)
            buf[pt->len / 2] ^= 1;
        assert_int_equal(pwrite(fd, buf, pt->len, (off_t)pt->off), (ssize_t)pt->len);
        atomic_fetch_add(&p->bytes_done, pt->len);
        f->fetched++;
        assert_int_equal(k->done(k, i, e), 0);
    }
    return 0;
}

static void fake_free(struct source *s) { (void)s; }

static const struct source_ops fake_ops = {
    .scheme = "fake", .list = fake_list, .transfer = fake_transfer, .free = fake_free};

/* A source whose listed objects are staged and then laid out as another
 * tree (as oci:// applies archives): each stage/<i> becomes tree/<i>.out. */
struct layer_fake {
    struct fake f;
    int lay_outs;       /* calls */
    int fail_lay_out;   /* the first call fails after writing one file */
};

static int layer_fake_lay_out(struct source *s, const struct listing *l, int dirfd, struct source_layout *o,
                              struct wc_error *e)
{
    struct layer_fake *lf = (struct layer_fake *)s;
    lf->lay_outs++;
    mkdirat(dirfd, "tree", 0755);
    for (size_t i = 0; i < l->n; i++) {
        assert_true(faccessat(dirfd, l->v[i].key, F_OK, AT_SYMLINK_NOFOLLOW) == 0); /* staged, whole */
        char out[64];
        snprintf(out, sizeof(out), "tree/%zu.out", i);
        assert_int_equal(o->room(o->ctx, 3, e), 0);
        int fd = openat(dirfd, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "out", 3), 3);
        close(fd);
        atomic_fetch_add(&o->charged, 3);
        if (lf->fail_lay_out) {
            lf->fail_lay_out = 0;
            return wc_err(e, -EIO, "injected failure while laying out");
        }
    }
    return 1;
}

static const struct source_ops layer_fake_ops = {
    .scheme = "fake", .list = fake_list, .transfer = fake_transfer, .lay_out = layer_fake_lay_out,
    .staging = "stage", .free = fake_free};

/* A source that knows each file's SHA-256 without I/O (as oci:// does):
 * the store checks its files of many parts as they land. */
static int sha_fake_checksum(struct source *s, const struct listing_entry *ent, struct cksum *ret, struct wc_error *e)
{
    char *b = malloc(ent->size ? ent->size : 1);
    assert_non_null(b);
    memset(b, 'a' + file_index(ent) % 26, ent->size);
    struct cksum c = {.alg = CKSUM_SHA256};
    cksum_buf(b, ent->size, CKSUM_SHA256, c.value);
    free(b);
    *ret = c;
    return 0;
}

static const struct source_ops sha_fake_ops = {
    .scheme = "fake", .list = fake_list, .transfer = fake_transfer, .checksum = sha_fake_checksum,
    .checksum_known = 1, .free = fake_free};

static char root[PATH_MAX];

static int setup(void **state)
{
    snprintf(root, sizeof(root), "/tmp/wc-store-test.XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    fs_rm_rf(root);
    return 0;
}

static void make_listing(struct listing *l, int n)
{
    struct wc_error e;
    for (int i = 0; i < n; i++) {
        char k[64];
        snprintf(k, sizeof(k), "shard/%d", i);
        assert_int_equal(listing_add(l, k, strlen(k), 10000 + (uint64_t)i, "etag"), 0);
    }
    assert_int_equal(listing_finalize(l, &e), 0);
}

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void fill_then_hit(void **state)
{
    struct store *s;
    struct wc_error e;
    struct listing l = {0};
    struct fake f = {.base = {.ops = &fake_ops, .url = "fake://x/"}, .fail_at = -1};
    struct fill_progress p = {0};
    assert_int_equal(store_open(root, &s, &e), 0);
    make_listing(&l, 5);
    assert_int_equal(store_fill(s, &f.base, &l, "00000000000000000000000000000001", NULL, &p, &e), 0);
    assert_int_equal(f.fetched, 5);
    assert_int_equal(p.files_done, 5);
    assert_int_equal(p.bytes_done, l.bytes);
    assert_true(store_content_ready(s, "00000000000000000000000000000001"));
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof(path), "%s/content/00000000000000000000000000000001/shard/3", root);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 10003);
    assert_int_equal(st.st_mode & 0777, 0644);
    /* the second fill of the same content is a cache hit: no fetch at all */
    assert_int_equal(store_fill(s, &f.base, &l, "00000000000000000000000000000001", NULL, &p, &e), 0);
    assert_int_equal(f.fetched, 5);
    json_t *m = store_meta(s, "00000000000000000000000000000001");
    assert_int_equal(json_integer_value(json_object_get(m, "files")), 5);
    json_decref(m);
    listing_free(&l);
    store_free(s);
}

static void failed_fill_is_invisible_and_resumes(void **state)
{
    struct store *s;
    struct wc_error e;
    struct listing l = {0};
    struct fake f = {.base = {.ops = &fake_ops, .url = "fake://x/"}, .fail_at = 3};
    struct fill_progress p = {0};
    const char *cid = "00000000000000000000000000000002";
    assert_int_equal(store_open(root, &s, &e), 0);
    make_listing(&l, 6);
    assert_int_equal(store_fill(s, &f.base, &l, cid, NULL, &p, &e), -ECONNRESET);
    assert_false(store_content_ready(s, cid));
    char partial[PATH_MAX];
    snprintf(partial, sizeof(partial), "%s/content/%s.partial/shard", root, cid);
    assert_int_equal(count_dir(partial), 3); /* 0,1,2 whole; 3 never appeared */
    store_free(s);

    /* a restart: store_open clears tmp/, the fill resumes where it stopped */
    assert_int_equal(store_open(root, &s, &e), 0);
    f.fail_at = -1;
    f.fetched = 0;
    struct fill_progress p2 = {0};
    assert_int_equal(store_fill(s, &f.base, &l, cid, NULL, &p2, &e), 0);
    assert_int_equal(f.fetched, 3);
    assert_true(store_content_ready(s, cid));
    assert_int_equal(p2.bytes_done, l.bytes);
    listing_free(&l);
    store_free(s);
}

/* Small parts: a fill killed inside a file resumes from its journaled parts,
 * and a record torn by the kill is not believed. */
static void resume_skips_written_parts(void **state)
{
    struct store *s;
    struct wc_error e;
    struct listing l = {0};
    struct fake f = {.base = {.ops = &fake_ops, .url = "fake://x/"}, .fail_at = 2, .fail_off = 8192};
    struct fill_progress p = {0};
    const char *cid = "00000000000000000000000000000003";
    assert_int_equal(store_open(root, &s, &e), 0);
    store_set_part_size(s, 4096);
    make_listing(&l, 4); /* 10000..10003 bytes: 3 parts each */
    assert_int_equal(store_fill(s, &f.base, &l, cid, NULL, &p, &e), -ECONNRESET);
    assert_int_equal(f.fetched, 3 + 3 + 2);
    store_free(s);

    /* a kill in the middle of writing a record: "3 0" without its newline */
    char jpath[PATH_MAX];
    snprintf(jpath, sizeof(jpath), "%s/tmp/%s/parts", root, cid);
    FILE *j = fopen(jpath, "a");
    assert_non_null(j);
    fputs("3 0", j);
    fclose(j);

    assert_int_equal(store_open(root, &s, &e), 0);
    store_set_part_size(s, 4096);
    f.fail_at = -1;
    f.fetched = 0;
    struct fill_progress p2 = {0};
    assert_int_equal(store_fill(s, &f.base, &l, cid, NULL, &p2, &e), 0);
    assert_int_equal(f.fetched, 1 + 3); /* the last part of file 2, all of file 3 */
    assert_int_equal(p2.bytes_resumed, 10000 + 10001 + 2 * 4096);
    assert_int_equal(p2.bytes_done, l.bytes);
    char path[PATH_MAX], buf[10002];
    snprintf(path, sizeof(path), "%s/content/%s/shard/2", root, cid);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, buf, sizeof(buf)), 10002);
    close(fd);
    for (size_t i = 0; i < sizeof(buf); i++)
        if (buf[i] != 'c')
            fail_msg("byte %zu of the resumed file is %d", i, buf[i]);
    snprintf(path, sizeof(path), "%s/tmp/%s", root, cid);
    assert_int_equal(access(path, F_OK), -1); /* the written parts go with the fill */
    listing_free(&l);
    store_free(s);
}

static void cancel_stops_fill(void **state)
{
    struct store *s;
    struct wc_error e;
    struct listing l = {0};
    struct fake f = {.base = {.ops = &fake_ops, .url = "fake://x/"}, .fail_at = -1};
    struct fill_progress p = {0};
    atomic_int cancel = 1;
    assert_int_equal(store_open(root, &s, &e), 0);
    make_listing(&l, 3);
    assert_int_equal(store_fill(s, &f.base, &l, "00000000000000000000000000000004", &cancel, &p, &e), -ECANCELED);
    assert_int_equal(f.fetched, 0);
    listing_free(&l);
    store_free(s);
}

/* A copy in a subdirectory, filled through the fake source. */
static void fill_one(struct store *s, const char *cid)
{
    struct wc_error e;
    struct listing l = {0};
    struct fake f = {.base = {.ops = &fake_ops, .url = "fake://x/"}, .fail_at = -1};
    struct fill_progress p = {0};
    make_listing(&l, 3);
    assert_int_equal(store_fill(s, &f.base, &l, cid, NULL, &p, &e), 0);
    listing_free(&l);
}

/* Issue #13 finding 2: a verification that cannot read the copy (here: no
 * file descriptor left) is no verdict on it, so nothing may set it aside. */
static void verify_out_of_fds_is_no_damage(void **state)
{
    struct store *s;
    struct wc_error e;
    const char *cid = "00000000000000000000000000000005";
    assert_int_equal(store_open(root, &s, &e), 0);
    fill_one(s, cid);
    assert_int_equal(store_verify(s, cid, &e), 0);
    struct rlimit old, tight;
    getrlimit(RLIMIT_NOFILE, &old);
    int probe = open("/dev/null", O_RDONLY); /* the next free fd: only the copy's root can still be opened */
    close(probe);
    tight = (struct rlimit){.rlim_cur = (rlim_t)probe + 1, .rlim_max = old.rlim_max};
    setrlimit(RLIMIT_NOFILE, &tight);
    wc_error_clear(&e);
    int r = store_verify(s, cid, &e);
    setrlimit(RLIMIT_NOFILE, &old);
    assert_int_equal(r, -EMFILE);
    assert_non_null(strstr(e.msg, "Too many open files"));
    assert_true(store_content_ready(s, cid));
    store_free(s);
}

static unsigned users;
static unsigned count_users(void *ctx, const char *cid) { return users; }

/* Issue #13 finding 2: a damaged copy a mount may show is never set aside. */
static void damaged_copy_in_use_stays(void **state)
{
    struct store *s;
    struct wc_error e;
    const char *cid = "00000000000000000000000000000006";
    assert_int_equal(store_open(root, &s, &e), 0);
    store_set_users(s, &(struct store_users){count_users, NULL});
    fill_one(s, cid);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/content/%s/shard/1", root, cid);
    assert_int_equal(truncate(path, 1), 0);
    assert_int_equal(store_verify(s, cid, &e), -EBADMSG);
    users = 1;
    assert_int_equal(store_set_aside(s, cid), -EBUSY);
    assert_true(store_content_ready(s, cid));
    store_pin(s, cid); /* a call working with it */
    users = 0;
    assert_int_equal(store_set_aside(s, cid), -EBUSY);
    store_unpin(s, cid);
    assert_int_equal(store_set_aside(s, cid), 0);
    assert_false(store_content_ready(s, cid));
    store_free(s);
}

/* Issue #13 finding 6: a lease keeps a copy from eviction; reservations of
 * running fills count against the room a new fill may have. */
static void leases_and_reservations(void **state)
{
    struct store *s;
    struct wc_error e;
    const char *cid = "00000000000000000000000000000007";
    assert_int_equal(store_open(root, &s, &e), 0);
    store_set_users(s, &(struct store_users){count_users, NULL});
    users = 0;
    fill_one(s, cid);
    assert_true(store_evictable_bytes(s) > 0);
    store_lease(s, cid, 60);
    assert_int_equal(store_evictable_bytes(s), 0);
    store_unlease(s, cid);
    assert_true(store_evictable_bytes(s) > 0);

    struct statvfs v;
    assert_int_equal(statvfs(root, &v), 0);
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    store_set_watermarks(s, 100, 100);
    _Atomic uint64_t done = 0, resumed = 0;
    struct store_reservation a = {.done = &done, .resumed = &resumed}, b = {.done = &done};
    assert_int_equal(store_make_room(s, avail / 2 + avail / 4, "a", &a, &e), 0);
    assert_int_equal(store_make_room(s, avail / 2, "b", &b, &e), -ENOSPC);
    assert_non_null(strstr(e.msg, "reserved by fills running now"));
    /* a resumed: files found whole on disk count as done, but take no new room */
    atomic_store(&done, avail / 2);
    atomic_store(&resumed, avail / 2);
    assert_int_equal(store_make_room(s, avail / 2, "b", &b, &e), -ENOSPC);
    atomic_store(&done, 0);
    atomic_store(&resumed, 0);
    atomic_store(&done, avail / 2); /* a wrote most of what it claimed: it shows in statvfs, not twice */
    store_release_room(s, &a);
    assert_int_equal(store_make_room(s, avail / 2, "b", &b, &e), 0);
    store_release_room(s, &b);
    store_free(s);
}

/* A fill no eviction could make room for (a registry may claim any size)
 * takes no other volume's copy with it. */
static void a_fill_that_cannot_fit_evicts_nothing(void **state)
{
    struct store *s;
    struct wc_error e;
    const char *cid = "00000000000000000000000000000008";
    assert_int_equal(store_open(root, &s, &e), 0);
    store_set_users(s, &(struct store_users){count_users, NULL});
    users = 0;
    fill_one(s, cid);
    assert_true(store_evictable_bytes(s) > 0);
    _Atomic uint64_t done = 0;
    struct store_reservation r = {.done = &done};
    assert_int_equal(store_make_room(s, 1ull << 50, "huge", &r, &e), -ENOSPC);
    assert_true(store_content_ready(s, cid));
    store_free(s);
}

static void staged_objects_are_laid_out_once_and_a_kill_resumes_either_side(void **state)
{
    const char *cid = "0000000000000000000000000000000a";
    struct store *s;
    struct wc_error e = {0};
    struct listing l = {0};
    for (int i = 0; i < 3; i++) {
        char k[32];
        snprintf(k, sizeof(k), "stage/%d", i);
        assert_int_equal(listing_add(&l, k, strlen(k), 5000, "etag"), 0);
    }
    assert_int_equal(listing_finalize(&l, &e), 0);
    struct layer_fake lf = {.f = {.base = {.ops = &layer_fake_ops, .url = "fake://x/"}, .fail_at = -1},
                            .fail_lay_out = 1};
    struct fill_progress p = {0};
    assert_int_equal(store_open(root, &s, &e), 0);
    /* killed while laying out: the staged objects stay, nothing is fetched again */
    assert_int_equal(store_fill(s, &lf.f.base, &l, cid, NULL, &p, &e), -EIO);
    assert_false(store_content_ready(s, cid));
    assert_int_equal(lf.f.fetched, 3);
    struct fill_progress p2 = {0};
    assert_int_equal(store_fill(s, &lf.f.base, &l, cid, NULL, &p2, &e), 0);
    assert_int_equal(lf.f.fetched, 3);
    assert_int_equal(lf.lay_outs, 2);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/content/%s/stage", root, cid);
    assert_int_equal(access(path, F_OK), -1); /* the staging directory goes once the tree is made */
    snprintf(path, sizeof(path), "%s/content/%s/tree/2.out", root, cid);
    assert_int_equal(access(path, F_OK), 0);
    json_t *m = store_meta(s, cid); /* the copy is the tree: what store_verify checks */
    assert_int_equal(json_integer_value(json_object_get(m, "files")), 3);
    assert_int_equal(json_integer_value(json_object_get(m, "bytes")), 9);
    assert_int_equal(json_integer_value(json_object_get(m, "objects")), 3);
    json_decref(m);
    assert_int_equal(store_verify(s, cid, &e), 0);

    /* killed after the tree was made and journaled, its staging gone: the
     * next fill neither fetches nor lays out again, and publishes the tree */
    const char *cid2 = "0000000000000000000000000000000b";
    struct layer_fake lf2 = {.f = {.base = {.ops = &layer_fake_ops, .url = "fake://x/"}, .fail_at = -1},
                             .fail_lay_out = 1};
    struct fill_progress p3 = {0};
    assert_int_equal(store_fill(s, &lf2.f.base, &l, cid2, NULL, &p3, &e), -EIO);
    char journal[PATH_MAX], partial[PATH_MAX];
    snprintf(journal, sizeof(journal), "%s/meta/%s.fill.json", root, cid2);
    snprintf(partial, sizeof(partial), "%s/content/%s.partial", root, cid2);
    json_t *j = json_load_file(journal, 0, NULL);
    assert_non_null(j);
    json_object_set_new(j, "laid_out", json_true());
    assert_int_equal(json_dump_file(j, journal, 0), 0);
    json_decref(j);
    snprintf(path, sizeof(path), "%s/stage", partial);
    assert_int_equal(fs_rm_rf(path), 0);
    assert_int_equal(store_fill(s, &lf2.f.base, &l, cid2, NULL, &p3, &e), 0);
    assert_int_equal(lf2.f.fetched, 3);
    assert_int_equal(lf2.lay_outs, 1);
    assert_true(store_content_ready(s, cid2));
    assert_int_equal(access(journal, F_OK), -1);
    m = store_meta(s, cid2); /* the tree as it was left: one file laid out before the kill */
    assert_int_equal(json_integer_value(json_object_get(m, "files")), 1);
    assert_int_equal(json_integer_value(json_object_get(m, "bytes")), 3);
    json_decref(m);
    assert_int_equal(store_verify(s, cid2, &e), 0);
    listing_free(&l);
    store_free(s);
}

static void sha256_files_are_checked_as_their_parts_land_and_after_a_resume(void **state)
{
    const char *cid = "0000000000000000000000000000000c";
    struct store *s;
    struct wc_error e = {0};
    struct listing l = {0};
    assert_int_equal(listing_add(&l, "shard/0", 7, 40000, "etag"), 0);
    assert_int_equal(listing_add(&l, "shard/1", 7, 3000, "etag"), 0); /* one part: read back as before */
    assert_int_equal(listing_finalize(&l, &e), 0);
    assert_int_equal(store_open(root, &s, &e), 0);
    store_set_part_size(s, 4096);
    /* killed after five of shard/0's ten parts: they count when it resumes */
    struct fake f = {.base = {.ops = &sha_fake_ops, .url = "fake://x/"}, .fail_at = 0, .fail_off = 20000};
    struct fill_progress p = {0};
    assert_int_equal(store_fill(s, &f.base, &l, cid, NULL, &p, &e), -ECONNRESET);
    f.fail_at = -1;
    struct fill_progress p2 = {0};
    assert_int_equal(store_fill(s, &f.base, &l, cid, NULL, &p2, &e), 0);
    assert_int_equal(p2.files_checksummed, 2);
    assert_true(store_content_ready(s, cid));
    /* a byte wrong in a part in the middle: refused, naming the algorithm */
    const char *cid2 = "0000000000000000000000000000000d";
    struct fake g = {.base = {.ops = &sha_fake_ops, .url = "fake://x/"}, .fail_at = -1, .corrupt_off = 28672};
    struct fill_progress p3 = {0};
    assert_int_equal(store_fill(s, &g.base, &l, cid2, NULL, &p3, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "shard/0: SHA256 of the bytes received is"));
    assert_false(store_content_ready(s, cid2));
    listing_free(&l);
    store_free(s);
}

/* S3 counts requests, not bytes: large files take larger parts by default */
static void large_files_take_larger_parts(void **state)
{
    assert_int_equal(fill_part_size(0, 100 << 20), FILL_PART_SIZE);
    assert_int_equal(fill_part_size(0, 512ull << 20), FILL_PART_SIZE);  /* 64 parts of 8 MiB */
    assert_int_equal(fill_part_size(0, (512ull << 20) + 1), 16ull << 20);
    assert_int_equal(fill_part_size(0, 4ull << 30), 64ull << 20);      /* 64 parts */
    assert_int_equal(fill_part_size(0, 100ull << 30), FILL_PART_MAX);   /* never more */
    assert_int_equal(fill_part_size(1 << 20, 100ull << 30), 1 << 20);   /* a size given is kept */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fill_then_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_fill_is_invisible_and_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(resume_skips_written_parts, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_stops_fill, setup, teardown),
        cmocka_unit_test_setup_teardown(staged_objects_are_laid_out_once_and_a_kill_resumes_either_side, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sha256_files_are_checked_as_their_parts_land_and_after_a_resume, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(verify_out_of_fds_is_no_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_copy_in_use_stays, setup, teardown),
        cmocka_unit_test_setup_teardown(leases_and_reservations, setup, teardown),
        cmocka_unit_test_setup_teardown(a_fill_that_cannot_fit_evicts_nothing, setup, teardown),
        cmocka_unit_test(large_files_take_larger_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
