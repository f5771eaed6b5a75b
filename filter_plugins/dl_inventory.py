"""Inventory filters of dlcluster: cluster membership and inventory validation.

Pure functions: every input comes in as an argument, nothing is read from the
controller or the hosts, so each can be unit-tested by importing it directly.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import struct

from ansible.errors import AnsibleFilterError

EDITIONS = ("auto", "nvidia", "rocm", "cpu")

# OpenSSH public key types accepted for logins (DSA is not).
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
SSH_RSA_MIN_BITS = 3072
USER_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Keys of an account in dl_users (as filled in by dl_accounts in dl_users.py).
ACCOUNT_KEYS = ("name", "state", "comment", "shell", "groups", "authorized_keys", "sudo")
ACCOUNT_STATES = ("present", "absent")
_KEY_RE = re.compile(r"^(?:(?P<options>\S+)\s+)??(?P<type>[a-z0-9@.-]+)\s+(?P<blob>[A-Za-z0-9+/=]+)(?:\s+.*)?$")


def _require_mapping(value, name, filter_name):
    if not isinstance(value, dict) and not hasattr(value, "keys"):
        raise AnsibleFilterError(f"{filter_name}: {name} must be a mapping, got {type(value).__name__}")


def _require_list(value, name, filter_name):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise AnsibleFilterError(f"{filter_name}: {name} must be a list, got {type(value).__name__}")


def _is_ip(value) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def dl_host_address(host_vars) -> str:
    """The address other cluster members use to reach a host.

    ``dl_address`` wins, then ``ansible_host`` when it is an IP address, then
    the default IPv4 address from gathered facts. Empty when none is known.
    """
    _require_mapping(host_vars, "host_vars", "dl_host_address")
    if host_vars.get("dl_address"):
        return str(host_vars["dl_address"])
    if _is_ip(host_vars.get("ansible_host", "")):
        return str(host_vars["ansible_host"])
    facts_v4 = host_vars.get("ansible_default_ipv4") or {}
    return str(facts_v4.get("address", ""))


def dl_cluster_hosts(hostvars, names) -> list[dict]:
    """Cluster members as ``[{name, address}]``, in inventory order."""
    _require_mapping(hostvars, "hostvars", "dl_cluster_hosts")
    _require_list(names, "names", "dl_cluster_hosts")
    return [{"name": str(n), "address": dl_host_address(hostvars[n])} for n in names]


def dl_ssh_pubkey_problem(key) -> str:
    """Why an authorized_keys line is unusable, or '' when it is fine."""
    if not isinstance(key, str) or not key.strip():
        return "is empty or not a string"
    if "\n" in key.strip():
        return "holds more than one line; give one key per list item"
    match = _KEY_RE.match(key.strip())
    if not match:
        return "is not an OpenSSH public key ('<type> <base64> [comment]')"
    key_type, blob = match.group("type"), match.group("blob")
    if key_type not in SSH_KEY_TYPES:
        return f"has type {key_type!r}; use one of {', '.join(SSH_KEY_TYPES)}"
    try:
        raw = base64.b64decode(blob, validate=True)
        (length,) = struct.unpack(">I", raw[:4])
        embedded = raw[4:4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        return "has a body that is not valid base64 key data"
    if embedded != key_type:
        return f"says {key_type!r} but its body is a {embedded!r} key"
    if key_type == "ssh-rsa":
        bits = _rsa_bits(raw)
        if bits < SSH_RSA_MIN_BITS:
            return f"is an RSA key of {bits} bits; use at least {SSH_RSA_MIN_BITS} bits or ed25519"
    return ""


def _rsa_bits(raw: bytes) -> int:
    """Modulus size of an ssh-rsa key blob (type, e, n as SSH strings)."""
    offset, fields = 0, []
    for _ in range(3):
        (length,) = struct.unpack(">I", raw[offset:offset + 4])
        fields.append(raw[offset + 4:offset + 4 + length])
        offset += 4 + length
    modulus = fields[2].lstrip(b"\x00")
    return int.from_bytes(modulus, "big").bit_length()


def _key_list_problems(keys, where: str) -> list[str]:
    """Problems of a list of authorized_keys lines, each naming `where[index]`."""
    if not isinstance(keys, list):
        return [f"{where} must be a list of public keys"]
    problems = []
    for index, key in enumerate(keys):
        why = dl_ssh_pubkey_problem(key)
        if why:
            problems.append(f"{where}[{index}] {why}")
    return problems


def _check_ca_files(paths, host) -> list[str]:
    if not isinstance(paths, list):
        return [f"host {host}: dl_extra_ca_certs must be a list of PEM file paths on the controller"]
    problems = []
    for path in paths:
        if not isinstance(path, str) or not os.path.isfile(path):
            problems.append(f"host {host}: dl_extra_ca_certs: {path!r} is not a file on the "
                            "controller; fix the path or remove the entry")
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            if "-----BEGIN CERTIFICATE-----" not in handle.read():
                problems.append(f"host {host}: dl_extra_ca_certs: {path} holds no PEM certificate")
    return problems


NETWORK_VARIABLES = ("dl_admin_networks", "dl_vpn_networks")


def _network_problems(hv, host) -> list[str]:
    problems = []
    for variable in NETWORK_VARIABLES:
        value = hv.get(variable, [])
        if value in (None, ""):
            continue
        if not isinstance(value, list):
            problems.append(f"host {host}: {variable} must be a list of CIDRs such as ['10.0.0.0/8']")
            continue
        for index, item in enumerate(value):
            try:
                ipaddress.ip_network(str(item).strip(), strict=False)
            except ValueError:
                problems.append(f"host {host}: {variable}[{index}] {item!r} is not an address or CIDR "
                                "(write it like 192.168.1.0/24)")
    return problems


def dl_user_problems(users, variable="dl_users", ops_user="") -> list[str]:
    """What is wrong with a list of user accounts, one sentence each, naming the variable."""
    if users in (None, ""):
        return []
    if not isinstance(users, list):
        return [f"{variable} must be a list of accounts ({{name, state, authorized_keys, ...}})"]
    problems, seen = [], set()
    for index, user in enumerate(users):
        where = f"{variable}[{index}]"
        if not isinstance(user, dict):
            problems.append(f"{where} must be a mapping with at least a name")
            continue
        name = str(user.get("name", ""))
        if not USER_NAME_RE.fullmatch(name):
            problems.append(f"{where}.name {name!r} is not a valid user name "
                            "(lower-case letters, digits, '-' and '_', at most 32)")
        if name in seen:
            problems.append(f"{where}.name {name!r} is listed twice; keep one entry per user")
        seen.add(name)
        unknown = sorted(set(user) - set(ACCOUNT_KEYS))
        if unknown:
            problems.append(f"{where} ({name}) has unknown keys {unknown}; allowed: {', '.join(ACCOUNT_KEYS)}")
        state = user.get("state", "present")
        if state not in ACCOUNT_STATES:
            problems.append(f"{where}.state is {state!r}; use present or absent")
        if state == "absent" and name and name == ops_user:
            problems.append(f"{where} marks the ops user {name!r} absent; change dl_ops_user first")
        problems += _key_list_problems(user.get("authorized_keys", []), f"{where}.authorized_keys")
        if "\n" in str(user.get("sudo", "")):
            problems.append(f"{where}.sudo must be one sudoers rule on one line")
    return problems


def dl_inventory_problems(hostvars, names, required=()) -> list[str]:
    """Everything wrong with the inventory, one sentence per problem.

    Each sentence names the host, the variable and the fix. An empty list
    means the inventory may be applied.
    """
    _require_mapping(hostvars, "hostvars", "dl_inventory_problems")
    _require_list(names, "names", "dl_inventory_problems")
    names = list(names)
    if not names:
        return ["group dlcluster is empty: put every cluster host in the dlcluster group "
                "(see inventories/example/hosts.yml); for the built-in lab, run `make lab` first"]
    problems: list[str] = []
    seen: dict[str, str] = {}
    for host in names:
        hv = hostvars[host]
        for var in required:
            if hv.get(var) in (None, "", []):
                problems.append(f"host {host}: required variable {var} is not set; "
                                "set it in group_vars/all/ of the inventory")
        edition = hv.get("dl_edition", "auto")
        if edition not in EDITIONS:
            problems.append(f"host {host}: dl_edition is {edition!r}; use one of "
                            f"{', '.join(EDITIONS)} (auto detects the hardware)")
        problems += [f"host {host}: {p}"
                     for p in _key_list_problems(hv.get("dl_ops_authorized_keys", []), "dl_ops_authorized_keys")]
        user = hv.get("dl_ops_user", "")
        problems += [f"host {host}: {p}" for p in dl_user_problems(hv.get("dl_users"), ops_user=user)]
        if user and not USER_NAME_RE.fullmatch(str(user)):
            problems.append(f"host {host}: dl_ops_user {user!r} is not a valid user name "
                            "(lower-case letters, digits, '-' and '_', at most 32)")
        problems += _check_ca_files(hv.get("dl_extra_ca_certs", []), host)
        problems += _network_problems(hv, host)
        branch = hv.get("dl_nvidia_driver_branch")
        if branch not in (None, "") and not re.fullmatch(r"\d+", str(branch)):
            problems.append(f"host {host}: dl_nvidia_driver_branch is {branch!r}; give the driver branch as a "
                            "number such as 570")
        address = str(hv.get("dl_address") or hv.get("ansible_host") or host)
        if address in seen:
            problems.append(f"host {host}: address {address} is also used by host {seen[address]}; "
                            "give each host its own ansible_host or dl_address")
        else:
            seen[address] = host
    return problems


class FilterModule:
    """dlcluster inventory filters."""

    def filters(self):
        return {
            "dl_host_address": dl_host_address,
            "dl_cluster_hosts": dl_cluster_hosts,
            "dl_ssh_pubkey_problem": dl_ssh_pubkey_problem,
            "dl_inventory_problems": dl_inventory_problems,
            "dl_user_problems": dl_user_problems,
        }
