"""Unit tests of filter_plugins/dl_slurm.py."""

import pytest
from ansible.errors import AnsibleFilterError
from conftest import wait_until

from dl_slurm import (FilterModule, dl_slurm_batch_script, dl_slurm_failed_nodes, dl_slurm_gres_lines, dl_slurm_job,
                      dl_slurm_job_resources, dl_slurm_node, dl_slurm_node_line, dl_slurm_partitions, dl_slurm_problems, dl_slurmd_mismatch)

FACTS = {"processor_count": 2, "processor_cores": 16, "processor_threads_per_core": 2, "memtotal_mb": 257000}


def test_node_from_facts_counts_every_thread_and_keeps_a_memory_reserve():
    node = dl_slurm_node(FACTS, "gpu1", "10.0.0.11", 4, "nvidia", 5)
    assert node["cpus"] == 64
    assert (node["sockets"], node["cores_per_socket"], node["threads_per_core"]) == (2, 16, 2)
    assert node["real_memory"] == 244150
    assert node["gpu_files"] == ["/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia2", "/dev/nvidia3"]
    assert dl_slurm_node_line(node) == (
        "NodeName=gpu1 NodeAddr=10.0.0.11 CPUs=64 Sockets=2 CoresPerSocket=16 ThreadsPerCore=2 "
        "RealMemory=244150 Gres=gpu:4 State=UNKNOWN")


def test_cpu_node_has_no_gres():
    node = dl_slurm_node({"processor_count": 1, "processor_cores": 2, "memtotal_mb": 1000}, "cpu1", "10.0.0.2")
    assert node["cpus"] == 2 and node["gpus"] == 0
    assert "Gres" not in dl_slurm_node_line(node)
    assert dl_slurm_gres_lines(node) == []


def test_gres_lists_nvidia_files_and_lets_rsmi_find_amd_gpus():
    nvidia = dl_slurm_node(FACTS, "gpu1", "10.0.0.11", 2, "nvidia")
    assert dl_slurm_gres_lines(nvidia) == ["NodeName=gpu1 Name=gpu File=/dev/nvidia0",
                                           "NodeName=gpu1 Name=gpu File=/dev/nvidia1"]
    amd = dl_slurm_node(FACTS, "mi1", "10.0.0.12", 8, "amd")
    assert dl_slurm_gres_lines(amd) == ["NodeName=mi1 AutoDetect=rsmi"]
    assert "Gres=gpu:8" in dl_slurm_node_line(amd)


@pytest.mark.parametrize("name, address, reserve, match", [
    ("bad name", "10.0.0.1", 5, "not a name Slurm accepts"),
    ("cpu1", "", 5, "no cluster address"),
    ("cpu1", "10.0.0.1", 100, "percentage from 0 to 99"),
])
def test_node_refuses_what_slurm_could_not_use(name, address, reserve, match):
    with pytest.raises(AnsibleFilterError, match=match):
        dl_slurm_node(FACTS, name, address, 0, "", reserve)


def test_partitions_follow_groups_and_keep_only_slurm_nodes():
    groups = {"workers": ["cpu1", "cpu2", "head"], "gpu": ["gpu1"], "all": []}
    assert dl_slurm_partitions(groups, ["workers", "gpu"], ["cpu1", "cpu2", "gpu1"]) == [
        {"name": "workers", "nodes": ["cpu1", "cpu2"], "default": True},
        {"name": "gpu", "nodes": ["gpu1"], "default": False},
    ]


def test_problems_name_the_group_and_the_fix():
    groups = {"slurm_controller": ["h1", "h2"], "slurm_nodes": ["cpu1"], "workers": ["cpu1"], "empty": ["h1"]}
    problems = dl_slurm_problems(groups, "slurm_controller", "slurm_nodes", ["workers", "missing", "empty"])
    assert len(problems) == 3
    assert "slurm_controller has 2 hosts (h1, h2); put exactly one host" in problems[0]
    assert "names missing, which is not an inventory group" in problems[1]
    assert "partition empty would be empty" in problems[2]
    assert dl_slurm_problems({"slurm_controller": ["h"], "slurm_nodes": ["c"], "w": ["c"]},
                             "slurm_controller", "slurm_nodes", ["w"]) == []
    assert "slurm_nodes has no hosts" in dl_slurm_problems({"slurm_controller": ["h"]}, "slurm_controller",
                                                           "slurm_nodes", ["w"])[0]


