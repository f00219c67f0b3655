"""correlate and quiet: one open incident per (service, cause)."""

from __future__ import annotations

import pytest

from autonomic.analyze.correlate import correlate, quiet
from autonomic.model import Finding, FindingKind, IncidentState, Severity


def _finding(
    cause: str = "memory",
    severity: Severity = Severity.WARNING,
    kind: FindingKind = FindingKind.FORECAST,
    service: str = "api",
    summary: str = "memory_percent will reach 85 in 40 s",
) -> Finding:
    return Finding(
        service=service,
        metric="memory_percent" if cause == "memory" else "cpu_percent",
        kind=kind,
        cause=cause,
        severity=severity,
        confidence=0.8,
        ts=100.0,
        summary=summary,
    )


def test_first_finding_opens_an_incident_from_the_finding() -> None:
    finding = _finding()
    incident, linked, opened = correlate(finding, None, now=100.0)
    assert opened
    assert (incident.service, incident.cause, incident.state) == ("api", "memory", IncidentState.OPEN)
    assert (incident.severity, incident.kind, incident.summary) == (
        Severity.WARNING, FindingKind.FORECAST, finding.summary,
    )
    assert incident.opened_at == incident.updated_at == incident.last_finding_at == 100.0
    assert incident.finding_count == 1
    assert linked.incident_id == incident.id and linked.id == finding.id
    assert finding.incident_id is None  # the input is not mutated


def test_repeated_findings_update_the_one_open_incident() -> None:
    incident, _, _ = correlate(_finding(), None, now=100.0)
    first_id = incident.id
    for i, now in enumerate((110.0, 120.0, 130.0), start=2):
        incident, linked, opened = correlate(_finding(summary=f"repeat {i}"), incident, now=now)
        assert not opened and incident.id == first_id and linked.incident_id == first_id
        assert incident.finding_count == i
        assert incident.updated_at == incident.last_finding_at == now
        assert incident.summary == f"repeat {i}"
    assert incident.opened_at == 100.0


def test_update_keeps_the_highest_severity_and_the_opening_kind() -> None:
    incident, _, _ = correlate(_finding(severity=Severity.WARNING), None, now=1.0)
    incident, _, _ = correlate(
        _finding(severity=Severity.CRITICAL, kind=FindingKind.THRESHOLD), incident, now=2.0
    )
    assert incident.severity is Severity.CRITICAL and incident.kind is FindingKind.FORECAST
    incident, _, _ = correlate(_finding(severity=Severity.INFO), incident, now=3.0)
    assert incident.severity is Severity.CRITICAL


def test_update_keeps_the_incident_state() -> None:
    incident, _, _ = correlate(_finding(), None, now=1.0)
    acting = incident.model_copy(update={"state": IncidentState.ACTING})
    updated, _, opened = correlate(_finding(), acting, now=2.0)
    assert not opened and updated.state is IncidentState.ACTING


def test_a_different_cause_opens_another_incident() -> None:
    memory, _, _ = correlate(_finding(cause="memory"), None, now=1.0)
    cpu, linked, opened = correlate(_finding(cause="cpu"), None, now=2.0)
    assert opened and cpu.id != memory.id and cpu.cause == "cpu" and linked.incident_id == cpu.id


def test_joining_an_incident_of_another_service_or_cause_is_refused() -> None:
    memory, _, _ = correlate(_finding(cause="memory"), None, now=1.0)
    with pytest.raises(ValueError, match="cpu"):
        correlate(_finding(cause="cpu"), memory, now=2.0)
    with pytest.raises(ValueError, match="web"):
        correlate(_finding(service="web"), memory, now=2.0)


def test_an_escalated_but_unclosed_incident_keeps_collecting_its_findings() -> None:
    old, _, _ = correlate(_finding(), None, now=1.0)
    escalated = old.model_copy(update={"state": IncidentState.ESCALATED})
    same, _, opened = correlate(_finding(), escalated, now=10.0)
    assert not opened and same.id == old.id and same.finding_count == 2
    assert same.state == IncidentState.ESCALATED


def test_a_closed_incident_is_not_reopened_a_new_one_starts() -> None:
    old, _, _ = correlate(_finding(), None, now=1.0)
    resolved = old.model_copy(update={"state": IncidentState.RESOLVED, "closed_at": 5.0})
    new, _, opened = correlate(_finding(), resolved, now=10.0)
    assert opened and new.id != old.id and new.finding_count == 1 and new.opened_at == 10.0


def test_quiet_after_quiet_s_without_findings() -> None:
    incident, _, _ = correlate(_finding(), None, now=100.0)
    incident, _, _ = correlate(_finding(), incident, now=150.0)
    assert not quiet(incident, now=200.0, quiet_s=60.0)
    assert quiet(incident, now=210.0, quiet_s=60.0)
