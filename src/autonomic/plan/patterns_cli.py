"""``autonomic patterns list | show ID | test ID --incident FILE``: look into the pattern
library a config loads (the built-in patterns plus the config's own ``patterns:``).

* ``list``: one line per pattern: id, version, what it matches, its action, prior
  confidence and whether it is rollback-safe (``--json`` for a list of objects).
* ``show ID``: the whole pattern as YAML, headed by the ``file:line`` it was defined at.
* ``test ID --incident FILE``: run diagnosis on an incident and say whether pattern ID
  matches, with its confidence, each reason and its rank among the matching patterns.
  FILE is JSON: ``{"incident": {...}, "findings": [...], "context": {...}}`` (what
  ``autonomic explain ID --json`` prints will do: its other parts are read past) where
  ``incident`` is a ``model.Incident``, ``findings`` a list of ``model.Finding`` and the
  optional ``context`` gives ``now`` (default: the incident's ``last_finding_at``),
  ``service_type`` (default: the config's type for the service), ``last_change_at``,
  ``record`` (pattern id -> [successes, failures]) and ``recent_actions`` (pattern id -> the
  times its actions on the service were created, for ``match.after_actions``).

Exit codes: 0 the pattern matches (or list/show succeeded), 1 it does not match or, with a config,
it matches but is passed over there (the service cannot carry it out or nothing could verify it:
the engine would not take it; the verdict and the candidates say so), 2 bad input
(unreadable config, unknown pattern id, malformed incident file, a finding not of the incident's service
and cause, a negative record; each problem names the field).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError

from autonomic.cli_common import ConfigOpt, HelpGroup, JsonOpt, given_config, group_config
from autonomic.cli_common import fail as _exit
from autonomic.cli_common import load as _config
from autonomic.errors import Problem
from autonomic.model import Finding, Incident, Pattern
from autonomic.plan.diagnose import DiagnoseContext, _match, actuator_order, cannot_run, diagnose
from autonomic.yamlio import YamlDoc, problems_from

patterns_app = typer.Typer(no_args_is_help=True, cls=HelpGroup, help="The pattern library: list, show, test.",
                           callback=group_config)



class IncidentContext(BaseModel):
    """What the engine would know besides the incident."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    now: float | None = None
    service_type: str | None = None
    last_change_at: float | None = None
    record: dict[str, tuple[NonNegativeInt, NonNegativeInt]] = Field(default_factory=dict)  # counts: never below 0
    recent_actions: dict[str, list[float]] = Field(default_factory=dict)


class IncidentFile(BaseModel):
    """The ``--incident`` file of ``patterns test``: written by hand, or what ``autonomic explain
    ID --json`` printed (its other parts, named here, are read past)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    incident: Incident
    findings: list[Finding] = Field(default_factory=list)
    context: IncidentContext = Field(default_factory=IncidentContext)
    # the rest of an ``explain --json`` document: not what a pattern matches on
    diagnoses: list[Any] | None = None
    decisions: list[Any] | None = None
    actions: list[Any] | None = None
    outcomes: list[Any] | None = None
    audit: list[Any] | None = None
    pruned_before: dict[str, Any] | None = None


def _pattern(cfg: Any, pattern_id: str) -> Pattern:
    patterns: tuple[Pattern, ...] = cfg.patterns
    for p in patterns:
        if p.id == pattern_id:
            return p
    known = ", ".join(p.id for p in patterns) or "none"
    hint = "; without -c only the built-in library is read: -c autonomic.yaml for your own" \
        if cfg.source == "<defaults>" else ""
    raise _exit(f"unknown pattern {pattern_id!r} (known: {known}){hint}")


def match_summary(p: Pattern) -> str:
    """``cause=memory kind=forecast``: the match fields the pattern sets."""
    given = p.match.model_dump(mode="json", exclude_none=True, exclude={"symptoms", "after_actions"})
    parts = [f"{k}={_num(v)}" for k, v in given.items()]
    if (after := p.match.after_actions) is not None:
        parts.append(f"after_actions={after.count}x[{','.join(after.patterns)}]/{after.within_s:g}s")
    for sym in p.match.symptoms:
        bounds = sym.model_dump(mode="json", exclude_none=True, exclude={"metric"})
        parts.append(f"{sym.metric}[{','.join(f'{k}={_num(v)}' for k, v in bounds.items())}]")
    return " ".join(parts) or "anything"


def _num(value: object) -> str:
    """A match value as a person writes it: ``900``, not ``900.0``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def action_summary(p: Pattern) -> str:
    """``process graceful_restart``, ``shell runbook:disk-cleanup``, ``drain -> process:graceful_restart``
    or ``escalate``."""
    if p.action is None:
        return "escalate"
    if p.action.steps:
        return " -> ".join(f"{s.type}:{s.name}" for s in p.action.steps)
    op = p.action.params.get("op") or (f"runbook:{p.action.params['runbook']}" if p.action.params.get("runbook")
                                       else None)
    return f"{p.action.type} {op}" if op else p.action.type


