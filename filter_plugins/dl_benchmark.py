"""Benchmark filters of dlcluster: the network matrix's rounds, bus bandwidth, hardware classes,
slow hosts and version skew (playbooks/benchmark.yml, scripts/benchmark_report.py).

Pure functions, unit-tested in tests/unit/test_dl_benchmark.py.
"""

from __future__ import annotations

import json
import math
import random
import statistics

from ansible.errors import AnsibleFilterError
from ansible_collections.dlcluster.cluster.plugins.plugin_utils.dl_hosts import EDITIONS


def _fail(name: str, sentence: str) -> None:
    raise AnsibleFilterError(f"{name}: {sentence}")


def _number(name: str, value, what: str, minimum: float | None = None, maximum: float | None = None,
            integer: bool = False):
    """`value` as a number (int when `integer`), or an error naming the filter and `what`."""
    if isinstance(value, bool) or value is None:
        _fail(name, f"{what} must be a number, got {value!r}")
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        _fail(name, f"{what} must be {'an integer' if integer else 'a number'}, got {value!r}")
    if integer and isinstance(value, float) and value != number:
        _fail(name, f"{what} must be an integer, got {value!r}")
    if not integer and not math.isfinite(number):
        _fail(name, f"{what} must be a finite number, got {value!r}")
    if minimum is not None and number < minimum:
        _fail(name, f"{what} must be at least {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        _fail(name, f"{what} must be at most {maximum}, got {value!r}")
    return number


def _share(name: str, share) -> float:
    share = _number(name, share, "share")
    if not 0 < share < 1:
        _fail(name, f"share must lie between 0 and 1 (0.2 = 20 % below the median), got {share!r}")
    return share


# ---------------------------------------------------------------------------------------------
# The network matrix: rounds of disjoint pairs
# ---------------------------------------------------------------------------------------------

def _circle_rounds(hosts: list) -> list:
    """Round-robin (circle method): host 0 stays, the others rotate; None is the bye of odd N."""
    ring = list(hosts) + ([None] if len(hosts) % 2 else [])
    n = len(ring)
    rounds = []
    for _ in range(n - 1):
        pairs = [(ring[i], ring[n - 1 - i]) for i in range(n // 2)]
        if any(None not in pair for pair in pairs):
            rounds.append([pair for pair in pairs if None not in pair])
        ring = [ring[0], ring[-1]] + ring[1:-1]
    return rounds


def dl_bench_pair_rounds(hosts, max_pairs=0, seed=0) -> dict:
    """The host pairs of a network matrix as rounds of disjoint pairs, each round run in parallel.

    The circle method of round-robin tournaments: every pair exactly once, in N-1 rounds for an
    even number of hosts and N rounds (one host idle in each) for an odd number, so the matrix
    takes time proportional to N, not N². Each pair is [a, b] with a before b in `hosts`.

    With `max_pairs` > 0 and more pairs than that, a sample of `max_pairs` pairs is measured:
    first a random perfect matching (a host left over by an odd count is paired once more), so
    every host is in at least one pair when `max_pairs` >= ceil(N/2), then random other pairs;
    the sample is scheduled in rounds of disjoint pairs, never more rounds than the whole matrix
    and, for a sparse sample, far fewer (first-fit packing in round-robin order). The
    random choices come from `seed`, so the same inventory and seed give the same sample.

    Returns {"rounds": [[[a, b], ...], ...], "pairs_total", "pairs_measured", "sampled",
    "hosts_unmeasured": [hosts in no measured pair]}.
    """
    name = "dl_bench_pair_rounds"
    if not isinstance(hosts, (list, tuple)):
        _fail(name, f"hosts must be a list of host names, got {type(hosts).__name__}")
    if not hosts:
        _fail(name, "the host group is empty; the network matrix needs at least one host")
    for host in hosts:
        if not isinstance(host, str) or not host.strip():
            _fail(name, f"every host must be a non-empty name, got {host!r}")
    duplicates = sorted({h for h in hosts if list(hosts).count(h) > 1})
    if duplicates:
        _fail(name, f"hosts are listed twice: {', '.join(duplicates)}")
    max_pairs = _number(name, max_pairs, "max_pairs", minimum=0, integer=True)
    seed = _number(name, seed, "seed", integer=True)

    hosts = list(hosts)
    index = {host: i for i, host in enumerate(hosts)}

    def norm(pair):
        a, b = sorted(pair, key=index.__getitem__)
        return (a, b)

    full = [[norm(pair) for pair in rnd] for rnd in _circle_rounds(hosts)]
    total = len(hosts) * (len(hosts) - 1) // 2
    if not max_pairs or total <= max_pairs:
        return {"rounds": [[list(p) for p in rnd] for rnd in full], "pairs_total": total,
                "pairs_measured": total, "sampled": False, "hosts_unmeasured": [] if total else list(hosts)}

    rng = random.Random(seed)
    order = list(hosts)
    rng.shuffle(order)
    cover = [norm((order[i], order[i + 1])) for i in range(0, len(order) - 1, 2)]
    if len(order) % 2:
        cover.append(norm((order[-1], rng.choice(order[:-1]))))
    chosen = cover[:max_pairs]
    if len(chosen) < max_pairs:
        taken = set(chosen)
        rest = [pair for rnd in full for pair in rnd if pair not in taken]
        rng.shuffle(rest)
        chosen += rest[:max_pairs - len(chosen)]

    # Two schedules of the sample, the shorter kept: the round-robin rounds with the pairs left out
    # dropped (never more rounds than the full matrix), and first-fit packing (at most 2d-1 rounds
    # for a sample where no host is in more than d pairs, far fewer than N for a sparse sample).
    taken = set(chosen)
    kept = [[pair for pair in rnd if pair in taken] for rnd in full]
    kept = [rnd for rnd in kept if rnd]
    packed: list[list[tuple]] = []
    busy: list[set] = []
    for pair in (p for rnd in kept for p in rnd):
        for rnd, used in zip(packed, busy):
            if not used & set(pair):
                rnd.append(pair)
                used.update(pair)
                break
        else:
            packed.append([pair])
            busy.append(set(pair))
    rounds = packed if len(packed) < len(kept) else kept
    measured = {host for pair in chosen for host in pair}
    return {"rounds": [[list(p) for p in rnd] for rnd in rounds], "pairs_total": total,
            "pairs_measured": len(chosen), "sampled": True,
            "hosts_unmeasured": [host for host in hosts if host not in measured]}


# ---------------------------------------------------------------------------------------------
# All-reduce bus bandwidth
# ---------------------------------------------------------------------------------------------

def dl_bench_busbw(algbw, world_size) -> float:
    """All-reduce bus bandwidth from algorithm bandwidth: busbw = algbw * 2*(n-1)/n.

    As nccl-tests define it (NVIDIA/nccl-tests, doc/PERFORMANCE.md, "Bus bandwidth" /
    "AllReduce": B = S/t * (2*(n-1)/n) = algbw * (2*(n-1)/n)): an all-reduce moves each element
    2(n-1) times over n links, so busbw can be compared with a link's peak bandwidth whatever the
    number of ranks n. With one rank nothing crosses a link and busbw is 0. The unit is that of
    `algbw` (GB/s in the report).
    """
    name = "dl_bench_busbw"
    algbw = _number(name, algbw, "algbw", minimum=0)
    n = _number(name, world_size, "world_size", minimum=1, integer=True)
    return algbw * 2 * (n - 1) / n


# ---------------------------------------------------------------------------------------------
# Hardware classes
# ---------------------------------------------------------------------------------------------

def dl_bench_hardware_class(host_facts) -> dict:
    """The hardware class of a host, the group whose images/s it is compared with.

    `host_facts` is {edition, gpu_model, gpu_count, cpu_variant, physical_cores}. A GPU host
    (edition nvidia or rocm) is in class "gpu:<gpu_model>"; a CPU host (edition cpu) in
    "cpu:<cpu_variant>:<physical_cores>c". Returns {"class": key, "device_type": edition}.
    """
    name = "dl_bench_hardware_class"
    if not isinstance(host_facts, dict):
        _fail(name, f"host_facts must be a mapping with edition, gpu_model, gpu_count, cpu_variant and "
                    f"physical_cores, got {type(host_facts).__name__}")
    edition = host_facts.get("edition")
    if edition not in EDITIONS:
        _fail(name, f"edition must be one of {', '.join(EDITIONS)}, got {edition!r}")
    if edition == "cpu":
        variant = host_facts.get("cpu_variant")
        if not isinstance(variant, str) or not variant.strip():
            _fail(name, f"a CPU host needs its cpu_variant (e.g. avx512), got {variant!r}")
        cores = _number(name, host_facts.get("physical_cores"), "physical_cores", minimum=1, integer=True)
        return {"class": f"cpu:{variant.strip()}:{cores}c", "device_type": "cpu"}
    count = _number(name, host_facts.get("gpu_count"), "gpu_count", minimum=0, integer=True)
    if count < 1:
        _fail(name, f"a host of edition {edition} must have at least one GPU, got gpu_count {count}")
    model = host_facts.get("gpu_model")
    if not isinstance(model, str) or not model.strip():
        _fail(name, f"a host of edition {edition} needs its gpu_model, got {model!r}")
    return {"class": f"gpu:{model.strip()}", "device_type": edition}


# ---------------------------------------------------------------------------------------------
# Slow hosts
# ---------------------------------------------------------------------------------------------

OUTLIER_KEYS = ("host", "class", "device_type", "config", "images_per_second")


def dl_bench_outliers(rows, share=0.2, min_class_size=3) -> dict:
    """Hosts whose images/s is more than `share` below the median of their hardware class.

    `rows` is [{host, class, device_type, config, images_per_second}], one per host and
    configuration (config such as "pytorch/train/fp32/cpu"); a row whose images_per_second is
    None (a failed run) is left out here: the report shows it with its error. Per configuration,
    a host is compared with the median (itself included) of the hosts of its class; a class with
    fewer than `min_class_size` hosts is compared with the median of all hosts of the same device
    type instead, and the result says so; a host alone in its device type is never an outlier.

    Returns {"rule": sentence, "outliers": [{host, config, images_per_second, median, basis,
    share_below}], "checked": [the same for every compared row, with "outlier"],
    "notes": [sentences for fallbacks and hosts with nothing to compare with]}.
    """
    name = "dl_bench_outliers"
    if not isinstance(rows, (list, tuple)):
        _fail(name, f"rows must be a list of mappings, got {type(rows).__name__}")
    share = _share(name, share)
    min_size = _number(name, min_class_size, "min_class_size", minimum=1, integer=True)
    measured = []
    seen = set()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            _fail(name, f"row {i} must be a mapping, got {type(row).__name__}")
        missing = [key for key in OUTLIER_KEYS if key not in row]
        if missing:
            _fail(name, f"row {i} lacks {', '.join(missing)}")
        if (row["host"], row["config"]) in seen:
            _fail(name, f"host {row['host']} has two rows for configuration {row['config']}")
        seen.add((row["host"], row["config"]))
        if row["images_per_second"] is None:
            continue
        ips = _number(name, row["images_per_second"], f"images_per_second of {row['host']} ({row['config']})",
                      minimum=0)
        measured.append({**row, "images_per_second": ips})

    rule = (f"Per configuration, a host is slow when its images/s is more than {share:.0%} below the median "
            f"of the hosts of its hardware class (same GPU model, or same CPU variant and physical core count), "
            f"itself included; a class with fewer than {min_size} hosts is compared with the median of all hosts "
            f"of the same device type (nvidia, rocm or cpu) instead; a host alone in its device type has nothing "
            f"to be compared with and is never named.")
    checked, notes = [], []
    noted = set()
    for row in measured:
        same_class = [r["images_per_second"] for r in measured
                      if r["config"] == row["config"] and r["class"] == row["class"]]
        if len(same_class) >= min_size:
            pool = same_class
            basis = f"class {row['class']} ({len(pool)} hosts)"
        else:
            pool = [r["images_per_second"] for r in measured
                    if r["config"] == row["config"] and r["device_type"] == row["device_type"]]
            if len(pool) < 2:
                key = ("alone", row["host"], row["config"])
                if key not in noted:
                    noted.add(key)
                    notes.append(f"{row['host']} is the only {row['device_type']} host with a figure for "
                                 f"{row['config']}: nothing to compare it with, so it is never named as slow.")
                continue
            basis = (f"all {row['device_type']} hosts ({len(pool)}), class {row['class']} has fewer than "
                     f"{min_size}")
            key = ("fallback", row["class"], row["config"])
            if key not in noted:
                noted.add(key)
                notes.append(f"Class {row['class']} has {len(same_class)} host(s) for {row['config']}, fewer than "
                             f"{min_size}: compared with the median of all {row['device_type']} hosts "
                             f"({len(pool)}).")
        median = statistics.median(pool)
        below = 1 - row["images_per_second"] / median if median > 0 else 0.0
        checked.append({"host": row["host"], "config": row["config"],
                        "images_per_second": row["images_per_second"], "median": median, "basis": basis,
                        "share_below": round(below, 4), "outlier": below > share})
    outliers = [{k: v for k, v in c.items() if k != "outlier"} for c in checked if c["outlier"]]
    return {"rule": rule, "outliers": outliers, "checked": checked, "notes": notes}


def dl_bench_link_outliers(links, share=0.5) -> dict:
    """Hosts whose links are far slower than their peers'.

    `links` is [{a, b, gbit_per_s, latency_ms}]; a link whose gbit_per_s is None (a failed
    measurement) is left out. Each host's figure is the median bandwidth of its measured links;
    a host whose figure is more than `share` below the median of all hosts' figures is named.

    Returns {"rule", "hosts": {host: median Gbit/s}, "median": cluster median or None,
    "outliers": [{host, gbit_per_s, median, links, share_below}]}.
    """
    name = "dl_bench_link_outliers"
    if not isinstance(links, (list, tuple)):
        _fail(name, f"links must be a list of mappings, got {type(links).__name__}")
    share = _share(name, share)
    per_host: dict[str, list] = {}
    for i, link in enumerate(links):
        if not isinstance(link, dict) or "a" not in link or "b" not in link or "gbit_per_s" not in link:
            _fail(name, f"link {i} must be a mapping with a, b and gbit_per_s, got {link!r}")
        if link["a"] == link["b"]:
            _fail(name, f"link {i} joins {link['a']} to itself")
        if link["gbit_per_s"] is None:
            continue
        bw = _number(name, link["gbit_per_s"], f"gbit_per_s of link {link['a']}-{link['b']}", minimum=0)
        for host in (link["a"], link["b"]):
            per_host.setdefault(host, []).append(bw)
    rule = (f"A host is named when the median bandwidth of its measured links is more than {share:.0%} below "
            f"the median of all hosts' medians.")
    medians = {host: statistics.median(values) for host, values in sorted(per_host.items())}
    if not medians:
        return {"rule": rule, "hosts": {}, "median": None, "outliers": []}
    cluster = statistics.median(medians.values())
    outliers = []
    for host, value in medians.items():
        below = 1 - value / cluster if cluster > 0 else 0.0
        if below > share:
            outliers.append({"host": host, "gbit_per_s": value, "median": cluster, "links": len(per_host[host]),
                             "share_below": round(below, 4)})
    return {"rule": rule, "hosts": medians, "median": cluster, "outliers": outliers}


# ---------------------------------------------------------------------------------------------
# Version skew
# ---------------------------------------------------------------------------------------------

def flatten_versions(versions: dict, prefix: str = "") -> dict:
    """{"torch": {"version": "2.5", "cuda": "12.4"}} -> {"torch.version": "2.5", "torch.cuda": "12.4"};
    lists become their JSON text, None stays None."""
    flat = {}
    for key, value in versions.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_versions(value, f"{path}."))
        elif isinstance(value, (list, tuple)):
            flat[path] = json.dumps(list(value))
        else:
            flat[path] = value
    return flat


# Keys of dlbench.py's `versions` object that are bookkeeping, not versions.
VERSION_BOOKKEEPING = ("kind", "ok", "error", "host")


def dl_bench_version_skew(versions, ignore=VERSION_BOOKKEEPING) -> dict:
    """Keys on which hosts report different versions: {key: {value: [hosts]}}.

    `versions` is {host: {torch: .., nvidia_driver: .., ...}} (dlbench.py's `versions` objects);
    nested mappings are flattened to dotted keys ("torch.cuda"); keys in `ignore` (by default
    dlbench's kind, ok, error and host) are not compared. Only differing values that are present
    are skew: a host where a key is missing or None (a CPU host has no nvidia_driver) does not
    count, so a key is listed when at least two different non-null values are reported. Values
    are compared as text; hosts are listed in name order.
    """
    name = "dl_bench_version_skew"
    if not isinstance(versions, dict):
        _fail(name, f"versions must be a mapping of host to its versions, got {type(versions).__name__}")
    if isinstance(ignore, str) or not isinstance(ignore, (list, tuple, set)):
        _fail(name, f"ignore must be a list of keys, got {ignore!r}")
    seen: dict[str, dict[str, list]] = {}
    for host in sorted(versions):
        entry = versions[host]
        if entry is None:
            continue
        if not isinstance(entry, dict):
            _fail(name, f"the versions of {host} must be a mapping, got {type(entry).__name__}")
        for key, value in flatten_versions(entry).items():
            if key in ignore or value is None or value == "":
                continue
            seen.setdefault(key, {}).setdefault(str(value), []).append(host)
    return {key: values for key, values in sorted(seen.items()) if len(values) > 1}


class FilterModule:
    """dlcluster benchmark filters."""

    def filters(self):
        return {
            "dl_bench_pair_rounds": dl_bench_pair_rounds,
            "dl_bench_busbw": dl_bench_busbw,
            "dl_bench_hardware_class": dl_bench_hardware_class,
            "dl_bench_outliers": dl_bench_outliers,
            "dl_bench_link_outliers": dl_bench_link_outliers,
            "dl_bench_version_skew": dl_bench_version_skew,
        }
