#!/usr/bin/env bash
# Builds the warmcache image here (scripts/image.sh: debootstrap base,
# buildah, no Docker engine) and runs `warmcache-csi --version` inside the
# result, checking the programs the node plugin runs are there. Prints the
# image size.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/image.sh" localhost/warmcache:test
ctr=$(buildah from --pull=never localhost/warmcache:test)
trap 'buildah rm "$ctr" >/dev/null' EXIT
version=$(buildah run --isolation chroot "$ctr" -- /usr/local/bin/warmcache-csi --version)
buildah run --isolation chroot "$ctr" -- /usr/local/bin/warmcachectl --help >/dev/null
for tool in mdadm mkfs.xfs mkfs.ext4; do buildah run --isolation chroot "$ctr" -- sh -c "command -v $tool" >/dev/null; done
size=$(podman image inspect localhost/warmcache:test --format '{{.Size}}')
echo "image-test: $version; mdadm, mkfs.xfs and mkfs.ext4 present; image size $((size / 1000000)) MB"
