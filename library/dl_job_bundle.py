#!/usr/bin/python
"""Ansible module documentation of dl_job_bundle; the work is done by action_plugins/dl_job_bundle.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_job_bundle
short_description: Write on the controller one gzipped tar of the files every host of a job receives
description:
  - Runs on the controller only (no host is contacted). Writes I(dest), a gzipped tar of I(members) under
    I(prefix), and returns it base64-encoded as C(data), which each host then unpacks with one M(dl_job_files)
    run instead of one copy task per file.
  - A I(src) directory is added with its whole tree and its modes, symlinks followed (as M(ansible.builtin.copy)
    does), without C(__pycache__) directories and compiled Python. A relative I(src) is looked up like copy's
    (the role's C(files/), then the playbook's).
  - Every member's parent directories are in the archive, so unpacking creates them. The archive's files belong to
    nobody in particular, so the user who unpacks them owns them.
  - Always C(changed); in check mode nothing is written (C(data) is returned all the same).
  - The action plugin does the work; this file carries the documentation and the accepted arguments.
options:
  dest:
    description: Path of the archive on the controller (its directory must exist). Replaced atomically.
    type: path
    required: true
  prefix:
    description: Directory inside the archive that holds every member, e.g. C(runs/<job id>).
    type: str
    default: ""
  members:
    description: What the archive holds, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Path of the member below I(prefix); relative, without C(..).
        type: str
        required: true
      src:
        description: A file or directory on the controller. Without I(src) and I(content) the member is an empty
          directory.
        type: str
      content:
        description: The member's text (a file).
        type: str
      mode:
        description: Octal mode of the member (default the source's mode, C(0644) for I(content), C(0755) for a
          directory).
        type: raw
author: dlcluster
"""

EXAMPLES = r"""
- name: Bundle the job's files once
  dl_job_bundle:
    dest: /srv/runs/job1/job-files.tar.gz
    prefix: runs/job1
    members:
      - {name: code, src: /srv/jobs/scripts}
      - {name: hparams.conf, content: "epochs=2\n"}
      - {name: job-agent, src: dlcluster-job-agent, mode: "0755"}
      - {name: logs}
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
members:
  description: The members' names, in the archive's order.
  returned: always
  type: list
  elements: str
size:
  description: Bytes of the archive.
  returned: always
  type: int
data:
  description: The archive, base64-encoded (what M(dl_job_files) unpacks on each host).
  returned: always
  type: str
"""

import json
import sys


def main():
    # No arguments are read here: the action plugin checks them (its ARGUMENT_SPEC, as documented above).
    print(json.dumps({"failed": True, "msg": "dl_job_bundle runs through its action plugin "
                      "(action_plugins/dl_job_bundle.py): put that directory in the action plugin path "
                      "(ansible.cfg's action_plugins)"}))
    sys.exit(1)


if __name__ == "__main__":
    main()
