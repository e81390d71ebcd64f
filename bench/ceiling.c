/*
 * bench_s3_ceiling: what the S3 server can serve on this machine, measured by
 * the smallest client we can write: every object under a prefix fetched in
 * 8 MiB ranged GETs over many connections, the bytes dropped into /dev/null
 * (no file system work at all). Every fill tool's rate is also shown as a
 * fraction of this. Credentials from the environment, like the tools.
 *
 *   bench_s3_ceiling s3://bucket/prefix/ ENDPOINT CONNECTIONS
 * prints {"seconds": ..., "bytes": ..., "cpu_seconds": ..., "peak_rss_kib": ...}
 */
#include "s3/client.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PART (8ull << 20)

struct obj {
    char *key, *etag;
    uint64_t size;
};

struct plan {
    struct obj *o;
    size_t no, cap;
    struct { size_t obj; uint64_t off, len; } *p;
    size_t np;
    int devnull;
};

static int add(void *ctx, const char *key, size_t len, uint64_t size, const char *etag)
{
    struct plan *pl = ctx;
    if (pl->no == pl->cap) {
        pl->cap = pl->cap ? pl->cap * 2 : 1024;
        pl->o = realloc(pl->o, pl->cap * sizeof(*pl->o));
        if (!pl->o)
            return -ENOMEM;
    }
    pl->o[pl->no++] = (struct obj){strndup(key, len), strdup(etag ? etag : ""), size};
    return 0;
}

static void part(void *ctx, size_t i, struct s3_part *ret)
{
    struct plan *pl = ctx;
    struct obj *o = &pl->o[pl->p[i].obj];
    *ret = (struct s3_part){o->key, o->etag, pl->p[i].off, pl->p[i].len, o->size};
}

static int fd(void *ctx, size_t i, struct wc_error *e) { return ((struct plan *)ctx)->devnull; }
static int done(void *ctx, size_t i, struct wc_error *e) { return 0; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: bench_s3_ceiling s3://bucket/prefix/ ENDPOINT CONNECTIONS\n");
        return 2;
    }
    struct wc_error e;
    struct s3_client *c;
    struct s3_ctx *ctx;
    if (s3_ctx_new(&ctx) < 0)
        return 1;
    struct s3_options so = {.ctx = ctx, .endpoint = argv[2]};
    struct plan pl = {0};
    if (s3_client_new(argv[1], &so, &c, &e) < 0 || s3_list(c, add, &pl, NULL, 0, &e) < 0) {
        fprintf(stderr, "bench_s3_ceiling: %s\n", e.msg);
        return 1;
    }
    uint64_t bytes = 0;
    size_t np = 0;
    for (size_t k = 0; k < pl.no; k++)
        np += pl.o[k].size ? (pl.o[k].size + PART - 1) / PART : 0;
    pl.p = calloc(np ? np : 1, sizeof(*pl.p));
    for (size_t k = 0; k < pl.no; k++)
        for (uint64_t off = 0; off < pl.o[k].size; off += PART) {
            uint64_t len = pl.o[k].size - off < PART ? pl.o[k].size - off : PART;
            pl.p[pl.np].obj = k;
            pl.p[pl.np].off = off;
            pl.p[pl.np++].len = len;
            bytes += len;
        }
    pl.devnull = open("/dev/null", O_WRONLY);
    struct s3_transfer t = {.n = pl.np, .ctx = &pl, .part = part, .fd = fd, .done = done,
                            .connections = (unsigned)atoi(argv[3])};
    double t0 = now_s();
    if (s3_transfer_run(c, &t, &e) < 0) {
        fprintf(stderr, "bench_s3_ceiling: %s\n", e.msg);
        return 1;
    }
    double secs = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                 ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    printf("{\"seconds\": %.3f, \"bytes\": %llu, \"cpu_seconds\": %.3f, \"peak_rss_kib\": %ld}\n", secs,
           (unsigned long long)bytes, cpu, ru.ru_maxrss);
    s3_client_free(c);
    s3_ctx_free(ctx);
    return 0;
}
