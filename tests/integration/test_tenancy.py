"""Many tenants: what a user who may only create pods and PVCs can make the
plugins read, with the source policy exactly as the chart renders it
(`helm template` of the chart's values, the plugins' args taken from the
rendered DaemonSet and Deployment). Every attempt must be refused, naming the
rule and the value an admin would change (issue #13)."""
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CtlError, Driver

ROOT = Path(__file__).resolve().parents[2]
POLICY_FLAGS = ("--allowed-sources=", "--inline-sources=", "--inline-node-credentials", "--kubelet-dir=")


def chart_args(component, *sets):
    """The policy flags of the chart's rendered container for component."""
    out = subprocess.run([str(ROOT / ".tools" / "bin" / "helm"), "template", "wc", str(ROOT / "charts" / "warmcache"),
                          "--kube-version", "1.36.0", *[a for s in sets for a in ("--set", s)]],
                         capture_output=True, text=True, check=True).stdout
    for doc in yaml.safe_load_all(out):
        if doc and doc["kind"] in ("DaemonSet", "Deployment") and doc["metadata"]["name"] == f"warmcache-{component}":
            args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
            return [a for a in args if a.startswith(POLICY_FLAGS)]
    raise AssertionError(f"no {component} in the chart")


def inline(d, work, source, *more, secret=None):
    args = ["publish", f"csi-{abs(hash(source)) % 10**8}", "", work / "pod" / "vol", "--readonly",
            "-c", "csi.storage.k8s.io/ephemeral=true", "-c", f"source={source}"]
    for m in more:
        args += ["-c", m]
    if secret is True:
        args += ["--secret", "awsAccessKeyId=AKIAPODAUTHOR", "--secret", "awsSecretAccessKey=pod-author-secret"]
    for kv in secret if isinstance(secret, list) else []:
        args += ["--secret", kv]
    with pytest.raises(CtlError) as ei:
        d.ctl(*args)
    return ei.value


def staged(d, work, source, *more):
    args = ["stage", "wc1-00000000000000000000000000000abc", "-c", f"source={source}", work / "staging"]
    for m in more:
        args += ["-c", m]
    with pytest.raises(CtlError) as ei:
        d.ctl(*args)
    return ei.value


def test_with_the_charts_defaults_no_inline_volume_and_no_node_path_is_served(work, model):
    flags = chart_args("node")
    assert "--allowed-sources=s3://" in flags and not any(f.startswith("--inline") for f in flags), flags
    d = Driver(work).start(*flags, policy=[])
    try:
        for source in ("file:///etc/ssh/", f"file://{model}/", "s3://models/llama/"):
            err = inline(d, work, source)
            assert err.code == "PERMISSION_DENIED" and "inline (csi:) volumes are off" in err.message, err
            assert "inlineVolumes.allowedSources" in err.message
        # what an admin's static PV (or a class) could name: never the node's own files
        never = {"file:///etc/ssh/": "/etc", "file:///var/run/secrets/kubernetes.io/serviceaccount/": "/run",
                 "file:///var/lib/kubelet/pods/": "/var/lib/kubelet", f"file://{d.store}/content/": str(d.store),
                 "file:///proc/1/root/": "/proc", "file:///": "/"}
        for source, tree in never.items():
            err = staged(d, work, source)
            assert err.code == "PERMISSION_DENIED" and "is never served" in err.message, (source, err)
            assert tree in err.message, (source, err)
        err = staged(d, work, f"file://{model}/")
        assert err.code == "PERMISSION_DENIED" and "chart value allowedSources," in err.message and "s3://" in err.message
        err = staged(d, work, "s3://models/llama/", "endpoint=http://10.1.2.3:9000")
        assert err.code == "PERMISSION_DENIED" and "allowPlainHTTP" in err.message, err
        assert d.ctl("status", "--json").get("volumes", []) == [], "a refused volume left a record"
    finally:
        assert d.stop() == 0


def test_inline_volumes_only_where_and_as_the_admin_allows(work, model):
    flags = chart_args("node", f"inlineVolumes.allowedSources[0]=s3://public-models/",
                       f"node.sourceHostPaths[0]={model.parent}")
    d = Driver(work).start(*flags, policy=[])
    try:
        err = inline(d, work, "s3://private-models/x/", secret=True)
        assert err.code == "PERMISSION_DENIED" and "s3://public-models/" in err.message, err
        err = inline(d, work, f"file://{model}/")  # allowed for PVs through sourceHostPaths, not inline
        assert err.code == "PERMISSION_DENIED" and "inline" in err.message, err
        err = inline(d, work, "s3://public-models/x/")
        assert err.code == "PERMISSION_DENIED" and "node's own credentials" in err.message, err
        assert "nodePublishSecretRef" in err.message and "inlineVolumes.nodeCredentials" in err.message
        # a registry's credentials are no S3 credentials: still the node's own, still refused
        err = inline(d, work, "s3://public-models/x/", "endpoint=https://s3.attacker.example",
                     secret=["username=pod-author", "password=p", '.dockerconfigjson={"auths":{}}'])
        assert err.code == "PERMISSION_DENIED" and "node's own credentials" in err.message, err
        err = inline(d, work, "s3://public-models/x/", "endpoint=http://attacker.example:9000", secret=True)
        assert err.code == "PERMISSION_DENIED" and "allowPlainHTTP" in err.message, err
    finally:
        assert d.stop() == 0
    # with the node's credentials lent: still only towards AWS, never an endpoint the pod names
    flags = chart_args("node", "inlineVolumes.allowedSources[0]=s3://public-models/", "inlineVolumes.nodeCredentials=true")
    assert "--inline-node-credentials" in flags
    d = Driver(work).start(*flags, policy=[])
    try:
        err = inline(d, work, "s3://public-models/x/", "endpoint=https://s3.attacker.example")
        assert err.code == "PERMISSION_DENIED" and "cannot name an endpoint" in err.message, err
    finally:
        assert d.stop() == 0


def test_a_pvc_author_cannot_redirect_the_class_with_the_charts_controller(work, kube, s3server):
    """The controller as the chart runs it: annotations on a PVC of a class
    that lists no pvcOverrides change nothing, whatever they name."""
    s3server.s3.create_bucket(Bucket="models")
    s3server.s3.put_object(Bucket="models", Key="llama/config.json", Body=b"{}")
    ns = "tenant-a"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    attempts = {"etc": {"warmcache.csi.dev/source": "file:///etc/ssh/"},
                "bucket": {"warmcache.csi.dev/source": "s3://payroll/"},
                "endpoint": {"warmcache.csi.dev/endpoint": "http://attacker.example:9000"},
                "prewarm": {"warmcache.csi.dev/prewarm": "kubernetes.io/os=linux"}}
    for name, ann in attempts.items():
        kube.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "namespace": ns, "annotations": ann},
                    "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}}})
    d = Driver(work).start("--mode=controller", *kube.plugin_flags("controller"), *chart_args("controller"), policy=[])
    try:
        for name, ann in attempts.items():
            with pytest.raises(CtlError) as ei:
                d.ctl("create", f"pv-{name}", "-p", "source=s3://models/llama/", "-p", f"endpoint={s3server.endpoint}",
                      "-p", "allowPlainHTTP=true", "-p", f"csi.storage.k8s.io/pvc/name={name}",
                      "-p", f"csi.storage.k8s.io/pvc/namespace={ns}", *s3server.secrets())
            assert ei.value.code == "PERMISSION_DENIED", (name, ei.value)
            assert f"PVC {ns}/{name}: annotation {next(iter(ann))} is refused" in ei.value.message, ei.value
    finally:
        assert d.stop() == 0
