"""oci:// archives: container image layers (whiteouts, links, modes),
ModelPack tar layers and directories oras packed, applied in order onto
the copy's root by `warmcachectl fill` and the plugin; a kill while layers
are applied resumes to the same tree; and hostile layers (paths out,
links out, devices, the store's own directory, damaged streams) fail
naming the entry, with nothing written outside the copy."""
import gzip
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from conftest import CTL, Driver, sha256_tree
from registry import IMAGE_LAYER, FakeRegistry, Registry, fill, push_image

GZ, ZST = IMAGE_LAYER + "+gzip", IMAGE_LAYER + "+zstd"


def F(name, data, mode=0o644):
    return ("f", name, data, mode)


def D(name, mode=0o755):
    return ("d", name, None, mode)


def L(name, target):
    return ("l", name, target, 0o777)


def H(name, target):
    return ("h", name, target, 0o644)


def zstd(b):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=b, capture_output=True, check=True).stdout


def tar(entries, gz=False, fmt=tarfile.PAX_FORMAT):
    """A tar layer of entries (F, D, L, H, or a raw TarInfo with its data)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for kind, name, data, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            if kind == "f":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE, "c": tarfile.CHRTYPE,
                       "p": tarfile.FIFOTYPE}[kind]
            if kind in "lh":
                ti.linkname = data
            t.addfile(ti)
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def tree(root):
    """Every path under root: ("f", sha256, mode), ("d", mode) or ("l", target)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = Path(dirpath) / n
            st = os.lstat(p)
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", st.st_mode & 0o7777)
            else:
                out[rel] = ("f", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mode & 0o7777)
    return out


def h(b):
    return hashlib.sha256(b).hexdigest()


def image():
    """Three layers exercising what an image does, and the tree they make."""
    shard, cfg, deep = os.urandom((12 << 20) + 11), b'{"hidden_size": 64}\n', os.urandom(70000)
    long_dir = "models/" + "d" * 120
    base = tar([
        D("etc"), F("etc/config.yaml", b"a: 1\n", 0o600), F("bin/run", b"#!/bin/sh\necho hi\n", 0o4755),
        H("bin/run2", "bin/run"), L("etc/localtime", "/usr/share/zoneinfo/UTC"), L("lib", "usr/lib"),
        L("etc/os-release", "../usr/lib/os-release"),
        D("old"), F("old/a", b"a"), F("old/b", b"b"), D("old/sub"), F("old/sub/c", b"c"),
        F("gone.txt", b"bye"), F("replaced", b"a file first"), D("models"), F("models/stale.bin", b"stale"),
        F("imp/f", b"under a parent the tar never names"), F("keep/lower", b"lower"),
    ], gz=True, fmt=tarfile.GNU_FORMAT)
    upper = tar([
        F(".wh.gone.txt", b""), F("old/.wh..wh..opq", b""), F("old/new", b"new"), D("old/sub"),
        F("old/sub/d", b"d"), D("replaced"), F("replaced/x", b"x"), F("models/.wh.stale.bin", b""),
        L("imp", "old"), F(".wh.keep", b""), F("keep/child", b"this layer's own"),
    ])
    model = tar([D("models"), F("models/config.json", cfg), F("models/model.safetensors", shard),
                 F(f"{long_dir}/w.bin", deep)], gz=True)
    tok = zstd(tar([F("models/tokenizer.json", b'{"v": 1}'), F("models/.wh.config.json", b"")]))
    want = {
        "etc": ("d", 0o755), "etc/config.yaml": ("f", h(b"a: 1\n"), 0o644),
        "etc/localtime": ("l", "../usr/share/zoneinfo/UTC"), "etc/os-release": ("l", "../usr/lib/os-release"),
        "bin": ("d", 0o755), "bin/run": ("f", h(b"#!/bin/sh\necho hi\n"), 0o755),
        "bin/run2": ("f", h(b"#!/bin/sh\necho hi\n"), 0o755), "lib": ("l", "usr/lib"),
        "old": ("d", 0o755), "old/new": ("f", h(b"new"), 0o644), "old/sub": ("d", 0o755),
        "old/sub/d": ("f", h(b"d"), 0o644), "replaced": ("d", 0o755), "replaced/x": ("f", h(b"x"), 0o644),
        "imp": ("l", "old"), "keep": ("d", 0o755), "keep/child": ("f", h(b"this layer's own"), 0o644),
        "models": ("d", 0o755), "models/tokenizer.json": ("f", h(b'{"v": 1}'), 0o644),
        "models/model.safetensors": ("f", h(shard), 0o644), long_dir: ("d", 0o755),
        f"{long_dir}/w.bin": ("f", h(deep), 0o644),
    }
    return [(base, GZ, None), (upper, IMAGE_LAYER, None), (model, GZ, None), (tok, ZST, None)], want


