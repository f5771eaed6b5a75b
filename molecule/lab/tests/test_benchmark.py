"""playbooks/benchmark.yml on the lab's workers: the ResNet-50 table for every host, the network matrix, all-reduce
across the workers, a deliberately slowed host named, the report and its plots; bad settings refused before anything
runs.

One run in CI's reduced setting (32-pixel images, batches of 4, 2 warm-up and 2 measured steps, both hosts at once: on CI's two
cores that halves the fixture's time, and cpu2 stays the slow one): cpu2 runs under a 50 % CPU quota and
benchmark_fail_on_outlier is set, so the run must fail after writing its report. Two hosts
of one class: the report says they are compared with the median of all CPU hosts of the run."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import ROOT, run_playbook  # noqa: E402

testinfra_hosts = ["ansible://head"]

REPORTS = ROOT / "reports" / "benchmark"
HOSTS = {"cpu1", "cpu2"}
CI_SETTINGS = {"group": "workers", "benchmark_image_size": 32, "benchmark_batch_cpu": 4, "benchmark_warmup_steps": 2,
               "benchmark_steps": 2, "benchmark_serial": "100%", "benchmark_network_seconds": 1,
               "benchmark_allreduce_max_bytes": 1048576, "benchmark_allreduce_iters": 3}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def benchmark_run():
    before = set(REPORTS.glob("[!.]*.json")) if REPORTS.exists() else set()
    extra = {**CI_SETTINGS, "benchmark_fail_on_outlier": True,
             # Extra vars are rendered per host: only cpu2 runs under the quota.
             "benchmark_cpu_quota": "{{ '50%' if inventory_hostname == 'cpu2' else '' }}"}
    run = run_playbook("playbooks/benchmark.yml", "-e", json.dumps(extra))
    new = sorted(set(REPORTS.glob("[!.]*.json")) - before)
    return run, new


def test_the_slowed_host_fails_the_run_after_the_report_is_written(benchmark_run):
    run, new = benchmark_run
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert "Slow hosts found and benchmark_fail_on_outlier is set" in output, output[-3000:]
    assert len(new) == 1, f"expected one new report, found {new}"


def report(benchmark_run):
    return json.loads(benchmark_run[1][0].read_text())


def test_every_host_and_configuration_has_a_figure(benchmark_run):
    rows = [r for r in report(benchmark_run)["resnet"] if r["source"] == "measured"]
    assert {r["host"] for r in rows} == HOSTS
    for name in HOSTS:
        mine = [r for r in rows if r["host"] == name]
        # The lab's CPU has AVX512_BF16: fp32 and bf16, training and inference, and the oneDNN-off row.
        assert {r["config"] for r in mine} == {
            "pytorch/train/fp32/cpu", "pytorch/train/bf16/cpu", "pytorch/infer/fp32/cpu", "pytorch/infer/bf16/cpu",
            "pytorch/infer/fp32/cpu/onednn-off"}, (name, mine)
        for row in mine:
            assert row["ok"] and row["images_per_second"] > 0 and row["ms_per_step"] > 0, row


def test_the_slowed_host_is_the_only_outlier(benchmark_run):
    outliers = report(benchmark_run)["outliers"]
    assert {o["host"] for o in outliers["outliers"]} == {"cpu2"}, outliers
    assert all("fewer than 3" in o["basis"] for o in outliers["outliers"]), outliers


def test_network_matrix_and_all_reduce_across_the_workers(benchmark_run):
    data = report(benchmark_run)
    links = data["network"]["links"]
    assert [(link["a"], link["b"]) for link in links] == [("cpu1", "cpu2")], links
    assert links[0]["gbit_per_s"] > 0 and links[0]["latency_ms"] > 0, links
    allreduce = data["allreduce"]
    assert allreduce["ok"] and allreduce["world_size"] == 2 and set(allreduce["hosts"]) == HOSTS, allreduce
    assert allreduce["rows"][0]["bytes"] == 1024 and allreduce["rows"][-1]["bytes"] == 1048576
    assert all(row["busbw_gbps"] > 0 for row in allreduce["rows"]), allreduce["rows"]


def test_report_files_and_plots(benchmark_run):
    data = report(benchmark_run)
    stem = benchmark_run[1][0].with_suffix("")
    markdown = stem.with_suffix(".md").read_text()
    assert stem.with_suffix(".csv").exists() and "| cpu2 |" in markdown and "seed reference" in markdown
    assert set(data["plots"]) == {"throughput", "network", "allreduce"}, data.get("plots_not_drawn")
    for name in data["plots"].values():
        plot = REPORTS / name
        assert plot.read_bytes()[:8] == PNG and plot.stat().st_size > 5000, plot


@pytest.mark.parametrize("extra,message", [
    ({"benchmark_model": "vgg16"}, "benchmark_model is 'vgg16'; the benchmark knows resnet50."),
    ({"benchmark_batch_cpu": 0}, "benchmark_batch_cpu is 0; it must be a whole number of at least 1."),
    ({"group": "no_such_group"}, "benchmark_group 'no_such_group' matches no host"),
])
def test_bad_settings_are_refused_before_anything_runs(extra, message):
    before = sorted(REPORTS.glob("*")) if REPORTS.exists() else []
    run = run_playbook("playbooks/benchmark.yml", "-e", json.dumps(extra))
    output = run.stdout + run.stderr
    assert run.returncode != 0 and message in output, output[-2000:]
    assert "TASK [benchmark : Run ResNet-50" not in output
    assert (sorted(REPORTS.glob("*")) if REPORTS.exists() else []) == before
