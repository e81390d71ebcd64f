"""Kubernetes, for real: etcd and kube-apiserver on loopback (kubeapi.py),
the chart's RBAC applied as Helm renders it, the plugin talking to the API
with the node's and the controller's identities.

- A fill driven through the node plugin as the kubelet would (NodeStage, then
  NodePublish with the pod info of podInfoOnMount) shows start, progress and
  ready events in `kubectl describe pvc` and `kubectl describe pod`; the PV
  gets the warm-nodes annotation and the Node a label per ready copy.
- A PVC annotation overrides the class's source; an invalid one fails
  CreateVolume with a message naming the PVC and the annotation.
- A copy that leaves the node (evicted, or gone while the plugin was down)
  takes back its Node label and this node in the PV's warm-nodes.

The fill is slowed down by a proxy so that progress events have time to
appear (one every 5 s at most)."""
import json
import os
import time
from pathlib import Path

import pytest

from conftest import CtlError, Driver, make_source, sha256_tree, wait_for
from faultproxy import FaultProxy

NODE = "it-node"


@pytest.fixture
def bucket(s3server, model):
    s3server.s3.create_bucket(Bucket="models")
    s3server.upload_tree("models", "tiny-llm/", model)
    s3server.s3.put_object(Bucket="models", Key="tiny-llm/shards/big.bin", Body=os.urandom(20 << 20))
    return "models"


