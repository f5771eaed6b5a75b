"""Bad input and lockout risks stop the role before sshd changes (runs once, against cpu1)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import run_playbook  # noqa: E402

testinfra_hosts = ["ansible://cpu1"]


def sshd_state(host):
    with host.sudo():
        return host.file("/etc/ssh/sshd_config").sha256sum, host.file("/etc/ssh/ssh_host_rsa_key").sha256sum


def test_lockout_guard_refuses_and_changes_nothing(host):
    before = sshd_state(host)
    run = run_playbook("playbooks/ssh_hardening.yml", "--limit", "cpu1",
                       "-e", '{"ssh_hardening_allow_groups": ["no-such-group"], "ssh_hardening_rsa_host_key_bits": 8192}')
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "Refusing to harden sshd on cpu1" in output
    assert "ssh_hardening_allow_groups" in output
    assert sshd_state(host) == before


def test_bad_sshd_option_refused_naming_the_variable(host):
    before = sshd_state(host)
    run = run_playbook("playbooks/ssh_hardening.yml", "--limit", "cpu1",
                       "-e", '{"ssh_hardening_extra_options": {"NoSuchOption": "yes"}, "ssh_hardening_rsa_host_key_bits": 8192}')
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "rejects the configuration" in output
    assert "ssh_hardening_extra_options" in output and "NoSuchOption" in output
    assert sshd_state(host) == before


def test_listen_address_that_drops_the_controller_is_refused(host):
    before = sshd_state(host)
    run = run_playbook("playbooks/ssh_hardening.yml", "--limit", "cpu1",
                       "-e", '{"ssh_hardening_listen_addresses": ["10.255.0.1"]}')
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "Refusing to harden sshd on cpu1" in output and "ssh_hardening_listen_addresses" in output
    assert sshd_state(host) == before
