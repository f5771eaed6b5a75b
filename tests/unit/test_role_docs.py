"""Role docs agree: defaults/main.yml, meta/argument_specs.yml and README.md."""

import sys
from pathlib import Path

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
