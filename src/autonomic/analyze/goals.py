"""Goals: error-budget accounting and multiwindow burn-rate rules over the samples the engine
collects. Pure: no I/O; the engine feeds samples in, asks for findings, and stores the state.

Accounting. Each goal (:class:`~autonomic.model.Goal`) counts its samples, good and all, in time
buckets on a fixed grid (multiples of the width since the epoch): *fine* buckets ``step_s`` wide
kept for the longest burn window of at most :data:`FINE_MAX_BUCKETS` of them (six hours at the
default 60 s), and *coarse* buckets :data:`COARSE_STEPS` times as wide (an hour) kept for the
goal's window (30 days: 720 of them). A count over the last ``W`` seconds sums the buckets that
overlap ``(now - W, now]``: fine ones when ``W`` is within the fine span, else coarse ones, so it
may include up to one bucket's width more. The whole state is two small maps of integers,
:meth:`Budget.state`, and the rules firing (:meth:`GoalTracker.state`), which the engine persists
in the store and gives back after a restart; a sample at or before the newest one saved is then
not counted again, and a rule that was firing goes on with the same episode. A NaN sample is no
measurement and is not counted (as the engine's series drop it), neither good nor bad.

* **bad fraction** over ``W``: ``1 - good / total``;
* **burn rate** over ``W``: the bad fraction divided by the budget, ``1 - target`` (1.0 spends the
  budget in exactly the goal's window; 14.4 spends 2% of a 30-day budget in an hour);
* **budget remaining**: ``1 - bad / ((1 - target) * total)`` over the goal's window (below 0: overspent);
* **exhausted in**: how long until the bad samples use up what is left of the budget, at the rate
  of samples and the burn rate of the rule's long window: ``left / (spend - growth)``, where ``left``
  is ``(1 - target) * total - bad`` over the goal's window, ``spend`` the bad samples a second
  (``burn * (1 - target) * rate``) and ``growth`` what the budget grows a second while the
  window is not yet full of history (``(1 - target) * rate``; 0 once it is, when this is the
  workbook's ``remaining * window / burn``). None when it is not being spent at this rate.

Rules (:class:`~autonomic.model.BurnRule`, Google SRE workbook "Alerting on SLOs"). A rule fires
when the burn rate is at least its ``factor`` over both its long and its short window; one that
fires keeps firing while the short window alone stays at or above it (the long window lags the
end of a burn, the short one sees it within ``short_s``; requiring it alone to hold on keeps one
burn one episode, not a finding that comes and goes as the long window hovers). No rule fires
before the goal has seen samples for at least the rule's short window and the short window holds
at least one sample (a blip right after the start is no trend); nor, after a restore whose first
new sample came more than the shortest short window after the newest one saved (an engine stopped
a while: nobody counted meanwhile), before the samples since then span the rule's short window,
unless the rule was firing when the state was saved (it then goes on while its short window burns).
A rule saved as firing is not carried over a gap longer than its long window (from the newest
sample saved to the first one counted after, or to now while none came): every sample that made
it fire has left its windows, so it stops (the transition says why) and fires again only on
fresh samples, as a rule never firing would.

A firing goal gives one FORECAST finding per evaluation (cause ``error_budget_burn``, metric
``goal:<name>``; the engine stores repeats of it sparingly and groups them into one incident),
from the most severe rule firing: a page rule is severity critical unless the goal's priority is
``ticket``, a ticket rule warning. Its evidence holds the burn rate over every rule window, the
budget remaining and the predicted exhaustion.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autonomic.clock import duration
from autonomic.model import BurnRule, Finding, FindingKind, Goal, Sample, Severity

CAUSE = "error_budget_burn"
GOAL_STATE_PREFIX = "goal:"
FINE_MAX_BUCKETS = 1440  # a burn window wider than this many fine buckets is counted in coarse ones
COARSE_STEPS = 60  # a coarse bucket is this many fine ones wide
_STATE_VERSION = 1
MAX_WINDOW_S = 366 * 86_400.0  # the longest window a goal may have (Goal.window_days)


def goal_key(service: str, goal: str) -> str:
    """The store's state key of a goal's accounting: ``goal:<service>:<goal>``."""
    return f"{GOAL_STATE_PREFIX}{service}:{goal}"


def goal_metric(goal: str) -> str:
    """The ``metric`` of a goal's findings: ``goal:<name>``."""
    return f"goal:{goal}"


