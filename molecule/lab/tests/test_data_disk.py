"""roles/data_disk on the lab, whose hosts have no data disk: /data is a directory with the layout, and the first
converge said so for every member. (The role on real block devices: tests/integration/test_data_disk.py.)"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import ROOT  # noqa: E402

testinfra_hosts = ["ansible://head", "ansible://cpu1", "ansible://cpu2"]


def test_data_is_a_directory_with_the_layout(host):
    for name in ("datasets", "models", "docker", "runs"):
        layout = host.file(f"/data/{name}")
        assert layout.is_directory and layout.user == "root" and layout.mode == 0o755, name
    # No device: nothing is mounted there.
    assert not host.mount_point("/data").exists


def test_the_converge_said_the_data_lives_on_the_root_filesystem(host):
    # Whitespace made single: the YAML callback folds long messages.
    log = " ".join((ROOT / ".ansible" / "lab-converge-vvv.log").read_text(errors="replace").split())
    name = host.backend.get_hostname()
    assert f"Host {name} has no data_disk_device: /data is a directory on the root filesystem." in log
