"""The pip mirror behind nginx with a cluster CA certificate: every node installs over HTTPS verified by its system
trust store, devpi itself listens on loopback only, a worker without credentials can upload to no index, the mirror's
root user can (over TLS, from the controller), and nobody can replace or delete a released file."""

import base64
import hashlib
import io
import json
import os
import re
import sys
import zipfile
from pathlib import Path
from urllib.parse import urljoin

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import controller_curl, lab_address, lab_host  # noqa: E402

testinfra_hosts = ["ansible://head", "ansible://cpu1", "ansible://cpu2"]

STATE = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"]
INDEXES = ["root/wheels", "root/pypi", "root/cpu", "root/nvidia", "root/rocm"]
MIRRORS = {"root/pypi"}
PROBE_WHEEL = "dlcluster_probe-1.0-py3-none-any.whl"


def probe_wheel(marker: str = "") -> bytes:
    """A small valid wheel with fixed timestamps: the same bytes on every run (so a re-run uploads the same
    release), different bytes with a marker (a replacement of that release)."""
    files = {
        "dlcluster_probe/__init__.py": f"# dlcluster upload probe{marker}\n",
        "dlcluster_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: dlcluster-probe\nVersion: 1.0\n",
        "dlcluster_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: dlcluster\nRoot-Is-Purelib: true\n"
                                               "Tag: py3-none-any\n",
        "dlcluster_probe-1.0.dist-info/RECORD": "",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, text in files.items():
            wheel.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def mirror_url() -> str:
    return f"https://{lab_address('head')}:3141"


@pytest.fixture(scope="module")
def root_auth():
    """X-Devpi-Auth of the mirror's root user, logged in over TLS from the controller."""
    password = (STATE / "devpi-root-password").read_text().split()[0]
    status, body = controller_curl("-X", "POST", "-H", "Content-Type: application/json", "-H", "Accept: application/json",
                                   "--data-binary", json.dumps({"user": "root", "password": password}),
                                   f"{mirror_url()}/+login")
    assert status == 200, body
    token = json.loads(body)["result"]["password"]
    return "X-Devpi-Auth: " + base64.b64encode(f"root:{token}".encode()).decode()


def upload_args(path: Path) -> list[str]:
    return ["-F", ":action=file_upload", "-F", "name=dlcluster-probe", "-F", "version=1.0",
            "-F", f"content=@{path};filename={PROBE_WHEEL}"]


def test_every_node_installs_from_the_mirror_over_https_verified_by_its_trust_store(host):
    pip_conf = host.file("/etc/pip.conf").content_string
    assert f"index-url = {mirror_url()}/root/cpu/+simple/" in pip_conf
    assert "trusted-host" not in pip_conf
    assert "allow-insecure-host" not in host.file("/etc/uv/uv.toml").content_string
    listing = host.run(f"curl -fsS {mirror_url()}/root/cpu/+simple/")
    assert listing.rc == 0 and "torch" in listing.stdout, listing.stderr
    # Plain HTTP to the TLS port is refused by nginx.
    assert host.run(f"curl -s -o /dev/null -w '%{{http_code}}' http://{lab_address('head')}:3141/").stdout == "400"


def test_devpi_itself_listens_on_loopback_only():
    head = lab_host("head")
    with head.sudo():
        devpi = head.run("ss -ltnpH | grep -F devpi-server || ss -ltnpH 'sport = :13141'").stdout
        nginx = head.run("ss -ltnpH 'sport = :3141'").stdout
    assert "127.0.0.1:13141" in devpi, devpi
    assert f"{lab_address('head')}:3141" in nginx and "nginx" in nginx and "0.0.0.0:3141" not in nginx
    status = lab_host("cpu1").run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 "
                                  f"http://{lab_address('head')}:13141/").stdout
    assert status == "000"  # nothing listens there on the cluster address


def test_a_worker_without_credentials_cannot_upload_to_any_index():
    worker = lab_host("cpu1")
    worker.run_expect([0], f"printf %s {base64.b64encode(probe_wheel(' from cpu1')).decode()} | base64 -d "
                           f"> /tmp/{PROBE_WHEEL}")
    for index in INDEXES:
        out = worker.run(f"curl -s -w '\\n%{{http_code}}' -F :action=file_upload "
                         f"-F name=dlcluster-probe -F version=1.0 -F content=@/tmp/{PROBE_WHEEL} "
                         f"{mirror_url()}/{index}/").stdout
        body, _, status = out.rpartition("\n")
        if index in MIRRORS:  # nobody uploads to a mirror of an upstream index
            assert status == "404" and "cannot submit to mirror index" in body, f"upload to {index}: HTTP {status}"
        else:
            assert status in ("401", "403"), f"anonymous upload to {index}: HTTP {status}"
    listing = worker.run(f"curl -fsS {mirror_url()}/root/wheels/+simple/dlcluster-probe/").stdout
    assert "from cpu1" not in listing


def test_root_uploads_over_tls_and_nobody_replaces_or_deletes_a_release(root_auth, tmp_path):
    wheel = tmp_path / PROBE_WHEEL
    wheel.write_bytes(probe_wheel())
    status, body = controller_curl("-H", root_auth, *upload_args(wheel), f"{mirror_url()}/root/wheels/")
    assert status == 200, body  # the same bytes again on a re-run are accepted unchanged
    worker = lab_host("cpu2")
    served = worker.run(f"curl -fsS {mirror_url()}/root/wheels/+simple/dlcluster-probe/").stdout
    assert PROBE_WHEEL in served

    # A different file under the same release name: refused, even for root (the index is not volatile).
    wheel.write_bytes(probe_wheel(" replaced"))
    status, body = controller_curl("-H", root_auth, *upload_args(wheel), f"{mirror_url()}/root/wheels/")
    assert status == 409, body
    # Deleting the release: refused for root, and for a worker without credentials.
    status, body = controller_curl("-X", "DELETE", "-H", root_auth, f"{mirror_url()}/root/wheels/dlcluster-probe/1.0")
    assert status == 403, body
    anonymous = worker.run(f"curl -s -o /dev/null -w '%{{http_code}}' -X DELETE "
                           f"{mirror_url()}/root/wheels/dlcluster-probe/1.0").stdout
    assert anonymous in ("401", "403")
    # What the index serves, and what a download through it returns, is still the first upload.
    first = hashlib.sha256(probe_wheel()).hexdigest()
    listing = f"{mirror_url()}/root/wheels/+simple/dlcluster-probe/"
    served = worker.run(f"curl -fsS {listing}").stdout
    link = re.search(rf'href="([^"#]*{re.escape(PROBE_WHEEL)})#sha256=([0-9a-f]+)"', served)
    assert link and link.group(2) == first, served
    downloaded = worker.run(f"curl -fsS {urljoin(listing, link.group(1))} | sha256sum").stdout.split()[0]
    assert downloaded == first
