"""roles/data_disk on real block devices: loop devices of this machine, never its own disks.

The role runs on the controller itself (local connection) with a scratch fstab and mount point: a device holding
another filesystem is refused and keeps its file; an empty one is refused unless formatting is allowed, then
formatted, labelled, mounted by UUID and laid out; a second run changes nothing. Needs root (losetup, mkfs, mount):
CI runs as root, and without root these tests fail rather than skip.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_BESIDE = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_PLAYBOOK = str(_BESIDE) if _BESIDE.exists() else shutil.which("ansible-playbook") or "ansible-playbook"

PLAYBOOK = """
- name: The data disk
  hosts: all
  gather_facts: false
  roles:
    - role: data_disk
"""


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def loop(tmp_path):
    """A 64 MiB loop device over a file in tmp_path, detached (and unmounted) afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the data disk tests need root for losetup, mkfs and mount (CI runs as root)")
    devices = []

    def make(name: str) -> str:
        image = tmp_path / f"{name}.img"
        subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
        devices.append(sh("losetup", "--find", "--show", str(image)))
        return devices[-1]

    yield make
    for device in devices:
        subprocess.run(["umount", "--all-targets", device], capture_output=True, check=False)
        subprocess.run(["losetup", "--detach", device], capture_output=True, check=False)


def run_play(tmp_path: Path, playbook: str, **host_settings) -> subprocess.CompletedProcess:
    """A playbook on the controller itself, as host node1 with these variables."""
    host_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_settings}
    (tmp_path / "hosts.json").write_text(json.dumps({"all": {"hosts": {"node1": host_vars}}}))
    (tmp_path / "play.yml").write_text(playbook)
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "hosts.json"), str(tmp_path / "play.yml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})


def run_role(tmp_path: Path, device: str, **settings) -> subprocess.CompletedProcess:
    return run_play(tmp_path, PLAYBOOK, data_disk_device=device, data_disk_mount_point=str(tmp_path / "data"),
                    data_disk_fstab=str(tmp_path / "fstab"), **settings)


def test_a_device_holding_another_filesystem_is_refused_and_keeps_its_data(tmp_path, loop):
    device = loop("photos")
    sh("mkfs.ext4", "-q", "-L", "photos", device)
    scratch = tmp_path / "m"
    scratch.mkdir()
    sh("mount", device, str(scratch))
    (scratch / "holiday.jpg").write_text("precious")
    sh("umount", str(scratch))
    run = run_role(tmp_path, device, data_disk_format_empty=True)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert (f"Host node1: data_disk_device is {device}, which already holds ext4 labelled photos "
            f"(not ext4 labelled dlcluster); it is never formatted.") in " ".join(output.split()), output[-3000:]
    assert "TASK [data_disk : Format the empty device" not in output or "skipping: [node1]" in output
    assert sh("blkid", "-p", "-s", "LABEL", "-o", "value", device) == "photos"
    sh("mount", "-o", "ro", device, str(scratch))
    try:
        assert (scratch / "holiday.jpg").read_text() == "precious"
    finally:
        sh("umount", str(scratch))
    assert not (tmp_path / "fstab").exists()


def test_an_empty_device_is_formatted_only_when_allowed_then_mounted_by_uuid_and_a_rerun_changes_nothing(
        tmp_path, loop):
    device = loop("empty")
    refused = run_role(tmp_path, device)
    assert refused.returncode != 0
    assert (f"Host node1: data_disk_device is {device}, which is empty; set data_disk_format_empty: true to format "
            f"it as ext4.") in " ".join((refused.stdout + refused.stderr).split()), refused.stdout[-3000:]
    assert subprocess.run(["blkid", "-p", device], capture_output=True, check=False).returncode == 2

    first = run_role(tmp_path, device, data_disk_format_empty=True)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr
    uuid = sh("blkid", "-p", "-s", "UUID", "-o", "value", device)
    assert sh("blkid", "-p", "-s", "LABEL", "-o", "value", device) == "dlcluster"
    mount_point = tmp_path / "data"
    assert sh("findmnt", "--noheadings", "--output", "SOURCE", "--mountpoint", str(mount_point)) == device
    fstab = [line.split() for line in (tmp_path / "fstab").read_text().splitlines() if line.strip()]
    assert fstab == [[f"UUID={uuid}", str(mount_point), "ext4", "defaults,noatime", "0", "0"]], fstab
    assert sorted(p.name for p in mount_point.iterdir() if p.name != "lost+found") == [
        "datasets", "docker", "models", "runs"]

    second = run_role(tmp_path, device, data_disk_format_empty=True)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "changed=0" in second.stdout and "failed=0" in second.stdout, second.stdout[-3000:]
    assert sh("blkid", "-p", "-s", "UUID", "-o", "value", device) == uuid


def test_a_path_that_is_no_block_device_is_refused(tmp_path):
    run = run_role(tmp_path, "/dev/null")
    assert run.returncode != 0
    assert "/dev/null (/dev/null) is not a block device" in run.stdout + run.stderr, run.stdout[-3000:]
    assert not (tmp_path / "data").exists() and not (tmp_path / "fstab").exists()


PREFLIGHT = """
- name: The data disk's pre-flight checks
  hosts: all
  tasks:
    - name: Run them
      ansible.builtin.include_role:
        name: data_disk
        tasks_from: preflight.yml
"""


def run_preflight(tmp_path: Path, **settings) -> subprocess.CompletedProcess:
    return run_play(tmp_path, PREFLIGHT, **settings)


def test_the_preflight_passes_the_defaults_and_this_machines_loop_device(tmp_path, loop):
    assert run_preflight(tmp_path).returncode == 0
    run = run_preflight(tmp_path, data_disk_device=loop("pre"), data_disk_fstype="xfs")
    assert run.returncode == 0, run.stdout[-3000:]


def test_the_preflight_refuses_an_xfs_label_longer_than_12_and_this_machines_root_disk(tmp_path):
    run = run_preflight(tmp_path, data_disk_fstype="xfs", data_disk_label="dlcluster-data")
    assert run.returncode != 0
    assert 'at most 16 for ext4 and 12 for xfs (got "dlcluster-data" for xfs)' in " ".join(run.stdout.split())
    root = sh("findmnt", "--noheadings", "--output", "SOURCE", "/")
    if root.startswith("/dev/"):
        run = run_preflight(tmp_path, data_disk_device=root)
        assert run.returncode != 0 and "the disk of the root filesystem" in run.stdout, run.stdout[-3000:]
