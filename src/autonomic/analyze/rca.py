"""Root-cause ranking over the service dependency graph (pure: no I/O).

Inputs are a dependency graph (edges ``caller -> callee``: the caller depends on the callee)
and two sets of long-format samples ``timestamp,service,metric,value``: the incident
*window* and a normal *baseline* period. The output ranks every candidate service, best
first, with a role (``root_cause``, ``impacted``, ``no_data`` or ``unaffected``) and the
evidence for and against it being a root cause.

How a service is judged
-----------------------
1. **Deviation.** For each (service, metric) the baseline gives a centre and a robust
   spread: ``median`` and ``sigma = max(1.4826 * MAD, rel_floor * |median|, abs_floor)`` (and
   at least the metric's own floor in ``RcaParams.floors``, if given).
   In the window, ``z_t = |x_t - median| / sigma`` (or only the rise, or only the fall, for a
   metric given a direction in ``RcaParams.directions``). A metric is *anomalous* when
   ``z > z_threshold`` for ``consecutive`` samples in a row (noise spikes do not count);
   its *onset* is the timestamp of the first such run and its *sustained z* is the largest
   z that held for ``consecutive`` samples (max over t of the run's min). A service's z is
   the largest sustained z of its metrics; its onset the earliest onset of its metrics.
2. **Explanation (the graph).** An anomalous service ``s`` is *explained by* a direct
   dependency ``d`` when ``d`` is anomalous too and its anomaly began no later than
   ``s``'s. A root cause is an anomalous service explained by nobody (all its dependencies
   healthy, or anomalous only later). In a cycle every member may be explained by another
   member; when a group of services explain each other and nothing outside explains any of
   them, the best-scoring member of the group is its root cause. Every other anomalous
   service is *impacted*, and ``caused_by`` names the root causes its chain leads to.
3. **Random walk (MicroRCA-style personalised PageRank).** A walker starts at services in
   proportion to their anomaly ``a = min(z, z_cap) / z_cap`` and moves from a service
   towards its dependencies with weight ``a`` of the dependency, back to a caller with
   weight ``backward * a`` of the caller, and stays with weight
   ``max(0, a_self - max a of its dependencies)``; with probability ``1 - damping`` it
   restarts. The stationary probability ``P`` (divided by its maximum) is high where the
   anomaly drains to: the deepest anomalous dependency.

Score
-----
``inner = w_walk * P + w_early * E + w_size * A`` (weights default 0.4 / 0.3 / 0.3, sum 1),
where ``E`` is 1 for the earliest anomalous candidate falling linearly to 0 for the latest
(0 when not anomalous) and ``A = min(z, z_cap) / z_cap``. The role sets the band, so the
ranking always lists root causes first, then impacted services, then the rest::

    root_cause   score = 0.50 + 0.50 * inner      in [0.5, 1]
    impacted     score = 0.25 + 0.25 * inner      in [0.25, 0.5]
    otherwise    score = 0.25 * inner             in [0, 0.25]

``--target`` restricts candidates to the target and what it depends on, transitively.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autonomic.errors import ConfigError, Problem
from autonomic.longcsv import LongCsv
from autonomic.printable import counted, listed

Role = Literal["root_cause", "impacted", "no_data", "unaffected"]
_BAND: dict[str, tuple[float, float]] = {
    "root_cause": (0.5, 0.5),
    "impacted": (0.25, 0.25),
    "no_data": (0.0, 0.25),
    "unaffected": (0.0, 0.25),
}


class RcaParams(BaseModel):
    """Knobs of the ranking; the defaults are what ``autonomic rca`` uses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    z_threshold: float = Field(default=4.0, gt=0)
    consecutive: int = Field(default=3, ge=1)
    z_cap: float = Field(default=30.0, gt=0)
    rel_floor: float = Field(default=0.01, ge=0)  # sigma >= rel_floor * |median|
    abs_floor: float = Field(default=1e-6, gt=0)  # sigma >= abs_floor
    damping: float = Field(default=0.85, gt=0, lt=1)
    backward: float = Field(default=0.2, ge=0)
    w_walk: float = Field(default=0.4, ge=0)
    w_early: float = Field(default=0.3, ge=0)
    w_size: float = Field(default=0.3, ge=0)
    # Live use: only a departure still held at the end of the window counts (its onset is where
    # that last stretch began); a dependency that has recovered explains nothing now.
    ongoing: bool = False
    # Per metric, the direction in which a departure is trouble: 1 (only rises count: latency,
    # errors), -1 (only falls: up, availability); metrics not named count both ways.
    directions: dict[str, Literal[1, -1]] = Field(default_factory=dict)
    # Per metric, the smallest sigma in its own unit: below it a change is jitter, whatever the
    # baseline's spread (a 1 ms probe moving by 2 ms under load explains nobody's second).
    floors: dict[str, float] = Field(default_factory=dict)


