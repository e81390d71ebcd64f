/* See volid.h. */
#include "csi/volid.h"
#include "base/fsutil.h"

#include <errno.h>
#include <string.h>

void volid_from_name(const char *name, char out[VOLID_LEN + 1])
{
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(name, strlen(name), hex);
    memcpy(out, VOLID_PREFIX, 4);
    memcpy(out + 4, hex, 32);
    out[VOLID_LEN] = '\0';
}

int volid_is_ours(const char *id)
{
    if (strlen(id) != VOLID_LEN || strncmp(id, VOLID_PREFIX, 4) != 0)
        return 0;
    for (const char *p = id + 4; *p; p++)
        if (!strchr("0123456789abcdef", *p))
            return 0;
    return 1;
}

int volid_check(const char *id, const char *what, struct wc_error *e)
{
    if (!id || !*id)
        return wc_err(e, -EINVAL, "%s is required", what);
    size_t n = strlen(id);
    if (n > VOLID_MAX)
        return wc_err(e, -EINVAL, "%s is longer than %d bytes", what, VOLID_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return wc_err(e, -EINVAL, "%s contains a control character", what);
    return 0;
}

void volid_key(const char *id, char out[33])
{
    char hex[SHA256_HEX_LEN + 1];
    sha256_hex(id, strlen(id), hex);
    memcpy(out, hex, 32);
    out[32] = '\0';
}
