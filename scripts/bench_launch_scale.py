#!/usr/bin/env python3
"""The launcher at 2, 4 and 8 hosts (`make bench-launch-scale`): the controller's overhead, the full launch and the
cost of supervising, this checkout and another side by side in one run.

A lab of its own (`benchlaunch`, head + 8 workers, next to any other lab) is created and converged without the
services a job does not need (BENCH_SKIP_TAGS, default notebooks,docker,slurm,monitoring,datasets), so eight
hosts with PyTorch environments fit two cores. Then, for each size (BENCH_SIZES, default "2 4 8") and each
checkout, playbooks/train.yml runs the PyTorch DDP sample (1 epoch) on the first N workers, and records:

  - controller overhead: playbook start -> every host's unit started (systemd's own "Started" entry in each
    host's journal, so the ranks' start-up, which grows with the host count on two cores, is not in it);
  - full launch: playbook start -> every rank's first training step (the ranks' metrics);
  - the playbook's wall time and the controller's CPU (ansible-playbook and every process it started), also up to
    every unit started (sampled every 0.2 s), and the most task workers alive at once;
  - the floor under any launcher: `ansible <workers> -b -m ping` on the same workers (first contact only).

For the smallest and the largest size the same job also runs BENCH_EXTRA_SECONDS (default 60) longer (step_sleep):
the extra minute's controller CPU is the cost of supervising, as in scripts/bench_supervision.py.

BENCH_COMPARE=<dir of another checkout> (e.g. `git worktree add /tmp/before <rev>`) runs that checkout the same
way, alternating, on the same lab. BENCH_REUSE=1 uses the lab as it is (created and converged by an earlier run
with BENCH_KEEP=1, which leaves the lab up). Results: reports/launch-scale/<UTC time>.{json,md,png}; earlier
results are kept.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import (BIN, PLAYBOOK, ROOT, checkout_env, cpu_at, inventory_dir, lab, lab_down, lab_env, pyplot,
                      run_watched, save_figure)

NAME = "benchlaunch"
SIZES = sorted({int(n) for n in os.environ.get("BENCH_SIZES", "2 4 8").split()})
SKIP_TAGS = os.environ.get("BENCH_SKIP_TAGS", "notebooks,docker,slurm,monitoring,datasets")
EXTRA_SECONDS = float(os.environ.get("BENCH_EXTRA_SECONDS", "60"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
JOB = {"framework": "pytorch", "script": "jobs/scripts/pytorch_ddp_mnist.py", "hparams_file": "jobs/hparams/mnist.conf"}
STARTED = re.compile(r"^(\S+) \| \S+ \| rc=\d+ \| \(stdout\) ([0-9.]+)", re.M)


def log(msg: str) -> None:
    print(f"bench-launch-scale: {msg}", file=sys.stderr, flush=True)


def workers(size: int) -> list[str]:
    return [f"cpu{i}" for i in range(1, size + 1)]


def converge(inventory: Path) -> None:
    log(f"converge the {NAME} lab (site.yml --skip-tags {SKIP_TAGS})")
    started = time.monotonic()
    run = subprocess.run([PLAYBOOK, "-i", str(inventory), "site.yml", "--skip-tags", SKIP_TAGS], cwd=ROOT,
                         env=lab_env(NAME), capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"bench-launch-scale: site.yml failed on the {NAME} lab:\n{run.stdout[-6000:]}{run.stderr[-2000:]}")
    log(f"converged in {time.monotonic() - started:.0f} s")


def units_started(inventory: Path, hosts: list[str], job_id: str, since: float) -> dict:
    """Each host's unix time of systemd's "Started dlcluster-job-<id>.service" (its journal) since `since`."""
    command = (f"journalctl -o short-unix --no-pager --since @{int(since)} -u dlcluster-job-{job_id}.service "
               "| awk '/ Started /{t=$1} END{if (t) print t}'")
    run = subprocess.run([str(BIN / "ansible"), ":".join(hosts), "-i", str(inventory), "-b", "-o", "-m",
                          "ansible.builtin.shell", "-a", command], cwd=ROOT, env=lab_env(NAME),
                         capture_output=True, text=True, check=False)
    found = {host: float(stamp) for host, stamp in STARTED.findall(run.stdout)}
    if sorted(found) != sorted(hosts):
        sys.exit(f"bench-launch-scale: no unit start found for {sorted(set(hosts) - set(found))} "
                 f"(job {job_id}):\n{run.stdout[-3000:]}{run.stderr[-1000:]}")
    return found


def run_job(checkout: Path, label: str, size: int, round_: int, extra: float, inventory: Path) -> dict:
    kind = "long" if extra else "short"
    job_id = f"bench-scale-{label.split()[0]}-{size}-{kind}-{round_}"
    # The sample trains 4,000 digits per epoch in batches of 64 per rank: the extra seconds spread over its steps.
    steps = -(-4000 // (64 * size))
    hparams = {"epochs": 1, "step_sleep": round(extra / steps, 3) if extra else 0}
    spec = {"name": job_id, "hosts": ":".join(workers(size)), **JOB, "hparams": hparams}
    argv = [PLAYBOOK, "-i", str(inventory), str(checkout / "playbooks" / "train.yml"), "-e",
            json.dumps({"job": spec}), "-e", "force=true"]
    run = run_watched(argv, checkout, checkout_env(checkout, lab_env(NAME), tag="bench-launch-scale"))
    if run["rc"] != 0:
        sys.exit(f"bench-launch-scale: {job_id} ({label}) failed:\n{run['output'][-4000:]}")
    started = run["started"]
    units = units_started(inventory, workers(size), job_id, started)
    summary = json.loads((checkout / "runs" / job_id / "summary.json").read_text())
    steps = [rank["first_step_unix"] for rank in summary.get("ranks", []) if rank.get("first_step_unix")]
    row = {"checkout": label, "hosts": size, "kind": kind, "round": round_, "job": job_id,
           "overhead_s": round(max(units.values()) - started, 2),
           "overhead_cpu_s": cpu_at(run["cpu_timeline"], max(units.values())),
           "first_step_s": round(max(steps) - started, 2) if len(steps) == size else None,
           "wall_s": run["wall_s"], "controller_cpu_s": run["cpu_s"], "peak_workers": run["peak_workers"],
           "test_accuracy": summary.get("test_accuracy")}
    log(json.dumps(row))
    return row


def contact(size: int, round_: int, inventory: Path) -> dict:
    """The floor under any launcher: `ansible -m ping` with become on the same workers (the first contact, which
    starts mitogen's interpreters on every host, and nothing else): wall and controller CPU seconds."""
    hosts = ":".join(workers(size))
    run = run_watched([str(BIN / "ansible"), hosts, "-i", str(inventory), "-b", "-m", "ansible.builtin.ping"], ROOT,
                      lab_env(NAME))
    if run["rc"] != 0:
        sys.exit(f"bench-launch-scale: ansible -m ping on {hosts} failed:\n{run['output'][-3000:]}")
    row = {"hosts": size, "round": round_, "wall_s": run["wall_s"], "controller_cpu_s": run["cpu_s"]}
    log(f"bare contact: {json.dumps(row)}")
    return row


def results_of(rows: list[dict], checkouts: list[str]) -> dict:
    results = {}
    for label in checkouts:
        mine = [r for r in rows if r["checkout"] == label]
        per_size = {}
        for size in SIZES:
            short = [r for r in mine if r["hosts"] == size and r["kind"] == "short"]
            long_ = [r for r in mine if r["hosts"] == size and r["kind"] == "long"]
            entry = {key: round(statistics.median(r[key] for r in short), 2)
                     for key in ("overhead_s", "overhead_cpu_s", "first_step_s", "wall_s", "controller_cpu_s")
                     if all(r[key] is not None for r in short)}
            entry["peak_workers"] = max(r["peak_workers"] for r in short + long_)
            if long_:
                minutes = statistics.median(lg["wall_s"] - sh["wall_s"] for sh, lg in zip(short, long_)) / 60
                cpu = statistics.median(lg["controller_cpu_s"] - sh["controller_cpu_s"] for sh, lg in zip(short, long_))
                entry["supervision_cpu_s_per_minute"] = round(cpu / minutes, 2) if minutes > 0 else None
            per_size[size] = entry
        results[label] = with_ratios(per_size, ("overhead_s", "overhead_cpu_s", "first_step_s"))
    return results


def with_ratios(per_size: dict, keys: tuple[str, ...]) -> dict:
    """Each size's entry gains <key>_ratio: its value over the smallest size's, for the keys both have."""
    smallest = per_size[SIZES[0]]
    for entry in per_size.values():
        for key in keys:
            if key in entry and smallest.get(key):
                entry[f"{key}_ratio"] = round(entry[key] / smallest[key], 2)
    return per_size


def contact_results(contacts: list[dict]) -> dict:
    """Medians of the bare contact per size, with their ratio to the smallest size."""
    keys = ("wall_s", "controller_cpu_s")
    return with_ratios({size: {key: round(statistics.median(c[key] for c in contacts if c["hosts"] == size), 2)
                               for key in keys} for size in SIZES}, keys)


def write_report(rows: list[dict], contacts: list[dict], meta: dict) -> Path:
    out = ROOT / "reports" / "launch-scale"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = results_of(rows, meta["checkouts"])
    meta["results"] = results
    meta["bare_contact"] = floor = contact_results(contacts)
    (out / f"{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows, "contacts": contacts}, indent=2)
                                       + "\n")
    lines = [f"# The launcher at {', '.join(map(str, SIZES))} hosts ({stamp})", "",
             f"PyTorch DDP sample, 1 epoch, 1 rank per worker, on the `{NAME}` lab (head + {max(SIZES)} workers, "
             f"`site.yml --skip-tags {SKIP_TAGS}`), {os.cpu_count()} controller cores, {meta['rounds']} round(s), "
             "medians. Overhead = playbook start -> every host's unit started (systemd's journal); full launch = "
             "playbook start -> every rank's first step; overhead CPU = the controller's CPU seconds (ansible-playbook "
             "and every process it started) up to every unit started. Supervision = controller CPU seconds per "
             f"extra minute of job ({EXTRA_SECONDS:.0f} s more training).", "",
             "| checkout | hosts | overhead (s) | overhead / smallest | overhead CPU (s) | overhead CPU / smallest | "
             "full launch (s) | full launch / smallest | playbook wall (s) | controller CPU (s) | most task workers | "
             "supervision CPU s per minute |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, per_size in results.items():
        for size, entry in per_size.items():
            lines.append(f"| {label} | {size} | {entry.get('overhead_s', '')} | {entry.get('overhead_s_ratio', '')} | "
                         f"{entry.get('overhead_cpu_s', '')} | {entry.get('overhead_cpu_s_ratio', '')} | "
                         f"{entry.get('first_step_s', '')} | {entry.get('first_step_s_ratio', '')} | "
                         f"{entry.get('wall_s', '')} | {entry.get('controller_cpu_s', '')} | {entry['peak_workers']} | "
                         f"{entry.get('supervision_cpu_s_per_minute', '')} |")
    lines += ["", "The floor under any launcher on this lab: `ansible <workers> -b -m ping` (first contact only), "
              "medians:", "", "| hosts | wall (s) | wall / smallest | controller CPU (s) | CPU / smallest |",
              "|---|---|---|---|---|"]
    lines += [f"| {size} | {e['wall_s']} | {e['wall_s_ratio']} | {e['controller_cpu_s']} | "
              f"{e['controller_cpu_s_ratio']} |" for size, e in floor.items()]
    lines += ["", "Every run:", "", "| checkout | hosts | job | overhead s | overhead CPU s | full launch s | wall s "
              "| controller CPU s | task workers | test accuracy |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['checkout']} | {r['hosts']} | {r['job']} | {r['overhead_s']} | {r['overhead_cpu_s']} | "
              f"{r['first_step_s'] or ''} | {r['wall_s']} | {r['controller_cpu_s']} | {r['peak_workers']} | "
              f"{r['test_accuracy']} |" for r in rows]
    (out / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    plt = pyplot()
    if plt:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for label, per_size in results.items():
            sizes = list(per_size)
            left.plot(sizes, [per_size[s].get("overhead_s") for s in sizes], marker="o", label=f"{label}: overhead")
            left.plot(sizes, [per_size[s].get("first_step_s") for s in sizes], marker="s", linestyle="--",
                      label=f"{label}: full launch")
            supervised = [s for s in sizes if per_size[s].get("supervision_cpu_s_per_minute") is not None]
            right.plot(supervised, [per_size[s]["supervision_cpu_s_per_minute"] for s in supervised], marker="o",
                       label=label)
        left.plot(list(floor), [e["wall_s"] for e in floor.values()], marker="x", color="grey", linestyle=":",
                  label="ansible -m ping (floor)")
        left.set_xlabel("job hosts")
        left.set_ylabel("seconds from playbook start")
        left.set_xticks(SIZES)
        left.legend(fontsize=7)
        left.grid(True, alpha=0.3)
        right.set_xlabel("job hosts")
        right.set_ylabel("controller CPU s per minute of job")
        right.set_xticks(SIZES)
        right.legend(fontsize=7)
        right.grid(True, alpha=0.3)
        fig.suptitle("dlcluster: launching and supervising a DDP job")
        save_figure(fig, out / f"{stamp}.png")
    return out / f"{stamp}.md"


def main() -> int:
    checkouts = {"now": ROOT}
    if os.environ.get("BENCH_COMPARE"):
        checkouts = {f"before ({Path(os.environ['BENCH_COMPARE']).name})": Path(os.environ["BENCH_COMPARE"]),
                     **checkouts}
    inventory = inventory_dir(NAME)
    rows, contacts = [], []
    try:
        if os.environ.get("BENCH_REUSE") != "1":
            log(f"lab up: head + {max(SIZES)} workers")
            lab("up", "--name", NAME, "--hosts", str(max(SIZES) + 1), "--inventory", str(inventory / "hosts.yml"))
            converge(inventory)
        for round_ in range(1, ROUNDS + 1):
            for size in SIZES:
                contacts.append(contact(size, round_, inventory))
                for label, checkout in checkouts.items():
                    rows.append(run_job(checkout, label, size, round_, 0.0, inventory))
                    if size in (SIZES[0], SIZES[-1]):
                        rows.append(run_job(checkout, label, size, round_, EXTRA_SECONDS, inventory))
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            lab_down(NAME)
    report = write_report(rows, contacts, {"rounds": ROUNDS, "sizes": SIZES, "skip_tags": SKIP_TAGS,
                                 "extra_seconds": EXTRA_SECONDS, "checkouts": list(checkouts)})
    print(report.read_text())
    print(f"report: {report} (.json, .png beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