class RankedService(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    service: str
    score: float
    role: Role
    anomalous: bool
    onset: float | None  # first timestamp of a sustained departure from baseline
    max_z: float  # largest sustained robust z over its metrics (uncapped)
    top_metric: str | None
    explained_by: list[str]  # anomalous direct dependencies that started no later
    caused_by: list[str]  # root causes its explanation chain leads to
    evidence: list[str]  # for it being a root cause
    evidence_against: list[str]  # against it being a root cause


class RcaReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ranking: list[RankedService]
    root_causes: list[str]
    target: str | None
    warnings: list[str]


def parse_graph(doc: Any, source: str) -> list[tuple[str, str]]:
    """Validate ``{"edges": [{"from": caller, "to": callee}, ...]}``; returns unique edges in order.

    Anything else is a ConfigError naming the field (``edges[2].to``). Self-loops are kept
    out of the edge list (they say nothing about cause) but are not an error.
    """
    if not isinstance(doc, dict) or "edges" not in doc:
        raise ConfigError([Problem(source, None, "edges", 'expected an object {"edges": [{"from": ..., "to": ...}]}')])
    edges_doc = doc["edges"]
    if not isinstance(edges_doc, list):
        raise ConfigError([Problem(source, None, "edges", f"must be a list, got {type(edges_doc).__name__}")])
    problems: list[Problem] = []
    edges: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for i, e in enumerate(edges_doc):
        if not isinstance(e, dict):
            problems.append(Problem(source, None, f"edges[{i}]", "must be an object with 'from' and 'to'"))
            continue
        ends = []
        for key in ("from", "to"):
            v = e.get(key)
            if not isinstance(v, str) or not v.strip():
                problems.append(Problem(source, None, f"edges[{i}].{key}", "must be a non-empty service name"))
            else:
                ends.append(v.strip())
        extra = sorted(set(e) - {"from", "to"})
        if extra:
            problems.append(Problem(source, None, f"edges[{i}].{extra[0]}", "unknown field (allowed: from, to)"))
        if len(ends) == 2 and ends[0] != ends[1] and (ends[0], ends[1]) not in seen:
            seen.add((ends[0], ends[1]))
            edges.append((ends[0], ends[1]))
    if problems:
        raise ConfigError(problems)
    return edges


# --- analysis ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MetricState:
    metric: str
    z: float  # sustained z
    onset: float | None
    median: float
    peak_value: float


def _metric_state(metric: str, window: tuple[np.ndarray, np.ndarray], base: np.ndarray, p: RcaParams) -> _MetricState:
    ts, x = window
    med = float(np.median(base))
    mad = float(np.median(np.abs(base - med)))
    sigma = max(1.4826 * mad, p.rel_floor * abs(med), p.abs_floor, p.floors.get(metric, 0.0))
    way = p.directions.get(metric)
    z = (np.abs(x - med) if way is None else np.maximum(way * (x - med), 0.0)) / sigma
    k = min(p.consecutive, len(z))
    runs = np.lib.stride_tricks.sliding_window_view(z, k).min(axis=1)  # z held for k samples from i
    if p.ongoing:
        quiet = np.flatnonzero(runs <= p.z_threshold)
        first = int(quiet[-1]) + 1 if quiet.size else 0  # where the stretch reaching the end began
        if first >= len(runs):
            return _MetricState(metric, float(runs[-1]), None, med, float(x[-1]))
        runs = runs[first:]
        ts, x, z = ts[first:], x[first:], z[first:]
    hit = np.flatnonzero(runs > p.z_threshold)
    onset = float(ts[hit[0]]) if hit.size else None
    best = int(np.argmax(runs))
    peak = float(x[best + int(np.argmax(z[best:best + k]))])
    return _MetricState(metric, float(runs[best]), onset, med, peak)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _secs(d: float) -> str:
    return f"{d:.0f} s" if abs(d - round(d)) < 0.05 else f"{d:.1f} s"


def _dependencies(edges: list[tuple[str, str]]) -> dict[str, list[str]]:
    deps: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        deps[a].append(b)
    return deps


def _closure(start: str, nxt: dict[str, list[str]]) -> list[str]:
    """start and everything reachable from it, in breadth-first order (cycles are fine)."""
    seen = {start}
    order = [start]
    for node in order:
        for m in nxt.get(node, []):
            if m not in seen:
                seen.add(m)
                order.append(m)
    return order


def dependency_closure(edges: list[tuple[str, str]], service: str) -> list[str]:
    """``service`` and everything it depends on, transitively (edges are caller -> callee)."""
    return _closure(service, _dependencies(edges))


def _pagerank(names: list[str], deps: dict[str, list[str]], a: np.ndarray, p: RcaParams) -> np.ndarray:
    n = len(names)
    pos = {s: i for i, s in enumerate(names)}
    w = np.zeros((n, n))
    for s, i in pos.items():
        ds = [pos[d] for d in deps.get(s, []) if d in pos]
        for j in ds:
            w[i, j] += a[j]  # towards the dependency, by how anomalous it is
            w[j, i] += p.backward * a[i]  # back to the caller, weakly
        w[i, i] += max(0.0, a[i] - (max(a[j] for j in ds) if ds else 0.0))
    pers = a + 1e-3
    pers = pers / pers.sum()
    rows = w.sum(axis=1, keepdims=True)
    trans = np.divide(w, rows, out=np.zeros_like(w), where=rows > 0)
    dangling = rows[:, 0] == 0
    x = np.full(n, 1.0 / n)
    for _ in range(200):
        nx = p.damping * (x @ trans + x[dangling].sum() * pers) + (1 - p.damping) * pers
        if np.abs(nx - x).sum() < 1e-12:
            x = nx
            break
        x = nx
    return x / x.max() if x.max() > 0 else x


def rank(
    edges: list[tuple[str, str]],
    window: LongCsv,
    baseline: LongCsv,
    target: str | None = None,
    params: RcaParams | None = None,
    names: tuple[str, str] = ("window", "baseline"),
) -> RcaReport:
    """Rank candidate root causes; ``names`` label the window and baseline in messages.

    An unknown ``target`` (in neither the graph nor the window) is a ConfigError on
    ``--target``. Services seen in the window but absent from the graph are isolated nodes
    (a warning says so).
    """
    p = params or RcaParams()
    wname, bname = names
    warnings: list[str] = []
    graph_nodes = {s for e in edges for s in e}
    extra = sorted(window.services - graph_nodes)
    if extra:
        warnings.append(f"{listed(extra, 'service')} in {wname} but not in the graph: treated as isolated nodes")
    for label, data in ((wname, window), (bname, baseline)):
        if data.skipped_values:
            warnings.append(f"{label}: skipped {counted(data.skipped_values, 'row')} with a non-numeric value")
        if data.skipped_timestamps:
            warnings.append(f"{label}: skipped {counted(data.skipped_timestamps, 'row')} with an unparsable timestamp")
        if data.skipped_blank:
            warnings.append(f"{label}: skipped {counted(data.skipped_blank, 'row')} without service or metric")
        if data.ignored_columns:
            warnings.append(f"{label}: ignored {listed(data.ignored_columns, 'column')}")
    deps = _dependencies(edges)
    callers: dict[str, list[str]] = defaultdict(list)
    for a_, b_ in edges:
        callers[b_].append(a_)
    everyone = sorted(graph_nodes | window.services)
    if target is not None:
        if target not in everyone:
            raise ConfigError([Problem("", None, "--target",
                                       f"unknown service {target!r}: not in the graph or {wname}")])
        cands = _closure(target, deps)
    else:
        cands = everyone

    # 1. deviation per service
    states: dict[str, list[_MetricState]] = defaultdict(list)
    no_base: list[str] = []
    for (svc, metric), win in sorted(window.series.items()):
        if svc not in cands:
            continue
        base = baseline.series.get((svc, metric))
        if base is None:
            no_base.append(f"{svc}/{metric}")
            continue
        states[svc].append(_metric_state(metric, win, base[1], p))
    if no_base:
        warnings.append(f"no baseline in {bname}, ignored: {', '.join(no_base)}")
    z = {s: max((m.z for m in states[s]), default=0.0) for s in cands}
    onset: dict[str, float | None] = {}
    for s in cands:
        ons = [m.onset for m in states[s] if m.onset is not None]
        onset[s] = min(ons) if ons else None
    anomalous = {s for s in cands if onset[s] is not None}

    def on(s: str) -> float:
        v = onset[s]
        assert v is not None
        return v

    # 2. explanation over the graph
    explained_by = {s: sorted(d for d in set(deps.get(s, [])) if d in anomalous and on(d) <= on(s))
                    for s in anomalous}
    reach = {s: _reach_back(s, explained_by) for s in anomalous}  # everything s's chain of explanations meets

    # 3. random walk + score parts
    a_vec = np.array([min(z[s], p.z_cap) / p.z_cap for s in cands])
    walk = dict(zip(cands, _pagerank(cands, deps, a_vec, p), strict=True))
    if anomalous:
        t0, t1 = min(on(s) for s in anomalous), max(on(s) for s in anomalous)
    early = {s: (1.0 if t1 == t0 else 1.0 - (on(s) - t0) / (t1 - t0)) if s in anomalous else 0.0 for s in cands}
    inner = {s: p.w_walk * walk[s] + p.w_early * early[s] + p.w_size * min(z[s], p.z_cap) / p.z_cap for s in cands}
    wsum = p.w_walk + p.w_early + p.w_size
    if wsum > 0:
        inner = {s: v / wsum for s, v in inner.items()}

    roots: set[str] = set()
    for s in anomalous:
        r = reach[s]
        if not r:
            roots.add(s)
        elif s in r and all(s in reach[o] for o in r):  # s sits in a group nothing outside explains
            group = {o for o in r if s in reach[o]} | {s}
            if max(group, key=lambda g: (inner[g], z[g], g)) == s:
                roots.add(s)
    caused_by = {s: sorted(roots & (reach[s] - {s})) for s in anomalous}

    ranked: list[RankedService] = []
    for s in cands:
        ms = sorted(states[s], key=lambda m: -m.z)
        role: Role
        if s in roots:
            role = "root_cause"
        elif s in anomalous:
            role = "impacted"
        elif not ms:
            role = "no_data"
        else:
            role = "unaffected"
        base_, width = _BAND[role]
        ev, against = _evidence(s, role, ms, onset, z, anomalous, explained_by, reach, caused_by, deps, callers,
                                graph_nodes, p)
        ranked.append(RankedService(
            service=s, score=round(base_ + width * inner[s], 4), role=role, anomalous=s in anomalous,
            onset=onset[s], max_z=round(z[s], 2), top_metric=ms[0].metric if ms else None,
            explained_by=explained_by.get(s, []), caused_by=caused_by.get(s, []),
            evidence=ev, evidence_against=against,
        ))
    ranked.sort(key=lambda r: (-r.score, r.service))
    return RcaReport(ranking=ranked, root_causes=[r.service for r in ranked if r.role == "root_cause"],
                     target=target, warnings=warnings)


def _reach_back(s: str, nxt: dict[str, list[str]]) -> set[str]:
    """Nodes reachable from s in one or more steps (s included only if on a cycle)."""
    seen: set[str] = set()
    todo = list(nxt.get(s, []))
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(nxt.get(n, []))
    return seen


def _evidence(
    s: str,
    role: str,
    ms: list[_MetricState],
    onset: dict[str, float | None],
    z: dict[str, float],
    anomalous: set[str],
    explained_by: dict[str, list[str]],
    reach: dict[str, set[str]],
    caused_by: dict[str, list[str]],
    deps: dict[str, list[str]],
    callers: dict[str, list[str]],
    graph_nodes: set[str],
    p: RcaParams,
) -> tuple[list[str], list[str]]:
    """(evidence for s being a root cause, evidence against), each a sentence with numbers."""
    ev: list[str] = []
    against: list[str] = []
    if s not in graph_nodes:
        against.append("not in the dependency graph: treated as an isolated node, nothing is known to depend on it")
    mine = onset.get(s)
    if not ms:
        against.append("no samples with a baseline in the incident window: cannot judge it")
        bad_callers = sorted(c for c in callers.get(s, []) if c in anomalous)
        if bad_callers:
            ev.append(f"{counted(len(bad_callers), 'anomalous caller')} "
                      f"{'depends' if len(bad_callers) == 1 else 'depend'} on it: {', '.join(bad_callers)}")
        return ev, against
    bad = [m for m in ms if m.onset is not None]
    if mine is None:
        top = ms[0]
        against.append(f"no metric left its baseline band for {counted(p.consecutive, 'sample')} "
                       f"(max sustained z={top.z:.1f} on {top.metric} <= {p.z_threshold:g})")
        return ev, against
    # its own deviation, earliest metric first
    others = sorted((o for o in anomalous if o != s), key=lambda o: onset[o] or 0.0)
    later = [o for o in others if (onset[o] or 0.0) > mine]
    for m in sorted(bad, key=lambda m: m.onset or 0.0)[:3]:
        assert m.onset is not None
        when = f"{m.metric} z={m.z:.1f} ({m.peak_value:.4g} vs baseline {m.median:.4g}) at {_clock(m.onset)}"
        if later and m.onset == mine:
            lead = ", ".join(f"{_secs((onset[o] or 0.0) - mine)} before {o}" for o in later[:3])
            when += f", {lead}"
        ev.append(when)
    earlier = [o for o in others if (onset[o] or 0.0) < mine]
    if not earlier and others:
        ev.append(f"earliest anomaly of the {len(others) + 1} anomalous services")
    if z[s] < 2 * p.z_threshold:
        against.append(f"weak deviation (z={z[s]:.1f}, threshold {p.z_threshold:g})")
    # the graph
    my_deps = sorted(set(deps.get(s, [])))
    if role == "root_cause":
        if not my_deps:
            ev.append("has no dependencies in the graph")
        healthy = [d for d in my_deps if d not in anomalous]
        if healthy and len(healthy) == len(my_deps):
            ev.append("all its dependencies are healthy: " +
                      ", ".join(f"{d} (z={z.get(d, 0.0):.1f})" for d in healthy))
        explains = sorted(o for o, roots in caused_by.items() if s in roots)
        if explains:
            ev.append(f"explains {counted(len(explains), 'anomalous dependent')}: {', '.join(explains)}")
    for d in my_deps:
        if d not in anomalous:
            continue
        d_on = onset[d] or 0.0
        if d in explained_by.get(s, []):
            lag = "at the same time" if d_on == mine else f"{_secs(mine - d_on)} earlier"
            against.append(f"its dependency {d} is anomalous too (z={z[d]:.1f}, from {_clock(d_on)}, {lag}): "
                           f"may be explained by {d}")
        else:
            ev.append(f"its dependency {d} is anomalous too (z={z[d]:.1f}) but started {_secs(d_on - mine)} later")
    if role == "root_cause" and s in explained_by and explained_by[s]:
        against.append("it is in a group of services that explain each other (a dependency cycle): "
                       "chosen as the group's root by score")
    if role == "impacted" and caused_by.get(s):
        against.append(f"likely caused by {', '.join(caused_by[s])}")
    unexplained_earlier = [o for o in earlier if o not in reach.get(s, set()) and s not in reach.get(o, set())]
    if unexplained_earlier:
        o = unexplained_earlier[0]
        against.append(f"started {_secs(mine - (onset[o] or 0.0))} after {o} (z={z[o]:.1f}), which it does not explain")
    return ev, against
