"""Fakes of every plug-in protocol, for tests of the engine and of anything built on it."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from autonomic.errors import TerminalActuatorError
from autonomic.model import Finding, Notification
from autonomic.protocols import ActuatorContext, SeriesReader, Target
from autonomic.registry import Registry


class FakeDetector:
    """Returns the findings it was given, once each, when their time has come."""

    def __init__(self, findings: Iterable[Finding], name: str = "fake") -> None:
        self.name = name
        self._pending = sorted(findings, key=lambda f: f.ts)

    def detect(self, series: SeriesReader, now: float) -> Sequence[Finding]:
        due = [f for f in self._pending if f.ts <= now]
        self._pending = [f for f in self._pending if f.ts > now]
        return due


class RecordingReader:
    """A SeriesReader over another that records the series each read asks for, as
    ``(method, service, metric)`` in ``reads`` (``window`` and ``latest``: what a detector asks
    per series, the cost that grows with a fleet)."""

    def __init__(self, inner: SeriesReader) -> None:
        self.inner = inner
        self.reads: list[tuple[str, str, str]] = []

    def window(self, service: str, metric: str, since: float) -> tuple[Any, Any]:
        self.reads.append(("window", service, metric))
        return self.inner.window(service, metric, since)

    def latest(self, service: str, metric: str) -> tuple[float, float] | None:
        self.reads.append(("latest", service, metric))
        return self.inner.latest(service, metric)

    def aligned(self, metric: str, services: tuple[str, ...], since: float, until: float) -> Any:
        return self.inner.aligned(metric, services, since, until)

    def tails(self, metric: str, services: tuple[str, ...], k: int) -> tuple[Any, Any]:
        return self.inner.tails(metric, services, k)

    def metrics(self, service: str) -> Sequence[str]:
        return self.inner.metrics(service)

    def services(self) -> Sequence[str]:
        return self.inner.services()


class FakeParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    op: Literal["poke", "fail", "fail_undo"] = "poke"
    value: int = 1


class FakeBinding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = "fake"


class FakeActuator:
    """Records every call; ``op: fail`` makes apply raise a terminal error, ``op: fail_undo``
    makes undo raise one. Idempotent per key."""

    type: ClassVar[str] = "fake"
    Params: ClassVar[builtins.type[BaseModel]] = FakeParams
    Binding: ClassVar[builtins.type[BaseModel]] = FakeBinding

    def __init__(self, ctx: ActuatorContext | None = None) -> None:
        self.ctx = ctx
        self.calls: list[tuple[str, str, str]] = []  # (method, service, key)
        self.applied_keys: set[str] = set()

    def describe(self, target: Target, params: BaseModel) -> str:
        return f"fake {getattr(params, 'op', '?')} on {target.service}"

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        return {"before": len(self.applied_keys)}

    def apply(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", target.service, key))
        if getattr(params, "op", None) == "fail":
            raise TerminalActuatorError("fake failure")
        if key in self.applied_keys:
            return {"noop": True}
        self.applied_keys.add(key)
        return {"noop": False}

    def applied(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> bool | None:
        return key in self.applied_keys

    def undo(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("undo", target.service, key))
        if getattr(params, "op", None) == "fail_undo":
            raise TerminalActuatorError("fake undo failure")
        self.applied_keys.discard(key)
        return {"undone": True}


class FakeNotifier:
    """Keeps what it was sent; ``fail=True`` makes every send raise."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Notification] = []
        self.fail = fail

    def send(self, notification: Notification) -> None:
        if self.fail:
            raise RuntimeError("fake notifier is down")
        self.sent.append(notification)


def fake_registry(actuator: FakeActuator) -> Registry:
    """A registry whose only actuator type, ``fake``, is ``actuator`` (one instance, so a test
    can read its calls)."""
    registry = Registry()

    def factory(ctx: Any) -> FakeActuator:
        return actuator

    factory.Params = FakeActuator.Params  # type: ignore[attr-defined]
    factory.Binding = FakeActuator.Binding  # type: ignore[attr-defined]
    factory.type = "fake"  # type: ignore[attr-defined]
    registry.register("actuator", "fake", factory)
    return registry
