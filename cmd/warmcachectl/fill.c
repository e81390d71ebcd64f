/*
 * warmcachectl fill SOURCE DIR: the fill engine alone, without a plugin or a
 * cluster. It lists SOURCE, fills a copy through the same store code as the
 * node plugin (parts, journal, placer), and moves the finished copy to DIR.
 *
 * The work happens in DIR.warmcache-fill beside DIR (same file system, so
 * the last step is a rename); running the same command again after a kill
 * resumes there. DIR must not exist or be empty: a fill never mixes with
 * other files. On a terminal, stderr shows a progress bar; elsewhere (a
 * Job's log) a progress line every 10 s.
 */
#include "base/fsutil.h"
#include "base/macros.h"
#include "base/units.h"
#include "cache/fill.h"
#include "cache/store.h"
#include "observe/progress.h"
#include "cache/source.h"

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
    uint64_t done = atomic_load(&p->bytes_done);
    struct obs_progress op = {.done = done, .total = p->bytes_total,
                              .fresh = done - atomic_load(&p->bytes_resumed), .seconds = mono_s() - b->t0};
    if (!b->tty) { /* a log: one line each time */
        char line[200];
        obs_progress_line(&op, line, sizeof(line));
        fprintf(stderr, "warmcachectl: fill: %s, files %" PRIu64 "/%" PRIu64 "\n", line,
                (uint64_t)atomic_load(&p->files_done), p->files_total);
        return;
    }
    struct obs_progress_text t;
    obs_progress_fmt(&op, &t);
    const char *eta = last ? "-" : t.eta;
    int pct = t.pct;
    char bar[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r[%s] %3d%%  %s/%s  %s  ETA %s  files %" PRIu64 "/%" PRIu64 "   %s", bar, pct, t.done,
            t.total, t.rate, eta,
            (uint64_t)atomic_load(&p->files_done), p->files_total, last ? "\n" : "");
    fflush(stderr);
}

static void *bar_main(void *arg)
{
    struct bar *b = arg;
    double last = mono_s();
    while (!atomic_load(&b->stop)) {
        if (b->p->bytes_total && (b->tty || mono_s() - last >= 10)) {
            draw(b, 0);
            last = mono_s();
        }
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

/* What -p and --secret set: a source's options and credentials. */
struct fill_opts {
    struct source_spec spec;
    struct source_tuning tuning;
    uint64_t part_size;
    int json;
};

static int fill(const char *dir_arg, struct fill_opts *o)
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
    if (source_url_check(o->spec.url, &e) < 0) {
        fprintf(stderr, "warmcachectl: fill: %s\n", e.msg);
        return 1;
    }
    struct source *src _cleanup_source_ = NULL;
    struct store *st = NULL;
    struct listing l = {0};
    double t0 = mono_s();
    int r = source_env_new(&o->tuning.env);
    if (r == 0)
        r = source_open(&o->spec, &o->tuning, &src, &e);
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
        store_set_part_size(st, o->part_size);
        listing_digest(&l, digest);
        content_id(src->identity, digest, cid);
        double tl = mono_s();
        struct bar b = {.p = &p, .t0 = tl, .tty = isatty(2)};
        pthread_t t;
        int drawing = pthread_create(&t, NULL, bar_main, &b) == 0;
        r = store_fill(st, src, &l, cid, NULL, &p, &e);
        if (drawing) {
            atomic_store(&b.stop, 1);
            pthread_join(t, NULL);
            if (b.tty)
                draw(&b, 1);
        }
    }
    char copy[PATH_MAX];
    uint64_t files = l.n, bytes = l.bytes; /* the copy's: an image's tree is not its layers */
    if (r == 0) {
        json_t *m _cleanup_json_ = store_meta(st, cid);
        if (m) {
            files = (uint64_t)json_integer_value(json_object_get(m, "files"));
            bytes = (uint64_t)json_integer_value(json_object_get(m, "bytes"));
        }
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
        if (o->json) {
            json_t *j _cleanup_json_ = json_pack(
                "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:I}", "source", src->url, "dir", dir,
                "files", (json_int_t)files, "bytes", (json_int_t)bytes, "objects", (json_int_t)l.n, "fetched_bytes", (json_int_t)fetched, "resumed_bytes",
                (json_int_t)atomic_load(&p.bytes_resumed), "retries", (json_int_t)atomic_load(&p.retries),
                "checksummed_files", (json_int_t)atomic_load(&p.files_checksummed), "seconds", secs, "cpu_seconds",
                cpu, "peak_rss_kib", (json_int_t)ru.ru_maxrss);
            _cleanup_free_ char *out = j ? json_dumps(j, JSON_PRESERVE_ORDER) : NULL;
            printf("%s\n", out ? out : "{}");
        } else {
            char b[32], rate[32];
            fmt_bytes(bytes, b, sizeof(b));
            fmt_rate(secs > 0 ? (double)fetched / secs : 0, rate, sizeof(rate));
            printf("filled %s into %s: %" PRIu64 " files, %s in %.1fs (%s), %" PRIu64 " retried requests\n", src->url,
                   dir, files, b, secs, rate, (uint64_t)atomic_load(&p.retries));
        }
    }
    listing_free(&l);
    store_free(st);
    source_free(src);
    src = NULL;
    source_env_free(o->tuning.env);
    return r < 0 ? 1 : 0;
}

