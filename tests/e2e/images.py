"""Container images made here, with no registry and no Docker engine: a
docker-archive tar (manifest.json, one config, one layer) that
`ctr images import` takes. The images a test cluster needs:

- pause: the sandbox image, a static pause program compiled here;
- busybox: a test image of Debian's busybox-static with its applet links;
- warmcache (the short form in make test): the host's build of the plugin
  with the shared libraries it links and the mkfs programs it runs; make
  e2e builds the real image from the Dockerfile instead (scripts/image.sh);
- sidecars: csi-provisioner, a static Go binary built by scripts/setup.sh.
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

PAUSE_C = r"""
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
static void stop(int s) { (void)s; _exit(0); }
int main(void) {
    signal(SIGCHLD, reap); signal(SIGTERM, stop); signal(SIGINT, stop);
    for (;;) pause();
}
"""


def _add_file(tar, name, data=None, src=None, mode=0o755):
    info = tarfile.TarInfo(name.lstrip("/"))
    info.mode = mode
    if src is not None:
        data = Path(src).read_bytes()
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar, name):
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tar.addfile(info)


def _add_link(tar, name, target):
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type = tarfile.SYMTYPE
    info.linkname = target
    tar.addfile(info)


def archive(out, tag, files, links=(), dirs=(), entrypoint=None, env=()):
    """files: {image path: host path or bytes}; writes a docker-archive tar."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        made = set()
        for d in sorted(set(list(dirs) + [str(Path(p).parent) for p in files] + [str(Path(p).parent) for p, _ in links])):
            parts = Path(d).parts
            for i in range(2, len(parts) + 1):
                sub = "/".join(parts[1:i])
                if sub and sub not in made:
                    made.add(sub)
                    _add_dir(t, sub)
        for path, what in sorted(files.items()):
            if isinstance(what, (bytes, bytearray)):
                _add_file(t, path, data=bytes(what))
            else:
                _add_file(t, path, src=what, mode=os.stat(what).st_mode & 0o777)
        for path, target in links:
            _add_link(t, path, target)
    blob = layer.getvalue()
    diff = "sha256:" + hashlib.sha256(blob).hexdigest()
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": entrypoint, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                                           *env], "WorkingDir": "/"},
              "rootfs": {"type": "layers", "diff_ids": [diff]}}
    cfg = json.dumps(config).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    with tarfile.open(out, "w") as t:
        _add_file(t, cfg_name, data=cfg, mode=0o644)
        _add_file(t, "layer.tar", data=blob, mode=0o644)
        _add_file(t, "manifest.json", data=json.dumps(
            [{"Config": cfg_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode(), mode=0o644)
    return out


def libraries(*binaries):
    """The shared libraries (and the dynamic loader) binaries link, by ldd."""
    libs = set()
    for b in binaries:
        out = subprocess.run(["ldd", str(b)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            for p in parts:
                if p.startswith("/") and os.path.exists(p):
                    libs.add(p)  # as the binary asks for it; the copy is of what it points to
    return sorted(libs)


def pause(work):
    src = Path(work) / "pause.c"
    src.write_text(PAUSE_C)
    binary = Path(work) / "pause"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(src)], check=True)
    return archive(Path(work) / "pause.tar", "localhost/pause:wc-e2e", {"/pause": binary}, entrypoint=["/pause"])


def _busybox_links():
    bb = shutil.which("busybox") or "/bin/busybox"
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    return bb, [(f"/bin/{a}", "busybox") for a in applets if a != "busybox"]


def busybox(work, tag="localhost/busybox:wc-e2e"):
    """Debian's static busybox; tag names it (the e2e suite's pods ask for
    registry.k8s.io/e2e-test-images/busybox)."""
    bb, links = _busybox_links()
    name = tag.rsplit("/", 1)[-1].replace(":", "-")
    return archive(Path(work) / f"{name}.tar", tag, {"/bin/busybox": bb}, links=links,
                   dirs=["/tmp", "/models", "/scratch"], entrypoint=["/bin/sh"])


def agnhost(work, binary, tag):
    """The e2e suite's agnhost (built from k8s.io/kubernetes by setup.sh e2e,
    static) with busybox beside it for the shell some of its pods run."""
    bb, links = _busybox_links()
    return archive(Path(work) / "agnhost.tar", tag, {"/agnhost": binary, "/bin/busybox": bb}, links=links,
                   dirs=["/tmp"], entrypoint=["/agnhost"])


def warmcache_from_build(work, build):
    """The host's build with what it runs: the short form's image (the
    Dockerfile's is built by make e2e)."""
    bins = {"/usr/local/bin/warmcache-csi": Path(build) / "warmcache-csi",
            "/usr/local/bin/warmcachectl": Path(build) / "warmcachectl"}
    for tool in ("mkfs.xfs", "mkfs.ext4", "mke2fs", "blkid", "losetup", "mount", "umount"):
        path = shutil.which(tool)
        if path:
            bins[f"/usr/sbin/{tool}"] = path
    files = dict(bins)
    for lib in libraries(*bins.values()):
        files[lib] = lib
    for conf in ("/etc/mke2fs.conf",):
        if os.path.exists(conf):
            files[conf] = conf
    return archive(Path(work) / "warmcache.tar", "localhost/warmcache:e2e", files, dirs=["/tmp", "/csi"],
                   entrypoint=["/usr/local/bin/warmcache-csi"])


def static_binary(work, name, binary, tag):
    return archive(Path(work) / f"{name}.tar", tag, {f"/{name}": binary}, dirs=["/tmp"], entrypoint=[f"/{name}"])