def _sli(goal: Goal) -> list[Any]:
    """What makes the counts mean what they mean: a change of it starts the count afresh."""
    return [goal.metric, goal.min, goal.max, goal.step_s]


class Budget:
    """The error-budget accounting of one goal: good and total sample counts per time bucket."""

    def __init__(self, goal: Goal) -> None:
        self.goal = goal
        self.fine_s = goal.step_s
        self.coarse_s = goal.step_s * COARSE_STEPS
        windows = [w for r in goal.rules for w in (r.long_s, r.short_s)]
        self.fine_span_s = max([w for w in windows if w <= FINE_MAX_BUCKETS * self.fine_s] or [self.fine_s])
        self.fine: dict[int, list[int]] = {}  # bucket index -> [good, total]
        self.coarse: dict[int, list[int]] = {}
        self.first_ts: float | None = None  # the first sample counted
        self.last_ts: float | None = None  # the newest sample counted
        # when the history the rules judge began: the first sample, or the first after a restore
        # that came more than the shortest short window after the newest sample saved (a gap:
        # nobody counted meanwhile, and one sample after it is no trend)
        self.since: float | None = None
        self.gap_s = min(r.short_s for r in goal.rules)
        self.saved_to: float | None = None  # restored: the newest sample counted before the save
        self._resumed = True  # whether a sample came since the restore
        self.resumed_at: float | None = None  # restored: the first sample counted after the save

    def add(self, ts: float, value: float) -> None:
        """Count one sample at ``ts``. A NaN is no measurement (a source that could not measure),
        not a bad sample: it is not counted, as the engine's series drop it. After a restore, a
        sample at or before the newest one saved is not counted again (a source that hands back
        its recent past after a restart, like a PromQL range query)."""
        if value != value:
            return
        if self.saved_to is not None:
            if ts <= self.saved_to:
                return
            if not self._resumed:
                self._resumed, self.resumed_at = True, ts
                if ts - self.saved_to > self.gap_s:
                    self.since = ts
        good = int(self.goal.good(value))
        for buckets, width in ((self.fine, self.fine_s), (self.coarse, self.coarse_s)):
            cell = buckets.setdefault(math.floor(ts / width), [0, 0])
            cell[0] += good
            cell[1] += 1
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        self.since = ts if self.since is None else min(self.since, ts)

    def gap(self, now: float) -> float | None:
        """After a restore, how long nobody counted: from the newest sample saved to the first one
        counted since, or to ``now`` while none has come. None when not restored (or nothing was
        saved to count from)."""
        if self.saved_to is None:
            return None
        return (now if self.resumed_at is None else self.resumed_at) - self.saved_to

    def prune(self, now: float) -> None:
        """Forget the buckets no window reaches back to any more."""
        for buckets, width, keep in ((self.fine, self.fine_s, self.fine_span_s),
                                     (self.coarse, self.coarse_s, self.goal.window_s)):
            oldest = math.floor((now - keep) / width) - 1
            for cell in [c for c in buckets if c < oldest]:
                del buckets[cell]
        if self.first_ts is not None and not self.coarse:
            self.first_ts = self.last_ts = self.since = None

    def counts(self, window_s: float, now: float) -> tuple[int, int]:
        """(good, total) over the last ``window_s`` seconds before ``now``."""
        buckets, width = (self.fine, self.fine_s) if window_s <= self.fine_span_s else (self.coarse, self.coarse_s)
        first, last = math.floor((now - window_s) / width), math.floor(now / width)
        good = total = 0
        if last - first + 1 < len(buckets):  # a short window: look its cells up
            for cell in range(first, last + 1):
                counted = buckets.get(cell)
                if counted is not None:
                    good += counted[0]
                    total += counted[1]
            return good, total
        for cell, (g, t) in buckets.items():
            if first <= cell <= last:
                good += g
                total += t
        return good, total

    def burn(self, window_s: float, now: float) -> float | None:
        """The burn rate over the last ``window_s``: the bad fraction over the budget (None: no sample)."""
        good, total = self.counts(window_s, now)
        if total == 0:
            return None
        return (1.0 - good / total) / (1.0 - self.goal.target)

    def remaining(self, now: float) -> float | None:
        """The fraction of the error budget left over the goal's window (negative: overspent;
        None: no sample yet)."""
        good, total = self.counts(self.goal.window_s, now)
        if total == 0:
            return None
        return 1.0 - (total - good) / ((1.0 - self.goal.target) * total)

    def exhausted_in(self, burn_window_s: float, now: float) -> float | None:
        """Seconds until the budget is spent at the sample rate and burn rate of the last
        ``burn_window_s`` (see the module docstring): 0 when it is spent, None when it is not
        being spent at this rate (or there is no sample)."""
        good, total = self.counts(self.goal.window_s, now)
        if total == 0 or self.first_ts is None:
            return None
        budget = 1.0 - self.goal.target
        left = budget * total - (total - good)
        if left <= 0:
            return 0.0
        recent_good, recent = self.counts(burn_window_s, now)
        rate = recent / burn_window_s  # samples a second
        spend = (recent - recent_good) / burn_window_s  # bad samples a second
        growth = 0.0 if self.first_ts <= now - self.goal.window_s else budget * rate
        if spend <= growth:
            return None
        return left / (spend - growth)

    def state(self) -> dict[str, Any]:
        """JSON-ready state; :meth:`from_state` reads it back."""
        return {"v": _STATE_VERSION, "sli": _sli(self.goal), "first_ts": self.first_ts, "last_ts": self.last_ts,
                "since": self.since, "window_s": self.goal.window_s,
                "fine": [[c, g, t] for c, (g, t) in sorted(self.fine.items())],
                "coarse": [[c, g, t] for c, (g, t) in sorted(self.coarse.items())]}

    @classmethod
    def from_state(cls, goal: Goal, state: Mapping[str, Any]) -> Budget:
        """The budget ``state`` saved. ValueError when it is malformed or was counted for another
        SLI (metric, bounds or step changed: its counts would mean something else)."""
        if not isinstance(state, Mapping) or state.get("v") != _STATE_VERSION:
            raise ValueError(f"goal {goal.name}: not a version {_STATE_VERSION} budget state")
        if state.get("sli") != _sli(goal):
            raise ValueError(f"goal {goal.name}: counted for another SLI ({state.get('sli')!r}); it starts afresh")
        budget = cls(goal)
        try:
            for key in ("fine", "coarse"):
                into = getattr(budget, key)
                for cell, good, total in state[key]:
                    if not (isinstance(cell, int) and isinstance(good, int) and isinstance(total, int)
                            and 0 <= good <= total):
                        raise ValueError(f"bad {key} bucket {[cell, good, total]!r}")
                    into[cell] = [good, total]
            for key in ("first_ts", "last_ts"):
                value = state[key]
                setattr(budget, key, None if value is None else float(value))
            since = state.get("since", budget.first_ts)  # absent: saved before it was kept
            budget.since = None if since is None else float(since)
            budget.saved_to, budget._resumed = budget.last_ts, False
        except (KeyError, TypeError) as exc:
            raise ValueError(f"goal {goal.name}: malformed budget state ({exc!r})") from exc
        except ValueError as exc:
            raise ValueError(f"goal {goal.name}: malformed budget state ({exc})") from exc
        return budget


