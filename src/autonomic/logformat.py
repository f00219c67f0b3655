"""How ``autonomic run`` writes its log: for a person at a terminal, or for a log pipeline.

- ``rich``: coloured, aligned columns, time of day only; wrapped to the terminal's width. For a
  person watching the engine in a terminal.
- ``text``: one line per record, ``2026-12-01T07:49:01.123Z INFO autonomic.engine: message``,
  the time in UTC with its date. A newline in a message (an alert's summary can hold one) is
  written as ``\\n``, so a record is one line and no text can forge another record; a
  traceback follows on its own lines, as Python writes it.
- ``json``: one JSON object per line: ``ts`` (as in text), ``level``, ``logger``, ``message``
  and, after an exception, ``exc`` (its traceback). For Loki, Elasticsearch, Cloud Logging.
- ``auto`` (the default): ``rich`` when stderr is a terminal, else ``text``. Written through a
  pipe (``kubectl logs``, journald, a file), rich wrapped every message at 80 columns and left
  the time out of all but the first record of each second.

Every format goes through the same filters (control characters shown as escapes, the config's
secrets hidden); they are added by the caller.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum


class LogFormat(StrEnum):
    auto = "auto"
    rich = "rich"
    text = "text"
    json = "json"


def _stamp(created: float) -> str:
    """``created`` (Unix seconds) as ISO 8601 in UTC to the millisecond, ``Z``-suffixed."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """One line per record (newlines in the message escaped), then any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        line = f"{_stamp(record.created)} {record.levelname} {record.name}: {message}"
        exc = _exc_text(self, record)
        return f"{line}\n{exc}" if exc else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": _stamp(record.created), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        exc = _exc_text(self, record)
        if exc:
            doc["exc"] = exc
        return json.dumps(doc, ensure_ascii=False)


def _exc_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    """The record's traceback (as a filter may have rewritten it), or ``""``."""
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or ""


def make_handler(fmt: LogFormat, *, tty: bool | None = None) -> logging.Handler:
    """The handler for ``fmt``; ``auto`` picks rich when ``tty`` (default: whether stderr is a
    terminal), else text. rich writes to the terminal; text and json to stderr."""
    if fmt == LogFormat.auto:
        fmt = LogFormat.rich if (sys.stderr.isatty() if tty is None else tty) else LogFormat.text
    if fmt == LogFormat.rich:
        from rich.logging import RichHandler

        return RichHandler(show_path=False, rich_tracebacks=False, markup=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == LogFormat.json else TextFormatter())
    return handler
