/* See buf.h. */
#include "base/buf.h"

#include <stdlib.h>
#include <string.h>

size_t wc_buf_write(char *data, size_t size, size_t nmemb, void *buf)
{
    struct wc_buf *b = buf;
    size_t len = size * nmemb;
    if (b->max && b->n + len > b->max)
        return 0;
    char *np = realloc(b->p, b->n + len + 1);
    if (!np)
        return 0;
    memcpy(np + b->n, data, len);
    b->n += len;
    np[b->n] = '\0';
    b->p = np;
    return len;
}

void wc_buf_wipe(struct wc_buf *b)
{
    if (b->p)
        explicit_bzero(b->p, b->n);
    free(b->p);
    b->p = NULL;
    b->n = 0;
}
