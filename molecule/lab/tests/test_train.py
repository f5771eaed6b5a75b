"""Distributed training across the lab's workers: success, refusal, bad specs, a killed rank."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import (ANSIBLE_PLAYBOOK, ROOT, lab_host, plain, prometheus_query, public_key,  # noqa: E402
                     start_playbook, training_worker, transfer)
from labtest import run_playbook as _run_playbook  # noqa: E402

testinfra_hosts = ["ansible://cpu2"]

RUNS = ROOT / "runs"
# MNIST 5k as the upstream idx files, synced by roles/datasets (molecule/lab/files/publish_upstream.py).
SYNCED_MNIST = "/data/datasets/mnist-5k/current"
DDP = {"framework": "pytorch", "hosts": "workers", "script": "jobs/scripts/pytorch_ddp_mnist.py",
       "hparams_file": "jobs/hparams/mnist.conf"}


def run_playbook(playbook: str, *args: str) -> subprocess.CompletedProcess:
    """labtest.run_playbook, its output without ANSI colours: molecule's verify forces them on, and they split the
    messages these tests read."""
    run = _run_playbook(playbook, *args)
    return subprocess.CompletedProcess(run.args, run.returncode, plain(run.stdout), plain(run.stderr))


def _job(name, **fields) -> str:
    return json.dumps({"job": {"name": name, **DDP, **fields}})


# The tasks that start ranks: over plain ssh (roles/train/tasks/fleet_launch.yml, the lab's default) and through
# Ansible's per-host tasks (tasks/launch.yml, -e train_fleet_ssh=false).
RANK_STARTS = re.compile(r"TASK \[train : (Start this host's ranks|Put the job's files on every host and start its "
                         r"ranks, all at once)\]")
FLEET_START = "TASK [train : Put the job's files on every host and start its ranks, all at once]"
OVER_ANSIBLE = json.dumps({"train_fleet_ssh": False})
# What a run through Ansible's per-host tasks prints (roles/train/tasks/fleet_read.yml, check.yml); up to the
# apostrophe, which the YAML callback doubles.
THROUGH_ANSIBLE = "reaches its hosts through Ansible"
ANSIBLE_READ = "TASK [train : Read the environments, the saved hardware facts and the interfaces]"


def _no_job_process_left(pattern="[p]ytorch_ddp_mnist"):
    for name in ("cpu1", "cpu2"):
        assert lab_host(name).run(f"pgrep -f '{pattern}'").rc == 1, f"a training process is left on {name}"


def test_ddp_sample_across_two_workers_reaches_090():
    """The DDP sample with one rank per site (cpu1 in site a, cpu2 in site b): network 'site' puts each rank on its
    site address and LAN interface (GLOO_SOCKET_IFNAME), so the VPN's tunnel carries the gradients; the data is the
    copy roles/datasets synced and verified on each worker (test_datasets.py). 6 epochs instead of the sample's 10:
    the tunnel makes each epoch slow."""
    spec = yaml.safe_load((ROOT / "jobs" / "pytorch-ddp-mnist.yml").read_text())
    spec.update(network="site", hparams={"epochs": 6, "data": SYNCED_MNIST})
    cpu1 = lab_host("cpu1")
    before = transfer(cpu1, public_key("cpu2"))
    run = run_playbook("playbooks/train.yml", "-e", json.dumps({"job": spec}), "-e", "force=true")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
    summary = json.loads((RUNS / "pytorch-ddp-mnist" / "summary.json").read_text())
    assert summary["ok"] and summary["test_accuracy"] >= 0.90, summary["message"]
    # The ranks' traffic went through the tunnel: far more than the pings of the other tests.
    assert transfer(cpu1, public_key("cpu2")) - before > 5 * 10 ** 6
    # Each rank read the synced copy (the script prints what it loaded).
    for name in ("cpu1", "cpu2"):
        logs = "".join(log.read_text() for log in (RUNS / "pytorch-ddp-mnist" / name / "logs").rglob("stdout.log"))
        assert f"data={SYNCED_MNIST} train=4000 test=1000" in logs, name
    # The plan, written before anything started, holds each host's whole start and its global ranks; the
    # ranks torchrun handed out, read from each rank's own log, are the planned ones.
    plan = json.loads((RUNS / "pytorch-ddp-mnist" / "plan.json").read_text())
    assert plan["backend"] == "direct" and plan["world_size"] == 2 and set(plan["hosts"]) == {"cpu1", "cpu2"}
    for name, entry in plan["hosts"].items():
        assert entry["argv"][:2] == ["systemd-run", "--unit=dlcluster-job-pytorch-ddp-mnist"], entry["argv"]
        assert entry["command"] == entry["argv"][-len(entry["command"]):]
        assert f"--local-addr={entry['address']}" in " ".join(entry["command"]).replace("--local-addr ", "--local-addr=")
        logs = list((RUNS / "pytorch-ddp-mnist" / name / "logs").rglob("stdout.log"))
        observed = sorted(int(m.group(1)) for log in logs
                          for m in re.finditer(r"^rank=(\d+) world_size=", log.read_text(), re.MULTILINE))
        assert observed == list(range(entry["first_rank"], entry["first_rank"] + entry["nproc"])), (name, observed)
    assert {(row["host"], row["rank"]) for row in summary["ranks"]} == {
        (name, entry["first_rank"]) for name, entry in plan["hosts"].items()}
    for name in ("cpu1", "cpu2"):
        assert list((RUNS / "pytorch-ddp-mnist" / name / "output").glob("metrics-rank*.json"))
        assert (RUNS / "pytorch-ddp-mnist" / name / "node.log").exists()
    assert "test accuracy" in run.stdout and str(RUNS / "pytorch-ddp-mnist") in run.stdout
    # Every step on the hosts went over plain ssh from the controller: the per-host tasks had no host.
    assert FLEET_START in run.stdout
    assert ANSIBLE_READ not in run.stdout and THROUGH_ANSIBLE not in " ".join(run.stdout.split())
    assert "TASK [train : Start this host's ranks]" not in run.stdout


def test_a_job_id_with_results_is_refused_unless_forced():
    run = run_playbook("playbooks/train.yml", "-e", "job=jobs/pytorch-ddp-mnist.yml")
    assert run.returncode != 0
    assert "Job id pytorch-ddp-mnist already has results" in run.stdout + run.stderr


@pytest.mark.parametrize("name,fields,message", [
    ("lab-bad-framework", {"framework": "caffe"}, "framework"),
    ("lab-bad-script", {"script": "jobs/scripts/no_such_script.py"}, "no_such_script.py not found"),
    ("lab-bad-nproc", {"processes_per_node": 64}, "processes_per_node"),
    ("lab-bad-group", {"hosts": "no_such_group"}, "no_such_group matches no host"),
])
def test_bad_specs_fail_before_anything_starts(host, name, fields, message):
    run = run_playbook("playbooks/train.yml", "-e", _job(name, **fields))
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert message in output, output[-3000:]
    assert not (RUNS / name).exists(), "a refused job left results behind"
    with host.sudo():
        assert host.run(f"systemctl list-units --all --no-legend 'dlcluster-job-{name}*'").stdout.strip() == ""


def _scraped_steps(job_id, launcher, timeout=60):
    """Two different scraped values of the job's step counter, summed over its ranks, rising."""
    values, deadline = [], time.time() + timeout
    query = f'sum(dlcluster_job_steps_total{{job_id="{job_id}"}})'
    while time.time() < deadline and launcher.poll() is None and len(values) < 2:
        result = prometheus_query(query)  # a new value is a new scrape
        if result and (not values or result[0]["value"][1] != values[-1]):
            values.append(result[0]["value"][1])
        time.sleep(2)
    assert len(values) == 2 and float(values[1]) > float(values[0]), \
        f"the step counter of {job_id} did not rise in Prometheus while the job ran: {values}"
    return values


