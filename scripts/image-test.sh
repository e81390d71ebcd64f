#!/usr/bin/env bash
# Builds the warmcache image here, with no Docker engine: a minimal Debian
# bookworm root from debootstrap is imported as the Dockerfile's pinned base
# name, buildah builds the Dockerfile with chroot isolation, and
# `warmcache-csi --version` runs inside the result. Prints the image size.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=$(sed -n 's/^ARG BASE=//p' "$root/Dockerfile")
tools="$root/.tools"
need=()
for p in debootstrap podman buildah; do command -v "$p" >/dev/null || need+=("$p"); done
((${#need[@]})) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null

if ! podman image exists "$base"; then
  rootfs="$tools/bookworm-rootfs.tar"
  if [ ! -f "$rootfs" ]; then
    echo "image-test: debootstrap bookworm (minbase) -> $base"
    dir=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >/dev/null
    # what an official slim image leaves out: apt caches and lists, docs, man pages
    rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
    tar -C "$dir" -cf "$rootfs" .
    rm -rf "$dir"
  fi
  podman import "$rootfs" "$base" >/dev/null
fi

echo "image-test: buildah bud"
buildah bud --isolation chroot --pull=never --layers=false -t localhost/warmcache:test "$root" > /tmp/wc-image-build.log 2>&1 \
  || { tail -30 /tmp/wc-image-build.log; exit 1; }
ctr=$(buildah from --pull=never localhost/warmcache:test)
trap 'buildah rm "$ctr" >/dev/null' EXIT
version=$(buildah run --isolation chroot "$ctr" -- /usr/local/bin/warmcache-csi --version)
buildah run --isolation chroot "$ctr" -- /usr/local/bin/warmcachectl --help >/dev/null
for tool in mdadm mkfs.xfs; do buildah run --isolation chroot "$ctr" -- sh -c "command -v $tool" >/dev/null; done
size=$(podman image inspect localhost/warmcache:test --format '{{.Size}}')
echo "image-test: $version; mdadm and mkfs.xfs present; image size $((size / 1000000)) MB"
