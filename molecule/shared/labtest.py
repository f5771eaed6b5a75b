"""Helpers for the molecule verifiers: real SSH logins and playbook runs from the controller."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    """`text` without ANSI colours: molecule's verify forces them on, and they split lines, recaps and messages."""
    return ANSI.sub("", text)


def ssh(host, user: str, command: str = "true", *options: str, key: str | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Log in to a testinfra host as `user` from the controller, with the lab key by default."""
    hostvars = host.ansible.get_variables()
    key = key or hostvars["ansible_private_key_file"]
    argv = ["ssh", "-i", key, *SSH_OPTIONS, *options, f"{user}@{hostvars['ansible_host']}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def password_login(host, user: str, password: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Try a password (or keyboard-interactive) login, answering the prompt through SSH_ASKPASS."""
    askpass = tmp_path / "askpass.sh"
    askpass.write_text(f"#!/bin/sh\necho '{password}'\n")
    askpass.chmod(0o700)
    hostvars = host.ansible.get_variables()
    argv = ["ssh", "-o", "PubkeyAuthentication=no", "-o", "BatchMode=no",
            "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "NumberOfPasswordPrompts=1",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
            f"{user}@{hostvars['ansible_host']}", "true"]
    env = {**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env,
                          stdin=subprocess.DEVNULL)


def lab_host(name: str):
    """A testinfra host of this scenario by inventory name (for tests that run once, or from another host)."""
    import testinfra

    return testinfra.get_host(f"ansible://{name}", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


@functools.lru_cache(maxsize=None)
def lab_address(name: str) -> str:
    """A lab host's address (its ansible_host), read once per test session."""
    return lab_host(name).ansible.get_variables()["ansible_host"]


# The lab's sites (molecule/lab/molecule.yml): each host of a group site_<x> is also on that site's network.
LAB_SITES = {"head": "site_a", "cpu1": "site_a", "cpu2": "site_b"}


def site_subnets() -> dict:
    """The lab's site networks as lab.py made them (sites.json in the lab's state)."""
    import ipaddress  # pylint: disable=import-outside-toplevel
    import json  # pylint: disable=import-outside-toplevel

    state = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"] / "sites.json"
    return {site: ipaddress.ip_network(subnet) for site, subnet in json.loads(state.read_text()).items()}


@functools.lru_cache(maxsize=None)
def site_address(name: str) -> str:
    """A lab host's address on its site's network, from its facts."""
    import ipaddress  # pylint: disable=import-outside-toplevel

    subnet = site_subnets()[LAB_SITES[name]]
    addresses = lab_host(name).ansible("setup", "filter=ansible_all_ipv4_addresses")["ansible_facts"][
        "ansible_all_ipv4_addresses"]
    return next(a for a in addresses if ipaddress.ip_address(a) in subnet)


def transfer(source, peer_key: str, interface: str = "wgdl0") -> int:
    """Bytes sent plus received through the WireGuard tunnel with one peer, as WireGuard counts them."""
    with source.sudo():
        lines = source.check_output(f"wg show {interface} transfer").splitlines()
    counts = {line.split("\t")[0]: int(line.split("\t")[1]) + int(line.split("\t")[2]) for line in lines}
    return counts[peer_key]


def public_key(name: str, interface: str = "wgdl0") -> str:
    """A lab host's WireGuard public key."""
    with lab_host(name).sudo():
        return lab_host(name).check_output(f"wg show {interface} public-key")


def run_playbook(playbook: str, *args: str) -> subprocess.CompletedProcess:
    """Run a repository playbook against molecule's inventory of this scenario."""
    argv = [ANSIBLE_PLAYBOOK, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(ROOT / playbook), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)


def start_playbook(playbook: str, *args: str) -> subprocess.Popen:
    """Start a repository playbook in the background (output on its stdout), against molecule's inventory.

    It leads its own process group: os.killpg(launcher.pid, ...) ends it with every fork and connection.
    """
    argv = [ANSIBLE_PLAYBOOK, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(ROOT / playbook), *args]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def training_worker(host, job: str, launcher: subprocess.Popen, seconds: int = 240) -> str:
    """The PID of a rank of `job` on `host` once its log shows a training epoch; fails the test if none does."""
    import pytest  # pylint: disable=import-outside-toplevel

    deadline = time.time() + seconds
    while time.time() < deadline and launcher.poll() is None:
        with host.sudo():  # the ops user's home is closed to the connection user
            # [-]u: the pattern does not match the shell that runs pgrep.
            found = host.run(f"pgrep -f '[-]u /home/ubuntu/runs/{job}/code/'")
            log = host.run(f"grep -c 'epoch=' /home/ubuntu/runs/{job}/node.log")
        if found.rc == 0 and log.stdout.strip() not in ("", "0"):
            return found.stdout.split()[0]
        time.sleep(1)
    launcher.kill()
    pytest.fail(f"the job's rank on {host.backend.get_pytest_id()} never started training:\n"
                f"{launcher.communicate()[0][-3000:]}")
    return ""


def refused_output(playbook: str, *args: str) -> str:
    """Run a playbook that must fail; return its output for the caller's message checks."""
    run = run_playbook(playbook, *args)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    return output


PROBE = """
import socket, sys
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "tcp":
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port)); print("open")
    except ConnectionRefusedError:
        print("refused")
    except OSError:
        print("timeout")
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(b"ping", (host, port))
    try:
        print("reply" if s.recvfrom(64)[0] == b"ping" else "garbled")
    except OSError:
        print("timeout")
"""


# A UDP echo server on the VPN's port (51820), run with `python3 -c` on the host probed.
UDP_ECHO = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 51820))\n"
            "while True:\n d, a = s.recvfrom(64); s.sendto(d, a)")


