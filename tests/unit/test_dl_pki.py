"""Unit tests of filter_plugins/dl_pki.py."""

import pytest
from ansible.errors import AnsibleFilterError

from dl_pki import FilterModule, dl_pki_check_rows, dl_pki_check_table, dl_pki_days_left, dl_pki_sans


def test_sans_classify_addresses_and_names_in_order_without_repeats():
    assert dl_pki_sans(["10.0.0.5", "head", "head.example.org.", "HEAD", "", None, "IP:10.0.0.5", "fd00::1"]) == [
        "IP:10.0.0.5", "DNS:head", "DNS:head.example.org", "IP:fd00::1"]


def test_sans_keep_explicit_prefixes_and_wildcards():
    assert dl_pki_sans(["DNS:*.cluster.example", "IP:192.168.1.1"]) == ["DNS:*.cluster.example", "IP:192.168.1.1"]


@pytest.mark.parametrize("bad", [["IP:head"], ["under_score"], ["a b"], [], [""], "head"])
def test_sans_refuse_what_is_neither_an_address_nor_a_name(bad):
    with pytest.raises(AnsibleFilterError):
        dl_pki_sans(bad)


def test_days_left_is_fractional_and_negative_once_expired():
    assert dl_pki_days_left("20270110000000Z", "20270101000000Z") == 9.0
    assert dl_pki_days_left("20270101120000Z", "20270101000000Z") == 0.5
    assert dl_pki_days_left("20261231000000Z", "20270101000000Z") == -1.0
    with pytest.raises(AnsibleFilterError, match="ASN.1"):
        dl_pki_days_left("2027-01-10", "20270101000000Z")


def test_check_rows_put_the_most_urgent_first_and_judge_against_the_threshold():
    certs = [
        {"host": "cpu1", "name": "tensorboard", "not_after": "20270401000000Z", "service": "nginx"},
        {"host": "head", "name": "tensorboard", "not_after": "20270111000000Z", "service": "nginx"},
        {"host": "head", "name": "mirror", "not_after": "20270131000000Z", "service": ""},
    ]
    rows = dl_pki_check_rows(certs, "20270101000000Z", 30)
    assert [(r["host"], r["name"], r["days_left"], r["ok"]) for r in rows] == [
        ("head", "tensorboard", 10.0, False), ("head", "mirror", 30.0, True), ("cpu1", "tensorboard", 90.0, True)]
    table = dl_pki_check_table(rows)
    assert table[0].split() == ["host", "certificate", "service", "days", "left", "state"]
    assert table[1].split() == ["head", "tensorboard", "nginx", "10.0", "RENEW"]
    assert table[2].split() == ["head", "mirror", "-", "30.0", "ok"]
    with pytest.raises(AnsibleFilterError, match="min_days"):
        dl_pki_check_rows(certs, "20270101000000Z", "soon")


def test_filter_module_exports_every_filter():
    assert set(FilterModule().filters()) == {"dl_pki_sans", "dl_pki_days_left", "dl_pki_check_rows",
                                            "dl_pki_check_table"}
