"""Python environment filters of dlcluster: what each virtualenv installs.

Pure functions, unit-tested in tests/unit/test_dl_envs.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError

_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
_ENV_KEYS = {"name", "frameworks", "packages", "auto_activate", "state"}
# Frameworks Keras 3 can run on.
KERAS_BACKENDS = ("tensorflow", "torch", "jax")
_BACKEND_OF = {"tensorflow": "tensorflow", "pytorch": "torch", "jax": "jax"}


def dl_python_envs(envs, edition, framework_packages, scientific_packages, variant_packages=None,
                   unsupported=None, variable="python_envs_envs") -> list[dict]:
    """Normalise the environment list and compute what each one installs.

    Returns [{name, frameworks, requirements, imports, auto_activate, keras_backend, state}].
    Raises an error naming `variable` for an unknown framework, a framework the host's CPU
    cannot run, Keras without a backend, duplicate names or more than one auto-activated env.
    """
    if not isinstance(envs, list):
        raise AnsibleFilterError(f"{variable} must be a list of environments [{{name: py3, frameworks: [pytorch]}}]")
    if not isinstance(framework_packages, dict):
        raise AnsibleFilterError("python_envs_framework_packages must map framework -> {edition: [packages]}")
    unsupported = set(unsupported or [])
    result, names = [], set()
    for position, env in enumerate(envs):
        where = f"{variable}[{position}]"
        if not isinstance(env, dict):
            raise AnsibleFilterError(f"{where} must be a mapping with at least a name")
        extra = set(env) - _ENV_KEYS
        if extra:
            raise AnsibleFilterError(f"{where}: unknown key(s) {', '.join(sorted(extra))} "
                                     f"(known: {', '.join(sorted(_ENV_KEYS))})")
        name = "" if env.get("name") is None else str(env.get("name"))
        if not _ENV_NAME.fullmatch(name):
            raise AnsibleFilterError(f"{where}.name {name!r} is not a usable directory name "
                                     "(letters, digits, . _ -; up to 32 characters)")
        if name in names:
            raise AnsibleFilterError(f"{variable}: environment {name!r} is listed twice")
        names.add(name)
        state = env.get("state", "present")
        if state not in ("present", "absent"):
            raise AnsibleFilterError(f"{where}.state must be present or absent, got {state!r}")
        frameworks = env.get("frameworks", [])
        if not isinstance(frameworks, list):
            raise AnsibleFilterError(f"{where}.frameworks must be a list such as [pytorch, tensorflow]")
        extra_packages = env.get("packages") or []
        if not isinstance(extra_packages, list):
            raise AnsibleFilterError(f"{where}.packages must be a list of requirements such as [mlflow==3.1.0]")
        requirements, imports = list(scientific_packages or []), []
        for framework in frameworks:
            if framework not in framework_packages:
                raise AnsibleFilterError(f"{where}: unknown framework {framework!r} "
                                         f"(known: {', '.join(sorted(framework_packages))})")
            builds = framework_packages[framework]
            if edition not in builds:
                raise AnsibleFilterError(f"{where}: framework {framework!r} has no build for the {edition} "
                                         f"edition in python_envs_framework_packages")
            packages = builds[edition]
            blocked = sorted(unsupported & ({framework} | {p.split('[')[0] for p in packages}))
            if blocked:
                raise AnsibleFilterError(f"{where}: {framework} cannot run on this host's CPU variant "
                                         f"(its builds need instructions the CPU lacks: {', '.join(blocked)}); "
                                         "remove it from the environment for this host or group")
            requirements += packages
            imports.append({"pytorch": "torch"}.get(framework, framework))
            if framework == "pytorch":
                requirements += list(variant_packages or [])
        backends = [_BACKEND_OF[f] for f in ("tensorflow", "pytorch", "jax") if f in frameworks]
        if "keras" in frameworks and not backends:
            raise AnsibleFilterError(f"{where}: keras (Keras 3) needs a backend in the same environment: "
                                     "add tensorflow, pytorch or jax")
        requirements += extra_packages
        result.append({
            "name": name,
            "frameworks": list(frameworks),
            "requirements": list(dict.fromkeys(requirements)),
            "imports": imports,
            "auto_activate": bool(env.get("auto_activate", False)),
            "keras_backend": backends[0] if backends else "",
            "state": state,
        })
    active = [env["name"] for env in result if env["auto_activate"] and env["state"] == "present"]
    if len(active) > 1:
        raise AnsibleFilterError(f"{variable}: only one environment can be activated in .bashrc, "
                                 f"got {', '.join(active)}")
    return result


def dl_env_spec_id(env, constraints, python_version, index_url="") -> str:
    """A short, stable id of everything that decides an environment's contents.

    The same spec gives the same id, so an unchanged spec installs nothing; any change
    (a package, a pin, the interpreter's minor version, the index) builds a new environment
    beside the old. A Python point release (3.11.2 -> 3.11.9) keeps the id: a venv uses the
    system interpreter, and wheels are built per minor version. A mirror that moves to another
    host or port keeps it too: only the index's path (which edition's index) is hashed.
    """
    version = str(python_version).strip()
    if not re.fullmatch(r"\d+\.\d+(\.\d+)?([abrc].*|\+.*)?", version):
        raise AnsibleFilterError(f"dl_env_spec_id: python_version must look like 3.11.2, got {version!r}")
    minor = ".".join(version.split(".")[:2])
    index_path = urlsplit(str(index_url)).path if index_url else ""
    spec = {"requirements": sorted(env["requirements"]), "constraints": constraints.strip().splitlines(),
            "python": minor, "index": index_path}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def dl_env_warmers(pending) -> list:
    """The hosts that resolve first: one per distinct build, in inventory order.

    `pending` maps each host to the build it is about to make (the build directory's name,
    <env>-<spec id>) or to '' when it builds nothing. The first host of each build fills the
    pip mirror's cache; every other host then reads a warm cache, all at once.
    """
    if not isinstance(pending, dict):
        raise AnsibleFilterError(f"dl_env_warmers: expected a mapping of host to build, got {type(pending).__name__}")
    seen, warmers = set(), []
    for host, build in pending.items():
        if build and build not in seen:
            seen.add(build)
            warmers.append(host)
    return warmers


def dl_env_fact(env, root) -> dict:
    """What other playbooks need to know of a built environment: name, path, frameworks, Keras backend."""
    return {"name": env["name"], "path": f"{str(root).rstrip('/')}/{env['name']}",
            "frameworks": list(env["frameworks"]), "keras_backend": env["keras_backend"]}


def dl_env_test_result(run, host) -> dict:
    """One integrity test run (a registered loop item) as a table row.

    The test prints one JSON object as its last stdout line; anything else is a failure
    whose error is the end of stderr (or Ansible's message, e.g. a timeout).
    """
    env, framework = run["item"][0], run["item"][1]
    row = {"host": host, "env": env["name"], "framework": framework, "version": "", "device": "",
           "accuracy": None, "seconds": None, "error": ""}
    lines = [line for line in str(run.get("stdout", "")).splitlines() if line.strip()]
    try:
        measured = json.loads(lines[-1]) if lines else None
    except ValueError:
        measured = None
    if run.get("rc") == 0 and isinstance(measured, dict) and "accuracy" in measured:
        row.update({key: measured.get(key) for key in ("version", "device", "accuracy", "seconds")})
    else:
        detail = str(run.get("stderr") or run.get("msg") or "no output").strip().splitlines()
        row["error"] = (detail[-1] if detail else "no output")[:300]
    return row


def dl_env_test_rows(results_by_host) -> list[dict]:
    """Every host's rows, in host order; a host with no results (it failed or was unreachable
    before its tests ran: anything but a list, e.g. None or false) gets one row saying so, so that
    the report never leaves it out."""
    rows = []
    for host, results in results_by_host.items():
        if not isinstance(results, list):
            rows.append({"host": host, "env": "", "framework": "", "version": "", "device": "", "accuracy": None,
                         "seconds": None, "error": "no test ran: the host failed or was unreachable before its tests"})
        else:
            rows.extend(results)
    return rows


def dl_env_test_failures(rows, min_accuracy) -> list[dict]:
    """Rows that failed or stayed below `min_accuracy`, each with a one-line summary."""
    bad = []
    for row in rows:
        where = f"{row['host']} {row['env']}/{row['framework']}"
        if row.get("error") or row.get("accuracy") is None:
            bad.append({**row, "summary": f"{where}: {row.get('error') or 'no result'}"})
        elif float(row["accuracy"]) < float(min_accuracy):
            bad.append({**row, "summary": f"{where}: accuracy {row['accuracy']:.3f} < {min_accuracy}"})
    return bad


def dl_env_test_table(rows, min_accuracy) -> str:
    """The integrity test report as a Markdown table."""
    lines = ["| host | env | framework | version | device | test accuracy | seconds | result |",
             "|---|---|---|---|---|---|---|---|"]
    failed = {(r["host"], r["env"], r["framework"]) for r in dl_env_test_failures(rows, min_accuracy)}
    for row in sorted(rows, key=lambda r: (r["host"], r["env"], r["framework"])):
        accuracy = "" if row.get("accuracy") is None else f"{float(row['accuracy']):.3f}"
        seconds = "" if row.get("seconds") is None else f"{float(row['seconds']):.1f}"
        result = "fail" if (row["host"], row["env"], row["framework"]) in failed else "pass"
        if row.get("error"):
            result += f": {row['error']}".replace("|", "/")
        lines.append(f"| {row['host']} | {row['env']} | {row['framework']} | {row.get('version') or ''} | "
                     f"{row.get('device') or ''} | {accuracy} | {seconds} | {result} |")
    return "\n".join(lines) + "\n"


class FilterModule:
    """dlcluster Python environment filters."""

    def filters(self):
        return {"dl_python_envs": dl_python_envs, "dl_env_spec_id": dl_env_spec_id, "dl_env_warmers": dl_env_warmers, "dl_env_fact": dl_env_fact,
                "dl_env_test_result": dl_env_test_result, "dl_env_test_rows": dl_env_test_rows,
                "dl_env_test_failures": dl_env_test_failures,
                "dl_env_test_table": dl_env_test_table}
