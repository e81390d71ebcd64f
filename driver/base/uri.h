/* Percent-encoding for URLs we build from untrusted names (S3 keys,
 * Kubernetes object names, field selectors). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* RFC 3986 unreserved: A-Z a-z 0-9 - . _ ~ (ASCII only; isalnum() would
 * follow the locale). */
bool uri_unreserved(unsigned char c);

/* Unreserved characters kept, every other byte %XX in upper case; '/' kept
 * when keep_slash (paths), encoded otherwise (segments, query values).
 * -ENAMETOOLONG, and out empty, if out (n bytes, NUL included) is too small:
 * a truncated name would address another object. */
int uri_encode(const char *in, bool keep_slash, char *out, size_t n);
