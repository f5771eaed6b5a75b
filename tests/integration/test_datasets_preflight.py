"""playbooks/datasets.yml stops before any transfer, and before any host is contacted, on bad datasets input:
each message names the host, the variable and the fix. (The hosts sit on loopback addresses with no sshd: a run
that got past the check would fail differently.) The data disk's root-disk refusal: test_data_disk.py."""

import json
import subprocess

import pytest

from test_preflight import ANSIBLE_PLAYBOOK, ROOT, write_inventory

S3 = {"type": "s3", "endpoint": "https://s3.lab:8333", "bucket": "models", "credentials": "lab"}


def run_datasets(tmp_path, host_vars: dict) -> subprocess.CompletedProcess:
    inventory = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21", **host_vars}})
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "playbooks/datasets.yml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def mine(**fields):
    return {"mine": {"kind": "dataset", "version": "1", "source": {"type": "http", "url": "https://m.lab/1/"},
                     "manifest": {"algorithm": "sha256", "files": {"a.bin": "a" * 64}}, **fields}}


@pytest.mark.parametrize("host_vars,expected", [
    ({"datasets_enabled": ["mnsit"]}, "Host n1: datasets_enabled names 'mnsit', which is not in the catalogue"),
    ({"datasets_enabled": ["mine"],
      "datasets_catalogue_extra": mine(manifest={"algorithm": "md5", "files": {"a.bin": "abc"}})},
     "datasets catalogue entry mine file a.bin has checksum 'abc', not 32 hex digits of md5"),
    ({"datasets_enabled": ["mine"], "datasets_catalogue_extra": mine(target="/etc")},
     "has target '/etc', which is outside the data root /data"),
    ({"datasets_enabled": ["mine"], "datasets_catalogue_extra": mine(source=S3)},
     "reads S3 with credentials 'lab', which datasets_s3_credentials does not hold"),
    ({"datasets_enabled": ["imagenet-ilsvrc2017"]},
     "add imagenet-ilsvrc2017 to datasets_accept_licenses"),
])
def test_bad_datasets_input_stops_before_any_host_is_contacted(tmp_path, host_vars, expected):
    proc = run_datasets(tmp_path, host_vars)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, output
    assert expected in output, output[-3000:]
    assert "UNREACHABLE" not in output and "Gathering Facts" not in output and "Fill the cache" not in output


def test_good_input_passes_the_check(tmp_path):
    """The same inventory with a good entry gets past the check (and then fails on the host nobody runs)."""
    proc = run_datasets(tmp_path, {"datasets_enabled": ["mine"], "datasets_catalogue_extra": mine()})
    assert "UNREACHABLE" in proc.stdout + proc.stderr, json.dumps(proc.stdout[-2000:])
