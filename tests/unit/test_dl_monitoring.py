"""Unit tests of filter_plugins/dl_monitoring.py."""

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from dl_monitoring import FilterModule, dl_prometheus_rule_file, dl_prometheus_scrape_configs

MEMBERS = [{"name": "cpu2", "address": "10.0.0.12"}, {"name": "cpu1", "address": "10.0.0.11"}]


def test_one_target_per_member_named_as_in_the_inventory():
    configs = dl_prometheus_scrape_configs([{"job": "node", "port": 9100, "members": MEMBERS}])
    assert configs == [{
        "job_name": "node", "scheme": "http",
        "static_configs": [
            {"targets": ["10.0.0.11:9100"], "labels": {"instance": "cpu1"}},
            {"targets": ["10.0.0.12:9100"], "labels": {"instance": "cpu2"}},
        ]}]


def test_jobs_without_members_are_left_out_and_order_is_kept():
    configs = dl_prometheus_scrape_configs([
        {"job": "node", "port": "9100", "members": MEMBERS},
        {"job": "dcgm", "port": 9400, "members": []},
        {"job": "prometheus", "port": 9090, "members": [{"name": "head", "address": "fd00::10"}]},
    ], "https")
    assert [c["job_name"] for c in configs] == ["node", "prometheus"]
    assert configs[1]["static_configs"][0]["targets"] == ["[fd00::10]:9090"]
    assert {c["scheme"] for c in configs} == {"https"}


def test_a_jobs_own_scheme_overrides_the_default():
    configs = dl_prometheus_scrape_configs([
        {"job": "node", "port": 9100, "members": MEMBERS, "scheme": "https"},
        {"job": "dcgm", "port": 9400, "members": MEMBERS},
    ])
    assert [(c["job_name"], c["scheme"]) for c in configs] == [("node", "https"), ("dcgm", "http")]


def test_a_jobs_ca_file_checks_its_https_targets_only():
    configs = dl_prometheus_scrape_configs([
        {"job": "node", "port": 9100, "members": MEMBERS, "scheme": "https", "ca_file": "/etc/ssl/exporters.pem"},
        {"job": "prometheus", "port": 9090, "members": MEMBERS, "scheme": "https"},
        {"job": "dcgm", "port": 9400, "members": MEMBERS, "ca_file": "/etc/ssl/exporters.pem"},
        {"job": "alertmanager", "port": 9093, "members": MEMBERS, "scheme": "https", "ca_file": ""},
    ])
    assert {c["job_name"]: c.get("tls_config") for c in configs} == {
        "node": {"ca_file": "/etc/ssl/exporters.pem"}, "prometheus": None, "dcgm": None, "alertmanager": None}


def test_the_result_is_plain_yaml():
    text = yaml.safe_dump({"scrape_configs": dl_prometheus_scrape_configs(
        [{"job": "node", "port": 9100, "members": MEMBERS}])})
    assert "instance: cpu1" in text and "10.0.0.12:9100" in text


@pytest.mark.parametrize("jobs,scheme,message", [
    ([{"job": "node", "port": 9100, "members": [{"name": "cpu3", "address": ""}]}], "http",
     "host cpu3 of job node has no address; set dl_address"),
    ([{"job": "node", "port": 70000, "members": MEMBERS}], "http", "port 70000 is outside 1-65535"),
    ([{"job": "node", "port": "ninety", "members": MEMBERS}], "http", "'ninety' is not a port number"),
    ([{"job": "node", "port": True, "members": MEMBERS}], "http", "True is not a port number"),
    ([{"job": "node exporter", "port": 9100, "members": MEMBERS}], "http", "'node exporter' is invalid"),
    ([{"job": "node", "port": 9100, "members": MEMBERS}] * 2, "http", "'node' is invalid or repeated"),
    ([{"job": "node", "members": MEMBERS}], "http", "each job needs job, port and members"),
    ({"job": "node"}, "http", "expects a list of jobs"),
    ([], "ftp", "scheme must be http or https"),
    ([{"job": "node", "port": 9100, "members": MEMBERS, "scheme": "tcp"}], "http",
     "job node: scheme must be http or https, not 'tcp'"),
])
def test_bad_input_is_refused_with_the_reason(jobs, scheme, message):
    with pytest.raises(AnsibleFilterError, match=message.replace("(", r"\(")):
        dl_prometheus_scrape_configs(jobs, scheme)


@pytest.mark.parametrize("path,name", [
    ("files/prometheus/site.rules.yml", "site.rules.yml"),
    ("/srv/rules/gpu.yaml.j2", "gpu.yaml"),
])
def test_rule_files_are_named_as_their_template(path, name):
    assert dl_prometheus_rule_file(path) == {"src": path, "name": name}


@pytest.mark.parametrize("path,message", [
    ("rules/site.rules", "must end in .yml or .yaml"),
    ("rules/dlcluster.rules.yml", "would replace dlcluster's own dlcluster.rules.yml"),
    ("", "is not a file path"),
    (None, "is not a file path"),
])
def test_bad_rule_files_are_refused(path, message):
    with pytest.raises(AnsibleFilterError, match=message):
        dl_prometheus_rule_file(path)


def test_registered():
    assert FilterModule().filters() == {"dl_prometheus_scrape_configs": dl_prometheus_scrape_configs,
                                        "dl_prometheus_rule_file": dl_prometheus_rule_file}
