"""Unit tests of filter_plugins/dl_train_units.py: every host's complete start, in the plan."""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from dl_train_plan import dl_job_plan
from dl_train_units import FilterModule, dl_job_host_checks, dl_job_units, dl_job_verdict
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
        # The job's agent: this host, the first host's coordinator, the whole job's hosts on the first only.
        agent = argv.index("/usr/bin/python3")
        end = argv.index("--", agent)
        assert argv[agent:end] == [
            "/usr/bin/python3", "/home/ubuntu/runs/mnist/job-agent", "--host", name,
            "--coordinator", f"{plan['master_addr']}:29400", "--role", "rank", "--decides",
            *(["--serve", "node0,node1"] if name == "node0" else [])]
        assert plan["coordinator"] == "node0"
        # The program: torchrun with the plan's own arguments, the script, the args as given, the hparams.
        assert argv[end + 1:] == entry["command"]
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


def test_a_parameter_server_jobs_servers_do_not_decide_the_outcome():
    names, hostvars = cluster("10.0.0.2", "10.0.0.3", "10.0.0.4")
    plan = dl_job_plan(tf_job(strategy="parameter_server"), names, hostvars)
    units = dl_job_units(plan, runtime(names), SETTINGS)
    roles = {name: units["hosts"][name]["argv"][units["hosts"][name]["argv"].index("--role") + 1] for name in names}
    assert roles == {"node0": "chief", "node1": "ps", "node2": "worker"}
    assert "--decides" in units["hosts"]["node0"]["argv"]
    assert "--decides" not in units["hosts"]["node1"]["argv"][:units["hosts"]["node1"]["argv"].index("--")]


