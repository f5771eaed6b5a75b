"""Fleet rollouts on the converged lab: canary batches, drift repair, reboots that wait for idle hosts.

Named to run last: the reboots restart cpu1 and cpu2, and every service must come back.
"""

import json
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from dl_firewall import dl_firewall_fingerprint  # noqa: E402

from labtest import ROOT, lab_host, plain, run_playbook  # noqa: E402

MEMBERS = ("head", "cpu1", "cpu2")
LAB_STATE = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"]
RULESET = "/etc/nftables.d/dlcluster.nft"


def sudo_run(name, command):
    host = lab_host(name)
    with host.sudo():
        return host.run(command)


def firewall_state(name):
    """The ruleset file and the live table of a host (its fingerprint: no handles, counters, dynamic elements)."""
    return (sudo_run(name, f"sha256sum {RULESET}").stdout.split()[0],
            dl_firewall_fingerprint(sudo_run(name, "nft -j -s list table inet dlcluster").stdout))


def pid1_start(name):
    """PID 1's start time (clock ticks since the kernel booted): it changes when a lab host reboots."""
    return lab_host(name).run("awk '{print $22}' /proc/1/stat").stdout.strip()


# ---------------------------------------------------------------- canary -----

def test_a_failure_on_the_canary_leaves_every_other_host_unchanged():
    """The firewall rolls out to one host first; nft failing there stops the run before the others."""
    gateway = json.loads((LAB_STATE / "network.json").read_text())["gateway"]
    # The canary plays run in sorted order: the first host by name is the canary.
    canary, others = sorted(MEMBERS)[0], sorted(MEMBERS)[1:]
    before = {name: firewall_state(name) for name in MEMBERS}
    # The canary's nft fails every call: its new ruleset cannot even be checked.
    sudo_run(canary, "mv /usr/sbin/nft /usr/sbin/nft.real && "
                     "printf '#!/bin/sh\\necho injected failure >&2\\nexit 1\\n' > /usr/sbin/nft && "
                     "chmod 0755 /usr/sbin/nft")
    try:
        # A real change for every host: one more admin network.
        run = run_playbook("playbooks/firewall.yml", "-e",
                           json.dumps({"dl_admin_networks": [f"{gateway}/32", "10.99.0.0/24"]}))
    finally:
        sudo_run(canary, "mv -f /usr/sbin/nft.real /usr/sbin/nft")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    # The probe (check mode, every host) finds the change on all three; the canary play then stops at the first.
    canary_play = output.split("canary first", 1)[1]
    assert f"fatal: [{canary}]" in canary_play and "injected failure" in canary_play, output[-4000:]
    for name in others:
        assert f"ok: [{name}]" not in canary_play and f"changed: [{name}]" not in canary_play, output[-4000:]
        assert firewall_state(name) == before[name], f"{name} changed although the canary failed"
    assert firewall_state(canary) == before[canary]


def test_the_first_converge_probed_no_host_and_ignored_no_error():
    """On fresh hosts the canary plays' check-mode probes are skipped (no rollout mark yet): nothing failed and was
    ignored in the lab's first converge (captured at -vvv by scripts/molecule-suite.sh)."""
    log = ROOT / ".ansible" / "lab-converge-vvv.log"
    assert log.exists(), f"{log} is missing: scripts/molecule-suite.sh writes it (make molecule)"
    output = plain(log.read_text(errors="replace"))
    recap = re.findall(r"^\W*(head|cpu1|cpu2)\s+:\s+ok=\d+.*?ignored=(\d+)", output, re.M)
    assert sorted(name for name, _ in recap) == ["cpu1", "cpu2", "head"], recap
    assert all(ignored == "0" for _, ignored in recap), recap


def test_every_member_carries_the_marks_of_the_three_rollouts():
    """Every host came through the three canary plays, so later runs probe it first."""
    for name in MEMBERS:
        marks = lab_host(name).run("ls /var/lib/dlcluster/rollout").stdout.split()
        assert sorted(marks) == ["firewall", "notebooks", "ssh_hardening"], (name, marks)


# ---------------------------------------------------------------- drift -----

def test_a_warm_run_restores_sshd_config_and_the_ruleset_edited_by_hand():
    """The probe finds the drift on cpu1 alone: only cpu1 goes through the canary plays, which restore both files."""
    before_sshd = sudo_run("cpu1", "sha256sum /etc/ssh/sshd_config").stdout.split()[0]
    before_fw = firewall_state("cpu1")
    sudo_run("cpu1", "echo 'PasswordAuthentication yes' >> /etc/ssh/sshd_config && "
                     f"sed -i '0,/accept/s//drop/' {RULESET}")
    assert sudo_run("cpu1", "sha256sum /etc/ssh/sshd_config").stdout.split()[0] != before_sshd
    run = run_playbook("site.yml", "--tags", "security")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr
    plays = {play.split("]", 1)[0]: play for play in run.stdout.split("PLAY [")[1:]}
    canary = {title: play for title, play in plays.items() if "canary first" in title}
    assert {title.split(",")[0] for title in canary} == {"SSH hardening", "Firewall", "Notebooks and TensorBoard"}
    for title, play in canary.items():
        if title.startswith("Notebooks"):  # not in --tags security: the probe marked nobody
            assert "skipping: no hosts matched" in play, play
        else:
            assert "changed: [cpu1]" in play, play
            assert "[head]" not in play and "[cpu2]" not in play, play
    assert sudo_run("cpu1", "sha256sum /etc/ssh/sshd_config").stdout.split()[0] == before_sshd
    assert firewall_state("cpu1") == before_fw
    effective = sudo_run("cpu1", "sshd -T").stdout
    assert "passwordauthentication no" in effective


