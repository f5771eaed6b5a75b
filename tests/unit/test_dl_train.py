"""Unit tests of the training filters: filter_plugins/dl_train_spec.py, dl_train_plan.py and dl_train_summary.py,
and the spec and host-fact code they share (plugin_utils of collections/ansible_collections/dlcluster/cluster).

Host fixtures carry the facts that roles/hardware_facts publishes (dl_hardware
from library/dl_hardware_facts.py, dl_edition_effective) and Ansible's
interface facts (ansible_interfaces, ansible_<ifname>).
"""

import json
from pathlib import Path
import re

import pytest
from ansible.errors import AnsibleFilterError

import dl_train_plan
import dl_train_spec
import dl_train_summary
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_job_spec import JOB_FIELDS
from dl_train_plan import dl_job_plan, dl_job_problems, dl_socket_ifname
from dl_train_plan import host_interfaces as dl_host_interfaces
from dl_train_spec import dl_hparams_merge, dl_job_spec
from dl_train_summary import dl_job_summary


def iface(device, address=None, network=None, netmask="255.255.255.0", secondaries=(), active=True,
          kind="ether", ipv6=()):
    fact = {"device": device, "active": active, "type": kind, "mtu": 1500}
    if address:
        fact["ipv4"] = {"address": address, "netmask": netmask, "network": network or address.rsplit(".", 1)[0] + ".0",
                        "prefix": "24"}
    if secondaries:
        fact["ipv4_secondaries"] = [{"address": a, "netmask": netmask, "network": a.rsplit(".", 1)[0] + ".0",
                                     "prefix": "24"} for a in secondaries]
    if ipv6:
        fact["ipv6"] = [{"address": a, "prefix": "64", "scope": "global"} for a in ipv6]
    return fact


LO = iface("lo", "127.0.0.1", "127.0.0.0", "255.0.0.0", kind="loopback")


def host(address, cores=8, edition="cpu", gpus=0, interfaces=None, **extra):
    """hostvars of a gathered host: dl_hardware as dl_hardware_facts returns it, and interface facts."""
    vendor = {"nvidia": "nvidia", "rocm": "amd"}.get(edition)
    interfaces = interfaces if interfaces is not None else [LO, iface("eth0", address)]
    hv = {
        "ansible_host": address,
        "dl_edition_effective": edition,
        "dl_hardware": {
            "gpus": [{"pci_slot": f"0000:{i + 1:02x}:00.0", "vendor": vendor, "model": "GPU"} for i in range(gpus)],
            "nvidia_gpus": gpus if vendor == "nvidia" else 0,
            "amd_gpus": gpus if vendor == "amd" else 0,
            "cpu": {"model": "Xeon", "flags": ["avx2"], "logical_cpus": cores * 2, "physical_cores": cores,
                    "sockets": 1},
        },
        "ansible_interfaces": [i["device"] for i in interfaces],
    }
    for fact in interfaces:
        hv["ansible_" + fact["device"].replace("-", "_")] = fact
    hv.update(extra)
    return hv


def cluster(*addresses, **kwargs):
    hostvars = {f"node{i}": host(address, **kwargs) for i, address in enumerate(addresses)}
    return list(hostvars), hostvars


def job(**fields):
    spec = {"name": "mnist", "framework": "pytorch", "hosts": "trainers", "script": "examples/mnist.py"}
    spec.update(fields)
    return spec


def tf_job(**fields):
    return job(framework="tensorflow", **fields)


def error_match(text):
    return pytest.raises(AnsibleFilterError, match=re.escape(text))


# ---------------------------------------------------------------------------
# dl_job_spec

