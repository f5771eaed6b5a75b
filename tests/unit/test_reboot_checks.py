"""The reboot detectors of the nvidia and rocm roles, run for real against fixture kernel state.

Each detector is a shell script (roles/*/files/reboot-needs-*.sh): exit 0 with a reason when
a reboot is needed, exit 1 when not. modinfo and dpkg-query are stubs on PATH; /proc and /sys
are fixture trees.
"""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NVIDIA = ROOT / "roles" / "nvidia" / "files" / "reboot-needs-nvidia.sh"
AMDGPU = ROOT / "roles" / "rocm" / "files" / "reboot-needs-amdgpu.sh"
# /proc/driver/nvidia/version as the 570 driver prints it.
NVIDIA_VERSION = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release Build  "
                  "(dvs-builder@U16-I3-C05-2-1)  Sat Mar 22 14:49:10 UTC 2025\n"
                  "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")


def stub(bin_dir: Path, name: str, output: str | None) -> None:
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\nprintf '%s' '{output}'\n" if output is not None else "#!/bin/sh\nexit 1\n")
    script.chmod(0o755)


def run(script: Path, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, check=False, timeout=10,
                          env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", **env})


@pytest.fixture()
def kernel(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "proc" / "driver" / "nvidia").mkdir(parents=True)
    (tmp_path / "proc" / "modules").write_text("ext4 1007616 2 - Live 0x0\n")
    (tmp_path / "sys" / "module" / "amdgpu").mkdir(parents=True)
    return tmp_path


def test_nvidia_no_driver_installed_needs_nothing(kernel):
    stub(kernel / "bin", "modinfo", None)
    assert run(NVIDIA, kernel, DLCLUSTER_PROC=str(kernel / "proc")).returncode == 1


def test_nvidia_nouveau_still_loaded_after_a_failed_run(kernel):
    stub(kernel / "bin", "modinfo", "570.133.20")
    (kernel / "proc" / "modules").write_text("nouveau 2826240 0 - Live 0x0\next4 1007616 2 - Live 0x0\n")
    result = run(NVIDIA, kernel, DLCLUSTER_PROC=str(kernel / "proc"))
    assert result.returncode == 0
    assert result.stdout.strip() == "nouveau is loaded; NVIDIA driver 570.133.20 waits for a reboot"


def test_nvidia_installed_but_not_loaded(kernel):
    stub(kernel / "bin", "modinfo", "570.133.20")
    result = run(NVIDIA, kernel, DLCLUSTER_PROC=str(kernel / "proc"))
    assert result.returncode == 0 and "installed but not loaded" in result.stdout


def test_nvidia_older_driver_running(kernel):
    stub(kernel / "bin", "modinfo", "570.133.20")
    (kernel / "proc" / "driver" / "nvidia" / "version").write_text(NVIDIA_VERSION.replace("570.133.20", "550.54.15"))
    result = run(NVIDIA, kernel, DLCLUSTER_PROC=str(kernel / "proc"))
    assert result.returncode == 0
    assert result.stdout.strip() == "NVIDIA driver 550.54.15 runs, 570.133.20 is installed"


def test_nvidia_installed_driver_running_needs_nothing(kernel):
    stub(kernel / "bin", "modinfo", "570.133.20")
    (kernel / "proc" / "driver" / "nvidia" / "version").write_text(NVIDIA_VERSION)
    assert run(NVIDIA, kernel, DLCLUSTER_PROC=str(kernel / "proc")).returncode == 1


def test_amdgpu_without_the_dkms_package_needs_nothing(kernel):
    stub(kernel / "bin", "dpkg-query", "unknown ok not-installed")
    stub(kernel / "bin", "modinfo", "6.12.12")
    assert run(AMDGPU, kernel, DLCLUSTER_SYS=str(kernel / "sys")).returncode == 1


@pytest.mark.parametrize("running,needed", [(None, True), ("6.10.5", True), ("6.12.12", False)],
                         ids=["in-tree-module", "older-dkms", "current"])
def test_amdgpu_dkms(kernel, running, needed):
    stub(kernel / "bin", "dpkg-query", "install ok installed")
    stub(kernel / "bin", "modinfo", "6.12.12")
    if running:
        (kernel / "sys" / "module" / "amdgpu" / "version").write_text(running + "\n")
    result = run(AMDGPU, kernel, DLCLUSTER_SYS=str(kernel / "sys"))
    assert result.returncode == (0 if needed else 1), result.stdout + result.stderr
