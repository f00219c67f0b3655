"""The REST API: what people see and do, over HTTP, from the process that runs the loop.

``create_app(ctx)`` builds the FastAPI app. Reads need a ``viewer`` token, approvals, pauses
and a person's start or stop of a supervised service an ``operator``, policy changes an
``admin`` (see :mod:`autonomic.oversight.auth`);
``/healthz``, ``/readyz`` and ``/metrics`` are open. Every mutation goes through the store
exactly as the CLI's does, audited with the actor ``token:<name>``. Every input is
validated before anything is written, so a 4xx leaves the store unchanged; an unexpected
error is logged and answered ``500 {"detail": "internal error"}`` without internals; a store
that does not answer, 503 (nothing was written; try again); a write refused because another
replica took the engine's lease over, 503 with the reason.

``POST /api/v1/alerts`` receives Alertmanager webhooks. When configured it checks a bearer
token and/or an HMAC: ``X-Autonomic-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw
body>">`` (the scheme autonomic's own webhook notifier signs with, :func:`~autonomic.oversight.
notify.sign`), with that ``X-Autonomic-Timestamp`` (Unix seconds) within 300 s of now; a
signature already accepted in that window is refused as a replay (remembered in the store, with
the alerts it brought, so by every replica sharing it). The timestamp is signed, so a captured
request cannot be sent again later with a fresh one.

``GET /api/v1/events`` streams every new audit event as server-sent events.
"""


import asyncio
import contextlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autonomic.analyze.goals import GOAL_STATE_PREFIX, stored_goals
from autonomic.clock import SystemClock
from autonomic.config import Config
from autonomic.engine import (
    OUTBOX,
    PAUSE_GLOBAL,
    POLICY_OVERRIDE,
    STOPPED_PREFIX,
    Engine,
    NotSupervised,
    UnknownService,
    answer_approval,
    approval_expires_at,
    approval_key,
    pause_file,
    pause_key,
    paused_reason,
    pauses_in_force,
    pending_notifications,
    queue_findings,
    queued_service_requests,
    request_service,
    stopped_key,
    write_pause_file,
)
from autonomic.errors import ConfigError, NotLeaderError, Problem, StoreError, StoreValueError
from autonomic.execute.canary import JudgeConfig
from autonomic.execute.canary import judge as judge_canary
from autonomic.knowledge import Store
from autonomic.knowledge.lease import ENGINE_LEASE
from autonomic.model import Incident, IncidentState
from autonomic.oversight import dashboard
from autonomic.oversight.auth import Principal, Role, TokenMemory, authenticate
from autonomic.oversight.cache import ReadCache
from autonomic.oversight.explain import explain_incident
from autonomic.oversight.metrics import CONTENT_TYPE, EngineMetrics
from autonomic.oversight.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from autonomic.oversight.server import ApiSpec
from autonomic.plan.policy import PolicyConfig, read_override
from autonomic.protocols import Clock
from autonomic.yamlio import format_loc, readable_errors

log = logging.getLogger("autonomic.api")

__all__ = ["ApiContext", "ApiSpec", "context_from_spec", "create_app"]

API = "/api/v1"
WEBHOOK_MAX_SKEW_S = 300.0
ACCEPTED_SIGNATURES = "webhook-signature:"  # named-state prefix of signatures accepted (Store.first_time)
SSE_POLL_S = 0.5
SSE_HEARTBEAT_S = 15.0
MAX_SEQ = 2**62  # SQLite integers are 64-bit: larger query numbers are refused with 422
_DAY, _WEEK = 86_400.0, 7 * 86_400.0
_SERIES_BEFORE_S = 900.0  # how much history before an incident opened its chart shows
# an incident's page keeps this many of its first and of its latest findings and audit events:
# a lasting symptom adds one of each every 10 s, and the dashboard fetches the page on every event
_CHAIN_FIRST, _CHAIN_LATEST = 20, 200


@dataclass
class ApiContext:
    """What the API serves from. ``engine`` is None when the API runs without a loop."""

    store: Store
    config: Config
    engine: Engine | None = None
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    clock: Clock = field(default_factory=SystemClock)
    webhook_token: str | None = field(default=None, repr=False)  # secrets: never in a repr (or a log)
    webhook_hmac_secret: str | None = field(default=None, repr=False)
    webhook_open: bool = False  # neither secret set: accept alerts without any credential (api.webhook_open)
    max_body_bytes: int = 1_048_576
    read_cache_s: float = 0.5  # how long a read response may be replayed (0: never); see oversight.cache
    tokens: TokenMemory = field(default_factory=TokenMemory)  # for the kill switch while the store is down


def context_from_spec(
    spec: ApiSpec, *, store: Store, config: Config, engine: Engine | None, metrics: EngineMetrics,
    clock: Clock | None = None, environ: dict[str, str] | None = None,
) -> ApiContext:
    """An ApiContext from ``api:``, reading the webhook secrets from the environment variables it
    names. Raises ConfigError naming the field when a named variable is unset or empty."""
    env = os.environ if environ is None else environ
    secrets: dict[str, str | None] = {}
    for fname in ("webhook_token_env", "webhook_hmac_env"):
        var = getattr(spec, fname)
        secrets[fname] = env.get(var) if var else None
        if var and not secrets[fname]:
            raise ConfigError([Problem(config.source, None, f"api.{fname}",
                                       f"environment variable {var} is not set or empty")])
    return ApiContext(store=store, config=config, engine=engine, metrics=metrics, clock=clock or SystemClock(),
                      webhook_token=secrets["webhook_token_env"], webhook_hmac_secret=secrets["webhook_hmac_env"],
                      webhook_open=spec.webhook_open, max_body_bytes=spec.max_body_bytes)


