#!/usr/bin/env python3
"""The dlcluster lab: Debian 12 hosts running systemd and sshd in Docker containers.

The lab is both the default inventory and the test bed. Hosts are reached over
SSH like production machines. Every container, network and image the lab makes
carries the label ``dlcluster.lab``; ``down`` removes only what carries it.

    lab.py up   [--name NAME] [--hosts N | --host-names a,b,c] [--inventory PATH]
                [--instance-config PATH] [--site HOST=SITE ...] [--platforms JSON]
    lab.py down [--name NAME]
    lab.py status [--name NAME]
    lab.py settle [--timeout S]    wait for every lab's removed containers to be gone

Only the standard library and the docker CLI are used, so the lab comes up
before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = ROOT / "lab" / "image"
STATE_ROOT = Path(os.environ.get("DL_LAB_STATE_DIR", ROOT / ".lab"))
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dlcluster"
IMAGE_REPO = "dlcluster-lab/debian12"
LABEL = "dlcluster.lab"
# In the name of a container `down` has stopped and is deleting in the background.
RETIRED = "-removing-"
BOOTSTRAP_USER = "admin"
MAX_HOSTS = 64
READY_TIMEOUT = 120

# Container options of every lab host (SPEC §3). Not --privileged: build
# machines lack CAP_SYS_RESOURCE, so --privileged and ALL capabilities fail.
CONTAINER_OPTIONS = [
    "--cap-add", "SYS_ADMIN",
    "--cap-add", "NET_ADMIN",
    "--cgroupns", "host",
    "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
    "--device", "/dev/net/tun",
    # Docker inside a lab host: runc joins a session keyring, which the
    # engine's default seccomp profile forbids.
    "--security-opt", "seccomp=unconfined",
    "--stop-signal", "SIGRTMIN+3",
    # A reboot inside a lab host ends its PID 1 (systemd); Docker starts it
    # again, so playbooks/reboot.yml really reboots lab hosts.
    "--restart", "unless-stopped",
]
# Containers made with other options are re-created.
OPTIONS_HASH = hashlib.sha256(" ".join(CONTAINER_OPTIONS).encode()).hexdigest()[:12]


class LabError(Exception):
    """A failure the operator can act on; printed without a traceback."""


def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], *, check: bool = True, stdin: str | None = None,
        capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, input=stdin, text=True,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip()
        raise LabError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}): {detail}")
    return proc


def docker(*args: str, check: bool = True, stdin: str | None = None) -> str:
    return run(["docker", *args], check=check, stdin=stdin).stdout.strip()


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

def host_names(count: int) -> list[str]:
    """`head` for shared services and rendezvous, then cpu1..cpuN-1."""
    if not 1 <= count <= MAX_HOSTS:
        raise LabError(f"--hosts must be between 1 and {MAX_HOSTS}, got {count}")
    return ["head"] + [f"cpu{i}" for i in range(1, count)]


def container_name(lab: str, host: str) -> str:
    return f"dlcluster-{lab}-{host}"


def network_name(lab: str) -> str:
    return f"dlcluster-{lab}"


def site_network_name(lab: str, site: str) -> str:
    """A site's own network. Its name sorts after the lab network's, so Docker keeps the lab
    network's gateway as each host's default route (the site networks carry site traffic only)."""
    return f"dlcluster-{lab}-{site}"


def sites_of_platforms(platforms_json: str | None) -> list[str]:
    """``HOST=SITE`` for each molecule platform in a group named ``site_<x>``."""
    pairs = []
    for platform in json.loads(platforms_json) if platforms_json else []:
        pairs += [f"{platform['name']}={group}" for group in platform.get("groups", [])
                  if group.startswith("site_")]
    return pairs


def parse_sites(pairs: list[str]) -> dict[str, str]:
    """``["head=site_a", "cpu2=site_b"]`` as ``{host: site}``."""
    sites = {}
    for pair in pairs:
        host, sep, site = pair.partition("=")
        if (not sep or not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", host)
                or not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", site)):
            raise LabError(f"--site wants HOST=SITE (lower-case names), got {pair!r}")
        if host in sites:
            raise LabError(f"--site names {host} twice")
        sites[host] = site
    return sites


# --------------------------------------------------------------------------
# Docker engine and base image
# --------------------------------------------------------------------------

def ensure_engine() -> None:
    proc = run(["bash", str(ROOT / "scripts" / "ensure-docker.sh")], check=False, capture=False)
    if proc.returncode != 0:
        raise LabError("no Docker engine; nothing was created (see the message above)")


def recipe_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(IMAGE_DIR.iterdir()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def apt_mirrors() -> tuple[str, str]:
    """The Debian mirrors this controller uses (override with DL_LAB_DEBIAN_MIRROR)."""
    mirror = os.environ.get("DL_LAB_DEBIAN_MIRROR", "")
    security = os.environ.get("DL_LAB_DEBIAN_SECURITY_MIRROR", "")
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    uris: list[tuple[str, str]] = []
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M)
        for stanza in text.split("\n\n"):
            uri = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uri and suites:
                uris += [(uri.group(1), s) for s in suites.group(1).split()]
    for uri, suite in uris:
        if suite == "bookworm" and not mirror:
            mirror = uri
        if suite == "bookworm-security" and not security:
            security = uri
    if not mirror:
        raise LabError("no Debian 12 mirror found in this machine's apt sources; "
                       "set DL_LAB_DEBIAN_MIRROR to a Debian archive URL")
    return mirror, security


def ensure_image() -> str:
    tag = f"{IMAGE_REPO}:{recipe_hash()}"
    if run(["docker", "image", "inspect", tag], check=False).returncode == 0:
        return tag
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"debian12-rootfs-{tag.split(':')[1]}.tar"
    if not tarball.exists():
        if shutil.which("debootstrap") is None:
            log("installing debootstrap")
            run(["apt-get", "install", "-y", "-qq", "debootstrap"], capture=False)
        mirror, security = apt_mirrors()
        log(f"building base image {tag} with debootstrap (about a minute)")
        partial = tarball.with_suffix(".partial")
        run(["bash", str(IMAGE_DIR / "build-rootfs.sh"), str(partial), mirror, security],
            capture=False)
        partial.rename(tarball)
    log(f"importing {tarball.name} as {tag}")
    with tarball.open("rb") as stream:
        subprocess.run(["docker", "import",
                        "--change", 'CMD ["/lib/systemd/systemd"]',
                        "--change", "ENV container=docker",
                        "--change", f"LABEL {LABEL}=base",
                        "-", tag], stdin=stream, check=True, stdout=subprocess.DEVNULL)
    return tag


# --------------------------------------------------------------------------
# Controller state: SSH key, known hosts, extra CAs
# --------------------------------------------------------------------------

def ensure_key(state: Path) -> Path:
    key = state / "id_ed25519"
    if not key.exists():
        state.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"dlcluster-lab-{state.name}",
             "-f", str(key)])
    return key


PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----\s+(.*?)\s+-----END CERTIFICATE-----", re.S)


def _pem_bodies(text: str) -> list[str]:
    return ["".join(body.split()) for body in PEM_RE.findall(text)]


def controller_extra_cas(bundle: Path = Path("/etc/ssl/certs/ca-certificates.crt"),
                         distro_dir: Path = Path("/usr/share/ca-certificates")) -> list[str]:
    """CA certificates this controller trusts beyond the distribution's set.

    These are what a TLS-inspecting proxy or a corporate CA adds; lab hosts
    must trust them too (SPEC §3).
    """
    if not bundle.is_file():
        return []
    known = set()
    for crt in distro_dir.rglob("*.crt"):
        known.update(_pem_bodies(crt.read_text(errors="replace")))
    extra = [b for b in _pem_bodies(bundle.read_text(errors="replace")) if b not in known]
    return [
        "-----BEGIN CERTIFICATE-----\n"
        + "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
        + "\n-----END CERTIFICATE-----\n"
        for body in extra
    ]


def write_extra_cas() -> list[str]:
    ca_dir = STATE_ROOT / "controller-ca"
    ca_dir.mkdir(parents=True, exist_ok=True)
    wanted = {f"controller-ca-{i}.crt": pem for i, pem in enumerate(controller_extra_cas(), 1)}
    for old in ca_dir.glob("*.crt"):
        if old.name not in wanted:
            old.unlink()
    for name, pem in wanted.items():
        path = ca_dir / name
        if not path.exists() or path.read_text() != pem:
            path.write_text(pem)
    return sorted(str(ca_dir / name) for name in wanted)


# --------------------------------------------------------------------------
# Hosts
# --------------------------------------------------------------------------

def lab_containers(lab: str) -> dict[str, dict]:
    """The lab's hosts by name; a container `down` retired (renamed, its removal still running) is not one."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}={lab}").split()
    if not ids:
        return {}
    info = json.loads(docker("inspect", *ids))
    return {c["Config"]["Labels"]["dlcluster.host"]: c for c in info
            if c["Name"].lstrip("/") == container_name(lab, c["Config"]["Labels"]["dlcluster.host"])}


