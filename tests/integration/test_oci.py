"""oci:// sources: artifacts of files (pushed by oras, or ModelPack raw
layers) from a real registry (docker-registry, anonymous and behind
htpasswd) filled byte-identical by `warmcachectl fill` and by the plugin;
two tags of one artifact are one copy; and registries that lie (a fake of
our own: wrong bytes, endless or escaping manifests, redirects, tokens)
fail with a message naming what is wrong, with nothing placed."""
import hashlib
import json
import os
import subprocess
import time

import pytest

from conftest import CTL, Driver, sha256_tree
from registry import FakeRegistry, Registry, digest, fill, push


def model_files():
    """A model-like tree at this machine's scale: two shards, configs, a tokenizer."""
    return {
        "model-00001-of-00002.safetensors": os.urandom((20 << 20) + 4097),
        "model-00002-of-00002.safetensors": os.urandom(9 << 20),
        "config.json": b'{"hidden_size": 64}\n',
        "generation_config.json": b'{"do_sample": true}\n',
        "tokenizer/tokenizer.json": b'{"vocab": ["a", "b"]}\n',
    }


def hashes(files):
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


@pytest.fixture
def registry(work):
    r = Registry(work)
    yield r
    r.stop()


def test_a_modelpack_artifact_fills_byte_identical_and_verified(registry, work):
    files = model_files()
    push(registry, "models/tiny-llm", ["v1"], files, modelpack=True)
    r = fill(registry.env(), f"oci://{registry.host}/models/tiny-llm:v1", work / "copy")
    out = json.loads(r.stdout)
    assert out["files"] == len(files) and out["bytes"] == sum(map(len, files.values()))
    assert out["checksummed_files"] == len(files), "every file is checked against its layer's sha256"
    assert sha256_tree(work / "copy") == hashes(files)
    assert not (work / "copy.warmcache-fill").exists()


def test_an_oras_artifact_fills_as_oras_pull_writes_it(registry, work):
    files = model_files()
    src = work / "tree"
    for k, v in files.items():
        (src / k).parent.mkdir(parents=True, exist_ok=True)
        (src / k).write_bytes(v)
    registry.oras("push", f"{registry.host}/models/oras-llm:v1", *files.keys(), cwd=src)
    fill(registry.env(), f"oci://{registry.host}/models/oras-llm:v1", work / "copy")
    assert sha256_tree(work / "copy") == hashes(files)
    registry.oras("pull", f"{registry.host}/models/oras-llm:v1", "-o", str(work / "pulled"))
    assert sha256_tree(work / "pulled") == sha256_tree(work / "copy")


def test_a_digest_pins_and_a_missing_tag_is_named(registry, work):
    files = {"w.bin": os.urandom(1 << 20)}
    d = push(registry, "m", ["v1"], files)
    fill(registry.env(), f"oci://{registry.host}/m@{d}", work / "a")
    assert sha256_tree(work / "a") == hashes(files)
    r = fill(registry.env(), f"oci://{registry.host}/m:v2", work / "b", check=False)
    assert r.returncode == 1 and "HTTP 404" in r.stderr and "no such repository, tag or blob" in r.stderr, r.stderr
    assert not (work / "b").exists() or not any((work / "b").iterdir())


