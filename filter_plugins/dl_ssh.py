"""SSH filters of dlcluster: the OpenSSH version of a host and its hardened crypto.

Pure functions, unit-tested in tests/unit/test_dl_ssh.py. The algorithm lists
follow ssh-audit's built-in "Hardened OpenSSH Server vX.Y" policies (their
order included, which the policies check), so a host configured from them
passes the policy of its OpenSSH version.
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


def dl_ssh_crypto(version) -> dict:
    """Hardened KexAlgorithms, Ciphers, MACs and HostKeyAlgorithms for an OpenSSH version.

    Also says which optional sshd settings that version understands, so the
    template emits only what the server accepts.
    """
    wanted = _version_tuple(version)
    if wanted < OLDEST_SUPPORTED:
        raise AnsibleFilterError(
            f"dl_ssh_crypto: OpenSSH {version} is older than {OLDEST_SUPPORTED[0]}.{OLDEST_SUPPORTED[1]}, "
            "which lacks the hardened algorithms; upgrade the host's OpenSSH")
    for first, settings in _CRYPTO_TABLE:
        if wanted >= first:
            result = {key: list(value) for key, value in settings.items()}
            break
    result["host_key_algorithms"] = list(_HOST_KEY_ALGORITHMS)
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
