/*
 * S3 bodies are untrusted: real ListObjectsV2 pages parse into the listing a
 * copy is made from; hostile or broken ones are refused with a message that
 * names the element or the key; error bodies become an errno and one line an
 * admin can act on, with no secret in it. Bodies follow the shapes of the S3
 * API reference (ListObjectsV2, Error responses).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/listing.h"
#include "s3/errors.h"
#include "s3/xml.h"

#define PREFIX "models/llama/"
#define XMLDECL "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
#define HEAD XMLDECL "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
#define TAIL "</ListBucketResult>"
#define NOT_TRUNCATED "<IsTruncated>false</IsTruncated>"
#define OBJ(k, size, etag)                                                                                      \
    "<Contents><Key>" k "</Key><LastModified>2026-11-01T09:12:44.000Z</LastModified><ETag>" etag "</ETag>"    \
    "<Size>" size "</Size><StorageClass>STANDARD</StorageClass></Contents>"
/* a page with one object whose Key/Size/ETag are given */
#define ONE(k, size, etag) HEAD NOT_TRUNCATED OBJ(k, size, etag) TAIL

static int add(void *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    return listing_add(ctx, key, len, size, etag);
}

static int parse_len(const char *body, size_t len, struct listing *l, struct s3_list_page *pg, struct wc_error *e)
{
    return s3_parse_list_page(body, len, PREFIX, add, l, pg, e);
}

static int parse(const char *body, struct listing *l, struct s3_list_page *pg, struct wc_error *e)
{
    return parse_len(body, strlen(body), l, pg, e);
}

/* The body is refused with -EINVAL, nothing reaches the listing past the
 * refusal, and the message contains want (and never a raw control byte). */
static void refused(const char *body, const char *want)
{
    struct listing l = {0};
    struct s3_list_page pg = {.keys = 4242};
    struct wc_error e = {0};
    int r = parse(body, &l, &pg, &e);
    if (r != -EINVAL || !strstr(e.msg, want))
        fail_msg("expected -EINVAL with \"%s\", got %d \"%s\" for %s", want, r, e.msg, body);
    assert_int_equal(e.code, -EINVAL);
    assert_int_equal(pg.keys, 4242); /* ret_page untouched on failure */
    for (const char *p = e.msg; *p; p++)
        assert_false((unsigned char)*p < 0x20 || *p == 0x7f);
    listing_free(&l);
}

/* ---- listings ------------------------------------------------------------------ */

static void a_console_shaped_page_becomes_a_listing(void **state)
{
    const char *b = HEAD
        "<Name>ml-weights</Name><Prefix>models/llama/</Prefix><KeyCount>4</KeyCount><MaxKeys>1000</MaxKeys>"
        "<IsTruncated>false</IsTruncated>"
        "<Contents><Key>models/llama/</Key><LastModified>2026-10-30T08:00:00.000Z</LastModified>"
        "<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>"
        "<ChecksumType>FULL_OBJECT</ChecksumType><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>"
        "<Contents><Key>models/llama/config.json</Key><LastModified>2026-10-30T08:01:00.000Z</LastModified>"
        "<ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>"
        "<ChecksumAlgorithm>SHA256</ChecksumAlgorithm><Size>659</Size>"
        "<Owner><DisplayName>ml-team</DisplayName><ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a"
        "</ID></Owner><StorageClass>STANDARD</StorageClass></Contents>"
        "<Contents><Key>models/llama/model-00001-of-00002.safetensors</Key>"
        "<LastModified>2026-10-30T08:05:00.000Z</LastModified><ETag>\"e9a3f6c4d2b1a0f9e8d7c6b5a4938271-320\"</ETag>"
        "<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm><Size>5368709120</Size>"
        "<StorageClass>INTELLIGENT_TIERING</StorageClass></Contents>"
        "<Contents><Key>models/llama/t\xc3\xb6kenizer/vocab \xe6\x97\xa5\xe6\x9c\xac.txt</Key>"
        "<ETag>\"0cc175b9c0f1b6a831c399e269772661\"</ETag><ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>"
        "<Size>1</Size><RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress></RestoreStatus></Contents>"
        TAIL;
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_int_equal(l.n, 3); /* the prefix's own folder marker is not an object */
    assert_string_equal(l.v[0].key, "config.json");
    assert_int_equal(l.v[0].size, 659);
    assert_string_equal(l.v[0].etag, "9b2cf535f27731c974343645a3985328");
    assert_string_equal(l.v[1].key, "model-00001-of-00002.safetensors");
    assert_int_equal(l.v[1].size, 5368709120ULL);
    assert_string_equal(l.v[1].etag, "e9a3f6c4d2b1a0f9e8d7c6b5a4938271-320");
    assert_string_equal(l.v[2].key, "t\xc3\xb6kenizer/vocab \xe6\x97\xa5\xe6\x9c\xac.txt");
    assert_int_equal(l.bytes, 659 + 5368709120ULL + 1);
    assert_false(pg.truncated);
    assert_string_equal(pg.next_token, "");
    assert_int_equal(pg.keys, 4);
    assert_int_equal(pg.objects, 3);
    assert_int_equal(pg.key_count, 4);
    assert_int_equal(pg.checksums, S3_CHECKSUM_CRC64NVME); /* SHA256 only on one of them */
    assert_int_equal(listing_finalize(&l, &e), 0);
    listing_free(&l);
}

