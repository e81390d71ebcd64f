"""warmcache as users run it: installed with helm into a real single-node
cluster (a kubelet on containerd), pods reading a model from a PVC, and what
`kubectl describe` shows them. Each test is a scenario a user would try, in
the order a user meets them; the cluster is shared (conftest.py).

Tests marked short are make test's cluster target; make e2e runs them all."""
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import sys

from conftest import NS, ROOT, install_values
from cluster import mounts_under

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

APP = "ml"
BUSYBOX = "localhost/busybox:wc-e2e"


def wait(what, cond, timeout=180, every=1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def storage_class(s3, name, **params):
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": "warmcache.csi.dev", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
            "parameters": {"source": "s3://models/tiny-llama/", "endpoint": s3.endpoint,
                           "allowPlainHTTP": "true",  # versitygw on loopback
                           "csi.storage.k8s.io/provisioner-secret-name": "models-s3",
                           "csi.storage.k8s.io/provisioner-secret-namespace": NS,
                           "csi.storage.k8s.io/node-stage-secret-name": "models-s3",
                           "csi.storage.k8s.io/node-stage-secret-namespace": NS, **params}}


def pvc(name, cls, mode="ReadOnlyMany", size="1Gi"):
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": APP},
            "spec": {"accessModes": [mode], "storageClassName": cls, "resources": {"requests": {"storage": size}}}}


def checking_pod_spec(claim=None, volume=None):
    """A container that is Ready only while every file under /models matches
    the source's sha256 (the sums come from a ConfigMap)."""
    vol = volume or {"name": "model", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    return {"containers": [{"name": "llm", "image": BUSYBOX, "imagePullPolicy": "Never",
                            "command": ["sh", "-c", "cd /models && sha256sum -c /sums/SHA256SUMS && exec sleep 86400"],
                            "readinessProbe": {"exec": {"command": ["sh", "-c",
                                                                    "cd /models && sha256sum -c -s /sums/SHA256SUMS"]},
                                               "periodSeconds": 2},
                            "volumeMounts": [{"name": "model", "mountPath": "/models", "readOnly": True},
                                             {"name": "sums", "mountPath": "/sums"}]}],
            "volumes": [vol, {"name": "sums", "configMap": {"name": "model-sums"}}],
            "terminationGracePeriodSeconds": 1}


def ready_pods(cluster, selector):
    pods = cluster.get("pods", "-n", APP, "-l", selector)["items"]
    return [p for p in pods if p["status"].get("phase") == "Running" and
            any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


def events(cluster, kind, name):
    out = cluster.get("events", "-n", APP, "--field-selector", f"involvedObject.kind={kind},involvedObject.name={name}")
    return out["items"]


def reasons(cluster, kind, name):
    return {e["reason"] for e in events(cluster, kind, name)}


def csi_mounts(c):
    """Publish targets (pods/*/volumes/kubernetes.io~csi/*/mount) and staging
    paths (plugins/kubernetes.io/csi/...) mounted under the kubelet's dir."""
    return [m for m in mounts_under(c.kubelet_dir) if "kubernetes.io~csi" in m or "/plugins/kubernetes.io/csi/" in m]


def save(name, text):
    d = os.environ.get("WC_SAVE_DESCRIBE")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
        (Path(d) / name).write_text(text)


@pytest.fixture(scope="module")
def app(warmcache, s3):
    warmcache.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": APP}},
                    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "model-sums", "namespace": APP},
                     "data": {"SHA256SUMS": s3.sums}},
                    storage_class(s3, "tiny-llama"))
    return warmcache


