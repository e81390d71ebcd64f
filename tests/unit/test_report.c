/* What the node plugin writes into PV annotations: whole names, however many. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi/report.h"

/* Issue #13 finding 12: the annotation was cut at 4096 bytes mid-name. */
static void warm_nodes_keeps_every_name_whole(void **state)
{
    char have[8192] = "";
    size_t o = 0;
    for (int i = 0; i < 150; i++)
        o += (size_t)snprintf(have + o, sizeof(have) - o, "%sip-10-0-%d-%d.us-west-2.compute.internal", i ? "," : "",
                              i / 250, i % 250);
    assert_true(strlen(have) > 5000);
    char *out = NULL;
    assert_int_equal(warm_nodes_edit(have, "ip-10-9-9-9.ec2.internal", true, &out), 1);
    assert_int_equal(strncmp(out, have, strlen(have)), 0);
    assert_string_equal(out + strlen(have), ",ip-10-9-9-9.ec2.internal");
    char *back = NULL;
    assert_int_equal(warm_nodes_edit(out, "ip-10-9-9-9.ec2.internal", false, &back), 1);
    assert_string_equal(back, have);
    assert_int_equal(warm_nodes_edit(back, "ip-10-0-0-7.us-west-2.compute.internal", true, &out), 0);
    free(back);
    free(out);
    assert_int_equal(warm_nodes_edit(NULL, "n1", true, &out), 1);
    assert_string_equal(out, "n1");
    free(out);
    assert_int_equal(warm_nodes_edit("n1", "n1", false, &out), 1);
    assert_string_equal(out, "");
    free(out);
    assert_int_equal(warm_nodes_edit("n10,n1x", "n1", false, &out), 0); /* names, not prefixes */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(warm_nodes_keeps_every_name_whole)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
