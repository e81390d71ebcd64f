/* A growing memory buffer for a response body, with a cap (a body past it
 * fails the write, as a too-large reply should). Its write function has the
 * shape libcurl's CURLOPT_WRITEFUNCTION wants. */
#pragma once

#include <stddef.h>

struct wc_buf {
    char *p;      /* NUL-terminated */
    size_t n;
    size_t max;   /* 0: unlimited */
};

size_t wc_buf_write(char *data, size_t size, size_t nmemb, void *buf);
/* Frees the buffer, wiping it first (bodies may hold credentials). */
void wc_buf_wipe(struct wc_buf *b);
