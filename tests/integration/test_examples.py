"""The examples stay true: every example StorageClass's parameters go through
the real CreateVolume (file:// paths pointed at a test tree), and the inline
volume's attributes through a real NodePublish."""
from pathlib import Path

import pytest
import yaml


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLASSES = sorted(EXAMPLES.glob("storageclass-*.yaml"))


@pytest.mark.parametrize("path", CLASSES, ids=[p.stem for p in CLASSES])
def test_example_storageclass_parameters(driver, model, s3server, path):
    params = yaml.safe_load(path.read_text())["parameters"]
    source = params["source"]
    args = []
    for k, v in params.items():
        if k == "source":
            continue
        args += ["-p", f"{k}={v}"]
    if source.startswith("file://"):
        driver.ctl("create", path.stem, "-p", f"source=file://{model}/", *args)
    elif "--x-s3" in source:  # a directory bucket: on the fake zonal endpoint of test_express.py
        from test_express import KEY, SECRET, FakeExpress
        bucket, _, prefix = source[5:].partition("/")
        objects = {prefix + str(p.relative_to(model)): p.read_bytes() for p in model.rglob("*") if p.is_file()}
        fake = FakeExpress(objects, bucket=bucket)
        try:
            vol = driver.ctl("create", path.stem, "-p", f"source={source}", "-p", f"endpoint={fake.endpoint}", "-p", "allowPlainHTTP=true", *args,
                             "--secret", f"awsAccessKeyId={KEY}", "--secret", f"awsSecretAccessKey={SECRET}")
            assert vol["volume"]["volume_context"]["objectCount"] == str(len(objects)) and fake.bad == []
        finally:
            fake.close()
    else:  # the same bucket and prefix on the test server
        bucket, _, prefix = source[5:].partition("/")
        s3server.s3.create_bucket(Bucket=bucket)
        s3server.upload_tree(bucket, prefix, model)
        driver.ctl("create", path.stem, "-p", f"source={source}", "-p", f"endpoint={s3server.endpoint}", "-p", "allowPlainHTTP=true",
                   *args, *s3server.secrets())


def test_example_inline_volume(driver, model, work):
    pod = yaml.safe_load((EXAMPLES / "pod-inline-ephemeral.yaml").read_text())
    attrs = pod["spec"]["volumes"][0]["csi"]["volumeAttributes"]
    ctx = ["-c", "csi.storage.k8s.io/ephemeral=true"]
    for k, v in attrs.items():
        ctx += ["-c", f"{k}={'file://' + str(model) + '/' if k == 'source' else v}"]
    driver.ctl("publish", "eval-job-vol", "", work / "t", "--readonly", *ctx)
    driver.ctl("unpublish", "eval-job-vol", work / "t")
