"""Slurm on the lab (roles/slurm, playbooks/slurm*.yml) and jobs through it (train.yml with backend slurm).

slurmctld runs on head, slurmd on cpu1 and cpu2 (groups slurm_controller, slurm_nodes); the partition
workers is the default. The lab's hosts are containers, so Slurm tracks jobs by process tree
(proctrack/linuxproc); real hosts get cgroups.
"""

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import ROOT, lab_address, lab_host, probe, run_playbook, start_playbook, training_worker  # noqa: E402

testinfra_hosts = ["ansible://head"]

RUNS = ROOT / "runs"
WORKERS = ("cpu1", "cpu2")
DDP = {"backend": "slurm", "framework": "pytorch", "hosts": "workers", "script": "jobs/scripts/pytorch_ddp_mnist.py",
       "hparams_file": "jobs/hparams/mnist.conf"}


def _job(name, **fields) -> str:
    return json.dumps({"job": {"name": name, **DDP, **fields}})


def _sinfo(host) -> dict:
    """{node: (state, cpus, reason)} from sinfo on the controller."""
    lines = host.check_output("sinfo --noheader --Node --format '%N|%T|%c|%E'").splitlines()
    return {parts[0]: tuple(parts[1:]) for parts in (line.split("|") for line in lines)}


def _no_job_process_left(pattern):
    for name in WORKERS:
        assert lab_host(name).run(f"pgrep -f '{pattern}'").rc == 1, f"a process of the job is left on {name}"


def test_sinfo_shows_every_worker_idle_with_the_cpus_of_its_facts(host):
    nodes = _sinfo(host)
    assert sorted(nodes) == list(WORKERS), nodes
    for name in WORKERS:
        facts = lab_host(name).ansible("setup", "filter=ansible_processor_*")["ansible_facts"]
        cpus = (facts["ansible_processor_count"] * facts["ansible_processor_cores"]
                * facts["ansible_processor_threads_per_core"])
        state, slurm_cpus, _ = nodes[name]
        assert state == "idle", nodes
        assert int(slurm_cpus) == cpus, f"{name}: Slurm has {slurm_cpus} CPUs, the facts {cpus}"
    config = host.file("/etc/slurm/slurm.conf").content_string
    assert "PartitionName=workers Nodes=cpu1,cpu2 Default=YES" in config
    # The lab's hosts are containers: Slurm says how it tracks jobs there.
    assert "ProctrackType=proctrack/linuxproc" in config and "a Slurm host is a container" in config


def test_one_munge_key_for_the_cluster_and_credentials_cross_hosts(host):
    digests = set()
    for name in ("head", *WORKERS):
        peer = lab_host(name)
        with peer.sudo():
            key = peer.file("/etc/munge/munge.key")
            assert (key.user, key.group, key.mode) == ("munge", "munge", 0o400), name
            digests.add(peer.check_output("sha256sum /etc/munge/munge.key").split()[0])
    assert len(digests) == 1, "the hosts hold different munge keys"
    key_file = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"] / "slurm" / "munge.key"
    assert hashlib.sha256(key_file.read_bytes()).hexdigest() in digests
    assert key_file.stat().st_mode & 0o077 == 0, "the controller's munge key is readable by others"
    credential = host.check_output("munge --no-input")
    decoded = lab_host("cpu2").run(f"echo '{credential}' | unmunge")
    assert decoded.rc == 0 and "STATUS:          Success" in decoded.stdout, decoded.stdout + decoded.stderr


def test_slurm_ports_answer_members_and_not_outsiders(host):
    head = lab_address("head")
    assert probe(lab_host("cpu1"), "tcp", head, 6817) == "open"
    assert probe(lab_host("head"), "tcp", lab_address("cpu2"), 6818) == "open"
    assert probe(lab_host("outsider"), "tcp", head, 6817) == "timeout"
    assert probe(lab_host("outsider"), "tcp", lab_address("cpu1"), 6818) == "timeout"