static void checksums_are_what_every_object_has(void **state)
{
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    const char *none = HEAD NOT_TRUNCATED OBJ("models/llama/a", "1", "\"x\"") TAIL;
    assert_int_equal(parse(none, &l, &pg, &e), 0);
    assert_int_equal(pg.checksums, 0);
    const char *unknown_alg = HEAD NOT_TRUNCATED
        "<Contents><Key>models/llama/b</Key><ETag>\"y\"</ETag><Size>1</Size>"
        "<ChecksumAlgorithm>CRC32C</ChecksumAlgorithm>"
        "<ChecksumAlgorithm>BLAKE9</ChecksumAlgorithm></Contents>" TAIL;
    assert_int_equal(parse(unknown_alg, &l, &pg, &e), 0);
    assert_int_equal(pg.checksums, S3_CHECKSUM_CRC32C);
    listing_free(&l);
}

static void a_truncated_page_carries_its_token(void **state)
{
    const char *b = HEAD "<Name>ml-weights</Name><Prefix>models/llama/</Prefix>"
        "<ContinuationToken>1w41l63U0xa8q7smH50vCxyTQqdxo69O3EmK28Bi5PcROI4wI/EyIJg==</ContinuationToken>"
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
        "<KeyCount>1</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>true</IsTruncated>"
        OBJ("models/llama/a", "1", "\"x\"") TAIL;
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_true(pg.truncated);
    assert_string_equal(pg.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    assert_int_equal(l.n, 1);
    listing_free(&l);

    /* a token on the last page means nothing: the caller must not follow it */
    const char *last = HEAD "<NextContinuationToken>stale</NextContinuationToken>" NOT_TRUNCATED TAIL;
    assert_int_equal(parse(last, &l, &pg, &e), 0);
    assert_false(pg.truncated);
    assert_string_equal(pg.next_token, "");

    refused(HEAD "<IsTruncated>true</IsTruncated>" OBJ("models/llama/a", "1", "\"x\"") TAIL,
            "truncated but has no continuation token (<NextContinuationToken>)");
    refused(HEAD OBJ("models/llama/a", "1", "\"x\"") TAIL, "no <IsTruncated>");
    refused(HEAD "<IsTruncated>yes</IsTruncated>" TAIL, "<IsTruncated> is \"yes\"");
    refused(HEAD "<IsTruncated>true</IsTruncated><NextContinuationToken>a&#10;b</NextContinuationToken>" TAIL,
            "<NextContinuationToken> contains a control character");
}

static void an_empty_page(void **state)
{
    const char *b = HEAD "<Name>ml-weights</Name><Prefix>models/llama/</Prefix><KeyCount>0</KeyCount>"
                         "<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>" TAIL;
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(pg.keys, 0);
    assert_int_equal(pg.objects, 0);
    assert_int_equal(pg.key_count, 0);
    assert_int_equal(pg.checksums, S3_CHECKSUM_ALL); /* neutral when ANDed over pages */
    assert_false(pg.truncated);
    /* the self-closing form some servers send */
    assert_int_equal(parse(XMLDECL "<ListBucketResult><Prefix>models/llama/</Prefix><IsTruncated>false</IsTruncated>"
                                   "<KeyCount>0</KeyCount><Contents/></ListBucketResult>",
                           &l, &pg, &e),
                     -EINVAL); /* an empty <Contents/> is an object without a key */
    assert_non_null(strstr(e.msg, "no <Key>"));
}

static void quoted_etags_are_unquoted(void **state)
{
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    const char *b = HEAD NOT_TRUNCATED OBJ("models/llama/a", "1", "&quot;abc&quot;")
        OBJ("models/llama/b", "1", "\"def-2\"")
        OBJ("models/llama/c", "1", "&#34;0123456789abcdef&#34;") OBJ("models/llama/d", "1", "bare") TAIL;
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_int_equal(l.n, 4);
    assert_string_equal(l.v[0].etag, "abc");
    assert_string_equal(l.v[1].etag, "def-2");
    assert_string_equal(l.v[2].etag, "0123456789abcdef");
    assert_string_equal(l.v[3].etag, "bare"); /* S3-compatible servers without quotes */
    listing_free(&l);
    /* the ETag ends up in an If-Match header: nothing that could split it */
    refused(ONE("models/llama/a", "1", "\"abc&#13;&#10;X-Injected: 1\""), "not an entity tag");
    refused(ONE("models/llama/a", "1", "\"a\"b\""), "not an entity tag");
    refused(ONE("models/llama/a", "1", "\"\""), "not an entity tag");
    refused(ONE("models/llama/a", "1", "W/\"weak\""), "not an entity tag");
    refused(HEAD NOT_TRUNCATED "<Contents><Key>models/llama/a</Key><Size>1</Size></Contents>" TAIL,
            "object \"models/llama/a\" has no <ETag>");
}

static void folder_markers_are_skipped(void **state)
{
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    const char *b = HEAD NOT_TRUNCATED OBJ("models/llama/", "0", "\"d41d8cd98f00b204e9800998ecf8427e\"")
        OBJ("models/llama/tokenizer/", "0", "\"d41d8cd98f00b204e9800998ecf8427e\"")
        OBJ("models/llama/tokenizer/merges.txt", "0", "\"d41d8cd98f00b204e9800998ecf8427e\"") TAIL;
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_int_equal(l.n, 1); /* an empty file is still a file */
    assert_string_equal(l.v[0].key, "tokenizer/merges.txt");
    assert_int_equal(l.v[0].size, 0);
    assert_int_equal(pg.keys, 3);
    assert_int_equal(pg.objects, 1);
    listing_free(&l);
    /* a "folder" with bytes in it cannot be a directory and a file at once */
    refused(ONE("models/llama/tokenizer/", "12", "\"e\""), "trailing \"/\"");
}

static void keys_outside_the_prefix_are_refused(void **state)
{
    refused(ONE("other/prefix/x", "1", "\"e\""),
            "key \"other/prefix/x\" is not under the listed prefix \"models/llama/\"");
    refused(ONE("models/llamas/x", "1", "\"e\""), "is not under the listed prefix");
    refused(ONE("models/", "0", "\"e\""), "is not under the listed prefix");
    refused(HEAD "<Prefix>models/</Prefix>" NOT_TRUNCATED TAIL,
            "the page is for prefix \"models/\", not the requested \"models/llama/\"");
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    const char *page = HEAD NOT_TRUNCATED TAIL;
    assert_int_equal(s3_parse_list_page(page, strlen(page), "models/llama", add, &l, &pg, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "must be empty or end in '/'"));
    /* the whole bucket: prefix "" */
    const char *b = ONE("a/b", "3", "\"e\"");
    assert_int_equal(s3_parse_list_page(b, strlen(b), "", add, &l, &pg, &e), 0);
    assert_string_equal(l.v[0].key, "a/b");
    listing_free(&l);
}

static void hostile_keys_are_refused_and_quoted(void **state)
{
    refused(ONE("models/llama/../../etc/cron.d/x", "1", "\"e\""),
            "object key \"../../etc/cron.d/x\" is refused: it has a \".\" or \"..\" component");
    refused(ONE("models/llama/a/./b", "1", "\"e\""), "\".\" or \"..\" component");
    refused(ONE("models/llama//etc/passwd", "1", "\"e\""),
            "object key \"/etc/passwd\" is refused: it is an absolute path");
    refused(ONE("models/llama/a//b", "1", "\"e\""), "empty path component");
    /* controls XML 1.0 can carry, as character references: quoted in the message */
    refused(ONE("models/llama/a&#10;b", "1", "\"e\""),
            "object key \"a\\x0ab\" is refused: it contains a control character");
    refused(ONE("models/llama/tab&#9;", "1", "\"e\""), "\"tab\\x09\"");
    refused(ONE("models/llama/cr&#13;", "1", "\"e\""), "\"cr\\x0d\"");
    /* an escape sequence cannot even be written in XML 1.0: not well-formed */
    refused(ONE("models/llama/a&#27;[31mred", "1", "\"e\""), "not well-formed XML");
    refused(ONE("models/llama/a\x1b[2Jred", "1", "\"e\""), "not well-formed XML");
}

static void doctypes_and_entities_are_refused(void **state)
{
    const char *laughs = XMLDECL "<!DOCTYPE lolz [<!ENTITY lol \"lol\">"
                                 "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
                                 "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
                                 "<!ENTITY lol9 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">]>"
                                 "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>models/llama/&lol9;"
                                 "</Key><ETag>\"e\"</ETag><Size>1</Size></Contents></ListBucketResult>";
    refused(laughs, "DOCTYPE");
    const char *xxe = XMLDECL "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                              "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>models/llama/&x;</Key>"
                              "<ETag>\"e\"</ETag><Size>1</Size></Contents></ListBucketResult>";
    refused(xxe, "DOCTYPE");
    refused(XMLDECL "<!DOCTYPE ListBucketResult SYSTEM \"http://169.254.169.254/latest/meta-data/\">"
                    "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
            "DOCTYPE");
    /* an undeclared entity is no way around it */
    refused(ONE("models/llama/&x;", "1", "\"e\""), "not well-formed XML");
}