def test_the_roles_argument_spec_is_enforced_before_the_spec_is_read():
    run = run_playbook("playbooks/train.yml", "-e", "job=jobs/pytorch-ddp-mnist.yml",
                       "-e", json.dumps({"train_poll_seconds": "often"}))
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert "Validating arguments against arg spec 'main'" in output and "train_poll_seconds" in output, output[-3000:]
    assert "TASK [train : Read the job spec]" not in run.stdout


def test_a_killed_rank_stops_the_job_within_60s(host):
    """With one fork for two job hosts: the supervision does not hold a fork per host."""
    name = "lab-fault"
    launcher = start_playbook("playbooks/train.yml", "-e", _job(name, hparams={"epochs": 60, "step_sleep": 0.05}),
                              "-e", "force=true", "--forks", "1")
    worker = training_worker(host, name, launcher)
    # While it trains, its progress counter rises in Prometheus between two scrapes (5 s apart in the lab).
    _scraped_steps(name, launcher)
    with host.sudo():
        assert host.run(f"kill -9 {worker}").rc == 0
    killed = time.time()
    output, _ = launcher.communicate(timeout=180)
    assert launcher.returncode != 0, output[-3000:]
    assert time.time() - killed < 60, f"the playbook took {time.time() - killed:.0f} s to stop the job"
    assert re.search(rf"Job {name} failed: host cpu2 rank \d+ failed", output), output[-3000:]
    _no_job_process_left()
    for peer in ("cpu1", "cpu2"):
        assert (RUNS / name / peer / "node.log").exists(), f"the log of {peer} was not collected"
        assert list((RUNS / name / peer / "logs").rglob("stderr.log")), f"per-rank logs of {peer} missing"
    # The coordinator's verdict (cpu1, the job's first host), kept beside the results.
    verdict = json.loads((RUNS / name / "job-state.json").read_text())
    assert verdict["state"] == "failed" and verdict["first_failure"].startswith("cpu2 failed"), verdict
    assert verdict["hosts"]["cpu1"]["state"] == "stopped", verdict


