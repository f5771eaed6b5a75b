"""What dlcluster knows of a host, read from its hostvars: shared by the repository's filter plugins.

Controller-side code (plugin_utils): filter plugins import it as
``ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts``; ansible.cfg's collections_path
(``collections``) makes that importable, and the unit tests put ``collections/`` on sys.path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

# The software stacks a host can get (roles nvidia, rocm, cpu); dl_edition may also be "auto".
EDITIONS = ("nvidia", "rocm", "cpu")
# The GPU editions: the dl_hardware key counting their GPUs and the vendor's name.
GPU_VENDORS = {"nvidia": ("nvidia_gpus", "NVIDIA"), "rocm": ("amd_gpus", "AMD")}


def is_mapping(value) -> bool:
    return isinstance(value, dict) or hasattr(value, "keys")


def require_mapping(value, name, filter_name):
    """Fail a filter whose argument `name` is not a mapping (hostvars, a host's vars)."""
    if not is_mapping(value):
        raise AnsibleFilterError(f"{filter_name}: {name} must be a mapping, got {type(value).__name__}")


def as_int(value):
    """An int from an int or a string of digits (extra vars arrive as strings); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def is_ip(value) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def host_address(host_vars) -> str:
    """The address other cluster members use to reach a host.

    ``dl_address`` wins, then ``ansible_host`` when it is an IP address, then
    the default IPv4 address from gathered facts. Empty when none is known.
    """
    if host_vars.get("dl_address"):
        return str(host_vars["dl_address"])
    if is_ip(host_vars.get("ansible_host", "")):
        return str(host_vars["ansible_host"])
    facts_v4 = host_vars.get("ansible_default_ipv4") or {}
    return str(facts_v4.get("address", ""))


def fact(host_vars, name):
    """A gathered fact, from ansible_facts.<name> or the injected ansible_<name>."""
    facts = host_vars.get("ansible_facts") or {}
    if is_mapping(facts) and name in facts:
        return facts[name]
    return host_vars.get(f"ansible_{name}")


def local_hardware(host_vars) -> dict:
    """The local fact saved by roles/hardware_facts (/etc/ansible/facts.d/dlcluster_hardware.fact)."""
    local = fact(host_vars, "local") or {}
    saved = local.get("dlcluster_hardware") if is_mapping(local) else None
    return saved if is_mapping(saved) else {}


def _positive(value):
    number = as_int(value)
    return number if number is not None and number > 0 else None


def physical_cores(host_vars):
    """Physical cores: dl_hardware.cpu.physical_cores, the saved local fact, or Ansible's processor facts."""
    hardware = host_vars.get("dl_hardware") or {}
    if is_mapping(hardware) and is_mapping(hardware.get("cpu") or {}):
        cores = _positive((hardware.get("cpu") or {}).get("physical_cores"))
        if cores:
            return cores
    cores = _positive(local_hardware(host_vars).get("physical_cores"))
    if cores:
        return cores
    per_socket, sockets = _positive(fact(host_vars, "processor_cores")), _positive(fact(host_vars,
                                                                                          "processor_count"))
    return per_socket * sockets if per_socket and sockets else None


def host_edition(host_vars):
    """nvidia, rocm or cpu: dl_edition_effective, the saved local fact, or a forced dl_edition; else None."""
    for value in (host_vars.get("dl_edition_effective"), local_hardware(host_vars).get("edition"),
                  host_vars.get("dl_edition")):
        if value in EDITIONS:
            return value
    return None


def gpu_count(host_vars, edition):
    """GPUs of the host's edition: dl_hardware.nvidia_gpus / amd_gpus, else the saved local fact's list."""
    if edition == "cpu":
        return 0
    if edition not in GPU_VENDORS:
        return None
    hardware = host_vars.get("dl_hardware") or {}
    if is_mapping(hardware) and as_int(hardware.get(GPU_VENDORS[edition][0])) is not None:
        return as_int(hardware.get(GPU_VENDORS[edition][0]))
    saved = local_hardware(host_vars).get("gpus")
    return len(saved) if isinstance(saved, list) else None


def host_interfaces(host_vars) -> list[dict]:
    """The interface facts of a host (``ansible_<ifname>``) as a list, in ``ansible_interfaces`` order."""
    if not is_mapping(host_vars):
        raise AnsibleFilterError(f"dl_host_interfaces: host_vars must be a mapping, got {type(host_vars).__name__}")
    names = fact(host_vars, "interfaces") or []
    result = []
    for name in names:
        # Ansible names the fact after the device with '-' (and ':') turned into '_'.
        found = fact(host_vars, str(name).replace("-", "_").replace(":", "_"))
        if is_mapping(found):
            result.append(dict(found))
    return result


class Reported(Mapping):
    """A host's variables with what action_plugins/dl_job_hosts.py's read reported on top: the reported facts (as
    ansible_facts.<name> and ansible_<name>, over cached ones) and `extra` variables (e.g. the check's answer)."""

    def __init__(self, host_vars, facts, extra):
        self._vars, self._facts, self._extra = host_vars, dict(facts or {}), dict(extra or {})

    def __getitem__(self, key):
        if key in self._extra:
            return self._extra[key]
        if key == "ansible_facts":
            cached = self._vars.get("ansible_facts") if key in self._vars else None
            return {**(cached if is_mapping(cached) else {}), **self._facts}
        if key.startswith("ansible_") and key[len("ansible_"):] in self._facts:
            return self._facts[key[len("ansible_"):]]
        return self._vars[key]

    def __contains__(self, key):
        try:
            self[key]
        except KeyError:
            return False
        return True

    def __iter__(self):
        yield from dict.fromkeys([*self._extra, "ansible_facts", *(f"ansible_{name}" for name in self._facts),
                                  *self._vars])

    def __len__(self):
        return len(list(iter(self)))


class ReportedHostvars(Mapping):
    """hostvars, with each host of `reported` ({host: {facts, host_state}}, dl_job_hosts' read) seen through
    Reported (its check's answer as `state_var`)."""

    def __init__(self, hostvars, reported, state_var):
        self._hostvars, self._reported, self._state_var = hostvars, dict(reported), state_var

    def __getitem__(self, host):
        if host in self._reported:
            entry = self._reported[host] or {}
            host_vars = self._hostvars[host] if host in self._hostvars else {}
            extra = {self._state_var: entry["host_state"]} if "host_state" in entry else {}
            return Reported(host_vars, entry.get("facts"), extra)
        return self._hostvars[host]

    def __contains__(self, host):
        return host in self._reported or host in self._hostvars

    def __iter__(self):
        yield from dict.fromkeys([*self._reported, *self._hostvars])

    def __len__(self):
        return len(list(iter(self)))


def with_reported(hostvars, reported, state_var="__train_host_state"):
    """hostvars as the launcher's filters read them: as they are without `reported`, else ReportedHostvars."""
    if not reported:
        return hostvars
    if not is_mapping(reported):
        raise AnsibleFilterError(f"reported must be a mapping of host names (dl_job_hosts' read), got "
                                 f"{type(reported).__name__}")
    return ReportedHostvars(hostvars, reported, state_var)
