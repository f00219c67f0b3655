"""YAML that remembers where each value was, so errors can point at ``file:line``.

:func:`load_yaml` parses with PyYAML's safe loader and keeps, next to the plain data, the
line of every mapping key and sequence item. :meth:`YamlDoc.line_of` answers "which line is
``services[0].probes[1].url`` on?" for a pydantic error location, and :func:`problems_from`
turns a whole :class:`pydantic.ValidationError` into :class:`~autonomic.errors.Problem`
values. Duplicate keys in a mapping are an error (PyYAML silently keeps the last one).
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from autonomic.errors import ConfigError, Problem

Loc = Sequence[str | int]


@dataclass
class _Node:
    """Line of one value and the lines of its children, keyed by str(key or index)."""

    line: int
    children: dict[str, _Node] = field(default_factory=dict)


@dataclass
class YamlDoc:
    """A parsed YAML file: its data and the line of every key and item in it."""

    data: Any
    file: str
    _root: _Node | None = None

    def line_of(self, loc: Loc) -> int | None:
        """1-based line of the node at ``loc`` (a pydantic error location).

        Where part of ``loc`` does not exist (a missing field, a union tag pydantic inserts)
        that element is skipped, so the answer is the nearest existing parent's line.
        None only for an empty document.
        """
        node = self._root
        if node is None:
            return None
        for part in loc:
            child = node.children.get(str(part))
            if child is not None:
                node = child
        return node.line


def format_loc(loc: Loc) -> str:
    """``("services", 0, "probes", 1, "url")`` -> ``"services[0].probes[1].url"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(path: Path) -> YamlDoc:
    """Read and parse ``path``; ConfigError with file:line for unreadable or bad YAML."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(str(path), None, "", f"cannot read file: {e}")]) from None
    return load_yaml_text(text, str(path))


# the most nodes a document may stand for once its aliases are expanded: a few aliases that
# each repeat the one before ("billion laughs") would otherwise take every byte of memory
MAX_EXPANDED_NODES = 1_000_000


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded (each shared node counted
    once per use, computed once)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(item, sizes) for item in node.value)
    sizes[id(node)] = size
    return size


def load_yaml_text(text: str, file: str) -> YamlDoc:
    """Parse YAML ``text`` (named ``file`` in errors). Raises ConfigError listing the syntax
    error, or every duplicate key, with its line, or aliases that expand beyond
    :data:`MAX_EXPANDED_NODES` nodes, or nesting deeper than Python's recursion allows."""
    try:
        return _load_yaml_text(text, file)
    except RecursionError:
        raise ConfigError([Problem(file, None, "", "YAML nested too deeply (thousands of levels)")]) from None


