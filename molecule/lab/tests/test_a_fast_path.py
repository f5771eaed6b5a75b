"""site.yml's fast path on the converged lab (roles/converged).

A warm run leaves every host out of every role when each one's last complete run still holds; a host edited by hand
makes every host run its roles (all or nothing), is mended, and the next run leaves them all out again. Named to run
first: the lab is as molecule's idempotence stage left it (a second full run, every role, converged_enabled false
there), whose records the first warm run here compares with.
"""

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from dl_firewall import dl_firewall_fingerprint  # noqa: E402

from labtest import lab_host, plain, run_playbook  # noqa: E402

MEMBERS = ("head", "cpu1", "cpu2")
RECORD = "/var/lib/dlcluster/converged.json"
CHECK_PLAY = "Leave out the hosts whose last complete run still holds"
MODULE_PLAY = "Read the hosts the controller could not, through the module"


def sudo_run(name, command):
    host = lab_host(name)
    with host.sudo():
        return host.run(command)


def live_table(name):
    return dl_firewall_fingerprint(sudo_run(name, "nft -j -s list table inet dlcluster").stdout)


def sshd_config(name):
    return sudo_run(name, "sha256sum /etc/ssh/sshd_config").stdout.split()[0]


def warm_run():
    """site.yml; its output with the YAML callback's folded lines joined, and each play's body by title."""
    run = run_playbook("site.yml")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    # Without colours: molecule's verify forces them, and they split lines and recaps.
    stdout = plain(run.stdout)
    plays = [(play.split("]", 1)[0], play) for play in stdout.split("PLAY [")[1:]]
    return " ".join(stdout.split()), plays


def changed_roles(plays, name):
    """The roles of the tasks that reported changed on host `name` (a task without a role counts as its play)."""
    roles = set()
    for title, body in plays:
        for task in body.split("TASK [")[1:]:
            if re.search(rf"^changed: \[{name}\]", task, re.M):
                label = task.split("]", 1)[0]
                roles.add(label.split(" : ", 1)[0] if " : " in label else title)
    return roles


def reasons(output):
    """The converged check's lines ("<host> runs its roles: <why>."), to name the cause when an assertion fails."""
    return re.findall(r"\S+ runs its roles: [^']*", output)


def hosts_in(body):
    """The lab members with a task result in a play's output."""
    return {name for name in MEMBERS if re.search(rf"^(ok|changed|fatal): \[{name}\]", body, re.M)}


def role_plays(plays):
    """The plays after the check play, but the record play: the ones that run roles."""
    titles = [title for title, _ in plays]
    start = titles.index(CHECK_PLAY) + 1
    return [(title, body) for title, body in plays[start:] if not title.startswith("Record each host")]


def read_by_the_controller(plays):
    """True when the converged check read every member at once from the controller (dl_fleet_state, one ssh each):
    its play for the hosts it could not read had none."""
    body = dict(plays)[MODULE_PLAY]
    return hosts_in(body) == set() and "skipping: no hosts matched" in body


def recap(output, name):
    """(ok, changed) of host `name` in the play recap; (0, 0) when it has no line there: on a warm run the
    controller's run_once tasks report on the first host only, so the others ran no task at all. A host that
    failed or could not be reached always has its line, and must show neither."""
    assert "PLAY RECAP" in output, output[-3000:]
    found = re.search(rf"\b{name} : ok=(\d+) changed=(\d+) unreachable=(\d+) failed=(\d+)", output)
    if not found:
        return 0, 0
    assert found.group(3, 4) == ("0", "0"), found.group(0)
    return int(found.group(1)), int(found.group(2))


def test_every_member_holds_a_root_only_record_of_its_complete_run():
    for name in MEMBERS:
        host = lab_host(name)
        with host.sudo():
            record = host.file(RECORD)
            assert (record.mode, record.user) == (0o600, "root")
            content = json.loads(record.content_string)
        assert content["version"] == 1
        assert "/etc/ssh/sshd_config" in content["probes"]["files"] and len(content["probes"]["files"]) > 20
        assert content["state"]["files"]["/etc/ssh/sshd_config"].startswith("file:")
        assert "ssh.service" in content["probes"]["units"] or "ssh" in content["probes"]["units"], content["probes"]
        assert list(content["state"]["nft_tables"]) == ["inet dlcluster"]


def test_a_warm_run_leaves_every_converged_member_out_of_every_role():
    output, plays = warm_run()
    assert "runs its roles:" not in output, reasons(output)
    assert read_by_the_controller(plays), dict(plays)[MODULE_PLAY]
    for title, body in role_plays(plays):
        assert hosts_in(body) == set(), f"{title}: a converged host ran a role\n{body[-2000:]}"
    for name in MEMBERS:
        assert recap(output, name)[1] == 0


def test_a_host_edited_by_hand_brings_every_host_back_and_is_mended():
    """The issue's drift test on the fast path: sshd_config and the live ruleset edited by hand on cpu1. Every host
    runs its roles (all or nothing); cpu1 is mended, and the others, on the full path, change nothing."""
    before = sshd_config("cpu1"), live_table("cpu1")
    sudo_run("cpu1", "echo 'PasswordAuthentication yes' >> /etc/ssh/sshd_config && "
                     "nft insert rule inet dlcluster input tcp dport 9 accept")
    assert (sshd_config("cpu1"), live_table("cpu1")) != before
    output, plays = warm_run()
    assert ("cpu1 runs its roles: /etc/ssh/sshd_config changed; nftables table inet dlcluster changed."
            in output), reasons(output)
    # Found by the controller's reader: no host was read through the module.
    assert read_by_the_controller(plays), dict(plays)[MODULE_PLAY]
    for name in ("head", "cpu2"):
        assert (f"{name} runs its roles: its record holds, but not those of cpu1 "
                "(when one host runs its roles, every host does).") in output, reasons(output)
    ran = set()
    for _, body in role_plays(plays):
        ran |= hosts_in(body)
    assert ran == set(MEMBERS)
    assert (sshd_config("cpu1"), live_table("cpu1")) == before
    assert "passwordauthentication no" in sudo_run("cpu1", "sshd -T").stdout
    # The full path is idempotent: the hosts nobody edited change nothing, cpu1 only what was edited (and reloads).
    assert recap(output, "head")[1] == 0 and recap(output, "cpu2")[1] == 0
    assert recap(output, "cpu1")[1] > 0
    assert changed_roles(plays, "cpu1") <= {"ssh_hardening", "firewall", "canary"}, changed_roles(plays, "cpu1")

    again, plays = warm_run()
    assert "runs its roles:" not in again, reasons(again)
    assert all(hosts_in(body) == set() for _, body in role_plays(plays))
