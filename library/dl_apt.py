#!/usr/bin/python
"""Ansible module documentation of dl_apt; the work is done by action_plugins/dl_apt.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_apt
short_description: Install Debian packages with ansible.builtin.apt, answering from dpkg when none is missing
description:
  - For I(state=present) only. Asks dpkg first (one read-only C(dpkg-query) of the named packages, and apt's list of
    automatically installed packages); when every package is installed, marked manually installed and in the exact
    version of its pin, returns C(changed=false) without running apt, which loads apt's whole cache on every call.
  - Otherwise (a package missing, removed, in another version, half-installed or installed only as a dependency, a
    wildcard pin, any other option) runs M(ansible.builtin.apt) with the task's arguments, so what is installed and
    how stays apt's decision.
  - A task whose packages are all installed does not refresh apt's lists (I(update_cache)); give every install
    I(cache_valid_time), so that the one that runs apt refreshes stale lists itself.
  - The action plugin does the work; this file carries the documentation and the accepted arguments.
options:
  name:
    description:
      - Package names, each optionally pinned (C(name=1.2.3); a wildcard pin always runs apt), as for
        M(ansible.builtin.apt).
    type: list
    elements: str
    required: true
  state:
    description: Only C(present).
    type: str
    choices: [present]
    default: present
  update_cache:
    description: Passed to M(ansible.builtin.apt) when it runs.
    type: bool
    default: false
  cache_valid_time:
    description: Passed to M(ansible.builtin.apt) when it runs.
    type: int
    default: 0
  install_recommends:
    description: Passed to M(ansible.builtin.apt) when it runs.
    type: bool
  lock_timeout:
    description: Passed to M(ansible.builtin.apt) when it runs.
    type: int
    default: 60
author: dlcluster
"""

EXAMPLES = r"""
- name: Install nftables
  dl_apt:
    name: [nftables]
    state: present
    update_cache: true
    cache_valid_time: 3600
"""

RETURN = r"""
dl_apt_fast_path:
  description: True when dpkg showed every package installed and apt did not run.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "list", "elements": "str", "required": True},
            "state": {"type": "str", "choices": ["present"], "default": "present"},
            "update_cache": {"type": "bool", "default": False},
            "cache_valid_time": {"type": "int", "default": 0},
            "install_recommends": {"type": "bool"},
            "lock_timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    module.fail_json(msg="dl_apt runs through its action plugin (action_plugins/dl_apt.py): put that directory in "
                         "the action plugin path (ansible.cfg's action_plugins)")


if __name__ == "__main__":
    main()
