/* See disks.h. Every step checks before it acts, so a second run is a no-op. */
#include "storage/disks.h"
#include "storage/run.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"

#include <blkid/blkid.h>
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define RAID_CHUNK_KIB 512

int store_mode_parse(const char *s, enum store_mode *ret)
{
    if (streq(s, "directory"))
        *ret = STORE_DIRECTORY;
    else if (streq(s, "device"))
        *ret = STORE_DEVICE;
    else if (streq(s, "raid0"))
        *ret = STORE_RAID0;
    else
        return -EINVAL;
    return 0;
}

/* What a device holds: 0 nothing, 1 something (type in ret_type, label in ret_label). */
static int probe(const char *dev, char *ret_type, size_t nt, char *ret_label, size_t nl, struct wc_error *e)
{
    ret_type[0] = ret_label[0] = '\0';
    blkid_probe pr = blkid_new_probe_from_filename(dev);
    if (!pr)
        return wc_err_errno(e, errno ? -errno : -EIO, "cannot open %s to see what it holds", dev);
    blkid_probe_enable_superblocks(pr, 1);
    blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL);
    blkid_probe_enable_partitions(pr, 1);
    int r = blkid_do_safeprobe(pr);
    const char *v;
    if (r == 0) {
        if (blkid_probe_lookup_value(pr, "TYPE", &v, NULL) == 0 ||
            blkid_probe_lookup_value(pr, "PTTYPE", &v, NULL) == 0)
            snprintf(ret_type, nt, "%s", v);
        if (blkid_probe_lookup_value(pr, "LABEL", &v, NULL) == 0)
            snprintf(ret_label, nl, "%s", v);
    }
    blkid_free_probe(pr);
    if (r == -2)
        snprintf(ret_type, nt, "ambiguous signatures");
    return r == 1 ? 0 : 1;
}

/* Formats dev as xfs unless it already holds our file system; refuses a disk
 * holding anything else unless told to. */
static int ensure_xfs(const struct disk_config *cfg, const char *dev, unsigned stripes, struct wc_error *e)
{
    char type[64], label[64];
    int r = probe(dev, type, sizeof(type), label, sizeof(label), e);
    if (r < 0)
        return r;
    if (r == 1 && streq(type, "xfs") && streq(label, DISK_LABEL))
        return 0; /* ours, from an earlier start: keep the data */
    if (r == 1 && !cfg->force_format)
        return wc_err(e, -EEXIST, "%s holds %s%s%s; warmcache never formats a disk that holds data. "
                      "Wipe it, pick another store mode, or set forceFormat if its contents may go",
                      dev, type, label[0] ? " labelled " : "", label);
    char su[32], sw[32];
    snprintf(su, sizeof(su), "su=%dk,sw=%u", RAID_CHUNK_KIB, stripes ? stripes : 1);
    snprintf(sw, sizeof(sw), "%s", DISK_LABEL);
    const char *argv_striped[] = {cfg->mkfs, "-f", "-q", "-L", sw, "-d", su, dev, NULL};
    const char *argv_plain[] = {cfg->mkfs, "-f", "-q", "-L", sw, dev, NULL};
    return storage_run(stripes > 1 ? argv_striped : argv_plain, e);
}

static int mount_xfs(const struct mounter *m, const char *dev, const char *at, struct wc_error *e)
{
    int r = fs_mkdir_p(at, 0755);
    if (r < 0)
        return wc_err_errno(e, r, "creating the mount point %s", at);
    /* prjquota: the bound on each pod's writable layer (storage/bound.h); a
     * kernel without XFS quota refuses it, and the layers use loop images */
    r = m->ops->mount_fs(m, dev, "xfs", at, "noatime,prjquota", e);
    if (r == -EINVAL) {
        log_json(LOG_INFO, "this kernel has no XFS quotas: mounting the store without them",
                 json_pack("{s:s}", "device", dev));
        r = m->ops->mount_fs(m, dev, "xfs", at, "noatime", e);
    }
    return r;
}

/* An array the node already has, mounted at one of the adopt paths. */
static int try_adopt(const struct disk_config *cfg, const struct mounter *m, char **ret_root)
{
    if (!cfg->adopt || !*cfg->adopt)
        return 0;
    _cleanup_free_ char *list = strdup(cfg->adopt);
    for (char *save = NULL, *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
        if (m->ops->whole_fs_at(m, p) != 1)
            continue; /* an empty directory (or a hostPath bind of one): nothing to adopt */
        char root[PATH_MAX];
        snprintf(root, sizeof(root), "%s/warmcache", p);
        if (fs_mkdir_p(root, 0755) < 0)
            continue;
        log_json(LOG_INFO, "adopted the node's array", json_pack("{s:s, s:s}", "mount", p, "store", root));
        *ret_root = strdup(root);
        return *ret_root ? 1 : -ENOMEM;
    }
    return 0;
}

