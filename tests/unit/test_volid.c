/* Volume ids: stable per name, recognisable, and safe to key node state by. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "csi/volid.h"

static void same_name_same_id(void **state)
{
    char a[VOLID_LEN + 1], b[VOLID_LEN + 1], c[VOLID_LEN + 1];
    volid_from_name("pvc-1234", a);
    volid_from_name("pvc-1234", b);
    volid_from_name("pvc-1235", c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_true(volid_is_ours(a));
    assert_int_equal(strlen(a), VOLID_LEN);
}

static void foreign_ids_are_not_ours(void **state)
{
    assert_false(volid_is_ours("some-vol-id"));
    assert_false(volid_is_ours("wc1-ZZZZ1ed4cf362d576cb22ce9e3e2dcba"));
    assert_false(volid_is_ours("wc1-af1f1ed4cf362d576cb22ce9e3e2dcb"));
}

static void check_refuses_empty_long_and_control(void **state)
{
    struct wc_error e;
    char big[VOLID_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(volid_check("", "volume id", &e), -EINVAL);
    assert_int_equal(volid_check(NULL, "volume id", &e), -EINVAL);
    assert_int_equal(volid_check(big, "volume id", &e), -EINVAL);
    assert_int_equal(volid_check("a\nb", "volume id", &e), -EINVAL);
    assert_int_equal(volid_check("../../etc/passwd", "volume id", &e), 0); /* fine: never a path */
}

static void key_is_hex_whatever_the_id(void **state)
{
    char k[33];
    volid_key("../../etc/passwd", k);
    assert_int_equal(strlen(k), 32);
    for (int i = 0; i < 32; i++)
        assert_non_null(strchr("0123456789abcdef", k[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(same_name_same_id), cmocka_unit_test(foreign_ids_are_not_ours),
        cmocka_unit_test(check_refuses_empty_long_and_control), cmocka_unit_test(key_is_hex_whatever_the_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
