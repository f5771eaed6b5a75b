"""How each host of a job starts its ranks (backend direct): one transient systemd unit, its whole command line.

dl_job_plan (dl_train_plan.py) decides what every rank is (its node rank, first global rank, torchrun's arguments or
TF_CONFIG, its environment). dl_job_units adds, for each host, the complete ``argv`` that host runs: systemd-run
with the unit's properties and every environment variable, then the job's agent (it records the exit status and
stops the ranks when the job ends elsewhere; the first host's agent coordinates), then torchrun or python with
the script, its args and the hyper-parameters. playbooks/train.yml writes the result to
``runs/<job>/plan.json`` before anything starts, and each host runs its ``argv`` as it stands there.
"""

from __future__ import annotations

import json
import posixpath

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts import fact, is_mapping, with_reported

# Each host's ranks run under the job's agent (roles/train/files/dlcluster-job-agent, copied to the job
# directory): it writes their exit status where the supervisor reads it, and stops them when the job fails or
# ends on another host. The first host's agent coordinates the job.
AGENT = "job-agent"
PYTHON = "/usr/bin/python3"
# Seconds systemd gives the ranks between SIGTERM and SIGKILL when the unit is stopped.
STOP_TIMEOUT_SECONDS = 20
RUNTIME_KEYS = ("dir", "env_path", "keras_backend", "metrics")
SETTING_KEYS = ("unit", "user", "script", "textfile_dir", "textfile_group", "timeout_minutes", "args")


def _checked(mapping, keys, what) -> dict:
    if not isinstance(mapping, dict):
        raise AnsibleFilterError(f"dl_job_units: {what} must be a mapping, got {type(mapping).__name__}")
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise AnsibleFilterError(f"dl_job_units: {what} lacks {', '.join(missing)}")
    return mapping


def _environment(plan_env, runtime, settings, job_id) -> dict:
    """Every variable the unit's processes get, in the order systemd-run is given them."""
    env = {
        "DL_JOB_OUTPUT_DIR": f"{runtime['dir']}/output",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{runtime['env_path']}/bin:/usr/local/bin:/usr/bin:/bin",
    }
    env.update({str(key): str(value) for key, value in plan_env.items()})
    if runtime["keras_backend"]:
        env["KERAS_BACKEND"] = str(runtime["keras_backend"])
    if runtime["metrics"]:
        env["DL_TEXTFILE_DIR"] = str(settings["textfile_dir"])
        env["DL_JOB_ID"] = str(job_id)
    return env


def _program(plan, entry, runtime, settings) -> list[str]:
    """What the unit runs: torchrun (PyTorch) or python (TensorFlow), the script, its args, the hyper-parameters."""
    directory = runtime["dir"]
    if plan["framework"] == "pytorch":
        head = [f"{runtime['env_path']}/bin/torchrun", *entry["torchrun_args"],
                "--log-dir", f"{directory}/logs", "--redirects", "3", "--tee", "3"]
    else:
        head = [f"{runtime['env_path']}/bin/python"]
    return [*head, f"{directory}/code/{settings['script']}", *map(str, settings["args"]),
            "--hparams", f"{directory}/hparams.conf"]


def _systemd_run(runtime, settings, env) -> list[str]:
    directory = runtime["dir"]
    argv = [
        "systemd-run", f"--unit={settings['unit']}", f"--uid={settings['user']}", f"--gid={settings['user']}",
        f"--working-directory={directory}",
        "--property=EnvironmentFile=-/etc/dlcluster/cpu.env",
        "--property=KillMode=control-group", f"--property=TimeoutStopSec={STOP_TIMEOUT_SECONDS}",
        f"--property=RuntimeMaxSec={int(settings['timeout_minutes']) * 60}",
        f"--property=StandardOutput=append:{directory}/node.log",
        f"--property=StandardError=append:{directory}/node.log",
    ]
    if runtime["metrics"]:
        # Job metrics (textfile collector): the ranks write their progress, the writer the host's state before
        # the ranks start and after they end.
        argv += [f"--property=SupplementaryGroups={settings['textfile_group']}",
                 f"--property=ExecStartPre={directory}/job-metrics start",
                 f"--property=ExecStopPost={directory}/job-metrics stop"]
    return argv + [f"--setenv={key}={value}" for key, value in env.items()]


