"""Account filters of dlcluster: the inventory's accounts with defaults filled in, CA file names.

Pure functions, unit-tested in tests/unit/test_dl_users.py.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def dl_accounts(users, defaults=None) -> list[dict]:
    """Accounts with every key filled in: name, state, comment, shell, groups, authorized_keys, sudo.

    ``defaults`` gives the shell and groups of accounts that name none.
    """
    if not isinstance(users, list):
        raise AnsibleFilterError(f"dl_accounts: users must be a list, got {type(users).__name__}")
    defaults = defaults or {}
    accounts = []
    for index, user in enumerate(users):
        if not isinstance(user, dict) or not user.get("name"):
            raise AnsibleFilterError(f"dl_accounts: users[{index}] must be a mapping with a name")
        accounts.append({
            "name": str(user["name"]),
            "state": user.get("state", "present"),
            "comment": user.get("comment", ""),
            "shell": user.get("shell") or defaults.get("shell", "/bin/bash"),
            "groups": list(user["groups"]) if user.get("groups") is not None else list(defaults.get("groups", [])),
            "authorized_keys": list(user.get("authorized_keys") or []),
            "sudo": user.get("sudo") or "",
        })
    return accounts


def dl_ca_file_name(path) -> str:
    """Name of a CA certificate in the trust store's directory: its base name with a .crt suffix.

    update-ca-certificates reads only *.crt files; 'corp.pem' becomes 'corp.crt', 'corp.cer' 'corp.cer.crt'.
    """
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise AnsibleFilterError(f"dl_ca_file_name: {path!r} has no file name")
    for suffix in (".pem", ".crt"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return f"{name}.crt"


class FilterModule:
    """dlcluster user-account filters."""

    def filters(self):
        return {"dl_accounts": dl_accounts, "dl_ca_file_name": dl_ca_file_name}
