"""dlcluster's Grafana dashboards as data for the tests: which PromQL query each panel runs.

Pure functions over the dashboard JSON in roles/grafana/files/dashboards/. The
unit tests (tests/unit/test_dashboards.py) check the files with them; the lab
tests run every query against the lab's Prometheus.

    for path in dashboard_files():
        for title, expr in panel_queries(json.loads(path.read_text())):
            ...  # expr is plain PromQL: no Grafana variables left

Grafana's variables are replaced so that a query runs outside Grafana: the
interval variables ($__rate_interval, $__interval, $__range) by ``1m``, and the
dashboard's own template variables ($instance, ${job_id}, [[host]]) by the
match-all regex ``.*`` (the dashboards use them only as ``=~"$var"``).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "roles" / "grafana" / "files" / "dashboards"
DATASOURCE_UID = "dlcluster-prometheus"
INTERVAL = "1m"
MATCH_ALL = ".*"

# Grafana's built-in variables a query may hold, and what stands for them outside Grafana.
BUILTINS = {
    "__rate_interval": INTERVAL,
    "__interval": INTERVAL,
    "__range": INTERVAL,
    "__interval_ms": "60000",
    "__range_ms": "60000",
    "__range_s": "60",
}
# $name, ${name}, ${name:format} and the deprecated [[name]], [[name:format]].
VARIABLE = re.compile(r"\$\{(?P<braced>[\w.]+)(?::[^}]*)?\}|\$(?P<plain>\w+)|\[\[(?P<old>\w+)(?::[^\]]*)?\]\]")


def dashboard_files() -> list[Path]:
    """The dashboard JSON files the grafana role provisions, sorted by name."""
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def panels(dashboard: dict) -> list[dict]:
    """Every panel of a dashboard, rows' nested panels included, rows themselves left out.

    A collapsed row holds its panels in its own ``panels`` list; dashboards of
    the old schema keep them under ``rows``.
    """
    if not isinstance(dashboard, dict):
        raise TypeError(f"panels: expects a dashboard dict, got {type(dashboard).__name__}")
    found: list[dict] = []

    def walk(items) -> None:
        for item in items or []:
            if item.get("type") != "row":
                found.append(item)
            walk(item.get("panels"))

    walk(dashboard.get("panels"))
    for row in dashboard.get("rows") or []:
        walk(row.get("panels"))
    return found


def substitute(expr: str, names=None) -> str:
    """A panel's query with Grafana's variables replaced (see the module docstring).

    ``names``: the dashboard's own variables; as in Grafana, any other ``$word``
    (a regex group such as label_replace's "$1") stays as it is. Without
    ``names``, every ``$word`` that does not start with a digit is taken for a
    variable. An unknown built-in (``$__something`` not in BUILTINS) is an
    error rather than a guess.
    """
    def replace(match: re.Match) -> str:
        name = match.group("braced") or match.group("plain") or match.group("old")
        if name.startswith("__"):
            if name not in BUILTINS:
                raise ValueError(f"substitute: unknown Grafana built-in variable ${name} in {expr!r}")
            return BUILTINS[name]
        if (names is None and not name[0].isdigit()) or (names is not None and name in names):
            return MATCH_ALL
        return match.group(0)

    return VARIABLE.sub(replace, expr)


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, query) for every visible target of every panel, variables substituted."""
    names = {variable.get("name") for variable in (dashboard.get("templating") or {}).get("list") or []}
    queries = []
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            expr = (target.get("expr") or "").strip()
            if expr and not target.get("hide"):
                queries.append((str(panel.get("title", "")), substitute(expr, names)))
    return queries
