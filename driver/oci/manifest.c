/* Manifests and indexes as a registry sends them, read as files and
 * archives.
 *
 * Which layers are files, and where they go: a ModelPack layer
 * (org.cncf.model.filepath) of a raw media type is the file at that path;
 * an oras layer (org.opencontainers.image.title) is the file of that name
 * whatever its media type, as `oras pull` writes it. Archives, applied at
 * the copy's root in manifest order (unpack.c): ModelPack tar layers, a
 * directory oras packed (io.deis.oras.content.unpack), a container image's
 * layers (with whiteouts); plain, gzip or zstd. What warmcache cannot place
 * (foreign layers, unknown media types) is refused with a message saying so, never
 * skipped: a copy without it would be missing files its author pushed. */
#include "oci/oci.h"
#include "base/macros.h"
#include "base/pathkey.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYERS_MAX 100000
#define BLOB_MAX (1ull << 50) /* a layer, and all of them: sizes a registry claims are unchecked until fetched */

#if defined(__aarch64__)
#define HOST_ARCH "arm64"
#else
#define HOST_ARCH "amd64"
#endif

void oci_manifest_free(struct oci_manifest *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].path);
    free(m->v);
    m->v = NULL;
    m->n = 0;
    m->staged = 0;
}

static const char *str_of(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

static int descriptor(json_t *d, const char *what, size_t i, char digest[OCI_DIGEST_LEN + 1], uint64_t *ret_size,
                      struct wc_error *e)
{
    const char *dg = str_of(d, "digest");
    json_t *sz = json_object_get(d, "size");
    if (!json_is_object(d) || !dg || !json_is_integer(sz))
        return wc_err(e, -EBADMSG, "manifest: %s %zu has no digest or size", what, i);
    if (!oci_digest_ok(dg, strlen(dg)))
        return wc_err(e, -EBADMSG, "manifest: %s %zu has digest \"%.80s\"; warmcache verifies sha256 digests only",
                      what, i, dg);
    json_int_t s = json_integer_value(sz);
    if (s < 0 || (uint64_t)s > BLOB_MAX)
        return wc_err(e, -EBADMSG, "manifest: %s %zu has size %lld", what, i, (long long)s);
    memcpy(digest, dg, OCI_DIGEST_LEN + 1);
    *ret_size = (uint64_t)s;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* What a tar media type's suffix says: OCI_UNPACK_TAR (| GZIP), or 0 with e set. */
static unsigned tar_kind(const char *mt, size_t i, struct wc_error *e)
{
    if (ends_with(mt, ".tar") || ends_with(mt, ".diff.tar"))
        return OCI_UNPACK_TAR;
    if (ends_with(mt, ".tar+gzip") || ends_with(mt, ".tar.gzip"))
        return OCI_UNPACK_TAR | OCI_UNPACK_GZIP;
    if (ends_with(mt, ".tar+zstd"))
        return OCI_UNPACK_TAR | OCI_UNPACK_ZSTD;
    return wc_err(e, -ENOTSUP, "manifest: layer %zu has media type \"%.100s\", which is not a tar layer warmcache "
                  "reads", i, mt), 0;
}

/* The layer as a file (*ret_path) or an archive (*ret_unpack); -ENOTSUP with
 * a message for what warmcache cannot place. */
static int classify(json_t *l, size_t i, const char **ret_path, unsigned *ret_unpack, struct wc_error *e)
{
    const char *mt = str_of(l, "mediaType");
    json_t *ann = json_object_get(l, "annotations");
    const char *fp = str_of(ann, "org.cncf.model.filepath"), *title = str_of(ann, "org.opencontainers.image.title");
    const char *unpack = str_of(ann, "io.deis.oras.content.unpack");
    if (!mt)
        mt = "";
    unsigned kind = 0;
    if (fp && ends_with(mt, ".raw")) {
        *ret_path = fp;
    } else if (fp) { /* a ModelPack tar layer: the file or directory at fp, as modctl packed it */
        if (!(kind = tar_kind(mt, i, e)))
            return e->code;
    } else if (title && unpack && strcmp(unpack, "true") == 0) { /* a directory oras packed */
        if (!(kind = tar_kind(mt, i, e)))
            return e->code;
    } else if (title) {
        *ret_path = title; /* a file, whatever its media type, as oras pull writes it */
    } else if (strstr(mt, "nondistributable") || strstr(mt, "foreign")) {
        return wc_err(e, -ENOTSUP, "manifest: layer %zu (%.100s) is a foreign layer, which registries do not serve",
                      i, mt);
    } else if (strncmp(mt, "application/vnd.oci.image.layer.", 32) == 0 ||
               strncmp(mt, "application/vnd.docker.image.rootfs.", 36) == 0) {
        if (!(kind = tar_kind(mt, i, e)))
            return e->code;
        kind |= OCI_UNPACK_WHITEOUTS; /* a container image's layer */
    } else {
        return wc_err(e, -ENOTSUP, "manifest: layer %zu (%.100s) has no file name (org.opencontainers.image.title "
                      "or org.cncf.model.filepath) and is not an image layer: warmcache cannot place it", i, mt);
    }
    *ret_unpack = kind;
    if (kind)
        *ret_path = NULL;
    return 0;
}

static int parse_layers(json_t *layers, struct oci_manifest *m, struct wc_error *e)
{
    size_t n = json_array_size(layers);
    if (n > LAYERS_MAX)
        return wc_err(e, -E2BIG, "manifest: %zu layers; warmcache reads at most %d", n, LAYERS_MAX);
    m->v = calloc(n ? n : 1, sizeof(*m->v));
    if (!m->v)
        return -ENOMEM;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(layers, i);
        struct oci_layer *o = &m->v[m->n];
        int r = descriptor(l, "layer", i, o->digest, &o->size, e);
        if (r < 0)
            return r;
        if ((total += o->size) > BLOB_MAX) /* each is at most BLOB_MAX: the sum cannot wrap first */
            return wc_err(e, -EFBIG, "manifest: its layers add up to more than 1 PiB");
        const char *path = NULL;
        if ((r = classify(l, i, &path, &o->unpack, e)) < 0)
            return r;
        if (path && (r = pathkey_check(path, strlen(path), e)) < 0)
            return wc_err_prefix(e, "manifest: layer %zu: ", i);
        size_t rl = strlen(OCI_LAYERS_DIR);
        if (path && strncmp(path, OCI_LAYERS_DIR, rl) == 0 && (path[rl] == '\0' || path[rl] == '/'))
            return wc_err(e, -EINVAL, "manifest: layer %zu: %s is the name of warmcache's own directory in a "
                          "copy", i, OCI_LAYERS_DIR);
        if (path && !(o->path = strdup(path)))
            return -ENOMEM;
        m->n++;
    }
    /* with an archive, files are staged as OCI_LAYERS_DIR/NNNNNN/PATH: that too must be a key */
    for (size_t i = 0; i < m->n; i++)
        m->staged |= m->v[i].unpack != 0;
    for (size_t i = 0; m->staged && i < m->n; i++)
        if (m->v[i].path && strlen(m->v[i].path) > PATHKEY_MAX - sizeof(OCI_LAYERS_DIR "/000000/") + 1)
            return wc_err(e, -ENAMETOOLONG, "manifest: layer %zu: a path of %zu bytes; beside archive layers, "
                          "warmcache places files of at most %zu", i, strlen(m->v[i].path),
                          PATHKEY_MAX - sizeof(OCI_LAYERS_DIR "/000000/") + 1);
    return 0;
}

static const struct {
    const char *suffix;
    unsigned flags;
} key_kinds[] = {
    {".tar", OCI_UNPACK_TAR},
    {".tgz", OCI_UNPACK_TAR | OCI_UNPACK_GZIP},
    {".image.tar", OCI_UNPACK_TAR | OCI_UNPACK_WHITEOUTS},
    {".image.tgz", OCI_UNPACK_TAR | OCI_UNPACK_GZIP | OCI_UNPACK_WHITEOUTS},
    {".tzst", OCI_UNPACK_TAR | OCI_UNPACK_ZSTD},
    {".image.tzst", OCI_UNPACK_TAR | OCI_UNPACK_ZSTD | OCI_UNPACK_WHITEOUTS},
};

void oci_layer_key(size_t i, unsigned unpack, const char *path, char *out, size_t n)
{
    if (!unpack) {
        snprintf(out, n, OCI_LAYERS_DIR "/%06zu/%s", i, path);
        return;
    }
    const char *suffix = ".tar";
    for (size_t k = 0; k < sizeof(key_kinds) / sizeof(key_kinds[0]); k++)
        if (key_kinds[k].flags == unpack)
            suffix = key_kinds[k].suffix;
    snprintf(out, n, OCI_LAYERS_DIR "/%06zu%s", i, suffix);
}

int oci_layer_key_parse(const char *key, unsigned *ret_flags, const char **ret_path)
{
    size_t n = strlen(OCI_LAYERS_DIR);
    if (strncmp(key, OCI_LAYERS_DIR "/", n + 1) != 0)
        return 0;
    const char *p = key + n + 1;
    if (strspn(p, "0123456789") != 6)
        return 0;
    if (p[6] == '/' && p[7]) {
        *ret_flags = 0;
        *ret_path = p + 7;
        return 1;
    }
    for (size_t k = 0; k < sizeof(key_kinds) / sizeof(key_kinds[0]); k++)
        if (streq(p + 6, key_kinds[k].suffix)) {
            *ret_flags = key_kinds[k].flags;
            *ret_path = NULL;
            return 1;
        }
    return 0;
}

/* This platform's manifest of an index, or its only one. */
static int pick(json_t *mans, char next[OCI_DIGEST_LEN + 1], struct wc_error *e)
{
    size_t n = json_array_size(mans);
    if (n == 0)
        return wc_err(e, -EBADMSG, "manifest: an index that lists no manifests");
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(mans, i), *pf = json_object_get(d, "platform");
        const char *os = str_of(pf, "os"), *arch = str_of(pf, "architecture");
        uint64_t size;
        if (n == 1 || (os && arch && strcmp(os, "linux") == 0 && strcmp(arch, HOST_ARCH) == 0))
            return descriptor(d, "manifest", i, next, &size, e);
    }
    return wc_err(e, -ENOENT, "manifest: the index lists %zu manifests and none for linux/" HOST_ARCH, n);
}

int oci_manifest_parse(const char *body, size_t len, struct oci_manifest *ret, char ret_next[OCI_DIGEST_LEN + 1],
                       struct wc_error *e)
{
    json_error_t je;
    json_t *j _cleanup_json_ = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(j))
        return wc_err(e, -EBADMSG, "manifest: not a JSON object (%.100s)", j ? "another JSON value" : je.text);
    json_t *mans = json_object_get(j, "manifests"), *layers = json_object_get(j, "layers");
    if (json_is_array(mans) && !layers) {
        char next[OCI_DIGEST_LEN + 1];
        int r = pick(mans, next, e);
        if (r < 0)
            return r;
        *ret = (struct oci_manifest){0};
        memcpy(ret_next, next, sizeof(next));
        return 0;
    }
    if (!json_is_array(layers))
        return wc_err(e, -EBADMSG, "manifest: neither an image manifest (layers) nor an index (manifests); "
                      "media type \"%.100s\"", str_of(j, "mediaType") ? str_of(j, "mediaType") : "none");
    struct oci_manifest m = {0};
    int r = parse_layers(layers, &m, e);
    if (r < 0) {
        oci_manifest_free(&m);
        return r;
    }
    *ret = m;
    ret_next[0] = '\0';
    return 0;
}
