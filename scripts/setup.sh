#!/usr/bin/env bash
# Installs what warmcache needs on a fresh Debian (bookworm) machine, for one
# of four uses, each a superset of the one before it where it says so:
#
#   demo    what `make demo` uses: the build dependencies, and an S3 server
#           that verifies signatures (versitygw) with boto3 to fill it
#   test    demo + what `make test` uses: pytest, csi-sanity, helm and the
#           Kubernetes OpenAPI schemas, a real Kubernetes built from its Go
#           modules (kube-apiserver, -controller-manager, -scheduler, kubelet,
#           kubectl), csi-provisioner, containerd, runc and busybox, an OCI
#           registry (docker-registry) and oras
#   e2e     test + what `make e2e` adds: buildah, podman and debootstrap (the
#           image from the Dockerfile) and the Kubernetes e2e.test binary
#   bench   demo + what `make bench` compares with: s5cmd, rclone, AWS CLI,
#           and for oci:// a registry, oras and skopeo
#
# Idempotent: each step checks before it installs, so a second run takes a
# second. Tools from the Go module proxy go into .tools/bin, pinned.
set -euo pipefail
mode=${1:-test}
case "$mode" in demo|test|e2e|bench) ;; --bench) mode=bench ;; *) echo "usage: setup.sh demo|test|e2e|bench" >&2; exit 2 ;; esac
want() { # want test: true when this run's mode includes the tests' tools
  case "$1:$mode" in
    test:test|test:e2e|e2e:e2e|bench:bench) return 0 ;;
    *) return 1 ;;
  esac
}
here=$(cd "$(dirname "$0")/.." && pwd)
tools="$here/.tools"
mkdir -p "$tools/bin"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# the build, and what the plugin runs (mkfs.xfs for device/raid0 stores,
# mkfs.ext4 for the writable layers' loop images)
apt_install cmake ninja-build pkg-config gcc make libgrpc-dev protobuf-c-compiler libprotobuf-c-dev \
            libjansson-dev libcurl4-openssl-dev libmount-dev libblkid-dev libcmocka-dev libssl-dev libexpat1-dev \
            libisal-dev libzstd-dev xfsprogs e2fsprogs util-linux mount procps python3 openssl
if want test; then
  # etcd for kube-apiserver; a kubelet's node: containerd, runc, the CNI
  # loopback plugin, busybox for the test image (../shared/notes/real-kubelet.md)
  apt_install python3-pytest etcd-server containerd runc containernetworking-plugins busybox-static zstd
fi
if want e2e; then
  apt_install buildah podman debootstrap
fi
GO=$(command -v go || echo /usr/local/go/bin/go)
if [ ! -x "$GO" ]; then
  apt_install golang-go
  GO=$(command -v go)
fi
# the pinned tools (Kubernetes 1.36 above all) are built with Go 1.25 or
# newer; Debian 12's golang-go is 1.19, which cannot even fetch a toolchain
gover=$("$GO" env GOVERSION 2>/dev/null | sed 's/^go//')
if ! printf '1.25\n%s\n' "${gover:-0}" | sort -V -C; then
  echo "setup: $GO is Go ${gover:-of unknown version}; the tools setup builds from source (versitygw, helm, Kubernetes 1.36) need Go 1.25 or newer on PATH" \
       "(Debian 13's golang-go, or the go.dev release in /usr/local/go)" >&2
  exit 1
fi

pip_install() {
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  python3 -m pip install -q "$@" 2>/dev/null || python3 -m pip install -q --break-system-packages "$@"
}

# An S3-compatible server that verifies SigV4 (versitygw, pinned, from the Go
# module proxy) and boto3 to put data into it: the demo's, the tests' and the
# bench's server.
VERSITYGW_VERSION=v1.8.0
if [ ! -x "$tools/bin/versitygw" ] || [ "$(cat "$tools/versitygw.version" 2>/dev/null)" != "$VERSITYGW_VERSION" ]; then
  echo "setup: installing versitygw $VERSITYGW_VERSION (a few minutes: it is built from source)"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod "$GO" install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  echo "$VERSITYGW_VERSION" > "$tools/versitygw.version"
fi
python3 -c 'import boto3' 2>/dev/null || pip_install boto3

# A real OCI registry (distribution, from Debian) and oras (pinned, from the
# Go module proxy), which pushes artifacts to it: for the oci:// tests and
# the bench; htpasswd (bcrypt) for the tests' registry users.
if want test || want bench; then
  apt_install docker-registry apache2-utils
  ORAS_VERSION=v1.3.6
  if [ ! -x "$tools/bin/oras" ] || [ "$(cat "$tools/oras.version" 2>/dev/null)" != "$ORAS_VERSION" ]; then
    echo "setup: installing oras $ORAS_VERSION"
    GOBIN="$tools/bin" GOFLAGS=-mod=mod "$GO" install "oras.land/oras/cmd/oras@$ORAS_VERSION"
    echo "$ORAS_VERSION" > "$tools/oras.version"
  fi
