"""Unit tests of site.yml's fast path (roles/converged): filter_plugins/dl_converged.py, the dl_host_state module,
callback_plugins/dl_converged.py and lookup_plugins/dl_code_digest.py; then the whole path through ansible-playbook."""

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from conftest import ROOT, load_script

from ansible.module_utils import dl_host_state
from dl_converged import (FilterModule, dl_converged_cluster, dl_converged_compare, dl_converged_direct,
                          dl_converged_drift, dl_converged_held, dl_converged_inputs, dl_converged_record,
                          dl_converged_state, dl_unconverged)

callback = load_script("dl_converged_callback", ROOT / "callback_plugins" / "dl_converged.py")
lookup = load_script("dl_code_digest_lookup", ROOT / "lookup_plugins" / "dl_code_digest.py")

HOSTVARS = {
    "head": {"ansible_host": "10.0.0.1", "dl_site": "a", "pip_mirror_port": 3141, "ansible_facts": {"x": 1},
             "ansible_uptime_seconds": 5, "__registered": {"changed": False}, "dl_rollout_would_change_firewall": True},
    "cpu1": {"ansible_host": "10.0.0.2", "dl_site": "a"},
}
GROUPS = {"all": ["head", "cpu1"], "dlcluster": ["head", "cpu1"], "ungrouped": []}
SETTINGS = {"code": "c0de", "run_tags": ["all"], "skip_tags": []}
FACTS = {"distribution": "Debian", "distribution_version": "12.8", "kernel": "6.1.0", "architecture": "x86_64",
         "processor_vcpus": 8, "memtotal_mb": 64000, "default_ipv4": {"address": "10.0.0.2"},
         "all_ipv4_addresses": ["172.17.0.1", "10.0.0.2"], "uptime_seconds": 100, "date_time": {"epoch": "1"}}

NFT = {"nftables": [{"metainfo": {"version": "1.0.6"}},
                    {"table": {"family": "inet", "name": "dlcluster", "handle": 1}},
                    {"rule": {"family": "inet", "table": "dlcluster", "chain": "input", "handle": 4,
                              "expr": [{"counter": {"packets": 1, "bytes": 60}}, {"accept": None}]}}]}


def cluster(hostvars=None, groups=None, settings=None):
    return dl_converged_cluster(hostvars or HOSTVARS, groups or GROUPS, settings or SETTINGS)


NOW = 1_800_000_000


def read(files=None, units=None, nft=None, packages="p1", pci="d1", stamp=None, now=NOW):
    """A dl_host_state result as registered: `stamp` is the record it found."""
    return {"stamp": stamp, "probes": {"files": ["/etc/a.conf"]}, "now": now,
            "state": {"files": files or {"/etc/a.conf": "file:aa:0644:0:0"}, "units": units or {"ssh": "active/enabled"},
                      "users": {}, "unix_groups": {}, "sysctls": {}, "mounts": {},
                      "nft_tables": nft or {"inet dlcluster": json.dumps(NFT)}, "packages": packages, "pci": pci}}


INPUTS = dl_converged_inputs(FACTS, cluster())


def recorded(inputs=None, **kwargs):
    """The record of a complete run an hour before NOW."""
    return dl_converged_record(inputs or INPUTS, read(now=NOW - 3600, **kwargs))


def drift(record=None, inputs=None, max_age_hours=24, **now):
    """What the check finds at NOW, on a host in the state `now` (read's keywords) with `record`."""
    return dl_converged_drift(read(stamp=recorded() if record is None else record, **now), inputs or INPUTS,
                              max_age_hours)


# ---------------------------------------------------------------- inputs -----

