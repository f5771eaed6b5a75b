"""action_plugins/dl_apt.py: apt answered from dpkg only when every package is installed in an allowed version.

The decision is tested on dpkg-query's real output format; the whole action runs through ansible on this Debian
controller against its own dpkg database (the lab's converge runs the apt path on fresh hosts, and its idempotence
stage the fast path).
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, load_script

dl_apt = load_script("dl_apt_action", ROOT / "action_plugins" / "dl_apt.py")


@pytest.mark.parametrize("args, expected", [
    ({"name": ["nftables"], "state": "present", "update_cache": True, "cache_valid_time": 3600},
     [("nftables", None)]),
    ({"name": "nginx, nginx-common"}, [("nginx", None), ("nginx-common", None)]),
    ({"name": ["docker.io=20.10.24+dfsg1-1+deb12u1+b6"], "install_recommends": False},
     [("docker.io", "20.10.24+dfsg1-1+deb12u1+b6")]),
    ({"name": ["cuda-drivers=535.*"]}, [("cuda-drivers", "535.*")]),
])
def test_plain_installs_take_the_fast_path(args, expected):
    assert dl_apt.wanted_packages(args) == expected


@pytest.mark.parametrize("args", [
    {"name": ["nftables"], "state": "latest"},              # apt must look for a newer version
    {"name": ["nftables"], "state": "absent"},
    {"name": ["nftables"], "default_release": "bookworm-backports"},  # an option the fast path does not judge
    {"name": ["./local.deb"]},
    {"name": ["python3-apt>=2.0"]},                         # apt's own comparison
    {"name": ["libc6:amd64"]},
    {"name": []},
    {"update_cache": True},                                 # a lists refresh only
    {"deb": "/tmp/x.deb"},
])
def test_anything_else_goes_to_apt(args):
    assert dl_apt.wanted_packages(args) is None


def test_installed_packages_in_allowed_versions_need_nothing():
    found = dl_apt.parse_dpkg_query("nftables\tii \t1.0.6-2+deb12u2\ncuda-drivers\tii \t535.129.03-1\n")
    assert dl_apt.not_installed([("nftables", None), ("cuda-drivers", "535.*")], found) == []


@pytest.mark.parametrize("line, pin", [
    ("", None),                                   # unknown to dpkg (dpkg-query prints nothing for it)
    ("nftables\trc \t1.0.6-2\n", None),            # removed, its configuration left
    ("nftables\tiU \t1.0.6-2\n", None),            # unpacked, not configured
    ("nftables\tiiR\t1.0.6-2\n", None),            # installed but reinstallation required
    ("nftables\tii \t1.0.6-2\n", "1.0.9*"),        # another version than the pin
])
def test_missing_removed_broken_or_other_versions_go_to_apt(line, pin):
    missing = dl_apt.not_installed([("nftables", pin)], dl_apt.parse_dpkg_query(line))
    assert missing == ["nftables" if pin is None else f"nftables={pin}"]


def test_the_query_reads_this_machines_dpkg_database():
    """The real command: installed packages are "ii" with their version, an unknown one is simply absent."""
    wanted = [("dpkg", None), ("coreutils", None), ("dlcluster-no-such-package", None)]
    run = subprocess.run(["sh", "-c", dl_apt.dpkg_query_command(wanted)], capture_output=True, text=True, check=False)
    found = dl_apt.parse_dpkg_query(run.stdout)
    assert found["dpkg"][0] == "ii" and found["coreutils"][0] == "ii"
    assert dl_apt.not_installed(wanted, found) == ["dlcluster-no-such-package"]


def test_the_action_answers_from_dpkg_through_ansible():
    """dl_apt as a task on this controller (check mode): installed packages give changed=false without apt."""
    # The repository's settings with JSON out; Ansible's own strategy, as mitogen does not reach this controller
    # over a local connection (the lab's runs use dl_apt through mitogen over SSH).
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_STRATEGY="linear")
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
                          "-i", "localhost,", "--check", "-m", "dl_apt", "-a", "name=dpkg,coreutils"],
                         capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    # Between the task timer's lines (profile_tasks, enabled in ansible.cfg).
    result = json.JSONDecoder().raw_decode(run.stdout[run.stdout.index("{"):])[0]["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert result["changed"] is False and result["dl_apt_fast_path"] is True, result
