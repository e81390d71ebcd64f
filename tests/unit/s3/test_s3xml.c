/* S3 bodies are untrusted: well-formed pages parse, hostile ones are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/listing.h"
#include "s3/xml.h"

#define HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
#define OBJ(k, size, etag) "<Contents><Key>" k "</Key><LastModified>2026-11-01T00:00:00.000Z</LastModified><ETag>" etag \
    "</ETag><Size>" size "</Size><StorageClass>STANDARD</StorageClass></Contents>"

static int add(void *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    return listing_add(ctx, key, len, size, etag);
}

static int parse(const char *body, struct listing *l, struct s3_list_page *pg, struct wc_error *e)
{
    return s3_parse_list_page(body, strlen(body), "models/llama/", add, l, pg, e);
}

static void a_normal_page(void **state)
{
    const char *b = HEAD "<Name>b</Name><Prefix>models/llama/</Prefix><KeyCount>3</KeyCount><IsTruncated>false</IsTruncated>"
        OBJ("models/llama/config.json", "99", "&quot;9b2cf535f27731c974343645a3985328&quot;")
        OBJ("models/llama/model-00001-of-00002.safetensors", "5368709120", "\"e9a3f6c4d2b1-320\"")
        OBJ("models/llama/tokenizer/", "0", "\"d41d8cd98f00b204e9800998ecf8427e\"")
        "</ListBucketResult>";
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_int_equal(l.n, 2); /* the folder marker is not an object of the copy */
    assert_string_equal(l.v[0].key, "config.json");
    assert_string_equal(l.v[0].etag, "9b2cf535f27731c974343645a3985328");
    assert_int_equal(l.v[1].size, 5368709120ULL);
    assert_string_equal(l.v[1].etag, "e9a3f6c4d2b1-320");
    assert_false(pg.truncated);
    assert_int_equal(pg.keys, 3);
    listing_free(&l);
}

static void a_truncated_page_carries_its_token(void **state)
{
    const char *b = HEAD "<IsTruncated>true</IsTruncated>" OBJ("models/llama/a", "1", "\"x\"")
        "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken></ListBucketResult>";
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(b, &l, &pg, &e), 0);
    assert_true(pg.truncated);
    assert_string_equal(pg.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
    listing_free(&l);
    const char *no_token = HEAD "<IsTruncated>true</IsTruncated></ListBucketResult>";
    assert_int_equal(parse(no_token, &l, &pg, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "continuation token"));
}

static void an_empty_page(void **state)
{
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(HEAD "<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>", &l, &pg, &e), 0);
    assert_int_equal(l.n, 0);
}

static void hostile_keys_are_refused_and_quoted(void **state)
{
    static const char *const bodies[] = {
        HEAD OBJ("models/llama/../../etc/cron.d/x", "1", "\"e\"") "</ListBucketResult>",
        HEAD OBJ("models/llama//etc/passwd", "1", "\"e\"") "</ListBucketResult>",
        HEAD OBJ("models/llama/a&#27;[31mred", "1", "\"e\"") "</ListBucketResult>",
        HEAD OBJ("other/prefix/x", "1", "\"e\"") "</ListBucketResult>",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        struct listing l = {0};
        struct s3_list_page pg;
        struct wc_error e;
        assert_int_equal(parse(bodies[i], &l, &pg, &e), -EINVAL);
        assert_null(strchr(e.msg, '\x1b'));
        listing_free(&l);
    }
}

static void bad_sizes_are_refused(void **state)
{
    static const char *const sizes[] = {"-1", "12x", "", "6000000000000", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char b[1024];
        snprintf(b, sizeof(b), HEAD "<Contents><Key>models/llama/a</Key><Size>%s</Size></Contents></ListBucketResult>",
                 sizes[i]);
        struct listing l = {0};
        struct s3_list_page pg;
        struct wc_error e;
        assert_int_equal(parse(b, &l, &pg, &e), -EINVAL);
        listing_free(&l);
    }
}

static void doctype_and_entities_are_refused(void **state)
{
    const char *laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]>"
                         "<ListBucketResult><Contents><Key>models/llama/&lol2;</Key><Size>1</Size></Contents></ListBucketResult>";
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(laughs, &l, &pg, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "DOCTYPE"));
    listing_free(&l);
}

static void over_long_key_and_truncated_xml_are_refused(void **state)
{
    char *b = malloc(4096);
    char key[1200];
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    snprintf(b, 4096, HEAD "<Contents><Key>models/llama/%s</Key><Size>1</Size></Contents></ListBucketResult>", key);
    struct listing l = {0};
    struct s3_list_page pg;
    struct wc_error e;
    assert_int_equal(parse(b, &l, &pg, &e), -EINVAL);
    assert_int_equal(parse(HEAD "<Contents><Key>models/llama/a</Key><Si", &l, &pg, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "not well-formed"));
    listing_free(&l);
    free(b);
}

static void error_bodies(void **state)
{
    const char *b = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AuthorizationHeaderMalformed</Code>"
                    "<Message>the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1</Region>"
                    "<RequestId>4442587FB7D0A2F9</RequestId></Error>";
    struct s3_error_info ei;
    s3_parse_error(b, strlen(b), 400, &ei);
    assert_string_equal(ei.code, "AuthorizationHeaderMalformed");
    assert_string_equal(ei.region, "eu-west-1");
    assert_int_equal(ei.http_status, 400);
    s3_parse_error("<html>Service Unavailable</html>", 32, 503, &ei);
    assert_string_equal(ei.code, "");
    assert_int_equal(ei.http_status, 503);
    s3_parse_error("", 0, 500, &ei);
    assert_int_equal(ei.http_status, 500);
    const char *evil = "<Error><Code>Access\x1b[2JDenied</Code></Error>";
    s3_parse_error(evil, strlen(evil), 403, &ei);
    assert_null(strchr(ei.code, '\x1b'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_normal_page),
        cmocka_unit_test(a_truncated_page_carries_its_token),
        cmocka_unit_test(an_empty_page),
        cmocka_unit_test(hostile_keys_are_refused_and_quoted),
        cmocka_unit_test(bad_sizes_are_refused),
        cmocka_unit_test(doctype_and_entities_are_refused),
        cmocka_unit_test(over_long_key_and_truncated_xml_are_refused),
        cmocka_unit_test(error_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
