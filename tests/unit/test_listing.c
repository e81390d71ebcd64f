/* Listings: the digest pins content; bad listings are refused with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "cache/listing.h"

static void add(struct listing *l, const char *k, uint64_t size, const char *etag)
{
    assert_int_equal(listing_add(l, k, strlen(k), size, etag), 0);
}

static void digest(struct listing *l, char out[LISTING_DIGEST_LEN + 1])
{
    struct wc_error e;
    assert_int_equal(listing_finalize(l, &e), 0);
    listing_digest(l, out);
}

static void digest_ignores_listing_order(void **state)
{
    struct listing a = {0}, b = {0};
    add(&a, "x/1", 10, "e1");
    add(&a, "y", 20, "e2");
    add(&b, "y", 20, "e2");
    add(&b, "x/1", 10, "e1");
    char da[65], db[65];
    digest(&a, da);
    digest(&b, db);
    assert_string_equal(da, db);
    assert_int_equal(a.bytes, 30);
    listing_free(&a);
    listing_free(&b);
}

static void digest_sees_every_change(void **state)
{
    const char *keys[] = {"k", "k", "k2"};
    uint64_t sizes[] = {1, 2, 1};
    const char *etags[] = {"e", "e", "e"};
    char base[65], d[65];
    struct listing l = {0};
    add(&l, "k", 1, "e");
    digest(&l, base);
    listing_free(&l);
    for (int i = 0; i < 3; i++) {
        add(&l, keys[i], sizes[i], etags[i]);
        digest(&l, d);
        if (i == 0)
            assert_string_equal(d, base);
        else
            assert_string_not_equal(d, base);
        listing_free(&l);
    }
    add(&l, "k", 1, "f");
    digest(&l, d);
    assert_string_not_equal(d, base);
    listing_free(&l);
}

static void duplicates_and_file_prefix_clash_refused(void **state)
{
    struct wc_error e;
    struct listing l = {0};
    add(&l, "a", 1, "");
    add(&l, "a", 1, "");
    assert_int_equal(listing_finalize(&l, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "twice"));
    listing_free(&l);
    add(&l, "w/a", 1, "");
    add(&l, "w/a-b", 1, "");
    add(&l, "w/a/b", 1, "");
    assert_int_equal(listing_finalize(&l, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "both an object and a prefix"));
    listing_free(&l);
}

static void bad_key_refused(void **state)
{
    struct wc_error e;
    struct listing l = {0};
    add(&l, "ok", 1, "");
    add(&l, "../../etc/cron.d/x", 1, "");
    assert_int_equal(listing_finalize(&l, &e), -EINVAL);
    listing_free(&l);
    assert_int_equal(listing_add(&l, "a\0b", 3, 1, ""), -EINVAL);
    listing_free(&l);
}

static void content_id_depends_on_source_and_digest(void **state)
{
    char a[CONTENT_ID_LEN + 1], b[CONTENT_ID_LEN + 1], c[CONTENT_ID_LEN + 1];
    content_id("file:///m/", "d1", a);
    content_id("file:///n/", "d1", b);
    content_id("file:///m/", "d2", c);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, c);
    content_id("file:///m/", "d1", b);
    assert_string_equal(a, b);
}

/* The streaming summary gives the very digest of the sorted listing, and the
 * same refusals, in memory that does not grow with the listing. */
static void summary_matches_the_sorted_listing(void **state)
{
    static const char *const keys[] = {"a", "a!", "a!!", "a-b/c", "b/c/d", "b/d", "c"};
    struct listing l = {0};
    struct listing_sum s;
    struct wc_error e;
    assert_int_equal(listing_sum_init(&s), 0);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        add(&l, keys[i], i * 7, "tag");
        assert_int_equal(listing_sum_add(&s, keys[i], strlen(keys[i]), i * 7, "tag", &e), 0);
    }
    char dl[65], ds[65];
    digest(&l, dl);
    listing_sum_digest(&s, ds);
    assert_string_equal(dl, ds);
    assert_int_equal(s.n, l.n);
    assert_int_equal(s.bytes, l.bytes);
    assert_true(s.n_open <= 3);
    listing_sum_free(&s);
    listing_free(&l);
}

static void summary_refuses_what_finalize_refuses(void **state)
{
    struct listing_sum s;
    struct wc_error e;
    /* "a" and, two keys later, "a/b": a file and a directory at once */
    assert_int_equal(listing_sum_init(&s), 0);
    assert_int_equal(listing_sum_add(&s, "a", 1, 1, "t", &e), 0);
    assert_int_equal(listing_sum_add(&s, "a!", 2, 1, "t", &e), 0);
    assert_int_equal(listing_sum_add(&s, "a-x", 3, 1, "t", &e), 0);
    assert_int_equal(listing_sum_add(&s, "a/b", 3, 1, "t", &e), -EINVAL);
    assert_non_null(strstr(e.msg, "both an object and a prefix"));
    listing_sum_free(&s);
    assert_int_equal(listing_sum_init(&s), 0);
    assert_int_equal(listing_sum_add(&s, "k", 1, 1, "t", &e), 0);
    assert_int_equal(listing_sum_add(&s, "k", 1, 1, "t", &e), -EINVAL);
    assert_non_null(strstr(e.msg, "listed twice"));
    /* out of order: the caller lists again into a sorted listing */
    assert_int_equal(listing_sum_add(&s, "j", 1, 1, "t", &e), -EDOM);
    assert_int_equal(listing_sum_add(&s, "../x", 4, 1, "t", &e), -EINVAL);
    listing_sum_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(digest_ignores_listing_order), cmocka_unit_test(digest_sees_every_change),
        cmocka_unit_test(duplicates_and_file_prefix_clash_refused), cmocka_unit_test(bad_key_refused),
        cmocka_unit_test(content_id_depends_on_source_and_digest),
        cmocka_unit_test(summary_matches_the_sorted_listing), cmocka_unit_test(summary_refuses_what_finalize_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