def _unit_states(name):
    return {peer: lab_host(peer).run(f"systemctl is-active dlcluster-job-{name}").stdout.strip()
            for peer in ("cpu1", "cpu2")}


def test_a_host_that_fails_its_check_stops_the_job_before_any_rank_starts(host):
    """cpu2 still runs a unit of the job's name: the check fails there, and cpu1 starts nothing either."""
    name = "lab-all-or-nothing"
    with host.sudo():
        host.run_expect([0], f"systemd-run --unit=dlcluster-job-{name} sleep 300")
    try:
        run = run_playbook("playbooks/train.yml", "-e", _job(name))
    finally:
        with host.sudo():
            host.run(f"systemctl stop dlcluster-job-{name}")
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert f"Job {name} is still running on cpu2" in " ".join(output.split()), output[-3000:]
    assert not RANK_STARTS.search(output), output[-3000:]
    # Found by the read over plain ssh (the default path), not by Ansible's per-host tasks.
    assert ANSIBLE_READ not in output and THROUGH_ANSIBLE not in " ".join(output.split()), output[-3000:]
    assert _unit_states(name)["cpu1"] != "active"
    _no_job_process_left()


ENVS_FACT = "/etc/ansible/facts.d/dlcluster_envs.fact"


def test_a_host_without_the_jobs_environment_stops_the_job_everywhere(host):
    """cpu2's saved facts no longer list py3 (cpu1 has it): nothing starts on either host, cpu2 is named."""
    name = "lab-no-env"
    with host.sudo():
        host.run_expect([0], f"cp -p {ENVS_FACT} {ENVS_FACT}.test-saved && python3 -c '"
                             "import json, sys; f = json.load(open(sys.argv[1])); "
                             "f[\"envs\"] = [e for e in f[\"envs\"] if e[\"name\"] != \"py3\"]; "
                             f"json.dump(f, open(sys.argv[1], \"w\"))' {ENVS_FACT}")
    try:
        run = run_playbook("playbooks/train.yml", "-e", _job(name))
    finally:
        with host.sudo():
            host.run_expect([0], f"mv {ENVS_FACT}.test-saved {ENVS_FACT}")
        # A run through Ansible's per-host tasks caches cpu2's facts: read them again for the playbooks after this
        # test (the read over plain ssh caches nothing).
        refresh = subprocess.run([str(Path(ANSIBLE_PLAYBOOK).with_name("ansible")), "-i",
                                  os.environ["MOLECULE_INVENTORY_FILE"], "cpu2", "-b", "-m", "ansible.builtin.setup",
                                  "-a", "gather_subset=!all,!min,local"], capture_output=True, text=True, cwd=ROOT,
                                 timeout=120, check=False)
        assert refresh.returncode == 0, refresh.stdout[-2000:]
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert f"Job {name} cannot start: cpu2 cannot run job {name}: environment py3 does not exist" in output, \
        output[-3000:]
    assert "cpu1 cannot run" not in output, output[-3000:]
    assert not RANK_STARTS.search(run.stdout), run.stdout[-3000:]
    assert ANSIBLE_READ not in run.stdout and THROUGH_ANSIBLE not in output, output[-3000:]
    assert set(_unit_states(name).values()) <= {"inactive", "unknown"}, _unit_states(name)
    _no_job_process_left()


