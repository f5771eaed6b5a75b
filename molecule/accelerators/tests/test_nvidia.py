"""The nvidia role on a lab host with a two-A100 fixture tree (no packages: see molecule.yml)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from images import ensure_busybox_image  # noqa: E402
from labtest import refused_output  # noqa: E402

testinfra_hosts = ["ansible://gpu1"]


def read(host, path):
    with host.sudo():
        return host.file(path).content_string


def test_edition_and_gpus_detected(host):
    fact = json.loads(read(host, "/etc/ansible/facts.d/dlcluster_hardware.fact"))
    assert fact["edition"] == "nvidia"
    assert fact["gpus"] == ["nvidia device 0x20b2", "nvidia device 0x20b2"]
    assert fact["cpu_variant"] == "avx512"


def test_nouveau_blacklisted_and_module_options(host):
    assert "blacklist nouveau" in read(host, "/etc/modprobe.d/blacklist-nouveau.conf")
    assert "options nvidia NVreg_PreserveVideoMemoryAllocations=1" in read(
        host, "/etc/modprobe.d/nvidia-dlcluster.conf")


def test_repositories_written_disabled_and_driver_pinned(host):
    cuda = read(host, "/etc/apt/sources.list.d/nvidia-cuda.sources")
    assert "URIs: https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64" in cuda
    assert "Signed-By: /etc/apt/keyrings/nvidia-cuda.asc" in cuda and "Enabled: no" in cuda
    toolkit = read(host, "/etc/apt/sources.list.d/nvidia-container-toolkit.sources")
    assert "URIs: https://nvidia.github.io/libnvidia-container/stable/deb/amd64" in toolkit
    pin = read(host, "/etc/apt/preferences.d/dlcluster-nvidia-driver")
    assert "Pin: version 570.*" in pin and "Pin-Priority: 1001" in pin


def test_apt_still_works_with_the_disabled_repositories(host):
    with host.sudo():
        out = host.run("apt-get update")
    assert out.rc == 0, out.stderr
    assert "nvidia" not in out.stdout


def test_running_docker_engine_has_the_nvidia_runtime(host):
    config = json.loads(read(host, "/etc/docker/daemon.json"))
    assert config["runtimes"]["nvidia"] == {"path": "nvidia-container-runtime", "args": []}
    assert config["log-driver"] == "json-file"  # the docker role's own part is kept
    with host.sudo():
        runtimes = json.loads(host.run("docker info --format '{{json .Runtimes}}'").stdout)
    assert "nvidia" in runtimes


def test_nvidia_docker_passes_gpus_to_docker(host):
    image = ensure_busybox_image(host)
    with host.sudo():
        out = host.run(f"nvidia-docker run --rm {image} /bin/busybox true")
    # Docker asked for GPUs and found no GPU driver: the wrapper passed --gpus all.
    assert out.rc != 0
    assert "could not select device driver" in out.stderr and "gpu" in out.stderr


def test_nvidia_docker_turns_visible_devices_into_a_device_list(host):
    # A stand-in docker earlier in PATH prints what the wrapper hands it.
    host.run_expect([0], "mkdir -p /tmp/fake-docker && printf '#!/bin/sh\\necho \"$@\"\\n' > /tmp/fake-docker/docker"
                         " && chmod +x /tmp/fake-docker/docker")
    picked = host.run("PATH=/tmp/fake-docker:$PATH NVIDIA_VISIBLE_DEVICES=1,3 nvidia-docker run img nvidia-smi")
    assert picked.stdout.strip() == 'run --gpus "device=1,3" img nvidia-smi'
    default = host.run("PATH=/tmp/fake-docker:$PATH nvidia-docker run img")
    assert default.stdout.strip() == "run --gpus all img"
    other = host.run("PATH=/tmp/fake-docker:$PATH nvidia-docker ps -a")
    assert other.stdout.strip() == "ps -a"


def test_daemon_json_conflict_stops_before_anything_changes(host):
    with host.sudo():
        before = host.file("/etc/docker/daemon.json").sha256sum
    output = refused_output("playbooks/accelerators.yml", "-e",
                            '{"nvidia_docker_default_runtime": true, '
                            '"docker_daemon_options_extra": {"storage-driver": "vfs", "default-runtime": "runc"}}')
    assert "nvidia sets daemon.json key 'default-runtime' to \"nvidia\" but docker set it to \"runc\"" in output
    with host.sudo():
        assert host.file("/etc/docker/daemon.json").sha256sum == before


def test_a_needed_reboot_is_recorded_not_done(host):
    """The driver's module settings changed: the role records the reboot; playbooks/reboot.yml does it."""
    assert "nvidia-driver" in read(host, "/var/run/reboot-required.pkgs")
    with host.sudo():
        status = json.loads(host.run("/usr/local/sbin/dlcluster-reboot-status").stdout)
        detector = host.file("/etc/dlcluster/reboot/needs.d/nvidia")
        assert detector.mode == 0o755 and "modinfo -F version nvidia" in detector.content_string
    assert status["needs"] == ["reboot-required: /var/run/reboot-required: nvidia-driver"]
    assert status["busy"] == [] and status["errors"] == []
