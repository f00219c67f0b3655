"""Every exception autonomic raises, split by what the caller should do about it.

::

    AutonomicError
    ├── ConfigError                 bad input at an edge; fix the file and run again
    │   └── PatternError            a pattern file is wrong (unknown action, bad params)
    ├── SourceError                 a metric source failed this round; retry next tick
    ├── StoreError                  the store refused a read or write
    │   ├── StoreValueError         a value it can never hold (a NUL in a name); do not retry it
    │   ├── AuditChainError         the audit chain is broken (an entry edited or deleted)
    │   └── NotLeaderError          this replica does not (or no longer surely) hold the lease;
    │                               nothing was written or run; stop acting
    ├── ActuatorError               an actuator could not do what was asked
    │   ├── RetryableActuatorError  transient (timeout, busy); the same step may be retried
    │   └── TerminalActuatorError   retrying will not help; compensate and escalate
    └── NotifierError               a notifier could not deliver; tried again later (not
                                    before ``retry_after_s`` when the receiver asked for that)

Each ``ConfigError`` carries ``problems``: a list of :class:`Problem` values, each naming a
file, a line, the field and the message, printed as ``file:line: field: message``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autonomic.model import Sample


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, pointing at where it is."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        """``file:line: field: message``; without a file (a command-line option, an environment
        variable) just ``field: message``, or the message alone, never a bare leading colon."""
        if not self.file:
            return f"{self.field}: {self.message}" if self.field else self.message
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        field = self.field or "(top)"
        return f"{where}: {field}: {self.message}"


class AutonomicError(Exception):
    """Base of everything autonomic raises on purpose."""


class ConfigError(AutonomicError):
    """A config or pattern input is invalid. ``problems`` lists each one with its place."""

    def __init__(self, problems: list[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="", line=None, field="", message=problems)]
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PatternError(ConfigError):
    """A pattern file is invalid: unknown action type, parameters outside its schema, ..."""


class SourceError(AutonomicError):
    """A source could not collect this round (target down, garbage payload, timeout), or not all
    of it: ``samples`` then holds what it did collect, stored as a collection's are."""

    def __init__(self, message: str, samples: Sequence[Sample] = ()) -> None:
        super().__init__(message)
        self.samples = tuple(samples)


class StoreError(AutonomicError):
    """The store could not complete a read or write."""


class StoreValueError(StoreError):
    """A value the store can never hold (a NUL character in a stored name or id): writing it
    again will fail again, unlike a store that is locked or restarting. Nothing was written."""


class AuditChainError(StoreError):
    """The audit chain does not verify: an entry was edited, deleted or inserted."""


class NotLeaderError(StoreError):
    """This replica may not act or write: another replica took the engine's lease over (the write
    was refused under the store's write lock, so nothing was written), or this one has gone too
    long without renewing it to be sure it still leads. See :mod:`autonomic.knowledge.lease`."""


class ActuatorError(AutonomicError):
    """An actuator could not do what was asked."""


class RetryableActuatorError(ActuatorError):
    """A transient failure; the same step, with the same idempotency key, may be retried."""


class TerminalActuatorError(ActuatorError):
    """Retrying will not help (missing command, bad target); compensate and escalate."""


class NotifierError(AutonomicError):
    """A notifier could not deliver. The message is safe to log: it names a host, never a URL.
    ``retry_after_s``: how long the receiver asked to be left alone (HTTP 429 or 503 with
    ``Retry-After``: Slack's rate limit), or None."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