static int find_disks(const struct disk_config *cfg, const struct mounter *m, char ***ret, size_t *ret_n,
                      struct wc_error *e)
{
    glob_t g;
    int gr = glob(cfg->disk_glob, 0, NULL, &g);
    if (gr == GLOB_NOMATCH || (gr == 0 && g.gl_pathc == 0)) {
        globfree(&g);
        return wc_err(e, -ENODEV, "no instance-store disks match %s: this instance type has none, or the pattern "
                      "is wrong; use storeMode: directory (or device) instead", cfg->disk_glob);
    }
    if (gr != 0)
        return wc_err(e, -EIO, "cannot search for disks with %s", cfg->disk_glob);
    char **v = calloc(g.gl_pathc, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; v && i < g.gl_pathc; i++) {
        char real[PATH_MAX];
        if (!realpath(g.gl_pathv[i], real))
            continue;
        int dup = 0;
        for (size_t k = 0; k < n; k++)
            dup |= streq(v[k], real);
        if (!dup)
            v[n++] = strdup(real);
    }
    globfree(&g);
    if (!v)
        return -ENOMEM;
    qsort(v, n, sizeof(char *), (int (*)(const void *, const void *))strcmp);
    (void)m;
    *ret = v;
    *ret_n = n;
    return 0;
}

/* What a disk holds, for deciding what to do with it. */
enum holding { HOLDS_NOTHING, HOLDS_OUR_FS, HOLDS_OUR_MEMBER, HOLDS_OTHER };

/* A member of our md array carries its name: "<homehost>:<name>" or "<name>". */
static int names_our_array(const struct disk_config *cfg, const char *label)
{
    const char *name = strrchr(cfg->array, '/') ? strrchr(cfg->array, '/') + 1 : cfg->array;
    const char *colon = strrchr(label, ':');
    return streq(colon ? colon + 1 : label, name);
}

static int holding(const struct disk_config *cfg, const char *disk, char *type, size_t nt, struct wc_error *e)
{
    char label[64];
    int p = probe(disk, type, nt, label, sizeof(label), e);
    if (p <= 0)
        return p < 0 ? p : HOLDS_NOTHING;
    if (streq(type, "xfs") && streq(label, DISK_LABEL))
        return HOLDS_OUR_FS;
    if (streq(type, "linux_raid_member") && names_our_array(cfg, label))
        return HOLDS_OUR_MEMBER;
    return HOLDS_OTHER;
}

/* The md device the kernel assembled from disk, if any (udev names it as it
 * likes after a reboot: /dev/md127 as often as /dev/md/warmcache). */
static int holder_of(const char *disk, char *out, size_t n)
{
    const char *base = strrchr(disk, '/') ? strrchr(disk, '/') + 1 : disk;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "/sys/class/block/%s/holders", base);
    DIR *d = opendir(dir);
    struct dirent *de;
    int found = 0;
    while (d && !found && (de = readdir(d)))
        if (strncmp(de->d_name, "md", 2) == 0)
            found = snprintf(out, n, "/dev/%s", de->d_name) < (int)n;
    if (d)
        closedir(d);
    return found;
}

static int mdadm(const struct disk_config *cfg, const char *verb, char **disks, size_t n, struct wc_error *e)
{
    char count[16], chunk[16];
    snprintf(count, sizeof(count), "%zu", n);
    snprintf(chunk, sizeof(chunk), "%d", RAID_CHUNK_KIB);
    _cleanup_free_ const char **argv = calloc(n + 16, sizeof(char *));
    if (!argv)
        return -ENOMEM;
    size_t a = 0;
    argv[a++] = cfg->mdadm;
    argv[a++] = verb;
    argv[a++] = cfg->array;
    if (streq(verb, "--create")) {
        argv[a++] = "--level=0";
        argv[a++] = "--chunk";
        argv[a++] = chunk;
        argv[a++] = "--raid-devices";
        argv[a++] = count;
        argv[a++] = "--homehost=any";
    }
    argv[a++] = "--run";
    for (size_t i = 0; i < n; i++)
        argv[a++] = disks[i];
    argv[a] = NULL;
    return storage_run(argv, e);
}

/* The disks hold our store from before a reboot: one disk with our xfs, or
 * members of our array, assembled again. 1 with the device in dev, 0 when
 * they do not, < 0 when they hold something else or it fails. */
