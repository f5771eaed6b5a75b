"""Make filter_plugins/, lab/, library/, module_utils/ and the local collection (collections/) importable by the unit
tests; load scripts by path."""

import sys
import time
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import ansible.module_utils

ROOT = Path(__file__).resolve().parents[2]
# collections/ joins the ansible_collections namespace package of the installed collections (dlcluster.cluster).
for sub in ("filter_plugins", "lab", "library", "collections"):
    sys.path.insert(0, str(ROOT / sub))
# The modules import module_utils/ as ansible.module_utils.<name>, as ansible.cfg's module_utils makes them.
ansible.module_utils.__path__.append(str(ROOT / "module_utils"))

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_script(name, path):
    """Import the script at `path` (with or without .py) as the module `name`, registered in sys.modules."""
    loader = SourceFileLoader(name, str(path))
    module = module_from_spec(spec_from_loader(name, loader))
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def wait_until(condition, timeout=30.0, every=0.05):
    """Call condition() until it returns something true or `timeout` seconds pass; its last value. For tests that
    wait on another process: a fixed sleep is outlasted on a loaded machine (CI runs the unit tests beside the
    lab's converge)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every)
