/* oci:// references and manifests: what a registry or a PVC author sends
 * is read as files with safe paths and sha256 digests, or refused with a
 * message that says what to change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/oci.h"
#include "base/pathkey.h"

#define D1 "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
#define D2 "sha256:3e23e8160039594a33894f6564e1b1348bbd7a0088d42c4acb73eeaed59c009d"
#define D3 "sha256:2e7d2c03a9507ae265ecf5b5356885a53393a2029d241394997265a1a25aefc6"

static int parse_ref(const char *url, struct oci_ref *r)
{
    struct wc_error e = {0};
    return oci_ref_parse(url, r, &e);
}

static void references_split(void **state)
{
    struct oci_ref r;
    assert_int_equal(parse_ref("oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/team/llama-3:v1.2", &r), 0);
    assert_string_equal(r.host, "123456789012.dkr.ecr.us-east-1.amazonaws.com");
    assert_string_equal(r.repo, "team/llama-3");
    assert_string_equal(r.tag, "v1.2");
    assert_string_equal(r.digest, "");
    assert_int_equal(parse_ref("oci://127.0.0.1:5000/m@" D1, &r), 0);
    assert_string_equal(r.host, "127.0.0.1:5000");
    assert_string_equal(r.repo, "m");
    assert_string_equal(r.digest, D1);
    assert_int_equal(parse_ref("oci://reg/a__b/c-d--e.f:latest", &r), 0);
    assert_string_equal(r.repo, "a__b/c-d--e.f");
    /* one spelling per registry: the same copy whichever a volume used */
    assert_int_equal(parse_ref("oci://Reg.EXAMPLE:443/m:v1", &r), 0);
    assert_string_equal(r.host, "reg.example");
    assert_int_equal(parse_ref("oci://reg.example:5000/m:v1", &r), 0);
    assert_string_equal(r.host, "reg.example:5000");
}

static void bad_references_are_refused(void **state)
{
    static const char *const bad[] = {
        "oci://reg/model",                /* no tag or digest */
        "oci:///model:v1",                /* no registry */
        "oci://reg/../etc:v1",            /* a path, not a repository */
        "oci://reg/Model:v1",             /* upper case */
        "oci://reg/a//b:v1", "oci://reg/a/:v1", "oci://reg/-a:v1", "oci://reg/a___b:v1",
        "oci://reg/a:v1@" D1,             /* both */
        "oci://reg/a@sha256:abc",         /* short digest */
        "oci://reg/a@sha512:" "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
        "oci://reg/a:.hidden", "oci://reg/a:v 1", "oci://reg/a:v1/../b",
        "oci://user@reg/a:v1",            /* no credentials in URLs */
        "oci://reg:99999999/a:v1", "oci://reg:65536/a:v1", "oci://reg:0/a:v1", "oci://reg:/a:v1", "s3://bucket/a:v1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct oci_ref r;
        struct wc_error e = {0};
        int rc = oci_ref_parse(bad[i], &r, &e);
        if (rc != -EINVAL)
            fail_msg("%s: %d, want -EINVAL", bad[i], rc);
        assert_true(strstr(e.msg, "source") != NULL);
    }
    struct oci_ref r;
    struct wc_error e = {0};
    oci_ref_parse("oci://reg/model", &r, &e);
    assert_non_null(strstr(e.msg, "no tag or digest"));
}

static void identity_leaves_out_the_tag(void **state)
{
    char a[300], b[300];
    struct wc_error e = {0};
    assert_int_equal(oci_identity("oci://reg/m:v1", a, sizeof(a), &e), 0);
    assert_int_equal(oci_identity("oci://reg/m@" D1, b, sizeof(b), &e), 0);
    assert_string_equal(a, "oci://reg/m");
    assert_string_equal(a, b);
}

static int parse(const char *json, struct oci_manifest *m, char next[OCI_DIGEST_LEN + 1], struct wc_error *e)
{
    *m = (struct oci_manifest){0};
    return oci_manifest_parse(json, strlen(json), m, next, e);
}

static void oras_and_modelpack_layers_are_files(void **state)
{
    const char *json =
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/vnd.cncf.model.config.v1+json\",\"digest\":\"" D2
        "\",\"size\":3},\"layers\":["
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"" D1 "\",\"size\":1,"
        "\"annotations\":{\"org.opencontainers.image.title\":\"tokenizer.json\"}},"
        "{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\",\"digest\":\"" D2 "\",\"size\":4294967296,"
        "\"annotations\":{\"org.opencontainers.image.title\":\"x\",\"org.cncf.model.filepath\":\"shards/model-1.safetensors\"}}]}";
    struct oci_manifest m;
    char next[OCI_DIGEST_LEN + 1];
    struct wc_error e = {0};
    assert_int_equal(parse(json, &m, next, &e), 0);
    assert_string_equal(next, "");
    assert_int_equal(m.n, 2);
    assert_string_equal(m.v[0].path, "tokenizer.json");
    assert_string_equal(m.v[0].digest, D1);
    assert_int_equal(m.v[0].size, 1);
    assert_string_equal(m.v[1].path, "shards/model-1.safetensors"); /* the ModelPack path wins over the title */
    assert_int_equal(m.v[1].size, 4294967296ull);
    oci_manifest_free(&m);
}

