/*
 * The process's wiring: what csi_ctx_init makes, in which order, and who
 * collects which metrics. The only file that knows every module; each
 * module knows only those below it (docs/design.md).
 */
#include "csi/csi.h"
#include "csi/prewarm.h"
#include "csi/report.h"
#include "base/log.h"
#include "base/macros.h"
#include "observe/http.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* --kube: "off", "auto" (in a pod: the service account; elsewhere: off), or a URL. */
static int kube_connect(struct csi_ctx *c, const struct csi_config *cfg, struct wc_error *e)
{
    const char *mode = cfg->kube ? cfg->kube : "auto";
    struct kube_config kc = {.server = mode, .token_file = cfg->kube_token_file, .ca_file = cfg->kube_ca_file};
    if (streq(mode, "off"))
        return 0;
    if (streq(mode, "auto")) {
        struct wc_error ignored;
        if (kube_config_in_cluster(&kc, &ignored) < 0) {
            log_json(LOG_INFO, "not talking to Kubernetes", json_pack("{s:s}", "why", ignored.msg));
            return 0;
        }
    }
    int r = kube_open(&kc, &c->kube, e);
    if (r == 0)
        log_json(LOG_INFO, "talking to Kubernetes", json_pack("{s:s}", "server", kc.server));
    return r;
}

/* The trees no source may reach beside the system's (policy.h): the
 * kubelet's, the store, the plugin's credential files. (The socket is no
 * regular file: a source holding it is refused as such.) */
static int policy_setup(struct csi_ctx *c, const struct csi_config *cfg, struct wc_error *e)
{
    int r = policy_init(&c->policy, cfg->allowed_sources ? cfg->allowed_sources : "s3://", cfg->inline_sources,
                        cfg->inline_node_credentials, e);
    if (r < 0)
        return wc_err_prefix(e, "--allowed-sources or --inline-sources: ");
    const char *never[][2] = {
        {cfg->kubelet_dir ? cfg->kubelet_dir : "/var/lib/kubelet", "every pod's volumes and Secrets"},
        {c->store ? c->store->root : NULL, "the node store (every tenant's copies)"},
        {"/var/run/secrets", "service account tokens"},
        {cfg->kube_token_file, "the plugin's Kubernetes token"},
        {getenv("AWS_WEB_IDENTITY_TOKEN_FILE"), "the plugin's IRSA token"},
        {getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), "the plugin's Pod Identity token"},
    };
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(never); i++) {
        const char *p = never[i][0];
        char dir[PATH_MAX];
        if (!p || !*p)
            continue;
        /* a token file: its whole directory (the projected volume) */
        if (i >= 3 && strrchr(p, '/') && strrchr(p, '/') != p) {
            snprintf(dir, sizeof(dir), "%.*s", (int)(strrchr(p, '/') - p), p);
            p = dir;
        }
        r = policy_never(&c->policy, p, never[i][1]);
    }
    return r < 0 ? wc_err(e, r, "out of memory") : 0;
}

static int node_init(struct csi_ctx *c, const struct csi_config *cfg, struct wc_error *e)
{
    _cleanup_free_ char *root = NULL;
    int r;
    if ((r = disks_prepare(&cfg->disks, c->mounter, &root, e)) < 0 || (r = store_open(root, &c->store, e)) < 0 ||
        (r = volumes_open(root, &c->volumes, e)) < 0)
        return r;
    store_set_users(c->store, &(struct store_users){volumes_refs, c->volumes});
    if ((r = policy_setup(c, cfg, e)) < 0)
        return r;
    store_set_watermarks(c->store, cfg->high_pct, cfg->low_pct);
    store_set_part_size(c->store, cfg->part_size);
    /* a writable layer is bounded by a project quota where the store has them, else by a loop image */
    const struct bound_ops *bounds = cfg->bound_ops;
    if (!bounds)
        bounds = bound_quota_enforced(root) ? &bound_project_quota : &bound_loop_image;
    c->bounds = (struct bounder){bounds, c->mounter, cfg->mkfs_ext4};
    c->scratch_bytes = cfg->scratch_bytes ? cfg->scratch_bytes : 1ull << 30;
    log_json(LOG_INFO, "writable layers", json_pack("{s:s}", "bounded_by", c->bounds.ops->name));
    jobs_init(&c->jobs, c->store);
    /* one budget for the node: a fill alone uses all of it, concurrent fills share it */
    c->jobs.connections = cfg->s3_connections ? cfg->s3_connections
                                               : source_connections_for_gbps(SOURCE_DEFAULT_GBPS);
    source_env_set_budget(c->sources, c->jobs.connections);
    c->jobs.env = c->sources;
    c->jobs.stall_seconds = cfg->s3_stall_s;
    c->jobs.list_timeout_s = c->list_timeout_s;
    c->jobs.admit = policy_admit;
    c->jobs.admit_ctx = &c->policy;
    c->fill_wait_ms = cfg->fill_wait_s * 1000;
    if (cfg->kubelet_endpoint && !(c->kubelet_endpoint = strdup(cfg->kubelet_endpoint)))
        return -ENOMEM;
    if (c->kube) {
        if ((r = reporter_start(c->kube, &c->jobs, c->node_id, &c->reporter, e)) < 0)
            return r;
        c->jobs.notify = reporter_notify;
        c->jobs.notify_ctx = c->reporter;
    }
    node_reconcile(c);
    json_t *rec _cleanup_json_ = store_reconcile(c->store);
    log_json(LOG_INFO, "store reconciled", json_incref(rec));
    jobs_resume(&c->jobs, json_object_get(rec, "resume"));
    if (c->kube && (r = prewarm_start(c, &c->prewarmer, e)) < 0)
        return r;
    return 0;
}

