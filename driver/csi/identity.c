/* Identity service: who we are, what we serve, and whether we are ready. */
#include "csi/csi.h"
#include "rpc/pbutil.h"

DECLARE_HANDLER(identity_get_plugin_info)
{
    Csi__V1__GetPluginInfoResponse *r = pb_new(&csi__v1__get_plugin_info_response__descriptor);
    if (!r)
        return -ENOMEM;
    r->name = xstrdup(DRIVER_NAME);
    r->vendor_version = xstrdup(WC_VERSION);
    *ret_resp = &r->base;
    return r->name && r->vendor_version ? 0 : -ENOMEM;
}

DECLARE_HANDLER(identity_get_plugin_capabilities)
{
    struct csi_ctx *c = ctx;
    Csi__V1__GetPluginCapabilitiesResponse *r = pb_new(&csi__v1__get_plugin_capabilities_response__descriptor);
    if (!r)
        return -ENOMEM;
    *ret_resp = &r->base;
    if (!c->controller)
        return 0;
    /* No VOLUME_ACCESSIBILITY_CONSTRAINTS: every node can fill its own copy. */
    r->capabilities = calloc(1, sizeof(*r->capabilities));
    Csi__V1__PluginCapability *cap = pb_new(&csi__v1__plugin_capability__descriptor);
    Csi__V1__PluginCapability__Service *svc = pb_new(&csi__v1__plugin_capability__service__descriptor);
    if (!r->capabilities || !cap || !svc) {
        free(cap);
        free(svc);
        return -ENOMEM;
    }
    svc->type = CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE;
    cap->type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE;
    cap->service = svc;
    r->capabilities[r->n_capabilities++] = cap;
    return 0;
}

DECLARE_HANDLER(identity_probe)
{
    struct csi_ctx *c = ctx;
    Csi__V1__ProbeResponse *r = pb_new(&csi__v1__probe_response__descriptor);
    if (!r)
        return -ENOMEM;
    *ret_resp = &r->base;
    r->ready = pb_new(&csi__v1__bool_value__descriptor);
    if (!r->ready)
        return -ENOMEM;
    r->ready->value = atomic_load(&c->ready);
    return 0;
}
