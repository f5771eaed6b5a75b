"""Training filters of dlcluster: job specs and every rank's settings for playbooks/train.yml.

Pure functions: the job spec, the host list and hostvars come in as arguments,
so each can be unit-tested by importing it (tests/unit/test_dl_train.py).

- PyTorch runs under torchrun with the c10d rendezvous. torchrun ignores
  ``--node-rank`` for c10d (it warns and drops it) and numbers the nodes itself,
  in the sort order of each node's ``--local-addr`` (its rendezvous node
  descriptor), then gives global ranks as running sums of the nodes' process
  counts. We pass ``--local-addr`` and compute the ranks the same way, so the
  plan's ``node_rank``/``first_rank`` are the GROUP_RANK/RANK torchrun hands out.
- TensorFlow reads TF_CONFIG: MultiWorkerMirroredStrategy has only workers
  (worker 0 acts as chief); ParameterServerStrategy has one chief (the
  coordinator that runs the training loop), at least one ps and at least one
  worker. An evaluator is not part of the cluster, so none is listed.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import re
from pathlib import Path

from ansible.errors import AnsibleFilterError

try:
    from dl_inventory import dl_host_address
except ImportError:  # Ansible loads filter plugins without putting their directory on sys.path.
    _SPEC = importlib.util.spec_from_file_location("dl_inventory", Path(__file__).with_name("dl_inventory.py"))
    _INVENTORY = importlib.util.module_from_spec(_SPEC)
    _SPEC.loader.exec_module(_INVENTORY)
    dl_host_address = _INVENTORY.dl_host_address

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
GPU_VENDORS = {"nvidia": ("nvidia_gpus", "NVIDIA"), "rocm": ("amd_gpus", "AMD")}


def _is_mapping(value) -> bool:
    return isinstance(value, dict) or hasattr(value, "keys")


def _as_int(value):
    """An int from an int or a string of digits (extra vars arrive as strings); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


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
    number = _as_int(job[field])
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
    if not _is_mapping(hparams):
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
    if not _is_mapping(env):
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
    indices = [_as_int(item) for item in gpus] if isinstance(gpus, list) else []
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
        number = _as_int(nproc)
        if number is None or number < 1:
            problems.append(f"job field processes_per_node is {nproc!r}; give an integer of at least 1, "
                            "or 'gpu' for one process per GPU")
            number = 1
        job["processes_per_node"] = number
    if job["framework"] == "tensorflow" and job["processes_per_node"] != 1:
        given, job["processes_per_node"] = job["processes_per_node"], 1
        problems.append(f"job field processes_per_node is {given!r} but tensorflow "
                        "runs one task per host (its strategies use every GPU of the host); set it to 1")


def _normalise(spec, defaults=None) -> tuple[dict, list[str]]:
    """The job with defaults filled in, and what is wrong with it (one sentence each)."""
    if not _is_mapping(spec):
        return {}, [f"the job spec must be a mapping of fields ({', '.join(JOB_FIELDS)}), "
                    f"got {type(spec).__name__}; pass a YAML file under jobs/ or -e @jobs/<file>.yml"]
    if defaults in (None, ""):
        defaults = {}
    if not _is_mapping(defaults):
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
        if all(_is_mapping(part) or part is None for part in parts):
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
    job, problems = _normalise(spec, defaults)
    if problems:
        raise AnsibleFilterError("dl_job_spec: " + "; ".join(problems))
    return job


# ---------------------------------------------------------------------------
# Facts of a host

def _fact(host_vars, name):
    """A gathered fact, from ansible_facts.<name> or the injected ansible_<name>."""
    facts = host_vars.get("ansible_facts") or {}
    if _is_mapping(facts) and name in facts:
        return facts[name]
    return host_vars.get(f"ansible_{name}")


def _local_hardware(host_vars) -> dict:
    """The local fact saved by roles/hardware_facts (/etc/ansible/facts.d/dlcluster_hardware.fact)."""
    local = _fact(host_vars, "local") or {}
    saved = local.get("dlcluster_hardware") if _is_mapping(local) else None
    return saved if _is_mapping(saved) else {}


def _positive(value):
    number = _as_int(value)
    return number if number is not None and number > 0 else None


