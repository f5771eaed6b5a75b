"""The CI helpers: the failed-test summary printed at the end of a failed scenario, and the strategy plugin."""

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
    missing = subprocess.run([sys.executable, script, str(tmp_path / "none.xml")],
                             capture_output=True, text=True, check=True).stdout
    assert "failed before its verify step" in missing


def test_the_strategy_plugin_is_mitogens_linear_strategy():
    strategy_loader.add_directory(str(ROOT / "strategy_plugins"))
    plugin = strategy_loader.get("mitogen_linear", class_only=True)
    bases = {cls.__module__ + "." + cls.__name__ for cls in plugin.__mro__}
    assert "ansible_mitogen.strategy.StrategyMixin" in bases, bases
    assert "ansible.plugins.strategy.linear.StrategyModule" in bases, bases
