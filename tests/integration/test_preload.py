"""callback_plugins/dl_preload.py: plugins are loaded once in the controller, not again in every task's worker.

A filter file of its own records, at each load, the process that loaded it. Two local hosts run three tasks that use
the filter: with the callback the file is loaded once, by the main process; without it (the callback directory left
out) each worker loads it again. The unit test below lists the collections a play's tasks name.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ansible.playbook.block import Block
from ansible.playbook.task import Task

ROOT = Path(__file__).resolve().parents[2]
_BESIDE = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_PLAYBOOK = str(_BESIDE) if _BESIDE.exists() else shutil.which("ansible-playbook") or "ansible-playbook"

FILTER = """
import os
with open(os.environ["PRELOAD_RECORD"], "a") as record:
    record.write(f"{os.getpid()}\\n")


class FilterModule:
    def filters(self):
        return {"preload_double": lambda value: value * 2}
"""

PLAYBOOK = """
- name: Use the filter in three tasks on two hosts
  hosts: all
  gather_facts: false
  tasks:
    - name: Use it once
      ansible.builtin.debug:
        msg: "{{ 1 | preload_double }}"
    - name: Use it twice
      ansible.builtin.debug:
        msg: "{{ 2 | preload_double }}"
    - name: Use it thrice
      ansible.builtin.debug:
        msg: "{{ 3 | preload_double }}"
"""


def loads(tmp_path: Path, callbacks: bool) -> list[str]:
    """The processes that loaded the filter file during one run of the playbook."""
    (tmp_path / "filters").mkdir(exist_ok=True)
    (tmp_path / "filters" / "preload_filter.py").write_text(FILTER)
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (tmp_path / "hosts.json").write_text(json.dumps({"all": {"hosts": {"a": local, "b": local}}}))
    record = tmp_path / f"record-{callbacks}"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), PRELOAD_RECORD=str(record),
               ANSIBLE_FILTER_PLUGINS=str(tmp_path / "filters"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_CALLBACK_PLUGINS=str(ROOT / "callback_plugins") if callbacks else str(tmp_path),
               # The default strategy: the test is about the loader, not mitogen.
               ANSIBLE_STRATEGY="linear", PYTHONDONTWRITEBYTECODE="1")
    run = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "hosts.json"), str(tmp_path / "play.yml")],
                         capture_output=True, text=True, env=env, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    return record.read_text().split()


def test_the_filter_file_is_loaded_once_by_the_main_process(tmp_path):
    with_callback = loads(tmp_path, callbacks=True)
    without = loads(tmp_path, callbacks=False)
    assert len(with_callback) == 1, with_callback
    # Without the callback every task's worker of every host loads it again (the main process may load it too).
    assert len(set(without)) >= 6, without


def _preload_module():
    spec = importlib.util.spec_from_file_location("dl_preload_under_test", ROOT / "callback_plugins" / "dl_preload.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _task(action: str) -> Task:
    task = Task()
    task.action = action
    return task


def test_collections_of_a_play_leave_builtins_out_and_look_into_nested_blocks():
    inner = Block()
    inner.block = [_task("community.crypto.openssl_privatekey")]
    outer = Block()
    outer.block = [_task("ansible.builtin.copy"), inner, _task("debug")]
    outer.rescue = [_task("community.general.ini_file")]
    outer.always = [_task("ansible.posix.authorized_key")]
    assert _preload_module()._collections_of([outer]) == {"community.crypto", "community.general", "ansible.posix"}
