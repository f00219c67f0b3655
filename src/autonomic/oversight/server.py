"""Serve the API from a background thread of the process that runs the loop.

This module also holds :class:`ApiSpec` (``api:`` in autonomic.yaml) because config.py can
import it from here without a cycle: nothing here imports the engine or the config, and
uvicorn is imported only when a server is built.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger("autonomic.api")


class ApiSpec(BaseModel):
    """``api:`` in autonomic.yaml. Secrets are never in the file: the ``*_env`` fields name
    environment variables that hold them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)  # 0 = pick a free port
    webhook_token_env: str | None = None
    webhook_hmac_env: str | None = None
    # accept alerts that carry no credential at all: only where nothing untrusted can reach the
    # API (a single-user host's loopback); off, the receiver wants an API token (operator role)
    # unless webhook_token_env or webhook_hmac_env names its own secret
    webhook_open: bool = False
    max_body_bytes: int = Field(default=1_048_576, ge=1024)

    @model_validator(mode="after")
    def _webhook_open_only_on_loopback(self) -> ApiSpec:
        # the receiver turns what it is sent into findings the engine may act on: taking them
        # from anyone is allowed only where "anyone" is this machine's own processes
        if (self.enabled and self.webhook_open and not is_loopback(self.host)
                and not (self.webhook_token_env or self.webhook_hmac_env)):
            raise ValueError(f"webhook_open: host {self.host!r} is not a loopback address: anyone who can "
                             "reach it could send POST /api/v1/alerts (alerts the engine acts on); leave "
                             "webhook_open off (the receiver then wants an API token) or set "
                             "webhook_token_env or webhook_hmac_env")
        return self


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: ``localhost`` or a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name or "" (every interface): not loopback


class _StartupErrors(logging.Filter):
    """Keeps, rather than lets through, the errors uvicorn logs while the server starts (it logs
    why, then exits with SystemExit(3)), so the reason is said once, in the start's own error."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR:
            return True
        self.errors.append(record)
        return False

    def reason(self) -> str | None:
        """Why the server did not start, in a few words: ``address already in use`` (uvicorn's
        ``[Errno 98] error while attempting to bind on address ...`` without its repetition of the
        address); None when uvicorn said nothing."""
        for record in self.errors:
            exc = record.msg
            if isinstance(exc, OSError) and exc.errno:
                return os.strerror(exc.errno).lower() + _ERRNO_HINTS.get(exc.errno, "")
        return "; ".join(record.getMessage() for record in self.errors) or None


# what a person can do about a port the API cannot listen on
_ERRNO_HINTS = {
    errno.EADDRINUSE: " (another process listens there: stop it, or set api.port, or api.enabled: false)",
    errno.EACCES: " (a port below 1024 needs privileges: set api.port to 1024 or above)",
    errno.EADDRNOTAVAIL: " (api.host is no address of this machine)",
}


class ApiServer:
    """uvicorn in a daemon thread. ``start`` returns once the socket listens (``port`` 0 picks a
    free one; read it back from :attr:`port`); ``stop`` ends open event streams, then the server.
    The default host is the loopback interface; listening beyond it, ``start`` warns that the API
    speaks plain HTTP (its tokens cross the network as written without a TLS proxy in front)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8470, *, log_level: str = "warning") -> None:
        import uvicorn

        self.app = app
        self.host = host
        self.port = port
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                lifespan="off", timeout_graceful_shutdown=3, server_header=False)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            self._server.run()
        except BaseException as exc:  # uvicorn exits with SystemExit when it cannot bind
            self._error = exc

    def _crash(self) -> str | None:
        """What the server's thread raised other than uvicorn's own exit (which follows a logged
        reason), as ``repr``; None otherwise."""
        return None if self._error is None or isinstance(self._error, SystemExit) else repr(self._error)

    def start(self, timeout_s: float = 10.0) -> None:
        """Start serving; raise RuntimeError when the server has not started within ``timeout_s``,
        its message one line saying why (``cannot listen on 127.0.0.1:8470: address already in
        use ...``): what uvicorn logs as it fails to start is taken into that message, not printed
        on its own beside it."""
        if self._thread is not None:
            raise RuntimeError("the API server was already started")
        failed = _StartupErrors()
        uvicorn_log = logging.getLogger("uvicorn.error")
        uvicorn_log.addFilter(failed)
        try:
            self._thread = threading.Thread(target=self._run, name="autonomic-api", daemon=True)
            self._thread.start()
            deadline = time.monotonic() + timeout_s
            while not self._server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    self._server.should_exit = True
                    reason = (f"not listening after {timeout_s:.0f} s" if self._thread.is_alive()
                              else failed.reason() or self._crash() or "the server stopped as it started")
                    raise RuntimeError(f"cannot listen on {self.url.removeprefix('http://')}: {reason}")
                time.sleep(0.01)
        finally:
            uvicorn_log.removeFilter(failed)
        sockets = [s for srv in getattr(self._server, "servers", []) for s in srv.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("API listening on %s", self.url)
        if not is_loopback(self.host):
            # no TLS here: bearer tokens (and the dashboard's ?token= on its event stream) go as written
            log.warning("api: listening on %s, beyond this machine, over plain HTTP: API tokens cross the "
                        "network as written unless a TLS proxy (an ingress) fronts it; on a single host, keep "
                        "api.host on 127.0.0.1", self.url.removeprefix("http://"))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and wait for the thread; safe to call twice or before start."""
        stopping = getattr(getattr(self.app, "state", None), "stopping", None)
        if isinstance(stopping, threading.Event):
            stopping.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(2.0)
