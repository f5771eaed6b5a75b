"""Unit tests of filter_plugins/dl_ssh.py, checked against ssh-audit's own policies."""

import re

import pytest
from ansible.errors import AnsibleFilterError
from ssh_audit.builtin_policies import BUILTIN_POLICIES

from dl_ssh import FilterModule, dl_openssh_version, dl_ssh_crypto

# Markers the server adds by itself; they are not configured.
SERVER_MARKERS = {"ext-info-s", "kex-strict-s-v00@openssh.com"}


def newest_hardened_policies():
    """{'9.2': policy, ...}: the newest version of each 'Hardened OpenSSH Server vX.Y' policy."""
    newest = {}
    for name, policy in BUILTIN_POLICIES.items():
        match = re.fullmatch(r"Hardened OpenSSH Server v(\d+\.\d+) \(version (\d+)\)", name)
        if match:
            version, revision = match.group(1), int(match.group(2))
            if version not in newest or revision > newest[version][0]:
                newest[version] = (revision, policy)
    return {version: policy for version, (_, policy) in newest.items()}


POLICIES = newest_hardened_policies()


def test_policies_found():
    assert {"8.9", "9.2", "9.6"} <= set(POLICIES)


@pytest.mark.parametrize("version", sorted(POLICIES, key=lambda v: tuple(map(int, v.split(".")))))
def test_crypto_matches_ssh_audit_hardened_policy(version):
    policy = POLICIES[version]
    crypto = dl_ssh_crypto(version)
    assert crypto["kex"] == [k for k in policy["kex"] if k not in SERVER_MARKERS]
    assert crypto["ciphers"] == policy["ciphers"]
    assert crypto["macs"] == policy["macs"]
    assert crypto["host_key_algorithms"] == policy["host_keys"]


def newest_distro_policies():
    """{('Debian', '12'): (name, policy), ...}: the newest server policy of each distribution release."""
    newest = {}
    for name, policy in BUILTIN_POLICIES.items():
        match = re.fullmatch(r"Hardened (Debian|Ubuntu Server) (\d+(?:\.\d+)?)(?: LTS)? \(version (\d+)\)", name)
        if match and policy.get("server_policy"):
            key, revision = (match.group(1).split()[0], match.group(2)), int(match.group(3))
            if key not in newest or revision > newest[key][0]:
                newest[key] = (revision, name, policy)
    return {key: (name, policy) for key, (_, name, policy) in newest.items()}


DISTRO_POLICIES = newest_distro_policies()
# The distributions the roles support, with the OpenSSH each ships and the facts Ansible reports.
SUPPORTED = [("Debian", "12", "9.2", "12.8"), ("Debian", "13", "10.0", "13.1"),
             ("Ubuntu", "22.04", "8.9", "22.04"), ("Ubuntu", "24.04", "9.6", "24.04")]


@pytest.mark.parametrize("distribution,release,openssh,fact", SUPPORTED)
def test_crypto_matches_the_distribution_policy(distribution, release, openssh, fact):
    name, policy = DISTRO_POLICIES[(distribution, release)]
    crypto = dl_ssh_crypto(openssh, distribution, fact)
    assert crypto["policy"] == name
    assert crypto["kex"] == [k for k in policy["kex"] if k not in SERVER_MARKERS]
    assert crypto["ciphers"] == policy["ciphers"]
    assert crypto["macs"] == policy["macs"]
    assert crypto["host_key_algorithms"] == policy["host_keys"]


def test_every_supported_distribution_has_a_policy_in_the_pinned_ssh_audit():
    assert {(d, r) for d, r, _, _ in SUPPORTED} <= set(DISTRO_POLICIES)


@pytest.mark.parametrize("distribution,release", [("Rocky", "9.4"), ("Debian", "11.9"), ("", ""), (None, None)])
def test_other_distributions_fall_back_to_the_openssh_version_policy(distribution, release):
    crypto = dl_ssh_crypto("9.2", distribution, release)
    assert crypto["policy"] == "Hardened OpenSSH Server v9.2"
    assert crypto["kex"] == [k for k in POLICIES["9.2"]["kex"] if k not in SERVER_MARKERS]
    assert crypto["host_key_algorithms"] == POLICIES["9.2"]["host_keys"]


def test_version_gated_settings():
    assert dl_ssh_crypto("9.2")["supports"]["required_rsa_size"] is True
    assert dl_ssh_crypto("8.9")["supports"]["required_rsa_size"] is False
    assert dl_ssh_crypto("9.8")["supports"]["per_source_penalties"] is True
    assert dl_ssh_crypto("9.6")["supports"]["per_source_penalties"] is False


def test_too_old():
    with pytest.raises(AnsibleFilterError, match="older than 7.7"):
        dl_ssh_crypto("7.4")


@pytest.mark.parametrize("bad", ["9", "nine", "", None])
def test_bad_version(bad):
    with pytest.raises(AnsibleFilterError, match="dl_ssh_crypto"):
        dl_ssh_crypto(bad)


@pytest.mark.parametrize("text,version", [
    ("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024", "9.2"),
    ("unknown option -- V\nOpenSSH_8.9p1 Ubuntu-3ubuntu0.10, OpenSSL 3.0.2", "8.9"),
    ("OpenSSH_10.0p2 Debian-7", "10.0"),
])
def test_openssh_version(text, version):
    assert dl_openssh_version(text) == version


def test_openssh_version_missing():
    with pytest.raises(AnsibleFilterError, match="no OpenSSH version"):
        dl_openssh_version("sshd: command not found")


def test_filter_module():
    assert set(FilterModule().filters()) == {"dl_openssh_version", "dl_ssh_crypto"}
