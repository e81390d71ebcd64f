/* See params.h. */
#include "csi/params.h"
#include "base/macros.h"
#include "cache/listing.h"
#include "cache/source.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

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
        return wc_err(e, -EINVAL, "%s sourceChangePolicy: \"%.100s\" is not valid; use Fail or Follow", where, v);
    return 0;
}

int params_parse(const struct kv *kv, size_t n, struct volume_params *ret, struct wc_error *e)
{
    struct volume_params p = {.policy = CHANGE_FAIL};
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key, *v = kv[i].value ? kv[i].value : "";
        int r = 0;
        if (streq(k, "source")) {
            p.source = v;
            r = source_url_check(v, e);
            if (r < 0)
                return wc_err_prefix(e, "StorageClass parameter source: ");
        } else if (streq(k, "sourceChangePolicy")) {
            r = parse_policy("StorageClass parameter", v, &p.policy, e);
        } else if (!param_key_is_kubernetes(k)) {
            return wc_err(e, -EINVAL, "unknown StorageClass parameter \"%.100s\"; warmcache knows: source, sourceChangePolicy", k);
        }
        if (r < 0)
            return r;
    }
    if (!p.source || !*p.source)
        return wc_err(e, -EINVAL, "StorageClass parameter source is required, e.g. source: file:///mnt/fsx/models/llama/");
    *ret = p;
    return 0;
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
            c.source = v;
            if ((r = source_url_check(v, e)) < 0)
                return wc_err_prefix(e, "volume attribute source: ");
        } else if (streq(k, CTX_POLICY)) {
            r = parse_policy("volume attribute", v, &c.policy, e);
        } else if (streq(k, CTX_DIGEST)) {
            if (!is_hex(v, LISTING_DIGEST_LEN))
                return wc_err(e, -EINVAL, "volume attribute %s must be 64 lower-case hex digits", CTX_DIGEST);
            c.digest = v;
        } else if (streq(k, CTX_OBJECTS)) {
            r = parse_u64(k, v, &c.objects, e);
        } else if (streq(k, CTX_BYTES)) {
            r = parse_u64(k, v, &c.bytes, e);
        } else if (!param_key_is_kubernetes(k)) {
            return wc_err(e, -EINVAL, "unknown volume attribute \"%.100s\"; warmcache knows: %s, %s, %s, %s, %s", k,
                          CTX_SOURCE, CTX_POLICY, CTX_DIGEST, CTX_OBJECTS, CTX_BYTES);
        }
        if (r < 0)
            return r;
    }
    if (!c.source)
        return wc_err(e, -EINVAL, "the volume has no source attribute: it was not created by warmcache, "
                                  "or a static PV is missing volumeAttributes.source");
    *ret = c;
    return 0;
}
