"""The GPU textfile collector (roles/gpu_exporter/files/dlcluster-gpu-metrics) against real captured output.

Every fixture in tests/unit/fixtures/gpu/ was copied verbatim from a public repository or
issue thread (its README names the source of each). A fake nvidia-smi / rocm-smi written to
tmp_path prints a fixture, so the collector's subprocess path runs as on a host.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES as UNIT_FIXTURES
from conftest import ROOT, load_script, wait_until

COLLECTOR = ROOT / "roles" / "gpu_exporter" / "files" / "dlcluster-gpu-metrics"
FIXTURES = UNIT_FIXTURES / "gpu"
# The stand-in tools of the accelerators scenario print copies of two fixtures.
MOLECULE_CAPTURED = ROOT / "molecule" / "shared" / "hardware" / "captured"
MIB = 2 ** 20

H100_UUID = "GPU-00000000-0000-0000-0000-000000000000"  # masked by the capture tool
H100 = {"gpu": "0", "uuid": H100_UUID, "model": "NVIDIA H100 80GB HBM3", "vendor": "nvidia"}
MI100_UUIDS = ["0x79ccd55167a2124a", "0x4edfb117a17a07d", "0xd4a9ec48d03d261d", "0x1b9dd972253c3736"]
MI100_MODEL = "Arcturus GL-XL [Instinct MI100]"


gpu_metrics = load_script("dlcluster_gpu_metrics", COLLECTOR)

# ------------------------------------------------------------------ helpers --

METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:\\.|[^"\\\n])*"'
SAMPLE = re.compile(rf"^(?P<name>{METRIC_NAME})(?:\{{(?P<labels>(?:{LABEL_PAIR})(?:,{LABEL_PAIR})*)?\}})?"
                   r" (?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN)$")
COMMENT = re.compile(rf"^# (?:HELP (?P<help>{METRIC_NAME}) .+|TYPE (?P<type>{METRIC_NAME}) (?P<kind>\w+))$")


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse_exposition(text: str) -> dict:
    """{(name, frozenset(labels.items())): value} of a text exposition, checking its format.

    Every line is a HELP or TYPE comment or a `name{labels} value` sample; every sample's
    metric has HELP and TYPE lines before it, TYPE once, gauge or counter; no sample repeats.
    """
    assert text.endswith("\n")
    helps, types, samples = set(), {}, {}
    for line in text.splitlines():
        comment = COMMENT.match(line)
        if comment:
            if comment.group("help"):
                helps.add(comment.group("help"))
            else:
                assert comment.group("type") not in types, f"TYPE twice: {line}"
                assert comment.group("kind") in ("gauge", "counter"), line
                types[comment.group("type")] = comment.group("kind")
            continue
        sample = SAMPLE.match(line)
        assert sample, f"not a sample line: {line!r}"
        name = sample.group("name")
        assert name in helps and name in types, f"{name} has no HELP/TYPE before its samples"
        assert (types[name] == "counter") == name.endswith("_total"), f"{name} is a {types[name]}"
        labels = frozenset((key, unescape(value)) for key, value in
                           re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"', sample.group("labels") or ""))
        key = (name, labels)
        assert key not in samples, f"sample repeated: {line}"
        samples[key] = float(sample.group("value"))
    return samples


def value_of(samples: dict, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def names_of(samples: dict) -> set:
    return {name for name, _ in samples}


def fake_tool(tmp_path: Path, stdout_file: Path | None = None, status: int = 0, stderr: str = "") -> Path:
    """A stand-in nvidia-smi / rocm-smi: records its arguments, prints a fixture, exits with `status`."""
    tool = tmp_path / "fake-smi"
    lines = ["#!/bin/sh", f"printf '%s\\n' \"$@\" > '{tmp_path / 'args'}'"]
    if stdout_file is not None:
        lines.append(f"cat '{stdout_file}'")
    if stderr:
        lines.append(f"echo '{stderr}' >&2")
    lines.append(f"exit {status}")
    tool.write_text("\n".join(lines) + "\n")
    tool.chmod(0o755)
    return tool


def run_collector(tmp_path: Path, vendor: str, tool: Path, output: Path | None = None) -> tuple[int, dict, Path]:
    output = output or tmp_path / "textfile" / "dlcluster-gpu.prom"
    status = gpu_metrics.main(["--vendor", vendor, "--smi", str(tool), "--output", str(output)])
    return status, parse_exposition(output.read_text()), output


# ------------------------------------------------------------- NVIDIA output --


def test_nvidia_h100_under_load(tmp_path):
    tool = fake_tool(tmp_path, FIXTURES / "nvidia-smi-h100-load.csv")
    status, samples, _ = run_collector(tmp_path, "nvidia", tool)
    assert status == 0
    # The collector asked for its fields, with the header it reads them by.
    assert (tmp_path / "args").read_text().splitlines() == [
        "--query-gpu=index,uuid,name,utilization.gpu,memory.used,memory.free,power.draw,temperature.gpu,"
        "clocks.current.sm", "--format=csv"]
    assert value_of(samples, "dlcluster_gpu_utilization_percent", **H100) == 100
    assert value_of(samples, "dlcluster_gpu_memory_used_bytes", **H100) == 19818 * MIB
    assert value_of(samples, "dlcluster_gpu_memory_free_bytes", **H100) == 61263 * MIB
    assert value_of(samples, "dlcluster_gpu_power_watts", **H100) == 631.95
    assert value_of(samples, "dlcluster_gpu_temperature_celsius", **H100) == 59
    assert value_of(samples, "dlcluster_gpu_sm_clock_hertz", **H100) == 1980 * 10 ** 6
    assert value_of(samples, "dlcluster_gpu_collector_success") == 1
    # nvidia-smi --query-gpu has no energy field: nothing is made up.
    assert "dlcluster_gpu_energy_joules_total" not in names_of(samples)


def test_nvidia_mig_reports_no_utilization_and_it_is_omitted_not_zero(tmp_path):
    text = (FIXTURES / "nvidia-smi-h100-mig-idle.csv").read_text()
    header, row = [line.split(", ") for line in text.splitlines()]
    assert dict(zip(header, row))["utilization.gpu [%]"] == "[N/A]"  # as captured with MIG enabled
    tool = fake_tool(tmp_path, FIXTURES / "nvidia-smi-h100-mig-idle.csv")
    status, samples, output = run_collector(tmp_path, "nvidia", tool)
    assert status == 0
    assert "dlcluster_gpu_utilization_percent" not in output.read_text()
    assert value_of(samples, "dlcluster_gpu_memory_used_bytes", **H100) == 59 * MIB
    assert value_of(samples, "dlcluster_gpu_memory_free_bytes", **H100) == 81022 * MIB
    assert value_of(samples, "dlcluster_gpu_power_watts", **H100) == 71.15
    assert value_of(samples, "dlcluster_gpu_temperature_celsius", **H100) == 42
    assert value_of(samples, "dlcluster_gpu_sm_clock_hertz", **H100) == 345 * 10 ** 6
    assert value_of(samples, "dlcluster_gpu_collector_success") == 1


def test_nvidia_two_gpus_of_another_query_are_read_by_their_header(tmp_path):
    """A user's query (other fields, no index, no uuid, no SM clock) on an older driver."""
    status, samples, _ = run_collector(
        tmp_path, "nvidia", fake_tool(tmp_path, FIXTURES / "nvidia-smi-gtx1080ti-gtx1060.csv"))
    assert status == 0
    first = {"gpu": "0", "uuid": "", "model": "GeForce GTX 1080 Ti", "vendor": "nvidia"}
    second = {"gpu": "1", "uuid": "", "model": "GeForce GTX 1060 6GB", "vendor": "nvidia"}
    assert value_of(samples, "dlcluster_gpu_utilization_percent", **first) == 36
    assert value_of(samples, "dlcluster_gpu_utilization_percent", **second) == 0
    assert value_of(samples, "dlcluster_gpu_memory_used_bytes", **first) == 2856 * MIB
    assert value_of(samples, "dlcluster_gpu_memory_used_bytes", **second) == 4 * MIB
    assert value_of(samples, "dlcluster_gpu_power_watts", **second) == 5.68
    assert value_of(samples, "dlcluster_gpu_temperature_celsius", **first) == 60
    # Not asked in that query: left out (the graphics clock is not the SM clock).
    assert not {"dlcluster_gpu_memory_free_bytes", "dlcluster_gpu_sm_clock_hertz"} & names_of(samples)


