"""Role docs agree: defaults/main.yml, meta/argument_specs.yml and README.md."""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import role_docs  # noqa: E402


def test_every_role_documents_its_variables():
    problems = []
    for role in sorted((ROOT / "roles").iterdir()):
        problems += role_docs.problems_of(role, write=False)
    assert problems == []


def test_render_marks_required_options():
    table = role_docs.render({"options": {"x_name": {"type": "str", "required": True,
                                                     "description": "A | B"}}})
    assert "| `x_name` | str | required | A \\| B |" in table


def make_role(tmp_path, defaults: str, options: str, name="demo"):
    """A role with defaults/main.yml, meta/argument_specs.yml and a README in step with the spec."""
    role = tmp_path / name
    (role / "defaults").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "defaults" / "main.yml").write_text(defaults)
    (role / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n" + options)
    (role / "README.md").write_text(f"{role_docs.BEGIN}\n{role_docs.END}\n")
    role_docs.problems_of(role, write=True)  # the table itself is not under test here
    return role


def test_templated_default_is_compared_as_text(tmp_path):
    role = make_role(tmp_path, 'demo_port: "{{ dl_port | default(22) }}"\n',
                     '      demo_port:\n        type: int\n        default: "{{ dl_port | default(22) }}"\n')
    assert role_docs.problems_of(role, write=False) == []


def test_templated_default_that_differs_is_reported(tmp_path):
    role = make_role(tmp_path, 'demo_port: "{{ dl_port | default(2222) }}"\n',
                     '      demo_port:\n        type: int\n        default: "{{ dl_port | default(22) }}"\n')
    [problem] = role_docs.problems_of(role, write=False)
    assert problem.startswith("demo: default of demo_port is '{{ dl_port | default(2222) }}'")
    assert "WORDED_DEFAULTS" in problem


def test_templated_default_described_in_words_needs_an_entry(tmp_path):
    role = make_role(tmp_path, 'demo_users: "{{ dl_users | map(attribute=\'name\') | list }}"\n',
                     '      demo_users:\n        type: list\n        default: the names of dl_users\n')
    [problem] = role_docs.problems_of(role, write=False)
    assert "default of demo_users" in problem and "WORDED_DEFAULTS" in problem


def test_worded_default_passes_while_its_template_is_unchanged(tmp_path, monkeypatch):
    template = "{{ dl_users | map(attribute='name') | list }}"
    monkeypatch.setitem(role_docs.WORDED_DEFAULTS, ("demo", "demo_users"), (template, "a filter chain"))
    role = make_role(tmp_path, 'demo_users: "{{ dl_users | map(attribute=\'name\') | list }}"\n',
                     '      demo_users:\n        type: list\n        default: the names of dl_users\n')
    assert role_docs.problems_of(role, write=False) == []
    assert role_docs.default_problems("demo", "demo_users", "{{ dl_users | first }}", "the names of dl_users") == [
        "demo: the default of demo_users in defaults/main.yml changed to '{{ dl_users | first }}'; check that "
        "the spec's words 'the names of dl_users' still describe it, then update its WORDED_DEFAULTS entry"]


def test_worded_default_entry_that_is_no_longer_needed_is_reported(tmp_path, monkeypatch):
    monkeypatch.setitem(role_docs.WORDED_DEFAULTS, ("demo", "demo_users"), ("{{ x }}", "a reason"))
    monkeypatch.setitem(role_docs.WORDED_DEFAULTS, ("demo", "demo_gone"), ("{{ y }}", "a reason"))
    role = make_role(tmp_path, 'demo_users: "{{ x }}"\n',
                     '      demo_users:\n        type: list\n        default: "{{ x }}"\n')
    assert role_docs.problems_of(role, write=False) == [
        "demo: the spec now holds the template of demo_users; remove its WORDED_DEFAULTS entry "
        "in scripts/role_docs.py",
        "demo: WORDED_DEFAULTS in scripts/role_docs.py lists demo_gone, which is no longer in "
        "defaults/main.yml and the argument spec; remove the entry",
    ]


def test_every_worded_default_is_a_template_with_a_reason():
    for (role, name), (template, reason) in role_docs.WORDED_DEFAULTS.items():
        assert (ROOT / "roles" / role).is_dir(), role
        assert "{{" in template, name
        assert len(reason) > 20, name


def test_no_templated_default_goes_unchecked():
    """Every templated default of every role is either the spec's text or a listed exception."""
    checked = worded = 0
    for role in sorted((ROOT / "roles").iterdir()):
        spec_file, defaults_file = role / "meta" / "argument_specs.yml", role / "defaults" / "main.yml"
        if not spec_file.exists() or not defaults_file.exists():
            continue
        specs = yaml.safe_load(spec_file.read_text())["argument_specs"]
        # A role without main (converged) declares its defaults in its other entry points.
        options = {}
        for entry in ([specs["main"]] if "main" in specs else specs.values()):
            options.update(entry.get("options") or {})
        for name, value in (yaml.safe_load(defaults_file.read_text()) or {}).items():
            if isinstance(value, str) and "{{" in value and name in options:
                if (role.name, name) in role_docs.WORDED_DEFAULTS:
                    worded += 1
                else:
                    assert options[name].get("default") == value, f"{role.name}: {name}"
                    checked += 1
    assert worded == len(role_docs.WORDED_DEFAULTS)
    assert checked > 40  # about 45 templated defaults are compared as text today
