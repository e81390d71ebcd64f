/*
 * oci:// source: the listing is the files of one image manifest (its
 * layers with paths, oci/manifest.c), each file's version tag the blob's
 * digest; the store's parts are ranged GETs of those blobs, and every file
 * is checked against its digest (a sha256) before it is placed. Blobs are
 * named by their content, so a listing cannot change under a fill: a moved
 * tag is a new listing, judged by the volume's sourceChangePolicy.
 */
#include "cache/source.h"
#include "base/macros.h"
#include "base/pathkey.h"
#include "oci/oci.h"
#include "s3/client.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct oci_source {
    struct source base;
    struct oci_client *client;
    unsigned connections;
    struct s3_ctx *aws;       /* ECR: the node's credentials chain; NULL: not an ECR registry, or a Secret */
    char region[64];
    int fips;
};

/* An ECR registry challenged a volume without a Secret: the node's token. */
static int ecr_login(void *ctx, const char *refused, char **ret_user, char **ret_pass, struct wc_error *e)
{
    struct oci_source *os = ctx;
    return s3_ecr_token(os->aws, os->region, os->fips, refused, ret_user, ret_pass, e);
}

static int ocisrc_list(struct source *s, source_object_fn fn, void *ctx, const atomic_int *cancel, struct wc_error *e)
{
    struct oci_source *os = (struct oci_source *)s;
    struct oci_manifest m = {0};
    int r = oci_resolve(os->client, cancel, &m, e);
    /* with an archive, every layer is staged and laid out in order (ocisrc_lay_out) */
    for (size_t i = 0; r == 0 && i < m.n; i++) {
        char key[OCI_LAYER_KEY_MAX + PATHKEY_MAX];
        if (m.staged)
            oci_layer_key(i, m.v[i].unpack, m.v[i].path, key, sizeof(key));
        const char *k = m.staged ? key : m.v[i].path;
        r = fn(ctx, k, strlen(k), m.v[i].size, m.v[i].digest);
    }
    oci_manifest_free(&m);
    return r;
}

/* An artifact with archives has all its layers in OCI_LAYERS_DIR (fetched,
 * resumed and verified as files are); once all are whole, the tree is
 * made from nothing, each layer in the manifest's order (their keys sort
 * so): a file linked in at its path, an archive applied. Starting from an
 * empty tree each time is what makes a run after a kill give the same
 * tree. A tree that cannot be made is taken away again (its layers stay). */
