#!/usr/bin/env bash
# make demo: the main job end to end on this machine, with the real driver.
# A local S3 server (versitygw, which checks SigV4 signatures like S3) holds a
# sample model; the driver creates a volume from its prefix, fills a
# node-local copy with the parallel engine, stages it and publishes it into
# two "pods", and shows what a person would look at.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/$build"
if [ "$(id -u)" != 0 ]; then
  echo "make demo mounts file systems: run it as root (sudo make demo)"; exit 1
fi
demo=$(mktemp -d /tmp/warmcache-demo.XXXXXX)
export WARMCACHE_SOCKET="$demo/csi.sock"
ctl() { "$bin/warmcachectl" "$@"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" -v f="$2" 'BEGIN { printf f, b - a }'; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
driver=""
s3=""
cleanup() {
  if [ -n "$driver" ]; then kill -TERM "$driver" 2>/dev/null; wait "$driver" 2>/dev/null || true; fi
  if [ -n "$s3" ]; then kill -TERM "$s3" 2>/dev/null; wait "$s3" 2>/dev/null || true; fi
  grep -o " $demo[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount 2>/dev/null || true
  rm -rf "$demo"
}
trap cleanup EXIT

say "A local S3 server on loopback (versitygw; it checks request signatures like S3)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
key=demo-key secret=demo-secret-0f3a
mkdir -p "$demo/s3"
"$root/.tools/bin/versitygw" --port "127.0.0.1:$port" --access "$key" --secret "$secret" posix "$demo/s3" \
  > "$demo/s3.log" 2>&1 &
s3=$!
echo "  $endpoint (pid $s3)"

say "A sample model, uploaded to s3://models/tiny-llama/"
m="$demo/upload/tiny-llama"
mkdir -p "$m/tokenizer"
python3 - "$m" "$endpoint" "$key" "$secret" <<'PY'
import json, os, random, sys, time
import boto3
m, endpoint, key, secret = sys.argv[1:]
rnd = random.Random(7)   # the same model every run
for i, mib in enumerate((48, 16)):
    with open(f"{m}/model-0000{i+1}-of-00002.safetensors", "wb") as f:
        f.write(rnd.randbytes(mib << 20))
json.dump({"architectures": ["LlamaForCausalLM"], "hidden_size": 512, "num_hidden_layers": 8},
          open(f"{m}/config.json", "w"), indent=2)
json.dump({"max_new_tokens": 256}, open(f"{m}/generation_config.json", "w"))
json.dump({"version": "1.0", "vocab": {f"tok{i}": i for i in range(2000)}}, open(f"{m}/tokenizer/tokenizer.json", "w"))
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                  region_name="us-east-1")
for _ in range(100):
    try:
        s3.create_bucket(Bucket="models")
        break
    except Exception:  # not listening yet
        time.sleep(0.1)
for root, _, files in os.walk(m):
    for f in files:
        p = os.path.join(root, f)
        s3.upload_file(p, "models", "tiny-llama/" + os.path.relpath(p, m))
for o in s3.list_objects_v2(Bucket="models", Prefix="tiny-llama/")["Contents"]:
    print(f"  s3://models/{o['Key']}  {o['Size']} bytes")
PY

say "Start the plugin (controller + node in one process)"
"$bin/warmcache-csi" --endpoint "unix://$demo/csi.sock" --store-root "$demo/nvme/warmcache" \
  --state-dir "$demo/controller" --node-id demo-node --allowed-sources s3://models/ 2> "$demo/driver.log" &
driver=$!
for _ in $(seq 50); do [ -S "$demo/csi.sock" ] && break; sleep 0.1; done
echo "  warmcache-csi pid $driver on $demo/csi.sock (log: JSON lines, one per call)"

say "CreateVolume, as csi-provisioner would for a PVC of this StorageClass"
cat <<YAML
  apiVersion: storage.k8s.io/v1
  kind: StorageClass
  metadata: {name: tiny-llama}
  provisioner: warmcache.csi.dev
  parameters:
    source: s3://models/tiny-llama/
    endpoint: $endpoint
    allowPlainHTTP: "true"        # the demo's S3 server is on loopback; never on a real network
    csi.storage.k8s.io/node-stage-secret-name: tiny-llama-s3     # awsAccessKeyId, awsSecretAccessKey
    csi.storage.k8s.io/node-stage-secret-namespace: ml
YAML
creds=(--secret "awsAccessKeyId=$key" --secret "awsSecretAccessKey=$secret")
ctl create pvc-0b1c -p source=s3://models/tiny-llama/ -p "endpoint=$endpoint" -p allowPlainHTTP=true --capacity $((100 << 20)) \
  "${creds[@]}" | tee "$demo/vol.json"

say "A mistake in a StorageClass gets an error that says what to fix"
ctl create pvc-bad -p source=s3://models/tiny-llama/ -p "endpoint=$endpoint" -p allowPlainHTTP=true -p sourceChangePolicy=Sometimes \
  "${creds[@]}" || true

say "A wrong secret in the node-stage Secret: S3 refuses, and the error says what to check"
ctl stage -f "$demo/vol.json" "$demo/kubelet/staging/wrong" --secret "awsAccessKeyId=$key" \
  --secret "awsSecretAccessKey=not-the-secret" || true

say "NodeStageVolume: fill the node-local copy from S3, verify it, bind it read-only"
t0=$(now)
ctl stage -f "$demo/vol.json" "$demo/kubelet/staging/pvc-0b1c" "${creds[@]}"
since "$t0" '  filled and staged in %.2f s\n'

say "NodePublishVolume into two pods: each gets a read-only bind of the one copy"
for pod in pod-a pod-b; do
  t0=$(now)
  ctl publish -f "$demo/vol.json" "$demo/kubelet/staging/pvc-0b1c" "$demo/kubelet/pods/$pod/volumes/model"
  since "$t0" "  $pod: published in %.3f s (warmcachectl start-up included)\n"
done
echo "  what pod-b sees:"
(cd "$demo/kubelet/pods/pod-b/volumes/model" && find . -type f -printf '    %P  %s bytes\n' | sort)
if (cd "$m" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$demo/a" &&
   (cd "$demo/kubelet/pods/pod-b/volumes/model" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$demo/b" &&
   cmp -s "$demo/a" "$demo/b"; then
  echo "  sha256 of every file matches the source"
else
  echo "  MISMATCH between the copy and the source"; exit 1
fi
touch "$demo/kubelet/pods/pod-b/volumes/model/x" 2>&1 | sed 's/^/  a pod cannot change the copy: /' || true

say "NodeGetVolumeStats (what kubelet reports as volume health)"
ctl stats -f "$demo/vol.json" "$demo/kubelet/pods/pod-a/volumes/model"

say "warmcachectl status on the node"
ctl status

say "Tear down: unpublish, unstage, delete; the copy stays as cache"
for pod in pod-a pod-b; do ctl unpublish -f "$demo/vol.json" "$demo/kubelet/pods/$pod/volumes/model"; done
ctl unstage -f "$demo/vol.json" "$demo/kubelet/staging/pvc-0b1c"
ctl delete -f "$demo/vol.json"
ctl status | sed -n '3,5p'
kill -TERM "$driver"; wait "$driver"; rc=$?; driver=""
echo "  SIGTERM: plugin exited $rc; socket left behind: $([ -e "$demo/csi.sock" ] && echo yes || echo no)"
echo; echo "The plugin's log, one JSON line per call:"; grep '"msg":"call"' "$demo/driver.log" | head -3 | cut -c1-220
