/* Bounded directories: XFS project quotas and loop images; see bound.h. */
#include "storage/bound.h"
#include "base/crash.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "storage/run.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/dqblk_xfs.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/quota.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PRJQUOTA
#define PRJQUOTA 2
#endif
#define MIN_IMAGE (8ull << 20) /* below this ext4's own metadata is most of it */

/* ---- project quota --------------------------------------------------------- */

static int qctl(int fd, int cmd, uint32_t id, void *addr)
{
    return (int)syscall(SYS_quotactl_fd, fd, QCMD(cmd, PRJQUOTA), id, addr);
}

int bound_quota_enforced(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct fs_quota_stat st = {.qs_version = FS_QSTAT_VERSION};
    if (fd < 0 || qctl(fd, Q_XGETQSTAT, 0, &st) < 0)
        return 0;
    return (st.qs_flags & FS_QUOTA_PDQ_ENFD) != 0;
}

/* One project per layer, named by its directory; never 0 (no project). */
static uint32_t project_of(const char *dir)
{
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(dir, strlen(dir), hex);
    uint32_t id = (uint32_t)strtoul((char[9]){hex[0], hex[1], hex[2], hex[3], hex[4], hex[5], hex[6], hex[7], 0},
                                    NULL, 16) & 0x7fffffff; /* some tools read project ids as signed */
    return id ? id : 1;
}

static int set_limit(int fd, uint32_t id, uint64_t bytes)
{
    struct fs_disk_quota d = {
        .d_version = FS_DQUOT_VERSION, .d_flags = FS_PROJ_QUOTA, .d_id = id,
        .d_fieldmask = FS_DQ_BSOFT | FS_DQ_BHARD,
        .d_blk_softlimit = (bytes + 511) / 512, .d_blk_hardlimit = (bytes + 511) / 512, /* basic blocks */
    };
    return qctl(fd, Q_XSETQLIM, id, &d) < 0 ? -errno : 0;
}

static int pq_make(const struct bounder *b, const char *dir, uint64_t bytes, char *ret_dir, size_t n,
                   struct wc_error *e)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return wc_err_errno(e, -errno, "opening %s for its quota", dir);
    uint32_t id = project_of(dir);
    struct fsxattr fa;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &fa) < 0)
        return wc_err_errno(e, -errno, "reading the project of %s", dir);
    fa.fsx_projid = id;
    fa.fsx_xflags |= FS_XFLAG_PROJINHERIT; /* what is made under it joins the project */
    if (ioctl(fd, FS_IOC_FSSETXATTR, &fa) < 0)
        return wc_err_errno(e, -errno, "putting %s into project %u", dir, id);
    int r = set_limit(fd, id, bytes);
    if (r < 0)
        return wc_err_errno(e, r, "setting a quota of %llu bytes on %s", (unsigned long long)bytes, dir);
    return snprintf(ret_dir, n, "%s", dir) < (int)n ? 0 : wc_err(e, -ENAMETOOLONG, "%s: path too long", dir);
}

static int pq_usage(const struct bounder *b, const char *dir, uint64_t *ret_used, uint64_t *ret_limit)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    struct fs_disk_quota d = {0};
    if (fd < 0 || qctl(fd, Q_XGETQUOTA, project_of(dir), &d) < 0)
        return -errno;
    *ret_used = d.d_bcount * 512;
    *ret_limit = d.d_blk_hardlimit * 512;
    return 0;
}

static int pq_remove(const struct bounder *b, const char *dir, struct wc_error *e)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0)
        set_limit(fd, project_of(dir), 0); /* no limit left behind for the id */
    int r = fs_rm_rf(dir);
    return r < 0 ? wc_err_errno(e, r, "removing %s", dir) : 0;
}

const struct bound_ops bound_project_quota = {
    .name = "project quota",
    .make = pq_make,
    .usage = pq_usage,
    .remove = pq_remove,
};

/* ---- loop image ----------------------------------------------------------- */

static int paths(const char *dir, char *img, char *fs, size_t n)
{
    return snprintf(img, n, "%s/layer.img", dir) >= (int)n || snprintf(fs, n, "%s/fs", dir) >= (int)n
               ? -ENAMETOOLONG : 0;
}

/* A free loop device on img, cleared by the kernel once nothing uses it
 * (after the unmount): nothing to detach, and nothing left by a crash.
 * Returns its open fd: the caller closes it once the mount holds it. */