static int ocisrc_lay_out(struct source *s, const struct listing *l, int dirfd, struct source_layout *o,
                          struct wc_error *e)
{
    (void)s;
    unsigned flags;
    const char *path;
    if (l->n == 0 || !oci_layer_key_parse(l->v[0].key, &flags, &path))
        return 0; /* files only: placed by the fill where they belong */
    struct oci_unpack u = {.root = dirfd, .reserved = OCI_LAYERS_DIR, .room = o->room, .room_ctx = o->ctx,
                           .cancel = o->cancel, .charged = &o->charged};
    int r = oci_tree_reset(dirfd, OCI_LAYERS_DIR, e);
    for (size_t i = 0; r == 0 && i < l->n; i++) {
        if (!oci_layer_key_parse(l->v[i].key, &flags, &path))
            continue;
        char what[OCI_DIGEST_LEN + 16];
        snprintf(what, sizeof(what), "layer %.19s", l->v[i].etag); /* "sha256:" and 12 hex digits */
        if (!flags) {
            r = oci_place_file(&u, l->v[i].key, path, what, e);
        } else {
            _cleanup_close_ int fd = openat(dirfd, l->v[i].key, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            u.flags = flags;
            r = fd < 0 ? wc_err_errno(e, -errno, "store: opening %s", what) : oci_unpack(fd, &u, what, e);
        }
    }
    if (r < 0) {
        struct wc_error ignored;
        oci_tree_reset(dirfd, OCI_LAYERS_DIR, &ignored); /* the half tree would hold room nobody claims */
        return r;
    }
    return 1;
}

struct xfer {
    const struct listing *l;
    struct fill_sink *k;
};

static void xfer_part(void *ctx, size_t i, struct oci_part *ret)
{
    struct xfer *x = ctx;
    const struct fill_part *p = &x->k->parts[i];
    const struct listing_entry *ent = &x->l->v[p->file];
    *ret = (struct oci_part){ent->etag, p->off, p->len, ent->size};
}

static int xfer_fd(void *ctx, size_t i, struct wc_error *e)
{
    struct xfer *x = ctx;
    return x->k->fd(x->k, i, e);
}

static int xfer_done(void *ctx, size_t i, struct wc_error *e)
{
    struct xfer *x = ctx;
    return x->k->done(x->k, i, e);
}

static int ocisrc_transfer(struct source *s, const struct listing *l, struct fill_sink *k, const atomic_int *cancel,
                           struct fill_progress *p, struct wc_error *e)
{
    struct oci_source *os = (struct oci_source *)s;
    struct xfer x = {l, k};
    struct oci_transfer t = {
        .n = k->n, .ctx = &x, .part = xfer_part, .fd = xfer_fd, .done = xfer_done,
        .connections = os->connections, .progress = &p->bytes_done, .retries = &p->retries, .cancel = cancel,
    };
    return oci_transfer_run(os->client, &t, e);
}

/* The blob's digest is the file's SHA-256: the store checks it as it checks S3's checksums. */
static int ocisrc_checksum(struct source *s, const struct listing_entry *ent, struct cksum *ret, struct wc_error *e)
{
    (void)s;
    if (!oci_digest_ok(ent->etag, strlen(ent->etag)))
        return wc_err(e, -EBADMSG, "%s: digest \"%.80s\" is not a sha256 digest", ent->key, ent->etag);
    unsigned char raw[32];
    for (int i = 0; i < 32; i++) {
        unsigned v;
        sscanf(ent->etag + 7 + 2 * i, "%2x", &v);
        raw[i] = (unsigned char)v;
    }
    struct cksum c = {.alg = CKSUM_SHA256};
    EVP_EncodeBlock((unsigned char *)c.value, raw, sizeof(raw));
    *ret = c;
    return 0;
}

static void ocisrc_free(struct source *s)
{
    struct oci_source *os = (struct oci_source *)s;
    oci_client_free(os->client);
    free(s->url);
    free(s->identity);
    free(os);
}

static const struct source_ops oci_ops = {
    .scheme = "oci",
    .list = ocisrc_list,
    .transfer = ocisrc_transfer,
    .checksum = ocisrc_checksum,
    .checksum_known = 1,
    .lay_out = ocisrc_lay_out,
    .staging = OCI_LAYERS_DIR,
    .free = ocisrc_free,
};

int source_uses_node_credentials(const char *url)
{
    if (strncmp(url, "s3://", 5) == 0)
        return 1;
    struct oci_ref ref;
    struct wc_error e;
    char region[64];
    return oci_ref_parse(url, &ref, &e) == 0 && s3_ecr_host(ref.host, region, sizeof(region));
}

/* Registries are read on fewer connections than S3 (the node's S3 setting,
 * 148 at 100 Gb/s, is capped here): each serves a blob at hundreds of MB/s
 * from its blob storage, and many answer a burst of one client with 429. */
#define OCI_DEFAULT_CONNECTIONS 16
#define OCI_CONNECTIONS_MAX 32

int source_oci_open(const struct source_spec *spec, const struct source_tuning *t, struct source **ret,
                    struct wc_error *e)
{
    struct oci_source *os = calloc(1, sizeof(*os));
    if (!os)
        return -ENOMEM;
    struct oci_options o = {.username = spec->username, .password = spec->password, .docker_config = spec->docker_config,
                            .ca_file = t->env ? source_env_ca_file(t->env) : NULL, .stall_seconds = t->stall_seconds};
    struct oci_ref ref;
    int given = (spec->username && *spec->username) || (spec->docker_config && *spec->docker_config);
    int ecr = !given && t->env && oci_ref_parse(spec->url, &ref, e) == 0 ?
              s3_ecr_host(ref.host, os->region, sizeof(os->region)) : 0;
    if (ecr) {
        os->fips = ecr == 2;
        os->aws = source_env_s3(t->env);
        o.login = ecr_login;
        o.login_ctx = os;
    }
    wc_error_clear(e);
    int r = oci_client_new(spec->url, &o, &os->client, e);
    if (r < 0) {
        free(os);
        return r;
    }
    os->base.ops = &oci_ops;
    os->connections = !t->connections ? OCI_DEFAULT_CONNECTIONS
                     : t->connections < OCI_CONNECTIONS_MAX ? t->connections : OCI_CONNECTIONS_MAX;
    char id[OCI_HOST_MAX + OCI_REPO_MAX + 16];
    os->base.url = strdup(spec->url);
    if (oci_identity(spec->url, id, sizeof(id), e) < 0 || !os->base.url || !(os->base.identity = strdup(id))) {
        ocisrc_free(&os->base);
        return e->code ? e->code : -ENOMEM;
    }
    *ret = &os->base;
    return 0;
}
