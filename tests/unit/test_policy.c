/* The source policy: what an admin allowed, and nothing a pod or PVC author
 * can name beyond it (issue #13). Real directories under a temp root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fsutil.h"
#include "cache/source.h"
#include "csi/policy.h"

static char root[PATH_MAX];
static struct wc_error e;

static int setup(void **state)
{
    snprintf(root, sizeof(root), "/tmp/wc-policy.XXXXXX");
    assert_non_null(mkdtemp(root));
    char p[PATH_MAX + 32];
    snprintf(p, sizeof(p), "%s/fsx/models", root);
    fs_mkdir_p(p, 0755);
    snprintf(p, sizeof(p), "%s/kubelet/pods", root);
    fs_mkdir_p(p, 0755);
    return 0;
}

static int teardown(void **state)
{
    fs_rm_rf(root);
    return 0;
}

static int check(const struct source_policy *p, const char *url, int is_inline, int secret, const char *endpoint,
                 int plain)
{
    struct source_spec spec = {.url = url, .endpoint = endpoint};
    struct source_use u = {.spec = &spec, .allow_plain_http = plain, .is_inline = is_inline, .has_secret = secret};
    wc_error_clear(&e);
    return policy_check(p, &u, &e);
}

/* oci:// prefixes name registries and repositories; a source is judged by
 * its repository, whatever its tag or digest. */
static void oci_sources_are_judged_by_their_repository(void **state)
{
    struct source_policy p;
    assert_int_equal(policy_init(&p, "s3://,oci://reg.example/models/,oci://other:5000/team", NULL, false, &e), 0);
    assert_int_equal(check(&p, "oci://reg.example/models/llama:v1", 0, 0, NULL, 0), 0);
    assert_int_equal(check(&p, "oci://reg.example/models/a/b@sha256:"
                               "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb", 0, 0, NULL, 0), 0);
    assert_int_equal(check(&p, "oci://other:5000/team:v1", 0, 0, NULL, 0), 0);   /* the repository itself */
    assert_int_equal(check(&p, "oci://other:5000/team/x:v1", 0, 0, NULL, 0), 0);
    assert_int_equal(check(&p, "oci://other:5000/teammate:v1", 0, 0, NULL, 0), -EPERM);
    assert_int_equal(check(&p, "oci://reg.example/modelsx:v1", 0, 0, NULL, 0), -EPERM);
    assert_int_equal(check(&p, "oci://reg.example.evil/models/llama:v1", 0, 0, NULL, 0), -EPERM);
    assert_int_equal(check(&p, "oci://reg.example/other:v1", 0, 0, NULL, 0), -EPERM);
    /* one registry, however it is spelt */
    assert_int_equal(check(&p, "oci://REG.Example:443/models/llama:v1", 0, 0, NULL, 0), 0);
    assert_int_equal(check(&p, "oci://reg.example:444/models/llama:v1", 0, 0, NULL, 0), -EPERM);
    policy_fini(&p);
    /* s3:// alone (the chart's default) allows no registry */
    assert_int_equal(policy_init(&p, "s3://", NULL, false, &e), 0);
    assert_int_equal(check(&p, "oci://reg.example/models/llama:v1", 0, 0, NULL, 0), -EPERM);
    policy_fini(&p);
    /* an inline volume of an ECR registry without a Secret would log in as the node */
    const char *ecr = "oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/";
    assert_int_equal(policy_init(&p, ecr, ecr, false, &e), 0);
    assert_int_equal(check(&p, "oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/m:v1", 1, 0, NULL, 0), -EPERM);
    assert_non_null(strstr(e.msg, "node's own role"));
    assert_int_equal(check(&p, "oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/m:v1", 1, 1, NULL, 0), 0);
    assert_int_equal(check(&p, "oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/m:v1", 0, 0, NULL, 0), 0);
    policy_fini(&p);
    assert_int_equal(policy_init(&p, ecr, ecr, true, &e), 0); /* inlineVolumes.nodeCredentials lends S3, not ECR */
    assert_int_equal(check(&p, "oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/m:v1", 1, 0, NULL, 0), -EPERM);
    policy_fini(&p);
    assert_int_equal(policy_init(&p, "oci://reg.example/models:v1", NULL, false, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "not a tag or digest"));
}

static void volumes_only_under_the_allowed_prefixes(void **state)
{
    struct source_policy p;
    char allowed[PATH_MAX + 64], url[PATH_MAX + 64];
    snprintf(allowed, sizeof(allowed), "s3://models,file://%s/fsx", root);
    assert_int_equal(policy_init(&p, allowed, NULL, false, &e), 0);
    assert_int_equal(check(&p, "s3://models/llama/", 0, 0, NULL, 0), 0);
    /* "s3://models" is the bucket, not every bucket whose name starts so */
    assert_int_equal(check(&p, "s3://models-private/x/", 0, 0, NULL, 0), -EPERM);
    assert_non_null(strstr(e.msg, "chart value allowedSources,"));
    snprintf(url, sizeof(url), "file://%s/fsx/models/", root);
    assert_int_equal(check(&p, url, 0, 0, NULL, 0), 0);
    snprintf(url, sizeof(url), "file://%s/fsxother/", root);
    assert_int_equal(check(&p, url, 0, 0, NULL, 0), -EPERM);
    policy_fini(&p);
}