def test_a_registry_behind_a_password_takes_the_secret(work):
    pw, wrong = "pw-" + os.urandom(8).hex(), "pw-" + os.urandom(8).hex()
    reg = Registry(work, user=("puller", pw))
    try:
        files = {"w.bin": os.urandom(3 << 20), "c.json": b"{}"}
        push(reg, "private/m", ["v1"], files, auth=("puller", pw))
        url = f"oci://{reg.host}/private/m:v1"
        r = fill(reg.env(), url, work / "a", check=False)
        assert r.returncode == 1 and "wants a user name and password" in r.stderr, r.stderr
        r = fill(reg.env(), url, work / "b", "--secret", "username=puller", "--secret", f"password={wrong}", check=False)
        assert r.returncode == 1 and "HTTP 401" in r.stderr and wrong not in r.stderr, r.stderr
        r = fill(reg.env(), url, work / "c", "--secret", "username=puller", "--secret", f"password={pw}")
        assert sha256_tree(work / "c") == hashes(files) and pw not in r.stderr + r.stdout
        # what docker login / oras login write, and what an image pull Secret holds
        import base64
        cfg = {"auths": {f"https://{reg.host}": {"auth": base64.b64encode(f"puller:{pw}".encode()).decode()}}}
        (work / "config.json").write_text(json.dumps(cfg))
        fill(reg.env(), url, work / "d", "--docker-config", work / "config.json")
        assert sha256_tree(work / "d") == hashes(files)
        # the plugin, with the config as a node-stage secret's .dockerconfigjson
        d = Driver(work, allow=[f"oci://{reg.host}/"]).start(env={"SSL_CERT_FILE": str(reg.ca)})
        secret = ["--secret", ".dockerconfigjson=" + json.dumps(cfg)]
        vol = d.work / "pvc.json"
        vol.write_text(json.dumps(d.ctl("create", "pvc", "-p", f"source={url}", *secret)))
        d.ctl("stage", "-f", vol, work / "s", *secret)
        assert sha256_tree(work / "s") == hashes(files)
        d.ctl("unstage", "-f", vol, work / "s")
        assert d.stop() == 0
        assert pw not in d.log.read_text() and cfg["auths"][f"https://{reg.host}"]["auth"] not in d.log.read_text()
    finally:
        reg.stop()


def test_a_registry_behind_the_token_flow_gives_a_pull_token_for_the_secret(work):
    """docker-registry with token auth: the 401 names a realm (a token
    server of the test's own, whose JWT the registry verifies); the fill
    asks it for repository:REPO:pull with the Secret, then pulls with the
    token. Without the Secret, or with a wrong one, the message says what
    to fix."""
    user = ("puller", "pw-" + os.urandom(8).hex())
    reg = Registry(work, user=user, token=True)
    try:
        files = model_files()
        src = work / "tree"
        for k, v in files.items():
            (src / k).parent.mkdir(parents=True, exist_ok=True)
            (src / k).write_bytes(v)
        reg.oras("push", f"{reg.host}/models/tok:v1", *files.keys(), cwd=src, user=user)
        url = f"oci://{reg.host}/models/tok:v1"
        reg.tokens.seen.clear()
        r = fill(reg.env(), url, work / "copy", "--secret", f"username={user[0]}", "--secret", f"password={user[1]}")
        assert sha256_tree(work / "copy") == hashes(files)
        # one token for the fill's connections, for pulling this repository only, asked with the Secret
        assert [p for p, _ in reg.tokens.seen] == ["/token?service=warmcache-registry&scope=repository%3Amodels%2Ftok%3Apull"]
        assert reg.tokens.seen[0][1].get("Authorization", "").startswith("Basic ")
        assert user[1] not in r.stdout + r.stderr
        r = fill(reg.env(), url, work / "anon", check=False)
        assert r.returncode == 1 and "refused an anonymous pull" in r.stderr, r.stderr
        r = fill(reg.env(), url, work / "wrong", "--secret", f"username={user[0]}", "--secret", "password=nope",
                 check=False)
        assert r.returncode == 1 and "401" in r.stderr and "nope" not in r.stderr, r.stderr
    finally:
        reg.stop()


def test_two_tags_of_one_artifact_are_one_copy_in_the_plugin(registry, work):
    files = model_files()
    push(registry, "models/tiny-llm", ["v1", "stable"], files)
    d = Driver(work, allow=[f"oci://{registry.host}/models/"]).start(env={"SSL_CERT_FILE": str(registry.ca)})
    a = d.create("pvc-a", f"oci://{registry.host}/models/tiny-llm:v1")
    b = d.create("pvc-b", f"oci://{registry.host}/models/tiny-llm:stable")
    d.ctl("stage", "-f", a, work / "sa")
    d.ctl("stage", "-f", b, work / "sb")
    assert sha256_tree(work / "sa") == hashes(files) == sha256_tree(work / "sb")
    st = d.ctl("status", "--json")
    assert len(st["copies"]) == 1 and st["copies"][0]["refs"] == 2, st["copies"]
    assert st["bytes_fetched_total"] == sum(map(len, files.values())), "the second tag must not fetch again"
    d.ctl("unstage", "-f", a, work / "sa")
    d.ctl("unstage", "-f", b, work / "sb")
    assert d.stop() == 0


