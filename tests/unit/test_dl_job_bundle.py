"""action_plugins/dl_job_bundle.py and library/dl_job_files.py: the one archive of a job's files, built once on the
controller, that every host of the job unpacks in one module run.

The archive is built from real files (a symlink, bytecode, modes) and unpacked with GNU tar; the unpacker's checks
are tried on hostile members; then both run through ansible on this controller as roles/train/tasks/prepare.yml
runs them.
"""

import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from ansible.module_utils import dl_job_host as job_host
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
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
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
    """dl_job_bundle, then dl_job_files as in roles/train/tasks/prepare.yml (a forced re-run: replace), on this
    controller. The home already holds an earlier run of the job with a file the new archive does not have."""
    dest = tmp_path / "results" / "job-files.tar.gz"
    dest.parent.mkdir()
    home = tmp_path / "home"
    (home / "runs" / "job1" / "output").mkdir(parents=True)
    (home / "runs" / "job1" / "output" / "stale.json").write_text("{}")
    playbook = tmp_path / "bundle.yml"
    playbook.write_text(json.dumps([{
        "name": "Bundle and unpack", "hosts": "localhost", "gather_facts": False,
        "tasks": [
            {"name": "Bundle", "register": "bundle", "dl_job_bundle": {
                "dest": str(dest), "prefix": "runs/job1",
                "members": [{"name": "code", "src": str(code)}, {"name": "hparams.conf", "content": "lr=0.1\n"},
                            {"name": "logs"}]}},
            {"name": "Unpack", "dl_job_files": {"dest": str(home), "root": "runs/job1", "replace": True,
                                                "archive": "{{ bundle.data }}"}},
        ]}]))
    # The repository's settings; Ansible's own strategy, as mitogen does not reach this controller over a local
    # connection (the lab's jobs run it through mitogen over SSH).
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STRATEGY="linear")
    run = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                          "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook),
                          *extra], capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    return run, dest, home / "runs" / "job1"


def test_the_archive_written_once_is_unpacked_by_one_module_run_replacing_the_earlier_run(code, tmp_path):
    run, dest, job = run_playbook(tmp_path, code)
    assert run.returncode == 0, run.stdout + run.stderr
    assert dest.is_file()
    assert (job / "code" / "train.py").read_text() == "print('train')\n"
    assert (job / "code" / "train.py").stat().st_mode & 0o777 == 0o750
    assert (job / "hparams.conf").read_text() == "lr=0.1\n"
    assert (job / "logs").is_dir()
    assert not (job / "code" / "__pycache__").exists()
    assert not (job / "output").exists(), "the earlier run's files were left"


def test_check_mode_writes_nothing(code, tmp_path):
    run, dest, job = run_playbook(tmp_path, code, "--check")
    assert run.returncode == 0, run.stdout + run.stderr
    assert not dest.exists()
    assert (job / "output" / "stale.json").exists() and not (job / "code").exists()


files = load_script("dl_job_files_module", ROOT / "library" / "dl_job_files.py")


def archive_of(*members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for member in members:
            archive.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    buffer.seek(0)
    return tarfile.open(fileobj=buffer, mode="r:gz")


def member(name, kind=tarfile.REGTYPE, **fields):
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, 1 if kind == tarfile.REGTYPE else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def test_the_unpacker_takes_directories_and_files_below_the_root():
    archive = archive_of(member("runs", tarfile.DIRTYPE), member("runs/j", tarfile.DIRTYPE), member("runs/j/a"))
    assert [m.name for m in job_host.checked_members(archive, "runs/j")] == ["runs", "runs/j", "runs/j/a"]


@pytest.mark.parametrize("bad, why", [
    (member("runs/j/link", tarfile.SYMTYPE, linkname="/etc/shadow"), "neither a directory nor a regular file"),
    (member("runs/j/hard", tarfile.LNKTYPE, linkname="runs/j/a"), "neither a directory nor a regular file"),
    (member("runs/j/../../.bashrc"), "climbs out"),
    (member("/etc/cron.d/job"), "absolute"),
    (member("runs/other/a"), "not below runs/j"),
    (member("runs/jx"), "not below runs/j"),
])
def test_the_unpacker_refuses_anything_else_before_writing(bad, why):
    with pytest.raises(ValueError, match=why):
        job_host.checked_members(archive_of(member("runs/j", tarfile.DIRTYPE), bad), "runs/j")


def test_run_as_root_the_unpacker_writes_as_the_owner_and_replaces_the_earlier_run(code):
    """As root (CI, the lab's hosts): rm and tar run as the owner, here `nobody`, so the files are the owner's. Run as
    another user, the module unpacks as that user (owner is then the user itself)."""
    owner = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    home = Path(tempfile.mkdtemp(prefix="dl-job-files-"))  # under /tmp, which every user may traverse
    try:
        home.chmod(0o777)
        data = bundle.build([{"name": "code", "src": str(code)}, {"name": "logs"}], prefix="runs/j")
        job_host.extract(data, str(home), str(home / "runs" / "j"), False, owner)
        (home / "runs" / "j" / "logs" / "old.log").write_text("earlier run")
        job_host.extract(data, str(home), str(home / "runs" / "j"), True, owner)
        uid = pwd.getpwnam(owner).pw_uid
        assert {p.stat().st_uid for p in (home / "runs").rglob("*")} == {uid}
        assert (home / "runs" / "j" / "code" / "train.py").read_text() == "print('train')\n"
        assert not (home / "runs" / "j" / "logs" / "old.log").exists()
    finally:
        shutil.rmtree(home)


@pytest.mark.parametrize("module", [files, load_script("dl_job_bundle_doc", ROOT / "library" / "dl_job_bundle.py")])
def test_the_modules_documentation_is_yaml_that_names_every_option(module):
    import yaml  # pylint: disable=import-outside-toplevel
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["options"] and all(option.get("description") for option in doc["options"].values()), doc
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
