"""Faults during a fill: a second call, a client that gives up, SIGTERM and
kill -9. A fill of 2 GiB on tmpfs takes 0.6 to 5 s here (it depends on the
page cache), long enough to act in the middle of it."""
import os
import signal

import pytest

from conftest import SHARDS, SHARD_MIB, CtlError, Driver, mounts_under, sha256_tree, wait_for
from conftest import partial_dir_of as partial_dir

def test_concurrent_call_on_the_same_volume_is_aborted(driver, big, work):
    vol = driver.create("big", f"file://{big}")
    first = driver.ctl_async("stage", "-f", vol, work / "s")
    assert wait_for(lambda: partial_dir(driver.store) is not None)
    with pytest.raises(CtlError) as ei:
        driver.ctl("stage", "-f", vol, work / "s")
    assert ei.value.code == "ABORTED" and "already in progress" in ei.value.message
    assert first.wait(timeout=120) == 0, first.stderr.read()
    assert sha256_tree(work / "s") == sha256_tree(big)


def test_client_giving_up_leaves_the_fill_running_and_the_next_call_joins_it(driver, big, work):
    vol = driver.create("big", f"file://{big}")
    for deadline in (0.5, 0.25, 0.12, 0.06):  # until the deadline falls mid-fill
        try:
            driver.ctl("stage", "-f", vol, work / "s", timeout=deadline)
        except CtlError as e:
            assert e.code == "DEADLINE_EXCEEDED"
            break
        driver.ctl("unstage", "-f", vol, work / "s")
        for c in (driver.store / "content").iterdir():
            os.system(f"rm -rf '{c}'")
    else:
        pytest.fail("the fill always finished before the deadline")
    # the call noticed it was cancelled; the fill did not stop
    assert wait_for(lambda: any(l.get("code") == "CANCELLED" for l in driver.log_lines()))
    driver.ctl("stage", "-f", vol, work / "s")
    assert sha256_tree(work / "s") == sha256_tree(big)
    done = [l for l in driver.log_lines() if l.get("msg") == "fill done"]
    assert len(done) == 1 and done[0]["fetched_bytes"] == SHARDS * (SHARD_MIB << 20), done


def test_sigterm_lets_the_call_in_flight_finish_then_exits_0(driver, big, work):
    vol = driver.create("big", f"file://{big}")
    call = driver.ctl_async("stage", "-f", vol, work / "s")
    assert wait_for(lambda: partial_dir(driver.store) is not None)
    rc = driver.stop(signal.SIGTERM, timeout=120)
    assert call.wait(timeout=10) == 0, call.stderr.read()
    assert rc == 0 and not driver.sock.exists()
    assert sha256_tree(work / "s") == sha256_tree(big)


def test_sigterm_with_no_grace_cancels_the_call_and_still_exits_0(work, big):
    d = Driver(work).start("--shutdown-grace=0")
    vol = d.create("big", f"file://{big}")
    call = d.ctl_async("stage", "-f", vol, work / "s")
    assert wait_for(lambda: partial_dir(d.store) is not None)
    rc = d.stop(signal.SIGTERM)
    assert rc == 0 and not d.sock.exists()
    assert call.wait(timeout=10) == 1
    # gRPC answers the cancelled call UNAVAILABLE: kubelet retries it on the next plugin
    assert "UNAVAILABLE" in call.stderr.read()
    assert not mounts_under(work / "s")


def kill_9_mid_fill(work, big):
    """Starts a plugin, starts filling `big`, and kills the plugin with
    SIGKILL once at least 8 shards are whole. Returns (driver, volume)."""
    d = Driver(work).start()
    vol = d.create("big", f"file://{big}")
    call = d.ctl_async("stage", "-f", vol, work / "s")
    assert wait_for(lambda: partial_dir(d.store) is not None and len(list(partial_dir(d.store).iterdir())) >= 8)
    d.proc.kill()
    d.proc.wait()
    call.wait(timeout=10)
    d.proc = None
    return d, vol


