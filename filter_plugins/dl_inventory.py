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
from collections.abc import Mapping

from ansible.errors import AnsibleError, AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.dlcluster.cluster.plugins.plugin_utils import dl_hosts
from jinja2.exceptions import TemplateError

# dl_edition: a software stack, or auto (detected from the hardware).
EDITIONS = ("auto", *dl_hosts.EDITIONS)

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
# Accounts never managed as ML users, whatever the host (the ops user is refused too).
REFUSED_USERS = ("root",)
_KEY_RE = re.compile(r"^(?:(?P<options>\S+)\s+)??(?P<type>[a-z0-9@.-]+)\s+(?P<blob>[A-Za-z0-9+/=]+)(?:\s+.*)?$")


def _require_list(value, name, filter_name):
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise AnsibleFilterError(f"{filter_name}: {name} must be a list, got {type(value).__name__}")


def dl_host_address(host_vars) -> str:
    """The address other cluster members use to reach a host (dl_hosts.host_address): ``dl_address``, then
    ``ansible_host`` when it is an IP address, then the default IPv4 address from gathered facts; '' if none."""
    dl_hosts.require_mapping(host_vars, "host_vars", "dl_host_address")
    return dl_hosts.host_address(host_vars)


def dl_cluster_hosts(hostvars, names) -> list[dict]:
    """Cluster members as ``[{name, address}]``, in inventory order."""
    dl_hosts.require_mapping(hostvars, "hostvars", "dl_cluster_hosts")
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
        if name in REFUSED_USERS:
            problems.append(f"{where}.name {name!r} is the superuser, which dlcluster never manages as an ML user; "
                            "remove the entry from dl_users")
        elif state == "absent" and name and name == ops_user:
            problems.append(f"{where} marks the ops user {name!r} absent; change dl_ops_user first")
        elif name and name == ops_user:
            problems.append(f"{where}.name {name!r} is the ops user, which the common role manages from "
                            "dl_ops_user and dl_ops_authorized_keys; remove the entry from dl_users")
        problems += _key_list_problems(user.get("authorized_keys", []), f"{where}.authorized_keys")
        if "\n" in str(user.get("sudo", "")):
            problems.append(f"{where}.sudo must be one sudoers rule on one line")
    return problems


_BATCH_RE = re.compile(r"(100|[1-9][0-9]?)%")


def _rollout_problems(hv, host) -> list[str]:
    """The canary rollouts' switches (playbooks/ssh_hardening.yml, firewall.yml, notebooks.yml), usually extra vars."""
    problems = []
    probe = hv.get("dl_rollout_probe_first", True)
    if not (isinstance(probe, bool) or str(probe).lower() in ("true", "false", "yes", "no", "1", "0")):
        problems.append(f"host {host}: dl_rollout_probe_first is {probe!r}; set it to true (a check-mode probe "
                        "decides which hosts go through the canary batches) or false (every host does)")
    batches = hv.get("dl_rollout_batches", [1, "10%", "100%"])
    if (not isinstance(batches, list) or not batches
            or not all((isinstance(b, int) and not isinstance(b, bool) and b > 0) or _BATCH_RE.fullmatch(str(b))
                       for b in batches)):
        problems.append(f"host {host}: dl_rollout_batches is {batches!r}; give a list of batch sizes, each a "
                        "number of hosts or a percentage, e.g. [1, \"10%\", \"100%\"]")
    return problems


def dl_inventory_problems(hostvars, names, required=()) -> list[str]:
    """Everything wrong with the inventory, one sentence per problem.

    Each sentence names the host, the variable and the fix. An empty list
    means the inventory may be applied.
    """
    dl_hosts.require_mapping(hostvars, "hostvars", "dl_inventory_problems")
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
        problems += _rollout_problems(hv, host)
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

