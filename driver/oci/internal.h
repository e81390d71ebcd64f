/*
 * Shared by registry.c (one request at a time: manifests, tokens) and
 * blobs.c (parallel ranged GETs): how a request is sent, answered a
 * challenge, redirected and judged. Not part of the oci API.
 */
#pragma once

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "oci/oci.h"

#define OCI_URL_MAX 4096

struct oci_client {
    struct oci_ref ref;
    char base[OCI_HOST_MAX + 16];     /* https://host[:port] */
    char *user, *pass;                /* wiped on free */
    char ca_file[4096];               /* "": the system's */
    long stall_s;
    CURL *curl;                       /* manifests and tokens, under curl_lock */
    pthread_mutex_t curl_lock, auth_lock;
    pthread_mutex_t answer_lock;      /* one challenge answered at a time: user, pass and login are its */
    unsigned auth_gen;                /* set_auth calls so far, under auth_lock */
    /* the last answer that failed, and for which generation: requests
     * refused together get its error instead of trying again (answer_lock) */
    int failed_code;
    unsigned failed_gen;
    char failed_msg[512];
    char *auth;                       /* "Authorization: …" the registry asked for; NULL: none yet */
    int (*login)(void *ctx, const char *refused, char **ret_user, char **ret_pass, struct wc_error *e);
    void *login_ctx;
    int logged_in;                    /* user and pass came from login(): ask it again on a refusal */
};

/* Where a response goes: into memory (fd < 0; at most max bytes, more is
 * too_big), or into fd at off (at most want bytes, more is too_big). */
struct oci_resp {
    char *buf;
    size_t n, cap, max;
    int fd;
    uint64_t off, want, written;      /* written: bytes taken, wn of them still in wbuf */
    /* optional: bytes gathered into runs of wcap before each pwrite (they
     * come a TLS record, 16 KiB, at a time; threads writing one file take
     * turns on its inode lock once per pwrite) */
    char *wbuf;
    size_t wn, wcap;
    _Atomic uint64_t *progress;
    const atomic_int *cancel, *stop;
    int too_big, io_error;
    long status;
    char location[OCI_URL_MAX];
    char challenge[1024];             /* WWW-Authenticate */
    char digest[OCI_DIGEST_LEN + 1];  /* Docker-Content-Digest */
    char content_range[96];           /* Content-Range */
    char err[512];                    /* the start of an error body, cut there (cut: the rest not read) */
    size_t errn;
    int cut;
    int bad_range;                    /* a range answered with other bytes than asked (200, wrong Content-Range) */
    uint64_t range_off;               /* the range asked for starts here; with ranged */
    int ranged;
};

/* What to ask: a path under the registry (/v2/…), an Accept header, a
 * range; follow: a blob GET, whose redirects are followed (to another host
 * without the registry's Authorization). */
struct oci_req {
    const char *path, *accept, *range; /* range: bytes=A-B, A in range_off */
    uint64_t range_off;
    int follow;
    long timeout_s;                   /* the whole request; 0: none (bodies are cut on a stall) */
};

/* One request through the challenge and redirects, on handle h. 0 for a
 * 2xx; -EAGAIN for what a retry may cure (5xx, 429, resets, stalls, a short
 * body); another negative errno (message in e) for what it will not. what
 * names the request in messages. */
int oci_send(struct oci_client *c, CURL *h, const struct oci_req *rq, struct oci_resp *rs, const char *what,
             struct wc_error *e);
unsigned oci_backoff_ms(int attempt);
