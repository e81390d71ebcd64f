/*
 * Credential providers answer over the network, so their bodies are
 * untrusted too: an STS AssumeRoleWithWebIdentity response and the JSON of
 * IMDS / Pod Identity parse into credentials with their expiry; errors become
 * a message with the provider's code; hostile bodies (a DTD, a header
 * injection, a missing expiry) are refused. Shapes follow the STS API
 * reference and the IMDS and EKS Pod Identity documentation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "s3/client.h"
#include "s3/creds.h"

#define STS_OK                                                                                                   \
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"                   \
    "<AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>system:serviceaccount:kube-system:warmcache"  \
    "</SubjectFromWebIdentityToken><Credentials><SessionToken>FwoGZXIvYXdzEBYaDHRva2Vu</SessionToken>"          \
    "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>"                               \
    "<Expiration>2026-11-25T11:00:00Z</Expiration><AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>"             \
    "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"

static void sts_response_parses(void **state)
{
    struct creds c = {0};
    struct wc_error e;
    assert_int_equal(creds_parse_sts(STS_OK, strlen(STS_OK), &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
    assert_string_equal(c.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
    assert_string_equal(c.session_token, "FwoGZXIvYXdzEBYaDHRva2Vu");
    assert_int_equal(c.expires, 1795604400); /* 2026-11-25T11:00:00Z */
}

static void sts_error_names_its_code(void **state)
{
    const char *b = "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                    "<Message>Incorrect token audience</Message></Error></ErrorResponse>";
    struct creds c = {0};
    struct wc_error e;
    assert_int_equal(creds_parse_sts(b, strlen(b), &c, &e), -EACCES);
    assert_non_null(strstr(e.msg, "InvalidIdentityToken: Incorrect token audience"));
}

static void hostile_sts_bodies_are_refused(void **state)
{
    const char *bodies[] = {
        "<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>",
        "not xml at all",
        /* a header split hidden in the token */
        "<R><Credentials><AccessKeyId>ASIA</AccessKeyId><SecretAccessKey>s</SecretAccessKey><SessionToken>t\r\n"
        "X-Evil: 1</SessionToken><Expiration>2026-11-25T11:00:00Z</Expiration></Credentials></R>",
        /* no expiry: temporary credentials that never expire are not believed */
        "<R><Credentials><AccessKeyId>ASIA</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
        "<SessionToken>t</SessionToken></Credentials></R>",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
        struct creds c = {0};
        struct wc_error e;
        if (creds_parse_sts(bodies[i], strlen(bodies[i]), &c, &e) == 0)
            fail_msg("body %zu was accepted", i);
    }
}

static void imds_and_pod_identity_json_parse(void **state)
{
    const char *imds = "{\"Code\":\"Success\",\"LastUpdated\":\"2026-11-25T09:00:00Z\",\"Type\":\"AWS-HMAC\","
                       "\"AccessKeyId\":\"ASIAXXXXXXXXXXXXXXXX\",\"SecretAccessKey\":\"abc/def\","
                       "\"Token\":\"tok==\",\"Expiration\":\"2026-11-25T15:00:00Z\"}";
    const char *pod = "{\"AccessKeyId\":\"ASIAYYYYYYYYYYYYYYYY\",\"SecretAccessKey\":\"s\",\"Token\":\"t\","
                      "\"AccountId\":\"111122223333\",\"Expiration\":\"2026-11-25T15:00:00.123Z\"}";
    struct creds c = {0};
    struct wc_error e;
    assert_int_equal(creds_parse_json(imds, strlen(imds), &c, &e), 0);
    assert_string_equal(c.session_token, "tok==");
    assert_int_equal(c.expires, 1795618800);
    assert_int_equal(creds_parse_json(pod, strlen(pod), &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAYYYYYYYYYYYYYYYY");
    const char *failed = "{\"Code\":\"AssumeRoleUnauthorizedAccess\",\"Message\":\"not allowed\"}";
    assert_int_equal(creds_parse_json(failed, strlen(failed), &c, &e), -EACCES);
    assert_non_null(strstr(e.msg, "AssumeRoleUnauthorizedAccess"));
    const char *dup = "{\"AccessKeyId\":\"a\",\"AccessKeyId\":\"b\",\"SecretAccessKey\":\"s\",\"Token\":\"t\","
                      "\"Expiration\":\"2026-11-25T15:00:00Z\"}";
    assert_int_equal(creds_parse_json(dup, strlen(dup), &c, &e), -EIO);
}

static void a_volume_secret_comes_first(void **state)
{
    setenv("AWS_ACCESS_KEY_ID", "ENVKEY", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envsecret", 1);
    struct creds_static given = {"SECRETKEY", "secretsecret", NULL};
    struct creds c;
    struct wc_error e;
    struct creds_cache cache;
    creds_cache_init(&cache);
    assert_int_equal(creds_get(&cache, &given, "us-east-1", &c, &e), 0);
    assert_string_equal(c.access_key_id, "SECRETKEY");
    assert_string_equal(c.source, "secret");
    assert_int_equal(creds_get(&cache, NULL, "us-east-1", &c, &e), 0);
    assert_string_equal(c.access_key_id, "ENVKEY");
    struct creds_static half = {"SECRETKEY", NULL, NULL};
    assert_int_equal(creds_get(&cache, &half, "us-east-1", &c, &e), -EACCES);
    assert_non_null(strstr(e.msg, "no awsSecretAccessKey"));
    creds_cache_fini(&cache);
}

/* Only an ECR host gets the node's ECR token: nothing that merely looks like one. */
static void ecr_hosts_are_told_exactly(void **state)
{
    char region[64];
    assert_int_equal(s3_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com", region, sizeof(region)), 1);
    assert_string_equal(region, "us-east-1");
    assert_int_equal(s3_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com:443", region, sizeof(region)), 1);
    assert_int_equal(s3_ecr_host("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", region, sizeof(region)), 2);
    assert_string_equal(region, "us-gov-west-1");
    assert_int_equal(s3_ecr_host("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", region, sizeof(region)), 1);
    static const char *const not_ecr[] = {
        "123456789012.dkr.ecr.us-east-1.amazonaws.com.", "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil",
        "123456789012.dkr.ecr.us-east-1.amazonaws.co", "12345678901.dkr.ecr.us-east-1.amazonaws.com",
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com", "123456789012.dkr.ecr..amazonaws.com",
        "123456789012.dkr.ecr.US-EAST-1.amazonaws.com", "x123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.evil.com", "evil.com", "127.0.0.1:5000", "",
    };
    for (size_t i = 0; i < sizeof(not_ecr) / sizeof(not_ecr[0]); i++)
        if (s3_ecr_host(not_ecr[i], region, sizeof(region)) != 0)
            fail_msg("%s taken for an ECR host", not_ecr[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sts_response_parses),
        cmocka_unit_test(sts_error_names_its_code),
        cmocka_unit_test(hostile_sts_bodies_are_refused),
        cmocka_unit_test(imds_and_pod_identity_json_parse),
        cmocka_unit_test(a_volume_secret_comes_first),
        cmocka_unit_test(ecr_hosts_are_told_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