#define KEYED HEAD NOT_TRUNCATED "<Contents><Key>%s</Key><ETag>\"e\"</ETag><Size>1</Size></Contents>" TAIL

static void over_long_values_are_refused_naming_the_element(void **state)
{
    /* 1024 bytes in all is S3's limit and ours: components of 200 bytes */
    char key[1100], body[4096];
    size_t n = strlen(PREFIX);
    memcpy(key, PREFIX, n);
    for (size_t i = n; i < 1024; i++)
        key[i] = i % 201 == 200 ? '/' : 'k';
    key[1023] = 'z';
    key[1024] = '\0';
    snprintf(body, sizeof(body), KEYED, key);
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(body, &l, &pg, &e), 0);
    assert_int_equal(strlen(l.v[0].key), 1024 - strlen(PREFIX));
    listing_free(&l);
    key[1024] = 'z';
    key[1025] = '\0';
    snprintf(body, sizeof(body), KEYED, key);
    refused(body, "a <Key> is longer than 1024 bytes (\"models/llama/kkk");

    char etag[200];
    memset(etag, 'a', 129);
    etag[129] = '\0';
    snprintf(body, sizeof(body), ONE("models/llama/a", "1", "%s"), etag);
    refused(body, "a <ETag> is longer than 128 bytes");

    char junk[300];
    memset(junk, '9', 257);
    junk[257] = '\0';
    snprintf(body, sizeof(body), ONE("models/llama/a", "%s", "\"e\""), junk);
    refused(body, "a <Size> is longer than 256 bytes");
    snprintf(body, sizeof(body), HEAD "<IsTruncated>%s</IsTruncated>" TAIL, junk);
    refused(body, "a <IsTruncated> is longer than 256 bytes");

    /* elements we do not keep cost nothing, however long */
    size_t big = 3u << 20;
    char *b = malloc(big + 512);
    assert_non_null(b);
    int o = snprintf(b, 512, HEAD NOT_TRUNCATED "<Contents><Key>models/llama/a</Key><ETag>\"e\"</ETag><Size>1</Size>"
                                                "<Owner><DisplayName>");
    memset(b + o, 'x', big);
    strcpy(b + o + big, "</DisplayName></Owner></Contents>" TAIL);
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_int_equal(l.n, 1);
    listing_free(&l);
    free(b);
}

