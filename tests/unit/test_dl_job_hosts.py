"""Unit tests of the launcher over plain ssh: module_utils/dl_job_host.py (a job's steps on one host, sent to every
host on stdin), action_plugins/dl_job_hosts.py (one step on every host at once, through ansible-playbook with an
ssh that runs the remote command here), and the plan's filters reading what the hosts reported."""

import base64
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
from ansible.errors import AnsibleFilterError
from ansible.module_utils import dl_job_host
from conftest import ROOT

from dl_train_plan import dl_job_plan, dl_job_problems
from dl_train_units import dl_job_host_checks, dl_job_read_args, dl_job_step_args
from test_dl_train import LO, cluster, iface, job

FAKE_SSH = """#!/bin/sh
# ssh for the tests: logs its arguments, then runs the remote command (its last argument) here.
printf '%s\\n' "$*" >> "$(dirname "$0")/ssh.log"
for last; do :; done
exec sh -c "$last"
"""


# ---------------------------------------------------------------------------
# module_utils/dl_job_host.py

def test_local_facts_are_read_as_setup_reads_them_json_ini_and_executable(tmp_path):
    (tmp_path / "dlcluster_envs.fact").write_text(json.dumps({"home": "/home/ops", "envs": [{"name": "py3"}]}))
    (tmp_path / "site.fact").write_text("[where]\nrack = r12\n")
    script = tmp_path / "live.fact"
    script.write_text('#!/bin/sh\necho \'{"up": true}\'\n')
    script.chmod(0o755)
    (tmp_path / "other.txt").write_text("not a fact")
    assert dl_job_host.local_facts(str(tmp_path)) == {
        "dlcluster_envs": {"home": "/home/ops", "envs": [{"name": "py3"}]}, "live": {"up": True},
        "site": {"where": {"rack": "r12"}}}


def test_network_facts_match_what_ansible_setup_gathers_on_the_same_machine(tmp_path):
    """The plan reads the interfaces' names, addresses, activity and type, and default_ipv4: compared here with
    Ansible's own network facts of this machine."""
    out = tmp_path / "facts.json"
    tasks = [{"ansible.builtin.setup": {"gather_subset": ["!all", "!min", "network"]}},
             {"ansible.builtin.copy": {"content": "{{ ansible_facts | to_json }}", "dest": str(out), "mode": "0600"}}]
    done = run_play(tmp_path, tasks, {"here": {"ansible_connection": "local",
                                               "ansible_python_interpreter": sys.executable}})
    assert done.returncode == 0, done.stdout[-3000:]
    mine, facts = dl_job_host.network_facts(), json.loads(out.read_text())
    assert sorted(mine["interfaces"]) == sorted(facts["interfaces"])
    assert "lo" in mine["interfaces"] and mine["lo"]["type"] == "loopback"
    for name in mine["interfaces"]:
        key = name.replace("-", "_").replace(":", "_")
        theirs, ours = facts[key], mine[key]
        assert ours["device"] == theirs["device"] and ours["active"] == theirs["active"], name
        assert (ours.get("ipv4") or {}).get("address") == (theirs.get("ipv4") or {}).get("address"), name
        assert [a["address"] for a in ours.get("ipv4_secondaries", [])] == \
            [a["address"] for a in theirs.get("ipv4_secondaries", [])], name
        assert sorted(a["address"] for a in ours.get("ipv6", [])) == \
            sorted(a["address"] for a in theirs.get("ipv6", [])), name
    for field in ("interface", "address", "gateway"):
        assert mine["default_ipv4"].get(field) == facts["default_ipv4"].get(field), field


