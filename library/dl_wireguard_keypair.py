#!/usr/bin/python
"""A WireGuard key pair in a file, made once (X25519, as `wg genkey` makes it)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: dl_wireguard_keypair
short_description: A WireGuard key pair kept in a file, made when the file is absent
description:
  - Makes an X25519 private key (base64, as C(wg genkey) writes it) in I(path) with mode 0600 when the file does
    not exist, and returns its public key (as C(wg pubkey) prints it). An existing file is only read.
  - The vpn role runs it on the controller for the VPN clients that gave no public key of their own.
  - Needs the Python package C(cryptography) (Ansible's own interpreter has it).
options:
  path:
    description: The private key's file.
    type: path
    required: true
author: dlcluster
"""

EXAMPLES = r"""
- name: Make a VPN client's key pair on the controller
  dl_wireguard_keypair:
    path: .vpn-clients/alice.key
  delegate_to: localhost
"""

RETURN = r"""
public_key:
  description: The public key, base64; empty in check mode when the file does not exist yet.
  type: str
  returned: always
"""

import base64
import os

from ansible.module_utils.basic import AnsibleModule


def public_key_of(private_b64: str) -> str:
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # pylint: disable=import-outside-toplevel

    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private_b64.strip()))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def new_private_key() -> str:
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # pylint: disable=import-outside-toplevel

    raw = X25519PrivateKey.generate().private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                    serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def main():
    module = AnsibleModule(argument_spec={"path": {"type": "path", "required": True}}, supports_check_mode=True)
    path = module.params["path"]
    if os.path.exists(path):
        with open(path, encoding="ascii") as handle:
            module.exit_json(changed=False, public_key=public_key_of(handle.read()))
    if module.check_mode:
        module.exit_json(changed=True, public_key="")
    private = new_private_key()
    fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(private + "\n")
    os.replace(path + ".new", path)
    module.exit_json(changed=True, public_key=public_key_of(private))


if __name__ == "__main__":
    main()