def retire(info: dict) -> None:
    """Stop a lab host at once and free its name; its filesystem is deleted in the background.

    Deleting a converged host's files (gigabytes of Python environments) takes about a minute; nothing waits on
    it. The container is killed (no restart), renamed, and removed by a `docker rm` that outlives this process.
    """
    docker("update", "--restart", "no", info["Id"])
    docker("kill", info["Id"], check=False)  # already stopped: nothing to kill
    docker("rename", info["Id"], f"{info['Name'].lstrip('/')}{RETIRED}{info['Id'][:12]}")
    remove_in_background(info["Id"])


def remove_in_background(container: str) -> None:
    """`docker rm` of a stopped container, left running after this process ends."""
    subprocess.Popen(["docker", "rm", "--force", "--volumes", container], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def retired_containers(lab: str | None = None) -> list[str]:
    """The names of the lab's containers (every lab's without one) that `down` retired and that still exist (their
    removal runs or failed)."""
    label = LABEL if lab is None else f"{LABEL}={lab}"
    names = docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}").split()
    return [name for name in names if RETIRED in name]


def ensure_network(lab: str, name: str | None = None) -> dict:
    """Create the lab network (or another of the lab's) when absent; return its subnet and gateway address."""
    name = name or network_name(lab)
    if not docker("network", "ls", "-q", "--filter", f"name=^{name}$"):
        docker("network", "create", "--label", f"{LABEL}={lab}", name)
    ipam = json.loads(docker("network", "inspect", "--format", "{{json .IPAM.Config}}", name))[0]
    return {"subnet": ipam["Subnet"], "gateway": ipam["Gateway"]}


