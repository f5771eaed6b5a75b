"""Unit tests of filter_plugins/dl_envs.py: what each environment installs, its spec id, the local
fact, and the integrity-test results and report."""

import json

import pytest
from ansible.errors import AnsibleFilterError

from dl_envs import (
    KERAS_BACKENDS,
    FilterModule,
    dl_env_fact,
    dl_env_spec_id,
    dl_env_warmers,
    dl_env_test_failures,
    dl_env_test_result,
    dl_env_test_rows,
    dl_env_test_table,
    dl_python_envs,
)

# The role's defaults (roles/python_envs/defaults/main.yml).
FRAMEWORKS = {
    "pytorch": {"cpu": ["torch"], "nvidia": ["torch"], "rocm": ["torch"]},
    "tensorflow": {"cpu": ["tensorflow-cpu"], "nvidia": ["tensorflow[and-cuda]"], "rocm": ["tensorflow-rocm"]},
    "keras": {"cpu": ["keras"], "nvidia": ["keras"], "rocm": ["keras"]},
    "jax": {"cpu": ["jax"], "nvidia": ["jax[cuda12]"], "rocm": ["jax"]},
}
SCIENTIFIC = ["numpy", "scipy", "pandas", "matplotlib", "nltk", "scikit-learn", "jupyter", "ipykernel",
              "tensorboard", "mlxtend"]
# The cpu role's cpu_variant_unsupported for the baseline and generic variants.
NO_AVX = ["tensorflow", "tensorflow-cpu"]


def envs(spec, edition="cpu", variant_packages=None, unsupported=None):
    return dl_python_envs(spec, edition, FRAMEWORKS, SCIENTIFIC, variant_packages, unsupported)


def one(env, **kwargs):
    (result,) = envs([env], **kwargs)
    return result


# ---------------------------------------------------------------- dl_python_envs -----


def test_default_environment_of_the_seed():
    result = envs([{"name": "py3", "frameworks": ["pytorch", "tensorflow", "keras"]}])
    assert result == [{
        "name": "py3",
        "frameworks": ["pytorch", "tensorflow", "keras"],
        "requirements": SCIENTIFIC + ["torch", "tensorflow-cpu", "keras"],
        "imports": ["torch", "tensorflow", "keras"],
        "auto_activate": False,
        "keras_backend": "tensorflow",
        "state": "present",
    }]


def test_scientific_stack_first_then_frameworks_then_extra_packages():
    env = one({"name": "lab", "frameworks": ["jax"], "packages": ["mlflow==3.1.0", "rich"]})
    assert env["requirements"] == SCIENTIFIC + ["jax", "mlflow==3.1.0", "rich"]
    assert env["imports"] == ["jax"]


def test_environment_without_frameworks_gets_the_scientific_stack_only():
    env = one({"name": "plain"})
    assert env["frameworks"] == []
    assert env["requirements"] == SCIENTIFIC
    assert env["imports"] == []
    assert env["keras_backend"] == ""


def test_requirements_are_deduplicated_keeping_the_first_position():
    env = one({"name": "dup", "frameworks": ["pytorch"], "packages": ["numpy", "torch", "rich", "rich"]})
    assert env["requirements"] == SCIENTIFIC + ["torch", "rich"]


def test_empty_packages_and_no_scientific_stack():
    result = dl_python_envs([{"name": "bare", "frameworks": ["pytorch"], "packages": None}], "cpu",
                            FRAMEWORKS, None)
    assert result[0]["requirements"] == ["torch"]


def test_empty_list_gives_no_environments():
    assert envs([]) == []


def test_the_input_is_not_modified():
    spec = [{"name": "py3", "frameworks": ["pytorch"], "packages": ["rich"]}]
    before = json.dumps(spec)
    result = envs(spec)
    assert json.dumps(spec) == before
    result[0]["frameworks"].append("jax")
    assert spec[0]["frameworks"] == ["pytorch"]


@pytest.mark.parametrize("edition,expected", [
    ("cpu", ["torch", "tensorflow-cpu", "keras", "jax"]),
    ("nvidia", ["torch", "tensorflow[and-cuda]", "keras", "jax[cuda12]"]),
    ("rocm", ["torch", "tensorflow-rocm", "keras", "jax"]),
])
def test_each_edition_gets_its_own_builds(edition, expected):
    env = one({"name": "all", "frameworks": ["pytorch", "tensorflow", "keras", "jax"]}, edition=edition)
    assert env["requirements"] == SCIENTIFIC + expected
    # Import names do not depend on the edition (extras and -cpu/-rocm suffixes are not import names).
    assert env["imports"] == ["torch", "tensorflow", "keras", "jax"]


