"""Run ssh-audit's built-in hardened policy against a lab host (used by molecule verifiers).

Debian 12 and Ubuntu patch OpenSSH against Terrapin (CVE-2023-48795): the
server then appends the marker `kex-strict-s-v00@openssh.com` to its key
exchange list. ssh-audit's policies for OpenSSH before 9.6 predate that fix
and compare the list exactly, so a patched server differs from them by that
one marker and by nothing else. `audit()` reports both results: the built-in
policy as it is, and the same policy with the marker required (every other
field, order and key size unchanged).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from ssh_audit.builtin_policies import BUILTIN_POLICIES

STRICT_KEX = "kex-strict-s-v00@openssh.com"
SSH_AUDIT = str(Path(sys.executable).parent / "ssh-audit")


def builtin_policy_name(openssh_version: str) -> str:
    """The newest revision of 'Hardened OpenSSH Server v<version>'."""
    pattern = re.compile(rf"Hardened OpenSSH Server v{re.escape(openssh_version)} \(version (\d+)\)")
    names = [(int(m.group(1)), name) for name in BUILTIN_POLICIES if (m := pattern.fullmatch(name))]
    if not names:
        raise LookupError(f"ssh-audit has no hardened policy for OpenSSH {openssh_version}")
    return max(names)[1]


def _run(address: str, policy: str) -> dict:
    proc = subprocess.run([SSH_AUDIT, "-j", "-P", policy, address], capture_output=True, text=True,
                          timeout=120, check=False)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise RuntimeError(f"ssh-audit gave no JSON (rc={proc.returncode}): {proc.stdout} {proc.stderr}") from err


def strict_kex_policy_text(name: str) -> str:
    """The built-in policy `name` as a policy file, with the Terrapin marker required."""
    policy = BUILTIN_POLICIES[name]
    kex = list(policy["kex"]) + ([] if STRICT_KEX in policy["kex"] else [STRICT_KEX])
    lines = [
        f'name = "{name.split(" (version")[0]} + strict KEX"',
        f"version = {policy['version']}",
        "allow_algorithm_subset_and_reordering = false",
        "allow_larger_keys = false",
        f"host keys = {', '.join(policy['host_keys'])}",
        f"key exchanges = {', '.join(kex)}",
        f"ciphers = {', '.join(policy['ciphers'])}",
        f"macs = {', '.join(policy['macs'])}",
        f"host_key_sizes = {json.dumps(policy['hostkey_sizes'])}",
    ]
    if policy.get("optional_host_keys"):
        lines.append(f"optional host keys = {', '.join(policy['optional_host_keys'])}")
    if policy.get("dh_modulus_sizes"):
        lines.append(f"dh_modulus_sizes = {json.dumps(policy['dh_modulus_sizes'])}")
    return "\n".join(lines) + "\n"


def audit(address: str, openssh_version: str) -> dict:
    """{'policy', 'builtin': ssh-audit JSON, 'strict_kex': ssh-audit JSON} for one host."""
    name = builtin_policy_name(openssh_version)
    builtin = _run(address, name)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as policy_file:
        policy_file.write(strict_kex_policy_text(name))
        policy_file.flush()
        strict = _run(address, policy_file.name)
    return {"policy": name, "builtin": builtin, "strict_kex": strict}


def only_difference_is_strict_kex(result: dict) -> bool:
    """True when the built-in policy's only error is the Terrapin marker at the end of the KEX list."""
    errors = result.get("errors", [])
    if len(errors) != 1 or errors[0].get("mismatched_field") != "Key exchanges":
        return False
    return errors[0]["actual"] == errors[0]["expected_required"] + [STRICT_KEX]