/* Image layers, ModelPack tar layers and oras directories are archives,
 * keyed so that they sort in manifest order and say how to apply them. */
static void archives_are_keyed_in_order_with_how_to_apply_them(void **state)
{
    const char *json = "{\"layers\":["
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D1 "\",\"size\":9},"
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"" D2 "\",\"size\":9},"
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"" D3 "\",\"size\":9},"
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" D3 "\",\"size\":9},"
        "{\"mediaType\":\"application/vnd.cncf.model.weight.v1.tar\",\"digest\":\"" D1 "\",\"size\":9,"
        "\"annotations\":{\"org.cncf.model.filepath\":\"tokenizer\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D2 "\",\"size\":9,"
        "\"annotations\":{\"org.opencontainers.image.title\":\"dir\",\"io.deis.oras.content.unpack\":\"true\"}}]}";
    static const unsigned want[] = {
        OCI_UNPACK_TAR | OCI_UNPACK_GZIP | OCI_UNPACK_WHITEOUTS, OCI_UNPACK_TAR | OCI_UNPACK_GZIP | OCI_UNPACK_WHITEOUTS,
        OCI_UNPACK_TAR | OCI_UNPACK_WHITEOUTS, OCI_UNPACK_TAR | OCI_UNPACK_ZSTD | OCI_UNPACK_WHITEOUTS, OCI_UNPACK_TAR,
        OCI_UNPACK_TAR | OCI_UNPACK_GZIP,
    };
    struct oci_manifest m;
    char next[OCI_DIGEST_LEN + 1], prev[OCI_LAYER_KEY_MAX] = "";
    struct wc_error e = {0};
    assert_int_equal(parse(json, &m, next, &e), 0);
    assert_int_equal(m.n, 6);
    for (size_t i = 0; i < m.n; i++) {
        assert_null(m.v[i].path);
        assert_int_equal(m.v[i].unpack, want[i]);
        char key[OCI_LAYER_KEY_MAX];
        oci_layer_key(i, m.v[i].unpack, NULL, key, sizeof(key));
        unsigned flags = 99;
        const char *path = "x";
        assert_int_equal(oci_layer_key_parse(key, &flags, &path), 1);
        assert_int_equal(flags, want[i]);
        assert_null(path);
        assert_true(strcmp(prev, key) < 0);
        assert_int_equal(pathkey_check(key, strlen(key), &e), 0);
        memcpy(prev, key, sizeof(key));
    }
    oci_manifest_free(&m);
    /* a file staged with them: its path comes back */
    char key[OCI_LAYER_KEY_MAX + 64];
    oci_layer_key(7, 0, "tokenizer/tokenizer.json", key, sizeof(key));
    assert_string_equal(key, ".warmcache-layers/000007/tokenizer/tokenizer.json");
    unsigned flags = 99;
    const char *path = NULL;
    assert_int_equal(oci_layer_key_parse(key, &flags, &path), 1);
    assert_int_equal(flags, 0);
    assert_string_equal(path, "tokenizer/tokenizer.json");
    assert_int_equal(oci_layer_key_parse(".warmcache-layers/000001.zip", &flags, &path), 0);
    assert_int_equal(oci_layer_key_parse("warmcache-layers/000001.tar", &flags, &path), 0);
    assert_int_equal(oci_layer_key_parse(".warmcache-layers/1.tar", &flags, &path), 0);
    assert_int_equal(oci_layer_key_parse(".warmcache-layers/000001/", &flags, &path), 0);
}

static void an_index_names_this_platform(void **state)
{
    const char *json = "{\"manifests\":["
        "{\"digest\":\"" D1 "\",\"size\":5,\"platform\":{\"os\":\"linux\",\"architecture\":\"s390x\"}},"
        "{\"digest\":\"" D2 "\",\"size\":5,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"digest\":\"" D3 "\",\"size\":5,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\"}}]}";
    struct oci_manifest m;
    char next[OCI_DIGEST_LEN + 1];
    struct wc_error e = {0};
    assert_int_equal(parse(json, &m, next, &e), 0);
#if defined(__aarch64__)
    assert_string_equal(next, D3);
#else
    assert_string_equal(next, D2);
#endif
    assert_int_equal(m.n, 0);
    const char *other = "{\"manifests\":[{\"digest\":\"" D1 "\",\"size\":5,\"platform\":{\"os\":\"windows\","
                        "\"architecture\":\"amd64\"}},{\"digest\":\"" D1 "\",\"size\":5}]}";
    assert_int_equal(parse(other, &m, next, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "none for linux/"));
}

