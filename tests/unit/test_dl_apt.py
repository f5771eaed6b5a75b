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
    ({"name": ["cuda-drivers=535.129.03-1"]}, [("cuda-drivers", "535.129.03-1")]),
])
def test_plain_installs_take_the_fast_path(args, expected):
    assert dl_apt.wanted_packages(args) == expected


@pytest.mark.parametrize("args", [
    {"name": ["nftables"], "state": "latest"},              # apt must look for a newer version
    {"name": ["nftables"], "state": "absent"},
    {"name": ["nftables"], "default_release": "bookworm-backports"},  # an option the fast path does not judge
    {"name": ["./local.deb"]},
    {"name": ["python3-apt>=2.0"]},                         # apt's own comparison
    {"name": ["cuda-drivers=535.*"]},                       # apt upgrades within a wildcard pin
    {"name": ["libc6:amd64"]},
    {"name": []},
    {"update_cache": True},                                 # a lists refresh only
    {"deb": "/tmp/x.deb"},
])
def test_anything_else_goes_to_apt(args):
    assert dl_apt.wanted_packages(args) is None


EXTENDED_STATES = """Package: libnftables1
Architecture: amd64
Auto-Installed: 1

Package: nginx-common
Architecture: amd64
Auto-Installed: 0

Package: iperf3
Architecture: amd64
Auto-Installed: 1
"""


def test_installed_packages_in_their_pinned_versions_need_nothing():
    stdout = ("nftables\tii \t1.0.6-2+deb12u2\ncuda-drivers\tii \t535.129.03-1\nnginx-common\tii \t1.22.1-9\n"
              f"{dl_apt.SEPARATOR}\n{EXTENDED_STATES}")
    found, auto = dl_apt.parse_dpkg_query(stdout), dl_apt.parse_auto_installed(stdout)
    assert auto == {"libnftables1", "iperf3"}
    assert dl_apt.not_installed([("nftables", None), ("cuda-drivers", "535.129.03-1"), ("nginx-common", None)],
                                found, auto) == []


def test_a_package_installed_only_as_a_dependency_goes_to_apt():
    """apt marks every package it is named manually installed; the fast path must not leave one marked automatic
    (an autoremove would take it away)."""
    stdout = f"iperf3\tii \t3.12-1\n{dl_apt.SEPARATOR}\n{EXTENDED_STATES}"
    assert dl_apt.not_installed([("iperf3", None)], dl_apt.parse_dpkg_query(stdout),
                                dl_apt.parse_auto_installed(stdout)) == ["iperf3"]


@pytest.mark.parametrize("line, pin", [
    ("", None),                                   # unknown to dpkg (dpkg-query prints nothing for it)
    ("nftables\trc \t1.0.6-2\n", None),            # removed, its configuration left
    ("nftables\tiU \t1.0.6-2\n", None),            # unpacked, not configured
    ("nftables\tiiR\t1.0.6-2\n", None),            # installed but reinstallation required
    ("nftables\tii \t1.0.6-2\n", "1.0.6-3"),       # another version than the pin
])
def test_missing_removed_broken_or_other_versions_go_to_apt(line, pin):
    missing = dl_apt.not_installed([("nftables", pin)], dl_apt.parse_dpkg_query(line))
    assert missing == ["nftables" if pin is None else f"nftables={pin}"]


def apt_marks(kind):
    """This machine's packages apt marks manual or auto (apt-mark showmanual/showauto), names without arch."""
    out = subprocess.run(["apt-mark", f"show{kind}"], capture_output=True, text=True, check=True).stdout.split()
    return sorted({name.split(":")[0] for name in out})


def test_the_query_reads_this_machines_dpkg_database():
    """The real command on this controller's dpkg and apt databases: packages installed by hand are "ii" and not
    automatic, an unknown one is simply absent, and automatic ones are read as apt-mark reads them."""
    manual, auto_marked = apt_marks("manual"), apt_marks("auto")
    assert manual and auto_marked, "a Debian machine has packages of both kinds"
    wanted = [(manual[0], None), (manual[-1], None), (auto_marked[0], None), ("dlcluster-no-such-package", None)]
    run = subprocess.run(["sh", "-c", dl_apt.dpkg_query_command(wanted)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    found, auto = dl_apt.parse_dpkg_query(run.stdout), dl_apt.parse_auto_installed(run.stdout)
    assert found[manual[0]][0] == "ii" and found[manual[-1]][0] == "ii"
    assert auto == set(auto_marked)
    assert dl_apt.not_installed(wanted, found, auto) == [auto_marked[0], "dlcluster-no-such-package"]


def test_the_action_answers_from_dpkg_through_ansible():
    """dl_apt as a task on this controller (check mode): packages installed by hand give changed=false without apt."""
    manual = apt_marks("manual")
    # The repository's settings with JSON out; Ansible's own strategy, as mitogen does not reach this controller
    # over a local connection (the lab's runs use dl_apt through mitogen over SSH).
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="json", ANSIBLE_STRATEGY="linear")
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible"), "localhost", "-c", "local",
                          "-i", "localhost,", "--check", "-m", "dl_apt", "-a", f"name={manual[0]},{manual[-1]}"],
                         capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    # Between the task timer's lines (profile_tasks, enabled in ansible.cfg).
    result = json.JSONDecoder().raw_decode(run.stdout[run.stdout.index("{"):])[0]["plays"][0]["tasks"][0]
    result = result["hosts"]["localhost"]
    assert result["changed"] is False and result["dl_apt_fast_path"] is True, result
