/* libmount-backed mounter; see mount.h. */
#include "storage/mount.h"
#include "base/crash.h"
#include "base/macros.h"

#include <fcntl.h>
#include <libmount/libmount.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

static int context_error(struct libmnt_context *cxt, int rc, const char *what, const char *target,
                         struct wc_error *e)
{
    char buf[512] = "";
    mnt_context_get_excode(cxt, rc, buf, sizeof(buf));
    int err = mnt_context_get_syscall_errno(cxt);
    if (err == 0)
        err = rc < 0 ? -rc : EIO;
    return wc_err(e, -err, "%s %s failed: %s", what, target, buf[0] ? buf : strerror(err));
}

static struct libmnt_context *new_context(void)
{
    struct libmnt_context *cxt = mnt_new_context();
    if (!cxt)
        return NULL;
    /* No mount.<type> helpers and no utab: we own these mounts end to end. */
    mnt_context_disable_helpers(cxt, 1);
    mnt_context_disable_mtab(cxt, 1);
    return cxt;
}

static int do_mount(const char *source, const char *fstype, const char *target, const char *opts,
                    const char *what, struct wc_error *e)
{
    struct libmnt_context *cxt = new_context();
    if (!cxt)
        return wc_err(e, -ENOMEM, "out of memory");
    int rc = mnt_context_set_source(cxt, source);
    if (!rc)
        rc = mnt_context_set_target(cxt, target);
    if (!rc && fstype)
        rc = mnt_context_set_fstype(cxt, fstype);
    if (!rc)
        rc = mnt_context_set_options(cxt, opts);
    if (!rc)
        rc = mnt_context_mount(cxt);
    int r = rc ? context_error(cxt, rc, what, target, e) : 0;
    mnt_free_context(cxt);
    return r;
}

/* Mount attributes of our flag words (the ones mount_flags in node.c lets through). */
static int attrs_of(const char *flags, struct mount_attr *a)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", flags ? flags : "");
    for (char *save = NULL, *f = strtok_r(buf, ",", &save); f; f = strtok_r(NULL, ",", &save)) {
        if (streq(f, "ro"))
            a->attr_set |= MOUNT_ATTR_RDONLY;
        else if (streq(f, "nosuid"))
            a->attr_set |= MOUNT_ATTR_NOSUID;
        else if (streq(f, "nodev"))
            a->attr_set |= MOUNT_ATTR_NODEV;
        else if (streq(f, "noexec"))
            a->attr_set |= MOUNT_ATTR_NOEXEC;
        else if (streq(f, "nodiratime"))
            a->attr_set |= MOUNT_ATTR_NODIRATIME;
        else if (streq(f, "noatime") || streq(f, "relatime")) {
            a->attr_clr |= MOUNT_ATTR__ATIME;
            a->attr_set |= streq(f, "noatime") ? MOUNT_ATTR_NOATIME : MOUNT_ATTR_RELATIME;
        } else
            return -EINVAL;
    }
    return 0;
}

/* A read-only bind appears at dst already read-only, in one step: the tree
 * is cloned detached, made read-only, then attached. A kill at any moment
 * leaves either nothing at dst or the finished mount, never a writable bind
 * of the shared copy (which bind-then-remount would leave between the two). */
