"""Users stay apart: two ML users (alice, carol) and the ops user, each with a 0750 home and umask 027 in their login
shells, cannot read each other's files: not the ops user's runs, environments or Jupyter settings, not each other's
homes. Root's own sessions keep the system's umask."""

import shlex

import pytest

testinfra_hosts = ["ansible://head"]

OPS_USER = "ubuntu"
ML_USERS = ["alice", "carol"]


def as_user(host, user, command):
    """`command` in `user`'s login shell (su - reads /etc/profile and its profile.d, as an SSH login does)."""
    with host.sudo():
        return host.run(f"su - {user} -c {shlex.quote(command)}")


@pytest.mark.parametrize("user", [OPS_USER, *ML_USERS])
def test_homes_are_0750(host, user):
    home = host.file(f"/home/{user}")
    assert (home.user, home.mode) == (user, 0o750)


@pytest.mark.parametrize("path", [f"/home/{OPS_USER}", f"/home/{OPS_USER}/runs", f"/home/{OPS_USER}/workspaces",
                                  "/etc/dlcluster/jupyter/jupyter_server_config.json", "/home/carol"])
def test_an_ml_user_cannot_read_the_ops_users_files_or_another_users_home(host, path):
    with host.sudo():
        assert host.file(path).exists
    denied = as_user(host, "alice", f"ls {path} || cat {path}")
    assert denied.rc != 0 and "Permission denied" in denied.stderr


@pytest.mark.parametrize("user", [OPS_USER, *ML_USERS])
def test_login_shells_of_managed_users_get_umask_027(host, user):
    assert as_user(host, user, "umask").stdout.strip() == "0027"
    touched = as_user(host, user, "f=~/umask-probe; rm -f $f; touch $f; stat -c %a $f; rm -f $f")
    assert touched.stdout.strip() == "640"


def test_root_sessions_keep_the_system_umask(host):
    with host.sudo():
        assert host.run("sudo -i sh -c umask").stdout.strip() == "0022"


def test_jupyter_writes_files_with_umask_027(host):
    assert host.run("systemctl show --property UMask --value dlcluster-jupyter").stdout.strip() == "0027"
