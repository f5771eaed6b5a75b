"""Unit tests of the pre-flight's role checks in filter_plugins/dl_inventory.py."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from jinja2.exceptions import UndefinedError

from dl_inventory import (
    dl_argument_spec_problems,
    dl_listen_problems,
    dl_preflight_roles,
    dl_role_arguments,
)

SPECS = {"fw": {"main": {"options": {
    "fw_port": {"type": "int", "default": "{{ dl_port | default(22) }}"},
    "fw_on": {"type": "bool", "default": True},
    "fw_mode": {"type": "str", "choices": ["a", "b"], "default": "a"},
    "fw_token": {"type": "str", "no_log": True, "default": ""},
    "fw_url": {"type": "str", "required": True},
    "fw_rules": {"type": "list", "elements": "dict", "default": [],
                 "options": {"port": {"type": "int", "required": True}}},
}}, "client": {"options": {"fw_port": {"type": "str"}, "fw_peer": {"type": "str", "required": True}}}}}


class Unrendered(dict):
    """A role's defaults where some reads fail, as a default that reads facts does before the role runs."""

    def __getitem__(self, key):
        if key == "fw_url":
            raise UndefinedError("'ansible_distribution' is undefined")
        return super().__getitem__(key)


DEFAULTS = Unrendered(fw_port=22, fw_on=True, fw_mode="a", fw_token="", fw_url="x", fw_rules=[])


def problems_of(host_vars, checks=({"name": "fw", "entry_point": "main"},)):
    merged = dl_role_arguments(list(checks), SPECS, {"fw": DEFAULTS}, host_vars)
    result = ArgumentSpecValidator(merged["spec"]).validate(merged["arguments"], validate_role_argument_spec=True)
    # As validate_argument_spec registers it: the spec only when something was refused; the context always.
    registered = {"argument_errors": result.error_messages,
                  "validate_args_context": {k: merged[k] for k in ("sources", "shown", "roles", "spec")}}
    if result.error_messages:
        registered["argument_spec_data"] = merged["spec"]
    return dl_argument_spec_problems(registered, "n1")


def test_defaults_pass_and_unrenderable_default_is_left_to_the_role():
    merged = dl_role_arguments([{"name": "fw", "entry_point": "main"}], SPECS, {"fw": DEFAULTS}, {})
    assert "fw_url" not in merged["arguments"] and "required" not in merged["spec"]["fw_url"]
    assert all("default" not in option for option in merged["spec"].values())
    assert problems_of({}) == []


def test_host_value_wins_and_is_named_with_the_fix():
    (problem,) = problems_of({"fw_on": "maybe"})
    assert problem.startswith("host n1: fw_on is 'maybe', but role fw needs true or false;")
    assert "set fw_on to true or false in the inventory" in problem and "roles/fw/README.md" in problem


def test_choices_and_nested_options():
    problems = problems_of({"fw_mode": "c", "fw_rules": [{"port": "x"}]})
    assert any(p.startswith("host n1: fw_mode is 'c', but role fw needs one of a, b") for p in problems)
    assert any("fw_rules is" in p and "a list of mappings with port" in p for p in problems), problems


@pytest.mark.parametrize("value", ["22,80", "", "[22]"])
def test_a_string_for_a_list_option_is_refused_not_split_at_commas(value):
    """validate_argument_spec alone would accept "22,80" as ["22", "80"]."""
    (problem,) = problems_of({"fw_rules": value, "fw_url": "x"})
    assert problem.startswith(f"host n1: fw_rules is {value!r}, but role fw needs a list of mappings with port")


