"""security_updates: unattended-upgrades allows the security archive only, never touches the NVIDIA driver, never
reboots, and stays idle in the lab (apt's timers off). The configuration is judged by unattended-upgrades' own code
(its origin matching and blacklist functions, imported from /usr/bin/unattended-upgrade on the host) against the
host's real apt package files, not by reading the file back."""

import json

import pytest


testinfra_hosts = ["ansible://head", "ansible://cpu1", "ansible://cpu2"]

CONFIG = "/etc/apt/apt.conf.d/52dlcluster-unattended-upgrades"

# Runs on the host with the distribution's python3 (python3-apt): what unattended-upgrades itself would decide.
JUDGE = r'''
import importlib.machinery, importlib.util, json, types
import apt_pkg
loader = importlib.machinery.SourceFileLoader("uu", "/usr/bin/unattended-upgrade")
uu = importlib.util.module_from_spec(importlib.util.spec_from_loader("uu", loader))
loader.exec_module(uu)
apt_pkg.init()
allowed = uu.get_allowed_origins()
blacklist = apt_pkg.config.value_list("Unattended-Upgrade::Package-Blacklist")
files = [f for f in apt_pkg.Cache(None).file_list if f.site]
security = types.SimpleNamespace(origin="Debian", label="Debian-Security", codename="bookworm-security",
                                 archive="oldstable-security", component="main", site="deb.debian.org")
print(json.dumps({
    "allowed": allowed,
    "files": {f"{f.site} {f.archive} {f.label}": uu.is_allowed_origin(f, allowed) for f in files},
    "security_origin": uu.is_allowed_origin(security, allowed),
    "blacklisted": {name: uu.is_pkgname_in_blacklist(name, blacklist) for name in
                    ["nvidia-driver", "libnvidia-container1", "nvidia-container-toolkit", "cuda-drivers-570",
                     "firmware-nvidia-gsp", "openssl", "openssh-server", "linux-image-amd64"]},
    "reboot": apt_pkg.config.find_b("Unattended-Upgrade::Automatic-Reboot", True),
    "periodic": apt_pkg.config.find("APT::Periodic::Unattended-Upgrade"),
}))
'''


@pytest.fixture(scope="module")
def judged(host):
    with host.sudo():
        run = host.run(f"/usr/bin/python3 - <<'EOF'\n{JUDGE}\nEOF")
    assert run.rc == 0, run.stderr
    return json.loads(run.stdout)


def test_only_the_security_archive_is_allowed(judged):
    assert judged["allowed"] == ["origin=Debian,codename=bookworm-security,label=Debian-Security"]
    assert judged["security_origin"] is True
    # The host's own package files: the main archive (and -updates) are refused, security ones allowed.
    refused = [name for name, ok in judged["files"].items() if not ok]
    assert any(" oldstable Debian" in name or " bookworm Debian" in name for name in refused), judged["files"]
    for name, ok in judged["files"].items():
        assert ok == name.endswith("Debian-Security"), (name, judged["files"])


def test_the_nvidia_driver_and_toolkit_are_never_upgraded_by_it(judged):
    assert judged["blacklisted"] == {
        "nvidia-driver": True, "libnvidia-container1": True, "nvidia-container-toolkit": True,
        "cuda-drivers-570": True, "firmware-nvidia-gsp": True,
        "openssl": False, "openssh-server": False, "linux-image-amd64": False}


def test_it_never_reboots_and_stays_idle_in_the_lab(host, judged):
    assert judged["reboot"] is False
    assert judged["periodic"] == "0"
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert not host.service(timer).is_enabled and not host.service(timer).is_running, timer
