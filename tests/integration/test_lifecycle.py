"""The whole volume lifecycle from a file:// source, through the real driver
and real mounts: what a pod on a node would see."""
import json
import os
import subprocess

import pytest

from conftest import CtlError, mounts_under, sha256_tree


def test_lifecycle_copies_exactly_and_mounts_read_only(driver, model, work):
    vol = driver.create("llm", f"file://{model}")
    info = json.loads(vol.read_text())["volume"]
    ctx = info["volume_context"]
    assert ctx["objectCount"] == "5"
    assert int(ctx["totalBytes"]) == sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    assert info["capacity_bytes"] == int(ctx["totalBytes"])

    staging, target = work / "staging", work / "pods" / "p1" / "vol"
    driver.ctl("stage", "-f", vol, staging)
    driver.ctl("publish", "-f", vol, staging, target)
    assert sha256_tree(target) == sha256_tree(model)
    assert (target / "empty.txt").stat().st_size == 0
    with pytest.raises(OSError) as ei:
        (target / "new-file").write_text("x")
    assert ei.value.errno == 30  # EROFS: the copy is immutable for pods

    stats = driver.ctl("stats", "-f", vol, target)
    usage = {u["unit"]: u for u in stats["usage"]}
    assert usage["BYTES"]["used"] == int(ctx["totalBytes"])
    assert usage["INODES"]["used"] == 5
    assert "abnormal" not in stats["volume_condition"]

    driver.ctl("unpublish", "-f", vol, target)
    assert not target.exists(), "unpublish must remove the target path it created"
    driver.ctl("unstage", "-f", vol, staging)
    driver.ctl("delete", "-f", vol)
    assert mounts_under(work / "staging") == [] and mounts_under(work / "pods") == []


def test_every_call_is_idempotent(driver, model, work):
    vol = driver.create("llm", f"file://{model}")
    again = driver.create("llm", f"file://{model}")
    assert json.loads(vol.read_text()) == json.loads(again.read_text())
    staging, target = work / "staging", work / "t"
    for _ in range(2):
        driver.ctl("stage", "-f", vol, staging)
    for _ in range(2):
        driver.ctl("publish", "-f", vol, staging, target)
    assert len(mounts_under(target)) == 1 and len(mounts_under(staging)) == 1
    for _ in range(2):
        driver.ctl("unpublish", "-f", vol, target)
    for _ in range(2):
        driver.ctl("unstage", "-f", vol, staging)
    for _ in range(2):
        driver.ctl("delete", "-f", vol)


def test_incompatible_recreate_and_republish_are_refused(driver, model, work):
    driver.create("llm", f"file://{model}")
    with pytest.raises(CtlError) as ei:
        driver.create("llm", f"file://{model}", "sourceChangePolicy=Follow")
    assert ei.value.code == "ALREADY_EXISTS"
    vol = work / "llm.json"
    staging, target = work / "s", work / "t"
    driver.ctl("stage", "-f", vol, staging)
    driver.ctl("publish", "-f", vol, staging, target, "--access", "ReadWriteOnce")
    with pytest.raises(CtlError) as ei:
        driver.ctl("publish", "-f", vol, staging, target, "--access", "ReadWriteOnce", "--readonly")
    assert ei.value.code == "ALREADY_EXISTS"
    with pytest.raises(CtlError) as ei:
        driver.ctl("unstage", "-f", vol, staging)
    assert ei.value.code == "FAILED_PRECONDITION" and str(target) in ei.value.message


def test_writable_publish_is_a_private_overlay(driver, model, work):
    vol = driver.create("scratch", f"file://{model}", access="ReadWriteOnce")
    staging, t1 = work / "s", work / "t1"
    driver.ctl("stage", "-f", vol, staging)
    driver.ctl("publish", "-f", vol, staging, t1, "--access", "ReadWriteOnce")
    (t1 / "config.json").write_text("changed by the pod")
    (t1 / "scratch.bin").write_bytes(b"x" * 100)
    # the copy itself never changes: staging still shows the source
    assert (staging / "config.json").read_text() == (model / "config.json").read_text()
    assert not (staging / "scratch.bin").exists()
    driver.ctl("unpublish", "-f", vol, t1)
    driver.ctl("publish", "-f", vol, staging, t1, "--access", "ReadWriteOnce")
    assert not (t1 / "scratch.bin").exists(), "a new publish must start from a clean scratch layer"
    assert sha256_tree(t1) == sha256_tree(model)
    driver.ctl("unpublish", "-f", vol, t1)
    assert list((driver.store / "overlays").rglob("upper")) == []