def test_slurmd_mismatch_names_what_would_drain_the_node():
    node = dl_slurm_node(FACTS, "gpu1", "10.0.0.11")
    found = ("NodeName=gpu1 CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 ThreadsPerCore=2 "
             "RealMemory=257000\nUpTime=3-01:02:03\n")
    assert dl_slurmd_mismatch(node, found) == []
    fewer = found.replace("CPUs=64", "CPUs=32").replace("RealMemory=257000", "RealMemory=2000")
    problems = dl_slurmd_mismatch(node, fewer)
    assert [p.split(" from")[0] for p in problems] == ["host gpu1: slurm.conf would give CPUs=64",
                                                       "host gpu1: slurm.conf would give RealMemory=244150"]
    assert "slurmd -C printed no NodeName line" in dl_slurmd_mismatch(node, "")[0]


def test_a_host_named_otherwise_than_in_the_inventory_gets_its_node_hostname_and_is_checked():
    node = dl_slurm_node({**FACTS, "hostname": "rack3-gpu1"}, "gpu1", "10.0.0.11")
    assert dl_slurm_node_line(node).startswith("NodeName=gpu1 NodeHostname=rack3-gpu1 NodeAddr=10.0.0.11 ")
    found = "NodeName=rack3-gpu1 CPUs=64 Boards=1 SocketsPerBoard=2 CoresPerSocket=16 ThreadsPerCore=2\n"
    assert dl_slurmd_mismatch(node, found) == []
    renamed = dl_slurmd_mismatch(node, found.replace("rack3-gpu1", "gpu-old"))
    assert renamed and "slurmd -C calls this host gpu-old but its facts say rack3-gpu1" in renamed[0]


def test_job_state_parsed_from_scontrol():
    text = ("JobId=12 JobName=pytorch-ddp-mnist UserId=ubuntu(1000) JobState=FAILED Reason=NonZeroExitCode "
            "ExitCode=1:0 NodeList=cpu[1-2] Command=/home/ubuntu/runs/x/job.sbatch Comment=\"a b\"\n")
    job = dl_slurm_job(text)
    assert job["JobState"] == "FAILED" and job["final"] is True
    assert job["NodeList"] == "cpu[1-2]" and job["Comment"] == "a b"
    assert dl_slurm_job("JobId=3 JobState=RUNNING")["final"] is False
    assert dl_slurm_job("slurm_load_jobs error: Invalid job id specified") == {}


def test_failed_nodes_from_srun_leave_out_tasks_srun_terminated():
    output = "\n".join([
        "dlcluster: job x on cpu[1-2]",
        "srun: error: cpu2: task 1: Exited with exit code 1",
        "srun: error: cpu1: task 0: Terminated",
        "srun: error: cpu2: task 1: Exited with exit code 1",
        "srun: error: cpu3: tasks 4-5: Killed",
    ])
    assert dl_slurm_failed_nodes(output) == [
        {"node": "cpu2", "tasks": "1", "reason": "Exited with exit code 1"},
        {"node": "cpu3", "tasks": "4-5", "reason": "Killed"},
    ]
    assert dl_slurm_failed_nodes("") == []


def test_batch_script_starts_one_torchrun_per_node_with_the_first_node_as_rendezvous():
    job = {"id": "ddp", "framework": "pytorch", "processes_per_node": 2, "master_port": 29511, "args": ["--x", "a b"]}
    hosts = {"cpu2": {"address": "10.0.0.3"}, "cpu1": {"address": "10.0.0.2"}}
    script = dl_slurm_batch_script(job, 2, hosts, "/home/u/runs/ddp", "/home/u/workspaces/py3", "train.py",
                                   "/home/u/runs/ddp/hparams.conf")
    assert script.startswith("#!/bin/bash\n")
    assert "declare -A ADDRESS=([cpu1]=10.0.0.2 [cpu2]=10.0.0.3)" in script
    assert 'export DL_RDZV_ENDPOINT="${ADDRESS[$first]}:29511"' in script
    assert ('srun --kill-on-bad-exit=1 --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" \\\n'
            '  --ntasks-per-node=1 \\\n') in script
    assert "--cpus-per-task=$(( SLURM_NTASKS_PER_NODE * SLURM_CPUS_PER_TASK ))" in script
    for part in ("--nproc-per-node=2", "--rdzv-id=$SLURM_JOB_ID", "--local-addr=$DL_LOCAL_ADDR",
                 "/home/u/runs/ddp/code/train.py", "'\"'\"'a b'\"'\"'"):
        assert part in script
    with pytest.raises(AnsibleFilterError, match="the Slurm backend runs pytorch and tensorflow"):
        dl_slurm_batch_script({**job, "framework": "mxnet"}, 2, hosts, "/r", "/e", "t.py", "/h")


def test_filter_module_exports_every_filter():
    assert set(FilterModule().filters()) == {
        "dl_slurm_node", "dl_slurm_node_line", "dl_slurm_gres_lines", "dl_slurm_partitions", "dl_slurm_problems",
        "dl_slurmd_mismatch", "dl_slurm_job", "dl_slurm_failed_nodes", "dl_slurm_batch_script",
        "dl_slurm_job_resources"}


