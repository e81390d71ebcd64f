/* See params.h. */
#include "csi/params.h"
#include "kube/selector.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/units.h"
#include "cache/listing.h"
#include "cache/source.h"
#include "rpc/pbutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int param_key_is_kubernetes(const char *key)
{
    return strncmp(key, "csi.storage.k8s.io/", 19) == 0 || strncmp(key, "storage.kubernetes.io/", 22) == 0;
}

const char *change_policy_name(enum change_policy p)
{
    return p == CHANGE_FOLLOW ? "Follow" : "Fail";
}

static int parse_policy(const char *where, const char *v, enum change_policy *ret, struct wc_error *e)
{
    if (streq(v, "Fail"))
        *ret = CHANGE_FAIL;
    else if (streq(v, "Follow"))
        *ret = CHANGE_FOLLOW;
    else
        return wc_err(e, -EINVAL, "%ssourceChangePolicy: \"%.100s\" is not valid; use Fail or Follow", where, v);
    return 0;
}

/* region, endpoint, addressingStyle: shared by parameters and volume context. */
static int parse_s3_key(const char *where, const char *k, const char *v, struct source_spec *s3, struct wc_error *e)
{
    if (streq(k, CTX_REGION)) {
        size_t n = strlen(v);
        if (n == 0 || n > 32 || strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-") != n)
            return wc_err(e, -EINVAL, "%sregion: \"%.40s\" is not an AWS region name (e.g. us-east-1)", where, v);
        s3->region = v;
    } else if (streq(k, CTX_ENDPOINT)) {
        if ((strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) || strlen(v) > 200 ||
            strpbrk(v, " \t\r\n?#"))
            return wc_err(e, -EINVAL, "%sendpoint: \"%.100s\" must be an http:// or https:// URL with no query",
                          where, v);
        s3->endpoint = v;
    } else if (streq(k, CTX_ADDRESSING)) {
        if (!streq(v, "path") && !streq(v, "virtual"))
            return wc_err(e, -EINVAL, "%saddressingStyle: \"%.40s\" is not valid; use path or virtual", where, v);
        s3->addressing = v;
    } else {
        return 1; /* not an S3 key */
    }
    return 0;
}

static int parse_bool(const char *where, const char *k, const char *v, bool *ret, struct wc_error *e)
{
    if (streq(v, "true"))
        *ret = true;
    else if (streq(v, "false"))
        *ret = false;
    else
        return wc_err(e, -EINVAL, "%s%s: \"%.40s\" is not valid; use \"true\" or \"false\"", where, k, v);
    return 0;
}

/* pvcOverrides: a comma-separated list of parameters a PVC may set. */
static int check_override_keys(const char *v, struct wc_error *e)
{
    static const char *const may[] = {CTX_SOURCE, CTX_POLICY, CTX_REGION, CTX_ADDRESSING, CTX_PREWARM};
    char buf[256];
    if (strlen(v) >= sizeof(buf))
        return wc_err(e, -EINVAL, "StorageClass parameter " PARAM_PVC_OVERRIDES " is too long");
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        int ok = 0;
        for (size_t i = 0; i < ARRAY_SIZE(may); i++)
            ok = ok || streq(t, may[i]);
        if (streq(t, CTX_ENDPOINT) || streq(t, CTX_PLAIN_HTTP))
            return wc_err(e, -EINVAL, "StorageClass parameter " PARAM_PVC_OVERRIDES ": %s is never taken from a PVC: "
                          "the class's credentials would go wherever a PVC author pointed them", t);
        if (!ok)
            return wc_err(e, -EINVAL, "StorageClass parameter " PARAM_PVC_OVERRIDES ": \"%.60s\" cannot be set by a "
                          "PVC; it may name source, sourceChangePolicy, region, addressingStyle and prewarm", t);
    }
    return 0;
}

static int s3_keys_need_s3(const char *where, const struct source_spec *s3, struct wc_error *e)
{
    if ((s3->region || s3->endpoint || s3->addressing) && strncmp(s3->url, "s3://", 5) != 0)
        return wc_err(e, -EINVAL, "%sregion, endpoint and addressingStyle apply to s3:// sources only", where);
    return 0;
}

