/*
 * What an S3 error means for the admin (see errors.h): the errno that
 * rpc/status.c maps to a gRPC code, and one line for kubectl describe that
 * says what happened and what to check.
 */
#include "s3/errors.h"
#include "base/macros.h"
#include "base/pathkey.h"

#include <stdio.h>
#include <string.h>

/* ---- what to tell the admin --------------------------------------------------- */

enum fault {
    FAULT_OTHER,
    FAULT_DENIED,
    FAULT_CREDENTIALS,
    FAULT_EXPIRED,
    FAULT_CLOCK,
    FAULT_NO_BUCKET,
    FAULT_BUCKET_NAME,
    FAULT_REGION,
    FAULT_DELETED,
    FAULT_REPLACED,
    FAULT_SHORTER,
    FAULT_ARCHIVED,
    FAULT_SLOW_DOWN,
    FAULT_SERVER,
    FAULT_UNSUPPORTED,
    FAULT_NOT_FOUND,
};

static const struct {
    const char *code;
    enum fault fault;
} codes[] = {
    {"AccessDenied", FAULT_DENIED},
    {"AllAccessDisabled", FAULT_DENIED},
    {"InvalidAccessKeyId", FAULT_CREDENTIALS},
    {"SignatureDoesNotMatch", FAULT_CREDENTIALS},
    {"InvalidToken", FAULT_CREDENTIALS},
    {"InvalidSecurity", FAULT_CREDENTIALS},
    {"ExpiredToken", FAULT_EXPIRED},
    {"TokenRefreshRequired", FAULT_EXPIRED},
    {"RequestTimeTooSkewed", FAULT_CLOCK},
    {"NoSuchBucket", FAULT_NO_BUCKET},
    {"InvalidBucketName", FAULT_BUCKET_NAME},
    {"AuthorizationHeaderMalformed", FAULT_REGION},
    {"PermanentRedirect", FAULT_REGION},
    {"IllegalLocationConstraintException", FAULT_REGION},
    {"NoSuchKey", FAULT_DELETED},
    {"PreconditionFailed", FAULT_REPLACED},
    {"InvalidRange", FAULT_SHORTER},
    {"InvalidObjectState", FAULT_ARCHIVED},
    {"SlowDown", FAULT_SLOW_DOWN},
    {"TooManyRequests", FAULT_SLOW_DOWN},
    {"ServiceUnavailable", FAULT_SERVER},
    {"InternalError", FAULT_SERVER},
    {"RequestTimeout", FAULT_SERVER},
    {"OperationAborted", FAULT_SERVER},
    {"TemporaryRedirect", FAULT_SERVER},
    {"NotImplemented", FAULT_UNSUPPORTED},
};

static enum fault classify(const struct s3_error_info *ei)
{
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
        if (streq(ei->code, codes[i].code))
            return codes[i].fault;
    /* An unknown code, or none (HEAD, a proxy's page): the status decides. */
    long s = ei->http_status;
    if (s == 301)
        return FAULT_REGION;
    if (s == 307)
        return FAULT_SERVER;
    if (s == 401 || s == 403)
        return FAULT_DENIED;
    if (s == 404)
        return FAULT_NOT_FOUND;
    if (s == 412)
        return FAULT_REPLACED;
    if (s == 416)
        return FAULT_SHORTER;
    if (s == 429)
        return FAULT_SLOW_DOWN;
    if (s == 501)
        return FAULT_UNSUPPORTED;
    if (s >= 500 && s <= 599)
        return FAULT_SERVER;
    return FAULT_OTHER;
}

int s3_error_throttled(const struct s3_error_info *ei)
{
    return classify(ei) == FAULT_SLOW_DOWN || streq(ei->code, "ServiceUnavailable");
}

int s3_error_errno(const struct s3_error_info *ei)
{
    switch (classify(ei)) {
    case FAULT_DENIED:
    case FAULT_CREDENTIALS:
    case FAULT_EXPIRED:
    case FAULT_CLOCK:
        return -EACCES;
    case FAULT_NO_BUCKET:
    case FAULT_BUCKET_NAME:
    case FAULT_REGION:
    case FAULT_ARCHIVED: /* a person must restore it; not ESTALE, which means "the source changed" */
        return -EINVAL;
    case FAULT_DELETED:
    case FAULT_REPLACED:
    case FAULT_SHORTER:
        return -ESTALE;
    case FAULT_SLOW_DOWN:
    case FAULT_SERVER:
        return -EAGAIN;
    case FAULT_UNSUPPORTED:
        return -EOPNOTSUPP;
    case FAULT_NOT_FOUND:
        return -ENOENT;
    case FAULT_OTHER:
        break;
    }
    return -EIO;
}