class TestJobSpec:
    def test_minimal_pytorch_job_gets_every_default(self):
        assert dl_job_spec(job()) == {
            "name": "mnist", "id": "mnist", "framework": "pytorch", "strategy": "ddp", "hosts": "trainers",
            "processes_per_node": 1, "script": "examples/mnist.py", "args": [], "hparams": {},
            "hparams_file": None, "env": {}, "venv": "py3", "gpus": None, "tf_gpu_memory_fraction": None,
            "timeout_minutes": 60, "master_port": 29500, "tf_port": 23456, "agent_port": 29400,
            "parameter_servers": 1, "network": None, "backend": "direct", "partition": None, "account": None,
        }

    def test_backend_slurm_takes_a_partition_and_both_frameworks(self):
        assert dl_job_spec(job(backend="slurm", partition="workers"))["partition"] == "workers"
        with error_match("job field backend is 'pbs'; use direct"):
            dl_job_spec(job(backend="pbs"))
        with error_match("job field partition is for backend slurm"):
            dl_job_spec(job(partition="workers"))
        with error_match("job field partition is 'a b'; give a Slurm partition name"):
            dl_job_spec(job(backend="slurm", partition="a b"))
        assert dl_job_spec(tf_job(backend="slurm"))["backend"] == "slurm"

    def test_fields_come_back_in_a_fixed_order(self):
        assert tuple(dl_job_spec(job())) == JOB_FIELDS

    def test_tensorflow_defaults_to_multi_worker_mirrored(self):
        assert dl_job_spec(tf_job())["strategy"] == "multi_worker_mirrored"

    def test_explicit_id(self):
        assert dl_job_spec(job(id="mnist-2025.01_a"))["id"] == "mnist-2025.01_a"

    def test_defaults_merge_under_the_spec(self):
        defaults = {"venv": "torch", "timeout_minutes": 30, "env": {"A": "1", "B": "2"}, "hparams": {"lr": 0.1}}
        result = dl_job_spec(job(timeout_minutes=5, env={"B": "3"}, hparams={"epochs": 2}), defaults)
        assert result["venv"] == "torch"
        assert result["timeout_minutes"] == 5
        assert result["env"] == {"A": "1", "B": "3"}
        assert result["hparams"] == {"lr": 0.1, "epochs": 2}

    def test_normalising_twice_changes_nothing(self):
        spec = job(processes_per_node="GPU", gpus="0,1", network="10.1.2.3/16", args=["--epochs", 3],
                   env={"OMP_PROC_BIND": 1}, hosts=["gpu", "rack1"])
        once = dl_job_spec(spec)
        assert dl_job_spec(once) == once
        assert dl_job_spec(tf_job(strategy="parameter_server", parameter_servers=2)) == dl_job_spec(
            dl_job_spec(tf_job(strategy="parameter_server", parameter_servers=2)))

    def test_values_from_extra_vars_are_converted(self):
        result = dl_job_spec(job(processes_per_node="2", master_port="29600", timeout_minutes="15",
                                 gpus=["0", "1"], args=["--epochs", 3, 0.5], env={"OMP_PROC_BIND": 1}))
        assert result["processes_per_node"] == 2
        assert result["master_port"] == 29600
        assert result["timeout_minutes"] == 15
        assert result["gpus"] == [0, 1]
        assert result["args"] == ["--epochs", "3", "0.5"]
        assert result["env"] == {"OMP_PROC_BIND": "1"}

    @pytest.mark.parametrize("value,expected", [("gpu", "gpu"), ("GPU", "gpu"), (4, 4), ("4", 4)])
    def test_processes_per_node(self, value, expected):
        assert dl_job_spec(job(processes_per_node=value))["processes_per_node"] == expected

    @pytest.mark.parametrize("value,expected", [("0,1", [0, 1]), ("3", [3]), (2, [2]), ([1, 0], [1, 0])])
    def test_gpus(self, value, expected):
        assert dl_job_spec(job(gpus=value))["gpus"] == expected

    def test_network_is_normalised(self):
        assert dl_job_spec(job(network="10.10.3.4/16"))["network"] == "10.10.0.0/16"

    def test_host_list_becomes_a_union_pattern(self):
        assert dl_job_spec(job(hosts=["gpu_a", "gpu_b"]))["hosts"] == "gpu_a:gpu_b"

    def test_tensorflow_parameter_server_fields(self):
        result = dl_job_spec(tf_job(strategy="parameter_server", parameter_servers=2,
                                    tf_gpu_memory_fraction="0.5", tf_port=2222))
        assert (result["strategy"], result["parameter_servers"], result["tf_gpu_memory_fraction"],
                result["tf_port"]) == ("parameter_server", 2, 0.5, 2222)

    @pytest.mark.parametrize("fields,why", [
        ({"framework": "mxnet"}, "job field framework is 'mxnet'; use one of pytorch, tensorflow"),
        ({"name": "MNIST"}, "job field name is 'MNIST'; use 1-63 lower-case letters"),
        ({"name": "-mnist"}, "job field name is '-mnist'"),
        ({"name": "a" * 64}, "job field name is 'aaaa"),
        ({"name": "my job"}, "job field name is 'my job'"),
        ({"id": "Run/1"}, "job field id is 'Run/1'"),
        ({"epochs": 3}, "job spec has unknown fields ['epochs']; allowed: name, id, framework"),
        ({"name": None}, "job field name is required"),
        ({"script": ""}, "job field script is required"),
        ({"hosts": None}, "job field hosts is required"),
        ({"hosts": {"group": "x"}}, "job field hosts is {'group': 'x'}; give an inventory group"),
        ({"strategy": "parameter_server"}, "job field strategy is 'parameter_server'; pytorch supports ddp"),
        ({"processes_per_node": 0}, "job field processes_per_node is 0; give an integer of at least 1"),
        ({"processes_per_node": "many"}, "job field processes_per_node is 'many'"),
        ({"processes_per_node": True}, "job field processes_per_node is True"),
        ({"processes_per_node": 1.5}, "job field processes_per_node is 1.5"),
        ({"args": "--epochs 3"}, "job field args must be a list of strings"),
        ({"args": ["--flag", True]}, "job field args[1] is True; give a string"),
        ({"hparams": ["lr=0.1"]}, "job field hparams must be a mapping"),
        ({"hparams": {"lr": [0.1]}}, "job field hparams.lr is [0.1]; give a string, a number or true/false"),
        ({"hparams": {"9lr": 0.1}}, "job field hparams has the key '9lr'"),
        ({"hparams": {"note": "a\nb"}}, "job field hparams.note holds a line break"),
        ({"hparams_file": ["a"]}, "job field hparams_file is ['a']; give a file path"),
        ({"env": ["A=1"]}, "job field env must be a mapping"),
        ({"env": {"TF_CONFIG": "{}"}}, "job field env sets TF_CONFIG; remove it"),
        ({"env": {"CUDA_VISIBLE_DEVICES": "0"}},
         "job field env sets CUDA_VISIBLE_DEVICES; remove it (use the job's gpus"),
        ({"env": {"RANK": "0"}}, "job field env sets RANK; remove it (torchrun sets it)"),
        ({"env": {"1X": "a"}}, "job field env has the name '1X'"),
        ({"env": {"DEBUG": True}}, "job field env.DEBUG is True; give a one-line string"),
        ({"venv": "../py3"}, "job field venv is '../py3'"),
        ({"gpus": []}, "job field gpus is []; give a list of GPU indices"),
        ({"gpus": [0, 0]}, "job field gpus lists a GPU twice"),
        ({"gpus": [-1]}, "job field gpus is [-1]; every entry must be a GPU index"),
        ({"gpus": {"a": 1}}, "job field gpus is {'a': 1}"),
        ({"tf_gpu_memory_fraction": 0.5}, "job field tf_gpu_memory_fraction applies to tensorflow jobs"),
        ({"timeout_minutes": 0}, "job field timeout_minutes is 0; give a number of minutes of at least 1"),
        ({"master_port": 70000}, "job field master_port is 70000; give a TCP port from 1 to 65535"),
        ({"tf_port": "http"}, "job field tf_port is 'http'; give a TCP port"),
        ({"agent_port": 0}, "job field agent_port is 0; give a TCP port from 1 to 65535"),
        ({"agent_port": 29500}, "job fields agent_port and master_port are both 29500; give agent_port another"),
        ({"parameter_servers": 0}, "job field parameter_servers is 0"),
        ({"network": "10.0.0.0/33"}, "job field network is '10.0.0.0/33'; give the IPv4 CIDR"),
        ({"network": "fd00::/64"}, "job field network is 'fd00::/64'; give the IPv4 CIDR"),
    ])
    def test_bad_fields_are_named_with_the_fix(self, fields, why):
        with error_match("dl_job_spec: "):
            dl_job_spec(job(**fields))
        with error_match(why):
            dl_job_spec(job(**fields))

    @pytest.mark.parametrize("fields,why", [
        ({"processes_per_node": 2}, "job field processes_per_node is 2 but tensorflow runs one task per host"),
        ({"processes_per_node": "gpu"}, "job field processes_per_node is 'gpu' but tensorflow"),
        ({"strategy": "ddp"}, "job field strategy is 'ddp'; tensorflow supports multi_worker_mirrored, "
                              "parameter_server"),
        ({"tf_gpu_memory_fraction": 0}, "job field tf_gpu_memory_fraction is 0; give a number above 0"),
        ({"tf_gpu_memory_fraction": 1.5}, "job field tf_gpu_memory_fraction is 1.5"),
        ({"tf_gpu_memory_fraction": "half"}, "job field tf_gpu_memory_fraction is 'half'"),
    ])
    def test_bad_tensorflow_fields(self, fields, why):
        with error_match(why):
            dl_job_spec(tf_job(**fields))

    def test_every_problem_in_one_error(self):
        with pytest.raises(AnsibleFilterError) as caught:
            dl_job_spec({"name": "X", "framework": "jax", "batch": 3})
        message = str(caught.value)
        for part in ("unknown fields ['batch']", "job field name is 'X'", "framework is 'jax'",
                     "job field hosts is required", "job field script is required"):
            assert part in message

    def test_unknown_field_in_defaults(self):
        with error_match("job defaults has unknown fields ['gpu']"):
            dl_job_spec(job(), {"gpu": [0]})

    @pytest.mark.parametrize("spec", [None, "jobs/mnist.yml", ["name"]])
    def test_spec_must_be_a_mapping(self, spec):
        with error_match("the job spec must be a mapping of fields"):
            dl_job_spec(spec)

    def test_defaults_must_be_a_mapping(self):
        with error_match("the job defaults must be a mapping"):
            dl_job_spec(job(), ["venv"])

    def test_defaults_are_not_changed(self):
        defaults = {"env": {"A": "1"}, "args": ["--x"]}
        dl_job_spec(job(env={"B": "2"}), defaults)
        assert defaults == {"env": {"A": "1"}, "args": ["--x"]}


