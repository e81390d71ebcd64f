"""The parallel S3 fill engine against a real S3 server (versitygw, which
checks signatures), alone (`warmcachectl fill`) and in the plugin: parts of a
large object fetched at once and placed whole, faults between us and the
server (a proxy answering 503 SlowDown, resetting connections and cutting
bodies), faults that never stop, and a fill killed with SIGKILL half way that
resumes from its journaled parts."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import S3Server, sha256_tree
from faultproxy import FaultProxy


@pytest.fixture
def bucket(s3server, model):
    s3server.s3.create_bucket(Bucket="models")
    s3server.upload_tree("models", "tiny-llm/", model)
    s3server.s3.put_object(Bucket="models", Key="tiny-llm/shards/big.bin", Body=os.urandom(24 << 20 | 12345))
    return "models"


def served(s3server, bucket, prefix="tiny-llm/"):
    """sha256 of every object, as the server has it."""
    import hashlib
    out = {}
    for page in s3server.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            body = s3server.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            out[o["Key"][len(prefix):]] = hashlib.sha256(body).hexdigest()
    return out


def fill(s3server, endpoint, dest, *extra, check=True):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=s3server.key, AWS_SECRET_ACCESS_KEY=s3server.secret)
    if s3server.ca:
        env["AWS_CA_BUNDLE"] = str(s3server.ca)
    ctl = os.path.join(os.environ["WC_BUILD"], "warmcachectl")
    return subprocess.run([ctl, "fill", "s3://models/tiny-llm/", str(dest), "-p", f"endpoint={endpoint}", "--json",
                           *extra], env=env, capture_output=True, text=True, check=check, timeout=120)


def test_fill_alone_is_byte_identical_and_leaves_no_work_dir(s3server, bucket, work):
    r = fill(s3server, s3server.endpoint, work / "copy", "--part-size", "1", "--connections", "8")
    out = json.loads(r.stdout)
    assert out["files"] == 6 and out["fetched_bytes"] == out["bytes"] and out["retries"] == 0
    assert sha256_tree(work / "copy") == served(s3server, bucket)
    assert not (work / "copy.warmcache-fill").exists()


def test_fill_alone_takes_keys_from_a_secret_file_once(s3server, bucket, work):
    keys = work / "keys"
    keys.write_text(f"awsAccessKeyId={s3server.key}\nawsSecretAccessKey={s3server.secret}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    ctl = os.path.join(os.environ["WC_BUILD"], "warmcachectl")
    base = [ctl, "fill", "s3://models/tiny-llm/", str(work / "copy"), "-p", f"endpoint={s3server.endpoint}"]
    r = subprocess.run(base + ["--secret-file", str(keys)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sha256_tree(work / "copy") == served(s3server, bucket)
    r = subprocess.run(base + ["--secret-file", str(keys), "--secret-file", str(keys)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--secret-file is given once" in r.stderr
    big = work / "big-keys"
    big.write_text(keys.read_text() + "#" * 70000 + "\n")
    r = subprocess.run(base + ["--secret-file", str(big)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "larger than 64 KiB" in r.stderr


def test_fill_alone_refuses_a_directory_with_files(s3server, bucket, work):
    (work / "copy").mkdir()
    (work / "copy" / "mine.txt").write_text("keep me")
    r = fill(s3server, s3server.endpoint, work / "copy", check=False)
    assert r.returncode == 2 and "is not empty" in r.stderr
    assert (work / "copy" / "mine.txt").read_text() == "keep me"


def test_ten_percent_of_requests_broken_still_byte_identical(s3server, bucket, work):
    with FaultProxy(s3server.endpoint, rate=0.10, seed=11) as fp:
        r = fill(s3server, fp.endpoint, work / "copy", "--part-size", "1", "--connections", "8")
        counts = dict(fp.counts)
    out = json.loads(r.stdout)
    faults = counts["slowdown"] + counts["reset"] + counts["truncate"]
    assert faults >= 3, counts  # 30 requests or more: the seed gives a few of each kind
    assert out["retries"] >= 1
    assert sha256_tree(work / "copy") == served(s3server, bucket)


def test_plugin_fill_through_faults_is_byte_identical(work, s3server, bucket):
    from conftest import Driver
    d = Driver(work)
    d.start("--part-size", "1")
    try:
        with FaultProxy(s3server.endpoint, rate=0.10, seed=5) as fp:
            vol = d.ctl("create", "v", "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={fp.endpoint}", "-p", "allowPlainHTTP=true",
                        *s3server.secrets())
            f = work / "v.json"
            f.write_text(json.dumps(vol))
            d.ctl("stage", "-f", f, work / "s", *s3server.secrets())
            assert fp.counts["requests"] > 25
        assert sha256_tree(work / "s") == served(s3server, bucket)
        d.ctl("unstage", "-f", f, work / "s")
    finally:
        d.stop()


def test_fills_on_a_node_share_one_request_budget(work, s3server, bucket):
    """Two volumes filling at once on one node: the requests in flight of
    both together never exceed --s3-connections, and the second fill, started
    while the first holds the whole budget, gets its half as the first's
    requests end (it is not starved to one request)."""
    from conftest import Driver
    for i in range(4):
        s3server.s3.put_object(Bucket=bucket, Key=f"second/shard{i}.bin", Body=os.urandom(6 << 20))
    d = Driver(work)
    d.start("--part-size", "1", "--s3-connections", "4")
    try:
        with FaultProxy(s3server.endpoint, rate=0.0, bytes_per_s=2 << 20) as fp:
            files = []
            for name, src in (("a", "s3://models/tiny-llm/"), ("b", "s3://models/second/")):
                vol = d.ctl("create", name, "-p", f"source={src}", "-p", f"endpoint={fp.endpoint}", "-p", "allowPlainHTTP=true",
                            *s3server.secrets())
                f = work / f"{name}.json"
                f.write_text(json.dumps(vol))
                files.append(f)
            first = d.ctl_async("stage", "-f", files[0], work / "sa", *s3server.secrets())
            deadline = time.monotonic() + 30
            while fp.inflight.get("/models/tiny-llm", 0) < 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fp.inflight.get("/models/tiny-llm", 0) == 4, fp.inflight  # the first fill alone: all of it
            d.ctl("stage", "-f", files[1], work / "sb", *s3server.secrets())
            first.wait(timeout=60)
            assert fp.peak_total <= 4, fp.peak
            assert fp.peak["/models/second"] >= 2, fp.peak
        assert sha256_tree(work / "sa") == served(s3server, bucket)
        assert sha256_tree(work / "sb") == served(s3server, bucket, "second/")
        for f, s in ((files[0], "sa"), (files[1], "sb")):
            d.ctl("unstage", "-f", f, work / s)
    finally:
        d.stop()


def test_a_large_object_is_fetched_in_larger_parts(s3server, bucket, work):
    """By default a file over 512 MiB takes parts of 16 MiB and more (at most
    64 of them): half the GETs of 8 MiB parts, for S3's per-prefix rate."""
    size = (520 << 20) + 4321
    s3server.s3.put_object(Bucket="models", Key="huge/shard.bin", Body=os.urandom(size))
    env = dict(os.environ, AWS_ACCESS_KEY_ID=s3server.key, AWS_SECRET_ACCESS_KEY=s3server.secret)
    ctl = os.path.join(os.environ["WC_BUILD"], "warmcachectl")
    with FaultProxy(s3server.endpoint, rate=0.0) as fp:
        r = subprocess.run([ctl, "fill", "s3://models/huge/", str(work / "copy"), "-p", f"endpoint={fp.endpoint}",
                            "--json"], env=env, capture_output=True, text=True, timeout=300)
        gets = [h for h in fp.heads if h.startswith("GET /models/huge/shard.bin")]
    assert r.returncode == 0, r.stderr
    assert (work / "copy" / "shard.bin").stat().st_size == size
    assert len(gets) == -(-size // (16 << 20)), len(gets)  # 33, not 66
    assert served(s3server, bucket, "huge/") == sha256_tree(work / "copy")


def test_a_prefix_request_limit_slows_the_fill_and_never_fails_it(s3server, bucket, work):
    """S3's request-rate limit per prefix, played by the proxy at 10 GETs a
    second against 16 connections: the node finds the rate S3 allows (fewer
    SlowDowns than successes, not a storm) and the fill ends whole."""
    with FaultProxy(s3server.endpoint, rate=0.0, limit_rps=10) as fp:
        r = fill(s3server, fp.endpoint, work / "copy", "--part-size", "1", "--connections", "16", check=False)
        counts = dict(fp.counts)
    print("prefix limit 10/s:", counts, r.stdout)
    assert r.returncode == 0, r.stderr
    assert sha256_tree(work / "copy") == served(s3server, bucket)
    gets = counts["requests"] - counts["limited"]
    assert counts["limited"] >= 1, counts  # the limit was met
    assert counts["limited"] < gets, counts
    out = json.loads(r.stdout)
    assert out["retries"] == counts["limited"], (out, counts)


def test_faults_that_never_stop_end_in_a_clear_error(s3server, bucket, work):
    with FaultProxy(s3server.endpoint, rate=1.0, kinds=("slowdown",)) as fp:
        t0 = time.monotonic()
        r = fill(s3server, fp.endpoint, work / "copy", check=False)
        took = time.monotonic() - t0
    assert r.returncode == 1
    assert "gave up after 6 attempts" in r.stderr and "SlowDown" in r.stderr, r.stderr
    assert took < 30  # capped backoff: seconds, not minutes
    assert not (work / "copy").exists()


def test_kill9_half_way_resumes_from_written_parts(s3server, bucket, work):
    """SIGKILL at about half of the large object; the same command again
    fetches again at most what was in flight: connections x part size."""
    conns, part = 4, 1 << 20
    with FaultProxy(s3server.endpoint, rate=0.0, bytes_per_s=6 << 20) as fp:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=s3server.key, AWS_SECRET_ACCESS_KEY=s3server.secret)
        ctl = os.path.join(os.environ["WC_BUILD"], "warmcachectl")
        cmd = [ctl, "fill", "s3://models/tiny-llm/", str(work / "copy"), "-p", f"endpoint={fp.endpoint}", "--json",
               "--part-size", "1", "--connections", str(conns)]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wd = work / "copy.warmcache-fill"
        written = 0
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            du = subprocess.run(["du", "-sB1", str(wd)], capture_output=True, text=True).stdout.split()
            written = int(du[0]) if du else 0
            if written >= 14 << 20:  # about half of the 24 MiB object (and the small files)
                p.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        p.wait()
        assert p.returncode == -signal.SIGKILL, f"the fill ended before it could be killed: {p.stderr.read()}"
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["resumed_bytes"] >= written - conns * part - (1 << 20), (written, out)  # 1 MiB: du's own blocks
    assert out["fetched_bytes"] + out["resumed_bytes"] == out["bytes"]
    assert sha256_tree(work / "copy") == served(s3server, bucket)


