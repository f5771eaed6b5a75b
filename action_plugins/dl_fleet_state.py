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

import json
import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible import constants as C
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

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
SSH_CONNECTIONS = frozenset({"ssh", "smart", "ansible.builtin.ssh", "ansible.legacy.ssh", "mitogen_ssh"})
# Variables that mean a password: ssh's BatchMode could not answer them.
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")


def _first(host, names, default=None):
    for name in names:
        value = host.get(name)
        if value not in (None, ""):
            return value
    return default


def _split(value) -> list[str]:
    return shlex.split(str(value)) if value else []


def connect_timeout(settings: dict) -> int:
    """ssh's ConnectTimeout for a host: the ssh plugin's timeout (or the task's), 30 s when neither is set."""
    return int(settings.get("timeout") or 30)


def reader_script(source: str) -> str:
    """The program ssh feeds to `python3 -`: the reader, then its main on the JSON argument."""
    return f"{source}\n\nimport sys\nmain(sys.argv)\n"


def ssh_command(host: dict, settings: dict, args: dict) -> tuple[list[str] | None, str]:
    """(argv, '') to read one host, or (None, why not) when this host must go through the module path.

    host: the host's variables (hostvars); settings: the ssh connection plugin's configuration for this host
    (``ssh_args``, ``ssh_common_args``, ``ssh_extra_args``, ``ssh_executable``, ``host_key_checking``,
    ``remote_user``, ``port``, ``private_key_file``, ``timeout``) and ``become``; args: the reader's JSON argument.
    """
    connection = str(host.get("ansible_connection") or "ssh")
    if connection not in SSH_CONNECTIONS:
        return None, f"its connection is {connection}"
    if _first(host, PASSWORD_VARS):
        return None, "it logs in with a password"
    python = _first(host, ("ansible_python_interpreter",))
    # auto, auto_silent, auto_legacy...: Ansible's discovery, whose answer the cached facts keep.
    if not python or str(python).startswith("auto"):
        python = (host.get("ansible_facts") or {}).get("discovered_interpreter_python")
    if not python or any(char.isspace() for char in str(python)):
        return None, "its Python is not known yet (no cached facts)"
    address = _first(host, ("ansible_host", "ansible_ssh_host"), host.get("inventory_hostname"))
    user = _first(host, ("ansible_user", "ansible_ssh_user"), settings.get("remote_user"))
    port = _first(host, ("ansible_port", "ansible_ssh_port"), settings.get("port"))
    key = _first(host, ("ansible_ssh_private_key_file", "ansible_private_key_file"), settings.get("private_key_file"))
    remote = [str(python), "-", json.dumps(args, sort_keys=True)]
    if settings.get("become"):
        method = str(_first(host, ("ansible_become_method",), "sudo"))
        if method not in ("sudo", "ansible.builtin.sudo"):
            return None, f"it becomes root with {method}"
        if _first(host, BECOME_PASSWORD_VARS):
            return None, "sudo asks it for a password"
        become_user = str(_first(host, ("ansible_become_user",), "root"))
        remote = ["sudo", "-n", "-H", "-u", become_user, "--", *remote]
    # ssh takes the first value given for an option: these come before the configured ones. No multiplexing:
    # a master left behind would outlive the run for nothing.
    argv = [str(_first(host, ("ansible_ssh_executable",), settings.get("ssh_executable") or "ssh")),
            "-T", "-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", "ControlPath=none",
            "-o", f"ConnectTimeout={connect_timeout(settings)}"]
    if not settings.get("host_key_checking", True):
        argv += ["-o", "StrictHostKeyChecking=no"]
    for name in ("ssh_args", "ssh_common_args", "ssh_extra_args"):
        argv += _split(settings.get(name))
    if key:
        argv += ["-i", os.path.expanduser(str(key))]
    if port:
        argv += ["-p", str(port)]
    if user:
        argv += ["-l", str(user)]
    argv += ["--", str(address), " ".join(shlex.quote(part) for part in remote)]
    return argv, ""


def parse_reply(returncode: int, stdout: str, stderr: str) -> tuple[dict | None, str]:
    """(the reader's result, '') or (None, why it failed) from one ssh run."""
    last_error = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if returncode != 0:
        who = "ssh" if returncode == 255 else "the reader"
        return None, f"{who} exited {returncode}" + (f": {last_error}" if last_error else "")
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict) or not {"stamp", "probes", "state", "now"} <= set(result):
        return None, "the reader's output was not its JSON result"
    return result, ""


def _run(argv: list[str], script: str, timeout: int) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer within {timeout} s"
    except OSError as error:
        return 127, "", str(error)
    return done.returncode, done.stdout, done.stderr


class ActionModule(ActionBase):
    """Read every named host's record and state over ssh, all at once, on the controller."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _requires_connection = False

    def _settings(self, name: str, host: dict, become: bool) -> dict:
        """The ssh connection plugin's configuration as it applies to this host (ansible.cfg, environment and the
        host's ansible_ssh_* variables)."""
        settings = {"become": become}
        for option in ("ssh_args", "ssh_common_args", "ssh_extra_args", "ssh_executable", "host_key_checking",
                       "remote_user", "port", "private_key_file", "timeout"):
            try:
                settings[option] = C.config.get_config_value(option, plugin_type="connection", plugin_name="ssh",
                                                             variables=host)
            except Exception:  # pylint: disable=broad-except  # an option this Ansible does not have
                settings[option] = None
        display.vvvv(f"dl_fleet_state: {name}: ssh settings {settings}")
        return settings

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        hostvars = (task_vars or {}).get("hostvars") or {}
        with open(READER, encoding="utf-8") as handle:
            script = reader_script(handle.read())
        commands, left = {}, {}
        # Templating happens here, in this thread; only the ssh processes run in parallel.
        for name in args["hosts"]:
            # The host's variables as Ansible renders them, read one by one (not all of them).
            host = hostvars[name] if name in hostvars else {"inventory_hostname": name}
            become = args["become"]
            if become is None:
                # As Ansible would for this host: its ansible_become, else the task's become.
                become = boolean(_first(host, ("ansible_become",), bool(self._task.become)), strict=False)
            settings = self._settings(name, host, become)
            if args["timeout"]:
                settings["timeout"] = args["timeout"]
            argv, why = ssh_command(host, settings, {"stamp": args["stamp"]})
            if argv is None:
                left[name] = why
            else:
                commands[name] = (argv, connect_timeout(settings))
                display.vvv(f"dl_fleet_state: {name}: {shlex.join(argv)}")
        forks = max(1, min(args["forks"] or C.DEFAULT_FORKS, len(commands) or 1))
        states = {}
        with ThreadPoolExecutor(max_workers=forks) as pool:
            # Each host's answer is awaited twice its own ConnectTimeout.
            replies = dict(zip(commands, pool.map(lambda item: _run(item[0], script, item[1] * 2),
                                                  commands.values())))
        for name, reply in replies.items():
            state, why = parse_reply(*reply)
            if state is None:
                left[name] = why
            else:
                states[name] = state
        result.update(changed=False, states=states, left=left)
        return result