def archive_of(*members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return base64.b64encode(buffer.getvalue()).decode()


def test_unpack_writes_the_jobs_files_and_refuses_a_bad_archive_before_writing(tmp_path):
    good = archive_of(("runs", None), ("runs/j", None), ("runs/j/train.py", b"print(1)\n"))
    done = dl_job_host.unpack({"dest": str(tmp_path), "archive": good, "root": "runs/j"})
    assert done == {"ok": True, "path": str(tmp_path / "runs" / "j"), "files": 1}
    assert (tmp_path / "runs" / "j" / "train.py").read_text() == "print(1)\n"
    bad = archive_of(("runs/j/x", b"x"), ("etc/passwd", b"x"))
    refused = dl_job_host.unpack({"dest": str(tmp_path / "elsewhere"), "archive": bad, "root": "runs/j"})
    assert refused["ok"] is False and "is not a directory on this host" in refused["msg"]
    refused = dl_job_host.unpack({"dest": str(tmp_path), "archive": bad, "root": "runs/j"})
    assert refused == {"ok": False, "msg": "dl_job_files: refused the archive, nothing written: member "
                                           "'etc/passwd' is not below runs/j"}
    assert not (tmp_path / "etc").exists() and not (tmp_path / "runs" / "j" / "x").exists()


def test_launch_starts_only_where_the_files_were_unpacked(tmp_path):
    good = archive_of(("runs", None), ("runs/j", None), ("runs/j/train.py", b"print(1)\n"))
    marker = tmp_path / "started"
    done = dl_job_host.launch({"dest": str(tmp_path), "archive": good, "root": "runs/j",
                               "argv": ["sh", "-c", f"test -f {tmp_path}/runs/j/train.py && touch {marker}"]})
    assert done == {"ok": True, "rc": 0, "msg": "", "files": 1} and marker.exists()
    marker.unlink()
    refused = dl_job_host.launch({"dest": str(tmp_path / "gone"), "archive": good, "root": "runs/j",
                                  "argv": ["touch", str(marker)]})
    assert refused["ok"] is False and "is not a directory on this host" in refused["msg"] and not marker.exists()


def test_start_reports_the_commands_refusal_and_main_prints_one_json_line(tmp_path, capsys):
    assert dl_job_host.start({"argv": ["sh", "-c", "echo refused >&2; exit 3"]}) == \
        {"ok": False, "rc": 3, "msg": "refused"}
    dl_job_host.main(["-", json.dumps({"step": "start", "argv": ["touch", str(tmp_path / "started")]})])
    assert json.loads(capsys.readouterr().out) == {"ok": True, "rc": 0, "msg": ""}
    assert (tmp_path / "started").exists()
    dl_job_host.main(["-", json.dumps({"step": "start", "argv": ["no-such-program-here"]})])
    assert json.loads(capsys.readouterr().out) == {"ok": False, "msg": "no-such-program-here is not installed on "
                                                                       "this host"}


# ---------------------------------------------------------------------------
# action_plugins/dl_job_hosts.py through ansible-playbook

def run_play(tmp_path, tasks, hosts):
    (tmp_path / "inventory.yml").write_text(json.dumps({"all": {"hosts": hosts}}))
    (tmp_path / "play.yml").write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STRATEGY="linear",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_FACT_CACHING="memory")
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                           str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def test_each_step_runs_on_every_host_at_once_with_its_own_arguments_inside_the_program(tmp_path):
    fake = tmp_path / "ssh"
    fake.write_text(FAKE_SSH)
    fake.chmod(0o755)
    reached = {"ansible_connection": "ssh", "ansible_ssh_executable": str(fake), "ansible_become": False,
               "ansible_python_interpreter": sys.executable}
    hosts = {"one": reached, "two": dict(reached, ansible_port=2222), "three": {"ansible_connection": "local"}}
    out = tmp_path / "out.json"
    tasks = [
        {"dl_job_hosts": {"hosts": ["one", "two", "three"], "step": "read", "become": False,
                          "args": {"unit": "dlcluster-job-x"}, "per_host": {"one": {"textfile_dir": str(tmp_path)}}},
         "run_once": True, "register": "read"},
        {"dl_job_hosts": {"hosts": ["one", "two"], "step": "start", "become": False,
                          "per_host": {"one": {"argv": ["touch", str(tmp_path / "one-started")]},
                                       "two": {"argv": ["sh", "-c", "echo no unit >&2; exit 1"]}}},
         "run_once": True, "register": "started"},
        {"ansible.builtin.copy": {"content": "{{ {'read': read, 'started': started} | to_json }}", "dest": str(out),
                                  "mode": "0600"}, "run_once": True, "delegate_to": "localhost"}]
    done = run_play(tmp_path, tasks, hosts)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    read, started = result["read"], result["started"]
    assert read["refused"] == {"three": "its connection is local"} and read["failed_hosts"] == {}
    assert sorted(read["results"]) == ["one", "two"] and read["changed"] is False
    one = read["results"]["one"]
    assert "lo" in one["facts"]["interfaces"] and one["facts"]["lo"]["ipv4"]["address"] == "127.0.0.1"
    assert one["host_state"]["stdout_lines"][1:] == [f"directory:{__import__('grp').getgrgid(os.getgid()).gr_name}"]
    assert len(read["results"]["two"]["host_state"]["stdout_lines"]) == 1
    # The start: one host started, the other's refusal named; the task does not fail, the role decides.
    assert (tmp_path / "one-started").exists() and started["changed"] is True
    assert started["failed_hosts"] == {"two": "no unit"}
    # The step's arguments travel inside the program on stdin, not on ssh's command line.
    calls = (tmp_path / "ssh.log").read_text().splitlines()
    assert len(calls) == 4 and all(call.endswith(f"{sys.executable} -") for call in calls), calls
    assert sum(" -p 2222 " in call for call in calls) == 2


