"""Unit tests of filter_plugins/dl_pip.py and the index comparison of library/dl_devpi_index.py."""

import pytest
from ansible.errors import AnsibleFilterError

from dl_devpi_index import differences
from dl_pip import FilterModule, dl_devpi_indexes, dl_http_url, dl_pip_index_url, dl_url_hostport

PYPI = "https://pypi.org/simple/"
TORCH = {"pytorch-cpu": "https://download.pytorch.org/whl/cpu/"}


def test_index_layout_bases_first():
    indexes = dl_devpi_indexes(PYPI, TORCH, {"cpu": ["root/wheels", "root/pytorch-cpu", "root/pypi"]})
    assert [index["name"] for index in indexes] == ["pypi", "pytorch-cpu", "wheels", "cpu"]
    assert indexes[0]["config"] == {"type": "mirror", "mirror_url": PYPI}
    assert indexes[1]["config"]["mirror_url"] == TORCH["pytorch-cpu"]
    assert indexes[2]["config"] == {"type": "stage", "bases": [], "volatile": False, "acl_upload": ["root"]}
    assert indexes[3]["config"] == {"type": "stage", "bases": ["root/wheels", "root/pytorch-cpu", "root/pypi"],
                                    "volatile": False, "acl_upload": []}


@pytest.mark.parametrize("upstream,bases,why", [
    ({}, {"cpu": ["root/pytorch-cpu"]}, r"pip_mirror_edition_bases.cpu: root/pytorch-cpu is not an index"),
    ({}, {"tpu": ["root/pypi"]}, r"unknown edition 'tpu'"),
    ({}, {"cpu": []}, r"pip_mirror_edition_bases.cpu must be a non-empty list"),
    ({"Wheels": "https://x/simple/"}, {}, r"'Wheels' is not a usable index name"),
    ({"cpu": "https://x/simple/"}, {}, r"'cpu' is not a usable index name"),
    ({"extra": "ftp://x/simple/"}, {}, r"pip_mirror_upstream_indexes.extra: 'ftp://x/simple/' is not an http"),
    ([], {}, r"pip_mirror_upstream_indexes must be a mapping"),
])
def test_index_layout_errors_name_the_variable(upstream, bases, why):
    with pytest.raises(AnsibleFilterError, match=why):
        dl_devpi_indexes(PYPI, upstream, bases)


def test_pypi_url_checked():
    with pytest.raises(AnsibleFilterError, match="pip_mirror_pypi_url"):
        dl_devpi_indexes("pypi.org", {}, {})


def test_index_url_per_edition():
    assert dl_pip_index_url("http://10.0.0.5:3141/", "rocm") == "http://10.0.0.5:3141/root/rocm/+simple/"
    assert dl_pip_index_url("", "cpu") == ""
    with pytest.raises(AnsibleFilterError, match="unknown edition 'gpu'"):
        dl_pip_index_url("http://10.0.0.5:3141", "gpu")


@pytest.mark.parametrize("url,hostport", [
    ("http://10.0.0.5:3141/root/cpu/+simple/", "10.0.0.5:3141"),
    ("http://mirror.example.org/", "mirror.example.org"),
    ("http://[fd00::5]:3141/", "[fd00::5]:3141"),
])
def test_url_hostport(url, hostport):
    assert dl_url_hostport(url) == hostport


def test_index_differences_only_changed_keys():
    current = {"type": "stage", "bases": ["root/pypi"], "volatile": False, "acl_upload": ["root"]}
    assert differences(current, {"type": "stage", "bases": ["root/pypi"]}) == {}
    assert differences(current, {"bases": ["root/wheels", "root/pypi"], "volatile": False}) == {
        "bases": ["root/wheels", "root/pypi"]}


def test_http_url():
    assert dl_http_url("10.0.0.5", 3141) == "http://10.0.0.5:3141"
    assert dl_http_url("fd00::5", "3141") == "http://[fd00::5]:3141"
    assert dl_http_url("10.0.0.5", 3141, True) == "https://10.0.0.5:3141"
    assert dl_http_url("fd00::5", 3141, "True") == "https://[fd00::5]:3141"
    assert dl_http_url("10.0.0.5", 3141, "false") == "http://10.0.0.5:3141"
    with pytest.raises(AnsibleFilterError, match="no address"):
        dl_http_url("", 3141)


def test_filters_exported():
    assert set(FilterModule().filters()) == {"dl_devpi_indexes", "dl_http_url", "dl_pip_index_url", "dl_url_hostport"}