def claim_and_volume(kube, ns, pvc, pv, handle):
    """The namespace, a PVC and the PV csi-provisioner would have made for it."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": pvc, "namespace": ns},
                "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "tiny-llm",
                         "resources": {"requests": {"storage": "1Gi"}}}})
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                "spec": {"accessModes": ["ReadOnlyMany"], "capacity": {"storage": "1Gi"},
                         "storageClassName": "tiny-llm",
                         "csi": {"driver": "warmcache.csi.dev", "volumeHandle": handle}}})


def objects(kube, ns, pvc, pv, pod):
    claim_and_volume(kube, ns, pvc, pv, "wc1-x")
    kube.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": ns},
                "spec": {"nodeName": NODE, "containers": [{"name": "llm", "image": "busybox"}],
                         "volumes": [{"name": "model", "persistentVolumeClaim": {"claimName": pvc}}]}})


def events_of(kube, ns, kind, name):
    ev = kube.get("events", "-n", ns, "--field-selector", f"involvedObject.kind={kind},involvedObject.name={name}")
    return {e["reason"]: e for e in ev["items"]}


def test_fill_progress_and_ready_show_in_kubectl_describe(work, kube, s3server, bucket, model):
    ns, pvc, pv, pod = "ml", "tiny-llm", "pvc-0b1c7e", "llm-0"
    objects(kube, ns, pvc, pv, pod)
    d = Driver(work)
    d.start(*kube.plugin_flags("node"), "--fill-wait=60", "--part-size=1", "--s3-connections=2")
    try:
        # ~2 MiB/s per connection: the 20 MiB shard takes several seconds
        with FaultProxy(s3server.endpoint, rate=0.0, bytes_per_s=1 << 20) as slow:
            vol = d.ctl("create", pvc, "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={slow.endpoint}", "-p", "allowPlainHTTP=true",
                        "-p", f"csi.storage.k8s.io/pvc/name={pvc}", "-p", f"csi.storage.k8s.io/pvc/namespace={ns}",
                        "-p", f"csi.storage.k8s.io/pv/name={pv}", *s3server.secrets())
            f = work / "v.json"
            f.write_text(json.dumps(vol))
            d.ctl("stage", "-f", f, work / "staging", *s3server.secrets())
        uid = kube.get("pod", "-n", ns, pod)["metadata"]["uid"]
        d.ctl("publish", "-f", f, work / "staging", work / "pod", "-c", f"csi.storage.k8s.io/pod.name={pod}",
              "-c", f"csi.storage.k8s.io/pod.namespace={ns}", "-c", f"csi.storage.k8s.io/pod.uid={uid}",
              "-c", "csi.storage.k8s.io/serviceAccount.name=default")
        got = sha256_tree(work / "pod")
        assert {k: v for k, v in got.items() if k != "shards/big.bin"} == sha256_tree(model)
        want = {"FillStarted", "FillProgress", "CacheReady"}
        assert wait_for(lambda: want <= set(events_of(kube, ns, "PersistentVolumeClaim", pvc)), timeout=20), \
            events_of(kube, ns, "PersistentVolumeClaim", pvc)
        assert wait_for(lambda: want | {"CachePublished"} <= set(events_of(kube, ns, "Pod", pod)), timeout=20), \
            events_of(kube, ns, "Pod", pod)
        ready = events_of(kube, ns, "PersistentVolumeClaim", pvc)["CacheReady"]["message"]
        assert f"ready on node {NODE}" in ready and "6 files" in ready and "verified" in ready

        described_pvc = kube.kubectl("describe", "pvc", "-n", ns, pvc).stdout
        described_pod = kube.kubectl("describe", "pod", "-n", ns, pod).stdout
        if os.environ.get("WC_SAVE_DESCRIBE"):  # for the release notes: what a user sees
            Path(os.environ["WC_SAVE_DESCRIBE"]).write_text(described_pvc + "\n" + described_pod)
        for text in (described_pvc, described_pod):
            assert "FillStarted" in text and "FillProgress" in text and "CacheReady" in text, text
        assert "CachePublished" in described_pod

        annotations = kube.get("pv", pv)["metadata"]["annotations"]
        assert annotations["warmcache.csi.dev/warm-nodes"] == NODE
        cid = annotations["warmcache.csi.dev/content-id"]
        assert kube.get("node", NODE)["metadata"]["labels"][f"content.warmcache.csi.dev/{cid}"] == "ready"
    finally:
        assert d.stop() == 0


def test_pvc_annotations_override_only_what_the_class_allows(work, kube, s3server, bucket):
    s3server.s3.put_object(Bucket="models", Key="other/config.json", Body=b"{}")
    s3server.s3.create_bucket(Bucket="private")
    s3server.s3.put_object(Bucket="private", Key="payroll/2026.csv", Body=b"secret")
    ns = "team-b"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def pvc(name, annotations):
        kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "namespace": ns, "annotations": annotations},
                    "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}}})

    pvc("good", {"warmcache.csi.dev/source": "s3://models/other/"})
    pvc("bad", {"warmcache.csi.dev/sourceChangePolicy": "Sometimes"})
    pvc("outside", {"warmcache.csi.dev/source": "s3://private/payroll/"})
    pvc("endpoint", {"warmcache.csi.dev/endpoint": "http://attacker.example:9000"})
    pvc("prewarm", {"warmcache.csi.dev/prewarm": "kubernetes.io/os=linux"})
    d = Driver(work)
    d.start("--mode=controller", *kube.plugin_flags("controller"))
    try:
        def create(name, *cls):
            return d.ctl("create", f"pvc-{name}", "-p", "source=s3://models/tiny-llm/",
                         "-p", f"endpoint={s3server.endpoint}", "-p", "allowPlainHTTP=true",
                         "-p", f"csi.storage.k8s.io/pvc/name={name}", "-p", f"csi.storage.k8s.io/pvc/namespace={ns}",
                         *[a for kv in cls for a in ("-p", kv)], *s3server.secrets())

        allow = ("pvcOverrides=source,sourceChangePolicy", "pvcSourcePrefixes=s3://models/")
        ctx = create("good", *allow)["volume"]["volume_context"]
        assert ctx["source"] == "s3://models/other/" and ctx["objectCount"] == "1"
        with pytest.raises(CtlError) as ei:
            create("bad", *allow)
        assert ei.value.code == "INVALID_ARGUMENT"
        assert ei.value.message.startswith(f"PVC {ns}/bad: annotation warmcache.csi.dev/sourceChangePolicy: ")
        assert "Sometimes" in ei.value.message and "use Fail or Follow" in ei.value.message
        for name, needle in (("outside", "is not under the StorageClass's pvcSourcePrefixes (s3://models/)"),
                             ("endpoint", "endpoint is never taken from a PVC"),
                             ("prewarm", "does not let PVCs set prewarm")):
            with pytest.raises(CtlError) as ei:
                create(name, *allow)
            assert ei.value.code == "PERMISSION_DENIED" and needle in ei.value.message, ei.value.message
        with pytest.raises(CtlError) as ei:  # a class that says nothing lets a PVC set nothing
            create("good")
        assert ei.value.code == "PERMISSION_DENIED" and "pvcOverrides (now: not set)" in ei.value.message
    finally:
        assert d.stop() == 0


def test_a_pvc_file_source_stays_under_its_class_prefixes_on_the_node(work, kube):
    """A PVC names its own file:// source under the class's pvcSourcePrefixes
    through a link it controls; CreateVolume judges where the link leads then,
    and the node judges it again when it fills: a link pointed at another
    team's directory after CreateVolume gets nothing."""
    fsx = work / "fsx"
    for d in ("team-a/own", "team-b"):
        (fsx / d).mkdir(parents=True)
    (fsx / "team-a/own/weights.bin").write_bytes(b"mine" * 1000)
    (fsx / "team-b/salaries.csv").write_bytes(b"secret")
    (fsx / "team-a/link").symlink_to(fsx / "team-a/own")
    ns = "team-a"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "mine", "namespace": ns,
                             "annotations": {"warmcache.csi.dev/source": f"file://{fsx}/team-a/link/"}},
                "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    d = Driver(work)
    d.start(*kube.plugin_flags("controller"))
    try:
        vol = d.ctl("create", "pvc-mine", "-p", f"source=file://{fsx}/team-a/", "-p", "pvcOverrides=source",
                    "-p", "sourceChangePolicy=Follow",
                    "-p", "csi.storage.k8s.io/pvc/name=mine", "-p", f"csi.storage.k8s.io/pvc/namespace={ns}")
        ctx = vol["volume"]["volume_context"]
        assert ctx["source"] == f"file://{fsx}/team-a/link/" and ctx["sourceWithin"] == f"file://{fsx}/team-a/"
        (fsx / "team-a/link").unlink()
        (fsx / "team-a/link").symlink_to(fsx / "team-b")
        f = work / "vol.json"
        f.write_text(json.dumps(vol))
        with pytest.raises(CtlError) as ei:
            d.ctl("stage", "-f", f, work / "s")
        assert ei.value.code == "PERMISSION_DENIED", ei.value
        assert "pvcSourcePrefixes" in ei.value.message and "team-b" in ei.value.message
        assert not (work / "s").exists() or not any((work / "s").iterdir())
        (fsx / "team-a/link").unlink()
        (fsx / "team-a/link").symlink_to(fsx / "team-a/own")
        d.ctl("stage", "-f", f, work / "s")
        assert (work / "s" / "weights.bin").read_bytes() == b"mine" * 1000
        d.ctl("unstage", "-f", f, work / "s")
    finally:
        assert d.stop() == 0


