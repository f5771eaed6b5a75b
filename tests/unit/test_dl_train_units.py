"""Unit tests of filter_plugins/dl_train_units.py: every host's complete start, in the plan."""

import subprocess

import pytest
from ansible.errors import AnsibleFilterError

from dl_train import dl_job_plan
from dl_train_units import WRAPPER, FilterModule, dl_job_units
from test_dl_train import cluster, job, tf_job

SETTINGS = {"unit": "dlcluster-job-mnist", "user": "ubuntu", "script": "mnist.py", "textfile_dir": "/var/lib/tf",
            "textfile_group": "dlmetrics", "timeout_minutes": 30, "args": ["--name", "a b", "$HOME"]}


def runtime(names, metrics=False, keras=""):
    return {name: {"dir": "/home/ubuntu/runs/mnist", "env_path": "/home/ubuntu/workspaces/py3",
                   "keras_backend": keras, "metrics": metrics} for name in names}


def test_each_host_gets_its_whole_start_torchrun_with_the_plans_arguments():
    names, hostvars = cluster("10.0.0.3", "10.0.0.2")
    plan = dl_job_plan(job(processes_per_node=2, env={"NCCL_DEBUG": "INFO"}), names, hostvars)
    units = dl_job_units(plan, runtime(names), SETTINGS)
    for name in names:
        entry = units["hosts"][name]
        argv = entry["argv"]
        assert argv[:5] == ["systemd-run", "--unit=dlcluster-job-mnist", "--uid=ubuntu", "--gid=ubuntu",
                            "--working-directory=/home/ubuntu/runs/mnist"]
        assert "--property=RuntimeMaxSec=1800" in argv and "--property=KillMode=control-group" in argv
        # The environment: the plan's (with the job's own) and the unit's, each one --setenv.
        assert entry["environment"]["NCCL_DEBUG"] == "INFO"
        assert entry["environment"]["PATH"].startswith("/home/ubuntu/workspaces/py3/bin:")
        assert [a for a in argv if a.startswith("--setenv=")] == [
            f"--setenv={k}={v}" for k, v in entry["environment"].items()]
        wrapper = argv.index("/bin/sh")
        assert argv[wrapper:wrapper + 4] == ["/bin/sh", "-c", WRAPPER, "dlcluster-job"]
        # The program: torchrun with the plan's own arguments, the script, the args as given, the hparams.
        assert argv[wrapper + 4:] == entry["command"]
        assert entry["command"][0] == "/home/ubuntu/workspaces/py3/bin/torchrun"
        assert entry["command"][1:1 + len(plan["hosts"][name]["torchrun_args"])] == plan["hosts"][name]["torchrun_args"]
        assert entry["command"][-6:] == ["/home/ubuntu/runs/mnist/code/mnist.py", "--name", "a b", "$HOME",
                                         "--hparams", "/home/ubuntu/runs/mnist/hparams.conf"]
        # What the plan decided stays (ranks, roles).
        assert entry["first_rank"] == plan["hosts"][name]["first_rank"]
    # Metrics off: no group, no ExecStartPre.
    assert not any("ExecStartPre" in a for a in units["hosts"]["node0"]["argv"])


def test_metrics_and_keras_add_their_properties_and_variables():
    names, hostvars = cluster("10.0.0.2", "10.0.0.3")
    plan = dl_job_plan(tf_job(), names, hostvars)
    units = dl_job_units(plan, runtime(names, metrics=True, keras="tensorflow"), SETTINGS)
    entry = units["hosts"]["node0"]
    assert entry["command"][0] == "/home/ubuntu/workspaces/py3/bin/python"
    assert "--property=SupplementaryGroups=dlmetrics" in entry["argv"]
    assert "--property=ExecStartPre=/home/ubuntu/runs/mnist/job-metrics start" in entry["argv"]
    assert "--property=ExecStopPost=/home/ubuntu/runs/mnist/job-metrics stop" in entry["argv"]
    assert entry["environment"]["KERAS_BACKEND"] == "tensorflow"
    assert entry["environment"]["DL_TEXTFILE_DIR"] == "/var/lib/tf"
    assert entry["environment"]["TF_CONFIG"] == plan["hosts"]["node0"]["tf_config"]


def test_the_wrapper_records_the_exit_status_and_passes_args_untouched(tmp_path):
    code = subprocess.run(["/bin/sh", "-c", WRAPPER, "dlcluster-job", "sh", "-c", 'echo "$1" > out; exit 3',
                           "x", "$HOME a"], cwd=tmp_path, check=False).returncode
    assert code == 3
    assert (tmp_path / "exit_code").read_text() == "3\n"
    assert (tmp_path / "out").read_text() == "$HOME a\n"


@pytest.mark.parametrize("plan, run, settings, words", [
    ({"hosts": {}}, {}, {}, "the settings lacks unit"),
    ("x", {}, SETTINGS, "the plan must come from dl_job_plan"),
    ({"hosts": {"h": {}}}, {}, SETTINGS, "host h of the plan has no runtime settings"),
    ({"hosts": {"h": {}}}, {"h": {"dir": "/d"}}, SETTINGS, "the runtime settings of h lacks env_path"),
])
def test_incomplete_input_is_named(plan, run, settings, words):
    with pytest.raises(AnsibleFilterError, match=words):
        dl_job_units(plan, run, settings)


def test_filter_module():
    assert set(FilterModule().filters()) == {"dl_job_units"}
