"""Bounded time and memory against any server (issue #13, finding 12).

S3 side: a fake S3 listing server on loopback (it generates ListObjectsV2
pages; it checks no signature, which the real-server tests do) plays what a
real one cannot be made to do: a continuation token that goes round in a
circle, a listing that never ends, and two million keys. Kubernetes side: a
fake API server plays a PV list that comes in pages and a watch that stalls;
the warm-nodes annotation is checked against the real kube-apiserver."""
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from conftest import CtlError, Driver, make_source, wait_for

PAGE = 1000


class FakeS3Lister:
    """pages(token) -> (keys [(name, size)], next_token or None)."""

    def __init__(self, pages):
        self.requests = 0
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                fake.requests += 1
                q = parse_qs(urlparse(self.path).query)
                prefix = q.get("prefix", [""])[0]
                keys, nxt = pages(q.get("continuation-token", [""])[0])
                parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult '
                         'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>',
                         f"<Prefix>{prefix}</Prefix><KeyCount>{len(keys)}</KeyCount><MaxKeys>{PAGE}</MaxKeys>",
                         f"<IsTruncated>{'true' if nxt else 'false'}</IsTruncated>"]
                if nxt:
                    parts.append(f"<NextContinuationToken>{nxt}</NextContinuationToken>")
                parts += [f"<Contents><Key>{prefix}{k}</Key><ETag>&quot;e{len(k)}&quot;</ETag><Size>{s}</Size>"
                          "</Contents>" for k, s in keys]
                parts.append("</ListBucketResult>")
                body = "".join(parts).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.endpoint = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


SECRETS = ["--secret", "awsAccessKeyId=fake", "--secret", "awsSecretAccessKey=fake-secret"]


def create(d, fake, capacity=None, timeout=60):
    args = ["create", "v", "-p", "source=s3://bkt/data/", "-p", f"endpoint={fake.endpoint}", "-p",
            "allowPlainHTTP=true", *SECRETS]
    if capacity:
        args += ["--capacity", str(capacity)]
    return d.ctl(*args, timeout=timeout)


def test_a_listing_whose_token_goes_round_in_a_circle_fails_at_once(driver):
    cycle = {"": "A", "A": "B", "B": "A"}
    fake = FakeS3Lister(lambda t: ([(f"{t or '0'}-{i:04d}", 1) for i in range(PAGE)], cycle[t]))
    try:
        t0 = time.time()
        with pytest.raises(CtlError) as ei:
            create(driver, fake, timeout=30)
        assert time.time() - t0 < 10
        assert "continuation token" in ei.value.message and "circle" in ei.value.message, ei.value.message
        assert fake.requests <= 4
    finally:
        fake.close()


def test_a_listing_that_never_ends_fails_within_the_list_timeout(work):
    d = Driver(work).start("--list-timeout=3")
    fake = FakeS3Lister(lambda t: ([(f"{int(t or 0):09d}-{i:04d}", 1) for i in range(PAGE)], str(int(t or 0) + 1)))
    try:
        t0 = time.time()
        with pytest.raises(CtlError) as ei:
            create(d, fake, timeout=60)
        took = time.time() - t0
        assert 2.5 < took < 15, took
        assert ei.value.code == "DEADLINE_EXCEEDED" and "--list-timeout" in ei.value.message, ei.value.message
        assert d.stop() == 0
    finally:
        fake.close()


def peak_rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def test_two_million_keys_against_a_one_tib_request_fail_out_of_range_in_little_memory(work):
    d = Driver(work).start("--mode=controller")
    size = 600 << 10  # 2M keys of 600 KiB: 1.14 TiB, more than 1 TiB only near the end
    pages = 2_000_000 // PAGE

    def page(t):
        n = int(t or 0)
        return [(f"shard-{n:05d}/{i:04d}.bin", size) for i in range(PAGE)], (str(n + 1) if n + 1 < pages else None)

    fake = FakeS3Lister(page)
    try:
        with pytest.raises(CtlError) as ei:
            create(d, fake, capacity=1 << 40, timeout=300)
        assert ei.value.code == "OUT_OF_RANGE", ei.value.message
        assert "1.0 TiB" in ei.value.message, ei.value.message
        assert fake.requests > pages * 0.8, "the listing stopped as soon as it passed the request"
        rss = peak_rss_mib(d.proc.pid)
        print(f"peak RSS of the controller after listing {fake.requests * PAGE} keys: {rss:.1f} MiB")
        if not os.environ.get("ASAN_OPTIONS"):  # ASan's shadow memory is not ours
            assert rss < 64, rss
        assert d.stop() == 0
    finally:
        fake.close()


