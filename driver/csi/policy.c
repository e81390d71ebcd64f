/* See policy.h. */
#include "csi/policy.h"
#include "base/fsutil.h"
#include "base/macros.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* oci://HOST…: the host as oci_ref_parse spells it (lower case, no :443),
 * so the policy and the registry client agree on which registry it is. */
static void oci_canon_host(char *url)
{
    char *h = url + 6, *end = h + strcspn(h, "/");
    for (char *q = h; q < end; q++)
        *q = (char)tolower((unsigned char)*q);
    if (end - h > 4 && memcmp(end - 4, ":443", 4) == 0)
        memmove(end - 4, end, strlen(end) + 1);
}

/* "s3://models" and "s3://models/" mean the bucket; "file:///fsx" the tree:
 * a prefix with a path ends in '/', so "s3://models" never admits
 * "s3://models-private/". A file:// prefix is taken by its real path. An
 * oci:// prefix names a registry or repositories ("oci://ecr-host/team/"),
 * never tags: a source is judged by its repository. */
static char *normalize_prefix(const char *in, struct wc_error *e)
{
    size_t n = strlen(in);
    const char *scheme_end = strstr(in, "://");
    int oci = strncmp(in, "oci://", 6) == 0;
    if (!scheme_end || (strncmp(in, "s3://", 5) != 0 && strncmp(in, "file://", 7) != 0 && !oci))
        return wc_err(e, -EINVAL, "allowed source \"%.200s\": want s3://[bucket/[prefix/]], file:///dir/ or "
                      "oci://[registry/[repository/]]", in), NULL;
    if (oci && strpbrk(in + 6, ":@") && strchr(in + 6, '/') && strpbrk(strchr(in + 6, '/'), ":@"))
        return wc_err(e, -EINVAL, "allowed source \"%.200s\": an oci:// prefix names a registry and repositories, "
                      "not a tag or digest", in), NULL;
    if (strncmp(in, "file://", 7) == 0) {
        if (in[7] != '/')
            return wc_err(e, -EINVAL, "allowed source \"%.200s\": a file:// prefix is an absolute path", in), NULL;
        char real[PATH_MAX];
        const char *path = realpath(in + 7, real) ? real : in + 7;
        char *out;
        size_t pl = strlen(path);
        if (asprintf(&out, "file://%s%s", path, pl && path[pl - 1] == '/' ? "" : "/") < 0)
            return NULL;
        return out;
    }
    if (n == 5 || (oci && n == 6))
        return strdup(in); /* "s3://": every bucket; "oci://": every registry */
    char *out;
    if (asprintf(&out, "%s%s", in, in[n - 1] == '/' ? "" : "/") < 0)
        return NULL;
    if (oci)
        oci_canon_host(out);
    return out;
}

static int parse_list(const char *csv, char ***ret, size_t *ret_n, struct wc_error *e)
{
    *ret = NULL;
    *ret_n = 0;
    if (!csv || !*csv)
        return 0;
    _cleanup_free_ char *copy = strdup(csv);
    if (!copy)
        return -ENOMEM;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t)
            continue;
        char *norm = normalize_prefix(t, e);
        char **nv = norm ? realloc(*ret, (*ret_n + 1) * sizeof(char *)) : NULL;
        if (!nv) {
            free(norm);
            free_list(*ret, *ret_n);
            *ret = NULL;
            *ret_n = 0;
            return e->code ? e->code : -ENOMEM;
        }
        *ret = nv;
        (*ret)[(*ret_n)++] = norm;
    }
    return 0;
}

