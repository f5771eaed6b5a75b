"""Unit tests of filter_plugins/dl_firewall.py: the firewall's list of services and the live table's fingerprint."""

import copy
import json
import re
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.errors import AnsibleFilterError

from dl_firewall import (FilterModule, dl_firewall_fingerprint, dl_firewall_ports_as_services,
                         dl_firewall_service_problems, dl_firewall_service_rules, dl_firewall_set)
from dl_network import dl_networks

ROLE = Path(__file__).resolve().parents[2] / "roles" / "firewall"

HOSTVARS = {
    "head": {"ansible_host": "10.0.0.1"},
    "gpu1": {"ansible_host": "gpu1.example.org", "ansible_default_ipv4": {"address": "10.0.0.11"}},
    "gpu2": {"dl_address": "fd00::12", "ansible_host": "10.9.9.9"},
    "prom": {"ansible_host": "10.5.0.2"},
    "lost": {"ansible_host": "lost.example.org"},
}
GROUPS = {"all": list(HOSTVARS), "dlcluster": ["head", "gpu1", "gpu2"], "gpu": ["gpu1", "gpu2"],
          "monitoring": ["prom"], "broken": ["lost"], "empty": []}


def service(**kwargs):
    entry = {"name": "svc", "port": 9100, "protocol": "tcp", "sources": ["admin"]}
    entry.update(kwargs)
    return entry


def role_defaults():
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())


# ---------------------------------------------------------------- problems

def test_default_services_have_no_problems():
    lists = {"firewall_services": role_defaults()["firewall_services"],
             "firewall_vpn_ports": dl_firewall_ports_as_services([{"proto": "udp", "port": 51820}], "vpn-listen")}
    assert dl_firewall_service_problems(lists, HOSTVARS, GROUPS, "head") == []


@pytest.mark.parametrize("entry,sentence", [
    (service(protocol="icmp"),
     "host head: dl_firewall_services_x[0] (svc) has protocol 'icmp'; set protocol to tcp or udp"),
    (service(port=0),
     "host head: dl_firewall_services_x[0] (svc) has port 0; give a port from 1 to 65535 or a range such as "
     "'6817-6819'"),
    (service(port=70000), "(svc) has port 70000; give a port from 1 to 65535"),
    (service(port="6819-6817"), "(svc) has port '6819-6817'; give a port from 1 to 65535"),
    (service(port="http"), "(svc) has port 'http'; give a port"),
    (service(port=True), "(svc) has port True; give a port"),
    (service(sources=["monitoing"]),
     "host head: dl_firewall_services_x[0] (svc) allows source 'monitoing', which is no inventory group; add that "
     "group to the inventory or use any, cluster, admin, vpn, monitoring or a CIDR"),
    (service(sources=[]), "(svc) has sources []; list who may connect"),
    (service(sources="admin"), "(svc) has sources 'admin'; list who may connect"),
    (service(sources=["broken"]),
     "(svc) allows group broken, but no IP address is known for its host lost; set dl_address or ansible_host"),
    (service(name="my service"), "dl_firewall_services_x[0] has name 'my service'; give it a name of letters"),
    (service(proto="tcp"), "(svc) has unknown keys ['proto']; use only name, port, protocol, sources"),
    ("svc:9100", "dl_firewall_services_x[0] is 'svc:9100'; write it as a mapping such as {name: node-exporter"),
])
def test_problems_name_host_variable_and_fix(entry, sentence):
    problems = dl_firewall_service_problems({"dl_firewall_services_x": [entry]}, HOSTVARS, GROUPS, "head")
    assert len(problems) == 1, problems
    assert sentence in problems[0]
    assert problems[0].startswith("host head: dl_firewall_services_x")
    assert problems[0].count(";") == 1 and "\n" not in problems[0]  # one sentence: what is wrong; the fix