int params_parse_from(const struct kv *kv, size_t n, const char *where, struct volume_params *ret, struct wc_error *e)
{
    struct volume_params p = {.policy = CHANGE_FAIL};
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key, *v = kv[i].value ? kv[i].value : "";
        int r = 0;
        if (streq(k, "source")) {
            p.src.url = v;
            r = source_url_check(v, e);
            if (r < 0)
                return wc_err_prefix(e, "%ssource: ", where);
        } else if (streq(k, "sourceChangePolicy")) {
            r = parse_policy(where, v, &p.policy, e);
        } else if (streq(k, CTX_PREWARM)) {
            p.prewarm = v;
            if ((r = selector_check(v, e)) < 0)
                return wc_err_prefix(e, "%sprewarm: ", where);
        } else if (streq(k, CTX_PLAIN_HTTP)) {
            r = parse_bool(where, k, v, &p.allow_plain_http, e);
        } else if (streq(k, PARAM_SCRATCH)) {
            if (parse_bytes(v, &p.scratch_bytes) < 0 || p.scratch_bytes == 0)
                return wc_err(e, -EINVAL, "%s" PARAM_SCRATCH ": \"%.40s\" is not a size such as 10Gi or 500Mi",
                              where, v);
        } else if (streq(k, PARAM_PVC_OVERRIDES)) {
            p.pvc_overrides = v;
            r = check_override_keys(v, e);
        } else if (streq(k, PARAM_PVC_PREFIXES)) {
            p.pvc_source_prefixes = v;
        } else if ((r = parse_s3_key(where, k, v, &p.src, e)) <= 0) {
            /* an S3 key, parsed or refused */
        } else if (!param_key_is_kubernetes(k)) {
            return wc_err(e, -EINVAL, "unknown StorageClass parameter \"%.100s\"; warmcache knows: %s", k,
                          PARAMS_KNOWN);
        } else {
            r = 0;
        }
        if (r < 0)
            return r;
    }
    if (!p.src.url || !*p.src.url)
        return wc_err(e, -EINVAL, "StorageClass parameter source is required, e.g. source: file:///mnt/fsx/models/llama/");
    int r = s3_keys_need_s3(where, &p.src, e);
    if (r < 0)
        return r;
    *ret = p;
    return 0;
}

struct source_spec source_with_secrets(const struct source_spec *src, void *const *secrets, size_t n)
{
    struct source_spec s = *src;
    s.access_key_id = pbmap_get(secrets, n, SECRET_ACCESS_KEY_ID);
    s.secret_access_key = pbmap_get(secrets, n, SECRET_SECRET_ACCESS_KEY);
    s.session_token = pbmap_get(secrets, n, SECRET_SESSION_TOKEN);
    s.username = pbmap_get(secrets, n, SECRET_USERNAME);
    s.password = pbmap_get(secrets, n, SECRET_PASSWORD);
    s.docker_config = pbmap_get(secrets, n, SECRET_DOCKER_CONFIG);
    return s;
}

int secrets_have_credentials(const char *url, void *const *secrets, size_t n)
{
    /* the keys the source would use: a registry's username or docker
     * config for oci://, S3's access key for the rest (a registry's
     * username says nothing of whom an s3:// volume signs as) */
    if (strncmp(url, "oci://", 6) == 0) {
        const char *u = pbmap_get(secrets, n, SECRET_USERNAME), *d = pbmap_get(secrets, n, SECRET_DOCKER_CONFIG);
        return (u && *u) || (d && *d);
    }
    const char *k = pbmap_get(secrets, n, SECRET_ACCESS_KEY_ID);
    return k && *k;
}

int params_parse(const struct kv *kv, size_t n, struct volume_params *ret, struct wc_error *e)
{
    return params_parse_from(kv, n, "StorageClass parameter ", ret, e);
}

