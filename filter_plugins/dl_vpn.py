"""VPN filters of dlcluster: the site model and the WireGuard peers, computed from the inventory.

Pure functions, unit-tested in tests/unit/test_dl_vpn.py. A host belongs to a site through ``dl_site`` (set in
the site group's group_vars, as in inventories/example), and the site declares its LAN(s) in
``dl_site_subnets``. Each host's *site address* is its own address inside those subnets (read from its facts);
the tunnel carries traffic between the site addresses of hosts in different sites, and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts import host_address, require_mapping

BACKENDS = ("wireguard", "ipsec")
TOPOLOGIES = ("mesh", "site-to-site")
# Bytes a WireGuard packet adds: outer IP header (20 for IPv4, 40 for IPv6) + UDP 8 + WireGuard 32.
WIREGUARD_OVERHEAD = {4: 60, 6: 80}


def _in_vpn(host) -> bool:
    """Whether a host's dl_vpn says it joins the VPN (false when unset or not a boolean)."""
    try:
        return boolean(host.get("dl_vpn", False), strict=True)
    except TypeError:
        return False


def vpn_hosts(hostvars, names) -> list:
    """The names of the hosts in names with dl_vpn true, in order."""
    return [str(n) for n in names or [] if _in_vpn(hostvars[n])]


def _host_addresses(host) -> list:
    """A host's IPv4 then IPv6 addresses from its facts (none when they were not gathered)."""
    return list(host.get("ansible_all_ipv4_addresses") or []) + list(host.get("ansible_all_ipv6_addresses") or [])


