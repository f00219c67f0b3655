"""The ``docker`` actuator: restart, stop or start a container through the Docker Engine API.

It talks to the engine with the official docker SDK (the ``autonomic[docker]`` extra),
imported only when a call needs it, so autonomic imports and loads patterns without it.
A client is opened per call and closed after it: no connection outlives an operation.

Errors, by what the executor should do:

- container not found (404)                  -> TerminalActuatorError naming the container
- engine unreachable, connection lost, timeout -> RetryableActuatorError
- any other engine error (409, 500, ...)      -> TerminalActuatorError with status and message
- the SDK is not installed                    -> TerminalActuatorError ("install autonomic[docker]")
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autonomic.errors import ActuatorError, RetryableActuatorError, TerminalActuatorError
from autonomic.protocols import UNIT_READ_TIMEOUT_S, ActuatorContext, Target
from autonomic.redact import scrub, shown_url

log = logging.getLogger("autonomic.docker")

_SCHEMES = ("unix", "tcp", "http", "https", "ssh")
_MAX_MESSAGE = 300
_STOP_SETTLE_NS = 10_000_000_000  # a stop's event not found this long after the exit is not coming
_NO_ACCESS = (401, 403, 404, 405)  # GET /events answers that mean it will never be allowed or there


class DockerParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["restart", "stop", "start"] = "restart"
    timeout_s: int = Field(default=10, ge=0, le=600)  # stop grace before the engine kills (restart, stop)


class DockerBinding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    container: str = Field(min_length=1)  # name or id
    base_url: str = "unix:///var/run/docker.sock"
    timeout_s: float = Field(default=30.0, gt=0, le=600)  # per engine request, plus the stop grace
    # "auto" asks the engine (GET /version); pin e.g. "1.44" to skip that request. Engines
    # from Docker 29 refuse API versions below 1.44, so pin only what the engine accepts.
    api_version: str = Field(default="auto", pattern=r"^(auto|\d+\.\d+)$")

    @field_validator("container")
    @classmethod
    def _container(cls, v: str) -> str:
        """A container's name or id as Docker allows it: a segment of every Engine API path (the
        SDK leaves '/' unquoted there, and the HTTP client resolves ``..``: ``../x`` would call ``/x``)."""
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", v):
            raise ValueError(f"{v!r} is not a container name or id: letters, digits and '_.-', starting with a "
                             "letter or digit")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if urlsplit(v).scheme not in _SCHEMES or v.rstrip("/").endswith("://"):
            raise ValueError(f"base_url must be a {', '.join(s + '://' for s in _SCHEMES)} URL, got {shown_url(v)!r}")
        return v


class DockerActuator:
    """Acts on one container per service, named by the binding's ``container``.

    - ``restart``: the engine stops the container (SIGTERM, ``timeout_s``, SIGKILL) and
      starts it again; ``applied`` once it runs with a ``StartedAt`` other than the snapshot's.
    - ``stop``: ``applied`` once it is not running; ``start``: once it is running.

    ``apply`` does nothing when ``applied`` already holds, so a repeated apply with one key
    (after a crash) never restarts twice. After a restart or start the container must be
    running, else RetryableActuatorError with its status and exit code. ``undo`` puts back the
    running state the snapshot saw (start after a stop, stop after a start); a restart cannot
    be undone. Once snapshotted, calls address the container by its id, so a container
    recreated under the same name is reported as gone rather than acted on.
    """

    type: ClassVar[str] = "docker"
    Params = DockerParams
    Binding = DockerBinding

    def __init__(self, ctx: ActuatorContext) -> None:
        self.ctx = ctx
        # (engine, container as bound) -> ((container id, FinishedAt), whether that exit was a
        # requested stop): final answers, one per binding
        self._stops: dict[tuple[str, str], tuple[tuple[str, str], bool]] = {}
        # (engine, container as bound) -> ((container id, FinishedAt), the engine's time at the first look)
        self._first_looked: dict[tuple[str, str], tuple[tuple[str, str], int]] = {}
        self._events_refused: set[str] = set()  # engines that refused GET /events for want of access

    # --- protocol ------------------------------------------------------------------------

    def describe(self, target: Target, params: BaseModel) -> str:
        p, b = _params(params), _binding(target)
        grace = f" (stop grace {p.timeout_s} s)" if p.op != "start" else ""
        return f"{p.op} docker container {b.container!r} of {target.service} at {shown_url(b.base_url)}{grace}"

    def call_limit_s(self, target: Target, params: BaseModel) -> float:
        """The longest one call can take: a few requests to the Docker engine (the binding's
        ``timeout_s`` each) and the container's stop grace (``timeout_s`` of the params)."""
        return 3 * _binding(target).timeout_s + _params(params).timeout_s

    def unit_exit_limit_s(self, target: Target) -> float:
        """The longest :meth:`unit_exit` can take: one inspect, given at most ``UNIT_READ_TIMEOUT_S``
        (or the binding's ``timeout_s`` when shorter) to connect and as long again to answer."""
        return 2 * min(_binding(target).timeout_s, UNIT_READ_TIMEOUT_S)

    def unit_state_limit_s(self, target: Target) -> float:
        """The longest :meth:`unit_state` can take: three requests (the inspect, and for an exited
        container a ping and the engine's events), each as :meth:`unit_exit_limit_s`."""
        return 3 * self.unit_exit_limit_s(target)

    def unit_lane(self, target: Target) -> str:
        """The manager :meth:`unit_state` asks, named for the engine's collection lanes and logs:
        the binding's Docker engine."""
        return f"the Docker engine at {shown_url(_binding(target).base_url)}"

    def unit_state(self, target: Target) -> dict[str, Any]:
        """The container's inspected ``State`` (Status, Running, Paused, Restarting, ExitCode, ...),
        read-only, for the unit-state source (``monitor.unitstate``, which says what counts as up),
        and for an exited container ``stopped_by_request``: whether the engine logged a ``stop``
        event for it since it last started (:meth:`_stop_requested`). One inspect, and for an
        exited container not yet judged a ping and a read of the engine's events, each given at
        most ``UNIT_READ_TIMEOUT_S``; raises ActuatorError when the engine cannot be read or the
        container does not exist."""
        b = _for_a_read(_binding(target))
        with _engine(b, "inspect") as client:
            info = _inspect(client, b.container)
            state = dict(info.get("State") or {})
            if state.get("Status") == "exited" and not state.get("Restarting"):
                state["stopped_by_request"] = self._stop_requested(client, b, str(info.get("Id") or b.container), state)
        return state

    def _stop_requested(self, client: Any, b: DockerBinding, cid: str, state: Mapping[str, Any]) -> bool:
        """Whether the exited container ``cid`` was stopped through the engine (``docker stop``,
        ``docker compose stop``, the Engine API's stop, autonomic's own ``op: stop``) rather than
        having exited on its own. Docker keeps no mark of it in the container's state, but logs a
        ``stop`` event once a requested stop is done (a crash or ``docker kill`` logs none; a
        restart's stop is followed by a start, which moves ``StartedAt`` past it). So: a ``stop``
        event of ``cid`` newer than its ``StartedAt``, from ``GET /events`` over the span from then
        to the engine's present (its ``Date``, asked by ``GET /_ping``, whole seconds, and a moment
        more: at most a second, and half the read's timeout, which the engine may hold the stream
        open for; this host's clock plays no part). A stream that runs out of time after its events
        came (a ``Date`` set by a proxy's clock ahead of the engine's) ends the look: what it held
        counts, and the answer is not final.

        A container whose ``State.Error`` is set is not: a start that failed after the stop (a
        restart whose start part failed, a port taken) is a fault. A found stop is final; a stop
        not found is asked about again until the engine's present is ``_STOP_SETTLE_NS`` past the
        first look at that exit (the event comes once the engine has finished the stop: releasing
        the network and mounts, or a restart back-off cancelled, may take a while), then final too.
        The final answer is kept per binding (engine and container) with the exit it is of, so a
        stop judged long ago stays judged after dockerd's event memory (its latest 256) has let
        it go; what is kept is one entry per container. An engine that refuses ``GET /events`` for
        want of access (401, 403, 404, 405: a socket proxy, an authorization plugin) is said once
        and not asked again: its containers read exited, down, as they always did; any other
        error answer fails the read (unknown, asked again at the next). A stop older than dockerd's
        event memory, or from before the engine restarted, that autonomic had not judged is not
        found either."""
        if state.get("Error"):
            return False
        key = (b.base_url, b.container)
        exit_ = (cid, str(state.get("FinishedAt")))
        known = self._stops.get(key)
        if known is not None and known[0] == exit_:
            return known[1]
        started_ns = _rfc3339_ns(state.get("StartedAt"))
        if started_ns is None or b.base_url in self._events_refused:
            return False  # never started: no stop to look for; or the engine will not tell
        limit = b.timeout_s  # a read's binding: at most UNIT_READ_TIMEOUT_S
        present = _engine_present_ns(client, limit)
        until = present + min(1_000_000_000, int(limit * 1e9 / 2))  # its Date is whole seconds
        filters = json.dumps({"container": [cid], "type": ["container"], "event": ["stop"]})
        since = min(started_ns - 1_000_000_000, until)
        params = {"since": _unix(since), "until": _unix(until), "filters": filters}
        # the SDK's events() reads with no timeout at all: asked here with the read's own
        url = f"{client.api.base_url}/v{client.api.api_version}/events"
        with client.api.get(url, params=params, stream=True, timeout=(limit, limit)) as response:
            if response.status_code in _NO_ACCESS:
                self._events_refused.add(b.base_url)
                log.warning("docker: the engine at %s refused GET /events (HTTP %s: %s): a container stopped "
                            "through Docker reads as exited, down, there; allow it to read events, then restart "
                            "autonomic", shown_url(b.base_url), response.status_code, _short(response.text))
                return False
            if response.status_code != 200:
                raise TerminalActuatorError(
                    f"docker: the events of container {b.container!r} could not be read: HTTP "
                    f"{response.status_code}: {_short(response.text)}")
            found, whole = _stop_in(response, cid, started_ns)
        first = self._first_looked.get(key)
        if first is None or first[0] != exit_:
            first = (exit_, present)
            self._first_looked[key] = first
        if found or (whole and present - first[1] >= _STOP_SETTLE_NS):
            self._stops[key] = (exit_, found)
            self._first_looked.pop(key, None)
        return found

    def unit_exit(self, target: Target) -> str | None:
        """How the container ended when it has (``State.Status`` exited or dead), from its
        ``ExitCode`` and ``OOMKilled``: "container web-1 exited with code 137 (OOMKilled)". None
        while it runs, is created, restarting or paused. One inspect, given at most
        ``UNIT_READ_TIMEOUT_S``; raises ActuatorError when the engine cannot be read."""
        b = _for_a_read(_binding(target))
        with _engine(b, "inspect") as client:
            state = _inspect(client, b.container).get("State") or {}
        return _container_exit(b.container, state)

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        b = _binding(target)
        with _engine(b, "inspect") as client:
            info = _inspect(client, b.container)
        state = info.get("State") or {}
        return {
            "container": b.container,
            "id": info.get("Id"),
            "name": str(info.get("Name") or "").lstrip("/"),
            "running": bool(state.get("Running")),
            "status": state.get("Status"),
            "started_at": state.get("StartedAt"),
            "restart_count": info.get("RestartCount"),
        }

    def applied(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> bool | None:
        p, b = _params(params), _binding(target)
        with _engine(b, "inspect") as client:
            state = _inspect(client, _ref(b, snapshot)).get("State") or {}
        return _took_effect(p, state, snapshot)

    def apply(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p, b = _params(params), _binding(target)
        ref = _ref(b, snapshot)
        detail: dict[str, Any] = {"op": p.op, "container": b.container, "id": snapshot.get("id"),
                                  "old_started_at": snapshot.get("started_at")}
        with _engine(b, p.op) as client:
            state = _inspect(client, ref).get("State") or {}
            if _took_effect(p, state, snapshot):
                return {**detail, "noop": True, "reason": "already applied", **_state(state)}
            if p.op == "restart":
                client.api.restart(ref, timeout=p.timeout_s)
            elif p.op == "stop":
                client.api.stop(ref, timeout=p.timeout_s)
            else:
                client.api.start(ref)
            state = _inspect(client, ref).get("State") or {}
        detail.update(_state(state))
        if p.op != "stop" and not state.get("Running"):
            raise RetryableActuatorError(
                f"docker container {b.container!r} is not running after {p.op} "
                f"(status {state.get('Status')}, exit code {state.get('ExitCode')})"
            )
        return detail

    def undo(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p, b = _params(params), _binding(target)
        if p.op == "restart":
            return {"undo": "not applicable", "container": b.container}
        want_running = bool(snapshot.get("running", p.op == "stop"))
        ref = _ref(b, snapshot)
        with _engine(b, "undo") as client:
            running = bool((_inspect(client, ref).get("State") or {}).get("Running"))
            if running == want_running:
                return {"undo": "nothing to do", "container": b.container, "running": running}
            if want_running:
                client.api.start(ref)
            else:
                client.api.stop(ref, timeout=p.timeout_s)
            state = _inspect(client, ref).get("State") or {}
        return {"undo": "start" if want_running else "stop", "container": b.container, **_state(state)}


# --- helpers ---------------------------------------------------------------------------------


def _params(params: BaseModel) -> DockerParams:
    return params if isinstance(params, DockerParams) else DockerParams.model_validate(params)


def _binding(target: Target) -> DockerBinding:
    b = target.binding
    if isinstance(b, DockerBinding):
        return b
    if b is None:
        raise TerminalActuatorError(f"service {target.service!r} has no docker binding")
    return DockerBinding.model_validate(b.model_dump())


def _for_a_read(b: DockerBinding) -> DockerBinding:
    """``b`` for a read-only unit read: each request given at most ``UNIT_READ_TIMEOUT_S``."""
    return b.model_copy(update={"timeout_s": min(b.timeout_s, UNIT_READ_TIMEOUT_S)})


def _ref(b: DockerBinding, snapshot: Mapping[str, Any]) -> str:
    return str(snapshot.get("id") or b.container)


def _took_effect(p: DockerParams, state: Mapping[str, Any], snapshot: Mapping[str, Any]) -> bool | None:
    running = bool(state.get("Running"))
    if p.op == "stop":
        return not running
    if p.op == "start":
        return running
    if not snapshot.get("started_at"):
        return None  # no snapshot to compare with: cannot tell whether a restart happened
    return running and state.get("StartedAt") != snapshot["started_at"]


def _container_exit(container: str, state: Mapping[str, Any]) -> str | None:
    """How a container that is no longer running ended (see ``DockerActuator.unit_exit``)."""
    status = state.get("Status")
    if status not in ("exited", "dead"):
        return None
    notes = [n for n in ("OOMKilled" if state.get("OOMKilled") else "", _short(state.get("Error") or "")) if n]
    note = f" ({'; '.join(notes)})" if notes else ""
    verb = "exited" if status == "exited" else "is dead, having exited"
    return f"container {container} {verb} with code {state.get('ExitCode')}{note}"


def _rfc3339_ns(text: Any) -> int | None:
    """Nanoseconds since the epoch of a time as dockerd writes it (``2024-05-01T10:00:00.123456789Z``,
    or with an offset); None for Docker's zero time (``0001-01-01T00:00:00Z``) or anything else."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", str(text or ""))
    if m is None:
        return None
    whole, frac, zone = m.groups()
    try:
        moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None
    if moment.year < 1970:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + int(((frac or "") + "000000000")[:9])


def _engine_present_ns(client: Any, limit: float) -> int:
    """The Docker engine's own time, from the ``Date`` of its ``GET /_ping`` answer (whole
    seconds), in nanoseconds; this host's clock when it sends none."""
    response = client.api.get(f"{client.api.base_url}/_ping", timeout=(limit, limit))
    try:
        return int(parsedate_to_datetime(response.headers["Date"]).timestamp()) * 1_000_000_000
    except (KeyError, TypeError, ValueError):
        return time.time_ns()


def _unix(ns: int) -> str:
    """A time for the Engine API's ``since`` and ``until``: seconds.nanoseconds."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _stop_in(response: Any, cid: str, started_ns: int) -> tuple[bool, bool]:
    """(whether the ``GET /events`` stream ``response`` holds a stop of ``cid`` after
    ``started_ns``, whether it was read to its end): read until a stop is found, the stream ends,
    or a read runs out of time (what came before counts)."""
    import requests

    try:
        for line in response.iter_lines():
            if line.strip() and _newer_stop(line, cid, started_ns):
                return True, True
    except (requests.exceptions.RequestException, OSError):
        return False, False
    return False, True


def _newer_stop(line: bytes, cid: str, started_ns: int) -> bool:
    """Whether one line of ``GET /events`` is a ``stop`` of container ``cid`` after ``started_ns``."""
    try:
        event = json.loads(line)
    except ValueError:
        return False
    if not isinstance(event, dict):
        return False
    actor: Any = event.get("Actor")
    if not isinstance(actor, dict):
        actor = {}
    action = event.get("Action") or event.get("status")
    who = actor.get("ID") or event.get("id")
    when = event.get("timeNano")
    return action == "stop" and who == cid and isinstance(when, int) and when > started_ns


def _state(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"running": bool(state.get("Running")), "status": state.get("Status"),
            "started_at": state.get("StartedAt"), "exit_code": state.get("ExitCode")}


def _short(text: Any) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= _MAX_MESSAGE else s[: _MAX_MESSAGE - 3] + "..."


def _sdk() -> Any:
    try:
        import docker
    except ImportError:
        raise TerminalActuatorError(
            "the docker actuator needs the docker SDK: install autonomic[docker]"
        ) from None
    return docker


def _inspect(client: Any, ref: str) -> dict[str, Any]:
    return dict(client.api.inspect_container(ref))


@contextmanager
def _engine(b: DockerBinding, doing: str) -> Iterator[Any]:
    """A DockerClient for the binding's engine, closed afterwards; SDK and transport errors
    raised inside are translated to actuator errors."""
    docker = _sdk()
    client = None
    try:
        client = docker.DockerClient(base_url=b.base_url, version=b.api_version, timeout=b.timeout_s)
        yield client
    except ActuatorError:
        raise
    except Exception as exc:  # the SDK raises DockerException, requests and OS errors
        raise _translate(exc, b, doing, docker) from exc
    finally:
        if client is not None:
            client.close()


def _translate(exc: Exception, b: DockerBinding, doing: str, docker: Any) -> ActuatorError:
    import requests

    if isinstance(exc, docker.errors.NotFound):
        return TerminalActuatorError(f"docker: no such container {b.container!r} at {shown_url(b.base_url)}")
    if isinstance(exc, docker.errors.APIError):
        return TerminalActuatorError(
            f"docker: {doing} of container {b.container!r} failed: "
            f"HTTP {exc.status_code}: {_short(exc.explanation or exc)}"
        )
    transient = (requests.exceptions.ConnectionError, requests.exceptions.Timeout, OSError)
    cause: BaseException | None = exc
    while cause is not None:  # "Error while fetching server API version" wraps the real cause
        if isinstance(cause, transient):
            return RetryableActuatorError(
                f"docker: engine at {shown_url(b.base_url)} unreachable during {doing} of {b.container!r}: "
                f"{scrub(_short(cause), b.base_url)}"
            )
        cause = cause.__cause__ or cause.__context__
    return TerminalActuatorError(
        f"docker: {doing} of container {b.container!r} failed: {scrub(_short(exc), b.base_url)}")
