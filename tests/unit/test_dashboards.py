"""The Grafana dashboards of roles/grafana: they parse, every panel queries dlcluster's Prometheus, every query is
well-formed PromQL over metrics dlcluster collects.

The queries are checked by a light syntax check here (balanced brackets, known metric names, template variables
only in regex matchers). The lab tests (molecule/lab/tests/test_z_monitoring.py) run every query against the lab's
real Prometheus, which parses them.
"""

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "molecule" / "shared"))

from dashboards import (  # noqa: E402
    DATASOURCE_UID, dashboard_files, panel_queries, panels, substitute)

RULES_TEMPLATE = ROOT / "roles" / "prometheus" / "templates" / "dlcluster.rules.yml.j2"
EXPECTED = {"dlcluster-gpus.json", "dlcluster-jobs.json", "dlcluster-nodes.json"}
METRIC_PREFIXES = ("up", "node_", "dlcluster_", "dlcluster:", "DCGM_")
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
            "inf", "nan"}
FILES = dashboard_files()


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _all_queries() -> list[tuple[str, str, str]]:
    return [(path.name, title, expr) for path in FILES for title, expr in panel_queries(_load(path))]


def _strip_strings(expr: str) -> str:
    """The query with its string literals emptied, so brackets and names inside them do not count."""
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)


def syntax_problems(expr: str) -> list[str]:
    """Why a (substituted) query is not plausible PromQL over dlcluster's metrics, or [] when it is."""
    problems = []
    text = _strip_strings(expr)
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                return [f"unbalanced {char!r}"]
    if stack:
        return [f"unclosed {stack[-1]!r}"]
    if re.search(r"\$[A-Za-z_{]|\[\[", expr):
        problems.append("a Grafana variable is left")
    bare = re.sub(r"\{[^{}]*\}", "", text)                      # label matchers
    bare = re.sub(r"\[[^\[\]]*\]", "", bare)                    # range selectors
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", bare)
    bare = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", bare)  # numbers
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        name = match.group(0)
        if name.lower() in KEYWORDS or re.match(r"\s*\(", bare[match.end():]):
            continue  # a keyword, or a function or aggregation
        if not name.startswith(METRIC_PREFIXES):
            problems.append(f"{name}: not a metric dlcluster collects ({', '.join(METRIC_PREFIXES)})")
    return problems