def probe(source, kind: str, address: str, port: int) -> str:
    """From a testinfra host: 'open', 'refused' or 'timeout' (TCP); 'reply' or 'timeout' (UDP)."""
    return source.run(f"python3 -c '{PROBE}' {kind} {address} {port}").stdout.strip()


def probe_from_controller(address: str, port: int) -> str:
    import socket  # pylint: disable=import-outside-toplevel

    with socket.socket() as sock:
        sock.settimeout(3)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return "refused"
        except OSError:
            return "timeout"
    return "open"


def cluster_ca_cert() -> Path:
    """The lab's cluster CA certificate on the controller (roles/pki; the lab keeps its CA in its state)."""
    return Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"] / "pki" / "dlcluster-cluster-ca.crt"


def controller_curl(*args: str) -> tuple[int, str]:
    """curl on the controller, trusting the cluster CA only: (HTTP status, body)."""
    run = subprocess.run(["curl", "-sS", "--cacert", str(cluster_ca_cert()), "--max-time", "60",
                          "-w", r"\n%{http_code}", *args], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    body, _, status = run.stdout.rpartition("\n")
    return int(status), body


def prometheus_api(path: str, timeout: float = 10) -> dict:
    """The `data` of a GET of Prometheus's API on head (e.g. "targets"), over https checked against the lab's
    cluster CA, asked from the controller (an admin address, which the firewall lets in)."""
    import json  # pylint: disable=import-outside-toplevel
    import ssl  # pylint: disable=import-outside-toplevel
    import urllib.request  # pylint: disable=import-outside-toplevel

    context = ssl.create_default_context(cafile=str(cluster_ca_cert()))
    url = f"https://{lab_address('head')}:9090/api/v1/{path}"
    with urllib.request.urlopen(url, timeout=timeout, context=context) as answer:  # noqa: S310 (the lab's own)
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]


def prometheus_query(expr: str, timeout: float = 10) -> list[dict]:
    """The result vector of an instant query against the lab's Prometheus (see prometheus_api)."""
    import urllib.parse  # pylint: disable=import-outside-toplevel

    return prometheus_api("query?" + urllib.parse.urlencode({"query": expr}), timeout)["result"]


def ntp_reach(host, server: str, attempts: int = 30) -> str:
    """The reach register chrony on `host` has for `server` ('0' if it never answered)."""
    import time  # pylint: disable=import-outside-toplevel

    address = host.run(f"getent hosts {server}").stdout.split()[0]
    reach = "0"
    for _ in range(attempts):
        # chronyc -c sources: mode,state,address,stratum,poll,reach,...
        rows = [r.split(",") for r in host.run("chronyc -c -n sources").stdout.splitlines()]
        reach = next((r[5] for r in rows if r[2] == address), "0")
        if reach != "0":
            break
        time.sleep(1)
    return reach


# The VPN tests' traffic between the sites.
# A TCP server on a site address: answers each connection with the bytes it was sent (up to 1 MB).
ECHO = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind((sys.argv[1], 7790)); s.listen()\n"
        "while True:\n c,_=s.accept(); d=b''\n while len(d) < int(1e6):\n  b=c.recv(65536)\n  if not b: break\n"
        "  d+=b\n c.sendall(d); c.close()")
