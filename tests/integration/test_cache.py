"""The node cache: fills in the background with kubelet-friendly waits, one
copy per content, eviction of unused copies, inline ephemeral volumes."""
import re
import time

import pytest

import subprocess

from conftest import CTL, DRIVER, CtlError, Driver, SHARDS, SHARD_MIB, make_source, mounts_under, sha256_tree


def stage_until_ready(d, vol, staging, tries=600):
    """What kubelet does: call again while the answer is ABORTED."""
    messages = []
    for _ in range(tries):
        try:
            d.ctl("stage", "-f", vol, staging)
            return messages
        except CtlError as e:
            assert e.code == "ABORTED", e
            messages.append(e.message)
            time.sleep(0.05)
    pytest.fail("the fill never finished")


def test_stage_answers_aborted_with_progress_and_retries_join_one_fill(work, big):
    d = Driver(work).start("--fill-wait=0")
    vol = d.create("big", f"file://{big}")
    messages = stage_until_ready(d, vol, work / "s")
    assert messages, "with --fill-wait=0 the first call must come back ABORTED"
    progress = [m for m in messages if m.startswith("filling")]
    assert progress, messages
    assert re.match(r"filling file://\S+/: [\d.]+ \w?i?B/2\.0 GiB \(\d+%\), [\d.]+ [kMG]B/s, ETA \S+$", progress[-1]), progress[-1]
    assert sha256_tree(work / "s") == sha256_tree(big)
    done = [l for l in d.log_lines() if l.get("msg") == "fill done"]
    assert len(done) == 1, "retries must join the running fill, not start new ones"
    assert d.stop() == 0


def test_status_shows_a_fill_in_progress(work, big):
    d = Driver(work).start("--fill-wait=0")
    vol = d.create("big", f"file://{big}")
    with pytest.raises(CtlError):
        d.ctl("stage", "-f", vol, work / "s")
    st = d.ctl("status", "--json")
    filling = [c for c in st.get("copies", []) if c["state"] == "filling"]
    if filling:  # unless it already finished on a fast machine
        assert filling[0]["bytes_total"] == SHARDS * (SHARD_MIB << 20)
        assert filling[0]["message"].startswith("filling file://")
    stage_until_ready(d, vol, work / "s")
    assert d.stop() == 0


def test_final_errors_come_back_at_once(work, model):
    d = Driver(work).start("--fill-wait=100")
    vol = d.create("m", f"file://{model}")
    (model / "config.json").write_text("changed")
    t0 = time.time()
    with pytest.raises(CtlError) as ei:
        d.ctl("stage", "-f", vol, work / "s")
    assert ei.value.code == "FAILED_PRECONDITION" and time.time() - t0 < 5
    assert d.stop() == 0


def test_two_volumes_one_download(driver, model, work):
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    a = driver.create("pvc-a", f"file://{model}")
    b = driver.create("pvc-b", f"file://{model}")
    driver.ctl("stage", "-f", a, work / "sa")
    driver.ctl("stage", "-f", b, work / "sb")
    st = driver.ctl("status", "--json")
    assert st["bytes_fetched_total"] == total, "the second volume must not fetch again"
    assert len(st["copies"]) == 1 and st["copies"][0]["refs"] == 2
    assert st["copies"][0]["fetched_bytes"] == total


def copies(d):
    return {c["source"].rstrip("/").rsplit("/", 1)[-1]: c for c in d.ctl("status", "--json").get("copies", [])}


def test_eviction_takes_the_least_recently_used_unreferenced_copy(work, small_store):
    d = Driver(work).start("--evict-high=80", "--evict-low=60")
    vols = {n: d.create(n, f"file://{make_source(work, n, 35)}") for n in ("a", "b", "c")}
    for n in ("a", "b"):
        d.ctl("stage", "-f", vols[n], work / f"s-{n}")
        d.ctl("unstage", "-f", vols[n], work / f"s-{n}")
        time.sleep(1.1)  # last-use times are in seconds
    assert set(copies(d)) == {"a", "b"}
    d.ctl("stage", "-f", vols["c"], work / "s-c")
    assert set(copies(d)) == {"b", "c"}, "a was used least recently and nothing referenced it"
    assert any(l.get("msg") == "evicted" for l in d.log_lines())
    assert d.stop() == 0


