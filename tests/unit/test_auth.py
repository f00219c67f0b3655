"""API tokens: created once, stored only as a hash, roles ordered, revocable; the token CLI."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autonomic.knowledge import Store
from autonomic.oversight.auth import Principal, TokenMemory, authenticate, create_token, revoke, tokens
from autonomic.oversight.tokens_cli import token_app


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store("sqlite://")
    yield s
    s.close()


def test_created_token_authenticates_with_its_name_and_role(store: Store) -> None:
    raw = create_token(store, "ci-bot", "operator")
    assert raw.startswith("aut_") and len(raw) > 40
    principal = authenticate(store, raw)
    assert principal == Principal(name="ci-bot", role="operator")
    assert principal.actor == "token:ci-bot"


def test_only_the_hash_is_stored_and_the_token_never_reaches_the_audit_log(store: Store) -> None:
    raw = create_token(store, "alice", "admin")
    digest = hashlib.sha256(raw.encode()).hexdigest()
    assert (store.get_state(f"token:{digest}") or {}).get("name") == "alice"
    assert list(store.states("token:")) == [f"token:{digest}"]
    events = store.audit_events()
    assert [e.kind for e in events] == ["token.created"]
    assert events[0].data["name"] == "alice" and events[0].data["role"] == "admin"
    assert raw not in json.dumps([e.model_dump(mode="json") for e in events])


@pytest.mark.parametrize("raw", [None, "", "aut_", "aut_nope", "Bearer aut_x", "x" * 500])
def test_missing_malformed_or_unknown_tokens_do_not_authenticate(store: Store, raw: str | None) -> None:
    create_token(store, "alice", "viewer")
    assert authenticate(store, raw) is None


def test_roles_are_ordered_viewer_operator_admin() -> None:
    viewer, operator, admin = Principal("x", "viewer"), Principal("x", "operator"), Principal("x", "admin")
    assert viewer.allows("viewer") and not viewer.allows("operator") and not viewer.allows("admin")
    assert operator.allows("viewer") and operator.allows("operator") and not operator.allows("admin")
    assert admin.allows("viewer") and admin.allows("operator") and admin.allows("admin")


@pytest.mark.parametrize(("name", "role", "field"), [
    ("ok", "root", "role"), ("", "viewer", "name"), ("has space", "viewer", "name"), ("a" * 65, "viewer", "name"),
])
def test_bad_name_or_role_is_refused_naming_the_field_and_nothing_is_stored(
    store: Store, name: str, role: str, field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        create_token(store, name, role)
    assert store.audit_events() == [] and store.states("token:") == {}


def test_a_name_in_use_is_refused(store: Store) -> None:
    create_token(store, "alice", "viewer")
    with pytest.raises(ValueError, match="already exists"):
        create_token(store, "alice", "admin")


def test_revoked_token_stops_authenticating_and_revocation_is_audited(store: Store) -> None:
    raw = create_token(store, "alice", "viewer")
    other = create_token(store, "bob", "viewer")
    assert revoke(store, "alice", actor="person:root") is True
    assert authenticate(store, raw) is None
    assert authenticate(store, other) is not None
    assert revoke(store, "alice") is False
    last = store.audit_events()[-1]
    assert (last.kind, last.actor, last.data["name"]) == ("token.revoked", "person:root", "alice")
    assert [t["name"] for t in tokens(store)] == ["bob"]


def test_token_cli_creates_lists_and_revokes(tmp_path: Path) -> None:
    cfg = tmp_path / "autonomic.yaml"
    cfg.write_text(f"engine: {{state_dir: {tmp_path / 'state'}, host_metrics: false}}\nbuiltin_patterns: false\n")
    runner = CliRunner()
    created = runner.invoke(token_app, ["create", "--role", "operator", "--name", "oncall", "-c", str(cfg)])
    assert created.exit_code == 0, created.output
    raw = created.stdout.strip().splitlines()[0]
    assert raw.startswith("aut_")
    listed = runner.invoke(token_app, ["list", "--json", "-c", str(cfg)])
    assert [(t["name"], t["role"]) for t in json.loads(listed.stdout)] == [("oncall", "operator")]
    assert raw not in listed.stdout
    bad = runner.invoke(token_app, ["create", "--role", "god", "--name", "x", "-c", str(cfg)])
    assert bad.exit_code == 2 and "--role" in bad.stderr
    assert runner.invoke(token_app, ["revoke", "oncall", "-c", str(cfg)]).exit_code == 0
    assert runner.invoke(token_app, ["revoke", "oncall", "-c", str(cfg)]).exit_code == 2  # none by that name now
    store = Store(f"sqlite:///{tmp_path / 'state' / 'autonomic.db'}")
    try:
        assert authenticate(store, raw) is None
    finally:
        store.close()


def test_token_memory_recalls_a_token_the_store_verified_within_its_ttl_and_forgets_one_it_called_unknown() -> None:
    memory = TokenMemory(ttl_s=60)
    op = Principal("op", "operator")
    memory.verified("aut_a", op, 1000.0)
    assert memory.recall("aut_a", 1060.0) == (op, 1000.0)
    assert memory.recall("aut_a", 1060.5) is None  # older than its ttl
    assert memory.recall("aut_a", 999.0) is None  # a clock gone back: not vouched for
    assert memory.recall("aut_b", 1000.0) is None  # never verified
    memory.verified("aut_a", None, 1010.0)  # the store said unknown since (revoked)
    assert memory.recall("aut_a", 1020.0) is None
    assert "aut_a" not in repr(memory.__dict__)  # kept by hash only
