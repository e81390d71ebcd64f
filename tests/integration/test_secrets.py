"""Secrets after use: what a core file or a memory dump of the node plugin
would show. The plugin makes no core files unless --core-dumps is given, and
the node-stage secrets it was sent (through gRPC, the fill, the S3 signer)
are zeroed once used, so reading the whole memory of the running process
finds none of them."""
import json
import os
import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CtlError, Driver

ASAN = "asan" in os.environ.get("WC_BUILD", "")


def limits(pid):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core limit line")


@pytest.fixture
def core_dir(tmp_path):
    """Core files of this test go to core_dir (kernel.core_pattern set for
    the test, then put back); the test process may write them."""
    pattern = Path("/proc/sys/kernel/core_pattern")
    try:
        old = pattern.read_text()
        pattern.write_text(str(tmp_path / "core.%p") + "\n")
    except OSError as e:
        pytest.skip(f"kernel.core_pattern cannot be set here: {e}")
    old_limit = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    try:
        yield tmp_path
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, old_limit)
        pattern.write_text(old)


def test_the_plugin_leaves_no_core_file(work, core_dir):
    # the harness can catch a core file: a plain process killed with SIGQUIT leaves one
    p = subprocess.Popen(["sleep", "60"])
    time.sleep(0.2)
    p.send_signal(signal.SIGQUIT)
    p.wait()
    assert list(core_dir.glob(f"core.{p.pid}")), "the machine makes no core files: the test proves nothing"

    d = Driver(work)
    d.start()
    pid = d.proc.pid
    assert limits(pid) == ["0", "0"]
    d.proc.send_signal(signal.SIGQUIT)  # what a crash does
    d.proc.wait(timeout=30)
    assert not list(core_dir.glob(f"core.{pid}"))


@pytest.mark.skipif(ASAN, reason="under ASan the process maps terabytes of shadow memory: too much to read")
def test_used_secrets_are_not_left_in_memory(work, s3server, model):
    """Every readable page of the running plugin, after a fill with the right
    secret, a stage refused for a wrong one and a CreateVolume that listed
    with it: neither secret is anywhere (gRPC's buffers, the unpacked request,
    the fill job, the S3 client, the signer)."""
    s3server.s3.create_bucket(Bucket="models")
    s3server.upload_tree("models", "tiny-llm/", model)
    wrong = "WRONG-secret-" + os.urandom(12).hex()
    d = Driver(work)
    d.start("--part-size=1", env={"AWS_SECRET_ACCESS_KEY": None, "AWS_ACCESS_KEY_ID": None})
    needles = [s3server.secret.encode(), wrong.encode()]

    def clean(after):
        time.sleep(0.3)  # the call's threads have ended
        found = scan(d.proc.pid, needles)
        assert found == {}, f"after {after}, secrets in the plugin's memory: {found}"
        # the scan does find what is there: the volume's source, which is kept
        assert "tiny-llm" in scan(d.proc.pid, [b"tiny-llm"])

    try:
        vol = d.ctl("create", "v", "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={s3server.endpoint}", "-p", "allowPlainHTTP=true",
                    *s3server.secrets())
        clean("CreateVolume")
        f = work / "v.json"
        f.write_text(json.dumps(vol))
        with pytest.raises(CtlError):
            d.ctl("stage", "-f", f, work / "s2", *s3server.secrets(secret=wrong))
        clean("a NodeStage refused by S3")
        d.ctl("stage", "-f", f, work / "s", *s3server.secrets())
        clean("a NodeStage that filled")
        d.ctl("unstage", "-f", f, work / "s")
    finally:
        d.stop()


def scan(pid, needles):
    """{needle: [mapping, ...]} for every needle found in a readable mapping."""
    found = {}
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
            lo, hi, perms, name = int(m[1], 16), int(m[2], 16), m[3], m[4]
            if perms[0] != "r" or name in ("[vvar]", "[vsyscall]") or hi - lo > 1 << 30:
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            for n in needles:
                if n in data:
                    found.setdefault(n.decode(), []).append(name or f"anon {m[1]}")
    return found
