"""pip mirror filters of dlcluster: the devpi index layout and the clients' settings.

Pure functions, unit-tested in tests/unit/test_dl_pip.py.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts import EDITIONS

_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _check_url(url, variable):
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AnsibleFilterError(f"{variable}: {url!r} is not an http(s) URL of a simple index")


def dl_devpi_indexes(pypi_url, upstream, edition_bases) -> list[dict]:
    """The devpi indexes of the mirror, as [{name, config}] under the root user, bases first.

    root/pypi mirrors `pypi_url`; root/<name> mirrors each `upstream` URL (the PyTorch
    wheel indexes); root/wheels is the private wheelhouse; root/<edition> inherits from
    `edition_bases[edition]`, a list of "root/<index>" names that must all exist.
    """
    _check_url(pypi_url, "pip_mirror_pypi_url")
    if not isinstance(upstream, dict):
        raise AnsibleFilterError("pip_mirror_upstream_indexes must be a mapping {name: simple index URL}")
    if not isinstance(edition_bases, dict):
        raise AnsibleFilterError("pip_mirror_edition_bases must be a mapping {edition: [root/<index>, ...]}")
    indexes = [{"name": "pypi", "config": {"type": "mirror", "mirror_url": str(pypi_url)}}]
    for name, url in upstream.items():
        if not _INDEX_NAME.match(str(name)) or name in ("pypi", "wheels", *EDITIONS):
            raise AnsibleFilterError(f"pip_mirror_upstream_indexes: {name!r} is not a usable index name "
                                     f"(lower-case letters, digits, . _ -; not pypi, wheels or an edition)")
        _check_url(url, f"pip_mirror_upstream_indexes.{name}")
        indexes.append({"name": str(name), "config": {"type": "mirror", "mirror_url": str(url)}})
    indexes.append({"name": "wheels",
                    "config": {"type": "stage", "bases": [], "volatile": False, "acl_upload": ["root"]}})
    known = {f"root/{index['name']}" for index in indexes}
    for edition, bases in edition_bases.items():
        if edition not in EDITIONS:
            raise AnsibleFilterError(f"pip_mirror_edition_bases: unknown edition {edition!r} "
                                     f"(editions: {', '.join(EDITIONS)})")
        if not isinstance(bases, list) or not bases:
            raise AnsibleFilterError(f"pip_mirror_edition_bases.{edition} must be a non-empty list of "
                                     "root/<index> names")
        unknown = [base for base in bases if base not in known]
        if unknown:
            raise AnsibleFilterError(f"pip_mirror_edition_bases.{edition}: {', '.join(unknown)} is not an index "
                                     f"of the mirror (known: {', '.join(sorted(known))}); add it to "
                                     "pip_mirror_upstream_indexes or remove it")
        indexes.append({"name": edition, "config": {"type": "stage", "bases": list(bases), "volatile": False,
                                                    "acl_upload": []}})
    return indexes


def dl_pip_index_url(mirror_url, edition) -> str:
    """The simple index URL a node of `edition` installs from ('' without a mirror)."""
    if not mirror_url:
        return ""
    _check_url(mirror_url, "pip_mirror_url")
    if edition not in EDITIONS:
        raise AnsibleFilterError(f"dl_pip_index_url: unknown edition {edition!r} (editions: {', '.join(EDITIONS)})")
    return f"{str(mirror_url).rstrip('/')}/root/{edition}/+simple/"


def dl_url_hostport(url) -> str:
    """'host:port' of a URL (pip's trusted-host, uv's allow-insecure-host)."""
    parts = urlsplit(str(url))
    if not parts.hostname:
        raise AnsibleFilterError(f"dl_url_hostport: {url!r} has no host")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}" if parts.port else host


def dl_http_url(address, port, tls=False) -> str:
    """http://address:port (https:// with ``tls``), with IPv6 addresses in brackets."""
    if not address:
        raise AnsibleFilterError("dl_http_url: no address given")
    host = f"[{address}]" if ":" in str(address) else str(address)
    scheme = "https" if _truthy(tls) else "http"
    return f"{scheme}://{host}:{int(port)}"


def _truthy(value) -> bool:
    """Ansible's idea of a boolean, for values that come from templates as strings."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class FilterModule:
    """dlcluster pip mirror filters."""

    def filters(self):
        return {
            "dl_devpi_indexes": dl_devpi_indexes,
            "dl_http_url": dl_http_url,
            "dl_pip_index_url": dl_pip_index_url,
            "dl_url_hostport": dl_url_hostport,
        }