def test_a_moved_tag_under_fail_is_refused_naming_both_listings(registry, work):
    push(registry, "m", ["v1"], {"w.bin": os.urandom(1 << 20)})
    d = Driver(work, allow=[f"oci://{registry.host}/"]).start(env={"SSL_CERT_FILE": str(registry.ca)})
    vol = d.create("pvc", f"oci://{registry.host}/m:v1")
    pinned = json.loads(vol.read_text())["volume"]["volume_context"]["listingDigest"]
    push(registry, "m", ["v1"], {"w.bin": os.urandom(1 << 20)})
    from conftest import CtlError
    with pytest.raises(CtlError) as ei:
        d.ctl("stage", "-f", vol, work / "s")
    assert ei.value.code == "FAILED_PRECONDITION", ei.value
    import re
    m = re.search(r"pinned listing ([0-9a-f]{12}).*; now ([0-9a-f]{12})", ei.value.message)
    assert m and m.group(1) == pinned[:12] and m.group(2) != m.group(1), ei.value.message
    assert d.stop() == 0


def test_oci_sources_are_off_until_an_admin_allows_the_registry(registry, work):
    push(registry, "m", ["v1"], {"w.bin": b"x"})
    d = Driver(work).start(env={"SSL_CERT_FILE": str(registry.ca)})
    from conftest import CtlError
    with pytest.raises(CtlError) as ei:
        d.create("pvc", f"oci://{registry.host}/m:v1")
    assert ei.value.code == "PERMISSION_DENIED" and "not allowed on this node" in ei.value.message
    assert d.stop() == 0


# ---- registries that lie: a fake of our own ---------------------------------------------------------

@pytest.fixture
def fake(work):
    f = FakeRegistry(work)
    yield f
    f.stop()


def test_fake_registry_blob_bytes_that_do_not_match_the_digest_are_refused(fake, work):
    good = os.urandom(2 << 20)
    files = {"w.bin": good, "c.json": b"{}"}
    bad = bytearray(good)
    bad[12345] ^= 1
    fake.serve("v1", files, blobs={digest(good): bytes(bad)})
    r = fill(fake.env(), f"oci://{fake.host}/m:v1", work / "copy", check=False)
    assert r.returncode == 1, r.stderr
    assert "w.bin: SHA256 of the bytes received is" in r.stderr and "does not match" in r.stderr, r.stderr
    assert not (work / "copy" / "w.bin").exists(), "a file that failed its digest must not be placed"


def test_fake_registry_a_manifest_that_lies_about_sizes_fails_clearly(fake, work):
    data = os.urandom(1 << 20)
    fake.serve("short", {"w.bin": data})
    m = json.loads(fake.manifests["short"])
    m["layers"][0]["size"] = len(data) + 100  # more than the blob has: the body ends early
    fake.manifests["short"] = json.dumps(m).encode()
    r = fill(fake.env(), f"oci://{fake.host}/m:short", work / "a", check=False)
    assert r.returncode == 1 and ("body ended" in r.stderr or "not 206" in r.stderr), r.stderr
    m["layers"][0]["size"] = len(data) - 100  # less: the registry sends more than asked
    fake.manifests["less"] = json.dumps(m).encode()
    r = fill(fake.env(), f"oci://{fake.host}/m:less", work / "b", check=False)
    assert r.returncode == 1 and "more bytes than asked for" in r.stderr, r.stderr
    for d in ("a", "b"):
        assert not (work / d / "w.bin").exists()


def test_fake_registry_escaping_paths_and_unreadable_layers_are_refused(fake, work):
    fake.serve("up", {"../../etc/cron.d/evil": b"* * * * * root id\n"})
    r = fill(fake.env(), f"oci://{fake.host}/m:up", work / "a", check=False)
    assert r.returncode == 1 and "layer 0" in r.stderr and ".." in r.stderr, r.stderr
    assert not list(work.rglob("evil")) and not os.path.exists("/etc/cron.d/evil")
    m = {"layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": digest(b"x"),
                     "size": 1}]}
    fake.manifests["foreign"] = json.dumps(m).encode()
    r = fill(fake.env(), f"oci://{fake.host}/m:foreign", work / "b", check=False)
    assert r.returncode == 1 and "layer 0" in r.stderr and "foreign layer" in r.stderr, r.stderr


