"""Unit tests of filter_plugins/dl_network.py."""

import pytest
from ansible.errors import AnsibleFilterError

from dl_network import FilterModule, dl_address_in_networks, dl_firewall_peers, dl_networks


def test_networks_split_and_normalise():
    assert dl_networks(["10.0.0.1/8", "192.168.1.5", "fd00::/64", "10.0.0.0/8"], "dl_admin_networks") == {
        "ipv4": ["10.0.0.0/8", "192.168.1.5/32"], "ipv6": ["fd00::/64"]}


@pytest.mark.parametrize("value", [None, "", []])
def test_networks_empty(value):
    assert dl_networks(value) == {"ipv4": [], "ipv6": []}


@pytest.mark.parametrize("value,why", [
    (["10.0.0.0/33"], "dl_admin_networks: '10.0.0.0/33' is not an address or CIDR"),
    (["office"], "dl_admin_networks: 'office' is not an address or CIDR"),
    ("10.0.0.0/8", "dl_admin_networks must be a list of CIDRs"),
])
def test_networks_bad_input_names_the_variable(value, why):
    with pytest.raises(AnsibleFilterError, match=why.replace("(", r"\(").replace("[", r"\[")):
        dl_networks(value, "dl_admin_networks")


def test_address_in_networks():
    assert dl_address_in_networks("172.18.0.1", ["172.18.0.0/16"])
    assert not dl_address_in_networks("10.1.1.1", ["172.18.0.0/16", "fd00::/8"])
    assert dl_address_in_networks("fd00::1", ["fd00::/8"])
    with pytest.raises(AnsibleFilterError, match="not an IP address"):
        dl_address_in_networks("controller", ["10.0.0.0/8"])


def test_firewall_peers_sorted_unique():
    members = [{"name": "b", "address": "10.0.0.10"}, {"name": "a", "address": "10.0.0.9"},
               {"name": "c", "address": "10.0.0.9"}, {"name": "e", "address": "fd00::2"}]
    assert dl_firewall_peers(members) == {"ipv4": ["10.0.0.9", "10.0.0.10"], "ipv6": ["fd00::2"]}


def test_firewall_peers_member_without_address():
    with pytest.raises(AnsibleFilterError, match="no address is known for host d"):
        dl_firewall_peers([{"name": "d", "address": ""}])


def test_firewall_peers_rejects_names():
    with pytest.raises(AnsibleFilterError, match="host a has address 'a.example.org'"):
        dl_firewall_peers([{"name": "a", "address": "a.example.org"}])


def test_filter_module():
    assert set(FilterModule().filters()) == {"dl_networks", "dl_address_in_networks", "dl_firewall_peers"}