def test_nvidia_values_without_units_use_the_header_unit():
    gpus = gpu_metrics.parse_nvidia_csv("index, memory.used [MiB], clocks.sm [MHz], power.draw [W]\n"
                                        "0, 1024, 1410, 61.5\n")
    assert gpus[0]["memory_used_bytes"] == 1024 * MIB
    assert gpus[0]["sm_clock_hertz"] == 1410 * 10 ** 6  # clocks.sm is an alias of clocks.current.sm
    assert gpus[0]["power_watts"] == 61.5


@pytest.mark.parametrize("reported", ["[N/A]", "N/A", "[Not Supported]", "[Unknown Error]",
                                      "[Requested functionality has been deprecated]", "N/A (Secondary die)", ""])
def test_values_the_tool_does_not_have_are_none(reported):
    assert gpu_metrics.number(reported, "W") is None


# --------------------------------------------------------------- AMD output --


def test_amd_four_mi100(tmp_path):
    tool = fake_tool(tmp_path, FIXTURES / "rocm-smi-mi100x4-rocm602.json")
    status, samples, _ = run_collector(tmp_path, "amd", tool)
    assert status == 0
    args = (tmp_path / "args").read_text().splitlines()
    assert args[-1] == "--json" and "--showuse" in args and args[args.index("--showmeminfo") + 1] == "vram"
    power = [36, 44, 43, 39]
    edge = [53, 55, 54, 51]
    for card, uuid in enumerate(MI100_UUIDS):
        labels = {"gpu": str(card), "uuid": uuid, "model": MI100_MODEL, "vendor": "amd"}
        assert value_of(samples, "dlcluster_gpu_utilization_percent", **labels) == 0
        assert value_of(samples, "dlcluster_gpu_memory_used_bytes", **labels) == 6750208
        assert value_of(samples, "dlcluster_gpu_memory_free_bytes", **labels) == 34342961152 - 6750208
        assert value_of(samples, "dlcluster_gpu_power_watts", **labels) == power[card]
        assert value_of(samples, "dlcluster_gpu_temperature_celsius", **labels) == edge[card]
        assert value_of(samples, "dlcluster_gpu_sm_clock_hertz", **labels) == 300 * 10 ** 6
    assert value_of(samples, "dlcluster_gpu_collector_success") == 1
    assert "dlcluster_gpu_energy_joules_total" not in names_of(samples)  # not in that capture


