/*
 * AWS Signature Version 4, for S3. A pure function of the request, the
 * credentials, the region and the time: no I/O, so it is tested against the
 * published examples and reused by the curl-based client.
 *
 * The caller passes the path already URI-encoded as it will be sent (S3 does
 * not normalise paths, so neither do we) and the raw query string; the
 * signer builds the canonical request, the string to sign and the
 * Authorization header value. Secrets never appear in an error message.
 */
#pragma once

#include <stddef.h>
#include <time.h>

#include "base/error.h"

struct sigv4_header {
    const char *name;   /* any case; canonicalised to lower case */
    const char *value;  /* trimmed, inner runs of spaces collapsed */
};

struct sigv4_request {
    const char *method;            /* "GET" */
    const char *path;              /* "/bucket/key%20with%20spaces", already encoded */
    const char *query;             /* "list-type=2&prefix=a%2Fb" or NULL */
    const struct sigv4_header *headers; /* must include host; x-amz-date is added */
    size_t n_headers;
    const char *payload_sha256;    /* hex, or "UNSIGNED-PAYLOAD" */
};

struct sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;     /* NULL unless temporary credentials */
};

#define SIGV4_AUTH_MAX 1024

struct sigv4_result {
    char amz_date[17];              /* 20130524T000000Z */
    char authorization[SIGV4_AUTH_MAX];
    char *canonical_request;        /* for tests and debugging; free with sigv4_result_free */
    char *string_to_sign;
};

int sigv4_sign(const struct sigv4_request *rq, const struct sigv4_credentials *cr, const char *region,
               const char *service, time_t now, struct sigv4_result *ret, struct wc_error *e);
void sigv4_result_free(struct sigv4_result *r);

/* S3 URI encoding: unreserved characters (A-Z a-z 0-9 - . _ ~) kept, every
 * other byte %XX in upper case; '/' kept when keep_slash. -ENAMETOOLONG if
 * out is too small. */
int sigv4_uri_encode(const char *in, int keep_slash, char *out, size_t n);
