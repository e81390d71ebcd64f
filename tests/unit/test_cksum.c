/*
 * Object checksums must equal what S3 computes, byte for byte in S3's
 * base64 form: the standard check values of each CRC ("123456789"), SHA-1
 * and SHA-256, and over a file longer than the read-back buffer the same
 * value as over the buffer (values of the 3 MiB pattern from Python's zlib
 * and hashlib).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cksum.h"

static void check_values(void **state)
{
    static const struct { enum cksum_alg a; const char *want; } v[] = {
        {CKSUM_CRC32, "y/Q5Jg=="},
        {CKSUM_CRC32C, "4waSgw=="},
        {CKSUM_CRC64NVME, "rosUhgp5mIg="},
        {CKSUM_SHA1, "98O8HYCOBHMq32eZZczDTKeuNEE="},
        {CKSUM_SHA256, "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
        char out[CKSUM_VALUE_MAX];
        cksum_buf("123456789", 9, v[i].a, out);
        if (strcmp(out, v[i].want) != 0)
            fail_msg("%s: %s, want %s", cksum_alg_name(v[i].a), out, v[i].want);
    }
}

static void names_from_headers(void **state)
{
    assert_int_equal(cksum_alg_from_name("crc64nvme", 9), CKSUM_CRC64NVME);
    assert_int_equal(cksum_alg_from_name("CRC32C", 6), CKSUM_CRC32C);
    assert_int_equal(cksum_alg_from_name("crc32", 5), CKSUM_CRC32);
    assert_int_equal(cksum_alg_from_name("md5", 3), CKSUM_NONE);
    assert_int_equal(cksum_alg_from_name("type", 4), CKSUM_NONE);
}

static void a_file_in_chunks_gives_the_buffer_value(void **state)
{
    size_t n = 3 * 1024 * 1024 + 17;
    unsigned char *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 7 + i / 4096);
    char path[] = "/tmp/wc-cksum.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    unlink(path);
    struct wc_error e;
    for (enum cksum_alg a = CKSUM_CRC32; a <= CKSUM_SHA256; a++) {
        char x[CKSUM_VALUE_MAX], y[CKSUM_VALUE_MAX];
        cksum_buf(b, n, a, x);
        assert_int_equal(cksum_fd(fd, n, a, y, &e), 0);
        assert_string_equal(x, y);
        if (a == CKSUM_CRC32)
            assert_string_equal(x, "Lpj+iA==");
        if (a == CKSUM_SHA256)
            assert_string_equal(x, "GiNfOKhwvzM5naHDMHMQa+lmhPLvp9TacmwkPX2xVYQ=");
    }
    char z[CKSUM_VALUE_MAX];
    assert_int_equal(cksum_fd(fd, n + 1, CKSUM_CRC32C, z, &e), -EIO); /* shorter than its listing */
    close(fd);
    free(b);
}

uint64_t cksum_crc64nvme_table_for_test(uint64_t crc, const void *p, size_t n);
uint64_t cksum_crc64nvme_for_test(uint64_t crc, const void *p, size_t n);

/* The carry-less-multiply CRC64NVME against the table, at every length
 * around its block sizes, from any start state, and chained. */
static void crc64_fast_path_equals_the_table(void **state)
{
    size_t n = 4096 + 100;
    unsigned char *b = malloc(n);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        b[i] = (unsigned char)seed;
    }
    cksum_crc64nvme_for_test(0, "", 0); /* initialises the tables */
    for (size_t len = 0; len <= 300; len++)
        for (size_t off = 0; off < 3; off++) {
            uint64_t init = len * 0x100000001b3ull;
            uint64_t want = cksum_crc64nvme_table_for_test(init, b + off, len);
            if (cksum_crc64nvme_for_test(init, b + off, len) != want)
                fail_msg("length %zu at offset %zu differs", len, off);
        }
    uint64_t whole = cksum_crc64nvme_for_test(~0ull, b, n);
    uint64_t chained = cksum_crc64nvme_for_test(cksum_crc64nvme_for_test(~0ull, b, 1000), b + 1000, n - 1000);
    assert_true(whole == chained);
    assert_true(whole == cksum_crc64nvme_table_for_test(~0ull, b, n));
    free(b);
}

/* Parts fetched apart and combined give the CRC of the whole. */
static void crc64_of_parts_combines(void **state)
{
    size_t n = 100000;
    unsigned char *b = malloc(n);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 31 + i / 7);
    char whole[CKSUM_VALUE_MAX], combined[CKSUM_VALUE_MAX];
    cksum_buf(b, n, CKSUM_CRC64NVME, whole);
    static const size_t cuts[][3] = {{0, 1, 99999}, {4096, 8192, 50000}, {1, 2, 3}, {33333, 66666, 99999}};
    for (size_t c = 0; c < sizeof(cuts) / sizeof(*cuts); c++) {
        size_t at[5] = {0, cuts[c][0], cuts[c][1], cuts[c][2], n};
        uint64_t crc = cksum_crc64nvme_final(cksum_crc64nvme_update(cksum_crc64nvme_init(), b, 0));
        for (int k = 0; k < 4; k++) {
            uint64_t part = cksum_crc64nvme_final(cksum_crc64nvme_update(cksum_crc64nvme_init(), b + at[k],
                                                                          at[k + 1] - at[k]));
            crc = k == 0 ? part : cksum_crc64nvme_combine(crc, part, at[k + 1] - at[k]);
        }
        cksum_crc64nvme_b64(crc, combined);
        assert_string_equal(combined, whole);
    }
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(check_values),
        cmocka_unit_test(names_from_headers),
        cmocka_unit_test(a_file_in_chunks_gives_the_buffer_value),
        cmocka_unit_test(crc64_fast_path_equals_the_table),
        cmocka_unit_test(crc64_of_parts_combines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
