"""The gpu_exporter role's textfile collector on the GPU hosts of the accelerators scenario.

gpu1 and rocm1 point the collector at the stand-in nvidia-smi / rocm-smi of
molecule/shared/hardware/bin/, which answer its query with real captured output
(molecule/shared/hardware/captured/: one H100 under load, four MI100s; see the README there).
rocm2 keeps the default /opt/rocm/bin/rocm-smi, which is not installed there: its file must
say so with dlcluster_gpu_collector_success 0 and hold no GPU metric.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import lab_host  # noqa: E402

testinfra_hosts = ["ansible://gpu1", "ansible://rocm1", "ansible://rocm2"]

PROM = "/var/lib/prometheus/node-exporter/dlcluster-gpu.prom"
SERVICE = "dlcluster-gpu-metrics.service"
MIB = 2 ** 20
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')


def samples(host) -> dict:
    """{(name, frozenset(labels)): value} of the host's metrics file; every line a comment or a sample."""
    with host.sudo():
        text = host.file(PROM).content_string
    found = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"', match.group(2) or ""))
        found[(match.group(1), labels)] = float(match.group(3))
    return found


def value(found, name, **labels):
    return found[(name, frozenset(labels.items()))]


def collect_now(host):
    with host.sudo():
        host.run_expect([0], f"systemctl start {SERVICE}")


def test_timer_runs_the_collector(host):
    timer = host.service("dlcluster-gpu-metrics.timer")
    assert timer.is_enabled and timer.is_running
    with host.sudo():
        unit = host.file(f"/etc/systemd/system/{SERVICE}").content_string
        prom = host.file(PROM)
        assert prom.mode == 0o644 and prom.user == "root"
        leftovers = host.run(f"ls -A {Path(PROM).parent}").stdout.split()
    assert "ExecStart=/usr/local/sbin/dlcluster-gpu-metrics --vendor " in unit
    assert [name for name in leftovers if name.startswith(".dlcluster-gpu.prom")] == []


def test_gpu1_holds_the_h100_capture():
    gpu1 = lab_host("gpu1")
    collect_now(gpu1)  # the timer may last have run while test_gpu_checks.py held a fault
    found = samples(gpu1)
    h100 = {"gpu": "0", "uuid": "GPU-00000000-0000-0000-0000-000000000000", "model": "NVIDIA H100 80GB HBM3",
            "vendor": "nvidia"}
    assert value(found, "dlcluster_gpu_collector_success") == 1
    assert value(found, "dlcluster_gpu_utilization_percent", **h100) == 100
    assert value(found, "dlcluster_gpu_memory_used_bytes", **h100) == 19818 * MIB
    assert value(found, "dlcluster_gpu_memory_free_bytes", **h100) == 61263 * MIB
    assert value(found, "dlcluster_gpu_power_watts", **h100) == 631.95
    assert value(found, "dlcluster_gpu_temperature_celsius", **h100) == 59
    assert value(found, "dlcluster_gpu_sm_clock_hertz", **h100) == 1980 * 10 ** 6
    assert not [name for name, _ in found if name == "dlcluster_gpu_energy_joules_total"]


def test_rocm1_holds_the_four_mi100_capture():
    rocm1 = lab_host("rocm1")
    collect_now(rocm1)
    found = samples(rocm1)
    assert value(found, "dlcluster_gpu_collector_success") == 1
    uuids = ["0x79ccd55167a2124a", "0x4edfb117a17a07d", "0xd4a9ec48d03d261d", "0x1b9dd972253c3736"]
    for card, (uuid, watts, celsius) in enumerate(zip(uuids, [36, 44, 43, 39], [53, 55, 54, 51])):
        labels = {"gpu": str(card), "uuid": uuid, "model": "Arcturus GL-XL [Instinct MI100]", "vendor": "amd"}
        assert value(found, "dlcluster_gpu_utilization_percent", **labels) == 0
        assert value(found, "dlcluster_gpu_memory_used_bytes", **labels) == 6750208
        assert value(found, "dlcluster_gpu_memory_free_bytes", **labels) == 34342961152 - 6750208
        assert value(found, "dlcluster_gpu_power_watts", **labels) == watts
        assert value(found, "dlcluster_gpu_temperature_celsius", **labels) == celsius
        assert value(found, "dlcluster_gpu_sm_clock_hertz", **labels) == 300 * 10 ** 6


def test_rocm2_without_rocm_smi_reports_the_failure():
    rocm2 = lab_host("rocm2")
    collect_now(rocm2)
    found = samples(rocm2)
    assert value(found, "dlcluster_gpu_collector_success") == 0
    assert {name for name, _ in found} == {"dlcluster_gpu_collector_success",
                                          "dlcluster_gpu_collector_last_run_timestamp_seconds"}
    # The reason, as the service logs it (here written to a scratch file, not the exporter's).
    with rocm2.sudo():
        run = rocm2.run("/usr/local/sbin/dlcluster-gpu-metrics --vendor amd --smi /opt/rocm/bin/rocm-smi"
                        " --output /tmp/gpu-exporter-test.prom && rm -f /tmp/gpu-exporter-test.prom")
    assert run.rc == 0
    assert "dlcluster-gpu-metrics: /opt/rocm/bin/rocm-smi is not installed" in run.stderr


def test_gpu1_driver_failure_then_recovery():
    """The stand-in's fault file: nvidia-smi fails as without a loaded driver, then answers again."""
    gpu1 = lab_host("gpu1")
    try:
        with gpu1.sudo():
            gpu1.run_expect([0], "echo fail > /etc/dlcluster-fixture-gpus")
        collect_now(gpu1)
        found = samples(gpu1)
        assert value(found, "dlcluster_gpu_collector_success") == 0
        assert not [name for name, _ in found if not name.startswith("dlcluster_gpu_collector_")]
    finally:
        with gpu1.sudo():
            gpu1.run_expect([0], "rm -f /etc/dlcluster-fixture-gpus")
    collect_now(gpu1)
    assert value(samples(gpu1), "dlcluster_gpu_collector_success") == 1
