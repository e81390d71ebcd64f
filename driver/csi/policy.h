/*
 * Source policy: which sources this plugin reads, decided by the cluster
 * admin and nobody else. A user who may create pods and PVCs names sources
 * through inline volumes, PVC annotations (when a class lets them) and, via
 * the classes an admin wrote, PVs; every one of those ends here before
 * anything is listed, read or signed.
 *
 * - allowed: URL prefixes every source must lie under (--allowed-sources,
 *   chart allowedSources). "s3://" allows every bucket; "s3://models/"
 *   one bucket; "file:///fsx/" one directory tree of the node.
 * - never: file:// trees no list can open: the kernel's (/proc, /sys, /dev),
 *   the host's configuration and runtime state (/etc, /root, /boot, /run),
 *   the kubelet's directory (every pod's Secrets), the store (other tenants'
 *   copies), the plugin's socket and credential files. A source inside one,
 *   or holding one (file:///var/ holds /var/lib/kubelet), is refused.
 * - inline volumes: off unless --inline-sources names the prefixes a pod
 *   author may pick from; an inline s3:// volume without a Secret signs with
 *   the node's credentials only with --inline-node-credentials, and never
 *   towards an endpoint the pod author chose.
 * - plain http: credentials go to an http:// endpoint only when the volume
 *   says allowPlainHTTP (a class parameter).
 *
 * Each refusal names the rule and the value an admin would change.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"
#include "csi/params.h"

struct source_policy {
    char **allowed;            /* normalized URL prefixes */
    size_t n_allowed;
    char **inline_allowed;     /* empty: inline volumes are off */
    size_t n_inline;
    bool inline_node_credentials;
    char **never;              /* real paths of trees never read */
    char **never_why;          /* what each one is, for the message */
    size_t n_never;
};

/* allowed and inline: comma-separated prefixes (NULL or "": none). */
int policy_init(struct source_policy *p, const char *allowed, const char *inline_allowed, bool inline_node_credentials,
                struct wc_error *e);
/* Adds a tree no source may reach (what names it in the message). */
int policy_never(struct source_policy *p, const char *path, const char *what);
void policy_fini(struct source_policy *p);

struct source_use {
    const struct source_spec *spec;
    bool allow_plain_http;     /* the volume's allowPlainHTTP */
    bool is_inline;            /* a pod author's csi: volume */
    bool has_secret;           /* credentials come with the volume */
};

/* 0 when the plugin may read the source; -EPERM (PERMISSION_DENIED) naming
 * the rule otherwise. */
int policy_check(const struct source_policy *p, const struct source_use *u, struct wc_error *e);

/* source_tuning.admit for a fill: the place a file:// source was found at
 * when it was opened, judged like the path was (ctx: the policy). */
int policy_admit(void *ctx, const char *real_url, int narrow, struct wc_error *e);

/* The allowed prefixes, comma-separated, for messages and logs. */
void policy_describe(char **v, size_t n, char *out, size_t len);