fi

if want test; then
# Python test tools: pytest (Debian's, unless python3 is another build, such
# as pyenv, that does not see it) and grpcio, for tests that send raw bytes
# to the plugin's gRPC socket. From PyPI when missing.
python3 -c 'import pytest' 2>/dev/null || pip_install pytest
python3 -c 'import grpc' 2>/dev/null || pip_install 'grpcio==1.85.3'

# csi-sanity, pinned, from the Go module proxy.
CSI_TEST_VERSION=v5.6.0
if [ ! -x "$tools/bin/csi-sanity" ] || [ "$(cat "$tools/csi-sanity.version" 2>/dev/null)" != "$CSI_TEST_VERSION" ]; then
  echo "setup: installing csi-sanity $CSI_TEST_VERSION"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod "$GO" install "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$CSI_TEST_VERSION"
  echo "$CSI_TEST_VERSION" > "$tools/csi-sanity.version"
fi

# helm (pinned) and the Kubernetes OpenAPI schemas, for the chart tests; both
# from the Go module proxy.
HELM_VERSION=v3.19.0
K8S_VERSION=v1.36.3
if [ ! -x "$tools/bin/helm" ] || [ "$(cat "$tools/helm.version" 2>/dev/null)" != "$HELM_VERSION" ]; then
  echo "setup: installing helm $HELM_VERSION (a few minutes: it is built from source)"
  GOBIN="$tools/bin" GOFLAGS=-mod=mod "$GO" install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  echo "$HELM_VERSION" > "$tools/helm.version"
