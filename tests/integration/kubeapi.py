"""A real Kubernetes API server for the integration tests: etcd (Debian's),
kube-apiserver and the PV controller of kube-controller-manager (built from
k8s.io/kubernetes by scripts/setup.sh), on loopback, with static tokens: an admin for the tests and kubectl, and the
node plugin's own identity (system:serviceaccount:kube-system:warmcache-node)
whose permissions come from the Helm chart's RBAC, applied as rendered. Both
servers stop with the fixture."""
import json
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
ADMIN_TOKEN = "wc-admin-token-7f3e"
NODE_TOKEN = "wc-node-token-2b9a"
CONTROLLER_TOKEN = "wc-controller-token-5c1d"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KubeAPI:
    def __init__(self, work):
        self.work = Path(work)
        self.procs = []
        ep, pp, ap = free_port(), free_port(), free_port()
        etcd_dir = self.work / "etcd"
        self.procs.append(subprocess.Popen(
            ["etcd", "--data-dir", str(etcd_dir), "--listen-client-urls", f"http://127.0.0.1:{ep}",
             "--advertise-client-urls", f"http://127.0.0.1:{ep}", "--listen-peer-urls", f"http://127.0.0.1:{pp}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
             "--initial-cluster", f"default=http://127.0.0.1:{pp}", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "etcd.log", "w")))
        certs = self.work / "apiserver"
        certs.mkdir()
        subprocess.run(["openssl", "genrsa", "-out", str(certs / "sa.key"), "2048"], check=True,
                       capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(certs / "sa.key"), "-pubout", "-out", str(certs / "sa.pub")],
                       check=True, capture_output=True)
        (certs / "tokens.csv").write_text(
            f"{ADMIN_TOKEN},admin,admin-uid,system:masters\n"
            f'{NODE_TOKEN},system:serviceaccount:kube-system:warmcache-node,node-uid,"system:serviceaccounts"\n'
            f'{CONTROLLER_TOKEN},system:serviceaccount:kube-system:warmcache-controller,ctl-uid,'
            f'"system:serviceaccounts"\n')
        self.server = f"https://127.0.0.1:{ap}"
        self.procs.append(subprocess.Popen(
            [str(TOOLS / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{ep}", "--bind-address=127.0.0.1",
             f"--secure-port={ap}", f"--cert-dir={certs}", f"--token-auth-file={certs / 'tokens.csv'}",
             "--authorization-mode=RBAC", "--service-account-issuer=https://kubernetes.default.svc",
             f"--service-account-key-file={certs / 'sa.pub'}",
             f"--service-account-signing-key-file={certs / 'sa.key'}",
             "--service-cluster-ip-range=10.0.0.0/24", "--disable-admission-plugins=ServiceAccount",
             "--enable-priority-and-fairness=false"],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "apiserver.log", "w")))
        self.ca = certs / "apiserver.crt"
        for name, token in (("admin", ADMIN_TOKEN), ("node", NODE_TOKEN), ("controller", CONTROLLER_TOKEN)):
            (self.work / f"{name}.token").write_text(token + "\n")
        self.kubeconfig = self.work / "kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": self.server, "certificate-authority": str(self.ca)}}],
            "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "admin"}}]}))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.ca.exists() and self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0:
                break
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError("etcd or kube-apiserver exited:\n" +
                                       (self.work / "apiserver.log").read_text()[-3000:])
            time.sleep(0.5)
        else:
            raise RuntimeError("kube-apiserver did not become ready:\n" +
                               (self.work / "apiserver.log").read_text()[-3000:])
        # the PV controller of kube-controller-manager: it marks claims for
        # their provisioner and binds them to the PVs that provisioner creates
        self.procs.append(subprocess.Popen(
            [str(TOOLS / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}", "--leader-elect=false",
             "--controllers=persistentvolume-binder-controller", "--bind-address=127.0.0.1",
             f"--secure-port={free_port()}"],
            stdout=subprocess.DEVNULL, stderr=open(self.work / "controller-manager.log", "w")))
        # the chart's RBAC, as Helm renders it
        rbac = subprocess.run([str(TOOLS / "helm"), "template", "warmcache", str(ROOT / "charts" / "warmcache"),
                               "--namespace", "kube-system", "--kube-version", "1.36.3",
                               "--show-only", "templates/rbac.yaml"],
                              capture_output=True, text=True, check=True).stdout
        self.kubectl("apply", "-f", "-", input=rbac)

    def plugin_flags(self, who="node"):
        return [f"--kube={self.server}", f"--kube-token-file={self.work / (who + '.token')}",
                f"--kube-ca-file={self.ca}"]

    def kubectl(self, *args, input=None, check=True):
        r = subprocess.run([str(TOOLS / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr}")
        return r

    def apply(self, obj):
        return self.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, *args):
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