# A TCP client: sends 1 MB to the site address, prints how many bytes came back ("timeout" on no connection).
SEND = ("import socket,sys; s=socket.socket(); s.settimeout(5)\n"
        "try:\n s.connect((sys.argv[1], 7790)); s.sendall(b'x'*int(1e6)); s.shutdown(socket.SHUT_WR); n=0\n"
        " while True:\n  b=s.recv(65536)\n  if not b: break\n  n+=len(b)\n print(n)\n"
        "except OSError:\n print('timeout')")


def ping(source, address: str) -> bool:
    """Whether 3 pings from a lab host to an address are answered."""
    return source.run(f"ping -c 3 -i 0.2 -W 1 {address}").rc == 0


@contextlib.contextmanager
def echo_server(name: str):
    """The ECHO server on a lab host's site address (a transient unit), for the duration of the block."""
    host = lab_host(name)
    with host.sudo():
        host.run("systemctl stop vpn-echo; systemctl reset-failed vpn-echo")
        host.check_output(f"systemd-run --unit=vpn-echo python3 -c \"{ECHO}\" {site_address(name)}")
    time.sleep(1)
    try:
        yield site_address(name)
    finally:
        with host.sudo():
            host.run("systemctl stop vpn-echo")


# A TCP echo server for one stream at a time (port 7792), and a client that exchanges 64 bytes with it every
# 0.1 s, logging "time count" per exchange; it exits (non-zero) as soon as the stream breaks.
STREAM_ECHO = ("import socket,sys; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
               "s.bind((sys.argv[1], 7792)); s.listen()\n"
               "while True:\n c,_=s.accept()\n while True:\n  b=c.recv(4096)\n  if not b: break\n  c.sendall(b)\n"
               " c.close()")
STREAM_CLIENT = ("import socket,sys,time; s=socket.create_connection((sys.argv[1], 7792), timeout=5); "
                 "s.settimeout(30); n=0; log=open('/run/vpn-stream.log', 'w')\n"
                 "while True:\n s.sendall(b'x'*64); d=b''\n while len(d) < 64:\n  b=s.recv(64-len(d))\n"
                 "  if not b: sys.exit('closed')\n  d+=b\n n+=1; log.write('%.3f %d' % (time.time(), n) + chr(10)); "
                 "log.flush(); time.sleep(0.1)")


class Traffic:
    """What continuous_traffic saw: the 10 Hz ping's reply times and the TCP stream's exchange times."""

    def __init__(self):
        self.replies: list[float] = []
        self.exchanges: list[float] = []
        self.stream_alive = False

    @property
    def max_gap(self) -> float:
        """The longest time between two ping replies (seconds)."""
        return max((b - a for a, b in zip(self.replies, self.replies[1:])), default=float("inf"))


@contextlib.contextmanager
def continuous_traffic(source_name: str, target_name: str):
    """A 10 Hz ping and a TCP stream from one lab host's site address to another's, for the block's duration."""
    source, target = lab_host(source_name), lab_host(target_name)
    address, traffic = site_address(target_name), Traffic()
    units = "vpn-ping vpn-stream"
    with target.sudo():
        target.run("systemctl stop vpn-stream-echo; systemctl reset-failed vpn-stream-echo")
        target.check_output(f'systemd-run --unit=vpn-stream-echo python3 -c "{STREAM_ECHO}" {address}')
    with source.sudo():
        source.run(f"systemctl stop {units}; systemctl reset-failed {units}; rm -f /run/vpn-ping.log /run/vpn-stream.log")
        time.sleep(1)
        source.check_output(f"systemd-run --unit=vpn-ping -p StandardOutput=file:/run/vpn-ping.log "
                            f"ping -D -n -i 0.1 -W 1 {address}")
        source.check_output(f'systemd-run --unit=vpn-stream python3 -c "{STREAM_CLIENT}" {address}')
    time.sleep(2)
    try:
        yield traffic
        time.sleep(2)
    finally:
        with source.sudo():
            traffic.stream_alive = source.run("systemctl is-active vpn-stream").stdout.strip() == "active"
            source.run(f"systemctl stop {units}")
            pings = source.run("cat /run/vpn-ping.log").stdout
            stream = source.run("cat /run/vpn-stream.log").stdout
        with target.sudo():
            target.run("systemctl stop vpn-stream-echo")
        traffic.replies = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", pings, re.MULTILINE)]
        traffic.exchanges = [float(line.split()[0]) for line in stream.splitlines() if line.strip()]
