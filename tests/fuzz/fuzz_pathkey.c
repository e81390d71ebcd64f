/* Object keys from a listing: any bytes in, either a refusal or a key that,
 * joined under a directory, cannot leave it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/pathkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wc_error e;
    if (pathkey_check((const char *)data, size, &e) != 0)
        return 0;
    /* accepted: no NUL, no leading '/', no "." or ".." component */
    if (memchr(data, 0, size) || data[0] == '/')
        abort();
    char *k = malloc(size + 3);
    k[0] = '/';
    memcpy(k + 1, data, size);
    k[size + 1] = '/';
    k[size + 2] = '\0';
    if (strstr(k, "/../") || strstr(k, "/./") || strstr(k, "//"))
        abort();
    free(k);
    return 0;
}
