"""Training filters of dlcluster: where each rank of a job runs and with what (playbooks/train.yml).

Pure functions: the job spec, the host list and hostvars come in as arguments,
so each can be unit-tested by importing it (tests/unit/test_dl_train.py). The
spec's checks are in plugin_utils/dl_job_spec.py, what a host's facts say in
plugin_utils/dl_hosts.py (collections/ansible_collections/dlcluster/cluster).

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

import ipaddress
import json

from ansible.errors import AnsibleFilterError
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts import (
    GPU_VENDORS,
    gpu_count,
    host_address,
    host_edition,
    host_interfaces,
    is_mapping,
    physical_cores,
    with_reported,
)
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_job_spec import dl_job_spec, normalise

# ---------------------------------------------------------------------------
# Interfaces

def _iface_ipv4(interface) -> list[str]:
    addresses = []
    for entry in [interface.get("ipv4") or {}] + list(interface.get("ipv4_secondaries") or []):
        if is_mapping(entry) and entry.get("address"):
            addresses.append(str(entry["address"]))
    return addresses


def _iface_addresses(interface) -> list[str]:
    v6 = [str(e["address"]).split("%")[0] for e in interface.get("ipv6") or [] if is_mapping(e) and e.get("address")]
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
    usable = [i for i in interfaces if is_mapping(i) and i.get("device") and i.get("active", True) is not False]
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
    edition = host_edition(hv)
    cores = physical_cores(hv)
    count = gpu_count(hv, edition)
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
        interfaces = [i for i in host_interfaces(hv) if i.get("device") != tunnel]
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
        interface, address = _pick_interface(host_interfaces(hv), network=job["network"], host=host)
        return address, interface
    address = host_address(hv)
    return address, _pick_interface(host_interfaces(hv), address=address, host=host)[0]


def dl_job_problems(spec, group_hosts, hostvars, reported=None) -> list[str]:
    """Everything that stops the job from starting, one sentence each; [] when it may start.

    `spec` is a job spec (normalised or not), `group_hosts` the host names that
    its hosts pattern resolves to, in inventory order, `hostvars` Ansible's hostvars.
    `reported`: per host, what dl_job_hosts' read found there ({facts, host_state}), read over its hostvars.
    """
    job, problems = normalise(spec)
    if not job:
        return problems
    if isinstance(group_hosts, (str, bytes)) or not hasattr(group_hosts, "__iter__"):
        return problems + [f"dl_job_problems: group_hosts must be a list of host names, "
                           f"got {type(group_hosts).__name__}"]
    if not is_mapping(hostvars):
        return problems + [f"dl_job_problems: hostvars must be a mapping, got {type(hostvars).__name__}"]
    hostvars = with_reported(hostvars, reported)
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


def dl_job_plan(spec, group_hosts, hostvars, reported=None) -> dict:
    """Every rank's settings for a job across `group_hosts` (see the module's docstring for the ordering).

    Fails with the sentences of dl_job_problems when the job cannot start. `reported` as dl_job_problems reads it.
    """
    job = dl_job_spec(spec)
    hostvars = with_reported(hostvars, reported)
    problems = dl_job_problems(job, group_hosts, hostvars)
    if problems:
        raise AnsibleFilterError("dl_job_plan: the job cannot start: " + " ".join(problems))
    names = [str(name) for name in group_hosts]
    info = {}
    for host in names:
        hv = hostvars[host]
        address, interface = _host_network(job, host, hv)
        edition = host_edition(hv)
        nproc = job["processes_per_node"]
        if nproc == "gpu":
            nproc = len(job["gpus"]) if job["gpus"] is not None else gpu_count(hv, edition)
        info[host] = {"address": address, "interface": interface, "edition": edition, "nproc": nproc,
                      "cores": physical_cores(hv)}

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
    """dlcluster training filters: the interfaces, what stops a job and its plan."""

    def filters(self):
        return {
            "dl_job_problems": dl_job_problems,
            "dl_job_plan": dl_job_plan,
            "dl_socket_ifname": dl_socket_ifname,
            "dl_host_interfaces": host_interfaces,
        }
