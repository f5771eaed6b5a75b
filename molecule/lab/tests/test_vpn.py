"""The VPN between the lab's two sites: {head, cpu1} and {cpu2}, each on its own Docker network.

Docker keeps the site networks apart, so a site address of another site is reachable only through the tunnel
(wireguard-go here: this kernel has no WireGuard module). Real traffic, real counters, a real stop.
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import (LAB_SITES, ROOT, SEND, cluster_ca_cert, continuous_traffic, echo_server, lab_host,  # noqa: E402
                     ping, plain, probe, public_key, refused_output, run_playbook, site_address, site_subnets,
                     transfer)

testinfra_hosts = ["ansible://head", "ansible://cpu1", "ansible://cpu2"]
INTERFACE = "wgdl0"
SITES = LAB_SITES


@pytest.fixture(scope="module")
def echo_on_cpu2():
    with echo_server("cpu2") as address:
        yield address


def test_the_tunnel_runs_on_wireguard_go_in_this_kernel_with_the_hosts_own_key(host):
    """No WireGuard module here: the role detected it and chose wireguard-go (the kernel path where it exists)."""
    with host.sudo():
        assert host.run("ip link add dev wgtest0 type wireguard").rc != 0, "this kernel has WireGuard after all"
        dropin = host.file(f"/etc/systemd/system/wg-quick@{INTERFACE}.service.d/dlcluster.conf").content_string
        assert "Environment=WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go" in dropin
        assert host.run("pgrep -x wireguard-go").rc == 0, "wireguard-go does not run"
        assert host.service(f"wg-quick@{INTERFACE}").is_running
        key = host.file(f"/etc/wireguard/{INTERFACE}.key")
        assert (key.user, key.group, key.mode) == ("root", "root", 0o600)
        config = host.file(f"/etc/wireguard/{INTERFACE}.conf").content_string
        own_public = host.check_output(f"wg pubkey < /etc/wireguard/{INTERFACE}.key")
        assert host.check_output(f"wg show {INTERFACE} public-key") == own_public
        secret = key.content_string.strip()
    assert "PrivateKey" not in config and secret not in config
    # The private key is nowhere on the controller (fact cache, molecule's logs, the lab's state).
    controller = [Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")), Path(os.environ["DL_LAB_STATE_DIR"]),
                  Path(__file__).resolve().parents[3] / ".ansible" / "facts"]
    hits = [path for root in controller if root.is_dir() for path in root.rglob("*")
            if path.is_file() and path.stat().st_size < 1 << 24 and secret in path.read_text(errors="ignore")]
    assert hits == []


def test_the_first_converge_at_vvv_logged_no_wireguard_private_key():
    """At -vvv every module's arguments and results are printed: no host's key nor the laptop's appears."""
    log = ROOT / ".ansible" / "lab-converge-vvv.log"
    assert log.exists(), f"{log} is missing: scripts/molecule-suite.sh writes it (make molecule)"
    flat = re.sub(r"[\s│]+", "", plain(log.read_text(errors="replace")))
    assert "TASK[vpn:Writethetunnel'sconfiguration" in flat, "the capture never reached the vpn role"
    state = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"]
    keys = {"laptop": (state / "vpn-clients" / "laptop.key").read_text().strip()}
    for name in SITES:
        with lab_host(name).sudo():
            keys[name] = lab_host(name).check_output(f"cat /etc/wireguard/{INTERFACE}.key")
    assert [name for name, key in keys.items() if key in flat] == []


def test_each_host_peers_with_the_hosts_of_the_other_site_only(host):
    name = host.ansible.get_variables()["inventory_hostname"]
    others = [other for other, site in SITES.items() if site != SITES[name]]
    with host.sudo():
        peers = host.check_output(f"wg show {INTERFACE} allowed-ips").splitlines()
    hosts = [peer for peer in peers if not peer.endswith("\t10.8.0.2/32")]
    assert sorted(hosts) == sorted(f"{public_key(o)}\t{site_address(o)}/32" for o in others)
    # The person on the VPN (dl_vpn_clients: laptop, 10.8.0.2) is a peer of the clients' gateway only.
    assert len(peers) - len(hosts) == (1 if name == "head" else 0)