static int parse_u64(const char *key, const char *v, uint64_t *ret, struct wc_error *e)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-')
        return wc_err(e, -EINVAL, "volume attribute %s: \"%.40s\" is not a number", key, v);
    *ret = x;
    return 0;
}

static int is_hex(const char *s, size_t len)
{
    if (strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!strchr("0123456789abcdef", s[i]))
            return 0;
    return 1;
}

int volctx_parse(const struct kv *kv, size_t n, struct volume_context *ret, struct wc_error *e)
{
    struct volume_context c = {.policy = CHANGE_FAIL};
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key, *v = kv[i].value ? kv[i].value : "";
        int r = 0;
        if (streq(k, CTX_SOURCE)) {
            c.src.url = v;
            if ((r = source_url_check(v, e)) < 0)
                return wc_err_prefix(e, "volume attribute source: ");
        } else if (streq(k, CTX_POLICY)) {
            r = parse_policy("volume attribute ", v, &c.policy, e);
        } else if (streq(k, CTX_PREWARM)) {
            c.prewarm = v;
            if ((r = selector_check(v, e)) < 0)
                return wc_err_prefix(e, "volume attribute prewarm: ");
        } else if (streq(k, CTX_DIGEST)) {
            if (!is_hex(v, LISTING_DIGEST_LEN))
                return wc_err(e, -EINVAL, "volume attribute %s must be 64 lower-case hex digits", CTX_DIGEST);
            c.digest = v;
        } else if (streq(k, CTX_OBJECTS)) {
            r = parse_u64(k, v, &c.objects, e);
        } else if (streq(k, CTX_PLAIN_HTTP)) {
            r = parse_bool("volume attribute ", k, v, &c.allow_plain_http, e);
        } else if (streq(k, CTX_SCRATCH)) {
            r = parse_u64(k, v, &c.scratch_bytes, e);
        } else if (streq(k, CTX_BYTES)) {
            r = parse_u64(k, v, &c.bytes, e);
        } else if (streq(k, CTX_WITHIN)) {
            c.src.within = v;
        } else if ((r = parse_s3_key("volume attribute ", k, v, &c.src, e)) <= 0) {
            /* an S3 key, parsed or refused */
        } else if (param_key_is_kubernetes(k)) {
            if (streq(k, K8S_PVC_NAME))
                c.pvc_name = v;
            else if (streq(k, K8S_PVC_NAMESPACE))
                c.pvc_namespace = v;
            else if (streq(k, K8S_PV_NAME))
                c.pv_name = v;
            else if (streq(k, K8S_POD_NAME))
                c.pod_name = v;
            else if (streq(k, K8S_POD_NAMESPACE))
                c.pod_namespace = v;
            else if (streq(k, K8S_POD_UID))
                c.pod_uid = v;
        } else if (!param_key_is_kubernetes(k)) {
            return wc_err(e, -EINVAL, "unknown volume attribute \"%.100s\"; warmcache knows: %s, %s, %s, %s, %s, "
                          "%s, %s, %s, %s, %s, %s, %s", k, CTX_SOURCE, CTX_POLICY, CTX_DIGEST, CTX_OBJECTS, CTX_BYTES,
                          CTX_REGION, CTX_ENDPOINT, CTX_ADDRESSING, CTX_PREWARM, CTX_PLAIN_HTTP, CTX_SCRATCH,
                          CTX_WITHIN);
        } else {
            r = 0;
        }
        if (r < 0)
            return r;
    }
    if (!c.src.url)
        return wc_err(e, -EINVAL, "the volume has no source attribute: it was not created by warmcache, "
                                  "or a static PV is missing volumeAttributes.source");
    int r = s3_keys_need_s3("volume attributes: ", &c.src, e);
    if (r < 0)
        return r;
    *ret = c;
    return 0;
}


/* 1 if v is one of the comma-separated words of list. */
static int listed(const char *list, const char *v)
{
    size_t n = strlen(v);
    for (const char *t = list; t && *t;) {
        while (*t == ' ' || *t == ',')
            t++;
        size_t len = strcspn(t, ",");
        size_t end = len;
        while (end && t[end - 1] == ' ')
            end--;
        if (end == n && strncmp(t, v, n) == 0)
            return 1;
        t += len;
    }
    return 0;
}

