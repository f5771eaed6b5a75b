"""Filters of the converged role: may a host skip this site.yml run? (roles/converged/README.md)

A host skips every role of a run when two things hold:

- its inputs are the ones its last complete run had: the repository's code, the run's tags, every inventory host's
  variables (its declared address among them) and groups, and the host's own platform facts
  (``dl_converged_cluster`` and ``dl_converged_inputs`` make one sha256 of each part, so that a changed input is
  named);
- nothing that run managed has changed since: each file, unit, user, group, sysctl key, mount point and nftables
  table the run's tasks managed, the installed packages and the PCI devices (``dl_converged_drift`` compares the
  record with what ``dl_host_state`` reads now), and the record is younger than ``converged_max_age_hours``.

site.yml leaves the hosts out only when every host of the run holds (roles/converged/README.md says why).

Pure functions, unit-tested in tests/unit/test_dl_converged.py.
"""

from __future__ import annotations

import hashlib
import json

from ansible.errors import AnsibleFilterError
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts import is_mapping, require_mapping
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_nft import dl_firewall_fingerprint

# The record's layout; a record of another version is not trusted.
RECORD_VERSION = 1
# The group of the hosts that skip the run.
GROUP = "dl_converged"
# Up to this many hosts the record keeps one digest per host (a change names the host); above, one for all (a
# record on each of a thousand hosts would otherwise hold a thousand digests).
HOSTS_NAMED = 64
ALL_HOSTS = "all hosts"
# The connection variables that are inputs; every other ansible_* variable is a fact or Ansible's own.
CONNECTION_VARS = ("ansible_host", "ansible_port", "ansible_user")
# Ansible's magic variables and the facts this repository sets during a run: not inputs.
NOT_INPUTS = frozenset((
    "groups", "group_names", "hostvars", "inventory_hostname", "inventory_hostname_short", "inventory_dir",
    "inventory_file", "playbook_dir", "play_hosts", "omit", "role_names", "role_name", "role_path", "role_uuid",
    "environment", "module_setup", "gather_subset", "discovered_interpreter_python", "dl_converged_probes",
))
# converged_*: the fast path's own settings (a run with converged_enabled=false records for the next run).
# molecule_*: the variables molecule's inventory gives every host (its files, read from its environment): no role
# reads them, and a run of site.yml outside molecule would otherwise never share the record of molecule's runs.
NOT_INPUT_PREFIXES = ("ansible_", "_", "dl_rollout_would_change_", "dl_converged_", "converged_", "molecule_")
# The host's own facts that the roles' output depends on (its platform and addresses).
PLATFORM_FACTS = ("distribution", "distribution_release", "distribution_version", "architecture", "kernel",
                  "processor_vcpus", "memtotal_mb", "hostname", "fqdn", "virtualization_type")
STATE_KINDS = ("files", "units", "users", "unix_groups", "sysctls", "mounts", "nft_tables")
KIND_NAMES = {"files": "", "units": "unit ", "users": "user ", "unix_groups": "group ", "sysctls": "sysctl ",
              "mounts": "mount point ", "nft_tables": "nftables table "}


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _input_vars(host) -> dict:
    """A host's variables that are inputs (inventory, group and extra vars), each as its rendered value (JSON)."""
    chosen = {}
    # Facts (gathered, returned by modules such as getent, or set_fact cacheable) are the host's state, not input.
    facts = set(host.get("ansible_facts") or {}) if is_mapping(host.get("ansible_facts") or {}) else set()
    for key in sorted(host.keys()):
        key = str(key)
        if key in NOT_INPUTS or key in facts or (key.startswith(NOT_INPUT_PREFIXES) and key not in CONNECTION_VARS):
            continue
        try:
            # Rendered and serialised here: a value that fails (a lookup of a file not there yet) fails now.
            chosen[key] = json.dumps(host[key], sort_keys=True, default=str)
        except Exception as error:  # pylint: disable=broad-except  # a variable that cannot render here
            chosen[key] = f"<{type(error).__name__}>"
    return chosen


def _run_tags(settings) -> list:
    """The run's tags as an input: its --tags, and those of its --skip-tags that some task carries (``code_tags``,
    query dl_code_digest 'tags'; all of them when it is not given). Skipping a tag no task has leaves the run's
    work as it was, so molecule's runs (--skip-tags molecule-notest,notest) share a record with plain runs."""
    skip = sorted(str(tag) for tag in settings.get("skip_tags") or [])
    if settings.get("code_tags") is not None:
        used = {str(tag) for tag in settings["code_tags"]}
        skip = [tag for tag in skip if tag in used]
    return [sorted(str(tag) for tag in settings.get("run_tags") or []), skip]


