#!/usr/bin/python
"""Ansible module: upload wheel files to a devpi index, each once."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dl_devpi_wheelhouse
short_description: Upload wheels to a devpi index unless it serves them already
description:
  - For each wheel file on the host, reads the index's simple page of the wheel's project and uploads the
    file when the page does not list it. A published file never changes on a non-volatile index, so a file
    that is listed is left alone. Logs in (as dl_devpi_index does) only when something is to be uploaded.
    Supports check mode.
options:
  password:
    description: Password of I(user).
    type: str
    required: true
    no_log: true
  index:
    description: Index name below the user (root/<index>).
    type: str
    default: wheels
  wheels:
    description: Paths of wheel files on the host.
    type: list
    elements: path
    required: true
extends_documentation_fragment: [dl_devpi]
author: dlcluster
"""

EXAMPLES = r"""
- name: Upload the wheelhouse
  dl_devpi_wheelhouse:
    url: http://127.0.0.1:3141
    password: "{{ pip_mirror_root_password }}"
    wheels: [/var/lib/devpi/wheelhouse/torch-2.13.0+cpu-cp312-cp312-linux_x86_64.whl]
"""

RETURN = r"""
uploaded:
  description: File names uploaded (or that would be, in check mode).
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dl_devpi import (CONNECTION_ARGUMENT_SPEC, DevpiError, login, normalise_project, request,
                                           upload_body, wheel_name_parts)


def upload_fields(filename) -> dict:
    """The form fields devpi's upload needs besides the file (PyPI's legacy upload API)."""
    project, version = wheel_name_parts(filename)
    return {":action": "file_upload", "name": project, "version": version,
            "filetype": "bdist_wheel", "metadata_version": "2.1"}


def simple_page_url(base, user, index, filename) -> str:
    """URL of the simple index page that lists the files of the wheel's project."""
    return f"{base}/{user}/{index}/+simple/{normalise_project(wheel_name_parts(filename)[0])}/"


def listed(page: bytes, filename: str) -> bool:
    """Whether a simple index page lists the file (as link text or, URL-quoted, in a link)."""
    text = page.decode("utf-8", errors="replace")
    return filename in text or filename.replace("+", "%2B") in text


def main():
    module = AnsibleModule(
        argument_spec={
            **CONNECTION_ARGUMENT_SPEC,
            "password": {"type": "str", "required": True, "no_log": True},
            "index": {"type": "str", "default": "wheels"},
            "wheels": {"type": "list", "elements": "path", "required": True},
        },
        supports_check_mode=True,
    )
    base = module.params["url"].rstrip("/")
    user, index = module.params["user"], module.params["index"]
    missing = []
    for path in module.params["wheels"]:
        filename = os.path.basename(path)
        try:
            url = simple_page_url(base, user, index, filename)
        except ValueError as err:
            module.fail_json(msg=f"{err}; list only wheel files in pip_mirror_wheelhouse")
        if not os.path.isfile(path) and not module.check_mode:  # check mode did not copy it
            module.fail_json(msg=f"{path} is not a file on {base}'s host; copy it there first")
        try:
            status, page = request("GET", url, accept="text/html")
        except OSError as err:
            module.fail_json(msg=f"devpi at {base} does not answer: {err}")
        if status not in (200, 404):
            module.fail_json(msg=f"reading {url} gave HTTP {status}")
        if status == 404 or not listed(page, filename):
            missing.append(path)
    result = {"changed": bool(missing), "uploaded": [os.path.basename(p) for p in missing]}
    if not missing or module.check_mode:
        module.exit_json(**result)

    try:
        auth = login(base, user, module.params["password"])
    except DevpiError as err:
        module.fail_json(msg=str(err))
    for path in missing:
        filename = os.path.basename(path)
        with open(path, "rb") as wheel:
            body, content_type = upload_body(upload_fields(filename), filename, wheel.read())
        status, reply = request("POST", f"{base}/{user}/{index}/", auth=auth, data=body,
                                content_type=content_type, timeout=600)
        if status not in (200, 201):
            module.fail_json(msg=f"devpi refused {filename} on {user}/{index} (HTTP {status}): "
                                 f"{reply[:500].decode('utf-8', errors='replace')}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
