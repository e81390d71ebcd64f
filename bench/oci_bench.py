#!/usr/bin/env python3
"""make bench, the registry fill comparison (issue #18).

One real OCI registry (Debian's docker-registry, https on loopback with a
CA the bench makes, storage on this machine's disk), the M data set (a
model: 2 x 2 GiB shards and 50 small files) pushed to it with oras as an
artifact of files, and three tools fill it into a tmpfs the same number
of times, interleaved (the order turning each round):

- warmcache: `warmcachectl fill oci://…` (SSL_CERT_FILE: the CA);
- oras: `oras pull -o DIR` (--ca-file), what an oras user types;
- skopeo: `skopeo copy docker://… dir:DIR` (--src-cert-dir), which writes
  the blobs by digest rather than as files, the usual "copy the artifact
  to a directory".

Each tool's defaults (connections, concurrency) are kept: what a user gets.
Per tool the median run: wall seconds, GB/s, CPU seconds per GB (user +
system of the tool; the registry's own is not counted) and peak RSS, with
the ratio to the faster of oras and skopeo. warmcache's copy must hash the
same as the pushed tree, file by file.

Rows ({"bench": "fill-oci", …}) go into bench/results/latest.json.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from fill_bench import GB, make_datasets, save, sha_tree, timed  # noqa: E402
from registry import ORAS, Registry  # noqa: E402


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="M shrunk 16x, one run: a smoke test")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    ap.add_argument("--baseline", help="another build's directory: its warmcachectl interleaved with this one's "
                                       "(printed as warmcache-baseline, not saved)")
    a = ap.parse_args()
    build = (ROOT / a.build) if not Path(a.build).is_absolute() else Path(a.build)
    runs = 1 if a.quick else a.runs
    disk = Path(tempfile.mkdtemp(prefix="wc-ocibench.", dir="/var/tmp"))
    work = Path(tempfile.mkdtemp(prefix="wc-ocibench."))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10g", "wc-ocibench", str(work)], check=True)
    reg = None
    try:
        reg = Registry(disk)
        src = work / "src"
        make_datasets(src, ["M"], a.quick)
        tree = src / "M"
        files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
        truth = sha_tree(tree)
        total = sum((tree / f).stat().st_size for f in files)
        ref = f"{reg.host}/bench/m:v1"
        print(f"oci M: {len(files)} files, {total / GB:.2f} GB; pushing to {reg.host} with oras ...", flush=True)
        subprocess.run([ORAS, "push", "--ca-file", str(reg.ca), ref, *files], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
        shutil.rmtree(src)  # the registry has it (on disk, and in the page cache)
        certs = work / "certs"
        certs.mkdir()
        shutil.copy(reg.ca, certs / "ca.crt")
        env = dict(os.environ, SSL_CERT_FILE=str(reg.ca))
        out = work / "out"
        tools = {
            "warmcache": [str(build / "warmcachectl"), "fill", f"oci://{ref}", str(out)],
            "oras": [ORAS, "pull", "--ca-file", str(reg.ca), "-o", str(out), ref],
            "skopeo": ["skopeo", "copy", "--src-cert-dir", str(certs), f"docker://{ref}", f"dir:{out}"],
        }
        if a.baseline:
            tools["warmcache-baseline"] = [str(Path(a.baseline).resolve() / "warmcachectl"), "fill", f"oci://{ref}",
                                           str(out)]
        names = list(tools)
        times = {t: [] for t in names}
        for rep in range(runs):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for t in order:
                shutil.rmtree(out, ignore_errors=True)
                subprocess.run(["sync", "-f", str(work)], check=True)
                wall, cpu, rss = timed(tools[t], env, None)
                if t.startswith("warmcache") and sha_tree(out) != truth:
                    raise RuntimeError("warmcache's copy of the oci artifact differs from the pushed tree")
                times[t].append((wall, cpu, rss))
                print(f"  M oci   {t:10s} run {rep + 1}: {wall:6.2f} s  {total / GB / wall:5.2f} GB/s  "
                      f"cpu {cpu:6.2f} s  rss {rss:6.1f} MiB", flush=True)
        rows = []
        for t in names:
            wall = statistics.median(x[0] for x in times[t])
            cpu = statistics.median(x[1] for x in times[t])
            rows.append({"bench": "fill-oci", "dataset": "M", "tool": t, "transport": "https", "target": "tmpfs",
                         "seconds": round(wall, 3), "gb_per_s": round(total / GB / wall, 3),
                         "cpu_s_per_gb": round(cpu / (total / GB), 3),
                         "peak_rss_mib": round(max(x[2] for x in times[t]), 1), "runs": runs,
                         **({"quick": True} if a.quick else {})})
        best = min((r for r in rows if not r["tool"].startswith("warmcache")), key=lambda r: r["seconds"])
        for r in rows:
            r["vs_fastest_other"] = round(best["seconds"] / r["seconds"], 3)
            r["cpu_vs_fastest_other"] = round(r["cpu_s_per_gb"] / best["cpu_s_per_gb"], 3)
        print(f"\n{'tool':10s} {'seconds':>8s} {'GB/s':>6s} {'CPU s/GB':>9s} {'RSS MiB':>8s} "
              f"{'x ' + best['tool']:>10s} {'CPU x':>7s}")
        for r in rows:
            print(f"{r['tool']:10s} {r['seconds']:8.2f} {r['gb_per_s']:6.2f} {r['cpu_s_per_gb']:9.2f} "
                  f"{r['peak_rss_mib']:8.1f} {r['vs_fastest_other']:10.2f} {r['cpu_vs_fastest_other']:7.2f}")
        save(a.out, [r for r in rows if r["tool"] != "warmcache-baseline"])
    finally:
        if reg:
            reg.stop()
        subprocess.run(["umount", "-l", str(work)])
        os.rmdir(work)
        shutil.rmtree(disk, ignore_errors=True)


if __name__ == "__main__":
    main()
