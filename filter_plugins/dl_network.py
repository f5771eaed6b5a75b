"""Network filters of dlcluster: CIDR lists and the firewall's peer sets.

Pure functions, unit-tested in tests/unit/test_dl_network.py.
"""

from __future__ import annotations

import ipaddress

from ansible.errors import AnsibleFilterError

def dl_networks(value, variable="networks") -> dict:
    """Split a list of addresses/CIDRs into {'ipv4': [...], 'ipv6': [...]}, normalised.

    Raises an error naming `variable` for anything that is not an address or a CIDR.
    """
    if value in (None, ""):
        value = []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise AnsibleFilterError(f"{variable} must be a list of CIDRs such as ['10.0.0.0/8'], got {value!r}")
    result = {"ipv4": [], "ipv6": []}
    for item in value:
        try:
            network = ipaddress.ip_network(str(item).strip(), strict=False)
        except ValueError as err:
            raise AnsibleFilterError(f"{variable}: {item!r} is not an address or CIDR ({err})") from err
        key = "ipv4" if network.version == 4 else "ipv6"
        if str(network) not in result[key]:
            result[key].append(str(network))
    return result


def dl_address_in_networks(address, networks) -> bool:
    """Whether `address` lies in one of `networks` (a list of CIDRs)."""
    try:
        ip = ipaddress.ip_address(str(address).strip())
    except ValueError as err:
        raise AnsibleFilterError(f"dl_address_in_networks: {address!r} is not an IP address") from err
    split = dl_networks(networks, "dl_address_in_networks networks")
    return any(ip in ipaddress.ip_network(net) for net in split["ipv4"] + split["ipv6"])


def dl_firewall_peers(members) -> dict:
    """Addresses of cluster members as {'ipv4': [...], 'ipv6': [...]}, sorted, without blanks.

    `members` is the output of dl_cluster_hosts: [{name, address}].
    """
    if not isinstance(members, list):
        raise AnsibleFilterError(f"dl_firewall_peers: members must be a list, got {type(members).__name__}")
    result = {"ipv4": [], "ipv6": []}
    for member in members:
        if not member.get("address"):
            raise AnsibleFilterError(f"dl_firewall_peers: no address is known for host {member.get('name')}; "
                                     "set dl_address or ansible_host to an IP, or gather its facts (no --limit)")
        try:
            ip = ipaddress.ip_address(member["address"])
        except ValueError as err:
            raise AnsibleFilterError(f"dl_firewall_peers: host {member.get('name')} has address "
                                     f"{member['address']!r}, not an IP address; set dl_address") from err
        key = "ipv4" if ip.version == 4 else "ipv6"
        if str(ip) not in result[key]:
            result[key].append(str(ip))
    for key in result:
        result[key].sort(key=ipaddress.ip_address)
    return result


class FilterModule:
    """dlcluster network filters."""

    def filters(self):
        return {
            "dl_networks": dl_networks,
            "dl_address_in_networks": dl_address_in_networks,
            "dl_firewall_peers": dl_firewall_peers,
        }