def test_the_cluster_digest_is_stable_and_ignores_facts_registered_results_and_run_marks():
    again = copy.deepcopy(HOSTVARS)
    again["head"].update(ansible_facts={"x": 2, "getent_passwd": {}}, ansible_uptime_seconds=99, getent_passwd={},
                         __registered={"changed": True}, dl_rollout_would_change_firewall=False,
                         dl_converged_probes={"files": ["/x"]}, converged_enabled=False, converged_max_age_hours=1,
                         molecule_file="/tmp/molecule.x/molecule.yml")
    # The fast path's own settings are not inputs: a run with it turned off still records for the next.
    assert cluster() == cluster(again) == cluster(dict(reversed(list(HOSTVARS.items()))))
    assert sorted(cluster()) == ["code", "groups", "hosts", "tags"] and sorted(cluster()["hosts"]) == ["cpu1", "head"]


@pytest.mark.parametrize("change", [
    lambda h, g, s: h["head"].update(pip_mirror_port=3142),          # another host's variable
    lambda h, g, s: h["cpu1"].update(ansible_host="10.0.0.9"),       # an address
    lambda h, g, s: h["cpu1"].update(ansible_user="ops2"),           # a connection variable
    lambda h, g, s: g.update(gpu=["cpu1"]),                          # a group
    lambda h, g, s: s.update(code="other"),                          # the code
    lambda h, g, s: s.update(skip_tags=["python_envs"]),             # the run's tags
])
def test_the_cluster_digest_changes_with_every_input(change):
    hostvars, groups, settings = copy.deepcopy(HOSTVARS), copy.deepcopy(GROUPS), dict(SETTINGS)
    change(hostvars, groups, settings)
    assert cluster(hostvars, groups, settings) != cluster()


def test_only_skip_tags_that_some_task_carries_are_an_input():
    used = dict(SETTINGS, code_tags=["firewall", "python_envs"])
    # molecule skips molecule-notest and notest: no task here has them, so the run does the same work.
    assert cluster(settings=dict(used, skip_tags=["molecule-notest", "notest"])) == cluster(settings=used)
    assert cluster(settings=dict(used, skip_tags=["python_envs", "notest"])) != cluster(settings=used)
    assert cluster(settings=dict(used, run_tags=["firewall"])) != cluster(settings=used)
    # Without the code's tags every skipped tag counts.
    assert cluster(settings=dict(SETTINGS, skip_tags=["notest"])) != cluster()


def test_a_fleet_s_record_holds_one_digest_for_all_hosts_and_still_sees_one_host_change():
    hostvars = {f"n{i:03}": {"ansible_host": f"10.1.{i // 250}.{i % 250}", "dl_site": "a"} for i in range(200)}
    groups = {"all": list(hostvars), "dlcluster": list(hostvars)}
    fleet = dl_converged_cluster(hostvars, groups, SETTINGS)
    assert list(fleet["hosts"]) == ["all hosts"]
    hostvars["n123"]["dl_site"] = "b"
    assert dl_converged_cluster(hostvars, groups, SETTINGS)["hosts"] != fleet["hosts"]


def test_the_group_of_converged_hosts_is_not_an_input():
    assert cluster(groups=dict(GROUPS, dl_converged=["head"])) == cluster()


def test_a_variable_that_cannot_render_is_named_by_its_error_not_fatal():
    class Lazy(dict):
        def __getitem__(self, key):
            if key == "dl_broken":
                raise KeyError(key)
            return super().__getitem__(key)
    hostvars = dict(HOSTVARS, cpu1=Lazy(HOSTVARS["cpu1"], dl_broken="{{ nope }}"))
    assert cluster(hostvars) != cluster()