def test_problem_of_a_list_that_is_not_a_list():
    assert dl_firewall_service_problems({"dl_firewall_services": service()}, HOSTVARS, GROUPS, "n1") == [
        "host n1: dl_firewall_services must be a list of services such as [{name: node-exporter, port: 9100, "
        "protocol: tcp, sources: [monitoring]}]; turn it into a list"]


def test_duplicate_names_across_variables():
    lists = {"dl_firewall_services_a": [service()], "dl_firewall_services_b": [service(port=9200)]}
    assert dl_firewall_service_problems(lists, HOSTVARS, GROUPS, "h") == [
        "host h: dl_firewall_services_b[0] uses the name 'svc' of dl_firewall_services_a[0] too; "
        "give each service its own name or drop one of them"]


def test_good_sources_are_accepted():
    entry = service(port="6817-6819", protocol="udp",
                    sources=["any", "cluster", "admin", "vpn", "monitoring", "gpu", "empty", "10.1.0.0/16", "fd00::1"])
    assert dl_firewall_service_problems({"v": [entry], "w": None, "z": ""}, HOSTVARS, GROUPS) == []


def test_problems_rejects_a_non_mapping():
    with pytest.raises(AnsibleFilterError, match="mapping of variable to list"):
        dl_firewall_service_problems([service()], HOSTVARS, GROUPS)


# ---------------------------------------------------------------- rules

def test_rules_resolve_sets_groups_and_cidrs():
    lists = {"firewall_services": [service(name="slurmd", port="6817-6819",
                                           sources=["vpn", "gpu", "admin", "10.0.0.0/24", "10.0.0.11", "vpn"])],
             "dl_firewall_services_iperf": [service(name="iperf3", port="5201", sources=["any", "admin"])]}
    assert dl_firewall_service_rules(lists, HOSTVARS, GROUPS) == [
        {"name": "slurmd", "variable": "firewall_services[0]", "protocol": "tcp", "port": "6817-6819", "any": False,
         "sets": ["vpn", "admin"], "ipv4": ["10.0.0.0/24"], "ipv6": ["fd00::12"]},
        {"name": "iperf3", "variable": "dl_firewall_services_iperf[0]", "protocol": "tcp", "port": "5201",
         "any": True, "sets": ["admin"], "ipv4": [], "ipv6": []},
    ]


def test_rules_of_a_group_source():
    rules = dl_firewall_service_rules({"v": [service(sources=["monitoring", "gpu", "dlcluster"])]}, HOSTVARS, GROUPS)
    assert rules[0]["sets"] == ["monitoring"]
    assert rules[0]["ipv4"] == ["10.0.0.1", "10.0.0.11"] and rules[0]["ipv6"] == ["fd00::12"]


def test_rules_refuse_bad_services():
    with pytest.raises(AnsibleFilterError, match=r"v\[0\] \(svc\) has protocol 'sctp'"):
        dl_firewall_service_rules({"v": [service(protocol="sctp")]}, HOSTVARS, GROUPS)


# ---------------------------------------------------------------- helpers

def test_ports_as_services():
    assert dl_firewall_ports_as_services([{"proto": "udp", "port": 51820}, {"proto": "tcp", "port": "443"}],
                                         "vpn-listen") == [
        {"name": "vpn-listen-udp-51820", "port": 51820, "protocol": "udp", "sources": ["any"]},
        {"name": "vpn-listen-tcp-443", "port": "443", "protocol": "tcp", "sources": ["any"]}]
    assert dl_firewall_ports_as_services(None, "vpn") == []
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        dl_firewall_ports_as_services("udp/51820", "vpn")
    with pytest.raises(AnsibleFilterError, match="must be a mapping"):
        dl_firewall_ports_as_services(["udp/51820"], "vpn")


