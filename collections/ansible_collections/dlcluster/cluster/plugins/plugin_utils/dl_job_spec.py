"""A training job's spec (playbooks/train.yml, jobs/*.yml): its fields, their defaults and their checks.

Controller-side code shared by the training filters (filter_plugins/dl_train_spec.py and dl_train_plan.py):
``dl_job_spec`` validates a spec and fills in its defaults; ``normalise`` returns the job and its problems.
"""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts import as_int, is_mapping

# Every field of a job spec, in the order dl_job_spec returns them.
JOB_FIELDS = (
    "name", "id", "framework", "strategy", "hosts", "processes_per_node", "script", "args",
    "hparams", "hparams_file", "env", "venv", "gpus", "tf_gpu_memory_fraction", "timeout_minutes",
    "master_port", "tf_port", "agent_port", "parameter_servers", "network", "backend", "partition", "account",
)
# Who starts the ranks: the launcher itself (one systemd unit per host) or Slurm (sbatch, srun).
BACKENDS = ("direct", "slurm")
STRATEGIES = {
    "pytorch": ("ddp",),
    "tensorflow": ("multi_worker_mirrored", "parameter_server"),
}
JOB_DEFAULTS = {
    "id": None,  # the name
    "strategy": None,  # the framework's first strategy
    "processes_per_node": 1,
    "args": [],
    "hparams": {},
    "hparams_file": None,
    "env": {},
    "venv": "py3",
    "gpus": None,
    "tf_gpu_memory_fraction": None,
    "timeout_minutes": 60,
    "master_port": 29500,
    "tf_port": 23456,
    # The job's coordinator (roles/train/files/dlcluster-job-agent on the first host; backend direct).
    "agent_port": 29400,
    "parameter_servers": 1,
    "network": None,
    "backend": "direct",
    "partition": None,  # backend slurm: the partition named like the hosts group, else Slurm's default
    "account": None,
}
# Mappings that `defaults` and the spec both give are merged key by key.
MERGED_FIELDS = ("env", "hparams")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
VENV_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SLURM_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
HPARAM_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Variables the launch computes; a job's env may not set them.
RESERVED_ENV = {
    "TF_CONFIG": "it is computed from the inventory",
    "DL_JOB_ID": "set the job's id field",
    "RANK": "torchrun sets it", "LOCAL_RANK": "torchrun sets it", "GROUP_RANK": "torchrun sets it",
    "WORLD_SIZE": "torchrun sets it", "LOCAL_WORLD_SIZE": "torchrun sets it",
    "MASTER_ADDR": "torchrun sets it", "MASTER_PORT": "set the job's master_port field",
    "CUDA_VISIBLE_DEVICES": "use the job's gpus field", "HIP_VISIBLE_DEVICES": "use the job's gpus field",
}