static void fill_usage(FILE *f)
{
    fprintf(f,
        "usage: warmcachectl fill SOURCE DIR [options]\n"
        "  Fills DIR (new or empty) with a verified copy of SOURCE (s3://bucket/prefix/, file:///dir/ or\n"
        "  oci://registry/repository:tag or @sha256:digest: an artifact or a container image), with\n"
        "  the node plugin's engine and no plugin or cluster. Killed, the same command resumes.\n"
        "options:\n"
        "  -p region=R | -p endpoint=URL | -p addressingStyle=path|virtual   S3 options, as in a StorageClass\n"
        "  --secret awsAccessKeyId=K (and awsSecretAccessKey=S, awsSessionToken=T)   credentials; without them\n"
        "                     the usual chain (environment, web identity, Pod Identity, instance profile)\n"
        "  --secret username=U (and password=P)   a registry's credentials (oci://); without them, anonymous\n"
        "  --docker-config FILE  or the entry for the registry in a docker config (~/.docker/config.json)\n"
        "  --secret-file FILE the same keys as key=value lines (\"-\": standard input; keeps them out of ps)\n"
        "  --connections N    requests in flight (1-1024)  | --throughput GBPS   the connections for that rate\n"
        "  --part-size MIB    bytes per request (1-256; default 8, more for files over 512 MiB, up to 64)\n"
        "  --stall-timeout S  cut and retry a transfer stalled this long (1-3600, default 30)\n"
        "  --json             the result as one JSON object on stdout\n"
        "Progress goes to stderr: a bar on a terminal, else a line every 10 s.\n"
        "Exit status: 0 filled, 1 the fill failed (what was written is kept for a resume), 2 usage.\n");
}

/* key=value of -p or a secret into the spec; 0, or -1 for an unknown key. */
static int set_key(struct source_spec *s, const char *k, const char *v, int secret)
{
    const char **slot = NULL;
    if (!secret && streq(k, "region")) slot = &s->region;
    else if (!secret && streq(k, "endpoint")) slot = &s->endpoint;
    else if (!secret && streq(k, "addressingStyle")) slot = &s->addressing;
    else if (secret && streq(k, "awsAccessKeyId")) slot = &s->access_key_id;
    else if (secret && streq(k, "awsSecretAccessKey")) slot = &s->secret_access_key;
    else if (secret && streq(k, "awsSessionToken")) slot = &s->session_token;
    else if (secret && streq(k, "username")) slot = &s->username;
    else if (secret && streq(k, "password")) slot = &s->password;
    if (!slot) {
        fprintf(stderr, "warmcachectl: fill: unknown %s key \"%s\"\n", secret ? "secret" : "-p", k);
        return -1;
    }
    *slot = v;
    return 0;
}

#define SECRET_FILE_MAX 65536

/* The buffer that held the keys, zeroed before it is freed. */
static void secret_buf_free(char **p)
{
    if (*p)
        explicit_bzero(*p, SECRET_FILE_MAX);
    free(*p);
}

/* A file of secrets whole, at most SECRET_FILE_MAX - 1 bytes ("-" is
 * standard input when stdin_ok), into *ret_buf (freed by the caller with
 * secret_buf_free, written even on failure once allocated) and its length;
 * opt and why name it in the messages. */
static int read_secrets(const char *opt, const char *path, int stdin_ok, const char *why, char **ret_buf,
                        size_t *ret_n)
{
    FILE *f = stdin_ok && streq(path, "-") ? stdin : fopen(path, "re");
    if (!f) {
        fprintf(stderr, "warmcachectl: fill: --%s %s: %s\n", opt, path, strerror(errno));
        return -1;
    }
    char *buf = calloc(1, SECRET_FILE_MAX);
    size_t n = buf ? fread(buf, 1, SECRET_FILE_MAX - 1, f) : 0;
    int more = buf && n == SECRET_FILE_MAX - 1 && fgetc(f) != EOF;
    if (f != stdin)
        fclose(f);
    if (!buf)
        return -1;
    *ret_buf = buf;
    if (more) { /* cut, what was read would be wrong without a word */
        fprintf(stderr, "warmcachectl: fill: --%s %s: larger than %d KiB%s\n", opt, path, SECRET_FILE_MAX >> 10, why);
        return -1;
    }
    *ret_n = n;
    return 0;
}