def test_sites_are_apart_without_the_tunnel_and_joined_through_it(echo_on_cpu2):
    """cpu1 (site a) reaches cpu2's site address only through the tunnel; the counters grow by what was sent."""
    cpu1, cpu2 = lab_host("cpu1"), lab_host("cpu2")
    cpu2_key = public_key("cpu2")
    before = transfer(cpu1, cpu2_key)
    assert cpu1.check_output(f"python3 -c \"{SEND}\" {echo_on_cpu2}") == str(10 ** 6)
    assert ping(cpu1, echo_on_cpu2)
    assert transfer(cpu1, cpu2_key) - before > 2 * 10 ** 6, "the 1 MB each way did not go through the tunnel"
    # The route to the other site's address is the tunnel's; the own site's is the LAN.
    assert f"dev {INTERFACE}" in cpu1.check_output(f"ip route get {echo_on_cpu2}")
    assert f"dev {INTERFACE}" not in cpu1.check_output(f"ip route get {site_address('head')}")
    assert ping(cpu1, site_address("head"))

    # Stop the tunnel on cpu1: no way around it (Docker keeps the sites apart, the firewall would drop it).
    with cpu1.sudo():
        cpu1.check_output(f"systemctl stop wg-quick@{INTERFACE}")
    try:
        assert not ping(cpu1, echo_on_cpu2)
        assert cpu1.check_output(f"python3 -c \"{SEND}\" {echo_on_cpu2}") == "timeout"
    finally:
        with cpu1.sudo():
            cpu1.check_output(f"systemctl start wg-quick@{INTERFACE}")
    deadline = time.monotonic() + 30
    while not ping(cpu1, echo_on_cpu2) and time.monotonic() < deadline:
        time.sleep(1)
    assert cpu1.check_output(f"python3 -c \"{SEND}\" {echo_on_cpu2}") == str(10 ** 6)
    assert cpu2.service(f"wg-quick@{INTERFACE}").is_running


# A UDP server that logs "source port" for every datagram; a sender that picks its source address.
UDP_LOG = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', int(sys.argv[1])))\n"
           "while True:\n d,a=s.recvfrom(64); f=open('/run/vpn-udp.log','a'); f.write(a[0]+' '+sys.argv[1]+chr(10)); "
           "f.close()")
UDP_FROM = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 0)); "
            "[s.sendto(b'x', (sys.argv[2], int(sys.argv[3]))) for _ in range(3)]")


def test_other_sites_get_in_through_the_tunnel_only_never_around_it():
    """head's firewall lets site b's subnet in on the tunnel's interface only. A network namespace on head,
    joined by a veth pair, sends from a site b address around the tunnel: dropped on port 7791, while on the
    VPN's listen port (51820, open to everyone) the same packets get in, so they do reach the firewall. cpu2's
    real packets through the tunnel get in on 7791. (Docker's bridge masquerades forged sources, so the
    forging happens inside head.)"""
    head, cpu2 = lab_host("head"), lab_host("cpu2")
    forged = str(site_subnets()["site_b"].network_address + 250)
    setup = ("ip netns add dlforge && ip link add dlforge0 type veth peer name dlforge1 netns dlforge && "
             "ip addr add 10.250.0.1/30 dev dlforge0 && ip link set dlforge0 up && "
             f"ip -n dlforge addr add {forged}/32 dev dlforge1 && ip -n dlforge link set dlforge1 up && "
             "ip -n dlforge route add 10.250.0.1/32 dev dlforge1 && "
             f"ip route add {forged}/32 dev dlforge0")
    with head.sudo():
        head.run("systemctl stop vpn-udp-7791 vpn-udp-51820; rm -f /run/vpn-udp.log; ip netns del dlforge")
        for port in (7791, 51820):
            head.check_output(f'systemd-run --unit=vpn-udp-{port} python3 -c "{UDP_LOG}" {port}')
        head.check_output(setup)
        try:
            time.sleep(1)
            for port in (7791, 51820):
                head.check_output(f'ip netns exec dlforge python3 -c "{UDP_FROM}" {forged} 10.250.0.1 {port}')
            cpu2.check_output(f'python3 -c "{UDP_FROM}" {site_address("cpu2")} {site_address("head")} 7791')
            time.sleep(1)
            seen = set(head.check_output("cat /run/vpn-udp.log").splitlines())
        finally:
            head.run(f"ip route del {forged}/32 dev dlforge0; ip netns del dlforge; "
                     "systemctl stop vpn-udp-7791 vpn-udp-51820")
    assert seen == {f"{forged} 51820", f"{site_address('cpu2')} 7791"}


def test_a_person_on_the_vpn_reaches_jupyter_on_head_and_nothing_else():
    """The outsider plays a laptop outside the cluster: with the wg-quick file the role wrote on the controller,
    its tunnel ends at head. Through it, Jupyter answers the token at head's site address (unreachable without
    the tunnel); SSH and the node exporter there do not answer."""
    state = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"]
    config = state / "vpn-clients" / "laptop.conf"
    assert config.stat().st_mode & 0o777 == 0o600
    assert "PrivateKey = " in config.read_text() and "Address = 10.8.0.2/32" in config.read_text()
    token = (state / "jupyter-token").read_text().split()[0]
    laptop, head = lab_host("outsider"), site_address("head")
    jupyter = (f"curl -sS -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert /tmp/cluster-ca.crt "
               f"--resolve head:8888:{head} -H 'Authorization: token {token}' https://head:8888/api/status")
    with laptop.sudo():
        laptop.run("wg-quick down /etc/wireguard/dlvpn.conf")
        laptop.check_output("install -m 0600 /dev/stdin /etc/wireguard/dlvpn.conf <<'EOF'\n"
                            f"{config.read_text()}EOF")
        laptop.check_output("install -m 0644 /dev/stdin /tmp/cluster-ca.crt <<'EOF'\n"
                            f"{cluster_ca_cert().read_text()}EOF")
        assert laptop.run(jupyter).stdout != "200", "head's site address answered without the tunnel"
        laptop.check_output("wg-quick up /etc/wireguard/dlvpn.conf")
    try:
        assert laptop.check_output(jupyter) == "200"
        assert probe(laptop, "tcp", head, 22) == "timeout"
        assert probe(laptop, "tcp", head, 9100) == "timeout"
        assert probe(laptop, "tcp", site_address("cpu1"), 22) == "timeout"  # the tunnel reaches head only
        with laptop.sudo():
            assert laptop.check_output("wg show dlvpn latest-handshakes").split()[1] != "0"
    finally:
        with laptop.sudo():
            laptop.run("wg-quick down /etc/wireguard/dlvpn.conf")


