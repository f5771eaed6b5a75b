#!/usr/bin/env python3
"""dlcluster benchmarks on the lab (`make bench`), each comparison measured side by side in one run.

1. pip mirror: the environment's package set (python_envs' scientific stack with Jupyter and
   TensorBoard, pinned by its constraints; torch left out, PyPI's torch being the CUDA build)
   provisioned into a fresh virtualenv on both workers (download, then install from the
   downloaded files), (a) straight from upstream PyPI and (b) through a fresh (cold) mirror
   index on the head node, one worker after the other as python_envs resolves. Upstream
   requests/bytes: (a) what the workers fetched; (b) the files devpi stored for the fresh index,
   each fetched from upstream once. Per host: provisioning seconds.
2. Training: the PyTorch DDP sample on 1 host and on 2 hosts (throughput ratio), and the launch
   overhead (playbook start -> every rank's first step) for 2 workers and a larger group
   (BENCH_LARGE_GROUP, default every host: 4 in a LAB_HOSTS=4 lab).

Needs a converged lab (make demo). Results: bench-results/<UTC time>.json (and printed).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV_DEFAULTS = yaml.safe_load((ROOT / "roles" / "python_envs" / "defaults" / "main.yml").read_text())
PACKAGES = os.environ.get("BENCH_PACKAGES", " ".join(ENV_DEFAULTS["python_envs_scientific_packages"])).split()
CONSTRAINTS = (ROOT / "roles" / "python_envs" / "files" / "constraints.txt").read_text()
WORKERS = ["cpu1", "cpu2"]
LARGE_GROUP = os.environ.get("BENCH_LARGE_GROUP", "dlcluster")


def ansible(host: str, command: str, become: bool = True, stdin: str | None = None) -> str:
    args = json.dumps({"cmd": command, **({"stdin": stdin} if stdin is not None else {})})
    argv = ["ansible", host, "-o", "-m", "ansible.builtin.shell", "-a", args] + (["-b"] if become else [])
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"bench: {host}: {command!r} failed:\n{run.stdout}{run.stderr}")
    return run.stdout.split("(stdout) ", 1)[-1].replace("\\n", "\n").strip()


def provision(host: str, index: str, trusted: str, tag: str) -> dict:
    """Download the package set into a fresh venv's directory, then install it from there: provisioning."""
    target = f"/tmp/dlcluster-bench-{tag}"
    pip = (f"{target}/venv/bin/pip --disable-pip-version-check --no-cache-dir --isolated "
           f"--cert /etc/ssl/certs/ca-certificates.crt")
    ansible(host, f"rm -rf {target} && mkdir -p {target} && cat > {target}/constraints.txt && "
                  f"python3 -m venv {target}/venv", stdin=CONSTRAINTS)
    start = time.time()
    ansible(host, f"{pip} download --quiet --only-binary=:all: --index-url {index} {trusted} "
                  f"-c {target}/constraints.txt -d {target}/files {' '.join(PACKAGES)}")
    downloaded = time.time()
    ansible(host, f"{pip} install --quiet --no-index --find-links {target}/files "
                  f"-c {target}/constraints.txt {' '.join(PACKAGES)}")
    installed = time.time()
    files, size = ansible(host, f"ls {target}/files | wc -l; du -sb {target}/files | cut -f1").split()
    ansible(host, f"rm -rf {target}")
    return {"host": host, "seconds": round(installed - start, 1), "download_seconds": round(downloaded - start, 1),
            "install_seconds": round(installed - downloaded, 1), "files": int(files), "bytes": int(size)}


