/* See uri.h. */
#include "base/uri.h"

#include <errno.h>

bool uri_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

int uri_encode(const char *in, bool keep_slash, char *out, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (n == 0)
        return -ENAMETOOLONG;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        bool plain = uri_unreserved(*p) || (keep_slash && *p == '/');
        if (o + (plain ? 1 : 3) >= n) {
            out[0] = '\0';
            return -ENAMETOOLONG;
        }
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}
