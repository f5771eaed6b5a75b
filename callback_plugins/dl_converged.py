"""Notes, per host, what a run's tasks manage: the probes of the converged role's record.

At the end of a complete site.yml run the converged role records, on each host, the state of everything the run's
tasks managed there: the files they wrote, the units they started, the users and groups they made, the sysctl keys
and mount points they set. The next run compares that record with the host before it runs any role, and leaves a
host whose record still holds out of every play (roles/converged/README.md).

Tasks cannot list what they manage without repeating every path; Ansible's callbacks see every result. This callback
reads the results of the modules below and keeps, per host, the fact ``dl_converged_probes``: ``{files, units, users,
unix_groups, sysctls, mounts}``, each a list of names. Results of tasks delegated to another host are left out (what
they manage is on that host), and so are results whose arguments are hidden (no_log).
"""

from __future__ import annotations

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
  name: dl_converged
  type: aggregate
  short_description: notes per host what the run's tasks manage (the converged role's probes)
  description:
    - Every host gets the fact C(dl_converged_probes) listing the files, units, users, groups, sysctl keys and mount
      points that this run's file, service, user, group, sysctl and mount tasks managed on it.
  requirements:
    - the repository's callback_plugins directory in the callback path (ansible.cfg sets it)
"""

FACT = "dl_converged_probes"
KINDS = ("files", "units", "users", "unix_groups", "sysctls", "mounts")

# Modules that write one file, and the result/argument keys that name it.
FILE_MODULES = {
    "template": ("dest",), "copy": ("dest",), "lineinfile": ("path", "dest"), "blockinfile": ("path", "dest"),
    "replace": ("path", "dest"), "ini_file": ("path", "dest"), "get_url": ("dest",), "assemble": ("dest",),
    "file": ("path", "dest"), "authorized_key": ("keyfile",), "openssl_privatekey": ("filename", "path"),
    "openssh_keypair": ("filename", "path"),
}
UNIT_MODULES = ("systemd_service", "systemd", "service")


def short_name(action) -> str:
    """`ansible.builtin.copy` -> `copy`."""
    return str(action or "").rsplit(".", 1)[-1]


def managed(action, result) -> dict:
    """What one module result manages: ``{kind: [names]}`` (empty when nothing, or the module is not followed)."""
    if not isinstance(result, dict) or result.get("skipped") or result.get("failed"):
        return {}
    args = (result.get("invocation") or {}).get("module_args") or {}
    module = short_name(action)
    if module in FILE_MODULES:
        if module == "file" and (args.get("state") or result.get("state")) not in ("file", "directory", "link", None):
            return {}
        for key in FILE_MODULES[module]:
            path = result.get(key) or args.get(key)
            if isinstance(path, str) and path.startswith("/"):
                return {"files": [path]}
        return {}
    if module in UNIT_MODULES:
        name = result.get("name") or args.get("name")
        started = args.get("state") in ("started", "restarted", "reloaded") or args.get("enabled") is not None
        return {"units": [str(name)]} if name and started else {}
    if module in ("user", "group"):
        name = result.get("name") or args.get("name")
        kind = "users" if module == "user" else "unix_groups"
        return {kind: [str(name)]} if name and (args.get("state") or "present") == "present" else {}
    if module == "sysctl":
        name = args.get("name")
        return {"sysctls": [str(name)]} if name else {}
    if module == "mount":
        path = args.get("path") or args.get("name")
        fstab = args.get("fstab") or "/etc/fstab"
        return {"mounts": [str(path)], "files": [str(fstab)]} if path and args.get("state") == "mounted" else {}
    return {}


class CallbackModule(CallbackBase):
    """Keeps ``dl_converged_probes`` up to date on every host a followed module ran on."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "dl_converged"
    # Always on where the directory is in the callback path: the converged role relies on it.
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self):
        super().__init__()
        self._variable_manager = None
        self._probes = {}

    def v2_playbook_on_play_start(self, play):
        self._variable_manager = play.get_variable_manager()

    def v2_runner_on_ok(self, result):
        data = result.result
        # A delegated task manages something on the host it was delegated to.
        if data.get("_ansible_delegated_vars") or result.task.delegate_to or self._variable_manager is None:
            return
        items = data.get("results") if isinstance(data.get("results"), list) else [data]
        found = {}
        for item in items:
            for kind, names in managed(result.task.action, item).items():
                found.setdefault(kind, []).extend(names)
        if not found:
            return
        host = result.host.get_name()
        probes = self._probes.setdefault(host, {kind: set() for kind in KINDS})
        for kind, names in found.items():
            probes[kind].update(names)
        self._variable_manager.set_nonpersistent_facts(
            host, {FACT: {kind: sorted(names) for kind, names in probes.items()}})
