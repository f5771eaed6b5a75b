"""Run ssh-audit's built-in hardened policy for a lab host's distribution (used by molecule verifiers).

ssh-audit ships a server policy per distribution release ("Hardened Debian 12
(version 3)", "Hardened Ubuntu Server 24.04 LTS (version 2)", ...), written for
that release's patched OpenSSH. The lab host must pass the newest one of its
release exactly: no tolerated difference. Releases without one fall back to
the newest "Hardened OpenSSH Server v<version>" policy.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from ssh_audit.builtin_policies import BUILTIN_POLICIES

SSH_AUDIT = str(Path(sys.executable).parent / "ssh-audit")


def _newest(pattern: str) -> str | None:
    found = [(int(m.group(1)), name) for name in BUILTIN_POLICIES if (m := re.fullmatch(pattern, name))]
    return max(found)[1] if found else None


def builtin_policy_name(os_id: str, version_id: str, openssh_version: str) -> str:
    """The newest built-in server policy for the release (os-release ID and VERSION_ID), else for OpenSSH."""
    distro = {"debian": "Debian", "ubuntu": "Ubuntu Server"}.get(os_id)
    lts = " LTS" if os_id == "ubuntu" else ""
    if distro:
        name = _newest(rf"Hardened {distro} {re.escape(version_id)}{lts} \(version (\d+)\)")
        if name:
            return name
    name = _newest(rf"Hardened OpenSSH Server v{re.escape(openssh_version)} \(version (\d+)\)")
    if not name:
        raise LookupError(f"ssh-audit has no hardened policy for {os_id} {version_id} or OpenSSH {openssh_version}")
    return name


def audit(address: str, policy: str) -> dict:
    """ssh-audit's JSON verdict of the host against the built-in policy."""
    proc = subprocess.run([SSH_AUDIT, "-j", "-P", policy, address], capture_output=True, text=True,
                          timeout=120, check=False)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise RuntimeError(f"ssh-audit gave no JSON (rc={proc.returncode}): {proc.stdout} {proc.stderr}") from err
