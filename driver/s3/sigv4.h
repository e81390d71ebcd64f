/*
 * AWS Signature Version 4, for S3 and the few other AWS endpoints we call
 * (STS). A pure function of the request, the credentials, the region, the
 * service and the time: no I/O, no clock, no curl. That keeps it testable
 * byte for byte against the published AWS vectors, and lets the curl-based
 * client, the credential chain and the fakes share one signer.
 *
 * Why our own: a few hundred lines against a stable, fully specified
 * algorithm; an SDK would bring a C++ or CRT dependency tree to a node
 * plugin for this one function.
 *
 * The caller gives the path exactly as it will be sent, already URI-encoded
 * the S3 way (sigv4_uri_encode with keep_slash): S3 neither decodes nor
 * normalises paths ("//a/./b" is a different key from "/a/b"), so the
 * signer refuses a path that is not in that form instead of guessing. The
 * query may be given encoded or not; it is decoded and re-encoded, so
 * "a b" and "a%20b" sign alike. The signer adds x-amz-date and, with
 * temporary credentials, x-amz-security-token; for service "s3" it also
 * signs x-amz-content-sha256 (S3 requires it). The caller sends what
 * struct sigv4_result holds, plus its own headers, unchanged.
 *
 * Secrets (the secret key, the session token) never appear in an error
 * message, and neither do header values. The canonical request does
 * contain the session token: never log it as is.
 */
#pragma once

#include <stddef.h>
#include <time.h>

#include "base/error.h"

struct sigv4_header {
    const char *name;  /* any case; canonicalised to lower case */
    const char *value; /* trimmed, inner runs of blanks collapsed; repeated names are joined with ',' */
};

struct sigv4_request {
    const char *method;                 /* "GET" */
    const char *path;                   /* "/bucket/key%20with%20spaces", encoded as sent; NULL or "" is "/" */
    const char *query;                  /* "list-type=2&prefix=a%2Fb", raw or encoded; NULL for none */
    const struct sigv4_header *headers; /* must include host; not x-amz-date, x-amz-security-token, authorization */
    size_t n_headers;
    const char *payload_sha256;         /* 64 lower-case hex, or "UNSIGNED-PAYLOAD" (or a STREAMING-* literal) */
};

struct sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL (or "") unless temporary credentials */
};

#define SIGV4_AUTH_MAX 1024
#define SIGV4_DATE_LEN 16     /* 20130524T000000Z */
#define SIGV4_PAYLOAD_MAX 64  /* longest payload hash value we accept */

/* Headers to send with the request, besides the caller's own. */
struct sigv4_result {
    char amz_date[SIGV4_DATE_LEN + 1];            /* x-amz-date */
    char authorization[SIGV4_AUTH_MAX];           /* Authorization */
    char content_sha256[SIGV4_PAYLOAD_MAX + 1];   /* x-amz-content-sha256; "" when it was not signed */
    const char *security_token;                   /* x-amz-security-token, or NULL; points into the
                                                     credentials, so valid only as long as they are */
    char *canonical_request;                      /* for tests and debugging (see above about logging) */
    char *string_to_sign;                         /* both freed by sigv4_result_free */
};

/* Signs rq as of `now`. Returns 0 and fills *ret, or a negative errno-style
 * code (-EINVAL for a request or credentials that cannot be signed, -EACCES
 * for missing credentials, -ENAMETOOLONG when the Authorization value would
 * not fit, -ENOMEM, -EIO if OpenSSL fails) with e set; *ret is written only
 * on success. */
int sigv4_sign(const struct sigv4_request *rq, const struct sigv4_credentials *cr, const char *region,
               const char *service, time_t now, struct sigv4_result *ret, struct wc_error *e);
void sigv4_result_free(struct sigv4_result *r);

/* S3 URI encoding: unreserved characters (A-Z a-z 0-9 - . _ ~) kept, every
 * other byte %XX in upper case; '/' kept when keep_slash (paths), encoded
 * otherwise (query keys and values). Locale-independent. -ENAMETOOLONG if
 * out (n bytes, NUL included) is too small. */
int sigv4_uri_encode(const char *in, int keep_slash, char *out, size_t n);
