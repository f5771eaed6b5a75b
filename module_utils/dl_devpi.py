"""devpi-server's HTTP API for dlcluster's modules: requests, login, uploads.

Shared by library/dl_devpi_index.py and library/dl_devpi_wheelhouse.py
(`from ansible.module_utils.dl_devpi import ...`; ansible.cfg names this
directory as module_utils). Standard library only: it runs on the mirror host.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request


# The options of every devpi module (documented in doc_fragments/dl_devpi.py): the server and the user.
CONNECTION_ARGUMENT_SPEC = {
    "url": {"type": "str", "required": True},
    "user": {"type": "str", "default": "root"},
}


class DevpiError(Exception):
    """A devpi request that failed, with a message for the operator."""


def request(method, url, body=None, auth=None, timeout=60, data=None, content_type="application/json",
            accept="application/json"):
    """(HTTP status, raw reply body) of one request; HTTP errors are returned, not raised.

    `body` is sent as JSON; `data` (bytes) as it is, with `content_type`.
    """
    headers = {"Accept": accept, "Content-Type": content_type}
    if auth:
        headers["X-Devpi-Auth"] = auth
    if body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def json_request(method, url, body=None, auth=None, timeout=60):
    """(HTTP status, decoded JSON reply; {} when the reply is no JSON)."""
    status, raw = request(method, url, body=body, auth=auth, timeout=timeout)
    return status, parse_json(raw)


def parse_json(raw) -> dict:
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def auth_header(user, token) -> str:
    """The X-Devpi-Auth value of a login: base64 of user:token."""
    return base64.b64encode(f"{user}:{token}".encode()).decode()


def _login_reply(base, user, password, timeout):
    """(HTTP status, reply, X-Devpi-Auth value or None) of one login."""
    status, reply = json_request("POST", f"{base}/+login", {"user": user, "password": password}, timeout=timeout)
    token = (reply.get("result") or {}).get("password") if status == 200 else None
    return status, reply, (auth_header(user, token) if token else None)


def login(base, user, password, timeout=60) -> str:
    """Log in as `user` and return the X-Devpi-Auth header value; DevpiError when refused."""
    status, _, auth = _login_reply(base, user, password, timeout)
    if auth is None:
        raise DevpiError(f"devpi login as {user} failed (HTTP {status}): check pip_mirror_root_password")
    return auth


def try_login(base, user, password, timeout=60):
    """The X-Devpi-Auth value when devpi takes the password, None when it refuses it (HTTP 401);
    DevpiError for any other answer (a server that does not answer is no refused password)."""
    status, reply, auth = _login_reply(base, user, password, timeout)
    if auth is not None or status == 401:
        return auth
    raise DevpiError(f"devpi login as {user} gave HTTP {status}: {reply.get('message', reply)}")


def ensure_password(base, user, password, previous, check_mode=False, timeout=60) -> bool:
    """Make `password` the password of `user`; True when it changed (or would, in check mode).

    Nothing changes when devpi already takes `password`. Else the first of `previous` that devpi takes logs in and
    sets the new one, which must then log in itself. DevpiError when devpi takes none of them."""
    if try_login(base, user, password, timeout) is not None:
        return False
    for old in previous:
        auth = try_login(base, user, old, timeout)
        if auth is None:
            continue
        if check_mode:
            return True
        status, reply = json_request("PATCH", f"{base}/{user}", {"password": password}, auth, timeout)
        if status != 200:
            raise DevpiError(f"devpi refused the new password of {user} (HTTP {status}): {reply.get('message', reply)}")
        if try_login(base, user, password, timeout) is None:
            raise DevpiError(f"devpi took the new password of {user} but refuses it at login")
        return True
    tried = f" nor any of the {len(previous)} previous ones" if previous else ""
    raise DevpiError(f"devpi refuses the password of {user}{tried}: set pip_mirror_root_password to the password "
                     "devpi has, or list that one in pip_mirror_root_password_previous to rotate it")


def normalise_project(name) -> str:
    """A project name as the simple index writes it (PEP 503): Torch_Vision -> torch-vision."""
    return re.sub(r"[-_.]+", "-", str(name)).lower()


def wheel_name_parts(filename) -> tuple:
    """(project, version) of a wheel file name (name-version-...-tag.whl); ValueError when it is none."""
    parts = str(filename).split("/")[-1].split("-")
    if not str(filename).endswith(".whl") or len(parts) < 5 or not parts[0] or not parts[1]:
        raise ValueError(f"{filename} is not a wheel file name (name-version-[build-]python-abi-platform.whl)")
    return parts[0], parts[1]


def upload_body(fields, filename, content, boundary="dlcluster-wheelhouse-boundary") -> tuple:
    """(body, content type) of a multipart/form-data upload of `content` as `filename` with `fields`."""
    chunks = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}\r\n".encode()
              for key, value in fields.items()]
    chunks += [f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{filename}\"\r\n"
               "Content-Type: application/octet-stream\r\n\r\n".encode(), content, f"\r\n--{boundary}--\r\n".encode()]
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"
