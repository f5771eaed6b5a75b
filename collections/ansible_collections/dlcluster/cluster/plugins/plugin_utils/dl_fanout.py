"""One small Python program run on many hosts at once over plain ssh, from one task on the controller.

Shared by action_plugins/dl_fleet_state.py (the converged check's read of every host) and
action_plugins/dl_job_hosts.py (the launcher's read, unpack, start and stop on every host of a job). Through
Ansible's module path each host costs a worker, the module's transfer and a Python start (and mitogen's
bootstrap), one host per worker; here each host costs one ssh process running a standard-library-only program
from stdin, all at once.

The ssh command is built from the host's variables and the ssh connection plugin's resolved settings (ansible.cfg,
environment, ansible_ssh_* variables). A host this cannot reach that way (another connection type, a password, a
become method other than sudo, no Python known yet) is refused with the reason, before anything runs: the callers
then use Ansible's own path for it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor

from ansible import constants as C
from ansible.module_utils.parsing.convert_bool import boolean

SSH_CONNECTIONS = frozenset({"ssh", "smart", "ansible.builtin.ssh", "ansible.legacy.ssh", "mitogen_ssh"})
# Variables that mean a password: ssh's BatchMode could not answer them.
PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")
SSH_OPTIONS = ("ssh_args", "ssh_common_args", "ssh_extra_args", "ssh_executable", "host_key_checking", "remote_user",
               "port", "private_key_file", "timeout", "control_path_dir")
# Shared connections (reuse): each host's first ssh stays as a master this long after its last use, so that the
# next step of the same run costs no new login; its socket is named apart from Ansible's own.
PERSIST_SECONDS = 10


def first(host, names, default=None):
    """The first of the variables `names` that the host sets (not None, not empty), else `default`."""
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


def program(source: str, args: dict | None = None) -> str:
    """The program ssh feeds to `python3 -`: `source`, then its main(). With `args`, main gets them as
    ``["-", <json>]`` from the program itself (no length limit of a command line); without, from sys.argv."""
    call = "main(sys.argv)" if args is None else f"main(['-', {json.dumps(args, sort_keys=True)!r}])"
    return f"{source}\n\nimport sys\n{call}\n"


def host_become(host: dict, become, task_become) -> bool:
    """Whether the program runs as root on this host: `become` when given, else as Ansible would decide for the
    host (its ansible_become, else the task's become)."""
    if become is not None:
        return bool(become)
    return boolean(first(host, ("ansible_become",), bool(task_become)), strict=False)


def ssh_settings(host: dict, become: bool) -> dict:
    """The ssh connection plugin's configuration as it applies to this host, and ``become``."""
    settings = {"become": become}
    for option in SSH_OPTIONS:
        try:
            settings[option] = C.config.get_config_value(option, plugin_type="connection", plugin_name="ssh",
                                                         variables=host)
        except Exception:  # pylint: disable=broad-except  # an option this Ansible does not have
            settings[option] = None
    return settings


def _connection_options(settings: dict, reuse: bool) -> list[str]:
    """ssh's connection sharing: none (a one-shot read), or a master per host in the ssh plugin's control_path_dir
    (socket dl-fanout-<hash>), kept PERSIST_SECONDS for the next step."""
    if not reuse:
        return ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir(settings)}/dl-fanout-%C",
            "-o", f"ControlPersist={PERSIST_SECONDS}s"]


def control_dir(settings: dict) -> str:
    """Where the shared connections' sockets live: the ssh plugin's control_path_dir (~/.ansible/cp)."""
    return os.path.expanduser(str(settings.get("control_path_dir") or "~/.ansible/cp"))


