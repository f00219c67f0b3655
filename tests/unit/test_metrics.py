"""EngineMetrics: every figure the engine records shows up in the Prometheus text, in a registry
of its own."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from autonomic.oversight.metrics import EngineMetrics


def _samples(m: EngineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_every_recording_method_is_rendered_with_its_labels() -> None:
    m = EngineMetrics()
    m.finding("threshold")
    m.finding("threshold")
    m.finding("forecast")
    m.incident_opened()
    m.decision("approved")
    m.action("restart", "succeeded")
    m.notifier_failure("slack")
    m.breaker("restart", True)
    m.breaker("global", False)
    m.paused("global", True)
    m.paused("web", False)
    m.loop(0.02)
    m.api_request("GET", "/api/v1/overview", 0.003)
    s = _samples(m)
    assert s[("autonomic_findings_total", (("kind", "threshold"),))] == 2
    assert s[("autonomic_findings_total", (("kind", "forecast"),))] == 1
    assert s[("autonomic_incidents_opened_total", ())] == 1
    assert s[("autonomic_decisions_total", (("verdict", "approved"),))] == 1
    assert s[("autonomic_actions_total", (("outcome", "succeeded"), ("type", "restart")))] == 1
    assert s[("autonomic_notifier_failures_total", (("notifier", "slack"),))] == 1
    assert s[("autonomic_breaker_open", (("scope", "restart"),))] == 1
    assert s[("autonomic_breaker_open", (("scope", "global"),))] == 0
    assert s[("autonomic_paused", (("scope", "global"),))] == 1
    assert s[("autonomic_paused", (("scope", "web"),))] == 0
    assert s[("autonomic_loop_seconds_count", ())] == 1
    assert s[("autonomic_loop_seconds_bucket", (("le", "0.025"),))] == 1
    assert s[("autonomic_loop_seconds_bucket", (("le", "0.01"),))] == 0
    assert s[("autonomic_api_request_seconds_count", (("method", "GET"), ("route", "/api/v1/overview")))] == 1


def test_gauges_go_back_to_zero_when_the_state_clears() -> None:
    m = EngineMetrics()
    m.paused("global", True)
    m.paused("global", False)
    m.breaker("global", True)
    m.breaker("global", False)
    s = _samples(m)
    assert s[("autonomic_paused", (("scope", "global"),))] == 0
    assert s[("autonomic_breaker_open", (("scope", "global"),))] == 0


def test_two_instances_keep_separate_counts_and_never_touch_the_global_registry() -> None:
    a, b = EngineMetrics(), EngineMetrics()
    a.incident_opened()
    a.incident_opened()
    assert _samples(a)[("autonomic_incidents_opened_total", ())] == 2
    assert _samples(b)[("autonomic_incidents_opened_total", ())] == 0
    assert REGISTRY.get_sample_value("autonomic_incidents_opened_total") is None


def test_forgetting_services_removes_only_their_series() -> None:
    """A reload that takes services out of the config removes their series; the others, and the
    global scope, keep theirs; forgetting one never recorded is no error."""
    m = EngineMetrics()
    for scope, on in (("global", False), ("web", True), ("api", True), ("host", False)):
        m.paused(scope, on)
    m.forget_services(["api", "host", "never-seen"])
    s = _samples(m)
    assert {labels for name, labels in s if name == "autonomic_paused"} == {(("scope", "global"),),
                                                                             (("scope", "web"),)}
    assert s[("autonomic_paused", (("scope", "web"),))] == 1
