"""action_plugins/dl_job_bundle.py: the one archive of a job's files that every host of the job unpacks.

The archive is built from real files (a symlink, bytecode, modes) and unpacked with GNU tar, then the whole action
and the unarchive that follows it in roles/train/tasks/prepare.yml run through ansible on this controller.
"""

import json
import os
import subprocess
import sys
import tarfile

import pytest

from conftest import ROOT, load_script

bundle = load_script("dl_job_bundle_action", ROOT / "action_plugins" / "dl_job_bundle.py")


@pytest.fixture
def code(tmp_path):
    """A job's script directory as jobs/scripts is: a script, a symlinked helper, bytecode, a data subdirectory."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "helper.py").write_text("VALUE = 1\n")
    scripts = tmp_path / "scripts"
    (scripts / "__pycache__").mkdir(parents=True)
    (scripts / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (scripts / "data").mkdir()
    (scripts / "data" / "labels.txt").write_text("0 1 2\n")
    (scripts / "train.py").write_text("print('train')\n")
    (scripts / "train.py").chmod(0o750)
    (scripts / "stale.pyc").write_bytes(b"\x00")
    (scripts / "helper.py").symlink_to(shared / "helper.py")
    return scripts


def unpack(data: bytes, where) -> None:
    archive = where / "bundle.tar.gz"
    archive.write_bytes(data)
    where.joinpath("out").mkdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(where / "out")], check=True)


def test_the_archive_holds_the_tree_the_texts_and_empty_directories(code, tmp_path):
    data = bundle.build([{"name": "code", "src": str(code)},
                         {"name": "hparams.conf", "content": "epochs=2\n"},
                         {"name": "job-agent", "src": str(code / "train.py"), "mode": "0755"},
                         {"name": "output"}, {"name": "logs"}], prefix="runs/job1", now=1_700_000_000)
    unpack(data, tmp_path)
    job = tmp_path / "out" / "runs" / "job1"
    found = sorted(str(p.relative_to(job)) for p in job.rglob("*"))
    assert found == ["code", "code/data", "code/data/labels.txt", "code/helper.py", "code/train.py",
                     "hparams.conf", "job-agent", "logs", "output"]
    # The symlink arrives as the file it points to; modes are kept or set.
    assert not (job / "code" / "helper.py").is_symlink()
    assert (job / "code" / "helper.py").read_text() == "VALUE = 1\n"
    assert (job / "code" / "train.py").stat().st_mode & 0o777 == 0o750
    assert (job / "job-agent").stat().st_mode & 0o777 == 0o755
    assert (job / "hparams.conf").read_text() == "epochs=2\n"
    assert (job / "logs").is_dir() and not any((job / "logs").iterdir())


def test_every_parent_directory_comes_before_its_members(code):
    data = bundle.build([{"name": "code", "src": str(code)}, {"name": "a/b/c.txt", "content": "x"}], prefix="runs/j")
    with tarfile.open(fileobj=__import__("io").BytesIO(data)) as archive:
        names = archive.getnames()
        owners = {(m.uid, m.gid, m.uname, m.gname) for m in archive.getmembers()}
    for index, name in enumerate(names):
        parent = os.path.dirname(name)
        assert not parent or parent in names[:index], (name, names)
    assert names[:2] == ["runs", "runs/j"]
    # Nobody's files: whoever unpacks them owns them.
    assert owners == {(0, 0, "", "")}


@pytest.mark.parametrize("members, prefix, message", [
    ([{"name": "../escape", "content": "x"}], "", "not a relative path"),
    ([{"name": "", "content": "x"}], "", "not a relative path"),
    ([{"name": "a", "content": "x"}], "runs/../..", "not a relative path"),
    ([{"name": "a", "content": "x"}, {"name": "a", "content": "y"}], "", "given twice"),
    ([{"name": "a", "src": "/nonexistent/dlcluster"}], "", "neither a file nor a directory"),
    ([{"name": "a", "content": "x", "mode": "rw"}], "", "not an octal mode"),
])
def test_bad_members_are_refused_with_the_member_named(members, prefix, message):
    with pytest.raises(bundle.AnsibleActionFail, match=message):
        bundle.build(members, prefix=prefix)


def run_playbook(tmp_path, code, *extra):
    dest = tmp_path / "results" / "job-files.tar.gz"
    dest.parent.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    playbook = tmp_path / "bundle.yml"
    playbook.write_text(json.dumps([{
        "name": "Bundle and unpack", "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"name": "Bundle", "dl_job_bundle": {
                "dest": str(dest), "prefix": "runs/job1",
                "members": [{"name": "code", "src": str(code)}, {"name": "hparams.conf", "content": "lr=0.1\n"},
                            {"name": "logs"}]}},
            {"name": "Unpack", "ansible.builtin.unarchive": {"src": str(dest), "dest": str(home)}},
        ]}]))
    # The repository's settings; Ansible's own strategy, as mitogen does not reach this controller over a local
    # connection (the lab's jobs run it through mitogen over SSH).
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STRATEGY="linear")
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                          "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook), *extra], capture_output=True, text=True, cwd=ROOT, env=env,
                         check=False)
    return run, dest, home / "runs" / "job1"


def test_the_action_writes_the_archive_that_unarchive_unpacks(code, tmp_path):
    run, dest, job = run_playbook(tmp_path, code)
    assert run.returncode == 0, run.stdout + run.stderr
    assert dest.is_file()
    assert (job / "code" / "train.py").read_text() == "print('train')\n"
    assert (job / "hparams.conf").read_text() == "lr=0.1\n"
    assert (job / "logs").is_dir()
    assert not (job / "code" / "__pycache__").exists()


def test_check_mode_writes_nothing(code, tmp_path):
    run, dest, job = run_playbook(tmp_path, code, "--check")
    # unarchive in check mode fails on the missing archive; the bundle task before it must not have written one.
    assert not dest.exists(), run.stdout
    assert not job.exists()
