"""Benchmark plan filters of dlcluster: what playbooks/benchmark.yml runs on each host.

Pure functions, unit-tested in tests/unit/test_dl_bench_plan.py. The
analysis of the results (outliers, pairs, bandwidths) is in dl_benchmark.py.

    caps = {"host": "cpu1", "edition": "cpu", "gpu_count": 0, "cpu_bf16": True,
            "frameworks": ["pytorch"], "physical_cores": 2, "inter_op": 2}
    caps | dl_bench_configs(settings)
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError

MODELS = ("resnet50",)
FRAMEWORKS = {"pytorch": "pytorch", "keras": "tensorflow"}  # benchmark framework: env framework it needs
MODES = ("train", "infer")
MIXED = ("auto", "on", "off")


def dl_bench_settings_problems(settings) -> list[str]:
    """Sentences naming each bad benchmark setting (empty when all are fine); checked before anything runs."""
    if not isinstance(settings, dict):
        raise AnsibleFilterError("dl_bench_settings_problems: expects the benchmark settings as a mapping")
    problems = []
    if settings.get("model") not in MODELS:
        problems.append(f"benchmark_model is {settings.get('model')!r}; the benchmark knows {', '.join(MODELS)}.")
    for name in ("batch_gpu", "batch_cpu", "image_size", "steps"):
        value = settings.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            problems.append(f"benchmark_{name} is {value!r}; it must be a whole number of at least 1.")
    warmup = settings.get("warmup")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        problems.append(f"benchmark_warmup_steps is {warmup!r}; it must be a whole number of at least 0.")
    for name, allowed in (("frameworks", FRAMEWORKS), ("modes", MODES)):
        values = settings.get(name)
        if not isinstance(values, list) or not values or any(v not in allowed for v in values):
            problems.append(f"benchmark_{name} is {values!r}; use a non-empty list of {', '.join(allowed)}.")
    if settings.get("mixed_precision") not in MIXED:
        problems.append(f"benchmark_mixed_precision is {settings.get('mixed_precision')!r}; use auto, on or off.")
    share = settings.get("outlier_share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        problems.append(f"benchmark_outlier_share is {share!r}; it must be between 0 and 1 (0.2 = 20 % below).")
    return problems


def dl_bench_configs(caps, settings) -> dict:
    """The dlbench `resnet` runs of one host: ``{configs, skipped, problems}``.

    A GPU host (edition nvidia or rocm) runs on 1 GPU and on all of them at the
    GPU batch size, with fp16 as its mixed precision; a CPU host at the CPU
    batch size with the cpu role's threads, bf16 as its mixed precision where
    the CPU has AVX512_BF16 or AMX, and (benchmark_onednn_contrast) inference
    with oneDNN off, the seed's "unoptimised" row. Frameworks the host's
    environment lacks are skipped and said so. Mixed precision forced on a
    host that cannot run it is a problem naming the host and the variable.
    """
    if not isinstance(caps, dict) or not isinstance(settings, dict):
        raise AnsibleFilterError("dl_bench_configs: expects the host's capabilities and the settings as mappings")
    host = caps.get("host", "this host")
    gpu = caps.get("edition") in ("nvidia", "rocm")
    gpus = int(caps.get("gpu_count") or 0)
    if gpu and gpus < 1:
        return {"configs": [], "skipped": [], "problems": [
            f"{host} has edition {caps.get('edition')} but no GPU was detected; check dl_edition for {host}."]}
    mixed = settings.get("mixed_precision", "auto")
    mixed_precision = "fp16" if gpu else ("bf16" if caps.get("cpu_bf16") else None)
    problems, skipped, configs = [], [], []
    if mixed == "on" and mixed_precision is None:
        problems.append(f"{host}: benchmark_mixed_precision is on but its CPU has neither AVX512_BF16 nor AMX "
                        f"(no bf16); set benchmark_mixed_precision to auto or off.")
    precisions = ["fp32"] + ([mixed_precision] if mixed_precision and mixed != "off" else [])
    have = set(caps.get("frameworks") or [])
    common = {"device": "cuda" if gpu else "cpu", "image_size": settings["image_size"],
              "warmup": settings["warmup"], "steps": settings["steps"]}
    if not gpu:
        common.update(threads=int(caps.get("physical_cores") or 1), interop=int(caps.get("inter_op") or 1))
    for framework in settings["frameworks"]:
        if FRAMEWORKS[framework] not in have:
            skipped.append(f"{framework}: the environment has no {FRAMEWORKS[framework]}")
            continue
        gpu_counts = sorted({1, gpus}) if gpu else [0]
        if framework == "keras" and len(gpu_counts) > 1:
            skipped.append("keras on all GPUs: the benchmark runs Keras on one GPU only")
            gpu_counts = [1]
        for mode in settings["modes"]:
            for count in gpu_counts:
                for precision in precisions:
                    configs.append({**common, "framework": framework, "mode": mode, "precision": precision,
                                    "gpus": count, "batch": settings["batch_gpu"] if gpu else settings["batch_cpu"],
                                    "onednn": "on"})
        if not gpu and framework == "pytorch" and settings.get("onednn_contrast") and "infer" in settings["modes"]:
            configs.append({**common, "framework": framework, "mode": "infer", "precision": "fp32", "gpus": 0,
                            "batch": settings["batch_cpu"], "onednn": "off"})
    return {"configs": configs, "skipped": skipped, "problems": problems}


def dl_bench_argv(config) -> list[str]:
    """dlbench.py's `resnet` arguments for one config of dl_bench_configs."""
    argv = ["resnet", "--framework", config["framework"], "--device", config["device"],
            "--precision", config["precision"], "--mode", config["mode"], "--batch", str(config["batch"]),
            "--image-size", str(config["image_size"]), "--warmup", str(config["warmup"]),
            "--steps", str(config["steps"]), "--onednn", config["onednn"]]
    if config["device"] == "cuda":
        argv += ["--gpus", str(config["gpus"])]
    else:
        argv += ["--threads", str(config["threads"]), "--interop", str(config["interop"])]
    return argv


def dl_bench_json(result) -> dict:
    """The JSON object dlbench.py printed last in a registered command result (or its stdout); a run that
    printed none becomes ``{ok: false, error}`` with the end of its error output, never a figure. A loop
    result's config (``item``) is kept under it, so a failed run still says what it was."""
    item = result.get("item") if isinstance(result, dict) and isinstance(result.get("item"), dict) else {}
    return {**item, **_last_json(result)}


def _last_json(result) -> dict:
    if isinstance(result, dict):
        stdout, stderr, rc = str(result.get("stdout") or ""), str(result.get("stderr") or ""), result.get("rc")
    else:
        stdout, stderr, rc = str(result or ""), "", None
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    tail = (stderr.strip().splitlines() or stdout.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "error": f"no result (exit status {rc}): {tail[:300]}"}


class FilterModule:
    """dlcluster benchmark plan filters."""

    def filters(self):
        return {"dl_bench_settings_problems": dl_bench_settings_problems, "dl_bench_configs": dl_bench_configs,
                "dl_bench_argv": dl_bench_argv, "dl_bench_json": dl_bench_json}