def test_prewarm_fills_before_any_stage_on_matching_nodes_only(work, kube, s3server, bucket, model):
    s3server.s3.put_object(Bucket="models", Key="elsewhere/config.json", Body=b"{}")
    kube.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {"gpu": "h100"}}})
    d = Driver(work)
    d.start(*kube.plugin_flags("node"), env={"AWS_ACCESS_KEY_ID": s3server.key,
                                              "AWS_SECRET_ACCESS_KEY": s3server.secret})
    try:
        def volume(name, prefix, selector):
            vol = d.ctl("create", name, "-p", f"source=s3://models/{prefix}/", "-p",
                        f"endpoint={s3server.endpoint}", "-p", "allowPlainHTTP=true", "-p", f"prewarm={selector}")
            ctx = vol["volume"]["volume_context"]
            kube.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                        "spec": {"accessModes": ["ReadOnlyMany"], "capacity": {"storage": "1Gi"},
                                 "csi": {"driver": "warmcache.csi.dev", "volumeHandle": vol["volume"]["volume_id"],
                                         "volumeAttributes": ctx}}})
        volume("pv-warm", "tiny-llm", "gpu in (h100, a100)")
        volume("pv-cold", "elsewhere", "gpu=b200")

        def ready():
            return kube.get("pv", "pv-warm")["metadata"].get("annotations", {}).get("warmcache.csi.dev/warm-nodes")
        assert wait_for(ready, timeout=60), d.log.read_text()[-2000:]
        cid = kube.get("pv", "pv-warm")["metadata"]["annotations"]["warmcache.csi.dev/content-id"]
        assert kube.get("node", NODE)["metadata"]["labels"][f"content.warmcache.csi.dev/{cid}"] == "ready"
        assert (d.store / "content" / cid / "config.json").exists()  # no NodeStage was called
        assert "warmcache.csi.dev/warm-nodes" not in kube.get("pv", "pv-cold")["metadata"].get("annotations", {})
        assert len([p for p in (d.store / "content").iterdir() if not p.name.endswith(".partial")]) == 1
    finally:
        assert d.stop() == 0


