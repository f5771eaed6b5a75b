#!/usr/bin/python
"""Ansible module: create or update an index on a devpi server, idempotently."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dl_devpi_index
short_description: Create or update one index of a devpi server
description:
  - Logs in to devpi-server's HTTP API, reads the index's configuration and creates the index or
    changes only the keys that differ. Supports check mode and reports a diff.
options:
  password:
    description: Password of I(user).
    type: str
    required: true
    no_log: true
  name:
    description: Index name below the user (root/<name>).
    type: str
    required: true
  config:
    description: "Index settings, e.g. {type: mirror, mirror_url: ...} or {type: stage, bases: [...]}."
    type: dict
    required: true
extends_documentation_fragment: [dl_devpi]
author: dlcluster
"""

EXAMPLES = r"""
- name: Private wheelhouse
  dl_devpi_index:
    url: http://127.0.0.1:3141
    password: "{{ pip_mirror_root_password }}"
    name: wheels
    config: {type: stage, bases: [], volatile: false}
"""

RETURN = r"""
config:
  description: The index configuration after the change (or as it would be, in check mode).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dl_devpi import CONNECTION_ARGUMENT_SPEC, DevpiError, json_request, login


def differences(current: dict, wanted: dict) -> dict:
    """The wanted keys whose value differs from the current configuration."""
    return {key: value for key, value in wanted.items() if current.get(key) != value}


def main():
    module = AnsibleModule(
        argument_spec={
            **CONNECTION_ARGUMENT_SPEC,
            "password": {"type": "str", "required": True, "no_log": True},
            "name": {"type": "str", "required": True},
            "config": {"type": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    base = module.params["url"].rstrip("/")
    user, name, wanted = module.params["user"], module.params["name"], module.params["config"]
    index_url = f"{base}/{user}/{name}"

    try:
        status, reply = json_request("GET", index_url)
    except OSError as err:
        module.fail_json(msg=f"devpi at {base} does not answer: {err}")
    if status not in (200, 404):
        module.fail_json(msg=f"reading {index_url} gave HTTP {status}: {reply.get('message', reply)}")
    # A mirror's reply lists every upstream project name: keep only the settings.
    current = ({key: value for key, value in reply.get("result", {}).items() if key != "projects"}
               if status == 200 else None)
    if current is not None and current.get("type", wanted.get("type")) != wanted.get("type", current.get("type")):
        module.fail_json(msg=f"index {user}/{name} is of type {current.get('type')}, not {wanted.get('type')}; "
                             "devpi cannot change an index's type: delete it on the server or choose another name")
    changes = wanted if current is None else differences(current, wanted)
    result = {"changed": bool(changes), "config": {**(current or {}), **wanted},
              "diff": {"before": current or {}, "after": {**(current or {}), **wanted}}}
    if not changes or module.check_mode:
        module.exit_json(**result)

    try:
        auth = login(base, user, module.params["password"])
    except DevpiError as err:
        module.fail_json(msg=str(err))
    if current is None:
        status, reply = json_request("PUT", index_url, wanted, auth)
    else:
        status, reply = json_request("PATCH", index_url, {**current, **wanted}, auth)
    if status not in (200, 201):
        module.fail_json(msg=f"devpi refused the configuration of {user}/{name} (HTTP {status}): "
                             f"{reply.get('message', reply)}")
    result["config"] = reply.get("result", result["config"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
