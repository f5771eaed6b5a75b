#!/usr/bin/env python3
"""The benchmark's report, written on the controller from the results the playbook collected.

    benchmark_report.py --input results.json --out-dir reports/benchmark [--fail-on-outlier]

playbooks/benchmark.yml runs it with the controller's Python (ansible_playbook_python). It writes
<out-dir>/<UTC time>.md, .json and .csv and the PNG plots <UTC time>-throughput.png (images/s by
host and configuration), -network.png (the bandwidth heatmap) and -allreduce.png (all-reduce
bandwidth by message size). Earlier reports are kept: when the name is taken, a suffix (-2, -3,
...) is added. It prints the ResNet-50 table and the paths at the end.

Exit status: 0; 2 on bad input (one sentence on stderr); 3 with --fail-on-outlier when a slow
host or a slow host's links were found (the report is written first).

The input (results.json):
    {"started": "<iso time>", "settings": {"image_size", "warmup", "steps", "share", ...},
     "hosts": {"<host>": {"edition", "gpu_model", "gpu_count", "cpu_variant", "physical_cores",
                          "versions": {...}, "resnet": [{framework, device, precision, mode, batch,
                          image_size, gpus, threads, onednn, images_per_second, ms_per_step,
                          ms_per_image, ok, error}]}},
     "network": {"links": [{a, b, gbit_per_s, latency_ms}], "pairs_total", "pairs_measured", "sampled"},
     "allreduce": {"ok", "backend", "world_size", "hosts", "rows": [{bytes, time_us, algbw_gbps,
                   busbw_gbps}]} or null}
A resnet row with ok false may carry only {"ok": false, "error"} (what dl_bench_json makes of a run
that printed no result): it is a table row with its error, never a figure. Optional per host:
"skipped" (sentences: runs the plan left out) and "cpu_quota" (a host slowed on purpose); optional
network key "hosts_unmeasured". Optional settings: "link_share" (default 0.5) and "min_class_size"
(default 3). The versions' bookkeeping keys (kind, ok, error, host) and hardware keys (cpu_model,
cpu_flags_bf16) are not versions: left out of the versions table and of the skew.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "filter_plugins"))
# The code the filters share: dlcluster.cluster's plugin_utils (as ansible.cfg's collections_path gives Ansible).
sys.path.insert(0, str(ROOT / "collections"))

# pylint: disable=wrong-import-position
from ansible.errors import AnsibleFilterError  # noqa: E402

from dl_benchmark import (  # noqa: E402
    dl_bench_busbw,
    dl_bench_hardware_class,
    dl_bench_link_outliers,
    dl_bench_outliers,
    dl_bench_version_skew,
    flatten_versions,
    VERSION_BOOKKEEPING,
)

EXIT_BAD_INPUT = 2
EXIT_OUTLIER = 3

SEED_LABEL = "seed reference (published, not measured here)"
SEED_SOURCE = ("seed document 001_a16a0f472ec4db0f.txt (Deep Learning on QingCloud AppCenter 用户指南), "
               "section 平台性能测试, table 青云深度学习平台性能测试表")
SEED_NOTE = (
    "Published by the seed platform for ResNet-50 on synthetic data with TensorFlow 1.7.0 "
    "(ROCm: 1.14.0) and tf_cnn_benchmarks; precision is not stated there. The seed's \"step time\" "
    "column is 1000 ÷ images/s, i.e. milliseconds per image, and is shown in the ms/image column; "
    "the seed gives no time per step. The table does not name the GPUs; the same document describes "
    "its GPU editions as NVIDIA Tesla P100 (CUDA) and AMD Radeon Pro WX9100 (ROCm 2.6.22). "
    "CPU (无优化) is the unoptimised build, CPU (MKL优化) the MKL-optimised one.")
# The seed's table as published (seed document 001_a16a0f472ec4db0f.txt, lines 479-496):
# (运行环境 environment, CPU, memory, GPUs, batch size, 项目 mode, images/s, "step time" in ms).
SEED_REFERENCE = (
    ("CUDA 9.1", "8 cores (default)", "32G", 1, 64, "train", 199.09, 5.02),
    ("CUDA 9.1", "8 cores (default)", "32G", 1, 64, "inference", 632.51, 1.58),
    ("CUDA 9.1", "8 cores (default)", "32G", 2, 64, "train", 382.38, 2.62),
    ("CUDA 9.1", "8 cores (default)", "32G", 2, 64, "inference", 1102.66, 0.91),
    ("CPU, unoptimised (无优化)", "8 cores (default)", "32G", 0, 32, "train", 1.91, 523.56),
    ("CPU, unoptimised (无优化)", "8 cores (default)", "32G", 0, 32, "inference", 8.36, 119.62),
    ("CPU, unoptimised (无优化)", "16 cores (default)", "32G", 0, 32, "train", 2.62, 381.68),
    ("CPU, unoptimised (无优化)", "16 cores (default)", "32G", 0, 32, "inference", 11.44, 87.41),
    ("CPU, MKL-optimised (MKL优化)", "8 cores (Broadwell)", "32G", 0, 32, "train", 12.55, 79.68),
    ("CPU, MKL-optimised (MKL优化)", "8 cores (Broadwell)", "32G", 0, 32, "inference", 37.78, 26.47),
    ("CPU, MKL-optimised (MKL优化)", "16 cores (Broadwell)", "32G", 0, 32, "train", 16.15, 61.92),
    ("CPU, MKL-optimised (MKL优化)", "16 cores (Broadwell)", "32G", 0, 32, "inference", 48.65, 20.55),
    ("ROCm 2.6.22", "8 cores (Haswell)", "40G", 1, 64, "train", 166.28, 6.01),
    ("ROCm 2.6.22", "8 cores (Haswell)", "40G", 1, 64, "inference", 544.22, 1.84),
    ("ROCm 2.6.22", "16 cores (Haswell)", "80G", 2, 64, "train", 209.07, 4.78),
    ("ROCm 2.6.22", "16 cores (Haswell)", "80G", 2, 64, "inference", 875.74, 1.14),
)

TABLE_HEADER = ("host", "class", "framework", "mode", "precision", "setup", "batch", "images/s", "ms/step",
                "ms/image")
CSV_FIELDS = ("source", "host", "class", "device_type", "config", "framework", "mode", "precision", "device",
              "gpus", "threads", "onednn", "batch", "image_size", "images_per_second", "ms_per_step",
              "ms_per_image", "ok", "error")
# What an ok run must carry; a failed run may be only {"ok": false, "error"} (dlbench.py crashed, or
# dl_bench_json found no result), and is shown with its error.
RESNET_REQUIRED = ("framework", "mode", "precision", "batch")
# dlbench.py's `versions` keys that are not versions: left out of the versions table and the skew.
NOT_VERSIONS = (*VERSION_BOOKKEEPING, "cpu_model", "cpu_flags_bf16")


class BadInput(Exception):
    """results.json is not what the playbook writes."""


# ---------------------------------------------------------------------------------------------
# Reading the input
# ---------------------------------------------------------------------------------------------

def load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise BadInput(f"cannot read {path}: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise BadInput(f"{path} is not JSON ({err})") from err
    if not isinstance(data, dict):
        raise BadInput(f"{path} must hold a JSON object with settings, hosts, network and allreduce")
    hosts = data.get("hosts")
    if not isinstance(hosts, dict) or not hosts:
        raise BadInput(f"{path} has no hosts: the benchmark's host group was empty or nothing was collected")
    for host, entry in hosts.items():
        if not isinstance(entry, dict):
            raise BadInput(f"hosts.{host} must be an object")
        resnet = entry.get("resnet", [])
        if not isinstance(resnet, list):
            raise BadInput(f"hosts.{host}.resnet must be a list")
        for i, row in enumerate(resnet):
            if not isinstance(row, dict):
                raise BadInput(f"hosts.{host}.resnet[{i}] must be an object")
            if "ok" not in row:
                raise BadInput(f"hosts.{host}.resnet[{i}] lacks ok (dlbench.py's result objects carry it)")
            missing = [key for key in RESNET_REQUIRED if key not in row]
            if row["ok"] and missing:
                raise BadInput(f"hosts.{host}.resnet[{i}] is ok but lacks {', '.join(missing)}")
            if row["ok"] and not _positive(row.get("images_per_second")):
                raise BadInput(f"hosts.{host}.resnet[{i}] is ok but has no positive images_per_second")
        if not isinstance(entry.get("versions") or {}, dict):
            raise BadInput(f"hosts.{host}.versions must be an object")
    network = data.get("network") or {}
    if not isinstance(network, dict) or not isinstance(network.get("links", []), list):
        raise BadInput("network must be an object whose links are a list")
    allreduce = data.get("allreduce")
    if allreduce is not None and (not isinstance(allreduce, dict)
                                  or not isinstance(allreduce.get("rows", []), list)):
        raise BadInput("allreduce must be null or an object whose rows are a list")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise BadInput("settings must be an object")
    return data


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def onednn_state(row: dict) -> str | None:
    """dlbench.py's onednn ("on"/"off", None when the framework's default was kept) as "on"/"off"/None."""
    value = row.get("onednn")
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return "off" if str(value).lower() in ("off", "0", "false") else "on"


def config_key(row: dict, index: int) -> str:
    """framework/mode/precision/device, then the GPU count on GPUs and onednn-off where oneDNN was off.
    A failed run that did not say what it ran is "unknown run <n>"."""
    if not row.get("framework"):
        return f"unknown run {index + 1}"
    parts = [str(row.get(k)) for k in ("framework", "mode", "precision")] + [str(row.get("device") or "cpu")]
    if row.get("gpus"):
        parts.append(f"{row['gpus']}gpu")
    if onednn_state(row) == "off":
        parts.append("onednn-off")
    return "/".join(parts)


def setup_text(row: dict) -> str:
    if not row.get("framework") and not row.get("device"):
        return "—"
    bits = [str(row.get("device") or "cpu")]
    if row.get("gpus"):
        bits.append(f"× {row['gpus']} GPU" + ("s" if row["gpus"] != 1 else ""))
    if row.get("threads"):
        bits.append(f"{row['threads']} threads")
    if onednn_state(row):
        bits.append(f"oneDNN {onednn_state(row)}")
    return ", ".join(bits)


def build_rows(data: dict) -> list[dict]:
    """One row per host and configuration, with class, device type and config key."""
    rows = []
    for host, entry in data["hosts"].items():
        try:
            hw = dl_bench_hardware_class(entry)
        except AnsibleFilterError as err:
            raise BadInput(f"hosts.{host}: {err}") from err
        keys = [config_key(r, i) for i, r in enumerate(entry.get("resnet", []))]
        for raw, key in zip(entry.get("resnet", []), keys):
            if keys.count(key) > 1:  # two runs differing only in threads or batch (e.g. default vs tuned)
                key = f"{key}/b{raw.get('batch')}/{raw.get('threads')}t"
            ok = bool(raw.get("ok"))
            ips = raw.get("images_per_second") if ok else None
            ms_image = raw.get("ms_per_image")
            if ok and ms_image is None:
                ms_image = 1000.0 / ips
            rows.append({
                "source": "measured", "host": host, "class": hw["class"], "device_type": hw["device_type"],
                "config": key, "framework": raw.get("framework"), "mode": raw.get("mode"),
                "precision": raw.get("precision"), "device": raw.get("device"), "gpus": raw.get("gpus"),
                "threads": raw.get("threads"), "onednn": onednn_state(raw), "batch": raw.get("batch"),
                "image_size": raw.get("image_size"), "images_per_second": ips,
                "ms_per_step": raw.get("ms_per_step") if ok else None, "ms_per_image": ms_image if ok else None,
                "ok": ok, "error": None if ok else str(raw.get("error") or "failed without a message"),
                "setup": setup_text(raw),
            })
    return rows


def seed_rows() -> list[dict]:
    rows = []
    for env, cpu, memory, gpus, batch, mode, ips, step_ms in SEED_REFERENCE:
        setup = f"{cpu}, {memory}" + (f", {gpus} GPU" + ("s" if gpus > 1 else "") if gpus else "")
        framework = "TensorFlow 1.14.0" if env.startswith("ROCm") else "TensorFlow 1.7.0"
        rows.append({"source": SEED_LABEL, "host": SEED_LABEL, "class": env, "framework": framework,
                     "mode": mode, "precision": "not stated", "setup": setup, "gpus": gpus, "batch": batch,
                     "images_per_second": ips, "ms_per_step": None, "ms_per_image": step_ms, "ok": True,
                     "error": None})
    return rows


def allreduce_rows(allreduce: dict | None) -> list[dict]:
    """The all-reduce rows, with algbw from bytes/time and busbw from algbw where the input lacks them."""
    if not allreduce:
        return []
    world = allreduce.get("world_size") or len(allreduce.get("hosts") or []) or 1
    rows = []
    for i, raw in enumerate(allreduce.get("rows") or []):
        if not isinstance(raw, dict) or "bytes" not in raw:
            raise BadInput(f"allreduce.rows[{i}] must be an object with bytes, time_us, algbw_gbps and busbw_gbps")
        algbw = raw.get("algbw_gbps")
        if algbw is None and _positive(raw.get("time_us")):
            algbw = raw["bytes"] / raw["time_us"] / 1e3  # bytes per µs / 1e3 = GB/s
        busbw = raw.get("busbw_gbps")
        if busbw is None and algbw is not None:
            try:
                busbw = dl_bench_busbw(algbw, world)
            except AnsibleFilterError as err:
                raise BadInput(f"allreduce.rows[{i}]: {err}") from err
        rows.append({"bytes": raw["bytes"], "time_us": raw.get("time_us"), "algbw_gbps": algbw, "busbw_gbps": busbw})
    return rows


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def md_table(header, lines) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in line) + " |" for line in lines]
    return out


def resnet_table(rows: list[dict], seeds: list[dict]) -> list[str]:
    lines = []
    for r in rows + seeds:
        if r["ok"]:
            figures = [fmt(r["images_per_second"]), fmt(r["ms_per_step"]), fmt(r["ms_per_image"])]
        else:
            figures = [f"failed: {r['error']}", "—", "—"]
        host = f"*{r['host']}*" if r["source"] != "measured" else r["host"]
        lines.append([host, r["class"], fmt(r["framework"]), fmt(r["mode"]), fmt(r["precision"]), r["setup"],
                      fmt(r["batch"]),
                      *figures])
    return md_table(TABLE_HEADER, lines)


def human_bytes(n) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} B"


def unique_stem(out_dir: Path, stamp: str) -> str:
    """The first of <stamp>, <stamp>-2, ... with none of the report's files present."""
    suffixes = (".md", ".json", ".csv", "-throughput.png", "-network.png", "-allreduce.png")
    n = 1
    while True:
        stem = stamp if n == 1 else f"{stamp}-{n}"
        if not any((out_dir / f"{stem}{s}").exists() for s in suffixes):
            return stem
        n += 1


