"""Unit tests of filter_plugins/dl_benchmark.py: pair rounds, bus bandwidth, classes, slow hosts, skew."""

from itertools import combinations

import pytest
from ansible.errors import AnsibleFilterError

from dl_benchmark import (
    FilterModule,
    dl_bench_busbw,
    dl_bench_hardware_class,
    dl_bench_link_outliers,
    dl_bench_outliers,
    dl_bench_pair_rounds,
    dl_bench_version_skew,
)


def names(n):
    return [f"h{i}" for i in range(n)]


# --- pair rounds ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n", range(2, 10))
def test_rounds_are_disjoint_and_cover_every_pair_once(n):
    hosts = names(n)
    plan = dl_bench_pair_rounds(hosts)
    assert len(plan["rounds"]) == (n - 1 if n % 2 == 0 else n)
    seen = []
    for rnd in plan["rounds"]:
        in_round = [h for pair in rnd for h in pair]
        assert len(in_round) == len(set(in_round)), f"a host twice in one round: {rnd}"
        assert len(rnd) == n // 2
        seen += [tuple(pair) for pair in rnd]
    assert sorted(seen) == sorted(combinations(hosts, 2))  # each pair once, a before b in host order
    assert plan["pairs_total"] == plan["pairs_measured"] == n * (n - 1) // 2
    assert plan["sampled"] is False and plan["hosts_unmeasured"] == []


def test_rounds_keep_the_inventory_order_inside_a_pair():
    plan = dl_bench_pair_rounds(["zeta", "alpha", "mid"])
    assert sorted(map(tuple, (p for r in plan["rounds"] for p in r))) == sorted(
        [("zeta", "alpha"), ("zeta", "mid"), ("alpha", "mid")])


def test_one_host_has_no_pairs():
    assert dl_bench_pair_rounds(["only"]) == {"rounds": [], "pairs_total": 0, "pairs_measured": 0,
                                              "sampled": False, "hosts_unmeasured": ["only"]}


def test_max_pairs_at_or_above_the_total_measures_everything():
    plan = dl_bench_pair_rounds(names(5), max_pairs=10)
    assert plan["sampled"] is False and plan["pairs_measured"] == 10


@pytest.mark.parametrize("n,max_pairs", [(6, 3), (7, 4), (9, 5), (12, 20), (20, 10), (30, 40), (9, 35)])
def test_sample_is_bounded_disjoint_and_covers_every_host(n, max_pairs):
    hosts = names(n)
    plan = dl_bench_pair_rounds(hosts, max_pairs=max_pairs, seed=7)
    pairs = [tuple(p) for r in plan["rounds"] for p in r]
    assert plan["sampled"] is True and plan["pairs_total"] == n * (n - 1) // 2
    assert plan["pairs_measured"] == len(pairs) == max_pairs
    assert len(set(pairs)) == len(pairs) and set(pairs) <= set(combinations(hosts, 2))
    for rnd in plan["rounds"]:
        in_round = [h for pair in rnd for h in pair]
        assert len(in_round) == len(set(in_round))
    assert {h for p in pairs for h in p} == set(hosts) and plan["hosts_unmeasured"] == []
    assert len(plan["rounds"]) <= (n - 1 if n % 2 == 0 else n)  # never more rounds than the whole matrix
    most = max(sum(h in p for p in pairs) for h in hosts)
    assert len(plan["rounds"]) <= 2 * most - 1  # first-fit bound: a sparse sample takes few rounds


def test_sparse_sample_of_a_large_group_takes_few_rounds():
    plan = dl_bench_pair_rounds(names(40), max_pairs=40, seed=0)
    assert plan["pairs_measured"] == 40 and len(plan["rounds"]) <= 5 and plan["hosts_unmeasured"] == []


def test_sample_too_small_to_cover_every_host_says_who_is_left_out():
    plan = dl_bench_pair_rounds(names(10), max_pairs=2, seed=1)
    measured = {h for r in plan["rounds"] for p in r for h in p}
    assert plan["pairs_measured"] == 2 and len(measured) == 4  # two disjoint pairs from the matching
    assert sorted(plan["hosts_unmeasured"]) == sorted(set(names(10)) - measured)


def test_sample_is_deterministic_per_seed():
    first = dl_bench_pair_rounds(names(12), max_pairs=15, seed=3)
    assert dl_bench_pair_rounds(names(12), max_pairs=15, seed=3) == first
    assert dl_bench_pair_rounds(names(12), max_pairs=15, seed=4) != first