def test_a_copy_leaving_the_node_takes_back_its_label_and_warm_node_annotation(work, kube, small_store):
    """Node affinity on content.warmcache.csi.dev/<id> must not steer pods to
    a node whose copy was evicted, nor to one whose copy went while the
    plugin was down (a stale label and PV annotation are there at start)."""
    label = "content.warmcache.csi.dev/"
    stale = "0123456789abcdef" * 2
    kube.apply({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NODE, "labels": {label + stale: "ready", "gpu": "h100"}}})

    def pv(name, annotations=None):
        kube.apply({"apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": name, "annotations": annotations or {}},
                    "spec": {"accessModes": ["ReadOnlyMany"], "capacity": {"storage": "1Gi"},
                             "csi": {"driver": "warmcache.csi.dev", "volumeHandle": name}}})

    def labels():
        return kube.get("node", NODE)["metadata"].get("labels", {})

    def warm_nodes(name):
        return kube.get("pv", name)["metadata"].get("annotations", {}).get("warmcache.csi.dev/warm-nodes")

    pv("pv-gone", {"warmcache.csi.dev/content-id": stale, "warmcache.csi.dev/warm-nodes": f"other-node,{NODE}"})
    for n in "abc":
        pv(f"pv-{n}")
    d = Driver(work).start(*kube.plugin_flags("node"), "--evict-high=80", "--evict-low=60")
    try:
        assert wait_for(lambda: label + stale not in labels(), timeout=20), d.log.read_text()[-2000:]
        assert wait_for(lambda: warm_nodes("pv-gone") == "other-node", timeout=20)
        assert labels()["gpu"] == "h100", "only our labels are touched"

        vols = {n: d.create(n, f"file://{make_source(work, n, 35)}", f"csi.storage.k8s.io/pv/name=pv-{n}")
                for n in "abc"}
        for n in "ab":
            d.ctl("stage", "-f", vols[n], work / f"s-{n}")
            d.ctl("unstage", "-f", vols[n], work / f"s-{n}")
            time.sleep(1.1)  # last-use times are in seconds
        assert wait_for(lambda: warm_nodes("pv-a") == NODE and warm_nodes("pv-b") == NODE, timeout=20)
        cid = {n: kube.get("pv", f"pv-{n}")["metadata"]["annotations"]["warmcache.csi.dev/content-id"] for n in "ab"}
        assert labels()[label + cid["a"]] == "ready" and labels()[label + cid["b"]] == "ready"

        d.ctl("stage", "-f", vols["c"], work / "s-c")  # evicts a, the least recently used
        assert wait_for(lambda: label + cid["a"] not in labels(), timeout=20), d.log.read_text()[-2000:]
        assert wait_for(lambda: warm_nodes("pv-a") is None, timeout=20)
        assert wait_for(lambda: warm_nodes("pv-c") == NODE, timeout=20)
        assert labels()[label + cid["b"]] == "ready" and warm_nodes("pv-b") == NODE
    finally:
        assert d.stop() == 0


def test_two_nodes_filling_one_pvc_each_show_in_kubectl_describe(work, kube, s3server, bucket):
    """Issue #16: an Event per node. With one Event name per PVC and reason,
    the second node's CacheReady overwrote the first's and `kubectl describe
    pvc` showed one node at random."""
    ns, pvc, pv = "ml", "shared-llm", "pvc-5e2a91"
    claim_and_volume(kube, ns, pvc, pv, "wc1-y")
    nodes = {}
    for name in ("gpu-node-a", "gpu-node-b"):
        kube.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        (work / name).mkdir()
        nodes[name] = Driver(work / name)
    try:
        for name, d in nodes.items():
            d.start(*kube.plugin_flags("node"), f"--node-id={name}", "--fill-wait=60")
        first = nodes["gpu-node-a"]
        vol = first.ctl("create", pvc, "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={s3server.endpoint}",
                        "-p", "allowPlainHTTP=true", "-p", f"csi.storage.k8s.io/pvc/name={pvc}",
                        "-p", f"csi.storage.k8s.io/pvc/namespace={ns}", "-p", f"csi.storage.k8s.io/pv/name={pv}",
                        *s3server.secrets())
        f = work / "v.json"
        f.write_text(json.dumps(vol))
        for name, d in nodes.items():
            d.ctl("stage", "-f", f, work / name / "staging", *s3server.secrets())

        def ready():
            ev = kube.get("events", "-n", ns, "--field-selector",
                          f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={pvc},reason=CacheReady")
            return [e["message"] for e in ev["items"]]
        assert wait_for(lambda: len(ready()) == 2, timeout=20), ready()
        for name in nodes:
            assert sum(f"ready on node {name}:" in m for m in ready()) == 1, ready()
        described = kube.kubectl("describe", "pvc", "-n", ns, pvc).stdout
        if os.environ.get("WC_SAVE_DESCRIBE"):
            Path(os.environ["WC_SAVE_DESCRIBE"] + ".two-nodes").write_text(described)
        assert "ready on node gpu-node-a" in described and "ready on node gpu-node-b" in described, described
        warm = lambda: kube.get("pv", pv)["metadata"].get("annotations", {}).get("warmcache.csi.dev/warm-nodes", "")
        assert wait_for(lambda: sorted(warm().split(",")) == sorted(nodes), timeout=20), warm()
    finally:
        for d in nodes.values():
            assert d.stop() == 0
