"""roles/datasets on the converged lab. The outsider plays upstream: an HTTPS server (MNIST 5k packed as the upstream
idx files) and a real S3 server (`rclone serve s3`, a checkpoint archive), both made by prepare.yml; head is the
cluster cache. The DDP sample trains from the synced copy in test_train.py."""

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import lab_address, lab_host, plain, run_playbook, start_playbook  # noqa: E402

testinfra_hosts = ["ansible://head", "ansible://cpu1", "ansible://cpu2"]

STATE = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"]
CATALOGUE = json.loads((STATE / "datasets-catalogue.json").read_text())
MNIST = CATALOGUE["mnist-5k"]["manifest"]["files"]
UPSTREAM = "/srv/upstream/https"
CACHE_LOG = "/var/log/nginx/dlcluster-datasets-cache.access.log"


def flat(run) -> str:
    """A run's output in one line: molecule's verify forces colour, and the YAML callback wraps long messages
    (each wrapped line in its own colour codes)."""
    return " ".join(plain(run.stdout + run.stderr).split())


def upstream_gets(path_prefix: str) -> dict:
    """GET requests the outsider's HTTPS server answered with 200, per path under path_prefix."""
    outsider = lab_host("outsider")
    with outsider.sudo():
        log = outsider.check_output("journalctl --unit test-https --no-pager --output cat")
    counts: dict = {}
    for path in re.findall(rf'"GET {re.escape(path_prefix)}(\S+) HTTP/1\.[01]" 200 ', log):
        counts[path] = counts.get(path, 0) + 1
    return counts


def sha256s(host, directory: str) -> dict:
    """sha256 of the files (not the directories) in a directory."""
    with host.sudo():
        out = host.check_output(f"cd {directory} && find . -maxdepth 1 -type f -printf '%P\\0' | xargs -0 sha256sum")
    return {line.split()[1]: line.split()[0] for line in out.splitlines()}


def datasets_run(*args: str, catalogue: dict | None = None, **extra):
    extra_vars = dict(extra)
    if catalogue is not None:
        extra_vars["datasets_catalogue_extra"] = catalogue
    argv = ["-e", json.dumps(extra_vars)] if extra_vars else []
    return run_playbook("playbooks/datasets.yml", *argv, *args)


def test_every_host_has_each_entry_verified_and_current(host):
    with host.sudo():
        assert host.check_output("readlink /data/datasets/mnist-5k/current") == "1"
        assert host.check_output("readlink /data/models/toy-resnet/current") == "1"
        # The checkpoint archive came from S3 and was extracted beside itself.
        assert host.file("/data/models/toy-resnet/current/toy-resnet/model.ckpt.index").is_file
    assert sha256s(host, "/data/datasets/mnist-5k/current") == MNIST
    model = CATALOGUE["toy-resnet"]["manifest"]["files"]
    assert {name: digest for name, digest in sha256s(host, "/data/models/toy-resnet/1").items()
            if name in model} == model


def test_upstream_sent_each_object_once_and_the_workers_fetched_from_the_cache():
    """Three hosts hold MNIST; the outsider served each of its files once (to head, the cache), through the
    converge, its re-run and its check-mode run. cpu1 and cpu2 fetched every file from head's nginx."""
    gets = upstream_gets(f"{UPSTREAM}/mnist-5k/1/")
    assert gets == dict.fromkeys(MNIST, 1), gets
    head = lab_host("head")
    with head.sudo():
        log = head.check_output(f"cat {CACHE_LOG}")
    for worker in ("cpu1", "cpu2"):
        fetched = set(re.findall(rf'^{re.escape(lab_address(worker))} .*"GET /datasets/mnist-5k/1/(\S+) HTTP/1\.1" 200 ',
                                 log, re.MULTILINE))
        assert fetched == set(MNIST), (worker, fetched)
    # Outsiders cannot reach the cache.
    outsider = lab_host("outsider")
    code = outsider.run(f"curl -sk --max-time 5 -o /dev/null -w '%{{http_code}}' "
                        f"https://{lab_address('head')}:8444/datasets/mnist-5k/1/{next(iter(MNIST))}").stdout
    assert code in ("000", ""), code


def test_a_corrupted_upstream_is_refused_naming_the_object_and_current_is_kept():
    """Version 2 published with one file corrupted after its manifest: the cache refuses it, naming the file,
    and no host switches; current stays at 1 everywhere."""
    bad = "t10k-labels-idx1-ubyte.gz"
    outsider = lab_host("outsider")
    with outsider.sudo():
        outsider.check_output(f"rm -rf {UPSTREAM}/mnist-5k/2 && cp -a {UPSTREAM}/mnist-5k/1 {UPSTREAM}/mnist-5k/2 && "
                              f"printf 'X' | dd of={UPSTREAM}/mnist-5k/2/{bad} bs=1 seek=100 conv=notrunc status=none")
    catalogue = json.loads(json.dumps(CATALOGUE))
    catalogue["mnist-5k"]["version"] = "2"
    catalogue["mnist-5k"]["source"]["url"] = catalogue["mnist-5k"]["source"]["url"].replace("/1/", "/2/")
    run = datasets_run(catalogue=catalogue)
    output = flat(run)
    assert run.returncode != 0
    assert (f"mnist-5k 2: {bad} from the source do(es) not match the manifest (sha256); nothing was switched, "
            "current still points at 1") in output, output[-3000:]
    for name in ("head", "cpu1", "cpu2"):
        node = lab_host(name)
        with node.sudo():
            assert node.check_output("readlink /data/datasets/mnist-5k/current") == "1", name
            assert not node.file("/data/datasets/mnist-5k/2").exists, name
    head = lab_host("head")
    with head.sudo():
        assert head.check_output("readlink /data/cache/datasets/mnist-5k/current") == "1"
        staged = head.check_output("ls /data/cache/datasets/mnist-5k/.2.partial").split()
    assert bad not in staged and len(staged) == 3, staged