def test_a_host_inputs_follow_its_platform_facts_not_its_clock():
    base = dl_converged_inputs(FACTS, cluster())
    assert dl_converged_inputs(dict(FACTS, uptime_seconds=5, date_time={"epoch": "2"}), cluster()) == base
    assert dl_converged_inputs(dict(FACTS, all_ipv4_addresses=["10.0.0.2", "172.17.0.1"]), cluster()) == base
    assert dl_converged_inputs(dict(FACTS, kernel="6.1.1"), cluster()) != base
    assert dl_converged_inputs(dict(FACTS, default_ipv4={"address": "10.0.0.3"}), cluster()) != base
    assert dl_converged_inputs(FACTS, cluster(settings=dict(SETTINGS, code="c2"))) != base
    with pytest.raises(AnsibleFilterError, match="ansible_facts"):
        dl_converged_inputs("facts", cluster())
    with pytest.raises(AnsibleFilterError, match="cluster"):
        dl_converged_inputs(FACTS, "c1")


@pytest.mark.parametrize("args", [("hv", GROUPS, {}), (HOSTVARS, [], {}), (HOSTVARS, GROUPS, "s")])
def test_the_cluster_digest_refuses_what_is_not_a_mapping(args):
    with pytest.raises(AnsibleFilterError, match="must be a mapping"):
        dl_converged_cluster(*args)


# ---------------------------------------------------------------- drift -----

def test_a_record_that_still_holds_has_no_drift():
    assert drift() == []


def test_packets_through_the_firewall_are_not_drift():
    counted = copy.deepcopy(NFT)
    counted["nftables"][2]["rule"]["expr"][0]["counter"] = {"packets": 900, "bytes": 54000}
    counted["nftables"][2]["rule"]["handle"] = 9
    assert drift(nft={"inet dlcluster": json.dumps(counted)}) == []


def test_each_kind_of_drift_is_named():
    edited = copy.deepcopy(NFT)
    edited["nftables"][2]["rule"]["expr"][1] = {"drop": None}
    assert drift(files={"/etc/a.conf": "file:bb:0644:0:0"}, units={"ssh": "inactive/enabled"},
                 nft={"inet dlcluster": json.dumps(edited)}, packages="p2", pci="d2") == [
        "/etc/a.conf changed", "unit ssh is inactive/enabled (was active/enabled)",
        "nftables table inet dlcluster changed", "the installed packages changed", "the PCI devices changed"]
    assert drift(files={"/etc/a.conf": "absent"}, nft={"inet dlcluster": "absent"}) == [
        "/etc/a.conf is missing", "nftables table inet dlcluster is missing"]


def test_no_record_another_version_or_other_inputs_run_everything():
    assert dl_converged_drift(read(), INPUTS) == ["no record of a complete run"]
    # The check runs before the pre-flight reads the hosts: a host it cannot reach runs (and the pre-flight names it).
    assert dl_converged_drift({"unreachable": True, "msg": "ssh: timed out"}, INPUTS) == ["it could not be reached"]
    assert "version" in drift(dict(recorded(), version=0))[0]
    hostvars = copy.deepcopy(HOSTVARS)
    hostvars["head"]["pip_mirror_port"] = 1
    other = dl_converged_inputs(dict(FACTS, kernel="7"), cluster(hostvars, settings=dict(SETTINGS, code="new")))
    assert drift(inputs=other) == ["its inputs changed (code, variables of head, platform facts)"]
    assert drift(inputs=dict(INPUTS, hosts={"head": INPUTS["hosts"]["head"]})) == [
        "its inputs changed (the inventory's hosts)"]
    with pytest.raises(AnsibleFilterError, match="inputs"):
        dl_converged_drift(read(stamp=recorded()), "in")
    with pytest.raises(AnsibleFilterError, match="dl_host_state"):
        dl_converged_drift({"state": {}}, INPUTS)


def test_a_record_older_than_the_limit_does_not_hold():
    """Time alone changes what a run does (a certificate due for renewal): at least one full run per limit."""
    assert drift(now=NOW + 22 * 3600) == []
    assert drift(now=NOW + 24 * 3600) == ["its record is 25 h old (converged_max_age_hours: 24)"]
    assert drift(now=NOW + 24 * 3600, max_age_hours=48) == []
    assert drift(now=NOW + 900 * 3600, max_age_hours=0) == []


