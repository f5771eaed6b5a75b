"""What the benchmark scripts share: the lab tool, a lab's inventory, the controller's processes, another checkout.

Imported by scripts/bench_*.py (they run from the repository's scripts/ directory, which Python puts on sys.path).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PLAYBOOK = str(BIN / "ansible-playbook")


def lab(*args: str) -> None:
    """Run lab/lab.py (up, down, ...) quietly; fail on its error."""
    subprocess.run([sys.executable, str(ROOT / "lab" / "lab.py"), *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def inventory_dir(name: str) -> Path:
    """The inventory of the lab `name`: hosts.yml from lab.py beside links to the lab inventory's groups and
    group_vars."""
    path = ROOT / ".lab" / name / "inventory"
    path.mkdir(parents=True, exist_ok=True)
    for entry in ("groups.yml", "group_vars"):
        link = path / entry
        if not link.exists():
            link.symlink_to(ROOT / "inventories" / "lab" / entry)
    return path


def lab_env(name: str) -> dict:
    """The environment a playbook on the lab `name` needs (its state: key, CAs, network)."""
    return {**os.environ, "DL_LAB_NAME": name, "DL_LAB_STATE_DIR": str(ROOT / ".lab"), "ANSIBLE_FORCE_COLOR": "0"}


def descendants(pid: int) -> list[int]:
    """Every process below `pid`."""
    children, found = {}, []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def ansible_workers(pid: int) -> int:
    """ansible-playbook processes below the main one (task workers: one per host being worked on)."""
    count = 0
    for child in descendants(pid):
        try:
            if b"ansible-playbook" in Path(f"/proc/{child}/cmdline").read_bytes():
                count += 1
        except OSError:
            continue
    return count


def checkout_env(checkout: Path, env: dict | None = None, tag: str = "bench") -> dict:
    """The environment for a run of `checkout`: an ANSIBLE_CONFIG that names this repository's roles and plugins
    (molecule's does) is copied with the other checkout's paths instead."""
    env = dict(os.environ if env is None else env)
    config = env.get("ANSIBLE_CONFIG")
    if checkout != ROOT and config and Path(config).is_file():
        copy = Path(f"/tmp/{tag}-{checkout.name}.cfg")
        copy.write_text(Path(config).read_text().replace(str(ROOT), str(checkout)))
        env["ANSIBLE_CONFIG"] = str(copy)
    return env
