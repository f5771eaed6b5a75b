"""GPU post-install check filters of dlcluster: what nvidia-smi / rocm-smi report against the PCI bus.

Pure functions over the output of the vendor tools and the `dl_hardware` fact
(library/dl_hardware_facts.py), used by roles/nvidia/tasks/check.yml and
roles/rocm/tasks/check.yml, unit-tested in tests/unit/test_dl_gpu.py.

    nvidia-smi --query-gpu=index,name,driver_version,memory.total,pci.bus_id --format=csv,noheader
    rocm-smi --showproductname --showbus --json
"""

from __future__ import annotations

import json
import re

from ansible.errors import AnsibleFilterError

# The query the nvidia check runs, in the order dl_nvidia_smi_gpus reads the columns.
NVIDIA_QUERY = ("index", "name", "driver_version", "memory.total", "pci.bus_id")
VENDORS = {"nvidia": ("nvidia_gpus", "NVIDIA"), "amd": ("amd_gpus", "AMD")}


def _pci_slot(bus_id: str) -> str:
    """A PCI address in sysfs form, lower case with a 4-digit domain: 00000000:17:00.0 → 0000:17:00.0."""
    match = re.fullmatch(r"(?:([0-9a-fA-F]+):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])", bus_id.strip())
    if not match:
        return ""
    domain = int(match.group(1) or "0", 16)
    return f"{domain:04x}:{match.group(2)}:{match.group(3)}.{match.group(4)}".lower()


def dl_nvidia_smi_gpus(stdout) -> list[dict]:
    """The GPUs of `nvidia-smi --query-gpu=index,name,driver_version,memory.total,pci.bus_id
    --format=csv,noheader`: [{'index', 'name', 'driver_version', 'memory_mib', 'pci_slot'}].

    A line that is not five comma-separated fields (nvidia-smi's own error text, a
    different query) is an error naming the line.
    """
    if not isinstance(stdout, str):
        raise AnsibleFilterError(f"dl_nvidia_smi_gpus: expects nvidia-smi's output as a string, "
                                 f"got {type(stdout).__name__}")
    gpus = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != len(NVIDIA_QUERY) or not fields[0].isdigit():
            raise AnsibleFilterError(f"dl_nvidia_smi_gpus: cannot read {line.strip()!r}: expected "
                                     f"{len(NVIDIA_QUERY)} fields ({', '.join(NVIDIA_QUERY)})")
        memory = re.fullmatch(r"(\d+)\s*MiB", fields[3])
        gpus.append({
            "index": int(fields[0]),
            "name": fields[1],
            "driver_version": fields[2],
            "memory_mib": int(memory.group(1)) if memory else None,
            "pci_slot": _pci_slot(fields[4]),
        })
    return gpus


def dl_rocm_smi_gpus(stdout) -> list[dict]:
    """The GPUs of `rocm-smi --showproductname --showbus --json`:
    [{'card', 'name', 'model', 'pci_slot'}], in card order.

    rocm-smi spells the keys "Card Series" (ROCm 6) or "Card series" (ROCm 5, Debian 12's
    package), so keys are matched without case. Entries that are not cards (the
    "system" block of --showdriverversion) are left out.
    """
    if isinstance(stdout, str):
        try:
            data = json.loads(stdout) if stdout.strip() else {}
        except json.JSONDecodeError as err:
            raise AnsibleFilterError(f"dl_rocm_smi_gpus: rocm-smi's output is not JSON ({err}): "
                                     f"{stdout.strip()[:200]!r}") from err
    else:
        data = stdout
    if not isinstance(data, dict):
        raise AnsibleFilterError(f"dl_rocm_smi_gpus: expects rocm-smi's JSON object, got {type(data).__name__}")
    gpus = []
    for card in sorted((k for k in data if re.fullmatch(r"card\d+", k)), key=lambda k: int(k[4:])):
        fields = {str(key).strip().lower(): str(value).strip() for key, value in (data[card] or {}).items()}
        gpus.append({
            "card": int(card[4:]),
            "name": fields.get("card series", ""),
            "model": fields.get("card model", ""),
            "pci_slot": _pci_slot(fields.get("pci bus", "")),
        })
    return gpus


