"""kill -9 of the node plugin at random points while kubelet-like calls run:
fills, stages, publishes (read-only and writable), unpublishes, unstages.
After each kill the plugin restarts and must: show no partial file in any
copy, stage and publish every volume again with byte-identical content, and
leave no mount behind once everything is unpublished and unstaged.

make stress runs STRESS_RUNS (default 100) seeded runs; each is a test."""
import os
import random
import subprocess
import threading
import time

import pytest

from conftest import CtlError, Driver, mounts_under, sha256_tree

RUNS = int(os.environ.get("STRESS_RUNS", "100"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill9-src")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "kill9", str(root)], check=True)
    big = root / "big"
    big.mkdir()
    for i in range(24):
        (big / f"shard-{i:02d}.bin").write_bytes(bytes([i]) * (16 << 20))
    small = root / "small" / "tok"
    small.mkdir(parents=True)
    (small / "config.json").write_text('{"a": 1}')
    (root / "small" / "weights.bin").write_bytes(os.urandom(1 << 20))
    yield {"big": big, "small": root / "small", "root": root,
           "sums": {n: sha256_tree(root / n) for n in ("big", "small")}}
    subprocess.run(["umount", str(root)], check=False)


def calls(d, vols, work, stop):
    """A kubelet's worth of calls, in an order that covers fills and mounts."""
    seq = [("stage", "big", "s-big"), ("publish", "big", "s-big", "t1"),
           ("publish", "big", "s-big", "t2", "--access", "ReadWriteOnce"), ("stage", "small", "s-small"),
           ("publish", "small", "s-small", "t3"), ("unpublish", "big", "t1"), ("unpublish", "small", "t3"),
           ("unstage", "small", "s-small")]
    for op, v, *rest in seq:
        if stop.is_set():
            return
        args = [op, "-f", vols[v]] + [work / r if not r.startswith("-") and r != "ReadWriteOnce" else r for r in rest]
        try:
            d.ctl(*args, timeout=5)
        except Exception:
            return  # the plugin is being killed under us


def check_copies(store, sums):
    """Every visible copy is whole: only complete files, all of them."""
    for c in (store / "content").iterdir():
        if c.name.endswith(".partial"):
            continue
        tree = sha256_tree(c)
        assert tree in sums.values(), f"copy {c.name} is not a whole copy of a source"


def stage(d, vol, staging):
    for _ in range(600):
        try:
            return d.ctl("stage", "-f", vol, staging)
        except CtlError as e:
            assert e.code == "ABORTED", e  # a fill still running: kubelet calls again
            time.sleep(0.05)
    pytest.fail("stage never finished")


def converge(d, vols, work, sums):
    """What kubelet does after the restart: retry the same calls at the same
    paths until they succeed, then tear everything down."""
    plan = {"big": ("s-big", ["t1", "t2"]), "small": ("s-small", ["t3"])}
    for name, (staging, targets) in plan.items():
        stage(d, vols[name], work / staging)
        for t in targets:
            rw = ["--access", "ReadWriteOnce"] if t == "t2" else []
            d.ctl("publish", "-f", vols[name], work / staging, work / t, *rw)
            assert sha256_tree(work / t) == sums[name], f"{name} at {t} differs from its source"
    for name, (staging, targets) in plan.items():
        for t in targets:
            d.ctl("unpublish", "-f", vols[name], work / t)
        d.ctl("unstage", "-f", vols[name], work / staging)


@pytest.mark.parametrize("run", range(RUNS))
def test_kill9_at_a_random_point(work, sources, run):
    rnd = random.Random(run)
    d = Driver(work, allow=[f"file://{sources['root']}/"]).start("--fill-wait=30")
    vols = {n: d.create(n, f"file://{sources[n]}") for n in ("big", "small")}
    stop = threading.Event()
    t = threading.Thread(target=calls, args=(d, vols, work, stop))
    t.start()
    time.sleep(rnd.uniform(0.0, 1.2))
    d.proc.kill()
    d.proc.wait()
    d.proc = None
    stop.set()
    t.join()
    check_copies(d.store, sources["sums"])
    os.unlink(d.sock)
    d2 = Driver(work, allow=[f"file://{sources['root']}/"]).start("--fill-wait=30")
    converge(d2, vols, work, sources["sums"])
    check_copies(d2.store, sources["sums"])
    assert d2.stop() == 0
    leaked = [m for m in mounts_under(work) if m != str(work)]
    assert leaked == [], f"mounts leaked: {leaked}"


# Named kill points (WARMCACHE_CRASH_AT, base/crash.h): the places whose order
# the crash safety argument rests on, hit every time instead of by chance.
POINTS = {
    # a read-only bind made and read-only, not yet attached at the target
    "bind-before-attach": [("stage", "small", "s-small")],
    # an evicted copy out of content/, not yet deleted
    "store-taken-out": [("stage", "small", "s-small"), ("unstage", "small", "s-small"),
                        ("stage", "big", "s-big")],
    # a writable layer's loop device attached, its file system not yet mounted
    "bound-loop-attached": [("stage", "small", "s-small"),
                            ("publish", "small", "s-small", "t3", "--access", "ReadWriteOnce")],
}


@pytest.mark.parametrize("point", sorted(POINTS))
def test_kill9_at_a_named_point(work, sources, point):
    d = Driver(work, allow=[f"file://{sources['root']}/"])
    d.start("--fill-wait=30", "--evict-high=1", "--evict-low=1", env={"WARMCACHE_CRASH_AT": point})
    vols = {n: d.create(n, f"file://{sources[n]}") for n in ("big", "small")}
    died = False
    for op, v, *rest in POINTS[point]:
        args = [op, "-f", vols[v]] + [work / r if not r.startswith("-") and r != "ReadWriteOnce" else r for r in rest]
        try:
            d.ctl(*args, timeout=60)
        except Exception:  # noqa: BLE001  (the plugin killed itself under the call)
            died = True
            break
    assert died and d.proc.wait(timeout=10) == -9, f"the plugin never reached {point}"
    d.proc = None
    check_copies(d.store, sources["sums"])
    os.unlink(d.sock)
    d2 = Driver(work, allow=[f"file://{sources['root']}/"]).start("--fill-wait=30")
    converge(d2, vols, work, sources["sums"])
    check_copies(d2.store, sources["sums"])
    assert d2.stop() == 0
    leaked = [m for m in mounts_under(work) if m != str(work)]
    assert leaked == [], f"mounts leaked: {leaked}"
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(work) not in loops, f"loop devices leaked: {loops}"
