/* Label selectors as Kubernetes evaluates them (the prewarm parameter), names
 * escaped for API paths, and the watch stream's framing: events cut anywhere
 * by the network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "kube/client.h"
#include "kube/selector.h"

static void matching(void **state)
{
    json_t *l = json_pack("{s:s, s:s, s:s}", "node.kubernetes.io/instance-type", "p5.48xlarge",
                          "warmcache.csi.dev/prewarm", "true", "zone", "use1-az4");
    static const struct { const char *sel; int want; } v[] = {
        {"warmcache.csi.dev/prewarm=true", 1},
        {"warmcache.csi.dev/prewarm==true", 1},
        {"warmcache.csi.dev/prewarm!=true", 0},
        {"warmcache.csi.dev/prewarm", 1},
        {"!warmcache.csi.dev/prewarm", 0},
        {"!gpu", 1},
        {"gpu!=a100", 1}, /* absent: != holds, as in Kubernetes */
        {"node.kubernetes.io/instance-type in (p4d.24xlarge, p5.48xlarge)", 1},
        {"node.kubernetes.io/instance-type notin (p5.48xlarge)", 0},
        {"gpu in (a100)", 0},
        {"gpu notin (a100)", 1},
        {"zone=use1-az4, node.kubernetes.io/instance-type in (p5.48xlarge,p5e.48xlarge), warmcache.csi.dev/prewarm", 1},
        {"zone=use1-az4,zone=use1-az5", 0},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++)
        if (selector_matches(v[i].sel, l) != v[i].want)
            fail_msg("\"%s\" gave %d, want %d", v[i].sel, selector_matches(v[i].sel, l), v[i].want);
    json_decref(l);
}

static void malformed(void **state)
{
    const char *bad[] = {"", ",", "a=b,", "=b", "a in ()", "a in (b", "a in b", "a=(b)", "a b", "!a=b",
                         "a==b c", "a in (b,)", "a)", "a=b;c=d", "a=\x01"};
    struct wc_error e;
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (selector_check(bad[i], &e) != -EINVAL)
            fail_msg("\"%s\" was accepted", bad[i]);
    assert_int_equal(selector_check("a=b, c in (d,e), !f, g", &e), 0);
    assert_non_null(strstr((selector_check("a in b", &e), e.msg), "not a label selector"));
}

static int collect(void *ctx, const char *type, json_t *obj)
{
    json_array_append_new(ctx, json_pack("{s:s, s:O*}", "type", type, "name",
                                         json_object_get(json_object_get(obj, "metadata"), "name")));
    return strcmp(type, "ERROR") == 0 ? -ESTALE : 0;
}

/* Names in API paths and field selectors: encoded, and never cut short (a
 * truncated name would address another object). */
static void escaping(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(kube_escape("spec.nodeName=ip-10-0-1-2", out, sizeof(out)), 0);
    assert_string_equal(out, "spec.nodeName%3Dip-10-0-1-2");
    assert_int_equal(kube_escape("a/b c", out, sizeof(out)), 0);
    assert_string_equal(out, "a%2Fb%20c");
    assert_int_equal(kube_escape("pvc-0123456789abcdef0123456789abcdef", out, sizeof(out)), -ENAMETOOLONG);
    assert_string_equal(out, "");
    assert_int_equal(kube_escape("ab/", out, 5), -ENAMETOOLONG); /* "ab%2F" needs 6 bytes with the NUL */
    assert_int_equal(kube_escape("ab/", out, 6), 0);
}

static void watch_lines(void **state)
{
    const char *stream = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"pv-a\"}}}\n"
                         "not json\n"
                         "{\"type\":\"MODIFIED\",\"object\":\"a string, not an object\"}\n"
                         "{\"object\":{}}\n"
                         "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"pv-b\"}}}\n"
                         "{\"type\":\"ERROR\",\"object\":{\"code\":410}}\n"
                         "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"after\"}}}\n";
    size_t len = strlen(stream);
    for (size_t chunk = 1; chunk <= len; chunk += chunk < 8 ? 1 : 37) {
        json_t *got = json_array();
        struct kube_watch_lines *w = kube_watch_lines_new(collect, got);
        int r = 0;
        for (size_t off = 0; r == 0 && off < len; off += chunk)
            r = kube_watch_lines_feed(w, stream + off, len - off < chunk ? len - off : chunk);
        assert_int_equal(r, -ESTALE); /* the ERROR event ends the watch: nothing after it is handed on */
        assert_int_equal(json_array_size(got), 3);
        assert_string_equal(json_string_value(json_object_get(json_array_get(got, 0), "name")), "pv-a");
        assert_string_equal(json_string_value(json_object_get(json_array_get(got, 1), "name")), "pv-b");
        kube_watch_lines_free(w);
        json_decref(got);
    }
    /* one line over 8 MiB: refused, not buffered without end */
    struct kube_watch_lines *w = kube_watch_lines_new(collect, NULL);
    static char big[1 << 20];
    memset(big, 'x', sizeof(big));
    int r = 0;
    for (int i = 0; i < 9 && r == 0; i++)
        r = kube_watch_lines_feed(w, big, sizeof(big));
    assert_int_equal(r, -EFBIG);
    kube_watch_lines_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(matching), cmocka_unit_test(malformed),
                                       cmocka_unit_test(watch_lines), cmocka_unit_test(escaping)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
