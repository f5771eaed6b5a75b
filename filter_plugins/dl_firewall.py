"""Firewall filters of dlcluster: the list of services a host opens, checked and resolved.

A service is ``{name, port, protocol, sources}``: ``port`` is a number or a
range ``"N-M"``, ``protocol`` is tcp or udp, and ``sources`` lists who may
connect: ``any``, one of the named address sets (``cluster``, ``admin``,
``vpn``, ``monitoring``), an inventory group, or a CIDR. Services come in
as ``{variable name: list}`` so that every message names the variable to fix.

dl_firewall_fingerprint reduces a listing of the live table to what only an
edit changes, so that a run can tell a table edited by hand from the one it
loaded.

Pure functions, unit-tested in tests/unit/test_dl_firewall.py.
"""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_nft import dl_firewall_fingerprint

PROTOCOLS = ("tcp", "udp")
# Sources the ruleset holds as named nftables sets (<name>_v4, <name>_v6).
NAMED_SETS = ("cluster", "admin", "vpn", "monitoring")
ANY = "any"
SERVICE_KEYS = ("name", "port", "protocol", "sources")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_RANGE_RE = re.compile(r"(\d{1,5})(?:-(\d{1,5}))?")
_EXAMPLE = "{name: node-exporter, port: 9100, protocol: tcp, sources: [monitoring]}"


def _port(value) -> str:
    """The port as nft writes it ("N" or "N-M"), or '' when it is not a valid port or range."""
    if isinstance(value, bool):
        return ""
    match = _RANGE_RE.fullmatch(str(value).strip())
    if not match:
        return ""
    low = int(match.group(1))
    high = int(match.group(2)) if match.group(2) else low
    if not 1 <= low <= high <= 65535:
        return ""
    return str(low) if low == high else f"{low}-{high}"


def _cidr(value):
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        return None


def _address(host_vars) -> str:
    """Same choice as dl_host_address (dl_inventory.py): dl_address, an IP ansible_host, then facts."""
    if host_vars.get("dl_address"):
        return str(host_vars["dl_address"])
    host = str(host_vars.get("ansible_host", ""))
    if _cidr(host) is not None and "/" not in host:
        return host
    return str((host_vars.get("ansible_default_ipv4") or {}).get("address", ""))


def _entries(lists):
    """(variable, index, entry) of every service, variables in the order given."""
    if not hasattr(lists, "items"):
        raise AnsibleFilterError(f"dl_firewall: the service lists must be a mapping of variable to list, "
                                 f"got {type(lists).__name__}")
    for variable, value in lists.items():
        if value in (None, ""):
            continue
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            yield variable, None, value
            continue
        for index, entry in enumerate(value):
            yield variable, index, entry


def dl_firewall_ports_as_services(ports, name, sources=(ANY,)) -> list[dict]:
    """Turn ``[{proto, port}]`` (dl_vpn_listen_ports' shape) into services named ``<name>-<proto>-<port>``."""
    if ports in (None, ""):
        return []
    if isinstance(ports, (str, dict)) or not hasattr(ports, "__iter__"):
        raise AnsibleFilterError(f"dl_firewall_ports_as_services: {name} ports must be a list such as "
                                 f"[{{proto: udp, port: 51820}}], got {ports!r}")
    services = []
    for item in ports:
        if not isinstance(item, dict):
            raise AnsibleFilterError(f"dl_firewall_ports_as_services: {name} port {item!r} must be a mapping "
                                     "{proto: tcp|udp, port: N}")
        services.append({"name": f"{name}-{item.get('proto')}-{item.get('port')}".replace(" ", ""),
                         "port": item.get("port"), "protocol": item.get("proto"), "sources": list(sources)})
    return services


def dl_firewall_service_problems(lists, hostvars, groups, host="") -> list[str]:
    """Everything wrong with the services, one sentence each naming the host, the variable and the fix."""
    prefix = f"host {host}: " if host else ""
    problems, seen = [], {}
    for variable, index, entry in _entries(lists):
        if index is None:
            problems.append(f"{prefix}{variable} must be a list of services such as [{_EXAMPLE}]; "
                            "turn it into a list")
            continue
        where = f"{variable}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{prefix}{where} is {entry!r}; write it as a mapping such as {_EXAMPLE}")
            continue
        name = entry.get("name")
        label = f"{where} ({name})" if name else where
        unknown = sorted(str(k) for k in set(entry) - set(SERVICE_KEYS))
        if unknown:
            problems.append(f"{prefix}{label} has unknown keys {unknown}; use only {', '.join(SERVICE_KEYS)}")
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            problems.append(f"{prefix}{where} has name {name!r}; give it a name of letters, digits, "
                            "'.', '-' and '_' such as node-exporter")
        elif name in seen:
            problems.append(f"{prefix}{where} uses the name {name!r} of {seen[name]} too; "
                            "give each service its own name or drop one of them")
        else:
            seen[name] = where
        protocol = entry.get("protocol")
        if protocol not in PROTOCOLS:
            problems.append(f"{prefix}{label} has protocol {protocol!r}; set protocol to tcp or udp")
        if not _port(entry.get("port")):
            problems.append(f"{prefix}{label} has port {entry.get('port')!r}; give a port from 1 to 65535 "
                            "or a range such as '6817-6819'")
        problems += [f"{prefix}{label} {p}" for p in _source_problems(entry.get("sources"), hostvars, groups)]
    return problems