def test_the_agent_records_the_exit_status_and_passes_args_untouched(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    agent = Path(__file__).resolve().parents[2] / "roles" / "train" / "files" / "dlcluster-job-agent"
    code = subprocess.run([sys.executable, str(agent), "--host", "h", "--coordinator", f"127.0.0.1:{port}",
                           "--serve", "h", "--decides", "--",
                           "sh", "-c", 'echo "$1" > out; exit 3', "x", "$HOME a"], cwd=tmp_path, check=False).returncode
    assert code == 3
    assert (tmp_path / "exit_code").read_text() == "3\n"
    assert (tmp_path / "out").read_text() == "$HOME a\n"


@pytest.mark.parametrize("plan, run, settings, words", [
    ({"hosts": {}, "agent_endpoint": "h:1"}, {}, {}, "the settings lacks unit"),
    ("x", {}, SETTINGS, "the plan must come from dl_job_plan"),
    ({"hosts": {}}, {}, SETTINGS, "the plan must come from dl_job_plan"),
    ({"hosts": {"h": {}}, "agent_endpoint": "h:1"}, {}, SETTINGS, "host h of the plan has no runtime settings"),
    ({"hosts": {"h": {}}, "agent_endpoint": "h:1"}, {"h": {"dir": "/d"}}, SETTINGS,
     "the runtime settings of h lacks env_path"),
])
def test_incomplete_input_is_named(plan, run, settings, words):
    with pytest.raises(AnsibleFilterError, match=words):
        dl_job_units(plan, run, settings)


@pytest.mark.parametrize("text, state, failure", [
    ('{"state": "failed", "first_failure": "cpu2 failed 1", "hosts": {"cpu2": {}}}', "failed", "cpu2 failed 1"),
    ('{"state": "unit inactive"}', "unit inactive", ""),
    ("", "unknown", ""),
    ("cat: job-state.json: No such file", "unknown", ""),
    ("[1]", "unknown", ""),
])
def test_the_verdict_reads_the_coordinators_state(text, state, failure):
    verdict = dl_job_verdict(text)
    assert (verdict["state"], verdict["first_failure"]) == (state, failure)
    assert isinstance(verdict["hosts"], dict)


def test_filter_module():
    assert set(FilterModule().filters()) == {"dl_job_units", "dl_job_verdict", "dl_job_host_checks", "dl_job_read_args",
                                             "dl_job_step_args"}


SPEC = {"id": "mnist", "venv": "py3", "framework": "pytorch"}
CHECK_SETTINGS = {"unit": "dlcluster-job-mnist", "user": "ops", "textfile_group": "dlmetrics"}


def reported(envs=({"name": "py3", "path": "/home/ops/workspaces/py3", "frameworks": ["pytorch"]},),
             home="/home/ops", lines=("inactive", "directory:dlmetrics")):
    """A host's hostvars after the check: its saved environments and the check command's answer."""
    facts = {"envs": list(envs)}
    if home:
        facts["home"] = home
    return {"ansible_local": {"dlcluster_envs": facts},
            "__train_host_state": {"rc": 0, "stdout_lines": list(lines)}}


def test_hosts_that_can_run_the_job_get_their_part_of_the_start():
    hostvars = {"cpu1": reported(),
                "cpu2": reported(envs=[{"name": "py3", "path": "/srv/py3", "frameworks": ["pytorch", "keras"],
                                        "keras_backend": "torch"}], home="", lines=("inactive", ""))}
    checked = dl_job_host_checks(SPEC, ["cpu1", "cpu2"], hostvars, CHECK_SETTINGS)
    assert checked["problems"] == []
    assert checked["runtime"] == {
        "cpu1": {"dir": "/home/ops/runs/mnist", "env_path": "/home/ops/workspaces/py3", "keras_backend": "",
                 "metrics": True},
        # No home in the saved facts: the job user's default home. No textfile directory: no metrics.
        "cpu2": {"dir": "/home/ops/runs/mnist", "env_path": "/srv/py3", "keras_backend": "torch", "metrics": False}}
    # What dl_job_units reads.
    names, plan_hostvars = cluster("10.0.0.2", "10.0.0.3")
    plan = dl_job_plan(job(), names, plan_hostvars)
    runtime_by_plan_host = dict(zip(names, checked["runtime"].values()))
    assert dl_job_units(plan, runtime_by_plan_host, SETTINGS)["hosts"]["node1"]["environment"]["KERAS_BACKEND"] \
        == "torch"


@pytest.mark.parametrize("host_vars, sentence", [
    (reported(envs=[{"name": "tf", "path": "/p", "frameworks": ["tensorflow"]}]),
     "cpu2 cannot run job mnist: environment py3 does not exist (environments: tf); set venv: in the spec or add "
     "it to python_envs_envs and run site.yml."),
    (reported(envs=[]),
     "cpu2 cannot run job mnist: environment py3 does not exist (environments: none); set venv: in the spec or "
     "add it to python_envs_envs and run site.yml."),
    (reported(envs=[{"name": "py3", "path": "/p", "frameworks": ["tensorflow"]}]),
     "cpu2 cannot run job mnist: environment py3 has no pytorch (it has tensorflow); add it to the env's "
     "frameworks and run site.yml."),
    (reported(lines=("active", "")),
     "Job mnist is still running on cpu2 (dlcluster-job-mnist); wait for it or stop it with: "
     "systemctl stop dlcluster-job-mnist"),
    (reported(lines=("deactivating",)),
     "Job mnist is still running on cpu2 (dlcluster-job-mnist); wait for it or stop it with: "
     "systemctl stop dlcluster-job-mnist"),
    ({"ansible_local": reported()["ansible_local"]},
     "cpu2 did not report whether job mnist still runs there; nothing was started."),
])
def test_a_host_that_cannot_run_the_job_is_named_and_the_others_are_not(host_vars, sentence):
    checked = dl_job_host_checks(SPEC, ["cpu1", "cpu2"], {"cpu1": reported(), "cpu2": host_vars}, CHECK_SETTINGS)
    assert checked["problems"] == [sentence]
    assert list(checked["runtime"]) == ["cpu1"]


def test_every_failing_host_is_named_in_one_pass():
    hostvars = {"cpu1": reported(envs=[]), "cpu2": reported(lines=("active",)), "cpu3": reported()}
    problems = dl_job_host_checks(SPEC, list(hostvars), hostvars, CHECK_SETTINGS)["problems"]
    assert [p.split(" ")[0] for p in problems] == ["cpu1", "Job"] and "on cpu2" in problems[1]


def test_a_host_with_both_problems_gets_one_sentence_naming_both():
    checked = dl_job_host_checks(SPEC, ["cpu1"], {"cpu1": reported(envs=[], lines=("active",))}, CHECK_SETTINGS)
    assert len(checked["problems"]) == 1
    assert "environment py3 does not exist" in checked["problems"][0]
    assert "is still running on cpu1" in checked["problems"][0]


@pytest.mark.parametrize("spec, settings, words", [
    ({"id": "x"}, CHECK_SETTINGS, "the spec must come from dl_job_spec"),
    (SPEC, {"unit": "u", "user": "ops"}, "the settings lacks textfile_group"),
])
def test_host_checks_name_incomplete_input(spec, settings, words):
    with pytest.raises(AnsibleFilterError, match=words):
        dl_job_host_checks(spec, ["cpu1"], {"cpu1": reported()}, settings)
