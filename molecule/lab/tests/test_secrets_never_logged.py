"""No secret of the inventory is ever printed: not by the lab's first converge at -vvv (the run that uses every
secret: devpi's initialisation, Jupyter's token, TensorBoard's login), and not by a -vvv run that rotates them all.

scripts/molecule-suite.sh runs the lab's converge at -vvv into .ansible/lab-converge-vvv.log. The rotation writes new
secrets into the lab's state (where the inventory's password lookups read them) and names the old root password
in pip_mirror_root_password_previous; every service then takes only the new ones."""

import json
import os
import re
import secrets as tokens
import shlex
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import ROOT, controller_curl, lab_address, plain, run_playbook  # noqa: E402

testinfra_hosts = ["ansible://head"]

STATE = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"]
CONVERGE_LOG = ROOT / ".ansible" / "lab-converge-vvv.log"
# The state files behind the inventory's secrets (inventories/lab/group_vars/all/{pip,notebooks}.yml).
SECRET_FILES = ("devpi-root-password", "jupyter-token", "tensorboard-password")
# At -vvv every result shows the module's arguments (YAML or JSON results).
VERBOSE = re.compile(r"\bmodule_args\b")


def read_secrets() -> dict:
    found = {name: (STATE / name).read_text().split()[0] for name in SECRET_FILES}
    # The datasets' S3 key pair (molecule/lab/files/publish_upstream.py), handed to rclone on the cache host.
    s3 = json.loads((STATE / "s3-credentials.json").read_text())["lab-s3"]
    found.update({"s3-access-key": s3["access_key_id"], "s3-secret-key": s3["secret_access_key"]})
    return found


def leaks(output: str, values) -> list[str]:
    """The secrets that appear in the output, each shortened to its first 4 characters. Whitespace and molecule's
    frame are taken out first: a secret that a wrapped line splits in two is still found."""
    flat = re.sub(r"[\s│]+", "", output)
    return [value[:4] + "..." for value in values if value in flat]


def devpi_login(password: str) -> int:
    body = json.dumps({"user": "root", "password": password})
    return controller_curl("-X", "POST", "-H", "Content-Type: application/json", "-d", body,
                           f"https://{lab_address('head')}:3141/+login")[0]


def test_the_first_converge_at_vvv_prints_no_secret():
    assert CONVERGE_LOG.exists(), f"{CONVERGE_LOG} is missing: scripts/molecule-suite.sh writes it (make molecule)"
    output = plain(CONVERGE_LOG.read_text(errors="replace"))
    # The capture is the real thing: at -vvv (module arguments printed), and it reached the tasks that use secrets.
    assert VERBOSE.search(output) and "PLAY RECAP" in output, "the capture is not a -vvv converge"
    for task in ("pip_mirror : Initialise devpi's state", "pip_mirror : Configure the indexes",
                 "jupyter : ", "tensorboard : ", "datasets : Fill the cache from upstream"):
        assert f"TASK [{task}" in output, f"the converge never reached {task}"
    assert leaks(output, read_secrets().values()) == []


@pytest.fixture(scope="module")
def rotation(tmp_path_factory):
    old = read_secrets()
    new = {name: tokens.token_urlsafe(24) for name in SECRET_FILES}
    extra = tmp_path_factory.mktemp("rotation") / "previous.json"
    # The canary's probe runs (its check mode handles the secrets too); the batches are one: all hosts at once.
    extra.write_text(json.dumps({"pip_mirror_root_password_previous": [old["devpi-root-password"]],
                                 "dl_rollout_batches": ["100%"]}))
    extra.chmod(0o600)
    for name, value in new.items():
        (STATE / name).write_text(value + "\n")
    # --diff too: the files that hold the secrets change, and their diffs must not show them.
    run = run_playbook("site.yml", "--tags", "pip_mirror,notebooks", "-vvv", "--diff", "-e", f"@{extra}")
    return old, new, run


def test_a_run_that_rotates_every_secret_prints_none_of_them(rotation):
    old, new, run = rotation
    output = plain(run.stdout + run.stderr)
    assert run.returncode == 0, output[-4000:]
    assert VERBOSE.search(output), "the rotation run is not at -vvv"
    assert leaks(output, [*old.values(), *new.values()]) == []
    for task in ("pip_mirror : Make the root password the inventory's", "jupyter : ", "tensorboard : "):
        assert f"TASK [{task}" in output, f"the rotation never reached {task}"


def test_after_the_rotation_only_the_new_secrets_open_the_services(rotation):
    old, new, _ = rotation
    assert devpi_login(new["devpi-root-password"]) == 200
    assert devpi_login(old["devpi-root-password"]) == 401
    # Every host serves Jupyter and TensorBoard (playbooks/notebooks.yml): each takes only the new ones.
    for name in ("head", "cpu1", "cpu2"):
        address = lab_address(name)
        for token, status in ((new["jupyter-token"], 200), (old["jupyter-token"], 403)):
            assert controller_curl("-H", f"Authorization: token {token}",
                                   f"https://{address}:8888/api/status")[0] == status, name
        for password, status in ((new["tensorboard-password"], 200), (old["tensorboard-password"], 401)):
            assert controller_curl("-u", f"tensorboard:{password}", f"https://{address}:6006/")[0] == status, name


def test_no_secret_is_left_readable_by_other_users_on_the_host(host, rotation):
    """The rotated secrets sit only in root- or service-owned files that no other user can read."""
    _, new, _ = rotation
    pattern = "|".join(re.escape(value) for value in new.values())
    with host.sudo():
        # Not the environments' installed packages (gigabytes of wheels the roles never write a secret into).
        found = host.run(f"grep -rlE --exclude-dir=site-packages {shlex.quote(pattern)} /etc /opt/dlcluster /home "
                         "/var/lib/devpi 2>/dev/null "
                         "| xargs -r stat -c '%a %U %n'").stdout.split("\n")
    world_readable = [line for line in found if line and int(line.split()[0], 8) & 0o004]
    assert world_readable == [], world_readable
