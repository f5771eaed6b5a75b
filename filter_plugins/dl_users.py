"""Account filters of dlcluster: the inventory's accounts with defaults filled in, system accounts, CA file names.

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


# Lowest UID of an account that is not a system account (UID_MIN of login.defs on Debian and Ubuntu).
FIRST_USER_UID = 1000


def dl_system_account_problems(users, passwd, host, first_uid=FIRST_USER_UID, variable="dl_users") -> list[str]:
    """Entries of ``users`` that are system accounts on the host, one sentence each.

    ``passwd`` is what ``getent passwd NAME...`` printed on the host: its
    lines (a list or one text) in passwd format. An entry whose name has a UID
    below ``first_uid`` there is a system account (daemon, www-data, a
    service's user) that must never be managed as an ML user.
    """
    if users in (None, ""):
        return []
    if not isinstance(users, list):
        raise AnsibleFilterError(f"dl_system_account_problems: users must be a list, got {type(users).__name__}")
    lines = passwd.splitlines() if isinstance(passwd, str) else passwd
    if not isinstance(lines, list):
        raise AnsibleFilterError("dl_system_account_problems: passwd must be getent's lines or text, "
                                 f"got {type(passwd).__name__}")
    uids = {}
    for line in lines:
        fields = str(line).split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            uids.setdefault(fields[0], int(fields[2]))
    problems = []
    for index, user in enumerate(users):
        name = str(user.get("name", "")) if isinstance(user, dict) else ""
        if name in uids and uids[name] < int(first_uid):
            problems.append(f"host {host}: {variable}[{index}].name {name!r} is a system account there "
                            f"(UID {uids[name]}, below {first_uid}), which dlcluster never manages as an ML user; "
                            f"remove the entry from {variable} or give the user another name")
    return problems


class FilterModule:
    """dlcluster user-account filters."""

    def filters(self):
        return {
            "dl_accounts": dl_accounts,
            "dl_ca_file_name": dl_ca_file_name,
            "dl_system_account_problems": dl_system_account_problems,
        }