def test_watermarks_the_wrong_way_round_are_refused_at_start(work):
    # it used to take the low mark as the high one without a word
    r = subprocess.run([str(DRIVER), f"--endpoint=unix://{work}/x.sock", f"--store-root={work}/store",
                        "--evict-high=70", "--evict-low=80"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--evict-low (80) is above --evict-high (70)" in r.stderr, r.stderr


def test_a_referenced_copy_is_never_evicted_and_no_room_is_resource_exhausted(work, small_store):
    d = Driver(work).start("--evict-high=80", "--evict-low=60")
    vols = {n: d.create(n, f"file://{make_source(work, n, 35)}") for n in ("a", "b", "c", "dd")}
    d.ctl("stage", "-f", vols["a"], work / "s-a")          # a stays staged: referenced
    time.sleep(1.1)
    d.ctl("stage", "-f", vols["b"], work / "s-b")
    d.ctl("unstage", "-f", vols["b"], work / "s-b")       # b is unreferenced
    d.ctl("stage", "-f", vols["c"], work / "s-c")         # needs room: b goes, a stays
    assert set(copies(d)) == {"a", "c"}
    with pytest.raises(CtlError) as ei:                   # a and c in use, 35 MiB more cannot fit
        d.ctl("stage", "-f", vols["dd"], work / "s-dd")
    assert ei.value.code == "RESOURCE_EXHAUSTED"
    assert "needs 35.0 MiB" in ei.value.message and "free of" in ei.value.message
    assert sha256_tree(work / "s-a") == sha256_tree(work / "sources" / "a")
    assert d.stop() == 0


def test_inline_ephemeral_volume_fills_and_mounts_without_stage(driver, model, work):
    target = work / "pods" / "p" / "volumes" / "inline"
    ctx = ["-c", "csi.storage.k8s.io/ephemeral=true", "-c", f"source=file://{model}",
           "-c", "csi.storage.k8s.io/pod.name=p", "--access", "ReadWriteOnce"]
    driver.ctl("publish", "eph-1", "", target, "--readonly", *ctx)
    assert sha256_tree(target) == sha256_tree(model)
    with pytest.raises(OSError):
        (target / "x").write_text("x")
    driver.ctl("publish", "eph-1", "", target, "--readonly", *ctx)  # idempotent
    driver.ctl("unpublish", "eph-1", target)
    assert not target.exists() and not mounts_under(work / "pods")
    assert driver.ctl("status", "--json").get("volumes", []) == []
    # writable inline volume: a private scratch layer over the copy
    driver.ctl("publish", "eph-2", "", target, *ctx)
    (target / "scratch").write_text("ok")
    driver.ctl("unpublish", "eph-2", target)


def test_inline_ephemeral_volume_with_a_bad_attribute_is_named(driver, model, work):
    with pytest.raises(CtlError) as ei:
        driver.ctl("publish", "eph-3", "", work / "t", "-c", "csi.storage.k8s.io/ephemeral=true",
                   "-c", f"source=file://{model}", "-c", "sorce=x")
    assert ei.value.code == "INVALID_ARGUMENT" and '"sorce"' in ei.value.message


def test_an_admin_evicts_a_copy_nothing_uses(work, model):
    """warmcachectl evict (issue #16): refused while a volume shows the copy,
    then the copy goes, with its bytes, and the next stage fills it again."""
    d = Driver(work).start()
    vol = d.create("m", f"file://{model}")
    d.ctl("stage", "-f", vol, work / "s")
    cid = d.ctl("status", "--json")["copies"][0]["content_id"]
    with pytest.raises(CtlError) as ei:
        d.ctl("evict", cid)
    assert ei.value.code == "FAILED_PRECONDITION" and "in use" in ei.value.message
    with pytest.raises(CtlError) as ei:
        d.ctl("evict", "not-a-content-id")
    assert ei.value.code == "INVALID_ARGUMENT"
    d.ctl("unstage", "-f", vol, work / "s")
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    assert (d.store / "content" / cid).is_dir()
    out = subprocess.run([str(CTL), "-s", str(d.sock), "evict", cid], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith(f"evicted {cid}: "), out
    freed = out.stdout.split(": ", 1)[1]
    assert freed.endswith(" freed\n") and not freed.startswith("0 "), out.stdout  # the copy's bytes, said
    assert not (d.store / "content" / cid).exists()  # gone from the disk, not only from the list
    assert d.ctl("status", "--json").get("copies", []) == []
    with pytest.raises(CtlError) as ei:
        d.ctl("evict", cid)
    assert ei.value.code == "NOT_FOUND"
    d.ctl("stage", "-f", vol, work / "s")  # filled again, every byte fetched again
    assert sha256_tree(work / "s") == sha256_tree(model)
    done = [l for l in d.log_lines() if l.get("msg") == "fill done"]
    assert len(done) == 2 and done[1]["fetched_bytes"] == size, done
    d.ctl("unstage", "-f", vol, work / "s")
    assert d.stop() == 0