def _physical_cores(host_vars):
    """Physical cores: dl_hardware.cpu.physical_cores, the saved local fact, or Ansible's processor facts."""
    hardware = host_vars.get("dl_hardware") or {}
    if _is_mapping(hardware) and _is_mapping(hardware.get("cpu") or {}):
        cores = _positive((hardware.get("cpu") or {}).get("physical_cores"))
        if cores:
            return cores
    cores = _positive(_local_hardware(host_vars).get("physical_cores"))
    if cores:
        return cores
    per_socket, sockets = _positive(_fact(host_vars, "processor_cores")), _positive(_fact(host_vars,
                                                                                          "processor_count"))
    return per_socket * sockets if per_socket and sockets else None


def _edition(host_vars):
    """nvidia, rocm or cpu: dl_edition_effective, the saved local fact, or a forced dl_edition; else None."""
    for value in (host_vars.get("dl_edition_effective"), _local_hardware(host_vars).get("edition"),
                  host_vars.get("dl_edition")):
        if value in ("nvidia", "rocm", "cpu"):
            return value
    return None


def _gpu_count(host_vars, edition):
    """GPUs of the host's edition: dl_hardware.nvidia_gpus / amd_gpus, else the saved local fact's list."""
    if edition == "cpu":
        return 0
    if edition not in GPU_VENDORS:
        return None
    hardware = host_vars.get("dl_hardware") or {}
    if _is_mapping(hardware) and _as_int(hardware.get(GPU_VENDORS[edition][0])) is not None:
        return _as_int(hardware.get(GPU_VENDORS[edition][0]))
    saved = _local_hardware(host_vars).get("gpus")
    return len(saved) if isinstance(saved, list) else None


def dl_host_interfaces(host_vars) -> list[dict]:
    """The interface facts of a host (``ansible_<ifname>``) as a list, in ``ansible_interfaces`` order."""
    if not _is_mapping(host_vars):
        raise AnsibleFilterError(f"dl_host_interfaces: host_vars must be a mapping, got {type(host_vars).__name__}")
    names = _fact(host_vars, "interfaces") or []
    result = []
    for name in names:
        # Ansible names the fact after the device with '-' (and ':') turned into '_'.
        fact = _fact(host_vars, str(name).replace("-", "_").replace(":", "_"))
        if _is_mapping(fact):
            result.append(dict(fact))
    return result


# ---------------------------------------------------------------------------
# Interfaces

def _iface_ipv4(interface) -> list[str]:
    addresses = []
    for entry in [interface.get("ipv4") or {}] + list(interface.get("ipv4_secondaries") or []):
        if _is_mapping(entry) and entry.get("address"):
            addresses.append(str(entry["address"]))
    return addresses


def _iface_addresses(interface) -> list[str]:
    v6 = [str(e["address"]).split("%")[0] for e in interface.get("ipv6") or [] if _is_mapping(e) and e.get("address")]
    return _iface_ipv4(interface) + v6


def _is_loopback(interface) -> bool:
    if interface.get("type") == "loopback" or interface.get("device") == "lo":
        return True
    addresses = _iface_ipv4(interface)
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def _pick_interface(interfaces, address=None, network=None, host=None) -> tuple[str, str]:
    """(device, address) of the interface that carries `address` or has an IPv4 address in `network`."""
    where = f" of host {host}" if host else ""
    if not isinstance(interfaces, list):
        raise AnsibleFilterError(f"dl_socket_ifname: interfaces{where} must be a list of interface facts "
                                 f"(ansible_<ifname>), got {type(interfaces).__name__}")
    usable = [i for i in interfaces if _is_mapping(i) and i.get("device") and i.get("active", True) is not False]
    if network not in (None, "") and not interfaces:
        raise AnsibleFilterError(f"dl_socket_ifname: no interface facts are known{where}, so the interface in "
                                 f"network {network} cannot be found; gather its facts (setup) first")
    if network not in (None, ""):
        try:
            net = ipaddress.ip_network(str(network).strip(), strict=False)
        except ValueError as err:
            raise AnsibleFilterError(f"dl_socket_ifname: network {network!r} is not a CIDR such as "
                                     "10.10.0.0/16; fix the job's network field") from err
        for interface in usable:
            if _is_loopback(interface) and not net.is_loopback:
                continue
            for candidate in _iface_ipv4(interface):
                if ipaddress.ip_address(candidate) in net:
                    return str(interface["device"]), candidate
        seen = ", ".join(f"{i['device']} {'/'.join(_iface_ipv4(i)) or 'no IPv4'}" for i in usable) or "none"
        raise AnsibleFilterError(f"dl_socket_ifname: no active interface{where} has an IPv4 address in network "
                                 f"{net} (interfaces: {seen}); fix the job's network field, or give the host "
                                 "an address in that network")
    if address in (None, ""):
        return "", ""
    try:
        wanted = ipaddress.ip_address(str(address).strip())
    except ValueError:
        return "", ""  # a host name: no interface carries it by name
    for interface in usable:
        if _is_loopback(interface) and not wanted.is_loopback:
            continue
        if any(ipaddress.ip_address(a) == wanted for a in _iface_addresses(interface)):
            return str(interface["device"]), str(wanted)
    return "", ""


