"""The CI helpers: the failed-test summary printed at the end of a failed scenario, and the strategy plugin."""

import os
import subprocess
import sys

from ansible.plugins.loader import strategy_loader

from conftest import ROOT, load_script

junit_failures = load_script("junit_failures", ROOT / "scripts" / "junit_failures.py")

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" tests="3">
<testcase classname="tests.test_firewall" name="test_ok" time="1.0"/>
<testcase classname="tests.test_firewall" name="test_rate[ansible://head]" time="2.0">
<failure message="AssertionError: only 41 connections">line 1
E   AssertionError: only 41 connections from the controller in 6 s</failure></testcase>
<testcase classname="tests.test_train" name="test_ddp" time="0.1"><error message="fixture failed">boom</error></testcase>
</testsuite></testsuites>
"""


def test_failures_names_each_failed_and_erroring_test_with_its_message(tmp_path):
    report = tmp_path / "junit-lab.xml"
    report.write_text(REPORT)
    found = junit_failures.failures(report)
    assert [name for name, _ in found] == ["tests.test_firewall::test_rate[ansible://head]",
                                           "tests.test_train::test_ddp"]
    assert found[0][1].endswith("only 41 connections from the controller in 6 s") and found[1][1] == "boom"


def test_script_prints_the_failures_and_says_when_there_is_no_report(tmp_path):
    report = tmp_path / "junit-lab.xml"
    report.write_text(REPORT)
    script = str(ROOT / "scripts" / "junit_failures.py")
    printed = subprocess.run([sys.executable, script, str(report)], capture_output=True, text=True, check=True).stdout
    assert "== 2 failed test(s)" in printed and "-- FAILED tests.test_train::test_ddp" in printed
    short = subprocess.run([sys.executable, script, "--short", str(report)], capture_output=True, text=True,
                           check=True).stdout
    assert short.splitlines() == [
        "tests.test_firewall::test_rate[ansible://head]: E   AssertionError: only 41 connections from the "
        "controller in 6 s", "tests.test_train::test_ddp: boom"]
    missing = subprocess.run([sys.executable, script, str(tmp_path / "none.xml")],
                             capture_output=True, text=True, check=True).stdout
    assert "failed before its verify step" in missing


def test_the_strategy_plugin_is_mitogens_linear_strategy():
    strategy_loader.add_directory(str(ROOT / "strategy_plugins"))
    plugin = strategy_loader.get("mitogen_linear", class_only=True)
    bases = {cls.__module__ + "." + cls.__name__ for cls in plugin.__mro__}
    assert "ansible_mitogen.strategy.StrategyMixin" in bases, bases
    assert "ansible.plugins.strategy.linear.StrategyModule" in bases, bases


FAKE_MOLECULE = """#!/bin/bash
# molecule STEP -s SCENARIO [...]: records the call; `test` of a scenario is one whole run.
echo "molecule $1 $3 $(date +%s.%N)" >> "$CALLS"
[ "$1" = verify ] && [ -n "${VERIFY_FAILS:-}" ] && exit 1
exit 0
"""

FAKE_MAKE = """#!/bin/bash
# make --no-print-directory TARGET: records start and end; the target in FAIL_TARGET fails.
target=${@: -1}
echo "make $target start $(date +%s.%N)" >> "$CALLS"
sleep 0.3
echo "make $target end $(date +%s.%N)" >> "$CALLS"
[ "$target" != "${FAIL_TARGET:-}" ]
"""


def _suite(tmp_path, **env):
    """scripts/molecule-suite.sh in a copy of the repository's scripts, with molecule and make replaced."""
    (tmp_path / "scripts").mkdir()
    for name in ("molecule-suite.sh", "junit_failures.py"):
        (tmp_path / "scripts" / name).write_text((ROOT / "scripts" / name).read_text())
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in (("molecule", FAKE_MOLECULE), ("make", FAKE_MAKE)):
        (fake / name).write_text(body)
        (fake / name).chmod(0o755)
    calls = tmp_path / "calls"
    run = subprocess.run(["bash", str(tmp_path / "scripts" / "molecule-suite.sh"), "--beside", "lint", "--beside",
                          "unit", "accelerators", "lab"], capture_output=True, text=True, check=False,
                         env={"PATH": f"{fake}:/usr/bin:/bin", "CALLS": str(calls), **env})
    return run, [line.split() for line in calls.read_text().splitlines()]


