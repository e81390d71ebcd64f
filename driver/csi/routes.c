/*
 * The method table. Every method of the three CSI services (and our Admin
 * and kubelet plugin-registration services) is routed; the ones warmcache
 * does not offer have no handler here and so answer UNIMPLEMENTED, as the
 * spec asks of optional RPCs. A handler for a service this process does
 * not serve (controller-only or node-only mode) answers UNIMPLEMENTED too
 * (see the mode checks). docs/internals/csi.md.
 */
#include "csi/csi.h"
#include "base/macros.h"

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
    {"/warmcache.admin.v1.Admin/Evict", admin_evict},
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