# --- request bodies ------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CommentBody(_Body):
    comment: str = Field(default="", max_length=2000)
    # the request (decision id) the person saw and answers; when given and the incident has
    # been asked again since, the answer is refused (409) rather than applied to a request unseen
    decision: str | None = Field(default=None, max_length=64)


class PauseBody(_Body):
    reason: str = Field(min_length=1, max_length=2000)
    service: str | None = Field(default=None, max_length=100)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class ServiceBody(_Body):
    comment: str = Field(default="", max_length=2000)


class ResumeBody(_Body):
    service: str | None = Field(default=None, max_length=100)
    reason: str = Field(default="", max_length=2000)


# --- middleware ----------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Answers 413 to a request whose body is over ``limit`` bytes, by its Content-Length or,
    for a chunked body, as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            too_big = length.isdigit()
            await _json(send, 413 if too_big else 400,
                        "request body too large" if too_big else "invalid Content-Length header")
            return
        seen = 0
        exceeded = replied = started = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _TooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns an error while reading the body into a 400 of its own: replace it
            nonlocal replied, started
            if not exceeded or started:
                started = started or message["type"] == "http.response.start"
                await send(message)
            elif not replied:
                replied = True
                await _json(send, 413, "request body too large")

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if exceeded and not replied and not started:
            await _json(send, 413, "request body too large")


