"""scripts/benchlib.py: the controller CPU of a process tree, sampled while it runs (make bench-launch-scale's
overhead CPU up to every unit started)."""

import subprocess
import sys
import time

from conftest import ROOT, load_script

benchlib = load_script("benchlib", ROOT / "scripts" / "benchlib.py")

BURN = "import time\nend = time.process_time() + {seconds}\nwhile time.process_time() < end: pass\n"


def test_the_tree_cpu_counts_live_children_and_those_already_reaped():
    # A shell whose first child burns 0.6 CPU-s and is reaped, while a second child is burning 0.6 more.
    script = (f"{sys.executable} -c '{BURN.format(seconds=0.6)}'; "
              f"{sys.executable} -c '{BURN.format(seconds=0.6)}' & wait")
    proc = subprocess.Popen(["sh", "-c", script])
    samples = []
    while proc.poll() is None:
        samples.append((time.time(), benchlib.tree_cpu_seconds(proc.pid)))
        time.sleep(0.05)
    assert samples, "the tree ended before the first sample"
    # Late in the second child's 0.6 s, the tree holds the first child's 0.6 s (in the shell's reaped-children time)
    # and most of the second's: more than either child alone.
    assert max(cpu for _, cpu in samples) >= 0.9, samples


def test_cpu_at_takes_the_last_sample_at_or_before_the_moment():
    timeline = [(10.0, 1.0), (10.2, 1.3), (10.4, 1.9)]
    assert benchlib.cpu_at(timeline, 10.3) == 1.3
    assert benchlib.cpu_at(timeline, 10.4) == 1.9
    assert benchlib.cpu_at(timeline, 9.9) is None
