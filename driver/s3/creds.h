/*
 * Where AWS credentials come from, in the order the AWS SDKs use and EKS
 * users expect:
 *
 *   1. the volume's node-stage (or provisioner) Secret: awsAccessKeyId, ...
 *   2. the plugin's environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 *      AWS_SESSION_TOKEN
 *   3. IRSA: AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, exchanged with STS
 *      AssumeRoleWithWebIdentity (the token file is re-read each time: the
 *      kubelet rotates it)
 *   4. EKS Pod Identity (and ECS): AWS_CONTAINER_CREDENTIALS_FULL_URI with
 *      the token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
 *   5. the instance profile, through IMDSv2 (a session token first)
 *
 * Temporary credentials (3-5) are cached in the S3 context's creds_cache and
 * fetched again five minutes before they expire, so a fill that runs for an hour keeps signing
 * with valid ones. Endpoints can be moved for tests and private networks
 * with the SDKs' variables: AWS_ENDPOINT_URL_STS, AWS_EC2_METADATA_SERVICE_ENDPOINT.
 */
#pragma once

#include <pthread.h>
#include <time.h>

#include "base/error.h"

#define CREDS_FIELD_MAX 2048

struct creds {
    char access_key_id[128];
    char secret_access_key[256];
    char session_token[CREDS_FIELD_MAX];
    time_t expires;     /* 0: does not expire */
    const char *source; /* "secret", "environment", "irsa", "pod-identity", "instance-profile" */
};

/* Static credentials given by the volume, or NULL: the chain from step 2. */
struct creds_static {
    const char *access_key_id, *secret_access_key, *session_token;
};

/* The temporary credentials of steps 3-5, shared by every client of one
 * S3 context (s3_ctx). */
struct creds_cache {
    pthread_mutex_t lock;
    struct creds cached;
};
void creds_cache_init(struct creds_cache *c);
void creds_cache_fini(struct creds_cache *c);

/* Fills *ret with usable credentials; region picks the STS endpoint. On
 * failure, -EACCES with what was tried and what to set up. */
int creds_get(struct creds_cache *cache, const struct creds_static *given, const char *region, struct creds *ret,
              struct wc_error *e);

/* Wipes the secrets in *c. */
void creds_clear(struct creds *c);

/* Parsers of the providers' answers, exposed for the unit tests and fuzzing. */
int creds_parse_sts(const char *body, size_t len, struct creds *ret, struct wc_error *e);
int creds_parse_json(const char *body, size_t len, struct creds *ret, struct wc_error *e);