# What a value of each argument-spec type must look like, for the fix in a message.
_SPEC_TYPES = {
    "bool": "true or false",
    "int": "a whole number",
    "float": "a number",
    "str": "a string",
    "path": "a path",
    "list": "a list",
    "dict": "a mapping",
    "raw": "a value",
    "bytes": "a size such as 10M",
    "bits": "a size such as 1Mb",
    "jsonarg": "JSON text",
    "json": "JSON text",
}
# The same, for the elements of a list.
_SPEC_PLURALS = {"str": "strings", "path": "paths", "int": "whole numbers", "float": "numbers", "bool": "true/false values",
                 "dict": "mappings", "raw": "values"}
_HIDDEN = "(hidden, no_log)"
_FOUND_IN_RE = re.compile(r" found in (?P<path>[A-Za-z0-9_.\[\]-]+)\s*$")
_NAMED_RE = re.compile(r"(?:argument|option) '(?P<name>[^']+)'|^value of (?P<choice>\S+) must be one of")
_MISSING_RE = re.compile(r"^missing required arguments: (?P<names>[^.]+?)(?: found in .*)?$")


# Addresses that mean "every interface" to a server.
ALL_ADDRESSES = ("", "*", "0.0.0.0", "::", "[::]", "::0", "0:0:0:0:0:0:0:0")


def dl_listen_problems(prefix, host, bind_address, allow_all=False, tls_cert="", tls_key="", service="") -> list[str]:
    """Problems of a web service's address and TLS settings (jupyter, tensorboard), one sentence each.

    ``prefix`` is the role's variable prefix (``jupyter`` reads
    jupyter_bind_address, jupyter_allow_all_addresses, jupyter_tls_cert and
    jupyter_tls_key). Every interface (0.0.0.0, ::) is refused unless
    allow_all; an empty address means none is known for the host.
    """
    service = service or prefix.capitalize()
    where = f"{prefix} on {host}"
    address = str(bind_address if bind_address is not None else "").strip()
    problems = []
    if address in ALL_ADDRESSES and not boolean(allow_all, strict=False):
        why = ("is empty: no cluster address is known for the host" if address == ""
               else f"opens {service} on every interface")
        problems.append(f'{where}: {prefix}_bind_address is "{address}", which {why}; set {prefix}_bind_address '
                        f"(or dl_address) to the host's private or VPN address, or set "
                        f"{prefix}_allow_all_addresses: true to open it everywhere")
    if bool(str(tls_cert or "")) != bool(str(tls_key or "")):
        problems.append(f"{where}: set both {prefix}_tls_cert and {prefix}_tls_key (files on the host) or neither")
    return problems


def dl_preflight_roles(roles, host_vars) -> list[dict]:
    """The roles' entry points the pre-flight checks on one host, as ``[{name, entry_point}]``.

    ``roles`` is validate_inventory_roles: ``{name, entry_points (default
    [main]), enabled_by (optional), enabled_default (optional, default true),
    group (optional)}``. A role whose ``enabled_by`` variable is false for the
    host (e.g. ``dl_notebooks: false``; unset means enabled_default), or whose
    ``group`` the host is not in (e.g. ``monitoring``), is left out there.
    """
    _require_list(roles, "roles", "dl_preflight_roles")
    dl_hosts.require_mapping(host_vars, "host_vars", "dl_preflight_roles")
    checks = []
    for index, role in enumerate(roles):
        if not isinstance(role, dict) or not role.get("name"):
            raise AnsibleFilterError(f"dl_preflight_roles: validate_inventory_roles[{index}] must be a mapping "
                                     "with a name")
        switch = role.get("enabled_by")
        if switch and not boolean(host_vars.get(switch, role.get("enabled_default", True)), strict=False):
            continue
        if role.get("group") and role["group"] not in (host_vars.get("group_names") or []):
            continue
        entry_points = role.get("entry_points") or ["main"]
        _require_list(entry_points, f"validate_inventory_roles[{index}].entry_points", "dl_preflight_roles")
        checks += [{"name": str(role["name"]), "entry_point": str(entry)} for entry in entry_points]
    return checks


