"""Bad inventories stop site.yml in the pre-flight play, before any host is contacted.

The hosts of these inventories sit on loopback addresses that run no sshd
for the test: a run that got past the pre-flight play would fail differently,
so the assertions also prove nothing was attempted on a host.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY = (ROOT / "tests" / "unit" / "fixtures" / "ssh" / "ed25519.pub").read_text().strip()
# The ansible-playbook of the interpreter running the tests (the venv's), else PATH's.
_BESIDE = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_PLAYBOOK = str(_BESIDE) if _BESIDE.exists() else shutil.which("ansible-playbook") or "ansible-playbook"


def write_inventory(tmp_path: Path, hosts: dict, all_vars: dict | None = None) -> Path:
    import yaml  # pylint: disable=import-outside-toplevel

    base = {"dl_ops_user": "ubuntu", "dl_ops_authorized_keys": [KEY]}
    base.update(all_vars or {})
    inventory = {"all": {"vars": base, "children": {"dlcluster": {"hosts": hosts}}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def run_site(inventory: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "site.yml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def assert_stopped_in_preflight(proc: subprocess.CompletedProcess, *expected: str) -> None:
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    for text in expected:
        assert text in output, f"{text!r} not in output:\n{output}"
    assert "Gathering Facts" not in output and "TASK [common" not in output, output


def test_unknown_edition(tmp_path):
    inv = write_inventory(tmp_path, {"gpu1": {"ansible_host": "127.0.0.21", "dl_edition": "cuda"}})
    assert_stopped_in_preflight(run_site(inv), "host gpu1: dl_edition is 'cuda'", "nvidia, rocm, cpu")


def test_malformed_public_key(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21"}},
                          {"dl_ops_authorized_keys": ["ssh-ed25519 AAAA"]})
    assert_stopped_in_preflight(run_site(inv), "host n1: dl_ops_authorized_keys[0]",
                                "not valid base64 key data")


def test_duplicate_address(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21"},
                                     "n2": {"ansible_host": "127.0.0.21"}})
    assert_stopped_in_preflight(run_site(inv), "host n2: address 127.0.0.21 is also used by host n1")


def test_missing_required_variable(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21"}}, {"dl_ops_user": ""})
    assert_stopped_in_preflight(run_site(inv), "host n1: required variable dl_ops_user is not set")


def test_admin_network_not_a_cidr(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21"}},
                          {"dl_admin_networks": ["192.168.1.0/24", "office-lan"]})
    assert_stopped_in_preflight(run_site(inv), "host n1: dl_admin_networks[1] 'office-lan' is not an address or CIDR")


def test_driver_branch_not_a_number(tmp_path):
    inv = write_inventory(tmp_path, {"gpu1": {"ansible_host": "127.0.0.21", "dl_nvidia_driver_branch": "latest"}})
    assert_stopped_in_preflight(run_site(inv), "host gpu1: dl_nvidia_driver_branch is 'latest'")


def test_empty_key_list(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21"}}, {"dl_ops_authorized_keys": []})
    assert_stopped_in_preflight(run_site(inv), "host n1: required variable dl_ops_authorized_keys is not set")


def test_empty_cluster_group(tmp_path):
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  children:\n    dlcluster:\n      hosts: {}\n")
    assert_stopped_in_preflight(run_site(path), "group dlcluster is empty")


def test_unknown_data_disk_filesystem(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21", "data_disk_fstype": "ntfs"}})
    assert_stopped_in_preflight(run_site(inv), "host n1: data_disk_fstype", "ntfs", "ext4, xfs")


def test_role_variable_of_wrong_type(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21", "firewall_log_dropped": "maybe"},
                                     "n2": {"ansible_host": "127.0.0.22"}})
    assert_stopped_in_preflight(run_site(inv), "host n1: firewall_log_dropped is 'maybe', but role firewall needs "
                                "true or false; set firewall_log_dropped to true or false in the inventory")


@pytest.mark.parametrize("name,value", [("common_users_default_groups", "video,render"),
                                        ("security_updates_blacklist", "nvidia-driver")])
def test_a_string_where_a_role_needs_a_list(tmp_path, name, value):
    """Ansible's own check would split "video,render" at the comma (and take "nvidia-driver" as a list of one)."""
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21", name: value}})
    assert_stopped_in_preflight(run_site(inv), f"host n1: {name} is {value!r}, but role", "needs a list of strings")


def test_wrong_dl_variable_read_by_a_role_default(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21"}}, {"dl_ssh_port": "ssh"})
    assert_stopped_in_preflight(run_site(inv), "host n1: ssh_hardening_port is 'ssh' from role ssh_hardening's "
                                "default, but the role needs a whole number")


def test_root_and_ops_user_refused_in_dl_users(tmp_path):
    inv = write_inventory(tmp_path, {"n1": {"ansible_host": "127.0.0.21"}},
                          {"dl_users": [{"name": "alice"}, {"name": "root"}, {"name": "ubuntu"}]})
    assert_stopped_in_preflight(run_site(inv), "host n1: dl_users[1].name 'root' is the superuser",
                                "host n1: dl_users[2].name 'ubuntu' is the ops user")


def test_example_inventory_passes_validation():
    # The last play reads the hosts (passwd, the roles' preflight.yml); the example's hosts do not exist.
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "inventories/example", "playbooks/preflight.yml",
                           "--skip-tags", "preflight_hosts"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 host(s) in dlcluster passed validation" in proc.stdout
    assert proc.stdout.count("role entry point(s) accept the variables of") == 5, proc.stdout