# ---------------------------------------------------------------------------
# dl_socket_ifname and dl_host_interfaces

IFACES = [
    LO,
    iface("eth0", "172.18.0.5", secondaries=["172.18.1.5"]),
    iface("ib0", "10.10.0.5", "10.10.0.0", "255.255.0.0"),
    iface("docker0", "172.17.0.1"),
    iface("eth9", "192.168.50.5", active=False),
    iface("eth6", ipv6=["fd00::5"]),
]


class TestSocketIfname:
    @pytest.mark.parametrize("address,expected", [
        ("172.18.0.5", "eth0"),
        ("172.18.1.5", "eth0"),  # a secondary address
        ("10.10.0.5", "ib0"),
        ("fd00::5", "eth6"),
        ("127.0.0.1", "lo"),  # loopback only for a loopback address
        ("172.18.0.99", ""),  # nobody carries it: leave GLOO/NCCL unset
        ("node1.example.org", ""),
        ("192.168.50.5", ""),  # on an interface that is down
        (None, ""),
    ])
    def test_interface_carrying_the_address(self, address, expected):
        assert dl_socket_ifname(IFACES, address) == expected

    @pytest.mark.parametrize("network,expected", [
        ("10.10.0.0/16", "ib0"),
        ("172.18.1.0/24", "eth0"),  # a secondary address in the network
        ("172.16.0.0/12", "eth0"),  # first match in fact order
        ("0.0.0.0/0", "eth0"),  # loopback is skipped
        ("127.0.0.0/8", "lo"),
    ])
    def test_interface_in_the_network(self, network, expected):
        assert dl_socket_ifname(IFACES, "172.18.0.5", network) == expected

    def test_network_without_interface_is_an_error_naming_it(self):
        with error_match("no active interface of host node3 has an IPv4 address in network 192.168.50.0/24 "
                         "(interfaces: lo 127.0.0.1, eth0 172.18.0.5/172.18.1.5"):
            dl_socket_ifname(IFACES, network="192.168.50.0/24", host="node3")

    def test_network_without_facts_asks_for_facts(self):
        with error_match("no interface facts are known of host node3"):
            dl_socket_ifname([], network="10.0.0.0/8", host="node3")

    def test_bad_network(self):
        with error_match("network 'ib' is not a CIDR"):
            dl_socket_ifname(IFACES, network="ib")

    def test_interfaces_must_be_a_list(self):
        with error_match("interfaces must be a list of interface facts"):
            dl_socket_ifname({"eth0": {}}, "10.0.0.1")