def test_amd_rocm_6_1_key_names_and_unique_id_not_available(tmp_path):
    tool = fake_tool(tmp_path, FIXTURES / "rocm-smi-rx6700xt-rocm612.json")
    status, samples, _ = run_collector(tmp_path, "amd", tool)
    assert status == 0
    labels = {"gpu": "0", "uuid": "", "model": "Navi 22 [Radeon RX 6700/6700 XT / 6800M]", "vendor": "amd"}
    assert value_of(samples, "dlcluster_gpu_memory_used_bytes", **labels) == 1572745216
    assert value_of(samples, "dlcluster_gpu_memory_free_bytes", **labels) == 12868124672 - 1572745216
    assert value_of(samples, "dlcluster_gpu_power_watts", **labels) == 6
    assert value_of(samples, "dlcluster_gpu_temperature_celsius", **labels) == 45
    assert value_of(samples, "dlcluster_gpu_sm_clock_hertz", **labels) == 0  # reported as (0Mhz): a value


def test_amd_short_answer_of_a_7900_xtx(tmp_path):
    """The answer of `rocm-smi --showtemp --showuse --showpower --showmeminfo vram --json`: no name, no clocks."""
    status, samples, _ = run_collector(tmp_path, "amd", fake_tool(tmp_path, FIXTURES / "rocm-smi-rx7900xtx.json"))
    assert status == 0
    labels = {"gpu": "0", "uuid": "", "model": "", "vendor": "amd"}
    assert value_of(samples, "dlcluster_gpu_utilization_percent", **labels) == 0
    assert value_of(samples, "dlcluster_gpu_memory_used_bytes", **labels) == 794341376
    assert value_of(samples, "dlcluster_gpu_memory_free_bytes", **labels) == 25753026560 - 794341376
    assert value_of(samples, "dlcluster_gpu_power_watts", **labels) == 19
    assert value_of(samples, "dlcluster_gpu_temperature_celsius", **labels) == 49
    assert "dlcluster_gpu_sm_clock_hertz" not in names_of(samples)


def test_amd_key_alternatives_energy_and_secondary_die():
    """Key spellings from rocm_smi.py's source (not a captured answer): the energy counter, current
    socket power, a junction-only temperature and an MI250X secondary die's power."""
    gpus = gpu_metrics.parse_rocm_json(
        '{"card0": {"Current Socket Graphics Package Power (W)": "133.0",'
        ' "Temperature (Sensor edge) (C)": "N/A", "Temperature (Sensor junction) (C)": "35.0",'
        ' "Energy counter": "65628", "Accumulated Energy (uJ)": "1004108.41"},'
        ' "card1": {"Average Graphics Package Power (W)": "N/A (Secondary die)"}}')
    assert gpus[0]["power_watts"] == 133 and gpus[0]["temperature_celsius"] == 35
    assert gpus[0]["energy_joules_total"] == pytest.approx(1.00410841)
    assert gpus[1]["power_watts"] is None
    text = gpu_metrics.render("amd", gpus, True, 0)
    samples = parse_exposition(text)
    assert value_of(samples, "dlcluster_gpu_energy_joules_total",
                    gpu="0", uuid="", model="", vendor="amd") == pytest.approx(1.00410841)
    assert "# TYPE dlcluster_gpu_energy_joules_total counter" in text


