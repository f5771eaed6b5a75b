"""Unit tests of module_utils/dl_devpi.py and library/dl_devpi_wheelhouse.py (the pure parts)."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ansible.module_utils import dl_devpi
from ansible.module_utils.dl_devpi import (DevpiError, auth_header, login, normalise_project, parse_json,
                                           upload_body, wheel_name_parts)
from dl_devpi_wheelhouse import listed, simple_page_url, upload_fields

TORCH = "torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl"


def test_wheel_name_parts():
    assert wheel_name_parts(TORCH) == ("torch", "2.13.0+cpu")
    assert wheel_name_parts("/srv/wheelhouse/Torch_Vision-0.20.0-1-py3-none-any.whl") == ("Torch_Vision", "0.20.0")


@pytest.mark.parametrize("name", ["torch.tar.gz", "torch-2.13.0.whl", "-1.0-py3-none-any.whl", "notes.txt"])
def test_wheel_name_parts_refuses_other_files(name):
    with pytest.raises(ValueError, match="is not a wheel file name"):
        wheel_name_parts(name)


def test_normalise_project():
    assert normalise_project("Torch_Vision") == "torch-vision"
    assert normalise_project("zope.interface") == "zope-interface"
    assert normalise_project("a__-.b") == "a-b"


def test_simple_page_url():
    assert simple_page_url("http://m:3141", "root", "wheels", "Torch_Vision-0.20.0-py3-none-any.whl") == \
        "http://m:3141/root/wheels/+simple/torch-vision/"


def test_listed_plain_and_quoted():
    assert listed(f'<a href="../../+f/1/{TORCH}#sha256=1">{TORCH}</a>'.encode(), TORCH)
    assert listed(f'<a href="{TORCH.replace("+", "%2B")}">x</a>'.encode(), TORCH)
    assert not listed(b'<a href="torch-2.12.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl">old</a>', TORCH)


def test_upload_fields_and_body():
    fields = upload_fields(TORCH)
    assert fields == {":action": "file_upload", "name": "torch", "version": "2.13.0+cpu",
                      "filetype": "bdist_wheel", "metadata_version": "2.1"}
    body, content_type = upload_body(fields, TORCH, b"PK\x03\x04wheel", boundary="b0")
    assert content_type == "multipart/form-data; boundary=b0"
    assert body.startswith(b'--b0\r\nContent-Disposition: form-data; name=":action"\r\n\r\nfile_upload\r\n')
    assert (f'--b0\r\nContent-Disposition: form-data; name="content"; filename="{TORCH}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\nPK\x03\x04wheel\r\n--b0--\r\n").encode() in body
    assert body.count(b"--b0\r\n") == len(fields) + 1


def test_auth_header():
    assert base64.b64decode(auth_header("root", "tok")) == b"root:tok"


def test_parse_json():
    assert parse_json(b'{"result": 1}') == {"result": 1}
    assert parse_json(b"") == {} and parse_json(b"<html>") == {} and parse_json(b"[1]") == {}


def test_login(monkeypatch):
    calls = []

    def fake(method, url, body=None, auth=None, timeout=60, **_):
        calls.append((method, url, body))
        return 200, json.dumps({"result": {"password": "tok"}}).encode()
    monkeypatch.setattr(dl_devpi, "request", fake)
    assert base64.b64decode(login("http://m:3141", "root", "pw")) == b"root:tok"
    assert calls == [("POST", "http://m:3141/+login", {"user": "root", "password": "pw"})]


def test_login_refused(monkeypatch):
    monkeypatch.setattr(dl_devpi, "request", lambda *a, **k: (401, b'{"message": "unauthorized"}'))
    with pytest.raises(DevpiError, match="devpi login as root failed \\(HTTP 401\\): check pip_mirror_root_password"):
        login("http://m:3141", "root", "bad")


class FakeDevpi:
    """devpi's login and user PATCH, in memory: one user, one password."""

    def __init__(self, password):
        self.password = password
        self.calls = []

    def __call__(self, method, url, body=None, auth=None, timeout=60, **_):
        self.calls.append((method, url.rsplit("/", 1)[-1]))
        if url.endswith("/+login"):
            if body["password"] == self.password:
                return 200, json.dumps({"result": {"password": "tok-" + self.password}}).encode()
            return 401, b'{"message": "unauthorized"}'
        if method == "PATCH" and auth == auth_header("root", "tok-" + self.password):
            self.password = body["password"]
            return 200, b'{"result": {}}'
        return 403, b'{"message": "forbidden"}'


def test_password_already_taken_changes_nothing(monkeypatch):
    devpi = FakeDevpi("new")
    monkeypatch.setattr(dl_devpi, "request", devpi)
    assert dl_devpi.ensure_password("http://m", "root", "new", ["old"]) is False
    assert devpi.calls == [("POST", "+login")]


def test_password_rotated_from_a_previous_one(monkeypatch):
    devpi = FakeDevpi("old")
    monkeypatch.setattr(dl_devpi, "request", devpi)
    assert dl_devpi.ensure_password("http://m", "root", "new", ["older", "old"]) is True
    assert devpi.password == "new"
    assert ("PATCH", "root") in devpi.calls


def test_password_rotation_in_check_mode_changes_nothing(monkeypatch):
    devpi = FakeDevpi("old")
    monkeypatch.setattr(dl_devpi, "request", devpi)
    assert dl_devpi.ensure_password("http://m", "root", "new", ["old"], check_mode=True) is True
    assert devpi.password == "old" and ("PATCH", "root") not in devpi.calls


def test_password_nobody_knows_is_refused_naming_the_variables(monkeypatch):
    monkeypatch.setattr(dl_devpi, "request", FakeDevpi("lost"))
    with pytest.raises(DevpiError, match="nor any of the 2 previous ones: set pip_mirror_root_password .* "
                                         "pip_mirror_root_password_previous"):
        dl_devpi.ensure_password("http://m", "root", "new", ["a", "b"])


def test_a_server_error_is_not_a_refused_password(monkeypatch):
    monkeypatch.setattr(dl_devpi, "request", lambda *a, **k: (502, b'{"message": "bad gateway"}'))
    with pytest.raises(DevpiError, match="HTTP 502"):
        dl_devpi.ensure_password("http://m", "root", "new", ["old"])


@pytest.mark.parametrize("module", ["dl_devpi_index", "dl_devpi_wheelhouse", "dl_devpi_password"])
def test_module_documentation_parses_with_the_shared_fragment(module):
    """ansible-doc reads each module's DOCUMENTATION with doc_fragments/dl_devpi.py merged in."""
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "--json", module], cwd=root,
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "ANSIBLE_CONFIG": str(root / "ansible.cfg")})
    assert run.returncode == 0, run.stderr
    options = json.loads(run.stdout)[module]["doc"]["options"]
    assert {"url", "user"} <= set(options), options
