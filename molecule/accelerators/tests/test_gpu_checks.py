"""The GPU post-install checks (roles/nvidia/tasks/check.yml, roles/rocm/tasks/check.yml) on the
merged accelerators scenario, with the fixture nvidia-smi / rocm-smi of molecule/shared/hardware/bin/.

Hosts (see molecule.yml): gpu1 has the nvidia-2xa100 fixture tree and nvidia_install_packages: false;
rocm1 has the amd-mi210 tree and the distribution's ROCm packages, its check pointed at the fixture
rocm-smi (rocm_smi_path); rocm2 has the amd-mi210 tree and rocm_install_packages: false.

Every path runs the real check tasks with ansible-playbook (CHECK_PLAY: hardware_facts, then the
edition's check.yml, as the last play of playbooks/accelerators.yml includes it) against one host,
with a fault written where the fixture tools read it (/etc/dlcluster-fixture-gpus,
/etc/dlcluster-fixture-driver). A small play rather than accelerators.yml with --tags: the role
plays there still validate their argument specs (tagged always) and would run more than the check.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import lab_host, refused_output, run_playbook  # noqa: E402

# Each test names its host (lab_host): no test is parametrized over hosts, so none is skipped.
testinfra_hosts = ["ansible://gpu1"]

FIXTURE_SRC = Path(__file__).resolve().parents[2] / "shared" / "hardware" / "bin"
# Where the fixture tools live on the hosts; the scenario's rocm1 sets rocm_smi_path to FIXTURE_BIN/rocm-smi.
FIXTURE_BIN = "/srv/dlcluster-hardware-bin"
FAULT_FILES = ("/etc/dlcluster-fixture-gpus", "/etc/dlcluster-fixture-driver")
GPU_CHECK_FACT = "/etc/ansible/facts.d/dlcluster_gpu_check.fact"
CHECK_PLAY = """---
- name: Detect the hardware and run the GPU post-install check of the host's edition
  hosts: all
  become: true
  tasks:
    - name: Detect the hardware
      ansible.builtin.include_role:
        name: hardware_facts
    - name: Run the post-install check
      ansible.builtin.include_role:
        name: "{{ 'nvidia' if dl_edition_effective == 'nvidia' else 'rocm' }}"
        tasks_from: check.yml
"""


@pytest.fixture(scope="module")
def check_play(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu-check") / "check.yml"
    path.write_text(CHECK_PLAY)
    return str(path)  # absolute: run_playbook's ROOT / path keeps it


def check(play, host_name, **extra):
    """Run the check play on one host with extra vars; the completed ansible-playbook run."""
    return run_playbook(play, "--limit", host_name, "-e", json.dumps(extra))


def refused(play, host_name, **extra):
    return refused_output(play, "--limit", host_name, "-e", json.dumps(extra))


def fact(host_name):
    host = lab_host(host_name)
    with host.sudo():
        return json.loads(host.file(GPU_CHECK_FACT).content_string)


def fault(host, **settings):
    """Write the fixture's fault files (gpus=..., driver=...) on a host; none clears them."""
    with host.sudo():
        host.run_expect([0], f"rm -f {' '.join(FAULT_FILES)}")
        for key, value in settings.items():
            host.run_expect([0], f"echo {value} > /etc/dlcluster-fixture-{key}")


@pytest.fixture(scope="module")
def fixture_tools(check_play):
    """The fixture tools on the GPU hosts (prepare copies them for rocm1's converge; again is harmless)."""
    for name in ("gpu1", "rocm1"):
        lab = lab_host(name)
        for tool in ("nvidia-smi", "rocm-smi"):
            lab.ansible("ansible.builtin.copy", f"src={FIXTURE_SRC / tool} dest={FIXTURE_BIN}/{tool} mode=0755",
                        become=True, check=False)
    yield check_play
    # Leave the hosts as converge left them: no fault, and the fact of a default check.
    for name in ("gpu1", "rocm1"):
        fault(lab_host(name))
        run = check(check_play, name)
        assert run.returncode == 0, run.stdout + run.stderr


# ------------------------------------------------------------- after converge --


