#!/usr/bin/env python3
"""Name the failed tests of a molecule scenario at the end of the log (CI shows the log's tail).

Usage: junit_failures.py [--short] REPORT.xml  (the verifier's --junitxml, see .config/molecule/config.yml)
--short: one line per failed test, its id and the last line of its failure (for the very end of the log).
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TAIL_LINES = 15


def failures(report: Path) -> list[tuple[str, str]]:
    """(test id, the last lines of its failure text) for every failed or erroring test case."""
    found = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for problem in [*case.findall("failure"), *case.findall("error")]:
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            text = (problem.text or problem.get("message") or "").rstrip().splitlines()
            found.append((name, "\n".join(text[-TAIL_LINES:])))
    return found


def main(argv: list[str]) -> int:
    short = "--short" in argv
    report = Path([arg for arg in argv[1:] if arg != "--short"][0])
    if not report.exists():
        print(f"== no test report at {report}: the scenario failed before its verify step (see above)")
        return 0
    found = failures(report)
    if short:
        for name, text in found:
            print(f"{name}: {(text.splitlines() or [''])[-1][:300]}")
        return 0
    print(f"== {len(found)} failed test(s) in {report.name}")
    for name, text in found:
        print(f"-- FAILED {name}\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
