"""A worker restarted in the middle of a job (a host that reboots): the job fails within 2 minutes naming it.

Named to run after the other training and monitoring tests and before the rollouts' reboots: cpu2 comes back
with every service, as after any reboot of the lab (its container's restart policy).
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import lab_host, start_playbook, training_worker  # noqa: E402

testinfra_hosts = ["ansible://cpu2"]

DDP = {"framework": "pytorch", "hosts": "workers", "script": "jobs/scripts/pytorch_ddp_mnist.py",
       "hparams_file": "jobs/hparams/mnist.conf", "hparams": {"epochs": 60, "step_sleep": 0.05}}


def container(name: str) -> str:
    """The lab host's container (lab/lab.py names it dlcluster-<lab>-<host>)."""
    return f"dlcluster-{os.environ['DL_LAB_NAME']}-{name}"


def back_up(name: str, seconds: int = 180) -> str:
    """Wait for a restarted host to answer and finish booting; its systemd state."""
    deadline, state = time.time() + seconds, ""
    while time.time() < deadline:
        try:
            with lab_host(name).sudo():
                state = lab_host(name).run("systemctl is-system-running --wait").stdout.strip()
        except Exception:  # noqa: BLE001 -- still booting: no SSH yet
            state = "unreachable"
        if state in ("running", "degraded"):
            return state
        time.sleep(3)
    return state


def test_a_worker_restarted_mid_job_fails_the_job_within_2_minutes_naming_it(host):
    name = "lab-restart"
    launcher = start_playbook("playbooks/train.yml", "-e", json.dumps({"job": {"name": name, **DDP}}),
                              "-e", "force=true")
    training_worker(host, name, launcher)
    # A hard restart: every process of cpu2 is killed at once, as in a crash, then the host boots again.
    subprocess.run(["docker", "restart", "--time", "0", container("cpu2")], check=True, capture_output=True)
    restarted = time.time()
    try:
        output, _ = launcher.communicate(timeout=300)
        took = time.time() - restarted
    finally:
        state = back_up("cpu2")
    assert launcher.returncode != 0, output[-3000:]
    assert took < 120, f"the playbook took {took:.0f} s to end the job after cpu2 restarted"
    assert re.search(rf"Job {name} failed: host cpu2 rank \d+ (lost|failed)", " ".join(output.split())), \
        output[-3000:]
    assert state in ("running", "degraded"), f"cpu2 did not come back after its restart: {state}"
    for peer in ("cpu1", "cpu2"):
        assert lab_host(peer).run("pgrep -f '[p]ytorch_ddp_mnist'").rc == 1, f"a training process is left on {peer}"
    with lab_host("cpu1").sudo():
        stopped = lab_host("cpu1").run(f"cat /home/ubuntu/runs/{name}/stopped").stdout.strip()
        lab_host("cpu1").run(f"systemctl reset-failed dlcluster-job-{name}")
    assert stopped.startswith("abort: host cpu2 "), stopped