int policy_init(struct source_policy *p, const char *allowed, const char *inline_allowed, bool inline_node_credentials,
                struct wc_error *e)
{
    *p = (struct source_policy){.inline_node_credentials = inline_node_credentials};
    int r = parse_list(allowed, &p->allowed, &p->n_allowed, e);
    if (r == 0)
        r = parse_list(inline_allowed, &p->inline_allowed, &p->n_inline, e);
    static const char *const system[][2] = {
        {"/proc", "the kernel's process tree"}, {"/sys", "the kernel's device tree"}, {"/dev", "the node's devices"},
        {"/etc", "the node's configuration (keys, passwords)"}, {"/root", "root's home"},
        {"/boot", "the node's kernel"}, {"/run", "the node's runtime state and service account tokens"},
        {"/var/run", "the node's runtime state and service account tokens"},
    };
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(system); i++)
        r = policy_never(p, system[i][0], system[i][1]);
    if (r < 0) {
        policy_fini(p);
        return r == -ENOMEM ? wc_err(e, r, "out of memory") : r;
    }
    return 0;
}

int policy_never(struct source_policy *p, const char *path, const char *what)
{
    if (!path || path[0] != '/')
        return 0;
    char real[PATH_MAX];
    const char *use = realpath(path, real) ? real : path;
    char **nv = realloc(p->never, (p->n_never + 1) * sizeof(char *));
    char **nw = nv ? realloc(p->never_why, (p->n_never + 1) * sizeof(char *)) : NULL;
    if (nv)
        p->never = nv;
    if (!nw)
        return -ENOMEM;
    p->never_why = nw;
    p->never[p->n_never] = strdup(use);
    p->never_why[p->n_never] = strdup(what);
    if (!p->never[p->n_never] || !p->never_why[p->n_never]) {
        free(p->never[p->n_never]);
        free(p->never_why[p->n_never]);
        return -ENOMEM;
    }
    p->n_never++;
    return 0;
}

void policy_fini(struct source_policy *p)
{
    free_list(p->allowed, p->n_allowed);
    free_list(p->inline_allowed, p->n_inline);
    free_list(p->never, p->n_never);
    free_list(p->never_why, p->n_never);
    *p = (struct source_policy){0};
}

void policy_describe(char **v, size_t n, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s%s", i ? ", " : "", v[i]);
    if (n == 0)
        snprintf(out, len, "none");
}

/* a under b, b under a, or the same tree (paths without trailing '/') */
static int trees_meet(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), l = la < lb ? la : lb;
    if (streq(a, "/") || streq(b, "/"))
        return 1;
    return strncmp(a, b, l) == 0 && (la == lb || (la < lb ? b[la] : a[lb]) == '/');
}

static int under_any(char **v, size_t n, const char *url)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(url, v[i], strlen(v[i])) == 0)
            return 1;
    return 0;
}

/* The URL as policy sees it: one trailing '/', and a file:// path by its real path. */
static int effective_url(const char *url, char *out, size_t n, char *real_path, size_t rn)
{
    if (strncmp(url, "file://", 7) == 0) {
        fs_real_as_far(url + 7, real_path, rn);
        size_t pl = strlen(real_path);
        while (pl > 1 && real_path[pl - 1] == '/')
            real_path[--pl] = '\0';
        return snprintf(out, n, "file://%s%s", real_path, streq(real_path, "/") ? "" : "/") >= (int)n ? -1 : 0;
    }
    size_t ul = strlen(url);
    real_path[0] = '\0';
    if (strncmp(url, "oci://", 6) == 0) { /* its repository: oci://host/repo/ */
        const char *repo = strchr(url + 6, '/');
        ul = repo ? (size_t)(repo + strcspn(repo, ":@") - url) : ul;
        if (snprintf(out, n, "%.*s/", (int)ul, url) >= (int)n)
            return -1;
        oci_canon_host(out);
        return 0;
    }
    return snprintf(out, n, "%s%s", url, ul && url[ul - 1] == '/' ? "" : "/") >= (int)n ? -1 : 0;
}

int policy_admit(void *ctx, const char *real_url, int narrow, struct wc_error *e)
{
    const struct source_spec spec = {.url = real_url};
    /* the S3 rules were met by the volume; only where the data lies is new */
    const struct source_use use = {.spec = &spec, .is_inline = narrow, .has_secret = true, .allow_plain_http = true};
    return policy_check(ctx, &use, e);
}

