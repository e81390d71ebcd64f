"""The node's disks: raid0 (mdadm faked: the kernel here has no md driver;
discovery, mkfs.xfs, mounts and fills are real, on loop devices), adoption of
an array the node already has, device mode, and never formatting data."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import Driver, mounts_under, sha256_tree

FAKE_MDADM = Path(__file__).with_name("fake-mdadm")


def sh(*args):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def loops(work):
    """Makes loop devices over sparse files; unmounts and detaches them afterwards."""
    made = []

    def make(name, mib=512):
        f = work / "backing" / name
        f.parent.mkdir(exist_ok=True)
        with open(f, "wb") as fh:
            fh.truncate(mib << 20)
        dev = sh("losetup", "-f", "--show", f)
        made.append(dev)
        return dev

    yield make
    array = work / "dev" / "md" / "warmcache"
    if array.is_symlink():
        made.append(os.path.realpath(array))  # the fake mdadm's loop device
    for m in sorted(mounts_under(work), key=len, reverse=True):
        if m != str(work):
            subprocess.run(["umount", m], capture_output=True)
    for dev in made:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def nvme_disks(work, devs):
    byid = work / "by-id"
    byid.mkdir(exist_ok=True)
    for i, dev in enumerate(devs):
        (byid / f"nvme-Amazon_EC2_NVMe_Instance_Storage_AWS{i:017d}").symlink_to(dev)
    return str(byid / "*NVMe_Instance_Storage*")


def raid_driver(work, glob, *extra):
    env_log = work / "mdadm.log"
    os.environ["FAKE_MDADM_LOG"] = str(env_log)
    os.environ["FAKE_MDADM_BACKING"] = str(work / "backing" / "array")
    (work / "backing").mkdir(exist_ok=True)
    if not (work / "backing" / "array").exists():
        with open(work / "backing" / "array", "wb") as fh:
            fh.truncate(1 << 30)
    return Driver(work).start("--store-mode=raid0", f"--store-root={work}/mnt/warmcache", f"--disk-glob={glob}",
                              f"--adopt={work}/k8s-disks/0", f"--raid-array={work}/dev/md/warmcache",
                              f"--mdadm={FAKE_MDADM}", *extra)


def mdadm_calls(work):
    p = work / "mdadm.log"
    return [json.loads(l) for l in p.read_text().splitlines()] if p.exists() else []


def mkfs_runs(d):
    return [l for l in d.lines_since_start() if l.get("msg") == "ran" and "mkfs" in l["argv"][0]]


def mount_of(path):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == str(path):
                return parts
    return None


def test_raid0_with_fake_mdadm_stripes_formats_and_mounts(work, loops, model):
    glob = nvme_disks(work, [loops("nvme0"), loops("nvme1")])
    d = raid_driver(work, glob)
    calls = mdadm_calls(work)
    assert len(calls) == 1 and calls[0][:2] == ["--create", f"{work}/dev/md/warmcache"]
    assert "--level=0" in calls[0] and calls[0][calls[0].index("--raid-devices") + 1] == "2"
    assert sorted(calls[0][-2:]) == sorted(os.path.realpath(p) for p in Path(work / "by-id").iterdir())
    mkfs = mkfs_runs(d)
    assert len(mkfs) == 1 and "su=512k,sw=2" in mkfs[0]["argv"]
    m = mount_of(work / "mnt" / "warmcache")
    assert m and "noatime" in m[5] and m[m.index("-") + 1] == "xfs"
    info = sh("xfs_info", work / "mnt" / "warmcache")
    assert "sunit=128" in info and "swidth=256" in info  # 512 KiB chunk x 2 disks, in 4 KiB blocks
    vol = d.create("m", f"file://{model}")
    d.ctl("stage", "-f", vol, work / "s")
    assert sha256_tree(work / "s") == sha256_tree(model)
    d.ctl("unstage", "-f", vol, work / "s")
    assert d.stop() == 0

    # a restart on a prepared node changes nothing: no mdadm, no mkfs, copy kept
    d2 = raid_driver(work, glob)
    assert len(mdadm_calls(work)) == 1 and mkfs_runs(d2) == []
    assert len(d2.ctl("status", "--json")["copies"]) == 1
    assert d2.stop() == 0

    # after a reboot the array is there but not mounted: mount it, do not format
    subprocess.run(["umount", str(work / "mnt" / "warmcache")], check=True)
    d3 = raid_driver(work, glob)
    assert len(mdadm_calls(work)) == 1 and mkfs_runs(d3) == []
    assert len(d3.ctl("status", "--json")["copies"]) == 1, "the copy must survive a reboot"
    assert d3.stop() == 0


def test_raid0_never_formats_a_disk_that_holds_a_file_system(work, loops):
    used = loops("nvme0")
    sh("mkfs.ext4", "-q", "-L", "precious", used)
    glob = nvme_disks(work, [used, loops("nvme1")])
    with pytest.raises(RuntimeError):
        raid_driver(work, glob)
    log = (work / "driver.log").read_text()
    assert f"{used} holds ext4" in log and "never formats" in log
    assert mdadm_calls(work) == []
    assert sh("blkid", "-o", "value", "-s", "LABEL", used) == "precious"


def test_raid0_adopts_an_array_the_node_already_mounted(work, loops, model):
    # what EKS AL2023 nodeadm / Karpenter RAID0 leave: an xfs array at /mnt/k8s-disks/0
    node_array = loops("md-kubernetes")
    sh("mkfs.xfs", "-q", node_array)
    (work / "k8s-disks" / "0").mkdir(parents=True)
    sh("mount", node_array, work / "k8s-disks" / "0")
    (work / "k8s-disks" / "0" / "containerd").mkdir()
    glob = nvme_disks(work, [loops("nvme0"), loops("nvme1")])
    d = raid_driver(work, glob)
    assert mdadm_calls(work) == [] and mkfs_runs(d) == []
    assert d.ctl("status", "--json")["store_root"] == f"{work}/k8s-disks/0/warmcache"
    vol = d.create("m", f"file://{model}")
    d.ctl("stage", "-f", vol, work / "s")
    assert (work / "k8s-disks" / "0" / "containerd").is_dir(), "the node's own data is left alone"
    d.ctl("unstage", "-f", vol, work / "s")
    assert d.stop() == 0


def test_raid0_without_instance_store_disks_says_what_to_do(work):
    with pytest.raises(RuntimeError):
        raid_driver(work, str(work / "by-id" / "*NVMe_Instance_Storage*"))
    assert "use storeMode: directory" in (work / "driver.log").read_text()


def test_device_mode_formats_a_blank_disk_once_and_refuses_a_foreign_one(work, loops, model):
    blank = loops("disk0")
    args = ("--store-mode=device", f"--store-root={work}/mnt/wc", f"--store-device={blank}")
    d = Driver(work).start(*args)
    assert len(mkfs_runs(d)) == 1 and mount_of(work / "mnt" / "wc")
    vol = d.create("m", f"file://{model}")
    d.ctl("stage", "-f", vol, work / "s")
    d.ctl("unstage", "-f", vol, work / "s")
    assert d.stop() == 0
    subprocess.run(["umount", str(work / "mnt" / "wc")], check=True)
    d2 = Driver(work).start(*args)  # our label: mounted again, not formatted
    assert mkfs_runs(d2) == [] and len(d2.ctl("status", "--json")["copies"]) == 1
    assert d2.stop() == 0

    foreign = loops("disk1")
    sh("mkfs.xfs", "-q", "-L", "data", foreign)
    with pytest.raises(RuntimeError):
        Driver(work).start("--store-mode=device", f"--store-root={work}/mnt/wc2", f"--store-device={foreign}")
    assert "never formats a disk that holds data" in (work / "driver.log").read_text()


def test_hostpath_binds_of_plain_directories_are_not_taken_for_arrays(work, loops, model):
    """In the node plugin's pod every hostPath volume is a mount point: a bind
    of a plain directory must neither be adopted nor count as prepared."""
    for d in ("host/mnt-k8s-disks-0", "host/var-lib-warmcache"):
        (work / d).mkdir(parents=True)
    (work / "k8s-disks" / "0").mkdir(parents=True)
    (work / "mnt" / "warmcache").mkdir(parents=True)
    sh("mount", "--bind", work / "host" / "mnt-k8s-disks-0", work / "k8s-disks" / "0")
    sh("mount", "--bind", work / "host" / "var-lib-warmcache", work / "mnt" / "warmcache")
    glob = nvme_disks(work, [loops("nvme0"), loops("nvme1")])
    d = raid_driver(work, glob)
    assert len(mdadm_calls(work)) == 1, "a bind of an empty directory is not the node's array"
    assert len(mkfs_runs(d)) == 1
    assert d.ctl("status", "--json")["store_root"] == f"{work}/mnt/warmcache"
    assert d.stop() == 0


def reboot(work):
    """What a reboot leaves of the store: nothing mounted, no md array assembled."""
    subprocess.run(["umount", str(work / "mnt" / "warmcache")], check=True)
    array = work / "dev" / "md" / "warmcache"
    if array.is_symlink():
        dev = os.path.realpath(array)
        array.unlink()
        subprocess.run(["losetup", "-d", dev], check=True)


def test_raid0_on_one_instance_store_disk_comes_back_after_a_reboot(work, loops, model):
    """Single-NVMe GPU instances: the disk holds warmcache's own xfs after a reboot."""
    glob = nvme_disks(work, [loops("nvme0")])
    d = raid_driver(work, glob)
    assert mdadm_calls(work) == [] and len(mkfs_runs(d)) == 1
    vol = d.create("m", f"file://{model}")
    d.ctl("stage", "-f", vol, work / "s")
    d.ctl("unstage", "-f", vol, work / "s")
    assert d.stop() == 0
    reboot(work)
    d2 = raid_driver(work, glob)
    assert mkfs_runs(d2) == [] and len(d2.ctl("status", "--json")["copies"]) == 1
    assert d2.stop() == 0


