/* Picks the source implementation by URL scheme. */
#include "cache/source.h"
#include "base/macros.h"
#include "s3/client.h"

#include <string.h>

int source_url_check(const char *url, struct wc_error *e)
{
    if (strncmp(url, "file://", 7) == 0)
        return source_file_url_check(url, e);
    if (strncmp(url, "s3://", 5) == 0)
        return s3_url_check(url, e);
    return wc_err(e, -EINVAL, "source \"%.200s\" is not a URL warmcache can read: use file:///path/ or s3://bucket/prefix/", url);
}

int source_open(const char *url, const struct source_options *opt, struct source **ret, struct wc_error *e)
{
    int r = source_url_check(url, e);
    if (r < 0)
        return r;
    if (strncmp(url, "s3://", 5) == 0)
        return source_s3_open(url, opt, ret, e);
    return source_file_open(url, ret, e);
}

void source_free(struct source *s)
{
    s->ops->free(s);
}