static int attach_loop(const char *img, char *ret_dev, size_t n, struct wc_error *e)
{
    _cleanup_close_ int file = open(img, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (file < 0 || ctl < 0)
        return wc_err_errno(e, -errno, "setting up a loop device for %s", img);
    for (int attempt = 0; attempt < 8; attempt++) {
        int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (nr < 0)
            return wc_err_errno(e, -errno, "finding a free loop device");
        snprintf(ret_dev, n, "/dev/loop%d", nr);
        _cleanup_close_ int dev = open(ret_dev, O_RDWR | O_CLOEXEC);
        if (dev < 0)
            return wc_err_errno(e, -errno, "opening %s", ret_dev);
        struct loop_config cfg = {.fd = (uint32_t)file, .info = {.lo_flags = LO_FLAGS_AUTOCLEAR}};
        snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", img);
        if (ioctl(dev, LOOP_CONFIGURE, &cfg) == 0)
            return TAKE_FD(dev);
        if (errno != EBUSY) /* EBUSY: another process took it first */
            return wc_err_errno(e, -errno, "attaching %s to %s", img, ret_dev);
    }
    return wc_err(e, -EBUSY, "no free loop device for %s after 8 tries", img);
}

static int li_make(const struct bounder *b, const char *dir, uint64_t bytes, char *ret_dir, size_t n,
                   struct wc_error *e)
{
    char img[PATH_MAX], fs[PATH_MAX], dev[64];
    if (paths(dir, img, fs, sizeof(img)) < 0)
        return wc_err(e, -ENAMETOOLONG, "%s: path too long", dir);
    _cleanup_close_ int fd = open(img, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    /* sparse: the store gives up only what the pod writes */
    if (fd < 0 || ftruncate(fd, (off_t)(bytes > MIN_IMAGE ? bytes : MIN_IMAGE)) < 0)
        return wc_err_errno(e, -errno, "making the writable layer's image %s", img);
    const char *argv[] = {b->mkfs_ext4 ? b->mkfs_ext4 : "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                          "-E", "nodiscard", "-L", "wc-scratch", img, NULL};
    int r = storage_run(argv, e);
    if (r < 0)
        return wc_err_prefix(e, "formatting the writable layer's image: ");
    if ((r = fs_mkdir_p(fs, 0755)) < 0)
        return wc_err_errno(e, r, "creating %s", fs);
    _cleanup_close_ int loop = attach_loop(img, dev, sizeof(dev), e);
    if (loop < 0)
        return loop;
    crash_point("bound-loop-attached");
    if ((r = b->mounter->ops->mount_fs(b->mounter, dev, "ext4", fs, "noatime,nosuid,nodev", e)) < 0)
        return r;
    return snprintf(ret_dir, n, "%s", fs) < (int)n ? 0 : wc_err(e, -ENAMETOOLONG, "%s: path too long", fs);
}

static int li_usage(const struct bounder *b, const char *dir, uint64_t *ret_used, uint64_t *ret_limit)
{
    char img[PATH_MAX], fs[PATH_MAX];
    struct statvfs v;
    if (paths(dir, img, fs, sizeof(img)) < 0 || b->mounter->ops->is_mountpoint(b->mounter, fs) != 1 ||
        statvfs(fs, &v) < 0)
        return -ENOENT;
    *ret_limit = (uint64_t)v.f_blocks * v.f_frsize;
    *ret_used = (uint64_t)(v.f_blocks - v.f_bfree) * v.f_frsize;
    return 0;
}

static int li_remove(const struct bounder *b, const char *dir, struct wc_error *e)
{
    char img[PATH_MAX], fs[PATH_MAX];
    if (paths(dir, img, fs, sizeof(img)) < 0)
        return wc_err(e, -ENAMETOOLONG, "%s: path too long", dir);
    for (int i = 0; i < 4 && b->mounter->ops->is_mountpoint(b->mounter, fs) == 1; i++) {
        int r = b->mounter->ops->umount(b->mounter, fs, e); /* the loop device clears itself */
        if (r < 0)
            return r;
    }
    int r = fs_rm_rf(dir);
    return r < 0 ? wc_err_errno(e, r, "removing %s", dir) : 0;
}

const struct bound_ops bound_loop_image = {
    .name = "loop image",
    .make = li_make,
    .usage = li_usage,
    .remove = li_remove,
};