def _subnets(value) -> list:
    """``dl_site_subnets`` as networks; raises ValueError with the offending item."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{value!r} is not a non-empty list of CIDRs")
    return [ipaddress.ip_network(str(item), strict=False) for item in items]


def dl_wireguard_key_problem(key) -> str:
    """Why a WireGuard public key is unusable, or '' when it is fine (44 base64 characters, 32 bytes)."""
    if not isinstance(key, str) or len(key.strip()) != 44:
        return "is not 44 base64 characters (the output of `wg pubkey`)"
    try:
        raw = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "is not valid base64 (the output of `wg pubkey`)"
    return "" if len(raw) == 32 else "does not decode to 32 bytes (the output of `wg pubkey`)"


def dl_vpn_site_address(addresses, subnets) -> str:
    """The first of a host's IPv4/IPv6 addresses that lies inside one of its site's subnets, or ''."""
    try:
        networks = _subnets(subnets)
    except ValueError:
        return ""
    for address in addresses or []:
        try:
            ip = ipaddress.ip_address(str(address))
        except ValueError:
            continue
        if any(ip.version == net.version and ip in net for net in networks):
            return str(ip)
    return ""


def dl_vpn_sites(hostvars, names) -> dict:
    """``{site: {"subnets": [...], "hosts": [...]}}`` of the hosts in names that have dl_site, inventory order."""
    require_mapping(hostvars, "hostvars", "dl_vpn_sites")
    sites: dict = {}
    for name in names or []:
        host = hostvars[name]
        site = host.get("dl_site")
        if not site:
            continue
        entry = sites.setdefault(str(site), {"subnets": [], "hosts": []})
        entry["hosts"].append(str(name))
        for subnet in ([host.get("dl_site_subnets")] if isinstance(host.get("dl_site_subnets"), str)
                       else host.get("dl_site_subnets") or []):
            if str(subnet) not in entry["subnets"]:
                entry["subnets"].append(str(subnet))
    return sites


def dl_vpn_problems(hostvars, names, settings=None) -> list:
    """Every problem of the VPN settings of the hosts in names that have dl_vpn true, one sentence each naming host, variable and fix.

    settings: {"backend", "topology"} as the play resolves them (defaults: wireguard, mesh).
    Read from each host: dl_site, dl_site_subnets, dl_vpn_networks (VPN client networks), the address the
    controller reaches it at (ansible_host), and its facts' addresses (ansible_all_ipv4/ipv6_addresses).
    """
    require_mapping(hostvars, "hostvars", "dl_vpn_problems")
    settings = settings or {}
    problems = []
    backend, topology = settings.get("backend", "wireguard"), settings.get("topology", "mesh")
    if backend not in BACKENDS:
        problems.append(f"dl_vpn_backend is {backend!r}; use one of {', '.join(BACKENDS)} (ipsec is strongSwan "
                        f"IKEv2).")
    if topology not in TOPOLOGIES:
        problems.append(f"dl_vpn_topology is {topology!r}; use one of {', '.join(TOPOLOGIES)}.")
    names = vpn_hosts(hostvars, names)
    parsed: dict = {}
    for name in names:
        host = hostvars[name]
        site = host.get("dl_site")
        if not site:
            problems.append(f"Host {name} has no dl_site; put it in a site group whose group_vars set dl_site and "
                            f"dl_site_subnets, or set dl_vpn: false for it.")
            continue
        try:
            nets = _subnets(host.get("dl_site_subnets"))
        except ValueError as err:
            problems.append(f"Host {name}: dl_site_subnets of site {site} is wrong ({err}); give a list of CIDRs "
                            f"such as [192.168.1.0/24].")
            continue
        if str(site) in parsed and set(parsed[str(site)][1]) != set(nets):
            problems.append(f"Host {name}: dl_site_subnets of site {site} differ from those of host "
                            f"{parsed[str(site)][0]}; set them once, in the site group's group_vars.")
            continue
        parsed.setdefault(str(site), (name, nets))
        addresses = _host_addresses(host)
        if addresses and not dl_vpn_site_address(addresses, host.get("dl_site_subnets")):
            problems.append(f"Host {name} has no address inside dl_site_subnets of site {site} "
                            f"({', '.join(map(str, nets))}); fix dl_site_subnets or the host's site.")
    if names and len(parsed) < 2 and not problems:
        problems.append(f"dl_vpn is true but every VPN host is in site {next(iter(parsed), '?')}; a VPN needs two "
                        f"sites or more (give the other hosts their dl_site).")
    sites = sorted(parsed.items())
    for i, (site_a, (_, nets_a)) in enumerate(sites):
        for site_b, (_, nets_b) in sites[i + 1:]:
            for net_a in nets_a:
                for net_b in nets_b:
                    if net_a.version == net_b.version and net_a.overlaps(net_b):
                        problems.append(f"dl_site_subnets of sites {site_a} ({net_a}) and {site_b} ({net_b}) "
                                        f"overlap; give every site its own subnets.")
    if topology == "site-to-site":
        problems += _gateway_problems(hostvars, names)
    for name in names:
        host = hostvars[name]
        for item in host.get("dl_vpn_networks") or []:
            try:
                client_net = ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                continue  # the firewall's own pre-flight names a malformed dl_vpn_networks entry
            for site, (_, nets) in sites:
                if any(n.version == client_net.version and n.overlaps(client_net) for n in nets):
                    problems.append(f"Host {name}: dl_vpn_networks entry {client_net} overlaps the subnets of "
                                    f"site {site}; give VPN clients a network of their own.")
        own = str(host.get("dl_site") or "")
        reached_at = host.get("ansible_host")
        try:
            ip = ipaddress.ip_address(str(reached_at))
        except ValueError:
            continue
        for site, (_, nets) in sites:
            if site != own and any(ip.version == n.version and ip in n for n in nets):
                problems.append(f"Host {name} is reached at {ip} (ansible_host), inside site {site}'s subnets, "
                                f"which its tunnel carries; the controller's SSH path must not depend on the "
                                f"tunnel: reach it at an address outside other sites' subnets.")
    for member in dl_vpn_members(hostvars, names, {"key_fact": "__none__"}):
        if member["address"] and member["endpoint"] == member["address"]:
            problems.append(f"Host {member['name']}: its tunnel endpoint {member['endpoint']} is its own site "
                            f"address, which its peers route into the tunnel; set dl_vpn_endpoint to the address "
                            f"the other sites reach it at outside the tunnel.")
    return list(dict.fromkeys(problems))


def _gateway_problems(hostvars, names) -> list:
    """Site-to-site: every site needs dl_site_gateway naming one of its own VPN hosts."""
    problems, by_site = [], {}
    for name in names:
        if hostvars[name].get("dl_site"):
            by_site.setdefault(str(hostvars[name]["dl_site"]), []).append(name)
    for site, hosts in by_site.items():
        gateways = {str(hostvars[name].get("dl_site_gateway") or "") for name in hosts}
        if gateways == {""}:
            problems.append(f"Site {site} has no gateway: set dl_site_gateway in the site group's group_vars to "
                            f"one of its hosts ({', '.join(hosts)}), or use dl_vpn_topology mesh.")
        elif len(gateways) > 1:
            problems.append(f"The hosts of site {site} disagree on dl_site_gateway ({', '.join(sorted(gateways))});"
                            f" set it once, in the site group's group_vars.")
        elif next(iter(gateways)) not in hosts:
            problems.append(f"dl_site_gateway of site {site} is {next(iter(gateways))!r}, which is not one of its "
                            f"VPN hosts ({', '.join(hosts)}); name one of them.")
    return problems


def dl_vpn_members(hostvars, names, settings=None) -> list:
    """The hosts in names with dl_vpn true as ``[{name, site, address, endpoint, public_key, subnets, gateway}]``.

    In inventory order. address: the host's site address (dl_vpn_site_address of its facts); endpoint: dl_vpn_endpoint, else the
    address the cluster reaches it at (dl_address, ansible_host or its default IPv4 address); public_key: the
    fact the vpn role sets from the host's own key (``settings["key_fact"]``, default vpn_wireguard_public_key);
    subnets: its site's dl_site_subnets (normalised; [] when malformed, which the pre-flight refuses); gateway:
    whether it is its site's dl_site_gateway (what site-to-site uses).
    """
    require_mapping(hostvars, "hostvars", "dl_vpn_members")
    settings = settings or {}
    key_fact = settings.get("key_fact", "vpn_wireguard_public_key")
    members = []
    for name in vpn_hosts(hostvars, names):
        host = hostvars[name]
        if not host.get("dl_site"):
            continue
        # The address the cluster reaches the host at (dl_address, ansible_host, default IPv4), as elsewhere.
        endpoint = host.get("dl_vpn_endpoint") or host_address(host)
        try:
            subnets = [str(net) for net in _subnets(host.get("dl_site_subnets"))]
        except ValueError:
            subnets = []
        members.append({"name": str(name), "site": str(host["dl_site"]),
                        "address": dl_vpn_site_address(_host_addresses(host), host.get("dl_site_subnets")),
                        "endpoint": str(endpoint), "public_key": str(host.get(key_fact) or ""),
                        "subnets": subnets, "gateway": str(host.get("dl_site_gateway") or "") == str(name)})
    return members


def dl_vpn_firewall_sources(hostvars, names, me, topology="mesh") -> dict:
    """What the firewall of VPN host ``me`` lets in because of the sites: ``{"site": [...], "tunnel": [...]}``.

    site: me's own site's subnets (its LAN, let in on any interface but the tunnel's); tunnel: the subnets of
    every other site, let in only through the tunnel's interface, never around it. Both come from the
    inventory alone (dl_site, dl_site_subnets), never from other hosts' facts, so a run with --limit renders
    the same rules as a full one. Both empty when me is not a VPN member.

    Site-to-site, on a host that is not its site's gateway, the other sites' traffic comes from the gateway over
    the site's LAN: every site's subnets are "site" and "tunnel" is empty (the gateway's own firewall keeps the
    other sites' subnets to its tunnel).
    """
    require_mapping(hostvars, "hostvars", "dl_vpn_firewall_sources")
    mine = hostvars[me].get("dl_site") if me in hostvars and _in_vpn(hostvars[me]) else None
    if not mine:
        return {"site": [], "tunnel": []}
    sites = dl_vpn_sites(hostvars, vpn_hosts(hostvars, names))
    own = list(sites.get(str(mine), {}).get("subnets", []))
    others = [subnet for site, entry in sites.items() if site != str(mine) for subnet in entry["subnets"]]
    if topology == "site-to-site" and str(hostvars[me].get("dl_site_gateway") or "") != str(me):
        return {"site": own + others, "tunnel": []}
    return {"site": own, "tunnel": others}


def dl_wireguard_peers(members, me, settings=None) -> list:
    """WireGuard peers of host ``me`` in a mesh: every member of another site with a key, address and endpoint.

    With settings["topology"] "site-to-site" only the sites' gateways have site peers, each other, and a peer's
    AllowedIPs are its site's subnets. With settings["sites"] false (the sites are joined by strongSwan) no
    member of another site is a peer.
    On the clients' gateway (settings["client_gateway"] == me) also every present client of settings["clients"]
    (dl_vpn_clients' output), with its own public key or the one in settings["client_keys"][name].

    Each peer: {name, public_key, endpoint ("ip:port", IPv6 in brackets), allowed_ips [site address/32 or /128],
    keepalive (settings["keepalive"] seconds, 0 for none)}. Members without a key yet (a host whose first run was
    in check mode) are left out: they join on the next run.
    """
    settings = settings or {}
    port = int(settings.get("port", 51820))
    keepalive = int(settings.get("keepalive", 0))
    client_keys = settings.get("client_keys") or {}
    by_name = {m["name"]: m for m in members}
    if me not in by_name:
        raise AnsibleFilterError(f"dl_wireguard_peers: {me} is not a VPN member (no dl_site)")
    mine = by_name[me]
    peers = []
    # settings["sites"] false: the sites are joined by another backend (ipsec); only the people's tunnels here.
    for member in _site_peers(members, mine, settings.get("topology", "mesh")) if settings.get("sites", True) else []:
        if not member["public_key"]:
            continue
        endpoint = ipaddress.ip_address(member["endpoint"])
        peers.append({"name": member["name"], "public_key": member["public_key"],
                      "endpoint": f"{endpoint}:{port}" if endpoint.version == 4 else f"[{endpoint}]:{port}",
                      "allowed_ips": _carried(member, settings.get("topology", "mesh")),
                      "keepalive": keepalive})
    # People's tunnels end at the clients' gateway: no endpoint (they roam), their tunnel address only.
    if settings.get("client_gateway") == me:
        for client in settings.get("clients") or []:
            key = client["public_key"] or client_keys.get(client["name"], "")
            if client["state"] != "present" or not key:
                continue
            address = ipaddress.ip_address(client["address"])
            peers.append({"name": f"client {client['name']}", "public_key": key, "endpoint": "",
                          "allowed_ips": [f"{address}/{32 if address.version == 4 else 128}"], "keepalive": 0})
    return peers


def _host_prefix(address) -> str:
    ip = ipaddress.ip_address(address)
    return f"{ip}/{32 if ip.version == 4 else 128}"


def _carried(member, topology) -> list:
    """What a tunnel to member carries: its site address (mesh) or its site's subnets (site-to-site)."""
    return list(member["subnets"]) if topology == "site-to-site" else [_host_prefix(member["address"])]


def _site_peers(members, mine, topology) -> list:
    """The members a host has tunnels to: every host of the other sites (mesh), or, on a gateway, the other
    sites' gateways (site-to-site; none on the other hosts). Members without a site address or endpoint yet
    (never reached) are left out until a run reaches them."""
    if topology == "site-to-site" and not mine["gateway"]:
        return []
    return [m for m in members if m["site"] != mine["site"] and m["address"] and m["endpoint"]
            and (topology != "site-to-site" or m["gateway"])]


def dl_ipsec_connections(members, me, topology="mesh") -> list:
    """strongSwan IKEv2 connections of host ``me``: one per tunnel (see _site_peers).

    Each: {name ("dl-<peer>"), peer, local_addrs, remote_addrs (the endpoints, i.e. the cluster addresses),
    local_ts, remote_ts (the two site addresses, /32 or /128, in a mesh; the two sites' subnets, comma-separated,
    site-to-site), initiator}. Of each pair the host whose name sorts first initiates (start_action start); the
    other answers, so that a pair has one IKE SA, not two.
    """
    by_name = {m["name"]: m for m in members}
    if me not in by_name:
        raise AnsibleFilterError(f"dl_ipsec_connections: {me} is not a VPN member (no dl_site)")
    mine = by_name[me]
    if not mine["address"] or not mine["endpoint"]:
        return []
    return [{"name": f"dl-{member['name']}", "peer": member["name"],
             "local_addrs": mine["endpoint"], "remote_addrs": member["endpoint"],
             "local_ts": ",".join(_carried(mine, topology)), "remote_ts": ",".join(_carried(member, topology)),
             "initiator": me < member["name"]}
            for member in _site_peers(members, mine, topology)]


def dl_vpn_routes(members, me, topology="mesh") -> list:
    """Site-to-site, on a host that is not its site's gateway: ``[{subnet, via}]``, every other site's subnet
    through its gateway's site address. [] in a mesh, on a gateway, or while the gateway's address is unknown."""
    by_name = {m["name"]: m for m in members}
    if me not in by_name:
        raise AnsibleFilterError(f"dl_vpn_routes: {me} is not a VPN member (no dl_site)")
    mine = by_name[me]
    gateway = next((m for m in members if m["site"] == mine["site"] and m["gateway"]), None)
    if topology != "site-to-site" or mine["gateway"] or gateway is None or not gateway["address"]:
        return []
    return [{"subnet": subnet, "via": gateway["address"]}
            for site in dict.fromkeys(m["site"] for m in members if m["site"] != mine["site"])
            for subnet in next(m["subnets"] for m in members if m["site"] == site)]


CLIENT_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


def _client_pool(networks):
    """The first IPv4 network of dl_vpn_networks with room for a gateway and clients (prefix /30 or wider)."""
    for item in networks or []:
        try:
            net = ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.prefixlen <= 30:
            return net
    return None


def dl_vpn_clients(clients, networks) -> list:
    """dl_vpn_clients with their tunnel addresses: ``[{name, address, public_key, state}]``.

    Each client has an address in the first IPv4 network of dl_vpn_networks (see _client_pool): the entry's own
    ``address``, else the pool's third address plus the client's position in the list. A client with
    ``state: absent`` keeps its position (the others keep their addresses) but is left out of the tunnels.
    """
    pool = _client_pool(networks)
    result = []
    for index, client in enumerate(clients or []):
        if not isinstance(client, dict):
            raise AnsibleFilterError(f"dl_vpn_clients: dl_vpn_clients[{index}] must be a mapping with a name")
        address = client.get("address") or (str(pool.network_address + 2 + index) if pool else "")
        result.append({"name": str(client.get("name", "")), "address": str(address),
                       "public_key": str(client.get("public_key") or ""),
                       "state": str(client.get("state") or "present")})
    return result


def dl_vpn_client_problems(clients, networks, gateway, members) -> list:
    """What is wrong with dl_vpn_clients, one sentence each naming the entry, the variable and the fix."""
    if not clients:
        return []
    problems, seen = [], {}
    if not isinstance(clients, list):
        return [f"dl_vpn_clients must be a list of {{name, public_key}} entries, got {type(clients).__name__}."]
    pool = _client_pool(networks)
    if pool is None:
        problems.append("dl_vpn_clients is set but dl_vpn_networks has no IPv4 network of /30 or wider to give "
                        "the clients addresses from; add one such as 10.8.0.0/24.")
    if not gateway:
        problems.append("dl_vpn_clients is set but dl_vpn_client_gateway is empty; name the VPN host people's "
                        "tunnels end at (usually the head node).")
    elif gateway not in [m["name"] for m in members]:
        problems.append(f"dl_vpn_client_gateway is {gateway!r}, which is not a VPN host (dl_vpn true, with a "
                        f"dl_site); name one that is.")
    for index, client in enumerate(clients):
        if not isinstance(client, dict) or not re.match(CLIENT_NAME_RE, str(client.get("name", ""))):
            problems.append(f"dl_vpn_clients[{index}] needs a name of letters, digits, '.', '_' or '-' (it names "
                            f"the client's config file).")
            continue
        name = client["name"]
        if name in seen:
            problems.append(f"dl_vpn_clients lists {name} twice (entries {seen[name]} and {index}); keep one.")
        seen.setdefault(name, index)
        if client.get("public_key"):
            why = dl_wireguard_key_problem(client["public_key"])
            if why:
                problems.append(f"dl_vpn_clients entry {name}: public_key {why}; leave it out to have the "
                                f"controller make the client's key pair.")
        if client.get("state", "present") not in ("present", "absent"):
            problems.append(f"dl_vpn_clients entry {name}: state is {client['state']!r}; use present or absent.")
    if pool is not None and len(clients) + 2 > pool.num_addresses - 1:
        problems.append(f"dl_vpn_clients has {len(clients)} entries but {pool} holds "
                        f"{pool.num_addresses - 3}; give dl_vpn_networks a larger first network.")
    for client in dl_vpn_clients([c for c in clients if isinstance(c, dict)], networks):
        try:
            address = ipaddress.ip_address(client["address"])
        except ValueError:
            problems.append(f"dl_vpn_clients entry {client['name']}: address {client['address']!r} is not an IP "
                            f"address.")
            continue
        if pool is not None and address not in pool:
            problems.append(f"dl_vpn_clients entry {client['name']}: address {address} is outside {pool}, the "
                            f"clients' network (the first of dl_vpn_networks).")
    return problems


def dl_wireguard_mtu(underlay_mtu, underlay_ipv6=False) -> int:
    """The tunnel's MTU: the underlay's minus WireGuard's overhead (60 bytes over IPv4, 80 over IPv6)."""
    try:
        mtu = int(underlay_mtu)
    except (TypeError, ValueError) as err:
        raise AnsibleFilterError(f"dl_wireguard_mtu: underlay MTU {underlay_mtu!r} is not a number") from err
    result = mtu - WIREGUARD_OVERHEAD[6 if underlay_ipv6 else 4]
    if result < 1280 and underlay_ipv6:
        raise AnsibleFilterError(f"dl_wireguard_mtu: an underlay MTU of {mtu} leaves {result}, below IPv6's 1280")
    if result < 576:
        raise AnsibleFilterError(f"dl_wireguard_mtu: an underlay MTU of {mtu} leaves {result}; set the MTU by hand")
    return result


def dl_ipsec_ike_sas(lines) -> list:
    """The IKE SAs in ``swanctl --list-sas`` output lines: [{id ("#7"), state, installed}], in listing order.

    An IKE SA's line starts at column 0 ("dl-cpu2: #7, ESTABLISHED, IKEv2, ..."); the indented lines below it are
    its own, among them its CHILD SAs ("  dl-cpu2: #9, reqid 1, INSTALLED, ..."). ``installed`` says whether one of
    them is INSTALLED.
    """
    sas = []
    for line in lines or []:
        top = re.match(r"^\S+: (#\d+), ([A-Z_]+),", line)
        if top:
            sas.append({"id": top.group(1), "state": top.group(2), "installed": False})
        elif sas and re.match(r"^\s+\S+: #\d+, reqid \d+, INSTALLED,", line):
            sas[-1]["installed"] = True
    return sas


class FilterModule:
    """dlcluster VPN filters."""

    def filters(self):
        return {
            "dl_vpn_sites": dl_vpn_sites,
            "dl_vpn_problems": dl_vpn_problems,
            "dl_vpn_members": dl_vpn_members,
            "dl_vpn_firewall_sources": dl_vpn_firewall_sources,
            "dl_vpn_site_address": dl_vpn_site_address,
            "dl_wireguard_peers": dl_wireguard_peers,
            "dl_ipsec_connections": dl_ipsec_connections,
            "dl_vpn_routes": dl_vpn_routes,
            "dl_wireguard_mtu": dl_wireguard_mtu,
            "dl_vpn_clients": dl_vpn_clients,
            "dl_vpn_client_problems": dl_vpn_client_problems,
            "dl_wireguard_key_problem": dl_wireguard_key_problem,
            "dl_ipsec_ike_sas": dl_ipsec_ike_sas,
        }