@pytest.mark.short
def test_a_deployment_of_two_replicas_reads_the_model_from_a_pvc(app):
    c = app
    c.apply(pvc("tiny-llama", "tiny-llama"),
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "llm", "namespace": APP},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "llm"}},
                      "template": {"metadata": {"labels": {"app": "llm"}}, "spec": checking_pod_spec("tiny-llama")}}})
    wait("two Ready replicas whose sha256 of every file matches", lambda: len(ready_pods(c, "app=llm")) == 2,
         timeout=240)
    pv = c.get("pvc", "-n", APP, "tiny-llama")["spec"]["volumeName"]
    assert wait("the fill's events on the PVC", lambda: {"FillStarted", "CacheReady"} <= reasons(c, "PersistentVolumeClaim",
                                                                                                "tiny-llama"), 60)
    for p in ready_pods(c, "app=llm"):
        wait("CachePublished on each pod", lambda: "CachePublished" in reasons(c, "Pod", p["metadata"]["name"]), 60)
    described = c.kubectl("describe", "pvc", "-n", APP, "tiny-llama").stdout
    pod = ready_pods(c, "app=llm")[0]["metadata"]["name"]
    described_pod = c.kubectl("describe", "pod", "-n", APP, pod).stdout
    save("describe-pvc.txt", described)
    save("describe-pod.txt", described_pod)
    assert "CacheReady" in described and "verified" in described, described
    assert re.search(r"copy of s3://models/tiny-llama/ ready on node \S+: 5 files", described), described
    assert "CachePublished" in described_pod and "read-only copy of s3://models/tiny-llama/" in described_pod
    node = c.get("node")["items"][0]
    cid = c.get("pv", pv)["metadata"]["annotations"]["warmcache.csi.dev/content-id"]
    assert node["metadata"]["labels"].get(f"content.warmcache.csi.dev/{cid}") == "ready"


@pytest.mark.short
def test_deleting_the_pods_and_then_the_pvc_leaves_no_mount_and_no_pv(app):
    c = app
    pv = c.get("pvc", "-n", APP, "tiny-llama")["spec"]["volumeName"]
    c.kubectl("delete", "deployment", "-n", APP, "llm", "--wait=true")
    wait("the pods to go", lambda: not c.get("pods", "-n", APP, "-l", "app=llm")["items"], 120)
    wait("NodeUnpublish and NodeUnstage: no CSI mount left", lambda: not csi_mounts(c), 120)
    c.kubectl("delete", "pvc", "-n", APP, "tiny-llama", "--wait=true")
    wait("the PV to go (reclaim Delete)", lambda: c.kubectl("get", "pv", pv, check=False).returncode != 0, 120)
    left = [p["metadata"]["name"] for p in c.get("pv")["items"] if p["metadata"].get("finalizers")]
    assert left == [], f"PVs kept by a finalizer: {left}"


@pytest.mark.short
def test_readwritemany_is_refused_with_a_message_on_the_pvc(app):
    c = app
    c.apply(pvc("shared-rw", "tiny-llama", mode="ReadWriteMany"))
    ev = wait("a ProvisioningFailed event", lambda: [e for e in events(c, "PersistentVolumeClaim", "shared-rw")
                                                     if e["reason"] == "ProvisioningFailed"], 90)
    assert "access mode ReadWriteMany (MULTI_NODE_MULTI_WRITER) is not supported" in ev[0]["message"], ev[0]["message"]
    assert "use ReadOnlyMany or ReadWriteOnce" in ev[0]["message"]
    assert c.get("pvc", "-n", APP, "shared-rw")["status"]["phase"] == "Pending"
    c.kubectl("delete", "pvc", "-n", APP, "shared-rw")


def test_a_writable_volume_takes_scratch_files_from_a_non_root_user(app):
    c = app
    c.apply(pvc("scratch", "tiny-llama", mode="ReadWriteOnce", size="256Mi"),
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "writer", "namespace": APP},
             "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True},
                      "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "w", "image": BUSYBOX, "imagePullPolicy": "Never",
                                      "command": ["sh", "-c", "set -e; cd /models; test -f config.json; "
                                                  "head -c 1048576 /dev/zero > scratch.bin; mkdir run; "
                                                  "echo ok > run/log; cat run/log"],
                                      "volumeMounts": [{"name": "m", "mountPath": "/models"}]}],
                      "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "scratch"}}]}})
    wait("the writer to finish", lambda: c.get("pod", "-n", APP, "writer")["status"].get("phase") in
         ("Succeeded", "Failed"), 240)
    assert c.get("pod", "-n", APP, "writer")["status"]["phase"] == "Succeeded", \
        c.kubectl("describe", "pod", "-n", APP, "writer").stdout
    c.kubectl("delete", "pod", "-n", APP, "writer", "--wait=true")
    c.kubectl("delete", "pvc", "-n", APP, "scratch", "--wait=true")