def _source_problems(sources, hostvars, groups) -> list[str]:
    if isinstance(sources, str) or not isinstance(sources, list) or not sources:
        return [f"has sources {sources!r}; list who may connect, e.g. [admin, vpn], from: "
                f"{ANY}, {', '.join(NAMED_SETS)}, an inventory group or a CIDR"]
    problems = []
    for source in sources:
        source = str(source)
        if source == ANY or source in NAMED_SETS:
            continue
        if source in groups:
            for member in groups[source]:
                if not _cidr(_address(hostvars[member])):
                    problems.append(f"allows group {source}, but no IP address is known for its host {member}; "
                                    "set dl_address or ansible_host to an IP, or gather its facts (no --limit)")
            continue
        if _cidr(source) is None:
            problems.append(f"allows source {source!r}, which is no inventory group; add that group to the "
                            f"inventory or use {ANY}, {', '.join(NAMED_SETS)} or a CIDR")
    return problems


def dl_firewall_service_rules(lists, hostvars, groups) -> list[dict]:
    """The accept rules of the services, in the order given.

    Each rule is ``{name, variable, protocol, port, any, sets, ipv4, ipv6}``:
    ``any`` opens the port to everyone, ``sets`` are the named sets allowed,
    ``ipv4``/``ipv6`` the sorted addresses and CIDRs of the inventory groups
    and CIDRs among the sources. Raises the problems of
    dl_firewall_service_problems, if any.
    """
    problems = dl_firewall_service_problems(lists, hostvars, groups)
    if problems:
        raise AnsibleFilterError("dl_firewall_service_rules: " + " ".join(problems))
    rules = []
    for variable, index, entry in _entries(lists):
        sources = [str(s) for s in entry["sources"]]
        sets = [s for s in dict.fromkeys(sources) if s in NAMED_SETS]
        networks = []
        for source in sources:
            if source == ANY or source in NAMED_SETS:
                continue
            names = groups[source] if source in groups else None
            networks += ([_cidr(_address(hostvars[m])) for m in names] if names is not None else [_cidr(source)])
        rules.append({
            "name": entry["name"], "variable": f"{variable}[{index}]", "protocol": entry["protocol"],
            "port": _port(entry["port"]), "any": ANY in sources, "sets": sets,
            "ipv4": _sorted_unique(n for n in networks if n.version == 4),
            "ipv6": _sorted_unique(n for n in networks if n.version == 6),
        })
    return rules


def _sorted_unique(networks) -> list[str]:
    """Networks merged where they overlap (nft refuses overlapping interval elements), sorted."""
    merged = ipaddress.collapse_addresses(networks)
    return [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in merged]


def dl_firewall_set(items, variable="sources") -> dict:
    """Addresses and CIDRs as the elements of an nftables interval set: {'ipv4': [...], 'ipv6': [...]}.

    Overlaps are merged, single addresses written without a prefix length;
    anything that is not an address or CIDR is an error naming `variable`.
    """
    if items in (None, ""):
        items = []
    if isinstance(items, (str, dict)) or not hasattr(items, "__iter__"):
        raise AnsibleFilterError(f"dl_firewall_set: {variable} must be a list of addresses or CIDRs, got {items!r}")
    networks = []
    for item in items:
        network = _cidr(item)
        if network is None:
            raise AnsibleFilterError(f"dl_firewall_set: {variable}: {item!r} is not an address or CIDR; "
                                     "write it like 192.168.1.0/24")
        networks.append(network)
    return {"ipv4": _sorted_unique(n for n in networks if n.version == 4),
            "ipv6": _sorted_unique(n for n in networks if n.version == 6)}


class FilterModule:
    """dlcluster firewall filters."""

    def filters(self):
        return {
            "dl_firewall_fingerprint": dl_firewall_fingerprint,
            "dl_firewall_ports_as_services": dl_firewall_ports_as_services,
            "dl_firewall_set": dl_firewall_set,
            "dl_firewall_service_problems": dl_firewall_service_problems,
            "dl_firewall_service_rules": dl_firewall_service_rules,
        }
