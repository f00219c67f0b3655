"""A stand-in Docker Engine: the real Engine API wire protocol over a UNIX socket, for tests.

A real Docker engine cannot run on the test machine, so this small HTTP/1.1 server answers
the calls the docker SDK makes to inspect, restart, stop and start a container, the way
dockerd does (paths, status codes, JSON shapes, ``{"message": ...}`` errors):

- ``GET /_ping`` and ``GET /version`` (API version negotiation);
- ``GET /v<api>/containers/<name or id>/json`` (inspect; a realistic subset of fields);
- ``POST /v<api>/containers/<ref>/restart?t=N`` and ``/stop?t=N`` (204; stop of a stopped
  container is 304) and ``/start`` (204; start of a running container is 304);
- ``GET /v<api>/events?since=&until=&filters=`` (the engine's event log, newline-delimited JSON:
  ``start``; ``kill``, ``die``, ``stop`` for a stop; those, ``start`` and ``restart`` for a restart;
  ``die`` alone for :meth:`DockerStandin.crash`), filtered by ``container``, ``type`` and
  ``event``, the latest 256 kept as dockerd keeps them; an ``until`` still to come is waited for,
  as dockerd streams live events until then;
- ``404 {"message": "No such container: <ref>"}`` for unknown containers.

Every request is recorded as :class:`Request` (method, path, query). Faults are injected per
container (``dies_on_start``) or for the next request (:meth:`DockerStandin.fail_next`,
``delay_s``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_VERSION = "1.43"
NEVER = "0001-01-01T00:00:00Z"  # what dockerd reports for a time that never happened
EVENTS_KEPT = 256  # dockerd's in-memory event log (daemon/events: eventsLimit)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the /v1.NN prefix
    query: dict[str, str]
    api_version: str | None  # the /v1.NN prefix, None for unversioned calls
    user_agent: str = ""


@dataclass
class Container:
    name: str
    image: str = "nginx:1.25"
    id: str = field(default_factory=lambda: secrets.token_hex(32))
    running: bool = True
    started_at: str = NEVER
    finished_at: str = NEVER
    exit_code: int = 0
    restart_count: int = 0
    dies_on_start: int | None = None  # exit code the process dies with right after a start
    oom_killed: bool = False  # State.OOMKilled: the kernel's OOM killer ended it
    status: str | None = None  # State.Status when set ("dead"); else from running / started_at
    fails_to_start: str | None = None  # a start fails with this (State.Error; StartedAt kept), as a port taken
    error: str = ""  # State.Error: set by a failed start, cleared by a start that worked

    def inspect(self) -> dict[str, Any]:
        status = self.status or ("running" if self.running else ("exited" if self.started_at != NEVER else "created"))
        return {
            "Id": self.id,
            "Created": "2024-05-01T10:00:00.000000000Z",
            "Name": "/" + self.name,
            "RestartCount": self.restart_count,
            "State": {
                "Status": status,
                "Running": self.running,
                "Paused": False,
                "Restarting": False,
                "OOMKilled": self.oom_killed,
                "Dead": False,
                "Pid": 4242 if self.running else 0,
                "ExitCode": self.exit_code,
                "Error": self.error,
                "StartedAt": self.started_at,
                "FinishedAt": self.finished_at,
            },
            "Config": {"Image": self.image, "Hostname": self.id[:12]},
        }


class DockerStandin:
    """The engine's state (containers), the request log, and the server on ``socket_path``."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.containers: dict[str, Container] = {}
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.delay_s = 0.0  # every answer waits this long (timeouts)
        self.events_delay_s = 0.0  # GET /events answers this much later (an engine slow to end its stream)
        self.events_refused: tuple[int, str] | None = None  # GET /events answered with this (a socket proxy)
        self.stop_event_lag_s = 0.0  # a stop's event is logged this long after its exit (the network released)
        self._fail: tuple[int, str] | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._last_ns = 0
        self.events: list[dict[str, Any]] = []  # the latest EVENTS_KEPT, as dockerd keeps them

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def add(self, name: str, *, running: bool = True, **kw: Any) -> Container:
        c = Container(name=name, running=running, **kw)
        if running:
            c.started_at = self.now()
        self.containers[c.id] = c
        return c

    def fail_next(self, status: int, message: str) -> None:
        """Answer the next container call with ``status`` and ``{"message": message}``."""
        self._fail = (status, message)

    def calls(self, method: str | None = None) -> list[Request]:
        """Recorded container calls (not /_ping or /version), optionally of one method."""
        with self.lock:
            reqs = list(self.requests)
        return [r for r in reqs if r.path.startswith("/containers/") and method in (None, r.method)]

    def now(self) -> str:
        """RFC 3339 with nanoseconds, as dockerd writes times; strictly increasing."""
        ns = max(time.time_ns(), self._last_ns + 1000)
        self._last_ns = ns
        secs, frac = divmod(ns, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"

    @staticmethod
    def ago(seconds: float) -> str:
        """The time ``seconds`` ago, as dockerd writes times."""
        secs, frac = divmod(time.time_ns() - int(seconds * 1e9), 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"

    def _event(self, c: Container, action: str, lag_s: float = 0.0, **attributes: str) -> None:
        """Log an event of ``c`` as dockerd does (the shape ``GET /events`` streams); ``lag_s``
        later than now (an event only logged once the work after an exit is done)."""
        ns = max(time.time_ns(), self._last_ns + 1000)
        self._last_ns = ns
        ns += int(lag_s * 1e9)
        self.events.append({
            "status": action, "id": c.id, "from": c.image, "Type": "container", "Action": action,
            "Actor": {"ID": c.id, "Attributes": {"image": c.image, "name": c.name, **attributes}},
            "scope": "local", "time": ns // 1_000_000_000, "timeNano": ns,
        })
        del self.events[:-EVENTS_KEPT]

    def crash(self, c: Container, exit_code: int = 1) -> None:
        """``c``'s process exits on its own: exited, ``die`` logged, no ``stop``."""
        with self.lock:
            c.running, c.exit_code, c.finished_at = False, exit_code, self.now()
            self._event(c, "die", exitCode=str(exit_code))

    def _events(self, query: dict[str, str]) -> _EventStream:
        """``GET /events``: the logged events from ``since`` to ``until`` (seconds[.nanoseconds])
        that pass ``filters``, as a stream: those logged by now at once, then, as dockerd holds an
        ``until`` still to come open, the rest once it has come (and ``events_delay_s`` later)."""
        def ns(text: str | None, default: int) -> int:
            if not text:
                return default
            whole, _, frac = text.partition(".")
            return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])

        until = ns(query.get("until"), time.time_ns())
        since = ns(query.get("since"), 0)
        if since > until:
            raise _Refused(400, f"since time ({query.get('since')}) cannot be after until time ({query.get('until')})")
        filters = json.loads(query.get("filters") or "{}")

        def wanted(key: str, value: str) -> bool:
            allowed = filters.get(key)
            return allowed is None or value in allowed  # a list, or a {value: true} map

        def logged(after: int) -> list[dict[str, Any]]:
            """The events wanted, logged by now (an event logged later is not there yet), after ``after``."""
            with self.lock:
                upto = min(until, time.time_ns())
                return [e for e in self.events if max(since, after + 1) <= e["timeNano"] <= upto
                        and wanted("type", e["Type"]) and wanted("event", e["Action"])
                        and wanted("container", e["Actor"]["ID"])]

        return _EventStream(logged, min(10.0, max(0.0, (until - time.time_ns()) / 1e9)) + self.events_delay_s)

    def find(self, ref: str) -> Container | None:
        for c in self.containers.values():
            if ref in (c.name, "/" + c.name, c.id) or (len(ref) >= 4 and c.id.startswith(ref)):
                return c
        return None

    # --- container operations (as dockerd does them) --------------------------------------

    def _start(self, c: Container) -> None:
        if c.fails_to_start is not None:  # as dockerd: the error kept in State.Error, StartedAt the last run's
            c.error = c.fails_to_start
            raise _Refused(500, f"failed to start container {c.name}: {c.fails_to_start}")
        c.started_at = self.now()
        c.running, c.error = True, ""
        self._event(c, "start")
        if c.dies_on_start is not None:
            c.running, c.exit_code, c.finished_at = False, c.dies_on_start, self.now()
            self._event(c, "die", exitCode=str(c.dies_on_start))

    def _stop(self, c: Container) -> None:
        self._event(c, "kill", signal="15")
        c.running, c.exit_code, c.finished_at = False, 0, self.now()
        self._event(c, "die", exitCode="0")
        self._event(c, "stop", lag_s=self.stop_event_lag_s)

    def handle(self, method: str, raw_path: str, user_agent: str = "") -> tuple[int, Any]:
        url = urlsplit(raw_path)
        m = re.match(r"^/v(\d+\.\d+)(/.*)$", url.path)
        version, path = (m.group(1), m.group(2)) if m else (None, url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.requests.append(Request(method, path, query, version, user_agent))
            if self.delay_s:
                time.sleep(self.delay_s)
            if path == "/_ping":
                return 200, "OK"
            if path == "/version":
                return 200, {"Version": "24.0.7", "ApiVersion": API_VERSION, "MinAPIVersion": "1.12",
                             "Os": "linux", "Arch": "amd64", "KernelVersion": "6.1.0"}
            if path == "/events" and method == "GET":
                if self.events_refused is not None:
                    return self.events_refused[0], {"message": self.events_refused[1]}
                try:
                    return 200, self._events(query)
                except _Refused as exc:
                    return exc.status, {"message": exc.message}
            cm = re.match(r"^/containers/([^/]+)/(json|restart|stop|start)$", path)
            if cm is None:
                return 404, {"message": "page not found"}
            if self._fail is not None:
                status, message = self._fail
                self._fail = None
                return status, {"message": message}
            ref, op = cm.groups()
            c = self.find(ref)
            if c is None:
                return 404, {"message": f"No such container: {ref}"}
            if (op == "json") != (method == "GET"):
                return 405, {"message": "method not allowed"}
            if op == "json":
                return 200, c.inspect()
            try:
                if op == "stop":
                    if not c.running:
                        return 304, None
                    self._stop(c)
                elif op == "start":
                    if c.running:
                        return 304, None
                    self._start(c)
                else:
                    if c.running:
                        self._stop(c)
                    self._start(c)
                    self._event(c, "restart")
            except _Refused as exc:
                return exc.status, {"message": exc.message}
            return 204, None

    # --- server ----------------------------------------------------------------------------

    def start(self) -> None:
        self._server = _Server(str(self.socket_path), _Handler)
        self._server.standin = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and remove the socket: the engine is down."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.socket_path.exists():
            os.unlink(self.socket_path)


class _Refused(Exception):
    """An error answer, as dockerd gives one: ``status`` and ``{"message": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _EventStream:
    """``GET /events`` as dockerd answers it: newline-delimited JSON in chunks, the events logged so
    far sent with the headers, the stream then held open ``hold_s`` (an ``until`` still to come),
    the events logged meanwhile sent, and closed."""

    def __init__(self, logged: Any, hold_s: float) -> None:
        self.logged, self.hold_s = logged, hold_s

    def send(self, out: Any) -> None:
        """Write the stream to ``out`` in HTTP/1.1 chunks, as Go's server does for a flushed body."""
        def chunk(events: list[dict[str, Any]]) -> None:
            data = b"".join(json.dumps(e).encode() + b"\n" for e in events)
            if data:
                out.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                out.flush()

        first = self.logged(-1)
        chunk(first)
        time.sleep(self.hold_s)
        chunk(self.logged(first[-1]["timeNano"] if first else -1))
        out.write(b"0\r\n\r\n")
        out.flush()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    standin: DockerStandin

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (its timeout) leaves a broken pipe; nothing to report


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as dockerd
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body = self.server.standin.handle(self.command, self.path, self.headers.get("User-Agent", ""))
        self.send_response(status)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Server", "Docker/24.0.7 (linux)")
        if status in (204, 304):
            self.end_headers()
            return
        if isinstance(body, _EventStream):  # dockerd's event stream: one JSON object a line, then closed
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            with contextlib.suppress(OSError):  # a client that gave up (its timeout)
                body.send(self.wfile)
            return
        if isinstance(body, str):
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode(), "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; and a UNIX-socket peer has no address to print


def docker_stop(engine: DockerStandin, name: str) -> None:
    """``docker stop NAME`` against ``engine``: the Engine API's stop, through the docker SDK, as
    the CLI sends it (a person's stop)."""
    import docker

    client = docker.DockerClient(base_url=engine.base_url, version="1.43")
    try:
        client.api.stop(name, timeout=1)
    finally:
        client.close()


@contextmanager
def running_standin(socket_path: Path) -> Iterator[DockerStandin]:
    engine = DockerStandin(socket_path)
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()
