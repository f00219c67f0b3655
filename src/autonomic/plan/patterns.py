"""The pattern library: known failures and their remedies, authored in YAML.

A pattern file holds one pattern mapping, or ``patterns:`` with a list of them::

    id: memory-leak-graceful-restart      # unique across the library, [a-z0-9-]+
    version: 1
    description: Memory grows toward the limit; restart gracefully before the breach.
    match: {cause: memory, kind: forecast}   # model.PatternMatch; every field given must hold
    action:                                  # omit or null: escalate to a person only
      type: process                          # a registered actuator type
      params: {op: graceful_restart}         # validated against that actuator's Params
    prior_confidence: 0.8
    rollback_safe: false                     # default false: undo is not assumed safe
    verify: {metric: memory_percent, max: 85}   # required with an action; a pattern without
                                                # one (a hand-over) may leave it out
    then: [memory-leak-hard-restart]         # escalation chain: if this fails, try these in
                                             # order on the same incident, then page a person

A multi-step remedy gives ``steps`` instead of ``type``/``params`` (2 to 10 steps, run in
order; when one fails the completed ones are undone in reverse order, see
``execute/workflow.py``)::

    action:
      steps:
        - {name: drain, type: http, params: {...}}      # name defaults to params.op, else type
        - {type: process, params: {op: graceful_restart}}

Each step's params are validated against its actuator's Params (errors name the field, e.g.
``action.steps[1].params.op``). The loaded ``ActionSpec`` then has ``steps`` set and
``type``/``params`` repeat the first step.

Loading collects every problem in every file (YAML syntax, schema, unknown action type,
params outside the actuator's schema, duplicate ids) with ``file:line`` and the field, and
raises them together as one :class:`~autonomic.errors.PatternError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autonomic.analyze.thresholds import maximum_kind
from autonomic.errors import ConfigError, PatternError, Problem
from autonomic.model import ActionSpec, Pattern, PatternMatch, StepSpec, VerifySpec
from autonomic.registry import Registry
from autonomic.yamlio import YamlDoc, did_you_mean, format_loc, load_yaml, problems_from


class _StepYaml(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    type: str = Field(min_length=1)
    params: dict[str, Any] | None = None


class _ActionYaml(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str | None = Field(default=None, min_length=1)
    target: Literal["{service}"] = "{service}"
    params: dict[str, Any] | None = None  # null or absent: the actuator's defaults
    steps: list[_StepYaml] | None = Field(default=None, min_length=2, max_length=10)

    @model_validator(mode="after")
    def _one_form(self) -> _ActionYaml:
        if self.steps is None and self.type is None:
            raise ValueError("give either type (with params) or steps")
        if self.steps is not None and (self.type is not None or self.params is not None):
            raise ValueError("give either type (with params) or steps, not both")
        return self


class PatternYaml(BaseModel):
    """The schema of one pattern as written in YAML."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    version: int = Field(default=1, ge=1)
    description: str = ""
    match: PatternMatch
    action: _ActionYaml | None = None
    prior_confidence: float = Field(ge=0.0, le=1.0)
    rollback_safe: bool = False
    verify: VerifySpec | None = None  # required with an action; a hand-over has nothing to verify
    then: list[str] = Field(default_factory=list, max_length=10)

    @field_validator("verify")
    @classmethod
    def _verify_has_bounds(cls, v: VerifySpec | None) -> VerifySpec | None:
        """A verification without a bound passes every fix whose metric reports at all (and a
        NaN bound passes every sample), so nothing is ever rolled back and the pattern's record
        fills with successes it never had: give ``min`` or ``max``, finite, ``min`` <= ``max``."""
        if v is None:
            return v
        if v.threshold == "max" and maximum_kind(v.metric) is None:
            raise ValueError(f"max: threshold: a service has no maximum for {v.metric!r} to verify against "
                             "(availability is a minimum, up and probe_ok have no line): give a number")
        if v.threshold == "min" and maximum_kind(v.metric) != "extra":
            raise ValueError(f"min: threshold: a service's floors are its thresholds.minimums, and {v.metric!r} "
                             f"{'has a built-in maximum' if maximum_kind(v.metric) else 'has no such line'}: "
                             "give a number")
        if v.fallback_metric is not None and v.threshold is not None:
            raise ValueError(f"fallback_metric: {v.threshold}: threshold is the service's line for {v.metric!r}, "
                             f"which {v.fallback_metric!r} does not share: give numbers with a fallback_metric")
        if v.fallback_metric == v.metric:
            raise ValueError(f"fallback_metric: {v.metric!r} is the metric itself: name another, or leave it out")
        bounds = {k: b for k, b in (("min", v.min), ("max", v.max)) if b is not None}
        if not bounds and v.threshold is None:
            raise ValueError("give min or max (or both): without a bound every fix would pass verification")
        bad = [k for k, b in bounds.items() if not math.isfinite(b)]
        if bad:
            raise ValueError(f"{' and '.join(bad)} must be a finite number")
        # an infinite window (or wait before it) is never over: the fix is never judged, and its
        # service, busy with it for ever, gets no other action
        endless = [k for k, t in (("delay_s", v.delay_s), ("window_s", v.window_s)) if not math.isfinite(t)]
        if endless:
            raise ValueError(f"{' and '.join(endless)} must be a finite number of seconds: the fix would never "
                             "be judged")
        if v.min is not None and v.max is not None and v.min > v.max:
            raise ValueError(f"min ({v.min:g}) is above max ({v.max:g}): no sample could pass")
        return v


