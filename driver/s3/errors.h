/*
 * S3 error responses: what the body said (parsed tolerantly: a proxy's HTML
 * page is no S3 error), and what it means for the admin, as one message a
 * cluster admin can act on plus the errno that rpc/status.c maps to the
 * right gRPC code. errors.c parses; advice.c judges and words it.
 */
#pragma once

#include <stddef.h>

#include "base/error.h"
#include "s3/xml.h"

/* What an S3 error response said. Every string is printable ASCII (anything
 * else escaped as \xNN) and "" when absent; elements that can carry request
 * material (StringToSign, CanonicalRequest, AWSAccessKeyId, ...) are never
 * kept, and a Message that quotes credentials is withheld. */
struct s3_error_info {
    long http_status;
    char code[64];
    char message[320];
    char region[64];        /* <Region>, or derived from an AWS <Endpoint> */
    char endpoint[128];
    char bucket[80];        /* <BucketName> or <Bucket> */
    char key[160];
    char request_id[80];
    char host_id[160];      /* x-amz-id-2: AWS support asks for both ids */
};

/* Never fails: an empty, truncated or non-XML body (a proxy's HTML page)
 * leaves only the HTTP status. Returns 1 when the body was an S3 <Error>
 * with a <Code>, else 0. */
int s3_parse_error(const char *body, size_t len, long http_status, struct s3_error_info *ret);

/* The negative errno for rpc/status.c: -EACCES (denied, bad or expired
 * credentials, node clock), -EINVAL (no such bucket, wrong region, archived
 * object: a person must fix the source), -ESTALE (object deleted, replaced or
 * shortened since the listing), -EAGAIN (SlowDown, 5xx: retry), -EOPNOTSUPP
 * (the endpoint lacks the API), -ENOENT (a bare 404), else -EIO. */
/* 1 when S3 asked to slow down: SlowDown, TooManyRequests, ServiceUnavailable
 * ("reduce your request rate") or a 429; not a 503 page without an S3 error
 * (a load balancer's), which is an outage, not a rate. */
int s3_error_throttled(const struct s3_error_info *ei);
int s3_error_errno(const struct s3_error_info *ei);

/* One line for kubectl describe: "<Code>: <op> on s3://bucket/key <what
 * happened> — <what to check>", then what S3 said and its request id. op is
 * the IAM action ("s3:GetObject"); key may be NULL. Cut to fit n. Returns
 * s3_error_errno(ei), so a caller can `return wc_err(e, r, "%s", msg)`. */
int s3_error_message(const struct s3_error_info *ei, const char *op, const char *bucket, const char *key, char *out,
                     size_t n);
