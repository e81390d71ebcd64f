#!/usr/bin/env bash
# The Helm chart and the examples: helm lint and helm template for the
# default values and each store mode, every rendered manifest and every
# example validated against the Kubernetes OpenAPI schemas, and a bad value
# refused with a readable schema error.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export PATH="$root/.tools/bin:$PATH"
spec=$(cat "$root/.tools/k8s-openapi.path")
chart="$root/charts/warmcache"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

declare -A sets=(
  [default]=""
  [directory+class]="--set storageClass.create=true --set storageClass.parameters.source=file:///fsx/models/llama/"
  [s3-class]="--set storageClass.create=true --set storageClass.parameters.source=s3://my-models/llama/ --set storageClass.parameters.region=us-east-1 --set storageClass.parameters.csi\.storage\.k8s\.io/node-stage-secret-name=warmcache-s3"
  [device]="--set node.storeMode=device --set node.storeDevice=/dev/nvme1n1"
  [raid0]="--set node.storeMode=raid0 --set node.sourceHostPaths[0]=/fsx"
  [raid0-no-adopt]="--set node.storeMode=raid0 --set node.adoptPaths=null --set controller.replicas=2"
  [inline]="--set inlineVolumes.allowedSources[0]=s3://public-models/ --set inlineVolumes.nodeCredentials=true"
  [built-in-sidecars]="--set sidecars.nodeDriverRegistrar.enabled=false --set sidecars.livenessProbe.enabled=false --set node.hostNetwork=true --set controller.hostNetwork=true"
  [narrow-sources]="--set allowedSources[0]=s3://my-models/ --set node.sourceHostPaths[0]=/fsx/"
  [s3-secrets]="--set provisionerSecrets[0]=warmcache-s3"
  [oci-class]="--set storageClass.create=true --set storageClass.parameters.source=oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/models/llama:v1 --set allowedSources[0]=oci://123456789012.dkr.ecr.us-east-1.amazonaws.com/models/ --set registryCABundle.configMap=registry-ca --set s3CABundle.configMap=s3-ca"
  # every value an EKS admin sets (issue #16), at once
  [every-knob]="--set imagePullSecrets[0].name=regcred --set nameOverride=wcache --set fullnameOverride=ml-cache
    --set serviceAccount.create=false --set serviceAccount.controller.name=irsa-controller
    --set serviceAccount.node.name=irsa-node --set controller.replicas=2 --set controller.priorityClassName=ml-critical
    --set controller.podAnnotations.team=ml --set controller.podLabels.cost-center=ai --set node.podAnnotations.team=ml
    --set node.podLabels.cost-center=ai --set controller.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight=1
    --set controller.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey=kubernetes.io/hostname
    --set sidecars.provisioner.extraArgs[0]=--kube-api-qps=50 --set sidecars.provisioner.resources.limits.memory=256Mi
    --set sidecars.nodeDriverRegistrar.extraArgs[0]=--v=5 --set sidecars.livenessProbe.resources.requests.cpu=10m
    --set metrics.serviceMonitor.enabled=true --set metrics.serviceMonitor.labels.release=kube-prometheus-stack
    --set metrics.podMonitor.enabled=true --set global.imageRegistry=example.com
    --set storageClass.create=true --set storageClass.parameters.source=s3://models/llama/
    --set storageClass.parameters.prewarm=karpenter.k8s.aws/instance-local-nvme
  --set s3CABundle.configMap=minio-ca"
)
for name in "${!sets[@]}"; do
  # shellcheck disable=SC2086
  helm lint "$chart" ${sets[$name]} --quiet >/dev/null
  # shellcheck disable=SC2086
  helm template wc "$chart" --namespace kube-system --kube-version 1.36.0 ${sets[$name]} > "$out/$name.yaml"
  echo "chart: $name: lint ok, $(grep -c '^kind:' "$out/$name.yaml") objects rendered"
