/* See cksum.h. */
#include "base/cksum.h"
#include "base/macros.h"

#include <ctype.h>
#include <isa-l/crc.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const names[] = {"", "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"};

enum cksum_alg cksum_alg_from_name(const char *name, size_t len)
{
    for (size_t i = 1; i < ARRAY_SIZE(names); i++)
        if (strlen(names[i]) == len && strncasecmp(name, names[i], len) == 0)
            return (enum cksum_alg)i;
    return CKSUM_NONE;
}

const char *cksum_alg_name(enum cksum_alg a) { return names[a]; }

/* CRC-64/NVME: reflected, polynomial 0xad93d23594c93659, init and xorout all ones. */
static uint64_t crc64_table[8][256];
static pthread_once_t crc64_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
static void fold_init(void);
static int have_clmul;
#endif

static void crc64_init(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    have_clmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    fold_init();
#endif
    const uint64_t poly = 0x9a6c9329ac4bc9b5ull; /* the polynomial, bit-reversed */
    for (int i = 0; i < 256; i++) {
        uint64_t c = (uint64_t)i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ poly : c >> 1;
        crc64_table[0][i] = c;
    }
    for (int i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc64_table[t][i] = (crc64_table[t - 1][i] >> 8) ^ crc64_table[0][crc64_table[t - 1][i] & 0xff];
}

static uint64_t crc64nvme_table(uint64_t crc, const unsigned char *p, size_t n)
{
    while (n >= 8) { /* slice by 8 */
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= crc;
        crc = crc64_table[7][v & 0xff] ^ crc64_table[6][(v >> 8) & 0xff] ^ crc64_table[5][(v >> 16) & 0xff] ^
              crc64_table[4][(v >> 24) & 0xff] ^ crc64_table[3][(v >> 32) & 0xff] ^
              crc64_table[2][(v >> 40) & 0xff] ^ crc64_table[1][(v >> 48) & 0xff] ^ crc64_table[0][v >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc64_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

/*
 * The same with carry-less multiplication, about ten times faster: the data
 * is folded 64 bytes at a time into four 128-bit lanes, the lanes into one,
 * and the last 16 bytes go through the table. Folding a 128-bit chunk F =
 * F_hi x^64 + F_lo forward by d bits is F_hi (x^(d+64) mod P) + F_lo (x^d mod
 * P); in the bit-reflected domain a carry-less product comes out shifted one
 * bit, so the constants are x^(d+63) and x^(d-1) mod P, bit-reflected. The
 * first 8 bytes of a chunk are its high-order terms (the low qword).
 */
static uint64_t xpow_mod(unsigned k) /* x^k mod P, bit-reflected */
{
    const uint64_t poly = 0xad93d23594c93659ull;
    uint64_t r = 1;
    for (unsigned i = 0; i < k; i++)
        r = (r << 1) ^ (r >> 63 ? poly : 0);
    uint64_t rev = 0;
    for (int i = 0; i < 64; i++)
        rev |= ((r >> i) & 1) << (63 - i);
    return rev;
}

#if defined(__x86_64__)
#include <immintrin.h>

#define LANES 4
static uint64_t k_fold[LANES][2]; /* by 128 * (i + 1) bits: {for the low qword, for the high one} */

static void fold_init(void)
{
    for (unsigned i = 0; i < LANES; i++) {
        unsigned d = 128 * (i + 1);
        k_fold[i][0] = xpow_mod(d + 63);
        k_fold[i][1] = xpow_mod(d - 1);
    }
}

__attribute__((target("pclmul,sse4.1"))) static inline __m128i fold(__m128i v, __m128i k)
{
    return _mm_xor_si128(_mm_clmulepi64_si128(v, k, 0x00), _mm_clmulepi64_si128(v, k, 0x11));
}

__attribute__((target("pclmul,sse4.1"))) static inline __m128i kvec(const uint64_t k[2])
{
    return _mm_set_epi64x((long long)k[1], (long long)k[0]);
}

__attribute__((target("pclmul,sse4.1"))) static uint64_t crc64nvme_clmul(uint64_t crc, const unsigned char *p,
                                                                          size_t n)
{
    /* four lanes written out: an array of them ends up in memory, at half the speed */
    const __m128i k128 = kvec(k_fold[0]), k512 = kvec(k_fold[3]);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p), x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32)), x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    x0 = _mm_xor_si128(x0, _mm_cvtsi64_si128((long long)crc));
    p += 64;
    n -= 64;
    for (; n >= 64; p += 64, n -= 64) {
        x0 = _mm_xor_si128(fold(x0, k512), _mm_loadu_si128((const __m128i *)p));
        x1 = _mm_xor_si128(fold(x1, k512), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold(x2, k512), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold(x3, k512), _mm_loadu_si128((const __m128i *)(p + 48)));
    }
    __m128i f = _mm_xor_si128(_mm_xor_si128(fold(x0, kvec(k_fold[2])), fold(x1, kvec(k_fold[1]))),
                              _mm_xor_si128(fold(x2, k128), x3));
    for (; n >= 16; p += 16, n -= 16)
        f = _mm_xor_si128(fold(f, k128), _mm_loadu_si128((const __m128i *)p));
    unsigned char last[16];
    _mm_storeu_si128((__m128i *)last, f);
    return crc64nvme_table(crc64nvme_table(0, last, 16), p, n);
}
#endif

static uint64_t crc64nvme_update(uint64_t crc, const unsigned char *p, size_t n)
{
#if defined(__x86_64__)
    if (have_clmul && n >= 16 * LANES)
        return crc64nvme_clmul(crc, p, n);
#endif
    return crc64nvme_table(crc, p, n);
}

uint64_t cksum_crc64nvme_update(uint64_t state, const void *p, size_t n)
{
    pthread_once(&crc64_once, crc64_init);
    return crc64nvme_update(state, p, n);
}

/* Polynomial arithmetic mod P, bit-reflected (x^0 is the top bit), as zlib
 * combines CRC-32s: the CRC of A||B is CRC(A) * x^(8 len(B)) + CRC(B). */
static uint64_t multmodp(uint64_t a, uint64_t b)
{
    const uint64_t poly = 0x9a6c9329ac4bc9b5ull;
    uint64_t m = 1ull << 63, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0)
                break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ poly : b >> 1;
    }
    return p;
}

