"""Unit tests of filter_plugins/dl_inventory.py."""

import base64

import pytest
from ansible.errors import AnsibleFilterError
from conftest import FIXTURES

from dl_inventory import (
    FilterModule,
    dl_cluster_hosts,
    dl_host_address,
    dl_inventory_problems,
    dl_ssh_pubkey_problem,
)

ED25519 = (FIXTURES / "ssh" / "ed25519.pub").read_text().strip()
RSA2048 = (FIXTURES / "ssh" / "rsa2048.pub").read_text().strip()
RSA3072 = (FIXTURES / "ssh" / "rsa3072.pub").read_text().strip()


def good_host(address, **extra):
    host = {"ansible_host": address, "dl_ops_user": "ubuntu",
            "dl_ops_authorized_keys": [ED25519], "dl_edition": "auto"}
    host.update(extra)
    return host


class TestHostAddress:
    def test_dl_address_wins(self):
        assert dl_host_address({"dl_address": "10.0.0.9", "ansible_host": "10.0.0.1"}) == "10.0.0.9"

    def test_ip_ansible_host(self):
        assert dl_host_address({"ansible_host": "192.168.1.4"}) == "192.168.1.4"

    def test_hostname_falls_back_to_facts(self):
        hv = {"ansible_host": "node1.example.org", "ansible_default_ipv4": {"address": "10.1.1.1"}}
        assert dl_host_address(hv) == "10.1.1.1"

    def test_unknown_is_empty(self):
        assert dl_host_address({"ansible_host": "node1.example.org"}) == ""

    def test_rejects_non_mapping(self):
        with pytest.raises(AnsibleFilterError, match="dl_host_address"):
            dl_host_address(["not", "a", "dict"])


def test_cluster_hosts_keeps_inventory_order():
    hostvars = {"b": {"ansible_host": "10.0.0.2"}, "a": {"ansible_host": "10.0.0.1"}}
    assert dl_cluster_hosts(hostvars, ["b", "a"]) == [
        {"name": "b", "address": "10.0.0.2"}, {"name": "a", "address": "10.0.0.1"}]


def test_cluster_hosts_rejects_string_names():
    with pytest.raises(AnsibleFilterError, match="names must be a list"):
        dl_cluster_hosts({}, "head")


class TestPubkey:
    @pytest.mark.parametrize("key", [ED25519, RSA3072, "from=\"10.0.0.0/8\" " + ED25519])
    def test_good_keys(self, key):
        assert dl_ssh_pubkey_problem(key) == ""

    def test_short_rsa(self):
        assert "2048 bits" in dl_ssh_pubkey_problem(RSA2048)

    def test_dsa_refused(self):
        blob = base64.b64encode(b"\x00\x00\x00\x07ssh-dss" + b"\x00" * 8).decode()
        assert "ssh-dss" in dl_ssh_pubkey_problem(f"ssh-dss {blob}")

    def test_type_mismatch(self):
        body = ED25519.split()[1]
        assert "body is a 'ssh-ed25519'" in dl_ssh_pubkey_problem(f"ssh-rsa {body}")

    @pytest.mark.parametrize("key,why", [
        ("", "empty"),
        (None, "empty"),
        ("ssh-ed25519", "not an OpenSSH public key"),
        ("ssh-ed25519 !!!notbase64", "not an OpenSSH public key"),
        ("ssh-ed25519 AAAA", "not valid base64 key data"),
        (ED25519 + "\n" + ED25519, "more than one line"),
    ])
    def test_malformed(self, key, why):
        assert why in dl_ssh_pubkey_problem(key)