static int bind_ro_atomic(const char *src, const char *dst, const char *flags, struct wc_error *e)
{
    struct mount_attr a = {0};
    if (attrs_of(flags, &a) < 0)
        return wc_err(e, -EINVAL, "mount flags \"%s\" are not supported", flags);
    a.attr_set |= MOUNT_ATTR_RDONLY;
    _cleanup_close_ int tree = open_tree(AT_FDCWD, src, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (tree < 0)
        return -errno == -ENOSYS ? -ENOSYS : wc_err_errno(e, -errno, "bind mount of %s: cloning it", src);
    if (mount_setattr(tree, "", AT_EMPTY_PATH, &a, sizeof(a)) < 0)
        return errno == ENOSYS ? -ENOSYS : wc_err_errno(e, -errno, "bind mount of %s: making it read-only", src);
    crash_point("bind-before-attach");
    if (move_mount(tree, "", AT_FDCWD, dst, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return wc_err_errno(e, -errno, "bind mount at %s failed", dst);
    return 0;
}

static int lm_bind(const struct mounter *m, const char *src, const char *dst, int readonly, const char *flags,
                   struct wc_error *e)
{
    if (readonly) {
        int r = bind_ro_atomic(src, dst, flags, e);
        if (r != -ENOSYS)
            return r;
        /* a kernel before 5.12: bind, then remount read-only, as libmount does;
         * the node checks a mount it finds is read-only before it accepts it */
    }
    char opts[512];
    snprintf(opts, sizeof(opts), "bind,%s%s%s", readonly ? "ro" : "rw", flags && *flags ? "," : "",
             flags ? flags : "");
    return do_mount(src, NULL, dst, opts, "bind mount at", e);
}

static int lm_overlay(const struct mounter *m, const char *lower, const char *upper, const char *work,
                      const char *dst, const char *flags, struct wc_error *e)
{
    char opts[PATH_MAX * 3 + 64];
    int n = snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s%s%s", lower, upper, work,
                     flags && *flags ? "," : "", flags ? flags : "");
    if (n < 0 || (size_t)n >= sizeof(opts))
        return wc_err(e, -ENAMETOOLONG, "overlay options too long");
    return do_mount("overlay", "overlay", dst, opts, "overlay mount at", e);
}

static int lm_mount_fs(const struct mounter *m, const char *dev, const char *fstype, const char *target, const char *opts,
                       struct wc_error *e)
{
    return do_mount(dev, fstype, target, opts, "mount at", e);
}

static int lm_umount(const struct mounter *m, const char *target, struct wc_error *e)
{
    struct libmnt_context *cxt = new_context();
    if (!cxt)
        return wc_err(e, -ENOMEM, "out of memory");
    int rc = mnt_context_set_target(cxt, target);
    if (!rc)
        rc = mnt_context_umount(cxt);
    int r = rc ? context_error(cxt, rc, "unmount of", target, e) : 0;
    mnt_free_context(cxt);
    return r;
}

/* 1 if something is mounted at path (and, with whole, if it is a file
 * system's root rather than a bind of a subdirectory), 0 if not. */
static int mounted_at(const char *path, int whole)
{
    char real[PATH_MAX];
    if (!realpath(path, real))
        return errno == ENOENT ? 0 : -errno;
    struct libmnt_table *tb = mnt_new_table();
    if (!tb)
        return -ENOMEM;
    int r = mnt_table_parse_file(tb, "/proc/self/mountinfo");
    if (r == 0) {
        struct libmnt_fs *fs = mnt_table_find_target(tb, real, MNT_ITER_BACKWARD);
        const char *root = fs ? mnt_fs_get_root(fs) : NULL;
        r = fs && (!whole || (root && strcmp(root, "/") == 0));
    }
    mnt_unref_table(tb);
    return r;
}

static int lm_is_mountpoint(const struct mounter *m, const char *path) { return mounted_at(path, 0); }
static int lm_whole_fs_at(const struct mounter *m, const char *path) { return mounted_at(path, 1); }

static int lm_is_readonly(const struct mounter *m, const char *path)
{
    struct statvfs v;
    if (statvfs(path, &v) < 0)
        return -errno;
    return (v.f_flag & ST_RDONLY) != 0;
}

static const struct mounter_ops libmount_ops = {
    .bind = lm_bind,
    .overlay = lm_overlay,
    .mount_fs = lm_mount_fs,
    .umount = lm_umount,
    .is_mountpoint = lm_is_mountpoint,
    .whole_fs_at = lm_whole_fs_at,
    .is_readonly = lm_is_readonly,
};

const struct mounter mounter_libmount = {.ops = &libmount_ops};
