"""One small ``typing.Protocol`` per plug-in kind.

Plug-ins are found through :class:`autonomic.registry.Registry` by the ``type:`` used in YAML.
Fakes of each live in :mod:`autonomic.testing`.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from autonomic.model import Finding, Notification, Sample


@runtime_checkable
class Clock(Protocol):
    """Wall-clock seconds (``time.time`` semantics) and a way to wait."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class Source(Protocol):
    """Produces samples when polled. Never raises for a bad target: it raises SourceError,
    which the engine logs and counts, and the other sources carry on; one that collected part
    (its ``samples``) has that part stored. One that asks a server over the network may say
    which in a ``lane`` attribute (``http://host:port``): the engine collects the sources of
    a lane one after another on a worker thread, lanes at once (``engine.collect_workers``);
    the samples are taken on the loop's thread, in the sources' order."""

    name: str

    def collect(self, now: float) -> Sequence[Sample]: ...


class SeriesReader(Protocol):
    """Read side of the series store, what detectors see."""

    def window(self, service: str, metric: str, since: float) -> tuple[Any, Any]:
        """(timestamps, values) as numpy float arrays, oldest first, ts >= since."""
        ...

    def latest(self, service: str, metric: str) -> tuple[float, float] | None: ...

    def aligned(self, metric: str, services: tuple[str, ...], since: float, until: float) -> Any:
        """One value per service (a float array): the mean of its samples with
        ``since < ts <= until``, NaN where there are none."""
        ...

    def tails(self, metric: str, services: tuple[str, ...], k: int) -> tuple[Any, Any]:
        """The last ``k`` samples of each service: (timestamps, values) as ``(len(services), k)``
        float arrays, newest in the last column, NaN where a series holds fewer."""
        ...

    def metrics(self, service: str) -> Sequence[str]:
        """Every metric the service has a sample of (the health detector reads only these)."""
        ...

    def services(self) -> Sequence[str]: ...


@runtime_checkable
class Detector(Protocol):
    """Turns series into findings. Pure: reads the series, keeps its own state, no I/O.
    Hyperparameters are set only in ``__init__``."""

    name: str

    def detect(self, series: SeriesReader, now: float) -> Sequence[Finding]: ...


@runtime_checkable
class Checkpointed(Protocol):
    """A detector whose learned state outlives a restart: the engine writes ``checkpoint()``
    (JSON-ready) to its state folder now and then and at shutdown, and hands it back to
    ``restore`` at start. ``restore`` takes what still fits the detector's configuration,
    ignores the rest, and returns one note per part it ignored; a malformed state raises
    ValueError (the engine then starts that detector fresh)."""

    name: str

    def checkpoint(self) -> dict[str, Any]: ...

    def restore(self, state: dict[str, Any]) -> list[str]: ...


@dataclass(frozen=True)
class Target:
    """The service an actuator acts on, and that service's binding for this actuator
    (the validated ``services[].actuators.<type>`` block of autonomic.yaml)."""

    service: str
    binding: BaseModel | None


@dataclass
class ActuatorContext:
    """What the engine lends every actuator: the process supervisor, a clock and a
    directory for its own state. Actuators take it in ``__init__``."""

    clock: Clock
    state_dir: Path
    supervisor: Any = None  # autonomic.execute.supervisor.Supervisor
    extra: dict[str, Any] = field(default_factory=dict)


# what each request of an actuator's ``unit_exit`` is given at most (or its binding's own timeout
# when shorter): the read is made while diagnosing, inside the engine's loop
UNIT_READ_TIMEOUT_S = 5.0


@runtime_checkable
class Actuator(Protocol):
    """Changes the world. Every call is given the action's idempotency key; calling
    ``apply`` twice with one key must not do the thing twice.

    ``Params`` is the pydantic model of a pattern's ``action.params`` (validated when patterns
    load, with ``extra="forbid"``); ``Binding`` is the model of the per-service settings.
    The journal calls, in order: ``snapshot`` (read-only; what undo needs), then ``apply``.
    After a crash it calls ``applied`` to learn whether ``apply`` took effect.

    Optional: ``unit_exit(target) -> str | None``, read-only, says how the bound unit ended when
    it is seen dead ("container web-1 exited with code 137 (OOMKilled)"), None while it runs or
    when it cannot tell; a down service whose unit is dead is its own fault, not a dependency's
    echo (the systemd, Docker and Kubernetes actuators have it, each request given at most
    :data:`UNIT_READ_TIMEOUT_S`). With it, ``unit_exit_limit_s(target) -> float``: the longest
    that read can take (the engine makes it while diagnosing, one step of its loop: see
    ``Engine.stuck_after_s``).

    Optional: ``unit_state(target) -> dict``, read-only, the bound unit's state as its manager says
    (systemd's ActiveState and SubState, a container's State, a workload's replica counts), for
    the unit-state source the engine builds from the binding (:mod:`autonomic.monitor.unitstate`
    maps it to ``up`` and the like); raises ActuatorError when it cannot be read. Each request is
    given at most :data:`UNIT_READ_TIMEOUT_S`; with it, ``unit_state_limit_s(target) -> float``:
    the longest the read can take (one collection of that source), and ``unit_lane(target) ->
    str``: the manager the read asks, in words ("the Docker engine at unix:///run/docker.sock"):
    units of one manager are read one after another, managers at once, and one that did not
    answer two reads in a row is not asked again in that collection (without it: one lane per
    actuator type). Raise ``RetryableActuatorError`` only when the manager could not be reached
    or did not answer in time (or is busy): that is what skips it.

    Optional: ``no_effect(target, params) -> str | None``, read-only, says why carrying out
    ``params`` now would change nothing (a config value already at a scale's ``max``), None
    otherwise; diagnosis passes such a remedy over, and a workflow when every one of its steps
    says so (the config actuator has it). It is asked while diagnosing, in one step of the
    engine's loop (named to its watchdog first) and not counted in ``Engine.stuck_after_s``: keep
    it a quick local read (the config actuator reads its file, no git, no network), or give each
    request at most :data:`UNIT_READ_TIMEOUT_S`.
    """

    type: ClassVar[str]
    Params: ClassVar[builtins.type[BaseModel]]
    Binding: ClassVar[builtins.type[BaseModel]]

    def describe(self, target: Target, params: BaseModel) -> str:
        """Dry run: what apply would do, in one line. No I/O."""
        ...

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        """Read the current state needed to undo (JSON-serialisable). No changes."""
        ...

    def apply(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Do it. Returns details for the journal. Raises ActuatorError subclasses."""
        ...

    def applied(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> bool | None:
        """Did an ``apply`` with this key take effect? None when it cannot be told."""
        ...

    def undo(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Put back what ``apply`` changed. Idempotent. Raises ActuatorError subclasses."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Tells people. Must not block the loop for long; failures raise and are counted."""

    name: str

    def send(self, notification: Notification) -> None: ...