class Guard:
    """Outermost layer: times each request for ``autonomic_api_request_seconds`` and turns an
    unexpected exception into ``500 {"detail": "internal error"}`` (logged, never shown)."""

    def __init__(self, app: ASGIApp, metrics: EngineMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except NotLeaderError as exc:  # leader election: another replica took the lease; nothing was written
            log.warning("%s %s refused: %s", scope.get("method"), scope.get("path"), exc)
            if not started:
                await _json(send, 503, str(exc))
        except StoreValueError as exc:  # a value no store can hold: retrying it would fail for ever
            log.warning("%s %s refused: %s", scope.get("method"), scope.get("path"), exc)
            if not started:
                await _json(send, 422, str(exc))
        except StoreError as exc:  # the store does not answer: nothing was written, the client may retry
            log.error("%s %s: %s", scope.get("method"), scope.get("path"), exc)
            if not started:
                await _json(send, 503, "the store did not answer; nothing was changed; try again")
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await _json(send, 500, "internal error")
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            if not route.endswith("/events"):
                self.metrics.api_request(str(scope.get("method", "")), route, time.perf_counter() - started_at)


# on every response: the dashboard may not be framed by another site (a hidden frame over its
# one-click Approve), nothing is sniffed into another type, and no page of ours sends its URL
# (which may hold ?token= for a moment) as a Referer
_SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'"),
                     (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """Outermost layer: adds :data:`_SECURITY_HEADERS` to every HTTP response (errors included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


# --- auth ----------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="An API token: autonomic token create --role ...")
_UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="autonomic"'}


def _require(ctx: ApiContext, role: Role, *, query_token: bool = False,
             store_down: bool = False) -> Callable[..., Principal]:
    """A dependency that authenticates the request's bearer token (or, for EventSource, which
    cannot set headers, ``?token=``) and checks its role: 401 without a valid token, 403 when
    the role is too low. When the store cannot be read, 503 (the StoreError), except with
    ``store_down`` (the kill switch): a token this process verified in the store within
    ``TokenMemory.ttl_s`` is taken, and the warning says so."""

    def check(creds: HTTPAuthorizationCredentials | None, token: str | None) -> Principal:
        raw = creds.credentials if creds is not None else token
        if not raw:
            raise HTTPException(401, "missing API token (Authorization: Bearer <token>)", headers=_UNAUTHORIZED)
        try:
            principal = authenticate(ctx.store, raw)
        except StoreError as exc:
            now = ctx.clock.now()
            remembered = ctx.tokens.recall(raw, now) if store_down else None
            if remembered is None:
                raise
            principal, when = remembered
            log.warning("the store cannot be read to check token %r (%s); taken as the store said %.0f s ago, "
                        "for the kill switch only", principal.name, exc, now - when)
        else:
            ctx.tokens.verified(raw, principal, ctx.clock.now())
        if principal is None:
            raise HTTPException(401, "invalid or revoked API token", headers=_UNAUTHORIZED)
        if not principal.allows(role):
            raise HTTPException(403, f"this needs the {role} role; token {principal.name!r} is {principal.role}")
        return principal

    if query_token:
        def with_query(
            creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
            token: Annotated[str | None, Query(max_length=200, description="token, for EventSource")] = None,
        ) -> Principal:
            return check(creds, token)

        return with_query

    def header_only(creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> Principal:
        return check(creds, None)

    return header_only


# --- views ---------------------------------------------------------------------------------


def _policy(ctx: ApiContext) -> tuple[PolicyConfig, str]:
    """The policy in force and where it comes from ("override" or "config"), read as the engine
    reads it (Engine.policy): an admin's stored override, else the file's."""
    raw = ctx.store.get_state(POLICY_OVERRIDE)
    if raw:
        policy, replaced = read_override(raw, ctx.config.spec.policy)  # the engine logs what it replaced
        return policy, "config" if replaced == ["*"] else "override"
    return ctx.config.spec.policy, "config"


def _service_names(ctx: ApiContext) -> list[str]:
    names = [s.name for s in ctx.config.services]
    return [*names, "host"] if ctx.config.engine.host_metrics else names


def _health(ctx: ApiContext) -> dict[str, tuple[str, list[str]]]:
    """Each service's health: live from the engine, else the engine's last status.json. A standby
    replica (leader election) has measured nothing, and its status.json, if any, is from when it
    last led: UNKNOWN, saying so."""
    if ctx.engine is not None and not ctx.engine.started and ctx.engine.standby is not None:
        why = f"not measured here: {ctx.engine.standby}"
        return {name: ("UNKNOWN", [why]) for name in _service_names(ctx)}
    if ctx.engine is not None:
        try:
            return {name: (state.value, reasons) for name, (state, reasons) in ctx.engine.health().items()}
        except Exception:  # a race with the loop must not fail the page; fall back to the file
            log.exception("engine.health() failed")
    path = ctx.config.state_dir / "status.json"
    try:
        live = json.loads(path.read_text()) if path.exists() else {}
        return {str(k): (str(v["state"]), list(v.get("reasons", []))) for k, v in live.get("health", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _open_incidents(ctx: ApiContext) -> list[Incident]:
    """Incidents not yet closed, newest first (at most 1000)."""
    return ctx.store.incidents(unclosed=True, limit=1000)


def _services(ctx: ApiContext, unclosed: dict[str, dict[IncidentState, int]] | None = None) -> list[dict[str, Any]]:
    health = _health(ctx)
    policy, _ = _policy(ctx)
    # counted by the store, not from the newest 1,000 listed: a service's older ones count too
    open_counts = {name: sum(by_state.values())
                   for name, by_state in (ctx.store.unclosed_counts() if unclosed is None else unclosed).items()}
    queued: dict[str, list[dict[str, Any]]] = {}
    for request in queued_service_requests(ctx.store):
        queued.setdefault(request["service"], []).append(request)
    # read once for every service (the page is read at every redraw; a fleet has thousands)
    pauses = pauses_in_force(ctx.store, ctx.config.state_dir)
    stops = ctx.store.states(STOPPED_PREFIX)
    out = []
    for name in _service_names(ctx):
        spec = ctx.config.service(name)
        state, reasons = health.get(name, ("UNKNOWN", []))
        why = paused_reason(ctx.store, name, pauses=pauses)
        stopped = stops.get(stopped_key(name)) if spec is not None else None
        out.append({
            "name": name,
            "type": spec.type if spec else "host",
            "state": state,
            "reasons": reasons,
            "autonomy": policy.effective("*", None, name).autonomy.value,
            "paused": why is not None,
            "paused_reason": why,
            # a supervised service a person stopped (autonomic stop): {actor, comment, ts}, else None
            "stopped_on_purpose": stopped,
            # people's starts and stops of it queued and not yet carried out by the engine that leads,
            # oldest first: [{request, service, verb, actor, comment, ts}] (see queued_service_requests)
            "requests": queued.get(name, []),
            "open_incidents": open_counts.get(name, 0),
            "depends_on": list(spec.depends_on) if spec else [],
        })
    return out


def _thresholds(ctx: ApiContext, service: str, metrics: list[str]) -> dict[str, dict[str, Any]]:
    """The line of each metric: ``{"value": line, "direction": "max" | "min"}``."""
    spec = ctx.config.service(service)
    th = ctx.engine.thresholds.get(service) if ctx.engine is not None else (spec.thresholds if spec else None)
    out: dict[str, dict[str, Any]] = {}
    if th is None:
        return out
    floors = {**th.floors(), "availability": th.availability}
    for metric in metrics:
        if metric in floors:
            out[metric] = {"value": float(floors[metric]), "direction": "min"}
        elif metric in th.maximums():
            out[metric] = {"value": float(th.maximums()[metric]), "direction": "max"}
    return out


def _goals(ctx: ApiContext, service: str | None = None) -> list[dict[str, Any]]:
    """Every configured goal (of ``service``) as the engine last saved it (see stored_goals)."""
    by_service = {s.name: s.goals for s in ctx.config.services if s.goals and service in (None, s.name)}
    if not by_service:
        return []
    return stored_goals(by_service, ctx.store.states(GOAL_STATE_PREFIX), ctx.clock.now())


def _resolve_incident(ctx: ApiContext, ident: str) -> str:
    try:
        return ctx.store.resolve_id(Incident, ident)
    except KeyError as exc:
        raise HTTPException(404, str(exc)) from None  # IdLookupError: str() is the plain message


def _check_service(ctx: ApiContext, service: str | None) -> None:
    if service is not None and service not in _service_names(ctx):
        raise HTTPException(404, f"no service named {service!r}")


def _leadership(ctx: ApiContext) -> dict[str, Any] | None:
    """Leader election, as the dashboard shows it: which replica leads, since when (the store's
    clock), how long ago it renewed, and this replica's own part (``role``: leader or standby;
    None for a process that is no replica, such as ``autonomic serve``). None without leader election."""
    elector = ctx.engine.elector if ctx.engine is not None else None
    lease = ctx.store.lease(ENGINE_LEASE)
    if elector is None and lease is None:
        return None
    return {
        "leader": lease.holder if lease else None,
        "epoch": lease.epoch if lease else 0,
        "since": lease.acquired_at if lease and lease.holder else None,
        "renewed_s_ago": ctx.store.server_time() - lease.renewed_at if lease else None,
        "lease_s": ctx.config.engine.leader_election.lease_s,
        "this_replica": elector.identity if elector else None,
        "role": None if elector is None else "leader" if elector.leading else "standby",
        "status": elector.describe() if elector else None,
        "config_differs": bool(elector and elector.config_differs),
    }


# --- routes --------------------------------------------------------------------------------


def _open_routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", responses={503: {"description": "the engine's loop is stuck, with the reason"}})
    def healthz() -> JSONResponse:
        """Alive (a liveness probe): the process answers and, with an engine attached, its loop
        makes progress: it has not spent longer than ``stuck_after_s`` (the longest step the
        config allows, see Engine.stuck_after_s) in one step. A stuck loop answers 503 naming the
        step it is stuck in, so the supervisor restarts the process; its lease is no longer renewed
        either, so a standby takes over. A standby is alive while its lease rounds go on."""
        stuck = ctx.engine.stuck if ctx.engine is not None else None
        if stuck is not None:
            return JSONResponse({"status": "stuck", "reason": stuck}, 503)
        return JSONResponse({"status": "ok"})

    @router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
    def readyz() -> JSONResponse:
        """Ready (a readiness probe: may this replica be sent API traffic?) when the store answers:
        every route is served from the store, by a leader in the middle of a long step (an actuator
        call, a verification) as by a standby. Whether the loop makes progress is liveness
        (``/healthz``), not readiness: a leader made not-ready by a long step was the first pod a
        rolling update deleted, a second handover. A standby replica (leader election) says
        ``{"status": "standby", "reason": ...}`` naming the leader; a leader ``"ok"`` with how
        long ago its loop last ticked (``last_tick_s_ago``; None before its first tick)."""
        try:
            ctx.store.get_state(PAUSE_GLOBAL)
        except Exception:
            log.exception("readiness: store read failed")
            return JSONResponse({"status": "unavailable", "reason": "the store does not answer"}, 503)
        if ctx.engine is not None:
            standby = ctx.engine.standby
            if standby is not None:  # leader election: it serves the API from the store all the same
                return JSONResponse({"status": "standby", "reason": standby})
            last = ctx.engine.last_tick_at
            age = None if last is None else round(max(0.0, ctx.clock.now() - last), 1)
            return JSONResponse({"status": "ok", "last_tick_s_ago": age})
        return JSONResponse({"status": "ok"})

    @router.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """The engine's own figures, Prometheus text format."""
        if ctx.engine is not None:
            ctx.metrics.leader(ctx.engine.standby is None)
            ctx.metrics.progress(ctx.engine.watchdog.silent_s(), ctx.engine.stuck_after_s)
        pauses = pauses_in_force(ctx.store, ctx.config.state_dir)
        ctx.metrics.paused("global", PAUSE_GLOBAL in pauses)
        for name in _service_names(ctx):
            ctx.metrics.paused(name, pause_key(name) in pauses)
        pending = pending_notifications(ctx.store.states(OUTBOX), ctx.clock.now())
        ctx.metrics.notifications_pending(pending["count"], pending["oldest_s"] or 0.0)
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    return router


