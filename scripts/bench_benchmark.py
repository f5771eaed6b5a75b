#!/usr/bin/env python3
"""The benchmark of the benchmark (`make bench`): playbooks/benchmark.yml's images/s against the same model run by
hand on the same host with the same threads, side by side in one run.

After one uncounted playbook run (it installs dlbench.py), interleaved rounds (BENCH_ROUNDS, default 3): by hand, through the playbook, by hand, through the playbook, ...,
ending by hand; the median of the playbook's figures is compared with the median of the hand runs, and the spread
of the hand runs (how much the machine itself varies) is printed beside it. Goal: the playbook within 5 % of the
hand runs.

    BENCH_HOST=cpu1 BENCH_INVENTORY=inventories/lab/hosts.yml python scripts/bench_benchmark.py

Needs a converged lab (make demo). Results: reports/benchmark-overhead/<UTC time>.{md,json} (earlier kept).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "filter_plugins"))

from dl_bench_plan import dl_bench_argv  # noqa: E402

HOST = os.environ.get("BENCH_HOST", "cpu1")
INVENTORY = ["-i", os.environ["BENCH_INVENTORY"]] if os.environ.get("BENCH_INVENTORY") else []
SETTINGS = {"image_size": int(os.environ.get("BENCH_IMAGE_SIZE", "64")), "batch": 16,
            "warmup": int(os.environ.get("BENCH_WARMUP", "8")), "steps": int(os.environ.get("BENCH_STEPS", "30"))}
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
OUT = ROOT / "reports" / "benchmark-overhead"
BIN = Path(sys.executable).parent


def ansible_shell(command: str) -> str:
    argv = [str(BIN / "ansible"), HOST, *INVENTORY, "-b", "-o", "-m", "ansible.builtin.shell", "-a", command]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"bench_benchmark: {HOST}: {command!r} failed:\n{run.stdout}{run.stderr}")
    return run.stdout.split("(stdout) ", 1)[-1].replace("\\n", "\n").strip()


def host_facts() -> tuple[str, dict]:
    envs = json.loads(ansible_shell("cat /etc/ansible/facts.d/dlcluster_envs.fact"))
    hardware = json.loads(ansible_shell("cat /etc/ansible/facts.d/dlcluster_hardware.fact"))
    env = next(e for e in envs["envs"] if e["name"] == "py3")
    return env["path"], hardware


def configs(hardware: dict) -> list[dict]:
    common = {"framework": "pytorch", "device": "cpu", "precision": "fp32", "gpus": 0, "onednn": "on",
              "batch": SETTINGS["batch"], "image_size": SETTINGS["image_size"], "warmup": SETTINGS["warmup"],
              "steps": SETTINGS["steps"], "threads": int(hardware["physical_cores"]),
              "interop": int(hardware["threads"]["DL_INTER_OP_THREADS"])}
    return [{**common, "mode": mode} for mode in ("train", "infer")]


def by_hand(env_path: str, config: dict) -> float:
    argv = " ".join(dl_bench_argv(config))
    out = ansible_shell(f"runuser -u ubuntu -- {env_path}/bin/python /usr/local/lib/dlcluster/dlbench.py {argv} 2>/dev/null")
    return json.loads(out.splitlines()[-1])["images_per_second"]


def through_playbook() -> dict:
    extra = {"group": HOST, "benchmark_frameworks": ["pytorch"], "benchmark_mixed_precision": "off",
             "benchmark_onednn_contrast": False, "benchmark_batch_cpu": SETTINGS["batch"],
             "benchmark_image_size": SETTINGS["image_size"], "benchmark_warmup_steps": SETTINGS["warmup"],
             "benchmark_steps": SETTINGS["steps"], "benchmark_network": False, "benchmark_allreduce": False,
             "benchmark_reports_dir": str(OUT / "playbook-reports")}
    before = set((OUT / "playbook-reports").glob("[!.]*.json"))
    run = subprocess.run([str(BIN / "ansible-playbook"), *INVENTORY, "playbooks/benchmark.yml", "-e", json.dumps(extra)],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit(f"bench_benchmark: the playbook failed:\n{run.stdout[-3000:]}{run.stderr}")
    report = sorted(set((OUT / "playbook-reports").glob("[!.]*.json")) - before)[-1]
    rows = json.loads(report.read_text())["resnet"]
    return {r["mode"]: r["images_per_second"] for r in rows if r.get("source") == "measured" and r["host"] == HOST}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    env_path, hardware = host_facts()
    plan = configs(hardware)
    start = time.time()
    hand = {c["mode"]: [] for c in plan}
    playbook = {c["mode"]: [] for c in plan}
    through_playbook()  # not counted: installs dlbench.py on the host and warms its caches
    for _ in range(ROUNDS):
        for config in plan:
            hand[config["mode"]].append(by_hand(env_path, config))
        for mode, value in through_playbook().items():
            playbook[mode].append(value)
    for config in plan:
        hand[config["mode"]].append(by_hand(env_path, config))
    rows = []
    for config in plan:
        mode = config["mode"]
        hand_median, playbook_median = statistics.median(hand[mode]), statistics.median(playbook[mode])
        rows.append({"mode": mode, "hand": hand[mode], "playbook": playbook[mode],
                     "hand_median": round(hand_median, 3), "playbook_median": round(playbook_median, 3),
                     "ratio": round(playbook_median / hand_median, 4),
                     "hand_spread": round((max(hand[mode]) - min(hand[mode])) / hand_median, 4)})
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result = {"host": HOST, "settings": SETTINGS, "rounds": ROUNDS, "threads": plan[0]["threads"],
              "interop": plan[0]["interop"], "rows": rows, "seconds": round(time.time() - start, 1),
              "goal": "playbook within 5 % of the hand runs"}
    lines = [f"# Benchmark of the benchmark {stamp}", "",
             f"Host {HOST}, ResNet-50 fp32, {SETTINGS['image_size']} px, batch {SETTINGS['batch']}, "
             f"{SETTINGS['warmup']} warm-up + {SETTINGS['steps']} measured steps, {plan[0]['threads']} threads; "
             f"{ROUNDS} interleaved rounds (hand, playbook, ..., hand).", "",
             "| mode | by hand (images/s) | playbook (images/s) | playbook ÷ hand (medians) | hand spread |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {', '.join(f'{v:.2f}' for v in r['hand'])} | "
              f"{', '.join(f'{v:.2f}' for v in r['playbook'])} | {r['ratio']:.3f} | {100 * r['hand_spread']:.1f} % |"
              for r in rows]
    (OUT / f"{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / f"{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nreports/benchmark-overhead/{stamp}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
