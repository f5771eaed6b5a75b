"""The common role's real effects on the lab hosts (testinfra over SSH)."""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import lab_host, run_playbook  # noqa: E402

testinfra_hosts = ["ansible://dlcluster"]
MEMBERS = ("head", "cpu1", "cpu2")

OPS_USER = "ubuntu"


def test_base_packages_installed(host):
    for name in ("chrony", "ca-certificates", "curl", "jq", "rsync", "python3-venv"):
        assert host.package(name).is_installed, name


def test_cluster_members_resolve_through_etc_hosts(host):
    """`getent -s files` reads /etc/hosts only, never Docker's embedded DNS; addresses match exactly."""
    hosts_file = host.file("/etc/hosts").content_string
    assert "# BEGIN dlcluster members" in hosts_file
    for peer in MEMBERS:
        expected = lab_host(peer).ansible.get_variables()["ansible_host"]
        entry = host.run(f"getent -s files hosts {peer}")
        assert entry.rc == 0, f"{peer} is not in /etc/hosts"
        assert entry.stdout.split()[0] == expected, entry.stdout
        assert peer in entry.stdout.split()[1:]


def test_the_outsider_is_not_listed_in_etc_hosts(host):
    assert host.run("getent -s files hosts outsider").rc == 2


def test_peers_answer_on_their_listed_address(host):
    for peer in MEMBERS:
        address = host.run(f"getent -s files hosts {peer}").stdout.split()[0]
        assert host.run(f"ping -c1 -W2 {address}").rc == 0, peer


def test_ops_user_exists_with_locked_password(host):
    user = host.user(OPS_USER)
    assert user.exists
    assert user.shell == "/bin/bash"
    with host.sudo():
        shadow = host.run(f"getent shadow {OPS_USER}").stdout.split(":")
    assert shadow[1].startswith("!"), "the ops user's password must be locked"


def test_ops_user_authorized_key_and_sudo(host):
    with host.sudo():
        keys = host.file(f"/home/{OPS_USER}/.ssh/authorized_keys")
        assert keys.exists and keys.user == OPS_USER and keys.mode == 0o600
        assert keys.content_string.startswith("ssh-ed25519 ")
        sudoers = host.file(f"/etc/sudoers.d/dlcluster-user-{OPS_USER}")
        assert sudoers.mode == 0o440
        assert host.run(f"visudo -cf {sudoers.path}").rc == 0
        # The ops user really gets root through sudo without a password.
        out = host.run(f"sudo -u {OPS_USER} sudo -n id -u")
    assert out.rc == 0 and out.stdout.strip() == "0"


def test_ops_user_logs_in_over_ssh(host):
    """A real SSH login as the ops user from the controller, with the lab key."""
    hv = host.ansible.get_variables()
    login = subprocess.run(
        ["ssh", "-i", hv["ansible_private_key_file"], "-o", "BatchMode=yes",
         "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
         f"{OPS_USER}@{hv['ansible_host']}", "id -un"],
        capture_output=True, text=True, timeout=30, check=False)
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == OPS_USER


def outsider_url():
    return f"https://{lab_host('outsider').ansible.get_variables()['ansible_host']}:8443/"


def curl(host, url):
    return host.run(f"curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}' {url}")


def test_extra_ca_certificates_trusted(host):
    """The throwaway CA of prepare.yml is in the system store (beside the controller's CAs and the cluster CA of
    roles/pki), and curl trusts the server it signed."""
    installed = host.run("ls /usr/local/share/ca-certificates/dlcluster/").stdout.split()
    controller_cas = list((Path(__file__).resolve().parents[3] / ".lab" / "controller-ca").glob("*.crt"))
    assert "dlcluster-test-ca.crt" in installed and "dlcluster-cluster-ca.crt" in installed
    assert len(installed) == len(controller_cas) + 2
    result = curl(host, outsider_url())
    assert result.rc == 0 and result.stdout == "200", result.stderr
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in host.file("/etc/pip.conf").content_string


def test_removing_the_ca_from_the_inventory_removes_the_trust():
    """cpu2 without the throwaway CA in its inventory: the role removes it and curl refuses the server."""
    cpu2 = lab_host("cpu2")
    controller_cas = sorted(str(p) for p in (Path(__file__).resolve().parents[3] / ".lab" / "controller-ca")
                            .glob("*.crt"))
    try:
        run = run_playbook("playbooks/common.yml", "--limit", "cpu2", "-e",
                           json.dumps({"dl_extra_ca_certs": controller_cas}))
        assert run.returncode == 0, run.stdout + run.stderr
        refused = curl(cpu2, outsider_url())
        assert refused.rc == 60, (refused.rc, refused.stderr)  # curl: peer certificate cannot be authenticated
        left = cpu2.run("ls /usr/local/share/ca-certificates/dlcluster/").stdout.split()
        assert "dlcluster-test-ca.crt" not in left and "dlcluster-cluster-ca.crt" in left
    finally:
        run = run_playbook("playbooks/common.yml", "--limit", "cpu2")
        assert run.returncode == 0, run.stdout + run.stderr
    assert curl(cpu2, outsider_url()).stdout == "200"


def test_https_to_package_index_verifies(host):
    """pip's index is reached over TLS with the system trust store only."""
    result = host.run("curl -sS --max-time 20 -o /dev/null -w '%{http_code}' https://pypi.org/simple/pip/")
    assert result.rc == 0, result.stderr
    assert result.stdout == "200"


def test_chrony_runs(host):
    chrony = host.service("chrony")
    assert chrony.is_running and chrony.is_enabled


def test_ml_user_created_with_key_and_locked_password(host):
    user = host.user("alice")
    assert user.exists and user.shell == "/bin/bash"
    assert "sshusers" in user.groups and "video" in user.groups
    with host.sudo():
        assert host.run("getent shadow alice").stdout.split(":")[1].startswith("!")
        keys = host.file("/home/alice/.ssh/authorized_keys").content_string
        assert "ssh-ed25519 " in keys
        # No sudo rule was asked for alice.
        assert not host.file("/etc/sudoers.d/dlcluster-user-alice").exists


def test_absent_user_removed_but_home_kept(host):
    assert not host.user("bob").exists
    with host.sudo():
        assert not host.file("/etc/sudoers.d/dlcluster-user-bob").exists
        assert host.file("/home/bob/results.txt").content_string == "results of an earlier experiment\n"


def test_ansible_login_account_keeps_ssh_access(host):
    assert "sshusers" in host.user("admin").groups
