"""One deadline for a whole HTTP exchange, the answer's headers included.

httpx's ``timeout`` bounds each phase and each read on its own. A server that sends its answer's
headers a byte at a time, each byte within the read timeout, holds the caller for as long as it
likes (h11 takes up to 64 KiB of headers): a probe of a health endpoint behind a broken proxy
held the engine's collection, and so its whole loop, until the watchdog called it stuck, and
again after every restart. The callers' own deadlines could only bound the body, read after
httpx has returned the headers.

:class:`Client` is an ``httpx.Client`` whose connections read and write through
:class:`_DeadlineStream`. Inside ``with within(seconds):`` every connect, read and write of the
requests this thread makes through such a client waits at most what is left of those seconds;
past them, httpcore's timeout (``httpx.ReadTimeout``, ``WriteTimeout`` or ``ConnectTimeout``, all
``httpx.TimeoutException``). Outside ``within`` the client is httpx's, unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import time
import typing
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

log = logging.getLogger("autonomic.deadline")

_deadline: ContextVar[float | None] = ContextVar("autonomic_http_deadline", default=None)


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Bound every HTTP exchange made in this block, in this thread, through a :class:`Client`
    (to ``seconds`` from now in all; a deadline already set and nearer stands)."""
    deadline = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` (httpx's, for one operation), cut to what is left of the deadline; ``error``
    when nothing is."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the exchange was not complete by its deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation waits at most what is left of the thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own (sync) backend, its connections wrapped in :class:`_DeadlineStream`."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout),
                                                       local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None
                            ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _left(timeout, httpcore.ConnectTimeout),
                                                               socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Transport(httpx.HTTPTransport):
    """httpx's transport over :class:`_DeadlineBackend` (httpx takes no network backend of its own:
    its connection pool, made as httpx makes it, is given one). A pool that cannot be given one (a
    SOCKS proxy's, another httpcore) is left as httpx made it, said once in the log: its requests
    are bounded per read only, as before."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool = self._pool
        if isinstance(pool, httpcore.ConnectionPool) and hasattr(pool, "_network_backend"):
            pool._network_backend = _DeadlineBackend()
        else:
            _say_unbounded(type(pool).__name__)


@functools.cache
def _say_unbounded(pool: str) -> None:
    """Warn, once per kind of pool, that its requests are bounded per read only."""
    log.warning("HTTP through %s: each read is bounded by its timeout, but not the whole exchange (a server "
                "sending its answer a byte at a time can hold a probe or a scrape longer)", pool)


class Client(httpx.Client):
    """An ``httpx.Client`` (made as httpx makes one, proxies from the environment included) whose
    requests keep the deadline of :func:`within`: httpx's transports, each given the deadline's
    network backend (httpx's two hooks that make them are overridden to make ours)."""

    def _init_transport(self, *, transport: httpx.BaseTransport | None = None,  # type: ignore[override]
                        **kwargs: Any) -> httpx.BaseTransport:
        return transport if transport is not None else _Transport(**kwargs)

    def _init_proxy_transport(self, proxy: httpx.Proxy, **kwargs: Any) -> httpx.BaseTransport:  # type: ignore[override]
        return _Transport(proxy=proxy, **kwargs)
