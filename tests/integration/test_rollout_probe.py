"""callback_plugins/dl_rollout.py: the probe play of a canary rollout marks exactly the hosts it would change.

Three local hosts run a probe play in check mode, as playbooks/firewall.yml does: `a` would change nothing, `b` would
change a file, `c` fails. Only `b` and `c` reach the canary play, in batches, and the check mode changed nothing.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_BESIDE = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_PLAYBOOK = str(_BESIDE) if _BESIDE.exists() else shutil.which("ansible-playbook") or "ansible-playbook"

PLAYBOOK = """
- name: Probe
  hosts: all
  gather_facts: false
  check_mode: true
  ignore_errors: true
  vars:
    dl_rollout_probe: demo
  tasks:
    - name: Write a file on b only
      ansible.builtin.copy:
        content: "new\\n"
        dest: "{{ scratch }}/{{ inventory_hostname }}.txt"
        mode: "0644"
      when: inventory_hostname == 'b'
    - name: Fail on c only
      ansible.builtin.command: "false"
      check_mode: false
      when: inventory_hostname == 'c'
  post_tasks:
    - name: Send the hosts it would change through the batches
      ansible.builtin.group_by:
        key: dl_rollout_demo
      when: dl_rollout_would_change_demo | default(false)
      changed_when: false

- name: Canary first
  hosts: "{{ groups['dl_rollout_demo'] | default([]) }}"
  gather_facts: false
  serial: [1, "100%"]
  order: sorted
  tasks:
    - name: Say which batch this host is in
      ansible.builtin.debug:
        msg: "applied on {{ inventory_hostname }} in batch {{ ansible_play_batch | to_json }}"
"""


def run(tmp_path: Path, hosts: dict) -> subprocess.CompletedProcess:
    inventory = tmp_path / "hosts.json"
    host_vars = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory.write_text(json.dumps({"all": {"hosts": {name: host_vars for name in hosts},
                                             "vars": {"scratch": str(tmp_path)}}}))
    playbook = tmp_path / "probe.yml"
    playbook.write_text(PLAYBOOK)
    # From the repository root: its ansible.cfg puts callback_plugins/ in the callback path.
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), str(playbook)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_only_the_hosts_that_would_change_or_failed_go_through_the_batches(tmp_path):
    proc = run(tmp_path, {"a": {}, "b": {}, "c": {}})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    canary = output.split("PLAY [Canary first]", 1)[1]
    assert "applied on a" not in canary, canary
    # b is the canary (first by name), alone in its batch; c follows in the next one.
    assert 'applied on b in batch ["b"]' in canary and 'applied on c in batch ["c"]' in canary, canary
    assert not (tmp_path / "b.txt").exists(), "the probe ran for real instead of in check mode"


def test_nothing_to_change_means_no_batch(tmp_path):
    (tmp_path / "b.txt").write_text("new\n")
    (tmp_path / "b.txt").chmod(0o644)
    proc = run(tmp_path, {"a": {}, "b": {}})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "skipping: no hosts matched" in output.split("PLAY [Canary first]", 1)[1], output
