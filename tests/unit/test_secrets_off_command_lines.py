"""No task puts a secret on a command line: every local user can read a process's arguments in /proc while it runs.
Secrets reach programs through their environment, stdin or a file readable by their user only."""

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

COMMAND_MODULES = {"command", "shell", "raw", "ansible.builtin.command", "ansible.builtin.shell",
                   "ansible.builtin.raw"}
# Variables that hold secrets by their names: passwords, tokens, PSKs, keys' passphrases, S3 credentials.
# (A variable, not a quoted word: "getent passwd" is no secret.)
SECRET = re.compile(r"\{\{[^}]*(?<!['\"\w])\w*(password|passwd|token|secret|psk|passphrase|access_key)\w*(?!['\"\w])[^}]*\}\}",
                    re.I)


def tasks(node):
    """Every task of a tasks file, blocks included."""
    for task in node or []:
        if not isinstance(task, dict):
            continue
        yield task
        for section in ("block", "rescue", "always"):
            yield from tasks(task.get(section))


def command_lines():
    for path in (sorted((ROOT / "roles").glob("*/tasks/*.yml")) + sorted((ROOT / "roles").glob("*/handlers/*.yml"))
                 + sorted((ROOT / "playbooks").glob("*.yml"))):
        documents = yaml.safe_load(path.read_text())
        plays = documents if path.parent.name == "playbooks" else [{"tasks": documents}]
        for play in plays or []:
            for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
                for task in tasks(play.get(section) if isinstance(play, dict) else None):
                    for module in COMMAND_MODULES & task.keys():
                        arguments = task[module]
                        if isinstance(arguments, dict):
                            argv = arguments.get("argv", [])
                            arguments = [arguments.get("cmd", ""), *([argv] if isinstance(argv, str) else argv),
                                         arguments.get("_raw_params", "")]
                        yield path.relative_to(ROOT), task.get("name", "?"), str(arguments)


COMMAND_LINES = list(command_lines())


def test_the_scan_sees_the_command_tasks():
    # The scan must find the repository's command tasks, devpi-init's among them, or it proves nothing.
    assert len(COMMAND_LINES) > 40
    assert any("devpi-init" in line for _, _, line in COMMAND_LINES)


@pytest.mark.parametrize("path,name,line", COMMAND_LINES, ids=lambda value: str(value)[:60])
def test_no_secret_variable_on_a_command_line(path, name, line):
    found = SECRET.search(line)
    assert not found, f"{path}: task '{name}' puts {found.group(0)} on a command line"


def test_the_pattern_catches_a_password_on_a_command_line():
    assert SECRET.search("['devpi-init', '--root-passwd', '{{ pip_mirror_root_password }}']")
    assert SECRET.search("curl -u admin:{{ grafana_admin_password | quote }} http://x")
    assert not SECRET.search("devpi-init --serverdir {{ pip_mirror_data_dir }}")
    assert not SECRET.search("{{ ['getent', 'passwd'] + dl_users | map(attribute='name') | list }}")
