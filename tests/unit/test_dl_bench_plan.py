"""Unit tests of filter_plugins/dl_bench_plan.py: what the benchmark runs on each host."""

import pytest
from ansible.errors import AnsibleFilterError

from dl_bench_plan import FilterModule, dl_bench_argv, dl_bench_configs, dl_bench_json, dl_bench_settings_problems

SETTINGS = {"model": "resnet50", "frameworks": ["pytorch", "keras"], "modes": ["train", "infer"],
            "mixed_precision": "auto", "onednn_contrast": True, "batch_gpu": 64, "batch_cpu": 32,
            "image_size": 224, "warmup": 10, "steps": 30, "outlier_share": 0.2}
CPU_BF16 = {"host": "cpu1", "edition": "cpu", "gpu_count": 0, "cpu_bf16": True, "frameworks": ["pytorch"],
            "physical_cores": 16, "inter_op": 2}
GPU2 = {"host": "gpu1", "edition": "nvidia", "gpu_count": 2, "frameworks": ["pytorch", "tensorflow"]}


def labels(plan):
    return [(c["framework"], c["mode"], c["precision"], c["gpus"], c["onednn"]) for c in plan["configs"]]


def test_cpu_host_with_bf16_gets_fp32_bf16_and_the_unoptimised_row():
    plan = dl_bench_configs(CPU_BF16, SETTINGS)
    assert labels(plan) == [("pytorch", "train", "fp32", 0, "on"), ("pytorch", "train", "bf16", 0, "on"),
                            ("pytorch", "infer", "fp32", 0, "on"), ("pytorch", "infer", "bf16", 0, "on"),
                            ("pytorch", "infer", "fp32", 0, "off")]
    assert plan["skipped"] == ["keras: the environment has no tensorflow"] and plan["problems"] == []
    assert {(c["batch"], c["threads"], c["interop"], c["device"]) for c in plan["configs"]} == {(32, 16, 2, "cpu")}


def test_gpu_host_runs_one_and_all_gpus_with_fp16():
    plan = dl_bench_configs(GPU2, {**SETTINGS, "modes": ["train"], "onednn_contrast": True})
    assert labels(plan) == [("pytorch", "train", "fp32", 1, "on"), ("pytorch", "train", "fp16", 1, "on"),
                            ("pytorch", "train", "fp32", 2, "on"), ("pytorch", "train", "fp16", 2, "on"),
                            ("keras", "train", "fp32", 1, "on"), ("keras", "train", "fp16", 1, "on")]
    assert plan["skipped"] == ["keras on all GPUs: the benchmark runs Keras on one GPU only"]
    assert {c["batch"] for c in plan["configs"]} == {64}


def test_mixed_precision_off_and_a_cpu_without_bf16():
    no_bf16 = {**CPU_BF16, "cpu_bf16": False}
    assert {c["precision"] for c in dl_bench_configs(no_bf16, SETTINGS)["configs"]} == {"fp32"}
    assert {c["precision"] for c in dl_bench_configs(CPU_BF16, {**SETTINGS, "mixed_precision": "off"})["configs"]} \
        == {"fp32"}


def test_mixed_precision_forced_on_a_cpu_without_bf16_is_refused():
    plan = dl_bench_configs({**CPU_BF16, "cpu_bf16": False}, {**SETTINGS, "mixed_precision": "on"})
    assert plan["problems"] == ["cpu1: benchmark_mixed_precision is on but its CPU has neither AVX512_BF16 nor "
                                "AMX (no bf16); set benchmark_mixed_precision to auto or off."]


def test_gpu_edition_without_gpus_is_a_problem():
    assert "no GPU was detected" in dl_bench_configs({**GPU2, "gpu_count": 0}, SETTINGS)["problems"][0]


def test_settings_are_checked():
    assert dl_bench_settings_problems(SETTINGS) == []
    bad = {**SETTINGS, "model": "vgg16", "batch_cpu": 0, "warmup": -1, "frameworks": ["caffe"],
           "mixed_precision": "yes", "outlier_share": 1.5, "steps": True}
    problems = dl_bench_settings_problems(bad)
    assert problems == [
        "benchmark_model is 'vgg16'; the benchmark knows resnet50.",
        "benchmark_batch_cpu is 0; it must be a whole number of at least 1.",
        "benchmark_steps is True; it must be a whole number of at least 1.",
        "benchmark_warmup_steps is -1; it must be a whole number of at least 0.",
        "benchmark_frameworks is ['caffe']; use a non-empty list of pytorch, keras.",
        "benchmark_mixed_precision is 'yes'; use auto, on or off.",
        "benchmark_outlier_share is 1.5; it must be between 0 and 1 (0.2 = 20 % below).",
    ]


def test_argv_for_cpu_and_gpu():
    cpu = dl_bench_configs(CPU_BF16, SETTINGS)["configs"][-1]
    assert dl_bench_argv(cpu) == ["resnet", "--framework", "pytorch", "--device", "cpu", "--precision", "fp32",
                                  "--mode", "infer", "--batch", "32", "--image-size", "224", "--warmup", "10",
                                  "--steps", "30", "--onednn", "off", "--threads", "16", "--interop", "2"]
    gpu = dl_bench_configs(GPU2, SETTINGS)["configs"][2]
    assert dl_bench_argv(gpu)[-2:] == ["--gpus", "2"]


def test_bad_input():
    with pytest.raises(AnsibleFilterError, match="expects the host's capabilities"):
        dl_bench_configs([], SETTINGS)
    with pytest.raises(AnsibleFilterError, match="as a mapping"):
        dl_bench_settings_problems(None)


def test_the_last_json_line_is_the_result():
    result = {"stdout": 'warming up\n{"kind": "x"}\n{"kind": "resnet", "ok": true}\n', "stderr": "", "rc": 0}
    assert dl_bench_json(result) == {"kind": "resnet", "ok": True}
    assert dl_bench_json('{"ok": true}') == {"ok": True}


def test_a_run_without_json_is_an_error_not_a_figure():
    crashed = {"stdout": "", "stderr": "Traceback...\nRuntimeError: out of memory", "rc": -9}
    assert dl_bench_json(crashed) == {"ok": False,
                                      "error": "no result (exit status -9): RuntimeError: out of memory"}
    assert dl_bench_json({"stdout": "{broken", "rc": 1})["ok"] is False


def test_a_loop_result_keeps_its_config():
    item = {"framework": "pytorch", "mode": "train", "precision": "bf16"}
    failed = dl_bench_json({"item": item, "stdout": "", "stderr": "Killed", "rc": 137})
    assert failed == {**item, "ok": False, "error": "no result (exit status 137): Killed"}
    ran = dl_bench_json({"item": item, "stdout": '{"ok": true, "precision": "bf16", "images_per_second": 5}'})
    assert ran["images_per_second"] == 5 and ran["mode"] == "train"


def test_registered():
    assert set(FilterModule().filters()) == {"dl_bench_settings_problems", "dl_bench_configs", "dl_bench_argv",
                                             "dl_bench_json"}