def test_fake_registry_an_endless_manifest_is_cut(fake, work):
    fake.endless.add("forever")
    t0 = time.time()
    r = fill(fake.env(), f"oci://{fake.host}/m:forever", work / "a", check=False, timeout=60)
    assert r.returncode == 1 and "larger than 4 MiB" in r.stderr, r.stderr
    assert time.time() - t0 < 30


def test_fake_registry_a_manifest_not_matching_its_digest_is_refused(fake, work):
    d = fake.serve("v1", {"w.bin": b"abc"})
    fake.manifests[d] = fake.manifests[d].replace(b'"size": 3', b'"size": 3 ')
    r = fill(fake.env(), f"oci://{fake.host}/m@{d}", work / "a", check=False)
    assert r.returncode == 1 and f"not {d}: refused" in r.stderr, r.stderr


def test_fake_registry_bearer_tokens_stay_home_when_blobs_redirect(fake, work):
    """The registry wants a Bearer token and sends blob GETs to another host
    (as ECR sends them to S3): the token is fetched from the realm with the
    Secret's password, used at the registry, and never sent to the other host."""
    storage = FakeRegistry(work, name="storage", ca=(fake.ca, fake.cert, fake.key))
    try:
        files = {"w.bin": os.urandom(3 << 20), "c.json": b"{}"}
        fake.serve("v1", files)
        storage.blobs.update(fake.blobs)
        fake.bearer, fake.redirect_to = True, storage
        import base64
        fake.user = "Basic " + base64.b64encode(b"u:pw").decode()
        # 1 MiB parts: ranged GETs, each redirected
        fill(fake.env(), f"oci://{fake.host}/m:v1", work / "copy", "--secret", "username=u", "--secret", "password=pw",
             "--part-size", "1")
        assert sha256_tree(work / "copy") == hashes(files)
        token_asks = [h for p, h in fake.seen if p.startswith("/token")]
        assert token_asks and all("scope=repository%3Am%3Apull" in p for p, _ in fake.seen if p.startswith("/token"))
        assert any(h.get("Authorization") == f"Bearer {fake.token}" for p, h in fake.seen if "/blobs/" in p)
        assert storage.seen, "blobs must have been fetched from the storage host"
        assert all("Authorization" not in h for _, h in storage.seen), "the registry's token went to another host"
        assert sum("Range" in h for _, h in storage.seen) >= 3
        # the same with Basic (the password itself at stake), and a redirect to plain http
        fake.bearer, fake.basic, storage.seen[:] = False, "Basic " + base64.b64encode(b"u:pw").decode(), []
        fill(fake.env(), f"oci://{fake.host}/m:v1", work / "copy2", "--secret", "username=u", "--secret",
             "password=pw", "--part-size", "1")
        assert sha256_tree(work / "copy2") == hashes(files)
        assert storage.seen and all("Authorization" not in h for _, h in storage.seen)
        fake.redirect_scheme = "http"
        r = fill(fake.env(), f"oci://{fake.host}/m:v1", work / "copy3", "--secret", "username=u", "--secret",
                 "password=pw", check=False)
        assert r.returncode == 1 and "not an https:// URL: refused" in r.stderr, r.stderr
        assert "X-Amz-Signature" not in r.stderr, "a presigned URL's signature must not reach a message"
    finally:
        storage.stop()