def _scalar_text(value):
    """A string for a scalar given in YAML (str, int, float); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value)


def _name_problem(field, value) -> str:
    return (f"job field {field} is {value!r}; use 1-63 lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it names the job's units and directories)")


def _is_name(value) -> bool:
    return isinstance(value, str) and bool(NAME_RE.fullmatch(value))


def _int_field(job, problems, field, minimum, maximum=None, what="an integer"):
    number = as_int(job[field])
    if number is None or number < minimum or (maximum is not None and number > maximum):
        limits = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        problems.append(f"job field {field} is {job[field]!r}; give {what} {limits}")
        number = JOB_DEFAULTS[field]
    job[field] = number


def _check_args(job, problems):
    args = job["args"]
    if args is None:
        args = []
    if not isinstance(args, list):
        problems.append(f"job field args must be a list of strings such as ['--epochs', '3'], got {args!r}")
        job["args"] = []
        return
    texts = []
    for index, arg in enumerate(args):
        text = _scalar_text(arg)
        if text is None:
            problems.append(f"job field args[{index}] is {arg!r}; give a string (quote true/false and lists)")
            continue
        texts.append(text)
    job["args"] = texts


def _check_hparams(job, problems):
    hparams = job["hparams"] or {}
    if not is_mapping(hparams):
        problems.append(f"job field hparams must be a mapping of name: value (written as name=value), "
                        f"got {hparams!r}")
        job["hparams"] = {}
        return
    for key, value in hparams.items():
        if not isinstance(key, str) or not HPARAM_KEY_RE.fullmatch(key):
            problems.append(f"job field hparams has the key {key!r}; use letters, digits, '_', '.' or '-', "
                            "starting with a letter or '_'")
        if not isinstance(value, (str, int, float)):
            problems.append(f"job field hparams.{key} is {value!r}; give a string, a number or true/false")
        elif "\n" in str(value):
            problems.append(f"job field hparams.{key} holds a line break; give a one-line value")
    job["hparams"] = dict(hparams)


def _check_env(job, problems):
    env = job["env"] or {}
    if not is_mapping(env):
        problems.append(f"job field env must be a mapping of NAME: value, got {env!r}")
        job["env"] = {}
        return
    result = {}
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_NAME_RE.fullmatch(key):
            problems.append(f"job field env has the name {key!r}; use letters, digits and '_', "
                            "not starting with a digit")
            continue
        if key in RESERVED_ENV:
            problems.append(f"job field env sets {key}; remove it ({RESERVED_ENV[key]})")
            continue
        text = _scalar_text(value)
        if text is None or "\n" in text:
            problems.append(f"job field env.{key} is {value!r}; give a one-line string or number "
                            "(quote true/false)")
            continue
        result[key] = text
    job["env"] = result


def _check_gpus(job, problems):
    gpus = job["gpus"]
    if gpus is None:
        return
    if isinstance(gpus, (int, str)) and not isinstance(gpus, bool):
        gpus = [part for part in str(gpus).split(",") if part.strip()]
    indices = [as_int(item) for item in gpus] if isinstance(gpus, list) else []
    if not indices:
        problems.append(f"job field gpus is {job['gpus']!r}; give a list of GPU indices such as [0, 1], "
                        "or leave it out to use every GPU")
    elif any(index is None or index < 0 for index in indices):
        problems.append(f"job field gpus is {job['gpus']!r}; every entry must be a GPU index (0, 1, ...)")
    elif len(set(indices)) != len(indices):
        problems.append(f"job field gpus lists a GPU twice ({job['gpus']!r}); list each index once")
    else:
        job["gpus"] = indices
        return
    job["gpus"] = None


def _check_fraction(job, problems):
    fraction = job["tf_gpu_memory_fraction"]
    if fraction is None:
        return
    if job["framework"] != "tensorflow":
        problems.append("job field tf_gpu_memory_fraction applies to tensorflow jobs; remove it (a PyTorch "
                        "script can call torch.cuda.set_per_process_memory_fraction itself)")
        job["tf_gpu_memory_fraction"] = None
        return
    try:
        number = float(fraction) if not isinstance(fraction, bool) else None
    except (TypeError, ValueError):
        number = None
    if number is None or not 0 < number <= 1:
        problems.append(f"job field tf_gpu_memory_fraction is {fraction!r}; give a number above 0 "
                        "and at most 1, such as 0.5")
        number = None
    job["tf_gpu_memory_fraction"] = number


def _check_backend(job, problems):
    if job["backend"] not in BACKENDS:
        problems.append(f"job field backend is {job['backend']!r}; use direct (the launcher starts the ranks) or "
                        "slurm (sbatch through the cluster's Slurm)")
        return
    for field in ("partition", "account"):
        value = job[field]
        if value in (None, ""):
            job[field] = None
        elif job["backend"] != "slurm":
            problems.append(f"job field {field} is for backend slurm; drop it or set backend: slurm")
        elif not isinstance(value, str) or not SLURM_NAME_RE.fullmatch(value):
            problems.append(f"job field {field} is {value!r}; give a Slurm {field} name (letters, digits, _.-)")


def _check_network(job, problems):
    network = job["network"]
    if network in (None, ""):
        job["network"] = None
        return
    if str(network).strip().lower() == "site":
        job["network"] = "site"
        return
    try:
        parsed = ipaddress.ip_network(str(network).strip(), strict=False)
    except ValueError:
        parsed = None
    if parsed is None or parsed.version != 4:
        problems.append(f"job field network is {network!r}; give the IPv4 CIDR of the network that carries "
                        "the training traffic, such as 10.10.0.0/16, 'site' for each host's site address "
                        "(hosts in several sites, over the VPN), or leave it out")
        job["network"] = None
        return
    job["network"] = str(parsed)


def _check_processes(job, problems):
    nproc = job["processes_per_node"]
    if isinstance(nproc, str) and nproc.strip().lower() == "gpu":
        job["processes_per_node"] = "gpu"
    else:
        number = as_int(nproc)
        if number is None or number < 1:
            problems.append(f"job field processes_per_node is {nproc!r}; give an integer of at least 1, "
                            "or 'gpu' for one process per GPU")
            number = 1
        job["processes_per_node"] = number
    if job["framework"] == "tensorflow" and job["processes_per_node"] != 1:
        given, job["processes_per_node"] = job["processes_per_node"], 1
        problems.append(f"job field processes_per_node is {given!r} but tensorflow "
                        "runs one task per host (its strategies use every GPU of the host); set it to 1")


def normalise(spec, defaults=None) -> tuple[dict, list[str]]:
    """The job with defaults filled in, and what is wrong with it (one sentence each)."""
    if not is_mapping(spec):
        return {}, [f"the job spec must be a mapping of fields ({', '.join(JOB_FIELDS)}), "
                    f"got {type(spec).__name__}; pass a YAML file under jobs/ or -e @jobs/<file>.yml"]
    if defaults in (None, ""):
        defaults = {}
    if not is_mapping(defaults):
        return {}, [f"the job defaults must be a mapping of fields, got {type(defaults).__name__}"]
    problems = []
    for where, source in (("job spec", spec), ("job defaults", defaults)):
        unknown = sorted(str(key) for key in source if key not in JOB_FIELDS)
        if unknown:
            problems.append(f"{where} has unknown fields {unknown}; allowed: {', '.join(JOB_FIELDS)}")
    merged = dict(JOB_DEFAULTS)
    merged.update({k: v for k, v in defaults.items() if k in JOB_FIELDS})
    merged.update({k: v for k, v in spec.items() if k in JOB_FIELDS})
    for field in MERGED_FIELDS:
        parts = [source.get(field) for source in (defaults, spec)]
        if all(is_mapping(part) or part is None for part in parts):
            merged[field] = {**(parts[0] or {}), **(parts[1] or {})}
    job = {field: merged.get(field) for field in JOB_FIELDS}

    for field in ("name", "framework", "hosts", "script"):
        if job[field] in (None, "", []):
            problems.append(f"job field {field} is required; add it to the job spec")
    if job["name"] not in (None, "") and not _is_name(job["name"]):
        problems.append(_name_problem("name", job["name"]))
    if job["id"] in (None, ""):
        job["id"] = job["name"]
    elif not _is_name(job["id"]):
        problems.append(_name_problem("id", job["id"]))

    framework = job["framework"]
    if framework not in (None, "") and framework not in STRATEGIES:
        problems.append(f"job field framework is {framework!r}; use one of {', '.join(STRATEGIES)}")
    strategies = STRATEGIES.get(framework, ())
    if job["strategy"] in (None, ""):
        job["strategy"] = strategies[0] if strategies else None
    elif strategies and job["strategy"] not in strategies:
        problems.append(f"job field strategy is {job['strategy']!r}; {framework} supports "
                        f"{', '.join(strategies)}")
        job["strategy"] = strategies[0]

    hosts = job["hosts"]
    if isinstance(hosts, list) and hosts and all(isinstance(h, str) and h for h in hosts):
        job["hosts"] = ":".join(hosts)
    elif hosts not in (None, "", []) and not isinstance(hosts, str):
        problems.append(f"job field hosts is {hosts!r}; give an inventory group or host pattern "
                        "such as 'trainers'")
    if job["script"] not in (None, "") and not isinstance(job["script"], str):
        problems.append(f"job field script is {job['script']!r}; give the script's path, relative to the "
                        "repository or absolute")
    if job["hparams_file"] in ("",):
        job["hparams_file"] = None
    if job["hparams_file"] is not None and not isinstance(job["hparams_file"], str):
        problems.append(f"job field hparams_file is {job['hparams_file']!r}; give a file path")
    if not isinstance(job["venv"], str) or not VENV_RE.fullmatch(job["venv"]):
        problems.append(f"job field venv is {job['venv']!r}; give the name of an environment under "
                        "~/workspaces, such as py3")

    _check_processes(job, problems)
    _check_args(job, problems)
    _check_hparams(job, problems)
    _check_env(job, problems)
    _check_gpus(job, problems)
    _check_fraction(job, problems)
    _check_network(job, problems)
    _check_backend(job, problems)
    _int_field(job, problems, "timeout_minutes", 1, what="a number of minutes")
    _int_field(job, problems, "master_port", 1, 65535, what="a TCP port")
    _int_field(job, problems, "tf_port", 1, 65535, what="a TCP port")
    _int_field(job, problems, "agent_port", 1, 65535, what="a TCP port")
    job_port = "master_port" if job["framework"] == "pytorch" else "tf_port"
    if job["agent_port"] == job[job_port] and isinstance(job["agent_port"], int):
        problems.append(f"job fields agent_port and {job_port} are both {job['agent_port']}; give agent_port "
                        "another port (the job's coordinator listens there on the first host)")
    _int_field(job, problems, "parameter_servers", 1, what="a number of ps tasks")
    return job, problems


def dl_job_spec(spec, defaults=None) -> dict:
    """A job spec validated, with every field present and defaults filled in.

    `defaults` (a mapping of job fields) is merged under `spec`; the mappings
    env and hparams are merged key by key. Raises one error that lists every
    problem, each naming the field and the fix. Normalising twice changes nothing.
    """
    job, problems = normalise(spec, defaults)
    if problems:
        raise AnsibleFilterError("dl_job_spec: " + "; ".join(problems))
    return job
