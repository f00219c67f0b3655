"""Explain an incident: the whole chain from findings to outcome, from the store alone."""

from __future__ import annotations

import json
from typing import Any

from autonomic.analyze.goals import CAUSE as BURN_CAUSE
from autonomic.clock import duration, local_stamp, utc_stamp
from autonomic.knowledge import Store
from autonomic.model import TROUBLE_CLEARED, Incident, Verdict
from autonomic.printable import counted


def explain_incident(store: Store, incident_id: str, ends: tuple[int, int] | None = None) -> dict[str, Any]:
    """Everything recorded about one incident, in order, as plain JSON-ready data. With ``ends``
    (first, latest), of the findings and audit events only the first and the latest that many
    are read, and ``omitted`` says how many of each lie between them (a long incident's page)."""
    incident = store.get(Incident, incident_id)
    if incident is None:
        raise KeyError(f"no incident {incident_id}")
    if ends is None:
        findings, audit = store.findings(incident_id), store.audit_events(subject=incident_id)
        omitted = None
    else:
        findings, left_findings = store.findings_ends(incident_id, *ends)
        audit, left_audit = store.audit_ends(incident_id, *ends)
        omitted = {"findings": left_findings, "audit": left_audit}
    chain: dict[str, Any] = {
        "incident": incident.model_dump(mode="json"),
        "findings": [f.model_dump(mode="json") for f in findings],
        "diagnoses": [d.model_dump(mode="json") for d in store.diagnoses(incident_id)],
        "decisions": [d.model_dump(mode="json") for d in store.decisions(incident_id)],
        "actions": [a.model_dump(mode="json") for a in store.actions(incident_id=incident_id)],
        "outcomes": [o.model_dump(mode="json") for o in store.outcomes(incident_id=incident_id)],
        "audit": [e.model_dump(mode="json") for e in audit],
        # retention pruned the findings from before this time (see 'autonomic prune'), when it did
        "pruned_before": {k: v for k, v in store.pruned_before().items() if k == "findings"},
    }
    if omitted is not None:
        chain["omitted"] = omitted
    # how each decision was settled, in words (the dashboard and the text below show these): its
    # verdict as a person reads it, and by whom or what
    for d in chain["decisions"]:
        d["ruling"], d["ruled_by"] = ruling(d)
    if chain["decisions"] and incident.closed_at is not None:
        last = chain["decisions"][-1]
        if last["verdict"] == Verdict.NEEDS_APPROVAL.value:
            # retention prunes the oldest audit entries first: an incident whose own opening entry
            # is not among those left lost the entries that said how its request ended
            pruned = store.audit_anchor()[0] > 0 and (not audit or audit[0].kind != "incident.opened")
            last["ruled_by"] += f"; {_unanswered(chain['audit'], last, incident.closed_at, pruned)}"
    return chain


def ruling(d: dict[str, Any]) -> tuple[str, str]:
    """How a decision (as JSON) was settled, in words: its verdict, and by whom or what. A
    person's approval that a gate then refused is the gate's denial, not the person's
    (``denied``, ``by rate_limit, though person:ana approved``; it read ``denied by person:ana``);
    one the engine did not act on because the trouble had cleared first says so (``not acted
    on``, ``as the trouble cleared on its own first, though person:ana approved``)."""
    by = d["decided_by"]
    said_no = [g["gate"] for g in d["gates"] if not g["passed"] and not g["needs_approval"]]
    if d["verdict"] != Verdict.DENIED.value or by == "engine" or not said_no:
        return d["verdict"], f"by {by}"
    if TROUBLE_CLEARED in said_no:
        return "not acted on", f"as the trouble cleared on its own first, though {by} approved"
    return d["verdict"], f"by {', '.join(said_no)}, though {by} approved"


def _unanswered(audit: list[dict[str, Any]], request: dict[str, Any], closed_at: float,
                audit_pruned: bool = False) -> str:
    """Why the approval request ``request`` (a decision, as JSON) the incident closed (at
    ``closed_at``) on was never acted on, from its audit events: it expired, unanswered (when, in
    UTC: as recorded with it, else when the engine closed it; and that nothing was done) or
    approved late (an approval the engine found late, or one refused as late when given, audited
    ``approval.late``), or the trouble cleared first. With ``audit_pruned`` (retention pruned the
    incident's audit entries), from the request's recorded expiry instead: closed at or after it,
    it expired; before it, the trouble cleared; a request stored without one cannot tell."""
    expired = next((e for e in reversed(audit) if e["kind"] == "approval.expired"), None)
    if expired is not None:
        refused = next((e for e in audit if e["kind"] == "approval.late"), None)
        who = (expired.get("data") or {}).get("approved_late_by") or (refused or {}).get("actor")
        if who:
            return f"expired: approved by {who} after the request expired"
        when = request.get("expires_at") or expired["ts"]
        return f"expired unanswered at {utc_stamp(when)}; nothing done"
    if audit_pruned:
        gone = "its audit entries were pruned by retention (the audit archive keeps them)"
        expires = request.get("expires_at")
        if expires is None:
            return f"closed at {utc_stamp(closed_at)} with nothing done; {gone}, and they said whether it expired"
        if closed_at >= expires:  # whether someone approved it too late was in them
            return f"expired at {utc_stamp(expires)}; nothing done ({gone})"
    return "the trouble cleared on its own before an answer"