@pytest.mark.parametrize("over", ["plain ssh", "Ansible"])
def test_a_rank_that_cannot_start_on_one_host_stops_the_others(host, over):
    """A failed unit of the job's name is still loaded on cpu2: its check passes (the job is not running) but
    systemd-run refuses there; the ranks started on cpu1 are stopped, and the message names cpu2. Over plain ssh
    (the default) and through Ansible's per-host tasks (train_fleet_ssh false)."""
    name = "lab-start-fails"
    with host.sudo():
        host.run(f"systemctl reset-failed dlcluster-job-{name}")
        host.run(f"systemd-run --unit=dlcluster-job-{name} /bin/false")
        time.sleep(1)
        assert host.run(f"systemctl is-active dlcluster-job-{name}").stdout.strip() == "failed"
    extra = ["-e", OVER_ANSIBLE] if over == "Ansible" else []
    since = lab_host("cpu1").run("date +%s").stdout.strip()
    try:
        run = run_playbook("playbooks/train.yml", "-e", _job(name), "-e", "force=true", *extra)
    finally:
        with host.sudo():
            host.run(f"systemctl reset-failed dlcluster-job-{name}")
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0
    assert f"Job {name} did not start: cpu2 could not start its ranks" in output, output[-3000:]
    assert "the ranks started on the other hosts were stopped" in output
    if over == "Ansible":
        assert THROUGH_ANSIBLE in output and "per-host tasks: train_fleet_ssh is false" in output, output[-3000:]
        assert ANSIBLE_READ in run.stdout, run.stdout[-3000:]
        assert "changed: [cpu1]" in run.stdout.split("TASK [train : Stop the ranks already started")[1], \
            run.stdout[-3000:]
    else:
        assert THROUGH_ANSIBLE not in output and ANSIBLE_READ not in run.stdout, output[-3000:]
        assert "the ranks started on the other hosts were stopped (cpu1). Nothing is running." in output, \
            output[-3000:]
    # cpu1's unit started, then was stopped by the launcher (not ended by itself): systemd's own entries.
    cpu1 = lab_host("cpu1")
    with cpu1.sudo():
        journal = cpu1.run(f"journalctl --no-pager -o cat --since @{since} -u dlcluster-job-{name}.service").stdout
    assert "Started" in journal and "Stopping" in journal, journal[-2000:]
    assert _unit_states(name)["cpu1"] != "active"
    _no_job_process_left()