def test_framework_without_a_build_for_the_edition_is_refused():
    packages = {**FRAMEWORKS, "jax": {"cpu": ["jax"]}}
    with pytest.raises(AnsibleFilterError, match=r"python_envs_envs\[0\]: framework 'jax' has no build for "
                                                 r"the rocm edition in python_envs_framework_packages"):
        dl_python_envs([{"name": "j", "frameworks": ["jax"]}], "rocm", packages, SCIENTIFIC)


def test_unknown_edition_is_refused():
    with pytest.raises(AnsibleFilterError, match="no build for the tpu edition"):
        envs([{"name": "py3", "frameworks": ["pytorch"]}], edition="tpu")


def test_variant_packages_only_in_environments_with_pytorch():
    result = envs([{"name": "torch", "frameworks": ["pytorch", "keras"]},
                   {"name": "tf", "frameworks": ["tensorflow", "keras"]},
                   {"name": "jax", "frameworks": ["jax"]}],
                  variant_packages=["intel-extension-for-pytorch"])
    by_name = {env["name"]: env["requirements"] for env in result}
    assert by_name["torch"] == SCIENTIFIC + ["torch", "intel-extension-for-pytorch", "keras"]
    assert "intel-extension-for-pytorch" not in by_name["tf"]
    assert "intel-extension-for-pytorch" not in by_name["jax"]


def test_variant_packages_none_or_empty_add_nothing():
    assert one({"name": "t", "frameworks": ["pytorch"]}, variant_packages=None)["requirements"] == \
        one({"name": "t", "frameworks": ["pytorch"]}, variant_packages=[])["requirements"] == SCIENTIFIC + ["torch"]


@pytest.mark.parametrize("frameworks,blocked", [
    (["tensorflow"], "tensorflow, tensorflow-cpu"),
    (["pytorch", "keras", "tensorflow"], "tensorflow, tensorflow-cpu"),
])
def test_framework_the_cpu_cannot_run_is_refused_naming_the_variable(frameworks, blocked):
    with pytest.raises(AnsibleFilterError) as error:
        envs([{"name": "ok", "frameworks": ["pytorch"]}, {"name": "py3", "frameworks": frameworks}],
             unsupported=NO_AVX)
    message = str(error.value)
    assert "python_envs_envs[1]: tensorflow cannot run on this host's CPU variant" in message
    assert f"need instructions the CPU lacks: {blocked}" in message
    assert "remove it from the environment" in message


def test_unsupported_package_name_is_matched_without_extras():
    # The nvidia build is tensorflow[and-cuda]; an unsupported "tensorflow" still matches it.
    with pytest.raises(AnsibleFilterError, match=r"need instructions the CPU lacks: tensorflow\)"):
        envs([{"name": "py3", "frameworks": ["tensorflow"]}], edition="nvidia", unsupported=["tensorflow"])


def test_unsupported_list_does_not_touch_other_frameworks():
    env = one({"name": "py3", "frameworks": ["pytorch", "keras"]}, unsupported=NO_AVX)
    assert env["requirements"] == SCIENTIFIC + ["torch", "keras"]
    assert env["keras_backend"] == "torch"


def test_the_variable_named_in_errors_can_be_chosen():
    with pytest.raises(AnsibleFilterError, match=r"^jupyter_envs\[0\]: tensorflow cannot run"):
        dl_python_envs([{"name": "py3", "frameworks": ["tensorflow"]}], "cpu", FRAMEWORKS, SCIENTIFIC, [],
                       NO_AVX, variable="jupyter_envs")


def test_keras_without_a_backend_is_refused():
    with pytest.raises(AnsibleFilterError, match=r"python_envs_envs\[0\]: keras \(Keras 3\) needs a backend in "
                                                 r"the same environment: add tensorflow, pytorch or jax"):
        envs([{"name": "k", "frameworks": ["keras"]}])


@pytest.mark.parametrize("frameworks,backend", [
    (["keras", "tensorflow"], "tensorflow"),
    (["keras", "pytorch"], "torch"),
    (["keras", "jax"], "jax"),
    # Several backends: tensorflow, then torch, then jax, whatever the list's order.
    (["jax", "pytorch", "keras", "tensorflow"], "tensorflow"),
    (["jax", "keras", "pytorch"], "torch"),
    (["pytorch", "jax", "keras"], "torch"),
])
def test_keras_backend_choice_order(frameworks, backend):
    env = one({"name": "k", "frameworks": frameworks})
    assert env["keras_backend"] == backend
    assert backend in KERAS_BACKENDS


