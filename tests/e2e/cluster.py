"""A real single-node Kubernetes on this machine, for the cluster tests:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
(Debian's, with runc) and a kubelet, every one on loopback, every file of
theirs under one work directory, and the machine left as it was found.

What it takes to run a kubelet here without changing the host
(../shared/notes/real-kubelet.md has how each was found):
- the kubelet runs in a mount namespace of its own whose /proc/sys files
  kubelet checks are bind mounts of files holding the values it wants
  (protectKernelDefaults: it checks and never writes);
- no iptables chains (makeIPTablesUtilChains: false); pods get a network
  namespace with a dummy eth0 and a link-local address (cni/wc-dummy:
  nothing outside the pod's namespace changes; pods that need to reach
  something use the host's network); cgroups under a cgroupRoot of our
  own, removed at the end;
- the work directory is a shared bind mount, so mounts made by the CSI node
  plugin in its container reach the kubelet and the host, and back;
- the API server listens on 127.1.0.1:443 and the service range is
  127.1.0.0/28, so the `kubernetes` Service's address is the API server's
  own: in-cluster clients (the plugins, csi-provisioner) reach it with no
  kube-proxy, on loopback.
"""
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools" / "bin"
API_IP = "127.1.0.1"
NODE = socket.gethostname()
SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1",
           "vm/panic_on_oom": "0", "kernel/keys/root_maxkeys": "1000000", "kernel/keys/root_maxbytes": "25000000"}
CONTROLLERS = ["serviceaccount-controller", "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
               "namespace-controller", "garbage-collector-controller", "deployment-controller", "replicaset-controller",
               "daemonset-controller", "persistentvolume-binder-controller", "persistentvolume-protection-controller",
               "persistentvolumeclaim-protection-controller", "pod-garbage-collector-controller", "ttl-controller",
               "ephemeral-volume-controller"]  # generic ephemeral volumes: a PVC per pod, from its template


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _integration():
    """The integration tests' conftest (its S3 server, its mount helpers),
    loaded once under a name of its own."""
    name = "wc_integration_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "integration" / "conftest.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


integration = _integration()
mounts_under = integration.mounts_under


def host_state():
    """The host settings a kubelet could change: its sysctls and iptables."""
    state = {f"sysctl {k}": Path("/proc/sys", k).read_text().strip() for k in SYSCTLS}
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            out = subprocess.run([tool], capture_output=True, text=True).stdout
            state[tool] = "\n".join(l for l in out.splitlines() if not l.startswith("#"))
    return state


