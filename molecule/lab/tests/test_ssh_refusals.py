"""Bad input and lockout risks stop the role before sshd changes (runs once, against cpu1)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import refused_output  # noqa: E402

testinfra_hosts = ["ansible://cpu1"]


def sshd_state(host):
    with host.sudo():
        return host.file("/etc/ssh/sshd_config").sha256sum, host.file("/etc/ssh/ssh_host_rsa_key").sha256sum


@pytest.mark.parametrize("extra_vars,expected", [
    # The lockout guard: Ansible's login account is not in the allowed groups.
    ('{"ssh_hardening_allow_groups": ["no-such-group"], "ssh_hardening_rsa_host_key_bits": 8192}',
     ["Refusing to harden sshd on cpu1", "ssh_hardening_allow_groups"]),
    # sshd -T rejects an option: the message names the variable and the option.
    ('{"ssh_hardening_extra_options": {"NoSuchOption": "yes"}, "ssh_hardening_rsa_host_key_bits": 8192}',
     ["rejects the configuration", "ssh_hardening_extra_options", "NoSuchOption"]),
    # sshd would stop listening on the address Ansible connects to.
    ('{"ssh_hardening_listen_addresses": ["10.255.0.1"]}',
     ["Refusing to harden sshd on cpu1", "ssh_hardening_listen_addresses"]),
], ids=["lockout-guard", "bad-sshd-option", "listen-address"])
def test_refused_before_sshd_or_host_keys_change(host, extra_vars, expected):
    before = sshd_state(host)
    output = refused_output("playbooks/ssh_hardening.yml", "--limit", "cpu1", "-e", extra_vars)
    for text in expected:
        assert text in output
    assert sshd_state(host) == before
