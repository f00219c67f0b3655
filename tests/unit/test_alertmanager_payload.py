"""Alertmanager webhook v4 payloads: validation, and firing alerts turned into findings."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from autonomic.model import FindingKind, Severity
from autonomic.monitor.alertmanager import parse_webhook, resolved_fingerprints, to_findings

NOW = 1_700_000_000.0
SERVICES = {"web", "db"}


def alert(status: str = "firing", fingerprint: str = "f1", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": "HighErrorRate", **labels},
        "annotations": {"summary": "errors above 10%", "description": "long text"},
        "startsAt": "2024-05-01T10:00:00.123Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2024-05-01T10:05:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], **top: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receiver": "autonomic",
        "status": "firing",
        "alerts": list(alerts) or [alert(service="web")],
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
    }
    body.update(top)
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def findings_of(*alerts: dict[str, Any], **top: Any) -> list[Any]:
    return to_findings(parse_webhook(encode(payload(*alerts, **top))), NOW, SERVICES)


# --- parsing ------------------------------------------------------------------------------


def test_a_complete_payload_parses_with_every_field() -> None:
    parsed = parse_webhook(encode(payload()))
    assert (parsed.version, parsed.status, parsed.receiver, parsed.truncatedAlerts) == ("4", "firing", "autonomic", 0)
    assert parsed.groupKey == '{}:{alertname="HighErrorRate"}'
    assert parsed.externalURL == "http://alertmanager:9093"
    first = parsed.alerts[0]
    assert (first.status, first.fingerprint, first.labels["service"]) == ("firing", "f1", "web")
    assert first.startsAt.year == 2024 and first.endsAt is not None and first.endsAt.year == 1


def test_unknown_keys_are_ignored() -> None:
    body = payload()
    body["newField"] = 1
    body["alerts"][0]["silencedBy"] = []
    assert parse_webhook(encode(body)).alerts[0].fingerprint == "f1"


def _without(path: list[Any]) -> dict[str, Any]:
    body = payload()
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (["groupKey"], "groupKey: Field required"),
        (["status"], "status: Field required"),
        (["receiver"], "receiver: Field required"),
        (["alerts"], "alerts: Field required"),
        (["alerts", 0, "status"], "alerts[0].status: Field required"),
        (["alerts", 0, "labels"], "alerts[0].labels: Field required"),
        (["alerts", 0, "startsAt"], "alerts[0].startsAt: Field required"),
        (["alerts", 0, "fingerprint"], "alerts[0].fingerprint: Field required"),
    ],
)
def test_missing_fields_raise_value_error_naming_the_field(path: list[Any], field: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_webhook(encode(_without(path)))
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "pending"}, "status: Input should be 'firing' or 'resolved'"),
        ({"truncatedAlerts": -1}, "truncatedAlerts"),
        ({"groupLabels": {"a": 1}}, "groupLabels.a"),
        ({"alerts": {}}, "alerts: Input should be a valid list"),
    ],
)
def test_wrong_top_level_values_raise_value_error_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_webhook(encode(payload(**change)))
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "active"}, "alerts[1].status: Input should be 'firing' or 'resolved'"),
        ({"startsAt": "yesterday"}, "alerts[1].startsAt"),
        ({"fingerprint": ""}, "alerts[1].fingerprint"),
        ({"labels": ["x"]}, "alerts[1].labels"),
    ],
)
def test_a_bad_second_alert_is_named_by_its_index(change: dict[str, Any], field: str) -> None:
    second = {**alert(fingerprint="f2"), **change}
    with pytest.raises(ValueError) as err:
        parse_webhook(encode(payload(alert(), second)))
    assert field in str(err.value)


def test_many_errors_are_summarised_with_a_count() -> None:
    bad = {"status": "x"}
    with pytest.raises(ValueError, match=r"and \d+ more$"):
        parse_webhook(encode(payload(bad, bad)))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"\xff\xfe", "body: not valid JSON"),
        (b"", "body: not valid JSON"),
        (b"[1, 2]", "body: must be a JSON object, got list"),
        (encode({"status": "firing"}), "version: field required"),
        (encode(payload(version="3")), "version: unsupported webhook version '3'"),
        (encode(payload(version=4)), "version: unsupported webhook version 4 (expected the string '4')"),
    ],
)
def test_bad_bodies_and_versions_raise_value_error(body: bytes, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_webhook(body)
    assert str(err.value).startswith(message)


# --- findings -----------------------------------------------------------------------------


def test_a_firing_alert_becomes_one_alert_finding_with_its_evidence() -> None:
    [finding] = findings_of(alert(service="web", severity="critical", metric="error_rate", job="api"))
    assert (finding.service, finding.metric, finding.cause) == ("web", "error_rate", "errors")
    assert (finding.kind, finding.severity, finding.confidence, finding.ts) == (
        FindingKind.ALERT, Severity.CRITICAL, 0.9, NOW)
    assert finding.summary == "errors above 10%"
    assert finding.evidence == {
        "alertname": "HighErrorRate",
        "fingerprint": "f1",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "startsAt": "2024-05-01T10:00:00.123000+00:00",
        "labels": {"alertname": "HighErrorRate", "service": "web", "severity": "critical",
                   "metric": "error_rate", "job": "api"},
        "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
        "service_known": True,
    }
    json.dumps(finding.model_dump(mode="json"))  # storable as is


def test_resolved_alerts_make_no_findings_and_are_listed_by_fingerprint() -> None:
    body = payload(alert(fingerprint="a", service="web"), alert("resolved", "b", service="web"),
                   alert("resolved", "c", service="db"))
    parsed = parse_webhook(encode(body))
    assert [f.evidence["fingerprint"] for f in to_findings(parsed, NOW, SERVICES)] == ["a"]
    assert resolved_fingerprints(parsed) == ["b", "c"]

    all_resolved = parse_webhook(encode(payload(alert("resolved", "d"), status="resolved")))
    assert to_findings(all_resolved, NOW, SERVICES) == []
    assert resolved_fingerprints(all_resolved) == ["d"]


def test_unknown_service_is_kept_under_the_label_value_and_flagged_in_evidence() -> None:
    [finding] = findings_of(alert(service="ghost"))
    assert finding.service == "ghost"
    assert finding.evidence["service_known"] is False
    assert "ghost" in finding.evidence["note"] and "not one of the configured services" in finding.evidence["note"]


@pytest.mark.parametrize(
    ("labels", "service", "known"),
    [
        ({"service": "web", "job": "db"}, "web", True),
        ({"service": "ghost", "job": "db"}, "db", True),  # the first label naming a known service wins
        ({"job": "db", "instance": "web:8080"}, "db", True),
        ({"instance": "web:8080"}, "web", True),
        ({"instance": "[::1]:9100"}, "::1", False),
        ({"job": "node", "instance": "10.0.0.1:9100"}, "node", False),
        ({}, "unknown", False),
    ],
)
def test_service_comes_from_service_then_job_then_instance_host(
    labels: dict[str, str], service: str, known: bool
) -> None:
    [finding] = findings_of(alert(**labels))
    assert (finding.service, finding.evidence["service_known"]) == (service, known)


@pytest.mark.parametrize(
    ("labels", "metric", "cause"),
    [
        ({"metric": "memory_percent"}, "memory_percent", "memory"),
        ({"metric": "pool_in_use"}, "pool_in_use", "pool"),
        ({"metric": "queue_depth"}, "queue_depth", "metric:queue_depth"),
        ({"metric": "error_rate", "cause": "deploy"}, "error_rate", "deploy"),
        ({}, "HighErrorRate", "alert:HighErrorRate"),
        ({"alertname": "latency_ms"}, "latency_ms", "latency"),
    ],
)
def test_metric_and_cause_from_labels_then_alert_name(labels: dict[str, str], metric: str, cause: str) -> None:
    [finding] = findings_of(alert(service="web", **labels))
    assert (finding.metric, finding.cause) == (metric, cause)


@pytest.mark.parametrize(
    ("labels", "severity"),
    [
        ({"severity": "critical"}, Severity.CRITICAL),
        ({"severity": "INFO"}, Severity.INFO),
        ({"severity": "warning"}, Severity.WARNING),
        ({"severity": "page"}, Severity.WARNING),
        ({}, Severity.WARNING),
    ],
)
def test_severity_from_label_defaults_to_warning(labels: dict[str, str], severity: Severity) -> None:
    [finding] = findings_of(alert(service="web", **labels))
    assert finding.severity == severity


def test_summary_falls_back_to_description_then_alert_name() -> None:
    described = alert(service="web")
    del described["annotations"]["summary"]
    bare = copy.deepcopy(described)
    bare["annotations"] = {}
    del bare["generatorURL"]
    first, second = findings_of(described, bare)
    assert first.summary == "long text"
    assert second.summary == "HighErrorRate" and second.evidence["generatorURL"] == ""


def test_truncated_alerts_are_accepted_and_recorded_in_evidence() -> None:
    [finding] = findings_of(alert(service="web"), truncatedAlerts=3)
    assert finding.evidence["truncatedAlerts"] == 3

    body = payload()
    del body["truncatedAlerts"]  # older Alertmanagers do not send it
    assert parse_webhook(encode(body)).truncatedAlerts == 0


def test_a_body_nested_deeper_than_recursion_allows_is_a_value_error_naming_the_body() -> None:
    with pytest.raises(ValueError, match="body: nested too deeply"):
        parse_webhook(b'{"version": "4", "alerts": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")


@pytest.mark.parametrize(("alerts", "said"), [
    ([1], "alerts[0]: should be a mapping (an object of named values), not a number"),
    (["x"], "alerts[0]: should be a mapping (an object of named values), not a string"),
])
def test_an_alert_that_is_not_an_object_is_said_so_in_words_not_with_a_class_name(alerts: list[Any],
                                                                                   said: str) -> None:
    """Before: "alerts[0]: Input should be a valid dictionary or instance of AlertmanagerAlert"."""
    with pytest.raises(ValueError) as err:
        parse_webhook(encode(payload(alerts=alerts)))
    assert str(err.value) == said
