/* See xml.h. One small SAX state machine per body kind. */
#include "s3/xml.h"
#include "base/macros.h"
#include "base/pathkey.h"

#include <expat.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX 1100          /* keys are at most 1024 bytes; a little room to see "too long" */
#define S3_MAX_OBJECT (5ULL << 40)

struct text {
    char s[TEXT_MAX + 1];
    size_t n;
    int overflow;
};

static void text_reset(struct text *t) { t->n = 0; t->overflow = 0; t->s[0] = '\0'; }

static void text_add(struct text *t, const char *s, int len)
{
    if (t->n + (size_t)len > TEXT_MAX) {
        t->overflow = 1;
        return;
    }
    memcpy(t->s + t->n, s, (size_t)len);
    t->n += (size_t)len;
    t->s[t->n] = '\0';
}

/* ---- ListObjectsV2 -------------------------------------------------------- */

struct list_state {
    XML_Parser p;
    const char *prefix;
    size_t prefix_len;
    s3_object_fn fn;
    void *ctx;
    struct s3_list_page *page;
    struct wc_error *e;
    int err;
    int depth, in_contents;
    struct text text;
    char key[TEXT_MAX + 1];
    size_t key_len;
    char etag[130];
    uint64_t size;
    int have_key, have_size;
};

__attribute__((format(printf, 2, 3))) static void fail(struct list_state *st, const char *fmt, ...)
{
    if (st->err)
        return;
    char msg[WC_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    st->err = wc_err(st->e, -EINVAL, "%s", msg);
    XML_StopParser(st->p, XML_FALSE);
}

static void XMLCALL list_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct list_state *st = ud;
    (void)attrs;
    st->depth++;
    text_reset(&st->text);
    if (st->depth == 2 && streq(name, "Contents")) {
        st->in_contents = 1;
        st->have_key = st->have_size = 0;
        st->etag[0] = '\0';
        st->size = 0;
    }
}

static int parse_size(const char *s, uint64_t *ret)
{
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > S3_MAX_OBJECT)
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > S3_MAX_OBJECT)
        return -1;
    *ret = v;
    return 0;
}

static void end_contents(struct list_state *st)
{
    st->in_contents = 0;
    st->page->keys++;
    if (!st->have_key || !st->have_size) {
        fail(st, "S3 listing: an object without %s", st->have_key ? "Size" : "Key");
        return;
    }
    char q[512];
    pathkey_quote(st->key, st->key_len, q, sizeof(q));
    if (st->key_len < st->prefix_len || memcmp(st->key, st->prefix, st->prefix_len) != 0) {
        st->err = wc_err(st->e, -EINVAL, "S3 listing returned key \"%s\", which is not under the prefix \"%s\"", q,
                         st->prefix);
        XML_StopParser(st->p, XML_FALSE);
        return;
    }
    const char *rel = st->key + st->prefix_len;
    size_t rel_len = st->key_len - st->prefix_len;
    if (rel_len == 0 || (rel[rel_len - 1] == '/' && st->size == 0))
        return; /* the prefix itself, or a "folder" marker made by a console: not objects of the copy */
    int r = pathkey_check(rel, rel_len, st->e);
    if (r == 0)
        r = st->fn(st->ctx, rel, rel_len, st->size, st->etag);
    if (r < 0) {
        st->err = r == -ENOMEM ? wc_err(st->e, r, "out of memory") : r;
        XML_StopParser(st->p, XML_FALSE);
    }
}

static void XMLCALL list_end(void *ud, const XML_Char *name)
{
    struct list_state *st = ud;
    struct text *t = &st->text;
    if (st->in_contents && st->depth == 3) {
        if (streq(name, "Key")) {
            if (t->overflow || t->n > PATHKEY_MAX) {
                fail(st, "S3 listing: a key longer than %s bytes", "1024");
                goto out;
            }
            memcpy(st->key, t->s, t->n + 1);
            st->key_len = t->n;
            st->have_key = 1;
        } else if (streq(name, "Size")) {
            if (parse_size(t->s, &st->size) < 0) {
                fail(st, "S3 listing: Size \"%.40s\" is not a size S3 can have", t->s);
                goto out;
            }
            st->have_size = 1;
        } else if (streq(name, "ETag")) {
            const char *v = t->s;
            size_t n = t->n;
            if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
                v++;
                n -= 2;
            }
            if (t->overflow || n >= sizeof(st->etag)) {
                fail(st, "S3 listing: an %s longer than 128 bytes", "ETag");
                goto out;
            }
            memcpy(st->etag, v, n);
            st->etag[n] = '\0';
        }
    } else if (st->in_contents && st->depth == 2 && streq(name, "Contents")) {
        end_contents(st);
    } else if (st->depth == 2 && streq(name, "IsTruncated")) {
        st->page->truncated = streq(t->s, "true");
    } else if (st->depth == 2 && streq(name, "NextContinuationToken")) {
        if (t->overflow || t->n > S3_TOKEN_MAX)
            fail(st, "S3 listing: a %s longer than 1024 bytes", "continuation token");
        else
            memcpy(st->page->next_token, t->s, t->n + 1);
    }