def _budgets(ctx: ApiContext, policy: PolicyConfig, now: float) -> dict[str, dict[str, Any]]:
    """The rate limits' room, per window (``per_day``, ``per_week``): that of the action type
    with the least left (``type``; its limit with ``policy.actions`` overrides), among the
    types the services bind, since a limit counts one type's actions. The default's limit and
    none used (``type`` None) when no service binds one. (All actions against one type's limit
    read more than 100% used with two types busy.)"""
    types = sorted({t for svc in ctx.config.services for t in svc.actuators})
    budgets: dict[str, dict[str, Any]] = {}
    for window, since in (("per_day", now - _DAY), ("per_week", now - _WEEK)):
        tightest: dict[str, Any] = {"limit": getattr(policy.rate_limits, window), "used": 0, "type": None}
        for t in types:
            limit = getattr(policy.effective(t, None, "").rate_limits, window)
            used = ctx.store.count_actions(since, type=t)
            if tightest["type"] is None or limit - used < tightest["limit"] - tightest["used"]:
                tightest = {"limit": limit, "used": used, "type": t}
        budgets[window] = tightest
    return budgets


def _read_routes(ctx: ApiContext) -> APIRouter:
    viewer = Depends(_require(ctx, "viewer"))
    router = APIRouter(prefix=API, dependencies=[viewer], tags=["read"])

    @router.get("/overview")
    def overview() -> dict[str, Any]:
        """Everything the dashboard's front page shows."""
        policy, _ = _policy(ctx)
        now = ctx.clock.now()
        with ctx.store.reading():  # the list and its counts from one snapshot
            open_incidents = _open_incidents(ctx)
            unclosed = ctx.store.unclosed_counts()
        return {
            "services": _services(ctx, unclosed),
            "paused_global": pauses_in_force(ctx.store, ctx.config.state_dir).get(PAUSE_GLOBAL),
            "breakers": {k.split(":", 1)[1]: v for k, v in ctx.store.states("breaker:").items()},
            "budgets": _budgets(ctx, policy, now),
            "open_incidents": [i.model_dump(mode="json") for i in open_incidents],  # the newest 1,000
            # the counts of them all (in a mass outage, a request older than the newest 1,000 still waits)
            "open_incidents_total": sum(n for by_state in unclosed.values() for n in by_state.values()),
            "awaiting_approval": sum(n.get(IncidentState.AWAITING_APPROVAL, 0) for n in unclosed.values()),
            "leadership": _leadership(ctx),
            "goals": _goals(ctx),
            "notifications_pending": pending_notifications(ctx.store.states(OUTBOX), now),
        }

    @router.get("/services")
    def services() -> list[dict[str, Any]]:
        return _services(ctx)

    @router.get("/services/{name}", responses={404: {"description": "no such service"}})
    def service(name: str) -> dict[str, Any]:
        """One service, its thresholds, actuator bindings and recent incidents."""
        _check_service(ctx, name)
        item = next(s for s in _services(ctx) if s["name"] == name)
        spec = ctx.config.service(name)
        item["thresholds"] = spec.thresholds.model_dump(mode="json") if spec else {}
        item["actuators"] = sorted(ctx.config.bindings.get(name, {}))
        item["incidents"] = [i.model_dump(mode="json") for i in ctx.store.incidents(service=name, limit=20)]
        return item

    @router.get("/incidents")
    def incidents(
        state: IncidentState | None = None,
        service: Annotated[str | None, Query(max_length=100)] = None,
        all: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    ) -> list[dict[str, Any]]:
        """Incidents, newest first: the unclosed ones, or every one with ``all``, or those in
        ``state``; at most ``limit``. The next page: ``before`` = the id of the last one listed
        (an empty list after the last page)."""
        wide = all or state is not None
        try:
            found = ctx.store.incidents(states=[state] if state else None, service=service, limit=limit,
                                        unclosed=not wide, before=before)
        except KeyError as exc:
            raise HTTPException(404, f"before: {exc}") from None
        return [i.model_dump(mode="json") for i in found]

    @router.get("/incidents/{incident_id}", responses={404: {"description": "no such incident"}})
    def incident(incident_id: str) -> dict[str, Any]:
        """The whole chain (explain), the incident's metric series (with an engine) and thresholds.
        ``incident_id`` may be a unique prefix of at least 4 characters. Of a long incident's
        findings and audit events the first 20 and the latest 200 are given; ``omitted`` says
        how many of each were left out between them (``autonomic explain --json`` has them all)."""
        full = _resolve_incident(ctx, incident_id)
        chain = explain_incident(ctx.store, full, ends=(_CHAIN_FIRST, _CHAIN_LATEST))
        inc = chain["incident"]
        metrics = sorted({f["metric"] for f in chain["findings"]})
        series: dict[str, dict[str, list[float]]] = {}
        if ctx.engine is not None:
            since = inc["opened_at"] - _SERIES_BEFORE_S
            for metric in metrics:
                ts, values = ctx.engine.series.window(inc["service"], metric, since)
                series[metric] = {"ts": [float(t) for t in ts], "values": [float(v) for v in values]}
        chain["series"] = series
        chain["thresholds"] = _thresholds(ctx, inc["service"], metrics)
        return chain

    @router.get("/approvals")
    def approvals() -> list[dict[str, Any]]:
        """Incidents awaiting a person's answer, each with its latest decision, the answer to
        that request the engine has not yet acted on (an answer to an earlier request of the same
        incident is not this request's answer, so the request shows as unanswered), and when the
        request expires (``expires_at``: as recorded with it by the engine that asked; for one
        recorded without it, by this config's ``engine.approval_ttl_s``, as an answer is judged)."""
        out = []
        for inc in ctx.store.incidents(states=[IncidentState.AWAITING_APPROVAL], limit=1000):
            decisions = ctx.store.decisions(inc.id)
            latest = decisions[-1] if decisions else None
            answer = ctx.store.get_state(approval_key(inc.id))
            if answer is not None and latest is not None and answer.get("decision") not in (None, latest.id):
                answer = None
            out.append({"incident": inc.model_dump(mode="json"),
                        "decision": latest.model_dump(mode="json") if latest else None,
                        "answer": answer,
                        "expires_at": approval_expires_at(inc, decisions, ctx.config.engine.approval_ttl_s)})
        return out

    @router.get("/goals")
    def goals(service: str | None = None) -> list[dict[str, Any]]:
        """Every configured goal (of ``service``, when given) with its error budget left, its burn
        rate over each rule window and when the budget runs out at the current burn, as the
        engine last saved them (``as_of``: its newest sample counted)."""
        _check_service(ctx, service)
        return _goals(ctx, service)

    @router.get("/patterns")
    def patterns() -> list[dict[str, Any]]:
        return [p.model_dump(mode="json") for p in ctx.config.patterns]

    @router.get("/policy")
    def policy() -> dict[str, Any]:
        """The policy in force; ``source`` is "override" after an admin's PUT, else "config"."""
        current, source = _policy(ctx)
        return {"source": source, "policy": current.model_dump(mode="json")}

    @router.get("/audit")
    def audit(
        since_seq: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        newest: bool = False,
    ) -> dict[str, Any]:
        """Audit events after ``since_seq``, oldest first; page on with ``last_seq``. With
        ``newest=true``, the newest ``limit`` of them (still oldest first)."""
        events = ctx.store.audit_events(since_seq=since_seq, limit=limit, newest=newest)
        return {"events": [e.model_dump(mode="json") for e in events],
                "last_seq": events[-1].seq if events else since_seq}

    @router.get("/audit/verify")
    def audit_verify() -> dict[str, Any]:
        """Recompute every hash of the chain and check its links (reads the whole log: the
        dashboard asks when the audit page is opened or on request, not at every redraw). After
        retention pruned the oldest entries, the chain is checked from its anchor: ``from_seq``
        is the first entry checked, ``summary`` says where it starts in words."""
        report = ctx.store.verify_audit()
        return {"ok": report.ok, "checked": report.checked, "problems": report.problems,
                "from_seq": report.anchor_seq + 1, "summary": report.summary()}

    return router


