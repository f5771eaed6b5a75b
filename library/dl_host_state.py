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

import glob
import grp
import hashlib
import json
import os
import pwd
import stat
import time

from ansible.module_utils.basic import AnsibleModule

PROBE_KINDS = ("files", "units", "users", "unix_groups", "sysctls", "mounts", "nft_tables")


def read_stamp(path):
    try:
        with open(path, encoding="utf-8") as handle:
            stamp = json.load(handle)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def normalise(probes):
    """Every probe kind as a sorted list of distinct names; unknown kinds are dropped."""
    probes = probes if isinstance(probes, dict) else {}
    result = {}
    for kind in PROBE_KINDS:
        names = probes.get(kind) or []
        result[kind] = sorted({str(name) for name in names if str(name)}) if isinstance(names, list) else []
    return result


def file_state(path):
    try:
        info = os.lstat(path)
    except OSError:
        return "absent"
    owner = f"{stat.S_IMODE(info.st_mode):04o}:{info.st_uid}:{info.st_gid}"
    if stat.S_ISLNK(info.st_mode):
        return f"link:{os.readlink(path)}"
    if stat.S_ISDIR(info.st_mode):
        return f"dir:{owner}"
    if not stat.S_ISREG(info.st_mode):
        return f"other:{owner}"
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        return f"unreadable:{error.errno}"
    return f"file:{digest.hexdigest()}:{owner}"


def run_text(module, argv):
    """stdout of argv, or None when the command is missing or fails."""
    if not module.get_bin_path(argv[0]):
        return None
    rc, out, _ = module.run_command(argv, environ_update={"LC_ALL": "C"})
    return out if rc == 0 else None


def unit_states(module, units):
    if not units:
        return {}
    out = run_text(module, ["systemctl", "show", "--property=Id,ActiveState,UnitFileState", "--", *units])
    if out is None:
        return {unit: "unknown" for unit in units}
    # One block per unit, in the order asked, separated by blank lines.
    blocks = [block for block in out.strip("\n").split("\n\n")]
    states = {}
    for unit, block in zip(units, blocks):
        fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        states[unit] = f"{fields.get('ActiveState', '')}/{fields.get('UnitFileState', '')}"
    for unit in units:
        states.setdefault(unit, "unknown")
    return states


def user_state(name):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return "absent"
    return f"{entry.pw_uid}:{entry.pw_gid}:{entry.pw_dir}:{entry.pw_shell}"


def group_state(name):
    try:
        entry = grp.getgrnam(name)
    except KeyError:
        return "absent"
    return f"{entry.gr_gid}:{','.join(sorted(entry.gr_mem))}"


def sysctl_state(key):
    path = os.path.join("/proc/sys", *str(key).split("."))
    try:
        with open(path, encoding="utf-8") as handle:
            return " ".join(handle.read().split())
    except OSError:
        return "absent"


def mount_states(paths):
    mounts = {}
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 3:
                    mounts[fields[1]] = f"{fields[0]}:{fields[2]}"
    except OSError:
        pass
    return {path: mounts.get(os.path.normpath(path), "absent") for path in paths}


def nft_states(module, tables):
    states = {}
    for table in tables:
        parts = table.split()
        out = run_text(module, ["nft", "-j", "-s", "list", "table", *parts]) if len(parts) == 2 else None
        states[table] = out if out is not None else "absent"
    return states


def packages_digest(module):
    out = run_text(module, ["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\\n"])
    lines = sorted((out or "").splitlines())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def pci_digest():
    devices = []
    for device in sorted(glob.glob("/sys/bus/pci/devices/*")):
        ids = []
        for name in ("vendor", "device"):
            try:
                with open(os.path.join(device, name), encoding="utf-8") as handle:
                    ids.append(handle.read().strip())
            except OSError:
                ids.append("?")
        devices.append(f"{os.path.basename(device)} {':'.join(ids)}")
    return hashlib.sha256("\n".join(devices).encode()).hexdigest()


def main():
    module = AnsibleModule(
        argument_spec={"stamp": {"type": "path", "required": True}, "probes": {"type": "dict"}},
        supports_check_mode=True,
    )
    stamp = read_stamp(module.params["stamp"])
    given = module.params["probes"]
    probes = normalise(given if given is not None else (stamp or {}).get("probes"))
    state = {
        "files": {path: file_state(path) for path in probes["files"]},
        "units": unit_states(module, probes["units"]),
        "users": {name: user_state(name) for name in probes["users"]},
        "unix_groups": {name: group_state(name) for name in probes["unix_groups"]},
        "sysctls": {key: sysctl_state(key) for key in probes["sysctls"]},
        "mounts": mount_states(probes["mounts"]),
        "nft_tables": nft_states(module, probes["nft_tables"]),
        "packages": packages_digest(module),
        "pci": pci_digest(),
    }
    module.exit_json(changed=False, stamp=stamp, probes=probes, state=state, now=int(time.time()))


if __name__ == "__main__":
    main()
