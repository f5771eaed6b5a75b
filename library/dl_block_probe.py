#!/usr/bin/python
"""Ansible module: what a block device carries and where it sits, read without changing anything."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_block_probe
short_description: What a block device carries and whether it holds the root filesystem
description:
  - Resolves the device (a path, or a name under C(/dev/disk/by-id)) to its kernel path.
  - Reads its signatures with C(wipefs --no-act --json) (filesystems, partition tables, RAID members) and its
    filesystem with C(blkid -p -o export) (low-level probing, not blkid's cache).
  - Names the disks under C(/) (C(findmnt) and C(lsblk --inverse)), so that the root disk can be refused.
  - Changes nothing; runs in check mode too. The filter C(dl_data_disk_plan) decides what may be done.
options:
  device:
    description: A device path (C(/dev/vdb)) or a name under C(/dev/disk/by-id).
    type: str
    required: true
author: dlcluster
"""

EXAMPLES = r"""
- name: Read what the data disk carries
  dl_block_probe:
    device: /dev/disk/by-id/nvme-Samsung_SSD_980_1TB_S64ANS0T123456
  register: probe
"""

RETURN = r"""
device:
  description: The resolved device path.
  returned: success
  type: str
disk:
  description: The device's kernel name (vdb, nvme1n1, loop0).
  returned: success
  type: str
parents:
  description: Kernel names of the devices it sits on (a partition's disk).
  returned: success
  type: list
root_disks:
  description: Kernel names of the devices under C(/) (empty in a container, whose C(/) is an overlay).
  returned: success
  type: list
wipefs:
  description: C(wipefs --no-act --json) of the device, parsed.
  returned: success
  type: dict
blkid:
  description: C(blkid -p -o export) of the device (empty when it finds nothing).
  returned: success
  type: str
"""

import json
import os
import stat

from ansible.module_utils.basic import AnsibleModule


def _chain(module: AnsibleModule, device: str) -> list[str]:
    """Kernel names of a device and of every device it sits on (lsblk --inverse)."""
    rc, out, _err = module.run_command(["lsblk", "--inverse", "--noheadings", "--list", "--output", "KNAME", device])
    return [line.strip() for line in out.splitlines() if line.strip()] if rc == 0 else []


def main() -> None:
    module = AnsibleModule(argument_spec={"device": {"type": "str", "required": True}}, supports_check_mode=True)
    given = module.params["device"]
    path = given if given.startswith("/") else os.path.join("/dev/disk/by-id", given)
    device = os.path.realpath(path)
    try:
        mode = os.stat(device)
    except OSError:
        module.fail_json(msg=f"no such device: {given} ({path})")
    if not stat.S_ISBLK(mode.st_mode):
        module.fail_json(msg=f"{given} ({device}) is not a block device")
    # The kernel's name from the device number: a node named otherwise (a container's --device, /dev/mapper) too.
    kernel = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(mode.st_rdev)}:{os.minor(mode.st_rdev)}"))
    chain = _chain(module, device) or [kernel]
    root = ""
    rc, out, _err = module.run_command(["findmnt", "--noheadings", "--output", "SOURCE", "--target", "/"])
    if rc == 0 and out.strip().startswith("/dev/"):
        root = out.strip()
    rc, wipefs_out, err = module.run_command(["wipefs", "--no-act", "--json", device])
    if rc != 0:
        module.fail_json(msg=f"wipefs could not read {device}: {err.strip()}")
    # blkid exits 2 when the device carries nothing it knows.
    rc, blkid_out, err = module.run_command(["blkid", "-p", "-o", "export", device])
    if rc not in (0, 2):
        module.fail_json(msg=f"blkid could not read {device}: {err.strip()}")
    module.exit_json(changed=False, device=device, disk=chain[0],
                     parents=chain[1:], root_disks=_chain(module, root) if root else [],
                     wipefs=json.loads(wipefs_out) if wipefs_out.strip() else {"signatures": []},
                     blkid=blkid_out if rc == 0 else "")


if __name__ == "__main__":
    main()