def test_ddp_sample_submitted_without_waiting_then_attached_reaches_090_with_the_direct_backends_summary(host):
    """The shipped Slurm spec, submitted with wait=false (the run ends at the submission and says how to come
    back), then attached: the attached run watches it to the end, collects and summarises as a waiting run does.
    Attaching with another job's spec is refused, naming both."""
    name = "pytorch-ddp-mnist-slurm"
    submitted = run_playbook("playbooks/train.yml", "-e", f"job=jobs/{name}.yml", "-e", "force=true",
                             "-e", "wait=false")
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr
    job_id = re.search(r"Slurm job (\d+)", submitted.stdout).group(1)
    assert f"attach={job_id}" in " ".join(submitted.stdout.split())
    assert "TASK [train : Watch the Slurm job until it ends]" not in submitted.stdout
    other = run_playbook("playbooks/train.yml", "-e", _job("lab-slurm-other", hparams={"epochs": 1}), "-e",
                         f"attach={job_id}")
    words = " ".join((other.stdout + other.stderr).split())
    assert other.returncode != 0 and f"Slurm job {job_id} is {name}, not job lab-slurm-other" in words, words[-2000:]
    run = run_playbook("playbooks/train.yml", "-e", f"job=jobs/{name}.yml", "-e", f"attach={job_id}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
    assert "TASK [train : Watch the Slurm job until it ends]" in run.stdout
    summary = json.loads((RUNS / name / "summary.json").read_text())
    assert summary["ok"] and summary["test_accuracy"] >= 0.90, summary["message"]
    assert {row["host"] for row in summary["ranks"]} == set(WORKERS)
    assert sorted(row["rank"] for row in summary["ranks"]) == [0, 1]
    plan = json.loads((RUNS / name / "plan.json").read_text())
    assert plan["backend"] == "slurm" and plan["slurm"]["partition"] == "workers" and plan["slurm"]["nodes"] == 2
    assert (RUNS / name / "job.sbatch").read_text().startswith("#!/bin/bash")
    state = host.check_output(f"scontrol show job --oneliner {job_id}")
    assert state.count("JobState=COMPLETED") == 1 and "NodeList=cpu[1-2]" in state, state
    # What Slurm allocated is added to the plan once the job ran.
    assert plan["allocation"] == {"job_id": job_id, "nodes": ["cpu1", "cpu2"], "batch_host": "cpu1",
                                  "state": "COMPLETED", "exit_code": "0:0"}, plan["allocation"]
    for peer in WORKERS:
        assert list((RUNS / name / peer / "output").glob("metrics-rank*.json")), f"metrics of {peer} missing"
        assert (RUNS / name / peer / "node.log").exists(), f"the log of {peer} was not collected"
    assert "test accuracy" in run.stdout


def test_a_killed_rank_fails_the_job_in_slurm_names_the_node_and_leaves_no_process(host):
    name = "lab-slurm-fault"
    launcher = start_playbook("playbooks/train.yml", "-e", _job(name, hparams={"epochs": 60, "step_sleep": 0.05}),
                              "-e", "force=true")
    cpu2 = lab_host("cpu2")
    worker = training_worker(cpu2, name, launcher)
    with cpu2.sudo():
        assert cpu2.run(f"kill -9 {worker}").rc == 0
    output, _ = launcher.communicate(timeout=240)
    assert launcher.returncode != 0, output[-3000:]
    assert re.search(rf"Job {name} failed: host cpu2 rank \d+ failed", output), output[-3000:]
    job_id = re.search(r"Slurm job (\d+)", output).group(1)
    state = host.check_output(f"scontrol show job --oneliner {job_id}")
    assert "JobState=FAILED" in state, state
    _no_job_process_left(f"[/]home/ubuntu/runs/{name}/code/")
    assert (RUNS / name / "cpu2" / "node.log").exists()


def test_a_drained_node_gets_no_job_and_resume_makes_it_usable_again(host):
    drain = run_playbook("playbooks/slurm-drain.yml", "-e", "nodes=cpu2", "-e", json.dumps({"reason": "lab maintenance"}))
    try:
        assert drain.returncode == 0, drain.stdout[-3000:] + drain.stderr
        state, _, reason = _sinfo(host)["cpu2"]
        assert state == "drained" and reason == "lab maintenance", (state, reason)
        again = run_playbook("playbooks/slurm-drain.yml", "-e", "nodes=cpu2", "-e", json.dumps({"reason": "lab maintenance"}))
        assert again.returncode == 0 and re.search(r"changed=0\s", again.stdout), again.stdout[-2000:]
        # Three one-node jobs: every one runs on cpu1.
        ran_on = {host.check_output("srun --nodes=1 --partition=workers --time=1 hostname") for _ in range(3)}
        assert ran_on == {"cpu1"}, ran_on
        refused = host.run("srun --nodes=1 --nodelist=cpu2 --immediate=5 --time=1 hostname")
        assert refused.rc != 0, refused.stdout
    finally:
        resume = run_playbook("playbooks/slurm-drain.yml", "-e", "nodes=cpu2", "-e", "resume=true")
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr
    assert _sinfo(host)["cpu2"][0] == "idle"
    assert host.check_output("srun --nodes=1 --nodelist=cpu2 --time=1 hostname") == "cpu2"


def test_a_slurm_job_makes_its_node_busy_for_the_reboot_play(host):
    job_id = host.check_output("sbatch --parsable --nodes=1 --nodelist=cpu2 --time=2 --wrap 'sleep 120'")
    try:
        status = {}
        for _ in range(20):
            with lab_host("cpu2").sudo():
                status = json.loads(lab_host("cpu2").check_output("/usr/local/sbin/dlcluster-reboot-status"))
            if status["busy"]:
                break
            time.sleep(1)
        assert status["busy"] == [f"slurm: Slurm jobs running here: {job_id}"], status
        with lab_host("cpu1").sudo():
            assert json.loads(lab_host("cpu1").check_output("/usr/local/sbin/dlcluster-reboot-status"))["busy"] == []
    finally:
        host.run(f"scancel {job_id}")


def test_bad_slurm_jobs_are_refused_before_anything_is_submitted(host):
    """Every refusal of dl_slurm_job_resources (partition, processes and GPUs per node, nodes) is unit-tested; here
    the lab's own sinfo refuses a partition Slurm does not have, before anything is submitted. (Too many processes
    per node are refused earlier still, by the checks both backends share: test_train.)"""
    run = run_playbook("playbooks/train.yml", "-e", _job("lab-slurm-bad", partition="nope"))
    output = " ".join((run.stdout + run.stderr).split())
    assert run.returncode != 0 and "job field partition is 'nope', which Slurm does not have" in output, \
        output[-3000:]
    assert "TASK [train : Submit the job" not in run.stdout
    assert host.check_output("squeue --noheader --states=all --name=lab-slurm-bad --format=%i") == ""


def test_a_job_submitted_without_waiting_is_cancelled_and_leaves_no_process(host):
    """wait=false then cancel= (attach= is shown with the DDP sample above); the same id again while Slurm holds the
    job is refused, and so is an unknown job id."""
    slow = "lab-slurm-cancel"
    submitted = run_playbook("playbooks/train.yml", "-e", _job(slow, hparams={"epochs": 60, "step_sleep": 0.05}),
                             "-e", "force=true", "-e", "wait=false")
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr
    job_id = re.search(r"Slurm job (\d+)", submitted.stdout).group(1)
    try:
        # The same id again, even forced, while Slurm still holds the job: refused before anything changes.
        again = run_playbook("playbooks/train.yml", "-e", _job(slow, hparams={"epochs": 60, "step_sleep": 0.05}),
                             "-e", "force=true", "-e", "wait=false")
        words = " ".join((again.stdout + again.stderr).split())
        assert again.returncode != 0 and f"Job {slow} is still in Slurm (job {job_id})" in words, words[-3000:]
        assert "TASK [train : Submit the job" not in again.stdout
        unknown = run_playbook("playbooks/train.yml", "-e", "cancel=999999")
        assert unknown.returncode != 0 and "Slurm has no job 999999" in unknown.stdout + unknown.stderr
        cancelled = run_playbook("playbooks/train.yml", "-e", f"cancel={job_id}")
        assert cancelled.returncode == 0 and f"Slurm job {job_id} cancelled" in cancelled.stdout, cancelled.stdout[-3000:]
        state = ""
        for _ in range(30):
            state = host.check_output(f"scontrol show job --oneliner {job_id}")
            if "JobState=CANCELLED" in state:
                break
            time.sleep(1)
        assert "JobState=CANCELLED" in state, state
        for _ in range(15):
            if all(lab_host(n).run(f"pgrep -f '[/]home/ubuntu/runs/{slow}/code/'").rc == 1 for n in WORKERS):
                break
            time.sleep(1)
        _no_job_process_left(f"[/]home/ubuntu/runs/{slow}/code/")
    finally:
        host.run(f"scancel {job_id}")  # a failed test leaves no job holding the nodes
