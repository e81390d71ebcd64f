/*
 * The kubelet's plugin registration (proto/registration.proto), served by
 * the node plugin itself on <kubelet>/plugins_registry/warmcache.csi.dev-reg.sock
 * when --kubelet-registration-dir is given: kubelet finds the socket, asks
 * GetInfo, checks the CSI socket, and says how that went. What the
 * node-driver-registrar sidecar does, without a second image on every node.
 */
#include "csi/csi.h"
#include "base/log.h"
#include "rpc/pbutil.h"
#include "registration.pb-c.h"

#include <stdlib.h>

int registration_get_info(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                          struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    if (!c->node || !c->kubelet_endpoint)
        return wc_err(e, -EOPNOTSUPP, "this plugin does not register with kubelet (--kubelet-registration-path)");
    Pluginregistration__PluginInfo *info = pb_new(&pluginregistration__plugin_info__descriptor);
    if (!info || !(info->type = xstrdup("CSIPlugin")) || !(info->name = xstrdup(DRIVER_NAME)) ||
        !(info->endpoint = xstrdup(c->kubelet_endpoint)) || !(info->supported_versions = calloc(1, sizeof(char *))) ||
        !(info->supported_versions[0] = xstrdup("1.0.0"))) {
        if (info)
            protobuf_c_message_free_unpacked(&info->base, NULL);
        return -ENOMEM;
    }
    info->n_supported_versions = 1;
    *ret_resp = &info->base;
    return 0;
}

int registration_notify_status(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                               struct rpc_call *call, struct wc_error *e)
{
    const Pluginregistration__RegistrationStatus *q = (const void *)req;
    if (q->plugin_registered)
        log_json(LOG_INFO, "registered with kubelet", NULL);
    else
        log_json(LOG_ERROR, "kubelet refused the plugin", json_pack("{s:s}", "error", q->error ? q->error : ""));
    return rpc_empty_reply(&pluginregistration__registration_status_response__descriptor, ret_resp);
}
