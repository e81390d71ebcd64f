"""The cluster tests' fixtures: one real single-node cluster for the run
(cluster.py), the images it needs made here (images.py), a real S3 server
(versitygw) holding a model-like tree, and warmcache installed with helm the
way a user would, with only the values a user sets.

WC_E2E=short (make test's cluster target) uses an image of the host's build;
WC_E2E=full (make e2e) builds the image from the Dockerfile with buildah."""
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import Cluster, ROOT, TOOLS, integration  # noqa: E402
import images  # noqa: E402

S3Server = integration.S3Server  # the integration tests' versitygw

BUILD = Path(os.environ.get("WC_BUILD", ROOT / "build"))
MODE = os.environ.get("WC_E2E", "short")
# the plugin's image: the Dockerfile's (make e2e) or the host build's (make test)
IMAGE = os.environ.get("WC_E2E_IMAGE", "dockerfile" if MODE == "full" else "build")
NS = "kube-system"


def pytest_collection_modifyitems(config, items):
    """The short form runs the tests marked short; the full one runs all."""
    if MODE == "full":
        return
    skip = pytest.mark.skip(reason="in make e2e only (WC_E2E=full)")
    for item in items:
        if "short" not in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "short: part of the short form in make test")


def model_tree(root):
    """A model-like tree: two safetensors shards, configs, a tokenizer."""
    root.mkdir(parents=True)
    (root / "tokenizer").mkdir()
    for i, mib in ((1, 24), (2, 8)):
        with open(root / f"model-0000{i}-of-00002.safetensors", "wb") as f:
            f.write(os.urandom(mib << 20))
    (root / "config.json").write_text('{"hidden_size": 2048, "num_layers": 16}\n')
    (root / "generation_config.json").write_text('{"temperature": 0.7}\n')
    (root / "tokenizer" / "tokenizer.json").write_text('{"vocab": ["<s>", "</s>", "a", "b"]}\n')
    return root


def sha256sums(root):
    lines = []
    for p in sorted(root.rglob("*")):
        if p.is_file():
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(root)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the cluster tests run a kubelet and mount file systems: run them as root")
    work = Path(tempfile.mkdtemp(prefix="wc-e2e.", dir="/var/tmp"))
    c = Cluster(work)
    try:
        imgs = work / "images"
        imgs.mkdir()
        c.load_image(images.pause(imgs))
        c.load_image(images.busybox(imgs))
        c.load_image(images.static_binary(imgs, "csi-provisioner", TOOLS / "csi-provisioner",
                                          "localhost/csi-provisioner:v6.4.0"))
        if IMAGE == "dockerfile":
            tar = imgs / "warmcache-dockerfile.tar"
            subprocess.run(["bash", str(ROOT / "scripts" / "image.sh"), "localhost/warmcache:e2e", str(tar)], check=True)
            c.load_image(tar)
        else:
            c.load_image(images.warmcache_from_build(imgs, BUILD))
        c.start_kubelet()
        yield c
    finally:
        c.stop()
        left = c.leftovers()
        if not os.environ.get("WC_KEEP_E2E"):
            subprocess.run(["rm", "-rf", str(work)], check=False)
        assert left == [], f"the cluster left these behind: {left}"


@pytest.fixture(scope="session")
def s3(cluster):
    srv = S3Server(cluster.work)
    srv.s3.create_bucket(Bucket="models")
    tree = model_tree(cluster.work / "model-src" / "tiny-llama")
    srv.upload_tree("models", "tiny-llama/", tree)
    srv.tree = tree
    srv.sums = sha256sums(tree)
    yield srv
    srv.stop()


def install_values(cluster, s3):
    """What a user sets: the local images, the store, the kubelet's
    directory, the networking of a cluster without a CNI, the bucket, and
    the node plugin's own credentials (on EKS: its IAM role; here keys in
    its environment), which pre-warming uses."""
    return ["--set", "node.extraEnv[0].name=AWS_ACCESS_KEY_ID", "--set", f"node.extraEnv[0].value={s3.key}",
            "--set", "node.extraEnv[1].name=AWS_SECRET_ACCESS_KEY", "--set", f"node.extraEnv[1].value={s3.secret}",
            "--set", "image.repository=localhost/warmcache", "--set", "image.tag=e2e",
            "--set", "image.pullPolicy=Never",
            "--set", "sidecars.provisioner.image=localhost/csi-provisioner:v6.4.0",
            "--set", "sidecars.provisioner.pullPolicy=Never",
            # the proxy of Go modules here serves no node-driver-registrar or
            # livenessprobe: the plugins' own registration and /healthz
            "--set", "sidecars.nodeDriverRegistrar.enabled=false", "--set", "sidecars.livenessProbe.enabled=false",
            "--set", "node.hostNetwork=true", "--set", "controller.hostNetwork=true",
            "--set", "listenAddress=127.0.0.1",
            "--set", f"node.kubeletDir={cluster.kubelet_dir}",
            "--set", "node.storeMode=directory", "--set", f"node.storeRoot={cluster.work}/store",
            "--set", "node.fillWaitSeconds=20",
            "--set", "allowedSources[0]=s3://models/",
            "--set", "provisionerSecrets[0]=models-s3"]  # the Secret the classes name for CreateVolume


@pytest.fixture(scope="session")
def warmcache(cluster, s3):
    cluster.helm("install", "warmcache", str(ROOT / "charts" / "warmcache"), "-n", NS, *install_values(cluster, s3),
                 "--wait", "--timeout", "180s")
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "models-s3", "namespace": NS},
                   "stringData": {"awsAccessKeyId": s3.key, "awsSecretAccessKey": s3.secret}})
    yield cluster