def test_fake_registry_a_realm_at_another_address_never_gets_the_password(work):
    """A registry at an IP address whose Bearer realm is another address
    (127.1.0.1, whose last two labels are 127.0.0.1's): not the registry's
    own, so the token is asked anonymously and the Secret stays home."""
    from conftest import make_ca
    tls = make_ca(work / "realm-tls", ["127.1.0.1", "registry.example.test", "evil.example.test"])
    reg = FakeRegistry(work, name="home", ca=tls)
    other = FakeRegistry(work, name="other", ca=tls, addr="127.1.0.1")
    try:
        reg.serve("v1", {"w.bin": b"w"})
        reg.bearer, reg.realm = True, f"https://127.1.0.1:{other.port}/token"
        pw = "pw-" + os.urandom(8).hex()
        r = fill(reg.env(), f"oci://{reg.host}/m:v1", work / "a", "--secret", "username=u", "--secret",
                 f"password={pw}", check=False)
        asked = [h for p, h in other.seen if p.startswith("/token")]
        assert asked, r.stderr
        assert all("Authorization" not in h for h in asked), asked
        assert r.returncode == 1
        # by name: a realm whose user part spells the registry's domain is still another host's
        names = work / "hosts"
        names.write_text(open("/etc/hosts").read() + "\n127.0.0.1 registry.example.test\n"
                         "127.1.0.1 evil.example.test\n")
        reg.realm = f"https://registry.example.test:x@evil.example.test:{other.port}/token"
        other.seen.clear()
        cmd = (f"mount --bind {names} /etc/hosts && exec {CTL} fill oci://registry.example.test:{reg.port}/m:v1 "
               f"{work / 'b'} --secret username=u --secret password={pw}")
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd], env=reg.env(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "a URL with a user part: refused" in r.stderr, r.stderr
        assert other.seen == [], other.seen
    finally:
        reg.stop()
        other.stop()


def test_fake_registry_a_range_answered_with_the_whole_blob_is_refused_clearly(fake, work):
    files = {"w.bin": os.urandom(3 << 20)}
    fake.serve("v1", files)
    fake.ignore_range = True  # a cache on the way that ignores Range
    r = fill(fake.env(), f"oci://{fake.host}/m:v1", work / "a", "--part-size", "1", check=False)
    assert r.returncode == 1 and "ignores Range" in r.stderr and "HTTP 200" in r.stderr, r.stderr
    assert not (work / "a" / "w.bin").exists()
    fake.ignore_range = False
    fill(fake.env(), f"oci://{fake.host}/m:v1", work / "b", "--part-size", "1")
    assert sha256_tree(work / "b") == hashes(files)


def test_fake_registry_an_endless_error_body_does_not_hold_the_fill(fake, work):
    files = {"w.bin": os.urandom(1 << 20)}
    fake.serve("v1", files)
    fake.error_forever = True  # a 500 whose body never ends
    t0 = time.time()
    r = fill(fake.env(), f"oci://{fake.host}/m:v1", work / "a", check=False, timeout=60)
    assert r.returncode == 1 and "HTTP 500" in r.stderr, r.stderr
    assert time.time() - t0 < 40


ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def test_fake_ecr_a_registry_of_ecr_logs_in_with_the_nodes_role(work):
    """An oci:// source on an ECR host, no Secret: the node's credentials
    (here the environment's keys) sign ecr:GetAuthorizationToken, and its
    token is the registry's password. Both ends are fakes named so: a
    FakeEcrApi that checks the SigV4 signature with botocore, and a
    FakeRegistry that wants Basic AWS:<token>, reached under the ECR host
    name through /etc/hosts in a mount namespace of the fill's own (the
    host's /etc/hosts is not touched)."""
    from conftest import make_ca
    from registry import FakeEcrApi
    import base64
    tls = make_ca(work / "ecr-tls", [ECR_HOST])
    password = "ecr-" + os.urandom(12).hex()
    api = FakeEcrApi(tls, "AKIDNODEROLE", "node-role-secret", password)
    reg = FakeRegistry(work, name="ecr", ca=tls)
    try:
        files = {"w.bin": os.urandom(3 << 20), "config.json": b"{}"}
        reg.serve("v1", files)
        reg.basic = "Basic " + base64.b64encode(f"AWS:{password}".encode()).decode()
        hosts = work / "hosts"
        hosts.write_text(open("/etc/hosts").read() + f"\n127.0.0.1 {ECR_HOST}\n")
        env = dict(os.environ, SSL_CERT_FILE=str(tls[0]), AWS_CA_BUNDLE=str(tls[0]), AWS_ENDPOINT_URL_ECR=api.endpoint,
                   AWS_ACCESS_KEY_ID="AKIDNODEROLE", AWS_SECRET_ACCESS_KEY="node-role-secret",
                   AWS_EC2_METADATA_DISABLED="true")

        def ecr_fill(dest):
            cmd = f"mount --bind {hosts} /etc/hosts && exec {CTL} fill oci://{ECR_HOST}:{reg.port}/models/m:v1 {dest} --json"
            return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd], env=env,
                                  capture_output=True, text=True, timeout=120)

        r = ecr_fill(work / "copy")
        assert r.returncode == 0, r.stderr
        assert sha256_tree(work / "copy") == hashes(files)
        assert api.calls == 1 and api.bad == [], (api.calls, api.bad)  # one login for the fill's 16 connections
        assert password not in r.stderr + r.stdout
        api.deny = True
        r = ecr_fill(work / "denied")
        assert r.returncode == 1 and "AccessDeniedException" in r.stderr, r.stderr
        assert "needs ecr:GetAuthorizationToken" in r.stderr, r.stderr
        assert "node-role-secret" not in r.stderr and "AKIDNODEROLE" not in r.stderr, r.stderr
        # the same registry under its address, no ECR host: the node's keys are never used
        api.deny, calls = False, api.calls
        r = fill(env, f"oci://{reg.host}/models/m:v1", work / "plain", check=False)
        assert r.returncode == 1 and "wants a user name and password" in r.stderr, r.stderr
        assert api.calls == calls
    finally:
        reg.stop()
        api.stop()


