"""The lab's tests. The marker `full` keeps a test out of CI's 45-minute budget: each such test is a variant of
behaviour that another test in CI proves, and `make test-full` runs it (.config/molecule/config.yml reads
DL_LAB_TESTS, default "not full"). README.md, "Tests", lists them.

The tests import the filter plugins they check against (e.g. dl_firewall_fingerprint) from filter_plugins/, and
those import dlcluster.cluster's shared code from collections/, as ansible.cfg's collections_path makes it
importable for Ansible: both directories are put on sys.path here."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
for sub in ("collections", "filter_plugins"):
    if str(ROOT / sub) not in sys.path:
        sys.path.insert(0, str(ROOT / sub))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "full: runs only in make test-full (a variant of what a test in CI proves; README lists them)")
