"""s3:// sources against a real S3-compatible server that verifies SigV4
(versitygw on loopback): listing with paging, fills byte-identical to the
objects, and the errors a cluster admin must be able to act on."""
import json
import os

import pytest

from conftest import CtlError, sha256_tree


@pytest.fixture
def bucket(s3server, model):
    s3server.s3.create_bucket(Bucket="models")
    s3server.upload_tree("models", "tiny-llm/", model)
    s3server.s3.put_object(Bucket="models", Key="tiny-llm/shards/big.bin", Body=os.urandom(20 << 20))
    s3server.s3.put_object(Bucket="models", Key="tiny-llm/folder/", Body=b"")  # a console's folder marker
    return "models"


def create(driver, s3server, name, source, *more, secret=None):
    args = ["create", name, "-p", f"source={source}", "-p", f"endpoint={s3server.endpoint}", "-p", "allowPlainHTTP=true", *s3server.secrets(secret)]
    for m in more:
        args += ["-p", m]
    vol = driver.ctl(*args)
    f = driver.work / f"{name}.json"
    f.write_text(json.dumps(vol))
    return f


def test_s3_lifecycle_copies_every_object_exactly(driver, s3server, bucket, model, work):
    vol = create(driver, s3server, "s3vol", "s3://models/tiny-llm/")
    ctx = json.loads(vol.read_text())["volume"]["volume_context"]
    assert ctx["objectCount"] == "6" and ctx["endpoint"] == s3server.endpoint
    driver.ctl("stage", "-f", vol, work / "s", *s3server.secrets())
    driver.ctl("publish", "-f", vol, work / "s", work / "t")
    want = sha256_tree(model)
    got = sha256_tree(work / "t")
    assert {k: v for k, v in got.items() if not k.startswith("shards/")} == want
    body = s3server.s3.get_object(Bucket="models", Key="tiny-llm/shards/big.bin")["Body"].read()
    assert (work / "t" / "shards" / "big.bin").read_bytes() == body
    assert not (work / "t" / "folder").exists()
    driver.ctl("unpublish", "-f", vol, work / "t")
    driver.ctl("unstage", "-f", vol, work / "s")


def test_listing_pages_are_followed(driver, s3server, work):
    s3server.s3.create_bucket(Bucket="many")
    for i in range(1100):  # more than one 1000-key page
        s3server.s3.put_object(Bucket="many", Key=f"shards/{i:05d}.json", Body=f"{i}".encode())
    vol = create(driver, s3server, "many", "s3://many/shards/")
    assert json.loads(vol.read_text())["volume"]["volume_context"]["objectCount"] == "1100"
    driver.ctl("stage", "-f", vol, work / "s", *s3server.secrets())
    assert len(list((work / "s").iterdir())) == 1100
    assert (work / "s" / "01099.json").read_text() == "1099"


def test_wrong_secret_is_rejected_by_the_server_and_said_clearly(driver, s3server, bucket):
    with pytest.raises(CtlError) as ei:
        create(driver, s3server, "bad", "s3://models/tiny-llm/", secret="not-the-secret")
    assert ei.value.code == "PERMISSION_DENIED"
    assert "SignatureDoesNotMatch" in ei.value.message or "secret key is wrong" in ei.value.message \
        or "access denied" in ei.value.message
    assert "not-the-secret" not in ei.value.message and "not-the-secret" not in driver.log.read_text()


def test_missing_bucket_and_missing_credentials(driver, s3server, bucket):
    with pytest.raises(CtlError) as ei:
        create(driver, s3server, "nob", "s3://no-such-bucket/x/")
    assert ei.value.code == "INVALID_ARGUMENT" and "NoSuchBucket" in ei.value.message
    with pytest.raises(CtlError) as ei:
        driver.ctl("create", "nocred", "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={s3server.endpoint}", "-p", "allowPlainHTTP=true")
    assert ei.value.code == "PERMISSION_DENIED" and "no AWS credentials" in ei.value.message


