/* See fsutil.h. */
#include "base/fsutil.h"
#include "base/macros.h"

#include <ctype.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int fs_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof(buf))
        return -ENAMETOOLONG;
    strcpy(buf, path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return fs_is_dir(buf) ? 0 : -ENOTDIR;
}

int fs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_fsync_path(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        return -errno;
    return 0;
}

static int parent_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return snprintf(out, n, ".") < (int)n ? 0 : -ENAMETOOLONG;
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= n)
        return -ENAMETOOLONG;
    memcpy(out, path, len);
    out[len] = '\0';
    return 0;
}

int fs_write_atomic(const char *path, const void *buf, size_t len, mode_t mode)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)gettid()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    int r = parent_of(path, dir, sizeof(dir));
    if (r < 0)
        return r;
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    const char *p = buf;
    while (len > 0) {
        ssize_t n = RETRY_EINTR(write(fd, p, len));
        if (n < 0) {
            r = -errno;
            unlink(tmp);
            return r;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) < 0 || rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return fs_fsync_path(dir);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -errno : 0;
}

int fs_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) < 0 ? -errno : 0;
    /* FTW_PHYS: never follow a symlink; FTW_MOUNT: never descend into another
     * file system, so a bind mount left inside is refused (rmdir -> EBUSY). */
    int r = nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (r > 0 || r < -4096)
        return -EIO;
    if (r < 0)
        return r == -1 ? -errno : r;
    return 0;
}

void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    out[SHA256_HEX_LEN] = '\0';
}

int fs_read_token(const char *path, char *out, size_t n)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t got = RETRY_EINTR(read(fd, out, n - 1));
    if (got < 0)
        return -errno;
    while (got > 0 && isspace((unsigned char)out[got - 1]))
        got--;
    out[got] = '\0';
    for (ssize_t i = 0; i < got; i++)
        if (!isgraph((unsigned char)out[i]))
            return -EINVAL;
    return got > 0 && (size_t)got < n - 1 ? 0 : -EINVAL;
}

/* The real path of path, as far as it exists: a source not there yet (or
 * gone) is judged by where it would be, not by the letters it is spelt
 * with (/var/run/x is /run/x). */
void fs_real_as_far(const char *path, char *out, size_t n)
{
    char head[PATH_MAX], real[PATH_MAX];
    snprintf(head, sizeof(head), "%s", path);
    size_t len = strlen(head);
    for (;;) {
        if (realpath(len ? head : "/", real)) {
            snprintf(out, n, "%s%s", streq(real, "/") ? "" : real, path + len);
            if (!out[0])
                snprintf(out, n, "/");
            return;
        }
        char *slash = strrchr(head, '/');
        if (!slash) {
            snprintf(out, n, "%s", path);
            return;
        }
        *slash = '\0';
        len = (size_t)(slash - head);
    }
}

/* A file:// URL by where it leads; any other as spelt. */
static void leads_to(const char *url, char *out, size_t n)
{
    char real[PATH_MAX];
    if (strncmp(url, "file://", 7) != 0) {
        snprintf(out, n, "%s", url);
        return;
    }
    fs_real_as_far(url + 7, real, sizeof(real));
    snprintf(out, n, "file://%s", real);
}

int fs_url_under_any(const char *list, const char *url)
{
    char buf[2048], src[PATH_MAX + 16], prefix[PATH_MAX + 16];
    leads_to(url, src, sizeof(src));
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        size_t n = strlen(t);
        while (n && t[n - 1] == ' ')
            t[--n] = '\0';
        if (n == 0)
            continue;
        leads_to(t, prefix, sizeof(prefix));
        n = strlen(prefix);
        if (strncmp(src, prefix, n) == 0 && (prefix[n - 1] == '/' || src[n] == '/' || src[n] == '\0'))
            return 1;
    }
    return 0;
}