# ------------------------------------------------------------------ failures --


@pytest.mark.parametrize(("vendor", "status", "stdout", "stderr"), [
    # nvidia-smi without a loaded driver (text as NVIDIA prints it; exit status 9).
    ("nvidia", 9, None, "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."),
    # rocm-smi without amdgpu: nothing on stdout, the reason on stderr, exit status 0.
    ("amd", 0, None, "ERROR:root:Driver not initialized (amdgpu not found in modules)"),
    # A tool that answers something else than what was asked.
    ("nvidia", 0, FIXTURES / "rocm-smi-rx7900xtx.json", ""),
    ("amd", 0, FIXTURES / "nvidia-smi-h100-load.csv", ""),
])
def test_tool_failure_replaces_the_file_with_success_0_and_no_gpu(tmp_path, capsys, vendor, status, stdout, stderr):
    output = tmp_path / "textfile" / "dlcluster-gpu.prom"
    output.parent.mkdir()
    output.write_text("dlcluster_gpu_power_watts{gpu=\"0\"} 1\n")  # a stale file of an earlier run
    code, samples, _ = run_collector(tmp_path, vendor, fake_tool(tmp_path, stdout, status, stderr), output)
    assert code == 0  # the file was written; the failure is in the metric
    assert value_of(samples, "dlcluster_gpu_collector_success") == 0
    assert names_of(samples) == {"dlcluster_gpu_collector_success",
                                 "dlcluster_gpu_collector_last_run_timestamp_seconds"}
    assert "dlcluster-gpu-metrics: " in capsys.readouterr().err


def test_missing_tool_is_a_failure_not_a_crash(tmp_path, capsys):
    code, samples, _ = run_collector(tmp_path, "nvidia", tmp_path / "no-such-nvidia-smi")
    assert code == 0 and value_of(samples, "dlcluster_gpu_collector_success") == 0
    assert "is not installed" in capsys.readouterr().err


def test_hanging_tool_times_out(tmp_path):
    tool = tmp_path / "hanging-smi"
    tool.write_text("#!/bin/sh\nexec sleep 30\n")
    tool.chmod(0o755)
    output = tmp_path / "metrics.prom"
    code = gpu_metrics.main(["--vendor", "nvidia", "--smi", str(tool), "--output", str(output), "--timeout", "0.5"])
    assert code == 0
    assert value_of(parse_exposition(output.read_text()), "dlcluster_gpu_collector_success") == 0


def test_stopped_by_systemd_leaves_the_old_file_and_no_temporary_file(tmp_path):
    """SIGTERM (systemd restarting a run in flight) ends the run cleanly: status 143, nothing half-written."""
    import signal

    tool = tmp_path / "slow-smi"
    started = tmp_path / "smi-started"
    tool.write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 30\n")
    tool.chmod(0o755)
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    (textfile / "dlcluster-gpu.prom").write_text("dlcluster_gpu_collector_success 1\n")
    run = subprocess.Popen([sys.executable, str(COLLECTOR), "--vendor", "nvidia", "--smi", str(tool),
                            "--output", str(textfile / "dlcluster-gpu.prom")], stderr=subprocess.PIPE)
    # A run in flight: the tool has started (the collector's SIGTERM handler is set before it runs the tool).
    assert wait_until(started.exists), "the collector never ran the tool"
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=10) == 143
    assert os.listdir(textfile) == ["dlcluster-gpu.prom"]
    assert (textfile / "dlcluster-gpu.prom").read_text() == "dlcluster_gpu_collector_success 1\n"