def test_a_killed_transfer_resumes_without_fetching_the_finished_files_again():
    """Four 4 MiB files straight from upstream to cpu1 at 1 MiB/s, one at a time; the run is killed once the first
    file is complete; the re-run fetches the rest, and upstream never sent a finished file twice."""
    outsider, cpu1 = lab_host("outsider"), lab_host("cpu1")
    names = [f"part-{i}.bin" for i in range(4)]
    version = time.strftime("%Y%m%d%H%M%S")  # a directory of its own: upstream's log counts only this run
    published = f"{UPSTREAM}/resume/{version}"
    with outsider.sudo():
        outsider.check_output(f"mkdir -p {published} && cd {published} && "
                              + " && ".join(f"head -c 4194304 /dev/urandom > {name}" for name in names))
        digests = dict(reversed(line.split()) for line in
                       outsider.check_output(f"cd {published} && sha256sum *").splitlines())
    catalogue = {**CATALOGUE, "resume": {
        "kind": "dataset", "version": version,
        "source": {"type": "http",
                   "url": CATALOGUE["mnist-5k"]["source"]["url"].replace("mnist-5k/1", f"resume/{version}")},
        "manifest": {"algorithm": "sha256", "files": digests}}}
    extra = {"datasets_catalogue_extra": catalogue, "datasets_enabled": ["resume"], "datasets_cache_host": "",
             "datasets_transfers": 1}
    with cpu1.sudo():
        cpu1.run("rm -rf /data/datasets/resume")
    slow = start_playbook("playbooks/datasets.yml", "--limit", "cpu1",
                          "-e", json.dumps({**extra, "datasets_bwlimit": "1M"}))
    finished: list = []
    deadline = time.time() + 120
    try:
        while time.time() < deadline and slow.poll() is None and not finished:
            with cpu1.sudo():
                listing = cpu1.run(f"ls /data/datasets/resume/.{version}.partial 2>/dev/null").stdout.split()
            finished = [name for name in listing if name in names]
            time.sleep(0.3)
    finally:
        slow.kill()
        with cpu1.sudo():
            cpu1.run("pkill -f '[r]clone copy'")
    assert finished and len(finished) < len(names), \
        f"no file finished alone before the kill: {finished}\n{(slow.stdout.read() if slow.stdout else '')[-3000:]}"
    run = run_playbook("playbooks/datasets.yml", "--limit", "cpu1", "-e", json.dumps(extra))
    assert run.returncode == 0, run.stdout[-3000:]
    assert sha256s(cpu1, "/data/datasets/resume/current") == digests
    gets = upstream_gets(f"{published}/")
    assert all(gets[name] == 1 for name in finished), (finished, gets)
    assert set(gets) == set(names)
    with cpu1.sudo():  # nothing the killed run left behind went into the version
        assert cpu1.run("find /data/datasets/resume/current/ -name '*.partial'").stdout.strip() == ""
    with cpu1.sudo():
        cpu1.run("rm -rf /data/datasets/resume")
    with outsider.sudo():
        outsider.run(f"rm -rf {published}")


def test_a_local_change_is_reported_and_left_alone_until_forced_then_a_rerun_changes_nothing():
    cpu1 = lab_host("cpu1")
    changed = "/data/datasets/mnist-5k/1/t10k-labels-idx1-ubyte.gz"
    with cpu1.sudo():
        cpu1.check_output(f"printf 'my edit' >> {changed}")
    try:
        run = datasets_run("--limit", "cpu1")
        output = flat(run)
        assert run.returncode == 0, output[-3000:]
        assert ("Host cpu1: mnist-5k 1 has files changed locally, left alone: t10k-labels-idx1-ubyte.gz. Run with -e "
                "datasets_force=true to replace them.") in output, output[-3000:]
        assert sha256s(cpu1, "/data/datasets/mnist-5k/1")["t10k-labels-idx1-ubyte.gz"] != \
            MNIST["t10k-labels-idx1-ubyte.gz"]
    finally:  # whatever failed above, the DDP sample (test_train.py) reads this copy: force it back
        forced = datasets_run("--limit", "cpu1", datasets_force=True)
    assert forced.returncode == 0, flat(forced)[-3000:]
    assert sha256s(cpu1, "/data/datasets/mnist-5k/1") == MNIST
    again = datasets_run("--limit", "cpu1")
    assert again.returncode == 0 and re.search(r"cpu1\s+: ok=\d+\s+changed=0\s", plain(again.stdout)), \
        flat(again)[-2000:]


def test_the_job_spec_can_point_at_the_synced_copy():
    """The loader reads the upstream idx files (jobs/scripts/mnist_data.py), here from cpu2's synced copy."""
    cpu2 = lab_host("cpu2")
    code = ("import sys; sys.path.insert(0, '/home/ubuntu/test'); import mnist_data; "
            "x, y, xt, yt = mnist_data.load('/data/datasets/mnist-5k/current'); print(len(x), len(xt))")
    with cpu2.sudo():  # the ops user's home is 0750: run the env as the ops user
        out = cpu2.check_output(f"sudo -u ubuntu /home/ubuntu/workspaces/py3/bin/python -c {shlex.quote(code)}")
    assert out.split() == ["4000", "1000"]
