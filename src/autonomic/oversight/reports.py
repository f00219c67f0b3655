"""Daily and weekly digests of what autonomic did, read from the store.

:func:`build_report` reads the store once and hands plain lists to the pure
:func:`summarize`; :func:`render_markdown` and :func:`render_html` turn a :class:`Report` into
text. The window is ``[now - 1 day or 7 days, now)``. What counts where:

- interventions: actions *created* in the window, by type, without cancelled ones (they never
  ran); success rate = succeeded / finished (succeeded, failed, rolled back, escalated);
  rollbacks are the interventions that ended rolled back;
- incidents opened: ``opened_at`` in the window; top services rank services by these;
- resolved / prevented and mean time to resolve (``closed_at - opened_at``): incidents *closed*
  in the window with resolution ``resolved`` or ``prevented``;
- escalations: incidents in state ``escalated`` that were escalated in the window (``escalated_at``;
  not ``updated_at``, which moves with every finding of a lasting symptom);
- notable events: audit entries in the window (breaker opened, ``policy.*``, pauses set and
  lifted, pause files seen and gone, services a person stopped on purpose and started again,
  ``pattern.*``: an earned autonomy level changed, on which service, from which level to which);
- action items: what needs a person *now* (awaiting approval, escalated and unclosed, open
  breakers, active pauses: the store's and, given the engine's ``state_dir``, its pause files;
  services a person stopped on purpose, which stay down until a person starts them), whatever
  the window.

:class:`ReportSchedule` and :func:`due_reports` say when a scheduled report is due (pure), so
the engine can deliver it through the notifiers (:func:`report_notification`).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, field_validator

from autonomic.clock import duration
from autonomic.knowledge import Store
from autonomic.model import (
    Action,
    ActionState,
    AuditEvent,
    Incident,
    IncidentState,
    Level,
    Notification,
    Resolution,
)
from autonomic.printable import counted

Period = Literal["daily", "weekly"]
Format = Literal["md", "html"]
PERIOD_S: dict[str, float] = {"daily": 86_400.0, "weekly": 7 * 86_400.0}
TOP_SERVICES = 10
_AUDIT_PAGE = 1000
_FINISHED = (ActionState.SUCCEEDED, ActionState.FAILED, ActionState.ROLLED_BACK, ActionState.ESCALATED)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InterventionStats(_Frozen):
    """Interventions of one action type started in the window."""

    type: str
    total: int
    succeeded: int
    finished: int  # succeeded + failed + rolled back + escalated; the rest are still running
    rolled_back: int
    success_rate: float | None  # succeeded / finished; None when none finished


class ServiceCount(_Frozen):
    service: str
    incidents: int


class NotableEvent(_Frozen):
    ts: float
    kind: str
    actor: str
    subject: str
    text: str


class ActionItem(_Frozen):
    kind: Literal["approval", "escalated", "breaker", "pause", "stopped"]
    subject: str
    text: str
    since: float | None = None


class Report(_Frozen):
    """Everything a digest says; see the module docstring for what each number counts."""

    period: Period
    start: float
    end: float
    interventions: list[InterventionStats]
    interventions_total: int
    succeeded: int
    finished: int
    success_rate: float | None
    rollbacks: int
    incidents_opened: int
    incidents_resolved: int
    incidents_prevented: int
    mttr_s: float | None
    escalations: int
    top_services: list[ServiceCount]
    notable: list[NotableEvent]
    action_items: list[ActionItem]

    @property
    def quiet(self) -> bool:
        """Nothing happened in the window (action items may still be waiting)."""
        return not (self.interventions_total or self.incidents_opened or self.incidents_resolved
                    or self.incidents_prevented or self.escalations or self.notable)


# --- building ---------------------------------------------------------------------------------


def build_report(store: Store, period: Period, now: float, state_dir: Path | None = None,
                 command: str = "autonomic") -> Report:
    """The report for ``[now - period, now)`` from what ``store`` holds. With ``state_dir`` (the
    engine's), its pause files are pauses in force too, as ``autonomic status`` shows them;
    ``command``: see :func:`summarize`."""
    start = now - PERIOD_S[period]
    # what summarize counts: incidents open at some moment in the window or since (opened,
    # closed, escalated in it, or still unclosed: an incident is not written after it closes)
    # and actions created in it; not the whole history
    incidents = store.incidents(open_since=start, limit=None)
    actions = store.actions(created_since=start)
    events = audit_window(store, start, now)
    if state_dir is None:
        pauses = store.states("pause:")
    else:
        from autonomic.engine import pauses_in_force  # the engine imports this module

        pauses = pauses_in_force(store, state_dir)
    states = {**store.states("breaker:"), **pauses, **store.states("stopped:")}
    return summarize(period, now, incidents, actions, events, states, command=command)


def audit_window(store: Store, start: float, end: float) -> list[AuditEvent]:
    """Audit events with ``start <= ts < end``. Entries are appended one writer at a time, so
    ts grows with seq: a binary search over seq finds the first one without reading the log
    from its beginning."""

    def ts_at(seq: int) -> float | None:
        found = store.audit_events(since_seq=seq - 1, limit=1)
        return found[0].ts if found else None

    lo, hi = 1, 1
    while (t := ts_at(hi)) is not None and t < start:
        lo, hi = hi + 1, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        t = ts_at(mid)
        if t is not None and t < start:
            lo = mid + 1
        else:
            hi = mid
    out: list[AuditEvent] = []
    since = lo - 1
    while True:
        page = store.audit_events(since_seq=since, limit=_AUDIT_PAGE)
        out.extend(e for e in page if start <= e.ts < end)
        if len(page) < _AUDIT_PAGE or page[-1].ts >= end:
            return out
        since = page[-1].seq


def summarize(
    period: Period,
    now: float,
    incidents: Iterable[Incident],
    actions: Iterable[Action],
    events: Iterable[AuditEvent],
    states: Mapping[str, Mapping[str, Any]],
    *,
    command: str = "autonomic",
) -> Report:
    """The report over plain values (pure). ``states`` holds the ``breaker:*``, ``pause:*`` and
    ``stopped:*`` named state as it is now; ``command`` is how a person reaches the engine's store
    (``Config.command``, ``autonomic -c <its config>``) in the commands an action item gives."""
    start = now - PERIOD_S[period]

    def inside(ts: float | None) -> bool:
        return ts is not None and start <= ts < now

    incidents = list(incidents)
    acted = [a for a in actions if inside(a.created_at) and a.state != ActionState.CANCELLED]
    by_type: dict[str, list[Action]] = {}
    for a in acted:
        by_type.setdefault(a.type, []).append(a)
    interventions = sorted((_type_stats(t, group) for t, group in by_type.items()), key=lambda s: (-s.total, s.type))
    succeeded = sum(s.succeeded for s in interventions)
    finished = sum(s.finished for s in interventions)

    opened = [i for i in incidents if inside(i.opened_at)]
    closed = [i for i in incidents if inside(i.closed_at)]
    fixed = [i for i in closed if i.resolution in (Resolution.RESOLVED, Resolution.PREVENTED)]
    per_service = Counter(i.service for i in opened)
    top = sorted(per_service.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SERVICES]

    return Report(
        period=period,
        start=start,
        end=now,
        interventions=interventions,
        interventions_total=len(acted),
        succeeded=succeeded,
        finished=finished,
        success_rate=succeeded / finished if finished else None,
        rollbacks=sum(s.rolled_back for s in interventions),
        incidents_opened=len(opened),
        incidents_resolved=sum(1 for i in closed if i.resolution == Resolution.RESOLVED),
        incidents_prevented=sum(1 for i in closed if i.resolution == Resolution.PREVENTED),
        mttr_s=(sum(float(i.closed_at or 0.0) - i.opened_at for i in fixed) / len(fixed)) if fixed else None,
        escalations=sum(1 for i in incidents if i.state == IncidentState.ESCALATED and inside(_escalated_at(i))),
        top_services=[ServiceCount(service=s, incidents=n) for s, n in top],
        notable=[n for n in (_notable(e) for e in events if inside(e.ts)) if n is not None],
        action_items=_action_items([i for i in incidents if i.opened_at < now], states, command),
    )


def _escalated_at(inc: Incident) -> float:
    """When an escalated incident was escalated; ``updated_at`` for one stored before that was
    kept (it moves with every later finding, so it can only stand in)."""
    return inc.updated_at if inc.escalated_at is None else inc.escalated_at


def _type_stats(action_type: str, group: Sequence[Action]) -> InterventionStats:
    succeeded = sum(1 for a in group if a.state == ActionState.SUCCEEDED)
    finished = sum(1 for a in group if a.state in _FINISHED)
    return InterventionStats(
        type=action_type, total=len(group), succeeded=succeeded, finished=finished,
        rolled_back=sum(1 for a in group if a.state == ActionState.ROLLED_BACK),
        success_rate=succeeded / finished if finished else None,
    )


def _notable(e: AuditEvent) -> NotableEvent | None:
    data = e.data or {}
    if e.kind == "breaker.updated":
        if data.get("state") != "open":
            return None
        scope = data.get("scope") or e.subject.removeprefix("breaker:")
        text = f"circuit breaker opened for {scope} actions"
    elif e.kind.startswith("policy."):
        text = f"policy {e.kind.split('.', 1)[1]} by {e.actor}"
    elif e.kind in ("pause.set", "pause.lifted"):
        what = data.get("service") or "all automation"
        reason = data.get("reason") or ""
        verb = "paused" if e.kind == "pause.set" else "resumed"
        text = f"{what} {verb} by {e.actor}" + (f": {reason}" if reason else "")
    elif e.kind in ("pause.file", "pause.file_gone"):  # a pause set without the store (see engine.pause_file)
        what = data.get("service") or "all automation"
        reason = data.get("reason") or ""
        text = (f"{what} paused by a pause file" + (f": {reason}" if reason else "") if e.kind == "pause.file"
                else f"{what} resumed: its pause file is gone")
    elif e.kind in ("service.stopped_on_purpose", "service.stop_lifted"):  # a person's `autonomic stop` / start
        service, comment = data.get("service") or e.subject, data.get("comment") or ""
        text = (f"{service} stopped on purpose by {e.actor}" if e.kind == "service.stopped_on_purpose"
                else f"{service} started again by {e.actor}") + (f": {comment}" if comment else "")
    elif e.kind.startswith("pattern."):
        pattern = data.get("pattern") or data.get("pattern_id") or e.subject
        reason = data.get("reason") or ""
        service, before, after = data.get("service"), data.get("from"), data.get("to")
        if service and before and after:  # the ladder is per pattern and service: say which, as its notification does
            text = f"pattern {pattern} on {service}: autonomy {before} -> {after}" + (f" ({reason})" if reason else "")
        else:
            text = f"pattern {pattern} {e.kind.split('.', 1)[1]}" + (f": {reason}" if reason else "")
    else:
        return None
    return NotableEvent(ts=e.ts, kind=e.kind, actor=e.actor, subject=e.subject, text=text)


def _failures(n: Any) -> str:
    """``1 failure``, ``3 failures``; ``? failures`` when the stored breaker does not say."""
    return counted(n, "failure") if isinstance(n, int) else "? failures"


def _action_items(incidents: Sequence[Incident], states: Mapping[str, Mapping[str, Any]],
                  command: str = "autonomic") -> list[ActionItem]:
    items: list[ActionItem] = []
    for inc in sorted(incidents, key=lambda i: i.opened_at):
        if inc.closed_at is not None:
            continue
        if inc.state == IncidentState.AWAITING_APPROVAL:
            items.append(ActionItem(kind="approval", subject=inc.id, since=inc.updated_at,
                                    text=f"approve or deny: {inc.headline} (incident {inc.id[:8]})"))
        elif inc.state == IncidentState.ESCALATED:
            items.append(ActionItem(kind="escalated", subject=inc.id, since=_escalated_at(inc),
                                    text=f"escalated, needs a person: {inc.headline} (incident {inc.id[:8]})"))
    for key, value in sorted(states.items()):
        if key.startswith("breaker:") and value.get("state") == "open":
            scope = key.removeprefix("breaker:")
            items.append(ActionItem(kind="breaker", subject=key, since=value.get("opened_at"),
                                    text=f"circuit breaker open for {scope} actions "
                                         f"after {_failures(value.get('consecutive_failures'))} in a row"))
        elif key.startswith("pause:"):
            scope = "all automation" if key == "pause:global" else key.rsplit(":", 1)[1]
            actor = value.get("actor", "?")
            if value.get("file") is not None:  # a pause file of the engine's state_dir
                actor = f"the pause file {value['file']}" + ("" if actor == "file" else f" (set by {actor})")
            items.append(ActionItem(kind="pause", subject=key, since=value.get("ts"),
                                    text=f"{scope} paused by {actor}: {value.get('reason', '')}".rstrip(": ")))
        elif key.startswith("stopped:"):  # a person's `autonomic stop`: down until a person starts it
            service, comment = key.removeprefix("stopped:"), str(value.get("comment") or "").strip()
            items.append(ActionItem(kind="stopped", subject=key, since=value.get("ts"),
                                    text=f"{service} stopped on purpose by {value.get('actor', '?')}"
                                         + (f" ({comment})" if comment else "")
                                         + f": down until a person starts it ({command} start {service})"))
    return items


# --- rendering --------------------------------------------------------------------------------


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:.0%}"


def _title(report: Report) -> str:
    return f"autonomic {report.period} report, {_when(report.start)} to {_when(report.end)}"


def _summary_lines(r: Report) -> list[tuple[str, str]]:
    return [
        ("Interventions", str(r.interventions_total) + (
            f" ({r.succeeded} of {r.finished} finished succeeded, {_rate(r.success_rate)})" if r.finished
            else " (none finished yet)" if r.interventions_total else "")),
        ("Incidents opened", str(r.incidents_opened)),
        ("Incidents resolved", str(r.incidents_resolved)),
        ("Incidents prevented", str(r.incidents_prevented)),
        ("Mean time to resolve", "n/a" if r.mttr_s is None else duration(r.mttr_s)),
        ("Rollbacks", str(r.rollbacks)),
        ("Escalations", str(r.escalations)),
    ]


NOTHING = "Nothing happened in this period: no incidents, no interventions, no notable events."


def render_markdown(report: Report) -> str:
    """The report as Markdown: summary, interventions by type, top services, notable events,
    action items."""
    r = report
    out = [f"# {_title(r)}", ""]
    if r.quiet:
        out += [NOTHING, ""]
    out += ["## Summary", ""]
    out += [f"- {label}: {value}" for label, value in _summary_lines(r)]
    out += ["", "## Interventions by action type", ""]
    if r.interventions:
        out += ["| action | total | succeeded | finished | rolled back | success rate |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        out += [f"| {s.type} | {s.total} | {s.succeeded} | {s.finished} | {s.rolled_back} | {_rate(s.success_rate)} |"
                for s in r.interventions]
    else:
        out.append("No interventions.")
    out += ["", "## Top services by incidents", ""]
    if r.top_services:
        out += ["| service | incidents |", "| --- | ---: |"]
        out += [f"| {s.service} | {s.incidents} |" for s in r.top_services]
    else:
        out.append("No incidents.")
    out += ["", "## Notable events", ""]
    out += [f"- {_when(e.ts)}: {e.text}" for e in r.notable] or ["None."]
    out += ["", "## Action items", ""]
    out += [f"- {item.text}" for item in r.action_items] or ["None: nothing waits for a person."]
    return "\n".join(out) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:52rem;color:#1f2328;
padding:0 1rem}h1{font-size:1.4rem}h2{font-size:1.1rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem;
margin-top:1.8rem}table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #d0d7de;padding:.25rem .6rem;
text-align:left}td.n,th.n{text-align:right}.quiet{background:#f6f8fa;padding:.6rem 1rem;border-radius:6px}
.summary td:first-child{font-weight:600}svg{display:block;margin:.5rem 0}.muted{color:#656d76}
"""


def _bars(title: str, rows: Sequence[tuple[str, int, int | None]], colour: str, part_label: str = "") -> str:
    """A horizontal bar chart as inline SVG: one bar per (label, value, part); ``part`` (when
    given) is drawn over the bar in green, e.g. the succeeded share of interventions."""
    label_w, bar_w, row_h, pad = 150, 300, 22, 6
    top = 24 if part_label else 4
    height = top + row_h * len(rows) + pad
    width = label_w + bar_w + 150
    peak = max((v for _, v, _ in rows), default=0) or 1
    esc = html.escape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{esc(title)}"><title>{esc(title)}</title>']
    if part_label:
        parts.append(f'<rect x="{label_w}" y="4" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{label_w + 16}" y="14" font-size="12">total</text>'
                     f'<rect x="{label_w + 60}" y="4" width="12" height="12" fill="#2da44e"/>'
                     f'<text x="{label_w + 76}" y="14" font-size="12">{esc(part_label)}</text>')
    for i, (name, value, part) in enumerate(rows):
        label = name if len(name) <= 22 else name[:21] + "…"
        y = top + i * row_h
        w = bar_w * value / peak
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" font-size="12" text-anchor="end">{esc(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}"/>')
        if part:
            parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{bar_w * part / peak:.1f}" height="{row_h - 6}" '
                         'fill="#2da44e"/>')
        caption = f"{value}" + (f" ({part} {part_label})" if part_label else "")
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">{esc(caption)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page: inline CSS, charts as inline SVG, no scripts
    and no external assets."""
    r = report
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(_title(r))}</title><style>{_CSS}</style></head><body>", f"<h1>{esc(_title(r))}</h1>"]
    if r.quiet:
        out.append(f'<p class="quiet">{esc(NOTHING)}</p>')
    out.append('<h2>Summary</h2><table class="summary">')
    out += [f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in _summary_lines(r)]
    out.append("</table><h2>Interventions by action type</h2>")
    if r.interventions:
        out.append(_bars("Interventions by action type", [(s.type, s.total, s.succeeded) for s in r.interventions],
                         "#0969da", "succeeded"))
        out.append('<table><tr><th>action</th><th class="n">total</th><th class="n">succeeded</th>'
                   '<th class="n">finished</th><th class="n">rolled back</th><th class="n">success rate</th></tr>')
        out += [f'<tr><td>{esc(s.type)}</td><td class="n">{s.total}</td><td class="n">{s.succeeded}</td>'
                f'<td class="n">{s.finished}</td><td class="n">{s.rolled_back}</td>'
                f'<td class="n">{_rate(s.success_rate)}</td></tr>' for s in r.interventions]
        out.append("</table>")
    else:
        out.append('<p class="muted">No interventions.</p>')
    out.append("<h2>Top services by incidents</h2>")
    if r.top_services:
        out.append(_bars("Incidents per service", [(s.service, s.incidents, None) for s in r.top_services],
                         "#bf8700"))
    else:
        out.append('<p class="muted">No incidents.</p>')
    out.append("<h2>Notable events</h2>")
    if r.notable:
        out.append("<ul>" + "".join(f"<li>{esc(_when(e.ts))}: {esc(e.text)}</li>" for e in r.notable) + "</ul>")
    else:
        out.append('<p class="muted">None.</p>')
    out.append("<h2>Action items</h2>")
    if r.action_items:
        out.append("<ul>" + "".join(f"<li>{esc(i.text)}</li>" for i in r.action_items) + "</ul>")
    else:
        out.append('<p class="muted">None: nothing waits for a person.</p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render(report: Report, fmt: Format) -> str:
    return render_html(report) if fmt == "html" else render_markdown(report)


# --- schedules --------------------------------------------------------------------------------


class ReportSchedule(_Frozen):
    """A report delivered through the notifiers whenever ``cron`` fires. The cron is read in UTC
    whatever the host's time zone (no time-zone setting, so no daylight saving)."""

    period: Period
    cron: str
    format: Format = "md"
    level: Level = Level.INFO

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, v: str) -> str:
        if len(v.split()) != 5 or not croniter.is_valid(v):
            raise ValueError(f"not a valid five-field cron expression: {v!r}")
        return v

    @property
    def key(self) -> str:
        """The schedule's name in ``last_run``."""
        return f"{self.period} {self.format} {self.cron}"

    def last_fire(self, now: float) -> float:
        """The latest time at or before ``now`` when ``cron`` fires."""
        # croniter's get_prev excludes its start; cron fires on whole minutes, so starting one
        # second past floor(now) includes a fire at exactly now and nothing after it
        start = datetime.fromtimestamp(int(now) + 1, UTC)
        return float(croniter(self.cron, start).get_prev(float))


def due_reports(schedules: Iterable[ReportSchedule], last_run: Mapping[str, float], now: float) -> list[ReportSchedule]:
    """The schedules whose cron fired after their last run (by :attr:`ReportSchedule.key`) and at
    or before ``now``. One that never ran is due at its latest fire. Missed fires collapse into
    one report; the caller records ``last_run[key] = now`` once it is delivered."""
    return [s for s in schedules if s.last_fire(now) > last_run.get(s.key, float("-inf"))]


def report_notification(store: Store, schedule: ReportSchedule, now: float,
                        state_dir: Path | None = None, command: str = "autonomic") -> Notification:
    """The scheduled report for the period ending at ``now`` (the engine passes the cron's fire
    time), as a notification whose body is the rendered report (``state_dir``, ``command``: see
    :func:`build_report`)."""
    report = build_report(store, schedule.period, now, state_dir, command)
    return Notification(level=schedule.level, ts=now, title=_title(report), body=render(report, schedule.format))