def test_firewall_set_merges_overlaps():
    assert dl_firewall_set(["10.0.0.5", "10.0.0.0/24", "10.1.0.1/32", "fd00::/64", "fd00::1"]) == {
        "ipv4": ["10.0.0.0/24", "10.1.0.1"], "ipv6": ["fd00::/64"]}
    assert dl_firewall_set(None) == {"ipv4": [], "ipv6": []}
    with pytest.raises(AnsibleFilterError, match="dl_monitoring_networks: 'prom' is not an address or CIDR"):
        dl_firewall_set(["prom"], "dl_monitoring_networks")
    with pytest.raises(AnsibleFilterError, match="must be a list"):
        dl_firewall_set("10.0.0.0/8")


def test_filter_module():
    assert set(FilterModule().filters()) == {"dl_firewall_fingerprint", "dl_firewall_ports_as_services",
                                             "dl_firewall_set", "dl_firewall_service_problems",
                                             "dl_firewall_service_rules"}


# ---------------------------------------------------------------- the template

def render(rules, vpn_ports=(), sites=None, tunnel_interfaces=()):
    """The nftables template rendered with the filters, as the role would on a host."""
    sites = sites or {"site": [], "tunnel": []}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")),
                             trim_blocks=True, keep_trailing_newline=True)  # as ansible.builtin.template
    env.filters.update(FilterModule().filters())
    env.filters.update({"comment": lambda text: "# " + text, "bool": bool, "to_json": json.dumps})
    empty = {"ipv4": [], "ipv6": []}
    return env.get_template("etc/nftables.d/dlcluster.nft.j2").render(
        ansible_managed="managed", __firewall_peers={"ipv4": ["10.0.0.1"], "ipv6": []},
        __firewall_admin=dl_networks(["192.168.0.0/24"]), __firewall_vpn=dl_networks(["10.8.0.0/24"]),
        __firewall_monitoring=empty, __firewall_rules=rules, firewall_ssh_rate_limit="30/minute",
        firewall_ssh_rate_burst=30, firewall_ssh_port=22, firewall_log_dropped=False,
        __firewall_site=dl_firewall_set(sites["site"]), __firewall_tunnel=dl_firewall_set(sites["tunnel"]),
        firewall_tunnel_interfaces=tunnel_interfaces)


def accepts(text):
    """The accept rules of the input chain as (protocol, port, source) triples."""
    triples = set()
    for line in text.splitlines():
        match = re.fullmatch(r"\s*(tcp|udp) dport (\{ [^}]+ \}|\S+)(?: ip6? saddr (\S+|\{ [^}]+ \}))? accept", line)
        if match:
            for port in match.group(2).strip("{} ").split(", "):
                triples.add((match.group(1), port, match.group(3) or "any"))
    return triples


def test_default_services_reproduce_the_former_ruleset():
    """The defaults open exactly what the template hard-coded before the list (8888/6006 to vpn+admin, VPN ports)."""
    lists = {"firewall_services": role_defaults()["firewall_services"],
             "firewall_vpn_ports": dl_firewall_ports_as_services([{"proto": "udp", "port": 51820}], "vpn-listen")}
    text = render(dl_firewall_service_rules(lists, HOSTVARS, GROUPS))
    former = {("tcp", port, f"@{src}_{fam}") for port in ("8888", "6006") for src in ("vpn", "admin")
              for fam in ("v4", "v6")} | {("udp", "51820", "any")}
    assert accepts(text) - {("tcp", "22", "@admin_v4"), ("tcp", "22", "@admin_v6")} == former


def test_template_writes_group_and_cidr_sources_inline():
    lists = {"dl_firewall_services_slurm": [service(name="slurmctld", port="6817-6818",
                                                    sources=["gpu", "10.3.0.0/16"])]}
    text = render(dl_firewall_service_rules(lists, HOSTVARS, GROUPS))
    assert "# slurmctld (dl_firewall_services_slurm[0])" in text
    assert "tcp dport 6817-6818 ip saddr { 10.0.0.11, 10.3.0.0/16 } accept" in text
    assert "tcp dport 6817-6818 ip6 saddr { fd00::12 } accept" in text