static void bad_sizes_are_refused(void **state)
{
    static const char *const sizes[] = {
        "-1", "12x", "", " 12", "12 ", "+12", "0x10", "1e3", "1.0",
        "5497558138881" /* 5 TiB + 1 */, "18446744073709551616", "99999999999999999999999",
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char b[1024];
        snprintf(b, sizeof(b), ONE("models/llama/a", "%s", "\"e\""), sizes[i]);
        refused(b, "object \"models/llama/a\" has <Size>");
    }
    refused(HEAD NOT_TRUNCATED "<Contents><Key>models/llama/a</Key><ETag>\"e\"</ETag></Contents>" TAIL,
            "has no <Size>");
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(ONE("models/llama/a", "5497558138880", "\"e\""), &l, &pg, &e), 0); /* exactly 5 TiB */
    assert_int_equal(l.v[0].size, 5ULL << 40);
    listing_free(&l);
}

static void broken_or_foreign_bodies_are_refused(void **state)
{
    refused(HEAD NOT_TRUNCATED "<Contents><Key>models/llama/a</Key><Si", "not well-formed XML");
    refused(HEAD NOT_TRUNCATED OBJ("models/llama/a", "1", "\"e\""), "not well-formed XML"); /* cut after an object */
    refused("<html><body>502 Bad Gateway</body></html>", "the body is a <html> document, not a ListBucketResult");
    refused(XMLDECL "<Error><Code>InternalError</Code></Error>", "<Error> document");
    refused("", "the response body is empty");
    refused(HEAD "<EncodingType>url</EncodingType>" NOT_TRUNCATED OBJ("models/llama/a%20b", "1", "\"e\"") TAIL,
            "keys are encoded (EncodingType \"url\")");
    refused(HEAD NOT_TRUNCATED "<Contents><Key>models/llama/a</Key><Key>models/llama/b</Key><ETag>\"e\"</ETag>"
                               "<Size>1</Size></Contents>" TAIL,
            "an object has two <Key> elements");
    refused(HEAD NOT_TRUNCATED NOT_TRUNCATED TAIL, "the page has two <IsTruncated> elements");
    refused(HEAD NOT_TRUNCATED
            "<Contents><Key>models/llama/<b>x</b></Key><ETag>\"e\"</ETag><Size>1</Size></Contents>" TAIL,
            "<Key> has an element inside it");
    refused(HEAD "<KeyCount>-3</KeyCount>" NOT_TRUNCATED TAIL, "<KeyCount> is \"-3\"");
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    const char *b = ONE("models/llama/a", "1", "\"e\"");
    assert_int_equal(parse_len(b, strlen(b) - 5, &l, &pg, &e), -EINVAL); /* the length is honoured */
    listing_free(&l);
}

