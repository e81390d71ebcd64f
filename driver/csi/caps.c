/*
 * Volume capabilities, checked the same way by controller and node.
 *
 * warmcache serves a directory, so only the mount access type makes sense.
 * Readers on one node or many are the point; single-node writers get a
 * private writable overlay per publish. Multi-writer modes are refused:
 * writes are not shared between pods, and saying yes would be a lie.
 */
#include "csi/csi.h"

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