def test_two_volumes_with_the_same_source_share_one_copy(driver, model, work):
    a = driver.create("pvc-a", f"file://{model}")
    b = driver.create("pvc-b", f"file://{model}")
    driver.ctl("stage", "-f", a, work / "sa")
    driver.ctl("stage", "-f", b, work / "sb")
    copies = [p for p in (driver.store / "content").iterdir()]
    assert len(copies) == 1
    status = driver.ctl("status", "--json")
    assert status["copies"][0]["refs"] == 2
    fills = [l for l in driver.log_lines() if l.get("method", "").endswith("NodeStageVolume")]
    assert len(fills) == 2


@pytest.mark.parametrize("params,code,needle", [
    (["source=file://WORK/nonexistent/dir/"], "INVALID_ARGUMENT", "is not there"),
    (["source=file:///nonexistent/dir/"], "PERMISSION_DENIED", "not allowed on this node"),
    (["source=file://relative/"], "INVALID_ARGUMENT", "absolute path"),
    (["source=s3://models--x-s3/llama/"], "INVALID_ARGUMENT", "<base>--<zone id>--x-s3"),
    (["source=ftp://host/x"], "INVALID_ARGUMENT", "file:///path/, s3://bucket/prefix/ or oci://registry/repository:tag"),
    (["source=file:///tmp/../etc/"], "INVALID_ARGUMENT", ".."),
    (["source=MODEL", "regoin=us-east-1"], "INVALID_ARGUMENT", 'unknown StorageClass parameter "regoin"'),
    (["source=MODEL", "sourceChangePolicy=Sometimes"], "INVALID_ARGUMENT", "Fail or Follow"),
    (["sourceChangePolicy=Fail"], "INVALID_ARGUMENT", "source is required"),
])
def test_storageclass_mistakes_get_actionable_errors(driver, model, work, params, code, needle):
    args = ["create", "bad"]
    for p in params:
        args += ["-p", p.replace("MODEL", f"file://{model}").replace("WORK", str(work))]
    with pytest.raises(CtlError) as ei:
        driver.ctl(*args)
    assert ei.value.code == code
    assert needle in ei.value.message


def test_capacity_smaller_than_the_source_is_out_of_range(driver, model):
    with pytest.raises(CtlError) as ei:
        driver.create("small", f"file://{model}", capacity=1024)
    assert ei.value.code == "OUT_OF_RANGE"
    assert "request at least" in ei.value.message
    big = driver.create("big", f"file://{model}", capacity=10 << 30)
    assert json.loads(big.read_text())["volume"]["capacity_bytes"] == 10 << 30


def test_empty_source_is_refused(driver, work):
    (work / "empty").mkdir()
    with pytest.raises(CtlError) as ei:
        driver.create("e", f"file://{work / 'empty'}")
    assert ei.value.code == "INVALID_ARGUMENT" and "holds no files" in ei.value.message


def test_symlinks_leaving_the_source_are_refused(driver, model, work):
    (work / "secret").write_text("host secret")
    (model / "innocent").symlink_to(work / "secret")
    with pytest.raises(CtlError) as ei:
        driver.create("esc", f"file://{model}")
    assert ei.value.code == "INVALID_ARGUMENT"
    assert '"innocent"' in ei.value.message and "outside the source" in ei.value.message


def test_symlinks_inside_the_source_are_copied_as_files(driver, model, work):
    (model / "latest.json").symlink_to("config.json")
    vol = driver.create("ln", f"file://{model}")
    driver.ctl("stage", "-f", vol, work / "s")
    copied = work / "s" / "latest.json"
    assert not copied.is_symlink() and copied.read_text() == (model / "config.json").read_text()


def test_special_files_in_the_source_are_refused(driver, model):
    os.mkfifo(model / "pipe")
    with pytest.raises(CtlError) as ei:
        driver.create("fifo", f"file://{model}")
    assert '"pipe"' in ei.value.message and "not a regular file" in ei.value.message


def test_source_change_after_create_fails_or_follows(driver, model, work):
    pinned = driver.create("pinned", f"file://{model}")
    follow = driver.create("follow", f"file://{model}", "sourceChangePolicy=Follow")
    (model / "config.json").write_text('{"hidden_size": 128}\n')
    with pytest.raises(CtlError) as ei:
        driver.ctl("stage", "-f", pinned, work / "s1")
    assert ei.value.code == "FAILED_PRECONDITION"
    assert "changed since the volume was created" in ei.value.message
    assert not mounts_under(work / "s1")
    driver.ctl("stage", "-f", follow, work / "s2")
    assert (work / "s2" / "config.json").read_text() == '{"hidden_size": 128}\n'