# ---------------------------------------------------------------- reboots -----

@pytest.fixture()
def busy_cpu2():
    sudo_run("cpu2", "systemd-run --unit=dlcluster-job-rebootprobe sleep 900")
    yield
    sudo_run("cpu2", "systemctl stop dlcluster-job-rebootprobe")


def test_reboot_play_reboots_what_needs_it_and_holds_a_busy_host(busy_cpu2):
    for name in ("cpu1", "cpu2"):
        sudo_run(name, "echo '*** System restart required ***' > /var/run/reboot-required && "
                       "echo linux-image-test >> /var/run/reboot-required.pkgs")
    started = {name: pid1_start(name) for name in MEMBERS}
    try:
        run = run_playbook("playbooks/reboot.yml", "-e", "batch=50%")
    finally:
        # cpu2 was held, so its marker stays; the next tests must not find it pending (and reboot it).
        sudo_run("cpu2", "rm -f /var/run/reboot-required /var/run/reboot-required.pkgs")
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "cpu2 needs a reboot (reboot-required: /var/run/reboot-required: linux-image-test" in output
    assert "dlcluster-job-rebootprobe" in output
    assert pid1_start("cpu1") != started["cpu1"], "cpu1 needed a reboot and was idle"
    assert pid1_start("cpu2") == started["cpu2"], "cpu2 ran a job and was rebooted anyway"
    assert pid1_start("head") == started["head"], "head needed nothing and was rebooted"
    # cpu1 came back whole: the pending marker is gone, every service is back.
    cpu1 = lab_host("cpu1")
    assert not cpu1.file("/var/run/reboot-required").exists
    for unit in ("ssh", "chrony", "docker", "slurmd"):
        assert cpu1.service(unit).is_running, unit
    assert sudo_run("cpu1", "nft list table inet dlcluster").rc == 0, "the firewall is not loaded after the reboot"
    # Slurm drained cpu1 for its reboot and took it back afterwards.
    assert "TASK [reboot : Drain the Slurm node for the reboot]" in output
    assert lab_host("head").check_output("sinfo --noheader --Node --nodes cpu1 --format '%T %E'") == "idle none"


# make test-full only: the reboot and the hold of a busy host are proven above; this forces past the hold.
@pytest.mark.full
def test_forced_reboot_of_the_busy_host(busy_cpu2):
    """Forced: cpu2 reboots despite its job. It was left drained by an interrupted run of the play (our reason):
    this run takes it back once it is up again."""
    started = pid1_start("cpu2")
    sudo_run("cpu2", "echo '*** System restart required ***' > /var/run/reboot-required")
    assert sudo_run("head", "scontrol update NodeName=cpu2 State=DRAIN "
                            "Reason='dlcluster reboot (playbooks/reboot.yml)'").rc == 0
    run = run_playbook("playbooks/reboot.yml", "--limit", "cpu2", "-e", "reboot_force=true")
    assert run.returncode == 0, run.stdout + run.stderr
    assert pid1_start("cpu2") != started
    assert lab_host("cpu2").run("systemctl is-active dlcluster-job-rebootprobe").stdout.strip() != "active"
    assert lab_host("head").check_output("sinfo --noheader --Node --nodes cpu2 --format '%T %E'") == "idle none"


def test_a_node_an_interrupted_run_left_drained_is_taken_back_without_a_reboot():
    """cpu1 rebooted, then the run died before resuming it: the next run finds nothing pending on cpu1 and takes it
    back; a node drained by an operator stays drained."""
    started = pid1_start("cpu1")
    assert sudo_run("head", "scontrol update NodeName=cpu1 State=DRAIN Reason='dlcluster reboot (playbooks/reboot.yml)'"
                    " && scontrol update NodeName=cpu2 State=DRAIN Reason='operator: disk check'").rc == 0
    try:
        run = run_playbook("playbooks/reboot.yml")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr
        assert pid1_start("cpu1") == started
        sinfo = lab_host("head").check_output("sinfo --noheader --Node --nodes cpu1,cpu2 --format '%N %T %E'")
        assert sinfo.splitlines() == ["cpu1 idle none", "cpu2 drained operator: disk check"], sinfo
    finally:
        sudo_run("head", "scontrol update NodeName=cpu1,cpu2 State=RESUME")


def test_a_broken_detector_stops_the_reboot_play_before_any_reboot():
    started = {name: pid1_start(name) for name in MEMBERS}
    sudo_run("head", "printf '#!/bin/sh\\nexit 3\\n' > /etc/dlcluster/reboot/needs.d/broken && "
                     "chmod 0755 /etc/dlcluster/reboot/needs.d/broken && touch /var/run/reboot-required")
    try:
        run = run_playbook("playbooks/reboot.yml")
    finally:
        sudo_run("head", "rm -f /etc/dlcluster/reboot/needs.d/broken /var/run/reboot-required")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "head: a reboot check is broken (needs.d/broken exited 3" in output
    assert {name: pid1_start(name) for name in MEMBERS} == started
