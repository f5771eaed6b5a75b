"""roles/train/files/dlcluster-job-agent: real agents on 127.0.0.1, each in its own job directory, real commands.

The coordinator (the first host's agent) and the members stop each other's ranks when the job ends; nothing
here depends on the controller.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_until

AGENT = Path(__file__).resolve().parents[2] / "roles" / "train" / "files" / "dlcluster-job-agent"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Job:
    """Agents of one job: start(host, command, ...) each in tmp_path/<host>."""

    def __init__(self, tmp_path, hosts):
        self.tmp = tmp_path
        self.hosts = hosts
        self.address = f"127.0.0.1:{free_port()}"
        self.procs = {}

    def start(self, host, *command, decides=True, role="", **options):
        directory = self.tmp / host
        directory.mkdir(exist_ok=True)
        argv = [sys.executable, str(AGENT), "--host", host, "--coordinator", self.address,
                "--lost-after", str(options.get("lost_after", 3)), "--join-seconds", str(options.get("join", 10)),
                "--stop-seconds", "3", "--role", role]
        if decides:
            argv.append("--decides")
        if host == self.hosts[0]:
            argv += ["--serve", ",".join(self.hosts)]
        self.procs[host] = subprocess.Popen(argv + ["--", *command], cwd=directory, stderr=subprocess.PIPE, text=True)
        return self.procs[host]

    def host_states(self):
        """{host: state} from the coordinator's job-state.json; {} until it has written one."""
        try:
            return {host: entry["state"] for host, entry in self.state()["hosts"].items()}
        except (OSError, ValueError, KeyError):
            return {}

    def joined(self, timeout=30):
        """Once every host's agent has joined the coordinator (its job-state.json says so)."""
        assert wait_until(lambda: set(self.host_states().values()) == {"running"}, timeout), \
            f"not every agent joined within {timeout} s: {self.host_states()}"

    def ranks(self, host):
        """The pids of a host's ranks (the agent's children), to end them after a test kills the agent itself."""
        proc = self.procs[host]
        found = []
        for task in Path(f"/proc/{proc.pid}/task").iterdir():
            found += [int(pid) for pid in (task / "children").read_text().split()]
        return found

    def wait(self, host, timeout=30):
        proc = self.procs[host]
        proc.wait(timeout=timeout)
        return proc.returncode, proc.stderr.read()

    def state(self):
        return json.loads((self.tmp / self.hosts[0] / "job-state.json").read_text())

    def file(self, host, name):
        path = self.tmp / host / name
        return path.read_text().strip() if path.exists() else None

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def end(pids):
    """Ranks left behind by an agent the test killed (on a real host its unit's control group ends them)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def job(tmp_path):
    jobs = []

    def make(*hosts):
        jobs.append(Job(tmp_path, list(hosts)))
        return jobs[-1]

    yield make
    for each in jobs:
        each.close()


def test_every_host_succeeds(job):
    j = job("a", "b", "c")
    j.start("a", "sleep", "0.5")
    j.start("b", "true")
    j.start("c", "sleep", "1")
    assert [j.wait(h)[0] for h in "abc"] == [0, 0, 0]
    state = j.state()
    assert state["state"] == "succeeded" and state["first_failure"] == "" and state["ended"] is True
    assert {h: (e["state"], e["exit"]) for h, e in state["hosts"].items()} == {
        "a": ("exited", 0), "b": ("exited", 0), "c": ("exited", 0)}
    assert [j.file(h, "exit_code") for h in "abc"] == ["0", "0", "0"]


def test_a_failed_member_stops_every_other_host(job):
    j = job("a", "b", "c")
    j.start("a", "sleep", "60")
    j.start("c", "sleep", "60")
    start = time.monotonic()
    j.start("b", "sh", "-c", "sleep 3; exit 3")
    codes = {h: j.wait(h, timeout=20)[0] for h in "abc"}
    assert time.monotonic() - start < 15
    assert codes["b"] == 3 and codes["a"] != 0 and codes["c"] != 0
    state = j.state()
    assert state["state"] == "failed" and state["first_failure"] == "b failed 3"
    assert state["hosts"]["a"]["state"] == state["hosts"]["c"]["state"] == "stopped"
    assert j.file("b", "exit_code") == "3"
    assert j.file("a", "exit_code") is None and j.file("a", "stopped") == "abort: host b failed"
    assert j.file("c", "stopped") == "abort: host b failed"


def test_a_failed_coordinator_host_stops_the_members(job):
    j = job("a", "b")
    j.start("b", "sleep", "60")
    j.start("a", "sh", "-c", "sleep 3; exit 7")
    assert j.wait("a")[0] == 7
    assert j.wait("b")[0] == 128 + signal.SIGTERM  # its ranks' status: stopped by SIGTERM
    assert j.state()["first_failure"] == "a failed 7"
    assert j.file("b", "stopped") == "abort: host a failed"


def test_a_member_whose_agent_dies_is_lost_and_the_job_stops(job):
    j = job("a", "b")
    j.start("a", "sleep", "60")
    member = j.start("b", "sleep", "60")
    j.joined()
    left = j.ranks("b")
    member.kill()  # the agent itself: its connection closes without an exit status
    try:
        assert j.wait("a", timeout=15)[0] != 0
        state = j.state()
        assert state["state"] == "failed" and state["first_failure"] == "b lost"
    finally:
        # The killed agent's own ranks live in their own process group: only its unit (KillMode=control-group)
        # ends them on a real host.
        end(left)


def test_a_member_that_loses_the_coordinator_stops_its_ranks(job):
    j = job("a", "b")
    coordinator = j.start("a", "sleep", "60")
    j.start("b", "sleep", "60")
    j.joined()
    left = j.ranks("a")
    coordinator.kill()
    try:
        code, err = j.wait("b", timeout=15)
        assert code == 128 + signal.SIGTERM
        assert j.file("b", "stopped") == "abort: lost the job's coordinator", err
    finally:
        end(left)


def test_the_servers_of_a_parameter_server_job_stop_when_the_chief_is_done(job):
    j = job("chief", "ps")
    j.start("chief", "sleep", "1", role="chief")
    j.start("ps", "sleep", "60", decides=False, role="ps")
    assert j.wait("chief")[0] == 0
    assert j.wait("ps")[0] == 0
    state = j.state()
    assert state["state"] == "succeeded"
    assert state["hosts"]["ps"]["state"] == "stopped" and state["hosts"]["ps"]["role"] == "ps"
    assert j.file("ps", "stopped") == "done: the job's deciding hosts finished"


def test_a_server_that_joins_after_the_chief_has_finished_is_told_the_job_is_done(job):
    """A short chief may end before a slow server joins: the join itself settles the job (it used to wait for the
    server's own end, which a parameter server never reaches)."""
    j = job("chief", "ps")
    chief = j.start("chief", "true", role="chief")
    assert wait_until(lambda: j.host_states().get("chief") == "exited"), j.host_states()
    assert chief.poll() is None, "the coordinator must serve until every host has ended"
    start = time.monotonic()
    j.start("ps", "sleep", "60", decides=False, role="ps")
    assert j.wait("chief", timeout=30)[0] == 0 and j.wait("ps", timeout=30)[0] == 0
    assert time.monotonic() - start < 15
    assert j.state()["state"] == "succeeded"
    assert j.file("ps", "stopped") == "done: the job's deciding hosts finished"


def test_a_host_that_never_joins_fails_the_job(job):
    j = job("a", "b")
    start = time.monotonic()
    j.start("a", "sleep", "60", join=2)
    assert j.wait("a", timeout=20)[0] != 0
    assert time.monotonic() - start < 15
    assert j.state()["first_failure"] == "b lost"


def test_a_unit_stopped_by_hand_on_a_member_fails_the_job(job):
    j = job("a", "b")
    j.start("a", "sleep", "60")
    member = j.start("b", "sleep", "60")
    j.joined()
    member.send_signal(signal.SIGTERM)
    # Its ranks stopped and reported, the agent ends by SIGTERM itself: systemd counts the unit stopped, not failed.
    assert j.wait("b")[0] == -signal.SIGTERM
    assert j.wait("a")[0] != 0
    assert j.state()["first_failure"] == f"b failed {128 + signal.SIGTERM}"
    assert j.file("b", "exit_code") == str(128 + signal.SIGTERM)


def test_a_member_that_cannot_reach_the_coordinator_stops_its_ranks(job):
    j = job("a", "b")  # a never starts
    code, err = j.start("b", "sleep", "60", join=2) and j.wait("b", timeout=15)
    assert code == 1
    assert j.file("b", "stopped").startswith("abort: could not reach the job's coordinator at 127.0.0.1:"), err


def test_a_frozen_member_is_lost_after_its_silence_and_the_job_stops(job):
    """SIGSTOP on a member's agent and ranks (a hung host: its connection stays open, it just says nothing)."""
    j = job("a", "b")
    j.start("a", "sleep", "60")
    member = j.start("b", "sleep", "60")
    j.joined()
    left = j.ranks("b")
    os.kill(member.pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        assert j.wait("a", timeout=20)[0] != 0
        assert time.monotonic() - frozen < 10  # --lost-after 3 here, 15 s by default
        assert j.state()["first_failure"] == "b lost"
        assert j.file("a", "stopped") == "abort: host b lost"
    finally:
        os.kill(member.pid, signal.SIGCONT)
        end(left)
