#!/usr/bin/python
"""dl_job_files: unpack a job's files (the archive dl_job_bundle wrote) into a directory of the host, in one module
run: the archive travels in the module's arguments, so no file is copied first and no stat runs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_job_files
short_description: Unpack a job's archive, sent in the module's arguments, into a directory of the host
description:
  - Unpacks I(archive) (base64 of the gzipped tar C(dl_job_bundle) writes and returns as C(data)) into I(dest).
    Every member must lie below I(root) and be a directory or a regular file; anything else (a link, a device, an
    absolute name, C(..)) fails before anything is written.
  - With I(replace), the directory I(dest)/I(root) is removed first (a forced re-run of the job), so no file of an
    earlier run is left in it.
  - With I(owner), a module run as root removes and unpacks as that user (C(rm) and GNU C(tar) run with the
    user's uid and groups), so the files are the user's, and a link the user made cannot send a write anywhere the user
    may not write. This costs no C(become_user) connection of its own. Without I(owner), as the user the module
    runs as.
  - Always C(changed); in check mode nothing is written.
options:
  dest:
    description: Existing directory the archive is unpacked in (e.g. the job user's home).
    type: path
    required: true
  archive:
    description: The gzipped tar, base64-encoded.
    type: str
    required: true
  root:
    description: The directory inside the archive that holds every member (e.g. C(runs/<job id>)).
    type: str
    required: true
  replace:
    description: Remove I(dest)/I(root) before unpacking.
    type: bool
    default: false
  owner:
    description: User who removes and unpacks (and owns the files) when the module runs as root.
    type: str
author: dlcluster
"""

EXAMPLES = r"""
- name: Unpack the job's files in the job directory
  become: true
  dl_job_files:
    dest: /home/ubuntu
    owner: ubuntu
    root: runs/job1
    archive: "{{ bundle.data }}"
    replace: true
"""

RETURN = r"""
path:
  description: dest/root, the job's directory.
  returned: always
  type: str
files:
  description: Regular files unpacked.
  returned: always
  type: int
"""

import subprocess

from ansible.module_utils.basic import AnsibleModule
# Shared with action_plugins/dl_job_hosts.py, which unpacks on every host at once over plain ssh.
from ansible.module_utils.dl_job_host import check_archive, extract


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "archive": {"type": "str", "required": True},
            "root": {"type": "str", "required": True},
            "replace": {"type": "bool", "default": False},
            "owner": {"type": "str"},
        },
        supports_check_mode=True,
    )
    dest, owner = module.params["dest"], module.params["owner"]
    try:
        path, data, files = check_archive(dest, module.params["archive"], module.params["root"], owner)
    except ValueError as err:
        module.fail_json(msg=f"dl_job_files: {err}")
    if module.check_mode:
        module.exit_json(changed=True, path=path, files=files)
    try:
        extract(data, dest, path, module.params["replace"], owner)
    except subprocess.CalledProcessError as err:
        module.fail_json(msg=f"dl_job_files: unpacking in {dest} as {owner or 'this user'} failed: "
                             f"{err.stderr.decode(errors='replace').strip()}")
    module.exit_json(changed=True, path=path, files=files)


if __name__ == "__main__":
    main()
