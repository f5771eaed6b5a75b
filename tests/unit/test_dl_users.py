"""Unit tests of dl_accounts (filter_plugins/dl_users.py) and dl_user_problems."""

import pytest
from ansible.errors import AnsibleFilterError
from conftest import FIXTURES

from dl_inventory import dl_inventory_problems, dl_user_problems
from dl_users import FilterModule, dl_accounts, dl_ca_file_name, dl_system_account_problems

KEY = (FIXTURES / "ssh" / "ed25519.pub").read_text().strip()


def test_accounts_fill_defaults():
    (alice,) = dl_accounts([{"name": "alice"}], {"shell": "/bin/zsh", "groups": ["video"]})
    assert alice == {"name": "alice", "state": "present", "comment": "", "shell": "/bin/zsh",
                     "groups": ["video"], "authorized_keys": [], "sudo": ""}


def test_accounts_keep_given_values():
    (bob,) = dl_accounts([{"name": "bob", "groups": [], "sudo": "ALL=(ALL) ALL",
                           "authorized_keys": [KEY], "state": "absent"}], {"groups": ["video"]})
    assert bob["groups"] == [] and bob["sudo"] == "ALL=(ALL) ALL" and bob["state"] == "absent"


@pytest.mark.parametrize("users", ["alice", [{"state": "present"}], ["alice"]])
def test_accounts_reject_malformed(users):
    with pytest.raises(AnsibleFilterError, match="dl_accounts"):
        dl_accounts(users)


def test_user_problems_clean():
    assert dl_user_problems([{"name": "alice", "authorized_keys": [KEY]}, {"name": "bob", "state": "absent"}]) == []


@pytest.mark.parametrize("users,expected", [
    ([{"name": "Alice"}], "dl_users[0].name 'Alice' is not a valid user name"),
    ([{"name": "a"}, {"name": "a"}], "dl_users[1].name 'a' is listed twice"),
    ([{"name": "a", "state": "gone"}], "dl_users[0].state is 'gone'"),
    ([{"name": "a", "authorized_keys": ["ssh-rsa AAAA"]}], "dl_users[0].authorized_keys[0]"),
    ([{"name": "a", "password": "x"}], "unknown keys ['password']"),
    ([{"name": "a", "sudo": "ALL=(ALL) ALL\nroot ALL"}], "one sudoers rule on one line"),
    ("alice", "dl_users must be a list"),
])
def test_user_problems(users, expected):
    problems = dl_user_problems(users)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("state", ["present", "absent"])
def test_root_is_refused(state):
    (problem,) = dl_user_problems([{"name": "root", "state": state}], ops_user="ubuntu")
    assert problem.startswith("dl_users[0].name 'root' is the superuser") and "remove the entry" in problem


def test_ops_user_is_refused():
    (problem,) = dl_user_problems([{"name": "alice"}, {"name": "ubuntu"}], ops_user="ubuntu")
    assert problem.startswith("dl_users[1].name 'ubuntu' is the ops user") and "remove the entry" in problem


PASSWD = """root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
alice:x:1001:1001:Alice:/home/alice:/bin/bash
"""


def test_system_accounts_are_refused():
    users = [{"name": "alice"}, {"name": "daemon"}, {"name": "bob"}, {"name": "_apt", "state": "absent"}]
    problems = dl_system_account_problems(users, PASSWD, "n1")
    assert len(problems) == 2, problems
    assert problems[0].startswith("host n1: dl_users[1].name 'daemon' is a system account there (UID 1, below 1000)")
    assert "remove the entry from dl_users" in problems[0] and "dl_users[3].name '_apt'" in problems[1]


def test_system_accounts_from_lines_and_threshold():
    lines = PASSWD.splitlines()
    assert dl_system_account_problems([{"name": "alice"}], lines, "n1") == []
    assert "UID 1001, below 2000" in dl_system_account_problems([{"name": "alice"}], lines, "n1", 2000)[0]
    assert dl_system_account_problems([], "", "n1") == [] and dl_system_account_problems(None, "", "n1") == []


@pytest.mark.parametrize("users,passwd", [("alice", ""), ([{"name": "a"}], 5)])
def test_system_accounts_reject_malformed(users, passwd):
    with pytest.raises(AnsibleFilterError, match="dl_system_account_problems"):
        dl_system_account_problems(users, passwd, "n1")


def test_ops_user_cannot_be_marked_absent():
    assert "marks the ops user 'ubuntu' absent" in dl_user_problems(
        [{"name": "ubuntu", "state": "absent"}], ops_user="ubuntu")[0]


def test_inventory_problems_include_users():
    hostvars = {"n1": {"ansible_host": "10.0.0.1", "dl_ops_user": "ubuntu", "dl_ops_authorized_keys": [KEY],
                       "dl_users": [{"name": "x y"}]}}
    assert dl_inventory_problems(hostvars, ["n1"])[0].startswith("host n1: dl_users[0].name 'x y'")


@pytest.mark.parametrize("path,name", [
    ("/x/corp.pem", "corp.crt"), ("/x/corp.crt", "corp.crt"), ("/x/corp.cer", "corp.cer.crt"), ("ca", "ca.crt")])
def test_ca_file_name(path, name):
    assert dl_ca_file_name(path) == name


def test_filter_module():
    assert set(FilterModule().filters()) == {"dl_accounts", "dl_ca_file_name", "dl_system_account_problems"}