def test_keras_backend_is_set_for_backends_without_keras_too():
    assert one({"name": "t", "frameworks": ["pytorch"]})["keras_backend"] == "torch"


@pytest.mark.parametrize("spec,why", [
    ([{"name": "py3"}, {"name": "py3", "frameworks": ["pytorch"]}],
     r"python_envs_envs: environment 'py3' is listed twice"),
    ([{"name": "py3"}, {"name": "py3", "state": "absent"}], r"environment 'py3' is listed twice"),
])
def test_duplicate_names_are_refused(spec, why):
    with pytest.raises(AnsibleFilterError, match=why):
        envs(spec)


@pytest.mark.parametrize("name", ["", ".hidden", "-dash", "a/b", "../up", "with space", "x" * 33, "ümlaut",
                                  "py3\n", None])
def test_bad_names_are_refused(name):
    env = {"frameworks": ["pytorch"]} if name is None else {"name": name, "frameworks": ["pytorch"]}
    with pytest.raises(AnsibleFilterError, match=r"python_envs_envs\[0\]\.name .* is not a usable directory name"):
        envs([env])


def test_empty_name_is_not_the_text_none():
    # `name:` with no value in YAML is None, not an environment called "None".
    with pytest.raises(AnsibleFilterError, match=r"\.name '' is not a usable directory name"):
        envs([{"name": None}])


@pytest.mark.parametrize("name", ["py3", "P", "tf-2.21", "torch_cpu", "0", "x" * 32])
def test_good_names_are_kept(name):
    assert one({"name": name})["name"] == name


def test_numeric_name_becomes_a_string():
    assert one({"name": 3})["name"] == "3"


def test_unknown_keys_are_refused_listing_the_known_ones():
    with pytest.raises(AnsibleFilterError) as error:
        envs([{"name": "py3", "framework": ["pytorch"], "python": "3.12"}])
    assert str(error.value) == ("python_envs_envs[0]: unknown key(s) framework, python "
                                "(known: auto_activate, frameworks, name, packages, state)")


def test_unknown_framework_is_refused_listing_the_known_ones():
    with pytest.raises(AnsibleFilterError, match=r"python_envs_envs\[0\]: unknown framework 'mxnet' "
                                                 r"\(known: jax, keras, pytorch, tensorflow\)"):
        envs([{"name": "py3", "frameworks": ["pytorch", "mxnet"]}])


@pytest.mark.parametrize("spec,why", [
    ("py3", r"python_envs_envs must be a list of environments"),
    ({"name": "py3"}, r"python_envs_envs must be a list of environments"),
    (["py3"], r"python_envs_envs\[0\] must be a mapping with at least a name"),
    ([{"name": "py3", "frameworks": "pytorch"}], r"python_envs_envs\[0\]\.frameworks must be a list"),
    ([{"name": "py3", "packages": "mlflow"}], r"python_envs_envs\[0\]\.packages must be a list"),
    ([{"name": "py3", "state": "latest"}], r"python_envs_envs\[0\]\.state must be present or absent, got 'latest'"),
])
def test_malformed_input_is_refused(spec, why):
    with pytest.raises(AnsibleFilterError, match=why):
        envs(spec)


def test_framework_packages_must_be_a_mapping():
    with pytest.raises(AnsibleFilterError, match="python_envs_framework_packages must map framework"):
        dl_python_envs([{"name": "py3"}], "cpu", ["torch"], SCIENTIFIC)


def test_one_auto_activated_environment():
    result = envs([{"name": "py3", "frameworks": ["pytorch"], "auto_activate": True}, {"name": "other"}])
    assert [env["auto_activate"] for env in result] == [True, False]


def test_more_than_one_auto_activated_environment_is_refused():
    with pytest.raises(AnsibleFilterError, match=r"python_envs_envs: only one environment can be activated in "
                                                 r"\.bashrc, got py3, tf"):
        envs([{"name": "py3", "auto_activate": True}, {"name": "tf", "auto_activate": True},
              {"name": "jax", "auto_activate": False}])


