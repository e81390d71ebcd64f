"""The Kubernetes external-storage e2e suite (k8s.io/kubernetes/test/e2e, the
cluster's own version) against warmcache, as a CSI driver's authors run it:
a test-driver file says what the driver can do, and the suite picks the
tests that apply. make e2e only (WC_E2E=full).

What warmcache claims, and why (the suite skips what it does not claim):
- persistence: false. A volume is a read-only copy of its source; a
  ReadWriteOnce publish gets a private writable layer that goes with the pod,
  so data one pod writes is never seen by the next. The suites that check
  persistence (a pod writes, another reads) are skipped for that.
- exec: false (not claimed: a model cache is data; not run here).
- multipods: true (many pods on one node share one copy). Two multiVolume
  tests are skipped by name, as not what warmcache is: "retain data across
  pod recreation" (a pod writes, the next pod on the node reads it) and
  "concurrently access the single volume from pods on the same node" (each
  pod reads what the pods before it wrote): each writable publish gets its
  own layer, gone with its pod, so no pod ever sees another's writes. The
  read-only variant of the second runs. For the same reason subPath's
  "existing directories when readOnly specified in the volumeSource" (a
  first pod makes a directory, a second reads it) is skipped.
- volumeMode's "should not mount / map unused volumes in a pod" is skipped:
  it lists /var/lib/kubelet/pods/... on the node, a path written into the
  suite, and this cluster's kubelet keeps its root in the test's directory.
- block, fsGroup, RWX, snapshots, clones, expansion, topology: false.
- Inline ephemeral volumes: not claimed here. The suite's inline volumes
  carry attributes only, and an inline s3:// volume without a Secret may
  not name an endpoint (policy.c), which this loopback S3 server needs;
  tests/e2e/test_cluster.py covers inline volumes with a Secret.

The test asserts that the suite ran tests (not all skipped) and that none
failed; the counts go to the log and, with WC_E2E_REPORT, to a file."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import NS, ROOT, install_values
from cluster import TOOLS

import images

BUSYBOX_E2E = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"
# the multivolume suite's pods only need a shell and coreutils of it: busybox again
GLIBC_E2E = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.0.0"
AGNHOST_E2E = "registry.k8s.io/e2e-test-images/agnhost:2.63.0"
# what a single node cannot run (Disruptive, Serial, feature gates), and the
# two tests of data shared between pods (see above)
SKIP = ("Disruptive|Serial|\\[Feature:|retain data across pod recreation"
        "|concurrently access the single volume from pods on the same node"
        "|should support existing directories when readOnly specified in the volumeSource"
        "|should not mount / map unused volumes in a pod")


def driver_file(work, s3):
    """The external driver definition (test/e2e/storage/external)."""
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "warmcache-e2e"},
          "provisioner": "warmcache.csi.dev", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
          "parameters": {"source": "s3://models/tiny-llama/", "endpoint": s3.endpoint, "allowPlainHTTP": "true",
                         "csi.storage.k8s.io/provisioner-secret-name": "models-s3",
                         "csi.storage.k8s.io/provisioner-secret-namespace": NS,
                         "csi.storage.k8s.io/node-stage-secret-name": "models-s3",
                         "csi.storage.k8s.io/node-stage-secret-namespace": NS}}
    (work / "sc.yaml").write_text(json.dumps(sc))
    driver = {
        "StorageClass": {"FromFile": str(work / "sc.yaml")},
        "DriverInfo": {
            "Name": "warmcache.csi.dev",
            # a volume is at least the source's size (CreateVolume refuses less)
            "SupportedSizeRange": {"Min": "1Gi", "Max": "2Gi"},
            "SupportedFsType": {"": {}},
            "Capabilities": {"persistence": False, "exec": False, "multipods": True, "RWX": False,
                             "block": False, "fsGroup": False, "topology": False, "snapshotDataSource": False,
                             "pvcDataSource": False, "controllerExpansion": False, "nodeExpansion": False,
                             "onlineExpansion": False, "volumeLimits": False, "singleNodeVolume": False,
                             "capacity": False, "volumeMountGroup": False},
        },
    }
    path = work / "driver.yaml"
    path.write_text(json.dumps(driver))
    return path


def summary(report):
    """(passed, failed, skipped, failed names) from ginkgo's JSON report."""
    counts = {"passed": 0, "failed": 0, "skipped": 0, "pending": 0}
    failed = []
    for suite in json.loads(report.read_text()):
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                continue
            state = spec.get("State", "")
            key = "failed" if state in ("failed", "panicked", "timedout", "interrupted", "aborted") else state
            counts[key] = counts.get(key, 0) + 1
            if key == "failed":
                failed.append(" ".join(spec.get("ContainerHierarchyTexts") or []) + " " + spec.get("LeafNodeText", ""))
    return counts, failed


def test_kubernetes_external_storage_suite(warmcache, s3):
    c = warmcache
    e2e = TOOLS / "e2e.test"
    if not e2e.exists():
        pytest.fail("no .tools/bin/e2e.test: make e2e runs scripts/setup.sh e2e, which builds it")
    imgs = c.work / "images"
    c.load_image(images.busybox(imgs, tag=BUSYBOX_E2E))
    c.load_image(images.busybox(imgs, tag=GLIBC_E2E))
    c.load_image(images.agnhost(imgs, TOOLS / "agnhost", AGNHOST_E2E))
    work = c.work / "storage-suite"
    work.mkdir(exist_ok=True)
    report = work / "report.json"
    cmd = [str(e2e), f"--kubeconfig={c.kubeconfig}", "--provider=skeleton",
           f"--storage.testdriver={driver_file(work, s3)}",
           "--ginkgo.focus=External.Storage", f"--ginkgo.skip={SKIP}",
           f"--ginkgo.json-report={report}", "--ginkgo.no-color", "--ginkgo.timeout=50m",
           "--ginkgo.flake-attempts=1", "--allowed-not-ready-nodes=0", "--minStartupPods=0",
           f"--report-dir={work}", "--non-blocking-taints=node-role.kubernetes.io/control-plane"]
    log = work / "e2e.log"
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=work, timeout=3600)
    assert report.exists(), log.read_text()[-5000:]
    counts, failed = summary(report)
    line = (f"Kubernetes external storage suite {e2e.name} against warmcache: {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['skipped']} skipped")
    print(line)
    if os.environ.get("WC_E2E_REPORT"):
        Path(os.environ["WC_E2E_REPORT"]).write_text(line + "\n" + "\n".join(failed) + "\n")
    assert counts["passed"] > 0, log.read_text()[-5000:]
    assert not failed and r.returncode == 0, "\n".join(failed) + "\n" + log.read_text()[-8000:]
