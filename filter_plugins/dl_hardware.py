"""Hardware filters of dlcluster: edition, CPU variant, thread settings, Docker's daemon.json.

Pure functions over the `dl_hardware` fact (library/dl_hardware_facts.py),
unit-tested in tests/unit/test_dl_hardware.py.
"""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts import EDITIONS


# The seed's table (入门版镜像与 CPU 微架构适配表), extended with AVX-512 and AMX:
# (variant, flags the variant needs, generations, oneDNN-optimised builds)
CPU_VARIANTS = (
    ("amx", ("amx_tile", "amx_bf16", "avx512f"), "Sapphire Rapids and later", True),
    ("avx512", ("avx512f", "avx512bw", "avx512vl"), "Skylake-SP, Cascade Lake, Ice Lake, Zen 4", True),
    ("avx2", ("avx2", "fma"), "Haswell, Broadwell, Skylake, Zen", True),
    ("avx", ("avx",), "Sandy Bridge, Ivy Bridge", False),
    ("baseline", ("sse4_2",), "Westmere", False),
)


def dl_edition(hardware, forced="auto", host="this host") -> str:
    """The edition of a host: the forced one when given, else nvidia > rocm > cpu by detected GPUs.

    Forcing an accelerator edition on a host without that accelerator fails with a message.
    """
    if not isinstance(hardware, dict) or "gpus" not in hardware:
        raise AnsibleFilterError("dl_edition: expects the dl_hardware fact (run dl_hardware_facts first)")
    nvidia, amd = int(hardware.get("nvidia_gpus", 0)), int(hardware.get("amd_gpus", 0))
    forced = forced or "auto"
    if forced == "auto":
        return "nvidia" if nvidia else "rocm" if amd else "cpu"
    if forced not in EDITIONS:
        raise AnsibleFilterError(f"dl_edition: {host}: dl_edition is {forced!r}; use auto, "
                                 f"{', '.join(EDITIONS)}")
    if forced == "nvidia" and not nvidia:
        raise AnsibleFilterError(f"dl_edition: {host}: dl_edition is nvidia but the host has no NVIDIA "
                                 "device (PCI vendor 0x10de); set dl_edition to auto or cpu for it")
    if forced == "rocm" and not amd:
        raise AnsibleFilterError(f"dl_edition: {host}: dl_edition is rocm but the host has no AMD GPU "
                                 "(PCI vendor 0x1002); set dl_edition to auto or cpu for it")
    return forced


def dl_cpu_variant(flags) -> dict:
    """The CPU-optimised variant for a set of /proc/cpuinfo flags.

    Returns {'variant', 'generations', 'onednn', 'isa', 'bf16'}; a CPU without
    SSE4.2 (older than Westmere) is 'generic'. ``bf16`` says the CPU computes in
    bfloat16 natively (AVX512_BF16 or AMX-BF16): mixed precision on the CPU only
    pays off there (the benchmark's bf16 configuration).
    """
    if isinstance(flags, str):
        flags = flags.split()
    if not isinstance(flags, (list, tuple, set)):
        raise AnsibleFilterError(f"dl_cpu_variant: flags must be a list, got {type(flags).__name__}")
    present = set(flags)
    bf16 = bool({"avx512_bf16", "amx_bf16"} & present)
    for variant, needed, generations, onednn in CPU_VARIANTS:
        if set(needed) <= present:
            isa = [name for name, wanted, _, _ in reversed(CPU_VARIANTS) if set(wanted) <= present]
            return {"variant": variant, "generations": generations, "onednn": onednn, "isa": isa, "bf16": bf16}
    return {"variant": "generic", "generations": "older than Westmere", "onednn": False, "isa": [], "bf16": bf16}


def dl_thread_env(physical_cores, inter_op=2) -> dict:
    """Thread settings from the seed's benchmark notes: intra-op = physical cores, inter-op = 2."""
    try:
        cores = int(physical_cores)
        inter = int(inter_op)
    except (TypeError, ValueError) as err:
        raise AnsibleFilterError(f"dl_thread_env: core counts must be integers ({err})") from err
    if cores < 1 or inter < 1:
        raise AnsibleFilterError(f"dl_thread_env: need at least one core and one inter-op thread, "
                                 f"got {physical_cores}/{inter_op}")
    return {
        "OMP_NUM_THREADS": str(cores),
        "MKL_NUM_THREADS": str(cores),
        "TF_NUM_INTRAOP_THREADS": str(cores),
        "TF_NUM_INTEROP_THREADS": str(inter),
        "DL_INTRA_OP_THREADS": str(cores),
        "DL_INTER_OP_THREADS": str(inter),
        "KMP_AFFINITY": "granularity=fine,compact,1,0",
        "KMP_BLOCKTIME": "1",
        "ONEDNN_DEFAULT_FPMATH_MODE": "ANY",
    }


def _plain(value):
    """A plain copy of a value's dicts and lists. Not copy.deepcopy: Ansible hands filters lazy containers, and
    deep-copying one copies the templar and every variable it can reach (seconds per task on a small lab)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _merge(into: dict, part: dict, owners: dict, owner: str, path: str) -> None:
    for key, value in part.items():
        where = f"{path}.{key}" if path else key
        if key not in into:
            into[key] = _plain(value)
            owners[where] = owner
            continue
        if isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value, owners, owner, where)
            continue
        if into[key] != value:
            first = owners.get(where) or next(
                (o for p, o in owners.items() if where.startswith(p + ".")), "another role")
            raise AnsibleFilterError(
                f"dl_docker_daemon_json: {owner} sets daemon.json key {where!r} to {json.dumps(value)} "
                f"but {first} set it to {json.dumps(into[key])}; change one of them")


def dl_docker_daemon_json(parts) -> dict:
    """Merge daemon.json contributions {role: options} in name order; a key two roles set differently is an error."""
    if not isinstance(parts, dict):
        raise AnsibleFilterError(f"dl_docker_daemon_json: parts must be a mapping of role to options, "
                                 f"got {type(parts).__name__}")
    merged: dict = {}
    owners: dict = {}
    for owner in sorted(parts):
        if not isinstance(parts[owner], dict):
            raise AnsibleFilterError(f"dl_docker_daemon_json: the options of {owner} must be a mapping")
        _merge(merged, parts[owner], owners, owner, "")
    return merged


class FilterModule:
    """dlcluster hardware filters."""

    def filters(self):
        return {
            "dl_edition": dl_edition,
            "dl_cpu_variant": dl_cpu_variant,
            "dl_thread_env": dl_thread_env,
            "dl_docker_daemon_json": dl_docker_daemon_json,
        }
