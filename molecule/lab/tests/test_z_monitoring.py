"""Monitoring as an operator sees it: Prometheus's API on head (asked from the controller, an admin
address), alerts delivered to a real webhook receiver, promtool refusing a bad rule, the dashboards'
queries answered, and the ports closed to strangers.

Runs after test_train.py (file order): the training jobs of that module have left their metrics, and
the job it killed must have raised DlclusterTrainingJobFailed."""

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from dashboards import dashboard_files, panel_queries  # noqa: E402
from labtest import UDP_ECHO, lab_address, lab_host, prometheus_api, prometheus_query, run_playbook  # noqa: E402

testinfra_hosts = ["ansible://head"]

WEBHOOK_LOG = "/var/log/lab-webhook.jsonl"
ALERTS = {"DlclusterNodeDown", "DlclusterDataFilesystemFull", "DlclusterGpuXidErrors", "DlclusterGpuTemperatureHigh",
          "DlclusterTrainingJobFailed", "DlclusterClockUnsynchronised"}


def wait_for(what, check, timeout=90, every=2):
    deadline = time.time() + timeout
    while True:
        value = check()
        if value or time.time() > deadline:
            return value
        time.sleep(every)


def delivered(host, alertname, **labels):
    """Alerts the webhook receiver recorded with this name and labels (firing ones)."""
    with host.sudo():
        lines = host.run(f"cat {WEBHOOK_LOG}").stdout.splitlines()
    found = []
    for line in lines:
        for alert in json.loads(line)["alerts"]:
            if alert["status"] == "firing" and alert["labels"].get("alertname") == alertname and all(
                    alert["labels"].get(k) == v for k, v in labels.items()):
                found.append(alert)
    return found


def test_every_lab_host_node_exporter_is_up():
    def up():
        result = prometheus_query('up{job="node"}')
        return {r["metric"]["instance"]: r["value"][1] for r in result}
    states = wait_for("node targets", lambda: (lambda s: s if s == {"head": "1", "cpu1": "1", "cpu2": "1"} else None)(up()),
                      timeout=60)
    assert states == {"head": "1", "cpu1": "1", "cpu2": "1"}, up()


def test_node_exporters_serve_https_only_with_cluster_certificates(host):
    """Prometheus scrapes every node over https; from head (a monitoring host, let in by the firewall) a node's
    exporter answers https verified by the system trust store (the cluster CA), and refuses plain http."""
    targets = [t for t in prometheus_api("targets")["activeTargets"] if t["labels"]["job"] == "node"]
    assert {t["labels"]["instance"]: (t["scrapeUrl"].split(":")[0], t["health"]) for t in targets} == {
        name: ("https", "up") for name in ("head", "cpu1", "cpu2")}, targets
    for name in ("cpu1", "cpu2"):
        url = f"{lab_address(name)}:9100/metrics"
        secure = host.run(f"curl -sS -o /dev/null -w '%{{http_code}}' https://{url}")
        assert secure.stdout == "200", secure.stderr
        assert host.run(f"curl -s -o /dev/null -w '%{{http_code}}' http://{url}").stdout == "400"


def test_prometheus_and_alertmanager_serve_https_and_scrape_themselves():
    """Both answer https with cluster certificates (prometheus_api checks them against the cluster CA), scrape
    each other over https, and Prometheus delivers alerts to Alertmanager over https."""
    jobs = {r["metric"]["job"]: r["value"][1] for r in prometheus_query('up{job=~"prometheus|alertmanager"}')}
    assert jobs == {"prometheus": "1", "alertmanager": "1"}
    urls = {t["labels"]["job"]: t["scrapeUrl"] for t in prometheus_api("targets")["activeTargets"]}
    assert urls["prometheus"].startswith("https://") and urls["alertmanager"].startswith("https://"), urls
    alertmanagers = prometheus_api("alertmanagers")["activeAlertmanagers"]
    assert [a["url"].split(":")[0] for a in alertmanagers] == ["https"], alertmanagers


def test_config_and_rules_pass_promtool_and_are_loaded(host):
    with host.sudo():
        assert host.run("promtool check config /etc/prometheus/prometheus.yml").rc == 0
        assert host.run("promtool check rules /etc/prometheus/rules/dlcluster.rules.yml").rc == 0
    names = {r["metric"]["alertname"] for r in prometheus_query("ALERTS") }
    rules = json.loads(host.run(f"python3 -c \"import urllib.request; print(urllib.request.urlopen("
                                f"'https://{lab_address('head')}:9090/api/v1/rules').read().decode())\"").stdout)
    loaded = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"] if rule["type"] == "alerting"}
    assert ALERTS <= loaded, f"alert rules not loaded: {ALERTS - loaded} (firing now: {names})"


def test_textfile_directory_is_writable_by_jobs_only(host):
    textfile = host.file("/var/lib/prometheus/node-exporter")
    assert textfile.is_directory and textfile.user == "root" and textfile.group == "dlcluster-metrics"
    assert textfile.mode == 0o2775


def test_a_finished_job_is_in_prometheus():
    """test_train's DDP sample: exit code 0 on both workers and its accuracy, read back from Prometheus."""
    exits = prometheus_query('dlcluster_job_exit_code{job_id="pytorch-ddp-mnist"}')
    assert {(r["metric"]["instance"], r["value"][1]) for r in exits} == {("cpu1", "0"), ("cpu2", "0")}
    accuracy = prometheus_query('dlcluster_job_accuracy{job_id="pytorch-ddp-mnist"}')
    assert accuracy and all(float(r["value"][1]) >= 0.90 for r in accuracy), accuracy
    assert prometheus_query('dlcluster_job_running{job_id="pytorch-ddp-mnist"} == 1') == []


