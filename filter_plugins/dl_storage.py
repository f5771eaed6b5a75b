"""Storage filters of dlcluster: what the data_disk role may do with a block device.

Pure functions over what the role reads on the host (`wipefs --no-act --json`, `blkid -p -o export`, `lsblk`),
unit-tested in tests/unit/test_dl_storage.py. The rule they enforce: never destroy data. A device that carries any
signature is never formatted; only one carrying our own label and filesystem type is mounted.
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError

FILESYSTEMS = ("ext4", "xfs")


def _blkid(text: str) -> dict:
    """`blkid -p -o export` output as a dict (empty when blkid found nothing)."""
    found = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found


def dl_data_disk_plan(probe: dict, settings: dict, host: str = "this host") -> dict:
    """What to do with the data disk: {"action": "mount" | "format" | "refuse", "reason": str, "uuid": str}.

    probe: {"device": the resolved path, "wipefs": `wipefs --no-act --json` output (text or parsed),
            "blkid": `blkid -p -o export` output, "root_disks": kernel names of the disks under `/`,
            "disk": kernel name of the device and "parents": the disks it sits on}.
    settings: {"fstype", "label", "format_empty", "variable"} (variable: the setting's name for messages).
    """
    if not isinstance(probe, dict) or not isinstance(settings, dict):
        raise AnsibleFilterError("dl_data_disk_plan: probe and settings must be mappings")
    device = probe.get("device", "?")
    variable = settings.get("variable", "data_disk_device")
    fstype = settings.get("fstype")
    label = settings.get("label")
    if fstype not in FILESYSTEMS:
        raise AnsibleFilterError(f"dl_data_disk_plan: fstype must be one of {', '.join(FILESYSTEMS)}, got {fstype!r}")
    under_root = {probe.get("disk")} | set(probe.get("parents") or [])
    if under_root & set(probe.get("root_disks") or []):
        return {"action": "refuse", "uuid": "",
                "reason": f"Host {host}: {variable} is {device}, which holds the root filesystem; give the data "
                          f"disk's own device. Nothing was changed."}
    wipefs = probe.get("wipefs") or {}
    if isinstance(wipefs, str):
        wipefs = json.loads(wipefs) if wipefs.strip() else {}
    signatures = wipefs.get("signatures") or []
    found = _blkid(probe.get("blkid", ""))
    if not signatures and not found:
        if settings.get("format_empty"):
            return {"action": "format", "uuid": "", "reason": f"{device} is empty: formatting it as {fstype} "
                                                               f"labelled {label} (data_disk_format_empty)"}
        return {"action": "refuse", "uuid": "",
                "reason": f"Host {host}: {variable} is {device}, which is empty; set data_disk_format_empty: true "
                          f"to format it as {fstype}. Nothing was changed."}
    kinds = sorted({s.get("type", "?") for s in signatures} | ({found["TYPE"]} if "TYPE" in found else set()))
    if (found.get("TYPE") == fstype and found.get("LABEL") == label and found.get("UUID")
            and all(s.get("type") == fstype for s in signatures)):
        return {"action": "mount", "uuid": found["UUID"], "reason": f"{device} carries {fstype} labelled {label}"}
    what = ", ".join(kinds)
    labelled = f" labelled {found['LABEL']}" if found.get("LABEL") else ""
    return {"action": "refuse", "uuid": "",
            "reason": f"Host {host}: {variable} is {device}, which already holds {what}{labelled} (not {fstype} "
                      f"labelled {label}); it is never formatted. Give an empty device, or label the filesystem "
                      f"{label} if it is the data disk. Nothing was changed."}


def _kernel_name(device: str, device_links: dict) -> str:
    """The kernel name of /dev/<name> or of a /dev/disk/by-id name (from the ansible_device_links fact); "" unknown."""
    if device.startswith("/dev/disk/by-id/") or "/" not in device:
        wanted = device.rsplit("/", 1)[-1]
        for name, ids in ((device_links or {}).get("ids") or {}).items():
            if wanted in (ids or []):
                return name
        return ""
    if device.startswith("/dev/") and device.count("/") == 2:
        return device[len("/dev/"):]
    return ""


def dl_data_disk_root_problem(device: str, facts: dict, host: str = "this host") -> str:
    """One sentence when data_disk_device names the disk (or partition) of the root filesystem, from the host's
    facts (ansible_mounts, ansible_devices, ansible_device_links); "" otherwise. Used by the pre-flight play, before
    any host changes; the role checks again on the host (module dl_block_probe, with lsblk)."""
    if not device:
        return ""
    facts = facts or {}
    name = _kernel_name(device, facts.get("ansible_device_links") or {})
    root = next((m.get("device", "") for m in facts.get("ansible_mounts") or [] if m.get("mount") == "/"), "")
    if not name or not root.startswith("/dev/"):
        return ""
    root_name = root[len("/dev/"):]
    under_root = {root_name} | {disk for disk, info in (facts.get("ansible_devices") or {}).items()
                                if root_name in ((info or {}).get("partitions") or {})}
    if name not in under_root:
        return ""
    return (f"Host {host}: data_disk_device is {device}, which is {name}, the disk of the root filesystem ({root}); "
            f"give the data disk's own device. Nothing was changed.")


class FilterModule:
    """dlcluster storage filters."""

    def filters(self):
        return {"dl_data_disk_plan": dl_data_disk_plan, "dl_data_disk_root_problem": dl_data_disk_root_problem}
