"""The VPN's site model and WireGuard peers (filter_plugins/dl_vpn.py), computed from hostvars."""

import base64

import pytest
from ansible.errors import AnsibleFilterError

from dl_vpn import (FilterModule, dl_ipsec_ike_sas, dl_ipsec_connections, dl_vpn_client_problems, dl_vpn_routes, dl_vpn_clients, dl_vpn_firewall_sources, dl_vpn_members, dl_vpn_problems, dl_vpn_site_address,
                    dl_wireguard_key_problem, dl_wireguard_mtu, dl_wireguard_peers)

KEY = base64.b64encode(bytes(range(32))).decode()
KEY2 = base64.b64encode(bytes(range(1, 33))).decode()


def host(site, site_address, wan, **extra):
    subnets = {"a": ["192.168.1.0/24"], "b": ["192.168.2.0/24"]}.get(site, ["10.9.0.0/24"])
    return {"dl_vpn": True, "dl_site": site, "dl_site_subnets": subnets, "ansible_host": wan,
            "ansible_all_ipv4_addresses": [wan, site_address], **extra}


def lab(**overrides):
    hosts = {"head": host("a", "192.168.1.2", "172.18.0.2", vpn_wireguard_public_key=KEY),
             "cpu1": host("a", "192.168.1.3", "172.18.0.3", vpn_wireguard_public_key=KEY2),
             "cpu2": host("b", "192.168.2.2", "172.18.0.4", vpn_wireguard_public_key=KEY)}
    for name, fields in overrides.items():
        hosts[name] = {**hosts.get(name, {}), **fields}
    return hosts


NAMES = ["head", "cpu1", "cpu2"]


def test_a_good_two_site_inventory_has_no_problem():
    assert dl_vpn_problems(lab(), NAMES) == []


@pytest.mark.parametrize("overrides, expected", [
    ({"cpu2": {"dl_site_subnets": ["192.168.1.128/25"], "ansible_all_ipv4_addresses": ["192.168.1.130"]}},
     "dl_site_subnets of sites a (192.168.1.0/24) and b (192.168.1.128/25) overlap; give every site its own "
     "subnets."),
    ({"cpu1": {"dl_site": None}},
     "Host cpu1 has no dl_site; put it in a site group whose group_vars set dl_site and dl_site_subnets, or set "
     "dl_vpn: false for it."),
    ({"cpu1": {"dl_site_subnets": ["192.168.7.0/24"]}},
     "Host cpu1: dl_site_subnets of site a differ from those of host head; set them once, in the site group's "
     "group_vars."),
    ({"cpu1": {"dl_site_subnets": "not-a-cidr"}},
     "Host cpu1: dl_site_subnets of site a is wrong ('not-a-cidr' does not appear to be an IPv4 or IPv6 network); give a "
     "list of CIDRs such as [192.168.1.0/24]."),
    ({"cpu2": {"ansible_all_ipv4_addresses": ["172.18.0.4"]}},
     "Host cpu2 has no address inside dl_site_subnets of site b (192.168.2.0/24); fix dl_site_subnets or the "
     "host's site."),
    ({"head": {"dl_vpn_networks": ["192.168.2.0/28"]}},
     "Host head: dl_vpn_networks entry 192.168.2.0/28 overlaps the subnets of site b; give VPN clients a network "
     "of their own."),
    ({"cpu2": {"ansible_host": "192.168.1.50"}},
     "Host cpu2 is reached at 192.168.1.50 (ansible_host), inside site a's subnets, which its tunnel carries; the "
     "controller's SSH path must not depend on the tunnel: reach it at an address outside other sites' subnets."),
    ({"cpu2": {"dl_vpn_endpoint": "192.168.2.2"}},
     "Host cpu2: its tunnel endpoint 192.168.2.2 is its own site address, which its peers route into the tunnel; "
     "set dl_vpn_endpoint to the address the other sites reach it at outside the tunnel."),
])
def test_bad_site_models_are_named_with_the_host_the_variable_and_the_fix(overrides, expected):
    assert expected in dl_vpn_problems(lab(**overrides), NAMES)


def test_unknown_backend_and_topology_are_refused():
    problems = dl_vpn_problems(lab(), NAMES, {"backend": "openvpn", "topology": "star"})
    assert problems[0].startswith("dl_vpn_backend is 'openvpn'; use one of wireguard, ipsec")
    assert problems[1].startswith("dl_vpn_topology is 'star'; use one of mesh")


