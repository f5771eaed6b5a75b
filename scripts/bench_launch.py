#!/usr/bin/env python3
"""Submit-to-first-step of the PyTorch DDP sample on 2 hosts: the direct backend vs Slurm, side by side.

Runs playbooks/train.yml on a converged lab (`make lab converge`, then `make bench-launch`; for another
inventory, e.g. molecule's lab, run this script with BENCH_INVENTORY and that inventory's ANSIBLE_CONFIG, since
the Makefile sets the repository's) with the same job under backend direct and backend slurm, alternating,
BENCH_ROUNDS times each (default 3). For each run it records, from the job's summary and metrics:
  - playbook start -> first training step: what a person waits for after typing the command;
  - start/submit -> first step: after systemd-run (direct) or sbatch (slurm) returned;
  - the playbook's whole wall time (the job trains ~10 s of it).
Results: reports/launch/<UTC time>.{json,md,png}; earlier results are kept.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import PLAYBOOK, ROOT, pyplot, save_figure

JOB = {"framework": "pytorch", "hosts": "workers", "script": "jobs/scripts/pytorch_ddp_mnist.py",
       "hparams_file": "jobs/hparams/mnist.conf"}


def log(msg: str) -> None:
    print(f"bench-launch: {msg}", file=sys.stderr, flush=True)


def run_job(backend: str, round_: int) -> dict:
    name = f"bench-launch-{backend}-{round_}"
    argv = [PLAYBOOK, str(ROOT / "playbooks" / "train.yml"), "-e",
            json.dumps({"job": {"name": name, "backend": backend, **JOB}}), "-e", "force=true"]
    inventory = os.environ.get("BENCH_INVENTORY")
    if inventory:
        argv[1:1] = ["-i", inventory]
    started = time.time()
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.time() - started
    if run.returncode != 0:
        raise SystemExit(f"bench-launch: {name} failed:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
    summary = json.loads((ROOT / "runs" / name / "summary.json").read_text())
    first_step = max(row["first_step_unix"] for row in summary["ranks"])
    row = {"backend": backend, "round": round_, "command_to_first_step_s": round(first_step - started, 2),
           "start_to_first_step_s": summary["launch_to_first_step_seconds"], "playbook_wall_s": round(wall, 1),
           "test_accuracy": summary["test_accuracy"]}
    log(json.dumps(row))
    return row


def write_report(rows: list[dict], meta: dict) -> Path:
    out = ROOT / "reports" / "launch"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    keys = ("command_to_first_step_s", "start_to_first_step_s", "playbook_wall_s")
    medians = {backend: {key: round(statistics.median(r[key] for r in rows if r["backend"] == backend), 2)
                         for key in keys} for backend in ("direct", "slurm")}
    lines = [f"# Launch latency: direct vs Slurm ({stamp})", "",
             f"PyTorch DDP sample (MNIST), 2 hosts x 1 rank, {meta['rounds']} runs of each backend, alternating; "
             "medians.", "",
             "| backend | command -> first step (s) | start/submit -> first step (s) | playbook wall (s) |",
             "|---|---|---|---|"]
    for backend, med in medians.items():
        lines.append(f"| {backend} | {med['command_to_first_step_s']} | {med['start_to_first_step_s']} | "
                     f"{med['playbook_wall_s']} |")
    ratio = medians["slurm"]["command_to_first_step_s"] / (medians["direct"]["command_to_first_step_s"] or 1)
    lines += ["", f"slurm / direct, command -> first step: {ratio:.2f}", "", "Every run:", "",
              "| backend | round | command -> first step | start -> first step | wall | test accuracy |",
              "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['backend']} | {r['round']} | {r['command_to_first_step_s']} | "
                     f"{r['start_to_first_step_s']} | {r['playbook_wall_s']} | {r['test_accuracy']} |")
    (out / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    meta["medians"] = medians
    plt = pyplot()
    if plt:
        fig, axis = plt.subplots(figsize=(8, 3.5))
        labels = ["command -> first step", "start/submit -> first step", "playbook wall"]
        width = 0.38
        for i, (backend, color) in enumerate((("direct", "#4c72b0"), ("slurm", "#dd8452"))):
            axis.barh([y + i * width for y in range(len(keys))], [medians[backend][k] for k in keys], width,
                      label=backend, color=color)
        axis.set_yticks([y + width / 2 for y in range(len(keys))], labels)
        axis.set_xlabel("seconds (median)")
        axis.legend()
        fig.suptitle("dlcluster launch: the direct backend vs Slurm (DDP sample, 2 hosts)")
        save_figure(fig, out / f"{stamp}.png")
    return out / f"{stamp}.md"


def main() -> int:
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    rows = []
    for round_ in range(1, rounds + 1):
        for backend in ("direct", "slurm"):
            rows.append(run_job(backend, round_))
    report = write_report(rows, {"rounds": rounds, "inventory": os.environ.get("BENCH_INVENTORY", "default")})
    print(report.read_text())
    print(f"report: {report} (.json, .png beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
