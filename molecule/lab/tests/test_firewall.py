"""The firewall as other hosts see it: real TCP/UDP probes between lab hosts; drift and the rollback on cpu2."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import (ROOT, UDP_ECHO, lab_host, plain, probe, probe_from_controller, refused_output,  # noqa: E402
                     run_playbook)
from dl_firewall import dl_firewall_fingerprint  # noqa: E402

# The pinned ssh-audit's package, copied to a member to run the test from there.
SSH_AUDIT_PACKAGE = importlib.util.find_spec("ssh_audit").submodule_search_locations[0]

testinfra_hosts = ["ansible://head"]


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


# ssh-audit prints a running "Compl. conns: N" line while it tests and, when it catches the interrupt,
# a summary "Completed connections: R/sec; N total". Under load the interrupt can land where the summary
# is never printed, so the count is the highest either form reports.
COUNTS = re.compile(r"Compl\. conns:\s*(\d+)|Completed connections:\s*[0-9.]+/sec;\s*(\d+) total")


def _completed(output):
    found = [int(progress or total) for progress, total in COUNTS.findall(plain(output))]
    assert found, f"no connection count in ssh-audit's output: {output[-500:]!r}"
    return max(found)


def test_dheat_connection_rate_is_throttled_for_members_but_not_the_controller(head_address, tmp_path):
    """ssh-audit's own --conn-rate-test (4 sockets, at most 20 connections/s): from a cluster member the
    firewall lets through the hardening guide's 10 connections per 10 s per source (burst 10, then 1/s);
    the controller (an admin network) is exempt."""
    cpu1 = lab_host("cpu1")
    # The pinned ssh-audit as one zip (pure Python runs from it): one file to copy.
    bundle = tmp_path / "ssh-audit.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        for path in sorted(Path(SSH_AUDIT_PACKAGE).glob("*.py")):
            archive.write(path, f"ssh_audit/{path.name}")
    copied = cpu1.ansible("copy", f"src={bundle} dest=/tmp/ssh-audit.zip mode=0644", check=False, become=True)
    assert not copied.get("failed"), copied
    # The controller first: the member's connections, throttled, must not hold sshd's MaxStartups slots while the
    # controller is measured. Unbuffered (-u), so that the count printed before SIGINT is read whole.
    controller = subprocess.run(["timeout", "-s", "INT", "10", sys.executable, "-u", "-m", "ssh_audit",
                                 "--conn-rate-test", "4:20", head_address],
                                capture_output=True, text=True, check=False)
    from_controller = _completed(controller.stdout)
    member = cpu1.run(f"timeout -s INT 12 env PYTHONPATH=/tmp/ssh-audit.zip python3 -u -m ssh_audit "
                      f"--conn-rate-test 4:20 {head_address}")
    from_member = _completed(member.stdout)
    print(f"DHEat connection-rate test: controller {from_controller} connections in 10 s, cpu1 {from_member} in 12 s")
    # 10 s from the controller at up to 20/s: nothing throttled (the firewall would let 10 + 10 through).
    assert from_controller >= 60, f"only {from_controller} connections from the controller in 10 s"
    # 12 s from a member: at most the burst of 10 plus 1 a second (and the odd retried SYN).
    assert 1 <= from_member <= 10 + 12 + 5, f"{from_member} connections from cpu1 in 12 s"


# ---------------------------------------------------------------- drift and the rollback, on cpu2 -----

FINGERPRINT = "/var/lib/dlcluster/firewall.live.sha256"
LAB_NAME = os.environ.get("DL_LAB_NAME", "molecule-lab")
LAB_STATE = Path(os.environ.get("DL_LAB_STATE_DIR", ROOT / ".lab"), LAB_NAME)


def sudo_run(name, command):
    host = lab_host(name)
    with host.sudo():
        return host.run(command)


def live_table(name):
    """What the drift check compares: the input chain and the static sets, without counters or handles."""
    return (sudo_run(name, "nft -s list chain inet dlcluster input").stdout,
            sudo_run(name, "nft -s list set inet dlcluster admin_v4").stdout)


def test_hand_edits_of_the_live_table_are_undone_by_the_next_run():
    before = live_table("cpu2")
    listing = sudo_run("cpu2", "nft -a list chain inet dlcluster input").stdout
    # The notebook port's admin rule: it does not carry the controller's SSH.
    handle = re.search(r"tcp dport 8888 ip saddr @admin_v4 accept # handle (\d+)", listing).group(1)
    sudo_run("cpu2", f"nft delete rule inet dlcluster input handle {handle} && "
                     "nft add rule inet dlcluster input tcp dport 9999 accept && "
                     "nft add element inet dlcluster admin_v4 '{ 10.66.0.0/16 }'")
    edited = live_table("cpu2")
    assert "dport 9999" in edited[0] and "dport 8888 ip saddr @admin_v4" not in edited[0]
    assert "10.66.0.0/16" in edited[1]
    run = run_playbook("playbooks/firewall.yml", "--limit", "cpu2")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
    assert "RUNNING HANDLER [firewall : Load the firewall rules]" in run.stdout
    assert live_table("cpu2") == before


def test_packets_do_not_count_as_drift():
    """New SSH connections from a member fill the rate-limit set; the recorded fingerprint still matches."""
    cpu2_address = lab_host("cpu2").ansible.get_variables()["ansible_host"]
    for _ in range(3):
        assert probe(lab_host("cpu1"), "tcp", cpu2_address, 22) == "open"
    assert "elements" in sudo_run("cpu2", "nft -s list set inet dlcluster ssh_rate_v4").stdout
    recorded = sudo_run("cpu2", f"cat {FINGERPRINT}").stdout.strip()
    assert dl_firewall_fingerprint(sudo_run("cpu2", "nft -j -s list table inet dlcluster").stdout) == recorded


def lab_container(host):
    """The Docker container of a lab host, named as lab/lab.py names it."""
    spec = importlib.util.spec_from_file_location("dl_lab_module", ROOT / "lab" / "lab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.container_name(LAB_NAME, host)


# Loaded by the next reload of the firewall service (a drop-in's extra ExecReload): drops the SYN-ACKs
# of new SSH connections to the controller, so the handler's new connection times out while Ansible's
# open ControlMaster connection goes on working. A separate table, so the rollback leaves it in place.
BREAKER = """table inet breaker {{
  chain output {{
    type filter hook output priority -10; policy accept;
    ip daddr {gateway} tcp sport 22 tcp flags & (syn | ack) == syn | ack drop
  }}
}}
"""
BREAKER_FILE = "/run/dlcluster-breaker.nft"
BREAKER_DROPIN = "/run/systemd/system/dlcluster-firewall.service.d/zz-breaker.conf"
ROLLBACK_SECONDS = 30  # the least the role accepts: the check waits up to 20 s for the controller


def test_the_rollback_removes_rules_that_cut_the_controller_off():
    container = lab_container("cpu2")
    gateway = json.loads((LAB_STATE / "network.json").read_text())["gateway"]

    def docker_exec(command):
        return subprocess.run(["docker", "exec", container, "sh", "-c", command], capture_output=True, text=True,
                              timeout=60, check=False)

    def wait_until(command, seconds):
        deadline = time.monotonic() + seconds
        while docker_exec(command).returncode != 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(2)
        return True

    dropin = f"[Service]\nExecReload=/usr/sbin/nft -f {BREAKER_FILE}\n"
    assert docker_exec(f"printf '%s' '{BREAKER.format(gateway=gateway)}' > {BREAKER_FILE} && "
                       f"mkdir -p {Path(BREAKER_DROPIN).parent} && printf '{dropin}' > {BREAKER_DROPIN} && "
                       f"nft -c -f {BREAKER_FILE}").returncode == 0
    new_rules = {"dl_firewall_services_rollback_test": [{"name": "rollback-test", "port": 7778, "protocol": "tcp",
                                                         "sources": ["admin"]}],
                 "firewall_rollback_seconds": ROLLBACK_SECONDS}
    try:
        started = time.monotonic()
        run = run_playbook("playbooks/firewall.yml", "--limit", "cpu2", "-e", json.dumps(new_rules))
        output = run.stdout + run.stderr
        assert run.returncode != 0, output[-4000:]
        # The handler's new connection from the controller timed out (ansible-core prints errors on stderr).
        assert "RUNNING HANDLER [firewall : Check that the controller still opens new SSH" in run.stdout, \
            output[-4000:]
        assert "fatal: [cpu2 -> localhost]" in output and "Timeout when waiting for" in output, output[-4000:]
        assert "Disarm the firewall rollback" not in output
        # The new rules were loaded, the breaker with them, and the armed timer removes them.
        assert "dport 7778" in docker_exec("nft list chain inet dlcluster input").stdout
        assert docker_exec("nft list table inet breaker").returncode == 0
        assert wait_until("! nft list table inet dlcluster >/dev/null 2>&1", ROLLBACK_SECONDS + 60), \
            "the rollback timer did not remove the table"
        assert time.monotonic() - started >= ROLLBACK_SECONDS - 2
        assert docker_exec("systemctl is-enabled dlcluster-firewall").stdout.strip() == "disabled"
    finally:
        docker_exec(f"nft delete table inet breaker; rm -f {BREAKER_FILE} {BREAKER_DROPIN}; systemctl daemon-reload")
        # A timer still pending (a failure above) must fire before the next run arms its own.
        wait_until("! systemctl is-active --quiet dlcluster-firewall-rollback.timer", ROLLBACK_SECONDS + 60)
        restore = run_playbook("playbooks/firewall.yml", "--limit", "cpu2")
    assert restore.returncode == 0, restore.stdout[-4000:] + restore.stderr
    assert docker_exec("nft list table inet dlcluster").returncode == 0
    assert "dport 7778" not in docker_exec("nft list chain inet dlcluster input").stdout
    assert docker_exec("systemctl is-enabled dlcluster-firewall").stdout.strip() == "enabled"
    assert probe_from_controller(lab_host("cpu2").ansible.get_variables()["ansible_host"], 22) == "open"