def test_template_writes_no_rule_for_an_empty_group():
    text = render(dl_firewall_service_rules({"v": [service(sources=["empty"])]}, HOSTVARS, GROUPS))
    assert "dport 9100" not in text


# ---------------------------------------------------------------- the live table's fingerprint

# `nft -j -s list table inet dlcluster` of the rendered template (nftables 1.0.6), cut to a few objects,
# right after 40 new SSH connections from 10.9.0.2 filled the rate-limit set.
LIVE = {"nftables": [
    {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
    {"table": {"family": "inet", "name": "dlcluster", "handle": 11}},
    {"set": {"family": "inet", "name": "admin_v4", "table": "dlcluster", "type": "ipv4_addr", "handle": 4,
             "flags": ["interval"], "elem": [{"prefix": {"addr": "192.168.0.0", "len": 24}}]}},
    {"set": {"family": "inet", "name": "ssh_rate_v4", "table": "dlcluster", "type": "ipv4_addr", "handle": 10,
             "size": 65535, "flags": ["timeout"], "timeout": 600,
             "elem": [{"elem": {"val": "10.9.0.2", "expires": 599,
                                "limit": {"rate": 30, "burst": 30, "per": "minute", "inv": True}}}]}},
    {"chain": {"family": "inet", "table": "dlcluster", "name": "input", "handle": 1, "type": "filter",
               "hook": "input", "prio": 0, "policy": "drop"}},
    {"rule": {"family": "inet", "table": "dlcluster", "chain": "input", "handle": 12,
              "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}},
                       {"accept": None}]}},
    {"rule": {"family": "inet", "table": "dlcluster", "chain": "input", "handle": 21, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "new"}},
        {"set": {"op": "update", "elem": {"payload": {"protocol": "ip", "field": "saddr"}}, "set": "@ssh_rate_v4",
                 "stmt": [{"limit": {"rate": 30, "burst": 30, "per": "minute", "inv": True}}]}},
        {"counter": None}, {"drop": None}]}},
    {"rule": {"family": "inet", "table": "dlcluster", "chain": "input", "handle": 27, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8888}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@admin_v4"}},
        {"accept": None}]}},
]}


def live(edit=None):
    """LIVE as nft prints it, after `edit` changed a deep copy of its objects."""
    objects = copy.deepcopy(LIVE["nftables"])
    if edit:
        edit(objects)
    return json.dumps({"nftables": objects})


def _by_kind(objects, kind, name=None):
    return next(o[kind] for o in objects if kind in o and name in (None, o[kind].get("name")))


def _reloaded(objects):
    """What a reload or another nft version changes: handles, the metainfo."""
    for item in objects:
        for body in item.values():
            if "handle" in body:
                body["handle"] += 100
    objects[0]["metainfo"]["version"] = "1.0.9"


def _packets(objects):
    """What packets change: the rate-limit set's elements and their expiry, counter values."""
    _by_kind(objects, "set", "ssh_rate_v4")["elem"] = [
        {"elem": {"val": f"10.9.0.{i}", "expires": 30 + i, "limit": {"rate": 30, "burst": 30, "per": "minute",
                                                                  "inv": True}}} for i in range(3, 9)]
    objects[6]["rule"]["expr"][3] = {"counter": {"packets": 17, "bytes": 1020}}


def _timed_static_element(objects):
    _by_kind(objects, "set", "admin_v4")["elem"][0] = {"elem": {"val": {"prefix": {"addr": "192.168.0.0", "len": 24}},
                                                                "expires": 41}}


@pytest.mark.parametrize("change", [_reloaded, _packets], ids=["reloaded", "packets"])
def test_fingerprint_ignores_what_changes_without_an_edit(change):
    assert dl_firewall_fingerprint(live(change)) == dl_firewall_fingerprint(live())


