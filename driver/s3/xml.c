/*
 * See xml.h. Two small SAX state machines, one per body kind. Text is kept
 * only for the elements we use, each into one bounded buffer, so an unknown
 * element of any size costs nothing. Handlers look at st->err first: expat
 * may still call a few of them after XML_StopParser.
 */
#include "s3/xml.h"
#include "base/macros.h"
#include "base/pathkey.h"

#include <expat.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define FEED_CHUNK (1u << 20)          /* XML_Parse takes an int length */
#define ERROR_BODY_MAX (64u << 10)     /* S3's error bodies are < 2 KiB; past this it is not S3 talking */

/* ---- shared ---------------------------------------------------------------- */

struct text {
    char s[S3_KEY_MAX + 1]; /* the largest bound of any element we keep */
    size_t n, max;
    int over;
};

static void text_start(struct text *t, size_t max)
{
    t->n = 0;
    t->max = max < S3_KEY_MAX ? max : S3_KEY_MAX;
    t->over = 0;
    t->s[0] = '\0';
}

/* Keeps at most t->max bytes; -1 once more arrived (what fits is kept). */
static int text_add(struct text *t, const char *s, size_t len)
{
    size_t room = t->max - t->n;
    if (len > room) {
        memcpy(t->s + t->n, s, room);
        t->n = t->max;
        t->s[t->n] = '\0';
        t->over = 1;
        return -1;
    }
    memcpy(t->s + t->n, s, len);
    t->n += len;
    t->s[t->n] = '\0';
    return 0;
}

static size_t quoted_len(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? 1 : 4;
}

/* Server text is untrusted and S3's own is ASCII: keep printable ASCII, write
 * anything else as \xNN (controls, escapes, C1 and bidi tricks alike), and cut
 * with "..." to fit n, or when `cut` says the input was already cut. */
static void ascii_quote(const char *s, size_t len, int cut, char *out, size_t n)
{
    if (n == 0)
        return;
    size_t total = 0;
    for (size_t i = 0; i < len; i++)
        total += quoted_len((unsigned char)s[i]);
    int dots = cut || total > n - 1;
    size_t room = !dots ? n - 1 : n - 1 > 3 ? n - 1 - 3 : 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = quoted_len(c);
        if (o + need > room)
            break;
        if (need == 1)
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", c);
    }
    if (dots && o + 3 <= n - 1) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int parse_decimal(const char *s, uint64_t max, uint64_t *ret)
{
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > max) /* checked every digit, so v * 10 never wraps */
            return -1;
    }
    *ret = v;
    return 0;
}

/* Expat has no DTD-less mode; these make any DOCTYPE or entity declaration
 * end the parse before an entity could be declared, let alone expanded. */
static void set_no_dtd(XML_Parser p, XML_StartDoctypeDeclHandler doctype, XML_EntityDeclHandler entity)
{
    XML_SetStartDoctypeDeclHandler(p, doctype);
    XML_SetEntityDeclHandler(p, entity);
    XML_SetParamEntityParsing(p, XML_PARAM_ENTITY_PARSING_NEVER);
}

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
            ascii_quote(name, strlen(name), 0, q, sizeof(q));
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
        text_start(&st->text, lfields[f].max);
        return;
    }
}