def test_one_site_is_not_a_vpn_and_hosts_without_dl_vpn_are_left_out():
    one_site = lab(cpu2={"dl_vpn": False})
    assert dl_vpn_problems(one_site, NAMES) == [
        "dl_vpn is true but every VPN host is in site a; a VPN needs two sites or more (give the other hosts their "
        "dl_site)."]
    assert [m["name"] for m in dl_vpn_members(one_site, NAMES)] == ["head", "cpu1"]
    assert dl_vpn_problems(lab(head={"dl_vpn": False}, cpu1={"dl_vpn": "false"}, cpu2={"dl_vpn": False}),
                           NAMES) == []


def test_the_site_address_is_the_hosts_address_inside_its_site():
    assert dl_vpn_site_address(["172.18.0.3", "192.168.1.3"], ["192.168.1.0/24"]) == "192.168.1.3"
    assert dl_vpn_site_address(["172.18.0.3", "fd00::3"], ["fd00::/64"]) == "fd00::3"
    assert dl_vpn_site_address(["172.18.0.3"], ["192.168.1.0/24"]) == ""
    assert dl_vpn_site_address(["172.18.0.3"], "garbage") == ""


def test_members_carry_site_address_endpoint_and_key():
    members = dl_vpn_members(lab(cpu2={"dl_vpn_endpoint": "203.0.113.7"}), NAMES)
    assert members[0] == {"name": "head", "site": "a", "address": "192.168.1.2", "endpoint": "172.18.0.2",
                          "public_key": KEY, "subnets": ["192.168.1.0/24"], "gateway": False}
    assert members[2]["endpoint"] == "203.0.113.7"
    # A host reached by name: its default IPv4 address from the facts is the endpoint.
    by_name = lab(cpu1={"ansible_host": "cpu1.example", "ansible_default_ipv4": {"address": "172.18.0.3"}})
    assert dl_vpn_members(by_name, NAMES)[1]["endpoint"] == "172.18.0.3"


def test_a_mesh_peers_with_every_host_of_the_other_sites_only():
    members = dl_vpn_members(lab(), NAMES)
    head = dl_wireguard_peers(members, "head", {"port": 51820})
    assert head == [{"name": "cpu2", "public_key": KEY, "endpoint": "172.18.0.4:51820",
                     "allowed_ips": ["192.168.2.2/32"], "keepalive": 0}]
    cpu2 = dl_wireguard_peers(members, "cpu2", {"port": 51821, "keepalive": 25})
    assert [(p["name"], p["allowed_ips"], p["endpoint"], p["keepalive"]) for p in cpu2] == [
        ("head", ["192.168.1.2/32"], "172.18.0.2:51821", 25), ("cpu1", ["192.168.1.3/32"], "172.18.0.3:51821", 25)]


def test_a_member_without_a_key_yet_is_left_out_and_ipv6_endpoints_are_bracketed():
    members = dl_vpn_members(lab(cpu1={"vpn_wireguard_public_key": ""}, head={"ansible_host": "2001:db8::2"}), NAMES)
    assert [p["name"] for p in dl_wireguard_peers(members, "cpu2")] == ["head"]
    assert dl_wireguard_peers(members, "cpu2")[0]["endpoint"] == "[2001:db8::2]:51820"
    with pytest.raises(AnsibleFilterError, match="outsider is not a VPN member"):
        dl_wireguard_peers(members, "outsider")


def test_ipsec_connects_every_pair_of_sites_once_with_one_initiator_per_pair():
    members = dl_vpn_members(lab(), NAMES)
    assert dl_ipsec_connections(members, "cpu2") == [
        {"name": "dl-head", "peer": "head", "local_addrs": "172.18.0.4", "remote_addrs": "172.18.0.2",
         "local_ts": "192.168.2.2/32", "remote_ts": "192.168.1.2/32", "initiator": True},
        {"name": "dl-cpu1", "peer": "cpu1", "local_addrs": "172.18.0.4", "remote_addrs": "172.18.0.3",
         "local_ts": "192.168.2.2/32", "remote_ts": "192.168.1.3/32", "initiator": False}]
    # The same pairs seen from the other end: exactly one side of each initiates.
    for name in ("head", "cpu1"):
        (mine,) = dl_ipsec_connections(members, name)
        theirs = next(c for c in dl_ipsec_connections(members, "cpu2") if c["peer"] == name)
        assert (mine["peer"], mine["local_ts"], mine["remote_ts"]) == ("cpu2", theirs["remote_ts"], theirs["local_ts"])
        assert mine["initiator"] != theirs["initiator"]


