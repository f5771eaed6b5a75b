"""The launcher's host-side writer of a job's state (roles/train/files/dlcluster-job-metrics),
run the way systemd runs it: ExecStartPre, then ExecStopPost with systemd's result variables."""

import os
import subprocess
from pathlib import Path

import pytest

WRITER = Path(__file__).resolve().parents[2] / "roles" / "train" / "files" / "dlcluster-job-metrics"


def run(tmp_path, action, **extra):
    (tmp_path / "job").mkdir(exist_ok=True)
    (tmp_path / "textfile").mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "DL_TEXTFILE_DIR": str(tmp_path / "textfile"), "DL_JOB_ID": "ddp"}
    return subprocess.run(["/bin/sh", str(WRITER), action], cwd=tmp_path / "job", env={**env, **extra},
                          capture_output=True, text=True, check=False)


def samples(tmp_path):
    lines = (tmp_path / "textfile" / "dlcluster-job-ddp.prom").read_text().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if not line.startswith("#")}


def test_start_marks_running_and_drops_old_rank_progress(tmp_path):
    (tmp_path / "textfile").mkdir()
    (tmp_path / "textfile" / "dlcluster-job-ddp-rank0.prom").write_text("old\n")
    (tmp_path / "textfile" / "dlcluster-job-other-rank0.prom").write_text("other job\n")
    assert run(tmp_path, "start").returncode == 0
    values = samples(tmp_path)
    assert values['dlcluster_job_running{job_id="ddp"}'] == 1
    assert 'dlcluster_job_exit_code{job_id="ddp",result="success"}' not in values
    assert sorted(p.name for p in (tmp_path / "textfile").iterdir()) == [
        "dlcluster-job-ddp.prom", "dlcluster-job-other-rank0.prom"]


@pytest.mark.parametrize("exit_code,status,result,expected", [
    ("exited", "0", "success", 0),
    ("exited", "1", "exit-code", 1),
    ("killed", "TERM", "success", 143),   # stopped by the launcher
    ("killed", "KILL", "signal", 137),
    ("dumped", "SEGV", "core-dump", 139),
])
def test_stop_records_the_end_and_the_exit(tmp_path, exit_code, status, result, expected):
    assert run(tmp_path, "start").returncode == 0
    started = samples(tmp_path)['dlcluster_job_start_time_seconds{job_id="ddp"}']
    assert run(tmp_path, "stop", EXIT_CODE=exit_code, EXIT_STATUS=status, SERVICE_RESULT=result).returncode == 0
    values = samples(tmp_path)
    assert values['dlcluster_job_running{job_id="ddp"}'] == 0
    assert values[f'dlcluster_job_exit_code{{job_id="ddp",result="{result}"}}'] == expected
    assert values['dlcluster_job_start_time_seconds{job_id="ddp"}'] == started
    assert values['dlcluster_job_end_time_seconds{job_id="ddp"}'] >= started
    assert [p.name for p in (tmp_path / "textfile").iterdir()] == ["dlcluster-job-ddp.prom"]


def test_usage_and_missing_environment_fail(tmp_path):
    assert run(tmp_path, "restart").returncode == 2
    (tmp_path / "job").mkdir(exist_ok=True)
    assert subprocess.run(["/bin/sh", str(WRITER), "start"], cwd=tmp_path / "job", env={"PATH": os.environ["PATH"]},
                          capture_output=True, check=False).returncode != 0
