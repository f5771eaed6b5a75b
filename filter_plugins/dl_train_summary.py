"""Training filters of dlcluster: one summary of a job from every host's result (playbooks/train.yml).

Pure functions, unit-tested in tests/unit/test_dl_train.py.
"""

from __future__ import annotations

import re

_FAILED = ("failed", "lost", "timeout")
_ROOT_CAUSE_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\)", re.MULTILINE)
_ROOT_CAUSE_SIGNAL = re.compile(r"^\s*exitcode\s*:\s*-(\d+)", re.MULTILINE)


def _host_ranks(plan, host) -> list[int]:
    part = plan["hosts"].get(host, {})
    first, nproc = int(part.get("first_rank", 0)), int(part.get("nproc", 1))
    return list(range(first, first + nproc))


def _failed_ranks(plan, result) -> list[int]:
    """Ranks a failed host names in torchrun's error report, else all of the host's ranks."""
    named = sorted({int(match.group(1)) for match in _ROOT_CAUSE_RANK.finditer(result.get("log_tail", ""))})
    return named or _host_ranks(plan, result["host"])


def _number(value, digits):
    return None if value is None else round(float(value), digits)


def dl_job_summary(plan, results, abort="", started_unix=None, results_dir="") -> dict:
    """The outcome of a job from every host's result.

    `results`: [{host, outcome (succeeded|failed|lost|timeout|stopped), exit, metrics: [per-rank
    metrics JSON], log_tail}]; `abort`: the controller's .abort flag ("<host> <outcome> <exit>"),
    naming the first host that failed. Returns {ok, message, table, ranks, failures, first_failure,
    test_accuracy, wall_seconds, samples_per_second, launch_to_first_step_seconds}.
    """
    by_host = {result["host"]: result for result in results}
    missing = [host for host in plan["hosts"] if host not in by_host]
    ranks, failures = [], []
    for host in plan["hosts"]:
        result = by_host.get(host, {"host": host, "outcome": "lost", "exit": "", "metrics": [], "log_tail": ""})
        if result["outcome"] in _FAILED:
            killed = _ROOT_CAUSE_SIGNAL.search(result.get("log_tail", ""))
            failures.append({"host": host, "outcome": result["outcome"], "exit": result.get("exit", ""),
                             "ranks": _failed_ranks(plan, result), "signal": int(killed.group(1)) if killed else None})
        for metrics in result.get("metrics", []):
            ranks.append({"host": host, "rank": metrics.get("rank"), "role": metrics.get("role", plan["hosts"][host].get("role")),
                          "outcome": result["outcome"], "exit": result.get("exit", ""),
                          "final_loss": _number(metrics.get("final_loss"), 4),
                          "test_accuracy": _number(metrics.get("test_accuracy"), 4),
                          "wall_seconds": _number(metrics.get("wall_seconds"), 1),
                          "samples_per_second": _number(metrics.get("samples_per_second"), 1),
                          "first_step_unix": metrics.get("first_step_unix")})
    ranks.sort(key=lambda row: (row["rank"] is None, row["rank"] if row["rank"] is not None else 0))
    # The root cause: a rank killed by a signal (its peers then fail too), else the host that
    # raised the abort flag first.
    first_host = (abort or "").split(" ")[0]
    first = next((f for f in failures if f["signal"]), None) or \
        next((f for f in failures if f["host"] == first_host), failures[0] if failures else None)
    trained = [row for row in ranks if row["test_accuracy"] is not None]
    accuracy = min((row["test_accuracy"] for row in trained), default=None)
    throughput = round(sum(row["samples_per_second"] or 0 for row in trained), 1) or None
    wall = max((row["wall_seconds"] or 0 for row in trained), default=None)
    steps = [row["first_step_unix"] for row in ranks if row.get("first_step_unix")]
    overhead = round(max(steps) - float(started_unix), 1) if steps and started_unix else None
    ok = not failures and not missing and bool(trained)
    where = f"; logs and metrics: {results_dir}" if results_dir else ""
    if ok:
        message = (f"Job {plan['job_id']}: {len(ranks)} rank(s) on {len(plan['hosts'])} host(s) finished; "
                   f"test accuracy {accuracy:.4f}, wall {wall:.1f} s, {throughput:.1f} samples/s in all{where}")
    elif first:
        message = (f"Job {plan['job_id']} failed: host {first['host']} rank "
                   f"{', '.join(str(rank) for rank in first['ranks'])} {first['outcome']}"
                   f"{(' (exit ' + str(first['exit']) + ')') if first['exit'] not in ('', None) else ''}"
                   f"{(' - killed by signal ' + str(first['signal'])) if first['signal'] else ''}; "
                   f"every other rank was stopped{where}")
    else:
        message = (f"Job {plan['job_id']} produced no metrics"
                   f"{(' from ' + ', '.join(missing)) if missing else ''}: see the logs{where}")
    lines = ["| rank | host | role | outcome | final loss | test accuracy | wall s | samples/s |",
             "|---|---|---|---|---|---|---|---|"]
    for row in ranks:
        lines.append("| {rank} | {host} | {role} | {outcome} | {final_loss} | {test_accuracy} | {wall_seconds} | "
                     "{samples_per_second} |".format(**{k: ("" if v is None else v) for k, v in row.items()}))
    for failure in failures:
        if not any(row["host"] == failure["host"] for row in ranks):
            lines.append(f"| {', '.join(map(str, failure['ranks']))} | {failure['host']} | "
                         f"{plan['hosts'][failure['host']].get('role', '')} | {failure['outcome']} | | | | |")
    return {"ok": ok, "message": message, "table": "\n".join(lines) + "\n", "ranks": ranks, "failures": failures,
            "first_failure": first, "test_accuracy": accuracy, "wall_seconds": wall,
            "samples_per_second": throughput, "launch_to_first_step_seconds": overhead}


class FilterModule:
    """dlcluster training filters: the job's summary."""

    def filters(self):
        return {"dl_job_summary": dl_job_summary}