static uint64_t x2n_table[64]; /* x^(2^k) mod P */
static pthread_once_t x2n_once = PTHREAD_ONCE_INIT;

static void x2n_init(void)
{
    uint64_t p = 1ull << 62; /* x^1 */
    for (int k = 0; k < 64; k++) {
        x2n_table[k] = p;
        p = multmodp(p, p);
    }
}

uint64_t cksum_crc64nvme_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b)
{
    pthread_once(&x2n_once, x2n_init);
    uint64_t p = 1ull << 63; /* x^0 */
    unsigned k = 3;          /* x^(8 len) = x^(len 2^3) */
    for (uint64_t n = len_b; n; n >>= 1, k++)
        if (n & 1)
            p = multmodp(x2n_table[k & 63], p);
    return multmodp(p, crc_a) ^ crc_b;
}

void cksum_crc64nvme_b64(uint64_t crc, char out[CKSUM_VALUE_MAX])
{
    unsigned char d[8];
    for (int i = 0; i < 8; i++)
        d[i] = (unsigned char)(crc >> (56 - 8 * i));
    EVP_EncodeBlock((unsigned char *)out, d, 8);
}

/* For the tests: the table alone. */
uint64_t cksum_crc64nvme_table_for_test(uint64_t crc, const void *p, size_t n);
uint64_t cksum_crc64nvme_table_for_test(uint64_t crc, const void *p, size_t n) { return crc64nvme_table(crc, p, n); }
uint64_t cksum_crc64nvme_for_test(uint64_t crc, const void *p, size_t n);
uint64_t cksum_crc64nvme_for_test(uint64_t crc, const void *p, size_t n)
{
    pthread_once(&crc64_once, crc64_init);
    return crc64nvme_update(crc, p, n);
}

struct state {
    enum cksum_alg alg;
    uint32_t c32;
    uint64_t c64;
    EVP_MD_CTX *md;
};

static int st_init(struct state *s, enum cksum_alg a)
{
    *s = (struct state){.alg = a, .c32 = a == CKSUM_CRC32C ? 0xffffffffu : 0, .c64 = ~0ull};
    pthread_once(&crc64_once, crc64_init);
    if (a == CKSUM_SHA1 || a == CKSUM_SHA256) {
        s->md = EVP_MD_CTX_new();
        if (!s->md || !EVP_DigestInit_ex(s->md, a == CKSUM_SHA1 ? EVP_sha1() : EVP_sha256(), NULL))
            return -ENOMEM;
    }
    return 0;
}