def test_kill_9_mid_fill_leaves_nothing_partial_visible_and_resumes(work, big):
    d, vol = kill_9_mid_fill(work, big)
    # what a crash leaves: no copy, only whole files in the partial dir
    assert [p for p in (d.store / "content").iterdir() if not p.name.endswith(".partial")] == []
    part = partial_dir(d.store)
    for f in part.iterdir():
        assert f.stat().st_size == SHARD_MIB << 20, f"{f.name} is visible but incomplete"
    assert not mounts_under(work / "s")
    # Files being written are tmp/<cid>/<file index>, their written parts
    # listed in the journal tmp/<cid>/parts; the resumed fill reuses the files
    # and trusts only journaled parts. Spoil every other byte range of them:
    # the copy must still come out byte-identical.
    for journal in (d.store / "tmp").rglob("parts"):
        lines = journal.read_text().splitlines()
        # 0: the default, per file (fill_part_size): 8 MiB for these shards, all under 512 MiB
        part_size = int(lines[0].split()[-1]) or 8 << 20
        written = {tuple(map(int, line.split()[:2])) for line in lines[1:]}
        for f in journal.parent.iterdir():
            if f.name == "parts":
                continue
            with open(f, "r+b") as out:
                for k in range(-(-f.stat().st_size // part_size)):
                    if (int(f.name), k) not in written:
                        out.seek(k * part_size)
                        out.write(b"\xaa" * min(part_size, f.stat().st_size - k * part_size))
    os.unlink(d.sock)  # a SIGKILLed process cannot clean up; the next start would
    d2 = Driver(work).start()
    d2.ctl("stage", "-f", vol, work / "s")
    assert sha256_tree(work / "s") == sha256_tree(big)
    d2.ctl("unstage", "-f", vol, work / "s")
    assert d2.stop() == 0


def test_restart_keeps_existing_mounts_working(work, model):
    d = Driver(work).start()
    vol = d.create("m", f"file://{model}")
    d.ctl("stage", "-f", vol, work / "s")
    d.ctl("publish", "-f", vol, work / "s", work / "t")
    d.proc.kill()
    d.proc.wait()
    d.proc = None
    assert sha256_tree(work / "t") == sha256_tree(model), "a pod's mount must survive a plugin crash"
    d2 = Driver(work).start()  # a stale socket is replaced
    d2.ctl("publish", "-f", vol, work / "s", work / "t")  # kubelet retries: same answer
    d2.ctl("unpublish", "-f", vol, work / "t")
    d2.ctl("unstage", "-f", vol, work / "s")
    assert not mounts_under(work / "s") and not mounts_under(work / "t")
    assert d2.stop() == 0


def test_restart_resumes_an_interrupted_fill_by_itself(work, big):
    d, vol = kill_9_mid_fill(work, big)
    d2 = Driver(work).start()
    # no call yet: the plugin picks the fill up from its journal
    assert wait_for(lambda: any(p.is_dir() and not p.name.endswith(".partial")
                                for p in (d2.store / "content").iterdir()), timeout=120)
    assert any(l.get("msg") == "resuming an interrupted fill" for l in d2.lines_since_start())
    done = [l for l in d2.lines_since_start() if l.get("msg") == "fill done"]
    assert len(done) == 1 and done[0]["fetched_bytes"] < SHARDS * (SHARD_MIB << 20), "finished shards were fetched again"
    d2.ctl("stage", "-f", vol, work / "s")
    assert sha256_tree(work / "s") == sha256_tree(big)
    d2.ctl("unstage", "-f", vol, work / "s")
    assert d2.stop() == 0


def test_restart_drops_debris_and_keeps_what_is_in_use(work, model):
    d = Driver(work).start()
    vol = d.create("m", f"file://{model}")
    d.ctl("stage", "-f", vol, work / "s")
    d.ctl("publish", "-f", vol, work / "s", work / "t", "--access", "ReadWriteOnce")
    (work / "t" / "scratch").write_text("pod data")
    assert d.stop() == 0
    debris = [d.store / "content" / ("f" * 32 + ".partial"), d.store / "overlays" / ("a" * 32) / ("b" * 32)]
    for p in debris:
        (p / "x").mkdir(parents=True)
    (d.store / "meta" / ("e" * 32 + ".json")).write_text("{}")
    d2 = Driver(work).start()
    assert not any(p.exists() for p in debris) and not (d2.store / "meta" / ("e" * 32 + ".json")).exists()
    assert (work / "t" / "scratch").read_text() == "pod data", "a live pod's writable layer must survive"
    d2.ctl("unpublish", "-f", vol, work / "t")
    d2.ctl("unstage", "-f", vol, work / "s")
    assert d2.stop() == 0