static int our_store_on(const struct disk_config *cfg, char **disks, size_t n, char *dev, size_t dn,
                        struct wc_error *e)
{
    size_t ours_fs = 0, members = 0, blank = 0;
    for (size_t i = 0; i < n; i++) {
        char type[64];
        int h = holding(cfg, disks[i], type, sizeof(type), e);
        if (h < 0)
            return h;
        ours_fs += h == HOLDS_OUR_FS;
        members += h == HOLDS_OUR_MEMBER;
        blank += h == HOLDS_NOTHING;
        if (h == HOLDS_OTHER || (h == HOLDS_OUR_FS && n > 1))
            return cfg->force_format ? 0 : wc_err(e, -EEXIST, "instance-store disk %s holds %s; warmcache never formats "
                                                  "a disk that holds data (set forceFormat if its contents may go)",
                                                  disks[i], type);
    }
    if (n == 1 && ours_fs == 1)
        return snprintf(dev, dn, "%s", disks[0]) < (int)dn;
    if (members == 0)
        return 0;
    if (members != n)
        return cfg->force_format ? 0 : wc_err(e, -EEXIST, "%zu of the %zu instance-store disks are members of the "
                                              "warmcache array and %zu are blank: the array cannot be assembled; "
                                              "set forceFormat to build it again (its copies are lost)",
                                              members, n, blank);
    if (holder_of(disks[0], dev, dn))
        return 1;
    int r = mdadm(cfg, "--assemble", disks, n, e);
    if (r < 0)
        return wc_err_prefix(e, "assembling the warmcache array again after a reboot: ");
    return snprintf(dev, dn, "%s", cfg->array) < (int)dn;
}

static int prepare_raid0(const struct disk_config *cfg, const struct mounter *m, char **ret_root, struct wc_error *e)
{
    int r = try_adopt(cfg, m, ret_root);
    if (r != 0)
        return r < 0 ? r : 0;
    if (m->ops->whole_fs_at(m, cfg->path) == 1)
        goto done; /* prepared by an earlier start */
    struct stat st;
    if (stat(cfg->array, &st) == 0 && S_ISBLK(st.st_mode)) {
        /* the array survived a restart of the plugin (or of the node, assembled by udev) */
        if ((r = ensure_xfs(cfg, cfg->array, 0, e)) < 0 || (r = mount_xfs(m, cfg->array, cfg->path, e)) < 0)
            return r;
        goto done;
    }
    char **disks = NULL, dev[PATH_MAX];
    size_t n = 0;
    if ((r = find_disks(cfg, m, &disks, &n, e)) < 0)
        return r;
    r = our_store_on(cfg, disks, n, dev, sizeof(dev), e);
    if (r == 1) {
        r = ensure_xfs(cfg, dev, 0, e);
        if (r == 0)
            r = mount_xfs(m, dev, cfg->path, e);
    } else if (r == 0) {
        const char *target = n == 1 ? disks[0] : cfg->array;
        if (n > 1)
            r = mdadm(cfg, "--create", disks, n, e);
        if (r == 0)
            r = ensure_xfs(cfg, target, (unsigned)n, e);
        if (r == 0)
            r = mount_xfs(m, target, cfg->path, e);
    }
    for (size_t i = 0; i < n; i++)
        free(disks[i]);
    free(disks);
    if (r < 0)
        return r;
done:
    *ret_root = strdup(cfg->path);
    return *ret_root ? 0 : -ENOMEM;
}

static int prepare_device(const struct disk_config *cfg, const struct mounter *m, char **ret_root, struct wc_error *e)
{
    if (!cfg->device || !*cfg->device)
        return wc_err(e, -EINVAL, "store mode device needs a device (--store-device)");
    int r;
    if (m->ops->whole_fs_at(m, cfg->path) != 1 &&
        ((r = ensure_xfs(cfg, cfg->device, 1, e)) < 0 || (r = mount_xfs(m, cfg->device, cfg->path, e)) < 0))
        return r;
    *ret_root = strdup(cfg->path);
    return *ret_root ? 0 : -ENOMEM;
}

int disks_prepare(const struct disk_config *cfg, const struct mounter *m, char **ret_root, struct wc_error *e)
{
    switch (cfg->mode) {
    case STORE_DIRECTORY: {
        int r = fs_mkdir_p(cfg->path, 0755);
        if (r < 0)
            return wc_err_errno(e, r, "store directory %s", cfg->path);
        *ret_root = strdup(cfg->path);
        return *ret_root ? 0 : -ENOMEM;
    }
    case STORE_DEVICE:
        return prepare_device(cfg, m, ret_root, e);
    case STORE_RAID0:
        return prepare_raid0(cfg, m, ret_root, e);
    }
    return -EINVAL;
}
