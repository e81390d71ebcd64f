/* See fake_mount.h. */
#include "fake_mount.h"
#include "base/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct fake_mounter *fake(const struct mounter *m)
{
    return (struct fake_mounter *)m; /* the test owns it; the vtable only lends it out as const */
}

static int add(const struct mounter *m, const char *src, const char *dst, int ro, int overlay, struct wc_error *e)
{
    struct fake_mounter *f = fake(m);
    if (f->fail_next_mount) {
        int r = f->fail_next_mount;
        f->fail_next_mount = 0;
        return wc_err_errno(e, r, "fake mount at %s", dst);
    }
    if (f->n == FAKE_MOUNTS_MAX)
        return wc_err(e, -ENOSPC, "fake mount table full");
    struct fake_mount *x = &f->m[f->n++];
    snprintf(x->target, sizeof(x->target), "%s", dst);
    snprintf(x->source, sizeof(x->source), "%s", src);
    x->readonly = ro;
    x->overlay = overlay;
    f->mounts++;
    return 0;
}

static int bind(const struct mounter *m, const char *src, const char *dst, int readonly, const char *flags,
                struct wc_error *e)
{
    return add(m, src, dst, readonly, 0, e);
}

static int overlay(const struct mounter *m, const char *lower, const char *upper, const char *work, const char *dst,
                   const char *flags, struct wc_error *e)
{
    int r = add(m, lower, dst, 0, 1, e);
    if (r == 0)
        snprintf(fake(m)->m[fake(m)->n - 1].upper, PATH_MAX, "%s", upper);
    return r;
}

static int mount_fs(const struct mounter *m, const char *dev, const char *fstype, const char *target,
                    const char *opts, struct wc_error *e)
{
    return add(m, dev, target, 0, 0, e);
}

static int top(const struct fake_mounter *f, const char *path)
{
    for (int i = f->n; i-- > 0;)
        if (strcmp(f->m[i].target, path) == 0)
            return i;
    return -1;
}

static int umount_(const struct mounter *m, const char *target, struct wc_error *e)
{
    struct fake_mounter *f = fake(m);
    int i = top(f, target);
    if (i < 0)
        return wc_err(e, -EINVAL, "fake umount: %s is not mounted", target);
    memmove(&f->m[i], &f->m[i + 1], (size_t)(f->n - i - 1) * sizeof(f->m[0]));
    f->n--;
    f->umounts++;
    return 0;
}

static int is_mountpoint(const struct mounter *m, const char *path)
{
    return top(fake(m), path) >= 0;
}

static int whole_fs_at(const struct mounter *m, const char *path)
{
    return 0;
}

static int is_readonly(const struct mounter *m, const char *path)
{
    int i = top(fake(m), path);
    return i < 0 ? -EINVAL : fake(m)->m[i].readonly;
}

static const struct mounter_ops fake_ops = {bind, overlay, mount_fs, umount_, is_mountpoint, whole_fs_at,
                                            is_readonly};

void fake_mounter_init(struct fake_mounter *f)
{
    memset(f, 0, sizeof(*f));
    f->base.ops = &fake_ops;
}

int fake_mounted(const struct fake_mounter *f, const char *target, const struct fake_mount **ret)
{
    int n = 0;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->m[i].target, target) == 0) {
            n++;
            if (ret)
                *ret = &f->m[i];
        }
    return n;
}

void fake_reboot(struct fake_mounter *f)
{
    f->n = 0;
}

static int bmake(const struct bounder *b, const char *dir, uint64_t bytes, char *ret_dir, size_t n,
                 struct wc_error *e)
{
    snprintf(ret_dir, n, "%s", dir);
    return 0;
}

static int busage(const struct bounder *b, const char *dir, uint64_t *ret_used, uint64_t *ret_limit)
{
    return -ENOTSUP;
}

static int bremove(const struct bounder *b, const char *dir, struct wc_error *e)
{
    int r = fs_rm_rf(dir);
    return r == -ENOENT ? 0 : r;
}

const struct bound_ops fake_bounds = {"fake", bmake, busage, bremove};