def aged_out_at(state: Mapping[str, Any]) -> float | None:
    """When every count of a saved goal state (:meth:`Budget.state`) has left the goal's window,
    so deleting it loses nothing: its newest sample counted plus its window (a state saved before
    the window was kept in it: the longest window a goal may have, 366 days). None when it holds
    no count, or none that can be read: nothing in it to lose."""
    last, window = state.get("last_ts"), state.get("window_s", MAX_WINDOW_S)
    if not isinstance(last, (int, float)) or isinstance(last, bool) or last != last:
        return None
    if not isinstance(window, (int, float)) or isinstance(window, bool) or not 0 < window <= MAX_WINDOW_S:
        window = MAX_WINDOW_S
    return float(last) + float(window)


def windows(goal: Goal) -> list[float]:
    """Every window a rule of ``goal`` looks at, shortest first."""
    return sorted({w for r in goal.rules for w in (r.short_s, r.long_s)})


def goal_status(service: str, goal: Goal, budget: Budget | None, now: float) -> dict[str, Any]:
    """What ``autonomic status`` and ``GET /api/v1/goals`` show of one goal: its objective, the
    budget remaining, the burn rate over every rule window (None where there is no sample) and,
    at the burn of its shortest long window, when the budget would be spent."""
    burns = {f"{w:g}": (None if budget is None else budget.burn(w, now)) for w in windows(goal)}
    remaining = None if budget is None else budget.remaining(now)
    long_s = min(r.long_s for r in goal.rules)
    current = burns.get(f"{long_s:g}")
    eta = None if budget is None else budget.exhausted_in(long_s, now)
    total = 0 if budget is None else budget.counts(goal.window_s, now)[1]
    return {"service": service, "goal": goal.name, "objective": goal.describe(), "target": goal.target,
            "window_days": goal.window_days, "priority": goal.priority, "samples": total,
            "budget_remaining": remaining, "burn": burns, "burn_window_s": long_s, "current_burn": current,
            "exhausted_in_s": eta, "last_sample_at": None if budget is None else budget.last_ts}


