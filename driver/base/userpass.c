/* See userpass.h. One decoder for the places that receive credentials this
 * way, so each checks them alike (padding, an embedded NUL, an empty user). */
#include "base/userpass.h"
#include "base/macros.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

int userpass_decode(const char *b64, char **ret_user, char **ret_pass)
{
    size_t n = strlen(b64);
    if (n == 0 || n % 4)
        return -EINVAL;
    _cleanup_free_ unsigned char *raw = malloc(n / 4 * 3 + 1);
    if (!raw)
        return -ENOMEM;
    int got = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)n);
    if (got < 0)
        return -EINVAL;
    for (size_t k = n; got > 0 && k > 0 && b64[k - 1] == '='; k--) /* EVP_DecodeBlock counts the padding as bytes */
        got--;
    raw[got] = '\0';
    char *colon = memchr(raw, ':', (size_t)got);
    int r = -EINVAL;
    if (colon && colon != (char *)raw && strlen((char *)raw) == (size_t)got) {
        *colon = '\0';
        char *u = strdup((char *)raw), *p = strdup(colon + 1);
        if (u && p) {
            *ret_user = u;
            *ret_pass = p;
            r = 0;
        } else {
            free(u);
            free(p);
            r = -ENOMEM;
        }
    }
    explicit_bzero(raw, (size_t)got);
    return r;
}
