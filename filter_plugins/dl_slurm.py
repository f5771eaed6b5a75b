"""Slurm filters of dlcluster: slurm.conf's nodes and partitions from the inventory, checks, and job states.

Pure functions, unit-tested in tests/unit/test_dl_slurm.py. The slurm role
(roles/slurm) writes slurm.conf and gres.conf from them; the launcher's Slurm
backend (roles/train, tasks slurm_*.yml) writes its batch script and reads
the job's state with them.
"""

from __future__ import annotations

import re
import shlex

from ansible.errors import AnsibleFilterError

# Slurm's node and partition names: what its parser takes without quoting.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# JobState values after which a job runs no more (squeue/scontrol).
FINAL_STATES = ("BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "TIMEOUT")
# Device files of the GPUs by vendor; AMD's are found by the rsmi plugin.
_GPU_FILES = {"nvidia": "/dev/nvidia{index}"}


def _int(value, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"{what} must be a whole number, got {value!r}") from None
    return number


def dl_slurm_node(facts, name, address, gpu_count=0, gpu_vendor="", memory_reserve_percent=5) -> dict:
    """One node of slurm.conf from a host's gathered facts.

    CPUs, sockets, cores per socket and threads per core come from Ansible's
    processor facts; RealMemory is the memory less `memory_reserve_percent`
    (the system's share, and a margin so that slurmd never finds less than
    configured, which would drain the node). GPUs become Gres=gpu:N; NVIDIA's
    device files are listed one by one (Debian's Slurm has no NVML plugin).
    """
    if not isinstance(facts, dict):
        raise AnsibleFilterError(f"dl_slurm_node: facts of {name} must be a mapping, got {type(facts).__name__}")
    if not _NAME.match(str(name)):
        raise AnsibleFilterError(f"dl_slurm_node: {name!r} is not a name Slurm accepts (letters, digits, _.-)")
    if not address:
        raise AnsibleFilterError(f"dl_slurm_node: host {name} has no cluster address; set dl_address or "
                                 "gather its facts")
    sockets = max(_int(facts.get("processor_count", 0), f"host {name}: processor_count"), 1)
    cores = max(_int(facts.get("processor_cores", 0), f"host {name}: processor_cores"), 1)
    threads = max(_int(facts.get("processor_threads_per_core", 1), f"host {name}: processor_threads_per_core"), 1)
    memory = _int(facts.get("memtotal_mb", 0), f"host {name}: memtotal_mb")
    reserve = _int(memory_reserve_percent, "slurm_memory_reserve_percent")
    if not 0 <= reserve < 100:
        raise AnsibleFilterError(f"slurm_memory_reserve_percent is {reserve}; give a percentage from 0 to 99")
    count = _int(gpu_count or 0, f"host {name}: GPU count")
    vendor = str(gpu_vendor or "")
    return {
        "name": str(name),
        # slurmd finds its line by the host's short name: NodeHostname when it differs from the inventory's.
        "hostname": str(facts.get("hostname") or name),
        "address": str(address),
        "cpus": sockets * cores * threads,
        "sockets": sockets,
        "cores_per_socket": cores,
        "threads_per_core": threads,
        "real_memory": max(memory * (100 - reserve) // 100, 1),
        "gpus": count,
        "gpu_vendor": vendor if count else "",
        "gpu_files": [_GPU_FILES[vendor].format(index=i) for i in range(count)] if vendor in _GPU_FILES else [],
    }


def dl_slurm_node_line(node) -> str:
    """The NodeName line of slurm.conf for a node from dl_slurm_node."""
    hostname = node.get("hostname") or node["name"]
    line = (f"NodeName={node['name']}" + (f" NodeHostname={hostname}" if hostname != node["name"] else "") +
            f" NodeAddr={node['address']} CPUs={node['cpus']} Sockets={node['sockets']} "
            f"CoresPerSocket={node['cores_per_socket']} ThreadsPerCore={node['threads_per_core']} "
            f"RealMemory={node['real_memory']}")
    if node.get("gpus"):
        line += f" Gres=gpu:{node['gpus']}"
    return line + " State=UNKNOWN"


def dl_slurm_gres_lines(node) -> list[str]:
    """gres.conf lines of one node: NVIDIA's device files one by one (Debian's Slurm has no NVML plugin),
    AMD's found by the rsmi plugin (slurm-wlm-rsmi-plugin, installed on ROCm nodes)."""
    if not node.get("gpus"):
        return []
    if node.get("gpu_files"):
        return [f"NodeName={node['name']} Name=gpu File={path}" for path in node["gpu_files"]]
    if node.get("gpu_vendor") == "amd":
        return [f"NodeName={node['name']} AutoDetect=rsmi"]
    raise AnsibleFilterError(f"dl_slurm_gres_lines: node {node['name']} has {node['gpus']} GPUs of an unknown "
                             f"vendor {node.get('gpu_vendor')!r}")


def dl_slurm_partitions(groups, partition_groups, node_names) -> list[dict]:
    """Partitions from inventory groups: [{name, nodes, default}], the first one Slurm's default.

    Each group's members that run slurmd (node_names) form the partition of the group's name.
    """
    if not isinstance(groups, dict):
        raise AnsibleFilterError("dl_slurm_partitions: groups must be Ansible's groups mapping")
    nodes = [str(n) for n in node_names]
    partitions = []
    for index, group in enumerate(partition_groups or []):
        members = [str(h) for h in groups.get(group, []) if str(h) in nodes]
        partitions.append({"name": str(group), "nodes": members, "default": index == 0})
    return partitions


def dl_slurm_problems(groups, controller_group, node_group, partition_groups) -> list[str]:
    """What keeps Slurm from being deployed from this inventory, one sentence each; [] when nothing does."""
    problems = []
    controllers = list(groups.get(controller_group, []))
    nodes = [str(h) for h in groups.get(node_group, [])]
    if len(controllers) != 1:
        problems.append(f"inventory group {controller_group} has {len(controllers)} hosts "
                        f"({', '.join(map(str, controllers)) or 'none'}); put exactly one host in it to run "
                        "slurmctld")
    if not nodes:
        problems.append(f"inventory group {node_group} has no hosts; put the hosts that run "
                        "jobs (slurmd) in it")
    if not partition_groups:
        problems.append("slurm_partition_groups is empty; name at least one inventory group, e.g. [workers]")
    for group in partition_groups or []:
        if not _NAME.match(str(group)):
            problems.append(f"slurm_partition_groups: {group!r} is not a name Slurm takes for a partition; "
                            "rename the group (letters, digits, _.-)")
        elif group not in groups:
            problems.append(f"slurm_partition_groups names {group}, which is not an inventory group; add the "
                            "group or drop it from the list")
        elif not [h for h in groups[group] if str(h) in nodes]:
            problems.append(f"partition {group} would be empty: no host of group {group} is in {node_group}; "
                            f"put its hosts in {node_group} or drop it from slurm_partition_groups")
    return problems


def _slurmd_fields(text: str) -> dict:
    line = next((ln for ln in str(text).splitlines() if ln.startswith("NodeName=")), "")
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def dl_slurmd_mismatch(node, slurmd_c_output) -> list[str]:
    """Where the node line from facts promises more than slurmd -C finds on the host (it would drain the node)."""
    found = _slurmd_fields(slurmd_c_output)
    if not found:
        return [f"host {node['name']}: slurmd -C printed no NodeName line, so the node's hardware cannot be "
                "checked; run slurmd -C on the host"]
    problems = []
    hostname = node.get("hostname") or node["name"]
    if found.get("NodeName", hostname) != hostname:
        problems.append(f"host {node['name']}: slurmd -C calls this host {found['NodeName']} but its facts say "
                        f"{hostname}, so slurmd would not find its line in slurm.conf; gather facts again after "
                        "changing the host name")
    for key, field in (("cpus", "CPUs"), ("sockets", "Sockets"), ("cores_per_socket", "CoresPerSocket"),
                       ("threads_per_core", "ThreadsPerCore"), ("real_memory", "RealMemory")):
        if field in found and int(node[key]) > int(found[field]):
            problems.append(f"host {node['name']}: slurm.conf would give {field}={node[key]} from the facts but "
                            f"slurmd -C finds {field}={found[field]}; Slurm would drain the node. Gather facts again "
                            "or raise slurm_memory_reserve_percent")
    return problems


def dl_slurm_job(text) -> dict:
    """`scontrol show job -o ID` as a mapping of its fields ({} when the job is unknown)."""
    line = next((ln for ln in str(text or "").splitlines() if ln.startswith("JobId=")), "")
    fields = {}
    for part in shlex.split(line):
        key, sep, value = part.partition("=")
        if sep:
            fields[key] = value
    if fields:
        fields["final"] = fields.get("JobState", "") in FINAL_STATES
    return fields


_SRUN_ERROR = re.compile(r"^srun: error: (?P<node>\S+): tasks? (?P<tasks>[\d,-]+): (?P<what>.+)$")


def dl_slurm_failed_nodes(output) -> list[dict]:
    """Nodes whose tasks failed, in srun's own words from the batch output: [{node, tasks, reason}].

    srun reports a task that ended with an error ("Exited with exit code N", "Killed") and, with
    --kill-on-bad-exit, the tasks it then stopped ("Terminated"); those are left out, since they
    did not fail first.
    """
    failed = []
    for line in str(output or "").splitlines():
        match = _SRUN_ERROR.match(line.strip())
        if not match or match["what"].strip() == "Terminated":
            continue
        entry = {"node": match["node"], "tasks": match["tasks"], "reason": match["what"].strip()}
        if entry not in failed:
            failed.append(entry)
    return failed


def dl_slurm_batch_script(job, nodes, plan_hosts, run_dir, env_path, script, hparams) -> str:
    """The sbatch script of a job: srun starts one task per node.

    PyTorch: each task runs torchrun, with the c10d rendezvous on the first allocated node. TensorFlow: each task
    runs the script with its node's TF_CONFIG (from the node's slurm-env.sh); the batch script first checks that
    Slurm allocated exactly the planned hosts, since TF_CONFIG names them. Under parameter_server the chief decides:
    when it succeeds, its task tells the step's other tasks (ps, workers, which serve until stopped) to stop.

    `job` is the normalised spec (dl_job_spec), `nodes` the job's node count, `plan_hosts` the direct plan's
    hosts (their addresses and environment, by host name), `run_dir` the job's directory on every node,
    `env_path` the environment's path, `script` the script's file name and `hparams` the hyper-parameters' path.
    """
    framework = job.get("framework")
    if framework not in ("pytorch", "tensorflow"):
        raise AnsibleFilterError(f"dl_slurm_batch_script: job {job.get('id')} has framework {framework!r}; "
                                 "the Slurm backend runs pytorch and tensorflow")
    quote = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# dlcluster job {job['id']}: written by playbooks/train.yml (backend slurm); sbatch runs it on the first",
        "# allocated node. srun starts one task per node: " + (
            "torchrun, whose c10d rendezvous runs on that first node." if framework == "pytorch"
            else "the script, with the node's TF_CONFIG from the plan."),
        "set -euo pipefail",
    ]
    if framework == "pytorch":
        port = job.get("master_port") or 29500
        lines += [
            "# Each node's cluster address, from the inventory (no name lookup).",
            "declare -A ADDRESS=(" + " ".join(f"[{h}]={quote(v['address'])}" for h, v in sorted(plan_hosts.items()))
            + ")",
            'first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            f'export DL_RDZV_ENDPOINT="${{ADDRESS[$first]}}:{port}"',
            f"cd {quote(run_dir)}",
            f"echo \"dlcluster: job {job['id']} on $SLURM_JOB_NODELIST, rendezvous at $DL_RDZV_ENDPOINT\"",
        ]
        task = _srun_task(job, job.get("processes_per_node", 1), run_dir, env_path, script, hparams)
    else:
        planned = " ".join(sorted(plan_hosts))
        lines += [
            "# TF_CONFIG names the planned hosts: Slurm must have allocated exactly those.",
            f"planned={quote(planned)}",
            'allocated=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | LC_ALL=C sort | tr "\\n" " " | sed "s/ *$//")',
            'if [ "$allocated" != "$planned" ]; then',
            '  echo "dlcluster: Slurm allocated $allocated but the job\'s TF_CONFIG names $planned" >&2',
            "  exit 1",
            "fi",
            f"cd {quote(run_dir)}",
            f"echo \"dlcluster: job {job['id']} on $SLURM_JOB_NODELIST\"",
        ]
        task = _srun_task_tensorflow(job, run_dir, env_path, script, hparams)
    lines += [
        "# One task per node holding every CPU the job has there.",
        "# (--ntasks overrides the job's SLURM_NTASKS, which srun would otherwise inherit.)",
        "exec srun --kill-on-bad-exit=1 --nodes=\"$SLURM_JOB_NUM_NODES\" --ntasks=\"$SLURM_JOB_NUM_NODES\" \\",
        "  --ntasks-per-node=1 \\",
        "  --cpus-per-task=$(( SLURM_NTASKS_PER_NODE * SLURM_CPUS_PER_TASK )) \\",
        f"  bash -c {quote(task)} dlcluster-task",
        "",
    ]
    return "\n".join(lines)


def _node_settings(run_dir) -> str:
    """The task's first words: the host's CPU settings, then the node's own (its slurm-env.sh)."""
    return (f"set -a; [ -f /etc/dlcluster/cpu.env ] && . /etc/dlcluster/cpu.env; . {shlex.quote(run_dir)}/slurm-env.sh; "
            "set +a; ")


def _srun_task(job, nproc, run_dir, env_path, script, hparams) -> str:
    """What each srun task of a PyTorch job runs: the node's settings, then torchrun (its output in node.log, its
    exit code in exit_code)."""
    # Slurm's variables, DL_RDZV_ENDPOINT (exported by the batch script; srun passes it on) and the node's
    # DL_LOCAL_ADDR (its slurm-env.sh: the node's cluster address, so that no name is looked up) are expanded by
    # this bash, inside the task; every other word (paths, the job's own args) is quoted.
    expanded = ["--nnodes=$SLURM_JOB_NUM_NODES", "--rdzv-id=$SLURM_JOB_ID", "--rdzv-endpoint=$DL_RDZV_ENDPOINT",
                "--local-addr=$DL_LOCAL_ADDR"]
    quoted = [f"--nproc-per-node={nproc}", "--rdzv-backend=c10d", "--max-restarts=0", "--log-dir", f"{run_dir}/logs",
              "--redirects", "3", "--tee", "3", f"{run_dir}/code/{script}", *map(str, job.get("args", [])),
              "--hparams", hparams]
    command = " ".join([shlex.quote(f"{env_path}/bin/torchrun"), *expanded, *map(shlex.quote, quoted)])
    # The node's log (node.log, as with the direct backend) keeps torchrun's report of a failed rank.
    run = shlex.quote(run_dir)
    return (f"{_node_settings(run_dir)}{command} 2>&1 | tee -a {run}/node.log; code=${{PIPESTATUS[0]}}; "
            f"echo $code > {run}/exit_code; exit $code")


def _srun_task_tensorflow(job, run_dir, env_path, script, hparams) -> str:
    """What each srun task of a TensorFlow job runs: the node's settings (TF_CONFIG, DL_TF_ROLE), then the script
    (its output in node.log, its exit code in exit_code).

    Under parameter_server the ps and worker tasks serve until stopped: the chief, once it succeeded, sends the
    step's tasks SIGUSR1 (scancel --signal); a server's task then ends its script and exits 0. A chief that fails
    ends the job as FAILED (srun --kill-on-bad-exit stops the others)."""
    run = shlex.quote(run_dir)
    command = " ".join(shlex.quote(word) for word in [f"{env_path}/bin/python", f"{run_dir}/code/{script}",
                                                      *map(str, job.get("args", [])), "--hparams", hparams])
    if job.get("strategy") != "parameter_server":
        return (f"{_node_settings(run_dir)}{command} >> {run}/node.log 2>&1; code=$?; "
                f"echo $code > {run}/exit_code; exit $code")
    return (
        f"{_node_settings(run_dir)}"
        'if [ "$DL_TF_ROLE" = chief ]; then '
        f"trap '' USR1; {command} >> {run}/node.log 2>&1; code=$?; echo $code > {run}/exit_code; "
        'if [ "$code" -eq 0 ]; then scancel --signal=USR1 "$SLURM_JOB_ID.$SLURM_STEP_ID"; fi; exit $code; '
        "fi; "
        "stopped=0; pid=; trap 'stopped=1; [ -n \"$pid\" ] && kill -TERM \"$pid\" 2>/dev/null' USR1; "
        f"{command} >> {run}/node.log 2>&1 & pid=$!; "
        'while :; do wait "$pid" && code=0 || code=$?; '
        'if [ "$code" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then continue; fi; break; done; '
        'if [ "$stopped" = 1 ]; then '
        f'echo "dlcluster: the chief succeeded; this $DL_TF_ROLE task stops" >> {run}/node.log; code=0; fi; '
        f"echo $code > {run}/exit_code; exit $code"
    )


def _sinfo_nodes(text) -> list[dict]:
    """`sinfo --noheader --Node --format '%N|%P|%c|%G|%T'` as [{node, partition, default, cpus, gpus, state}]."""
    rows = []
    for line in str(text or "").splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5:
            continue
        node, partition, cpus, gres, state = parts
        gpus = sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))
        rows.append({"node": node, "partition": partition.rstrip("*"), "default": partition.endswith("*"),
                     "cpus": int(cpus) if cpus.isdigit() else 0, "gpus": gpus, "state": state})
    return rows


