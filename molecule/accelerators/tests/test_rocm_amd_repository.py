"""rocm2: AMD's repository path, written but disabled (the repository is not reachable here)."""

testinfra_hosts = ["ansible://rocm2"]


def test_amd_repository_written_disabled_and_pinned(host):
    sources = host.file("/etc/apt/sources.list.d/rocm.sources").content_string
    assert "URIs: https://repo.radeon.com/rocm/apt/6.4" in sources and "Suites: jammy" in sources
    assert sources.count("Enabled: no") == 2
    assert "Pin: release o=repo.radeon.com" in host.file("/etc/apt/preferences.d/dlcluster-rocm").content_string
    assert not host.package("rocminfo").is_installed
