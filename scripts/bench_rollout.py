#!/usr/bin/env python3
"""Warm re-run speed of site.yml on labs of several sizes, side by side in one run (`make bench-rollout`).

For each size (BENCH_SIZES, default "2 3 16"): a lab of that many hosts (its own name, bench<N>,
next to any other lab), a cold converge, then BENCH_WARM_RUNS (default 2) warm runs of site.yml,
each timed and checked for changed=0 on every host (each says how many hosts ran their roles: on a
converged lab none, roles/converged), then one warm run on the full path (-e converged_enabled=false:
every host runs every role, the canary plays' probe included).
Every size runs the same plays: the Python environments, the notebook services (which need the
environments) and the Docker engine are left out by tag (BENCH_SKIP_TAGS, default
python_envs,notebooks,docker) so that 16 hosts fit two cores
and the ratios compare like with like; the 3-host lab's full-site warm run is measured on the
molecule lab (see the README).

Results: reports/rollout/<UTC time>.{json,md,png}; earlier results are kept.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from benchlib import PLAYBOOK, ROOT, inventory_dir, lab, lab_down, lab_env, pyplot, save_figure

SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "2 3 16").split()]
WARM_RUNS = int(os.environ.get("BENCH_WARM_RUNS", "2"))
SKIP_TAGS = os.environ.get("BENCH_SKIP_TAGS", "python_envs,notebooks,docker")
KEEP = os.environ.get("BENCH_KEEP", "") == "1"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def log(msg: str) -> None:
    print(f"bench-rollout: {msg}", file=sys.stderr, flush=True)


def site(inventory: Path, name: str, *extra: str) -> dict:
    env = lab_env(name)
    start = time.monotonic()
    run = subprocess.run([PLAYBOOK, "-i", str(inventory), "site.yml", "--skip-tags", SKIP_TAGS, *extra],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - start
    recap = {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
             for m in RECAP.findall(run.stdout)}
    if run.returncode != 0:
        sys.exit(f"bench-rollout: site.yml failed on the {name} lab:\n{run.stdout[-6000:]}{run.stderr[-2000:]}")
    # roles/converged prints "<host> runs its roles: <why>" for each host that is not left out.
    ran = len(re.findall(r"msg: '?\S+ runs its roles: ", run.stdout))
    return {"seconds": round(seconds, 1), "changed": sum(r["changed"] for h, r in recap.items() if h != "localhost"),
            "hosts": len([h for h in recap if h != "localhost"]), "ran_roles": ran}


def measure(size: int) -> dict:
    name = f"bench{size}"
    inventory = inventory_dir(name)
    log(f"{size} hosts: lab up")
    lab("up", "--name", name, "--hosts", str(size), "--inventory", str(inventory / "hosts.yml"))
    try:
        log(f"{size} hosts: cold converge")
        cold = site(inventory, name)
        warm = []
        for i in range(WARM_RUNS):
            log(f"{size} hosts: warm run {i + 1}")
            warm.append(site(inventory, name))
            if warm[-1]["changed"]:
                sys.exit(f"bench-rollout: warm run {i + 1} on {size} hosts changed {warm[-1]['changed']} task(s)")
        # The same warm run on the full path: every host runs every role (roles/converged off).
        log(f"{size} hosts: warm run, every role on every host")
        full = site(inventory, name, "-e", "converged_enabled=false")
    finally:
        if not KEEP:
            lab_down(name)
    return {"hosts": size, "cold_seconds": cold["seconds"], "warm_seconds": [w["seconds"] for w in warm],
            "warm_best": min(w["seconds"] for w in warm), "warm_hosts_ran_roles": max(w["ran_roles"] for w in warm),
            "warm_full_seconds": full["seconds"], "warm_full_changed": full["changed"]}


def write_reports(results: list[dict]) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = ROOT / "reports" / "rollout"
    out.mkdir(parents=True, exist_ok=True)
    base = min(results, key=lambda r: r["hosts"])
    for r in results:
        r["warm_ratio_to_smallest"] = round(r["warm_best"] / base["warm_best"], 2)
    meta = {"time": stamp, "skip_tags": SKIP_TAGS, "warm_runs": WARM_RUNS, "cpus": os.cpu_count(),
            "results": results}
    (out / f"{stamp}.json").write_text(json.dumps(meta, indent=2) + "\n")
    for r in results:
        r["warm_full_ratio_to_smallest"] = round(r["warm_full_seconds"] / base["warm_full_seconds"], 2)
    rows = ["| hosts | cold converge (s) | warm runs (s) | best warm (s) | warm / smallest | hosts that ran roles "
            "| warm, every role (s) | every role / smallest |", "|---|---|---|---|---|---|---|---|"]
    rows += [f"| {r['hosts']} | {r['cold_seconds']} | {', '.join(map(str, r['warm_seconds']))} | {r['warm_best']} | "
             f"{r['warm_ratio_to_smallest']} | {r['warm_hosts_ran_roles']} | {r['warm_full_seconds']} | "
             f"{r['warm_full_ratio_to_smallest']} |" for r in results]
    (out / f"{stamp}.md").write_text(
        f"# site.yml warm re-runs ({stamp})\n\n`site.yml --skip-tags {SKIP_TAGS}` on lab containers, "
        f"{os.cpu_count()} controller cores; every warm run reported changed=0 on every host. \"warm, every role\": "
        "`-e converged_enabled=false` (the full path; its changed tasks: "
        f"{', '.join(str(r['warm_full_changed']) for r in results)}).\n\n"
        + "\n".join(rows) + "\n")
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(6, 4))
        hosts = [r["hosts"] for r in results]
        ax.plot(hosts, [r["warm_best"] for r in results], marker="o", label="warm re-run (best)")
        ax.plot(hosts, [r["warm_full_seconds"] for r in results], marker="^", label="warm, every role on every host")
        ax.plot(hosts, [r["cold_seconds"] for r in results], marker="s", label="cold converge")
        ax.set_xlabel("lab hosts")
        ax.set_ylabel("seconds")
        ax.set_title(f"site.yml (--skip-tags {SKIP_TAGS})")
        ax.grid(True, alpha=0.3)
        ax.legend()
        save_figure(fig, out / f"{stamp}.png")
    print((out / f"{stamp}.md").read_text())
    return out / f"{stamp}.md"


def main() -> int:
    results = [measure(size) for size in SIZES]
    write_reports(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
