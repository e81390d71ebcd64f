/* StorageClass parameters and volume context: what a user types, checked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "csi/params.h"
#include "base/fsutil.h"
#include "base/units.h"
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

#include <stdlib.h>

static struct wc_error e;

static void accepts_source_and_policy(void **state)
{
    struct kv kv[] = {{"source", "file:///mnt/fsx/llama/"}, {"sourceChangePolicy", "Follow"},
                      {"csi.storage.k8s.io/pvc/name", "models"}};
    struct volume_params p;
    assert_int_equal(params_parse(kv, 3, &p, &e), 0);
    assert_string_equal(p.src.url, "file:///mnt/fsx/llama/");
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
    assert_string_equal(p.src.region, "eu-west-1");
    assert_string_equal(p.src.addressing, "path");
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

static void sizes_in_kubernetes_quantities(void **state)
{
    uint64_t b;
    assert_int_equal(parse_bytes("20Gi", &b), 0);
    assert_true(b == 20ull << 30);
    assert_int_equal(parse_bytes("1.5Ti", &b), 0);
    assert_true(b == 3ull << 39);
    assert_int_equal(parse_bytes("500M", &b), 0);
    assert_true(b == 500000000);
    assert_int_equal(parse_bytes("4096", &b), 0);
    assert_true(b == 4096);
    const char *bad[] = {"", "20 Gi", "20gi", "-1", "1.5", "0.1Ki", "1e9", "99999999999Pi", "Gi", ".5Gi"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse_bytes(bad[i], &b), -EINVAL);
}

static int override(const char *ann_json, const struct kv *cls, size_t n, struct volume_params *ret)
{
    struct volume_params class;
    assert_int_equal(params_parse(cls, n, &class, &e), 0);
    json_t *ann = json_loads(ann_json, 0, NULL);
    struct kv *merged = NULL;
    size_t nm = n;
    wc_error_clear(&e);
    int r = params_pvc_overrides(ann, "ml", "p", &class, cls, &nm, &merged, &e);
    static char source[256];
    if (r == 0 && merged)
        r = params_parse(merged, nm, ret, &e);
    else if (r == 0)
        *ret = class;
    if (r == 0) { /* the strings are the annotation's, which go now */
        snprintf(source, sizeof(source), "%s", ret->src.url);
        ret->src.url = source;
    }
    free(merged);
    json_decref(ann);
    return r;
}

/* Issue #13: a PVC sets only what its class lets it, within the class's prefixes. */
static void pvc_overrides_only_what_the_class_allows(void **state)
{
    struct kv none[] = {{"source", "s3://models/llama/"}};
    struct kv some[] = {{"source", "s3://models/llama/"}, {"pvcOverrides", "source, prewarm"}};
    struct kv wide[] = {{"source", "s3://models/llama/"}, {"pvcOverrides", "source"},
                        {"pvcSourcePrefixes", "s3://models/, s3://datasets/shared/"}};
    struct volume_params p;
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"s3://models/llama/8b/\"}", none, 1, &p), -EPERM);
    assert_non_null(strstr(e.msg, "pvcOverrides (now: not set)"));
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"s3://models/llama/8b/\"}", some, 2, &p), 0);
    assert_string_equal(p.src.url, "s3://models/llama/8b/");
    /* under the class's own source by default: not a sibling that shares its first letters */
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"s3://models/llama-private/\"}", some, 2, &p),
                     -EPERM);
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"s3://models/other/\"}", some, 2, &p), -EPERM);
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"s3://datasets/shared/x/\"}", wide, 3, &p), 0);
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"s3://payroll/\"}", wide, 3, &p), -EPERM);
    assert_non_null(strstr(e.msg, "pvcSourcePrefixes"));
    assert_int_equal(override("{\"warmcache.csi.dev/sourceChangePolicy\": \"Follow\"}", some, 2, &p), -EPERM);
    assert_int_equal(override("{\"warmcache.csi.dev/endpoint\": \"http://x:1\"}", some, 2, &p), -EPERM);
    assert_non_null(strstr(e.msg, "never taken from a PVC"));
    /* a class cannot even ask for it */
    struct kv asks[] = {{"source", "s3://models/x/"}, {"pvcOverrides", "source,endpoint"}};
    assert_int_equal(params_parse(asks, 2, &p, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "endpoint is never taken from a PVC"));
}

/* A PVC's oci:// source stays on its class's registry, whatever the
 * prefixes say: the class's Secret holds that registry's password. */
static void pvc_oci_sources_stay_on_the_class_registry(void **state)
{
    struct kv cls[] = {{"source", "oci://reg.example/models/llama:v1"}, {"pvcOverrides", "source"},
                       {"pvcSourcePrefixes", "oci://reg.example/models/, oci://evil.example/"}};
    struct volume_params p;
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"oci://reg.example/models/mistral:v2\"}", cls, 3, &p),
                     0);
    assert_string_equal(p.src.url, "oci://reg.example/models/mistral:v2");
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"oci://evil.example/x:v1\"}", cls, 3, &p), -EPERM);
    assert_non_null(strstr(e.msg, "names another registry"));
    assert_int_equal(override("{\"warmcache.csi.dev/source\": \"oci://reg.example.evil/models/x:v1\"}", cls, 3, &p),
                     -EPERM);
}

/* A file:// prefix is a place: a symlink under it that leads elsewhere
 * does not bring a PVC's source under it. */
static void pvc_file_sources_are_judged_where_they_lead(void **state)
{
    char root[] = "/tmp/wc-params.XXXXXX", dir[PATH_MAX], url[PATH_MAX], ann[PATH_MAX + 64];
    assert_non_null(mkdtemp(root));
    snprintf(dir, sizeof(dir), "%s/fsx/team-a/llama", root);
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    snprintf(dir, sizeof(dir), "%s/fsx/team-b", root);
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    snprintf(dir, sizeof(dir), "%s/fsx/team-a/b", root);
    char target[PATH_MAX];
    snprintf(target, sizeof(target), "%s/fsx/team-b", root);
    assert_int_equal(symlink(target, dir), 0);
    snprintf(url, sizeof(url), "file://%s/fsx/team-a/", root);
    struct kv cls[] = {{"source", url}, {"pvcOverrides", "source"}};
    struct volume_params p;
    snprintf(ann, sizeof(ann), "{\"warmcache.csi.dev/source\": \"file://%s/fsx/team-a/llama/\"}", root);
    assert_int_equal(override(ann, cls, 2, &p), 0);
    snprintf(ann, sizeof(ann), "{\"warmcache.csi.dev/source\": \"file://%s/fsx/team-a/b/\"}", root);
    assert_int_equal(override(ann, cls, 2, &p), -EPERM);
    assert_non_null(strstr(e.msg, "pvcSourcePrefixes"));
    fs_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_source_and_policy), cmocka_unit_test(default_policy_is_fail),
        cmocka_unit_test(sizes_in_kubernetes_quantities), cmocka_unit_test(pvc_overrides_only_what_the_class_allows),
        cmocka_unit_test(pvc_oci_sources_stay_on_the_class_registry),
        cmocka_unit_test(pvc_file_sources_are_judged_where_they_lead),
        cmocka_unit_test(unknown_key_is_named),      cmocka_unit_test(bad_policy_names_key_and_choices),
        cmocka_unit_test(missing_source),            cmocka_unit_test(bad_sources),
        cmocka_unit_test(s3_settings),               cmocka_unit_test(context_round_trip),        cmocka_unit_test(context_refuses_bad_digest_and_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