def dl_socket_ifname(interfaces, address=None, network=None, host=None) -> str:
    """The interface for GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME from a host's interface facts.

    With `network` (a CIDR): the first active interface with an IPv4 address in
    it, or an error naming the network. Without it: the interface that carries
    `address`, or '' when none does (leave the variables unset then). Loopback
    is skipped unless the address or network is a loopback one.
    """
    return _pick_interface(interfaces, address, network, host)[0]


# ---------------------------------------------------------------------------
# Problems and the plan

def _layout_problem(job, count) -> str:
    if job["framework"] == "tensorflow" and job["strategy"] == "parameter_server":
        needed = 2 + job["parameter_servers"]
        if count < needed:
            return (f"job strategy parameter_server needs 1 chief + {job['parameter_servers']} ps + at "
                    f"least 1 worker = {needed} hosts (TensorFlow refuses a cluster without a worker), but "
                    f"hosts {job['hosts']!r} has {count}; add hosts to the group, lower parameter_servers, or "
                    "use strategy multi_worker_mirrored")
    return ""


def _nproc_problems(job, host, hv) -> list[str]:
    problems = []
    nproc, gpus = job["processes_per_node"], job["gpus"]
    edition = _edition(hv)
    cores = _physical_cores(hv)
    count = _gpu_count(hv, edition)
    wants_gpu = nproc == "gpu" or gpus is not None
    if wants_gpu and edition is None:
        field = "processes_per_node is 'gpu'" if nproc == "gpu" else f"gpus is {gpus}"
        return [f"host {host}: job field {field} but the host's GPUs are unknown; run playbooks/accelerators.yml "
                "(role hardware_facts) on it first"]
    if wants_gpu and not count:
        field = "processes_per_node is 'gpu'" if nproc == "gpu" else f"gpus is {gpus}"
        return [f"host {host}: job field {field} but the host is a {edition} host without GPUs; give "
                "processes_per_node a number and drop gpus, or choose hosts with GPUs"]
    vendor = GPU_VENDORS.get(edition, ("", ""))[1]
    if gpus is not None:
        wrong = [index for index in gpus if index >= count]
        if wrong:
            problems.append(f"host {host}: job field gpus lists {wrong} but the host has {count} {vendor} GPUs "
                            f"(indices 0-{count - 1}); list indices that exist")
    if isinstance(nproc, int) and count:
        usable = len(gpus) if gpus is not None else count
        if nproc > usable:
            which = f"the {usable} GPUs in gpus" if gpus is not None else f"its {count} {vendor} GPUs"
            problems.append(f"host {host}: job field processes_per_node is {nproc} but the host has {which}; "
                            f"use at most {usable} (one process per GPU) or 'gpu'")
    if isinstance(nproc, int) and cores and nproc > cores:
        problems.append(f"host {host}: job field processes_per_node is {nproc} but the host has {cores} physical "
                        f"cores; use at most {cores}")
    return problems


def _host_network(job, host, hv) -> tuple[str, str]:
    """(address, interface) of a host for the job's traffic.

    network "site": the host's site address (its address in dl_site_subnets; the VPN carries it to the other
    sites) and the LAN interface that carries it (the tunnel's interface has the same address; skipped).
    """
    if job["network"] == "site":
        subnets = hv.get("dl_site_subnets") or []
        tunnel = str(hv.get("dl_vpn_interface") or "wgdl0")
        interfaces = [i for i in dl_host_interfaces(hv) if i.get("device") != tunnel]
        for subnet in [subnets] if isinstance(subnets, str) else subnets:
            try:
                interface, address = _pick_interface(interfaces, network=subnet, host=host)
            except AnsibleFilterError:
                continue
            return address, interface
        raise AnsibleFilterError(f"job field network is 'site' but no interface has an address in the host's "
                                 f"dl_site_subnets ({', '.join(map(str, subnets)) or 'none set'}); give the host "
                                 f"its site (dl_site, dl_site_subnets) or leave the job's network out")
    if job["network"]:
        interface, address = _pick_interface(dl_host_interfaces(hv), network=job["network"], host=host)
        return address, interface
    address = dl_host_address(hv)
    return address, _pick_interface(dl_host_interfaces(hv), address=address, host=host)[0]


