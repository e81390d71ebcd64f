/*
 * ListObjectsV2 pages (see xml.h): a small SAX state machine. Text is kept
 * only for the elements we use, each into one bounded buffer, so an unknown
 * element of any size costs nothing. Handlers look at st->err first: expat
 * may still call a few of them after XML_StopParser.
 */
#include "s3/xml.h"
#include "base/macros.h"
#include "base/pathkey.h"
#include "s3/sax.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- ListObjectsV2 ------------------------------------------------------------ */

enum lfield { LF_NONE, LF_KEY, LF_SIZE, LF_ETAG, LF_CHECKSUM, LF_TRUNCATED, LF_TOKEN, LF_KEYCOUNT, LF_PREFIX,
              LF_ENCODING, LF__MAX };

static const struct {
    const char *name;
    int in_contents; /* a child of <Contents>, else of <ListBucketResult> */
    size_t max;
} lfields[LF__MAX] = {
    [LF_KEY] = {"Key", 1, S3_KEY_MAX},
    [LF_SIZE] = {"Size", 1, S3_FIELD_MAX},
    [LF_ETAG] = {"ETag", 1, S3_ETAG_MAX},
    [LF_CHECKSUM] = {"ChecksumAlgorithm", 1, S3_FIELD_MAX},
    [LF_TRUNCATED] = {"IsTruncated", 0, S3_FIELD_MAX},
    [LF_TOKEN] = {"NextContinuationToken", 0, S3_TOKEN_MAX},
    [LF_KEYCOUNT] = {"KeyCount", 0, S3_FIELD_MAX},
    [LF_PREFIX] = {"Prefix", 0, S3_KEY_MAX},
    [LF_ENCODING] = {"EncodingType", 0, S3_FIELD_MAX},
};

struct object {
    char key[S3_KEY_MAX + 1];
    size_t key_len;
    char size[S3_FIELD_MAX + 1];
    char etag[S3_ETAG_MAX + 1];
    unsigned checksums;
};

struct list_state {
    XML_Parser p;
    const char *prefix;
    size_t prefix_len;
    s3_object_fn fn;
    void *ctx;
    struct s3_list_page *page;
    struct wc_error *e;
    int err;
    int depth;
    int in_contents;
    enum lfield cur;              /* the element whose text is being kept */
    unsigned seen_page, seen_obj; /* 1 << lfield, to refuse a repeated element */
    struct text text;
    struct object obj;
};

__attribute__((format(printf, 2, 3))) static void list_fail(struct list_state *st, const char *fmt, ...)
{
    if (st->err)
        return;
    char msg[WC_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    st->err = wc_err(st->e, -EINVAL, "S3 listing: %s", msg);
    XML_StopParser(st->p, XML_FALSE);
}

static void list_stop(struct list_state *st, int r)
{
    st->err = r;
    XML_StopParser(st->p, XML_FALSE);
}

static unsigned checksum_bit(const char *s)
{
    static const struct {
        const char *name;
        unsigned bit;
    } algs[] = {
        {"CRC32", S3_CHECKSUM_CRC32}, {"CRC32C", S3_CHECKSUM_CRC32C}, {"CRC64NVME", S3_CHECKSUM_CRC64NVME},
        {"SHA1", S3_CHECKSUM_SHA1},   {"SHA256", S3_CHECKSUM_SHA256},
    };
    for (size_t i = 0; i < ARRAY_SIZE(algs); i++)
        if (streq(s, algs[i].name))
            return algs[i].bit;
    return 0; /* an algorithm newer than this code: nothing to verify with */
}

static void XMLCALL list_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct list_state *st = ud;
    (void)attrs;
    if (st->err)
        return;
    if (st->cur != LF_NONE)
        return list_fail(st, "<%s> has an element inside it", lfields[st->cur].name);
    st->depth++;
    if (st->depth == 1) {
        if (!streq(name, "ListBucketResult")) {
            char q[80];
            sax_ascii_quote(name, strlen(name), 0, q, sizeof(q));
            list_fail(st, "the body is a <%s> document, not a ListBucketResult", q);
        }
        return;
    }
    if (st->depth == 2 && streq(name, "Contents")) {
        st->in_contents = 1;
        st->seen_obj = 0;
        st->obj.key_len = 0;
        st->obj.key[0] = st->obj.size[0] = st->obj.etag[0] = '\0';
        st->obj.checksums = 0;
        return;
    }
    int contents_child = st->depth == 3 && st->in_contents;
    if (st->depth != 2 && !contents_child)
        return; /* inside an element we ignore (Owner, CommonPrefixes, ...) */
    for (enum lfield f = LF_KEY; f < LF__MAX; f++) {
        if (lfields[f].in_contents != contents_child || !streq(name, lfields[f].name))
            continue;
        unsigned *seen = contents_child ? &st->seen_obj : &st->seen_page;
        if (f != LF_CHECKSUM && (*seen & (1u << f)))
            return list_fail(st, "%s has two <%s> elements", contents_child ? "an object" : "the page", name);
        *seen |= 1u << f;
        st->cur = f;
        sax_text_start(&st->text, lfields[f].max);
        return;
    }
}