def _agent(plan, host, entry, runtime) -> list[str]:
    """The agent's command line: who this host is, where the coordinator listens, what this host decides."""
    argv = [PYTHON, f"{runtime['dir']}/{AGENT}", "--host", host, "--coordinator", plan["agent_endpoint"],
            "--role", str(entry["role"])]
    if entry["decides_outcome"]:
        argv.append("--decides")
    if host == plan["coordinator"]:
        argv += ["--serve", ",".join(plan["hosts"])]
    return argv + ["--"]


def dl_job_units(plan, runtime, settings) -> dict:
    """The plan with each host's complete start: {unit, dir, environment, command, argv} added to its entry.

    `runtime` holds, by host, what only the host knows: its job directory (``dir``), the environment's path
    (``env_path``) and Keras backend (``keras_backend``), and whether it reports job metrics (``metrics``).
    `settings` holds what all hosts share: the unit's name, the user, the script's file name, the textfile
    collector's directory and group, the spec's timeout_minutes and args.
    """
    if not isinstance(plan, dict) or not isinstance(plan.get("hosts"), dict) or "agent_endpoint" not in plan:
        raise AnsibleFilterError("dl_job_units: the plan must come from dl_job_plan")
    _checked(settings, SETTING_KEYS, "the settings")
    hosts = {}
    for host, entry in plan["hosts"].items():
        if host not in (runtime or {}):
            raise AnsibleFilterError(f"dl_job_units: host {host} of the plan has no runtime settings")
        mine = dict(_checked(runtime[host], RUNTIME_KEYS, f"the runtime settings of {host}"))
        mine["metrics"] = boolean(mine["metrics"], strict=False)
        env = _environment(entry["env"], mine, settings, plan["job_id"])
        command = _program(plan, entry, mine, settings)
        argv = _systemd_run(mine, settings, env) + _agent(plan, host, entry, mine) + command
        hosts[host] = {**entry, "unit": settings["unit"], "dir": mine["dir"], "environment": env,
                       "command": command, "argv": argv}
    return {**plan, "hosts": hosts}


# systemctl is-active states of a unit that still runs (or is about to, or is stopping).
RUNNING_STATES = ("active", "activating", "deactivating")


def _saved_envs(host_vars) -> dict:
    """The local fact python_envs saves on a host (dlcluster_envs: its environments, the job user's home), or {}."""
    local = fact(host_vars, "local") or {}
    saved = local.get("dlcluster_envs") if is_mapping(local) else None
    return saved if is_mapping(saved) else {}


def _host_problem(spec, host, host_vars, env, unit) -> str:
    """Why `host` cannot run the job (its environment, a unit of the job's name still running), or ''."""
    problems = []
    if not env:
        envs = _saved_envs(host_vars).get("envs") or []
        names = ", ".join(str(e.get("name")) for e in envs if is_mapping(e)) or "none"
        problems.append(f"{host} cannot run job {spec['id']}: environment {spec['venv']} does not exist "
                        f"(environments: {names}); set venv: in the spec or add it to python_envs_envs and run "
                        "site.yml.")
    elif spec["framework"] not in (env.get("frameworks") or []):
        problems.append(f"{host} cannot run job {spec['id']}: environment {spec['venv']} has no {spec['framework']} "
                        f"(it has {', '.join(env.get('frameworks') or [])}); add it to the env's frameworks and run "
                        "site.yml.")
    state = host_vars.get("__train_host_state")
    if not isinstance(state, dict) or "stdout_lines" not in state:
        problems.append(f"{host} did not report whether job {spec['id']} still runs there; nothing was started.")
    elif (state["stdout_lines"] or [""])[0] in RUNNING_STATES:
        problems.append(f"Job {spec['id']} is still running on {host} ({unit}); wait for it or stop it with: "
                        f"systemctl stop {unit}")
    return " ".join(problems)