static void system_and_plugin_trees_are_never_served(void **state)
{
    struct source_policy p;
    char kubelet[PATH_MAX + 32], url[PATH_MAX + 64];
    assert_int_equal(policy_init(&p, "file:///,s3://", NULL, false, &e), 0);
    snprintf(kubelet, sizeof(kubelet), "%s/kubelet", root);
    assert_int_equal(policy_never(&p, kubelet, "every pod's volumes and Secrets"), 0);
    const char *never[] = {"file:///etc/ssh/", "file:///proc/self/", "file:///", "file:///var/run/secrets/"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        assert_int_equal(check(&p, never[i], 0, 0, NULL, 0), -EPERM);
        assert_non_null(strstr(e.msg, "is never served"));
    }
    snprintf(url, sizeof(url), "file://%s/kubelet/pods/", root);
    assert_int_equal(check(&p, url, 0, 0, NULL, 0), -EPERM);
    assert_non_null(strstr(e.msg, "Secrets"));
    snprintf(url, sizeof(url), "file://%s/", root); /* holds the kubelet's tree */
    assert_int_equal(check(&p, url, 0, 0, NULL, 0), -EPERM);
    /* through a symlink: what is read is what counts */
    char link[PATH_MAX + 32];
    snprintf(link, sizeof(link), "%s/fsx/innocent", root);
    assert_int_equal(symlink("/etc", link), 0);
    snprintf(url, sizeof(url), "file://%s/", link);
    assert_int_equal(check(&p, url, 0, 0, NULL, 0), -EPERM);
    assert_non_null(strstr(e.msg, "/etc"));
    policy_fini(&p);
}

static void inline_volumes_follow_stricter_rules(void **state)
{
    struct source_policy off, on;
    assert_int_equal(policy_init(&off, "s3://", NULL, false, &e), 0);
    assert_int_equal(check(&off, "s3://models/x/", 1, 1, NULL, 0), -EPERM);
    assert_non_null(strstr(e.msg, "inlineVolumes.allowedSources"));
    assert_int_equal(policy_init(&on, "s3://", "s3://public-models/", false, &e), 0);
    assert_int_equal(check(&on, "s3://models/x/", 1, 1, NULL, 0), -EPERM);
    assert_int_equal(check(&on, "s3://public-models/x/", 1, 1, NULL, 0), 0);
    /* without a Secret: the node's credentials only when the admin lends them */
    assert_int_equal(check(&on, "s3://public-models/x/", 1, 0, NULL, 0), -EPERM);
    assert_non_null(strstr(e.msg, "nodePublishSecretRef"));
    on.inline_node_credentials = true;
    assert_int_equal(check(&on, "s3://public-models/x/", 1, 0, NULL, 0), 0);
    assert_int_equal(check(&on, "s3://public-models/x/", 1, 0, "https://s3.attacker.example", 0), -EPERM);
    assert_int_equal(check(&on, "s3://public-models/x/", 1, 1, "https://minio.team", 0), 0);
    policy_fini(&off);
    policy_fini(&on);
}

static void credentials_never_cross_plain_http_unless_allowed(void **state)
{
    struct source_policy p;
    assert_int_equal(policy_init(&p, "s3://", NULL, false, &e), 0);
    assert_int_equal(check(&p, "s3://m/x/", 0, 1, "http://10.0.0.5:9000", 0), -EPERM);
    assert_non_null(strstr(e.msg, "allowPlainHTTP"));
    assert_int_equal(check(&p, "s3://m/x/", 0, 1, "http://10.0.0.5:9000", 1), 0);
    assert_int_equal(check(&p, "s3://m/x/", 0, 1, "https://10.0.0.5:9000", 0), 0);
    policy_fini(&p);
}

/* The policy looks at the path when the volume is staged; the fill opens it
 * later (another thread, or a resumed journal). A directory swapped for a
 * symlink in between is judged again where the fill finds it. */
