/*
 * Method table and process context. Every method of the three CSI services
 * (and our Admin service) is routed; the ones warmcache does not offer have
 * no handler here and so answer UNIMPLEMENTED, as the spec asks of optional
 * RPCs. A handler for a service this process does not serve (controller-only
 * or node-only mode) answers UNIMPLEMENTED too (see the mode checks).
 */
#include "csi/csi.h"
#include "csi/metrics.h"
#include "csi/prewarm.h"
#include "csi/report.h"
#include "base/log.h"
#include "base/macros.h"
#include "s3/client.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const struct rpc_handler csi_handlers[] = {
    {"/csi.v1.Identity/GetPluginInfo", identity_get_plugin_info},
    {"/csi.v1.Identity/GetPluginCapabilities", identity_get_plugin_capabilities},
    {"/csi.v1.Identity/Probe", identity_probe},
    {"/csi.v1.Controller/CreateVolume", controller_create_volume},
    {"/csi.v1.Controller/DeleteVolume", controller_delete_volume},
    {"/csi.v1.Controller/ValidateVolumeCapabilities", controller_validate_volume_capabilities},
    {"/csi.v1.Controller/ControllerGetCapabilities", controller_get_capabilities},
    {"/csi.v1.Node/NodeStageVolume", node_stage_volume},
    {"/csi.v1.Node/NodeUnstageVolume", node_unstage_volume},
    {"/csi.v1.Node/NodePublishVolume", node_publish_volume},
    {"/csi.v1.Node/NodeUnpublishVolume", node_unpublish_volume},
    {"/csi.v1.Node/NodeGetVolumeStats", node_get_volume_stats},
    {"/csi.v1.Node/NodeGetCapabilities", node_get_capabilities},
    {"/csi.v1.Node/NodeGetInfo", node_get_info},
    {"/warmcache.admin.v1.Admin/Status", admin_status},
    {"/pluginregistration.Registration/GetInfo", registration_get_info},
    {"/pluginregistration.Registration/NotifyRegistrationStatus", registration_notify_status},
};
const size_t csi_n_handlers = ARRAY_SIZE(csi_handlers);

const ProtobufCServiceDescriptor *const csi_services[] = {
    &csi__v1__identity__descriptor,
    &csi__v1__controller__descriptor,
    &csi__v1__node__descriptor,
    &warmcache__admin__v1__admin__descriptor,
    &pluginregistration__registration__descriptor,
};
const size_t csi_n_services = ARRAY_SIZE(csi_services);

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
    c->bounds = (struct bounder){bound_quota_enforced(root) ? &bound_project_quota : &bound_loop_image, c->mounter,
                                 cfg->mkfs_ext4};
    c->scratch_bytes = cfg->scratch_bytes ? cfg->scratch_bytes : 1ull << 30;
    log_json(LOG_INFO, "writable layers", json_pack("{s:s}", "bounded_by", c->bounds.ops->name));
    fills_init(&c->fills, c->store);
    /* one budget for the node: a fill alone uses all of it, concurrent fills share it */
    c->fills.connections = cfg->s3_connections ? cfg->s3_connections : s3_connections_for_gbps(S3_DEFAULT_GBPS);
    s3_set_request_budget(c->fills.connections);
    c->fills.stall_seconds = cfg->s3_stall_s;
    c->fills.list_timeout_s = c->list_timeout_s;
    c->fill_wait_ms = cfg->fill_wait_s * 1000;
    if (cfg->kubelet_endpoint && !(c->kubelet_endpoint = strdup(cfg->kubelet_endpoint)))
        return -ENOMEM;
    if (c->kube) {
        if ((r = reporter_start(c->kube, &c->fills, c->node_id, &c->reporter, e)) < 0)
            return r;
        c->fills.notify = reporter_notify;
        c->fills.notify_ctx = c->reporter;
    }
    node_reconcile(c);
    json_t *rec _cleanup_json_ = store_reconcile(c->store);
    log_json(LOG_INFO, "store reconciled", json_incref(rec));
    fills_resume(&c->fills, json_object_get(rec, "resume"));
    if (c->kube && (r = prewarm_start(c, &c->prewarmer, e)) < 0)
        return r;
    return 0;
}