static void build_info(void *ctx, struct obs_text *t)
{
    struct csi_ctx *c = ctx;
    obs_family(t, "warmcache_build_info", "gauge", "Always 1: the version and the services of this plugin.");
    obs_printf(t, "warmcache_build_info{version=\"%s\",mode=\"%s\"} 1\n", WC_VERSION,
               c->controller && c->node ? "all" : c->controller ? "controller" : "node");
}

/* Who publishes metrics: each module's own collector, over its own state. */
static int metrics_setup(struct csi_ctx *c)
{
    int r = obs_register(&c->metrics, build_info, c);
    if (r == 0 && c->node)
        r = obs_register(&c->metrics, jobs_collect, &c->jobs);
    if (r == 0 && c->node)
        r = obs_register(&c->metrics, store_collect, c->store);
    if (r == 0)
        r = obs_register(&c->metrics, source_env_collect, c->sources);
    return r;
}

/* /healthz: what the livenessprobe sidecar would ask of Probe: ready, and the store reachable. */
static int healthy(void *ctx)
{
    struct csi_ctx *c = ctx;
    struct statvfs v;
    return atomic_load(&c->ready) && (!c->node || statvfs(c->store->root, &v) == 0);
}

int csi_ctx_init(struct csi_ctx *c, const struct csi_config *cfg, struct wc_error *e)
{
    *c = (struct csi_ctx){.controller = cfg->controller, .node = cfg->node, .mounter = cfg->mounter ? cfg->mounter : &mounter_libmount,
                          .list_timeout_s = cfg->list_timeout_s ? cfg->list_timeout_s : 900,
                          .kube_watch_timeout_s = cfg->kube_watch_timeout_s ? cfg->kube_watch_timeout_s : 300};
    vlocks_init(&c->locks);
    char host[256] = "";
    if (cfg->node_id && *cfg->node_id)
        snprintf(host, sizeof(host), "%s", cfg->node_id);
    else if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "unknown-node");
    if (!(c->node_id = strdup(host)))
        return -ENOMEM;
    int r = source_env_new(&c->sources);
    if (r < 0)
        return wc_err(e, r, "out of memory");
    if ((r = kube_connect(c, cfg, e)) < 0)
        return r;
    if ((r = c->node ? node_init(c, cfg, e) : policy_setup(c, cfg, e)) < 0)
        return r;
    if (c->controller && (r = registry_open(cfg->state_dir, &c->registry, e)) < 0)
        return r;
    if ((r = metrics_setup(c)) < 0)
        return wc_err(e, r, "metrics: %d collectors are more than the registry holds", (int)c->metrics.n);
    if (cfg->metrics_address && *cfg->metrics_address &&
        (r = obs_http_start(cfg->metrics_address, &c->metrics, healthy, c, &c->http, e)) < 0)
        return wc_err_prefix(e, "--metrics-address: ");
    return 0;
}

void csi_ctx_fini(struct csi_ctx *c)
{
    obs_http_stop(c->http);
    prewarm_stop(c->prewarmer);
    if (c->store)
        jobs_stop(&c->jobs);
    reporter_stop(c->reporter); /* after the fills: their last reports are delivered */
    kube_close(c->kube);
    store_free(c->store);
    volumes_free(c->volumes);
    registry_free(c->registry);
    policy_fini(&c->policy);
    source_env_free(c->sources);
    vlocks_fini(&c->locks);
    free(c->node_id);
    free(c->kubelet_endpoint);
}

