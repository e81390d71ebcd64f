/*
 * An OCI registry client (the distribution spec): oci://REGISTRY/REPO:TAG
 * or @sha256:DIGEST resolved to a manifest, its layers read as files, and
 * blobs fetched with parallel ranged GETs into files at offsets.
 *
 * Everything a registry sends is untrusted: manifests are bounded in size
 * and checked against their digest, layer paths go through pathkey_check,
 * a blob sends no more bytes than asked, and the fill verifies every file
 * against the sha256 of its digest before it counts. A blob GET that the
 * registry redirects (ECR, most registries: a presigned URL in blob storage)
 * is followed by hand, for blob GETs only, and the registry's Authorization
 * goes to no other host.
 * More: docs/internals/oci.md.
 */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define OCI_HOST_MAX 256
#define OCI_REPO_MAX 256
#define OCI_TAG_MAX 128
#define OCI_DIGEST_LEN 71 /* "sha256:" + 64 hex */

/* oci://HOST[:PORT]/REPO(:TAG|@sha256:HEX) */
struct oci_ref {
    char host[OCI_HOST_MAX];          /* with :port when given */
    char repo[OCI_REPO_MAX];
    char tag[OCI_TAG_MAX + 1];        /* "" when pinned by digest */
    char digest[OCI_DIGEST_LEN + 1];  /* "" when named by tag */
};

/* Checks and splits an oci:// URL, without I/O. */
int oci_ref_parse(const char *url, struct oci_ref *ret, struct wc_error *e);
/* "sha256:" and 64 lower-case hex digits (the one algorithm we verify). */
int oci_digest_ok(const char *d, size_t n);
/* "oci://HOST/REPO": what names the data apart from its manifest (content
 * ids add the listing's digest, so two tags of one artifact are one copy). */
int oci_identity(const char *url, char *out, size_t n, struct wc_error *e);

/* What a layer is: a file at its path, or a tar archive applied at the
 * root (OCI_UNPACK_* flags: container image layers with whiteouts,
 * ModelPack tar layers, directories oras packed). */
#define OCI_UNPACK_TAR 1
#define OCI_UNPACK_GZIP 2
#define OCI_UNPACK_WHITEOUTS 4
#define OCI_UNPACK_ZSTD 8

/* The directory of a copy the archives of an artifact are fetched into,
 * applied from in order, and then removed; no file may be named so. */
#define OCI_LAYERS_DIR ".warmcache-layers"
#define OCI_LAYER_KEY_MAX 64
/* The listing key of layer i of an artifact that has archives, all its
 * layers staged in DIR and laid out in order: an archive's
 * ("DIR/000003.image.tgz": how to apply it) or a file's ("DIR/000004/PATH";
 * n: at least OCI_LAYER_KEY_MAX + strlen(path)); and back: 1 when key is
 * staged, with the archive's flags or the file's path (flags 0). */
void oci_layer_key(size_t i, unsigned unpack, const char *path, char *out, size_t n);
int oci_layer_key_parse(const char *key, unsigned *ret_flags, const char **ret_path);

/* One layer of an artifact. */
struct oci_layer {
    char *path;                       /* a file's, checked by pathkey_check; NULL for an archive */
    unsigned unpack;                  /* 0 for a file, else OCI_UNPACK_TAR | ... */
    char digest[OCI_DIGEST_LEN + 1];
    uint64_t size;
};

struct oci_manifest {
    char digest[OCI_DIGEST_LEN + 1];  /* of the image manifest the layers come from */
    struct oci_layer *v;
    size_t n;
    int staged;                       /* it has an archive: every layer is listed under OCI_LAYERS_DIR */
};
void oci_manifest_free(struct oci_manifest *m);

/* The parse of one manifest document (pure, for tests and the fuzzer):
 * an image manifest gives its layers; an index gives, in ret_next, the
 * digest of the manifest to fetch next (this platform's, or an artifact's)
 * and no layers. */
