from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from autonomic.errors import ConfigError, Problem
from autonomic.yamlio import format_loc, load_yaml, load_yaml_text, problems_from

DOC = """\
# a comment
services:
  - name: api
    probes:
      - url: http://127.0.0.1:8000/health
        interval_s: 5
      - url: http://127.0.0.1:8000/ready
        interval_s: fast
  - name: worker
    labels: {team: core, tier: 2}
"""


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    interval_s: float


class Service(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    probes: list[Probe] = []
    labels: dict[str, str] = {}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    services: list[Service]


def test_line_of_points_at_nested_keys_and_list_items() -> None:
    doc = load_yaml_text(DOC, "a.yaml")
    assert doc.data["services"][0]["probes"][1]["interval_s"] == "fast"
    assert doc.line_of(("services",)) == 2
    assert doc.line_of(("services", 0)) == 3
    assert doc.line_of(("services", 0, "probes", 1, "url")) == 7
    assert doc.line_of(("services", 0, "probes", 1, "interval_s")) == 8
    assert doc.line_of(("services", 1, "labels", "tier")) == 10


def test_line_of_falls_back_to_nearest_existing_parent() -> None:
    doc = load_yaml_text(DOC, "a.yaml")
    assert doc.line_of(("services", 1, "probes")) == 9  # missing field -> the item's line
    assert doc.line_of(("services", 7, "name")) == 2  # no such item -> the list's line
    assert doc.line_of(()) == 2  # the root mapping starts at its first key, after the comment


def test_empty_document_has_no_data_and_no_lines() -> None:
    doc = load_yaml_text("# nothing\n", "e.yaml")
    assert doc.data is None
    assert doc.line_of(("a",)) is None


def test_format_loc_uses_brackets_for_indexes() -> None:
    assert format_loc(("services", 0, "probes", 1, "url")) == "services[0].probes[1].url"
    assert format_loc(("policy", "actions", "config")) == "policy.actions.config"
    assert format_loc(()) == ""


def test_problems_from_gives_file_line_field_and_message_per_error() -> None:
    doc = load_yaml_text(DOC, "a.yaml")
    with pytest.raises(ValidationError) as exc:
        Config.model_validate(doc.data)
    p, q = problems_from(exc.value, doc, model=Config)
    assert (p.file, p.line, p.field) == ("a.yaml", 8, "services[0].probes[1].interval_s")
    assert "valid number" in p.message
    assert str(p).startswith("a.yaml:8: services[0].probes[1].interval_s: ")
    assert (q.line, q.field) == (10, "services[1].labels.tier")  # flow mapping on one line
    assert "valid string" in q.message


def test_problems_from_applies_prefix_to_field_and_line() -> None:
    doc = load_yaml_text("top:\n  inner:\n    name: 3\n    extra: x\n", "p.yaml")
    with pytest.raises(ValidationError) as exc:
        Service.model_validate(doc.data["top"]["inner"])
    problems = sorted(problems_from(exc.value, doc, ("top", "inner"), model=Service), key=lambda p: p.field)
    assert [(p.line, p.field) for p in problems] == [(4, "top.inner.extra"), (3, "top.inner.name")]
    assert problems[0].message == "unknown field 'extra' (known here: labels, name, probes)"  # none near it


def test_a_validators_message_is_given_as_written_without_pydantics_value_error_prefix() -> None:
    """Before: "services: Value error, service names must be unique: web", pydantic's wording
    in front of ours, which people read."""
    class Unique(BaseModel):
        names: list[str]

        @field_validator("names")
        @classmethod
        def _unique(cls, names: list[str]) -> list[str]:
            if len(set(names)) < len(names):
                raise ValueError("names must be unique")
            return names

    doc = load_yaml_text("names: [a, a]\n", "u.yaml")
    with pytest.raises(ValidationError) as exc:
        Unique.model_validate(doc.data)
    assert problems_from(exc.value, doc, model=Unique) == [Problem("u.yaml", 1, "names", "names must be unique")]


def test_missing_field_points_at_its_parent() -> None:
    doc = load_yaml_text("services:\n  - probes: []\n", "m.yaml")
    with pytest.raises(ValidationError) as exc:
        Config.model_validate(doc.data)
    [p] = problems_from(exc.value, doc, model=Config)
    assert p == Problem("m.yaml", 2, "services[0].name", "Field required")


def test_duplicate_keys_are_problems_naming_both_lines() -> None:
    text = "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\na: 2\n"
    with pytest.raises(ConfigError) as exc:
        load_yaml_text(text, "d.yaml")
    problems = sorted(exc.value.problems, key=lambda p: p.line or 0)
    assert [(p.line, p.field) for p in problems] == [(5, "b.c"), (6, "a")]
    assert "duplicate key (first at line 3)" in problems[0].message
    assert "first at line 1" in problems[1].message


def test_bad_yaml_is_a_syntax_problem_with_line() -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml_text("a: 1\nb: [1, 2\nc: 3\n", "bad.yaml")
    [p] = exc.value.problems
    assert p.file == "bad.yaml"
    assert p.line is not None and p.line >= 2
    assert p.message.startswith("YAML syntax: ")


def test_multiple_documents_are_rejected() -> None:
    with pytest.raises(ConfigError, match="YAML syntax"):
        load_yaml_text("a: 1\n---\nb: 2\n", "multi.yaml")


def test_load_yaml_reads_file_and_reports_unreadable_path(tmp_path: Path) -> None:
    f = tmp_path / "ok.yaml"
    f.write_text("x:\n  y: 2\n")
    doc = load_yaml(f)
    assert doc.file == str(f)
    assert doc.data == {"x": {"y": 2}}
    assert doc.line_of(("x", "y")) == 2
    with pytest.raises(ConfigError) as exc:
        load_yaml(tmp_path / "missing.yaml")
    assert exc.value.problems[0].file.endswith("missing.yaml")
    assert "cannot read" in exc.value.problems[0].message


def test_merge_keys_and_anchors_load_as_data() -> None:
    doc = load_yaml_text("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n", "m.yaml")
    assert doc.data["derived"] == {"x": 1, "y": 2}
    assert doc.line_of(("derived", "y")) == 4


def test_a_problem_without_a_file_reads_field_then_message_without_a_leading_colon() -> None:
    assert str(Problem("", None, "--target", "unknown service 'x'")) == "--target: unknown service 'x'"
    assert str(ConfigError("the kubeconfig names no current context")) == "the kubeconfig names no current context"
    assert str(Problem("a.yaml", None, "", "no pattern in file")) == "a.yaml: (top): no pattern in file"


def test_aliases_that_expand_beyond_a_million_nodes_are_refused_quickly() -> None:
    """A "billion laughs" document (each alias nine of the one before) is a ConfigError naming
    the file, found in well under a second, not minutes of indexing and all the memory."""
    import time

    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: \(top\): YAML aliases expand to more than 1,000,000"):
        load_yaml_text("\n".join(lines) + "\n", "bomb.yaml")
    assert time.monotonic() - started < 5
    small = load_yaml_text("base: &b {x: 1}\none: *b\ntwo: *b\n", "ok.yaml")  # ordinary aliases still work
    assert small.data == {"base": {"x": 1}, "one": {"x": 1}, "two": {"x": 1}}


def test_nesting_deeper_than_recursion_allows_is_a_config_error_naming_the_file() -> None:
    with pytest.raises(ConfigError, match=r"deep\.yaml: \(top\): YAML nested too deeply"):
        load_yaml_text("engine: " + "[" * 50_000 + "]" * 50_000 + "\n", "deep.yaml")
