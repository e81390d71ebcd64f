#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and
# runs each for the given seconds on a copy of its committed seed corpus.
# New inputs land in tests/fuzz/out/ (ignored by git); crashes fail the run.
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v clang >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
fi
cmake -S "$root" -B "$root/build-fuzz" -G Ninja -DCMAKE_C_COMPILER=clang -DWC_FUZZ=ON -DWC_TESTS=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$root/build-fuzz" --target fuzz_pathkey fuzz_params fuzz_csi_request fuzz_s3_xml fuzz_creds fuzz_selector fuzz_kube fuzz_oci_manifest fuzz_oci_layer
for t in pathkey params csi_request s3_xml creds selector kube oci_manifest oci_layer; do
  out="$root/tests/fuzz/out/$t"; mkdir -p "$out"
  cp -n "$root/tests/fuzz/corpus/$t/"* "$out/" 2>/dev/null || true
  echo "fuzz: $t for ${secs}s"
  "$root/build-fuzz/fuzz_$t" -max_total_time="$secs" -max_len=65536 -artifact_prefix="$out/crash-" \
     -print_final_stats=1 "$out" 2>&1 | grep -E "stat::number_of_executed_units|stat::peak_rss_mb|==ERROR|^SUMMARY" || true
  if ls "$out"/crash-* >/dev/null 2>&1; then echo "fuzz: $t found a crash: $(ls "$out"/crash-*)"; exit 1; fi
done
echo "fuzz: no crashes"