class TestInventoryProblems:
    def test_clean_inventory(self):
        hostvars = {"head": good_host("10.0.0.1"), "cpu1": good_host("10.0.0.2")}
        assert dl_inventory_problems(hostvars, ["head", "cpu1"], ["dl_ops_user"]) == []

    def test_empty_group(self):
        assert "group dlcluster is empty" in dl_inventory_problems({}, [])[0]

    @pytest.mark.parametrize("settings", [{"dl_rollout_probe_first": "false"}, {"dl_rollout_probe_first": False},
                                          {"dl_rollout_batches": [1, "10%", "100%"]}, {"dl_rollout_batches": [2, 5]},
                                          {"dl_rollout_batches": ["100%"]}])
    def test_rollout_switches_accepted(self, settings):
        assert dl_inventory_problems({"a": good_host("10.0.0.1", **settings)}, ["a"]) == []

    @pytest.mark.parametrize("settings,expected", [
        ({"dl_rollout_probe_first": "maybe"}, "host a: dl_rollout_probe_first is 'maybe'; set it to true"),
        ({"dl_rollout_batches": "10%"}, "host a: dl_rollout_batches is '10%'; give a list of batch sizes"),
        ({"dl_rollout_batches": []}, "host a: dl_rollout_batches is []; give a list"),
        ({"dl_rollout_batches": [1, "150%"]}, "host a: dl_rollout_batches is [1, '150%']"),
        ({"dl_rollout_batches": [0]}, "host a: dl_rollout_batches is [0]"),
        ({"dl_rollout_batches": [True]}, "host a: dl_rollout_batches is [True]"),
    ])
    def test_rollout_switches_refused_naming_host_variable_and_fix(self, settings, expected):
        (problem,) = dl_inventory_problems({"a": good_host("10.0.0.1", **settings)}, ["a"])
        assert problem.startswith(expected), problem

    def test_unknown_edition_names_host_and_variable(self):
        hostvars = {"gpu1": good_host("10.0.0.1", dl_edition="cuda")}
        (problem,) = dl_inventory_problems(hostvars, ["gpu1"])
        assert problem.startswith("host gpu1: dl_edition is 'cuda'")
        assert "nvidia" in problem

    def test_malformed_key_names_index(self):
        hostvars = {"head": good_host("10.0.0.1", dl_ops_authorized_keys=[ED25519, "ssh-rsa xyz"])}
        (problem,) = dl_inventory_problems(hostvars, ["head"])
        assert "host head: dl_ops_authorized_keys[1]" in problem

    def test_duplicate_address(self):
        hostvars = {"a": good_host("10.0.0.1"), "b": good_host("10.0.0.1")}
        (problem,) = dl_inventory_problems(hostvars, ["a", "b"])
        assert "host b: address 10.0.0.1 is also used by host a" in problem

    def test_missing_required_variable(self):
        hostvars = {"a": good_host("10.0.0.1", dl_ops_user="")}
        (problem,) = dl_inventory_problems(hostvars, ["a"], ["dl_ops_user"])
        assert "host a: required variable dl_ops_user is not set" in problem

    def test_bad_user_name(self):
        hostvars = {"a": good_host("10.0.0.1", dl_ops_user="Root User")}
        assert "not a valid user name" in dl_inventory_problems(hostvars, ["a"])[0]

    def test_missing_ca_file(self, tmp_path):
        hostvars = {"a": good_host("10.0.0.1", dl_extra_ca_certs=[str(tmp_path / "nope.crt")])}
        assert "is not a file on the controller" in dl_inventory_problems(hostvars, ["a"])[0]

    def test_ca_file_without_certificate(self, tmp_path):
        bad = tmp_path / "bad.crt"
        bad.write_text("hello")
        hostvars = {"a": good_host("10.0.0.1", dl_extra_ca_certs=[str(bad)])}
        assert "holds no PEM certificate" in dl_inventory_problems(hostvars, ["a"])[0]

    def test_admin_network_not_a_cidr(self):
        hostvars = {"a": good_host("10.0.0.1", dl_admin_networks=["10.0.0.0/8", "10.1.0.0/33"])}
        (problem,) = dl_inventory_problems(hostvars, ["a"])
        assert problem.startswith("host a: dl_admin_networks[1] '10.1.0.0/33' is not an address or CIDR")

    def test_driver_branch_must_be_a_number(self):
        hostvars = {"gpu1": good_host("10.0.0.1", dl_nvidia_driver_branch="latest")}
        (problem,) = dl_inventory_problems(hostvars, ["gpu1"])
        assert problem.startswith("host gpu1: dl_nvidia_driver_branch is 'latest'")
        assert dl_inventory_problems({"g": good_host("10.0.0.1", dl_nvidia_driver_branch=570)}, ["g"]) == []

    def test_vpn_networks_must_be_a_list(self):
        hostvars = {"a": good_host("10.0.0.1", dl_vpn_networks="10.8.0.0/24")}
        assert "dl_vpn_networks must be a list" in dl_inventory_problems(hostvars, ["a"])[0]

    def test_duplicate_host_name_address(self):
        hostvars = {"a": good_host("n1.example.org"), "b": good_host("n1.example.org")}
        assert "address n1.example.org is also used by host a" in dl_inventory_problems(
            hostvars, ["a", "b"])[0]

    def test_dl_address_distinguishes_hosts_behind_one_jump_address(self):
        hostvars = {"a": good_host("10.0.0.1", dl_address="192.168.1.2"),
                    "b": good_host("10.0.0.1", dl_address="192.168.1.3")}
        assert dl_inventory_problems(hostvars, ["a", "b"]) == []


def test_filter_module_exports():
    assert set(FilterModule().filters()) == {
        "dl_host_address", "dl_cluster_hosts", "dl_ssh_pubkey_problem", "dl_inventory_problems",
        "dl_user_problems", "dl_listen_problems", "dl_preflight_roles", "dl_role_arguments",
        "dl_argument_spec_problems"}