static void hostile_manifests_are_refused(void **state)
{
    static const struct { const char *layer; int code; const char *says; } cases[] = {
        {"{\"digest\":\"" D1 "\",\"size\":1,\"annotations\":{\"org.opencontainers.image.title\":\"../../etc/cron.d/x\"}}",
         -EINVAL, "layer 0"},
        {"{\"digest\":\"" D1 "\",\"size\":1,\"annotations\":{\"org.opencontainers.image.title\":\"/etc/passwd\"}}",
         -EINVAL, "layer 0"},
        {"{\"digest\":\"sha256:../../x\",\"size\":1,\"annotations\":{\"org.opencontainers.image.title\":\"a\"}}",
         -EBADMSG, "sha256 digests only"},
        {"{\"digest\":\"" D1 "\",\"size\":-1,\"annotations\":{\"org.opencontainers.image.title\":\"a\"}}",
         -EBADMSG, "size -1"},
        {"{\"digest\":\"" D1 "\",\"annotations\":{\"org.opencontainers.image.title\":\"a\"}}", -EBADMSG, "no digest or size"},
        {"{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+lz4\",\"digest\":\"" D1 "\",\"size\":1}",
         -ENOTSUP, "not a tar layer"},
        {"{\"mediaType\":\"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip\",\"digest\":\"" D1 "\","
         "\"size\":1}", -ENOTSUP, "foreign layer"},
        {"{\"mediaType\":\"application/x-something\",\"digest\":\"" D1 "\",\"size\":1}", -ENOTSUP, "cannot place it"},
        {"{\"mediaType\":\"application/vnd.cncf.model.weight.v1.zip\",\"digest\":\"" D1 "\",\"size\":1,"
         "\"annotations\":{\"org.cncf.model.filepath\":\"w\"}}", -ENOTSUP, "not a tar layer"},
        {"{\"digest\":\"" D1 "\",\"size\":1,\"annotations\":{\"org.opencontainers.image.title\":"
         "\".warmcache-layers/000000.tar\"}}", -EINVAL, "warmcache's own directory"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[2048];
        snprintf(json, sizeof(json), "{\"layers\":[%s]}", cases[i].layer);
        struct oci_manifest m;
        char next[OCI_DIGEST_LEN + 1];
        struct wc_error e = {0};
        int rc = parse(json, &m, next, &e);
        if (rc != cases[i].code || !strstr(e.msg, cases[i].says))
            fail_msg("case %zu: %d \"%s\", want %d and \"%s\"", i, rc, e.msg, cases[i].code, cases[i].says);
        assert_int_equal(m.n, 0);
        assert_null(m.v);
    }
    struct oci_manifest m;
    char next[OCI_DIGEST_LEN + 1];
    struct wc_error e = {0};
    assert_int_equal(parse("[1,2]", &m, next, &e), -EBADMSG);
    assert_int_equal(parse("{\"layers\":[], \"layers\":[]}", &m, next, &e), -EBADMSG); /* which one? */
    assert_int_equal(parse("{\"config\":{}}", &m, next, &e), -EBADMSG);
}

static void docker_configs_give_the_registrys_entry(void **state)
{
    /* "puller:pa:ss" in base64; the password holds a ':' */
    const char *cfg = "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"eDp5\"},"
                      "\"https://Reg.Example:5000/v2/\":{\"auth\":\"cHVsbGVyOnBhOnNz\"},"
                      "\"other.example\":{\"username\":\"u\",\"password\":\"p\"}}}";
    char *u = NULL, *p = NULL;
    struct wc_error e = {0};
    assert_int_equal(oci_docker_config_auth(cfg, strlen(cfg), "reg.example:5000", &u, &p, &e), 0);
    assert_string_equal(u, "puller");
    assert_string_equal(p, "pa:ss");
    free(u);
    free(p);
    assert_int_equal(oci_docker_config_auth(cfg, strlen(cfg), "other.example", &u, &p, &e), 0);
    assert_string_equal(u, "u");
    assert_string_equal(p, "p");
    free(u);
    free(p);
    assert_int_equal(oci_docker_config_auth(cfg, strlen(cfg), "reg.example", &u, &p, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "no entry for registry reg.example (it has: index.docker.io, Reg.Example:5000"));
    static const char *const bad[] = {"[]", "{\"auths\":{\"r\":{\"auth\":\"!!!!\"}}}",
                                      "{\"auths\":{\"r\":{\"auth\":\"bm9jb2xvbg==\"}}}", /* "nocolon" */
                                      "{\"auths\":{\"r\":{\"identitytoken\":\"t\"}}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(oci_docker_config_auth(bad[i], strlen(bad[i]), "r", &u, &p, &e), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(references_split),
        cmocka_unit_test(bad_references_are_refused),
        cmocka_unit_test(identity_leaves_out_the_tag),
        cmocka_unit_test(oras_and_modelpack_layers_are_files),
        cmocka_unit_test(archives_are_keyed_in_order_with_how_to_apply_them),
        cmocka_unit_test(an_index_names_this_platform),
        cmocka_unit_test(hostile_manifests_are_refused),
        cmocka_unit_test(docker_configs_give_the_registrys_entry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
