/* S3 response bodies off the network: a listing page or an error body. The
 * parser must never crash, and every key it accepts must be a safe relative
 * path under the prefix. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/pathkey.h"
#include "s3/errors.h"
#include "s3/xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int check_key(void *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    struct wc_error e;
    (void)ctx, (void)size, (void)etag;
    if (pathkey_check(key, len, &e) != 0)
        abort(); /* the parser handed on a key the rules refuse */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct s3_list_page page;
    struct wc_error e;
    s3_parse_list_page((const char *)data, size, "models/", check_key, NULL, &page, &e);
    struct s3_error_info ei;
    s3_parse_error((const char *)data, size, 500, &ei);
    if (memchr(ei.code, '\x1b', sizeof(ei.code)) || memchr(ei.message, '\x1b', sizeof(ei.message)))
        abort(); /* server text must come out escaped */
    return 0;
}