/* CommonPrefixes (a delimiter listing) hold <Prefix> too: not the page's. */
static void common_prefixes_are_ignored(void **state)
{
    const char *b = HEAD "<Prefix>models/llama/</Prefix>" NOT_TRUNCATED OBJ("models/llama/a", "1", "\"e\"")
        "<CommonPrefixes><Prefix>models/llama/tokenizer/</Prefix></CommonPrefixes>" TAIL;
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_int_equal(l.n, 1);
    listing_free(&l);
}

static int refuse_second(void *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    int *calls = ctx;
    (void)key, (void)len, (void)size, (void)etag;
    return ++*calls == 2 ? -ENOSPC : 0;
}

static void a_callback_failure_stops_the_parse(void **state)
{
    const char *b = HEAD NOT_TRUNCATED OBJ("models/llama/a", "1", "\"e\"") OBJ("models/llama/b", "1", "\"e\"")
        OBJ("models/llama/c", "1", "\"e\"") TAIL;
    int calls = 0;
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(s3_parse_list_page(b, strlen(b), PREFIX, refuse_second, &calls, &pg, &e), -ENOSPC);
    assert_int_equal(calls, 2);
    assert_int_equal(e.code, -ENOSPC);
    assert_non_null(strstr(e.msg, "models/llama/b"));
}

static void a_page_larger_than_one_parse_chunk(void **state)
{
    /* 12000 objects, ~2.5 MiB: fed to expat in pieces */
    size_t cap = 12000 * 256 + 512, o = 0; /* an object is ~215 bytes */
    char *b = malloc(cap);
    assert_non_null(b);
    o += (size_t)snprintf(b, cap, HEAD "<IsTruncated>true</IsTruncated>");
    for (int i = 0; i < 12000; i++)
        o += (size_t)snprintf(b + o, cap - o, OBJ("models/llama/shard-%05d.bin", "%d", "\"%032x\""), i, i, (unsigned)i);
    assert_true(o < cap - 100);
    o += (size_t)snprintf(b + o, cap - o, "<NextContinuationToken>next</NextContinuationToken>" TAIL);
    assert_true(o > (2u << 20));
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse_len(b, o, &l, &pg, &e), 0);
    assert_int_equal(l.n, 12000);
    assert_string_equal(l.v[11999].key, "shard-11999.bin");
    assert_int_equal(l.v[11999].size, 11999);
    assert_string_equal(pg.next_token, "next");
    listing_free(&l);
    free(b);
}

/* ---- error bodies ---------------------------------------------------------------- */

/* What the request carried: none of it may reach a message. */
static const char *const secrets[] = {
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    "FwoGZXIvYXdzEJr//////////wEaDOdvXp1Tcs5Ioc2S4CKwAR1Y3TWKd",
    "Signature=",
    "Credential=",
    "AWS4-HMAC-SHA256",
};

static int mapped(const char *body, long status, const char *op, const char *key, char *msg, size_t n)
{
    struct s3_error_info ei;
    s3_parse_error(body, body ? strlen(body) : 0, status, &ei);
    int r = s3_error_message(&ei, op, "ml-weights", key, msg, n);
    assert_int_equal(r, s3_error_errno(&ei));
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strstr(msg, secrets[i]))
            fail_msg("message leaks \"%s\": %s", secrets[i], msg);
    for (const char *p = msg; *p; p++)
        assert_false((unsigned char)*p < 0x20 || *p == 0x7f);
    return r;
}

static void expect(const char *body, long status, const char *op, int want_errno, const char *want1, const char *want2)
{
    char msg[WC_ERROR_MSG_MAX];
    int r = mapped(body, status, op, "models/llama/config.json", msg, sizeof(msg));
    if (r != want_errno || !strstr(msg, want1) || (want2 && !strstr(msg, want2)))
        fail_msg("got %d \"%s\"; wanted %d with \"%s\" and \"%s\"", r, msg, want_errno, want1, want2 ? want2 : "");
}

#define ERR(code, rest) XMLDECL "<Error><Code>" code "</Code>" rest "<RequestId>4442587FB7D0A2F9</RequestId>" \
    "<HostId>eftixk72aD6Ap51TnqcoF8eFidJG9Z/2mkiDFu8yU9AS1ed4OpIszj7UDNEHGran</HostId></Error>"

