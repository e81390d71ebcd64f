"""Hostile and odd inputs: each gets a clear error or a correct copy, and
nothing is ever written outside the store. (docs/security.md lists them.)"""
import os
import subprocess
import threading
import time

import pytest

from conftest import CtlError, Driver, mounts_under, sha256_tree, wait_for


def test_hard_links_are_copied_as_separate_files(driver, model, work):
    os.link(model / "config.json", model / "config-link.json")
    vol = driver.create("hl", f"file://{model}")
    driver.ctl("stage", "-f", vol, work / "s")
    a, b = work / "s" / "config.json", work / "s" / "config-link.json"
    assert a.read_bytes() == b.read_bytes() and a.stat().st_ino != b.stat().st_ino


def test_names_that_differ_only_in_case_are_both_kept(driver, model, work):
    (model / "Weights.bin").write_bytes(b"upper")
    (model / "weights.bin").write_bytes(b"lower")
    vol = driver.create("case", f"file://{model}")
    driver.ctl("stage", "-f", vol, work / "s")
    assert (work / "s" / "Weights.bin").read_bytes() == b"upper"
    assert (work / "s" / "weights.bin").read_bytes() == b"lower"


def test_control_characters_in_names_are_refused_with_the_key_escaped(driver, model):
    (model / "evil\x1b[31mname").write_bytes(b"x")
    with pytest.raises(CtlError) as ei:
        driver.create("ctl", f"file://{model}")
    assert ei.value.code == "INVALID_ARGUMENT" and "\\x1b" in ei.value.message and "\x1b" not in ei.value.message


def test_a_file_rewritten_during_the_fill_is_reported_not_copied_half(work):
    src = work / "src"
    src.mkdir()
    for i in range(64):
        (src / f"s{i:02d}").write_bytes(bytes([i]) * (16 << 20))
    d = Driver(work).start()
    vol = d.create("moving", f"file://{src}", "sourceChangePolicy=Follow")
    call = d.ctl_async("stage", "-f", vol, work / "s")
    assert wait_for(lambda: any((d.store / "content").glob("*.partial")))
    (src / "s63").write_bytes(b"rewritten while the fill runs")  # the last file: not copied yet
    assert call.wait(timeout=120) == 1
    err = call.stderr.read()
    assert "FAILED_PRECONDITION" in err and "s63 changed" in err
    assert not [p for p in (d.store / "content").iterdir() if not p.name.endswith(".partial")]
    # the next stage lists again (Follow) and completes with the new content
    d.ctl("stage", "-f", vol, work / "s")
    assert (work / "s" / "s63").read_bytes() == b"rewritten while the fill runs"
    assert d.stop() == 0


def test_volume_ids_and_paths_that_try_to_escape(driver, model, work):
    vol = driver.create("v", f"file://{model}")
    ctx = []
    for k, v in __import__("json").loads(vol.read_text())["volume"]["volume_context"].items():
        ctx += ["-c", f"{k}={v}"]
    driver.ctl("stage", "../../../../tmp/owned", work / "s", *ctx)  # the id is only ever hashed
    assert not os.path.exists("/tmp/owned")
    assert [len(p.stem) for p in (driver.store / "volumes").iterdir()] == [32]
    for bad in (f"{work}/t/../../../etc", "t", f"{work}/t\n"):
        with pytest.raises(CtlError) as ei:
            driver.ctl("publish", "../../../../tmp/owned", work / "s", bad)
        assert ei.value.code == "INVALID_ARGUMENT" or ei.value.code == "FAILED_PRECONDITION"
    driver.ctl("unstage", "../../../../tmp/owned", work / "s")


def test_a_store_that_fills_up_mid_fill_fails_cleanly_and_stays_healthy(work):
    store = work / "store"
    store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "wc-full", str(store)], check=True)
    src = work / "src"
    src.mkdir()
    for i in range(6):
        (src / f"part-{i}").write_bytes(bytes([i]) * (10 << 20))  # 60 MiB into a 40 MiB store
    d = Driver(work).start()
    vol = d.create("big", f"file://{src}")
    with pytest.raises(CtlError) as ei:
        d.ctl("stage", "-f", vol, work / "s")
    assert ei.value.code == "RESOURCE_EXHAUSTED", ei.value
    assert "needs" in ei.value.message and "free of" in ei.value.message
    assert not [p for p in (store / "content").iterdir() if not p.name.endswith(".partial")]
    assert not mounts_under(work / "s")
    small = work / "small"
    small.mkdir()
    (small / "a").write_bytes(b"a" * 1000)
    ok = d.create("small", f"file://{small}")
    d.ctl("stage", "-f", ok, work / "s2")  # still healthy
    assert d.stop() == 0


def test_200_concurrent_publish_and_unpublish_calls_over_20_volumes(driver, model, work):
    vols = [driver.create(f"v{i}", f"file://{model}") for i in range(20)]
    for i, v in enumerate(vols):
        driver.ctl("stage", "-f", v, work / f"s{i}")
    errors, lock = [], threading.Lock()

    def worker(k):
        i = k % 20
        target = work / "t" / f"{k}"
        try:
            for attempt in range(200):
                try:
                    driver.ctl("publish", "-f", vols[i], work / f"s{i}", target)
                    break
                except CtlError as e:
                    if e.code != "ABORTED":
                        raise
                    time.sleep(0.01)
            assert sha256_tree(target) == sha256_tree(model)
            for attempt in range(200):
                try:
                    driver.ctl("unpublish", "-f", vols[i], target)
                    break
                except CtlError as e:
                    if e.code != "ABORTED":
                        raise
                    time.sleep(0.01)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    leaked = [m for m in mounts_under(work / "t")]
    assert leaked == [], leaked
    st = driver.ctl("status", "--json")
    assert all(v.get("targets", []) == [] for v in st["volumes"])


def test_disk_full_in_the_middle_of_a_fill(work):
    """The room check passes, then something else eats the disk mid-fill."""
    store = work / "store"
    store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200m", "wc-full", str(store)], check=True)
    src = work / "src"
    src.mkdir()
    for i in range(64):
        (src / f"s{i:02d}").write_bytes(bytes([i]) * (16 << 20))
    d = Driver(work).start()
    vol = d.create("big", f"file://{src}")
    call = d.ctl_async("stage", "-f", vol, work / "s")
    assert wait_for(lambda: any((store / "content").glob("*.partial")))
    fd = os.open(store / "hog", os.O_CREAT | os.O_WRONLY)  # another tenant of the disk, all at once
    try:
        os.posix_fallocate(fd, 0, 700 << 20)
    except OSError:
        pass
    os.close(fd)
    assert call.wait(timeout=120) == 1
    err = call.stderr.read()
    assert "RESOURCE_EXHAUSTED" in err and "is full" in err, err
    assert not [p for p in (store / "content").iterdir() if not p.name.endswith(".partial")]
    part = next((store / "content").glob("*.partial"))
    assert all(f.stat().st_size == 16 << 20 for f in part.iterdir()), "only whole files in the partial copy"
    os.unlink(store / "hog")
    d.ctl("stage", "-f", vol, work / "s")  # room again: the fill resumes and completes
    assert sha256_tree(work / "s") == sha256_tree(src)
    assert d.stop() == 0