def dl_converged_cluster(hostvars, groups, settings=None) -> dict:
    """What every host of the run shares as input, as one sha256 per part.

    settings: ``{code, run_tags, skip_tags, code_tags}``: the code digest (lookup dl_code_digest), the run's tags
    and the tags the code uses (``_run_tags``). Parts: ``code``, ``tags``, ``groups`` (every group's members) and
    ``hosts``: per host of ``groups['all']`` its input variables (``_input_vars``, ansible_host among them; above
    HOSTS_NAMED hosts, one digest for all). A variable changed on one host (a mirror's port, a site's subnets) is
    thus an input of every host that may read it.
    """
    require_mapping(hostvars, "hostvars", "dl_converged_cluster")
    require_mapping(groups, "groups", "dl_converged_cluster")
    settings = settings or {}
    require_mapping(settings, "settings", "dl_converged_cluster")
    hosts = {}
    for name in sorted(str(name) for name in groups.get("all", [])):
        host = hostvars[name]
        # Its declared address (ansible_host, dl_address) is among its variables. Not the one its facts give: the
        # facts may be cached on one run and not yet gathered on the next, and a host whose own address changed
        # has other platform facts, so it runs its roles, and every host with it.
        hosts[name] = _digest({"vars": _input_vars(host)})
    if len(hosts) > HOSTS_NAMED:
        hosts = {ALL_HOSTS: _digest(hosts)}
    return {
        "code": str(settings.get("code", "")),
        "tags": _digest(_run_tags(settings)),
        "groups": _digest({str(group): sorted(str(name) for name in members) for group, members in groups.items()
                           if str(group) != GROUP}),
        "hosts": hosts,
    }


def dl_converged_inputs(facts, cluster) -> dict:
    """The inputs of one host: the cluster's parts (dl_converged_cluster) and its ``platform``: the sha256 of the
    host's platform facts (``ansible_facts``)."""
    if not is_mapping(facts):
        raise AnsibleFilterError(f"dl_converged_inputs: expected the host's ansible_facts, got {type(facts).__name__}")
    if not is_mapping(cluster):
        raise AnsibleFilterError("dl_converged_inputs: cluster must be dl_converged_cluster's mapping")
    default_ipv4 = facts.get("default_ipv4") if is_mapping(facts.get("default_ipv4")) else {}
    platform = {name: facts.get(name) for name in PLATFORM_FACTS}
    platform["default_ipv4"] = default_ipv4.get("address")
    platform["all_ipv4_addresses"] = sorted(str(address) for address in facts.get("all_ipv4_addresses") or [])
    return dict(cluster, platform=_digest(platform))


def _changed_inputs(then, now) -> list[str]:
    """The names of the inputs that differ: code, tags, groups, `variables of <host>` (or hosts), platform."""
    if not is_mapping(then):
        return ["all"]
    names = [part for part in ("code", "tags", "groups") if then.get(part) != now.get(part)]
    before = then.get("hosts") if is_mapping(then.get("hosts")) else {}
    after = now.get("hosts") if is_mapping(now.get("hosts")) else {}
    if set(before) != set(after):
        names.append("the inventory's hosts")
    names += [f"variables of {host}" for host in sorted(set(before) & set(after)) if before[host] != after[host]]
    if then.get("platform") != now.get("platform"):
        names.append("platform facts")
    return names


def dl_converged_state(result) -> dict:
    """What dl_host_state read, as it is recorded and compared: each nftables listing becomes its fingerprint."""
    if not is_mapping(result) or not is_mapping(result.get("state")):
        raise AnsibleFilterError("dl_converged_state: expected the registered result of dl_host_state")
    state = dict(result["state"])
    state["nft_tables"] = {table: listing if listing == "absent" else dl_firewall_fingerprint(listing)
                           for table, listing in (state.get("nft_tables") or {}).items()}
    return {key: state.get(key) for key in (*STATE_KINDS, "packages", "pci")}


def dl_converged_record(inputs, read) -> dict:
    """The record a complete run leaves on a host: the run's ``inputs``, and from dl_host_state's result ``read``
    what it read (``probes``), their ``state`` and when (``recorded_at``, the host's clock)."""
    if not is_mapping(inputs) or not is_mapping(read) or not is_mapping(read.get("probes")):
        raise AnsibleFilterError("dl_converged_record: expected the run's inputs and dl_host_state's result")
    return {"version": RECORD_VERSION, "inputs": dict(inputs), "probes": dict(read["probes"]),
            "state": dl_converged_state(read), "recorded_at": int(read.get("now") or 0)}


def _changed(kind, name, then, now) -> str:
    label = f"{KIND_NAMES[kind]}{name}"
    if now == "absent":
        return f"{label} is missing"
    if kind == "units":
        return f"{label} is {now} (was {then})"
    return f"{label} changed"


