"""site.yml on the whole lab: what an ops team sees after one run."""

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import ntp_reach  # noqa: E402

testinfra_hosts = ["ansible://dlcluster"]

MEMBERS = ("head", "cpu1", "cpu2")


def test_every_member_resolves_and_answers(host):
    for peer in MEMBERS:
        address = host.run(f"getent hosts {peer}")
        assert address.rc == 0, f"{peer} does not resolve"
        assert host.run(f"ping -c1 -W2 {peer}").rc == 0, f"{peer} does not answer"


def test_ops_user_ssh_login_and_sudo(host):
    hv = host.ansible.get_variables()
    login = subprocess.run(
        ["ssh", "-i", hv["ansible_private_key_file"], "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "ConnectTimeout=10", f"ubuntu@{hv['ansible_host']}", "sudo -n id -u"],
        capture_output=True, text=True, timeout=30, check=False)
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "0"


def test_pip_in_a_venv_reaches_the_index_through_the_trusted_ca(host):
    """Debian's venv pip ships its own CA bundle; /etc/pip.conf must point it at the system store."""
    venv = "/tmp/dlcluster-ca-check"
    host.run(f"rm -rf {venv} && python3 -m venv {venv}")
    result = host.run(f"{venv}/bin/pip download --no-deps --quiet --dest {venv}/dl six==1.16.0")
    host.run(f"rm -rf {venv}")
    assert result.rc == 0, result.stderr


def test_time_is_served_by_the_head_node(host):
    if host.backend.get_hostname() == "head":
        # The head node serves the cluster from its own clock at stratum 10.
        conf = host.file("/etc/chrony/chrony.conf").content_string
        assert "local stratum 10" in conf
        for peer in MEMBERS:
            address = host.run(f"getent hosts {peer}").stdout.split()[0]
            assert f"allow {address}" in conf
        return
    reach = ntp_reach(host, "head")
    assert reach != "0", "head never answered this worker's NTP requests"


def test_sshd_is_hardened(host):
    with host.sudo():
        effective = host.run("sshd -T").stdout.splitlines()
    assert "passwordauthentication no" in effective
    assert "permitrootlogin no" in effective
    assert "authenticationmethods publickey" in effective


def test_firewall_is_loaded_with_every_member(host):
    with host.sudo():
        ruleset = host.run("nft list set inet dlcluster cluster_v4").stdout
    for peer in MEMBERS:
        assert host.run(f"getent hosts {peer}").stdout.split()[0] in ruleset
    assert host.service("dlcluster-firewall").is_enabled
