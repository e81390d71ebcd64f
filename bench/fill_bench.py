#!/usr/bin/env python3
"""make bench, the S3 fill comparison.

One local S3 server (versitygw, posix backend on a tmpfs), over HTTPS with a
certificate from a CA the bench makes, every tool told to trust that CA the
way its docs say (AWS_CA_BUNDLE; rclone --ca-cert), as every request on EKS
is HTTPS (--http: plain HTTP, the old default); four data sets on it, and
warmcache and s5cmd fill each of them the same number of times, interleaved
(the order turning each round), into two targets: a tmpfs, and XFS formatted
the way the node plugin formats its store (mkfs.xfs -L warmcache, mounted
noatime) on a loop device over a file on this machine's disk, or on a spare
block device (--xfs-device DEV: its contents are lost). Tools that do not
fsync get a `sync -f` inside their timing on XFS; the previous run's copy is
removed and that flushed outside anyone's time. Per
tool, data set and target the median run is reported: wall seconds, GB/s, CPU
seconds per GB (user + system, children included) and peak RSS, with the ratio
to s5cmd and the fraction of the server's own ceiling (bench_s3_ceiling: many
ranged GETs into /dev/null).

rclone runs on the tmpfs only and not on S (2 minutes there), the AWS CLI
once on L and M there (5 to 20 times slower than the rest over HTTPS): with
them everywhere make bench takes an hour.

Also measured here: a warmcache fill killed with SIGKILL at about half of L
(into XFS when it is a target) and run again (bytes fetched twice), and
warmcache through a proxy that breaks 10% of requests (503 SlowDown, resets,
cut bodies): every file must still hash the same as the server's copy.

Writes rows into bench/results/latest.json (rows of other benches are kept),
a table on stdout and bench/results/fill.png.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from conftest import make_ca  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402

KEY, SECRET = "wc-bench-key", "wc-bench-secret-51d2"
GB = 1e9
# warmcache's requests in flight in every run here: the issue's memory figure
# and the kill -9 bound (connections x part size) are for 64; the product's
# default (148) is sized for 100 Gb/s to S3
CONNS = 64


def part_size(size):
    """warmcache's default bytes per request for a file (fill_part_size in
    driver/cache/fill.c): 8 MiB, doubled until at most 64 parts, up to 64 MiB."""
    ps = 8 << 20
    while ps < 64 << 20 and size > ps * 64:
        ps *= 2
    return ps


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_datasets(src, names, quick):
    """L: 4 x 1 GiB; S: 20,000 x 64 KiB; M: 2 x 2 GiB + 50 small files (a model);
    D: 64 shards of 32 to 95 MiB (a data set's shards, 4 GiB)."""
    scale = 16 if quick else 1

    def write(path, size, seed):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for off in range(0, size, 8 << 20):
                f.write(os.urandom(min(8 << 20, size - off)))

    for name in names:
        d = src / name
        if name == "L":
            for i in range(4):
                write(d / f"part-{i}.bin", (1 << 30) // scale, i)
        elif name == "S":
            for i in range(20000 // scale):
                write(d / f"shard-{i // 1000:02d}" / f"{i:05d}.bin", 64 << 10, i)
        elif name == "M":
            for i in range(2):
                write(d / f"model-0000{i + 1}-of-00002.safetensors", (2 << 30) // scale, i)
            for i in range(50):
                write(d / "tokenizer" / f"extra-{i:02d}.json", 4096 + 977 * i, i)
        elif name == "D":
            for i in range(64):
                write(d / f"train-{i:05d}.tar", ((32 + i) << 20) // scale, i)


def data_bytes(d):
    """Bytes written into the regular files under d so far: their data
    regions (SEEK_DATA), not their size or blocks, which a fill reserves up
    front on XFS (fallocate's unwritten extents read as holes). A file the
    fill renames or removes during the walk is skipped."""
    total = 0
    for root, _, files in os.walk(d):
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                off = 0
                while stat.S_ISREG(st.st_mode) and off < st.st_size:
                    off = os.lseek(fd, off, os.SEEK_DATA)
                    hole = os.lseek(fd, off, os.SEEK_HOLE)
                    total += hole - off
                    off = hole
            except OSError:
                pass  # ENXIO: no data past off
            finally:
                os.close(fd)
    return total


def run_group(cmd, env, **kw):
    """subprocess.run in a process group of its own, all of it killed if
    this script is interrupted (SIGTERM, an error): no tool left writing."""
    p = subprocess.Popen(cmd, env=env, start_new_session=True, **kw)
    try:
        out, err = p.communicate()
    except BaseException:
        kill_group(p)
        raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def kill_group(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def umount(mnt):
    for _ in range(20):
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode == 0:
            return
        time.sleep(0.25)
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


XFS_IMG = Path("/var/tmp/wc-bench-xfs.img")


def xfs_target(mnt, device, cleanups):
    """Mounts at mnt a file system formatted as the node plugin formats its
    store (driver/storage/disks.c: mkfs.xfs -L warmcache, mounted
    noatime,prjquota, or noatime where the kernel has no XFS quota): on
    device when given, else on a loop device over a sparse file on this
    machine's disk, with direct I/O to that file (one copy in the page cache,
    not two). Each step's undo goes on cleanups as soon as it is done."""
    while subprocess.run(["mountpoint", "-q", str(mnt)]).returncode == 0:
        umount(mnt)  # an interrupted earlier run's
    if device is None:
        for dev in subprocess.run(["losetup", "-j", str(XFS_IMG)], capture_output=True,
                                  text=True).stdout.splitlines():
            subprocess.run(["losetup", "-d", dev.split(":")[0]])
        XFS_IMG.unlink(missing_ok=True)
        cleanups.append(lambda: XFS_IMG.unlink(missing_ok=True))
        with open(XFS_IMG, "wb") as f:
            f.truncate(32 << 30)
        device = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(XFS_IMG)], check=True,
                                capture_output=True, text=True).stdout.strip()
        cleanups.append(lambda: subprocess.run(["losetup", "-d", device]))
        dio = Path(f"/sys/block/{Path(device).name}/loop/dio")
        if dio.exists() and dio.read_text().strip() != "1":
            print(f"note: {device} does buffered I/O to {XFS_IMG} (direct I/O refused)", flush=True)
    subprocess.run(["mkfs.xfs", "-f", "-q", "-L", "warmcache", device], check=True)
    mnt.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-o", "noatime,prjquota", device, str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["mount", "-o", "noatime", device, str(mnt)], check=True)
    cleanups.append(lambda: umount(mnt))


def runs_on(tool, dataset, target, rep):
    """Which runs make bench makes (see the head of this file)."""
    if tool == "rclone":
        return target == "tmpfs" and dataset != "S"
    if tool == "awscli":
        return target == "tmpfs" and dataset in ("L", "M") and rep == 0
    return True


def tree_stats(d):
    n = b = 0
    for p in Path(d).rglob("*"):
        if p.is_file():
            n += 1
            b += p.stat().st_size
    return n, b


def sha_tree(d):
    out = {}
    for p in sorted(Path(d).rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            out[str(p.relative_to(d))] = h.hexdigest()
    return out


def timed(cmd, env, sync_dir):
    """Runs cmd under GNU time: (wall, cpu, peak RSS MiB); with sync_dir, a
    syncfs of its file system (sync -f) inside the time, for a tool that
    does not make what it wrote durable itself."""
    tf = "/tmp/wc-bench-time.txt"
    full = ["/usr/bin/time", "-o", tf, "-f", "%e %U %S %M"] + cmd
    t0 = time.monotonic()
    r = run_group(full, env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if sync_dir:
        subprocess.run(["sync", "-f", str(sync_dir)], check=True)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
    e, u, s, m = open(tf).read().split()[-4:]
    return wall, float(u) + float(s), int(m) / 1024


def main():
    # a SIGTERM (make's, a timeout's) unwinds through the finally below: no mounts or servers left
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--targets", default="tmpfs,xfs")
    ap.add_argument("--xfs-device", help="a spare block device for the xfs target (formatted: its contents are lost)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--datasets", default="L,S,M,D")
    ap.add_argument("--tools", default="warmcache,s5cmd,rclone,awscli")
    ap.add_argument("--baseline", help="a build directory of another warmcache, run as the tool warmcache-baseline "
                    "(what a change moved, interleaved with it)")
    ap.add_argument("--profile", action="store_true",
                    help="also run warmcache and s5cmd once per data set and target under perf record -g: the top "
                    "costs in bench/results/profile-<data set>-<target>.txt")
    ap.add_argument("--trace", action="store_true",
                    help="also run warmcache and s5cmd once per data set and target with their connections to the "
                    "server sampled (ss) every 50 ms: bench/results/trace-<data set>-<target>.json and .png")
    ap.add_argument("--quick", action="store_true", help="data sets 16x smaller (a smoke run)")
    ap.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    ap.add_argument("--plot-only", action="store_true", help="redraw the plot from --out and stop")
    a = ap.parse_args()
    if a.plot_only:
        plot(json.load(open(a.out)), Path(a.out).parent / "fill.png")
        return
    build = (ROOT / a.build).resolve()
    tools_bin = ROOT / ".tools" / "bin"
    names = a.datasets.split(",")
    tools = a.tools.split(",") + (["warmcache-baseline"] if a.baseline else [])
    targets = a.targets.split(",")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)

    work = Path("/tmp/wc-fillbench")
    import fcntl
    lock = open("/tmp/wc-fillbench.lock", "w")
    try:  # a second run would unmount the first one's file systems under its fills
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit("another fill_bench.py is running (it holds /tmp/wc-fillbench.lock)")
    subprocess.run(["umount", "-l", str(work)], stderr=subprocess.DEVNULL)
    work.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20g", "tmpfs", str(work)], check=True)
    procs = []
    cleanups = []  # undone last first, whatever happens
    try:
        (work / "gw").mkdir()
        transport = "http" if a.http else "https"
        tls = [] if a.http else list(map(str, make_ca(work / "tls")))  # ca, cert, key

        def gateway(tls_args):
            port = free_port()
            # --keep-alive: as S3 does; without it every answer says Connection: close and each request
            # pays a TCP and TLS handshake (docs/performance.md)
            gw = subprocess.Popen([str(tools_bin / "versitygw"), "--port", f"127.0.0.1:{port}", "--access", KEY,
                                   "--secret", SECRET, "--keep-alive", *tls_args, "posix", str(work / "gw")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(gw)
            return port

        port = gateway(["--cert", tls[1], "--key", tls[2]] if tls else [])
        endpoint = f"{transport}://127.0.0.1:{port}"
        # the fault proxy speaks plain HTTP: a second gateway on the same objects for it
        plain = endpoint if a.http else f"http://127.0.0.1:{gateway([])}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1",
                   AWS_CONFIG_FILE=str(work / "aws.cfg"))
        env.pop("AWS_CA_BUNDLE", None)
        if tls:
            env["AWS_CA_BUNDLE"] = tls[0]  # warmcache, s5cmd, the AWS CLI, the ceiling
        # rclone 1.60 cannot load AWS_CA_BUNDLE with its own transport: its flag instead
        rclone_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
        (work / "aws.cfg").write_text("[default]\nregion = us-east-1\ns3 =\n    max_concurrent_requests = 64\n"
                                      "    multipart_chunksize = 16MB\n    multipart_threshold = 16MB\n")
        for _ in range(100):
            if subprocess.run(["curl", "-s", "-o", "/dev/null", *(["--cacert", tls[0]] if tls else []),
                               endpoint]).returncode == 0 and \
                    subprocess.run(["curl", "-s", "-o", "/dev/null", plain]).returncode == 0:
                break
            time.sleep(0.05)
        s5 = str(tools_bin / "s5cmd")
        subprocess.run([s5, "--endpoint-url", endpoint, "mb", "s3://bench"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        print("generating and uploading the data sets ...", flush=True)
        for n in names:  # one at a time: the sources and the server's copies of all four do not fit in 20 GiB
            make_datasets(work / "src", [n], a.quick)
            subprocess.run([s5, "--endpoint-url", endpoint, "cp", str(work / "src" / n) + "/", f"s3://bench/{n}/"],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            shutil.rmtree(work / "src" / n)
        served = {n: work / "gw" / "bench" / n for n in names}  # the posix backend: the objects as files
        truth = {n: tree_stats(served[n]) for n in names}

        outs = {"tmpfs": work / "out"}
        if "xfs" in targets:
            outs["xfs"] = Path("/tmp/wc-fillbench-xfs")
            xfs_target(outs["xfs"], a.xfs_device, cleanups)
        outs["tmpfs"].mkdir(parents=True, exist_ok=True)

        def command(tool, n, dest):
            src = f"s3://bench/{n}/"
            if tool in ("warmcache", "warmcache-baseline"):
                ctl = (ROOT / a.baseline).resolve() / "warmcachectl" if tool != "warmcache" else build / "warmcachectl"
                return [str(ctl), "fill", src, str(dest), "-p", f"endpoint={endpoint}",
                        "--connections", str(CONNS)]
            if tool == "s5cmd":  # README: more workers for many files, more parts in flight for big ones
                return [s5, "--endpoint-url", endpoint, "--numworkers", "256", "cp", "--concurrency", "16",
                        "--part-size", "16", src + "*", str(dest) + "/"]
            if tool == "rclone":  # docs: --transfers and multi-thread streams for throughput
                return ["rclone", "copy", f":s3:bench/{n}", str(dest), "--s3-provider", "Other", "--s3-endpoint",
                        endpoint, "--s3-env-auth", "--transfers", "64", "--checkers", "64",
                        "--multi-thread-streams", "16", "--multi-thread-cutoff", "64M", "--no-check-dest",
                        "--s3-no-check-bucket", "-q", *(["--ca-cert", tls[0]] if tls else [])]
            if tool == "awscli":  # max_concurrent_requests and chunk size in aws.cfg
                return ["aws", "--endpoint-url", endpoint, "s3", "cp", "--recursive", "--only-show-errors", src,
                        str(dest)]
            raise ValueError(tool)

        def clear(dest, target):
            """The last run's copy gone, and on XFS its freeing flushed
            outside anyone's time (else the next tool's sync pays it)."""
            shutil.rmtree(dest, ignore_errors=True)
            if target != "tmpfs":
                subprocess.run(["sync", "-f", str(outs[target])], check=True)

        results = {}
        ceiling = {}
        for n in names:
            runs = []
            for _ in range(a.runs):
                r = subprocess.run([str(build / "bench_s3_ceiling"), f"s3://bench/{n}/", endpoint, "64"], env=env,
                                   capture_output=True, text=True, check=True)
                runs.append(json.loads(r.stdout)["seconds"])
            ceiling[n] = statistics.median(runs)
            print(f"{n}: {truth[n][0]} files, {truth[n][1] / GB:.2f} GB; server ceiling "
                  f"{truth[n][1] / GB / ceiling[n]:.2f} GB/s", flush=True)
            for target in targets:
                for rep in range(a.runs):
                    k = rep % len(tools)  # the order turns each round: no tool always runs after the same one
                    for tool in tools[k:] + tools[:k]:
                        if not runs_on(tool, n, target, rep):
                            continue
                        dest = outs[target] / f"{tool}-{n}"
                        clear(dest, target)
                        # warmcache makes what it writes durable (syncfs per group of files): no extra sync
                        sync = dest if target != "tmpfs" and not tool.startswith("warmcache") else None
                        wall, cpu, rss = timed(command(tool, n, dest), rclone_env if tool == "rclone" else env, sync)
                        got = tree_stats(dest)
                        if got != truth[n]:
                            raise RuntimeError(f"{tool} on {n}: {got} files/bytes, expected {truth[n]}")
                        if tool == "warmcache" and rep == 0 and sha_tree(dest) != sha_tree(served[n]):
                            raise RuntimeError(f"warmcache on {n} ({target}): a file differs from the server's")
                        results.setdefault((n, target, tool), []).append((wall, cpu, rss))
                        print(f"  {n} {target:5s} {tool:10s} run {rep + 1}: {wall:6.2f} s  "
                              f"{truth[n][1] / GB / wall:5.2f} GB/s  cpu {cpu:6.2f} s  rss {rss:6.1f} MiB", flush=True)
                        clear(dest, target)
                if a.profile:
                    report = Path(a.out).parent / f"profile-{n}-{target}.txt"
                    with open(report, "w") as f:
                        for tool in ("warmcache", "s5cmd"):
                            dest = outs[target] / f"{tool}-{n}"
                            f.write(profile(command(tool, n, dest), env, tool, f"{n} over {transport} into {target}"))
                            clear(dest, target)
                    print(f"  profile: {report}", flush=True)
                if a.trace:
                    traces = {}
                    for tool in ("warmcache", "s5cmd"):
                        dest = outs[target] / f"{tool}-{n}"
                        traces[tool] = trace(command(tool, n, dest), env, port)
                        clear(dest, target)
                    stem = Path(a.out).parent / f"trace-{n}-{target}"
                    save_trace(traces, stem, f"{n} over {transport} into {target}")
                    print(f"  trace: {stem}.json: " + "; ".join(
                        f"{t}: {v['summary']}" for t, v in traces.items()), flush=True)

        rows = []
        for n in names:
            gb = truth[n][1] / GB
            rows.append({"bench": "fill", "dataset": n, "tool": "server-ceiling", "seconds": round(ceiling[n], 3),
                         "gb_per_s": round(gb / ceiling[n], 3), "cpu_s_per_gb": None, "peak_rss_mib": None,
                         "target": None})
            for target in targets:
                for tool in tools:
                    rs = sorted(results.get((n, target, tool), []))
                    if not rs:
                        continue
                    wall, cpu, _ = rs[len(rs) // 2]
                    rows.append({"bench": "fill", "dataset": n, "tool": tool, "seconds": round(wall, 3),
                                 "gb_per_s": round(gb / wall, 3), "cpu_s_per_gb": round(cpu / gb, 3),
                                 "peak_rss_mib": round(max(r[2] for r in rs), 1), "runs": len(rs), "target": target})
        base = {(r["dataset"], r["target"]): r for r in rows if r["tool"] == "s5cmd"}
        ceil = {r["dataset"]: r for r in rows if r["tool"] == "server-ceiling"}
        for r in rows:
            b = base.get((r["dataset"], r["target"]))
            if r["tool"] != "server-ceiling" and b:
                r["throughput_vs_s5cmd"] = round(r["gb_per_s"] / b["gb_per_s"], 2)
                r["cpu_vs_s5cmd"] = round(r["cpu_s_per_gb"] / b["cpu_s_per_gb"], 2)
            if r["tool"] != "server-ceiling":
                r["fraction_of_ceiling"] = round(r["gb_per_s"] / ceil[r["dataset"]]["gb_per_s"], 2)
            r["transport"] = transport
            if a.quick:
                r["quick"] = True

        # kill -9 at about half of L, then the same command again
        if "L" in names and "warmcache" in tools:
            t = "xfs" if "xfs" in outs else "tmpfs"
            rows.append(dict(resume_row(build, endpoint, env, outs[t] / "resume-L", truth["L"][1], served["L"]),
                             transport=transport, target=t))
        # 10% of requests broken by a proxy: still byte-identical
        for n in names if "warmcache" in tools else []:
            rows.append(dict(fault_row(build, plain, env, outs["tmpfs"] / f"faults-{n}", n, truth[n][1], served[n]),
                             target="tmpfs", transport="http"))  # the proxy speaks plain HTTP

        print_table(rows)
        save(a.out, rows)
        plot(json.load(open(a.out)), Path(a.out).parent / "fill.png")  # this run's rows and the kept ones
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the clean-up short
        for undo in reversed(cleanups):
            undo()
        for p in procs:
            p.terminate()
            p.wait()
        subprocess.run(["umount", "-l", str(work)])


def profile(cmd, env, tool, what):
    """cmd under perf record with DWARF call graphs (cpu-clock: this VM has
    no PMU; frame pointers do not unwind through Debian's libssl): the CPU
    by shared object, the top symbols by self time, and the callers of the
    top ones."""
    data = "/tmp/wc-bench-perf.data"
    rec = ["perf", "record", "-q", "--call-graph", "dwarf,8192", "-F", "199", "-o", data]
    run_group(rec + ["--", *cmd], env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).check_returncode()
    out = [f"==== {tool}: {what}\n$ {' '.join(rec)} -- {' '.join(cmd)}\n"]
    for args, limit in ((["--sort", "dso", "-g", "none"], 1), (["--sort", "dso,symbol", "-g", "none"], 1),
                        (["--sort", "symbol", "-g", "caller,2,callee,function,percent"], 4)):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--percent-limit", str(limit),
                            *args], capture_output=True, text=True)
        lines = [ln.rstrip() for ln in r.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
        out.append("\n".join(lines[:160]) + "\n\n")
    os.unlink(data)
    return "".join(out)


def active_opens():
    """TCP connections this machine has opened so far (/proc/net/snmp)."""
    rows = [ln.split() for ln in open("/proc/net/snmp") if ln.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


def trace(cmd, env, port):
    """cmd run while its TCP connections to the server are sampled every
    50 ms (ss -ti: bytes received per connection): per sample, the
    connections open, those that received bytes since the last one
    (requests in flight) and the bytes; and the connections opened in all
    (connection reuse), counted by the kernel, as a connection opened and
    closed between two samples is not seen by them."""
    opens = active_opens()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0, last, samples = time.monotonic(), {}, []
    try:
        while p.poll() is None:
            out = subprocess.run(["ss", "-tineH", "state", "established", "dport", f"= :{port}"], capture_output=True,
                                 text=True).stdout
            now, got, sock = {}, 0, None
            for ln in out.splitlines():
                if not ln[:1].isspace():  # a socket's line; its details follow on an indented one
                    f = ln.split()
                    ino = next((x for x in f if x.startswith("ino:")), None)
                    sock = (f[2], ino) if len(f) >= 4 else None
                    if sock:
                        now[sock] = 0  # ss leaves bytes_received out while it is 0
                elif sock and "bytes_received:" in ln:
                    now[sock] = int(ln.split("bytes_received:")[1].split()[0])
            for k, b in now.items():
                prev = last.get(k, 0)
                got += b - prev if b >= prev else b
            active = sum(1 for k, b in now.items() if b > last.get(k, 0))
            samples.append((round(time.monotonic() - t0, 3), len(now), active, got))
            last = now
            time.sleep(0.05)
    except BaseException:
        kill_group(p)
        raise
    if p.wait() != 0:
        raise RuntimeError(f"{cmd[0]} failed under the trace")
    wall = time.monotonic() - t0
    act = [s[2] for s in samples]
    peak = max(act or [0])
    summary = {"seconds": round(wall, 2), "connections_opened": active_opens() - opens,
               "median_active": statistics.median(act) if act else 0, "peak_active": peak,
               "share_of_time_under_half_of_peak": round(sum(1 for x in act if x < peak / 2) / max(1, len(act)), 2)}
    return {"summary": summary, "samples": samples}


def save_trace(traces, stem, what):
    with open(f"{stem}.json", "w") as f:
        json.dump({"what": what, "columns": ["seconds", "connections", "active", "bytes"], "tools": traces}, f)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
    for i, (tool, tr) in enumerate(traces.items()):
        s = tr["samples"]
        xs = [x[0] for x in s]
        ax[0].plot(xs, [x[2] for x in s], label=f"{tool} receiving", color=f"C{i}")
        ax[0].plot(xs, [x[1] for x in s], label=f"{tool} open", color=f"C{i}", linestyle=":")
        dt = [max(1e-3, b[0] - a[0]) for a, b in zip(s, s[1:])]
        ax[1].plot(xs[1:], [x[3] / d / 1e6 for x, d in zip(s[1:], dt)], label=tool, color=f"C{i}")
    ax[0].set_ylabel("connections")
    ax[1].set_ylabel("MB/s received")
    ax[1].set_xlabel("seconds")
    ax[0].legend(fontsize=7)
    fig.suptitle(f"connections to the server over time: {what}")
    fig.tight_layout()
    fig.savefig(f"{stem}.png", dpi=80)
    plt.close(fig)


def resume_row(build, endpoint, env, dest, total, served):
    shutil.rmtree(dest, ignore_errors=True)
    work = Path(str(dest) + ".warmcache-fill")
    shutil.rmtree(work, ignore_errors=True)
    cmd = [str(build / "warmcachectl"), "fill", "s3://bench/L/", str(dest), "-p", f"endpoint={endpoint}", "--json",
           "--connections", str(CONNS)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    written = 0
    try:
        while p.poll() is None:
            written = data_bytes(work)  # what the fill has written so far
            if written >= total // 2:
                break
            time.sleep(0.01)
    finally:
        kill_group(p)  # SIGKILL: the kill -9 measured here (or an interrupted bench's clean-up)
    r = run_group(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r.check_returncode()
    second = json.loads(r.stdout)
    ok = sha_tree(dest) == sha_tree(served)
    refetched = max(0, written - second["resumed_bytes"])
    row = {"bench": "fill-resume", "dataset": "L", "tool": "warmcache", "killed_at_bytes": written,
           "resumed_bytes": second["resumed_bytes"], "refetched_bytes": refetched,
           "bound_bytes": CONNS * part_size(total // 4), "byte_identical": ok, "second_run_seconds": second["seconds"]}
    shutil.rmtree(dest, ignore_errors=True)
    if not ok:
        raise RuntimeError("resumed fill of L differs from the server's copy")
    return row


def fault_row(build, endpoint, env, dest, n, total, served):
    shutil.rmtree(dest, ignore_errors=True)
    with FaultProxy(endpoint, rate=0.10, seed=7) as fp:
        cmd = [str(build / "warmcachectl"), "fill", f"s3://bench/{n}/", str(dest), "-p", f"endpoint={fp.endpoint}",
               "--json", "--connections", str(CONNS)]
        t0 = time.monotonic()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.monotonic() - t0
        faults = dict(fp.counts)
    if r.returncode != 0:
        raise RuntimeError(f"fill of {n} through the fault proxy failed: {r.stderr}")
    ok = sha_tree(dest) == sha_tree(served)
    shutil.rmtree(dest, ignore_errors=True)
    if not ok:
        raise RuntimeError(f"fill of {n} through the fault proxy differs from the server's copy")
    return {"bench": "fill-faults", "dataset": n, "tool": "warmcache", "fault_rate": 0.10, "faults": faults,
            "retries": json.loads(r.stdout)["retries"], "seconds": round(wall, 3), "byte_identical": ok}


def print_table(rows):
    print(f"\n{'data set':8s} {'target':6s} {'tool':15s} {'seconds':>8s} {'GB/s':>6s} {'CPU s/GB':>9s} {'RSS MiB':>8s} "
          f"{'vs s5cmd':>9s} {'CPU vs s5':>9s} {'of ceiling':>10s}")
    for r in rows:
        if r["bench"] != "fill":
            continue
        f = lambda k, fmt: (fmt % r[k]) if r.get(k) is not None else "-"  # noqa: E731
        print(f"{r['dataset']:8s} {r.get('target') or '-':6s} {r['tool']:15s} {f('seconds', '%.2f'):>8s} {f('gb_per_s', '%.2f'):>6s} "
              f"{f('cpu_s_per_gb', '%.2f'):>9s} {f('peak_rss_mib', '%.0f'):>8s} {f('throughput_vs_s5cmd', '%.2f'):>9s} "
              f"{f('cpu_vs_s5cmd', '%.2f'):>9s} {f('fraction_of_ceiling', '%.2f'):>10s}")
    for r in rows:
        if r["bench"] != "fill":
            print(json.dumps(r))


def save(path, rows):
    """A row replaces the old one of the same bench, transport, target, data
    set and tool; every other row stays (other benches, runs of another
    transport or target, data sets or tools not run now)."""
    def key(r):
        return r.get("bench"), r.get("transport", "http"), r.get("target"), r.get("dataset"), r.get("tool")
    new = {key(r) for r in rows}
    old = [r for r in json.load(open(path)) if key(r) not in new] if os.path.exists(path) else []
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(old + rows, f, indent=1)
        f.write("\n")


def plot(rows, png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return
    fill = [r for r in rows if r["bench"] == "fill"]
    sets = sorted({r["dataset"] for r in fill}, key="LSMD".index)
    tools = [t for t in ["server-ceiling", "warmcache", "warmcache-baseline", "s5cmd", "rclone", "awscli"] if any(r["tool"] == t for r in fill)]
    # one column per transport and target: the ceiling (no target) in each of its transport's
    combos = sorted({(r["transport"], r["target"]) for r in fill if r.get("target")},
                    key=lambda c: (c[0] != "https", c[1] != "tmpfs"))
    if not combos:
        return
    fig, ax = plt.subplots(2, len(combos), figsize=(5.5 * len(combos), 7), squeeze=False)
    w = 0.8 / len(tools)
    for col, (tr, tg) in enumerate(combos):
        for i, t in enumerate(tools):
            pick = [r for r in fill if r["tool"] == t and r["transport"] == tr and (r.get("target") in (tg, None))]
            xs = [k + i * w for k in range(len(sets))]
            g = [next((r["gb_per_s"] for r in pick if r["dataset"] == s), 0) for s in sets]
            c = [next((r["cpu_s_per_gb"] or 0 for r in pick if r["dataset"] == s), 0) for s in sets]
            color = f"C{i}"  # one colour per tool in every panel
            ax[0][col].bar(xs, g, w, label=t, color=color)
            if t != "server-ceiling":
                ax[1][col].bar(xs, c, w, label=t, color=color)
        for row, title in enumerate(["GB/s (higher is better)", "CPU s per GB, log (lower is better)"]):
            a_ = ax[row][col]
            a_.set_xticks([k + 0.4 - w / 2 for k in range(len(sets))])
            a_.set_xticklabels(sets)
            a_.set_title(f"{tr} into {tg}: {title}", fontsize=9)
        ax[1][col].set_yscale("log")
    ax[0][0].legend(fontsize=8)
    fig.suptitle("S3 fill on one 2-core machine, server on loopback")
    fig.tight_layout()
    fig.savefig(png, dpi=90)


if __name__ == "__main__":
    main()