class TestHostInterfaces:
    def test_injected_facts_in_interface_order(self):
        hv = host("10.0.0.1", interfaces=[LO, iface("br-5f2a", "10.0.0.1"), iface("eth0", None)])
        assert [i["device"] for i in dl_host_interfaces(hv)] == ["lo", "br-5f2a", "eth0"]

    def test_ansible_facts_namespace(self):
        hv = {"ansible_facts": {"interfaces": ["lo", "eth0"], "lo": LO, "eth0": iface("eth0", "10.0.0.2")}}
        assert [i["device"] for i in dl_host_interfaces(hv)] == ["lo", "eth0"]

    def test_no_facts(self):
        assert dl_host_interfaces({"ansible_host": "10.0.0.1"}) == []

    def test_rejects_non_mapping(self):
        with error_match("dl_host_interfaces: host_vars must be a mapping"):
            dl_host_interfaces(["eth0"])


# ---------------------------------------------------------------------------
# dl_job_problems

class TestJobProblems:
    def test_good_cpu_job(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2")
        assert dl_job_problems(job(processes_per_node=8), names, hostvars) == []

    def test_good_gpu_job(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2", edition="nvidia", gpus=4)
        assert dl_job_problems(job(processes_per_node="gpu"), names, hostvars) == []
        assert dl_job_problems(job(processes_per_node=2, gpus=[2, 3]), names, hostvars) == []

    def test_empty_group(self):
        assert dl_job_problems(job(hosts="trainers"), [], {}) == [
            "job field hosts 'trainers' matches no host of the inventory; put the training hosts in that group, "
            "or name a group that has hosts"]

    def test_processes_beyond_physical_cores(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2", cores=4)
        hostvars["node0"]["dl_hardware"]["cpu"]["physical_cores"] = 16
        assert dl_job_problems(job(processes_per_node=8), names, hostvars) == [
            "host node1: job field processes_per_node is 8 but the host has 4 physical cores; use at most 4"]

    def test_cores_from_ansible_processor_facts(self):
        hv = host("10.0.0.1")
        del hv["dl_hardware"]
        hv.update({"ansible_processor_cores": 2, "ansible_processor_count": 2})
        assert dl_job_problems(job(processes_per_node=5), ["n"], {"n": hv}) == [
            "host n: job field processes_per_node is 5 but the host has 4 physical cores; use at most 4"]

    def test_cores_and_edition_from_the_saved_local_fact(self):
        hv = host("10.0.0.1")
        del hv["dl_hardware"], hv["dl_edition_effective"]
        hv["ansible_local"] = {"dlcluster_hardware": {"edition": "nvidia", "gpus": ["A100", "A100"],
                                                      "physical_cores": 32}}
        assert dl_job_problems(job(processes_per_node="gpu"), ["n"], {"n": hv}) == []
        assert dl_job_problems(job(processes_per_node=3), ["n"], {"n": hv}) == [
            "host n: job field processes_per_node is 3 but the host has its 2 NVIDIA GPUs; use at most 2 "
            "(one process per GPU) or 'gpu'"]

    def test_unknown_cores_are_not_guessed(self):
        hv = host("10.0.0.1")
        del hv["dl_hardware"]
        assert dl_job_problems(job(processes_per_node=64), ["n"], {"n": hv}) == []

    def test_gpu_processes_on_a_cpu_host(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2")
        hostvars["node0"] = host("10.0.0.1", edition="nvidia", gpus=2)
        assert dl_job_problems(job(processes_per_node="gpu"), names, hostvars) == [
            "host node1: job field processes_per_node is 'gpu' but the host is a cpu host without GPUs; give "
            "processes_per_node a number and drop gpus, or choose hosts with GPUs"]

    def test_gpus_on_a_cpu_host(self):
        names, hostvars = cluster("10.0.0.1")
        assert dl_job_problems(job(gpus=[0]), names, hostvars) == [
            "host node0: job field gpus is [0] but the host is a cpu host without GPUs; give processes_per_node "
            "a number and drop gpus, or choose hosts with GPUs"]

    def test_gpu_processes_with_unknown_hardware(self):
        hv = host("10.0.0.1")
        del hv["dl_hardware"], hv["dl_edition_effective"]
        assert dl_job_problems(job(processes_per_node="gpu"), ["n"], {"n": hv}) == [
            "host n: job field processes_per_node is 'gpu' but the host's GPUs are unknown; run "
            "playbooks/accelerators.yml (role hardware_facts) on it first"]

    def test_more_processes_than_gpus(self):
        names, hostvars = cluster("10.0.0.1", edition="rocm", gpus=2)
        assert dl_job_problems(job(processes_per_node=4), names, hostvars) == [
            "host node0: job field processes_per_node is 4 but the host has its 2 AMD GPUs; use at most 2 "
            "(one process per GPU) or 'gpu'"]

    def test_more_processes_than_pinned_gpus(self):
        names, hostvars = cluster("10.0.0.1", edition="nvidia", gpus=8)
        assert dl_job_problems(job(processes_per_node=4, gpus=[0, 1]), names, hostvars) == [
            "host node0: job field processes_per_node is 4 but the host has the 2 GPUs in gpus; use at most 2 "
            "(one process per GPU) or 'gpu'"]

    def test_gpu_index_out_of_range(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2", edition="nvidia", gpus=2)
        hostvars["node1"] = host("10.0.0.2", edition="nvidia", gpus=4)
        assert dl_job_problems(job(gpus=[1, 3]), names, hostvars) == [
            "host node0: job field gpus lists [3] but the host has 2 NVIDIA GPUs (indices 0-1); list indices "
            "that exist"]

    def test_tensorflow_with_two_processes(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2")
        assert dl_job_problems(tf_job(processes_per_node=2), names, hostvars) == [
            "job field processes_per_node is 2 but tensorflow runs one task per host (its strategies use every "
            "GPU of the host); set it to 1"]

    @pytest.mark.parametrize("count,ps,ok", [(2, 1, False), (3, 1, True), (3, 2, False), (4, 2, True)])
    def test_parameter_server_layout(self, count, ps, ok):
        names, hostvars = cluster(*[f"10.0.0.{i + 1}" for i in range(count)])
        problems = dl_job_problems(tf_job(strategy="parameter_server", parameter_servers=ps), names, hostvars)
        if ok:
            assert problems == []
        else:
            assert problems == [
                f"job strategy parameter_server needs 1 chief + {ps} ps + at least 1 worker = {ps + 2} hosts "
                f"(TensorFlow refuses a cluster without a worker), but hosts 'trainers' has {count}; add hosts to "
                "the group, lower parameter_servers, or use strategy multi_worker_mirrored"]

    def test_two_hosts_with_one_address(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.1")
        assert dl_job_problems(job(), names, hostvars) == [
            "host node1: address 10.0.0.1 is also used by host node0; give each training host its own address "
            "(dl_address)"]

    def test_host_without_address(self):
        hv = host("10.0.0.1")
        hv["ansible_host"] = "node.example.org"
        assert dl_job_problems(job(), ["n"], {"n": hv}) == [
            "host n: no address is known; set dl_address or ansible_host to an IP, or gather its facts"]

    def test_network_missing_on_a_host(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2")
        problems = dl_job_problems(job(network="10.20.0.0/16"), names, hostvars)
        assert len(problems) == 2
        assert problems[0].startswith("host node0: no active interface of host node0 has an IPv4 address in "
                                      "network 10.20.0.0/16")

    def test_network_without_facts(self):
        hv = {"ansible_host": "10.0.0.1", "dl_edition_effective": "cpu"}
        assert dl_job_problems(job(network="10.0.0.0/8"), ["n"], {"n": hv}) == [
            "host n: no interface facts are known of host n, so the interface in network 10.0.0.0/8 cannot be "
            "found; gather its facts (setup) first"]

    def test_host_missing_from_hostvars(self):
        assert dl_job_problems(job(), ["ghost"], {}) == [
            "host ghost: not in hostvars; check the job's hosts pattern against the inventory"]

    def test_spec_and_host_problems_together(self):
        names, hostvars = cluster("10.0.0.1", cores=2)
        problems = dl_job_problems(job(name="Bad", gpus="x,y", processes_per_node=4), names, hostvars)
        assert problems[0].startswith("job field name is 'Bad'")
        assert problems[1].startswith("job field gpus is 'x,y'")
        assert problems[2] == ("host node0: job field processes_per_node is 4 but the host has 2 physical cores; "
                               "use at most 2")

    def test_bad_arguments(self):
        assert dl_job_problems("mnist", ["a"], {})[0].startswith("the job spec must be a mapping")
        assert "group_hosts must be a list" in dl_job_problems(job(), "node0", {})[0]
        assert "hostvars must be a mapping" in dl_job_problems(job(), ["node0"], None)[0]


# ---------------------------------------------------------------------------
# dl_job_plan

def torchrun_args(nnodes, nproc, endpoint, job_id, address):
    return ["--nnodes", str(nnodes), "--nproc-per-node", str(nproc), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", endpoint, "--rdzv-id", job_id, "--max-restarts", "0", "--local-addr", address]


class TestPytorchPlan:
    def test_two_hosts(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2")
        plan = dl_job_plan(dl_job_spec(job(id="mnist-7")), names, hostvars)
        assert plan == {
            "job_id": "mnist-7", "name": "mnist", "framework": "pytorch", "strategy": "ddp",
            "world_size": 2, "nnodes": 2, "master_addr": "10.0.0.1", "master_port": 29500,
            "rdzv_endpoint": "10.0.0.1:29500", "coordinator": "node0", "agent_endpoint": "10.0.0.1:29400",
            "node_order": ["node0", "node1"], "tf_cluster": {},
            "hparams_text": "",
            "hosts": {
                "node0": {"node_rank": 0, "nproc": 1, "first_rank": 0, "address": "10.0.0.1",
                          "socket_ifname": "eth0", "role": "rank", "task_index": 0, "tf_config": "",
                          "decides_outcome": True,
                          "torchrun_args": torchrun_args(2, 1, "10.0.0.1:29500", "mnist-7", "10.0.0.1"),
                          "env": {"DL_JOB_ID": "mnist-7", "DL_JOB_NAME": "mnist", "GLOO_SOCKET_IFNAME": "eth0",
                                  "NCCL_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "8"}},
                "node1": {"node_rank": 1, "nproc": 1, "first_rank": 1, "address": "10.0.0.2",
                          "socket_ifname": "eth0", "role": "rank", "task_index": 1, "tf_config": "",
                          "decides_outcome": True,
                          "torchrun_args": torchrun_args(2, 1, "10.0.0.1:29500", "mnist-7", "10.0.0.2"),
                          "env": {"DL_JOB_ID": "mnist-7", "DL_JOB_NAME": "mnist", "GLOO_SOCKET_IFNAME": "eth0",
                                  "NCCL_SOCKET_IFNAME": "eth0", "OMP_NUM_THREADS": "8"}},
            },
        }

    def test_four_hosts_two_processes_each(self):
        names, hostvars = cluster("10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.4")
        plan = dl_job_plan(job(processes_per_node=2, master_port=29600), names, hostvars)
        assert (plan["world_size"], plan["nnodes"], plan["rdzv_endpoint"]) == (8, 4, "10.0.1.1:29600")
        ranks = {h: (v["node_rank"], v["first_rank"], v["nproc"]) for h, v in plan["hosts"].items()}
        assert ranks == {"node0": (0, 0, 2), "node1": (1, 2, 2), "node2": (2, 4, 2), "node3": (3, 6, 2)}
        assert all(v["torchrun_args"][:4] == ["--nnodes", "4", "--nproc-per-node", "2"]
                   for v in plan["hosts"].values())
        assert {v["env"]["OMP_NUM_THREADS"] for v in plan["hosts"].values()} == {"4"}

    def test_ranks_follow_the_rendezvous_order_of_local_addresses(self):
        # torchrun's c10d rendezvous sorts nodes by their --local-addr strings: "10.0.0.10" < "10.0.0.9".
        names, hostvars = cluster("10.0.0.9", "10.0.0.10", "10.0.0.100")
        plan = dl_job_plan(job(processes_per_node=2), names, hostvars)
        assert plan["node_order"] == ["node1", "node2", "node0"]
        assert [(plan["hosts"][h]["node_rank"], plan["hosts"][h]["first_rank"]) for h in names] == [
            (2, 4), (0, 0), (1, 2)]
        # The rendezvous store stays on the first host of the inventory.
        assert plan["master_addr"] == "10.0.0.9"
        assert list(plan["hosts"]) == names

    def test_one_process_per_gpu_with_different_gpu_counts(self):
        names = ["a", "b", "c"]
        hostvars = {"a": host("10.0.0.1", edition="nvidia", gpus=8), "b": host("10.0.0.2", edition="nvidia", gpus=4),
                    "c": host("10.0.0.3", edition="nvidia", gpus=2)}
        plan = dl_job_plan(job(processes_per_node="gpu"), names, hostvars)
        assert plan["world_size"] == 14
        assert [(plan["hosts"][h]["nproc"], plan["hosts"][h]["first_rank"]) for h in names] == [
            (8, 0), (4, 8), (2, 12)]
        assert plan["hosts"]["b"]["torchrun_args"][3] == "4"
        assert plan["hosts"]["c"]["env"]["OMP_NUM_THREADS"] == "4"

    def test_pinned_gpus(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2", edition="nvidia", gpus=4)
        plan = dl_job_plan(job(processes_per_node="gpu", gpus=[2, 3]), names, hostvars)
        assert plan["world_size"] == 4
        assert plan["hosts"]["node1"]["env"]["CUDA_VISIBLE_DEVICES"] == "2,3"
        assert "HIP_VISIBLE_DEVICES" not in plan["hosts"]["node1"]["env"]

    def test_pinned_gpus_on_rocm_also_set_hip(self):
        names, hostvars = cluster("10.0.0.1", edition="rocm", gpus=2)
        env = dl_job_plan(job(gpus=[1]), names, hostvars)["hosts"]["node0"]["env"]
        assert (env["CUDA_VISIBLE_DEVICES"], env["HIP_VISIBLE_DEVICES"]) == ("1", "1")

    def test_job_env_comes_last_and_wins(self):
        names, hostvars = cluster("10.0.0.1")
        env = dl_job_plan(job(env={"NCCL_SOCKET_IFNAME": "^lo,docker", "OMP_NUM_THREADS": "2", "NCCL_DEBUG": "INFO"}),
                          names, hostvars)["hosts"]["node0"]["env"]
        assert env == {"DL_JOB_ID": "mnist", "DL_JOB_NAME": "mnist", "GLOO_SOCKET_IFNAME": "eth0",
                       "NCCL_SOCKET_IFNAME": "^lo,docker", "OMP_NUM_THREADS": "2", "NCCL_DEBUG": "INFO"}

    def test_no_interface_known_leaves_socket_variables_unset(self):
        hv = host("10.0.0.1", interfaces=[])
        plan = dl_job_plan(job(), ["n"], {"n": hv})
        assert plan["hosts"]["n"]["socket_ifname"] == ""
        assert "GLOO_SOCKET_IFNAME" not in plan["hosts"]["n"]["env"]
        assert "NCCL_SOCKET_IFNAME" not in plan["hosts"]["n"]["env"]

    def test_training_network_picks_address_and_interface(self):
        names = ["a", "b"]
        hostvars = {h: host(f"172.18.0.{i + 1}", interfaces=[LO, iface("eth0", f"172.18.0.{i + 1}"),
                                                             iface("ib0", f"10.10.0.{i + 1}")])
                    for i, h in enumerate(names)}
        plan = dl_job_plan(job(network="10.10.0.0/24"), names, hostvars)
        assert plan["master_addr"] == "10.10.0.1"
        assert plan["rdzv_endpoint"] == "10.10.0.1:29500"
        assert [(plan["hosts"][h]["address"], plan["hosts"][h]["socket_ifname"]) for h in names] == [
            ("10.10.0.1", "ib0"), ("10.10.0.2", "ib0")]
        assert plan["hosts"]["b"]["torchrun_args"][-2:] == ["--local-addr", "10.10.0.2"]
        assert plan["hosts"]["b"]["env"]["GLOO_SOCKET_IFNAME"] == "ib0"

    def test_site_network_uses_each_hosts_site_address_on_its_lan_not_the_tunnel(self):
        """Hosts in two sites (roles/vpn): each trains on its site address, the tunnel carries it across."""
        sites = {"a": ("192.168.1.0/24", "192.168.1.3"), "b": ("192.168.2.0/24", "192.168.2.2")}
        hostvars = {h: host(f"172.18.0.{i + 1}", dl_site=h, dl_site_subnets=[sites[h][0]],
                            interfaces=[LO, iface("eth0", f"172.18.0.{i + 1}"),
                                        iface("wgdl0", sites[h][1], kind="unknown"), iface("eth1", sites[h][1])])
                    for i, h in enumerate(sites)}
        plan = dl_job_plan(job(network="site"), list(sites), hostvars)
        assert plan["master_addr"] == "192.168.1.3"
        assert [(plan["hosts"][h]["address"], plan["hosts"][h]["env"]["GLOO_SOCKET_IFNAME"]) for h in sites] == [
            ("192.168.1.3", "eth1"), ("192.168.2.2", "eth1")]
        del hostvars["b"]["dl_site_subnets"]
        assert dl_job_problems(job(network="site"), list(sites), hostvars) == [
            "host b: job field network is 'site' but no interface has an address in the host's dl_site_subnets "
            "(none set); give the host its site (dl_site, dl_site_subnets) or leave the job's network out"]

    def test_address_resolution_is_dl_host_address(self):
        names, hostvars = cluster("192.168.0.1", "192.168.0.2")
        hostvars["node0"]["dl_address"] = "192.168.0.11"
        hostvars["node0"]["ansible_eth1"] = iface("eth1", "192.168.0.11")
        hostvars["node0"]["ansible_interfaces"].append("eth1")
        plan = dl_job_plan(job(), names, hostvars)
        assert plan["master_addr"] == "192.168.0.11"
        assert plan["hosts"]["node0"]["socket_ifname"] == "eth1"

    def test_ipv6_endpoint_has_brackets(self):
        hv = host("fd00::1", interfaces=[LO, iface("eth0", ipv6=["fd00::1"])])
        plan = dl_job_plan(job(), ["n"], {"n": hv})
        assert plan["rdzv_endpoint"] == "[fd00::1]:29500"
        assert plan["hosts"]["n"]["socket_ifname"] == "eth0"

    def test_hparams_text(self):
        names, hostvars = cluster("10.0.0.1")
        hparams = {"lr": 0.001, "batch_size": 64, "optimizer": "adam", "shuffle": True, "data": ""}
        plan = dl_job_plan(job(hparams=hparams), names, hostvars)
        assert plan["hparams_text"] == "lr=0.001\nbatch_size=64\noptimizer=adam\nshuffle=true\ndata=\n"

    def test_spec_is_normalised_on_the_way_in(self):
        names, hostvars = cluster("10.0.0.1")
        assert dl_job_plan(job(processes_per_node="2"), names, hostvars)["world_size"] == 2

    def test_refuses_what_dl_job_problems_refuses(self):
        names, hostvars = cluster("10.0.0.1", cores=2)
        with error_match("dl_job_plan: the job cannot start: host node0: job field processes_per_node is 4"):
            dl_job_plan(job(processes_per_node=4), names, hostvars)
        with error_match("matches no host of the inventory"):
            dl_job_plan(job(), [], {})

    def test_refuses_a_bad_spec(self):
        with error_match("dl_job_spec: job field framework is 'caffe'"):
            dl_job_plan(job(framework="caffe"), ["a"], {"a": host("10.0.0.1")})


class TestTensorflowPlan:
    def test_multi_worker_mirrored_tf_config_per_host(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2", "10.0.0.3")
        plan = dl_job_plan(tf_job(), names, hostvars)
        workers = ["10.0.0.1:23456", "10.0.0.2:23456", "10.0.0.3:23456"]
        assert plan["tf_cluster"] == {"worker": workers}
        for index, name in enumerate(names):
            entry = plan["hosts"][name]
            assert json.loads(entry["tf_config"]) == {"cluster": {"worker": workers},
                                                     "task": {"type": "worker", "index": index}}
            assert entry["env"]["TF_CONFIG"] == entry["tf_config"]
            assert (entry["role"], entry["task_index"], entry["node_rank"], entry["first_rank"], entry["nproc"]) == (
                "worker", index, index, index, 1)
            assert entry["torchrun_args"] == []
            assert entry["decides_outcome"] is True
        assert (plan["world_size"], plan["nnodes"], plan["rdzv_endpoint"]) == (3, 3, "")
        # TF task indices keep the inventory order (no rendezvous reorders them).
        assert plan["node_order"] == names

    def test_tf_config_is_compact_json(self):
        names, hostvars = cluster("10.0.0.1")
        assert dl_job_plan(tf_job(tf_port=2222), names, hostvars)["hosts"]["node0"]["tf_config"] == (
            '{"cluster":{"worker":["10.0.0.1:2222"]},"task":{"type":"worker","index":0}}')

    def test_parameter_server_with_three_hosts(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2", "10.0.0.3")
        plan = dl_job_plan(tf_job(strategy="parameter_server"), names, hostvars)
        cluster_spec = {"chief": ["10.0.0.1:23456"], "ps": ["10.0.0.2:23456"], "worker": ["10.0.0.3:23456"]}
        assert plan["tf_cluster"] == cluster_spec
        expected = {"node0": ("chief", 0, True), "node1": ("ps", 0, False), "node2": ("worker", 0, False)}
        for name, (kind, index, decides) in expected.items():
            entry = plan["hosts"][name]
            assert json.loads(entry["tf_config"]) == {"cluster": cluster_spec, "task": {"type": kind, "index": index}}
            assert (entry["role"], entry["task_index"], entry["decides_outcome"]) == (kind, index, decides)
        assert "evaluator" not in plan["tf_cluster"]

    def test_parameter_server_with_four_hosts_and_two_ps(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
        plan = dl_job_plan(tf_job(strategy="parameter_server", parameter_servers=2), names, hostvars)
        assert plan["tf_cluster"] == {"chief": ["10.0.0.1:23456"], "ps": ["10.0.0.2:23456", "10.0.0.3:23456"],
                                      "worker": ["10.0.0.4:23456"]}
        assert [json.loads(plan["hosts"][h]["tf_config"])["task"] for h in names] == [
            {"type": "chief", "index": 0}, {"type": "ps", "index": 0}, {"type": "ps", "index": 1},
            {"type": "worker", "index": 0}]

    def test_parameter_server_with_four_hosts_and_one_ps(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
        plan = dl_job_plan(tf_job(strategy="parameter_server"), names, hostvars)
        assert plan["tf_cluster"]["worker"] == ["10.0.0.3:23456", "10.0.0.4:23456"]
        assert plan["hosts"]["node3"]["task_index"] == 1

    def test_parameter_server_refuses_two_hosts(self):
        names, hostvars = cluster("10.0.0.1", "10.0.0.2")
        with error_match("parameter_server needs 1 chief + 1 ps + at least 1 worker = 3 hosts"):
            dl_job_plan(tf_job(strategy="parameter_server"), names, hostvars)

    def test_memory_fraction_and_no_omp_setting(self):
        names, hostvars = cluster("10.0.0.1", edition="nvidia", gpus=1)
        env = dl_job_plan(tf_job(tf_gpu_memory_fraction=0.4, gpus=[0]), names, hostvars)["hosts"]["node0"]["env"]
        assert env["DL_TF_GPU_MEMORY_FRACTION"] == "0.4"
        assert env["CUDA_VISIBLE_DEVICES"] == "0"
        assert "OMP_NUM_THREADS" not in env


def test_filter_modules():
    """The training filters, one file per concern: the spec, the plan, the summary."""
    assert set(dl_train_spec.FilterModule().filters()) == {"dl_job_spec", "dl_hparams_merge"}
    assert set(dl_train_plan.FilterModule().filters()) == {
        "dl_job_problems", "dl_job_plan", "dl_socket_ifname", "dl_host_interfaces"}
    assert set(dl_train_summary.FilterModule().filters()) == {"dl_job_summary"}


def test_hparams_merge_spec_keys_win_once():
    text = "# comment\nepochs = 10\nlr = 0.001\n"
    merged = dl_hparams_merge(text, "epochs=50\nstep_sleep=0.05\n")
    assert merged.count("epochs") == 1 and "epochs=50" in merged and "lr = 0.001" in merged
    assert "# comment" in merged and "step_sleep=0.05" in merged
    assert dl_hparams_merge(text, "") == text


PLAN = {"job_id": "j", "hosts": {"a": {"first_rank": 0, "nproc": 1, "role": "rank"},
                                 "b": {"first_rank": 1, "nproc": 1, "role": "rank"}}}


def _metrics(rank, accuracy=0.93):
    return {"rank": rank, "final_loss": 0.13, "test_accuracy": accuracy, "wall_seconds": 20.0,
            "samples_per_second": 900.0, "first_step_unix": 105.0}


def test_summary_of_a_good_job():
    results = [{"host": "a", "outcome": "succeeded", "exit": "0", "metrics": [_metrics(0)], "log_tail": ""},
               {"host": "b", "outcome": "succeeded", "exit": "0", "metrics": [_metrics(1, 0.94)], "log_tail": ""}]
    summary = dl_job_summary(PLAN, results, "", 100.0, "/runs/j")
    assert summary["ok"] and summary["test_accuracy"] == 0.93 and summary["samples_per_second"] == 1800.0
    assert summary["launch_to_first_step_seconds"] == 5.0
    assert "test accuracy 0.9300" in summary["message"] and "/runs/j" in summary["message"]
    assert summary["table"].count("| succeeded |") == 2


def test_summary_names_the_first_failed_host_and_the_rank_from_torchruns_report():
    tail = "Root Cause (first observed failure):\n[0]:\n  host      : b\n  rank      : 1 (local_rank: 0)\n"
    results = [{"host": "a", "outcome": "stopped", "exit": "", "metrics": [], "log_tail": ""},
               {"host": "b", "outcome": "failed", "exit": "1", "metrics": [], "log_tail": tail}]
    summary = dl_job_summary(PLAN, results, "b failed 1\n", 100.0)
    assert not summary["ok"]
    assert summary["message"].startswith("Job j failed: host b rank 1 failed (exit 1)")
    assert "| 1 | b | rank | failed |" in summary["table"]


def test_summary_of_a_lost_host_uses_its_planned_ranks():
    results = [{"host": "a", "outcome": "succeeded", "exit": "0", "metrics": [_metrics(0)], "log_tail": ""}]
    summary = dl_job_summary(PLAN, results)
    assert not summary["ok"] and "host b rank 1 lost" in summary["message"]


def test_summary_prefers_the_rank_killed_by_a_signal_over_the_first_flag():
    killed = "Root Cause (first observed failure):\n  rank      : 0 (local_rank: 0)\n  exitcode  : -9 (pid: 5)\n"
    peer = "Root Cause (first observed failure):\n  rank      : 1 (local_rank: 0)\n  exitcode  : 1 (pid: 6)\n"
    results = [{"host": "a", "outcome": "failed", "exit": "1", "metrics": [], "log_tail": killed},
               {"host": "b", "outcome": "failed", "exit": "1", "metrics": [], "log_tail": peer}]
    summary = dl_job_summary(PLAN, results, "b failed 1\n")
    assert summary["message"].startswith("Job j failed: host a rank 0 failed (exit 1) - killed by signal 9")


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "jobs").glob("*.yml")),
                         ids=lambda path: path.name)
def test_every_sample_job_spec_is_accepted(path):
    import yaml
    spec = dl_job_spec(yaml.safe_load(path.read_text()))
    assert spec["id"] == path.stem and (path.parent.parent / spec["script"]).is_file()