def test_ipsec_leaves_out_members_without_a_site_address_and_uses_ipv6_host_selectors():
    hosts = lab(cpu1={"ansible_all_ipv4_addresses": ["172.18.0.3"]},
                cpu2={"dl_site_subnets": ["fd00:2::/64"], "ansible_all_ipv6_addresses": ["fd00:2::5"]})
    members = dl_vpn_members(hosts, NAMES)
    assert [(c["peer"], c["remote_ts"]) for c in dl_ipsec_connections(members, "head")] == [("cpu2", "fd00:2::5/128")]
    assert dl_ipsec_connections(members, "cpu1") == []
    with pytest.raises(AnsibleFilterError, match="outsider is not a VPN member"):
        dl_ipsec_connections(members, "outsider")


def test_the_firewall_lets_its_site_in_directly_and_other_sites_through_the_tunnel_only():
    assert dl_vpn_firewall_sources(lab(), NAMES, "head") == {"site": ["192.168.1.0/24"], "tunnel": ["192.168.2.0/24"]}
    assert dl_vpn_firewall_sources(lab(), NAMES, "cpu2") == {"site": ["192.168.2.0/24"], "tunnel": ["192.168.1.0/24"]}
    assert dl_vpn_firewall_sources(lab(cpu2={"dl_vpn": False}), NAMES, "cpu2") == {"site": [], "tunnel": []}
    # From the inventory alone: hosts without facts (outside a --limit) give the same rules.
    no_facts = {name: {k: v for k, v in hv.items() if not k.startswith("ansible_all")} for name, hv in lab().items()}
    assert dl_vpn_firewall_sources(no_facts, NAMES, "head") == dl_vpn_firewall_sources(lab(), NAMES, "head")


def test_mtu_is_the_underlay_minus_the_overhead():
    assert dl_wireguard_mtu(1500) == 1440
    assert dl_wireguard_mtu("9000", True) == 8920
    with pytest.raises(AnsibleFilterError, match="below IPv6's 1280"):
        dl_wireguard_mtu(1300, True)
    with pytest.raises(AnsibleFilterError, match="is not a number"):
        dl_wireguard_mtu(None)


def test_wireguard_keys_are_checked():
    assert dl_wireguard_key_problem(KEY) == ""
    assert "44 base64 characters" in dl_wireguard_key_problem("short")
    assert "not valid base64" in dl_wireguard_key_problem("!" * 43 + "=")
    assert "44 base64 characters" in dl_wireguard_key_problem(None)


def test_every_filter_is_registered():
    assert set(FilterModule().filters()) == {
        "dl_vpn_sites", "dl_vpn_problems", "dl_vpn_members", "dl_vpn_firewall_sources", "dl_vpn_site_address",
        "dl_wireguard_peers", "dl_wireguard_mtu", "dl_wireguard_key_problem", "dl_vpn_clients",
        "dl_vpn_client_problems", "dl_ipsec_connections", "dl_vpn_routes", "dl_ipsec_ike_sas"}


def test_clients_get_addresses_in_list_order_and_an_absent_one_keeps_its_place():
    clients = [{"name": "alice"}, {"name": "bob", "state": "absent"}, {"name": "carol", "public_key": KEY},
               {"name": "dan", "address": "10.8.0.99"}]
    assert [(c["name"], c["address"], c["state"]) for c in dl_vpn_clients(clients, ["10.9.9.9/32", "10.8.0.0/24"])] \
        == [("alice", "10.8.0.2", "present"), ("bob", "10.8.0.3", "absent"), ("carol", "10.8.0.4", "present"),
            ("dan", "10.8.0.99", "present")]