def dl_job_host_checks(spec, hosts, hostvars, settings, reported=None) -> dict:
    """Every job host's check and its part of the start, from what each host reported, in one pass.

    Per host, hostvars holds its saved facts (ansible_local.dlcluster_envs: the environments and the job
    user's home) and ``__train_host_state``, the check's one command: ``systemctl is-active <unit>``, then the
    node exporter's textfile directory as ``directory:<group>`` (nothing when missing).
    `settings` holds ``unit``, ``user`` and ``textfile_group``.

    Returns {problems: one sentence per host that cannot run the job (its name first, or "Job <id> is still
    running on <host>"), runtime: {host: {dir, env_path, keras_backend, metrics}} as dl_job_units reads it}.
    The job's directory is <home>/runs/<job id>, home from the saved facts, else /home/<user> (as
    roles/train/vars/main.yml's __train_dir). `reported`: per host, what dl_job_hosts' read found there ({facts,
    host_state}: the saved facts and the check's answer), read over its hostvars.
    """
    if not isinstance(spec, dict) or not {"id", "venv", "framework"} <= set(spec):
        raise AnsibleFilterError("dl_job_host_checks: the spec must come from dl_job_spec")
    _checked(settings, ("unit", "user", "textfile_group"), "the settings")
    hostvars = with_reported(hostvars, reported)
    problems, runtime = [], {}
    for host in hosts:
        host_vars = hostvars.get(host) or {}
        saved = _saved_envs(host_vars)
        env = next((e for e in saved.get("envs") or [] if is_mapping(e) and e.get("name") == spec["venv"]), {})
        problem = _host_problem(spec, host, host_vars, env, settings["unit"])
        if problem:
            problems.append(problem)
            continue
        home = saved.get("home") or f"/home/{settings['user']}"
        textfile = ((host_vars["__train_host_state"]["stdout_lines"] or [])[1:] or [""])[0]
        runtime[host] = {"dir": f"{home}/runs/{spec['id']}", "env_path": env.get("path", ""),
                         "keras_backend": env.get("keras_backend") or "",
                         "metrics": textfile == f"directory:{settings['textfile_group']}"}
    return {"problems": problems, "runtime": runtime}


def dl_job_verdict(text) -> dict:
    """The coordinator's job-state.json (its text), or {"state": <what the watch said>} when there is none.

    Returns {state, first_failure, hosts, ...}: state is running, succeeded or failed while the coordinator
    runs; "unit <systemd state>" before it wrote its file or after it died without one; unknown on no output.
    """
    text = str(text or "").strip()
    try:
        verdict = json.loads(text) if text else {"state": "unknown"}
    except ValueError:
        verdict = {"state": "unknown", "unparsed": text[:200]}
    if not isinstance(verdict, dict):
        verdict = {"state": "unknown", "unparsed": text[:200]}
    return {"first_failure": "", "hosts": {}, **verdict}


def dl_job_read_args(hosts, hostvars, textfile_dir) -> dict:
    """dl_job_hosts' read arguments per host: {host: {textfile_dir}}, the host's train_textfile_dir or
    dl_textfile_dir (its variables, as the check's command reads them per host), else `textfile_dir`."""
    result = {}
    for host in hosts:
        host_vars = hostvars[host] if host in hostvars else {}
        result[host] = {"textfile_dir": str(host_vars.get("train_textfile_dir") or host_vars.get("dl_textfile_dir")
                                            or textfile_dir)}
    return result


def dl_job_step_args(plan, step) -> dict:
    """dl_job_hosts' arguments per host of a plan with every host's start (dl_job_units): for `unpack` {dest: the
    job user's home (the job's directory is <home>/runs/<job id>)}, for `start` {argv}, for `launch` both."""
    if not is_mapping(plan) or not is_mapping(plan.get("hosts")):
        raise AnsibleFilterError("dl_job_step_args: the plan must come from dl_job_units")
    hosts = plan["hosts"]
    if any("argv" not in entry or "dir" not in entry for entry in hosts.values()):
        raise AnsibleFilterError("dl_job_step_args: the plan has no start per host; run dl_job_units first")
    unpack = {host: {"dest": posixpath.dirname(posixpath.dirname(entry["dir"].rstrip("/")))}
              for host, entry in hosts.items()}
    start = {host: {"argv": list(entry["argv"])} for host, entry in hosts.items()}
    if step in ("unpack", "start"):
        return unpack if step == "unpack" else start
    if step == "launch":
        return {host: {**unpack[host], **start[host]} for host in hosts}
    raise AnsibleFilterError(f"dl_job_step_args: step must be unpack, start or launch, got {step!r}")


class FilterModule:
    """dlcluster: each host's start of a job."""

    def filters(self):
        return {"dl_job_units": dl_job_units, "dl_job_verdict": dl_job_verdict,
                "dl_job_host_checks": dl_job_host_checks, "dl_job_read_args": dl_job_read_args,
                "dl_job_step_args": dl_job_step_args}