out:
    st->depth--;
    text_reset(t);
}

static void XMLCALL collect_text(void *ud, const XML_Char *s, int len)
{
    struct list_state *st = ud;
    text_add(&st->text, s, len);
}

static void XMLCALL refuse_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                                   int has_internal)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal;
    fail(ud, "S3 listing: the body has a %s, which S3 never sends", "DOCTYPE");
}

int s3_parse_list_page(const char *body, size_t len, const char *prefix, s3_object_fn fn, void *ctx,
                       struct s3_list_page *ret_page, struct wc_error *e)
{
    struct s3_list_page page = {0};
    struct list_state *st = calloc(1, sizeof(*st));
    if (!st)
        return wc_err(e, -ENOMEM, "out of memory");
    *st = (struct list_state){.prefix = prefix, .prefix_len = strlen(prefix), .fn = fn, .ctx = ctx,
                               .page = &page, .e = e};
    st->p = XML_ParserCreate("UTF-8");
    if (!st->p) {
        free(st);
        return wc_err(e, -ENOMEM, "out of memory");
    }
    XML_SetUserData(st->p, st);
    XML_SetElementHandler(st->p, list_start, list_end);
    XML_SetCharacterDataHandler(st->p, collect_text);
    XML_SetStartDoctypeDeclHandler(st->p, refuse_doctype);
    enum XML_Status s = XML_Parse(st->p, body, (int)len, XML_TRUE);
    int r = st->err;
    if (r == 0 && s != XML_STATUS_OK)
        r = wc_err(e, -EINVAL, "S3 listing is not well-formed XML (line %lu: %s)",
                   (unsigned long)XML_GetCurrentLineNumber(st->p), XML_ErrorString(XML_GetErrorCode(st->p)));
    if (r == 0 && page.truncated && !page.next_token[0])
        r = wc_err(e, -EINVAL, "S3 listing is truncated but has no continuation token");
    XML_ParserFree(st->p);
    free(st);
    if (r == 0)
        *ret_page = page;
    return r;
}

/* ---- error bodies --------------------------------------------------------- */

struct err_state {
    XML_Parser p;
    struct text text;
    struct s3_error_info *info;
    int depth;
};

static void XMLCALL err_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct err_state *st = ud;
    (void)name, (void)attrs;
    st->depth++;
    text_reset(&st->text);
}

static void copy_printable(char *dst, size_t n, const struct text *t)
{
    pathkey_quote(t->s, t->n, dst, n); /* server text is untrusted: escape controls */
}

static void XMLCALL err_end(void *ud, const XML_Char *name)
{
    struct err_state *st = ud;
    if (st->depth == 2) {
        if (streq(name, "Code"))
            copy_printable(st->info->code, sizeof(st->info->code), &st->text);
        else if (streq(name, "Message"))
            copy_printable(st->info->message, sizeof(st->info->message), &st->text);
        else if (streq(name, "Region"))
            copy_printable(st->info->region, sizeof(st->info->region), &st->text);
        else if (streq(name, "RequestId"))
            copy_printable(st->info->request_id, sizeof(st->info->request_id), &st->text);
    }
    st->depth--;
    text_reset(&st->text);
}

static void XMLCALL err_text(void *ud, const XML_Char *s, int len)
{
    text_add(&((struct err_state *)ud)->text, s, len);
}

static void XMLCALL err_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                                int has_internal)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal;
    XML_StopParser(((struct err_state *)ud)->p, XML_FALSE);
}

void s3_parse_error(const char *body, size_t len, long http_status, struct s3_error_info *ret)
{
    *ret = (struct s3_error_info){.http_status = http_status};
    if (!body || len == 0)
        return;
    struct err_state *st = calloc(1, sizeof(*st));
    if (!st)
        return;
    st->info = ret;
    st->p = XML_ParserCreate("UTF-8");
    if (st->p) {
        XML_SetUserData(st->p, st);
        XML_SetElementHandler(st->p, err_start, err_end);
        XML_SetCharacterDataHandler(st->p, err_text);
        XML_SetStartDoctypeDeclHandler(st->p, err_doctype);
        XML_Parse(st->p, body, (int)(len > 1 << 20 ? 1 << 20 : len), XML_TRUE);
        XML_ParserFree(st->p);
    }
    free(st);
}
