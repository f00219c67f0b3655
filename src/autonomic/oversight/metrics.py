"""The engine's own figures in the Prometheus text format, served at ``GET /metrics``.

:class:`EngineMetrics` keeps its own ``CollectorRegistry`` (never the process-global one), so
two engines (or two tests) in one process never share or collide on a metric. The engine
calls the recording methods; the API calls :meth:`EngineMetrics.render`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LOOP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_API_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# the ``method`` label's values: any other method (a client may send any token) is "other"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class EngineMetrics:
    """Counters, gauges and histograms of one engine, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._findings = Counter("autonomic_findings", "Findings produced, by kind", ["kind"], registry=r)
        self._incidents = Counter("autonomic_incidents_opened", "Incidents opened", registry=r)
        self._decisions = Counter("autonomic_decisions", "Decisions made, by verdict (trouble_cleared: a person's "
                                  "approval never acted on because the trouble cleared first)", ["verdict"],
                                  registry=r)
        self._actions = Counter(
            "autonomic_actions", "Actions finished, by type and outcome", ["type", "outcome"], registry=r
        )
        self._notifier_failures = Counter(
            "autonomic_notifier_failures", "Failed notification deliveries, by notifier", ["notifier"], registry=r
        )
        self._breaker = Gauge("autonomic_breaker_open", "1 while the scope's circuit breaker is open",
                              ["scope"], registry=r)
        self._paused = Gauge("autonomic_paused", "1 while automation is paused for the scope", ["scope"],
                             registry=r)
        self._leader = Gauge("autonomic_leader", "1 while this replica runs the loop (it holds the lease, or "
                             "leader election is off); summed over replicas it should be 1", registry=r)
        self._silent = Gauge("autonomic_loop_silent_seconds", "Seconds since the engine loop last made progress "
                             "(began a step); past autonomic_loop_stuck_after_seconds it is stuck", registry=r)
        self._stuck_after = Gauge("autonomic_loop_stuck_after_seconds", "How long the loop may go without "
                                  "progress before it counts as stuck (/healthz fails, the lease is not renewed)",
                                  registry=r)
        self._pending = Gauge("autonomic_notifications_pending", "Notifications kept in the store's outbox and not "
                              "yet delivered by every notifier that takes them (read from the store)", registry=r)
        self._pending_oldest = Gauge("autonomic_notifications_pending_oldest_seconds", "How long ago the oldest "
                                     "notification not yet delivered was made; 0 when none waits", registry=r)
        self._loop = Histogram("autonomic_loop_seconds", "Duration of one engine tick", buckets=_LOOP_BUCKETS,
                               registry=r)
        self._api = Histogram("autonomic_api_request_seconds", "API request latency, by method and route",
                              ["method", "route"], buckets=_API_BUCKETS, registry=r)

    def finding(self, kind: str) -> None:
        self._findings.labels(kind=kind).inc()

    def incident_opened(self) -> None:
        self._incidents.inc()

    def decision(self, verdict: str) -> None:
        self._decisions.labels(verdict=verdict).inc()

    def action(self, type: str, outcome: str) -> None:
        self._actions.labels(type=type, outcome=outcome).inc()

    def notifier_failure(self, name: str) -> None:
        self._notifier_failures.labels(notifier=name).inc()

    def loop(self, seconds: float) -> None:
        self._loop.observe(max(0.0, seconds))

    def api_request(self, method: str, route: str, seconds: float) -> None:
        """One API request; ``route`` is the matched route's template (bounded), and a method
        outside the standard ones is labelled ``other`` so a client cannot add series."""
        label = method if method in _METHODS else "other"
        self._api.labels(method=label, route=route).observe(max(0.0, seconds))

    def breaker(self, scope: str, open: bool) -> None:
        self._breaker.labels(scope=scope).set(1 if open else 0)

    def paused(self, scope: str, on: bool) -> None:
        self._paused.labels(scope=scope).set(1 if on else 0)

    def forget_services(self, names: Iterable[str]) -> None:
        """Remove every series labelled with one of these services (gone from the config at a
        reload); else each would be served with its last value for as long as the process runs."""
        for name in names:
            self._paused.remove(name)

    def leader(self, on: bool) -> None:
        self._leader.set(1 if on else 0)

    def progress(self, silent_s: float, stuck_after_s: float) -> None:
        """How long the loop has gone without progress, and how long it may (see autonomic.liveness)."""
        self._silent.set(max(0.0, silent_s))
        self._stuck_after.set(stuck_after_s)

    def notifications_pending(self, count: int, oldest_s: float) -> None:
        """How many notifications wait in the outbox, and the age of the oldest (0: none waits)."""
        self._pending.set(count)
        self._pending_oldest.set(max(0.0, oldest_s))

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)