def mirror_bench() -> dict:
    head = ansible("pip_mirror[0]", "hostname", become=False)
    inventory = subprocess.run(["ansible-inventory", "--host", head], cwd=ROOT, capture_output=True, text=True,
                               check=True)
    address = json.loads(inventory.stdout)["ansible_host"]
    password = (ROOT / ".lab" / "default" / "devpi-root-password").read_text().strip()
    name = f"bench{int(time.time())}"
    create_index = (
        "import base64, json, sys, urllib.request\n"
        # devpi itself, on the head node's loopback (nginx serves it over TLS on the cluster address).
        "u = 'http://127.0.0.1:13141'\n"
        "def call(method, path, body, auth=None):\n"
        "    h = {'Content-Type': 'application/json', 'Accept': 'application/json'}\n"
        "    if auth: h['X-Devpi-Auth'] = auth\n"
        "    r = urllib.request.Request(u + path, json.dumps(body).encode(), h, method=method)\n"
        "    return json.loads(urllib.request.urlopen(r).read())\n"
        "t = call('POST', '/+login', {'user': 'root', 'password': sys.stdin.read().strip()})['result']['password']\n"
        "a = base64.b64encode(('root:' + t).encode()).decode()\n"
        f"call('PUT', '/root/{name}', {{'type': 'mirror', 'mirror_url': 'https://pypi.org/simple/'}}, a)\n"
        # A new mirror loads upstream's project list first; wait for it (pip's page is not fetched twice).
        "import time\n"
        "for _ in range(60):\n"
        "    try:\n"
        f"        if b'.whl' in urllib.request.urlopen(u + '/root/{name}/+simple/pip/', timeout=30).read(): break\n"
        "    except OSError: pass\n"
        "    time.sleep(2)\n")
    encoded = base64.b64encode(create_index.encode()).decode()
    ansible(head, f"/opt/dlcluster/devpi/bin/python -c \"import base64; exec(base64.b64decode('{encoded}'))\"",
            stdin=password)
    # One worker after the other in both cases: per-host seconds compare on the lab's shared cores.
    direct = [provision(h, "https://pypi.org/simple/", "", "direct") for h in WORKERS]
    # Over the mirror's HTTPS, verified by the workers' trust store (the cluster CA).
    mirrored = [provision(h, f"https://{address}:3141/root/{name}/+simple/", "", "mirror") for h in WORKERS]
    store = ansible(head, f"d=$(find /var/lib/devpi /data/devpi -type d -path '*/root/{name}' 2>/dev/null | head -1); "
                          "find $d -type f -name '*.whl' | wc -l; du -sb $d | cut -f1")
    upstream_files, upstream_bytes = (int(value) for value in store.split())
    return {"packages": PACKAGES, "mirror_index": f"root/{name}",
            "without_mirror": {"hosts": direct, "upstream_files": sum(h["files"] for h in direct),
                               "upstream_bytes": sum(h["bytes"] for h in direct)},
            "with_mirror": {"hosts": mirrored, "upstream_files": upstream_files, "upstream_bytes": upstream_bytes}}


def train(hosts: str, tag: str) -> dict:
    job = {"name": f"bench-{tag}", "framework": "pytorch", "hosts": hosts,
           "script": "jobs/scripts/pytorch_ddp_mnist.py", "hparams_file": "jobs/hparams/mnist.conf"}
    start = time.time()
    run = subprocess.run(["ansible-playbook", "playbooks/train.yml", "-e", json.dumps({"job": job}),
                          "-e", "force=true"], cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"bench: training on {hosts} failed:\n{run.stdout[-3000:]}")
    summary = json.loads((ROOT / "runs" / f"bench-{tag}" / "summary.json").read_text())
    first_steps = [rank["first_step_unix"] for rank in summary["ranks"]]
    return {"hosts": hosts, "ranks": len(summary["ranks"]), "playbook_seconds": round(time.time() - start, 1),
            "launch_to_all_first_steps": round(max(first_steps) - start, 1),
            "samples_per_second": summary["samples_per_second"], "test_accuracy": summary["test_accuracy"]}


def main() -> int:
    results = {"mirror": mirror_bench(), "train": {
        "one_host": train(WORKERS[0], "1host"), "two_hosts": train(":".join(WORKERS), "2hosts"),
        "large_group": train(LARGE_GROUP, "large")}}
    m, t = results["mirror"], results["train"]
    results["ratios"] = {
        "upstream_bytes_with_vs_without_mirror": round(m["with_mirror"]["upstream_bytes"]
                                                       / m["without_mirror"]["upstream_bytes"], 3),
        "provision_seconds_mirror_warm_vs_without": round(m["with_mirror"]["hosts"][-1]["seconds"]
                                                          / m["without_mirror"]["hosts"][-1]["seconds"], 3),
        "provision_seconds_mirror_cold_vs_without": round(m["with_mirror"]["hosts"][0]["seconds"]
                                                          / m["without_mirror"]["hosts"][0]["seconds"], 3),
        "samples_per_second_2_vs_1_host": round(t["two_hosts"]["samples_per_second"]
                                                / t["one_host"]["samples_per_second"], 3),
        "launch_overhead_large_vs_2_hosts": round(t["large_group"]["launch_to_all_first_steps"]
                                                  / t["two_hosts"]["launch_to_all_first_steps"], 3),
    }
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"bench: results in {out / stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