MAX_FILE_BYTES = 1 << 20
"""The largest pattern file read (a built-in one is under 2 KiB; 1 MiB holds some 2,000 patterns).
A larger one is refused unread: parsing it would take minutes (7 MB: 30 s) while a reload holds
the engine's loop, and it is most likely not a pattern file at all (a manifest dump in a folder
listed under ``patterns:``)."""


def _never_matches(match: PatternMatch) -> list[tuple[tuple[str | int, ...], str]]:
    """Each field of ``match`` that no incident could ever meet, as (its location under ``match``,
    why): a pattern written so is loaded without a word and silently matches nothing."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for name in ("cause", "metric", "service_type"):
        if getattr(match, name) == "":
            found.append(((name,), f"is empty: no incident has an empty {name.replace('_', ' ')}; leave it out "
                                   "to match any"))
    after = match.after_change_s
    if after is not None and not after > 0:
        found.append((("after_change_s",), f"{after:g} matches no incident: give the seconds (above 0) within "
                                           "which the config change must have been made"))
    for i, sym in enumerate(match.symptoms):
        nan = [k for k, b in (("min", sym.min), ("max", sym.max)) if b is not None and math.isnan(b)]
        if nan:
            found.append((("symptoms", i, nan[0]), "must be a number, not NaN: no finding's value could meet it"))
        elif sym.min is not None and sym.max is not None and sym.min > sym.max:
            found.append((("symptoms", i), f"min ({sym.min:g}) is above max ({sym.max:g}): no finding's value "
                                           "could meet both"))
    return found


def _pattern_files(paths: Sequence[Path], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            problems.append(Problem(str(p), None, "", "no such pattern file or directory"))
    return files


def _entries(doc: YamlDoc, problems: list[Problem]) -> list[tuple[tuple[str | int, ...], Any]]:
    """(location prefix, raw mapping) of each pattern in a file."""
    data = doc.data
    if isinstance(data, dict) and "patterns" in data and "id" not in data:
        extra = sorted(str(k) for k in data if k != "patterns")
        for k in extra:
            problems.append(Problem(doc.file, doc.line_of((k,)), k, "unexpected key beside 'patterns'"))
        items = data["patterns"]
        if not isinstance(items, list):
            problems.append(Problem(doc.file, doc.line_of(("patterns",)), "patterns", "must be a list"))
            return []
        return [(("patterns", i), item) for i, item in enumerate(items)]
    if data is None:
        problems.append(Problem(doc.file, None, "", "no pattern in file"))
        return []
    return [((), data)]


def _check_params(
    step: Any, loc: tuple[str | int, ...], doc: YamlDoc, registry: Registry, problems: list[Problem]
) -> BaseModel | None:
    """Validate ``step["type"]`` (at ``loc``) against the registry and ``step["params"]``
    against that actuator's Params. Returns the validated params, or None (problems appended)."""
    if not isinstance(step, dict) or not isinstance(step.get("type"), str):
        return None  # absent, or malformed in a way the schema check reports
    params = step.get("params") or {}
    if not isinstance(params, dict):
        return None
    type_name = step["type"]
    known = registry.types("actuator")
    if type_name not in known:
        message = f"unknown action type {type_name!r}" + (
            did_you_mean(type_name, known) or f" (known: {', '.join(known) or 'none'})")
        problems.append(Problem(doc.file, doc.line_of((*loc, "type")), format_loc((*loc, "type")), message))
        return None
    params_model: type[BaseModel] = registry.actuator(type_name).Params
    try:
        return params_model.model_validate(params)
    except ValidationError as e:
        problems.extend(problems_from(e, doc, (*loc, "params"), model=params_model))
        return None