@pytest.fixture
def registry(work):
    r = Registry(work)
    yield r
    r.stop()


@pytest.fixture
def fake(work):
    f = FakeRegistry(work)
    yield f
    f.stop()


def test_a_container_image_is_applied_layer_by_layer_with_whiteouts(registry, work):
    layers, want = image()
    push_image(registry, "models/modelcar", "v1", layers)
    r = fill(registry.env(), f"oci://{registry.host}/models/modelcar:v1", work / "copy")
    out = json.loads(r.stdout)
    got = tree(work / "copy")
    assert got == want, {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
    assert os.stat(work / "copy/bin/run").st_ino == os.stat(work / "copy/bin/run2").st_ino, "a hard link stays one"
    assert out["objects"] == 4 and out["checksummed_files"] == 4, "each layer checked against its digest"
    assert out["files"] == sum(1 for v in want.values() if v[0] == "f")
    assert out["bytes"] == sum(os.lstat(work / "copy" / k).st_size for k, v in want.items() if v[0] == "f")


def test_modelpack_tar_layers_and_raw_layers_make_one_tree(registry, work):
    shard, tok = os.urandom((9 << 20) + 5), b'{"vocab": ["a"]}\n'
    ann = lambda p: {"org.cncf.model.filepath": p}  # noqa: E731
    layers = [
        (shard, "application/vnd.cncf.model.weight.v1.raw", ann("model.safetensors")),
        (tar([D("tokenizer"), F("tokenizer/tokenizer.json", tok), F("tokenizer/merges.txt", b"a b\n")]),
         "application/vnd.cncf.model.weight.v1.tar", ann("tokenizer")),
        (tar([F("config.json", b"{}")], gz=True), "application/vnd.cncf.model.weight.config.v1.tar+gzip",
         ann("config.json")),
        (zstd(tar([F("README.md", b"# m\n")])), "application/vnd.cncf.model.doc.v1.tar+zstd", ann("README.md")),
    ]
    push_image(registry, "models/mp", "v1", layers)
    fill(registry.env(), f"oci://{registry.host}/models/mp:v1", work / "copy")
    assert sha256_tree(work / "copy") == {"model.safetensors": h(shard), "tokenizer/tokenizer.json": h(tok),
                                         "tokenizer/merges.txt": h(b"a b\n"), "config.json": h(b"{}"),
                                         "README.md": h(b"# m\n")}


def test_a_directory_oras_packed_lands_as_oras_pull_writes_it(registry, work):
    src = work / "tree"
    files = {"weights/a.bin": os.urandom(3 << 20), "weights/sub/b.json": b"{}", "README.md": b"# m\n"}
    for k, v in files.items():
        (src / k).parent.mkdir(parents=True, exist_ok=True)
        (src / k).write_bytes(v)
    registry.oras("push", f"{registry.host}/models/dir:v1", "weights", "README.md", cwd=src)
    fill(registry.env(), f"oci://{registry.host}/models/dir:v1", work / "copy")
    registry.oras("pull", f"{registry.host}/models/dir:v1", "-o", str(work / "pulled"))
    assert sha256_tree(work / "copy") == sha256_tree(work / "pulled") == {k: h(v) for k, v in files.items()}


def test_a_fill_killed_while_applying_layers_resumes_to_the_same_tree(registry, work):
    many = tar([F(f"shards/{i:05d}.bin", os.urandom(4096)) for i in range(12000)], gz=True)
    layers, want = image()
    layers.append((many, GZ, None))  # last: the kill finds every other layer applied, whiteouts and all
    push_image(registry, "models/big", "v1", layers)
    url = f"oci://{registry.host}/models/big:v1"
    fill(registry.env(), url, work / "ref")
    partial = None
    for attempt in range(20):  # kill -9 once files of the layers are being written
        dest = work / f"copy{attempt}"
        p = subprocess.Popen([str(CTL), "fill", url, str(dest), "--json"], env=registry.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None:
            got = list(Path(f"{dest}.warmcache-fill").glob("content/*.partial/shards/*"))
            if len(got) > 100:
                p.send_signal(signal.SIGKILL)
                partial = dest
                break
            time.sleep(0.005)
        p.wait()
        if partial:
            break
        subprocess.run(["rm", "-rf", str(dest), f"{dest}.warmcache-fill"])
    assert partial, "never caught the fill while it applied its layers"
    assert list(Path(f"{partial}.warmcache-fill").glob("content/*.partial/.warmcache-layers/*"))
    r = fill(registry.env(), url, partial)
    out = json.loads(r.stdout)
    assert out["fetched_bytes"] == 0, "the layers were whole: nothing is fetched again"
    assert tree(partial) == tree(work / "ref")


def test_the_plugin_stages_and_publishes_an_image_and_counts_its_tree(registry, work):
    layers, want = image()
    push_image(registry, "models/modelcar", "v2", layers)
    d = Driver(work, allow=[f"oci://{registry.host}/models/"]).start(env={"SSL_CERT_FILE": str(registry.ca)})
    vol = d.create("pvc-img", f"oci://{registry.host}/models/modelcar:v2")
    staging, target = work / "s", work / "t"
    d.ctl("stage", "-f", vol, staging)
    d.ctl("publish", "-f", vol, staging, target, "--readonly")
    assert tree(target) == want
    st = d.ctl("status", "--json")
    assert st["copies"][0]["files_total"] == sum(1 for v in want.values() if v[0] == "f"), st["copies"]
    assert not list((d.store / "content").glob("*/.warmcache-layers")), "the layers go once applied"
    d.ctl("unpublish", "-f", vol, target)
    d.ctl("unstage", "-f", vol, staging)
    assert d.stop() == 0


# ---- hostile layers: a fake registry of our own ------------------------------------------------------

def hostile(fake, work, name, layer, mt=GZ):
    fake.serve_image(name, [(layer, mt, None)])
    r = fill(fake.env(), f"oci://{fake.host}/m:{name}", work / name, check=False)
    assert r.returncode == 1, r.stdout
    assert not (work / name).exists() or not any((work / name).iterdir())
    return r.stderr


@pytest.mark.parametrize("name,entries,says", [
    ("dotdot", [F("../../escaped", b"x")], "\"..\""),
    ("absolute", [F("/etc/escaped", b"x")], "absolute path"),
    ("under-link", [L("etc", "sub"), F("etc/escaped", b"x")], "symbolic link"),
    ("link-up", [L("up", "../../../etc")], "outside the copy"),
    ("link-chain", [D("sub"), L("sub/up", ".."), L("out", "sub/up/../..")], "after a name"),
    ("hardlink-out", [H("passwd", "../../etc/passwd")], "\"..\""),
    ("hardlink-absent", [H("x", "nowhere")], "no layer so far holds"),
    ("hardlink-to-link", [D("a"), D("a/b"), L("a/b/up", "../.."), H("top", "a/b/up")], "not a regular file"),
    ("device", [("c", "null", None, 0o666)], "device"),
    ("fifo", [("p", "pipe", None, 0o644)], "FIFO"),
    ("own-dir", [F(".warmcache-layers/000000.image.tgz", b"x")], "store's own directory"),
    ("whiteout-own-dir", [F(".wh..warmcache-layers", b"")], "store's own directory"),
])
def test_fake_registry_hostile_layer_entries_are_refused_by_name(fake, work, name, entries, says):
    err = hostile(fake, work, name, tar(entries, gz=True))
    assert says in err and "layer sha256:" in err, err
    assert not list(work.rglob("escaped")) and not os.path.exists("/etc/escaped")


def test_a_root_opaque_whiteout_leaves_only_its_layer_and_the_copy_counts_it(registry, work):
    lower = tar([F("a", b"a"), D("d"), F("d/b", b"b")], gz=True)
    upper = tar([F(".wh..wh..opq", b""), F("c", b"c")])
    push_image(registry, "models/opq", "v1", [(lower, GZ, None), (upper, IMAGE_LAYER, None)])
    r = fill(registry.env(), f"oci://{registry.host}/models/opq:v1", work / "copy")
    assert tree(work / "copy") == {"c": ("f", h(b"c"), 0o644)}
    out = json.loads(r.stdout)
    assert out["files"] == 1 and out["bytes"] == 1, out  # what store_verify checks later


def pax_layer(records, then=b"x"):
    """A tar whose first header is PAX data given raw, then a file."""
    ti = tarfile.TarInfo("././@PaxHeader")
    ti.type, ti.size = tarfile.XHDTYPE, len(records)
    raw = ti.tobuf(format=tarfile.USTAR_FORMAT) + records + b"\0" * ((512 - len(records) % 512) % 512)
    return raw + tar([F("f", then)])


@pytest.mark.parametrize("name,records", [
    ("pax-nul", b"9 path=a\n9 path=\0\n"),
    ("pax-space", b"\n\n2 abc"),
    ("pax-short", b"3 a\n"),
    ("pax-long", b"99999999999 path=a\n"),
])
def test_fake_registry_malformed_pax_headers_are_refused(fake, work, name, records):
    assert "PAX" in hostile(fake, work, name, pax_layer(records), IMAGE_LAYER)


def test_fake_registry_entries_that_claim_huge_sizes_are_refused_before_a_byte(fake, work):
    """A size near 2^64 (PAX, or GNU base-256) must not wrap the room the
    store claims: refused as a claim, not written until the stream ends."""
    err = hostile(fake, work, "pax-huge", pax_layer(b"29 size=18446744073709551615\n") + bytes(1 << 20), IMAGE_LAYER)
    assert "claims 18446744073709551615 bytes" in err, err
    assert "PAX size that is not a number" in hostile(fake, work, "pax-neg", pax_layer(b"11 size=-1\n"), IMAGE_LAYER)
    raw = bytearray(tar([F("f", b"x")]))
    raw[124:136] = b"\x80" + (1 << 62).to_bytes(11, "big")
    raw[148:156] = b" " * 8
    raw[148:156] = f"{sum(raw[:512]):06o}\0 ".encode()
    assert "claims 4611686018427387904 bytes" in hostile(fake, work, "b256", bytes(raw), IMAGE_LAYER)


def test_fake_registry_damaged_layer_streams_fail_clearly(fake, work):
    good = tar([F("a.bin", os.urandom(1 << 20))], gz=True)
    assert "gzip" in hostile(fake, work, "cut", good[: len(good) // 2])
    assert "not valid gzip" in hostile(fake, work, "notgz", b"\x1f\x8b\x07" + bytes(5000))
    raw = bytearray(tar([F("a.bin", b"x" * 1000)]))
    raw[148:156] = b"0000000\0"
    assert "checksum" in hostile(fake, work, "badsum", bytes(raw), IMAGE_LAYER)
    z = zstd(tar([F("a.bin", os.urandom(1 << 20))]))
    assert "zstd stream ends early" in hostile(fake, work, "zcut", z[: len(z) // 2], ZST)
    # a frame header with its reserved bit set: never a frame (random bytes sometimes were one, cut short)
    assert "not valid zstd" in hostile(fake, work, "notzstd", b"\x28\xb5\x2f\xfd" + b"\xff" * 5000, ZST)


def test_fake_registry_a_layer_that_unpacks_past_the_store_fails_naming_sizes(fake, work):
    """A gzip bomb (200 MiB of zeros in 200 KiB) into a 48 MiB store: room is
    claimed before each file is written, so the fill stops with sizes named
    instead of filling the node's disk. The tmpfs is mounted in the fill's own
    mount namespace: the host's mounts are untouched."""
    bomb = tar([F("zeros.bin", bytes(200 << 20))], gz=True)
    assert len(bomb) < 1 << 20
    fake.serve_image("bomb", [(bomb, GZ, None)])
    small = work / "small"
    small.mkdir()
    script = 'mount --make-rprivate / && mount -t tmpfs -o size=48m tmpfs "$3" && exec "$0" fill "$1" "$3/copy"'
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, str(CTL), f"oci://{fake.host}/m:bomb", "-", str(small)],
                       env=fake.env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout
    assert "needs 200" in r.stderr and "free of 48" in r.stderr, r.stderr
    assert not any(small.iterdir()), "the tmpfs went with the fill's namespace"
    # small entries cost inodes: 100,000 empty directories in a few hundred KiB, into a store of 50,000 inodes
    dirs = tar([D(f"d/{i:06d}") for i in range(100000)], gz=True)
    fake.serve_image("dirs", [(dirs, GZ, None)])
    script = script.replace("size=48m", "size=48m,nr_inodes=50000")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, str(CTL), f"oci://{fake.host}/m:dirs", "-", str(small)],
                       env=fake.env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "has inodes for" in r.stderr, r.stderr
