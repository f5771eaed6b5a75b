"""SSH filters of dlcluster: the OpenSSH version of a host and its hardened crypto.

Pure functions, unit-tested in tests/unit/test_dl_ssh.py. The algorithm lists
follow ssh-audit's built-in policies, their order included (the policies check
it): the policy written for the host's distribution and release where
ssh-audit has one ("Hardened Debian 12", "Hardened Ubuntu Server 24.04 LTS"…,
which expect the distribution's Terrapin-patched server), else the "Hardened
OpenSSH Server vX.Y" policy of its OpenSSH version. A host configured from
them passes that policy exactly.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

_KEX_DH = [
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha256",
]
_CIPHERS = [
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
]
_MACS = ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "umac-128-etm@openssh.com"]
# The order in which the server offers its host keys follows the HostKey lines.
_HOST_KEY_ALGORITHMS = ["rsa-sha2-512", "rsa-sha2-256", "ssh-ed25519"]

# (first OpenSSH version, settings), newest first.
_CRYPTO_TABLE = [
    ((10, 0), {
        "kex": ["mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"],
        "ciphers": ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes256-ctr", "aes192-ctr",
                    "aes128-gcm@openssh.com", "aes128-ctr"],
        "macs": ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com"],
    }),
    ((9, 9), {
        "kex": ["sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com", "mlkem768x25519-sha256"] + _KEX_DH,
        "ciphers": _CIPHERS,
        "macs": _MACS,
    }),
    ((8, 8), {"kex": ["sntrup761x25519-sha512@openssh.com"] + _KEX_DH, "ciphers": _CIPHERS, "macs": _MACS}),
    ((7, 7), {"kex": list(_KEX_DH), "ciphers": _CIPHERS, "macs": _MACS}),
]
OLDEST_SUPPORTED = _CRYPTO_TABLE[-1][0]

_ED25519_FIRST = ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]
_CIPHERS_DISTRO = ["chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes256-ctr", "aes192-ctr",
                   "aes128-gcm@openssh.com", "aes128-ctr"]
_MACS_256_FIRST = ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "umac-128-etm@openssh.com"]
_MACS_512_FIRST = ["hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com"]
# (distribution, release): ssh-audit's (3.9.0) newest policy for it and its settings.
_DISTRO_TABLE = {
    ("debian", "12"): ("Hardened Debian 12 (version 3)", {
        "kex": ["sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"] + _KEX_DH,
        "ciphers": _CIPHERS_DISTRO, "macs": _MACS_256_FIRST, "host_key_algorithms": _ED25519_FIRST}),
    ("debian", "13"): ("Hardened Debian 13 (version 1)", {
        "kex": ["mlkem768x25519-sha256", "sntrup761x25519-sha512", "sntrup761x25519-sha512@openssh.com"],
        "ciphers": _CIPHERS_DISTRO, "macs": _MACS_512_FIRST, "host_key_algorithms": _ED25519_FIRST}),
    ("ubuntu", "22.04"): ("Hardened Ubuntu Server 22.04 LTS (version 6)", {
        "kex": ["sntrup761x25519-sha512@openssh.com"] + _KEX_DH,
        "ciphers": _CIPHERS_DISTRO, "macs": _MACS_256_FIRST, "host_key_algorithms": _ED25519_FIRST}),
    ("ubuntu", "24.04"): ("Hardened Ubuntu Server 24.04 LTS (version 2)", {
        "kex": ["sntrup761x25519-sha512@openssh.com", "curve25519-sha256", "curve25519-sha256@libssh.org",
                "diffie-hellman-group18-sha512", "diffie-hellman-group-exchange-sha256",
                "diffie-hellman-group16-sha512"],
        "ciphers": _CIPHERS_DISTRO, "macs": _MACS_512_FIRST, "host_key_algorithms": _ED25519_FIRST}),
}


def _release_key(distribution, release) -> tuple[str, str]:
    """('debian', '12') from Ansible's facts: Debian by major release, Ubuntu by YY.MM."""
    name = str(distribution or "").strip().lower()
    text = str(release or "").strip()
    if name == "debian":
        text = text.split(".")[0]
    elif name == "ubuntu":
        text = ".".join(text.split(".")[:2])
    return name, text


def dl_openssh_version(text) -> str:
    """'9.2' from the output of `sshd -V` / `ssh -V` ('OpenSSH_9.2p1 Debian-2+deb12u3, ...')."""
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", str(text))
    if not match:
        raise AnsibleFilterError(f"dl_openssh_version: no OpenSSH version in {str(text)[:80]!r}")
    return f"{int(match.group(1))}.{int(match.group(2))}"


def _version_tuple(version) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d+)", str(version).strip())
    if not match:
        raise AnsibleFilterError(f"dl_ssh_crypto: version must look like '9.2', got {version!r}")
    return int(match.group(1)), int(match.group(2))


def dl_ssh_crypto(version, distribution=None, release=None) -> dict:
    """Hardened KexAlgorithms, Ciphers, MACs and HostKeyAlgorithms for a host.

    ``distribution`` and ``release`` are Ansible's ``distribution`` and
    ``distribution_version`` facts: where ssh-audit has a policy for them
    (Debian 12 and 13, Ubuntu 22.04 and 24.04) its lists are used, else those
    of the OpenSSH version's policy. ``policy`` names the ssh-audit policy the
    host then passes. Also says which optional sshd settings that version
    understands, so the template emits only what the server accepts.
    """
    wanted = _version_tuple(version)
    if wanted < OLDEST_SUPPORTED:
        raise AnsibleFilterError(
            f"dl_ssh_crypto: OpenSSH {version} is older than {OLDEST_SUPPORTED[0]}.{OLDEST_SUPPORTED[1]}, "
            "which lacks the hardened algorithms; upgrade the host's OpenSSH")
    distro = _DISTRO_TABLE.get(_release_key(distribution, release))
    if distro:
        result = {key: list(value) for key, value in distro[1].items()}
        result["policy"] = distro[0]
    else:
        for first, settings in _CRYPTO_TABLE:
            if wanted >= first:
                result = {key: list(value) for key, value in settings.items()}
                break
        result["host_key_algorithms"] = list(_HOST_KEY_ALGORITHMS)
        result["policy"] = f"Hardened OpenSSH Server v{version}"
    result["supports"] = {
        "required_rsa_size": wanted >= (9, 1),
        "per_source_max_startups": wanted >= (8, 5),
        "per_source_penalties": wanted >= (9, 8),
        "pubkey_accepted_algorithms": wanted >= (8, 5),
    }
    return result


class FilterModule:
    """dlcluster SSH filters."""

    def filters(self):
        return {"dl_openssh_version": dl_openssh_version, "dl_ssh_crypto": dl_ssh_crypto}
