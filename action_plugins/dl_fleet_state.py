"""dl_fleet_state: dl_host_state's reading on many hosts at once, over plain ssh, from one task on the controller.

Documentation and arguments: library/dl_fleet_state.py. Used by roles/converged/tasks/check.yml: on a warm run
the one thing site.yml asks of each host is its record and the state the record lists. Through Ansible's module
path that costs each host a worker, the module's transfer and its Python start (and mitogen's bootstrap), one
host per worker; here every host costs one ssh process running module_utils/dl_host_state.py from stdin, all at
once. A host this cannot read (another connection type, a password, ssh or sudo refusing, no cached facts to
choose its Python) is returned in ``left`` with the reason, and the role reads it through the module as before:
the fleet reader only ever saves time, it never decides alone that a host is unreachable.
"""

from __future__ import annotations

import os
import shlex

from ansible import constants as C
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible_collections.dlcluster.cluster.plugins.plugin_utils import dl_fanout

display = Display()

ARGUMENT_SPEC = {
    "hosts": {"type": "list", "elements": "str", "required": True},
    "stamp": {"type": "path", "required": True},
    "become": {"type": "bool"},
    "timeout": {"type": "int"},
    "forks": {"type": "int"},
}

# The reader: standard library only, sent whole on stdin (module_utils/dl_host_state.py says so).
READER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils",
                      "dl_host_state.py")
# What every answer of the reader holds.
RESULT_KEYS = ("stamp", "probes", "state", "now")


def reader_script(source: str) -> str:
    """The program ssh feeds to `python3 -`: the reader, then its main on the JSON argument."""
    return dl_fanout.program(source)


def parse_reply(returncode: int, stdout: str, stderr: str) -> tuple[dict | None, str]:
    """(the reader's result, '') or (None, why it failed) from one ssh run."""
    return dl_fanout.parse_reply(returncode, stdout, stderr, RESULT_KEYS)


class ActionModule(ActionBase):
    """Read every named host's record and state over ssh, all at once, on the controller."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        hostvars = (task_vars or {}).get("hostvars") or {}
        with open(READER, encoding="utf-8") as handle:
            script = reader_script(handle.read())
        commands, left = dl_fanout.ssh_commands(args["hosts"], hostvars, args["become"], self._task.become,
                                                args["timeout"], {"stamp": args["stamp"]})
        for name, (argv, _) in commands.items():
            display.vvv(f"dl_fleet_state: {name}: {shlex.join(argv)}")
        states = {}
        # Each host's answer is awaited twice its own ConnectTimeout.
        replies = dl_fanout.run_all({name: (argv, script, timeout * 2) for name, (argv, timeout) in commands.items()},
                                    args["forks"] or C.DEFAULT_FORKS)
        for name, reply in replies.items():
            state, why = parse_reply(*reply)
            if state is None:
                left[name] = why
            else:
                states[name] = state
        result.update(changed=False, states=states, left=left)
        return result
