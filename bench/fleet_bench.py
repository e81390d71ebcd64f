#!/usr/bin/env python3
"""make bench-fleet: N nodes filling the same model from one S3 prefix at once
(issue #17), on loopback.

Each node is a `warmcachectl fill` (the node plugin's fill engine, its own
store directory) behind a proxy of its own that plays the node's network
link (a bandwidth cap for all its connections together), and every proxy
shares one request-rate limit per prefix that answers SlowDown beyond it, as
S3 does beyond about 5,500 GET/s a prefix. Both are scaled down together so
that a few nodes reach the prefix's limit, as a few 100 Gb/s nodes reach
S3's: with 1 MiB parts and 16 MiB/s a node, one node sends 16 GET/s and the
prefix allows 40.

Scenarios: N = 1, 4, 8, 16 starting together, and 16 joining one at a time.
Mode "s3-only" is what warmcache does today (peers are not built yet, so
there is no "peers" row). Per scenario: seconds until every node is warm,
S3 bytes over the content's size, SlowDowns, failed fills; every copy is
checked byte-identical. Rows go into bench/results/latest.json (rows of other
benches are kept) and a table to stdout.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from conftest import S3Server  # noqa: E402  (the tests' versitygw: loopback, its own keys)
from faultproxy import FaultProxy, RequestLimit  # noqa: E402

MIB = 1 << 20


def sha_tree(d):
    out = {}
    for p in sorted(Path(d).rglob("*")):
        if p.is_file():
            out[str(p.relative_to(d))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_scenario(ctl, srv, work, n, stagger_s, node_bps, prefix_rps, truth, content_bytes):
    limit = RequestLimit(prefix_rps)
    proxies = [FaultProxy(srv.endpoint, rate=0.0, limit=limit, node_bytes_per_s=node_bps) for _ in range(n)]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=srv.key, AWS_SECRET_ACCESS_KEY=srv.secret, AWS_REGION="us-east-1")
    procs, starts, ends, results = [], [], [None] * n, [None] * n
    try:
        t0 = time.monotonic()
        for i in range(n):
            if stagger_s and i:
                time.sleep(stagger_s)
            dest = work / f"node-{i:02d}"
            cmd = [str(ctl), "fill", "s3://fleet/model/", str(dest), "-p", f"endpoint={proxies[i].endpoint}",
                   "--json", "--part-size", "1", "--connections", "16"]
            starts.append(time.monotonic())
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        while any(e is None for e in ends):
            for i, p in enumerate(procs):
                if ends[i] is None and p.poll() is not None:
                    ends[i] = time.monotonic()
                    out, err = p.communicate()
                    results[i] = (p.returncode, out, err)
            time.sleep(0.02)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for fp in proxies:
            fp.__exit__(None, None, None)
    failed = sum(1 for rc, _, _ in results if rc != 0)
    fetched = 0
    for rc, out, err in results:
        if rc == 0:
            fetched += json.loads(out)["fetched_bytes"]
        else:
            print(f"  a fill failed: {err.strip()[-300:]}", flush=True)
    identical = all(sha_tree(work / f"node-{i:02d}") == truth for i in range(n) if results[i][0] == 0)
    per_node = [ends[i] - starts[i] for i in range(n)]
    total = limit.allowed + limit.refused
    for i in range(n):
        subprocess.run(["rm", "-rf", str(work / f"node-{i:02d}")])
    return {
        "bench": "fleet", "nodes": n, "mode": "s3-only", "start": "staggered" if stagger_s else "together",
        "seconds_all_warm": round(max(ends) - t0, 2),
        "seconds_per_node_max": round(max(per_node), 2),
        "s3_bytes_over_content": round(fetched / content_bytes, 2),
        "slowdowns": limit.refused, "slowdown_share": round(limit.refused / total, 3) if total else 0,
        "failed_fills": failed, "byte_identical": identical, "peer_bytes": 0,
        "node_mib_per_s": node_bps / MIB, "prefix_get_per_s": prefix_rps,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--nodes", default="1,4,8,16")
    ap.add_argument("--objects", type=int, default=3, help="objects of 16 MiB in the model")
    ap.add_argument("--node-mib-per-s", type=float, default=16)
    ap.add_argument("--prefix-get-per-s", type=float, default=40)
    ap.add_argument("--stagger", type=float, default=1.0, help="seconds between nodes joining (last scenario)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    ap.add_argument("--label", default="", help="a name for the build in the rows (an older build compared)")
    a = ap.parse_args()
    build = (ROOT / a.build).resolve()
    ctl = build / "warmcachectl"
    work = Path("/tmp/wc-fleetbench")
    subprocess.run(["umount", "-l", str(work)], stderr=subprocess.DEVNULL)
    work.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4g", "tmpfs", str(work)], check=True)
    srv = None
    rows = []
    try:
        srv = S3Server(work)
        s3 = srv.s3
        s3.create_bucket(Bucket="fleet")
        for i in range(a.objects):
            s3.put_object(Bucket="fleet", Key=f"model/shard-{i:02d}.safetensors", Body=os.urandom(16 * MIB))
        s3.put_object(Bucket="fleet", Key="model/config.json", Body=b'{"hidden_size": 4096}\n')
        truth = sha_tree(work / "gw" / "fleet" / "model")
        content = sum(p.stat().st_size for p in (work / "gw" / "fleet" / "model").rglob("*") if p.is_file())
        node_bps = a.node_mib_per_s * MIB
        scenarios = [(int(n), 0.0) for n in a.nodes.split(",")] + [(max(int(n) for n in a.nodes.split(",")),
                                                                   a.stagger)]
        for n, stagger in scenarios:
            print(f"fleet: {n} nodes, {'joining every %.1f s' % stagger if stagger else 'together'} ...", flush=True)
            rows.append(run_scenario(ctl, srv, work, n, stagger, node_bps, a.prefix_get_per_s, truth, content))
            if a.label:
                rows[-1]["build"] = a.label
            print("  " + json.dumps(rows[-1]), flush=True)
    finally:
        if srv:
            srv.stop()
        subprocess.run(["umount", "-l", str(work)])
    one = next((r for r in rows if r["nodes"] == 1), None)
    print(f"\n{'nodes':>5} {'start':>9} {'all warm s':>10} {'x one node':>10} {'S3 bytes/content':>16} "
          f"{'SlowDowns':>9} {'share':>6} {'failed':>6}")
    for r in rows:
        ratio = r["seconds_all_warm"] / one["seconds_all_warm"] if one else 0
        print(f"{r['nodes']:>5} {r['start']:>9} {r['seconds_all_warm']:>10} {ratio:>10.2f} "
              f"{r['s3_bytes_over_content']:>16} {r['slowdowns']:>9} {r['slowdown_share']:>6} {r['failed_fills']:>6}")
    old = json.load(open(a.out)) if os.path.exists(a.out) else []
    old = [r for r in old if r.get("bench") != "fleet"]
    with open(a.out, "w") as f:
        json.dump(old + rows, f, indent=1)
        f.write("\n")
    print(f"bench-fleet: results in {a.out}")
    bad = [r for r in rows if r["failed_fills"] or not r["byte_identical"]]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