@patterns_app.command("list")
def list_patterns(cli: typer.Context, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Every pattern: id, version, match, action, prior confidence, rollback safety."""
    cfg = _config(given_config(cli, config))
    rows = [
        {
            "id": p.id,
            "version": p.version,
            "match": match_summary(p),
            "action": action_summary(p),
            "prior": p.prior_confidence,
            "rollback_safe": p.rollback_safe if p.action is not None else None,
        }
        for p in cfg.patterns
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    header = {"id": "ID", "version": "VER", "match": "MATCH", "action": "ACTION", "prior": "PRIOR",
              "rollback_safe": "ROLLBACK-SAFE"}
    cells = [header, *({k: "-" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                        for k, v in r.items()}
                       for r in rows)]
    widths = {k: max(len(str(c[k])) for c in cells) for k in header}
    for c in cells:
        print("  ".join(str(c[k]).ljust(widths[k]) for k in header).rstrip())


@patterns_app.command("show")
def show(cli: typer.Context, pattern_id: Annotated[str, typer.Argument(metavar="ID")],
         config: ConfigOpt = None) -> None:
    """The whole pattern as YAML, with the file:line it comes from."""
    p = _pattern(_config(given_config(cli, config)), pattern_id)
    dumped = p.model_dump(mode="json", exclude={"source"}, exclude_none=True)
    if not p.match.symptoms:
        dumped["match"].pop("symptoms", None)
    if not p.then:
        dumped.pop("then", None)
    if dumped.get("verify", {}).pop("threshold", None):
        dumped["verify"]["max"] = "threshold"  # as written: the service's own line
    # keep the schema's order; an absent action is shown as null (escalate to a person)
    body = {k: dumped.get(k) for k in Pattern.model_fields if k in dumped or k == "action"}
    if body["action"] is not None and not body["action"]["steps"]:
        del body["action"]["steps"]
    print(f"# source: {p.source or 'unknown'}")
    print(yaml.safe_dump(body, sort_keys=False, default_flow_style=False).rstrip())


def _read_incident(path: Path) -> IncidentFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise _exit(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:  # not text: exit 2 naming the file, never a traceback
        raise _exit(f"{path}: cannot read: {e}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise _exit(f"{path}:{e.lineno}: not valid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise _exit(f"{path}: nested too deeply to read (thousands of levels)") from None
    try:
        data = IncidentFile.model_validate(raw)
    except ValidationError as e:  # each field by its path, in words, as a bad config's are
        for problem in problems_from(e, YamlDoc(raw, str(path)), model=IncidentFile):
            print(problem, file=sys.stderr)
        raise typer.Exit(2) from None
    # the engine diagnoses an incident from its own findings, each of its service and cause (one
    # incident per service and cause): another's would make a pattern match here that never could there
    inc = data.incident
    strays = [Problem(str(path), None, f"findings[{i}].{name}",
                      f"{got!r} is not the incident's {want!r}: an incident's findings are all of its service "
                      "and cause")
              for i, f in enumerate(data.findings)
              for name, got, want in (("service", f.service, inc.service), ("cause", f.cause, inc.cause))
              if got != want]
    if strays:
        for problem in strays:
            print(problem, file=sys.stderr)
        raise typer.Exit(2)
    return data


@patterns_app.command("test")
def test(
    cli: typer.Context,
    pattern_id: Annotated[str, typer.Argument(metavar="ID")],
    incident: Annotated[Path, typer.Option("--incident", "-i", help="incident JSON: {incident, findings}")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Would pattern ID match this incident? Exit 0 yes, 1 no (or matched but passed over here), 2 bad input."""
    cfg = _config(given_config(cli, config))
    pattern = _pattern(cfg, pattern_id)
    data = _read_incident(incident)
    inc, c = data.incident, data.context
    svc = cfg.service(inc.service)
    cannot = (cannot_run(cfg.patterns, cfg.bindings.get(inc.service, {}), inc.service,
                         svc.may_report if svc is not None else None)
              if cfg.source != "<defaults>" else {})
    ctx = DiagnoseContext(
        now=c.now if c.now is not None else inc.last_finding_at,
        service_type=c.service_type if c.service_type is not None else (svc.type if svc else None),
        last_change_at=c.last_change_at,
        record=c.record,
        recent_actions=c.recent_actions,
        # as the engine does: a pattern the config's service cannot carry out (or verify: no probe
        # for a remedy the probe judges) is passed over (a service the config does not name, alerts
        # may, has no bindings: every action is); without a config, the patterns alone are tested
        cannot_run=cannot,
        # and ranks equals by the order the service binds its actuators in
        actuator_order=actuator_order(cfg.bindings.get(inc.service, {}) if cfg.source != "<defaults>" else None),
    )
    diagnosis = diagnose(inc, data.findings, list(cfg.patterns), ctx)
    ranking = [(cand.pattern_id, cand.confidence) for cand in diagnosis.candidates]
    mine = next((cand for cand in diagnosis.candidates if cand.pattern_id == pattern_id), None)
    if mine is not None:
        matched, confidence, reasons = True, mine.confidence, list(mine.reasons)
        rank: int | None = [pid for pid, _ in ranking].index(pattern_id) + 1
    else:
        _, _, reasons = _match(pattern, inc, data.findings, ctx)
        matched, confidence, rank = False, 0.0, None
    # matched but passed over (the config's service cannot carry it out, or nothing could verify
    # it there): the engine would not take it, so the verdict is "no", as for no match
    passed_over = cannot.get(pattern_id) if matched else None
    chosen = diagnosis.pattern_id if diagnosis.pattern_id not in cannot else None  # what the engine would take
    acts = matched and passed_over is None
    if as_json:
        print(json.dumps({"pattern": pattern_id, "matches": matched, "passed_over": passed_over,
                          "confidence": confidence, "reasons": reasons, "rank": rank, "candidates": len(ranking),
                          "chosen": chosen,
                          "ranking": [{"pattern": pid, "confidence": conf, "passed_over": cannot.get(pid)}
                                      for pid, conf in ranking]},
                         indent=2))
        raise typer.Exit(0 if acts else 1)
    what = f"incident {inc.id[:8]} ({inc.service}, cause {inc.cause}, kind {inc.kind.value})"
    if passed_over is not None:
        instead = (f"{chosen} would be taken instead" if chosen is not None else
                   f"no pattern would act here: nothing autonomic may do for {inc.service}")
        print(f"{pattern_id} matches {what} but is passed over here: {passed_over}; {instead}")
    elif matched:
        print(f"{pattern_id} matches {what}: confidence {confidence:.2f}, rank {rank} of {len(ranking)}")
    else:
        print(f"{pattern_id} does not match {what}")
    for r in reasons or ["(matches anything)"]:
        print(f"  - {r}")
    if ranking:
        print("candidates:")
        for i, (pid, conf) in enumerate(ranking, 1):
            print(f"  {i}. {pid} {conf:.2f}" + (f" (passed over here: {cannot[pid]})" if pid in cannot else ""))
    else:
        print("candidates: none")
    raise typer.Exit(0 if acts else 1)
