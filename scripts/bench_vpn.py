#!/usr/bin/env python3
"""Tunnel throughput and latency, same site vs across sites, side by side in one run (`make bench-vpn`).

A lab of its own (benchvpn: head and cpu1 in site_a, cpu2 in site_b, each site on its own Docker network)
gets the pre-flight, common, the firewall and the VPN from site.yml (dl_vpn true, no cluster CA), then
iperf3 (TCP, one stream, BENCH_VPN_SECONDS each, default 5) and ping (20 echoes, 0.2 s apart) from head to:
  - cpu1's site address: the same site, over the site's LAN;
  - cpu2's lab address: the other site, over the underlay, no tunnel (what the tunnel costs is against this);
  - cpu2's site address: the other site, through the tunnel (wireguard-go here: this kernel has no module);
  - cpu2's site address again after the VPN play switched the lab to strongSwan IKEv2 (dl_vpn_backend=ipsec,
    a PSK made for the run: the bench lab has no cluster CA; kernel-libipsec here: this kernel has no ESP).
With BENCH_VPN_DDP=1 (the default; 0 skips it) the lab gets all of site.yml (the pip mirror and the Python
environments too), and the PyTorch DDP sample (one rank per host, `network: site`) trains on head+cpu1 (the same
site) and on cpu1+cpu2 (across the sites, through each backend's tunnel): samples/s side by side.
The lab is removed afterwards unless BENCH_KEEP=1.

Results: reports/vpn/<UTC time>.{json,md,png}; earlier results are kept.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

from benchlib import BIN, PLAYBOOK, ROOT, inventory_dir, lab, lab_down, lab_env, pyplot, save_figure

NAME = "benchvpn"
SITES = {"head": "site_a", "cpu1": "site_a", "cpu2": "site_b"}
SECONDS = int(os.environ.get("BENCH_VPN_SECONDS", "5"))
KEEP = os.environ.get("BENCH_KEEP", "") == "1"
DDP = os.environ.get("BENCH_VPN_DDP", "1") == "1"
ANSIBLE = str(BIN / "ansible")


def log(msg: str) -> None:
    print(f"bench-vpn: {msg}", file=sys.stderr, flush=True)


def site_inventory() -> Path:
    """The lab's inventory (benchlib.inventory_dir) and each host's site."""
    path = inventory_dir(NAME)
    (path / "host_vars").mkdir(parents=True, exist_ok=True)
    subnets = json.loads((ROOT / ".lab" / NAME / "sites.json").read_text())
    for host, site in SITES.items():
        (path / "host_vars" / f"{host}.yml").write_text(
            f"---\ndl_site: {site}\ndl_site_subnets: [{subnets[site]}]\n")
    return path


def container(host: str) -> str:
    return f"dlcluster-{NAME}-{host}"


def on(host: str, command: str) -> str:
    """A measurement command on a lab host (docker exec: it reads, it configures nothing)."""
    return subprocess.run(["docker", "exec", container(host), "sh", "-c", command], check=True,
                          capture_output=True, text=True).stdout


def address_in(host: str, network: str) -> str:
    info = json.loads(subprocess.run(["docker", "inspect", container(host)], check=True, capture_output=True,
                                     text=True).stdout)[0]
    return info["NetworkSettings"]["Networks"][network]["IPAddress"]


def measure(target: str) -> dict:
    result = json.loads(on("head", f"iperf3 -c {target} -t {SECONDS} -J"))
    ping = on("head", f"ping -c 20 -i 0.2 -q {target}")
    rtt = re.search(r"= [\d.]+/([\d.]+)/", ping)
    return {"mbit_s": round(result["end"]["sum_received"]["bits_per_second"] / 1e6, 1),
            "rtt_ms": float(rtt.group(1)) if rtt else None}


def train(inventory: Path, env: dict, hosts: str, tag: str) -> dict:
    """The DDP sample on these hosts (one rank each) over their site addresses: samples/s and test accuracy."""
    job = {"name": f"bench-vpn-{tag}", "framework": "pytorch", "hosts": hosts, "network": "site",
           "script": "jobs/scripts/pytorch_ddp_mnist.py", "hparams_file": "jobs/hparams/mnist.conf"}
    run = subprocess.run([PLAYBOOK, "-i", str(inventory), "playbooks/train.yml", "-e", json.dumps({"job": job}),
                          "-e", "force=true"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"training on {hosts} failed:\n{run.stdout[-3000:]}")
    summary = json.loads((ROOT / "runs" / job["name"] / "summary.json").read_text())
    return {"hosts": hosts, "samples_per_second": summary["samples_per_second"],
            "test_accuracy": summary["test_accuracy"]}


def write_report(rows: list[dict], meta: dict) -> Path:
    out = ROOT / "reports" / "vpn"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# VPN throughput and latency ({stamp})", "",
             f"iperf3 TCP, one stream, {SECONDS} s; ping 20 echoes; from head. {meta['implementation']}.", "",
             "| path | Mbit/s | ratio to same site | RTT ms |", "|---|---|---|---|"]
    base = rows[0]["mbit_s"] or 1
    for row in rows:
        lines.append(f"| {row['path']} | {row['mbit_s']} | {row['mbit_s'] / base:.2f} | {row['rtt_ms']} |")
    ddp = meta.get("ddp") or []
    if ddp:
        lines += ["", "PyTorch DDP sample (MNIST, one rank per host, gloo over the site addresses):", "",
                  "| ranks | samples/s | ratio to same site | test accuracy |", "|---|---|---|---|"]
        for row in ddp:
            lines.append(f"| {row['path']} | {row['samples_per_second']} | "
                         f"{row['samples_per_second'] / (ddp[0]['samples_per_second'] or 1):.2f} | "
                         f"{row['test_accuracy']} |")
    (out / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    plt = pyplot()
    if plt:
        # The DDP bars, when measured, in a row of their own below (their labels are long).
        fig = plt.figure(figsize=(11, 7 if ddp else 4))
        grid = fig.add_gridspec(2 if ddp else 1, 2)
        left, right = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        names = [row["path"] for row in rows]
        left.barh(names, [row["mbit_s"] for row in rows], color="#4c72b0")
        left.set_xlabel("Mbit/s (iperf3, TCP)")
        right.barh(names, [row["rtt_ms"] or 0 for row in rows], color="#dd8452")
        right.set_xlabel("RTT ms (ping)")
        right.set_yticks([])
        if ddp:
            bottom = fig.add_subplot(grid[1, :])
            bottom.barh([row["path"] for row in ddp], [row["samples_per_second"] for row in ddp], color="#55a868")
            bottom.set_xlabel("samples/s (PyTorch DDP sample, 2 ranks, one per host)")
        fig.suptitle(f"dlcluster VPN: same site vs across sites ({meta['implementation']})")
        save_figure(fig, out / f"{stamp}.png")
    return out / f"{stamp}.md"


def main() -> int:
    sites = [arg for host, site in SITES.items() for arg in ("--site", f"{host}={site}")]
    log("lab up (3 hosts, two sites)")
    lab("up", "--name", NAME, "--hosts", "3", "--inventory", str(ROOT / ".lab" / NAME / "hosts.yml"), *sites)
    try:
        inventory = site_inventory()
        os.replace(ROOT / ".lab" / NAME / "hosts.yml", inventory / "hosts.yml")
        # A fact cache of its own: the shared one may hold facts of other labs' hosts of the same names.
        env = {**lab_env(NAME), "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(ROOT / ".lab" / NAME / "facts")}
        tags = [] if DDP else ["--tags", "preflight,common,firewall,vpn"]
        log("converge: " + ("all of site.yml (for the DDP sample)" if DDP else "pre-flight, common, firewall, vpn"))
        run = subprocess.run([PLAYBOOK, "-i", str(inventory), "site.yml", "-e", "dl_vpn=true", "-e", "dl_pki=false",
                              *tags], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            log(run.stdout[-3000:] + run.stderr[-2000:])
            return 1
        subprocess.run([ANSIBLE, "-i", str(inventory), "dlcluster", "-b", "-m", "ansible.builtin.apt",
                        "-a", "name=iperf3 install_recommends=false"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        for host in ("cpu1", "cpu2"):
            on(host, "pkill -x iperf3; iperf3 -s -D")
        time.sleep(1)
        site_a, site_b = (f"dlcluster-{NAME}-{site}" for site in ("site_a", "site_b"))
        implementation = "wireguard-go" if on("head", "pgrep -x wireguard-go || true").strip() else "kernel WireGuard"
        targets = [("same site (site LAN)", address_in("cpu1", site_a)),
                   ("other site, underlay (no tunnel)", address_in("cpu2", f"dlcluster-{NAME}")),
                   (f"other site, tunnel ({implementation})", address_in("cpu2", site_b))]
        assert ipaddress.ip_address(targets[2][1]) != ipaddress.ip_address(targets[1][1])
        rows = []
        for path, target in targets:
            log(f"{path}: {target}")
            rows.append({"path": path, "target": target, **measure(target)})
        ddp = []
        if DDP:
            for path, hosts, tag in (("same site: head+cpu1", "head:cpu1", "same"),
                                     (f"across sites: cpu1+cpu2 ({implementation})", "cpu1:cpu2", "wireguard")):
                log(f"DDP {path}")
                ddp.append({"path": path, **train(inventory, env, hosts, tag)})
        log("the VPN play again, with strongSwan IKEv2 (dl_vpn_backend=ipsec)")
        # The run's PSK in a 0600 file of the lab's state (removed with it), never on a command line.
        psk_file = ROOT / ".lab" / NAME / "vpn-psk.json"
        psk_file.touch(mode=0o600)
        psk_file.write_text(json.dumps({"dl_vpn_ipsec_psk": secrets.token_urlsafe(32)}))
        run = subprocess.run([PLAYBOOK, "-i", str(inventory), "playbooks/vpn.yml", "-e", "dl_vpn=true",
                              "-e", "dl_pki=false",
                              "-e", "dl_vpn_backend=ipsec", "-e", "vpn_ipsec_auth=psk", "-e", f"@{psk_file}"],
                             cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            log(run.stdout[-3000:] + run.stderr[-2000:])
            return 1
        ipsec = "kernel-libipsec" if "ipsec0" in on("head", "ip -o link show") else "kernel ESP"
        deadline = time.monotonic() + 60
        while "ESTABLISHED" not in on("head", "swanctl --list-sas --ike dl-cpu2") and time.monotonic() < deadline:
            time.sleep(1)
        path = f"other site, tunnel (strongSwan {ipsec})"
        log(f"{path}: {targets[2][1]}")
        rows.append({"path": path, "target": targets[2][1], **measure(targets[2][1])})
        if DDP:
            log(f"DDP across sites: cpu1+cpu2 (strongSwan {ipsec})")
            ddp.append({"path": f"across sites: cpu1+cpu2 (strongSwan {ipsec})",
                        **train(inventory, env, "cpu1:cpu2", "ipsec")})
        implementation = f"{implementation}; strongSwan {ipsec}"
        report = write_report(rows, {"implementation": implementation, "seconds": SECONDS,
                                     "cpus": os.cpu_count(), "ddp": ddp})
        print(report.read_text())
        return 0
    finally:
        if not KEEP:
            lab_down(NAME)


if __name__ == "__main__":
    sys.exit(main())
