/* See disks.h. Every step checks before it acts, so a second run is a no-op. */
#include "storage/disks.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/macros.h"

#include <blkid/blkid.h>
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

/* Runs a program, its output into the log; a non-zero exit is an error. */
static int run(const char *const argv[], struct wc_error *e)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return wc_err_errno(e, -errno, "pipe");
    pid_t pid = fork();
    if (pid < 0)
        return wc_err_errno(e, -errno, "fork");
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    char out[2048];
    size_t got = 0;
    ssize_t n;
    while ((n = RETRY_EINTR(read(pipefd[0], out + got, sizeof(out) - 1 - got))) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(pipefd[0]);
    int status;
    if (RETRY_EINTR(waitpid(pid, &status, 0)) < 0)
        return wc_err_errno(e, -errno, "waiting for %s", argv[0]);
    json_t *args = json_array();
    for (size_t i = 0; argv[i]; i++)
        json_array_append_new(args, json_string(argv[i]));
    log_json(LOG_INFO, "ran", json_pack("{s:o, s:i, s:s}", "argv", args, "exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                                       "output", out));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return wc_err(e, -EIO, "%s failed (exit %d): %.300s", argv[0], WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                      out);
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
    return run(stripes > 1 ? argv_striped : argv_plain, e);
}

static int mount_xfs(struct mounter *m, const char *dev, const char *at, struct wc_error *e)
{
    int r = fs_mkdir_p(at, 0755);
    if (r < 0)
        return wc_err_errno(e, r, "creating the mount point %s", at);
    return m->ops->mount_fs(m, dev, "xfs", at, "noatime", e);
}

/* An array the node already has, mounted at one of the adopt paths. */
static int try_adopt(const struct disk_config *cfg, struct mounter *m, char **ret_root)
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

static int find_disks(const struct disk_config *cfg, struct mounter *m, char ***ret, size_t *ret_n,
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

static int prepare_raid0(const struct disk_config *cfg, struct mounter *m, char **ret_root, struct wc_error *e)
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
    char **disks = NULL;
    size_t n = 0;
    if ((r = find_disks(cfg, m, &disks, &n, e)) < 0)
        return r;
    for (size_t i = 0; i < n && r == 0; i++) {
        char type[64], label[64];
        int p = probe(disks[i], type, sizeof(type), label, sizeof(label), e);
        if (p < 0)
            r = p;
        else if (p == 1 && !cfg->force_format)
            r = wc_err(e, -EEXIST, "instance-store disk %s holds %s; warmcache never formats a disk that holds "
                       "data (set forceFormat if its contents may go)", disks[i], type);
    }
    const char *dev = n == 1 ? disks[0] : cfg->array;
    if (r == 0 && n > 1) {
        char count[16], chunk[16];
        snprintf(count, sizeof(count), "%zu", n);
        snprintf(chunk, sizeof(chunk), "%d", RAID_CHUNK_KIB);
        const char **argv = calloc(n + 16, sizeof(char *));
        size_t a = 0;
        if (!argv)
            r = -ENOMEM;
        else {
            argv[a++] = cfg->mdadm;
            argv[a++] = "--create";
            argv[a++] = cfg->array;
            argv[a++] = "--level=0";
            argv[a++] = "--chunk";
            argv[a++] = chunk;
            argv[a++] = "--raid-devices";
            argv[a++] = count;
            argv[a++] = "--run";
            argv[a++] = "--homehost=any";
            for (size_t i = 0; i < n; i++)
                argv[a++] = disks[i];
            argv[a] = NULL;
            r = run(argv, e);
            free(argv);
        }
    }
    if (r == 0)
        r = ensure_xfs(cfg, dev, (unsigned)n, e);
    if (r == 0)
        r = mount_xfs(m, dev, cfg->path, e);
    for (size_t i = 0; i < n; i++)
        free(disks[i]);
    free(disks);
    if (r < 0)
        return r;
done:
    *ret_root = strdup(cfg->path);
    return *ret_root ? 0 : -ENOMEM;
}

static int prepare_device(const struct disk_config *cfg, struct mounter *m, char **ret_root, struct wc_error *e)
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

int disks_prepare(const struct disk_config *cfg, struct mounter *m, char **ret_root, struct wc_error *e)
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