def test_prewarm_fills_before_any_pod_exists(app, s3):
    c = app
    node = c.get("node")["items"][0]["metadata"]["name"]
    s3.s3.put_object(Bucket="models", Key="prewarmed/config.json", Body=b'{"prewarm": true}')
    cls = storage_class(s3, "prewarmed", source="s3://models/prewarmed/", prewarm=f"kubernetes.io/hostname={node}")
    # no node-stage Secret: pre-warming reads with the node plugin's own credentials
    for k in ("csi.storage.k8s.io/node-stage-secret-name", "csi.storage.k8s.io/node-stage-secret-namespace"):
        del cls["parameters"][k]
    c.apply(cls, pvc("prewarmed", "prewarmed"))
    pv = wait("a bound PV", lambda: c.get("pvc", "-n", APP, "prewarmed")["spec"].get("volumeName"), 90)
    warm = wait("the PV to name this node warm", lambda: c.get("pv", pv)["metadata"].get("annotations", {})
                .get("warmcache.csi.dev/warm-nodes"), 120)
    assert node in warm.split(",")
    cid = c.get("pv", pv)["metadata"]["annotations"]["warmcache.csi.dev/content-id"]
    assert c.get("node", node)["metadata"]["labels"].get(f"content.warmcache.csi.dev/{cid}") == "ready"
    pods = [p for p in c.get("pods", "-n", APP)["items"]
            if any(v.get("persistentVolumeClaim", {}).get("claimName") == "prewarmed" for v in p["spec"]["volumes"])]
    assert pods == [], "the copy was ready before any pod asked for it"
    c.kubectl("delete", "pvc", "-n", APP, "prewarmed", "--wait=true")


def test_an_inline_volume_after_helm_upgrade_allows_it(app, s3):
    c = app
    c.helm("upgrade", "warmcache", str(ROOT / "charts" / "warmcache"), "-n", NS, *install_values(c, s3),
           "--set", "inlineVolumes.allowedSources[0]=s3://models/", "--wait", "--timeout", "180s")
    c.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "models-s3", "namespace": APP},
             "stringData": {"awsAccessKeyId": s3.key, "awsSecretAccessKey": s3.secret}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "inline", "namespace": APP},
             "spec": checking_pod_spec(volume={"name": "model", "csi": {
                 "driver": "warmcache.csi.dev", "readOnly": True, "nodePublishSecretRef": {"name": "models-s3"},
                 "volumeAttributes": {"source": "s3://models/tiny-llama/", "endpoint": s3.endpoint,
                                      "allowPlainHTTP": "true"}}})})
    wait("the inline volume's pod Ready with a good copy", lambda: [
        p for p in ready_pods(c, "") if p["metadata"]["name"] == "inline"], 180)
    c.kubectl("delete", "pod", "-n", APP, "inline", "--wait=true")


@pytest.fixture(scope="module")
def slow_s3(s3):
    """The same server through a proxy that trickles every response: a fill
    of the model takes longer than one NodeStage call waits (20 s)."""
    from faultproxy import FaultProxy
    with FaultProxy(s3.endpoint, rate=0.0, bytes_per_s=96 << 10) as fp:
        yield fp


def slow_class(s3, proxy, name, prefix):
    s3.upload_tree("models", f"{prefix}/", s3.tree)
    cls = storage_class(s3, name, source=f"s3://models/{prefix}/")
    cls["parameters"]["endpoint"] = proxy.endpoint
    return cls


def checking_deployment(name, claim):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": APP},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": checking_pod_spec(claim)}}}


