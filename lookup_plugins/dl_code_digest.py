"""Lookup: one sha256 over the repository's code that a run puts on hosts (the converged role's record), or the
tags that code uses.

A host's record of its last complete run holds this digest: any edit to a role, playbook or plugin makes every host
run its roles again, instead of trusting a record made by other code. The tags tell which of a run's --skip-tags can
leave a task out: molecule skips tags such as molecule-notest that no task here has, so its runs and a plain
ansible-playbook run do the same work and share one record.
"""

from __future__ import annotations

import hashlib
import os

import yaml

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = """
  name: dl_code_digest
  short_description: the sha256 of the repository's roles, playbooks and plugins
  description:
    - Hashes the path and content of every file under the repository's code directories (C(roles), C(playbooks),
      the plugin and module directories, dlcluster's collection) and of C(site.yml) and C(ansible.cfg), in path
      order. Compiled Python caches and Markdown documentation are left out.
    - With the term C(tags), returns instead every tag that a task, block, role or play of the repository's YAML
      (C(roles), C(playbooks), C(site.yml)) carries, sorted; use it with C(query).
    - The repository is the directory above this plugin's.
  requirements:
    - the repository's lookup_plugins directory in the lookup path (ansible.cfg sets it)
"""

EXAMPLES = """
code: "{{ lookup('dl_code_digest') }}"
used_tags: "{{ query('dl_code_digest', 'tags') }}"
"""

RETURN = """
  _raw:
    description: one hex sha256, or (term C(tags)) the tags the code uses
    type: list
    elements: str
"""

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODE = ("roles", "playbooks", "filter_plugins", "library", "action_plugins", "callback_plugins", "strategy_plugins",
        "lookup_plugins", "module_utils", "doc_fragments", "collections/ansible_collections/dlcluster",
        "site.yml", "ansible.cfg")
TAGGED = ("roles", "playbooks", "site.yml")


def code_files(root, entries=CODE):
    """Every code file under root's entries, as sorted paths relative to root."""
    found = []
    for entry in entries:
        top = os.path.join(root, entry)
        if os.path.isfile(top):
            found.append(entry)
        for directory, subdirs, files in os.walk(top):
            subdirs[:] = [name for name in subdirs if name != "__pycache__"]
            # Documentation (a role's README) changes nothing a run does.
            found.extend(os.path.relpath(os.path.join(directory, name), root)
                         for name in files if not name.endswith((".pyc", ".md")))
    return sorted(found)


def code_digest(root):
    digest = hashlib.sha256()
    for path in code_files(root):
        digest.update(path.encode() + b"\0")
        with open(os.path.join(root, path), "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


class _TagLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # pylint: disable=too-many-ancestors
    """Safe YAML that reads Ansible's own tags (!unsafe, !vault) as plain values instead of failing."""


_TagLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None)


def _tags_in(data, found):
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "tags":
                found.update(str(tag).strip() for tag in (value if isinstance(value, list) else str(value).split(",")))
            _tags_in(value, found)
    elif isinstance(data, list):
        for item in data:
            _tags_in(item, found)


def code_tags(root):
    """Every value of a `tags` key in the YAML of TAGGED under root (over-inclusive: a module option named tags
    counts too, which only keeps more --skip-tags as inputs)."""
    found = set()
    for path in code_files(root, TAGGED):
        if path.endswith((".yml", ".yaml")):
            with open(os.path.join(root, path), encoding="utf-8") as handle:
                _tags_in(yaml.load(handle, Loader=_TagLoader), found)  # nosec B506 - a safe loader
    return sorted(found)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if not terms or list(terms) == ["code"]:
            return [code_digest(ROOT)]
        if list(terms) == ["tags"]:
            return code_tags(ROOT)
        raise AnsibleLookupError(f"dl_code_digest: the term is 'code' (the default) or 'tags', not {list(terms)}")