def test_the_clients_gateway_peers_with_every_present_client():
    members = dl_vpn_members(lab(), NAMES)
    clients = dl_vpn_clients([{"name": "alice"}, {"name": "bob", "state": "absent", "public_key": KEY},
                              {"name": "carol", "public_key": KEY2}], ["10.8.0.0/24"])
    settings = {"clients": clients, "client_gateway": "head", "client_keys": {"alice": KEY}}
    head = dl_wireguard_peers(members, "head", settings)
    # With strongSwan joining the sites, the gateway's WireGuard carries the people only.
    assert [p["name"] for p in dl_wireguard_peers(members, "head", {**settings, "sites": False})] == [
        "client alice", "client carol"]
    assert [(p["name"], p["allowed_ips"], p["endpoint"]) for p in head] == [
        ("cpu2", ["192.168.2.2/32"], "172.18.0.4:51820"), ("client alice", ["10.8.0.2/32"], ""),
        ("client carol", ["10.8.0.4/32"], "")]
    assert [p["name"] for p in dl_wireguard_peers(members, "cpu1", settings)] == ["cpu2"]


@pytest.mark.parametrize("clients, networks, gateway, expected", [
    ([{"name": "a"}, {"name": "a"}], ["10.8.0.0/24"], "head", "dl_vpn_clients lists a twice (entries 0 and 1); keep one."),
    ([{"name": "a", "public_key": "abc"}], ["10.8.0.0/24"], "head",
     "dl_vpn_clients entry a: public_key is not 44 base64 characters (the output of `wg pubkey`); leave it out to "
     "have the controller make the client's key pair."),
    ([{"name": "a"}], ["10.8.0.1/32"], "head",
     "dl_vpn_clients is set but dl_vpn_networks has no IPv4 network of /30 or wider to give the clients addresses "
     "from; add one such as 10.8.0.0/24."),
    ([{"name": "a"}], ["10.8.0.0/24"], "", "dl_vpn_clients is set but dl_vpn_client_gateway is empty; name the VPN "
     "host people's tunnels end at (usually the head node)."),
    ([{"name": "a"}], ["10.8.0.0/24"], "outsider", "dl_vpn_client_gateway is 'outsider', which is not a VPN host "
     "(dl_vpn true, with a dl_site); name one that is."),
    ([{"name": "../a"}], ["10.8.0.0/24"], "head", "dl_vpn_clients[0] needs a name of letters, digits, '.', '_' or "
     "'-' (it names the client's config file)."),
    ([{"name": "a", "address": "10.9.0.2"}], ["10.8.0.0/24"], "head", "dl_vpn_clients entry a: address 10.9.0.2 is "
     "outside 10.8.0.0/24, the clients' network (the first of dl_vpn_networks)."),
    ([{"name": f"c{i}"} for i in range(3)], ["10.8.0.0/30"], "head",
     "dl_vpn_clients has 3 entries but 10.8.0.0/30 holds 1; give dl_vpn_networks a larger first network."),
])
def test_bad_clients_are_named_with_the_fix(clients, networks, gateway, expected):
    assert expected in dl_vpn_client_problems(clients, networks, gateway, dl_vpn_members(lab(), NAMES))


def test_no_clients_no_problem():
    assert dl_vpn_client_problems([], [], "", []) == []


