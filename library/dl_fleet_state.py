#!/usr/bin/python
"""Ansible module documentation of dl_fleet_state; the work is done by action_plugins/dl_fleet_state.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_fleet_state
short_description: Read M(dl_host_state)'s record and state on many hosts at once, over plain ssh
description:
  - Runs once, on the controller. For each host of I(hosts) it starts one C(ssh) process that runs
    module_utils/dl_host_state.py (sent on stdin) with the host's Python, through C(sudo -n) when I(become); all
    hosts at once, up to I(forks). The result of each host is what M(dl_host_state) returns without I(probes):
    the record of its last complete run and the state of everything that record lists.
  - The ssh command is built from the host's variables and the ssh connection plugin's settings (C(ansible_host),
    C(ansible_port), C(ansible_user), the private key, C(ssh_args), C(ssh_common_args), C(ssh_extra_args),
    host key checking, C(ansible_ssh_executable)), with C(BatchMode=yes) and no connection sharing.
  - A host it does not read is returned in C(left) with the reason, for the caller to read through
    M(dl_host_state): a connection other than ssh, a login or sudo password, another become method, no Python
    known (neither C(ansible_python_interpreter) nor cached facts), or any failure of ssh, sudo or the reader.
    It never concludes that a host is unreachable.
  - Read-only; also in check mode. Never C(changed).
  - The action plugin does the work; this file carries the documentation and the accepted arguments.
options:
  hosts:
    description: The inventory names of the hosts to read.
    type: list
    elements: str
    required: true
  stamp:
    description: The record of the last complete run on each host (M(dl_host_state)'s I(stamp)).
    type: path
    required: true
extends_documentation_fragment: [dl_fanout]
author:
  - dlcluster
"""

EXAMPLES = r"""
- name: Read every host's record at once, then the ones it could not read through the module
  dl_fleet_state:
    hosts: "{{ ansible_play_hosts }}"
    stamp: /var/lib/dlcluster/converged.json
  run_once: true
  register: __converged_fleet
"""

RETURN = r"""
states:
  description: Per host read, M(dl_host_state)'s result (C(stamp), C(probes), C(state), C(now)).
  returned: always
  type: dict
left:
  description: Per host not read, why (one short sentence); read these through M(dl_host_state).
  returned: always
  type: dict
"""
