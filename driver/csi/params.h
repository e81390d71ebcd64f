/*
 * StorageClass parameters and volume context: both are untrusted text maps.
 *
 * Parameters (what a user writes in a StorageClass) are parsed strictly: an
 * unknown key or a bad value is an INVALID_ARGUMENT that names the key, so a
 * typo shows up on the PVC instead of being ignored. Keys that Kubernetes
 * itself adds (csi.storage.k8s.io/..., storage.kubernetes.io/...) pass.
 *
 * The volume context is what CreateVolume pins for the nodes: the source, the
 * listing digest, object count and bytes. A node re-lists and compares.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/source.h"
#include "rpc/pbutil.h" /* struct kv */

enum change_policy { CHANGE_FAIL, CHANGE_FOLLOW };

struct volume_params {
    struct source_spec src;      /* source, region, endpoint, addressingStyle (borrowed from the input) */
    enum change_policy policy;
    const char *prewarm;         /* a node label selector, or NULL */
    bool allow_plain_http;       /* allowPlainHTTP: credentials may go to an http:// endpoint */
    uint64_t scratch_bytes;      /* scratchSize: bound of a writable layer; 0: the volume's capacity */
    const char *pvc_overrides;   /* pvcOverrides: parameters a PVC annotation may set (comma-separated) */
    const char *pvc_source_prefixes; /* pvcSourcePrefixes: where a PVC's source may point; NULL: under source */
};

int params_parse(const struct kv *kv, size_t n, struct volume_params *ret, struct wc_error *e);
/* The same, with where naming whence the keys came in every message
 * ("StorageClass parameter ", "PVC ns/a: annotation warmcache.csi.dev/"). */
int params_parse_from(const struct kv *kv, size_t n, const char *where, struct volume_params *ret, struct wc_error *e);

/* Volume context keys written by CreateVolume and read by the node. */
#define CTX_SOURCE "source"
#define CTX_POLICY "sourceChangePolicy"
#define CTX_DIGEST "listingDigest"
#define CTX_OBJECTS "objectCount"
#define CTX_BYTES "totalBytes"
#define CTX_REGION "region"
#define CTX_ENDPOINT "endpoint"
#define CTX_ADDRESSING "addressingStyle"
#define CTX_PREWARM "prewarm"
#define CTX_PLAIN_HTTP "allowPlainHTTP"
/* a PVC's own file:// source: the class's prefixes it must stay under (source_spec.within) */
#define CTX_WITHIN "sourceWithin"
#define CTX_SCRATCH "scratchBytes"
/* StorageClass parameters that stay with the controller */
#define PARAM_SCRATCH "scratchSize"
#define PARAM_PVC_OVERRIDES "pvcOverrides"
#define PARAM_PVC_PREFIXES "pvcSourcePrefixes"
/* Every StorageClass parameter, for messages (and the chart's schema test). */
#define PARAMS_KNOWN "source, sourceChangePolicy, region, endpoint, addressingStyle, prewarm, allowPlainHTTP, " \
                     "scratchSize, pvcOverrides, pvcSourcePrefixes"
/* Kubernetes' own keys that warmcache reads (they pass validation as theirs) */
#define K8S_PVC_NAME "csi.storage.k8s.io/pvc/name"
#define K8S_PVC_NAMESPACE "csi.storage.k8s.io/pvc/namespace"
#define K8S_PV_NAME "csi.storage.k8s.io/pv/name"
#define K8S_POD_NAME "csi.storage.k8s.io/pod.name"
#define K8S_POD_NAMESPACE "csi.storage.k8s.io/pod.namespace"
#define K8S_POD_UID "csi.storage.k8s.io/pod.uid"

/* Secrets (CSI node-stage / provisioner secrets) carrying S3 credentials. */
#define SECRET_ACCESS_KEY_ID "awsAccessKeyId"
#define SECRET_SECRET_ACCESS_KEY "awsSecretAccessKey"
#define SECRET_SESSION_TOKEN "awsSessionToken"
/* ... and a registry's user name and password (oci://) */
#define SECRET_USERNAME "username"
#define SECRET_PASSWORD "password"
#define SECRET_DOCKER_CONFIG ".dockerconfigjson" /* or an image pull Secret's docker config */

struct volume_context {
    struct source_spec src;      /* source, region, endpoint, addressingStyle (borrowed) */
    enum change_policy policy;
    const char *digest;          /* NULL: not pinned (a hand-written static PV) */
    uint64_t objects, bytes;
    /* from csi-provisioner --extra-create-metadata, copied by CreateVolume */
    const char *pvc_name, *pvc_namespace, *pv_name;
    /* from the kubelet with podInfoOnMount (NodePublishVolume only) */
    const char *pod_name, *pod_namespace, *pod_uid;
    const char *prewarm;
    bool allow_plain_http;
    uint64_t scratch_bytes;      /* bound of a writable layer; 0: not pinned (the node's default) */
};

int volctx_parse(const struct kv *kv, size_t n, struct volume_context *ret, struct wc_error *e);

/* src with the credentials of a CSI secrets map (a protobuf map field):
 * awsAccessKeyId, awsSecretAccessKey, awsSessionToken; none: the node's own. */
struct source_spec source_with_secrets(const struct source_spec *src, void *const *secrets, size_t n);
/* 1 if the secrets carry the credentials a source of url uses (S3's access
 * key id; a registry's username or docker config for oci://): else it uses
 * the node's own (S3, ECR) or none. */
int secrets_have_credentials(const char *url, void *const *secrets, size_t n);

const char *change_policy_name(enum change_policy p);

/* 1 if the key is added by Kubernetes or its sidecars, not by a user. */
int param_key_is_kubernetes(const char *key);

/* PVC-level overrides: with csi-provisioner's --extra-create-metadata the
 * parameters name the PVC; its annotations (ann, as the API server sent them:
 * untrusted JSON) warmcache.csi.dev/<parameter> replace the StorageClass's
 * parameter of that name, but only the parameters the class lists in
 * pvcOverrides, and a source only under pvcSourcePrefixes (by default the
 * class's own source). endpoint and allowPlainHTTP are never taken from a
 * PVC: the class's credentials would follow them. A mistake or a refusal is
 * an error naming the PVC, the annotation and the rule (users see it as a
 * ProvisioningFailed event on their PVC). class: the class's parameters as
 * parsed. *ret_merged: NULL when nothing changes, else the merged
 * parameters (n updated), whose strings point into ann and kv; free() it. */
#define OVERRIDE_PREFIX "warmcache.csi.dev/"
int params_pvc_overrides(json_t *ann, const char *ns, const char *name, const struct volume_params *class,
                         const struct kv *kv, size_t *n, struct kv **ret_merged, struct wc_error *e);