_t = local_stamp


_FIRST_EVIDENCE = ("eta_s", "eta_low_s", "eta_high_s")  # a forecast's answer, before how it was fitted


def _days(days: Any) -> str:
    """``1 day``, ``30 days``: a goal's window as its evidence stored it (``? days`` when it did not)."""
    return counted(float(days), "day") if isinstance(days, int | float) else "? days"


def _findings_shown(findings: list[dict[str, Any]], ends: int = 5) -> set[int]:
    """Which findings the page lists: the first and the latest ``ends``, and the first of each
    kind and metric (a threshold crossed after a forecast, however many forecasts came first)."""
    shown = set(range(min(ends, len(findings)))) | set(range(max(0, len(findings) - ends), len(findings)))
    seen: set[tuple[str, str]] = set()
    for i, f in enumerate(findings):
        if (f["kind"], f["metric"]) not in seen:
            seen.add((f["kind"], f["metric"]))
            shown.add(i)
    return shown


def _findings_pruned(inc: dict[str, Any], findings: list[dict[str, Any]], cutoff: float | None) -> bool:
    """Whether retention pruned findings of this incident: it is closed, it opened before the
    latest findings cut-off, and none of its findings from before that is left (retention
    prunes all of a closed incident's). Not how many: a repeating finding is stored only now and
    then, so its stored findings are fewer than its count whether or not any were pruned."""
    if cutoff is None or inc["closed_at"] is None or inc["opened_at"] >= cutoff:
        return False
    return not findings or findings[0]["ts"] >= cutoff


def burn_evidence(ev: dict[str, Any]) -> list[str]:
    """An error-budget burn finding's evidence (see analyze/goals.py) as lines a person reads:
    the burn rate over each window, the rule that fired, the budget left and when it runs out."""
    burns = ", ".join(f"{rate:.1f}x over {duration(float(w))}" if rate is not None
                      else f"no sample over {duration(float(w))}"
                      for w, rate in sorted(ev["burn"].items(), key=lambda kv: float(kv[0])))
    out = [f"burn rate (1x spends the budget in exactly the goal's window): {burns}"]
    rule = ev.get("rule")
    if isinstance(rule, dict):
        pages = rule.get("severity") == "page" and ev.get("priority") != "ticket"  # a ticket goal never pages
        out.append(f"rule: {'pages' if pages else 'a ticket'} when the burn is at least "
                   f"{rule.get('factor'):g}x over both the last "
                   f"{duration(float(rule.get('long_s', 0)))} and the last {duration(float(rule.get('short_s', 0)))}; "
                   f"goal priority {ev.get('priority')}")
    left, eta, at = ev.get("budget_remaining"), ev.get("exhausted_in_s"), ev.get("exhausted_at")
    if left is None:
        out.append("budget: no sample in the goal's window")
    elif left <= 0:
        out.append(f"budget: spent ({1 - left:.2g}x the budget used in the last {_days(ev.get('window_days'))})")
    else:
        when = ("not running out at this rate" if eta is None or at is None
                else f"runs out in {duration(float(eta))}, at {_t(float(at))}, at this rate")
        out.append(f"budget: {left:.0%} left of the last {_days(ev.get('window_days'))}; {when}")
    return out