@pytest.mark.parametrize("hosts,max_pairs,why", [
    ([], 0, "the host group is empty"),
    ("h1,h2", 0, "hosts must be a list of host names"),
    (["a", "a", "b"], 0, "hosts are listed twice: a"),
    (["a", ""], 0, "every host must be a non-empty name"),
    (["a", "b"], -1, "max_pairs must be at least 0"),
    (["a", "b"], "many", "max_pairs must be an integer"),
])
def test_pair_rounds_bad_input(hosts, max_pairs, why):
    with pytest.raises(AnsibleFilterError, match=f"^dl_bench_pair_rounds: {why}"):
        dl_bench_pair_rounds(hosts, max_pairs=max_pairs)


# --- bus bandwidth -------------------------------------------------------------------------------

@pytest.mark.parametrize("n,factor", [(1, 0.0), (2, 1.0), (3, 4 / 3), (4, 1.5), (8, 1.75), (16, 1.875)])
def test_busbw_is_algbw_times_2_n_minus_1_over_n(n, factor):
    assert dl_bench_busbw(10.0, n) == pytest.approx(10.0 * factor)


@pytest.mark.parametrize("algbw,world,why", [
    (-1, 2, "algbw must be at least 0"),
    (None, 2, "algbw must be a number"),
    (1.0, 0, "world_size must be at least 1"),
    (1.0, 2.5, "world_size must be an integer"),
])
def test_busbw_bad_input(algbw, world, why):
    with pytest.raises(AnsibleFilterError, match=f"^dl_bench_busbw: {why}"):
        dl_bench_busbw(algbw, world)


# --- hardware class ------------------------------------------------------------------------------

@pytest.mark.parametrize("facts,expected", [
    ({"edition": "nvidia", "gpu_model": "NVIDIA H200", "gpu_count": 8, "cpu_variant": "amx",
      "physical_cores": 96}, {"class": "gpu:NVIDIA H200", "device_type": "nvidia"}),
    ({"edition": "rocm", "gpu_model": "Instinct MI210", "gpu_count": 1, "cpu_variant": "avx2",
      "physical_cores": 16}, {"class": "gpu:Instinct MI210", "device_type": "rocm"}),
    ({"edition": "cpu", "gpu_model": None, "gpu_count": 0, "cpu_variant": "avx512", "physical_cores": 8},
     {"class": "cpu:avx512:8c", "device_type": "cpu"}),
])
def test_hardware_class(facts, expected):
    assert dl_bench_hardware_class(facts) == expected


@pytest.mark.parametrize("facts,why", [
    ("gpu", "host_facts must be a mapping"),
    ({"edition": "tpu"}, "edition must be one of nvidia, rocm, cpu"),
    ({"edition": "cpu", "cpu_variant": "", "physical_cores": 4}, "a CPU host needs its cpu_variant"),
    ({"edition": "cpu", "cpu_variant": "avx2", "physical_cores": 0}, "physical_cores must be at least 1"),
    ({"edition": "nvidia", "gpu_model": "A100", "gpu_count": 0}, "a host of edition nvidia must have at least one"),
    ({"edition": "rocm", "gpu_model": None, "gpu_count": 1}, "a host of edition rocm needs its gpu_model"),
])
def test_hardware_class_bad_input(facts, why):
    with pytest.raises(AnsibleFilterError, match=f"^dl_bench_hardware_class: {why}"):
        dl_bench_hardware_class(facts)


# --- slow hosts ----------------------------------------------------------------------------------

def row(host, ips, cls="cpu:avx512:8c", device_type="cpu", config="pytorch/train/fp32/cpu"):
    return {"host": host, "class": cls, "device_type": device_type, "config": config, "images_per_second": ips}


def test_host_more_than_share_below_its_class_median_is_named():
    result = dl_bench_outliers([row("a", 100), row("b", 98), row("c", 102), row("d", 70)], share=0.2)
    assert [o["host"] for o in result["outliers"]] == ["d"]
    slow = result["outliers"][0]
    assert slow["median"] == 99 and slow["basis"] == "class cpu:avx512:8c (4 hosts)"
    assert slow["share_below"] == pytest.approx(1 - 70 / 99, abs=1e-4)
    assert slow["config"] == "pytorch/train/fp32/cpu" and slow["images_per_second"] == 70
    assert "20%" in result["rule"] and "fewer than 3" in result["rule"]
    assert result["notes"] == []


