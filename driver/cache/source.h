/*
 * A source is where a copy's bytes come from, behind a small vtable (curl
 * style) so that file://, s3://, oci:// and test fakes share one fill path.
 *
 * list() returns a finalized listing. transfer() fetches the parts the store
 * asks for (byte ranges of listed objects, in the sink) in any order and with
 * any parallelism: it writes each part with pwrite at its offset into the fd
 * the sink gives, calls done() when the part is whole, and adds bytes to
 * p->bytes_done as they land (so a 10 GiB file shows progress). It must fail
 * with -ESTALE when an object no longer matches the listing (the copy would
 * mix versions).
 * More: docs/internals/cache.md.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "base/cksum.h"
#include "base/error.h"
#include "cache/listing.h"

struct fill_progress {
    _Atomic uint64_t bytes_done;    /* in the copy so far, resumed bytes included */
    _Atomic uint64_t files_done;
    _Atomic uint64_t bytes_resumed; /* found whole from an earlier, interrupted fill */
    _Atomic uint64_t retries;       /* requests tried again (SlowDown, resets, ...) */
    _Atomic uint64_t files_checksummed; /* whole files checked against the source's checksum */
    _Atomic uint64_t bytes_total;   /* set when the listing is known; read by status while the fill runs */
    _Atomic uint64_t files_total;
};

/* One byte range of one listed object. */
struct fill_part {
    size_t file;          /* index in the listing */
    uint64_t off, len;
};

/* The store's side of a fill (fill.c); fd() and done() are thread-safe. */
struct fill_sink {
    const struct fill_part *parts;
    size_t n;
    int (*fd)(struct fill_sink *k, size_t part, struct wc_error *e);   /* write part here */
    int (*done)(struct fill_sink *k, size_t part, struct wc_error *e); /* all of part is written */
    /* the source's checksum of a whole file, when it learns it on the way */
    void (*expect)(struct fill_sink *k, size_t file, const struct cksum *c);
    /* the CRC64NVME of a part's bytes, when the source computed it on the way
     * (before done()): the store combines them instead of reading the file back */
    void (*part_crc)(struct fill_sink *k, size_t part, uint64_t crc64nvme);
};

struct source;

/* What lay_out writes with: room() claims store space before bytes more
 * are written, and charged counts what of it is used since (the store
 * counts the tree's files itself, once it is made). */
struct source_layout {
    int (*room)(void *ctx, uint64_t bytes, struct wc_error *e);
    void *ctx;
    const atomic_int *cancel;
    _Atomic uint64_t charged;
};

/* One listed object: its key relative to the source (through pathkey_check),
 * size and version tag. A negative return stops the listing with that value. */
typedef int (*source_object_fn)(void *ctx, const char *key, size_t len, uint64_t size, const char *etag);

struct source_ops {
    const char *scheme;
    /* Hands every object to fn, until the end, cancel, the listing deadline
     * (source_options.list_timeout_s: -ETIMEDOUT), or fn's error. */
    int (*list)(struct source *s, source_object_fn fn, void *ctx, const atomic_int *cancel, struct wc_error *e);
    int (*transfer)(struct source *s, const struct listing *l, struct fill_sink *k, const atomic_int *cancel,
                    struct fill_progress *p, struct wc_error *e);
    /* optional: the checksum the source keeps for a whole object (alg
     * CKSUM_NONE: none); the store verifies each file against it */
    int (*checksum)(struct source *s, const struct listing_entry *ent, struct cksum *ret, struct wc_error *e);
    /* checksum() needs no I/O (oci://: the digest): the store asks it before
     * the transfer, and checks a file of many parts as they land in order
     * instead of reading it back whole when its last part is in */
    int checksum_known;
    /* optional: turns a partial copy whose every listed object is whole
     * into the tree pods see (oci://: applies its archive layers in order).
     * Returns 1 when it wrote the tree (the store then counts its files
     * and removes the staging directory below), 0 when the listing is the
     * tree. Run again over a tree it left half made (a kill), it gives the
     * same tree. */
    int (*lay_out)(struct source *s, const struct listing *l, int dirfd, struct source_layout *o, struct wc_error *e);
    const char *staging;  /* with lay_out: the top directory its objects are listed under */
    void (*free)(struct source *s);
};

struct source {
    const struct source_ops *ops;
    char *url;       /* normalized: scheme://…/ with exactly one trailing slash */
    char *identity;  /* what names the data (the endpoint too, for S3): content ids derive from it */
    char *region, *endpoint, *addressing; /* S3 options, NULL for file://; never secrets */
    int sorted;      /* list() gives keys in byte order (S3 general purpose buckets) */
};

/* The whole listing, sorted and checked (listing_finalize). */
int source_list(struct source *s, struct listing *ret, const atomic_int *cancel, struct wc_error *e);

/* What CreateVolume pins: digest, objects, bytes. In memory that does not
 * grow with the listing when the source lists in key order; stops as soon
 * as the bytes pass stop_above (when not 0), with over set. */