static void st_update(struct state *s, const void *p, size_t n)
{
    switch (s->alg) {
    case CKSUM_CRC32: s->c32 = crc32_gzip_refl(s->c32, (unsigned char *)p, n); break;
    case CKSUM_CRC32C: s->c32 = crc32_iscsi((unsigned char *)p, (int)n, s->c32); break;
    case CKSUM_CRC64NVME: s->c64 = crc64nvme_update(s->c64, p, n); break;
    case CKSUM_SHA1:
    case CKSUM_SHA256: EVP_DigestUpdate(s->md, p, n); break;
    case CKSUM_NONE: break;
    }
}

static void st_final(struct state *s, char out[CKSUM_VALUE_MAX])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    switch (s->alg) {
    case CKSUM_CRC32:
    case CKSUM_CRC32C: {
        uint32_t v = s->alg == CKSUM_CRC32C ? ~s->c32 : s->c32;
        for (int i = 0; i < 4; i++)
            d[i] = (unsigned char)(v >> (24 - 8 * i));
        len = 4;
        break;
    }
    case CKSUM_CRC64NVME: {
        uint64_t v = ~s->c64;
        for (int i = 0; i < 8; i++)
            d[i] = (unsigned char)(v >> (56 - 8 * i));
        len = 8;
        break;
    }
    case CKSUM_SHA1:
    case CKSUM_SHA256: EVP_DigestFinal_ex(s->md, d, &len); break;
    case CKSUM_NONE: break;
    }
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    EVP_EncodeBlock((unsigned char *)out, d, (int)len);
}

void cksum_buf(const void *p, size_t n, enum cksum_alg a, char out[CKSUM_VALUE_MAX])
{
    struct state s;
    out[0] = '\0';
    if (st_init(&s, a) < 0)
        return;
    /* ISA-L takes an int length: feed large buffers in slices */
    for (size_t off = 0; off < n; off += 1u << 30)
        st_update(&s, (const char *)p + off, n - off < (1u << 30) ? n - off : 1u << 30);
    st_final(&s, out);
}

struct cksum_stream {
    struct state st;
};

int cksum_stream_new(enum cksum_alg a, struct cksum_stream **ret)
{
    struct cksum_stream *s = calloc(1, sizeof(*s));
    if (!s || st_init(&s->st, a) < 0) {
        cksum_stream_free(s);
        return -ENOMEM;
    }
    *ret = s;
    return 0;
}

void cksum_stream_free(struct cksum_stream *s)
{
    if (!s)
        return;
    EVP_MD_CTX_free(s->st.md);
    free(s);
}

void cksum_stream_final(struct cksum_stream *s, char out[CKSUM_VALUE_MAX])
{
    st_final(&s->st, out);
    cksum_stream_free(s);
}

int cksum_stream_fd(struct cksum_stream *s, int fd, uint64_t off, uint64_t len, struct wc_error *e)
{
    /* Mapped, not read: the file was just written, its pages are in the page
     * cache, and mapping them costs no copy (reading them would copy every
     * byte once more). pread stays for what cannot be mapped. */
    enum { WINDOW = 8 << 20, CHUNK = 1 << 20 }; /* small windows: mapped pages count as RSS */
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < off + len)
        return wc_err(e, -EIO, "the file is shorter than its listing while checksumming");
    long page = sysconf(_SC_PAGESIZE);
    _cleanup_free_ char *buf = NULL;
    for (uint64_t end = off + len; off < end;) {
        uint64_t base = off / (uint64_t)page * (uint64_t)page, skip = off - base;
        size_t want = end - off < WINDOW ? (size_t)(end - off) : WINDOW;
        void *m = mmap(NULL, want + skip, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)base);
        if (m != MAP_FAILED) {
            st_update(&s->st, (char *)m + skip, want);
            munmap(m, want + skip);
            off += want;
            continue;
        }
        if (!buf && !(buf = malloc(CHUNK)))
            return -ENOMEM;
        ssize_t n = RETRY_EINTR(pread(fd, buf, want < CHUNK ? want : CHUNK, (off_t)off));
        if (n <= 0)
            return n < 0 ? wc_err_errno(e, -errno, "reading back for the checksum")
                         : wc_err(e, -EIO, "the file is shorter than its listing while checksumming");
        st_update(&s->st, buf, (size_t)n);
        off += (uint64_t)n;
    }
    return 0;
}

int cksum_fd(int fd, uint64_t size, enum cksum_alg a, char out[CKSUM_VALUE_MAX], struct wc_error *e)
{
    struct cksum_stream *s;
    if (cksum_stream_new(a, &s) < 0)
        return -ENOMEM;
    int r = cksum_stream_fd(s, fd, 0, size, e);
    if (r < 0) {
        cksum_stream_free(s);
        return r;
    }
    cksum_stream_final(s, out);
    return 0;
}