def test_a_reload_applies_the_configuration_to_the_running_tunnel_and_keeps_its_key():
    """wg-quick's own reload (strip | syncconf) would drop the private key; dlcluster-wg-sync keeps it."""
    head = lab_host("head")
    cpu2_address = site_address("cpu2")
    with head.sudo():
        pid = head.check_output("pgrep -x wireguard-go")
        # A stale route the configuration does not hold is removed; a missing one is put back.
        head.check_output(f"ip route add 192.0.2.1/32 dev {INTERFACE} && ip route del {cpu2_address}/32 dev {INTERFACE}")
        head.check_output(f"systemctl reload wg-quick@{INTERFACE}")
        assert head.check_output("pgrep -x wireguard-go") == pid, "the reload restarted the tunnel"
        assert head.check_output(f"wg show {INTERFACE} public-key") == head.check_output(
            f"wg pubkey < /etc/wireguard/{INTERFACE}.key")
        routes = head.check_output(f"ip -4 route show dev {INTERFACE}")
    assert "192.0.2.1" not in routes and cpu2_address in routes
    assert ping(head, cpu2_address)


def test_the_vpn_preflight_refuses_overlapping_sites_and_an_unknown_backend():
    output = refused_output("site.yml", "--limit", "cpu1", "--tags", "preflight", "-e",
                            '{"dl_site_subnets": ["10.77.0.0/16"]}')
    assert "dl_site_subnets of sites site_a (10.77.0.0/16) and site_b (10.77.0.0/16) overlap" in output
    output = refused_output("site.yml", "--limit", "cpu1", "--tags", "preflight", "-e", "dl_vpn_backend=openvpn")
    assert "host cpu1: vpn_backend is 'openvpn' from role vpn's default, but the role needs one of wireguard" in output
    # Nothing changed: the tunnel still carries cpu1's traffic to cpu2.
    assert ping(lab_host("cpu1"), site_address("cpu2"))


def test_rotation_gives_every_host_a_new_key_without_a_gap_in_cross_site_traffic():
    """vpn-rotate.yml, site a then site b, while cpu2 (site b) pings head (site a) at 10 Hz and keeps a TCP
    stream with it: no gap over 1 s, the same stream throughout, and the people's file names head's new key."""
    before = {name: public_key(name) for name in SITES}
    with continuous_traffic("cpu2", "head") as traffic:
        start = time.time()
        run = run_playbook("playbooks/vpn-rotate.yml")
        end = time.time()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr
    assert "greet their peers, the hosts of site site_a" in run.stdout
    assert "greet their peers, the hosts of site site_b" in run.stdout
    after = {name: public_key(name) for name in SITES}
    assert [name for name in SITES if after[name] == before[name]] == []
    for name in SITES:
        with lab_host(name).sudo():
            assert lab_host(name).check_output(f"wg pubkey < /etc/wireguard/{INTERFACE}.key") == after[name]
    # The old keys are gone from the peers: cpu2's are head's and cpu1's new keys.
    with lab_host("cpu2").sudo():
        peers = lab_host("cpu2").check_output(f"wg show {INTERFACE} peers").split()
    assert sorted(peers) == sorted([after["head"], after["cpu1"]])
    assert traffic.replies[0] < start and traffic.replies[-1] > end, "the ping did not run throughout"
    assert traffic.max_gap <= 1.0, f"a gap of {traffic.max_gap:.2f} s in the 10 Hz ping"
    print(f"WireGuard rotation: {end - start:.1f} s, longest ping gap {traffic.max_gap:.2f} s, "
          f"{len(traffic.replies)} replies, {len(traffic.exchanges)} TCP exchanges")
    assert traffic.stream_alive and traffic.exchanges[0] < start and traffic.exchanges[-1] > end
    state = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"]
    assert f"PublicKey = {after['head']}" in (state / "vpn-clients" / "laptop.conf").read_text()


def test_the_vpn_play_limited_to_one_host_changes_nothing_on_a_converged_lab():
    """With --limit, the members outside the run keep their place in the host's configuration (the lab's
    idempotence stage shows the whole run changes nothing)."""
    run = run_playbook("playbooks/vpn.yml", "--limit", "cpu1")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "changed=0" in run.stdout and "changed=1" not in run.stdout, run.stdout
    assert "failed=0" in run.stdout
