#!/usr/bin/env bash
# make bench: the benchmarks, run here on loopback, results merged into
# bench/results/latest.json (one row per bench/dataset/tool; rows of benches
# not run now are kept): the warm path (NodeStage + NodePublish of a copy
# already on the node), then the S3 fill against s5cmd, rclone and the AWS CLI
# (bench/fill_bench.py, into a tmpfs and into XFS on a loop device; BENCH_ARGS="--xfs-device DEV" formats a spare disk instead,
# "--quick" shrinks the data sets 16x for a smoke run).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/$build"
[ "$(id -u)" = 0 ] || { echo "make bench mounts file systems: run it as root"; exit 1; }
bash "$root/scripts/setup.sh" bench
work=$(mktemp -d /tmp/wc-bench.XXXXXX)
driver=""
cleanup() {
  [ -n "$driver" ] && kill -TERM "$driver" 2>/dev/null && wait "$driver" 2>/dev/null || true
  grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# a model-like tree on the real disk: 2 x 64 MiB shards and 50 small files
mkdir -p "$work/src/tokenizer"
for i in 1 2; do head -c $((64 << 20)) /dev/urandom > "$work/src/model-0000$i-of-00002.safetensors"; done
for i in $(seq 50); do head -c 4096 /dev/urandom > "$work/src/tokenizer/part-$i.json"; done

"$bin/warmcache-csi" --endpoint "unix://$work/csi.sock" --store-root "$work/store" --log-level warn \
  --allowed-sources "file://$work/src/" \
  2> "$work/driver.log" &
driver=$!
for _ in $(seq 50); do [ -S "$work/csi.sock" ] && break; sleep 0.1; done
export WARMCACHE_SOCKET="$work/csi.sock"
"$bin/warmcachectl" create bench -p "source=file://$work/src/" > "$work/vol.json"
"$bin/warmcachectl" stage -f "$work/vol.json" "$work/warmup"      # the fill: not measured here
"$bin/warmcachectl" unstage -f "$work/vol.json" "$work/warmup"

row=$("$bin/bench_warm_publish" "$work/csi.sock" "$work/vol.json" "$work/runs" 200)
echo "warm path (stage + publish of a copy already on the node): $row"

mkdir -p "$root/bench/results"
python3 - "$root/bench/results/latest.json" "$row" <<'PY'
import json, os, sys
path, new = sys.argv[1], [json.loads(sys.argv[2])]
old = json.load(open(path)) if os.path.exists(path) else []
key = lambda r: (r.get("bench"), r.get("dataset"), r.get("tool"))
keep = [r for r in old if key(r) not in {key(n) for n in new}]
json.dump(keep + new, open(path, "w"), indent=2)
open(path, "a").write("\n")
print(f"bench: results in {path}")
PY

# shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
python3 "$root/bench/fill_bench.py" --build "$build" ${BENCH_ARGS:-}
# the same model from an OCI registry, against oras pull and skopeo copy
python3 "$root/bench/oci_bench.py" --build "$build" $([[ " ${BENCH_ARGS:-} " == *" --quick "* ]] && echo --quick)