def dl_job_problems(spec, group_hosts, hostvars) -> list[str]:
    """Everything that stops the job from starting, one sentence each; [] when it may start.

    `spec` is a job spec (normalised or not), `group_hosts` the host names that
    its hosts pattern resolves to, in inventory order, `hostvars` Ansible's hostvars.
    """
    job, problems = _normalise(spec)
    if not job:
        return problems
    if isinstance(group_hosts, (str, bytes)) or not hasattr(group_hosts, "__iter__"):
        return problems + [f"dl_job_problems: group_hosts must be a list of host names, "
                           f"got {type(group_hosts).__name__}"]
    if not _is_mapping(hostvars):
        return problems + [f"dl_job_problems: hostvars must be a mapping, got {type(hostvars).__name__}"]
    names = [str(name) for name in group_hosts]
    if not names:
        return problems + [f"job field hosts {job['hosts']!r} matches no host of the inventory; put the "
                           "training hosts in that group, or name a group that has hosts"]
    layout = _layout_problem(job, len(names))
    if layout:
        problems.append(layout)
    seen: dict[str, str] = {}
    for host in names:
        if host not in hostvars:
            problems.append(f"host {host}: not in hostvars; check the job's hosts pattern against the inventory")
            continue
        hv = hostvars[host]
        try:
            address, _ = _host_network(job, host, hv)
        except AnsibleFilterError as err:
            problems.append(f"host {host}: {str(err).removeprefix('dl_socket_ifname: ')}")
            address = ""
        else:
            if not address:
                problems.append(f"host {host}: no address is known; set dl_address or ansible_host to an IP, "
                                "or gather its facts")
        if address and address in seen:
            problems.append(f"host {host}: address {address} is also used by host {seen[address]}; give each "
                            "training host its own address (dl_address)")
        elif address:
            seen[address] = host
        problems += _nproc_problems(job, host, hv)
    return problems


def _endpoint(address, port) -> str:
    try:
        is_v6 = ipaddress.ip_address(address).version == 6
    except ValueError:
        is_v6 = False
    return f"[{address}]:{port}" if is_v6 else f"{address}:{port}"


def _hparams_text(hparams) -> str:
    """The hparams as the seed's key=value file, one per line; booleans as true/false."""
    return "".join(f"{key}={str(value).lower() if isinstance(value, bool) else value}\n"
                   for key, value in hparams.items())


def _tf_layout(job, names) -> tuple[dict, dict]:
    """The TF_CONFIG cluster and each host's (type, index)."""
    if job["strategy"] == "parameter_server":
        ps_count = job["parameter_servers"]
        groups = {"chief": names[:1], "ps": names[1:1 + ps_count], "worker": names[1 + ps_count:]}
    else:
        groups = {"worker": list(names)}
    tasks = {host: (kind, index) for kind, members in groups.items() for index, host in enumerate(members)}
    return groups, tasks


