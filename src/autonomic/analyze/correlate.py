"""Group findings into incidents: one open incident per (service, cause)."""

from __future__ import annotations

from autonomic.model import Finding, Incident, Severity


def correlate(finding: Finding, open_incident: Incident | None, now: float) -> tuple[Incident, Finding, bool]:
    """Attach ``finding`` to the open incident of its (service, cause), or open one.

    ``open_incident`` is the caller's current unclosed incident for the finding's
    (service, cause), or None. An incident stays open to new findings until it is closed
    (``closed_at`` set), even after its state ended: one that was escalated or rolled back
    keeps collecting its symptom's findings until the symptom goes quiet, so a lasting
    symptom never opens a second incident. Returns ``(incident, finding with incident_id set, opened)``:

    * no open incident (None, or one already closed): a new OPEN incident whose severity,
      kind and summary come from the finding, opened/updated/last_finding_at = ``now``;
    * otherwise the same incident with ``finding_count + 1``, ``updated_at`` and
      ``last_finding_at`` = ``now``, severity the higher of the two, summary from this
      finding; its state and ``kind`` (the opening finding's) are unchanged.

    Passing an incident of another service or cause is a caller bug: ValueError.
    """
    if open_incident is not None and (open_incident.service, open_incident.cause) != (
        finding.service,
        finding.cause,
    ):
        raise ValueError(
            f"finding for ({finding.service}, {finding.cause}) cannot join incident "
            f"{open_incident.id} of ({open_incident.service}, {open_incident.cause})"
        )
    if open_incident is None or open_incident.closed_at is not None:
        incident = Incident(
            service=finding.service,
            cause=finding.cause,
            severity=finding.severity,
            kind=finding.kind,
            opened_at=now,
            updated_at=now,
            last_finding_at=now,
            summary=finding.summary,
        )
        opened = True
    else:
        severity = max(open_incident.severity, finding.severity, key=lambda s: Severity(s).rank)
        incident = open_incident.model_copy(
            update={
                "finding_count": open_incident.finding_count + 1,
                "updated_at": now,
                "last_finding_at": now,
                "severity": severity,
                "summary": finding.summary,
            }
        )
        opened = False
    return incident, finding.model_copy(update={"incident_id": incident.id}), opened


def quiet(incident: Incident, now: float, quiet_s: float) -> bool:
    """True when no finding has joined ``incident`` for at least ``quiet_s`` seconds."""
    return now - incident.last_finding_at >= quiet_s
