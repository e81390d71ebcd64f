/* Label selectors as Kubernetes evaluates them (the prewarm parameter). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(matching), cmocka_unit_test(malformed)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