def _load_yaml_text(text: str, file: str) -> YamlDoc:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise ConfigError([Problem(file, None, "", f"YAML aliases expand to more than {MAX_EXPANDED_NODES:,} "
                                       "nodes: write the values out, or use fewer nested aliases")])
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise ConfigError([Problem(file, line, "", f"YAML syntax: {what}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem(file, None, "", f"YAML syntax: {e}")]) from None
    finally:
        loader.dispose()
    if node is None:
        return YamlDoc(data=None, file=file)
    duplicates: list[Problem] = []
    root = _index(node, (), file, duplicates)
    if duplicates:
        raise ConfigError(duplicates)
    return YamlDoc(data=data, file=file, _root=root)


def _index(node: yaml.Node, loc: tuple[str | int, ...], file: str, dups: list[Problem]) -> _Node:
    out = _Node(line=node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue  # complex keys and merge keys have no pydantic location
            key = key_node.value
            child = _index(value_node, (*loc, key), file, dups)
            child.line = key_node.start_mark.line + 1  # point at the key, not its value
            if key in out.children:
                first = out.children[key].line
                dups.append(
                    Problem(
                        file, child.line, format_loc((*loc, key)), f"duplicate key (first at line {first})"
                    )
                )
                continue
            out.children[key] = child
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.children[str(i)] = _index(item, (*loc, i), file, dups)
    return out


# each quoted value in pydantic's list of the allowed ones ("'observe', 'suggest' or 'auto'")
_QUOTED = re.compile(r"'([^']*)'")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` naming the one of ``known`` closest to a misspelt ``name``, or
    "" when none is close: the hint every "unknown ..." problem ends with."""
    near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {near[0]!r}?" if near else ""


def problems_from(err: pydantic.ValidationError, doc: YamlDoc, prefix: Loc = (), *,
                  model: type[pydantic.BaseModel]) -> list[Problem]:
    """One Problem per validation error: the field as ``a[0].b``, its line, and what is wrong in
    words (:func:`readable_errors`).

    ``prefix`` is where the validated value sits in ``doc`` (e.g. ``("patterns", 2)``); ``model``
    is what was validated (see :func:`readable_errors`)."""
    return [Problem(doc.file, doc.line_of(loc), format_loc(loc), message)
            for loc, message in readable_errors(err.errors(), prefix, model=model)]


def readable_errors(errors: Iterable[Mapping[str, Any]], prefix: Loc = (), *,
                    model: type[pydantic.BaseModel] | None) -> list[tuple[Loc, str]]:
    """Each of pydantic's errors (``ValidationError.errors()``, or FastAPI's for a request) as the
    place of the field and what is wrong with it in words: the message every input edge shows
    people (config, patterns, an ``--incident`` file, an API body).

    Pydantic's message, but a validator's own without the "Value error, " pydantic puts before it;
    a mapping given something else is said so ("should be a mapping (an object of named values),
    not a list"), never "Input should be a valid dictionary or instance of <class>"; a body that is
    not JSON says where and why. ``model`` (None when not known) is what was validated, so a field
    it does not have is named with the nearest one it does (``unknown field 'memory_precent'; did
    you mean 'memory_percent'?``). A value outside a fixed set (``op: graceful_restrat``,
    ``autonomy: aprove``) is named with the nearest allowed one too, and a ``type:`` no variant has
    (``type: webhok``) as an unknown type, at its key."""
    out: list[tuple[Loc, str]] = []
    for e in errors:
        loc: Loc = (*prefix, *e["loc"])
        message = str(e["msg"])
        if e["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and e["loc"]:
            known = _fields_at(model, e["loc"][:-1]) if model is not None else []
            message = f"unknown field {str(e['loc'][-1])!r}"
            message += did_you_mean(str(e["loc"][-1]), known) or (
                f" (known here: {', '.join(sorted(known))})" if known else "")
        elif e["type"] in ("model_type", "dict_type", "model_attributes_type"):
            message = f"should be a mapping (an object of named values), not {_kind(e.get('input'))}"
        elif e["type"] == "json_invalid":  # FastAPI: the loc ends with the character it stopped at
            at = loc[-1] if loc and isinstance(loc[-1], int) else None
            loc = loc[:-1] if at is not None else loc
            why = str((e.get("ctx") or {}).get("error") or "").strip()
            message = "not valid JSON" + (f" at character {at}" if at is not None else "") + (f": {why}" if why else "")
        elif e["type"] in ("literal_error", "enum") and isinstance(e.get("input"), str):
            allowed = _QUOTED.findall(str((e.get("ctx") or {}).get("expected", "")))
            message += did_you_mean(e["input"], allowed) if len(allowed) > 1 else ""  # one: already named
        elif e["type"] == "union_tag_invalid":
            tag, tags = str(e["ctx"]["tag"]), _QUOTED.findall(str(e["ctx"]["expected_tags"]))
            message = f"unknown type {tag!r}" + (did_you_mean(tag, tags) or f" (known: {', '.join(tags)})")
            if isinstance(e.get("input"), dict) and "type" in e["input"]:
                loc = (*loc, "type")
        out.append((loc, message))
    return out


def _kind(value: Any) -> str:
    """What a JSON or YAML value is, in words: ``a list``, ``a string``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"a {type(value).__name__}"


def _fields_at(model: type[pydantic.BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names of the model found at ``loc`` inside ``model`` (list indexes and mapping
    keys stepped over); [] when the path cannot be followed."""
    current: type[pydantic.BaseModel] | None = model
    keyed = False  # the next part is a key of a mapping, not a field
    for part in loc:
        if current is None:
            return []
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current, keyed = _model_in(field.annotation)
    return list(current.model_fields) if current is not None and not keyed else []


def _model_in(annotation: Any) -> tuple[type[pydantic.BaseModel] | None, bool]:
    """The model an annotation holds (itself, or inside ``list[...]``, ``X | None``, a mapping's
    values) and whether it is a mapping's values (the path then names a key first)."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation, False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (dict, Mapping) and len(args) == 2:
        return _model_in(args[1])[0], True
    for arg in args:
        found, keyed = _model_in(arg)
        if found is not None:
            return found, keyed
    return None, False
