"""The node lifecycle under faults an independent review found: no copy may
disappear under a running pod, no record may wedge a volume, and the node
must come back after a restart or a reboot. Each test is one finding of
issue #13; each failed on the main of 2026-12-01 (the note says how)."""
import json
import os
import shutil
import subprocess
import threading
import time

import grpc
import pytest

from conftest import CtlError, Driver, make_source, mounts_under, sha256_tree, wait_for


def files_under(p):
    return sorted(str(f.relative_to(p)) for f in p.rglob("*"))


def copy_dirs(d):
    return [c for c in (d.store / "content").iterdir() if not c.name.endswith(".partial")]


def refs(d):
    return {c["content_id"]: c.get("refs", 0) for c in d.ctl("status", "--json").get("copies", [])}


def remount_writable(path):
    subprocess.run(["mount", "-o", "remount,bind,rw", str(path)], check=True)


def is_read_only(path):
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


# ---- 1. a repeated NodeStage keeps what is published --------------------------------------------


def test_a_repeated_stage_that_finds_no_staging_mount_keeps_the_published_pods(driver, model, work):
    vol = driver.create("v", f"file://{model}", access="ReadWriteOnce")
    staging, target = work / "s", work / "pod" / "vol"
    driver.ctl("stage", "-f", vol, staging)
    driver.ctl("publish", "-f", vol, staging, target, "--access", "ReadWriteOnce")
    (target / "scratch.txt").write_text("the pod's work")
    subprocess.run(["umount", str(staging)], check=True)  # the staging mount is gone; the pod's is not
    driver.ctl("stage", "-f", vol, staging)               # kubelet stages again
    with pytest.raises(CtlError) as ei:
        driver.ctl("unstage", "-f", vol, staging)
    assert ei.value.code == "FAILED_PRECONDITION" and str(target) in ei.value.message
    assert list(refs(driver).values()) == [2], "the staging mount and the pod both use the copy"
    # a restart must not take the pod's writable layer away
    assert driver.stop() == 0
    d2 = Driver(work).start()
    assert (target / "scratch.txt").read_text() == "the pod's work"
    d2.ctl("unpublish", "-f", vol, target)
    d2.ctl("unstage", "-f", vol, staging)
    assert d2.stop() == 0


# ---- 2. a damaged copy is not set aside under the pods that use it -----------------------------


def test_a_damaged_copy_that_pods_use_is_not_taken_from_under_them(work, model):
    d = Driver(work).start()
    a, b = d.create("a", f"file://{model}"), d.create("b", f"file://{model}")
    d.ctl("stage", "-f", a, work / "sa")
    d.ctl("publish", "-f", a, work / "sa", work / "ta")
    seen = files_under(work / "ta")
    (copy,) = copy_dirs(d)
    os.truncate(copy / "config.json", 3)  # a disk fault under a running pod
    with pytest.raises(CtlError) as ei:   # another volume of the same content
        d.ctl("stage", "-f", b, work / "sb")
    assert "failed verification" in ei.value.message and "in use" in ei.value.message, ei.value.message
    assert d.stop() == 0
    d2 = Driver(work).start()             # the next start must not delete what the pod still reads
    assert files_under(work / "ta") == seen
    # once the pod is gone, staging again makes a fresh copy
    d2.ctl("unpublish", "-f", a, work / "ta")
    d2.ctl("unstage", "-f", a, work / "sa")
    d2.ctl("stage", "-f", b, work / "sb")
    assert sha256_tree(work / "sb") == sha256_tree(model)
    assert d2.stop() == 0


# ---- 4. an empty or vanished source is never an empty copy --------------------------------------


def test_an_empty_source_is_never_served_as_an_empty_copy(driver, model, work):
    follow = driver.create("f", f"file://{model}", "sourceChangePolicy=Follow")
    shutil.rmtree(model)
    model.mkdir()  # a shared file system not mounted yet: its mount point is an empty directory
    with pytest.raises(CtlError) as ei:
        driver.ctl("stage", "-f", follow, work / "s")
    assert "holds no files" in ei.value.message, ei.value.message
    assert mounts_under(work / "s") == []
    with pytest.raises(CtlError) as ei:
        driver.ctl("publish", "inline-1", "", work / "t", "--readonly", "-c", "csi.storage.k8s.io/ephemeral=true",
                   "-c", f"source=file://{model}")
    assert "holds no files" in ei.value.message, ei.value.message
    assert mounts_under(work / "t") == []