static void XMLCALL list_text(void *ud, const XML_Char *s, int len)
{
    struct list_state *st = ud;
    if (st->err || st->cur == LF_NONE)
        return;
    if (sax_text_add(&st->text, s, (size_t)len) == 0)
        return;
    if (st->cur == LF_KEY) {
        char q[512];
        pathkey_quote(st->text.s, st->text.n, q, sizeof(q));
        return list_fail(st, "a <Key> is longer than %d bytes (\"%s\")", S3_KEY_MAX, q);
    }
    list_fail(st, "a <%s> is longer than %zu bytes", lfields[st->cur].name, lfields[st->cur].max);
}

static void end_field(struct list_state *st)
{
    const struct text *t = &st->text;
    struct s3_list_page *pg = st->page;
    char q[S3_FIELD_MAX + 8];
    uint64_t v;
    switch (st->cur) {
    case LF_KEY:
        memcpy(st->obj.key, t->s, t->n + 1);
        st->obj.key_len = t->n;
        break;
    case LF_SIZE: /* parsed at </Contents>, where the message can name the key */
        memcpy(st->obj.size, t->s, t->n + 1);
        break;
    case LF_ETAG:
        memcpy(st->obj.etag, t->s, t->n + 1);
        break;
    case LF_CHECKSUM:
        st->obj.checksums |= checksum_bit(t->s);
        break;
    case LF_TRUNCATED:
        if (streq(t->s, "true") || streq(t->s, "false")) {
            pg->truncated = streq(t->s, "true");
            break;
        }
        sax_ascii_quote(t->s, t->n, 0, q, 64);
        list_fail(st, "<IsTruncated> is \"%s\", not true or false", q);
        break;
    case LF_TOKEN:
        /* opaque, but it goes back into a query string: no controls */
        for (size_t i = 0; i < t->n; i++)
            if ((unsigned char)t->s[i] < 0x20 || t->s[i] == 0x7f)
                return list_fail(st, "<NextContinuationToken> contains a control character");
        memcpy(pg->next_token, t->s, t->n + 1);
        break;
    case LF_KEYCOUNT:
        if (sax_parse_decimal(t->s, UINT_MAX, &v) < 0) {
            sax_ascii_quote(t->s, t->n, 0, q, 64);
            return list_fail(st, "<KeyCount> is \"%s\", not a count", q);
        }
        pg->key_count = (unsigned)v;
        break;
    case LF_PREFIX:
        if (t->n != st->prefix_len || memcmp(t->s, st->prefix, t->n) != 0) {
            char want[512];
            pathkey_quote(t->s, t->n, q, sizeof(q));
            pathkey_quote(st->prefix, st->prefix_len, want, sizeof(want));
            list_fail(st, "the page is for prefix \"%s\", not the requested \"%s\"", q, want);
        }
        break;
    case LF_ENCODING:
        /* Keys would be percent-encoded; this parser takes them as they are. */
        if (t->n) {
            sax_ascii_quote(t->s, t->n, 0, q, 64);
            list_fail(st, "keys are encoded (EncodingType \"%s\"); list without encoding-type", q);
        }
        break;
    case LF_NONE:
    case LF__MAX:
        break;
    }
}

/* An ETag goes into an If-Match header later: only an RFC 9110 entity tag's
 * characters (printable ASCII, no '"'), with S3's surrounding quotes gone. */
static const char *unquote_etag(char *etag)
{
    size_t n = strlen(etag);
    if (n >= 2 && etag[0] == '"' && etag[n - 1] == '"') {
        etag[n - 1] = '\0';
        etag++;
        n -= 2;
    }
    if (n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)etag[i] <= 0x20 || (unsigned char)etag[i] >= 0x7f || etag[i] == '"')
            return NULL;
    return etag;
}