def dl_slurm_job_resources(job, group_hosts, sinfo_text) -> dict:
    """What a job asks of Slurm, checked against `sinfo` before anything is submitted.

    Returns {partition, nodes, ntasks_per_node, cpus_per_task, gpus_per_node, problems}: the partition is the
    job's, else the one named like its hosts group, else Slurm's default; nodes is the number of the job's
    hosts; cpus_per_task is the smallest node's CPUs divided by the processes per node. problems names the field
    and the fix, one sentence each ([] when the job may be submitted).
    """
    rows = _sinfo_nodes(sinfo_text)
    hosts = [str(h) for h in group_hosts]
    partitions = sorted({r["partition"] for r in rows})
    default = next((r["partition"] for r in rows if r["default"]), "")
    partition = job.get("partition") or (job.get("hosts") if job.get("hosts") in partitions else default)
    result = {"partition": partition, "nodes": len(hosts), "ntasks_per_node": 1, "cpus_per_task": 1,
              "gpus_per_node": 0, "problems": []}
    problems = result["problems"]
    if not rows:
        problems.append("sinfo lists no Slurm node; deploy Slurm (playbooks/slurm.yml) and check that slurmctld "
                        "runs, or use backend: direct")
        return result
    if partition not in partitions:
        problems.append(f"job field partition is {partition!r}, which Slurm does not have (partitions: "
                        f"{', '.join(partitions)}); name one of them")
        return result
    members = [r for r in rows if r["partition"] == partition]
    outside = sorted({r["node"] for r in members} - set(hosts))
    if outside:
        problems.append(f"partition {partition} holds nodes outside the job's hosts ({', '.join(outside)}), which "
                        f"would lack the job's code; set hosts to a group that holds the whole partition, or name "
                        "another partition in the job field partition")
    if len(hosts) > len(members):
        problems.append(f"the job's hosts ({len(hosts)}) are more than the {len(members)} nodes of partition "
                        f"{partition}; choose fewer hosts or a larger partition")
    nproc = job.get("processes_per_node", 1)
    smallest_cpus = min(r["cpus"] for r in members)
    fewest_gpus = min(r["gpus"] for r in members)
    # The GPUs the node's processes use: those named, else one per process (all of the node's for "gpu");
    # on GPU nodes an integer processes_per_node gets its GPUs allocated too (cgroups hide the others).
    if job.get("gpus") is not None:
        gpus_per_node = len(job["gpus"])
    elif nproc == "gpu" or job.get("framework") == "tensorflow":
        # TensorFlow runs one process per host that uses every GPU of the host.
        gpus_per_node = fewest_gpus
    else:
        gpus_per_node = min(int(nproc), fewest_gpus)
    if nproc == "gpu":
        nproc = gpus_per_node
    if isinstance(nproc, int) and nproc > smallest_cpus:
        problems.append(f"job field processes_per_node is {nproc} but a node of partition {partition} has "
                        f"{smallest_cpus} CPUs; use at most {smallest_cpus}")
    if gpus_per_node > fewest_gpus:
        problems.append(f"the job asks {gpus_per_node} GPUs per node but a node of partition {partition} has "
                        f"{fewest_gpus}; ask fewer (job fields gpus, processes_per_node) or another partition")
    if isinstance(nproc, int) and nproc > 0:
        result.update(ntasks_per_node=nproc, cpus_per_task=max(smallest_cpus // nproc, 1),
                      gpus_per_node=gpus_per_node)
    return result


class FilterModule:
    """dlcluster Slurm filters."""

    def filters(self):
        return {
            "dl_slurm_node": dl_slurm_node,
            "dl_slurm_node_line": dl_slurm_node_line,
            "dl_slurm_gres_lines": dl_slurm_gres_lines,
            "dl_slurm_partitions": dl_slurm_partitions,
            "dl_slurm_problems": dl_slurm_problems,
            "dl_slurmd_mismatch": dl_slurmd_mismatch,
            "dl_slurm_job": dl_slurm_job,
            "dl_slurm_failed_nodes": dl_slurm_failed_nodes,
            "dl_slurm_batch_script": dl_slurm_batch_script,
            "dl_slurm_job_resources": dl_slurm_job_resources,
        }