def test_batch_script_is_valid_bash_and_its_task_too(tmp_path):
    import shlex
    import subprocess
    job = {"id": "ddp", "framework": "pytorch", "processes_per_node": "gpu", "master_port": 29500,
           "args": ["--tag=$HOME"]}
    script = dl_slurm_batch_script(job, 2, {"cpu1": {"address": "10.0.0.2"}}, "/r", "/e", "t.py", "/r/h.conf")
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    task = shlex.split(script.split("bash -c ", 1)[1])[0]
    assert subprocess.run(["bash", "-n", "-c", task], check=False).returncode == 0
    assert "--nproc-per-node=gpu" in task and "tee -a /r/node.log; code=${PIPESTATUS[0]}" in task
    # The job's own args reach the script as written; only Slurm's and the node's variables are expanded.
    assert "'--tag=$HOME'" in task and "--rdzv-endpoint=$DL_RDZV_ENDPOINT" in task


SINFO = "cpu1|workers*|8|(null)|idle\ncpu2|workers*|8|(null)|mixed\ngpu1|gpu|64|gpu:4(S:0-1)|idle\n"


def test_job_resources_take_the_partition_named_like_the_hosts_and_split_the_cpus():
    job = {"hosts": "workers", "processes_per_node": 2, "gpus": None, "partition": None}
    assert dl_slurm_job_resources(job, ["cpu1", "cpu2"], SINFO) == {
        "partition": "workers", "nodes": 2, "ntasks_per_node": 2, "cpus_per_task": 4, "gpus_per_node": 0,
        "problems": []}
    gpu = dl_slurm_job_resources({"hosts": "trainers", "processes_per_node": "gpu", "gpus": None,
                                  "partition": "gpu"}, ["gpu1"], SINFO)
    assert (gpu["ntasks_per_node"], gpu["gpus_per_node"], gpu["cpus_per_task"], gpu["problems"]) == (4, 4, 16, [])
    # An integer processes_per_node on GPU nodes gets its GPUs allocated (one each, at most the node's).
    two = dl_slurm_job_resources({"hosts": "gpu", "processes_per_node": 2, "gpus": None, "partition": "gpu"},
                                 ["gpu1"], SINFO)
    assert (two["ntasks_per_node"], two["gpus_per_node"], two["cpus_per_task"]) == (2, 2, 32)
    # TensorFlow: one process per host that uses every GPU of the node.
    tf = dl_slurm_job_resources({"hosts": "gpu", "framework": "tensorflow", "processes_per_node": 1, "gpus": None,
                                 "partition": "gpu"}, ["gpu1"], SINFO)
    assert (tf["ntasks_per_node"], tf["gpus_per_node"], tf["cpus_per_task"]) == (1, 4, 64)
    # No partition named like the hosts: Slurm's default partition.
    assert dl_slurm_job_resources({**job, "hosts": "trainers"}, ["cpu1", "cpu2"], SINFO)["partition"] == "workers"


@pytest.mark.parametrize("job, hosts, words", [
    ({"partition": "nope"}, ["cpu1", "cpu2"], "job field partition is 'nope', which Slurm does not have"),
    ({"processes_per_node": 9}, ["cpu1", "cpu2"], "processes_per_node is 9 but a node of partition workers has 8"),
    ({"gpus": [0, 1]}, ["cpu1", "cpu2"], "asks 2 GPUs per node but a node of partition workers has 0"),
    ({}, ["cpu1"], "partition workers holds nodes outside the job's hosts (cpu2)"),
    ({}, ["cpu1", "cpu2", "cpu3"], "the job's hosts (3) are more than the 2 nodes of partition workers"),
])
def test_job_resources_refuse_what_slurm_cannot_give_naming_the_field(job, hosts, words):
    spec = {"hosts": "workers", "processes_per_node": 1, "gpus": None, "partition": None, **job}
    problems = dl_slurm_job_resources(spec, hosts, SINFO)["problems"]
    assert any(words in problem for problem in problems), problems
    assert "deploy Slurm" in dl_slurm_job_resources(spec, hosts, "")["problems"][0]


# ------------------------------------------------------------- TensorFlow through Slurm -----

def _stub(path, body):
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)


def _tf_node(tmp_path, role, python_body):
    """A node's job directory and environment: slurm-env.sh (TF_CONFIG, the role, PATH with stubs) and a stub
    python that runs `python_body`."""
    run, env, bins = tmp_path / "run", tmp_path / "env", tmp_path / "bin"
    for directory in (run, env / "bin", bins):
        directory.mkdir(parents=True, exist_ok=True)
    _stub(env / "bin" / "python", python_body)
    _stub(bins / "scancel", f'echo "$@" > {tmp_path}/scancel.args')
    (run / "slurm-env.sh").write_text(f"TF_CONFIG='{{\"task\": {{\"type\": \"{role}\"}}}}'\nDL_TF_ROLE={role}\n"
                                      f"PATH={env}/bin:{bins}:/usr/bin:/bin\n")
    return run, env


