/* Identity service: who we are, what we serve, and whether we are ready. */
#include "csi/csi.h"
#include "base/macros.h"
#include "rpc/pbutil.h"

int identity_get_plugin_info(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                             struct rpc_call *call, struct wc_error *e)
{
    Csi__V1__GetPluginInfoResponse *r _cleanup_pb_ = pb_new(&csi__v1__get_plugin_info_response__descriptor);
    if (!r || !(r->name = xstrdup(DRIVER_NAME)) || !(r->vendor_version = xstrdup(WC_VERSION)))
        return -ENOMEM;
    *ret_resp = &TAKE_PTR(r)->base;
    return 0;
}

int identity_get_plugin_capabilities(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp,
                                     struct rpc_call *call, struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    Csi__V1__GetPluginCapabilitiesResponse *r _cleanup_pb_ =
        pb_new(&csi__v1__get_plugin_capabilities_response__descriptor);
    if (!r)
        return -ENOMEM;
    if (c->controller) {
        /* No VOLUME_ACCESSIBILITY_CONSTRAINTS: every node can fill its own copy. */
        Csi__V1__PluginCapability *cap _cleanup_pb_ = pb_new(&csi__v1__plugin_capability__descriptor);
        if (!cap || !(cap->service = pb_new(&csi__v1__plugin_capability__service__descriptor)) ||
            !(r->capabilities = calloc(1, sizeof(*r->capabilities))))
            return -ENOMEM;
        cap->service->type = CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE;
        cap->type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE;
        r->capabilities[r->n_capabilities++] = TAKE_PTR(cap);
    }
    *ret_resp = &TAKE_PTR(r)->base;
    return 0;
}

int identity_probe(void *ctx, const ProtobufCMessage *req, ProtobufCMessage **ret_resp, struct rpc_call *call,
                   struct wc_error *e)
{
    struct csi_ctx *c = ctx;
    Csi__V1__ProbeResponse *r _cleanup_pb_ = pb_new(&csi__v1__probe_response__descriptor);
    if (!r || !(r->ready = pb_new(&csi__v1__bool_value__descriptor)))
        return -ENOMEM;
    r->ready->value = atomic_load(&c->ready);
    *ret_resp = &TAKE_PTR(r)->base;
    return 0;
}
