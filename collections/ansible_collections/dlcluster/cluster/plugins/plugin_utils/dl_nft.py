"""The fingerprint of a live nftables table: shared by the firewall filters and the converged-host check.

Controller-side code (plugin_utils), imported as
``ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_nft``.
"""

from __future__ import annotations

import hashlib
import json

from ansible.errors import AnsibleFilterError


def _filled_sets(node, names: set) -> set:
    """Names of the sets that rule statements fill at runtime (set/map add or update, meters), found in `node`."""
    if isinstance(node, list):
        for item in node:
            _filled_sets(item, names)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in ("set", "map") and isinstance(value, dict) and "op" in value:
                names.add(str(value.get(key, "")).lstrip("@"))
            elif key == "meter" and isinstance(value, dict):
                names.add(str(value.get("name", "")))
            _filled_sets(value, names)
    return names


def _stable(node):
    """`node` without handles, counter values and element expiry times, which change without any edit."""
    if isinstance(node, list):
        return [_stable(item) for item in node]
    if isinstance(node, dict):
        return {key: (None if key == "counter" else _stable(value)) for key, value in node.items()
                if key not in ("handle", "expires")}
    return node


def dl_firewall_fingerprint(listing) -> str:
    """The sha256 of a table as ``nft -j -s list table ...`` prints it, leaving out what packets change.

    Two listings of the same loaded ruleset give the same fingerprint, and any
    rule, chain, policy or static set element edited by hand gives another.
    Left out: the metainfo (nft's version), handles (a reload renumbers them),
    counter values, element expiry times, and the elements of dynamic sets:
    those flagged dynamic and those a rule fills (``update @ssh_rate_v4 ...``,
    meters), as the SSH rate limit does for every source address.
    """
    try:
        objects = json.loads(listing)["nftables"]
    except (TypeError, ValueError, KeyError) as error:
        raise AnsibleFilterError("dl_firewall_fingerprint: expected the JSON of `nft -j -s list table ...`, "
                                 f"got {str(listing)[:80]!r} ({error})") from error
    if not isinstance(objects, list):
        raise AnsibleFilterError("dl_firewall_fingerprint: the listing's nftables key is not a list")
    objects = [o for o in objects if isinstance(o, dict) and "metainfo" not in o]
    dynamic = _filled_sets([o["rule"] for o in objects if "rule" in o], set())
    kept = []
    for item in objects:
        for kind in ("set", "map", "meter"):
            body = item.get(kind)
            if isinstance(body, dict) and (body.get("name") in dynamic or "dynamic" in body.get("flags", [])):
                item = {kind: {key: value for key, value in body.items() if key != "elem"}}
        kept.append(_stable(item))
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
