"""Fuzz the API from its own OpenAPI document (schemathesis, bounded): whatever a client sends,
with an admin token, the answer is never a 5xx."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from autonomic.config import load_config_data
from autonomic.knowledge import Store
from autonomic.model import FindingKind, Incident, IncidentState, Severity
from autonomic.oversight.api import ApiContext, create_app
from autonomic.oversight.auth import create_token

# per operation; about 20 operations keep the file well under a minute (raise it locally to dig deeper)
MAX_EXAMPLES = int(os.environ.get("AUTONOMIC_FUZZ_EXAMPLES", "15"))


def _build() -> tuple[Store, Any, dict[str, str]]:
    """An app over a private in-memory store with one admin token and an incident awaiting approval.
    Built when the module loads because schemathesis' eager ``parametrize`` needs the schema then
    (its fixture-based loader does not work with this pytest)."""
    store = Store("sqlite://")
    config = load_config_data({"engine": {"state_dir": "/nonexistent/autonomic-fuzz", "host_metrics": False},
                               "services": [{"name": "web"}]}, source="fuzz.yaml", base_dir=Path("/"))
    token = create_token(store, "fuzzer", "admin")
    incident = Incident(service="web", cause="down", state=IncidentState.AWAITING_APPROVAL,
                        severity=Severity.CRITICAL, kind=FindingKind.STATE, opened_at=1.0, updated_at=1.0,
                        last_finding_at=1.0, summary="web is down")
    store.record(incident, actor="engine", event="incident.opened", subject=incident.id)
    return store, create_app(ApiContext(store=store, config=config)), {"Authorization": f"Bearer {token}"}


STORE, APP, HEADERS = _build()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/api/v1/events")  # endless stream


@pytest.fixture(scope="module", autouse=True)
def _close_store() -> Iterator[None]:
    yield
    STORE.close()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_built_from_the_openapi_document_gets_a_server_error(case: Any) -> None:
    case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])


def test_the_fuzzed_store_is_still_consistent() -> None:
    assert STORE.verify_audit().ok