def test_suite_runs_lint_and_unit_beside_the_lab_and_verifies_after_them(tmp_path):
    run, calls = _suite(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = [(c[0], c[1], c[2]) for c in calls]
    assert ("molecule", "test", "accelerators") in steps
    when = {(c[1], c[2]): float(c[-1]) for c in calls}
    # Both targets started before the lab's converge ended, and the lab's verify came after both had finished.
    assert when[("lint", "start")] < when[("converge", "lab")] + 1 and when[("unit", "start")] < when[("converge", "lab")] + 1
    assert when[("verify", "lab")] > max(when[("lint", "end")], when[("unit", "end")])
    assert "== make lint (beside the lab), the log:" in run.stdout and "== stage unit:" in run.stdout


def test_suite_fails_when_a_target_beside_the_lab_fails_and_then_skips_the_verify(tmp_path):
    run, calls = _suite(tmp_path, FAIL_TARGET="unit")
    assert run.returncode != 0
    assert "== make unit failed" in run.stdout
    assert run.stdout.rstrip().splitlines()[-1] == "== FAILED: make unit failed"
    assert ["molecule", "verify", "lab"] not in [c[:3] for c in calls]
    assert ["molecule", "destroy", "lab"] in [c[:3] for c in calls]


def test_suite_fails_when_the_lab_verify_fails(tmp_path):
    run, _calls = _suite(tmp_path, VERIFY_FAILS="1")
    assert run.returncode != 0
    # The failed tests are named again on the log's last lines, after the destroy's output.
    assert run.stdout.rstrip().splitlines()[-2:] == [
        "== FAILED: lab verify failed:", "== FAILED: == no test report at .ansible/junit-lab.xml: the scenario "
        "failed before its verify step (see above)"]


PINNING = """
import os, sys, types
sys.path.insert(0, sys.argv[1])
import ansible_mitogen.affinity as affinity
mitogens = affinity.policy
import mitogen_linear

everything = os.sched_getaffinity(0)
# mitogen's own policy for a 2-CPU controller: a task worker lands on CPU 1 alone.
affinity.LinuxPolicy(cpu_count=2).assign_worker()
print("mitogen", sorted(os.sched_getaffinity(0)))
os.sched_setaffinity(0, everything)
# The plugin's policy on 2 usable CPUs: nothing is pinned.
policy = mitogen_linear.affinity_policy(affinity, 2)
policy.assign_controller(); policy.assign_muxprocess(0); policy.assign_worker()
print("plugin", sorted(os.sched_getaffinity(0)) == sorted(everything))
# From 4 CPUs up, mitogen's own placement is kept.
print("kept", mitogen_linear.affinity_policy(types.SimpleNamespace(Policy=affinity.Policy, policy=mitogens), 4)
      is mitogens)
# Loading the plugin chose for this machine.
print("loaded", type(affinity.policy).__name__ if len(everything) < 4 else "big")
"""


def test_the_strategy_leaves_mitogens_cpu_pinning_off_below_four_cpus():
    # Run apart: pinning would otherwise hold this test process to one CPU.
    out = subprocess.run([sys.executable, "-c", PINNING, str(ROOT / "strategy_plugins")], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    assert out[:4] == ["mitogen [1]", "plugin True", "kept True",
                       "loaded Policy" if len(os.sched_getaffinity(0)) < 4 else "loaded big"], out