def dl_gpu_check(result, hardware, vendor, host="this host", tool="", driver_branch="") -> dict:
    """The verdict of a post-install check: {'ok', 'gpus', 'summary'}.

    result:        the registered result of running the vendor tool (rc, stdout, stderr, msg).
    hardware:      the dl_hardware fact; the PCI bus is the truth the tool is compared with.
    vendor:        nvidia or amd.
    tool:          the command that ran (for the messages); nvidia-smi or rocm-smi by default.
    driver_branch: NVIDIA only: the branch nvidia_driver_branch pins (570); '' skips the comparison.

    Fails (ok false) when the tool is missing or fails, reports fewer GPUs than the PCI bus
    has, misses a PCI slot, or runs another driver branch. The summary is one sentence that
    names the host and the fix.
    """
    if vendor not in VENDORS:
        raise AnsibleFilterError(f"dl_gpu_check: vendor must be one of {', '.join(VENDORS)}, got {vendor!r}")
    if not isinstance(hardware, dict) or "gpus" not in hardware:
        raise AnsibleFilterError("dl_gpu_check: expects the dl_hardware fact (run dl_hardware_facts first)")
    if not isinstance(result, dict):
        raise AnsibleFilterError(f"dl_gpu_check: expects a registered command result, got {type(result).__name__}")
    count_key, label = VENDORS[vendor]
    tool = tool or ("nvidia-smi" if vendor == "nvidia" else "rocm-smi")
    packages = "nvidia_install_packages" if vendor == "nvidia" else "rocm_install_packages"
    pci = [g for g in hardware["gpus"] if g.get("vendor") == vendor]
    expected = int(hardware.get(count_key, len(pci)))

    def verdict(ok, gpus, summary):
        return {"ok": ok, "gpus": gpus, "summary": f"{host}: {summary}"}

    rc = result.get("rc")
    message = " ".join(str(result.get("msg", "")).split())
    # ansible.builtin.command could not start the program: "Error executing command." (ansible-core
    # 2.19, rc 2, nothing on stdout/stderr) or, before, "[Errno 2] No such file or directory".
    not_started = message.startswith("Error executing command") or "No such file or directory" in message
    if rc is None or (not_started and not result.get("stdout") and not result.get("stderr")):
        return verdict(False, [], f"{tool} is missing although {packages} is true and the PCI bus shows "
                                  f"{expected} {label} GPU(s); install the driver packages (re-run the role) "
                                  f"or set {packages}: false for this host")
    stdout = result.get("stdout") or ""
    stderr = (result.get("stderr") or "").strip()
    # rocm-smi exits 0 with an empty stdout when amdgpu is not loaded; the reason is on stderr.
    if rc != 0 or (not stdout.strip() and stderr):
        lines = (stderr or stdout or message).strip().splitlines()
        reason = lines[-1].strip() if lines else f"exit status {rc}"
        return verdict(False, [], f"{tool} fails ({reason}) although the PCI bus shows {expected} {label} "
                                  f"GPU(s); the driver is not loaded: reboot the host or rebuild the "
                                  f"kernel module, then re-run the check")
    gpus = dl_nvidia_smi_gpus(stdout) if vendor == "nvidia" else dl_rocm_smi_gpus(stdout)
    if len(gpus) < expected:
        seen = {g["pci_slot"] for g in gpus}
        missing = [g["pci_slot"] for g in pci if g.get("pci_slot") not in seen]
        where = f" (not seen: {', '.join(missing)})" if missing and all(seen) else ""
        return verdict(False, gpus, f"{tool} reports {len(gpus)} GPU(s) but the PCI bus shows {expected}"
                                    f"{where}; look for the missing GPU in the kernel log (dmesg), reseat "
                                    f"or replace it, or take it out of service")
    if driver_branch not in ("", None):
        other = sorted({g["driver_version"] for g in gpus
                        if g.get("driver_version", "").split(".")[0] != str(driver_branch)})
        if other:
            return verdict(False, gpus, f"{tool} reports driver {', '.join(other)}, not the pinned branch "
                                        f"{driver_branch}; set nvidia_driver_branch to the installed branch or "
                                        f"purge the other driver and re-run the role")
    return verdict(True, gpus, f"{len(gpus)} {label} GPU(s) answer {tool}, as many as the PCI bus shows")


class FilterModule:
    """dlcluster GPU check filters."""

    def filters(self):
        return {
            "dl_nvidia_smi_gpus": dl_nvidia_smi_gpus,
            "dl_rocm_smi_gpus": dl_rocm_smi_gpus,
            "dl_gpu_check": dl_gpu_check,
        }
