/*
 * warmcachectl fill SOURCE DIR: the fill engine alone, without a plugin or a
 * cluster. It lists SOURCE, fills a copy through the same store code as the
 * node plugin (parts, journal, placer), and moves the finished copy to DIR.
 *
 * The work happens in DIR.warmcache-fill beside DIR (same file system, so
 * the last step is a rename); running the same command again after a kill
 * resumes there. DIR must not exist or be empty: a fill never mixes with
 * other files. On a terminal, stderr shows a progress bar.
 */
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/units.h"
#include "cache/fill.h"
#include "cache/store.h"
#include "s3/client.h"

#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int cmd_fill(int argc, char **argv);

struct bar {
    struct fill_progress *p;
    atomic_int stop;
    double t0;
    int tty;
};

static void draw(struct bar *b, int last)
{
    struct fill_progress *p = b->p;
    uint64_t done = atomic_load(&p->bytes_done), total = p->bytes_total;
    uint64_t fresh = done - atomic_load(&p->bytes_resumed);
    double secs = mono_s() - b->t0, rate = secs > 0 ? (double)fresh / secs : 0;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    char d[32], t[32], r[32], eta[32] = "-";
    fmt_bytes(done, d, sizeof(d));
    fmt_bytes(total, t, sizeof(t));
    fmt_rate(rate, r, sizeof(r));
    if (rate > 0 && !last)
        fmt_duration((double)(total - done) / rate, eta, sizeof(eta));
    char bar[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] %3d%%  %s/%s  %s  ETA %s  files %" PRIu64 "/%" PRIu64 "   %s", bar, pct, d, t, r, eta,
            (uint64_t)atomic_load(&p->files_done), p->files_total, last ? "\n" : "");
    fflush(stderr);
}

static void *bar_main(void *arg)
{
    struct bar *b = arg;
    while (!atomic_load(&b->stop)) {
        if (b->p->bytes_total)
            draw(b, 0);
        usleep(200 * 1000);
    }
    return NULL;
}

static int dir_is_empty_or_absent(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT;
    struct dirent *de;
    int empty = 1;
    while (empty && (de = readdir(d)))
        empty = streq(de->d_name, ".") || streq(de->d_name, "..");
    closedir(d);
    return empty;
}

static int fill(const char *url, const char *dir_arg, const struct source_options *so, uint64_t part_size, int json)
{
    struct wc_error e;
    wc_error_clear(&e);
    char dir[PATH_MAX], cwd[PATH_MAX];
    if (dir_arg[0] != '/' && !getcwd(cwd, sizeof(cwd)))
        return perror("warmcachectl: getcwd"), 2;
    snprintf(dir, sizeof(dir), "%s%s%s", dir_arg[0] == '/' ? "" : cwd, dir_arg[0] == '/' ? "" : "/", dir_arg);
    if (!dir_is_empty_or_absent(dir)) {
        fprintf(stderr, "warmcachectl: %s exists and is not empty; fill wants a new or empty directory\n", dir);
        return 2;
    }
    char work[PATH_MAX];
    if (snprintf(work, sizeof(work), "%s.warmcache-fill", dir) >= (int)sizeof(work)) {
        fprintf(stderr, "warmcachectl: %s: path too long\n", dir);
        return 2;
    }
    struct source *src _cleanup_source_ = NULL;
    struct store *st = NULL;
    struct listing l = {0};
    double t0 = mono_s();
    int r = source_open(url, so, &src, &e);
    if (r == 0)
        r = source_list(src, &l, NULL, &e);
    if (r == 0 && l.n == 0)
        r = wc_err(&e, -EINVAL, "%s holds no objects", src->url);
    if (r == 0)
        r = store_open(work, &st, &e);
    char digest[LISTING_DIGEST_LEN + 1], cid[CONTENT_ID_LEN + 1];
    struct fill_progress p = {0};
    if (r == 0) {
        store_set_watermarks(st, 100, 100); /* nothing to evict here: only a full disk stops it */
        store_set_part_size(st, part_size);
        listing_digest(&l, digest);
        content_id(src->identity, digest, cid);
        double tl = mono_s();
        struct bar b = {.p = &p, .t0 = tl, .tty = isatty(2)};
        pthread_t t;
        int drawing = b.tty && pthread_create(&t, NULL, bar_main, &b) == 0;
        r = store_fill(st, src, &l, cid, NULL, &p, &e);
        if (drawing) {
            atomic_store(&b.stop, 1);
            pthread_join(t, NULL);
            draw(&b, 1);
        }
    }
    char copy[PATH_MAX];
    if (r == 0) {
        store_path(st, copy, sizeof(copy), "content/%s", cid);
        rmdir(dir); /* empty or absent, checked above */
        if (rename(copy, dir) < 0)
            r = wc_err_errno(&e, -errno, "moving the copy to %s", dir);
        else
            fs_rm_rf(work);
    }
    if (r < 0) {
        fprintf(stderr, "warmcachectl: fill: %s\n", e.msg);
        if (st)
            fprintf(stderr, "warmcachectl: what was written is kept in %s; run the same command to resume\n", work);
    } else {
        double secs = mono_s() - t0;
        uint64_t fetched = atomic_load(&p.bytes_done) - atomic_load(&p.bytes_resumed);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                     ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
        if (json) {
            printf("{\"source\": \"%s\", \"dir\": \"%s\", \"files\": %zu, \"bytes\": %" PRIu64 ", \"fetched_bytes\": %"
                   PRIu64 ", \"resumed_bytes\": %" PRIu64 ", \"retries\": %" PRIu64 ", \"checksummed_files\": %" PRIu64
                   ", \"seconds\": %.3f, "
                   "\"cpu_seconds\": %.3f, \"peak_rss_kib\": %ld}\n",
                   src->url, dir, l.n, l.bytes, fetched, (uint64_t)atomic_load(&p.bytes_resumed),
                   (uint64_t)atomic_load(&p.retries), (uint64_t)atomic_load(&p.files_checksummed), secs, cpu,
                   ru.ru_maxrss);
        } else {
            char b[32], rate[32];
            fmt_bytes(l.bytes, b, sizeof(b));
            fmt_rate(secs > 0 ? (double)fetched / secs : 0, rate, sizeof(rate));
            printf("filled %s into %s: %zu files, %s in %.1fs (%s), %" PRIu64 " retried requests\n", src->url, dir, l.n,
                   b, secs, rate, (uint64_t)atomic_load(&p.retries));
        }
    }
    listing_free(&l);
    store_free(st);
    return r < 0 ? 1 : 0;
}

