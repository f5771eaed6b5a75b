"""The firewall as other hosts see it: real TCP/UDP probes between lab hosts."""

import os
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import lab_host, probe, probe_from_controller, refused_output, run_playbook  # noqa: E402

testinfra_hosts = ["ansible://head"]

UDP_ECHO = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 51820))\n"
            "while True:\n d, a = s.recvfrom(64); s.sendto(d, a)")



@pytest.fixture(scope="module")
def head_address(host):
    return host.ansible.get_variables()["ansible_host"]


@pytest.fixture(scope="module", autouse=True)
def listeners(host):
    """Services on head for the probes: TCP 7777 (an ordinary port), UDP 51820 (VPN); Jupyter is on 8888."""
    with host.sudo():
        for unit, command in (("probe-7777", "python3 -m http.server 7777"),
                              ("probe-51820", f'python3 -c "{UDP_ECHO}"')):
            host.run(f"systemd-run --unit={unit} {command}")
    time.sleep(1)
    yield
    with host.sudo():
        host.run("systemctl stop probe-7777 probe-51820")


def test_listeners_answer_locally(host):
    assert probe(host, "tcp", "127.0.0.1", 7777) == "open"


def test_cluster_member_reaches_any_port(head_address):
    assert probe(lab_host("cpu1"), "tcp", head_address, 7777) == "open"


def test_outsider_is_dropped_on_ordinary_ports(head_address):
    # Dropped, not refused: the port is open on head, the firewall eats the SYN.
    assert probe(lab_host("outsider"), "tcp", head_address, 7777) == "timeout"


def test_outsider_ssh_is_dropped(head_address):
    assert probe(lab_host("outsider"), "tcp", head_address, 22) == "timeout"


def test_vpn_client_reaches_the_notebook_port(head_address):
    assert probe(lab_host("outsider"), "tcp", head_address, 8888) == "open"


def test_vpn_udp_port_is_open(head_address):
    assert probe(lab_host("outsider"), "udp", head_address, 51820) == "reply"


def test_controller_reaches_ssh_and_notebook_but_not_other_ports(head_address):
    assert probe_from_controller(head_address, 22) == "open"
    assert probe_from_controller(head_address, 8888) == "open"
    assert probe_from_controller(head_address, 7777) == "timeout"


def test_docker_style_tables_survive_a_reload(host):
    with host.sudo():
        host.run_expect([0], "nft add table ip sentinel && nft add chain ip sentinel forward "
                             "'{ type filter hook forward priority 0; policy accept; }'")
        try:
            host.run_expect([0], "systemctl reload dlcluster-firewall")
            tables = host.run("nft list tables").stdout
            assert "table ip sentinel" in tables and "table inet dlcluster" in tables
        finally:
            host.run("nft delete table ip sentinel")


def test_ruleset_is_the_checked_file(host):
    with host.sudo():
        assert host.run("nft -c -f /etc/nftables.d/dlcluster.nft").rc == 0
        assert host.service("dlcluster-firewall").is_enabled
        assert "dlcluster-firewall-rollback" not in host.run("systemctl list-timers --all").stdout


def test_a_removed_table_is_loaded_again_by_the_next_run(host):
    """What a rollback leaves (no table, service disabled) converges back."""
    with host.sudo():
        host.run_expect([0], "nft delete table inet dlcluster && systemctl disable dlcluster-firewall")
    run = run_playbook("playbooks/firewall.yml", "--limit", "head")
    assert run.returncode == 0, run.stdout + run.stderr
    with host.sudo():
        assert host.run("nft list table inet dlcluster").rc == 0
        assert host.service("dlcluster-firewall").is_enabled


def test_lockout_guard_refuses_rules_that_drop_the_controller(host):
    with host.sudo():
        before = host.file("/etc/nftables.d/dlcluster.nft").sha256sum
    output = refused_output("playbooks/firewall.yml", "--limit", "head", "-e", '{"dl_admin_networks": ["10.255.255.0/24"]}')
    assert "Refusing to load the firewall on head" in output and "dl_admin_networks" in output
    with host.sudo():
        assert host.file("/etc/nftables.d/dlcluster.nft").sha256sum == before


def test_ssh_rate_limit_drops_a_flood_from_a_member_but_not_the_controller(head_address):
    flood = ("import socket\nok = 0\nfor _ in range(45):\n s = socket.socket(); s.settimeout(1)\n"
             " try:\n  s.connect(('%s', 22)); ok += 1\n except OSError:\n  pass\n s.close()\nprint(ok)")
    opened = int(lab_host("cpu1").run(f"python3 -c \"{flood % head_address}\"").stdout.strip())
    assert 25 <= opened < 45, f"{opened} of 45 new SSH connections from a member got through"
    admin_ok = 0
    for _ in range(45):
        with socket.socket() as sock:
            sock.settimeout(2)
            try:
                sock.connect((head_address, 22))
                admin_ok += 1
            except OSError:
                pass
    assert admin_ok == 45