def test_the_record_holds_fingerprints_not_listings_and_when_it_was_made():
    record = recorded()
    assert record["version"] == 1 and record["inputs"] == INPUTS and record["probes"] == {"files": ["/etc/a.conf"]}
    assert len(record["state"]["nft_tables"]["inet dlcluster"]) == 64
    assert record["recorded_at"] == NOW - 3600
    with pytest.raises(AnsibleFilterError):
        dl_converged_state({"stamp": None})
    with pytest.raises(AnsibleFilterError):
        dl_converged_record(INPUTS, {"state": {}})


def test_plays_leave_out_the_converged_group_only_when_it_exists():
    assert dl_unconverged("dlcluster", GROUPS) == "dlcluster"
    assert dl_unconverged("edition_nvidia:edition_rocm", dict(GROUPS, dl_converged=["head"])) == \
        "edition_nvidia:edition_rocm:!dl_converged"
    with pytest.raises(AnsibleFilterError, match="host pattern"):
        dl_unconverged("", GROUPS)
    assert set(FilterModule().filters()) == {"dl_converged_cluster", "dl_converged_compare", "dl_converged_direct",
                                             "dl_converged_drift", "dl_converged_held", "dl_converged_inputs",
                                             "dl_converged_record", "dl_converged_state", "dl_unconverged"}


def test_only_hosts_whose_check_found_nothing_hold():
    checked = {"a": {"drift": []}, "b": {"drift": ["x changed"]}, "c": {}, "d": {"drift": []}}
    assert dl_converged_held(checked) == ["a", "d"]
    assert dl_converged_held({}) == []
    with pytest.raises(AnsibleFilterError, match="dl_converged_held"):
        dl_converged_held(["a"])


def test_hosts_the_fleet_reader_left_or_without_cached_facts_go_through_the_module():
    facts = {"ansible_facts": {"distribution": "Debian"}}
    hostvars = {"a": facts, "b": facts, "c": {"ansible_facts": {}}, "d": {}}
    fleet = {"states": {"a": {}, "c": {}, "d": {}}, "left": {"b": "its connection is local"}}
    assert dl_converged_direct(fleet, hostvars, ["a", "b", "c", "d"]) == ["b", "c", "d"]
    # converged_fleet_read=false reads no host: every host goes through the module.
    assert dl_converged_direct({"states": {}, "left": {}}, hostvars, ["a", "b"]) == ["a", "b"]
    assert dl_converged_direct({}, hostvars, ["a"]) == ["a"]


def test_the_comparison_uses_the_fleet_reader_s_state_or_the_module_s_and_names_each_host_s_reasons():
    hostvars = {"head": {"ansible_facts": FACTS},
                "cpu1": {"ansible_facts": FACTS, "__converged_read": read(stamp=recorded())},
                "cpu2": {"ansible_facts": FACTS}}
    states = {"head": read(stamp=recorded()),
              "cpu2": read(stamp=recorded(), files={"/etc/a.conf": "file:bb:0644:0:0"})}
    checked = dl_converged_compare(hostvars, ["head", "cpu1", "cpu2"], cluster(), states, {"max_age_hours": 24})
    assert list(checked) == ["head", "cpu1", "cpu2"]
    assert checked["head"] == {"inputs": INPUTS, "drift": []} and checked["cpu1"]["drift"] == []
    assert checked["cpu2"]["drift"] == ["/etc/a.conf changed"]
    assert dl_converged_held(checked) == ["head", "cpu1"]
    off = dl_converged_compare(hostvars, ["head"], cluster(), states, {"enabled": False})
    assert off["head"] == {"inputs": INPUTS, "drift": ["converged_enabled is false"]}
    assert dl_converged_compare(hostvars, ["head"], cluster(), states, {"check_mode": True})["head"]["drift"] == \
        ["check mode runs every task"]
    assert dl_converged_compare(hostvars, ["cpu2"], cluster(), {}, {})["cpu2"]["drift"] == ["its state was not read"]
    unreachable = dict(hostvars, cpu2={"__converged_read": {"unreachable": True}})
    assert dl_converged_compare(unreachable, ["cpu2"], cluster(), {}, {})["cpu2"]["drift"] == \
        ["it could not be reached"]