def ssh_command(host: dict, settings: dict, args: dict | None = None,
                reuse: bool = False) -> tuple[list[str] | None, str]:
    """(argv, '') to run the program on one host, or (None, why not) when this host must go through Ansible.

    host: the host's variables (hostvars); settings: ssh_settings(); args: the program's JSON argument on its
    command line (None: the program carries its arguments, see program()); reuse: share one connection per host
    between the steps of a run (_connection_options).
    """
    connection = str(host.get("ansible_connection") or "ssh")
    if connection not in SSH_CONNECTIONS:
        return None, f"its connection is {connection}"
    if first(host, PASSWORD_VARS):
        return None, "it logs in with a password"
    python = first(host, ("ansible_python_interpreter",))
    # auto, auto_silent, auto_legacy...: Ansible's discovery, whose answer the cached facts keep.
    if not python or str(python).startswith("auto"):
        python = (host.get("ansible_facts") or {}).get("discovered_interpreter_python")
    if not python or any(char.isspace() for char in str(python)):
        return None, "its Python is not known yet (no cached facts)"
    address = first(host, ("ansible_host", "ansible_ssh_host"), host.get("inventory_hostname"))
    user = first(host, ("ansible_user", "ansible_ssh_user"), settings.get("remote_user"))
    port = first(host, ("ansible_port", "ansible_ssh_port"), settings.get("port"))
    key = first(host, ("ansible_ssh_private_key_file", "ansible_private_key_file"), settings.get("private_key_file"))
    remote = [str(python), "-"] + ([] if args is None else [json.dumps(args, sort_keys=True)])
    if settings.get("become"):
        method = str(first(host, ("ansible_become_method",), "sudo"))
        if method not in ("sudo", "ansible.builtin.sudo"):
            return None, f"it becomes root with {method}"
        if first(host, BECOME_PASSWORD_VARS):
            return None, "sudo asks it for a password"
        become_user = str(first(host, ("ansible_become_user",), "root"))
        remote = ["sudo", "-n", "-H", "-u", become_user, "--", *remote]
    # ssh takes the first value given for an option: these come before the configured ones.
    argv = [str(first(host, ("ansible_ssh_executable",), settings.get("ssh_executable") or "ssh")),
            "-T", "-o", "BatchMode=yes", *_connection_options(settings, reuse),
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


def ssh_commands(names, hostvars, become, task_become, timeout=None, args=None, reuse=False) -> tuple[dict, dict]:
    """({host: (argv, its ConnectTimeout)}, {host: why not}) for the hosts `names`: each host's ssh command as
    ssh_command builds it from its variables (`hostvars`) and its ssh settings, `become` as host_become decides,
    `timeout` over the ssh plugin's, `reuse` as ssh_command takes it. Templating happens here, in the caller's
    thread."""
    commands, refused = {}, {}
    for name in names:
        # The host's variables as Ansible renders them, read one by one (not all of them).
        host = hostvars[name] if name in hostvars else {"inventory_hostname": name}
        settings = ssh_settings(host, host_become(host, become, task_become))
        if timeout:
            settings["timeout"] = timeout
        argv, why = ssh_command(host, settings, args, reuse)
        if argv is not None and reuse:
            os.makedirs(control_dir(settings), mode=0o700, exist_ok=True)
        if argv is None:
            refused[name] = why
        else:
            commands[name] = (argv, connect_timeout(settings))
    return commands, refused


def parse_reply(returncode: int, stdout: str, stderr: str, keys) -> tuple[dict | None, str]:
    """(the program's result, '') or (None, why it failed) from one ssh run; the result is the last line of
    stdout, a JSON object with every one of `keys`."""
    last_error = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if returncode != 0:
        who = "ssh" if returncode == 255 else "the reader"
        return None, f"{who} exited {returncode}" + (f": {last_error}" if last_error else "")
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict) or not set(keys) <= set(result):
        return None, "the reader's output was not its JSON result"
    return result, ""


def run_one(argv: list[str], script: str, timeout: int) -> tuple[int, str, str]:
    """(returncode, stdout, stderr) of one ssh run fed `script`; 124 when it outlasts `timeout` seconds."""
    try:
        done = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer within {timeout} s"
    except OSError as error:
        return 127, "", str(error)
    return done.returncode, done.stdout, done.stderr


def run_all(commands: dict, forks: int) -> dict:
    """{name: (returncode, stdout, stderr)} for commands {name: (argv, script, timeout)}, `forks` at a time."""
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(commands) or 1))) as pool:
        return dict(zip(commands, pool.map(lambda item: run_one(*item), commands.values())))
