"""The pip mirror, the Python environments and the integrity tests on the whole lab."""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import ROOT, lab_host, run_playbook  # noqa: E402

testinfra_hosts = ["ansible://dlcluster"]

ENVS = "/home/ubuntu/workspaces"


def _index_url(host) -> str:
    return re.search(r"^index-url = (\S+)", host.file("/etc/pip.conf").content_string, re.MULTILINE).group(1)


def test_pip_and_uv_point_at_the_head_nodes_mirror(host):
    head = host.ansible.get_variables()["groups"]["pip_mirror"][0]
    head_address = host.run(f"getent hosts {head}").stdout.split()[0]
    url = _index_url(host)
    assert url == f"https://{head_address}:3141/root/cpu/+simple/"
    uv = host.file("/etc/uv/uv.toml").content_string
    assert f'url = "{url}"' in uv and "native-tls = true" in uv


def test_the_cpu_index_serves_only_the_wheelhouse_torch(host):
    """root/wheels holds torch 2.13.0+cpu: PyPI's (CUDA) torch files are hidden on the cpu index."""
    listing = host.run(f"curl -fsS {_index_url(host)}torch/")
    assert listing.rc == 0, listing.stderr
    files = set(re.findall(r">(torch-[^<]+\.whl)<", listing.stdout))
    assert files == {"torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"}


def test_devpi_runs_only_on_the_mirror_host(host):
    """Where it listens is test_pip_mirror.py's: loopback, behind nginx on the cluster address."""
    service = host.service("devpi")
    if host.backend.get_hostname() != "head":
        assert not service.is_running
        return
    assert service.is_running and service.is_enabled


def test_env_is_a_switched_build_with_torch_cpu_and_a_kernel(host):
    with host.sudo():  # the ops user's home is 0750: read it as root, run the env as the ops user
        link = host.file(f"{ENVS}/py3")
        assert link.is_symlink and link.linked_to.startswith(f"{ENVS}/.envs/py3-")
        run = host.run(f"sudo -u ubuntu bash -c 'source {ENVS}/py3/bin/activate && "
                       "python -c \"import torch, numpy, sklearn; print(torch.__version__)\" && deactivate'")
        assert run.rc == 0, run.stderr
        assert run.stdout.strip() == "2.13.0+cpu"
        kernel = json.loads(host.file("/home/ubuntu/.local/share/jupyter/kernels/py3/kernel.json").content_string)
        assert kernel["argv"][0] == f"{ENVS}/py3/bin/python"
        assert host.file("/home/ubuntu/test/pytorch/mnist.py").exists
        assert host.file("/home/ubuntu/test/mnist_data.py").exists


@pytest.fixture(scope="module")
def cpu1():
    """The worker the once-per-lab tests below run against."""
    return lab_host("cpu1")


def builds_of(host) -> str:
    """The env builds on a host (as root: the ops user's home is 0750)."""
    with host.sudo():
        listing = host.run(f"ls {ENVS}/.envs")
    assert listing.rc == 0, listing.stderr
    return listing.stdout


def active_build(host) -> str:
    with host.sudo():
        return host.file(f"{ENVS}/py3").linked_to


def test_a_failed_build_leaves_the_active_env_in_place(cpu1):
    before = active_build(cpu1)
    builds = builds_of(cpu1)
    bad = {"python_envs_envs": [{"name": "py3", "frameworks": ["pytorch"],
                                 "packages": ["dlcluster-no-such-package==1.0"]}]}
    run = run_playbook("playbooks/python_envs.yml", "-l", "cpu1", "-e", json.dumps(bad),
                       "-e", "python_envs_pip_retries=0")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert f"Environment py3 on cpu1 could not be built" in output and before in output
    assert "dlcluster-no-such-package" in output  # pip's reason is in the message
    assert active_build(cpu1) == before
    assert builds_of(cpu1) == builds, "the failed build was left behind"


def test_an_unknown_framework_is_refused_before_anything_is_installed(cpu1):
    builds = builds_of(cpu1)
    bad = {"python_envs_envs": [{"name": "py3", "frameworks": ["caffe"]}]}
    run = run_playbook("playbooks/python_envs.yml", "-l", "cpu1", "-e", json.dumps(bad))
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "python_envs_envs[0]: unknown framework 'caffe'" in output
    assert builds_of(cpu1) == builds


def test_a_mirror_that_does_not_answer_stops_before_pip_conf_changes(cpu1):
    before = cpu1.file("/etc/pip.conf").content_string
    head = cpu1.run("getent hosts head").stdout.split()[0]
    run = run_playbook("playbooks/pip_mirror.yml", "--tags", "pip_client", "-l", "cpu1",
                       "-e", f"pip_mirror_url=http://{head}:9", "-e", "pip_mirror_health_timeout=4")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"The pip mirror at http://{head}:9 does not answer from cpu1" in output
    assert cpu1.file("/etc/pip.conf").content_string == before


def test_validate_reports_every_host_above_the_bar():
    reports = ROOT / "reports" / "validate"
    earlier = set(reports.glob("*.json")) if reports.exists() else set()
    run = run_playbook("playbooks/validate.yml")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    new = sorted(set(reports.glob("*.json")) - earlier)
    assert len(new) == 1, "one new report per run, earlier ones kept"
    rows = json.loads(new[0].read_text())
    assert {row["host"] for row in rows} == {"head", "cpu1", "cpu2"}
    for row in rows:
        assert row["framework"] == "pytorch" and row["version"] == "2.13.0+cpu"
        assert row["accuracy"] >= 0.90, row
    table = new[0].with_suffix(".md").read_text()
    assert table.startswith("| host | env | framework | version | device | test accuracy | seconds |")
