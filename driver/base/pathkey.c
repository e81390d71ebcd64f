/* See pathkey.h. */
#include "base/pathkey.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void pathkey_quote(const char *key, size_t len, char *out, size_t outlen)
{
    size_t o = 0;
    const size_t shown = len > 120 ? 120 : len;
    for (size_t i = 0; i < shown && o + 5 < outlen; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    if (shown < len && o + 4 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o < outlen ? o : outlen - 1] = '\0';
}

static int bad(struct wc_error *e, const char *key, size_t len, const char *why)
{
    char q[512];
    pathkey_quote(key, len, q, sizeof(q));
    return wc_err(e, -EINVAL, "object key \"%s\" is refused: %s", q, why);
}

int pathkey_check(const char *key, size_t len, struct wc_error *e)
{
    if (len == 0)
        return bad(e, key, len, "it is empty");
    if (len > PATHKEY_MAX)
        return bad(e, key, len, "it is longer than 1024 bytes");
    if (key[0] == '/')
        return bad(e, key, len, "it is an absolute path");
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        unsigned char c = i < len ? (unsigned char)key[i] : '/';
        if (c == 0)
            return bad(e, key, len, "it contains a NUL byte");
        if (c < 0x20 || c == 0x7f)
            return bad(e, key, len, "it contains a control character");
        if (c != '/')
            continue;
        size_t clen = i - start;
        if (clen == 0)
            return bad(e, key, len, "it has an empty path component (\"//\" or a trailing \"/\")");
        if ((clen == 1 && key[start] == '.') || (clen == 2 && key[start] == '.' && key[start + 1] == '.'))
            return bad(e, key, len, "it has a \".\" or \"..\" component that would leave the cache directory");
        if (clen > PATHKEY_COMPONENT_MAX)
            return bad(e, key, len, "a path component is longer than 255 bytes");
        start = i + 1;
    }
    return 0;
}

int abspath_check(const char *path, const char *what, struct wc_error *e)
{
    if (!path || !*path)
        return wc_err(e, -EINVAL, "%s is required", what);
    if (path[0] != '/')
        return wc_err(e, -EINVAL, "%s must be an absolute path", what);
    if (strlen(path) >= 2048)
        return wc_err(e, -EINVAL, "%s is too long", what);
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return wc_err(e, -EINVAL, "%s contains a control character", what);
    for (const char *p = strstr(path, "/.."); p; p = strstr(p + 1, "/.."))
        if (p[3] == '/' || p[3] == '\0')
            return wc_err(e, -EINVAL, "%s must not contain \"..\"", what);
    return 0;
}