class FakeKubeAPI:
    """Just enough of an API server for the node plugin's reporter and
    pre-warmer: its Node, PVs in pages of 2 (as a real one does with limit),
    and a PV watch that sends nothing and never ends."""

    def __init__(self, n_pvs=5):
        self.lists, self.watches = [], []
        fake = self
        pvs = [{"metadata": {"name": f"pv-{i}", "resourceVersion": "1"}, "spec": {}} for i in range(n_pvs)]

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, obj):
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                u = urlparse(self.path)
                q = parse_qs(u.query)
                if u.path.startswith("/api/v1/nodes/"):
                    return self.reply({"metadata": {"name": u.path.rsplit("/", 1)[1], "labels": {}}})
                if u.path == "/api/v1/persistentvolumes" and "watch" in q:
                    fake.watches.append(time.time())
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.flush()
                    time.sleep(3600)  # a stalled watch: nothing, forever
                    return
                if u.path == "/api/v1/persistentvolumes":
                    fake.lists.append(q)
                    limit = int(q.get("limit", ["100000"])[0])
                    start = int(q.get("continue", ["0"])[0])
                    items = pvs[start:start + min(limit, 2)]
                    meta = {"resourceVersion": "7"}
                    if start + len(items) < len(pvs):
                        meta["continue"] = str(start + len(items))
                    return self.reply({"kind": "PersistentVolumeList", "metadata": meta, "items": items})
                self.reply({})

            do_PATCH = do_POST = do_GET

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


def test_pv_lists_come_in_pages_and_a_stalled_watch_is_cut(work):
    fake = FakeKubeAPI()
    (work / "token").write_text("t\n")
    try:
        d = Driver(work).start(f"--kube={fake.url}", f"--kube-token-file={work / 'token'}", "--kube-watch-timeout=2")
        assert wait_for(lambda: len(fake.watches) >= 2, timeout=20), "the stalled watch was never given up"
        assert fake.watches[1] - fake.watches[0] < 12
        assert fake.lists and all("limit" in q for q in fake.lists), fake.lists
        assert any(q.get("continue") == ["4"] for q in fake.lists), "the list was not followed to its last page"
        assert d.stop() == 0
    finally:
        fake.close()


def test_a_long_warm_nodes_annotation_is_kept_whole(work, kube):
    """The annotation names every warm node: with hundreds of them it passes
    4 KiB, and adding this node must not cut a name in half."""
    others = [f"ip-10-0-{i // 250}-{i % 250}.us-west-2.compute.internal" for i in range(140)]
    have = ",".join(others)
    assert len(have) > 5000
    kube.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "it-node"}})
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "pv-wide", "annotations": {"warmcache.csi.dev/warm-nodes": have}},
                "spec": {"accessModes": ["ReadOnlyMany"], "capacity": {"storage": "1Gi"},
                         "csi": {"driver": "warmcache.csi.dev", "volumeHandle": "pv-wide"}}})
    d = Driver(work).start(*kube.plugin_flags("node"))
    try:
        vol = d.create("w", f"file://{make_source(work, 'w', 1)}", "csi.storage.k8s.io/pv/name=pv-wide")
        d.ctl("stage", "-f", vol, work / "s")

        def warm():
            return kube.get("pv", "pv-wide")["metadata"]["annotations"]["warmcache.csi.dev/warm-nodes"].split(",")

        assert wait_for(lambda: "it-node" in warm(), timeout=20), warm()[-3:]
        assert warm() == others + ["it-node"]
    finally:
        assert d.stop() == 0