def stored_goals(goals: Mapping[str, Sequence[Goal]], states: Mapping[str, Mapping[str, Any]],
                 now: float) -> list[dict[str, Any]]:
    """:func:`goal_status` of every goal in ``goals`` (by service) from the budget states the engine
    saved (``states``, by :func:`goal_key`), as of its newest sample counted (``as_of``; ``now`` for
    a goal with none saved yet): what ``autonomic status`` and the API show, read from the store
    alone. ``saved`` says whether there was a state to read; one that cannot be read is shown as
    none, with ``note`` saying why."""
    out = []
    for service, service_goals in goals.items():
        for goal in service_goals:
            state, budget, note = states.get(goal_key(service, goal.name)), None, None
            if state is not None:
                try:
                    budget = Budget.from_state(goal, state)
                except ValueError as exc:
                    note = str(exc)
            as_of = budget.last_ts if budget is not None and budget.last_ts is not None else now
            out.append({**goal_status(service, goal, budget, as_of), "as_of": as_of, "saved": budget is not None,
                        "note": note})
    return out


def _severity(rule: BurnRule, goal: Goal) -> Severity:
    return Severity.CRITICAL if rule.severity == "page" and goal.priority == "page" else Severity.WARNING


class GoalTracker:
    """Every configured goal's budget, fed with samples, asked for findings (see the module
    docstring). ``goals`` maps a service to its goals."""

    name = "goals"

    def __init__(self, goals: Mapping[str, Sequence[Goal]]) -> None:
        self.goals: dict[tuple[str, str], Goal] = {(s, g.name): g for s, gs in goals.items() for g in gs}
        self.budgets: dict[tuple[str, str], Budget] = {key: Budget(g) for key, g in self.goals.items()}
        self._by_metric: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for (service, name), goal in self.goals.items():
            self._by_metric.setdefault((service, goal.metric), []).append((service, name))
        self._firing: dict[tuple[str, str], set[int]] = {key: set() for key in self.goals}
        # rules that started (first set) or stopped (second) firing since the engine last saved
        # the goal (:meth:`transitions`, :meth:`saved`): what it audits and saves at once
        self._changed: dict[tuple[str, str], tuple[set[int], set[int]]] = {}
        # why rules stopped firing, when it was not their short window (:meth:`_end_stale`)
        self._reasons: dict[tuple[str, str], str] = {}
        # rules restored as firing whose restart gap is not over yet (no sample since the restore)
        self._carried: dict[tuple[str, str], set[int]] = {}

    def observe(self, samples: Iterable[Sample]) -> None:
        """Count the samples of every goal's metric (any other sample is passed over)."""
        if not self._by_metric:  # no goal: not even a look at each sample
            return
        for s in samples:
            keys = self._by_metric.get((s.service, s.metric))
            if keys:
                for key in keys:
                    self.budgets[key].add(s.ts, s.value)

    def detect(self, now: float) -> list[Finding]:
        """At most one finding per goal: of its most severe rule firing now."""
        out = []
        for key, goal in self.goals.items():
            budget = self.budgets[key]
            budget.prune(now)
            self._end_stale(key, goal, budget, now)
            fired = self._fired(goal, budget, self._firing[key], now)
            firing = {i for i, _, _ in fired}
            if firing != self._firing[key]:
                started, stopped = self._changed.setdefault(key, (set(), set()))
                started |= firing - self._firing[key]
                stopped |= self._firing[key] - firing
            self._firing[key] = firing
            if fired:
                out.append(self._finding(key[0], goal, budget, fired, now))
        return out

    def _end_stale(self, key: tuple[str, str], goal: Goal, budget: Budget, now: float) -> None:
        """A rule restored as firing stops, said why, when nobody counted for longer than its long
        window after the save (the engine was down that long): every sample that made it fire has
        left its windows, so it fires again only as a fresh one would, on new samples. The gap is
        over at the first sample counted since the restore; until then it grows with ``now``."""
        carried = self._carried.get(key)
        if carried is None:
            return
        gap = budget.gap(now)
        stale = {i for i in carried if gap is not None and gap > goal.rules[i].long_s}
        if stale:
            carried -= stale
            self._firing[key] -= stale
            started, stopped = self._changed.setdefault(key, (set(), set()))
            stopped |= stale
            longs = ", ".join(sorted({duration(goal.rules[i].long_s) for i in stale}))
            self._reasons[key] = (f"no sample was counted for {duration(gap or 0.0)} after the newest one saved, "
                                  f"longer than the long window ({longs}) of the rule firing then: that firing is "
                                  "not carried over the gap; the rule fires again only on fresh samples")
        if not carried or budget.resumed_at is not None:
            del self._carried[key]

    @staticmethod
    def _fired(goal: Goal, budget: Budget, firing: set[int], now: float) -> list[tuple[int, float, float]]:
        """(rule index, long burn, short burn) of every rule firing now."""
        fired = []
        for i, rule in enumerate(goal.rules):
            if (budget.since is None or budget.since > now - rule.short_s) and i not in firing:
                continue  # not yet a short window of history (since the start, or a restart's gap)
            short, long = budget.burn(rule.short_s, now), budget.burn(rule.long_s, now)
            if short is None or long is None or short < rule.factor:
                continue
            if long >= rule.factor or i in firing:
                fired.append((i, long, short))
        return fired

    def _finding(self, service: str, goal: Goal, budget: Budget, fired: list[tuple[int, float, float]],
                 now: float) -> Finding:
        i, long, short = max(fired, key=lambda f: (_severity(goal.rules[f[0]], goal).rank, goal.rules[f[0]].factor))
        rule = goal.rules[i]
        left = budget.remaining(now)
        eta = budget.exhausted_in(rule.long_s, now)
        if left is not None and left <= 0:
            when = "the budget is spent"
        else:
            when = f"{max(left or 0.0, 0.0):.0%} of the budget left"
            if eta is not None:
                when += f", spent in {duration(eta)} at this rate"
        kind = "fast" if rule.severity == "page" else "slow"
        summary = (f"goal {goal.name} ({goal.describe()}): error budget burning at {long:.1f}x the sustainable "
                   f"rate over {duration(rule.long_s)}, {short:.1f}x over the last {duration(rule.short_s)} "
                   f"({kind} burn: "
                   f"{'pages' if _severity(rule, goal) == Severity.CRITICAL else 'a ticket'} at {rule.factor:g}x); "
                   f"{when}")
        evidence: dict[str, Any] = {
            "goal": goal.name, "objective": goal.describe(), "target": goal.target,
            "window_days": goal.window_days, "priority": goal.priority,
            "rule": rule.model_dump(mode="json"),
            "burn": {f"{w:g}": _round(budget.burn(w, now)) for w in windows(goal)},
            "budget_remaining": _round(left),
            "exhausted_in_s": _round(eta),
            "exhausted_at": None if eta is None else round(now + eta, 3),
            "rules_firing": [goal.rules[j].model_dump(mode="json") for j, _, _ in fired],
        }
        return Finding(service=service, metric=goal_metric(goal.name), kind=FindingKind.FORECAST, cause=CAUSE,
                       severity=_severity(rule, goal), confidence=0.9, ts=now, value=round(long, 4),
                       threshold=rule.factor, summary=summary, evidence=evidence)

    def status(self, now: float) -> list[dict[str, Any]]:
        """:func:`goal_status` of every goal."""
        return [goal_status(s, g, self.budgets[(s, n)], now) for (s, n), g in self.goals.items()]

    def state(self, service: str, name: str) -> dict[str, Any]:
        """What the store keeps of one goal (under :func:`goal_key`): its budget's counts
        (:meth:`Budget.state`) and, under ``firing``, the rules firing now (each as configured:
        a rule changed since is not firing on restore)."""
        goal = self.goals[(service, name)]
        return {**self.budgets[(service, name)].state(),
                "firing": [goal.rules[i].model_dump(mode="json") for i in sorted(self._firing[(service, name)])]}

    def checkpoint(self) -> dict[str, dict[str, Any]]:
        """Every goal's :meth:`state` by its store key (:func:`goal_key`)."""
        return {goal_key(s, n): self.state(s, n) for (s, n) in self.goals}

    def transitions(self) -> list[dict[str, Any]]:
        """The goals whose rules started or stopped firing since each was last :meth:`saved`: its
        ``service``, ``goal``, the rules that ``started`` and that ``stopped`` firing meanwhile (a
        rule in both: an episode that began and ended before it was saved) and the rules
        ``firing`` now; with a ``reason`` when rules stopped for a reason other than their short
        window (a restart's gap longer than their long window). What the engine audits and saves
        at once, so a restart goes on with the same episode (:meth:`restore`)."""
        out = []
        for (service, name), (started, stopped) in self._changed.items():
            rules = self.goals[(service, name)].rules
            change = {"service": service, "goal": name,
                      "started": [rules[i].model_dump(mode="json") for i in sorted(started)],
                      "stopped": [rules[i].model_dump(mode="json") for i in sorted(stopped)],
                      "firing": [rules[i].model_dump(mode="json") for i in sorted(self._firing[(service, name)])]}
            reason = self._reasons.get((service, name))
            out.append(change if reason is None else {**change, "reason": reason})
        return out

    def saved(self, service: str, name: str) -> None:
        """The goal's :meth:`transitions` are saved: forget them."""
        self._changed.pop((service, name), None)
        self._reasons.pop((service, name), None)

    def restore(self, states: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
        """Take back each goal's budget and the rules that were firing from ``states`` (by store
        key); a goal without one, or whose state is malformed or for another SLI, starts afresh.
        A rule saved as firing goes on firing while its short window burns at its factor, even
        before a restart's gap has a short window of new history (that gate keeps a blip from
        starting an episode, not one already told from going on), unless nobody counted for
        longer than its long window after the save: then it stops at the first :meth:`detect`
        that sees the gap (a transition, with the gap as its ``reason``) and fires again only on
        fresh samples. A saved rule that is no longer configured is dropped. One note per state
        (or part of one) not used."""
        notes = []
        for (service, name), goal in self.goals.items():
            state = states.get(goal_key(service, name))
            if state is None:
                continue
            try:
                self.budgets[(service, name)] = Budget.from_state(goal, state)
            except ValueError as exc:
                notes.append(f"service {service}: {exc}")
                continue
            try:
                saved = [BurnRule.model_validate(r) for r in state.get("firing") or []]
            except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
                notes.append(f"service {service}: goal {name}: the rules saved as firing are malformed, "
                             f"taken as none ({exc})")
                continue
            self._firing[(service, name)] = {i for i, rule in enumerate(goal.rules) if rule in saved}
            if self._firing[(service, name)]:
                self._carried[(service, name)] = set(self._firing[(service, name)])
        return notes


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)
