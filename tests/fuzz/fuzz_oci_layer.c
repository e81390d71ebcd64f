/* Tar layers off a registry, applied onto a scratch tree (oci/unpack.c):
 * whatever the bytes, nothing lands outside the tree (the directory
 * holding it has only what the harness put there), and what lands in it
 * is files, directories and links the kernel does not resolve out of it,
 * with no setuid bit. Input starting with gzip's or zstd's magic is applied as such a
 * layer, all with whiteouts. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "oci/oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char top[64];

/* Every entry under dir (rel below the tree's root) is allowed: files
 * without a setuid bit, directories, and links that the kernel, asked to
 * resolve them beneath the root, does not find leading out (EXDEV). */
static void check_tree(int root, int dfd, const char *rel)
{
    DIR *d = fdopendir(dfd);
    if (!d)
        abort();
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char p[8192];
        snprintf(p, sizeof(p), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            abort();
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
            if (sub < 0)
                abort();
            check_tree(root, sub, p);
        } else if (S_ISLNK(st.st_mode)) {
            struct open_how how = {.flags = O_PATH, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
            long fd = syscall(SYS_openat2, root, p, &how, sizeof(how));
            if (fd < 0 && errno == EXDEV)
                abort(); /* a link that leads out of the tree */
            if (fd >= 0)
                close((int)fd);
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
    check_tree(root, openat(root, ".", O_RDONLY | O_DIRECTORY), "");
    close(root);
    /* nothing escaped: beside the tree, only what this harness made */
    DIR *d = opendir(top);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "tree") &&
            strcmp(de->d_name, "outside") && strcmp(de->d_name, "layer"))
            abort();
    if (d)
        closedir(d);
    d = opendir(outside);
    while (d && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            abort();
    if (d)
        closedir(d);
    return 0;
}