def test_the_killed_job_raised_the_job_failed_alert_at_the_webhook(host):
    """test_train killed a rank of lab-fault: its hosts' ranks ended non-zero, the alert reached the receiver."""
    found = wait_for("job alert", lambda: delivered(host, "DlclusterTrainingJobFailed", job_id="lab-fault"), timeout=60)
    assert found, "DlclusterTrainingJobFailed for lab-fault never reached the webhook receiver"
    assert {a["labels"]["instance"] for a in found} <= {"cpu1", "cpu2"}


def test_a_stopped_node_exporter_fires_node_down_at_the_webhook(host):
    cpu2 = lab_host("cpu2")
    with cpu2.sudo():
        assert cpu2.run("systemctl stop prometheus-node-exporter").rc == 0
    try:
        found = wait_for("node down", lambda: delivered(host, "DlclusterNodeDown", instance="cpu2"), timeout=90)
        assert found, "DlclusterNodeDown for cpu2 never reached the webhook receiver"
        assert not delivered(host, "DlclusterNodeDown", instance="cpu1")
        firing = {r["metric"]["instance"] for r in prometheus_query('ALERTS{alertname="DlclusterNodeDown",'
                                                                     'alertstate="firing"}')}
        assert firing == {"cpu2"}
    finally:
        with cpu2.sudo():
            cpu2.run("systemctl start prometheus-node-exporter")
    assert wait_for("back up", lambda: prometheus_query('up{job="node",instance="cpu2"} == 1'), timeout=30)


def test_a_rule_file_with_a_syntax_error_is_refused_before_reload(host, tmp_path):
    bad = tmp_path / "site.rules.yml"
    bad.write_text("groups:\n  - name: site\n    rules:\n      - alert: Broken\n        expr: up{job=\"node\" == 0\n")

    def state():
        with host.sudo():
            files = host.run("sha256sum /etc/prometheus/prometheus.yml /etc/prometheus/rules/*").stdout
        reload = prometheus_query("prometheus_config_last_reload_success_timestamp_seconds")[0]["value"][1]
        return files, reload
    before = state()
    run = run_playbook("playbooks/monitoring.yml", "--tags", "prometheus", "--limit", "head",
                       "-e", json.dumps({"prometheus_rule_files": [str(bad)]}))
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert "promtool check rules" in output and "site.rules.yml" in output, output[-3000:]
    assert state() == before, "a refused rule file changed the installed files or reloaded Prometheus"
    assert not host.file("/etc/prometheus/rules/site.rules.yml").exists
    assert prometheus_query('up{job="prometheus"} == 1')


@pytest.mark.parametrize("dashboard", [p.name for p in dashboard_files()])
def test_every_dashboard_query_is_answered(dashboard):
    """Every panel's query runs against the lab's Prometheus; node and job panels must return data (the lab has
    no GPU: GPU panels may be empty, but their queries must still be valid)."""
    path = next(p for p in dashboard_files() if p.name == dashboard)
    queries = panel_queries(json.loads(path.read_text()))
    assert queries, f"{dashboard} has no queries"
    empty = []
    for title, expr in queries:
        if not prometheus_query(expr) and "gpu" not in dashboard:
            empty.append(f"{title}: {expr}")
    assert not empty, f"panels of {dashboard} without data: {empty}"


SOURCE_PROBE = """
import socket, sys
source, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
kind = socket.SOCK_DGRAM if port == 51820 else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind); s.settimeout(3); s.bind((source, 0))
try:
    if kind == socket.SOCK_DGRAM:
        s.sendto(b"ping", (host, port)); print("reply" if s.recvfrom(64)[0] == b"ping" else "garbled")
    else:
        s.connect((host, port)); print("open")
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("timeout")
"""

def test_monitoring_ports_are_closed_to_strangers(host):
    """The outsider is a VPN client (dl_vpn_networks in the lab); a second address on it is a stranger:
    neither a cluster member, an admin nor a VPN client. The VPN's UDP port (open to all) shows the
    stranger's packets do reach head."""
    outsider, head = lab_host("outsider"), lab_address("head")
    stranger = ".".join(lab_address("outsider").split(".")[:3] + ["250"])
    with host.sudo():
        host.run(f'systemd-run --unit=probe-udp-echo python3 -c "{UDP_ECHO}"')
    with outsider.sudo():
        assert outsider.run(f"ip addr add {stranger}/32 dev eth0").rc == 0
    try:
        def from_address(source, port):
            return outsider.run(f"python3 -c '{SOURCE_PROBE}' {source} {head} {port}").stdout.strip()
        vpn = lab_address("outsider")
        seen = {port: from_address(stranger, port) for port in (51820, 9100, 9090, 9093)}
        assert seen == {51820: "reply", 9100: "timeout", 9090: "timeout", 9093: "timeout"}
        seen = {port: from_address(vpn, port) for port in (9100, 9090, 9093)}
        assert seen == {9100: "timeout", 9090: "open", 9093: "open"}
    finally:
        with outsider.sudo():
            outsider.run(f"ip addr del {stranger}/32 dev eth0")
        with host.sudo():
            host.run("systemctl stop probe-udp-echo")
