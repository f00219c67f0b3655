"""The log formats of ``autonomic run``: one record per line for a pipeline, rich for a person."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from autonomic.logformat import JsonFormatter, LogFormat, TextFormatter, make_handler


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("store went away")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    record = logging.LogRecord("autonomic.engine", logging.WARNING, __file__, 1, msg, args, exc_info)
    record.created = 1_764_575_341.5  # 2025-12-01T07:49:01.500Z
    return record


def test_text_is_one_line_per_record_with_the_utc_date_and_time_and_newlines_escaped() -> None:
    line = TextFormatter().format(_record("alert says %s", "disk full\nINFO autonomic: all is well"))
    assert line == ("2025-12-01T07:49:01.500Z WARNING autonomic.engine: alert says disk full\\nINFO autonomic: "
                    "all is well")


def test_text_writes_a_traceback_after_the_record_line() -> None:
    first, *rest = TextFormatter().format(_record("tick failed", exc=True)).split("\n")
    assert first == "2025-12-01T07:49:01.500Z WARNING autonomic.engine: tick failed"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "RuntimeError: store went away"


def test_json_is_one_object_per_line_with_the_traceback_inside() -> None:
    out = JsonFormatter().format(_record("alert says %s", "a\nb", exc=True))
    assert "\n" not in out
    doc = json.loads(out)
    assert doc["ts"] == "2025-12-01T07:49:01.500Z" and doc["level"] == "WARNING"
    assert doc["logger"] == "autonomic.engine" and doc["message"] == "alert says a\nb"
    assert doc["exc"].endswith("RuntimeError: store went away")
    assert "exc" not in json.loads(JsonFormatter().format(_record("fine")))


@pytest.mark.parametrize(("fmt", "tty", "kind"), [
    (LogFormat.auto, True, "RichHandler"), (LogFormat.auto, False, "TextFormatter"),
    (LogFormat.rich, False, "RichHandler"), (LogFormat.text, True, "TextFormatter"),
    (LogFormat.json, True, "JsonFormatter"),
])
def test_auto_is_rich_only_on_a_terminal(fmt: LogFormat, tty: bool, kind: str) -> None:
    handler = make_handler(fmt, tty=tty)
    assert kind in (type(handler).__name__, type(handler.formatter).__name__)


def test_a_handlers_filters_rewrite_what_every_format_writes() -> None:
    """The engine hides secrets and control characters with filters on the handler: they must
    reach the text the formatters write, the traceback included."""
    from autonomic.printable import printable, rewrite_record

    class Hide(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            rewrite_record(record, lambda s: printable(s).replace("hunter2", "***"))
            return True

    for formatter in (TextFormatter(), JsonFormatter()):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handler.addFilter(Hide())
        handler.handle(_record("password hunter2 \x1b[2J", exc=True))
        written = stream.getvalue()
        assert "hunter2" not in written and "\x1b" not in written and re.search(r"\*\*\* \\+x1b", written)
