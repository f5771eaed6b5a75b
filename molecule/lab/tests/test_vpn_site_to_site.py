"""Site-to-site on the same two-site lab: the firewall and VPN plays re-run with dl_vpn_topology=site-to-site.

The sites' gateways (dl_site_gateway: head for site a, cpu2 for site b, in the sites' group_vars) hold the only
tunnel, which carries the sites' subnets; cpu1 has no tunnel and reaches site b through head, which forwards.
First with WireGuard, then with strongSwan; the module puts the lab back to the WireGuard mesh when it ends.
"""

import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import (ROOT, SEND, echo_server, lab_host, ping, refused_output, run_playbook,  # noqa: E402
                     site_address, site_subnets)

S2S = ["-e", "dl_vpn_topology=site-to-site"]
IPSEC = ["-e", "dl_vpn_backend=ipsec"]


def converge(*extra: str) -> None:
    """The firewall (whose rules depend on the topology) and then the VPN, with these settings: one
    ansible-playbook run of both plays, every host at once (the canary's batches are tested in test_zz_rollouts)."""
    run = run_playbook("playbooks/firewall.yml", str(ROOT / "playbooks" / "vpn.yml"),
                       "-e", '{"dl_rollout_batches": ["100%"]}', *extra)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr


def head_transfer_with(peer_subnet: str) -> int:
    """Bytes through head's WireGuard tunnel with the peer whose AllowedIPs are peer_subnet."""
    head = lab_host("head")
    with head.sudo():
        ips = dict(line.split("\t") for line in head.check_output("wg show wgdl0 allowed-ips").splitlines())
        counts = {line.split("\t")[0]: int(line.split("\t")[1]) + int(line.split("\t")[2])
                  for line in head.check_output("wg show wgdl0 transfer").splitlines()}
    (key,) = [key for key, allowed in ips.items() if allowed == peer_subnet]
    return counts[key]


@pytest.fixture(scope="module", autouse=True)
def site_to_site():
    converge(*S2S)
    yield
    converge()


def test_only_the_gateways_hold_a_tunnel_which_carries_the_sites_subnets():
    site_a, site_b = str(site_subnets()["site_a"]), str(site_subnets()["site_b"])
    head, cpu1, cpu2 = lab_host("head"), lab_host("cpu1"), lab_host("cpu2")
    with head.sudo(), cpu2.sudo():
        head_peers = [line.split("\t")[1] for line in head.check_output("wg show wgdl0 allowed-ips").splitlines()]
        cpu2_peers = [line.split("\t")[1] for line in cpu2.check_output("wg show wgdl0 allowed-ips").splitlines()]
        # Where Docker runs, forwarded traffic between the sites passes its FORWARD chain.
        assert f"-A DOCKER-USER -s {site_b} -d {site_a} -j ACCEPT" in head.check_output("iptables -S DOCKER-USER")
        assert f"-A DOCKER-USER -s {site_a} -d {site_b} -j ACCEPT" in cpu2.check_output("iptables -S DOCKER-USER")
    # head: the other gateway (site b's subnet) and the person on the VPN; cpu2: head (site a's subnet).
    assert sorted(head_peers) == sorted([site_b, "10.8.0.2/32"]) and cpu2_peers == [site_a]
    assert not cpu1.service("wg-quick@wgdl0").is_running
    assert f"via {site_address('head')} dev" in cpu1.check_output(f"ip route get {site_address('cpu2')}")


def test_a_host_behind_its_gateway_reaches_the_other_site_through_it_and_not_without_it():
    cpu1, head = lab_host("cpu1"), lab_host("head")
    with echo_server("cpu2") as address:
        before = head_transfer_with(str(site_subnets()["site_b"]))
        assert cpu1.check_output(f"python3 -c \"{SEND}\" {address}") == str(10 ** 6)
        assert ping(cpu1, address)
        assert head_transfer_with(str(site_subnets()["site_b"])) - before > 2 * 10 ** 6
        with head.sudo():
            head.check_output("systemctl stop wg-quick@wgdl0")
        try:
            assert not ping(cpu1, address)
            assert cpu1.check_output(f"python3 -c \"{SEND}\" {address}") == "timeout"
        finally:
            with head.sudo():
                head.check_output("systemctl start wg-quick@wgdl0")
        deadline = time.monotonic() + 30
        while not ping(cpu1, address) and time.monotonic() < deadline:
            time.sleep(1)
        assert cpu1.check_output(f"python3 -c \"{SEND}\" {address}") == str(10 ** 6)


def test_the_preflight_refuses_a_site_without_a_gateway():
    output = refused_output("site.yml", "--limit", "cpu1", "--tags", "preflight", *S2S, "-e", "dl_site_gateway=")
    assert "Site site_a has no gateway: set dl_site_gateway in the site group's group_vars" in output


# make test-full only: site-to-site is proven here with WireGuard, strongSwan by test_vpn_ipsec.py.
@pytest.mark.full
def test_site_to_site_with_strongswan_carries_the_subnets_between_the_gateways():
    converge(*S2S, *IPSEC)
    site_a, site_b = str(site_subnets()["site_a"]), str(site_subnets()["site_b"])
    cpu1, head = lab_host("cpu1"), lab_host("head")
    with head.sudo():
        listing = head.check_output("swanctl --list-sas --ike dl-cpu2")
    assert re.search(rf"local\s+{re.escape(site_a)}\s", listing) and re.search(rf"remote\s+{re.escape(site_b)}",
                                                                                listing), listing
    with echo_server("cpu2") as address:
        assert cpu1.check_output(f"python3 -c \"{SEND}\" {address}") == str(10 ** 6)
    with head.sudo():
        after = head.check_output("swanctl --list-sas --ike dl-cpu2")
    sent = [int(n) for n in re.findall(r"(?:in|out)\s+\S+,\s+(\d+) bytes", after)]
    assert sum(sent) > 2 * 10 ** 6, after
    run = run_playbook("playbooks/vpn.yml", *S2S, *IPSEC)
    assert run.returncode == 0 and "changed=0" in run.stdout and "changed=1" not in run.stdout, run.stdout