def test_a_fill_longer_than_a_stage_call_is_retried_by_kubelet_until_the_pod_runs(app, s3, slow_s3):
    c = app
    c.apply(slow_class(s3, slow_s3, "slow", "slow"), pvc("slow", "slow"), checking_deployment("slow", "slow"))
    wait("the pod Ready on a good copy", lambda: ready_pods(c, "app=slow"), 300)
    pod = ready_pods(c, "app=slow")[0]["metadata"]["name"]
    said = [e["message"] for e in events(c, "Pod", pod) if e["reason"] == "FailedMount"]
    # kubelet's own event carries the plugin's answer: ABORTED with how far the fill is
    assert any("filling s3://models/slow/" in m and "ETA" in m for m in said), said
    pvc_events = sorted(events(c, "PersistentVolumeClaim", "slow"), key=lambda e: e.get("firstTimestamp") or "")
    got = [e["reason"] for e in pvc_events]
    assert "FillStarted" in got and "FillProgress" in got and "CacheReady" in got, got
    save("describe-pod-slow.txt", c.kubectl("describe", "pod", "-n", APP, pod).stdout)
    save("describe-pvc-slow.txt", c.kubectl("describe", "pvc", "-n", APP, "slow").stdout)


def node_plugin_pod(c):
    return c.get("pods", "-n", NS, "-l", "app.kubernetes.io/component=node")["items"][0]


def test_restarting_the_node_plugin_does_not_disturb_a_pod_reading_its_copy(app):
    c = app
    assert ready_pods(c, "app=slow"), "the slow test's pod is the reader"
    old = node_plugin_pod(c)["metadata"]["name"]
    c.kubectl("delete", "pod", "-n", NS, old, "--wait=false")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert ready_pods(c, "app=slow"), "the reader lost its copy while the plugin restarted"
        pods = c.get("pods", "-n", NS, "-l", "app.kubernetes.io/component=node")["items"]
        if pods and pods[0]["metadata"]["name"] != old and all(
                s.get("ready") for s in pods[0]["status"].get("containerStatuses", [{}])):
            break
        time.sleep(1)
    else:
        raise AssertionError("the node plugin did not come back")
    for _ in range(5):  # and still, a few probes later
        assert ready_pods(c, "app=slow")
        time.sleep(2)


def test_kill_9_of_the_node_plugin_mid_fill_still_ends_in_a_good_copy(app, s3, slow_s3):
    c = app
    c.apply(slow_class(s3, slow_s3, "resume", "resume"), pvc("resume", "resume"), checking_deployment("resume", "resume"))
    store = c.work / "store"
    wait("a fill in progress", lambda: list((store / "content").glob("*.partial")), 120, every=0.5)
    time.sleep(3)
    pids = subprocess.run(["pgrep", "-f", "warmcache-csi --mode=node"], capture_output=True, text=True).stdout.split()
    assert pids, "no node plugin process to kill"
    subprocess.run(["kill", "-9", *pids], check=True)
    wait("the pod Ready on a good copy after the restart", lambda: ready_pods(c, "app=resume"), 300)
    restarts = node_plugin_pod(c)["status"]["containerStatuses"][0]["restartCount"]
    assert restarts >= 1, "kubelet should have restarted the killed plugin"


@pytest.mark.short
def test_helm_uninstall_after_the_pvcs_are_gone_leaves_nothing(app):
    c = app
    c.kubectl("delete", "namespace", APP, "--wait=true", timeout=240)
    c.kubectl("delete", "storageclass", "--all")
    c.helm("uninstall", "warmcache", "-n", NS, "--wait", "--timeout", "120s")
    wait("the plugin pods to go", lambda: not c.get("pods", "-n", NS, "-l", "app.kubernetes.io/name=warmcache")["items"],
         120)
    for kind in ("csidriver", "clusterrole", "clusterrolebinding", "daemonset", "deployment", "serviceaccount"):
        names = [o["metadata"]["name"] for o in c.get(kind, "-A")["items"] if "warmcache" in o["metadata"]["name"]]
        assert names == [], f"{kind} left: {names}"
    assert csi_mounts(c) == []
    store = c.work / "store"
    assert not [m for m in mounts_under(store) if m != str(store)], "the store keeps no mount once every volume is gone"