def host_order(data: dict) -> list[str]:
    hosts = list(data["hosts"])
    for link in (data.get("network") or {}).get("links") or []:
        for h in (link.get("a"), link.get("b")):
            if h not in hosts:
                hosts.append(h)
    return hosts


def plot_all(out_dir: Path, stem: str, data: dict, rows: list[dict], ar_rows: list[dict]) -> tuple[dict, list]:
    """The PNG plots; returns ({kind: file name}, [sentences on plots not drawn])."""
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
        import numpy as np  # pylint: disable=import-outside-toplevel
    except ImportError:
        return {}, ["matplotlib is not installed in the controller's Python: no plots were drawn."]
    files, skipped = {}, []

    ok_rows = [r for r in rows if r["ok"]]
    if ok_rows:
        hosts = list(dict.fromkeys(r["host"] for r in rows))
        configs = list(dict.fromkeys(r["config"] for r in rows))
        value = {(r["host"], r["config"]): r["images_per_second"] for r in ok_rows}
        width = 0.8 / len(configs)
        fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + len(hosts) * (0.4 + 0.25 * len(configs))), 4.5))
        x = np.arange(len(hosts))
        for i, config in enumerate(configs):
            heights = [value.get((h, config), math.nan) for h in hosts]
            ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=config)
        figures = list(value.values())
        if max(figures) / max(min(figures), 1e-9) > 50:
            ax.set_yscale("log")
        failed = {(r["host"], r["config"]) for r in rows if not r["ok"]}
        for i, config in enumerate(configs):
            for j, h in enumerate(hosts):
                if (h, config) in failed:
                    ax.annotate("failed", (j - 0.4 + width * (i + 0.5), 0), rotation=90, ha="center",
                                va="bottom", fontsize=7, color="red", xycoords=("data", "axes fraction"))
        ax.set_xticks(x)
        ax.set_xticklabels(hosts, rotation=30, ha="right")
        ax.set_ylabel("images/s")
        ax.set_title("ResNet-50 images/s by host and configuration")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        files["throughput"] = f"{stem}-throughput.png"
        fig.savefig(out_dir / files["throughput"], dpi=100)
        plt.close(fig)
    else:
        skipped.append("No ResNet-50 run succeeded: no throughput plot.")

    links = [lk for lk in (data.get("network") or {}).get("links") or [] if lk.get("gbit_per_s") is not None]
    if links:
        hosts = host_order(data)
        pos = {h: i for i, h in enumerate(hosts)}
        grid = np.full((len(hosts), len(hosts)), np.nan)
        for lk in links:
            grid[pos[lk["a"]], pos[lk["b"]]] = grid[pos[lk["b"]], pos[lk["a"]]] = lk["gbit_per_s"]
        size = max(4.0, 1.5 + 0.5 * len(hosts))
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
        cmap = plt.get_cmap("viridis").with_extremes(bad="white")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap)
        middle = (np.nanmin(grid) + np.nanmax(grid)) / 2
        fig.colorbar(image, ax=ax, label="Gbit/s")
        if len(hosts) <= 16:
            for i in range(len(hosts)):
                for j in range(len(hosts)):
                    if not np.isnan(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                                color="black" if grid[i, j] > middle else "white")
        ax.set_xticks(range(len(hosts)))
        ax.set_yticks(range(len(hosts)))
        ax.set_xticklabels(hosts, rotation=45, ha="right")
        ax.set_yticklabels(hosts)
        net = data.get("network") or {}
        ax.set_title(f"iperf3 bandwidth (blank: not measured; {net.get('pairs_measured', len(links))} of "
                     f"{net.get('pairs_total', '?')} pairs)", fontsize=9)
        fig.tight_layout()
        files["network"] = f"{stem}-network.png"
        fig.savefig(out_dir / files["network"], dpi=100)
        plt.close(fig)
    else:
        skipped.append("No host pair was measured: no network heatmap.")

    points = [r for r in ar_rows if r["bytes"] and (r["algbw_gbps"] is not None or r["busbw_gbps"] is not None)]
    if points:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        xs = [r["bytes"] for r in points]
        ax.plot(xs, [r["busbw_gbps"] for r in points], marker="o", label="bus bandwidth")
        ax.plot(xs, [r["algbw_gbps"] for r in points], marker="s", label="algorithm bandwidth")
        ax.set_xscale("log", base=2)
        if len(xs) <= 12:
            ax.set_xticks(xs)
            ax.set_xticklabels([human_bytes(x) for x in xs], rotation=30, ha="right")
            ax.minorticks_off()
        ax.set_xlabel("message size (bytes)")
        ax.set_ylabel("GB/s")
        allreduce = data.get("allreduce") or {}
        ax.set_title(f"all-reduce ({allreduce.get('backend', '?')}, {allreduce.get('world_size', '?')} ranks)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        files["allreduce"] = f"{stem}-allreduce.png"
        fig.savefig(out_dir / files["allreduce"], dpi=100)
        plt.close(fig)
    else:
        skipped.append("The all-reduce step gave no figures: no all-reduce plot.")
    return files, skipped


def write_markdown(stem: str, data: dict, rows: list[dict], seeds: list[dict], ar_rows: list[dict],
                   analysis: dict, files: dict, skipped: list) -> str:
    settings = data.get("settings") or {}
    network = data.get("network") or {}
    out = [f"# Cluster benchmark {stem}", ""]
    out.append(f"Started {data.get('started', 'at an unknown time')}; {len(data['hosts'])} host(s). Settings: "
               + ", ".join(f"{k} {v}" for k, v in settings.items()) + ".")
    out += ["", "## ResNet-50", ""]
    out.append("Synthetic data; images/s over the measured steps (warm-up excluded), all of a run's GPUs together. "
               "ms/step is the mean time of one step (the batch on each GPU); ms/image is 1000 ÷ images/s. "
               "A failed run shows its error instead of figures.")
    out += [""] + resnet_table(rows, seeds) + [""]
    for host, entry in data["hosts"].items():
        for reason in entry.get("skipped") or []:
            out.append(f"- {host}: not run: {reason}.")
        if entry.get("cpu_quota"):
            out.append(f"- {host} ran under a CPU quota of {entry['cpu_quota']} (benchmark_cpu_quota): "
                       "slowed on purpose.")
    if out[-1].startswith("- "):
        out.append("")
    out.append(f"Rows in italics are the {SEED_LABEL}: {SEED_NOTE} Source: {SEED_SOURCE}.")

    out += ["", "## Network", ""]
    links = network.get("links") or []
    total = network.get("pairs_total", len(links))
    measured = network.get("pairs_measured", len(links))
    out.append(f"iperf3 between host pairs, in parallel rounds of disjoint pairs: {measured} of {total} pairs "
               f"measured" + (" (a sample: above the configured host count not every pair is measured)."
                              if network.get("sampled") else "."))
    if network.get("hosts_unmeasured"):
        out.append(f"Hosts in no measured pair: {', '.join(map(str, network['hosts_unmeasured']))}.")
    if links:
        out += [""] + md_table(("host a", "host b", "Gbit/s", "latency (ms)"),
                               [[lk.get("a"), lk.get("b"), fmt(lk.get("gbit_per_s")) if lk.get("gbit_per_s")
                                 is not None else f"failed: {lk.get('error') or 'no figure'}",
                                 fmt(lk.get("latency_ms"), 3)] for lk in links])

    out += ["", "## All-reduce", ""]
    allreduce = data.get("allreduce")
    if not allreduce:
        out.append("Not run.")
    else:
        out.append(f"torch.distributed all_reduce, backend {allreduce.get('backend', '?')}, world size "
                   f"{allreduce.get('world_size', '?')} ({', '.join(map(str, allreduce.get('hosts') or []))}). "
                   "algbw = bytes / time; busbw = algbw × 2(n−1)/n as nccl-tests define it "
                   "(NVIDIA/nccl-tests doc/PERFORMANCE.md).")
        if not allreduce.get("ok", True):
            out.append(f"The all-reduce step failed: {allreduce.get('error') or 'no message'}.")
        if ar_rows:
            out += [""] + md_table(("bytes", "size", "time (µs)", "algbw (GB/s)", "busbw (GB/s)"),
                                   [[r["bytes"], human_bytes(r["bytes"]), fmt(r["time_us"], 1),
                                     fmt(r["algbw_gbps"], 3), fmt(r["busbw_gbps"], 3)] for r in ar_rows])

    out += ["", "## Slow hosts", ""]
    slow, links_slow = analysis["outliers"], analysis["link_outliers"]
    out.append(slow["rule"])
    out.append("")
    if slow["outliers"]:
        out += md_table(("host", "configuration", "images/s", "median", "below median", "compared with"),
                        [[o["host"], o["config"], fmt(o["images_per_second"]), fmt(o["median"]),
                          f"{o['share_below']:.0%}", o["basis"]] for o in slow["outliers"]])
    else:
        out.append("No host is slower than that.")
    if slow["notes"]:
        out += [""] + [f"- {note}" for note in slow["notes"]]
    out += ["", links_slow["rule"], ""]
    if links_slow["outliers"]:
        out += md_table(("host", "median Gbit/s", "all hosts' median", "below median", "links"),
                        [[o["host"], fmt(o["gbit_per_s"]), fmt(o["median"]), f"{o['share_below']:.0%}", o["links"]]
                         for o in links_slow["outliers"]])
    elif links_slow["median"] is None:
        out.append("No link was measured.")
    else:
        out.append("No host's links are that far below the others'.")

    out += ["", "## Versions", ""]
    skew = analysis["version_skew"]
    flat = {h: flatten_versions(e.get("versions") or {}) for h, e in data["hosts"].items()}
    for host, versions in flat.items():
        if versions.get("ok") is False:
            out.append(f"- {host}: the versions could not be read: {versions.get('error') or 'no message'}.")
    if out[-1].startswith("- "):
        out.append("")
    keys = sorted({k for v in flat.values() for k in v if k not in NOT_VERSIONS})
    if keys:
        header = ["host"] + [f"{k} (differs)" if k in skew else k for k in keys]
        out += md_table(header, [[h] + [fmt(flat[h].get(k)) if k not in skew or flat[h].get(k) is None
                                        else f"**{flat[h][k]}**" for k in keys] for h in flat])
        out.append("")
        if skew:
            out.append("Differences (a key a host does not report is not a difference):")
            out += [""] + md_table(("version", "value", "hosts"),
                                   [[k, v, ", ".join(hs)] for k, vals in skew.items() for v, hs in vals.items()])
        else:
            out.append("Every host reports the same versions (a key a host does not report is not a difference).")
    else:
        out.append("No host reported versions.")

    out += ["", "## Plots", ""]
    out += [f"- {kind}: `{name}`" for kind, name in files.items()]
    out += [f"- {sentence}" for sentence in skipped]
    return "\n".join(out) + "\n"


def write_csv(path: Path, rows: list[dict], seeds: list[dict]) -> None:
    with path.open("x", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows + seeds:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})


