/* See listing.h. */
#include "cache/listing.h"
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/pathkey.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int listing_add(struct listing *l, const char *key, size_t keylen, uint64_t size, const char *etag)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        struct listing_entry *nv = realloc(l->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        l->v = nv;
        l->cap = ncap;
    }
    if (memchr(key, '\0', keylen))
        return -EINVAL; /* listers run pathkey_check first, which says why */
    char *k = malloc(keylen + 1);
    char *t = strdup(etag ? etag : "");
    if (!k || !t) {
        free(k);
        free(t);
        return -ENOMEM;
    }
    memcpy(k, key, keylen);
    k[keylen] = '\0';
    l->v[l->n++] = (struct listing_entry){.key = k, .size = size, .etag = t};
    l->bytes += size;
    return 0;
}

void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].etag);
    }
    free(l->v);
    *l = (struct listing){0};
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct listing_entry *)a)->key, ((const struct listing_entry *)b)->key);
}

static int cmp_key(const void *k, const void *b)
{
    return strcmp((const char *)k, ((const struct listing_entry *)b)->key);
}

int listing_finalize(struct listing *l, struct wc_error *e)
{
    for (size_t i = 0; i < l->n; i++) {
        int r = pathkey_check(l->v[i].key, strlen(l->v[i].key), e);
        if (r < 0)
            return r;
    }
    if (l->n > 1)
        qsort(l->v, l->n, sizeof(*l->v), cmp_entry);
    char q[512];
    for (size_t i = 1; i < l->n; i++)
        if (streq(l->v[i - 1].key, l->v[i].key)) {
            pathkey_quote(l->v[i].key, strlen(l->v[i].key), q, sizeof(q));
            return wc_err(e, -EINVAL, "object key \"%s\" is listed twice", q);
        }
    /* Every proper prefix ending before a '/' must not itself be an object. */
    char buf[PATHKEY_MAX + 1];
    for (size_t i = 0; i < l->n; i++) {
        const char *key = l->v[i].key;
        for (const char *s = strchr(key, '/'); s; s = strchr(s + 1, '/')) {
            size_t len = (size_t)(s - key);
            memcpy(buf, key, len);
            buf[len] = '\0';
            if (bsearch(buf, l->v, l->n, sizeof(*l->v), cmp_key)) {
                pathkey_quote(buf, len, q, sizeof(q));
                return wc_err(e, -EINVAL,
                              "object key \"%s\" is both an object and a prefix of other objects; "
                              "a copy cannot hold it as a file and a directory at once", q);
            }
        }
    }
    return 0;
}

static const char digest_tag[] = "warmcache-listing-v1\n";

/* key NUL size NUL etag LF: unambiguous, since keys hold no NUL */
static void digest_entry(EVP_MD_CTX *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    char num[32];
    int n = snprintf(num, sizeof(num), "%" PRIu64, size);
    EVP_DigestUpdate(ctx, key, len);
    EVP_DigestUpdate(ctx, "", 1);
    EVP_DigestUpdate(ctx, num, (size_t)n + 1);
    EVP_DigestUpdate(ctx, etag, strlen(etag));
    EVP_DigestUpdate(ctx, "\n", 1);
}

static void digest_hex(EVP_MD_CTX *ctx, char out[LISTING_DIGEST_LEN + 1])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    for (unsigned i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    out[LISTING_DIGEST_LEN] = '\0';
}

void listing_digest(const struct listing *l, char out[LISTING_DIGEST_LEN + 1])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, digest_tag, sizeof(digest_tag) - 1);
    for (size_t i = 0; i < l->n; i++)
        digest_entry(ctx, l->v[i].key, strlen(l->v[i].key), l->v[i].size, l->v[i].etag);
    digest_hex(ctx, out);
    EVP_MD_CTX_free(ctx);
}

/* ---- the streaming summary ------------------------------------------------ */

int listing_sum_init(struct listing_sum *s)
{
    *s = (struct listing_sum){0};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(ctx);
        return -ENOMEM;
    }
    EVP_DigestUpdate(ctx, digest_tag, sizeof(digest_tag) - 1);
    s->md = ctx;
    return 0;
}

