"""Make filter_plugins/, lab/, library/ and module_utils/ importable by the unit tests."""

import sys
from pathlib import Path

import ansible.module_utils

ROOT = Path(__file__).resolve().parents[2]
for sub in ("filter_plugins", "lab", "library"):
    sys.path.insert(0, str(ROOT / sub))
# The modules import module_utils/ as ansible.module_utils.<name>, as ansible.cfg's module_utils makes them.
ansible.module_utils.__path__.append(str(ROOT / "module_utils"))

FIXTURES = Path(__file__).resolve().parent / "fixtures"