def test_an_absent_environment_does_not_count_as_auto_activated():
    result = envs([{"name": "old", "auto_activate": True, "state": "absent"},
                   {"name": "py3", "auto_activate": True}])
    assert [(env["name"], env["auto_activate"], env["state"]) for env in result] == [
        ("old", True, "absent"), ("py3", True, "present")]


def test_state_absent_is_kept_and_still_validated():
    env = one({"name": "old", "frameworks": ["pytorch"], "state": "absent"})
    assert env["state"] == "absent"
    assert env["requirements"] == SCIENTIFIC + ["torch"]
    with pytest.raises(AnsibleFilterError, match="unknown framework 'caffe'"):
        envs([{"name": "old", "frameworks": ["caffe"], "state": "absent"}])


def test_state_defaults_to_present():
    assert one({"name": "py3"})["state"] == "present"


# ---------------------------------------------------------------- dl_env_spec_id -----

CONSTRAINTS = "pip==26.3\nnumpy==2.4.6\ntorch==2.13.0"
BASE = {"name": "py3", "requirements": ["numpy", "torch"]}


def spec_id(env=None, constraints=CONSTRAINTS, python="3.11.2", index="http://10.0.0.5:3141/root/cpu/+simple/"):
    return dl_env_spec_id(env or BASE, constraints, python, index)


def test_spec_id_is_short_hex_and_stable():
    first = spec_id()
    assert len(first) == 12
    int(first, 16)
    assert first == spec_id() == spec_id(dict(BASE))


def test_spec_id_ignores_the_order_of_requirements():
    assert spec_id({"name": "py3", "requirements": ["torch", "numpy"]}) == spec_id()


def test_spec_id_ignores_what_does_not_change_the_contents():
    other = {**BASE, "name": "other", "auto_activate": True, "frameworks": ["pytorch"], "keras_backend": "torch"}
    assert spec_id(other) == spec_id()


def test_spec_id_ignores_whitespace_around_the_constraints():
    assert spec_id(constraints=f"\n{CONSTRAINTS}\n\n") == spec_id()


@pytest.mark.parametrize("change", [
    {"env": {"name": "py3", "requirements": ["numpy", "torch", "rich"]}},
    {"env": {"name": "py3", "requirements": ["numpy"]}},
    {"constraints": CONSTRAINTS.replace("torch==2.13.0", "torch==2.13.1")},
    {"constraints": CONSTRAINTS + "\nrich==14.0.0"},
    {"python": "3.12.3"},
    {"index": ""},
    {"index": "http://10.0.0.5:3141/root/nvidia/+simple/"},
])
def test_spec_id_changes_with_anything_that_changes_the_contents(change):
    assert spec_id(**change) != spec_id()


@pytest.mark.parametrize("same", [
    {"python": "3.11.9"},                                          # a point release
    {"python": "3.11.4+deb12u1"},
    {"index": "https://mirror.example.net:443/root/cpu/+simple/"},  # the mirror moved
])
def test_spec_id_ignores_point_releases_and_the_mirror_host(same):
    assert spec_id(**same) == spec_id()


def test_spec_id_refuses_a_version_that_is_not_one():
    with pytest.raises(AnsibleFilterError, match="dl_env_spec_id: python_version"):
        spec_id(python="Python 3")


# ---------------------------------------------------------------- dl_env_warmers -----

def test_warmers_one_host_per_distinct_build_in_inventory_order():
    pending = {"head": "py3-aaa", "cpu1": "py3-aaa", "gpu1": "py3-bbb", "cpu2": "", "gpu2": "py3-bbb"}
    assert dl_env_warmers(pending) == ["head", "gpu1"]


def test_warmers_none_when_nothing_builds():
    assert dl_env_warmers({"head": "", "cpu1": ""}) == []


def test_warmers_refuse_a_list():
    with pytest.raises(AnsibleFilterError, match="dl_env_warmers"):
        dl_env_warmers(["head"])


def test_spec_id_default_index_is_empty():
    assert dl_env_spec_id(BASE, CONSTRAINTS, "3.11.2") == spec_id(index="")


def test_spec_id_takes_the_python_version_as_text():
    assert dl_env_spec_id(BASE, CONSTRAINTS, 3.11) == dl_env_spec_id(BASE, CONSTRAINTS, "3.11")


# ---------------------------------------------------------------- dl_env_fact -----


def test_fact_of_an_environment():
    env = one({"name": "py3", "frameworks": ["pytorch", "keras"], "auto_activate": True})
    assert dl_env_fact(env, "/home/ubuntu/workspaces") == {
        "name": "py3", "path": "/home/ubuntu/workspaces/py3", "frameworks": ["pytorch", "keras"],
        "keras_backend": "torch"}


