#!/usr/bin/python
"""Ansible module: accelerators and CPU of a host, read from sysfs and /proc."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_hardware_facts
short_description: Accelerators and CPU of a host, read from sysfs and /proc
description:
  - Reads PCI devices from C(/sys/bus/pci/devices) and keeps display, 3D and processing-accelerator
    devices of NVIDIA (0x10de) and AMD (0x1002); names them from C(/proc/driver/nvidia) or the PCI ID
    database where available.
  - Reads the CPU model, flags and physical core count from C(/proc/cpuinfo).
  - Changes nothing. Returns the fact C(dl_hardware).
options:
  root:
    description: Directory that stands for C(/); tests point it at fixture trees.
    type: path
    default: /
author: dlcluster
"""

EXAMPLES = r"""
- name: Read the accelerators and the CPU
  dl_hardware_facts:
"""

RETURN = r"""
ansible_facts:
  description: C(dl_hardware) with C(gpus), C(nvidia_gpus), C(amd_gpus) and C(cpu).
  returned: always
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule

VENDORS = {"0x10de": "nvidia", "0x1002": "amd"}
# PCI class codes (upper 16 bits of the class): VGA, 3D controller, display other, processing accelerator.
GPU_CLASSES = {"0x0300": "vga", "0x0302": "3d", "0x0380": "display", "0x1200": "accelerator"}
PCI_IDS_PATHS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def pci_names(root: str, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Device names for (vendor, device) pairs from the PCI ID database, where one is installed."""
    names: dict[tuple[str, str], str] = {}
    vendors = {vendor for vendor, _ in wanted}
    for rel in PCI_IDS_PATHS:
        text = _read(os.path.join(root, rel))
        if not text:
            continue
        vendor = None
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            if not line.startswith("\t"):
                vendor = "0x" + line[:4].lower()
                continue
            if vendor in vendors and not line.startswith("\t\t"):
                device = "0x" + line[1:5].lower()
                if (vendor, device) in wanted:
                    names[(vendor, device)] = line[5:].strip()
        break
    return names


def nvidia_models(root: str) -> dict[str, str]:
    """{pci slot: model} from the NVIDIA driver's /proc files (present once the driver is loaded)."""
    base = os.path.join(root, "proc/driver/nvidia/gpus")
    models = {}
    if os.path.isdir(base):
        for slot in sorted(os.listdir(base)):
            for line in _read(os.path.join(base, slot, "information")).splitlines():
                if line.startswith("Model:"):
                    models[slot.lower()] = line.split(":", 1)[1].strip()
    return models


def scan_gpus(root: str) -> list[dict]:
    base = os.path.join(root, "sys/bus/pci/devices")
    found = []
    if not os.path.isdir(base):
        return found
    for slot in sorted(os.listdir(base)):
        device_dir = os.path.join(base, slot)
        vendor_id = _read(os.path.join(device_dir, "vendor")).lower()
        pci_class = _read(os.path.join(device_dir, "class")).lower()[:6]
        if vendor_id not in VENDORS or pci_class not in GPU_CLASSES:
            continue
        found.append({
            "pci_slot": slot.lower(),
            "vendor": VENDORS[vendor_id],
            "vendor_id": vendor_id,
            "device_id": _read(os.path.join(device_dir, "device")).lower(),
            "class": GPU_CLASSES[pci_class],
            "driver": os.path.basename(os.path.realpath(os.path.join(device_dir, "driver")))
            if os.path.exists(os.path.join(device_dir, "driver")) else "",
        })
    names = pci_names(root, {(g["vendor_id"], g["device_id"]) for g in found})
    driver_models = nvidia_models(root)
    for gpu in found:
        gpu["model"] = (driver_models.get(gpu["pci_slot"])
                        or names.get((gpu["vendor_id"], gpu["device_id"]))
                        or f"{gpu['vendor']} device {gpu['device_id']}")
    return found


def scan_cpu(root: str) -> dict:
    processors: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in _read(os.path.join(root, "proc/cpuinfo")).splitlines() + [""]:
        if not line.strip():
            if current:
                processors.append(current)
            current = {}
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    if not processors:
        return {"model": "", "vendor": "", "flags": [], "logical_cpus": 0, "physical_cores": 0, "sockets": 0}
    first = processors[0]
    cores = {(p.get("physical id", "0"), p.get("core id", p.get("processor"))) for p in processors}
    sockets = {p.get("physical id", "0") for p in processors}
    return {
        "model": first.get("model name", ""),
        "vendor": first.get("vendor_id", ""),
        "family": first.get("cpu family", ""),
        "model_number": first.get("model", ""),
        "flags": sorted(set(first.get("flags", "").split())),
        "logical_cpus": len(processors),
        "physical_cores": len(cores),
        "sockets": len(sockets),
    }


def scan(root: str = "/") -> dict:
    gpus = scan_gpus(root)
    return {
        "gpus": gpus,
        "nvidia_gpus": sum(1 for g in gpus if g["vendor"] == "nvidia"),
        "amd_gpus": sum(1 for g in gpus if g["vendor"] == "amd"),
        "cpu": scan_cpu(root),
    }


def main():
    module = AnsibleModule(argument_spec={"root": {"type": "path", "default": "/"}}, supports_check_mode=True)
    module.exit_json(changed=False, ansible_facts={"dl_hardware": scan(module.params["root"])})


if __name__ == "__main__":
    main()