# ---------------------------------------------------------------- what a run manages (callback) -----

@pytest.mark.parametrize("action, result, expected", [
    ("ansible.builtin.template", {"dest": "/etc/ssh/sshd_config"}, {"files": ["/etc/ssh/sshd_config"]}),
    ("ansible.builtin.lineinfile", {"invocation": {"module_args": {"path": "/etc/x"}}}, {"files": ["/etc/x"]}),
    ("ansible.builtin.file", {"path": "/var/lib/d", "state": "directory"}, {"files": ["/var/lib/d"]}),
    ("ansible.builtin.file", {"path": "/tmp/x", "state": "absent"}, {}),
    ("ansible.builtin.copy", {"dest": "relative"}, {}),
    ("ansible.builtin.copy", {"dest": "/etc/a", "skipped": True}, {}),
    ("ansible.builtin.systemd_service", {"name": "nftables", "invocation": {"module_args": {"state": "started"}}},
     {"units": ["nftables"]}),
    ("ansible.builtin.systemd_service", {"name": "x", "invocation": {"module_args": {"daemon_reload": True}}}, {}),
    ("ansible.builtin.user", {"name": "alice", "invocation": {"module_args": {"name": "alice"}}}, {"users": ["alice"]}),
    ("ansible.builtin.group", {"name": "ml", "invocation": {"module_args": {"state": "absent"}}}, {}),
    ("ansible.posix.sysctl", {"invocation": {"module_args": {"name": "vm.swappiness"}}}, {"sysctls": ["vm.swappiness"]}),
    ("ansible.posix.mount", {"invocation": {"module_args": {"path": "/data", "state": "mounted"}}},
     {"mounts": ["/data"], "files": ["/etc/fstab"]}),
    ("ansible.builtin.command", {"cmd": "true"}, {}),
])
def test_the_callback_reads_what_each_module_manages(action, result, expected):
    assert callback.managed(action, result) == expected


class FakeVariableManager:
    def __init__(self):
        self.facts = {}

    def set_nonpersistent_facts(self, host, facts):
        self.facts.setdefault(host, {}).update(facts)


class FakeResult:
    def __init__(self, host, action, data, delegate_to=None):
        self.result = data
        self.host = type("Host", (), {"get_name": lambda _self: host})()
        self.task = type("Task", (), {"action": action, "delegate_to": delegate_to})()


def test_the_callback_gathers_each_host_s_probes_across_tasks_and_loops_and_skips_delegated_tasks():
    plugin = callback.CallbackModule()
    plugin._variable_manager = FakeVariableManager()
    plugin.v2_runner_on_ok(FakeResult("cpu1", "template", {"dest": "/etc/b"}))
    plugin.v2_runner_on_ok(FakeResult("cpu1", "copy", {"results": [{"dest": "/etc/a"}, {"dest": "/etc/b"},
                                                                    {"skipped": True, "dest": "/etc/c"}]}))
    plugin.v2_runner_on_ok(FakeResult("cpu1", "copy", {"dest": "/on/the/controller"}, delegate_to="localhost"))
    plugin.v2_runner_on_ok(FakeResult("head", "systemd_service",
                                      {"name": "ssh", "invocation": {"module_args": {"enabled": True}}}))
    facts = plugin._variable_manager.facts
    assert facts["cpu1"]["dl_converged_probes"]["files"] == ["/etc/a", "/etc/b"]
    assert facts["head"]["dl_converged_probes"]["units"] == ["ssh"]
    assert facts["head"]["dl_converged_probes"]["files"] == []


# ---------------------------------------------------------------- dl_host_state -----

