"""ssh_hardening's real effects: what an attacker and an operator see over SSH."""

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import password_login, ssh  # noqa: E402
from ssh_audit_policy import audit, builtin_policy_name  # noqa: E402

testinfra_hosts = ["ansible://dlcluster"]

SEED_PASSWORD = "p12cHANgepwD"  # the seed platform's default password


def openssh_version(host):
    with host.sudo():
        out = host.run("sshd -V")
    return re.search(r"OpenSSH_(\d+\.\d+)", out.stderr).group(1)


def test_ssh_audit_passes_the_policy_of_the_hosts_distribution(host):
    """ssh-audit's own policy for the release (Debian 12 in the lab), passed exactly: no tolerated difference."""
    release = dict(line.split("=", 1) for line in host.file("/etc/os-release").content_string.splitlines() if "=" in line)
    policy = builtin_policy_name(release["ID"], release["VERSION_ID"].strip('"'), openssh_version(host))
    if release["ID"] == "debian" and release["VERSION_ID"].strip('"') == "12":
        assert policy.startswith("Hardened Debian 12 (version "), policy
    result = audit(host.ansible.get_variables()["ansible_host"], policy)
    print(json.dumps({"host": host.backend.get_hostname(), "policy": policy, "result": result}, indent=1))
    assert result["passed"], result.get("errors")
    assert result.get("errors", []) == []


def test_ansible_and_the_ops_user_still_log_in(host):
    assert host.ansible("ping")["ping"] == "pong"
    login = ssh(host, "ubuntu", "id -un")
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "ubuntu"


def test_password_login_refused_even_with_the_right_password(host, tmp_path):
    with host.sudo():
        host.run_expect([0], f"useradd -m -G sshusers pwprobe && echo 'pwprobe:{SEED_PASSWORD}' | chpasswd")
    try:
        with host.sudo():
            # The account really has a usable password hash.
            assert host.run("getent shadow pwprobe").stdout.split(":")[1].startswith("$")
        login = password_login(host, "pwprobe", SEED_PASSWORD, tmp_path)
        assert login.returncode == 255
        assert "Permission denied (publickey)" in login.stderr
    finally:
        with host.sudo():
            host.run("userdel -r pwprobe")


def test_root_login_with_a_valid_key_refused(host):
    with host.sudo():
        host.run_expect([0], "install -d -m 0700 /root/.ssh && cp /home/ubuntu/.ssh/authorized_keys /root/.ssh/")
    try:
        login = ssh(host, "root")
        assert login.returncode == 255
        assert "Permission denied" in login.stderr
    finally:
        with host.sudo():
            host.run("rm -f /root/.ssh/authorized_keys")


def test_user_outside_allowed_groups_refused(host):
    with host.sudo():
        host.run_expect([0], "useradd -m keyholder && install -d -o keyholder -m 0700 /home/keyholder/.ssh && "
                             "install -o keyholder -m 0600 /home/ubuntu/.ssh/authorized_keys /home/keyholder/.ssh/")
    try:
        login = ssh(host, "keyholder")
        assert login.returncode == 255 and "Permission denied" in login.stderr
    finally:
        with host.sudo():
            host.run("userdel -r keyholder")


def test_remote_forwarding_refused(host):
    forward = ssh(host, "ubuntu", "true", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22")
    assert forward.returncode == 255
    assert "forwarding failed" in forward.stderr


@pytest.mark.parametrize("option,value", [
    ("passwordauthentication", "no"), ("permitrootlogin", "no"), ("authenticationmethods", "publickey"),
    ("kbdinteractiveauthentication", "no"), ("x11forwarding", "no"), ("allowtcpforwarding", "no"),
    ("allowagentforwarding", "no"), ("maxauthtries", "3"), ("allowgroups", "sshusers"),
])
def test_effective_sshd_settings(host, option, value):
    with host.sudo():
        effective = dict(line.split(" ", 1) for line in host.run("sshd -T").stdout.splitlines() if " " in line)
    assert effective[option] == value


def test_host_keys_and_moduli(host):
    with host.sudo():
        rsa = host.run("ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub").stdout.split()
        assert int(rsa[0]) == 4096  # Debian's default is 3072: the role regenerated it
        assert host.file("/etc/ssh/ssh_host_ed25519_key").mode == 0o600
        assert not host.file("/etc/ssh/ssh_host_ecdsa_key").exists
        assert not host.file("/etc/ssh/ssh_host_dsa_key").exists
        smallest = host.run("awk '$1 !~ /^#/ {print $5}' /etc/ssh/moduli | sort -n | head -1").stdout.strip()
    assert int(smallest) >= 3071
