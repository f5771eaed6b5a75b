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

import base64
import binascii
import io
import os
import pwd
import subprocess
import tarfile

from ansible.module_utils.basic import AnsibleModule


def checked_members(archive: tarfile.TarFile, root: str) -> list[tarfile.TarInfo]:
    """The members, when every one is a directory or a regular file at root or below it; else ValueError."""
    members = archive.getmembers()
    for member in members:
        parts = member.name.split("/")
        if member.name.startswith("/") or ".." in parts:
            raise ValueError(f"member {member.name!r} is absolute or climbs out with '..'")
        if member.name != root and not member.name.startswith(root + "/") and not root.startswith(member.name + "/"):
            raise ValueError(f"member {member.name!r} is not below {root}")
        if not (member.isdir() or member.isfile()):
            raise ValueError(f"member {member.name!r} is neither a directory nor a regular file")
    return members


def unpack(data: bytes, dest: str, path: str, replace: bool, owner: str | None) -> None:
    """rm -rf path (replace) and tar -x into dest, as `owner` when given and this module runs as root (the files
    are then the owner's, and no link the owner made in dest can send a write outside what the owner may write)."""
    identity = {}
    if owner and os.geteuid() == 0:
        account = pwd.getpwnam(owner)
        identity = {"user": account.pw_uid, "group": account.pw_gid,
                    "extra_groups": os.getgrouplist(owner, account.pw_gid)}
    script = ('set -e; if [ "$3" = true ]; then rm -rf -- "$1"; fi; '
              'tar --extract --gzip --file=- --no-same-owner --directory="$2"')
    subprocess.run(["sh", "-c", script, "dl_job_files", path, dest, "true" if replace else "false"], input=data,
                   check=True, capture_output=True, **identity)


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
    dest, root, owner = module.params["dest"], module.params["root"].strip("/"), module.params["owner"]
    path = os.path.join(dest, root)
    if not root or ".." in root.split("/"):
        module.fail_json(msg=f"dl_job_files: root {root!r} must be a relative directory without '..'")
    if not os.path.isdir(dest):
        module.fail_json(msg=f"dl_job_files: {dest} is not a directory on this host; create it (the job user's "
                             "home) first")
    if owner:
        try:
            pwd.getpwnam(owner)
        except KeyError:
            module.fail_json(msg=f"dl_job_files: owner {owner} is not a user of this host")
    try:
        data = base64.b64decode(module.params["archive"], validate=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = checked_members(archive, root)
    except (binascii.Error, tarfile.TarError, OSError, EOFError) as err:
        module.fail_json(msg=f"dl_job_files: the archive is not a base64 gzipped tar: {err}")
    except ValueError as err:
        module.fail_json(msg=f"dl_job_files: refused the archive, nothing written: {err}")
    files = sum(1 for member in members if member.isfile())
    if module.check_mode:
        module.exit_json(changed=True, path=path, files=files)
    try:
        unpack(data, dest, path, module.params["replace"], owner)
    except subprocess.CalledProcessError as err:
        module.fail_json(msg=f"dl_job_files: unpacking in {dest} as {owner or 'this user'} failed: "
                             f"{err.stderr.decode(errors='replace').strip()}")
    module.exit_json(changed=True, path=path, files=files)


if __name__ == "__main__":
    main()