def test_the_module_reduces_files_directories_links_and_absences_to_text(tmp_path):
    target = tmp_path / "a.conf"
    target.write_text("x\n")
    target.chmod(0o640)
    (tmp_path / "link").symlink_to(target)
    uid, gid = os.getuid(), os.getgid()
    assert dl_host_state.file_state(str(target)) == f"file:{hashlib.sha256(b'x' + bytes([10])).hexdigest()}:0640:{uid}:{gid}"
    assert dl_host_state.file_state(str(tmp_path)).startswith("dir:")
    assert dl_host_state.file_state(str(tmp_path / "link")) == f"link:{target}"
    assert dl_host_state.file_state(str(tmp_path / "none")) == "absent"
    assert dl_host_state.user_state("root").startswith("0:0:")
    assert dl_host_state.user_state("no-such-user-x") == "absent"
    assert dl_host_state.mount_states(["/", "/no/such/mount"])["/no/such/mount"] == "absent"


def test_the_module_lists_probes_sorted_once_and_drops_unknown_kinds():
    assert dl_host_state.normalise({"files": ["/b", "/a", "/b", ""], "bogus": ["x"], "units": "ssh"}) == {
        "files": ["/a", "/b"], "units": [], "users": [], "unix_groups": [], "sysctls": [], "mounts": [],
        "nft_tables": []}
    assert dl_host_state.normalise(None)["files"] == []


# ---------------------------------------------------------------- the code digest -----

def test_the_code_digest_follows_every_code_file_but_not_python_caches(tmp_path):
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text("---\n")
    (tmp_path / "site.yml").write_text("---\n")
    (tmp_path / "README.md").write_text("docs\n")
    before = lookup.code_digest(tmp_path)
    (tmp_path / "roles" / "r" / "__pycache__").mkdir()
    (tmp_path / "roles" / "r" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("other docs\n")
    (tmp_path / "roles" / "r" / "README.md").write_text("the role's docs\n")
    assert lookup.code_digest(tmp_path) == before
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text("---\n# edited\n")
    assert lookup.code_digest(tmp_path) != before
    assert lookup.code_files(tmp_path) == ["roles/r/tasks/main.yml", "site.yml"]
    assert "roles/converged/tasks/check.yml" in lookup.code_files(ROOT)


def test_the_code_tags_are_those_of_tasks_blocks_roles_and_plays(tmp_path):
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "main.yml").write_text(
        "- name: a\n  ansible.builtin.debug: {msg: !unsafe '{{ x }}'}\n  tags: [one, two]\n"
        "- block:\n    - ansible.builtin.debug: {}\n      tags: three\n  tags: 'four, five'\n")
    (tmp_path / "site.yml").write_text("- hosts: all\n  tags: six\n  roles: [{role: r, tags: [seven]}]\n")
    (tmp_path / "filter_plugins").mkdir()
    (tmp_path / "filter_plugins" / "x.yml").write_text("tags: [not_code]\n")
    assert lookup.code_tags(tmp_path) == ["five", "four", "one", "seven", "six", "three", "two"]
    assert {"firewall", "ssh_hardening", "always"} <= set(lookup.code_tags(ROOT))
    assert "molecule-notest" not in lookup.code_tags(ROOT)


# ---------------------------------------------------------------- the whole path -----