def test_host_just_within_the_share_is_not_named():
    result = dl_bench_outliers([row("a", 100), row("b", 100), row("c", 81)], share=0.2)
    assert result["outliers"] == [] and len(result["checked"]) == 3


def test_configurations_are_compared_separately():
    rows = [row(h, 100) for h in "abc"] + [row(h, 30, config="pytorch/infer/fp32/cpu") for h in "ab"] + [
        row("c", 10, config="pytorch/infer/fp32/cpu")]
    assert [(o["host"], o["config"]) for o in dl_bench_outliers(rows)["outliers"]] == [
        ("c", "pytorch/infer/fp32/cpu")]


def test_small_class_falls_back_to_all_hosts_of_the_device_type_and_says_so():
    rows = [row("a", 100), row("b", 100), row("c", 100),
            row("big1", 200, cls="cpu:avx512:16c"), row("big2", 100, cls="cpu:avx512:16c")]
    result = dl_bench_outliers(rows, share=0.2)
    # big2 is not slow within its own class of two, but the rule compares it with all five CPU hosts.
    assert [o["host"] for o in result["outliers"]] == []
    by_host = {c["host"]: c for c in result["checked"]}
    assert by_host["big1"]["basis"] == "all cpu hosts (5), class cpu:avx512:16c has fewer than 3"
    assert by_host["big1"]["median"] == 100
    assert by_host["a"]["basis"] == "class cpu:avx512:8c (3 hosts)"
    assert any("cpu:avx512:16c has 2 host(s)" in n and "fewer than 3" in n for n in result["notes"])

    rows[-1] = row("big2", 50, cls="cpu:avx512:16c")
    slow = dl_bench_outliers(rows, share=0.2)["outliers"]
    assert [(o["host"], o["basis"]) for o in slow] == [
        ("big2", "all cpu hosts (5), class cpu:avx512:16c has fewer than 3")]


def test_gpu_hosts_never_compared_with_cpu_hosts():
    rows = [row("cpu1", 10), row("cpu2", 10), row("cpu3", 10),
            row("gpu1", 300, cls="gpu:A100", device_type="nvidia", config="pytorch/train/fp32/cuda/1gpu"),
            row("gpu2", 100, cls="gpu:H100", device_type="nvidia", config="pytorch/train/fp32/cuda/1gpu")]
    result = dl_bench_outliers(rows, share=0.2)
    # Two NVIDIA hosts of different models, one each: the fallback median of the two (200) names gpu2.
    assert [o["host"] for o in result["outliers"]] == ["gpu2"]
    assert result["outliers"][0]["basis"] == "all nvidia hosts (2), class gpu:H100 has fewer than 3"


def test_host_alone_in_its_device_type_is_never_named_and_the_result_says_so():
    rows = [row("a", 100), row("b", 100), row("c", 100),
            row("mi", 1, cls="gpu:MI210", device_type="rocm", config="pytorch/train/fp32/cuda/1gpu")]
    result = dl_bench_outliers(rows)
    assert result["outliers"] == []
    assert "mi" not in {c["host"] for c in result["checked"]}
    assert any(n.startswith("mi is the only rocm host") and "never named" in n for n in result["notes"])


def test_failed_rows_are_left_out():
    result = dl_bench_outliers([row("a", 100), row("b", 100), row("c", None), row("d", 100)])
    assert result["outliers"] == [] and {c["host"] for c in result["checked"]} == {"a", "b", "d"}


@pytest.mark.parametrize("rows,kwargs,why", [
    ("rows", {}, "rows must be a list of mappings"),
    ([{"host": "a"}], {}, "row 0 lacks class, device_type, config, images_per_second"),
    ([row("a", 1), row("a", 2)], {}, "host a has two rows for configuration pytorch/train/fp32/cpu"),
    ([row("a", -3)], {}, r"images_per_second of a \(pytorch/train/fp32/cpu\) must be at least 0"),
    ([row("a", "fast")], {}, "images_per_second of a .* must be a number"),
    ([row("a", 1)], {"share": 20}, "share must lie between 0 and 1"),
    ([row("a", 1)], {"min_class_size": 0}, "min_class_size must be at least 1"),
])
def test_outliers_bad_input(rows, kwargs, why):
    with pytest.raises(AnsibleFilterError, match=f"^dl_bench_outliers: {why}"):
        dl_bench_outliers(rows, **kwargs)


# --- link outliers -------------------------------------------------------------------------------

def link(a, b, gbit, latency=0.1):
    return {"a": a, "b": b, "gbit_per_s": gbit, "latency_ms": latency}


