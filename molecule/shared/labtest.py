"""Helpers for the molecule verifiers: real SSH logins and playbook runs from the controller."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
SSH_OPTIONS = ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
               "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]


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


def run_playbook(playbook: str, *args: str) -> subprocess.CompletedProcess:
    """Run a repository playbook against molecule's inventory of this scenario."""
    argv = [ANSIBLE_PLAYBOOK, "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(ROOT / playbook), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, cwd=ROOT)


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