def dl_job_plan(spec, group_hosts, hostvars) -> dict:
    """Every rank's settings for a job across `group_hosts` (see the module's docstring for the ordering).

    Fails with the sentences of dl_job_problems when the job cannot start.
    """
    job = dl_job_spec(spec)
    problems = dl_job_problems(job, group_hosts, hostvars)
    if problems:
        raise AnsibleFilterError("dl_job_plan: the job cannot start: " + " ".join(problems))
    names = [str(name) for name in group_hosts]
    info = {}
    for host in names:
        hv = hostvars[host]
        address, interface = _host_network(job, host, hv)
        edition = _edition(hv)
        nproc = job["processes_per_node"]
        if nproc == "gpu":
            nproc = len(job["gpus"]) if job["gpus"] is not None else _gpu_count(hv, edition)
        info[host] = {"address": address, "interface": interface, "edition": edition, "nproc": nproc,
                      "cores": _physical_cores(hv)}

    pytorch = job["framework"] == "pytorch"
    # torchrun's c10d rendezvous numbers nodes in the sort order of their --local-addr strings.
    order = sorted(names, key=lambda h: info[h]["address"]) if pytorch else names
    master_addr = info[names[0]]["address"]
    rdzv_endpoint = _endpoint(master_addr, job["master_port"]) if pytorch else ""
    groups, tasks = ({}, {}) if pytorch else _tf_layout(job, names)
    tf_cluster = {kind: [_endpoint(info[h]["address"], job["tf_port"]) for h in members]
                  for kind, members in groups.items()}

    hosts, first_rank = {}, 0
    for node_rank, host in enumerate(order):
        data = info[host]
        env = {"DL_JOB_ID": job["id"], "DL_JOB_NAME": job["name"]}
        if data["interface"]:
            env["GLOO_SOCKET_IFNAME"] = data["interface"]
            env["NCCL_SOCKET_IFNAME"] = data["interface"]
        if job["gpus"] is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in job["gpus"])
            if data["edition"] == "rocm":
                env["HIP_VISIBLE_DEVICES"] = env["CUDA_VISIBLE_DEVICES"]
        entry = {"node_rank": node_rank, "nproc": data["nproc"], "first_rank": first_rank,
                 "address": data["address"], "socket_ifname": data["interface"]}
        if pytorch:
            if data["cores"]:
                # torchrun would set 1 for nproc > 1; share the physical cores between the processes instead.
                env["OMP_NUM_THREADS"] = str(max(1, data["cores"] // data["nproc"]))
            entry.update({
                "role": "rank", "task_index": node_rank, "tf_config": "", "decides_outcome": True,
                "torchrun_args": [
                    "--nnodes", str(len(names)), "--nproc-per-node", str(data["nproc"]),
                    "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv_endpoint, "--rdzv-id", job["id"],
                    "--max-restarts", "0", "--local-addr", data["address"],
                ],
            })
        else:
            kind, index = tasks[host]
            tf_config = json.dumps({"cluster": tf_cluster, "task": {"type": kind, "index": index}},
                                   separators=(",", ":"))
            env["TF_CONFIG"] = tf_config
            if job["tf_gpu_memory_fraction"] is not None:
                env["DL_TF_GPU_MEMORY_FRACTION"] = str(job["tf_gpu_memory_fraction"])
            # Under parameter_server, ps and worker tasks serve until stopped: the chief decides the outcome.
            decides = job["strategy"] != "parameter_server" or kind == "chief"
            entry.update({"role": kind, "task_index": index, "tf_config": tf_config, "decides_outcome": decides,
                          "torchrun_args": []})
        env.update(job["env"])
        entry["env"] = env
        hosts[host] = entry
        first_rank += data["nproc"]

    return {
        "job_id": job["id"],
        "name": job["name"],
        "framework": job["framework"],
        "strategy": job["strategy"],
        "world_size": first_rank,
        "nnodes": len(names),
        "master_addr": master_addr,
        "master_port": job["master_port"],
        "rdzv_endpoint": rdzv_endpoint,
        # Backend direct: every host's agent joins the first host's, which coordinates the job.
        "coordinator": names[0],
        "agent_endpoint": _endpoint(master_addr, job["agent_port"]),
        "node_order": list(order),
        "tf_cluster": tf_cluster,
        "hparams_text": _hparams_text(job["hparams"]),
        "hosts": {host: hosts[host] for host in names},
    }


class FilterModule:
    """dlcluster training filters."""

    def filters(self):
        return {
            "dl_job_spec": dl_job_spec,
            "dl_job_problems": dl_job_problems,
            "dl_job_plan": dl_job_plan,
            "dl_socket_ifname": dl_socket_ifname,
            "dl_host_interfaces": dl_host_interfaces,
            "dl_job_summary": dl_job_summary,
            "dl_hparams_merge": dl_hparams_merge,
        }


def dl_hparams_merge(file_text, hparams_text) -> str:
    """The hyper-parameter file handed to the script: the spec's hparams_file with the keys the
    spec's own hparams set removed, then those hparams (each key once, as the scripts require)."""
    overrides = {line.split("=", 1)[0].strip() for line in str(hparams_text or "").splitlines()
                 if "=" in line and not line.lstrip().startswith("#")}
    kept = [line for line in str(file_text or "").splitlines()
            if line.lstrip().startswith("#") or "=" not in line or line.split("=", 1)[0].strip() not in overrides]
    parts = ["\n".join(kept).rstrip()] if kept else []
    if overrides:
        parts.append("# hparams of the job spec\n" + str(hparams_text).rstrip())
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------
# After the job: one summary of every rank
# ---------------------------------------------------------------------------
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
