"""Lookup: one sha256 over the repository's code that a run puts on hosts (the converged role's record).

A host's record of its last complete run holds this digest: any edit to a role, playbook or plugin makes every host
run its roles again, instead of trusting a record made by other code.
"""

from __future__ import annotations

import hashlib
import os

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
  name: dl_code_digest
  short_description: the sha256 of the repository's roles, playbooks and plugins
  description:
    - Hashes the path and content of every file under the repository's code directories (C(roles), C(playbooks),
      the plugin and module directories, dlcluster's collection) and of C(site.yml) and C(ansible.cfg), in path
      order. Compiled Python caches are left out.
    - The repository is the directory above this plugin's; terms are ignored.
  requirements:
    - the repository's lookup_plugins directory in the lookup path (ansible.cfg sets it)
"""

RETURN = """
  _raw:
    description: one hex sha256
    type: list
    elements: str
"""

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = ("roles", "playbooks", "filter_plugins", "library", "action_plugins", "callback_plugins", "strategy_plugins",
        "lookup_plugins", "module_utils", "doc_fragments", "collections/ansible_collections/dlcluster",
        "site.yml", "ansible.cfg")


def code_files(root):
    """Every code file under root, as sorted paths relative to it."""
    found = []
    for entry in CODE:
        top = os.path.join(root, entry)
        if os.path.isfile(top):
            found.append(entry)
        for directory, subdirs, files in os.walk(top):
            subdirs[:] = [name for name in subdirs if name != "__pycache__"]
            found.extend(os.path.relpath(os.path.join(directory, name), root)
                         for name in files if not name.endswith(".pyc"))
    return sorted(found)


def code_digest(root):
    digest = hashlib.sha256()
    for path in code_files(root):
        digest.update(path.encode() + b"\0")
        with open(os.path.join(root, path), "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [code_digest(ROOT)]