static void a_source_swapped_after_the_check_is_judged_where_it_leads(void **state)
{
    struct source_policy p;
    char allowed[PATH_MAX + 64], dir[PATH_MAX + 32], secret[PATH_MAX + 32], url[PATH_MAX + 64];
    snprintf(allowed, sizeof(allowed), "file://%s/fsx/models", root);
    assert_int_equal(policy_init(&p, allowed, NULL, false, &e), 0);
    snprintf(dir, sizeof(dir), "%s/fsx/models/team", root);
    snprintf(secret, sizeof(secret), "%s/kubelet/pods", root);
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    snprintf(url, sizeof(url), "file://%s/", dir);
    assert_int_equal(check(&p, url, 0, 0, NULL, 0), 0);
    assert_int_equal(rmdir(dir), 0);
    assert_int_equal(symlink(secret, dir), 0);
    struct source_spec spec = {.url = url};
    struct source *s = NULL;
    struct source_tuning t = {.admit = policy_admit, .admit_ctx = &p};
    wc_error_clear(&e);
    assert_int_equal(source_file_open(&spec, &t, &s, &e), -EPERM);
    assert_null(s);
    assert_non_null(strstr(e.msg, "/kubelet/pods/"));
    assert_non_null(strstr(e.msg, "is not allowed on this node"));
    /* the hook is what stops it: without one the fill would read the other tree */
    assert_int_equal(source_file_open(&spec, &(struct source_tuning){0}, &s, &e), 0);
    source_free(s);
    /* narrow: an inline fill is judged by the inline list */
    assert_int_equal(unlink(dir), 0);
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    policy_fini(&p);
    char inl[PATH_MAX + 64];
    snprintf(inl, sizeof(inl), "file://%s/fsx/models/public", root);
    assert_int_equal(policy_init(&p, allowed, inl, false, &e), 0);
    t.admit_ctx = &p;
    t.narrow = 1;
    assert_int_equal(source_file_open(&spec, &t, &s, &e), -EPERM);
    assert_non_null(strstr(e.msg, "inline"));
    t.narrow = 0;
    assert_int_equal(source_file_open(&spec, &t, &s, &e), 0);
    source_free(s);
    policy_fini(&p);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int collect(void *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    char *seen = ctx;
    strncat(seen, key, len);
    strcat(seen, " ");
    return 0;
}

/* Once opened and judged, a source is read from the directory opened: a
 * swap of the path afterwards changes nothing the fill lists or reads. And a
 * PVC's own source (within: its class's prefixes) must still lie under them
 * by its real path on this node. */
static void a_source_is_read_from_the_directory_judged(void **state)
{
    char dir[PATH_MAX + 32], moved[PATH_MAX + 32], other[PATH_MAX + 32], f[PATH_MAX + 64], url[PATH_MAX + 64];
    snprintf(dir, sizeof(dir), "%s/fsx/models/team", root);
    snprintf(moved, sizeof(moved), "%s/fsx/models/team-was", root);
    snprintf(other, sizeof(other), "%s/fsx/payroll", root);
    assert_int_equal(fs_mkdir_p(dir, 0755), 0);
    assert_int_equal(fs_mkdir_p(other, 0755), 0);
    snprintf(f, sizeof(f), "%s/weights.bin", dir);
    write_file(f, "weights\n");
    snprintf(f, sizeof(f), "%s/salaries.csv", other);
    write_file(f, "secret\n");
    snprintf(url, sizeof(url), "file://%s/", dir);
    struct source_spec spec = {.url = url};
    struct source *s = NULL;
    assert_int_equal(source_file_open(&spec, &(struct source_tuning){0}, &s, &e), 0);
    assert_int_equal(rename(dir, moved), 0);
    assert_int_equal(symlink(other, dir), 0);
    char seen[4096] = "";
    assert_int_equal(s->ops->list(s, collect, seen, NULL, &e), 0);
    assert_string_equal(seen, "weights.bin ");
    source_free(s);

    /* within: the class's prefixes, judged where the source leads now */
    char within[PATH_MAX + 64];
    snprintf(within, sizeof(within), "s3://models/, file://%s/fsx/models", root);
    spec.within = within;
    wc_error_clear(&e);
    assert_int_equal(source_file_open(&spec, &(struct source_tuning){0}, &s, &e), -EPERM);
    assert_non_null(strstr(e.msg, "pvcSourcePrefixes"));
    assert_non_null(strstr(e.msg, "/fsx/payroll"));
    assert_int_equal(unlink(dir), 0);
    assert_int_equal(rename(moved, dir), 0);
    assert_int_equal(source_file_open(&spec, &(struct source_tuning){0}, &s, &e), 0);
    source_free(s);
}

static void bad_prefixes_are_refused(void **state)
{
    struct source_policy p;
    assert_int_equal(policy_init(&p, "ftp://x/", NULL, false, &e), -EINVAL);
    assert_int_equal(policy_init(&p, "file://relative/", NULL, false, &e), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(oci_sources_are_judged_by_their_repository),
        cmocka_unit_test_setup_teardown(volumes_only_under_the_allowed_prefixes, setup, teardown),
        cmocka_unit_test_setup_teardown(system_and_plugin_trees_are_never_served, setup, teardown),
        cmocka_unit_test(inline_volumes_follow_stricter_rules),
        cmocka_unit_test(credentials_never_cross_plain_http_unless_allowed),
        cmocka_unit_test(bad_prefixes_are_refused),
        cmocka_unit_test_setup_teardown(a_source_swapped_after_the_check_is_judged_where_it_leads, setup, teardown),
        cmocka_unit_test_setup_teardown(a_source_is_read_from_the_directory_judged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