def _check_action(
    raw: Any, prefix: tuple[str | int, ...], doc: YamlDoc, registry: Registry, problems: list[Problem]
) -> list[BaseModel] | None:
    """Validate the action's type(s) and params: one entry per step (one for a single-step
    action). None when anything is wrong or there is no action (problems appended)."""
    action = raw.get("action") if isinstance(raw, dict) else None
    if not isinstance(action, dict):
        return None
    loc = (*prefix, "action")
    steps = action.get("steps")
    if steps is None:
        one = _check_params(action, loc, doc, registry, problems)
        return None if one is None else [one]
    if not isinstance(steps, list):
        return None  # the schema check reports it
    checked = [_check_params(step, (*loc, "steps", i), doc, registry, problems) for i, step in enumerate(steps)]
    valid = [p for p in checked if p is not None]
    return valid if len(valid) == len(checked) else None


def _action_spec(spec: _ActionYaml, params: list[BaseModel]) -> ActionSpec:
    if spec.steps is None:
        assert spec.type is not None
        return ActionSpec(type=spec.type, target="{service}", params=params[0].model_dump(mode="json"))
    steps = []
    for step, p in zip(spec.steps, params, strict=True):
        dumped = p.model_dump(mode="json")
        name = step.name or str(dumped.get("op") or step.type)
        steps.append(StepSpec(name=name, type=step.type, params=dumped))
    return ActionSpec(type=steps[0].type, target="{service}", params=steps[0].params, steps=steps)


