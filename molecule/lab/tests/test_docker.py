"""The docker role, for real: an engine inside a lab host runs containers with the merged daemon.json."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from images import ensure_busybox_image  # noqa: E402
from labtest import refused_output  # noqa: E402

testinfra_hosts = ["ansible://cpu1"]


def test_engine_runs_on_vfs(host):
    assert host.service("docker").is_running and host.service("docker").is_enabled
    with host.sudo():
        assert host.run("docker info --format '{{.Driver}}'").stdout.strip() == "vfs"


def test_daemon_json_is_merged_from_every_part(host):
    with host.sudo():
        config = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert config["log-opts"] == {"max-size": "100m", "max-file": "3"}
    assert config["storage-driver"] == "vfs"           # docker_daemon_options_extra
    assert config["metrics-addr"] == "127.0.0.1:9323"  # another role's part
    assert config["default-shm-size"] == "8G"


def test_a_container_runs_with_the_configured_shm(host):
    image = ensure_busybox_image(host)
    with host.sudo():
        out = host.run(f"docker run --rm {image} /bin/busybox df -k /dev/shm")
    assert out.rc == 0, out.stderr
    size_kb = int(out.stdout.splitlines()[1].split()[1])
    assert size_kb == 8 * 1024 * 1024


def test_ops_user_uses_docker_without_sudo(host):
    out = host.run("sudo -u ubuntu docker ps --format '{{.ID}}'")
    assert out.rc == 0, out.stderr
    assert "docker" in host.user("ubuntu").groups


def test_conflicting_part_stops_before_anything_changes(host):
    with host.sudo():
        before = host.file("/etc/docker/daemon.json").sha256sum
    output = refused_output("playbooks/accelerators.yml", "-e",
                            '{"docker_daemon_options_extra": {"storage-driver": "vfs", "metrics-addr": "0.0.0.0:9323"}}')
    assert "sets daemon.json key 'metrics-addr'" in output and "docker" in output
    with host.sudo():
        assert host.file("/etc/docker/daemon.json").sha256sum == before