class Cluster:
    def __init__(self, work):
        self.work = Path(work)
        self.procs = {}
        self.logs = self.work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.kubelet_dir = self.work / "kubelet"
        self.cgroup_root = f"wc-e2e-{os.getpid()}"
        self.containerd_sock = self.work / "containerd" / "containerd.sock"
        self.host_before = host_state()
        self.run_containerd_was_there = Path("/run/containerd").exists()  # the shims' sockets go there
        # kubelet writes /var/lib/kubelet/device-plugins (a path it does not let
        # us move) and its pki there: a directory of ours is bound over it in
        # kubelet's own mount namespace, the empty mount point made only if absent
        self.var_lib_kubelet_was_there = Path("/var/lib/kubelet").exists()
        try:
            self._share_work()
            self._control_plane()
            self._containerd()
        except BaseException:
            self.stop()
            raise

    # ---- host set-up, all undone in stop() ---------------------------------

    def _share_work(self):
        subprocess.run(["mount", "--bind", str(self.work), str(self.work)], check=True)
        subprocess.run(["mount", "--make-rshared", str(self.work)], check=True)
        self.shared = True

    def _spawn(self, name, argv, env=None):
        log = open(self.logs / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})}, start_new_session=True)
        return self.procs[name]

    def _wait(self, what, cond, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited while waiting for {what}:\n" +
                                       (self.logs / f"{name}.log").read_text()[-4000:])
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}")

    # ---- control plane -------------------------------------------------------

    def _control_plane(self):
        pki = self.work / "pki"
        pki.mkdir()
        subprocess.run(["openssl", "genrsa", "-out", str(pki / "sa.key"), "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub")],
                       check=True, capture_output=True)
        self.admin_token, node_token = os.urandom(16).hex(), os.urandom(16).hex()
        (pki / "tokens.csv").write_text(f"{self.admin_token},admin,admin,system:masters\n"
                                        f'{node_token},system:node:{NODE},node,"system:nodes"\n')
        ep, pp = free_port(), free_port()
        self._spawn("etcd", ["etcd", "--data-dir", str(self.work / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{ep}",
                             "--advertise-client-urls", f"http://127.0.0.1:{ep}",
                             "--listen-peer-urls", f"http://127.0.0.1:{pp}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
                             "--initial-cluster", f"default=http://127.0.0.1:{pp}", "--log-level", "error"])
        self.server = f"https://{API_IP}:443"
        self._spawn("kube-apiserver", [
            str(TOOLS / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{ep}", f"--bind-address={API_IP}",
            f"--advertise-address={API_IP}", "--secure-port=443", f"--cert-dir={pki}",
            f"--token-auth-file={pki / 'tokens.csv'}", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction", "--disable-admission-plugins=TaintNodesByCondition",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={API_IP.rsplit('.', 1)[0]}.0/28", "--endpoint-reconciler-type=none",
            "--kubelet-preferred-address-types=Hostname", "--enable-priority-and-fairness=false",
            "--allow-privileged=true"])
        self.ca = pki / "apiserver.crt"
        self.kubeconfig = self._kubeconfig("admin", self.admin_token)
        self.node_kubeconfig = self._kubeconfig("node", node_token)
        self._wait("kube-apiserver", lambda: self.ca.exists() and
                   self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0)
        self._spawn("kube-controller-manager", [
            str(TOOLS / "kube-controller-manager"), f"--kubeconfig={self.kubeconfig}", "--leader-elect=false",
            f"--controllers={','.join(CONTROLLERS)}", f"--root-ca-file={self.ca}",
            f"--service-account-private-key-file={pki / 'sa.key'}", "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}", "--use-service-account-credentials=false"])
        self._spawn("kube-scheduler", [str(TOOLS / "kube-scheduler"), f"--kubeconfig={self.kubeconfig}",
                                       "--leader-elect=false", "--bind-address=127.0.0.1",
                                       f"--secure-port={free_port()}"])

    def _kubeconfig(self, user, token):
        path = self.work / f"{user}.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": self.server, "certificate-authority": str(self.ca)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}]}))
        return path

    # ---- the node ------------------------------------------------------------

    def _containerd(self):
        c = self.work / "containerd"
        (self.work / "cni").mkdir()
        (self.work / "cni-bin").mkdir()
        (self.work / "cni-bin" / "wc-dummy").symlink_to(Path(__file__).resolve().parent / "cni" / "wc-dummy")
        (self.work / "cni-bin" / "loopback").symlink_to("/usr/lib/cni/loopback")  # containerd's own, for lo
        (self.work / "cni" / "10-wc-dummy.conflist").write_text(json.dumps(
            {"cniVersion": "0.4.0", "name": "wc-dummy", "plugins": [{"type": "wc-dummy"}]}))
        (c / "root").mkdir(parents=True)
        (c / "config.toml").write_text(f'''version = 2
root = "{c}/root"
state = "{c}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.containerd_sock}"
[ttrpc]
  address = "{c}/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:wc-e2e"
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{c}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{self.work}/cni-bin"
    conf_dir = "{self.work}/cni"
''')
        self._spawn("containerd", ["containerd", "--config", str(c / "config.toml")])
        self._wait("containerd", lambda: self.containerd_sock.exists() and self.ctr("version", check=False).returncode == 0)

    def ctr(self, *args, check=True, input=None):
        return subprocess.run(["ctr", "--address", str(self.containerd_sock), "-n", "k8s.io", *args],
                              capture_output=True, text=True, check=check, input=input)

    def load_image(self, tar):
        self.ctr("images", "import", "--no-unpack" if False else "--all-platforms", str(tar))

    def start_kubelet(self):
        sysctl = self.work / "sysctl"
        sysctl.mkdir()
        binds = []
        for k, v in SYSCTLS.items():
            if Path("/proc/sys", k).read_text().strip() != v:
                f = sysctl / k.replace("/", ".")
                f.write_text(v + "\n")
                binds.append(f"mount --bind {f} /proc/sys/{k}")
        # kubelet's cgroupRoot must be there: one of our own in each hierarchy (gone at stop())
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            if ctrl.is_dir() and (ctrl / "cgroup.procs").exists():
                (ctrl / self.cgroup_root).mkdir(exist_ok=True)
                if ctrl.name == "cpuset":  # an empty cpuset takes no task: inherit the parent's
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        (ctrl / self.cgroup_root / f).write_text((ctrl / f).read_text())
        (self.work / "kubelet-plugins").mkdir()
        self.kubelet_dir.mkdir()
        (self.work / "var-lib-kubelet").mkdir()
        Path("/var/lib/kubelet").mkdir(parents=True, exist_ok=True)
        binds.append(f"mount --bind {self.work / 'var-lib-kubelet'} /var/lib/kubelet")
        config = self.work / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": "127.0.0.1", "port": free_port(), "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs", "cgroupRoot": "/" + self.cgroup_root, "cgroupsPerQOS": True,
            "failSwapOn": False, "failCgroupV1": False, "protectKernelDefaults": True,
            "makeIPTablesUtilChains": False, "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            # images made here cannot be pulled again: never collect them
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "resolvConf": "", "registerNode": True,
            "volumePluginDir": str(self.work / "kubelet-plugins"),
            "localStorageCapacityIsolation": False}))
        cmd = " && ".join(binds + [
            f"exec {TOOLS / 'kubelet'} --config={config} --kubeconfig={self.node_kubeconfig} "
            f"--root-dir={self.kubelet_dir} --v=2"])
        self._spawn("kubelet", ["unshare", "-m", "--propagation", "unchanged", "--", "sh", "-c", cmd])
        self._wait("the node to be Ready", self.node_ready, timeout=120)

    def node_ready(self):
        r = self.kubectl("get", "node", NODE, "-o", "json", check=False)
        if r.returncode != 0:
            return False
        conds = json.loads(r.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    # ---- using it --------------------------------------------------------------

    def kubectl(self, *args, input=None, check=True, timeout=120):
        r = subprocess.run([str(TOOLS / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args], input=input,
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {r.stderr}")
        return r

    def apply(self, *objs):
        return self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objs))

    def get(self, *args):
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def helm(self, *args, check=True):
        r = subprocess.run([str(TOOLS / "helm"), f"--kubeconfig={self.kubeconfig}", *args], capture_output=True,
                           text=True, timeout=300)
        if check and r.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)}: {r.stderr}")
        return r

    # ---- teardown: leave the machine as it was -------------------------------

    def _stop(self, name, sig=signal.SIGTERM, timeout=30):
        p = self.procs.pop(name, None)
        if not p or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
            p.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    def stop(self):
        self._stop("kubelet")
        if "containerd" in self.procs:
            # every container goes with its shim; containerd itself last
            tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
            for t in tasks:
                self.ctr("tasks", "kill", "-s", "SIGKILL", t, check=False)
            deadline = time.monotonic() + 20
            while self.ctr("tasks", "ls", "-q", check=False).stdout.split() and time.monotonic() < deadline:
                time.sleep(0.2)
            for t in tasks:
                self.ctr("tasks", "delete", t, check=False)
            for ctn in self.ctr("containers", "ls", "-q", check=False).stdout.split():
                self.ctr("containers", "delete", ctn, check=False)
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "containerd", "etcd"):
            self._stop(name)
        subprocess.run(["pkill", "-KILL", "-f", f"containerd-shim-runc-v2 -namespace k8s.io -address {self.containerd_sock}"],
                       check=False)
        for m in sorted(mounts_under(self.work), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)
        if not self.run_containerd_was_there and Path("/run/containerd").exists():
            subprocess.run(["find", "/run/containerd", "-depth", "-type", "d", "-empty", "-delete"], check=False)
        if not self.var_lib_kubelet_was_there:
            try:
                Path("/var/lib/kubelet").rmdir()
            except OSError:
                pass
        for ctrl in Path("/sys/fs/cgroup").iterdir():
            top = ctrl / self.cgroup_root
            if top.is_dir():
                for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                    try:
                        d.rmdir()
                    except OSError:
                        pass
                try:
                    top.rmdir()
                except OSError:
                    pass

    def leftovers(self):
        """What the machine keeps of the cluster after stop(): nothing, or what."""
        left = []
        left += [f"mount {m}" for m in mounts_under(self.work)]
        left += [f"cgroup {c}" for c in Path("/sys/fs/cgroup").glob(f"*/{self.cgroup_root}")]
        if not self.run_containerd_was_there and Path("/run/containerd").exists():
            left.append(f"/run/containerd: {[str(p) for p in Path('/run/containerd').rglob('*')]}")
        if not self.var_lib_kubelet_was_there and Path("/var/lib/kubelet").exists():
            left.append(f"/var/lib/kubelet: {[str(p) for p in Path('/var/lib/kubelet').rglob('*')]}")
        now = host_state()
        left += [f"{k} was {v!r}, is {now.get(k)!r}" for k, v in self.host_before.items() if now.get(k) != v]
        shims = subprocess.run(["pgrep", "-f", str(self.containerd_sock)], capture_output=True, text=True).stdout
        left += [f"process {p}" for p in shims.split()]
        return left