def test_host_with_slow_links_is_named():
    hosts = ["a", "b", "c", "d"]
    links = [link(x, y, 1.0 if "d" in (x, y) else 10.0) for x, y in combinations(hosts, 2)]
    result = dl_bench_link_outliers(links, share=0.5)
    assert result["hosts"] == {"a": 10.0, "b": 10.0, "c": 10.0, "d": 1.0}
    assert result["median"] == 10.0
    assert result["outliers"] == [{"host": "d", "gbit_per_s": 1.0, "median": 10.0, "links": 3, "share_below": 0.9}]
    assert "50%" in result["rule"]


def test_even_links_and_failed_links_name_nobody():
    links = [link("a", "b", 9.0), link("a", "c", 10.0), link("b", "c", None)]
    result = dl_bench_link_outliers(links)
    assert result["outliers"] == [] and result["hosts"] == {"a": 9.5, "b": 9.0, "c": 10.0}
    assert dl_bench_link_outliers([]) == {"rule": dl_bench_link_outliers([])["rule"], "hosts": {}, "median": None,
                                          "outliers": []}


@pytest.mark.parametrize("links,why", [
    ({"a": "b"}, "links must be a list"),
    ([{"a": "x"}], "link 0 must be a mapping with a, b and gbit_per_s"),
    ([link("x", "x", 1.0)], "link 0 joins x to itself"),
    ([link("x", "y", "fast")], "gbit_per_s of link x-y must be a number"),
])
def test_link_outliers_bad_input(links, why):
    with pytest.raises(AnsibleFilterError, match=f"^dl_bench_link_outliers: {why}"):
        dl_bench_link_outliers(links)


# --- version skew --------------------------------------------------------------------------------

def test_version_skew_lists_only_differing_present_values():
    versions = {
        "gpu1": {"torch": "2.5.1+cu124", "nvidia_driver": "550.54", "cuda": "12.4", "python": "3.11.2"},
        "gpu2": {"torch": "2.5.1+cu124", "nvidia_driver": "535.104", "cuda": "12.4", "python": "3.11.2"},
        "cpu1": {"torch": "2.4.0+cpu", "nvidia_driver": None, "python": "3.11.2"},
        "cpu2": {"torch": "2.4.0+cpu", "python": "3.11.2", "tensorflow": {"version": "2.17", "keras": "3.5"}},
    }
    assert dl_bench_version_skew(versions) == {
        "nvidia_driver": {"535.104": ["gpu2"], "550.54": ["gpu1"]},
        "torch": {"2.4.0+cpu": ["cpu1", "cpu2"], "2.5.1+cu124": ["gpu1", "gpu2"]},
    }


def test_version_skew_flattens_nested_versions():
    skew = dl_bench_version_skew({"a": {"tensorflow": {"version": "2.17"}}, "b": {"tensorflow": {"version": "2.16"}}})
    assert skew == {"tensorflow.version": {"2.17": ["a"], "2.16": ["b"]}}


def test_version_skew_leaves_out_bookkeeping_and_ignored_keys():
    versions = {"a": {"kind": "versions", "ok": True, "host": "a.lab", "torch": "2.5", "cpu_model": "Xeon"},
                "b": {"kind": "versions", "ok": True, "host": "b.lab", "torch": "2.5", "cpu_model": "EPYC"}}
    assert dl_bench_version_skew(versions, ignore=["kind", "ok", "host", "cpu_model"]) == {}
    assert list(dl_bench_version_skew(versions)) == ["cpu_model"]  # host, kind and ok are ignored by default


def test_no_skew():
    assert dl_bench_version_skew({"a": {"torch": "2.5"}, "b": {"torch": "2.5"}, "c": None}) == {}


@pytest.mark.parametrize("versions,why", [
    (["a"], "versions must be a mapping of host to its versions"),
    ({"a": "2.5"}, "the versions of a must be a mapping"),
])
def test_version_skew_bad_input(versions, why):
    with pytest.raises(AnsibleFilterError, match=f"^dl_bench_version_skew: {why}"):
        dl_bench_version_skew(versions)
    with pytest.raises(AnsibleFilterError, match="^dl_bench_version_skew: ignore must be a list of keys"):
        dl_bench_version_skew({}, ignore="host")


def test_filters_are_registered():
    assert set(FilterModule().filters()) == {
        "dl_bench_pair_rounds", "dl_bench_busbw", "dl_bench_hardware_class", "dl_bench_outliers",
        "dl_bench_link_outliers", "dl_bench_version_skew"}
