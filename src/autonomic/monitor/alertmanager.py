"""Alertmanager webhooks (payload version 4) turned into findings.

:func:`parse_webhook` validates a POSTed body; :func:`to_findings` makes one ``alert`` finding
per firing alert; :func:`resolved_fingerprints` lists the alerts Alertmanager says are over.

Unknown keys in the payload are ignored (Alertmanager adds fields over time); missing or
mistyped known fields are a ``ValueError`` naming the field, e.g. ``alerts[0].status: ...``.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autonomic.analyze.causes import cause_of
from autonomic.model import Finding, FindingKind, Severity
from autonomic.yamlio import readable_errors

CONFIDENCE = 0.9
_SNIPPET = 200
_MAX_ERRORS = 3  # field errors quoted in one message


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class AlertmanagerAlert(_Payload):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime
    endsAt: datetime | None = None  # "0001-01-01T00:00:00Z" while firing
    generatorURL: str = ""
    fingerprint: str = Field(min_length=1)


class AlertmanagerPayload(_Payload):
    """The body Alertmanager's webhook receiver POSTs (version "4")."""

    version: Literal["4"]
    groupKey: str
    truncatedAlerts: int = Field(default=0, ge=0)  # alerts left out by the receiver's max_alerts
    status: Literal["firing", "resolved"]
    receiver: str
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str = ""
    alerts: list[AlertmanagerAlert]


def _where(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "(top)"


def parse_webhook(body: bytes) -> AlertmanagerPayload:
    """Validate a webhook body. ``ValueError`` naming the field for malformed JSON, a wrong
    shape, or a ``version`` other than ``"4"``."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"body: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("body: nested too deeply to read (thousands of levels)") from None
    if not isinstance(data, dict):
        raise ValueError(f"body: must be a JSON object, got {type(data).__name__}")
    version = data.get("version")
    if version is None:
        raise ValueError("version: field required")
    if version != "4":
        raise ValueError(f"version: unsupported webhook version {repr(version)[:_SNIPPET]} (expected the string '4')")
    try:
        return AlertmanagerPayload.model_validate(data)
    except ValidationError as err:
        problems = [f"{_where(tuple(loc))}: {message}"  # in words, as a bad config's problems are
                    for loc, message in readable_errors(err.errors()[:_MAX_ERRORS], model=AlertmanagerPayload)]
        more = err.error_count() - len(problems)
        if more > 0:
            problems.append(f"and {more} more")
        raise ValueError("; ".join(problems)) from None


def _host(instance: str) -> str:
    """``instance`` without its port: ``web:8080`` -> ``web``, ``[::1]:9090`` -> ``::1``."""
    try:
        host = urlsplit(f"//{instance}").hostname
    except ValueError:
        host = None
    return host or instance


def _service(labels: dict[str, str], services: Collection[str]) -> tuple[str, bool]:
    """The first of ``service``, ``job``, ``instance`` host that is a known service; else the
    first of them present (unknown); else ``unknown``."""
    candidates = [v for v in (labels.get("service"), labels.get("job")) if v]
    if labels.get("instance"):
        candidates.append(_host(labels["instance"]))
    for candidate in candidates:
        if candidate in services:
            return candidate, True
    return (candidates[0] if candidates else "unknown"), False


def _cause(labels: dict[str, str], metric: str, alertname: str) -> str:
    if labels.get("cause"):
        return labels["cause"]
    cause = cause_of(metric)
    if "metric" not in labels and cause.startswith("metric:"):
        # no metric named and the alert's name is not one of ours: group by the alert
        return f"alert:{alertname}"
    return cause


def _severity(labels: dict[str, str]) -> Severity:
    try:
        return Severity(labels.get("severity", "").lower())
    except ValueError:
        return Severity.WARNING


def to_findings(payload: AlertmanagerPayload, now: float, services: Collection[str]) -> list[Finding]:
    """One ``alert`` finding per firing alert (resolved ones make none), stamped ``now``.

    - service: the first of labels ``service``, ``job``, ``instance`` (host part) found in
      ``services``; when none is, the first present (``unknown`` when none is), and the
      evidence says ``service_known: false``;
    - metric: label ``metric``, else the alert name;
    - cause: label ``cause``, else the metric's cause (:func:`~autonomic.analyze.causes.cause_of`);
      when there is no ``metric`` label and the alert name is not a known metric,
      ``alert:<alertname>``;
    - severity: label ``severity`` (critical, warning, info), warning otherwise;
    - summary: annotation ``summary``, else ``description``, else the alert name.
    """
    findings: list[Finding] = []
    for alert in payload.alerts:
        if alert.status != "firing":
            continue
        labels = alert.labels
        alertname = labels.get("alertname") or "alert"
        service, known = _service(labels, services)
        metric = labels.get("metric") or alertname
        evidence: dict[str, Any] = {
            "alertname": alertname,
            "fingerprint": alert.fingerprint,
            "groupKey": payload.groupKey,
            "startsAt": alert.startsAt.isoformat(),
            "labels": dict(labels),
            "generatorURL": alert.generatorURL,
            "service_known": known,
        }
        if not known:
            evidence["note"] = f"service {service!r} is not one of the configured services"
        if payload.truncatedAlerts:
            evidence["truncatedAlerts"] = payload.truncatedAlerts
        findings.append(
            Finding(
                service=service,
                metric=metric,
                kind=FindingKind.ALERT,
                cause=_cause(labels, metric, alertname),
                severity=_severity(labels),
                confidence=CONFIDENCE,
                ts=now,
                summary=alert.annotations.get("summary") or alert.annotations.get("description") or alertname,
                evidence=evidence,
            )
        )
    return findings


def resolved_fingerprints(payload: AlertmanagerPayload) -> list[str]:
    """Fingerprints of the payload's resolved alerts, in payload order."""
    return [a.fingerprint for a in payload.alerts if a.status == "resolved"]
