"""The examples stay true: every example StorageClass's parameters go through
the real CreateVolume (file:// paths pointed at a test tree), and the inline
volume's attributes through a real NodePublish."""
from pathlib import Path

import pytest
import yaml

from conftest import CtlError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLASSES = sorted(EXAMPLES.glob("storageclass-*.yaml"))


@pytest.mark.parametrize("path", CLASSES, ids=[p.stem for p in CLASSES])
def test_example_storageclass_parameters(driver, model, path):
    params = yaml.safe_load(path.read_text())["parameters"]
    args = []
    for k, v in params.items():
        if k == "source" and v.startswith("file://"):
            v = f"file://{model}/"
        args.append(f"{k}={v}")
    if params["source"].startswith("s3://"):
        with pytest.raises(CtlError) as ei:
            driver.create(path.stem, params["source"], *args[1:])
        assert "s3:// sources are not available" in ei.value.message  # as the file's comment says
    else:
        driver.create(path.stem, args[0].split("=", 1)[1], *args[1:])


def test_example_inline_volume(driver, model, work):
    pod = yaml.safe_load((EXAMPLES / "pod-inline-ephemeral.yaml").read_text())
    attrs = pod["spec"]["volumes"][0]["csi"]["volumeAttributes"]
    ctx = ["-c", "csi.storage.k8s.io/ephemeral=true"]
    for k, v in attrs.items():
        ctx += ["-c", f"{k}={'file://' + str(model) + '/' if k == 'source' else v}"]
    driver.ctl("publish", "eval-job-vol", "", work / "t", "--readonly", *ctx)
    driver.ctl("unpublish", "eval-job-vol", work / "t")