# ---- 5. failed mounts and reboots do not wedge a volume -----------------------------------------


def test_a_publish_that_fails_for_good_does_not_block_unstage(driver, model, work):
    vol = driver.create("v", f"file://{model}")
    driver.ctl("stage", "-f", vol, work / "s")
    (work / "target").write_text("a file, not a directory: the bind mount fails")
    with pytest.raises(CtlError):
        driver.ctl("publish", "-f", vol, work / "s", work / "target")
    driver.ctl("unstage", "-f", vol, work / "s")  # kubelet never unpublishes a publish that failed
    assert mounts_under(work / "s") == []


def test_after_a_reboot_records_follow_the_mounts_that_are_really_there(work, model):
    d = Driver(work).start()
    vol = d.create("v", f"file://{model}", access="ReadWriteOnce")
    d.ctl("stage", "-f", vol, work / "s")
    d.ctl("publish", "-f", vol, work / "s", work / "t1")
    d.ctl("publish", "-f", vol, work / "s", work / "t2", "--access", "ReadWriteOnce")
    assert d.stop() == 0
    for m in sorted(mounts_under(work / "t1") + mounts_under(work / "t2") + mounts_under(work / "s"),
                    key=len, reverse=True):
        subprocess.run(["umount", m], check=True)  # a reboot: no mount survives
    d2 = Driver(work).start()
    assert list(refs(d2).values()) == [0], "nothing is mounted: nothing uses the copy"
    d2.ctl("unstage", "-f", vol, work / "s")      # the pods did not come back
    assert d2.ctl("status", "--json").get("volumes", []) == []
    assert d2.stop() == 0


# ---- 6. eviction, last use, pins and reservations -----------------------------------------------


def test_eviction_deletes_outside_the_store_lock(work, small_store):
    """Deleting an evicted copy of many files must not hold up other calls."""
    d = Driver(work).start("--evict-high=80", "--evict-low=60")
    many = work / "sources" / "many"
    for i in range(200):
        (many / f"d{i:03d}").mkdir(parents=True)
        for k in range(300):
            (many / f"d{i:03d}" / f"f{k:03d}").touch()
    (many / "weights.bin").write_bytes(b"m" * (35 << 20))
    vols = {"many": d.create("many", f"file://{many}")}
    vols.update({n: d.create(n, f"file://{make_source(work, n, 35)}") for n in ("b", "c")})
    for n in ("many", "b"):
        d.ctl("stage", "-f", vols[n], work / f"s-{n}", timeout=120)
        d.ctl("unstage", "-f", vols[n], work / f"s-{n}")
        time.sleep(1.1)
    worst, stop = [0.0], threading.Event()

    def poll():
        while not stop.is_set():
            t0 = time.time()
            d.ctl("status", "--json")
            worst[0] = max(worst[0], time.time() - t0)

    t = threading.Thread(target=poll)
    t.start()
    d.ctl("stage", "-f", vols["c"], work / "s-c")  # evicts "many": 60,000 files
    stop.set()
    t.join()
    (ev,) = [l for l in d.log_lines() if l.get("msg") == "evicted"]
    assert ev["delete_seconds"] > 0.2, "too few files to see anything: the test means nothing"
    assert worst[0] < ev["delete_seconds"] / 2, (worst[0], ev)
    assert d.stop() == 0


def age(store, cid, seconds):
    m = store / "meta" / f"{cid}.json"
    meta = json.loads(m.read_text())
    meta["last_used"] = int(time.time()) - seconds
    m.write_text(json.dumps(meta))


def cid_of(d, name):
    return next(c["content_id"] for c in d.ctl("status", "--json")["copies"] if c["source"].rstrip("/").endswith(name))