static void access_denied_points_at_the_iam_role(void **state)
{
    char msg[WC_ERROR_MSG_MAX];
    assert_int_equal(mapped(ERR("AccessDenied", "<Message>Access Denied</Message>"), 403, "s3:GetObject",
                            "models/llama/config.json", msg, sizeof(msg)),
                     -EACCES);
    assert_non_null(strstr(msg, "AccessDenied: s3:GetObject on s3://ml-weights/models/llama/config.json denied — "
                                "check the IAM role of the warmcache service account that asked"));
    assert_non_null(strstr(msg, "S3 said \"Access Denied\""));
    assert_non_null(strstr(msg, "(request id 4442587FB7D0A2F9)"));
    /* a HEAD or a proxy gives no body: the status alone */
    expect(NULL, 403, "s3:ListBucket", -EACCES, "HTTP 403: s3:ListBucket on s3://ml-weights/", "IRSA or Pod Identity");
}

static void bad_credentials_never_echo_them(void **state)
{
    /* SignatureDoesNotMatch as AWS sends it: the key id, string to sign and signature come back */
    const char *sig = ERR("SignatureDoesNotMatch",
        "<Message>The request signature we calculated does not match the signature you provided. Check your key and "
        "signing method.</Message><AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId>"
        "<StringToSign>AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972</StringToSign>"
        "<SignatureProvided>f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41</SignatureProvided>"
        "<CanonicalRequest>GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        "x-amz-security-token:FwoGZXIvYXdzEJr//////////wEaDOdvXp1Tcs5Ioc2S4CKwAR1Y3TWKd\n</CanonicalRequest>");
    expect(sig, 403, "s3:GetObject", -EACCES, "SignatureDoesNotMatch: s3:GetObject on", "the credentials are wrong");
    expect(ERR("InvalidAccessKeyId", "<Message>The AWS Access Key Id you provided does not exist in our records."
                                     "</Message><AWSAccessKeyId>AKIAIOSFODNN7EXAMPLE</AWSAccessKeyId>"),
           403, "s3:ListBucket", -EACCES, "the credentials are wrong", "(provisioner or node-stage secret)");
    /* ExpiredToken echoes the session token itself */
    expect(ERR("ExpiredToken", "<Message>The provided token has expired.</Message>"
                               "<Token-0>FwoGZXIvYXdzEJr//////////wEaDOdvXp1Tcs5Ioc2S4CKwAR1Y3TWKd</Token-0>"),
           400, "s3:GetObject", -EACCES, "the credentials have expired", "node's clock");
    expect(ERR("RequestTimeTooSkewed", "<Message>The difference between the request time and the current time is "
                                       "too large.</Message><MaxAllowedRequestTimeSkewMilliseconds>900000"
                                       "</MaxAllowedRequestTimeSkewMilliseconds>"),
           403, "s3:GetObject", -EACCES, "clock", "chrony/NTP");
    /* a server that quotes our Authorization header back gets its message withheld */
    expect(ERR("AccessDenied", "<Message>bad Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
                               "us-east-1/s3/aws4_request, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd9"
                               "1039c6036bdb41</Message>"),
           403, "s3:GetObject", -EACCES, "S3 said \"(withheld: it quotes request credentials)\"", NULL);
    expect(ERR("AccessDenied", "<Message>key ASIAIOSFODNN7EXAMPLE is not allowed</Message>"), 403, "s3:GetObject",
           -EACCES, "withheld", NULL);
}

static void a_missing_bucket_is_the_storage_class_s_fault(void **state)
{
    expect(ERR("NoSuchBucket", "<Message>The specified bucket does not exist</Message><BucketName>ml-weights"
                               "</BucketName>"),
           404, "s3:ListBucket", -EINVAL, "bucket \"ml-weights\" does not exist", "StorageClass");
    expect(ERR("InvalidBucketName", "<Message>The specified bucket is not valid.</Message>"), 400, "s3:ListBucket",
           -EINVAL, "not a valid bucket name", NULL);
}

static void a_wrong_region_names_the_right_one(void **state)
{
    expect(ERR("AuthorizationHeaderMalformed", "<Message>The authorization header is malformed; the region "
                                               "'us-east-1' is wrong; expecting 'eu-west-1'</Message>"
                                               "<Region>eu-west-1</Region>"),
           400, "s3:ListBucket", -EINVAL, "the bucket is in region eu-west-1", "region to eu-west-1");
    /* 301 PermanentRedirect names an endpoint only */
    expect(ERR("PermanentRedirect", "<Message>The bucket you are attempting to access must be addressed using the "
                                    "specified endpoint. Please send all future requests to this endpoint.</Message>"
                                    "<Endpoint>ml-weights.s3.ap-southeast-2.amazonaws.com</Endpoint>"
                                    "<Bucket>ml-weights</Bucket>"),
           301, "s3:ListBucket", -EINVAL, "region ap-southeast-2", "StorageClass parameter region");
    expect(ERR("PermanentRedirect", "<Endpoint>ml-weights.s3.amazonaws.com</Endpoint>"), 301, "s3:ListBucket", -EINVAL,
           "region us-east-1", NULL);
    expect(ERR("PermanentRedirect", "<Endpoint>my.s3.bucket.s3.dualstack.eu-central-1.amazonaws.com</Endpoint>"), 301,
           "s3:ListBucket", -EINVAL, "region eu-central-1", NULL);
    expect(ERR("PermanentRedirect", "<Endpoint>minio.internal:9000</Endpoint>"), 301, "s3:ListBucket", -EINVAL,
           "S3 points to minio.internal:9000", NULL);
    expect(NULL, 301, "s3:ListBucket", -EINVAL, "HTTP 301", "another region");
    /* a Region that is not one is not repeated as advice */
    expect(ERR("AuthorizationHeaderMalformed", "<Region>eu-west-1; rm -rf /</Region>"), 400, "s3:ListBucket", -EINVAL,
           "the bucket is in another region", NULL);

    struct s3_error_info ei;
    const char *b = ERR("PermanentRedirect", "<Endpoint>b.s3-us-west-2.amazonaws.com</Endpoint>");
    assert_int_equal(s3_parse_error(b, strlen(b), 301, &ei), 1);
    assert_string_equal(ei.region, "us-west-2");
    assert_string_equal(ei.endpoint, "b.s3-us-west-2.amazonaws.com");
    b = ERR("PermanentRedirect", "<Endpoint>b.s3-external-1.amazonaws.com</Endpoint>");
    s3_parse_error(b, strlen(b), 301, &ei);
    assert_string_equal(ei.region, ""); /* not a region label: say nothing rather than something wrong */
}

static void a_changed_source_is_stale(void **state)
{
    expect(ERR("NoSuchKey", "<Message>The specified key does not exist.</Message><Key>models/llama/config.json</Key>"),
           404, "s3:GetObject", -ESTALE, "deleted after the source was listed", "source changed");
    expect(ERR("PreconditionFailed", "<Message>At least one of the pre-conditions you specified did not hold</Message>"
                                     "<Condition>If-Match</Condition>"),
           412, "s3:GetObject", -ESTALE, "overwritten after the source was listed", NULL);
    expect(NULL, 412, "s3:GetObject", -ESTALE, "HTTP 412", "ETag no longer matches");
    expect(ERR("InvalidRange", "<Message>The requested range is not satisfiable</Message>"), 416, "s3:GetObject",
           -ESTALE, "shorter than when", NULL);
}

static void busy_or_broken_servers_are_retried(void **state)
{
    expect(ERR("SlowDown", "<Message>Please reduce your request rate.</Message>"), 503, "s3:GetObject", -EAGAIN,
           "SlowDown:", "retries");
    expect(ERR("InternalError", "<Message>We encountered an internal error. Please try again.</Message>"), 500,
           "s3:GetObject", -EAGAIN, "HTTP 500", "retries");
    expect(ERR("ServiceUnavailable", "<Message>Reduce your request rate.</Message>"), 503, "s3:ListBucket", -EAGAIN,
           "retries", NULL);
    expect(NULL, 502, "s3:GetObject", -EAGAIN, "HTTP 502: s3:GetObject", "retries");
    /* a load balancer's HTML page in front of S3 */
    const char *html = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
                       "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n";
    struct s3_error_info ei;
    assert_int_equal(s3_parse_error(html, strlen(html), 503, &ei), 0);
    assert_string_equal(ei.code, "");
    assert_string_equal(ei.message, "");
    expect(html, 503, "s3:GetObject", -EAGAIN, "HTTP 503: s3:GetObject on s3://ml-weights/models/llama/config.json",
           "retries");
    expect("upstream connect error or disconnect/reset before headers", 503, "s3:GetObject", -EAGAIN, "HTTP 503", NULL);
    /* what halves the node's request rate (s3/rate.h): S3 saying slow down, not an outage's 503 page */
    assert_int_equal(s3_error_throttled(&ei), 0);
    const char *slow = ERR("SlowDown", "<Message>Please reduce your request rate.</Message>");
    s3_parse_error(slow, strlen(slow), 503, &ei);
    assert_int_equal(s3_error_throttled(&ei), 1);
    s3_parse_error("", 0, 429, &ei); /* no body: the status alone */
    assert_int_equal(s3_error_throttled(&ei), 1);
    /* only the children of an S3 <Error> are believed, not a page that happens to say <Code> */
    const char *page = "<html><body><Code>AccessDenied</Code><Error><Code>NoSuchKey</Code></Error></body></html>";
    assert_int_equal(s3_parse_error(page, strlen(page), 503, &ei), 0);
    assert_string_equal(ei.code, "");
    expect(page, 503, "s3:GetObject", -EAGAIN, "HTTP 503", NULL);
}

static void archived_objects_must_be_restored(void **state)
{
    expect(ERR("InvalidObjectState", "<Message>The operation is not valid for the object's storage class</Message>"
                                     "<StorageClass>DEEP_ARCHIVE</StorageClass>"),
           403, "s3:GetObject", -EINVAL, "archived", "restore it");
}

static void other_failures(void **state)
{
    expect(ERR("NotImplemented", "<Message>A header you provided implies functionality that is not implemented"
                                 "</Message>"),
           501, "s3:ListBucket", -EOPNOTSUPP, "does not implement", "S3-compatible");
    expect(NULL, 404, "s3:ListBucket", -ENOENT, "HTTP 404", "not found");
    expect(ERR("MalformedXML", "<Message>The XML you provided was not well-formed</Message>"), 400, "s3:ListBucket",
           -EIO, "MalformedXML: s3:ListBucket on s3://ml-weights/models/llama/config.json failed (HTTP 400)",
           "S3 said \"The XML you provided was not well-formed\"");
    expect(ERR("AccessDeniedByPolicyEngineV9", ""), 403, "s3:GetObject", -EACCES, "IRSA", NULL); /* status decides */
}

static void server_text_is_escaped_and_bounded(void **state)
{
    struct s3_error_info ei;
    const char *evil = ERR("Access&#13;&#10;Denied", "<Message>line one&#10;\xe2\x80\xae" "evil&#9;\\x</Message>");
    assert_int_equal(s3_parse_error(evil, strlen(evil), 403, &ei), 1);
    assert_string_equal(ei.code, "Access\\x0d\\x0aDenied");
    assert_string_equal(ei.message, "line one\\x0a\\xe2\\x80\\xaeevil\\x09\\x5cx");
    char msg[WC_ERROR_MSG_MAX];
    assert_int_equal(mapped(evil, 403, "s3:GetObject", "k", msg, sizeof(msg)), -EACCES);

    /* a long message is cut, not refused; a short buffer is cut too */
    char body[4096], longmsg[2000];
    memset(longmsg, 'm', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = '\0';
    snprintf(body, sizeof(body), ERR("SlowDown", "<Message>%s</Message>"), longmsg);
    s3_parse_error(body, strlen(body), 503, &ei);
    assert_true(strlen(ei.message) < sizeof(ei.message));
    assert_non_null(strstr(ei.message, "mmm..."));
    assert_string_equal(ei.request_id, "4442587FB7D0A2F9");
    char tiny[24];
    assert_int_equal(mapped(body, 503, "s3:GetObject", "k", tiny, sizeof(tiny)), -EAGAIN);
    assert_string_equal(tiny, "SlowDown: s3:GetObject ");

    /* a DOCTYPE in an error body: nothing from it is believed */
    const char *dtd = XMLDECL "<!DOCTYPE e [<!ENTITY x \"NoSuchKey\">]><Error><Code>&x;</Code></Error>";
    assert_int_equal(s3_parse_error(dtd, strlen(dtd), 503, &ei), 0);
    assert_string_equal(ei.code, "");
    assert_int_equal(s3_error_errno(&ei), -EAGAIN);
    /* a cut body keeps what came before the cut */
    const char *cut = XMLDECL "<Error><Code>SlowDown</Code><Message>Please red";
    assert_int_equal(s3_parse_error(cut, strlen(cut), 503, &ei), 1);
    assert_string_equal(ei.code, "SlowDown");
    /* bucket and key from the caller are quoted too */
    assert_int_equal(s3_parse_error(NULL, 0, 403, &ei), 0);
    s3_error_message(&ei, "s3:GetObject", "b", "dir/a\nb", msg, sizeof(msg));
    assert_non_null(strstr(msg, "s3://b/dir/a\\x0ab"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_console_shaped_page_becomes_a_listing),
        cmocka_unit_test(checksums_are_what_every_object_has),
        cmocka_unit_test(a_truncated_page_carries_its_token),
        cmocka_unit_test(an_empty_page),
        cmocka_unit_test(quoted_etags_are_unquoted),
        cmocka_unit_test(folder_markers_are_skipped),
        cmocka_unit_test(keys_outside_the_prefix_are_refused),
        cmocka_unit_test(hostile_keys_are_refused_and_quoted),
        cmocka_unit_test(doctypes_and_entities_are_refused),
        cmocka_unit_test(over_long_values_are_refused_naming_the_element),
        cmocka_unit_test(bad_sizes_are_refused),
        cmocka_unit_test(broken_or_foreign_bodies_are_refused),
        cmocka_unit_test(common_prefixes_are_ignored),
        cmocka_unit_test(a_callback_failure_stops_the_parse),
        cmocka_unit_test(a_page_larger_than_one_parse_chunk),
        cmocka_unit_test(access_denied_points_at_the_iam_role),
        cmocka_unit_test(bad_credentials_never_echo_them),
        cmocka_unit_test(a_missing_bucket_is_the_storage_class_s_fault),
        cmocka_unit_test(a_wrong_region_names_the_right_one),
        cmocka_unit_test(a_changed_source_is_stale),
        cmocka_unit_test(busy_or_broken_servers_are_retried),
        cmocka_unit_test(archived_objects_must_be_restored),
        cmocka_unit_test(other_failures),
        cmocka_unit_test(server_text_is_escaped_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
