#!/usr/bin/python
"""Ansible module documentation of dl_job_hosts; the work is done by action_plugins/dl_job_hosts.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_job_hosts
short_description: Run one step of a job (read, unpack, start, launch, stop) on many hosts at once, over plain ssh
description:
  - Runs once, on the controller. For each host of I(hosts) it starts one C(ssh) process that runs
    module_utils/dl_job_host.py (sent on stdin, with the step's arguments inside it) with the host's Python,
    through C(sudo -n) when I(become); all hosts at once, up to I(forks).
  - The ssh command is built as M(dl_fleet_state) builds it, from the host's variables and the ssh connection
    plugin's settings, with C(BatchMode=yes) and no connection sharing.
  - C(read) returns the host's saved local facts (C(/etc/ansible/facts.d)), its network facts (interfaces, each
    interface's addresses, C(default_ipv4)) in the shape of Ansible's facts, and C(host_state), whose
    C(stdout_lines) are C(systemctl is-active) of I(args.unit), then the kind and group of I(args.textfile_dir)
    when it exists (C(directory:<group>)).
  - C(unpack) unpacks I(archive) (M(dl_job_bundle)'s C(data)) in I(dest) as I(owner), below I(root), replacing
    I(dest)/I(root) when I(replace); M(dl_job_files)'s checks and refusals.
  - C(start) runs I(argv) (the plan's systemd-run command of the host); C(launch) is C(unpack), then C(start) when
    the unpacking succeeded (one ssh per host for both); C(stop) stops the systemd unit I(unit).
  - A host this does not reach (a connection other than ssh, a login or sudo password, another become method, no
    Python known) is in C(refused) with the reason, before anything runs; for the steps that change hosts it is
    also in C(failed_hosts). A host whose ssh, sudo or step failed is in C(failed_hosts) with the reason.
  - C(stop) of a unit systemd does not know succeeds (C(loaded) false).
  - The ssh command comes from the inventory and ansible.cfg, not from ansible-playbook's command line (C(-u),
    C(--private-key), C(--ssh-common-args)); C(become) true applies to every host, whatever its C(ansible_become). The task itself does not fail for either; the caller decides.
  - C(read) also runs in check mode; the other steps do not run in check mode (C(skipped_hosts)).
  - The action plugin does the work; this file carries the documentation and the accepted arguments.
options:
  hosts:
    description: The inventory names of the hosts.
    type: list
    elements: str
    required: true
  step:
    description: What to do on each host.
    type: str
    required: true
    choices: [read, unpack, start, launch, stop]
  args:
    description: The step's arguments, the same for every host (C(read) C(unit) and C(textfile_dir); C(unpack)
      C(dest), C(archive), C(root), C(replace), C(owner); C(start) C(argv); C(launch) both; C(stop) C(unit)).
    type: dict
    default: {}
  per_host:
    description: Per host name, arguments that differ from host to host (over I(args)).
    type: dict
    default: {}
extends_documentation_fragment: [dl_fanout]
author:
  - dlcluster
"""

EXAMPLES = r"""
- name: Start every host's ranks at once (the argv of each in the plan)
  dl_job_hosts:
    hosts: "{{ train_group_hosts }}"
    step: start
    per_host: "{{ train_plan | dl_job_step_args('start') }}"
    become: true
  run_once: true
  register: started
"""

RETURN = r"""
results:
  description: Per host that answered, the step's result (C(ok), C(msg), and for C(read) C(facts) and C(host_state)).
  returned: always
  type: dict
failed_hosts:
  description: Per host where ssh, sudo or the step failed, why (one short sentence).
  returned: always
  type: dict
refused:
  description: Per host not tried, why (one short sentence); run the job through Ansible's tasks for these.
  returned: always
  type: dict
"""
