"""What the benchmark scripts share: the lab tool, a lab's inventory, the controller's processes, another checkout.

Imported by scripts/bench_*.py (they run from the repository's scripts/ directory, which Python puts on sys.path).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
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


def run_watched(argv: list[str], cwd: Path, env: dict) -> dict:
    """Run a playbook; return its exit status, output, wall seconds (and its unix start), the controller CPU
    seconds of it and every process it started (getrusage of the reaped children), and the most task workers
    alive at once (sampled every 0.5 s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = {"workers": 0}

    def sample():
        while proc.poll() is None:
            peak["workers"] = max(peak["workers"], ansible_workers(proc.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    sampler.join()
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"rc": proc.returncode, "output": output, "started": started, "wall_s": round(wall, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "peak_workers": peak["workers"]}


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None (and a note) where matplotlib is missing."""
    try:
        import matplotlib  # pylint: disable=import-outside-toplevel
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr, flush=True)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
