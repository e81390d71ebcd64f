/*
 * Whole-object checksums as S3 stores them (x-amz-checksum-<algorithm>,
 * base64 of the big-endian digest): computed over a file we wrote, to prove
 * the copy holds the bytes S3 was given, not merely as many of them.
 *
 * CRC32 and CRC32C come from ISA-L (SIMD on x86 and arm64, chosen over
 * hand-written intrinsics because it dispatches per CPU and is maintained);
 * CRC64NVME is computed here, by table, until the ISA-L in Debian has it
 * (2.31); SHA-1 and SHA-256 come from OpenSSL.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

enum cksum_alg { CKSUM_NONE, CKSUM_CRC32, CKSUM_CRC32C, CKSUM_CRC64NVME, CKSUM_SHA1, CKSUM_SHA256 };

#define CKSUM_VALUE_MAX 96 /* base64 of a digest, as S3 sends it */

struct cksum {
    enum cksum_alg alg;
    char value[CKSUM_VALUE_MAX]; /* base64; for a COMPOSITE checksum, with its "-N" suffix */
    int composite;               /* a checksum of part checksums: not verifiable from the bytes alone */
};

/* "crc32c" (any case) -> CKSUM_CRC32C; CKSUM_NONE if unknown. */
enum cksum_alg cksum_alg_from_name(const char *name, size_t len);
const char *cksum_alg_name(enum cksum_alg a);

/* Checksum of bytes [0, size) of fd into the base64 form S3 uses. */
int cksum_fd(int fd, uint64_t size, enum cksum_alg a, char out[CKSUM_VALUE_MAX], struct wc_error *e);

/* The same fed in order, a range of a file at a time (a file checked as
 * its parts land, not read back whole at the end): final frees it. */
struct cksum_stream;
int cksum_stream_new(enum cksum_alg a, struct cksum_stream **ret);
int cksum_stream_fd(struct cksum_stream *s, int fd, uint64_t off, uint64_t len, struct wc_error *e);
void cksum_stream_final(struct cksum_stream *s, char out[CKSUM_VALUE_MAX]);
void cksum_stream_free(struct cksum_stream *s);

/* The same over a buffer (tests). */
void cksum_buf(const void *p, size_t n, enum cksum_alg a, char out[CKSUM_VALUE_MAX]);

/* CRC64NVME of parts, for a file fetched in pieces: the CRC of a part as it
 * arrives (start from cksum_crc64nvme_init(), feed, finish), and the CRC of
 * A followed by B from the CRCs of A and B and B's length. */
static inline uint64_t cksum_crc64nvme_init(void) { return ~0ull; }
uint64_t cksum_crc64nvme_update(uint64_t state, const void *p, size_t n);
static inline uint64_t cksum_crc64nvme_final(uint64_t state) { return ~state; }
uint64_t cksum_crc64nvme_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b);
/* A finished CRC64NVME in S3's base64 form. */
void cksum_crc64nvme_b64(uint64_t crc, char out[CKSUM_VALUE_MAX]);
