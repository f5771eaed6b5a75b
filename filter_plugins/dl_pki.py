"""PKI filters of dlcluster: the names a host certificate is valid for, and how long certificates have left.

Pure functions, unit-tested in tests/unit/test_dl_pki.py. The pki role signs
host certificates with the cluster CA (roles/pki); playbooks/pki-check.yml
reports every certificate's days left through dl_pki_check_rows.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timezone

from ansible.errors import AnsibleFilterError

_DNS_NAME = re.compile(r"^(?=.{1,253}$)(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")


def dl_pki_sans(names) -> list[str]:
    """Subject alternative names in OpenSSL's form, in order, without repeats and empty entries.

    An IP address becomes ``IP:<address>``, a host name ``DNS:<name>``; entries already written as
    ``IP:``/``DNS:`` are checked and kept. A value that is neither is an error naming it.
    """
    if isinstance(names, (str, bytes)) or not hasattr(names, "__iter__"):
        raise AnsibleFilterError(f"dl_pki_sans: expected a list of names and addresses, got {names!r}")
    sans = []
    for raw in names:
        value = str(raw or "").strip()
        if not value:
            continue
        kind, _, rest = value.partition(":")
        if kind in ("IP", "DNS") and rest:
            value = rest
        try:
            entry = f"IP:{ipaddress.ip_address(value)}"
        except ValueError:
            if kind == "IP" and rest:
                raise AnsibleFilterError(f"dl_pki_sans: {raw!r} is not an IP address") from None
            if not _DNS_NAME.match(value):
                raise AnsibleFilterError(f"dl_pki_sans: {raw!r} is neither an IP address nor a DNS name") from None
            entry = f"DNS:{value.rstrip('.').lower()}"
        if entry not in sans:
            sans.append(entry)
    if not sans:
        raise AnsibleFilterError("dl_pki_sans: a certificate needs at least one name or address")
    return sans


def _asn1_time(value) -> datetime:
    """'20270301120000Z' (what x509_certificate_info returns) as an aware UTC datetime."""
    try:
        return datetime.strptime(str(value), "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise AnsibleFilterError(f"not an ASN.1 time (YYYYMMDDHHMMSSZ): {value!r}") from None


def dl_pki_days_left(not_after, now) -> float:
    """Days (fractional, negative once expired) from ``now`` to ``not_after``, both ASN.1 times."""
    return round((_asn1_time(not_after) - _asn1_time(now)).total_seconds() / 86400, 2)


def dl_pki_check_rows(certificates, now, min_days) -> list[dict]:
    """One row per certificate for pki-check, the least time left first.

    ``certificates``: [{host, name, not_after, service}]. Each row adds ``days_left`` and ``ok`` (at least
    ``min_days`` left).
    """
    try:
        threshold = float(min_days)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"dl_pki_check_rows: min_days must be a number, got {min_days!r}") from None
    rows = []
    for cert in certificates:
        days = dl_pki_days_left(cert["not_after"], now)
        rows.append({**cert, "days_left": days, "ok": days >= threshold})
    return sorted(rows, key=lambda row: (row["days_left"], row["host"], row["name"]))


def dl_pki_check_table(rows) -> list[str]:
    """pki-check's rows as aligned text lines: host, certificate, service, days left, state."""
    header = ("host", "certificate", "service", "days left", "state")
    body = [(r["host"], r["name"], r.get("service") or "-", f"{r['days_left']:.1f}", "ok" if r["ok"] else "RENEW")
            for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *body]]


class FilterModule:
    """dlcluster PKI filters."""

    def filters(self):
        return {
            "dl_pki_sans": dl_pki_sans,
            "dl_pki_days_left": dl_pki_days_left,
            "dl_pki_check_rows": dl_pki_check_rows,
            "dl_pki_check_table": dl_pki_check_table,
        }
