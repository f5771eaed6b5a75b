#!/usr/bin/python
"""Ansible module: read what a run left on a host, in one call (the converged role's drift probes)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_host_state
short_description: Read the state of what site.yml manages on a host, and the record of its last complete run
description:
  - Read-only, also in check mode. The converged role calls it twice. At the start of site.yml it reads the record
    of the host's last complete run (I(stamp)) and the current state of everything that record lists; the
    controller compares the two. At the end of a complete run it reads the state of what the run's tasks managed
    (I(probes)), which the role then writes as the new record.
  - "Each probe is reduced to a short text: a file to C(file:<sha256>:<mode>:<uid>:<gid>) (C(dir:...), C(link:...)
    or C(absent)); a unit to its C(ActiveState)/C(UnitFileState); a user to its passwd entry; a group to its
    members; a sysctl key to its value; a mount point to its source and type; a nftables table to its
    C(nft -j -s list table) listing (the controller fingerprints it)."
  - The installed packages (name, version, dpkg status) and the PCI devices (vendor:device) are always read,
    as one sha256 each.
options:
  stamp:
    description: The record of the last complete run (JSON). Missing or unreadable gives C(stamp=null).
    type: path
    required: true
  probes:
    description:
      - What to read. Omitted, the C(probes) of the record are read (an empty set without a record).
      - Keys C(files), C(units), C(users), C(unix_groups), C(sysctls), C(mounts), C(nft_tables), each a list of names.
    type: dict
author:
  - dlcluster
"""

EXAMPLES = r"""
- name: Read the record of the last complete run and what it lists
  dl_host_state:
    stamp: /var/lib/dlcluster/converged.json
  register: __converged_state

- name: Read what this run managed
  dl_host_state:
    stamp: /var/lib/dlcluster/converged.json
    probes:
      files: [/etc/ssh/sshd_config]
      units: [ssh.service]
      nft_tables: [inet dlcluster]
"""

RETURN = r"""
stamp:
  description: The record of the last complete run, or null.
  returned: always
  type: dict
probes:
  description: What was read (the given probes, else the record's), each list sorted and without repeats.
  returned: always
  type: dict
state:
  description: "Per probe kind, C({name: text}); C(packages) and C(pci): a sha256 each."
  returned: always
  type: dict
now:
  description: The host's clock (seconds since the epoch), for the record's age.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dl_host_state import read_host_state


def main():
    module = AnsibleModule(
        argument_spec={"stamp": {"type": "path", "required": True}, "probes": {"type": "dict"}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, **read_host_state(module.params["stamp"], module.params["probes"]))


if __name__ == "__main__":
    main()
