#!/usr/bin/env bash
# Builds warmcache's image from the Dockerfile here, with no Docker engine: a
# minimal Debian bookworm root from debootstrap is imported as the
# Dockerfile's pinned base name, buildah builds the Dockerfile with chroot
# isolation. With OUT, the image is also saved as a docker-archive tar (what
# `ctr images import` takes: the cluster tests load it into containerd).
#   scripts/image.sh [TAG [OUT.tar]]     (default TAG localhost/warmcache:test)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-localhost/warmcache:test}
out=${2:-}
base=$(sed -n 's/^ARG BASE=//p' "$root/Dockerfile")
tools="$root/.tools"
need=()
for p in debootstrap podman buildah; do command -v "$p" >/dev/null || need+=("$p"); done
if ((${#need[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! podman image exists "$base"; then
  rootfs="$tools/bookworm-rootfs.tar"
  if [ ! -f "$rootfs" ]; then
    echo "image: debootstrap bookworm (minbase) -> $base"
    dir=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$dir" http://deb.debian.org/debian >/dev/null
    # what an official slim image leaves out: apt caches and lists, docs, man pages
    rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
    tar -C "$dir" -cf "$rootfs" .
    rm -rf "$dir"
  fi
  podman import "$rootfs" "$base" >/dev/null
fi

echo "image: buildah bud -> $tag"
log=$(mktemp /tmp/wc-image-build.XXXXXX.log)
buildah bud --isolation chroot --pull=never --layers=false -t "$tag" "$root" > "$log" 2>&1 \
  || { tail -30 "$log"; exit 1; }
rm -f "$log"
if [ -n "$out" ]; then
  rm -f "$out"
  podman save --format docker-archive -o "$out" "$tag" >/dev/null
  echo "image: saved $tag to $out"
fi