def test_fact_path_without_a_double_slash():
    env = one({"name": "tf"})
    assert dl_env_fact(env, "/home/ubuntu/workspaces/")["path"] == "/home/ubuntu/workspaces/tf"


def test_fact_frameworks_is_a_copy():
    env = one({"name": "py3", "frameworks": ["pytorch"]})
    fact = dl_env_fact(env, "/w")
    fact["frameworks"].append("jax")
    assert env["frameworks"] == ["pytorch"]


# ---------------------------------------------------------------- dl_env_test_result -----

ENV = {"name": "py3", "path": "/home/ubuntu/workspaces/py3", "frameworks": ["pytorch"], "keras_backend": "torch"}
MEASURED = {"framework": "pytorch", "version": "2.13.0+cpu", "device": "cpu", "accuracy": 0.9412,
            "seconds": 12.345, "train_samples": 4000, "test_samples": 1000, "python": "3.11.2"}


def run(framework="pytorch", **result):
    return {"item": [ENV, framework], "changed": False, **result}


def test_result_of_a_passing_test_reads_the_last_json_line():
    stdout = "some warning from a library\n" + json.dumps(MEASURED) + "\n\n"
    row = dl_env_test_result(run(rc=0, stdout=stdout, stderr="W0000 a TF log line"), "cpu1")
    assert row == {"host": "cpu1", "env": "py3", "framework": "pytorch", "version": "2.13.0+cpu",
                   "device": "cpu", "accuracy": 0.9412, "seconds": 12.345, "error": ""}


def test_result_with_missing_keys_keeps_them_empty():
    row = dl_env_test_result(run(rc=0, stdout=json.dumps({"accuracy": 0.95})), "head")
    assert (row["accuracy"], row["version"], row["device"], row["seconds"], row["error"]) == (0.95, None, None,
                                                                                              None, "")


def test_result_of_a_non_zero_exit_is_the_last_stderr_line():
    stderr = "Traceback...\n  File x\npytorch mnist test FAILED: RuntimeError: boom\n"
    row = dl_env_test_result(run(rc=1, stdout=json.dumps(MEASURED), stderr=stderr), "cpu1")
    assert row["error"] == "pytorch mnist test FAILED: RuntimeError: boom"
    assert row["accuracy"] is None and row["version"] == "" and row["seconds"] is None


@pytest.mark.parametrize("stdout", ["", "\n \n", "not json", "{\"truncated\": ", "[1, 2]", "0.95",
                                    json.dumps({"framework": "pytorch"})])
def test_result_of_garbage_output_is_an_error(stdout):
    row = dl_env_test_result(run(rc=0, stdout=stdout, stderr="what went wrong"), "cpu2")
    assert row["error"] == "what went wrong"
    assert row["accuracy"] is None


def test_result_without_any_output_says_so():
    row = dl_env_test_result(run(rc=0, stdout="", stderr=""), "cpu2")
    assert row["error"] == "no output"


def test_result_of_an_async_timeout_is_ansibles_message():
    # What Ansible registers when an async task outlives its time (no rc, no stdout).
    msg = "async task did not complete within the requested time - 900s"
    row = dl_env_test_result(run(failed=True, msg=msg), "head")
    assert row["error"] == msg
    assert row["env"] == "py3" and row["framework"] == "pytorch"


def test_result_error_is_cut_to_300_characters():
    row = dl_env_test_result(run(rc=1, stderr="x" * 1000), "head")
    assert row["error"] == "x" * 300


def test_result_ignores_an_empty_stderr_and_uses_the_message():
    row = dl_env_test_result(run(rc=2, stdout="", stderr="", msg="non-zero return code"), "head")
    assert row["error"] == "non-zero return code"


# ---------------------------------------------------------------- dl_env_test_failures -----


def row(host="cpu1", env="py3", framework="pytorch", accuracy=0.95, error="", **more):
    return {"host": host, "env": env, "framework": framework, "version": "2.13.0", "device": "cpu",
            "accuracy": accuracy, "seconds": 10.0, "error": error, **more}


def test_failures_empty_when_everything_passes():
    assert dl_env_test_failures([row(), row(framework="keras", accuracy=0.9)], 0.90) == []


