"""The GPU post-install check filters (filter_plugins/dl_gpu.py), fed by the fixture tools and trees.

The fixture nvidia-smi / rocm-smi (molecule/shared/hardware/bin/, see its README) run here for
real, and their output goes through the filters with the dl_hardware fact of the matching
fixture tree, as the roles' check tasks do on a lab host.
"""

import os
import subprocess
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

import dl_hardware_facts
from dl_gpu import FilterModule, dl_gpu_check, dl_nvidia_smi_gpus, dl_rocm_smi_gpus

HARDWARE = Path(__file__).resolve().parents[2] / "molecule" / "shared" / "hardware"
NVIDIA_QUERY = ["--query-gpu=index,name,driver_version,memory.total,pci.bus_id", "--format=csv,noheader"]
ROCM_QUERY = ["--showproductname", "--showbus", "--json"]


def tool(name, args, **fault):
    """Run a fixture tool like the check task does; returns the fields of a registered result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLCLUSTER_FIXTURE_")}
    env.update({f"DLCLUSTER_FIXTURE_{k.upper()}": v for k, v in fault.items()})
    proc = subprocess.run([str(HARDWARE / "bin" / name), *args], capture_output=True, text=True,
                          env=env, timeout=30, check=False)
    return {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


@pytest.fixture(scope="module")
def a100s():
    return dl_hardware_facts.scan(str(HARDWARE / "nvidia-2xa100"))


@pytest.fixture(scope="module")
def mi210():
    return dl_hardware_facts.scan(str(HARDWARE / "amd-mi210"))


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {"dl_nvidia_smi_gpus", "dl_rocm_smi_gpus", "dl_gpu_check"}


# ------------------------------------------------------------- parsers --


def test_nvidia_smi_csv_is_parsed():
    out = ("0, NVIDIA A100-SXM4-80GB, 570.133.20, 81920 MiB, 00000000:17:00.0\n"
           "1, NVIDIA A100-SXM4-80GB, 570.133.20, 81920 MiB, 00000000:65:00.0\n")
    assert dl_nvidia_smi_gpus(out) == [
        {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "driver_version": "570.133.20", "memory_mib": 81920,
         "pci_slot": "0000:17:00.0"},
        {"index": 1, "name": "NVIDIA A100-SXM4-80GB", "driver_version": "570.133.20", "memory_mib": 81920,
         "pci_slot": "0000:65:00.0"},
    ]
    assert dl_nvidia_smi_gpus("") == [] and dl_nvidia_smi_gpus("\n") == []


def test_nvidia_smi_memory_not_available_is_kept_as_none():
    [gpu] = dl_nvidia_smi_gpus("0, NVIDIA GH200 480GB, 570.133.20, [N/A], 00000009:01:00.0")
    assert gpu["memory_mib"] is None and gpu["pci_slot"] == "0009:01:00.0"


@pytest.mark.parametrize("text", [
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    "0, NVIDIA A100-SXM4-80GB, 570.133.20",
    "index, name, driver_version, memory.total [MiB], pci.bus_id",
])
def test_nvidia_smi_unreadable_line_names_the_line(text):
    with pytest.raises(AnsibleFilterError, match=r"dl_nvidia_smi_gpus: cannot read"):
        dl_nvidia_smi_gpus(text)


def test_nvidia_smi_wants_a_string():
    with pytest.raises(AnsibleFilterError, match="dl_nvidia_smi_gpus: expects nvidia-smi's output as a string"):
        dl_nvidia_smi_gpus(["0, x"])


def test_rocm_smi_json_in_both_spellings_and_without_system_block():
    rocm6 = ('{"card1": {"Card Series": "AMD Instinct MI210", "Card Model": "0x740f", "PCI Bus": "0000:C2:00.0"},'
             ' "card0": {"Card Series": "AMD Instinct MI210", "Card Model": "0x740f", "PCI Bus": "0000:C1:00.0"},'
             ' "system": {"Driver version": "6.8.5"}}')
    assert [g["card"] for g in dl_rocm_smi_gpus(rocm6)] == [0, 1]
    assert dl_rocm_smi_gpus(rocm6)[0] == {"card": 0, "name": "AMD Instinct MI210", "model": "0x740f",
                                          "pci_slot": "0000:c1:00.0"}
    rocm5 = {"card0": {"Card series": "Arcturus GL-XL [AMD Instinct MI100]", "Card model": "0x0c34"}}
    assert dl_rocm_smi_gpus(rocm5) == [{"card": 0, "name": "Arcturus GL-XL [AMD Instinct MI100]",
                                        "model": "0x0c34", "pci_slot": ""}]
    assert dl_rocm_smi_gpus("") == [] and dl_rocm_smi_gpus("{}") == []


def test_rocm_smi_not_json():
    with pytest.raises(AnsibleFilterError, match="dl_rocm_smi_gpus: rocm-smi's output is not JSON"):
        dl_rocm_smi_gpus("GPU[0]\t\t: Card series: \t\t0x738c")
    with pytest.raises(AnsibleFilterError, match="expects rocm-smi's JSON object"):
        dl_rocm_smi_gpus(["card0"])


# ------------------------------------------------- the check, fixtures --


def test_nvidia_fixture_passes(a100s):
    verdict = dl_gpu_check(tool("nvidia-smi", NVIDIA_QUERY), a100s, "nvidia", "gpu1", driver_branch="570")
    assert verdict["ok"], verdict["summary"]
    assert verdict["summary"] == "gpu1: 2 NVIDIA GPU(s) answer nvidia-smi, as many as the PCI bus shows"
    assert [g["pci_slot"] for g in verdict["gpus"]] == [g["pci_slot"] for g in a100s["gpus"]]


def test_nvidia_fixture_with_a_gpu_missing_fails_naming_it(a100s):
    verdict = dl_gpu_check(tool("nvidia-smi", NVIDIA_QUERY, gpus="1"), a100s, "nvidia", "gpu1", driver_branch="570")
    assert not verdict["ok"]
    assert verdict["summary"].startswith("gpu1: nvidia-smi reports 1 GPU(s) but the PCI bus shows 2 "
                                         "(not seen: 0000:65:00.0); ")
    assert "dmesg" in verdict["summary"]


def test_nvidia_fixture_with_another_driver_branch_fails(a100s):
    verdict = dl_gpu_check(tool("nvidia-smi", NVIDIA_QUERY, driver="550.163.01"), a100s, "nvidia", "gpu1",
                           driver_branch="570")
    assert not verdict["ok"]
    assert verdict["summary"] == ("gpu1: nvidia-smi reports driver 550.163.01, not the pinned branch 570; set "
                                  "nvidia_driver_branch to the installed branch or purge the other driver "
                                  "and re-run the role")
    assert dl_gpu_check(tool("nvidia-smi", NVIDIA_QUERY, driver="550.163.01"), a100s, "nvidia")["ok"]


def test_nvidia_fixture_without_driver_fails(a100s):
    verdict = dl_gpu_check(tool("nvidia-smi", NVIDIA_QUERY, gpus="fail"), a100s, "nvidia", "gpu1")
    assert not verdict["ok"]
    assert verdict["summary"].startswith("gpu1: nvidia-smi fails (NVIDIA-SMI has failed because it couldn't "
                                         "communicate with the NVIDIA driver.")
    assert "reboot the host or rebuild the kernel module" in verdict["summary"]


def test_nvidia_smi_missing_fails(a100s):
    # What ansible.builtin.command registers (failed_when: false) when the executable does not exist.
    result = {"rc": 2, "failed": False, "msg": "Error executing command.", "stdout": "", "stderr": ""}
    verdict = dl_gpu_check(result, a100s, "nvidia", "gpu1", tool="nvidia-smi")
    assert not verdict["ok"]
    assert verdict["summary"] == ("gpu1: nvidia-smi is missing although nvidia_install_packages is true and the "
                                  "PCI bus shows 2 NVIDIA GPU(s); install the driver packages (re-run the role) "
                                  "or set nvidia_install_packages: false for this host")
    older = {"rc": 2, "msg": "[Errno 2] No such file or directory: b'nvidia-smi'", "stdout": "", "stderr": ""}
    assert dl_gpu_check(older, a100s, "nvidia", "gpu1")["summary"] == verdict["summary"]
    assert not dl_gpu_check({"failed": True, "msg": "no rc"}, a100s, "nvidia")["ok"]
    # A tool that ran and exited 2 with a message is failing, not missing.
    ran = {"rc": 2, "msg": "non-zero return code", "stdout": "", "stderr": "Unable to determine the device handle"}
    assert "fails (Unable to determine the device handle)" in dl_gpu_check(ran, a100s, "nvidia")["summary"]


def test_rocm_fixture_passes(mi210):
    verdict = dl_gpu_check(tool("rocm-smi", ROCM_QUERY), mi210, "amd", "rocm1", tool="rocm-smi")
    assert verdict["ok"], verdict["summary"]
    assert verdict["gpus"] == [{"card": 0, "name": "AMD Instinct MI210", "model": "0x740f",
                                "pci_slot": "0000:c1:00.0"}]
    assert verdict["gpus"][0]["pci_slot"] == mi210["gpus"][0]["pci_slot"]


def test_rocm_fixture_without_the_gpu_fails(mi210):
    verdict = dl_gpu_check(tool("rocm-smi", ROCM_QUERY, gpus="0"), mi210, "amd", "rocm1")
    assert not verdict["ok"]
    assert verdict["summary"].startswith("rocm1: rocm-smi reports 0 GPU(s) but the PCI bus shows 1")


def test_rocm_fixture_without_amdgpu_fails_despite_exit_status_0(mi210):
    result = tool("rocm-smi", ROCM_QUERY, gpus="fail")
    assert result["rc"] == 0 and result["stdout"] == ""
    verdict = dl_gpu_check(result, mi210, "amd", "rocm1")
    assert not verdict["ok"]
    assert verdict["summary"].startswith("rocm1: rocm-smi fails (ERROR:root:Driver not initialized "
                                         "(amdgpu not found in modules)) although the PCI bus shows 1 AMD GPU(s)")


def test_check_input_errors(a100s):
    with pytest.raises(AnsibleFilterError, match="dl_gpu_check: vendor must be one of nvidia, amd"):
        dl_gpu_check({"rc": 0}, a100s, "intel")
    with pytest.raises(AnsibleFilterError, match="dl_gpu_check: expects the dl_hardware fact"):
        dl_gpu_check({"rc": 0}, {}, "nvidia")
    with pytest.raises(AnsibleFilterError, match="dl_gpu_check: expects a registered command result"):
        dl_gpu_check("0, x", a100s, "nvidia")


# ------------------------------------------------------- the fixtures --


def test_fixture_tools_are_executable_and_documented():
    for name in ("nvidia-smi", "rocm-smi"):
        assert os.access(HARDWARE / "bin" / name, os.X_OK), name
    readme = (HARDWARE / "bin" / "README.md").read_text()
    assert "Not captured on real hardware" in readme and "https://" in readme


def test_fixture_files_on_the_host_set_the_fault():
    """The check tasks cannot pass an environment: the tools also read /etc/dlcluster-fixture-*.

    Checked here by reading the scripts (the unit tests do not write to /etc).
    """
    for name in ("nvidia-smi", "rocm-smi"):
        assert "/etc/dlcluster-fixture-gpus" in (HARDWARE / "bin" / name).read_text()
    assert "/etc/dlcluster-fixture-driver" in (HARDWARE / "bin" / "nvidia-smi").read_text()
