/* oci:// URLs: the distribution spec's grammar for repository names, tags
 * and digests, checked before anything is sent, so that a name never turns
 * into another path or host on the way into a request. */
#include "oci/oci.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static int lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

/* host[:port]: a DNS name or IPv4 address (letters, digits, '.', '-'). */
static int host_ok(const char *h, size_t n)
{
    if (n == 0 || n >= OCI_HOST_MAX)
        return 0;
    const char *colon = memchr(h, ':', n);
    size_t hl = colon ? (size_t)(colon - h) : n;
    if (hl == 0 || h[0] == '-' || h[0] == '.')
        return 0;
    for (size_t i = 0; i < hl; i++)
        if (!isalnum((unsigned char)h[i]) && h[i] != '.' && h[i] != '-')
            return 0;
    if (colon) {
        size_t pl = n - hl - 1;
        if (pl == 0 || pl > 5)
            return 0;
        unsigned port = 0;
        for (size_t i = hl + 1; i < n; i++) {
            if (!isdigit((unsigned char)h[i]))
                return 0;
            port = port * 10 + (unsigned)(h[i] - '0');
        }
        if (port == 0 || port > 65535)
            return 0;
    }
    return 1;
}

/* path-component ((/path-component)*), path-component:
 * [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static int repo_ok(const char *r, size_t n)
{
    if (n == 0 || n >= OCI_REPO_MAX)
        return 0;
    int need_alnum = 1; /* at a component's start, or after a separator */
    for (size_t i = 0; i < n; i++) {
        char c = r[i];
        if (lower_alnum(c)) {
            need_alnum = 0;
            continue;
        }
        if (need_alnum)
            return 0;
        if (c == '/') {
            need_alnum = 1;
        } else if (c == '.') {
            need_alnum = 1;
        } else if (c == '_') {
            if (i + 1 < n && r[i + 1] == '_')
                i++;
            need_alnum = 1;
        } else if (c == '-') {
            while (i + 1 < n && r[i + 1] == '-')
                i++;
            need_alnum = 1;
        } else {
            return 0;
        }
    }
    return !need_alnum;
}

/* [A-Za-z0-9_][A-Za-z0-9_.-]{0,127} */
static int tag_ok(const char *t, size_t n)
{
    if (n == 0 || n > OCI_TAG_MAX || t[0] == '.' || t[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)t[i]) && t[i] != '_' && t[i] != '.' && t[i] != '-')
            return 0;
    return 1;
}

int oci_digest_ok(const char *d, size_t n)
{
    if (n != OCI_DIGEST_LEN || strncmp(d, "sha256:", 7) != 0)
        return 0;
    for (size_t i = 7; i < n; i++)
        if (!isdigit((unsigned char)d[i]) && !(d[i] >= 'a' && d[i] <= 'f'))
            return 0;
    return 1;
}

int oci_ref_parse(const char *url, struct oci_ref *ret, struct wc_error *e)
{
    static const char hint[] = "want oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST";
    if (strncmp(url, "oci://", 6) != 0)
        return wc_err(e, -EINVAL, "source \"%.200s\" is not an oci:// URL", url);
    const char *h = url + 6, *slash = strchr(h, '/');
    if (!slash || !host_ok(h, (size_t)(slash - h)))
        return wc_err(e, -EINVAL, "source \"%.200s\": the registry is a host name or address with an optional "
                      ":port; %s", url, hint);
    const char *r = slash + 1, *at = strchr(r, '@');
    const char *last = strrchr(r, '/');
    const char *colon = strchr(last ? last : r, ':');
    struct oci_ref ref = {0};
    size_t rl;
    if (at) {
        if (!oci_digest_ok(at + 1, strlen(at + 1)))
            return wc_err(e, -EINVAL, "source \"%.200s\": a digest is sha256: and 64 lower-case hex digits", url);
        if (colon && colon < at)
            return wc_err(e, -EINVAL, "source \"%.200s\": name a tag or a digest, not both", url);
        rl = (size_t)(at - r);
        memcpy(ref.digest, at + 1, OCI_DIGEST_LEN);
    } else if (colon) {
        size_t tl = strlen(colon + 1);
        if (!tag_ok(colon + 1, tl))
            return wc_err(e, -EINVAL, "source \"%.200s\": a tag has up to 128 of A-Z a-z 0-9 _ . - and does not "
                          "start with . or -", url);
        rl = (size_t)(colon - r);
        memcpy(ref.tag, colon + 1, tl);
    } else {
        return wc_err(e, -EINVAL, "source \"%.200s\": no tag or digest; a cache is of one version, so name it "
                      "(:v1, or @sha256:… to pin it); %s", url, hint);
    }
    if (!repo_ok(r, rl))
        return wc_err(e, -EINVAL, "source \"%.200s\": a repository name is lower-case components of a-z 0-9 "
                      "joined by '/', each separated inside by '.', '_', '__' or dashes", url);
    /* one spelling of a host: lower case, no default port (REG and reg:443
     * are one registry, and one copy) */
    size_t hl = (size_t)(slash - h);
    if (hl > 4 && memcmp(slash - 4, ":443", 4) == 0)
        hl -= 4;
    for (size_t i = 0; i < hl; i++)
        ref.host[i] = (char)tolower((unsigned char)h[i]);
    memcpy(ref.repo, r, rl);
    *ret = ref;
    return 0;
}

int oci_identity(const char *url, char *out, size_t n, struct wc_error *e)
{
    struct oci_ref r;
    int rc = oci_ref_parse(url, &r, e);
    if (rc < 0)
        return rc;
    int w = snprintf(out, n, "oci://%s/%s", r.host, r.repo);
    return w < 0 || (size_t)w >= n ? wc_err(e, -ENAMETOOLONG, "source %.200s: too long", url) : 0;
}
