/*
 * S3 error bodies (see errors.h): parsed tolerantly, each kept value reduced
 * to printable ASCII, request material never kept; and the region an AWS
 * <Endpoint> names, for the wrong-region advice.
 */
#include "s3/errors.h"
#include "base/macros.h"
#include "s3/sax.h"

#include <stdio.h>
#include <string.h>

#define ERROR_BODY_MAX (64u << 10)     /* S3's error bodies are < 2 KiB; past this it is not S3 talking */

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
            sax_text_start(&st->text, efields[f].max);
            return;
        }
}

static void XMLCALL err_text(void *ud, const XML_Char *s, int len)
{
    struct err_state *st = ud;
    if (!st->stopped && st->cur != EF_NONE)
        sax_text_add(&st->text, s, (size_t)len); /* tolerant: too long is cut, not refused */
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
            sax_ascii_quote(t->s, t->n, t->over, dst, size);
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
            sax_set_no_dtd(st.p, err_doctype, err_entity);
            (void)sax_feed(st.p, body, len > ERROR_BODY_MAX ? ERROR_BODY_MAX : len); /* what parsed, counts */
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