def _read(path):
    return path.read_text() if path.exists() else ""


def _tf_task(job, run, env):
    import shlex
    script = dl_slurm_batch_script(job, 2, {"cpu1": {"address": "10.0.0.2"}, "cpu2": {"address": "10.0.0.3"}},
                                   str(run), str(env), "tf.py", f"{run}/hparams.conf")
    return script, shlex.split(script.split("bash -c ", 1)[1])[0]


TF = {"id": "tfj", "framework": "tensorflow", "strategy": "multi_worker_mirrored", "args": ["--x", "a b"]}


def test_tensorflow_task_runs_the_script_with_the_nodes_tf_config_and_records_its_exit(tmp_path):
    import subprocess
    run, env = _tf_node(tmp_path, "worker", 'echo "TF_CONFIG=$TF_CONFIG args=$*"; exit 3')
    _, task = _tf_task(TF, run, env)
    done = subprocess.run(["bash", "-c", task, "dlcluster-task"], check=False, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 3
    assert (run / "exit_code").read_text() == "3\n"
    log = (run / "node.log").read_text()
    assert 'TF_CONFIG={"task": {"type": "worker"}}' in log and f"args={run}/code/tf.py --x a b --hparams" in log


def test_parameter_server_chief_success_tells_the_servers_to_stop(tmp_path):
    import subprocess
    ps = {**TF, "strategy": "parameter_server"}
    run, env = _tf_node(tmp_path, "chief", "echo chief trained; exit 0")
    _, task = _tf_task(ps, run, env)
    environment = {"PATH": "/usr/bin:/bin", "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}
    assert subprocess.run(["bash", "-c", task, "t"], check=False, env=environment).returncode == 0
    assert (tmp_path / "scancel.args").read_text() == "--signal=USR1 77.0\n"
    # A failed chief tells nobody (srun --kill-on-bad-exit ends the job as FAILED).
    (tmp_path / "scancel.args").unlink()
    _stub(env / "bin" / "python", "exit 1")
    assert subprocess.run(["bash", "-c", task, "t"], check=False, env=environment).returncode == 1
    assert not (tmp_path / "scancel.args").exists()


def test_parameter_server_task_serves_until_the_step_is_signalled_then_exits_0(tmp_path):
    import os
    import signal
    import subprocess
    ps = {**TF, "strategy": "parameter_server"}
    run, env = _tf_node(tmp_path, "ps", "echo serving; sleep 60")
    _, task = _tf_task(ps, run, env)
    server = subprocess.Popen(["bash", "-c", task, "t"], env={"PATH": "/usr/bin:/bin"}, start_new_session=True)
    # Serving: the task's USR1 trap is set before it starts the server, which says "serving" in node.log.
    wait_until(lambda: "serving" in _read(run / "node.log"))
    assert server.poll() is None, "the ps task ended on its own"
    os.killpg(server.pid, signal.SIGUSR1)  # what scancel --signal=USR1 does to every process of the step
    assert server.wait(timeout=10) == 0
    assert (run / "exit_code").read_text() == "0\n"
    assert "the chief succeeded; this ps task stops" in (run / "node.log").read_text()


def test_tensorflow_batch_script_refuses_an_allocation_other_than_the_planned_hosts(tmp_path):
    import subprocess
    run, env = _tf_node(tmp_path, "worker", "exit 0")
    script, _ = _tf_task(TF, run, env)
    bins = tmp_path / "slurm"
    bins.mkdir()
    _stub(bins / "srun", f'echo srun "$@" > {tmp_path}/srun.args')
    environment = {"PATH": f"{bins}:/usr/bin:/bin", "SLURM_JOB_NODELIST": "x", "SLURM_JOB_NUM_NODES": "2",
                   "SLURM_NTASKS_PER_NODE": "1", "SLURM_CPUS_PER_TASK": "2"}
    _stub(bins / "scontrol", "printf 'cpu1\\ncpu3\\n'")
    refused = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, env=environment)
    assert refused.returncode == 1 and "Slurm allocated cpu1 cpu3 but the job's TF_CONFIG names cpu1 cpu2" in \
        refused.stderr
    assert not (tmp_path / "srun.args").exists()
    _stub(bins / "scontrol", "printf 'cpu2\\ncpu1\\n'")
    started = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False, env=environment)
    assert started.returncode == 0, started.stderr
    assert "--ntasks=2 --ntasks-per-node=1 --cpus-per-task=2 bash -c" in (tmp_path / "srun.args").read_text()