def _load(paths: Sequence[Path], registry: Registry) -> tuple[list[Pattern], list[Problem]]:
    problems: list[Problem] = []
    patterns: list[Pattern] = []
    seen: dict[str, str] = {}  # id -> file:line
    chains: list[tuple[YamlDoc, tuple[str | int, ...], PatternYaml]] = []
    counted: list[tuple[YamlDoc, tuple[str | int, ...], PatternYaml]] = []  # with match.after_actions
    for file in _pattern_files(paths, problems):
        try:
            size = file.stat().st_size
        except OSError:
            size = 0  # load_yaml says why it cannot be read
        if size > MAX_FILE_BYTES:
            problems.append(Problem(str(file), None, "", f"{size / (1 << 20):.1f} MiB, more than the "
                                    f"{MAX_FILE_BYTES >> 20} MiB a pattern file may hold: not read (is it a pattern "
                                    "file? split a larger library into several files)"))
            continue
        try:
            doc = load_yaml(file)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        for prefix, raw in _entries(doc, problems):
            line = doc.line_of(prefix)
            source = f"{doc.file}:{line}"
            try:
                spec: PatternYaml | None = PatternYaml.model_validate(raw)
            except ValidationError as e:
                problems.extend(problems_from(e, doc, prefix, model=PatternYaml))
                spec = None
            params = _check_action(raw, prefix, doc, registry, problems)
            if spec is None:
                continue
            if spec.id in seen:
                loc = (*prefix, "id")
                message = f"duplicate pattern id {spec.id!r} (also defined at {seen[spec.id]})"
                problems.append(Problem(doc.file, doc.line_of(loc), format_loc(loc), message))
                continue
            seen[spec.id] = source
            never = _never_matches(spec.match)
            for where, message in never:
                loc = (*prefix, "match", *where)
                problems.append(Problem(doc.file, doc.line_of(loc), format_loc(loc), message))
            if never:
                continue
            if spec.action is not None and spec.verify is None:
                loc = (*prefix, "verify")
                message = ("field required with an action (the metric and its min and/or max that say the fix "
                           "worked); only a pattern without an action, a hand-over to a person, may leave it out")
                problems.append(Problem(doc.file, doc.line_of(prefix), format_loc(loc), message))
                continue
            if spec.then:
                chains.append((doc, prefix, spec))
            if spec.match.after_actions is not None:
                counted.append((doc, prefix, spec))
            if spec.action is not None and params is None:
                continue  # its action problems are already listed
            action = None
            if spec.action is not None and params is not None:
                action = _action_spec(spec.action, params)
            patterns.append(
                Pattern(
                    id=spec.id,
                    version=spec.version,
                    description=spec.description,
                    match=spec.match,
                    action=action,
                    prior_confidence=spec.prior_confidence,
                    rollback_safe=spec.rollback_safe,
                    verify=spec.verify,
                    source=source,
                    then=list(spec.then),
                )
            )
    for doc, prefix, spec in chains:  # every id in an escalation chain names a pattern with an action
        actionless = {p.id for p in patterns if p.action is None}
        for i, other in enumerate(spec.then):
            loc = (*prefix, "then", i)
            if other == spec.id or other in spec.then[:i]:
                message = f"{other!r} is already in this escalation chain"
            elif other not in seen:
                message = f"no pattern has the id {other!r}{did_you_mean(other, seen)}"
            elif other in actionless:
                message = f"pattern {other!r} has no action to try"
            else:
                continue
            problems.append(Problem(doc.file, doc.line_of(loc), format_loc(loc), message))
    actionless = {p.id for p in patterns if p.action is None}
    for doc, prefix, spec in counted:  # the actions a pattern counts are those of patterns that act
        assert spec.match.after_actions is not None
        for i, other in enumerate(spec.match.after_actions.patterns):
            if other not in seen:
                message = (f"no pattern has the id {other!r}: its actions could never be counted"
                           f"{did_you_mean(other, seen)}")
            elif other in actionless:
                message = (f"pattern {other!r} has no action (it hands over to a person): it never acts, so "
                           "its actions could never be counted")
            else:
                continue
            loc = (*prefix, "match", "after_actions", "patterns", i)
            problems.append(Problem(doc.file, doc.line_of(loc), format_loc(loc), message))
    return patterns, problems


def load_patterns(paths: Sequence[Path], registry: Registry) -> list[Pattern]:
    """Every pattern in ``paths`` (files, or directories of ``*.yaml``/``*.yml`` read in name
    order). Raises PatternError listing every problem in every file if any is wrong."""
    patterns, problems = _load(paths, registry)
    if problems:
        raise PatternError(problems)
    return patterns


def check_patterns(paths: Sequence[Path], registry: Registry) -> list[Problem]:
    """Every problem :func:`load_patterns` would raise, without raising (for ``autonomic check``)."""
    return _load(paths, registry)[1]