static void end_contents(struct list_state *st)
{
    struct object *o = &st->obj;
    st->page->keys++;
    if (!(st->seen_obj & (1u << LF_KEY)))
        return list_fail(st, "an object has no <Key>");
    char q[512];
    pathkey_quote(o->key, o->key_len, q, sizeof(q));
    if (o->key_len < st->prefix_len || memcmp(o->key, st->prefix, st->prefix_len) != 0) {
        char qp[512];
        pathkey_quote(st->prefix, st->prefix_len, qp, sizeof(qp));
        return list_fail(st, "key \"%s\" is not under the listed prefix \"%s\"", q, qp);
    }
    uint64_t size;
    if (!(st->seen_obj & (1u << LF_SIZE)))
        return list_fail(st, "object \"%s\" has no <Size>", q);
    if (sax_parse_decimal(o->size, S3_OBJECT_SIZE_MAX, &size) < 0) {
        char qs[64];
        sax_ascii_quote(o->size, strlen(o->size), 0, qs, sizeof(qs));
        return list_fail(st, "object \"%s\" has <Size> \"%s\", not a decimal byte count up to 5 TiB", q, qs);
    }
    if (size == 0 && o->key_len > 0 && o->key[o->key_len - 1] == '/')
        return; /* a console's "folder" (or the prefix itself): nothing to copy */
    const char *rel = o->key + st->prefix_len;
    size_t rel_len = o->key_len - st->prefix_len;
    int r = pathkey_check(rel, rel_len, st->e);
    if (r < 0)
        return list_stop(st, wc_err_prefix(st->e, "S3 listing: "));
    if (!(st->seen_obj & (1u << LF_ETAG)))
        return list_fail(st, "object \"%s\" has no <ETag>", q);
    const char *etag = unquote_etag(o->etag);
    if (!etag) {
        char qe[S3_ETAG_MAX * 4 + 8];
        sax_ascii_quote(o->etag, strlen(o->etag), 0, qe, sizeof(qe));
        return list_fail(st, "object \"%s\" has <ETag> \"%s\", which is not an entity tag", q, qe);
    }
    wc_error_clear(st->e);
    r = st->fn(st->ctx, rel, rel_len, size, etag);
    if (r < 0) {
        if (st->e->code == 0)
            wc_err_errno(st->e, r, "S3 listing: object \"%s\" could not be taken", q);
        return list_stop(st, st->e->code);
    }
    st->page->objects++;
    st->page->checksums &= o->checksums;
}

static void XMLCALL list_end(void *ud, const XML_Char *name)
{
    struct list_state *st = ud;
    (void)name;
    if (st->err)
        return;
    if (st->cur != LF_NONE) { /* no child can start inside a kept element: this ends it */
        end_field(st);
        st->cur = LF_NONE;
    } else if (st->depth == 2 && st->in_contents) {
        st->in_contents = 0;
        end_contents(st);
    }
    st->depth--;
}

static void XMLCALL list_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                                 int has_internal)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal;
    list_fail(ud, "the body has a DOCTYPE, which S3 never sends (refused: no DTDs, no entities)");
}

static void XMLCALL list_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value, int value_len,
                                const XML_Char *base, const XML_Char *sysid, const XML_Char *pubid,
                                const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid, (void)pubid, (void)notation;
    list_fail(ud, "the body declares an entity, which S3 never does");
}

/* Feeds body in int-sized pieces; XML_STATUS_OK or the failing status. */

int s3_parse_list_page(const char *body, size_t len, const char *prefix, s3_object_fn fn, void *ctx,
                       struct s3_list_page *ret_page, struct wc_error *e)
{
    prefix = prefix ? prefix : "";
    size_t plen = strlen(prefix);
    if (plen > 0 && prefix[plen - 1] != '/')
        return wc_err(e, -EINVAL, "S3 listing: prefix \"%.200s\" must be empty or end in '/'", prefix);
    if (!body || len == 0)
        return wc_err(e, -EINVAL, "S3 listing: the response body is empty");

    struct s3_list_page page = {.checksums = S3_CHECKSUM_ALL};
    struct list_state st = {.prefix = prefix, .prefix_len = plen, .fn = fn, .ctx = ctx, .page = &page, .e = e};
    st.p = XML_ParserCreate("UTF-8");
    if (!st.p)
        return wc_err(e, -ENOMEM, "S3 listing: out of memory");
    XML_SetUserData(st.p, &st);
    XML_SetElementHandler(st.p, list_start, list_end);
    XML_SetCharacterDataHandler(st.p, list_text);
    sax_set_no_dtd(st.p, list_doctype, list_entity);

    enum XML_Status s = sax_feed(st.p, body, len);
    int r = st.err;
    if (r == 0 && s != XML_STATUS_OK)
        r = wc_err(e, -EINVAL, "S3 listing is not well-formed XML (line %lu: %s)",
                   (unsigned long)XML_GetCurrentLineNumber(st.p), XML_ErrorString(XML_GetErrorCode(st.p)));
    XML_ParserFree(st.p);
    if (r < 0)
        return r;
    if (!(st.seen_page & (1u << LF_TRUNCATED)))
        return wc_err(e, -EINVAL, "S3 listing: the page has no <IsTruncated>, so it cannot say whether more follow");
    if (page.truncated && !page.next_token[0])
        return wc_err(e, -EINVAL,
                      "S3 listing: the page is truncated but has no continuation token (<NextContinuationToken>)");
    if (!page.truncated)
        page.next_token[0] = '\0';
    *ret_page = page;
    return 0;
}