def test_the_three_dashboards_are_there():
    assert {path.name for path in FILES} == EXPECTED


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_dashboard_parses_and_names_itself_after_its_file(path):
    dashboard = _load(path)
    assert dashboard["uid"] == path.stem
    assert dashboard["title"].startswith("dlcluster / ")
    assert dashboard.get("id") is None, "a provisioned dashboard carries no database id"
    rows = [panel for panel in dashboard["panels"] if panel.get("type") == "row"]
    ids = [panel["id"] for panel in rows + panels(dashboard)]
    assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
    assert len(panels(dashboard)) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_panel_has_a_query(path):
    for panel in panels(_load(path)):
        exprs = [t.get("expr", "").strip() for t in panel.get("targets") or []]
        assert exprs and all(exprs), f"{path.name}: panel {panel.get('title')!r} has a target without a query"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_datasource_is_dlclusters_prometheus(path):
    def datasources(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource":
                    yield value
                else:
                    yield from datasources(value)
        elif isinstance(node, list):
            for item in node:
                yield from datasources(item)

    found = list(datasources(_load(path)))
    assert found
    for datasource in found:
        assert datasource == {"type": "prometheus", "uid": DATASOURCE_UID}, f"{path.name}: {datasource!r}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_template_variables_are_match_all_regexes(path):
    """A variable stands for ".*" in the lab tests, so it may appear only as a regex matcher: label=~"$var"."""
    dashboard = _load(path)
    names = {variable["name"] for variable in dashboard["templating"]["list"]}
    for variable in dashboard["templating"]["list"]:
        assert variable["includeAll"] and variable["allValue"] == ".*", variable["name"]
    for panel in panels(dashboard):
        for target in panel["targets"]:
            for match in re.finditer(r"\$\{?(\w+)", target["expr"]):
                if match.group(1).startswith("__"):
                    continue
                assert match.group(1) in names, f"{panel['title']}: ${match.group(1)} is not a dashboard variable"
                before = target["expr"][:match.start()]
                assert before.endswith('=~"'), f"{panel['title']}: ${match.group(1)} outside a =~ matcher"


@pytest.mark.parametrize("dashboard, title, expr", _all_queries(), ids=lambda v: str(v)[:40])
def test_every_query_is_well_formed(dashboard, title, expr):
    assert syntax_problems(expr) == [], f"{dashboard}: {title}: {expr}"


def test_gpu_panels_read_the_recorded_series():
    """The GPU dashboard reads the vendor-neutral dlcluster:gpu_* series, and the rule file records each of them."""
    rules = RULES_TEMPLATE.read_text()
    recorded = set(re.findall(r"- record: (dlcluster:\w+)", rules))
    used = {name for _title, expr in panel_queries(_load(ROOT / "roles/grafana/files/dashboards/dlcluster-gpus.json"))
            for name in re.findall(r"dlcluster:\w+", expr)}
    assert {"dlcluster:gpu_utilization_percent", "dlcluster:gpu_memory_used_bytes", "dlcluster:gpu_power_watts",
            "dlcluster:gpu_temperature_celsius", "dlcluster:gpu_sm_clock_hertz",
            "dlcluster:gpu_energy_joules_total"} <= used
    assert used <= recorded, f"not recorded by {RULES_TEMPLATE.name}: {sorted(used - recorded)}"


def test_job_panels_show_progress_and_results():
    queries = dict(panel_queries(_load(ROOT / "roles/grafana/files/dashboards/dlcluster-jobs.json")))
    assert "rate(dlcluster_job_steps_total{" in queries["Training steps per second"]
    assert [name for name in ("dlcluster_job_epoch", "dlcluster_job_loss", "dlcluster_job_samples_per_second",
                              "dlcluster_job_exit_code", "dlcluster_job_running")
            if not any(name in expr for expr in queries.values())] == []


# --- the helpers themselves --------------------------------------------------------------------------------------

def test_panels_walks_collapsed_rows_and_the_old_rows_schema():
    dashboard = {
        "panels": [
            {"type": "row", "title": "open", "panels": []},
            {"type": "stat", "title": "a", "targets": [{"expr": "up"}]},
            {"type": "row", "title": "collapsed", "collapsed": True,
             "panels": [{"type": "timeseries", "title": "b", "targets": [{"expr": "node_load1"}]}]},
        ],
        "rows": [{"panels": [{"type": "graph", "title": "c", "targets": [{"expr": "x", "hide": True}, {"expr": "y"}]}]}],
    }
    assert [panel["title"] for panel in panels(dashboard)] == ["a", "b", "c"]
    assert panel_queries(dashboard) == [("a", "up"), ("b", "node_load1"), ("c", "y")]


def test_substitute_replaces_intervals_and_variables():
    assert substitute('rate(x{instance=~"$instance", job_id=~"${job_id}", h=~"[[host]]"}[$__rate_interval])') \
        == 'rate(x{instance=~".*", job_id=~".*", h=~".*"}[1m])'
    assert substitute("increase(x[$__range]) / ${__interval_ms}") == "increase(x[1m]) / 60000"
    assert substitute('x{a=~"${a:regex}"}') == 'x{a=~".*"}'
    # As in Grafana, only the dashboard's variables are replaced: label_replace's "$1" stays.
    assert substitute('label_replace(x{a=~"$a"}, "b", "$1", "c", "(.*)")', {"a"}) \
        == 'label_replace(x{a=~".*"}, "b", "$1", "c", "(.*)")'
    assert substitute('x{a=~"$a", b=~"$b"}', {"a"}) == 'x{a=~".*", b=~"$b"}'
    with pytest.raises(ValueError, match="__user"):
        substitute('x{user="${__user.login}"}')


def test_panels_refuses_what_is_not_a_dashboard():
    with pytest.raises(TypeError):
        panels([])


@pytest.mark.parametrize("expr, problem", [
    ("rate(node_cpu_seconds_total[1m]", "unclosed"),
    ("sum(up})", "unbalanced"),
    ("process_cpu_seconds_total", "process_cpu_seconds_total"),
    ('up{instance=~"$instance"}', "variable"),
    ('up{instance=~"${instance}"}', "variable"),
])
def test_the_syntax_check_finds_broken_queries(expr, problem):
    assert any(problem in text for text in syntax_problems(expr)), syntax_problems(expr)


def test_the_syntax_check_accepts_promql_it_should():
    assert syntax_problems('sum by (job_id, rank) (rate(dlcluster_job_steps_total{job="node"}[1m])) or vector(0)') == []
    assert syntax_problems('label_replace(DCGM_FI_DEV_GPU_UTIL, "uuid", "$1", "UUID", "(.*)")') == []
    assert syntax_problems("dlcluster:gpu_power_watts > bool 300 and on (instance) up == 1") == []
