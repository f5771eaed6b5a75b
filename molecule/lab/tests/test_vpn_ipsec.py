"""The second backend on the same two-site lab: the VPN play re-run with dl_vpn_backend=ipsec (strongSwan IKEv2).

This kernel has no ESP, so the role detects it and uses strongSwan's kernel-libipsec (ESP in UDP through the
TUN device ipsec0). Each host's key is made on it and its certificate signed by the cluster CA (roles/pki).
The module switches the lab to ipsec, and back to WireGuard when it ends, through the same play.
"""

import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import LAB_SITES, SEND, continuous_traffic, echo_server, lab_host, ping, run_playbook  # noqa: E402

testinfra_hosts = ["ansible://head", "ansible://cpu1", "ansible://cpu2"]
IPSEC = ["-e", "dl_vpn_backend=ipsec"]


def sas(host) -> dict:
    """{connection: (state, bytes in + out of its CHILD SAs)} from `swanctl --list-sas`."""
    with host.sudo():
        text = host.check_output("swanctl --list-sas")
    result, current = {}, None
    for line in text.splitlines():
        ike = re.match(r"^(dl-\S+): #\d+, (\w+), IKEv2", line)
        if ike:
            current = ike.group(1)
            result[current] = [ike.group(2), 0]
        traffic = re.match(r"^\s+(?:in|out)\s+\S+.*?,\s+(\d+) bytes", line)
        if traffic and current:
            result[current][1] += int(traffic.group(1))
    return {name: tuple(value) for name, value in result.items()}


def wait_established(host, connection: str, seconds: int = 30) -> None:
    deadline = time.monotonic() + seconds
    while sas(host).get(connection, ("",))[0] != "ESTABLISHED":
        assert time.monotonic() < deadline, f"{connection} not established: {sas(host)}"
        time.sleep(1)


@pytest.fixture(scope="module", autouse=True)
def ipsec_backend():
    run = run_playbook("playbooks/vpn.yml", *IPSEC)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr
    for name in LAB_SITES:
        for other in LAB_SITES:
            if LAB_SITES[other] != LAB_SITES[name]:
                wait_established(lab_host(name), f"dl-{other}")
    yield run
    back = run_playbook("playbooks/vpn.yml")
    assert back.returncode == 0, back.stdout[-6000:] + back.stderr


def test_strongswan_runs_kernel_libipsec_in_this_kernel_and_wireguard_is_stopped(host):
    """No ESP here: the role's probe failed and chose kernel-libipsec; WireGuard stays only for the people."""
    name = host.ansible.get_variables()["inventory_hostname"]
    with host.sudo():
        probe = host.run("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xd1c0ffee mode tunnel "
                         "aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
                         "2021222324 128")
        assert probe.rc != 0, "this kernel has ESP after all"
        assert "load = yes" in host.file("/etc/strongswan.d/dlcluster.conf").content_string
        assert "kernel-libipsec" in host.check_output("swanctl --stats")
        assert host.service("strongswan").is_running and host.service("strongswan").is_enabled
        assert host.interface("ipsec0").exists
        peers = host.check_output("wg show all allowed-ips").splitlines() if name == "head" else []
        wireguard = host.service("wg-quick@wgdl0")
        # The people's tunnel still ends at head (WireGuard), with the laptop as its only peer.
        assert (wireguard.is_running, wireguard.is_enabled) == (name == "head", name == "head")
    assert [p.split("\t")[-1] for p in peers] == (["10.8.0.2/32"] if name == "head" else [])


def test_each_host_authenticates_with_its_own_key_and_a_certificate_of_the_cluster_ca(host):
    name = host.ansible.get_variables()["inventory_hostname"]
    others = sorted(o for o, site in LAB_SITES.items() if site != LAB_SITES[name])
    with host.sudo():
        key = host.file("/etc/dlcluster/pki/vpn.key")
        assert (key.user, key.mode) == ("root", 0o640)
        assert host.file("/etc/swanctl/private/dlcluster-vpn.pem").linked_to == "/etc/dlcluster/pki/vpn.key"
        names = host.check_output("openssl x509 -in /etc/dlcluster/pki/vpn.crt -noout -ext subjectAltName")
        assert f"DNS:{name}" in names
        assert "dlcluster cluster CA" in host.check_output("openssl x509 -in /etc/dlcluster/pki/vpn.crt -noout "
                                                           "-issuer")
        listing = host.check_output("swanctl --list-sas")
        secret = key.content_string
    assert sorted(sas(host)) == [f"dl-{o}" for o in others]
    for other in others:
        assert re.search(rf"local\s+'{name}' @", listing) and re.search(rf"remote\s+'{other}' @", listing), listing
    assert "AES_GCM_16-256" in listing and "ECP_384" in listing
    # The key is nowhere on the controller (fact cache, the lab's state).
    controller = [Path(os.environ["DL_LAB_STATE_DIR"]), Path(__file__).resolve().parents[3] / ".ansible" / "facts"]
    hits = [path for root in controller if root.is_dir() for path in root.rglob("*")
            if path.is_file() and path.stat().st_size < 1 << 24 and secret in path.read_text(errors="ignore")]
    assert hits == []