struct source_summary {
    char digest[LISTING_DIGEST_LEN + 1];
    uint64_t objects, bytes;
    int over;
};
int source_summarize(struct source *s, uint64_t stop_above, const atomic_int *cancel, struct source_summary *ret,
                     struct wc_error *e);

/* A source as a volume names it: where, and with whose credentials. It is
 * made once, from a StorageClass's parameters, a volume context or a fill
 * journal (the URL checked then: source_url_check), and carried by pointer.
 * Strings are borrowed; source_spec_dup makes an owned copy. */
struct source_spec {
    const char *url;
    const char *region, *endpoint, *addressing;                     /* S3; NULL: defaults */
    const char *access_key_id, *secret_access_key, *session_token;  /* the volume's Secret; NULL: the node's own */
    const char *username, *password;                                /* oci://: the volume's Secret; NULL: anonymous */
    const char *docker_config;                                      /* oci://: or a .dockerconfigjson holding them */
    /* file://: prefixes (comma-separated URLs) the directory must lie under
     * by its real path on this node when a fill opens it: a PVC's source,
     * kept under its class's pvcSourcePrefixes after CreateVolume looked
     * (a link on the way changed since must not lead it elsewhere). NULL: none */
    const char *within;
};

/* An owned copy in one allocation; source_spec_free wipes the secrets. */
struct source_spec *source_spec_dup(const struct source_spec *s);
void source_spec_free(struct source_spec *s);

/* What every source a process opens shares, made once (today the S3
 * layer's counters, request budget and credentials cache): no layer keeps
 * process state of its own outside one of these. */
struct source_env;
int source_env_new(struct source_env **ret);
void source_env_free(struct source_env *env);
/* The CAs a registry's certificate is checked against (SSL_CERT_FILE, as
 * OpenSSL and Go read it); NULL: the system's. */
const char *source_env_ca_file(const struct source_env *env);
/* Requests in flight all of the process's fills share; 0: no budget. */
void source_env_set_budget(struct source_env *env, unsigned connections);
/* Metrics (observe/metrics.h): ctx is the env. */
struct obs_text;
void source_env_collect(void *ctx, struct obs_text *t);

/* Parallel requests that reach gbps on S3, and the rate assumed when
 * nobody says (--s3-connections unset). */
unsigned source_connections_for_gbps(double gbps);
#define SOURCE_DEFAULT_GBPS 100

/* How this process runs fills: the same for every source it opens. */
struct source_tuning {
    struct source_env *env;  /* required for s3:// */
    unsigned connections;    /* parallel requests of one fill; 0: the default */
    unsigned stall_seconds;  /* S3: cut a transfer stalled this long (under 1 KiB/s); 0: 30 */
    unsigned list_timeout_s; /* the whole listing; 0: none */
    /* optional: where a file:// source really is, once opened, judged again
     * (the node's source policy) before a byte is read. The policy looked at
     * the path earlier; a directory swapped for a symlink since then must not
     * make the fill read elsewhere. real_url is file://<real path>/; narrow
     * is the opener's: an inline volume's (the narrower list). */
    int (*admit)(void *ctx, const char *real_url, int narrow, struct wc_error *e);
    void *admit_ctx;
    int narrow;
};

/* Checks the URL's form without touching the network or the disk: the one
 * check of a source URL, made where a spec is made. */
int source_url_check(const char *url, struct wc_error *e);
/* Opens spec (its URL already checked). */
int source_open(const struct source_spec *spec, const struct source_tuning *t, struct source **ret,
                struct wc_error *e);
/* What source_open's identity would be, without opening anything (no
 * credentials, no I/O): enough to find a ready copy by its content id. */
int source_identity(const struct source_spec *spec, char *out, size_t n, struct wc_error *e);
void source_free(struct source *s);
static inline void source_freep(struct source **s) { if (*s) source_free(*s); }
#define _cleanup_source_ __attribute__((cleanup(source_freep)))

/* The s3:// implementation (source_s3.c). */
int source_s3_open(const struct source_spec *spec, const struct source_tuning *t, struct source **ret,
                   struct wc_error *e);

/* The S3 layer's context of env (source_s3.c): for other AWS calls, ECR's token. */
struct s3_ctx;
struct s3_ctx *source_env_s3(struct source_env *env);

/* 1 when a source of url, brought no Secret, uses the node's own AWS
 * credentials: s3://, and oci:// of an ECR registry. */
int source_uses_node_credentials(const char *url);

/* The oci:// implementation (source_oci.c). */
int source_oci_open(const struct source_spec *spec, const struct source_tuning *t, struct source **ret,
                    struct wc_error *e);

/* The file:// implementation (source_file.c). */
int source_file_open(const struct source_spec *spec, const struct source_tuning *t, struct source **ret,
                     struct wc_error *e);
int source_file_url_check(const char *url, struct wc_error *e);
