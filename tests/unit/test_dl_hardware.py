"""Hardware detection (library/dl_hardware_facts.py) and the hardware filters, on fixture trees."""

import shutil

import pytest
from ansible.errors import AnsibleFilterError
from conftest import FIXTURES

import dl_hardware_facts
from dl_hardware import FilterModule, dl_cpu_variant, dl_docker_daemon_json, dl_edition, dl_thread_env

CPUINFO = FIXTURES / "cpuinfo"


def make_root(tmp_path, cpuinfo="haswell-e5-2680v3", pci=(), nvidia_proc=None, pci_ids=None):
    """A fake `/`: /proc/cpuinfo from a fixture, PCI devices as (slot, vendor, device, class)."""
    (tmp_path / "proc").mkdir()
    shutil.copy(CPUINFO / f"{cpuinfo}.txt", tmp_path / "proc" / "cpuinfo")
    for slot, vendor, device, pci_class in pci:
        node = tmp_path / "sys" / "bus" / "pci" / "devices" / slot
        node.mkdir(parents=True)
        (node / "vendor").write_text(vendor + "\n")
        (node / "device").write_text(device + "\n")
        (node / "class").write_text(pci_class + "\n")
    for slot, model in (nvidia_proc or {}).items():
        info = tmp_path / "proc" / "driver" / "nvidia" / "gpus" / slot
        info.mkdir(parents=True)
        (info / "information").write_text(f"Model: \t\t {model}\nIRQ:   \t\t 35\n")
    if pci_ids:
        (tmp_path / "usr" / "share" / "misc").mkdir(parents=True)
        (tmp_path / "usr" / "share" / "misc" / "pci.ids").write_text(pci_ids)
    return str(tmp_path)


NIC = ("0000:00:03.0", "0x8086", "0x10d3", "0x020000")
ASPEED_VGA = ("0000:02:00.0", "0x1a03", "0x2000", "0x030000")
A100 = ("0000:17:00.0", "0x10de", "0x20b2", "0x030200")
H100 = ("0000:65:00.0", "0x10de", "0x2330", "0x030200")
NV_AUDIO = ("0000:17:00.1", "0x10de", "0x10f0", "0x040300")
MI210 = ("0000:c1:00.0", "0x1002", "0x740f", "0x038000")
AMD_BRIDGE = ("0000:00:18.0", "0x1002", "0x1480", "0x060000")


class TestDetection:
    def test_cpu_only_host(self, tmp_path):
        facts = dl_hardware_facts.scan(make_root(tmp_path, pci=[NIC, ASPEED_VGA]))
        assert facts["gpus"] == [] and facts["nvidia_gpus"] == 0 and facts["amd_gpus"] == 0
        assert facts["cpu"]["physical_cores"] == 4 and facts["cpu"]["logical_cpus"] == 8
        assert facts["cpu"]["sockets"] == 2
        assert facts["cpu"]["model"] == "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz"

    def test_nvidia_gpus_named_by_the_driver(self, tmp_path):
        root = make_root(tmp_path, pci=[A100, NV_AUDIO, H100, NIC],
                         nvidia_proc={"0000:17:00.0": "NVIDIA A100-SXM4-80GB"})
        facts = dl_hardware_facts.scan(root)
        assert facts["nvidia_gpus"] == 2  # the HDMI audio function is not a GPU
        assert [g["model"] for g in facts["gpus"]] == ["NVIDIA A100-SXM4-80GB", "nvidia device 0x2330"]
        assert facts["gpus"][0]["class"] == "3d"

    def test_amd_gpu_named_from_pci_ids(self, tmp_path):
        pci_ids = "# comment\n1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\t740f  Aldebaran/MI200 [Instinct MI210]\n" \
                  "\t\t1002 0c34  MI210\n10de  NVIDIA Corporation\n"
        facts = dl_hardware_facts.scan(make_root(tmp_path, pci=[MI210, AMD_BRIDGE], pci_ids=pci_ids))
        assert facts["amd_gpus"] == 1
        assert facts["gpus"][0]["model"] == "Aldebaran/MI200 [Instinct MI210]"
        assert facts["gpus"][0]["class"] == "display"

    def test_no_sysfs_no_cpuinfo(self, tmp_path):
        facts = dl_hardware_facts.scan(str(tmp_path))
        assert facts["gpus"] == [] and facts["cpu"]["physical_cores"] == 0

    def test_real_build_machine_cpuinfo(self, tmp_path):
        cpu = dl_hardware_facts.scan(make_root(tmp_path, cpuinfo="build-machine-vm"))["cpu"]
        assert cpu["logical_cpus"] >= 1 and "avx512f" in cpu["flags"]


