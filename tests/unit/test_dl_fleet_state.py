"""Unit tests of action_plugins/dl_fleet_state.py (the converged check's reader of every host at once) and of
module_utils/dl_host_state.py, which it sends to the hosts; then the plugin through ansible-playbook, with an ssh
that runs the remote command on this controller."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.module_utils import dl_host_state
from ansible_collections.dlcluster.cluster.plugins.plugin_utils import dl_fanout
from conftest import ROOT, load_script

fleet = load_script("dl_fleet_state_action", ROOT / "action_plugins" / "dl_fleet_state.py")

# The ssh plugin's settings as Ansible resolves them for the host (ansible.cfg, environment, ansible_ssh_* vars).
SETTINGS = {"become": True, "ssh_args": "-C -o ControlMaster=auto -o ControlPersist=120s",
            "ssh_common_args": "-o UserKnownHostsFile=/keys/known_hosts -o StrictHostKeyChecking=yes",
            "ssh_extra_args": "", "ssh_executable": "ssh", "host_key_checking": True, "remote_user": None,
            "port": None, "private_key_file": None, "timeout": 10}
HOST = {"inventory_hostname": "cpu1", "ansible_host": "10.0.0.2", "ansible_user": "admin", "ansible_port": 2222,
        "ansible_ssh_private_key_file": "/keys/id_ed25519",
        "ansible_facts": {"discovered_interpreter_python": "/usr/bin/python3"}}
ARGS = {"stamp": "/var/lib/dlcluster/converged.json"}
FAKE_SSH = """#!/bin/sh
# ssh for the tests: logs its arguments, then runs the remote command (its last argument) here.
printf '%s\\n' "$*" >> "$(dirname "$0")/ssh.log"
for last; do :; done
exec sh -c "$last"
"""


def test_the_ssh_command_puts_its_own_options_first_then_the_host_s_and_runs_the_reader_as_root():
    argv, why = dl_fanout.ssh_command(HOST, SETTINGS, ARGS)
    assert why == ""
    # ssh keeps the first value of an option: batch mode, no shared master and the timeout cannot be overridden.
    assert argv[:9] == ["ssh", "-T", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                        "-o"] and argv[9] == "ConnectTimeout=10"
    assert argv.index("-C") > argv.index("BatchMode=yes")
    assert "UserKnownHostsFile=/keys/known_hosts" in argv and "StrictHostKeyChecking=no" not in argv
    assert argv[argv.index("-i") + 1] == "/keys/id_ed25519" and argv[argv.index("-p") + 1] == "2222"
    assert argv[argv.index("-l") + 1] == "admin"
    assert argv[-3:-1] == ["--", "10.0.0.2"]
    assert shlex.split(argv[-1]) == ["sudo", "-n", "-H", "-u", "root", "--", "/usr/bin/python3", "-",
                                     json.dumps(ARGS, sort_keys=True)]


def test_the_ssh_command_follows_the_host_s_interpreter_become_user_and_host_key_checking():
    host = dict(HOST, ansible_python_interpreter="/opt/py/bin/python3", ansible_become_user="ops",
                ansible_ssh_executable="/usr/local/bin/ssh")
    argv, _ = dl_fanout.ssh_command(host, dict(SETTINGS, host_key_checking=False), ARGS)
    assert argv[0] == "/usr/local/bin/ssh" and "StrictHostKeyChecking=no" in argv
    assert shlex.split(argv[-1])[:7] == ["sudo", "-n", "-H", "-u", "ops", "--", "/opt/py/bin/python3"]
    argv, _ = dl_fanout.ssh_command(dict(HOST, ansible_python_interpreter="auto_silent"), SETTINGS, ARGS)
    assert shlex.split(argv[-1])[6] == "/usr/bin/python3"
    argv, _ = dl_fanout.ssh_command({"inventory_hostname": "cpu9", "ansible_python_interpreter": "python3"},
                                dict(SETTINGS, become=False, remote_user="deploy"), ARGS)
    assert argv[-2] == "cpu9" and argv[argv.index("-l") + 1] == "deploy" and "-p" not in argv
    assert shlex.split(argv[-1])[0] == "python3"


@pytest.mark.parametrize("change, why", [
    ({"ansible_connection": "local"}, "its connection is local"),
    ({"ansible_connection": "community.docker.docker"}, "its connection is community.docker.docker"),
    ({"ansible_password": "secret"}, "it logs in with a password"),
    ({"ansible_become_password": "secret"}, "sudo asks it for a password"),
    ({"ansible_become_method": "su"}, "it becomes root with su"),
    ({"ansible_facts": {}}, "its Python is not known yet (no cached facts)"),
])
def test_hosts_it_cannot_read_are_left_to_the_module_with_the_reason(change, why):
    assert dl_fanout.ssh_command(dict(HOST, **change), SETTINGS, ARGS) == (None, why)


def test_a_failed_read_says_who_failed_and_never_passes_for_a_result():
    assert fleet.parse_reply(255, "", "debug1: x\nssh: connect to host 10.0.0.2 port 22: Connection refused\n") == \
        (None, "ssh exited 255: ssh: connect to host 10.0.0.2 port 22: Connection refused")
    assert fleet.parse_reply(1, "", "sudo: a password is required\n") == \
        (None, "the reader exited 1: sudo: a password is required")
    assert fleet.parse_reply(0, "motd\nnot json\n", "") == (None, "the reader's output was not its JSON result")
    assert fleet.parse_reply(0, '{"stamp": null}\n', "") == (None, "the reader's output was not its JSON result")
    result = {"stamp": None, "probes": {}, "state": {}, "now": 1}
    assert fleet.parse_reply(0, "banner\n" + json.dumps(result) + "\n", "") == (result, "")


def test_the_reader_sent_on_stdin_reads_what_the_module_reads(tmp_path):
    managed = tmp_path / "a.conf"
    managed.write_text("x\n")
    stamp = tmp_path / "record.json"
    stamp.write_text(json.dumps({"version": 1, "probes": {"files": [str(managed), str(tmp_path / "gone")],
                                                         "users": ["root"], "sysctls": ["kernel.hostname"]}}))
    script = fleet.reader_script(Path(fleet.READER).read_text())
    done = subprocess.run([sys.executable, "-", json.dumps({"stamp": str(stamp)})], input=script,
                          capture_output=True, text=True, check=True)
    result, why = fleet.parse_reply(done.returncode, done.stdout, done.stderr)
    assert why == ""
    here = dl_host_state.read_host_state(str(stamp))
    assert result["now"] - here["now"] in (-1, 0, 1)
    assert {k: v for k, v in result.items() if k != "now"} == {k: v for k, v in here.items() if k != "now"}
    assert result["state"]["files"][str(tmp_path / "gone")] == "absent"
    assert result["state"]["files"][str(managed)].startswith("file:")


def test_the_action_reads_every_host_at_once_and_leaves_the_others_to_the_module(tmp_path):
    fake = tmp_path / "ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(0o755)
    record = {"version": 1, "probes": {"files": [str(tmp_path / "a.conf")]}}
    (tmp_path / "one.json").write_text(json.dumps(record))
    reached = {"ansible_connection": "ssh", "ansible_ssh_executable": str(fake), "ansible_become": False,
               "ansible_python_interpreter": sys.executable, "ansible_ssh_common_args": "-o 'SetEnv=A=b c'"}
    inventory = {"all": {"hosts": {"one": reached, "two": dict(reached, ansible_port=2222),
                                   "three": {"ansible_connection": "local"}}}}
    (tmp_path / "inventory.yml").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(json.dumps([{
        "hosts": "all", "gather_facts": False,
        "tasks": [{"dl_fleet_state": {"hosts": "{{ ansible_play_hosts }}", "stamp": str(tmp_path / "one.json")},
                   "run_once": True, "register": "fleet"},
                  {"ansible.builtin.copy": {"content": "{{ fleet | to_json }}", "dest": str(tmp_path / "out.json"),
                                            "mode": "0600"},
                   "run_once": True, "delegate_to": "localhost"}]}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STRATEGY="linear",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_FACT_CACHING="memory")
    done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                           str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["changed"] is False
    assert sorted(out["states"]) == ["one", "two"] and out["left"] == {"three": "its connection is local"}, out["left"]
    assert out["states"]["one"]["stamp"] == record and out["states"]["two"]["stamp"] == record
    assert out["states"]["one"]["state"]["files"] == {str(tmp_path / "a.conf"): "absent"}
    calls = (tmp_path / "ssh.log").read_text().splitlines()
    assert len(calls) == 2 and sum(" -p 2222 " in call for call in calls) == 1
    # The host's ssh arguments reach ssh as the shell would split them.
    assert all("-o SetEnv=A=b c " in call for call in calls), calls