def test_unwritable_output_exits_1(tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    tool = fake_tool(tmp_path, FIXTURES / "nvidia-smi-h100-load.csv")
    code = gpu_metrics.main(["--vendor", "nvidia", "--smi", str(tool), "--output", str(blocker / "dlcluster-gpu.prom")])
    assert code == 1


# ------------------------------------------------------------ the file itself --


def test_atomic_write_leaves_only_the_prom_file_readable_by_all(tmp_path):
    tool = fake_tool(tmp_path, FIXTURES / "rocm-smi-mi100x4-rocm602.json")
    output = tmp_path / "textfile" / "dlcluster-gpu.prom"
    for _ in range(3):
        run_collector(tmp_path, "amd", tool, output)
    assert sorted(os.listdir(output.parent)) == ["dlcluster-gpu.prom"]
    assert stat.S_IMODE(output.stat().st_mode) == 0o644  # the node exporter runs as another user


def test_failed_write_removes_its_temporary_file(tmp_path, monkeypatch):
    def refuse(*_args):
        raise OSError("disk full")

    monkeypatch.setattr(gpu_metrics.os, "replace", refuse)
    with pytest.raises(OSError):
        gpu_metrics.write_atomically(str(tmp_path / "dlcluster-gpu.prom"), "x 1\n")
    assert os.listdir(tmp_path) == []


def test_label_values_are_escaped():
    gpus = [{"gpu": "0", "uuid": 'a"b', "model": "back\\slash\nnew}line", "power_watts": 1.5}]
    text = gpu_metrics.render("nvidia", gpus, True, 1700000000.25)
    assert 'uuid="a\\"b",model="back\\\\slash\\nnew}line"' in text
    samples = parse_exposition(text)
    assert value_of(samples, "dlcluster_gpu_power_watts",
                    gpu="0", uuid='a"b', model="back\\slash\nnew}line", vendor="nvidia") == 1.5
    assert value_of(samples, "dlcluster_gpu_collector_last_run_timestamp_seconds") == 1700000000.25


def test_timestamp_is_the_time_of_the_run(tmp_path):
    import time

    before = time.time()
    _, samples, _ = run_collector(tmp_path, "nvidia", fake_tool(tmp_path, FIXTURES / "nvidia-smi-h100-load.csv"))
    assert before - 1 <= value_of(samples, "dlcluster_gpu_collector_last_run_timestamp_seconds") <= time.time() + 1


def test_runs_as_a_program_with_the_system_python(tmp_path):
    """The installed file: executable, /usr/bin/python3, standard library only."""
    assert COLLECTOR.read_text().splitlines()[0] == "#!/usr/bin/python3"
    assert os.access(COLLECTOR, os.X_OK)
    imports = set(re.findall(r"^(?:from|import) (\w+)", COLLECTOR.read_text(), re.MULTILINE))
    assert imports <= set(sys.stdlib_module_names), imports - set(sys.stdlib_module_names)
    output = tmp_path / "out.prom"
    result = subprocess.run([sys.executable, "-I", str(COLLECTOR), "--vendor", "amd", "--smi",
                             str(fake_tool(tmp_path, FIXTURES / "rocm-smi-mi100x4-rocm602.json")),
                             "--output", str(output)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert value_of(parse_exposition(output.read_text()), "dlcluster_gpu_collector_success") == 1


def test_metric_names_are_the_agreed_ones(tmp_path):
    names = {gpu_metrics.PREFIX + metric for metric, _, _ in gpu_metrics.METRICS}
    assert names == {
        "dlcluster_gpu_utilization_percent", "dlcluster_gpu_memory_used_bytes", "dlcluster_gpu_memory_free_bytes",
        "dlcluster_gpu_power_watts", "dlcluster_gpu_temperature_celsius", "dlcluster_gpu_sm_clock_hertz",
        "dlcluster_gpu_energy_joules_total"}
    assert gpu_metrics.LABELS == ("gpu", "uuid", "model", "vendor")


def test_molecule_stand_ins_print_the_same_captures():
    """molecule/shared/hardware/captured/ holds byte-for-byte copies of two fixtures here."""
    for name in ("nvidia-smi-h100-load.csv", "rocm-smi-mi100x4-rocm602.json"):
        assert (MOLECULE_CAPTURED / name).read_bytes() == (FIXTURES / name).read_bytes(), name


@pytest.mark.parametrize(("tool", "args", "fixture"), [
    ("nvidia-smi", gpu_metrics.NVIDIA_ARGS, "nvidia-smi-h100-load.csv"),
    ("rocm-smi", gpu_metrics.ROCM_ARGS, "rocm-smi-mi100x4-rocm602.json"),
])
def test_molecule_stand_in_tools_answer_the_collector_with_the_capture(tool, args, fixture):
    """The accelerators scenario's stand-in tools, run here: the collector's query gets the capture verbatim."""
    result = subprocess.run([str(ROOT / "molecule" / "shared" / "hardware" / "bin" / tool), *args],
                            capture_output=True, timeout=30, check=False,
                            env={"PATH": "/usr/bin:/bin", "DLCLUSTER_FIXTURE_GPUS": "", "DLCLUSTER_FIXTURE_DRIVER": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout == (FIXTURES / fixture).read_bytes()