def dl_role_arguments(checks, specs, defaults, host_vars) -> dict:
    """The roles' arguments for one host, as each role would see them, for one validate_argument_spec call.

    ``checks`` is dl_preflight_roles' ``[{name, entry_point}]``, ``specs``
    maps each role to its meta/argument_specs.yml ``argument_specs``,
    ``defaults`` each role to its defaults/main.yml (templated lazily in the
    host's context when read) and ``host_vars`` holds the host's variables
    (inventory and extra vars). A host's own value wins over the default.
    Role variables carry their role's prefix, so the entry points' options
    merge into one spec; an option in two entry points keeps the first.

    A default that cannot be rendered before the role runs (it reads facts or
    the role's internal variables) is left out, and the option is not
    required then: the role checks it itself when it runs.

    Returns ``{spec, arguments, sources, shown, roles}``: the spec (top-level
    defaults dropped: the values are given), the values, where each came from
    (``inventory`` or ``default``), the values with no_log options hidden (for
    messages) and the role (and entry point) of each option.
    """
    _require_list(checks, "checks", "dl_role_arguments")
    dl_hosts.require_mapping(specs, "specs", "dl_role_arguments")
    dl_hosts.require_mapping(defaults, "defaults", "dl_role_arguments")
    dl_hosts.require_mapping(host_vars, "host_vars", "dl_role_arguments")
    merged = {"spec": {}, "arguments": {}, "sources": {}, "shown": {}, "roles": {}}
    for check in checks:
        role, entry = check["name"], check.get("entry_point", "main")
        entry_points = specs.get(role) or {}
        if entry not in entry_points:
            raise AnsibleFilterError(f"dl_role_arguments: role {role} has no entry point {entry!r} in "
                                     "meta/argument_specs.yml; fix validate_inventory_roles")
        options = (entry_points[entry] or {}).get("options") or {}
        for name in options:
            if name not in merged["spec"]:
                _add_argument(merged, name, dict(options[name] or {}), defaults.get(role) or {}, host_vars)
                merged["roles"][name] = role if entry == "main" else f"{role} (entry point {entry})"
    return merged


def _rendered(value):
    """A plain copy of value, every element read (so that a lazily templated one is rendered now)."""
    if isinstance(value, Mapping):
        return {key: _rendered(value[key]) for key in value}
    if isinstance(value, (list, tuple)):
        return [_rendered(item) for item in value]
    return value


def _add_argument(merged, name, option, defaults, host_vars) -> None:
    option.pop("default", None)
    if name in host_vars:
        merged["arguments"][name], merged["sources"][name] = host_vars[name], "inventory"
    elif name in defaults:
        try:
            merged["arguments"][name] = _rendered(defaults[name])
        except (AnsibleError, TemplateError):
            option.pop("required", None)
        else:
            merged["sources"][name] = "default"
    if name in merged["arguments"]:
        merged["shown"][name] = _HIDDEN if option.get("no_log") else merged["arguments"][name]
    merged["spec"][name] = option


def _expected(option) -> str:
    """What a value of an argument-spec option must be, in words."""
    kind = option.get("type", "str")
    words = _SPEC_TYPES.get(kind, f"of type {kind}")
    if kind == "list" and option.get("elements"):
        element = option["elements"]
        words = f"a list of {_SPEC_PLURALS.get(element, element)}"
        if element == "dict" and option.get("options"):
            words += " with " + ", ".join(sorted(option["options"]))
    elif kind == "dict" and option.get("options"):
        words += " with " + ", ".join(sorted(option["options"]))
    if option.get("choices"):
        words = "one of " + ", ".join(str(c) for c in option["choices"])
    return words


