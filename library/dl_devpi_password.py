#!/usr/bin/python
"""Ansible module: make a devpi user's password the wanted one, rotating it from a previous one."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dl_devpi_password
short_description: Set (rotate) the password of a devpi user
description:
  - Nothing changes when devpi already takes I(password). Otherwise the module logs in with the first of
    I(previous) that devpi takes, sets I(password), and checks that it logs in. Fails, naming the variables,
    when devpi takes none of them. Supports check mode. Every password stays out of logs (no_log).
options:
  password:
    description: The password the user must have.
    type: str
    required: true
    no_log: true
  previous:
    description: Earlier passwords, tried in order to log in and set I(password).
    type: list
    elements: str
    default: []
    no_log: true
extends_documentation_fragment: [dl_devpi]
author: dlcluster
"""

EXAMPLES = r"""
- name: Rotate the mirror's root password
  dl_devpi_password:
    url: http://127.0.0.1:13141
    password: "{{ pip_mirror_root_password }}"
    previous: "{{ pip_mirror_root_password_previous }}"
"""

RETURN = r"""
changed:
  description: Whether the password was set (or would be, in check mode).
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dl_devpi import CONNECTION_ARGUMENT_SPEC, DevpiError, ensure_password


def main():
    module = AnsibleModule(
        argument_spec={
            **CONNECTION_ARGUMENT_SPEC,
            "password": {"type": "str", "required": True, "no_log": True},
            "previous": {"type": "list", "elements": "str", "default": [], "no_log": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        changed = ensure_password(params["url"].rstrip("/"), params["user"], params["password"], params["previous"],
                                  check_mode=module.check_mode)
    except (DevpiError, OSError) as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=changed)


if __name__ == "__main__":
    main()
