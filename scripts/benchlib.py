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


def lab_down(name: str) -> None:
    """Remove the lab `name` after its measurements; a failure is reported, not raised: the figures already taken
    stay valid and are written (Docker can refuse to remove a network whose hosts it is still removing)."""
    try:
        lab("down", "--name", name)
    except subprocess.CalledProcessError as error:
        print(f"bench: the {name} lab was not removed ({error}); `python3 lab/lab.py down --name {name}` "
              "removes what is left", file=sys.stderr, flush=True)


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


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds so far of `pid` and every process below it: each live one's own time and that of the children
    it has reaped (a process that ends is added to its parent's when the parent reaps it)."""
    total = 0
    for member in [pid, *descendants(pid)]:
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # utime, stime, cutime, cstime: fields 14-17 of proc(5), 12-15 after the name.
        total += sum(int(value) for value in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_at(timeline: list[tuple[float, float]], moment: float) -> float | None:
    """The controller CPU seconds of the last sample at or before the unix time `moment`."""
    before = [cpu for when, cpu in timeline if when <= moment]
    return round(before[-1], 2) if before else None


def run_watched(argv: list[str], cwd: Path, env: dict) -> dict:
    """Run a playbook; return its exit status, output, wall seconds (and its unix start), the controller CPU
    seconds of it and every process it started (getrusage of the reaped children), the most task workers
    alive at once (sampled every 0.5 s), and the controller CPU seconds over time (cpu_timeline: (unix time, CPU
    seconds so far) every 0.2 s, for the CPU spent up to a moment of the run)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = {"workers": 0}
    timeline: list[tuple[float, float]] = []

    def sample():
        tick = 0
        while proc.poll() is None:
            timeline.append((time.time(), tree_cpu_seconds(proc.pid)))
            if tick % 2 == 0:
                peak["workers"] = max(peak["workers"], ansible_workers(proc.pid))
            tick += 1
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    sampler.join()
    wall = time.time() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"rc": proc.returncode, "output": output, "started": started, "wall_s": round(wall, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
            "peak_workers": peak["workers"], "cpu_timeline": timeline}


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
