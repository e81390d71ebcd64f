"""Fixtures for integration tests: a real warmcache-csi on a unix socket, a
real tmpfs for its store and sources, real bind/overlay mounts. Needs root."""
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

BUILD = Path(os.environ.get("WC_BUILD", Path(__file__).resolve().parents[2] / "build"))
DRIVER = BUILD / "warmcache-csi"
CTL = BUILD / "warmcachectl"


def mounts_under(path):
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4]
            if target == str(path) or target.startswith(str(path) + "/"):
                out.append(target)
    return out


def sha256_tree(root):
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class CtlError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Driver:
    def __init__(self, work, allow=()):
        """allow: more source prefixes the test's plugin may read."""
        self.work = Path(work)
        self.allow = list(allow)
        self.sock = self.work / "csi.sock"
        self.store = self.work / "store"
        self.log = self.work / "driver.log"
        self.proc = None

    def policy_flags(self):
        """What most tests need of the source policy: sources under the test's
        own directory and any bucket, and inline volumes of both. Tests of the
        policy itself pass policy=[...]."""
        here = ",".join([f"file://{self.work}/", *self.allow, "s3://"])
        return [f"--allowed-sources={here}", f"--inline-sources={here}", "--inline-node-credentials"]

    def start(self, *extra, env=None, policy=None, wrap=()):
        """env: variables to set (None values unset); the instance metadata
        service is off unless a test sets it up (no probe of 169.254.169.254).
        wrap: a command the plugin is run under (it must exec it)."""
        self.mark = len(self.log_lines()) if self.log.exists() else 0
        self.logf = open(self.log, "a")
        full = dict(os.environ, AWS_EC2_METADATA_DISABLED="true")
        for k, v in (env or {}).items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        self.proc = subprocess.Popen(
            [*wrap, str(DRIVER), f"--endpoint=unix://{self.sock}", f"--store-root={self.store}",
             f"--state-dir={self.work / 'state'}", "--node-id=it-node",
             *(self.policy_flags() if policy is None else policy), *extra],
            stderr=self.logf, stdout=self.logf, env=full)
        # "serving" is logged once the socket listens; a stale socket from a
        # killed predecessor may still be on disk until then
        served = self.log.read_text().count('"msg":"serving"')
        for _ in range(200):
            if self.log.read_text().count('"msg":"serving"') > served:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("driver did not start serving:\n" + self.log.read_text())

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc:
            return None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.proc = None
        self.logf.close()
        return rc

    def ctl(self, *args, timeout=None):
        cmd = [str(CTL), "-s", str(self.sock), *[str(a) for a in args]]
        if timeout:
            cmd += ["--timeout", str(timeout)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode == 1:
            # "warmcachectl: Method: CODE: message"
            _, _, rest = p.stderr.strip().partition(": ")
            _, _, rest = rest.partition(": ")
            code, _, msg = rest.partition(": ")
            raise CtlError(code, msg)
        if p.returncode != 0:
            raise RuntimeError(f"warmcachectl {args}: exit {p.returncode}: {p.stderr}")
        return json.loads(p.stdout) if p.stdout.strip().startswith("{") else p.stdout

    def ctl_async(self, *args, timeout=None):
        cmd = [str(CTL), "-s", str(self.sock), *[str(a) for a in args]]
        if timeout:
            cmd += ["--timeout", str(timeout)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def create(self, name, source, *more, capacity=None, access=None):
        args = ["create", name, "-p", f"source={source}"]
        for m in more:
            args += ["-p", m]
        if capacity is not None:
            args += ["--capacity", capacity]
        if access:
            args += ["--access", access]
        vol = self.ctl(*args)
        f = self.work / f"{name}.json"
        f.write_text(json.dumps(vol))
        return f

    def log_lines(self):
        return [json.loads(l) for l in self.log.read_text().splitlines() if l.startswith("{")]

    def lines_since_start(self):
        return self.log_lines()[self.mark:]


@pytest.fixture
def work():
    if os.geteuid() != 0:
        pytest.skip("integration tests mount file systems and must run as root")
    d = Path(tempfile.mkdtemp(prefix="wc-it."))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12g", "wc-it", str(d)], check=True)
    yield d
    # a test that failed half-way leaves its plugin running, which would keep
    # this tmpfs (gigabytes of RAM) alive after the lazy unmount
    subprocess.run(["pkill", "-KILL", "-f", f"warmcache-csi --endpoint=unix://{d}/"], check=False)
    for m in sorted(mounts_under(d), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], check=False)
    os.rmdir(d)


@pytest.fixture
def driver(work):
    d = Driver(work).start()
    yield d
    if d.proc:
        rc = d.stop()
        assert rc == 0, "driver did not exit 0 on SIGTERM:\n" + d.log.read_text()[-3000:]
        assert not d.sock.exists(), "driver left its socket behind"


@pytest.fixture
def model(work):
    """A small model-like tree: weights, a config, a nested tokenizer."""
    src = work / "models" / "tiny-llm"
    (src / "tokenizer").mkdir(parents=True)
    (src / "model-00001-of-00002.safetensors").write_bytes(os.urandom(3 << 20))
    (src / "model-00002-of-00002.safetensors").write_bytes(os.urandom(1 << 20))
    (src / "config.json").write_text('{"hidden_size": 64}\n')
    (src / "tokenizer" / "tokenizer.json").write_text('{"vocab": ["a", "b"]}\n')
    (src / "empty.txt").write_bytes(b"")
    return src


def make_source(work, name, mib):
    """A source holding one file of `mib` MiB."""
    src = work / "sources" / name
    src.mkdir(parents=True)
    (src / "weights.bin").write_bytes(bytes([len(name)]) * (mib << 20))
    return src


@pytest.fixture
def small_store(work):
    """A 100 MiB store: two 35 MiB copies fit, a third does not."""
    store = work / "store"
    store.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100m", "wc-small", str(store)], check=True)
    return store


def wait_for(cond, timeout=10):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if cond():
            return True
        time.sleep(0.02)
    return False


SHARDS, SHARD_MIB = 128, 16


@pytest.fixture
def big(work):
    """128 shards of 16 MiB, each with its own content, so a mixed-up or
    truncated copy shows in the hashes."""
    src = work / "big"
    src.mkdir()
    for i in range(SHARDS):
        (src / f"shard-{i:03d}.bin").write_bytes(bytes([i]) * (SHARD_MIB << 20))
    return src


def partial_dir_of(store):
    """The fill in progress in a store, if any."""
    parts = list((store / "content").glob("*.partial"))
    return parts[0] if parts else None


def make_ca(d, names=()):
    """A CA of our own and a server certificate for 127.0.0.1 (and the DNS
    names or IPv4 addresses given) signed by it (openssl): (ca.pem, server.pem, server.key) under d."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
        "-subj", "/CN=warmcache test CA", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1" + "".join(
        f",IP:{n}" if n.replace(".", "").isdigit() else f",DNS:{n}" for n in names) + "\n")
    run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
        "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.ext"), "-out", str(d / "server.pem"))
    return d / "ca.pem", d / "server.pem", d / "server.key"


class S3Server:
    """A real S3-compatible server that verifies SigV4 (versitygw, posix
    backend), on loopback, with its own keys; stopped with the fixture.
    tls: serve https with a certificate from a CA of our own (self.ca);
    keep_alive: keep connections open between requests, as S3 does (by
    default versitygw answers every request with Connection: close)."""

    def __init__(self, root, tls=False, keep_alive=False):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.key, self.secret = "wc-test-key", "wc-test-secret-9c1f0e77"
        (root / "gw").mkdir()
        gw = os.environ.get("VERSITYGW", str(Path(__file__).resolve().parents[2] / ".tools" / "bin" / "versitygw"))
        extra, self.ca = [], None
        if tls:
            self.ca, cert, key = make_ca(root / "tls")
            extra = ["--cert", str(cert), "--key", str(key)]
        self.proc = subprocess.Popen([gw, "--port", f"127.0.0.1:{self.port}", "--access", self.key, "--secret",
                                      self.secret, *extra, *(["--keep-alive"] if keep_alive else []), "posix",
                                      str(root / "gw")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import boto3
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key,
                               aws_secret_access_key=self.secret, region_name="us-east-1",
                               verify=str(self.ca) if self.ca else None)
        for _ in range(100):
            try:
                self.s3.list_buckets()
                return
            except Exception:  # noqa: BLE001  (not listening yet)
                time.sleep(0.05)
        raise RuntimeError("versitygw did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def secrets(self, secret=None):
        return ["--secret", f"awsAccessKeyId={self.key}", "--secret", f"awsSecretAccessKey={secret or self.secret}"]

    def upload_tree(self, bucket, prefix, src):
        for p in sorted(Path(src).rglob("*")):
            if p.is_file():
                self.s3.upload_file(str(p), bucket, prefix + str(p.relative_to(src)))


@pytest.fixture
def s3server(work):
    srv = S3Server(work)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def kube():
    """A real kube-apiserver + etcd for the whole run (kubeapi.py)."""
    if os.geteuid() != 0:
        pytest.skip("integration tests must run as root")
    from kubeapi import KubeAPI
    d = Path(tempfile.mkdtemp(prefix="wc-kube."))
    k = KubeAPI(d)
    yield k
    k.stop()
    if not os.environ.get("WC_KEEP_KUBE_LOGS"):
        import shutil
        shutil.rmtree(d, ignore_errors=True)