def dl_converged_drift(read, inputs, max_age_hours=24) -> list[str]:
    """Why a host cannot skip the run (one short reason each); [] when its record still holds.

    read: dl_host_state's result (its ``stamp`` is the record, None when the host has none; ``now`` the host's
    clock); inputs: dl_converged_inputs of this run; max_age_hours: a record older than this does not hold (0: no
    limit), so that what changes with time alone (a certificate due for renewal) is done at least that often.
    """
    if is_mapping(read) and read.get("unreachable"):
        return ["it could not be reached"]
    if not is_mapping(read) or "stamp" not in read:
        raise AnsibleFilterError("dl_converged_drift: expected the registered result of dl_host_state")
    record = read["stamp"]
    if not is_mapping(record):
        return ["no record of a complete run"]
    if record.get("version") != RECORD_VERSION:
        return [f"its record has version {record.get('version')!r}, not {RECORD_VERSION}"]
    if not is_mapping(inputs):
        raise AnsibleFilterError("dl_converged_drift: inputs must be dl_converged_inputs's mapping")
    age = (int(read.get("now") or 0) - int(record.get("recorded_at") or 0)) / 3600
    if max_age_hours and age > float(max_age_hours):
        return [f"its record is {age:.0f} h old (converged_max_age_hours: {max_age_hours})"]
    changed = _changed_inputs(record.get("inputs"), inputs)
    if changed:
        shown = changed[:5] + ([f"{len(changed) - 5} more"] if len(changed) > 5 else [])
        return [f"its inputs changed ({', '.join(shown)})"]
    then = record.get("state") if is_mapping(record.get("state")) else {}
    state = dl_converged_state(read)
    reasons = []
    for kind in STATE_KINDS:
        recorded = then.get(kind) if is_mapping(then.get(kind)) else {}
        current = state.get(kind) if is_mapping(state.get(kind)) else {}
        for name in sorted(recorded):
            if current.get(name) != recorded[name]:
                reasons.append(_changed(kind, name, recorded[name], current.get(name)))
    if then.get("packages") != state.get("packages"):
        reasons.append("the installed packages changed")
    if then.get("pci") != state.get("pci"):
        reasons.append("the PCI devices changed")
    return reasons


def dl_converged_direct(fleet, hostvars, names) -> list[str]:
    """The hosts among `names` to read through the dl_host_state module: those dl_fleet_state did not read (its
    registered result ``fleet``), and those whose facts are not cached (the comparison needs their platform
    facts; the module's play gathers them)."""
    require_mapping(hostvars, "hostvars", "dl_converged_direct")
    states = fleet.get("states") if is_mapping(fleet) and is_mapping(fleet.get("states")) else {}
    direct = []
    for name in names or []:
        facts = hostvars[name].get("ansible_facts") if is_mapping(hostvars[name]) else None
        if name not in states or not is_mapping(facts) or facts.get("distribution") is None:
            direct.append(str(name))
    return direct


def dl_converged_compare(hostvars, names, cluster, states, settings=None) -> dict:
    """Per host of `names`, in order: ``{inputs, drift}``, its inputs in this run (dl_converged_inputs of its
    cached facts) and why it cannot skip the run (dl_converged_drift; [] when its record holds).

    states: dl_fleet_state's ``states``; a host not there was read by the module (its ``__converged_read``).
    settings: ``enabled`` (false: every host runs, ``converged_enabled is false``), ``check_mode`` (every host
    runs) and ``max_age_hours``.
    """
    require_mapping(hostvars, "hostvars", "dl_converged_compare")
    states = states if is_mapping(states) else {}
    settings = settings or {}
    require_mapping(settings, "settings", "dl_converged_compare")
    checked = {}
    for name in names or []:
        host = hostvars[name]
        facts = host.get("ansible_facts") if is_mapping(host.get("ansible_facts")) else {}
        inputs = dl_converged_inputs(facts, cluster)
        read = states.get(name) if name in states else host.get("__converged_read")
        if not settings.get("enabled", True):
            drift = ["converged_enabled is false"]
        elif settings.get("check_mode"):
            drift = ["check mode runs every task"]
        elif not is_mapping(read):
            drift = ["its state was not read"]
        else:
            drift = dl_converged_drift(read, inputs, settings.get("max_age_hours", 24))
        checked[str(name)] = {"inputs": inputs, "drift": drift}
    return checked


def dl_converged_held(checked) -> list[str]:
    """The hosts whose record holds: those of dl_converged_compare's result with no drift, in order."""
    require_mapping(checked, "checked", "dl_converged_held")
    return [str(name) for name, entry in checked.items() if is_mapping(entry) and entry.get("drift") == []]


def dl_unconverged(pattern, groups) -> str:
    """A play's host pattern without the hosts that skip this run (the group dl_converged, when there is one)."""
    require_mapping(groups, "groups", "dl_unconverged")
    if not isinstance(pattern, str) or not pattern:
        raise AnsibleFilterError(f"dl_unconverged: expected a host pattern, got {pattern!r}")
    return f"{pattern}:!{GROUP}" if groups.get(GROUP) else pattern


class FilterModule:
    """dlcluster converged-host filters."""

    def filters(self):
        return {
            "dl_converged_cluster": dl_converged_cluster,
            "dl_converged_compare": dl_converged_compare,
            "dl_converged_direct": dl_converged_direct,
            "dl_converged_drift": dl_converged_drift,
            "dl_converged_held": dl_converged_held,
            "dl_converged_inputs": dl_converged_inputs,
            "dl_converged_record": dl_converged_record,
            "dl_converged_state": dl_converged_state,
            "dl_unconverged": dl_unconverged,
        }