done
shopt -s nullglob
python3 "$root/tests/chart/validate.py" "$spec" "$out"/*.yaml "$root"/examples/*.yaml
monitorcheck "$out/every-knob.yaml"
python3 "$root/tests/chart/docs_check.py" "$root"

# what every-knob asked for, in the objects (beyond their being valid)
k="$out/every-knob.yaml"
for want in "name: regcred" "serviceAccountName: irsa-controller" "serviceAccountName: irsa-node" \
            "name: ml-cache-controller" "name: ml-cache-node" "app.kubernetes.io/name: wcache" \
            "priorityClassName: ml-critical" "kind: PodDisruptionBudget" "kind: ServiceMonitor" "kind: PodMonitor" \
            "name: ml-cache-node-metrics" '"--kube-api-qps=50"' '"--v=5"' "cost-center: ai" "release: kube-prometheus-stack" \
            "prewarm: karpenter.k8s.aws/instance-local-nvme" "value: /etc/warmcache/s3-ca/ca.crt" \
            "configMap: {name: minio-ca}"; do
  grep -qF -- "$want" "$k" || { echo "chart: every-knob: \"$want\" is not rendered"; exit 1; }
done
if grep -q "^kind: ServiceAccount" "$k"; then echo "chart: serviceAccount.create=false made one"; exit 1; fi
if grep -q "kind: PodDisruptionBudget" "$out/default.yaml"; then echo "chart: a PDB for one replica"; exit 1; fi
grep -q "eks.amazonaws.com/compute-type" "$out/default.yaml" || { echo "chart: the node plugin may land on Fargate"; exit 1; }
echo "chart: every-knob: pull secrets, names, service accounts, PDB, monitors, sidecar args rendered as asked"

if helm template wc "$chart" --set node.storeMode=raid1 > "$out/bad" 2>&1; then
  echo "chart: a bad storeMode was accepted"; exit 1
fi
grep -q "storeMode': value must be one of 'directory', 'device', 'raid0'" "$out/bad" || { cat "$out/bad"; exit 1; }
if helm template wc "$chart" --kube-version 1.36.0 --set storageClass.create=true --set storageClass.parameters.sorce=x > "$out/bad2" 2>&1; then
  echo "chart: an unknown StorageClass parameter was accepted"; exit 1
fi
grep -q "sorce" "$out/bad2" || { cat "$out/bad2"; exit 1; }  # the error names the key
if helm template wc "$chart" --kube-version 1.36.0 --set node.evictLowPercent=90 --set node.evictHighPercent=80 > "$out/bad3" 2>&1; then
  echo "chart: evictLowPercent above evictHighPercent was accepted"; exit 1
fi
grep -q "evictLowPercent is above node.evictHighPercent" "$out/bad3" || { cat "$out/bad3"; exit 1; }
for iv in 30s 1m30s 500ms; do
  helm template wc "$chart" --kube-version 1.36.0 --set metrics.serviceMonitor.enabled=true --set metrics.serviceMonitor.interval=$iv >/dev/null
done
if helm template wc "$chart" --kube-version 1.36.0 --set metrics.serviceMonitor.interval=30 > "$out/bad4" 2>&1; then
  echo "chart: a scrape interval without a unit was accepted"; exit 1
fi
# listenAddress is for host-network pods only: a pod on its own network listens on all of its addresses
helm template wc "$chart" --kube-version 1.36.0 --set listenAddress=127.0.0.1 > "$out/listen.yaml"
if grep -q "127.0.0.1" "$out/listen.yaml"; then echo "chart: listenAddress applied to a pod on its own network"; exit 1; fi
helm template wc "$chart" --kube-version 1.36.0 --set listenAddress=127.0.0.1 --set node.hostNetwork=true > "$out/listen-host.yaml"
grep -q -- "--http-endpoint=127.0.0.1:9809" "$out/listen-host.yaml" && grep -q "host: 127.0.0.1" "$out/listen-host.yaml" \
  || { echo "chart: listenAddress not applied to the host-network node plugin"; exit 1; }
helm template wc "$chart" --kube-version 1.36.0 --set storageClass.create=true --set storageClass.parameters.source=s3://m/ \
  --set 'storageClass.parameters.storage\.kubernetes\.io/x=y' --set 'sidecars.provisioner.resources.claims[0].name=gpu' >/dev/null
# the defaults an admin installs: every bucket, no node path, no inline volume
grep -q -- "--allowed-sources=s3://$" "$out/default.yaml" || { echo "chart: default allowedSources"; exit 1; }
if grep -q -- "--inline-sources\|--inline-node-credentials" "$out/default.yaml"; then
  echo "chart: inline volumes are on by default"; exit 1
fi
grep -q -- "--allowed-sources=s3://my-models/,file:///fsx/$" "$out/narrow-sources.yaml" \
  || { echo "chart: allowedSources and sourceHostPaths do not reach the plugins"; exit 1; }
[ "$(grep -c -- "--allowed-sources=" "$out/default.yaml")" = 2 ] || { echo "chart: not both plugins"; exit 1; }
echo "chart: storeMode=raid1 refused: $(grep storeMode "$out/bad" | sed 's/^ *//')"
