"""Make filter_plugins/ and lab/ importable by the unit tests."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for sub in ("filter_plugins", "lab", "library"):
    sys.path.insert(0, str(ROOT / sub))

FIXTURES = Path(__file__).resolve().parent / "fixtures"