fi
if [ ! -d "$(cat "$tools/k8s-openapi.path" 2>/dev/null)" ]; then
  echo "setup: fetching the Kubernetes $K8S_VERSION OpenAPI schemas"
  dir=$(cd /tmp && GOFLAGS=-mod=mod "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  echo "$dir/api/openapi-spec/v3" > "$tools/k8s-openapi.path"
fi
python3 -c 'import jsonschema, yaml' 2>/dev/null || pip_install jsonschema pyyaml
# The chart's ServiceMonitor and PodMonitor have no OpenAPI schema there:
# tests/chart/monitorcheck decodes them strictly into the Prometheus
# Operator's own Go types (pinned in its go.mod).
mc="$here/tests/chart/monitorcheck"
mc_stamp=$(cat "$mc/go.mod" "$mc/go.sum" "$mc/main.go" | sha256sum | cut -c1-16)
if [ ! -x "$tools/bin/monitorcheck" ] || [ "$(cat "$tools/monitorcheck.version" 2>/dev/null)" != "$mc_stamp" ]; then
  echo "setup: building monitorcheck (the Prometheus Operator's types)"
  (cd "$mc" && GOFLAGS=-mod=mod "$GO" build -o "$tools/bin/monitorcheck" .)
  echo "$mc_stamp" > "$tools/monitorcheck.version"
fi

# The real csi-provisioner sidecar, the version the chart ships, for the end-to-end test:
# static (no cgo), so the same binary is the cluster tests' sidecar image.
PROVISIONER_VERSION=v6.4.0
if [ ! -x "$tools/bin/csi-provisioner" ] || [ "$(cat "$tools/csi-provisioner.version" 2>/dev/null)" != "$PROVISIONER_VERSION static" ]; then
  echo "setup: building csi-provisioner $PROVISIONER_VERSION"
  scratch=$(mktemp -d)
  printf 'module pbuild\n\ngo 1.25\n\nrequire github.com/kubernetes-csi/external-provisioner/v6 %s\n' "$PROVISIONER_VERSION" \
    > "$scratch/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner"\n' \
    > "$scratch/tools.go"
  (cd "$scratch" && GOFLAGS=-mod=mod "$GO" mod tidy >/dev/null 2>&1 &&
   CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -o "$tools/bin/csi-provisioner" \
     github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner)
  rm -rf "$scratch"
  echo "$PROVISIONER_VERSION static" > "$tools/csi-provisioner.version"
fi
python3 -c 'import prometheus_client' 2>/dev/null || pip_install prometheus-client  # the metrics test's parser

# A real Kubernetes for the integration and cluster tests: kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet and kubectl built from
# k8s.io/kubernetes (the version whose OpenAPI schemas the chart test uses),
# its staging modules mapped to their published versions, in one go build;
# the version stamped in, as a release build would (components compare them).
# etcd comes from Debian (above).
KUBE_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
kube_stamp="$K8S_VERSION ${KUBE_BINS[*]}"
kube_ver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
kube_ver="$kube_ver -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
kube_ver="$kube_ver -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
# kube_module DIR PACKAGE...: a module in DIR that builds those packages of
# k8s.io/kubernetes, its staging modules mapped to their published versions
kube_module() {
  local dir=$1 kdir staging m
  shift
  kdir=$(cd /tmp && GOFLAGS=-mod=mod "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
         python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  staging=$(awk '/=> \.\/staging/ {print $1}' "$kdir/go.mod")
  {
    printf 'module wckube\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
      "$(awk '/^go / {print $2}' "$kdir/go.mod")" "$K8S_VERSION"
    for m in $staging; do printf '\t%s => %s v0%s\n' "$m" "$m" "${K8S_VERSION#v1}"; done
    printf ')\n'
  } > "$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for m in "$@"; do printf '\t_ "%s"\n' "$m"; done
    printf ')\n'
  } > "$dir/tools.go"
  (cd "$dir" && GOFLAGS=-mod=mod "$GO" mod tidy >/dev/null 2>&1)
}
kube_missing=0
for b in "${KUBE_BINS[@]}"; do [ -x "$tools/bin/$b" ] || kube_missing=1; done
if ((kube_missing)) || [ "$(cat "$tools/kube.version" 2>/dev/null)" != "$kube_stamp" ]; then
  echo "setup: building ${KUBE_BINS[*]} $K8S_VERSION (several minutes)"
  scratch=$(mktemp -d)
  kube_module "$scratch" $(for b in "${KUBE_BINS[@]}"; do printf 'k8s.io/kubernetes/cmd/%s ' "$b"; done)
  (cd "$scratch" && GOFLAGS=-mod=mod "$GO" build -ldflags "$kube_ver" -o "$tools/bin/" \
     $(for b in "${KUBE_BINS[@]}"; do printf 'k8s.io/kubernetes/cmd/%s ' "$b"; done))
  rm -rf "$scratch"
  echo "$kube_stamp" > "$tools/kube.version"
fi

# make e2e: the Kubernetes e2e binary, whose external-storage suite runs
# against the driver, and agnhost, the image some of its pods use; same version.
if want e2e; then
  e2e_stamp="$K8S_VERSION e2e.test agnhost"
  if [ ! -x "$tools/bin/e2e.test" ] || [ ! -x "$tools/bin/agnhost" ] ||
     [ "$(cat "$tools/e2e.version" 2>/dev/null)" != "$e2e_stamp" ]; then
    echo "setup: building the Kubernetes $K8S_VERSION e2e.test and agnhost (ten minutes or more)"
    scratch=$(mktemp -d)
    kube_module "$scratch" k8s.io/kubernetes/test/e2e k8s.io/kubernetes/test/images/agnhost
    (cd "$scratch" && GOFLAGS=-mod=mod "$GO" test -c -ldflags "$kube_ver" -o "$tools/bin/e2e.test" \
       k8s.io/kubernetes/test/e2e &&
     CGO_ENABLED=0 GOFLAGS=-mod=mod "$GO" build -o "$tools/bin/agnhost" k8s.io/kubernetes/test/images/agnhost)
    rm -rf "$scratch"
    echo "$e2e_stamp" > "$tools/e2e.version"
  fi
fi

fi  # want test

# `make bench`: the tools a user would otherwise pick, and matplotlib for the
# plot. s5cmd pinned from the Go module proxy (built in a scratch module: the
# proxy refuses its version list, which `go install` asks for); rclone and
# AWS CLI v2 from Debian.
if want bench; then
  apt_install rclone awscli python3-matplotlib curl time strace linux-perf iproute2 skopeo  # strace: bench/tls_syscalls.py; perf, ss: --profile, --trace; skopeo: bench/oci_bench.py
  python3 -c 'import matplotlib' 2>/dev/null || pip_install matplotlib  # python3 may not be Debian's
  S5CMD_VERSION=v2.3.0
  if [ ! -x "$tools/bin/s5cmd" ] || [ "$(cat "$tools/s5cmd.version" 2>/dev/null)" != "$S5CMD_VERSION" ]; then
    echo "setup: building s5cmd $S5CMD_VERSION"
    scratch=$(mktemp -d)
    printf 'module s5build\ngo 1.22\nrequire github.com/peak/s5cmd/v2 %s\n' "$S5CMD_VERSION" > "$scratch/go.mod"
    (cd "$scratch" && GOFLAGS=-mod=mod "$GO" build -o "$tools/bin/s5cmd" github.com/peak/s5cmd/v2)
    rm -rf "$scratch"
    echo "$S5CMD_VERSION" > "$tools/s5cmd.version"
  fi
fi
