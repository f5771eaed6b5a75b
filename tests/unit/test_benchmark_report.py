"""scripts/benchmark_report.py, run the way the playbook runs it, on a results.json built here."""

import copy
import csv
import json
import re
import subprocess
import sys
from itertools import combinations

import pytest

from conftest import ROOT, load_script

SCRIPT = ROOT / "scripts" / "benchmark_report.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEED_LABEL = "seed reference (published, not measured here)"


def resnet(ips, mode="train", precision="fp32", device="cpu", gpus=0, batch=32, onednn="on", ok=True, error=None):
    """A result object as dlbench.py's `resnet` prints it (the keys the report reads)."""
    row = {"kind": "resnet", "framework": "pytorch", "device": device, "precision": precision, "mode": mode,
           "batch": batch, "image_size": 64, "gpus": gpus, "threads": None if gpus else 8,
           "onednn": None if gpus else onednn, "ok": ok, "error": error, "images_per_second": None,
           "ms_per_step": None, "ms_per_image": None}
    if ok:
        per_step = batch * max(gpus, 1)
        row.update(images_per_second=ips, ms_per_step=1000.0 * per_step / ips, ms_per_image=1000.0 / ips)
    return row


def cpu_host(speed, cores=8, torch="2.5.1+cpu"):
    return {"edition": "cpu", "gpu_model": None, "gpu_count": 0, "cpu_variant": "avx512", "physical_cores": cores,
            "versions": {"kind": "versions", "ok": True, "host": f"container-{cores}-{speed}", "python": "3.11.2",
                         "torch": torch, "nvidia_driver": None, "cpu_model": f"Xeon {cores}", "cpu_flags_bf16": True},
            "resnet": [resnet(20 * speed), resnet(60 * speed, mode="infer"),
                       resnet(8 * speed, onednn="off"), resnet(30 * speed, precision="bf16")]}


def results(slow=1.0):
    hosts = {"cpu1": cpu_host(1.0), "cpu2": cpu_host(1.02), "cpu3": cpu_host(slow), "big1": cpu_host(1.9, cores=16),
             "gpu1": {"edition": "nvidia", "gpu_model": "NVIDIA H200", "gpu_count": 2, "cpu_variant": "avx512",
                      "physical_cores": 16,
                      "versions": {"python": "3.11.2", "torch": "2.5.1+cu124", "nvidia_driver": "550.54",
                                   "cuda": "12.4"},
                      "resnet": [resnet(2500.0, device="cuda", gpus=1, batch=64),
                                 resnet(4900.0, device="cuda", gpus=2, batch=64),
                                 resnet(None, device="cuda", gpus=1, batch=64, precision="bf16", ok=False,
                                        error="CUDA out of memory | tried to allocate 2 GiB"),
                                 # What dl_bench_json makes of a run that printed no result.
                                 {"ok": False, "error": "no result (exit status 137): Killed"}]}}
    hosts["cpu3"]["cpu_quota"] = "50%" if slow < 1 else ""
    hosts["cpu1"]["skipped"] = ["keras: the environment has no tensorflow"]
    links = [{"a": a, "b": b, "gbit_per_s": 9.4, "latency_ms": 0.12}
             for a, b in combinations(["cpu1", "cpu2", "cpu3", "big1"], 2) if (a, b) != ("cpu2", "big1")]
    sizes = [1024 * 4 ** i for i in range(9)]  # 1 KiB .. 64 MiB
    return {"started": "2026-12-01T12:00:00Z",
            "settings": {"image_size": 64, "warmup": 2, "steps": 3, "share": 0.2},
            "hosts": hosts,
            "network": {"links": links, "pairs_total": 6, "pairs_measured": len(links), "sampled": True},
            "allreduce": {"ok": True, "backend": "gloo", "world_size": 4, "hosts": ["cpu1", "cpu2", "cpu3", "big1"],
                          "rows": [{"bytes": s, "time_us": 50 + s / 500.0, "algbw_gbps": s / (50 + s / 500.0) / 1e3,
                                    "busbw_gbps": s / (50 + s / 500.0) / 1e3 * 1.5} for s in sizes]}}


def run(tmp_path, data, *extra, name="results.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    out = tmp_path / "reports" / "benchmark"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--input", str(path), "--out-dir", str(out), *extra],
                          capture_output=True, text=True, check=False)
    return proc, out


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    proc, out = run(tmp, results())
    assert proc.returncode == 0, proc.stderr
    md = next(out.glob("*.md"))
    return {"proc": proc, "out": out, "stem": md.stem, "md": md.read_text(encoding="utf-8"), "tmp": tmp}