def render_text(chain: dict[str, Any]) -> str:
    """The chain as a page a person reads at 3 a.m."""
    inc = chain["incident"]
    lines = [
        f"Incident {inc['id'][:8]} on {inc['service']} ({inc['cause']}): {inc['summary']}",
        f"  state {inc['state']}, resolution {inc['resolution'] or '-'}, opened {_t(inc['opened_at'])}, "
        f"{counted(inc['finding_count'], 'finding')}"
        + (f", closed {_t(inc['closed_at'])}" if inc["closed_at"] else ""),
    ]
    unseen = [e["data"]["unobserved"] for e in chain["audit"]
              if e["kind"] in ("incident.cleared", "incident.closed") and e["data"].get("unobserved")]
    lines += [f"  closed, but {unseen[-1]}"] if unseen else []  # the findings stopped with their source
    lines += ["", "Findings (evidence):"]
    findings = chain["findings"]
    pruned = chain.get("pruned_before", {})
    if _findings_pruned(inc, findings, pruned.get("findings")):
        lines.append(f"  (its findings from before {_t(pruned['findings'])} were pruned by retention)")
    shown = _findings_shown(findings)
    for i, f in enumerate(findings):
        if i not in shown:
            if i - 1 in shown:
                upto = next((j for j in range(i, len(findings)) if j in shown), len(findings))
                lines.append(f"  ... {upto - i} more")
            continue
        ev = {k: (round(v, 3) if isinstance(v, float) else v)
              for k, v in sorted(f["evidence"].items(), key=lambda kv: kv[0] not in _FIRST_EVIDENCE)
              if not isinstance(v, list)}
        if f["cause"] == BURN_CAUSE and isinstance(f["evidence"].get("burn"), dict):
            lines.append(f"  {_t(f['ts'])} {f['kind']} {f['metric']}: {f['summary']}")
            lines.extend(f"    {line}" for line in burn_evidence(f["evidence"]))
            continue
        probe = ev.pop("probe", None)  # why the HTTP probe failed: whole, not cut
        lines.append(f"  {_t(f['ts'])} {f['kind']} {f['metric']}: {f['summary']}  {json.dumps(ev)[:160]}")
        if probe:
            lines.append(f"    probe: {probe}")
    lines.append("")
    lines.append("Diagnosis (patterns considered):")
    for d in chain["diagnoses"]:
        lines.append(f"  chosen: {d['pattern_id'] or 'none'} (confidence {d['confidence']:.2f}): {d['rationale']}")
        for c in d["candidates"]:
            lines.append(f"    - {c['pattern_id']}: {c['confidence']:.2f}  {'; '.join(c['reasons'])}")
        if d.get("rca"):
            lines.append("    root cause ranking over the dependency graph:")
            for r in d["rca"]:
                lines.append(f"      {r['service']}: {r['role']} ({r['score']:.2f})  {'; '.join(r['evidence'])}")
    lines.append("")
    lines.append("Decisions (every gate and its reason):")
    if not chain["decisions"]:  # closed before anything was decided (it cleared), or not decided yet
        lines.append("  none" if inc["closed_at"] else "  none yet")
    for d in chain["decisions"]:
        # a person approved and a gate (a pause, a rate limit) said no: the person did not deny it
        word, by = (d["ruling"], d["ruled_by"]) if "ruling" in d else ruling(d)
        head = f"{word.upper()} {by}"
        lines.append(f"  {_t(d['ts'])} {head}" + (f" ({d['comment']})" if d["comment"] else ""))
        would = d.get("shadow_verdict")
        if would == "approved" and d.get("action"):
            lines.append(f"    would have run {d['action']['type']} on {d['action']['target']} "
                         "(every gate but autonomy/shadow passed)")
        elif would:
            lines.append(f"    without autonomy/shadow the verdict would have been {would}")
        if d.get("expires_at") is not None:  # a request recorded with its expiry (by the engine that asked)
            lines.append(f"    request expiry: {_t(d['expires_at'])} (engine.approval_ttl_s "
                         f"{d['expires_at'] - d['ts']:g} s after it was asked)")
        for g in d["gates"]:
            mark = "pass" if g["passed"] else ("ASK " if g["needs_approval"] else "FAIL")
            lines.append(f"    [{mark}] {g['gate']}: {g['reason']}")
    lines.append("")
    lines.append("Actions:")
    for a in chain["actions"]:
        lines.append(f"  {a['type']} on {a['service']} {json.dumps(a['params'])}: {a['state']}"
                     + (f" ({a['error']})" if a["error"] else ""))
        for s in a["steps"]:
            detail = {k: v for k, v in s["detail"].items() if k not in ("ts", "values")}
            warning = detail.pop("warning", None)  # an actuator's word for a person: whole, not cut
            lines.append(f"    {'ok ' if s['ok'] else 'ERR'} {s['name']} {_t(s['finished_at'])} "
                         f"{json.dumps(detail, default=str)[:160]}")
            if warning:
                lines.append(f"      warning: {warning}")
        if (a["undo"] and a["applied_at"] is not None and a["state"] in ("escalated", "failed")
                and not any(s["name"] == "undo" and s["ok"] for s in a["steps"])):
            # applied, and left in place (a pause held its undo, the undo failed, a person decides):
            # what undoing it by hand needs, whole
            lines.append(f"    not undone; its undo snapshot: {json.dumps(a['undo'], default=str)}")
    if not chain["actions"]:
        lines.append("  none")
    lines.append("")
    lines.append("Outcome:")
    for o in chain["outcomes"]:
        undo = o.get("undo_verdict")  # the undo watched as the fix was (as the engine's alert says)
        rolled = ("" if not o["rolled_back"] else " (rolled back)" if undo is None
                  else " (rolled back: the undo restored health)" if undo == "pass"
                  else f" (rolled back, but the undo did NOT restore health: its check was {undo})")
        lines.append(f"  {o['verdict'].upper()}{rolled}: {o['reason']}")
    if not chain["outcomes"]:  # a closed incident gets none later
        lines.append("  none" if inc["closed_at"] else "  none yet")
    return "\n".join(lines)
