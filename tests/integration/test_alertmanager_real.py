"""A real Prometheus alerting rule fires through a real Alertmanager at a webhook receiver that
turns each POST into findings with parse_webhook and to_findings."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from servers import Server, alertmanager_server, demo_service, prometheus_server, wait_for  # noqa: F401

from autonomic.demo import faults
from autonomic.model import Finding, FindingKind, Severity
from autonomic.monitor.alertmanager import AlertmanagerPayload, parse_webhook, resolved_fingerprints, to_findings

RULES = """\
groups:
  - name: demo
    interval: 1s
    rules:
      - alert: DemoErrorRateHigh
        expr: demo_error_rate > 0.1
        for: 0s
        labels: {severity: critical, service: x, metric: error_rate}
        annotations:
          summary: "error rate {{ $value }} on {{ $labels.instance }}"
"""


@dataclass
class Received:
    """What the webhook receiver saw: parsed payloads, their findings, and rejected bodies."""

    payloads: list[AlertmanagerPayload] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        received = self.server.received
        try:
            payload = parse_webhook(body)
        except ValueError as exc:
            with received.lock:
                received.errors.append(str(exc))
            status, answer = 400, {"error": str(exc)}
        else:
            findings = to_findings(payload, time.time(), {"x"})
            with received.lock:
                received.payloads.append(payload)
                received.findings.extend(findings)
            status, answer = 200, {"findings": str(len(findings))}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        self.received = Received()
        super().__init__(("127.0.0.1", 0), _Handler)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_firing_rule_reaches_the_webhook_as_a_critical_alert_finding_then_resolves(
    tmp_path: Path,
    receiver: _Receiver,
    demo_service: Callable[..., Server],  # noqa: F811
    prometheus_server: Callable[..., Server],  # noqa: F811
    alertmanager_server: Callable[..., Server],  # noqa: F811
) -> None:
    received = receiver.received
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    demo = demo_service("x")
    alertmanager = alertmanager_server(hook)
    prometheus_server({"x": [demo.host_port]}, rule_files=[rules], alertmanager_url=alertmanager.url)

    faults.inject(demo.url, "error_spike", ratio=0.5)

    def firing() -> list[Finding]:
        with received.lock:
            return [f for f in received.findings if f.evidence["alertname"] == "DemoErrorRateHigh"]

    finding = wait_for(firing, 40, "a firing DemoErrorRateHigh webhook", interval=0.2)[0]
    assert received.errors == []
    assert (finding.service, finding.kind, finding.severity) == ("x", FindingKind.ALERT, Severity.CRITICAL)
    assert (finding.metric, finding.cause, finding.confidence) == ("error_rate", "errors", 0.9)
    assert finding.summary.startswith("error rate 0.") and demo.host_port in finding.summary
    assert finding.evidence["service_known"] is True
    assert finding.evidence["labels"]["job"] == "x"
    assert finding.evidence["generatorURL"].startswith("http")
    payload = received.payloads[0]
    assert (payload.version, payload.status, payload.receiver) == ("4", "firing", "test")
    assert payload.truncatedAlerts == 0 and finding.evidence["groupKey"] == payload.groupKey

    faults.clear(demo.url)

    def resolved() -> list[str]:
        with received.lock:
            return [fp for p in received.payloads for fp in resolved_fingerprints(p)]

    assert finding.evidence["fingerprint"] in wait_for(resolved, 40, "the resolved webhook", interval=0.2)
    assert received.errors == []