def test_failures_of_errors_missing_results_and_low_accuracy():
    rows = [row(), row(host="cpu2", accuracy=None, error="boom"), row(framework="keras", accuracy=None),
            row(framework="tensorflow", accuracy=0.8123)]
    bad = dl_env_test_failures(rows, 0.9)
    assert [item["summary"] for item in bad] == [
        "cpu2 py3/pytorch: boom",
        "cpu1 py3/keras: no result",
        "cpu1 py3/tensorflow: accuracy 0.812 < 0.9",
    ]
    # The rows are returned whole, with the summary added, and the input is left alone.
    assert bad[2]["accuracy"] == 0.8123 and bad[2]["host"] == "cpu1"
    assert "summary" not in rows[3]


def test_failures_accept_a_bar_given_as_text():
    assert len(dl_env_test_failures([row(accuracy=0.85)], "0.90")) == 1
    assert dl_env_test_failures([row(accuracy=0.95)], "0.90") == []


def test_failures_of_an_error_with_an_accuracy():
    assert [item["summary"] for item in dl_env_test_failures([row(accuracy=0.99, error="late")], 0.9)] == [
        "cpu1 py3/pytorch: late"]


# ---------------------------------------------------------------- dl_env_test_table -----

HEADER = ("| host | env | framework | version | device | test accuracy | seconds | result |\n"
          "|---|---|---|---|---|---|---|---|\n")


def test_table_of_no_rows_is_the_header():
    assert dl_env_test_table([], 0.9) == HEADER


def test_table_formats_sorts_and_marks_results():
    rows = [
        row(host="cpu2", framework="tensorflow", accuracy=0.81234, seconds=3.14159),
        row(host="cpu1", framework="pytorch", accuracy=0.9, version="2.13.0+cpu"),
        row(host="cpu1", framework="keras", accuracy=None, error="ModuleNotFoundError: a|b", version="",
            device="", seconds=None),
    ]
    assert dl_env_test_table(rows, 0.9) == HEADER + (
        "| cpu1 | py3 | keras |  |  |  |  | fail: ModuleNotFoundError: a/b |\n"
        "| cpu1 | py3 | pytorch | 2.13.0+cpu | cpu | 0.900 | 10.0 | pass |\n"
        "| cpu2 | py3 | tensorflow | 2.13.0 | cpu | 0.812 | 3.1 | fail |\n"
    )


def test_table_sorts_by_host_then_env_then_framework():
    rows = [row(host="b", env="a"), row(host="a", env="b", framework="a"), row(host="a", env="a", framework="b"),
            row(host="a", env="a", framework="a")]
    lines = dl_env_test_table(rows, 0.5).splitlines()[2:]
    assert [line.split(" | ")[0:3] for line in lines] == [
        ["| a", "a", "a"], ["| a", "a", "b"], ["| a", "b", "a"], ["| b", "a", "pytorch"]]


def test_table_tolerates_missing_version_and_device():
    line = dl_env_test_table([row(version=None, device=None)], 0.9).splitlines()[-1]
    assert line == "| cpu1 | py3 | pytorch |  |  | 0.950 | 10.0 | pass |"


# ---------------------------------------------------------------- FilterModule -----


def test_filter_module_exports_every_filter():
    assert FilterModule().filters() == {
        "dl_python_envs": dl_python_envs, "dl_env_spec_id": dl_env_spec_id, "dl_env_warmers": dl_env_warmers, "dl_env_fact": dl_env_fact,
        "dl_env_test_result": dl_env_test_result, "dl_env_test_rows": dl_env_test_rows,
        "dl_env_test_failures": dl_env_test_failures,
        "dl_env_test_table": dl_env_test_table}


# ---------------------------------------------------------------- dl_env_test_rows -------

def test_rows_keep_host_order_and_name_a_host_without_results():
    ok = {"host": "cpu1", "env": "py3", "framework": "pytorch", "accuracy": 0.93, "error": ""}
    rows = dl_env_test_rows({"head": False, "cpu1": [ok]})
    assert [row["host"] for row in rows] == ["head", "cpu1"]
    assert rows[1] == ok
    assert rows[0]["accuracy"] is None and "no test ran" in rows[0]["error"]
    assert [bad["host"] for bad in dl_env_test_failures(rows, 0.9)] == ["head"]
    assert "| head |  |  |  |  |  |  | fail: no test ran" in dl_env_test_table(rows, 0.9)


def test_rows_of_a_host_whose_environments_have_no_test_are_empty():
    assert dl_env_test_rows({"cpu1": []}) == []