static void XMLCALL list_text(void *ud, const XML_Char *s, int len)
{
    struct list_state *st = ud;
    if (st->err || st->cur == LF_NONE)
        return;
    if (text_add(&st->text, s, (size_t)len) == 0)
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
        ascii_quote(t->s, t->n, 0, q, 64);
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
        if (parse_decimal(t->s, UINT_MAX, &v) < 0) {
            ascii_quote(t->s, t->n, 0, q, 64);
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
            ascii_quote(t->s, t->n, 0, q, 64);
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
    if (parse_decimal(o->size, S3_OBJECT_SIZE_MAX, &size) < 0) {
        char qs[64];
        ascii_quote(o->size, strlen(o->size), 0, qs, sizeof(qs));
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
        ascii_quote(o->etag, strlen(o->etag), 0, qe, sizeof(qe));
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
static enum XML_Status feed(XML_Parser p, const char *body, size_t len)
{
    size_t off = 0;
    do {
        size_t n = len - off > FEED_CHUNK ? FEED_CHUNK : len - off;
        enum XML_Status s = XML_Parse(p, body + off, (int)n, off + n == len);
        if (s != XML_STATUS_OK)
            return s;
        off += n;
    } while (off < len);
    return XML_STATUS_OK;
}

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
    set_no_dtd(st.p, list_doctype, list_entity);

    enum XML_Status s = feed(st.p, body, len);
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

/* ---- error bodies ------------------------------------------------------------ */

enum efield { EF_NONE, EF_CODE, EF_MESSAGE, EF_REGION, EF_ENDPOINT, EF_BUCKET_NAME, EF_BUCKET, EF_KEY,
              EF_REQUEST_ID, EF_HOST_ID, EF__MAX };

/* Only these are kept. StringToSign, CanonicalRequest, SignatureProvided,
 * AWSAccessKeyId and the like (SignatureDoesNotMatch sends them) never are. */
static const struct {
    const char *name;
    size_t off, size, max;
} efields[EF__MAX] = {
#define EF(n, f, m) {n, offsetof(struct s3_error_info, f), sizeof(((struct s3_error_info *)0)->f), m}
    [EF_CODE] = EF("Code", code, S3_FIELD_MAX),
    [EF_MESSAGE] = EF("Message", message, S3_FIELD_MAX),
    [EF_REGION] = EF("Region", region, S3_FIELD_MAX),
    [EF_ENDPOINT] = EF("Endpoint", endpoint, S3_FIELD_MAX),
    [EF_BUCKET_NAME] = EF("BucketName", bucket, S3_FIELD_MAX),
    [EF_BUCKET] = EF("Bucket", bucket, S3_FIELD_MAX),
    [EF_KEY] = EF("Key", key, S3_KEY_MAX),
    [EF_REQUEST_ID] = EF("RequestId", request_id, S3_FIELD_MAX),
    [EF_HOST_ID] = EF("HostId", host_id, S3_FIELD_MAX),
#undef EF
};

struct err_state {
    XML_Parser p;
    struct s3_error_info *info;
    int depth, is_error, stopped;
    enum efield cur;
    struct text text;
};

/* A server that echoes what we sent could echo credentials back. */
static int quotes_credentials(const char *s, size_t n)
{
    static const char *const marks[] = {"signature=", "credential=", "x-amz-security-token", "x-amz-signature",
                                        "x-amz-credential", "aws4-hmac-sha256", "authorization:",
                                        "secretaccesskey", "aws_secret", "sessiontoken"};
    for (size_t i = 0; i < ARRAY_SIZE(marks); i++)
        if (strcasestr(s, marks[i]))
            return 1;
    /* an access key id: AKIA/ASIA and 16 more of [A-Z0-9] */
    for (size_t i = 0; i + 20 <= n; i++) {
        if (s[i] != 'A' || (s[i + 1] != 'K' && s[i + 1] != 'S') || s[i + 2] != 'I' || s[i + 3] != 'A')
            continue;
        size_t k = 4;
        while (k < 20 && ((s[i + k] >= 'A' && s[i + k] <= 'Z') || (s[i + k] >= '0' && s[i + k] <= '9')))
            k++;
        if (k == 20)
            return 1;
    }
    return 0;
}

/* What params.c accepts as a region, so the advice can be followed as given. */
static int region_name(const char *s, size_t n)
{
    return n > 0 && n <= 32 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

/* An AWS region label, strictly: "eu-west-1", "us-gov-east-1". */
static int aws_region_label(const char *s, size_t n)
{
    size_t i = 0, groups = 0;
    if (n < 4 || s[0] < 'a' || s[0] > 'z' || s[1] < 'a' || s[1] > 'z')
        return 0;
    for (i = 2; i < n && s[i] == '-';) {
        size_t j = i + 1;
        while (j < n && s[j] >= 'a' && s[j] <= 'z')
            j++;
        if (j == i + 1)
            break;
        groups++;
        i = j;
    }
    if (groups == 0 || i >= n || s[i] != '-' || i + 1 >= n)
        return 0;
    for (size_t j = i + 1; j < n; j++)
        if (s[j] < '0' || s[j] > '9')
            return 0;
    return 1;
}

static int label_is(const char *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

/* PermanentRedirect names an endpoint, not a region: "b.s3.eu-west-1.
 * amazonaws.com", "b.s3-eu-west-1...", "b.s3.dualstack.eu-west-1...", or the
 * global "b.s3.amazonaws.com" (us-east-1). Read from the right, so a bucket
 * name with dots or an "s3" label cannot confuse it. */
static void region_from_endpoint(const char *ep, char *out, size_t outn)
{
    const char *h = strstr(ep, "://");
    h = h ? h + 3 : ep;
    size_t hl = strcspn(h, "/:");
    static const char *const suffixes[] = {".amazonaws.com", ".amazonaws.com.cn"};
    size_t rl = 0;
    for (size_t i = 0; i < ARRAY_SIZE(suffixes) && !rl; i++) {
        size_t sl = strlen(suffixes[i]);
        if (hl > sl && memcmp(h + hl - sl, suffixes[i], sl) == 0)
            rl = hl - sl;
    }
    if (!rl)
        return;
    const char *labels[3] = {0};
    size_t lens[3] = {0};
    size_t end = rl;
    for (int k = 0; k < 3 && end > 0; k++) { /* the last three labels, right to left */
        size_t start = end;
        while (start > 0 && h[start - 1] != '.')
            start--;
        labels[k] = h + start;
        lens[k] = end - start;
        end = start > 0 ? start - 1 : 0;
    }
    const char *region = NULL;
    size_t n = 0;
    if (label_is(labels[0], lens[0], "s3")) {
        region = "us-east-1";
        n = 9;
    } else if (lens[0] > 3 && memcmp(labels[0], "s3-", 3) == 0 && aws_region_label(labels[0] + 3, lens[0] - 3)) {
        region = labels[0] + 3;
        n = lens[0] - 3;
    } else if (aws_region_label(labels[0], lens[0]) && labels[1] &&
               (label_is(labels[1], lens[1], "s3") ||
                (label_is(labels[1], lens[1], "dualstack") && labels[2] && label_is(labels[2], lens[2], "s3")))) {
        region = labels[0];
        n = lens[0];
    }
    if (region && n < outn) {
        memcpy(out, region, n);
        out[n] = '\0';
    }
}

static void XMLCALL err_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
    struct err_state *st = ud;
    (void)attrs;
    if (st->stopped)
        return;
    st->depth++;
    st->cur = EF_NONE; /* mixed content: an element inside a field ends what we keep of it */
    if (st->depth == 1)
        st->is_error = streq(name, "Error");
    if (st->depth != 2 || !st->is_error)
        return;
    for (enum efield f = EF_CODE; f < EF__MAX; f++)
        if (streq(name, efields[f].name)) {
            st->cur = f;
            text_start(&st->text, efields[f].max);
            return;
        }
}

static void XMLCALL err_text(void *ud, const XML_Char *s, int len)
{
    struct err_state *st = ud;
    if (!st->stopped && st->cur != EF_NONE)
        text_add(&st->text, s, (size_t)len); /* tolerant: too long is cut, not refused */
}

static void XMLCALL err_end(void *ud, const XML_Char *name)
{
    struct err_state *st = ud;
    (void)name;
    if (st->stopped)
        return;
    if (st->cur != EF_NONE) {
        const struct text *t = &st->text;
        char *dst = (char *)st->info + efields[st->cur].off;
        size_t size = efields[st->cur].size;
        if (quotes_credentials(t->s, t->n))
            snprintf(dst, size, "(withheld: it quotes request credentials)");
        else if (st->cur == EF_REGION && !region_name(t->s, t->n))
            dst[0] = '\0'; /* not a region we could tell anyone to use */
        else
            ascii_quote(t->s, t->n, t->over, dst, size);
        st->cur = EF_NONE;
    }
    st->depth--;
}

static void XMLCALL err_doctype(void *ud, const XML_Char *name, const XML_Char *sysid, const XML_Char *pubid,
                                int has_internal)
{
    struct err_state *st = ud;
    (void)name, (void)sysid, (void)pubid, (void)has_internal;
    st->stopped = 1;
    XML_StopParser(st->p, XML_FALSE);
}

static void XMLCALL err_entity(void *ud, const XML_Char *name, int is_param, const XML_Char *value, int value_len,
                               const XML_Char *base, const XML_Char *sysid, const XML_Char *pubid,
                               const XML_Char *notation)
{
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid, (void)pubid, (void)notation;
    err_doctype(ud, NULL, NULL, NULL, 0);
}

int s3_parse_error(const char *body, size_t len, long http_status, struct s3_error_info *ret)
{
    struct s3_error_info info = {.http_status = http_status};
    if (body && len > 0) {
        struct err_state st = {.info = &info};
        st.p = XML_ParserCreate("UTF-8");
        if (st.p) { /* out of memory: the status alone still says something */
            XML_SetUserData(st.p, &st);
            XML_SetElementHandler(st.p, err_start, err_end);
            XML_SetCharacterDataHandler(st.p, err_text);
            set_no_dtd(st.p, err_doctype, err_entity);
            (void)feed(st.p, body, len > ERROR_BODY_MAX ? ERROR_BODY_MAX : len); /* what parsed, counts */
            XML_ParserFree(st.p);
            if (st.stopped) /* a DTD: nothing from this body is worth believing */
                info = (struct s3_error_info){.http_status = http_status};
        }
    }
    if (!info.region[0] && info.endpoint[0])
        region_from_endpoint(info.endpoint, info.region, sizeof(info.region));
    *ret = info;
    return info.code[0] != '\0';
}

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
        snprintf(out, n, "denied — check the IAM role of the warmcache node service account (IRSA or Pod Identity): "
                         "it needs %s here, the bucket policy must allow it, and SSE-KMS objects need kms:Decrypt",
                 op);
        break;
    case FAULT_CREDENTIALS:
        snprintf(out, n, "refused: the credentials are wrong (unknown access key id or wrong secret key) — check "
                         "the node-stage secret, or the IRSA / Pod Identity setup of the warmcache node service "
                         "account");
        break;
    case FAULT_EXPIRED:
        snprintf(out, n, "refused: the credentials have expired — warmcache refreshes them before expiry, so check "
                         "the node's clock and that the service account token (IRSA / Pod Identity) is still issued");
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
        snprintf(out, n, "throttled: S3 asked to slow down (HTTP %ld) — retryable, warmcache backs off and retries",
                 ei->http_status);
        break;
    case FAULT_SERVER:
        snprintf(out, n, "failed on the server side (HTTP %ld) — retryable, warmcache backs off and retries",
                 ei->http_status);
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
