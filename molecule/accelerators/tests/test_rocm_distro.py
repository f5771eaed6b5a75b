"""rocm1: ROCm from the distribution's packages, installed for real."""

testinfra_hosts = ["ansible://rocm1"]


def test_distro_packages_installed(host):
    assert host.package("rocminfo").is_installed and host.package("rocm-smi").is_installed
    assert host.exists("rocminfo") and host.exists("rocm-smi")
    assert not host.file("/etc/apt/sources.list.d/rocm.sources").exists
