"""Read what a run left on a host (the converged role's drift probes), standard library only.

Shared by library/dl_host_state.py (one host, through Ansible's module path) and action_plugins/dl_fleet_state.py,
which sends this file to many hosts at once over plain ssh and runs ``read_host_state`` there (``python3 -``).
So it must stay one self-contained file: no imports beyond the standard library, nothing that needs Ansible.
"""

from __future__ import annotations

import glob
import grp
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import time

# sudo's secure_path usually has them; a plain PATH may not.
SBIN = "/usr/local/sbin:/usr/sbin:/sbin"

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


def run_text(argv):
    """stdout of argv (LC_ALL=C), or None when the command is missing or fails."""
    path = shutil.which(argv[0], path=os.environ.get("PATH", "") + ":" + SBIN)
    if not path:
        return None
    try:
        done = subprocess.run([path, *argv[1:]], capture_output=True, text=True, check=False,
                              env=dict(os.environ, LC_ALL="C"))
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def unit_states(units):
    if not units:
        return {}
    out = run_text(["systemctl", "show", "--property=Id,ActiveState,UnitFileState", "--", *units])
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


def nft_states(tables):
    states = {}
    for table in tables:
        parts = table.split()
        out = run_text(["nft", "-j", "-s", "list", "table", *parts]) if len(parts) == 2 else None
        states[table] = out if out is not None else "absent"
    return states


def packages_digest():
    out = run_text(["dpkg-query", "-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\\n"])
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


def read_host_state(stamp_path, probes=None):
    """The record at ``stamp_path`` (None when missing or unreadable) and the state of what ``probes`` lists (the
    record's own probes when None): the module's and the fleet reader's result."""
    stamp = read_stamp(stamp_path)
    probes = normalise(probes if probes is not None else (stamp or {}).get("probes"))
    state = {
        "files": {path: file_state(path) for path in probes["files"]},
        "units": unit_states(probes["units"]),
        "users": {name: user_state(name) for name in probes["users"]},
        "unix_groups": {name: group_state(name) for name in probes["unix_groups"]},
        "sysctls": {key: sysctl_state(key) for key in probes["sysctls"]},
        "mounts": mount_states(probes["mounts"]),
        "nft_tables": nft_states(probes["nft_tables"]),
        "packages": packages_digest(),
        "pci": pci_digest(),
    }
    return {"stamp": stamp, "probes": probes, "state": state, "now": int(time.time())}


def main(argv):
    """``python3 - <json>``: print read_host_state's result for {"stamp": path, "probes": ...} as one JSON line."""
    args = json.loads(argv[1])
    print(json.dumps(read_host_state(args["stamp"], args.get("probes"))))
