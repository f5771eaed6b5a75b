#!/usr/bin/env python3
"""Upstream bytes of a dataset sync through the cluster cache vs direct pulls, side by side (`make bench-datasets`).

Runs on the converged molecule lab (`molecule converge -s lab`), whose outsider plays upstream (an HTTPS server):
  BENCH_INVENTORY=<molecule's inventory> ANSIBLE_CONFIG=<its ansible.cfg> .venv/bin/python scripts/bench_datasets.py
It publishes BENCH_DATASETS_FILES (default 4) files of BENCH_DATASETS_MIB MiB (default 8) of random bytes on the
outsider, then syncs them to every cluster host twice, under two catalogue names:
  - cache: head (group datasets_cache) fetches from upstream once, the hosts fetch from head;
  - direct: -e datasets_cache_host= , every host fetches from upstream.
Upstream bytes are the outsider's transmitted bytes (its interfaces' counters) during each run; the wall time is
the playbook's. The synced copies are removed afterwards.
Results: reports/datasets/<UTC time>.{json,md,png}; earlier results are kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchlib import PLAYBOOK, ROOT, pyplot, save_figure

OUTSIDER = os.environ.get("BENCH_OUTSIDER", "dlcluster-molecule-lab-outsider")
HOSTS = ("head", "cpu1", "cpu2")
FILES = int(os.environ.get("BENCH_DATASETS_FILES", "4"))
MIB = int(os.environ.get("BENCH_DATASETS_MIB", "8"))
STATE = Path(os.environ.get("DL_LAB_STATE_DIR", ROOT / ".lab")) / os.environ.get("DL_LAB_NAME", "molecule-lab")


def log(msg: str) -> None:
    print(f"bench-datasets: {msg}", file=sys.stderr, flush=True)


def on(container: str, command: str) -> str:
    return subprocess.run(["docker", "exec", container, "bash", "-c", command], capture_output=True, text=True,
                          check=True).stdout


def upstream_tx_bytes() -> int:
    out = on(OUTSIDER, "cat $(ls -d /sys/class/net/*/statistics/tx_bytes | grep -v /lo/)")
    return sum(int(value) for value in out.split())


def sync(name: str, catalogue: dict, direct: bool) -> dict:
    extra = {"datasets_catalogue_extra": catalogue, "datasets_enabled": [name]}
    if direct:
        extra["datasets_cache_host"] = ""
    argv = [PLAYBOOK, str(ROOT / "playbooks" / "datasets.yml"), "-e", json.dumps(extra)]
    if os.environ.get("BENCH_INVENTORY"):
        argv[1:1] = ["-i", os.environ["BENCH_INVENTORY"]]
    before, started = upstream_tx_bytes(), time.time()
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    wall, sent = time.time() - started, upstream_tx_bytes() - before
    if run.returncode != 0:
        raise SystemExit(f"bench-datasets: the {name} sync failed:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
    payload = FILES * MIB * 2 ** 20
    row = {"mode": "direct" if direct else "cache", "hosts": len(HOSTS), "payload_mib": FILES * MIB,
           "upstream_mib": round(sent / 2 ** 20, 1), "upstream_per_payload": round(sent / payload, 2),
           "playbook_wall_s": round(wall, 1)}
    log(json.dumps(row))
    return row


def write_report(rows: list[dict], meta: dict) -> Path:
    out = ROOT / "reports" / "datasets"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Datasets: upstream bytes through the cluster cache vs direct pulls ({stamp})", "",
             f"{meta['files']} files x {meta['mib_per_file']} MiB to {len(HOSTS)} hosts; upstream = the outsider's "
             "transmitted bytes during the run.", "",
             "| mode | hosts | payload MiB | upstream MiB | upstream / payload | playbook s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['hosts']} | {r['payload_mib']} | {r['upstream_mib']} | {r['upstream_per_payload']} "
              f"| {r['playbook_wall_s']} |" for r in rows]
    cache, direct = (next(r for r in rows if r["mode"] == mode) for mode in ("cache", "direct"))
    lines += ["", f"Through the cache, upstream sent {cache['upstream_mib'] / direct['upstream_mib']:.2f} of the bytes "
              "of direct pulls."]
    (out / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    plt = pyplot()
    if plt:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.bar([r["mode"] for r in rows], [r["upstream_mib"] for r in rows], color=["tab:green", "tab:red"])
        ax.axhline(cache["payload_mib"], color="grey", linestyle="--", label="one copy of the payload")
        ax.set_ylabel("MiB sent by upstream")
        ax.set_title(f"{meta['files']} x {meta['mib_per_file']} MiB to {len(HOSTS)} hosts")
        ax.legend()
        save_figure(fig, out / f"{stamp}.png", dpi=120)
    return out / f"{stamp}.md"


def main() -> int:
    run_id = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    base = f"/srv/upstream/https/bench/{run_id}"
    on(OUTSIDER, f"mkdir -p {base} && cd {base} && for i in $(seq 1 {FILES}); do "
                 f"head -c {MIB * 2 ** 20} /dev/urandom > part-$i.bin; done")
    digests = dict(reversed(line.split()) for line in on(OUTSIDER, f"cd {base} && sha256sum *").splitlines())
    catalogue = json.loads((STATE / "datasets-catalogue.json").read_text())
    url = catalogue["mnist-5k"]["source"]["url"].split("/srv/")[0] + f"{base}/"
    entry = {"kind": "dataset", "version": "1", "source": {"type": "http", "url": url},
             "manifest": {"algorithm": "sha256", "files": digests}}
    names = {"cache": f"bench-cache-{run_id}", "direct": f"bench-direct-{run_id}"}
    catalogue.update({name: entry for name in names.values()})
    try:
        rows = [sync(names["cache"], catalogue, direct=False), sync(names["direct"], catalogue, direct=True)]
    finally:
        for host in HOSTS:
            subprocess.run(["docker", "exec", f"dlcluster-molecule-lab-{host}", "bash", "-c",
                            "rm -rf /data/datasets/bench-* /data/cache/datasets/bench-*"], check=False)
        on(OUTSIDER, f"rm -rf {base}")
    report = write_report(rows, {"files": FILES, "mib_per_file": MIB, "hosts": list(HOSTS)})
    print(report.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
