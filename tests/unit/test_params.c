/* StorageClass parameters and volume context: what a user types, checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "csi/params.h"

static struct wc_error e;

static void accepts_source_and_policy(void **state)
{
    struct kv kv[] = {{"source", "file:///mnt/fsx/llama/"}, {"sourceChangePolicy", "Follow"},
                      {"csi.storage.k8s.io/pvc/name", "models"}};
    struct volume_params p;
    assert_int_equal(params_parse(kv, 3, &p, &e), 0);
    assert_string_equal(p.source, "file:///mnt/fsx/llama/");
    assert_int_equal(p.policy, CHANGE_FOLLOW);
}

static void default_policy_is_fail(void **state)
{
    struct kv kv[] = {{"source", "file:///data"}};
    struct volume_params p;
    assert_int_equal(params_parse(kv, 1, &p, &e), 0);
    assert_int_equal(p.policy, CHANGE_FAIL);
}

static void unknown_key_is_named(void **state)
{
    struct kv kv[] = {{"source", "file:///data"}, {"sourcee", "x"}};
    struct volume_params p;
    assert_int_equal(params_parse(kv, 2, &p, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "\"sourcee\""));
    assert_non_null(strstr(e.msg, "unknown StorageClass parameter"));
}

static void bad_policy_names_key_and_choices(void **state)
{
    struct kv kv[] = {{"source", "file:///data"}, {"sourceChangePolicy", "ignore"}};
    struct volume_params p;
    assert_int_equal(params_parse(kv, 2, &p, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "sourceChangePolicy"));
    assert_non_null(strstr(e.msg, "Fail or Follow"));
}

static void missing_source(void **state)
{
    struct volume_params p;
    assert_int_equal(params_parse(NULL, 0, &p, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "source is required"));
}

static void bad_sources(void **state)
{
    static const char *const bad[] = {"file://relative/dir", "file:///a/../etc", "http://x/", "", "file:///a\n/b",
                                      "s3://B/prefix/", "s3://bucket/../etc/", "s3://models--x-s3/p/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct kv kv[] = {{"source", bad[i]}};
        struct volume_params p;
        assert_int_equal(params_parse(kv, 1, &p, &e), -EINVAL);
        assert_non_null(strstr(e.msg, "source"));
    }
}

static void s3_settings(void **state)
{
    struct kv ok[] = {{"source", "s3://my-models/llama/"}, {"region", "eu-west-1"},
                      {"endpoint", "http://127.0.0.1:7070"}, {"addressingStyle", "path"}};
    struct volume_params p;
    assert_int_equal(params_parse(ok, 4, &p, &e), 0);
    assert_string_equal(p.s3.region, "eu-west-1");
    assert_string_equal(p.s3.addressing, "path");
    struct kv on_file[] = {{"source", "file:///m/"}, {"endpoint", "http://x"}};
    assert_int_equal(params_parse(on_file, 2, &p, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "s3:// sources only"));
    struct kv bad_ep[] = {{"source", "s3://my-models/l/"}, {"endpoint", "http://x/?a=b"}};
    assert_int_equal(params_parse(bad_ep, 2, &p, &e), -EINVAL);
}

static void context_round_trip(void **state)
{
    struct kv kv[] = {{"source", "file:///m/"}, {"listingDigest", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
                      {"objectCount", "3"}, {"totalBytes", "1000"}, {"storage.kubernetes.io/csiProvisionerIdentity", "x"},
                      {"csi.storage.k8s.io/pod.name", "p"}};
    struct volume_context c;
    assert_int_equal(volctx_parse(kv, 6, &c, &e), 0);
    assert_int_equal(c.objects, 3);
    assert_int_equal(c.bytes, 1000);
    assert_non_null(c.digest);
}

static void context_refuses_bad_digest_and_numbers(void **state)
{
    struct volume_context c;
    struct kv d[] = {{"source", "file:///m/"}, {"listingDigest", "../../etc"}};
    assert_int_equal(volctx_parse(d, 2, &c, &e), -EINVAL);
    struct kv n[] = {{"source", "file:///m/"}, {"totalBytes", "-1"}};
    assert_int_equal(volctx_parse(n, 2, &c, &e), -EINVAL);
    struct kv none[] = {{"objectCount", "1"}};
    assert_int_equal(volctx_parse(none, 1, &c, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "no source"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_source_and_policy), cmocka_unit_test(default_policy_is_fail),
        cmocka_unit_test(unknown_key_is_named),      cmocka_unit_test(bad_policy_names_key_and_choices),
        cmocka_unit_test(missing_source),            cmocka_unit_test(bad_sources),
        cmocka_unit_test(s3_settings),               cmocka_unit_test(context_round_trip),        cmocka_unit_test(context_refuses_bad_digest_and_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