@pytest.mark.parametrize("sample,variant,onednn", [
    ("westmere-x5670", "baseline", False),
    ("sandybridge-e5-2670", "avx", False),
    ("ivybridge-e5-2670v2", "avx", False),
    ("haswell-e5-2680v3", "avx2", True),
    ("broadwell-e5-2680v4", "avx2", True),
    ("skylake-i7-6700", "avx2", True),
    ("skylake-sp-gold-6148", "avx512", True),
    ("sapphire-rapids-8480", "amx", True),
    ("zen3-epyc-7763", "avx2", True),
    ("build-machine-vm", "amx", True),
])
def test_cpu_variant_of_every_generation(tmp_path, sample, variant, onednn):
    flags = dl_hardware_facts.scan(make_root(tmp_path, cpuinfo=sample))["cpu"]["flags"]
    result = dl_cpu_variant(flags)
    assert result["variant"] == variant and result["onednn"] is onednn


@pytest.mark.parametrize("flags,bf16", [
    ("sse4_2 avx avx2 fma avx512f avx512bw avx512vl", False),               # Skylake-SP, Ice Lake
    ("sse4_2 avx avx2 fma avx512f avx512bw avx512vl avx512_bf16", True),   # Cooper Lake, Zen 4
    ("sse4_2 avx avx2 fma avx512f avx512bw avx512vl amx_tile amx_bf16", True),
    ("sse4_2 avx avx2 fma", False),
])
def test_cpu_bf16_capability(flags, bf16):
    assert dl_cpu_variant(flags)["bf16"] is bf16


def test_cpu_variant_isa_ladder():
    assert dl_cpu_variant("sse4_2 avx avx2 fma avx512f avx512bw avx512vl")["isa"] == [
        "baseline", "avx", "avx2", "avx512"]
    assert dl_cpu_variant(["sse2"])["variant"] == "generic"
    with pytest.raises(AnsibleFilterError, match="flags must be a list"):
        dl_cpu_variant(42)


class TestEdition:
    GPU_NONE = {"gpus": [], "nvidia_gpus": 0, "amd_gpus": 0}
    GPU_NV = {"gpus": [{}], "nvidia_gpus": 1, "amd_gpus": 0}
    GPU_AMD = {"gpus": [{}], "nvidia_gpus": 0, "amd_gpus": 2}

    def test_auto(self):
        assert dl_edition(self.GPU_NONE) == "cpu"
        assert dl_edition(self.GPU_NV, "auto") == "nvidia"
        assert dl_edition(self.GPU_AMD, "") == "rocm"

    def test_forced_cpu_on_a_gpu_host(self):
        assert dl_edition(self.GPU_NV, "cpu") == "cpu"

    def test_forcing_nvidia_without_a_device_fails(self):
        with pytest.raises(AnsibleFilterError, match="cpu1: dl_edition is nvidia but the host has no NVIDIA"):
            dl_edition(self.GPU_NONE, "nvidia", "cpu1")

    def test_forcing_rocm_without_a_device_fails(self):
        with pytest.raises(AnsibleFilterError, match="no AMD GPU"):
            dl_edition(self.GPU_NV, "rocm")

    def test_unknown_edition(self):
        with pytest.raises(AnsibleFilterError, match="dl_edition is 'cuda'"):
            dl_edition(self.GPU_NV, "cuda")

    def test_needs_the_fact(self):
        with pytest.raises(AnsibleFilterError, match="dl_hardware fact"):
            dl_edition({}, "auto")


def test_thread_env_follows_the_seed_notes():
    env = dl_thread_env(16)
    assert env["OMP_NUM_THREADS"] == "16" and env["TF_NUM_INTRAOP_THREADS"] == "16"
    assert env["TF_NUM_INTEROP_THREADS"] == "2"
    with pytest.raises(AnsibleFilterError, match="at least one core"):
        dl_thread_env(0)
    with pytest.raises(AnsibleFilterError, match="integers"):
        dl_thread_env("many")


class TestDaemonJson:
    def test_merge(self):
        merged = dl_docker_daemon_json({
            "docker": {"log-driver": "json-file", "log-opts": {"max-size": "100m"}},
            "nvidia": {"runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}}},
            "data_disk": {"data-root": "/data/docker", "log-opts": {"max-size": "100m", "max-file": "3"}},
        })
        assert merged == {"log-driver": "json-file", "log-opts": {"max-size": "100m", "max-file": "3"},
                          "runtimes": {"nvidia": {"path": "nvidia-container-runtime", "args": []}},
                          "data-root": "/data/docker"}

    def test_conflict_names_both_roles_and_the_key(self):
        with pytest.raises(AnsibleFilterError,
                           match="nvidia sets daemon.json key 'default-runtime' to \"nvidia\" but docker set it"):
            dl_docker_daemon_json({"docker": {"default-runtime": "runc"}, "nvidia": {"default-runtime": "nvidia"}})

    def test_nested_conflict(self):
        with pytest.raises(AnsibleFilterError, match="'log-opts.max-size'"):
            dl_docker_daemon_json({"a": {"log-opts": {"max-size": "1m"}}, "b": {"log-opts": {"max-size": "2m"}}})

    def test_bad_parts(self):
        with pytest.raises(AnsibleFilterError, match="mapping"):
            dl_docker_daemon_json(["docker"])


def test_filter_module():
    assert set(FilterModule().filters()) == {"dl_edition", "dl_cpu_variant", "dl_thread_env",
                                              "dl_docker_daemon_json"}
