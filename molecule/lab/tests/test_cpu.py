"""Hardware detection and CPU settings on a lab host's real /proc/cpuinfo."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from dl_hardware import dl_cpu_variant  # noqa: E402
from labtest import refused_output  # noqa: E402

testinfra_hosts = ["ansible://cpu1"]


def cpuinfo(host):
    blocks = [dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
              for block in host.file("/proc/cpuinfo").content_string.strip().split("\n\n")]
    return [{k.strip(): v.strip() for k, v in block.items()} for block in blocks]


def test_variant_follows_the_real_cpu_flags(host):
    flags = cpuinfo(host)[0]["flags"].split()
    fact = json.loads(host.file("/etc/ansible/facts.d/dlcluster_cpu.fact").content_string)
    assert fact["variant"] == dl_cpu_variant(flags)["variant"]
    hardware = json.loads(host.file("/etc/ansible/facts.d/dlcluster_hardware.fact").content_string)
    assert hardware["edition"] == "cpu" and hardware["gpus"] == []


def test_login_shell_gets_physical_core_threads(host):
    cores = len({(p.get("physical id", "0"), p.get("core id")) for p in cpuinfo(host)})
    out = host.run("sudo -iu ubuntu sh -c 'echo $OMP_NUM_THREADS $TF_NUM_INTEROP_THREADS $DL_CPU_VARIANT'")
    omp, inter, variant = out.stdout.split()
    assert int(omp) == cores and inter == "2"
    assert variant == json.loads(host.file("/etc/ansible/facts.d/dlcluster_cpu.fact").content_string)["variant"]


def test_job_env_file(host):
    env = dict(line.split("=", 1) for line in host.file("/etc/dlcluster/cpu.env").content_string.splitlines()
               if line and not line.startswith("#"))
    assert env["TF_NUM_INTEROP_THREADS"] == "2" and env["KMP_BLOCKTIME"] == "1"


def test_forcing_nvidia_without_a_device_fails_before_packages_change(host):
    with host.sudo():
        before = host.file("/etc/docker/daemon.json").sha256sum
    output = refused_output("playbooks/accelerators.yml", "-e", "dl_edition=nvidia")
    assert "cpu1: dl_edition is nvidia but the host has no NVIDIA device" in output
    with host.sudo():
        assert host.file("/etc/docker/daemon.json").sha256sum == before
    assert not host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").exists
    assert not host.file("/etc/modprobe.d/blacklist-nouveau.conf").exists
