#!/usr/bin/env bash
# Runs the kubernetes-csi sanity suite (csi-sanity, installed by
# scripts/setup.sh) against a real warmcache-csi in `all` mode, with a
# file:// source it creates here. Every spec runs; the only skips are for
# capabilities warmcache does not advertise (README lists them). Then it
# stops the driver with SIGTERM and checks it exits 0 and removes its socket.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/$build/warmcache-csi"
sanity=$(command -v csi-sanity || echo "$root/.tools/bin/csi-sanity")
work=$(mktemp -d /tmp/wc-sanity.XXXXXX)
driver_pid=""
cleanup() {
  [ -n "$driver_pid" ] && kill -KILL "$driver_pid" 2>/dev/null || true
  # nothing may stay mounted under the work dir; unmount before removing
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/src/tokenizer" "$work/store"
head -c 1048576 /dev/urandom > "$work/src/model.safetensors"
echo '{"vocab": 32000}' > "$work/src/tokenizer/config.json"
printf 'source: file://%s/src/\n' "$work" > "$work/params.yaml"

"$bin" --endpoint "unix://$work/csi.sock" --store-root "$work/store" --state-dir "$work/state" \
       --node-id sanity-node --log-level warn 2> "$work/driver.log" &
driver_pid=$!
for _ in $(seq 50); do [ -S "$work/csi.sock" ] && break; sleep 0.1; done

set +e
"$sanity" --csi.endpoint "$work/csi.sock" --csi.testvolumeparameters "$work/params.yaml" \
          --csi.mountdir "$work/mnt" --csi.stagingdir "$work/staging" \
          --ginkgo.no-color --ginkgo.timeout 10m > "$work/sanity.out" 2>&1
rc=$?
set -e
grep -E "^Ran [0-9]+ of [0-9]+ Specs|Passed \| [0-9]+ Failed" "$work/sanity.out" | sed 's/^/csi-sanity: /'
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