class CanaryBody(BaseModel):
    """``POST /api/v1/canary/judge``: the samples of both sides per metric, and the rules."""

    model_config = ConfigDict(extra="forbid")

    baseline: dict[str, list[float]] = Field(max_length=200)
    canary: dict[str, list[float]] = Field(max_length=200)
    config: JudgeConfig


def _canary_routes(ctx: ApiContext) -> APIRouter:
    viewer = Depends(_require(ctx, "viewer"))
    router = APIRouter(prefix=API, dependencies=[viewer], tags=["canary"])

    @router.post("/canary/judge")
    def canary_judge(body: CanaryBody) -> dict[str, Any]:
        """Judge a canary against its baseline (Mann-Whitney U per metric, direction of harm,
        effect size, weighted groups, fail closed on too few samples). Stateless: usable as an
        Argo Rollouts web metric provider with ``successCondition: result.verdict == "pass"``."""
        if any(len(v) > 100_000 for side in (body.baseline, body.canary) for v in side.values()):
            raise HTTPException(413, "at most 100000 samples per metric and side")
        return judge_canary(body.baseline, body.canary, body.config).model_dump(mode="json")

    return router


def _write_routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix=API, tags=["act"])
    operator = _require(ctx, "operator")
    kill_switch = _require(ctx, "operator", store_down=True)
    admin = _require(ctx, "admin")
    errors: dict[int | str, dict[str, Any]] = {404: {"description": "unknown"}, 409: {"description": "conflict"}}

    def answer(incident_id: str, verdict: Literal["approve", "deny"], body: CommentBody,
               who: Principal) -> dict[str, Any]:
        full = _resolve_incident(ctx, incident_id)
        try:
            answer_approval(ctx.store, full, verdict, actor=who.actor, comment=body.comment, now=ctx.clock.now(),
                            approval_ttl_s=ctx.config.engine.approval_ttl_s, answers=body.decision)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"incident_id": full, "verdict": verdict, "actor": who.actor}

    @router.post("/approvals/{incident_id}/approve", responses=errors)
    def approve(incident_id: str, who: Annotated[Principal, Depends(operator)],
                body: Annotated[CommentBody, Body()] = CommentBody()) -> dict[str, Any]:
        """Approve the action the incident waits on; the engine acts on its next tick. 409 when its
        request has expired (when recorded with it, by the asking engine's engine.approval_ttl_s):
        nothing will act on it; the attempt is audited ``approval.late``."""
        return answer(incident_id, "approve", body, who)

    @router.post("/approvals/{incident_id}/deny", responses=errors)
    def deny(incident_id: str, who: Annotated[Principal, Depends(operator)],
             body: Annotated[CommentBody, Body()] = CommentBody()) -> dict[str, Any]:
        """Deny it; the incident stays with a person."""
        return answer(incident_id, "deny", body, who)

    @router.post("/pause", responses=errors)
    def pause(body: PauseBody, who: Annotated[Principal, Depends(kill_switch)]) -> dict[str, Any]:
        """The kill switch: stop every automated action (or one service's). Durable and audited.

        When the store cannot be written (a database down, or SQLite locked by a writer that froze)
        and this API serves inside the engine (``autonomic run``, without leader election), the pause
        is written to the engine's pause file instead, which it reads before every actuator call; the
        answer names the ``file``. Otherwise 503: nothing was paused. A store that cannot even be
        read to check the token takes a token this API verified there within the last hour."""
        _check_service(ctx, body.service)
        now = ctx.clock.now()
        try:
            ctx.store.set_state(pause_key(body.service), {"reason": body.reason, "actor": who.actor, "ts": now},
                                actor=who.actor, event="pause.set",
                                data={"service": body.service, "reason": body.reason})
        except StoreError as exc:
            if ctx.engine is None or ctx.engine.elector is not None:
                raise  # no engine here reads a file this process writes: the store is the only way
            log.error("pause: the store could not be written (%s); writing the pause file instead", exc)
            try:
                path = write_pause_file(ctx.config.state_dir, body.service, body.reason, who.actor, now)
            except OSError as err:
                raise HTTPException(503, f"nothing is paused: neither the store nor the pause file "
                                         f"{pause_file(ctx.config.state_dir, body.service)} could be written "
                                         f"({err.strerror or err})") from None
            ctx.metrics.paused(body.service or "global", True)
            return {"paused": body.service or "global", "reason": body.reason, "actor": who.actor,
                    "file": str(path)}
        ctx.metrics.paused(body.service or "global", True)
        return {"paused": body.service or "global", "reason": body.reason, "actor": who.actor}

    @router.post("/resume", responses=errors)
    def resume(who: Annotated[Principal, Depends(operator)],
               body: Annotated[ResumeBody, Body()] = ResumeBody()) -> dict[str, Any]:
        """Lift a pause (the store's, and this host's pause file of that scope).

        The file goes first. When the store then does not answer, the answer says what was done: a
        pause held by the file alone is lifted (``audited`` false: the engine audits the file gone
        once the store answers); a pause in the store still holds (503 naming the file removed)."""
        _check_service(ctx, body.service)
        key = pause_key(body.service)
        path = pause_file(ctx.config.state_dir, body.service)
        removed = False
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed = True
        try:
            held = ctx.store.get_state(key)
            if held is not None:
                ctx.store.set_state(key, None, actor=who.actor, event="pause.lifted",
                                    data={"service": body.service, "reason": body.reason})
        except StoreError as exc:
            if not removed:
                raise
            raise HTTPException(503, f"the pause file {path} was removed, but the store's pause could not be read "
                                     f"or lifted ({exc}): a pause in the store, if any, still holds") from None
        audited = True
        if held is None:
            if not removed:
                raise HTTPException(409, f"{'automation' if body.service is None else body.service} is not paused")
            try:
                ctx.store.audit(who.actor, "pause.lifted", key, {"service": body.service, "reason": body.reason,
                                                                 "file": str(path)})
            except StoreError as exc:  # lifted all the same: the engine audits the file gone when it can
                log.error("resume: the pause file %s was removed but not audited (%s)", path, exc)
                audited = False
        ctx.metrics.paused(body.service or "global", False)
        return {"resumed": body.service or "global", "actor": who.actor,
                **({} if audited else {"audited": False, "file": str(path)})}

    def start_or_stop(name: str, verb: Literal["start", "stop"], body: ServiceBody, who: Principal) -> JSONResponse:
        try:
            key = request_service(ctx.store, ctx.config, name, verb, actor=who.actor, comment=body.comment,
                                  now=ctx.clock.now())
        except UnknownService as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        except NotSupervised as exc:
            raise HTTPException(409, str(exc)) from None
        return JSONResponse({"service": name, "verb": verb, "actor": who.actor, "request": key}, status_code=202)

    @router.post("/services/{name}/start", status_code=202, responses=errors)
    def start_service(name: str, who: Annotated[Principal, Depends(operator)],
                      body: Annotated[ServiceBody, Body()] = ServiceBody()) -> JSONResponse:
        """Start a supervised service (a process binding) again, as a person's act (allowed during a
        pause): queued (202) for the engine that leads, which starts it at its next collection and
        audits the outcome with the returned ``request`` as subject. It lifts a stop on purpose. 404:
        no such service; 409: autonomic does not run it (the detail names what does)."""
        return start_or_stop(name, "start", body, who)

    @router.post("/services/{name}/stop", status_code=202, responses=errors)
    def stop_service(name: str, who: Annotated[Principal, Depends(operator)],
                     body: Annotated[ServiceBody, Body()] = ServiceBody()) -> JSONResponse:
        """Stop a supervised service on purpose (maintenance): queued (202) as for a start; it stays
        stopped (no down remedy, not started at the engine's start) until a person starts it."""
        return start_or_stop(name, "stop", body, who)

    @router.put("/policy")
    def put_policy(body: PolicyConfig, who: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
        """Replace the policy in force (validated; audited ``policy.changed`` with the new policy).
        An override for a service, pattern or action type that does not exist is 422 naming it; so
        is a window that would read further back than retention keeps (a breaker held open longer
        than ``retention.incidents_days``), naming the retention field with config load's message."""
        from autonomic.config import policy_retention_too_short, unknown_policy_names
        from autonomic.registry import default_registry

        registry = ctx.engine.registry if ctx.engine is not None else default_registry()
        unknown = unknown_policy_names(body, _service_names(ctx), [p.id for p in ctx.config.patterns],
                                       registry.types("actuator"))
        # 422 as a body that does not validate (unreadable_request): the detail list and message
        if unknown:
            raise RequestValidationError([{"type": "value_error", "loc": ("body", *loc), "msg": message}
                                          for loc, message in unknown])
        short = policy_retention_too_short(ctx.config, body)
        if short:
            raise RequestValidationError([{"type": "value_error", "loc": ("retention", key), "msg": message}
                                          for key, message in short])
        new = body.model_dump(mode="json")
        ctx.store.set_state(POLICY_OVERRIDE, new, actor=who.actor, event="policy.changed", data={"policy": new})
        return {"source": "override", "policy": new}

    return router


def _webhook_routes(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix=API, tags=["alerts"])

    def check_auth(request: Request, raw: bytes, now: float) -> tuple[str | None, str]:
        """Raise 401 unless the configured checks pass; return the signature (remembered with the
        alerts it brings, see ``receive``; None when no HMAC is configured) and the audit actor.
        With neither the webhook token nor the HMAC secret configured, an API token of the
        ``alerts`` role (or operator and above) is the credential (Alertmanager's
        ``http_config.authorization``), unless ``webhook_open``."""
        if ctx.webhook_token is None and ctx.webhook_hmac_secret is None:
            if ctx.webhook_open:
                return None, "webhook"
            given = request.headers.get("authorization", "")
            raw_token = given[7:].strip() if given[:7].lower() == "bearer " else ""
            principal = authenticate(ctx.store, raw_token) if raw_token else None
            if principal is None:
                raise HTTPException(401, "missing or invalid API token: POST /api/v1/alerts wants "
                                         "Authorization: Bearer <token of the alerts role> (autonomic token "
                                         "create --role alerts --name alertmanager), or the secret "
                                         "api.webhook_token_env or api.webhook_hmac_env names",
                                    headers=_UNAUTHORIZED)
            if not principal.allows("alerts"):
                raise HTTPException(403, f"sending alerts needs the alerts or operator role; token "
                                         f"{principal.name!r} is {principal.role}")
            return None, principal.actor
        if ctx.webhook_token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {ctx.webhook_token}".encode()):
                raise HTTPException(401, "missing or wrong webhook bearer token", headers=_UNAUTHORIZED)
        if ctx.webhook_hmac_secret is None:
            return None, "webhook"
        sig = request.headers.get(SIGNATURE_HEADER, "")
        stamp = request.headers.get(TIMESTAMP_HEADER, "")
        try:
            ts = float(stamp)
        except ValueError:
            raise HTTPException(401, f"missing or invalid {TIMESTAMP_HEADER} header") from None
        if not abs(now - ts) <= WEBHOOK_MAX_SKEW_S:
            raise HTTPException(401, f"{TIMESTAMP_HEADER} is more than {WEBHOOK_MAX_SKEW_S:.0f} s from now")
        expected = sign(ctx.webhook_hmac_secret, stamp, raw)
        if not hmac.compare_digest(sig.encode(), expected.encode()):
            raise HTTPException(401, f"missing or wrong {SIGNATURE_HEADER} header")
        return expected, "webhook"

    def receive(raw: bytes, sig: str | None, actor: str) -> int:
        try:
            from autonomic.monitor.alertmanager import parse_webhook, resolved_fingerprints, to_findings
        except ImportError:
            raise HTTPException(503, "the Alertmanager receiver is not installed") from None
        try:
            payload = parse_webhook(raw)
        except ValueError as exc:
            raise HTTPException(422, f"invalid Alertmanager payload: {exc}") from None
        now = ctx.clock.now()
        findings = to_findings(payload, now, [s.name for s in ctx.config.services])
        resolved = resolved_fingerprints(payload)  # their incidents may go quiet (Engine._sweep)
        # One transaction: a signature is remembered only with its alerts (a sender may retry a
        # request the store refused), and in the store, so every replica refuses its replay.
        if sig is None and not findings and not resolved:
            return 0
        with ctx.store.unit():
            if sig is not None and not ctx.store.first_time(ACCEPTED_SIGNATURES, sig, now, 2 * WEBHOOK_MAX_SKEW_S):
                raise HTTPException(401, "replayed webhook: this signature was already accepted")
            if findings or resolved:  # stored before the 202: the engine (this replica's or the leader's) ingests it
                queue_findings(ctx.store, findings, now, actor=actor, resolved=resolved)
        return len(findings)

    @router.post(
        "/alerts", status_code=202,
        responses={401: {"description": "unauthenticated"}, 422: {"description": "invalid payload"}},
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": "An Alertmanager webhook payload (version 4)"}}}}},
    )
    async def alerts(request: Request) -> dict[str, int]:
        """Alertmanager webhook receiver: each firing alert becomes a finding for the loop."""
        raw = await request.body()
        now = ctx.clock.now()
        sig, actor = await run_in_threadpool(check_auth, request, raw, now)  # an API token is a store read
        return {"accepted": await run_in_threadpool(receive, raw, sig, actor)}

    return router


def _event_routes(ctx: ApiContext, stopping: threading.Event) -> APIRouter:
    viewer = _require(ctx, "viewer", query_token=True)
    router = APIRouter(prefix=API, tags=["read"])

    @router.get("/events", response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"}})
    async def events(
        request: Request,
        who: Annotated[Principal, Depends(viewer)],
        since_seq: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    ) -> StreamingResponse:
        """Server-sent events: each new audit event as ``event: audit`` with its JSON; a heartbeat
        comment every 15 s. Starts after ``since_seq`` (or Last-Event-ID), else from now; the
        first block carries only ``id: <seq it starts after>``, so a reconnect misses nothing."""
        start = since_seq
        if start is None:
            last_id = request.headers.get("last-event-id", "")
            start = int(last_id) if last_id.isdigit() and int(last_id) <= MAX_SEQ else None
        if start is None:
            start = await run_in_threadpool(latest_seq, ctx.store)

        async def stream(seq: int) -> AsyncIterator[str]:
            # the id (with no data: nothing is dispatched) is where the stream starts, so an
            # EventSource that reconnects before any event came sends it as Last-Event-ID and
            # gets what happened while it was away instead of starting from the new now
            yield f": connected\nid: {seq}\n\n"
            beat = time.monotonic()
            while not stopping.is_set() and not await request.is_disconnected():
                for ev in await run_in_threadpool(ctx.store.audit_events, seq, 500):
                    seq = ev.seq
                    yield f"id: {ev.seq}\nevent: audit\ndata: {json.dumps(ev.model_dump(mode='json'))}\n\n"
                if time.monotonic() - beat >= SSE_HEARTBEAT_S:
                    beat = time.monotonic()
                    yield ": heartbeat\n\n"
                await asyncio.sleep(SSE_POLL_S)

        del who
        return StreamingResponse(stream(start), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router


def latest_seq(store: Store) -> int:
    """The newest audit event's seq (0 when none): one read from the end of the index."""
    newest = store.audit_events(newest=True, limit=1)
    return newest[0].seq if newest else 0


def unreadable_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 for a request FastAPI could not validate (a bad JSON body, query or path value), in
    words as a bad config's problems are (:func:`autonomic.yamlio.readable_errors`): FastAPI's
    ``detail`` list, each item's ``type`` and ``loc`` as FastAPI gives them and its ``msg`` in
    words (no "Value error, ", no "Input should be a valid dictionary or instance of X", no
    pydantic links, the input not echoed back), and ``message``: every problem as ``field:
    what is wrong`` in one line, the field by its path in the body (``reason``,
    ``rate_limits.per_day``), or ``query.limit`` outside it."""
    route = request.scope.get("route")
    body_model = getattr(getattr(getattr(route, "body_field", None), "field_info", None), "annotation", None)
    if not (isinstance(body_model, type) and issubclass(body_model, BaseModel)):
        body_model = None
    detail, said = [], []
    for e in exc.errors():
        raw = tuple(e.get("loc") or ())
        in_body = raw[:1] == ("body",)
        [(loc, msg)] = readable_errors([{**e, "loc": raw[1:] if in_body else raw}], ("body",) if in_body else (),
                                       model=body_model if in_body else None)
        detail.append({"type": e.get("type"), "loc": list(loc), "msg": msg})
        said.append(f"{format_loc(loc[1:] if in_body and len(loc) > 1 else loc)}: {msg}")
    return JSONResponse({"detail": detail, "message": "; ".join(said)}, status_code=422)


def create_app(ctx: ApiContext) -> FastAPI:
    """The API app over ``ctx``: open health routes, the token-protected /api/v1, the dashboard."""
    stopping = threading.Event()
    app = FastAPI(title="autonomic", version="1", description=__doc__,
                  docs_url="/docs", openapi_url="/openapi.json", redoc_url=None)
    app.state.ctx = ctx
    # Starlette types a handler as taking any Exception; this one is registered for its own only
    app.add_exception_handler(RequestValidationError, unreadable_request)  # type: ignore[arg-type]
    app.state.stopping = stopping  # set by ApiServer.stop so event streams end
    app.include_router(_open_routes(ctx))
    app.include_router(_read_routes(ctx))
    app.include_router(_write_routes(ctx))
    app.include_router(_canary_routes(ctx))
    app.include_router(_webhook_routes(ctx))
    app.include_router(_event_routes(ctx, stopping))

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = dashboard.STATIC / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html", headers={"Cache-Control": "no-cache"})
        return RedirectResponse("/docs")

    dashboard.mount_dashboard(app)
    def still_valid(header: bytes) -> bool:
        scheme, _, raw = header.decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and authenticate(ctx.store, raw.strip()) is not None

    app.add_middleware(ReadCache, authorize=still_valid, ttl_s=ctx.read_cache_s)
    app.add_middleware(BodyLimit, limit=ctx.max_body_bytes)
    app.add_middleware(Guard, metrics=ctx.metrics)
    app.add_middleware(SecurityHeaders)
    return app
