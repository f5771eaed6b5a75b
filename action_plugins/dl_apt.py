"""dl_apt: ansible.builtin.apt for `state: present`, without opening apt's cache when nothing is missing.

ansible.builtin.apt loads the whole apt cache (python-apt) on every call, about a second of the host's CPU even when
every package is already installed: a warm `site.yml` ran 23 such tasks per host. dl_apt first asks dpkg (one
`dpkg-query` of the named packages and apt's list of automatically installed ones, read-only, check mode too) and
returns `changed: false` when each one is installed, marked manually installed (apt marks every package it is named),
and in the exact version of its pin, if any (`name=1.2.3`). Anything else -- a package missing, removed by hand, in
another version, half-installed, installed only as a dependency, a wildcard pin (apt would upgrade within it), or an
option this fast path does not judge -- runs ansible.builtin.apt with the task's own arguments, so what is installed,
and how, stays apt's decision.

What the fast path leaves out: a task whose packages are all installed does not refresh apt's lists
(`update_cache`, `cache_valid_time`), as apt itself would once the lists are older than `cache_valid_time`; the next
install that needs the lists refreshes them.
"""

from __future__ import annotations

import re
import shlex

from ansible.plugins.action import ActionBase

# The options whose meaning, for packages already installed, is "nothing to do" at state present.
FAST_PATH_OPTIONS = {"name", "state", "update_cache", "cache_valid_time", "install_recommends", "lock_timeout"}
# A Debian package name (Policy 5.6.1), optionally pinned to one exact version with =VERSION.
PACKAGE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9+.-]+)(?:=(?P<version>[A-Za-z0-9.+~:-]+))?$")
DPKG_QUERY_FORMAT = "${Package}\\t${db:Status-Abbrev}\\t${Version}\\n"
# apt's record of the packages it installed as dependencies ("Auto-Installed: 1").
EXTENDED_STATES = "/var/lib/apt/extended_states"
SEPARATOR = "--- dl_apt: apt's extended states ---"


def wanted_packages(args: dict) -> list[tuple[str, str | None]] | None:
    """The (name, version pin) pairs a task asks for, or None when the fast path must not judge the task."""
    if set(args) - FAST_PATH_OPTIONS or args.get("state", "present") != "present":
        return None
    names = args.get("name")
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
    if not isinstance(names, list) or not names:
        return None
    wanted = []
    for item in names:
        match = PACKAGE.match(str(item).strip())
        if match is None:
            return None
        wanted.append((match["name"], match["version"]))
    return wanted


def parse_dpkg_query(stdout: str) -> dict[str, tuple[str, str]]:
    """dpkg-query's lines (package, status abbreviation, version) as {package: (status, version)}."""
    found = {}
    for line in stdout.split(SEPARATOR)[0].splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            found[parts[0]] = (parts[1].strip(), parts[2].strip())
    return found


def parse_auto_installed(stdout: str) -> set[str]:
    """The packages apt's extended states (after the separator) mark Auto-Installed: 1, any architecture."""
    auto = set()
    for stanza in stdout.split(SEPARATOR, 1)[-1].split("\n\n") if SEPARATOR in stdout else []:
        fields = dict(line.split(":", 1) for line in stanza.strip().splitlines() if ":" in line)
        if fields.get("Auto-Installed", "").strip() == "1" and fields.get("Package"):
            auto.add(fields["Package"].strip())
    return auto


def not_installed(wanted: list[tuple[str, str | None]], found: dict[str, tuple[str, str]],
                  auto: frozenset | set = frozenset()) -> list[str]:
    """The wanted packages dpkg does not hold installed ("ii") in their pinned version, or that apt installed only
    as a dependency (apt marks a package it is named manually installed)."""
    missing = []
    for name, pin in wanted:
        status, version = found.get(name, ("", ""))
        if status != "ii" or (pin is not None and version != pin) or name in auto:
            missing.append(name if pin is None else f"{name}={pin}")
    return missing


def dpkg_query_command(wanted: list[tuple[str, str | None]]) -> str:
    names = " ".join(shlex.quote(name) for name, _ in wanted)
    # Unknown names make dpkg-query exit 1 (they print nothing on stdout): those count as missing.
    return (f"dpkg-query --show --showformat={shlex.quote(DPKG_QUERY_FORMAT)} -- {names}; "
            f"echo {shlex.quote(SEPARATOR)}; cat {EXTENDED_STATES} 2>/dev/null; true")


class ActionModule(ActionBase):
    """Answers from dpkg when every package is installed; runs ansible.builtin.apt otherwise."""

    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        self._supports_check_mode = True  # dpkg-query only reads; apt handles check mode itself
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        wanted = wanted_packages(args)
        if wanted is not None:
            query = self._low_level_execute_command(dpkg_query_command(wanted), sudoable=False)
            stdout = query.get("stdout", "")
            missing = not_installed(wanted, parse_dpkg_query(stdout), parse_auto_installed(stdout))
            if not missing:
                result.update(changed=False, dl_apt_fast_path=True,
                              msg=f"installed: {', '.join(name for name, _ in wanted)} (dpkg; apt's cache not read)")
                return result
            self._display.vvv(f"dl_apt: not installed: {', '.join(missing)}; running ansible.builtin.apt")
        result.update(self._execute_module(module_name="ansible.builtin.apt", module_args=args,
                                           task_vars=task_vars))
        result["dl_apt_fast_path"] = False
        self._remove_tmp_path(self._connection._shell.tmpdir)  # as Ansible's own "normal" action does
        return result