def test_sites_are_joined_through_ipsec_and_apart_when_it_stops():
    """cpu1 reaches cpu2's site address through its ESP SA (the counters grow by what was sent); with
    strongSwan stopped on cpu1 no packet gets around it."""
    cpu1 = lab_host("cpu1")
    with echo_server("cpu2") as address:
        before = sas(cpu1)["dl-cpu2"][1]
        assert cpu1.check_output(f"python3 -c \"{SEND}\" {address}") == str(10 ** 6)
        assert ping(cpu1, address)
        assert sas(cpu1)["dl-cpu2"][1] - before > 2 * 10 ** 6, "the 1 MB each way did not go through the SA"
        assert "dev ipsec0" in cpu1.check_output(f"ip route get {address}")
        with cpu1.sudo():
            cpu1.check_output("systemctl stop strongswan")
        try:
            assert not ping(cpu1, address)
            assert cpu1.check_output(f"python3 -c \"{SEND}\" {address}") == "timeout"
        finally:
            with cpu1.sudo():
                cpu1.check_output("systemctl start strongswan")
        wait_established(cpu1, "dl-cpu2")
        assert ping(cpu1, address)
        assert cpu1.check_output(f"python3 -c \"{SEND}\" {address}") == str(10 ** 6)


def serial(name: str) -> str:
    with lab_host(name).sudo():
        return lab_host(name).check_output("openssl x509 -in /etc/dlcluster/pki/vpn.crt -noout -serial")


def test_rotation_gives_every_host_a_new_key_and_certificate_without_a_gap_in_cross_site_traffic():
    """vpn-rotate.yml with strongSwan: new keys and certificates, every IKE SA reauthenticated
    make-before-break, while cpu2 pings head at 10 Hz and keeps a TCP stream with it."""
    before = {name: serial(name) for name in LAB_SITES}
    with lab_host("head").sudo():
        key_before = lab_host("head").check_output("sha256sum /etc/dlcluster/pki/vpn.key")
    with continuous_traffic("cpu2", "head") as traffic:
        start = time.time()
        run = run_playbook("playbooks/vpn-rotate.yml", *IPSEC)
        end = time.time()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr
    assert [name for name in LAB_SITES if serial(name) == before[name]] == []
    with lab_host("head").sudo():
        assert lab_host("head").check_output("sha256sum /etc/dlcluster/pki/vpn.key") != key_before
        listing = lab_host("head").check_output("swanctl --list-sas --ike dl-cpu2")
    # One IKE SA with cpu2, made during the rotation (the old one is gone).
    assert listing.count("ESTABLISHED") == 1, listing
    age = int(re.search(r"established (\d+)s ago", listing).group(1))
    assert age <= time.time() - start, listing
    assert traffic.replies[0] < start and traffic.replies[-1] > end, "the ping did not run throughout"
    assert traffic.max_gap <= 1.0, f"a gap of {traffic.max_gap:.2f} s in the 10 Hz ping"
    print(f"strongSwan rotation: {end - start:.1f} s, longest ping gap {traffic.max_gap:.2f} s, "
          f"{len(traffic.replies)} replies, {len(traffic.exchanges)} TCP exchanges")
    assert traffic.stream_alive and traffic.exchanges[0] < start and traffic.exchanges[-1] > end


def test_the_vpn_play_with_ipsec_changes_nothing_on_a_converged_lab():
    run = run_playbook("playbooks/vpn.yml", *IPSEC)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "changed=0" in run.stdout and "changed=1" not in run.stdout, run.stdout