@pytest.fixture()
def fast_path(tmp_path):
    """A site.yml in small on two hosts of this controller: the fast path's plays (playbooks/converged.yml), one
    play that manages a file per host, the record play (playbooks/converged_record.yml). A local connection is
    not one dl_fleet_state reads: both hosts are read through the module (the lab test covers the fleet reader)."""
    host = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "demo_value": "one",
            "ansible_become": False}
    role_vars = {"converged_record_path": str(tmp_path / "{{ inventory_hostname }}.record.json"),
                 "converged_nft_tables": []}
    (tmp_path / "inventory.yml").write_text(json.dumps({"dlcluster": {"hosts": {"node": host, "peer": host},
                                                                      "vars": role_vars}}))
    managed = str(tmp_path / "{{ inventory_hostname }}.conf")
    (tmp_path / "site.yml").write_text(json.dumps([
        {"ansible.builtin.import_playbook": str(ROOT / "playbooks" / "converged.yml")},
        {"name": "Manage a file", "hosts": "{{ 'dlcluster' | dl_unconverged(groups) }}", "gather_facts": False,
         "tasks": [{"ansible.builtin.copy": {"content": "{{ demo_value }}\n", "dest": managed, "mode": "0644"}}]},
        {"ansible.builtin.import_playbook": str(ROOT / "playbooks" / "converged_record.yml")},
    ]))

    def run(*extra):
        # Ansible's own strategy: mitogen does not reach this controller over a local connection.
        # Facts cached between runs, as ansible.cfg does: the hosts are this controller, whose addresses (platform
        # facts, an input) change when a Docker network comes or goes, as the molecule scenarios beside CI's unit
        # tests do. Gathered once, they stay the inputs of every run here.
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STRATEGY="linear",
                   ANSIBLE_FACT_CACHING="jsonfile", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp_path / "facts"),
                   ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
        done = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                               "-i", str(tmp_path / "inventory.yml"), str(tmp_path / "site.yml"), *extra],
                              capture_output=True, text=True, cwd=ROOT, env=env, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        # The YAML callback folds long messages: one space between words.
        return " ".join(done.stdout.split())
    return run, tmp_path / "node.conf", tmp_path / "node.record.json"


def test_a_warm_run_skips_converged_hosts_and_any_drift_or_new_input_brings_every_host_back(fast_path):
    run, managed, record = fast_path
    first = run()
    assert "node runs its roles: no record of a complete run." in first
    assert "peer runs its roles: no record of a complete run." in first
    assert managed.read_text() == "one\n" and (managed.parent / "peer.conf").read_text() == "one\n"
    saved = json.loads(record.read_text())
    assert saved["probes"]["files"] == [str(managed)] and oct(record.stat().st_mode & 0o777) == "0o600"
    # Writing the record is the run's own bookkeeping, not a change: the file alone changed.
    assert re.search(r"node : ok=\d+ changed=1 ", first) and re.search(r"peer : ok=\d+ changed=1 ", first), first

    warm = run()
    assert "runs its roles:" not in warm, re.findall(r"\S+ runs its roles: [^.]*\.", warm)
    # molecule's runs skip tags that no task has: the same work, so the record holds for them too.
    assert "runs its roles:" not in run("--skip-tags", "molecule-notest,notest")
    assert warm.count("skipping: no hosts matched") == 2, warm
    assert json.loads(record.read_text()) == saved
    assert re.search(r"node : ok=\d+ changed=0 ", warm) and re.search(r"peer : ok=\d+ changed=0 ", warm), warm

    # Drift on one host: every host runs (the roles read each other's hosts), the one edited says why.
    managed.write_text("edited by hand\n")
    repaired = run()
    assert f"node runs its roles: {managed} changed." in repaired
    assert ("peer runs its roles: its record holds, but not those of node "
            "(when one host runs its roles, every host does).") in repaired
    assert managed.read_text() == "one\n"
    assert "runs its roles:" not in run()

    changed = run("-e", "demo_value=two")
    assert "node runs its roles: its inputs changed (variables of node, variables of peer)." in changed
    assert managed.read_text() == "two\n"

    checked = run("--check", "-e", "demo_value=three")
    assert "node runs its roles: check mode runs every task." in checked
    assert managed.read_text() == "two\n" and json.loads(record.read_text())["inputs"] != saved["inputs"]

    forced = run("-e", "demo_value=two", "-e", "converged_enabled=false")
    assert "node runs its roles: converged_enabled is false." in forced