def test_a_copy_used_for_weeks_is_not_the_first_evicted_when_released(work, small_store):
    d = Driver(work).start("--evict-high=80", "--evict-low=60")
    vols = {n: d.create(n, f"file://{make_source(work, n, 35)}") for n in ("weeks", "day", "new")}
    d.ctl("stage", "-f", vols["weeks"], work / "s-weeks")   # mounted three weeks ago, used until now
    d.ctl("stage", "-f", vols["day"], work / "s-day")
    d.ctl("unstage", "-f", vols["day"], work / "s-day")
    age(d.store, cid_of(d, "weeks"), 21 * 86400)
    age(d.store, cid_of(d, "day"), 86400)                   # released a day ago
    d.ctl("unstage", "-f", vols["weeks"], work / "s-weeks")  # released now
    d.ctl("stage", "-f", vols["new"], work / "s-new")       # room for one more: evict the least recently used
    left = {c["source"].rstrip("/").rsplit("/", 1)[-1] for c in d.ctl("status", "--json")["copies"]}
    assert left == {"weeks", "new"}, left
    assert d.stop() == 0


def settle(d, vol, staging):
    """Stages the way kubelet does (again while ABORTED); the final error, or None."""
    for _ in range(1200):
        try:
            d.ctl("stage", "-f", vol, staging)
            return None
        except CtlError as e:
            if e.code != "ABORTED":
                return e
            time.sleep(0.05)
    pytest.fail("the stage never settled")


def test_a_copy_filled_for_a_waiting_stage_is_kept_until_kubelet_comes_back(work, small_store):
    d = Driver(work).start("--fill-wait=0", "--evict-high=80", "--evict-low=60")
    b = d.create("b", f"file://{make_source(work, 'b', 35)}")
    c = d.create("c", f"file://{make_source(work, 'c', 50)}")
    with pytest.raises(CtlError) as ei:                 # ABORTED: kubelet will call again
        d.ctl("stage", "-f", b, work / "s-b")
    assert ei.value.code == "ABORTED"
    assert wait_for(lambda: len(copy_dirs(d)) == 1, timeout=30)  # b is ready before kubelet is back
    settle(d, c, work / "s-c")                          # another fill that would like b's room
    fills = len([l for l in d.log_lines() if l.get("msg") == "fill done"])
    d.ctl("stage", "-f", b, work / "s-b")               # kubelet's retry finds its copy
    assert len([l for l in d.log_lines() if l.get("msg") == "fill done"]) == fills
    assert sha256_tree(work / "s-b") == sha256_tree(work / "sources" / "b")
    assert d.stop() == 0