int csi_ctx_init(struct csi_ctx *c, const struct csi_config *cfg, struct wc_error *e)
{
    *c = (struct csi_ctx){.controller = cfg->controller, .node = cfg->node, .mounter = &mounter_libmount,
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
    int r = 0;
    if ((r = kube_connect(c, cfg, e)) < 0)
        return r;
    if ((r = c->node ? node_init(c, cfg, e) : policy_setup(c, cfg, e)) < 0)
        return r;
    if (c->controller && (r = registry_open(cfg->state_dir, &c->registry, e)) < 0)
        return r;
    if (cfg->metrics_address && *cfg->metrics_address &&
        (r = metrics_start(c, cfg->metrics_address, &c->metrics, e)) < 0)
        return r;
    return 0;
}

void csi_ctx_fini(struct csi_ctx *c)
{
    metrics_stop(c->metrics);
    prewarm_stop(c->prewarmer);
    if (c->store)
        fills_stop(&c->fills);
    reporter_stop(c->reporter); /* after the fills: their last reports are delivered */
    kube_close(c->kube);
    store_free(c->store);
    volumes_free(c->volumes);
    registry_free(c->registry);
    policy_fini(&c->policy);
    vlocks_fini(&c->locks);
    free(c->node_id);
    free(c->kubelet_endpoint);
}

/* ---- volume capabilities ------------------------------------------------ */

/*
 * warmcache serves a directory, so only the mount access type makes sense.
 * Readers on one node or many are the point; single-node writers get a
 * private writable overlay per publish. Multi-writer modes are refused:
 * writes are not shared between pods, and saying yes would be a lie.
 */
int caps_mode_writable(const Csi__V1__VolumeCapability *cap)
{
    switch (cap->access_mode->mode) {
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER:
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER:
        return 1;
    default:
        return 0;
    }
}

/* As a Kubernetes user wrote it in the PVC, and as CSI calls it. */
static const char *access_mode_name(int mode)
{
    switch (mode) {
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER: return "ReadWriteOnce (SINGLE_NODE_WRITER)";
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY: return "SINGLE_NODE_READER_ONLY";
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY: return "ReadOnlyMany (MULTI_NODE_READER_ONLY)";
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_SINGLE_WRITER: return "MULTI_NODE_SINGLE_WRITER";
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_MULTI_WRITER: return "ReadWriteMany (MULTI_NODE_MULTI_WRITER)";
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER: return "ReadWriteOncePod (SINGLE_NODE_SINGLE_WRITER)";
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER: return "SINGLE_NODE_MULTI_WRITER";
    default: return "UNKNOWN";
    }
}

int caps_check_one(const Csi__V1__VolumeCapability *cap, struct wc_error *e)
{
    if (!cap)
        return wc_err(e, -EINVAL, "volume capability is required");
    if (!cap->access_mode)
        return wc_err(e, -EINVAL, "volume capability has no access mode");
    if (cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK)
        return wc_err(e, -EINVAL, "block volumes are not supported: warmcache serves a directory (volumeMode: Filesystem)");
    if (cap->access_type_case != CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT)
        return wc_err(e, -EINVAL, "volume capability has no access type (mount)");
    switch (cap->access_mode->mode) {
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER:
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY:
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY:
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER:
        return 0;
    case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__UNKNOWN:
        return wc_err(e, -EINVAL, "volume capability access mode is UNKNOWN");
    default:
        return wc_err(e, -EINVAL, "access mode %s is not supported: writes to a warmcache volume stay in a "
                      "per-pod scratch layer and are not shared, so use ReadOnlyMany or ReadWriteOnce",
                      access_mode_name(cap->access_mode->mode));
    }
}

int caps_check(Csi__V1__VolumeCapability *const *caps, size_t n, struct wc_error *e)
{
    if (n == 0)
        return wc_err(e, -EINVAL, "volume capabilities are required");
    for (size_t i = 0; i < n; i++) {
        int r = caps_check_one(caps[i], e);
        if (r < 0)
            return r;
    }
    return 0;
}