int oci_manifest_parse(const char *body, size_t len, struct oci_manifest *ret, char ret_next[OCI_DIGEST_LEN + 1],
                       struct wc_error *e);

/* The user name and password a docker config (.dockerconfigjson) holds for
 * host; -ENOENT (the hosts it has named in e) when it has none for it. */
int oci_docker_config_auth(const char *json, size_t len, const char *host, char **ret_user, char **ret_pass,
                           struct wc_error *e);

struct oci_options {
    const char *username, *password; /* NULL: anonymous (a Bearer challenge is still answered) */
    const char *docker_config;       /* a .dockerconfigjson: its entry for the registry, when no username */
    /* optional: a user name and password asked for when the registry
     * challenges and the volume gave none (ECR: a token from the node's
     * role); refused: the password it gave last, which the registry refused
     * (NULL the first time) */
    int (*login)(void *ctx, const char *refused, char **ret_user, char **ret_pass, struct wc_error *e);
    void *login_ctx;
    const char *ca_file;             /* the CAs a registry's certificate is checked against; NULL: the system's */
    unsigned stall_seconds;          /* a transfer under 1 KiB/s this long is cut and retried; 0: 30 */
};

struct oci_client;
int oci_client_new(const char *url, const struct oci_options *o, struct oci_client **ret, struct wc_error *e);
void oci_client_free(struct oci_client *c);

/* Tag or digest to the layers of one image manifest; a tag's manifest is
 * whatever the registry says now (its digest in ret->digest). */
int oci_resolve(struct oci_client *c, const atomic_int *cancel, struct oci_manifest *ret, struct wc_error *e);

/* Byte ranges of blobs, fetched `connections` at a time, each written with
 * pwrite at its offset into the fd fd() gives, done() when whole. A part
 * that fails in a way a retry may cure is tried again (OCI_RETRIES in all). */
struct oci_part {
    const char *digest;
    uint64_t off, len, size;          /* size: the whole blob's */
};
struct oci_transfer {
    size_t n;
    void *ctx;
    void (*part)(void *ctx, size_t i, struct oci_part *ret);
    int (*fd)(void *ctx, size_t i, struct wc_error *e);
    int (*done)(void *ctx, size_t i, struct wc_error *e);
    unsigned connections;
    _Atomic uint64_t *progress;       /* bytes written (a retried part's taken back) */
    _Atomic uint64_t *retries;        /* optional */
    const atomic_int *cancel;
};
#define OCI_RETRIES 5
int oci_transfer_run(struct oci_client *c, const struct oci_transfer *t, struct wc_error *e);

/* Applies one tar layer (read from layer_fd, gzip or zstd as flags say) onto
 * the tree at root, as a runtime applies an image's layers in order:
 * see unpack.c for what an entry may and may not do. room(), when set, is
 * asked before each file is written with its size (the store claims
 * space). Gives the same tree when run again over one it left half made. */
struct oci_unpack {
    int root;                         /* the tree's directory */
    const char *reserved;             /* a name at the root no entry may touch (the layers' own directory) */
    unsigned flags;                   /* OCI_UNPACK_* */
    int (*room)(void *ctx, uint64_t bytes, struct wc_error *e);
    void *room_ctx;
    const atomic_int *cancel;
    _Atomic uint64_t *charged;        /* optional: what room() granted, as it is used */
    uint64_t entries;                 /* entries so far (a copy has at most 10 million) */
};
int oci_unpack(int layer_fd, struct oci_unpack *u, const char *what, struct wc_error *e);
/* Empties the tree at root but for its reserved name: where laying out
 * starts, so that a run after a kill makes the tree a first run makes. */
int oci_tree_reset(int root, const char *reserved, struct wc_error *e);
/* Links the staged file (a path under root) in at path, by the rules and
 * the walk an archive's entry takes (what it replaces, what it may not). */
int oci_place_file(struct oci_unpack *u, const char *staged, const char *path, const char *what, struct wc_error *e);