def many_files_source(work, name, mib, files):
    src = work / "sources" / name
    src.mkdir(parents=True)
    for i in range(files):
        (src / f"part-{i:04d}.bin").write_bytes(bytes([i % 251]) * ((mib << 20) // files))
    return src


def test_concurrent_fills_reserve_their_space_instead_of_running_into_enospc(work, small_store):
    d = Driver(work).start("--evict-high=95", "--evict-low=90")
    vols = {n: d.create(n, f"file://{many_files_source(work, n, 55, 440)}") for n in ("a", "b")}
    procs = {n: d.ctl_async("stage", "-f", vols[n], work / f"s-{n}") for n in ("a", "b")}
    results = {n: (p.wait(timeout=120), p.stderr.read()) for n, p in procs.items()}
    ok = [n for n, (rc, _) in results.items() if rc == 0]
    assert len(ok) == 1, results
    (failed,) = [err for rc, err in results.values() if rc != 0]
    assert "RESOURCE_EXHAUSTED" in failed and "reserved by fills running now" in failed, failed
    assert "full while copying" not in failed
    assert d.stop() == 0


# ---- 9. Probe is answered however many calls wait on fills --------------------------------------


def test_probe_is_answered_when_every_call_slot_waits_on_a_fill(work, big):
    d = Driver(work).start("--max-calls=2", "--fill-wait=30")
    vols = [d.create(f"big{i}", f"file://{big}") for i in range(2)]
    procs = [d.ctl_async("stage", "-f", v, work / f"s{i}") for i, v in enumerate(vols)]
    time.sleep(0.5)
    with grpc.insecure_channel(f"unix:{d.sock}") as ch:
        probe = ch.unary_unary("/csi.v1.Identity/Probe", request_serializer=None, response_deserializer=None)
        for _ in range(3):
            assert probe(b"", timeout=5) == b"\x0a\x02\x08\x01"
    for p in procs:
        assert p.wait(timeout=120) == 0
    assert d.stop() == 0


# ---- 10. a writable bind of the shared copy is never accepted ----------------------------------


def test_a_read_only_publish_that_came_back_writable_is_made_read_only(driver, model, work):
    vol = driver.create("v", f"file://{model}")
    driver.ctl("stage", "-f", vol, work / "s")
    driver.ctl("publish", "-f", vol, work / "s", work / "t")
    remount_writable(work / "t")  # what a kill between the bind and its read-only remount leaves
    driver.ctl("publish", "-f", vol, work / "s", work / "t")  # kubelet's retry
    assert is_read_only(work / "t")
    with pytest.raises(OSError):
        (work / "t" / "config.json").write_text("the shared copy changed by a pod")
    remount_writable(work / "s")
    driver.ctl("stage", "-f", vol, work / "s")
    assert is_read_only(work / "s")


# ---- 7, 8. credentials: resumed fills and the warm path -----------------------------------------

NO_KEYS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None}


@pytest.fixture
def bucket(s3server, model):
    s3server.s3.create_bucket(Bucket="models")
    s3server.upload_tree("models", "tiny-llm/", model)
    return "models"


def create_with_secret(d, name, endpoint, s3server):
    vol = d.ctl("create", name, "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={endpoint}",
                "-p", "allowPlainHTTP=true", *s3server.secrets())
    f = d.work / f"{name}.json"
    f.write_text(json.dumps(vol))
    return f


def test_a_resumed_fill_without_credentials_does_not_capture_a_stage_that_brings_them(work, s3server, bucket,
                                                                                        model):
    from faultproxy import FaultProxy
    from test_credentials import Fake

    with FaultProxy(s3server.endpoint, rate=0.0, bytes_per_s=256 << 10) as slow:
        d = Driver(work).start("--fill-wait=0", env=NO_KEYS)
        vol = create_with_secret(d, "v", slow.endpoint, s3server)
        with pytest.raises(CtlError):
            d.ctl("stage", "-f", vol, work / "s", *s3server.secrets())
        assert wait_for(lambda: list((d.store / "meta").glob("*.fill.json")), timeout=20)
        d.proc.kill()  # kill -9 mid-fill: the journal stays, the restart resumes it
        d.proc.wait()
        d.proc = None
        os.unlink(d.sock)
        slow.bytes_per_s = 0

        def imds(method, path, headers, body):  # the node's own credentials: slow to say there are none
            time.sleep(3)
            return 404, ""

        fake = Fake(imds)
        try:
            d2 = Driver(work).start("--fill-wait=1", env={**NO_KEYS, "AWS_EC2_METADATA_DISABLED": None,
                                                          "AWS_EC2_METADATA_SERVICE_ENDPOINT": fake.url})
            err = None
            for _ in range(200):  # kubelet calls again with the volume's Secret
                try:
                    d2.ctl("stage", "-f", vol, work / "s", *s3server.secrets())
                    err = None
                    break
                except CtlError as e:
                    err = e
                    if e.code != "ABORTED":
                        break
                    time.sleep(0.1)
            assert err is None, err
            assert sha256_tree(work / "s") == sha256_tree(model)
            assert d2.stop() == 0
        finally:
            fake.close()


def test_a_node_with_a_verified_copy_starts_pods_during_a_credentials_outage(work, s3server, bucket, model):
    d = Driver(work).start(env={**NO_KEYS, "AWS_EC2_METADATA_DISABLED": None,
                                "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:9"})  # IMDS is down
    a = create_with_secret(d, "a", s3server.endpoint, s3server)
    b = create_with_secret(d, "b", s3server.endpoint, s3server)
    d.ctl("stage", "-f", a, work / "sa", *s3server.secrets())  # filled with the volume's Secret
    t0 = time.time()
    d.ctl("stage", "-f", b, work / "sb")  # no Secret: the node's credentials, which cannot be had now
    assert time.time() - t0 < 5
    assert sha256_tree(work / "sb") == sha256_tree(model)
    assert d.stop() == 0