def test_stage_without_credentials_says_what_to_give(driver, s3server, bucket, work):
    vol = create(driver, s3server, "v", "s3://models/tiny-llm/")
    with pytest.raises(CtlError) as ei:
        driver.ctl("stage", "-f", vol, work / "s")
    assert ei.value.code == "PERMISSION_DENIED" and "node-stage Secret (awsAccessKeyId" in ei.value.message
    assert "IRSA or EKS Pod Identity" in ei.value.message


def test_an_object_changed_after_create_is_caught(driver, s3server, bucket, work):
    vol = create(driver, s3server, "v", "s3://models/tiny-llm/")
    s3server.s3.put_object(Bucket="models", Key="tiny-llm/config.json", Body=b'{"hidden_size": 999}')
    with pytest.raises(CtlError) as ei:
        driver.ctl("stage", "-f", vol, work / "s", *s3server.secrets())
    assert ei.value.code == "FAILED_PRECONDITION" and "changed since the volume was created" in ei.value.message


@pytest.mark.parametrize("params,needle", [
    (["region=US_EAST"], "not an AWS region name"),
    (["endpoint=ftp://x"], "http:// or https://"),
    (["addressingStyle=sideways"], "path or virtual"),
])
def test_bad_s3_parameters_are_named(driver, params, needle):
    args = ["create", "bad", "-p", "source=s3://models/x/"]
    for p in params:
        args += ["-p", p]
    with pytest.raises(CtlError) as ei:
        driver.ctl(*args)
    assert ei.value.code == "INVALID_ARGUMENT" and needle in ei.value.message


def test_s3_keys_on_a_file_source_are_refused(driver, model):
    with pytest.raises(CtlError) as ei:
        driver.ctl("create", "x", "-p", f"source=file://{model}", "-p", "region=us-east-1")
    assert "s3:// sources only" in ei.value.message


def test_bad_bucket_names_are_refused_up_front(driver):
    for src, needle in (("s3://AB/x/", "3 to 63"), ("s3://Bad_Name/x/", "only a-z"),
                        ("s3://models--az4-use1--x-s3/x/", "<base>--<zone id>--x-s3")):
        with pytest.raises(CtlError) as ei:
            driver.ctl("create", "x", "-p", f"source={src}")
        assert ei.value.code == "INVALID_ARGUMENT" and needle in ei.value.message, ei.value.message


def test_an_https_endpoint_with_a_private_ca_needs_that_ca(work, model):
    """An S3-compatible endpoint on https with a CA of its own (MinIO in the
    cluster, a TLS-inspecting proxy): refused at once and named while the
    node does not trust it, served once AWS_CA_BUNDLE gives the CA."""
    from conftest import Driver, S3Server
    for sub in ("tls-gw", "untrusting", "trusting"):
        (work / sub).mkdir()
    srv = S3Server(work / "tls-gw", tls=True)
    try:
        srv.s3.create_bucket(Bucket="models")
        srv.upload_tree("models", "tiny-llm/", model)
        d = Driver(work / "untrusting").start()
        with pytest.raises(CtlError) as ei:
            d.ctl("create", "m", "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={srv.endpoint}",
                  *srv.secrets())
        assert ei.value.code == "PERMISSION_DENIED", ei.value
        assert "TLS certificate this node does not trust" in ei.value.message and "AWS_CA_BUNDLE" in ei.value.message
        assert d.stop() == 0
        d = Driver(work / "trusting").start(env={"AWS_CA_BUNDLE": str(srv.ca)})
        vol = d.ctl("create", "m", "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={srv.endpoint}",
                    *srv.secrets())
        f = work / "vol.json"
        f.write_text(json.dumps(vol))
        d.ctl("stage", "-f", f, work / "s", *srv.secrets())
        assert sha256_tree(work / "s") == sha256_tree(model)
        d.ctl("unstage", "-f", f, work / "s")
        assert d.stop() == 0
    finally:
        srv.stop()
