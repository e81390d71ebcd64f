/* Object keys become paths: none may leave the copy's directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "base/pathkey.h"

static int check(const char *k) { struct wc_error e; return pathkey_check(k, strlen(k), &e); }

static void good_keys(void **state)
{
    assert_int_equal(check("model.safetensors"), 0);
    assert_int_equal(check("a/b/c.json"), 0);
    assert_int_equal(check(".hidden/..dots/x..y"), 0);
    assert_int_equal(check("Ünïcödé/名前"), 0);
}

static void escapes_are_refused(void **state)
{
    static const char *const bad[] = {"", "/etc/passwd", "../x", "a/../../x", "a/..", "./a", "a/./b", "a//b", "a/",
                                      "a\nb", "a\x7f", "\x1b[31m"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(check(bad[i]), -EINVAL);
}

static void nul_inside_is_refused(void **state)
{
    struct wc_error e;
    assert_int_equal(pathkey_check("a\0b", 3, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "NUL"));
}

static void lengths(void **state)
{
    char comp[300], key[1100];
    memset(comp, 'c', 256);
    comp[256] = '\0';
    assert_int_equal(check(comp), -EINVAL);
    comp[255] = '\0';
    assert_int_equal(check(comp), 0);
    for (int i = 0; i < 1030; i++)
        key[i] = i % 100 == 99 ? '/' : 'k';
    key[1030] = '\0';
    assert_int_equal(check(key), -EINVAL);
    key[1024] = '\0';
    key[1023] = 'k';
    assert_int_equal(check(key), 0);
}

static void message_quotes_key_safely(void **state)
{
    struct wc_error e;
    assert_int_equal(pathkey_check("x/\x1b]0;pwned\x07", 12, &e), -EINVAL);
    assert_null(strchr(e.msg, '\x1b'));
    assert_non_null(strstr(e.msg, "\\x1b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_keys), cmocka_unit_test(escapes_are_refused), cmocka_unit_test(nul_inside_is_refused),
        cmocka_unit_test(lengths), cmocka_unit_test(message_quotes_key_safely),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
