#!/usr/bin/python
"""Ansible module: whether a host's certificate is current, read in one call (the pki role's fast path)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dl_pki_current
short_description: Tell whether a host's key, certificate and record are all as the pki role would leave them
description:
  - Read-only. The pki role's C(certificate) entry point calls it first; when everything is current it skips the
    rest (installing packages, making a signing request, signing on the controller, installing), so a warm run
    costs one call per certificate instead of nine.
  - I(current) is true only when all of these hold, else I(reasons) names each that does not
    (the role then runs its whole path, which mends them)
  - the directory, key, certificate and record exist with the owners and modes the role sets;
  - the key is an EC P-256 key and I(new_key) is false;
  - the certificate holds the key's public key, was signed by I(ca_cert), names I(common_name) and exactly
    I(sans), has the role's key usages, and has more than I(renew_days) days left;
  - the record holds exactly I(record_content).
options:
  directory:
    description: The directory of the host's keys and certificates (root:root 0755).
    type: path
    required: true
  key:
    description: The private key (root, I(key_group), 0640).
    type: path
    required: true
  key_group:
    description: The key's group.
    type: str
    required: true
  cert:
    description: The certificate (root:root 0644).
    type: path
    required: true
  record:
    description: The record of what uses the certificate (root:root 0644).
    type: path
    required: true
  record_content:
    description: What the record must hold, byte for byte.
    type: str
    required: true
  ca_cert:
    description: The cluster CA's certificate (PEM text).
    type: str
    required: true
  common_name:
    description: The certificate's subject common name.
    type: str
    required: true
  sans:
    description: The subject alternative names, in OpenSSL's form (C(DNS:name), C(IP:address)).
    type: list
    elements: str
    required: true
  renew_days:
    description: A certificate with this many days left or fewer is not current.
    type: int
    required: true
  new_key:
    description: A new key is asked for (never current).
    type: bool
    default: false
requirements: [python3-cryptography on the host]
"""

RETURN = r"""
current:
  description: Everything is as the role would leave it.
  returned: always
  type: bool
reasons:
  description: What is not current, one short sentence each.
  returned: always
  type: list
  elements: str
"""

import datetime
import grp
import ipaddress
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule


def _file_problems(path, owner, group, mode) -> list[str]:
    try:
        info = os.stat(path)
    except OSError:
        return [f"{path} is missing"]
    problems = []
    try:
        owner_name, group_name = pwd.getpwuid(info.st_uid).pw_name, grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        owner_name, group_name = str(info.st_uid), str(info.st_gid)
    if (owner_name, group_name) != (owner, group):
        problems.append(f"{path} belongs to {owner_name}:{group_name}, not {owner}:{group}")
    if stat.S_IMODE(info.st_mode) != mode:
        problems.append(f"{path} has mode {stat.S_IMODE(info.st_mode):04o}, not {mode:04o}")
    return problems


def _names(cert, x509) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = []
    for entry in extension:
        if isinstance(entry, x509.DNSName):
            names.append(f"DNS:{entry.value.rstrip('.').lower()}")
        elif isinstance(entry, x509.IPAddress):
            names.append(f"IP:{ipaddress.ip_address(entry.value)}")
        else:
            names.append(repr(entry))
    return names


def _usage_problems(cert, x509, oid) -> list[str]:
    problems = []
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature or usage.key_cert_sign:
            problems.append("the certificate's key usage is not digitalSignature")
    except x509.ExtensionNotFound:
        problems.append("the certificate has no key usage")
    try:
        extended = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        if extended != {oid.ExtendedKeyUsageOID.SERVER_AUTH, oid.ExtendedKeyUsageOID.CLIENT_AUTH}:
            problems.append("the certificate's extended key usage is not serverAuth, clientAuth")
    except x509.ExtensionNotFound:
        problems.append("the certificate has no extended key usage")
    return problems


def _signed_by(cert, ca, cryptography) -> bool:
    """The CA's key verifies the certificate's signature (an EC or RSA CA)."""
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # pylint: disable=import-outside-toplevel

    public = ca.public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                          cert.signature_hash_algorithm)
        else:
            return False
    except (cryptography.exceptions.InvalidSignature, TypeError, ValueError):
        return False
    return True


def _cert_problems(params, key, cryptography) -> list[str]:
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    from cryptography.x509 import oid  # pylint: disable=import-outside-toplevel

    try:
        with open(params["cert"], "rb") as handle:
            cert = x509.load_pem_x509_certificate(handle.read())
        ca = x509.load_pem_x509_certificate(params["ca_cert"].encode())
    except (OSError, ValueError) as error:
        return [f"the certificate cannot be read ({error})"]
    problems = []
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if cert.public_key().public_bytes(encoding, raw) != key.public_key().public_bytes(encoding, raw):
        problems.append("the certificate does not hold the key's public key")
    if cert.issuer != ca.subject or not _signed_by(cert, ca, cryptography):
        problems.append("the certificate was not signed by the cluster CA")
    common = [attribute.value for attribute in cert.subject.get_attributes_for_oid(oid.NameOID.COMMON_NAME)]
    if common != [params["common_name"]]:
        problems.append(f"the certificate names {common}, not {params['common_name']!r}")
    if sorted(_names(cert, x509)) != sorted(params["sans"]):
        problems.append(f"the certificate's names are {_names(cert, x509)}, not {params['sans']}")
    problems += _usage_problems(cert, x509, oid)
    not_after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=datetime.timezone.utc)
    left = not_after - datetime.datetime.now(datetime.timezone.utc)
    if left <= datetime.timedelta(days=params["renew_days"]):
        problems.append(f"the certificate has {left.days} day(s) left, renewal is due at {params['renew_days']}")
    return problems


def current_problems(params) -> list[str]:
    """Every reason the certificate is not current; [] when it is."""
    if params["new_key"]:
        return ["a new key is asked for"]
    problems = _file_problems(params["directory"], "root", "root", 0o755)
    problems += _file_problems(params["key"], "root", params["key_group"], 0o640)
    problems += _file_problems(params["cert"], "root", "root", 0o644)
    problems += _file_problems(params["record"], "root", "root", 0o644)
    if problems:
        return problems
    try:
        with open(params["record"], encoding="utf-8") as handle:
            if handle.read() != params["record_content"]:
                problems.append("the record differs")
    except (OSError, UnicodeDecodeError):
        problems.append("the record cannot be read")
    try:
        import cryptography.exceptions  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
    except ImportError:
        return problems + ["python3-cryptography is not installed"]
    try:
        with open(params["key"], "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except (OSError, ValueError, TypeError) as error:
        return problems + [f"the key cannot be read ({error})"]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        return problems + ["the key is not an EC P-256 key"]
    return problems + _cert_problems(params, key, cryptography)


def main():
    module = AnsibleModule(
        argument_spec={
            "directory": {"type": "path", "required": True},
            "key": {"type": "path", "required": True},
            "key_group": {"type": "str", "required": True},
            "cert": {"type": "path", "required": True},
            "record": {"type": "path", "required": True},
            "record_content": {"type": "str", "required": True},
            "ca_cert": {"type": "str", "required": True},
            "common_name": {"type": "str", "required": True},
            "sans": {"type": "list", "elements": "str", "required": True},
            "renew_days": {"type": "int", "required": True},
            "new_key": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    reasons = current_problems(module.params)
    module.exit_json(changed=False, current=not reasons, reasons=reasons)


if __name__ == "__main__":
    main()