def test_a_host_whose_ssh_fails_is_named_and_nothing_is_taken_for_its_answer(tmp_path):
    broken = tmp_path / "ssh"
    broken.write_text("#!/bin/sh\necho 'ssh: connect to host x port 22: Connection refused' >&2\nexit 255\n")
    broken.chmod(0o755)
    hosts = {"one": {"ansible_ssh_executable": str(broken), "ansible_python_interpreter": sys.executable}}
    out = tmp_path / "out.json"
    tasks = [{"dl_job_hosts": {"hosts": ["one"], "step": "read", "become": False}, "run_once": True,
              "register": "read"},
             {"ansible.builtin.copy": {"content": "{{ read | to_json }}", "dest": str(out), "mode": "0600"},
              "run_once": True, "delegate_to": "localhost"}]
    done = run_play(tmp_path, tasks, hosts)
    assert done.returncode == 0, done.stdout[-3000:]
    read = json.loads(out.read_text())
    assert read["results"] == {} and read["failed_hosts"] == {
        "one": "ssh exited 255: ssh: connect to host x port 22: Connection refused"}


# ---------------------------------------------------------------------------
# The plan's filters over what the hosts reported

def test_the_plan_and_the_checks_read_what_the_hosts_reported_over_their_hostvars():
    names, hostvars = cluster("10.0.0.2", "10.0.0.3")
    # Stale facts in hostvars: node1's interface moved to 10.0.0.9 (dl_address), the report says where it is now.
    hostvars["node1"].update(dl_address="10.0.0.9", ansible_eth0=iface("eth0", "10.0.0.3"))
    facts = {"interfaces": ["lo", "ens5"], "lo": LO, "ens5": iface("ens5", "10.0.0.9"),
             "local": {"dlcluster_envs": {"home": "/srv/ops", "envs": [{"name": "py3", "path": "/srv/ops/py3",
                                                                         "frameworks": ["pytorch"]}]}}}
    reported = {"node1": {"facts": facts, "host_state": {"stdout_lines": ["inactive"]}}}
    plan = dl_job_plan(job(), names, hostvars, reported)
    assert plan["hosts"]["node1"]["socket_ifname"] == "ens5"
    assert dl_job_plan(job(), names, hostvars)["hosts"]["node1"]["socket_ifname"] == ""
    settings = {"unit": "dlcluster-job-mnist", "user": "ops", "textfile_group": "g"}
    checked = dl_job_host_checks({"id": "mnist", "venv": "py3", "framework": "pytorch"}, ["node1"], hostvars,
                                 settings, reported)
    assert checked == {"problems": [], "runtime": {"node1": {"dir": "/srv/ops/runs/mnist", "env_path": "/srv/ops/py3",
                                                             "keras_backend": "", "metrics": False}}}
    reported["node1"]["host_state"] = {"stdout_lines": ["active"]}
    assert "Job mnist is still running on node1" in dl_job_host_checks(
        {"id": "mnist", "venv": "py3", "framework": "pytorch"}, ["node1"], hostvars, settings, reported)["problems"][0]
    assert dl_job_problems(job(), names, hostvars, {"node1": {"facts": {"interfaces": []}}}) == []
    with pytest.raises(AnsibleFilterError, match="reported must be a mapping"):
        dl_job_problems(job(), names, hostvars, ["node1"])