/* key=value lines; the strings live in *ret_buf (freed by the caller with
 * secret_buf_free). */
static int read_secret_file(const char *path, struct source_spec *s, char **ret_buf)
{
    size_t n;
    if (read_secrets("secret-file", path, 1, "; it holds a few keys", ret_buf, &n) < 0)
        return -1;
    char *buf = *ret_buf;
    for (char *line = buf, *next; line && line < buf + n; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        line[strcspn(line, "\r")] = '\0';
        if (!*line || *line == '#')
            continue;
        char *eq = strchr(line, '=');
        if (!eq) {
            fprintf(stderr, "warmcachectl: fill: --secret-file %s: a line is not key=value\n", path);
            return -1;
        }
        *eq = '\0';
        if (set_key(s, line, eq + 1, 1) < 0)
            return -1;
    }
    return 0;
}

/* A docker config file (what docker login and oras login write) whole, for
 * oci:// sources; the buffer is freed with secret_buf_free. */
static int read_docker_config(const char *path, struct source_spec *s, char **ret_buf)
{
    size_t n;
    if (read_secrets("docker-config", path, 0, "", ret_buf, &n) < 0)
        return -1;
    s->docker_config = *ret_buf;
    return 0;
}

static int int_arg(const char *opt, const char *v, long lo, long hi, const char *unit, long *ret)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "warmcachectl: fill: --%s wants %ld to %ld%s, not \"%s\"\n", opt, lo, hi, unit, v);
        return -1;
    }
    *ret = x;
    return 0;
}

int cmd_fill(int argc, char **argv)
{
    static const struct option opts[] = {
        {"param", required_argument, NULL, 'p'}, {"connections", required_argument, NULL, 'n'},
        {"throughput", required_argument, NULL, 'T'}, {"part-size", required_argument, NULL, 'P'},
        {"json", no_argument, NULL, 'j'}, {"secret", required_argument, NULL, 'S'},
        {"secret-file", required_argument, NULL, 'F'}, {"stall-timeout", required_argument, NULL, 'W'},
        {"docker-config", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'}, {0},
    };
    struct fill_opts fo = {.part_size = 0}; /* per file (fill_part_size) */
    char *secret_buf __attribute__((cleanup(secret_buf_free))) = NULL;
    char *docker_buf __attribute__((cleanup(secret_buf_free))) = NULL;
    int o;
    long v;
    optind = 1;
    while ((o = getopt_long(argc, argv, "p:h", opts, NULL)) != -1) {
        char *eq = optarg ? strchr(optarg, '=') : NULL;
        switch (o) {
        case 'p':
        case 'S':
            if (!eq) {
                fprintf(stderr, "warmcachectl: fill: %s wants key=value\n", o == 'p' ? "-p" : "--secret");
                return 2;
            }
            *eq++ = '\0';
            if (set_key(&fo.spec, optarg, eq, o == 'S') < 0)
                return 2;
            break;
        case 'F':
            if (secret_buf) {
                fprintf(stderr, "warmcachectl: fill: --secret-file is given once\n");
                return 2;
            }
            if (read_secret_file(optarg, &fo.spec, &secret_buf) < 0)
                return 2;
            break;
        case 'D':
            if (docker_buf) {
                fprintf(stderr, "warmcachectl: fill: --docker-config is given once\n");
                return 2;
            }
            if (read_docker_config(optarg, &fo.spec, &docker_buf) < 0)
                return 2;
            break;
        case 'n':
            if (int_arg("connections", optarg, 1, 1024, "", &v) < 0)
                return 2;
            fo.tuning.connections = (unsigned)v;
            break;
        case 'T':
            if (int_arg("throughput", optarg, 1, 3200, " (Gb/s)", &v) < 0)
                return 2;
            fo.tuning.connections = source_connections_for_gbps((double)v);
            break;
        case 'P':
            if (int_arg("part-size", optarg, 1, 256, " (MiB)", &v) < 0)
                return 2;
            fo.part_size = (uint64_t)v << 20;
            break;
        case 'W':
            if (int_arg("stall-timeout", optarg, 1, 3600, " (seconds)", &v) < 0)
                return 2;
            fo.tuning.stall_seconds = (unsigned)v;
            break;
        case 'j': fo.json = 1; break;
        case 'h': fill_usage(stdout); return 0;
        default: fill_usage(stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        fill_usage(stderr);
        return 2;
    }
    fo.spec.url = argv[optind];
    return fill(argv[optind + 1], &fo);
}