def analyse(data: dict, rows: list[dict]) -> dict:
    settings = data.get("settings") or {}
    try:
        outliers = dl_bench_outliers(
            [{k: r[k] for k in ("host", "class", "device_type", "config", "images_per_second")} for r in rows],
            share=settings.get("share", 0.2), min_class_size=settings.get("min_class_size", 3))
        links = dl_bench_link_outliers((data.get("network") or {}).get("links") or [],
                                       share=settings.get("link_share", 0.5))
        skew = dl_bench_version_skew({h: e.get("versions") or {} for h, e in data["hosts"].items()},
                                     ignore=NOT_VERSIONS)
    except AnsibleFilterError as err:
        raise BadInput(str(err)) from err
    return {"outliers": outliers, "link_outliers": links, "version_skew": skew}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--input", required=True, type=Path, help="results.json collected by the playbook")
    parser.add_argument("--out-dir", required=True, type=Path, help="where the report is written (kept)")
    parser.add_argument("--fail-on-outlier", action="store_true",
                        help="exit 3 (after writing the report) when a slow host is found")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # the seed rows' Chinese on a non-UTF-8 terminal
    try:
        data = load(args.input)
        rows = build_rows(data)
        ar_rows = allreduce_rows(data.get("allreduce"))
        analysis = analyse(data, rows)
    except BadInput as err:
        print(f"benchmark_report: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    seeds = seed_rows()

    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = unique_stem(args.out_dir, datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    files, skipped = plot_all(args.out_dir, stem, data, rows, ar_rows)
    markdown = write_markdown(stem, data, rows, seeds, ar_rows, analysis, files, skipped)
    md_path, json_path, csv_path = (args.out_dir / f"{stem}{s}" for s in (".md", ".json", ".csv"))
    with md_path.open("x", encoding="utf-8") as handle:
        handle.write(markdown)
    write_csv(csv_path, rows, seeds)
    report = {"stem": stem, "started": data.get("started"), "settings": data.get("settings") or {},
              "resnet": rows, "seed_reference": {"label": SEED_LABEL, "source": SEED_SOURCE, "note": SEED_NOTE,
                                                 "rows": seeds},
              "network": data.get("network"), "allreduce": {**(data.get("allreduce") or {}), "rows": ar_rows}
              if data.get("allreduce") else None, **analysis,
              "versions": {h: e.get("versions") or {} for h, e in data["hosts"].items()},
              "plots": files, "plots_not_drawn": skipped}
    with json_path.open("x", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, ensure_ascii=False)
        handle.write("\n")

    print("\n".join(resnet_table(rows, seeds)))
    named = sorted({o["host"] for o in analysis["outliers"]["outliers"]}
                   | {o["host"] for o in analysis["link_outliers"]["outliers"]})
    if named:
        print(f"\nSlow hosts: {', '.join(named)} (see the report's Slow hosts section).")
    print(f"\nReport: {md_path}\nData: {json_path}\nCSV: {csv_path}")
    for kind, name in files.items():
        print(f"Plot ({kind}): {args.out_dir / name}")
    for sentence in skipped:
        print(sentence)
    if args.fail_on_outlier and named:
        print(f"benchmark_report: slow host(s) {', '.join(named)} and --fail-on-outlier is set", file=sys.stderr)
        return EXIT_OUTLIER
    return 0


if __name__ == "__main__":
    sys.exit(main())
