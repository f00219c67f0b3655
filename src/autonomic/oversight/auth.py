"""API tokens and roles.

A token is ``aut_`` followed by 32 random bytes (URL-safe base64). Only its SHA-256 (hex) is
kept, as the store state ``token:<sha256>`` = ``{"name", "role", "created_at"}``; the token
itself is shown once, when created, and is never stored, logged or audited.

Roles are ordered: ``viewer`` reads, ``operator`` also approves, denies, pauses and resumes
(and sends Alertmanager alerts, unless the receiver has a secret of its own), ``admin`` also
changes the policy. ``alerts`` stands apart: it sends Alertmanager alerts and nothing else (not
even reads), the least an Alertmanager needs.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Literal, cast

from autonomic.knowledge import Store

Role = Literal["alerts", "viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("alerts", "viewer", "operator", "admin")
_RANKED: tuple[Role, ...] = ("viewer", "operator", "admin")  # each allows what the ones before it do
TOKEN_PREFIX = "aut_"
STATE_PREFIX = "token:"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's name and role."""

    name: str
    role: Role

    @property
    def actor(self) -> str:
        """The audit log's actor for this principal's acts."""
        return f"token:{self.name}"

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may: a role at least ``needed`` among viewer,
        operator and admin; sending alerts, the ``alerts`` role or operator and above."""
        if needed == "alerts":
            return self.role in ("alerts", "operator", "admin")
        if self.role == "alerts":
            return False
        return _RANKED.index(self.role) >= _RANKED.index(needed)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"role: must be one of {', '.join(ROLES)}, not {role!r}")
    return cast(Role, role)


def tokens(store: Store) -> list[dict[str, Any]]:
    """Every token's name, role and creation time (never the token), oldest first."""
    found = [dict(v) for v in store.states(STATE_PREFIX).values()]
    return sorted(found, key=lambda v: (v.get("created_at", 0.0), v.get("name", "")))


def create_token(store: Store, name: str, role: str, *, actor: str = "cli") -> str:
    """Create a token named ``name`` with ``role``; return the token (shown once, stored hashed).
    Raises ValueError naming the field for a bad name or role, or a name already in use."""
    checked = _check_role(role)
    if not _NAME.match(name):
        raise ValueError(f"name: {name!r} must be 1-64 letters, digits or _.@- and start with a letter or digit")
    if any(t.get("name") == name for t in tokens(store)):
        raise ValueError(f"name: a token named {name!r} already exists (revoke it first)")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    value = {"name": name, "role": checked, "created_at": store.server_time()}  # the server's clock on PostgreSQL
    store.set_state(STATE_PREFIX + hash_token(raw), value, actor=actor, event="token.created",
                    data={"name": name, "role": checked})
    return raw


def authenticate(store: Store, raw: str | None) -> Principal | None:
    """The principal a presented token belongs to, or None when it is missing, malformed or unknown."""
    if not raw or not raw.startswith(TOKEN_PREFIX) or len(raw) > 200:
        return None
    value = store.get_state(STATE_PREFIX + hash_token(raw))
    if not value or value.get("role") not in ROLES or not value.get("name"):
        return None
    return Principal(name=str(value["name"]), role=cast(Role, value["role"]))


TOKENS_REMEMBERED_S = 3600.0  # how long a token verified in the store may pause while it cannot be read


class TokenMemory:
    """The tokens this process verified in the store lately (by their hash; never the token),
    for one use: the kill switch when the store cannot be read. A database down must not keep an
    operator from pausing automation, but authentication reads the store. So a token the store
    said is valid within the last ``ttl_s`` is taken, for a pause only, while the store does not
    answer. A token presented while the store answers is checked there as always, and forgotten
    when the store no longer knows it; one revoked and not presented since still pauses through
    this memory for what is left of its ``ttl_s`` while the store is down (a pause only stops
    automation). Thread-safe dict operations only."""

    def __init__(self, ttl_s: float = TOKENS_REMEMBERED_S) -> None:
        self.ttl_s = ttl_s
        self._seen: dict[str, tuple[Principal, float]] = {}

    def verified(self, raw: str, principal: Principal | None, now: float) -> None:
        """What the store just said of ``raw``: its principal, or None (unknown: forgotten)."""
        key = hash_token(raw)
        if principal is None:
            self._seen.pop(key, None)
        else:
            self._seen[key] = (principal, now)

    def recall(self, raw: str, now: float) -> tuple[Principal, float] | None:
        """``raw``'s principal and when it was verified, if within ``ttl_s`` of ``now``."""
        seen = self._seen.get(hash_token(raw))
        if seen is None or not 0 <= now - seen[1] <= self.ttl_s:
            return None
        return seen


def revoke(store: Store, name: str, *, actor: str = "cli") -> bool:
    """Delete the token named ``name`` (audited ``token.revoked``); False when there is none."""
    for key, value in store.states(STATE_PREFIX).items():
        if value.get("name") == name:
            store.set_state(key, None, actor=actor, event="token.revoked", data={"name": name})
            return True
    return False
