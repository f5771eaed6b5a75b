"""library/dl_pki_current.py: the pki role's fast path says "current" only when nothing would change.

Real keys and certificates (cryptography, as community.crypto makes them on the hosts), real files and modes.
"""

import datetime
import ipaddress
import json
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dl_pki_current import current_problems

SANS = ["IP:10.0.0.5", "DNS:cpu1", "DNS:cpu1.lab"]
RECORD = json.dumps({"name": "jupyter", "sans": [], "group": "root", "service": "jupyter"}, indent=4) + "\n"


def make_ca(name="dlcluster cluster CA"):
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(key, hashes.SHA256()))
    return key, cert


def sign(ca, public_key, common="cpu1 jupyter", sans=SANS, days=90, server_and_client=True):
    ca_key, ca_cert = ca
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.IPAddress(ipaddress.ip_address(s[3:])) if s.startswith("IP:") else x509.DNSName(s[4:])
             for s in sans]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH] if server_and_client else [])
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
            .issuer_name(ca_cert.subject).public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256()))


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def host(tmp_path):
    """A host's directory as the role leaves it: key, certificate and record; returns the module's params."""
    if os.geteuid() != 0:
        pytest.skip("the owners checked are root's: run as root (CI does)")
    ca = make_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    directory = tmp_path / "pki"
    directory.mkdir()
    directory.chmod(0o755)
    paths = {"key": directory / "jupyter.key", "cert": directory / "jupyter.crt", "record": directory / "jupyter.json"}
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths["key"].chmod(0o640)
    paths["cert"].write_bytes(pem(sign(ca, key.public_key())))
    paths["cert"].chmod(0o644)
    paths["record"].write_text(RECORD)
    paths["record"].chmod(0o644)
    params = {"directory": str(directory), "key_group": "root", "record_content": RECORD,
              "ca_cert": pem(ca[1]).decode(), "common_name": "cpu1 jupyter", "sans": list(SANS), "renew_days": 30,
              "new_key": False, **{name: str(path) for name, path in paths.items()}}
    return params, ca, key, paths


def test_a_certificate_as_the_role_leaves_it_is_current(host):
    params, *_ = host
    assert current_problems(params) == []
    # The names in another order, as the filter may give them: still current.
    assert current_problems({**params, "sans": list(reversed(SANS))}) == []


def test_a_new_key_asked_for_is_never_current(host):
    params, *_ = host
    assert current_problems({**params, "new_key": True}) == ["a new key is asked for"]


def test_a_key_readable_by_others_is_mended(host):
    params, _, _, paths = host
    paths["key"].chmod(0o644)
    assert current_problems(params) == [f"{paths['key']} has mode 0644, not 0640"]


def test_another_group_for_the_key_is_mended(host):
    params, _, _, paths = host
    assert current_problems({**params, "key_group": "daemon"}) == [
        f"{paths['key']} belongs to root:root, not root:daemon"]


@pytest.mark.parametrize("name", ["key", "cert", "record"])
def test_a_missing_file_is_not_current(host, name):
    params, _, _, paths = host
    paths[name].unlink()
    assert current_problems(params) == [f"{paths[name]} is missing"]


def test_other_names_are_not_current(host):
    params, *_ = host
    problems = current_problems({**params, "sans": SANS + ["DNS:jupyter.example"]})
    assert len(problems) == 1 and problems[0].startswith("the certificate's names are"), problems
    assert current_problems({**params, "common_name": "cpu2 jupyter"}) == [
        "the certificate names ['cpu1 jupyter'], not 'cpu2 jupyter'"]


def test_a_certificate_of_another_ca_is_not_current(host):
    params, _, key, paths = host
    paths["cert"].write_bytes(pem(sign(make_ca("someone else"), key.public_key())))
    assert current_problems(params) == ["the certificate was not signed by the cluster CA"]
    # Same name, another key: the signature gives it away.
    paths["cert"].write_bytes(pem(sign(make_ca(), key.public_key())))
    assert current_problems(params) == ["the certificate was not signed by the cluster CA"]


def test_a_certificate_due_for_renewal_is_not_current(host):
    params, ca, key, paths = host
    paths["cert"].write_bytes(pem(sign(ca, key.public_key(), days=10)))
    problems = current_problems(params)
    assert len(problems) == 1 and "renewal is due at 30" in problems[0], problems


def test_a_certificate_of_another_key_is_not_current(host):
    params, ca, _, paths = host
    paths["cert"].write_bytes(pem(sign(ca, ec.generate_private_key(ec.SECP256R1()).public_key())))
    assert current_problems(params) == ["the certificate does not hold the key's public key"]


def test_a_certificate_without_client_auth_is_not_current(host):
    params, ca, key, paths = host
    paths["cert"].write_bytes(pem(sign(ca, key.public_key(), server_and_client=False)))
    assert current_problems(params) == ["the certificate's extended key usage is not serverAuth, clientAuth"]


def test_a_changed_record_is_not_current(host):
    params, _, _, paths = host
    paths["record"].write_text(RECORD.replace("jupyter", "tensorboard"))
    assert current_problems(params) == ["the record differs"]


def test_a_key_that_is_not_p256_is_not_current(host):
    params, _, _, paths = host
    other = ec.generate_private_key(ec.SECP384R1())
    paths["key"].write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    assert current_problems(params) == ["the key is not an EC P-256 key"]
