"""End to end on a real API server: the real csi-provisioner sidecar (built
from its Go module, the version the chart ships) against our controller, as
in the cluster. `kubectl apply` of a StorageClass and PVCs; a PV appears from
our CreateVolume and binds. A PVC annotation overrides the class's source; an
invalid one leaves the PVC Pending with a ProvisioningFailed event that says
what to fix, shown by `kubectl describe pvc`."""
import os
import subprocess
import time

import pytest

from conftest import Driver
from kubeapi import TOOLS

NS = "ml"


@pytest.fixture
def bucket(s3server, model):
    s3server.s3.create_bucket(Bucket="models")
    s3server.upload_tree("models", "tiny-llm/", model)
    s3server.s3.put_object(Bucket="models", Key="other/config.json", Body=b"{}")
    return "models"


def wait_phase(kube, pvc, phase, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = kube.get("pvc", "-n", NS, pvc)["status"].get("phase")
        if got == phase:
            return True
        time.sleep(0.5)
    return False


def pvc(name, annotations=None):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
            "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "tiny-llm-e2e",
                     "resources": {"requests": {"storage": "10Mi"}}}}


def test_kubectl_apply_gets_a_bound_pv_from_our_controller(work, kube, s3server, bucket):
    d = Driver(work)
    d.start("--mode=controller", *kube.plugin_flags("controller"))
    prov = subprocess.Popen([str(TOOLS / "csi-provisioner"), f"--csi-address={d.sock}",
                             f"--kubeconfig={kube.kubeconfig}", "--extra-create-metadata", "--leader-election=false",
                             "--timeout=60s", "--retry-interval-start=1s", "--v=3"],
                            stdout=subprocess.DEVNULL, stderr=open(work / "provisioner.log", "w"))
    try:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-read", "namespace": NS},
                    "stringData": {"awsAccessKeyId": s3server.key, "awsSecretAccessKey": s3server.secret}})
        kube.apply({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "tiny-llm-e2e"},
                    "provisioner": "warmcache.csi.dev", "volumeBindingMode": "Immediate",
                    "parameters": {"source": "s3://models/tiny-llm/", "endpoint": s3server.endpoint,
                                   "allowPlainHTTP": "true",  # versitygw on loopback
                                   "pvcOverrides": "source,sourceChangePolicy", "pvcSourcePrefixes": "s3://models/",
                                   "csi.storage.k8s.io/provisioner-secret-name": "s3-read",
                                   "csi.storage.k8s.io/provisioner-secret-namespace": NS,
                                   "csi.storage.k8s.io/node-stage-secret-name": "s3-read",
                                   "csi.storage.k8s.io/node-stage-secret-namespace": NS}})
        kube.apply(pvc("plain"))
        kube.apply(pvc("override", {"warmcache.csi.dev/source": "s3://models/other/"}))
        kube.apply(pvc("mistake", {"warmcache.csi.dev/sourceChangePolicy": "Sometimes"}))

        assert wait_phase(kube, "plain", "Bound"), (work / "provisioner.log").read_text()[-3000:]
        pv = kube.get("pv", kube.get("pvc", "-n", NS, "plain")["spec"]["volumeName"])
        attrs = pv["spec"]["csi"]["volumeAttributes"]
        assert pv["spec"]["csi"]["volumeHandle"].startswith("wc1-")
        assert attrs["source"] == "s3://models/tiny-llm/" and len(attrs["listingDigest"]) == 64
        assert attrs["csi.storage.k8s.io/pvc/name"] == "plain" and attrs["csi.storage.k8s.io/pvc/namespace"] == NS

        assert wait_phase(kube, "override", "Bound")
        pv = kube.get("pv", kube.get("pvc", "-n", NS, "override")["spec"]["volumeName"])
        assert pv["spec"]["csi"]["volumeAttributes"]["source"] == "s3://models/other/"
        assert pv["spec"]["csi"]["volumeAttributes"]["objectCount"] == "1"

        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and "ProvisioningFailed" not in text:
            text = kube.kubectl("describe", "pvc", "-n", NS, "mistake").stdout
            time.sleep(0.5)
        assert "ProvisioningFailed" in text, text
        assert "PVC ml/mistake: annotation warmcache.csi.dev/sourceChangePolicy" in text.replace("\n", " "), text
        assert kube.get("pvc", "-n", NS, "mistake")["status"]["phase"] == "Pending"
        if os.environ.get("WC_SAVE_DESCRIBE"):
            with open(os.environ["WC_SAVE_DESCRIBE"], "a") as f:
                f.write("\n" + text)
    finally:
        prov.terminate()
        prov.wait(timeout=20)
        assert d.stop() == 0