def test_gpu1_says_its_driver_was_deliberately_not_installed():
    assert fact("gpu1") == {"vendor": "nvidia", "gpus": [], "result": (
        "not checked: nvidia_install_packages is false, so no driver was installed and nvidia-smi was not run")}


def test_rocm2_says_rocm_was_deliberately_not_installed():
    assert fact("rocm2")["result"] == (
        "not checked: rocm_install_packages is false, so ROCm was not installed and rocm-smi was not run")


def test_rocm1_passed_with_the_fixture_rocm_smi():
    check_fact = fact("rocm1")
    assert check_fact["result"] == (f"passed: rocm1: 1 AMD GPU(s) answer {FIXTURE_BIN}/rocm-smi, "
                                    "as many as the PCI bus shows")
    assert check_fact["gpus"] == [{"card": 0, "name": "AMD Instinct MI210", "model": "0x740f",
                                   "pci_slot": "0000:c1:00.0"}]


# --------------------------------------------------------------- NVIDIA paths --

NVIDIA_ON = {"nvidia_install_packages": True, "nvidia_smi_path": f"{FIXTURE_BIN}/nvidia-smi"}


def test_nvidia_pass_path(fixture_tools):
    fault(lab_host("gpu1"))
    run = check(fixture_tools, "gpu1", **NVIDIA_ON)
    assert run.returncode == 0, run.stdout + run.stderr
    check_fact = fact("gpu1")
    assert check_fact["result"].startswith("passed: gpu1: 2 NVIDIA GPU(s) answer")
    assert [g["pci_slot"] for g in check_fact["gpus"]] == ["0000:17:00.0", "0000:65:00.0"]
    assert {g["driver_version"] for g in check_fact["gpus"]} == {"570.133.20"}


def test_nvidia_gpu_missing_from_the_driver_fails(fixture_tools):
    fault(lab_host("gpu1"), gpus=1)
    output = refused(fixture_tools, "gpu1", **NVIDIA_ON)
    assert f"gpu1: {FIXTURE_BIN}/nvidia-smi reports 1 GPU(s) but the PCI bus shows 2 (not seen: 0000:65:00.0)" \
        in output
    assert fact("gpu1")["result"].startswith("failed: gpu1: ")


def test_nvidia_other_driver_branch_fails(fixture_tools):
    fault(lab_host("gpu1"), driver="550.163.01")
    output = refused(fixture_tools, "gpu1", **NVIDIA_ON)
    assert "reports driver 550.163.01, not the pinned branch 570" in output


def test_nvidia_driver_not_loaded_fails(fixture_tools):
    fault(lab_host("gpu1"), gpus="fail")
    output = refused(fixture_tools, "gpu1", **NVIDIA_ON)
    assert "couldn't communicate with the NVIDIA driver" in output
    assert "reboot the host or rebuild the kernel module" in output


def test_nvidia_smi_missing_fails(fixture_tools):
    fault(lab_host("gpu1"))
    # The default nvidia_smi_path: the real nvidia-smi, not installed on gpu1.
    output = refused(fixture_tools, "gpu1", nvidia_install_packages=True)
    assert ("gpu1: nvidia-smi is missing although nvidia_install_packages is true and the PCI bus shows "
            "2 NVIDIA GPU(s)") in output


# ----------------------------------------------------------------- ROCm paths --


def test_rocm_gpu_missing_fails(fixture_tools):
    fault(lab_host("rocm1"), gpus=0)
    output = refused(fixture_tools, "rocm1")
    assert f"rocm1: {FIXTURE_BIN}/rocm-smi reports 0 GPU(s) but the PCI bus shows 1" in output


def test_rocm_driver_not_loaded_fails_although_rocm_smi_exits_0(fixture_tools):
    fault(lab_host("rocm1"), gpus="fail")
    output = refused(fixture_tools, "rocm1")
    assert "Driver not initialized (amdgpu not found in modules)" in output


def test_real_rocm_smi_without_a_gpu_fails(fixture_tools):
    """Debian's rocm-smi, installed for real on rocm1, on a host without amdgpu: the check must fail."""
    fault(lab_host("rocm1"))
    output = refused(fixture_tools, "rocm1", rocm_smi_path="rocm-smi")
    assert "rocm1: rocm-smi " in output