@pytest.mark.parametrize("kind", ["longer", "endless"])
def test_a_body_longer_than_asked_for_fails_at_once(s3server, bucket, work, kind):
    """A lying Content-Length, or a body that never ends: never written past
    the range, never retried (the server is broken, not busy), said clearly."""
    with FaultProxy(s3server.endpoint, rate=1.0, kinds=(kind,)) as fp:
        t0 = time.monotonic()
        r = fill(s3server, fp.endpoint, work / "copy", check=False)
        took = time.monotonic() - t0
    assert r.returncode == 1
    assert "the server sent more bytes than asked for" in r.stderr, r.stderr
    assert took < 10 and not (work / "copy").exists()


def test_a_slowloris_server_is_cut_off_and_given_up_on(s3server, bucket, work):
    """A byte every half second: under the 1 KiB/s floor for the stall
    timeout (here 1 s, default 30 s), cut, retried, then given up on."""
    with FaultProxy(s3server.endpoint, rate=1.0, kinds=("slowloris",)) as fp:
        t0 = time.monotonic()
        r = fill(s3server, fp.endpoint, work / "copy", "--stall-timeout", "1", check=False)
        took = time.monotonic() - t0
    assert r.returncode == 1
    assert "gave up after 6 attempts" in r.stderr and "stalled (under 1 KiB/s for 1s)" in r.stderr, r.stderr
    assert took < 60 and not (work / "copy").exists()


def test_a_fill_over_https_on_connections_kept_open_finishes(work):
    """S3 keeps connections open between requests; over TLS a client must not
    wait on the socket for bytes its TLS library already read (OpenSSL's
    read-ahead did: every fill on a reused connection stalled until the 30 s
    stall cut, and again on every retry)."""
    (work / "ka").mkdir()
    srv = S3Server(work / "ka", tls=True, keep_alive=True)
    try:
        srv.s3.create_bucket(Bucket="models")
        for i in range(6):  # more parts than connections: each connection serves several requests
            srv.s3.put_object(Bucket="models", Key=f"tiny-llm/shard-{i}.bin", Body=os.urandom((3 << 20) + i))
        t0 = time.monotonic()
        r = fill(srv, srv.endpoint, work / "copy", "--part-size", "1", "--connections", "2", check=False)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["retries"] == 0 and took < 10, (took, r.stdout)
        assert sha256_tree(work / "copy") == served(srv, "models")
    finally:
        srv.stop()