def test_publish_before_stage_and_bad_paths(driver, model, work):
    vol = driver.create("v", f"file://{model}")
    with pytest.raises(CtlError) as ei:
        driver.ctl("publish", "-f", vol, work / "s", work / "t")
    assert ei.value.code == "FAILED_PRECONDITION" and "not staged" in ei.value.message
    with pytest.raises(CtlError) as ei:
        driver.ctl("stage", "-f", vol, "relative/staging")
    assert ei.value.code == "INVALID_ARGUMENT"
    with pytest.raises(CtlError) as ei:
        driver.ctl("stage", "-f", vol, f"{work}/a/../../etc")
    assert ei.value.code == "INVALID_ARGUMENT"


def test_stats_report_a_lost_copy_as_abnormal(driver, model, work):
    vol = driver.create("v", f"file://{model}")
    driver.ctl("stage", "-f", vol, work / "s")
    subprocess.run(["umount", str(work / "s")], check=True)
    for c in (driver.store / "content").iterdir():
        subprocess.run(["rm", "-rf", str(c)], check=True)
    stats = driver.ctl("stats", "-f", vol, work / "s")
    assert stats["volume_condition"]["abnormal"] is True
    assert "missing from the node store" in stats["volume_condition"]["message"]
    # staging again refills and remounts
    driver.ctl("stage", "-f", vol, work / "s")
    assert sha256_tree(work / "s") == sha256_tree(model)


def test_stats_report_a_damaged_copy_as_abnormal(driver, model, work):
    vol = driver.create("v", f"file://{model}")
    driver.ctl("stage", "-f", vol, work / "s")
    copy = next(p for p in (driver.store / "content").iterdir())
    os.truncate(copy / "config.json", 3)  # a disk fault, or someone writing under the plugin
    stats = driver.ctl("stats", "-f", vol, work / "s")
    assert stats["volume_condition"]["abnormal"] is True
    assert "failed verification" in stats["volume_condition"]["message"]
    # what the message tells the user to do works: unstage, stage again, a fresh copy
    driver.ctl("unstage", "-f", vol, work / "s")
    driver.ctl("stage", "-f", vol, work / "s")
    assert sha256_tree(work / "s") == sha256_tree(model)
    assert "abnormal" not in driver.ctl("stats", "-f", vol, work / "s")["volume_condition"]


def test_unknown_volume_stats_are_not_found(driver, work):
    with pytest.raises(CtlError) as ei:
        driver.ctl("stats", "wc1-00000000000000000000000000000000", work)
    assert ei.value.code == "NOT_FOUND"


def test_secrets_never_reach_the_log_or_errors(driver, model, work):
    secret = "AKIAwarmcacheTEST/s3cr3t+value"
    vol = driver.create("v", f"file://{model}")
    driver.ctl("stage", "-f", vol, work / "s", "--secret", f"awsSecretAccessKey={secret}")
    with pytest.raises(CtlError) as ei:  # a failing call logs its request too
        driver.ctl("stage", "-f", vol, "relative", "--secret", f"awsSecretAccessKey={secret}")
    assert secret not in ei.value.message
    text = driver.log.read_text()
    stages = [l for l in driver.log_lines() if l.get("method", "").endswith("NodeStageVolume")]
    assert len(stages) == 2 and all(l["request"]["secrets"] == "<redacted>" for l in stages)
    assert secret not in text


def test_a_writable_volume_takes_files_from_a_non_root_user(driver, model, work):
    """Pods often run as a user of their own: the scratch layer is theirs."""
    vol = driver.create("scratch-nr", f"file://{model}", access="ReadWriteOnce")
    driver.ctl("stage", "-f", vol, work / "s")
    driver.ctl("publish", "-f", vol, work / "s", work / "t", "--access", "ReadWriteOnce")
    r = subprocess.run(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c",
                        f"echo ok > {work}/t/mine && mkdir {work}/t/run && cat {work}/t/config.json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (work / "t" / "mine").stat().st_uid == 1000
    r = subprocess.run(["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c",
                        f"echo x > {work}/t/config.json"], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr, "the copy's own files stay the copy's"
    driver.ctl("unpublish", "-f", vol, work / "t")