def test_writes_markdown_json_csv_and_real_pngs(report):
    out, stem = report["out"], report["stem"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{stem}.md", f"{stem}.json", f"{stem}.csv", f"{stem}-throughput.png", f"{stem}-network.png",
         f"{stem}-allreduce.png"])
    for kind in ("throughput", "network", "allreduce"):
        data = (out / f"{stem}-{kind}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, kind
        assert f"`{stem}-{kind}.png`" in report["md"]
    saved = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
    assert saved["plots"] == {k: f"{stem}-{k}.png" for k in ("throughput", "network", "allreduce")}
    assert len(saved["resnet"]) == 4 * 4 + 4 and saved["outliers"]["outliers"] == []
    assert saved["version_skew"]["torch"] == {"2.5.1+cpu": ["big1", "cpu1", "cpu2", "cpu3"],
                                              "2.5.1+cu124": ["gpu1"]}


def test_markdown_sections_and_table(report):
    md = report["md"]
    for heading in ("## ResNet-50", "## Network", "## All-reduce", "## Slow hosts", "## Versions", "## Plots"):
        assert heading in md
    assert "| host | class | framework | mode | precision | setup | batch | images/s | ms/step | ms/image |" in md
    assert "| cpu1 | cpu:avx512:8c | pytorch | train | fp32 | cpu, 8 threads, oneDNN on | 32 | 20.00 | 1,600.00 | 50.00 |" \
        in md
    assert "| cpu1 | cpu:avx512:8c | pytorch | train | fp32 | cpu, 8 threads, oneDNN off | 32 | 8.00 |" in md
    assert "| gpu1 | gpu:NVIDIA H200 | pytorch | train | fp32 | cuda, × 2 GPUs | 64 | 4,900.00 |" in md
    assert "5 of 6 pairs measured (a sample" in md
    assert "| 67108864 | 64 MiB |" in md and "busbw = algbw × 2(n−1)/n" in md
    assert "fewer than 3" in md  # the rule in words, and the fallback for big1's class of one
    assert "Class cpu:avx512:16c has 1 host(s)" in md
    assert "gpu1 is the only nvidia host" in md
    assert "- cpu1: not run: keras: the environment has no tensorflow." in md and "CPU quota" not in md
    assert "torch (differs)" in md and "cpu_model" not in md and "container-" not in md  # not versions
    assert "| torch | 2.5.1+cpu | big1, cpu1, cpu2, cpu3 |" in md and "| torch | 2.5.1+cu124 | gpu1 |" in md


def test_seed_rows_are_labelled_with_ms_per_image(report):
    md = report["md"]
    seed_lines = [line for line in md.splitlines() if line.startswith(f"| *{SEED_LABEL}*")]
    assert len(seed_lines) == 16
    # CUDA 9.1, 1 GPU, batch 64, training: 199.09 images/s, "step time" 5.02 ms = 1000 / 199.09 per image.
    assert "| CUDA 9.1 | TensorFlow 1.7.0 | train | not stated | 8 cores (default), 32G, 1 GPU | 64 | 199.09 | — | 5.02 |" in seed_lines[0]
    assert any("| ROCm 2.6.22 | TensorFlow 1.14.0 | inference |" in line and "| 875.74 | — | 1.14 |" in line
               for line in seed_lines)
    assert any("| 12.55 | — | 79.68 |" in line and "MKL" in line for line in seed_lines)
    assert "milliseconds per image" in md and "001_a16a0f472ec4db0f.txt" in md
    rows = list(csv.DictReader((report["out"] / f"{report['stem']}.csv").open(encoding="utf-8")))
    assert sum(r["source"] == SEED_LABEL for r in rows) == 16
    assert sum(r["source"] == "measured" for r in rows) == 20


def test_failed_rows_show_their_error_not_zero(report):
    md = report["md"]
    line = next(line for line in md.splitlines() if line.startswith("| gpu1 |") and "| bf16 |" in line)
    assert "failed: CUDA out of memory \\| tried to allocate 2 GiB | — | — |" in line
    failed = [r for r in csv.DictReader((report["out"] / f"{report['stem']}.csv").open(encoding="utf-8"))
              if r["ok"] == "False"]
    assert len(failed) == 2 and failed[0]["images_per_second"] == "" and "out of memory" in failed[0]["error"]
    # A run that said nothing about itself is still a row, with its error.
    assert "| gpu1 | gpu:NVIDIA H200 | — | — | — | — | — | failed: no result (exit status 137): Killed | — | — |" in md
    assert failed[1]["config"] == "unknown run 4"


def test_prints_the_table_and_the_paths(report):
    stdout, out, stem = report["proc"].stdout, report["out"], report["stem"]
    assert "| host | class | framework |" in stdout and SEED_LABEL in stdout
    assert f"Report: {out / (stem + '.md')}" in stdout
    assert f"Plot (network): {out / (stem + '-network.png')}" in stdout


def test_a_taken_name_gets_a_suffix(tmp_path):
    module = load_script("benchmark_report", SCRIPT)
    assert module.unique_stem(tmp_path, "20260101T000000Z") == "20260101T000000Z"
    (tmp_path / "20260101T000000Z-network.png").write_bytes(b"")
    assert module.unique_stem(tmp_path, "20260101T000000Z") == "20260101T000000Z-2"
    (tmp_path / "20260101T000000Z-2.md").write_text("")
    assert module.unique_stem(tmp_path, "20260101T000000Z") == "20260101T000000Z-3"


def test_fail_on_outlier_names_the_slowed_host_exits_3_and_a_second_run_keeps_the_first_report(tmp_path):
    data = results(slow=0.5)
    proc, out = run(tmp_path, data, "--fail-on-outlier")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cpu3" in proc.stderr and "Slow hosts: cpu3" in proc.stdout
    first = next(out.glob("*.md"))  # written before failing
    md = first.read_text(encoding="utf-8")
    assert "| cpu3 | pytorch/train/fp32/cpu | 10.00 | 20.00 | 50% | class cpu:avx512:8c (3 hosts) |" in md
    assert "- cpu3 ran under a CPU quota of 50% (benchmark_cpu_quota): slowed on purpose." in md
    assert "| cpu3 | pytorch/train/fp32/cpu/onednn-off | 4.00 | 8.00 | 50% |" in md
    # Without the flag the same results exit 0, still name the host, and the first report stays as it was.
    proc, _ = run(tmp_path, data)
    assert proc.returncode == 0 and "Slow hosts: cpu3" in proc.stdout
    assert len(list(out.glob("*.md"))) == 2 and first.read_text(encoding="utf-8") == md
    assert len(list(out.glob("*.png"))) == 6 and len(list(out.glob("*.json"))) == len(list(out.glob("*.csv"))) == 2


def test_slow_links_are_named(tmp_path):
    data = results()
    for link in data["network"]["links"]:
        if "cpu3" in (link["a"], link["b"]):
            link["gbit_per_s"] = 0.9
    proc, out = run(tmp_path, data, "--fail-on-outlier")
    assert proc.returncode == 3 and "cpu3" in proc.stderr
    assert "| cpu3 | 0.90 | 5.15 | 83% | 3 |" in next(out.glob("*.md")).read_text(encoding="utf-8")


def test_without_network_or_allreduce_plots_are_left_out_and_said(tmp_path):
    data = copy.deepcopy(results())
    data["network"] = {"links": [], "pairs_total": 0, "pairs_measured": 0, "sampled": False}
    data["allreduce"] = None
    proc, out = run(tmp_path, data)
    assert proc.returncode == 0, proc.stderr
    assert [p.name.split("-", 1)[1] for p in out.glob("*.png")] == ["throughput.png"]
    md = next(out.glob("*.md")).read_text(encoding="utf-8")
    assert "No host pair was measured: no network heatmap." in md and "## All-reduce\n\nNot run." in md


@pytest.mark.parametrize("mutate,why", [
    (lambda d: d.update(hosts={}), "has no hosts: the benchmark's host group was empty"),
    (lambda d: d["hosts"]["cpu1"]["resnet"][0].pop("mode"), r"hosts.cpu1.resnet\[0\] is ok but lacks mode"),
    (lambda d: d["hosts"]["cpu1"]["resnet"][0].pop("ok"), r"hosts.cpu1.resnet\[0\] lacks ok"),
    (lambda d: d["hosts"]["cpu1"]["resnet"][0].update(images_per_second=0),
     r"hosts.cpu1.resnet\[0\] is ok but has no positive images_per_second"),
    (lambda d: d["hosts"]["gpu1"].update(gpu_model=None), "hosts.gpu1: dl_bench_hardware_class: .*needs its gpu_model"),
    (lambda d: d["settings"].update(share=5), "dl_bench_outliers: share must lie between 0 and 1"),
])
def test_bad_input_is_one_clear_sentence(tmp_path, mutate, why):
    data = results()
    mutate(data)
    proc, out = run(tmp_path, data)
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.startswith("benchmark_report: ") and proc.stderr.count("\n") == 1
    assert re.search(why, proc.stderr), proc.stderr


def test_unreadable_input(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{not json")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--input", str(path), "--out-dir", str(tmp_path / "o")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "is not JSON" in proc.stderr