def test_raid0_after_a_reboot_assembles_its_array_again_instead_of_refusing_it(work, loops, model):
    glob = nvme_disks(work, [loops("nvme0"), loops("nvme1")])
    d = raid_driver(work, glob)
    vol = d.create("m", f"file://{model}")
    d.ctl("stage", "-f", vol, work / "s")
    d.ctl("unstage", "-f", vol, work / "s")
    assert d.stop() == 0
    reboot(work)  # the members hold md superblocks (linux_raid_member), and no array is assembled
    d2 = raid_driver(work, glob)
    calls = mdadm_calls(work)
    assert [c[0] for c in calls] == ["--create", "--assemble"], calls
    assert mkfs_runs(d2) == [] and len(d2.ctl("status", "--json")["copies"]) == 1, "the copy must survive"
    assert d2.stop() == 0


@pytest.mark.parametrize("mode", ["device", "directory"])
def test_writable_volumes_are_bounded_by_their_size(work, loops, model, mode):
    """On the store warmcache formats (device mode) and in a plain directory:
    a project quota where the kernel has XFS quotas, a loop image where not
    (this machine's kernel has no CONFIG_XFS_QUOTA: both run as loop images)."""
    if mode == "device":
        d = Driver(work).start("--store-mode=device", f"--store-root={work}/mnt/wc", f"--store-device={loops('disk0')}")
    else:
        d = Driver(work).start()
    vol = d.create("scratch", f"file://{model}", capacity=16 << 20, access="ReadWriteOnce")
    d.ctl("stage", "-f", vol, work / "s")
    target = work / "pod" / "vol"
    d.ctl("publish", "-f", vol, work / "s", target, "--access", "ReadWriteOnce")
    with pytest.raises(OSError) as ei:
        with open(target / "scratch.bin", "wb") as f:
            for _ in range(64):
                f.write(b"x" * (1 << 20))
                f.flush()
                os.fsync(f.fileno())
    assert ei.value.errno in (122, 28)  # EDQUOT (project quota) or ENOSPC (loop image): stopped at the size
    assert 12 << 20 <= (target / "scratch.bin").stat().st_size <= 16 << 20
    assert any(l.get("msg") == "writable layers" for l in d.lines_since_start())
    stats = d.ctl("stats", "-f", vol, target)
    assert stats["volume_condition"].get("abnormal") is True
    assert "writable layer" in stats["volume_condition"]["message"] and str(target) in stats["volume_condition"]["message"]
    d.ctl("unpublish", "-f", vol, target)
    d.ctl("unstage", "-f", vol, work / "s")
    assert d.stop() == 0