int policy_check(const struct source_policy *p, const struct source_use *u, struct wc_error *e)
{
    char url[PATH_MAX + 16], real[PATH_MAX], list[1024];
    if (u->is_inline && p->n_inline == 0)
        return wc_err(e, -EPERM, "inline (csi:) volumes are off on this node; a cluster admin turns them on for "
                      "chosen sources with the chart value inlineVolumes.allowedSources (--inline-sources), or the "
                      "pod uses a PVC of a StorageClass");
    if (effective_url(u->spec->url, url, sizeof(url), real, sizeof(real)) < 0)
        return wc_err(e, -EINVAL, "source %.200s is too long", u->spec->url);
    for (size_t i = 0; real[0] && i < p->n_never; i++)
        if (trees_meet(real, p->never[i]))
            return wc_err(e, -EPERM, "source %.300s is never served: %s %s, which holds %s; no setting of "
                          "allowedSources opens it", u->spec->url, streq(real, p->never[i]) ? "it is" :
                          strncmp(real, p->never[i], strlen(p->never[i])) == 0 ? "it lies in" : "it holds",
                          p->never[i], p->never_why[i]);
    if (!under_any(p->allowed, p->n_allowed, url)) {
        policy_describe(p->allowed, p->n_allowed, list, sizeof(list));
        return wc_err(e, -EPERM, "source %.300s is not allowed on this node: it is under none of the allowed "
                      "sources (chart value allowedSources, flag --allowed-sources: %s); a cluster admin adds "
                      "its prefix there", u->spec->url, list);
    }
    if (u->is_inline) {
        if (!under_any(p->inline_allowed, p->n_inline, url)) {
            policy_describe(p->inline_allowed, p->n_inline, list, sizeof(list));
            return wc_err(e, -EPERM, "source %.300s is not allowed in an inline (csi:) volume: it is under none of "
                          "the inline sources (chart value inlineVolumes.allowedSources, flag --inline-sources: "
                          "%s)", u->spec->url, list);
        }
        /* not even with inlineVolumes.nodeCredentials, which lends S3 access:
         * a pod's ECR pull with the node's role is not what it said */
        if (!u->has_secret && source_uses_node_credentials(u->spec->url) && strncmp(u->spec->url, "oci://", 6) == 0)
            return wc_err(e, -EPERM, "an inline oci:// volume of an ECR registry without a Secret would log in with "
                          "the node's own role, which no node lends to a pod: give the volume a nodePublishSecretRef "
                          "(username and password, or .dockerconfigjson), or use a PVC of a StorageClass");
        int s3 = strncmp(u->spec->url, "s3://", 5) == 0;
        if (s3 && !u->has_secret && !p->inline_node_credentials)
            return wc_err(e, -EPERM, "an inline s3:// volume without a Secret would sign with the node's own "
                          "credentials, which this node lends to no pod: give the volume a nodePublishSecretRef "
                          "(awsAccessKeyId, awsSecretAccessKey), or a cluster admin sets "
                          "inlineVolumes.nodeCredentials (--inline-node-credentials)");
        if (s3 && !u->has_secret && u->spec->endpoint)
            return wc_err(e, -EPERM, "an inline s3:// volume without a Secret cannot name an endpoint: the node's "
                          "credentials go to AWS only; give the volume a nodePublishSecretRef for %.200s",
                          u->spec->endpoint);
    }
    if (u->spec->endpoint && strncmp(u->spec->endpoint, "http://", 7) == 0 && !u->allow_plain_http)
        return wc_err(e, -EPERM, "endpoint %.200s is plain http: credentials and signed requests would cross the "
                      "network in the clear; use https://, or set the %s allowPlainHTTP: \"true\" for an endpoint on "
                      "a network you trust", u->spec->endpoint,
                      u->is_inline ? "inline volume attribute" : "StorageClass parameter");
    return 0;
}