/* Both oci:// on different registries: the class's Secret (a registry
 * password) would go to a host the PVC author chose. */
static int other_registry(const char *class_url, const char *url)
{
    if (strncmp(class_url, "oci://", 6) != 0 || strncmp(url, "oci://", 6) != 0)
        return 0;
    struct oci_like { const char *h; size_t n; } a = {class_url + 6, strcspn(class_url + 6, "/")},
                                                b = {url + 6, strcspn(url + 6, "/")};
    return a.n != b.n || strncasecmp(a.h, b.h, a.n) != 0;
}

/* A PVC's source under one of the class's prefixes (or its own source). */
static int source_under(const struct volume_params *class, const char *url)
{
    return fs_url_under_any(class->pvc_source_prefixes ? class->pvc_source_prefixes : class->src.url, url);
}

int params_pvc_overrides(json_t *ann, const char *ns, const char *name, const struct volume_params *class,
                         const struct kv *kv, size_t *n, struct kv **ret_merged, struct wc_error *e)
{
    *ret_merged = NULL;
    size_t extra = json_object_size(ann);
    if (extra == 0)
        return 0;
    struct kv *m = calloc(*n + extra, sizeof(*m));
    if (!m)
        return -ENOMEM;
    memcpy(m, kv, *n * sizeof(*m));
    size_t nm = *n;
    const char *k;
    json_t *v;
    json_object_foreach(ann, k, v) {
        if (strncmp(k, OVERRIDE_PREFIX, strlen(OVERRIDE_PREFIX)) != 0)
            continue;
        const char *param = k + strlen(OVERRIDE_PREFIX);
        if (!json_is_string(v)) {
            free(m);
            return wc_err(e, -EINVAL, "PVC %s/%s: annotation %.200s must be a string", ns, name, k);
        }
        if (!class->pvc_overrides || !listed(class->pvc_overrides, param)) {
            free(m);
            if (streq(param, CTX_ENDPOINT) || streq(param, CTX_PLAIN_HTTP))
                return wc_err(e, -EPERM, "PVC %s/%s: annotation %.200s is refused: %s is never taken from a PVC (the "
                              "class's credentials would follow it)", ns, name, k, param);
            return wc_err(e, -EPERM, "PVC %s/%s: annotation %.200s is refused: the StorageClass does not let PVCs "
                          "set %s; a cluster admin lists it in the class parameter " PARAM_PVC_OVERRIDES " (now: %s)",
                          ns, name, k, param, class->pvc_overrides ? class->pvc_overrides : "not set");
        }
        if (streq(param, CTX_SOURCE) && other_registry(class->src.url, json_string_value(v))) {
            free(m);
            return wc_err(e, -EPERM, "PVC %s/%s: annotation %.200s is refused: source %.200s names another registry "
                          "than the StorageClass's %.200s, and the class's Secret would go there; use a class of "
                          "that registry", ns, name, k, json_string_value(v), class->src.url);
        }
        if (streq(param, CTX_SOURCE) && !source_under(class, json_string_value(v))) {
            free(m);
            return wc_err(e, -EPERM, "PVC %s/%s: annotation %.200s is refused: source %.200s is not under the "
                          "StorageClass's " PARAM_PVC_PREFIXES " (%s)", ns, name, k, json_string_value(v),
                          class->pvc_source_prefixes ? class->pvc_source_prefixes : class->src.url);
        }
        size_t i = 0;
        while (i < nm && !streq(m[i].key, param))
            i++;
        m[i] = (struct kv){param, json_string_value(v)};
        if (i == nm)
            nm++;
    }
    if (nm == *n && memcmp(m, kv, *n * sizeof(*m)) == 0) {
        free(m);
        return 0;
    }
    *ret_merged = m;
    *n = nm;
    return 0;
}