int cmd_fill(int argc, char **argv)
{
    static const struct option opts[] = {
        {"param", required_argument, NULL, 'p'}, {"connections", required_argument, NULL, 'n'},
        {"throughput", required_argument, NULL, 'T'},
        {"part-size", required_argument, NULL, 'P'}, {"json", no_argument, NULL, 'j'},
        {"secret", required_argument, NULL, 'S'}, {"stall-timeout", required_argument, NULL, 'W'}, {0},
    };
    struct source_options so = {0};
    uint64_t part_size = FILL_PART_SIZE;
    int json = 0, o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "p:", opts, NULL)) != -1) {
        char *eq = optarg ? strchr(optarg, '=') : NULL;
        long v;
        switch (o) {
        case 'p':
        case 'S':
            if (!eq) {
                fprintf(stderr, "warmcachectl: fill: %s wants key=value\n", o == 'p' ? "-p" : "--secret");
                return 2;
            }
            *eq++ = '\0';
            if (streq(optarg, "region")) so.region = eq;
            else if (streq(optarg, "endpoint")) so.endpoint = eq;
            else if (streq(optarg, "addressingStyle")) so.addressing = eq;
            else if (streq(optarg, "awsAccessKeyId")) so.access_key_id = eq;
            else if (streq(optarg, "awsSecretAccessKey")) so.secret_access_key = eq;
            else if (streq(optarg, "awsSessionToken")) so.session_token = eq;
            else {
                fprintf(stderr, "warmcachectl: fill: unknown key \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'n':
            v = strtol(optarg, NULL, 10);
            if (v < 1 || v > 1024) {
                fprintf(stderr, "warmcachectl: fill: --connections wants 1 to 1024\n");
                return 2;
            }
            so.connections = (unsigned)v;
            break;
        case 'T':
            v = strtol(optarg, NULL, 10);
            if (v < 1 || v > 3200) {
                fprintf(stderr, "warmcachectl: fill: --throughput wants Gb/s from 1 to 3200\n");
                return 2;
            }
            so.connections = s3_connections_for_gbps((double)v);
            break;
        case 'P':
            v = strtol(optarg, NULL, 10);
            if (v < 1 || v > 256) {
                fprintf(stderr, "warmcachectl: fill: --part-size wants 1 to 256 (MiB)\n");
                return 2;
            }
            part_size = (uint64_t)v << 20;
            break;
        case 'j': json = 1; break;
        case 'W':
            v = strtol(optarg, NULL, 10);
            if (v < 1 || v > 3600) {
                fprintf(stderr, "warmcachectl: fill: --stall-timeout wants 1 to 3600 (seconds)\n");
                return 2;
            }
            so.stall_seconds = (unsigned)v;
            break;
        default: return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "usage: warmcachectl fill SOURCE DIR [-p region=R] [-p endpoint=URL] "
                        "[-p addressingStyle=path|virtual] [--connections N | --throughput GBPS] [--part-size MIB] [--json]\n");
        return 2;
    }
    return fill(argv[optind], argv[optind + 1], &so, part_size, json);
}
