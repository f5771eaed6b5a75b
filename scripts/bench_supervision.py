#!/usr/bin/env python3
"""The controller's cost of watching a direct job: CPU seconds per minute of job, and forks held, side by side.

Runs playbooks/train.yml (backend direct, the DDP sample on the workers) on a converged lab twice per round: a
short job and the same job kept training about BENCH_EXTRA_SECONDS longer (step_sleep). The extra minute(s)
are pure supervision, so

    controller CPU per minute of job = (CPU of the long run - CPU of the short run) / (extra wall minutes)

where CPU is the user + system time of ansible-playbook and every process it started (getrusage of the reaped
children). Also counted: the most ansible-playbook worker processes alive at once while the job trained
(sampled every 0.5 s), i.e. the forks the supervision holds.

BENCH_COMPARE=<dir of another checkout> (e.g. `git worktree add /tmp/before <rev>`) measures that checkout the
same way in the same run, alternating, so the ratio before/after comes from one run.
BENCH_INVENTORY (and its ANSIBLE_CONFIG) selects the lab, as for bench_launch.py; BENCH_ROUNDS (default 2).
Results: reports/supervision/<UTC time>.{json,md,png}; earlier results are kept.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchlib import PLAYBOOK, ROOT, checkout_env, pyplot, run_watched, save_figure

JOB = {"framework": "pytorch", "hosts": "workers", "script": "jobs/scripts/pytorch_ddp_mnist.py",
       "hparams_file": "jobs/hparams/mnist.conf"}


def log(msg: str) -> None:
    print(f"bench-supervision: {msg}", file=sys.stderr, flush=True)


def run_job(checkout: Path, label: str, name: str, extra_sleep: float) -> dict:
    hparams = {"epochs": 2, "step_sleep": extra_sleep}
    argv = [PLAYBOOK, str(checkout / "playbooks" / "train.yml"), "-e",
            json.dumps({"job": {"name": name, **JOB, "hparams": hparams}}), "-e", "force=true"]
    if os.environ.get("BENCH_INVENTORY"):
        argv[1:1] = ["-i", os.environ["BENCH_INVENTORY"]]
    run = run_watched(argv, checkout, checkout_env(checkout, tag="bench-supervision"))
    if run["rc"] != 0:
        raise SystemExit(f"bench-supervision: {name} ({label}) failed:\n{run['output'][-3000:]}")
    row = {"checkout": label, "job": name, "step_sleep": extra_sleep, "wall_s": run["wall_s"],
           "controller_cpu_s": run["cpu_s"], "peak_workers": run["peak_workers"]}
    log(json.dumps(row))
    return row


def write_report(rows: list[dict], meta: dict) -> Path:
    out = ROOT / "reports" / "supervision"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = {}
    for label in meta["checkouts"]:
        pairs = [(short, long_) for short, long_ in zip(rows[0::2], rows[1::2]) if short["checkout"] == label]
        per_minute = [(long_["controller_cpu_s"] - short["controller_cpu_s"])
                      / ((long_["wall_s"] - short["wall_s"]) / 60) for short, long_ in pairs]
        results[label] = {
            "cpu_s_per_job_minute": round(statistics.median(per_minute), 2),
            "extra_wall_s": round(statistics.median(long_["wall_s"] - short["wall_s"] for short, long_ in pairs), 1),
            "peak_workers": max(long_["peak_workers"] for _, long_ in pairs)}
    meta["results"] = results
    (out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Supervision cost of a direct job on the controller ({stamp})", "",
             f"DDP sample on the lab's 2 workers; a short job and the same job training longer, {meta['rounds']} "
             "round(s), alternating; medians. CPU = ansible-playbook and every process it started.", "",
             "| checkout | controller CPU s per minute of job | extra minutes measured | most task workers at once |",
             "|---|---|---|---|"]
    for label, result in results.items():
        lines.append(f"| {label} | {result['cpu_s_per_job_minute']} | {result['extra_wall_s'] / 60:.2f} | "
                     f"{result['peak_workers']} |")
    if len(results) == 2:
        (first, a), (second, b) = results.items()
        lines += ["", f"{second} / {first}, CPU per minute of job: "
                      f"{b['cpu_s_per_job_minute'] / (a['cpu_s_per_job_minute'] or 1):.2f}"]
    lines += ["", "Every run:", "", "| checkout | job | step_sleep | wall s | controller CPU s | task workers |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['checkout']} | {r['job']} | {r['step_sleep']} | {r['wall_s']} | {r['controller_cpu_s']} | "
              f"{r['peak_workers']} |" for r in rows]
    (out / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    plt = pyplot()
    if plt:
        fig, axis = plt.subplots(figsize=(7, 3))
        labels = list(results)
        axis.barh(labels, [results[label]["cpu_s_per_job_minute"] for label in labels], color="#4c72b0")
        axis.set_xlabel("controller CPU seconds per minute of job (median)")
        fig.suptitle("dlcluster: the controller's cost of supervising a direct job (2 hosts)")
        save_figure(fig, out / f"{stamp}.png")
    return out / f"{stamp}.md"


def main() -> int:
    rounds = int(os.environ.get("BENCH_ROUNDS", "2"))
    extra = float(os.environ.get("BENCH_EXTRA_SECONDS", "60"))
    checkouts = {"this checkout": ROOT}
    if os.environ.get("BENCH_COMPARE"):
        checkouts = {f"before ({Path(os.environ['BENCH_COMPARE']).name})": Path(os.environ["BENCH_COMPARE"]),
                     **checkouts}
    # The sample trains 2 epochs of 32 steps per rank (2,000 digits each, batch 64): step_sleep spreads the
    # extra seconds over them.
    extra_sleep = round(extra / 64, 3)
    rows = []
    for round_ in range(1, rounds + 1):
        for index, (label, checkout) in enumerate(checkouts.items()):
            rows.append(run_job(checkout, label, f"bench-supervise-{index}-{round_}-short", 0.0))
            rows.append(run_job(checkout, label, f"bench-supervise-{index}-{round_}-long", extra_sleep))
    report = write_report(rows, {"rounds": rounds, "extra_seconds": extra, "checkouts": list(checkouts),
                                 "inventory": os.environ.get("BENCH_INVENTORY", "default")})
    print(report.read_text())
    print(f"report: {report} (.json, .png beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