def start_host(lab: str, host: str, image: str) -> None:
    docker("run", "--detach", "--name", container_name(lab, host), "--hostname", host,
           "--network", network_name(lab), "--network-alias", host,
           "--label", f"{LABEL}={lab}", "--label", f"dlcluster.host={host}",
           "--label", f"dlcluster.options={OPTIONS_HASH}",
           *CONTAINER_OPTIONS, image)


def wait_ready(lab: str, host: str, pubkey: str) -> tuple[str, str]:
    """Wait for systemd and sshd, install the lab key; return (address, host key)."""
    name = container_name(lab, host)
    deadline = time.monotonic() + READY_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        state = docker("exec", name, "systemctl", "is-system-running", check=False)
        if state in ("running", "degraded") and docker(
                "exec", name, "test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub", check=False) == "":
            if docker("exec", name, "systemctl", "is-active", "ssh", check=False) == "active":
                break
        time.sleep(0.5)
    else:
        raise LabError(f"{host}: systemd/sshd not ready after {READY_TIMEOUT}s (state: {state})")
    if state == "degraded":
        failed = docker("exec", name, "systemctl", "--failed", "--no-legend", check=False)
        log(f"{host}: systemd is degraded: {failed}")
    docker("exec", "-i", name, "sh", "-c",
           f"cat > /home/{BOOTSTRAP_USER}/.ssh/authorized_keys && "
           f"chown {BOOTSTRAP_USER}: /home/{BOOTSTRAP_USER}/.ssh/authorized_keys && "
           f"chmod 0600 /home/{BOOTSTRAP_USER}/.ssh/authorized_keys", stdin=pubkey)
    hostkey = docker("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
    address = docker("inspect", "--format",
                     f'{{{{(index .NetworkSettings.Networks "{network_name(lab)}").IPAddress}}}}', name)
    return address, " ".join(hostkey.split()[:2])


def wait_ssh(host: str, address: str, key: Path, known_hosts: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        proc = run(["ssh", *ssh_options(key, known_hosts), f"{BOOTSTRAP_USER}@{address}", "true"],
                   check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise LabError(f"{host}: SSH to {address} failed: {proc.stderr.strip()}")
        time.sleep(0.5)


def ssh_options(key: Path, known_hosts: Path) -> list[str]:
    return ["-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "ConnectTimeout=5"]


# --------------------------------------------------------------------------
# Inventory
# --------------------------------------------------------------------------

def inventory(lab: str, hosts: dict[str, str], key: Path, known_hosts: Path) -> str:
    """The lab inventory as YAML text (JSON is YAML; no PyYAML needed here)."""
    workers = [h for h in hosts if h != "head"]
    data = {
        "all": {
            "vars": {
                "ansible_user": BOOTSTRAP_USER,
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": " ".join(
                    f"-o {o}" for o in (f"UserKnownHostsFile={known_hosts}",
                                        "StrictHostKeyChecking=yes", "IdentitiesOnly=yes")),
            },
            "children": {
                "dlcluster": {"children": {
                    "head_nodes": {"hosts": {h: {"ansible_host": a} for h, a in hosts.items()
                                             if h == "head"}},
                    "workers": {"hosts": {h: {"ansible_host": hosts[h]} for h in workers}},
                }},
                "pip_mirror": {"hosts": {"head": {}}} if "head" in hosts else {},
                "cpu_nodes": {"hosts": {h: {} for h in workers}},
            },
        }
    }
    header = (f"# Generated by lab/lab.py for the lab \"{lab}\"; `make lab` rewrites it.\n"
              "# Group structure and settings live in groups.yml and group_vars/ beside this file;\n"
              "# group_vars/all/lab.yml reads the key, CAs and network from the lab's state.\n")
    return header + json.dumps(data, indent=2) + "\n"


def instance_config(hosts: dict[str, str], key: Path) -> str:
    """Molecule's delegated-driver instance config (a YAML list)."""
    return json.dumps([{"instance": h, "address": a, "user": BOOTSTRAP_USER, "port": 22,
                        "identity_file": str(key)} for h, a in hosts.items()], indent=2) + "\n"


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

def up(args: argparse.Namespace) -> None:
    wanted = args.host_names.split(",") if args.host_names else host_names(args.hosts)
    bad = [h for h in wanted if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", h)]
    if bad:
        raise LabError(f"host names must be lower-case DNS labels: {bad}")
    sites = parse_sites((args.site or []) + sites_of_platforms(args.platforms))
    ensure_engine()
    image = ensure_image()
    state = STATE_ROOT / args.name
    key = ensure_key(state)
    write_extra_cas()
    network = ensure_network(args.name)
    atomic_write(state / "network.json", json.dumps(network) + "\n")

    existing = lab_containers(args.name)
    for host, info in existing.items():
        stale = (info["Config"]["Image"] != image
                 or info["Config"]["Labels"].get("dlcluster.options") != OPTIONS_HASH)
        if host not in wanted or stale:
            log(f"removing {host} ({'image or container options changed' if stale else 'not requested'})")
            docker("rm", "--force", "--volumes", info["Id"])
        elif not info["State"]["Running"]:
            docker("start", info["Id"])
    existing = lab_containers(args.name)
    for host in wanted:
        if host not in existing:
            start_host(args.name, host, image)
    connect_sites(args.name, state, {h: s for h, s in sites.items() if h in wanted})

    pubkey = key.with_suffix(".pub").read_text()
    known_hosts = state / "known_hosts"
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        ready = dict(zip(wanted, pool.map(lambda h: wait_ready(args.name, h, pubkey), wanted)))
    atomic_write(known_hosts, "".join(f"{addr} {hk}\n" for addr, hk in ready.values()))
    hosts = {h: addr for h, (addr, _) in ready.items()}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda h: wait_ssh(h, hosts[h], key, known_hosts), wanted))

    if args.inventory:
        atomic_write(Path(args.inventory), inventory(args.name, hosts, key, known_hosts))
        log(f"inventory written to {args.inventory}")
    if args.instance_config:
        atomic_write(Path(args.instance_config), instance_config(hosts, key))
    for host, addr in hosts.items():
        print(f"{host}\t{addr}")


def connect_sites(lab: str, state: Path, sites: dict[str, str]) -> None:
    """Put each host with a site on its site's network too; write the sites' subnets to sites.json."""
    subnets = {}
    containers = lab_containers(lab)
    for site in sorted(set(sites.values())):
        net = site_network_name(lab, site)
        subnets[site] = ensure_network(lab, net)["subnet"]
        for host in sorted(h for h, s in sites.items() if s == site):
            if net not in containers[host]["NetworkSettings"]["Networks"]:
                docker("network", "connect", "--alias", host, net, containers[host]["Id"])
    atomic_write(state / "sites.json", json.dumps(subnets, sort_keys=True) + "\n")


def settle(args: argparse.Namespace) -> None:
    """Wait until no lab's retired containers are left (their background removal is done), at most --timeout s.

    A removal deletes gigabytes of files and loads the disk and the CPUs: timing-sensitive tests start after it.
    """
    deadline = time.monotonic() + args.timeout
    while True:
        left = retired_containers()
        if not left:
            return
        if time.monotonic() >= deadline:
            log(f"{len(left)} retired container(s) still being removed after {args.timeout} s: {', '.join(left)}")
            return
        time.sleep(2)


def remove_network(net: str, timeout: float = 60) -> None:
    """`docker network rm`, once the killed hosts have left the network. A killed container keeps its endpoint
    until Docker has stopped it, which on a loaded machine is a moment after `docker kill` returns: the ones still
    attached are disconnected, and the removal tried again, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while run(["docker", "network", "rm", net], check=False).returncode != 0:
        if time.monotonic() >= deadline:
            docker("network", "rm", net)  # raises with Docker's own message
        attached = json.loads(docker("network", "inspect", "--format", "{{json .Containers}}", net) or "null") or {}
        for container in attached:
            docker("network", "disconnect", "--force", net, container, check=False)
        time.sleep(1)


def down(args: argparse.Namespace) -> None:
    if shutil.which("docker") is None or run(["docker", "info"], check=False).returncode != 0:
        log("no Docker engine answers; nothing to remove")
        return
    # An earlier down's removal that did not finish (e.g. the engine restarted): started again.
    for left in retired_containers(args.name):
        log(f"removing {left} again (an earlier removal did not finish)")
        remove_in_background(left)
    containers = lab_containers(args.name)
    if containers:
        log(f"removing {', '.join(containers)} (stopped now, their files deleted in the background)")
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(containers)) as pool:
            list(pool.map(retire, containers.values()))
    for net in docker("network", "ls", "-q", "--filter", f"label={LABEL}={args.name}").split():
        remove_network(net)
    state = STATE_ROOT / args.name
    if state.is_dir():
        shutil.rmtree(state)
    if args.inventory and Path(args.inventory).exists():
        Path(args.inventory).unlink()


def status(args: argparse.Namespace) -> None:
    for host, info in sorted(lab_containers(args.name).items()):
        nets = info["NetworkSettings"]["Networks"]
        addr = nets.get(network_name(args.name), {}).get("IPAddress", "-")
        print(f"{host}\t{info['State']['Status']}\t{addr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func in (("up", up), ("down", down), ("status", status), ("settle", settle)):
        p = sub.add_parser(name)
        p.set_defaults(func=func)
        if name == "settle":
            p.add_argument("--timeout", type=float, default=120,
                           help="seconds to wait for every lab's retired containers to be removed")
            continue
        p.add_argument("--name", default="default", type=str,
                       help="lab name; containers and networks are labelled with it")
        if name in ("up", "down"):
            p.add_argument("--inventory", help="inventory file to write (up) or remove (down)")
        if name == "up":
            p.add_argument("--hosts", type=int, default=int(os.environ.get("LAB_HOSTS", 3)))
            p.add_argument("--host-names", help="comma-separated host names instead of --hosts")
            p.add_argument("--instance-config", help="write molecule's instance_config.yml here")
            p.add_argument("--site", action="append", metavar="HOST=SITE",
                           help="also put HOST on the network of SITE (a site of the VPN tests); repeatable")
            p.add_argument("--platforms", help="molecule's platforms as JSON: a host in a group "
                                                "site_<x> joins that site (as --site HOST=site_<x>)")
    args = parser.parse_args(argv)
    if "name" in args and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,40}", args.name):  # settle has no --name
        parser.error("--name must be lower-case letters, digits, '-' and '_'")
    try:
        args.func(args)
    except LabError as err:
        log(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
