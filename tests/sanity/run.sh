#!/usr/bin/env bash
# Runs the kubernetes-csi sanity suite (csi-sanity, installed by
# scripts/setup.sh) against a real warmcache-csi in `all` mode, with a
# file:// source it creates here. Every spec runs; the only skips are for
# capabilities warmcache does not advertise (README lists them). Then it
# stops the driver with SIGTERM and checks it exits 0 and removes its socket.
set -euo pipefail
build=${1:-build}
source_kind=${2:-file}     # file | s3 (a versitygw on loopback, with credentials as CSI secrets)
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/$build/warmcache-csi"
sanity=$(command -v csi-sanity || echo "$root/.tools/bin/csi-sanity")
work=$(mktemp -d /tmp/wc-sanity.XXXXXX)
driver_pid=""
gw_pid=""
cleanup() {
  [ -n "$driver_pid" ] && kill -KILL "$driver_pid" 2>/dev/null || true
  [ -n "$gw_pid" ] && kill -TERM "$gw_pid" 2>/dev/null || true
  # nothing may stay mounted under the work dir; unmount before removing
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/src/tokenizer" "$work/store"
head -c 1048576 /dev/urandom > "$work/src/model.safetensors"
echo '{"vocab": 32000}' > "$work/src/tokenizer/config.json"
printf 'source: file://%s/src/\n' "$work" > "$work/params.yaml"
secrets=()
if [ "$source_kind" = s3 ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$work/gw"
  "$root/.tools/bin/versitygw" --port "127.0.0.1:$port" --access sanity-key --secret sanity-secret-5e1d \
      posix "$work/gw" > "$work/gw.log" 2>&1 &
  gw_pid=$!
  python3 - "$port" "$work/src" <<'PY'
import sys, time, boto3
from pathlib import Path
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", aws_access_key_id="sanity-key",
                  aws_secret_access_key="sanity-secret-5e1d", region_name="us-east-1")
for _ in range(100):
    try:
        s3.create_bucket(Bucket="sanity"); break
    except Exception:
        time.sleep(0.05)
for p in Path(sys.argv[2]).rglob("*"):
    if p.is_file():
        s3.upload_file(str(p), "sanity", "models/" + str(p.relative_to(sys.argv[2])))
PY
  printf 'source: s3://sanity/models/\nendpoint: http://127.0.0.1:%s\nallowPlainHTTP: "true"\n' "$port" > "$work/params.yaml"
  cat > "$work/secrets.yaml" <<YAML
CreateVolumeSecret: {awsAccessKeyId: sanity-key, awsSecretAccessKey: sanity-secret-5e1d}
NodeStageVolumeSecret: {awsAccessKeyId: sanity-key, awsSecretAccessKey: sanity-secret-5e1d}
YAML
  secrets=(--csi.secrets "$work/secrets.yaml")
fi

"$bin" --endpoint "unix://$work/csi.sock" --store-root "$work/store" --state-dir "$work/state" \
       --allowed-sources "file://$work/src/,s3://sanity/" \
       --node-id sanity-node --log-level warn 2> "$work/driver.log" &
driver_pid=$!
for _ in $(seq 50); do [ -S "$work/csi.sock" ] && break; sleep 0.1; done

set +e
"$sanity" --csi.endpoint "$work/csi.sock" --csi.testvolumeparameters "$work/params.yaml" \
          --csi.mountdir "$work/mnt" --csi.stagingdir "$work/staging" \
          "${secrets[@]}" --ginkgo.no-color --ginkgo.timeout 10m > "$work/sanity.out" 2>&1
rc=$?
set -e
grep -E "^Ran [0-9]+ of [0-9]+ Specs|Passed \| [0-9]+ Failed" "$work/sanity.out" | sed "s/^/csi-sanity ($source_kind): /"
if [ $rc -ne 0 ]; then
  grep -A12 "\[FAIL\]" "$work/sanity.out" | head -80
  echo "csi-sanity: FAILED (driver log follows)"; tail -30 "$work/driver.log"
  exit 1
fi

kill -TERM "$driver_pid"
set +e; wait "$driver_pid"; drc=$?; set -e
driver_pid=""
if [ $drc -ne 0 ] || [ -e "$work/csi.sock" ]; then
  echo "csi-sanity: driver did not shut down cleanly (exit $drc, socket left: $([ -e "$work/csi.sock" ] && echo yes || echo no))"
  exit 1
fi
if grep -q " $work" /proc/self/mountinfo; then
  echo "csi-sanity: mounts leaked:"; grep " $work" /proc/self/mountinfo; exit 1
fi
echo "csi-sanity: driver exited 0 on SIGTERM, socket removed, no mounts left"
