"""dl_job_hosts: one step of a job (read, unpack, start, launch, stop) on every host of the job at once, over plain ssh,
from one task on the controller.

Documentation and arguments: library/dl_job_hosts.py. Used by roles/train (tasks/fleet_read.yml and
tasks/fleet_launch.yml) for jobs with backend direct: the launcher's checks read each host once, then every host
gets the job's files and starts its ranks (launch), each step one ssh process per host running
module_utils/dl_job_host.py from stdin (the step's arguments inside the program, not on a command line). A host
this cannot reach over plain ssh (another connection type, a password, no Python known) is in ``refused`` before
anything runs; the role then runs the whole job through Ansible's per-host tasks instead.
"""

from __future__ import annotations

import os
import shlex

from ansible import constants as C
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.dlcluster.cluster.plugins.plugin_utils import dl_fanout

display = Display()

STEPS = ("read", "unpack", "start", "launch", "stop")
ARGUMENT_SPEC = {
    "hosts": {"type": "list", "elements": "str", "required": True},
    "step": {"type": "str", "required": True, "choices": list(STEPS)},
    "args": {"type": "dict", "default": {}},
    "per_host": {"type": "dict", "default": {}},
    "become": {"type": "bool"},
    "timeout": {"type": "int"},
    "forks": {"type": "int"},
}
# The program: standard library only, sent whole on stdin (module_utils/dl_job_host.py says so).
PROGRAM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils",
                       "dl_job_host.py")
# Seconds a step that changes a host may take beyond the connection (the archive's transfer, systemd-run).
STEP_SECONDS = 300


def step_args(step: str, common: dict, per_host: dict, host: str) -> dict:
    """The program's argument for one host: the step, the common arguments, then the host's own."""
    return {**common, **(per_host.get(host) or {}), "step": step}


def outcome(step: str, reply: tuple[int, str, str]) -> tuple[dict | None, str]:
    """(the step's result, '') when it succeeded on the host, else (the result or None, why not)."""
    result, why = dl_fanout.parse_reply(*reply, keys=("ok",))
    if result is None:
        return None, why
    if not result["ok"]:
        return result, str(result.get("msg") or f"{step} failed").strip()
    return result, ""


class ActionModule(ActionBase):
    """Run one step of a job on every named host over ssh, all at once, on the controller."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        step, hostvars = args["step"], (task_vars or {}).get("hostvars") or {}
        with open(PROGRAM, encoding="utf-8") as handle:
            source = handle.read()
        # One ssh connection per host for the whole launch: the read opens it, the next steps reuse it.
        found, refused = dl_fanout.ssh_commands(args["hosts"], hostvars, args["become"], self._task.become,
                                                args["timeout"], reuse=True)
        commands = {}
        for name, (argv, connect) in found.items():
            wait = connect * 2 + (0 if step == "read" else STEP_SECONDS)
            commands[name] = (argv, dl_fanout.program(source, step_args(step, args["args"], args["per_host"], name)),
                              wait)
            display.vvv(f"dl_job_hosts: {step} on {name}: {shlex.join(argv)}")
        if self._task.check_mode and step != "read":
            result.update(changed=bool(commands), skipped_hosts=sorted(commands), results={}, failed_hosts={},
                          refused=refused, msg=f"check mode: {step} not run")
            return result
        replies = dl_fanout.run_all(commands, args["forks"] or C.DEFAULT_FORKS)
        # A step that changes hosts did not happen on a refused host: that host failed it.
        results, failed = {}, ({} if step == "read" else dict(refused))
        for name, reply in replies.items():
            answer, why = outcome(step, reply)
            if why:
                failed[name] = why
            if answer is not None:
                results[name] = answer
        result.update(changed=step != "read" and any(answer.get("ok") for answer in results.values()),
                      results=results, failed_hosts=failed, refused=refused)
        return result