def test_each_step_gets_each_hosts_arguments_from_the_plan():
    plan = {"hosts": {"a": {"dir": "/home/ops/runs/j", "argv": ["systemd-run", "x"]},
                      "b": {"dir": "/srv/h/runs/j/", "argv": ["systemd-run", "y"]}}}
    assert dl_job_step_args(plan, "unpack") == {"a": {"dest": "/home/ops"}, "b": {"dest": "/srv/h"}}
    assert dl_job_step_args(plan, "start") == {"a": {"argv": ["systemd-run", "x"]}, "b": {"argv": ["systemd-run", "y"]}}
    with pytest.raises(AnsibleFilterError, match="run dl_job_units first"):
        dl_job_step_args({"hosts": {"a": {"dir": "/h/runs/j"}}}, "start")
    assert dl_job_step_args(plan, "launch")["b"] == {"dest": "/srv/h", "argv": ["systemd-run", "y"]}
    with pytest.raises(AnsibleFilterError, match="step must be unpack, start or launch"):
        dl_job_step_args(plan, "stop")
    hostvars = {"a": {"dl_textfile_dir": "/var/lib/a"}, "b": {"train_textfile_dir": "/t", "dl_textfile_dir": "/x"},
                "c": {}}
    assert dl_job_read_args(["a", "b", "c"], hostvars, "/var/lib/prometheus/node-exporter") == {
        "a": {"textfile_dir": "/var/lib/a"}, "b": {"textfile_dir": "/t"},
        "c": {"textfile_dir": "/var/lib/prometheus/node-exporter"}}


def test_the_modules_documentation_names_every_argument_the_action_takes():
    import yaml  # pylint: disable=import-outside-toplevel
    from conftest import load_script  # pylint: disable=import-outside-toplevel
    action = load_script("dl_job_hosts_action", ROOT / "action_plugins" / "dl_job_hosts.py")
    doc = yaml.safe_load(load_script("dl_job_hosts_doc", ROOT / "library" / "dl_job_hosts.py").DOCUMENTATION)
    fragment = yaml.safe_load(load_script("dl_fanout_doc", ROOT / "doc_fragments" / "dl_fanout.py")
                              .ModuleDocFragment.DOCUMENTATION)
    assert doc["extends_documentation_fragment"] == ["dl_fanout"]
    doc["options"].update(fragment["options"])
    assert set(doc["options"]) == set(action.ARGUMENT_SPEC)
    assert doc["options"]["step"]["choices"] == list(action.STEPS)
    assert all(option.get("description") for option in doc["options"].values())


def test_a_launch_shares_one_connection_per_host_between_its_steps_a_fleet_read_does_not():
    from ansible_collections.dlcluster.cluster.plugins.plugin_utils import dl_fanout  # pylint: disable=import-outside-toplevel
    host = {"inventory_hostname": "cpu1", "ansible_host": "10.0.0.2", "ansible_python_interpreter": "/usr/bin/python3"}
    settings = {"become": True, "ssh_args": "-o ControlMaster=auto -o ControlPersist=120s", "control_path_dir": "/cp"}
    argv, _ = dl_fanout.ssh_command(host, settings, reuse=True)
    # ssh keeps the first value of an option: the launch's own sharing wins over ansible.cfg's ssh_args.
    assert argv[4:10] == ["-o", "ControlMaster=auto", "-o", "ControlPath=/cp/dl-fanout-%C", "-o",
                         f"ControlPersist={dl_fanout.PERSIST_SECONDS}s"]
    assert argv.index("ControlPersist=120s") > argv.index(f"ControlPersist={dl_fanout.PERSIST_SECONDS}s")
    argv, _ = dl_fanout.ssh_command(host, settings)
    assert argv[4:8] == ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
