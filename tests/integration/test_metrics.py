"""Prometheus metrics: after a fill from a real S3 server through a proxy
that breaks 10% of requests, and a second volume over the same content,
`curl /metrics` returns exposition text that the reference parser
(prometheus_client) reads, with the numbers that happened: one fill, its
bytes, one hit, retries and errors by kind, the store's size. No secret and
no user data appear in it."""
import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from conftest import Driver, sha256_tree
from faultproxy import FaultProxy
from kubeapi import free_port




def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def test_metrics_are_valid_exposition_with_what_happened(work, s3server, model):
    s3server.s3.create_bucket(Bucket="models")
    s3server.upload_tree("models", "tiny-llm/", model)
    port = free_port()
    d = Driver(work)
    d.start(f"--metrics-address=127.0.0.1:{port}", "--part-size=1", "--s3-throughput=10")
    try:
        with FaultProxy(s3server.endpoint, rate=0.15, seed=7, kinds=("slowdown", "toomany", "reset", "truncate"),
                        limit_rps=20) as fp:  # and a prefix limit the first burst of requests meets
            for name in ("a", "b"):
                vol = d.ctl("create", name, "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={fp.endpoint}", "-p", "allowPlainHTTP=true",
                            *s3server.secrets())
                f = work / f"{name}.json"
                f.write_text(json.dumps(vol))
                d.ctl("stage", "-f", f, work / f"s-{name}", *s3server.secrets())
            faults = sum(fp.counts[k] for k in fp.kinds)
            throttled = fp.counts["slowdown"] + fp.counts["toomany"]
        assert sha256_tree(work / "s-b") == sha256_tree(model)
        text = scrape(port)
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
        assert fams["warmcache_fills"].type == "counter"
        assert fams["warmcache_fill_duration_seconds"].type == "histogram"
        assert value[("warmcache_fills_total", (("result", "ok"),))] == 1
        assert value[("warmcache_fill_bytes_total", ())] == sum(p.stat().st_size for p in model.rglob("*")
                                                                 if p.is_file())
        assert value[("warmcache_fill_duration_seconds_count", ())] == 1
        assert value[("warmcache_fill_duration_seconds_bucket", (("le", "+Inf"),))] == 1
        assert value[("warmcache_cache_hits_total", ())] == 1 and value[("warmcache_cache_misses_total", ())] == 1
        assert value[("warmcache_fills_active", ())] == 0
        # 10 Gb/s at 85 MB/s a request; none left in flight once the fills are over
        assert value[("warmcache_s3_request_budget", ())] == 15
        assert value[("warmcache_s3_requests_in_flight", ())] == 0
        assert value[("warmcache_store_capacity_bytes", ())] > value[("warmcache_store_used_bytes", ())] > 0
        errors = sum(v for (n, _), v in value.items() if n == "warmcache_s3_errors_total")
        assert faults >= 1  # the seed breaks a few of the requests
        assert errors >= faults and value[("warmcache_s3_retries_total", ())] >= 1
        # 503 SlowDown and 429 both say "slow down": an admin's alert on throttling sees both
        assert fp.counts["toomany"] >= 1, fp.counts
        assert value[("warmcache_s3_errors_total", (("kind", "throttled"),))] >= throttled
        # each SlowDown burst halved the rate to the prefix (rate.h); the limit stays after the fills
        assert value[("warmcache_s3_rate_limit_cuts_total", ())] >= 1
        assert value[("warmcache_s3_rate_limited_prefixes", ())] == 1
        assert value[("warmcache_s3_rate_limit_requests_per_second", ())] >= 2
        assert s3server.secret not in text and "tiny-llm" not in text and "models" not in text
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
            raise AssertionError("/ should be 404")
        except urllib.error.HTTPError as e:
            assert e.code == 404
    finally:
        assert d.stop() == 0
