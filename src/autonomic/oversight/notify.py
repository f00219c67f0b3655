"""Telling people: the console and a JSON-lines file, routed by level.

A notifier that fails never stops the loop: :class:`Dispatcher` catches, logs and counts
the failure and carries on with the others.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from autonomic.model import Level, Notification
from autonomic.protocols import Notifier

log = logging.getLogger("autonomic.notify")


class ConsoleNotifier:
    """Writes each notification as one log line on the ``autonomic.notify`` logger."""

    name = "console"

    def __init__(self, **_: Any) -> None:
        pass

    def send(self, notification: Notification) -> None:
        where = f" [{notification.service}]" if notification.service else ""
        ref = f" (incident {notification.incident_id[:8]})" if notification.incident_id else ""
        level = logging.WARNING if notification.level != Level.INFO else logging.INFO
        log.log(level, "%s%s: %s%s%s", notification.level.value.upper(), where, notification.title,
                f" — {notification.body}" if notification.body else "", ref)


class JsonlNotifier:
    """Appends each notification as one JSON object per line to ``path``."""

    name = "jsonl"

    def __init__(self, path: str | Path, **_: Any) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        line = json.dumps(notification.model_dump(mode="json"), sort_keys=True)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")


def builtin_notifiers() -> dict[str, type]:
    return {"console": ConsoleNotifier, "jsonl": JsonlNotifier}


class Dispatcher:
    """Fans a notification out to every notifier whose minimum level it reaches."""

    def __init__(self, routes: Iterable[tuple[Notifier, Level]] = ()) -> None:
        self.routes = list(routes)
        self.failures: dict[str, int] = {}
        self.sent = 0

    def send(self, notification: Notification) -> None:
        for notifier, min_level in self.routes:
            if notification.level.rank < min_level.rank:
                continue
            try:
                notifier.send(notification)
                self.sent += 1
            except Exception as exc:  # a broken notifier must never stop the loop
                self.failures[notifier.name] = self.failures.get(notifier.name, 0) + 1
                log.error("notifier %s failed: %s", notifier.name, exc)