def test_a_list_option_from_a_string_default_names_the_default():
    defaults = Unrendered(DEFAULTS, fw_rules="10.0.0.0/8")
    merged = dl_role_arguments([{"name": "fw"}], SPECS, {"fw": defaults}, {})
    result = ArgumentSpecValidator(merged["spec"]).validate(merged["arguments"], validate_role_argument_spec=True)
    problems = dl_argument_spec_problems({"argument_errors": result.error_messages,
                                          "argument_spec_data": merged["spec"], "validate_args_context": merged}, "n1")
    assert [p for p in problems if "fw_rules" in p] == [
        "host n1: fw_rules is '10.0.0.0/8' from role fw's default, but the role needs a list of mappings with port; "
        "fix the dl_ variable that default reads, or set fw_rules in the inventory (see roles/fw/README.md)"]


def test_no_log_value_is_hidden():
    merged = dl_role_arguments([{"name": "fw"}], SPECS, {"fw": DEFAULTS}, {"fw_token": "s3cret-token"})
    assert merged["shown"]["fw_token"] == "(hidden, no_log)" and "s3cret" not in str(merged["shown"])


def test_bad_value_from_a_default_names_the_default():
    defaults = Unrendered(DEFAULTS, fw_port="abc")
    merged = dl_role_arguments([{"name": "fw"}], SPECS, {"fw": defaults}, {})
    result = ArgumentSpecValidator(merged["spec"]).validate(merged["arguments"], validate_role_argument_spec=True)
    (problem,) = dl_argument_spec_problems({"argument_errors": result.error_messages,
                                            "argument_spec_data": merged["spec"],
                                            "validate_args_context": merged}, "n1")
    assert "fw_port is 'abc' from role fw's default" in problem and "fix the dl_ variable" in problem


def test_required_option_missing_is_named_with_its_entry_point():
    (problem,) = problems_of({}, [{"name": "fw", "entry_point": "client"}])
    assert problem.startswith("host n1: fw_peer is not set but role fw (entry point client) requires it")


def test_unknown_entry_point_is_refused():
    with pytest.raises(AnsibleFilterError, match="no entry point 'other'"):
        dl_role_arguments([{"name": "fw", "entry_point": "other"}], SPECS, {}, {})


def test_preflight_roles_entry_points_and_switch():
    roles = [{"name": "a"}, {"name": "b", "entry_points": ["main", "client"]}, {"name": "c", "enabled_by": "dl_c"}]
    assert dl_preflight_roles(roles, {}) == [{"name": "a", "entry_point": "main"},
                                             {"name": "b", "entry_point": "main"},
                                             {"name": "b", "entry_point": "client"},
                                             {"name": "c", "entry_point": "main"}]
    assert [r["name"] for r in dl_preflight_roles(roles, {"dl_c": "false"})] == ["a", "b", "b"]
    with pytest.raises(AnsibleFilterError, match=r"validate_inventory_roles\[0\]"):
        dl_preflight_roles([{"entry_points": []}], {})


def test_preflight_roles_of_a_group_only_on_its_members():
    roles = [{"name": "node_exporter"}, {"name": "prometheus", "group": "monitoring"}]
    assert [r["name"] for r in dl_preflight_roles(roles, {"group_names": ["dlcluster"]})] == ["node_exporter"]
    assert [r["name"] for r in dl_preflight_roles(roles, {"group_names": ["dlcluster", "monitoring"]})] == [
        "node_exporter", "prometheus"]


@pytest.mark.parametrize("address,allow,expected", [
    ("0.0.0.0", False, ['jupyter on n1: jupyter_bind_address is "0.0.0.0", which opens Jupyter on every interface']),
    ("", False, ["is empty: no cluster address is known"]),
    ("::", True, []),
    ("10.0.0.5", False, []),
])
def test_listen_problems(address, allow, expected):
    problems = dl_listen_problems("jupyter", "n1", address, allow)
    assert len(problems) == len(expected) and all(e in p for e, p in zip(expected, problems)), problems


def test_half_tls_is_refused():
    (problem,) = dl_listen_problems("tensorboard", "n1", "10.0.0.5", False, "/etc/c.pem", "")
    assert "set both tensorboard_tls_cert and tensorboard_tls_key" in problem
