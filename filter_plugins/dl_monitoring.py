"""Monitoring filters of dlcluster: Prometheus's scrape configuration from the inventory.

Pure functions, used by roles/prometheus (vars/main.yml) and unit-tested in
tests/unit/test_dl_monitoring.py. The members come from ``dl_cluster_hosts``
(``[{name, address}]``), so a target's address is the one the firewall and
every other role use for the host.

    jobs = [{"job": "node", "port": 9100, "members": [{"name": "cpu1", "address": "10.0.0.11"}]}]
    jobs | dl_prometheus_scrape_configs("http")
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

_JOB_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")


def _port(value, where: str) -> int:
    if isinstance(value, bool):
        raise AnsibleFilterError(f"dl_prometheus_scrape_configs: {where} port {value!r} is not a port number")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"dl_prometheus_scrape_configs: {where} port {value!r} is not a port number")
    if not 1 <= port <= 65535:
        raise AnsibleFilterError(f"dl_prometheus_scrape_configs: {where} port {port} is outside 1-65535")
    return port


def _target(address: str, port: int) -> str:
    """host:port, with IPv6 addresses in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def dl_prometheus_scrape_configs(jobs, scheme="http") -> list[dict]:
    """Prometheus ``scrape_configs`` for the given jobs, one static target per member.

    A job's own ``scheme`` key overrides ``scheme`` (e.g. https for the node exporters only); its ``ca_file``
    (non-empty, with https) becomes the job's ``tls_config``.

    Each target carries ``instance: <inventory name>``, so alerts and
    dashboards name hosts as the inventory does rather than by address. Jobs
    without members are left out; a member without an address, a bad port or
    a job name Prometheus would refuse is an error naming it.
    """
    if not isinstance(jobs, list):
        raise AnsibleFilterError(f"dl_prometheus_scrape_configs: expects a list of jobs, got {type(jobs).__name__}")
    if scheme not in ("http", "https"):
        raise AnsibleFilterError(f"dl_prometheus_scrape_configs: scheme must be http or https, not {scheme!r}")
    configs, seen = [], set()
    for job in jobs:
        if not isinstance(job, dict) or not {"job", "port", "members"} <= set(job):
            raise AnsibleFilterError(f"dl_prometheus_scrape_configs: each job needs job, port and members, got {job!r}")
        name = str(job["job"])
        if not _JOB_RE.match(name) or name in seen:
            raise AnsibleFilterError(f"dl_prometheus_scrape_configs: job name {name!r} is invalid or repeated")
        seen.add(name)
        port = _port(job["port"], f"job {name}:")
        members = sorted(job["members"] or [], key=lambda member: str(member.get("name", "")))
        static = []
        for member in members:
            host, address = str(member.get("name", "")), str(member.get("address") or "")
            if not address:
                raise AnsibleFilterError(
                    f"dl_prometheus_scrape_configs: host {host} of job {name} has no address; "
                    f"set dl_address (or an IP ansible_host) for {host}")
            static.append({"targets": [_target(address, port)], "labels": {"instance": host}})
        job_scheme = str(job.get("scheme", scheme))
        if job_scheme not in ("http", "https"):
            raise AnsibleFilterError(f"dl_prometheus_scrape_configs: job {name}: scheme must be http or https, "
                                     f"not {job_scheme!r}")
        if static:
            config = {"job_name": name, "scheme": job_scheme, "static_configs": static}
            if job_scheme == "https" and job.get("ca_file"):
                config["tls_config"] = {"ca_file": str(job["ca_file"])}
            configs.append(config)
    return configs


def dl_prometheus_rule_file(path) -> dict:
    """``{src, name}`` of an inventory rule file: a template on the controller,
    installed as its base name without ``.j2``. The name must end in .yml or
    .yaml and must not replace dlcluster's own rule file or its tests."""
    if not isinstance(path, str) or not path.strip():
        raise AnsibleFilterError(f"prometheus_rule_files: {path!r} is not a file path")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    name = name[:-3] if name.endswith(".j2") else name
    if not name.endswith((".yml", ".yaml")):
        raise AnsibleFilterError(f"prometheus_rule_files: {path} must end in .yml or .yaml (optionally .j2)")
    if name.startswith("dlcluster.rules."):
        raise AnsibleFilterError(f"prometheus_rule_files: {path} would replace dlcluster's own {name}; rename it")
    return {"src": path, "name": name}


class FilterModule:
    """dlcluster monitoring filters."""

    def filters(self):
        return {"dl_prometheus_scrape_configs": dl_prometheus_scrape_configs,
                "dl_prometheus_rule_file": dl_prometheus_rule_file}