def test_fake_ecr_the_plugin_logs_in_once_for_many_fills_and_again_when_refused(work):
    """The node's ECR password is kept for the fills after the first (ECR's
    last 12 hours), and asked anew when the registry refuses it (rotated).
    Fakes named so, as above; the plugin runs in a mount namespace of its
    own with the ECR host name in its /etc/hosts."""
    from conftest import make_ca
    from registry import FakeEcrApi
    import base64
    tls = make_ca(work / "ecr-tls", [ECR_HOST])
    api = FakeEcrApi(tls, "AKIDNODEROLE", "node-role-secret", "ecr-" + os.urandom(12).hex())
    reg = FakeRegistry(work, name="ecr", ca=tls)
    d = None
    try:
        arts = {t: {"w.bin": os.urandom(1 << 20), "t.txt": t.encode()} for t in ("v1", "v2", "v3")}
        for t, files in arts.items():
            reg.serve(t, files)
        reg.basic = "Basic " + base64.b64encode(f"AWS:{api.password}".encode()).decode()
        hosts = work / "hosts"
        hosts.write_text(open("/etc/hosts").read() + f"\n127.0.0.1 {ECR_HOST}\n")
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh"]
        base = f"oci://{ECR_HOST}:{reg.port}/models/m"
        d = Driver(work, allow=[f"oci://{ECR_HOST}:{reg.port}/"]).start(wrap=wrap, env={
            "SSL_CERT_FILE": str(tls[0]), "AWS_CA_BUNDLE": str(tls[0]), "AWS_ENDPOINT_URL_ECR": api.endpoint,
            "AWS_ACCESS_KEY_ID": "AKIDNODEROLE", "AWS_SECRET_ACCESS_KEY": "node-role-secret"})

        def stage(tag):
            vol = d.create(f"pvc-{tag}", f"{base}:{tag}")
            d.ctl("stage", "-f", vol, work / f"s-{tag}")  # the mount is in the plugin's namespace
            copies = {c["source"]: c for c in d.ctl("status", "--json")["copies"]}
            c = copies[f"{base}:{tag}"]
            assert c["state"] == "ready", c
            return sha256_tree(d.store / "content" / c["content_id"])

        assert stage("v1") == hashes(arts["v1"])
        assert stage("v2") == hashes(arts["v2"])
        assert api.calls == 1 and api.bad == [], (api.calls, api.bad)  # one login for both fills
        api.password = "ecr-" + os.urandom(12).hex()  # rotated: the registry refuses the kept one
        reg.basic = "Basic " + base64.b64encode(f"AWS:{api.password}".encode()).decode()
        assert stage("v3") == hashes(arts["v3"])
        assert api.calls == 2, api.calls
        assert api.password not in d.log.read_text()
        assert d.stop() == 0
        d = None
    finally:
        if d:
            d.stop()
        reg.stop()
        api.stop()
