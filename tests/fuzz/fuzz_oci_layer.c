/* Tar layers off a registry, applied onto a scratch tree (oci/unpack.c):
 * whatever the bytes, nothing lands outside the tree, and what lands in
 * it is files, directories and links that stay inside, with no setuid
 * bit. Input starting with gzip's or zstd's magic is applied as such a
 * layer, all with whiteouts. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "oci/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char top[64];

/* Every entry under dir is allowed; depth: components below the tree's root. */
static void check_tree(int dfd, unsigned depth)
{
    DIR *d = fdopendir(dfd);
    if (!d)
        abort();
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            abort();
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (sub < 0)
                abort();
            check_tree(sub, depth + 1);
        } else if (S_ISLNK(st.st_mode)) {
            char t[8192];
            ssize_t n = readlinkat(dirfd(d), de->d_name, t, sizeof(t) - 1);
            if (n <= 0 || t[0] == '/')
                abort();
            t[n] = '\0';
            unsigned up = 0;
            const char *p = t;
            while (!strncmp(p, "../", 3) || !strcmp(p, ".."))
                up++, p += p[2] ? 3 : 2;
            if (up > depth || strstr(p, "/../") || !strncmp(p, "../", 3) ||
                (strlen(p) >= 3 && !strcmp(p + strlen(p) - 3, "/..")) || !strcmp(p, ".."))
                abort();
        } else if (!S_ISREG(st.st_mode) || (st.st_mode & 07000)) {
            abort();
        }
    }
    closedir(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!top[0]) {
        snprintf(top, sizeof(top), "/tmp/fuzz-oci-layer-XXXXXX");
        if (!mkdtemp(top))
            abort();
    }
    char tree[128], outside[128], layer[128];
    snprintf(tree, sizeof(tree), "%s/tree", top);
    snprintf(outside, sizeof(outside), "%s/outside", top);
    snprintf(layer, sizeof(layer), "%s/layer", top);
    fs_rm_rf(tree);
    mkdir(tree, 0755);
    mkdir(outside, 0755);
    int lfd = open(layer, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (lfd < 0 || write(lfd, data, size) != (ssize_t)size || lseek(lfd, 0, SEEK_SET) != 0)
        abort();
    int root = open(tree, O_RDONLY | O_DIRECTORY);
    struct oci_unpack u = {.root = root, .reserved = OCI_LAYERS_DIR,
                           .flags = OCI_UNPACK_TAR | OCI_UNPACK_WHITEOUTS |
                                    (size >= 2 && data[0] == 0x1f && data[1] == 0x8b ? OCI_UNPACK_GZIP : 0) |
                                    (size >= 4 && !memcmp(data, "\x28\xb5\x2f\xfd", 4) ? OCI_UNPACK_ZSTD : 0)};
    struct wc_error e = {0};
    oci_unpack(lfd, &u, "layer", &e);
    close(lfd);
    check_tree(root, 0); /* closes root */
    DIR *d = opendir(outside);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            abort(); /* something escaped */
    if (d)
        closedir(d);
    return 0;
}