def _short(value, limit=60) -> str:
    if value == _HIDDEN:
        return _HIDDEN
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _names_in(message: str, options) -> list[str]:
    """The top-level options an argument-spec error message is about."""
    found_in = _FOUND_IN_RE.search(message)
    if found_in:
        top = re.split(r"[.\[]", found_in.group("path"))[0]
        return [top] if top in options else []
    missing = _MISSING_RE.match(message)
    if missing:
        return [n.strip() for n in missing.group("names").split(",") if n.strip() in options]
    named = _NAMED_RE.search(message)
    if named:
        name = named.group("name") or named.group("choice")
        if name in options:
            return [name]
    words = set(re.findall(r"[A-Za-z0-9_]+", message))
    return [name for name in options if name in words][:1]


def dl_argument_spec_problems(result, host) -> list[str]:
    """One sentence per role variable that validate_argument_spec refused, naming the host, variable and fix.

    ``result`` is validate_argument_spec's registered result; its
    ``validate_args_context`` holds dl_role_arguments' ``sources``, ``shown``
    and ``roles``. A message that names no variable of the spec is kept as it
    is, prefixed with the host.
    """
    dl_hosts.require_mapping(result, "result", "dl_argument_spec_problems")
    context = result.get("validate_args_context") or {}
    # validate_argument_spec returns the spec only when it refuses something; the context carries it always.
    options = result.get("argument_spec_data") or context.get("spec") or {}
    sources, shown, roles = context.get("sources") or {}, context.get("shown") or {}, context.get("roles") or {}
    problems: list[str] = []
    reported: set[str] = set()
    # Ansible turns a string into a list by splitting it at commas: a list option given as one string passes its
    # check, and the role then sees ["a", "b"] for "a,b" or ["x"] for "x". Refused here instead.
    for name in sorted(options):
        option = options.get(name) or {}
        value = shown.get(name)
        if option.get("type") == "list" and isinstance(value, str) and value != _HIDDEN:
            reported.add(name)
            problems.append(_argument_problem(host, name, option, "a string is not a list", sources, shown,
                                              roles.get(name, "?")))
    for message in result.get("argument_errors") or []:
        message = " ".join(str(message).split())
        names = _names_in(message, options)
        if not names and not reported:
            problems.append(f"host {host}: a role refuses its variables ({message}); fix the variable it names "
                            "in the inventory")
        for name in [n for n in names if n not in reported]:
            reported.add(name)
            problems.append(_argument_problem(host, name, options.get(name) or {}, message, sources, shown,
                                              roles.get(name, "?")))
    return problems


def _argument_problem(host, name, option, message, sources, shown, role) -> str:
    role_name = role.split(" ", 1)[0]
    readme = f"(see roles/{role_name}/README.md)"
    expected = _expected(option)
    nested = " found in " in message or message.startswith("Elements value")
    detail = f" ({message})" if nested else ""
    if name not in shown:
        return (f"host {host}: {name} is not set but role {role} requires it; set {name} to {expected} "
                f"in the inventory {readme}")
    if sources.get(name) == "default":
        return (f"host {host}: {name} is {_short(shown[name])} from role {role}'s default, but the role needs "
                f"{expected}{detail}; fix the dl_ variable that default reads, or set {name} in the inventory "
                f"{readme}")
    return (f"host {host}: {name} is {_short(shown[name])}, but role {role} needs {expected}{detail}; set {name} "
            f"to {expected} in the inventory, or remove it to use the role's default {readme}")


class FilterModule:
    """dlcluster inventory filters."""

    def filters(self):
        return {
            "dl_host_address": dl_host_address,
            "dl_cluster_hosts": dl_cluster_hosts,
            "dl_ssh_pubkey_problem": dl_ssh_pubkey_problem,
            "dl_inventory_problems": dl_inventory_problems,
            "dl_user_problems": dl_user_problems,
            "dl_listen_problems": dl_listen_problems,
            "dl_preflight_roles": dl_preflight_roles,
            "dl_role_arguments": dl_role_arguments,
            "dl_argument_spec_problems": dl_argument_spec_problems,
        }