def test_fingerprint_ignores_elements_of_sets_flagged_dynamic_and_of_meters():
    def dynamic(objects, elem):
        objects.append({"set": {"family": "inet", "name": "seen", "table": "dlcluster", "type": "ipv4_addr",
                                "flags": ["dynamic"], **({"elem": elem} if elem else {})}})
        objects.append({"set": {"family": "inet", "name": "m", "table": "dlcluster", "type": "ipv4_addr",
                                **({"elem": elem} if elem else {})}})
        objects[-3]["rule"]["expr"].insert(0, {"meter": {"name": "m", "key": {"payload": {"protocol": "ip",
                                                                                            "field": "saddr"}},
                                                         "stmt": {"limit": {"rate": 5, "per": "second"}}}})
    assert (dl_firewall_fingerprint(live(lambda o: dynamic(o, ["10.1.1.1", "10.1.1.2"])))
            == dl_firewall_fingerprint(live(lambda o: dynamic(o, None))))


@pytest.mark.parametrize("edit", [
    lambda o: o.pop(7),                                                          # nft delete rule ... handle 27
    lambda o: o.append({"rule": {**copy.deepcopy(o[7]["rule"]), "handle": 30}}),  # nft add rule ...
    lambda o: _by_kind(o, "set", "admin_v4")["elem"].append("10.66.0.1"),        # nft add element ... admin_v4
    lambda o: _by_kind(o, "set", "admin_v4").pop("elem"),                       # nft flush set ... admin_v4
    lambda o: _by_kind(o, "chain").update(policy="accept"),                      # nft chain ... { policy accept; }
    lambda o: o[6]["rule"]["expr"][2]["set"]["stmt"][0]["limit"].update(rate=3000),
    _timed_static_element,                                                       # a static element with a timeout
], ids=["deleted rule", "added rule", "added element", "flushed set", "policy", "rate", "timed element"])
def test_fingerprint_changes_with_every_edit_by_hand(edit):
    assert dl_firewall_fingerprint(live(edit)) != dl_firewall_fingerprint(live())


def test_fingerprint_is_a_sha256_and_ignores_the_expiry_of_static_elements():
    assert re.fullmatch(r"[0-9a-f]{64}", dl_firewall_fingerprint(live()))

    def later(objects):
        _timed_static_element(objects)
        _by_kind(objects, "set", "admin_v4")["elem"][0]["elem"]["expires"] = 3
    assert dl_firewall_fingerprint(live(later)) == dl_firewall_fingerprint(live(_timed_static_element))


@pytest.mark.parametrize("listing", ["", "table inet dlcluster {", None, '{"tables": []}', '{"nftables": {}}'])
def test_fingerprint_refuses_what_is_no_json_listing(listing):
    with pytest.raises(AnsibleFilterError, match="dl_firewall_fingerprint: "):
        dl_firewall_fingerprint(listing)


def test_other_sites_get_in_through_the_tunnel_only_and_this_site_directly():
    text = render([], sites={"site": ["192.168.1.0/24"], "tunnel": ["192.168.2.0/24"]},
                  tunnel_interfaces=["wgdl0", "ipsec0"])
    assert "elements = { 192.168.1.0/24 }" in text.split("set site_v4 {")[1].split("}")[0] + "}"
    assert "elements = { 192.168.2.0/24 }" in text.split("set tunnel_v4 {")[1].split("}")[0] + "}"
    rules = [line.strip() for line in text.split("chain input {")[1].splitlines()]
    assert 'iifname != { "wgdl0", "ipsec0" } ip saddr @site_v4 accept' in rules
    # No rule lets the tunnel's sources in other than through a tunnel or the kernel's IPsec.
    assert [r for r in rules if "@tunnel_v4" in r] == ['iifname { "wgdl0", "ipsec0" } ip saddr @tunnel_v4 accept',
                                                       'meta ipsec exists ip saddr @tunnel_v4 accept']
    assert "@tunnel_v4" not in render([], sites={"site": [], "tunnel": ["192.168.2.0/24"]}).split("chain input {")[1]