def _keypair_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "library" / "dl_wireguard_keypair.py"
    spec = importlib.util.spec_from_file_location("dl_wireguard_keypair", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_client_key_pairs_are_x25519_as_wg_makes_them():
    """RFC 7748's X25519 test vector (Alice), base64 as `wg genkey` / `wg pubkey` write them."""
    keypair = _keypair_module()
    private = base64.b64encode(bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"))
    public = base64.b64encode(bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"))
    assert keypair.public_key_of(private.decode()) == public.decode()
    fresh = keypair.new_private_key()
    assert dl_wireguard_key_problem(fresh) == "" and dl_wireguard_key_problem(keypair.public_key_of(fresh)) == ""


def site_to_site(**overrides):
    """The lab's sites with a gateway each: head for site a, cpu2 for site b."""
    hosts = lab(**overrides)
    for name, gateway in (("head", "head"), ("cpu1", "head"), ("cpu2", "cpu2")):
        hosts[name].setdefault("dl_site_gateway", gateway)
    return hosts


def test_site_to_site_joins_the_gateways_and_routes_the_other_hosts_through_theirs():
    members = dl_vpn_members(site_to_site(), NAMES)
    assert [(m["name"], m["gateway"]) for m in members] == [("head", True), ("cpu1", False), ("cpu2", True)]
    settings = {"topology": "site-to-site"}
    # WireGuard: one tunnel between the gateways, carrying the sites' subnets; none on cpu1.
    assert [(p["name"], p["allowed_ips"]) for p in dl_wireguard_peers(members, "head", settings)] == [
        ("cpu2", ["192.168.2.0/24"])]
    assert [(p["name"], p["allowed_ips"]) for p in dl_wireguard_peers(members, "cpu2", settings)] == [
        ("head", ["192.168.1.0/24"])]
    assert dl_wireguard_peers(members, "cpu1", settings) == []
    # strongSwan: the same pair, subnets as traffic selectors.
    assert [(c["peer"], c["local_ts"], c["remote_ts"], c["initiator"])
            for c in dl_ipsec_connections(members, "cpu2", "site-to-site")] == [
        ("head", "192.168.2.0/24", "192.168.1.0/24", True)]
    assert dl_ipsec_connections(members, "cpu1", "site-to-site") == []
    # cpu1 reaches site b through head's site address; the gateways and a mesh need no route.
    assert dl_vpn_routes(members, "cpu1", "site-to-site") == [{"subnet": "192.168.2.0/24", "via": "192.168.1.2"}]
    assert dl_vpn_routes(members, "head", "site-to-site") == dl_vpn_routes(members, "cpu1", "mesh") == []


def test_site_to_site_firewall_lets_the_other_sites_in_over_the_lan_on_hosts_behind_a_gateway():
    hosts = site_to_site()
    assert dl_vpn_firewall_sources(hosts, NAMES, "cpu1", "site-to-site") == {
        "site": ["192.168.1.0/24", "192.168.2.0/24"], "tunnel": []}
    assert dl_vpn_firewall_sources(hosts, NAMES, "head", "site-to-site") == {
        "site": ["192.168.1.0/24"], "tunnel": ["192.168.2.0/24"]}


@pytest.mark.parametrize("overrides, expected", [
    ({"cpu2": {"dl_site_gateway": ""}},
     "Site b has no gateway: set dl_site_gateway in the site group's group_vars to one of its hosts (cpu2), or use "
     "dl_vpn_topology mesh."),
    ({"cpu2": {"dl_site_gateway": "head"}},
     "dl_site_gateway of site b is 'head', which is not one of its VPN hosts (cpu2); name one of them."),
    ({"cpu1": {"dl_site_gateway": "cpu1"}},
     "The hosts of site a disagree on dl_site_gateway (cpu1, head); set it once, in the site group's group_vars."),
])
def test_site_to_site_needs_one_gateway_per_site(overrides, expected):
    assert dl_vpn_problems(site_to_site(), NAMES, {"topology": "site-to-site"}) == []
    assert expected in dl_vpn_problems(site_to_site(**overrides), NAMES, {"topology": "site-to-site"})
    # A mesh does not need gateways.
    assert dl_vpn_problems(site_to_site(**overrides), NAMES, {"topology": "mesh"}) == []


def test_ipsec_ike_sas_read_every_ike_sa_with_its_state_and_whether_a_child_sa_is_installed():
    listing = """dl-cpu2: #7, ESTABLISHED, IKEv2, 9a2f0c7b3e1d5a44_i* 1b2c3d4e5f607182_r
  local  'head' @ 172.30.0.2[4500]
  remote 'cpu2' @ 172.30.0.4[4500]
  established 3s ago, rekeying in 13820s
  dl-cpu2: #9, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
dl-cpu2: #5, DELETING, IKEv2, 0011223344556677_i 8899aabbccddeeff_r*
  dl-cpu2: #6, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
dl-cpu2: #4, ESTABLISHED, IKEv2, 1111222233334444_i 5555666677778888_r*
  dl-cpu2: #8, reqid 1, REKEYED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
""".splitlines()
    assert dl_ipsec_ike_sas(listing) == [{"id": "#7", "state": "ESTABLISHED", "installed": True},
                                         {"id": "#5", "state": "DELETING", "installed": True},
                                         {"id": "#4", "state": "ESTABLISHED", "installed": False}]
    assert dl_ipsec_ike_sas([]) == []
    assert dl_ipsec_ike_sas(None) == []
