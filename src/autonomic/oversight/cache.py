"""A short-lived cache of the API's read responses (pure ASGI middleware).

The dashboard and scripts poll the same few read routes; computing each (health over every
series, store queries, JSON encoding) per request would spend the engine's CPU on repeats.
A successful GET under ``/api/v1`` (except the event stream) is kept for ``ttl_s`` (half a
second by default: live enough for people, who also get server-sent events), keyed by the
full path, query string and Authorization header, so a response is only ever replayed to
the token it was computed for, and only after ``authorize`` has checked that token again
(so a revoked token is refused at once). Any request that is not a GET or HEAD empties the
cache, so an operator's own change shows at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]


class ReadCache:
    def __init__(self, app: Any, authorize: Callable[[bytes], bool], ttl_s: float = 0.5, max_entries: int = 512,
                 prefix: str = "/api/v1", exclude: tuple[str, ...] = ("/api/v1/events",)) -> None:
        self.app = app
        self.authorize = authorize
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.prefix = prefix
        self.exclude = exclude
        self._entries: dict[tuple[str, bytes, bytes], tuple[float, list[Message]]] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.ttl_s <= 0:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD"):
            self.clear()
            await self.app(scope, receive, send)
            return
        if not path.startswith(self.prefix) or path.startswith(self.exclude):
            await self.app(scope, receive, send)
            return
        auth = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        key = (path, scope.get("query_string", b""), auth)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > now and self.authorize(auth):
            self.hits += 1
            for message in hit[1]:
                await send(message)
            return
        recorded: list[Message] = []
        status = 0

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            recorded.append(message)
            await send(message)

        await self.app(scope, receive, capture)
        if status == 200 and all(m["type"].startswith("http.response") for m in recorded):
            with self._lock:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (now + self.ttl_s, recorded)
