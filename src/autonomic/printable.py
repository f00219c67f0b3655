"""Text as it may be written to a terminal.

What the CLI prints includes text that people and alerts wrote: a pause reason, an incident's
summary (from an Alertmanager annotation), a comment. Written raw, an escape sequence in it could
clear the screen, retitle the window or hide a line from the operator reading it.
:func:`printable` shows each control character as a ``\\xNN`` escape instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

# C0 controls but tab and newline, DEL and C1 controls (which some terminals read as ESC + x)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character but tab and newline shown as ``\\xNN`` (ESC as
    ``\\x1b``); everything else, other scripts and emoji included, as it is."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def counted(n: float, noun: str, plural: str | None = None) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1: ``1 service``, ``16 patterns``, ``0 entries``
    (``plural`` when it is not ``noun + "s"``); a float as ``:g`` writes it (``1 day``, ``0.5 days``)."""
    shown = f"{n:g}" if isinstance(n, float) else str(n)
    return f"{shown} {noun if n == 1 else plural or noun + 's'}"


def listed(items: Sequence[str], noun: str, plural: str | None = None) -> str:
    """``noun`` (plural unless there is one item) and ``items`` after it: ``metric cpu``,
    ``metrics cpu, mem`` (``plural`` when it is not ``noun + "s"``)."""
    return f"{noun if len(items) == 1 else plural or noun + 's'} {', '.join(items)}"


def rewrite_record(record: logging.LogRecord, change: Callable[[str], str]) -> None:
    """Apply ``change`` to a log record's message (formatted with its arguments) and to its
    exception text (formatted here, once): for log filters that must see everything a handler
    will write, the traceback of a logged exception included."""
    record.msg, record.args = change(record.getMessage()), None
    if record.exc_info:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
    if record.exc_text:
        record.exc_text = change(record.exc_text)
