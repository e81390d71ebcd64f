/* The per-prefix request rate (s3/rate.h) on a clock of our own: no limit
 * before a SlowDown, half the sending rate after one, one cut per burst,
 * growth while calm, requests paced by the limit, gone after a calm minute. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdatomic.h>

#include "s3/rate.h"

/* Sends as fast as the limit lets, for secs from t, one try every step; returns requests sent. */
static int send_for(struct s3_rate *r, double *t, double secs, double step)
{
    int sent = 0;
    for (double end = *t + secs; *t < end; *t += step)
        if (s3_rate_take(r, *t) == 0) {
            sent++;
            s3_rate_ok(r, *t);
        }
    return sent;
}

/* n SlowDowns answered at once, as a burst over S3's limit comes back */
static void slow_down(struct s3_rate *r, double now, int n)
{
    for (int i = 0; i < n; i++)
        s3_rate_throttled(r, now + i * 0.0001);
}

static void no_limit_until_s3_says_slow_down(void **state)
{
    struct s3_rates t;
    s3_rates_init(&t);
    struct s3_rate *r = s3_rate_get(&t, "http://s3/models/llama/");
    double now = 100;
    assert_int_equal(send_for(r, &now, 1.0, 0.001), 1000); /* nothing held back */
    assert_true(s3_rate_limit(r) == 0);
    s3_rate_put(&t, r, now);
    s3_rates_fini(&t);
}

static void a_slowdown_halves_the_rate_once_per_burst(void **state)
{
    struct s3_rates t;
    s3_rates_init(&t);
    struct s3_rate *r = s3_rate_get(&t, "k");
    double now = 100;
    send_for(r, &now, 2.0, 0.005); /* 200 a second */
    for (int i = 0; i < 50; i++)   /* one burst of SlowDowns: one cut */
        s3_rate_throttled(r, now + i * 0.001);
    double l = s3_rate_limit(r);
    assert_true(l > 80 && l < 120);
    assert_int_equal(r->cuts, 1);
    /* paced: about the limit a second, not the 200 tried */
    now += 0.1;
    int sent = send_for(r, &now, 1.0, 0.005);
    assert_true(sent >= 85 && sent <= 135);
    /* grows while calm: a tenth of the rate cut from, each second */
    send_for(r, &now, 5.0, 0.005);
    assert_true(s3_rate_limit(r) > l + 50);
    /* a later SlowDown cuts again, to half of what was sent (paced by the limit) */
    double before = s3_rate_limit(r);
    now += 0.5;
    slow_down(r, now, 30);
    assert_int_equal(r->cuts, 2);
    assert_true(s3_rate_limit(r) <= before / 2 + 1 && s3_rate_limit(r) >= RATE_MIN);
    /* a token taken for a request not sent comes back */
    now += 2.0;
    assert_true(s3_rate_take(r, now) == 0);
    s3_rate_untake(r);
    int burst = 0;
    while (s3_rate_take(r, now) == 0)
        burst++;
    assert_true(burst >= 1);
    s3_rate_put(&t, r, now);
    s3_rates_fini(&t);
}

static void the_limit_goes_after_a_calm_minute_and_is_shared(void **state)
{
    struct s3_rates t;
    s3_rates_init(&t);
    struct s3_rate *a = s3_rate_get(&t, "k"), *b = s3_rate_get(&t, "k"), *other = s3_rate_get(&t, "k2");
    assert_ptr_equal(a, b); /* two fills of one prefix share one limit */
    assert_ptr_not_equal(a, other);
    double now = 100;
    send_for(a, &now, 1.0, 0.01);
    slow_down(a, now, 20);
    assert_true(s3_rate_limit(b) > 0);
    assert_true(s3_rate_limit(other) == 0);
    /* the node then sends little (one fill of small files): the limit stops binding */
    for (int i = 0; i < 70; i++) {
        now += 1.0;
        if (s3_rate_take(a, now) == 0)
            s3_rate_ok(a, now);
    }
    assert_true(s3_rate_limit(a) == 0);
    s3_rate_put(&t, a, now);
    s3_rate_put(&t, b, now);
    s3_rate_put(&t, other, now);
    assert_null(t.list); /* no fill and no limit: nothing kept */
    s3_rates_fini(&t);
}

/* A limit outlives its last fill for a calm minute, then goes. */
static void an_unused_limit_goes_after_a_calm_minute(void **state)
{
    struct s3_rates t;
    s3_rates_init(&t);
    struct s3_rate *r = s3_rate_get(&t, "k");
    double now = 100;
    send_for(r, &now, 1.0, 0.01);
    slow_down(r, now, 20);
    s3_rate_put(&t, r, now + 1);
    assert_non_null(t.list); /* the next fill of the prefix starts where S3 left the node */
    r = s3_rate_get(&t, "k");
    assert_true(s3_rate_limit(r) > 0);
    s3_rate_put(&t, r, now + RATE_CALM_S + 1);
    assert_null(t.list);
    assert_int_equal(atomic_load(&t.cuts), 1); /* its cuts still count */
    s3_rates_fini(&t);
}

/* One SlowDown in fifty (a partition splitting, a stray 503) is not S3's
 * rate: it never cuts; a burst past the limit does. */
static void a_trickle_of_slowdowns_is_not_a_limit(void **state)
{
    struct s3_rates t;
    s3_rates_init(&t);
    struct s3_rate *r = s3_rate_get(&t, "k");
    double now = 100;
    for (int i = 0; i < 5000; i++, now += 0.002) { /* 500 a second for 10 s */
        assert_true(s3_rate_take(r, now) == 0);
        if (i % 50 == 49)
            s3_rate_throttled(r, now);
        else
            s3_rate_ok(r, now);
    }
    assert_true(s3_rate_limit(r) == 0);
    assert_int_equal(r->cuts, 0);
    slow_down(r, now, 2); /* two are not enough either */
    assert_int_equal(r->cuts, 0);
    slow_down(r, now + 0.01, 100);
    assert_int_equal(r->cuts, 1);
    s3_rate_put(&t, r, now);
    s3_rates_fini(&t);
}

/* A server that answers a fifth of all requests SlowDown whatever the rate
 * (cutting never helps): the limit stays at a quarter of the best rate seen */
static void slowdowns_that_do_not_fall_do_not_talk_it_down_to_nothing(void **state)
{
    struct s3_rates t;
    s3_rates_init(&t);
    struct s3_rate *r = s3_rate_get(&t, "k");
    double now = 100;
    int i = 0;
    for (; now < 102; now += 0.0025, i++) { /* 400 a second, all answered */
        assert_true(s3_rate_take(r, now) == 0);
        s3_rate_ok(r, now);
    }
    for (; now < 160; now += 0.0025, i++) { /* then one in five SlowDown, at any rate */
        if (s3_rate_take(r, now) != 0)
            continue;
        if (i % 5 == 0)
            s3_rate_throttled(r, now);
        else
            s3_rate_ok(r, now);
    }
    assert_true(r->cuts >= 2);
    assert_true(s3_rate_limit(r) >= 0.25 * 400 * 0.95);
    s3_rate_put(&t, r, now);
    s3_rates_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_limit_until_s3_says_slow_down),
        cmocka_unit_test(a_slowdown_halves_the_rate_once_per_burst),
        cmocka_unit_test(the_limit_goes_after_a_calm_minute_and_is_shared),
        cmocka_unit_test(an_unused_limit_goes_after_a_calm_minute),
        cmocka_unit_test(a_trickle_of_slowdowns_is_not_a_limit),
        cmocka_unit_test(slowdowns_that_do_not_fall_do_not_talk_it_down_to_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