/* k starts with dir followed by '/'. */
static int under_dir(const char *k, size_t kl, const char *dir)
{
    size_t dl = strlen(dir);
    return kl > dl && k[dl] == '/' && memcmp(k, dir, dl) == 0;
}

/* k sorts after every key that starts with dir + '/'. */
static int past_dir(const char *k, size_t kl, const char *dir)
{
    size_t dl = strlen(dir);
    int c = memcmp(k, dir, kl < dl ? kl : dl);
    if (c != 0)
        return c > 0;
    if (kl <= dl)
        return 0;              /* k is dir or a prefix of it: not past */
    return (unsigned char)k[dl] > '/';
}

int listing_sum_add(struct listing_sum *s, const char *key, size_t len, uint64_t size, const char *etag,
                    struct wc_error *e)
{
    int r = pathkey_check(key, len, e);
    if (r < 0)
        return r;
    if (memchr(key, '\0', len))
        return -EINVAL;
    char q[512];
    if (s->last) {
        size_t ll = strlen(s->last);
        int c = memcmp(key, s->last, len < ll ? len : ll);
        if (c == 0 && len == ll) {
            pathkey_quote(key, len, q, sizeof(q));
            return wc_err(e, -EINVAL, "object key \"%s\" is listed twice", q);
        }
        if (c < 0 || (c == 0 && len < ll))
            return -EDOM; /* out of order: not a sorted listing */
    }
    /* the open keys that can no longer be a directory of a later key go */
    while (s->n_open) {
        const char *top = s->open[s->n_open - 1];
        if (under_dir(key, len, top)) {
            pathkey_quote(top, strlen(top), q, sizeof(q));
            return wc_err(e, -EINVAL, "object key \"%s\" is both an object and a prefix of other objects; a copy "
                          "cannot hold it as a file and a directory at once", q);
        }
        if (!past_dir(key, len, top))
            break;
        free(s->open[--s->n_open]);
    }
    char *k = malloc(len + 1), *last = malloc(len + 1);
    if (k && last && s->n_open == s->cap_open) { /* on ENOMEM the old array and its size stay */
        size_t cap = s->cap_open ? 2 * s->cap_open : 16;
        char **grown = realloc(s->open, cap * sizeof(char *));
        if (grown) {
            s->open = grown;
            s->cap_open = cap;
        }
    }
    if (!k || !last || s->n_open == s->cap_open) {
        free(k);
        free(last);
        return -ENOMEM;
    }
    memcpy(k, key, len);
    k[len] = '\0';
    memcpy(last, k, len + 1);
    s->open[s->n_open++] = k;
    free(s->last);
    s->last = last;
    digest_entry(s->md, key, len, size, etag ? etag : "");
    s->n++;
    s->bytes += size;
    return 0;
}

void listing_sum_digest(struct listing_sum *s, char out[LISTING_DIGEST_LEN + 1])
{
    digest_hex(s->md, out);
}

void listing_sum_free(struct listing_sum *s)
{
    EVP_MD_CTX_free(s->md);
    for (size_t i = 0; i < s->n_open; i++)
        free(s->open[i]);
    free(s->open);
    free(s->last);
    *s = (struct listing_sum){0};
}

void content_id(const char *source_url, const char *digest, char out[CONTENT_ID_LEN + 1])
{
    size_t n = strlen(source_url) + strlen(digest) + 2;
    _cleanup_free_ char *buf = malloc(n);
    char hex[SHA256_HEX_LEN + 1];
    if (!buf) {
        /* keep a deterministic answer even under OOM: hash the digest alone */
        sha256_hex(digest, strlen(digest), hex);
    } else {
        snprintf(buf, n, "%s\n%s", source_url, digest);
        sha256_hex(buf, n - 1, hex);
    }
    memcpy(out, hex, CONTENT_ID_LEN);
    out[CONTENT_ID_LEN] = '\0';
}
