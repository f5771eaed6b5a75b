"""The rocm role: the distribution's packages for real (rocm1), AMD's repository as files (rocm2)."""

import json

testinfra_hosts = ["ansible://rocm1", "ansible://rocm2"]


def test_edition_detected_from_the_fixture(host):
    fact = json.loads(host.file("/etc/ansible/facts.d/dlcluster_hardware.fact").content_string)
    assert fact["edition"] == "rocm" and fact["gpus"] == ["amd device 0x740f"]


def test_users_in_the_gpu_groups_now_and_later(host):
    groups = host.user("ubuntu").groups
    assert "video" in groups and "render" in groups
    conf = host.file("/etc/adduser.conf").content_string
    assert 'EXTRA_GROUPS="video render"' in conf and "ADD_EXTRA_GROUPS=1" in conf


def test_drun_runs_docker_with_the_gpu_devices(host):
    out = host.run("DRUN_ECHO=1 drun --rm rocm/pytorch python3 -c 1")
    assert out.rc == 0
    for part in ("--device=/dev/kfd", "--device=/dev/dri", "--group-add video", "--ipc=host",
                 "--security-opt seccomp=unconfined", "rocm/pytorch python3 -c 1"):
        assert part in out.stdout