/* "<what happened> — <what to check>" for one fault. */
static void advice(const struct s3_error_info *ei, enum fault f, const char *op, const char *qbucket, char *out,
                   size_t n)
{
    switch (f) {
    case FAULT_DENIED:
        snprintf(out, n, "denied — check the IAM role of the warmcache service account that asked (the controller's "
                         "when a PVC is created, the node plugin's when a pod mounts; IRSA or Pod Identity), or the "
                         "Secret's user: it needs %s here, the bucket policy must allow it, and SSE-KMS objects need "
                         "kms:Decrypt", op);
        break;
    case FAULT_CREDENTIALS:
        snprintf(out, n, "refused: the credentials are wrong (unknown access key id or wrong secret key) — check "
                         "the Secret the StorageClass names (provisioner or node-stage secret), or the IRSA / Pod "
                         "Identity setup of the warmcache service accounts");
        break;
    case FAULT_EXPIRED:
        snprintf(out, n, "refused: the credentials have expired — a session token in a Secret is used as it is "
                         "(rotate the Secret, or give it a key without one); credentials warmcache fetches itself (IRSA, "
                         "Pod Identity, instance profile) are refreshed before expiry, so then check the node's clock");
        break;
    case FAULT_CLOCK:
        snprintf(out, n, "refused: the node's clock is too far from S3's — fix time sync (chrony/NTP) on the node");
        break;
    case FAULT_NO_BUCKET:
        snprintf(out, n, "failed: bucket \"%s\" does not exist — check the source (and endpoint) in the StorageClass",
                 qbucket);
        break;
    case FAULT_BUCKET_NAME:
        snprintf(out, n, "failed: \"%s\" is not a valid bucket name — check the source in the StorageClass", qbucket);
        break;
    case FAULT_REGION:
        if (ei->region[0])
            snprintf(out, n, "failed: the bucket is in region %s, not the one warmcache signed for — set the "
                             "StorageClass parameter region to %s",
                     ei->region, ei->region);
        else if (ei->endpoint[0])
            snprintf(out, n, "failed: the bucket is in another region (S3 points to %s) — set the StorageClass "
                             "parameter region to the bucket's region",
                     ei->endpoint);
        else
            snprintf(out, n, "failed: the bucket is in another region — set the StorageClass parameter region to the "
                             "bucket's region");
        break;
    case FAULT_DELETED:
        snprintf(out, n, "failed: the object was deleted after the source was listed — the source changed under the "
                         "volume");
        break;
    case FAULT_REPLACED:
        snprintf(out, n, "failed: the object was overwritten after the source was listed (its ETag no longer "
                         "matches) — the source changed under the volume");
        break;
    case FAULT_SHORTER:
        snprintf(out, n, "failed: the object is shorter than when the source was listed — the source changed under "
                         "the volume");
        break;
    case FAULT_ARCHIVED:
        snprintf(out, n, "failed: the object is archived (S3 Glacier Flexible Retrieval / Deep Archive, or an "
                         "archive access tier) — restore it, or copy it to a readable storage class");
        break;
    case FAULT_SLOW_DOWN:
        snprintf(out, n, "throttled: S3 asked to slow down (HTTP %ld) — the requests to this prefix are over S3's "
                         "rate (many nodes filling one prefix at once meet it together); warmcache lowers its rate "
                         "and retries while the fill makes progress", ei->http_status);
        break;
    case FAULT_SERVER:
        snprintf(out, n, "failed on the server side (HTTP %ld) — warmcache retries it with backoff", ei->http_status);
        break;
    case FAULT_UNSUPPORTED:
        snprintf(out, n, "failed: the endpoint does not implement this request — check that it is S3-compatible "
                         "(ListObjectsV2, ranged GET with If-Match)");
        break;
    case FAULT_NOT_FOUND:
        snprintf(out, n, "failed: not found (HTTP 404) — check the bucket and prefix in the StorageClass source");
        break;
    case FAULT_OTHER:
        snprintf(out, n, "failed (HTTP %ld)", ei->http_status);
        break;
    }
}

int s3_error_message(const struct s3_error_info *ei, const char *op, const char *bucket, const char *key, char *out,
                     size_t n)
{
    op = op ? op : "request";
    bucket = bucket ? bucket : "";
    char qbucket[256], qkey[512], label[80], what[512], said[sizeof(ei->message) + 16] = "",
        rid[sizeof(ei->request_id) + 16] = "";
    pathkey_quote(bucket, strlen(bucket), qbucket, sizeof(qbucket));
    if (key && *key)
        pathkey_quote(key, strlen(key), qkey, sizeof(qkey));
    if (ei->code[0])
        snprintf(label, sizeof(label), "%s", ei->code);
    else
        snprintf(label, sizeof(label), "HTTP %ld", ei->http_status);
    enum fault f = classify(ei);
    advice(ei, f, op, qbucket, what, sizeof(what));
    if (ei->message[0])
        snprintf(said, sizeof(said), "; S3 said \"%s\"", ei->message);
    if (ei->request_id[0])
        snprintf(rid, sizeof(rid), " (request id %s)", ei->request_id);
    if (n > 0)
        snprintf(out, n, "%s: %s on s3://%s%s%s %s%s%s", label, op, qbucket, key && *key ? "/" : "",
                 key && *key ? qkey : "", what, said, rid);
    return s3_error_errno(ei);
}

