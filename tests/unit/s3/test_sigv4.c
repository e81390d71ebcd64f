/*
 * SigV4 against the examples AWS publishes for S3 ("Signature Calculations
 * for the Authorization Header: Transferring Payload in a Single Chunk"):
 * bucket examplebucket, us-east-1, access key AKIAIOSFODNN7EXAMPLE, at
 * 20130524T000000Z. Each case checks the whole Authorization header.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "s3/sigv4.h"

#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const struct sigv4_credentials creds = {
    .access_key_id = "AKIAIOSFODNN7EXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};
static const time_t when = 1369353600; /* 2013-05-24T00:00:00Z */

static void check(const struct sigv4_request *rq, const char *signed_headers, const char *signature)
{
    struct sigv4_result r;
    struct wc_error e;
    assert_int_equal(sigv4_sign(rq, &creds, "us-east-1", "s3", when, &r, &e), 0);
    char want[1024];
    snprintf(want, sizeof(want),
             "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
             "SignedHeaders=%s, Signature=%s", signed_headers, signature);
    assert_string_equal(r.authorization, want);
    assert_string_equal(r.amz_date, "20130524T000000Z");
    sigv4_result_free(&r);
}

static void get_object_with_range(void **state)
{
    const struct sigv4_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"}, {"Range", "bytes=0-9"},
                                     {"x-amz-content-sha256", EMPTY_SHA}};
    const struct sigv4_request rq = {"GET", "/test.txt", NULL, h, 3, EMPTY_SHA};
    check(&rq, "host;range;x-amz-content-sha256;x-amz-date",
          "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    /* and the canonical request is exactly the documented one */
    struct sigv4_result r;
    struct wc_error e;
    assert_int_equal(sigv4_sign(&rq, &creds, "us-east-1", "s3", when, &r, &e), 0);
    assert_string_equal(r.canonical_request,
                        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                        "x-amz-content-sha256:" EMPTY_SHA "\nx-amz-date:20130524T000000Z\n\n"
                        "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA);
    assert_string_equal(r.string_to_sign,
                        "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    sigv4_result_free(&r);
}

static void put_object(void **state)
{
    const char *body_sha = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    const struct sigv4_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                     {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
                                     {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                                     {"x-amz-content-sha256", body_sha}};
    const struct sigv4_request rq = {"PUT", "/test%24file.text", NULL, h, 4, body_sha};
    check(&rq, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
          "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void get_bucket_lifecycle(void **state)
{
    const struct sigv4_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                     {"x-amz-content-sha256", EMPTY_SHA}};
    const struct sigv4_request rq = {"GET", "/", "lifecycle", h, 2, EMPTY_SHA};
    check(&rq, "host;x-amz-content-sha256;x-amz-date",
          "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void list_objects_query_is_sorted(void **state)
{
    const struct sigv4_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"},
                                     {"x-amz-content-sha256", EMPTY_SHA}};
    const struct sigv4_request rq = {"GET", "/", "prefix=J&max-keys=2", h, 2, EMPTY_SHA};
    check(&rq, "host;x-amz-content-sha256;x-amz-date",
          "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void header_values_are_trimmed_and_names_lowered(void **state)
{
    const struct sigv4_header a[] = {{"Host", "examplebucket.s3.amazonaws.com"}, {"RANGE", "  bytes=0-9  "},
                                     {"X-Amz-Content-Sha256", EMPTY_SHA}};
    const struct sigv4_request rq = {"GET", "/test.txt", NULL, a, 3, EMPTY_SHA};
    check(&rq, "host;range;x-amz-content-sha256;x-amz-date",
          "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void session_token_is_signed(void **state)
{
    struct sigv4_credentials c = creds;
    c.session_token = "FQoGZXIvYXdzEXAMPLE";
    const struct sigv4_header h[] = {{"Host", "examplebucket.s3.amazonaws.com"}};
    const struct sigv4_request rq = {"GET", "/test.txt", NULL, h, 1, EMPTY_SHA};
    struct sigv4_result r;
    struct wc_error e;
    assert_int_equal(sigv4_sign(&rq, &c, "us-east-1", "s3", when, &r, &e), 0);
    assert_non_null(strstr(r.authorization, "SignedHeaders=host;x-amz-date;x-amz-security-token,"));
    assert_non_null(strstr(r.canonical_request, "x-amz-security-token:FQoGZXIvYXdzEXAMPLE\n"));
    sigv4_result_free(&r);
}

static void missing_credentials_are_refused_without_leaking(void **state)
{
    struct sigv4_credentials c = {.access_key_id = "AKIAIOSFODNN7EXAMPLE", .secret_access_key = ""};
    const struct sigv4_header h[] = {{"Host", "h"}};
    const struct sigv4_request rq = {"GET", "/", NULL, h, 1, EMPTY_SHA};
    struct sigv4_result r;
    struct wc_error e;
    assert_int_equal(sigv4_sign(&rq, &c, "us-east-1", "s3", when, &r, &e), -EACCES);
    assert_null(strstr(e.msg, "AKIA"));
}

static void uri_encoding(void **state)
{
    char out[128];
    assert_int_equal(sigv4_uri_encode("models/llama 3/model$1.bin", 1, out, sizeof(out)), 0);
    assert_string_equal(out, "models/llama%203/model%241.bin");
    assert_int_equal(sigv4_uri_encode("a/b", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "a%2Fb");
    assert_int_equal(sigv4_uri_encode("~-._ök", 1, out, sizeof(out)), 0);
    assert_string_equal(out, "~-._%C3%B6k");
    assert_int_equal(sigv4_uri_encode("aaaa", 1, out, 4), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_object_with_range),
        cmocka_unit_test(put_object),
        cmocka_unit_test(get_bucket_lifecycle),
        cmocka_unit_test(list_objects_query_is_sorted),
        cmocka_unit_test(header_values_are_trimmed_and_names_lowered),
        cmocka_unit_test(session_token_is_signed),
        cmocka_unit_test(missing_credentials_are_refused_without_leaking),
        cmocka_unit_test(uri_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
